//! `posture serve`: open the data directory, make sure an admin key exists, optionally seed the
//! demo fleet, start the engine's workers and serve the API.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use store::{Agents as _, CheckRuns, Instances, NewInstance, Store, TaskQueue};

use catalog::Catalog;
use connectors::host::HostConnector;
use connectors::{CloudProvider, Connector};
use engine::Engine;
use serde::{Deserialize, Serialize};

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The data directory (the SQLite database, credentials.json, the demo fleet), and the
    /// database when it is PostgreSQL.
    #[command(flatten)]
    store: crate::admin::DataDir,
    /// Register the demo fleet (once) and check it.
    #[arg(long)]
    demo: bool,
    /// How the demo's servers are reached: `agents` (each runs as a posture-agent in this
    /// process, a thread each, over loopback HTTP, its state in DATA/agents/) or `roots` (the
    /// engine reads their directories itself). With --database the demo keeps roots.
    #[arg(long, value_enum, default_value_t = DemoFleet::Agents)]
    demo_fleet: DemoFleet,
    /// Engine worker threads (0: accept tasks but do not run them; servers reached through
    /// agents, the demo's among them, are run by their agents all the same). Workers mostly
    /// wait on disk and on commits, which they share (group commit), so several per core pay
    /// off.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// The configuration file (default: posture.toml in the data directory, if it exists).
    /// `[connectors.aws] endpoint_url` points the AWS connector at moto or LocalStack; the
    /// environment variable POSTURE_AWS_ENDPOINT_URL overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A directory of extra check items (*.toml), added to the built-in catalog.
    #[arg(long)]
    catalog_dir: Option<PathBuf>,
    /// How long a worker's lease on a task lasts, in milliseconds, before another may take over.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: i64,
    /// Re-verifying the same check item within this many seconds answers OperateCode
    /// Throttling (unless the caller sets Force).
    #[arg(long, default_value_t = 30)]
    verify_interval_secs: i64,
    /// The address clients reach this service by (`https://posture.example.com`), for the
    /// links in answers (ExportRecord's download). Set it behind a proxy or load balancer that
    /// terminates TLS; without it, links use the Host the caller sent and this node's scheme
    #[arg(long, env = "POSTURE_PUBLIC_URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    /// How long the tasks and check runs of a server reached through its agent wait for an
    /// agent not heard from: then its tasks that have changed nothing yet fail (AgentOffline)
    /// and its part of a check run fails. 90s, 15m, 2h …
    #[arg(long, default_value = "10m", value_parser = agent_deadline)]
    agent_task_deadline: i64,
    /// How many days audit records are kept (DescribeAuditLog, `posture audit`); `forever`
    /// keeps them all. Older records are removed as new ones are written. The default, a year
    /// and a month, lets a yearly review see the whole year.
    #[arg(long, default_value = "400", value_parser = audit_retention)]
    audit_retention_days: Retention,
    /// Agent polls that may wait for work at once (each holds a connection); past it, polls are
    /// answered at once and agents poll again later, so agents cannot starve API clients.
    #[arg(long, default_value_t = 512)]
    max_agent_polls: usize,
    /// How long an agent's poll waits for work before it is answered "nothing" (the agent
    /// then polls again: it is also its heartbeat). 1s to 50s.
    #[arg(long, default_value = "30s", value_parser = agent_poll_wait)]
    agent_poll_wait: std::time::Duration,
    /// Serve HTTPS with this certificate chain (PEM: the server's certificate first, then its
    /// intermediates and, for a private CA, the CA). Read again on SIGHUP: new connections get
    /// the new certificate. Also `[tls] cert` in posture.toml. `posture tls cert` makes one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; refused when other users can read it).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA that clients on this machine trust: recorded as CaFile in credentials.json
    /// (absent: clients use the system's roots).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Log lines as text, or as JSON objects (one per line, for a log pipeline).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Days audit records are kept (None: for ever).
#[derive(Clone, Copy, Debug)]
struct Retention(Option<i64>);

fn audit_retention(text: &str) -> Result<Retention, String> {
    match text {
        "forever" => Ok(Retention(None)),
        n => n
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=36_500).contains(d))
            .map(|d| Retention(Some(d)))
            .ok_or_else(|| format!("{text:?}: give a number of days from 1 to 36500, or `forever`")),
    }
}

fn agent_poll_wait(text: &str) -> Result<std::time::Duration, String> {
    api::ops::agents::parse_duration(text)
        .filter(|ms| (1_000..=50_000).contains(ms))
        .map(|ms| std::time::Duration::from_millis(ms as u64))
        .ok_or_else(|| format!("{text:?} is not a wait of 1s to 50s"))
}

fn agent_deadline(text: &str) -> Result<i64, String> {
    api::ops::agents::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration such as 90s, 15m or 2h"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DemoFleet {
    Agents,
    Roots,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `credentials.json`.
#[derive(Serialize, Deserialize)]
pub struct CredentialsFile {
    #[serde(rename = "AccountId")]
    pub account_id: String,
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "AccessKeySecret")]
    pub access_key_secret: String,
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    /// `https` when the service is served over TLS.
    #[serde(rename = "Protocol", default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The CA to trust for it (absent: the system's roots).
    #[serde(rename = "CaFile", default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// How clients on this machine reach the service (credentials.json's Endpoint, Protocol and
/// CaFile).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reach {
    endpoint: String,
    protocol: Option<String>,
    ca_file: Option<PathBuf>,
}

impl Reach {
    fn of(file: &CredentialsFile) -> Reach {
        Reach { endpoint: file.endpoint.clone(), protocol: file.protocol.clone(), ca_file: file.ca_file.clone() }
    }
}

/// HTTPS: the certificate served, and the CA clients on this machine are told to trust.
struct Https {
    tls: Arc<api::tls::Tls>,
    ca: Option<PathBuf>,
}

/// The TLS settings of the command line, else of the configuration file; the certificate and
/// key loaded (and so checked) before anything is written.
fn load_tls(args: &Args, config: &Config) -> Result<Option<Https>, String> {
    let ca = args.tls_ca.clone().or(config.tls.ca.clone());
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) if ca.is_none() => return Ok(None),
            _ => {
                return Err(
                    "TLS needs both a certificate and a key (--tls-cert and --tls-key, or [tls] cert and key)".into()
                )
            }
        },
    };
    let (tls, loaded) = api::tls::Tls::load(&cert, &key)?;
    let ca = match ca {
        Some(ca) => {
            client::tls::certificates(&ca)?;
            Some(ca.canonicalize().map_err(|e| format!("{}: {e}", ca.display()))?)
        }
        None => None,
    };
    tracing::info!(cert = %cert.display(), chain = loaded.chain, "serving HTTPS (TLS 1.3 and 1.2)");
    Ok(Some(Https { tls: Arc::new(tls), ca }))
}

/// Reads the certificate again at each SIGHUP (without TLS, SIGHUP is logged and ignored
/// rather than ending the process).
fn reload_on_hangup(tls: Option<Arc<api::tls::Tls>>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // A certificate and key replaced one after the other do not match in between: a
            // reload that fails is tried once more a moment later.
            let mut reloaded = tls.as_ref().map(|t| t.reload());
            if let (Some(t), Some(Err(_))) = (&tls, &reloaded) {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                reloaded = Some(t.reload());
            }
            match reloaded {
                None => tracing::info!("SIGHUP: nothing to reload (no TLS)"),
                Some(Ok(loaded)) => {
                    tracing::info!(
                        chain = loaded.chain,
                        "SIGHUP: the TLS certificate was read again; new connections get it"
                    )
                }
                Some(Err(e)) => {
                    tracing::error!("SIGHUP: the TLS certificate was not read again, the previous one stays: {e}")
                }
            }
        }
    });
    Ok(())
}

pub fn run(args: Args) -> ExitCode {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POSTURE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match try_run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

type Plugins = (Vec<Arc<dyn Connector>>, Vec<Arc<dyn CloudProvider>>);

/// The connectors and cloud providers this build has.
fn connectors(config: &Config) -> Result<Plugins, String> {
    let host: Arc<dyn Connector> = Arc::new(HostConnector::new(config.connectors.host.settings()?));
    #[cfg(feature = "aws")]
    {
        let endpoint = config.aws_endpoint()?;
        tracing::info!(endpoint = endpoint.as_deref().unwrap_or("AWS"), "AWS connector");
        let aws = connector_aws::Aws::new(endpoint).map_err(|e| format!("cannot start the AWS connector: {e}"))?;
        let mut connectors = aws.connectors();
        connectors.insert(0, host);
        Ok((connectors, vec![aws as Arc<dyn CloudProvider>]))
    }
    #[cfg(not(feature = "aws"))]
    {
        if let Some(endpoint) = config.aws_endpoint()? {
            tracing::warn!(
                endpoint,
                "an AWS endpoint is configured, but this posture was built without the aws feature"
            );
        }
        Ok((vec![host], Vec::new()))
    }
}

fn try_run(args: Args) -> Result<(), String> {
    // Bind first: a taken address fails at once, before anything is written.
    let listener =
        std::net::TcpListener::bind(args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let data = args.store.data.clone();
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700));
    let config = Config::load(args.config.as_deref(), &data)?;
    let tls = load_tls(&args, &config)?;
    let at = args.store.location(&config);
    // On SQLite, one serve per data directory: it owns every lease, so it frees them at start
    // and resumes the work of the previous run at once. Several nodes may share one
    // PostgreSQL (and one data directory): there a dead node's leases expire instead.
    let _lock = match &at.database {
        Some(_) => None,
        None => {
            let lock =
                File::create(data.join("serve.lock")).map_err(|e| format!("cannot create the lock file: {e}"))?;
            lock.try_lock().map_err(|_| format!("another posture serve is using {}", data.display()))?;
            Some(lock)
        }
    };
    let store = Arc::new(Store::connect(&at).map_err(|e| format!("cannot open the database: {e}"))?);
    tracing::info!(backend = store.backend(), "store open");
    if at.database.is_none() {
        let released = store.release_leases().map_err(|e| e.to_string())?;
        if released > 0 {
            tracing::info!(tasks = released, "resuming unfinished work from the previous run");
        }
    }
    let catalog = Catalog::load(args.catalog_dir.as_deref()).map_err(|e| format!("cannot load the catalog: {e}"))?;
    let (connectors, providers) = connectors(&config)?;
    let engine = Engine::new(
        store.clone(),
        Arc::new(catalog),
        connectors,
        providers,
        engine::Config { lease_ms: args.lease_ms, agent_deadline_ms: args.agent_task_deadline, ..Default::default() },
    );

    let reach = Reach {
        endpoint: local_addr(&args.listen).to_string(),
        protocol: tls.as_ref().map(|_| "https".to_string()),
        ca_file: tls.as_ref().and_then(|https| https.ca.clone()),
    };
    let account = ensure_admin(&store, &data, &reach)?;
    let via_agents = args.demo_fleet == DemoFleet::Agents && at.database.is_none();
    let demo_agents = match args.demo {
        true => seed_demo(&store, &engine, &account, &data, via_agents)?,
        false => Vec::new(),
    };
    let _workers = engine.start(args.workers);
    let http_limits = config.http.limits();

    // Before the runtime starts: the store blocks (a new PostgreSQL connection may not be opened
    // on an async thread). The listener is bound already.
    print_console_address(&store, &reach, &args.public_url, args.demo);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let settings = api::ops::Settings {
            verify_interval_ms: args.verify_interval_secs.saturating_mul(1000),
            max_agent_polls: args.max_agent_polls,
            agent_poll_wait: args.agent_poll_wait,
            https: tls.is_some(),
            public_url: args.public_url.clone(),
            audit_retention_ms: args.audit_retention_days.0.map(|d| d * 86_400_000),
        };
        let app = api::App::new(store, engine, settings);
        tracing::info!(listen = %args.listen, credentials = %data.join("credentials.json").display(), "posture is serving");
        let tls = tls.map(|https| https.tls);
        reload_on_hangup(tls.clone())?;
        if tls.is_none() && !args.listen.ip().is_loopback() {
            // Signed requests cannot be forged, but what they carry (results, snapshots of
            // servers' files, enrolment tokens) is readable on the wire.
            tracing::warn!(listen = %args.listen, "serving plain HTTP on an address that is not loopback: everything the API and the agents exchange is readable on the network; serve HTTPS (--tls-cert, --tls-key), or serve on a network you trust");
        }
        let stop_agents = Arc::new(AtomicBool::new(false));
        if !demo_agents.is_empty() {
            app.starting.store(true, Ordering::Relaxed);
            let (app, stop) = (app.clone(), stop_agents.clone());
            let (link, account) = (demo_link(&reach, &tls)?, account.clone());
            std::thread::Builder::new()
                .name("posture-demo".into())
                .spawn(move || {
                    if let Err(e) = run_demo_agents(&app, link, &account, &data, demo_agents, &stop) {
                        tracing::error!("the demo's agents could not start: {e}");
                    }
                    app.starting.store(false, Ordering::Relaxed);
                })
                .map_err(|e| e.to_string())?;
        }
        let stopping = app.clone();
        let shutdown = async move {
            shutdown().await;
            // Waiting agent polls end at once instead of holding the shutdown up.
            stop_agents.store(true, Ordering::Relaxed);
            stopping.agents.stop();
        };
        api::http::serve(listener, Arc::new(api::gateway::Gateway(app)), http_limits, tls, shutdown)
            .await
            .map_err(|e| format!("server error: {e}"))
    })?;
    tracing::info!("stopped; waiting for workers to finish their current step");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

/// The admin account and its key (created together, in one transaction, on the first start)
/// and credentials.json (0600) naming them. The file is written after the key is committed and
/// marked delivered only once it is in place, so a start interrupted anywhere leaves either
/// nothing or a key whose file the next start writes; a file deleted after delivery on purpose
/// is not written again. (A data directory from before schema 6 has no mark: an existing file
/// naming the admin key counts as delivered; a missing one is written.)
fn ensure_admin(store: &Store, data: &Path, reach: &Reach) -> Result<String, String> {
    let path = data.join("credentials.json");
    let admin = store.admin().map_err(|e| format!("cannot create the admin account: {e}"))?;
    let existing = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<CredentialsFile>(&t).ok());
    let key = match &admin.key {
        Some(key) if !admin.delivered && existing.as_ref().is_none_or(|f| f.access_key_id != key.id) => key,
        _ => {
            if !admin.delivered {
                store.mark(store::marks::CREDENTIALS_DELIVERED).map_err(|e| e.to_string())?;
            }
            // Keep the file's Endpoint, Protocol and CaFile in step with this start.
            if let Some(mut file) = existing.filter(|f| Reach::of(f) != *reach) {
                file.endpoint = reach.endpoint.clone();
                file.protocol = reach.protocol.clone();
                file.ca_file = reach.ca_file.clone();
                crate::files::write_atomic(&path, &serde_json::to_string_pretty(&file).unwrap_or_default(), 0o600)
                    .map_err(|e| e.to_string())?;
            }
            return Ok(admin.account.id);
        }
    };
    let file = CredentialsFile {
        account_id: admin.account.id.clone(),
        access_key_id: key.id.clone(),
        access_key_secret: key.secret.clone(),
        endpoint: reach.endpoint.clone(),
        protocol: reach.protocol.clone(),
        ca_file: reach.ca_file.clone(),
    };
    crate::files::write_atomic(&path, &serde_json::to_string_pretty(&file).unwrap_or_default(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    store.mark(store::marks::CREDENTIALS_DELIVERED).map_err(|e| e.to_string())?;
    tracing::info!(account = %admin.account.id, credentials = %path.display(), "wrote the admin AccessKey to credentials.json");
    Ok(admin.account.id)
}

/// Writes, registers and checks the demo fleet, once. Each part is idempotent and the whole is
/// marked done only at its end, so a start interrupted halfway is completed by the next one.
/// With `via_agents`, the servers are registered as reached through their agents, and returned:
/// their agents enrol (once) and run once the service listens, and check the fleet then.
fn seed_demo(
    store: &Store,
    engine: &Engine,
    account: &str,
    data: &Path,
    via_agents: bool,
) -> Result<Vec<NewInstance>, String> {
    // Nodes sharing the data directory seed it one at a time; the next finds it marked.
    let lock = File::create(data.join("demo.lock")).map_err(|e| format!("cannot create the demo lock: {e}"))?;
    lock.lock().map_err(|e| format!("cannot lock the demo lock: {e}"))?;
    let fleet = data.join("fleet");
    let agents = data.join("agents");
    if store.is_marked(store::marks::DEMO_SEEDED).map_err(|e| e.to_string())? {
        // A demo on agents starts its agents at every start.
        return match agents.is_dir() {
            true => Ok(crate::demo::servers(&fleet)),
            false => Ok(Vec::new()),
        };
    }
    // A start interrupted after registering the fleet finds only the fleet's own instances.
    let demo_ids: Vec<String> = crate::demo::servers(&fleet).into_iter().map(|i| i.instance_id).collect();
    let others =
        store.list_instances(account).map_err(|e| e.to_string())?.iter().any(|i| !demo_ids.contains(&i.instance_id));
    if others {
        tracing::info!("the admin account already has instances of its own; the demo fleet is not added");
        store.mark(store::marks::DEMO_SEEDED).map_err(|e| e.to_string())?;
        return Ok(Vec::new());
    }
    let instances = crate::demo::build(&fleet).map_err(|e| format!("cannot write the demo fleet: {e}"))?;
    if via_agents {
        std::fs::create_dir_all(&agents).map_err(|e| format!("cannot create {}: {e}", agents.display()))?;
        // Registered now (listings show them at once); each agent's enrolment takes its
        // instance over with a token made for it.
        for i in &instances {
            let mut i = i.clone();
            i.locator = store::AGENT_LOCATOR.into();
            store.upsert_instance(account, &i).map_err(|e| e.to_string())?;
        }
        return Ok(instances);
    }
    for i in &instances {
        store.upsert_instance(account, i).map_err(|e| e.to_string())?;
    }
    store.create_run(account, "CHECK_ALL", "", &[], &[]).map_err(|e| e.to_string())?;
    engine.drain();
    store.mark(store::marks::DEMO_SEEDED).map_err(|e| e.to_string())?;
    tracing::info!(servers = instances.len(), fleet = %fleet.display(), "registered and checked the demo fleet");
    Ok(Vec::new())
}

/// The address clients on this machine (the demo's agents among them) reach this service at:
/// loopback when it listens on every address.
/// Prints where the web console is; with `--demo`, a one-time sign-in link for the admin key
/// too (a newcomer signs in without copying the secret).
fn print_console_address(store: &Store, reach: &Reach, public_url: &Option<String>, demo: bool) {
    let base = match public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("{}://{}", reach.protocol.as_deref().unwrap_or("http"), reach.endpoint),
    };
    let console = format!("{base}/console/");
    println!("posture is serving: the API at {base}/, the web console at {console}");
    if !demo {
        return;
    }
    let key = store.admin().ok().and_then(|admin| admin.key).filter(|k| k.enabled);
    match key.map(|k| api::console::sign_in_link(store, &k.id, &console)) {
        Some(Ok(link)) => println!("sign in to the console once with this link (valid for 24 hours): {link}"),
        Some(Err(e)) => tracing::warn!(error = %e, "could not open a sign-in link for the console"),
        None => println!("sign in to the console with an AccessKey (`posture keys create`)"),
    }
}

fn local_addr(listen: &SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// How the demo's agents reach this service: its local address, over HTTPS when it serves
/// it (trusting the CA clients are told to trust, else the chain it serves).
struct DemoLink {
    url: String,
    ca: Option<String>,
    /// Plain HTTP to an address that is not loopback (the service's own, on this machine).
    insecure_http: bool,
}

fn demo_link(reach: &Reach, tls: &Option<Arc<api::tls::Tls>>) -> Result<DemoLink, String> {
    let ca = match (tls, &reach.ca_file) {
        (None, _) => None,
        (Some(_), Some(ca)) => Some(ca.clone()),
        (Some(tls), None) => Some(tls.cert_path().to_path_buf()),
    };
    let ca = ca.map(|p| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))).transpose()?;
    let local_ip = reach.endpoint.parse::<SocketAddr>().map(|a| a.ip().is_loopback()).unwrap_or(true);
    Ok(DemoLink {
        url: format!("{}://{}", if tls.is_some() { "https" } else { "http" }, reach.endpoint),
        insecure_http: tls.is_none() && !local_ip,
        ca,
    })
}

/// Enrols the demo's agents (once each, with a token made for its instance), runs each on a
/// thread of its own, and checks the fleet through them the first time.
fn run_demo_agents(
    app: &api::App,
    link: DemoLink,
    account: &str,
    data: &Path,
    servers: Vec<NewInstance>,
    stop: &Arc<AtomicBool>,
) -> Result<(), String> {
    let store = &app.store;
    for s in servers {
        let state = data.join("agents").join(&s.instance_id);
        let kept = posture_agent::state::State::open(&state).ok().and_then(|st| st.enrolled().ok().map(|e| (st, e)));
        if let Some((st, mut enrolled)) = kept {
            // The demo's agents follow this serve to whatever address (and TLS) it has now.
            if (&enrolled.server, &enrolled.ca) != (&link.url, &link.ca) {
                enrolled.server = link.url.clone();
                enrolled.ca = link.ca.clone();
                enrolled.fingerprint = None;
                enrolled.insecure_http = link.insecure_http;
                st.set_enrolled(&enrolled).map_err(|e| format!("demo agent {}: {e}", s.instance_id))?;
            }
        } else {
            let token = store
                .create_agent_token(account, Some(&s.instance_id), 1, store::now_ms() + 600_000)
                .map_err(|e| e.to_string())?;
            posture_agent::enroll::enroll(posture_agent::enroll::Options {
                server: link.url.clone(),
                ca: link.ca.clone(),
                fingerprint: None,
                token,
                state: state.clone(),
                root: data.join("fleet").join(&s.instance_id),
                // A directory of files, not the running system: no live step runs.
                live: Some(false),
                services: None,
                instance_id: Some(s.instance_id.clone()),
                region_id: s.region_id.clone(),
                vendor: s.vendor.code(),
                // The service's own address on this machine: the traffic does not leave it.
                insecure_http: link.insecure_http,
            })
            .map_err(|e| format!("demo agent {}: {}", s.instance_id, e.message))?;
        }
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("demo-agent-{}", s.instance_name))
            .spawn(move || {
                if let Err(e) = posture_agent::run::run_until(&state, &stop) {
                    tracing::error!(state = %state.display(), "a demo agent stopped: {}", e.message);
                }
            })
            .map_err(|e| e.to_string())?;
    }
    if store.is_marked(store::marks::DEMO_SEEDED).map_err(|e| e.to_string())? {
        return Ok(());
    }
    let run = store.create_run(account, "CHECK_ALL", "", &[], &[]).map_err(|e| e.to_string())?;
    // This node's workers may be none (--workers 0): the run is planned here, its agents do the rest.
    app.engine.drain();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done =
            store.get_run(account, &run.id).map_err(|e| e.to_string())?.is_some_and(|r| !r.status.is_unfinished());
        if done {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err("the demo fleet was not checked within 60 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    store.mark(store::marks::DEMO_SEEDED).map_err(|e| e.to_string())?;
    tracing::info!(fleet = %data.join("fleet").display(), "registered and checked the demo fleet through its agents");
    Ok(())
}

/// `--public-url`: `http://` or `https://`, a host, no path, query or trailing slash.
fn parse_public_url(v: &str) -> Result<String, String> {
    let rest = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => Ok(v.to_string()),
        _ => {
            Err("an http:// or https:// address with a host and nothing after it (https://posture.example.com:8443)"
                .into())
        }
    }
}

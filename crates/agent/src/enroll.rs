//! `posture-agent enroll`: a new key, the server's identity and description, one signed
//! enrolment, the state written.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use client::agent::{self as wire, Enroll, HostInfo};

use crate::run::Stop;
use crate::state::{Enrolled, State};
use crate::transport;

/// `posture-agent enroll`.
#[derive(clap::Args)]
pub struct Args {
    /// The service: https://HOST:PORT (or http://HOST:PORT on loopback).
    #[arg(long)]
    server: String,
    /// HTTPS: the CA (PEM) the service's certificate must chain to; copied into the state
    /// and pinned, so the service can replace its certificate.
    #[arg(long, conflicts_with = "fingerprint")]
    ca: Option<PathBuf>,
    /// HTTPS: the public-key pin of a CA the service sends in its chain (`sha256:HEX`, as
    /// `posture tls fingerprint CA.pem` prints it); pinned like --ca.
    #[arg(long)]
    fingerprint: Option<String>,
    /// An enrolment token (`posture agents token create`).
    #[arg(long, env = "POSTURE_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// The state directory (0700; its files 0600).
    #[arg(long, default_value = crate::state::DEFAULT_STATE)]
    state: PathBuf,
    /// The root the agent assesses and repairs (`/`: this server).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The server's InstanceId (default: ROOT/etc/machine-id, else one generated and kept in
    /// the state directory).
    #[arg(long)]
    instance_id: Option<String>,
    /// Whether the root is the running system: a repair then validates with the service's own
    /// checker, reloads the service (or sets the kernel's value, or Redis's) and reads the value
    /// in effect back. Default: yes for `/`, no for any other root.
    #[arg(long, value_parser = ["yes", "no"])]
    live: Option<String>,
    /// How the running services are reached, as JSON (default: where their packages put them):
    /// {"sshd": {"Unit": "ssh"} or {"PidFile": "/run/sshd.pid"}, "redis": {"Address": "127.0.0.1:6379"}}.
    #[arg(long)]
    services: Option<String>,
    /// Its RegionId.
    #[arg(long, default_value = "default")]
    region_id: String,
    /// Its Vendor code (2: IDC, a server of your own).
    #[arg(long, default_value_t = 2)]
    vendor: i64,
    /// Allow plain http:// to an address that is not loopback (everything sent is readable on
    /// the wire: only on a network you trust).
    #[arg(long)]
    insecure_http: bool,
}

/// The agent's version, reported at enrolment and checked by the service.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What an enrolment needs (the command line's arguments).
#[derive(Clone, Debug)]
pub struct Options {
    /// The service, `https://HOST:PORT` (or `http://`).
    pub server: String,
    /// HTTPS: the CA certificates (PEM text) to trust.
    pub ca: Option<String>,
    /// HTTPS: the pinned public key of a CA, `sha256:HEX`.
    pub fingerprint: Option<String>,
    /// The enrolment token.
    pub token: String,
    /// The state directory.
    pub state: PathBuf,
    /// The root.
    pub root: PathBuf,
    /// Whether the root is the running system (None: yes for `/`).
    pub live: Option<bool>,
    /// How its services are reached.
    pub services: Option<model::Services>,
    /// The InstanceId, if given.
    pub instance_id: Option<String>,
    /// The RegionId.
    pub region_id: String,
    /// The Vendor code.
    pub vendor: i64,
    /// Plain http:// to an address that is not loopback is accepted.
    pub insecure_http: bool,
}

impl TryFrom<Args> for Options {
    type Error = Stop;

    fn try_from(a: Args) -> Result<Options, Stop> {
        let ca = match &a.ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Stop::usage(format!("cannot read {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let services = match &a.services {
            Some(json) => {
                let s: model::Services = serde_json::from_str(json)
                    .map_err(|e| Stop::usage(format!("--services is not a services description: {e}")))?;
                s.check().map_err(|e| Stop::usage(format!("--services: {e}")))?;
                Some(s)
            }
            None => None,
        };
        if services.is_some() && a.live.as_deref() == Some("no") {
            return Err(Stop::usage("--services describes a live root; it cannot go with --live no"));
        }
        Ok(Options {
            server: a.server,
            ca,
            fingerprint: a.fingerprint,
            token: a.token,
            state: a.state,
            root: a.root,
            live: a.live.map(|l| l == "yes"),
            services,
            instance_id: a.instance_id,
            region_id: a.region_id,
            vendor: a.vendor,
            insecure_http: a.insecure_http,
        })
    }
}

/// Enrols: a new key, one signed enrolment, the state written (the key first: an enrolment
/// recorded without its key could never be used).
pub fn enroll(args: Options) -> Result<Enrolled, Stop> {
    let trust = transport::trust(args.ca.as_deref(), args.fingerprint.as_deref()).map_err(Stop::usage)?;
    let endpoint = transport::endpoint(&args.server, args.insecure_http, trust.as_ref()).map_err(Stop::usage)?;
    if !args.root.is_dir() {
        return Err(Stop::usage(format!("the root {} is not a directory", args.root.display())));
    }
    let root = args.root.canonicalize().map_err(|e| Stop::usage(format!("{}: {e}", args.root.display())))?;
    let state = State::create(&args.state).map_err(|e| Stop::usage(format!("{}: {e}", args.state.display())))?;
    let instance_id = match args.instance_id {
        Some(id) => id,
        None => match machine_id(&root) {
            Some(id) => id,
            None => state.generated_instance_id().map_err(|e| Stop::usage(e.to_string()))?,
        },
    };
    let secret = wire::new_secret();
    let request = Enroll {
        token: args.token,
        instance_id,
        region_id: args.region_id,
        vendor: args.vendor,
        public_key: wire::b64(&wire::public_key(&secret)),
        version: VERSION.to_string(),
        info: host_info(&root, &endpoint.authority),
    };
    let answer: wire::Enrolled =
        transport::Link::new(endpoint).call(&secret, wire::ENROLLING, "enroll", &request).map_err(|e| match e {
            transport::CallError::Refused { .. } => Stop::refused(format!("enrolment refused: {e}")),
            transport::CallError::Transport(_) => Stop::usage(format!("cannot reach the service: {e}")),
        })?;
    state.set_key(&secret).map_err(|e| Stop::usage(format!("cannot write the key: {e}")))?;
    let enrolled = Enrolled {
        server: args.server.trim().trim_end_matches('/').to_string(),
        ca: args.ca,
        fingerprint: args.fingerprint,
        agent_id: answer.agent_id,
        instance_id: answer.instance_id,
        live: args.live.unwrap_or(root == Path::new("/")).then(|| args.services.unwrap_or_default()),
        root,
        insecure_http: args.insecure_http,
    };
    state.set_enrolled(&enrolled).map_err(|e| Stop::usage(format!("cannot write the state: {e}")))?;
    Ok(enrolled)
}

/// ROOT/etc/machine-id, if it holds one.
fn machine_id(root: &Path) -> Option<String> {
    let id = std::fs::read_to_string(root.join("etc/machine-id")).ok()?;
    let id = id.trim();
    (id.len() >= 16 && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

/// What the agent says of its server: the root's host name and OS, the running kernel (when
/// the root is this server's own), and the address it reaches the service from.
fn host_info(root: &Path, service: &str) -> HostInfo {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    let uname = rustix::system::uname();
    let this_server = root == Path::new("/");
    let hostname = match read("etc/hostname").trim() {
        "" if this_server => uname.nodename().to_string_lossy().into_owned(),
        name => name.to_string(),
    };
    let os = read("etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    let kernel = if this_server { uname.release().to_string_lossy().into_owned() } else { String::new() };
    // The local address of a (never sent) UDP "connection" to the service: the one it sees.
    let addresses = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(service).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| vec![a.ip().to_string()])
        .unwrap_or_default();
    HostInfo { hostname, os, kernel, addresses }
}

//! A `posture serve` child on a temporary data directory and a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::tls::Trust;
use client::{call_at, Credentials, Endpoint, Signing};
use serde_json::Value;

pub struct Service {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub creds: Credentials,
    pub account_id: String,
    child: Child,
    /// Further nodes on the same data directory and database (`--nodes`).
    nodes: Vec<Node>,
    /// The service's PostgreSQL database (`--database`), dropped after the service.
    pub db: Option<store::testing::TestDatabase>,
    /// Served over HTTPS, with a certificate from this CA.
    https: Option<Trust>,
    /// The arguments that serve it so (`--tls-cert` …): every node and restart gets them too.
    tls_args: Vec<String>,
}

/// Another `serve` of the same service.
pub struct Node {
    pub endpoint: String,
    child: Child,
}

/// Where `bench --database` creates the services' databases (None: SQLite).
static DATABASE_SERVER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Sets the PostgreSQL server every service of this run uses (before the first starts).
pub fn use_database(server: Option<String>) {
    let _ = DATABASE_SERVER.set(server);
}

fn spawn(exe: &Path, endpoint: &str, data: &Path, extra: &[&str], log: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["serve", "--listen", endpoint, "--data"])
        .arg(data)
        .args(extra)
        .env("POSTURE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Service {
    /// Starts a service with `extra` arguments (e.g. `--workers 0`).
    pub fn start(extra: &[&str]) -> Result<Service, String> {
        Service::start_on(extra, false)
    }

    /// [`Service::start`], over HTTPS when `https` (a certificate from a CA made for it).
    pub fn start_on(extra: &[&str], https: bool) -> Result<Service, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let db = match DATABASE_SERVER.get().cloned().flatten() {
            Some(server) => Some(store::testing::TestDatabase::create_on(&server)?),
            None => None,
        };
        let mut extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        if let Some(db) = &db {
            extra.extend(["--database".into(), db.url.clone()]);
        }
        let mut tls_args = Vec::new();
        let https = match https {
            false => None,
            true => {
                let issued = crate::tls_cmd::issue(&dir.path().join("tls"), &[], 30)?;
                for (flag, path) in [("--tls-cert", &issued.cert), ("--tls-key", &issued.key), ("--tls-ca", &issued.ca)]
                {
                    tls_args.extend([flag.to_string(), path.display().to_string()]);
                }
                Some(Trust::ca_file(&issued.ca)?)
            }
        };
        extra.extend(tls_args.iter().cloned());
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        for _ in 0..5 {
            let endpoint = format!("127.0.0.1:{}", free_port().map_err(|e| e.to_string())?);
            let mut child = spawn(&exe, &endpoint, &data, &extra, &dir.path().join("serve.log"))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if client::send(&endpoint, "GET", "", &[], b"").is_ok() {
                    let creds: Value = serde_json::from_str(
                        &std::fs::read_to_string(data.join("credentials.json")).map_err(|e| e.to_string())?,
                    )
                    .map_err(|e| e.to_string())?;
                    let s = |k: &str| creds[k].as_str().unwrap_or_default().to_string();
                    return Ok(Service {
                        creds: Credentials { access_key_id: s("AccessKeyId"), access_key_secret: s("AccessKeySecret") },
                        account_id: s("AccountId"),
                        endpoint,
                        child,
                        nodes: Vec::new(),
                        dir,
                        db,
                        https,
                        tls_args,
                    });
                }
                if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        Err(format!("the service did not start; see {}", dir.path().join("serve.log").display()))
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts another node of this service (same data directory and database; PostgreSQL
    /// only) with `extra` arguments.
    pub fn add_node(&mut self, extra: &[&str]) -> Result<(), String> {
        if self.db.is_none() {
            return Err("several nodes need --database".into());
        }
        let endpoint = format!("127.0.0.1:{}", free_port().map_err(|e| e.to_string())?);
        let log = self.dir.path().join(format!("node-{}.log", self.nodes.len() + 1));
        let child = self.serve(&endpoint, extra, &log)?;
        self.nodes.push(Node { endpoint, child });
        Ok(())
    }

    /// Stops the service and starts it again on the same address, data and database, with
    /// `extra` arguments.
    pub fn restart(&mut self, extra: &[&str]) -> Result<(), String> {
        stop(&mut self.child);
        let log = self.dir.path().join("serve-restarted.log");
        self.child = self.serve(&self.endpoint, extra, &log)?;
        Ok(())
    }

    /// A `serve` of this service's data directory (and database) on `endpoint` with `extra`
    /// arguments, once it answers.
    fn serve(&self, endpoint: &str, extra: &[&str], log: &Path) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut extra = extra.to_vec();
        if let Some(db) = &self.db {
            extra.extend(["--database", db.url.as_str()]);
        }
        extra.extend(self.tls_args.iter().map(String::as_str));
        let mut child = spawn(&exe, endpoint, &self.data(), &extra, log)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while client::send(endpoint, "GET", "", &[], b"").is_err() {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("a serve did not start; see {}", log.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    /// Every node, the first node first.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, String> {
        std::iter::once(&self.endpoint).chain(self.nodes.iter().map(|n| &n.endpoint)).map(|e| self.at(e)).collect()
    }

    /// One node's address as an endpoint (HTTPS when the service serves it).
    fn at(&self, authority: &str) -> Result<Endpoint, String> {
        match &self.https {
            Some(trust) => Endpoint::https(authority, trust),
            None => Ok(Endpoint::plain(authority)),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Opens the service's store from this process (for bulk set-up, as `posture instances add`).
    pub fn store(&self) -> Result<store::Store, String> {
        let database = self.db.as_ref().map(|d| d.url.clone());
        store::Store::connect(&store::Location { data: self.data(), database, master_key: None, pool: None })
            .map_err(|e| e.to_string())
    }

    /// One signed call; an API error is an Err with its code.
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let p: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = call_at(&self.at(&self.endpoint)?, &self.creds, action, &p, Signing::V3).map_err(|e| e.to_string())?;
        let v = r.json();
        if r.status != 200 {
            return Err(format!("{action}: {} {}", r.status, r.body));
        }
        Ok(v)
    }

    /// The service's peak resident memory so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        status_kb(format!("/proc/{}/status", self.child.id()), "VmHWM:") / 1024.0
    }

    /// CPU time the service has used so far (user + system), in seconds: what a request
    /// costs the service, whatever else the machine is doing.
    pub fn cpu_seconds(&self) -> f64 {
        std::iter::once(self.child.id()).chain(self.nodes.iter().map(|n| n.child.id())).map(cpu_seconds_of).sum()
    }
}

/// CPU time a process has used (user + system), in seconds.
fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) closed by ')': utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

impl Service {
    /// Submits a full check (SubmitCheck) and waits up to `limit` until GetCheckProcess says
    /// it is done, telling `progress` the hosts finished and to do; returns the run's id.
    pub fn full_check(&self, limit: Duration, mut progress: impl FnMut(&Value, &Value)) -> Result<String, String> {
        let run = self.call("SubmitCheck", &[("ScanRange", "FULL")])?;
        let id = run["TaskId"].as_str().unwrap_or_default().to_string();
        self.wait(limit, || {
            let p = self.call("GetCheckProcess", &[("TaskId", &id)])?;
            progress(&p["FinishCount"], &p["TotalCount"]);
            Ok(p["StatusCode"] == "2")
        })?;
        Ok(id)
    }

    /// Polls `f` until it returns true (every 50 ms, up to `limit`).
    pub fn wait(&self, limit: Duration, mut f: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if f()? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("gave up after {limit:?}"))
    }
}

fn status_kb(path: impl AsRef<Path>, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0.0)
}

/// Stops a `serve` with SIGTERM (SIGKILL after 10 s).
fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Service {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            stop(&mut n.child);
        }
        stop(&mut self.child);
    }
}

//! A `posture serve` child on a temporary data directory and a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::client::{call, Credentials, Signing};
use serde_json::Value;

pub struct Service {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub creds: Credentials,
    pub account_id: String,
    child: Child,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Service {
    /// Starts a service with `extra` arguments (e.g. `--workers 0`).
    pub fn start(extra: &[&str]) -> Result<Service, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        for _ in 0..5 {
            let endpoint = format!("127.0.0.1:{}", free_port().map_err(|e| e.to_string())?);
            let log = std::fs::File::create(dir.path().join("serve.log")).map_err(|e| e.to_string())?;
            let mut child = Command::new(&exe)
                .args(["serve", "--listen", &endpoint, "--data"])
                .arg(&data)
                .args(extra)
                .env("POSTURE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if api::client::send(&endpoint, "GET", "", &[], b"").is_ok() {
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
                        dir,
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Opens the service's store from this process (for bulk set-up, as `posture instances add`).
    pub fn store(&self) -> Result<store::Store, String> {
        store::Store::open(&self.data().join("posture.db")).map_err(|e| e.to_string())
    }

    /// One signed call; an API error is an Err with its code.
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let p: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = call(&self.endpoint, &self.creds, action, &p, Signing::V3).map_err(|e| e.to_string())?;
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
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) closed by ')': utime is the 12th, stime the 13th.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // USER_HZ is 100 on Linux.
        (ticks(11) + ticks(12)) / 100.0
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

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real `posture serve` on a free loopback port and a temporary data directory.
#![allow(dead_code)]

pub mod agents;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::tls::Trust;
use client::{call_at, Credentials, Endpoint, Response, Signing};
use serde_json::Value;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub creds: Credentials,
    pub account_id: String,
    child: Option<Child>,
    /// Run the server with at most this many open files (`ulimit -n`).
    pub max_files: Option<u32>,
    /// Served over HTTPS, with a certificate from this CA.
    pub ca: Option<PathBuf>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_posture")
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(None, extra)
    }

    /// Starts with at most `max_files` open files, if given.
    pub fn start_with(max_files: Option<u32>, extra: &[&str]) -> Server {
        let mut s = Server::unstarted(max_files);
        s.spawn(extra);
        s
    }

    /// A server not started yet: its data directory is `data()`, empty.
    pub fn unstarted(max_files: Option<u32>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server {
            endpoint: String::new(),
            creds: Credentials { access_key_id: String::new(), access_key_secret: String::new() },
            account_id: String::new(),
            child: None,
            max_files,
            ca: None,
            dir,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server on the same data directory. The port is picked free
    /// just before; if another test took it meanwhile, the server exits and we try another.
    pub fn spawn(&mut self, extra: &[&str]) {
        for _attempt in 0..5 {
            self.endpoint = format!("127.0.0.1:{}", free_port());
            let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
            let data = self.data();
            let mut args = vec!["serve", "--demo", "--listen", &self.endpoint, "--data", data.to_str().unwrap()];
            args.extend(extra);
            let mut command = match self.max_files {
                Some(n) => {
                    let mut c = Command::new("sh");
                    c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin()]);
                    c
                }
                None => Command::new(bin()),
            };
            let mut child = command.args(&args).stdout(Stdio::null()).stderr(log).spawn().unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let started = loop {
                if healthz_at(&self.endpoint, self.ca.as_deref()).ok() == Some(200) {
                    break true;
                }
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                if Instant::now() >= deadline {
                    // Killed first: a panic here must not leave the server running.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "serve did not start: {}",
                        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap()
                    );
                }
                std::thread::sleep(Duration::from_millis(30));
            };
            self.child = Some(child);
            if started {
                break;
            }
            self.child = None;
        }
        assert!(
            self.child.is_some(),
            "serve exited at start: {}",
            std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap()
        );
        let creds: Value =
            serde_json::from_str(&std::fs::read_to_string(self.data().join("credentials.json")).unwrap()).unwrap();
        self.creds = Credentials {
            access_key_id: creds["AccessKeyId"].as_str().unwrap().into(),
            access_key_secret: creds["AccessKeySecret"].as_str().unwrap().into(),
        };
        self.account_id = creds["AccountId"].as_str().unwrap().into();
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the server with SIGKILL (no chance to finish anything) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`HUP`, `TERM` …) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the server runs").id().to_string();
        assert!(Command::new("kill").arg(format!("-{name}")).arg(pid).status().unwrap().success());
    }

    /// The service's URL (`https://` when it serves TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.ca.is_some() { "https" } else { "http" }, self.endpoint)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// A client for this server's admin key.
    pub fn client(&self) -> Client {
        self.with_key(&self.creds.access_key_id, &self.creds.access_key_secret)
    }

    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Response {
        self.client().call(action, params)
    }

    pub fn call_with(&self, action: &str, params: &[(&str, &str)], signing: Signing) -> Response {
        self.client().call_with(action, params, signing)
    }

    pub fn ok(&self, action: &str, params: &[(&str, &str)]) -> Value {
        self.client().ok(action, params)
    }

    pub fn err(&self, action: &str, params: &[(&str, &str)], status: u16, code: &str) -> Value {
        self.client().err(action, params, status, code)
    }

    pub fn fleet(&self, instance: &str, rel: &str) -> PathBuf {
        self.data().join("fleet").join(instance).join(rel)
    }

    /// Registers one instance from its JSON line (`posture instances add`).
    pub fn add_instance(&self, line: &Value) {
        let file = self.dir.path().join(format!("{}.jsonl", line["InstanceId"].as_str().unwrap()));
        std::fs::write(&file, format!("{line}\n")).unwrap();
        self.admin("instances", "add", &["--account", &self.account_id, "--file", file.to_str().unwrap()]);
    }

    /// Submits a task of `check` on `instance` and waits for it; its row.
    pub fn run_task(&self, check: &str, kind: &str, instance: &str, extra: &[(&str, &str)]) -> Value {
        let mut p = vec![("CheckId", check), ("Type", kind), ("OperationTaskInstances.1.InstanceId", instance)];
        p.extend_from_slice(extra);
        let root = self.ok("SubmitOperationTask", &p)["RootTaskId"].as_str().unwrap().to_string();
        self.wait_root(check.parse().unwrap(), &root).remove(0)
    }

    /// Rolls back the repair whose row is `repair` and waits for it; its row.
    pub fn roll_back(&self, check: &str, instance: &str, repair: &Value) -> Value {
        let task = repair["TaskId"].as_str().unwrap();
        self.run_task(check, "ROLLBACK", instance, &[("OperationTaskInstances.1.TaskId", task)])
    }

    /// Runs a check of every instance and waits, at most `within`, for each instance's part to
    /// end; returns the run's details as ListOperationProcessDetail last answered.
    pub fn check_run(&self, within: Duration) -> Value {
        let run = self.ok("SubmitCheck", &[])["TaskId"].as_str().unwrap().to_string();
        let deadline = Instant::now() + within;
        loop {
            let v = self.ok("ListOperationProcessDetail", &[("TaskIds.1", &run), ("PageSize", "100")]);
            let details = v["ProcessDetails"].as_array().unwrap();
            if !details.is_empty() && details.iter().all(|d| d["StatusCode"] != 0 && d["StatusCode"] != 1) {
                return v;
            }
            assert!(Instant::now() < deadline, "the check run did not end: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls ListOperationTask until the task of `root` is terminal; returns its row.
    pub fn wait_root(&self, check_id: i64, root: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.ok("ListOperationTask", &[("CheckId", &check_id.to_string()), ("PageSize", "100")]);
            let rows: Vec<Value> =
                v["OperationTasks"].as_array().unwrap().iter().filter(|r| r["RootTaskId"] == root).cloned().collect();
            let done = |s: &str| model::TaskStatus::parse(s).is_some_and(|s| s.is_terminal());
            if !rows.is_empty() && rows.iter().all(|r| done(r["Status"].as_str().unwrap())) {
                return rows;
            }
            assert!(Instant::now() < deadline, "root {root} did not finish: {rows:?}");
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

/// `GET /healthz` over HTTPS (trusting `ca`) or plain HTTP; the status.
pub fn healthz_at(endpoint: &str, ca: Option<&Path>) -> std::io::Result<u16> {
    let Some(ca) = ca else { return healthz(endpoint) };
    let e = Endpoint::https(endpoint, &Trust::ca_file(ca).map_err(std::io::Error::other)?)
        .map_err(std::io::Error::other)?;
    let request = client::Request {
        host: endpoint.into(),
        path: "/healthz".into(),
        query: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    Ok(client::Connection::open_at(&e)?.send("GET", &request)?.status)
}

pub fn healthz(endpoint: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(endpoint)?;
    write!(s, "GET /healthz HTTP/1.1\r\nhost: {endpoint}\r\nconnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies a directory tree: files with their modes, links as links (a demo server's unit links
/// point into /lib, which its root does not have).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Runs `posture <args>` and returns (exit code, stdout as JSON or Null, stderr).
pub fn posture(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Server {
    /// A client for another key of this server.
    pub fn with_key(&self, key_id: &str, secret: &str) -> Client {
        Client {
            endpoint: self.endpoint.clone(),
            creds: Credentials { access_key_id: key_id.into(), access_key_secret: secret.into() },
            ca: self.ca.clone(),
        }
    }

    /// `posture <cmd> <sub> --data <this server's data dir> <args>`.
    pub fn admin(&self, cmd: &str, sub: &str, args: &[&str]) -> Value {
        let data = self.data();
        let mut all = vec![cmd, sub, "--data", data.to_str().unwrap()];
        all.extend(args);
        let (code, v, err) = posture(&all);
        assert_eq!(code, 0, "posture {all:?}: {err}");
        v
    }
}

/// A signed client for one AccessKey.
pub struct Client {
    pub endpoint: String,
    pub creds: Credentials,
    /// HTTPS, trusting this CA.
    pub ca: Option<PathBuf>,
}

impl Client {
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Response {
        self.call_with(action, params, Signing::V3)
    }

    pub fn call_with(&self, action: &str, params: &[(&str, &str)], signing: Signing) -> Response {
        let p: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        call_at(&self.endpoint(), &self.creds, action, &p, signing).unwrap()
    }

    /// Where its requests go.
    pub fn endpoint(&self) -> Endpoint {
        match &self.ca {
            Some(ca) => Endpoint::https(&self.endpoint, &Trust::ca_file(ca).unwrap()).unwrap(),
            None => Endpoint::plain(&self.endpoint),
        }
    }

    /// Calls and asserts success (HTTP 200, a RequestId, never a Code); returns the body.
    pub fn ok(&self, action: &str, params: &[(&str, &str)]) -> Value {
        let r = self.call(action, params);
        assert_eq!(r.status, 200, "{action}: {}", r.body);
        let v = r.json();
        assert!(v.get("Code").is_none() && v["RequestId"].is_string(), "{}", r.body);
        v
    }

    /// Calls and asserts the error code and status; returns the body.
    pub fn err(&self, action: &str, params: &[(&str, &str)], status: u16, code: &str) -> Value {
        let r = self.call(action, params);
        let v = r.json();
        assert_eq!((r.status, v["Code"].as_str().unwrap_or("")), (status, code), "{action}: {}", r.body);
        v
    }
}

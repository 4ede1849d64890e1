//! Agents as separate processes, each with its own root and state directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{read, Server};

pub const SSHD: &str = "# sshd\nPort 22\nPermitRootLogin yes\nPermitEmptyPasswords no\nX11Forwarding yes\n";

/// The agent binary, built beside posture by `cargo test --workspace`.
pub fn agent_bin() -> PathBuf {
    let bin = Path::new(super::bin()).with_file_name("posture-agent");
    assert!(bin.exists(), "{} is missing: run the workspace's tests (cargo test --workspace)", bin.display());
    bin
}

/// A server root of one agent, and its state directory.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Agent {
    pub fn new() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sshd = dir.path().join("root/etc/ssh/sshd_config");
        std::fs::create_dir_all(sshd.parent().unwrap()).unwrap();
        std::fs::write(&sshd, SSHD).unwrap();
        std::fs::write(dir.path().join("root/etc/login.defs"), "PASS_MAX_DAYS\t99999\n").unwrap();
        Agent { dir, child: None }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn sshd(&self) -> String {
        read(&self.root().join("etc/ssh/sshd_config"))
    }

    /// `posture-agent enroll`: exit status, stdout as JSON, stderr.
    pub fn enroll(&self, server: &Server, token: &str, instance_id: &str) -> (i32, Value, String) {
        self.enroll_with(server, token, instance_id, &[])
    }

    /// [`Agent::enroll`] with more arguments (`--ca FILE`, `--fingerprint PIN`).
    pub fn enroll_with(&self, server: &Server, token: &str, instance_id: &str, extra: &[&str]) -> (i32, Value, String) {
        let out = Command::new(agent_bin())
            .args(["enroll", "--server", &server.url(), "--token", token])
            .args(["--state", self.state().to_str().unwrap(), "--root", self.root().to_str().unwrap()])
            .args(["--instance-id", instance_id, "--region-id", "lab"])
            .args(extra)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn enrolled(&self, server: &Server, token: &str, instance_id: &str) -> String {
        self.enrolled_with(server, token, instance_id, &[])
    }

    /// [`Agent::enrolled`] with more arguments.
    pub fn enrolled_with(&self, server: &Server, token: &str, instance_id: &str, extra: &[&str]) -> String {
        let (code, v, err) = self.enroll_with(server, token, instance_id, extra);
        assert_eq!(code, 0, "enroll: {err}");
        v["AgentId"].as_str().unwrap().to_string()
    }

    /// Starts `posture-agent run`.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("agent.log")).unwrap();
        let child = Command::new(agent_bin())
            .args(["run", "--state", self.state().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the running agent to exit by itself; its exit status.
    pub fn exited(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let c = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The agent's secret key and id, read from its state (to act as the agent by hand).
    pub fn identity(&self) -> ([u8; 32], String) {
        let key = hex::decode(read(&self.state().join("key")).trim()).unwrap();
        let enrolled: Value = serde_json::from_str(&read(&self.state().join("agent.json"))).unwrap();
        (key.try_into().unwrap(), enrolled["AgentId"].as_str().unwrap().to_string())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn token(server: &Server, extra: &[&str]) -> String {
    let data = server.data();
    let mut args = vec!["agents", "token", "create", "--data", data.to_str().unwrap(), "--account", &server.account_id];
    args.extend(extra);
    let (code, v, err) = super::posture(&args);
    assert_eq!(code, 0, "{err}");
    v["Token"].as_str().unwrap().to_string()
}

/// Waits until the instance has a result for the check item; returns its status.
pub fn result_of(server: &Server, check_id: &str, instance_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = server.ok("ListCheckInstanceResult", &[("CheckId", check_id), ("PageSize", "100")]);
        let row = v["BasicData"].as_array().unwrap().iter().find(|r| r["InstanceId"] == instance_id).cloned();
        if let Some(row) = row {
            return row["Status"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no result of {check_id} on {instance_id}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn submit(server: &Server, kind: &str, instance_id: &str, repair_task: Option<&str>) -> String {
    let mut p = vec![("CheckId", "1001"), ("Type", kind), ("OperationTaskInstances.1.InstanceId", instance_id)];
    if let Some(t) = repair_task {
        p.push(("OperationTaskInstances.1.TaskId", t));
    }
    server.ok("SubmitOperationTask", &p)["RootTaskId"].as_str().unwrap().to_string()
}

/// Waits for a root task to finish; its one task row.
pub fn finished(server: &Server, root: &str) -> Value {
    server.wait_root(1001, root).remove(0)
}

//! Repairs that take effect on live systems: a real sshd, a real Redis and the kernel's own
//! parameters (in a network namespace of their own), each registered as a live instance of a
//! real `posture serve` and repaired and rolled back through the API.
//!
//! They need root and the daemons (openssh-server, redis-server, util-linux's unshare and
//! iproute2); without them each test says why it was skipped, unless POSTURE_REQUIRE_LIVE is
//! set (as the README's test command sets it), when a missing piece fails the test instead.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, read, Server};
use serde_json::Value;

const SSHD: &str = "/usr/sbin/sshd";
const REDIS: &str = "/usr/bin/redis-server";

/// Whether this machine can run the test; says why not (or fails, when it must run).
fn can_run(what: &str, programs: &[&str]) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !Path::new(p).exists()).collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root { format!("{} not installed", missing.join(", ")) } else { "not running as root".into() };
    assert!(std::env::var_os("POSTURE_REQUIRE_LIVE").is_none(), "{what} must run (POSTURE_REQUIRE_LIVE): {why}");
    eprintln!("skipped {what}: {why}");
    false
}

/// A root directory: canonical, so that the paths a daemon is given are the root's own.
fn live_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    (dir, root)
}

/// Registers `root` as the live instance `id` with these services.
fn register(server: &Server, id: &str, root: &Path, services: Value) {
    server.add_instance(
        &serde_json::json!({"InstanceId": id, "InstanceName": id, "Root": root, "Live": true, "Services": services}),
    );
}

/// Runs a check of every instance and waits for it.
fn check_now(server: &Server) {
    server.check_run(Duration::from_secs(60));
}

/// The result of one item on one instance: its row of ListCheckInstanceResult.
fn result(server: &Server, check: &str, id: &str) -> Value {
    let v = server.ok("ListCheckInstanceResult", &[("CheckId", check), ("InstanceIds.1", id), ("Lang", "en")]);
    v["BasicData"].as_array().unwrap().iter().find(|r| r["InstanceId"] == id).cloned().unwrap_or_default()
}

/// The value of `name` in a result's Config.
fn shown(result: &Value, name: &str) -> String {
    let config = result["InstanceInfo"]["Config"].as_array().cloned().unwrap_or_default();
    config
        .iter()
        .find(|c| c["Name"] == name)
        .map(|c| c["Value"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// A real sshd on a loopback port, its configuration, host key, PID file and log in a root.
struct Sshd {
    child: Child,
    root: PathBuf,
    pid: u32,
}

impl Sshd {
    const CONFIG: &'static str = "etc/ssh/sshd_config";

    fn start(root: &Path) -> Sshd {
        // sshd (and `sshd -t`) needs its privilege separation directory, made at boot where
        // it runs as a service.
        std::fs::create_dir_all("/run/sshd").unwrap();
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        let key = root.join("etc/ssh/ssh_host_ed25519_key");
        let made = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
        assert!(made.success());
        let config = format!(
            "# a test sshd\nPort {}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nPermitRootLogin yes\nX11Forwarding yes\nUsePAM no\n",
            free_port(),
            key.display(),
            root.join("run/sshd.pid").display()
        );
        std::fs::write(root.join(Self::CONFIG), config).unwrap();
        std::fs::set_permissions(root.join(Self::CONFIG), std::fs::Permissions::from_mode(0o600)).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(root.join(Self::CONFIG))
            .arg("-E")
            .arg(root.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut sshd = Sshd { pid: child.id(), child, root: root.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(10);
        // sshd writes its pid file just after it says it is listening: wait for both.
        let pid_file = root.join("run/sshd.pid");
        let pid_written = || std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim().parse::<u32>().is_ok());
        while !sshd.log().contains("Server listening") || !pid_written() {
            assert!(sshd.child.try_wait().unwrap().is_none(), "sshd exited: {}", sshd.log());
            assert!(Instant::now() < deadline, "sshd did not start: {}", sshd.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        sshd.pid = read(&pid_file).trim().parse().unwrap();
        sshd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("sshd.log")).unwrap_or_default()
    }

    /// How many times it re-read its configuration.
    fn reloads(&self) -> usize {
        self.log().matches("Received SIGHUP; restarting.").count()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none() && Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// `sshd -T`: the configuration in effect.
    fn effective(&self, keyword: &str) -> String {
        let out = Command::new(SSHD).arg("-T").arg("-f").arg(self.root.join(Self::CONFIG)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| l.strip_prefix(&format!("{keyword} "))).unwrap_or_default().to_string()
    }

    fn config(&self) -> String {
        read(&self.root.join(Self::CONFIG))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test-only check item whose repair sets a directive sshd does not know: `sshd -t` must
/// refuse it before it is written.
const UNKNOWN_DIRECTIVE_ITEM: &str = r#"[[checks]]
id = 9901
key = "test-sshd-unknown-directive"
name = { zh = "测试", en = "test: a directive sshd does not know" }
risk = "LOW"
applies_if = "sshd.present"
description = { zh = "t", en = "t" }
solution = { zh = "t", en = "t" }
assist = { zh = "t", en = "t" }
policy = { type = "COMPLIANCE", standard_id = 99, standard = { zh = "s", en = "s" }, requirement_id = 991, requirement = { zh = "r", en = "r" }, section_id = 9911, section = { zh = "c", en = "c" } }
rule = [{ key = "sshd.frobnicate", op = "present" }]
[checks.repair]
support_type = 1
reset = true
flow = [{ zh = "f", en = "f" }]
steps = [{ op = "set_directive", dialect = "sshd", file = "/etc/ssh/sshd_config", key = "Frobnicate", value = "yes" }]
effect = { validate = "sshd", apply = "reload_sshd", live = "sshd_effective" }
"#;

#[test]
fn sshd_repairs_are_validated_reloaded_and_verified_in_effect_and_rolled_back_alike() {
    if !can_run("the sshd test", &[SSHD, "/usr/bin/ssh-keygen"]) {
        return;
    }
    let catalog = tempfile::tempdir().unwrap();
    std::fs::write(catalog.path().join("test.toml"), UNKNOWN_DIRECTIVE_ITEM).unwrap();
    let server = Server::start(&["--catalog-dir", catalog.path().to_str().unwrap()]);
    let (_dir, root) = live_root();
    let mut sshd = Sshd::start(&root);
    register(&server, "live-ssh", &root, serde_json::json!({"sshd": {"PidFile": "/run/sshd.pid"}}));

    check_now(&server);
    let before = result(&server, "1001", "live-ssh");
    assert_eq!(before["Status"], "NOT_PASS", "{before}");
    assert_eq!(shown(&before, "PermitRootLogin (live)"), "yes", "the value in effect is evidence: {before}");

    // PermitRootLogin, then MaxAuthTries: each validated, reloaded (same PID), verified by sshd -T.
    let original = sshd.config();
    let root_login = server.run_task("1001", "REPAIR", "live-ssh", &[]);
    assert_eq!(root_login["Status"], "REPAIR_SUCCESS_VERIFIED", "{root_login}\n{}", sshd.log());
    let verification = root_login["Verification"].as_str().unwrap();
    assert!(verification.contains("sshd -t") && verification.contains("sshd -T"), "{verification}");
    assert_eq!(sshd.reloads(), 1, "{}", sshd.log());
    assert!(sshd.alive(), "the same sshd process (PID {}) runs on", sshd.pid);
    assert_eq!(read(&root.join("run/sshd.pid")).trim(), sshd.pid.to_string());
    assert_eq!(sshd.effective("permitrootlogin"), "no");
    let tries = server.run_task(
        "1003",
        "REPAIR",
        "live-ssh",
        &[("RepairTempParam.1.Name", "MaxAuthTries"), ("RepairTempParam.1.Value", "3")],
    );
    assert_eq!(tries["Status"], "REPAIR_SUCCESS_VERIFIED", "{tries}");
    assert_eq!((sshd.reloads(), sshd.effective("maxauthtries").as_str()), (2, "3"));
    check_now(&server);
    let after = result(&server, "1001", "live-ssh");
    assert_eq!((after["Status"].as_str(), shown(&after, "PermitRootLogin (live)").as_str()), (Some("PASS"), "no"));

    // A directive sshd does not know is refused by sshd -t: nothing written, nothing reloaded.
    let unknown = server.run_task("9901", "REPAIR", "live-ssh", &[]);
    assert_eq!(unknown["Status"], "REPAIR_FAIL", "{unknown}");
    assert_eq!(unknown["ErrorCode"], "ServiceRejectedConfig", "{unknown}");
    assert!(unknown["ErrorMsg"].as_str().unwrap().contains("Bad configuration option: Frobnicate"), "{unknown}");
    assert!(!sshd.config().contains("Frobnicate") && sshd.reloads() == 2 && sshd.alive());

    // A PID file naming another process: it is never signalled, and the repair is undone.
    let pid_file = root.join("run/sshd.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
    let before = sshd.config();
    let x11 = server.run_task("1004", "REPAIR", "live-ssh", &[]);
    assert_eq!(
        (x11["Status"].as_str(), x11["ErrorCode"].as_str()),
        (Some("REPAIR_FAIL"), Some("LiveApplyFailed")),
        "{x11}"
    );
    assert!(x11["ErrorMsg"].as_str().unwrap().contains("is not sshd"), "{x11}");
    assert_eq!(sshd.config(), before, "the file is put back");
    std::fs::write(&pid_file, format!("{}\n", sshd.pid)).unwrap();
    assert_eq!(sshd.reloads(), 2);

    // Rollbacks, latest first: each restores, validates, reloads and verifies.
    let undone = server.roll_back("1003", "live-ssh", &tries);
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!((sshd.reloads(), sshd.effective("maxauthtries").as_str()), (3, "6"));
    assert!(undone["Verification"].as_str().unwrap().contains("sshd -T"), "{undone}");

    // Restored bytes the service would now refuse (its only host key is gone) are not put back.
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let repaired = sshd.config();
    let refused = server.roll_back("1001", "live-ssh", &root_login);
    assert_eq!(
        (refused["Status"].as_str(), refused["ErrorCode"].as_str()),
        (Some("ROLL_BACK_FAIL"), Some("ServiceRejectedConfig")),
        "{refused}"
    );
    assert_eq!(sshd.config(), repaired, "nothing changed");
    assert_eq!(sshd.reloads(), 3);
    std::fs::write(&key, saved).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let undone = server.roll_back("1001", "live-ssh", &root_login);
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!(sshd.config(), original, "byte for byte");
    assert_eq!((sshd.reloads(), sshd.effective("permitrootlogin").as_str()), (4, "yes"));
    assert!(sshd.alive());
}

/// A real redis-server on a loopback port, started on the root's redis.conf.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(root: &Path) -> Redis {
        let port = free_port();
        std::fs::create_dir_all(root.join("etc/redis")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        let conf = format!(
            "# a test redis\nbind 0.0.0.0\nport {port}\nprotected-mode no\nsave \"\"\nappendonly no\ndir {}\n",
            root.join("var").display()
        );
        std::fs::write(root.join("etc/redis/redis.conf"), conf).unwrap();
        let child = Command::new(REDIS)
            .arg(root.join("etc/redis/redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// `CONFIG GET key`, asked over its own protocol.
    fn get(&self, key: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).unwrap();
        let mut r = BufReader::new(s);
        let mut lines = Vec::new();
        for _ in 0..5 {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(l.trim_end().to_string());
        }
        assert_eq!(lines[0], "*2", "{lines:?}");
        lines[4].clone()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_repairs_take_effect_with_config_set_and_a_file_unlike_the_service_fails() {
    if !can_run("the Redis test", &[REDIS]) {
        return;
    }
    let server = Server::start(&[]);
    let (_dir, root) = live_root();
    let redis = Redis::start(&root);
    let address = format!("127.0.0.1:{}", redis.port);
    register(&server, "live-redis", &root, serde_json::json!({"redis": {"Address": address}}));
    let conf = root.join("etc/redis/redis.conf");
    let original = read(&conf);

    let bind = server.run_task(
        "1016",
        "REPAIR",
        "live-redis",
        &[("RepairTempParam.1.Name", "IPPort"), ("RepairTempParam.1.Value", &address)],
    );
    assert_eq!(bind["Status"], "REPAIR_SUCCESS_VERIFIED", "{bind}");
    assert!(bind["Verification"].as_str().unwrap().contains("CONFIG GET"), "{bind}");
    assert_eq!(redis.get("bind"), "127.0.0.1");
    assert!(read(&conf).contains("bind 127.0.0.1\n"));
    let undone = server.roll_back("1016", "live-redis", &bind);
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!(redis.get("bind"), "0.0.0.0");
    assert_eq!(read(&conf), original);

    // A bind that posture could not reach Redis on afterwards is refused before anything changes.
    let away = server.run_task(
        "1016",
        "REPAIR",
        "live-redis",
        &[("RepairTempParam.1.Name", "IPPort"), ("RepairTempParam.1.Value", &format!("10.9.9.9:{}", redis.port))],
    );
    assert_eq!(
        (away["Status"].as_str(), away["ErrorCode"].as_str()),
        (Some("REPAIR_FAIL"), Some("ServiceWouldBeUnreachable")),
        "{away}"
    );
    assert_eq!((read(&conf), redis.get("bind")), (original.clone(), "0.0.0.0".to_string()));

    // The file says protected-mode yes; the running Redis still has no: NOT_PASS, both shown.
    std::fs::write(&conf, original.replace("protected-mode no", "protected-mode yes")).unwrap();
    check_now(&server);
    let r = result(&server, "1017", "live-redis");
    assert_eq!(r["Status"], "NOT_PASS", "{r}");
    assert_eq!(
        (shown(&r, "protected-mode").as_str(), shown(&r, "protected-mode (live)").as_str()),
        ("yes", "no"),
        "{r}"
    );
    assert!(r["StatusMessage"].as_str().unwrap().contains("in effect \"no\""), "{r}");
    // The repair finds the file right and makes the running Redis follow it.
    let fixed = server.run_task("1017", "REPAIR", "live-redis", &[]);
    assert_eq!(fixed["Status"], "REPAIR_SUCCESS_VERIFIED", "{fixed}");
    assert_eq!(redis.get("protected-mode"), "yes");
    let undone = server.roll_back("1017", "live-redis", &fixed);
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!(redis.get("protected-mode"), "no", "the value in effect before the repair is back");
}

#[test]
fn a_root_that_is_not_live_says_no_live_step_ran() {
    let server = Server::start(&[]);
    let web01 = "i-bp1a2c3d4e5f6g7h8i9j";
    let row = server.run_task("1001", "REPAIR", web01, &[]);
    assert_eq!(row["Status"], "REPAIR_SUCCESS_VERIFIED", "{row}");
    let verification = row["Verification"].as_str().unwrap();
    assert!(verification.contains("not a live system") && verification.contains("no live step ran"), "{verification}");
}

/// A test-only check item on a per-namespace kernel parameter that takes more than two values.
const TTL_ITEM: &str = r#"[[checks]]
id = 9902
key = "test-sysctl-default-ttl"
name = { zh = "测试", en = "test: the default TTL is 64" }
risk = "LOW"
description = { zh = "t", en = "t" }
solution = { zh = "t", en = "t" }
assist = { zh = "t", en = "t" }
policy = { type = "COMPLIANCE", standard_id = 99, standard = { zh = "s", en = "s" }, requirement_id = 991, requirement = { zh = "r", en = "r" }, section_id = 9911, section = { zh = "c", en = "c" } }
rule = [{ key = "sysctl.net.ipv4.ip_default_ttl", default = "64", op = "eq", value = "64" }]
[checks.repair]
support_type = 1
reset = false
flow = [{ zh = "f", en = "f" }]
steps = [{ op = "set_directive", dialect = "sysctl", key = "net.ipv4.ip_default_ttl", value = "64" }]
effect = { apply = "sysctl_write", live = "proc_sys" }
"#;

/// Set by the outer sysctl test for the copy of this test binary it runs in a network
/// namespace of its own, where per-namespace kernel parameters can be changed safely.
const IN_NETNS: &str = "POSTURE_TEST_IN_NETNS";

#[test]
fn sysctl_repairs_follow_to_the_kernel_in_a_network_namespace() {
    if !can_run("the sysctl test", &["/usr/bin/unshare", "/usr/sbin/ip"]) {
        return;
    }
    let out = Command::new("/usr/bin/unshare")
        .arg("-n")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "sysctl_in_this_namespace", "--ignored", "--nocapture"])
        .env(IN_NETNS, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && text.contains("unshare failed") {
        assert!(std::env::var_os("POSTURE_REQUIRE_LIVE").is_none(), "unshare -n is refused here: {text}");
        eprintln!("skipped the sysctl test: this machine refuses a new network namespace: {text}");
        return;
    }
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

/// The sysctl test proper, run only inside the namespace the test above makes.
#[test]
#[ignore = "run by sysctl_repairs_follow_to_the_kernel_in_a_network_namespace, inside `unshare -n`"]
fn sysctl_in_this_namespace() {
    assert!(std::env::var_os(IN_NETNS).is_some(), "run only inside the namespace of the sysctl test");
    let up = Command::new("/usr/sbin/ip").args(["link", "set", "lo", "up"]).status().unwrap();
    assert!(up.success());
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    let set = |v: &str| std::fs::write(forward, format!("{v}\n")).unwrap();
    let get = || read(forward).trim().to_string();
    set("1");
    let catalog = tempfile::tempdir().unwrap();
    std::fs::write(catalog.path().join("test.toml"), TTL_ITEM).unwrap();
    let server = Server::start(&["--catalog-dir", catalog.path().to_str().unwrap()]);
    let (_dir, root) = live_root();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/sysctl.conf"), "# routing on\nnet.ipv4.ip_forward = 1\n").unwrap();
    register(&server, "live-kernel", &root, serde_json::json!({}));

    let repair = server.run_task("1012", "REPAIR", "live-kernel", &[]);
    assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{repair}");
    assert!(repair["Verification"].as_str().unwrap().contains("/proc/sys"), "{repair}");
    assert_eq!(get(), "0", "the kernel follows the repair");
    let undone = server.roll_back("1012", "live-kernel", &repair);
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!(get(), "1", "and the rollback");
    assert_eq!(read(&root.join("etc/sysctl.conf")), "# routing on\nnet.ipv4.ip_forward = 1\n");

    // The file says 0 while the kernel runs 1: NOT_PASS, with both values.
    std::fs::write(root.join("etc/sysctl.conf"), "net.ipv4.ip_forward = 0\n").unwrap();
    check_now(&server);
    let r = result(&server, "1012", "live-kernel");
    assert_eq!(r["Status"], "NOT_PASS", "{r}");
    assert_eq!(
        (shown(&r, "net.ipv4.ip_forward").as_str(), shown(&r, "net.ipv4.ip_forward (live)").as_str()),
        ("0", "1")
    );
    // A value in effect changed by someone after the repair is not undone by its rollback (a
    // test-only item on a per-namespace key with more than two values).
    let ttl = Path::new("/proc/sys/net/ipv4/ip_default_ttl");
    std::fs::write(ttl, "100\n").unwrap();
    let repair = server.run_task("9902", "REPAIR", "live-kernel", &[]);
    assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{repair}");
    assert_eq!(read(ttl).trim(), "64");
    std::fs::write(ttl, "77\n").unwrap();
    let refused = server.roll_back("9902", "live-kernel", &repair);
    assert_eq!(
        (refused["Status"].as_str(), refused["ErrorCode"].as_str()),
        (Some("ROLL_BACK_FAIL"), Some("ConfigChangedSinceRepair")),
        "{refused}"
    );
    assert_eq!(read(ttl).trim(), "77", "nothing changed");
    assert!(read(&root.join("etc/sysctl.d/99-zz-posture-net.ipv4.ip_default_ttl.conf")).contains("= 64"));
    std::fs::write(ttl, "64\n").unwrap();
    let undone = server.roll_back("9902", "live-kernel", &repair);
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!(read(ttl).trim(), "100", "the value before the repair is back");
}

#[test]
fn an_agents_server_is_live_and_its_repairs_take_effect_there() {
    use common::agents::{finished, submit, token, Agent};
    if !can_run("the agent's sshd test", &[SSHD, "/usr/bin/ssh-keygen"]) {
        return;
    }
    let server = Server::start(&[]);
    let mut agent = Agent::new();
    let root = agent.root().canonicalize().unwrap();
    let mut sshd = Sshd::start(&root);
    let services = r#"{"sshd":{"PidFile":"/run/sshd.pid"}}"#;
    // Services describe a live root: with `--live no` they are a contradiction.
    let (code, _, err) =
        agent.enroll_with(&server, &token(&server, &[]), "agent-live", &["--live", "no", "--services", services]);
    assert_eq!(code, 2, "{err}");
    agent.enrolled_with(&server, &token(&server, &[]), "agent-live", &["--live", "yes", "--services", services]);
    agent.start();
    let repair = finished(&server, &submit(&server, "REPAIR", "agent-live", None));
    assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{repair}\n{}", agent.log());
    assert!(repair["Verification"].as_str().unwrap().contains("sshd -T"), "{repair}");
    assert_eq!((sshd.reloads(), sshd.effective("permitrootlogin").as_str()), (1, "no"));
    let task = repair["TaskId"].as_str().unwrap();
    let undone = finished(&server, &submit(&server, "ROLLBACK", "agent-live", Some(task)));
    assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{undone}");
    assert_eq!((sshd.reloads(), sshd.effective("permitrootlogin").as_str()), (2, "yes"));
    assert!(sshd.alive());
}

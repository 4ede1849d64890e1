//! Several `posture serve` nodes on one PostgreSQL, sharing one data directory, over real HTTP:
//! any node answers any request, a replay is refused by every node, conflicting submissions
//! spread over the nodes create one task, and a node killed while its workers hold leases is
//! taken over by another. Skipped (loudly) without a test server, required in CI (see
//! `store::testing`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::{send, sign, Credentials, Signing};
use common::{bin, free_port, healthz, posture, read, Client};
use serde_json::Value;
use store::testing::TestDatabase;

const WEB01: &str = "i-bp1a2c3d4e5f6g7h8i9j";
const WEB02: &str = "i-bp1k2l3m4n5o6p7q8r9s";

/// One node: a `posture serve` on the shared data directory and database.
struct Node {
    endpoint: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The shared state of the nodes.
struct Cluster {
    dir: tempfile::TempDir,
    db: TestDatabase,
}

impl Cluster {
    fn new() -> Option<Cluster> {
        Some(Cluster { db: TestDatabase::create()?, dir: tempfile::tempdir().unwrap() })
    }

    fn on(server: &OwnServer) -> Cluster {
        Cluster { db: TestDatabase::create_on(&server.url).unwrap(), dir: tempfile::tempdir().unwrap() }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts node `n` (its log is `node-n.log`) and waits until it answers.
    fn start(&self, n: usize, extra: &[&str]) -> Node {
        let endpoint = format!("127.0.0.1:{}", free_port());
        let log = self.dir.path().join(format!("node-{n}.log"));
        let data = self.data();
        let mut args = vec![
            "serve",
            "--demo",
            "--listen",
            &endpoint,
            "--data",
            data.to_str().unwrap(),
            "--database",
            &self.db.url,
            "--lease-ms",
            "3000",
        ];
        args.extend(extra);
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin()).args(&args).stdout(Stdio::null()).stderr(out).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while healthz(&endpoint).ok() != Some(200) {
            assert!(child.try_wait().unwrap().is_none(), "node {n} exited: {}", read(&log));
            assert!(Instant::now() < deadline, "node {n} did not start: {}", read(&log));
            std::thread::sleep(Duration::from_millis(30));
        }
        Node { endpoint, child: Some(child), log }
    }

    fn creds(&self) -> Credentials {
        let v: Value = serde_json::from_str(&read(&self.data().join("credentials.json"))).unwrap();
        Credentials {
            access_key_id: v["AccessKeyId"].as_str().unwrap().into(),
            access_key_secret: v["AccessKeySecret"].as_str().unwrap().into(),
        }
    }

    fn client(&self, node: &Node) -> Client {
        Client { endpoint: node.endpoint.clone(), creds: self.creds(), ca: None }
    }

    fn fleet(&self, instance: &str, rel: &str) -> PathBuf {
        self.data().join("fleet").join(instance).join(rel)
    }
}

/// A PostgreSQL server of one test's own (`scripts/pg.sh`), which it may stop and start.
struct OwnServer {
    url: String,
    dir: String,
}

impl OwnServer {
    /// Started only where the tests have a PostgreSQL server (the binaries are then there).
    fn start() -> Option<OwnServer> {
        drop(TestDatabase::create()?);
        let out = OwnServer::script(&["start"]);
        let value =
            |name: &str| out.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().to_string();
        Some(OwnServer { url: value("POSTURE_TEST_DATABASE_URL"), dir: value("PG_TEST_DIR") })
    }

    fn script(args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg.sh");
        let out = Command::new("bash").arg(script).args(args).output().unwrap();
        assert!(out.status.success(), "pg.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A real outage: the server shuts down (sessions ended, connections refused) ...
    fn down(&self) {
        OwnServer::script(&["down", &self.dir]);
    }

    /// ... and starts again on the same port, with the same data.
    fn up(&self) {
        OwnServer::script(&["up", &self.dir]);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        OwnServer::script(&["stop", &self.dir]);
    }
}

/// Polls (through `c`) until the root task's tasks all end; returns them.
fn wait_root(c: &Client, check: &str, root: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.ok("ListOperationTask", &[("CheckId", check), ("PageSize", "100")]);
        let rows: Vec<Value> =
            v["OperationTasks"].as_array().unwrap().iter().filter(|r| r["RootTaskId"] == root).cloned().collect();
        if !rows.is_empty() && rows.iter().all(is_terminal) {
            return rows;
        }
        assert!(Instant::now() < deadline, "root task {root} did not finish: {rows:?}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn is_terminal(t: &Value) -> bool {
    model::TaskStatus::parse(t["Status"].as_str().unwrap()).is_some_and(|s| s.is_terminal())
}

fn submit(c: &Client, params: &[(&str, &str)]) -> String {
    c.ok("SubmitOperationTask", params)["RootTaskId"].as_str().unwrap().to_string()
}

#[test]
fn three_nodes_answer_any_call_and_refuse_a_replay_sent_to_another() {
    let Some(cluster) = Cluster::new() else { return };
    // Started together: the first start (admin, key, credentials.json, demo fleet) is made once.
    let nodes: Vec<Node> = std::thread::scope(|s| {
        let started: Vec<_> = (0..3)
            .map(|n| {
                s.spawn({
                    let cluster = &cluster;
                    move || cluster.start(n, &["--workers", "4"])
                })
            })
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let data = cluster.data();
    let (code, accounts, err) =
        posture(&["accounts", "list", "--data", data.to_str().unwrap(), "--database", &cluster.db.url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(accounts.as_array().map(Vec::len), Some(1), "one admin account: {accounts}");
    let clients: Vec<Client> = nodes.iter().map(|n| cluster.client(n)).collect();

    // Repair → verified → rollback → verified, each call to another node.
    let redis = cluster.fleet(WEB01, "etc/redis/redis.conf");
    let original = read(&redis);
    let root = submit(
        &clients[0],
        &[
            ("CheckId", "1016"),
            ("Type", "REPAIR"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("RepairTempParam.1.Name", "IPPort"),
            ("RepairTempParam.1.Value", "127.0.0.1:6379"),
        ],
    );
    let done = wait_root(&clients[1], "1016", &root);
    assert_eq!(done[0]["Status"], "REPAIR_SUCCESS_VERIFIED", "{done:?}");
    assert!(read(&redis).contains("bind 127.0.0.1"));
    let task = done[0]["TaskId"].as_str().unwrap().to_string();
    let root = submit(
        &clients[2],
        &[
            ("CheckId", "1016"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", &task),
        ],
    );
    let undone = wait_root(&clients[0], "1016", &root);
    assert_eq!(undone[0]["Status"], "ROLL_BACK_VERIFIED", "{undone:?}");
    assert_eq!(read(&redis), original, "the rollback is byte-identical");

    // A request answered by one node, replayed to another: refused.
    let r = sign(&nodes[0].endpoint, &cluster.creds(), "ListCheckResult", &[], Signing::V3);
    assert_eq!(send(&r.host, "POST", &r.query, &r.headers, &r.body).unwrap().status, 200);
    let replay = send(&nodes[1].endpoint, "POST", &r.query, &r.headers, &r.body).unwrap();
    assert_eq!((replay.status, replay.json()["Code"].clone()), (400, Value::from("SignatureNonceUsed")));
}

/// Files posture's writes left in a directory.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".posture-"))
        .collect()
}

#[test]
fn conflicts_spread_over_nodes_make_one_task_and_a_killed_node_s_leases_are_taken_over() {
    let Some(cluster) = Cluster::new() else { return };
    // Three nodes that take requests and run no workers (so no task ends during the race).
    let fronts: Vec<Node> = (0..3).map(|n| cluster.start(n, &["--workers", "0"])).collect();
    let clients: Vec<Client> = fronts.iter().map(|n| cluster.client(n)).collect();
    // 16 conflicting submissions spread over the nodes: exactly one task.
    let answers: Vec<Value> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let c = &clients[i % 3];
                s.spawn(move || {
                    c.call(
                        "SubmitOperationTask",
                        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB02)],
                    )
                    .json()
                })
            })
            .collect();
        calls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created: Vec<&Value> = answers.iter().filter(|a| a["RootTaskId"].is_string()).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert!(
        answers.iter().filter(|a| a["RootTaskId"].is_null()).all(|a| a["Code"] == "RepairTaskConflict"),
        "{answers:?}"
    );
    let raced = created[0]["RootTaskId"].as_str().unwrap().to_string();

    // Nodes whose workers are killed at once, at a moment that moves each round, while the
    // repairs run; then another node finishes what they held, once their leases expire.
    let c = &clients[0];
    let files = [(WEB01, "etc/ssh/sshd_config"), (WEB01, "etc/login.defs"), (WEB02, "etc/ssh/sshd_config")];
    let original: Vec<String> = files.iter().map(|(i, f)| read(&cluster.fleet(i, f))).collect();
    let items = [("1001", WEB01), ("1003", WEB01), ("1009", WEB01), ("1004", WEB02)];
    let mut db = postgres::Client::connect(&cluster.db.url, postgres::NoTls).unwrap();
    let mut roots = Vec::new();
    let mut taken_over = Vec::new();
    for (round, (check, instance)) in items.iter().enumerate() {
        let mut worker = cluster.start(round + 3, &["--workers", "2"]);
        roots.push((
            *check,
            submit(c, &[("CheckId", check), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", instance)]),
        ));
        // Killed the moment a repair of its is seen under lease (or once nothing is left).
        let unfinished = "SELECT id FROM tasks WHERE status NOT LIKE '%VERIFIED' AND status NOT LIKE '%FAIL'";
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let held = db.query(&format!("{unfinished} AND lease_until_ms > $1"), &[&store::now_ms()]).unwrap();
            if !held.is_empty() {
                break;
            }
        }
        worker.kill9();
        // What it held and had not finished is the heir's to finish.
        for row in db.query(&format!("{unfinished} AND lease_until_ms > $1"), &[&store::now_ms()]).unwrap() {
            taken_over.push(row.get::<_, String>(0));
        }
    }
    assert!(!taken_over.is_empty(), "no worker was killed while it held a lease");
    let _heir = cluster.start(9, &["--workers", "2"]);
    assert_eq!(wait_root(c, "1001", &raced).len(), 1);
    for (check, root) in &roots {
        let t = wait_root(c, check, root);
        assert_eq!(t[0]["Status"], "REPAIR_SUCCESS_VERIFIED", "{t:?}");
    }
    // What the dead nodes held was finished once, by the heir (its second lease).
    for id in &taken_over {
        let row = db.query_one("SELECT attempts, status FROM tasks WHERE id = $1", &[id]).unwrap();
        let (attempts, status): (i64, String) = (row.get(0), row.get(1));
        assert!(attempts >= 2 && status == "REPAIR_SUCCESS_VERIFIED", "{id}: {attempts} leases, {status}");
    }
    for (i, f) in files {
        let p = cluster.fleet(i, f);
        assert_eq!(temporaries(p.parent().unwrap()), Vec::<String>::new(), "{f} on {i}");
    }
    // Undone latest first, every file is back byte for byte.
    for (check, root) in roots.iter().rev() {
        let t = &wait_root(c, check, root)[0];
        let back = submit(
            c,
            &[
                ("CheckId", check),
                ("Type", "ROLLBACK"),
                ("OperationTaskInstances.1.InstanceId", t["InstanceId"].as_str().unwrap()),
                ("OperationTaskInstances.1.TaskId", t["TaskId"].as_str().unwrap()),
            ],
        );
        assert_eq!(wait_root(c, check, &back)[0]["Status"], "ROLL_BACK_VERIFIED");
    }
    for ((i, f), before) in files.iter().zip(&original) {
        assert_eq!(&read(&cluster.fleet(i, f)), before, "{f} on {i} is not back");
    }
}

#[test]
fn a_client_token_s_call_runs_once_across_nodes_even_when_its_answer_was_lost() {
    let Some(cluster) = Cluster::new() else { return };
    let nodes: Vec<Node> = (0..3).map(|n| cluster.start(n, &["--workers", "0"])).collect();
    let clients: Vec<Client> = nodes.iter().map(|n| cluster.client(n)).collect();
    let mut db = postgres::Client::connect(&cluster.db.url, postgres::NoTls).unwrap();
    let rules = |db: &mut postgres::Client| -> i64 {
        db.query_one("SELECT COUNT(*) FROM whitelist_rules", &[]).unwrap().get(0)
    };
    let whitelist = [("CheckIds.1", "1003"), ("ClientToken", "wl-once")];
    // 12 calls with one token at once, over the three nodes: one rule, one answer for all.
    let answers: Vec<Value> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let c = &clients[i % 3];
                s.spawn(move || c.call("AddCheckResultWhiteList", &whitelist).json())
            })
            .collect();
        calls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(rules(&mut db), 1, "{answers:?}");
    assert!(answers.iter().all(|a| a["RuleIds"].is_array() && a["RuleIds"] == answers[0]["RuleIds"]), "{answers:?}");

    // A node that stopped between the call's commit and keeping its answer leaves the call
    // recorded without one: a retry is not run again, and says so.
    let call = [("CheckIds.1", "1004"), ("ClientToken", "wl-lost")];
    clients[0].ok("AddCheckResultWhiteList", &call);
    db.execute("UPDATE idempotency SET response = '' WHERE client_token = 'wl-lost'", &[]).unwrap();
    let retry = clients[1].call("AddCheckResultWhiteList", &call);
    assert_eq!((retry.status, retry.json()["Code"].as_str()), (409, Some("IdempotentProcessing")));
    assert_eq!(rules(&mut db), 2);
    // The same parameters without a token are another call.
    clients[2].ok("AddCheckResultWhiteList", &call[..1]);
    assert_eq!(rules(&mut db), 3);
}

#[test]
fn a_node_that_loses_its_database_answers_503_and_recovers_by_itself() {
    let Some(server) = OwnServer::start() else { return };
    let cluster = Cluster::on(&server);
    let node = cluster.start(0, &["--workers", "2"]);
    let c = cluster.client(&node);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answers, submitted) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let (mut answers, mut submitted) = (Vec::new(), Vec::new());
            let items = ["1001", "1003", "1009", "1010"];
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = if i % 3 == 0 {
                    let check = items[i / 3 % items.len()];
                    let r = c.call(
                        "SubmitOperationTask",
                        &[("CheckId", check), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB02)],
                    );
                    if let Some(root) = r.json()["RootTaskId"].as_str() {
                        submitted.push((check, root.to_string()));
                    }
                    r
                } else {
                    c.call("ListCheckResult", &[])
                };
                answers.push((r.status, r.json()["Code"].as_str().unwrap_or("").to_string()));
                std::thread::sleep(Duration::from_millis(5));
            }
            (answers, submitted)
        });
        // PostgreSQL stops under load (its sessions ended, then connections refused) ...
        std::thread::sleep(Duration::from_millis(300));
        server.down();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(healthz(&node.endpoint).unwrap(), 503, "the node reports its database down");
        // ... and starts again: the node recovers by itself.
        server.up();
        let deadline = Instant::now() + Duration::from_secs(20);
        while healthz(&node.endpoint).unwrap() != 200 {
            assert!(Instant::now() < deadline, "the node did not recover: {}", read(&node.log));
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().unwrap()
    });
    let failed: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(!failed.is_empty(), "the outage was seen");
    assert!(
        failed
            .iter()
            .all(|(status, code)| (*status, code.as_str()) == (503, "ServiceUnavailable")
                || code == "RepairTaskConflict"),
        "{failed:?}\n{}",
        read(&node.log)
    );
    let last = answers.iter().rev().find(|(_, code)| code != "RepairTaskConflict").unwrap();
    assert_eq!(last.0, 200, "answered again after it came back");
    // Nothing accepted was lost: every submitted task ends.
    for (check, root) in &submitted {
        let t = wait_root(&c, check, root);
        assert!(is_terminal(&t[0]), "{t:?}");
    }
}

#[test]
fn the_api_benchmark_loads_every_node_over_http_and_https() {
    // Each node must serve what the first serves: over HTTPS, a node started without the
    // certificate refused every client sent to it.
    let Some(db) = TestDatabase::create() else { return };
    let out = Command::new(bin())
        .args(["bench", "api", "--smoke", "--json", "--nodes", "2", "--database", &db.url])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "bench api failed");
    let rows: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6, "{rows:?}");
    for row in &rows {
        assert_eq!(row["nodes"], 2, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
    }
    let https = rows.iter().filter(|r| r["transport"] == "https").count();
    assert_eq!(https, 3, "{rows:?}");
}

//! The reliability suite: a real `posture serve` over real HTTP, tried as a hostile user
//! would. Repairs of one file serialised, rollbacks latest-first back to the original bytes,
//! kill -9 at random moments, replays, hostile files, hostile connections, oversized input,
//! repair values that would defeat the repair, and an interrupted first start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use client::{send, sign_at, Signing};
use common::{read, Server};
use serde_json::Value;

const WEB01: &str = "i-bp1a2c3d4e5f6g7h8i9j";
const WEB02: &str = "i-bp1k2l3m4n5o6p7q8r9s";
const CACHE01: &str = "i-uf6a1b2c3d4e5f6g7h8i";
const BUILD01: &str = "7e4d2c1b-0a9f-4e8d-b7c6-5a4b3c2d1e0f";
const JUMP: &str = "i-t4n1o2p3q4r5s6t7u8v9";

fn submit(s: &Server, params: &[(&str, &str)]) -> String {
    s.ok("SubmitOperationTask", params)["RootTaskId"].as_str().unwrap().to_string()
}

fn repair(s: &Server, check: &str, instance: &str) -> String {
    submit(s, &[("CheckId", check), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", instance)])
}

fn rollback(s: &Server, check: &str, instance: &str, task: &str) -> String {
    submit(
        s,
        &[
            ("CheckId", check),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", instance),
            ("OperationTaskInstances.1.TaskId", task),
        ],
    )
}

fn one_task(s: &Server, check: &str, root: &str) -> Value {
    let rows = s.wait_root(check.parse().unwrap(), root);
    assert_eq!(rows.len(), 1);
    rows[0].clone()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every task of the account, newest first.
fn all_tasks(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let v = s.ok("ListOperationTask", &[("PageSize", "100"), ("CurrentPage", &page.to_string())]);
        let rows = v["OperationTasks"].as_array().unwrap().clone();
        let n = rows.len();
        out.extend(rows);
        if n < 100 {
            break;
        }
    }
    out
}

fn is_terminal(t: &Value) -> bool {
    model::TaskStatus::parse(t["Status"].as_str().unwrap()).is_some_and(|s| s.is_terminal())
}

fn wait_all_terminal(s: &Server) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = all_tasks(s);
        if tasks.iter().all(is_terminal) {
            return tasks;
        }
        assert!(Instant::now() < deadline, "tasks did not finish: {tasks:?}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files posture's writes left in a directory of an instance.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".posture-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn five_repairs_of_one_file_wait_their_turn_and_undo_latest_first() {
    let mut s = Server::start(&["--workers", "0", "--demo-fleet", "roots"]);
    let path = s.fleet(WEB01, "etc/ssh/sshd_config");
    let (original, original_mode) = (read(&path), mode(&path));
    let checks = ["1001", "1003", "1004", "1005", "1006"];
    let roots: Vec<String> = checks.iter().map(|c| repair(&s, c, WEB01)).collect();
    // Accepted, all of them, never refused as a conflict: the first may run, the others wait.
    let statuses: Vec<String> = checks
        .iter()
        .zip(&roots)
        .map(|(c, r)| {
            let v = s.ok("ListOperationTask", &[("CheckId", c)]);
            let t = v["OperationTasks"].as_array().unwrap().iter().find(|t| t["RootTaskId"] == *r).unwrap().clone();
            t["Status"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(statuses, ["INIT", "THROTTLING", "THROTTLING", "THROTTLING", "THROTTLING"]);
    // Now with 8 workers racing for them.
    s.stop();
    s.spawn(&[]);
    let tasks: Vec<Value> = checks.iter().zip(&roots).map(|(c, r)| one_task(&s, c, r)).collect();
    for t in &tasks {
        assert_eq!(t["Status"], "REPAIR_SUCCESS_VERIFIED", "{t}");
    }
    let text = read(&path);
    for line in ["PermitRootLogin no", "MaxAuthTries 4", "X11Forwarding no", "LoginGraceTime 60"] {
        assert!(text.contains(line), "{line} lost:\n{text}");
    }
    assert_eq!(mode(&path), 0o600);
    // An older one first: refused, naming the latest.
    let r = s.call(
        "SubmitOperationTask",
        &[
            ("CheckId", "1001"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", tasks[0]["TaskId"].as_str().unwrap()),
        ],
    );
    assert_eq!((r.status, r.json()["Code"].as_str()), (400, Some("RollbackNotLatest")), "{}", r.body);
    assert!(r.body.contains(tasks[4]["TaskId"].as_str().unwrap()));
    // Latest first: every rollback verified, the file back to its bytes and mode.
    for (c, t) in checks.iter().zip(&tasks).rev() {
        let root = rollback(&s, c, WEB01, t["TaskId"].as_str().unwrap());
        assert_eq!(one_task(&s, c, &root)["Status"], "ROLL_BACK_VERIFIED");
    }
    assert_eq!((read(&path), mode(&path)), (original, original_mode));
    assert!(temporaries(path.parent().unwrap()).is_empty());
}

#[test]
fn check_id_repairs_of_two_items_of_one_file_over_the_fleet_lose_nothing() {
    let s = Server::start(&[]);
    let a = submit(&s, &[("CheckId", "1009"), ("Type", "REPAIR"), ("DimensionType", "CHECK_ID")]);
    let b = submit(&s, &[("CheckId", "1010"), ("Type", "REPAIR"), ("DimensionType", "CHECK_ID")]);
    let (a, b) = (s.wait_root(1009, &a), s.wait_root(1010, &b));
    for t in a.iter().chain(&b) {
        assert_eq!(t["Status"], "REPAIR_SUCCESS_VERIFIED", "{t}");
    }
    // Every instance repaired for both kept both changes.
    for t in &a {
        if b.iter().any(|x| x["InstanceId"] == t["InstanceId"]) {
            let text = read(&s.fleet(t["InstanceId"].as_str().unwrap(), "etc/login.defs"));
            assert!(text.contains("PASS_MAX_DAYS 365") && text.contains("PASS_MIN_DAYS 1"), "{text}");
        }
    }
}

/// kill -9 at random moments of repair and rollback cycles: after each restart every task
/// ends, no temporary file is left, the database is intact, and rolling back everything
/// that stands gives the original bytes.
#[test]
fn kill_9_at_random_moments_loses_nothing_and_leaves_nothing() {
    let mut s = Server::start(&[]);
    let files = [("etc/ssh/sshd_config", WEB01), ("etc/login.defs", WEB01), ("etc/ssh/sshd_config", WEB02)];
    let original: Vec<(String, u32)> =
        files.iter().map(|(f, i)| (read(&s.fleet(i, f)), mode(&s.fleet(i, f)))).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let items = [("1001", WEB01), ("1003", WEB01), ("1006", WEB01), ("1009", WEB01), ("1010", WEB01), ("1004", WEB02)];
    for round in 0..20 {
        // A few repairs (and, every other round, the rollback of the latest that stands).
        for _ in 0..3 {
            let (c, i) = items[next(items.len() as u64) as usize];
            let _ = s.call(
                "SubmitOperationTask",
                &[("CheckId", c), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", i)],
            );
        }
        if round % 2 == 1 {
            if let Some(t) = standing(&s).first() {
                let (c, i, id) =
                    (t["CheckId"].to_string(), t["InstanceId"].as_str().unwrap(), t["TaskId"].as_str().unwrap());
                let _ = s.call(
                    "SubmitOperationTask",
                    &[
                        ("CheckId", &c),
                        ("Type", "ROLLBACK"),
                        ("OperationTaskInstances.1.InstanceId", i),
                        ("OperationTaskInstances.1.TaskId", id),
                    ],
                );
            }
        }
        std::thread::sleep(Duration::from_millis(next(40)));
        s.kill9();
        let db = rusqlite::Connection::open(s.data().join("posture.db")).unwrap();
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "round {round}");
        drop(db);
        s.spawn(&[]);
        wait_all_terminal(&s);
        for (f, i) in files {
            let dir = s.fleet(i, f);
            assert_eq!(temporaries(dir.parent().unwrap()), Vec::<String>::new(), "round {round}: {f} on {i}");
        }
    }
    // Undo everything that stands, latest first.
    while let Some(t) = standing(&s).first().cloned() {
        let c = t["CheckId"].to_string();
        let root = rollback(&s, &c, t["InstanceId"].as_str().unwrap(), t["TaskId"].as_str().unwrap());
        let done = one_task(&s, &c, &root);
        assert_eq!(done["Status"], "ROLL_BACK_VERIFIED", "{done}");
    }
    for ((f, i), before) in files.iter().zip(&original) {
        let p = s.fleet(i, f);
        assert_eq!(&(read(&p), mode(&p)), before, "{f} on {i} is not back");
    }
}

/// Applied repairs with no rollback done or under way, latest first.
fn standing(s: &Server) -> Vec<Value> {
    all_tasks(s).into_iter().filter(|t| t["Type"] == "REPAIR" && t["SupportRollBack"] == true).collect()
}

#[test]
fn a_replayed_request_is_refused_at_the_edge_of_the_window_and_after_a_restart() {
    let mut s = Server::start(&[]);
    // Dated 14 min 50 s ahead (a client whose clock is fast): accepted, and its nonce must be
    // remembered until that date has left the window, i.e. for almost 30 minutes.
    let ahead = store::now_ms() + 14 * 60_000 + 50_000;
    let params = vec![
        ("CheckId".to_string(), "1001".to_string()),
        ("Type".into(), "REPAIR".into()),
        ("OperationTaskInstances.1.InstanceId".into(), WEB02.into()),
    ];
    for signing in [Signing::V3, Signing::V1] {
        let r = sign_at(&s.endpoint, &s.creds, "SubmitOperationTask", &params, signing, ahead);
        let first = send(&r.host, "POST", &r.query, &r.headers, &r.body).unwrap();
        assert_eq!(first.status, 200, "{}", first.body);
        let root = first.json()["RootTaskId"].as_str().unwrap().to_string();
        s.wait_root(1001, &root);
        let again = send(&r.host, "POST", &r.query, &r.headers, &r.body).unwrap();
        assert_eq!((again.status, again.json()["Code"].as_str()), (400, Some("SignatureNonceUsed")), "{}", again.body);
        s.stop();
        s.spawn(&[]);
        let after_restart = send(&s.endpoint, "POST", &r.query, &r.headers, &r.body).unwrap();
        assert_eq!(after_restart.json()["Code"].as_str(), Some("SignatureNonceUsed"), "{}", after_restart.body);
    }
    // A read is answered while its nonce is committed; its replay is refused all the same.
    let r = sign_at(&s.endpoint, &s.creds, "ListCheckResult", &[], Signing::V3, store::now_ms());
    assert_eq!(send(&r.host, "POST", &r.query, &r.headers, &r.body).unwrap().status, 200);
    let again = send(&r.host, "POST", &r.query, &r.headers, &r.body).unwrap();
    assert_eq!(again.json()["Code"].as_str(), Some("SignatureNonceUsed"), "{}", again.body);
    // Nothing was repaired twice.
    let repairs = all_tasks(&s).into_iter().filter(|t| t["InstanceId"] == WEB02 && t["CheckId"] == 1001).count();
    assert_eq!(repairs, 2, "one per signing");
}

#[test]
fn hostile_files_fail_their_own_task_and_never_hold_a_worker() {
    let s = Server::start(&["--workers", "2"]);
    // A FIFO where login.defs should be: opening it for reading would wait for a writer forever.
    let fifo = s.fleet(WEB01, "etc/login.defs");
    std::fs::remove_file(&fifo).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A 2 MiB sshd_config.
    let big = s.fleet(WEB02, "etc/ssh/sshd_config");
    std::fs::write(&big, format!("PermitRootLogin yes\n{}", "# padding\n".repeat(220_000))).unwrap();
    // /etc/passwd hard-linked to a file outside the instance's root.
    let outside = s.dir.path().join("outside-passwd");
    std::fs::write(&outside, "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o666)).unwrap();
    let passwd = s.fleet(BUILD01, "etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    std::fs::hard_link(&outside, &passwd).unwrap();
    // A character device (when this test may make one).
    let device = s.fleet(CACHE01, "etc/login.defs");
    std::fs::remove_file(&device).unwrap();
    let have_device = std::process::Command::new("mknod")
        .args([device.to_str().unwrap(), "c", "1", "5"])
        .status()
        .is_ok_and(|st| st.success());

    let start = Instant::now();
    let cases = [
        ("1009", WEB01, "ConfigFileNotRegular"),
        ("1001", WEB02, "ConfigFileTooLarge"),
        ("1008", BUILD01, "ConfigFileHardLinked"),
    ];
    let roots: Vec<String> = cases.iter().map(|(c, i, _)| repair(&s, c, i)).collect();
    let device_root = have_device.then(|| repair(&s, "1010", CACHE01));
    // An ordinary repair elsewhere still runs: no worker is stuck.
    let fine = repair(&s, "1001", JUMP);
    assert_eq!(one_task(&s, "1001", &fine)["Status"], "REPAIR_SUCCESS_VERIFIED");
    for ((c, _, code), root) in cases.iter().zip(&roots) {
        let t = one_task(&s, c, root);
        assert_eq!((t["Status"].as_str(), t["ErrorCode"].as_str()), (Some("BACKUP_FAIL"), Some(*code)), "{t}");
    }
    if let Some(root) = device_root {
        let t = one_task(&s, "1010", &root);
        assert_eq!(t["ErrorCode"], "ConfigFileNotRegular", "{t}");
    }
    assert!(start.elapsed() < Duration::from_secs(20), "hostile files held the workers");
    assert_eq!(mode(&outside), 0o666, "the file outside the root was not touched");
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 2_200_020);
    // A check of the hostile instances ends too (failing for them, as the log says).
    let v = s.ok(
        "VerifyCheckInstanceResult",
        &[("CheckId", "1009"), ("InstanceIds.1", WEB01), ("InstanceIds.2", WEB02), ("Force", "true")],
    );
    let run = v["Data"]["TaskId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.ok("GetCheckProcess", &[("TaskId", &run)])["StatusCode"] != "2" {
        assert!(Instant::now() < deadline, "the check run of hostile files did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.log().contains("ConfigFileNotRegular"), "the log names the refusal");
}

/// A raw exchange on a new connection: sends `bytes`, reads until the server closes (or 10 s).
fn raw(endpoint: &str, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(endpoint).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (and stop reading) before all of an oversized request is sent.
    let _ = c.write_all(bytes);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status and the envelope's Code of a raw answer.
fn status_and_code(answer: &str) -> (u16, String) {
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert!(v["RequestId"].is_string(), "no envelope: {answer}");
    (status, v["Code"].as_str().unwrap_or_default().to_string())
}

#[test]
fn every_refusal_of_the_http_layer_carries_the_envelope() {
    let s = Server::start(&[]);
    let long_target = format!("GET /?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(140_000));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(), 400, "MalformedRequest"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
            400,
            "MalformedRequest",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(), 400, "MalformedRequest"),
        (b"GET /?Action=\xe9 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, "MalformedRequest"),
        (long_target.into_bytes(), 414, "RequestURITooLong"),
        (big_head.into_bytes(), 431, "RequestHeaderFieldsTooLarge"),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(), 403, "UnsupportedHTTPMethod"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n".to_vec(), 400, "MalformedRequest"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n".to_vec(), 413, "RequestEntityTooLarge"),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 403, "UnsupportedHTTPMethod"),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, "InvalidAction.NotFound"),
    ];
    for (bytes, status, code) in cases {
        let answer = raw(&s.endpoint, &bytes);
        assert_eq!(
            status_and_code(&answer),
            (status, code.to_string()),
            "{}",
            String::from_utf8_lossy(&bytes[..80.min(bytes.len())])
        );
    }
}

#[test]
fn slow_idle_and_surplus_connections_cannot_starve_signed_requests() {
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("posture.toml");
    std::fs::write(&file, "[http]\nheader_timeout_ms = 400\nbody_timeout_ms = 400\nidle_timeout_ms = 30000\n").unwrap();
    // 256 open files in all: connections get what the database and the files leave.
    let s = Server::start_with(Some(256), &["--config", file.to_str().unwrap()]);
    // A head that never ends, and a body that never comes: cut off with 408 and the envelope.
    for partial in
        [&b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "[..], b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"]
    {
        let mut c = TcpStream::connect(&s.endpoint).unwrap();
        c.write_all(partial).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert_eq!(status_and_code(&String::from_utf8_lossy(&out)), (408, "RequestTimeout".to_string()));
    }
    // Far more idle connections than the process has files for.
    let idle: Vec<TcpStream> = (0..400).filter_map(|_| TcpStream::connect(&s.endpoint).ok()).collect();
    assert!(idle.len() > 200);
    std::thread::sleep(Duration::from_millis(300));
    // Signed requests still go through (the longest-idle connections make room), and the
    // service can still open its database and files.
    for _ in 0..5 {
        let v = s.ok("ListCheckResult", &[]);
        assert!(v["Checks"].as_array().is_some_and(|c| !c.is_empty()));
    }
    let root = repair(&s, "1004", WEB02);
    assert_eq!(one_task(&s, "1004", &root)["Status"], "REPAIR_SUCCESS_VERIFIED");
    drop(idle);
}

#[test]
fn oversized_filters_and_lists_are_clear_400s() {
    let s = Server::start(&[]);
    let long = "a".repeat(49_999);
    for key in ["InstanceIdKey", "InstanceNameKey", "RegionIdKey"] {
        s.err("ListCheckInstanceResult", &[("CheckId", "1001"), (key, &long)], 400, "ParameterTooLong");
    }
    let many: Vec<(String, String)> =
        (1..=998).map(|n| (format!("OperationTaskInstances.{n}.InstanceId"), format!("i-{n}"))).collect();
    let mut list: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    s.err("ListOperationTask", &list, 400, "TooManyItems");
    list.extend([("CheckId", "1001"), ("Type", "REPAIR")]);
    s.err("ListOperationCheck", &list, 400, "TooManyItems");
    let more: Vec<(String, String)> =
        (1..=2001).map(|n| (format!("OperationTaskInstances.{n}.InstanceId"), format!("i-{n}"))).collect();
    let mut submit: Vec<(&str, &str)> = more.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    submit.extend([("CheckId", "1001"), ("Type", "REPAIR")]);
    s.err("SubmitOperationTask", &submit, 400, "TooManyItems");
    // The service is unharmed.
    s.ok("ListCheckResult", &[]);
}

#[test]
fn repair_values_that_would_leave_the_service_exposed_are_refused_with_the_reason() {
    let s = Server::start(&["--workers", "0", "--demo-fleet", "roots"]);
    for value in ["0.0.0.0:6379", "[::]:6379", "[::ffff:0.0.0.0]:6379", "224.0.0.1:6379", "[ff02::1]:6379"] {
        let v = s.err(
            "SubmitOperationTask",
            &[
                ("CheckId", "1016"),
                ("Type", "REPAIR"),
                ("OperationTaskInstances.1.InstanceId", WEB01),
                ("RepairTempParam.1.Name", "IPPort"),
                ("RepairTempParam.1.Value", value),
            ],
            400,
            "ErrorParamFormat.IPPort",
        );
        assert!(v["Message"].as_str().unwrap().contains(value), "{v}");
    }
    assert_eq!(all_tasks(&s).len(), 0, "nothing was created");
}

/// A first start killed at any moment: the next start finishes it (an admin with a key and
/// credentials.json, the whole demo fleet registered and checked), never half of it.
#[test]
fn an_interrupted_first_start_is_completed_by_the_next() {
    for delay_ms in [0u64, 5, 15, 30, 60, 100, 150, 250] {
        let mut s = Server::unstarted(None);
        let data = s.data();
        let endpoint = format!("127.0.0.1:{}", common::free_port());
        let mut child = std::process::Command::new(common::bin())
            .args(["serve", "--demo", "--listen", &endpoint, "--data", data.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        s.spawn(&[]);
        let v = s.ok("ListCheckInstanceResult", &[("CheckId", "1001"), ("PageSize", "100")]);
        assert_eq!(v["PageInfo"]["TotalCount"], 8, "delay {delay_ms} ms: the demo fleet is whole: {v}");
        let checked = v["BasicData"].as_array().unwrap().iter().all(|r| r["Status"] != "NOT_CHECK");
        assert!(checked, "delay {delay_ms} ms: the fleet was checked: {v}");
        assert_eq!(s.admin("accounts", "list", &[]).as_array().map(Vec::len), Some(1), "one admin account");
    }
}

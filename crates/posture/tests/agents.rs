//! Agents as separate processes on loopback, each with its own root: enrolment, checks,
//! repairs and rollbacks through them, a change interrupted halfway and resumed, offline
//! agents, isolation between agents, revocation and tokens.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::agent::{self as wire, Next, Poll, Report, Work};
use common::agents::{agent_bin, finished, result_of, submit, token, Agent, SSHD};
use common::{read, Server};
use connectors::host::HostConnector;
use connectors::Target;
use serde_json::{json, Value};

/// Item 1001's change, as an agent carries it out.
fn permit_root_login_no() -> model::Change {
    model::Change {
        steps: vec![model::Step::SetDirective {
            dialect: model::Dialect::Sshd,
            file: "/etc/ssh/sshd_config".into(),
            key: "PermitRootLogin".into(),
            value: "no".into(),
        }],
        effect: None,
    }
}

/// One signed agent request by hand: (HTTP status, body).
fn raw(server: &Server, secret: &[u8; 32], agent: &str, endpoint: &str, body: &Value) -> (u16, Value) {
    raw_headers(
        server,
        endpoint,
        body,
        &wire::sign(secret, "POST", &path(endpoint), agent, store::now_ms(), &bytes(body)),
    )
}

fn path(endpoint: &str) -> String {
    format!("{}{endpoint}", wire::PREFIX)
}

fn bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap()
}

fn raw_headers(server: &Server, endpoint: &str, body: &Value, headers: &[(String, String)]) -> (u16, Value) {
    let r = client::send_to(&server.endpoint, "POST", &path(endpoint), "", headers, &bytes(body)).unwrap();
    (r.status, r.json())
}

#[test]
fn agents_enrol_check_repair_and_roll_back_their_own_roots_byte_for_byte() {
    let server = Server::start(&["--agent-poll-wait", "2s"]);
    let t = token(&server, &["--uses", "2"]);
    let (mut a, mut b) = (Agent::new(), Agent::new());
    let a_id = a.enrolled(&server, &t, "agent-a");
    b.enrolled(&server, &t, "agent-b");
    // The state directory is private.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(a.state()).unwrap().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(a.state().join("key")).unwrap().mode() & 0o777, 0o600);
    a.start();
    b.start();

    server.ok("SubmitCheck", &[]);
    assert_eq!(result_of(&server, "1001", "agent-a"), "NOT_PASS");
    assert_eq!(result_of(&server, "1001", "agent-b"), "NOT_PASS");
    let agents = server.ok("DescribeAgents", &[]);
    let listed = agents["Agents"].as_array().unwrap();
    assert_eq!(listed.iter().filter(|x| x["InstanceId"].as_str().unwrap().starts_with("agent-")).count(), 2);
    let mine = listed.iter().find(|x| x["AgentId"] == a_id.as_str()).unwrap();
    assert_eq!((mine["InstanceId"].as_str(), mine["Online"].as_bool()), (Some("agent-a"), Some(true)), "{mine}");

    let repair = finished(&server, &submit(&server, "REPAIR", "agent-a", None));
    assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{repair}\n{}", a.log());
    assert!(a.sshd().contains("PermitRootLogin no"), "{}", a.sshd());
    assert_eq!(b.sshd(), SSHD, "only agent-a's root changed");
    assert_eq!(result_of(&server, "1001", "agent-a"), "PASS");

    // The agent's disk is wiped (its state gone, its root kept): it enrols again with a token
    // made for its InstanceId, and the rollback works from the snapshot the service kept.
    a.kill9();
    std::fs::remove_dir_all(a.state()).unwrap();
    let again = a.enrolled(&server, &token(&server, &["--instance-id", "agent-a"]), "agent-a");
    assert_ne!(again, a_id, "a new agent, with a new key");
    a.start();
    let task = repair["TaskId"].as_str().unwrap();
    let rollback = finished(&server, &submit(&server, "ROLLBACK", "agent-a", Some(task)));
    assert_eq!(rollback["Status"], "ROLL_BACK_VERIFIED", "{rollback}\n{}", a.log());
    assert_eq!(a.sshd(), SSHD, "byte for byte");
    assert_eq!(result_of(&server, "1001", "agent-a"), "NOT_PASS");
}

#[test]
fn an_agent_killed_halfway_through_a_change_resumes_it_once_from_the_snapshot() {
    let server = Server::start(&["--lease-ms", "1500", "--agent-poll-wait", "2s"]);
    let mut a = Agent::new();
    a.enrolled(&server, &token(&server, &[]), "agent-k");
    let (secret, agent_id) = a.identity();
    let root = submit(&server, "REPAIR", "agent-k", None);

    // Act as the agent by hand up to REPAIRING: back up, report, apply the change on disk,
    // and die before reporting it (as kill -9 between the write and the report would).
    let poll = json!(Poll { version: "0.1.0".into() });
    let (status, next) = raw(&server, &secret, &agent_id, "poll", &poll);
    assert_eq!(status, 200, "{next}");
    let next: Next = serde_json::from_value(next).unwrap();
    let Some(Work::Task { task_id, fence, status, op, .. }) = next.work else { panic!("no task: {next:?}") };
    assert_eq!(status, "IN_BACKUP");
    let steps = permit_root_login_no();
    let host = HostConnector::default();
    let target = Target { instance_id: "agent-k".into(), locator: a.root().display().to_string(), ..Target::default() };
    let backed_up = connectors::execute(&host, &target, &steps, op).unwrap();
    let report = json!(Report::Task { task_id: task_id.clone(), fence, status, outcome: Ok(backed_up) });
    let (code, next) = raw(&server, &secret, &agent_id, "report", &report);
    assert_eq!(code, 200, "{next}");
    let next: Next = serde_json::from_value(next).unwrap();
    let Some(Work::Task { status, op, fence: same_fence, .. }) = next.work else { panic!("no next step: {next:?}") };
    assert_eq!((status.as_str(), same_fence), ("REPAIRING", fence));
    connectors::execute(&host, &target, &steps, op).unwrap();
    assert!(a.sshd().contains("PermitRootLogin no"));

    // The agent comes back: when the lease runs out it takes the task again at REPAIRING and
    // re-applies on top of the snapshot taken before the first change.
    a.start();
    let row = finished(&server, &root);
    assert_eq!(row["Status"], "REPAIR_SUCCESS_VERIFIED", "{row}\n{}", a.log());
    assert_eq!(a.sshd().matches("PermitRootLogin").count(), 1, "applied once: {}", a.sshd());
    // A late report from the first lease is refused, and changes nothing.
    let late = json!(Report::Task {
        task_id: task_id.clone(),
        fence,
        status: "REPAIRING".into(),
        outcome: Err(client::agent::Failure {
            code: "RepairError".into(),
            message: "late".into(),
            retryable: false,
            freed: false
        })
    });
    let (code, v) = raw(&server, &secret, &agent_id, "report", &late);
    assert_eq!((code, v["Code"].as_str()), (409, Some("AgentReportStale")), "{v}");
    // The snapshot is the one taken before the first change: the rollback restores the original.
    let rollback = finished(&server, &submit(&server, "ROLLBACK", "agent-k", Some(&task_id)));
    assert_eq!(rollback["Status"], "ROLL_BACK_VERIFIED", "{rollback}");
    assert_eq!(a.sshd(), SSHD);
}

#[test]
fn tasks_of_an_offline_agent_fail_after_the_deadline_having_changed_nothing() {
    let server = Server::start(&["--agent-task-deadline", "3s", "--lease-ms", "1500"]);
    let a = Agent::new();
    a.enrolled(&server, &token(&server, &[]), "agent-off");
    // The agent never runs: the repair waits, then fails.
    let row = finished(&server, &submit(&server, "REPAIR", "agent-off", None));
    assert_eq!((row["Status"].as_str(), row["ErrorCode"].as_str()), (Some("FAIL"), Some("AgentOffline")), "{row}");
    assert_eq!(a.sshd(), SSHD, "nothing changed");
    // Its part of a check run fails too, and the run ends.
    let v = server.check_run(Duration::from_secs(30));
    let details = v["ProcessDetails"].as_array().unwrap();
    assert_eq!(details.iter().filter(|d| d["StatusCode"] == 4).count(), 1, "{v}");
    // It was last heard from when it enrolled.
    let listed = server.ok("DescribeAgents", &[]);
    let off = listed["Agents"].as_array().unwrap().iter().find(|a| a["InstanceId"] == "agent-off").unwrap().clone();
    assert_eq!(off["LastSeenAt"], off["EnrolledAt"], "{listed}");
}

#[test]
fn an_agent_stays_in_its_own_instance() {
    let server = Server::start(&["--agent-poll-wait", "1s"]);
    let t = token(&server, &["--uses", "3"]);
    let (a, b) = (Agent::new(), Agent::new());
    a.enrolled(&server, &t, "agent-a");
    let b_id = b.enrolled(&server, &t, "agent-b");
    let (secret, a_id) = a.identity();
    // B has a task (B's agent is not running, so it waits); A names it.
    submit(&server, "REPAIR", "agent-b", None);
    let b_task = server.ok("ListOperationTask", &[("CheckId", "1001")])["OperationTasks"][0]["TaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let report = |task: &str| {
        json!(Report::Task {
            task_id: task.into(),
            fence: 1,
            status: "IN_BACKUP".into(),
            outcome: Ok(model::OpOutput::Done)
        })
    };
    let (code, v) = raw(&server, &secret, &a_id, "report", &report(&b_task));
    assert_eq!((code, v["Code"].as_str()), (403, Some("AgentWorkNotFound")), "{v}");
    // A cannot speak as B: the signature is checked against B's registered key.
    let poll = json!(Poll { version: "0.1.0".into() });
    let (code, v) = raw(&server, &secret, &b_id, "poll", &poll);
    assert_eq!((code, v["Code"].as_str()), (401, Some("AgentSignatureInvalid")), "{v}");
    // A's poll never hands out B's task.
    let (code, v) = raw(&server, &secret, &a_id, "poll", &poll);
    assert_eq!((code, v["Work"].clone()), (200, Value::Null), "{v}");
    // An agent upgraded in place reports its new version with each poll; one older than the
    // oldest accepted is refused.
    let newer = json!(Poll { version: "0.2.0".into() });
    assert_eq!(raw(&server, &secret, &a_id, "poll", &newer).0, 200);
    let listed = server.ok("DescribeAgents", &[]);
    let a_row = listed["Agents"].as_array().unwrap().iter().find(|x| x["AgentId"] == a_id.as_str()).unwrap().clone();
    assert_eq!(a_row["Version"], "0.2.0", "{listed}");
    let (code, v) = raw(&server, &secret, &a_id, "poll", &json!(Poll { version: "0.0.1".into() }));
    assert_eq!((code, v["Code"].as_str()), (426, Some("AgentVersionUnsupported")), "{v}");
    // A replayed request is refused.
    let headers = wire::sign(&secret, "POST", &path("poll"), &a_id, store::now_ms(), &bytes(&poll));
    assert_eq!(raw_headers(&server, "poll", &poll, &headers).0, 200);
    let (code, v) = raw_headers(&server, "poll", &poll, &headers);
    assert_eq!((code, v["Code"].as_str()), (400, Some("SignatureNonceUsed")), "{v}");
    // A general token does not enrol an InstanceId that exists (B's snapshots stay B's).
    let intruder = Agent::new();
    let (code, _, err) = intruder.enroll(&server, &t, "agent-b");
    assert_ne!(code, 0);
    assert!(err.contains("AgentInstanceExists"), "{err}");
    // A token made for one instance enrols only that one; it may re-enrol it (a new key),
    // which revokes the agent it replaces.
    let for_b = token(&server, &["--instance-id", "agent-b"]);
    let (code, _, err) = intruder.enroll(&server, &for_b, "agent-c");
    assert!(code != 0 && err.contains("AgentTokenWrongInstance"), "{err}");
    let again = Agent::new();
    again.enrolled(&server, &for_b, "agent-b");
    let (b_secret, _) = b.identity();
    let (code, v) = raw(&server, &b_secret, &b_id, "poll", &poll);
    assert_eq!((code, v["Code"].as_str()), (403, Some("AgentRevoked")), "{v}");
}

#[test]
fn revoked_agents_stop_and_spent_or_expired_tokens_and_plain_http_afar_are_refused() {
    let server = Server::start(&["--agent-poll-wait", "2s"]);
    let mut a = Agent::new();
    let once = token(&server, &[]);
    a.enrolled(&server, &once, "agent-r");
    a.start();
    server.ok("SubmitCheck", &[]);
    assert_eq!(result_of(&server, "1001", "agent-r"), "NOT_PASS");
    server.admin("agents", "revoke", &["--account", &server.account_id, "agent-r"]);
    // Its waiting poll ends within the poll time; the next one is refused and it stops.
    assert_eq!(a.exited(Duration::from_secs(20)), Some(3), "{}", a.log());
    assert!(a.log().contains("AgentRevoked"), "{}", a.log());

    let other = Agent::new();
    let (code, _, err) = other.enroll(&server, &once, "agent-s");
    assert!(code != 0 && err.contains("AgentTokenInvalid") && err.contains("used"), "{err}");
    let short = token(&server, &["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _, err) = other.enroll(&server, &short, "agent-s");
    assert!(code != 0 && err.contains("AgentTokenInvalid") && err.contains("expired"), "{err}");

    let out = Command::new(agent_bin())
        .args(["enroll", "--server", "http://192.0.2.1:8080", "--token", "x", "--state"])
        .arg(other.state())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--insecure-http"), "{err}");

    // An agent older than the server accepts is refused with its own code.
    let secret = wire::new_secret();
    let enrol = json!(wire::Enroll {
        token: token(&server, &[]),
        instance_id: "agent-old".into(),
        region_id: "lab".into(),
        vendor: 2,
        public_key: wire::b64(&wire::public_key(&secret)),
        version: "0.0.1".into(),
        info: Default::default(),
    });
    let (code, v) = raw(&server, &secret, wire::ENROLLING, "enroll", &enrol);
    assert_eq!((code, v["Code"].as_str()), (426, Some("AgentVersionUnsupported")), "{v}");
}

/// Runs `ip` with these arguments; whether it succeeded (and its error text).
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A network namespace joined to this one by a veth pair (host side `.1`, namespace side
/// `.2`), removed when dropped.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn create(tag: u32) -> Result<Netns, String> {
        let name = format!("posture-t{tag}");
        let (host_if, ns_if) = (format!("pt{tag}a"), format!("pt{tag}b"));
        ip(&["netns", "add", &name])?;
        let ns = Netns { name, host_if };
        let subnet = format!("10.213.{}", tag % 250);
        ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&["addr", "add", &format!("{subnet}.1/30"), "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&["netns", "exec", &ns.name, "ip", "addr", "add", &format!("{subnet}.2/30"), "dev", &ns_if])?;
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[test]
fn an_agent_in_its_own_network_namespace_reaches_the_server_only_through_a_veth_pair() {
    let tag = std::process::id() % 10_000;
    let ns = match Netns::create(tag) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: this machine does not allow network namespaces here ({e}); needs root with `ip netns`");
            return;
        }
    };
    // The service listens on the host's end of the pair only.
    let host = format!("10.213.{}.1", tag % 250);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let endpoint = format!("{host}:{}", common::free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut serve = Command::new(common::bin())
        .args(["serve", "--listen", &endpoint, "--data", data.to_str().unwrap(), "--agent-poll-wait", "2s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::healthz(&endpoint).ok() != Some(200) {
        assert!(Instant::now() < deadline, "{}", read(&dir.path().join("serve.log")));
        std::thread::sleep(Duration::from_millis(50));
    }
    let creds: Value = serde_json::from_str(&read(&data.join("credentials.json"))).unwrap();
    let account = creds["AccountId"].as_str().unwrap();
    let (code, t, err) =
        common::posture(&["agents", "token", "create", "--data", data.to_str().unwrap(), "--account", account]);
    assert_eq!(code, 0, "{err}");
    let token = t["Token"].as_str().unwrap();

    let mut a = Agent::new();
    let in_ns = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.name]).arg(agent_bin()).args(args);
        c
    };
    let server = format!("http://{endpoint}");
    let (state, root) = (a.state(), a.root());
    let enroll = |extra: &[&str]| {
        in_ns(&[&["enroll", "--server", &server, "--token", token, "--instance-id", "agent-ns"], extra].concat())
            .args(["--state", state.to_str().unwrap(), "--root", root.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // Across a network, plain HTTP needs the operator's word.
    let refused = enroll(&[]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let enrolled = enroll(&["--insecure-http"]);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    a.child =
        Some(in_ns(&["run", "--state", state.to_str().unwrap()]).stdout(Stdio::null()).stderr(log).spawn().unwrap());

    let client = common::Client {
        endpoint: endpoint.clone(),
        creds: client::Credentials {
            access_key_id: creds["AccessKeyId"].as_str().unwrap().into(),
            access_key_secret: creds["AccessKeySecret"].as_str().unwrap().into(),
        },
        ca: None,
    };
    client.ok("SubmitCheck", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = client.ok("ListCheckInstanceResult", &[("CheckId", "1001")]);
        if v["BasicData"].as_array().is_some_and(|rows| rows.iter().any(|r| r["InstanceId"] == "agent-ns")) {
            assert_eq!(v["BasicData"][0]["Status"], "NOT_PASS", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no result through the namespace: {v}\n{}",
            read(&dir.path().join("agent.log"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let agents = client.ok("DescribeAgents", &[]);
    assert_eq!(agents["Agents"][0]["Info"]["Addresses"][0], format!("10.213.{}.2", tag % 250), "{agents}");
    a.kill9();
    let _ = serve.kill();
    let _ = serve.wait();
}

#[test]
fn an_agent_killed_at_random_moments_finishes_every_change_once_and_rolls_it_back_byte_for_byte() {
    let server = Server::start(&["--lease-ms", "1500", "--agent-poll-wait", "2s"]);
    let mut a = Agent::new();
    a.enrolled(&server, &token(&server, &[]), "agent-r9");
    a.start();
    for round in 0..6u64 {
        let root = submit(&server, "REPAIR", "agent-r9", None);
        // Somewhere between taking the task and reporting its last step.
        std::thread::sleep(Duration::from_millis(round * 7));
        a.kill9();
        a.start();
        let repair = finished(&server, &root);
        assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "round {round}: {repair}\n{}", a.log());
        assert_eq!(a.sshd().matches("PermitRootLogin").count(), 1, "round {round}: {}", a.sshd());
        let task = repair["TaskId"].as_str().unwrap();
        let rollback = finished(&server, &submit(&server, "ROLLBACK", "agent-r9", Some(task)));
        assert_eq!(rollback["Status"], "ROLL_BACK_VERIFIED", "round {round}: {rollback}\n{}", a.log());
        assert_eq!(a.sshd(), SSHD, "round {round}: byte for byte");
    }
}

#[test]
fn a_preview_is_answered_by_the_instances_agent_and_only_by_it() {
    let server = Server::start(&["--agent-poll-wait", "2s"]);
    let (a, b) = (Agent::new(), Agent::new());
    let t = token(&server, &["--uses", "2"]);
    a.enrolled(&server, &t, "agent-p");
    b.enrolled(&server, &t, "agent-q");
    let ((secret, agent_id), (other_secret, other_id)) = (a.identity(), b.identity());
    let preview = || {
        let v = server.ok(
            "PreviewOperationTask",
            &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "agent-p")],
        );
        v["Instances"][0].clone()
    };
    let poll = |version: &str| -> Option<Work> {
        let (status, next) = raw(&server, &secret, &agent_id, "poll", &json!(Poll { version: version.into() }));
        assert_eq!(status, 200, "{next}");
        serde_json::from_value::<Next>(next).unwrap().work
    };
    std::thread::scope(|s| {
        // An agent too old to read a preview request has it answered for it.
        let asked = s.spawn(preview);
        while !asked.is_finished() {
            assert!(poll("0.1.0").is_none(), "a preview is never handed to an agent older than 0.2.0");
        }
        let row = asked.join().unwrap();
        assert_eq!(
            (row["Outcome"].as_str(), row["SkipCode"].as_str()),
            (Some("SKIPPED"), Some("AgentVersionUnsupported"))
        );

        // A current agent plans it on its root; another agent's answer is refused.
        let asked = s.spawn(preview);
        let work = loop {
            if let Some(work) = poll(env!("CARGO_PKG_VERSION")) {
                break work;
            }
        };
        let Work::Preview { preview_id, check_id, params } = work else { panic!("not a preview: {work:?}") };
        assert_eq!((check_id, params), (1001, vec![]));
        let planned = vec![model::PlannedChange::FileMode {
            file: "/etc/ssh/sshd_config".into(),
            before: "0644".into(),
            after: "0600".into(),
        }];
        let report = json!(Report::Preview { preview_id: preview_id.clone(), outcome: Ok(planned) });
        let (code, refused) = raw(&server, &other_secret, &other_id, "report", &report);
        assert_eq!((code, refused["Code"].as_str()), (403, Some("AgentWorkNotFound")), "{refused}");
        let (code, next) = raw(&server, &secret, &agent_id, "report", &report);
        assert_eq!(code, 200, "{next}");
        let row = asked.join().unwrap();
        assert_eq!(row["Outcome"], "CHANGE", "{row}");
        assert_eq!(
            row["Changes"][0],
            json!({"Kind": "FILE_MODE", "File": "/etc/ssh/sshd_config", "Before": "0644", "After": "0600"})
        );
        // Answered once: a second answer is refused.
        let (code, _) = raw(&server, &secret, &agent_id, "report", &report);
        assert_eq!(code, 403);
    });

    // An agent that does not poll leaves its instance unplanned, with the reason.
    let row = preview();
    assert_eq!((row["Outcome"].as_str(), row["SkipCode"].as_str()), (Some("SKIPPED"), Some("AgentNoAnswer")), "{row}");
    assert_eq!(a.sshd(), SSHD, "nothing was changed");
}

#[test]
fn a_cancel_in_each_phase_of_a_change_leaves_the_file_as_it_promises() {
    let server = Server::start(&["--agent-poll-wait", "1s", "--lease-ms", "60000"]);
    let a = Agent::new();
    a.enrolled(&server, &token(&server, &[]), "agent-c");
    let (secret, agent_id) = a.identity();
    let host = HostConnector::default();
    let target = Target { instance_id: "agent-c".into(), locator: a.root().display().to_string(), ..Target::default() };
    let change = permit_root_login_no();
    let version = env!("CARGO_PKG_VERSION");
    // The agent's next task step, by hand.
    let next_step = || loop {
        let (status, next) = raw(&server, &secret, &agent_id, "poll", &json!(Poll { version: version.into() }));
        assert_eq!(status, 200, "{next}");
        if let Some(work) = serde_json::from_value::<Next>(next).unwrap().work {
            break work;
        }
    };
    let report = |work: Work| -> (u16, Value) {
        let Work::Task { task_id, fence, status, op, .. } = work else { panic!("not a task: {work:?}") };
        let out = connectors::execute(&host, &target, &change, op).unwrap();
        raw(&server, &secret, &agent_id, "report", &json!(Report::Task { task_id, fence, status, outcome: Ok(out) }))
    };
    let cancel = |root: &str| server.ok("CancelOperationTask", &[("RootTaskId", root)])["Tasks"][0]["Cancel"].clone();

    // Cancelled while the agent backs up: CANCELLED at once, the backup's report refused, the
    // file untouched.
    let root = submit(&server, "REPAIR", "agent-c", None);
    let backup = next_step();
    assert!(matches!(&backup, Work::Task { status, .. } if status == "IN_BACKUP"), "{backup:?}");
    assert_eq!(cancel(&root), "CANCELLED");
    let (code, v) = report(backup);
    assert_eq!((code, v["Code"].as_str()), (409, Some("AgentReportStale")), "{v}");
    assert_eq!(finished(&server, &root)["Status"], "CANCELLED");
    assert_eq!(a.sshd(), SSHD);

    // Cancelled while the agent changes the file: the step finishes and is verified, then a
    // rollback (handed to the same agent) puts the file back byte for byte.
    let root = submit(&server, "REPAIR", "agent-c", None);
    let (code, v) = report(next_step()); // the backup; its answer is the change
    assert_eq!(code, 200, "{v}");
    let apply: Next = serde_json::from_value(v).unwrap();
    let apply = apply.work.unwrap();
    assert!(matches!(&apply, Work::Task { status, .. } if status == "REPAIRING"), "{apply:?}");
    assert_eq!(cancel(&root), "ROLLBACK_AFTER_STEP");
    let mut step = Some(apply);
    while let Some(work) = step.take() {
        let (code, v) = report(work);
        assert_eq!(code, 200, "{v}");
        step = serde_json::from_value::<Next>(v).unwrap().work;
        if step.is_none()
            && server.ok("ListOperationTask", &[("Type", "ROLLBACK")])["OperationTasks"][0]["Status"]
                != "ROLL_BACK_VERIFIED"
        {
            step = Some(next_step());
        }
    }
    let repair = finished(&server, &root);
    assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{repair}");
    let rollback = server.ok("ListOperationTask", &[("Type", "ROLLBACK")])["OperationTasks"][0].clone();
    assert_eq!(rollback["Status"], "ROLL_BACK_VERIFIED", "{rollback}");
    assert_eq!(a.sshd(), SSHD, "byte for byte");
    // Cancelling it again changes nothing.
    assert_eq!(cancel(&root), "UNCHANGED");
}

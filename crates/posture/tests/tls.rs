//! HTTPS: the API, `posture call` and agents over TLS with a private CA; wrong CAs and pins
//! refused; a key open to others refused; the certificate rotated by SIGHUP for new
//! connections while agents keep working; the handshake bounded by the header timeout; plain
//! HTTP to the TLS port answered as such.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client::tls::Trust;
use client::{Connection, Endpoint};
use common::agents::{finished, result_of, submit, token, Agent};
use common::{posture, Server};
use serde_json::Value;

/// `posture tls cert --dir DIR [--name …]`: the CA (made once) and a new server certificate.
fn issue(dir: &Path, names: &[&str]) -> Value {
    let mut args = vec!["tls", "cert", "--dir", dir.to_str().unwrap()];
    for n in names {
        args.extend(["--name", n]);
    }
    let (code, v, err) = posture(&args);
    assert_eq!(code, 0, "{err}");
    v
}

/// A CA directory with a server certificate, in a temporary directory.
fn pki() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tls");
    issue(&dir, &[]);
    (t, dir)
}

fn tls_args(dir: &Path) -> Vec<String> {
    ["--tls-cert", "server.pem", "--tls-key", "server.key", "--tls-ca", "ca.pem"]
        .iter()
        .enumerate()
        .map(|(i, a)| if i % 2 == 0 { a.to_string() } else { dir.join(a).to_str().unwrap().to_string() })
        .collect()
}

/// A server on HTTPS with `dir`'s certificate.
fn tls_server(dir: &Path, extra: &[&str]) -> Server {
    let mut server = Server::unstarted(None);
    server.ca = Some(dir.join("ca.pem"));
    let args = tls_args(dir);
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(extra);
    server.spawn(&all);
    server
}

/// `posture tls fingerprint FILE`: the pin of its first certificate.
fn pin(cert: &Path) -> String {
    let out = Command::new(common::bin()).args(["tls", "fingerprint", cert.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().next().unwrap().to_string()
}

/// The first certificate (DER) of a PEM file.
fn leaf_of(pem: &Path) -> Vec<u8> {
    client::tls::certificates(pem).unwrap()[0].to_vec()
}

fn connect(server: &Server, ca: &Path) -> std::io::Result<Connection> {
    Connection::open_at(&Endpoint::https(&server.endpoint, &Trust::ca_file(ca).unwrap()).unwrap())
}

#[test]
fn https_carries_the_api_the_cli_and_the_demo_agents_and_refuses_plain_http_and_other_cas() {
    let (_t, dir) = pki();
    let server = tls_server(&dir, &[]);
    // The demo's agents were checked through HTTPS (serve waits for that before it is ready).
    let v = server.ok("ListCheckResult", &[("PageSize", "50")]);
    assert!(v["Checks"].as_array().unwrap().iter().any(|c| c["Status"] == "NOT_PASS"), "{v}");
    let agents = server.ok("DescribeAgents", &[]);
    assert!(agents["Agents"].as_array().unwrap().iter().all(|a| a["Online"] == true), "{agents}");

    // credentials.json says how to reach the service; `posture call` follows it.
    let creds_path = server.data().join("credentials.json");
    let creds: Value = serde_json::from_str(&common::read(&creds_path)).unwrap();
    assert_eq!(creds["Protocol"], "https");
    assert_eq!(Path::new(creds["CaFile"].as_str().unwrap()), dir.join("ca.pem").canonicalize().unwrap());
    let (code, v, err) = posture(&["call", "DescribeAgents", "--credentials", creds_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(v["Agents"].is_array(), "{v}");

    // The connection is TLS 1.3 with ALPN http/1.1.
    let c = connect(&server, &dir.join("ca.pem")).unwrap();
    assert_eq!(c.stream().tls_version().as_deref(), Some("TLSv1_3"));

    // Plain HTTP to the HTTPS port is told so, in plain HTTP.
    let r = client::send_to(&server.endpoint, "GET", "/healthz", "", &[], b"").unwrap();
    assert_eq!((r.status, r.json()["Code"].as_str()), (400, Some("MalformedRequest")), "{}", r.body);
    assert!(r.json()["Message"].as_str().unwrap().contains("https://"));

    // Another CA is refused, by the library and by `posture call`; so are the system's roots.
    let (_o, other) = pki();
    let e = connect(&server, &other.join("ca.pem")).err().expect("another CA is refused");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    let (code, _, err) = posture(&[
        "call",
        "DescribeAgents",
        "--credentials",
        creds_path.to_str().unwrap(),
        "--ca",
        other.join("ca.pem").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    let system = Endpoint::https(&server.endpoint, &Trust::System).and_then(|e| e.connect().map_err(|e| e.to_string()));
    assert!(system.is_err(), "a private CA is not among the system's roots");
    // --ca on a plain http:// endpoint is a mistake, not a silent downgrade.
    let plain = format!("http://{}", server.endpoint);
    let ca_path = dir.join("ca.pem");
    let (code, _, err) = posture(&[
        "call",
        "DescribeAgents",
        "--credentials",
        creds_path.to_str().unwrap(),
        "--endpoint",
        &plain,
        "--ca",
        ca_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca is for https://"), "{err}");
}

#[test]
fn agents_enrol_only_with_the_pinned_ca_and_keep_working_across_a_certificate_rotated_by_sighup() {
    let (_t, dir) = pki();
    let server = tls_server(&dir, &["--agent-poll-wait", "2s"]);
    let t = token(&server, &["--uses", "2"]);
    let (_o, other) = pki();

    // Refused: another CA, another CA's key, the server's own key (not its CA's), no trust at all.
    let a = Agent::new();
    let ca = dir.join("ca.pem");
    let (other_ca, other_pin, leaf_pin) =
        (other.join("ca.pem"), pin(&other.join("ca.pem")), pin(&dir.join("server.pem")));
    let refusals: [(Vec<&str>, &str); 4] = [
        (vec!["--ca", other_ca.to_str().unwrap()], "invalid peer certificate"),
        (vec!["--fingerprint", &other_pin], "no key with the pinned fingerprint"),
        (vec!["--fingerprint", &leaf_pin], "pin its CA's key"),
        (vec![], "--fingerprint"),
    ];
    for (args, says) in &refusals {
        let (code, _, err) = a.enroll_with(&server, &t, "agent-a", args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!a.state().join("agent.json").exists(), "nothing enrolled");
    }

    // Enrolled: one pinned by the CA's key, one by the CA's certificate.
    let (mut a, mut b) = (a, Agent::new());
    let ca_pin = pin(&ca);
    a.enrolled_with(&server, &t, "agent-a", &["--fingerprint", &ca_pin]);
    b.enrolled_with(&server, &t, "agent-b", &["--ca", ca.to_str().unwrap()]);
    let state: Value = serde_json::from_str(&common::read(&a.state().join("agent.json"))).unwrap();
    assert_eq!(state["Fingerprint"], ca_pin.as_str());
    a.start();
    b.start();
    server.ok("SubmitCheck", &[]);
    assert_eq!(result_of(&server, "1001", "agent-a"), "NOT_PASS");
    assert_eq!(result_of(&server, "1001", "agent-b"), "NOT_PASS");

    // A connection open before the rotation, and the certificate it has.
    let old_leaf = leaf_of(&dir.join("server.pem"));
    let mut before = connect(&server, &ca).unwrap();
    assert_eq!(before.stream().peer_certificates()[0], old_leaf);

    // Rotation: a new key and certificate from the same CA (for another name too: the loopback
    // names stay in every certificate `posture tls cert` makes), then SIGHUP.
    let names = issue(&dir, &["posture.example"])["Names"].clone();
    assert_eq!(names, serde_json::json!(["posture.example", "localhost", "127.0.0.1", "::1"]));
    let new_leaf = leaf_of(&dir.join("server.pem"));
    assert_ne!(new_leaf, old_leaf);
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while connect(&server, &ca).unwrap().stream().peer_certificates()[0] != new_leaf {
        assert!(Instant::now() < deadline, "the new certificate was not served: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection opened before keeps working (with the certificate it began with).
    let healthz = client::Request {
        host: server.endpoint.clone(),
        path: "/healthz".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    };
    assert_eq!(before.send("GET", &healthz).unwrap().status, 200);

    // The agents keep working: `a` on a new connection (restarted), `b` on its own. (`a` is
    // restarted once the poll its killed process left waiting has ended, after the 2 s poll
    // wait: work handed to that poll would wait for its lease to expire.)
    a.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    a.start();
    for (agent, id) in [(&a, "agent-a"), (&b, "agent-b")] {
        let repair = finished(&server, &submit(&server, "REPAIR", id, None));
        assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{repair}\n{}", agent.log());
        assert!(agent.sshd().contains("PermitRootLogin no"));
    }

    // A rotation that cannot be read (a key open to others) keeps the certificate in use.
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("the previous one stays") {
        assert!(Instant::now() < deadline, "no error logged: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("chmod 600"), "{}", server.log());
    assert_eq!(connect(&server, &ca).unwrap().stream().peer_certificates()[0], new_leaf);
}

/// Runs `posture serve` expecting it to refuse to start; its stderr.
fn refused_start(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", common::free_port()), "--data"])
        .arg(data.path())
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_key_open_to_others_a_key_of_another_certificate_or_half_the_settings_are_refused_at_start() {
    let (_t, dir) = pki();
    let (_o, other) = pki();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let err = refused_start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(err.contains("open to other users") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err =
        refused_start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", other.join("server.key").to_str().unwrap()]);
    assert!(err.contains("do not go together"), "{err}");
    let err = refused_start(&["--tls-cert", cert.to_str().unwrap()]);
    assert!(err.contains("--tls-key"), "{err}");
    let err = refused_start(&["--tls-cert", key.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(err.contains("no certificate"), "{err}");
    // Group-readable (0640, for a service group) is fine: serve starts.
    let server = tls_server(&dir, &[]);
    server.ok("DescribeAgents", &[]);
}

#[test]
fn the_handshake_must_end_within_the_header_timeout() {
    let (_t, dir) = pki();
    let config = dir.join("posture.toml");
    std::fs::write(&config, "[http]\nheader_timeout_ms = 500\n").unwrap();
    let server = tls_server(&dir, &["--config", config.to_str().unwrap()]);
    // Nothing sent, then half a ClientHello: each connection is closed by the server (a read
    // sees the end) well before the client's own 20 s limit.
    for sent in [&b""[..], &[0x16, 0x03, 0x01, 0x00, 0x40, 0x01][..]] {
        let mut s = std::net::TcpStream::connect(&server.endpoint).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(sent).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).map_err(|e| format!("{sent:?}: {e}")).unwrap();
        assert_eq!(n, 0, "closed without an answer");
    }
}

//! The gateway over real HTTP: every documented rejection, both signatures, both parameter
//! placements, and no input that produces a 500.

mod common;

use api::encoding::form_encode;
use api::signature::{sha256_hex, v1_sign, v1_string_to_sign, v3_canonical_request, v3_sign, v3_string_to_sign};
use api::time::format_utc;
use client::send;
use common::Server;
use serde_json::Value;

fn now_utc() -> String {
    format_utc(store::now_ms() / 1000)
}

/// A v3-signed request with a chosen date and nonce (the SDK's exact header set).
fn v3_request(
    s: &Server,
    action: &str,
    query: &[(&str, &str)],
    date: &str,
    nonce: &str,
    secret: &str,
) -> (String, Vec<(String, String)>) {
    let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), s.endpoint.clone()),
        ("x-acs-action".into(), action.into()),
        ("x-acs-version".into(), "2018-12-03".into()),
        ("x-acs-date".into(), date.into()),
        ("x-acs-signature-nonce".into(), nonce.into()),
        ("x-acs-content-sha256".into(), sha256_hex(b"")),
    ];
    let signed: Vec<String> = headers.iter().map(|h| h.0.clone()).collect();
    let canonical = v3_canonical_request("POST", "/", &q, &headers, &signed, &sha256_hex(b""));
    let sig = v3_sign(secret, &v3_string_to_sign(&canonical));
    let mut names = signed.clone();
    names.sort();
    headers.push((
        "authorization".into(),
        format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={},Signature={sig}",
            s.creds.access_key_id,
            names.join(";")
        ),
    ));
    let qs = form_encode(&q);
    (qs, headers)
}

/// v1 parameters with a chosen timestamp and nonce, signed for `method`.
fn v1_params(
    s: &Server,
    method: &str,
    action: &str,
    extra: &[(&str, &str)],
    ts: &str,
    nonce: &str,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("Action", action),
        ("Version", "2018-12-03"),
        ("Format", "JSON"),
        ("Timestamp", ts),
        ("SignatureNonce", nonce),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", s.creds.access_key_id.as_str()),
    ]
    .iter()
    .chain(extra.iter())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = v1_sign(&s.creds.access_key_secret, &v1_string_to_sign(method, &p));
    p.push(("Signature".into(), sig));
    p
}

fn code(r: &client::Response) -> (u16, String) {
    (r.status, r.json()["Code"].as_str().unwrap_or("").to_string())
}

#[test]
fn every_documented_rejection_over_http() {
    let s = Server::start(&[]);
    let ok = s.ok("ListCheckResult", &[]);
    assert!(ok.get("Code").is_none());

    // Unknown key, wrong secret (the message keeps the colon and the string to sign).
    let mut bad = s.creds.clone();
    bad.access_key_id = "LTAInosuchkey".into();
    let r = client::call(&s.endpoint, &bad, "ListCheckResult", &[], client::Signing::V3).unwrap();
    assert_eq!(code(&r), (404, "InvalidAccessKeyId.NotFound".into()));
    let (q, h) = v3_request(&s, "ListCheckResult", &[], &now_utc(), &store::new_id(16), "wrong-secret");
    let r = send(&s.endpoint, "POST", &q, &h, b"").unwrap();
    assert_eq!(code(&r), (400, "SignatureDoesNotMatch".into()));
    let msg = r.json()["Message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with(
            "Specified signature is not matched with our calculation. server string to sign is:ACS3-HMAC-SHA256\n"
        ),
        "{msg}"
    );
    let env: Value = r.json();
    for f in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(env[f].is_string(), "envelope lacks {f}: {}", r.body);
    }
    assert_eq!(r.headers.iter().find(|(k, _)| k == "content-type").unwrap().1, "application/json;charset=utf-8");

    // Clock skew: 16 minutes either way, in both signatures.
    for delta in [-16 * 60, 16 * 60] {
        let ts = format_utc(store::now_ms() / 1000 + delta);
        let (q, h) = v3_request(&s, "ListCheckResult", &[], &ts, &store::new_id(16), &s.creds.access_key_secret);
        assert_eq!(code(&send(&s.endpoint, "POST", &q, &h, b"").unwrap()), (400, "InvalidTimeStamp.Expired".into()));
        let p = v1_params(&s, "POST", "ListCheckResult", &[], &ts, &store::new_id(16));
        assert_eq!(
            code(&send(&s.endpoint, "POST", &form_encode(&p), &[], b"").unwrap()),
            (400, "InvalidTimeStamp.Expired".into())
        );
    }

    // A replayed request: the first passes, the exact same one is refused (v3 and v1).
    let (q, h) = v3_request(&s, "ListCheckResult", &[], &now_utc(), &store::new_id(16), &s.creds.access_key_secret);
    assert_eq!(send(&s.endpoint, "POST", &q, &h, b"").unwrap().status, 200);
    assert_eq!(code(&send(&s.endpoint, "POST", &q, &h, b"").unwrap()), (400, "SignatureNonceUsed".into()));
    let p = v1_params(&s, "GET", "ListCheckResult", &[], &now_utc(), &store::new_id(16));
    assert_eq!(send(&s.endpoint, "GET", &form_encode(&p), &[], b"").unwrap().status, 200);
    assert_eq!(
        code(&send(&s.endpoint, "GET", &form_encode(&p), &[], b"").unwrap()),
        (400, "SignatureNonceUsed".into())
    );

    // Unknown action, missing parameter, bad version, no signature at all.
    s.err("NoSuchAction", &[], 404, "InvalidAction.NotFound");
    let v = s.err("SubmitOperationTask", &[("Type", "REPAIR")], 400, "MissingParameter");
    assert!(v["Message"].as_str().unwrap().contains("\"CheckId\""));
    let p = v1_params(&s, "POST", "ListCheckResult", &[("Version", "2099-01-01")], &now_utc(), &store::new_id(16));
    let p: Vec<_> = p.into_iter().filter(|(k, v)| !(k == "Version" && v == "2018-12-03")).collect();
    let p = {
        let mut p = p;
        p.retain(|(k, _)| k != "Signature");
        p.push(("Signature".into(), v1_sign(&s.creds.access_key_secret, &v1_string_to_sign("POST", &p))));
        p
    };
    assert_eq!(code(&send(&s.endpoint, "POST", &form_encode(&p), &[], b"").unwrap()), (400, "InvalidParameter".into()));
    let r = send(&s.endpoint, "POST", "Action=ListCheckResult", &[], b"").unwrap();
    assert_eq!(code(&r), (400, "MissingParameter".into()));
    assert!(r.json()["Message"].as_str().unwrap().contains("AccessKeyId"));

    // Malformed v3 Authorization, and a body hash that does not match.
    let r = send(&s.endpoint, "POST", "", &[("authorization".into(), "ACS3-HMAC-SHA256 Credential=x".into())], b"")
        .unwrap();
    assert_eq!(code(&r), (400, "IncompleteSignature".into()));
    let (q, mut h) = v3_request(&s, "ListCheckResult", &[], &now_utc(), &store::new_id(16), &s.creds.access_key_secret);
    h.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    assert_eq!(code(&send(&s.endpoint, "POST", &q, &h, b"Lang=en").unwrap()).0, 400);

    // Methods, paths and sizes.
    assert_eq!(code(&send(&s.endpoint, "PUT", "", &[], b"").unwrap()), (403, "UnsupportedHTTPMethod".into()));
    assert_eq!(code(&send(&s.endpoint, "DELETE", "", &[], b"").unwrap()), (403, "UnsupportedHTTPMethod".into()));
    let big = vec![b'a'; (1 << 20) + 10];
    let r = send(&s.endpoint, "POST", "", &[("content-type".into(), "application/x-www-form-urlencoded".into())], &big)
        .unwrap();
    assert_eq!(code(&r), (413, "RequestEntityTooLarge".into()));
}

#[test]
fn v1_from_the_query_from_a_form_body_and_by_get() {
    let s = Server::start(&[]);
    // pop-core POST: everything, Action and Signature included, in the form body.
    let p =
        v1_params(&s, "POST", "GetCheckDetail", &[("CheckId", "1016"), ("Lang", "en")], &now_utc(), &store::new_id(16));
    let r = send(
        &s.endpoint,
        "POST",
        "",
        &[("content-type".into(), "application/x-www-form-urlencoded".into())],
        form_encode(&p).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["RepairSetting"]["RepairConfigs"][0]["Name"], "IPPort");
    // GET with the query (ListOperationTask is a GET action in the SDK metadata).
    let p = v1_params(&s, "GET", "ListOperationTask", &[("PageSize", "5")], &now_utc(), &store::new_id(16));
    let r = send(&s.endpoint, "GET", &form_encode(&p), &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // A signature computed for GET does not pass as POST.
    let p = v1_params(&s, "GET", "ListCheckResult", &[], &now_utc(), &store::new_id(16));
    assert_eq!(
        code(&send(&s.endpoint, "POST", &form_encode(&p), &[], b"").unwrap()),
        (400, "SignatureDoesNotMatch".into())
    );
    // The client's own v1 signing.
    assert_eq!(s.call_with("ListCheckResult", &[("Lang", "en")], client::Signing::V1).status, 200);
}

#[test]
fn no_input_makes_a_server_error() {
    let s = Server::start(&[]);
    let hostile = [
        "",
        "abc",
        "-1",
        "0",
        "99999999999999999999999",
        "1.5",
        "True",
        "%00",
        "\u{0}",
        "中文",
        "' OR 1=1 --",
        "../../../../etc/passwd",
        "\n",
        "NOT_PASS",
        "1001",
        "i-bp1a2c3d4e5f6g7h8i9j",
    ];
    let names = [
        "CheckId",
        "CheckIds.1",
        "Type",
        "DimensionType",
        "CurrentPage",
        "PageSize",
        "Statuses.1",
        "Lang",
        "TaskId",
        "OperationTaskInstances.1.InstanceId",
        "OperationTaskInstances.1.Vendor",
        "OperationTaskInstances.1.TaskId",
        "OperationTaskInstances.x",
        "RepairTempParam.1.Name",
        "RepairTempParam.1.Value",
        "InstanceIds.1",
        "SortTypes.1",
        "Vendors.1",
        "TaskIds.1",
        "StatusCodes.1",
        "ScanRange",
        "StartTime",
        "RelationKey",
    ];
    let mut n = 0;
    for (action, _) in api::ops::OPERATIONS {
        for name in names {
            for value in hostile {
                let r = s.call(action, &[(name, value), ("CheckId", "1001"), ("Type", "REPAIR")]);
                assert!(r.status < 500, "{action} {name}={value:?}: {} {}", r.status, r.body);
                let v = r.json();
                assert!(v.is_object(), "{action}: not JSON: {}", r.body);
                if r.status >= 400 {
                    assert!(v["Code"].is_string(), "{}", r.body);
                }
                n += 1;
            }
        }
    }
    assert!(n > 4000);
    // Garbage on the wire itself.
    for (q, body) in [("%%%=%", &b""[..]), ("a=1&&&=&", b"x=%ZZ"), ("Action=ListCheckResult&Signature=%E0%80", b"")] {
        let r =
            send(&s.endpoint, "POST", q, &[("content-type".into(), "application/x-www-form-urlencoded".into())], body)
                .unwrap();
        assert!(r.status < 500 && r.json()["Code"].is_string(), "{}", r.body);
    }
}

/// `GET /metrics` after a repair: the request, its transitions and its steps were counted;
/// and `--log-format json` writes one JSON object per line. (The steps are timed where they
/// run: on the demo's roots, by this node's workers.)
#[test]
fn metrics_count_a_repair_and_logs_can_be_json() {
    let s = common::Server::start(&["--log-format", "json", "--demo-fleet", "roots"]);
    let root = s.ok(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "i-bp1a2c3d4e5f6g7h8i9j")],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.wait_root(1001, &root)[0]["Status"], "REPAIR_SUCCESS_VERIFIED");
    s.err("NoSuchAction", &[], 404, "InvalidAction.NotFound");
    let metrics = {
        let mut c = std::net::TcpStream::connect(&s.endpoint).unwrap();
        use std::io::{Read, Write};
        write!(c, "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "posture_requests_total{action=\"SubmitOperationTask\",code=\"OK\"} 1",
        "posture_requests_total{action=\"unknown\",code=\"InvalidAction.NotFound\"} 1",
        "posture_task_transitions_total{status=\"REPAIR_SUCCESS_VERIFIED\"} 1",
        "posture_queue_depth 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.contains("posture_step_duration_seconds_count{connector=\"host\"}"), "{metrics}");
    assert!(metrics.contains("posture_request_duration_seconds_bucket{action=\"ListOperationTask\",le=\"+Inf\"}"));
    let log = s.log();
    let first = log.lines().find(|l| !l.trim().is_empty()).unwrap();
    let line: serde_json::Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(line["level"].is_string() && line["message"].is_string(), "{line}");
}

/// Plain HTTP on an address that is not loopback is served, with a warning at start.
#[test]
fn plain_http_on_every_address_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let data = dir.path().join("data");
    let mut serve = std::process::Command::new(common::bin())
        .args(["serve", "--listen", &format!("0.0.0.0:{port}"), "--data", data.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while common::healthz(&format!("127.0.0.1:{port}")).ok() != Some(200) {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(text.contains("serving plain HTTP on an address that is not loopback"), "{text}");
    let local = common::Server::start(&[]);
    assert!(!local.log().contains("not loopback"), "{}", local.log());
}

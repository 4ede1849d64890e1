//! The web console's server side over real HTTP: its files and headers, sign-in, sessions that
//! end with their key, CSRF refusals, and the actions added for its pages. (The pages themselves
//! are driven in a real browser by tests/sdk/test_console.py.)

mod common;

use std::io::{Read, Write};

use serde_json::Value;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn http(s: &common::Server, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut c = std::net::TcpStream::connect(&s.endpoint).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", s.endpoint);
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        head += "content-type: application/x-www-form-urlencoded\r\n";
    }
    head += &format!("content-length: {}\r\n\r\n{body}", body.len());
    c.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Reply { status, headers, body: body.to_string() }
}

/// A signed-in session: its cookie header and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

fn sign_in(s: &common::Server, id: &str, secret: &str) -> Reply {
    http(
        s,
        "POST",
        "/console/session",
        &[],
        &api::encoding::form_encode(&[("AccessKeyId", id), ("AccessKeySecret", secret)]),
    )
}

fn session(s: &common::Server, id: &str, secret: &str) -> Session {
    let r = sign_in(s, id, secret);
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    Session { cookie, csrf: r.json()["CsrfToken"].as_str().unwrap().to_string() }
}

fn call(s: &common::Server, session: &Session, params: &[(&str, &str)]) -> Reply {
    http(
        s,
        "POST",
        "/console/api",
        &[("cookie", &session.cookie), ("x-posture-csrf", &session.csrf)],
        &api::encoding::form_encode(params),
    )
}

fn ok(s: &common::Server, session: &Session, params: &[(&str, &str)]) -> Value {
    let r = call(s, session, params);
    assert_eq!(r.status, 200, "{params:?}: {}", r.body);
    r.json()
}

#[test]
fn files_routes_and_headers() {
    let s = common::Server::start(&["--demo-fleet", "roots"]);
    let r = http(&s, "GET", "/console", &[], "");
    assert_eq!((r.status, r.header("location")), (308, Some("/console/")));
    let page = http(&s, "GET", "/console/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.body.contains("/console/console.js"));
    // Revalidated by ETag: an unchanged file is not sent again.
    let js = http(&s, "GET", "/console/console.js", &[], "");
    let etag = js.header("etag").unwrap().to_string();
    assert_eq!(js.status, 200);
    assert_eq!(http(&s, "GET", "/console/console.js", &[("if-none-match", &etag)], "").status, 304);
    // Everything else answers the envelope.
    let missing = http(&s, "GET", "/console/nope", &[], "");
    assert_eq!((missing.status, missing.json()["Code"].as_str()), (404, Some("Console.NotFound")));
    let put = http(&s, "PUT", "/console/api", &[], "");
    assert_eq!((put.status, put.json()["Code"].as_str()), (403, Some("UnsupportedHTTPMethod")));
    let anonymous = http(&s, "GET", "/console/session", &[], "");
    assert_eq!((anonymous.status, anonymous.json()["Code"].as_str()), (401, Some("Console.SessionRequired")));
    let forged = http(
        &s,
        "POST",
        "/console/api",
        &[("cookie", &format!("posture_session={}", "a".repeat(64)))],
        "Action=SubmitCheck",
    );
    assert_eq!(forged.json()["Code"], "Console.SessionRequired", "an unknown token opens nothing");
    let metrics = http(&s, "GET", "/metrics", &[], "").body;
    for line in [
        "posture_requests_total{action=\"console\",code=\"OK\"}",
        "posture_requests_total{action=\"console\",code=\"401\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    // A second session cookie (planted) is not chosen between: neither is used.
    let me = session(&s, &s.creds.access_key_id, &s.creds.access_key_secret);
    let planted = session(&s, &s.creds.access_key_id, &s.creds.access_key_secret);
    let both = format!("{}; {}", planted.cookie, me.cookie);
    let r = http(&s, "GET", "/console/session", &[("cookie", &both)], "");
    assert_eq!((r.status, r.json()["Code"].as_str()), (401, Some("Console.SessionRequired")));
    // Audit records say the call came through the console.
    let r =
        http(&s, "POST", "/console/api", &[("cookie", &me.cookie), ("x-posture-csrf", &me.csrf)], "Action=SubmitCheck");
    assert_eq!(r.status, 200, "{}", r.body);
    let audit = s.ok("DescribeAuditLog", &[("ActionName", "SubmitCheck")]);
    assert!(audit["Records"][0]["SourceIp"].as_str().unwrap().ends_with("(console)"), "{audit}");
}

#[test]
fn sign_in_sessions_csrf_and_the_audit_trail() {
    let s = common::Server::start(&["--demo-fleet", "roots"]);
    let (id, secret) = (s.creds.access_key_id.clone(), s.creds.access_key_secret.clone());
    // One answer for every refusal: nothing tells a wrong secret from an unknown key.
    for (i, k) in [(id.as_str(), "wrong"), ("LTAInobody", secret.as_str()), ("", "")] {
        let r = sign_in(&s, i, k);
        assert_eq!((r.status, r.json()["Code"].as_str()), (401, Some("Console.SignInFailed")), "{i}");
        assert!(r.header("set-cookie").is_none());
    }
    let r = sign_in(&s, &id, &secret);
    let cookie = r.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console/", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: a Secure cookie would never come back");
    let me = session(&s, &id, &secret);
    let who = http(&s, "GET", "/console/session", &[("cookie", &me.cookie)], "").json();
    assert_eq!(who["AccessKeyId"], id.as_str());
    assert!(who["Allowed"].as_array().unwrap().iter().any(|a| a == "SubmitOperationTask"));

    // CSRF: without the token, with another's, or from another site.
    let no_token = http(&s, "POST", "/console/api", &[("cookie", &me.cookie)], "Action=SubmitCheck");
    assert_eq!((no_token.status, no_token.json()["Code"].as_str()), (403, Some("Console.CsrfRefused")));
    let other = session(&s, &id, &secret);
    let crossed = http(
        &s,
        "POST",
        "/console/api",
        &[("cookie", &me.cookie), ("x-posture-csrf", &other.csrf)],
        "Action=SubmitCheck",
    );
    assert_eq!(crossed.json()["Code"], "Console.CsrfRefused", "a token is good for its own session only");
    let cross_site = http(
        &s,
        "POST",
        "/console/api",
        &[("cookie", &me.cookie), ("x-posture-csrf", &me.csrf), ("sec-fetch-site", "cross-site")],
        "Action=SubmitCheck",
    );
    assert_eq!(cross_site.json()["Code"], "Console.CsrfRefused");
    let evil_origin = http(
        &s,
        "POST",
        "/console/api",
        &[("cookie", &me.cookie), ("x-posture-csrf", &me.csrf), ("origin", "http://evil.example")],
        "Action=SubmitCheck",
    );
    assert_eq!(evil_origin.json()["Code"], "Console.CsrfRefused");
    assert_eq!(s.ok("ListOperationProcess", &[])["PageInfo"]["TotalCount"], 1, "no refused call started a run");

    // The actions of the console's pages.
    let trend = ok(&s, &me, &[("Action", "DescribeCheckTrend")]);
    let points = trend["Points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "the demo's first run: {trend}");
    assert!(points[0]["FailCount"].as_i64().unwrap() > 0 && points[0]["PassCount"].as_i64().unwrap() > 0);
    let run = ok(&s, &me, &[("Action", "SubmitCheck")])["TaskId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ok(&s, &me, &[("Action", "GetCheckProcess"), ("TaskId", &run)])["StatusCode"] != "2" {
        assert!(std::time::Instant::now() < deadline, "the run did not complete");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let trend = ok(&s, &me, &[("Action", "DescribeCheckTrend"), ("Count", "5")]);
    assert_eq!(trend["Points"][1]["TaskId"], run.as_str(), "oldest first, the new run last: {trend}");
    assert_eq!(call(&s, &me, &[("Action", "DescribeCheckTrend"), ("Count", "0")]).json()["Code"], "InvalidParameter");

    let web = ok(&s, &me, &[("Action", "ListInstances"), ("InstanceIdKey", "WEB")]);
    assert_eq!(web["PageInfo"]["TotalCount"], 2, "{web}");
    assert_eq!(
        ok(&s, &me, &[("Action", "ListInstances"), ("PageSize", "3")])["Instances"].as_array().unwrap().len(),
        3
    );

    let expires = (store::now_ms() + 86_400_000).to_string();
    s.ok(
        "AddCheckInstanceResultWhiteList",
        &[
            ("CheckId", "1016"),
            ("InstanceIds.1", "i-bp1a2c3d4e5f6g7h8i9j"),
            ("Reason", "lab box"),
            ("ExpireTime", &expires),
        ],
    );
    let rules = ok(&s, &me, &[("Action", "ListCheckWhiteList"), ("CheckId", "1016")]);
    assert_eq!(rules["Rules"][0]["Reason"], "lab box");
    assert_eq!(rules["Rules"][0]["InstanceIds"][0], "i-bp1a2c3d4e5f6g7h8i9j");
    assert_eq!(rules["Rules"][0]["ExpireTime"].to_string(), expires);
    assert_eq!(call(&s, &me, &[("Action", "ListCheckWhiteList"), ("CheckId", "999999")]).status, 404);

    let repair = s.run_task("1001", "REPAIR", "i-bp1k2l3m4n5o6p7q8r9s", &[]);
    let root = repair["RootTaskId"].as_str().unwrap();
    let of_root = ok(&s, &me, &[("Action", "ListOperationTask"), ("RootTaskId", root)]);
    assert_eq!(of_root["PageInfo"]["TotalCount"], 1);
    assert_eq!(ok(&s, &me, &[("Action", "ListOperationTask"), ("RootTaskId", "nope")])["PageInfo"]["TotalCount"], 0);

    let keys = ok(&s, &me, &[("Action", "DescribeAccessKeys")]);
    assert_eq!(keys["AccessKeys"][0]["AccessKeyId"], id.as_str());
    assert!(!keys.to_string().contains(&secret), "no secret is ever answered");

    // Sign-ins and calls made through the console are in the audit trail, under the key.
    let audit = s.ok("DescribeAuditLog", &[("PageSize", "100")]);
    let records: Vec<String> = audit["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Actor"] == id.as_str())
        .map(|r| format!("{}:{}", r["ActionName"].as_str().unwrap(), r["Outcome"].as_str().unwrap()))
        .collect();
    for expected in ["ConsoleSignIn:OK", "ConsoleSignIn:Console.SignInFailed", "SubmitCheck:OK"] {
        assert!(records.iter().any(|r| r == expected), "{expected} not in {records:?}");
    }

    // Disabling the key ends its sessions at once; enabling it again brings none back.
    s.admin("keys", "disable", &["--key", &id]);
    s.admin("keys", "enable", &["--key", &id]);
    let ended = http(&s, "GET", "/console/session", &[("cookie", &me.cookie)], "");
    assert_eq!((ended.status, ended.json()["Code"].as_str()), (401, Some("Console.SessionRequired")));
    assert_eq!(call(&s, &other, &[("Action", "ListInstances")]).status, 401);
    s.admin("keys", "disable", &["--key", &id]);
    assert_eq!(sign_in(&s, &id, &secret).json()["Code"], "Console.SignInFailed", "a disabled key signs in no more");
}

#[test]
fn signing_out_ends_the_session_on_the_server() {
    let s = common::Server::start(&["--demo-fleet", "roots"]);
    let me = session(&s, &s.creds.access_key_id, &s.creds.access_key_secret);
    let refused = http(&s, "POST", "/console/signout", &[("cookie", &me.cookie)], "");
    assert_eq!(refused.json()["Code"], "Console.CsrfRefused", "a forged sign-out is refused too");
    let out = http(&s, "POST", "/console/signout", &[("cookie", &me.cookie), ("x-posture-csrf", &me.csrf)], "");
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(call(&s, &me, &[("Action", "ListInstances")]).json()["Code"], "Console.SessionRequired");
}

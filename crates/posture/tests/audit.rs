//! The audit trail over real HTTP: every action that may change something is recorded, each
//! call of it, whatever its outcome — here each is called with a parameter of its own and the
//! record is found with that parameter, and every read is called and found nowhere.

mod common;

use common::Server;

#[test]
fn every_action_that_may_change_something_is_recorded_and_no_read_is() {
    let s = Server::start(&["--workers", "0"]);
    let (changes, reads): (Vec<&str>, Vec<&str>) =
        api::ops::OPERATIONS.iter().map(|(name, _)| *name).partition(|name| api::ops::changes_state(name));
    assert!(changes.len() >= 25 && reads.len() >= 20, "{changes:?} / {reads:?}");
    for action in changes.iter().chain(&reads) {
        // Refused or done, the call is one of this action; the marker says which.
        let marker = format!("audit-{action}");
        let r = s.call(action, &[("AuditMarker", &marker), ("SecretKey", "hush-hush-secret")]);
        assert!(r.status < 500, "{action}: {}", r.body);
    }
    let mut recorded: Vec<String> = Vec::new();
    let mut everything = String::new();
    let mut page = 1;
    loop {
        let answer = s.ok("DescribeAuditLog", &[("PageSize", "100"), ("CurrentPage", &page.to_string())]);
        everything += &answer.to_string();
        let rows = answer["Records"].as_array().unwrap().clone();
        if rows.is_empty() {
            break;
        }
        for r in rows {
            if let Some(m) = r["Parameters"]["AuditMarker"].as_str() {
                assert_eq!(r["Parameters"]["SecretKey"], "(redacted)", "{r}");
                assert_eq!(m, format!("audit-{}", r["ActionName"].as_str().unwrap()), "{r}");
                recorded.push(r["ActionName"].as_str().unwrap().to_string());
            }
        }
        page += 1;
    }
    assert!(!everything.contains("hush-hush-secret"));
    for action in &changes {
        assert!(recorded.iter().any(|a| a == action), "{action} was not recorded");
    }
    for action in &reads {
        assert!(!recorded.iter().any(|a| a == action), "the read {action} was recorded");
    }
}

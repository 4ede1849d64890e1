//! `posture assess --root`: a one-shot assessment of a fixture root with no server and no
//! database, in each output format, with its exit status.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A root whose sshd lets root in (1001 fails), refuses empty passwords (1002 passes) and whose
/// login.defs keeps passwords for 99,999 days (1009 fails); no Redis (1016 does not apply).
fn fixture(dir: &Path, permit_root: &str) {
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("etc/ssh/sshd_config", &format!("# sshd\nPermitRootLogin {permit_root}\nPermitEmptyPasswords no\n"));
    write("etc/login.defs", "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\n");
}

/// Runs `posture assess <args>`: exit status, stdout, stderr.
fn assess(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin()).arg("assess").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_lists_each_applicable_item_with_the_api_status_and_its_evidence_and_fails_with_1() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), "yes");
    let root = dir.path().to_str().unwrap();
    let (code, out, err) = assess(&["--root", root, "--checks", "1001,1002,1009,1016", "--format", "json"]);
    assert_eq!(code, 1, "an item fails: {err}");
    let items: Vec<Value> = serde_json::from_str(&out).unwrap();
    let by_id = |id: i64| items.iter().find(|i| i["CheckId"] == id).cloned();
    let root_login = by_id(1001).unwrap();
    assert_eq!(root_login["Status"], "NOT_PASS");
    assert_eq!(root_login["Evidence"]["Config"]["PermitRootLogin"], "yes");
    assert_eq!(root_login["Evidence"]["FailedSettings"][0], "sshd.permitrootlogin");
    assert_eq!(root_login["RiskLevel"], "HIGH");
    assert_eq!(by_id(1002).unwrap()["Status"], "PASS");
    assert_eq!(by_id(1009).unwrap()["Status"], "NOT_PASS");
    assert!(by_id(1016).is_none(), "an item that does not apply has no result: {out}");
    assert_eq!(items.len(), 3);
}

#[test]
fn a_root_that_passes_exits_0_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), "no");
    let root = dir.path().to_str().unwrap();
    for format in ["table", "json", "junit", "sarif"] {
        let (code, out, err) = assess(&["--root", root, "--checks", "1001,1002,1016", "--format", format]);
        assert_eq!(code, 0, "{format}: {err}\n{out}");
    }
    let (_, table, _) = assess(&["--root", root, "--checks", "1001,1002,1016"]);
    assert!(table.contains("2 passed, 0 failed, 1 not applicable"), "{table}");
}

#[test]
fn junit_and_sarif_carry_the_failures_for_ci_systems() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), "yes");
    let root = dir.path().to_str().unwrap();
    let (code, junit, _) = assess(&["--root", root, "--checks", "1001,1002,1016", "--format", "junit"]);
    assert_eq!(code, 1);
    assert!(junit.starts_with("<?xml"), "{junit}");
    assert!(junit.contains("tests=\"3\" failures=\"1\" skipped=\"1\""), "{junit}");
    assert!(
        junit.contains(
            "<failure message=\"failing: sshd.permitrootlogin; PermitRootLogin=yes, PermitRootLogin (source)=/etc/ssh/sshd_config:2\""
        ),
        "the value and the line that set it: {junit}"
    );
    assert!(junit.contains("<skipped message=\"not applicable\"/>"), "{junit}");
    assert_eq!(junit.matches("<testcase ").count(), junit.matches("</testcase>").count());

    let (code, sarif, _) = assess(&["--root", root, "--checks", "1001,1002,1016", "--format", "sarif"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "posture");
    assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 3);
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{sarif}");
    assert_eq!(results[0]["ruleId"], "1001");
    assert_eq!(results[0]["level"], "error");
    let rule = &run["tool"]["driver"]["rules"][results[0]["ruleIndex"].as_u64().unwrap() as usize];
    assert_eq!(rule["id"], "1001");
    assert_eq!(results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "etc/ssh/sshd_config");
}

#[test]
fn errors_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), "no");
    let root = dir.path().to_str().unwrap();
    let missing = dir.path().join("absent");
    for (args, says) in [
        (vec!["--root", missing.to_str().unwrap()], "not a directory"),
        (vec!["--root", root, "--checks", "4242"], "check item 4242 does not exist"),
        (vec!["--root", root, "--checks", "2001"], "not a host root"),
        (vec!["--root", root, "--format", "pdf"], "invalid value 'pdf'"),
    ] {
        let (code, out, err) = assess(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

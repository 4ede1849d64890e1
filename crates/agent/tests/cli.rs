//! The command line, without a service: help, and the refusals that need none. (The agent
//! with a service is tested in crates/posture/tests/agents.rs, which needs this binary: an
//! integration test here is also what makes `cargo test --workspace` build it.)

use std::process::Command;

fn agent(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_posture-agent")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_names_both_commands() {
    let (code, text) = agent(&["--help"]);
    assert_eq!(code, 0);
    assert!(text.contains("enroll") && text.contains("run"), "{text}");
    let (_, text) = agent(&["enroll", "--help"]);
    for flag in
        ["--server", "--token", "--state", "--root", "--instance-id", "--region-id", "--vendor", "--insecure-http"]
    {
        assert!(text.contains(flag), "{flag}: {text}");
    }
}

#[test]
fn run_without_an_enrolment_and_enroll_with_a_missing_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, text) = agent(&["run", "--state", state.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("posture-agent enroll"), "{text}");
    let (code, text) = agent(&[
        "enroll",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "t",
        "--state",
        state.to_str().unwrap(),
        "--root",
        "/nonexistent/root",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a directory"), "{text}");
}

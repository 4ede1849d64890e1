//! The whole Linux catalog on two fixture roots (tests/fixtures/roots): every item fails on
//! `fail/` and passes on `pass/`, and every repairable item is repaired, verified and rolled back
//! byte for byte through a real `posture serve`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use catalog::{Catalog, CheckDef};
use common::Server;
use serde_json::Value;

/// A copy of fixture root `name` with the modes git does not keep: on `fail/` looser than the
/// permission items allow, on `pass/` as they require.
fn root(name: &str) -> (tempfile::TempDir, PathBuf) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roots").join(name);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(name);
    let copied = Command::new("cp").arg("-r").arg(&from).arg(&to).status().unwrap();
    assert!(copied.success());
    let modes: [(&str, u32, u32); 16] = [
        ("etc/ssh/ssh_host_ed25519_key", 0o640, 0o600),
        ("etc/ssh/ssh_host_ed25519_key.pub", 0o664, 0o644),
        ("etc/ssh/sshd_config", 0o644, 0o600),
        ("etc/shadow", 0o644, 0o640),
        ("etc/shadow-", 0o644, 0o600),
        ("etc/gshadow", 0o644, 0o640),
        ("etc/gshadow-", 0o666, 0o400),
        ("etc/passwd", 0o666, 0o644),
        ("etc/passwd-", 0o664, 0o600),
        ("etc/group", 0o666, 0o644),
        ("etc/group-", 0o646, 0o644),
        ("etc/crontab", 0o644, 0o600),
        ("etc/motd", 0o666, 0o644),
        ("etc/issue", 0o664, 0o444),
        ("etc/issue.net", 0o646, 0o644),
        ("boot/grub/grub.cfg", 0o644, 0o400),
    ];
    let dirs = ["etc/cron.hourly", "etc/cron.daily", "etc/cron.weekly", "etc/cron.monthly", "etc/cron.d"];
    let modes = modes.into_iter().chain(dirs.map(|d| (d, 0o755, 0o700)));
    // Files that exist on one root only (the allow lists pass, the deny lists fail).
    let only: [(&str, &str, u32); 6] = [
        ("pass", "etc/cron.allow", 0o640),
        ("pass", "etc/at.allow", 0o600),
        ("pass", "etc/ssh/sshd_config.d/10-hardening.conf", 0o600),
        ("pass", "etc/sudoers.d/50-cis", 0o440),
        ("pass", "etc/sudoers.d/disabled.conf", 0o440),
        ("fail", "etc/profile.d/legacy.sh", 0o666),
    ];
    let modes = modes.chain(only.into_iter().filter(|(r, ..)| *r == name).map(|(_, f, m)| (f, m, m)));
    for (file, failing, passing) in modes {
        let mode = if name == "fail" { failing } else { passing };
        std::fs::set_permissions(to.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    (dir, to)
}

fn host_items() -> Vec<CheckDef> {
    Catalog::builtin().unwrap().for_asset("host").cloned().collect()
}

/// `posture assess --root ROOT --format json`: every item's answer.
fn assess_json(root: &Path) -> Vec<Value> {
    let out = Command::new(common::bin()).args(["assess", "--format", "json", "--root"]).arg(root).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Status by CheckId.
fn assess(root: &Path) -> BTreeMap<i64, String> {
    let items = assess_json(root);
    items.iter().map(|i| (i["CheckId"].as_i64().unwrap(), i["Status"].as_str().unwrap().to_string())).collect()
}

#[test]
fn each_result_names_the_line_that_decided_it_or_says_the_default_applies() {
    let (_dir, root) = root("pass");
    let items = assess_json(&root);
    let config = |id: i64| items.iter().find(|i| i["CheckId"] == id).unwrap()["Evidence"]["Config"].clone();
    // MaxAuthTries is set twice; the drop-in, read first, decides.
    let tries = config(1003);
    assert_eq!(tries["MaxAuthTries"], "2");
    assert_eq!(tries["MaxAuthTries (source)"], "/etc/ssh/sshd_config.d/10-hardening.conf:2");
    // No KexAlgorithms anywhere: sshd's default list, said to be the default.
    assert_eq!(config(1027)["KexAlgorithms (source)"], "default: not set in any file");
    // sysctl.conf (read last) overrides sysctl.d.
    assert_eq!(config(1012)["net.ipv4.ip_forward (source)"], "/etc/sysctl.conf:2");
}

/// 1088 (/tmp is a mount of its own) fails only where fstab has no /tmp, where the /tmp option
/// items (1089–1091) cannot apply: it is checked on a root of its own.
const FAILS_ELSEWHERE: [i64; 1] = [1088];

#[test]
fn every_linux_item_fails_on_the_failing_root_and_passes_on_the_passing_one() {
    for (name, want) in [("fail", "NOT_PASS"), ("pass", "PASS")] {
        let (_dir, root) = root(name);
        let got = assess(&root);
        // 1183 wants root's PATH directories owned by root: a copy made by another user is not.
        use std::os::unix::fs::MetadataExt;
        let by_root = std::fs::metadata(&root).unwrap().uid() == 0;
        for item in host_items() {
            let want = if name == "fail" && FAILS_ELSEWHERE.contains(&item.id) { "PASS" } else { want };
            let want = if item.id == 1183 && !by_root { "NOT_PASS" } else { want };
            assert_eq!(got.get(&item.id).map(String::as_str), Some(want), "{} on {name}/: {got:?}", item.id);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/fstab"), "UUID=1 / ext4 defaults 0 1\n").unwrap();
    let got = assess(dir.path());
    assert_eq!(got.get(&1088).map(String::as_str), Some("NOT_PASS"), "{got:?}");
    assert!(!got.contains_key(&1089), "no /tmp mount: its options do not apply");
}

/// Configuration reached through links, as the software follows them: sshd_config and a
/// sudoers drop-in moved elsewhere in the root and linked back (absolutely, and relatively)
/// give the same verdicts as the passing root itself; a link out of the root stays inside it.
#[test]
fn linked_files_are_judged_as_their_targets_inside_the_root() {
    let (_dir, root) = root("pass");
    let want = assess(&root);
    let srv = root.join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::rename(root.join("etc/ssh/sshd_config"), srv.join("sshd_config")).unwrap();
    std::os::unix::fs::symlink("/srv/sshd_config", root.join("etc/ssh/sshd_config")).unwrap();
    std::fs::rename(root.join("etc/sudoers.d/50-cis"), srv.join("50-cis")).unwrap();
    std::os::unix::fs::symlink("../../srv/50-cis", root.join("etc/sudoers.d/50-cis")).unwrap();
    assert_eq!(assess(&root), want);
    // /etc/audit/auditd.conf pointing at the host's own file: re-rooted, so it is missing here
    // and the auditd items do not apply — the host's file is never read.
    std::fs::remove_file(root.join("etc/audit/auditd.conf")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", root.join("etc/audit/auditd.conf")).unwrap();
    let got = assess(&root);
    assert!(!got.contains_key(&1129) && !got.contains_key(&1131), "{got:?}");
}

/// An empty root: exactly the items that need no file apply (their rule judges the software's
/// own defaults); every item with `applies_if` is left out, none fails for a missing file.
#[test]
fn on_an_empty_root_only_items_without_a_precondition_apply() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    let got = assess(dir.path());
    for item in host_items() {
        assert_eq!(
            got.contains_key(&item.id),
            item.applies_if.is_none(),
            "{} ({:?}): {got:?}",
            item.id,
            item.applies_if
        );
    }
    // Unset kernel parameters are the kernel's defaults: IP forwarding off passes, accepting
    // redirects (on by default) fails.
    assert_eq!((got[&1012].as_str(), got[&1013].as_str()), ("PASS", "NOT_PASS"));
}

/// Every file under `root` with its mode and bytes (a link: its target).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = e.path().symlink_metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_symlink() {
                out.insert(rel, (0, std::fs::read_link(e.path()).unwrap().into_os_string().into_encoded_bytes()));
            } else if meta.is_dir() {
                dirs.push(e.path());
            } else {
                out.insert(rel, (mode, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

#[test]
fn every_repairable_linux_item_is_repaired_verified_and_rolled_back_byte_for_byte() {
    let server = Server::start(&[]);
    let (_dir, root) = root("fail");
    server.add_instance(&serde_json::json!({"InstanceId": "catalog-1", "Root": root}));
    let original = tree(&root);
    // Repair-only items last: what they change stays changed.
    let mut items: Vec<CheckDef> = host_items().into_iter().filter(|c| c.repair.is_some()).collect();
    items.sort_by_key(|c| (!c.supports_rollback(), c.id));
    assert!(items.len() >= 40, "{}", items.len());
    for item in &items {
        let id = item.id.to_string();
        // A required parameter without a default: the one IP:PORT item.
        let ip_port = [("RepairTempParam.1.Name", "IPPort"), ("RepairTempParam.1.Value", "127.0.0.1:6379")];
        let extra: &[(&str, &str)] = if item.id == 1016 { &ip_port } else { &[] };
        let repair = server.run_task(&id, "REPAIR", "catalog-1", extra);
        assert_eq!(repair["Status"], "REPAIR_SUCCESS_VERIFIED", "{}: {repair}", item.id);
        assert_ne!(tree(&root), original, "{}: the repair changed something", item.id);
        if !item.supports_rollback() {
            continue;
        }
        let undone = server.roll_back(&id, "catalog-1", &repair);
        assert_eq!(undone["Status"], "ROLL_BACK_VERIFIED", "{}: {undone}", item.id);
        assert_eq!(tree(&root), original, "{}: the rollback is byte for byte, modes included", item.id);
    }
}

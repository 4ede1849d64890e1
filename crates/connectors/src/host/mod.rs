//! The host connector: an instance is a filesystem root (`/` in production, a directory per
//! server in the demo). It reads sshd, login.defs, sysctl, redis and file modes into one
//! document, and changes them with snapshots taken first.
//!
//! A root is not trusted: only regular files are read or changed (no FIFO, device or socket;
//! a final symbolic link swapped in is not followed), each at most `max_file_bytes`, never a
//! file with other hard links, and every call is bounded by `io_timeout` so that a hung
//! filesystem cannot hold the engine's workers (see `files.rs` and `bounded.rs`).

mod accounts;
mod boot;
mod bounded;
mod directives;
mod environment;
mod files;
mod live;
mod mounts;
mod packages;
mod paths;
mod sudoers;
mod units;
mod walk;

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use model::{Change, Dialect, Document, PlannedChange, Snapshot, SnapshotItem, Step, SOURCE};

pub use files::{Limits, DEFAULT_MAX_FILE_BYTES};
pub use paths::resolve_in_root;

use crate::{Connector, ConnectorError, Target, WHOLE_INSTANCE};
use bounded::{Bounded, Late};
use directives::{ConfigSet, Context, Edit, Pending};
use live::{Live, Overlay};

/// Files whose mode, uid and gid are part of the document (`file:<path>.mode` …).
const MODE_FILES: [&str; 18] = [
    "/etc/ssh/sshd_config",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/passwd",
    "/etc/passwd-",
    "/etc/group",
    "/etc/group-",
    "/etc/crontab",
    "/etc/motd",
    "/etc/issue",
    "/etc/issue.net",
    "/boot/grub/grub.cfg",
    "/etc/cron.allow",
    "/etc/cron.deny",
    "/etc/at.allow",
    "/etc/at.deny",
];

/// Directories whose mode, uid and gid are part of the document (`dir:<path>.mode` …).
const MODE_DIRS: [&str; 5] =
    ["/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly", "/etc/cron.d"];

/// The banners whose text is searched for details of the system.
const BANNERS: [&str; 3] = ["/etc/motd", "/etc/issue", "/etc/issue.net"];

/// The configurations the document is made of: (dialect, main file, document prefix, marker).
const SOURCES: [(Dialect, &str, &str); 11] = [
    (Dialect::Sshd, "/etc/ssh/sshd_config", "sshd"),
    (Dialect::SpaceKv, "/etc/login.defs", "login_defs"),
    (Dialect::Redis, "/etc/redis/redis.conf", "redis"),
    (Dialect::Sysctl, "", "sysctl"),
    (Dialect::Modprobe, "", "modprobe"),
    (Dialect::EqKv, "/etc/security/pwquality.conf", "pwquality"),
    (Dialect::EqKv, "/etc/security/faillock.conf", "faillock"),
    (Dialect::EqKv, "/etc/security/pwhistory.conf", "pwhistory"),
    (Dialect::EqKv, "/etc/default/useradd", "useradd"),
    (Dialect::EqKv, "/etc/systemd/journald.conf", "journald"),
    (Dialect::EqKv, "/etc/audit/auditd.conf", "auditd"),
];

/// What the host connector accepts and how long it waits.
#[derive(Clone, Copy, Debug)]
pub struct HostSettings {
    /// Largest configuration file read or backed up, in bytes.
    pub max_file_bytes: u64,
    /// Longest one call (a fetch, a backup, a change, a restore) may take.
    pub io_timeout: Duration,
}

/// One call's default time limit: far above what a local filesystem needs for files of at most
/// 1 MiB, and well inside the engine's 30-second lease.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings { max_file_bytes: DEFAULT_MAX_FILE_BYTES, io_timeout: DEFAULT_IO_TIMEOUT }
    }
}

/// Reads and changes configuration files under an instance's root.
#[derive(Default)]
pub struct HostConnector {
    settings: HostSettings,
    io: Bounded,
    writers: Arc<WriteLocks>,
}

/// Locks taken by every change of files under a root, for as long as the change runs (striped
/// by root). A call that timed out leaves its work running on a helper; holding the lock
/// there, that work finishes (or fails and puts its snapshot back) before any retry of the
/// step, or any later change of the same root, writes a byte — so a late write can never land
/// on top of a newer one, and no sweep removes a temporary file still being written.
struct WriteLocks([Mutex<()>; 256]);

impl Default for WriteLocks {
    fn default() -> Self {
        WriteLocks(std::array::from_fn(|_| Mutex::new(())))
    }
}

impl WriteLocks {
    fn of(&self, root: &str) -> MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(root) as usize % self.0.len();
        self.0[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HostConnector {
    /// A host connector with these limits.
    pub fn new(settings: HostSettings) -> Self {
        HostConnector { settings, ..HostConnector::default() }
    }

    /// Runs a change of files under the target's root within the time limit, holding the
    /// root's write lock on the helper for as long as the work runs.
    fn changing<T: Send + 'static>(
        &self,
        t: &Target,
        code: &'static str,
        work: impl FnOnce(&Target) -> Result<T, ConnectorError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let (t, writers) = (t.clone(), self.writers.clone());
        self.bounded(code, move || {
            let _held = writers.of(&t.locator);
            work(&t)
        })
    }

    fn limits(&self) -> Limits {
        Limits { max_file_bytes: self.settings.max_file_bytes }
    }

    /// Runs one call's file work within the time limit. Late work is a transient failure: the
    /// engine retries the step under a later lease (every step is idempotent).
    fn bounded<T: Send + 'static>(
        &self,
        code: &'static str,
        work: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let limit = self.settings.io_timeout;
        self.io.run(limit, work).unwrap_or_else(|late| {
            Err(match late {
                Late::Elapsed => ConnectorError::transient(
                    "FileOperationTimeout",
                    format!("the files did not answer within {} ms", limit.as_millis()),
                ),
                Late::Saturated => ConnectorError::transient(
                    "FileOperationTimeout",
                    "every file helper is busy or stuck on a filesystem that does not answer",
                ),
                Late::Panicked => ConnectorError::new(code, "the file work failed unexpectedly"),
            })
        })
    }
}

fn root_of(t: &Target) -> Result<PathBuf, ConnectorError> {
    let root = PathBuf::from(&t.locator);
    if root.is_dir() {
        Ok(root)
    } else {
        Err(ConnectorError::freed(format!("the root {} of instance {} does not exist", t.locator, t.instance_id)))
    }
}

/// The code of an I/O failure: the refusal's own code (`ConfigFileTooLarge` …) when a file was
/// refused, else the stage's `code`.
fn code_of(code: &'static str, e: &io::Error) -> &'static str {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<Context>()).map(|c| &c.1).unwrap_or(e);
    files::refusal(inner).map_or(code, |r| r.code())
}

fn io_err<'a>(code: &'static str, what: &'a str) -> impl Fn(io::Error) -> ConnectorError + 'a {
    move |e| ConnectorError::new(code_of(code, &e), format!("{what}: {e}"))
}

/// `/etc//ssh/./sshd_config`, `/etc/ssh/../ssh/sshd_config` → `/etc/ssh/sshd_config`, so that
/// one file has one scope (`..` stops at the root, as `resolve_in_root` does).
pub(crate) fn normal_path(p: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The scope of one step: a file (for sshd, its main file stands for everything it includes),
/// or every sysctl (modprobe) file at once (a key's effective line may be in any of them).
fn step_scope(step: &Step) -> String {
    match step {
        Step::SetDirective { dialect: Dialect::Sysctl, .. } => "sysctl".to_string(),
        Step::SetDirective { dialect: Dialect::Modprobe, .. } => "modprobe".to_string(),
        Step::SetDirective { file, .. } | Step::SetMode { file, .. } => format!("file:{}", normal_path(file)),
        Step::Cloud { .. } => WHOLE_INSTANCE.to_string(),
    }
}

/// Whether every item of `snapshot` is a file that `steps` may change: the step's own file,
/// a file beside it or below its directory (sshd's and redis's includes), or for sysctl a file
/// of /etc/sysctl.conf or /etc/sysctl.d, for modprobe one of /etc/modprobe.d (edits are made
/// only there). An agent restores or
/// rewrites only such files, whatever snapshot a server sends it.
pub fn snapshot_fits(steps: &[Step], snapshot: &Snapshot) -> bool {
    snapshot.items.iter().all(|item| {
        if let Some(live) = item.live_key() {
            // A value in effect is restored only for a key the steps set.
            return steps.iter().any(|step| step.live_key().as_deref() == Some(live));
        }
        let key = normal_path(&item.key);
        steps.iter().any(|step| match step {
            Step::SetMode { file, .. } => key == normal_path(file),
            Step::SetDirective { dialect: Dialect::Sysctl, .. } => {
                key == "/etc/sysctl.conf" || key.starts_with("/etc/sysctl.d/")
            }
            Step::SetDirective { dialect: Dialect::Modprobe, .. } => key.starts_with("/etc/modprobe.d/"),
            Step::SetDirective { file, .. } => {
                let file = normal_path(file);
                let dir = file.rsplit_once('/').map_or("", |(d, _)| d);
                key == file || (!dir.is_empty() && key.starts_with(&format!("{dir}/")))
            }
            Step::Cloud { .. } => false,
        })
    })
}

/// The files of a snapshot (its other items are values in effect).
fn file_items(snapshot: &Snapshot) -> impl Iterator<Item = &SnapshotItem> {
    snapshot.items.iter().filter(|i| i.live_key().is_none())
}

/// The running system of a live target (None: a root that is only files).
fn live_of<'a>(t: &'a Target, root: &'a Path, limits: &'a Limits) -> Option<Live<'a>> {
    t.live.as_ref().map(|services| Live { root, services, limits })
}

/// What one step will do, planned against the files as they are now. Backup snapshots exactly
/// the file a plan names; apply carries the plan out.
enum Plan {
    /// Replace a file's content (keeping its mode and owner; 0644 if it is created).
    Write(Edit),
    /// Change a file's permission bits.
    Mode { logical: String, real: PathBuf, mode: u32 },
}

impl Plan {
    /// The plan of `step` on the files as they are, or as `pending` holds them.
    fn of(root: &Path, step: &Step, limits: &Limits, pending: &Pending) -> io::Result<Plan> {
        if step.values().iter().any(|v| v.chars().any(char::is_control)) {
            return Err(io::Error::other("a repair value holds a control character"));
        }
        match step {
            Step::SetDirective { dialect, file, key, value } => Ok(Plan::Write(
                ConfigSet::load_over(root, *dialect, file, limits, pending)?.plan_set(root, key, value)?,
            )),
            Step::SetMode { file, mode } => {
                let mode = u32::from_str_radix(mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| io::Error::other(format!("{mode} is not an octal mode")))?;
                Ok(Plan::Mode { logical: file.clone(), real: resolve_in_root(root, file)?, mode })
            }
            Step::Cloud { action, .. } => Err(io::Error::other(format!("{action} is not a step a host carries out"))),
        }
    }

    /// The snapshot key, the real path, and whether the content is part of the snapshot.
    fn target(&self) -> (&str, &Path, bool) {
        match self {
            Plan::Write(e) => (&e.logical, &e.real, true),
            Plan::Mode { logical, real, .. } => (logical, real, false),
        }
    }

    fn apply(&self, root: &Path, limits: &Limits) -> io::Result<()> {
        match self {
            Plan::Write(edit) => {
                let current = files::state(root, &edit.real, true, limits)?;
                if current.as_ref().map(|s| s.content.as_slice()) == Some(edit.text.as_slice()) {
                    return Ok(());
                }
                let (mode, owner) = current.map_or((0o644, None), |s| (s.mode, Some((s.uid, s.gid))));
                files::write_atomic(root, &edit.real, &edit.text, mode, owner)
            }
            Plan::Mode { real, mode, logical } => {
                let s = files::state(root, real, false, limits)?
                    .ok_or_else(|| io::Error::other(format!("{logical} does not exist")))?;
                files::set_meta(root, real, *mode, s.uid, s.gid)
            }
        }
    }
}

fn restore_item(root: &Path, item: &SnapshotItem) -> io::Result<()> {
    let real = resolve_in_root(root, &item.key)?;
    let (mode, uid, gid) = (files::meta_of(item, "mode"), files::meta_of(item, "uid"), files::meta_of(item, "gid"));
    if !item.existed {
        return files::remove(root, &real);
    }
    if item.has_content {
        files::write_atomic(root, &real, &item.data, mode, Some((uid, gid)))
    } else {
        files::set_meta(root, &real, mode, uid, gid)
    }
}

fn current_digest(root: &Path, item: &SnapshotItem, limits: &Limits) -> io::Result<String> {
    let real = resolve_in_root(root, &item.key)?;
    Ok(files::digest(files::state(root, &real, item.has_content, limits)?.as_ref(), item.has_content))
}

/// Removes what writes of the snapshot's files interrupted by a crash left behind (called
/// before a resumed change or restore writes them again).
fn sweep(root: &Path, snapshot: &Snapshot) {
    for item in file_items(snapshot) {
        if let Ok(real) = resolve_in_root(root, &item.key) {
            let n = files::sweep_temporaries(root, &real);
            if n > 0 {
                tracing::info!(file = %item.key, removed = n, "removed temporary files of an interrupted write");
            }
        }
    }
}

fn fetch(t: &Target, limits: &Limits) -> Result<Document, ConnectorError> {
    let root = root_of(t)?;
    let _held = files::hold_root(&root).map_err(io_err("CheckError", "the root"))?;
    let mut doc = Document::new();
    // First: the walk lists /etc (and the rest of its directories) with the mode and owner of
    // each file, which the held root keeps; the globs and owners below come from those
    // listings, and a name missing from one is absent without a look.
    walk::world_writable(&root, &mut doc);
    for (dialect, file, prefix) in SOURCES {
        let set = ConfigSet::load(&root, dialect, file, limits).map_err(io_err("CheckError", prefix))?;
        // Drop-in directories have no main file whose presence means anything.
        if !file.is_empty() && set.exists() {
            doc.insert(format!("{prefix}.present"), "true".into());
        }
        for (k, (v, line)) in set.sourced_values() {
            doc.insert(format!("{SOURCE}{prefix}.{k}"), line);
            doc.insert(format!("{prefix}.{k}"), v);
        }
    }
    for f in MODE_FILES {
        if let Some(owner) = paths::owner_in_root(&root, f).map_err(io_err("CheckError", f))? {
            owner_facts(&mut doc, &format!("file:{f}"), owner);
        }
    }
    let read = |f: &str, limits: &Limits| -> Result<Option<String>, ConnectorError> {
        let (_, bytes) = paths::read_in_root(&root, f, limits).map_err(io_err("CheckError", f))?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    if let Some(shadow) = read("/etc/shadow", limits)? {
        accounts::shadow_facts(&shadow, &mut doc);
    }
    if let Some(passwd) = read("/etc/passwd", limits)? {
        accounts::passwd_facts(&passwd, read("/etc/group", limits)?.as_deref(), &mut doc);
    }
    if let Some(fstab) = read("/etc/fstab", limits)? {
        mounts::fstab_facts(&fstab, &mut doc);
    }
    for d in MODE_DIRS {
        if let Some(meta) = paths::dir_meta_in_root(&root, d).map_err(io_err("CheckError", d))? {
            owner_facts(&mut doc, &format!("dir:{d}"), meta);
        }
    }
    if let Some(cfg) = read("/boot/grub/grub.cfg", limits)? {
        boot::grub_facts(&cfg, &mut doc);
    }
    let os_release = match read("/etc/os-release", limits)? {
        Some(text) => Some(text),
        None => read("/usr/lib/os-release", limits)?,
    };
    let os_id = os_release.as_deref().and_then(boot::os_id);
    for b in BANNERS {
        if let Some(text) = read(b, limits)? {
            boot::banner_facts(b, &text, os_id.as_deref(), &mut doc);
        }
    }
    let list = |dir: &str| -> Vec<String> {
        paths::glob_in_root(&root, &format!("{dir}/*"))
            .into_iter()
            .filter_map(|p| p.strip_prefix(&root).ok().map(|rel| format!("/{}", rel.display())))
            .collect()
    };
    let text = |f: &str| read(f, limits);
    audit_rule_facts(&text, &list, &mut doc)?;
    let limit_files = std::iter::once("/etc/security/limits.conf".to_string())
        .chain(list("/etc/security/limits.d").into_iter().filter(|f| f.ends_with(".conf")));
    let mut read_limits = Vec::new();
    for f in limit_files {
        if let Some(t) = text(&f)? {
            read_limits.push((f, t));
        }
    }
    environment::core_limit(&read_limits, &mut doc);
    if let Some(env) = text("/etc/environment")? {
        environment::root_path(&root, &env, &mut doc);
    }
    let policy = sudoers::collect(&mut |f: &str| text(f), &list)?;
    sudoers::facts(&policy, &mut doc);
    units::enabled_units(&root, &mut doc);
    loose_file_facts(&root, &mut doc).map_err(io_err("CheckError", "the modes of key and drop-in files"))?;
    if let Some(status) = read(packages::STATUS, &Limits { max_file_bytes: packages::MAX_STATUS_BYTES })? {
        packages::installed(&status, &mut doc);
    }
    if let Some(live) = live_of(t, &root, limits) {
        live.read(&mut doc);
    }
    // CIS 5.2.4 asks for any of four directives (after the live values, which may have them).
    let lists: Vec<String> = ["allowusers", "allowgroups", "denyusers", "denygroups"]
        .iter()
        .filter_map(|k| doc.get(&format!("sshd.{k}")).map(|v| format!("{k} {v}")))
        .collect();
    if !lists.is_empty() {
        doc.insert("sshd.access_lists".into(), lists.join("; "));
    }
    Ok(doc)
}

/// `<prefix>.mode` (octal), `.uid` and `.gid` of a file or directory.
fn owner_facts(doc: &mut Document, prefix: &str, (mode, uid, gid): (u32, u32, u32)) {
    doc.insert(format!("{prefix}.mode"), format!("{mode:04o}"));
    doc.insert(format!("{prefix}.uid"), uid.to_string());
    doc.insert(format!("{prefix}.gid"), gid.to_string());
}

/// The audit rules augenrules loads (`auditd.rules`: the lines of rules.d/*.rules in name
/// order, comments dropped) and the files they come from (`auditd.rules_files`).
fn audit_rule_facts(
    text: &dyn Fn(&str) -> Result<Option<String>, ConnectorError>,
    list: &dyn Fn(&str) -> Vec<String>,
    doc: &mut Document,
) -> Result<(), ConnectorError> {
    let files: Vec<String> = list("/etc/audit/rules.d").into_iter().filter(|f| f.ends_with(".rules")).collect();
    if files.is_empty() {
        return Ok(());
    }
    let mut rules = String::new();
    for f in &files {
        for line in text(f)?.unwrap_or_default().lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                rules.push_str(line);
                rules.push('\n');
            }
        }
    }
    doc.insert("auditd.rules".into(), rules);
    doc.insert("auditd.rules_files".into(), files.join(", "));
    Ok(())
}

/// Sets of files whose mode must grant no more than a limit, found by name: (pattern, the
/// most a mode may grant, the document key listing the files that grant more as `path(mode)`).
const LOOSE_FILES: [(&str, u32, &str); 4] = [
    ("/etc/ssh/ssh_host_*_key", 0o600, "sshd.host_private_keys_loose"),
    ("/etc/ssh/ssh_host_*_key.pub", 0o644, "sshd.host_public_keys_loose"),
    ("/etc/ssh/sshd_config.d/*.conf", 0o600, "sshd.dropins_loose"),
    ("/etc/sudoers.d/*", 0o440, "sudo.dropins_loose"),
];

fn loose_file_facts(root: &Path, doc: &mut Document) -> io::Result<()> {
    for (pattern, allowed, key) in LOOSE_FILES {
        let mut found = Vec::new();
        for real in paths::glob_in_root(root, pattern) {
            let shown = format!("/{}", real.strip_prefix(root).unwrap_or(&real).display());
            // The real path has no link on the way: its owner as its directory's listing found it.
            if let Some((mode, ..)) = paths::owner_in_root(root, &shown)? {
                if mode & !allowed != 0 {
                    found.push(format!("{shown}({mode:04o})"));
                }
            }
        }
        doc.insert(key.to_string(), found.join(","));
    }
    Ok(())
}

fn backup(t: &Target, change: &Change, limits: &Limits) -> Result<Snapshot, ConnectorError> {
    let root = root_of(t)?;
    let mut seen = BTreeSet::new();
    let mut snapshot = Snapshot::default();
    for plan in plan_steps(&root, &change.steps, limits).map_err(io_err("BackUpError", "plan"))? {
        let (logical, real, content) = plan.target();
        if seen.insert(logical.to_string()) {
            snapshot
                .items
                .push(files::capture(&root, logical, real, content, limits).map_err(io_err("BackUpError", logical))?);
        }
    }
    if let Some(live) = live_of(t, &root, limits) {
        snapshot.items.extend(live.capture(change)?);
    }
    Ok(snapshot)
}

fn apply(t: &Target, change: &Change, mut snapshot: Snapshot, limits: &Limits) -> Result<Snapshot, ConnectorError> {
    let root = root_of(t)?;
    let live = live_of(t, &root, limits);
    if let Some(live) = &live {
        live.reachable_after(change)?;
    }
    sweep(&root, &snapshot);
    let mut result = Ok(());
    for step in &change.steps {
        let plan = match Plan::of(&root, step, limits, &Pending::new()) {
            Ok(plan) => plan,
            Err(e) => {
                result = Err(io_err("RepairError", "plan")(e));
                break;
            }
        };
        let (logical, ..) = plan.target();
        // Never write a file the snapshot does not hold.
        if !snapshot.items.iter().any(|i| i.key == logical) {
            result = Err(ConnectorError::new(
                "ConfigChangedSinceBackup",
                format!("{logical} is not in the snapshot: the configuration changed after the backup"),
            ));
            break;
        }
        // On a live system, the service's own checker sees the candidate before it is written.
        if let (Some(live), Plan::Write(edit)) = (&live, &plan) {
            let candidate = Overlay::from([(normal_path(&edit.logical), Some(edit.text.clone()))]);
            if let Err(e) = live.validate(change, &candidate) {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = plan.apply(&root, limits) {
            result = Err(io_err("RepairError", logical)(e));
            break;
        }
    }
    let mut took_effect = false;
    if result.is_ok() {
        if let Some(live) = &live {
            took_effect = true;
            match live.take_effect(change, &mut snapshot) {
                Ok(done) => tracing::info!(instance = %t.instance_id, done = %done, "the change took effect"),
                Err(e) => result = Err(e),
            }
        }
    }
    if let Err(mut e) = result {
        // Leave nothing half-changed: put back every file that differs from the snapshot, and
        // then what the running system had (the change, or an earlier attempt of it, may have
        // reached it).
        let mut restored = false;
        for item in file_items(&snapshot) {
            if current_digest(&root, item, limits).ok().as_deref() != Some(files::digest_of_item(item).as_str()) {
                restored = true;
                let _ = restore_item(&root, item);
            }
        }
        if let Some(live) = live.as_ref().filter(|_| restored || took_effect) {
            if let Err(again) = live.put_back(change, &snapshot) {
                tracing::error!(instance = %t.instance_id, error = %again.message, "the running system could not be put back after a failed change");
                e.message = format!("{}; then {}", e.message, again.message);
            }
        }
        return Err(e);
    }
    for item in snapshot.items.iter_mut().filter(|i| i.live_key().is_none()) {
        item.post_digest = Some(current_digest(&root, item, limits).map_err(io_err("RepairError", &item.key))?);
    }
    Ok(snapshot)
}

/// What apply would do, planned as backup plans it ([`plan_steps`]) and each file read as
/// backup captures it (so a file backup would refuse — special, too large, hard-linked — is
/// refused here too), and on a live system checked as apply checks it (the service stays
/// reachable, its own checker accepts the candidate); nothing is written.
fn preview(t: &Target, change: &Change, limits: &Limits) -> Result<Vec<PlannedChange>, ConnectorError> {
    let root = root_of(t)?;
    let plans = plan_steps(&root, &change.steps, limits).map_err(io_err("PreviewError", "plan"))?;
    let live = live_of(t, &root, limits);
    if let Some(live) = &live {
        live.reachable_after(change)?;
    }
    // Each file once, however it is named (two names of one file are one file to apply too).
    let mut before: Vec<(SnapshotItem, &Path)> = Vec::new();
    for plan in &plans {
        let (logical, real, content) = plan.target();
        if !before.iter().any(|(_, r)| *r == real) {
            let item =
                files::capture(&root, logical, real, content, limits).map_err(io_err("PreviewError", logical))?;
            before.push((item, real));
        }
    }
    let mut planned = Vec::new();
    let mut candidate = Overlay::new();
    for (item, real) in &before {
        let last = plans.iter().rev().find(|p| p.target().1 == *real);
        match last {
            Some(Plan::Write(edit)) => {
                let now = item.existed.then_some(item.data.as_slice());
                if now != Some(edit.text.as_slice()) {
                    candidate.insert(normal_path(&edit.logical), Some(edit.text.clone()));
                    let diff = unified_diff(&item.key, now, &edit.text);
                    planned.push(PlannedChange::FileContent { file: item.key.clone(), created: !item.existed, diff });
                }
            }
            Some(Plan::Mode { mode, .. }) => {
                if !item.existed {
                    return Err(ConnectorError::new("PreviewError", format!("{} does not exist", item.key)));
                }
                let now = files::meta_of(item, "mode");
                if now != *mode {
                    let (before, after) = (format!("{now:04o}"), format!("{mode:04o}"));
                    planned.push(PlannedChange::FileMode { file: item.key.clone(), before, after });
                }
            }
            None => {}
        }
    }
    if let (Some(live), false) = (&live, candidate.is_empty()) {
        live.validate(change, &candidate)?;
    }
    Ok(planned)
}

/// The plans of a change's steps, each planned over the files as the steps before it leave
/// them: what apply, which writes each before planning the next, finds.
fn plan_steps(root: &Path, steps: &[Step], limits: &Limits) -> io::Result<Vec<Plan>> {
    let mut pending = Pending::new();
    let mut plans = Vec::with_capacity(steps.len());
    for step in steps {
        let plan = Plan::of(root, step, limits, &pending)?;
        if let Plan::Write(edit) = &plan {
            pending.insert(edit.real.clone(), edit.text.clone());
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// A unified diff of a file's content (`None`: it does not exist), three lines of context. A
/// byte that is not UTF-8 shows as U+FFFD here only: the repair writes every byte it keeps as
/// it was.
fn unified_diff(file: &str, before: Option<&[u8]>, after: &[u8]) -> String {
    let (old, new) = (String::from_utf8_lossy(before.unwrap_or_default()), String::from_utf8_lossy(after));
    let (old_lines, new_lines) = (diff_lines(&old), diff_lines(&new));
    let (old_lines, new_lines): (Vec<&str>, Vec<&str>) =
        (old_lines.iter().map(String::as_str).collect(), new_lines.iter().map(String::as_str).collect());
    let old_name = if before.is_some() { format!("a{file}") } else { "/dev/null".to_string() };
    similar::TextDiff::configure()
        .diff_slices(&old_lines, &new_lines)
        .unified_diff()
        .missing_newline_hint(false)
        .context_radius(3)
        .header(&old_name, &format!("b{file}"))
        .to_string()
}

/// A text's lines for [`unified_diff`], without their `\n`: lines end at `\n` only, as the
/// repair and `patch` split them (a lone `\r` is part of its line). A last line without a
/// newline carries the diff format's marker, so that it differs from the same line with one.
fn diff_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(line) => line.to_string(),
            None => format!("{l}\n\\ No newline at end of file"),
        })
        .collect()
}

fn restore(t: &Target, change: &Change, snapshot: &Snapshot, limits: &Limits) -> Result<(), ConnectorError> {
    let root = root_of(t)?;
    let live = live_of(t, &root, limits);
    sweep(&root, snapshot);
    // Check every item first: a rollback is all or nothing.
    for item in file_items(snapshot) {
        let now = current_digest(&root, item, limits).map_err(io_err("RollbackError", &item.key))?;
        let pre = files::digest_of_item(item);
        // No post digest: the repair was interrupted before it was recorded, so the change
        // on disk is the repair's own and is put back unconditionally.
        let Some(post) = &item.post_digest else {
            continue;
        };
        if &now != post && now != pre {
            return Err(ConnectorError::new(
                "ConfigChangedSinceRepair",
                format!("{} changed after the repair; restoring the snapshot would undo that change", item.key),
            ));
        }
    }
    // The service's own checker must accept what is put back, or nothing is; and a value in
    // effect changed since the repair is not undone either.
    if let Some(live) = &live {
        live.unchanged_since(snapshot)?;
        let restored: Overlay = file_items(snapshot)
            .filter(|i| i.has_content || !i.existed)
            .map(|i| (normal_path(&i.key), i.existed.then(|| i.data.clone())))
            .collect();
        live.validate(change, &restored)?;
    }
    for item in file_items(snapshot) {
        if current_digest(&root, item, limits).ok() != Some(files::digest_of_item(item)) {
            restore_item(&root, item).map_err(io_err("RollbackError", &item.key))?;
        }
    }
    if let Some(live) = &live {
        live.put_back(change, snapshot)?;
    }
    Ok(())
}

fn matches(t: &Target, snapshot: &Snapshot, limits: &Limits) -> Result<bool, ConnectorError> {
    let root = root_of(t)?;
    for item in file_items(snapshot) {
        if current_digest(&root, item, limits).map_err(io_err("RollbackError", &item.key))?
            != files::digest_of_item(item)
        {
            return Ok(false);
        }
    }
    match live_of(t, &root, limits) {
        Some(live) => live.matches(snapshot),
        None => Ok(true),
    }
}

impl Connector for HostConnector {
    fn kind(&self) -> &'static str {
        "host"
    }

    /// One file (or all of sysctl) when every step changes the same one; else the whole host.
    fn scope(&self, steps: &[Step]) -> String {
        let scopes: BTreeSet<String> = steps.iter().map(step_scope).collect();
        match scopes.len() {
            1 => scopes.into_iter().next().unwrap_or_default(),
            _ => WHOLE_INSTANCE.to_string(),
        }
    }

    fn fetch(&self, t: &Target) -> Result<Document, ConnectorError> {
        let (t, limits) = (t.clone(), self.limits());
        self.bounded("CheckError", move || fetch(&t, &limits))
    }

    /// The whole batch on one helper, within one time limit: a check run then pays one
    /// hand-over per batch instead of one per host. A batch that does not finish in time (a
    /// filesystem that hangs, or one that is merely slow) is read again one host at a time, each
    /// within its own limit, so that one bad host fails alone.
    fn fetch_each(&self, targets: &[Target]) -> Vec<Result<Document, ConnectorError>> {
        let (batch, limits) = (targets.to_vec(), self.limits());
        match self.io.run(self.settings.io_timeout, move || batch.iter().map(|t| fetch(t, &limits)).collect()) {
            Ok(docs) => docs,
            Err(_) => targets.iter().map(|t| self.fetch(t)).collect(),
        }
    }

    fn preview(&self, t: &Target, change: &Change) -> Result<Vec<PlannedChange>, ConnectorError> {
        let (t, change, limits) = (t.clone(), change.clone(), self.limits());
        self.bounded("PreviewError", move || preview(&t, &change, &limits))
    }

    fn backup(&self, t: &Target, change: &Change) -> Result<Snapshot, ConnectorError> {
        let (t, change, limits) = (t.clone(), change.clone(), self.limits());
        self.bounded("BackUpError", move || backup(&t, &change, &limits))
    }

    fn apply(&self, t: &Target, change: &Change, snapshot: &mut Snapshot) -> Result<(), ConnectorError> {
        let (change, snap, limits) = (change.clone(), snapshot.clone(), self.limits());
        *snapshot = self.changing(t, "RepairError", move |t| apply(t, &change, snap, &limits))?;
        Ok(())
    }

    fn restore(&self, t: &Target, change: &Change, snapshot: &Snapshot) -> Result<(), ConnectorError> {
        let (change, snap, limits) = (change.clone(), snapshot.clone(), self.limits());
        self.changing(t, "RollbackError", move |t| restore(t, &change, &snap, &limits))
    }

    fn matches(&self, t: &Target, snapshot: &Snapshot) -> Result<bool, ConnectorError> {
        let (t, snap, limits) = (t.clone(), snapshot.clone(), self.limits());
        self.bounded("RollbackError", move || matches(&t, &snap, &limits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SSHD: &str =
        "# Debian-like\nInclude /etc/ssh/sshd_config.d/*.conf\nPort 22\nPermitRootLogin yes\nX11Forwarding yes\n";

    fn host(files: &[(&str, &str, u32)]) -> (tempfile::TempDir, Target) {
        let t = tempfile::tempdir().unwrap();
        for (p, text, mode) in files {
            let full = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, text).unwrap();
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let target =
            Target { instance_id: "i-test".into(), locator: t.path().display().to_string(), ..Default::default() };
        (t, target)
    }

    /// A change of files only (the target is not live, so its effect is never used).
    fn files_only(steps: &[Step]) -> Change {
        Change { steps: steps.to_vec(), effect: None }
    }

    fn set(dialect: Dialect, file: &str, key: &str, value: &str) -> Step {
        Step::SetDirective { dialect, file: file.into(), key: key.into(), value: value.into() }
    }

    #[test]
    fn repair_then_restore_is_byte_for_byte() {
        let (t, target) = host(&[("/etc/ssh/sshd_config", SSHD, 0o644), ("/etc/ssh/sshd_config.d/x.conf", "", 0o644)]);
        let c = HostConnector::default();
        let before = c.fetch(&target).unwrap();
        assert_eq!(before["sshd.permitrootlogin"], "yes");
        assert_eq!(before["src:sshd.permitrootlogin"], "/etc/ssh/sshd_config:4", "the line that decided it");
        assert_eq!(before["file:/etc/ssh/sshd_config.mode"], "0644");
        let steps = vec![
            set(Dialect::Sshd, "/etc/ssh/sshd_config", "PermitRootLogin", "no"),
            Step::SetMode { file: "/etc/ssh/sshd_config".into(), mode: "0600".into() },
        ];
        let mut snap = c.backup(&target, &files_only(&steps)).unwrap();
        assert_eq!(snap.items.len(), 1, "one file, snapshotted once");
        c.apply(&target, &files_only(&steps), &mut snap).unwrap();
        let after = c.fetch(&target).unwrap();
        assert_eq!(after["sshd.permitrootlogin"], "no");
        assert_eq!(after["file:/etc/ssh/sshd_config.mode"], "0600");
        let text = std::fs::read_to_string(t.path().join("etc/ssh/sshd_config")).unwrap();
        assert_eq!(text, SSHD.replace("PermitRootLogin yes", "PermitRootLogin no"), "only the line in effect changed");
        assert!(!c.matches(&target, &snap).unwrap());
        c.restore(&target, &Change::default(), &snap).unwrap();
        assert!(c.matches(&target, &snap).unwrap());
        assert_eq!(std::fs::read_to_string(t.path().join("etc/ssh/sshd_config")).unwrap(), SSHD);
        let mode = std::fs::metadata(t.path().join("etc/ssh/sshd_config")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        // Restoring twice (a retried rollback) is harmless.
        c.restore(&target, &Change::default(), &snap).unwrap();
        assert!(c.matches(&target, &snap).unwrap());
    }

    /// Applies a unified diff to `before` (what `patch` does), refusing a hunk whose context
    /// or removed lines do not match.
    fn patched(before: &str, diff: &str) -> String {
        let old: Vec<&str> = before.split_inclusive('\n').collect();
        let mut out = String::new();
        let mut at = 0; // lines of `old` consumed
        let mut lines = diff.split_inclusive('\n').skip(2).peekable();
        while let Some(header) = lines.next() {
            let start: usize = header.trim_start_matches("@@ -").split([',', ' ']).next().unwrap().parse().unwrap();
            let start = start.saturating_sub(1).max(at);
            out.extend(old[at..start].iter().copied());
            at = start;
            while let Some(l) = lines.next_if(|l| !l.starts_with("@@")) {
                let (sign, text) = l.split_at(1);
                let no_newline = lines.next_if(|n| n.starts_with("\\")).is_some();
                let text = if no_newline { text.trim_end_matches('\n') } else { text };
                if sign != "+" {
                    assert_eq!(old[at], text, "the diff does not apply at line {}", at + 1);
                    at += 1;
                }
                if sign != "-" {
                    out.push_str(text);
                }
            }
        }
        out.extend(old[at..].iter().copied());
        out
    }

    #[test]
    fn a_preview_is_exactly_what_the_repair_then_writes_and_writes_nothing() {
        let redis = "# redis\nbind 0.0.0.0\nprotected-mode yes\n\n# the port\nport 6379\ndaemonize no";
        let (t, target) = host(&[
            ("/etc/redis/redis.conf", redis, 0o640),
            ("/etc/ssh/sshd_config", SSHD, 0o644),
            ("/etc/sysctl.conf", "# nothing\n", 0o644),
            ("/etc/security/pwquality.conf", "# a\rb\nminlen = 8\r\ndifok = 3\r", 0o644),
        ]);
        let c = HostConnector::default();
        for steps in [
            // Two steps on one file compose: the second is planned on what the first wrote.
            vec![
                set(Dialect::Redis, "/etc/redis/redis.conf", "bind", "127.0.0.1"),
                set(Dialect::Redis, "/etc/redis/redis.conf", "port", "6380"),
                Step::SetMode { file: "/etc/redis/redis.conf".into(), mode: "0600".into() },
            ],
            vec![set(Dialect::Sshd, "/etc/ssh/sshd_config", "MaxAuthTries", "4")],
            vec![set(Dialect::Sysctl, "", "net.ipv4.ip_forward", "0")],
            // A carriage return inside a line, and one at the very end without a newline.
            vec![set(Dialect::EqKv, "/etc/security/pwquality.conf", "minlen", "14")],
        ] {
            let change = files_only(&steps);
            let before = c.fetch(&target).unwrap();
            let planned = c.preview(&target, &change).unwrap();
            assert_eq!(c.fetch(&target).unwrap(), before, "a preview changes nothing");
            assert!(!planned.is_empty());
            let mut snap = c.backup(&target, &change).unwrap();
            let old: Vec<_> = snap.items.iter().map(|i| (i.key.clone(), i.existed, i.data.clone())).collect();
            c.apply(&target, &change, &mut snap).unwrap();
            for p in &planned {
                match p {
                    PlannedChange::FileContent { file, created, diff } => {
                        let (_, existed, data) = old.iter().find(|(k, ..)| k == file).unwrap();
                        assert_eq!(*created, !existed);
                        let now = std::fs::read_to_string(t.path().join(file.trim_start_matches('/'))).unwrap();
                        assert_eq!(patched(&String::from_utf8_lossy(data), diff), now, "{diff}");
                    }
                    PlannedChange::FileMode { file, before, after } => {
                        assert_eq!(
                            (file.as_str(), before.as_str(), after.as_str()),
                            ("/etc/redis/redis.conf", "0640", "0600")
                        );
                        let meta = std::fs::metadata(t.path().join("etc/redis/redis.conf")).unwrap();
                        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
                    }
                    PlannedChange::CloudState { .. } => panic!("a host plans no cloud state"),
                }
            }
            // Once done, the same change has nothing left to do.
            assert_eq!(c.preview(&target, &change).unwrap(), vec![]);
        }
        let redis_diff = match &c
            .preview(&target, &files_only(&[set(Dialect::Redis, "/etc/redis/redis.conf", "port", "6381")]))
            .unwrap()[0]
        {
            PlannedChange::FileContent { diff, .. } => diff.clone(),
            other => panic!("{other:?}"),
        };
        assert!(redis_diff.starts_with("--- a/etc/redis/redis.conf\n+++ b/etc/redis/redis.conf\n@@ "), "{redis_diff}");
        assert!(redis_diff.contains("\n-port 6380\n+port 6381\n"), "{redis_diff}");
    }

    #[test]
    fn diffs_split_lines_at_newlines_only_and_mark_a_missing_final_newline() {
        let diff = unified_diff("/f", Some(b"a\rb\nend"), b"a\rb\nend\n");
        assert_eq!(diff, "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\rb\n-end\n\\ No newline at end of file\n+end\n");
        assert_eq!(patched("a\rb\nend", &diff), "a\rb\nend\n");
        let created = unified_diff("/g", None, b"x = 1\n");
        assert_eq!(created, "--- /dev/null\n+++ b/g\n@@ -0,0 +1 @@\n+x = 1\n");
    }

    #[test]
    fn a_preview_of_a_missing_file_or_bad_value_is_an_error_not_a_change() {
        let (_t, target) = host(&[("/etc/login.defs", "PASS_MAX_DAYS 99999\n", 0o644)]);
        let c = HostConnector::default();
        let missing = files_only(&[Step::SetMode { file: "/etc/nothing".into(), mode: "0600".into() }]);
        assert_eq!(c.preview(&target, &missing).unwrap_err().code, "PreviewError");
        let control = files_only(&[set(Dialect::SpaceKv, "/etc/login.defs", "PASS_MAX_DAYS", "9\n0")]);
        assert_eq!(c.preview(&target, &control).unwrap_err().code, "PreviewError");
        // A file the backup would refuse is refused by the preview too.
        std::fs::hard_link(_t.path().join("etc/login.defs"), _t.path().join("etc/second-name")).unwrap();
        let change = files_only(&[set(Dialect::SpaceKv, "/etc/login.defs", "PASS_MAX_DAYS", "90")]);
        assert_eq!(c.preview(&target, &change).unwrap_err().code, "ConfigFileHardLinked");
    }

    #[test]
    fn a_created_file_is_removed_by_the_rollback() {
        let (t, target) = host(&[("/etc/sysctl.conf", "# nothing\n", 0o644)]);
        let c = HostConnector::default();
        let steps = vec![set(Dialect::Sysctl, "", "net.ipv4.ip_forward", "0")];
        let mut snap = c.backup(&target, &files_only(&steps)).unwrap();
        assert!(!snap.items[0].existed);
        c.apply(&target, &files_only(&steps), &mut snap).unwrap();
        let dropin = t.path().join("etc/sysctl.d/99-zz-posture-net.ipv4.ip_forward.conf");
        assert!(dropin.exists());
        assert_eq!(c.fetch(&target).unwrap()["sysctl.net.ipv4.ip_forward"], "0");
        c.restore(&target, &Change::default(), &snap).unwrap();
        assert!(!dropin.exists());
    }

    #[test]
    fn rollback_refuses_to_undo_a_later_change() {
        let (t, target) = host(&[("/etc/login.defs", "PASS_MAX_DAYS 99999\n", 0o644)]);
        let c = HostConnector::default();
        let steps = vec![set(Dialect::SpaceKv, "/etc/login.defs", "PASS_MAX_DAYS", "90")];
        let mut snap = c.backup(&target, &files_only(&steps)).unwrap();
        c.apply(&target, &files_only(&steps), &mut snap).unwrap();
        let path = t.path().join("etc/login.defs");
        std::fs::write(&path, "PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\n").unwrap();
        let err = c.restore(&target, &Change::default(), &snap).unwrap_err();
        assert_eq!(err.code, "ConfigChangedSinceRepair");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\n", "nothing touched");
    }

    #[test]
    fn a_failing_step_leaves_nothing_half_changed() {
        let (t, target) = host(&[("/etc/redis/redis.conf", "bind 0.0.0.0\nport 6379\n", 0o640)]);
        let c = HostConnector::default();
        let steps = vec![
            set(Dialect::Redis, "/etc/redis/redis.conf", "bind", "10.0.0.1"),
            // Plans fine, fails when carried out: the file does not exist.
            Step::SetMode { file: "/etc/redis/missing.conf".into(), mode: "0600".into() },
        ];
        let mut snap = c.backup(&target, &files_only(&steps)).unwrap();
        let err = c.apply(&target, &files_only(&steps), &mut snap).unwrap_err();
        assert_eq!(err.code, "RepairError");
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/redis/redis.conf")).unwrap(),
            "bind 0.0.0.0\nport 6379\n"
        );
    }

    #[test]
    fn a_file_outside_the_snapshot_is_never_written() {
        let (t, target) =
            host(&[("/etc/login.defs", "PASS_MAX_DAYS 99999\n", 0o644), ("/etc/ssh/sshd_config", SSHD, 0o644)]);
        let c = HostConnector::default();
        let mut snap =
            c.backup(&target, &files_only(&[set(Dialect::SpaceKv, "/etc/login.defs", "PASS_MAX_DAYS", "90")])).unwrap();
        // Steps that plan a file the backup did not capture (as if the configuration had moved).
        let other = vec![set(Dialect::Sshd, "/etc/ssh/sshd_config", "PermitRootLogin", "no")];
        let err = c.apply(&target, &files_only(&other), &mut snap).unwrap_err();
        assert_eq!(err.code, "ConfigChangedSinceBackup");
        assert_eq!(std::fs::read_to_string(t.path().join("etc/ssh/sshd_config")).unwrap(), SSHD);
    }

    #[test]
    fn control_characters_never_reach_a_file() {
        let (t, target) = host(&[("/etc/login.defs", "PASS_MAX_DAYS 99999\n", 0o644)]);
        let steps = vec![set(Dialect::SpaceKv, "/etc/login.defs", "PASS_MAX_DAYS", "90\nUMASK 000")];
        assert_eq!(HostConnector::default().backup(&target, &files_only(&steps)).unwrap_err().code, "BackUpError");
        assert_eq!(std::fs::read_to_string(t.path().join("etc/login.defs")).unwrap(), "PASS_MAX_DAYS 99999\n");
    }

    #[test]
    fn one_file_has_one_scope_however_it_is_spelled() {
        let c = HostConnector::default();
        let scope = |file: &str| c.scope(&[Step::SetMode { file: file.into(), mode: "0600".into() }]);
        assert_eq!(scope("/etc/ssh/sshd_config"), "file:/etc/ssh/sshd_config");
        assert_eq!(scope("/etc//ssh/./sshd_config"), "file:/etc/ssh/sshd_config");
        assert_eq!(scope("/etc/ssh/../ssh/sshd_config"), "file:/etc/ssh/sshd_config");
        assert_eq!(scope("/../etc/login.defs"), "file:/etc/login.defs");
        let sshd = set(Dialect::Sshd, "/etc/ssh/sshd_config", "PermitRootLogin", "no");
        assert_eq!(c.scope(std::slice::from_ref(&sshd)), scope("/etc/ssh/sshd_config"), "content and mode of one file");
        assert_eq!(c.scope(&[set(Dialect::Sysctl, "", "a", "1"), set(Dialect::Sysctl, "", "b", "2")]), "sysctl");
        let login = set(Dialect::SpaceKv, "/etc/login.defs", "PASS_MAX_DAYS", "90");
        assert_eq!(c.scope(&[sshd, login]), crate::WHOLE_INSTANCE, "two files: the whole instance");
    }

    #[test]
    fn a_snapshot_fits_only_the_files_its_steps_may_change() {
        let item = |key: &str| SnapshotItem {
            key: key.into(),
            existed: true,
            has_content: true,
            data: Vec::new(),
            meta: Default::default(),
            post_digest: None,
        };
        let snap = |keys: &[&str]| Snapshot { items: keys.iter().map(|k| item(k)).collect() };
        let sshd = [set(Dialect::Sshd, "/etc/ssh/sshd_config", "PermitRootLogin", "no")];
        assert!(snapshot_fits(&sshd, &snap(&["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/x.conf"])));
        assert!(!snapshot_fits(&sshd, &snap(&["/etc/sudoers"])));
        assert!(!snapshot_fits(&sshd, &snap(&["/etc/ssh/../sudoers"])));
        let sysctl = [set(Dialect::Sysctl, "", "net.ipv4.ip_forward", "0")];
        assert!(snapshot_fits(&sysctl, &snap(&["/etc/sysctl.d/99-zz-posture-net.ipv4.ip_forward.conf"])));
        assert!(!snapshot_fits(&sysctl, &snap(&["/etc/cron.d/x"])));
        // Values in effect: only the keys the steps set.
        let live = |key: &str| Snapshot { items: vec![SnapshotItem::live(key, "1")] };
        assert!(snapshot_fits(&sysctl, &live("sysctl.net.ipv4.ip_forward")));
        assert!(!snapshot_fits(&sysctl, &live("sysctl.kernel.modules_disabled")));
        assert!(!snapshot_fits(&sshd, &live("sysctl.net.ipv4.ip_forward")));
        let redis = [set(Dialect::Redis, "/etc/redis/redis.conf", "Bind", "127.0.0.1")];
        assert!(snapshot_fits(&redis, &live("redis.bind")) && !snapshot_fits(&redis, &live("redis.dir")));
        let mode = [Step::SetMode { file: "/etc/shadow".into(), mode: "0640".into() }];
        assert!(snapshot_fits(&mode, &snap(&["/etc/shadow"])) && !snapshot_fits(&mode, &snap(&["/etc/passwd"])));
    }

    #[test]
    fn a_missing_root_is_a_freed_instance() {
        let target =
            Target { instance_id: "i-gone".into(), locator: "/nonexistent/posture/root".into(), ..Default::default() };
        let err = HostConnector::default().fetch(&target).unwrap_err();
        assert!(err.freed);
        assert_eq!(err.code, "InstanceFreed");
    }

    #[test]
    fn shadow_accounts_with_empty_passwords_are_listed() {
        let (_t, target) = host(&[(
            "/etc/shadow",
            "root:$y$j9T$abc:19000:0:99999:7:::\nguest::19000:0:99999:7:::\nnobody:*:19000::::::\n",
            0o640,
        )]);
        let doc = HostConnector::default().fetch(&target).unwrap();
        assert_eq!(doc["shadow.empty_password_accounts"], "guest");
        assert_eq!(doc["file:/etc/shadow.mode"], "0640");
    }
}

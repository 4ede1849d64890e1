//! sshd: its own checker (`sshd -t`), its effective configuration (`sshd -T`) and its reload.
//!
//! Both read a copy of the root's configuration whose `Include`, `HostKey` and
//! `HostCertificate` paths are re-rooted, so that sshd never reads the host's own /etc for an
//! instance whose root is elsewhere; candidates (a repair's new bytes, a rollback's restored
//! ones) are laid over the files they will replace. Lines keep their numbers, so sshd's
//! messages point at the root's own lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use model::{Dialect, SshdService};

use super::command::{self, Ran};
use super::Overlay;
use crate::host::directives::{parse_line, sshd_includes, MAX_INCLUDE_DEPTH};
use crate::host::files::{self, Limits};
use crate::host::paths::resolve_in_root;

const SSHD: [&str; 3] = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
const SYSTEMCTL: [&str; 2] = ["/usr/bin/systemctl", "/bin/systemctl"];
/// Host keys sshd loads when its configuration names none.
const DEFAULT_HOST_KEYS: [&str; 3] =
    ["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"];
const MAIN: &str = "/etc/ssh/sshd_config";
/// The most files one configuration may include, all levels together.
const MAX_FILES: usize = 256;
/// Time limits of the steps: together within the host connector's limit of one call (10 s).
const CHECK_LIMIT: Duration = Duration::from_secs(3);
const SYSTEMCTL_LIMIT: Duration = Duration::from_secs(5);
/// How long a reloaded sshd may take to listen again.
const RELOAD_LIMIT: Duration = Duration::from_secs(5);

/// Why sshd could not be asked.
pub enum Failure {
    /// sshd read the configuration and refused it (its message).
    Refused(String),
    /// sshd could not be run, or the configuration could not be read (what happened).
    Unavailable(String),
}

/// `sshd -t` on the root's configuration with `overlay` laid over it.
pub fn validate(root: &Path, overlay: &Overlay, limits: &Limits) -> Result<(), Failure> {
    Tree::build(root, overlay, limits).map_err(Failure::Unavailable)?.run("-t").map(drop)
}

/// `sshd -T`: every keyword in effect (lower case) and its value (repeated keywords joined with
/// a space).
pub fn effective(root: &Path, limits: &Limits) -> Result<BTreeMap<String, String>, Failure> {
    let ran = Tree::build(root, &Overlay::new(), limits).map_err(Failure::Unavailable)?.run("-T")?;
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for line in ran.stdout.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            out.entry(k.to_string())
                .and_modify(|e| {
                    e.push(' ');
                    e.push_str(v)
                })
                .or_insert_with(|| v.to_string());
        }
    }
    Ok(out)
}

/// Makes the running sshd re-read its configuration: `systemctl reload UNIT`, or SIGHUP to the
/// listening sshd whose PID is in its PID file, then waits until it listens again on new
/// sockets (it re-executes itself on SIGHUP, keeping its PID). Returns what was done.
pub fn reload(root: &Path, service: Option<&SshdService>) -> Result<String, String> {
    let default_unit = root == Path::new("/") && Path::new("/run/systemd/system").is_dir();
    match service {
        Some(SshdService { unit: Some(unit), .. }) => reload_unit(unit),
        Some(SshdService { pid_file: Some(pid_file), .. }) => reload_pid(root, pid_file),
        // Debian and Ubuntu call the unit `ssh`, Red Hat and SUSE `sshd`.
        _ if default_unit => reload_unit("ssh").or_else(|first| reload_unit("sshd").map_err(|_| first)),
        _ => reload_pid(root, "/run/sshd.pid"),
    }
}

fn reload_unit(unit: &str) -> Result<String, String> {
    let program = command::program(&SYSTEMCTL).ok_or("systemctl is not installed on this machine")?;
    let ran = command::run(&program, &["reload", "--", unit], SYSTEMCTL_LIMIT)?;
    if ran.ok {
        Ok(format!("systemctl reload {unit}"))
    } else {
        Err(format!("systemctl reload {unit} failed: {}", ran.stderr.trim()))
    }
}

fn reload_pid(root: &Path, pid_file: &str) -> Result<String, String> {
    use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
    let real = resolve_in_root(root, pid_file).map_err(|e| format!("{pid_file}: {e}"))?;
    let text = files::read(root, &real, &Limits { max_file_bytes: 64 })
        .map_err(|e| format!("{pid_file}: {e}"))?
        .ok_or_else(|| format!("sshd is not running: its PID file {pid_file} does not exist"))?;
    let pid = String::from_utf8_lossy(&text)
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{pid_file} does not hold a PID"))?;
    let n = pid.as_raw_nonzero().get();
    // The process is held first, so that the checks below and the signal are about the same
    // one even if it exits and its PID is reused meanwhile.
    let held = pidfd_open(pid, PidfdFlags::empty()).map_err(|e| format!("PID {n} from {pid_file}: {e}"))?;
    // Never signal what is not the listening sshd: a stale PID file may name another program,
    // or one of sshd's per-connection processes (a user's session).
    let exe = std::fs::read_link(format!("/proc/{n}/exe")).unwrap_or_default();
    if exe.file_name().is_none_or(|name| name != "sshd") {
        return Err(format!("PID {n} from {pid_file} is not sshd ({})", exe.display()));
    }
    let before = listening(n)?;
    if before.is_empty() {
        return Err(format!("PID {n} from {pid_file} is an sshd that listens on nothing: not the daemon"));
    }
    pidfd_send_signal(&held, Signal::HUP).map_err(|e| format!("cannot signal sshd (PID {n}): {e}"))?;
    let deadline = Instant::now() + RELOAD_LIMIT;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if !Path::new(&format!("/proc/{n}")).exists() {
            return Err(format!("sshd (PID {n}) exited after SIGHUP"));
        }
        let now = listening(n).unwrap_or_default();
        if !now.is_empty() && now.is_disjoint(&before) {
            return Ok(format!("SIGHUP to sshd (PID {n}); it re-read its configuration and listens again"));
        }
        if Instant::now() >= deadline {
            return Err(format!("sshd (PID {n}) did not listen again within {} s of SIGHUP", RELOAD_LIMIT.as_secs()));
        }
    }
}

/// The listening TCP sockets a process holds (their inodes): those of its descriptors that its
/// network namespace lists in state LISTEN. A re-executed sshd opens new ones.
fn listening(pid: i32) -> Result<BTreeSet<String>, String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("cannot read the sockets of sshd (PID {pid}): {e}"))?;
    let held: BTreeSet<String> = dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_string_lossy().strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect();
    let mut listening = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9).filter(|i| held.contains(**i)) {
                    listening.insert(inode.to_string());
                }
            }
        }
    }
    Ok(listening)
}

/// A re-rooted copy of the configuration in a private temporary directory (removed on drop).
struct Tree {
    dir: PathBuf,
    /// Copy path → the file it stands for, to name files in sshd's messages as the root does.
    names: Vec<(String, String)>,
    /// Options given on sshd's command line (the root's host keys, when none is named).
    options: Vec<String>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Tree {
    fn build(root: &Path, overlay: &Overlay, limits: &Limits) -> Result<Tree, String> {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).map_err(|e| e.to_string())?;
        let dir = std::env::temp_dir().join(format!("posture-sshd-{}", hex::encode(b)));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut tree = Tree { dir, names: Vec::new(), options: Vec::new() };
        let mut host_keys = false;
        let text = tree.copy(root, MAIN, overlay, limits, 0, &mut host_keys)?;
        if !host_keys && root != Path::new("/") {
            // sshd would load the host's own keys: name the root's instead (those missing are
            // skipped by sshd as its defaults are; none at all is refused, as on the instance).
            tree.options.extend(DEFAULT_HOST_KEYS.iter().map(|k| format!("HostKey={}", reroot(root, k))));
        }
        tree.write("sshd_config", MAIN, &text)?;
        Ok(tree)
    }

    /// `sshd MODE -f COPY`: its output, or why it failed (its message naming the root's files).
    fn run(&self, mode: &str) -> Result<Ran, Failure> {
        let program = command::program(&SSHD).ok_or_else(|| {
            Failure::Unavailable(
                "sshd is not installed on this machine (looked in /usr/sbin, /usr/local/sbin, /sbin)".into(),
            )
        })?;
        let main = self.dir.join("sshd_config").display().to_string();
        let mut args = vec![mode, "-f", &main];
        for o in &self.options {
            args.extend(["-o", o]);
        }
        let ran = command::run(&program, &args, CHECK_LIMIT).map_err(Failure::Unavailable)?;
        if ran.ok {
            return Ok(ran);
        }
        let mut text = format!("{}{}", ran.stderr.trim(), ran.stdout.trim());
        for (copy, logical) in &self.names {
            text = text.replace(copy, logical);
        }
        let text: String = text.chars().take(2000).collect();
        // What sshd needs of the machine, not of the configuration.
        if text.contains("Missing privilege separation directory") {
            Err(Failure::Unavailable(text))
        } else {
            Err(Failure::Refused(text))
        }
    }

    fn write(&mut self, name: &str, logical: &str, text: &[u8]) -> Result<String, String> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let path = path.display().to_string();
        self.names.push((path.clone(), logical.to_string()));
        Ok(path)
    }

    /// The text of `logical` (from the overlay, else the root) with its paths re-rooted, line
    /// for line; the files it includes are copied too.
    fn copy(
        &mut self,
        root: &Path,
        logical: &str,
        overlay: &Overlay,
        limits: &Limits,
        depth: usize,
        host_keys: &mut bool,
    ) -> Result<Vec<u8>, String> {
        let text = match overlay.get(&crate::host::normal_path(logical)) {
            Some(candidate) => candidate.clone(),
            None => {
                let real = resolve_in_root(root, logical).map_err(|e| format!("{logical}: {e}"))?;
                files::read(root, &real, limits).map_err(|e| format!("{logical}: {e}"))?
            }
        };
        let Some(text) = text else {
            return if depth == 0 { Err(format!("{logical} does not exist")) } else { Ok(Vec::new()) };
        };
        let mut out = Vec::with_capacity(text.len());
        for line in text.split_inclusive(|b| *b == b'\n') {
            let parsed = parse_line(Dialect::Sshd, &String::from_utf8_lossy(line));
            match parsed.as_ref().map(|(k, v)| (k.as_str(), v.as_str())) {
                Some(("include", patterns)) => {
                    let mut copies = Vec::new();
                    if depth < MAX_INCLUDE_DEPTH {
                        for included in sshd_includes(root, patterns) {
                            if self.names.len() >= MAX_FILES {
                                return Err(format!("the configuration includes more than {MAX_FILES} files"));
                            }
                            let text = self.copy(root, &included, overlay, limits, depth + 1, host_keys)?;
                            let name = format!("include-{}.conf", self.names.len());
                            copies.push(self.write(&name, &included, &text)?);
                        }
                    }
                    // One line for one: an Include that matches nothing includes nothing.
                    let line = if copies.is_empty() {
                        "# (an Include that matches nothing)".to_string()
                    } else {
                        format!("Include {}", copies.join(" "))
                    };
                    out.extend_from_slice(format!("{line}\n").as_bytes());
                }
                Some((key @ ("hostkey" | "hostcertificate"), path)) => {
                    *host_keys |= key == "hostkey";
                    out.extend_from_slice(format!("{key} \"{}\"\n", reroot(root, path)).as_bytes());
                }
                _ => {
                    out.extend_from_slice(line);
                    if !line.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A path named in the configuration, inside the root. A path already under the root (a daemon
/// started on the root's own configuration names them so) is kept as long as it cannot climb
/// out of it with `..`.
fn reroot(root: &Path, path: &str) -> String {
    let p = Path::new(path);
    let climbs = p.components().any(|c| c == Component::ParentDir);
    if root == Path::new("/") || (p.starts_with(root) && !climbs) {
        return path.to_string();
    }
    let inside = p.strip_prefix(root).map_or(path.to_string(), |rest| format!("/{}", rest.display()));
    resolve_in_root(root, &inside)
        .map_or_else(|_| root.join(inside.trim_start_matches('/')).display().to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Whether sshd can be run here (root, installed); says why not, or fails when it must.
    fn runnable() -> bool {
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let ok = root && command::program(&SSHD).is_some();
        assert!(ok || std::env::var_os("POSTURE_REQUIRE_LIVE").is_none(), "sshd must be runnable here");
        if !ok {
            eprintln!("skipped: needs root and sshd");
        }
        ok
    }

    #[test]
    fn sshd_reads_the_roots_includes_and_host_keys_never_the_hosts() {
        if !runnable() {
            return;
        }
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ssh/sshd_config.d")).unwrap();
        let key = root.join("etc/ssh/ssh_host_ed25519_key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::write(root.join("etc/ssh/sshd_config"), "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n")
            .unwrap();
        std::fs::write(root.join("etc/ssh/sshd_config.d/a.conf"), "X11Forwarding no\n").unwrap();
        let limits = Limits::default();
        let copies = || {
            let dir = std::fs::read_dir(std::env::temp_dir()).unwrap();
            dir.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("posture-sshd-")).count()
        };
        let before = copies();
        assert!(validate(root, &Overlay::new(), &limits).is_ok());
        let values = effective(root, &limits).ok().unwrap();
        assert_eq!((values["permitrootlogin"].as_str(), values["x11forwarding"].as_str()), ("no", "no"));

        // A bad directive in the root's own include is found, and named as the root names it.
        std::fs::write(root.join("etc/ssh/sshd_config.d/b.conf"), "Frobnicate yes\n").unwrap();
        let Err(Failure::Refused(msg)) = validate(root, &Overlay::new(), &limits) else { panic!("not refused") };
        assert!(msg.contains("/etc/ssh/sshd_config.d/b.conf") && msg.contains("Frobnicate"), "{msg}");
        assert!(!msg.contains("posture-sshd-"), "{msg}");
        // A candidate laid over it is what is checked.
        let fixed = Overlay::from([("/etc/ssh/sshd_config.d/b.conf".to_string(), Some(b"MaxAuthTries 3\n".to_vec()))]);
        assert!(validate(root, &fixed, &limits).is_ok());
        std::fs::remove_file(root.join("etc/ssh/sshd_config.d/b.conf")).unwrap();

        // Without the root's key, the host's own keys are not taken instead.
        std::fs::remove_file(&key).unwrap();
        let Err(Failure::Refused(msg)) = validate(root, &Overlay::new(), &limits) else { panic!("not refused") };
        assert!(msg.contains("no hostkeys"), "{msg}");
        assert_eq!(copies(), before, "every copy is removed");
    }

    #[test]
    fn paths_outside_the_root_are_rerooted() {
        let root = Path::new("/srv/r");
        assert_eq!(reroot(root, "/etc/ssh/k"), "/srv/r/etc/ssh/k");
        assert_eq!(reroot(root, "/srv/r/etc/ssh/k"), "/srv/r/etc/ssh/k", "already inside");
        assert_eq!(reroot(root, "/srv/r/../../etc/ssh/k"), "/srv/r/etc/ssh/k", "never out of it");
        assert_eq!(reroot(root, "/etc/../../x"), "/srv/r/x");
        assert_eq!(reroot(Path::new("/"), "/etc/ssh/k"), "/etc/ssh/k");
    }
}

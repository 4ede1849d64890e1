//! sshd: its own checker (`sshd -t`), its effective configuration (`sshd -T`) and its reload.
//!
//! Both read a copy of the root's configuration whose `Include`, `HostKey` and
//! `HostCertificate` paths are re-rooted, so that sshd never reads the host's own /etc for an
//! instance whose root is elsewhere; candidates (a repair's new bytes, a rollback's restored
//! ones) are laid over the files they will replace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use model::{Dialect, SshdService};

use super::command::{self, Ran};
use super::Overlay;
use crate::host::directives::parse_line;
use crate::host::files::{self, Limits};
use crate::host::paths::{glob_in_root, resolve_in_root};

const SSHD: [&str; 3] = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
const SYSTEMCTL: [&str; 2] = ["/usr/bin/systemctl", "/bin/systemctl"];
/// Host keys sshd loads when its configuration names none.
const DEFAULT_HOST_KEYS: [&str; 3] =
    ["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"];
const MAIN: &str = "/etc/ssh/sshd_config";
const MAX_DEPTH: usize = 8;
const CHECK_LIMIT: Duration = Duration::from_secs(5);
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
    let tree = Tree::build(root, overlay, limits).map_err(Failure::Unavailable)?;
    let ran = sshd(&["-t", "-f", &tree.main()])?;
    if ran.ok {
        Ok(())
    } else {
        Err(Failure::Refused(tree.explain(&ran)))
    }
}

/// `sshd -T`: every keyword in effect (lower case) and its value (repeated keywords joined with
/// a space).
pub fn effective(root: &Path, limits: &Limits) -> Result<BTreeMap<String, String>, Failure> {
    let tree = Tree::build(root, &Overlay::new(), limits).map_err(Failure::Unavailable)?;
    let ran = sshd(&["-T", "-f", &tree.main()])?;
    if !ran.ok {
        return Err(Failure::Refused(tree.explain(&ran)));
    }
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

fn sshd(args: &[&str]) -> Result<Ran, Failure> {
    let program = command::program(&SSHD).ok_or_else(|| {
        Failure::Unavailable(
            "sshd is not installed on this machine (looked in /usr/sbin, /usr/local/sbin, /sbin)".into(),
        )
    })?;
    command::run(&program, args, CHECK_LIMIT).map_err(Failure::Unavailable)
}

/// Makes the running sshd re-read its configuration: `systemctl reload UNIT`, or SIGHUP to the
/// PID in its PID file, then waits until it listens again on new sockets (it re-executes itself
/// on SIGHUP, keeping its PID). Returns what was done.
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
    let ran = command::run(&program, &["reload", "--", unit], Duration::from_secs(8))?;
    if ran.ok {
        Ok(format!("systemctl reload {unit}"))
    } else {
        Err(format!("systemctl reload {unit} failed: {}", ran.stderr.trim()))
    }
}

fn reload_pid(root: &Path, pid_file: &str) -> Result<String, String> {
    let real = resolve_in_root(root, pid_file).map_err(|e| format!("{pid_file}: {e}"))?;
    let text = files::read(root, &real, &Limits { max_file_bytes: 64 })
        .map_err(|e| format!("{pid_file}: {e}"))?
        .ok_or_else(|| format!("sshd is not running: its PID file {pid_file} does not exist"))?;
    let pid: i32 = String::from_utf8_lossy(&text)
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| format!("{pid_file} does not hold a PID"))?;
    // Never signal a process that is not sshd (a stale PID file, a reused PID).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "sshd" {
        return Err(format!("PID {pid} from {pid_file} is not a running sshd"));
    }
    let before = sockets(pid);
    let pid_t = rustix::process::Pid::from_raw(pid).ok_or("no such PID")?;
    rustix::process::kill_process(pid_t, rustix::process::Signal::HUP)
        .map_err(|e| format!("cannot signal sshd (PID {pid}): {e}"))?;
    let deadline = Instant::now() + RELOAD_LIMIT;
    loop {
        let now = sockets(pid);
        if !now.is_empty() && now.is_disjoint(&before) {
            return Ok(format!("SIGHUP to sshd (PID {pid}); it re-read its configuration and listens again"));
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("sshd (PID {pid}) exited after SIGHUP"));
        }
        if Instant::now() >= deadline {
            return Err(format!("sshd (PID {pid}) did not listen again within {} s of SIGHUP", RELOAD_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sockets a process holds (their inode numbers): a re-executed sshd opens new ones.
fn sockets(pid: i32) -> std::collections::BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Default::default();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("socket:"))
        .collect()
}

/// A re-rooted copy of the configuration in a private temporary directory (removed on drop).
struct Tree {
    dir: PathBuf,
    /// Copy path → the file it stands for, to name files in sshd's messages as the root does.
    names: Vec<(String, String)>,
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
        let mut tree = Tree { dir, names: Vec::new() };
        let mut host_keys = false;
        let text = tree.copy(root, MAIN, overlay, limits, 0, &mut host_keys)?;
        let mut main = Vec::new();
        if !host_keys && root != Path::new("/") {
            // sshd would load the host's own keys: name the root's instead (those missing are
            // skipped by sshd as its defaults are; none at all is refused, as on the instance).
            for key in DEFAULT_HOST_KEYS {
                main.extend_from_slice(format!("HostKey {}\n", reroot(root, key)).as_bytes());
            }
        }
        main.extend_from_slice(&text);
        tree.write("sshd_config", MAIN, &main)?;
        Ok(tree)
    }

    fn main(&self) -> String {
        self.dir.join("sshd_config").display().to_string()
    }

    fn write(&mut self, name: &str, logical: &str, text: &[u8]) -> Result<String, String> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let path = path.display().to_string();
        self.names.push((path.clone(), logical.to_string()));
        Ok(path)
    }

    /// The text of `logical` (from the overlay, else the root) with its paths re-rooted; the
    /// files it includes are copied too.
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
                    if depth >= MAX_DEPTH {
                        return Err(format!("{logical}: includes nested more than {MAX_DEPTH} deep"));
                    }
                    let mut copies = Vec::new();
                    for pattern in patterns.split_whitespace() {
                        let pattern =
                            if pattern.starts_with('/') { pattern.to_string() } else { format!("/etc/ssh/{pattern}") };
                        for real in glob_in_root(root, &pattern) {
                            let included = format!("/{}", real.strip_prefix(root).unwrap_or(&real).display());
                            let text = self.copy(root, &included, overlay, limits, depth + 1, host_keys)?;
                            let name = format!("include-{}.conf", self.names.len());
                            copies.push(self.write(&name, &included, &text)?);
                        }
                    }
                    // An Include that matches nothing includes nothing (sshd accepts it).
                    if !copies.is_empty() {
                        out.extend_from_slice(format!("Include {}\n", copies.join(" ")).as_bytes());
                    }
                }
                Some((key @ ("hostkey" | "hostcertificate"), path)) => {
                    *host_keys |= key == "hostkey";
                    out.extend_from_slice(format!("{key} {}\n", reroot(root, path)).as_bytes());
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

    /// sshd's message, with the copies named as the files they stand for.
    fn explain(&self, ran: &Ran) -> String {
        let mut text = format!("{}{}", ran.stderr.trim(), ran.stdout.trim());
        for (copy, logical) in &self.names {
            text = text.replace(copy, logical);
        }
        text.chars().take(2000).collect()
    }
}

/// A path named in the configuration, inside the root: paths already under the root (a daemon
/// started on the root's own configuration names them so) are kept.
fn reroot(root: &Path, path: &str) -> String {
    if root == Path::new("/") || Path::new(path).starts_with(root) {
        return path.to_string();
    }
    resolve_in_root(root, path)
        .map_or_else(|_| root.join(path.trim_start_matches('/')).display().to_string(), |p| p.display().to_string())
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
        assert_eq!(reroot(Path::new("/"), "/etc/ssh/k"), "/etc/ssh/k");
    }
}

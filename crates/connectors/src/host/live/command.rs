//! Running one of the few programs posture uses (sshd, systemctl) with a time limit, a clean
//! environment and no input: its exit status and what it printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a program ended.
pub struct Ran {
    /// It exited with status 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (what checkers say).
    pub stderr: String,
}

/// The first of `candidates` that exists: programs are the host's own, at fixed paths, never
/// found through PATH or inside an instance's root.
pub fn program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Runs `program` with `args`, killing it after `limit`.
pub fn run(program: &Path, args: &[&str], limit: Duration) -> Result<Ran, String> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    // Read both pipes while waiting, so that a chatty program never blocks on a full pipe.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(1 << 20).read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(status) => Ok(Ran { ok: status.success(), stdout, stderr }),
        None => Err(format!("{} did not finish within {} s", program.display(), limit.as_secs())),
    }
}

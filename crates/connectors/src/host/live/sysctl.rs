//! Kernel parameters in effect: `/proc/sys` of the kernel posture runs on (a live root is the
//! running system, so its kernel is this one).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The directories whose parameters a check run reads: what CIS benchmarks judge (kernel
/// hardening, filesystem, IPv4 and IPv6 for `all` and `default` interfaces, core networking).
const READ: [&str; 9] = [
    "kernel",
    "kernel/yama",
    "fs",
    "net/core",
    "net/ipv4",
    "net/ipv4/conf/all",
    "net/ipv4/conf/default",
    "net/ipv6/conf/all",
    "net/ipv6/conf/default",
];

const PROC_SYS: &str = "/proc/sys";

/// The file of `key` (`net.ipv4.ip_forward` → /proc/sys/net/ipv4/ip_forward); None for a key
/// that is not a plain dotted name (nothing outside /proc/sys is ever named).
fn path_of(key: &str) -> Option<PathBuf> {
    let ok = !key.is_empty()
        && key.split('.').all(|p| !p.is_empty())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    ok.then(|| PathBuf::from(PROC_SYS).join(key.replace('.', "/")))
}

/// Whitespace as sysctl(8) prints it: tabs between fields become single spaces.
fn normal(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value in effect of `key`.
pub fn read(key: &str) -> Result<String, String> {
    let path = path_of(key).ok_or_else(|| format!("{key} is not a kernel parameter name"))?;
    std::fs::read_to_string(&path).map(|v| normal(&v)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Sets `key` in the running kernel (what `sysctl -w` does).
pub fn write(key: &str, value: &str) -> Result<(), String> {
    let path = path_of(key).ok_or_else(|| format!("{key} is not a kernel parameter name"))?;
    std::fs::write(&path, format!("{value}\n")).map_err(|e| format!("sysctl -w {key}={value}: {e}"))
}

/// Every readable parameter of the directories a check run reads.
pub fn read_all() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in READ {
        let Ok(entries) = std::fs::read_dir(PathBuf::from(PROC_SYS).join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(v) = std::fs::read_to_string(e.path()) {
                out.insert(format!("{}.{name}", dir.replace('/', ".")), normal(&v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_parameters() {
        assert_eq!(path_of("net.ipv4.ip_forward"), Some(PathBuf::from("/proc/sys/net/ipv4/ip_forward")));
        for bad in ["", "net..x", "../etc/passwd", "net.ipv4/../../x", "kernel.x y", ".x"] {
            assert_eq!(path_of(bad), None, "{bad}");
        }
        assert_eq!(normal("4096\t131072  6291456\n"), "4096 131072 6291456");
    }
}

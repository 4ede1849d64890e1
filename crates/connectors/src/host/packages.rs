//! The packages installed on a Debian-family root, from dpkg's own database
//! (`/var/lib/dpkg/status`): `pkg:<name>` = its version, for each package whose status is
//! `installed` (one removed with its configuration kept is not).

use model::Document;

/// The status file, as dpkg keeps it.
pub const STATUS: &str = "/var/lib/dpkg/status";

/// The largest status file read: a full desktop install is a few MiB.
pub const MAX_STATUS_BYTES: u64 = 32 * 1024 * 1024;

/// Adds `dpkg.present` and `pkg:<name>` for every installed package.
pub fn installed(status: &str, doc: &mut Document) {
    doc.insert("dpkg.present".into(), "true".into());
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
        };
        let installed = field("Status").is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"));
        if let (Some(name), true) = (field("Package"), installed) {
            doc.insert(format!("pkg:{name}"), field("Version").unwrap_or_default().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_installed_packages_count() {
        let mut d = Document::new();
        installed(
            "Package: telnet\nStatus: install ok installed\nVersion: 0.17-44\n\n\
             Package: cups\nStatus: deinstall ok config-files\nVersion: 2.4\n\n\
             Package: aide\nStatus: install ok half-configured\n\n\
             Package: sudo\nStatus: install ok installed\nPriority: optional\nVersion: 1.9.13\nDescription: x\n Package: not-a-field\n",
            &mut d,
        );
        assert_eq!(d["pkg:telnet"], "0.17-44");
        assert_eq!(d["pkg:sudo"], "1.9.13");
        assert!(!d.contains_key("pkg:cups") && !d.contains_key("pkg:aide") && !d.contains_key("pkg:not-a-field"));
    }
}

//! Facts of root's environment: core dump limits (CIS 1.5.4, with `fs.suid_dumpable`) and the
//! PATH root logs in with (CIS 6.2.9).

use std::path::Path;

use model::{Document, SOURCE};

use super::paths::dir_meta_in_root;

/// `limits.core_hard`: the hard core size limit of every user (`*`), as pam_limits reads
/// limits.conf and then limits.d/*.conf (the last matching line wins; `-` sets hard and soft),
/// with its `src:` evidence.
pub fn core_limit(files: &[(String, String)], doc: &mut Document) {
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let w: Vec<&str> = line.split('#').next().unwrap_or("").split_whitespace().collect();
            if let [domain, kind, item, value] = w.as_slice() {
                if *domain == "*" && (*kind == "hard" || *kind == "-") && *item == "core" {
                    doc.insert("limits.core_hard".into(), value.to_string());
                    doc.insert(format!("{SOURCE}limits.core_hard"), format!("{path}:{}", n + 1));
                }
            }
        }
    }
}

/// `root_path.value` (PATH in /etc/environment, which pam_env gives root's logins) and
/// `root_path.problems`: empty or relative entries, `.`, and directories missing, not owned by
/// root or writable by group or others (each `dir(why)`).
pub fn root_path(root: &Path, environment: &str, doc: &mut Document) {
    let Some(path) = environment.lines().find_map(|l| l.trim().strip_prefix("PATH=")) else { return };
    let path = path.trim().trim_matches('"');
    doc.insert("root_path.value".into(), path.to_string());
    let mut problems = Vec::new();
    for dir in path.split(':') {
        let why = if dir.is_empty() {
            Some("empty entry".to_string())
        } else if !dir.starts_with('/') {
            Some("relative".to_string())
        } else {
            match dir_meta_in_root(root, dir) {
                Ok(None) => Some("missing".to_string()),
                Err(_) => Some("not a directory".to_string()),
                Ok(Some((_, uid, _))) if uid != 0 => Some(format!("owner uid {uid}")),
                Ok(Some((mode, ..))) if mode & 0o022 != 0 => Some(format!("mode {mode:04o}")),
                Ok(Some(_)) => None,
            }
        };
        if let Some(why) = why {
            problems.push(format!("{}({why})", if dir.is_empty() { "''" } else { dir }));
        }
    }
    doc.insert("root_path.problems".into(), problems.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_last_hard_core_limit_for_everyone_wins() {
        let files = vec![
            (
                "/etc/security/limits.conf".to_string(),
                "#*  hard core 0\n*\thard\tcore\tunlimited\n@staff soft core 0\n".to_string(),
            ),
            ("/etc/security/limits.d/10-cis.conf".to_string(), "* - core 0 # CIS\n".to_string()),
        ];
        let mut d = Document::new();
        core_limit(&files, &mut d);
        assert_eq!(d["limits.core_hard"], "0");
        assert_eq!(d["src:limits.core_hard"], "/etc/security/limits.d/10-cis.conf:1");
    }

    #[test]
    fn path_entries_must_be_roots_directories() {
        let t = tempfile::tempdir().unwrap();
        for (d, mode) in [("usr/bin", 0o755), ("opt/tools", 0o777)] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
            std::fs::set_permissions(t.path().join(d), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let mut d = Document::new();
        root_path(t.path(), "LANG=C\nPATH=\"/usr/bin:/opt/tools::.:/nowhere\"\n", &mut d);
        assert_eq!(d["root_path.problems"], "/opt/tools(mode 0777), ''(empty entry), .(relative), /nowhere(missing)");
    }
}

//! Paths inside an instance root. A configuration path such as `/etc/ssh/sshd_config` is
//! resolved component by component; symlinks are followed **inside** the root (an absolute
//! link target is re-rooted), so nothing is ever read or written outside it.

use std::collections::VecDeque;
use std::io;
use std::path::{Component, Path, PathBuf};

const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute or relative, always taken inside `root`) to a real path under `root`.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let names = parts(Path::new(path));
    // Most paths hold no link and no `..`: then one `openat2` that refuses links says so, and
    // the path is itself (missing from some point on: the same, as nothing there can be a
    // link). Anything else is resolved step by step below.
    if !names.iter().any(|p| p == "..") {
        let rel: PathBuf = names.iter().collect();
        let root_fd = super::files::root_dir(root)?;
        if super::files::open_beneath(&root_fd, &rel, rustix::fs::OFlags::PATH).is_ok() {
            return Ok(root.join(rel));
        }
    }
    let mut pending: VecDeque<String> = names.into();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!("too many symbolic links resolving {path}")));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for (i, p) in parts(&target).into_iter().enumerate() {
                    pending.insert(i, p);
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

fn parts(p: &Path) -> Vec<String> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Expands a glob whose last component may hold `*` and `?` (as sshd's `Include` uses), inside
/// the root, sorted by name like glob(3).
pub fn glob_in_root(root: &Path, pattern: &str) -> Vec<PathBuf> {
    glob_named_in_root(root, pattern).into_iter().map(|(_, real)| real).collect()
}

/// [`glob_in_root`], with each match's own name in its directory (a symbolic link's name, not
/// its target's).
pub fn glob_named_in_root(root: &Path, pattern: &str) -> Vec<(String, PathBuf)> {
    let (dir, name) = match pattern.rfind('/') {
        Some(i) => (&pattern[..i], &pattern[i + 1..]),
        None => ("", pattern),
    };
    if !name.contains(['*', '?']) {
        return resolve_in_root(root, pattern)
            .into_iter()
            .filter(|p| p.exists())
            .map(|p| (name.to_string(), p))
            .collect();
    }
    let Ok(dir) = resolve_in_root(root, if dir.is_empty() { "/" } else { dir }) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<(String, Option<std::fs::FileType>)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().ok()))
        .filter(|(n, _)| !n.starts_with('.') && wildcard(name.as_bytes(), n.as_bytes()))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let rel = pattern[..pattern.len() - name.len()].to_string();
    names
        .into_iter()
        .filter_map(|(n, kind)| match kind {
            // The entry's own type (from the directory, no look of its own): a file that is not
            // a link is itself; a directory or a special file is not a match.
            Some(k) if k.is_file() => {
                let real = dir.join(&n);
                Some((n, real))
            }
            Some(k) if !k.is_symlink() => None,
            _ => resolve_in_root(root, &format!("{rel}{n}")).ok().filter(|p| p.is_file()).map(|p| (n, p)),
        })
        .collect()
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_never_leave_the_root() {
        symlinks_never_leave(false);
    }

    /// The same answers from the one-call path (`openat2`) and the held root's directories.
    #[test]
    fn symlinks_never_leave_a_held_root() {
        symlinks_never_leave(true);
    }

    fn symlinks_never_leave(held: bool) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc/mysql")).unwrap();
        std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
        // An absolute link (as Debian has) is re-rooted.
        symlink("/etc/alternatives/my.cnf", root.join("etc/mysql/my.cnf")).unwrap();
        assert_eq!(resolve_in_root(&root, "/etc/mysql/my.cnf").unwrap(), root.join("etc/alternatives/my.cnf"));
        // A link pointing up and out is clamped at the root.
        symlink("../../../../../../etc/passwd", root.join("etc/evil")).unwrap();
        assert_eq!(resolve_in_root(&root, "/etc/evil").unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(&root, "/../../etc/x").unwrap(), root.join("etc/x"));
        // A loop is an error, not a hang.
        symlink("/etc/loop", root.join("etc/loop")).unwrap();
        assert!(resolve_in_root(&root, "/etc/loop").is_err());
        let _held = held.then(|| super::super::files::hold_root(&root).unwrap());
        // A link in a directory of the path, plain paths, missing ones, and a file as a directory.
        symlink("/etc/alternatives", root.join("etc/alt")).unwrap();
        std::fs::write(root.join("etc/alternatives/my.cnf"), "x").unwrap();
        assert_eq!(resolve_in_root(&root, "/etc/alt/my.cnf").unwrap(), root.join("etc/alternatives/my.cnf"));
        assert_eq!(resolve_in_root(&root, "etc/mysql").unwrap(), root.join("etc/mysql"));
        assert_eq!(resolve_in_root(&root, "/etc/none/x").unwrap(), root.join("etc/none/x"));
        assert_eq!(
            resolve_in_root(&root, "/etc/alternatives/my.cnf/x").unwrap(),
            root.join("etc/alternatives/my.cnf/x")
        );
        assert_eq!(resolve_in_root(&root, "/").unwrap(), root.join(""));
        // A glob's matches: files, links to files (by their own name), never directories.
        std::fs::create_dir_all(root.join("etc/d/sub.conf")).unwrap();
        std::fs::write(root.join("etc/d/a.conf"), "").unwrap();
        symlink("/etc/alternatives/my.cnf", root.join("etc/d/b.conf")).unwrap();
        symlink("/etc/mysql", root.join("etc/d/c.conf")).unwrap();
        let got = glob_named_in_root(&root, "/etc/d/*.conf");
        let want = vec![
            ("a.conf".to_string(), root.join("etc/d/a.conf")),
            ("b.conf".to_string(), root.join("etc/alternatives/my.cnf")),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn include_globs_expand_sorted() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("etc/ssh/sshd_config.d");
        std::fs::create_dir_all(&d).unwrap();
        for n in ["b.conf", "a.conf", "c.txt"] {
            std::fs::write(d.join(n), "").unwrap();
        }
        let got = glob_in_root(t.path(), "/etc/ssh/sshd_config.d/*.conf");
        assert_eq!(got, vec![d.join("a.conf"), d.join("b.conf")]);
    }
}

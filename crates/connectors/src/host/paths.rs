//! Paths inside an instance root. A configuration path such as `/etc/ssh/sshd_config` is
//! resolved component by component; symlinks are followed **inside** the root (an absolute
//! link target is re-rooted), so nothing is ever read or written outside it.

use std::collections::VecDeque;
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::FileType;

use super::files::{self, Limits};

const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute or relative, always taken inside `root`) to a real path under `root`.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    // Most paths hold no link and no `..`: then one `openat2` that refuses links says so, and
    // the path is itself (missing from some point on: the same, as nothing there can be a
    // link). Anything else is resolved step by step below.
    if let Some(rel) = plain(path) {
        let root_fd = super::files::root_dir(root)?;
        if super::files::open_beneath(&root_fd, &rel, rustix::fs::OFlags::PATH).is_ok() {
            return Ok(root.join(rel));
        }
    }
    let names = parts(Path::new(path));
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

/// `path` relative to the root, as plain names, when it has no `..` (which needs resolving).
fn plain(path: &str) -> Option<PathBuf> {
    // A check asks for hundreds of paths a host: one allocation each, not one per name.
    let mut rel = PathBuf::with_capacity(path.len());
    for c in Path::new(path).components() {
        match c {
            Component::Normal(name) => rel.push(name),
            Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(rel)
}

/// `unlinked` of the plain path when it answers (no link on the way: most paths), else
/// `resolved` of the path [`resolve_in_root`] gives — a walk of its own to look for links
/// first saved where none is.
fn in_root<T>(
    root: &Path,
    path: &str,
    unlinked: impl FnOnce(&Path) -> io::Result<Option<T>>,
    resolved: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<(PathBuf, T)> {
    if let Some(rel) = plain(path) {
        if let Some(found) = unlinked(&rel)? {
            return Ok((root.join(rel), found));
        }
    }
    let real = resolve_in_root(root, path)?;
    let found = resolved(&real)?;
    Ok((real, found))
}

/// Reads the file `path` names inside the root, following links within it as
/// [`resolve_in_root`] does: its real path and its content (None: absent).
pub fn read_in_root(root: &Path, path: &str, limits: &Limits) -> io::Result<(PathBuf, Option<Vec<u8>>)> {
    in_root(root, path, |rel| files::read_unlinked(root, rel, limits), |real| files::read(root, real, limits))
}

/// [`files::owner`] of the file `path` names inside the root (links followed within it).
pub fn owner_in_root(root: &Path, path: &str) -> io::Result<Option<(u32, u32, u32)>> {
    Ok(in_root(root, path, |rel| files::owner_unlinked(root, rel), |real| files::owner(root, real))?.1)
}

/// [`files::dir_meta`] of the directory `path` names inside the root (links followed within it).
pub fn dir_meta_in_root(root: &Path, path: &str) -> io::Result<Option<(u32, u32, u32)>> {
    Ok(in_root(root, path, |rel| files::dir_meta_unlinked(root, rel), |real| files::dir_meta(root, real))?.1)
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
    let keep = |n: &str| !n.starts_with('.') && wildcard(name.as_bytes(), n.as_bytes());
    let Some((dir, entries)) = list_in_root(root, if dir.is_empty() { "/" } else { dir }, &keep, usize::MAX) else {
        return Vec::new();
    };
    let rel = pattern[..pattern.len() - name.len()].to_string();
    entries
        .into_iter()
        .filter_map(|(n, kind)| match kind {
            // The entry's own type (from the directory, no look of its own): a file that is not
            // a link is itself; a directory or a special file is not a match.
            FileType::RegularFile => {
                let real = dir.join(&n);
                Some((n, real))
            }
            FileType::Symlink | FileType::Unknown => {
                resolve_in_root(root, &format!("{rel}{n}")).ok().filter(|p| p.is_file()).map(|p| (n, p))
            }
            _ => None,
        })
        .collect()
}

/// The entries of the directory `path` names inside the root (links followed within it) whose
/// names `keep` takes, at most `limit` of them, sorted by name, each with its own type: the
/// directory's real path and those entries; None when there is no directory. A directory with
/// no link on the way is listed through the held root (once per check); any other, and one too
/// large for a listing, is resolved and read as a path, entry by entry.
pub fn list_in_root(
    root: &Path,
    path: &str,
    keep: &dyn Fn(&str) -> bool,
    limit: usize,
) -> Option<(PathBuf, Vec<(String, FileType)>)> {
    if let Some(rel) = plain(path) {
        match files::list_unlinked(root, &rel) {
            Ok(Some(Some(listing))) if listing.complete => {
                let entries = listing
                    .entries
                    .iter()
                    .map(|e| (e.name.to_string_lossy().into_owned(), e.kind))
                    .filter(|(n, _)| keep(n))
                    .take(limit)
                    .collect();
                return Some((root.join(rel), entries));
            }
            Ok(Some(None)) => return None,
            _ => {}
        }
    }
    // Resolved through its links first, then read from the root refusing links: one swapped
    // in meanwhile is not followed out of the root.
    let dir = resolve_in_root(root, path).ok()?;
    let rel = dir.strip_prefix(root).ok()?;
    let mut entries = files::scan_unlinked(root, rel, keep, limit).ok()???;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some((dir, entries))
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

    /// A path read, or its owner looked at, straight from its directory when no link is on
    /// the way gives what resolving it first gives, for every kind of path: plain, absent,
    /// through a linked directory, a linked file, a link out of the root, a loop, a FIFO, a
    /// directory where a file is expected and the reverse — with and without a held root.
    #[test]
    fn a_path_reads_the_same_with_or_without_looking_for_links_first() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
        std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
        std::fs::write(root.join("etc/plain"), "plain").unwrap();
        std::fs::set_permissions(root.join("etc/plain"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(root.join("etc/alternatives/my.cnf"), "alt").unwrap();
        std::fs::write(root.join("passwd"), "inside").unwrap();
        symlink("/etc/alternatives", root.join("etc/alt")).unwrap();
        symlink("alternatives/my.cnf", root.join("etc/my.cnf")).unwrap();
        symlink("../../../../../../passwd", root.join("etc/out")).unwrap();
        symlink("/etc/loop", root.join("etc/loop")).unwrap();
        symlink("/etc/cron.d", root.join("etc/cron.link")).unwrap();
        // A relative link to a directory: `openat2` beneath the root alone would follow it.
        symlink("alternatives", root.join("etc/rel")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let limits = Limits { max_file_bytes: 1 << 20 };
        let paths = [
            "/etc/plain",
            "etc/plain",
            "/etc/none",
            "/etc/none/x",
            "/etc/alt/my.cnf",
            "/etc/my.cnf",
            "/etc/out",
            "/etc/loop",
            "/etc/fifo",
            "/etc/cron.d",
            "/etc/cron.link",
            "/etc/plain/x",
            "/../etc/plain",
            "/",
            "/etc/rel/my.cnf",
            "/etc/rel",
        ];
        let same = |a: io::Result<String>, b: io::Result<String>, what: &str, path: &str| match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{what} {path}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{what} {path}"),
            (a, b) => panic!("{what} {path}: {a:?} against {b:?}"),
        };
        // What resolving first gives, with no held root (whose kept directories the fast path
        // would share).
        let wanted: Vec<[io::Result<String>; 3]> = paths
            .iter()
            .map(|path| {
                let resolved = || resolve_in_root(&root, path);
                [
                    resolved().and_then(|real| Ok(format!("{real:?} {:?}", files::read(&root, &real, &limits)?))),
                    resolved().and_then(|real| files::owner(&root, &real)).map(|o| format!("{o:?}")),
                    resolved().and_then(|real| files::dir_meta(&root, &real)).map(|o| format!("{o:?}")),
                ]
            })
            .collect();
        let again = |w: &io::Result<String>| match w {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let dirs = ["/", "/etc", "/etc/alternatives", "/etc/alt", "/etc/rel", "/etc/none", "/etc/plain", "/etc/fifo"];
        let globs = ["/etc/*", "/etc/alt/*", "/etc/rel/*.cnf", "/etc/none/*", "/etc/c*", "/*"];
        let listed = |d: &str| format!("{:?}", list_in_root(&root, d, &|_| true, usize::MAX));
        let globbed = |g: &str| format!("{:?}", glob_named_in_root(&root, g));
        let (wanted_lists, wanted_globs): (Vec<String>, Vec<String>) =
            (dirs.iter().map(|d| listed(d)).collect(), globs.iter().map(|g| globbed(g)).collect());
        // The listing without a held root is what the standard library's reads of the resolved
        // directory give.
        let by_std = |d: &str| {
            let mut names: Vec<String> = std::fs::read_dir(resolve_in_root(&root, d).unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        for d in ["/etc/rel", "/etc"] {
            let names: Vec<String> =
                list_in_root(&root, d, &|_| true, usize::MAX).unwrap().1.into_iter().map(|(n, _)| n).collect();
            assert_eq!(names, by_std(d), "{d}");
        }
        // Held, and held with its directories listed first (as a check's walk does): what the
        // reads then take from the listings (a name missing from its directory is absent) and
        // the looks they keep give the same answers.
        for (held, listed_first) in [(false, false), (true, false), (true, true)] {
            let _held = held.then(|| files::hold_root(&root).unwrap());
            if listed_first {
                for d in dirs {
                    list_in_root(&root, d, &|_| true, usize::MAX);
                }
                owner_in_root(&root, "/etc/plain").unwrap();
            }
            for (d, want) in dirs.iter().zip(&wanted_lists) {
                assert_eq!(&listed(d), want, "listing {d}");
            }
            for (g, want) in globs.iter().zip(&wanted_globs) {
                assert_eq!(&globbed(g), want, "glob {g}");
            }
            for (path, [read, owner, meta]) in paths.iter().zip(&wanted) {
                let got = read_in_root(&root, path, &limits).map(|(real, data)| format!("{real:?} {data:?}"));
                same(got, again(read), "read", path);
                same(owner_in_root(&root, path).map(|o| format!("{o:?}")), again(owner), "owner", path);
                same(dir_meta_in_root(&root, path).map(|o| format!("{o:?}")), again(meta), "dir_meta", path);
            }
            // Resolved: the real path names no link (resolving uses the same `openat2`, so the
            // comparison above alone would not see it follow one).
            let (real, data) = read_in_root(&root, "/etc/rel/my.cnf", &limits).unwrap();
            assert_eq!((real, data), (root.join("etc/alternatives/my.cnf"), Some(b"alt".to_vec())));
            let (real, data) = read_in_root(&root, "/etc/out", &limits).unwrap();
            assert_eq!((real, data), (root.join("passwd"), Some(b"inside".to_vec())), "a link out stays inside");
            assert_eq!(owner_in_root(&root, "/etc/plain").unwrap().map(|o| o.0), Some(0o640));
        }
    }

    /// A directory listed only in part (more entries than a listing holds) never makes a name
    /// past the cut look absent to the reads, owners or globs of a held root, and the walk says
    /// it stopped.
    #[test]
    fn a_listing_cut_short_hides_no_file() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        std::fs::create_dir_all(root.join("etc/many")).unwrap();
        let names: Vec<String> = (0..files::MAX_LISTED + 4).map(|i| format!("f{i:03}")).collect();
        for n in &names {
            std::fs::write(root.join("etc/many").join(n), n).unwrap();
        }
        let _held = files::hold_root(&root).unwrap();
        let cut = files::list_unlinked(&root, Path::new("etc/many")).unwrap().unwrap().unwrap();
        assert_eq!((cut.entries.len(), cut.complete), (files::MAX_LISTED, false));
        let mut doc = model::Document::new();
        super::super::walk::world_writable(&root, &mut doc);
        assert!(doc["files.world_writable_count"].contains("stopped"), "{doc:?}");
        // A glob reads the whole directory itself.
        assert_eq!(glob_in_root(&root, "/etc/many/f*").len(), names.len());
        let limits = Limits { max_file_bytes: 1 << 20 };
        for n in &names {
            let (_, data) = read_in_root(&root, &format!("/etc/many/{n}"), &limits).unwrap();
            assert_eq!(data, Some(n.as_bytes().to_vec()), "{n}");
            assert!(owner_in_root(&root, &format!("/etc/many/{n}")).unwrap().is_some(), "{n}");
        }
        assert_eq!(read_in_root(&root, "/etc/many/none", &limits).unwrap().1, None);
    }

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

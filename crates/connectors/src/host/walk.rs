//! Regular files anyone may write, under the directories that hold configuration and local
//! programs (CIS 6.1.9): `files.world_writable` lists them (the first 20, then how many more),
//! `files.world_writable_count` counts them. The walk never follows a link and stops after a
//! bounded number of entries, so a huge or hostile tree cannot stall a check (the count then
//! says it stopped).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use model::Document;

use super::paths::resolve_in_root;

/// Where the walk looks: the whole filesystem is the benchmark's scope, but a check reads
/// these on every run, so they are the ones where a writable file changes what root runs.
pub const DIRS: [&str; 4] = ["/etc", "/boot", "/usr/local", "/opt"];

/// Entries looked at in all, at most.
const MAX_ENTRIES: usize = 50_000;

/// Paths listed in the document, at most.
const SHOWN: usize = 20;

pub fn world_writable(root: &Path, doc: &mut Document) {
    let mut found = Vec::new();
    let mut seen = 0;
    let mut stack: Vec<std::path::PathBuf> = DIRS.iter().filter_map(|d| resolve_in_root(root, d).ok()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                stack.clear();
                break;
            }
            // The entry's own type, not its target's: a link is neither followed nor judged (its
            // target is). Only files are looked at, by name in their directory.
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else if kind.is_file() && e.metadata().is_ok_and(|m| m.mode() & 0o002 != 0) {
                found.push(format!("/{}", e.path().strip_prefix(root).unwrap_or(&e.path()).display()));
            }
        }
    }
    found.sort();
    let count = found.len();
    let mut shown: Vec<String> = found.into_iter().take(SHOWN).collect();
    if count > SHOWN {
        shown.push(format!("… {} more", count - SHOWN));
    }
    let count = if seen > MAX_ENTRIES {
        format!("{count} (the walk stopped after {MAX_ENTRIES} entries)")
    } else {
        count.to_string()
    };
    doc.insert("files.world_writable".into(), shown.join(", "));
    doc.insert("files.world_writable_count".into(), count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn world_writable_files_are_found_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc/profile.d");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("open.sh"), "x").unwrap();
        std::fs::set_permissions(etc.join("open.sh"), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::write(etc.join("closed.sh"), "x").unwrap();
        std::os::unix::fs::symlink("/tmp", t.path().join("etc/tmp-link")).unwrap();
        let mut d = Document::new();
        world_writable(t.path(), &mut d);
        assert_eq!(d["files.world_writable"], "/etc/profile.d/open.sh");
        assert_eq!(d["files.world_writable_count"], "1");
    }
}

//! Regular files anyone may write, under the directories that hold configuration and local
//! programs (CIS 6.1.9): `files.world_writable` lists them (the first 20, then how many more),
//! `files.world_writable_count` counts them. The walk never follows a link and stops after a
//! bounded number of entries, so a huge or hostile tree cannot stall a check (the count then
//! says it stopped).

use std::path::{Path, PathBuf};

use model::Document;
use rustix::fs::FileType;

use super::files;
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
    // Each directory by its real path under the root (/etc walked first); below those, nothing
    // is followed.
    let mut stack: Vec<PathBuf> = DIRS
        .iter()
        .rev()
        .filter_map(|d| resolve_in_root(root, d).ok()?.strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    let mut stopped = false;
    while let Some(dir) = stack.pop() {
        // Listed through the held root (kept for the reads of the check that follow), with each
        // file's mode, and never through a link: a directory swapped for one since its parent
        // was listed is skipped.
        let Ok(Some(Some(listing))) = files::list_unlinked(root, &dir) else { continue };
        stopped |= !listing.complete;
        for e in &listing.entries {
            seen += 1;
            if seen > MAX_ENTRIES {
                stopped = true;
                stack.clear();
                break;
            }
            // The entry's own type, not its target's: a link is neither followed nor judged (its
            // target is). Only files are looked at, by name in their directory.
            let path = dir.join(&e.name);
            if e.kind == FileType::Directory {
                stack.push(path);
            } else if e.owner.is_some_and(|(mode, ..)| mode & 0o002 != 0) {
                found.push(format!("/{}", path.display()));
            }
        }
    }
    found.sort();
    let count = found.len();
    let mut shown: Vec<String> = found.into_iter().take(SHOWN).collect();
    if count > SHOWN {
        shown.push(format!("… {} more", count - SHOWN));
    }
    let count =
        if stopped { format!("{count} (the walk stopped after {MAX_ENTRIES} entries)") } else { count.to_string() };
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

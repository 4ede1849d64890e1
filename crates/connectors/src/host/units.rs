//! systemd units enabled at boot: a unit is enabled when a `*.wants` (or `*.requires`)
//! directory under /etc/systemd/system links to it, unless the unit is masked (a link from
//! /etc/systemd/system/<unit> to /dev/null). Read without following any link.
//!
//! Document keys: `systemd.enabled.<unit>` = the directories that pull it in, for each enabled
//! unit that is not masked.

use std::collections::BTreeMap;
use std::path::Path;

use model::Document;

use rustix::fs::FileType;

use super::paths::list_in_root;

const SYSTEM: &str = "/etc/systemd/system";

/// More entries than any real unit directory has: a bound on what one fetch reads.
const MAX_ENTRIES: usize = 20_000;

pub fn enabled_units(root: &Path, doc: &mut Document) {
    let Some((system, entries)) = list_in_root(root, SYSTEM, &|_| true, MAX_ENTRIES) else { return };
    let mut by_unit: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut masked = Vec::new();
    for (name, kind) in entries {
        if kind == FileType::Symlink {
            if std::fs::read_link(system.join(&name)).is_ok_and(|t| t == Path::new("/dev/null")) {
                masked.push(name);
            }
            continue;
        }
        if kind == FileType::Directory && (name.ends_with(".wants") || name.ends_with(".requires")) {
            let wanted = list_in_root(root, &format!("{SYSTEM}/{name}"), &|_| true, MAX_ENTRIES);
            for (unit, _) in wanted.map(|(_, e)| e).unwrap_or_default() {
                by_unit.entry(unit).or_default().push(name.clone());
            }
        }
    }
    for (unit, dirs) in by_unit {
        if !masked.contains(&unit) {
            doc.insert(format!("systemd.enabled.{unit}"), dirs.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn enabled_means_wanted_and_not_masked() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("etc/systemd/system");
        std::fs::create_dir_all(sys.join("multi-user.target.wants")).unwrap();
        symlink("/lib/systemd/system/autofs.service", sys.join("multi-user.target.wants/autofs.service")).unwrap();
        symlink("/lib/systemd/system/cups.service", sys.join("multi-user.target.wants/cups.service")).unwrap();
        symlink("/dev/null", sys.join("cups.service")).unwrap();
        let mut d = Document::new();
        enabled_units(t.path(), &mut d);
        assert_eq!(d.get("systemd.enabled.autofs.service").map(String::as_str), Some("multi-user.target.wants"));
        assert!(!d.contains_key("systemd.enabled.cups.service"), "masked");
    }
}

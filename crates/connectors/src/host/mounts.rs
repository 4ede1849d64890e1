//! /etc/fstab: the mount options of each mount point (`fstab.<mount point>.options`), as mount
//! reads them (the last line for a mount point wins, as the last mount covers the others).

use model::Document;

/// Adds `fstab.present` and `fstab.<mount point>.options` for every entry.
pub fn fstab_facts(fstab: &str, doc: &mut Document) {
    doc.insert("fstab.present".into(), "true".into());
    for line in fstab.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_device, mount_point, _fstype, options, ..] = fields.as_slice() {
            doc.insert(format!("fstab.{mount_point}.options"), options.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_by_mount_point() {
        let mut d = Document::new();
        fstab_facts(
            "# /etc/fstab\nUUID=1 / ext4 errors=remount-ro 0 1\ntmpfs /tmp tmpfs defaults,nodev 0 0\n\ntmpfs /tmp tmpfs nodev,nosuid,noexec 0 0\nbad line\n",
            &mut d,
        );
        assert_eq!(d["fstab./tmp.options"], "nodev,nosuid,noexec", "the last line wins");
        assert_eq!(d["fstab./.options"], "errors=remount-ro");
        assert_eq!(d.len(), 3);
    }
}

//! File state as snapshots see it, atomic writes, and digests.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use model::SnapshotItem;
use sha2::{Digest, Sha256};

/// What a file is now: None if it does not exist.
pub struct FileState {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn state(real: &Path) -> io::Result<Option<FileState>> {
    match fs::metadata(real) {
        Ok(m) => Ok(Some(FileState { content: fs::read(real)?, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A snapshot item of the file as it is now.
pub fn capture(logical: &str, real: &Path, with_content: bool) -> io::Result<SnapshotItem> {
    let s = state(real)?;
    let mut meta = BTreeMap::new();
    if let Some(s) = &s {
        meta.insert("mode".to_string(), i64::from(s.mode));
        meta.insert("uid".to_string(), i64::from(s.uid));
        meta.insert("gid".to_string(), i64::from(s.gid));
    }
    Ok(SnapshotItem {
        key: logical.to_string(),
        existed: s.is_some(),
        has_content: with_content,
        data: if with_content { s.map(|s| s.content).unwrap_or_default() } else { Vec::new() },
        meta,
        post_digest: None,
    })
}

/// The digest of a file's state, covering its content only when `with_content`.
pub fn digest(s: Option<&FileState>, with_content: bool) -> String {
    let mut h = Sha256::new();
    match s {
        None => h.update(b"absent"),
        Some(s) => {
            h.update(format!("present|{:o}|{}|{}|", s.mode, s.uid, s.gid));
            if with_content {
                h.update(&s.content);
            }
        }
    }
    hex::encode(h.finalize())
}

/// The digest of the state a snapshot item holds (before the change).
pub fn digest_of_item(item: &SnapshotItem) -> String {
    let s = item.existed.then(|| FileState {
        content: item.data.clone(),
        mode: meta(item, "mode"),
        uid: meta(item, "uid"),
        gid: meta(item, "gid"),
    });
    digest(s.as_ref(), item.has_content)
}

pub fn meta(item: &SnapshotItem, key: &str) -> u32 {
    item.meta.get(key).copied().unwrap_or(0) as u32
}

/// Writes `data` to `real` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Mode and owner are set on the temporary file before the rename, so
/// the target never exists with the wrong permissions.
pub fn write_atomic(real: &Path, data: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let dir = real.parent().ok_or_else(|| io::Error::other("no parent directory"))?;
    fs::create_dir_all(dir)?;
    let name = real.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.posture-{}", random_hex()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        if let Some((uid, gid)) = owner {
            let m = f.metadata()?;
            if m.uid() != uid || m.gid() != gid {
                std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
            }
        }
        fs::set_permissions(&tmp, Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, real)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Sets mode and owner (owner only when it differs, so an unprivileged service can still
/// restore modes of its own files).
pub fn set_meta(real: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    let m = fs::metadata(real)?;
    if m.uid() != uid || m.gid() != gid {
        std::os::unix::fs::chown(real, Some(uid), Some(gid))?;
    }
    fs::set_permissions(real, Permissions::from_mode(mode))
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

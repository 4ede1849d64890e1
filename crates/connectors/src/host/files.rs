//! File state as snapshots see it, reads and atomic writes that a hostile file cannot abuse,
//! and digests.
//!
//! Every open is `O_NOFOLLOW | O_NONBLOCK` (paths are resolved inside the root beforehand, so
//! a symbolic link swapped in afterwards is refused rather than followed, and a FIFO never
//! blocks the opener), and only regular files are read or changed: a FIFO, a device or a
//! socket at a configuration path is refused with a code of its own. A file larger than the
//! limit is refused before it is read whole. A file with more than one hard link is never
//! changed: its other names may be outside the instance's root.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use model::SnapshotItem;
use sha2::{Digest, Sha256};

/// What the host connector accepts of a file.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest configuration file read or backed up, in bytes.
    pub max_file_bytes: u64,
}

/// The largest configuration file read by default: 1 MiB (the largest sshd_config of a stock
/// Debian is 3 KiB; a file a thousand times that is not a configuration anyone wrote by hand).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: DEFAULT_MAX_FILE_BYTES }
    }
}

/// Why a file was refused; carried inside an `io::Error` so that the connector can answer
/// each with its own code.
#[derive(Debug)]
pub enum Refusal {
    /// Not a regular file (a FIFO, a device, a socket, a directory).
    NotRegular(&'static str),
    /// Larger than [`Limits::max_file_bytes`].
    TooLarge { size: u64, limit: u64 },
    /// More than one hard link: changing it would change its other names too.
    HardLinked(u64),
}

impl Refusal {
    /// The task's `ErrorCode` for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotRegular(_) => "ConfigFileNotRegular",
            Refusal::TooLarge { .. } => "ConfigFileTooLarge",
            Refusal::HardLinked(_) => "ConfigFileHardLinked",
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotRegular(kind) => write!(f, "not a regular file but a {kind}; only regular files are read"),
            Refusal::TooLarge { size, limit } => {
                write!(f, "{size} bytes, larger than the limit of {limit} bytes for a configuration file")
            }
            Refusal::HardLinked(n) => {
                write!(f, "has {n} hard links; a file with other names (possibly outside the root) is never changed")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// The refusal inside an I/O error, if it is one.
pub fn refusal(e: &io::Error) -> Option<&Refusal> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Refusal>())
}

fn kind_of(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Opens a regular file without following a final symbolic link and without blocking. None if
/// it does not exist. The path is looked at first (`lstat`), so a device is never opened (an
/// open can have effects of its own); the descriptor is checked again after the open, and
/// `O_NONBLOCK` keeps a FIFO swapped in between from blocking the opener.
fn open_regular(real: &Path) -> io::Result<Option<(File, fs::Metadata)>> {
    match fs::symlink_metadata(real) {
        Ok(m) if !m.file_type().is_file() => return Err(Refusal::NotRegular(kind_of(m.file_type())).into_io()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let opened =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(real);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(Refusal::NotRegular("symbolic link").into_io()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(Refusal::NotRegular(kind_of(meta.file_type())).into_io());
    }
    Ok(Some((file, meta)))
}

/// Reads a regular file of at most `limits.max_file_bytes`. None if it does not exist.
pub fn read(real: &Path, limits: &Limits) -> io::Result<Option<Vec<u8>>> {
    Ok(read_with_meta(real, limits)?.map(|(data, _)| data))
}

fn read_with_meta(real: &Path, limits: &Limits) -> io::Result<Option<(Vec<u8>, fs::Metadata)>> {
    let Some((file, meta)) = open_regular(real)? else { return Ok(None) };
    let limit = limits.max_file_bytes;
    if meta.len() > limit {
        return Err(Refusal::TooLarge { size: meta.len(), limit }.into_io());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never read more than one byte past the limit.
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(Refusal::TooLarge { size: data.len() as u64, limit }.into_io());
    }
    Ok(Some((data, meta)))
}

/// The metadata of a regular file (None if it does not exist), refusing special files.
pub fn meta(real: &Path) -> io::Result<Option<fs::Metadata>> {
    Ok(open_regular(real)?.map(|(_, m)| m))
}

/// What a file is now: None if it does not exist.
pub struct FileState {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The state of a file, with its content only when `with_content` (a mode-only repair never
/// reads, stores or rewrites the content).
pub fn state(real: &Path, with_content: bool, limits: &Limits) -> io::Result<Option<FileState>> {
    let found = if with_content { read_with_meta(real, limits)? } else { meta(real)?.map(|m| (Vec::new(), m)) };
    Ok(found.map(|(content, m)| FileState { content, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() }))
}

/// Refuses a change to a file with other names (hard links). A missing file is fine: a new
/// one will be created.
pub fn check_changeable(real: &Path) -> io::Result<()> {
    match meta(real)? {
        Some(m) if m.nlink() > 1 => Err(Refusal::HardLinked(m.nlink()).into_io()),
        _ => Ok(()),
    }
}

/// A snapshot item of the file as it is now.
pub fn capture(logical: &str, real: &Path, with_content: bool, limits: &Limits) -> io::Result<SnapshotItem> {
    check_changeable(real)?;
    let s = state(real, with_content, limits)?;
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
        data: s.map(|s| s.content).unwrap_or_default(),
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
        mode: meta_of(item, "mode"),
        uid: meta_of(item, "uid"),
        gid: meta_of(item, "gid"),
    });
    digest(s.as_ref(), item.has_content)
}

pub fn meta_of(item: &SnapshotItem, key: &str) -> u32 {
    item.meta.get(key).copied().unwrap_or(0) as u32
}

/// The prefix of the temporary files written beside `real`: `.<name>.posture-`.
fn temp_prefix(real: &Path) -> String {
    format!(".{}.posture-", real.file_name().unwrap_or_default().to_string_lossy())
}

/// Writes `data` to `real` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Mode and owner are set on the temporary file before the rename, so
/// the target never exists with the wrong permissions. The file it replaces must be regular
/// and have no other names.
pub fn write_atomic(real: &Path, data: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    check_changeable(real)?;
    let dir = real.parent().ok_or_else(|| io::Error::other("no parent directory"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{}{}", temp_prefix(real), random_hex()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        if let Some((uid, gid)) = owner {
            let m = f.metadata()?;
            if m.uid() != uid || m.gid() != gid {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
        }
        f.set_permissions(Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, real)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files a write of `real` interrupted by a crash left beside it (only
/// names this module makes: `.<name>.posture-<16 hex>`, regular files). Returns how many.
pub fn sweep_temporaries(real: &Path) -> usize {
    let (Some(dir), prefix) = (real.parent(), temp_prefix(real)) else { return 0 };
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()));
        if ours && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Sets mode and owner (owner only when it differs, so an unprivileged service can still
/// restore modes of its own files), through a descriptor of the regular file itself.
pub fn set_meta(real: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    let (file, m) = open_regular(real)?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
    if m.nlink() > 1 {
        return Err(Refusal::HardLinked(m.nlink()).into_io());
    }
    if m.uid() != uid || m.gid() != gid {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.set_permissions(Permissions::from_mode(mode))
}

/// Removes a file the snapshot says did not exist (a missing one is fine).
pub fn remove(real: &Path) -> io::Result<()> {
    check_changeable(real)?;
    match fs::remove_file(real) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: io::Error) -> &'static str {
        refusal(&e).map(Refusal::code).unwrap_or("other")
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Would block forever without O_NONBLOCK (no writer ever comes).
        assert_eq!(code(read(&fifo, &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(set_meta(&fifo, 0o600, 0, 0).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(read(Path::new("/dev/zero"), &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(read(t.path(), &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
        assert!(read(&t.path().join("missing"), &Limits::default()).unwrap().is_none());
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("big");
        fs::write(&f, vec![b'#'; 101]).unwrap();
        assert_eq!(code(read(&f, &Limits { max_file_bytes: 100 }).unwrap_err()), "ConfigFileTooLarge");
        assert_eq!(read(&f, &Limits { max_file_bytes: 101 }).unwrap().unwrap().len(), 101);
    }

    #[test]
    fn hard_linked_files_are_never_changed() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::write(&a, "x").unwrap();
        fs::hard_link(&a, &b).unwrap();
        let before = fs::metadata(&a).unwrap().mode();
        assert_eq!(code(set_meta(&a, 0o600, 0, 0).unwrap_err()), "ConfigFileHardLinked");
        assert_eq!(code(write_atomic(&a, b"y", 0o644, None).unwrap_err()), "ConfigFileHardLinked");
        assert_eq!(fs::metadata(&b).unwrap().mode(), before);
        assert_eq!(fs::read(&b).unwrap(), b"x");
    }

    #[test]
    fn a_final_symlink_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("real"), "x").unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join("link")).unwrap();
        assert_eq!(code(read(&t.path().join("link"), &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
    }

    #[test]
    fn interrupted_writes_leave_nothing_after_a_sweep() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("sshd_config");
        fs::write(&real, "a").unwrap();
        fs::write(t.path().join(".sshd_config.posture-0123456789abcdef"), "partial").unwrap();
        fs::write(t.path().join(".sshd_config.posture-keep"), "not ours").unwrap();
        fs::write(t.path().join(".login.defs.posture-0123456789abcdef"), "another file's").unwrap();
        assert_eq!(sweep_temporaries(&real), 1);
        let mut left: Vec<String> =
            fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [".login.defs.posture-0123456789abcdef", ".sshd_config.posture-keep", "sshd_config"]);
    }
}

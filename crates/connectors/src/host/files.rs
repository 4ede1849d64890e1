//! File state as snapshots see it, reads and atomic writes that a hostile root cannot abuse,
//! and digests.
//!
//! Paths come resolved by `resolve_in_root` (symbolic links followed *inside* the root). Every
//! operation then walks that real path again from the root, one directory at a time, with
//! `O_NOFOLLOW`, and acts relative to the directory it reached (`openat`, `renameat`,
//! `unlinkat`): a symbolic link swapped into the path after it was resolved — to take a write
//! out of the root — is refused, never followed. Only regular files are read or changed: the
//! name is looked at first (`fstatat`, so a device is never opened: an open can have effects
//! of its own), opened `O_NONBLOCK` (a FIFO swapped in cannot block) and checked again on the
//! descriptor. A file larger than the limit is refused before it is read whole. A file with
//! more than one hard link is never changed: its other names may be outside the root.
//!
//! A check of one instance holds its root open ([`hold_root`]): its reads then reach a path in
//! one `openat2` that refuses any link and any step out of the root, and take each directory
//! as the check first opened it — one view of the instance for the check, never a file
//! outside the root. Changes never use the directories a check kept. A check's reads of paths
//! with no link on the way (most) skip the separate resolution: the directory's `openat2` and
//! the name's `fstatat` already say that no link is there (`paths::read_in_root`). The held
//! root also keeps each directory a check lists, with the mode and owner of its files: owners
//! and globs are answered from it, and a name missing from a whole listing is absent.
//!
//! Reads change nothing, access times included: files and directories are opened `O_NOATIME`
//! where the kernel grants it ([`keeping_atime`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use model::SnapshotItem;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
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
    /// Not a regular file (a FIFO, a device, a socket, a directory, a link).
    NotRegular(&'static str),
    /// Larger than [`Limits::max_file_bytes`].
    TooLarge { size: u64, limit: u64 },
    /// More than one hard link: changing it would change its other names too.
    HardLinked(u64),
    /// A directory of the path is not a plain directory any more (a link put there after the
    /// path was resolved).
    PathChanged,
}

impl Refusal {
    /// The task's `ErrorCode` for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotRegular(_) | Refusal::PathChanged => "ConfigFileNotRegular",
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
            Refusal::PathChanged => {
                write!(f, "a directory of its path is not a plain directory (a symbolic link put there meanwhile?)")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// The refusal inside an I/O error, if it is one.
pub fn refusal(e: &io::Error) -> Option<&Refusal> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Refusal>())
}

fn kind_of(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "FIFO",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Socket => "socket",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::RegularFile => "regular file",
        _ => "special file",
    }
}

fn errno(e: Errno) -> io::Error {
    e.into()
}

thread_local! {
    /// The root this thread holds open (see [`hold_root`]).
    static HELD_ROOT: RefCell<Option<Held>> = const { RefCell::new(None) };
    /// Whether this thread still asks for `O_NOATIME` (see [`keeping_atime`]).
    static NOATIME: Cell<bool> = const { Cell::new(true) };
}

/// `open` with `O_NOATIME` added to `flags` where the kernel grants it, else without: a look at
/// a host must not change it. Without, reading sets the access time of each file and directory
/// read (under `relatime`, once a day at least: a daily check would write the inode of every
/// file it reads, and overwrite the access times an investigation of the host reads). The
/// kernel grants it to a file's owner and to CAP_FOWNER (a service or agent running as root);
/// refused once (`EPERM`), this thread stops asking. Not for `O_PATH` (no access is made, and
/// `openat2` refuses the flag with it).
fn keeping_atime<T>(flags: OFlags, open: impl Fn(OFlags) -> Result<T, Errno>) -> Result<T, Errno> {
    if NOATIME.get() {
        match open(flags | OFlags::NOATIME) {
            Err(Errno::PERM) => NOATIME.set(false),
            opened => return opened,
        }
    }
    open(flags)
}

/// A root held open, and what a check found under it meanwhile, by path relative to the root:
/// the directories opened for reading, and the directories listed with the mode and owner of
/// their files. A check lists whole directory trees (the world-writable walk) and then reads
/// files in them and looks at their owners: each directory is then listed once, an owner is
/// taken from the listing, and a name missing from its directory's whole listing is known to
/// be absent without a look of its own. A file is still looked at (`fstatat`) right before it
/// is opened: what the listing saw may have been replaced since.
struct Held {
    root: PathBuf,
    fd: Rc<OwnedFd>,
    dirs: HashMap<OsString, Rc<OwnedFd>>,
    listed: HashMap<OsString, Rc<Listing>>,
    /// Bytes of the listings kept (their paths and names), in all.
    listed_bytes: usize,
}

impl Held {
    /// Whether this is the root `root` (compared as bytes: the paths a check asks for all
    /// come from the same spelling of the root, and a component-wise comparison per look would
    /// cost more than the look saved).
    fn is(&self, root: &Path) -> bool {
        self.root.as_os_str() == root.as_os_str()
    }
}

/// Directories a held root keeps open at most (the reads of a check use a few dozen; a
/// listing never keeps its directory open).
const MAX_HELD_DIRS: usize = 64;

/// Bytes of the listings a held root keeps, in all (their paths, their names and a word or
/// so an entry): beyond, a listing is used once and not kept.
const MAX_HELD_BYTES: usize = 8 << 20;

/// Entries of one directory listed at most: a listing with more is cut there and says so (16
/// in this crate's tests, so that a small directory is cut).
pub(crate) const MAX_LISTED: usize = if cfg!(test) { 16 } else { 50_000 };

/// A directory's entries (not `.` and `..`), sorted by name, each with its own type (a link
/// is a link) and, for a regular file, its mode and owner as the listing's `fstatat` found them
/// (None if that failed); `complete` is false when the listing was cut at [`MAX_LISTED`].
pub(crate) struct Listing {
    pub entries: Vec<Entry>,
    pub complete: bool,
}

/// One entry of a [`Listing`].
pub(crate) struct Entry {
    pub name: OsString,
    pub kind: FileType,
    /// (mode, uid, gid) of a regular file.
    pub owner: Option<(u32, u32, u32)>,
}

impl Listing {
    /// Whether `name` is surely not in the directory: the listing is whole and holds no name a
    /// case-insensitive filesystem (vfat, exFAT, a casefolded ext4 or f2fs directory) could
    /// take for it — none equal to it but for ASCII case, and none outside ASCII (Unicode
    /// folds some of those onto ASCII letters), or `name` itself is not ASCII. Otherwise the
    /// name is looked up for real.
    fn lacks(&self, name: &OsStr) -> bool {
        let name = name.as_bytes();
        self.complete
            && name.is_ascii()
            && !self.entries.iter().any(|e| {
                let other = e.name.as_bytes();
                !other.is_ascii() || other.eq_ignore_ascii_case(name)
            })
    }

    fn get(&self, name: &OsStr) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.name.as_os_str().cmp(name)).ok().map(|i| &self.entries[i])
    }
}

/// Holds the root open on this thread while the guard lives.
pub struct HeldRoot(());

impl Drop for HeldRoot {
    fn drop(&mut self) {
        HELD_ROOT.with(|h| h.borrow_mut().take());
    }
}

/// Holds `root` open on this thread until the guard is dropped: a check reads dozens of files
/// of one root, and each then starts from the directory held instead of resolving the root's
/// own path again, and reads a directory's files through one descriptor of it. Held for one
/// check of one instance only, which only reads: a root or directory replaced later is opened
/// anew.
pub fn hold_root(root: &Path) -> io::Result<HeldRoot> {
    let fd = Rc::new(open_root(root)?);
    let held = Held { root: root.to_path_buf(), fd, dirs: HashMap::new(), listed: HashMap::new(), listed_bytes: 0 };
    HELD_ROOT.with(|h| *h.borrow_mut() = Some(held));
    Ok(HeldRoot(()))
}

/// The root itself is configuration, not content of the instance: it may be a link.
fn open_root(root: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(CWD, root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(errno)
}

/// The root directory: the one this thread holds when it is `root`, else opened now.
pub(crate) fn root_dir(root: &Path) -> io::Result<Rc<OwnedFd>> {
    let held = HELD_ROOT.with(|h| h.borrow().as_ref().filter(|h| h.is(root)).map(|h| h.fd.clone()));
    match held {
        Some(fd) => Ok(fd),
        None => Ok(Rc::new(open_root(root)?)),
    }
}

/// Opens `rel` (relative, plain names only) under `dir` in one system call, refusing any
/// symbolic link on the way and any step out of `dir` (`openat2` with `RESOLVE_NO_SYMLINKS`
/// and `RESOLVE_BENEATH`). `Err` when that cannot answer (a link is there, or the kernel has
/// no `openat2`): the caller then walks the path one step at a time.
pub(crate) fn open_beneath(dir: &OwnedFd, rel: &Path, flags: OFlags) -> Result<Option<OwnedFd>, Errno> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let open = |flags| rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve);
    let opened = if flags.contains(OFlags::PATH) { open(flags) } else { keeping_atime(flags, open) };
    match opened {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a file's directory is looked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// To read: the directory as this thread's held root first found it will do.
    Read,
    /// To change: the directory there now.
    Change,
    /// To write, creating the missing directories.
    Create,
}

/// The directory holding `real` (a path under `root`), reached from the root one directory at
/// a time without following any symbolic link, and the file's name in it. Missing directories
/// are created by [`Walk::Create`]; otherwise None means the file cannot exist.
fn parent_in(root: &Path, real: &Path, walk: Walk) -> io::Result<Option<(Rc<OwnedFd>, OsString)>> {
    let create = walk == Walk::Create;
    let rel = real
        .strip_prefix(root)
        .map_err(|_| io::Error::other(format!("{} is outside the root {}", real.display(), root.display())))?;
    let name = rel.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_os_string();
    let parent = rel.parent().unwrap_or(Path::new(""));
    // The whole walk in one call when nothing on it is a link (else the walk below says what).
    if !create {
        if let Ok(found) = dir_beneath(root, parent, walk)? {
            return Ok(found.map(|dir| (dir, name)));
        }
    }
    match open_dir_stepwise(root, parent, create)? {
        Ok(Some(dir)) => Ok(Some((Rc::new(dir), name))),
        Ok(None) => Ok(None),
        Err(Errno::INVAL) => Err(Refusal::PathChanged.into_io()),
        Err(e) => Err(refused_step(e)),
    }
}

/// The directory `rel` (relative to `root`) reached in one `openat2` that refuses any link
/// (see [`open_beneath`]); for [`Walk::Read`] under a held root, as the check first opened it.
/// `Ok(None)`: it does not exist (and no link leads there); the inner `Err`: a link is on the
/// way, or the path is not plain, and the caller walks it one step at a time.
fn dir_beneath(root: &Path, rel: &Path, walk: Walk) -> io::Result<Result<Option<Rc<OwnedFd>>, Errno>> {
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Ok(Err(Errno::INVAL));
    }
    let held = |h: &Held| walk == Walk::Read && h.is(root);
    if let Some(dir) =
        HELD_ROOT.with(|h| h.borrow().as_ref().filter(|h| held(h)).and_then(|h| h.dirs.get(rel.as_os_str()).cloned()))
    {
        return Ok(Ok(Some(dir)));
    }
    if walk == Walk::Read && known_absent(root, rel) {
        return Ok(Ok(None));
    }
    let found = match open_beneath(&*root_dir(root)?, rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC) {
        Ok(found) => found.map(Rc::new),
        Err(e) => return Ok(Err(e)),
    };
    if let Some(dir) = &found {
        HELD_ROOT.with(|h| {
            if let Some(h) = h.borrow_mut().as_mut().filter(|h| held(h) && h.dirs.len() < MAX_HELD_DIRS) {
                h.dirs.insert(rel.as_os_str().to_os_string(), dir.clone());
            }
        });
    }
    Ok(Ok(found))
}

/// A directory that cannot be entered without following a link (`ELOOP`), or is not one.
fn refused_step(e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR => Refusal::PathChanged.into_io(),
        e => errno(e),
    }
}

/// What the name is, without following it: None if it does not exist.
fn stat_in(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// The number of names of a file (`st_nlink` is not 64 bits on every target).
#[allow(clippy::unnecessary_cast)]
fn links(st: &rustix::fs::Stat) -> u64 {
    st.st_nlink as u64
}

/// Refuses anything but a regular file with one name (what may be changed).
fn changeable(st: &rustix::fs::Stat) -> io::Result<()> {
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(Refusal::NotRegular(kind_of(kind)).into_io());
    }
    if links(st) > 1 {
        return Err(Refusal::HardLinked(links(st)).into_io());
    }
    Ok(())
}

/// Opens a regular file for reading, without following a link and without blocking. None if
/// it does not exist. A device is refused before any open.
fn open_regular(root: &Path, real: &Path, walk: Walk) -> io::Result<Option<(File, fs::Metadata)>> {
    let Some((dir, name)) = parent_in(root, real, walk)? else { return Ok(None) };
    let Some(st) = stat_in(&dir, &name)? else { return Ok(None) };
    open_stated(&dir, &name, &st)
}

/// [`open_regular`] of `name` in `dir`, as `st` (its `fstatat`) found it.
fn open_stated(dir: &OwnedFd, name: &OsStr, st: &rustix::fs::Stat) -> io::Result<Option<(File, fs::Metadata)>> {
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(Refusal::NotRegular(kind_of(kind)).into_io());
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match keeping_atime(flags, |flags| rustix::fs::openat(dir, name, flags, Mode::empty())) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(Refusal::NotRegular("symbolic link").into_io()),
        Err(e) => return Err(errno(e)),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(Refusal::NotRegular("special file").into_io());
    }
    Ok(Some((file, meta)))
}

/// Reads a regular file of at most `limits.max_file_bytes`. None if it does not exist.
pub fn read(root: &Path, real: &Path, limits: &Limits) -> io::Result<Option<Vec<u8>>> {
    Ok(read_with_meta(root, real, limits)?.map(|(data, _)| data))
}

/// A name's directory, and what `fstatat` found there.
type Stated = (Rc<OwnedFd>, rustix::fs::Stat);

/// What the name `rel` (plain names, relative to `root`) is, when no link is on the way —
/// most paths: `Some` of its directory and its `fstatat` (None: absent); `None` when a link is
/// on the way, for the caller to resolve the path first (see `paths::in_root`). The path's own
/// check for links would be a second walk of it.
fn stat_unlinked(root: &Path, rel: &Path) -> io::Result<Option<Option<Stated>>> {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { return Ok(None) };
    if known_absent(root, rel) {
        return Ok(Some(None));
    }
    let dir = match dir_beneath(root, parent, Walk::Read)? {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(Some(None)),
        Err(_) => return Ok(None),
    };
    match stat_in(&dir, name)? {
        Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Ok(None),
        found => Ok(Some(found.map(|st| (dir, st)))),
    }
}

/// What the listing of its directory, kept by the root this thread holds, says of `rel`:
/// None when its directory was not listed (or not whole, for a name it does not hold).
fn listed_entry<T>(root: &Path, rel: &Path, what: impl FnOnce(&Listing, Option<&Entry>) -> Option<T>) -> Option<T> {
    let (parent, name) = (rel.parent()?, rel.file_name()?);
    HELD_ROOT.with(|h| {
        let h = h.borrow();
        let listing = h.as_ref().filter(|h| h.is(root))?.listed.get(parent.as_os_str())?;
        what(listing, listing.get(name))
    })
}

/// Whether `rel` is known to be absent under the root this thread holds: its directory was
/// listed whole, without it (see [`Listing::lacks`]).
fn known_absent(root: &Path, rel: &Path) -> bool {
    let name = rel.file_name();
    listed_entry(root, rel, |l, _| name.filter(|n| l.lacks(n)).map(|_| ())).is_some()
}

/// The directory `rel` (plain names, relative to `root`) opened without following any link:
/// `Some(None)` when it does not exist, `None` when a link is on the way or something else
/// than a directory is there.
fn open_dir_unlinked(root: &Path, rel: &Path) -> io::Result<Option<Option<OwnedFd>>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match open_beneath(&*root_dir(root)?, rel, flags) {
        Ok(found) => Ok(Some(found)),
        // No `openat2` (an older kernel, a seccomp filter): one directory at a time, refusing
        // links. Anything else (a link on the way, a path too long) is not walked around.
        Err(Errno::NOSYS | Errno::PERM) => Ok(open_dir_stepwise(root, rel, false)?.ok()),
        Err(Errno::LOOP | Errno::XDEV | Errno::NOTDIR | Errno::AGAIN) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// A directory entry's name and type.
pub(crate) type Named = (String, FileType);

/// The names and types of the entries of the directory `rel` (plain names, relative to `root`,
/// reached without following any link) that `keep` accepts, at most `limit` of them, in the
/// directory's order: for a directory too large to be kept as a listing, or one whose path
/// was resolved through links first (a link swapped in since then is not followed). `None`
/// as [`open_dir_unlinked`] says.
pub(crate) fn scan_unlinked(
    root: &Path,
    rel: &Path,
    keep: &dyn Fn(&str) -> bool,
    limit: usize,
) -> io::Result<Option<Option<Vec<Named>>>> {
    let Some(dir) = open_dir_unlinked(root, rel)? else { return Ok(None) };
    let Some(dir) = dir else { return Ok(Some(None)) };
    let mut entries = Vec::new();
    for_each_entry(&dir, |name, mut kind| {
        if entries.len() == limit {
            return ControlFlow::Break(());
        }
        let shown = name.to_string_lossy();
        if keep(&shown) {
            // Some filesystems do not say the type in the directory: the name's own look does.
            if kind == FileType::Unknown {
                if let Ok(Some(st)) = stat_in(&dir, name) {
                    kind = FileType::from_raw_mode(st.st_mode);
                }
            }
            entries.push((shown.into_owned(), kind));
        }
        ControlFlow::Continue(())
    })?;
    Ok(Some(Some(entries)))
}

/// Calls `f` with the name and the directory's word on the type of each entry of `dir` but
/// `.` and `..`, in the directory's order, until it breaks.
fn for_each_entry(dir: &OwnedFd, mut f: impl FnMut(&OsStr, FileType) -> ControlFlow<()>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut raw = rustix::fs::RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(entry) = raw.next() {
        let entry = entry.map_err(errno)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." && f(name, entry.file_type()).is_break() {
            break;
        }
    }
    Ok(())
}

/// The entries of the directory `rel` (plain names, relative to `root`) reached without
/// following any link: `Some(None)` when it does not exist, `None` when a link is on the way or
/// something else than a directory is there. Under a held root, a listing is kept for the rest
/// of the check (its directory is not: it is closed once read).
pub(crate) fn list_unlinked(root: &Path, rel: &Path) -> io::Result<Option<Option<Rc<Listing>>>> {
    let held =
        HELD_ROOT.with(|h| h.borrow().as_ref().filter(|h| h.is(root)).map(|h| h.listed.get(rel.as_os_str()).cloned()));
    if let Some(Some(listing)) = held {
        return Ok(Some(Some(listing)));
    }
    if known_absent(root, rel) {
        return Ok(Some(None));
    }
    let Some(dir) = open_dir_unlinked(root, rel)? else { return Ok(None) };
    let Some(dir) = dir else { return Ok(Some(None)) };
    let listing = Rc::new(read_listing(&dir)?);
    let bytes = rel.as_os_str().len() + listing.entries.iter().map(|e| e.name.len() + 16).sum::<usize>();
    HELD_ROOT.with(|h| {
        if let Some(h) = h.borrow_mut().as_mut().filter(|h| h.is(root)) {
            if h.listed_bytes + bytes <= MAX_HELD_BYTES {
                h.listed_bytes += bytes;
                h.listed.insert(rel.as_os_str().to_os_string(), listing.clone());
            }
        }
    });
    Ok(Some(Some(listing)))
}

/// The directory `rel` reached from the root one directory at a time, each opened without
/// following a link, the missing ones created when `create`: `Ok(None)` when one is missing
/// (and not created), the inner `Err` when a link or a non-directory is on the way (`INVAL`: a
/// name that is not plain).
fn open_dir_stepwise(root: &Path, rel: &Path, create: bool) -> io::Result<Result<Option<OwnedFd>, Errno>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    // A descriptor of its own (a duplicate would share the held root's position in its entries).
    let root = root_dir(root)?;
    let mut dir = keeping_atime(flags, |flags| rustix::fs::openat(&*root, ".", flags, Mode::empty())).map_err(errno)?;
    for c in rel.components() {
        let Component::Normal(part) = c else { return Ok(Err(Errno::INVAL)) };
        let step = |dir: &OwnedFd| keeping_atime(flags, |flags| rustix::fs::openat(dir, part, flags, Mode::empty()));
        let stepped = match step(&dir) {
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(errno(e)),
                }
                match step(&dir) {
                    // Removed again meanwhile: an error, not an absence.
                    Err(Errno::NOENT) => return Err(errno(Errno::NOENT)),
                    stepped => stepped,
                }
            }
            stepped => stepped,
        };
        dir = match stepped {
            Ok(next) => next,
            Err(Errno::NOENT) => return Ok(Ok(None)),
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => return Ok(Err(e)),
            Err(e) => return Err(errno(e)),
        };
    }
    Ok(Ok(Some(dir)))
}

/// The entries of a directory just opened, with the mode and owner of each regular file
/// looked at through the same descriptor. An entry that cannot be looked at stays in the
/// listing without them (as the type the directory gave, or unknown).
fn read_listing(dir: &OwnedFd) -> io::Result<Listing> {
    let mut entries = Vec::new();
    let mut complete = true;
    for_each_entry(dir, |name, mut kind| {
        if entries.len() == MAX_LISTED {
            complete = false;
            return ControlFlow::Break(());
        }
        let mut owner = None;
        // Some filesystems do not say the type in the directory: the name's own look does.
        if matches!(kind, FileType::RegularFile | FileType::Unknown) {
            if let Ok(Some(st)) = stat_in(dir, name) {
                kind = FileType::from_raw_mode(st.st_mode);
                owner = (kind == FileType::RegularFile).then_some((st.st_mode & 0o7777, st.st_uid, st.st_gid));
            }
        }
        entries.push(Entry { name: name.to_os_string(), kind, owner });
        ControlFlow::Continue(())
    })?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Listing { entries, complete })
}

/// [`read`] of a plain path with no link on the way (see [`stat_unlinked`]).
pub(crate) fn read_unlinked(root: &Path, rel: &Path, limits: &Limits) -> io::Result<Option<Option<Vec<u8>>>> {
    let Some(found) = stat_unlinked(root, rel)? else { return Ok(None) };
    let Some((dir, st)) = found else { return Ok(Some(None)) };
    let name = rel.file_name().unwrap_or_default();
    let Some(opened) = open_stated(&dir, name, &st)? else { return Ok(Some(None)) };
    Ok(Some(read_opened(opened, limits)?.map(|(data, _)| data)))
}

/// [`owner`] of a plain path with no link on the way (see [`stat_unlinked`]).
pub(crate) fn owner_unlinked(root: &Path, rel: &Path) -> io::Result<Option<Option<(u32, u32, u32)>>> {
    // A regular file of a kept listing: its owner as the listing found it.
    if let Some(owner) = listed_entry(root, rel, |_, e| e.and_then(|e| e.owner)) {
        return Ok(Some(Some(owner)));
    }
    let Some(found) = stat_unlinked(root, rel)? else { return Ok(None) };
    found.map(|(_, st)| owner_of(&st)).transpose().map(Some)
}

/// [`dir_meta`] of a plain path with no link on the way (see [`stat_unlinked`]).
pub(crate) fn dir_meta_unlinked(root: &Path, rel: &Path) -> io::Result<Option<Option<(u32, u32, u32)>>> {
    let Some(found) = stat_unlinked(root, rel)? else { return Ok(None) };
    found.map(|(_, st)| dir_meta_of(&st, &root.join(rel))).transpose().map(Some)
}

fn read_with_meta(root: &Path, real: &Path, limits: &Limits) -> io::Result<Option<(Vec<u8>, fs::Metadata)>> {
    let Some(opened) = open_regular(root, real, Walk::Read)? else { return Ok(None) };
    read_opened(opened, limits)
}

/// Reads an opened regular file of at most `limits.max_file_bytes`.
fn read_opened((file, meta): (File, fs::Metadata), limits: &Limits) -> io::Result<Option<(Vec<u8>, fs::Metadata)>> {
    let limit = limits.max_file_bytes;
    if meta.len() > limit {
        return Err(Refusal::TooLarge { size: meta.len(), limit }.into_io());
    }
    let size = meta.len();
    let mut data = Vec::with_capacity(size as usize);
    // Read up to the size the file had when opened, and no further: the read that would only
    // say "end of file" is one system call in six of a file's. A file that grew meanwhile
    // reads as it was; one whose size says nothing (procfs, sysfs: 0) or that returned less
    // is read to its end, never more than one byte past the limit.
    let mut file = file.take(limit + 1);
    (&mut file).take(size).read_to_end(&mut data)?;
    if size == 0 || (data.len() as u64) < size {
        file.read_to_end(&mut data)?;
    }
    if data.len() as u64 > limit {
        return Err(Refusal::TooLarge { size: data.len() as u64, limit }.into_io());
    }
    Ok(Some((data, meta)))
}

/// The metadata of a regular file (None if it does not exist), refusing special files.
pub fn meta(root: &Path, real: &Path) -> io::Result<Option<fs::Metadata>> {
    Ok(open_regular(root, real, Walk::Read)?.map(|(_, m)| m))
}

/// A regular file's (mode, uid, gid), looked at by name without opening it (a check reads the
/// owners of many files it never reads): None if it does not exist; special files and links
/// are refused as [`meta`] refuses them.
pub fn owner(root: &Path, real: &Path) -> io::Result<Option<(u32, u32, u32)>> {
    let Some((dir, name)) = parent_in(root, real, Walk::Read)? else { return Ok(None) };
    stat_in(&dir, &name)?.map(|st| owner_of(&st)).transpose()
}

/// A regular file's (mode, uid, gid) from its `fstatat`.
fn owner_of(st: &rustix::fs::Stat) -> io::Result<(u32, u32, u32)> {
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(Refusal::NotRegular(kind_of(kind)).into_io());
    }
    Ok((st.st_mode & 0o7777, st.st_uid, st.st_gid))
}

/// A directory's (mode, uid, gid), without following a link: None if it does not exist; an
/// error if something else is there.
pub fn dir_meta(root: &Path, real: &Path) -> io::Result<Option<(u32, u32, u32)>> {
    let Some((dir, name)) = parent_in(root, real, Walk::Read)? else { return Ok(None) };
    stat_in(&dir, &name)?.map(|st| dir_meta_of(&st, real)).transpose()
}

/// A directory's (mode, uid, gid) from its `fstatat` (`real` names it in the error).
fn dir_meta_of(st: &rustix::fs::Stat, real: &Path) -> io::Result<(u32, u32, u32)> {
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::Directory {
        return Err(io::Error::other(format!("{} is a {}, not a directory", real.display(), kind_of(kind))));
    }
    Ok((st.st_mode & 0o7777, st.st_uid, st.st_gid))
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
pub fn state(root: &Path, real: &Path, with_content: bool, limits: &Limits) -> io::Result<Option<FileState>> {
    let found =
        if with_content { read_with_meta(root, real, limits)? } else { meta(root, real)?.map(|m| (Vec::new(), m)) };
    Ok(found.map(|(content, m)| FileState { content, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() }))
}

/// A snapshot item of the file as it is now. A file that could not be changed (special, or
/// with other names) is refused here, before anything is changed.
pub fn capture(
    root: &Path,
    logical: &str,
    real: &Path,
    with_content: bool,
    limits: &Limits,
) -> io::Result<SnapshotItem> {
    if let Some(m) = meta(root, real)? {
        if m.nlink() > 1 {
            return Err(Refusal::HardLinked(m.nlink()).into_io());
        }
    }
    let s = state(root, real, with_content, limits)?;
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

/// The prefix of the temporary files written beside a file named `name`: `.<name>.posture-`.
fn temp_prefix(name: &OsStr) -> String {
    format!(".{}.posture-", name.to_string_lossy())
}

/// Writes `data` to `real` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory — all relative to the directory reached from the root without
/// following links. Mode and owner are set on the temporary file before the rename, so the
/// target never exists with the wrong permissions. The file it replaces must be regular and
/// have no other names.
pub fn write_atomic(root: &Path, real: &Path, data: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let (dir, name) = parent_in(root, real, Walk::Create)?.ok_or_else(|| io::Error::other("no parent directory"))?;
    if let Some(st) = stat_in(&dir, &name)? {
        changeable(&st)?;
    }
    let tmp = format!("{}{}", temp_prefix(&name), random_hex());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let result = (|| {
        let fd = rustix::fs::openat(&dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600)).map_err(errno)?;
        let mut f = File::from(fd);
        f.write_all(data)?;
        if let Some((uid, gid)) = owner {
            let m = f.metadata()?;
            if m.uid() != uid || m.gid() != gid {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
        }
        f.set_permissions(Permissions::from_mode(mode))?;
        f.sync_all()?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, &name).map_err(errno)?;
        rustix::fs::fsync(&dir).map_err(errno)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Removes the temporary files a write of `real` interrupted by a crash left beside it (only
/// names this module makes: `.<name>.posture-<16 hex>`, regular files). Returns how many.
pub fn sweep_temporaries(root: &Path, real: &Path) -> usize {
    let Ok(Some((dir, name))) = parent_in(root, real, Walk::Change) else { return 0 };
    let prefix = temp_prefix(&name);
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let entry = entry.file_name().to_string_lossy().into_owned();
        let ours = entry
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()));
        let regular = ours
            && stat_in(&dir, OsStr::new(&entry))
                .ok()
                .flatten()
                .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if regular && rustix::fs::unlinkat(&dir, entry.as_str(), AtFlags::empty()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Sets mode and owner (owner only when it differs, so an unprivileged service can still
/// restore modes of its own files), through a descriptor of the regular file itself.
pub fn set_meta(root: &Path, real: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    let (file, m) = open_regular(root, real, Walk::Change)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
    if m.nlink() > 1 {
        return Err(Refusal::HardLinked(m.nlink()).into_io());
    }
    if m.uid() != uid || m.gid() != gid {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.set_permissions(Permissions::from_mode(mode))
}

/// Removes a file the snapshot says did not exist (a missing one is fine).
pub fn remove(root: &Path, real: &Path) -> io::Result<()> {
    let Some((dir, name)) = parent_in(root, real, Walk::Change)? else { return Ok(()) };
    let Some(st) = stat_in(&dir, &name)? else { return Ok(()) };
    changeable(&st)?;
    match rustix::fs::unlinkat(&dir, &name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(e)),
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

    /// Without `openat2` a directory is reached one step at a time, never through a link.
    #[test]
    fn a_directory_is_reached_step_by_step_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc/d")).unwrap();
        std::os::unix::fs::symlink("/etc/d", root.join("etc/link")).unwrap();
        fs::write(root.join("etc/file"), "x").unwrap();
        let got = |rel: &str| match open_dir_stepwise(root, Path::new(rel), false).unwrap() {
            Ok(Some(_)) => "dir",
            Ok(None) => "absent",
            Err(_) => "refused",
        };
        assert_eq!(
            ["etc/d", "etc/none/x", "etc/link", "etc/link/x", "etc/file"].map(got),
            ["dir", "absent", "refused", "refused", "refused"]
        );
        // The root itself, twice under a held root: each listing starts at its first entry.
        let _held = hold_root(root).unwrap();
        for _ in 0..2 {
            let dir = open_dir_stepwise(root, Path::new(""), false).unwrap().unwrap().unwrap();
            assert_eq!(read_listing(&dir).unwrap().entries.len(), 1);
        }
    }

    fn code(e: io::Error) -> &'static str {
        refusal(&e).map(Refusal::code).unwrap_or("other")
    }

    /// A check leaves the access times of what it reads as they were, files and directories,
    /// by each way a read reaches them; and still reads what it may not keep them of.
    #[test]
    fn reads_leave_access_times_alone() {
        use std::time::{Duration, SystemTime};
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        let paths = ["etc/ssh/sshd_config", "etc/login.defs", "etc/ssh", "etc", "control"].map(|p| root.join(p));
        for p in &paths[..2] {
            fs::write(p, "x\n").unwrap();
        }
        fs::write(&paths[4], "x\n").unwrap();
        // Accessed long before their last change: `relatime` updates such an access time on
        // the next read.
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
        for p in &paths {
            let times = fs::FileTimes::new().set_accessed(long_ago).set_modified(SystemTime::now());
            File::open(p).unwrap().set_times(times).unwrap();
        }
        let accessed = |p: &Path| fs::metadata(p).unwrap().accessed().unwrap();
        fs::read(&paths[4]).unwrap();
        if accessed(&paths[4]) == long_ago {
            eprintln!("this filesystem keeps no access times (noatime): nothing to show");
            return;
        }
        let limits = Limits::default();
        // A check's reads, under a held root: a listing, a file read through it, and a file
        // reached by path.
        {
            let _held = hold_root(root).unwrap();
            assert!(list_unlinked(root, Path::new("etc/ssh")).unwrap().unwrap().is_some());
            assert!(read_unlinked(root, Path::new("etc/ssh/sshd_config"), &limits).unwrap().unwrap().is_some());
            assert!(read(root, &paths[1], &limits).unwrap().is_some());
        }
        // The one-directory-at-a-time walk (no `openat2`).
        assert!(open_dir_stepwise(root, Path::new("etc/ssh"), false).unwrap().unwrap().is_some());
        for p in &paths[..4] {
            assert_eq!(accessed(p), long_ago, "{}", p.display());
        }
        // A file of another owner, where the kernel keeps the access time only for the owner and
        // root: read all the same.
        assert!(read(Path::new("/"), Path::new("/etc/passwd"), &limits).unwrap().is_some());
    }

    /// Refused `O_NOATIME` once (as a service not running as root is, for a file it does not
    /// own), a thread opens without it, and stops asking.
    #[test]
    fn a_refused_noatime_is_asked_no_more() {
        let asked = Cell::new(Vec::new());
        let open = |flags: OFlags| {
            let mut a = asked.take();
            a.push(flags.contains(OFlags::NOATIME));
            asked.set(a);
            if flags.contains(OFlags::NOATIME) {
                Err(Errno::PERM)
            } else {
                Ok(flags)
            }
        };
        assert_eq!(keeping_atime(OFlags::RDONLY, open), Ok(OFlags::RDONLY));
        assert_eq!(keeping_atime(OFlags::RDONLY, open), Ok(OFlags::RDONLY));
        assert_eq!(asked.take(), [true, false, false]);
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let fifo = root.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Would block forever without O_NONBLOCK (no writer ever comes).
        assert_eq!(code(read(root, &fifo, &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(set_meta(root, &fifo, 0o600, 0, 0).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(owner(root, &fifo).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(write_atomic(root, &fifo, b"x", 0o644, None).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(
            code(read(Path::new("/dev"), Path::new("/dev/zero"), &Limits::default()).unwrap_err()),
            "ConfigFileNotRegular"
        );
        std::fs::create_dir(root.join("dir")).unwrap();
        assert_eq!(code(read(root, &root.join("dir"), &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
        assert!(read(root, &root.join("missing"), &Limits::default()).unwrap().is_none());
        assert!(read(root, &root.join("no/such/dir/file"), &Limits::default()).unwrap().is_none());
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("big");
        fs::write(&f, vec![b'#'; 101]).unwrap();
        assert_eq!(code(read(t.path(), &f, &Limits { max_file_bytes: 100 }).unwrap_err()), "ConfigFileTooLarge");
        assert_eq!(read(t.path(), &f, &Limits { max_file_bytes: 101 }).unwrap().unwrap().len(), 101);
    }

    /// A directory scanned from the root is never reached through a link, inside the root or
    /// out of it (a link swapped in after its path was resolved is not followed).
    #[test]
    fn a_scan_never_follows_a_link() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        fs::create_dir_all(root.join("etc/real")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("etc/real/a.conf"), "").unwrap();
        fs::write(outside.join("secret"), "").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/out")).unwrap();
        std::os::unix::fs::symlink("real", root.join("etc/in")).unwrap();
        let all = |_: &str| true;
        let found = scan_unlinked(&root, Path::new("etc/real"), &all, 10).unwrap().unwrap().unwrap();
        assert_eq!(found, vec![("a.conf".to_string(), FileType::RegularFile)]);
        assert!(scan_unlinked(&root, Path::new("etc/out"), &all, 10).unwrap().is_none());
        assert!(scan_unlinked(&root, Path::new("etc/in"), &all, 10).unwrap().is_none());
        assert!(scan_unlinked(&root, Path::new("etc/none"), &all, 10).unwrap().unwrap().is_none());
        let none = |n: &str| n != "a.conf";
        assert!(scan_unlinked(&root, Path::new("etc/real"), &none, 10).unwrap().unwrap().unwrap().is_empty());
    }

    /// A name is absent by its directory's listing only when no entry could be it on a
    /// case-insensitive filesystem; otherwise it is looked up.
    #[test]
    fn a_listing_says_absent_only_what_no_filesystem_could_find() {
        let entry = |name: &str| Entry { name: name.into(), kind: FileType::RegularFile, owner: None };
        let listing = Listing { entries: vec![entry("GRUB.CFG"), entry("issue")], complete: true };
        assert!(listing.lacks(OsStr::new("motd")));
        assert!(!listing.lacks(OsStr::new("grub.cfg")), "vfat and casefolded directories find it");
        assert!(!listing.lacks(OsStr::new("Issue")));
        assert!(!listing.lacks(OsStr::new("issue")), "present");
        assert!(!listing.lacks(OsStr::new("m\u{f6}td")), "a name outside ASCII is looked up");
        let unicode = Listing { entries: vec![entry("\u{212a}ey")], complete: true }; // KELVIN SIGN folds to k
        assert!(!unicode.lacks(OsStr::new("key")));
        let cut = Listing { entries: vec![entry("issue")], complete: false };
        assert!(!cut.lacks(OsStr::new("motd")));
    }

    /// A file is read up to the size it had when opened (no read only to find its end), whole
    /// at every size; one whose size says nothing (procfs: 0) is read to its end.
    #[test]
    fn files_read_whole_at_any_size() {
        let t = tempfile::tempdir().unwrap();
        for n in [0usize, 1, 4095, 4096, 8193, 100_000] {
            let f = t.path().join(format!("f{n}"));
            let content: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            fs::write(&f, &content).unwrap();
            assert_eq!(read(t.path(), &f, &Limits::default()).unwrap().unwrap(), content, "{n} bytes");
        }
        let proc_self = Path::new("/proc/self");
        assert_eq!(fs::metadata(proc_self.join("status")).unwrap().len(), 0);
        let status = read(proc_self, &proc_self.join("status"), &Limits::default()).unwrap().unwrap();
        assert!(status.starts_with(b"Name:"), "{}", String::from_utf8_lossy(&status));
    }

    #[test]
    fn hard_linked_files_are_never_changed() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::write(&a, "x").unwrap();
        fs::hard_link(&a, &b).unwrap();
        let before = fs::metadata(&a).unwrap().mode();
        assert_eq!(code(set_meta(t.path(), &a, 0o600, 0, 0).unwrap_err()), "ConfigFileHardLinked");
        assert_eq!(code(write_atomic(t.path(), &a, b"y", 0o644, None).unwrap_err()), "ConfigFileHardLinked");
        assert_eq!(code(remove(t.path(), &a).unwrap_err()), "ConfigFileHardLinked");
        assert_eq!(code(capture(t.path(), "/a", &a, true, &Limits::default()).unwrap_err()), "ConfigFileHardLinked");
        assert_eq!(fs::metadata(&b).unwrap().mode(), before);
        assert_eq!(fs::read(&b).unwrap(), b"x");
    }

    #[test]
    fn a_link_put_into_the_path_is_never_followed() {
        a_link_put_into_the_path(false);
    }

    /// The same while a check holds the root (one call per path, directories kept open).
    #[test]
    fn a_link_put_into_the_path_of_a_held_root_is_never_followed() {
        a_link_put_into_the_path(true);
    }

    fn a_link_put_into_the_path(held: bool) {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("shadow"), "secret").unwrap();
        fs::set_permissions(outside.join("shadow"), Permissions::from_mode(0o600)).unwrap();
        let _held = held.then(|| hold_root(&root).unwrap());
        // The final name a link: refused.
        std::os::unix::fs::symlink(outside.join("shadow"), root.join("etc/link")).unwrap();
        assert_eq!(code(read(&root, &root.join("etc/link"), &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(owner(&root, &root.join("etc/link")).unwrap_err()), "ConfigFileNotRegular");
        // A directory of the path swapped for a link after resolution: refused for every
        // operation, and the file outside is untouched.
        fs::remove_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        let target = root.join("etc/shadow");
        if held {
            // A check reads the directory as it first opened it (now removed): nothing there,
            // and never the file outside.
            assert_eq!(read(&root, &target, &Limits::default()).unwrap(), None);
            assert_eq!(owner(&root, &target).unwrap(), None);
        } else {
            assert_eq!(code(read(&root, &target, &Limits::default()).unwrap_err()), "ConfigFileNotRegular");
            assert_eq!(code(owner(&root, &target).unwrap_err()), "ConfigFileNotRegular");
        }
        assert_eq!(code(set_meta(&root, &target, 0o644, 0, 0).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(write_atomic(&root, &target, b"owned", 0o644, None).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(code(remove(&root, &target).unwrap_err()), "ConfigFileNotRegular");
        assert_eq!(fs::read(outside.join("shadow")).unwrap(), b"secret");
        assert_eq!(fs::metadata(outside.join("shadow")).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn writes_create_missing_directories_and_replace_atomically() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("etc/sysctl.d/99-x.conf");
        write_atomic(t.path(), &f, b"a = 1\n", 0o640, None).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"a = 1\n");
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
        remove(t.path(), &f).unwrap();
        assert!(!f.exists());
        remove(t.path(), &f).unwrap();
    }

    #[test]
    fn interrupted_writes_leave_nothing_after_a_sweep() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("sshd_config");
        fs::write(&real, "a").unwrap();
        fs::write(t.path().join(".sshd_config.posture-0123456789abcdef"), "partial").unwrap();
        fs::write(t.path().join(".sshd_config.posture-keep"), "not ours").unwrap();
        fs::write(t.path().join(".login.defs.posture-0123456789abcdef"), "another file's").unwrap();
        assert_eq!(sweep_temporaries(t.path(), &real), 1);
        let mut left: Vec<String> =
            fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [".login.defs.posture-0123456789abcdef", ".sshd_config.posture-keep", "sshd_config"]);
    }
}

//! Configuration files as ordered directives: reading the effective value of each key the way
//! the software does (sshd: first match outside `Match`, following `Include`; login.defs,
//! redis.conf, sysctl: last assignment wins), and planning an edit that changes exactly the line
//! in effect — comments, order and every other byte of the file are kept exactly (files are
//! handled as bytes: a line that is not UTF-8 is read leniently and written back untouched).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use model::Dialect;

use super::files::{self, Limits};
use super::paths::{glob_in_root, glob_named_in_root, read_in_root, resolve_in_root};

/// One file of a configuration set.
#[derive(Debug)]
pub struct Source {
    /// The path inside the root, as configuration names it (snapshot key).
    pub logical: String,
    /// The real path on disk.
    pub real: PathBuf,
    /// Its bytes, or None if it does not exist.
    pub text: Option<Vec<u8>>,
}

/// One directive line.
#[derive(Debug)]
pub struct Entry {
    src: usize,
    line: usize,
    /// The key, normalised (lower case for case-insensitive dialects).
    pub key: String,
    /// The value as written (trimmed).
    pub value: String,
    in_match: bool,
}

/// The files a dialect reads for one configuration, in reading order, and their directives.
#[derive(Debug)]
pub struct ConfigSet {
    dialect: Dialect,
    /// Files in reading order; the first is the main file.
    pub sources: Vec<Source>,
    entries: Vec<Entry>,
}

/// A planned change to one file.
#[derive(Debug, PartialEq, Eq)]
pub struct Edit {
    /// The path inside the root.
    pub logical: String,
    /// The real path.
    pub real: PathBuf,
    /// The whole new content.
    pub text: Vec<u8>,
}

const SYSCTL_DIRS: [&str; 5] =
    ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];
/// modprobe.d(5): a file in an earlier directory hides one of the same name in a later one.
const MODPROBE_DIRS: [&str; 5] =
    ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"];

/// Files as the steps of a change planned so far leave them (the real path, so that two names
/// of one file are one file → the whole new content), read in place of the files on disk: each
/// step is planned on top of the ones before it, as apply finds them written.
pub type Pending = BTreeMap<PathBuf, Vec<u8>>;

/// The `*.conf` files of `dirs` by name, each from the first directory that has it, in name
/// order: how systemd-sysctl and modprobe read their drop-in directories (a file `pending`
/// creates included).
fn drop_ins(root: &Path, dirs: &[&str], pending: &Pending) -> Vec<String> {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for dir in dirs {
        // The entries' own names: a drop-in that is a symbolic link is read under its name.
        let on_disk = glob_named_in_root(root, &format!("{dir}/*.conf")).into_iter().map(|(name, _)| name);
        // Where the directory really is matters only to files a change plans.
        let real_dir = if pending.is_empty() { None } else { resolve_in_root(root, dir).ok() };
        let planned = pending
            .keys()
            .filter(|k| real_dir.is_some() && k.parent() == real_dir.as_deref())
            .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|name| name.ends_with(".conf"));
        for name in on_disk.chain(planned) {
            by_name.entry(name.clone()).or_insert_with(|| format!("{dir}/{name}"));
        }
    }
    by_name.into_values().collect()
}
/// How deep sshd's `Include`s are followed (sshd itself stops at 16).
pub const MAX_INCLUDE_DEPTH: usize = 8;

fn read(root: &Path, logical: &str, limits: &Limits, pending: &Pending) -> io::Result<Source> {
    let in_context = |e: io::Error| io::Error::new(e.kind(), Context(logical.to_string(), e));
    let (real, text) = if pending.is_empty() {
        read_in_root(root, logical, limits).map_err(in_context)?
    } else {
        let real = resolve_in_root(root, logical).map_err(in_context)?;
        let text = match pending.get(&real) {
            Some(planned) => Some(planned.clone()),
            None => files::read(root, &real, limits).map_err(in_context)?,
        };
        (real, text)
    };
    Ok(Source { logical: logical.to_string(), real, text })
}

/// An error about one file of a set, naming it (the refusal inside stays reachable).
#[derive(Debug)]
pub struct Context(pub String, pub io::Error);

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

/// The lines of a file as bytes (split on `\n`, so a final newline gives a last empty line).
fn lines_of(text: &[u8]) -> Vec<&[u8]> {
    text.split(|b| *b == b'\n').collect()
}

impl ConfigSet {
    /// Loads the configuration of `dialect` whose main file is `file` (sysctl ignores `file`).
    pub fn load(root: &Path, dialect: Dialect, file: &str, limits: &Limits) -> io::Result<ConfigSet> {
        ConfigSet::load_over(root, dialect, file, limits, &Pending::new())
    }

    /// [`ConfigSet::load`], with the files of `pending` as it holds them.
    pub fn load_over(
        root: &Path,
        dialect: Dialect,
        file: &str,
        limits: &Limits,
        pending: &Pending,
    ) -> io::Result<ConfigSet> {
        let mut set = ConfigSet { dialect, sources: Vec::new(), entries: Vec::new() };
        match dialect {
            Dialect::Sysctl => {
                let files = drop_ins(root, &SYSCTL_DIRS, pending).into_iter().chain(["/etc/sysctl.conf".to_string()]);
                for logical in files {
                    set.add(read(root, &logical, limits, pending)?, false);
                }
            }
            Dialect::Modprobe => {
                for logical in drop_ins(root, &MODPROBE_DIRS, pending) {
                    set.add(read(root, &logical, limits, pending)?, false);
                }
            }
            Dialect::Sshd => set.add_sshd(root, file, false, 0, limits, pending)?,
            Dialect::EqKv => {
                set.add(read(root, file, limits, pending)?, false);
                for logical in drop_ins(root, &[&format!("{file}.d")], pending) {
                    set.add(read(root, &logical, limits, pending)?, false);
                }
            }
            Dialect::SpaceKv | Dialect::Redis => set.add(read(root, file, limits, pending)?, false),
        }
        Ok(set)
    }

    fn add(&mut self, src: Source, inherited_match: bool) {
        let idx = self.sources.len();
        let mut in_match = inherited_match;
        if let Some(text) = &src.text {
            for (line, l) in lines_of(text).into_iter().enumerate() {
                if let Some((key, value)) = parse_line(self.dialect, &String::from_utf8_lossy(l)) {
                    if self.dialect == Dialect::Sshd && key == "match" {
                        in_match = true;
                    }
                    self.entries.push(Entry { src: idx, line, key, value, in_match });
                }
            }
        }
        self.sources.push(src);
    }

    fn add_sshd(
        &mut self,
        root: &Path,
        file: &str,
        inherited_match: bool,
        depth: usize,
        limits: &Limits,
        pending: &Pending,
    ) -> io::Result<()> {
        let src = read(root, file, limits, pending)?;
        let idx = self.sources.len();
        let lines: Vec<String> = lines_of(src.text.as_deref().unwrap_or_default())
            .into_iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        self.sources.push(src);
        let mut in_match = inherited_match;
        for (line, l) in lines.iter().enumerate() {
            let Some((key, value)) = parse_line(Dialect::Sshd, l) else {
                continue;
            };
            if key == "match" {
                in_match = true;
            }
            let include = key == "include";
            self.entries.push(Entry { src: idx, line, key, value: value.clone(), in_match });
            if include && depth < MAX_INCLUDE_DEPTH {
                for logical in sshd_includes(root, &value) {
                    self.add_sshd(root, &logical, in_match, depth + 1, limits, pending)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the main file exists.
    pub fn exists(&self) -> bool {
        self.sources.iter().any(|s| s.text.is_some())
    }

    fn norm(&self, key: &str) -> String {
        match self.dialect {
            Dialect::Sshd | Dialect::Redis => key.to_ascii_lowercase(),
            Dialect::Sysctl => key.replace('/', "."),
            Dialect::SpaceKv | Dialect::EqKv | Dialect::Modprobe => key.to_string(),
        }
    }

    /// The entry in effect for `key`.
    pub fn effective(&self, key: &str) -> Option<&Entry> {
        let key = self.norm(key);
        let mut candidates = self.entries.iter().filter(|e| e.key == key && !e.in_match);
        match self.dialect {
            Dialect::Sshd | Dialect::Modprobe => candidates.next(),
            _ => candidates.next_back(),
        }
    }

    /// The effective value of every key.
    #[cfg(test)]
    pub fn values(&self) -> BTreeMap<String, String> {
        self.sourced_values().into_iter().map(|(k, (v, _))| (k, v)).collect()
    }

    /// The effective value of every key, with the line that sets it (`/etc/ssh/sshd_config:4`).
    pub fn sourced_values(&self) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for e in self.entries.iter().filter(|e| !e.in_match && e.key != "include" && e.key != "match") {
            let sourced = || (e.value.clone(), format!("{}:{}", self.sources[e.src].logical, e.line + 1));
            match self.dialect {
                Dialect::Sshd | Dialect::Modprobe => {
                    out.entry(e.key.clone()).or_insert_with(sourced);
                }
                _ => {
                    out.insert(e.key.clone(), sourced());
                }
            }
        }
        out
    }

    /// Plans setting `key` to `value`: rewrite the line in effect, or add one where it takes
    /// effect. For sysctl, an effective line outside /etc (a vendor file) is left alone and a
    /// drop-in that sorts last is written instead.
    pub fn plan_set(&self, root: &Path, key: &str, value: &str) -> io::Result<Edit> {
        let directive = match self.dialect {
            Dialect::Sysctl => format!("{key} = {value}"),
            Dialect::Modprobe => modprobe_line(key, value)?,
            Dialect::EqKv => format!("{key}={value}"),
            _ => format!("{key} {value}"),
        };
        let drop_in_dialect = matches!(self.dialect, Dialect::Sysctl | Dialect::Modprobe);
        if let Some(e) = self.effective(key) {
            let src = &self.sources[e.src];
            if !drop_in_dialect || src.logical.starts_with("/etc/") {
                let mut lines = lines_of(src.text.as_deref().unwrap_or_default());
                let old = lines[e.line];
                let indent = &old[..old.iter().take_while(|b| b.is_ascii_whitespace()).count()];
                // A CRLF file keeps its line ending on the edited line too.
                let eol: &[u8] = if old.ends_with(b"\r") { b"\r" } else { b"" };
                let new_line = [indent, directive.as_bytes(), eol].concat();
                lines[e.line] = &new_line;
                return Ok(Edit { logical: src.logical.clone(), real: src.real.clone(), text: lines.join(&b'\n') });
            }
        }
        if self.dialect == Dialect::Modprobe {
            // The first `install` of a module wins: a drop-in of posture's sorts before the
            // vendor files that may set it.
            let logical = format!("/etc/modprobe.d/00-posture-{key}.conf");
            let real = resolve_in_root(root, &logical)?;
            let text =
                format!("# Written by posture: a repair set this. Its rollback removes the file.\n{directive}\n");
            return Ok(Edit { logical, real, text: text.into_bytes() });
        }
        if self.dialect == Dialect::Sysctl {
            let logical = format!("/etc/sysctl.d/99-zz-posture-{}.conf", key.replace('/', "."));
            let real = resolve_in_root(root, &logical)?;
            let text =
                format!("# Written by posture: a repair set this key. Its rollback removes the file.\n{directive}\n");
            return Ok(Edit { logical, real, text: text.into_bytes() });
        }
        let main = &self.sources[0];
        let text = main.text.as_deref().unwrap_or_default();
        let mut lines: Vec<&[u8]> = if text.is_empty() { Vec::new() } else { lines_of(text) };
        // sshd: a line added after the first Include or Match could be shadowed or scoped; put it
        // before them. Elsewhere the last line wins, so append.
        let at = if self.dialect == Dialect::Sshd {
            self.entries.iter().find(|e| e.src == 0 && (e.key == "include" || e.key == "match")).map(|e| e.line)
        } else {
            None
        };
        match at {
            Some(i) => lines.insert(i, directive.as_bytes()),
            None => {
                if lines.last().is_some_and(|l| l.is_empty()) {
                    lines.pop();
                }
                lines.push(directive.as_bytes());
                lines.push(b"");
            }
        }
        Ok(Edit { logical: main.logical.clone(), real: main.real.clone(), text: lines.join(&b'\n') })
    }
}

/// The files an sshd `Include` line names, in the order sshd reads them: each pattern (relative
/// ones are relative to /etc/ssh, sshd_config(5)) expanded inside the root, as paths inside it.
pub fn sshd_includes(root: &Path, value: &str) -> Vec<String> {
    value
        .split_whitespace()
        .flat_map(|pattern| {
            let pattern = if pattern.starts_with('/') { pattern.to_string() } else { format!("/etc/ssh/{pattern}") };
            glob_in_root(root, &pattern)
        })
        .map(|real| logical_of(root, &real))
        .collect()
}

fn logical_of(root: &Path, real: &Path) -> String {
    format!("/{}", real.strip_prefix(root).unwrap_or(real).display())
}

/// A module name as modprobe compares it (`usb-storage` is `usb_storage`); None for what is not
/// one (a key of another shape never reaches a file).
fn module_name(name: &str) -> Option<String> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| name.replace('-', "_"))
}

/// The modprobe.d line of key `MODULE.install` (value: the command) or `MODULE.blacklist`.
fn modprobe_line(key: &str, value: &str) -> io::Result<String> {
    let refused = || io::Error::other(format!("{key} is not MODULE.install or MODULE.blacklist"));
    let (module, command) = key.rsplit_once('.').ok_or_else(refused)?;
    let module = module_name(module).ok_or_else(refused)?;
    match command {
        "install" => Ok(format!("install {module} {value}")),
        "blacklist" => Ok(format!("blacklist {module}")),
        _ => Err(refused()),
    }
}

/// Splits one line into (normalised key, value), or None for blanks and comments.
pub fn parse_line(dialect: Dialect, line: &str) -> Option<(String, String)> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') || (dialect == Dialect::Sysctl && l.starts_with(';')) {
        return None;
    }
    match dialect {
        Dialect::Modprobe => {
            let mut words = l.split_whitespace();
            let (command, module) = (words.next()?, module_name(words.next()?)?);
            match command {
                "install" => Some((format!("{module}.install"), words.collect::<Vec<_>>().join(" "))),
                "blacklist" => Some((format!("{module}.blacklist"), "yes".to_string())),
                _ => None,
            }
        }
        Dialect::EqKv => {
            if l.starts_with('[') {
                return None;
            }
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
        }
        Dialect::Sysctl => {
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_start_matches('-').trim().replace('/', ".");
            (!k.is_empty()).then(|| (k, v.trim().to_string()))
        }
        Dialect::Sshd | Dialect::Redis | Dialect::SpaceKv => {
            let split =
                l.find(|c: char| c.is_whitespace() || (dialect == Dialect::Sshd && c == '=')).unwrap_or(l.len());
            let (k, rest) = l.split_at(split);
            let mut v = rest.trim_start();
            if dialect == Dialect::Sshd {
                v = v.strip_prefix('=').unwrap_or(v).trim();
                if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                    v = &v[1..v.len() - 1];
                }
            }
            let k = if dialect == Dialect::SpaceKv { k.to_string() } else { k.to_ascii_lowercase() };
            Some((k, v.trim_end().to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let full = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        t
    }

    #[test]
    fn a_drop_in_that_is_a_symbolic_link_is_read_under_its_own_name() {
        let t = root_with(&[("/opt/fwd.conf", "net.ipv4.ip_forward = 1\n"), ("/etc/sysctl.d/.keep", "")]);
        std::os::unix::fs::symlink("/opt/fwd.conf", t.path().join("etc/sysctl.d/50-fwd.conf")).unwrap();
        let set = ConfigSet::load(t.path(), Dialect::Sysctl, "", &Limits::default()).unwrap();
        assert_eq!(set.values()["net.ipv4.ip_forward"], "1");
        assert_eq!(set.sources[0].logical, "/etc/sysctl.d/50-fwd.conf");
    }

    #[test]
    fn sshd_first_match_wins_across_includes_and_ignores_match_blocks() {
        let t = root_with(&[
            ("/etc/ssh/sshd_config", "# header\nInclude /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nMatch User bob\n  X11Forwarding no\n"),
            ("/etc/ssh/sshd_config.d/10-a.conf", "MaxAuthTries 3\n"),
            ("/etc/ssh/sshd_config.d/20-b.conf", "maxauthtries=5\nPermitRootLogin no\n"),
        ]);
        let set = ConfigSet::load(t.path(), Dialect::Sshd, "/etc/ssh/sshd_config", &Limits::default()).unwrap();
        let v = set.values();
        assert_eq!(v.get("maxauthtries").map(String::as_str), Some("3"));
        assert_eq!(v.get("permitrootlogin").map(String::as_str), Some("no"), "the include comes first");
        assert_eq!(v.get("x11forwarding"), None, "Match blocks do not count");
        // Setting the key edits the file whose line is in effect.
        let edit = set.plan_set(t.path(), "PermitRootLogin", "no").unwrap();
        assert_eq!(edit.logical, "/etc/ssh/sshd_config.d/20-b.conf");
    }

    #[test]
    fn sshd_edit_rewrites_in_place_or_inserts_before_match() {
        let text = "# keep me\n  PermitRootLogin yes # old\nPort 22\nMatch User x\n  PasswordAuthentication yes\n";
        let t = root_with(&[("/etc/ssh/sshd_config", text)]);
        let set = ConfigSet::load(t.path(), Dialect::Sshd, "/etc/ssh/sshd_config", &Limits::default()).unwrap();
        let e = set.plan_set(t.path(), "PermitRootLogin", "no").unwrap();
        assert_eq!(
            String::from_utf8(e.text).unwrap(),
            "# keep me\n  PermitRootLogin no\nPort 22\nMatch User x\n  PasswordAuthentication yes\n"
        );
        let e = set.plan_set(t.path(), "MaxAuthTries", "4").unwrap();
        assert_eq!(String::from_utf8(e.text).unwrap(), "# keep me\n  PermitRootLogin yes # old\nPort 22\nMaxAuthTries 4\nMatch User x\n  PasswordAuthentication yes\n");
    }

    #[test]
    fn last_wins_dialects_edit_the_last_occurrence_or_append() {
        let t =
            root_with(&[("/etc/login.defs", "PASS_MAX_DAYS 10\n#PASS_MAX_DAYS 5\nPASS_MAX_DAYS\t99999\nUMASK 022")]);
        let set = ConfigSet::load(t.path(), Dialect::SpaceKv, "/etc/login.defs", &Limits::default()).unwrap();
        assert_eq!(set.values()["PASS_MAX_DAYS"], "99999");
        let e = set.plan_set(t.path(), "PASS_MAX_DAYS", "365").unwrap();
        assert_eq!(
            String::from_utf8(e.text).unwrap(),
            "PASS_MAX_DAYS 10\n#PASS_MAX_DAYS 5\nPASS_MAX_DAYS 365\nUMASK 022"
        );
        let e = set.plan_set(t.path(), "PASS_MIN_DAYS", "1").unwrap();
        assert_eq!(
            String::from_utf8(e.text).unwrap(),
            "PASS_MAX_DAYS 10\n#PASS_MAX_DAYS 5\nPASS_MAX_DAYS\t99999\nUMASK 022\nPASS_MIN_DAYS 1\n"
        );
    }

    #[test]
    fn sysctl_reads_every_directory_in_order_and_sysctl_conf_last() {
        let t = root_with(&[
            ("/usr/lib/sysctl.d/50-default.conf", "net.ipv4.ip_forward = 1\nkernel.randomize_va_space=1\n"),
            (
                "/etc/sysctl.d/50-default.conf",
                "; overrides the vendor file of the same name\nkernel.randomize_va_space = 2\n",
            ),
            ("/etc/sysctl.d/60-net.conf", "net/ipv4/conf/all/accept_redirects = 1\n"),
            ("/etc/sysctl.conf", "#net.ipv4.ip_forward=1\n"),
        ]);
        let set = ConfigSet::load(t.path(), Dialect::Sysctl, "", &Limits::default()).unwrap();
        let v = set.values();
        assert_eq!(v.get("kernel.randomize_va_space").map(String::as_str), Some("2"));
        assert_eq!(v.get("net.ipv4.ip_forward"), None, "the /etc file of the same name masks the vendor file");
        assert_eq!(v.get("net.ipv4.conf.all.accept_redirects").map(String::as_str), Some("1"));
        let e = set.plan_set(t.path(), "net.ipv4.conf.all.accept_redirects", "0").unwrap();
        assert_eq!(e.logical, "/etc/sysctl.d/60-net.conf");
        assert_eq!(String::from_utf8(e.text).unwrap(), "net.ipv4.conf.all.accept_redirects = 0\n");
        let e = set.plan_set(t.path(), "net.ipv4.ip_forward", "0").unwrap();
        assert_eq!(e.logical, "/etc/sysctl.d/99-zz-posture-net.ipv4.ip_forward.conf");
    }

    #[test]
    fn bytes_outside_the_edited_line_are_kept_exactly() {
        // A Latin-1 comment (not UTF-8) and CRLF line endings survive an edit of another line.
        let text: &[u8] = b"# r\xe9glage \xa9 2024\r\nPASS_MAX_DAYS 99999\r\nUMASK 022\r\n";
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("login.defs"), text).unwrap();
        let set = ConfigSet::load(t.path(), Dialect::SpaceKv, "/login.defs", &Limits::default()).unwrap();
        assert_eq!(set.values()["PASS_MAX_DAYS"], "99999");
        let e = set.plan_set(t.path(), "PASS_MAX_DAYS", "90").unwrap();
        assert_eq!(e.text, b"# r\xe9glage \xa9 2024\r\nPASS_MAX_DAYS 90\r\nUMASK 022\r\n");
    }

    #[test]
    fn modprobe_reads_drop_ins_in_name_order_and_the_first_install_wins() {
        let t = root_with(&[
            ("/lib/modprobe.d/10-vendor.conf", "install usb-storage /sbin/modprobe --ignore-install usb-storage\n"),
            ("/etc/modprobe.d/20-local.conf", "install usb_storage /bin/false\nblacklist usb-storage\noptions x y=1\n"),
            ("/lib/modprobe.d/20-local.conf", "install cramfs /bin/true\n"),
        ]);
        let set = ConfigSet::load(t.path(), Dialect::Modprobe, "", &Limits::default()).unwrap();
        let values = set.values();
        assert_eq!(values["usb_storage.install"], "/sbin/modprobe --ignore-install usb-storage", "10- sorts first");
        assert_eq!(values["usb_storage.blacklist"], "yes");
        assert!(!values.contains_key("cramfs.install"), "/etc's 20-local.conf hides /lib's");
        // Not set in /etc: a drop-in of posture's, named to be read first (the first install
        // wins, and vendor files are never edited).
        let edit = set.plan_set(t.path(), "cramfs.install", "/bin/false").unwrap();
        assert_eq!(edit.logical, "/etc/modprobe.d/00-posture-cramfs.install.conf");
        let text = String::from_utf8(edit.text).unwrap();
        assert!(text.ends_with("install cramfs /bin/false\n"), "{text:?}");
        let edit = set.plan_set(t.path(), "usb_storage.install", "/bin/false").unwrap();
        assert_eq!(edit.logical, "/etc/modprobe.d/00-posture-usb_storage.install.conf", "over the vendor's line");
        let edit = set.plan_set(t.path(), "usb_storage.blacklist", "yes").unwrap();
        assert_eq!(edit.logical, "/etc/modprobe.d/20-local.conf", "the line in effect, edited in place");
        assert!(set.plan_set(t.path(), "x/../y.install", "/bin/false").is_err());
        assert!(set.plan_set(t.path(), "cramfs.options", "x").is_err());
    }

    #[test]
    fn key_equals_value_files_read_their_drop_ins_last_and_are_edited_as_key_equals_value() {
        let t = root_with(&[
            ("/etc/security/pwquality.conf", "# defaults\n# minlen = 9\nminlen = 8\nenforce_for_root\n"),
            ("/etc/security/pwquality.conf.d/50-local.conf", "[section]\nminclass=3\nminlen = 12\n"),
        ]);
        let set = ConfigSet::load(t.path(), Dialect::EqKv, "/etc/security/pwquality.conf", &Limits::default()).unwrap();
        let values = set.values();
        assert_eq!((values["minlen"].as_str(), values["minclass"].as_str()), ("12", "3"));
        assert_eq!(values["enforce_for_root"], "", "a flag is present with no value");
        let edit = set.plan_set(t.path(), "minlen", "14").unwrap();
        assert_eq!(edit.logical, "/etc/security/pwquality.conf.d/50-local.conf", "the assignment in effect");
        assert_eq!(String::from_utf8(edit.text).unwrap(), "[section]\nminclass=3\nminlen=14\n");
        let edit = set.plan_set(t.path(), "difok", "5").unwrap();
        assert!(
            String::from_utf8(edit.text).unwrap().ends_with("enforce_for_root\ndifok=5\n"),
            "appended to the main file"
        );
    }

    #[test]
    fn redis_bind_keeps_all_addresses() {
        let t = root_with(&[("/etc/redis/redis.conf", "bind 127.0.0.1 -::1\nport 6379\nbind 0.0.0.0\n")]);
        let set = ConfigSet::load(t.path(), Dialect::Redis, "/etc/redis/redis.conf", &Limits::default()).unwrap();
        assert_eq!(set.values()["bind"], "0.0.0.0");
        let e = set.plan_set(t.path(), "bind", "10.0.0.5").unwrap();
        assert_eq!(String::from_utf8(e.text).unwrap(), "bind 127.0.0.1 -::1\nport 6379\nbind 10.0.0.5\n");
    }
}

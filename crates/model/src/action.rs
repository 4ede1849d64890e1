//! What a repair does and what a snapshot holds, as data shared by the catalog (which writes
//! steps), the engine (which stores snapshots) and the connectors (which carry steps out).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A normalised configuration document: setting name → current value. A key that is absent
/// means "not set". Connectors produce it; catalog rules read it.
pub type Document = BTreeMap<String, String>;

/// How a configuration file spells its directives, and which occurrence wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenSSH `sshd_config`: `Keyword value`, keywords case-insensitive, the **first**
    /// occurrence outside `Match` wins, `Include` is followed.
    Sshd,
    /// Whitespace `KEY value` (login.defs), keys case-sensitive, the last occurrence wins.
    SpaceKv,
    /// `redis.conf`: `keyword args…`, keywords case-insensitive, the last occurrence wins.
    Redis,
    /// sysctl: `key = value` across sysctl.d and sysctl.conf, the last assignment wins.
    Sysctl,
    /// `key=value` files (spaces around `=` allowed, `[section]` lines ignored), the main file
    /// then `FILE.d/*.conf` in name order, the last assignment wins, keys case-sensitive:
    /// pwquality.conf, faillock.conf, pwhistory.conf, /etc/default/useradd. Edits write
    /// `key=value`, which every one of them reads.
    EqKv,
    /// modprobe.d: `install MODULE COMMAND…` and `blacklist MODULE` across the modprobe.d
    /// directories, files in name order, the first `install` of a module wins. Keys are
    /// `MODULE.install` and `MODULE.blacklist` (`-` in a module name is `_`, as for modprobe).
    Modprobe,
}

/// How a repaired setting takes effect on a live system, as the catalog declares it: each part
/// names an operation compiled into posture and the agent, never a command from data, so no
/// catalog file and no server can make an agent run something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    /// The service's own checker, run on the candidate before it replaces the file.
    #[serde(default)]
    pub validate: Option<Checker>,
    /// How the running system takes the change.
    pub apply: Apply,
    /// How the value in effect is read back to verify the change.
    #[serde(default)]
    pub live: Option<LiveReader>,
}

/// A service's own configuration checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checker {
    /// `sshd -t -f CANDIDATE`, the candidate's includes re-rooted.
    Sshd,
}

/// How the running system takes a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// Nothing to do: what is changed is what is read (a file's mode).
    Immediate,
    /// Read by its programs when they next run (login.defs: accounts created and passwords
    /// changed afterwards); the result says so.
    NextUse,
    /// sshd re-reads its configuration: SIGHUP to its PID (the instance's `PidFile`) or
    /// `systemctl reload` where systemd runs it. Only after the candidate was validated.
    ReloadSshd,
    /// The keys changed are written to `/proc/sys` (sysctl -w).
    SysctlWrite,
    /// Redis takes the directives changed with `CONFIG SET`.
    RedisConfigSet,
}

/// How the value in effect is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveReader {
    /// `sshd -T`: the effective configuration.
    SshdEffective,
    /// `/proc/sys/…`.
    ProcSys,
    /// Redis `CONFIG GET`.
    RedisConfigGet,
}

impl Effect {
    /// Whether the steps can take effect this way: each apply and reader serves one dialect,
    /// set_mode takes effect at once, and sshd is never reloaded with a config not validated.
    pub fn check(&self, steps: &[Step]) -> Result<(), String> {
        let dialect =
            |d: Dialect| steps.iter().all(|s| matches!(s, Step::SetDirective { dialect, .. } if *dialect == d));
        let modes = steps.iter().all(|s| matches!(s, Step::SetMode { .. }));
        let apply_fits = match self.apply {
            Apply::Immediate => modes,
            Apply::NextUse => steps.iter().all(|s| {
                matches!(s, Step::SetDirective { dialect: Dialect::SpaceKv | Dialect::EqKv | Dialect::Modprobe, .. })
            }),
            Apply::ReloadSshd => dialect(Dialect::Sshd) && self.validate == Some(Checker::Sshd),
            Apply::SysctlWrite => dialect(Dialect::Sysctl),
            Apply::RedisConfigSet => dialect(Dialect::Redis),
        };
        if !apply_fits {
            return Err(format!(
                "apply = {:?} does not fit the steps (or sshd would be reloaded without validate = \"sshd\")",
                self.apply
            ));
        }
        let live_fits = match self.live {
            None => true,
            Some(LiveReader::SshdEffective) => self.apply == Apply::ReloadSshd,
            Some(LiveReader::ProcSys) => self.apply == Apply::SysctlWrite,
            Some(LiveReader::RedisConfigGet) => self.apply == Apply::RedisConfigSet,
        };
        let validate_fits = match self.validate {
            None => true,
            Some(Checker::Sshd) => dialect(Dialect::Sshd),
        };
        if !live_fits || !validate_fits {
            return Err(format!(
                "validate = {:?} and live = {:?} do not fit apply = {:?}",
                self.validate, self.live, self.apply
            ));
        }
        Ok(())
    }
}

/// What a task changes: its steps (parameters substituted) and, for a host item, how they take
/// effect on a live system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The steps.
    pub steps: Vec<Step>,
    /// How they take effect (None: a cloud change, which takes effect through its API).
    pub effect: Option<Effect>,
}

/// The prefix of what is read from, or restored to, the running system rather than a file: a
/// document key `live:sshd.permitrootlogin` is the value sshd has in effect, a snapshot item
/// `live:sysctl.net.ipv4.ip_forward` the kernel's value before the change.
pub const LIVE: &str = "live:";

/// The prefix of the document key saying which line of which file set a value
/// (`src:sshd.permitrootlogin` = `/etc/ssh/sshd_config:4`): evidence for a result.
pub const SOURCE: &str = "src:";

/// The document key present (`yes`) when the values [`LIVE`] were read from a live system.
pub const LIVE_SYSTEM: &str = "live";

/// The prefix of the document keys saying why a service's values in effect could not be read
/// (`live.error.sshd`).
pub const LIVE_ERROR: &str = "live.error.";

/// One concrete change (parameters already substituted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// Set a directive to a value, editing the occurrence that is in effect (or adding one),
    /// keeping comments, order and every other line.
    SetDirective {
        /// The dialect of the file.
        dialect: Dialect,
        /// Path inside the instance root (for `sysctl`, ignored: the effective file is found).
        #[serde(default)]
        file: String,
        /// The directive.
        key: String,
        /// The new value.
        value: String,
    },
    /// Set a file's permission bits (octal string such as `0600`).
    SetMode {
        /// Path inside the instance root.
        file: String,
        /// Octal mode.
        mode: String,
    },
    /// A call on a cloud resource, carried out by the connector of its kind: `action` names
    /// what to do (`sg.restrict_world`, `s3.put_public_access_block`, …), `args` its values.
    Cloud {
        /// The connector's action.
        action: String,
        /// Its arguments (parameters already substituted).
        #[serde(default)]
        args: BTreeMap<String, String>,
    },
}

impl Step {
    /// The value in effect the step sets on a live system, named as documents and snapshots
    /// name it after the [`LIVE`] prefix (`sysctl.net.ipv4.ip_forward`, `redis.bind`); None for
    /// a step whose effect is not a single value (sshd's directives take effect by a reload).
    pub fn live_key(&self) -> Option<String> {
        match self {
            Step::SetDirective { dialect: Dialect::Sysctl, key, .. } => Some(format!("sysctl.{key}")),
            Step::SetDirective { dialect: Dialect::Redis, key, .. } => {
                Some(format!("redis.{}", key.to_ascii_lowercase()))
            }
            _ => None,
        }
    }

    /// Every value the step carries (what placeholders and control characters are looked for in).
    pub fn values(&self) -> Vec<&str> {
        match self {
            Step::SetDirective { value, .. } => vec![value],
            Step::SetMode { mode, .. } => vec![mode],
            Step::Cloud { args, .. } => args.values().map(String::as_str).collect(),
        }
    }
}

/// One thing a snapshot restores: a file (or a cloud resource's configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotItem {
    /// What it is: a path inside the instance root, or a resource key.
    pub key: String,
    /// Whether it existed before the change ("there was none" is restored by deleting it).
    pub existed: bool,
    /// Whether `data` holds the content (false for metadata-only snapshots such as a mode).
    pub has_content: bool,
    /// The exact prior content (base64 in JSON: snapshots travel from agents).
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Prior metadata (host files: `mode`, `uid`, `gid`).
    pub meta: BTreeMap<String, i64>,
    /// Digest of the item right after the change; a rollback refuses to overwrite a later change.
    pub post_digest: Option<String>,
}

impl SnapshotItem {
    /// A value of the running system before the change (`key` without the [`LIVE`] prefix).
    pub fn live(key: &str, value: &str) -> SnapshotItem {
        SnapshotItem {
            key: format!("{LIVE}{key}"),
            existed: true,
            has_content: true,
            data: value.as_bytes().to_vec(),
            meta: BTreeMap::new(),
            post_digest: None,
        }
    }

    /// For a value of the running system, its key without the [`LIVE`] prefix.
    pub fn live_key(&self) -> Option<&str> {
        self.key.strip_prefix(LIVE)
    }
}

/// The backup a rollback restores.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Everything the repair may touch, as it was before: files, and on a live system the
    /// values in effect that the change sets (see [`SnapshotItem::live`]).
    pub items: Vec<SnapshotItem>,
}

/// What one step of a task asks of the connector of its instance. The engine runs it on the
/// connector itself or, for a server reached through its agent, hands it to the agent, which
/// runs it on its own root; either way the outcome goes back to the same state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ConnectorOp {
    /// Capture everything the steps will change (IN_BACKUP).
    Backup,
    /// Carry the steps out on top of the snapshot taken before the first change (REPAIRING).
    Apply {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Put the snapshot back (ROLL_BACKING).
    Restore {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Read the configuration (verifies a repair).
    Fetch,
    /// Whether the configuration matches the snapshot, and read it (verifies a rollback).
    MatchesAndFetch {
        /// The snapshot.
        snapshot: Snapshot,
    },
}

/// What a [`ConnectorOp`] produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum OpOutput {
    /// The snapshot taken, or completed with the digests after the change.
    Snapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Done (a restore).
    Done,
    /// The configuration as read.
    Document {
        /// The document.
        document: Document,
    },
    /// Whether it matched the snapshot, and the configuration as read.
    Matches {
        /// Every item is as the snapshot holds it.
        matches: bool,
        /// The document.
        document: Document,
    },
}

/// One thing a change would change on its instance, planned against the instance as it is and
/// without changing anything (PreviewOperationTask). What would stay as it is is not listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlannedChange {
    /// A file's content: created, or edited as the unified diff says.
    FileContent {
        /// The path inside the instance root.
        file: String,
        /// The file does not exist yet: the change creates it.
        created: bool,
        /// A unified diff (`--- a/…`, `+++ b/…`, hunks with 3 lines of context) from the file as
        /// it is to the file as the change writes it.
        diff: String,
    },
    /// A file's permission bits.
    FileMode {
        /// The path inside the instance root.
        file: String,
        /// The mode now, in octal (`0644`).
        before: String,
        /// The mode the change sets.
        after: String,
    },
    /// One aspect of a cloud resource (its inbound rules, its public access block, …), as the
    /// cloud's API reads it now and as it will read after the change.
    CloudState {
        /// The aspect.
        aspect: String,
        /// Its state now (`null`: there is none).
        before: serde_json::Value,
        /// Its state after the change.
        after: serde_json::Value,
    },
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

//! Repairs that take effect on a live system (a root that is the running system): the
//! service's own checker validates a candidate before it replaces a file, the running service
//! takes the change (reload, `/proc/sys`, `CONFIG SET`), and the value in effect is read back.
//! Only operations compiled in here run, chosen by the catalog's `effect`; no catalog file and
//! no server names a command.

mod command;
mod redis;
mod sshd;
mod sysctl;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use model::{
    Apply, Change, Checker, Dialect, Document, Services, Snapshot, SnapshotItem, Step, LIVE, LIVE_ERROR, LIVE_SYSTEM,
};

use super::directives::ConfigSet;
use super::files::Limits;
use crate::ConnectorError;

/// Candidate contents by path inside the root (None: the file is removed).
pub(super) type Overlay = BTreeMap<String, Option<Vec<u8>>>;

const REDIS_CONF: &str = "/etc/redis/redis.conf";
/// What a check run reads from a running Redis (never `requirepass`: a document is evidence).
const REDIS_READ: [&str; 3] = ["bind", "port", "protected-mode"];

/// The running system of one live instance.
pub(super) struct Live<'a> {
    pub root: &'a Path,
    pub services: &'a Services,
    pub limits: &'a Limits,
}

/// The steps' (key, value) pairs of one dialect.
fn directives(change: &Change, of: Dialect) -> Vec<(&str, &str)> {
    change
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::SetDirective { dialect, key, value, .. } if *dialect == of => Some((key.as_str(), value.as_str())),
            _ => None,
        })
        .collect()
}

fn apply_of(change: &Change) -> Apply {
    change.effect.map_or(Apply::Immediate, |e| e.apply)
}

/// The digest a value in effect is recorded by after a change (the drift check of a rollback).
fn value_digest(value: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(value.as_bytes()))
}

/// The values in effect of a snapshot: (key without the prefix, value before the change).
fn live_items(snapshot: &Snapshot) -> impl Iterator<Item = (&str, String)> {
    snapshot.items.iter().filter_map(|i| Some((i.live_key()?, String::from_utf8_lossy(&i.data).into_owned())))
}

impl Live<'_> {
    /// Whether posture can still reach the service after the change: a Redis moved to another
    /// port, or bound away from the address posture uses, could be neither verified nor rolled
    /// back, so such a change is refused before anything is written.
    pub fn reachable_after(&self, change: &Change) -> Result<(), ConnectorError> {
        if apply_of(change) != Apply::RedisConfigSet {
            return Ok(());
        }
        let refuse = |why: String| {
            ConnectorError::new(
                "ServiceWouldBeUnreachable",
                format!("{why}: posture could not verify the change or roll it back, so nothing was changed"),
            )
        };
        let at = self
            .redis_conf()
            .and_then(|conf| self.redis_address(&conf))
            .map_err(|e| ConnectorError::new("RepairError", e))?;
        for (key, value) in directives(change, Dialect::Redis) {
            if key.eq_ignore_ascii_case("port") && value.trim().parse::<u16>().ok() != Some(at.port()) {
                return Err(refuse(format!(
                    "the repair moves Redis to port {value}, and posture reaches it at {at} (the instance's Services.redis.Address)"
                )));
            }
            if key.eq_ignore_ascii_case("bind") {
                let reaches = value
                    .split_whitespace()
                    .map(|a| a.trim_start_matches('-'))
                    .any(|a| matches!(a, "*" | "0.0.0.0" | "::" | "::*") || a.parse::<IpAddr>().ok() == Some(at.ip()));
                if !reaches {
                    return Err(refuse(format!("the repair binds Redis to {value}, not to {}", at.ip())));
                }
            }
        }
        Ok(())
    }

    /// Runs the service's own checker on the candidates; a refusal changes nothing.
    pub fn validate(&self, change: &Change, overlay: &Overlay) -> Result<(), ConnectorError> {
        match change.effect.and_then(|e| e.validate) {
            None => Ok(()),
            Some(Checker::Sshd) => sshd::validate(self.root, overlay, self.limits).map_err(|f| match f {
                sshd::Failure::Refused(msg) => ConnectorError::new(
                    "ServiceRejectedConfig",
                    format!("sshd -t refused the configuration, so it was not installed and nothing changed: {msg}"),
                ),
                sshd::Failure::Unavailable(msg) => ConnectorError::new(
                    "ServiceCheckUnavailable",
                    format!("the configuration could not be validated with sshd -t, so nothing changed: {msg}"),
                ),
            }),
        }
    }

    /// The values in effect that the change will set, as they are now (part of the backup).
    pub fn capture(&self, change: &Change) -> Result<Vec<SnapshotItem>, ConnectorError> {
        let fail = |m: String| ConnectorError::new("BackUpError", format!("reading the value in effect: {m}"));
        let keys: Vec<String> = change.steps.iter().filter_map(Step::live_key).collect();
        let values = self.current(&keys).map_err(fail)?;
        Ok(keys.iter().zip(values).map(|(k, v)| SnapshotItem::live(k, &v)).collect())
    }

    /// Makes the files just written take effect; then records in the snapshot the values in
    /// effect after the change (a rollback refuses to undo a later change of them). Returns
    /// what was done.
    pub fn take_effect(&self, change: &Change, snapshot: &mut Snapshot) -> Result<String, ConnectorError> {
        let fail = |m: String| ConnectorError::new("LiveApplyFailed", m);
        let done = match apply_of(change) {
            Apply::Immediate => "takes effect at once".to_string(),
            Apply::NextUse => "takes effect when its programs next read it".to_string(),
            Apply::ReloadSshd => sshd::reload(self.root, self.services.sshd.as_ref()).map_err(fail)?,
            Apply::SysctlWrite => {
                for (k, v) in directives(change, Dialect::Sysctl) {
                    sysctl::write(k, v).map_err(fail)?;
                }
                "written to /proc/sys".to_string()
            }
            Apply::RedisConfigSet => {
                let pairs: Vec<(String, &str)> =
                    directives(change, Dialect::Redis).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
                let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                self.redis().and_then(|mut c| c.set(&pairs)).map_err(fail)?;
                "CONFIG SET".to_string()
            }
        };
        let keys: Vec<String> = live_items(snapshot).map(|(k, _)| k.to_string()).collect();
        let after = self.current(&keys).map_err(|m| fail(format!("reading the value in effect back: {m}")))?;
        for (item, value) in snapshot.items.iter_mut().filter(|i| i.live_key().is_some()).zip(after) {
            item.post_digest = Some(value_digest(&value));
        }
        Ok(done)
    }

    /// Refuses a rollback (and changes nothing) if a value in effect was changed after the
    /// repair, by someone else: putting the old one back would undo that change.
    pub fn unchanged_since(&self, snapshot: &Snapshot) -> Result<(), ConnectorError> {
        let recorded: Vec<(&SnapshotItem, &str)> = snapshot
            .items
            .iter()
            .filter_map(|i| Some((i, i.live_key()?)))
            .filter(|(i, _)| i.post_digest.is_some())
            .collect();
        let keys: Vec<String> = recorded.iter().map(|(_, k)| k.to_string()).collect();
        let now = self
            .current(&keys)
            .map_err(|m| ConnectorError::new("RollbackError", format!("reading the value in effect: {m}")))?;
        for ((item, key), now) in recorded.into_iter().zip(now) {
            let before = String::from_utf8_lossy(&item.data);
            if item.post_digest.as_deref() != Some(value_digest(&now).as_str()) && now != before {
                return Err(ConnectorError::new(
                    "ConfigChangedSinceRepair",
                    format!(
                        "{key} is {now:?} in effect, changed after the repair; restoring it would undo that change"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// After the files were put back: makes the running system take them, and sets the values
    /// in effect as they were before the change (a reload for sshd, the snapshot's values for
    /// the kernel and Redis).
    pub fn put_back(&self, change: &Change, snapshot: &Snapshot) -> Result<(), ConnectorError> {
        let fail = |m: String| {
            ConnectorError::new(
                "LiveApplyFailed",
                format!("the files were restored, but the running system was not: {m}"),
            )
        };
        match apply_of(change) {
            Apply::Immediate | Apply::NextUse => Ok(()),
            Apply::ReloadSshd => sshd::reload(self.root, self.services.sshd.as_ref()).map(drop).map_err(fail),
            Apply::SysctlWrite => live_items(snapshot)
                .filter_map(|(k, v)| Some((k.strip_prefix("sysctl.")?.to_string(), v)))
                .try_for_each(|(k, v)| sysctl::write(&k, &v).map_err(fail)),
            Apply::RedisConfigSet => {
                let values: Vec<(String, String)> = live_items(snapshot)
                    .filter_map(|(k, v)| Some((k.strip_prefix("redis.")?.to_string(), v)))
                    .collect();
                if values.is_empty() {
                    return Ok(());
                }
                let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.redis().and_then(|mut c| c.set(&pairs)).map_err(fail)
            }
        }
    }

    /// Whether the values in effect are the snapshot's (verifies a rollback).
    pub fn matches(&self, snapshot: &Snapshot) -> Result<bool, ConnectorError> {
        let (keys, before): (Vec<String>, Vec<String>) = live_items(snapshot).map(|(k, v)| (k.to_string(), v)).unzip();
        let now = self
            .current(&keys)
            .map_err(|m| ConnectorError::new("RollbackError", format!("reading the value in effect: {m}")))?;
        Ok(now == before)
    }

    /// The values in effect of `keys` (`sysctl.…`, `redis.…`), in order.
    fn current(&self, keys: &[String]) -> Result<Vec<String>, String> {
        let mut redis = None;
        keys.iter()
            .map(|key| {
                if let Some(k) = key.strip_prefix("sysctl.") {
                    sysctl::read(k)
                } else if let Some(k) = key.strip_prefix("redis.") {
                    if redis.is_none() {
                        redis = Some(self.redis()?);
                    }
                    let conn = redis.as_mut().ok_or("no connection")?;
                    conn.get(k)?.ok_or_else(|| format!("this Redis has no {k}"))
                } else {
                    Err(format!("{key} is not a value posture reads in effect"))
                }
            })
            .collect()
    }

    /// Adds the values in effect to a document read from the files: `live:sshd.…` (sshd -T),
    /// `live:sysctl.…` (/proc/sys), `live:redis.…` (CONFIG GET); a service whose values cannot
    /// be read says why under `live.error.<service>`.
    pub fn read(&self, doc: &mut Document) {
        doc.insert(LIVE_SYSTEM.into(), "yes".into());
        if doc.contains_key("sshd.present") {
            match sshd::effective(self.root, self.limits) {
                Ok(values) => doc.extend(values.into_iter().map(|(k, v)| (format!("{LIVE}sshd.{k}"), v))),
                Err(sshd::Failure::Refused(m) | sshd::Failure::Unavailable(m)) => {
                    doc.insert(format!("{LIVE_ERROR}sshd"), format!("sshd -T: {m}"));
                }
            }
        }
        doc.extend(sysctl::read_all().into_iter().map(|(k, v)| (format!("{LIVE}sysctl.{k}"), v)));
        if doc.contains_key("redis.present") {
            let keys: Vec<String> = REDIS_READ.iter().map(|k| format!("redis.{k}")).collect();
            match self.current(&keys) {
                Ok(values) => doc.extend(keys.into_iter().zip(values).map(|(k, v)| (format!("{LIVE}{k}"), v))),
                Err(m) => {
                    doc.insert(format!("{LIVE_ERROR}redis"), format!("CONFIG GET: {m}"));
                }
            }
        }
    }

    /// Where the running Redis answers: the instance's `Address`, else the loopback address on
    /// the port its configuration (`conf`) names (6379 when none).
    fn redis_address(&self, conf: &ConfigSet) -> Result<SocketAddr, String> {
        if let Some(r) = &self.services.redis {
            return r.address.parse().map_err(|_| format!("Services.redis.Address {:?} is not IP:PORT", r.address));
        }
        let port = conf.effective("port").and_then(|e| e.value.parse::<u16>().ok()).unwrap_or(6379);
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn redis_conf(&self) -> Result<ConfigSet, String> {
        ConfigSet::load(self.root, Dialect::Redis, REDIS_CONF, self.limits).map_err(|e| format!("{REDIS_CONF}: {e}"))
    }

    /// A connection to the running Redis, authenticated with the root's `requirepass`.
    fn redis(&self) -> Result<redis::Conn, String> {
        let conf = self.redis_conf()?;
        let password = conf.effective("requirepass").map(|e| e.value.trim_matches('"').to_string());
        redis::Conn::open(self.redis_address(&conf)?, password.as_deref().filter(|p| !p.is_empty()))
    }
}

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
use std::net::SocketAddr;
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

impl Live<'_> {
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
        match apply_of(change) {
            Apply::SysctlWrite => directives(change, Dialect::Sysctl)
                .into_iter()
                .map(|(k, _)| Ok(SnapshotItem::live(&format!("sysctl.{k}"), &sysctl::read(k).map_err(fail)?)))
                .collect(),
            Apply::RedisConfigSet => {
                let mut conn = self.redis(&[]).map_err(fail)?;
                let mut items = Vec::new();
                for (k, _) in directives(change, Dialect::Redis) {
                    let key = k.to_ascii_lowercase();
                    let v = conn.get(&key).map_err(fail)?.ok_or_else(|| fail(format!("this Redis has no {key}")))?;
                    items.push(SnapshotItem::live(&format!("redis.{key}"), &v));
                }
                Ok(items)
            }
            Apply::Immediate | Apply::NextUse | Apply::ReloadSshd => Ok(Vec::new()),
        }
    }

    /// Makes the files just written take effect; returns what was done.
    pub fn take_effect(&self, change: &Change, snapshot: &Snapshot) -> Result<String, ConnectorError> {
        let fail = |m: String| ConnectorError::new("LiveApplyFailed", m);
        match apply_of(change) {
            Apply::Immediate => Ok("takes effect at once".into()),
            Apply::NextUse => Ok("takes effect when its programs next read it".into()),
            Apply::ReloadSshd => sshd::reload(self.root, self.services.sshd.as_ref()).map_err(fail),
            Apply::SysctlWrite => {
                for (k, v) in directives(change, Dialect::Sysctl) {
                    sysctl::write(k, v).map_err(fail)?;
                }
                Ok("written to /proc/sys".into())
            }
            Apply::RedisConfigSet => {
                let mut conn = self.redis(&ports(change, snapshot)).map_err(fail)?;
                for (k, v) in directives(change, Dialect::Redis) {
                    conn.set(&k.to_ascii_lowercase(), v).map_err(fail)?;
                }
                Ok("CONFIG SET".into())
            }
        }
    }

    /// After the files were restored: puts the values in effect back as they were before the
    /// change (a reload for sshd, the snapshot's values for the kernel and Redis).
    pub fn put_back(&self, change: &Change, snapshot: &Snapshot) -> Result<(), ConnectorError> {
        let fail = |m: String| ConnectorError::new("LiveApplyFailed", format!("the files were restored, but {m}"));
        let live = snapshot.items.iter().filter_map(|i| Some((i.live_key()?, String::from_utf8_lossy(&i.data))));
        match apply_of(change) {
            Apply::Immediate | Apply::NextUse => Ok(()),
            Apply::ReloadSshd => sshd::reload(self.root, self.services.sshd.as_ref()).map(drop).map_err(fail),
            Apply::SysctlWrite => live
                .filter_map(|(k, v)| Some((k.strip_prefix("sysctl.")?, v)))
                .try_for_each(|(k, v)| sysctl::write(k, &v).map_err(fail)),
            Apply::RedisConfigSet => {
                let mut conn = self.redis(&ports(change, snapshot)).map_err(fail)?;
                live.filter_map(|(k, v)| Some((k.strip_prefix("redis.")?, v)))
                    .try_for_each(|(k, v)| conn.set(k, &v).map_err(fail))
            }
        }
    }

    /// Whether the values in effect are the snapshot's (verifies a rollback).
    pub fn matches(&self, snapshot: &Snapshot) -> Result<bool, ConnectorError> {
        let fail = |m: String| ConnectorError::new("RollbackError", format!("reading the value in effect: {m}"));
        let mut redis = None;
        for item in &snapshot.items {
            let Some(key) = item.live_key() else { continue };
            let want = String::from_utf8_lossy(&item.data);
            let now = if let Some(k) = key.strip_prefix("sysctl.") {
                sysctl::read(k).map_err(fail)?
            } else if let Some(k) = key.strip_prefix("redis.") {
                if redis.is_none() {
                    redis = Some(self.redis(&ports(&Change::default(), snapshot)).map_err(fail)?);
                }
                redis.as_mut().map(|c| c.get(k)).transpose().map_err(fail)?.flatten().unwrap_or_default()
            } else {
                return Err(fail(format!("{key} is not a value posture restores")));
            };
            if now != want {
                return Ok(false);
            }
        }
        Ok(true)
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
            let read = self.redis(&[]).and_then(|mut c| {
                REDIS_READ
                    .iter()
                    .filter_map(|k| c.get(k).map(|v| v.map(|v| (*k, v))).transpose())
                    .collect::<Result<Vec<_>, _>>()
            });
            match read {
                Ok(values) => doc.extend(values.into_iter().map(|(k, v)| (format!("{LIVE}redis.{k}"), v))),
                Err(m) => {
                    doc.insert(format!("{LIVE_ERROR}redis"), format!("CONFIG GET: {m}"));
                }
            }
        }
    }

    /// A connection to the running Redis: at the instance's `Address` (or the loopback
    /// address), on the port its configuration names, then on `more` ports (a change of the
    /// port is applied before, or restored after, the file says so), then at `Address` itself.
    fn redis(&self, more: &[u16]) -> Result<redis::Conn, String> {
        let conf = ConfigSet::load(self.root, Dialect::Redis, REDIS_CONF, self.limits)
            .map_err(|e| format!("{REDIS_CONF}: {e}"))?;
        let unquote = |v: &str| v.trim_matches('"').to_string();
        let password = conf.effective("requirepass").map(|e| unquote(&e.value)).filter(|p| !p.is_empty());
        let named: Option<SocketAddr> = self.services.redis.as_ref().and_then(|r| r.address.parse().ok());
        let ip = named.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        let file_port = conf.effective("port").and_then(|e| e.value.parse::<u16>().ok());
        let mut addrs: Vec<SocketAddr> =
            file_port.into_iter().chain(more.iter().copied()).map(|p| (ip, p).into()).collect();
        addrs.extend(named.or_else(|| file_port.is_none().then(|| (ip, 6379).into())));
        addrs.dedup();
        redis::Conn::open(&addrs, password.as_deref())
    }
}

/// The Redis ports a change moves between: the snapshot's port in effect before, the steps'
/// port after.
fn ports(change: &Change, snapshot: &Snapshot) -> Vec<u16> {
    let before = snapshot
        .items
        .iter()
        .filter(|i| i.live_key() == Some("redis.port"))
        .map(|i| String::from_utf8_lossy(&i.data).into_owned());
    let after = directives(change, Dialect::Redis)
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("port"))
        .map(|(_, v)| v.to_string());
    before.chain(after).filter_map(|p| p.trim().parse().ok()).collect()
}

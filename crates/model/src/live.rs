//! A live instance: a root that is the running system (an agent's server, or a root registered
//! with `"Live": true`), whose services posture reloads and whose values in effect it reads
//! back. Every part names something posture finds (a PID file, a systemd unit, an address);
//! none is a command.

use serde::{Deserialize, Serialize};

/// How posture reaches the services of a live instance. A service not named is found where its
/// package puts it (sshd: the systemd unit `ssh` where systemd runs, else `/run/sshd.pid`;
/// Redis: the loopback address on the port its configuration names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The OpenSSH daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sshd: Option<Sshd>,
    /// The Redis server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
}

/// How the running sshd is reloaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Sshd {
    /// Its PID file, a path inside the root: a reload is SIGHUP to that PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<String>,
    /// The systemd unit that runs it (`ssh`): a reload is `systemctl reload UNIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Where the running Redis answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Redis {
    /// `IP:PORT` (a loopback address, normally).
    pub address: String,
}

impl Services {
    /// Whether every part is well formed: absolute paths without control characters, a unit
    /// name of the characters systemd allows, an `IP:PORT` address.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = &self.sshd {
            if s.pid_file.is_some() && s.unit.is_some() {
                return Err("Services.sshd takes PidFile or Unit, not both".into());
            }
            if let Some(p) = &s.pid_file {
                if !p.starts_with('/') || p.chars().any(char::is_control) || p.split('/').any(|c| c == "..") {
                    return Err("Services.sshd.PidFile must be an absolute path inside the root, without `..`".into());
                }
            }
            if let Some(u) = &s.unit {
                let ok = !u.is_empty()
                    && u.len() <= 256
                    && !u.starts_with('-')
                    && u.chars().all(|c| c.is_ascii_alphanumeric() || "@._-:\\".contains(c));
                if !ok {
                    return Err("Services.sshd.Unit is not a systemd unit name".into());
                }
            }
        }
        if let Some(r) = &self.redis {
            r.address
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("Services.redis.Address {:?} is not IP:PORT", r.address))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Services, String> {
        let s: Services = serde_json::from_str(json).map_err(|e| e.to_string())?;
        s.check().map(|()| s)
    }

    #[test]
    fn services_are_checked() {
        let s = parse(r#"{"sshd":{"PidFile":"/run/sshd.pid"},"redis":{"Address":"127.0.0.1:6379"}}"#).unwrap();
        assert_eq!(s.sshd.unwrap().pid_file.as_deref(), Some("/run/sshd.pid"));
        assert!(parse(r#"{"sshd":{"Unit":"ssh.service"}}"#).is_ok());
        assert!(parse(r#"{}"#).is_ok());
        for bad in [
            r#"{"sshd":{"PidFile":"run/sshd.pid"}}"#,
            r#"{"sshd":{"PidFile":"/run/../../etc/x"}}"#,
            r#"{"sshd":{"Unit":"ssh; reboot"}}"#,
            r#"{"sshd":{"Unit":"--now"}}"#,
            r#"{"sshd":{"Unit":"ssh","PidFile":"/run/sshd.pid"}}"#,
            r#"{"redis":{"Address":"localhost"}}"#,
            r#"{"nginx":{}}"#,
            r#"{"sshd":{"Pid":"/x"}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

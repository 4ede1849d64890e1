//! The state directory (0700, every file 0600): the agent's secret key, what enrolment
//! returned, and an InstanceId generated when the server has none of its own.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the state lives unless `--state` says otherwise.
pub const DEFAULT_STATE: &str = "/var/lib/posture-agent";

const KEY: &str = "key";
const AGENT: &str = "agent.json";
const INSTANCE_ID: &str = "instance-id";

/// What `run` needs, written by `enroll`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Enrolled {
    /// The service, `https://HOST:PORT` (or `http://`).
    pub server: String,
    /// HTTPS: the CA certificates (PEM) the service's certificate must chain to, copied from
    /// `enroll --ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// HTTPS: the pinned public key (`sha256:…`) of a CA in the service's chain, from
    /// `enroll --fingerprint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The agent's id.
    pub agent_id: String,
    /// The server's InstanceId.
    pub instance_id: String,
    /// The root the agent works on.
    pub root: PathBuf,
    /// When the root is the running system: how its services are reached (repairs then take
    /// effect on them); None for a root that is only files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<model::Services>,
    /// Plain http:// to an address that is not loopback was allowed at enrolment.
    #[serde(default)]
    pub insecure_http: bool,
}

/// The state directory.
pub struct State {
    dir: PathBuf,
}

impl State {
    /// Opens (creating) the directory, 0700.
    pub fn create(dir: &Path) -> std::io::Result<State> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(State { dir: dir.to_path_buf() })
    }

    /// Opens an existing directory.
    pub fn open(dir: &Path) -> Result<State, String> {
        if !dir.join(AGENT).exists() {
            return Err(format!("{} holds no enrolment: run `posture-agent enroll` first", dir.display()));
        }
        Ok(State { dir: dir.to_path_buf() })
    }

    /// Writes a file atomically, 0600.
    fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// The secret key.
    pub fn key(&self) -> Result<[u8; 32], String> {
        let text = std::fs::read_to_string(self.dir.join(KEY)).map_err(|e| format!("the agent key: {e}"))?;
        hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| "the agent key is damaged: enrol again".to_string())
    }

    /// Writes a new secret key.
    pub fn set_key(&self, secret: &[u8; 32]) -> std::io::Result<()> {
        self.write(KEY, hex::encode(secret).as_bytes())
    }

    /// The enrolment.
    pub fn enrolled(&self) -> Result<Enrolled, String> {
        let text = std::fs::read_to_string(self.dir.join(AGENT)).map_err(|e| format!("{AGENT}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{AGENT} is damaged ({e}): enrol again"))
    }

    /// Records the enrolment.
    pub fn set_enrolled(&self, e: &Enrolled) -> std::io::Result<()> {
        self.write(AGENT, serde_json::to_string_pretty(e).unwrap_or_default().as_bytes())
    }

    /// The InstanceId generated for a server without a machine-id (made once, then kept).
    pub fn generated_instance_id(&self) -> std::io::Result<String> {
        if let Ok(id) = std::fs::read_to_string(self.dir.join(INSTANCE_ID)) {
            if !id.trim().is_empty() {
                return Ok(id.trim().to_string());
            }
        }
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        let id = format!("host-{}", hex::encode(b));
        self.write(INSTANCE_ID, id.as_bytes())?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_state_is_private() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("state");
        let s = State::create(&dir).unwrap();
        s.set_key(&[7u8; 32]).unwrap();
        let id = s.generated_instance_id().unwrap();
        assert_eq!(s.generated_instance_id().unwrap(), id, "generated once, then kept");
        assert_eq!(s.key().unwrap(), [7u8; 32]);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        for f in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(f.unwrap().metadata().unwrap().mode() & 0o777, 0o600);
        }
    }
}

//! The service's configuration file (`--config`, or `posture.toml` in the data directory when
//! it exists). Everything in it has a default; unknown keys are refused so a typo is not
//! silently ignored.
//!
//! ```toml
//! [connectors.aws]
//! endpoint_url = "http://127.0.0.1:5000"   # moto, LocalStack; absent: AWS itself
//!
//! [connectors.host]
//! max_file_bytes = 1048576    # a larger configuration file is refused (ConfigFileTooLarge)
//! io_timeout_ms = 10000       # one call's file work; later: FileOperationTimeout, retried
//!
//! [store]
//! url = "postgres://posture@db.internal:5432/posture"   # absent: SQLite in the data directory
//!
//! [http]
//! max_connections = 1024      # at most; lowered to fit the process's file limit
//! header_timeout_ms = 10000   # a request's head must arrive within this
//! body_timeout_ms = 30000     # and its body within this
//! idle_timeout_ms = 60000     # a keep-alive connection with no request is closed after this
//!
//! [tls]                       # HTTPS (the --tls-* flags win); paths relative to this file
//! cert = "tls/server.pem"     # the certificate chain, PEM (re-read on SIGHUP)
//! key = "tls/server.key"      # its key, PEM, not readable by other users
//! ca = "tls/ca.pem"           # the CA clients trust (credentials.json's CaFile)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub connectors: Connectors,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub tls: TlsConfig,
}

/// `[tls]`: serve HTTPS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA clients should trust.
    pub ca: Option<PathBuf>,
}

/// `[store]`: where the state is kept (the `--database` flag and POSTURE_DATABASE_URL win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://USER@HOST:PORT/DB`; absent: SQLite in the data directory.
    pub url: Option<String>,
    /// PostgreSQL: the most connections a node keeps open (default 16).
    pub pool: Option<usize>,
}

/// `[http]`: limits of the HTTP server (see `api::http::Limits` for the defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

impl HttpConfig {
    /// The limits, defaults filled in.
    pub fn limits(&self) -> api::http::Limits {
        let d = api::http::Limits::default();
        let ms = |v: Option<u64>, default: std::time::Duration| v.map_or(default, std::time::Duration::from_millis);
        api::http::Limits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_timeout: ms(self.header_timeout_ms, d.header_timeout),
            body_timeout: ms(self.body_timeout_ms, d.body_timeout),
            idle_timeout: ms(self.idle_timeout_ms, d.idle_timeout),
            ..d
        }
    }
}

/// `[connectors.*]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connectors {
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub host: HostConfig,
}

/// `[connectors.host]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Largest configuration file read or changed, in bytes.
    pub max_file_bytes: Option<u64>,
    /// Longest one call's file work may take, in milliseconds.
    pub io_timeout_ms: Option<u64>,
}

impl HostConfig {
    /// The host connector's settings, defaults filled in.
    pub fn settings(&self) -> Result<connectors::host::HostSettings, String> {
        let d = connectors::host::HostSettings::default();
        let s = connectors::host::HostSettings {
            max_file_bytes: self.max_file_bytes.unwrap_or(d.max_file_bytes),
            io_timeout: self.io_timeout_ms.map_or(d.io_timeout, std::time::Duration::from_millis),
        };
        if s.max_file_bytes == 0 || s.io_timeout.is_zero() {
            return Err("[connectors.host] max_file_bytes and io_timeout_ms must be above 0".into());
        }
        Ok(s)
    }
}

/// `[connectors.aws]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// One endpoint for every AWS service; `POSTURE_AWS_ENDPOINT_URL` overrides it.
    pub endpoint_url: Option<String>,
}

/// The environment variable that points the AWS connector elsewhere.
const AWS_ENDPOINT_ENV: &str = "POSTURE_AWS_ENDPOINT_URL";

impl Config {
    /// Reads `explicit`, else `DATA/posture.toml` if present, else the defaults.
    pub fn load(explicit: Option<&Path>, data: &Path) -> Result<Config, String> {
        let implicit = data.join("posture.toml");
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if implicit.exists() => implicit,
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.tls.cert, &mut config.tls.key, &mut config.tls.ca].into_iter().flatten() {
            *p = base.join(&*p);
        }
        config.connectors.aws.checked_endpoint(config.connectors.aws.endpoint_url.as_deref())?;
        config.connectors.host.settings().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Where AWS calls go: the environment, then the file; None for AWS itself.
    pub fn aws_endpoint(&self) -> Result<Option<String>, String> {
        let env = std::env::var(AWS_ENDPOINT_ENV).ok().filter(|v| !v.trim().is_empty());
        let chosen = env.or_else(|| self.connectors.aws.endpoint_url.clone());
        self.connectors.aws.checked_endpoint(chosen.as_deref())?;
        Ok(chosen)
    }
}

impl AwsConfig {
    fn checked_endpoint(&self, url: Option<&str>) -> Result<(), String> {
        match url {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                Err(format!("the AWS endpoint_url {u:?} must start with http:// or https://"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sets_the_endpoint_and_refuses_unknown_keys_and_bad_urls() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[connectors.aws]\nendpoint_url = \"http://127.0.0.1:5055\"\n").unwrap();
        let c = Config::load(Some(&f), dir.path()).unwrap();
        assert_eq!(c.connectors.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5055"));
        std::fs::write(&f, "[connectors.aws]\nendpoint = \"http://x\"\n").unwrap();
        assert!(Config::load(Some(&f), dir.path()).unwrap_err().contains("unknown field"));
        std::fs::write(&f, "[connectors.aws]\nendpoint_url = \"127.0.0.1:5055\"\n").unwrap();
        assert!(Config::load(Some(&f), dir.path()).unwrap_err().contains("http://"));
        assert!(Config::load(None, dir.path()).unwrap().connectors.aws.endpoint_url.is_none(), "no file: defaults");
        std::fs::write(&f, "[connectors.host]\nmax_file_bytes = 4096\n[http]\nidle_timeout_ms = 500\n").unwrap();
        let c = Config::load(Some(&f), dir.path()).unwrap();
        assert_eq!(c.connectors.host.settings().unwrap().max_file_bytes, 4096);
        assert_eq!(c.http.limits().idle_timeout, std::time::Duration::from_millis(500));
        std::fs::write(&f, "[connectors.host]\nio_timeout_ms = 0\n").unwrap();
        assert!(Config::load(Some(&f), dir.path()).unwrap_err().contains("above 0"));
        std::fs::write(&f, "[tls]\ncert = \"tls/server.pem\"\nkey = \"/etc/k.pem\"\n").unwrap();
        let c = Config::load(Some(&f), dir.path()).unwrap();
        assert_eq!(c.tls.cert.unwrap(), dir.path().join("tls/server.pem"), "relative to the file");
        assert_eq!(c.tls.key.unwrap(), Path::new("/etc/k.pem"));
    }
}

//! The service's configuration file (`--config`, or `posture.toml` in the data directory when
//! it exists). Everything in it has a default; unknown keys are refused so a typo is not
//! silently ignored.
//!
//! ```toml
//! [connectors.aws]
//! endpoint_url = "http://127.0.0.1:5000"   # moto, LocalStack; absent: AWS itself
//! ```

use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub connectors: Connectors,
}

/// `[connectors.*]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connectors {
    #[serde(default)]
    pub aws: AwsConfig,
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
        let config: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.connectors.aws.checked_endpoint(config.connectors.aws.endpoint_url.as_deref())?;
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
    }
}

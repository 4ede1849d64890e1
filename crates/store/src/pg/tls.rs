//! TLS to PostgreSQL, as libpq's `sslmode` says it, with rustls: `verify-full` (the server's
//! certificate chains to `sslrootcert` and names the host connected to) and `verify-ca` (it
//! chains; any name). `sslrootcert` is a PEM file of CAs, or `system` for the system's roots
//! (as in libpq 16; only with `verify-full`: a public CA vouches for some name, not for this
//! database). `sslrootcert` alone means `verify-full`. `disable`, `allow` and `prefer` connect
//! without TLS (posture never uses a TLS it does not verify: libpq's `prefer` would try one
//! unverified), and are refused beside an `sslrootcert` they would ignore; `require`, which
//! encrypts without verifying who answers, is refused with a pointer to `verify-full`.
//!
//! The driver's URL parser knows neither `verify-*` nor `sslrootcert`, so both are taken out of
//! the URL (in either of its forms) before it parses the rest.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How connections are made: plain, or TLS verified by this configuration.
#[derive(Clone)]
pub(crate) struct PgTls(Option<Arc<rustls::ClientConfig>>);

impl PgTls {
    /// Whether connections are TLS.
    pub(crate) fn enabled(&self) -> bool {
        self.0.is_some()
    }
}

/// Parses a database URL (or key=value string): the driver's configuration and the TLS to
/// connect with.
pub(crate) fn parse(url: &str) -> Result<(postgres::Config, PgTls), String> {
    let (rest, mode, root) = take_tls_params(url)?;
    let mut config: postgres::Config = rest.parse().map_err(|e| format!("the database URL is not valid: {e}"))?;
    // A CA given without a mode means verifying by it (as libpq 16 does for `system`).
    let mode = mode.or_else(|| root.as_ref().map(|_| "verify-full".to_string()));
    let verify_name = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") if root.is_none() => {
            config.ssl_mode(postgres::config::SslMode::Disable);
            return Ok((config, PgTls(None)));
        }
        None | Some("disable" | "allow" | "prefer") => {
            return Err(format!(
                "sslrootcert is given but sslmode={} would not use it: use sslmode=verify-full",
                mode.unwrap_or_default()
            ))
        }
        Some("require") => {
            return Err("sslmode=require encrypts without verifying the server: use sslmode=verify-full with sslrootcert=CA.pem (or sslrootcert=system)".into())
        }
        Some("verify-ca") => false,
        Some("verify-full") => true,
        Some(other) => {
            return Err(format!("sslmode={other} is not one of disable, allow, prefer, verify-ca, verify-full"))
        }
    };
    let trust = match root.as_deref() {
        None => {
            return Err(format!(
                "sslmode={} needs sslrootcert=FILE (the CA of the database's certificate) or sslrootcert=system",
                mode.unwrap_or_default()
            ))
        }
        // Any public CA vouches for some name; without the name checked, it would vouch for
        // any server (libpq refuses this too).
        Some("system") if !verify_name => {
            return Err(
                "sslrootcert=system needs sslmode=verify-full: a public CA must also vouch for the host name".into()
            )
        }
        Some("system") => client::tls::Trust::System,
        Some(file) => client::tls::Trust::ca_file(std::path::Path::new(file))?,
    };
    let verifier = trust.verifier_for(verify_name)?;
    config.ssl_mode(postgres::config::SslMode::Require);
    Ok((config, PgTls(Some(client::tls::client_config(verifier, b"postgresql")?))))
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?k=v&…`) or a key=value string;
/// the rest, and their values.
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    let url = url.trim();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(&percent_decode(k), percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in key_values(url)? {
            if !take(&k, v.clone()) {
                kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// The pairs of a libpq key=value string: `key = value`, spaces around `=` allowed, a value
/// bare or in single quotes with `\'` and `\\` escapes.
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != '=')).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("the database settings are not key=value pairs (at {key:?})"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of {key} has no closing quote")),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        out.push((key, value));
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    /// Called for every connection, TLS or not (the driver asks before it looks at sslmode).
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<PgTlsConnect> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|_| io::Error::other(format!("{domain:?} is not a host name a certificate can name")));
        Ok(PgTlsConnect { config: self.0.clone(), name })
    }
}

/// One connection's TLS handshake (never made with sslmode=disable).
pub(crate) struct PgTlsConnect {
    config: Option<Arc<rustls::ClientConfig>>,
    name: io::Result<ServerName<'static>>,
}

impl TlsConnect<Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self.config.ok_or_else(|| io::Error::other("TLS is not configured"))?;
            let stream = tokio_rustls::TlsConnector::from(config).connect(self.name?, socket).await?;
            Ok(PgTlsStream(stream))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct PgTlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding: the server is authenticated by its verified certificate.
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_out_of_either_form_of_url() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u@db:5432/p?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            (rest.as_str(), mode.as_deref(), root.as_deref()),
            ("postgres://u@db:5432/p?application_name=x", Some("verify-full"), Some("/etc/ca.pem"))
        );
        let (rest, mode, root) =
            take_tls_params(r"host=db user = u sslmode = verify-ca password='a b\'c' sslrootcert='/etc/my ca.pem'")
                .unwrap();
        assert_eq!(
            (rest.as_str(), mode.as_deref(), root.as_deref()),
            (r"host='db' user='u' password='a b\'c'", Some("verify-ca"), Some("/etc/my ca.pem"))
        );
        assert!(take_tls_params("host=db password='open").is_err());
        assert!(take_tls_params("host db").is_err());
        let (rest, mode, _) = take_tls_params("postgres://u@db/p?sslmode=verify-full").unwrap();
        assert_eq!((rest.as_str(), mode.as_deref()), ("postgres://u@db/p", Some("verify-full")));
    }

    #[test]
    fn unverified_tls_and_missing_roots_are_refused_and_plain_stays_plain() {
        let e = parse("postgres://u@db/p?sslmode=require").err().unwrap();
        assert!(e.contains("verify-full"), "{e}");
        let e = parse("postgres://u@db/p?sslmode=verify-full").err().unwrap();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = parse("postgres://u@db/p?sslmode=verify-full&sslrootcert=/nonexistent.pem").err().unwrap();
        assert!(e.contains("/nonexistent.pem"), "{e}");
        assert!(parse("postgres://u@db/p?sslmode=bogus").is_err());
        // A public CA without the name checked would vouch for any server.
        let e = parse("postgres://u@db/p?sslmode=verify-ca&sslrootcert=system").err().unwrap();
        assert!(e.contains("verify-full"), "{e}");
        // A CA given is used: no mode means verify-full, a weaker one is a mistake.
        let e = parse("postgres://u@db/p?sslrootcert=/nonexistent.pem").err().unwrap();
        assert!(e.contains("/nonexistent.pem"), "verified by the file: {e}");
        let e = parse("postgres://u@db/p?sslmode=prefer&sslrootcert=/etc/ca.pem").err().unwrap();
        assert!(e.contains("would not use it"), "{e}");
        for plain in ["postgres://u@db/p", "postgres://u@db/p?sslmode=prefer", "host=db sslmode=disable"] {
            let (config, tls) = parse(plain).unwrap();
            assert!(!tls.enabled() && config.get_ssl_mode() == postgres::config::SslMode::Disable, "{plain}");
        }
    }

    /// The test server's URL and CA, when it serves TLS (scripts/pg.sh makes it so).
    fn tls_server() -> Option<(String, String)> {
        let (Ok(url), Ok(ca)) = (std::env::var("POSTURE_TEST_DATABASE_URL"), std::env::var("POSTURE_TEST_DATABASE_CA"))
        else {
            assert!(
                std::env::var("POSTURE_REQUIRE_POSTGRES_TLS").is_err(),
                "POSTURE_REQUIRE_POSTGRES_TLS is set but POSTURE_TEST_DATABASE_URL or _CA is not"
            );
            eprintln!("skipped: no PostgreSQL with TLS (POSTURE_TEST_DATABASE_URL and POSTURE_TEST_DATABASE_CA)");
            return None;
        };
        Some((url, ca))
    }

    /// Connects as the store does; whether the session is TLS, or the error.
    fn session(url: &str) -> Result<bool, String> {
        let (config, tls) = parse(url)?;
        let mut c = config.connect(tls).map_err(|e| super::super::error_chain(&e))?;
        let row =
            c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    #[test]
    fn verify_full_checks_the_ca_and_the_name_and_verify_ca_the_ca() {
        let Some((url, ca)) = tls_server() else { return };
        let port = url.split(':').nth(2).unwrap().split('/').next().unwrap().to_string();
        let at = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");
        // The certificate names localhost, not 127.0.0.1.
        assert_eq!(session(&at("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"))), Ok(true));
        let e = session(&at("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))).unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
        assert_eq!(session(&at("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))), Ok(true));
        // Another CA is refused, whatever the mode.
        let other = tempfile::tempdir().unwrap();
        let other_ca = other.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
        for mode in ["verify-full", "verify-ca"] {
            let e =
                session(&at("localhost", &format!("sslmode={mode}&sslrootcert={}", other_ca.display()))).unwrap_err();
            assert!(e.contains("invalid peer certificate"), "{mode}: {e}");
        }
        // And the store itself opens over TLS.
        let db = crate::testing::TestDatabase::create().unwrap();
        let tls_url = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url.replace("127.0.0.1", "localhost"));
        let dir = tempfile::tempdir().unwrap();
        let at =
            crate::Location { data: dir.path().to_path_buf(), database: Some(tls_url), master_key: None, pool: None };
        let store = crate::Store::connect(&at).unwrap();
        assert_eq!(store.backend(), "postgres");
    }
}

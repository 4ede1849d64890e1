//! The server's TLS: a certificate chain and its key from PEM files, served with rustls (TLS 1.3
//! and 1.2 only, ring's suites: AEAD ciphers with ECDHE key exchange, nothing older), ALPN
//! `http/1.1` (the HTTP stack speaks HTTP/1.1 only). The files are read again by [`Tls::reload`]
//! (on SIGHUP): connections opened after it get the new certificate, those open keep theirs, and
//! a reload that fails keeps the old one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::ServerConfig;

/// The certificate and key in use, and where they are read from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

/// What a loaded certificate is, for the log.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Certificates in the chain (the leaf first).
    pub chain: usize,
}

impl Tls {
    /// Reads the certificate chain and key, refusing a key other users can read.
    pub fn load(cert: &Path, key: &Path) -> Result<(Tls, Loaded), String> {
        let (config, loaded) = server_config(cert, key)?;
        let tls = Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), current: RwLock::new(config) };
        Ok((tls, loaded))
    }

    /// Reads the files again; on error the certificate in use stays.
    pub fn reload(&self) -> Result<Loaded, String> {
        let (config, loaded) = server_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(loaded)
    }

    /// The certificate chain's file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// An acceptor for a new connection, with the certificate in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<(Arc<ServerConfig>, Loaded), String> {
    let chain = client::tls::certificates(cert_path)?;
    let count = chain.len();
    let key = private_key(key_path)?;
    // Refused when the key is not the certificate's.
    let mut config = ServerConfig::builder_with_provider(client::tls::provider())
        .with_protocol_versions(client::tls::VERSIONS)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {} do not go together: {e}", cert_path.display(), key_path.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), Loaded { chain: count }))
}

/// The private key of a PEM file, which only its owner (and group) may read.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the TLS key {}: {e}", path.display()))?;
    if meta.mode() & 0o007 != 0 {
        return Err(format!(
            "the TLS key {} is open to other users (mode {:04o}): `chmod 600` it (or 640 with the service's group)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1): {e}", path.display()))
}

//! How a client trusts a server over TLS (rustls, TLS 1.2 and 1.3 only): the system's roots, the
//! CAs of a PEM file, or a pinned public key — the SHA-256 of a CA's SubjectPublicKeyInfo, as
//! `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum` prints it. A pin names
//! a key of the server's chain other than its own certificate's, so the server can replace its
//! certificate (and key) without its clients noticing; the chain is then verified from that
//! key as its only trust anchor, host name and validity included. Shared by `posture call`, the
//! agent, the tests and the PostgreSQL connection.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// The crypto every TLS connection of posture uses: ring's suites (AEAD with ECDHE only).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2; never older.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What a client trusts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The system's CA roots.
    System,
    /// The certificates of a PEM file (one CA or a bundle).
    Ca(Vec<CertificateDer<'static>>),
    /// The SHA-256 of a public key (SubjectPublicKeyInfo, DER) of the server's chain.
    Pin([u8; 32]),
}

/// A pin as written: `sha256:` and 64 hex digits (or the digits alone).
pub fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let hex_part = text.trim().strip_prefix("sha256:").unwrap_or(text.trim());
    hex::decode(hex_part.replace(':', ""))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is not a public-key fingerprint (sha256: and 64 hex digits)"))
}

/// A pin as written: `sha256:HEX`.
pub fn format_pin(pin: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(pin))
}

/// The certificates of PEM text (at least one).
pub fn certificates_pem(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The certificates of a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    certificates_pem(&text, &path.display().to_string())
}

/// The pin of a certificate's public key.
pub fn public_key_pin(cert: &CertificateDer<'_>) -> Result<[u8; 32], String> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone().into_owned()).map_err(|e| format!("not a certificate this client can read: {e}"))?;
    Ok(spki_pin(&roots.roots[0]))
}

/// SHA-256 of the DER SubjectPublicKeyInfo (webpki keeps its contents, without the SEQUENCE
/// header that the usual pins hash).
fn spki_pin(anchor: &rustls::pki_types::TrustAnchor<'_>) -> [u8; 32] {
    let body: &[u8] = anchor.subject_public_key_info.as_ref();
    let mut der = vec![0x30];
    match body.len() {
        n if n < 0x80 => der.push(n as u8),
        n if n < 0x100 => der.extend([0x81, n as u8]),
        n => der.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    der.extend_from_slice(body);
    spki_der_pin(&der)
}

/// The pin of a DER SubjectPublicKeyInfo.
pub fn spki_der_pin(spki: &[u8]) -> [u8; 32] {
    Sha256::digest(spki).into()
}

impl Trust {
    /// The CAs of a PEM file.
    pub fn ca_file(path: &Path) -> Result<Trust, String> {
        Ok(Trust::Ca(certificates(path)?))
    }

    /// How a server's certificate is verified under this trust.
    pub fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, String> {
        self.verifier_for(true)
    }

    /// [`Trust::verifier`], checking the name the certificate is for only when `check_name`
    /// (PostgreSQL's verify-ca does not). Without the name, only the CAs of a file can be
    /// trusted: a public CA vouches for somebody's name, not for the server's.
    pub fn verifier_for(&self, check_name: bool) -> Result<Arc<dyn ServerCertVerifier>, String> {
        let provider = provider();
        let roots = match self {
            Trust::Pin(pin) if check_name => return Ok(Arc::new(PinVerifier { pin: *pin, provider })),
            Trust::Pin(_) => return Err("a pin is verified with the host name".into()),
            Trust::System => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err("no CA certificate found among the system's roots: give a CA file".into());
                }
                roots
            }
            Trust::Ca(certs) => {
                let mut roots = RootCertStore::empty();
                for c in certs {
                    roots.add(c.clone()).map_err(|e| format!("a CA certificate this client cannot use: {e}"))?;
                }
                roots
            }
        };
        if !check_name {
            return match self {
                Trust::Ca(_) => Ok(Arc::new(ChainOnly { roots, provider })),
                _ => Err("without the host name checked, only the CAs of a file can be trusted".into()),
            };
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(verifier)
    }

    /// The client configuration for HTTPS: this trust, TLS 1.2+, ALPN http/1.1.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        client_config(self.verifier()?, b"http/1.1")
    }
}

/// A client configuration: TLS 1.3 and 1.2, certificates verified by `verifier`, ALPN `alpn`.
pub fn client_config(verifier: Arc<dyn ServerCertVerifier>, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The handshake-signature half of a verifier (the same for each here): the provider's
/// algorithms, as rustls's own verifier uses them.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

/// Verifies a chain from the key it pins: the certificate of the chain that holds that key
/// becomes the only trust anchor, and the usual verification (signatures, validity, host name)
/// follows from it.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if public_key_pin(end_entity).ok() == Some(self.pin) {
            return Err(rustls::Error::General(format!(
                "{} is the key of the server's own certificate: pin its CA's key instead, so that the server can replace its certificate",
                format_pin(&self.pin)
            )));
        }
        for cert in intermediates {
            if public_key_pin(cert).ok() != Some(self.pin) {
                continue;
            }
            let mut roots = RootCertStore::empty();
            roots.add(cert.clone().into_owned()).map_err(|e| rustls::Error::General(e.to_string()))?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            return verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        }
        Err(rustls::Error::General(format!(
            "the server's certificate chain holds no key with the pinned fingerprint {} (a different server, or a CA it does not send)",
            format_pin(&self.pin)
        )))
    }

    handshake_signatures!();
}

/// `verify-ca` (PostgreSQL): the chain is verified from the CAs; the name is not.
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, algorithms)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The host part of `HOST:PORT` (`[v6]:PORT` too), as a TLS server name.
pub fn server_name(authority: &str) -> Result<ServerName<'static>, String> {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a host name or address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use std::net::TcpListener;

    /// A CA, and a server certificate for `names` signed by it.
    struct Pki {
        ca: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn pki(names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        Pki {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    }

    /// A TLS server on loopback presenting `chain`, handshakes only; its address.
    fn server(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> String {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), tcp);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        break;
                    }
                }
            }
        });
        addr
    }

    fn handshake(addr: &str, trust: Trust) -> Result<(), String> {
        crate::Endpoint::https(addr, &trust)?.connect().map(drop).map_err(|e| e.to_string())
    }

    #[test]
    fn a_ca_is_trusted_for_the_names_it_signed_and_another_ca_is_not() {
        let p = pki(&["127.0.0.1", "localhost"]);
        let addr = server(vec![p.leaf.clone()], p.key.clone_key());
        handshake(&addr, Trust::Ca(vec![p.ca.clone()])).unwrap();
        let other = pki(&["127.0.0.1"]);
        let e = handshake(&addr, Trust::Ca(vec![other.ca])).unwrap_err();
        assert!(e.contains("invalid peer certificate"), "{e}");
        let named = pki(&["posture.example"]);
        let addr = server(vec![named.leaf.clone()], named.key.clone_key());
        let e = handshake(&addr, Trust::Ca(vec![named.ca])).unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
    }

    #[test]
    fn a_pin_names_a_ca_key_of_the_chain_never_the_server_own() {
        let p = pki(&["127.0.0.1"]);
        let ca_pin = public_key_pin(&p.ca).unwrap();
        let with_ca = server(vec![p.leaf.clone(), p.ca.clone()], p.key.clone_key());
        handshake(&with_ca, Trust::Pin(ca_pin)).unwrap();
        // The CA's key pinned, but the server does not send its CA: nothing to verify from.
        let leaf_only = server(vec![p.leaf.clone()], p.key.clone_key());
        let e = handshake(&leaf_only, Trust::Pin(ca_pin)).unwrap_err();
        assert!(e.contains("no key with the pinned fingerprint"), "{e}");
        let e = handshake(&with_ca, Trust::Pin(public_key_pin(&p.leaf).unwrap())).unwrap_err();
        assert!(e.contains("pin its CA's key"), "{e}");
        let e = handshake(&with_ca, Trust::Pin(public_key_pin(&pki(&["x"]).ca).unwrap())).unwrap_err();
        assert!(e.contains("no key with the pinned fingerprint"), "{e}");
        // Another CA's certificate with the pinned CA's name cannot stand in for it: a chain that
        // does not verify from the pinned key is refused (a forged chain from an attacker's CA).
        let forged = pki(&["127.0.0.1"]);
        let forged_addr = server(vec![forged.leaf.clone(), p.ca.clone()], forged.key.clone_key());
        let e = handshake(&forged_addr, Trust::Pin(ca_pin)).unwrap_err();
        assert!(e.contains("invalid peer certificate"), "{e}");
    }

    #[test]
    fn a_server_answering_in_plain_http_is_named_as_such() {
        use std::io::Write;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().flatten() {
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let e = handshake(&addr, Trust::Ca(vec![pki(&["127.0.0.1"]).ca])).unwrap_err();
        assert!(e.contains("plain HTTP"), "{e}");
    }

    #[test]
    fn pins_parse_and_print() {
        let pin = [0xab; 32];
        assert_eq!(parse_pin(&format_pin(&pin)).unwrap(), pin);
        assert_eq!(parse_pin(&"ab".repeat(32)).unwrap(), pin);
        assert!(parse_pin("sha256:abcd").is_err());
        assert!(parse_pin("md5:ab").is_err());
    }
}

//! `posture tls`: a private CA and server certificates, for a deployment without a PKI of its
//! own, and the public-key pins agents enrol with.
//!
//! The CA is an ECDSA P-256 key (DIR/ca.key, 0600) and its self-signed certificate
//! (DIR/ca.pem, ten years); its name is derived from its key, so the key alone is enough to
//! issue again. Each `cert` makes a new server key and certificate: DIR/server.pem (the
//! certificate, then the CA's, the chain `serve --tls-cert` presents) and DIR/server.key
//! (0600), each replaced atomically (the key first). A SIGHUP between the two renames finds a
//! key that is not the certificate's: serve then keeps its certificate and tries again a
//! moment later.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(clap::Subcommand)]
pub enum TlsCmd {
    /// Issue a server certificate from DIR's CA (created with the first certificate), for the
    /// names and addresses clients reach the service at. Replaces DIR/server.pem and
    /// DIR/server.key; a running serve takes them on SIGHUP.
    Cert {
        /// The directory of the CA and the certificates (0700).
        #[arg(long)]
        dir: PathBuf,
        /// A DNS name or IP address the certificate is valid for (repeat it). localhost,
        /// 127.0.0.1 and ::1 are always added: clients on the service's own machine
        /// (credentials.json, the demo's agents) reach it there.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Days the certificate is valid (1 to 825).
        #[arg(long, default_value_t = 397, value_parser = clap::value_parser!(u32).range(1..=825))]
        days: u32,
    },
    /// Print the public-key pin (`sha256:…`) of each certificate of a PEM file, as
    /// `posture-agent enroll --fingerprint` takes it: pin the CA's, not the server's own.
    Fingerprint {
        /// A PEM file of certificates (a CA, or a chain).
        file: PathBuf,
    },
}

pub fn run(cmd: TlsCmd) -> ExitCode {
    let result = match cmd {
        TlsCmd::Cert { dir, names, days } => cert(&dir, &names, days),
        TlsCmd::Fingerprint { file } => fingerprint(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("posture tls: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fingerprint(file: &Path) -> Result<(), String> {
    for cert in client::tls::certificates(file)? {
        println!("{}", client::tls::format_pin(&client::tls::public_key_pin(&cert)?));
    }
    Ok(())
}

const DAY: i64 = 86_400;

/// Valid from the day before `from` (clocks differ) to `days` after it, midnight UTC.
fn validity(params: &mut CertificateParams, from: i64, days: i64) {
    let date = |secs: i64| {
        let (y, m, d) = client::time::utc_date(secs);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    params.not_before = date(from - DAY);
    params.not_after = date(from + days * DAY);
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The CA's certificate parameters, all derived from its key (so that the key alone issues).
fn ca_params(key: &KeyPair, from: i64) -> Result<CertificateParams, String> {
    use rcgen::PublicKeyData;
    let pin = client::tls::format_pin(&client::tls::spki_der_pin(&key.subject_public_key_info()));
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "posture");
    name.push(DnType::CommonName, format!("posture CA {}", &pin[7..19]));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, from, 3650);
    Ok(params)
}

/// What `issue` wrote.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The CA's public-key pin.
    pub ca_pin: String,
    pub names: Vec<String>,
    /// The CA was made by this call.
    pub new_ca: bool,
}

fn cert(dir: &Path, names: &[String], days: u32) -> Result<(), String> {
    let issued = issue(dir, names, days)?;
    if issued.new_ca {
        eprintln!("created the CA {}", issued.ca.display());
    }
    println!(
        "{}",
        serde_json::json!({
            "Certificate": issued.cert,
            "Key": issued.key,
            "CaFile": issued.ca,
            "CaFingerprint": issued.ca_pin,
            "Names": issued.names,
            "Days": days,
        })
    );
    eprintln!(
        "serve with: posture serve --tls-cert {} --tls-key {} --tls-ca {}\nagents enrol with: --ca {} (or --fingerprint {})",
        issued.cert.display(),
        issued.key.display(),
        issued.ca.display(),
        issued.ca.display(),
        issued.ca_pin
    );
    Ok(())
}

/// Issues a server certificate for `names` (default: the loopback names) valid `days`, from
/// DIR's CA, made first when DIR has none.
pub fn issue(dir: &Path, names: &[String], days: u32) -> Result<Issued, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let now = now_secs();
    let (ca_key_path, ca_path) = (dir.join("ca.key"), dir.join("ca.pem"));
    let mut new_ca = false;
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| format!("{} is not a key: {e}", ca_key_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let ca = ca_params(&key, now)?.self_signed(&key).map_err(|e| e.to_string())?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_file(&ca_path, &ca.pem(), 0o644)?;
            new_ca = true;
            key
        }
        Err(e) => return Err(format!("cannot read {}: {e}", ca_key_path.display())),
    };
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(|e| format!("cannot read {}: {e}", ca_path.display()))?;
    let issuer = Issuer::new(ca_params(&ca_key, now)?, &ca_key);

    let mut names: Vec<String> = names.to_vec();
    for local in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == local) {
            names.push(local.to_string());
        }
    }
    let mut params = CertificateParams::new(names.clone()).map_err(|e| format!("a --name is not valid: {e}"))?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "posture");
    subject.push(DnType::CommonName, names[0].clone());
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, i64::from(days));
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let leaf = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    // The key first: a certificate whose key is not yet in place would be refused by serve.
    let (key_path, cert_path) = (dir.join("server.key"), dir.join("server.pem"));
    write_private(&key_path, &key.serialize_pem())?;
    write_file(&cert_path, &format!("{}{}", leaf.pem(), ca_pem), 0o644)?;
    let ca_pin = client::tls::format_pin(&client::tls::public_key_pin(&client::tls::certificates(&ca_path)?[0])?);
    Ok(Issued { cert: cert_path, key: key_path, ca: ca_path, ca_pin, names, new_ca })
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    write_file(path, text, 0o600)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    crate::files::write_atomic(path, text, mode).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

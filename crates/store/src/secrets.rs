//! Secrets at rest. AccessKey secrets (and, later, cloud credentials) are sealed with a master
//! key that lives in its own file beside the database (`master.key`, mode 0600), never in it:
//! a copy of the database alone hands out no working key. XChaCha20-Poly1305 with a random
//! nonce per secret; the row's id is the associated data, so a sealed secret moved to another
//! row does not open.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE: usize = 24;

/// Seals and opens secrets with the master key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// Reads the master key at `path`, creating it (32 random bytes, hex, mode 0600) if it is
    /// absent and `may_create`.
    pub fn load(path: &Path, may_create: bool) -> io::Result<Sealer> {
        let key = match read_key(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && may_create => create_key(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::other(format!(
                    "{} is missing: the secrets in this database cannot be opened without the master key they were sealed with",
                    path.display()
                )))
            }
            other => other?,
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| io::Error::other("bad key length"))?;
        Ok(Sealer { cipher })
    }

    /// Seals `plain` bound to `aad`.
    pub fn seal(&self, aad: &str, plain: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::getrandom(&mut nonce).expect("the OS random source works");
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: aad.as_bytes() })
            .expect("encryption of a short secret cannot fail");
        [nonce.to_vec(), ct].concat()
    }

    /// Opens a sealed secret; None if it was sealed with another key or for another row.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Option<String> {
        if sealed.len() < NONCE {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE);
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() }).ok()?;
        String::from_utf8(plain).ok()
    }
}

fn read_key(path: &Path) -> io::Result<Vec<u8>> {
    let mut text = String::new();
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    hex::decode(text.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| io::Error::other(format!("{} is not a master key (64 hex digits)", path.display())))
}

/// Writes a new key beside `path` and links it into place only if no key is there: a process
/// starting at the same moment (another node on the same data directory) either wins, or reads
/// the winner's whole key — never a half-written file.
fn create_key(path: &Path) -> io::Result<Vec<u8>> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("new.{}.{}", std::process::id(), hex::encode(&key[..4])));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(key.to_vec()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::load(&dir.path().join("master.key"), true).unwrap();
        let sealed = s.seal("LTAIkey1", "the-secret");
        assert!(!sealed.windows(10).any(|w| w == b"the-secret"));
        assert_eq!(s.open("LTAIkey1", &sealed).as_deref(), Some("the-secret"));
        assert_eq!(s.open("LTAIkey2", &sealed), None, "bound to its row");
        let again = Sealer::load(&dir.path().join("master.key"), true).unwrap();
        assert_eq!(again.open("LTAIkey1", &sealed).as_deref(), Some("the-secret"), "the key file is reused");
        let other = Sealer::load(&dir.path().join("other.key"), true).unwrap();
        assert_eq!(other.open("LTAIkey1", &sealed), None, "another master key opens nothing");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("master.key")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(Sealer::load(&dir.path().join("absent.key"), false).is_err());
    }
}

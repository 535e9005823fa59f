//! The embedded deployment's `SecretBox`: ChaCha20-Poly1305 with a 256-bit key kept in the
//! data directory (mode 0600) or given by the environment. Sealed text is
//! `v1:<base64(nonce ‖ ciphertext ‖ tag)>` so the format can change without ambiguity.
//!
//! The cipher is ring's, which rustls already links for TLS: a second ChaCha20-Poly1305
//! implementation would only make every binary larger (BENCHMARKS.md, requirement 1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::ports::{PortError, SecretBox};

const PREFIX: &str = "v1:";

pub struct LocalSecretBox {
    // "Less safe" only in that ring leaves nonces to the caller: each seal draws a random
    // 96-bit one.
    cipher: LessSafeKey,
}

impl LocalSecretBox {
    /// `key` must be 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, PortError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| PortError::fatal("the sealing key must be 32 bytes"))?;
        Ok(LocalSecretBox {
            cipher: LessSafeKey::new(key),
        })
    }

    /// Reads the hex key at `path`, creating a random one (mode 0600) on first use.
    pub fn from_key_file(path: &std::path::Path) -> Result<Self, PortError> {
        let hex = match std::fs::read_to_string(path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| PortError::fatal(e.to_string()))?;
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                crate::embedded::write_private(path, &hex).map_err(|e| {
                    PortError::fatal(format!("cannot write {}: {e}", path.display()))
                })?;
                hex
            }
            Err(e) => {
                return Err(PortError::fatal(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        Self::new(
            &decode_hex(&hex)
                .ok_or_else(|| PortError::fatal("the sealing key file is not 64 hex digits"))?,
        )
    }
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

impl SecretBox for LocalSecretBox {
    fn seal(&self, plaintext: &[u8]) -> Result<String, PortError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| PortError::fatal(e.to_string()))?;
        let mut sealed = plaintext.to_vec();
        self.cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| PortError::fatal("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    fn open(&self, sealed: &str) -> Result<Vec<u8>, PortError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| PortError::fatal("sealed text is malformed"))?;
        let mut bytes = bytes;
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let refused = || PortError::fatal("sealed text does not open with this key");
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| refused())?;
        let len = self
            .cipher
            .open_in_place(nonce, Aad::empty(), &mut ciphertext)
            .map_err(|_| refused())?
            .len();
        ciphertext.truncate(len);
        Ok(ciphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let b = LocalSecretBox::new(&[7u8; 32]).expect("key");
        let sealed = b.seal(b"postgres://u:hunter2@db/x").expect("seal");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            b.seal(b"postgres://u:hunter2@db/x").expect("seal"),
            "random nonce"
        );
        assert_eq!(b.open(&sealed).expect("open"), b"postgres://u:hunter2@db/x");
    }

    #[test]
    fn opens_what_the_previous_implementation_sealed() {
        // Sealed with the RustCrypto `chacha20poly1305` crate this box used before: the
        // format and the cipher are the same, so stored secrets keep opening.
        let sealed = "v1:0b1707wIY7YjI4aiJh3LSE+0OKT5TvLIKdiqpGkVeEISoV9yHRu7DBZSYCn+e3Ab/9pNjWk=";
        let b = LocalSecretBox::new(&[7u8; 32]).expect("key");
        assert_eq!(b.open(sealed).expect("open"), b"postgres://u:hunter2@db/x");
    }

    #[test]
    fn refuses_other_keys_tampering_and_garbage() {
        let a = LocalSecretBox::new(&[1u8; 32]).expect("key");
        let b = LocalSecretBox::new(&[2u8; 32]).expect("key");
        let sealed = a.seal(b"secret").expect("seal");
        assert!(b.open(&sealed).is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(a.open(&String::from_utf8_lossy(&tampered)).is_err());
        assert!(a.open("v1:").is_err());
        assert!(a.open("plain").is_err());
        assert!(LocalSecretBox::new(&[0u8; 16]).is_err());
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let a = LocalSecretBox::from_key_file(&path).expect("create");
        let sealed = a.seal(b"x").expect("seal");
        let b = LocalSecretBox::from_key_file(&path).expect("reopen");
        assert_eq!(b.open(&sealed).expect("open"), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }
}

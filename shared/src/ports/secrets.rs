//! Sealing secrets before they reach the state store (connection credentials). Locally a
//! key in the data directory seals them; in AWS a managed key does. The store only ever
//! sees the sealed text.

use super::PortError;

pub trait SecretBox: Send + Sync {
    /// Encrypts and authenticates `plaintext`; the result is safe to store.
    fn seal(&self, plaintext: &[u8]) -> Result<String, PortError>;
    /// Reverses `seal`; fails if the text was not sealed with this box's key or was altered.
    fn open(&self, sealed: &str) -> Result<Vec<u8>, PortError>;
}

//! Key files and peer ids: what operators and departments handle on disk.
//!
//! A key file holds the 32-byte Ed25519 secret as 64 hex characters, mode 0600, and is
//! never overwritten: losing a node or department key is unrecoverable, so every write
//! here creates a new file or fails.

use std::io::Write;
use std::path::Path;

use credfed_protocol::crypto::{Keypair, PublicKey};
use thiserror::Error;

/// A key file that cannot be used.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// The content is not 64 hex characters.
    #[error("{path}: expected 64 hex characters (a 32-byte Ed25519 secret)")]
    Format {
        /// The file.
        path: String,
    },
    /// The operating system gave no randomness.
    #[error("no entropy from the operating system: {0}")]
    Entropy(String),
}

/// Reads a hex secret key file.
pub fn read_key(path: &Path) -> Result<Keypair, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::Io {
        path: path.display().to_string(),
        detail: format!("cannot read the key ({e})"),
    })?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| KeyFileError::Format {
        path: path.display().to_string(),
    })?;
    Ok(Keypair::from_secret(secret))
}

/// Writes a secret file with mode 0600, refusing to overwrite an existing file.
pub fn write_secret(path: &Path, hex_text: &str) -> Result<(), KeyFileError> {
    write_new(path, hex_text.as_bytes(), 0o600)
}

/// Writes a public key file (hex and a newline, mode 0644), refusing to overwrite.
pub fn write_public(path: &Path, hex_text: &str) -> Result<(), KeyFileError> {
    write_new(path, format!("{hex_text}\n").as_bytes(), 0o644)
}

/// Creates `path` with `mode` and `bytes`, synced; never over an existing file.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |detail: String| KeyFileError::Io {
        path: path.display().to_string(),
        detail,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            io(format!(
                "cannot create it ({e}); a key file is never overwritten"
            ))
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(format!("cannot write it ({e})")))
}

/// 32 bytes from the operating system.
pub fn random_secret() -> Result<[u8; 32], KeyFileError> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| KeyFileError::Entropy(e.to_string()))?;
    Ok(s)
}

/// The operating system's generator behind the `rand_core` traits that the person key's
/// ceremony (frost) takes.
pub struct SystemRng;

impl credfed_protocol::oprf::keygen::frost::rand_core::RngCore for SystemRng {
    fn next_u32(&mut self) -> u32 {
        credfed_protocol::oprf::keygen::frost::rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        credfed_protocol::oprf::keygen::frost::rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // The trait cannot fail here; an operating system without entropy cannot run a
        // node at all (keys are made the same way), so this aborts the ceremony loudly.
        if let Err(e) = getrandom::fill(dest) {
            panic!("the operating system gave no random bytes: {e}");
        }
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), credfed_protocol::oprf::keygen::frost::rand_core::Error> {
        use credfed_protocol::oprf::keygen::frost::rand_core::Error;
        getrandom::fill(dest).map_err(|_| {
            Error::from(
                std::num::NonZeroU32::new(Error::CUSTOM_START).unwrap_or(std::num::NonZeroU32::MIN),
            )
        })
    }
}

impl credfed_protocol::oprf::keygen::frost::rand_core::CryptoRng for SystemRng {}

/// The libp2p PeerId of a node key, as text: base58 of the identity multihash of the
/// protobuf-encoded public key (libp2p's peer-id specification), so that tools can print
/// it without linking libp2p. The node's tests compare it with libp2p's own.
pub fn peer_id(key: &PublicKey) -> String {
    // PublicKey { Type = Ed25519 (1), Data = 32 bytes } in protobuf.
    let mut proto = vec![0x08, 0x01, 0x12, 0x20];
    proto.extend_from_slice(&key.0);
    // Keys of at most 42 bytes are inlined with the identity hash (code 0x00).
    let mut multihash = vec![0x00, proto.len() as u8];
    multihash.extend_from_slice(&proto);
    bs58::encode(multihash).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_of_an_ed25519_key_starts_like_libp2p_ids() {
        let k = Keypair::from_secret([7; 32]);
        // Every Ed25519 peer id is 52 characters starting with 12D3KooW.
        let id = peer_id(&k.public());
        assert!(id.starts_with("12D3KooW") && id.len() == 52, "{id}");
    }

    #[test]
    fn key_files_are_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("credfed-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.key");
        let _ = std::fs::remove_file(&p);
        write_secret(&p, &hex::encode([1u8; 32])).unwrap();
        let e = write_secret(&p, &hex::encode([2u8; 32])).unwrap_err();
        assert!(e.to_string().contains("never overwritten"), "{e}");
        assert_eq!(read_key(&p).unwrap().secret_bytes(), [1u8; 32]);
        std::fs::write(&p, "zz").unwrap();
        assert!(matches!(read_key(&p), Err(KeyFileError::Format { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

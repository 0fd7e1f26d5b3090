//! Natural persons in records: a keyed, deliberately slow hash and a masked form, never
//! the clear number (the threat model is docs/privacy.md).
//!
//! Why keyed: identity numbers have little entropy (region, birth date, a 3-digit
//! sequence), so a plain hash could be reversed by enumeration. The key is a federation
//! secret held in node configuration, not in any record or database, so a copied log
//! alone does not reveal who is on it, while every member node can still answer a query
//! made with the clear number.
//!
//! Why slow, and why the mask shows so little: every member node holds the key, so the
//! hash alone does not stop a member from enumerating candidates. The mask keeps only
//! the provincial-level prefix (not the county, birth date, sequence or sex), which
//! leaves about 5 × 10^9 candidates per person, and the hash is PBKDF2-HMAC-SHA256 with a
//! federation-wide iteration count (16 384 by default, about 2 ms), so recovering one
//! listed person's number costs a member about 0.3 core-years on CPUs (less on GPUs:
//! docs/privacy.md says what is and is not provided), while a check by a clear number
//! costs one hash.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use super::resident_id::{self, ResidentIdError};
use crate::crypto::Hash256;

/// The federation secret that keys person hashes, with the federation's iteration count.
/// Never encoded into records.
pub struct PersonHashKey {
    secret: Vec<u8>,
    iterations: u32,
}

/// Iterations of PBKDF2 per person hash unless the manifest says otherwise.
pub const DEFAULT_PERSON_HASH_ITERATIONS: u32 = 16_384;

/// The key is too short to resist enumeration of identity numbers.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("person_hash_key: {0} bytes, at least 32 required")]
pub struct ShortKeyError(pub usize);

impl PersonHashKey {
    /// Wraps a secret of at least 32 bytes, with the default iteration count.
    pub fn new(secret: &[u8]) -> Result<PersonHashKey, ShortKeyError> {
        if secret.len() < 32 {
            return Err(ShortKeyError(secret.len()));
        }
        Ok(PersonHashKey {
            secret: secret.to_vec(),
            iterations: DEFAULT_PERSON_HASH_ITERATIONS,
        })
    }

    /// The same key with the iteration count the federation's manifest sets (every
    /// member must use the same, or their hashes would not match).
    pub fn with_iterations(mut self, iterations: u32) -> PersonHashKey {
        self.iterations = iterations.max(1);
        self
    }

    /// The iteration count in use.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

impl std::fmt::Debug for PersonHashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonHashKey(..)")
    }
}

/// How a natural person appears in a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersonRef {
    /// PBKDF2-HMAC-SHA256(password = federation secret, salt = "credfed-person-v2" ||
    /// number, the federation's iteration count).
    pub id_hash: Hash256,
    /// The provincial-level prefix and sixteen `*`: `11****************`.
    pub masked: String,
    /// Name as on the decision document.
    pub name: String,
}

/// PBKDF2-HMAC-SHA256 (RFC 8018), one 32-byte block.
fn pbkdf2_sha256(password: &[u8], salt: &[&[u8]], iterations: u32) -> [u8; 32] {
    // HMAC accepts any key length: the error arm cannot happen.
    let Ok(prf) = Hmac::<Sha256>::new_from_slice(password) else {
        return [0; 32];
    };
    let mut mac = prf.clone();
    for part in salt {
        mac.update(part);
    }
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut t = u;
    for _ in 1..iterations {
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (ti, ui) in t.iter_mut().zip(u) {
            *ti ^= ui;
        }
    }
    t
}

/// Hash of a resident identity number under the federation secret.
pub fn person_hash(key: &PersonHashKey, normalised_number: &str) -> Hash256 {
    Hash256(pbkdf2_sha256(
        &key.secret,
        &[b"credfed-person-v2", normalised_number.as_bytes()],
        key.iterations,
    ))
}

/// The masked form of a valid 18-character number: the provincial-level prefix only.
pub fn mask(normalised_number: &str) -> String {
    let n = normalised_number;
    if n.len() != 18 || !n.is_ascii() {
        return "*".repeat(18);
    }
    format!("{}{}", &n[..2], "*".repeat(16))
}

/// True when `masked` has the shape [`mask`] produces.
pub fn is_masked_form(masked: &str) -> bool {
    let b = masked.as_bytes();
    b.len() == 18 && b[..2].iter().all(u8::is_ascii_digit) && b[2..].iter().all(|&c| c == b'*')
}

/// Validates a clear number and turns it into the form records carry.
pub fn person_ref(
    key: &PersonHashKey,
    clear_number: &str,
    name: &str,
    field: &'static str,
) -> Result<PersonRef, ResidentIdError> {
    let n = resident_id::normalise(clear_number);
    resident_id::validate(&n, field)?;
    Ok(PersonRef {
        id_hash: person_hash(key, &n),
        masked: mask(&n),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7914 §11's PBKDF2-HMAC-SHA256 vectors (first 32 bytes), also given by
    /// Python's `hashlib.pbkdf2_hmac`.
    #[test]
    fn pbkdf2_matches_the_published_vectors() {
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(pbkdf2_sha256(b"passwd", &[b"salt"], 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hex(pbkdf2_sha256(b"Password", &[b"Na", b"Cl"], 80_000)),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        );
    }

    #[test]
    fn hash_depends_on_key_and_number_and_clear_number_is_absent() {
        let k1 = PersonHashKey::new(&[1; 32]).unwrap().with_iterations(16);
        let k2 = PersonHashKey::new(&[2; 32]).unwrap().with_iterations(16);
        let a = person_ref(&k1, "11010519491231002x", "张三", "p").unwrap();
        assert_eq!(a.masked, "11****************");
        // The iteration count is part of the hash: members must share it.
        assert_ne!(
            a.id_hash,
            person_ref(
                &PersonHashKey::new(&[1; 32]).unwrap().with_iterations(17),
                "11010519491231002X",
                "张三",
                "p"
            )
            .unwrap()
            .id_hash
        );
        assert!(is_masked_form(&a.masked));
        assert_ne!(
            a.id_hash,
            person_ref(&k2, "11010519491231002X", "张三", "p")
                .unwrap()
                .id_hash
        );
        assert_ne!(
            a.id_hash,
            person_ref(&k1, "440304200002290014", "张三", "p")
                .unwrap()
                .id_hash
        );
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            !json.contains("19491231") && !json.contains("110105") && !json.contains("002X"),
            "{json}"
        );
        assert!(PersonHashKey::new(&[0; 16]).is_err());
    }
}

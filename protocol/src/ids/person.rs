//! Natural persons in records: a keyed hash and a masked form, never the clear number.
//!
//! Why keyed: identity numbers have little entropy (region, birth date, a 3-digit
//! sequence), so a plain hash could be reversed by enumeration. The HMAC key is a
//! federation secret held in node configuration, not in any record or database, so
//! a copied log alone does not reveal who is on it, while every member node can
//! still answer a query made with the clear number.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use super::resident_id::{self, ResidentIdError};
use crate::crypto::Hash256;

/// The federation secret that keys person hashes. Never encoded into records.
pub struct PersonHashKey(Vec<u8>);

/// The key is too short to resist enumeration of identity numbers.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("person_hash_key: {0} bytes, at least 32 required")]
pub struct ShortKeyError(pub usize);

impl PersonHashKey {
    /// Wraps a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<PersonHashKey, ShortKeyError> {
        if secret.len() < 32 {
            return Err(ShortKeyError(secret.len()));
        }
        Ok(PersonHashKey(secret.to_vec()))
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
    /// HMAC-SHA256(federation secret, "credfed-person-v1" || number).
    pub id_hash: Hash256,
    /// First 6 and last 4 characters, the middle eight masked: `110105********002X`.
    pub masked: String,
    /// Name as on the decision document.
    pub name: String,
}

/// Hash of a resident identity number under the federation secret.
pub fn person_hash(key: &PersonHashKey, normalised_number: &str) -> Hash256 {
    // new_from_slice accepts any key length for HMAC; the error arm is unreachable.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key.0) {
        Ok(m) => m,
        Err(_) => return Hash256([0; 32]),
    };
    mac.update(b"credfed-person-v1");
    mac.update(normalised_number.as_bytes());
    Hash256(mac.finalize().into_bytes().into())
}

/// The masked form of a valid 18-character number.
pub fn mask(normalised_number: &str) -> String {
    let n = normalised_number;
    if n.len() != 18 || !n.is_ascii() {
        return "*".repeat(18);
    }
    format!("{}********{}", &n[..6], &n[14..])
}

/// True when `masked` has the shape [`mask`] produces.
pub fn is_masked_form(masked: &str) -> bool {
    let b = masked.as_bytes();
    b.len() == 18
        && b[..6].iter().all(u8::is_ascii_digit)
        && b[6..14].iter().all(|&c| c == b'*')
        && b[14..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X')
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

    #[test]
    fn hash_depends_on_key_and_number_and_clear_number_is_absent() {
        let k1 = PersonHashKey::new(&[1; 32]).unwrap();
        let k2 = PersonHashKey::new(&[2; 32]).unwrap();
        let a = person_ref(&k1, "11010519491231002x", "张三", "p").unwrap();
        assert_eq!(a.masked, "110105********002X");
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
        assert!(!json.contains("19491231"), "{json}");
        assert!(PersonHashKey::new(&[0; 16]).is_err());
    }
}

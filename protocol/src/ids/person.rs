//! Natural persons in records: a person key and a masked form, never the clear number
//! (the threat model is docs/privacy.md).
//!
//! Why keyed: identity numbers have little entropy (region, birth date, a 3-digit
//! sequence), so a plain hash could be reversed by enumeration. The key is the
//! federation's threshold OPRF key ([`crate::oprf`]): no member holds it, t members
//! together evaluate it on a blinded number without seeing the number, so neither a
//! copied log nor a member (nor fewer than t colluding members) can test candidates
//! offline, while every member can still key a number its departments ask about.
//!
//! Why the mask shows so little: it keeps only the provincial-level prefix (not the
//! county, birth date, sequence or sex), which leaves about 5 × 10^9 candidates per
//! person; online enumeration through the members is bounded by their budgets.

use serde::{Deserialize, Serialize};

use super::resident_id::{self, ResidentIdError};
use crate::crypto::Hash256;

/// How a natural person appears in a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersonRef {
    /// The person key: the first 32 bytes of the federation's OPRF of the normalised
    /// number (RFC 9497, ristretto255-SHA512; [`crate::oprf`]).
    pub id_hash: Hash256,
    /// The provincial-level prefix and sixteen `*`: `11****************`.
    pub masked: String,
    /// Name as on the decision document.
    pub name: String,
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

/// Validates a clear number and returns it normalised (upper-case check character), the
/// form that is keyed and masked.
pub fn normalised_number(
    clear_number: &str,
    field: &'static str,
) -> Result<String, ResidentIdError> {
    let n = resident_id::normalise(clear_number);
    resident_id::validate(&n, field)?;
    Ok(n)
}

/// Validates a clear number and turns it into the form records carry, keyed by
/// `key_of` (the members' threshold evaluation at a node, or a whole key in tests).
pub fn person_ref(
    key_of: impl FnOnce(&str) -> Hash256,
    clear_number: &str,
    name: &str,
    field: &'static str,
) -> Result<PersonRef, ResidentIdError> {
    let n = normalised_number(clear_number, field)?;
    Ok(PersonRef {
        id_hash: key_of(&n),
        masked: mask(&n),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_key_and_number_and_clear_number_is_absent() {
        let k1 = crate::oprf::ShareKey::from_bytes(1, [1; 32]).unwrap();
        let k2 = crate::oprf::ShareKey::from_bytes(1, [2; 32]).unwrap();
        fn key(k: &crate::oprf::ShareKey) -> impl FnOnce(&str) -> Hash256 + '_ {
            move |n: &str| crate::oprf::person_key_with_whole_key(k, n)
        }
        let a = person_ref(key(&k1), "11010519491231002x", "张三", "p").unwrap();
        assert_eq!(a.masked, "11****************");
        assert_eq!(
            a.id_hash,
            person_ref(key(&k1), "11010519491231002X", "张三", "p")
                .unwrap()
                .id_hash,
            "the check character's case does not matter"
        );
        assert!(is_masked_form(&a.masked));
        assert_ne!(
            a.id_hash,
            person_ref(key(&k2), "11010519491231002X", "张三", "p")
                .unwrap()
                .id_hash
        );
        assert_ne!(
            a.id_hash,
            person_ref(key(&k1), "440304200002290014", "张三", "p")
                .unwrap()
                .id_hash
        );
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            !json.contains("19491231") && !json.contains("110105") && !json.contains("002X"),
            "{json}"
        );
        assert!(person_ref(key(&k1), "11010519491231002Y", "张三", "p").is_err());
    }
}

//! Identifiers: regions, organisations, persons, departments. Each parser returns a
//! typed error that names the field and the rule it breaks.

pub mod department;
pub mod person;
pub mod region;
pub mod resident_id;
pub mod uscc;

pub use department::{DepartmentId, Role};
pub use person::PersonRef;
pub use region::{PROVINCES, Province, RegionCode};

/// The kinds of subject identifier a text may be.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    /// Unified Social Credit Code (GB 32100-2015).
    Uscc,
    /// Resident identity number (GB 11643-1999).
    ResidentId,
}

/// What a text is as each kind of identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The text, normalised (trimmed, upper case).
    pub normalised: String,
    /// For every kind: valid, or the rule it breaks.
    pub as_kind: Vec<(IdentifierKind, Result<(), String>)>,
}

impl Detection {
    /// The kinds the text is valid as (an 18-digit number can be both).
    pub fn valid_kinds(&self) -> Vec<IdentifierKind> {
        self.as_kind
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(k, _)| *k)
            .collect()
    }
}

/// Tries a text as every kind of identifier: nothing is guessed from its shape, so an
/// all-digit identity number is not mistaken for a code, nor the reverse.
pub fn detect(text: &str) -> Detection {
    let n = text.trim().to_ascii_uppercase();
    Detection {
        as_kind: vec![
            (
                IdentifierKind::Uscc,
                uscc::validate(&n, "code").map_err(|e| e.to_string()),
            ),
            (
                IdentifierKind::ResidentId,
                resident_id::validate(&n, "code").map_err(|e| e.to_string()),
            ),
        ],
        normalised: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An all-digit identity number is found valid as one; a code as a code; a text that
    /// is both is reported as both.
    #[test]
    fn detection_tries_every_kind() {
        let d = detect("440524188001010014");
        assert_eq!(d.valid_kinds(), vec![IdentifierKind::ResidentId]);
        let d = detect(" 91100000100003962t ");
        assert_eq!(d.normalised, "91100000100003962T");
        assert_eq!(d.valid_kinds(), vec![IdentifierKind::Uscc]);
        // 911000001000013428 (中国银行) is all digits: only its check character decides.
        let d = detect("911000001000013428");
        assert!(d.valid_kinds().contains(&IdentifierKind::Uscc));
        let d = detect("123");
        assert!(d.valid_kinds().is_empty());
        assert!(
            d.as_kind
                .iter()
                .all(|(_, r)| r.as_ref().is_err_and(|e| e.contains("18")))
        );
    }
}

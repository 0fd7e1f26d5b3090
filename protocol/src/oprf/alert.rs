//! A member's signed report that an asking member exceeded its person-key budget there,
//! gossiped to every member so that operators everywhere see an enumeration, not only
//! the members it asked (docs/privacy.md, "What each party can do").
//!
//! The report is signed with the reporting member's node key (the manifest names it), so
//! a member cannot report in another's name; a member can still report falsely about an
//! asker, which is why a report is shown as "member X reports", never acted on
//! automatically.

use serde::{Deserialize, Serialize};

use crate::crypto::{Domain, Keypair, PublicKey, Signature, SignatureError};
use crate::ids::RegionCode;

/// Largest encoded report: two region codes, two numbers and a signature (about 90
/// bytes), with room for the encoding's lengths.
pub const MAX_ALERT_BYTES: usize = 256;

/// What a member saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetAlert {
    /// The member that refused.
    pub reporter: RegionCode,
    /// The asking member it refused over its budget.
    pub asker: RegionCode,
    /// Requests it refused that asker over budget since it started.
    pub refused: u64,
    /// When (ms since the epoch, the reporter's clock).
    pub at_ms: i64,
}

/// A report with the reporter's node signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBudgetAlert {
    /// The report.
    pub alert: BudgetAlert,
    /// The reporter's node key over the report's encoding.
    pub signature: Signature,
}

impl SignedBudgetAlert {
    /// Signs `alert` with the reporter's node key.
    pub fn sign(
        alert: BudgetAlert,
        node_key: &Keypair,
        federation_id: &str,
    ) -> Result<SignedBudgetAlert, crate::codec::EncodeError> {
        let payload = crate::codec::encode(&alert)?;
        let signature = node_key.sign(Domain::BudgetAlert, federation_id, &payload);
        Ok(SignedBudgetAlert { alert, signature })
    }

    /// Checks the signature against the reporter's node key (from the manifest).
    pub fn verify(
        &self,
        reporter_key: &PublicKey,
        federation_id: &str,
    ) -> Result<(), SignatureError> {
        let payload = crate::codec::encode(&self.alert)
            .map_err(|_| SignatureError::BadSignature { field: "alert" })?;
        reporter_key.verify(
            Domain::BudgetAlert,
            federation_id,
            &payload,
            &self.signature,
            "alert.signature",
        )
    }
}

/// Decodes a gossiped report, whole buffer, within its limit.
pub fn decode_alert(bytes: &[u8]) -> Result<SignedBudgetAlert, crate::codec::DecodeError> {
    crate::codec::decode(bytes, MAX_ALERT_BYTES, "budget alert")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report verifies under its reporter's key and federation only; an edited count
    /// or asker does not verify; a mangled encoding does not decode.
    #[test]
    fn a_budget_alert_verifies_only_as_signed() {
        let key = Keypair::from_secret([5; 32]);
        let other = Keypair::from_secret([6; 32]);
        let alert = BudgetAlert {
            reporter: RegionCode::new(620000, "r").unwrap(),
            asker: RegionCode::new(310000, "r").unwrap(),
            refused: 7,
            at_ms: 1_800_000_000_000,
        };
        let signed = SignedBudgetAlert::sign(alert, &key, "cn-credit").unwrap();
        signed.verify(&key.public(), "cn-credit").unwrap();
        assert!(signed.verify(&other.public(), "cn-credit").is_err());
        assert!(signed.verify(&key.public(), "cn-other").is_err());
        let mut edited = signed.clone();
        edited.alert.refused = 0;
        assert!(edited.verify(&key.public(), "cn-credit").is_err());
        let mut edited = signed.clone();
        edited.alert.asker = RegionCode::new(440000, "r").unwrap();
        assert!(edited.verify(&key.public(), "cn-credit").is_err());
        let bytes = crate::codec::encode(&signed).unwrap();
        assert!(bytes.len() <= MAX_ALERT_BYTES);
        assert_eq!(decode_alert(&bytes).unwrap(), signed);
        assert!(decode_alert(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_alert(&longer).is_err());
    }
}

//! The web console's login: a department proves it holds its signing key by signing a
//! challenge the node made, in the browser, so that the key never leaves the department
//! (docs/console.md, "Login").
//!
//! Security notes.
//! - Requires: the challenge is random, single-use and short-lived (the node keeps it);
//!   the key checked is the one the department's registration record names (or, for
//!   `REGION:node`, the node key the manifest names).
//! - Provides: a signature made for a login can never be taken for a record, an answer
//!   or a checkpoint — its tag names its own domain (`console-login-sig`), and the
//!   message names the node's region, the department and the challenge, so a signature
//!   given to one node or for one department does not log in at another.
//! - Does not provide: protection against a node that serves the console's script
//!   itself turning hostile (the department trusts the node it logs in to, as with its
//!   API); the script refuses to sign anything but a login or a record body tag.

use crate::crypto::{Domain, PublicKey, Signature, SignatureError, tag};
use crate::ids::{DepartmentId, RegionCode};

/// Bytes of a login challenge.
pub const CHALLENGE_BYTES: usize = 32;

/// What a login signature covers after its tag: `u8 len || region code || u8 len ||
/// department id || challenge`.
pub fn login_payload(
    node_region: RegionCode,
    department: &DepartmentId,
    challenge: &[u8; CHALLENGE_BYTES],
) -> Vec<u8> {
    let region = node_region.to_string();
    let dept = department.to_string();
    let mut p = Vec::with_capacity(2 + region.len() + dept.len() + CHALLENGE_BYTES);
    // Region codes and department ids are short validated ASCII (< 256 bytes each).
    p.push(region.len().min(255) as u8);
    p.extend_from_slice(&region.as_bytes()[..region.len().min(255)]);
    p.push(dept.len().min(255) as u8);
    p.extend_from_slice(&dept.as_bytes()[..dept.len().min(255)]);
    p.extend_from_slice(challenge);
    p
}

/// The whole message the browser signs: the tag of [`Domain::ConsoleLogin`] followed by
/// [`login_payload`].
pub fn login_message(
    federation_id: &str,
    node_region: RegionCode,
    department: &DepartmentId,
    challenge: &[u8; CHALLENGE_BYTES],
) -> Vec<u8> {
    let mut m = tag(Domain::ConsoleLogin, federation_id);
    m.extend_from_slice(&login_payload(node_region, department, challenge));
    m
}

/// Checks a login signature under the department's key.
pub fn verify_login(
    key: &PublicKey,
    federation_id: &str,
    node_region: RegionCode,
    department: &DepartmentId,
    challenge: &[u8; CHALLENGE_BYTES],
    signature: &Signature,
) -> Result<(), SignatureError> {
    key.verify(
        Domain::ConsoleLogin,
        federation_id,
        &login_payload(node_region, department, challenge),
        signature,
        "signature",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn dept(s: &str) -> DepartmentId {
        DepartmentId::parse(s, "d").unwrap()
    }

    fn region(s: &str) -> RegionCode {
        RegionCode::parse(s, "r").unwrap()
    }

    /// What the browser does: a plain Ed25519 signature over the whole message.
    fn browser_sign(key: &Keypair, message: &[u8]) -> Signature {
        let sk = ed25519_dalek::SigningKey::from_bytes(&key.secret_bytes());
        use ed25519_dalek::Signer;
        Signature(sk.sign(message).to_bytes())
    }

    #[test]
    fn a_browser_signature_over_the_login_message_verifies() {
        let key = Keypair::from_secret([7; 32]);
        let d = dept("110000:scjgj");
        let c = [9u8; CHALLENGE_BYTES];
        let m = login_message("fed", region("110000"), &d, &c);
        let sig = browser_sign(&key, &m);
        verify_login(&key.public(), "fed", region("110000"), &d, &c, &sig).unwrap();
    }

    #[test]
    fn a_login_signature_binds_node_department_challenge_and_federation() {
        let key = Keypair::from_secret([7; 32]);
        let d = dept("110000:scjgj");
        let c = [9u8; CHALLENGE_BYTES];
        let sig = browser_sign(&key, &login_message("fed", region("110000"), &d, &c));
        let other_c = [8u8; CHALLENGE_BYTES];
        assert!(verify_login(&key.public(), "fed", region("310000"), &d, &c, &sig).is_err());
        assert!(
            verify_login(
                &key.public(),
                "fed",
                region("110000"),
                &dept("110000:fgw"),
                &c,
                &sig
            )
            .is_err()
        );
        assert!(verify_login(&key.public(), "fed", region("110000"), &d, &other_c, &sig).is_err());
        assert!(verify_login(&key.public(), "fed2", region("110000"), &d, &c, &sig).is_err());
        let other_key = Keypair::from_secret([6; 32]);
        assert!(verify_login(&other_key.public(), "fed", region("110000"), &d, &c, &sig).is_err());
    }

    #[test]
    fn a_login_signature_is_never_a_record_signature() {
        let key = Keypair::from_secret([7; 32]);
        let d = dept("110000:scjgj");
        let c = [9u8; CHALLENGE_BYTES];
        let payload = login_payload(region("110000"), &d, &c);
        let as_body = key.sign(Domain::Body, "fed", &payload);
        assert!(verify_login(&key.public(), "fed", region("110000"), &d, &c, &as_body).is_err());
        let login = browser_sign(&key, &login_message("fed", region("110000"), &d, &c));
        assert!(
            key.public()
                .verify(Domain::Body, "fed", &payload, &login, "signature")
                .is_err()
        );
    }
}

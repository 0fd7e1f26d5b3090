//! Hashes, keys, signatures and the domain-separation tags they are used under.
//!
//! Every signature in credfed is over `tag(kind, federation) || payload`, where the tag
//! names the signed type, the protocol version and the federation id (see
//! `docs/protocol.md`). Nothing signed for one purpose or one federation verifies
//! for another.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::PROTOCOL_VERSION;

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                $crate::codec::lower_hex(&self.0)
            }
            /// Parses lower- or upper-case hex of exactly the right length.
            pub fn from_hex(text: &str) -> Result<Self, HexError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(text, &mut out).map_err(|_| HexError {
                    what: stringify!($name),
                    expected_len: $len * 2,
                })?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_fixed(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_fixed::<D, $len>(d).map(Self)
            }
        }
    };
}

fixed_bytes!(
    /// A SHA-256 digest.
    Hash256,
    32
);
fixed_bytes!(
    /// An Ed25519 public key (32 bytes, compressed Edwards point).
    PublicKey,
    32
);
fixed_bytes!(
    /// An Ed25519 signature (R || s).
    Signature,
    64
);

/// Hex text of the wrong length or alphabet.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{what}: expected {expected_len} hex characters")]
pub struct HexError {
    /// Type being parsed.
    pub what: &'static str,
    /// Number of hex characters required.
    pub expected_len: usize,
}

/// Fixed-size bytes: raw in binary encodings (no length prefix, the size is known),
/// hex in human-readable ones (JSON, TOML).
fn serialize_fixed<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeTuple;
    if s.is_human_readable() {
        return s.serialize_str(&crate::codec::lower_hex(bytes));
    }
    let mut t = s.serialize_tuple(bytes.len())?;
    for b in bytes {
        t.serialize_element(b)?;
    }
    t.end()
}

fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    struct Fixed<const N: usize>;
    impl<'de, const N: usize> serde::de::Visitor<'de> for Fixed<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
    if d.is_human_readable() {
        let text = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| serde::de::Error::custom(format!("expected {} hex characters", N * 2)))?;
        Ok(out)
    } else {
        d.deserialize_tuple(N, Fixed::<N>)
    }
}

/// SHA-256 of `parts` concatenated.
pub fn sha256(parts: &[&[u8]]) -> Hash256 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash256(h.finalize().into())
}

/// The kinds of signed or hashed data. Each gets its own tag, so a signature made
/// for one can never be presented as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A department's signature over a record body.
    Body,
    /// A region node's signature over an envelope header.
    EnvelopeHeader,
    /// The federation authority's signature over a manifest.
    Manifest,
    /// The hash that links an envelope to its predecessor.
    EnvelopeHash,
    /// Derivation of entry, action and objection ids from their bodies.
    RecordId,
    /// A node's signature over a proven answer it gives (evidence files).
    ProvenAnswer,
    /// A member's report that an asking member exceeded its person-key budget.
    BudgetAlert,
    /// A department's answer to a web console's login challenge.
    ConsoleLogin,
}

impl Domain {
    /// The ASCII name that appears in the tag.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Body => "body-sig",
            Domain::EnvelopeHeader => "envelope-sig",
            Domain::Manifest => "manifest-sig",
            Domain::EnvelopeHash => "envelope-hash",
            Domain::RecordId => "record-id",
            Domain::ProvenAnswer => "proven-answer-sig",
            Domain::BudgetAlert => "budget-alert-sig",
            Domain::ConsoleLogin => "console-login-sig",
        }
    }
}

/// The domain-separation tag: `"credfed\0" || u8 len || name || u16le version || u8 len || federation id`.
///
/// Lengths are explicit so that no (name, federation) pair can collide with another.
pub fn tag(domain: Domain, federation_id: &str) -> Vec<u8> {
    let name = domain.name().as_bytes();
    let fed = federation_id.as_bytes();
    let mut t = Vec::with_capacity(8 + 1 + name.len() + 2 + 1 + fed.len());
    t.extend_from_slice(b"credfed\0");
    t.push(name.len() as u8);
    t.extend_from_slice(name);
    t.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    // Federation ids are validated to at most MAX_FEDERATION_ID_BYTES (< 256) before use;
    // clamping here keeps the tag well-defined even for unchecked input.
    let fed = &fed[..fed.len().min(255)];
    t.push(fed.len() as u8);
    t.extend_from_slice(fed);
    t
}

/// Why a signature or key was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The key bytes are not a valid curve point.
    #[error("{field}: not a valid Ed25519 public key")]
    InvalidKey {
        /// Which key.
        field: &'static str,
    },
    /// The key is of small order: any message would verify under a crafted signature.
    #[error("{field}: weak (small-order) Ed25519 public key refused")]
    WeakKey {
        /// Which key.
        field: &'static str,
    },
    /// The signature does not verify under the key and tag (strict RFC 8032 rules).
    #[error("{field}: signature does not verify")]
    BadSignature {
        /// Which signature.
        field: &'static str,
    },
}

impl SignatureError {
    /// The key or signature field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            SignatureError::InvalidKey { field }
            | SignatureError::WeakKey { field }
            | SignatureError::BadSignature { field } => field,
        }
    }
}

/// A signing key. The secret never leaves this type except through [`Keypair::secret_bytes`],
/// which key files use.
pub struct Keypair(SigningKey);

impl Keypair {
    /// A key from 32 secret bytes (callers supply entropy; this crate has no I/O).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(&secret))
    }
    /// The 32 secret bytes, for writing a key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
    /// Signs `payload` under the tag for `domain` and `federation_id`.
    pub fn sign(&self, domain: Domain, federation_id: &str, payload: &[u8]) -> Signature {
        self.sign_tagged(&tagged(domain, federation_id, payload))
    }

    /// Signs a message that already carries its tag ([`tagged`]).
    fn sign_tagged(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// `tag(domain, federation_id) || payload`: what a credfed signature covers.
fn tagged(domain: Domain, federation_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = tag(domain, federation_id);
    message.extend_from_slice(payload);
    message
}

impl Keypair {
    /// Signs a message whose format an external specification defines (the C2SP notes of
    /// `checkpoint`), without a credfed tag. Only for messages that cannot begin with
    /// `"credfed\0"`: the caller's format must guarantee it (see `checkpoint`).
    pub(crate) fn sign_external(&self, message: &[u8]) -> Signature {
        debug_assert!(!message.starts_with(b"credfed\0"));
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair(public {})", self.public())
    }
}

impl PublicKey {
    /// Parses the key and refuses invalid and weak keys.
    pub fn verifying_key(
        &self,
        field: &'static str,
    ) -> Result<ed25519_dalek::VerifyingKey, SignatureError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| SignatureError::InvalidKey { field })?;
        if key.is_weak() {
            return Err(SignatureError::WeakKey { field });
        }
        Ok(key)
    }

    /// Verifies `sig` over `tag(domain, federation_id) || payload` with `verify_strict`.
    pub fn verify(
        &self,
        domain: Domain,
        federation_id: &str,
        payload: &[u8],
        sig: &Signature,
        field: &'static str,
    ) -> Result<(), SignatureError> {
        self.verify_tagged(&tagged(domain, federation_id, payload), sig, field)
    }

    /// Verifies `sig` over a message that already carries its tag ([`tagged`]).
    fn verify_tagged(
        &self,
        message: &[u8],
        sig: &Signature,
        field: &'static str,
    ) -> Result<(), SignatureError> {
        self.verifying_key(field)?
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| SignatureError::BadSignature { field })
    }
}

impl PublicKey {
    /// Verifies a signature made by [`Keypair::sign_external`], with `verify_strict`.
    pub(crate) fn verify_external(
        &self,
        message: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let key = self.verifying_key("key")?;
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| SignatureError::BadSignature { field: "signature" })
    }
}

/// Signatures already verified with `verify_strict` — on another core, ahead of the
/// thread that admits envelopes — so that admission need not verify them again.
///
/// The only way in is [`VerifiedSignatures::verify`], which runs the same strict check
/// as [`PublicKey::verify`] and keeps the signature only when it passes; a lookup
/// ([`VerifiedSignatures::holds`]) matches the key, the signature and the exact tagged
/// message. A hit is therefore the same fact a fresh verification would establish,
/// whoever filled the set and whatever state it read keys from: admission still decides
/// which key must have signed, and a key the set does not hold is verified afresh.
///
/// There is deliberately no batch verification: `ed25519_dalek::verify_batch` accepts
/// signatures whose `R` carries a torsion component, which `verify_strict` refuses, so a
/// signer could make envelopes that one node admits in a batch and another rejects
/// alone (docs/decisions.md, "No batch verification").
#[derive(Debug, Default)]
pub struct VerifiedSignatures {
    by_signature: std::collections::HashMap<[u8; 64], (PublicKey, Vec<u8>)>,
}

impl VerifiedSignatures {
    /// An empty set: every lookup misses.
    pub fn new() -> VerifiedSignatures {
        VerifiedSignatures::default()
    }

    /// Verifies `sig` strictly and, when it holds, remembers it. Returns the verdict.
    pub fn verify(
        &mut self,
        domain: Domain,
        federation_id: &str,
        payload: &[u8],
        sig: &Signature,
        key: &PublicKey,
    ) -> bool {
        let message = tagged(domain, federation_id, payload);
        let ok = key.verify_tagged(&message, sig, "key").is_ok();
        if ok {
            self.by_signature.insert(sig.0, (*key, message));
        }
        ok
    }

    /// Signs `payload` with `key` and remembers the signature as verified: a signature
    /// just made with the secret key passes `verify_strict` by construction (its `R` is
    /// a multiple of the base point and the key is not weak), so verifying it again —
    /// as admission of the node's own appends did — only repeats work.
    pub fn sign(
        &mut self,
        key: &Keypair,
        domain: Domain,
        federation_id: &str,
        payload: &[u8],
    ) -> Signature {
        let message = tagged(domain, federation_id, payload);
        let sig = key.sign_tagged(&message);
        self.by_signature.insert(sig.0, (key.public(), message));
        sig
    }

    /// True when `sig` by `key` over `payload` (under `domain` and `federation_id`) was
    /// verified into this set.
    pub fn holds(
        &self,
        domain: Domain,
        federation_id: &str,
        payload: &[u8],
        sig: &Signature,
        key: &PublicKey,
    ) -> bool {
        let Some((held_key, message)) = self.by_signature.get(&sig.0) else {
            return false;
        };
        let t = tag(domain, federation_id);
        held_key == key
            && message.len() == t.len() + payload.len()
            && message[..t.len()] == t[..]
            && message[t.len()..] == *payload
    }

    /// Takes in what another set verified.
    pub fn absorb(&mut self, other: VerifiedSignatures) {
        self.by_signature.extend(other.by_signature);
    }

    /// How many signatures the set holds.
    pub fn len(&self) -> usize {
        self.by_signature.len()
    }

    /// True when the set holds none.
    pub fn is_empty(&self) -> bool {
        self.by_signature.is_empty()
    }
}

impl PublicKey {
    /// [`PublicKey::verify`], unless `known` already holds this exact signature.
    pub fn verify_unless_known(
        &self,
        known: &VerifiedSignatures,
        domain: Domain,
        federation_id: &str,
        payload: &[u8],
        sig: &Signature,
        field: &'static str,
    ) -> Result<(), SignatureError> {
        if known.holds(domain, federation_id, payload, sig, self) {
            return Ok(());
        }
        self.verify(domain, federation_id, payload, sig, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(n: u8) -> Keypair {
        Keypair::from_secret([n; 32])
    }

    #[test]
    fn signatures_are_bound_to_domain_and_federation() {
        let k = kp(1);
        let sig = k.sign(Domain::Body, "cn-credit", b"payload");
        assert!(
            k.public()
                .verify(Domain::Body, "cn-credit", b"payload", &sig, "s")
                .is_ok()
        );
        assert!(
            k.public()
                .verify(Domain::EnvelopeHeader, "cn-credit", b"payload", &sig, "s")
                .is_err()
        );
        assert!(
            k.public()
                .verify(Domain::Body, "cn-credit-drill", b"payload", &sig, "s")
                .is_err()
        );
        assert!(
            k.public()
                .verify(Domain::Body, "cn-credit", b"payloae", &sig, "s")
                .is_err()
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (y = 1) has small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let sig = Signature([0u8; 64]);
        assert_eq!(
            PublicKey(weak).verify(Domain::Body, "f", b"x", &sig, "k"),
            Err(SignatureError::WeakKey { field: "k" })
        );
    }

    #[test]
    fn tag_layout_is_stable() {
        assert_eq!(
            hex::encode(tag(Domain::Body, "cn")),
            "63726564666564000862 6f64792d736967 0200 02636e".replace(' ', "")
        );
    }
}

#[cfg(test)]
mod no_batch_verification {
    use super::*;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use sha2::Sha512;

    /// A signature whose `R` is a valid nonce point plus the point of order 2: strict
    /// verification computes `R` without the torsion and refuses it.
    fn torsioned_signature(n: u32) -> (PublicKey, Vec<u8>, Signature) {
        let a = Scalar::from_bytes_mod_order([7; 32]);
        let pk = (ED25519_BASEPOINT_POINT * a).compress();
        let r = Scalar::from_bytes_mod_order([9; 32]);
        let payload = n.to_le_bytes().to_vec();
        let msg = tagged(Domain::Body, "f", &payload);
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[4]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(pk.as_bytes());
        h.update(&msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        (PublicKey(pk.to_bytes()), payload, Signature(sig))
    }

    /// Why credfed verifies one signature at a time (docs/decisions.md, "No batch
    /// verification"): dalek's batch accepts about half of these signatures, strict
    /// verification none. Should this test ever fail, the batch has become strict.
    #[test]
    fn dalek_batch_accepts_torsioned_signatures_that_strict_verification_refuses() {
        let mut batch_accepted = 0;
        for n in 0..64u32 {
            let (key, payload, sig) = torsioned_signature(n);
            assert!(key.verify(Domain::Body, "f", &payload, &sig, "s").is_err());
            let mut known = VerifiedSignatures::new();
            assert!(!known.verify(Domain::Body, "f", &payload, &sig, &key));
            assert!(known.is_empty());
            let msg = tagged(Domain::Body, "f", &payload);
            let vk = key.verifying_key("k").expect("key");
            let dsig = ed25519_dalek::Signature::from_bytes(&sig.0);
            if ed25519_dalek::verify_batch(&[&msg], &[dsig], &[vk]).is_ok() {
                batch_accepted += 1;
            }
        }
        assert!(
            batch_accepted > 0,
            "dalek's batch refused every torsioned signature"
        );
    }

    #[test]
    fn a_known_signature_matches_only_its_key_domain_federation_and_message() {
        let k = Keypair::from_secret([3; 32]);
        let other = Keypair::from_secret([4; 32]).public();
        let sig = k.sign(Domain::Body, "f", b"payload");
        let mut known = VerifiedSignatures::new();
        assert!(known.verify(Domain::Body, "f", b"payload", &sig, &k.public()));
        assert!(known.holds(Domain::Body, "f", b"payload", &sig, &k.public()));
        assert!(!known.holds(Domain::Body, "f", b"payloae", &sig, &k.public()));
        assert!(!known.holds(Domain::Body, "f", b"payload\0", &sig, &k.public()));
        assert!(!known.holds(Domain::Body, "g", b"payload", &sig, &k.public()));
        assert!(!known.holds(Domain::EnvelopeHeader, "f", b"payload", &sig, &k.public()));
        assert!(!known.holds(Domain::Body, "f", b"payload", &sig, &other));
        let mut forged = sig;
        forged.0[40] ^= 1;
        assert!(!known.holds(Domain::Body, "f", b"payload", &forged, &k.public()));
        // What the set signs itself verifies strictly, and is held.
        let mut own = VerifiedSignatures::new();
        let made = own.sign(&k, Domain::EnvelopeHeader, "f", b"header");
        assert_eq!(made, k.sign(Domain::EnvelopeHeader, "f", b"header"));
        assert!(
            k.public()
                .verify(Domain::EnvelopeHeader, "f", b"header", &made, "s")
                .is_ok()
        );
        assert!(own.holds(Domain::EnvelopeHeader, "f", b"header", &made, &k.public()));
        // A bad signature never enters.
        assert!(!known.verify(Domain::Body, "f", b"payload", &forged, &k.public()));
        assert_eq!(known.len(), 1);
        // A miss falls back to strict verification, with its verdict.
        assert!(
            other
                .verify_unless_known(&known, Domain::Body, "f", b"payload", &sig, "s")
                .is_err()
        );
        assert!(
            k.public()
                .verify_unless_known(
                    &VerifiedSignatures::new(),
                    Domain::Body,
                    "f",
                    b"payload",
                    &sig,
                    "s"
                )
                .is_ok()
        );
    }
}

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
                hex::encode(self.0)
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
        return s.serialize_str(&hex::encode(bytes));
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
        let mut msg = tag(domain, federation_id);
        msg.extend_from_slice(payload);
        Signature(self.0.sign(&msg).to_bytes())
    }
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
        let key = self.verifying_key(field)?;
        let mut msg = tag(domain, federation_id);
        msg.extend_from_slice(payload);
        key.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
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

/// One item of a batch: a tagged message, its signature and the claimed key.
#[derive(Debug, Clone)]
pub struct SignedMessage {
    /// The full message (tag included).
    pub message: Vec<u8>,
    /// The signature.
    pub signature: Signature,
    /// The key that should have made it.
    pub key: PublicKey,
}

impl SignedMessage {
    /// Builds the item for `payload` signed under `domain` and `federation_id`.
    pub fn new(
        domain: Domain,
        federation_id: &str,
        payload: &[u8],
        signature: Signature,
        key: PublicKey,
    ) -> Self {
        let mut message = tag(domain, federation_id);
        message.extend_from_slice(payload);
        SignedMessage {
            message,
            signature,
            key,
        }
    }
}

/// Verifies many signatures at once; returns one verdict per item, in order.
///
/// Batch verification is faster but skips two checks that `verify_strict` makes:
/// weak keys and small-order `R`. Items with invalid or weak keys, or a small-order
/// `R`, are judged alone first; the rest go through the batch, and if the batch fails
/// every remaining item is verified on its own so the caller learns exactly which
/// ones are bad. The verdicts are therefore always those of `verify_strict`.
pub fn verify_batch(items: &[SignedMessage]) -> Vec<Result<(), SignatureError>> {
    let mut verdicts: Vec<Option<Result<(), SignatureError>>> = vec![None; items.len()];
    let mut batch_idx = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        match it.key.verifying_key("signature.key") {
            Err(e) => verdicts[i] = Some(Err(e)),
            Ok(_) if r_is_small_order(&it.signature) => verdicts[i] = Some(verify_one(it)),
            Ok(k) => {
                batch_idx.push(i);
                keys.push(k);
            }
        }
    }
    if !batch_idx.is_empty() {
        let msgs: Vec<&[u8]> = batch_idx
            .iter()
            .map(|&i| items[i].message.as_slice())
            .collect();
        let sigs: Vec<ed25519_dalek::Signature> = batch_idx
            .iter()
            .map(|&i| ed25519_dalek::Signature::from_bytes(&items[i].signature.0))
            .collect();
        let batch_ok = ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok();
        for &i in &batch_idx {
            verdicts[i] = Some(if batch_ok {
                Ok(())
            } else {
                verify_one(&items[i])
            });
        }
    }
    verdicts
        .into_iter()
        .map(|v| v.unwrap_or(Err(SignatureError::BadSignature { field: "signature" })))
        .collect()
}

fn verify_one(it: &SignedMessage) -> Result<(), SignatureError> {
    let key = it.key.verifying_key("signature.key")?;
    key.verify_strict(
        &it.message,
        &ed25519_dalek::Signature::from_bytes(&it.signature.0),
    )
    .map_err(|_| SignatureError::BadSignature { field: "signature" })
}

/// True when the signature's `R` decodes to a point of small order (or not at all),
/// which `verify_strict` refuses but batch verification would not notice.
fn r_is_small_order(sig: &Signature) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig.0[..32]);
    match curve25519_dalek::edwards::CompressedEdwardsY(r).decompress() {
        Some(p) => p.is_small_order(),
        None => true,
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
    fn batch_matches_single_verification_and_names_bad_items() {
        let mut items: Vec<SignedMessage> = (0..20u8)
            .map(|i| {
                let k = kp(i + 1);
                let payload = vec![i; 10];
                let sig = k.sign(Domain::Body, "f", &payload);
                SignedMessage::new(Domain::Body, "f", &payload, sig, k.public())
            })
            .collect();
        assert!(verify_batch(&items).iter().all(|v| v.is_ok()));
        items[7].message.push(0);
        let mut weak = [0u8; 32];
        weak[0] = 1;
        items[11].key = PublicKey(weak);
        let verdicts = verify_batch(&items);
        for (i, v) in verdicts.iter().enumerate() {
            assert_eq!(v.is_ok(), i != 7 && i != 11, "item {i}: {v:?}");
        }
    }

    #[test]
    fn tag_layout_is_stable() {
        assert_eq!(
            hex::encode(tag(Domain::Body, "cn")),
            "63726564666564000862 6f64792d736967 0200 02636e".replace(' ', "")
        );
    }
}

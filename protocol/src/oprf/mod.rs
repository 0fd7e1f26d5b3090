//! Person keys by a threshold oblivious pseudorandom function (docs/privacy.md).
//!
//! A person key is `F(k, number)`, the OPRF of RFC 9497 with the ciphersuite
//! ristretto255-SHA512, where the federation key `k` exists only as Shamir shares held by
//! the members (t of n reconstruct it; [`keygen`] makes them by a distributed key
//! generation no party learns `k` from). To key a number, the asking node:
//!
//! 1. hashes the number to the group and blinds it with a fresh scalar ([`blind`]);
//! 2. sends the blinded element to t members; each answers `k_i · B` with an RFC 9497
//!    DLEQ proof that it used the share whose public value `k_i · G` the manifest lists
//!    ([`evaluate_share`]);
//! 3. verifies every proof ([`verify_share_evaluation`]), combines t verified answers
//!    with Lagrange coefficients at zero ([`combine`]) and unblinds ([`finalize`]).
//!
//! A member sees only a uniformly random group element: it learns nothing about the
//! number. The asking node learns `F(k, number)` and nothing about `k` or any share
//! (this is the threshold construction of Jarecki, Kiayias, Krawczyk and Xu, 2017).
//! The combined output is exactly RFC 9497's OPRF-mode output under `k`; the per-share
//! proofs are RFC 9497's batched DLEQ proofs under the VOPRF-mode context, so one proof
//! covers every element of a batch (a single element gets the same proof without the
//! batch's composites, docs/decisions.md 89). Both are tested against the RFC's
//! published vectors.
//!
//! No randomness here (the crate does none): callers pass 64 random bytes for each blind
//! and each proof, reduced modulo the group order as RFC 9497 appendix "Random Number
//! Generation Using Extra Random Bits" allows.

pub mod alert;
pub mod ceremony;
pub mod keygen;
pub mod repair;

use curve25519_dalek::ristretto::CompressedRistretto;
pub use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use thiserror::Error;
use zeroize::Zeroize;

use crate::crypto::Hash256;

/// `CreateContextString(modeOPRF, identifier)`: the context that hashes inputs to the
/// group, so that the combined output is the RFC's OPRF-mode output.
const OPRF_CONTEXT: &[u8] = b"OPRFV1-\x00-ristretto255-SHA512";
/// `CreateContextString(modeVOPRF, identifier)`: the context of the per-share proofs (a
/// share's evaluation is an RFC 9497 VOPRF evaluation under the share as key).
const VOPRF_CONTEXT: &[u8] = b"OPRFV1-\x01-ristretto255-SHA512";

/// Most elements one evaluation request may carry. A batch import keys up to 512
/// persons per API request (docs/privacy.md); twice that leaves room for a request that
/// gathers two, and bounds a member's work per message to about 1 024 scalar
/// multiplications (tens of milliseconds).
pub const MAX_BATCH: usize = 1024;

/// Most members holding shares: the manifest's member limit.
pub const MAX_MEMBERS: u16 = crate::limits::MAX_MEMBERS as u16;

/// An encoded ristretto255 element (RFC 9496 encoding, 32 bytes) as sent on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Element(pub [u8; 32]);

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", hex::encode(self.0))
    }
}

/// A DLEQ proof `(c, s)`, each a canonical scalar: RFC 9497's batched proof for two or
/// more elements, a direct one for a single element (see `evaluate_single_with`).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The challenge.
    pub c: [u8; 32],
    /// The response.
    pub s: [u8; 32],
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proof({}{})", hex::encode(self.c), hex::encode(self.s))
    }
}

/// Why an OPRF step failed. Each names what was wrong so that the node can report the
/// member at fault.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OprfError {
    /// Bytes that are not the canonical encoding of a group element, or the identity.
    #[error("{field}: not a valid ristretto255 element (RFC 9496 encoding, not the identity)")]
    BadElement {
        /// Which value.
        field: &'static str,
    },
    /// Bytes that are not a canonical scalar.
    #[error("{field}: not a canonical ristretto255 scalar")]
    BadScalar {
        /// Which value.
        field: &'static str,
    },
    /// An input that hashes to the identity (probability 2^-252; RFC 9497 InvalidInputError).
    #[error("input hashes to the group identity (RFC 9497 InvalidInputError)")]
    InvalidInput,
    /// A batch that is empty, too long or does not match its evaluations.
    #[error("batch: {0}")]
    Batch(String),
    /// A member's proof does not show its evaluation used its listed share.
    #[error("member {member}: evaluation proof does not verify against its public share")]
    BadProof {
        /// The member index.
        member: u16,
    },
    /// Shares that cannot be combined (repeated, zero or too few member indexes).
    #[error("combine: {0}")]
    Combine(String),
}

/// The blinding scalar of one input, kept by the asking node until it finalizes.
pub struct Blind(Scalar);

impl std::fmt::Debug for Blind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blind(..)")
    }
}

impl Drop for Blind {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A member's share of the federation key, `k_i`, at member index `i`.
pub struct ShareKey {
    index: u16,
    secret: Scalar,
}

impl std::fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShareKey(member {}, ..)", self.index)
    }
}

impl Drop for ShareKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl ShareKey {
    /// A share from its member index (1-based) and canonical scalar bytes.
    pub fn from_bytes(index: u16, bytes: [u8; 32]) -> Result<ShareKey, OprfError> {
        if index == 0 {
            return Err(OprfError::Combine(
                "member index 0 is reserved for the key itself".into(),
            ));
        }
        let secret = scalar_from_bytes(bytes, "share.secret")?;
        if secret == Scalar::ZERO {
            return Err(OprfError::BadScalar {
                field: "share.secret",
            });
        }
        Ok(ShareKey { index, secret })
    }

    /// The canonical bytes of the secret scalar (for the node's key file only).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The member index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// `k_i · G`, the value the manifest lists for this member.
    pub fn public(&self) -> Element {
        Element(RistrettoPoint::mul_base(&self.secret).compress().to_bytes())
    }
}

/// First line of a share file.
const SHARE_FILE_HEADER: &str = "credfed person-key share v1";

impl ShareKey {
    /// The text of this member's share file (mode 0600 on disk): a header, the member
    /// index and the secret scalar in hex.
    pub fn to_file_text(&self) -> String {
        format!(
            "{SHARE_FILE_HEADER}\nmember {}\n{}\n",
            self.index,
            hex::encode(self.secret.to_bytes())
        )
    }

    /// Parses a share file, naming what is wrong.
    pub fn from_file_text(text: &str) -> Result<ShareKey, OprfError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let bad = |rule: &str| OprfError::Batch(format!("share file: {rule}"));
        if lines.next() != Some(SHARE_FILE_HEADER) {
            return Err(bad(&format!("first line must be {SHARE_FILE_HEADER:?}")));
        }
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("member "))
            .and_then(|n| n.parse::<u16>().ok())
            .ok_or_else(|| bad("second line must be \"member N\""))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(lines.next().unwrap_or(""), &mut secret)
            .map_err(|_| bad("third line must be 64 hex digits"))?;
        if lines.next().is_some() {
            return Err(bad("three lines expected"));
        }
        let share = ShareKey::from_bytes(index, secret);
        secret.zeroize();
        share
    }
}

fn scalar_from_bytes(bytes: [u8; 32], field: &'static str) -> Result<Scalar, OprfError> {
    Option::from(Scalar::from_canonical_bytes(bytes)).ok_or(OprfError::BadScalar { field })
}

/// RFC 9497 DeserializeElement: canonical encoding, not the identity.
pub fn decode_element(e: &Element, field: &'static str) -> Result<RistrettoPoint, OprfError> {
    let point = CompressedRistretto(e.0)
        .decompress()
        .ok_or(OprfError::BadElement { field })?;
    if point == RistrettoPoint::identity() {
        return Err(OprfError::BadElement { field });
    }
    Ok(point)
}

fn encode(p: &RistrettoPoint) -> [u8; 32] {
    p.compress().to_bytes()
}

/// `expand_message_xmd` (RFC 9380 §5.3.1) with SHA-512 for 64 output bytes (one block,
/// `ell` = 1), over a message given in parts.
fn expand_message_xmd_64(msg: &[&[u8]], dst: &[&[u8]]) -> [u8; 64] {
    let dst_len: usize = dst.iter().map(|d| d.len()).sum();
    // Every DST here is a fixed string of under 64 bytes; RFC 9380 allows 255.
    debug_assert!(dst_len <= 255);
    let dst_len_byte = [dst_len as u8];
    let mut h = Sha512::new();
    h.update([0u8; 128]);
    for m in msg {
        h.update(m);
    }
    h.update(64u16.to_be_bytes());
    h.update([0u8]);
    for d in dst {
        h.update(d);
    }
    h.update(dst_len_byte);
    let b0: [u8; 64] = h.finalize().into();
    let mut h = Sha512::new();
    h.update(b0);
    h.update([1u8]);
    for d in dst {
        h.update(d);
    }
    h.update(dst_len_byte);
    h.finalize().into()
}

/// RFC 9497 HashToGroup: hash_to_ristretto255 with DST "HashToGroup-" || context.
fn hash_to_group(input: &[u8], context: &[u8]) -> RistrettoPoint {
    RistrettoPoint::from_uniform_bytes(&expand_message_xmd_64(
        &[input],
        &[b"HashToGroup-", context],
    ))
}

/// RFC 9497 HashToScalar with DST "HashToScalar-" || context (or a given DST).
fn hash_to_scalar(msg: &[&[u8]], dst: &[&[u8]]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&expand_message_xmd_64(msg, dst))
}

/// RFC 9497 DeriveKeyPair: the deterministic key of the RFC's test vectors. credfed's
/// federation key is never derived this way (it comes from [`keygen`]); this exists so
/// that the vectors can be checked from their published seed.
pub fn derive_key_pair(
    seed: &[u8; 32],
    info: &[u8],
    verifiable: bool,
) -> Option<([u8; 32], Element)> {
    let context = if verifiable {
        VOPRF_CONTEXT
    } else {
        OPRF_CONTEXT
    };
    let info_len = u16::try_from(info.len()).ok()?.to_be_bytes();
    for counter in 0u8..=255 {
        let sk = hash_to_scalar(
            &[seed, &info_len, info, &[counter]],
            &[b"DeriveKeyPair", context],
        );
        if sk != Scalar::ZERO {
            return Some((
                sk.to_bytes(),
                Element(encode(&RistrettoPoint::mul_base(&sk))),
            ));
        }
    }
    None
}

/// RFC 9497 Blind: `blind · HashToGroup(input)`, with the blind reduced from 64 random
/// bytes the caller supplies.
pub fn blind(input: &[u8], randomness: &[u8; 64]) -> Result<(Blind, Element), OprfError> {
    blind_with(input, Scalar::from_bytes_mod_order_wide(randomness))
}

fn blind_with(input: &[u8], r: Scalar) -> Result<(Blind, Element), OprfError> {
    blind_in(input, r, OPRF_CONTEXT)
}

fn blind_in(input: &[u8], r: Scalar, context: &[u8]) -> Result<(Blind, Element), OprfError> {
    if r == Scalar::ZERO {
        return Err(OprfError::BadScalar { field: "blind" });
    }
    let point = hash_to_group(input, context);
    if point == RistrettoPoint::identity() {
        return Err(OprfError::InvalidInput);
    }
    Ok((Blind(r), Element(encode(&(r * point)))))
}

/// RFC 9497 Finalize: unblind the (combined) evaluation and hash it with the input.
pub fn finalize(
    input: &[u8],
    blind: &Blind,
    evaluated: &RistrettoPoint,
) -> Result<[u8; 64], OprfError> {
    let input_len = u16::try_from(input.len())
        .map_err(|_| OprfError::Batch("input longer than 65 535 bytes".into()))?;
    let unblinded = encode(&(blind.0.invert() * evaluated));
    let mut h = Sha512::new();
    h.update(input_len.to_be_bytes());
    h.update(input);
    h.update(32u16.to_be_bytes());
    h.update(unblinded);
    h.update(b"Finalize");
    Ok(h.finalize().into())
}

/// The seed and composite weights of RFC 9497 ComputeComposites for `B` and the batch.
fn composite_weights(b: &[u8; 32], c: &[[u8; 32]], d: &[[u8; 32]]) -> Vec<Scalar> {
    let seed_dst_len = (5 + VOPRF_CONTEXT.len()) as u16;
    let mut h = Sha512::new();
    h.update(32u16.to_be_bytes());
    h.update(b);
    h.update(seed_dst_len.to_be_bytes());
    h.update(b"Seed-");
    h.update(VOPRF_CONTEXT);
    let seed: [u8; 64] = h.finalize().into();
    c.iter()
        .zip(d)
        .enumerate()
        .map(|(i, (ci, di))| {
            hash_to_scalar(
                &[
                    &64u16.to_be_bytes(),
                    &seed,
                    &(i as u16).to_be_bytes(),
                    &32u16.to_be_bytes(),
                    ci,
                    &32u16.to_be_bytes(),
                    di,
                    b"Composite",
                ],
                &[b"HashToScalar-", VOPRF_CONTEXT],
            )
        })
        .collect()
}

fn challenge(b: &[u8; 32], m: &[u8; 32], z: &[u8; 32], t2: &[u8; 32], t3: &[u8; 32]) -> Scalar {
    let len = 32u16.to_be_bytes();
    hash_to_scalar(
        &[&len, b, &len, m, &len, z, &len, t2, &len, t3, b"Challenge"],
        &[b"HashToScalar-", VOPRF_CONTEXT],
    )
}

fn check_batch(n: usize, m: usize) -> Result<(), OprfError> {
    if n == 0 || n > MAX_BATCH {
        return Err(OprfError::Batch(format!(
            "{n} elements, allowed 1 to {MAX_BATCH}"
        )));
    }
    if n != m {
        return Err(OprfError::Batch(format!(
            "{n} blinded elements but {m} evaluations"
        )));
    }
    Ok(())
}

/// A member's answer to a batch: `k_i · B_j` for every blinded element and one DLEQ
/// proof covering them all (RFC 9497 GenerateProof with A = G, B = k_i · G for two or
/// more elements; a direct proof for one).
pub fn evaluate_share(
    share: &ShareKey,
    blinded: &[Element],
    proof_randomness: &[u8; 64],
) -> Result<(Vec<Element>, Proof), OprfError> {
    evaluate_share_with(
        share,
        blinded,
        Scalar::from_bytes_mod_order_wide(proof_randomness),
    )
}

/// 1/2 mod ℓ, as (ℓ + 1)/2.
const HALF: [u8; 32] = [
    247, 233, 122, 46, 141, 49, 9, 44, 107, 206, 123, 81, 239, 124, 111, 10, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 8,
];

/// A member's answer: for one element, a Chaum–Pedersen proof over `(G, A; C, D)`
/// directly ([`evaluate_single_with`]); for more, RFC 9497's batched proof
/// ([`evaluate_rfc_batch_with`]).
fn evaluate_share_with(
    share: &ShareKey,
    blinded: &[Element],
    r: Scalar,
) -> Result<(Vec<Element>, Proof), OprfError> {
    if let [one] = blinded {
        evaluate_single_with(share, one, r)
    } else {
        evaluate_rfc_batch_with(share, blinded, r)
    }
}

/// One element: `D = k · C` with a proof that `log_G(A) = log_C(D)` — the DLEQ proof
/// RFC 9497 builds for a batch, without the batch's composite elements, whose two extra
/// multiplications would make one evaluation cost about 3.8 verifications instead of
/// about 2.5 (docs/decisions.md, 89). Its challenge hashes `A, C, D, t2, t3` under its
/// own label, so a proof of one kind never verifies as the other.
fn evaluate_single_with(
    share: &ShareKey,
    blinded: &Element,
    r: Scalar,
) -> Result<(Vec<Element>, Proof), OprfError> {
    let c_point = decode_element(blinded, "blinded_element")?;
    // Every point computed halved and encoded in one batch (one inversion), as in
    // `evaluate_rfc_batch_with`.
    let half = Scalar::from_bytes_mod_order(HALF);
    let k_half = share.secret * half;
    let r_half = r * half;
    let halves = [
        k_half * c_point,
        RistrettoPoint::mul_base(&k_half),
        RistrettoPoint::mul_base(&r_half),
        r_half * c_point,
    ];
    let encoded = RistrettoPoint::double_and_compress_batch(&halves);
    let [d, public, t2, t3] = [0, 1, 2, 3].map(|i| encoded[i].to_bytes());
    let c = single_challenge(&public, &blinded.0, &d, &t2, &t3);
    let s = r - c * share.secret;
    Ok((
        vec![Element(d)],
        Proof {
            c: c.to_bytes(),
            s: s.to_bytes(),
        },
    ))
}

fn single_challenge(
    a: &[u8; 32],
    c: &[u8; 32],
    d: &[u8; 32],
    t2: &[u8; 32],
    t3: &[u8; 32],
) -> Scalar {
    let len = 32u16.to_be_bytes();
    hash_to_scalar(
        &[
            &len,
            a,
            &len,
            c,
            &len,
            d,
            &len,
            t2,
            &len,
            t3,
            b"credfed single DLEQ",
        ],
        &[b"HashToScalar-", VOPRF_CONTEXT],
    )
}

/// RFC 9497's evaluation with its batched DLEQ proof (GenerateProof with
/// ComputeCompositesFast); byte for byte the RFC's, as its test vectors check.
pub(crate) fn evaluate_rfc_batch_with(
    share: &ShareKey,
    blinded: &[Element],
    r: Scalar,
) -> Result<(Vec<Element>, Proof), OprfError> {
    check_batch(blinded.len(), blinded.len())?;
    let points = blinded
        .iter()
        .map(|e| decode_element(e, "blinded_element"))
        .collect::<Result<Vec<_>, _>>()?;
    // Every point that is sent or hashed is computed halved (its scalar times 1/2), so
    // that `double_and_compress_batch` encodes each group of them with one field
    // inversion instead of one per point: two inversions for the whole answer (the
    // evaluations and the public share, then the proof's four points), where encoding
    // them one by one costs as much as a scalar multiplication for a single element.
    let half = Scalar::from_bytes_mod_order(HALF);
    let k_half = share.secret * half;
    let mut halves: Vec<RistrettoPoint> = points.iter().map(|p| k_half * p).collect();
    halves.push(RistrettoPoint::mul_base(&k_half));
    let mut encoded: Vec<[u8; 32]> = RistrettoPoint::double_and_compress_batch(&halves)
        .into_iter()
        .map(|c| c.to_bytes())
        .collect();
    let public = encoded.pop().unwrap_or_default();
    let evaluated = encoded;
    let c_bytes: Vec<[u8; 32]> = blinded.iter().map(|e| e.0).collect();
    let weights = composite_weights(&public, &c_bytes, &evaluated);
    let half_weights: Vec<Scalar> = weights.iter().map(|w| w * half).collect();
    let m_half = RistrettoPoint::vartime_multiscalar_mul(&half_weights, &points);
    let m = m_half + m_half;
    // RFC 9497's ComputeCompositesFast: Z = k · M.
    let z_half = k_half * m;
    let r_half = r * half;
    let t2_half = RistrettoPoint::mul_base(&r_half);
    let t3_half = r_half * m;
    let proof_points =
        RistrettoPoint::double_and_compress_batch(&[m_half, z_half, t2_half, t3_half]);
    let [m_enc, z_enc, t2_enc, t3_enc] = [0, 1, 2, 3].map(|i| proof_points[i].to_bytes());
    let c = challenge(&public, &m_enc, &z_enc, &t2_enc, &t3_enc);
    let s = r - c * share.secret;
    Ok((
        evaluated.into_iter().map(Element).collect(),
        Proof {
            c: c.to_bytes(),
            s: s.to_bytes(),
        },
    ))
}

/// RFC 9497 VerifyProof for a member's batch answer against the member's public share.
pub fn verify_share_evaluation(
    member: u16,
    public_share: &Element,
    blinded: &[Element],
    evaluated: &[Element],
    proof: &Proof,
) -> Result<Vec<RistrettoPoint>, OprfError> {
    let c_points = blinded
        .iter()
        .map(|e| decode_element(e, "blinded_element"))
        .collect::<Result<Vec<_>, _>>()?;
    verify_share_evaluation_decoded(member, public_share, blinded, &c_points, evaluated, proof)
}

/// [`verify_share_evaluation`] with the blinded elements already decoded (the asking
/// node decodes its own elements once for every member it verifies).
pub fn verify_share_evaluation_decoded(
    member: u16,
    public_share: &Element,
    blinded: &[Element],
    c_points: &[RistrettoPoint],
    evaluated: &[Element],
    proof: &Proof,
) -> Result<Vec<RistrettoPoint>, OprfError> {
    check_batch(blinded.len(), evaluated.len())?;
    check_batch(blinded.len(), c_points.len())?;
    if let ([one], [c_point], [d]) = (blinded, c_points, evaluated) {
        return verify_single(member, public_share, one, c_point, d, proof);
    }
    verify_rfc_batch_decoded(member, public_share, blinded, c_points, evaluated, proof)
}

/// Verifies [`evaluate_single_with`]'s proof.
fn verify_single(
    member: u16,
    public_share: &Element,
    blinded: &Element,
    c_point: &RistrettoPoint,
    evaluated: &Element,
    proof: &Proof,
) -> Result<Vec<RistrettoPoint>, OprfError> {
    let bad = OprfError::BadProof { member };
    let public = decode_element(public_share, "public_share")?;
    let d_point = decode_element(evaluated, "evaluated_element").map_err(|_| bad.clone())?;
    let c = scalar_from_bytes(proof.c, "proof.c").map_err(|_| bad.clone())?;
    let s = scalar_from_bytes(proof.s, "proof.s").map_err(|_| bad.clone())?;
    let t2 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&c, &public, &s);
    let t3 = RistrettoPoint::vartime_multiscalar_mul([s, c], [*c_point, d_point]);
    let expected = single_challenge(
        &public_share.0,
        &blinded.0,
        &evaluated.0,
        &encode(&t2),
        &encode(&t3),
    );
    if expected != c {
        return Err(bad);
    }
    Ok(vec![d_point])
}

/// Verifies RFC 9497's batched proof ([`evaluate_rfc_batch_with`]).
pub(crate) fn verify_rfc_batch_decoded(
    member: u16,
    public_share: &Element,
    blinded: &[Element],
    c_points: &[RistrettoPoint],
    evaluated: &[Element],
    proof: &Proof,
) -> Result<Vec<RistrettoPoint>, OprfError> {
    check_batch(blinded.len(), evaluated.len())?;
    check_batch(blinded.len(), c_points.len())?;
    let bad = OprfError::BadProof { member };
    let public = decode_element(public_share, "public_share")?;
    let d_points = evaluated
        .iter()
        .map(|e| decode_element(e, "evaluated_element").map_err(|_| bad.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let c_bytes: Vec<[u8; 32]> = blinded.iter().map(|e| e.0).collect();
    let d_bytes: Vec<[u8; 32]> = evaluated.iter().map(|e| e.0).collect();
    let weights = composite_weights(&public_share.0, &c_bytes, &d_bytes);
    let m = RistrettoPoint::vartime_multiscalar_mul(&weights, c_points);
    let z = RistrettoPoint::vartime_multiscalar_mul(&weights, &d_points);
    let c = scalar_from_bytes(proof.c, "proof.c").map_err(|_| bad.clone())?;
    let s = scalar_from_bytes(proof.s, "proof.s").map_err(|_| bad.clone())?;
    let t2 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&c, &public, &s);
    let t3 = RistrettoPoint::vartime_multiscalar_mul([s, c], [m, z]);
    let expected = challenge(
        &public_share.0,
        &encode(&m),
        &encode(&z),
        &encode(&t2),
        &encode(&t3),
    );
    if expected != c {
        return Err(bad);
    }
    Ok(d_points)
}

/// Checks an evaluation set: 1 to [`MAX_MEMBERS`] distinct, non-zero member indexes that
/// include `member`.
fn check_set(member: u16, members: &[u16]) -> Result<(), OprfError> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != members.len() || sorted.first() == Some(&0) {
        return Err(OprfError::Combine(
            "members: indexes must be distinct and 1 or more".into(),
        ));
    }
    if members.is_empty() || members.len() > usize::from(MAX_MEMBERS) {
        return Err(OprfError::Combine(format!(
            "members: {} given, 1 to {MAX_MEMBERS}",
            members.len()
        )));
    }
    if !members.contains(&member) {
        return Err(OprfError::Combine(format!(
            "members: the set does not include member {member}"
        )));
    }
    Ok(())
}

/// A member's share scaled by its Lagrange coefficient at zero within the set of
/// members the asking node chose: `λ_i · k_i`. Answers made with it need no combination
/// but a sum (the asking node verifies each against [`scaled_public`]), which saves the
/// asking node t scalar multiplications per element.
pub fn scaled_share(share: &ShareKey, members: &[u16]) -> Result<ShareKey, OprfError> {
    check_set(share.index, members)?;
    Ok(ShareKey {
        index: share.index,
        secret: lagrange_at_zero(share.index, members) * share.secret,
    })
}

/// The public value a scaled share's proofs verify against: `λ_i · (k_i · G)`.
pub fn scaled_public(
    member: u16,
    public_share: &Element,
    members: &[u16],
) -> Result<Element, OprfError> {
    check_set(member, members)?;
    let p = decode_element(public_share, "public_share")?;
    Ok(Element(encode(&(lagrange_at_zero(member, members) * p))))
}

/// Sums answers made with scaled shares of one set into `k · B`.
pub fn sum(points: &[RistrettoPoint]) -> RistrettoPoint {
    points.iter().sum()
}

impl ShareKey {
    /// `k_i · B` for decoded elements, without a proof: a node's own share, whose answer
    /// it need not prove to itself.
    pub fn evaluate_unproven(&self, blinded: &[RistrettoPoint]) -> Vec<RistrettoPoint> {
        blinded.iter().map(|b| self.secret * b).collect()
    }
}

/// The Lagrange coefficient at zero of member `i` among `members` (all distinct, non-zero).
fn lagrange_at_zero(i: u16, members: &[u16]) -> Scalar {
    let xi = Scalar::from(i);
    let mut num = Scalar::ONE;
    let mut den = Scalar::ONE;
    for &j in members.iter().filter(|&&j| j != i) {
        let xj = Scalar::from(j);
        num *= xj;
        den *= xj - xi;
    }
    num * den.invert()
}

/// Combines verified share evaluations of one element from distinct members into
/// `k · B`: `Σ λ_i · (k_i · B)` with Lagrange coefficients at zero. The caller passes
/// exactly the threshold's worth (more would still be correct; fewer give a wrong
/// element, which is why the caller counts).
pub fn combine(parts: &[(u16, RistrettoPoint)]) -> Result<RistrettoPoint, OprfError> {
    let members: Vec<u16> = parts.iter().map(|(i, _)| *i).collect();
    let mut sorted = members.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != members.len() {
        return Err(OprfError::Combine("a member index appears twice".into()));
    }
    if sorted.first() == Some(&0) || members.is_empty() {
        return Err(OprfError::Combine(
            "member indexes must be 1 or more, at least one".into(),
        ));
    }
    let weights: Vec<Scalar> = members
        .iter()
        .map(|&i| lagrange_at_zero(i, &members))
        .collect();
    Ok(RistrettoPoint::vartime_multiscalar_mul(
        &weights,
        parts.iter().map(|(_, p)| p),
    ))
}

/// The OPRF output under a key held whole: what the threshold evaluation gives for the
/// same key, without blinding (nothing leaves the caller). For a one-member federation's
/// own checks, the offline demo and tests; a member never holds the whole key.
pub fn output_with_whole_key(key: &ShareKey, input: &[u8]) -> Result<[u8; 64], OprfError> {
    let point = hash_to_group(input, OPRF_CONTEXT);
    if point == RistrettoPoint::identity() {
        return Err(OprfError::InvalidInput);
    }
    finalize(input, &Blind(Scalar::ONE), &(key.secret * point))
}

/// The person key of a normalised number under a key held whole (see
/// [`output_with_whole_key`]); an input the group cannot hash (probability 2^-252) gives
/// the all-zero key.
pub fn person_key_with_whole_key(key: &ShareKey, normalised_number: &str) -> Hash256 {
    output_with_whole_key(key, normalised_number.as_bytes())
        .map(|o| person_key_from_output(&o))
        .unwrap_or(Hash256([0; 32]))
}

/// The person key records carry: the first 32 bytes of the 64-byte OPRF output (256 bits
/// is the security the rest of the protocol's hashes give).
pub fn person_key_from_output(output: &[u8; 64]) -> Hash256 {
    let mut out = [0u8; 32];
    out.copy_from_slice(&output[..32]);
    Hash256(out)
}

/// What an asking node sends a member: blinded elements only (never a number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// The t members the asking node asks (this one among them): each answers with its
    /// share scaled by its Lagrange coefficient in this set ([`scaled_share`]).
    pub members: Vec<u16>,
    /// 1 to [`MAX_BATCH`] blinded elements.
    pub blinded: Vec<Element>,
}

/// A member's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvaluationResponse {
    /// `k_i · B` for every element, in order, and one proof for the batch.
    Evaluated {
        /// The answering member's index.
        member: u16,
        /// Evaluated elements.
        evaluated: Vec<Element>,
        /// The DLEQ proof against the member's public share.
        proof: Proof,
    },
    /// Why the member did not evaluate.
    Refused(EvaluationRefusal),
}

/// Why a member refused to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvaluationRefusal {
    /// The asking member used its budget (the manifest's `person_key` policy); it may ask
    /// again after `retry_after_ms`.
    OverBudget {
        /// Evaluations per day the manifest allows each asking member.
        per_day: u32,
        /// When enough budget will be back for this request.
        retry_after_ms: u64,
    },
    /// This member holds no share (not part of the key generation, or lost it).
    NoShare,
    /// The request broke a rule (named).
    Invalid(String),
}

/// Largest evaluation request on the wire: a batch of [`MAX_BATCH`] elements, a set of
/// [`MAX_MEMBERS`] member indexes (at most 3 bytes each) and the length prefixes.
pub const MAX_REQUEST_BYTES: usize = MAX_BATCH * 32 + MAX_MEMBERS as usize * 3 + 64;
/// Largest evaluation response: the same batch evaluated, a proof, or a refusal's text.
pub const MAX_RESPONSE_BYTES: usize = MAX_BATCH * 32 + 1024;

/// Decodes an evaluation request, whole buffer, within its limit and batch bounds.
pub fn decode_request(bytes: &[u8]) -> Result<EvaluationRequest, crate::codec::DecodeError> {
    let r: EvaluationRequest =
        crate::codec::decode(bytes, MAX_REQUEST_BYTES, "person key evaluation request")?;
    if r.members.is_empty() || r.members.len() > usize::from(MAX_MEMBERS) {
        return Err(crate::codec::DecodeError::Malformed {
            what: "person key evaluation request",
            detail: format!("{} members, allowed 1 to {MAX_MEMBERS}", r.members.len()),
        });
    }
    if r.blinded.is_empty() || r.blinded.len() > MAX_BATCH {
        return Err(crate::codec::DecodeError::Malformed {
            what: "person key evaluation request",
            detail: format!("{} elements, allowed 1 to {MAX_BATCH}", r.blinded.len()),
        });
    }
    Ok(r)
}

/// Decodes an evaluation response, whole buffer, within its limit.
pub fn decode_response(bytes: &[u8]) -> Result<EvaluationResponse, crate::codec::DecodeError> {
    let r: EvaluationResponse =
        crate::codec::decode(bytes, MAX_RESPONSE_BYTES, "person key evaluation response")?;
    if let EvaluationResponse::Evaluated { evaluated, .. } = &r
        && (evaluated.is_empty() || evaluated.len() > MAX_BATCH)
    {
        return Err(crate::codec::DecodeError::Malformed {
            what: "person key evaluation response",
            detail: format!("{} elements, allowed 1 to {MAX_BATCH}", evaluated.len()),
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests;

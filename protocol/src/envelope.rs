//! Envelopes: a record's place in its region's hash chain, signed twice.
//!
//! ```text
//! Envelope { version, region, seq, prev_hash, timestamp, author, body, author_sig, node_sig }
//! author_sig = Sign(department key, tag("body-sig", fed) || body)
//! node_sig   = Sign(node key, tag("envelope-sig", fed) || encode(Header))
//! Header     = { version, region, seq, prev_hash, timestamp, author, SHA-256(body), author_sig }
//! hash       = SHA-256(tag("envelope-hash", fed) || envelope bytes)
//! ```
//! The bytes an envelope arrived in are the bytes that are hashed, stored and
//! forwarded: [`VerifiedEnvelope`] keeps them and never re-encodes.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::PROTOCOL_VERSION;
use crate::codec::{self, DecodeError};
use crate::crypto::{
    Domain, Hash256, Keypair, PublicKey, Signature, SignatureError, VerifiedSignatures, sha256,
};
use crate::ids::{DepartmentId, RegionCode};
use crate::limits::MAX_ENVELOPE_BYTES;
use crate::record::{Body, FieldError};
use crate::time::Timestamp;

/// The unit code that stands for a region's node itself as author: equivocation
/// evidence, which the node writes by itself, signed with its node key.
pub const NODE_UNIT: &str = "node";

/// The unit code that stands for a region's operator as author: department
/// registrations and revocations, signed with the operator key the manifest names for
/// the region (never the node key; docs/protocol.md §7).
pub const OPERATOR_UNIT: &str = "operator";

/// Whether a unit code is reserved for the region itself ([`NODE_UNIT`],
/// [`OPERATOR_UNIT`]): no department may be registered under it.
pub fn reserved_unit(unit: &str) -> bool {
    unit == NODE_UNIT || unit == OPERATOR_UNIT
}

/// The previous hash of the first envelope of every log.
pub const GENESIS_PREV_HASH: Hash256 = Hash256([0; 32]);

/// A record in its region's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version; must be [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The region whose log this is (a provincial code).
    pub region: RegionCode,
    /// Position in the log: 1, 2, 3 … without gaps.
    pub seq: u64,
    /// Hash of the envelope at `seq - 1`, or zeros at `seq = 1`.
    pub prev_hash: Hash256,
    /// When the node appended it (node clock, ms since the epoch).
    pub timestamp: Timestamp,
    /// The authoring department (or the node itself, unit [`NODE_UNIT`]).
    pub author: DepartmentId,
    /// The body's canonical bytes, exactly as the author signed them.
    #[serde(with = "crate::codec::hex_bytes")]
    pub body: Vec<u8>,
    /// The author's signature over the body.
    pub author_sig: Signature,
    /// The region node's signature over the header.
    pub node_sig: Signature,
}

#[derive(Serialize)]
struct Header<'a> {
    version: u16,
    region: RegionCode,
    seq: u64,
    prev_hash: Hash256,
    timestamp: Timestamp,
    author: &'a DepartmentId,
    body_hash: Hash256,
    author_sig: Signature,
}

/// Why an envelope was refused before any state was consulted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Bytes are not a canonical envelope.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Written by a protocol version this node does not speak.
    #[error(
        "envelope.version: {found} is not supported (this node speaks {PROTOCOL_VERSION}); upgrade the node"
    )]
    UnknownVersion {
        /// Version found.
        found: u16,
    },
    /// The body bytes are not a canonical body.
    #[error("envelope.body: {0}")]
    Body(DecodeError),
    /// A body field breaks a rule.
    #[error("body.{0}")]
    Field(#[from] FieldError),
    /// Region is a city/county code; logs belong to provincial members.
    #[error("envelope.region: {0} is not a provincial-level code; only member regions keep logs")]
    RegionNotProvincial(RegionCode),
    /// `seq` 0 or the first envelope not chained to genesis.
    #[error("envelope.seq: {0}")]
    Chain(String),
    /// A signature failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl EnvelopeError {
    /// Dotted path of the field at fault (`envelope` when the bytes as a whole are).
    pub fn field(&self) -> String {
        match self {
            EnvelopeError::Decode(_) => "envelope".into(),
            EnvelopeError::UnknownVersion { .. } => "envelope.version".into(),
            EnvelopeError::Body(_) => "envelope.body".into(),
            EnvelopeError::Field(e) => format!("body.{}", e.field()),
            EnvelopeError::RegionNotProvincial(_) => "envelope.region".into(),
            EnvelopeError::Chain(_) => "envelope.seq".into(),
            EnvelopeError::Signature(e) => e.field().into(),
        }
    }
}

impl Envelope {
    fn header_bytes(&self) -> Vec<u8> {
        let h = Header {
            version: self.version,
            region: self.region,
            seq: self.seq,
            prev_hash: self.prev_hash,
            timestamp: self.timestamp,
            author: &self.author,
            body_hash: sha256(&[&self.body]),
            author_sig: self.author_sig,
        };
        codec::encode(&h).unwrap_or_default()
    }

    /// Verifies the node signature with the region's node key.
    pub fn verify_node_sig(
        &self,
        federation_id: &str,
        node_key: &PublicKey,
    ) -> Result<(), SignatureError> {
        node_key.verify(
            Domain::EnvelopeHeader,
            federation_id,
            &self.header_bytes(),
            &self.node_sig,
            "envelope.node_sig",
        )
    }

    /// [`Envelope::verify_node_sig`], unless `known` already holds the signature.
    pub fn verify_node_sig_unless_known(
        &self,
        known: &VerifiedSignatures,
        federation_id: &str,
        node_key: &PublicKey,
    ) -> Result<(), SignatureError> {
        node_key.verify_unless_known(
            known,
            Domain::EnvelopeHeader,
            federation_id,
            &self.header_bytes(),
            &self.node_sig,
            "envelope.node_sig",
        )
    }

    /// [`Envelope::verify_author_sig`], unless `known` already holds the signature.
    pub fn verify_author_sig_unless_known(
        &self,
        known: &VerifiedSignatures,
        federation_id: &str,
        author_key: &PublicKey,
    ) -> Result<(), SignatureError> {
        author_key.verify_unless_known(
            known,
            Domain::Body,
            federation_id,
            &self.body,
            &self.author_sig,
            "envelope.author_sig",
        )
    }

    /// Verifies the signatures of this envelope into `known` ahead of admission, on
    /// any thread: the node's with `node_key` and the author's with `author_key` when
    /// the caller knows it. Admission decides later whether these were the right keys.
    pub fn preverify(
        &self,
        known: &mut VerifiedSignatures,
        federation_id: &str,
        node_key: &PublicKey,
        author_key: Option<&PublicKey>,
    ) {
        known.verify(
            Domain::EnvelopeHeader,
            federation_id,
            &self.header_bytes(),
            &self.node_sig,
            node_key,
        );
        if let Some(key) = author_key {
            known.verify(
                Domain::Body,
                federation_id,
                &self.body,
                &self.author_sig,
                key,
            );
        }
    }

    /// Verifies the author signature with the author's key.
    pub fn verify_author_sig(
        &self,
        federation_id: &str,
        author_key: &PublicKey,
    ) -> Result<(), SignatureError> {
        author_key.verify(
            Domain::Body,
            federation_id,
            &self.body,
            &self.author_sig,
            "envelope.author_sig",
        )
    }
}

/// Hash of an envelope's exact bytes: what the next envelope's `prev_hash` names.
pub fn envelope_hash(federation_id: &str, bytes: &[u8]) -> Hash256 {
    sha256(&[
        &crate::crypto::tag(Domain::EnvelopeHash, federation_id),
        bytes,
    ])
}

/// An envelope whose structure, body fields and (once through the ledger) signatures
/// have been checked, with the exact bytes it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEnvelope {
    /// The bytes as received: hashed, stored and forwarded verbatim.
    pub bytes: Vec<u8>,
    /// The decoded envelope.
    pub envelope: Envelope,
    /// The decoded body.
    pub body: Body,
    /// [`envelope_hash`] of `bytes`.
    pub hash: Hash256,
}

/// Reads the protocol version at the front of an envelope without decoding the rest,
/// so that a future layout is reported as "unknown version", not "malformed".
pub fn peek_version(bytes: &[u8]) -> Option<u16> {
    // u16 in varint form: one byte below 251, or 251 followed by two little-endian bytes.
    match bytes.first()? {
        &b if b < 251 => Some(b as u16),
        251 => Some(u16::from_le_bytes([*bytes.get(1)?, *bytes.get(2)?])),
        _ => None,
    }
}

/// Decodes envelope bytes and checks everything that needs no key and no state:
/// size, canonical form, version, region level, chain start, body form and fields.
pub fn decode_envelope(
    federation_id: &str,
    bytes: &[u8],
) -> Result<VerifiedEnvelope, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(DecodeError::TooLarge {
            what: "envelope",
            len: bytes.len(),
            limit: MAX_ENVELOPE_BYTES,
        }
        .into());
    }
    if let Some(v) = peek_version(bytes)
        && v != PROTOCOL_VERSION
    {
        return Err(EnvelopeError::UnknownVersion { found: v });
    }
    let envelope: Envelope = codec::decode(bytes, MAX_ENVELOPE_BYTES, "envelope")?;
    if !envelope.region.is_province() {
        return Err(EnvelopeError::RegionNotProvincial(envelope.region));
    }
    if envelope.seq == 0 {
        return Err(EnvelopeError::Chain("sequence numbers start at 1".into()));
    }
    if envelope.seq == 1 && envelope.prev_hash != GENESIS_PREV_HASH {
        return Err(EnvelopeError::Chain(
            "the first envelope's prev_hash must be all zeros".into(),
        ));
    }
    envelope
        .author
        .validate("envelope.author")
        .map_err(|e| EnvelopeError::Field(e.into()))?;
    let body = Body::decode(&envelope.body).map_err(EnvelopeError::Body)?;
    body.validate()?;
    let hash = envelope_hash(federation_id, bytes);
    Ok(VerifiedEnvelope {
        bytes: bytes.to_vec(),
        envelope,
        body,
        hash,
    })
}

/// Everything a node needs to append to its own log.
#[derive(Debug, Clone)]
pub struct AppendPosition {
    /// The node's region.
    pub region: RegionCode,
    /// Sequence number of the new envelope (head + 1).
    pub seq: u64,
    /// Hash of the current head (or genesis).
    pub prev_hash: Hash256,
    /// The node clock.
    pub timestamp: Timestamp,
}

/// Builds and node-signs an envelope around an author-signed body, returning its bytes.
///
/// Sealing checks nothing: the node then passes the bytes through
/// [`crate::ledger::admit`] like any envelope from a peer, so there is one validation path.
pub fn seal(
    federation_id: &str,
    node_key: &Keypair,
    at: &AppendPosition,
    author: DepartmentId,
    body: Vec<u8>,
    author_sig: Signature,
) -> Result<Vec<u8>, codec::EncodeError> {
    let mut unused = VerifiedSignatures::new();
    seal_recording(
        federation_id,
        node_key,
        at,
        author,
        body,
        author_sig,
        &mut unused,
    )
}

/// [`seal`], recording the node signature it makes in `known`, so that admitting the
/// envelope right after does not verify the node's own signature again.
pub fn seal_recording(
    federation_id: &str,
    node_key: &Keypair,
    at: &AppendPosition,
    author: DepartmentId,
    body: Vec<u8>,
    author_sig: Signature,
    known: &mut VerifiedSignatures,
) -> Result<Vec<u8>, codec::EncodeError> {
    let mut envelope = Envelope {
        version: PROTOCOL_VERSION,
        region: at.region,
        seq: at.seq,
        prev_hash: at.prev_hash,
        timestamp: at.timestamp,
        author,
        body,
        author_sig,
        node_sig: Signature([0; 64]),
    };
    envelope.node_sig = known.sign(
        node_key,
        Domain::EnvelopeHeader,
        federation_id,
        &envelope.header_bytes(),
    );
    codec::encode(&envelope)
}

/// Signs a body as its author: returns the canonical bytes and the signature.
pub fn sign_body(federation_id: &str, author_key: &Keypair, body: &Body) -> (Vec<u8>, Signature) {
    let bytes = body.encode();
    let sig = author_key.sign(Domain::Body, federation_id, &bytes);
    (bytes, sig)
}

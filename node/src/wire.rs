//! The pull protocol (anti-entropy) spoken over libp2p request-response.
//!
//! `/credfed/sync/1`: a request is `Heads` or `Range { region, from, limit }`; the answer is
//! every region's head, or up to `limit` envelopes of a region from `from`. A region's
//! node also asks the others to witness its checkpoint (`Cosign`), and any node asks the
//! others to cosign a federation checkpoint (`CosignFederation`): the answer is a
//! cosignature line or the reason for refusing (docs/protocol.md, witnessing). Messages are
//! the protocol's canonical encoding, prefixed by a u32 big-endian length, and bounded so
//! that a peer can never make another allocate more than the limits below.

use credfed_protocol::codec;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::ledger::Head;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// Protocol name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/credfed/sync/1");

/// Largest request. Most are tiny; the largest is a federation checkpoint to cosign,
/// which carries one region checkpoint body (≈ 170 bytes) per member — 512 members (the
/// manifest's limit) need about 87 KiB — and the witnessed notes of recently changed
/// leaves ([`MAX_WITNESSED_NOTES_BYTES`]).
pub const MAX_REQUEST_BYTES: usize = 96 * 1024 + MAX_WITNESSED_NOTES_BYTES;

/// Bytes of witnessed notes a federation proposal carries at most: a note with every
/// one of 31 members' cosignatures is about 3.5 KiB, so this holds the notes of every
/// region of a 31-member federation that changed in the last seconds.
pub const MAX_WITNESSED_NOTES_BYTES: usize = 128 * 1024;

/// Envelopes per range response. Catch-up is bound by applying envelopes (≈ 0.3 ms
/// each), and every round trip adds a wait on a loaded peer: 1024 catches up 10 k records
/// in 10 round trips (256 took 40 and measured ≈ 10 % slower), while applying one range
/// still holds the network loop for well under a second. The byte limit below cuts a
/// range of large envelopes short.
pub const MAX_RANGE_ENVELOPES: u32 = 1024;

/// Bytes per response: a response stops adding envelopes at 4 MiB (always at least one),
/// so a range of maximal envelopes is shorter than [`MAX_RANGE_ENVELOPES`].
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Cosign requests carry notes (bounded by MAX_REQUEST_BYTES); size is not a concern.
#[allow(clippy::large_enum_variant)]
pub enum SyncRequest {
    /// Every region's head.
    Heads,
    /// Envelopes of `region` from sequence `from`.
    Range {
        /// Region.
        region: RegionCode,
        /// First sequence number wanted.
        from: u64,
        /// At most this many (capped at [`MAX_RANGE_ENVELOPES`]).
        limit: u32,
    },
    /// Witness this checkpoint of the requester's region (a C2SP note it signed).
    Cosign {
        /// The note text.
        note: String,
    },
    /// Cosign this federation checkpoint (docs/protocol.md, "Federation checkpoints").
    CosignFederation {
        /// The note text (the proposer's cosignature on it).
        note: String,
        /// Its leaves: every member region's checkpoint body, in manifest order.
        leaves: Vec<String>,
        /// Witnessed notes of leaves the proposer received recently, which the cosigner
        /// may not hold yet.
        witnessed: Vec<String>,
    },
    /// The manifest the responder runs: asked when a member's identify agent names a
    /// newer version than the asker's (docs/operator.md, "Manifests"). Appended last so
    /// that the variants before keep their tags.
    Manifest,
}

/// A pull response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Heads held by the responder.
    Heads(Vec<(RegionCode, Head)>),
    /// Envelopes, in sequence order, verbatim.
    Range {
        /// Region.
        region: RegionCode,
        /// Envelope bytes.
        envelopes: Vec<Vec<u8>>,
    },
    /// The witness's cosignature line.
    Cosigned(credfed_protocol::checkpoint::NoteSignature),
    /// Why it does not cosign.
    CosignRefused(credfed_protocol::witness::CosignRefusal),
    /// The signed manifest the responder runs (at most
    /// [`credfed_protocol::limits::MAX_MANIFEST_BYTES`], well inside a response frame);
    /// the asker verifies it against its own pinned authority before anything else.
    Manifest(credfed_protocol::manifest::SignedManifest),
}

/// The limits and names of one request-response protocol's messages.
pub trait Messages: Send + Clone + Default + 'static {
    /// Request type.
    type Request: Serialize + serde::de::DeserializeOwned + Send;
    /// Response type.
    type Response: Serialize + serde::de::DeserializeOwned + Send;
    /// Largest request frame.
    const MAX_REQUEST: usize;
    /// Largest response frame.
    const MAX_RESPONSE: usize;
    /// Decodes a whole request frame (limits and rules included).
    fn decode_request(bytes: &[u8]) -> Result<Self::Request, credfed_protocol::codec::DecodeError>;
    /// Decodes a whole response frame.
    fn decode_response(
        bytes: &[u8],
    ) -> Result<Self::Response, credfed_protocol::codec::DecodeError>;
}

/// The pull protocol's messages.
#[derive(Debug, Clone, Default)]
pub struct SyncMessages;

impl Messages for SyncMessages {
    type Request = SyncRequest;
    type Response = SyncResponse;
    const MAX_REQUEST: usize = MAX_REQUEST_BYTES;
    const MAX_RESPONSE: usize = MAX_RESPONSE_BYTES;
    fn decode_request(b: &[u8]) -> Result<SyncRequest, credfed_protocol::codec::DecodeError> {
        codec::decode(b, MAX_REQUEST_BYTES, "sync request")
    }
    fn decode_response(b: &[u8]) -> Result<SyncResponse, credfed_protocol::codec::DecodeError> {
        codec::decode(b, MAX_RESPONSE_BYTES, "sync response")
    }
}

/// Person-key evaluations (docs/privacy.md): an asking node sends blinded elements to a
/// member, which answers its share's evaluations with a proof, or refuses.
pub const PERSON_KEY_PROTOCOL: StreamProtocol = StreamProtocol::new("/credfed/person-key/1");

/// The person-key protocol's messages (protocol::oprf holds their types and limits).
#[derive(Debug, Clone, Default)]
pub struct PersonKeyMessages;

impl Messages for PersonKeyMessages {
    type Request = credfed_protocol::oprf::EvaluationRequest;
    type Response = credfed_protocol::oprf::EvaluationResponse;
    const MAX_REQUEST: usize = credfed_protocol::oprf::MAX_REQUEST_BYTES;
    const MAX_RESPONSE: usize = credfed_protocol::oprf::MAX_RESPONSE_BYTES;
    fn decode_request(b: &[u8]) -> Result<Self::Request, credfed_protocol::codec::DecodeError> {
        credfed_protocol::oprf::decode_request(b)
    }
    fn decode_response(b: &[u8]) -> Result<Self::Response, credfed_protocol::codec::DecodeError> {
        credfed_protocol::oprf::decode_response(b)
    }
}

/// The person key's ceremony between members (docs/privacy.md, "Key lifecycle"): a
/// member sends a round's package to the member it is for, which takes it, holds it
/// until its operator starts the ceremony, or refuses it.
pub const CEREMONY_PROTOCOL: StreamProtocol = StreamProtocol::new("/credfed/person-key-ceremony/1");

/// The ceremony protocol's messages (protocol::oprf::ceremony holds their types and
/// limits).
#[derive(Debug, Clone, Default)]
pub struct CeremonyMessages;

impl Messages for CeremonyMessages {
    type Request = credfed_protocol::oprf::ceremony::CeremonyMessage;
    type Response = credfed_protocol::oprf::ceremony::CeremonyReply;
    const MAX_REQUEST: usize = credfed_protocol::oprf::ceremony::MAX_MESSAGE_BYTES;
    const MAX_RESPONSE: usize = credfed_protocol::oprf::ceremony::MAX_REPLY_BYTES;
    fn decode_request(b: &[u8]) -> Result<Self::Request, credfed_protocol::codec::DecodeError> {
        credfed_protocol::oprf::ceremony::decode_message(b)
    }
    fn decode_response(b: &[u8]) -> Result<Self::Response, credfed_protocol::codec::DecodeError> {
        credfed_protocol::oprf::ceremony::decode_reply(b)
    }
}

/// Length-prefixed canonical codec with limits, for any [`Messages`].
#[derive(Debug, Clone, Default)]
pub struct LimitedCodec<M>(std::marker::PhantomData<M>);

/// The pull protocol's codec.
pub type SyncCodec = LimitedCodec<SyncMessages>;
/// The person-key protocol's codec.
pub type PersonKeyCodec = LimitedCodec<PersonKeyMessages>;
/// The ceremony protocol's codec.
pub type CeremonyCodec = LimitedCodec<CeremonyMessages>;

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {limit}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> std::io::Result<()> {
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl<M: Messages> libp2p::request_response::Codec for LimitedCodec<M> {
    type Protocol = StreamProtocol;
    type Request = M::Request;
    type Response = M::Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<M::Request> {
        let b = read_frame(io, M::MAX_REQUEST).await?;
        M::decode_request(&b).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<M::Response> {
        let b = read_frame(io, M::MAX_RESPONSE).await?;
        M::decode_response(&b).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: M::Request,
    ) -> std::io::Result<()> {
        write_frame(io, &codec::encode(&req).map_err(invalid)?).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: M::Response,
    ) -> std::io::Result<()> {
        write_frame(io, &codec::encode(&res).map_err(invalid)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credfed_protocol::crypto::Keypair;
    use credfed_protocol::manifest::{Manifest, Member};
    use credfed_protocol::time::Timestamp;

    /// The manifest request and answer were appended to the pull protocol: the tags of
    /// the messages before are unchanged (nodes of the previous build keep understanding
    /// them), and a signed manifest travels whole within the response limit.
    #[test]
    fn the_pull_protocol_keeps_its_tags_and_carries_a_signed_manifest() {
        let tag = |r: &SyncRequest| codec::encode(r).unwrap()[0];
        assert_eq!(tag(&SyncRequest::Heads), 0);
        assert_eq!(
            tag(&SyncRequest::Cosign {
                note: String::new()
            }),
            2
        );
        assert_eq!(tag(&SyncRequest::Manifest), 4);
        let bytes = codec::encode(&SyncRequest::Manifest).unwrap();
        assert_eq!(
            SyncMessages::decode_request(&bytes).unwrap(),
            SyncRequest::Manifest
        );
        let authority = Keypair::from_secret([7; 32]);
        let members = credfed_protocol::ids::PROVINCES[..31]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Member::for_province(
                    RegionCode::new(p.code, "r").unwrap(),
                    Keypair::from_secret([i as u8 + 10; 32]).public(),
                    Keypair::from_secret([i as u8 + 110; 32]).public(),
                    vec![format!("/ip4/10.0.0.{i}/tcp/4001")],
                )
            })
            .collect();
        let m = Manifest::for_build(
            "cn-credit",
            2,
            Timestamp(0),
            Timestamp(1 << 50),
            authority.public(),
            members,
        );
        let signed = m.sign(&authority).unwrap();
        let response = codec::encode(&SyncResponse::Manifest(signed.clone())).unwrap();
        assert!(response.len() <= MAX_RESPONSE_BYTES);
        assert_eq!(
            SyncMessages::decode_response(&response).unwrap(),
            SyncResponse::Manifest(signed.clone())
        );
        assert_eq!(signed.verify(&authority.public(), Timestamp(1)).unwrap(), m);
    }
}

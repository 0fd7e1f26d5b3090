//! Gossip messages: the envelopes a node made durable together, pushed as one message.
//!
//! A node's writer makes its appends durable in groups (one fsync for many), and a
//! department importing a list submits hundreds at once. Pushing each envelope as its
//! own gossip message cost every member one message (a TLS record, a yamux frame, a
//! system call, a duplicate-cache lookup) per record and per mesh peer; a batch costs
//! that once per group. Admission is unchanged: each envelope in a batch is judged on
//! its own, in order (docs/protocol.md, "Gossip").
//!
//! The encoding is the protocol's canonical one ([`crate::codec`]): a length-prefixed
//! sequence of length-prefixed envelope encodings. The decoder enforces every limit
//! below before admission sees a byte.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{self, DecodeError};
use crate::limits::MAX_ENVELOPE_BYTES;

/// Envelopes in one gossip message at most: a whole group commit of the writer (256
/// appends per fsync at most), so that a burst costs one message per group.
pub const MAX_GOSSIP_ENVELOPES: usize = 256;

/// Bytes of one gossip message at most. Large enough for two envelopes of the largest
/// size (so every envelope fits a batch alone) and for a full group of typical list
/// entries (≈ 300–400 bytes each); small enough that gossipsub's per-message buffers
/// and a slow peer's queue stay small.
pub const MAX_GOSSIP_BYTES: usize = 96 * 1024;

/// Length of the canonical encoding's varint for `n` (bincode's: one byte below 251,
/// then a marker byte and two, four or eight bytes).
const fn varint_len(n: usize) -> usize {
    if n < 251 {
        1
    } else if n < 1 << 16 {
        3
    } else if n < 1 << 32 {
        5
    } else {
        9
    }
}

/// Encoded length of a batch of envelopes of these lengths.
fn encoded_len(count: usize, envelope_bytes: usize, prefixes: usize) -> usize {
    varint_len(count) + prefixes + envelope_bytes
}

const _: () = assert!(
    varint_len(2) + 2 * (MAX_ENVELOPE_BYTES + varint_len(MAX_ENVELOPE_BYTES)) <= MAX_GOSSIP_BYTES
);

/// One envelope's bytes inside a batch (raw bytes in the binary encoding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EnvelopeBytes(#[serde(with = "crate::codec::hex_bytes")] Vec<u8>);

/// The same, borrowed: what the encoder writes, without copying the envelopes first.
#[derive(Serialize)]
struct EnvelopeRef<'a>(#[serde(with = "crate::codec::hex_bytes")] &'a [u8]);

/// Why a gossip batch was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GossipError {
    /// The message does not decode as a batch.
    #[error("gossip message: {0}")]
    Decode(#[from] DecodeError),
    /// A batch must carry at least one envelope.
    #[error("gossip message: empty batch (a batch carries 1 to {MAX_GOSSIP_ENVELOPES} envelopes)")]
    Empty,
    /// Too many envelopes.
    #[error("gossip message: {count} envelopes exceeds the limit of {MAX_GOSSIP_ENVELOPES}")]
    TooMany {
        /// Envelopes in the batch.
        count: usize,
    },
    /// One envelope is larger than any envelope may be.
    #[error(
        "gossip message: envelope {index} is {len} bytes, over the limit of {MAX_ENVELOPE_BYTES}"
    )]
    EnvelopeTooLarge {
        /// Its position in the batch.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The encoded batch would exceed [`MAX_GOSSIP_BYTES`].
    #[error("gossip message: {len} bytes exceeds the limit of {MAX_GOSSIP_BYTES}")]
    TooLarge {
        /// Encoded length.
        len: usize,
    },
}

fn check_envelopes<T: AsRef<[u8]>>(envelopes: &[T]) -> Result<(), GossipError> {
    if envelopes.is_empty() {
        return Err(GossipError::Empty);
    }
    if envelopes.len() > MAX_GOSSIP_ENVELOPES {
        return Err(GossipError::TooMany {
            count: envelopes.len(),
        });
    }
    if let Some((index, e)) = envelopes
        .iter()
        .enumerate()
        .find(|(_, e)| e.as_ref().len() > MAX_ENVELOPE_BYTES)
    {
        return Err(GossipError::EnvelopeTooLarge {
            index,
            len: e.as_ref().len(),
        });
    }
    Ok(())
}

/// Encodes envelopes (each an envelope's canonical encoding) as one gossip message.
pub fn encode_batch(envelopes: &[Vec<u8>]) -> Result<Vec<u8>, GossipError> {
    check_envelopes(envelopes)?;
    let borrowed: Vec<EnvelopeRef<'_>> = envelopes.iter().map(|e| EnvelopeRef(e)).collect();
    let bytes = codec::encode(&borrowed).map_err(|e| {
        GossipError::Decode(DecodeError::Malformed {
            what: "gossip batch",
            detail: e.to_string(),
        })
    })?;
    if bytes.len() > MAX_GOSSIP_BYTES {
        return Err(GossipError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes a gossip message into its envelopes' bytes, in order. Every limit is checked
/// here; what the envelopes say is admission's to judge.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Vec<u8>>, GossipError> {
    if bytes.len() > MAX_GOSSIP_BYTES {
        return Err(GossipError::TooLarge { len: bytes.len() });
    }
    let wrapped: Vec<EnvelopeBytes> = codec::decode(bytes, MAX_GOSSIP_BYTES, "gossip batch")?;
    let envelopes: Vec<Vec<u8>> = wrapped.into_iter().map(|e| e.0).collect();
    check_envelopes(&envelopes)?;
    Ok(envelopes)
}

/// Splits envelopes, in order, into as few batches as the limits allow; each batch
/// encodes with [`encode_batch`]. Envelopes over [`MAX_ENVELOPE_BYTES`] are left out
/// (no node makes one; admission would refuse it anyway).
pub fn split_into_batches(envelopes: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut batches = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let (mut bytes, mut prefixes) = (0, 0);
    for e in envelopes {
        if e.len() > MAX_ENVELOPE_BYTES {
            continue;
        }
        let fits = current.len() < MAX_GOSSIP_ENVELOPES
            && encoded_len(
                current.len() + 1,
                bytes + e.len(),
                prefixes + varint_len(e.len()),
            ) <= MAX_GOSSIP_BYTES;
        if !current.is_empty() && !fits {
            batches.push(std::mem::take(&mut current));
            (bytes, prefixes) = (0, 0);
        }
        bytes += e.len();
        prefixes += varint_len(e.len());
        current.push(e);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_its_encoding_is_canonical() {
        let envelopes = vec![vec![1u8; 10], vec![], vec![7u8; 300]];
        let bytes = encode_batch(&envelopes).unwrap();
        assert_eq!(decode_batch(&bytes).unwrap(), envelopes);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode_batch(&longer),
            Err(GossipError::Decode(DecodeError::TrailingBytes { .. }))
        ));
    }

    #[test]
    fn limits_are_refused_naming_the_rule() {
        assert_eq!(encode_batch(&[]), Err(GossipError::Empty));
        let empty = codec::encode(&Vec::<EnvelopeBytes>::new()).unwrap();
        assert_eq!(decode_batch(&empty), Err(GossipError::Empty));
        let many = vec![vec![0u8; 1]; MAX_GOSSIP_ENVELOPES + 1];
        let e = encode_batch(&many).unwrap_err();
        assert!(
            e.to_string()
                .contains("257 envelopes exceeds the limit of 256"),
            "{e}"
        );
        // The decoder refuses the same batch, encoded by hand.
        let wrapped: Vec<EnvelopeBytes> = many.into_iter().map(EnvelopeBytes).collect();
        let bytes = codec::encode(&wrapped).unwrap();
        assert_eq!(
            decode_batch(&bytes),
            Err(GossipError::TooMany { count: 257 })
        );
        let big = vec![vec![0u8; MAX_ENVELOPE_BYTES + 1]];
        assert_eq!(
            encode_batch(&big),
            Err(GossipError::EnvelopeTooLarge {
                index: 0,
                len: MAX_ENVELOPE_BYTES + 1
            })
        );
        assert!(matches!(
            decode_batch(&vec![0u8; MAX_GOSSIP_BYTES + 1]),
            Err(GossipError::TooLarge { .. })
        ));
    }

    #[test]
    fn splitting_keeps_order_and_every_batch_encodes() {
        let sizes = [
            300usize,
            MAX_ENVELOPE_BYTES,
            1,
            MAX_ENVELOPE_BYTES,
            MAX_ENVELOPE_BYTES,
            40,
        ];
        let mut envelopes: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| vec![i as u8; *n])
            .collect();
        envelopes.extend((0..600).map(|i| vec![(i % 251) as u8; 350]));
        let batches = split_into_batches(envelopes.clone());
        let flat: Vec<Vec<u8>> = batches.iter().flatten().cloned().collect();
        assert_eq!(flat, envelopes);
        for b in &batches {
            let bytes = encode_batch(b).unwrap();
            let payload: usize = b.iter().map(Vec::len).sum();
            let prefixes: usize = b.iter().map(|e| varint_len(e.len())).sum();
            assert_eq!(bytes.len(), encoded_len(b.len(), payload, prefixes));
        }
        // Greedy: a batch was closed only because the next envelope did not fit it.
        for pair in batches.windows(2) {
            let mut grown = pair[0].clone();
            grown.push(pair[1][0].clone());
            assert!(encode_batch(&grown).is_err() || pair[0].len() == MAX_GOSSIP_ENVELOPES);
        }
        assert!(split_into_batches(vec![vec![0; MAX_ENVELOPE_BYTES + 1]]).is_empty());
    }
}

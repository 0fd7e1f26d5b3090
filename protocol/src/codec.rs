//! The one canonical byte encoding used for signing, storage and the wire.
//!
//! Everything that touches bincode lives in this module, so that the library can be
//! replaced without changing a byte: the layout is the one documented in
//! `docs/protocol.md` and pinned by the known-answer vectors in `tests/`.
//!
//! Why the extra checks: bincode happily decodes non-minimal varints and ignores
//! trailing bytes. Two different byte strings for the same value would let a signed
//! record be "replayed with different content" under the same meaning, so a decode
//! is accepted only when re-encoding the value gives back exactly the input.

use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// The single fixed bincode configuration: little-endian, variable-length integers,
/// and a hard allocation limit so a hostile length prefix cannot ask for gigabytes.
fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ crate::limits::MAX_DECODE_ALLOCATION }>()
}

/// Why bytes were refused by the decoder.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input is longer than the limit for its type.
    #[error("{what}: {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The type being decoded.
        what: &'static str,
        /// Length of the input.
        len: usize,
        /// Limit for this type.
        limit: usize,
    },
    /// The bytes do not describe a value of the type.
    #[error("{what}: malformed encoding: {detail}")]
    Malformed {
        /// The type being decoded.
        what: &'static str,
        /// What the underlying decoder said.
        detail: String,
    },
    /// A valid value was followed by extra bytes.
    #[error("{what}: {extra} trailing bytes after the value")]
    TrailingBytes {
        /// The type being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The value decoded, but is not in its one canonical form (e.g. an over-long varint).
    #[error("{what}: non-canonical encoding (re-encoding gives different bytes)")]
    NonCanonical {
        /// The type being decoded.
        what: &'static str,
    },
}

impl DecodeError {
    /// The type whose bytes were refused (the field of a record it was read for).
    pub fn field(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { what, .. }
            | DecodeError::Malformed { what, .. }
            | DecodeError::TrailingBytes { what, .. }
            | DecodeError::NonCanonical { what } => what,
        }
    }
}

/// Encodes a value in the canonical form.
///
/// Encoding of the crate's own types cannot fail (no maps with non-string keys, no
/// sequences of unknown length); an error here means a programming mistake, which
/// is reported rather than panicking.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| EncodeError(e.to_string()))
}

/// Encoding failed; only possible for values the protocol never produces.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("encoding failed: {0}")]
pub struct EncodeError(pub String);

/// Decodes `bytes` as a `T`, enforcing a size limit, whole-buffer consumption and
/// canonical form.
pub fn decode<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    let (value, consumed): (T, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| DecodeError::Malformed {
            what,
            detail: e.to_string(),
        })?;
    if consumed != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: bytes.len() - consumed,
        });
    }
    match encode(&value) {
        Ok(again) if again == bytes => Ok(value),
        _ => Err(DecodeError::NonCanonical { what }),
    }
}

/// Lower-case hex of `bytes`. Answers carry their evidence envelopes in hex, and the
/// `hex` crate's encoder, which builds the string a `char` at a time, was a visible part
/// of a check's CPU over HTTPS; this writes bytes from a table.
pub fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Only ASCII digits were written, so this never falls back.
    String::from_utf8(out).unwrap_or_default()
}

/// Serde for byte strings that are themselves encodings (envelope bodies, manifests,
/// evidence): raw length-prefixed bytes in binary encodings, lower-case hex in JSON, so
/// that JSON stays readable and exact.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises bytes.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&super::lower_hex(b))
        } else {
            s.serialize_bytes(b)
        }
    }

    /// Deserialises bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            return hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom);
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    /// The table encoder writes what the `hex` crate writes (and decodes back from),
    /// for every byte value and for empty input.
    #[test]
    fn lower_hex_matches_the_hex_crate_for_every_byte() {
        let every: Vec<u8> = (0..=255u8).collect();
        assert_eq!(super::lower_hex(&every), hex::encode(&every));
        assert_eq!(hex::decode(super::lower_hex(&every)).unwrap(), every);
        assert_eq!(super::lower_hex(&[]), "");
    }
}

//! Checkpoints of a region's log and their witness cosignatures, in the C2SP formats
//! (tlog-checkpoint, signed-note, tlog-cosignature v1 with Ed25519), so that existing
//! transparency tooling can read them.
//!
//! A checkpoint is a short text: the origin line naming the federation and the region,
//! the tree size, the root hash (base64), and optional extension lines. The region's
//! node signs it as a signed note; other members, acting as witnesses, cosign it once
//! they have checked that it is consistent with what they cosigned before and with
//! their own replica. A quorum of cosignatures on a checkpoint means that no member was
//! shown a different history of that region — the split view a hash chain alone cannot
//! exclude.
//!
//! Domain separation: these signatures are over texts defined by the C2SP formats, not
//! over credfed's tagged messages ([`crate::crypto::tag`]). Every tagged message starts
//! with `"credfed\0"`; a note is refused if it contains any control character but the
//! line feed, and a cosigned message starts with `"cosignature/v1\n"`, so no signature
//! of one kind can be taken for the other.
//!
//! Decoding is strict and bounded ([`MAX_NOTE_BYTES`], [`MAX_NOTE_SIGNATURES`]): sizes
//! in canonical decimal, the root in canonical padded base64, names without spaces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use crate::crypto::{Hash256, Keypair, PublicKey, Signature, sha256};
use crate::ids::RegionCode;

/// Largest signed checkpoint accepted: the body is under 200 bytes, and a signature line
/// under 200, so this leaves room for every member's cosignature and then some.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Most signature lines on one checkpoint (a federation has at most 31 members today;
/// [`crate::limits::MAX_MEMBERS`] bounds manifests).
pub const MAX_NOTE_SIGNATURES: usize = 128;

/// Most extension lines a checkpoint may carry.
pub const MAX_EXTENSION_LINES: usize = 8;

/// How a region checkpoint's extension line naming its map root starts.
pub const MAP_EXTENSION: &str = "map ";

/// How a region checkpoint's extension line giving the time its node signed it starts
/// (seconds since the epoch on the region's clock): what a verifier measures the
/// region's freshness by (docs/protocol.md, "Freshness").
pub const TIME_EXTENSION: &str = "time ";

/// The extension line of a federation leaf that excludes a region for equivocation
/// (docs/protocol.md, "Federation checkpoints").
pub const EXCLUDED_EXTENSION: &str = "excluded";

/// How a federation checkpoint's extension line naming the manifest starts:
/// `manifest <version> <base64 SHA-256 of the manifest's canonical bytes>`.
pub const MANIFEST_EXTENSION: &str = "manifest ";

/// Signature type byte of an Ed25519 signed-note key (C2SP signed-note).
const NOTE_ED25519: u8 = 0x01;
/// Signature type byte of an Ed25519 cosigner key (C2SP tlog-cosignature).
const COSIGNATURE_ED25519: u8 = 0x04;

/// The origin line of a region's log: `credfed/<federation>/<region>`.
pub fn origin(federation_id: &str, region: RegionCode) -> String {
    format!("credfed/{federation_id}/{region}")
}

/// The key name a member uses when it cosigns as a witness.
pub fn witness_name(federation_id: &str, region: RegionCode) -> String {
    format!("credfed/{federation_id}/witness/{region}")
}

/// Why a checkpoint or a signature line was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// Too large, too many lines or signatures.
    #[error("checkpoint: {0}")]
    Limit(String),
    /// Not the C2SP layout.
    #[error("checkpoint: {0}")]
    Format(String),
    /// A signature that should verify does not, or is missing.
    #[error("checkpoint: {0}")]
    Signature(String),
}

fn format_err(m: impl Into<String>) -> CheckpointError {
    CheckpointError::Format(m.into())
}

/// A checkpoint's body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// `credfed/<federation>/<region>`.
    pub origin: String,
    /// Leaves (envelopes) in the tree.
    pub size: u64,
    /// RFC 6962 root of those leaves.
    pub root: Hash256,
    /// Extension lines, without their line feeds.
    pub extensions: Vec<String>,
}

/// A canonical decimal u64: "0", or digits without a leading zero.
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical =
        text == "0" || (!text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit()));
    text.parse().ok().filter(|_| canonical)
}

/// A line of text as notes allow it: non-empty, no control characters.
fn valid_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(char::is_control)
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: String, size: u64, root: Hash256) -> Checkpoint {
        Checkpoint {
            origin,
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// A region checkpoint committing to the region's verifiable map
    /// ([`crate::map`]): the extension line `map <base64 root>`.
    pub fn with_map(origin: String, size: u64, root: Hash256, map_root: Hash256) -> Checkpoint {
        Checkpoint {
            origin,
            size,
            root,
            extensions: vec![format!("{MAP_EXTENSION}{}", BASE64.encode(map_root.0))],
        }
    }

    /// A region checkpoint committing to its map and stamped with the time its node
    /// signs it: the `map` line, then `time <seconds>`.
    pub fn with_map_at(
        origin: String,
        size: u64,
        root: Hash256,
        map_root: Hash256,
        time: u64,
    ) -> Checkpoint {
        let mut c = Checkpoint::with_map(origin, size, root, map_root);
        c.extensions.push(format!("{TIME_EXTENSION}{time}"));
        c
    }

    /// The federation leaf of a region excluded for equivocation: size 0, the empty
    /// tree's root and the single extension line `excluded` — it proves nothing about
    /// the region's log, and a verifier says so.
    pub fn excluded(origin: String) -> Checkpoint {
        Checkpoint {
            origin,
            size: 0,
            root: crate::merkle::empty_root(),
            extensions: vec![EXCLUDED_EXTENSION.to_owned()],
        }
    }

    /// Whether this is an exclusion leaf (exactly [`Checkpoint::excluded`]'s shape).
    pub fn is_excluded(&self) -> bool {
        self.extensions.len() == 1
            && self.extensions[0] == EXCLUDED_EXTENSION
            && self.size == 0
            && self.root == crate::merkle::empty_root()
    }

    /// The time the region's node signed this checkpoint (seconds since the epoch), if
    /// it has a well-formed `time` line (canonical decimal).
    pub fn time(&self) -> Option<u64> {
        let line = self
            .extensions
            .iter()
            .find_map(|e| e.strip_prefix(TIME_EXTENSION))?;
        canonical_decimal(line)
    }

    /// Whether this head of a region supersedes `other`: it covers more records, or the
    /// same number signed later (an idle region's refreshed head).
    pub fn is_later_than(&self, other: &Checkpoint) -> bool {
        self.size > other.size
            || (self.size == other.size && self.time().unwrap_or(0) > other.time().unwrap_or(0))
    }

    /// A federation checkpoint's `manifest` line: the version and hash of the manifest
    /// its cosigners held.
    pub fn manifest_named(&self) -> Option<(u64, Hash256)> {
        let line = self
            .extensions
            .iter()
            .find_map(|e| e.strip_prefix(MANIFEST_EXTENSION))?;
        let (version, hash) = line.split_once(' ')?;
        let version = canonical_decimal(version)?;
        let bytes: [u8; 32] = BASE64.decode(hash).ok()?.try_into().ok()?;
        (BASE64.encode(bytes) == hash).then_some((version, Hash256(bytes)))
    }

    /// The `manifest` extension line for a manifest of `version` and `hash`.
    pub fn manifest_line(version: u64, hash: &Hash256) -> String {
        format!("{MANIFEST_EXTENSION}{version} {}", BASE64.encode(hash.0))
    }

    /// The map root the checkpoint commits to, if it has a well-formed `map` line.
    pub fn map_root(&self) -> Option<Hash256> {
        let line = self
            .extensions
            .iter()
            .find_map(|e| e.strip_prefix(MAP_EXTENSION))?;
        let bytes: [u8; 32] = BASE64.decode(line).ok()?.try_into().ok()?;
        (BASE64.encode(bytes) == line).then_some(Hash256(bytes))
    }

    /// The note body: every line ends with a line feed.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note body (every line ending with a line feed, no blank line).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(format_err("the body must end with a line feed"));
        };
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        if !valid_line(origin) {
            return Err(format_err("origin line is empty or has control characters"));
        }
        let size_line = lines
            .next()
            .ok_or_else(|| format_err("no tree size line"))?;
        let canonical = size_line == "0"
            || (!size_line.starts_with('0') && size_line.bytes().all(|b| b.is_ascii_digit()));
        let size: u64 = size_line
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| {
                format_err(format!(
                    "tree size '{size_line}' is not a canonical decimal"
                ))
            })?;
        let root_line = lines
            .next()
            .ok_or_else(|| format_err("no root hash line"))?;
        let root_bytes = BASE64
            .decode(root_line)
            .map_err(|e| format_err(format!("root hash: {e}")))?;
        let root: [u8; 32] = root_bytes
            .try_into()
            .map_err(|_| format_err("root hash: not 32 bytes"))?;
        if BASE64.encode(root) != root_line {
            return Err(format_err("root hash: not canonical base64"));
        }
        let mut extensions = Vec::new();
        for e in lines {
            if !valid_line(e) {
                return Err(format_err(
                    "extension line is empty or has control characters",
                ));
            }
            if extensions.len() == MAX_EXTENSION_LINES {
                return Err(CheckpointError::Limit(format!(
                    "more than {MAX_EXTENSION_LINES} extension lines"
                )));
            }
            extensions.push(e.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root: Hash256(root),
            extensions,
        })
    }
}

/// One signature line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// First four bytes of the key's hash (which key, and which kind of signature).
    pub key_id: [u8; 4],
    /// What follows the key id: a signature, or a timestamp and a signature.
    pub data: Vec<u8>,
}

/// A checkpoint and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedCheckpoint {
    /// The body.
    pub checkpoint: Checkpoint,
    /// Signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

fn key_id(name: &str, kind: u8, key: &PublicKey) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", &[kind], &key.0]);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

fn valid_name(name: &str) -> bool {
    valid_line(name) && !name.contains(' ') && !name.contains('+')
}

/// The message a cosigner signs: `cosignature/v1`, the time, then the whole body.
fn cosigned_message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

impl SignedCheckpoint {
    /// The region node's signature on `checkpoint`, under key name `name` (the origin).
    pub fn sign(checkpoint: Checkpoint, name: &str, key: &Keypair) -> SignedCheckpoint {
        let body = checkpoint.body();
        let sig = key.sign_external(body.as_bytes());
        SignedCheckpoint {
            checkpoint,
            signatures: vec![NoteSignature {
                name: name.to_owned(),
                key_id: key_id(name, NOTE_ED25519, &key.public()),
                data: sig.0.to_vec(),
            }],
        }
    }

    /// Adds a witness's cosignature made at `timestamp` (seconds since the epoch).
    pub fn cosign(&mut self, name: &str, key: &Keypair, timestamp: u64) {
        let msg = cosigned_message(&self.checkpoint.body(), timestamp);
        let sig = key.sign_external(&msg);
        let mut data = timestamp.to_be_bytes().to_vec();
        data.extend_from_slice(&sig.0);
        let line = NoteSignature {
            name: name.to_owned(),
            key_id: key_id(name, COSIGNATURE_ED25519, &key.public()),
            data,
        };
        self.signatures
            .retain(|s| !(s.name == line.name && s.key_id == line.key_id));
        self.signatures.push(line);
    }

    /// Checks the log's own signature by `key` under `name`.
    pub fn verify_log_signature(&self, name: &str, key: &PublicKey) -> Result<(), CheckpointError> {
        let id = key_id(name, NOTE_ED25519, key);
        let line = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.key_id == id)
            .ok_or_else(|| CheckpointError::Signature(format!("no signature by {name}")))?;
        let sig: [u8; 64] =
            line.data.as_slice().try_into().map_err(|_| {
                CheckpointError::Signature(format!("{name}: not a 64-byte signature"))
            })?;
        key.verify_external(self.checkpoint.body().as_bytes(), &Signature(sig))
            .map_err(|e| CheckpointError::Signature(format!("{name}: {e}")))
    }

    /// Checks a witness's cosignature by `key` under `name`; returns its timestamp.
    pub fn verify_cosignature(&self, name: &str, key: &PublicKey) -> Result<u64, CheckpointError> {
        let id = key_id(name, COSIGNATURE_ED25519, key);
        let line = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.key_id == id)
            .ok_or_else(|| CheckpointError::Signature(format!("no cosignature by {name}")))?;
        if line.data.len() != 8 + 64 {
            return Err(CheckpointError::Signature(format!(
                "{name}: not a timestamped signature"
            )));
        }
        let (time, sig) = line.data.split_at(8);
        let mut t = [0u8; 8];
        t.copy_from_slice(time);
        let timestamp = u64::from_be_bytes(t);
        if timestamp > i64::MAX as u64 {
            return Err(CheckpointError::Signature(format!(
                "{name}: timestamp beyond 2^63 - 1"
            )));
        }
        let mut s = [0u8; 64];
        s.copy_from_slice(sig);
        key.verify_external(
            &cosigned_message(&self.checkpoint.body(), timestamp),
            &Signature(s),
        )
        .map_err(|e| CheckpointError::Signature(format!("{name}: {e}")))?;
        Ok(timestamp)
    }

    /// The timestamps of every cosignature line, as written (not verified: for notes
    /// this node verified before it stored them).
    pub fn cosignature_times(&self) -> Vec<u64> {
        self.signatures
            .iter()
            .filter(|s| s.data.len() == 8 + 64)
            .filter_map(|s| <[u8; 8]>::try_from(&s.data[..8]).ok())
            .map(u64::from_be_bytes)
            .collect()
    }

    /// The signed note's text: body, a blank line, one line per signature.
    pub fn encode(&self) -> String {
        let mut s = self.checkpoint.body();
        s.push('\n');
        for sig in &self.signatures {
            let mut bytes = sig.key_id.to_vec();
            bytes.extend_from_slice(&sig.data);
            s.push_str(&format!("\u{2014} {} {}\n", sig.name, BASE64.encode(bytes)));
        }
        s
    }

    /// Parses a signed note, within [`MAX_NOTE_BYTES`] and [`MAX_NOTE_SIGNATURES`].
    /// Signatures are only parsed here; verify the ones you trust with
    /// [`Self::verify_log_signature`] and [`Self::verify_cosignature`].
    pub fn parse(text: &str) -> Result<SignedCheckpoint, CheckpointError> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(CheckpointError::Limit(format!(
                "{} bytes exceeds {MAX_NOTE_BYTES}",
                text.len()
            )));
        }
        let Some((body, sigs)) = text.split_once("\n\n") else {
            return Err(format_err(
                "no blank line between the body and its signatures",
            ));
        };
        let checkpoint = Checkpoint::parse_body(&format!("{body}\n"))?;
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(format_err(
                "the last signature line must end with a line feed",
            ));
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(CheckpointError::Limit(format!(
                    "more than {MAX_NOTE_SIGNATURES} signatures"
                )));
            }
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                format_err("a signature line must start with an em dash and a space")
            })?;
            let (name, b64) = rest
                .rsplit_once(' ')
                .ok_or_else(|| format_err("a signature line is '— name base64'"))?;
            if !valid_name(name) {
                return Err(format_err(format!(
                    "signature key name '{name}' is not allowed"
                )));
            }
            let bytes = BASE64
                .decode(b64)
                .map_err(|e| format_err(format!("signature of {name}: {e}")))?;
            if bytes.len() < 5 {
                return Err(format_err(format!("signature of {name}: too short")));
            }
            let mut key_id = [0u8; 4];
            key_id.copy_from_slice(&bytes[..4]);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id,
                data: bytes[4..].to_vec(),
            });
        }
        Ok(SignedCheckpoint {
            checkpoint,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint::new(
            origin("cn-credit", RegionCode::new(310000, "r").unwrap()),
            20852163,
            Hash256([7; 32]),
        )
    }

    /// The body is the C2SP layout, byte for byte.
    #[test]
    fn body_layout() {
        let c = Checkpoint::new("example.com/behind-the-sofa".into(), 20852163, {
            let b = BASE64
                .decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
                .unwrap();
            Hash256(b.try_into().unwrap())
        });
        assert_eq!(
            c.body(),
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        assert_eq!(Checkpoint::parse_body(&c.body()).unwrap(), c);
    }

    /// C2SP's published example checkpoint (tlog-cosignature) parses, and re-encodes
    /// byte for byte.
    #[test]
    fn the_published_example_parses() {
        let text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let s = SignedCheckpoint::parse(text).unwrap();
        assert_eq!(s.checkpoint.size, 20852163);
        assert_eq!(s.signatures.len(), 1);
        assert_eq!(s.signatures[0].data.len(), 64);
        assert_eq!(s.encode(), text, "re-encoding is byte-identical");
    }

    #[test]
    fn sign_cosign_verify_and_tamper() {
        let log = Keypair::from_secret([1; 32]);
        let w = Keypair::from_secret([2; 32]);
        let name = cp().origin.clone();
        let wname = witness_name("cn-credit", RegionCode::new(440000, "r").unwrap());
        let mut s = SignedCheckpoint::sign(cp(), &name, &log);
        s.cosign(&wname, &w, 1_795_000_000);
        let text = s.encode();
        let back = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(back, s);
        back.verify_log_signature(&name, &log.public()).unwrap();
        assert_eq!(
            back.verify_cosignature(&wname, &w.public()).unwrap(),
            1_795_000_000
        );
        // The wrong key, the wrong name, a changed size: each refused.
        assert!(back.verify_log_signature(&name, &w.public()).is_err());
        assert!(back.verify_cosignature("other", &w.public()).is_err());
        let mut changed = back.clone();
        changed.checkpoint.size += 1;
        assert!(changed.verify_log_signature(&name, &log.public()).is_err());
        assert!(changed.verify_cosignature(&wname, &w.public()).is_err());
        // A cosignature is not a log signature, even by the same key under the same name.
        let mut swapped = SignedCheckpoint::sign(cp(), &name, &log);
        swapped.signatures.clear();
        swapped.cosign(&name, &log, 1);
        assert!(swapped.verify_log_signature(&name, &log.public()).is_err());
    }

    #[test]
    fn malformed_notes_are_refused_with_the_reason() {
        let bad = |t: &str| SignedCheckpoint::parse(t).unwrap_err().to_string();
        let root = BASE64.encode([7u8; 32]);
        assert!(
            bad(&format!("o\n01\n{root}\n\n\u{2014} k AAAAAAA=\n")).contains("canonical decimal")
        );
        assert!(bad(&format!("o\n1\n{root}\n\u{2014} k AAAAAAA=\n")).contains("blank line"));
        assert!(bad("o\n1\nAAAA\n\n\u{2014} k AAAAAAA=\n").contains("not 32 bytes"));
        assert!(bad(&format!("o\n1\n{root}\n\n- k AAAAAAA=\n")).contains("em dash"));
        assert!(bad(&format!("o\u{0}\n1\n{root}\n\n\u{2014} k AAAAAAA=\n")).contains("control"));
        assert!(bad(&"x".repeat(MAX_NOTE_BYTES + 1)).contains("exceeds"));
        let many: String = (0..=MAX_NOTE_SIGNATURES)
            .map(|i| format!("\u{2014} k{i} AAAAAAA=\n"))
            .collect();
        assert!(bad(&format!("o\n1\n{root}\n\n{many}")).contains("more than"));
    }
}

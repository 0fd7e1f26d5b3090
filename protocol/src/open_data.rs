//! The open-data feed: every region's log as the public may see it, line by line, and
//! the verifier a mirror runs over it (docs/public.md, "Open data").
//!
//! A feed line stands for one position of a region's log. A public record
//! ([`crate::publicity::record_publicity`]) comes with its envelope verbatim; a withheld
//! one with its Merkle leaf hash only. A mirror that applies every line in order
//! ([`RegionFeedVerifier::apply`]) checks each published envelope's node and author
//! signatures, its chain link to the previous published envelope when that is the one
//! just before it, and finally that the tree of all leaf hashes — published and
//! withheld — has the root of the region's witnessed checkpoint
//! ([`RegionFeedVerifier::check_checkpoint`]). So a mirror knows it holds every record
//! of the log the public may see, unaltered, and that nothing was left out unseen.
//!
//! Security notes.
//! - Requires: the manifest the mirror checks against was verified with the pinned
//!   authority key (`SignedManifest::verify`).
//! - Provides: signatures, order and completeness of the published records under a
//!   checkpoint cosigned by a quorum of members; a withheld record's leaf hash reveals
//!   nothing of it (SHA-256 of bytes that include 64-byte signatures).
//! - Does not provide: the admission rules (roles, references, periods) — the mirror
//!   sees the records the federation admitted, and cannot re-run rules over records it
//!   is not shown.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::checkpoint::SignedCheckpoint;
use crate::crypto::{Hash256, PublicKey};
use crate::envelope::decode_envelope;
use crate::ids::RegionCode;
use crate::manifest::Manifest;
use crate::merkle::{Frontier, leaf_hash};
use crate::publicity::Withheld;
use crate::record::Body;

/// The feed's format name, in every page's first line and in docs/public.md.
pub const FEED_FORMAT: &str = "credfed-open-data/1";

/// Most lines one page of the feed gives: a page of envelopes stays under a few MiB.
pub const MAX_FEED_PAGE: u64 = 1000;

/// Longest feed line a reader accepts: a base64 envelope (4/3 of the largest envelope)
/// and its readable rendering (about as large again), with room for the fields.
pub const MAX_FEED_LINE_BYTES: usize = 4 * crate::limits::MAX_ENVELOPE_BYTES + 4096;

/// One position of a region's log, as the feed gives it. Other fields a node adds for
/// readers (`kind`, `id`, `record`) are not part of what is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedLine {
    /// Region.
    pub region: RegionCode,
    /// Position.
    pub seq: u64,
    /// RFC 6962 leaf hash of the envelope's bytes.
    pub leaf_hash: Hash256,
    /// The envelope, standard base64, when the record is public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
    /// Why it is withheld, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

impl FeedLine {
    /// The line of a public record.
    pub fn published(region: RegionCode, seq: u64, bytes: &[u8]) -> FeedLine {
        FeedLine {
            region,
            seq,
            leaf_hash: leaf_hash(bytes),
            envelope: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            withheld: None,
        }
    }

    /// The line of a withheld record: its leaf hash only.
    pub fn withheld(region: RegionCode, seq: u64, bytes: &[u8], why: Withheld) -> FeedLine {
        FeedLine {
            region,
            seq,
            leaf_hash: leaf_hash(bytes),
            envelope: None,
            withheld: Some(why),
        }
    }

    /// The cursor that resumes the feed after this line.
    pub fn cursor(&self) -> String {
        format!("{}:{}", self.region, self.seq)
    }
}

/// Why a feed line or checkpoint does not verify; the message names the position and
/// the rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FeedError {
    /// A line out of place.
    #[error("{region}#{seq}: {rule}")]
    Line {
        /// Region of the line.
        region: RegionCode,
        /// Its position.
        seq: u64,
        /// What is wrong.
        rule: String,
    },
    /// The checkpoint does not verify or does not match.
    #[error("checkpoint of {region}: {rule}")]
    Checkpoint {
        /// Region.
        region: RegionCode,
        /// What is wrong.
        rule: String,
    },
}

/// What a checkpoint says of the records applied so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMatch {
    /// Same size, same root: every record up to it is held and verified.
    Matches,
    /// The checkpoint covers more records than applied: follow the feed further.
    Behind {
        /// Records applied.
        applied: u64,
        /// Records the checkpoint covers.
        checkpoint: u64,
    },
    /// More records applied than the checkpoint covers: fetch a newer checkpoint.
    Ahead {
        /// Records applied.
        applied: u64,
        /// Records the checkpoint covers.
        checkpoint: u64,
    },
}

/// A mirror's verifying state for one region's feed; serialisable, so that a mirror
/// resumes from its cursor where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionFeedVerifier {
    /// Region followed.
    pub region: RegionCode,
    federation_id: String,
    node_key: PublicKey,
    /// Signs the region's department registrations and revocations.
    operator_key: PublicKey,
    /// The tree of the leaves applied.
    pub frontier: Frontier,
    /// Department keys registered so far in the region's log (and whether revoked).
    /// Keyed by the department id's text, so that the state serialises as JSON too.
    departments: BTreeMap<String, (PublicKey, bool)>,
    /// The last applied envelope's position and hash, when it was published.
    last_published: Option<(u64, Hash256)>,
    /// Published records applied.
    pub published: u64,
    /// Withheld records applied.
    pub withheld: u64,
}

impl RegionFeedVerifier {
    /// A verifier from the region's first position, for a member of `manifest`.
    pub fn new(manifest: &Manifest, region: RegionCode) -> Result<RegionFeedVerifier, FeedError> {
        let member = manifest
            .members
            .iter()
            .find(|m| m.region == region)
            .ok_or_else(|| FeedError::Checkpoint {
                region,
                rule: "not a member of the manifest".into(),
            })?;
        Ok(RegionFeedVerifier::with_keys(
            &manifest.federation_id,
            region,
            member.node_key,
            member.operator_key,
        ))
    }

    /// A verifier from the region's first position, given the federation id and the
    /// region's node and operator keys directly.
    pub fn with_keys(
        federation_id: &str,
        region: RegionCode,
        node_key: PublicKey,
        operator_key: PublicKey,
    ) -> RegionFeedVerifier {
        RegionFeedVerifier {
            region,
            federation_id: federation_id.to_owned(),
            node_key,
            operator_key,
            frontier: Frontier::empty(),
            departments: BTreeMap::new(),
            last_published: None,
            published: 0,
            withheld: 0,
        }
    }

    /// Records applied.
    pub fn size(&self) -> u64 {
        self.frontier.size
    }

    /// The cursor to resume from (`REGION:SEQ` of the last line applied).
    pub fn cursor(&self) -> String {
        format!("{}:{}", self.region, self.frontier.size)
    }

    /// Applies the next line: checks its place, and for a published record its bytes,
    /// leaf hash, node signature, author signature and chain link. Returns the body
    /// of a published record.
    pub fn apply(&mut self, line: &FeedLine) -> Result<Option<Body>, FeedError> {
        let fail = |rule: String| FeedError::Line {
            region: line.region,
            seq: line.seq,
            rule,
        };
        if line.region != self.region {
            return Err(fail(format!(
                "a line of another region (following {})",
                self.region
            )));
        }
        let expected = self.frontier.size + 1;
        if line.seq != expected {
            return Err(fail(format!(
                "out of order: the next position is {expected} (the feed must give every position)"
            )));
        }
        let body = match (&line.envelope, line.withheld) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(fail(
                    "a line gives either an envelope or the reason it is withheld".into(),
                ));
            }
            (None, Some(_)) => {
                self.last_published = None;
                self.withheld += 1;
                None
            }
            (Some(text), None) => {
                if text.len() > crate::limits::MAX_ENVELOPE_BYTES * 4 / 3 + 4 {
                    return Err(fail("envelope: longer than the largest envelope".into()));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| fail(format!("envelope: not standard base64: {e}")))?;
                if leaf_hash(&bytes) != line.leaf_hash {
                    return Err(fail("leaf_hash: not the hash of the envelope given".into()));
                }
                let v = decode_envelope(&self.federation_id, &bytes)
                    .map_err(|e| fail(format!("envelope: {e}")))?;
                let env = &v.envelope;
                if env.region != line.region || env.seq != line.seq {
                    return Err(fail(format!(
                        "envelope: it is {}#{}, not the line's position",
                        env.region, env.seq
                    )));
                }
                env.verify_node_sig(&self.federation_id, &self.node_key)
                    .map_err(|e| fail(e.to_string()))?;
                let author_key = if let Some(key) = crate::ledger::region_author_key_of(
                    (self.node_key, self.operator_key),
                    self.region,
                    &env.author,
                    v.body.kind(),
                ) {
                    key.map_err(|why| fail(format!("envelope.author: {why}")))?
                } else {
                    match self.departments.get(&env.author.to_string()) {
                        Some((key, _)) => *key,
                        None => {
                            return Err(fail(format!(
                                "envelope.author: {} is not registered earlier in this region's feed",
                                env.author
                            )));
                        }
                    }
                };
                env.verify_author_sig(&self.federation_id, &author_key)
                    .map_err(|e| fail(e.to_string()))?;
                if let Some((seq, hash)) = self.last_published
                    && seq + 1 == line.seq
                    && env.prev_hash != hash
                {
                    return Err(fail(
                        "envelope.prev_hash: not the hash of the envelope before it".into(),
                    ));
                }
                match &v.body {
                    Body::DepartmentRegistered {
                        department, key, ..
                    } => {
                        self.departments
                            .insert(department.to_string(), (*key, false));
                    }
                    Body::DepartmentRevoked { department, .. } => {
                        if let Some(d) = self.departments.get_mut(&department.to_string()) {
                            d.1 = true;
                        }
                    }
                    _ => {}
                }
                self.last_published = Some((line.seq, v.hash));
                self.published += 1;
                Some(v.body)
            }
        };
        self.frontier.append(line.leaf_hash);
        Ok(body)
    }

    /// Checks the region's witnessed checkpoint (its node's signature and a quorum of
    /// members' cosignatures, `manifest`'s rule) against the leaves applied.
    pub fn check_checkpoint(
        &self,
        note: &SignedCheckpoint,
        manifest: &Manifest,
    ) -> Result<CheckpointMatch, FeedError> {
        let fail = |rule: String| FeedError::Checkpoint {
            region: self.region,
            rule,
        };
        let (region, _) =
            crate::witness::verify_witnessed(note, manifest).map_err(|e| fail(e.to_string()))?;
        if region != self.region {
            return Err(fail(format!("it is the checkpoint of {region}")));
        }
        let cp = &note.checkpoint;
        let applied = self.frontier.size;
        if cp.size > applied {
            return Ok(CheckpointMatch::Behind {
                applied,
                checkpoint: cp.size,
            });
        }
        if cp.size < applied {
            return Ok(CheckpointMatch::Ahead {
                applied,
                checkpoint: cp.size,
            });
        }
        if cp.root != self.frontier.root() {
            return Err(fail(format!(
                "root at size {applied} differs from the leaves the feed gave: the feed left out, added or changed a record"
            )));
        }
        Ok(CheckpointMatch::Matches)
    }
}

/// Parses a feed cursor `REGION:SEQ` (the position last applied; 0 before the first).
pub fn parse_cursor(text: &str) -> Result<(RegionCode, u64), String> {
    let (r, s) = text
        .split_once(':')
        .ok_or_else(|| format!("cursor: '{text}' is not REGION:SEQ (e.g. 310000:120)"))?;
    let region = RegionCode::parse(r, "cursor").map_err(|e| e.to_string())?;
    let seq: u64 = s
        .parse()
        .map_err(|_| format!("cursor: position '{s}' is not a number"))?;
    Ok((region, seq))
}

//! Federation checkpoints and proof-carrying check answers.
//!
//! A check answer that covers every region needs, for each region, a head (log root and
//! map root) that the verifier can trust, and proofs under it. Quorums per region would
//! make the verifier check a quorum of cosignatures 31 times (about 600 signatures,
//! some 25 ms and 40 KB); instead one note commits to every region's head and a quorum
//! of all members cosigns it once:
//!
//! * the *federation checkpoint* is a C2SP checkpoint with origin `credfed/<federation>`
//!   and a `manifest <version> <hash>` line, whose tree (RFC 6962) has one leaf per
//!   member region, in manifest order; a leaf is that region's *witnessed* checkpoint
//!   body, verbatim (`credfed/<fed>/<region>`, size, root, `map <root>`, `time <s>`), or
//!   the exclusion leaf of a region that equivocated ([`Checkpoint::excluded`]);
//! * a member cosigns it ([`judge_federation`]) only if every leaf is a checkpoint of its
//!   region witnessed by that region's quorum and consistent with its own replica and
//!   what it cosigned, no leaf is older than a witnessed checkpoint of that region it has
//!   known for longer than a grace period ([`STALE_AFTER_SECONDS`]), and a region is
//!   excluded exactly when the member holds proof that it equivocated;
//! * the quorum ([`federation_quorum`]) is sized from the faults the manifest tolerates,
//!   so that it shares f + 1 members with any region's witnessing quorum and with any
//!   other federation quorum;
//! * a [`ProvenAnswer`] carries the note, the leaves, per region a map proof for the
//!   subject and every key the answer rests on, the envelopes and their inclusion
//!   proofs, the proof against each excluded region, and the answering node's signature;
//!   [`verify_proven_answer`] checks all of it offline and **recomputes the answer**
//!   from the proven evidence at the cosigned time — nothing the answer states is taken
//!   from the node's word (docs/protocol.md, "Proven answers" and "Security argument").

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalogue::{Catalogue, MeasureDomain};
use crate::check::{
    CheckAnswer, Evidence, RegionFreshness, Verdict, VerificationReport, answer_differences,
    recompute_answer,
};
use crate::checkpoint::{Checkpoint, SignedCheckpoint, origin};
use crate::crypto::{Domain, Hash256, Keypair, Signature};
use crate::envelope::decode_envelope;
use crate::ids::RegionCode;
use crate::ledger::{EquivocationProof, verify_equivocation};
use crate::manifest::{Manifest, SignedManifest};
use crate::map::{Indexed, MapProof, map_key, value_of, verify_map_proof};
use crate::merkle::{MemoryTree, leaf_hash, verify_inclusion};
use crate::record::{
    Body, CommitmentId, EntryId, EvaluationId, ObjectionId, SubjectKey, commitment_id, entry_id,
    evaluation_id, objection_id,
};
use crate::state::RecordPos;
use crate::time::Timestamp;
use crate::witness::CosignRefusal;

/// A member still cosigns a federation checkpoint whose leaf for a region is older than
/// a witnessed checkpoint of that region it holds, if it learnt of the newer one less
/// than this long ago: heads move about once a second under load, and a proposal takes
/// a round trip to collect.
pub const STALE_AFTER_SECONDS: u64 = 10;

/// How far ahead of a verifier's or witness's clock a signed time may lie: provincial
/// servers keep NTP time within a second; a minute covers a badly kept clock without
/// letting a region post-date its freshness by more.
pub const MAX_CLOCK_AHEAD_SECONDS: u64 = 60;

/// Largest evidence file read: a clear answer over 31 regions is under 32 KB; one with
/// the maximal evidence (a few thousand envelopes and their proofs) stays well below.
pub const MAX_EVIDENCE_FILE_BYTES: usize = 8 * 1024 * 1024;

/// What an evidence file starts with. Version 2: every field authenticated or
/// recomputed (version 1 files are refused with a hint to ask again).
pub const EVIDENCE_MAGIC: &[u8] = b"credfed evidence v3\n";

/// The origin line of a federation checkpoint.
pub fn federation_origin(federation_id: &str) -> String {
    format!("credfed/{federation_id}")
}

/// Cosignatures a federation checkpoint needs when `faults` of `members` may be faulty:
/// ⌊(n + f) / 2⌋ + 1 (= ⌈(n + f + 1) / 2⌉). Two such quorums share ≥ f + 1 members; with
/// a region's witnessing quorum (⌈(n + f)/2⌉ of the others) one shares ≥ f + 1 members
/// *other than the region* — so the region's own cosignature never decides anything
/// about its own leaf (docs/protocol.md, "Security argument").
pub fn federation_quorum(members: usize, faults: usize) -> usize {
    ((members + faults) / 2 + 1).min(members.max(1))
}

/// The federation checkpoint committing to `leaves` (region checkpoint bodies in
/// manifest order) under `manifest`.
pub fn federation_checkpoint(manifest: &Manifest, leaves: &[Checkpoint]) -> Checkpoint {
    let bodies: Vec<String> = leaves.iter().map(Checkpoint::body).collect();
    let tree = MemoryTree::from_data(&bodies);
    Checkpoint {
        origin: federation_origin(&manifest.federation_id),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![Checkpoint::manifest_line(
            manifest.version,
            &manifest.hash(),
        )],
    }
}

/// Checks that `note` is a federation checkpoint over exactly `leaves` under `manifest`:
/// origin, manifest line, one leaf per member region in manifest order — each a
/// region checkpoint with exactly a map root and a time, or an exclusion leaf — and the
/// tree root over them.
pub fn check_federation_shape(
    manifest: &Manifest,
    note: &Checkpoint,
    leaves: &[Checkpoint],
) -> Result<(), String> {
    let fed = &manifest.federation_id;
    if note.origin != federation_origin(fed) {
        return Err(format!(
            "federation checkpoint: origin '{}', expected '{}'",
            note.origin.chars().take(80).collect::<String>(),
            federation_origin(fed)
        ));
    }
    let expected_line = Checkpoint::manifest_line(manifest.version, &manifest.hash());
    if note.extensions != [expected_line] {
        return Err(match note.manifest_named() {
            Some((version, hash)) if note.extensions.len() == 1 => format!(
                "manifest: the federation checkpoint was cosigned under manifest version {version} ({hash}), not the version {} ({}) given: verify with that manifest",
                manifest.version,
                manifest.hash()
            ),
            _ => "federation checkpoint: its extension lines must be exactly one 'manifest <version> <hash>' line".into(),
        });
    }
    if leaves.len() != manifest.members.len() {
        return Err(format!(
            "federation checkpoint: {} leaves, the manifest has {} members",
            leaves.len(),
            manifest.members.len()
        ));
    }
    for (leaf, m) in leaves.iter().zip(&manifest.members) {
        if leaf.origin != origin(fed, m.region) {
            return Err(format!(
                "federation checkpoint: leaf '{}' where {} was expected (manifest order)",
                leaf.origin.chars().take(80).collect::<String>(),
                m.region
            ));
        }
        let region_leaf =
            leaf.extensions.len() == 2 && leaf.map_root().is_some() && leaf.time().is_some();
        if !region_leaf && !leaf.is_excluded() {
            return Err(format!(
                "federation checkpoint: the leaf of {} is neither a region checkpoint with exactly a map root and a time nor an exclusion",
                m.region
            ));
        }
    }
    let expected = federation_checkpoint(manifest, leaves);
    if expected.size != note.size || expected.root != note.root {
        return Err("federation checkpoint: root does not match its leaves".into());
    }
    Ok(())
}

/// Whether a member may cosign a federation checkpoint: its shape, then every leaf
/// through `leaf_ok` (the member's own replica, witnessed checkpoints and evidence).
pub fn judge_federation(
    manifest: &Manifest,
    note: &SignedCheckpoint,
    leaves: &[Checkpoint],
    mut leaf_ok: impl FnMut(RegionCode, &Checkpoint) -> Result<(), CosignRefusal>,
) -> Result<(), CosignRefusal> {
    check_federation_shape(manifest, &note.checkpoint, leaves).map_err(CosignRefusal::Invalid)?;
    for (leaf, m) in leaves.iter().zip(&manifest.members) {
        leaf_ok(m.region, leaf)?;
    }
    Ok(())
}

/// A federation checkpoint's verified cosigners and the time they vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationQuorum {
    /// Every cosigner, with the time its cosignature states, newest first.
    pub cosigners: Vec<(RegionCode, u64)>,
    /// The instant the quorum vouches for: the quorum-th newest cosignature time (by
    /// then a quorum had cosigned). A proven answer's `as_of` is exactly this.
    pub time: u64,
}

/// Verifies every signature line of a federation checkpoint: each must be a member's
/// cosignature under its witness name and node key, one per member, and verify — a
/// line that does not is refused, not ignored, so no byte of the note is left
/// unchecked. At least [`federation_quorum`] members must have cosigned.
pub fn verify_federation_quorum(
    manifest: &Manifest,
    note: &SignedCheckpoint,
) -> Result<FederationQuorum, String> {
    let need = manifest.policy.federation_quorum(manifest.members.len());
    let names: BTreeMap<String, &crate::manifest::Member> = manifest
        .members
        .iter()
        .map(|m| {
            (
                crate::checkpoint::witness_name(&manifest.federation_id, m.region),
                m,
            )
        })
        .collect();
    let mut cosigners: Vec<(RegionCode, u64)> = Vec::with_capacity(note.signatures.len());
    for line in &note.signatures {
        let Some(m) = names.get(&line.name) else {
            return Err(format!(
                "federation checkpoint: signature line '{}' is not a member's witness name",
                line.name.chars().take(80).collect::<String>()
            ));
        };
        if cosigners.iter().any(|(r, _)| *r == m.region) {
            return Err(format!(
                "federation checkpoint: {} cosigned twice",
                m.region
            ));
        }
        let t = note
            .verify_cosignature(&line.name, &m.node_key)
            .map_err(|e| format!("federation checkpoint: {e}"))?;
        // `verify_cosignature` finds the line by name and key id: a line with another
        // key id under this name is not the one it verified.
        if note
            .signatures
            .iter()
            .filter(|l| l.name == line.name)
            .count()
            != 1
        {
            return Err(format!(
                "federation checkpoint: {} cosigned twice",
                m.region
            ));
        }
        cosigners.push((m.region, t));
    }
    if cosigners.len() < need {
        return Err(format!(
            "federation checkpoint: {} of {need} cosignatures needed ({} members, {} faults tolerated)",
            cosigners.len(),
            manifest.members.len(),
            manifest.policy.faults_tolerated
        ));
    }
    cosigners.sort_by_key(|(r, t)| (std::cmp::Reverse(*t), *r));
    let time = cosigners[need.saturating_sub(1).min(cosigners.len() - 1)].1;
    Ok(FederationQuorum { cosigners, time })
}

/// An inclusion proof of one envelope under its region's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The envelope's position.
    pub seq: u64,
    /// RFC 9162 audit path.
    pub hashes: Vec<Hash256>,
}

/// What a region's map lists for one key under the region's leaf, with the proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// The map proof for the key.
    pub proof: MapProof,
    /// The positions the map lists, in log order (empty: nothing).
    pub positions: Vec<u64>,
    /// One inclusion proof per position; the envelopes are in the answer's evidence.
    pub inclusion: Vec<InclusionProof>,
}

impl Listing {
    /// The listing of a region that is not proven (excluded): no proof, nothing listed.
    pub fn none() -> Listing {
        Listing {
            proof: MapProof {
                siblings: Vec::new(),
                leaf: None,
            },
            positions: Vec::new(),
            inclusion: Vec::new(),
        }
    }
}

/// What one region's map and log say about the subject, under that region's leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionProof {
    /// Region.
    pub region: RegionCode,
    /// What the map lists for the subject.
    pub subject: Listing,
    /// The same for every entry, evaluation and objection the answer follows (see
    /// [`verify_proven_answer`]), sorted by key, each once.
    pub related: Vec<KeyProof>,
}

/// An id a proven answer follows beyond the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Followed {
    /// Every record about a list entry (corrections, repair, revocation, objections,
    /// joint actions).
    Entry(EntryId),
    /// Every record about an evaluation (revocation, objections).
    Evaluation(EvaluationId),
    /// An objection's resolution.
    Objection(ObjectionId),
    /// Every record about a written commitment (its settlement, article 四).
    Commitment(CommitmentId),
}

impl Followed {
    /// Its key in a region's map.
    pub fn map_key(&self) -> Hash256 {
        map_key(&match self {
            Followed::Entry(id) => Indexed::Entry(id.0),
            Followed::Evaluation(id) => Indexed::Evaluation(id.0),
            Followed::Objection(id) => Indexed::Objection(id.0),
            Followed::Commitment(id) => Indexed::Commitment(id.0),
        })
    }
}

/// What one region's map lists for a followed id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyProof {
    /// What is followed.
    pub key: Followed,
    /// What the map lists for it.
    pub listing: Listing,
}

/// A check answer with everything needed to verify it offline against the manifest.
///
/// Every byte is authenticated: the answer is recomputed from the proven evidence and
/// must equal it exactly; the note, leaves, proofs and evidence are checked against
/// signatures and roots; and the answering node signs the whole
/// ([`ProvenAnswer::signed_bytes`]), so that who answered is attributable and no field
/// can be changed in transit, not even one that would still be true (docs/protocol.md,
/// "Proven answers").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenAnswer {
    /// The answer (verdict, entries, measures, evidence envelopes).
    pub answer: CheckAnswer,
    /// The federation checkpoint, a cosigned C2SP note naming the manifest.
    pub federation_note: String,
    /// Its leaves: every member region's witnessed checkpoint body (or exclusion), in
    /// manifest order.
    pub leaves: Vec<String>,
    /// Per region, in manifest order.
    pub regions: Vec<RegionProof>,
    /// For each excluded leaf, in manifest order, the proof that its region signed two
    /// different envelopes at one position.
    pub exclusions: Vec<EquivocationProof>,
    /// The manifest the note names, so that a verifier holding only the authority key
    /// can check the file; a verifier that holds the manifest itself may ignore it.
    pub signed_manifest: Option<SignedManifest>,
    /// The region whose node answered.
    pub answered_by: RegionCode,
    /// That node's signature over [`ProvenAnswer::signed_bytes`].
    pub signature: Signature,
}

/// Which manifest a federation checkpoint names: its version and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    /// Version.
    pub version: u64,
    /// SHA-256 of its canonical bytes.
    pub hash: Hash256,
}

impl ProvenAnswer {
    /// The bytes the answering node signs: the canonical encoding of every other field.
    pub fn signed_bytes(&self) -> Vec<u8> {
        crate::codec::encode(&(
            &self.answer,
            &self.federation_note,
            &self.leaves,
            &self.regions,
            &self.exclusions,
            &self.signed_manifest,
            &self.answered_by,
        ))
        .unwrap_or_default()
    }

    /// Signs the answer as the node of `answered_by`.
    pub fn sign(&mut self, key: &Keypair, federation_id: &str) {
        self.signature = key.sign(Domain::ProvenAnswer, federation_id, &self.signed_bytes());
    }

    /// The manifest the federation checkpoint names, if its note parses.
    pub fn manifest_named(&self) -> Option<ManifestRef> {
        let note = SignedCheckpoint::parse(&self.federation_note).ok()?;
        let (version, hash) = note.checkpoint.manifest_named()?;
        Some(ManifestRef { version, hash })
    }

    /// The evidence file: a magic line, then the canonical encoding.
    pub fn to_file(&self) -> Vec<u8> {
        let mut out = EVIDENCE_MAGIC.to_vec();
        out.extend(crate::codec::encode(self).unwrap_or_default());
        out
    }

    /// Reads an evidence file (size-limited; the whole file must be one answer).
    pub fn from_file(bytes: &[u8]) -> Result<ProvenAnswer, String> {
        if bytes.len() > MAX_EVIDENCE_FILE_BYTES {
            return Err(format!(
                "evidence file of {} bytes exceeds {MAX_EVIDENCE_FILE_BYTES}",
                bytes.len()
            ));
        }
        if bytes.starts_with(b"credfed evidence v1\n") {
            return Err("an evidence file of version 1, whose answers were not fully authenticated: export a new one with `credfed check … --evidence FILE`".into());
        }
        if bytes.starts_with(b"credfed evidence v2\n") {
            return Err("an evidence file of version 2, whose answers did not carry written commitments (article 四): export a new one with `credfed check … --evidence FILE`".into());
        }
        let body = bytes.strip_prefix(EVIDENCE_MAGIC).ok_or(
            "not a credfed evidence file (it should start with 'credfed evidence v3'); \
             export one with `credfed check … --evidence FILE`",
        )?;
        crate::codec::decode(body, MAX_EVIDENCE_FILE_BYTES, "evidence file")
            .map_err(|e| e.to_string())
    }
}

/// What a listed record means for following: the entry or evaluation it publishes, the
/// one it names as the subject's (a publication or correction), the objection it files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The entry or evaluation it publishes.
    pub publishes: Option<Followed>,
    /// The entry or evaluation it shows as the subject's (publication or correction).
    pub names: Option<Followed>,
    /// The objection it files.
    pub objection: Option<Followed>,
}

impl Listed {
    /// What the record at `region` by `author` with `body` leads a follower to.
    pub fn of(region: RegionCode, author: &crate::ids::DepartmentId, body: &Body) -> Listed {
        let mut l = Listed {
            publishes: None,
            names: None,
            objection: None,
        };
        match body {
            Body::ListEntryPublished(e) => {
                l.publishes = Some(Followed::Entry(entry_id(region, e)));
                l.names = l.publishes;
            }
            Body::ListEntryAmended { entry, .. } => l.names = Some(Followed::Entry(*entry)),
            Body::EvaluationPublished(ev) => {
                l.publishes = Some(Followed::Evaluation(evaluation_id(author, ev)));
                l.names = l.publishes;
            }
            Body::ObjectionFiled { case_no, .. } => {
                l.objection = Some(Followed::Objection(objection_id(author, case_no)));
            }
            Body::CommitmentMade(c) => {
                l.publishes = Some(Followed::Commitment(commitment_id(
                    author,
                    &c.acceptance_no,
                )));
                l.names = l.publishes;
            }
            _ => {}
        }
        l
    }
}

/// What to follow, found so far: the queue of the search both the node
/// ([`Following`] drives its listings) and the verifier run, so that they follow
/// exactly the same keys in the same regions.
///
/// Rules: every entry and evaluation that a record listed for the subject publishes or
/// corrects, and every one the answer shows, is followed in every region that is not
/// excluded (its corrections, repair, revocation, objections and joint actions, wherever
/// recorded); every objection found is followed in the log of the issuer of what it is
/// about (its resolution, article 二十二) — once that issuer is known from a publication
/// found.
#[derive(Debug, Default)]
pub struct Following {
    queue: Vec<Followed>,
    done: BTreeSet<Followed>,
    issuer: BTreeMap<Followed, RegionCode>,
    objections: Vec<(Followed, Followed)>,
}

impl Following {
    /// Starts from the records listed for the subject and what the answer shows.
    pub fn new(start: impl IntoIterator<Item = Followed>) -> Following {
        Following {
            queue: start.into_iter().collect(),
            ..Following::default()
        }
    }

    /// Adds what a listed record leads to.
    pub fn add(&mut self, pos: RecordPos, listed: &Listed, about: Option<Followed>) {
        if let Some(n) = listed.names {
            self.queue.push(n);
        }
        if let (Some(about), Some(p)) = (about, listed.publishes)
            && p == about
        {
            self.issuer.insert(about, pos.region);
        }
        if let (Some(o), Some(about)) = (listed.objection, about) {
            self.objections.push((o, about));
        }
    }

    /// The next key to follow and the regions to follow it in (the members not
    /// excluded, or an objection's issuer), or `None` when done.
    pub fn next(&mut self, regions: &[RegionCode]) -> Option<(Followed, Vec<RegionCode>)> {
        while let Some(f) = self.queue.pop() {
            if self.done.insert(f) {
                return Some((f, regions.to_vec()));
            }
        }
        while let Some((o, about)) = self.objections.pop() {
            let Some(r) = self.issuer.get(&about).copied() else {
                continue;
            };
            if !regions.contains(&r) {
                continue;
            }
            if self.done.insert(o) {
                return Some((o, vec![r]));
            }
        }
        None
    }
}

/// Checks that the map under `leaf` lists exactly `positions` for `key`, each included
/// under the leaf's log root and present in the evidence.
fn check_listing(
    leaf: &Checkpoint,
    key: &Hash256,
    listing: &Listing,
    evidence: &BTreeMap<RecordPos, &Vec<u8>>,
    region: RegionCode,
) -> Result<(), String> {
    let (proof, positions, inclusion) = (&listing.proof, &listing.positions, &listing.inclusion);
    let map_root = leaf.map_root().unwrap_or(crate::map::EMPTY);
    match verify_map_proof(&map_root, key, proof) {
        Err(e) => return Err(e.to_string()),
        Ok(value) if value != value_of(positions) => {
            return Err(format!(
                "the map {} but the answer lists {} record(s)",
                match value {
                    None => "names nothing here",
                    Some(_) => "lists other records",
                },
                positions.len()
            ));
        }
        Ok(_) => {}
    }
    if positions.windows(2).any(|w| w[0] >= w[1])
        || positions.iter().any(|s| *s == 0 || *s > leaf.size)
    {
        return Err(format!(
            "positions must be increasing and within the head's {} records",
            leaf.size
        ));
    }
    if inclusion.len() != positions.len() {
        return Err(format!(
            "{} inclusion proofs for {} positions",
            inclusion.len(),
            positions.len()
        ));
    }
    for (seq, inc) in positions.iter().zip(inclusion) {
        let pos = RecordPos { region, seq: *seq };
        let Some(bytes) = evidence.get(&pos) else {
            return Err(format!(
                "#{seq} is listed by the map but missing from the evidence"
            ));
        };
        if inc.seq != *seq
            || !verify_inclusion(
                seq - 1,
                leaf.size,
                &leaf_hash(bytes),
                &inc.hashes,
                &leaf.root,
            )
        {
            return Err(format!(
                "#{seq}: inclusion proof does not lead to the head's root"
            ));
        }
    }
    Ok(())
}

/// How a region stands in a verified answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionStanding {
    /// Its map proves that none of its records names the subject or anything the
    /// answer rests on.
    ProvenAbsent,
    /// Its map lists records about the subject or what the answer rests on: all of
    /// them are in the answer.
    AllShown,
    /// Excluded: it signed two histories (proof in the answer); nothing about its log
    /// is proven.
    Excluded,
}

/// One region's line of a [`ProofReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionReport {
    /// Region.
    pub region: RegionCode,
    /// Records of its log the head covers (0 when excluded).
    pub size: u64,
    /// When the region's node signed that head (seconds), absent when excluded.
    pub signed_at: Option<u64>,
    /// How old that was at the instant verified (seconds).
    pub age_seconds: Option<u64>,
    /// Older than the verifier's bound.
    pub stale: bool,
    /// Records of this region in the answer: those naming the subject and those about
    /// what the answer rests on.
    pub records: usize,
    /// Records naming the subject.
    pub naming_records: usize,
    /// Proven absent, all shown, or excluded.
    pub standing: RegionStanding,
    /// For an excluded region, the position at which it signed two envelopes.
    pub equivocated_at: Option<u64>,
}

/// What offline verification of a proven answer concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofReport {
    /// Signatures and authorship of the evidence, and every difference between the
    /// answer and its recomputation.
    pub answer: VerificationReport,
    /// The verdict recomputed from the proven evidence (what a reader should rely on).
    pub verdict: Option<Verdict>,
    /// The manifest the federation checkpoint names.
    pub manifest: Option<ManifestRef>,
    /// The region whose node answered and signed.
    pub answered_by: RegionCode,
    /// Members whose cosignatures on the federation checkpoint verified.
    pub cosigners: Vec<RegionCode>,
    /// Cosignatures needed.
    pub quorum: usize,
    /// The instant (seconds since the epoch) by which the quorum had cosigned: the
    /// answer's `as_of`.
    pub witnessed_at: u64,
    /// How old that was when verified, in seconds.
    pub age_seconds: u64,
    /// Per region: the head proven, its age and what it proves.
    pub regions: Vec<RegionReport>,
    /// Everything that failed, each naming the region or part and the rule.
    pub failures: Vec<String>,
}

impl ProofReport {
    /// Nothing failed, and no region is excluded or older than the bound: the answer is
    /// true of every region at `witnessed_at`.
    pub fn ok(&self) -> bool {
        self.verified() && self.partial_regions().is_empty()
    }

    /// Nothing failed: every field is authenticated or recomputed. Some regions may
    /// still be stale or excluded ([`ProofReport::partial_regions`]).
    pub fn verified(&self) -> bool {
        self.failures.is_empty() && self.answer.ok()
    }

    /// Regions the answer does not cover as fresh: older than the bound, or excluded.
    pub fn partial_regions(&self) -> Vec<RegionCode> {
        self.regions
            .iter()
            .filter(|r| r.stale || r.standing == RegionStanding::Excluded)
            .map(|r| r.region)
            .collect()
    }
}

/// The per-region freshness a proven answer states: each leaf's size and signing time,
/// and whether the region is excluded for equivocation.
pub fn freshness_of(manifest: &Manifest, leaves: &[Checkpoint]) -> Vec<RegionFreshness> {
    manifest
        .members
        .iter()
        .zip(leaves)
        .map(|(m, l)| RegionFreshness {
            region: m.region,
            head_seq: l.size,
            head_time: l.time().map(Timestamp::from_seconds),
            equivocated: l.is_excluded(),
        })
        .collect()
}

/// What a verifier may rely on, from a [`ProofReport`] (the one reading of it that the
/// CLI and the console both show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// Every field proven, every region fresh.
    Verified,
    /// Proven for the regions fresh and not excluded; the rest named (accepted only when
    /// the verifier asks for partial answers).
    Partial,
    /// Do not rely on it.
    NotVerified,
}

/// A report judged: its status and every problem, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The status.
    pub status: VerificationStatus,
    /// The problems (empty when verified or accepted as partial).
    pub failures: Vec<String>,
}

/// Judges `report`: the proof's and the answer's failures, plus `extra` (the verifier's
/// own checks, e.g. whom the file is about); then stale and excluded regions, which
/// fail it unless `accept_partial`.
pub fn judge(
    report: &ProofReport,
    extra: Vec<String>,
    max_age_seconds: u64,
    accept_partial: bool,
) -> Judgement {
    let mut failures = report.failures.clone();
    failures.extend(report.answer.failures.iter().cloned());
    failures.extend(extra);
    let stale: Vec<&RegionReport> = report.regions.iter().filter(|r| r.stale).collect();
    let excluded: Vec<&RegionReport> = report
        .regions
        .iter()
        .filter(|r| r.standing == RegionStanding::Excluded)
        .collect();
    let partial = failures.is_empty() && !(stale.is_empty() && excluded.is_empty());
    if partial && !accept_partial {
        for r in &stale {
            failures.push(format!(
                "freshness: {}'s head was signed {} before the instant verified, more than the {max_age_seconds}s allowed (cut off, or its clock is wrong); ask again later, or accept a partial answer without it (credfed verify --partial)",
                r.region,
                r.age_seconds
                    .map_or("an unknown time".into(), |a| format!("{a}s")),
            ));
        }
        for r in &excluded {
            failures.push(format!(
                "{} is excluded: it signed two histories (at #{}), so nothing about its records is proven; accept a partial answer to rely on the rest (credfed verify --partial)",
                r.region,
                r.equivocated_at.unwrap_or(0)
            ));
        }
    }
    let status = if !failures.is_empty() {
        VerificationStatus::NotVerified
    } else if partial {
        VerificationStatus::Partial
    } else {
        VerificationStatus::Verified
    };
    Judgement { status, failures }
}

/// Verifies a proven answer offline, against the manifest alone, at `now_seconds`, with
/// every region's head at most `max_age_seconds` old:
///
/// 1. the federation note is canonical, names this manifest, has the right shape over
///    the leaves, and every signature line on it is a verifying member cosignature, a
///    quorum of them; the answering node's signature covers the whole file;
/// 2. `as_of` is the time the quorum vouches for — never a free field;
/// 3. per region (not excluded): the map proves absence or exactly the positions listed
///    for the subject, each included under the leaf's log root; the same for every key
///    the answer rests on ([`Following`]) — exactly those proofs, each once; an excluded
///    region carries a valid equivocation proof and no listing;
/// 4. the evidence is exactly what the proofs list plus the authors' registrations,
///    all within the proven heads;
/// 5. the answer is **recomputed** from that evidence at `as_of` ([`recompute_answer`])
///    and must equal the one given, field for field;
/// 6. freshness: the quorum's time and each region's signed time are at most
///    `max_age_seconds` old (stale regions are reported, see [`ProofReport::ok`]).
pub fn verify_proven_answer(
    proven: &ProvenAnswer,
    manifest: &Manifest,
    catalogue: &Catalogue,
    now_seconds: u64,
    max_age_seconds: u64,
) -> ProofReport {
    let mut failures = Vec::new();
    let quorum = manifest.policy.federation_quorum(manifest.members.len());
    let mut report = ProofReport {
        answer: VerificationReport {
            envelopes_verified: 0,
            entries_confirmed: 0,
            failures: Vec::new(),
        },
        verdict: None,
        manifest: None,
        answered_by: proven.answered_by,
        cosigners: Vec::new(),
        quorum,
        witnessed_at: 0,
        age_seconds: 0,
        regions: Vec::new(),
        failures: Vec::new(),
    };
    let fail = |mut report: ProofReport, why: String| {
        report.failures.push(why);
        report
    };
    // 1. The note, its manifest, its shape and its quorum; the answering node.
    // The answering node's signature first: a file changed in transit is refused with
    // that one reason, before anything else is worked out from it.
    match manifest.member(proven.answered_by) {
        None => {
            return fail(
                report,
                format!("answered_by: {} is not a member", proven.answered_by),
            );
        }
        Some(m) => {
            if let Err(e) = m.node_key.verify(
                Domain::ProvenAnswer,
                &manifest.federation_id,
                &proven.signed_bytes(),
                &proven.signature,
                "signature",
            ) {
                return fail(
                    report,
                    format!(
                        "signature: not {}'s node's signature over this file ({e}): the file was changed after it was answered",
                        proven.answered_by
                    ),
                );
            }
        }
    }
    let note = match SignedCheckpoint::parse(&proven.federation_note) {
        Ok(n) if n.encode() == proven.federation_note => n,
        Ok(_) => {
            return fail(
                report,
                "federation_note: not in canonical form (it must re-encode byte for byte)".into(),
            );
        }
        Err(e) => return fail(report, format!("federation_note: {e}")),
    };
    report.manifest = note
        .checkpoint
        .manifest_named()
        .map(|(version, hash)| ManifestRef { version, hash });
    if let Some(carried) = &proven.signed_manifest
        && report.manifest.map(|m| m.hash) != Some(carried.hash())
    {
        failures.push(
            "signed_manifest: the manifest the file carries is not the one its federation checkpoint names".into(),
        );
    }
    let mut leaves = Vec::with_capacity(proven.leaves.len());
    for (i, text) in proven.leaves.iter().enumerate() {
        match Checkpoint::parse_body(text) {
            Ok(c) if c.body() == *text => leaves.push(c),
            Ok(_) => return fail(report, format!("leaves[{i}]: not in canonical form")),
            Err(e) => return fail(report, format!("leaves[{i}]: {e}")),
        }
    }
    if let Err(e) = check_federation_shape(manifest, &note.checkpoint, &leaves) {
        return fail(report, e);
    }
    let as_of = match verify_federation_quorum(manifest, &note) {
        Ok(q) => {
            report.cosigners = q.cosigners.iter().map(|(r, _)| *r).collect();
            report.witnessed_at = q.time;
            report.age_seconds = now_seconds.saturating_sub(q.time);
            // Each leaf then rests on at least quorum − 1 cosigners other than its
            // region, all that the security argument needs (see `federation_quorum`).
            if q.time > now_seconds.saturating_add(MAX_CLOCK_AHEAD_SECONDS) {
                failures.push(format!(
                    "freshness: the federation checkpoint says it was cosigned at {}, {}s after the instant verified: check this computer's clock or --at",
                    q.time,
                    q.time - now_seconds
                ));
            }
            if report.age_seconds > max_age_seconds {
                failures.push(format!(
                    "freshness: the federation checkpoint was cosigned {}s before the instant verified, more than the {max_age_seconds}s allowed; ask the node for a fresh answer",
                    report.age_seconds
                ));
            }
            Some(Timestamp::from_seconds(q.time))
        }
        Err(e) => {
            failures.push(e);
            None
        }
    };
    // 2. `as_of` is the cosigned time.
    if let Some(t) = as_of
        && proven.answer.as_of != t
    {
        failures.push(format!(
            "as_of: the answer says {} ms, but its federation checkpoint was cosigned at {} ms: as_of is never a free field",
            proven.answer.as_of.0, t.0
        ));
    }
    let regions: Vec<RegionCode> = manifest.members.iter().map(|m| m.region).collect();
    let heads: BTreeMap<RegionCode, &Checkpoint> = regions.iter().copied().zip(&leaves).collect();
    let proven_regions: Vec<RegionCode> = regions
        .iter()
        .copied()
        .filter(|r| heads.get(r).is_some_and(|l| !l.is_excluded()))
        .collect();
    // Exclusions: one valid proof per excluded leaf, in manifest order.
    let excluded: Vec<RegionCode> = regions
        .iter()
        .copied()
        .filter(|r| !proven_regions.contains(r))
        .collect();
    let mut equivocated_at: BTreeMap<RegionCode, u64> = BTreeMap::new();
    if proven.exclusions.len() != excluded.len() {
        failures.push(format!(
            "exclusions: {} proofs for {} excluded regions",
            proven.exclusions.len(),
            excluded.len()
        ));
    }
    for (region, p) in excluded.iter().zip(&proven.exclusions) {
        match verify_equivocation(manifest, &manifest.federation_id, &p.first, &p.second) {
            Ok(r) if r == *region && p.region == r => {
                let seq = decode_envelope(&manifest.federation_id, &p.first)
                    .map(|v| v.envelope.seq)
                    .unwrap_or(0);
                if seq != p.seq {
                    failures.push(format!(
                        "exclusions: the proof against {region} says #{}, its envelopes #{seq}",
                        p.seq
                    ));
                }
                equivocated_at.insert(r, seq);
            }
            Ok(r) => failures.push(format!(
                "exclusions: a proof against {r} where {region} is excluded"
            )),
            Err(e) => failures.push(format!(
                "exclusions: {region} is excluded without a valid proof: {e}"
            )),
        }
    }
    // 3. Listings for the subject and everything followed.
    let subject_key = map_key(&Indexed::Subject(proven.answer.subject.clone()));
    let evidence: BTreeMap<RecordPos, &Vec<u8>> = proven
        .answer
        .evidence
        .iter()
        .map(|e| (e.pos, &e.envelope))
        .collect();
    if evidence.len() != proven.answer.evidence.len()
        || proven
            .answer
            .evidence
            .windows(2)
            .any(|w| w[0].pos >= w[1].pos)
    {
        failures.push("evidence: envelopes must be in log order, each once".into());
    }
    let meaning: BTreeMap<RecordPos, (Listed, Body)> = evidence
        .iter()
        .filter_map(|(pos, bytes)| {
            let v = decode_envelope(&manifest.federation_id, bytes).ok()?;
            let l = Listed::of(pos.region, &v.envelope.author, &v.body);
            Some((*pos, (l, v.body)))
        })
        .collect();
    if proven.regions.len() != regions.len() {
        return fail(
            report,
            format!(
                "regions: {} region proofs, the manifest has {} members",
                proven.regions.len(),
                regions.len()
            ),
        );
    }
    let mut listed_positions: BTreeSet<RecordPos> = BTreeSet::new();
    let mut per_region_subject: BTreeMap<RegionCode, usize> = BTreeMap::new();
    let mut start: Vec<Followed> = Vec::new();
    for (proof, region) in proven.regions.iter().zip(&regions) {
        if proof.region != *region {
            return fail(
                report,
                format!(
                    "regions: proof for {} where {region} was expected (manifest order)",
                    proof.region
                ),
            );
        }
        if !proven_regions.contains(region) {
            if proof.subject != Listing::none() || !proof.related.is_empty() {
                failures.push(format!(
                    "{region}: excluded, so its proof must list nothing"
                ));
            }
            continue;
        }
        let Some(leaf) = heads.get(region) else {
            continue;
        };
        match check_listing(leaf, &subject_key, &proof.subject, &evidence, *region) {
            Err(e) => failures.push(format!("{region}: {e}")),
            Ok(()) => {
                per_region_subject.insert(*region, proof.subject.positions.len());
                for seq in &proof.subject.positions {
                    let pos = RecordPos {
                        region: *region,
                        seq: *seq,
                    };
                    listed_positions.insert(pos);
                    if let Some((l, _)) = meaning.get(&pos)
                        && let Some(n) = l.names
                    {
                        start.push(n);
                    }
                }
            }
        }
    }
    start.extend(
        proven
            .answer
            .entries
            .iter()
            .map(|e| Followed::Entry(e.entry)),
    );
    start.extend(
        proven
            .answer
            .evaluations
            .iter()
            .map(|e| Followed::Evaluation(e.id)),
    );
    start.extend(
        proven
            .answer
            .commitments
            .iter()
            .map(|c| Followed::Commitment(c.id)),
    );
    let mut following = Following::new(start);
    let mut expected_related: BTreeMap<RegionCode, BTreeSet<Followed>> = BTreeMap::new();
    let proofs_of: BTreeMap<RegionCode, &RegionProof> =
        proven.regions.iter().map(|p| (p.region, p)).collect();
    while let Some((next, in_regions)) = following.next(&proven_regions) {
        for r in in_regions {
            expected_related.entry(r).or_default().insert(next);
            let (Some(proof), Some(leaf)) = (proofs_of.get(&r), heads.get(&r)) else {
                continue;
            };
            let Some(kp) = proof.related.iter().find(|k| k.key == next) else {
                failures.push(format!(
                    "{r}: no map proof for {next:?}, which the answer rests on"
                ));
                continue;
            };
            if let Err(e) = check_listing(leaf, &next.map_key(), &kp.listing, &evidence, r) {
                failures.push(format!("{r}: {next:?}: {e}"));
                continue;
            }
            for seq in &kp.listing.positions {
                let pos = RecordPos {
                    region: r,
                    seq: *seq,
                };
                listed_positions.insert(pos);
                if let Some((l, _)) = meaning.get(&pos) {
                    following.add(pos, l, Some(next));
                }
            }
        }
    }
    // Exactly the followed proofs, sorted, each once.
    for proof in &proven.regions {
        let want: Vec<Followed> = expected_related
            .get(&proof.region)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let have: Vec<Followed> = proof.related.iter().map(|k| k.key).collect();
        if have != want {
            failures.push(format!(
                "{}: related proofs must be exactly the {} keys the answer rests on there, sorted, each once (found {})",
                proof.region,
                want.len(),
                have.len()
            ));
        }
    }
    // 4. The evidence: what the proofs list, plus the registrations of their authors.
    for (pos, bytes) in &evidence {
        let within = heads
            .get(&pos.region)
            .is_some_and(|h| !h.is_excluded() && pos.seq <= h.size);
        if !within {
            failures.push(format!(
                "evidence {}#{}: beyond the proven head of its region (or of an excluded region)",
                pos.region, pos.seq
            ));
            continue;
        }
        if listed_positions.contains(pos) {
            continue;
        }
        let registration = matches!(
            meaning.get(pos),
            Some((_, Body::DepartmentRegistered { .. }))
        );
        if !registration {
            failures.push(format!(
                "evidence {}#{}: neither listed by a proof nor an author's registration ({} bytes)",
                pos.region,
                pos.seq,
                bytes.len()
            ));
        }
    }
    // 5. Recompute the answer from the proven evidence, at the cosigned time.
    if let Some(as_of) = as_of {
        let (recomputed, folded) = recompute_answer(
            manifest,
            catalogue,
            &proven.answer.subject,
            proven.answer.domain,
            as_of,
            freshness_of(manifest, &leaves),
            proven.answer.evidence.clone(),
        );
        report.answer.envelopes_verified = folded.envelopes_verified;
        report
            .answer
            .failures
            .extend(folded.failures.iter().cloned());
        let differences = answer_differences(&proven.answer, &recomputed, &folded);
        report.answer.entries_confirmed = proven
            .answer
            .entries
            .iter()
            .filter(|c| recomputed.entries.contains(c))
            .count();
        if differences.is_empty() {
            report.verdict = Some(recomputed.verdict);
        }
        report.answer.failures.extend(differences);
        if proven.answer.federation_id != manifest.federation_id {
            report.answer.failures.push(format!(
                "federation_id: answer is for '{}', manifest for '{}'",
                proven.answer.federation_id, manifest.federation_id
            ));
        }
        if proven.answer.freshness != recomputed.freshness {
            report.answer.failures.push(
                "freshness: must be each region's proven head and signing time (from the leaves)"
                    .into(),
            );
        }
        if proven.answer.truncated {
            report
                .answer
                .failures
                .push("truncated: a proven answer is never truncated".into());
        }
        if report.answer.failures.is_empty() && proven.answer != recomputed {
            report.answer.failures.push(
                "answer: differs from its recomputation in order (entries, evaluations or measures)"
                    .into(),
            );
        }
    }
    // 6. Per-region standing and freshness.
    let mut records_in: BTreeMap<RegionCode, BTreeSet<u64>> = BTreeMap::new();
    for pos in &listed_positions {
        records_in.entry(pos.region).or_default().insert(pos.seq);
    }
    for (region, leaf) in regions.iter().zip(&leaves) {
        if leaf.is_excluded() {
            report.regions.push(RegionReport {
                region: *region,
                size: 0,
                signed_at: None,
                age_seconds: None,
                stale: false,
                records: 0,
                naming_records: 0,
                standing: RegionStanding::Excluded,
                equivocated_at: equivocated_at.get(region).copied(),
            });
            continue;
        }
        let signed_at = leaf.time();
        let age = signed_at.map(|t| now_seconds.saturating_sub(t));
        if let Some(t) = signed_at
            && t > now_seconds.saturating_add(MAX_CLOCK_AHEAD_SECONDS)
        {
            failures.push(format!(
                "freshness: {region} signed its head at {t}, {}s after the instant verified",
                t - now_seconds
            ));
        }
        let records = records_in.get(region).map_or(0, BTreeSet::len);
        report.regions.push(RegionReport {
            region: *region,
            size: leaf.size,
            signed_at,
            age_seconds: age,
            stale: age.is_none_or(|a| a > max_age_seconds),
            records,
            naming_records: per_region_subject.get(region).copied().unwrap_or(0),
            standing: if records == 0 {
                RegionStanding::ProvenAbsent
            } else {
                RegionStanding::AllShown
            },
            equivocated_at: None,
        });
    }
    report.failures.extend(failures);
    report
}

/// Where a node (or a test) reads what a proven answer needs: what a region's map lists
/// for a key at a size, with its proofs and the envelopes, and a department's
/// registration.
pub trait ProofSource {
    /// A read failure (never an answer).
    type Error;
    /// What `region`'s map at `size` lists for `key`: the listing (map proof, positions,
    /// inclusion proofs under the log at `size`) and the envelopes at those positions,
    /// in the same order.
    fn listing(
        &self,
        region: RegionCode,
        size: u64,
        key: &Hash256,
    ) -> Result<(Listing, Vec<Vec<u8>>), Self::Error>;
    /// The position and bytes of `department`'s registration in its province's log.
    fn registration(
        &self,
        department: &crate::ids::DepartmentId,
    ) -> Result<Option<(RecordPos, Vec<u8>)>, Self::Error>;
}

/// Why gathering proofs failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherError<E> {
    /// The source failed to read.
    Source(E),
    /// A listed envelope does not decode (a corrupt source).
    Corrupt(String),
    /// More envelopes than an answer may carry.
    TooLarge(usize),
}

/// What [`gather_proofs`] gives: per region its proofs, and the evidence in log order.
pub type Gathered = (Vec<RegionProof>, Vec<Evidence>);

/// Gathers, under `leaves` (the federation checkpoint's, in manifest order), every
/// region's listing for `subject` and for every key [`Following`] reaches — exactly
/// what [`verify_proven_answer`] will ask for — and the evidence: the listed envelopes
/// and their authors' registrations within the heads, in log order.
pub fn gather_proofs<S: ProofSource>(
    source: &S,
    manifest: &Manifest,
    subject: &SubjectKey,
    leaves: &[Checkpoint],
) -> Result<Gathered, GatherError<S::Error>> {
    let regions: Vec<RegionCode> = manifest.members.iter().map(|m| m.region).collect();
    let sizes: BTreeMap<RegionCode, u64> = regions
        .iter()
        .copied()
        .zip(leaves)
        .filter(|(_, l)| !l.is_excluded())
        .map(|(r, l)| (r, l.size))
        .collect();
    let proven_regions: Vec<RegionCode> = sizes.keys().copied().collect();
    let mut evidence: BTreeMap<RecordPos, Vec<u8>> = BTreeMap::new();
    let mut authors: BTreeSet<crate::ids::DepartmentId> = BTreeSet::new();
    let mut found = |region: RegionCode,
                     listing: &Listing,
                     envelopes: Vec<Vec<u8>>,
                     evidence: &mut BTreeMap<RecordPos, Vec<u8>>|
     -> Result<Vec<(RecordPos, Listed)>, GatherError<S::Error>> {
        let mut out = Vec::with_capacity(envelopes.len());
        for (seq, bytes) in listing.positions.iter().zip(envelopes) {
            let pos = RecordPos { region, seq: *seq };
            let corrupt =
                |e: crate::codec::DecodeError| GatherError::Corrupt(format!("{region}#{seq}: {e}"));
            let envelope: crate::envelope::Envelope =
                crate::codec::decode(&bytes, crate::limits::MAX_ENVELOPE_BYTES, "envelope")
                    .map_err(corrupt)?;
            let body = Body::decode(&envelope.body).map_err(corrupt)?;
            if !crate::envelope::reserved_unit(&envelope.author.unit) {
                authors.insert(envelope.author.clone());
            }
            out.push((pos, Listed::of(region, &envelope.author, &body)));
            evidence.insert(pos, bytes);
            if evidence.len() > crate::limits::MAX_EVIDENCE_ENVELOPES {
                return Err(GatherError::TooLarge(evidence.len()));
            }
        }
        Ok(out)
    };
    let mut proofs: Vec<RegionProof> = regions
        .iter()
        .map(|r| RegionProof {
            region: *r,
            subject: Listing::none(),
            related: Vec::new(),
        })
        .collect();
    let subject_key = map_key(&Indexed::Subject(subject.clone()));
    let mut start = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        let Some(size) = sizes.get(region) else {
            continue;
        };
        let (listing, envelopes) = source
            .listing(*region, *size, &subject_key)
            .map_err(GatherError::Source)?;
        for (_, l) in found(*region, &listing, envelopes, &mut evidence)? {
            start.extend(l.names);
        }
        proofs[i].subject = listing;
    }
    let mut following = Following::new(start);
    while let Some((next, in_regions)) = following.next(&proven_regions) {
        for r in in_regions {
            let (Some(i), Some(size)) = (regions.iter().position(|x| *x == r), sizes.get(&r))
            else {
                continue;
            };
            let (listing, envelopes) = source
                .listing(r, *size, &next.map_key())
                .map_err(GatherError::Source)?;
            for (pos, l) in found(r, &listing, envelopes, &mut evidence)? {
                following.add(pos, &l, Some(next));
            }
            proofs[i].related.push(KeyProof { key: next, listing });
        }
    }
    for p in &mut proofs {
        p.related.sort_by_key(|k| k.key);
    }
    for author in authors {
        if let Some((pos, bytes)) = source.registration(&author).map_err(GatherError::Source)?
            && sizes.get(&pos.region).is_some_and(|s| pos.seq <= *s)
        {
            evidence.entry(pos).or_insert(bytes);
        }
    }
    Ok((
        proofs,
        evidence
            .into_iter()
            .map(|(pos, envelope)| Evidence { pos, envelope })
            .collect(),
    ))
}

/// Every region's log in memory with its tree and map, as a [`ProofSource`]: for tests,
/// benchmarks and offline tools. Proves at the logs' full sizes.
#[derive(Debug, Default)]
pub struct MemoryLogs {
    logs: BTreeMap<RegionCode, MemoryRegion>,
    registrations: BTreeMap<crate::ids::DepartmentId, RecordPos>,
}

#[derive(Debug)]
struct MemoryRegion {
    envelopes: Vec<Vec<u8>>,
    tree: MemoryTree,
    map: crate::map::MemoryMap,
    map_root: Hash256,
    positions: BTreeMap<Hash256, Vec<u64>>,
}

impl MemoryLogs {
    /// Builds the trees and maps of `logs` (each region's envelopes in sequence order).
    pub fn new(logs: BTreeMap<RegionCode, Vec<Vec<u8>>>) -> Result<MemoryLogs, String> {
        let mut out = MemoryLogs::default();
        for (region, envelopes) in logs {
            let mut decoded = Vec::with_capacity(envelopes.len());
            for (i, bytes) in envelopes.iter().enumerate() {
                let e: crate::envelope::Envelope =
                    crate::codec::decode(bytes, crate::limits::MAX_ENVELOPE_BYTES, "envelope")
                        .map_err(|e| format!("{region}#{}: {e}", i + 1))?;
                let b = Body::decode(&e.body).map_err(|e| format!("{region}#{}: {e}", i + 1))?;
                if let Body::DepartmentRegistered { department, .. } = &b {
                    out.registrations.insert(
                        department.clone(),
                        RecordPos {
                            region,
                            seq: i as u64 + 1,
                        },
                    );
                }
                decoded.push((i as u64 + 1, e, b));
            }
            let changes = crate::map::changes_from(decoded.iter().map(|(s, e, b)| (*s, e, b)));
            let mut r = MemoryRegion {
                tree: MemoryTree::from_data(&envelopes),
                envelopes,
                map: crate::map::MemoryMap::default(),
                map_root: crate::map::EMPTY,
                positions: BTreeMap::new(),
            };
            let size = r.tree.size();
            r.map_root = if size == 0 {
                crate::map::EMPTY
            } else {
                r.map
                    .apply_updates(size, &changes.updates)
                    .map_err(|e| format!("{region}: map: {e:?}"))?
            };
            for (k, seq) in changes.positions {
                r.positions.entry(k).or_default().push(seq);
            }
            out.logs.insert(region, r);
        }
        Ok(out)
    }

    /// `region`'s log size, log root and map root.
    pub fn head(&self, region: RegionCode) -> (u64, Hash256, Hash256) {
        self.logs
            .get(&region)
            .map_or((0, crate::merkle::empty_root(), crate::map::EMPTY), |r| {
                (r.tree.size(), r.tree.root(), r.map_root)
            })
    }
}

impl ProofSource for MemoryLogs {
    type Error = String;

    fn listing(
        &self,
        region: RegionCode,
        size: u64,
        key: &Hash256,
    ) -> Result<(Listing, Vec<Vec<u8>>), String> {
        let Some(r) = self.logs.get(&region) else {
            return Ok((Listing::none(), Vec::new()));
        };
        if size != r.tree.size() {
            return Err(format!("{region}: MemoryLogs proves at the full size only"));
        }
        let proof = if size == 0 {
            Listing::none().proof
        } else {
            crate::map::map_proof(&r.map, size, key).map_err(|e| format!("{e:?}"))?
        };
        let positions = r.positions.get(key).cloned().unwrap_or_default();
        let mut inclusion = Vec::with_capacity(positions.len());
        let mut envelopes = Vec::with_capacity(positions.len());
        for seq in &positions {
            let hashes = crate::merkle::inclusion_proof(&r.tree, seq - 1, size)
                .map_err(|e| format!("{e:?}"))?;
            inclusion.push(InclusionProof { seq: *seq, hashes });
            envelopes.push(r.envelopes[(*seq - 1) as usize].clone());
        }
        Ok((
            Listing {
                proof,
                positions,
                inclusion,
            },
            envelopes,
        ))
    }

    fn registration(
        &self,
        department: &crate::ids::DepartmentId,
    ) -> Result<Option<(RecordPos, Vec<u8>)>, String> {
        Ok(self.registrations.get(department).and_then(|pos| {
            let bytes = self
                .logs
                .get(&pos.region)?
                .envelopes
                .get((pos.seq - 1) as usize)?;
            Some((*pos, bytes.clone()))
        }))
    }
}

/// Builds a proven answer's evidence and answer from the listings a node gathered:
/// recomputes the answer at the federation checkpoint's time with
/// [`recompute_answer`], exactly as [`verify_proven_answer`] will, and signs the file.
/// `evidence` is every listed envelope plus the authors' registrations.
#[allow(clippy::too_many_arguments)]
pub fn assemble_proven_answer(
    manifest: &Manifest,
    catalogue: &Catalogue,
    subject: &SubjectKey,
    domain: MeasureDomain,
    note: &SignedCheckpoint,
    leaves: &[Checkpoint],
    regions: Vec<RegionProof>,
    exclusions: Vec<EquivocationProof>,
    evidence: Vec<Evidence>,
    signed_manifest: Option<SignedManifest>,
    answered_by: RegionCode,
    key: &Keypair,
) -> Result<ProvenAnswer, String> {
    let q = verify_federation_quorum(manifest, note)?;
    let as_of = Timestamp::from_seconds(q.time);
    let (answer, folded) = recompute_answer(
        manifest,
        catalogue,
        subject,
        domain,
        as_of,
        freshness_of(manifest, leaves),
        evidence,
    );
    if let Some(f) = folded.failures.first() {
        return Err(format!("the evidence gathered does not verify: {f}"));
    }
    let mut proven = ProvenAnswer {
        answer,
        federation_note: note.encode(),
        leaves: leaves.iter().map(Checkpoint::body).collect(),
        regions,
        exclusions,
        signed_manifest,
        answered_by,
        signature: Signature([0; 64]),
    };
    proven.sign(key, &manifest.federation_id);
    Ok(proven)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::witness_name;
    use crate::manifest::Member;
    use crate::merkle::empty_root;

    const CODES: [u32; 5] = [110000, 310000, 440000, 620000, 650000];
    const NOW: u64 = 1_800_000_000;

    fn region(c: u32) -> RegionCode {
        RegionCode::new(c, "r").unwrap()
    }

    /// A region's node key (`c` a region code) or, at `c + 1`, its operator key.
    fn key(c: u32) -> Keypair {
        Keypair::from_secret([(c / 10_000) as u8 + 100 * (c % 2) as u8; 32])
    }

    fn manifest() -> Manifest {
        Manifest::for_build(
            "cn-f",
            1,
            Timestamp(0),
            Timestamp(i64::MAX / 2),
            Keypair::from_secret([99; 32]).public(),
            CODES
                .iter()
                .map(|&c| {
                    Member::for_province(region(c), key(c).public(), key(c + 1).public(), vec![])
                })
                .collect(),
        )
    }

    fn leaves(m: &Manifest) -> Vec<Checkpoint> {
        m.members
            .iter()
            .map(|mb| {
                Checkpoint::with_map_at(
                    origin("cn-f", mb.region),
                    0,
                    empty_root(),
                    crate::map::EMPTY,
                    NOW - 5,
                )
            })
            .collect()
    }

    fn note(m: &Manifest, leaves: &[Checkpoint], cosign: &[(u32, u64)]) -> SignedCheckpoint {
        let mut note = SignedCheckpoint {
            checkpoint: federation_checkpoint(m, leaves),
            signatures: vec![],
        };
        for (c, at) in cosign {
            note.cosign(&witness_name("cn-f", region(*c)), &key(*c), *at);
        }
        note
    }

    /// ⌊(n + f)/2⌋ + 1: a majority with f = 0; any two quorums, and a federation quorum
    /// and a region's witnessing quorum, share f + 1 members (the latter excluding the
    /// region); and it is reachable with f members down.
    #[test]
    fn federation_quorums_intersect_in_f_plus_one_and_stay_reachable() {
        assert_eq!(
            [1, 2, 3, 4, 31].map(|n| federation_quorum(n, 0)),
            [1, 2, 2, 3, 16]
        );
        assert_eq!(federation_quorum(5, 1), 4);
        assert_eq!(federation_quorum(31, 9), 21);
        for n in 2..=64usize {
            for f in 0..=crate::witness::max_faults(n) {
                let q = federation_quorum(n, f);
                let w = crate::witness::quorum(n, f);
                // Members two quorums share at least: ≥ f + 1.
                let shared = 2 * q - n;
                assert!(shared > f, "n={n} f={f}: two federation quorums");
                // Cosigners other than the region (q − 1 of the n − 1 others) and the
                // region's witnesses (w of the same n − 1 others).
                let shared = (q - 1) + w - (n - 1);
                assert!(shared > f, "n={n} f={f}: with a region quorum");
                assert!(n - f >= q, "n={n} f={f}: reachable with f down");
            }
        }
    }

    /// The partition-and-fork attack's arithmetic: 2 honest members and the forking
    /// region on each side of a 5-member federation, 15 + 1 on each side of 31, never
    /// reach a federation quorum or witness the region's fork.
    #[test]
    fn a_split_federation_with_a_forking_member_reaches_no_quorum_on_either_side() {
        for (n, side) in [(5usize, 2usize), (31, 15)] {
            let f = crate::witness::max_faults(n);
            assert!(side + 1 < federation_quorum(n, f), "n={n}");
            assert!(
                side < crate::witness::quorum(n, f),
                "n={n}: the fork is not witnessed"
            );
        }
    }

    #[test]
    fn the_quorum_time_is_the_quorum_th_newest_cosignature() {
        let m = manifest();
        let l = leaves(&m);
        let n = note(
            &m,
            &l,
            &[
                (110000, NOW - 9),
                (310000, NOW - 1),
                (440000, NOW - 3),
                (620000, NOW - 2),
                (650000, NOW - 7),
            ],
        );
        let q = verify_federation_quorum(&m, &n).unwrap();
        assert_eq!(q.cosigners.len(), 5);
        // Quorum 4: the fourth newest of 1, 2, 3, 7, 9 seconds ago.
        assert_eq!(q.time, NOW - 7);
    }

    /// Every signature line must be a member's verifying cosignature: a broken,
    /// foreign or repeated line is refused, not skipped, and too few are refused.
    #[test]
    fn every_line_of_a_federation_note_must_verify() {
        let m = manifest();
        let l = leaves(&m);
        let all: Vec<(u32, u64)> = CODES.iter().map(|c| (*c, NOW)).collect();
        let good = note(&m, &l, &all);
        verify_federation_quorum(&m, &good).unwrap();
        let mut broken = good.clone();
        broken.signatures[4].data[20] ^= 1;
        assert!(verify_federation_quorum(&m, &broken).is_err());
        let mut foreign = good.clone();
        foreign.cosign(
            "credfed/cn-f/witness/999999",
            &Keypair::from_secret([5; 32]),
            NOW,
        );
        let e = verify_federation_quorum(&m, &foreign).unwrap_err();
        assert!(e.contains("not a member's witness name"), "{e}");
        let mut twice = good.clone();
        twice.cosign(
            &witness_name("cn-f", region(110000)),
            &Keypair::from_secret([5; 32]),
            NOW,
        );
        let e = verify_federation_quorum(&m, &twice).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let few = note(&m, &l, &all[..3]);
        let e = verify_federation_quorum(&m, &few).unwrap_err();
        assert!(e.contains("3 of 4 cosignatures"), "{e}");
    }

    /// The note names the manifest; leaves carry a map root and a time, or are
    /// exclusions; anything else is refused with the reason.
    #[test]
    fn federation_shape_names_the_manifest_and_timed_leaves() {
        let m = manifest();
        let l = leaves(&m);
        let n = federation_checkpoint(&m, &l);
        check_federation_shape(&m, &n, &l).unwrap();
        let mut other = m.clone();
        other.version = 2;
        let e = check_federation_shape(&other, &n, &l).unwrap_err();
        assert!(
            e.starts_with(
                "manifest: the federation checkpoint was cosigned under manifest version 1"
            ),
            "{e}"
        );
        // A leaf without a time.
        let mut untimed = l.clone();
        untimed[1] = Checkpoint::with_map(
            origin("cn-f", region(310000)),
            0,
            empty_root(),
            crate::map::EMPTY,
        );
        let n2 = federation_checkpoint(&m, &untimed);
        assert!(
            check_federation_shape(&m, &n2, &untimed)
                .unwrap_err()
                .contains("neither")
        );
        // An exclusion is a leaf of its own shape.
        let mut excl = l.clone();
        excl[1] = Checkpoint::excluded(origin("cn-f", region(310000)));
        assert!(excl[1].is_excluded());
        let n3 = federation_checkpoint(&m, &excl);
        check_federation_shape(&m, &n3, &excl).unwrap();
        // A changed leaf no longer matches the root.
        let mut changed = l.clone();
        changed[2].size = 3;
        assert!(
            check_federation_shape(&m, &n, &changed)
                .unwrap_err()
                .contains("root does not match")
        );
    }

    #[test]
    fn older_evidence_files_are_refused_with_what_to_do() {
        let e = ProvenAnswer::from_file(b"credfed evidence v1\nxxxx").unwrap_err();
        assert!(e.contains("version 1") && e.contains("--evidence"), "{e}");
        let e = ProvenAnswer::from_file(b"credfed evidence v2\nxxxx").unwrap_err();
        assert!(e.contains("version 2") && e.contains("--evidence"), "{e}");
        let e = ProvenAnswer::from_file(b"hello").unwrap_err();
        assert!(e.contains("not a credfed evidence file"), "{e}");
    }
}

//! Federation checkpoints and proof-carrying check answers.
//!
//! A check answer that covers every region needs, for each region, a head (log root and
//! map root) that the verifier can trust, and proofs under it. Quorums per region would
//! make the verifier check a majority of cosignatures 31 times (about 500 signatures,
//! some 20 ms and 35 KB); instead one note commits to every region's head and a majority
//! of all members cosigns it once:
//!
//! * the *federation checkpoint* is a C2SP checkpoint with origin `credfed/<federation>`
//!   whose tree (RFC 6962) has one leaf per member region, in manifest order; a leaf is
//!   that region's checkpoint body, verbatim (`credfed/<fed>/<region>`, size, root,
//!   `map <root>`);
//! * a member cosigns it ([`judge_federation`]) only if every leaf is a head it has
//!   verified itself (its replica reproduces the log root and the map root at that
//!   size, or the leaf is the witnessed checkpoint it holds) and no leaf is older than a
//!   witnessed checkpoint of that region it has known for longer than a grace period
//!   ([`STALE_AFTER_SECONDS`]) — so a quorum of cosignatures at time *t* says that, at
//!   *t*, a majority knew no newer head of any region;
//! * a [`ProvenAnswer`] carries the note, the leaves, and per region a map proof for the
//!   subject (presence with positions, or absence) and inclusion proofs for the
//!   envelopes it lists; [`verify_proven_answer`] checks all of it offline, with a
//!   freshness bound the verifier chooses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{CheckAnswer, VerificationReport, verify_answer};
use crate::checkpoint::{Checkpoint, SignedCheckpoint, origin};
use crate::crypto::Hash256;
use crate::envelope::decode_envelope;
use crate::ids::RegionCode;
use crate::manifest::Manifest;
use crate::map::{Indexed, MapProof, map_key, value_of, verify_map_proof};
use crate::merkle::{MemoryTree, leaf_hash, verify_inclusion};
use crate::record::{
    Body, EntryId, EvaluationId, ObjectionId, entry_id, evaluation_id, objection_id,
};
use crate::state::RecordPos;
use crate::witness::CosignRefusal;

/// A member still cosigns a federation checkpoint whose leaf for a region is older than
/// a witnessed checkpoint of that region it holds, if it learnt of the newer one less
/// than this long ago: heads move about once a second under load, and a proposal takes
/// a round trip to collect.
pub const STALE_AFTER_SECONDS: u64 = 10;

/// Largest evidence file read: a clear answer over 31 regions is under 32 KB; one with
/// the maximal evidence (a few thousand envelopes and their proofs) stays well below.
pub const MAX_EVIDENCE_FILE_BYTES: usize = 8 * 1024 * 1024;

/// What an evidence file starts with.
pub const EVIDENCE_MAGIC: &[u8] = b"credfed evidence v1\n";

/// The origin line of a federation checkpoint.
pub fn federation_origin(federation_id: &str) -> String {
    format!("credfed/{federation_id}")
}

/// Cosignatures a federation checkpoint needs: a majority of all members (its proposer
/// counts). With region checkpoints witnessed by a majority of the other members, the
/// two quorums always share an honest-or-not member — the one that refuses a stale
/// leaf.
pub fn federation_quorum(members: usize) -> usize {
    members / 2 + 1
}

/// The federation checkpoint committing to `leaves` (region checkpoint bodies in
/// manifest order).
pub fn federation_checkpoint(federation_id: &str, leaves: &[Checkpoint]) -> Checkpoint {
    let bodies: Vec<String> = leaves.iter().map(Checkpoint::body).collect();
    let tree = MemoryTree::from_data(&bodies);
    Checkpoint::new(federation_origin(federation_id), tree.size(), tree.root())
}

/// Checks that `note` is a federation checkpoint over exactly `leaves`: origin, one
/// leaf per member region in manifest order, each a region checkpoint with a map root,
/// and the tree root over them.
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
        if leaf.map_root().is_none() {
            return Err(format!(
                "federation checkpoint: the leaf of {} has no map root",
                m.region
            ));
        }
    }
    let expected = federation_checkpoint(fed, leaves);
    if expected.size != note.size || expected.root != note.root {
        return Err("federation checkpoint: root does not match its leaves".into());
    }
    Ok(())
}

/// Whether a member may cosign a federation checkpoint: its shape, then every leaf
/// through `leaf_ok` (the member's own replica and witnessed checkpoints).
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

/// The verified cosigners of a federation checkpoint and the time the quorum vouches
/// for: the newest instant by which a quorum had cosigned (the quorum-th newest
/// cosignature time). Stops verifying once a quorum of the newest is found.
pub fn verify_federation_quorum(
    manifest: &Manifest,
    note: &SignedCheckpoint,
) -> Result<(Vec<RegionCode>, u64), String> {
    let need = federation_quorum(manifest.members.len());
    let verified = crate::witness::verified_cosigners(note, manifest, need, |_| true);
    let oldest = verified.iter().map(|(_, t)| *t).min().unwrap_or(u64::MAX);
    let cosigners: Vec<RegionCode> = verified.into_iter().map(|(r, _)| r).collect();
    if cosigners.len() < need {
        return Err(format!(
            "federation checkpoint: {} of {need} cosignatures needed (a majority of all members) verify",
            cosigners.len()
        ));
    }
    Ok((cosigners, oldest))
}

/// An inclusion proof of one envelope under its region's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The envelope's position.
    pub seq: u64,
    /// RFC 9162 audit path.
    pub hashes: Vec<Hash256>,
}

/// What a region's map lists for one key under the region's leaf, with the proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The map proof for the key.
    pub proof: MapProof,
    /// The positions the map lists, in log order (empty: nothing).
    pub positions: Vec<u64>,
    /// One inclusion proof per position; the envelopes are in the answer's evidence.
    pub inclusion: Vec<InclusionProof>,
}

/// What one region's map and log say about the subject, under that region's leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionProof {
    /// Region.
    pub region: RegionCode,
    /// What the map lists for the subject.
    pub subject: Listing,
    /// The same for every entry, evaluation and objection the answer follows (see
    /// [`verify_proven_answer`]).
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
}

impl Followed {
    /// Its key in a region's map.
    pub fn map_key(&self) -> Hash256 {
        map_key(&match self {
            Followed::Entry(id) => Indexed::Entry(id.0),
            Followed::Evaluation(id) => Indexed::Evaluation(id.0),
            Followed::Objection(id) => Indexed::Objection(id.0),
        })
    }
}

/// What one region's map lists for a followed id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProof {
    /// What is followed.
    pub key: Followed,
    /// What the map lists for it.
    pub listing: Listing,
}

/// A check answer with everything needed to verify it offline against the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenAnswer {
    /// The answer (verdict, entries, measures, evidence envelopes).
    pub answer: CheckAnswer,
    /// The federation checkpoint, a cosigned C2SP note.
    pub federation_note: String,
    /// Its leaves: every member region's checkpoint body, in manifest order.
    pub leaves: Vec<String>,
    /// Per region, in manifest order.
    pub regions: Vec<RegionProof>,
}

impl ProvenAnswer {
    /// The evidence file: a magic line, then the canonical encoding.
    pub fn to_file(&self) -> Vec<u8> {
        let mut out = EVIDENCE_MAGIC.to_vec();
        out.extend(crate::codec::encode(self).unwrap_or_default());
        out
    }

    /// Reads an evidence file (size-limited; the whole file must be one answer).
    pub fn from_file(bytes: &[u8]) -> Result<ProvenAnswer, String> {
        let body = bytes.strip_prefix(EVIDENCE_MAGIC).ok_or(
            "not a credfed evidence file (it should start with 'credfed evidence v1'); \
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
            _ => {}
        }
        l
    }
}

/// What the evidence at `positions` of `region` means, into `out`.
fn decode_listed(
    region: RegionCode,
    positions: &[u64],
    meaning: &BTreeMap<RecordPos, Listed>,
    out: &mut BTreeMap<RecordPos, Listed>,
) {
    for seq in positions {
        let pos = RecordPos { region, seq: *seq };
        if let Some(l) = meaning.get(&pos) {
            out.insert(pos, *l);
        }
    }
}

/// Checks `region`'s proof for `key` and adds what it lists to `found`.
fn check_followed(
    proven: &ProvenAnswer,
    heads: &BTreeMap<RegionCode, &Checkpoint>,
    evidence: &BTreeMap<RecordPos, &Vec<u8>>,
    meaning: &BTreeMap<RecordPos, Listed>,
    region: RegionCode,
    key: Followed,
    found: &mut BTreeMap<RecordPos, Listed>,
) -> Result<(), String> {
    let (Some(proof), Some(leaf)) = (
        proven.regions.iter().find(|p| p.region == region),
        heads.get(&region),
    ) else {
        return Err(format!("{region}: no head proven"));
    };
    let Some(kp) = proof.related.iter().find(|k| k.key == key) else {
        return Err(format!(
            "{region}: no map proof for {key:?}, which the answer rests on"
        ));
    };
    check_listing(leaf, &key.map_key(), &kp.listing, evidence, region)
        .map_err(|e| format!("{region}: {key:?}: {e}"))?;
    decode_listed(region, &kp.listing.positions, meaning, found);
    Ok(())
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

/// What offline verification of a proven answer concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofReport {
    /// The checks [`verify_answer`] makes on the answer's own evidence.
    pub answer: VerificationReport,
    /// Members whose cosignatures on the federation checkpoint verified (the quorum).
    pub cosigners: Vec<RegionCode>,
    /// The time (seconds since the epoch) by which the quorum had cosigned.
    pub witnessed_at: u64,
    /// How old that was when verified, in seconds.
    pub age_seconds: u64,
    /// Per region: the head proven and what it proves about the subject.
    pub regions: Vec<RegionReport>,
    /// Everything that failed, each naming the region or part and the rule.
    pub failures: Vec<String>,
}

impl ProofReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.answer.ok()
    }
}

/// One region's line of a [`ProofReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionReport {
    /// Region.
    pub region: RegionCode,
    /// Records of its log the head covers.
    pub size: u64,
    /// Records that name the subject (0: proven absent).
    pub naming_records: usize,
}

/// Verifies a proven answer offline: the federation checkpoint's quorum (against the
/// manifest's node keys) and its age against `max_age_seconds` at `now_seconds`; the
/// leaves against its root; per region the map proof for the subject against the leaf's
/// map root — absence, or exactly the positions listed — and each listed envelope's
/// inclusion under the leaf's log root; that the answer's evidence holds every listed
/// envelope; and the answer itself ([`verify_answer`]).
///
/// What this proves for a subject with no entries: no region had ever logged a record
/// naming it, at heads a majority vouched for at the time shown. For a listed subject it
/// proves that the answer shows every record naming the subject; records that act on an
/// entry without naming the subject (suspensions, repairs) are checked as far as the
/// evidence carries them (see docs/protocol.md, "Proven answers").
pub fn verify_proven_answer(
    proven: &ProvenAnswer,
    manifest: &Manifest,
    catalogue: &crate::catalogue::Catalogue,
    now_seconds: u64,
    max_age_seconds: u64,
) -> ProofReport {
    let mut failures = Vec::new();
    let answer_report = verify_answer(&proven.answer, manifest, catalogue);
    let mut report = ProofReport {
        answer: answer_report,
        cosigners: Vec::new(),
        witnessed_at: 0,
        age_seconds: 0,
        regions: Vec::new(),
        failures: Vec::new(),
    };
    let note = match SignedCheckpoint::parse(&proven.federation_note) {
        Ok(n) => n,
        Err(e) => {
            report.failures.push(format!("federation_note: {e}"));
            return report;
        }
    };
    let mut leaves = Vec::with_capacity(proven.leaves.len());
    for (i, text) in proven.leaves.iter().enumerate() {
        match Checkpoint::parse_body(text) {
            Ok(c) => leaves.push(c),
            Err(e) => {
                report.failures.push(format!("leaves[{i}]: {e}"));
                return report;
            }
        }
    }
    if let Err(e) = check_federation_shape(manifest, &note.checkpoint, &leaves) {
        report.failures.push(e);
        return report;
    }
    match verify_federation_quorum(manifest, &note) {
        Ok((cosigners, at)) => {
            report.cosigners = cosigners;
            report.witnessed_at = at;
            report.age_seconds = now_seconds.saturating_sub(at);
            if report.age_seconds > max_age_seconds {
                failures.push(format!(
                    "freshness: the federation checkpoint was witnessed {}s ago, more than the {max_age_seconds}s allowed; ask the node for a fresh answer",
                    report.age_seconds
                ));
            }
        }
        Err(e) => failures.push(e),
    }
    let key = map_key(&Indexed::Subject(proven.answer.subject.clone()));
    let evidence: BTreeMap<RecordPos, &Vec<u8>> = proven
        .answer
        .evidence
        .iter()
        .map(|e| (e.pos, &e.envelope))
        .collect();
    // Each evidence envelope decoded once: what it publishes, names or files.
    let meaning: BTreeMap<RecordPos, Listed> = evidence
        .iter()
        .filter_map(|(pos, bytes)| {
            let v = decode_envelope(&manifest.federation_id, bytes).ok()?;
            Some((*pos, Listed::of(pos.region, &v.envelope.author, &v.body)))
        })
        .collect();
    if proven.regions.len() != manifest.members.len() {
        failures.push(format!(
            "regions: {} region proofs, the manifest has {} members",
            proven.regions.len(),
            manifest.members.len()
        ));
    }
    let heads: BTreeMap<RegionCode, &Checkpoint> = manifest
        .members
        .iter()
        .map(|m| m.region)
        .zip(&leaves)
        .collect();
    // The records the proofs list, decoded: what they name is followed next.
    let mut listed: BTreeMap<RecordPos, Listed> = BTreeMap::new();
    for ((proof, leaf), m) in proven.regions.iter().zip(&leaves).zip(&manifest.members) {
        let r = m.region;
        if proof.region != r {
            failures.push(format!(
                "regions: proof for {} where {r} was expected (manifest order)",
                proof.region
            ));
            continue;
        }
        let positions = &proof.subject.positions;
        match check_listing(leaf, &key, &proof.subject, &evidence, r) {
            Err(e) => failures.push(format!("{r}: {e}")),
            Ok(()) => decode_listed(r, positions, &meaning, &mut listed),
        }
        report.regions.push(RegionReport {
            region: r,
            size: leaf.size,
            naming_records: positions.len(),
        });
    }
    // Follow every entry and evaluation the subject's records or the answer name, to
    // every record about it in every region (corrections, repairs, revocations,
    // objections, joint actions), and every objection found to its resolutions in the
    // issuer's log. A record withheld here would change a state the answer claims.
    let mut queue: Vec<Followed> = listed.values().filter_map(|l| l.names).collect();
    queue.extend(
        proven
            .answer
            .entries
            .iter()
            .map(|e| Followed::Entry(e.entry)),
    );
    queue.extend(
        proven
            .answer
            .evaluations
            .iter()
            .map(|e| Followed::Evaluation(e.id)),
    );
    let mut done: std::collections::BTreeSet<Followed> = std::collections::BTreeSet::new();
    // Where each entry or evaluation was published: its issuer.
    let mut issuer: BTreeMap<Followed, RegionCode> = BTreeMap::new();
    let mut objections: Vec<(Followed, Followed)> = Vec::new();
    while let Some(next) = queue.pop() {
        if !done.insert(next) {
            continue;
        }
        let regions: Vec<RegionCode> = match next {
            Followed::Objection(_) => Vec::new(),
            _ => manifest.members.iter().map(|m| m.region).collect(),
        };
        for r in regions {
            let mut found = BTreeMap::new();
            if let Err(e) = check_followed(proven, &heads, &evidence, &meaning, r, next, &mut found)
            {
                failures.push(e);
                continue;
            }
            for (pos, l) in found {
                if l.publishes == Some(next) {
                    issuer.insert(next, pos.region);
                }
                if let Some(o) = l.objection {
                    objections.push((o, next));
                }
                listed.insert(pos, l);
            }
        }
    }
    for (o, about) in objections {
        // Resolved only by the issuer of what it is about (article 二十二); an entry
        // whose publication lies beyond the heads proven has nothing proven to resolve.
        let Some(r) = issuer.get(&about).copied() else {
            continue;
        };
        if !done.insert(o) {
            continue;
        }
        let mut found = BTreeMap::new();
        if let Err(e) = check_followed(proven, &heads, &evidence, &meaning, r, o, &mut found) {
            failures.push(e);
        }
        listed.extend(found);
    }
    // Every entry and evaluation the answer shows must come from a record the proofs
    // list, or be newer than the heads proven.
    let covered: std::collections::BTreeSet<Followed> =
        listed.values().filter_map(|l| l.names).collect();
    let newer = |pos: &RecordPos| heads.get(&pos.region).is_some_and(|h| pos.seq > h.size);
    let published_at: BTreeMap<Followed, RecordPos> = meaning
        .iter()
        .filter_map(|(pos, l)| Some((l.publishes?, *pos)))
        .collect();
    let shown = proven
        .answer
        .entries
        .iter()
        .map(|e| (Followed::Entry(e.entry), e.entry.to_string(), "entry"))
        .chain(
            proven
                .answer
                .evaluations
                .iter()
                .map(|e| (Followed::Evaluation(e.id), e.id.to_string(), "evaluation")),
        );
    for (f, id, what) in shown {
        let is_newer = published_at.get(&f).is_some_and(newer);
        if !covered.contains(&f) && !is_newer {
            failures.push(format!(
                "{what} {id}: no record the map lists for the subject publishes or corrects it"
            ));
        }
    }
    report.failures = failures;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Catalogue, MeasureDomain};
    use crate::check::Verdict;
    use crate::checkpoint::witness_name;
    use crate::crypto::Keypair;
    use crate::manifest::Member;
    use crate::map::{EMPTY, MemoryMap, map_proof};
    use crate::merkle::empty_root;
    use crate::record::SubjectKey;
    use crate::time::Timestamp;
    use proptest::prelude::*;

    const CODES: [u32; 3] = [310000, 440000, 620000];
    const NOW: u64 = 1_800_000_000;

    fn key(c: u32) -> Keypair {
        Keypair::from_secret([(c / 10_000) as u8; 32])
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
                    Member::for_province(RegionCode::new(c, "r").unwrap(), key(c).public(), vec![])
                })
                .collect(),
        )
    }

    /// Gansu's map in these tests: forty other subjects, one record each; and its root.
    fn gansu_map() -> (MemoryMap, Hash256) {
        let mut gansu = MemoryMap::default();
        let others: std::collections::BTreeMap<_, _> = (0..40u64)
            .map(|i| {
                let k = map_key(&Indexed::Subject(SubjectKey::Uscc(format!("other{i}"))));
                (k, crate::map::value_after(None, i + 1))
            })
            .collect();
        let root = gansu.apply(40, &others).unwrap();
        (gansu, root)
    }

    /// A clear answer over empty logs, whose Gansu map holds other subjects, cosigned by
    /// the members `cosign` at `at`.
    fn proven(cosign: &[u32], at: u64) -> ProvenAnswer {
        let m = manifest();
        let subject = SubjectKey::Uscc("91110000100000000R".into());
        let (gansu, gansu_root) = gansu_map();
        let leaves: Vec<Checkpoint> = m
            .members
            .iter()
            .map(|mb| {
                let o = origin("cn-f", mb.region);
                if mb.region.code() == 620000 {
                    // Its log root is not checked here (no positions to include).
                    Checkpoint::with_map(o, 40, Hash256([9; 32]), gansu_root)
                } else {
                    Checkpoint::with_map(o, 0, empty_root(), EMPTY)
                }
            })
            .collect();
        let mut note = SignedCheckpoint {
            checkpoint: federation_checkpoint("cn-f", &leaves),
            signatures: vec![],
        };
        for c in cosign {
            note.cosign(
                &witness_name("cn-f", RegionCode::new(*c, "r").unwrap()),
                &key(*c),
                at,
            );
        }
        let key = map_key(&Indexed::Subject(subject.clone()));
        let regions = m
            .members
            .iter()
            .map(|mb| RegionProof {
                region: mb.region,
                subject: Listing {
                    proof: if mb.region.code() == 620000 {
                        map_proof(&gansu, 40, &key).unwrap()
                    } else {
                        MapProof {
                            siblings: vec![],
                            leaf: None,
                        }
                    },
                    positions: vec![],
                    inclusion: vec![],
                },
                related: vec![],
            })
            .collect();
        ProvenAnswer {
            answer: CheckAnswer {
                federation_id: "cn-f".into(),
                subject,
                domain: MeasureDomain::Procurement,
                as_of: Timestamp((at * 1000) as i64),
                verdict: Verdict::Clear,
                entries: vec![],
                evaluations: vec![],
                mandatory: vec![],
                recommended: vec![],
                withheld: vec![],
                freshness: vec![],
                evidence: vec![],
                truncated: false,
            },
            federation_note: note.encode(),
            leaves: leaves.iter().map(Checkpoint::body).collect(),
            regions,
        }
    }

    fn verify(p: &ProvenAnswer, now: u64, max_age: u64) -> ProofReport {
        verify_proven_answer(
            p,
            &manifest(),
            &Catalogue::embedded().unwrap(),
            now,
            max_age,
        )
    }

    #[test]
    fn federation_quorum_is_a_majority_of_all_members() {
        assert_eq!([1, 2, 3, 4, 31].map(federation_quorum), [1, 2, 2, 3, 16]);
    }

    #[test]
    fn a_clear_answer_under_a_quorum_verifies_with_every_region_absent() {
        let p = proven(&[310000, 620000], NOW - 30);
        let r = verify(&p, NOW, 60);
        assert!(r.ok(), "{:?} {:?}", r.failures, r.answer.failures);
        assert_eq!(r.age_seconds, 30);
        assert_eq!(r.cosigners.len(), 2);
        assert!(r.regions.iter().all(|x| x.naming_records == 0));
        // The evidence file round-trips.
        assert_eq!(ProvenAnswer::from_file(&p.to_file()).unwrap(), p);
    }

    #[test]
    fn too_few_cosignatures_stale_checkpoints_and_foreign_cosigners_are_refused() {
        let r = verify(&proven(&[310000], NOW), NOW, 60);
        assert!(
            r.failures.iter().any(|f| f.contains("1 of 2 cosignatures")),
            "{:?}",
            r.failures
        );
        let r = verify(&proven(&[310000, 440000], NOW - 61), NOW, 60);
        assert!(
            r.failures.iter().any(|f| f.starts_with("freshness")),
            "{:?}",
            r.failures
        );
        // A cosignature by a key the manifest does not name for that member.
        let mut p = proven(&[310000], NOW);
        let mut note = SignedCheckpoint::parse(&p.federation_note).unwrap();
        note.cosign(
            &witness_name("cn-f", RegionCode::new(440000, "r").unwrap()),
            &Keypair::from_secret([5; 32]),
            NOW,
        );
        p.federation_note = note.encode();
        assert!(!verify(&p, NOW, 60).ok());
    }

    #[test]
    fn a_leaf_changed_reordered_or_missing_is_refused() {
        let p = proven(&[310000, 620000], NOW);
        let mut a = p.clone();
        a.leaves.swap(0, 1);
        assert!(!verify(&a, NOW, 60).ok());
        let mut a = p.clone();
        a.leaves.pop();
        assert!(!verify(&a, NOW, 60).ok());
        let mut a = p.clone();
        a.leaves[2] = a.leaves[2].replace("\n40\n", "\n41\n");
        let r = verify(&a, NOW, 60);
        assert!(
            r.failures.iter().any(|f| f.contains("root does not match")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn an_absence_proof_for_another_subject_or_a_listed_claim_is_refused() {
        let p = proven(&[310000, 620000], NOW);
        // Claim the subject has a record in Gansu: the map says otherwise.
        let mut a = p.clone();
        a.regions[2].subject.positions = vec![3];
        a.regions[2].subject.inclusion = vec![InclusionProof {
            seq: 3,
            hashes: vec![],
        }];
        assert!(!verify(&a, NOW, 60).ok());
        // The proof of another subject (present in Gansu's map) for this one.
        let mut a = p.clone();
        let other = map_key(&Indexed::Subject(SubjectKey::Uscc("other7".into())));
        let (gansu, _) = gansu_map();
        a.regions[2].subject.proof = map_proof(&gansu, 40, &other).unwrap();
        assert!(!verify(&a, NOW, 60).ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A mangled evidence file is refused or decodes to something that does not
        /// verify as the original did — never a panic.
        #[test]
        fn mangled_evidence_files_never_panic(at in 0usize..4096, byte in any::<u8>(), cut in any::<bool>()) {
            let file = proven(&[310000, 620000], NOW).to_file();
            let mut bad = file.clone();
            if cut {
                bad.truncate(at % file.len());
            } else {
                let i = at % file.len();
                bad[i] ^= byte.max(1);
            }
            if let Ok(p) = ProvenAnswer::from_file(&bad) {
                let _ = verify(&p, NOW, 60);
            }
        }
    }
}

//! The verifiable map of a region's log: from each subject (and each entry, evaluation,
//! action and objection id) to the positions of the records in that log that name it.
//!
//! A check must be able to prove a negative — "region X has never listed this
//! company" — without shipping X's whole log. The map is a sparse Merkle tree over
//! 256-bit keys (the hash of what is looked up, [`MapKey`]); its root goes into the
//! region's checkpoints (`map <base64>` extension line), so a witness that recomputes the
//! map from its own replica refuses a checkpoint whose map root is wrong, and a proof of
//! a few hundred bytes shows either the positions a key maps to or that it maps to
//! nothing. This is the "map over a log" pattern of key-transparency systems: the log is
//! the source of truth, the map a deterministic index of it that anyone holding the log
//! can rebuild ([`keys_named`] decides what each record indexes, from the record alone).
//!
//! Shape (the compact sparse Merkle tree of Diem's and `jmt`'s designs): a subtree
//! holding no key is [`EMPTY`]; a subtree holding exactly one key is that key's leaf,
//! placed as high as it can go; any other subtree is an internal node. Keys are never
//! removed (a record, once logged, stays logged), so the tree stays canonical: equal
//! contents give equal roots, whatever order they were inserted in. Depth is about
//! log2(keys) + 1, so proofs are ~20 hashes at a million keys.
//!
//! Hashing (distinct from the log tree's RFC 6962 prefixes 0 and 1, so that no node of
//! one tree can pass as a node of the other): leaf `SHA-256(0x02 ‖ key ‖ value)`,
//! internal `SHA-256(0x03 ‖ left ‖ right)`, empty subtree 32 zero bytes. A key's value
//! is a hash chain over the sequence numbers of the records naming it ([`value_after`]),
//! so a verifier given the positions can recompute it.
//!
//! Versions: the node stores every changed node under the log size at which the map was
//! updated (a checkpoint's size), so proofs can be served at any checkpoint still held.
//! Storage is the caller's ([`MapNodes`]); everything here is pure.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::crypto::{Hash256, sha256};
use crate::envelope::Envelope;
use crate::record::{Body, SubjectKey, entry_id, evaluation_id, objection_id};

/// The hash of an empty subtree.
pub const EMPTY: Hash256 = Hash256([0; 32]);

/// Deepest a node can be: keys are 256 bits.
pub const MAX_DEPTH: u16 = 256;

/// What a map key is the hash of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Indexed {
    /// A subject, by the key checks look it up by.
    Subject(SubjectKey),
    /// A list entry: its publication, corrections, repairs, revocation, actions and
    /// objections.
    Entry(Hash256),
    /// An evaluation: its publication, revocation and objections.
    Evaluation(Hash256),
    /// A joint action: initiation, acknowledgements and execution feedback.
    Action(Hash256),
    /// An objection: filing and resolution.
    Objection(Hash256),
    /// A written commitment: its making and settlement (article 四).
    Commitment(Hash256),
    /// A disclosed licensing or penalty decision (article 十七). Deliberately not under
    /// its subject: most companies hold licences, and a check's proof of absence must
    /// not have to carry them (docs/decisions.md).
    Disclosure(Hash256),
}

/// A position in the map: the hash of what is indexed, with a kind tag so that no two
/// kinds of thing can share a key.
pub fn map_key(indexed: &Indexed) -> Hash256 {
    const TAG: &[u8] = b"credfed map key\0";
    match indexed {
        Indexed::Subject(SubjectKey::Uscc(code)) => sha256(&[TAG, b"uscc\0", code.as_bytes()]),
        Indexed::Subject(SubjectKey::Person(h)) => sha256(&[TAG, b"person\0", &h.0]),
        Indexed::Entry(h) => sha256(&[TAG, b"entry\0", &h.0]),
        Indexed::Evaluation(h) => sha256(&[TAG, b"evaluation\0", &h.0]),
        Indexed::Action(h) => sha256(&[TAG, b"action\0", &h.0]),
        Indexed::Objection(h) => sha256(&[TAG, b"objection\0", &h.0]),
        Indexed::Commitment(h) => sha256(&[TAG, b"commitment\0", &h.0]),
        Indexed::Disclosure(h) => sha256(&[TAG, b"disclosure\0", &h.0]),
    }
}

/// Everything a record names, from the record alone (no state): what a witness indexes
/// when it recomputes a region's map. A correction is indexed under the subjects it now
/// names *and* under its entry, so that a verifier following an entry finds every
/// correction, including one that stopped naming a subject.
pub fn keys_named(envelope: &Envelope, body: &Body) -> BTreeSet<Indexed> {
    let mut out = BTreeSet::new();
    match body {
        Body::ListEntryPublished(e) => {
            out.extend(e.named_keys().into_iter().map(Indexed::Subject));
            out.insert(Indexed::Entry(entry_id(envelope.region, e).0));
        }
        Body::ListEntryAmended { entry, amended, .. } => {
            out.extend(amended.named_keys().into_iter().map(Indexed::Subject));
            out.insert(Indexed::Entry(entry.0));
        }
        Body::ListEntryRevoked { entry, .. }
        | Body::ListEntryRepaired { entry, .. }
        | Body::RepairApplied { entry, .. }
        | Body::RepairDecided { entry, .. } => {
            out.insert(Indexed::Entry(entry.0));
        }
        Body::EvaluationPublished(ev) => {
            out.insert(Indexed::Subject(ev.subject.key()));
            out.insert(Indexed::Evaluation(evaluation_id(&envelope.author, ev).0));
        }
        Body::EvaluationRevoked { evaluation, .. } => {
            out.insert(Indexed::Evaluation(evaluation.0));
        }
        Body::JointActionInitiated(a) => {
            out.insert(Indexed::Entry(a.entry.0));
            out.insert(Indexed::Action(
                crate::record::action_id(&envelope.author, &a.reference).0,
            ));
        }
        Body::JointActionAcknowledged { action, .. }
        | Body::MeasureExecuted { action, .. }
        | Body::MeasureLifted { action, .. } => {
            out.insert(Indexed::Action(action.0));
        }
        Body::ObjectionFiled {
            case_no, target, ..
        } => {
            out.insert(match target {
                crate::record::ObjectionTarget::Entry(e) => Indexed::Entry(e.0),
                crate::record::ObjectionTarget::Evaluation(e) => Indexed::Evaluation(e.0),
            });
            out.insert(Indexed::Objection(
                objection_id(&envelope.author, case_no).0,
            ));
        }
        Body::ObjectionResolved { objection, .. } => {
            out.insert(Indexed::Objection(objection.0));
        }
        Body::CommitmentMade(c) => {
            out.insert(Indexed::Subject(c.subject.key()));
            out.insert(Indexed::Commitment(
                crate::record::commitment_id(&envelope.author, &c.acceptance_no).0,
            ));
        }
        Body::CommitmentSettled { commitment, .. } => {
            out.insert(Indexed::Commitment(commitment.0));
        }
        Body::DecisionDisclosed(d) => {
            out.insert(Indexed::Disclosure(
                crate::record::disclosure_id(&envelope.author, d.kind, &d.decision_no).0,
            ));
        }
        Body::DepartmentRegistered { .. }
        | Body::DepartmentRevoked { .. }
        | Body::EquivocationEvidence { .. } => {}
    }
    out
}

/// A key's value after one more record at `seq` names it (`previous` is `None` for the
/// first).
pub fn value_after(previous: Option<Hash256>, seq: u64) -> Hash256 {
    sha256(&[
        b"credfed map value\0",
        &previous.unwrap_or(EMPTY).0,
        &seq.to_be_bytes(),
    ])
}

/// The value of a key naming `positions`, in log order.
pub fn value_of(positions: &[u64]) -> Option<Hash256> {
    positions
        .iter()
        .fold(None, |acc, seq| Some(value_after(acc, *seq)))
}

/// A stored node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MapNode {
    /// A subtree of two or more keys: its children's hashes (kept here so that an update
    /// or a proof reads only the nodes on a key's path, never its siblings).
    Internal {
        /// The subtree whose next key bit is 0.
        left: Hash256,
        /// The subtree whose next key bit is 1.
        right: Hash256,
    },
    /// A subtree of exactly one key.
    Leaf {
        /// The key.
        key: Hash256,
        /// Its value.
        value: Hash256,
    },
}

impl MapNode {
    /// The node's hash.
    pub fn hash(&self) -> Hash256 {
        match self {
            MapNode::Internal { left, right } => internal_hash(left, right),
            MapNode::Leaf { key, value } => leaf_hash(key, value),
        }
    }
}

fn leaf_hash(key: &Hash256, value: &Hash256) -> Hash256 {
    sha256(&[&[0x02], &key.0, &value.0])
}

fn internal_hash(left: &Hash256, right: &Hash256) -> Hash256 {
    sha256(&[&[0x03], &left.0, &right.0])
}

/// Bit `i` of `key`, most significant first.
fn bit(key: &Hash256, i: u16) -> bool {
    let i = usize::from(i);
    (key.0[i / 8] >> (7 - i % 8)) & 1 == 1
}

fn with_bit(prefix: &Hash256, i: u16) -> Hash256 {
    let mut p = *prefix;
    let i = usize::from(i);
    p.0[i / 8] |= 1 << (7 - i % 8);
    p
}

/// The first `depth` bits of `key`, the rest zero: a node's path.
pub fn prefix_of(key: &Hash256, depth: u16) -> Hash256 {
    let mut p = Hash256([0; 32]);
    for i in 0..depth.min(MAX_DEPTH) {
        if bit(key, i) {
            p = with_bit(&p, i);
        }
    }
    p
}

/// Map nodes, as the caller stores them.
pub trait MapNodes {
    /// A store error.
    type Error;
    /// The node at `depth` on path `prefix` as of `version`: the last one written at a
    /// version ≤ `version`, `None` if none (an empty subtree).
    fn map_node(
        &self,
        depth: u16,
        prefix: &Hash256,
        version: u64,
    ) -> Result<Option<MapNode>, Self::Error>;
}

/// Why the map could not be read or updated.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapError<E> {
    /// The store failed.
    #[error("map store: {0:?}")]
    Store(E),
    /// The stored nodes do not form a tree (a store bug or corruption).
    #[error("map is corrupt: {0}")]
    Corrupt(String),
}

/// A node to store at the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapWrite {
    /// Depth (0 = root).
    pub depth: u16,
    /// Path.
    pub prefix: Hash256,
    /// The node.
    pub node: MapNode,
}

/// The root of the map as of `version`.
pub fn map_root<N: MapNodes>(nodes: &N, version: u64) -> Result<Hash256, MapError<N::Error>> {
    Ok(nodes
        .map_node(0, &EMPTY, version)
        .map_err(MapError::Store)?
        .map_or(EMPTY, |n| n.hash()))
}

/// What happens to one key's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueUpdate {
    /// It becomes this value.
    Set(Hash256),
    /// Records at these positions (in log order) now name the key too: their positions
    /// are chained onto its value ([`value_after`]).
    Append(Vec<u64>),
}

impl ValueUpdate {
    fn apply(&self, old: Option<Hash256>) -> Hash256 {
        match self {
            ValueUpdate::Set(v) => *v,
            ValueUpdate::Append(seqs) => seqs
                .iter()
                .fold(old, |acc, seq| Some(value_after(acc, *seq)))
                .unwrap_or(EMPTY),
        }
    }
}

/// A key on its way down the tree: its final value, or the update to apply to the value
/// it has now (known only where its path ends).
#[derive(Clone, Copy)]
enum Pending<'a> {
    Resolved(Hash256),
    Apply(&'a ValueUpdate),
}

impl Pending<'_> {
    fn value(self, old: Option<Hash256>) -> Hash256 {
        match self {
            Pending::Resolved(v) => v,
            Pending::Apply(u) => u.apply(old),
        }
    }
}

/// Applies `changes` (sorted by key, as a `BTreeMap` gives them) to the map as of
/// `version`; returns the new root and the nodes to store under the new version. Each
/// key's path is walked once, and the value it had is read where the walk ends, so work
/// is O(changes × depth) and untouched subtrees are not read.
pub fn map_update<N: MapNodes>(
    nodes: &N,
    version: u64,
    changes: &std::collections::BTreeMap<Hash256, ValueUpdate>,
) -> Result<(Hash256, Vec<MapWrite>), MapError<N::Error>> {
    let items: Vec<(Hash256, Pending<'_>)> = changes
        .iter()
        .map(|(k, u)| (*k, Pending::Apply(u)))
        .collect();
    let root = nodes
        .map_node(0, &EMPTY, version)
        .map_err(MapError::Store)?;
    if items.is_empty() {
        return Ok((root.map_or(EMPTY, |n| n.hash()), Vec::new()));
    }
    let mut writes = Vec::new();
    let hash = update(nodes, version, 0, EMPTY, root, &items, &mut writes)?;
    Ok((hash, writes))
}

fn update<N: MapNodes>(
    nodes: &N,
    version: u64,
    depth: u16,
    prefix: Hash256,
    current: Option<MapNode>,
    changes: &[(Hash256, Pending<'_>)],
    writes: &mut Vec<MapWrite>,
) -> Result<Hash256, MapError<N::Error>> {
    // The keys this subtree holds afterwards, when it has no internal node now.
    let mut merged: Vec<(Hash256, Pending<'_>)>;
    let (children, changes) = match current {
        Some(MapNode::Internal { left, right }) => ((left, right), changes),
        Some(MapNode::Leaf { key, value }) => {
            // The one key here meets the changes: its value is known now.
            merged = changes.to_vec();
            match merged.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(at) => {
                    let resolved = merged[at].1.value(Some(value));
                    merged[at].1 = Pending::Resolved(resolved);
                }
                Err(at) => merged.insert(at, (key, Pending::Resolved(value))),
            }
            if let [(key, pending)] = merged.as_slice() {
                return Ok(put_leaf(depth, prefix, *key, pending.value(None), writes));
            }
            ((EMPTY, EMPTY), merged.as_slice())
        }
        None => {
            if let [(key, pending)] = changes {
                return Ok(put_leaf(depth, prefix, *key, pending.value(None), writes));
            }
            ((EMPTY, EMPTY), changes)
        }
    };
    if depth >= MAX_DEPTH {
        return Err(MapError::Corrupt(
            "two keys share all 256 bits (duplicate key)".into(),
        ));
    }
    // Sorted keys sharing `prefix`: those with bit `depth` clear come first.
    let split = changes.partition_point(|(k, _)| !bit(k, depth));
    let (left_changes, right_changes) = changes.split_at(split);
    let (left, right) = children;
    let left = update_side(
        nodes,
        version,
        depth + 1,
        prefix,
        left,
        left_changes,
        writes,
    )?;
    let right_prefix = with_bit(&prefix, depth);
    let right = update_side(
        nodes,
        version,
        depth + 1,
        right_prefix,
        right,
        right_changes,
        writes,
    )?;
    let node = MapNode::Internal { left, right };
    writes.push(MapWrite {
        depth,
        prefix,
        node,
    });
    Ok(node.hash())
}

/// One side of an internal node: unchanged (its stored hash), or read and updated.
fn update_side<N: MapNodes>(
    nodes: &N,
    version: u64,
    depth: u16,
    prefix: Hash256,
    stored: Hash256,
    changes: &[(Hash256, Pending<'_>)],
    writes: &mut Vec<MapWrite>,
) -> Result<Hash256, MapError<N::Error>> {
    if changes.is_empty() {
        return Ok(stored);
    }
    let current = if stored == EMPTY {
        None
    } else {
        let node = nodes
            .map_node(depth, &prefix, version)
            .map_err(MapError::Store)?;
        if node.is_none() {
            return Err(MapError::Corrupt(format!(
                "a node at depth {depth} its parent names is missing"
            )));
        }
        node
    };
    update(nodes, version, depth, prefix, current, changes, writes)
}

fn put_leaf(
    depth: u16,
    prefix: Hash256,
    key: Hash256,
    value: Hash256,
    writes: &mut Vec<MapWrite>,
) -> Hash256 {
    let node = MapNode::Leaf { key, value };
    writes.push(MapWrite {
        depth,
        prefix,
        node,
    });
    node.hash()
}

/// What `key` maps to as of `version` (a walk down its path, no siblings read).
pub fn map_get<N: MapNodes>(
    nodes: &N,
    version: u64,
    key: &Hash256,
) -> Result<Option<Hash256>, MapError<N::Error>> {
    let mut depth = 0u16;
    let mut prefix = EMPTY;
    loop {
        match nodes
            .map_node(depth, &prefix, version)
            .map_err(MapError::Store)?
        {
            None => return Ok(None),
            Some(MapNode::Leaf { key: k, value }) => return Ok((k == *key).then_some(value)),
            Some(MapNode::Internal { left, right }) => {
                if depth >= MAX_DEPTH {
                    return Err(MapError::Corrupt("internal node below depth 255".into()));
                }
                let next = if bit(key, depth) {
                    prefix = with_bit(&prefix, depth);
                    right
                } else {
                    left
                };
                if next == EMPTY {
                    return Ok(None);
                }
                depth += 1;
            }
        }
    }
}

/// What a run of records does to a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapChanges {
    /// Per key, the positions that now name it, in log order.
    pub updates: std::collections::BTreeMap<Hash256, ValueUpdate>,
    /// Each (key, position) pair the run adds for subjects, entries, evaluations and
    /// objections, in log order: what a node keeps to list a key's records when it
    /// proves them.
    pub positions: Vec<(Hash256, u64)>,
}

/// The changes a run of records makes to a map: each key a record names gets the
/// record's position chained onto its value. Records come in log order as
/// (seq, envelope, body).
pub fn changes_from<'a>(
    records: impl IntoIterator<Item = (u64, &'a Envelope, &'a Body)>,
) -> MapChanges {
    let mut out = MapChanges::default();
    for (seq, envelope, body) in records {
        for named in keys_named(envelope, body) {
            let key = map_key(&named);
            // Positions are kept for what proven answers follow; an action's records
            // change no measure's applicability beyond its initiation (indexed under
            // its entry), so action keys are left out.
            if !matches!(named, Indexed::Action(_)) {
                out.positions.push((key, seq));
            }
            match out
                .updates
                .entry(key)
                .or_insert_with(|| ValueUpdate::Append(Vec::new()))
            {
                ValueUpdate::Append(seqs) => seqs.push(seq),
                ValueUpdate::Set(_) => {}
            }
        }
    }
    out
}

/// A proof of what one key maps to: the sibling hashes from the root down, and where
/// the key's path ends — at an empty subtree, at the key's own leaf, or at another
/// key's leaf (which shows the key is absent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapProof {
    /// Sibling hashes, root level first.
    pub siblings: Vec<Hash256>,
    /// The leaf the path ends at (`None`: an empty subtree).
    pub leaf: Option<(Hash256, Hash256)>,
}

/// Why a map proof does not verify.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapProofError {
    /// Longer than any path.
    #[error("map proof: {0} siblings, at most 256")]
    TooLong(usize),
    /// The leaf shown is for another key that is not on this key's path.
    #[error("map proof: the leaf shown is not on the key's path")]
    OffPath,
    /// The hashes do not lead to the root.
    #[error("map proof: does not lead to the map root")]
    WrongRoot,
}

/// The proof for `key` as of `version`.
pub fn map_proof<N: MapNodes>(
    nodes: &N,
    version: u64,
    key: &Hash256,
) -> Result<MapProof, MapError<N::Error>> {
    let mut siblings = Vec::new();
    let mut depth = 0u16;
    let mut prefix = EMPTY;
    let mut node = nodes
        .map_node(0, &prefix, version)
        .map_err(MapError::Store)?;
    loop {
        match node {
            None => {
                return Ok(MapProof {
                    siblings,
                    leaf: None,
                });
            }
            Some(MapNode::Leaf { key, value }) => {
                return Ok(MapProof {
                    siblings,
                    leaf: Some((key, value)),
                });
            }
            Some(MapNode::Internal { left, right }) => {
                if depth >= MAX_DEPTH {
                    return Err(MapError::Corrupt("internal node below depth 255".into()));
                }
                let (next, next_hash, sibling) = if bit(key, depth) {
                    (with_bit(&prefix, depth), right, left)
                } else {
                    (prefix, left, right)
                };
                siblings.push(sibling);
                node = if next_hash == EMPTY {
                    None
                } else {
                    nodes
                        .map_node(depth + 1, &next, version)
                        .map_err(MapError::Store)?
                };
                prefix = next;
                depth += 1;
            }
        }
    }
}

/// Checks `proof` for `key` against `root`: `Ok(Some(value))` if the key maps to
/// `value`, `Ok(None)` if the map has nothing for the key.
pub fn verify_map_proof(
    root: &Hash256,
    key: &Hash256,
    proof: &MapProof,
) -> Result<Option<Hash256>, MapProofError> {
    let depth = proof.siblings.len();
    if depth > usize::from(MAX_DEPTH) {
        return Err(MapProofError::TooLong(depth));
    }
    let (mut hash, found) = match proof.leaf {
        None => (EMPTY, None),
        Some((leaf_key, value)) => {
            // Another key's leaf proves absence only if it sits on this key's path: the
            // subtree at that path then holds that one key and nothing else.
            if (0..depth as u16).any(|i| bit(&leaf_key, i) != bit(key, i)) {
                return Err(MapProofError::OffPath);
            }
            let found = (leaf_key == *key).then_some(value);
            (leaf_hash(&leaf_key, &value), found)
        }
    };
    for (i, sibling) in proof.siblings.iter().enumerate().rev() {
        hash = if bit(key, i as u16) {
            internal_hash(sibling, &hash)
        } else {
            internal_hash(&hash, sibling)
        };
    }
    if hash == *root {
        Ok(found)
    } else {
        Err(MapProofError::WrongRoot)
    }
}

impl MapProof {
    /// Compact bytes: sibling count (u16 BE), siblings, then 0 or 1 and the leaf's key
    /// and value. 2 + 32·d + 1 (+ 64) bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + 32 * self.siblings.len() + 64);
        out.extend_from_slice(&(self.siblings.len() as u16).to_be_bytes());
        for s in &self.siblings {
            out.extend_from_slice(&s.0);
        }
        match &self.leaf {
            None => out.push(0),
            Some((k, v)) => {
                out.push(1);
                out.extend_from_slice(&k.0);
                out.extend_from_slice(&v.0);
            }
        }
        out
    }

    /// Parses [`MapProof::encode`]'s bytes; the whole buffer must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<MapProof, String> {
        let take32 = |b: &[u8], at: usize| -> Option<Hash256> {
            b.get(at..at + 32)
                .and_then(|s| <[u8; 32]>::try_from(s).ok())
                .map(Hash256)
        };
        let n = bytes
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or("map proof: shorter than its length field")?;
        if n > usize::from(MAX_DEPTH) {
            return Err(format!("map proof: {n} siblings, at most 256"));
        }
        let mut siblings = Vec::with_capacity(n);
        for i in 0..n {
            siblings.push(take32(bytes, 2 + 32 * i).ok_or("map proof: truncated sibling")?);
        }
        let at = 2 + 32 * n;
        let (leaf, end) = match bytes.get(at) {
            Some(0) => (None, at + 1),
            Some(1) => {
                let k = take32(bytes, at + 1).ok_or("map proof: truncated leaf key")?;
                let v = take32(bytes, at + 33).ok_or("map proof: truncated leaf value")?;
                (Some((k, v)), at + 65)
            }
            Some(t) => return Err(format!("map proof: leaf tag {t}, expected 0 or 1")),
            None => return Err("map proof: no leaf tag".into()),
        };
        if end != bytes.len() {
            return Err(format!(
                "map proof: {} trailing bytes",
                bytes.len().saturating_sub(end)
            ));
        }
        Ok(MapProof { siblings, leaf })
    }
}

/// A versioned map held in memory, for tests, benchmarks and offline tools.
#[derive(Debug, Clone, Default)]
pub struct MemoryMap {
    nodes: std::collections::BTreeMap<(u16, Hash256, u64), MapNode>,
}

impl MemoryMap {
    /// Stores `writes` under `version`.
    pub fn write(&mut self, version: u64, writes: &[MapWrite]) {
        for w in writes {
            self.nodes.insert((w.depth, w.prefix, version), w.node);
        }
    }

    /// Applies `changes` at `version` (reading the latest state) and returns the root.
    pub fn apply(
        &mut self,
        version: u64,
        changes: &std::collections::BTreeMap<Hash256, Hash256>,
    ) -> Result<Hash256, MapError<std::convert::Infallible>> {
        let updates = changes
            .iter()
            .map(|(k, v)| (*k, ValueUpdate::Set(*v)))
            .collect();
        self.apply_updates(version, &updates)
    }

    /// Applies `updates` at `version` (reading the latest state) and returns the root.
    pub fn apply_updates(
        &mut self,
        version: u64,
        updates: &std::collections::BTreeMap<Hash256, ValueUpdate>,
    ) -> Result<Hash256, MapError<std::convert::Infallible>> {
        let (root, writes) = map_update(self, version, updates)?;
        self.write(version, &writes);
        Ok(root)
    }

    /// Nodes held (all versions).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl MapNodes for MemoryMap {
    type Error = std::convert::Infallible;
    fn map_node(
        &self,
        depth: u16,
        prefix: &Hash256,
        version: u64,
    ) -> Result<Option<MapNode>, Self::Error> {
        Ok(self
            .nodes
            .range((depth, *prefix, 0)..=(depth, *prefix, version))
            .next_back()
            .map(|(_, n)| *n))
    }
}

/// The root of a map holding exactly `entries`, computed from scratch (the definition
/// the incremental [`map_update`] must agree with).
pub fn reference_root(entries: &std::collections::BTreeMap<Hash256, Hash256>) -> Hash256 {
    fn subtree(depth: u16, entries: &[(Hash256, Hash256)]) -> Hash256 {
        match entries {
            [] => EMPTY,
            [(k, v)] => leaf_hash(k, v),
            _ => {
                let split = entries.partition_point(|(k, _)| !bit(k, depth));
                let (l, r) = entries.split_at(split);
                internal_hash(&subtree(depth + 1, l), &subtree(depth + 1, r))
            }
        }
    }
    let v: Vec<_> = entries.iter().map(|(k, v)| (*k, *v)).collect();
    subtree(0, &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn k(i: u64) -> Hash256 {
        sha256(&[b"test key", &i.to_be_bytes()])
    }

    fn v(i: u64) -> Hash256 {
        value_after(None, i)
    }

    #[test]
    fn empty_map_root_is_zero_and_proves_absence() {
        let m = MemoryMap::default();
        assert_eq!(map_root(&m, 5).unwrap(), EMPTY);
        let p = map_proof(&m, 5, &k(1)).unwrap();
        assert_eq!(p.siblings.len(), 0);
        assert_eq!(verify_map_proof(&EMPTY, &k(1), &p), Ok(None));
    }

    /// Pinned: a change of hashing or shape is a format change for every checkpoint.
    #[test]
    fn known_answer_root_of_three_keys() {
        let mut m = MemoryMap::default();
        let changes: BTreeMap<_, _> = (1..=3).map(|i| (k(i), v(i))).collect();
        let root = m.apply(1, &changes).unwrap();
        assert_eq!(root, reference_root(&changes));
        assert_eq!(
            root.to_hex(),
            "26520022f56b46cf5dad7990cb89cabc38b4509be85f898aca1a0c7c33399808"
        );
    }

    /// Appending positions to a key chains them onto the value it had, read where the
    /// key's path ends: the same as setting the chained value directly.
    #[test]
    fn appended_positions_chain_onto_the_old_value() {
        let mut m = MemoryMap::default();
        let base: BTreeMap<_, _> = (0..50)
            .map(|i| (k(i), value_of(&[i + 1]).unwrap()))
            .collect();
        m.apply(1, &base).unwrap();
        let updates: BTreeMap<_, _> = [
            (k(7), ValueUpdate::Append(vec![60, 61])),
            (k(900), ValueUpdate::Append(vec![62])),
        ]
        .into_iter()
        .collect();
        let root = m.apply_updates(2, &updates).unwrap();
        let mut expected = base.clone();
        expected.insert(k(7), value_of(&[8, 60, 61]).unwrap());
        expected.insert(k(900), value_of(&[62]).unwrap());
        assert_eq!(root, reference_root(&expected));
        assert_eq!(map_get(&m, 2, &k(7)).unwrap(), value_of(&[8, 60, 61]));
        assert_eq!(map_get(&m, 1, &k(7)).unwrap(), value_of(&[8]));
    }

    #[test]
    fn value_chain_is_order_sensitive() {
        assert_ne!(value_of(&[1, 2]), value_of(&[2, 1]));
        assert_eq!(value_of(&[]), None);
        assert_eq!(value_of(&[7]), Some(value_after(None, 7)));
    }

    #[test]
    fn off_path_leaf_is_refused() {
        let mut m = MemoryMap::default();
        let changes: BTreeMap<_, _> = (1..=64).map(|i| (k(i), v(i))).collect();
        let root = m.apply(1, &changes).unwrap();
        let absent = k(1000);
        let mut p = map_proof(&m, 1, &absent).unwrap();
        assert_eq!(verify_map_proof(&root, &absent, &p), Ok(None));
        // Present a leaf from elsewhere in the tree as the end of the path.
        let elsewhere = (1..=64)
            .map(k)
            .find(|x| bit(x, 0) != bit(&absent, 0))
            .unwrap();
        p.leaf = Some((elsewhere, v(0)));
        assert!(verify_map_proof(&root, &absent, &p).is_err());
    }

    #[test]
    fn decode_refuses_trailing_and_truncated_bytes() {
        let p = MapProof {
            siblings: vec![k(1), k(2)],
            leaf: Some((k(3), v(3))),
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), 2 + 64 + 1 + 64);
        assert_eq!(MapProof::decode(&bytes).unwrap(), p);
        let mut long = bytes.clone();
        long.push(0);
        assert!(MapProof::decode(&long).unwrap_err().contains("trailing"));
        assert!(MapProof::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut huge = vec![0x01, 0x01];
        huge.extend(std::iter::repeat_n(0, 32 * 257 + 1));
        assert!(MapProof::decode(&huge).unwrap_err().contains("at most 256"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Incremental updates in batches agree with the from-scratch definition at
        /// every version; every key proves its value, every other key its absence, at
        /// the current and at every earlier version.
        #[test]
        fn incremental_map_matches_reference_and_proves(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u64..200, 0u64..1000), 1..20), 1..6)
        ) {
            let mut m = MemoryMap::default();
            let mut contents: BTreeMap<Hash256, Hash256> = BTreeMap::new();
            let mut history = Vec::new();
            for (i, batch) in batches.iter().enumerate() {
                let version = (i as u64 + 1) * 10;
                let changes: BTreeMap<_, _> = batch.iter().map(|(a, b)| (k(*a), v(*b))).collect();
                contents.extend(changes.iter().map(|(a, b)| (*a, *b)));
                let root = m.apply(version, &changes).unwrap();
                prop_assert_eq!(root, reference_root(&contents));
                prop_assert_eq!(map_root(&m, version).unwrap(), root);
                history.push((version, root, contents.clone()));
            }
            for (version, root, contents) in &history {
                for probe in 0u64..210 {
                    let key = k(probe);
                    let proof = map_proof(&m, *version, &key).unwrap();
                    let got = verify_map_proof(root, &key, &proof).unwrap();
                    prop_assert_eq!(got, contents.get(&key).copied());
                    let decoded = MapProof::decode(&proof.encode()).unwrap();
                    prop_assert_eq!(&decoded, &proof);
                }
            }
        }

        /// Any change to a valid proof — a sibling bit, the leaf, a sibling dropped or
        /// added — fails, or still proves exactly the truth (never a different answer).
        #[test]
        fn tampered_map_proofs_never_prove_a_lie(
            n in 2u64..80, probe in 0u64..100, which in 0usize..64, flip in 0u8..8, mode in 0u8..4
        ) {
            let mut m = MemoryMap::default();
            let changes: BTreeMap<_, _> = (0..n).map(|i| (k(i), v(i))).collect();
            let root = m.apply(1, &changes).unwrap();
            let key = k(probe);
            let truth = changes.get(&key).copied();
            let mut p = map_proof(&m, 1, &key).unwrap();
            match mode {
                0 if !p.siblings.is_empty() => {
                    let i = which % p.siblings.len();
                    p.siblings[i].0[usize::from(flip) * 4] ^= 1 << flip;
                }
                1 => match &mut p.leaf {
                    Some((_, val)) => val.0[0] ^= 1,
                    None => p.leaf = Some((key, v(0))),
                },
                2 if !p.siblings.is_empty() => { p.siblings.pop(); }
                _ => p.siblings.insert(0, EMPTY),
            }
            match verify_map_proof(&root, &key, &p) {
                Err(_) => {}
                Ok(claim) => prop_assert_eq!(claim, truth),
            }
        }
    }
}

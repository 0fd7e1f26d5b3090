//! Durable state: every region's log and the folds over it, in one ordered key-value
//! table of the store engine ([`kv`]: sled, the embedded default, or redb).
//!
//! Why one table with key prefixes: an admitted envelope and every state change it
//! causes (docs/design.md §6, "one atomic step") go into a single batch, which both
//! engines apply atomically. Several tables would add nothing but transactions across
//! them.
//!
//! Why an explicit fsync: sled 0.34's `flush` ends in `sync_file_range` (sled issue 1452),
//! which neither flushes the drive's write cache nor file metadata, and blob files are
//! written without any sync. [`Store::sync`] flushes and then `fsync`s the data file and
//! every blob file (on redb: a commit with immediate durability); a write is
//! acknowledged only after it returns.
//!
//! Key layout (all integers big-endian so that the engine's order is numeric order):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `M` | `format` | u32 LE on-disk format version |
//! | `L` | region u32, seq u64 | envelope bytes, verbatim |
//! | `H` | region u32 | `Head` |
//! | `D` | department id text | `DepartmentRecord` |
//! | `E` | entry id | `StoredEntry`: the `EntryFold` without its content, which the envelope it names carries |
//! | `A` | action id | `ActionFold` |
//! | `O` | objection id | `ObjectionTarget` (an entry or an evaluation) |
//! | `V` | evaluation id | `EvaluationFold` |
//! | `F` | commitment id | `CommitmentFold` (article 四) |
//! | `B` | disclosure id | `DisclosureFold` (双公示, article 十七) |
//! | `c` | day u32, domain name, 0, department text | u64 LE: checks this node answered for that department in that domain that day (local, not replicated; reports) |
//! | `S` | u16 len, SubjectKey, SubjectRef | empty: the subject index, for subjects whose marker is empty |
//! | `s` | u16 len, SubjectKey (something was indexed for the subject: a point read that answers most checks) | the subject's references in key order, at most [`SUBJECT_MARKER_REFS_MAX`] ([`subject_marker_value`]), and no `S` keys; empty: the references are the `S` keys (past the cap, or written by format 11) |
//! | `Q` | region u32 | empty: region flagged for equivocation |
//! | `P` | region u32, seq u64 | `EquivocationProof` |
//! | `R` | region u32, seq u64 | i64 LE: when this node applied it (local, not replicated) |
//! | `T` | region u32 | `Frontier`: the region's Merkle tree size and peaks |
//! | `N` | region u32, level u8, index u64 | 32-byte hash of a complete subtree of that tree, from level 4 up |
//! | `W` | region u32 | `WitnessView`: the largest checkpoint of the region this node cosigned |
//! | `C` | region u32 | the latest witnessed checkpoint of the region held (C2SP note text) |
//! | `X` | region u32 | a witnessed checkpoint of the region that contradicts this replica (split-view evidence) |
//! | `Y` | region u32 | a checkpoint the region's node signed that contradicts this replica (fork evidence) |
//! | `I` | region u32, band depth u16, path (the ⌈depth/8⌉ bytes it uses), version u64 | `MapPage`: four levels of the region's verifiable map under that path, as of that version (log size) |
//! | `J` | region u32, version u64 | 32-byte map root at that version |
//! | `U` | region u32, version u64 | `VersionRecord`: when that map version was computed and the pages it wrote (what pruning reads) |
//! | `K` | region u32, map key (32 bytes), seq u64 | empty: the record at seq names that key (subjects, entries, evaluations, objections), for every position but the key's first, which its leaf carries |
//! | `G` | region u32, from day u32 (days since 1970 + 2^31), task (kind u8, the id's first 8 bytes) | the task's whole id (empty if written by format 11 or earlier): the region has something to do on the action or objection from that day (the inbox's index, `credfed_protocol::inbox`; local, derived; a record's update names the day it held and the day it holds) |
//! | `Zd` | kind u8 (`e` entry, `v` evaluation, `a` action), region u32, day u32, the id's first 8 bytes | empty: listings by region and date (decision, evaluation, initiation) |
//! | `Zn` | kind u8, two characters of the subject's normalised name (2 × u32) but the legal form's, the id's first 8 bytes | empty: name search (`credfed_protocol::listing`) |
//! | `r` | region u32 (the node's own) | the backup the store was restored from, until a member confirmed the own log ([`NOTE_RESTORED`]; empty once confirmed) |
//! | `m` | region u32 (the node's own) | `VERSION HASH` of the highest manifest the node has run on ([`NOTE_MANIFEST`]) |
//! | `g` | region u32 (the node's own) | how many times the node has started on this store ([`NOTE_RUNS`]) |
//!
//! The verifiable map (`I`, `J`) is derived from the log and computed when a checkpoint
//! needs it (docs/protocol.md, "Verifiable map"): a store without it — an older store,
//! or one whose map writes were lost in a crash — recomputes it from the log.
//!
//! The Merkle tree (docs/protocol.md, "Merkle trees and checkpoints") is written in the
//! same batch as the envelope it covers, so the tree and the log never disagree.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use credfed_protocol::codec;
use credfed_protocol::crypto::Hash256;
use credfed_protocol::envelope::{Envelope, GENESIS_PREV_HASH, decode_envelope, envelope_hash};
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::inbox::TaskRef;
use credfed_protocol::ledger::{
    DepartmentRecord, EquivocationProof, Head, StateView, SubjectRef, Update,
};
use credfed_protocol::limits::MAX_ENVELOPE_BYTES;
use credfed_protocol::listing::{ListingKind, name_grams, subject_name};
use credfed_protocol::merkle::{Frontier, leaf_hash, node_hash};
use credfed_protocol::record::{
    ActionId, Body, CommitmentId, DisclosureId, EntryId, EvaluationId, ListEntry, ObjectionId,
    ObjectionTarget, RepairApplicationId, RepairBasis, SubjectKey,
};
use credfed_protocol::state::{
    ActionFold, CommitmentFold, DisclosureFold, EntryFold, EvaluationFold, RecordPos,
};
use credfed_protocol::state::{ObjectionStatus, Origin, RepairApplicationStatus};
use credfed_protocol::time::Date;
use credfed_protocol::witness::WitnessView;
use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// On-disk format written by this build. Bump with a migration in [`migrate`].
pub const FORMAT_VERSION: u32 = 12;

/// The lowest level of a region's Merkle tree that is stored. Nodes below it are
/// hashed again from the envelopes when a proof needs them — at most eight envelopes
/// for a level-3 node — instead of being kept: levels 0 to 3 are fifteen of every
/// sixteen tree nodes (about 86 of the 92 bytes per record the tree took), and the
/// envelopes they hash are in the store anyway.
pub const STORED_TREE_LEVEL: u8 = 4;

/// Largest stored fold. Folds grow with the records touching them (objections, actions);
/// 16 MiB is far beyond any real entry and stops a corrupt length from allocating more.
const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption it detected).
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// redb or fjall reported an error (I/O, corruption it detected).
    #[error("store: {0}")]
    Engine(String),
    /// A filesystem call failed.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// Another process holds the store open.
    #[error(
        "store {0} is in use by another process: is a node already running on this data directory? Stop it first (credfed-node status shows it)"
    )]
    InUse(String),
    /// Stored data fails a check: the node must not serve it.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The data directory was written by a newer build.
    #[error(
        "store format {found} is newer than this build's {FORMAT_VERSION}; run a newer credfed-node"
    )]
    NewerFormat {
        /// Version on disk.
        found: u32,
    },
}

/// What the node needs from durable storage. [`Store`] (sled) is the embedded default;
/// [`faulty::FaultyStore`] wraps any backend to fail or stall on demand (tests, benches);
/// a second backend (e.g. redb, which fsyncs per commit) implements this trait.
///
/// Only the engine's writer thread calls the mutating methods; reads come from any thread.
pub trait Backend: StateView<Error = StoreError> + Send + Sync {
    /// Applies one admitted envelope's updates atomically.
    fn apply(&self, updates: &[Update]) -> Result<(), StoreError>;
    /// Makes everything applied so far durable (a real fsync).
    fn sync(&self) -> Result<(), StoreError>;
    /// Closes the engine and opens it again after a failed write (its cause gone):
    /// writes applied and not yet durable may be lost, whole batches at a time, so the
    /// caller reads the heads again afterwards.
    fn reopen(&self) -> Result<(), StoreError>;
    /// Writes `bytes` into a scratch file beside the engine's files, syncs and removes
    /// it: whether the disk takes writes again.
    fn probe_writable(&self, bytes: usize) -> Result<(), StoreError>;
    /// Every region's head.
    fn heads(&self) -> Result<BTreeMap<RegionCode, Head>, StoreError>;
    /// Up to `limit` envelopes of `region` from `from_seq`, stopping at `max_bytes`.
    fn range(
        &self,
        region: RegionCode,
        from_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Keeps an equivocation proof and flags the region.
    fn record_equivocation(&self, proof: &EquivocationProof) -> Result<(), StoreError>;
    /// Re-walks every chain (start-up check).
    fn verify_chains(
        &self,
        federation_id: &str,
        progress: &mut dyn FnMut(RegionCode, u64),
    ) -> Result<ChainReport, StoreError>;
    /// Bytes on disk.
    fn size_on_disk(&self) -> u64;
    /// The engine's page cache: its budget and what it holds.
    fn cache_usage(&self) -> CacheUsage;
    /// All entry folds (statistics).
    fn all_entries(&self) -> Box<dyn Iterator<Item = Result<EntryFold, StoreError>> + '_>;
    /// All action folds (statistics).
    fn all_actions(&self) -> Box<dyn Iterator<Item = Result<ActionFold, StoreError>> + '_>;
    /// All commitment folds (reports).
    fn all_commitments(&self) -> Box<dyn Iterator<Item = Result<CommitmentFold, StoreError>> + '_>;
    /// All disclosed decisions (reports).
    fn all_disclosures(&self) -> Box<dyn Iterator<Item = Result<DisclosureFold, StoreError>> + '_>;
    /// Every registered department (including revoked ones).
    fn all_departments(
        &self,
    ) -> Box<dyn Iterator<Item = Result<DepartmentRecord, StoreError>> + '_>;
    /// Remembers when this node applied the envelope at `pos` (node clock, ms): what
    /// drills use to measure propagation. Not part of the replicated state, so a failure
    /// only loses a measurement.
    fn note_received(&self, pos: RecordPos, at_ms: i64);
    /// When this node applied the envelope at `pos`.
    fn received_at(&self, pos: RecordPos) -> Result<Option<i64>, StoreError>;
    /// Adds to the counts of checks answered (day, domain name, department). Local
    /// figures for reports, never replicated.
    fn add_check_counts(&self, counts: &BTreeMap<CheckCountKey, u64>) -> Result<(), StoreError>;
    /// The counts of checks answered from `from` to `to` (both included).
    fn check_counts(
        &self,
        from: Date,
        to: Date,
    ) -> Result<BTreeMap<CheckCountKey, u64>, StoreError>;
    /// Equivocation proofs held.
    fn proofs(&self) -> Result<Vec<EquivocationProof>, StoreError>;
    /// Up to `limit` ids of records of `kind` (`b'E'` entries, `b'A'` actions, `b'V'`
    /// evaluations, `b'O'` objections) whose lower-case hex starts with `hex`: what
    /// resolves an id given by a unique prefix. Reads only the keys under the prefix.
    fn ids_with_prefix(
        &self,
        kind: u8,
        hex: &str,
        limit: usize,
    ) -> Result<Vec<Hash256>, StoreError>;
    /// Keys of a listing index between `lo` and `hi` (both included; see
    /// [`listing_range_by_date`], [`listing_range_by_gram`]), newest first when
    /// `descending`, continuing after the key `after` (a cursor): at most `limit`, and
    /// whether more remain.
    fn listing_keys(
        &self,
        lo: &[u8],
        hi: &[u8],
        after: Option<&[u8]>,
        descending: bool,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError>;
    /// `region`'s attention marks due by `today` (the inbox's index,
    /// `credfed_protocol::inbox`), oldest first: at most `limit`, and whether more
    /// were due. Reads only those marks, never the whole store.
    fn marks_due(
        &self,
        region: RegionCode,
        today: Date,
        limit: usize,
    ) -> Result<(Vec<(TaskRef, Date)>, bool), StoreError>;
    /// The region's Merkle tree: its size and peaks (empty for a region without records).
    fn tree_frontier(&self, region: RegionCode) -> Result<Frontier, StoreError>;
    /// The hash of a complete subtree of the region's tree, if the tree has it.
    fn tree_node(
        &self,
        region: RegionCode,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash256>, StoreError>;
    /// The largest checkpoint of `region` this node has cosigned.
    fn witness_view(&self, region: RegionCode) -> Result<Option<WitnessView>, StoreError>;
    /// Records a cosigned checkpoint; durable (fsynced) when it returns, because a witness
    /// answers only after (it must never cosign two histories, even across a crash).
    fn set_witness_view(&self, region: RegionCode, view: WitnessView) -> Result<(), StoreError>;
    /// A stored note under `kind` (`b'C'` witnessed checkpoint, `b'X'` split-view
    /// evidence, `b'Y'` fork evidence).
    fn note(&self, kind: u8, region: RegionCode) -> Result<Option<String>, StoreError>;
    /// Stores a note under `kind`.
    fn set_note(&self, kind: u8, region: RegionCode, note: &str) -> Result<(), StoreError>;
    /// The region's map page `page` as of `version` (the last written at or before it).
    fn map_page(
        &self,
        region: RegionCode,
        page: &PageId,
        version: u64,
    ) -> Result<Option<MapPage>, StoreError>;
    /// The largest version at which the region's map was computed, and its root.
    fn map_latest(&self, region: RegionCode) -> Result<Option<(u64, Hash256)>, StoreError>;
    /// The map root at exactly `version`, if the map was computed there.
    fn map_root_at(&self, region: RegionCode, version: u64) -> Result<Option<Hash256>, StoreError>;
    /// Stores a new map version's changed pages (whole), its root, the (key, seq) pairs
    /// it keeps apart and when it was computed, in one batch (not fsynced: the map is
    /// derived from the log, and a lost version is recomputed).
    fn put_map_version(
        &self,
        region: RegionCode,
        version: u64,
        pages: &[(PageId, MapPage)],
        root: Hash256,
        positions: &[(Hash256, u64)],
        computed_at: u64,
    ) -> Result<(), StoreError>;
    /// How much the region's map holds: versions, page records and their bytes.
    fn map_storage(&self, region: RegionCode) -> Result<MapStorage, StoreError>;
    /// Forgets the region's map versions below the cut — `keep_from`, or the newest
    /// version computed at or before `computed_before` if that is smaller — and every
    /// page record only they could read. Versions at and above the cut read exactly
    /// what they read before. Returns the versions and page records removed.
    fn prune_map(
        &self,
        region: RegionCode,
        keep_from: u64,
        computed_before: u64,
    ) -> Result<(usize, usize), StoreError>;
    /// The positions (≤ `up_to`) of the region's records that name map key `key`.
    fn map_positions(
        &self,
        region: RegionCode,
        key: &Hash256,
        up_to: u64,
    ) -> Result<Vec<u64>, StoreError>;
}

fn map_position_key(region: RegionCode, key: &Hash256, seq: u64) -> Vec<u8> {
    let mut k = region_key(b'K', region);
    k.extend_from_slice(&key.0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A map page's key: only the path bytes its band uses (the rest are zero), so that
/// keys stay short.
fn map_page_key(region: RegionCode, page: &PageId, version: u64) -> Vec<u8> {
    let mut k = region_key(b'I', region);
    k.extend_from_slice(&page.band_depth.to_be_bytes());
    k.extend_from_slice(page.path_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn map_version_key(region: RegionCode, version: u64) -> Vec<u8> {
    let mut k = region_key(b'U', region);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The version a `J` or `U` key names (its last eight bytes).
fn version_in(key: &[u8], region: RegionCode) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("{region}: map version key")))
}

fn map_root_key(region: RegionCode, version: u64) -> Vec<u8> {
    let mut k = region_key(b'J', region);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn hash_value(v: &[u8], what: &str) -> Result<Hash256, StoreError> {
    Ok(Hash256(v.try_into().map_err(|_| {
        StoreError::Corrupt(format!("{what}: not 32 bytes"))
    })?))
}

pub mod faulty;
pub mod kv;
pub mod map_page;

pub use kv::Engine;
use kv::{Batch, Kv};

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The engine of a store created now (an existing store keeps its own).
    pub engine: Engine,
    /// The engine's page cache, bytes.
    pub cache_bytes: u64,
    /// Compact the file when it opens (see [`Store::compact`]).
    pub compact: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            engine: Engine::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            compact: false,
        }
    }
}

/// The page cache of a store opened without a budget (tests, benches): 256 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

/// The page cache a node gets unless its config says otherwise: a thirty-second of the
/// machine's memory, between 64 and 512 MiB — enough for the upper levels of every
/// index of a national store, and small enough that a drill of 31 nodes on one
/// machine fits (docs/decisions.md, "Store engine").
pub fn machine_cache_bytes() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4 << 30, |kb| kb * 1024);
    (total / 32).clamp(64 << 20, 512 << 20)
}

/// What the store engine's page cache may hold and holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// The budget, bytes.
    pub budget: u64,
    /// What it holds now, if the engine says (redb and fjall do; sled does not).
    pub used: Option<u64>,
    /// Writes applied and not yet in the file, held in memory (redb; at most
    /// [`kv::PENDING_MAX_BYTES`] before they are committed, plus a commit in progress).
    pub pending_writes: Option<u64>,
}

pub use map_page::{MapPage, PageId, PageNode, VersionRecord};

/// What a region's verifiable map occupies in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapStorage {
    /// Versions kept.
    pub versions: u64,
    /// Page records kept (every version's pages that a kept version can read).
    pub page_records: u64,
    /// Their keys' and values' bytes.
    pub page_bytes: u64,
}

/// One part of the store (a key prefix): its records and their key and value bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartSize {
    /// Records under the prefix.
    pub records: u64,
    /// Their keys' and values' bytes.
    pub bytes: u64,
}

/// The node's durable store.
pub struct Store {
    kv: Kv,
    cache_budget: u64,
    /// Regions proven to have equivocated, as last read, with a generation that every
    /// new proof moves on. Every check and every cosignature asks for them, and a scan
    /// of the store costs redb a commit of the writes it holds; they change only when a
    /// proof is recorded (never removed), so a read is kept until then.
    equivocators: std::sync::Mutex<(u64, Option<Vec<RegionCode>>)>,
    /// Heads read or written so far: every check reads all members' heads (their
    /// freshness), and the only write is an append, which sets the head it applied. A
    /// read from the table replaces a cached head only if it is newer, so a read that
    /// raced an append can never put an older head back.
    heads: std::sync::RwLock<BTreeMap<RegionCode, Head>>,
    /// Departments read so far, with a generation that every write of a department (and
    /// every reopening) moves on: a read that began before such a write is not kept, so
    /// the cache never holds a record older than the table's (a revocation or a change
    /// of roles is seen by the next read). Every admission reads its author and every
    /// check the authors of its evidence, out of a few thousand departments.
    departments: std::sync::RwLock<DepartmentCache>,
}

/// The departments [`Store`] keeps between reads: at most [`DEPARTMENT_CACHE_ENTRIES`],
/// emptied when full (a federation has a few thousand departments; a flood of reads of
/// others only empties it).
#[derive(Default)]
struct DepartmentCache {
    generation: u64,
    held: std::collections::HashMap<DepartmentId, DepartmentRecord>,
}

/// Departments kept between reads: a record is a few hundred bytes, so at most about
/// 2 MiB, which sits within any cache budget (docs/decisions.md, 114).
const DEPARTMENT_CACHE_ENTRIES: usize = 4_096;

/// Every key prefix of the table above: a note kind must be none of them, or a reader of
/// that prefix meets the note (a note under `G` once broke the inbox's index).
pub const KEY_PREFIXES: &[u8] = b"MLHDEAOVFBcSsQPRTNWCXYIJUKGZrmg";

/// Note kind: restored from a backup, until a member confirms the own log.
pub const NOTE_RESTORED: u8 = b'r';
/// Note kind: the highest manifest the node has run on.
pub const NOTE_MANIFEST: u8 = b'm';
/// Note kind: starts on this store.
pub const NOTE_RUNS: u8 = b'g';

fn region_key(prefix: u8, region: RegionCode) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&region.code().to_be_bytes());
    k
}

fn pos_key(prefix: u8, pos: RecordPos) -> Vec<u8> {
    let mut k = region_key(prefix, pos.region);
    k.extend_from_slice(&pos.seq.to_be_bytes());
    k
}

/// A task's bytes in a `G` key: its kind, then the first [`LISTING_ID_BYTES`] of its id
/// (the fold is found by that prefix, as a listing's is).
fn task_bytes(task: &TaskRef) -> [u8; 1 + LISTING_ID_BYTES] {
    let (kind, id) = match task {
        TaskRef::Action(a) => (b'a', a.0.0),
        TaskRef::Objection(o) => (b'o', o.0.0),
        TaskRef::Repair(e) => (b'r', e.0.0),
        TaskRef::Commitment(c) => (b'c', c.0.0),
    };
    let mut out = [0u8; 1 + LISTING_ID_BYTES];
    out[0] = kind;
    out[1..].copy_from_slice(&id[..LISTING_ID_BYTES]);
    out
}

/// A day as a key part that sorts in date order.
fn day_bytes(day: Date) -> [u8; 4] {
    (day.days_since_epoch() as u32 ^ 0x8000_0000).to_be_bytes()
}

/// A count of checks: the day, the domain's name and the asking department's id.
pub type CheckCountKey = (Date, String, String);

fn check_count_key((day, domain, department): &CheckCountKey) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&day_bytes(*day));
    k.extend_from_slice(domain.as_bytes());
    k.push(0);
    k.extend_from_slice(department.as_bytes());
    k
}

fn day_from_bytes(bytes: [u8; 4]) -> Option<Date> {
    Date::from_days_since_epoch((u32::from_be_bytes(bytes) ^ 0x8000_0000) as i32).ok()
}

/// Bytes of a record's id a listing key ends with: 8 are unique among any store's
/// records in practice (2^64), and the fold is found by them through its id's prefix
/// (a seek, like a get); a listing key costs 19 bytes instead of 43.
pub const LISTING_ID_BYTES: usize = 8;

/// A listing key by date: `Z d kind region day id[..8]`.
fn listing_date_key(kind: ListingKind, region: RegionCode, day: Date, id: &Hash256) -> Vec<u8> {
    let mut k = vec![b'Z', b'd', kind.tag()];
    k.extend_from_slice(&region.code().to_be_bytes());
    k.extend_from_slice(&day_bytes(day));
    k.extend_from_slice(&id.0[..LISTING_ID_BYTES]);
    k
}

/// A listing key by a piece of the subject's name: `Z n kind gram id[..8]`.
fn listing_gram_key(kind: ListingKind, gram: [u32; 2], id: &Hash256) -> Vec<u8> {
    let mut k = vec![b'Z', b'n', kind.tag()];
    k.extend_from_slice(&gram[0].to_be_bytes());
    k.extend_from_slice(&gram[1].to_be_bytes());
    k.extend_from_slice(&id.0[..LISTING_ID_BYTES]);
    k
}

/// The first and last keys of a listing by region and date (both included); an open
/// end takes every date.
pub fn listing_range_by_date(
    kind: ListingKind,
    region: RegionCode,
    from: Option<Date>,
    to: Option<Date>,
) -> (Vec<u8>, Vec<u8>) {
    let mut lo = vec![b'Z', b'd', kind.tag()];
    lo.extend_from_slice(&region.code().to_be_bytes());
    let mut hi = lo.clone();
    if let Some(from) = from {
        lo.extend_from_slice(&day_bytes(from));
    }
    match to {
        Some(to) => hi.extend_from_slice(&day_bytes(to)),
        None => hi.extend_from_slice(&[0xff; 4]),
    }
    hi.extend_from_slice(&[0xff; LISTING_ID_BYTES + 1]);
    (lo, hi)
}

/// The first and last keys of a listing by one piece of a name (both included).
pub fn listing_range_by_gram(kind: ListingKind, gram: [u32; 2]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = vec![b'Z', b'n', kind.tag()];
    lo.extend_from_slice(&gram[0].to_be_bytes());
    lo.extend_from_slice(&gram[1].to_be_bytes());
    let mut hi = lo.clone();
    hi.extend_from_slice(&[0xff; LISTING_ID_BYTES + 1]);
    (lo, hi)
}

/// The id prefix a listing key ends with, as hex (what
/// [`Backend::ids_with_prefix`] resolves).
pub fn listing_key_id_prefix(key: &[u8]) -> Option<String> {
    key.len()
        .checked_sub(LISTING_ID_BYTES)
        .map(|at| hex::encode(&key[at..]))
}

/// The listing keys of an entry: its region and decision date, its name's pieces.
fn entry_listing_keys(e: &EntryFold) -> Vec<Vec<u8>> {
    let c = &e.content;
    subject_listing_keys(
        ListingKind::Entry,
        e.issuer(),
        c.basis.decided_on,
        &c.subject,
        &e.id.0,
    )
}

/// The listing keys of an evaluation: its region and date, its subject's name's pieces.
fn evaluation_listing_keys(v: &EvaluationFold) -> Vec<Vec<u8>> {
    let ev = &v.evaluation;
    subject_listing_keys(
        ListingKind::Evaluation,
        v.issuer(),
        ev.evaluated_on,
        &ev.subject,
        &v.id.0,
    )
}

/// A record's key by region and date, and one per piece of its subject's name.
fn subject_listing_keys(
    kind: ListingKind,
    region: RegionCode,
    day: Date,
    subject: &credfed_protocol::record::Subject,
    id: &Hash256,
) -> Vec<Vec<u8>> {
    let mut keys = vec![listing_date_key(kind, region, day, id)];
    keys.extend(
        name_grams(subject_name(subject))
            .into_iter()
            .map(|g| listing_gram_key(kind, g, id)),
    );
    keys
}

/// A task's whole id: the value of its mark, so that the inbox reads the task's fold by
/// a point read instead of resolving the key's id prefix by a range read. Marks written
/// before (an empty value) are resolved by their prefix, as they were.
fn task_id(task: &TaskRef) -> &[u8; 32] {
    match task {
        TaskRef::Action(a) => &a.0.0,
        TaskRef::Objection(o) => &o.0.0,
        TaskRef::Repair(e) => &e.0.0,
        TaskRef::Commitment(c) => &c.0.0,
    }
}

fn mark_key(region: RegionCode, from: Date, task: &TaskRef) -> Vec<u8> {
    let mut k = region_key(b'G', region);
    k.extend_from_slice(&day_bytes(from));
    k.extend_from_slice(&task_bytes(task));
    k
}

fn id_key(prefix: u8, id: &[u8]) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(id);
    k
}

fn subject_prefix(key: &SubjectKey) -> Vec<u8> {
    let enc = codec::encode(key).unwrap_or_default();
    let mut k = vec![b'S'];
    k.extend_from_slice(&(enc.len() as u16).to_be_bytes());
    k.extend_from_slice(&enc);
    k
}

/// The marker key of `key` ([`subject_marker_for_prefix`]).
#[cfg(test)]
fn subject_marker_key(key: &SubjectKey) -> Vec<u8> {
    subject_marker_for_prefix(&subject_prefix(key))
}

/// The subject part (`S`, length, subject) of a subject-index key; `None` if the key
/// is shorter than its length says.
fn subject_of_index_key(key: &[u8]) -> Option<&[u8]> {
    let len = key
        .get(1..3)
        .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)?;
    key.get(..3 + len)
}

/// The marker key of the subject whose index prefix (`S`, length, subject) is `prefix`:
/// written in every batch that indexes or unindexes anything for the subject, never
/// removed, its value saying where the references are ([`subject_marker_value`]). A
/// check reads it first: a point read, which an LSM store answers from its tables'
/// Bloom filters without visiting their blocks, where a range read visits every level —
/// most subjects checked have no marker (docs/performance.md, "Unlisted subjects answered
/// by a point read"), and a listed one within the cap has its references in it.
fn subject_marker_for_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k[0] = b's';
    k
}

/// The most references a subject's marker lists (format 12). A subject with more — a
/// company with dozens of evaluations — has an empty marker and its references as `S`
/// keys: every new reference rewrites the list, so the cap bounds that rewrite at about
/// two kilobytes, and subjects this busy are few.
pub const SUBJECT_MARKER_REFS_MAX: usize = 64;

/// The tag a listing marker's value begins with; an empty value lists nothing and sends
/// the reader to the `S` keys (markers of format 11, subjects past the cap).
const SUBJECT_MARKER_LIST: u8 = 1;

/// A subject marker's value for the subject's encoded references `refs` (in key order:
/// a `BTreeSet` of the bytes that follow the subject's prefix in its `S` keys): the
/// list, or empty past [`SUBJECT_MARKER_REFS_MAX`].
///
/// Why a list under the marker: a check of a listed subject read the marker and then
/// scanned the subject's `S` keys, a range read that on an LSM engine merges an
/// iterator over every level (docs/performance.md, "A listed subject answered by one
/// point read"). A listed subject has no `S` keys: the list is its index, written by
/// the writer only ([`Store::index_subject`]) from what the store held before the batch
/// and the batch's own changes in order (docs/decisions.md, 115). It must be whole: a
/// reference missing from it would answer "on no list".
fn subject_marker_value(refs: &std::collections::BTreeSet<Vec<u8>>) -> Vec<u8> {
    if refs.len() > SUBJECT_MARKER_REFS_MAX {
        return Vec::new();
    }
    let mut v = Vec::with_capacity(1 + refs.iter().map(|r| 1 + r.len()).sum::<usize>());
    v.push(SUBJECT_MARKER_LIST);
    for r in refs {
        // An encoded reference is a tag and a 32-byte id: it fits a length byte.
        debug_assert!(r.len() <= u8::MAX as usize);
        v.push(r.len() as u8);
        v.extend_from_slice(r);
    }
    v
}

/// The encoded references a subject marker's value lists, in key order; `None` for an
/// empty value (read the `S` keys). A value that is not such a list — an unknown tag, a
/// length running past its end, references out of order or past the cap — is refused
/// as corrupt, never read as fewer references.
fn subject_marker_refs(value: &[u8]) -> Result<Option<Vec<&[u8]>>, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("subject marker: {why}"));
    let Some((&tag, mut rest)) = value.split_first() else {
        return Ok(None);
    };
    if tag != SUBJECT_MARKER_LIST {
        return Err(corrupt(&format!("unknown tag {tag}")));
    }
    let mut refs: Vec<&[u8]> = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let r = tail
            .get(..len as usize)
            .ok_or_else(|| corrupt("a reference runs past the value's end"))?;
        if refs.last().is_some_and(|last| *last >= r) {
            return Err(corrupt("references out of key order"));
        }
        if refs.len() == SUBJECT_MARKER_REFS_MAX {
            return Err(corrupt("more references than a marker lists"));
        }
        refs.push(r);
        rest = &tail[len as usize..];
    }
    Ok(Some(refs))
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // The stored types are the protocol's own: encoding cannot fail.
    codec::encode(v).unwrap_or_default()
}

fn dec<T: Serialize + DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    codec::decode(bytes, MAX_VALUE_BYTES, what).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// An entry fold as the store keeps it: everything but the entry's content (the
/// subject, basis, measures — about 150 bytes), which the envelope at `content_at` —
/// the entry's publication or its latest amendment — carries already. Keeping a second
/// copy made entry folds the third largest part of the store.
///
/// `content_digest` (the first 8 bytes of the SHA-256 of the content's encoding) is
/// checked whenever the content is read back, so that a store that pointed at the wrong
/// envelope fails loudly as corrupt instead of answering with another entry's content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StoredEntry {
    id: EntryId,
    published: Origin,
    content_at: RecordPos,
    content_digest: [u8; 8],
    amendments: u32,
    revoked: Option<Origin>,
    repaired: Option<(RepairBasis, Origin)>,
    objections: std::collections::BTreeMap<ObjectionId, ObjectionStatus>,
    actions: std::collections::BTreeSet<ActionId>,
    evidence: std::collections::BTreeSet<RecordPos>,
    repairs: BTreeMap<RepairApplicationId, RepairApplicationStatus>,
}

/// Entry folds as formats up to 8 stored them, before credit-repair applications: read
/// only by the migrations that rewrite them ([`migrate`]).
mod legacy {
    use super::*;

    /// A fold as formats 1 to 5 stored it: whole, with its content.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub(super) struct EntryFoldV5 {
        pub id: EntryId,
        pub published: Origin,
        pub content: ListEntry,
        pub amendments: u32,
        pub revoked: Option<Origin>,
        pub repaired: Option<(RepairBasis, Origin)>,
        pub objections: BTreeMap<ObjectionId, ObjectionStatus>,
        pub actions: std::collections::BTreeSet<ActionId>,
        pub evidence: std::collections::BTreeSet<RecordPos>,
    }

    impl EntryFoldV5 {
        pub fn into_fold(self) -> EntryFold {
            EntryFold {
                id: self.id,
                published: self.published,
                content: self.content,
                amendments: self.amendments,
                revoked: self.revoked,
                repaired: self.repaired,
                objections: self.objections,
                repairs: BTreeMap::new(),
                actions: self.actions,
                evidence: self.evidence,
            }
        }

        #[cfg(test)]
        pub fn from_fold(f: &EntryFold) -> EntryFoldV5 {
            EntryFoldV5 {
                id: f.id,
                published: f.published.clone(),
                content: f.content.clone(),
                amendments: f.amendments,
                revoked: f.revoked.clone(),
                repaired: f.repaired.clone(),
                objections: f.objections.clone(),
                actions: f.actions.clone(),
                evidence: f.evidence.clone(),
            }
        }
    }

    /// A slimmed fold as formats 6 to 8 stored it.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub(super) struct StoredEntryV8 {
        pub id: EntryId,
        pub published: Origin,
        pub content_at: RecordPos,
        pub content_digest: [u8; 8],
        pub amendments: u32,
        pub revoked: Option<Origin>,
        pub repaired: Option<(RepairBasis, Origin)>,
        pub objections: BTreeMap<ObjectionId, ObjectionStatus>,
        pub actions: std::collections::BTreeSet<ActionId>,
        pub evidence: std::collections::BTreeSet<RecordPos>,
    }

    impl StoredEntryV8 {
        #[cfg(test)]
        pub fn from_current(e: StoredEntry) -> StoredEntryV8 {
            StoredEntryV8 {
                id: e.id,
                published: e.published,
                content_at: e.content_at,
                content_digest: e.content_digest,
                amendments: e.amendments,
                revoked: e.revoked,
                repaired: e.repaired,
                objections: e.objections,
                actions: e.actions,
                evidence: e.evidence,
            }
        }

        pub fn upgrade(self) -> StoredEntry {
            StoredEntry {
                id: self.id,
                published: self.published,
                content_at: self.content_at,
                content_digest: self.content_digest,
                amendments: self.amendments,
                revoked: self.revoked,
                repaired: self.repaired,
                objections: self.objections,
                actions: self.actions,
                evidence: self.evidence,
                repairs: BTreeMap::new(),
            }
        }
    }
}

fn content_digest(content: &ListEntry) -> [u8; 8] {
    let digest = credfed_protocol::crypto::sha256(&[&enc(content)]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.0[..8]);
    out
}

/// The list entry a record's body carries as an entry's content, if any.
fn carried_content(body: &Body) -> Option<&ListEntry> {
    match body {
        Body::ListEntryPublished(e) => Some(e),
        Body::ListEntryAmended { amended, .. } => Some(amended),
        _ => None,
    }
}

/// The body of envelope bytes read from the store.
fn stored_body(bytes: &[u8], pos: RecordPos) -> Result<Body, StoreError> {
    let env: Envelope = codec::decode(bytes, MAX_ENVELOPE_BYTES, "envelope")
        .map_err(|e| StoreError::Corrupt(format!("envelope at {pos:?}: {e}")))?;
    Body::decode(&env.body).map_err(|e| StoreError::Corrupt(format!("body at {pos:?}: {e}")))
}

impl StoredEntry {
    /// The fold without its content, which `content_at` carries.
    fn from_fold(fold: &EntryFold, content_at: RecordPos, content_digest: [u8; 8]) -> StoredEntry {
        // Every field named: a field added to EntryFold fails to compile here.
        let EntryFold {
            id,
            published,
            content: _,
            amendments,
            revoked,
            repaired,
            objections,
            repairs,
            actions,
            evidence,
        } = fold;
        StoredEntry {
            id: *id,
            published: published.clone(),
            content_at,
            content_digest,
            amendments: *amendments,
            revoked: revoked.clone(),
            repaired: repaired.clone(),
            objections: objections.clone(),
            actions: actions.clone(),
            evidence: evidence.clone(),
            repairs: repairs.clone(),
        }
    }

    /// The whole fold, with the content from the envelope it names.
    fn into_fold(self, content: ListEntry) -> EntryFold {
        EntryFold {
            id: self.id,
            published: self.published,
            content,
            amendments: self.amendments,
            revoked: self.revoked,
            repaired: self.repaired,
            objections: self.objections,
            repairs: self.repairs,
            actions: self.actions,
            evidence: self.evidence,
        }
    }
}

fn tree_key(region: RegionCode, level: u8, index: u64) -> Vec<u8> {
    let mut k = region_key(b'N', region);
    k.push(level);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Upgrades the on-disk format from `from` to [`FORMAT_VERSION`]. Each step has a test
/// that opens a store of the version before.
///
/// Format 1 held protocol-version-1 records (measure codes by article number, person
/// hashes v1): no node of this build can admit them, so there is nothing to migrate;
/// such a store is refused with what to do. Format 2 lacks the Merkle trees: they are
/// built from the logs. Format 3 kept the verifiable map a node per record and every
/// position apart: the map is dropped, to be recomputed from the log in pages when a
/// checkpoint next needs it (it is derived data, never the only copy of anything).
/// Format 4 stored every level of the Merkle trees: the levels below
/// [`STORED_TREE_LEVEL`] are removed (they are hashed from the envelopes when needed).
/// Format 5 and earlier stored entry folds with their content: they are rewritten as
/// [`StoredEntry`]. Format 6 and earlier stored map pages whole: the maps are dropped
/// (derived data; recomputed with pages in their stored form, [`MapPage::encode_stored`]).
/// Format 8 and earlier stored entry folds without repair applications: they gain an
/// empty set ([`upgrade_stored_entries`]). Format 9 and earlier did not index
/// disclosures by subject ([`index_disclosures`]). Format 10 and earlier had no subject
/// markers ([`mark_indexed_subjects`]); format 11's markers are empty, which reads the
/// subject's `S` keys, until the subject next changes ([`subject_marker_value`]).
fn migrate(tree: &Kv, from: u32) -> Result<(), StoreError> {
    match from {
        FORMAT_VERSION => return Ok(()),
        found if found > FORMAT_VERSION => return Err(StoreError::NewerFormat { found }),
        // Format 11's markers are empty, which reads the subject's `S` keys as before;
        // each becomes a list at its subject's next change. Nothing to rewrite — the
        // number only keeps a build of format 11, which would not keep the lists, from
        // opening the store.
        11 => {
            tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
            return Ok(());
        }
        10 => {
            mark_indexed_subjects(tree)?;
            tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
            return Ok(());
        }
        9 => {
            index_disclosures(tree)?;
            mark_indexed_subjects(tree)?;
            tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
            return Ok(());
        }
        // The inbox's index is built when the store opens (`Store::build_task_index`).
        7 | 8 => {
            upgrade_stored_entries(tree)?;
            index_disclosures(tree)?;
            mark_indexed_subjects(tree)?;
            tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
            return Ok(());
        }
        // Map pages in the whole form: the map is derived data, recomputed in the
        // stored form when a checkpoint next needs it.
        6 => {
            drop_maps(tree)?;
            upgrade_stored_entries(tree)?;
            index_disclosures(tree)?;
            mark_indexed_subjects(tree)?;
            tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
            return Ok(());
        }
        5 => drop_maps(tree)?,
        3 | 4 => {
            drop_maps(tree)?;
            drop_low_tree_levels(tree)?;
        }
        2 => build_trees(tree)?,
        1 => {
            return Err(StoreError::Corrupt(
                "store format 1 holds protocol-1 records, which this build (protocol 2) does not admit; the federation restarts on protocol 2: move the store away".into(),
            ));
        }
        other => return Err(StoreError::Corrupt(format!("unknown store format {other}"))),
    }
    slim_entries(tree)?;
    index_disclosures(tree)?;
    mark_indexed_subjects(tree)?;
    tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
    Ok(())
}

/// Indexes every disclosure under its subject (format 9 → 10), so that a subject's
/// public page finds its 双公示 decisions without reading them all; a bounded batch at a
/// time, and writing a key already there (a migration interrupted by a crash) changes
/// nothing. The subjects' markers follow in [`mark_indexed_subjects`], which every
/// upgrade path runs after it.
fn index_disclosures(tree: &Kv) -> Result<(), StoreError> {
    in_bounded_batches(tree, b'B', 4_096, |_, v, batch| {
        let fold: DisclosureFold = dec(v, "disclosure")?;
        let mut key = subject_prefix(&fold.disclosure.subject.key());
        key.extend_from_slice(&enc(&SubjectRef::Disclosure(fold.id)));
        batch.insert(key, []);
        Ok(())
    })
}

/// Writes the marker of every subject the subject index holds (format 10 → 11,
/// [`subject_marker_for_prefix`]); a bounded batch at a time, and writing a marker already
/// there (a migration interrupted by a crash) changes nothing.
fn mark_indexed_subjects(tree: &Kv) -> Result<(), StoreError> {
    in_bounded_batches(tree, b'S', 16_384, |k, _, batch| {
        let prefix = subject_of_index_key(k)
            .ok_or_else(|| StoreError::Corrupt(format!("subject index key {k:?}")))?;
        let marker = subject_marker_for_prefix(prefix);
        // Only where there is none: a marker's list (format 12) is the subject's index,
        // and an empty marker over it would send checks to keys that do not hold it.
        if tree.get(&marker)?.is_none() {
            batch.insert(marker, []);
        }
        Ok(())
    })
}

/// Rewrites every entry fold without its content (format 5 → 6): the content is found
/// in the newest record of the fold's evidence that carries it (the publication or the
/// latest amendment). A bounded batch at a time; folds already rewritten (a migration
/// interrupted by a crash) are left as they are.
fn slim_entries(tree: &Kv) -> Result<(), StoreError> {
    in_bounded_batches(tree, b'E', 4_096, |k, v, batch| {
        let Ok(fold) = dec::<legacy::EntryFoldV5>(v, "entry").map(legacy::EntryFoldV5::into_fold)
        else {
            // Already rewritten, or corrupt: say which.
            return dec::<StoredEntry>(v, "entry").map(|_| ());
        };
        let mut content_at = None;
        for pos in fold.evidence.iter().rev() {
            let Some(bytes) = tree.get(&pos_key(b'L', *pos))? else {
                continue;
            };
            if stored_body(&bytes, *pos)
                .ok()
                .as_ref()
                .and_then(carried_content)
                == Some(&fold.content)
            {
                content_at = Some(*pos);
                break;
            }
        }
        let content_at = content_at.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "entry {}: no record in its evidence carries its content",
                fold.id
            ))
        })?;
        let digest = content_digest(&fold.content);
        batch.insert(k, enc(&StoredEntry::from_fold(&fold, content_at, digest)));
        Ok(())
    })
}

/// Gives every stored entry fold of formats 6 to 8 its (empty) set of repair
/// applications (format 8 → 9), a bounded batch at a time; folds already rewritten (a
/// migration interrupted by a crash) are left as they are.
fn upgrade_stored_entries(tree: &Kv) -> Result<(), StoreError> {
    in_bounded_batches(tree, b'E', 4_096, |k, v, batch| {
        match dec::<legacy::StoredEntryV8>(v, "entry") {
            Ok(old) => {
                batch.insert(k, enc(&old.upgrade()));
                Ok(())
            }
            // Already rewritten, or corrupt: say which.
            Err(_) => dec::<StoredEntry>(v, "entry").map(|_| ()),
        }
    })
}

/// Removes every region's verifiable map: pages, roots, positions and version records
/// (formats 3 to 6), a bounded batch at a time.
fn drop_maps(tree: &Kv) -> Result<(), StoreError> {
    for prefix in [b'I', b'J', b'K', b'U'] {
        in_bounded_batches(tree, prefix, 16_384, |k, _, batch| {
            batch.remove(k);
            Ok(())
        })?;
    }
    Ok(())
}

/// Removes the stored tree nodes below [`STORED_TREE_LEVEL`] (format 4 → 5), a bounded
/// batch at a time so that a large store is not held in memory.
fn drop_low_tree_levels(tree: &Kv) -> Result<(), StoreError> {
    in_bounded_batches(tree, b'N', 16_384, |k, _, batch| {
        // 'N', region (4 bytes), level, index (8 bytes).
        if k.get(5).is_some_and(|level| *level < STORED_TREE_LEVEL) {
            batch.remove(k);
        }
        Ok(())
    })
}

/// Walks every pair under `prefix` in key order, `per_batch` at a time, letting `f` add
/// writes for each to a batch that is applied before the next pairs are read: what a
/// migration needs to rewrite a large store without holding it in memory. Each round
/// reads on after the last key seen, so `f` may remove or rewrite the keys it is given.
fn in_bounded_batches(
    tree: &Kv,
    prefix: u8,
    per_batch: usize,
    mut f: impl FnMut(&[u8], &[u8], &mut Batch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let end = prefix
        .checked_add(1)
        .map_or(Bound::Unbounded, |next| Bound::Excluded(vec![next]));
    let mut from = Bound::Included(vec![prefix]);
    loop {
        let mut batch = Batch::default();
        let mut last = None;
        let mut seen = 0;
        for kv in tree.range(from.clone(), end.clone())? {
            let (k, v) = kv?;
            f(&k, &v, &mut batch)?;
            last = Some(k);
            seen += 1;
            if seen == per_batch {
                break;
            }
        }
        tree.apply(batch)?;
        match last {
            Some(k) if seen == per_batch => from = Bound::Excluded(k),
            _ => return Ok(()),
        }
    }
}

/// Builds every region's Merkle tree from its log (format 2 → 3), a region at a time.
fn build_trees(tree: &Kv) -> Result<(), StoreError> {
    let mut regions = Vec::new();
    for kv in tree.scan_prefix(b"H")? {
        let (k, _) = kv?;
        let code = u32::from_be_bytes(
            k[1..5]
                .try_into()
                .map_err(|_| StoreError::Corrupt("head key".into()))?,
        );
        regions
            .push(RegionCode::new(code, "head").map_err(|e| StoreError::Corrupt(e.to_string()))?);
    }
    for region in regions {
        let mut frontier = Frontier::empty();
        let mut batch = Batch::default();
        for kv in tree.scan_prefix(&region_key(b'L', region))? {
            let (_, bytes) = kv?;
            for c in frontier.append(leaf_hash(&bytes)) {
                if c.level >= STORED_TREE_LEVEL {
                    batch.insert(tree_key(region, c.level, c.index), &c.hash.0[..]);
                }
            }
        }
        batch.insert(region_key(b'T', region), enc(&frontier));
        tree.apply(batch)?;
    }
    Ok(())
}

/// What start-up verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Regions whose chains verified.
    pub regions: usize,
    /// Envelopes checked.
    pub envelopes: u64,
}

impl Store {
    /// Walks one region's chain (see [`StateView::verify_chains`]): the envelopes it
    /// holds, reporting every 100,000th sequence number to `progress`.
    fn verify_chain(
        &self,
        federation_id: &str,
        region: RegionCode,
        head: &Head,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let mut prev = GENESIS_PREV_HASH;
        let mut expect = 1u64;
        let mut rebuilt = Frontier::empty();
        let start = pos_key(b'L', RecordPos { region, seq: 1 });
        let end = pos_key(
            b'L',
            RecordPos {
                region,
                seq: u64::MAX,
            },
        );
        for kv in self
            .kv
            .range(Bound::Included(start), Bound::Excluded(end))?
        {
            let (_, bytes) = kv?;
            let v = decode_envelope(federation_id, &bytes)
                .map_err(|e| StoreError::Corrupt(format!("{region}#{expect}: {e}")))?;
            if v.envelope.seq != expect
                || v.envelope.prev_hash != prev
                || v.envelope.region != region
            {
                return Err(StoreError::Corrupt(format!(
                    "{region}#{expect}: chain broken (seq {}, prev_hash mismatch or wrong region)",
                    v.envelope.seq
                )));
            }
            prev = envelope_hash(federation_id, &bytes);
            rebuilt.append(leaf_hash(&bytes));
            if expect.is_multiple_of(100_000) {
                progress(expect);
            }
            expect += 1;
        }
        if expect - 1 != head.seq || prev != head.hash {
            return Err(StoreError::Corrupt(format!(
                "{region}: head says seq {} but the log ends at {}",
                head.seq,
                expect - 1
            )));
        }
        let stored = self.frontier(region)?;
        if stored != rebuilt {
            return Err(StoreError::Corrupt(format!(
                "{region}: the stored Merkle tree ({} leaves) does not match the log",
                stored.size
            )));
        }
        Ok(expect - 1)
    }

    /// Opens the store in `dir` with the engine it was created with, or creates one
    /// with the default engine, and the default cache budget.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`, checking the format version. An existing
    /// store keeps the engine it was created with, whatever `options.engine` says.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let engine = Engine::in_dir(dir).unwrap_or(options.engine);
        let tree = Kv::open(dir, engine, options.cache_bytes)?;
        match tree.get(b"Mformat")? {
            None => {
                tree.insert(b"Mformat", &FORMAT_VERSION.to_le_bytes())?;
            }
            Some(v) => {
                let found = u32::from_le_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("format marker".into()))?,
                );
                migrate(&tree, found)?;
            }
        }
        let mut store = Store {
            kv: tree,
            cache_budget: options.cache_bytes,
            equivocators: std::sync::Mutex::new((0, None)),
            heads: std::sync::RwLock::new(BTreeMap::new()),
            departments: std::sync::RwLock::new(DepartmentCache::default()),
        };
        // Format 8 added the inbox's index, built from the folds (which needs whole
        // entries, so after the other migrations); a crash before the marker is written
        // builds it again, writing the same keys.
        if store.kv.get(b"Mtasks2")?.is_none() {
            store.build_task_index()?;
            store.kv.insert(b"Mtasks2", &[1])?;
        }
        // The listing indexes, likewise built from the folds of a store without them.
        if store.kv.get(b"Mlisting2")?.is_none() {
            store.build_listing_index()?;
            store.kv.insert(b"Mlisting2", &[1])?;
        }
        if options.compact {
            store.compact()?;
        }
        store.sync()?;
        Ok(store)
    }

    /// Compacts the store's file (see [`Kv::compact`]); the store must not be in use.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.kv.compact()
    }

    /// The engine under this store.
    pub fn engine(&self) -> Engine {
        self.kv.engine()
    }

    /// Bytes the engine's page cache holds now, if the engine says.
    pub fn cache_bytes(&self) -> Option<u64> {
        self.kv.cache_bytes()
    }

    /// Overwrites a stored envelope without any check: corruption drills and tests only.
    #[doc(hidden)]
    pub fn corrupt_envelope_for_drills(
        &self,
        pos: RecordPos,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.kv.insert(&pos_key(b'L', pos), bytes)
    }

    /// The encoded references the subject index holds for the subject whose `S` prefix
    /// is `prefix`, in key order, and whether they are its `S` keys: its marker's list,
    /// or its `S` keys when the marker is empty. No marker: nothing was ever indexed
    /// for the subject (the marker goes in every batch that indexes, and the upgrade to
    /// format 11 marked every subject indexed before). The one place that decides
    /// where a subject's references are, for checks and for the writer alike.
    fn indexed_refs(&self, prefix: &[u8]) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        let Some(marker) = self.kv.get(&subject_marker_for_prefix(prefix))? else {
            return Ok((Vec::new(), false));
        };
        if let Some(refs) = subject_marker_refs(&marker)? {
            return Ok((refs.into_iter().map(<[u8]>::to_vec).collect(), false));
        }
        let keys = self
            .kv
            .scan_prefix(prefix)?
            .map(|kv| kv.map(|(k, _)| k[prefix.len()..].to_vec()))
            .collect::<Result<_, _>>()?;
        Ok((keys, true))
    }

    /// Adds to `batch` what indexes the subject whose `S` prefix is `prefix` after
    /// `changes` (in order; true: indexed, false: unindexed), from what the store holds
    /// before it: at most [`SUBJECT_MARKER_REFS_MAX`] references as its marker's list and
    /// no `S` keys; more as `S` keys under an empty marker. Moving from one form to the
    /// other writes or removes every key in the same batch, so the marker always says
    /// truly where the references are (docs/decisions.md, 115).
    fn index_subject(
        &self,
        prefix: &[u8],
        changes: &[(bool, Vec<u8>)],
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        use std::collections::BTreeSet;
        let (before, keyed) = self.indexed_refs(prefix)?;
        let before: BTreeSet<Vec<u8>> = before.into_iter().collect();
        let mut refs = before.clone();
        for (indexed, r) in changes {
            if *indexed {
                refs.insert(r.clone());
            } else {
                refs.remove(r);
            }
        }
        let listed = refs.len() <= SUBJECT_MARKER_REFS_MAX;
        let empty = BTreeSet::new();
        let keys_before = if keyed { &before } else { &empty };
        let keys_after = if listed { &empty } else { &refs };
        for r in keys_before.difference(keys_after) {
            batch.remove([prefix, r].concat());
        }
        for r in keys_after.difference(keys_before) {
            batch.insert([prefix, r].concat(), []);
        }
        batch.insert(
            subject_marker_for_prefix(prefix),
            subject_marker_value(&refs),
        );
        Ok(())
    }

    fn frontier(&self, region: RegionCode) -> Result<Frontier, StoreError> {
        match self.kv.get(&region_key(b'T', region))? {
            None => Ok(Frontier::empty()),
            Some(v) => {
                let f: Frontier = dec(&v, "tree frontier")?;
                if !f.is_well_formed() {
                    return Err(StoreError::Corrupt(format!("{region}: tree frontier")));
                }
                Ok(f)
            }
        }
    }

    /// Number of keys under a prefix.
    pub fn count(&self, prefix: u8) -> usize {
        self.kv
            .scan_prefix(&[prefix])
            .map_or(0, |pairs| pairs.count())
    }

    /// What each part of the store holds: for every key prefix (the table in this
    /// module's documentation), its records and their key and value bytes. The live
    /// data, against which [`Backend::size_on_disk`] shows what the file wastes.
    /// Blocking: walks the whole tree.
    pub fn live_bytes(&self) -> Result<BTreeMap<u8, PartSize>, StoreError> {
        let mut out: BTreeMap<u8, PartSize> = BTreeMap::new();
        for kv in self.kv.scan_prefix(b"")? {
            let (k, v) = kv?;
            let part = out.entry(k.first().copied().unwrap_or(0)).or_default();
            part.records += 1;
            part.bytes += (k.len() + v.len()) as u64;
        }
        Ok(out)
    }
}

impl Backend for Store {
    fn probe_writable(&self, bytes: usize) -> Result<(), StoreError> {
        self.kv.probe_writable(bytes)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        self.kv.reopen()?;
        // Cached reads may be of writes the engine no longer holds.
        if let Ok(mut h) = self.heads.write() {
            h.clear();
        }
        if let Ok(mut e) = self.equivocators.lock() {
            *e = (e.0 + 1, None);
        }
        self.forget_departments();
        Ok(())
    }

    fn apply(&self, updates: &[Update]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        // The envelope these updates come from, decoded only if an entry fold needs to
        // know whether it carries the entry's content.
        let appended = updates.iter().find_map(|u| match u {
            Update::Append { pos, bytes, .. } => Some((*pos, bytes.as_slice())),
            _ => None,
        });
        let mut appended_body: Option<Option<Body>> = None;
        // The subject index's changes by subject, in order (true: indexed): each
        // subject's marker is written once, after them.
        let mut subjects: BTreeMap<Vec<u8>, Vec<(bool, Vec<u8>)>> = BTreeMap::new();
        for u in updates {
            match u {
                Update::Append { pos, head, bytes } => {
                    batch.insert(pos_key(b'L', *pos), bytes);
                    batch.insert(region_key(b'H', pos.region), enc(head));
                    // The writer thread applies one envelope per call, in order, so the
                    // stored frontier is the tree before this envelope.
                    let mut frontier = self.frontier(pos.region)?;
                    if frontier.size + 1 != pos.seq {
                        return Err(StoreError::Corrupt(format!(
                            "{}: tree holds {} leaves, appending #{}",
                            pos.region, frontier.size, pos.seq
                        )));
                    }
                    for c in frontier.append(leaf_hash(bytes)) {
                        if c.level >= STORED_TREE_LEVEL {
                            batch.insert(tree_key(pos.region, c.level, c.index), &c.hash.0[..]);
                        }
                    }
                    batch.insert(region_key(b'T', pos.region), enc(&frontier));
                }
                Update::Department(d) => {
                    batch.insert(id_key(b'D', d.department.to_string().as_bytes()), enc(d))
                }
                Update::Entry(e) => {
                    let digest = content_digest(&e.content);
                    let body = appended_body.get_or_insert_with(|| {
                        appended.and_then(|(pos, bytes)| stored_body(bytes, pos).ok())
                    });
                    let here = appended
                        .zip(body.as_ref().and_then(carried_content))
                        .filter(|(_, carried)| **carried == e.content)
                        .map(|(at, _)| at.0);
                    let content_at = match here {
                        Some(pos) => pos,
                        // Not this record (an objection, an action, a revocation…): the
                        // content is unchanged, and so is where it is read from.
                        None => match self.stored_entry(&e.id)? {
                            Some(prev) if prev.content_digest == digest => prev.content_at,
                            _ => {
                                return Err(StoreError::Corrupt(format!(
                                    "entry {}: content neither in the record applied nor unchanged",
                                    e.id
                                )));
                            }
                        },
                    };
                    if here.is_some() {
                        // A publication, or an amendment: the listing keys follow the
                        // content (an amendment's old keys go).
                        if e.evidence.len() > 1
                            && let Some(prev) = self.stored_entry(&e.id)?
                        {
                            let old = self.with_content(prev)?;
                            for k in entry_listing_keys(&old) {
                                batch.remove(k);
                            }
                        }
                        for k in entry_listing_keys(e) {
                            batch.insert(k, []);
                        }
                    }
                    batch.insert(
                        id_key(b'E', &e.id.0.0),
                        enc(&StoredEntry::from_fold(e, content_at, digest)),
                    );
                }
                Update::Action(a) => {
                    // Just initiated: its only evidence is the initiation.
                    if a.evidence.len() == 1 {
                        batch.insert(
                            listing_date_key(
                                ListingKind::Action,
                                a.initiated.pos.region,
                                a.initiated.at.date_cst(),
                                &a.id.0,
                            ),
                            [],
                        );
                    }
                    batch.insert(id_key(b'A', &a.id.0.0), enc(a.as_ref()))
                }
                Update::Objection(o, t) => batch.insert(id_key(b'O', &o.0.0), enc(t)),
                Update::Evaluation(v) => {
                    // Just published (an evaluation's content never changes).
                    if v.evidence.len() == 1 {
                        for k in evaluation_listing_keys(v) {
                            batch.insert(k, []);
                        }
                    }
                    batch.insert(id_key(b'V', &v.id.0.0), enc(v.as_ref()))
                }
                Update::Commitment(c) => batch.insert(id_key(b'F', &c.id.0.0), enc(c.as_ref())),
                Update::Disclosure(d) => batch.insert(id_key(b'B', &d.id.0.0), enc(d.as_ref())),
                // Written below, once per subject, in the form its marker says.
                Update::Unindex(k, r) => {
                    subjects
                        .entry(subject_prefix(k))
                        .or_default()
                        .push((false, enc(r)));
                }
                Update::Subject(k, r) => {
                    subjects
                        .entry(subject_prefix(k))
                        .or_default()
                        .push((true, enc(r)));
                }
                Update::Equivocator(r) => batch.insert(region_key(b'Q', *r), []),
                // Applied below, once per task: the last mark of a task wins.
                Update::Task(_) => {}
            }
        }
        for (prefix, changes) in &subjects {
            self.index_subject(prefix, changes, &mut batch)?;
        }
        // Removals first: a record that moves a mark removes its old key and writes the
        // new one in this batch (ops apply in order, so a key removed and written stays).
        for u in updates {
            if let Update::Task(m) = u
                && let Some(day) = m.was
            {
                batch.remove(mark_key(m.region, day, &m.task));
            }
        }
        for u in updates {
            if let Update::Task(m) = u
                && let Some(day) = m.now
            {
                batch.insert(mark_key(m.region, day, &m.task), task_id(&m.task));
            }
        }
        let new_equivocator = updates.iter().any(|u| matches!(u, Update::Equivocator(_)));
        let department_written = updates.iter().any(|u| matches!(u, Update::Department(_)));
        let applied = self.kv.apply(batch);
        // After the write (whether or not it took): a read begun before it is not kept.
        if department_written {
            self.forget_departments();
        }
        if applied.is_ok() {
            for u in updates {
                if let Update::Append { pos, head, .. } = u {
                    self.remember_head(pos.region, *head);
                }
            }
        }
        if new_equivocator {
            self.forget_equivocators();
        }
        applied
    }

    fn record_equivocation(&self, proof: &EquivocationProof) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(
            pos_key(
                b'P',
                RecordPos {
                    region: proof.region,
                    seq: proof.seq,
                },
            ),
            enc(proof),
        );
        batch.insert(region_key(b'Q', proof.region), []);
        let applied = self.kv.apply(batch);
        self.forget_equivocators();
        applied
    }

    /// Makes everything applied so far durable: a real fsync (see [`kv`]).
    fn sync(&self) -> Result<(), StoreError> {
        self.kv.sync()
    }

    fn heads(&self) -> Result<BTreeMap<RegionCode, Head>, StoreError> {
        let mut out = BTreeMap::new();
        for kv in self.kv.scan_prefix(b"H")? {
            let (k, v) = kv?;
            let code = u32::from_be_bytes(
                k[1..5]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("head key".into()))?,
            );
            let region =
                RegionCode::new(code, "head").map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.insert(region, dec(&v, "head")?);
        }
        Ok(out)
    }

    fn range(
        &self,
        region: RegionCode,
        from_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let start = pos_key(
            b'L',
            RecordPos {
                region,
                seq: from_seq.max(1),
            },
        );
        let end = pos_key(
            b'L',
            RecordPos {
                region,
                seq: u64::MAX,
            },
        );
        let mut out = Vec::new();
        let mut bytes = 0;
        for kv in self
            .kv
            .range(Bound::Included(start), Bound::Excluded(end))?
            .take(limit)
        {
            let v = kv?.1;
            bytes += v.len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Re-walks every chain: contiguous sequence numbers, decodable envelopes, each
    /// `prev_hash` equal to the previous envelope's hash, and the head matching the last.
    /// Signatures were verified on admission and are not re-checked here.
    ///
    /// Chains are independent, so they are walked on one thread per core, a region at
    /// a time (at 10^7 records one thread took 67 s, over the start-up goal of 60 s:
    /// docs/performance.md). When several chains are broken, the error is the first
    /// region's in code order, as a walk in order would report it.
    fn verify_chains(
        &self,
        federation_id: &str,
        progress: &mut dyn FnMut(RegionCode, u64),
    ) -> Result<ChainReport, StoreError> {
        let heads: Vec<(RegionCode, Head)> = self.heads()?.into_iter().collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, heads.len().max(1));
        let next = AtomicUsize::new(0);
        // The lowest index of a chain found broken: chains after it need no walk.
        let first_broken = AtomicUsize::new(usize::MAX);
        let (report_tx, report_rx) = std::sync::mpsc::channel::<(RegionCode, u64)>();
        let mut outcomes: Vec<Option<Result<u64, StoreError>>> =
            (0..heads.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (heads, next, first_broken, report_tx) =
                        (&heads, &next, &first_broken, report_tx.clone());
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Relaxed);
                            let Some((region, head)) = heads.get(i) else {
                                return done;
                            };
                            // Chains after a broken one are not needed: the first
                            // broken chain in code order is the error either way.
                            if i > first_broken.load(Relaxed) {
                                return done;
                            }
                            let outcome =
                                self.verify_chain(federation_id, *region, head, &mut |seq| {
                                    let _ = report_tx.send((*region, seq));
                                });
                            if outcome.is_err() {
                                first_broken.fetch_min(i, Relaxed);
                            }
                            done.push((i, outcome));
                        }
                    })
                })
                .collect();
            drop(report_tx);
            // Progress is reported from the calling thread, as the workers go.
            for (region, seq) in report_rx {
                progress(region, seq);
            }
            for worker in workers {
                match worker.join() {
                    Ok(done) => {
                        for (i, outcome) in done {
                            outcomes[i] = Some(outcome);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        let mut envelopes = 0;
        for outcome in outcomes {
            match outcome {
                Some(Ok(n)) => envelopes += n,
                Some(Err(e)) => return Err(e),
                // Left unwalked: a chain before it in code order is broken, and its
                // error has been returned already.
                None => {}
            }
        }
        Ok(ChainReport {
            regions: heads.len(),
            envelopes,
        })
    }

    /// Bytes on disk (the engine's files).
    fn size_on_disk(&self) -> u64 {
        self.kv.size_on_disk()
    }

    fn cache_usage(&self) -> CacheUsage {
        CacheUsage {
            budget: self.cache_budget,
            used: self.kv.cache_bytes(),
            pending_writes: self.kv.pending_bytes(),
        }
    }

    fn all_entries(&self) -> Box<dyn Iterator<Item = Result<EntryFold, StoreError>> + '_> {
        Box::new(
            self.scan_values::<StoredEntry>(b'E', "entry")
                .map(|stored| self.with_content(stored?)),
        )
    }

    fn all_actions(&self) -> Box<dyn Iterator<Item = Result<ActionFold, StoreError>> + '_> {
        self.scan_values(b'A', "action")
    }

    fn all_commitments(&self) -> Box<dyn Iterator<Item = Result<CommitmentFold, StoreError>> + '_> {
        self.scan_values(b'F', "commitment")
    }

    fn all_disclosures(&self) -> Box<dyn Iterator<Item = Result<DisclosureFold, StoreError>> + '_> {
        self.scan_values(b'B', "disclosure")
    }

    fn all_departments(
        &self,
    ) -> Box<dyn Iterator<Item = Result<DepartmentRecord, StoreError>> + '_> {
        self.scan_values(b'D', "department")
    }

    fn note_received(&self, pos: RecordPos, at_ms: i64) {
        if let Err(e) = self.kv.insert(&pos_key(b'R', pos), &at_ms.to_le_bytes()) {
            tracing::debug!(error = %e, "could not note the receive time (a measurement only)");
        }
    }

    fn add_check_counts(&self, counts: &BTreeMap<CheckCountKey, u64>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for (key, n) in counts {
            let k = check_count_key(key);
            let held = match self.kv.get(&k)? {
                Some(v) => u64::from_le_bytes(
                    <[u8; 8]>::try_from(v.as_slice())
                        .map_err(|_| StoreError::Corrupt(format!("check count {k:?}")))?,
                ),
                None => 0,
            };
            batch.insert(k, (held + n).to_le_bytes());
        }
        self.kv.apply(batch)
    }

    fn check_counts(
        &self,
        from: Date,
        to: Date,
    ) -> Result<BTreeMap<CheckCountKey, u64>, StoreError> {
        let mut lo = vec![b'c'];
        lo.extend_from_slice(&day_bytes(from));
        let mut hi = vec![b'c'];
        hi.extend_from_slice(&day_bytes(to.succ()));
        let mut out = BTreeMap::new();
        for kv in self.kv.range(Bound::Included(lo), Bound::Excluded(hi))? {
            let (k, v) = kv?;
            let corrupt = || StoreError::Corrupt(format!("check count {k:?}"));
            let day = k
                .get(1..5)
                .and_then(|d| <[u8; 4]>::try_from(d).ok())
                .and_then(day_from_bytes)
                .ok_or_else(corrupt)?;
            let rest = std::str::from_utf8(&k[5..]).map_err(|_| corrupt())?;
            let (domain, department) = rest.split_once('\0').ok_or_else(corrupt)?;
            let n = u64::from_le_bytes(<[u8; 8]>::try_from(v.as_slice()).map_err(|_| corrupt())?);
            out.insert((day, domain.to_owned(), department.to_owned()), n);
        }
        Ok(out)
    }

    fn received_at(&self, pos: RecordPos) -> Result<Option<i64>, StoreError> {
        let Some(v) = self.kv.get(&pos_key(b'R', pos))? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = v
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("receive time at {pos:?}")))?;
        Ok(Some(i64::from_le_bytes(bytes)))
    }

    fn tree_frontier(&self, region: RegionCode) -> Result<Frontier, StoreError> {
        self.frontier(region)
    }

    fn tree_node(
        &self,
        region: RegionCode,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash256>, StoreError> {
        if level < STORED_TREE_LEVEL {
            return self.subtree_from_log(region, level, index);
        }
        match self.kv.get(&tree_key(region, level, index))? {
            None => Ok(None),
            Some(v) => Ok(Some(Hash256(v.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!("{region}: tree node {level}/{index}"))
            })?))),
        }
    }

    fn witness_view(&self, region: RegionCode) -> Result<Option<WitnessView>, StoreError> {
        self.get(&region_key(b'W', region), "witness view")
    }

    fn set_witness_view(&self, region: RegionCode, view: WitnessView) -> Result<(), StoreError> {
        self.kv.insert(&region_key(b'W', region), &enc(&view))?;
        self.sync()
    }

    fn note(&self, kind: u8, region: RegionCode) -> Result<Option<String>, StoreError> {
        match self.kv.get(&region_key(kind, region))? {
            None => Ok(None),
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("{region}: stored note"))),
        }
    }

    fn set_note(&self, kind: u8, region: RegionCode, note: &str) -> Result<(), StoreError> {
        self.kv.insert(&region_key(kind, region), note.as_bytes())
    }

    fn map_page(
        &self,
        region: RegionCode,
        page: &PageId,
        version: u64,
    ) -> Result<Option<MapPage>, StoreError> {
        let lo = map_page_key(region, page, 0);
        let hi = map_page_key(region, page, version);
        match self.kv.range_inclusive(lo, hi)?.next_back() {
            None => Ok(None),
            Some(kv) => {
                let bytes = kv?.1;
                MapPage::decode_stored(&bytes, MAX_VALUE_BYTES)
                    .map(Some)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "{region}: map page at depth {} is not a well-formed page",
                            page.band_depth
                        ))
                    })
            }
        }
    }

    fn map_latest(&self, region: RegionCode) -> Result<Option<(u64, Hash256)>, StoreError> {
        let prefix = region_key(b'J', region);
        match self.kv.scan_prefix(&prefix)?.next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let version: [u8; 8] = k[prefix.len()..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("{region}: map version key")))?;
                Ok(Some((
                    u64::from_be_bytes(version),
                    hash_value(&v, "map root")?,
                )))
            }
        }
    }

    fn map_root_at(&self, region: RegionCode, version: u64) -> Result<Option<Hash256>, StoreError> {
        match self.kv.get(&map_root_key(region, version))? {
            None => Ok(None),
            Some(v) => Ok(Some(hash_value(&v, "map root")?)),
        }
    }

    fn put_map_version(
        &self,
        region: RegionCode,
        version: u64,
        pages: &[(PageId, MapPage)],
        root: Hash256,
        positions: &[(Hash256, u64)],
        computed_at: u64,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for (id, page) in pages {
            batch.insert(map_page_key(region, id, version), page.encode_stored());
        }
        let record = VersionRecord {
            computed_at,
            pages: pages
                .iter()
                .map(|(id, _)| (id.band_depth, id.path_bytes().to_vec()))
                .collect(),
        };
        batch.insert(map_version_key(region, version), enc(&record));
        for (key, seq) in positions {
            batch.insert(map_position_key(region, key, *seq), []);
        }
        batch.insert(map_root_key(region, version), root.0);
        self.kv.apply(batch)
    }

    fn map_positions(
        &self,
        region: RegionCode,
        key: &Hash256,
        up_to: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let lo = map_position_key(region, key, 0);
        let hi = map_position_key(region, key, up_to);
        let mut out = Vec::new();
        for kv in self.kv.range_inclusive(lo, hi)? {
            let (k, _) = kv?;
            let seq: [u8; 8] = k[k.len() - 8..]
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("{region}: map position key")))?;
            out.push(u64::from_be_bytes(seq));
        }
        Ok(out)
    }

    fn map_storage(&self, region: RegionCode) -> Result<MapStorage, StoreError> {
        let mut out = MapStorage::default();
        for kv in self.kv.scan_prefix(&region_key(b'U', region))? {
            kv?;
            out.versions += 1;
        }
        for kv in self.kv.scan_prefix(&region_key(b'I', region))? {
            let (k, v) = kv?;
            out.page_records += 1;
            out.page_bytes += (k.len() + v.len()) as u64;
        }
        Ok(out)
    }

    fn prune_map(
        &self,
        region: RegionCode,
        keep_from: u64,
        computed_before: u64,
    ) -> Result<(usize, usize), StoreError> {
        // Versions are computed in increasing order, so the newest one computed before
        // the time is the last such in key order; the scan stops at `keep_from`.
        let mut versions: Vec<(u64, VersionRecord)> = Vec::new();
        let mut settled = None;
        for kv in self.kv.scan_prefix(&region_key(b'U', region))? {
            let (k, v) = kv?;
            let version = version_in(&k, region)?;
            let record: VersionRecord = dec(&v, "map version")?;
            if record.computed_at > computed_before {
                break;
            }
            if version >= keep_from {
                settled = Some(keep_from);
                break;
            }
            settled = Some(version);
            versions.push((version, record));
        }
        let Some(cut) = settled else {
            return Ok((0, 0));
        };
        let mut batch = Batch::default();
        let mut pages = std::collections::BTreeSet::new();
        let mut removed_versions = 0;
        for (version, record) in versions.iter().take_while(|(v, _)| *v < cut) {
            for (band, path) in &record.pages {
                let id = PageId::from_parts(*band, path).ok_or_else(|| {
                    StoreError::Corrupt(format!("{region}: map version {version} names a bad page"))
                })?;
                pages.insert(id);
            }
            batch.remove(map_version_key(region, *version));
            batch.remove(map_root_key(region, *version));
            removed_versions += 1;
        }
        // A page record below the cut is read by a version at or above it only if it
        // is that page's newest record at or below the cut.
        let mut removed_pages = 0;
        for id in &pages {
            let lo = map_page_key(region, id, 0);
            let hi = map_page_key(region, id, cut);
            let mut below: Vec<Vec<u8>> = self
                .kv
                .range_inclusive(lo, hi)?
                .map(|kv| kv.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            below.pop();
            removed_pages += below.len();
            for k in below {
                batch.remove(k);
            }
        }
        self.kv.apply(batch)?;
        Ok((removed_versions, removed_pages))
    }

    fn proofs(&self) -> Result<Vec<EquivocationProof>, StoreError> {
        self.scan_values(b'P', "proof").collect()
    }

    fn listing_keys(
        &self,
        lo: &[u8],
        hi: &[u8],
        after: Option<&[u8]>,
        descending: bool,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        let (lo, hi) = match (after, descending) {
            (None, _) => (Bound::Included(lo.to_vec()), Bound::Included(hi.to_vec())),
            (Some(a), false) => (Bound::Excluded(a.to_vec()), Bound::Included(hi.to_vec())),
            (Some(a), true) => (Bound::Included(lo.to_vec()), Bound::Excluded(a.to_vec())),
        };
        let range = self.kv.range(lo, hi)?;
        let iter: Box<dyn Iterator<Item = Result<kv::Pair, StoreError>>> = if descending {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for kv in iter {
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(kv?.0);
        }
        Ok((out, false))
    }

    fn ids_with_prefix(
        &self,
        kind: u8,
        hex: &str,
        limit: usize,
    ) -> Result<Vec<Hash256>, StoreError> {
        let hex = hex.to_ascii_lowercase();
        // The whole bytes the prefix gives; an odd last digit is matched on the text.
        let whole = hex::decode(&hex[..hex.len() & !1])
            .map_err(|e| StoreError::Corrupt(format!("id prefix: {e}")))?;
        let mut out = Vec::new();
        for kv in self.kv.scan_prefix(&id_key(kind, &whole))? {
            let (k, _) = kv?;
            let Some(id) = k.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                continue;
            };
            let id = Hash256(id);
            if id.to_hex().starts_with(&hex) {
                out.push(id);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// `region`'s attention marks due by `today` (the inbox's index), oldest first: at
    /// most `limit`, and whether more were due. Reads only those marks.
    fn marks_due(
        &self,
        region: RegionCode,
        today: Date,
        limit: usize,
    ) -> Result<(Vec<(TaskRef, Date)>, bool), StoreError> {
        let lo = region_key(b'G', region);
        let mut hi = region_key(b'G', region);
        hi.extend_from_slice(&day_bytes(today.succ()));
        let mut out = Vec::new();
        for kv in self.kv.range(Bound::Included(lo), Bound::Excluded(hi))? {
            let (k, whole_id) = kv?;
            if out.len() == limit {
                return Ok((out, true));
            }
            let corrupt = || StoreError::Corrupt(format!("task mark key {k:?}"));
            let day = k
                .get(5..9)
                .and_then(|d| <[u8; 4]>::try_from(d).ok())
                .and_then(day_from_bytes)
                .ok_or_else(corrupt)?;
            let (fold, task): (u8, fn(Hash256) -> TaskRef) = match k.get(9) {
                Some(b'a') => (b'A', |id| TaskRef::Action(ActionId(id))),
                Some(b'o') => (b'O', |id| TaskRef::Objection(ObjectionId(id))),
                Some(b'r') => (b'E', |id| TaskRef::Repair(EntryId(id))),
                Some(b'c') => (b'F', |id| TaskRef::Commitment(CommitmentId(id))),
                _ => return Err(corrupt()),
            };
            let prefix = k.get(10..).ok_or_else(corrupt)?;
            match <[u8; 32]>::try_from(whole_id.as_slice()) {
                // The whole id, written with the mark: it must extend the key's prefix.
                Ok(id) if id.starts_with(prefix) => out.push((task(Hash256(id)), day)),
                Ok(_) => return Err(corrupt()),
                // A mark written before marks carried their id.
                Err(_) if whole_id.is_empty() => {
                    for id in self.ids_with_prefix(fold, &hex::encode(prefix), 4)? {
                        out.push((task(id), day));
                    }
                }
                Err(_) => return Err(corrupt()),
            }
        }
        Ok((out, false))
    }
}

impl Store {
    /// Builds the listing indexes from the folds, a bounded batch at a time (first
    /// removing any of an earlier layout).
    fn build_listing_index(&self) -> Result<(), StoreError> {
        in_bounded_batches(&self.kv, b'Z', 16_384, |k, _, batch| {
            batch.remove(k);
            Ok(())
        })?;
        in_bounded_batches(&self.kv, b'E', 1_024, |_, v, batch| {
            let e = self.with_content(dec(v, "entry")?)?;
            for k in entry_listing_keys(&e) {
                batch.insert(k, []);
            }
            Ok(())
        })?;
        in_bounded_batches(&self.kv, b'V', 4_096, |_, v, batch| {
            for k in evaluation_listing_keys(&dec(v, "evaluation")?) {
                batch.insert(k, []);
            }
            Ok(())
        })?;
        in_bounded_batches(&self.kv, b'A', 4_096, |_, v, batch| {
            let a: ActionFold = dec(v, "action")?;
            batch.insert(
                listing_date_key(
                    ListingKind::Action,
                    a.initiated.pos.region,
                    a.initiated.at.date_cst(),
                    &a.id.0,
                ),
                [],
            );
            Ok(())
        })
    }

    /// Builds the inbox's index from the folds (a store of format 7 or older has none):
    /// every action's marks and every open objection's, a bounded batch at a time.
    fn build_task_index(&self) -> Result<(), StoreError> {
        use credfed_protocol::inbox::{action_marks, objection_mark};
        in_bounded_batches(&self.kv, b'G', 16_384, |k, _, batch| {
            batch.remove(k);
            Ok(())
        })?;
        in_bounded_batches(&self.kv, b'A', 1_024, |_, v, batch| {
            let action: ActionFold = dec(v, "action")?;
            if let Some(entry) = self.entry(&action.action.entry)? {
                for m in action_marks(&action, &entry) {
                    if let Some(from) = m.from {
                        batch.insert(mark_key(m.region, from, &m.task), task_id(&m.task));
                    }
                }
            }
            Ok(())
        })?;
        let objection_marks = |issuer: RegionCode,
                               objections: &BTreeMap<ObjectionId, ObjectionStatus>,
                               batch: &mut Batch| {
            for (id, status) in objections {
                let m = objection_mark(*id, status, issuer);
                if let Some(from) = m.from {
                    batch.insert(mark_key(m.region, from, &m.task), task_id(&m.task));
                }
            }
        };
        in_bounded_batches(&self.kv, b'E', 4_096, |_, v, batch| {
            let e: StoredEntry = dec(v, "entry")?;
            objection_marks(e.published.pos.region, &e.objections, batch);
            Ok(())
        })?;
        in_bounded_batches(&self.kv, b'V', 4_096, |_, v, batch| {
            let ev: EvaluationFold = dec(v, "evaluation")?;
            objection_marks(ev.issuer(), &ev.objections, batch);
            Ok(())
        })
    }

    /// An entry fold as stored, without its content.
    fn stored_entry(&self, id: &EntryId) -> Result<Option<StoredEntry>, StoreError> {
        self.get(&id_key(b'E', &id.0.0), "entry")
    }

    /// The whole fold: the content read from the envelope the stored fold names, and
    /// checked against its digest.
    fn with_content(&self, stored: StoredEntry) -> Result<EntryFold, StoreError> {
        self.with_content_and_envelope(stored).map(|(fold, _)| fold)
    }

    /// [`Store::with_content`], with the envelope the content was read from (its
    /// position and bytes as stored).
    fn with_content_and_envelope(
        &self,
        stored: StoredEntry,
    ) -> Result<(EntryFold, (RecordPos, Vec<u8>)), StoreError> {
        let pos = stored.content_at;
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!("entry {}: content at {pos:?} {what}", stored.id))
        };
        let bytes = self
            .kv
            .get(&pos_key(b'L', pos))?
            .ok_or_else(|| corrupt("is missing"))?;
        let body = stored_body(&bytes, pos)?;
        let content = carried_content(&body)
            .ok_or_else(|| corrupt("is not a publication or amendment"))?
            .clone();
        if content_digest(&content) != stored.content_digest {
            return Err(corrupt("does not match the stored digest"));
        }
        Ok((stored.into_fold(content), (pos, bytes)))
    }

    /// The hash of the complete subtree at `level` (below [`STORED_TREE_LEVEL`]) and
    /// `index`, from the envelopes it covers; `None` while the log does not hold them
    /// all (the subtree is not complete).
    fn subtree_from_log(
        &self,
        region: RegionCode,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash256>, StoreError> {
        let width = 1u64 << level;
        let Some(first) = index.checked_mul(width) else {
            return Ok(None);
        };
        let mut hashes = Vec::with_capacity(width as usize);
        for leaf in first..first.saturating_add(width) {
            let Some(seq) = leaf.checked_add(1) else {
                return Ok(None);
            };
            match self.kv.get(&pos_key(b'L', RecordPos { region, seq }))? {
                Some(bytes) => hashes.push(leaf_hash(&bytes)),
                None => return Ok(None),
            }
        }
        while hashes.len() > 1 {
            hashes = hashes
                .chunks(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
        }
        Ok(hashes.pop())
    }

    /// Decoded values under a prefix; a read or decode failure is an item, not a skip.
    fn scan_values<T: Serialize + DeserializeOwned + 'static>(
        &self,
        prefix: u8,
        what: &'static str,
    ) -> Box<dyn Iterator<Item = Result<T, StoreError>> + '_> {
        match self.kv.scan_prefix(&[prefix]) {
            Ok(pairs) => Box::new(pairs.map(move |kv| dec(&kv?.1, what))),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn get<T: Serialize + DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match self.kv.get(key)? {
            Some(v) => Ok(Some(dec(&v, what)?)),
            None => Ok(None),
        }
    }
}

impl StateView for Store {
    type Error = StoreError;
    fn head(&self, region: RegionCode) -> Result<Option<Head>, StoreError> {
        if let Ok(cached) = self.heads.read()
            && let Some(h) = cached.get(&region)
        {
            return Ok(Some(*h));
        }
        let read: Option<Head> = self.get(&region_key(b'H', region), "head")?;
        if let Some(h) = read {
            self.remember_head(region, h);
        }
        Ok(read)
    }
    fn envelope_at(&self, pos: RecordPos) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(&pos_key(b'L', pos))
    }
    fn department(&self, id: &DepartmentId) -> Result<Option<DepartmentRecord>, StoreError> {
        let generation = {
            let cached = self.departments.read().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = cached.held.get(id) {
                return Ok(Some(d.clone()));
            }
            cached.generation
        };
        let read: Option<DepartmentRecord> =
            self.get(&id_key(b'D', id.to_string().as_bytes()), "department")?;
        if let Some(d) = &read {
            let mut cached = self.departments.write().unwrap_or_else(|e| e.into_inner());
            // Kept only if no department was written while the table was read.
            if cached.generation == generation {
                if cached.held.len() >= DEPARTMENT_CACHE_ENTRIES {
                    cached.held.clear();
                }
                cached.held.insert(id.clone(), d.clone());
            }
        }
        Ok(read)
    }
    fn entry(&self, id: &EntryId) -> Result<Option<EntryFold>, StoreError> {
        match self.stored_entry(id)? {
            Some(stored) => self.with_content(stored).map(Some),
            None => Ok(None),
        }
    }
    fn entry_with_envelope(
        &self,
        id: &EntryId,
    ) -> Result<Option<(EntryFold, Option<(RecordPos, Vec<u8>)>)>, StoreError> {
        match self.stored_entry(id)? {
            Some(stored) => {
                let (fold, envelope) = self.with_content_and_envelope(stored)?;
                Ok(Some((fold, Some(envelope))))
            }
            None => Ok(None),
        }
    }
    fn action(&self, id: &ActionId) -> Result<Option<ActionFold>, StoreError> {
        self.get(&id_key(b'A', &id.0.0), "action")
    }
    fn objection_target(&self, id: &ObjectionId) -> Result<Option<ObjectionTarget>, StoreError> {
        self.get(&id_key(b'O', &id.0.0), "objection target")
    }
    fn evaluation(&self, id: &EvaluationId) -> Result<Option<EvaluationFold>, StoreError> {
        self.get(&id_key(b'V', &id.0.0), "evaluation")
    }
    fn commitment(&self, id: &CommitmentId) -> Result<Option<CommitmentFold>, StoreError> {
        self.get(&id_key(b'F', &id.0.0), "commitment")
    }
    fn disclosure(&self, id: &DisclosureId) -> Result<Option<DisclosureFold>, StoreError> {
        self.get(&id_key(b'B', &id.0.0), "disclosure")
    }
    fn subject_refs(&self, key: &SubjectKey) -> Result<Vec<SubjectRef>, StoreError> {
        let (refs, _) = self.indexed_refs(&subject_prefix(key))?;
        refs.iter().map(|r| dec(r, "subject ref")).collect()
    }
    fn equivocators(&self) -> Result<Vec<RegionCode>, StoreError> {
        let generation = {
            let cached = self.equivocators.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(regions) = &cached.1 {
                return Ok(regions.clone());
            }
            cached.0
        };
        let regions = self.scan_equivocators()?;
        let mut cached = self.equivocators.lock().unwrap_or_else(|e| e.into_inner());
        // Kept only if no proof was recorded while the store was read.
        if cached.0 == generation {
            cached.1 = Some(regions.clone());
        }
        Ok(regions)
    }
}

impl Store {
    /// A proof was recorded: the next read of the equivocators goes to the store.
    /// Keeps `head` as the region's, unless a newer one is already kept.
    fn remember_head(&self, region: RegionCode, head: Head) {
        let mut cached = self.heads.write().unwrap_or_else(|e| e.into_inner());
        match cached.get(&region) {
            Some(held) if held.seq >= head.seq => {}
            _ => {
                cached.insert(region, head);
            }
        }
    }

    /// A department was written (or the engine reopened): the cache is emptied and
    /// reads begun before are not kept.
    fn forget_departments(&self) {
        let mut cached = self.departments.write().unwrap_or_else(|e| e.into_inner());
        cached.generation += 1;
        cached.held.clear();
    }

    fn forget_equivocators(&self) {
        let mut cached = self.equivocators.lock().unwrap_or_else(|e| e.into_inner());
        cached.0 += 1;
        cached.1 = None;
    }

    fn scan_equivocators(&self) -> Result<Vec<RegionCode>, StoreError> {
        self.kv
            .scan_prefix(b"Q")?
            .map(|kv| {
                let (k, _) = kv?;
                let code = k
                    .get(1..5)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| StoreError::Corrupt("equivocator key".into()))?;
                RegionCode::new(code, "equivocator").map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod entry_tests {
    //! Entry folds stored without their content: what reads back is, at every step of
    //! an entry's life, the fold the in-memory ledger computes from the same records.
    use super::*;
    use credfed_protocol::catalogue::Catalogue;
    use credfed_protocol::crypto::Keypair;
    use credfed_protocol::envelope::{AppendPosition, OPERATOR_UNIT, seal, sign_body};
    use credfed_protocol::ids::Role;
    use credfed_protocol::ledger::{Admission, Ledger, Rules, admit, effects};
    use credfed_protocol::manifest::{Manifest, Member};
    use credfed_protocol::record::*;
    use credfed_protocol::time::{Date, Timestamp};

    const FED: &str = "cn-credit-entries";

    struct World {
        manifest: Manifest,
        catalogue: Catalogue,
        node: Keypair,
        operator: Keypair,
        publisher: Keypair,
        region: RegionCode,
        seq: u64,
        prev: Hash256,
        ledger: Ledger,
    }

    impl World {
        fn new() -> World {
            let node = Keypair::from_secret([31; 32]);
            let operator = Keypair::from_secret([33; 32]);
            let region = RegionCode::new(310000, "r").unwrap();
            World {
                manifest: Manifest::for_build(
                    FED,
                    1,
                    Timestamp(0),
                    Timestamp(i64::MAX / 2),
                    Keypair::from_secret([1; 32]).public(),
                    vec![Member::for_province(
                        region,
                        node.public(),
                        operator.public(),
                        vec![],
                    )],
                ),
                catalogue: Catalogue::embedded().unwrap(),
                node,
                operator,
                publisher: Keypair::from_secret([32; 32]),
                region,
                seq: 0,
                prev: GENESIS_PREV_HASH,
                ledger: Ledger::new(),
            }
        }

        /// Seals `body` at the next position (by the operator, or by the publishing
        /// department), without admitting it.
        fn seal_next(&self, by_operator: bool, body: &Body) -> Vec<u8> {
            let (author, key) = if by_operator {
                (
                    DepartmentId {
                        region: self.region,
                        unit: OPERATOR_UNIT.into(),
                    },
                    &self.operator,
                )
            } else {
                (
                    DepartmentId::new(self.region, "pub", "d").unwrap(),
                    &self.publisher,
                )
            };
            let (bytes, sig) = sign_body(FED, key, body);
            let seq = self.seq + 1;
            let at = AppendPosition {
                region: self.region,
                seq,
                prev_hash: self.prev,
                timestamp: Timestamp(1_790_000_000_000 + seq as i64),
            };
            seal(FED, &self.node, &at, author, bytes, sig).unwrap()
        }

        /// Seals `body`, admits and applies it to the store as the writer does (and to
        /// the ledger), and returns the updates.
        fn record(&mut self, store: &Store, by_operator: bool, body: &Body) -> Vec<Update> {
            let env = self.seal_next(by_operator, body);
            self.seq += 1;
            self.prev = envelope_hash(FED, &env);
            let rules = Rules {
                manifest: &self.manifest,
                catalogue: &self.catalogue,
            };
            let Ok(Admission::Accept(v)) = admit(rules, store, &env) else {
                panic!("not admitted: {body:?}");
            };
            let updates = effects(rules, store, &v).unwrap();
            store.apply(&updates).unwrap();
            assert!(matches!(
                self.ledger.ingest(rules, &env),
                Ok(Admission::Accept(_))
            ));
            updates
        }

        /// Amends `id` to the test entry with `summary` (a correction of the summary).
        fn amend_summary(&mut self, store: &Store, id: EntryId, summary: &str) {
            self.record(
                store,
                false,
                &Body::ListEntryAmended {
                    entry: id,
                    amended: entry(summary),
                    reason: "更正".into(),
                },
            );
        }

        /// The operator registers the publishing department with `roles`.
        fn register_publisher(&mut self, store: &Store, roles: Vec<Role>) {
            let body = Body::DepartmentRegistered {
                department: DepartmentId::new(self.region, "pub", "d").unwrap(),
                name: "认定部门".into(),
                roles,
                key: self.publisher.public(),
            };
            self.record(store, true, &body);
        }

        /// Publishes `entry` and returns its id.
        fn publish(&mut self, store: &Store, entry: ListEntry) -> EntryId {
            self.record(store, false, &Body::ListEntryPublished(entry))
                .iter()
                .find_map(|u| match u {
                    Update::Entry(e) => Some(e.id),
                    _ => None,
                })
                .unwrap()
        }
    }

    /// A new store whose publishing department is registered with `roles`.
    fn store_with_publisher(roles: Vec<Role>) -> (tempfile::TempDir, Store, World) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = World::new();
        w.register_publisher(&store, roles);
        (dir, store, w)
    }

    fn entry(summary: &str) -> ListEntry {
        let d = |s: &str| Date::parse(s).unwrap();
        ListEntry {
            category: Category::Black(BlackCategory::MaliciousWageArrears),
            subject: Subject::Organisation {
                uscc: "91350100M000100Y43".into(),
                name: "某某建筑劳务有限公司".into(),
                check_exemption: None,
            },
            related_persons: vec![],
            basis: Basis {
                document_no: "沪人社〔2026〕1号".into(),
                authority: "人力资源社会保障局".into(),
                decided_on: d("2026-01-05"),
                legal_basis: "《保障农民工工资支付条例》第四十八条".into(),
            },
            effective_from: d("2026-01-05"),
            expires_on: d("2029-01-05"),
            requested_measures: vec![],
            findings: vec![],
            summary: summary.into(),
        }
    }

    fn stored_value(store: &Store, id: &EntryId) -> Vec<u8> {
        store.kv.get(&id_key(b'E', &id.0.0)).unwrap().unwrap()
    }

    /// The inbox's index: an objection marks its issuer from the filing day until it is
    /// resolved, in the store exactly as in the ledger; a store that lost the index (a
    /// format 7 store has none) rebuilds the same marks when it opens.
    #[test]
    fn the_inbox_index_follows_the_ledger_and_is_rebuilt_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let filed = Date::parse("2026-09-20").unwrap();
        let later = Date::parse("2027-01-01").unwrap();
        let objection = {
            let store = Store::open(dir.path()).unwrap();
            w.register_publisher(&store, vec![Role::Publisher, Role::ObjectionHandler]);
            let id = w.publish(&store, entry(""));
            assert!(store.marks_due(w.region, later, 10).unwrap().0.is_empty());
            let updates = w.record(
                &store,
                false,
                &Body::ObjectionFiled {
                    case_no: "异议〔2026〕2号".into(),
                    target: ObjectionTarget::Entry(id),
                    grounds: "理由".into(),
                    filed_on: filed,
                },
            );
            let (marks, more) = store.marks_due(w.region, later, 10).unwrap();
            assert_eq!(marks, w.ledger.marks_due(w.region, later));
            assert_eq!(marks.len(), 1);
            assert_eq!(marks[0].1, filed);
            assert!(!more);
            // The mark carries the task's whole id; a mark written before marks did
            // (an empty value) is resolved by its key's prefix to the same task, and a
            // value that does not extend the key's prefix is refused as corrupt.
            let (mark, value) = store.kv.scan_prefix(b"G").unwrap().next().unwrap().unwrap();
            assert_eq!(value.as_slice(), task_id(&marks[0].0));
            store.kv.insert(&mark, &[]).unwrap();
            assert_eq!(store.marks_due(w.region, later, 10).unwrap().0, marks);
            store.kv.insert(&mark, &[0xee; 32]).unwrap();
            let refused = store.marks_due(w.region, later, 10).unwrap_err();
            assert!(matches!(refused, StoreError::Corrupt(_)), "{refused}");
            store.kv.insert(&mark, &value).unwrap();
            assert_eq!(store.marks_due(w.region, later, 10).unwrap().0, marks);
            // Not due before the filing day.
            assert!(
                store
                    .marks_due(w.region, Date::parse("2026-09-19").unwrap(), 10)
                    .unwrap()
                    .0
                    .is_empty()
            );
            store.sync().unwrap();
            updates
                .iter()
                .find_map(|u| match u {
                    Update::Objection(o, _) => Some(*o),
                    _ => None,
                })
                .unwrap()
        };
        // Lose the index, as a store of format 7 would not have it.
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            for prefix in [b"G"] {
                for kv in store.kv.scan_prefix(prefix).unwrap() {
                    batch.remove(kv.unwrap().0);
                }
            }
            batch.remove(b"Mtasks2".to_vec());
            store.kv.apply(batch).unwrap();
            store.sync().unwrap();
            assert!(store.marks_due(w.region, later, 10).unwrap().0.is_empty());
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.marks_due(w.region, later, 10).unwrap().0,
            w.ledger.marks_due(w.region, later)
        );
        w.record(
            &store,
            false,
            &Body::ObjectionResolved {
                objection,
                outcome: ObjectionOutcome::Upheld,
                note: "维持".into(),
            },
        );
        assert!(store.marks_due(w.region, later, 10).unwrap().0.is_empty());
        assert!(w.ledger.marks_due(w.region, later).is_empty());
        assert!(store.kv.scan_prefix(b"G").unwrap().next().is_none());
    }

    /// Departments kept between reads never outlive a write: after a department is read
    /// (and kept), its revocation is what the next read gives, and its next
    /// publication is refused at admission; the write moves the cache's generation on
    /// (a read begun before it is not kept); the cache stays within its bound.
    #[test]
    fn a_kept_department_gives_way_to_its_revocation() {
        use credfed_protocol::ledger::StateView;
        let (_dir, store, mut w) = store_with_publisher(vec![Role::Publisher]);
        let publisher = DepartmentId::new(w.region, "pub", "d").unwrap();
        let held = store.department(&publisher).unwrap().unwrap();
        assert!(held.revoked_at.is_none());
        assert_eq!(store.department(&publisher).unwrap().as_ref(), Some(&held));
        assert_eq!(store.departments.read().unwrap().held.len(), 1, "kept");
        let generation = store.departments.read().unwrap().generation;
        w.record(
            &store,
            true,
            &Body::DepartmentRevoked {
                department: publisher.clone(),
                reason: "撤销".into(),
            },
        );
        // The write moved the generation on: a read begun before it is not kept.
        assert_ne!(store.departments.read().unwrap().generation, generation);
        let now = store.department(&publisher).unwrap().unwrap();
        assert!(
            now.revoked_at.is_some(),
            "the revocation is read, not the kept record"
        );
        assert_eq!(Some(&now), w.ledger.department(&publisher).as_ref());
        // The revoked department's next publication is refused.
        let env = w.seal_next(false, &Body::ListEntryPublished(entry("")));
        let rules = Rules {
            manifest: &w.manifest,
            catalogue: &w.catalogue,
        };
        assert!(
            admit(rules, &store, &env).is_err(),
            "a revoked author is refused"
        );
        // The bound: reads of as many departments as it holds, and more, never exceed it.
        {
            let mut cached = store.departments.write().unwrap();
            cached.held.clear();
            for i in 0..DEPARTMENT_CACHE_ENTRIES {
                let mut d = now.clone();
                d.department = DepartmentId::new(w.region, &format!("u{i}"), "d").unwrap();
                cached.held.insert(d.department.clone(), d);
            }
        }
        store.department(&publisher).unwrap();
        let held = store.departments.read().unwrap().held.len();
        assert!(held <= DEPARTMENT_CACHE_ENTRIES, "{held} kept");
        assert_eq!(store.department(&publisher).unwrap(), Some(now));
    }

    /// A check hands the envelope an entry's content was read from over to the
    /// evidence instead of reading it again: the answer from the store is the in-memory
    /// ledger's (whose folds are whole and hand over no envelope) to the byte, after a
    /// publication and after an amendment moves the content to a later envelope, and
    /// the envelope handed over is the one stored at its position.
    #[test]
    fn a_check_reuses_the_content_envelope_and_answers_as_the_ledger() {
        use credfed_protocol::catalogue::MeasureDomain;
        use credfed_protocol::ledger::StateView;
        let (_dir, store, mut w) = store_with_publisher(vec![Role::Publisher]);
        let id = w.publish(&store, entry(""));
        let subject = entry("").subject.key();
        let now = Timestamp(1_790_000_000_000 + 1_000_000);
        let same_answers = |store: &Store, w: &World| {
            let rules = Rules {
                manifest: &w.manifest,
                catalogue: &w.catalogue,
            };
            let (fold, handed) = store.entry_with_envelope(&id).unwrap().unwrap();
            let (pos, bytes) = handed.expect("the store reads the content from an envelope");
            assert_eq!(Some(bytes), store.envelope_at(pos).unwrap());
            assert!(
                fold.evidence.contains(&pos),
                "{pos:?} is the entry's evidence"
            );
            let mut carried = 0;
            for domain in MeasureDomain::ALL {
                let from_store =
                    credfed_protocol::check::check(rules, store, &subject, domain, now).unwrap();
                let from_ledger =
                    credfed_protocol::check::check(rules, &w.ledger, &subject, domain, now)
                        .unwrap();
                assert_eq!(from_store, from_ledger, "{domain:?}");
                carried += usize::from(from_store.evidence.iter().any(|e| e.pos == pos));
            }
            assert!(
                carried > 0,
                "some domain's answer carries the content envelope"
            );
            pos
        };
        let published_at = same_answers(&store, &w);
        w.amend_summary(&store, id, "更正后的摘要");
        let amended_at = same_answers(&store, &w);
        assert!(
            amended_at.seq > published_at.seq,
            "the amendment carries the content"
        );
    }

    /// Publication, amendment, objection filed and resolved, revocation: after each,
    /// the fold read back is the ledger's, and the stored value is the fold less its
    /// content.
    #[test]
    fn an_entry_reads_back_whole_through_its_life() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = World::new();
        w.register_publisher(&store, vec![Role::Publisher, Role::ObjectionHandler]);
        let id = w.publish(&store, entry(""));
        let same = |store: &Store, w: &World| {
            let read = store.entry(&id).unwrap().unwrap();
            assert_eq!(Some(&read), w.ledger.entry(&id).as_ref());
            let full = enc(&read).len();
            let content = enc(&read.content).len();
            let stored = stored_value(store, &id).len();
            assert!(
                stored + content <= full + 30,
                "stored {stored} bytes for a fold of {full} with {content} of content"
            );
        };
        same(&store, &w);
        w.amend_summary(&store, id, "更正后的摘要");
        same(&store, &w);
        assert_eq!(
            store.entry(&id).unwrap().unwrap().content.summary,
            "更正后的摘要"
        );
        let updates = w.record(
            &store,
            false,
            &Body::ObjectionFiled {
                case_no: "异议〔2026〕1号".into(),
                target: ObjectionTarget::Entry(id),
                grounds: "理由".into(),
                filed_on: Date::parse("2026-09-20").unwrap(),
            },
        );
        same(&store, &w);
        let objection = updates
            .iter()
            .find_map(|u| match u {
                Update::Objection(o, _) => Some(*o),
                _ => None,
            })
            .unwrap();
        w.record(
            &store,
            false,
            &Body::ObjectionResolved {
                objection,
                outcome: ObjectionOutcome::Upheld,
                note: "维持".into(),
            },
        );
        same(&store, &w);
        w.record(
            &store,
            false,
            &Body::ListEntryRevoked {
                entry: id,
                reason: "撤销".into(),
            },
        );
        same(&store, &w);
        assert_eq!(store.all_entries().count(), 1);
        assert_eq!(
            store.all_entries().next().unwrap().unwrap(),
            w.ledger.entry(&id).unwrap()
        );

        // A stored fold pointing at a record that does not carry its content, or whose
        // digest does not match, is refused as corrupt — never answered.
        let good: StoredEntry = dec(&stored_value(&store, &id), "entry").unwrap();
        for bad in [
            StoredEntry {
                content_at: RecordPos {
                    region: w.region,
                    seq: 1,
                },
                ..good.clone()
            },
            StoredEntry {
                content_at: RecordPos {
                    region: w.region,
                    seq: 99,
                },
                ..good.clone()
            },
            StoredEntry {
                content_at: good.published.pos,
                ..good.clone()
            },
            StoredEntry {
                content_digest: [0; 8],
                ..good.clone()
            },
        ] {
            store.kv.insert(&id_key(b'E', &id.0.0), &enc(&bad)).unwrap();
            assert!(
                matches!(store.entry(&id), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }

    /// Every subject with `S` keys has its marker, and an empty one (a marker's list is
    /// the subject's whole index): otherwise a check would read the subject as on
    /// fewer lists than its keys say.
    fn assert_every_indexed_subject_is_marked(store: &Store) {
        for kv in store.kv.scan_prefix(b"S").unwrap() {
            let (k, _) = kv.unwrap();
            let marker = subject_marker_for_prefix(subject_of_index_key(&k).unwrap());
            let marker = store.kv.get(&marker).unwrap();
            let marker =
                marker.unwrap_or_else(|| panic!("subject index key {k:?} without its marker"));
            assert!(
                marker.is_empty(),
                "subject index key {k:?} beside a marker's list"
            );
        }
    }

    /// A format-10 store (no subject markers) marks its indexed subjects at open: the
    /// subject's references read back as before. Written through an entry's life
    /// (publication, an amendment moving it to another subject), every indexed subject
    /// has its marker, and the subject it left keeps one and answers no references.
    #[test]
    fn a_format_10_store_marks_its_indexed_subjects_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let (subject, moved_to, refs_now);
        {
            let store = Store::open(dir.path()).unwrap();
            w.register_publisher(&store, vec![Role::Publisher]);
            let id = w.publish(&store, entry(""));
            subject = entry("").subject.key();
            let mut other = entry("");
            other.subject = Subject::Organisation {
                uscc: "91350100M000200X2K".into(),
                name: "另一建筑劳务有限公司".into(),
                check_exemption: None,
            };
            moved_to = other.subject.key();
            w.record(
                &store,
                false,
                &Body::ListEntryAmended {
                    entry: id,
                    amended: other,
                    reason: "主体更正".into(),
                },
            );
            let mut again = entry("再次");
            again.basis.document_no = "沪人社〔2026〕2号".into();
            w.publish(&store, again);
            refs_now = store.subject_refs(&subject).unwrap();
            assert_eq!(refs_now.len(), 1, "{refs_now:?}");
            assert_eq!(
                store.subject_refs(&moved_to).unwrap(),
                w.ledger.subject_refs(&moved_to)
            );
            assert_every_indexed_subject_is_marked(&store);
            // As format 10 stored it: the references as `S` keys, no markers. Without
            // its marker a subject reads as on no list — what the migration must
            // prevent.
            let markers: Vec<(Vec<u8>, Vec<u8>)> = store
                .kv
                .scan_prefix(b"s")
                .unwrap()
                .map(|kv| kv.unwrap())
                .collect();
            assert_eq!(markers.len(), 2, "one marker for each subject ever indexed");
            for (k, v) in &markers {
                let mut prefix = k.clone();
                prefix[0] = b'S';
                for r in subject_marker_refs(v).unwrap().expect("listed") {
                    store
                        .kv
                        .insert(&[prefix.as_slice(), r].concat(), &[])
                        .unwrap();
                }
                store.kv.remove(k).unwrap();
            }
            assert!(store.subject_refs(&subject).unwrap().is_empty());
            store.kv.insert(b"Mformat", &10u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.subject_refs(&subject).unwrap(), refs_now);
        assert_eq!(
            store.subject_refs(&moved_to).unwrap(),
            w.ledger.subject_refs(&moved_to)
        );
        assert_every_indexed_subject_is_marked(&store);
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
    }

    /// A format-9 store (disclosures not indexed by subject) indexes them at open: the
    /// subject's references then name the disclosure, as a store of this format does.
    #[test]
    fn a_format_9_store_indexes_its_disclosures_by_subject_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let subject;
        let refs_now;
        {
            let store = Store::open(dir.path()).unwrap();
            w.register_publisher(&store, vec![Role::Publisher]);
            let d = credfed_protocol::record::Disclosure {
                kind: credfed_protocol::record::DisclosureKind::Penalty,
                subject: entry("").subject,
                decision_no: "沪罚〔2026〕1号".into(),
                authority: "上海市市场监督管理局".into(),
                decided_on: Date::parse("2026-09-01").unwrap(),
                summary: "罚款".into(),
                public_until: Date::parse("2026-12-01").unwrap(),
            };
            subject = d.subject.key();
            w.record(&store, false, &Body::DecisionDisclosed(d));
            refs_now = store.subject_refs(&subject).unwrap();
            assert!(
                refs_now
                    .iter()
                    .any(|r| matches!(r, SubjectRef::Disclosure(_))),
                "{refs_now:?}"
            );
            // As format 9 stored it: no index key for the disclosure, and no subject
            // markers (format 11 added them).
            let mut key = subject_prefix(&subject);
            for r in &refs_now {
                if matches!(r, SubjectRef::Disclosure(_)) {
                    key.extend_from_slice(&enc(r));
                }
            }
            store.kv.remove(&key).unwrap();
            store.kv.remove(&subject_marker_key(&subject)).unwrap();
            assert!(store.subject_refs(&subject).unwrap().is_empty());
            store.kv.insert(b"Mformat", &9u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.subject_refs(&subject).unwrap(), refs_now);
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
    }

    /// A format-8 store (folds without repair applications) is rewritten at open: the
    /// same folds read back.
    #[test]
    fn a_format_8_store_gives_its_entry_folds_repair_applications_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let id;
        {
            let store = Store::open(dir.path()).unwrap();
            w.register_publisher(&store, vec![Role::Publisher]);
            id = w.publish(&store, entry(""));
            // As format 8 stored it: no repair applications.
            let current: StoredEntry = dec(&stored_value(&store, &id), "entry").unwrap();
            let old = legacy::StoredEntryV8::from_current(current);
            store.kv.insert(&id_key(b'E', &id.0.0), &enc(&old)).unwrap();
            store.kv.insert(b"Mformat", &8u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.entry(&id).unwrap(), w.ledger.entry(&id));
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
        // Opening again finds nothing left to rewrite.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.entry(&id).unwrap(), w.ledger.entry(&id));
    }

    /// A format-5 store (folds with their content) is rewritten at open: the same folds
    /// read back, stored without content.
    #[test]
    fn a_format_5_store_slims_its_entry_folds_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let id;
        {
            let store = Store::open(dir.path()).unwrap();
            w.register_publisher(&store, vec![Role::Publisher]);
            id = w.publish(&store, entry(""));
            w.record(
                &store,
                false,
                &Body::ListEntryAmended {
                    entry: id,
                    amended: entry("改"),
                    reason: "更正".into(),
                },
            );
            // As format 5 stored it: the whole fold.
            let fold = legacy::EntryFoldV5::from_fold(&w.ledger.entry(&id).unwrap());
            store
                .kv
                .insert(&id_key(b'E', &id.0.0), &enc(&fold))
                .unwrap();
            store.kv.insert(b"Mformat", &5u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.entry(&id).unwrap(), w.ledger.entry(&id));
        let stored: StoredEntry = dec(&stored_value(&store, &id), "entry").unwrap();
        assert_eq!(
            stored.content_at.seq, 3,
            "the amendment carries the content"
        );
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
    }
}

/// A subject marker's list against the subject index it stands for: a reference missing
/// from the list would answer "on no list".
#[cfg(test)]
mod subject_marker_tests {
    use super::*;
    use credfed_protocol::crypto::Hash256;
    use credfed_protocol::record::{EntryId, EvaluationId};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn subject(i: u8) -> SubjectKey {
        SubjectKey::Uscc(format!("91110000MA0000{i:03}X"))
    }

    /// References from a pool larger than the marker's cap, of two kinds.
    fn reference(i: u8) -> SubjectRef {
        let id = Hash256([i.wrapping_mul(37); 32]);
        if i.is_multiple_of(3) {
            SubjectRef::Evaluation(EvaluationId(id))
        } else {
            SubjectRef::Entry(EntryId(id))
        }
    }

    /// The subject's `S` keys, read past its marker.
    fn scanned(store: &Store, key: &SubjectKey) -> Vec<SubjectRef> {
        let prefix = subject_prefix(key);
        store
            .kv
            .scan_prefix(&prefix)
            .unwrap()
            .map(|kv| dec(&kv.unwrap().0[prefix.len()..], "subject ref").unwrap())
            .collect()
    }

    fn marker(store: &Store, key: &SubjectKey) -> Option<Vec<u8>> {
        store.kv.get(&subject_marker_key(key)).unwrap()
    }

    fn sorted(refs: &BTreeSet<SubjectRef>) -> Vec<SubjectRef> {
        let mut v: Vec<SubjectRef> = refs.iter().copied().collect();
        v.sort_by_key(enc);
        v
    }

    fn open(engine: Engine, dir: &Path) -> Store {
        let options = StoreOptions {
            engine,
            cache_bytes: 8 << 20,
            compact: false,
        };
        Store::open_with(dir, &options).unwrap()
    }

    /// One change: subject, reference, indexed (true) or unindexed.
    type Change = (u8, u8, bool);

    fn updates(batch: &[Change]) -> Vec<Update> {
        batch
            .iter()
            .map(|&(s, r, indexed)| {
                if indexed {
                    Update::Subject(subject(s), reference(r))
                } else {
                    Update::Unindex(subject(s), reference(r))
                }
            })
            .collect()
    }

    /// Every subject answers what the model holds, in one form: within the cap its
    /// marker's list and no `S` keys, past it an empty marker and the keys.
    fn assert_answers(store: &Store, model: &BTreeMap<u8, BTreeSet<SubjectRef>>) {
        for s in 0..3u8 {
            let key = subject(s);
            let want = model.get(&s).map(sorted).unwrap_or_default();
            assert_eq!(store.subject_refs(&key).unwrap(), want, "subject {s}");
            let Some(value) = marker(store, &key) else {
                assert!(!model.contains_key(&s), "subject {s} indexed, no marker");
                assert!(
                    scanned(store, &key).is_empty(),
                    "subject {s}: keys, no marker"
                );
                continue;
            };
            match subject_marker_refs(&value).unwrap() {
                Some(listed) => {
                    assert!(want.len() <= SUBJECT_MARKER_REFS_MAX, "subject {s}");
                    assert_eq!(listed.len(), want.len(), "subject {s}");
                    assert!(
                        scanned(store, &key).is_empty(),
                        "subject {s}: list and keys"
                    );
                }
                None => {
                    assert!(want.len() > SUBJECT_MARKER_REFS_MAX, "subject {s}");
                    assert_eq!(scanned(store, &key), want, "subject {s}'s keys");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Batches of indexing and unindexing, in any order and on every engine (redb
        /// reads its writes not yet committed, which the list is built from): after
        /// each, and after reopening, every subject answers what was indexed. Two
        /// subjects share a pool of 110 references, about 62 % of them indexed at a
        /// time once a run is under way: runs cross the cap of 64 both ways, often.
        #[test]
        fn a_subject_marker_always_lists_what_its_index_holds(
            batches in prop::collection::vec(
                prop::collection::vec((0u8..2, 0u8..110, prop::bool::weighted(0.62)), 1..60),
                1..16,
            )
        ) {
            for engine in Engine::ALL {
                let dir = tempfile::tempdir().unwrap();
                let store = open(engine, dir.path());
                let mut model: BTreeMap<u8, BTreeSet<SubjectRef>> = BTreeMap::new();
                for batch in &batches {
                    store.apply(&updates(batch)).unwrap();
                    for &(s, r, indexed) in batch {
                        let refs = model.entry(s).or_default();
                        if indexed {
                            refs.insert(reference(r));
                        } else {
                            refs.remove(&reference(r));
                        }
                    }
                    assert_answers(&store, &model);
                }
                store.sync().unwrap();
                drop(store);
                assert_answers(&open(engine, dir.path()), &model);
            }
        }
    }

    proptest! {
        /// Any bytes as a marker's value: refused or read, never a panic; what is read
        /// is exactly what the writer would write for it, so a damaged value cannot be
        /// read as another list.
        #[test]
        fn a_subject_marker_value_is_read_only_in_the_writers_form(
            tagged in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..400),
            listed in prop::collection::btree_set(
                prop::collection::vec(any::<u8>(), 1..40), 0..8),
        ) {
            // Half of the values carry the list's tag, so that their lengths are read.
            let value = if tagged { [&[SUBJECT_MARKER_LIST][..], &tail].concat() } else { tail };
            if let Ok(Some(refs)) = subject_marker_refs(&value) {
                let set: BTreeSet<Vec<u8>> = refs.iter().map(|r| r.to_vec()).collect();
                prop_assert_eq!(subject_marker_value(&set), value);
            }
            let written = subject_marker_value(&listed);
            let read = subject_marker_refs(&written).unwrap().unwrap();
            prop_assert_eq!(read, listed.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }
    }

    /// A subject past the cap comes back under it: listed again, its keys removed.
    #[test]
    fn a_subject_past_the_cap_is_listed_again_once_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(Engine::default(), dir.path());
        let max = SUBJECT_MARKER_REFS_MAX as u8;
        let all: Vec<Change> = (0..=max).map(|r| (0, r, true)).collect();
        store.apply(&updates(&all)).unwrap();
        let value = marker(&store, &subject(0)).unwrap();
        assert!(value.is_empty(), "{} references: as keys", max + 1);
        let all_refs = store.subject_refs(&subject(0)).unwrap();
        assert_eq!(all_refs.len(), max as usize + 1);
        assert_eq!(all_refs, scanned(&store, &subject(0)));
        store.apply(&updates(&[(0, 5, false)])).unwrap();
        let value = marker(&store, &subject(0)).unwrap();
        let listed = subject_marker_refs(&value).unwrap().expect("a list again");
        assert_eq!(listed.len(), max as usize);
        assert!(scanned(&store, &subject(0)).is_empty(), "the keys removed");
        let mut rest = all_refs;
        rest.retain(|r| *r != reference(5));
        assert_eq!(store.subject_refs(&subject(0)).unwrap(), rest);
    }

    /// A subject as format 11 wrote it (its references as keys, an empty marker) reads
    /// the keys, and becomes a list holding them, the keys removed, at its next change;
    /// a format-11 store opens as format 12 and answers as before.
    #[test]
    fn a_format_11_marker_reads_the_keys_until_its_subject_changes() {
        let dir = tempfile::tempdir().unwrap();
        let before;
        {
            let store = open(Engine::default(), dir.path());
            // As format 11 stored it: the keys, every marker empty.
            for (s, r) in [(0, 1), (0, 2), (1, 4)] {
                let key = [subject_prefix(&subject(s)), enc(&reference(r))].concat();
                store.kv.insert(&key, &[]).unwrap();
                store
                    .kv
                    .insert(&subject_marker_key(&subject(s)), &[])
                    .unwrap();
            }
            before = store.subject_refs(&subject(0)).unwrap();
            assert_eq!(before, sorted(&[reference(1), reference(2)].into()));
            store.kv.insert(b"Mformat", &11u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
        }
        let store = open(Engine::default(), dir.path());
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
        assert_eq!(store.subject_refs(&subject(0)).unwrap(), before);
        store.apply(&updates(&[(0, 3, true)])).unwrap();
        let value = marker(&store, &subject(0)).unwrap();
        let listed = subject_marker_refs(&value).unwrap().expect("a list now");
        assert_eq!(listed.len(), 3, "the keys written before and the new one");
        assert!(scanned(&store, &subject(0)).is_empty(), "its keys removed");
        assert_eq!(
            store.subject_refs(&subject(0)).unwrap(),
            sorted(&[reference(1), reference(2), reference(3)].into())
        );
        // The subject that did not change keeps its keys and reads them.
        assert_eq!(scanned(&store, &subject(1)), vec![reference(4)]);
        assert_eq!(store.subject_refs(&subject(1)).unwrap(), vec![reference(4)]);
    }

    /// A marker's value that is not a list the writer could have written is refused as
    /// corrupt — never read as fewer references, which would answer "on no list".
    #[test]
    fn a_damaged_subject_marker_is_refused_not_read_as_fewer_references() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(Engine::default(), dir.path());
        store
            .apply(&updates(&[(0, 1, true), (0, 2, true)]))
            .unwrap();
        let key = subject_marker_key(&subject(0));
        let good = marker(&store, &subject(0)).unwrap();
        let r1 = enc(&reference(1));
        let r2 = enc(&reference(2));
        let (lo, hi) = if r1 < r2 { (r1, r2) } else { (r2, r1) };
        let list = |refs: &[&Vec<u8>]| {
            let mut v = vec![SUBJECT_MARKER_LIST];
            for r in refs {
                v.push(r.len() as u8);
                v.extend_from_slice(r);
            }
            v
        };
        assert_eq!(good, list(&[&lo, &hi]), "the writer's own form");
        let mut too_many = vec![SUBJECT_MARKER_LIST];
        for i in 0..=SUBJECT_MARKER_REFS_MAX as u8 {
            let r = enc(&reference(i));
            too_many.push(r.len() as u8);
            too_many.extend_from_slice(&r);
        }
        let mut truncated = good.clone();
        truncated.pop();
        let mut bad_tag = good.clone();
        bad_tag[0] = 2;
        for (what, bad) in [
            ("truncated", truncated),
            ("unknown tag", bad_tag),
            ("out of order", list(&[&hi, &lo])),
            ("repeated", list(&[&lo, &lo])),
            ("past the cap", too_many),
        ] {
            store.kv.insert(&key, &bad).unwrap();
            assert!(
                matches!(store.subject_refs(&subject(0)), Err(StoreError::Corrupt(_))),
                "{what}"
            );
            assert!(
                matches!(
                    store.apply(&updates(&[(0, 9, true)])),
                    Err(StoreError::Corrupt(_))
                ),
                "the writer refuses to build on a damaged list ({what})"
            );
        }
        // A reference that decodes as nothing the store holds is refused by decoding.
        store.kv.insert(&key, &list(&[&vec![0xff; 3]])).unwrap();
        assert!(store.subject_refs(&subject(0)).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credfed_protocol::merkle::{MemoryTree, TreeNodes, inclusion_proof, root_at};
    use credfed_protocol::time::Timestamp;

    #[test]
    fn note_kinds_have_key_prefixes_of_their_own() {
        let mut seen = std::collections::BTreeSet::new();
        for p in KEY_PREFIXES {
            assert!(seen.insert(*p), "prefix {:?} listed twice", *p as char);
        }
        for note in [NOTE_RESTORED, NOTE_MANIFEST, NOTE_RUNS] {
            assert_eq!(
                KEY_PREFIXES.iter().filter(|p| **p == note).count(),
                1,
                "{:?}",
                note as char
            );
        }
        // The notes beside the inbox's index and receive times: readers of those
        // prefixes never meet them.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for note in [NOTE_RESTORED, NOTE_MANIFEST, NOTE_RUNS] {
            store.set_note(note, sh(), "some text").unwrap();
        }
        assert!(
            store
                .marks_due(sh(), Timestamp(0).date_cst(), 10)
                .unwrap()
                .0
                .is_empty()
        );
        assert!(store.heads().unwrap().is_empty());
        assert_eq!(
            store.note(NOTE_RUNS, sh()).unwrap().as_deref(),
            Some("some text")
        );
    }

    fn sh() -> RegionCode {
        RegionCode::new(310000, "r").unwrap()
    }

    fn append(store: &Store, seq: u64, bytes: &[u8]) {
        store
            .apply(&[Update::Append {
                pos: RecordPos { region: sh(), seq },
                head: Head {
                    seq,
                    hash: credfed_protocol::crypto::sha256(&[bytes]),
                    timestamp: Timestamp(seq as i64),
                },
                bytes: bytes.to_vec(),
            }])
            .unwrap();
    }

    struct Nodes<'a>(&'a Store);
    impl TreeNodes for Nodes<'_> {
        type Error = String;
        fn node(&self, level: u8, index: u64) -> Result<Hash256, String> {
            self.0
                .tree_node(sh(), level, index)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no node {level}/{index}"))
        }
    }

    /// A region's head kept in memory follows every append, a read that raced an append
    /// (an older head) never replaces it, and a reopened store reads the same head.
    #[test]
    fn kept_heads_follow_appends_and_never_go_back() {
        use credfed_protocol::ledger::StateView;
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(StateView::head(&store, sh()).unwrap(), None);
            append(&store, 1, b"one");
            assert_eq!(StateView::head(&store, sh()).unwrap().unwrap().seq, 1);
            append(&store, 2, b"two");
            let two = StateView::head(&store, sh()).unwrap().unwrap();
            assert_eq!(two.seq, 2);
            store.remember_head(
                sh(),
                Head {
                    seq: 1,
                    hash: Hash256([0; 32]),
                    timestamp: Timestamp(1),
                },
            );
            assert_eq!(StateView::head(&store, sh()).unwrap(), Some(two));
            assert_eq!(store.heads().unwrap()[&sh()], two, "the table agrees");
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(StateView::head(&store, sh()).unwrap().unwrap().seq, 2);
    }

    /// The equivocators read once are kept, and every way a new one is recorded (a
    /// proof, or the update an evidence record applies) shows in the next read, also
    /// after reopening.
    #[test]
    fn equivocators_kept_between_reads_follow_every_new_proof() {
        use credfed_protocol::ledger::{EquivocationProof, StateView};
        let dir = tempfile::tempdir().unwrap();
        let gd = RegionCode::new(440000, "r").unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(StateView::equivocators(&store).unwrap().is_empty());
            assert!(StateView::equivocators(&store).unwrap().is_empty());
            store
                .record_equivocation(&EquivocationProof {
                    region: sh(),
                    seq: 3,
                    first: vec![1],
                    second: vec![2],
                })
                .unwrap();
            assert_eq!(StateView::equivocators(&store).unwrap(), vec![sh()]);
            store.apply(&[Update::Equivocator(gd)]).unwrap();
            assert_eq!(StateView::equivocators(&store).unwrap(), vec![sh(), gd]);
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(StateView::equivocators(&store).unwrap(), vec![sh(), gd]);
    }

    /// The stored tree follows the log append by append, gives the same roots and proofs
    /// as a tree built in memory, and refuses an append out of order.
    #[test]
    fn the_tree_follows_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<Vec<u8>> = (0..37u8).map(|i| vec![i; 1 + i as usize]).collect();
        for (i, d) in data.iter().enumerate() {
            append(&store, i as u64 + 1, d);
        }
        let memory = MemoryTree::from_data(&data);
        let f = store.tree_frontier(sh()).unwrap();
        assert_eq!((f.size, f.root()), (37, memory.root()));
        for size in [1, 2, 5, 16, 37] {
            assert_eq!(
                root_at(&Nodes(&store), size).unwrap(),
                root_at(&memory, size).unwrap()
            );
            for leaf in [0, size / 2, size - 1] {
                assert_eq!(
                    inclusion_proof(&Nodes(&store), leaf, size).unwrap(),
                    inclusion_proof(&memory, leaf, size).unwrap()
                );
            }
            assert_eq!(
                credfed_protocol::merkle::consistency_proof(&Nodes(&store), 3, size.max(3))
                    .unwrap(),
                credfed_protocol::merkle::consistency_proof(&memory, 3, size.max(3)).unwrap()
            );
        }
        // Every complete subtree, stored (level 4 up) or hashed from the log (below),
        // is the memory tree's; an incomplete one is absent.
        for level in 0..6u8 {
            for index in 0..(37u64 >> level) {
                assert_eq!(
                    store.tree_node(sh(), level, index).unwrap(),
                    Some(memory.node(level, index).unwrap()),
                    "{level}/{index}"
                );
            }
            assert_eq!(store.tree_node(sh(), level, 37u64 >> level).unwrap(), None);
        }
        assert_eq!(store.tree_node(sh(), 3, u64::MAX).unwrap(), None);
        // Only the levels from STORED_TREE_LEVEL up take room: of 37 leaves, two
        // complete subtrees of 16 and one of 32.
        assert_eq!(store.count(b'N'), 3);
        let e = store
            .apply(&[Update::Append {
                pos: RecordPos {
                    region: sh(),
                    seq: 40,
                },
                head: Head {
                    seq: 40,
                    hash: Hash256([0; 32]),
                    timestamp: Timestamp(0),
                },
                bytes: vec![1],
            }])
            .unwrap_err();
        assert!(e.to_string().contains("tree holds 37 leaves"), "{e}");
    }

    /// A format-2 store (logs without trees) is upgraded at open: the trees are built
    /// from the logs and match what appends would have built.
    #[test]
    fn a_format_2_store_gets_its_trees_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<Vec<u8>> = (0..21u8).map(|i| vec![i, i]).collect();
        let expected = {
            let store = Store::open(dir.path()).unwrap();
            for (i, d) in data.iter().enumerate() {
                append(&store, i as u64 + 1, d);
            }
            let f = store.tree_frontier(sh()).unwrap();
            // Back to format 2: no trees.
            for prefix in [b'T', b'N'] {
                let keys: Vec<_> = store
                    .kv
                    .scan_prefix(&[prefix])
                    .unwrap()
                    .map(|kv| kv.unwrap().0)
                    .collect();
                for k in keys {
                    store.kv.remove(&k).unwrap();
                }
            }
            store.kv.insert(b"Mformat", &2u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
            f
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tree_frontier(sh()).unwrap(), expected);
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
        assert!(store.tree_node(sh(), 4, 0).unwrap().is_some());
    }

    /// A format-4 store (every tree level stored) is upgraded at open: the levels
    /// below STORED_TREE_LEVEL are removed, the rest kept, and proofs are the same.
    #[test]
    fn a_format_4_store_drops_its_low_tree_levels_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 3]).collect();
        let memory = MemoryTree::from_data(&data);
        {
            let store = Store::open(dir.path()).unwrap();
            for (i, d) in data.iter().enumerate() {
                append(&store, i as u64 + 1, d);
            }
            // As format 4 stored them: every complete subtree below level 4 too.
            let mut batch = Batch::default();
            for level in 0..STORED_TREE_LEVEL {
                for index in 0..(50u64 >> level) {
                    batch.insert(
                        tree_key(sh(), level, index),
                        memory.node(level, index).unwrap().0,
                    );
                }
            }
            store.kv.apply(batch).unwrap();
            store.kv.insert(b"Mformat", &4u32.to_le_bytes()).unwrap();
            store.sync().unwrap();
            assert_eq!(store.count(b'N'), 50 + 25 + 12 + 6 + 3 + 1);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.count(b'N'), 4, "levels 4 and 5 stay, the rest goes");
        for size in [7, 32, 50] {
            assert_eq!(
                root_at(&Nodes(&store), size).unwrap(),
                root_at(&memory, size).unwrap()
            );
            assert_eq!(
                inclusion_proof(&Nodes(&store), 5, size).unwrap(),
                inclusion_proof(&memory, 5, size).unwrap()
            );
        }
        assert_eq!(
            store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
            &FORMAT_VERSION.to_le_bytes()
        );
    }

    /// A damaged map page or version record is refused as corrupt, never a panic or a
    /// page with misplaced nodes: every truncation and every single-byte change of a
    /// valid encoding.
    #[test]
    fn mangled_map_records_are_refused_not_trusted() {
        use credfed_protocol::map::MapNode;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (id, slot) = PageId::of(5, &Hash256([0xa5; 32]));
        let mut page = MapPage::default();
        page.set(PageNode {
            slot,
            node: MapNode::Leaf {
                key: Hash256([1; 32]),
                value: Hash256([2; 32]),
            },
            first: Some(300),
        });
        page.set(PageNode {
            slot: 1,
            node: MapNode::Internal {
                left: Hash256([3; 32]),
                right: Hash256([4; 32]),
            },
            first: None,
        });
        store
            .put_map_version(sh(), 9, &[(id, page.clone())], Hash256([5; 32]), &[], 1)
            .unwrap();
        assert_eq!(store.map_page(sh(), &id, 9).unwrap(), Some(page.clone()));
        let good = page.encode_stored();
        let mut variants: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for at in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut v = good.clone();
                v[at] ^= flip;
                variants.push(v);
            }
        }
        for bytes in variants {
            store
                .kv
                .insert(&map_page_key(sh(), &id, 9), bytes.as_slice())
                .unwrap();
            match store.map_page(sh(), &id, 9) {
                Ok(Some(read)) => assert!(read.is_well_formed(), "{bytes:?}"),
                Ok(None) => panic!("a stored record read as absent"),
                Err(StoreError::Corrupt(_)) => {}
                Err(e) => panic!("{e}"),
            }
            store
                .kv
                .insert(&map_version_key(sh(), 9), bytes.as_slice())
                .unwrap();
            // Pruning reads version records: a damaged one is an error, not a panic.
            let _ = store.prune_map(sh(), 10, u64::MAX);
        }
    }

    fn redb_options(cache_bytes: u64) -> StoreOptions {
        StoreOptions {
            engine: Engine::Redb,
            cache_bytes,
            compact: false,
        }
    }

    /// Writes `versions` map versions of `region`, each rewriting the pages of 64 keys
    /// (three bands deep) and pruning every version before it, as a witness under load
    /// does.
    fn churn_map(store: &Store, from: u64, versions: u64) {
        use credfed_protocol::map::MapNode;
        for version in from..from + versions {
            let mut pages = BTreeMap::new();
            for k in 0..64u64 {
                let key = credfed_protocol::crypto::sha256(&[&(version * 64 + k).to_be_bytes()]);
                for depth in [5u16, 9, 13] {
                    let (id, slot) = PageId::of(depth, &key);
                    let page: &mut MapPage = pages.entry(id).or_default();
                    page.set(PageNode {
                        slot,
                        node: MapNode::Leaf { key, value: key },
                        first: Some(version),
                    });
                }
            }
            let pages: Vec<_> = pages.into_iter().collect();
            store
                .put_map_version(sh(), version, &pages, Hash256([1; 32]), &[], version)
                .unwrap();
            store.prune_map(sh(), version, u64::MAX).unwrap();
        }
        store.sync().unwrap();
    }

    fn live(store: &Store) -> u64 {
        store.live_bytes().unwrap().values().map(|p| p.bytes).sum()
    }

    /// A migration's walk meets every key under its prefix once, across batch
    /// boundaries, whether it removes, rewrites or keeps them, and nothing else.
    #[test]
    fn bounded_batches_meet_every_key_once() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let kv = Kv::open(dir.path(), engine, 8 << 20).unwrap();
            let mut batch = Batch::default();
            for i in 0..10u8 {
                batch.insert(vec![b'Z', i], [i]);
            }
            batch.insert(b"Y".as_slice(), [0]);
            batch.insert(b"[".as_slice(), [0]);
            kv.apply(batch).unwrap();
            let mut met = Vec::new();
            in_bounded_batches(&kv, b'Z', 3, |k, v, batch| {
                met.push(k[1]);
                match k[1] % 3 {
                    0 => batch.remove(k),
                    1 => batch.insert(k, [v[0] + 100]),
                    _ => {}
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(met, (0..10).collect::<Vec<u8>>(), "{engine:?}");
            let left: Vec<(Vec<u8>, Vec<u8>)> = kv
                .scan_prefix(b"Z")
                .unwrap()
                .map(|kv| kv.unwrap())
                .collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..10u8)
                .filter(|i| i % 3 != 0)
                .map(|i| (vec![b'Z', i], vec![if i % 3 == 1 { i + 100 } else { i }]))
                .collect();
            assert_eq!(left, expected);
            assert!(kv.get(b"Y").unwrap().is_some() && kv.get(b"[").unwrap().is_some());
        }
    }

    /// A listing range whose start lies past its end (a cursor a client made up) reads
    /// nothing, on every engine.
    #[test]
    fn an_inverted_listing_range_is_empty_on_every_engine() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(
                dir.path(),
                &StoreOptions {
                    engine,
                    cache_bytes: 8 << 20,
                    compact: false,
                },
            )
            .unwrap();
            let mut batch = Batch::default();
            batch.insert(b"Zdx5".to_vec(), []);
            store.kv.apply(batch).unwrap();
            for (lo, hi, after, descending) in [
                (&b"Zdx9"[..], &b"Zdx1"[..], None, false),
                (&b"Zdx1"[..], &b"Zdx9"[..], Some(&b"Zdx0"[..]), true),
                (&b"Zdx1"[..], &b"Zdx9"[..], Some(&b"Zdz"[..]), false),
                (&b"Zdx5"[..], &b"Zdx5"[..], Some(&b"Zdx5"[..]), true),
            ] {
                let (keys, more) = store.listing_keys(lo, hi, after, descending, 10).unwrap();
                assert!(
                    keys.is_empty() && !more,
                    "{engine:?} {lo:?} {hi:?} {after:?}"
                );
            }
            let (keys, _) = store
                .listing_keys(b"Zdx1", b"Zdx9", None, true, 10)
                .unwrap();
            assert_eq!(keys, vec![b"Zdx5".to_vec()]);
        }
    }

    /// A sled store another instance holds open is refused after a bounded wait, with
    /// what to do; once that instance is gone it opens.
    #[test]
    fn a_store_held_open_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path())
            .err()
            .expect("a second open must fail");
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        assert!(err.to_string().contains("already running"), "{err}");
        drop(held);
        Store::open(dir.path()).unwrap();
        // fjall likewise (its lock file).
        let dir = tempfile::tempdir().unwrap();
        let fjall = StoreOptions {
            engine: Engine::Fjall,
            cache_bytes: 8 << 20,
            compact: false,
        };
        let held = Store::open_with(dir.path(), &fjall).unwrap();
        let err = Store::open_with(dir.path(), &fjall)
            .err()
            .expect("a second open must fail");
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        drop(held);
        Store::open_with(dir.path(), &fjall).unwrap();
    }

    /// The engine is the one the store was created with, whatever the options say
    /// later: a sled store opened with `store_engine = "redb"` stays sled (and keeps its
    /// records), and a redb store opened with sled stays redb.
    #[test]
    fn an_existing_store_keeps_its_engine() {
        for (created, asked) in [
            (Engine::Sled, Engine::Redb),
            (Engine::Redb, Engine::Sled),
            (Engine::Fjall, Engine::Redb),
            (Engine::Redb, Engine::Fjall),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let with = |engine| StoreOptions {
                engine,
                cache_bytes: 8 << 20,
                compact: false,
            };
            {
                let store = Store::open_with(dir.path(), &with(created)).unwrap();
                append(&store, 1, b"first");
                store.sync().unwrap();
            }
            let store = Store::open_with(dir.path(), &with(asked)).unwrap();
            assert_eq!(store.engine(), created);
            assert_eq!(store.head(sh()).unwrap().map(|h| h.seq), Some(1));
            assert_eq!(Engine::in_dir(dir.path()), Some(created));
        }
    }

    /// The store's file tracks its live data, not the history written: after the file
    /// has reached its working size (500 map versions written and pruned), three times
    /// as many more leave it where it was, and a compaction brings it within a small
    /// factor of the live bytes. (redb grows its file by doubling regions, so the first
    /// versions say little; the growth that matters is the one with the history.)
    #[test]
    fn the_file_tracks_live_data_through_map_churn() {
        let dir = tempfile::tempdir().unwrap();
        let options = redb_options(8 << 20);
        let store = Store::open_with(dir.path(), &options).unwrap();
        churn_map(&store, 1, 500);
        let warm = store.size_on_disk();
        churn_map(&store, 501, 1500);
        let after_all = store.size_on_disk();
        let live_bytes = live(&store);
        assert!(
            after_all <= warm + warm / 4,
            "the file grew with the versions written: {warm} bytes after 500, {after_all} after 2000 (live {live_bytes})"
        );
        drop(store);
        let compacting = StoreOptions {
            compact: true,
            ..options
        };
        let store = Store::open_with(dir.path(), &compacting).unwrap();
        let compacted = store.size_on_disk();
        assert_eq!(live(&store), live_bytes, "compaction changed the data");
        assert!(
            compacted <= 3 * live_bytes + (1 << 20),
            "compacted file {compacted} bytes for {live_bytes} live bytes"
        );
        assert!(compacted <= after_all);
    }

    /// The engine's cache stays within its budget however much more the store holds and
    /// however much of it is read, and the metrics say so.
    #[test]
    fn the_cache_stays_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 2u64 << 20;
        let store = Store::open_with(dir.path(), &redb_options(budget)).unwrap();
        for chunk in 0..64u64 {
            let mut batch = Batch::default();
            for i in 0..256u64 {
                let seq = chunk * 256 + i;
                batch.insert(
                    pos_key(b'L', RecordPos { region: sh(), seq }),
                    [seq as u8; 1024],
                );
            }
            store.kv.apply(batch).unwrap();
        }
        store.sync().unwrap();
        let mut read = 0usize;
        for seq in 0..64 * 256 {
            read += store
                .envelope_at(RecordPos { region: sh(), seq })
                .unwrap()
                .unwrap()
                .len();
        }
        assert_eq!(read, 16 << 20, "every record read back");
        let usage = store.cache_usage();
        assert_eq!(usage.budget, budget);
        let used = usage.used.expect("redb reports its cache");
        assert!(used > 0 && used <= budget, "cache holds {used} bytes");
        let text = crate::metrics::Metrics::default().render(&[], store.size_on_disk(), usage, 0);
        assert!(text.contains(&format!("credfed_store_cache_budget_bytes {budget}")));
        let reported: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("credfed_store_cache_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("the cache metric");
        assert!(reported <= budget, "metric says {reported}");
        // Synced: no writes held in memory, and the metric says so beside its limit.
        assert!(
            text.contains("credfed_store_pending_write_bytes 0\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "credfed_store_pending_write_limit_bytes {}",
            kv::PENDING_MAX_BYTES
        )));
    }

    /// A format-3 store (the map a node per record) and a format-6 store (pages stored
    /// whole) are upgraded at open: the map is dropped, to be recomputed in stored
    /// pages, and nothing else is touched.
    #[test]
    fn a_format_3_store_drops_its_map_at_open() {
        for format in [3u32, 6] {
            let dir = tempfile::tempdir().unwrap();
            let frontier = {
                let store = Store::open(dir.path()).unwrap();
                for i in 0..9u8 {
                    append(&store, u64::from(i) + 1, &[i]);
                }
                // What format 3 kept: a node record, a root and a position.
                let mut node_key = region_key(b'I', sh());
                node_key.extend_from_slice(&[0, 0]);
                node_key.extend_from_slice(&9u64.to_be_bytes());
                store.kv.insert(&node_key, &[1, 2, 3][..]).unwrap();
                store
                    .kv
                    .insert(&map_root_key(sh(), 9), &[7u8; 32][..])
                    .unwrap();
                store
                    .kv
                    .insert(&map_version_key(sh(), 9), &enc(&VersionRecord::default()))
                    .unwrap();
                store
                    .kv
                    .insert(&map_position_key(sh(), &Hash256([5; 32]), 3), &[][..])
                    .unwrap();
                store.kv.insert(b"Mformat", &format.to_le_bytes()).unwrap();
                store.sync().unwrap();
                store.tree_frontier(sh()).unwrap()
            };
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(
                store.kv.get(b"Mformat").unwrap().unwrap().as_slice(),
                &FORMAT_VERSION.to_le_bytes()
            );
            for prefix in [b'I', b'J', b'K', b'U'] {
                assert_eq!(store.count(prefix), 0, "{}", prefix as char);
            }
            assert_eq!(store.map_latest(sh()).unwrap(), None);
            assert_eq!(store.tree_frontier(sh()).unwrap(), frontier);
            assert_eq!(store.count(b'L'), 9);
        }
    }
}

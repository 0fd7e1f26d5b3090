//! The node's record engine: the only writer of the store, and the read side the API
//! and the network use.
//!
//! ```text
//!  API ──append──▶ [append queue] ─┐                      ┌─▶ replies (after fsync)
//!                                  ├─▶ writer thread ──▶ syncer thread ──▶ Appended (gossip)
//!  network ─ingest─▶ [ingest queue]┘   admit, effects,      one fsync per group
//!                                      apply, park          of sealed appends
//!  network ◀── verdicts, applied heads, range results ─────┘
//! ```
//!
//! Why one writer: each region's chain grows one envelope at a time and an admission
//! reads what the previous one wrote, so writes are serial anyway; a thread that owns
//! them needs no lock, keeps the heads and the parked envelopes in memory, and keeps
//! signature checks and disk writes off the network's event loop.
//!
//! Why group commit: an fsync costs milliseconds whatever it covers. The writer applies
//! every append waiting in the queue, hands the group to the syncer and goes on with the
//! next group while the syncer makes the previous one durable with one fsync; each caller
//! is answered only after the fsync that covers its record.
//!
//! Reads (checks, lookups, statistics) go to the store directly from any thread: sled
//! reads are consistent with what the writer applied.

mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::{Catalogue, MeasureDomain};
use credfed_protocol::check::CheckAnswer;
use credfed_protocol::crypto::{Hash256, Keypair, Signature};
use credfed_protocol::envelope::VerifiedEnvelope;
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::ledger::{DepartmentRecord, Head, Rejection, Rules};
use credfed_protocol::manifest::Manifest;
use credfed_protocol::record::{ActionId, EntryId, SubjectKey};
use credfed_protocol::state::{ActionFold, EntryFold, RecordPos};
use credfed_protocol::time::{Date, Timestamp};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use writer::{EngineEvent, IngestJob, PeerVerdict};

use crate::metrics::Metrics;
use crate::store::{Backend, MapPage, PageId, PageNode, StoreError};

/// Appends waiting for the writer. A full queue makes a caller wait up to
/// [`APPEND_QUEUE_WAIT`], then refuses with 503: the node is overloaded, not broken.
pub const APPEND_QUEUE: usize = 1024;

/// How long counts of checks answered stay in memory before they are added to the
/// store: a check never waits on a write, and a crash loses at most this long of them.
pub const CHECK_COUNT_FLUSH: Duration = Duration::from_secs(10);

/// Batches of envelopes from peers waiting for the writer. The network never waits on
/// it: a gossip message that finds it full is ignored and a range is re-fetched later.
pub const INGEST_QUEUE: usize = 256;

/// Events from the writer to the network loop, which drains them as they come.
pub const EVENT_QUEUE: usize = 4096;

/// How long an append may wait for room in a full queue.
pub const APPEND_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// How long a superseded map version is kept (beyond what checkpoints still served
/// need): a proof being built under an older federation checkpoint, here or at a peer
/// asking for one, finishes well within a minute (federation checkpoints are reused for
/// 10 s and collected within 7 s).
pub const MAP_VERSION_RETAIN_SECONDS: u64 = 60;

/// A cached federation checkpoint stays in use while each region's witnessed head held
/// was signed at most this long after the leaf: an idle region re-signs its head every
/// 10 s, which alone is no reason to collect a new federation checkpoint (with a slack of
/// one refresh, any of 31 regions' refreshes — three a second — invalidated it), while a
/// region back from a cut (a jump of minutes) is.
pub const LEAF_TIME_SLACK_SECONDS: u64 = 2 * crate::witnessing::REFRESH.as_secs();

/// A federation proposal carries the witnessed notes its proposer received this
/// recently: gossip brings them to every member within milliseconds, so a few seconds
/// cover the race between a new witnessed head and a proposal that uses it, without
/// making every proposal carry (and every cosigner check) every region's refreshed head.
pub const CARRY_WITNESSED_SECONDS: u64 = 3;

/// How often a region's map is pruned at most: pruning reads the list of every version
/// kept, so doing it at every version (up to four a second) would cost more than it
/// frees.
pub const MAP_PRUNE_EVERY_SECONDS: u64 = 10;

pub use credfed_client::node_config::DEFAULT_GROUP_COMMIT_MAX;

/// Why an append was not acknowledged.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The record breaks a protocol rule.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store could not apply or persist it.
    #[error("cannot persist: {0}")]
    Store(#[from] StoreError),
    /// Writes are paused (own log not yet confirmed with a peer, or the store failed).
    #[error("writes are paused: {0}")]
    Gated(String),
    /// The write queue stayed full.
    #[error("{0}")]
    Busy(String),
    /// The engine has stopped (the node is shutting down).
    #[error("the node is shutting down")]
    Stopped,
}

/// Why an envelope from a peer was not applied. Only [`IngestError::Invalid`] says
/// anything about the peer; [`IngestError::Store`] is our own fault.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The envelope breaks a rule: the sender may be penalised, a fork probed.
    #[error(transparent)]
    Invalid(Rejection),
    /// The local store failed: retry later, blame no one.
    #[error("local store: {0}")]
    Store(StoreError),
}

/// The node clock: the system clock plus a configured offset (drills skew clocks).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// A clock `offset_ms` ahead of the system clock (behind if negative).
    pub fn new(offset_ms: i64) -> Clock {
        Clock { offset_ms }
    }

    /// Now, in ms since the epoch. Saturates rather than wraps: an absurd offset gives
    /// an absurd time, never a negative one from an overflow (the configuration check
    /// refuses such offsets before the node starts).
    pub fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(ms.saturating_add(self.offset_ms))
    }
}

/// Why writes are paused, shared by the API, the writer and the network. Two causes,
/// kept apart because they end differently: the own log waiting for a peer's
/// confirmation (the network lifts it) and a store that failed to persist (the writer
/// lifts it once a retry succeeds).
#[derive(Debug, Default)]
pub struct WriteGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Waiting for the own log to be confirmed, and for what.
    confirm: Option<String>,
    /// The store failed to persist and is being retried.
    store: Option<StoreFailure>,
}

/// A store failure being retried with back-off.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    /// When it began (monotonic).
    pub since: std::time::Instant,
    /// When it began, as people read it.
    pub since_cst: String,
    /// The first error.
    pub error: String,
    /// Retries made so far.
    pub attempts: u32,
    /// When the next retry is due.
    pub next_try: std::time::Instant,
}

/// The longest wait between two retries of a failed store.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

impl StoreFailure {
    fn describe(&self) -> String {
        format!(
            "the store cannot persist writes since {} ({}); the node retries by itself ({} retries so far, the next within {} s): free disk space or repair the disk, nothing else is needed; reads go on",
            self.since_cst,
            self.error,
            self.attempts,
            self.next_try
                .saturating_duration_since(std::time::Instant::now())
                .as_secs()
                .max(1)
        )
    }
}

impl WriteGate {
    fn closed(reason: &str) -> WriteGate {
        WriteGate {
            state: Mutex::new(GateState {
                confirm: Some(reason.to_owned()),
                store: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reason writes are paused, if they are: a failing store first.
    pub fn reason(&self) -> Option<String> {
        let g = self.lock();
        match &g.store {
            Some(f) => Some(f.describe()),
            None => g.confirm.clone(),
        }
    }

    fn check(&self) -> Result<(), AppendError> {
        match self.reason() {
            Some(why) => Err(AppendError::Gated(why)),
            None => Ok(()),
        }
    }

    fn set(&self, reason: Option<String>) {
        self.lock().confirm = reason;
    }

    /// The store failure being retried, if any.
    pub fn store_failure(&self) -> Option<StoreFailure> {
        self.lock().store.clone()
    }

    /// Records a failed store write; the first failure closes writes and is kept (with
    /// its time) until a retry succeeds. Returns whether this one began it.
    pub(crate) fn store_failed(&self, error: &str) -> bool {
        let mut g = self.lock();
        if g.store.is_some() {
            return false;
        }
        let now = std::time::Instant::now();
        g.store = Some(StoreFailure {
            since: now,
            since_cst: Clock::new(0).now().cst_string(),
            error: error.to_owned(),
            attempts: 0,
            next_try: now + Duration::from_secs(1),
        });
        true
    }

    /// Whether a retry of the failed store is due.
    pub(crate) fn store_retry_due(&self, now: std::time::Instant) -> bool {
        self.lock()
            .store
            .as_ref()
            .is_some_and(|f| now >= f.next_try)
    }

    /// A retry failed: the next one waits twice as long, up to [`STORE_RETRY_MAX`].
    pub(crate) fn store_retry_failed(&self, now: std::time::Instant) {
        if let Some(f) = self.lock().store.as_mut() {
            f.attempts += 1;
            let wait = Duration::from_secs(1 << f.attempts.min(5)).min(STORE_RETRY_MAX);
            f.next_try = now + wait;
        }
    }

    /// A retry succeeded: writes reopen unless the own log still awaits confirmation.
    pub(crate) fn store_recovered(&self) -> Option<StoreFailure> {
        self.lock().store.take()
    }
}

/// The highest record of this region's own log that may leave the node: acknowledged
/// (its fsync returned) or received from a peer (it is held elsewhere already).
///
/// Why it exists: a record applied but not yet synced can be lost in a crash. If a peer
/// had already seen it (a heads answer, a range, a signed checkpoint), a restarted node
/// would seal a different record at the same position — equivocation. Keeping every
/// such channel at or below this head is what lets a restarted node with an intact
/// store accept writes at once, without asking its peers first (docs/operator.md,
/// "Restarts").
#[derive(Debug, Default)]
pub struct ShareableHead(Mutex<Option<Head>>);

impl ShareableHead {
    /// The head, if the own log holds anything that may be shared.
    pub fn get(&self) -> Option<Head> {
        self.0.lock().ok().and_then(|g| *g)
    }

    /// Moves the head forward (never back).
    pub(crate) fn advance(&self, head: Head) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none_or(|h| h.seq < head.seq)
        {
            *g = Some(head);
        }
    }
}

pub use crate::store::NOTE_RESTORED;

/// What the engine is built from.
pub struct EngineConfig {
    /// This node's region.
    pub region: RegionCode,
    /// The manifest in force.
    pub manifest: Manifest,
    /// Measures catalogue.
    pub catalogue: Catalogue,
    /// Working-day calendar.
    pub calendar: WorkingCalendar,
    /// Signs this region's envelopes.
    pub node_key: Keypair,
    /// The node clock.
    pub clock: Clock,
    /// Appends per fsync at most; 1 disables group commit.
    pub group_commit_max: usize,
    /// The manifest as the authority signed it, carried in evidence files so that a
    /// verifier holding only the authority key can check them.
    pub signed_manifest: Option<credfed_protocol::manifest::SignedManifest>,
}

/// The network's end of the engine.
pub struct EngineLinks {
    /// Envelopes from peers, to be admitted.
    pub ingest: mpsc::Sender<IngestJob>,
    /// What the engine did: verdicts, applied heads, envelopes to gossip.
    pub events: mpsc::Receiver<EngineEvent>,
}

struct AppendJob {
    author: DepartmentId,
    body: Vec<u8>,
    signature: Signature,
    reply: oneshot::Sender<Result<VerifiedEnvelope, AppendError>>,
}

/// The engine's handle: writes go to the writer thread, reads to the store.
pub struct Core {
    store: Arc<dyn Backend>,
    /// What of the own log may leave the node (see [`ShareableHead`]).
    shareable: Arc<ShareableHead>,
    /// Signs this region's checkpoints (the node key; the writer holds its own copy).
    checkpoint_key: Keypair,
    manifest: Manifest,
    catalogue: Catalogue,
    calendar: WorkingCalendar,
    region: RegionCode,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// Taken at shutdown: the writer ends once the queue is closed and drained.
    appends: Mutex<Option<mpsc::Sender<AppendJob>>>,
    gate: Arc<WriteGate>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// One map computation at a time per region: a new version is built on the latest
    /// one. Regions do not wait for each other.
    map_locks: Mutex<BTreeMap<RegionCode, Arc<Mutex<()>>>>,
    /// When each region's map was last pruned (node clock, seconds).
    map_pruned_at: Mutex<HashMap<RegionCode, u64>>,
    /// The latest federation checkpoint this node collected a quorum for, with its
    /// leaves (kept in memory: a restarted node collects a fresh one on demand).
    federation: Mutex<Option<FederationHead>>,
    /// The manifest as signed, for evidence files.
    signed_manifest: Option<credfed_protocol::manifest::SignedManifest>,
    /// When (node clock, seconds) the witnessed checkpoint held of each region was
    /// stored: proposals carry the notes of recent ones, which their cosigners may not
    /// have received yet.
    witnessed_received: Mutex<BTreeMap<RegionCode, u64>>,
    /// Checks answered and not yet added to the store's counts, and when they last were
    /// ([`Core::count_check`]).
    checks_pending: Mutex<(
        BTreeMap<crate::store::CheckCountKey, u64>,
        Option<std::time::Instant>,
    )>,
}

/// A federation checkpoint with its quorum, as proven answers use it.
#[derive(Debug, Clone)]
pub struct FederationHead {
    /// The note, cosigned by at least a quorum.
    pub signed: credfed_protocol::checkpoint::SignedCheckpoint,
    /// Its leaves, in manifest order.
    pub leaves: Vec<credfed_protocol::checkpoint::Checkpoint>,
    /// The instant its quorum vouches for (seconds, from the cosignatures): the
    /// `as_of` of every answer proven under it.
    pub witnessed_at: u64,
}

impl Core {
    /// Starts the writer and syncer threads over `store`. Writes start paused until
    /// [`Core::open_writes`]: the network must first confirm this region's head with a
    /// peer (no rollback).
    pub fn start(
        store: Box<dyn Backend>,
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Core>, EngineLinks), StoreError> {
        let store: Arc<dyn Backend> = Arc::from(store);
        // Whatever the store holds at start becomes durable now: after this, everything
        // in it may be shared, whether or not it was acknowledged before a crash.
        store.sync()?;
        let heads = store.heads()?;
        let shareable = Arc::new(ShareableHead::default());
        if let Some(own) = heads.get(&config.region) {
            shareable.advance(*own);
        }
        let (append_tx, append_rx) = mpsc::channel(APPEND_QUEUE);
        let (ingest_tx, ingest_rx) = mpsc::channel(INGEST_QUEUE);
        let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
        let gate = Arc::new(WriteGate::closed(
            "waiting to confirm this region's head with a peer",
        ));
        let checkpoint_key = Keypair::from_secret(config.node_key.secret_bytes());
        let threads = writer::spawn(writer::WriterParts {
            store: store.clone(),
            manifest: config.manifest.clone(),
            catalogue: config.catalogue.clone(),
            region: config.region,
            node_key: config.node_key,
            clock: config.clock,
            metrics: metrics.clone(),
            gate: gate.clone(),
            shareable: shareable.clone(),
            heads,
            group_commit_max: config.group_commit_max.max(1),
            appends: append_rx,
            ingests: ingest_rx,
            events: event_tx,
        })
        .map_err(StoreError::Io)?;
        let core = Arc::new(Core {
            store,
            shareable,
            checkpoint_key,
            manifest: config.manifest,
            catalogue: config.catalogue,
            calendar: config.calendar,
            region: config.region,
            clock: config.clock,
            metrics,
            appends: Mutex::new(Some(append_tx)),
            gate,
            threads: Mutex::new(threads),
            map_locks: Mutex::new(BTreeMap::new()),
            map_pruned_at: Mutex::new(HashMap::new()),
            federation: Mutex::new(None),
            signed_manifest: config.signed_manifest,
            witnessed_received: Mutex::new(BTreeMap::new()),
            checks_pending: Mutex::new((BTreeMap::new(), None)),
        });
        Ok((
            core,
            EngineLinks {
                ingest: ingest_tx,
                events: event_rx,
            },
        ))
    }

    /// Appends a department-signed body to this region's log. Returns once the envelope
    /// is durable (the fsync covering it has returned): it is then acknowledged.
    pub async fn append(
        &self,
        author: DepartmentId,
        body: Vec<u8>,
        signature: Signature,
    ) -> Result<VerifiedEnvelope, AppendError> {
        self.gate.check()?;
        let queue = self
            .appends
            .lock()
            .ok()
            .and_then(|q| q.clone())
            .ok_or(AppendError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        let job = AppendJob {
            author,
            body,
            signature,
            reply,
        };
        match tokio::time::timeout(APPEND_QUEUE_WAIT, queue.send(job)).await {
            Err(_) => {
                return Err(AppendError::Busy(format!(
                    "the write queue stayed full for {APPEND_QUEUE_WAIT:?}; the node is overloaded, retry later"
                )));
            }
            Ok(Err(_)) => return Err(AppendError::Stopped),
            Ok(Ok(())) => {}
        }
        answer.await.map_err(|_| AppendError::Stopped)?
    }

    /// Lifts the write gate: this region's head is confirmed with a peer (or needs no
    /// confirmation). A store restored from a backup is a restored store no more.
    pub fn open_writes(&self) {
        if self.gate.reason().is_some() {
            tracing::info!("own log confirmed: accepting writes");
        }
        if self.restored_from().is_some()
            && let Err(e) = self.store.set_note(NOTE_RESTORED, self.region, "")
        {
            tracing::warn!(error = %e, "could not clear the store's restored mark");
        }
        self.gate.set(None);
    }

    /// When the store was restored from a backup whose own log has not been confirmed
    /// with a peer since: what the backup said about itself.
    pub fn restored_from(&self) -> Option<String> {
        match self.store.note(NOTE_RESTORED, self.region) {
            Ok(Some(n)) if !n.is_empty() => Some(n),
            _ => None,
        }
    }

    /// Marks the store as restored from a backup: at its next start the node waits for a
    /// peer to confirm its own log before writing (the backup may be older than records
    /// the federation holds).
    pub fn mark_restored(&self, what: &str) -> Result<(), StoreError> {
        self.store.set_note(NOTE_RESTORED, self.region, what)?;
        self.store.sync()
    }

    /// Closes the write gate for `reason` (what the node waits for, and what to do).
    pub fn close_writes(&self, reason: String) {
        tracing::warn!("writes closed: {reason}");
        self.gate.set(Some(reason));
    }

    /// Whether the store is failing to persist (writes closed, retried by the writer).
    pub fn store_failing(&self) -> bool {
        self.gate.store_failure().is_some()
    }

    /// Why writes are paused, if they are.
    pub fn writes_paused(&self) -> Option<String> {
        self.gate.reason()
    }

    /// Stops the writer and syncer once every queued append is answered, and makes
    /// everything applied durable. Appends after this are refused as
    /// [`AppendError::Stopped`].
    /// Counts a check answered for `department` in `domain` today (reports: checks per
    /// domain, article 二十三). Counted in memory and added to the store at most every
    /// [`CHECK_COUNT_FLUSH`] and at shutdown, so that a check never waits on a write; a
    /// crash loses at most that long of counts.
    pub fn count_check(&self, department: &str, domain: MeasureDomain) {
        let key = (self.now().date_cst(), domain.name(), department.to_owned());
        let due = {
            let Ok(mut p) = self.checks_pending.lock() else {
                return;
            };
            *p.0.entry(key).or_default() += 1;
            let since = *p.1.get_or_insert_with(std::time::Instant::now);
            since.elapsed() >= CHECK_COUNT_FLUSH
        };
        if due {
            self.flush_check_counts();
        }
    }

    /// Adds the counts held in memory to the store.
    fn flush_check_counts(&self) {
        let pending = match self.checks_pending.lock() {
            Ok(mut p) => {
                p.1 = Some(std::time::Instant::now());
                std::mem::take(&mut p.0)
            }
            Err(_) => return,
        };
        if pending.is_empty() {
            return;
        }
        if let Err(e) = self.store.add_check_counts(&pending) {
            // Figures for reports only: losing them must not fail a check.
            tracing::warn!(error = %e, "could not store the counts of checks answered");
        }
    }

    /// Checks answered from `from` to `to`, by day, domain and department, including
    /// those not yet stored.
    pub fn check_counts(
        &self,
        from: Date,
        to: Date,
    ) -> Result<BTreeMap<crate::store::CheckCountKey, u64>, StoreError> {
        let mut out = self.store.check_counts(from, to)?;
        if let Ok(p) = self.checks_pending.lock() {
            for (k, n) in p.0.iter().filter(|(k, _)| k.0 >= from && k.0 <= to) {
                *out.entry(k.clone()).or_default() += n;
            }
        }
        Ok(out)
    }

    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.flush_check_counts();
        // Closing the append queue ends the writer once it has drained it; the writer
        // closes the syncer's queue, and the syncer answers what it holds and ends.
        if let Ok(mut q) = self.appends.lock() {
            q.take();
        }
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
        self.store.sync()
    }

    /// The node clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// This node's region.
    pub fn region(&self) -> RegionCode {
        self.region
    }

    /// The manifest in force.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The measures catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The working-day calendar.
    pub fn calendar(&self) -> &WorkingCalendar {
        &self.calendar
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            manifest: &self.manifest,
            catalogue: &self.catalogue,
        }
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every region's head held.
    pub fn heads(&self) -> Result<BTreeMap<RegionCode, Head>, StoreError> {
        self.store.heads()
    }

    /// The own log's head as far as it may leave this node (see [`ShareableHead`]):
    /// what heads answers, ranges and checkpoints given to others stop at.
    pub fn shareable_own_head(&self) -> Option<Head> {
        self.shareable.get()
    }

    /// Whether the record `body` of `record_region`'s log concerns `region`'s
    /// departments (`credfed_protocol::events::concerns`): what their event stream
    /// carries.
    pub fn concerns(
        &self,
        region: RegionCode,
        record_region: RegionCode,
        body: &credfed_protocol::record::Body,
    ) -> Result<bool, StoreError> {
        credfed_protocol::events::concerns(&*self.store, region, record_region, body)
    }

    /// Envelopes of a region's log from `from`, verbatim.
    pub fn range(
        &self,
        region: RegionCode,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut limit = limit;
        if region == self.region {
            // Never a record of our own that a crash could still take back.
            let shareable = self.shareable.get().map_or(0, |h| h.seq);
            let allowed = (shareable + 1).saturating_sub(from.max(1));
            limit = limit.min(usize::try_from(allowed).unwrap_or(usize::MAX));
        }
        self.store.range(region, from, limit, max_bytes)
    }

    /// The region's Merkle tree as this replica holds it: (size, root).
    pub fn tree_head(&self, region: RegionCode) -> Result<(u64, Hash256), StoreError> {
        let f = self.store.tree_frontier(region)?;
        Ok((f.size, f.root()))
    }

    /// The root of the region's tree at `size` (at most the replica's size).
    pub fn tree_root_at(&self, region: RegionCode, size: u64) -> Result<Hash256, ProofFailure> {
        self.tree_bounds(region, size)?;
        credfed_protocol::merkle::root_at(&self.tree_nodes(region), size)
            .map_err(ProofFailure::Store)
    }

    /// The inclusion proof of the envelope at `seq` in the region's tree of `size`.
    pub fn inclusion_proof(
        &self,
        region: RegionCode,
        seq: u64,
        size: u64,
    ) -> Result<Vec<Hash256>, ProofFailure> {
        self.tree_bounds(region, size)?;
        if seq == 0 || seq > size {
            return Err(ProofFailure::OutOfRange(format!(
                "seq {seq} is not in a tree of {size} (1 to {size})"
            )));
        }
        credfed_protocol::merkle::inclusion_proof(&self.tree_nodes(region), seq - 1, size)
            .map_err(ProofFailure::from_merkle)
    }

    /// The consistency proof of the region's tree from `from` to `to` records.
    pub fn consistency_proof(
        &self,
        region: RegionCode,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash256>, ProofFailure> {
        self.tree_bounds(region, to)?;
        if from > to {
            return Err(ProofFailure::OutOfRange(format!(
                "from {from} is after to {to}"
            )));
        }
        credfed_protocol::merkle::consistency_proof(&self.tree_nodes(region), from, to)
            .map_err(ProofFailure::from_merkle)
    }

    /// This region's checkpoint, signed by this node (a C2SP signed note).
    pub fn own_checkpoint(
        &self,
    ) -> Result<credfed_protocol::checkpoint::SignedCheckpoint, StoreError> {
        use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin};
        let (size, root) = self.tree_head(self.region)?;
        // A signed checkpoint leaves the node: what it covers must survive a crash.
        // Records applied before this point are covered by this sync.
        if self.shareable.get().map_or(0, |h| h.seq) < size {
            self.store.sync()?;
        }
        let map_root = self.map_root(self.region, size).map_err(|e| match e {
            ProofFailure::Store(e) => e,
            other => StoreError::Corrupt(format!("own map: {other}")),
        })?;
        let name = origin(&self.manifest.federation_id, self.region);
        Ok(SignedCheckpoint::sign(
            Checkpoint::with_map_at(name.clone(), size, root, map_root, self.now_seconds()),
            &name,
            &self.checkpoint_key,
        ))
    }

    /// Signs a report that `asker` exceeded its person-key budget here (gossiped to
    /// every member; docs/privacy.md).
    pub fn sign_budget_alert(
        &self,
        asker: RegionCode,
        refused: u64,
    ) -> Result<credfed_protocol::oprf::alert::SignedBudgetAlert, String> {
        credfed_protocol::oprf::alert::SignedBudgetAlert::sign(
            credfed_protocol::oprf::alert::BudgetAlert {
                reporter: self.region,
                asker,
                refused,
                at_ms: self.now().0,
            },
            &self.checkpoint_key,
            &self.manifest.federation_id,
        )
        .map_err(|e| e.to_string())
    }

    /// The root of `region`'s verifiable map over its first `size` records
    /// (docs/protocol.md, "Verifiable map"), computing and storing that version from the
    /// latest earlier one if needed. Blocking (reads the log): call off the network loop.
    pub fn map_root(&self, region: RegionCode, size: u64) -> Result<Hash256, ProofFailure> {
        use credfed_protocol::map::{EMPTY, changes_from, map_update};
        if size == 0 {
            return Ok(EMPTY);
        }
        if let Some(root) = self.store.map_root_at(region, size)? {
            return Ok(root);
        }
        let lock = self.map_lock(region)?;
        let _one_at_a_time = lock
            .lock()
            .map_err(|_| StoreError::Corrupt("map lock poisoned".into()))?;
        if let Some(root) = self.store.map_root_at(region, size)? {
            return Ok(root);
        }
        self.tree_bounds(region, size)?;
        let from = match self.store.map_latest(region)? {
            Some((latest, _)) if latest > size => {
                return Err(ProofFailure::Passed { latest });
            }
            Some((latest, _)) => latest,
            None => 0,
        };
        let nodes = StoredMap::new(&*self.store, region);
        let mut decoded = Vec::with_capacity(usize::try_from(size - from).unwrap_or(0));
        let mut seq = from + 1;
        while seq <= size {
            let want = usize::try_from(size - seq + 1)
                .unwrap_or(usize::MAX)
                .min(1024);
            let batch = self.store.range(region, seq, want, usize::MAX)?;
            if batch.is_empty() {
                return Err(StoreError::Corrupt(format!("{region}: record {seq} missing")).into());
            }
            for bytes in batch {
                // Stored envelopes were verified and validated when admitted: decoding
                // is all that is needed here.
                let corrupt = |e: credfed_protocol::codec::DecodeError| {
                    StoreError::Corrupt(format!("{region}#{seq}: {e}"))
                };
                let envelope: credfed_protocol::envelope::Envelope =
                    credfed_protocol::codec::decode(
                        &bytes,
                        credfed_protocol::limits::MAX_ENVELOPE_BYTES,
                        "envelope",
                    )
                    .map_err(corrupt)?;
                let body =
                    credfed_protocol::record::Body::decode(&envelope.body).map_err(corrupt)?;
                decoded.push((seq, envelope, body));
                seq += 1;
            }
        }
        let changes = changes_from(decoded.iter().map(|(s, e, b)| (*s, e, b)));
        let (root, writes) = map_update(&nodes, from, &changes.updates).map_err(map_failure)?;
        let stored = nodes.version_writes(from, &writes, &changes)?;
        let now = self.now_seconds();
        self.store
            .put_map_version(region, size, &stored.pages, root, &stored.positions, now)?;
        // The version is stored: a failure to forget older ones must not fail it (the
        // next pruning tries again).
        if let Err(e) = self.prune_map(region, size, now) {
            tracing::warn!(%region, error = %e, "map versions not pruned");
        }
        Ok(root)
    }

    /// The lock that lets one map computation or pruning of `region` run at a time.
    fn map_lock(&self, region: RegionCode) -> Result<Arc<Mutex<()>>, StoreError> {
        Ok(self
            .map_locks
            .lock()
            .map_err(|_| StoreError::Corrupt("map lock poisoned".into()))?
            .entry(region)
            .or_default()
            .clone())
    }

    /// Forgets `region`'s map versions that nothing can ask for any more (see
    /// [`Core::prune_map_versions`]), at most once per [`MAP_PRUNE_EVERY_SECONDS`] per
    /// region; the caller holds the region's map lock. Without it storage would grow by
    /// every page a version rewrites, for every checkpoint (docs/decisions.md, "Map
    /// versions are pruned").
    fn prune_map(&self, region: RegionCode, latest: u64, now: u64) -> Result<(), StoreError> {
        {
            let mut last = self
                .map_pruned_at
                .lock()
                .map_err(|_| StoreError::Corrupt("prune clock poisoned".into()))?;
            let at = last.entry(region).or_insert(0);
            if now < at.saturating_add(MAP_PRUNE_EVERY_SECONDS) {
                return Ok(());
            }
            *at = now;
        }
        self.prune_below_served(region, latest, now, MAP_VERSION_RETAIN_SECONDS)?;
        Ok(())
    }

    /// Forgets `region`'s map versions below the witnessed checkpoint held, the
    /// federation checkpoint's leaf and the latest version that were superseded more
    /// than `retain_seconds` ago (the node does this by itself with
    /// [`MAP_VERSION_RETAIN_SECONDS`]); returns the versions and page records removed.
    /// Blocking.
    pub fn prune_map_versions(
        &self,
        region: RegionCode,
        retain_seconds: u64,
    ) -> Result<(usize, usize), StoreError> {
        let lock = self.map_lock(region)?;
        let _one_at_a_time = lock
            .lock()
            .map_err(|_| StoreError::Corrupt("map lock poisoned".into()))?;
        let Some((latest, _)) = self.store.map_latest(region)? else {
            return Ok((0, 0));
        };
        self.prune_below_served(region, latest, self.now_seconds(), retain_seconds)
    }

    /// What `region`'s verifiable map occupies in the store. Blocking (scans it).
    pub fn map_storage(&self, region: RegionCode) -> Result<crate::store::MapStorage, StoreError> {
        self.store.map_storage(region)
    }

    fn prune_below_served(
        &self,
        region: RegionCode,
        latest: u64,
        now: u64,
        retain_seconds: u64,
    ) -> Result<(usize, usize), StoreError> {
        let mut keep_from = latest;
        if let Some(held) = self.witnessed_checkpoint(region)? {
            keep_from = keep_from.min(held.checkpoint.size);
        }
        if let Some(head) = self.federation()
            && let Some(leaf) = self
                .manifest
                .members
                .iter()
                .zip(&head.leaves)
                .find(|(m, _)| m.region == region)
                .map(|(_, l)| l)
        {
            keep_from = keep_from.min(leaf.size);
        }
        let (versions, pages) =
            self.store
                .prune_map(region, keep_from, now.saturating_sub(retain_seconds))?;
        self.metrics
            .map_versions_pruned
            .fetch_add(versions as u64, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .map_pages_pruned
            .fetch_add(pages as u64, std::sync::atomic::Ordering::Relaxed);
        Ok((versions, pages))
    }

    /// The leaf this node proposes for `region` in a federation checkpoint: the
    /// exclusion leaf if it holds proof that the region equivocated, else the witnessed
    /// checkpoint it holds — never a head no quorum witnessed (docs/protocol.md,
    /// "Federation checkpoints"). Fails if it holds none, or cannot prove under it (its
    /// replica is behind, or its map passed that size): proofs are then unavailable
    /// until a newer witnessed checkpoint arrives.
    pub fn federation_leaf(
        &self,
        region: RegionCode,
        equivocators: &[RegionCode],
    ) -> Result<credfed_protocol::checkpoint::Checkpoint, ProofFailure> {
        use credfed_protocol::checkpoint::{Checkpoint, origin};
        if equivocators.contains(&region) {
            return Ok(Checkpoint::excluded(origin(
                &self.manifest.federation_id,
                region,
            )));
        }
        let Some(held) = self.witnessed_checkpoint(region)? else {
            return Err(ProofFailure::OutOfRange(format!(
                "no witnessed checkpoint of {region} is held yet"
            )));
        };
        let cp = held.checkpoint;
        if cp.time().is_none() {
            return Err(ProofFailure::OutOfRange(format!(
                "the witnessed checkpoint of {region} held has no time (an earlier version's)"
            )));
        }
        let map = self.map_root(region, cp.size)?;
        if cp.map_root() != Some(map) {
            return Err(ProofFailure::OutOfRange(format!(
                "{region}: this replica's map at {} records differs from the witnessed checkpoint's",
                cp.size
            )));
        }
        Ok(cp)
    }

    /// A federation checkpoint over this node's leaves, with this node's cosignature,
    /// and the witnessed notes of the leaves it received in the last
    /// [`CARRY_WITNESSED_SECONDS`] (gossip may not have brought them to its cosigners
    /// yet). Blocking (may compute maps): call off the network loop.
    #[allow(clippy::type_complexity)]
    pub fn propose_federation(
        &self,
    ) -> Result<
        (
            credfed_protocol::checkpoint::SignedCheckpoint,
            Vec<credfed_protocol::checkpoint::Checkpoint>,
            Vec<String>,
        ),
        ProofFailure,
    > {
        use credfed_protocol::checkpoint::{SignedCheckpoint, witness_name};
        let equivocators = self.store.equivocators()?;
        let leaves = self
            .manifest
            .members
            .iter()
            .map(|m| self.federation_leaf(m.region, &equivocators))
            .collect::<Result<Vec<_>, _>>()?;
        let cp = credfed_protocol::federation::federation_checkpoint(&self.manifest, &leaves);
        let mut signed = SignedCheckpoint {
            checkpoint: cp,
            signatures: Vec::new(),
        };
        signed.cosign(
            &witness_name(&self.manifest.federation_id, self.region),
            &self.checkpoint_key,
            self.now_seconds(),
        );
        let now = self.now_seconds();
        let recent: Vec<RegionCode> = self
            .witnessed_received
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(_, at)| now.saturating_sub(**at) <= CARRY_WITNESSED_SECONDS)
                    .map(|(region, _)| *region)
                    .collect()
            })
            .unwrap_or_default();
        let mut notes = Vec::new();
        let mut bytes = 0;
        for region in recent {
            if let Some(n) = self.store.note(b'C', region)?
                && bytes + n.len() <= crate::wire::MAX_WITNESSED_NOTES_BYTES
            {
                bytes += n.len();
                notes.push(n);
            }
        }
        Ok((signed, leaves, notes))
    }

    /// Cosigns a federation checkpoint if every leaf passes [`Core::judge_leaf`]
    /// (docs/protocol.md, "Federation checkpoints"); first takes the witnessed notes
    /// that came with it. Blocking.
    pub fn witness_federation(
        &self,
        note: &str,
        leaves: &[String],
        witnessed: &[String],
    ) -> Result<credfed_protocol::checkpoint::NoteSignature, CosignRefusal> {
        use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, witness_name};
        use credfed_protocol::federation::judge_federation;
        let mut signed =
            SignedCheckpoint::parse(note).map_err(|e| CosignRefusal::Invalid(e.to_string()))?;
        let leaves = leaves
            .iter()
            .map(|l| Checkpoint::parse_body(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CosignRefusal::Invalid(format!("leaf: {e}")))?;
        for w in witnessed {
            // A note held already (the usual case: gossip brought it) costs no
            // verification; a new one is verified and kept. One that does not verify is
            // the proposer's problem, not a reason to refuse: its leaf is judged below.
            if self.holds_witnessed(w) {
                continue;
            }
            if let Err(e) = self.accept_witnessed(w) {
                tracing::debug!(error = %e, "a witnessed note carried by a federation proposal was not taken");
            }
        }
        let now = self.now_seconds();
        let equivocators = self
            .store
            .equivocators()
            .map_err(|e| CosignRefusal::Invalid(format!("witness store: {e}")))?;
        judge_federation(&self.manifest, &signed, &leaves, |region, leaf| {
            self.judge_leaf(region, leaf, now, &equivocators)
        })?;
        let name = witness_name(&self.manifest.federation_id, self.region);
        signed.signatures.clear();
        signed.cosign(&name, &self.checkpoint_key, now);
        signed
            .signatures
            .pop()
            .ok_or_else(|| CosignRefusal::Invalid("cosigning failed".into()))
    }

    /// Whether this member vouches for `leaf` as `region`'s head in a federation
    /// checkpoint at `now`:
    ///
    /// * excluded exactly when this member holds proof that the region equivocated
    ///   (it never vouches for a forked region's head);
    /// * otherwise the leaf is the witnessed checkpoint it holds, or an earlier head of
    ///   the same history — its replica reproduces the log root and map root at that
    ///   size, and it agrees with what this member cosigned — that is not stale (older
    ///   than a witnessed checkpoint held for over
    ///   [`credfed_protocol::federation::STALE_AFTER_SECONDS`]); never a head beyond
    ///   what a quorum witnessed (the unwitnessed head of a region that forked);
    /// * its time is not ahead of this member's clock by more than
    ///   [`credfed_protocol::federation::MAX_CLOCK_AHEAD_SECONDS`].
    ///
    /// `equivocators`: the regions this member holds proof against.
    pub fn judge_leaf(
        &self,
        region: RegionCode,
        leaf: &credfed_protocol::checkpoint::Checkpoint,
        now: u64,
        equivocators: &[RegionCode],
    ) -> Result<(), CosignRefusal> {
        use credfed_protocol::federation::{MAX_CLOCK_AHEAD_SECONDS, STALE_AFTER_SECONDS};
        let unavailable = |e: StoreError| CosignRefusal::Invalid(format!("witness store: {e}"));
        match (leaf.is_excluded(), equivocators.contains(&region)) {
            (true, true) => return Ok(()),
            (true, false) => return Err(CosignRefusal::NoEvidence { region }),
            (false, true) => return Err(CosignRefusal::Equivocator),
            (false, false) => {}
        }
        let time = leaf
            .time()
            .ok_or_else(|| CosignRefusal::Invalid(format!("{region}: the leaf has no time")))?;
        if time > now.saturating_add(MAX_CLOCK_AHEAD_SECONDS) {
            return Err(CosignRefusal::Invalid(format!(
                "{region}: the leaf was signed at {time}, {}s ahead of this member's clock",
                time - now
            )));
        }
        let Some(held) = self.witnessed_checkpoint(region).map_err(unavailable)? else {
            return Err(CosignRefusal::NotYetWitnessed {
                region,
                size: leaf.size,
            });
        };
        let h = &held.checkpoint;
        if *h == *leaf {
            // Witnessed by the region's quorum, whose members reproduced its log and
            // map roots: nothing more to check here.
            return Ok(());
        }
        if leaf.is_later_than(h) {
            return Err(CosignRefusal::NotYetWitnessed {
                region,
                size: leaf.size,
            });
        }
        if leaf.size < h.size {
            let quorum = self
                .manifest
                .policy
                .witness_quorum(self.manifest.members.len());
            let mut times = held.cosignature_times();
            times.sort_unstable();
            let at = times
                .get(quorum.saturating_sub(1))
                .or(times.last())
                .copied()
                .unwrap_or(0);
            let age = now.saturating_sub(at);
            if age > STALE_AFTER_SECONDS {
                return Err(CosignRefusal::Stale {
                    region,
                    leaf: leaf.size,
                    witnessed: h.size,
                    age,
                });
            }
        }
        if let Some(view) = self.store.witness_view(region).map_err(unavailable)?
            && view.size == leaf.size
            && view.root != leaf.root
        {
            return Err(CosignRefusal::Conflict {
                size: leaf.size,
                ours: view.root,
                theirs: leaf.root,
            });
        }
        let ours = self.tree_root_at(region, leaf.size).map_err(|e| match e {
            ProofFailure::NotHeld { held } => CosignRefusal::NotYet { held },
            other => CosignRefusal::Invalid(format!("{region}: {other}")),
        })?;
        if ours != leaf.root {
            return Err(CosignRefusal::Conflict {
                size: leaf.size,
                ours,
                theirs: leaf.root,
            });
        }
        let map = self.map_root(region, leaf.size).map_err(|e| match e {
            ProofFailure::NotHeld { held } => CosignRefusal::NotYet { held },
            ProofFailure::Passed { latest } => CosignRefusal::Older { cosigned: latest },
            other => CosignRefusal::Invalid(format!("{region}: {other}")),
        })?;
        if leaf.map_root() != Some(map) {
            return Err(CosignRefusal::WrongMap {
                size: leaf.size,
                ours: map,
                theirs: leaf.map_root().unwrap_or(credfed_protocol::map::EMPTY),
            });
        }
        Ok(())
    }

    /// Keeps a federation checkpoint that reached its quorum.
    pub fn set_federation(&self, head: FederationHead) {
        if let Ok(mut f) = self.federation.lock() {
            *f = Some(head);
        }
    }

    /// The latest federation checkpoint with a quorum, if any.
    pub fn federation(&self) -> Option<FederationHead> {
        self.federation.lock().ok().and_then(|f| f.clone())
    }

    /// Whether `head` still covers every region as this node would propose it now: each
    /// leaf has the size of the witnessed checkpoint held and was signed no more than
    /// [`LEAF_TIME_SLACK_SECONDS`] before it (or excludes a region exactly when a proof
    /// against it is held). A newer witnessed head anywhere — a publication, or a region
    /// back from a cut — calls for a new federation checkpoint, so that proven answers
    /// show it within seconds.
    pub fn federation_is_current(&self, head: &FederationHead) -> Result<bool, StoreError> {
        let equivocators = self.store.equivocators()?;
        for (m, leaf) in self.manifest.members.iter().zip(&head.leaves) {
            let excluded = equivocators.contains(&m.region);
            if leaf.is_excluded() != excluded {
                return Ok(false);
            }
            // A newer head, or the same head signed again well after the leaf (a region
            // that was cut off and is back): the leaf would show it staler than it is.
            if !excluded
                && self.witnessed_checkpoint(m.region)?.is_some_and(|h| {
                    h.checkpoint.size != leaf.size
                        || h.checkpoint.time().unwrap_or(0)
                            > leaf
                                .time()
                                .unwrap_or(0)
                                .saturating_add(LEAF_TIME_SLACK_SECONDS)
                })
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Seconds since the epoch on the node clock.
    pub fn now_seconds(&self) -> u64 {
        u64::try_from(self.now().0 / 1000).unwrap_or(0)
    }

    /// A check answer with proofs under `head` (docs/protocol.md, "Proven answers"): per
    /// region the listings for the subject and everything the answer rests on
    /// ([`credfed_protocol::federation::gather_proofs`], the same search the verifier
    /// makes), the answer recomputed from that evidence at the checkpoint's cosigned
    /// time, the proof against each excluded region, the signed manifest if
    /// `with_manifest`, and this node's signature. Blocking.
    pub fn prove(
        &self,
        subject: &SubjectKey,
        domain: MeasureDomain,
        head: &FederationHead,
        with_manifest: bool,
    ) -> Result<credfed_protocol::federation::ProvenAnswer, ProofFailure> {
        use credfed_protocol::federation::{GatherError, assemble_proven_answer, gather_proofs};
        let source = StoreProofs { core: self };
        let (regions, evidence) = gather_proofs(&source, &self.manifest, subject, &head.leaves)
            .map_err(|e| match e {
                GatherError::Source(e) => e,
                GatherError::Corrupt(what) => StoreError::Corrupt(what).into(),
                GatherError::TooLarge(n) => ProofFailure::OutOfRange(format!(
                    "the answer would carry more than {n} envelopes, more than an answer may"
                )),
            })?;
        let proofs = if head.leaves.iter().any(|l| l.is_excluded()) {
            self.store.proofs()?
        } else {
            Vec::new()
        };
        let mut exclusions = Vec::new();
        for (m, leaf) in self.manifest.members.iter().zip(&head.leaves) {
            if leaf.is_excluded() {
                let p = proofs
                    .iter()
                    .find(|p| p.region == m.region)
                    .ok_or_else(|| {
                        ProofFailure::OutOfRange(format!(
                            "{} is excluded but no proof against it is held here",
                            m.region
                        ))
                    })?;
                exclusions.push(p.clone());
            }
        }
        assemble_proven_answer(
            &self.manifest,
            &self.catalogue,
            subject,
            domain,
            &head.signed,
            &head.leaves,
            regions,
            exclusions,
            evidence,
            self.signed_manifest.clone().filter(|_| with_manifest),
            self.region,
            &self.checkpoint_key,
        )
        .map_err(|e| StoreError::Corrupt(format!("proving: {e}")).into())
    }

    /// Witnesses another region's checkpoint (a C2SP note signed by that region's node):
    /// cosigns it only if this replica reproduces its root at its size and it does not
    /// go back on a checkpoint cosigned before; the view is durable before the answer.
    /// Blocking (an fsync): call from a blocking thread.
    pub fn witness(
        &self,
        note: &str,
    ) -> Result<credfed_protocol::checkpoint::NoteSignature, CosignRefusal> {
        use credfed_protocol::checkpoint::{SignedCheckpoint, witness_name};
        use credfed_protocol::witness::{checkpoint_region, judge};
        let mut signed =
            SignedCheckpoint::parse(note).map_err(|e| CosignRefusal::Invalid(e.to_string()))?;
        let region = checkpoint_region(&signed, &self.manifest)?;
        if region == self.region {
            return Err(CosignRefusal::Invalid(
                "a node does not witness its own region".into(),
            ));
        }
        // A region's head carries exactly its map root and the time its node signed it:
        // the time is what verifiers measure the region's freshness by, so a witness
        // refuses one ahead of its own clock (a region post-dating its freshness).
        let now = self.now_seconds();
        let time = match (signed.checkpoint.extensions.len(), signed.checkpoint.time()) {
            (2, Some(t)) if signed.checkpoint.map_root().is_some() => t,
            _ => {
                return Err(CosignRefusal::Invalid(
                    "a region checkpoint carries exactly a 'map' and a 'time' line".into(),
                ));
            }
        };
        if time > now.saturating_add(credfed_protocol::federation::MAX_CLOCK_AHEAD_SECONDS) {
            return Err(CosignRefusal::Invalid(format!(
                "the checkpoint was signed at {time}, {}s ahead of this witness's clock: check the region's clock",
                time - now
            )));
        }
        let unavailable = |e: StoreError| CosignRefusal::Invalid(format!("witness store: {e}"));
        if self
            .store
            .equivocators()
            .map_err(unavailable)?
            .contains(&region)
        {
            return Err(CosignRefusal::Equivocator);
        }
        let replica = self.store.tree_frontier(region).map_err(unavailable)?;
        let before = self.store.witness_view(region).map_err(unavailable)?;
        let view = judge(&signed, before, replica.size, |n| {
            credfed_protocol::merkle::root_at(&self.tree_nodes(region), n).ok()
        })
        .inspect_err(|why| {
            if matches!(why, CosignRefusal::Conflict { .. }) {
                self.keep_fork_evidence(region, &signed);
            }
        })?;
        // The log matches; the index it commits to must be the one this replica gives.
        let size = signed.checkpoint.size;
        let ours = self.map_root(region, size).map_err(|e| match e {
            ProofFailure::NotHeld { held } => CosignRefusal::NotYet { held },
            // A later checkpoint of the region was handled here already.
            ProofFailure::Passed { latest } => CosignRefusal::Older { cosigned: latest },
            other => CosignRefusal::Invalid(format!("witness map: {other}")),
        })?;
        let theirs = signed
            .checkpoint
            .map_root()
            .unwrap_or(credfed_protocol::map::EMPTY);
        if signed.checkpoint.map_root() != Some(ours) {
            return Err(CosignRefusal::WrongMap { size, ours, theirs });
        }
        if before != Some(view) {
            self.store
                .set_witness_view(region, view)
                .map_err(unavailable)?;
        }
        let name = witness_name(&self.manifest.federation_id, self.region);
        signed.cosign(&name, &self.checkpoint_key, now);
        signed
            .signatures
            .pop()
            .ok_or_else(|| CosignRefusal::Invalid("cosigning failed".into()))
    }

    /// Takes a witnessed checkpoint of any region (its own included): keeps it if it is
    /// larger than the one held; if it contradicts this replica, keeps it as split-view
    /// evidence instead and says so.
    pub fn accept_witnessed(&self, note: &str) -> Result<Witnessed, String> {
        use credfed_protocol::checkpoint::SignedCheckpoint;
        let signed = SignedCheckpoint::parse(note).map_err(|e| e.to_string())?;
        let (region, _) = credfed_protocol::witness::verify_witnessed(&signed, &self.manifest)
            .map_err(|e| e.to_string())?;
        let cp = &signed.checkpoint;
        let store_err = |e: StoreError| e.to_string();
        let replica = self.store.tree_frontier(region).map_err(store_err)?;
        if cp.size <= replica.size {
            let ours = credfed_protocol::merkle::root_at(&self.tree_nodes(region), cp.size)
                .map_err(store_err)?;
            if ours != cp.root {
                self.store.set_note(b'X', region, note).map_err(store_err)?;
                return Ok(Witnessed::SplitView(region, cp.size));
            }
        }
        // Kept if it covers more records, or the same records signed later (an idle
        // region's refreshed head: its time is the region's freshness).
        let held = self.witnessed_checkpoint(region).map_err(store_err)?;
        if held
            .as_ref()
            .is_some_and(|h| !cp.is_later_than(&h.checkpoint))
        {
            return Ok(Witnessed::Older(region));
        }
        self.store.set_note(b'C', region, note).map_err(store_err)?;
        if let Ok(mut r) = self.witnessed_received.lock() {
            r.insert(region, self.now_seconds());
        }
        Ok(Witnessed::Stored(region, cp.size))
    }

    /// Whether the witnessed checkpoint held for the region of `note` is this one or a
    /// later one (more records, or the same records signed later): then there is
    /// nothing to verify or keep.
    fn holds_witnessed(&self, note: &str) -> bool {
        use credfed_protocol::checkpoint::SignedCheckpoint;
        let Ok(offered) = SignedCheckpoint::parse(note) else {
            return false;
        };
        let Some(region) = self
            .manifest
            .members
            .iter()
            .find(|m| {
                credfed_protocol::checkpoint::origin(&self.manifest.federation_id, m.region)
                    == offered.checkpoint.origin
            })
            .map(|m| m.region)
        else {
            return false;
        };
        self.witnessed_checkpoint(region)
            .ok()
            .flatten()
            .is_some_and(|h| {
                !offered.checkpoint.is_later_than(&h.checkpoint)
                    && (offered.checkpoint.size != h.checkpoint.size
                        || offered.checkpoint.root == h.checkpoint.root)
            })
    }

    /// The latest witnessed checkpoint of `region` this node holds.
    pub fn witnessed_checkpoint(
        &self,
        region: RegionCode,
    ) -> Result<Option<credfed_protocol::checkpoint::SignedCheckpoint>, StoreError> {
        Ok(self
            .store
            .note(b'C', region)?
            .and_then(|n| credfed_protocol::checkpoint::SignedCheckpoint::parse(&n).ok()))
    }

    /// The latest witnessed checkpoint of `region` held, as its note text.
    pub fn witnessed_note(&self, region: RegionCode) -> Result<Option<String>, StoreError> {
        self.store.note(b'C', region)
    }

    /// The manifest as the authority signed it (what the node was started with).
    pub fn signed_manifest(&self) -> Option<&credfed_protocol::manifest::SignedManifest> {
        self.signed_manifest.as_ref()
    }

    /// The largest checkpoint of `region` this node has cosigned as a witness.
    pub fn witness_view(
        &self,
        region: RegionCode,
    ) -> Result<Option<credfed_protocol::witness::WitnessView>, StoreError> {
        self.store.witness_view(region)
    }

    /// Keeps the first checkpoint `region`'s node signed that contradicts this replica
    /// (or what this node cosigned): evidence anyone can check — the region's own
    /// signature on a root that no honest replica reproduces.
    fn keep_fork_evidence(
        &self,
        region: RegionCode,
        signed: &credfed_protocol::checkpoint::SignedCheckpoint,
    ) {
        let mut evidence = signed.clone();
        // The region's own signature is the evidence; cosignatures are not.
        let name = signed.checkpoint.origin.clone();
        evidence.signatures.retain(|s| s.name == name);
        match self.store.note(b'Y', region) {
            Ok(None) => {
                if let Err(e) = self.store.set_note(b'Y', region, &evidence.encode()) {
                    tracing::warn!(%region, error = %e, "fork evidence not kept");
                } else {
                    self.metrics
                        .fork_evidence
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(%region, size = signed.checkpoint.size, "this region signed a checkpoint its replica contradicts: fork evidence kept");
                }
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(%region, error = %e, "fork evidence not kept"),
        }
    }

    /// A checkpoint signed by `region`'s node that contradicts this replica, if held.
    pub fn fork_evidence(&self, region: RegionCode) -> Result<Option<String>, StoreError> {
        self.store.note(b'Y', region)
    }

    /// A proof that `region`'s node signed two envelopes at one position, if held
    /// (`credfed verify-evidence` checks it offline).
    pub fn equivocation_evidence(
        &self,
        region: RegionCode,
    ) -> Result<Option<credfed_protocol::ledger::EquivocationProof>, StoreError> {
        Ok(self
            .store
            .proofs()?
            .into_iter()
            .find(|p| p.region == region))
    }

    /// Split-view evidence held against `region`, if any.
    pub fn split_view_evidence(&self, region: RegionCode) -> Result<Option<String>, StoreError> {
        self.store.note(b'X', region)
    }

    fn tree_bounds(&self, region: RegionCode, size: u64) -> Result<(), ProofFailure> {
        let held = self.store.tree_frontier(region)?.size;
        if size > held {
            return Err(ProofFailure::NotHeld { held });
        }
        Ok(())
    }

    fn tree_nodes(&self, region: RegionCode) -> StoredTree<'_> {
        StoredTree {
            store: &*self.store,
            region,
        }
    }

    /// When this node applied the envelope at `pos`.
    pub fn received_at(&self, pos: RecordPos) -> Result<Option<i64>, StoreError> {
        self.store.received_at(pos)
    }

    /// A list entry.
    pub fn entry(&self, id: &EntryId) -> Result<Option<EntryFold>, StoreError> {
        self.store.entry(id)
    }

    /// A joint action.
    pub fn action(&self, id: &ActionId) -> Result<Option<ActionFold>, StoreError> {
        self.store.action(id)
    }

    /// The tasks `region` has today (its inbox, `credfed_protocol::inbox`), earliest due
    /// first, from at most `max_marks` of its attention marks; and whether more marks
    /// were due than were read. Reads only the region's due marks and their folds.
    pub fn inbox(
        &self,
        region: RegionCode,
        max_marks: usize,
    ) -> Result<(Vec<credfed_protocol::inbox::Task>, bool), StoreError> {
        use credfed_protocol::inbox::{
            TaskRef, action_tasks, commitment_task, objection_task, repair_tasks, sort_tasks,
        };
        use credfed_protocol::record::ObjectionTarget;
        let now = self.now();
        let policy = &self.manifest().policy;
        let (marks, truncated) = self.store.marks_due(region, now.date_cst(), max_marks)?;
        let mut tasks = Vec::new();
        for (task, _) in marks {
            match task {
                TaskRef::Action(id) => {
                    let Some(a) = self.store.action(&id)? else {
                        continue;
                    };
                    let Some(e) = self.store.entry(&a.action.entry)? else {
                        continue;
                    };
                    tasks.extend(action_tasks(&a, &e, region, now, self.calendar(), policy));
                }
                TaskRef::Objection(id) => {
                    let status = match self.store.objection_target(&id)? {
                        Some(ObjectionTarget::Entry(e)) => self
                            .store
                            .entry(&e)?
                            .and_then(|f| f.objections.get(&id).cloned()),
                        Some(ObjectionTarget::Evaluation(v)) => self
                            .store
                            .evaluation(&v)?
                            .and_then(|f| f.objections.get(&id).cloned()),
                        None => None,
                    };
                    if let Some(s) = status {
                        tasks.extend(objection_task(id, &s, now, self.calendar(), policy));
                    }
                }
                TaskRef::Repair(id) => {
                    if let Some(e) = self.store.entry(&id)?
                        && e.issuer() == region
                    {
                        tasks.extend(repair_tasks(
                            &e,
                            now,
                            self.calendar(),
                            self.catalogue.repair.as_ref(),
                        ));
                    }
                }
                TaskRef::Commitment(id) => {
                    if let Some(c) = self.store.commitment(&id)?
                        && c.issuer() == region
                    {
                        tasks.extend(commitment_task(&c, now));
                    }
                }
            }
        }
        sort_tasks(&mut tasks);
        Ok((tasks, truncated))
    }

    /// A page of a listing (`credfed_protocol::listing`): lines matching `filter`,
    /// newest first within a region (regions in code order) or in name-index order for
    /// a name search, at most `limit`, reading at most `scan_budget` index keys; the
    /// cursor to continue from, if more may remain. Reads only the index range the
    /// filter selects (one region's dates, all regions' dates, or one piece of the
    /// name) and the folds it names.
    pub fn list(
        &self,
        kind: credfed_protocol::listing::ListingKind,
        filter: &credfed_protocol::listing::ListFilter,
        limit: usize,
        cursor: Option<&[u8]>,
        scan_budget: usize,
    ) -> Result<(Vec<serde_json::Value>, Option<Vec<u8>>), StoreError> {
        use crate::store::{listing_key_id_prefix, listing_range_by_date, listing_range_by_gram};
        use credfed_protocol::listing::{ListingKind, action_line, entry_line, evaluation_line};
        let now = self.now();
        let mut lines: Vec<serde_json::Value> = Vec::new();
        let mut budget = scan_budget;
        // What a key names, as listing lines (an entry's actions, for actions by name).
        // A key ends with the first bytes of the record's id: the fold is found by that
        // prefix (two records sharing it are both checked against the filter).
        let lines_of = |key: &[u8],
                        via_entry: bool,
                        lines: &mut Vec<serde_json::Value>|
         -> Result<(), StoreError> {
            let Some(prefix) = listing_key_id_prefix(key) else {
                return Ok(());
            };
            let fold_kind = match (kind, via_entry) {
                (ListingKind::Entry, _) | (ListingKind::Action, true) => b'E',
                (ListingKind::Evaluation, _) => b'V',
                (ListingKind::Action, false) => b'A',
            };
            for id in self.store.ids_with_prefix(fold_kind, &prefix, 4)? {
                match (kind, via_entry) {
                    (ListingKind::Entry, _) => {
                        if let Some(e) = self.store.entry(&EntryId(id))?
                            && let Some(l) = entry_line(&e, filter, now)
                        {
                            lines.push(serde_json::to_value(&l).unwrap_or_default());
                        }
                    }
                    (ListingKind::Evaluation, _) => {
                        if let Some(v) = self
                            .store
                            .evaluation(&credfed_protocol::record::EvaluationId(id))?
                            && let Some(l) = evaluation_line(&v, filter, now)
                        {
                            lines.push(serde_json::to_value(&l).unwrap_or_default());
                        }
                    }
                    (ListingKind::Action, false) => {
                        if let Some(a) = self.store.action(&ActionId(id))?
                            && let Some(e) = self.store.entry(&a.action.entry)?
                            && let Some(l) = action_line(&a, &e, filter)
                        {
                            lines.push(serde_json::to_value(&l).unwrap_or_default());
                        }
                    }
                    (ListingKind::Action, true) => {
                        if let Some(e) = self.store.entry(&EntryId(id))? {
                            for aid in &e.actions {
                                if let Some(a) = self.store.action(aid)?
                                    && let Some(l) = action_line(&a, &e, filter)
                                {
                                    lines.push(serde_json::to_value(&l).unwrap_or_default());
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        };
        // The ranges to read, in order, and whether each is read newest first.
        let mut ranges: Vec<(Vec<u8>, Vec<u8>, bool, bool)> = Vec::new();
        if let Some(query) = filter.name.as_ref().filter(|q| q.len() >= 2) {
            // The API refuses a query that is only a legal form; nothing to read here.
            let Some(gram) = credfed_protocol::listing::query_gram(query) else {
                return Ok((lines, None));
            };
            // Actions are found through the entries they rest on.
            let index_kind = if kind == ListingKind::Action {
                ListingKind::Entry
            } else {
                kind
            };
            let (lo, hi) = listing_range_by_gram(index_kind, gram);
            ranges.push((lo, hi, false, kind == ListingKind::Action));
        } else {
            let regions: Vec<RegionCode> = match filter.region {
                Some(r) => vec![r],
                None => self.manifest().members.iter().map(|m| m.region).collect(),
            };
            for r in regions {
                let (lo, hi) = listing_range_by_date(kind, r, filter.from, filter.to);
                ranges.push((lo, hi, true, false));
            }
        }
        // A cursor is the range's index (u16) and the last key read in it (none: from
        // its start).
        let (start, mut after) = match cursor {
            Some(c) if c.len() >= 2 => (
                usize::from(u16::from_be_bytes([c[0], c[1]])),
                Some(c[2..].to_vec()).filter(|k| !k.is_empty()),
            ),
            _ => (0, None),
        };
        let encode = |idx: usize, key: &Option<Vec<u8>>| {
            let mut c = (idx as u16).to_be_bytes().to_vec();
            c.extend_from_slice(key.as_deref().unwrap_or_default());
            c
        };
        for (idx, (lo, hi, descending, via_entry)) in ranges.iter().enumerate().skip(start) {
            if idx > start {
                after = None;
            }
            loop {
                if budget == 0 {
                    return Ok((lines, Some(encode(idx, &after))));
                }
                let (keys, more) = self.store.listing_keys(
                    lo,
                    hi,
                    after.as_deref(),
                    *descending,
                    budget.min(256),
                )?;
                budget -= keys.len();
                for key in keys {
                    lines_of(&key, *via_entry, &mut lines)?;
                    after = Some(key);
                    if lines.len() >= limit {
                        return Ok((lines, Some(encode(idx, &after))));
                    }
                }
                if !more {
                    break;
                }
            }
        }
        Ok((lines, None))
    }

    /// Up to `limit` ids of records of `kind` (`b'E'`, `b'A'`, `b'V'`, `b'O'`) that
    /// start with the hex digits `hex`.
    pub fn ids_with_prefix(
        &self,
        kind: u8,
        hex: &str,
        limit: usize,
    ) -> Result<Vec<Hash256>, StoreError> {
        self.store.ids_with_prefix(kind, hex, limit)
    }

    /// A department.
    pub fn department(&self, id: &DepartmentId) -> Result<Option<DepartmentRecord>, StoreError> {
        self.store.department(id)
    }

    /// Every registered department, revoked ones included.
    pub fn departments(&self) -> Result<Vec<DepartmentRecord>, StoreError> {
        self.store.all_departments().collect()
    }

    /// Every entry fold (statistics).
    pub fn entries(&self) -> impl Iterator<Item = Result<EntryFold, StoreError>> + '_ {
        self.store.all_entries()
    }

    /// Every action fold (statistics).
    pub fn actions(&self) -> impl Iterator<Item = Result<ActionFold, StoreError>> + '_ {
        self.store.all_actions()
    }

    /// Every commitment fold (reports).
    pub fn commitments(
        &self,
    ) -> impl Iterator<Item = Result<credfed_protocol::state::CommitmentFold, StoreError>> + '_
    {
        self.store.all_commitments()
    }

    /// Every disclosed decision (reports).
    pub fn disclosures(
        &self,
    ) -> impl Iterator<Item = Result<credfed_protocol::state::DisclosureFold, StoreError>> + '_
    {
        self.store.all_disclosures()
    }

    /// A disclosed decision.
    pub fn disclosure(
        &self,
        id: &credfed_protocol::record::DisclosureId,
    ) -> Result<Option<credfed_protocol::state::DisclosureFold>, StoreError> {
        self.store.disclosure(id)
    }
    /// An evaluation result as held (its publication and revocation).
    pub fn evaluation(
        &self,
        id: &credfed_protocol::record::EvaluationId,
    ) -> Result<Option<credfed_protocol::state::EvaluationFold>, StoreError> {
        self.store.evaluation(id)
    }

    /// A written commitment.
    pub fn commitment(
        &self,
        id: &credfed_protocol::record::CommitmentId,
    ) -> Result<Option<credfed_protocol::state::CommitmentFold>, StoreError> {
        self.store.commitment(id)
    }

    /// Regions flagged for equivocation.
    pub fn equivocators(&self) -> Result<Vec<RegionCode>, StoreError> {
        self.store.equivocators()
    }

    /// Bytes the store takes on disk.
    pub fn store_bytes(&self) -> u64 {
        self.store.size_on_disk()
    }

    /// The store engine's page cache: budget and use.
    pub fn store_cache(&self) -> crate::store::CacheUsage {
        self.store.cache_usage()
    }

    /// Whether a record is published verbatim to the public
    /// (`credfed_protocol::publicity::record_publicity`), resolving the record it follows
    /// to its subject as first published: an entry's publication envelope (an amendment
    /// may correct the subject later), an evaluation's or commitment's content (never
    /// amended), an objection's target, an action's entry.
    pub fn record_publicity(
        &self,
        body: &credfed_protocol::record::Body,
    ) -> Result<Result<(), credfed_protocol::publicity::Withheld>, StoreError> {
        use credfed_protocol::publicity::{About, record_publicity};
        use credfed_protocol::record::{Body, Subject};
        enum Step {
            IsPerson(bool),
            Follow(About),
        }
        let mut failure = None;
        let mut resolve = |about: About| -> Option<bool> {
            let mut about = about;
            // An objection names a target, an action an entry: at most two steps.
            for _ in 0..3 {
                let step: Result<Option<Step>, StoreError> = (|| {
                    Ok(match about {
                        About::Entry(id) => match self.store.entry(&id)? {
                            None => None,
                            Some(f) => {
                                let bytes = self.store.envelope_at(f.published.pos)?;
                                let body = bytes.as_deref().and_then(|b| {
                                    credfed_protocol::envelope::decode_envelope(
                                        &self.manifest.federation_id,
                                        b,
                                    )
                                    .ok()
                                    .map(|v| v.body)
                                });
                                match body {
                                    Some(Body::ListEntryPublished(e)) => Some(Step::IsPerson(
                                        matches!(e.subject, Subject::Person(_)),
                                    )),
                                    _ => None,
                                }
                            }
                        },
                        About::Evaluation(id) => self.store.evaluation(&id)?.map(|f| {
                            Step::IsPerson(matches!(f.evaluation.subject, Subject::Person(_)))
                        }),
                        About::Commitment(id) => self.store.commitment(&id)?.map(|f| {
                            Step::IsPerson(matches!(f.commitment.subject, Subject::Person(_)))
                        }),
                        About::Objection(id) => self
                            .store
                            .objection_target(&id)?
                            .map(|t| Step::Follow(t.into())),
                        About::Action(id) => self
                            .store
                            .action(&id)?
                            .map(|a| Step::Follow(About::Entry(a.action.entry))),
                    })
                })();
                match step {
                    Ok(Some(Step::IsPerson(is_person))) => return Some(is_person),
                    Ok(Some(Step::Follow(next))) => about = next,
                    Ok(None) => return None,
                    Err(e) => {
                        failure = Some(e);
                        return None;
                    }
                }
            }
            None
        };
        let publicity = record_publicity(body, &mut resolve);
        match failure {
            Some(e) => Err(e),
            None => Ok(publicity),
        }
    }

    /// The entries, evaluations and commitments that name a subject.
    pub fn subject_refs(
        &self,
        key: &SubjectKey,
    ) -> Result<Vec<credfed_protocol::ledger::SubjectRef>, StoreError> {
        credfed_protocol::ledger::StateView::subject_refs(&*self.store, key)
    }

    /// The envelope at a position, verbatim.
    pub fn envelope_at(&self, pos: RecordPos) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.envelope_at(pos)
    }

    /// The check (应查必查) answered from this replica now.
    pub fn check(
        &self,
        subject: &SubjectKey,
        domain: MeasureDomain,
    ) -> Result<CheckAnswer, StoreError> {
        credfed_protocol::check::check(self.rules(), &*self.store, subject, domain, self.now())
    }
}

/// The store as a [`credfed_protocol::federation::ProofSource`]: listings under the
/// map version and tree of a size, envelopes, registrations.
struct StoreProofs<'a> {
    core: &'a Core,
}

impl credfed_protocol::federation::ProofSource for StoreProofs<'_> {
    type Error = ProofFailure;

    fn listing(
        &self,
        region: RegionCode,
        size: u64,
        key: &Hash256,
    ) -> Result<(credfed_protocol::federation::Listing, Vec<Vec<u8>>), ProofFailure> {
        let core = self.core;
        core.map_root(region, size)?;
        let nodes = StoredMap::new(&*core.store, region);
        let proof = credfed_protocol::map::map_proof(&nodes, size, key).map_err(map_failure)?;
        let positions = nodes.positions(key, size)?;
        let mut inclusion = Vec::with_capacity(positions.len());
        let mut envelopes = Vec::with_capacity(positions.len());
        for seq in &positions {
            let pos = RecordPos { region, seq: *seq };
            inclusion.push(credfed_protocol::federation::InclusionProof {
                seq: *seq,
                hashes: core.inclusion_proof(region, *seq, size)?,
            });
            envelopes.push(core.store.envelope_at(pos)?.ok_or_else(|| {
                StoreError::Corrupt(format!("{region}#{seq}: listed by the map, not stored"))
            })?);
        }
        Ok((
            credfed_protocol::federation::Listing {
                proof,
                positions,
                inclusion,
            },
            envelopes,
        ))
    }

    fn registration(
        &self,
        department: &DepartmentId,
    ) -> Result<Option<(RecordPos, Vec<u8>)>, ProofFailure> {
        let Some(d) = self.core.store.department(department)? else {
            return Ok(None);
        };
        Ok(self
            .core
            .store
            .envelope_at(d.registered_at)?
            .map(|bytes| (d.registered_at, bytes)))
    }
}

pub use credfed_protocol::witness::CosignRefusal;

/// What became of a witnessed checkpoint received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Witnessed {
    /// Kept: the largest witnessed checkpoint of the region held.
    Stored(RegionCode, u64),
    /// Not larger than the one held.
    Older(RegionCode),
    /// Its root contradicts this replica at that size: kept as evidence.
    SplitView(RegionCode, u64),
}

/// Why a proof could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofFailure {
    /// The replica does not hold that many records of the region (yet).
    #[error("this node holds {held} records of the region")]
    NotHeld {
        /// Records held.
        held: u64,
    },
    /// The positions asked for are not in the tree asked about.
    #[error("{0}")]
    OutOfRange(String),
    /// The region's map was computed at a later size and never at the one asked about
    /// (a version is computed per checkpoint signed or cosigned, and only forward).
    #[error(
        "the map was computed at {latest} records and not at the size asked about; ask about a later checkpoint"
    )]
    Passed {
        /// The latest size the map was computed at.
        latest: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProofFailure {
    fn from_merkle(e: credfed_protocol::merkle::ProofError<StoreError>) -> ProofFailure {
        match e {
            credfed_protocol::merkle::ProofError::OutOfRange(m) => ProofFailure::OutOfRange(m),
            credfed_protocol::merkle::ProofError::Nodes(e) => ProofFailure::Store(e),
        }
    }
}

fn map_failure(e: credfed_protocol::map::MapError<StoreError>) -> ProofFailure {
    ProofFailure::Store(map_store_error(e))
}

fn map_store_error(e: credfed_protocol::map::MapError<StoreError>) -> StoreError {
    match e {
        credfed_protocol::map::MapError::Store(e) => e,
        credfed_protocol::map::MapError::Corrupt(m) => StoreError::Corrupt(m),
    }
}

/// A region's stored map, as the map functions read it: nodes come from pages
/// (crate::store::map_page), each read once per computation and kept here, because an
/// update or a proof reads up to four nodes of every page on its path. The first
/// position of every leaf read is kept too: it is how a computation learns which keys
/// already had one.
struct StoredMap<'a> {
    store: &'a dyn Backend,
    region: RegionCode,
    pages: std::cell::RefCell<HashMap<(PageId, u64), Option<MapPage>>>,
    firsts: std::cell::RefCell<HashMap<Hash256, Option<u64>>>,
}

/// What a map version stores: its changed pages and the positions kept apart from them.
struct MapVersionWrites {
    pages: Vec<(PageId, MapPage)>,
    positions: Vec<(Hash256, u64)>,
}

impl<'a> StoredMap<'a> {
    fn new(store: &'a dyn Backend, region: RegionCode) -> Self {
        StoredMap {
            store,
            region,
            pages: Default::default(),
            firsts: Default::default(),
        }
    }

    /// The node in `slot` of page `id` as of `version`, reading the page on first use.
    fn node_in(
        &self,
        id: PageId,
        slot: u8,
        version: u64,
    ) -> Result<Option<credfed_protocol::map::MapNode>, StoreError> {
        // Only the node leaves the cache: a page is not copied per read.
        let cached = self
            .pages
            .borrow()
            .get(&(id, version))
            .map(|page| page.as_ref().and_then(|p| p.get(slot)));
        let found = match cached {
            Some(found) => found,
            None => {
                let page = self.store.map_page(self.region, &id, version)?;
                let found = page.as_ref().and_then(|p| p.get(slot));
                self.pages.borrow_mut().insert((id, version), page);
                found
            }
        };
        if let Some(PageNode {
            node: credfed_protocol::map::MapNode::Leaf { key, .. },
            first,
            ..
        }) = found
        {
            self.firsts.borrow_mut().insert(key, first);
        }
        Ok(found.map(|n| n.node))
    }

    /// The positions (≤ `up_to`) of the records naming `key` in the map as of
    /// `up_to`: the first from its leaf (read now unless a proof just read it — pages
    /// are cached), the others from the records kept apart.
    fn positions(&self, key: &Hash256, up_to: u64) -> Result<Vec<u64>, StoreError> {
        if !self.firsts.borrow().contains_key(key) {
            credfed_protocol::map::map_get(self, up_to, key).map_err(map_store_error)?;
        }
        let mut out: Vec<u64> = self
            .firsts
            .borrow()
            .get(key)
            .copied()
            .flatten()
            .filter(|first| *first <= up_to)
            .into_iter()
            .collect();
        out.extend(self.store.map_positions(self.region, key, up_to)?);
        Ok(out)
    }

    /// What to store for a version computed from `from`: every page a write touches,
    /// as it was at `from` with the written nodes put in (taken from the cache, which
    /// is spent), and the positions a leaf does not carry. A key new in this version
    /// keeps its first position in its leaf; every later position is stored apart.
    fn version_writes(
        self,
        from: u64,
        writes: &[credfed_protocol::map::MapWrite],
        changes: &credfed_protocol::map::MapChanges,
    ) -> Result<MapVersionWrites, StoreError> {
        use credfed_protocol::map::{MapNode, ValueUpdate};
        let firsts = self.firsts.borrow();
        // A key is new exactly when no leaf of it was read: an update reads the leaf of
        // every key it changes that exists, to chain onto its value.
        let first_of = |key: &Hash256| -> Option<u64> {
            match firsts.get(key) {
                Some(kept) => *kept,
                None => match changes.updates.get(key) {
                    Some(ValueUpdate::Append(seqs)) => seqs.first().copied(),
                    _ => None,
                },
            }
        };
        let mut changed: BTreeMap<PageId, MapPage> = BTreeMap::new();
        for w in writes {
            let (id, slot) = PageId::of(w.depth, &w.prefix);
            let page = match changed.entry(id) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let before = match self.pages.borrow_mut().remove(&(id, from)) {
                        Some(cached) => cached,
                        // An update reads every node from the root down to where a
                        // changed key's path ends (a leaf or an empty subtree) and
                        // writes below that without reading. A page it never read
                        // therefore lies wholly below such an end: empty at `from`.
                        None => {
                            debug_assert_eq!(
                                self.store.map_page(self.region, &id, from).ok().flatten(),
                                None,
                                "a page the update did not read holds nodes"
                            );
                            None
                        }
                    };
                    v.insert(before.unwrap_or_default())
                }
            };
            let first = match w.node {
                MapNode::Leaf { key, .. } => first_of(&key),
                MapNode::Internal { .. } => None,
            };
            page.set(PageNode {
                slot,
                node: w.node,
                first,
            });
        }
        let positions = changes
            .positions
            .iter()
            .filter(|(key, seq)| firsts.contains_key(key) || first_of(key) != Some(*seq))
            .copied()
            .collect();
        Ok(MapVersionWrites {
            pages: changed.into_iter().collect(),
            positions,
        })
    }
}

impl credfed_protocol::map::MapNodes for StoredMap<'_> {
    type Error = StoreError;
    fn map_node(
        &self,
        depth: u16,
        prefix: &Hash256,
        version: u64,
    ) -> Result<Option<credfed_protocol::map::MapNode>, StoreError> {
        let (id, slot) = PageId::of(depth, prefix);
        self.node_in(id, slot, version)
    }
}

/// A region's stored tree, as the Merkle proofs read it.
struct StoredTree<'a> {
    store: &'a dyn Backend,
    region: RegionCode,
}

impl credfed_protocol::merkle::TreeNodes for StoredTree<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash256, StoreError> {
        self.store
            .tree_node(self.region, level, index)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{}: tree node {level}/{index} missing",
                    self.region
                ))
            })
    }
}

#[cfg(test)]
mod map_storage_tests {
    //! The paged map store against the definition: every version's root is the root of
    //! the map built from scratch, every key's proof verifies under it, and the
    //! positions listed for a key at a version are exactly the records naming it up to
    //! then — whether its first position sits in its leaf or all are stored apart —
    //! before and after older versions are pruned.

    use super::*;
    use crate::store::Store;
    use credfed_protocol::crypto::sha256;
    use credfed_protocol::map::{
        MapChanges, ValueUpdate, map_proof, map_update, reference_root, value_of, verify_map_proof,
    };

    fn key(i: u64) -> Hash256 {
        sha256(&[b"map storage test key", &i.to_be_bytes()])
    }

    /// A small deterministic generator (the test must not depend on a seed file).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn expected_at(
        named: &BTreeMap<Hash256, Vec<u64>>,
        version: u64,
    ) -> BTreeMap<Hash256, Vec<u64>> {
        named
            .iter()
            .map(|(k, seqs)| (*k, seqs.iter().copied().filter(|s| *s <= version).collect()))
            .filter(|(_, seqs): &(Hash256, Vec<u64>)| !seqs.is_empty())
            .collect()
    }

    #[test]
    fn paged_map_versions_match_the_definition_list_every_position_and_survive_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        const POOL: u64 = 400;
        // A region per seed keeps the runs apart.
        for (seed, code) in [(1u64, 310000), (7, 440000), (2026, 110000)] {
            let region = RegionCode::new(code, "region").unwrap();
            let mut rng = Lcg(seed);
            let apart_before = store.count(b'K');
            let mut named: BTreeMap<Hash256, Vec<u64>> = BTreeMap::new();
            let mut roots = Vec::new();
            let mut size = 0u64;
            for _ in 0..14 {
                let from = size;
                size += 1 + rng.below(90);
                let mut changes = MapChanges::default();
                for seq in from + 1..=size {
                    // Key 0 is a busy subject, named by a third of the records.
                    let mut keys = std::collections::BTreeSet::new();
                    if rng.below(3) == 0 {
                        keys.insert(key(0));
                    }
                    for _ in 0..1 + rng.below(2) {
                        keys.insert(key(rng.below(POOL)));
                    }
                    for k in keys {
                        changes.positions.push((k, seq));
                        named.entry(k).or_default().push(seq);
                        match changes
                            .updates
                            .entry(k)
                            .or_insert_with(|| ValueUpdate::Append(Vec::new()))
                        {
                            ValueUpdate::Append(seqs) => seqs.push(seq),
                            ValueUpdate::Set(_) => unreachable!(),
                        }
                    }
                }
                let nodes = StoredMap::new(&store, region);
                let (root, writes) = map_update(&nodes, from, &changes.updates).unwrap();
                let stored = nodes.version_writes(from, &writes, &changes).unwrap();
                // Version n is computed at second 10·n.
                let computed_at = 10 * roots.len() as u64;
                store
                    .put_map_version(
                        region,
                        size,
                        &stored.pages,
                        root,
                        &stored.positions,
                        computed_at,
                    )
                    .unwrap();
                let definition = reference_root(
                    &expected_at(&named, size)
                        .iter()
                        .map(|(k, s)| (*k, value_of(s).unwrap()))
                        .collect(),
                );
                assert_eq!(root, definition, "seed {seed}, version {size}");
                roots.push((size, root));
            }
            let check = |version: u64, root: &Hash256| {
                let expected = expected_at(&named, version);
                for i in 0..POOL {
                    let k = key(i);
                    let nodes = StoredMap::new(&store, region);
                    let proof = map_proof(&nodes, version, &k).unwrap();
                    let value = verify_map_proof(root, &k, &proof).unwrap();
                    let listed = nodes.positions(&k, version).unwrap();
                    let want = expected.get(&k).cloned().unwrap_or_default();
                    // Without a proof first, the lookup walks to the leaf itself.
                    let alone = StoredMap::new(&store, region)
                        .positions(&k, version)
                        .unwrap();
                    assert_eq!(
                        alone, want,
                        "seed {seed} key {i} at {version}, no proof first"
                    );
                    assert_eq!(value, value_of(&want), "seed {seed} key {i} at {version}");
                    assert_eq!(listed, want, "seed {seed} key {i} at {version}");
                }
            };
            for (version, root) in &roots {
                check(*version, root);
            }
            // Pruning: versions 0..=7 were computed by second 70; a checkpoint still
            // served at version 10 does not hold back what the clock allows.
            let pages_before = store.count(b'I');
            let (versions, pages) = store.prune_map(region, roots[10].0, 70).unwrap();
            assert_eq!(versions, 7, "seed {seed}: versions below the 8th forgotten");
            assert!(pages > 0, "seed {seed}: shadowed pages forgotten");
            assert_eq!(store.count(b'I'), pages_before - pages);
            for (version, _) in &roots[..7] {
                assert_eq!(store.map_root_at(region, *version).unwrap(), None);
            }
            for (version, root) in &roots[7..] {
                assert_eq!(store.map_root_at(region, *version).unwrap(), Some(*root));
                check(*version, root);
            }
            // A checkpoint still served holds pruning back whatever the clock says.
            let (versions, _) = store.prune_map(region, roots[9].0, u64::MAX).unwrap();
            assert_eq!(versions, 2, "seed {seed}: only versions below the 10th");
            for (version, root) in &roots[9..] {
                check(*version, root);
            }
            assert_eq!(store.map_latest(region).unwrap(), roots.last().copied());
            // Each key's first position lives in its leaf: the records kept apart are
            // the others only.
            let total: usize = named.values().map(Vec::len).sum();
            let kept_apart = store.count(b'K') - apart_before;
            assert_eq!(kept_apart, total - named.len(), "seed {seed}");
        }
    }
}

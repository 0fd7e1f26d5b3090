//! The writer thread (admission, effects, apply, parking) and the syncer thread (fsync,
//! then acknowledge and gossip). See the module above for why they exist.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::codec;
use credfed_protocol::crypto::{Keypair, PublicKey, Signature, VerifiedSignatures};
use credfed_protocol::envelope::{
    AppendPosition, Envelope, GENESIS_PREV_HASH, NODE_UNIT, VerifiedEnvelope, seal_recording,
    sign_body,
};
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::ledger::{
    Admission, AdmitError, EquivocationProof, Head, RejectReason, Rejection, Rules, admit_with,
    effects,
};
use credfed_protocol::limits::MAX_ENVELOPE_BYTES;
use credfed_protocol::manifest::Manifest;
use credfed_protocol::record::Body;
use credfed_protocol::state::RecordPos;
use credfed_protocol::time::Timestamp;
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

use super::{AppendError, AppendJob, Clock, IngestError, ShareableHead, WriteGate};
use crate::metrics::Metrics;
use crate::replication::{MAX_PARKED_PER_REGION, Parked};
use crate::store::{Backend, StoreError};

/// Groups handed from the writer to the syncer and not yet synced. Two keep the disk
/// busy (one syncing, one waiting) while the writer applies a third; more would only
/// add latency.
const SYNC_QUEUE: usize = 2;

/// Equivocation proofs waiting to be recorded as evidence in the own log. Proofs come
/// from misbehaving members, of which there are at most 30.
const MAX_PENDING_EVIDENCE: usize = 64;

/// How often the writer retries work that waits on time (evidence while writes were
/// paused).
const WRITER_TICK: Duration = Duration::from_secs(1);

/// Envelopes a pre-verifying thread takes at a time: large enough that handing a chunk
/// over costs nothing next to its 128 signature checks, small enough that the writer
/// starts applying after one chunk's verification, not the whole range's.
const PREVERIFY_CHUNK: usize = 64;

/// Ranges shorter than this are verified by admission on the writer alone: starting
/// threads would cost more than it saves.
const PREVERIFY_MIN_RANGE: usize = 2 * PREVERIFY_CHUNK;

/// Threads that verify a pulled range's signatures ahead of the writer: one per core,
/// at most four (the writer then applies as fast as they verify on this kind of
/// machine; more would only compete with the API for the cores).
fn preverifier_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Verifies the signatures of `chunk` strictly into a [`VerifiedSignatures`]: the
/// node's under the manifest's key for the envelope's region, the author's under the
/// key the store holds for it now. Anything that does not decode, or names an author
/// not yet known, is left for admission to judge.
fn preverify(
    federation_id: &str,
    node_keys: &BTreeMap<RegionCode, (PublicKey, PublicKey)>,
    store: &dyn Backend,
    chunk: &[Vec<u8>],
) -> VerifiedSignatures {
    let mut known = VerifiedSignatures::new();
    let mut authors: BTreeMap<DepartmentId, Option<PublicKey>> = BTreeMap::new();
    let mut heads: BTreeMap<RegionCode, u64> = BTreeMap::new();
    for bytes in chunk {
        let Ok(env) = codec::decode::<Envelope>(bytes, MAX_ENVELOPE_BYTES, "envelope") else {
            continue;
        };
        // Positions already held are admission's to compare (a duplicate costs a read,
        // an equivocation one node signature): verifying them here would let a member
        // replay old envelopes, in batches of hundreds, for checks it never pays for.
        let held = *heads.entry(env.region).or_insert_with(|| {
            credfed_protocol::ledger::StateView::head(store, env.region)
                .ok()
                .flatten()
                .map_or(0, |h| h.seq)
        });
        if env.seq <= held {
            continue;
        }
        let Some(&(node_key, operator_key)) = node_keys.get(&env.region) else {
            continue;
        };
        let author_key = if env.author.unit == NODE_UNIT {
            Some(node_key)
        } else if env.author.unit == credfed_protocol::envelope::OPERATOR_UNIT {
            Some(operator_key)
        } else {
            *authors
                .entry(env.author.clone())
                .or_insert_with(|| store.department(&env.author).ok().flatten().map(|d| d.key))
        };
        env.preverify(&mut known, federation_id, &node_key, author_key.as_ref());
    }
    known
}

/// Envelopes from a peer, for the writer to admit.
#[derive(Debug)]
pub enum IngestJob {
    /// One gossip message (a batch of envelopes, `credfed_protocol::gossip`); its
    /// verdict goes back to gossipsub's validation.
    Gossip {
        /// The message's bytes.
        bytes: Vec<u8>,
        /// The peer that forwarded it.
        source: PeerId,
        /// Its gossip id.
        message_id: MessageId,
    },
    /// A pulled range of one region's log.
    Range {
        /// The peer that answered.
        peer: PeerId,
        /// Region of the log.
        region: RegionCode,
        /// First sequence number the replicator asked for; `None` for a fork probe,
        /// which the replicator did not plan.
        from: Option<u64>,
        /// Envelopes, in order.
        envelopes: Vec<Vec<u8>>,
    },
}

/// What gossip should do with a message, decided by admission alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVerdict {
    /// Valid and new: forward it.
    Accept,
    /// Not forwarded, no one blamed (duplicate, early, or our own store failed).
    Ignore,
    /// Invalid: the sender sent what no honest member sends.
    Reject,
}

/// What the engine tells the network.
#[derive(Debug)]
pub enum EngineEvent {
    /// The verdict on a gossip message.
    Gossip {
        /// Who forwarded it.
        source: PeerId,
        /// Its id.
        message_id: MessageId,
        /// The verdict.
        verdict: PeerVerdict,
    },
    /// A pulled range was processed.
    RangeDone {
        /// Who answered.
        peer: PeerId,
        /// Region.
        region: RegionCode,
        /// First sequence number asked for (`None`: a fork probe).
        from: Option<u64>,
        /// An envelope in it was invalid: the peer's log may fork from ours.
        forked: bool,
    },
    /// Heads that moved since the last report.
    Heads(BTreeMap<RegionCode, Head>),
    /// Every region's head as the store holds it after a reopen (some may have gone
    /// back): replaces what the network knew.
    HeadsReloaded(BTreeMap<RegionCode, Head>),
    /// Own envelopes made durable together, in log order: gossip them (in as few
    /// messages as the gossip limits allow).
    Appended(Vec<Vec<u8>>),
}

/// An own envelope applied and waiting for the fsync that acknowledges it.
struct Sealed {
    reply: Option<oneshot::Sender<Result<VerifiedEnvelope, AppendError>>>,
    envelope: VerifiedEnvelope,
}

pub(super) struct WriterParts {
    pub store: Arc<dyn Backend>,
    pub manifest: Manifest,
    pub catalogue: Catalogue,
    pub region: RegionCode,
    pub node_key: Keypair,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<WriteGate>,
    pub shareable: Arc<ShareableHead>,
    pub heads: BTreeMap<RegionCode, Head>,
    pub group_commit_max: usize,
    pub appends: mpsc::Receiver<AppendJob>,
    pub ingests: mpsc::Receiver<IngestJob>,
    pub events: mpsc::Sender<EngineEvent>,
}

/// Starts the writer (and, with group commit, the syncer).
pub(super) fn spawn(parts: WriterParts) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let WriterParts {
        store,
        manifest,
        catalogue,
        region,
        node_key,
        clock,
        metrics,
        gate,
        shareable,
        heads,
        group_commit_max,
        appends,
        ingests,
        events,
    } = parts;
    let mut threads = Vec::new();
    let syncer = if group_commit_max > 1 {
        let (tx, rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
        let s = Syncer {
            store: store.clone(),
            gate: gate.clone(),
            shareable: shareable.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("credfed-syncer".into())
                .spawn(move || s.run(rx))?,
        );
        Some(tx)
    } else {
        None
    };
    let mut writer = Writer {
        store,
        manifest,
        catalogue,
        region,
        node_key,
        clock,
        metrics,
        gate,
        shareable,
        heads,
        moved: BTreeMap::new(),
        parked: Parked::default(),
        evidence: VecDeque::new(),
        evidence_seen: BTreeSet::new(),
        group_commit_max,
        syncer,
        events,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    threads.push(
        std::thread::Builder::new()
            .name("credfed-writer".into())
            .spawn(move || runtime.block_on(writer.run(appends, ingests)))?,
    );
    Ok(threads)
}

struct Writer {
    store: Arc<dyn Backend>,
    manifest: Manifest,
    catalogue: Catalogue,
    region: RegionCode,
    node_key: Keypair,
    clock: Clock,
    metrics: Arc<Metrics>,
    gate: Arc<WriteGate>,
    shareable: Arc<ShareableHead>,
    /// Every region's head, kept here because only this thread moves them.
    heads: BTreeMap<RegionCode, Head>,
    /// Heads moved since the network was last told.
    moved: BTreeMap<RegionCode, Head>,
    parked: Parked,
    evidence: VecDeque<EquivocationProof>,
    evidence_seen: BTreeSet<(RegionCode, u64)>,
    group_commit_max: usize,
    syncer: Option<SyncSender<Vec<Sealed>>>,
    events: mpsc::Sender<EngineEvent>,
}

impl Writer {
    async fn run(
        &mut self,
        mut appends: mpsc::Receiver<AppendJob>,
        mut ingests: mpsc::Receiver<IngestJob>,
    ) {
        let mut tick = tokio::time::interval(WRITER_TICK);
        loop {
            tokio::select! {
                // Departments wait on appends; peers' envelopes can wait a moment.
                biased;
                job = appends.recv() => match job {
                    Some(job) => self.on_appends(job, &mut appends).await,
                    None => break,
                },
                Some(job) = ingests.recv() => self.on_ingest(job).await,
                _ = tick.tick() => {
                    self.retry_failed_store().await;
                    self.commit_evidence().await;
                }
            }
        }
        // The syncer ends when its queue closes, after answering what it holds.
        self.syncer = None;
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            manifest: &self.manifest,
            catalogue: &self.catalogue,
        }
    }

    async fn on_appends(&mut self, first: AppendJob, queue: &mut mpsc::Receiver<AppendJob>) {
        let mut group = vec![first];
        while group.len() < self.group_commit_max {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut sealed = Vec::with_capacity(group.len());
        for job in group {
            match self.append(job.author, job.body, job.signature) {
                Ok(envelope) => sealed.push(Sealed {
                    reply: Some(job.reply),
                    envelope,
                }),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        self.seal_evidence(&mut sealed);
        self.commit(sealed);
        self.report_heads().await;
    }

    async fn on_ingest(&mut self, job: IngestJob) {
        // While the store cannot persist, peers' records are not even tried (each try
        // would fail and log): they are fetched again once it recovers.
        let failing = self.gate.store_failure().is_some();
        if failing {
            self.metrics
                .ingest_store_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        // The heads go first, so that the network plans its next fetch from them and
        // not from the heads before this job.
        let verdict = match job {
            IngestJob::Gossip {
                source, message_id, ..
            } if failing => EngineEvent::Gossip {
                verdict: PeerVerdict::Ignore,
                source,
                message_id,
            },
            IngestJob::Range {
                peer, region, from, ..
            } if failing => EngineEvent::RangeDone {
                peer,
                region,
                from,
                forked: false,
            },
            IngestJob::Gossip {
                bytes,
                source,
                message_id,
            } => EngineEvent::Gossip {
                verdict: self.ingest_gossip(&bytes),
                source,
                message_id,
            },
            IngestJob::Range {
                peer,
                region,
                from,
                envelopes,
            } => {
                let forked = self.ingest_range(&envelopes) == PeerVerdict::Reject;
                EngineEvent::RangeDone {
                    peer,
                    region,
                    from,
                    forked,
                }
            }
        };
        self.report_heads().await;
        self.send(verdict).await;
        self.commit_evidence().await;
    }

    async fn send(&self, event: EngineEvent) {
        // The network drains its events continuously; it is gone only at shutdown.
        let _ = self.events.send(event).await;
    }

    async fn report_heads(&mut self) {
        self.metrics
            .parked
            .store(self.parked.len() as u64, Ordering::Relaxed);
        if !self.moved.is_empty() {
            let moved = std::mem::take(&mut self.moved);
            self.send(EngineEvent::Heads(moved)).await;
        }
    }

    /// Admits a gossip message's envelopes in order, as a range is admitted. The verdict
    /// is the message's: rejected if an envelope in it is invalid (no honest member
    /// forwards one), accepted if one is new here, else ignored (all held or early).
    fn ingest_gossip(&mut self, bytes: &[u8]) -> PeerVerdict {
        let envelopes = match credfed_protocol::gossip::decode_batch(bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "rejected gossip message");
                return PeerVerdict::Reject;
            }
        };
        self.ingest_range(&envelopes)
    }

    /// Admits envelopes in order (a pulled range, a gossip batch), stopping at the first
    /// invalid one. The verdict is the sequence's: `Reject` if it stopped (for a range,
    /// the peer's log may fork from ours), `Accept` if an envelope was new here, else
    /// `Ignore`.
    ///
    /// The signatures are verified ahead on [`preverifier_threads`] other threads, a
    /// chunk at a time, while this one applies the chunks before: catch-up then runs at
    /// the speed of the cores' cryptography instead of one core's cryptography plus the
    /// store. What those threads verified is only ever a fact about a signature, key and
    /// message (`VerifiedSignatures`); which key must have signed is decided here, by
    /// admission, against the state at that moment.
    fn ingest_range(&mut self, envelopes: &[Vec<u8>]) -> PeerVerdict {
        let verifiers = preverifier_threads();
        if envelopes.len() < PREVERIFY_MIN_RANGE || verifiers == 0 {
            return self.ingest_in_order(envelopes, &VerifiedSignatures::new());
        }
        let federation_id = self.manifest.federation_id.clone();
        let node_keys: BTreeMap<RegionCode, (PublicKey, PublicKey)> = self
            .manifest
            .members
            .iter()
            .map(|m| (m.region, (m.node_key, m.operator_key)))
            .collect();
        let store = self.store.clone();
        let chunks: Vec<&[Vec<u8>]> = envelopes.chunks(PREVERIFY_CHUNK).collect();
        std::thread::scope(|scope| {
            let mut verified = Vec::with_capacity(verifiers);
            for first in 0..verifiers {
                // Two chunks ahead per thread at most: bounded memory, and the writer
                // never waits on a chunk a thread has not started.
                let (tx, rx) = std::sync::mpsc::sync_channel::<VerifiedSignatures>(2);
                verified.push(rx);
                let (chunks, federation_id, node_keys, store) =
                    (&chunks, &federation_id, &node_keys, &store);
                let spawned = std::thread::Builder::new()
                    .name("credfed-verify".into())
                    .spawn_scoped(scope, move || {
                        for chunk in chunks.iter().skip(first).step_by(verifiers) {
                            let known = preverify(federation_id, node_keys, &**store, chunk);
                            if tx.send(known).is_err() {
                                return; // the writer stopped at an invalid envelope
                            }
                        }
                    });
                if spawned.is_err() {
                    // No thread: that thread's chunks are verified by admission itself.
                    verified.pop();
                    break;
                }
            }
            let mut verdict = PeerVerdict::Ignore;
            for (i, chunk) in chunks.iter().enumerate() {
                let known = if verified.len() == verifiers {
                    verified[i % verifiers].recv().unwrap_or_default()
                } else {
                    VerifiedSignatures::new()
                };
                match self.ingest_in_order(chunk, &known) {
                    PeerVerdict::Reject => {
                        verdict = PeerVerdict::Reject;
                        break;
                    }
                    PeerVerdict::Accept => verdict = PeerVerdict::Accept,
                    PeerVerdict::Ignore => {}
                }
            }
            // Dropping the receivers ends threads still verifying chunks not needed.
            drop(verified);
            verdict
        })
    }

    /// Admits `envelopes` one by one with the signatures in `known`, stopping at the
    /// first invalid one; the verdict as [`Self::ingest_range`] gives it.
    fn ingest_in_order(
        &mut self,
        envelopes: &[Vec<u8>],
        known: &VerifiedSignatures,
    ) -> PeerVerdict {
        let mut verdict = PeerVerdict::Ignore;
        for bytes in envelopes {
            match self.ingest_from_peer(bytes, known) {
                PeerVerdict::Reject => return PeerVerdict::Reject,
                PeerVerdict::Accept => verdict = PeerVerdict::Accept,
                PeerVerdict::Ignore => {}
            }
        }
        verdict
    }

    /// Admits and applies one envelope, taking signatures in `known` as verified.
    /// Store failures are [`IngestError::Store`], never a verdict on the envelope.
    fn ingest(
        &mut self,
        bytes: &[u8],
        known: &VerifiedSignatures,
    ) -> Result<Admission, IngestError> {
        let gate = self.gate.clone();
        let store_failed = |metrics: &Metrics, e: StoreError| {
            metrics.ingest_store_errors.fetch_add(1, Ordering::Relaxed);
            // A read can fail for the same cause as a write (sled keeps its first I/O
            // error for every later call): retried and reopened the same way.
            note_store_failure(&gate, metrics, &e);
            IngestError::Store(e)
        };
        let verdict = match admit_with(self.rules(), &*self.store, bytes, known) {
            Ok(v) => v,
            Err(AdmitError::Invalid(r)) => {
                self.metrics.reject(r.reason);
                return Err(IngestError::Invalid(r));
            }
            Err(AdmitError::Unavailable(e)) => return Err(store_failed(&self.metrics, e)),
        };
        match &verdict {
            Admission::Accept(v) => {
                let updates = effects(self.rules(), &*self.store, v)
                    .map_err(|e| store_failed(&self.metrics, e))?;
                self.store
                    .apply(&updates)
                    .map_err(|e| store_failed(&self.metrics, e))?;
                let head = Head {
                    seq: v.envelope.seq,
                    hash: v.hash,
                    timestamp: v.envelope.timestamp,
                };
                self.heads.insert(v.envelope.region, head);
                self.moved.insert(v.envelope.region, head);
                let now = self.clock.now().0;
                self.store.note_received(
                    RecordPos {
                        region: v.envelope.region,
                        seq: v.envelope.seq,
                    },
                    now,
                );
                self.metrics.last_applied_ms.store(now, Ordering::Relaxed);
                self.metrics.ingested.fetch_add(1, Ordering::Relaxed);
            }
            Admission::Duplicate => {
                self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Admission::Equivocation(p) => {
                self.metrics.equivocations.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(region = %p.region, seq = p.seq, "equivocation detected");
                self.store
                    .record_equivocation(p)
                    .map_err(|e| store_failed(&self.metrics, e))?;
            }
            Admission::Gap { .. } | Admission::MissingDependency { .. } => {}
        }
        Ok(verdict)
    }

    /// Admits an envelope from a peer, parking what is early and queueing evidence.
    fn ingest_from_peer(&mut self, bytes: &[u8], known: &VerifiedSignatures) -> PeerVerdict {
        match self.ingest(bytes, known) {
            Ok(Admission::Accept(v)) => {
                if v.envelope.region == self.region {
                    // Our own record, back from a peer: held elsewhere already.
                    self.shareable.advance(Head {
                        seq: v.envelope.seq,
                        hash: v.hash,
                        timestamp: v.envelope.timestamp,
                    });
                }
                self.drain_parked();
                PeerVerdict::Accept
            }
            Ok(Admission::Duplicate) => PeerVerdict::Ignore,
            Ok(Admission::Gap { region, got, .. }) => {
                self.parked.park(region, got, bytes.to_vec());
                PeerVerdict::Ignore
            }
            Ok(Admission::MissingDependency { what }) => {
                tracing::debug!(%what, "envelope waits for a dependency");
                if let Ok(env) = codec::decode::<Envelope>(bytes, MAX_ENVELOPE_BYTES, "envelope") {
                    self.parked.park(env.region, env.seq, bytes.to_vec());
                }
                PeerVerdict::Ignore
            }
            Ok(Admission::Equivocation(proof)) => {
                self.queue_evidence(*proof);
                PeerVerdict::Ignore
            }
            Err(IngestError::Invalid(r)) => {
                tracing::warn!(reason = ?r.reason, message = %r.message, "rejected envelope");
                PeerVerdict::Reject
            }
            Err(IngestError::Store(e)) => {
                tracing::error!(error = %e, "could not apply an envelope from a peer (local store failure; pull will bring it again)");
                PeerVerdict::Ignore
            }
        }
    }

    /// Applies parked envelopes whose turn has come, while that makes progress.
    fn drain_parked(&mut self) {
        for _ in 0..MAX_PARKED_PER_REGION {
            let local: BTreeMap<RegionCode, u64> =
                self.heads.iter().map(|(r, h)| (*r, h.seq)).collect();
            let ready = self.parked.ready(&local);
            if ready.is_empty() {
                return;
            }
            let mut progress = false;
            for bytes in ready {
                match self.ingest(&bytes, &VerifiedSignatures::new()) {
                    Ok(Admission::Accept(_)) => progress = true,
                    Ok(Admission::Equivocation(proof)) => self.queue_evidence(*proof),
                    // Invalid where it waited: it never will be valid there.
                    Err(IngestError::Invalid(_)) => {
                        if let Ok(env) =
                            codec::decode::<Envelope>(&bytes, MAX_ENVELOPE_BYTES, "envelope")
                        {
                            self.parked.remove(env.region, env.seq);
                        }
                    }
                    // Still waiting for a dependency, or the store failed: stays parked.
                    _ => {}
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn queue_evidence(&mut self, proof: EquivocationProof) {
        if self.evidence.len() < MAX_PENDING_EVIDENCE
            && self.evidence_seen.insert((proof.region, proof.seq))
        {
            self.evidence.push_back(proof);
        }
    }

    /// Seals one append at the own head and applies it (not yet durable).
    fn append(
        &mut self,
        author: DepartmentId,
        body: Vec<u8>,
        signature: Signature,
    ) -> Result<VerifiedEnvelope, AppendError> {
        self.gate.check()?;
        // Rules for own appends that depend on other regions' records (see
        // `ledger::local_policy`): judged on this replica, now.
        if let Ok(decoded) = Body::decode(&body) {
            credfed_protocol::ledger::local_policy(
                self.rules(),
                &*self.store,
                &decoded,
                self.clock.now(),
            )??;
        }
        let head = self.heads.get(&self.region).copied();
        // Timestamps never go backwards in a log, whatever the clock does.
        let timestamp = Timestamp(
            self.clock
                .now()
                .0
                .max(head.map_or(i64::MIN, |h| h.timestamp.0)),
        );
        let at = AppendPosition {
            region: self.region,
            seq: head.map_or(1, |h| h.seq + 1),
            prev_hash: head.map_or(GENESIS_PREV_HASH, |h| h.hash),
            timestamp,
        };
        // The node signature just made is not verified again; the author's is.
        let mut own = VerifiedSignatures::new();
        let bytes = seal_recording(
            &self.manifest.federation_id,
            &self.node_key,
            &at,
            author,
            body,
            signature,
            &mut own,
        )
        .map_err(|e| Rejection::from_error(RejectReason::Malformed, "body", &e))?;
        match self.ingest(&bytes, &own) {
            Ok(Admission::Accept(v)) => Ok(*v),
            Ok(Admission::MissingDependency { what }) => Err(Rejection::new(
                RejectReason::Conflict,
                "body",
                format!(
                    "references {what}, which this node has not received yet; retry when it has replicated"
                ),
            )
            .into()),
            Ok(other) => Err(Rejection::new(
                RejectReason::Conflict,
                "body",
                format!("unexpected verdict on an own append: {other:?}"),
            )
            .into()),
            Err(IngestError::Invalid(r)) => Err(r.into()),
            Err(IngestError::Store(e)) => Err(e.into()),
        }
    }

    /// Seals pending equivocation evidence into the own log (once writes are open).
    fn seal_evidence(&mut self, sealed: &mut Vec<Sealed>) {
        if self.gate.reason().is_some() {
            return;
        }
        while let Some(proof) = self.evidence.pop_front() {
            let body = Body::EquivocationEvidence {
                first: proof.first.clone(),
                second: proof.second.clone(),
            };
            let (bytes, sig) = sign_body(&self.manifest.federation_id, &self.node_key, &body);
            let author = DepartmentId {
                region: self.region,
                unit: NODE_UNIT.into(),
            };
            match self.append(author, bytes, sig) {
                Ok(envelope) => {
                    tracing::warn!(region = %proof.region, seq = proof.seq, evidence_seq = envelope.envelope.seq, "equivocation evidence recorded in own log");
                    sealed.push(Sealed {
                        reply: None,
                        envelope,
                    });
                }
                Err(AppendError::Rejected(r)) => {
                    tracing::warn!(error = %r, "equivocation evidence refused; dropped");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record equivocation evidence yet");
                    self.evidence.push_front(proof);
                    return;
                }
            }
        }
    }

    async fn commit_evidence(&mut self) {
        if self.evidence.is_empty() {
            return;
        }
        let mut sealed = Vec::new();
        self.seal_evidence(&mut sealed);
        self.commit(sealed);
        self.report_heads().await;
    }

    /// Hands applied appends to the syncer, or (group commit off) syncs them here.
    fn commit(&mut self, sealed: Vec<Sealed>) {
        if sealed.is_empty() {
            return;
        }
        let Some(syncer) = &self.syncer else {
            let result = self.store.sync();
            self.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
            acknowledge(
                sealed,
                result,
                &self.gate,
                &self.shareable,
                &self.metrics,
                &self.events,
            );
            return;
        };
        // Blocks while the syncer is two groups behind: the disk sets the pace.
        if let Err(e) = syncer.send(sealed) {
            for s in e.0 {
                if let Some(reply) = s.reply {
                    let _ = reply.send(Err(AppendError::Stopped));
                }
            }
        }
    }
}

struct Syncer {
    store: Arc<dyn Backend>,
    gate: Arc<WriteGate>,
    shareable: Arc<ShareableHead>,
    metrics: Arc<Metrics>,
    events: mpsc::Sender<EngineEvent>,
}

impl Syncer {
    fn run(self, queue: Receiver<Vec<Sealed>>) {
        while let Ok(mut group) = queue.recv() {
            // Everything applied by now is covered by the same fsync.
            while let Ok(more) = queue.try_recv() {
                group.extend(more);
            }
            let result = self.store.sync();
            self.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
            acknowledge(
                group,
                result,
                &self.gate,
                &self.shareable,
                &self.metrics,
                &self.events,
            );
        }
    }
}

/// Answers the callers of a synced group, then gossips their envelopes. A failed sync
/// pauses writes: what was applied may or may not survive a crash, and the node must
/// not go on acknowledging on a disk that fails.
fn acknowledge(
    group: Vec<Sealed>,
    result: Result<(), StoreError>,
    gate: &WriteGate,
    shareable: &ShareableHead,
    metrics: &Metrics,
    events: &mpsc::Sender<EngineEvent>,
) {
    match result {
        Ok(()) => {
            if let Some(last) = group
                .iter()
                .map(|s| &s.envelope)
                .max_by_key(|v| v.envelope.seq)
            {
                shareable.advance(Head {
                    seq: last.envelope.seq,
                    hash: last.hash,
                    timestamp: last.envelope.timestamp,
                });
            }
            metrics
                .appends
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            let mut durable = Vec::with_capacity(group.len());
            for s in group {
                durable.push(s.envelope.bytes.clone());
                if let Some(reply) = s.reply {
                    let _ = reply.send(Ok(s.envelope));
                }
            }
            // Gossip is best effort: pull delivers what a full queue drops.
            if let Err(mpsc::error::TrySendError::Full(_)) =
                events.try_send(EngineEvent::Appended(durable))
            {
                tracing::debug!("event queue full; peers will pull the records");
            }
        }
        Err(e) => {
            note_store_failure(gate, metrics, &e);
            for s in group {
                if let Some(reply) = s.reply {
                    let _ = reply.send(Err(AppendError::Store(StoreError::Io(
                        std::io::Error::other(format!(
                            "{e}; the record was not acknowledged and may or may not be in the log after a restart: check before resubmitting"
                        )),
                    ))));
                }
            }
        }
    }
}

/// A write the store could not persist closes writes until a retry succeeds
/// (`Writer::retry_failed_store`); only the first failure of a run is logged as one.
fn note_store_failure(gate: &WriteGate, metrics: &Metrics, e: &StoreError) {
    if gate.store_failed(&e.to_string()) {
        metrics.store_failures.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        metrics.store_failing_since_ms.store(now, Ordering::Relaxed);
        tracing::error!(error = %e, "the store failed to persist a write: writes closed; retrying with back-off until it succeeds");
    }
}

/// Bytes written and synced beside the store to see whether the disk takes writes
/// again before the engine is reopened (reopening on a full disk would only fail).
const STORE_PROBE_BYTES: usize = 1 << 20;

impl Writer {
    /// Retries a failed store when its back-off has passed: a probe write beside it,
    /// then the engine closed and opened again (both engines refuse every write after
    /// a failed one until then), a sync, and the heads read again — writes applied and
    /// not made durable before the failure may be gone, so the network is given the
    /// heads afresh and fetches what is missing.
    async fn retry_failed_store(&mut self) {
        let now = std::time::Instant::now();
        if !self.gate.store_retry_due(now) {
            return;
        }
        let attempt = self
            .store
            .probe_writable(STORE_PROBE_BYTES)
            .and_then(|()| self.store.reopen())
            .and_then(|()| self.store.sync())
            .and_then(|()| self.store.heads());
        match attempt {
            Ok(heads) => {
                let failure = self.gate.store_recovered();
                self.metrics
                    .store_recoveries
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .store_failing_since_ms
                    .store(0, Ordering::Relaxed);
                tracing::warn!(
                    failed_for_s = failure.map_or(0, |f| f.since.elapsed().as_secs()),
                    "the store persists writes again: writes and replication resume"
                );
                self.heads = heads.clone();
                self.moved.clear();
                self.parked = Parked::default();
                self.send(EngineEvent::HeadsReloaded(heads)).await;
            }
            Err(e) => {
                self.gate.store_retry_failed(now);
                tracing::warn!(error = %e, "the store still cannot persist; next retry after a longer wait");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, Store};
    use credfed_protocol::envelope::{AppendPosition, GENESIS_PREV_HASH, seal, sign_body};
    use credfed_protocol::ledger::Update;
    use credfed_protocol::time::Timestamp;

    /// Positions the store already holds are left to admission (a duplicate costs it a
    /// read): verifying them ahead would let a member replay held envelopes in batches
    /// for strict verifications no one is blamed for.
    #[test]
    fn held_positions_are_not_verified_ahead() {
        let sh = RegionCode::new(310000, "r").unwrap();
        let node_key = Keypair::from_secret([31; 32]);
        let node = DepartmentId {
            region: sh,
            unit: NODE_UNIT.into(),
        };
        let chunk: Vec<Vec<u8>> = (1..=5u64)
            .map(|seq| {
                let body = Body::ListEntryRevoked {
                    entry: credfed_protocol::record::EntryId(credfed_protocol::crypto::sha256(&[
                        b"e",
                    ])),
                    reason: format!("r{seq}"),
                };
                let (bytes, sig) = sign_body("fed", &node_key, &body);
                let at = AppendPosition {
                    region: sh,
                    seq,
                    prev_hash: GENESIS_PREV_HASH,
                    timestamp: Timestamp(1),
                };
                seal("fed", &node_key, &at, node.clone(), bytes, sig).unwrap()
            })
            .collect();
        let keys: BTreeMap<RegionCode, (PublicKey, PublicKey)> =
            [(sh, (node_key.public(), node_key.public()))].into();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let all = preverify("fed", &keys, &store, &chunk).len();
        assert!(
            all >= 5,
            "every envelope's signatures verified ahead: {all}"
        );
        for seq in 1..=3u64 {
            store
                .apply(&[Update::Append {
                    pos: RecordPos { region: sh, seq },
                    head: Head {
                        seq,
                        hash: credfed_protocol::crypto::sha256(&[&chunk[seq as usize - 1]]),
                        timestamp: Timestamp(1),
                    },
                    bytes: chunk[seq as usize - 1].clone(),
                }])
                .unwrap();
        }
        let fresh = preverify("fed", &keys, &store, &chunk).len();
        assert_eq!(fresh * 5, all * 2, "only seq 4 and 5 verified ahead");
    }
}

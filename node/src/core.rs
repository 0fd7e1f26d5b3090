//! The node's record engine: admission of envelopes from peers, appending to its own
//! log, with the protocol's rules and the durable store.
//!
//! Admission and appends are serialised by one lock: each region's chain must be
//! extended one envelope at a time, and an admission reads state that the previous one
//! wrote. Reads (checks, queries) go to the store without the lock.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::crypto::{Keypair, Signature};
use credfed_protocol::envelope::{
    AppendPosition, GENESIS_PREV_HASH, NODE_UNIT, VerifiedEnvelope, seal, sign_body,
};
use credfed_protocol::ids::{DepartmentId, PersonHashKey, RegionCode};
use credfed_protocol::ledger::{
    Admission, EquivocationProof, RejectReason, Rejection, Rules, admit, effects,
};
use credfed_protocol::manifest::Manifest;
use credfed_protocol::record::Body;
use credfed_protocol::time::Timestamp;
use thiserror::Error;

use crate::metrics::Metrics;
use crate::store::{Backend, StoreError};

/// Why an append failed.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The record breaks a protocol rule.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store could not persist it: nothing was acknowledged.
    #[error("cannot persist: {0}")]
    Store(#[from] StoreError),
    /// Writes are gated until the node has confirmed with a peer that it has not lost
    /// records of its own log (no rollback, DESIGN §6).
    #[error("writes are paused: {0}")]
    Gated(String),
}

/// The engine.
pub struct Core {
    /// Durable state.
    pub store: Box<dyn Backend>,
    /// The manifest in force.
    pub manifest: Manifest,
    /// Measures catalogue.
    pub catalogue: Catalogue,
    /// Working-day calendar.
    pub calendar: WorkingCalendar,
    /// This node's region.
    pub region: RegionCode,
    /// Keys persons' identity numbers.
    pub person_key: PersonHashKey,
    /// Added to the system clock (drills skew clocks with it).
    pub clock_offset_ms: i64,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    node_key: Keypair,
    write_lock: Mutex<()>,
    /// Why writes are paused, if they are.
    pub write_gate: Mutex<Option<String>>,
}

impl Core {
    /// Builds the engine. Writes start gated until [`Core::open_writes`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Box<dyn Backend>,
        manifest: Manifest,
        catalogue: Catalogue,
        calendar: WorkingCalendar,
        region: RegionCode,
        node_key: Keypair,
        person_key: PersonHashKey,
        clock_offset_ms: i64,
        metrics: Arc<Metrics>,
    ) -> Core {
        Core {
            store,
            manifest,
            catalogue,
            calendar,
            region,
            person_key,
            clock_offset_ms,
            metrics,
            node_key,
            write_lock: Mutex::new(()),
            write_gate: Mutex::new(Some(
                "waiting to confirm this region's head with a peer".into(),
            )),
        }
    }

    /// The node clock.
    pub fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms + self.clock_offset_ms)
    }

    /// Protocol rules in force.
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            manifest: &self.manifest,
            catalogue: &self.catalogue,
        }
    }

    /// Lifts the write gate.
    pub fn open_writes(&self) {
        if let Ok(mut g) = self.write_gate.lock() {
            if g.is_some() {
                tracing::info!("own log confirmed with peers: accepting writes");
            }
            *g = None;
        }
    }

    /// Admits an envelope from a peer and applies it. Not synced to disk: a replicated
    /// record lost in a crash is fetched again.
    pub fn ingest(&self, bytes: &[u8]) -> Result<Admission, Rejection> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.ingest_locked(bytes)
    }

    fn ingest_locked(&self, bytes: &[u8]) -> Result<Admission, Rejection> {
        let verdict = admit(self.rules(), &*self.store, bytes);
        match &verdict {
            Ok(Admission::Accept(v)) => {
                let updates = effects(self.rules(), &*self.store, v);
                if let Err(e) = self.store.apply(&updates) {
                    tracing::error!(error = %e, "store apply failed");
                    return Err(Rejection {
                        reason: RejectReason::Malformed,
                        message: format!("store: {e}"),
                    });
                }
                let pos = credfed_protocol::state::RecordPos {
                    region: v.envelope.region,
                    seq: v.envelope.seq,
                };
                let now = self.now().0;
                self.store.note_received(pos, now);
                self.metrics.last_applied_ms.store(now, Ordering::Relaxed);
                self.metrics.ingested.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Admission::Duplicate) => {
                self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Admission::Equivocation(p)) => {
                self.metrics.equivocations.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(region = %p.region, seq = p.seq, "equivocation detected");
                if let Err(e) = self.store.record_equivocation(p) {
                    tracing::error!(error = %e, "could not store equivocation proof");
                }
            }
            Err(r) => self.metrics.reject(r.reason),
            Ok(_) => {}
        }
        verdict
    }

    /// Appends a department-signed body to this region's log and makes it durable.
    /// Returns only after the fsync: the envelope is then acknowledged.
    pub fn append(
        &self,
        author: DepartmentId,
        body: Vec<u8>,
        author_sig: Signature,
    ) -> Result<VerifiedEnvelope, AppendError> {
        if let Some(why) = self.write_gate.lock().ok().and_then(|g| g.clone()) {
            return Err(AppendError::Gated(why));
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.store.head(self.region);
        // Timestamps never go backwards in a log, whatever the clock does.
        let timestamp = Timestamp(self.now().0.max(head.map_or(i64::MIN, |h| h.timestamp.0)));
        let at = AppendPosition {
            region: self.region,
            seq: head.map_or(1, |h| h.seq + 1),
            prev_hash: head.map_or(GENESIS_PREV_HASH, |h| h.hash),
            timestamp,
        };
        let fed = self.manifest.federation_id.clone();
        let bytes =
            seal(&fed, &self.node_key, &at, author, body, author_sig).map_err(|e| Rejection {
                reason: RejectReason::Malformed,
                message: e.to_string(),
            })?;
        match self.ingest_locked(&bytes)? {
            Admission::Accept(v) => {
                self.store.sync()?;
                Ok(*v)
            }
            Admission::MissingDependency { what } => Err(Rejection {
                reason: RejectReason::Conflict,
                message: format!("references {what}, which this node has not received yet; retry when it has replicated"),
            }
            .into()),
            other => Err(Rejection { reason: RejectReason::Conflict, message: format!("unexpected verdict on own append: {other:?}") }.into()),
        }
    }

    /// Appends a body written by the node itself (department registration, evidence).
    pub fn append_as_node(&self, body: &Body) -> Result<VerifiedEnvelope, AppendError> {
        let fed = self.manifest.federation_id.clone();
        let (bytes, sig) = sign_body(&fed, &self.node_key, body);
        let author = DepartmentId {
            region: self.region,
            unit: NODE_UNIT.into(),
        };
        self.append(author, bytes, sig)
    }

    /// Records equivocation evidence in this region's log, so that every node folds it.
    pub fn publish_evidence(
        &self,
        proof: &EquivocationProof,
    ) -> Result<VerifiedEnvelope, AppendError> {
        self.append_as_node(&Body::EquivocationEvidence {
            first: proof.first.clone(),
            second: proof.second.clone(),
        })
    }
}

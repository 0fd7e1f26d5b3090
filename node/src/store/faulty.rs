//! A backend that fails or stalls on demand, wrapped around a real one.
//!
//! Why it exists: the node's promises about its own faults — a disk error is never
//! blamed on a peer, nothing is acknowledged that was not made durable, a slow disk does
//! not silence the network — can only be tested against a disk that misbehaves when
//! told to. Tests and benchmarks flip the switches in [`Faults`] while the node runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::ledger::{
    DepartmentRecord, EquivocationProof, Head, StateView, SubjectRef, Update,
};
use credfed_protocol::record::{
    ActionId, CommitmentId, DisclosureId, EntryId, EvaluationId, ObjectionId, ObjectionTarget,
    SubjectKey,
};
use credfed_protocol::state::{
    ActionFold, CommitmentFold, DisclosureFold, EntryFold, EvaluationFold, RecordPos,
};

use super::{Backend, ChainReport, StoreError};

/// Switches shared between a [`FaultyStore`] and whoever drives the faults.
#[derive(Debug, Default)]
pub struct Faults {
    /// Writes (`apply`, `record_equivocation`) fail.
    pub fail_writes: AtomicBool,
    /// Reads of state fail.
    pub fail_reads: AtomicBool,
    /// `sync` fails.
    pub fail_sync: AtomicBool,
    /// `sync` sleeps this long first (a slow disk), ms.
    pub sync_delay_ms: AtomicU64,
}

impl Faults {
    fn check(&self, flag: &AtomicBool, what: &str) -> Result<(), StoreError> {
        if flag.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "injected {what} failure"
            ))));
        }
        Ok(())
    }
}

/// A backend whose operations fail or stall as its [`Faults`] say.
pub struct FaultyStore {
    inner: Box<dyn Backend>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`; the returned switches start with every fault off.
    pub fn wrap(inner: Box<dyn Backend>) -> (FaultyStore, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (
            FaultyStore {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }

    fn read(&self) -> Result<(), StoreError> {
        self.faults.check(&self.faults.fail_reads, "read")
    }
}

impl StateView for FaultyStore {
    type Error = StoreError;
    fn head(&self, region: RegionCode) -> Result<Option<Head>, StoreError> {
        self.read()?;
        self.inner.head(region)
    }
    fn envelope_at(&self, pos: RecordPos) -> Result<Option<Vec<u8>>, StoreError> {
        self.read()?;
        self.inner.envelope_at(pos)
    }
    fn department(&self, id: &DepartmentId) -> Result<Option<DepartmentRecord>, StoreError> {
        self.read()?;
        self.inner.department(id)
    }
    fn entry(&self, id: &EntryId) -> Result<Option<EntryFold>, StoreError> {
        self.read()?;
        self.inner.entry(id)
    }
    fn entry_with_envelope(
        &self,
        id: &EntryId,
    ) -> Result<Option<(EntryFold, Option<(RecordPos, Vec<u8>)>)>, StoreError> {
        self.read()?;
        self.inner.entry_with_envelope(id)
    }
    fn action(&self, id: &ActionId) -> Result<Option<ActionFold>, StoreError> {
        self.read()?;
        self.inner.action(id)
    }
    fn objection_target(&self, id: &ObjectionId) -> Result<Option<ObjectionTarget>, StoreError> {
        self.read()?;
        self.inner.objection_target(id)
    }
    fn evaluation(&self, id: &EvaluationId) -> Result<Option<EvaluationFold>, StoreError> {
        self.read()?;
        self.inner.evaluation(id)
    }
    fn commitment(&self, id: &CommitmentId) -> Result<Option<CommitmentFold>, StoreError> {
        self.read()?;
        self.inner.commitment(id)
    }
    fn disclosure(&self, id: &DisclosureId) -> Result<Option<DisclosureFold>, StoreError> {
        self.read()?;
        self.inner.disclosure(id)
    }
    fn subject_refs(&self, key: &SubjectKey) -> Result<Vec<SubjectRef>, StoreError> {
        self.read()?;
        self.inner.subject_refs(key)
    }
    fn equivocators(&self) -> Result<Vec<RegionCode>, StoreError> {
        self.read()?;
        self.inner.equivocators()
    }
}

impl Backend for FaultyStore {
    fn apply(&self, updates: &[Update]) -> Result<(), StoreError> {
        self.faults.check(&self.faults.fail_writes, "write")?;
        self.inner.apply(updates)
    }
    fn sync(&self) -> Result<(), StoreError> {
        let delay = self.faults.sync_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        self.faults.check(&self.faults.fail_sync, "sync")?;
        self.inner.sync()
    }
    fn probe_writable(&self, bytes: usize) -> Result<(), StoreError> {
        self.faults.check(&self.faults.fail_writes, "probe")?;
        self.faults.check(&self.faults.fail_sync, "probe")?;
        self.inner.probe_writable(bytes)
    }
    fn reopen(&self) -> Result<(), StoreError> {
        self.faults.check(&self.faults.fail_writes, "reopen")?;
        self.inner.reopen()
    }
    fn heads(&self) -> Result<BTreeMap<RegionCode, Head>, StoreError> {
        self.read()?;
        self.inner.heads()
    }
    fn range(
        &self,
        region: RegionCode,
        from_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read()?;
        self.inner.range(region, from_seq, limit, max_bytes)
    }
    fn record_equivocation(&self, proof: &EquivocationProof) -> Result<(), StoreError> {
        self.faults.check(&self.faults.fail_writes, "write")?;
        self.inner.record_equivocation(proof)
    }
    fn verify_chains(
        &self,
        federation_id: &str,
        progress: &mut dyn FnMut(RegionCode, u64),
    ) -> Result<ChainReport, StoreError> {
        self.inner.verify_chains(federation_id, progress)
    }
    fn size_on_disk(&self) -> u64 {
        self.inner.size_on_disk()
    }
    fn cache_usage(&self) -> super::CacheUsage {
        self.inner.cache_usage()
    }
    fn all_entries(&self) -> Box<dyn Iterator<Item = Result<EntryFold, StoreError>> + '_> {
        self.inner.all_entries()
    }
    fn all_actions(&self) -> Box<dyn Iterator<Item = Result<ActionFold, StoreError>> + '_> {
        self.inner.all_actions()
    }
    fn all_commitments(&self) -> Box<dyn Iterator<Item = Result<CommitmentFold, StoreError>> + '_> {
        self.inner.all_commitments()
    }
    fn all_disclosures(&self) -> Box<dyn Iterator<Item = Result<DisclosureFold, StoreError>> + '_> {
        self.inner.all_disclosures()
    }
    fn all_departments(
        &self,
    ) -> Box<dyn Iterator<Item = Result<DepartmentRecord, StoreError>> + '_> {
        self.inner.all_departments()
    }
    fn note_received(&self, pos: RecordPos, at_ms: i64) {
        self.inner.note_received(pos, at_ms)
    }
    fn add_check_counts(
        &self,
        counts: &BTreeMap<super::CheckCountKey, u64>,
    ) -> Result<(), StoreError> {
        self.inner.add_check_counts(counts)
    }
    fn check_counts(
        &self,
        from: credfed_protocol::time::Date,
        to: credfed_protocol::time::Date,
    ) -> Result<BTreeMap<super::CheckCountKey, u64>, StoreError> {
        self.inner.check_counts(from, to)
    }
    fn received_at(&self, pos: RecordPos) -> Result<Option<i64>, StoreError> {
        self.inner.received_at(pos)
    }
    fn tree_frontier(
        &self,
        region: RegionCode,
    ) -> Result<credfed_protocol::merkle::Frontier, StoreError> {
        self.read()?;
        self.inner.tree_frontier(region)
    }

    fn tree_node(
        &self,
        region: RegionCode,
        level: u8,
        index: u64,
    ) -> Result<Option<credfed_protocol::crypto::Hash256>, StoreError> {
        self.read()?;
        self.inner.tree_node(region, level, index)
    }

    fn witness_view(
        &self,
        region: RegionCode,
    ) -> Result<Option<credfed_protocol::witness::WitnessView>, StoreError> {
        self.read()?;
        self.inner.witness_view(region)
    }

    fn map_page(
        &self,
        region: RegionCode,
        page: &super::PageId,
        version: u64,
    ) -> Result<Option<super::MapPage>, StoreError> {
        self.read()?;
        self.inner.map_page(region, page, version)
    }

    fn map_latest(
        &self,
        region: RegionCode,
    ) -> Result<Option<(u64, credfed_protocol::crypto::Hash256)>, StoreError> {
        self.read()?;
        self.inner.map_latest(region)
    }

    fn map_root_at(
        &self,
        region: RegionCode,
        version: u64,
    ) -> Result<Option<credfed_protocol::crypto::Hash256>, StoreError> {
        self.read()?;
        self.inner.map_root_at(region, version)
    }

    fn put_map_version(
        &self,
        region: RegionCode,
        version: u64,
        pages: &[(super::PageId, super::MapPage)],
        root: credfed_protocol::crypto::Hash256,
        positions: &[(credfed_protocol::crypto::Hash256, u64)],
        computed_at: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .put_map_version(region, version, pages, root, positions, computed_at)
    }

    fn map_storage(&self, region: RegionCode) -> Result<super::MapStorage, StoreError> {
        self.read()?;
        self.inner.map_storage(region)
    }

    fn prune_map(
        &self,
        region: RegionCode,
        keep_from: u64,
        computed_before: u64,
    ) -> Result<(usize, usize), StoreError> {
        self.inner.prune_map(region, keep_from, computed_before)
    }

    fn map_positions(
        &self,
        region: RegionCode,
        key: &credfed_protocol::crypto::Hash256,
        up_to: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.read()?;
        self.inner.map_positions(region, key, up_to)
    }

    fn set_witness_view(
        &self,
        region: RegionCode,
        view: credfed_protocol::witness::WitnessView,
    ) -> Result<(), StoreError> {
        self.faults.check(&self.faults.fail_sync, "sync")?;
        self.inner.set_witness_view(region, view)
    }

    fn note(&self, kind: u8, region: RegionCode) -> Result<Option<String>, StoreError> {
        self.read()?;
        self.inner.note(kind, region)
    }

    fn set_note(&self, kind: u8, region: RegionCode, note: &str) -> Result<(), StoreError> {
        self.inner.set_note(kind, region, note)
    }

    fn proofs(&self) -> Result<Vec<EquivocationProof>, StoreError> {
        self.inner.proofs()
    }

    fn ids_with_prefix(
        &self,
        kind: u8,
        hex: &str,
        limit: usize,
    ) -> Result<Vec<credfed_protocol::crypto::Hash256>, StoreError> {
        self.inner.ids_with_prefix(kind, hex, limit)
    }

    fn listing_keys(
        &self,
        lo: &[u8],
        hi: &[u8],
        after: Option<&[u8]>,
        descending: bool,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        self.inner.listing_keys(lo, hi, after, descending, limit)
    }

    fn marks_due(
        &self,
        region: RegionCode,
        today: credfed_protocol::time::Date,
        limit: usize,
    ) -> Result<
        (
            Vec<(
                credfed_protocol::inbox::TaskRef,
                credfed_protocol::time::Date,
            )>,
            bool,
        ),
        StoreError,
    > {
        self.inner.marks_due(region, today, limit)
    }
}

//! Counters and histograms, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use credfed_protocol::ledger::RejectReason;

/// Upper bounds (seconds) of the API latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// One route's latency histogram: bucket counts, sum of seconds, count.
type Histogram = ([u64; LATENCY_BUCKETS.len()], f64, u64);

/// Buckets of witnessing rounds, s: rounds wait on other nodes, so they reach further.
const WITNESS_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The witnessing-round histogram.
type WitnessHistogram = ([u64; WITNESS_BUCKETS.len()], f64, u64);

/// Node metrics. Every field is cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    /// Envelopes admitted (own and replicated).
    pub ingested: AtomicU64,
    /// Envelopes already held.
    pub duplicates: AtomicU64,
    /// Refusals by reason.
    pub rejected: Mutex<BTreeMap<RejectReason, u64>>,
    /// Inbound libp2p connections refused, by reason (not_member, the admission
    /// budgets, established_limit).
    pub refused_connections: Mutex<BTreeMap<&'static str, u64>>,
    /// Gossip messages received.
    pub gossip_received: AtomicU64,
    /// Ranges fetched by pull.
    pub ranges_fetched: AtomicU64,
    /// Bytes received in envelopes.
    pub bytes_received: AtomicU64,
    /// Equivocations detected.
    pub equivocations: AtomicU64,
    /// Connected member peers.
    pub peers: AtomicU64,
    /// Envelopes parked until a gap or a dependency is filled.
    pub parked: AtomicU64,
    /// When this node last admitted an envelope (node clock, ms; 0 = never).
    pub last_applied_ms: std::sync::atomic::AtomicI64,
    /// Own appends acknowledged (made durable).
    pub appends: AtomicU64,
    /// fsyncs of the store (one per group of appends with group commit).
    pub fsyncs: AtomicU64,
    /// Envelopes from peers not applied because the local store failed (never blamed
    /// on the peer).
    pub ingest_store_errors: AtomicU64,
    /// Times the store began failing to persist writes.
    pub store_failures: AtomicU64,
    /// Times a failed store was reopened and persisted again.
    pub store_recoveries: AtomicU64,
    /// Since when (Unix ms) the store has been failing to persist; 0 while it persists.
    pub store_failing_since_ms: std::sync::atomic::AtomicI64,
    /// Gossip messages and ranges dropped because the writer's queue was full.
    pub ingest_queue_full: AtomicU64,
    /// Range requests from peers answered empty because every reader was busy.
    pub range_reads_refused: AtomicU64,
    /// API connections refused at accept (per-client or total limit).
    pub api_connections_refused: AtomicU64,
    /// Gossip messages reported to gossipsub as invalid (their sender penalised).
    pub gossip_rejected: AtomicU64,
    /// Public requests served (past the rate limit), docs/public.md.
    pub public_requests: AtomicU64,
    /// Public requests refused by the per-address rate limit.
    pub public_rate_limited: AtomicU64,
    /// Public connections refused at accept (per-client or total limit).
    pub public_connections_refused: AtomicU64,
    /// Overlapping ranges fetched because a peer's log seemed to fork from ours.
    pub fork_probes: AtomicU64,
    /// This region's checkpoints witnessed (a quorum of cosignatures reached).
    pub checkpoints_witnessed: AtomicU64,
    /// Witnessed checkpoints of a region that contradicted this replica.
    pub split_views: AtomicU64,
    /// Checkpoints a region's node signed that contradict this replica (fork evidence
    /// kept; one per region).
    pub fork_evidence: AtomicU64,
    /// Map versions forgotten by pruning (every region).
    pub map_versions_pruned: AtomicU64,
    /// Map page records forgotten by pruning (every region).
    pub map_pages_pruned: AtomicU64,
    /// Cosignatures this node refused as a witness, by reason.
    pub cosign_refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// API latency histogram: per-route bucket counts, sum and count.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// From the start of a witnessing round to its quorum.
    witness_latency: Mutex<Option<WitnessHistogram>>,
    /// From the append of the oldest record a witnessed checkpoint newly covers to the
    /// checkpoint's quorum.
    witness_from_append: Mutex<Option<WitnessHistogram>>,
    /// From a proven answer's call for a federation checkpoint to its quorum.
    federation_latency: Mutex<Option<WitnessHistogram>>,
}

fn observe_into(h: &Mutex<Option<WitnessHistogram>>, seconds: f64) {
    if let Ok(mut h) = h.lock() {
        let h = h.get_or_insert(([0; WITNESS_BUCKETS.len()], 0.0, 0));
        for (i, b) in WITNESS_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.0[i] += 1;
            }
        }
        h.1 += seconds;
        h.2 += 1;
    }
}

/// Renders a witnessing histogram with its own bucket bounds.
fn render_witness(s: &mut String, name: &str, help: &str, h: &Mutex<Option<WitnessHistogram>>) {
    use std::fmt::Write;
    let Ok(h) = h.lock() else {
        return;
    };
    let Some((buckets, sum, count)) = *h else {
        return;
    };
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (b, n) in WITNESS_BUCKETS.iter().zip(buckets) {
        let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(
        s,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
    );
}

impl Metrics {
    /// Records how long a witnessing round took to reach its quorum.
    pub fn observe_witness_latency(&self, seconds: f64) {
        observe_into(&self.witness_latency, seconds);
    }

    /// Records how long after its append the oldest record a newly witnessed checkpoint
    /// covers got witnessed.
    pub fn observe_witness_from_append(&self, seconds: f64) {
        observe_into(&self.witness_from_append, seconds);
    }

    /// Records how long a federation checkpoint took from its proposal (computing the
    /// leaves included) to its quorum.
    pub fn observe_federation_latency(&self, seconds: f64) {
        observe_into(&self.federation_latency, seconds);
    }

    /// Counts a refusal.
    pub fn reject(&self, reason: RejectReason) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// Records one API call's latency.
    pub fn observe_api(&self, route: &str, seconds: f64) {
        if let Ok(mut m) = self.latency.lock() {
            let e = m
                .entry(route.to_owned())
                .or_insert(([0; LATENCY_BUCKETS.len()], 0.0, 0));
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    e.0[i] += 1;
                }
            }
            e.1 += seconds;
            e.2 += 1;
        }
    }

    /// Counts an inbound connection refused for `reason`.
    pub fn count_refused_connection(&self, reason: &'static str) {
        if let Ok(mut m) = self.refused_connections.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// Renders the text exposition format; `lag` is (region, replication lag in records
    /// behind the highest head any peer reported) and `store_bytes` the store size.
    pub fn render(
        &self,
        lag: &[(String, u64)],
        store_bytes: u64,
        store_cache: crate::store::CacheUsage,
        audit_failures: u64,
    ) -> String {
        let mut s = String::new();
        let c = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let counters: [(&str, &str, &AtomicU64); 19] = [
            (
                "credfed_records_ingested_total",
                "Envelopes admitted.",
                &self.ingested,
            ),
            (
                "credfed_records_duplicate_total",
                "Envelopes already held.",
                &self.duplicates,
            ),
            (
                "credfed_gossip_received_total",
                "Gossip messages received.",
                &self.gossip_received,
            ),
            (
                "credfed_ranges_fetched_total",
                "Ranges fetched by anti-entropy.",
                &self.ranges_fetched,
            ),
            (
                "credfed_bytes_received_total",
                "Envelope bytes received from peers.",
                &self.bytes_received,
            ),
            (
                "credfed_equivocations_total",
                "Equivocations detected.",
                &self.equivocations,
            ),
            (
                "credfed_appends_total",
                "Own appends acknowledged after an fsync.",
                &self.appends,
            ),
            (
                "credfed_fsyncs_total",
                "fsyncs of the store (appends_total / fsyncs_total = appends per fsync).",
                &self.fsyncs,
            ),
            (
                "credfed_ingest_store_errors_total",
                "Envelopes from peers not applied because the local store failed.",
                &self.ingest_store_errors,
            ),
            (
                "credfed_store_failures_total",
                "Times the store began failing to persist writes (writes closed until a retry succeeds).",
                &self.store_failures,
            ),
            (
                "credfed_store_recoveries_total",
                "Times a failing store was reopened and persisted again by itself.",
                &self.store_recoveries,
            ),
            (
                "credfed_ingest_queue_full_total",
                "Gossip messages and ranges dropped because the writer queue was full.",
                &self.ingest_queue_full,
            ),
            (
                "credfed_range_reads_refused_total",
                "Range requests answered empty because every reader was busy.",
                &self.range_reads_refused,
            ),
            (
                "credfed_api_connections_refused_total",
                "API connections refused at accept (per-client or total limit).",
                &self.api_connections_refused,
            ),
            (
                "credfed_public_requests_total",
                "Public requests served past the rate limit (docs/public.md).",
                &self.public_requests,
            ),
            (
                "credfed_public_rate_limited_total",
                "Public requests refused by the per-address rate limit.",
                &self.public_rate_limited,
            ),
            (
                "credfed_public_connections_refused_total",
                "Public connections refused at accept (per-client or total limit).",
                &self.public_connections_refused,
            ),
            (
                "credfed_gossip_rejected_total",
                "Gossip messages reported invalid to gossipsub (sender penalised).",
                &self.gossip_rejected,
            ),
            (
                "credfed_fork_probes_total",
                "Overlapping ranges fetched to find where a peer's log forks.",
                &self.fork_probes,
            ),
        ];
        for (name, help, v) in counters {
            c(&mut s, name, help, v.load(Ordering::Relaxed));
        }
        c(
            &mut s,
            "credfed_audit_failures_total",
            "Audit lines that could not be written (writes are refused meanwhile).",
            audit_failures,
        );
        let _ = writeln!(
            s,
            "# HELP credfed_records_rejected_total Envelopes refused, by reason.\n# TYPE credfed_records_rejected_total counter"
        );
        if let Ok(m) = self.rejected.lock() {
            for (r, v) in m.iter() {
                let label = serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "credfed_records_rejected_total{{reason=\"{label}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP credfed_connections_refused_total Inbound peer connections refused, by reason.\n# TYPE credfed_connections_refused_total counter"
        );
        if let Ok(m) = self.refused_connections.lock() {
            for (reason, v) in m.iter() {
                let _ = writeln!(
                    s,
                    "credfed_connections_refused_total{{reason=\"{reason}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP credfed_peers Connected member peers.\n# TYPE credfed_peers gauge\ncredfed_peers {}",
            self.peers.load(Ordering::Relaxed)
        );
        let failing_since = self.store_failing_since_ms.load(Ordering::Relaxed);
        let failing_s = if failing_since > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            (now - failing_since).max(0) / 1000
        } else {
            0
        };
        let _ = writeln!(
            s,
            "# HELP credfed_store_failing 1 while the store cannot persist writes (writes closed, retried by the node).\n# TYPE credfed_store_failing gauge\ncredfed_store_failing {}\n# HELP credfed_store_failing_seconds How long the store has been failing to persist (0 while it persists).\n# TYPE credfed_store_failing_seconds gauge\ncredfed_store_failing_seconds {failing_s}",
            u8::from(failing_since > 0)
        );
        let _ = writeln!(
            s,
            "# HELP credfed_parked Envelopes waiting for a gap or a dependency.\n# TYPE credfed_parked gauge\ncredfed_parked {}",
            self.parked.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP credfed_replication_lag_records Records behind the highest head seen, per region.\n# TYPE credfed_replication_lag_records gauge"
        );
        for (region, l) in lag {
            let _ = writeln!(
                s,
                "credfed_replication_lag_records{{region=\"{region}\"}} {l}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP credfed_store_bytes Store size on disk.\n# TYPE credfed_store_bytes gauge\ncredfed_store_bytes {store_bytes}"
        );
        let _ = writeln!(
            s,
            "# HELP credfed_store_cache_budget_bytes The store engine's page cache budget (store_cache_mib).\n# TYPE credfed_store_cache_budget_bytes gauge\ncredfed_store_cache_budget_bytes {}",
            store_cache.budget
        );
        if let Some(held) = store_cache.pending_writes {
            let _ = writeln!(
                s,
                "# HELP credfed_store_pending_write_bytes Writes applied and not yet in the store's file, held in memory (committed at credfed_store_pending_write_limit_bytes, at every sync and at least every 500 ms).\n# TYPE credfed_store_pending_write_bytes gauge\ncredfed_store_pending_write_bytes {held}\n# HELP credfed_store_pending_write_limit_bytes Pending writes at which they are committed.\n# TYPE credfed_store_pending_write_limit_bytes gauge\ncredfed_store_pending_write_limit_bytes {}",
                crate::store::kv::PENDING_MAX_BYTES
            );
        }
        if let Some(used) = store_cache.used {
            let _ = writeln!(
                s,
                "# HELP credfed_store_cache_bytes What the store engine's page cache holds now.\n# TYPE credfed_store_cache_bytes gauge\ncredfed_store_cache_bytes {used}"
            );
        }
        c(
            &mut s,
            "credfed_checkpoints_witnessed_total",
            "This region's checkpoints that reached their quorum of cosignatures.",
            self.checkpoints_witnessed.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_split_views_total",
            "Witnessed checkpoints that contradicted this replica (evidence kept).",
            self.split_views.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_fork_evidence_total",
            "Regions whose node signed a checkpoint this replica contradicts (evidence kept).",
            self.fork_evidence.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_map_versions_pruned_total",
            "Map versions forgotten (superseded over a minute ago and below every checkpoint still served).",
            self.map_versions_pruned.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_map_pages_pruned_total",
            "Map page records forgotten with them (only versions forgotten could read them).",
            self.map_pages_pruned.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP credfed_cosign_refusals_total Cosignatures refused as a witness, by reason.\n# TYPE credfed_cosign_refusals_total counter"
        );
        if let Ok(m) = self.cosign_refusals.lock() {
            for (reason, v) in m.iter() {
                let _ = writeln!(
                    s,
                    "credfed_cosign_refusals_total{{reason=\"{reason}\"}} {v}"
                );
            }
        }
        render_witness(
            &mut s,
            "credfed_witness_round_seconds",
            "From a checkpoint's signing to its quorum of cosignatures.",
            &self.witness_latency,
        );
        render_witness(
            &mut s,
            "credfed_federation_round_seconds",
            "From a federation checkpoint's proposal (its leaves computed) to its quorum of cosignatures.",
            &self.federation_latency,
        );
        render_witness(
            &mut s,
            "credfed_witness_from_append_seconds",
            "From the append of the oldest record a witnessed checkpoint newly covers to the checkpoint's quorum.",
            &self.witness_from_append,
        );
        let _ = writeln!(
            s,
            "# HELP credfed_api_seconds API latency.\n# TYPE credfed_api_seconds histogram"
        );
        if let Ok(m) = self.latency.lock() {
            for (route, (buckets, sum, count)) in m.iter() {
                for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "credfed_api_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                        buckets[i]
                    );
                }
                let _ = writeln!(
                    s,
                    "credfed_api_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    s,
                    "credfed_api_seconds_sum{{route=\"{route}\"}} {sum}\ncredfed_api_seconds_count{{route=\"{route}\"}} {count}"
                );
            }
        }
        s
    }
}

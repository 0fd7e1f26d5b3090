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

/// Node metrics. Every field is cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    /// Envelopes admitted (own and replicated).
    pub ingested: AtomicU64,
    /// Envelopes already held.
    pub duplicates: AtomicU64,
    /// Refusals by reason.
    pub rejected: Mutex<BTreeMap<RejectReason, u64>>,
    /// Connections refused because the peer is not in the manifest.
    pub refused_connections: AtomicU64,
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
    /// When this node last admitted an envelope (node clock, ms; 0 = never).
    pub last_applied_ms: std::sync::atomic::AtomicI64,
    /// API latency histogram: per-route bucket counts, sum and count.
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
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

    /// Renders the text exposition format; `lag` is (region, replication lag in records
    /// behind the highest head any peer reported) and `store_bytes` the store size.
    pub fn render(&self, lag: &[(String, u64)], store_bytes: u64) -> String {
        let mut s = String::new();
        let c = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut s,
            "credfed_records_ingested_total",
            "Envelopes admitted.",
            self.ingested.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_records_duplicate_total",
            "Envelopes already held.",
            self.duplicates.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_connections_refused_total",
            "Connections refused: peer not in the manifest.",
            self.refused_connections.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_gossip_received_total",
            "Gossip messages received.",
            self.gossip_received.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_ranges_fetched_total",
            "Ranges fetched by anti-entropy.",
            self.ranges_fetched.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_bytes_received_total",
            "Envelope bytes received from peers.",
            self.bytes_received.load(Ordering::Relaxed),
        );
        c(
            &mut s,
            "credfed_equivocations_total",
            "Equivocations detected.",
            self.equivocations.load(Ordering::Relaxed),
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
            "# HELP credfed_peers Connected member peers.\n# TYPE credfed_peers gauge\ncredfed_peers {}",
            self.peers.load(Ordering::Relaxed)
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

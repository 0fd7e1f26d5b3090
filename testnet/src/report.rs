//! `report.json` (documented in docs/testnet.md) and `report.html` (self-contained SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One step's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based position.
    pub index: usize,
    /// Step kind.
    pub action: String,
    /// Start, ms since the drill began.
    pub at_ms: u64,
    /// Duration.
    pub duration_ms: u64,
    /// Succeeded.
    pub ok: bool,
    /// What happened.
    pub detail: String,
}

/// An invariant of docs/design.md §8.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invariant {
    /// Name.
    pub name: String,
    /// Held throughout.
    pub held: bool,
    /// Evidence.
    pub detail: String,
}

/// Convergence after a fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Convergence {
    /// The fault.
    pub after: String,
    /// From the fault (or its end) to convergence.
    pub since_fault_ms: f64,
    /// Time spent waiting for convergence.
    pub wait_ms: f64,
}

/// Percentiles of a sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Samples.
    pub n: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub fn of(xs: &[f64]) -> Percentiles {
        if xs.is_empty() {
            return Percentiles::default();
        }
        let mut v = xs.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| v[(((p / 100.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: v[v.len() - 1],
            n: v.len(),
        }
    }
}

/// The drill report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Regions of the federation.
    pub regions: Vec<String>,
    /// Steps with timings.
    pub steps: Vec<StepReport>,
    /// Invariants checked.
    pub invariants: Vec<Invariant>,
    /// Propagation publish → held at every reachable node.
    pub propagation_ms: Percentiles,
    /// The samples behind it.
    pub propagation_samples_ms: Vec<f64>,
    /// From a record's acknowledgement to the first proven answer at another node that
    /// covers it (bursts with `measure_proven`).
    #[serde(default)]
    pub proven_visible_ms: Percentiles,
    /// One person key asked at a time, request to answer (`person_key_load`), ms.
    #[serde(default)]
    pub person_key_ms: Percentiles,
    /// Persons keyed per second by batched requests of 512 (`person_key_load`).
    #[serde(default)]
    pub person_key_batch_per_s: Option<f64>,
    /// How long every member's share refresh over the connections took
    /// (`person_key_refresh`), ms.
    #[serde(default)]
    pub person_key_refresh_ms: Option<u64>,
    /// How long after the links healed every honest node flagged a quiet fork
    /// (`fork_across_partition`).
    #[serde(default)]
    pub fork_flagged_ms: Option<u64>,
    /// Convergence after each fault.
    pub convergence_ms: Vec<Convergence>,
    /// Acknowledgement times per target region.
    pub acknowledgement_ms: BTreeMap<String, Vec<i64>>,
    /// Witnessing rounds, all regions: from a checkpoint's signing to its quorum of
    /// cosignatures, as bucket bounds of the nodes' histograms (p50, p99 and the count).
    #[serde(default)]
    pub witness_round_ms: WitnessRounds,
    /// From the append of the oldest record a checkpoint newly covers to the
    /// checkpoint's quorum, all nodes: how long a record waits to be witnessed.
    #[serde(default)]
    pub witness_from_append_ms: WitnessRounds,
    /// Federation checkpoints collected for proven answers, all nodes: from the call for
    /// one (its leaves computed) to its quorum.
    #[serde(default)]
    pub federation_round_ms: WitnessRounds,
    /// Proven answers for an unlisted subject, verified offline at convergences.
    #[serde(default)]
    pub proven_answers: ProvenAnswers,
    /// Cosignatures refused by witnesses, by reason (`split_view`: a region showed a
    /// history the witness's replica contradicts), all nodes.
    #[serde(default)]
    pub cosign_refusals: BTreeMap<String, u64>,
    /// Verifiable-map versions the nodes forgot (superseded over a minute ago and no
    /// longer served), all nodes.
    #[serde(default)]
    pub map_versions_pruned: u64,
    /// Person keys, all nodes (docs/privacy.md): `asked` (numbers keyed for
    /// departments), `evaluations` (elements members evaluated for one another),
    /// `refused` (requests refused, e.g. over budget), `member_failures` (answers that
    /// did not verify or did not come), `unavailable` (requests without t members).
    #[serde(default)]
    pub person_keys: BTreeMap<String, u64>,
    /// Gossip messages and pulled ranges received, all nodes.
    pub messages: u64,
    /// Envelope bytes received, all nodes.
    pub bytes: u64,
    /// Envelopes applied from peers and own appends, all nodes.
    #[serde(default)]
    pub records_applied: u64,
    /// Envelopes received again after they were held (push and pull both delivering
    /// one, or two gossip batches overlapping), all nodes.
    #[serde(default)]
    pub records_duplicate: u64,
    /// Per-node resources at the end: region → (resident memory KiB, CPU seconds used).
    pub resources: BTreeMap<String, (u64, f64)>,
    /// How faults were injected.
    pub fault_mode: String,
    /// Whole drill.
    pub duration_ms: u64,
}

/// Proven answers asked and verified offline at convergences.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProvenAnswers {
    /// Answers verified.
    pub count: u64,
    /// Largest evidence file, bytes.
    pub max_file_bytes: u64,
    /// Longest offline verification, µs (one run on a loaded machine: a bound, not a
    /// benchmark; `cargo bench -p credfed-protocol --bench proven` gives the ratio).
    pub max_verify_us: u64,
}

/// Witnessing round latency over the whole federation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WitnessRounds {
    /// Rounds that reached their quorum.
    pub count: u64,
    /// Upper bound of the bucket holding the median, ms (None: no round).
    pub p50_at_most: Option<f64>,
    /// Upper bound of the bucket holding the 99th percentile, ms.
    pub p99_at_most: Option<f64>,
}

impl WitnessRounds {
    /// From cumulative histogram buckets `(upper bound in seconds, count)` summed over
    /// nodes, and the total count.
    pub fn from_buckets(buckets: &BTreeMap<String, u64>, count: u64) -> WitnessRounds {
        let mut bounds: Vec<(f64, u64)> = buckets
            .iter()
            .filter_map(|(le, n)| Some((le.parse::<f64>().ok()?, *n)))
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let at = |q: f64| {
            if count == 0 {
                return None;
            }
            let need = (q * count as f64).ceil() as u64;
            Some(
                bounds
                    .iter()
                    .find(|(_, n)| *n >= need)
                    .map_or(f64::INFINITY, |(le, _)| le * 1000.0),
            )
        };
        WitnessRounds {
            count,
            p50_at_most: at(0.5),
            p99_at_most: at(0.99),
        }
    }
}

impl Report {
    /// Every step succeeded and every invariant held.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.ok) && self.invariants.iter().all(|i| i.held)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cdf_svg(samples: &[f64]) -> String {
    let (w, h, pad) = (560.0, 220.0, 40.0);
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let max = v.last().copied().unwrap_or(1.0).max(1.0);
    let mut s = format!(
        r#"<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-size="11"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{pad}" y1="10" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - 10.0,
        h - pad,
        h - pad
    );
    let pts: Vec<String> = v
        .iter()
        .enumerate()
        .map(|(i, x)| {
            format!(
                "{:.1},{:.1}",
                pad + x / max * (w - pad - 20.0),
                h - pad - (i + 1) as f64 / v.len() as f64 * (h - pad - 20.0)
            )
        })
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#c00" stroke-width="2" points="{}"/>"##,
        pts.join(" ")
    );
    let _ = write!(
        s,
        r#"<text x="{pad}" y="{}">0</text><text x="{}" y="{}" text-anchor="end">{max:.0} ms</text><text x="5" y="20">100%</text>"#,
        h - pad + 15.0,
        w - 10.0,
        h - pad + 15.0
    );
    s.push_str("</svg>");
    s
}

fn bars_svg(rows: &[(String, f64)], unit: &str) -> String {
    let (w, row) = (560.0, 16.0);
    let h = 20.0 + rows.len() as f64 * row;
    let max = rows.iter().map(|r| r.1).fold(1.0, f64::max);
    let mut s = format!(
        r#"<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-size="11"><rect width="100%" height="100%" fill="white"/>"#
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        let len = v / max * (w - 230.0);
        let _ = write!(
            s,
            r##"<text x="5" y="{}">{}</text><rect x="150" y="{}" width="{len:.1}" height="{}" fill="#369"/><text x="{}" y="{}">{v:.0} {unit}</text>"##,
            y + 11.0,
            esc(label),
            y + 2.0,
            row - 4.0,
            155.0 + len,
            y + 11.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    let verdict = if r.passed() {
        "<b style='color:green'>PASSED</b>"
    } else {
        "<b style='color:#c00'>FAILED</b>"
    };
    let _ = write!(
        s,
        "<!doctype html><meta charset='utf-8'><title>credfed drill: {}</title><body style='font-family:sans-serif;max-width:900px;margin:2em auto'>",
        esc(&r.scenario)
    );
    let _ = write!(
        s,
        "<h1>Drill: {}</h1><p>{verdict} — {} regions, {:.1} s. Faults: {}.</p>",
        esc(&r.scenario),
        r.regions.len(),
        r.duration_ms as f64 / 1000.0,
        esc(&r.fault_mode)
    );
    s.push_str("<h2>Invariants (docs/design.md §8)</h2><table border=1 cellpadding=4 style='border-collapse:collapse'><tr><th>invariant</th><th>held</th><th>evidence</th></tr>");
    for i in &r.invariants {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.name),
            if i.held { "✔" } else { "✘" },
            esc(&i.detail)
        );
    }
    s.push_str("</table>");
    let p = &r.propagation_ms;
    let _ = write!(
        s,
        "<h2>Propagation: publish → held at every reachable node</h2><p>p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms ({} records)</p>{}",
        p.p50,
        p.p90,
        p.p99,
        p.max,
        p.n,
        cdf_svg(&r.propagation_samples_ms)
    );
    let conv: Vec<(String, f64)> = r
        .convergence_ms
        .iter()
        .map(|c| (c.after.clone(), c.since_fault_ms))
        .collect();
    let _ = write!(
        s,
        "<h2>Convergence after each fault (time line order)</h2>{}",
        bars_svg(&conv, "ms")
    );
    let acks: Vec<(String, f64)> = r
        .acknowledgement_ms
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().copied().max().unwrap_or(0) as f64))
        .collect();
    let _ = write!(
        s,
        "<h2>Acknowledgement time per target region</h2>{}",
        bars_svg(&acks, "ms")
    );
    let _ = write!(
        s,
        "<h2>Traffic</h2><p>{} messages (gossip + pulled ranges), {} envelope bytes received across all nodes; {} envelopes applied, {} received again after they were held.</p><p>Person keys: {}.</p>",
        r.messages,
        r.bytes,
        r.records_applied,
        r.records_duplicate,
        esc(&r
            .person_keys
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "))
    );
    s.push_str("<h2>Steps</h2><table border=1 cellpadding=4 style='border-collapse:collapse'><tr><th>#</th><th>step</th><th>at</th><th>took</th><th>ok</th><th>detail</th></tr>");
    for st in &r.steps {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{} ms</td><td>{}</td><td>{}</td></tr>",
            st.index,
            esc(&st.action),
            st.at_ms,
            st.duration_ms,
            if st.ok { "✔" } else { "✘" },
            esc(&st.detail)
        );
    }
    s.push_str("</table></body>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles come from cumulative buckets: the first bound whose count covers the
    /// quantile; nothing without rounds.
    #[test]
    fn witness_percentiles_from_cumulative_buckets() {
        let b: BTreeMap<String, u64> = [("0.01", 10), ("0.025", 90), ("0.05", 99), ("0.1", 100)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let w = WitnessRounds::from_buckets(&b, 100);
        assert_eq!((w.p50_at_most, w.p99_at_most), (Some(25.0), Some(50.0)));
        assert_eq!(WitnessRounds::from_buckets(&b, 0).p99_at_most, None);
        let w = WitnessRounds::from_buckets(&b, 200);
        assert_eq!(w.p99_at_most, Some(f64::INFINITY));
    }
}

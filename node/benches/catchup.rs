//! Catch-up ingest: how fast a node admits and stores a long run of another region's
//! envelopes (what it does after a heal or a wipe), against the limit set by signature
//! checking alone, measured in the same run.
//!
//! `cargo bench -p credfed-node --bench catchup [-- N]` (default N = 5000). Prints the
//! ingest rate, the rate of raw `verify_strict` pairs (two signatures per envelope) and
//! their ratio, and what computing the verifiable map over the same records adds (one
//! map version per quarter-second of records at the measured rate, as witnesses compute
//! it under load; `-- N V` for versions of V records). Every entry names one company
//! unless `--distinct-subjects` is given: then each names its own, the harder case for
//! the map (two new keys per record instead of one). It also reports what the map's
//! pages occupy per record, with every version kept and after superseded versions are
//! pruned. docs/performance.md records the figures.

mod common;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::Chain;
use credfed_node::engine::{Clock, Core, EngineConfig, EngineEvent, IngestJob};
use credfed_node::metrics::Metrics;
use credfed_node::store::Store;
use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::crypto::{Domain, Keypair};
use credfed_protocol::envelope::OPERATOR_UNIT;
use credfed_protocol::ids::{DepartmentId, RegionCode, Role};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;

const FED: &str = "cn-credit-bench";

fn region(code: u32) -> RegionCode {
    RegionCode::new(code, "region").expect("valid region")
}

/// The company entry `seq` names: one for all, or its own.
fn company(seq: u64, distinct: bool) -> String {
    if !distinct {
        return "91350100M000100Y43".into();
    }
    let first17 = format!("91350100{seq:09}");
    let check = credfed_protocol::ids::uscc::check_character(first17.as_bytes())
        .expect("digits are in the alphabet");
    format!("{first17}{check}")
}

/// `n` envelopes of 310000's log: a department registration (by the operator), then
/// list entries.
fn origin_log(
    n: usize,
    (origin, operator): (&Keypair, &Keypair),
    publisher: &Keypair,
    now: Timestamp,
    distinct: bool,
) -> Vec<Vec<u8>> {
    let r = region(310000);
    let dept = DepartmentId::new(r, "pub", "department").expect("valid department");
    let operator_id = DepartmentId {
        region: r,
        unit: OPERATOR_UNIT.into(),
    };
    let today = now.date_cst();
    let mut out = Vec::with_capacity(n);
    let mut chain = Chain::new(FED, r, origin, now);
    for seq in 1..=n as u64 {
        let (author, key, body) = if seq == 1 {
            let body = Body::DepartmentRegistered {
                department: dept.clone(),
                name: "上海市 pub".into(),
                roles: vec![Role::Publisher],
                key: publisher.public(),
            };
            (operator_id.clone(), operator, body)
        } else {
            let entry = ListEntry {
                category: Category::Black(BlackCategory::MaliciousWageArrears),
                subject: Subject::Organisation {
                    uscc: company(seq, distinct),
                    name: "基准企业".into(),
                    check_exemption: None,
                },
                related_persons: vec![],
                basis: Basis {
                    document_no: format!("基准 {seq}"),
                    authority: "基准".into(),
                    decided_on: today.add_days(-1),
                    legal_basis: "基准".into(),
                },
                effective_from: today.add_days(-1),
                expires_on: today.add_days(365),
                requested_measures: vec![],
                findings: vec![],
                summary: String::new(),
            };
            (dept.clone(), publisher, Body::ListEntryPublished(entry))
        };
        out.push(chain.append(author, key, &body));
    }
    out
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let distinct = std::env::args().any(|a| a == "--distinct-subjects");
    let origin = Keypair::from_secret([2; 32]);
    let receiver = Keypair::from_secret([3; 32]);
    let publisher = Keypair::from_secret([4; 32]);
    let operator = Keypair::from_secret([5; 32]);
    let receiver_operator = Keypair::from_secret([6; 32]);
    let authority = Keypair::from_secret([1; 32]);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let now = Timestamp(now_ms - 60_000);
    let manifest = Manifest::for_build(
        FED,
        1,
        Timestamp(0),
        Timestamp(i64::MAX / 2),
        authority.public(),
        [
            (310000, &origin, &operator),
            (620000, &receiver, &receiver_operator),
        ]
        .into_iter()
        .map(|(c, k, o)| Member::for_province(region(c), k.public(), o.public(), vec![]))
        .collect(),
    );
    eprintln!("sealing {n} envelopes of 310000's log…");
    let log = origin_log(n, (&origin, &operator), &publisher, now, distinct);

    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let metrics = Arc::new(Metrics::default());
    let (core, mut links) = Core::start(
        Box::new(store),
        EngineConfig {
            region: region(620000),
            manifest,
            catalogue: Catalogue::embedded().expect("catalogue"),
            calendar: WorkingCalendar::embedded().expect("calendar"),
            node_key: receiver,
            clock: Clock::new(0),
            group_commit_max: 256,
            signed_manifest: None,
        },
        metrics.clone(),
    )
    .expect("engine");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The writer's path exactly as the network feeds it: ranges of 1024 envelopes.
    let peer = libp2p::PeerId::random();
    let t = Instant::now();
    runtime.block_on(async {
        for (k, chunk) in log.chunks(1024).enumerate() {
            let from = (k * 1024 + 1) as u64;
            let job = IngestJob::Range {
                peer,
                region: region(310000),
                from: Some(from),
                envelopes: chunk.to_vec(),
            };
            links.ingest.send(job).await.expect("writer running");
            loop {
                match links.events.recv().await.expect("writer running") {
                    EngineEvent::RangeDone { forked, .. } => {
                        assert!(!forked, "range from {from} refused");
                        break;
                    }
                    _ => continue,
                }
            }
        }
    });
    let ingest_s = t.elapsed().as_secs_f64();
    let applied = metrics.ingested.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(applied, n as u64, "every envelope applied");

    // The verifiable map over the same records, as a witness computes it: one version
    // per checkpoint it cosigns. A region appending at this ingest rate signs one every
    // 250 ms (the default witness_round_gap_ms), so a version holds a quarter-second of
    // records; `-- N 256` fixes the version size instead.
    let per_version: u64 = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok())
        .nth(1)
        .unwrap_or(((n as f64 / ingest_s) * 0.25).max(1.0) as u64);
    let t = Instant::now();
    let mut size = 0;
    while size < n as u64 {
        size = (size + per_version).min(n as u64);
        core.map_root(region(310000), size).expect("map computed");
    }
    let map_s = t.elapsed().as_secs_f64();
    let log_bytes: usize = log.iter().map(Vec::len).sum();
    let kept = core.map_storage(region(310000)).expect("map storage");
    let (pruned_versions, _) = core
        .prune_map_versions(region(310000), 0)
        .expect("map pruned");
    let pruned = core.map_storage(region(310000)).expect("map storage");

    // The limit: two strict verifications per envelope, nothing else.
    let payload = vec![0x5a; log.iter().map(Vec::len).sum::<usize>() / n.max(1)];
    let sig = origin.sign(Domain::EnvelopeHeader, FED, &payload);
    let key = origin.public();
    let t = Instant::now();
    for _ in 0..2 * n {
        key.verify(Domain::EnvelopeHeader, FED, &payload, &sig, "bench")
            .expect("verifies");
    }
    let verify_s = t.elapsed().as_secs_f64();

    let ingest_rate = n as f64 / ingest_s;
    let verify_rate = n as f64 / verify_s;
    println!("catch-up ingest: {n} envelopes in {ingest_s:.2} s = {ingest_rate:.0} envelopes/s");
    println!("raw verify_strict pairs: {verify_rate:.0}/s");
    println!(
        "ingest rate / verify-pair rate = {:.2}  (1.00 would mean signatures are the only cost)",
        ingest_rate / verify_rate
    );
    println!(
        "map: {n} records in {map_s:.2} s, a version per {per_version} records; (ingest + map) / ingest = {:.3}  (goal <= 1.2: a record's cost with its map update against without)",
        (ingest_s + map_s) / ingest_s
    );
    let per_record = |bytes: u64| bytes as f64 / n as f64;
    println!(
        "map storage: {} versions, {} page records, {:.0} bytes/record; after pruning {pruned_versions} superseded versions: {} page records, {:.0} bytes/record  (the log itself: {:.0} bytes/record)",
        kept.versions,
        kept.page_records,
        per_record(kept.page_bytes),
        pruned.page_records,
        per_record(pruned.page_bytes),
        log_bytes as f64 / n as f64
    );
}

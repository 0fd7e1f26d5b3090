//! Group commit: acknowledged appends per second with 1, 16 and 64 concurrent writers
//! against one node, with group commit on and off in the same run (off = one fsync per
//! append, what the node did before), and appends per fsync.
//!
//! `cargo bench -p credfed-node --bench group_commit [-- SECONDS [SYNC_DELAY_MS]]
//! [--engine=redb|fjall]` (default 5 s per measurement, no added delay, sled). A real node runs in this process on a
//! real disk (a temporary directory) and is driven over HTTPS by the same client the CLI
//! uses, one kept-alive connection per writer; docs/performance.md records the figures.
//!
//! The limits measured in the same run are the disk's — how many durable single writes
//! per second the store manages alone (write, flush, fsync) — and the cryptography's: the
//! process's CPU time per acknowledged append (the node and its clients, which run in
//! this process) against two signatures and one strict verification. On a disk whose fsync is
//! cheap, appends are bound by CPU (signatures, TLS) whatever group commit does;
//! SYNC_DELAY_MS adds that many milliseconds to every sync (the store wrapped in the
//! fault-injecting backend) to show a disk whose fsync costs more.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credfed_client::{ApiClient, SubmitRecord};
use credfed_node::config::{InitOptions, init_data_dir};
use credfed_protocol::crypto::Keypair;
use credfed_protocol::envelope::OPERATOR_UNIT;
use credfed_protocol::ids::{DepartmentId, RegionCode, Role};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::time::{Date, Timestamp};

mod common;
use common::free_port;

const FED: &str = "cn-credit-bench";

fn entry(doc: String) -> Body {
    let d = |s: &str| Date::parse(s).expect("date");
    Body::ListEntryPublished(ListEntry {
        category: Category::Black(BlackCategory::MaliciousWageArrears),
        subject: Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: "基准企业".into(),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: Basis {
            document_no: doc,
            authority: "基准".into(),
            decided_on: d("2026-01-05"),
            legal_basis: "基准".into(),
        },
        effective_from: d("2026-01-05"),
        expires_on: d("2029-01-05"),
        requested_measures: vec![],
        findings: vec![],
        summary: String::new(),
    })
}

struct Measurement {
    writers: usize,
    appends: u64,
    seconds: f64,
    fsyncs: u64,
    /// CPU time this process (the node and its clients) spent during the measurement.
    cpu_seconds: f64,
}

/// CPU time (user + system) of this whole process so far, from /proc (clock ticks of
/// 10 ms: ample over measurements of seconds).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The cryptography one acknowledged append needs, in seconds, measured here: the
/// department signs its body, the node verifies that signature (strictly) and signs
/// the envelope header.
fn crypto_per_append() -> f64 {
    use credfed_protocol::crypto::Domain;
    let key = Keypair::from_secret([9; 32]);
    let body = vec![0x5a_u8; 300];
    let n = 2_000;
    let started = Instant::now();
    let mut sig = key.sign(Domain::Body, FED, &body);
    for _ in 0..n {
        sig = key.sign(Domain::Body, FED, std::hint::black_box(&body));
    }
    let sign = started.elapsed().as_secs_f64() / n as f64;
    let public = key.public();
    let started = Instant::now();
    for _ in 0..n {
        public
            .verify(
                Domain::Body,
                FED,
                std::hint::black_box(&body),
                &sig,
                "bench",
            )
            .expect("verifies");
    }
    let verify = started.elapsed().as_secs_f64() / n as f64;
    2.0 * sign + verify
}

async fn metric(client: &ApiClient, name: &str) -> u64 {
    let r = client.get("/metrics").await.expect("metrics");
    r.body
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Durable single writes per second of the store alone on this disk.
fn raw_sync_rate(sync_delay_ms: u64) -> f64 {
    use credfed_node::store::{Backend, Store};
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path()).expect("store");
    let (store, faults) = credfed_node::store::faulty::FaultyStore::wrap(Box::new(store));
    faults.sync_delay_ms.store(sync_delay_ms, Ordering::SeqCst);
    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        store.note_received(
            credfed_protocol::state::RecordPos {
                region: RegionCode::new(310000, "r").expect("region"),
                seq: 1,
            },
            0,
        );
        store.sync().expect("sync");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn run_mode(
    group_commit_max: usize,
    seconds: f64,
    sync_delay_ms: u64,
    engine: credfed_node::store::Engine,
) -> Vec<Measurement> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let region = RegionCode::new(310000, "region").expect("region");
    let authority = Keypair::from_secret([1; 32]);
    let report = init_data_dir(&InitOptions {
        region,
        dir: dir.path().join("node"),
        authority_key: authority.public().to_hex(),
        node_key: None,
        operator_key: None,
        person_share_text: None,
        p2p_port: free_port(),
        api_port: free_port(),
        public_port: None,
        listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    })
    .expect("data directory");
    let manifest = Manifest::for_build(
        FED,
        1,
        Timestamp(0),
        Timestamp(i64::MAX / 2),
        authority.public(),
        vec![Member::for_province(
            region,
            report.node_key,
            report.operator_key,
            vec![],
        )],
    );
    std::fs::write(
        report.dir.join("manifest.json"),
        serde_json::to_string(&manifest.sign(&authority).expect("sign")).expect("json"),
    )
    .expect("manifest");
    let mut cfg = report.config;
    cfg.solo = true;
    cfg.group_commit_max = group_commit_max;
    // 64 writers and the metrics client share one address.
    cfg.api_max_connections_per_client = 256;
    cfg.api_max_connections_per_certificate = 256;
    cfg.save(&report.dir.join("config.toml")).expect("config");
    let store = credfed_node::store::Store::open_with(
        &cfg.data_dir.join("store"),
        &credfed_node::store::StoreOptions {
            engine,
            ..Default::default()
        },
    )
    .expect("store");
    let (store, faults) = credfed_node::store::faulty::FaultyStore::wrap(Box::new(store));
    faults.sync_delay_ms.store(sync_delay_ms, Ordering::SeqCst);
    let node = credfed_node::daemon::start_with(&cfg, Some(Box::new(store)))
        .await
        .expect("node starts");
    let op = report.dir.join("operator");
    let client = ApiClient::with_identity(
        &node.api_addr.to_string(),
        &report.dir.join("api-ca.pem"),
        &op.join("310000-operator.pem"),
        &op.join("310000-operator.key"),
    )
    .expect("client");
    let end = Instant::now() + Duration::from_secs(30);
    while !client.status().await.is_ok_and(|s| s.writes_open) {
        assert!(Instant::now() < end, "writes never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let operator_key =
        credfed_client::keys::read_key(&report.dir.join(credfed_node::config::OPERATOR_KEY_FILE))
            .expect("operator key");
    let publisher = Keypair::from_secret([4; 32]);
    let dept = DepartmentId::new(region, "pub", "department").expect("department");
    let register = Body::DepartmentRegistered {
        department: dept.clone(),
        name: "基准".into(),
        roles: vec![Role::Publisher],
        key: publisher.public(),
    };
    let operator = DepartmentId {
        region,
        unit: OPERATOR_UNIT.into(),
    };
    client
        .submit(&SubmitRecord::sign(
            FED,
            &operator,
            &operator_key,
            &register,
        ))
        .await
        .expect("department registered");

    let publisher = Arc::new(publisher);
    let doc = Arc::new(AtomicU64::new(0));
    let mut out = Vec::new();
    for writers in [1usize, 16, 64] {
        let pool = client.clone().with_max_connections(writers);
        let appends_before = metric(&pool, "credfed_appends_total").await;
        let fsyncs_before = metric(&pool, "credfed_fsyncs_total").await;
        let cpu_before = process_cpu_seconds();
        let started = Instant::now();
        let stop = started + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let pool = pool.clone();
                let publisher = publisher.clone();
                let dept = dept.clone();
                let doc = doc.clone();
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < stop {
                        let n = doc.fetch_add(1, Ordering::Relaxed);
                        let record =
                            SubmitRecord::sign(FED, &dept, &publisher, &entry(format!("基准 {n}")));
                        pool.submit(&record).await.expect("acknowledged");
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut appends = 0;
        for t in tasks {
            appends += t.await.expect("writer");
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = process_cpu_seconds() - cpu_before;
        let acknowledged = metric(&pool, "credfed_appends_total").await - appends_before;
        assert_eq!(
            acknowledged, appends,
            "every acknowledged append counted once"
        );
        out.push(Measurement {
            writers,
            appends,
            seconds,
            fsyncs: metric(&pool, "credfed_fsyncs_total").await - fsyncs_before,
            cpu_seconds,
        });
    }
    if group_commit_max > 1 {
        check_latency(&client, &node.api_addr.to_string(), &report.dir).await;
    }
    node.stop().await.expect("node stops");
    out
}

/// p50/p90/p99 of a check on one kept-alive connection, and with a new connection (TLS
/// handshake included) per check, as the CLI did before it kept connections.
async fn check_latency(kept: &ApiClient, addr: &str, dir: &std::path::Path) {
    // A subject no bench record names: the common answer, "clear".
    let path = "/v1/check?uscc=91110000100000000R&domain=procurement";
    let percentiles = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.9), at(0.99))
    };
    let kept = kept.clone().with_max_connections(1);
    let mut warm = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        assert_eq!(kept.get(path).await.expect("check").status, 200);
        warm.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut fresh = Vec::new();
    for _ in 0..200 {
        let op = dir.join("operator");
        let c = ApiClient::with_identity(
            addr,
            &dir.join("api-ca.pem"),
            &op.join("310000-operator.pem"),
            &op.join("310000-operator.key"),
        )
        .expect("client");
        let t = Instant::now();
        assert_eq!(c.get(path).await.expect("check").status, 200);
        fresh.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (a50, a90, a99) = percentiles(warm);
    let (b50, b90, b99) = percentiles(fresh);
    println!(
        "check latency, kept-alive connection (1000): p50 {a50:.2} ms, p90 {a90:.2} ms, p99 {a99:.2} ms"
    );
    println!(
        "check latency, new connection each (200):    p50 {b50:.2} ms, p90 {b90:.2} ms, p99 {b99:.2} ms"
    );
}

fn main() {
    let numbers: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = numbers.first().copied().unwrap_or(5.0);
    let sync_delay_ms = numbers.get(1).copied().unwrap_or(0.0) as u64;
    let engine: credfed_node::store::Engine = std::env::args()
        .skip(1)
        .find_map(|a| a.strip_prefix("--engine=").map(str::to_owned))
        .map(|e| e.parse().expect("--engine=sled|redb|fjall"))
        .unwrap_or_default();
    println!("store engine: {}", engine.name());
    let disk = raw_sync_rate(sync_delay_ms);
    println!(
        "disk: {disk:.0} durable single writes/s alone (write + flush + fsync{})",
        if sync_delay_ms > 0 {
            format!(", {sync_delay_ms} ms added per sync")
        } else {
            String::new()
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let off = runtime.block_on(run_mode(1, seconds, sync_delay_ms, engine));
    let on = runtime.block_on(run_mode(
        credfed_node::config::DEFAULT_GROUP_COMMIT_MAX,
        seconds,
        sync_delay_ms,
        engine,
    ));
    let crypto = crypto_per_append();
    println!(
        "cryptography per append (2 signatures + 1 strict verification): {:.1} µs",
        crypto * 1e6
    );
    println!(
        "group commit | writers | acknowledged appends/s | appends per fsync | ÷ disk rate | CPU µs per append (node + clients) | ÷ cryptography"
    );
    for (name, rows) in [("off", &off), ("on", &on)] {
        for m in rows.iter() {
            let rate = m.appends as f64 / m.seconds;
            let cpu = m.cpu_seconds / m.appends.max(1) as f64;
            println!(
                "{name:>12} | {:>7} | {:>22.0} | {:>17.1} | {:>11.2} | {:>34.0} | {:>14.1}",
                m.writers,
                rate,
                m.appends as f64 / m.fsyncs.max(1) as f64,
                rate / disk,
                cpu * 1e6,
                cpu / crypto
            );
        }
    }
    let rate = |rows: &[Measurement], w: usize| {
        rows.iter()
            .find(|m| m.writers == w)
            .map_or(0.0, |m| m.appends as f64 / m.seconds)
    };
    for w in [1, 16, 64] {
        println!(
            "{w} writers: group commit on / off = {:.1}×",
            rate(&on, w) / rate(&off, w).max(f64::MIN_POSITIVE)
        );
    }
}

//! National scale: a node filled with N records of 30 other provinces (the 31st is the
//! node's own), through the path catch-up takes (ranges of 1024 envelopes admitted and
//! applied by the writer), with one map version per range as a witness computes them;
//! then what the store occupies per record and per part, resident memory, start-up time
//! (open, chain verification, engine start), check latency in process (listed and
//! unlisted subjects), proven answers (every head witnessed and a federation checkpoint
//! cosigned first; then answers with proofs, one verified offline), checks over HTTPS
//! from 1 to 64 kept-alive clients (the daemon started on the filled store) and what a
//! map version costs.
//!
//! `cargo bench -p credfed-node --bench scale -- N [--engine redb|sled|fjall] [--cache-mib M]
//! [--no-map] [--no-https] [--no-workflows] [--dir DIR]` (default N = 100000, sled, the default cache);
//! `--startup-only --dir DIR` times only a restart on the store a run left in DIR.
//! `N --reads-only --dir DIR` measures only the reads (start-up, checks, workflows,
//! HTTPS) on the store a run of the same N left in DIR.
//! Signatures are made beforehand on every core, into files under the work directory
//! (a temporary one unless `--dir` is given), so that the node's memory is measured
//! without the generated log in it. docs/performance.md records the figures.
//!
//! The mix, per hundred records of a region: 40 black-list companies (wage arrears),
//! 10 companies defying a judgment with their legal representative and a requested
//! measure, 10 natural persons defying a judgment, 20 evaluation results, 5 red-list
//! companies, 5 joint punishments on the region's own entries, 5 corrections and 5
//! credit repairs of earlier entries.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{Chain, free_port};
use credfed_node::engine::{Clock, Core, EngineConfig, EngineEvent, IngestJob};
use credfed_node::metrics::Metrics;
use credfed_node::store::{Backend, DEFAULT_CACHE_BYTES, Engine, Store, StoreOptions};
use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::{Catalogue, MeasureDomain};
use credfed_protocol::crypto::{Domain, Keypair, sha256};
use credfed_protocol::envelope::OPERATOR_UNIT;
use credfed_protocol::ids::region::PROVINCES;
use credfed_protocol::ids::{DepartmentId, PersonRef, RegionCode, Role};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::time::{Date, Timestamp};

const FED: &str = "cn-credit-bench";
/// The node's own region: it holds every other region's log.
const OWN: u32 = 110000;
/// Envelopes per pulled range, as the replicator asks for them.
const RANGE: usize = 1024;

fn region(code: u32) -> RegionCode {
    RegionCode::new(code, "region").expect("valid region")
}

fn node_key(code: u32) -> Keypair {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&code.to_be_bytes());
    Keypair::from_secret(seed)
}

/// The region's operator key: registers its departments.
fn operator_key(code: u32) -> Keypair {
    let mut seed = [8u8; 32];
    seed[..4].copy_from_slice(&code.to_be_bytes());
    Keypair::from_secret(seed)
}

fn department_key(code: u32) -> Keypair {
    let mut seed = [8u8; 32];
    seed[..4].copy_from_slice(&code.to_be_bytes());
    Keypair::from_secret(seed)
}

/// Words company names are made of: 40 × 40 pairs and five trades, so that a search by
/// one pair of words matches about one name in 1,600, and one by a trade one in five.
const NAME_WORDS: [&str; 40] = [
    "华信", "宏达", "恒通", "鑫源", "永安", "金鼎", "瑞丰", "天成", "盛世", "东方", "新星", "博远",
    "正大", "海川", "中兴", "嘉禾", "万通", "长城", "利民", "富强", "广厦", "光明", "和平", "景泰",
    "康达", "凯旋", "隆兴", "明珠", "南方", "启航", "荣昌", "顺发", "泰和", "同创", "伟业", "祥云",
    "信达", "阳光", "远航", "卓越",
];
const NAME_TRADES: [&str; 5] = ["建筑", "食品", "科技", "贸易", "物流"];

/// A company's registered name by its serial.
fn company_name(serial: u64) -> String {
    format!(
        "{}{}{}有限公司",
        NAME_WORDS[(serial % 40) as usize],
        NAME_WORDS[((serial / 40) % 40) as usize],
        NAME_TRADES[((serial / 1600) % 5) as usize]
    )
}

/// The company named by `serial` in region `code`: listed when `serial` is below the
/// number of records the region published, never when it is above.
fn company(code: u32, serial: u64) -> String {
    let first17 = format!("91{:02}0100{serial:09}", code / 10000);
    let check = credfed_protocol::ids::uscc::check_character(first17.as_bytes())
        .expect("digits are in the alphabet");
    format!("{first17}{check}")
}

fn person(code: u32, serial: u64) -> PersonRef {
    PersonRef {
        id_hash: sha256(&[&code.to_be_bytes(), &serial.to_be_bytes()]),
        masked: format!("{:02}****************", code / 10000),
        name: "基准人员".into(),
    }
}

fn basis(serial: u64, today: Date) -> Basis {
    Basis {
        document_no: format!("基准〔2026〕{serial}号"),
        authority: "基准认定部门".into(),
        decided_on: today.add_days(-1),
        legal_basis: "国发〔2016〕33号".into(),
    }
}

fn entry(category: Category, subject: Subject, serial: u64, today: Date) -> ListEntry {
    ListEntry {
        category,
        subject,
        related_persons: vec![],
        basis: basis(serial, today),
        effective_from: today.add_days(-1),
        expires_on: today.add_days(3 * 365),
        requested_measures: vec![],
        findings: vec![],
        summary: String::new(),
    }
}

/// What a region has published that later records refer to.
#[derive(Default)]
struct Published {
    /// Entries a joint punishment may be initiated on.
    defying: VecDeque<EntryId>,
    /// Black-list entries not yet corrected or repaired: corrections take the oldest,
    /// repairs the newest, so that no entry is both.
    black: VecDeque<(EntryId, ListEntry)>,
}

/// The body of record `serial` (2, 3, …) of region `code`, following the mix above.
fn body(code: u32, serial: u64, today: Date, p: &mut Published) -> Body {
    let r = region(code);
    let org = |serial: u64| Subject::Organisation {
        uscc: company(code, serial),
        name: company_name(serial),
        check_exemption: None,
    };
    let black = |e: ListEntry, p: &mut Published| {
        p.black.push_back((entry_id(r, &e), e.clone()));
        Body::ListEntryPublished(e)
    };
    match serial % 100 {
        0..40 => black(
            entry(
                Category::Black(BlackCategory::MaliciousWageArrears),
                org(serial),
                serial,
                today,
            ),
            p,
        ),
        40..50 => {
            let mut e = entry(
                Category::Black(BlackCategory::DefyingJudgmentOrDecision),
                org(serial),
                serial,
                today,
            );
            e.related_persons = vec![RelatedPerson {
                role: RelatedRole::LegalRepresentative,
                person: person(code, serial),
            }];
            e.findings = vec![Finding::AbleButRefuses];
            e.requested_measures = vec![MeasureCode("P-PROCUREMENT".into())];
            p.defying.push_back(entry_id(r, &e));
            Body::ListEntryPublished(e)
        }
        50..60 => {
            let mut e = entry(
                Category::Black(BlackCategory::DefyingJudgmentOrDecision),
                Subject::Person(person(code, serial)),
                serial,
                today,
            );
            e.findings = vec![Finding::AbleButRefuses];
            Body::ListEntryPublished(e)
        }
        60..80 => Body::EvaluationPublished(Evaluation {
            subject: org(serial),
            scheme: "tax-credit".into(),
            grade: Grade::Class(*b"A\0\0\0"),
            evaluated_on: today.add_days(-1),
            valid_until: today.add_days(365),
        }),
        80..85 => Body::ListEntryPublished(entry(
            Category::Red(RedSource::GoodCreditClassification),
            org(serial),
            serial,
            today,
        )),
        85..90 => match p.defying.pop_front() {
            Some(on) => Body::JointActionInitiated(JointAction {
                reference: format!("基准联〔2026〕{serial}号"),
                kind: ActionKind::Punishment,
                entry: on,
                targets: Targets::AllMembers,
                measures: vec![MeasureCode("P-PROCUREMENT".into())],
                respond_by: today.add_days(7),
            }),
            None => black(
                entry(
                    Category::Black(BlackCategory::MaliciousWageArrears),
                    org(serial),
                    serial,
                    today,
                ),
                p,
            ),
        },
        90..95 => match p.black.pop_front() {
            Some((id, mut amended)) => {
                amended.summary = format!("更正 {serial}");
                Body::ListEntryAmended {
                    entry: id,
                    amended,
                    reason: "基准更正".into(),
                }
            }
            None => unreachable!("forty entries precede every correction"),
        },
        _ => match p.black.pop_back() {
            Some((id, _)) => Body::ListEntryRepaired {
                entry: id,
                basis: RepairBasis::CorrectedWithinPeriod,
                reason: "基准修复".into(),
            },
            None => unreachable!("forty entries precede every repair"),
        },
    }
}

/// Writes region `code`'s log of `n` envelopes to `path`: length-prefixed, in order.
fn generate(code: u32, n: u64, now: Timestamp, path: &Path) -> u64 {
    let r = region(code);
    let origin = node_key(code);
    let operator = operator_key(code);
    let publisher = department_key(code);
    let dept = DepartmentId::new(r, "pub", "department").expect("valid department");
    let operator_id = DepartmentId {
        region: r,
        unit: OPERATOR_UNIT.into(),
    };
    let today = now.date_cst();
    let mut out = BufWriter::new(std::fs::File::create(path).expect("log file"));
    let mut chain = Chain::new(FED, r, &origin, now);
    let mut published = Published::default();
    let mut bytes_total = 0;
    for seq in 1..=n {
        let (author, key, body) = if seq == 1 {
            let body = Body::DepartmentRegistered {
                department: dept.clone(),
                name: "基准认定部门".into(),
                roles: vec![Role::Publisher, Role::Initiator],
                key: publisher.public(),
            };
            (operator_id.clone(), &operator, body)
        } else {
            (
                dept.clone(),
                &publisher,
                body(code, seq, today, &mut published),
            )
        };
        let env = chain.append(author, key, &body);
        bytes_total += env.len() as u64;
        out.write_all(&(env.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(&env))
            .expect("log written");
    }
    out.flush().expect("log written");
    bytes_total
}

fn read_range(reader: &mut BufReader<std::fs::File>, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(max);
    while out.len() < max {
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).is_err() {
            break;
        }
        let mut env = vec![0u8; u32::from_le_bytes(len) as usize];
        reader.read_exact(&mut env).expect("log read");
        out.push(env);
    }
    out
}

/// Resident and peak resident memory of this process, bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resident memory once the allocator has given the heap this process freed back to
/// the system: what it holds live (glibc otherwise keeps freed heap).
fn resident_without_freed_heap() -> u64 {
    // SAFETY: malloc_trim takes an integer and only releases free heap.
    unsafe {
        libc::malloc_trim(0);
    }
    memory().0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Bytes the files under `dir` occupy (allocated blocks).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// Bytes under `dir` by the directory that holds them, up to `depth` levels down
/// (an engine's journal apart from its tables, say), largest first.
fn disk_by_directory(dir: &Path, depth: usize) -> Vec<(String, u64)> {
    fn walk(root: &Path, at: &Path, depth: usize, into: &mut BTreeMap<String, u64>) {
        use std::os::unix::fs::MetadataExt;
        for e in std::fs::read_dir(at).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(root, &e.path(), depth, into);
            } else {
                let rel = at.strip_prefix(root).unwrap_or(at);
                let key: PathBuf = rel.components().take(depth).collect();
                *into.entry(key.display().to_string()).or_default() += meta.blocks() * 512;
            }
        }
    }
    let mut by = BTreeMap::new();
    walk(dir, dir, depth, &mut by);
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    v
}

fn part_name(prefix: u8) -> &'static str {
    match prefix {
        b'L' => "envelopes (L)",
        b'E' => "entry folds (E)",
        b'A' => "action folds (A)",
        b'V' => "evaluation folds (V)",
        b'F' => "commitment folds (F)",
        b'B' => "disclosed decisions (B)",
        b'S' => "subject index (S)",
        b's' => "subject markers (s)",
        b'R' => "receive times (R)",
        b'N' => "Merkle nodes (N)",
        b'I' => "map pages (I)",
        b'K' => "map positions (K)",
        b'U' => "map version records (U)",
        b'J' => "map roots (J)",
        b'D' => "departments (D)",
        b'H' => "heads (H)",
        b'T' => "Merkle frontiers (T)",
        b'M' => "format marker (M)",
        b'G' => "inbox marks (G)",
        b'Z' => "listing indexes (Z)",
        _ => "other",
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn engine(
    store: Store,
    manifest: &Manifest,
    metrics: Arc<Metrics>,
) -> (Arc<Core>, credfed_node::engine::EngineLinks) {
    Core::start(
        Box::new(store),
        EngineConfig {
            region: region(OWN),
            manifest: manifest.clone(),
            catalogue: Catalogue::embedded().expect("catalogue"),
            calendar: WorkingCalendar::embedded().expect("calendar"),
            node_key: node_key(OWN),
            clock: Clock::new(0),
            group_commit_max: 256,
            signed_manifest: None,
        },
        metrics,
    )
    .expect("engine")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let options = StoreOptions {
        engine: flag("--engine")
            .map(|e| e.parse::<Engine>().expect("--engine redb|sled"))
            .unwrap_or_default(),
        cache_bytes: flag("--cache-mib")
            .map(|m| m.parse::<u64>().expect("--cache-mib N") << 20)
            .unwrap_or(DEFAULT_CACHE_BYTES),
        compact: false,
    };
    // Without map versions: what the rest of the store costs alone.
    let with_map = !args.iter().any(|a| a == "--no-map");
    let temp = tempfile::tempdir().expect("temporary directory");
    let work = flag("--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(work.join("logs")).expect("work directory");
    let regions: Vec<u32> = PROVINCES
        .iter()
        .map(|p| p.code)
        .filter(|c| *c != OWN)
        .collect();
    let per_region = n.div_ceil(regions.len() as u64).max(100);
    let n = per_region * regions.len() as u64;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let now = Timestamp(now_ms - 60_000);
    let authority = Keypair::from_secret([1; 32]);
    let manifest = Manifest::for_build(
        FED,
        1,
        Timestamp(0),
        Timestamp(i64::MAX / 2),
        authority.public(),
        PROVINCES
            .iter()
            .map(|p| {
                Member::for_province(
                    region(p.code),
                    node_key(p.code).public(),
                    operator_key(p.code).public(),
                    vec![],
                )
            })
            .collect(),
    );

    // How steps 4 to 6 read the store (after a fill, or alone).
    let read_setup = |log_bytes: u64| ReadSetup {
        work: &work,
        store_dir: work.join("store"),
        options: &options,
        manifest: &manifest,
        authority: &authority,
        regions: &regions,
        per_region,
        n,
        with_map,
        https: !args.iter().any(|a| a == "--no-https"),
        workflows: !args.iter().any(|a| a == "--no-workflows"),
        envelope_len: (log_bytes / n).max(1) as usize,
    };

    // Start-up alone, on the store an earlier run left in `--dir`: what a restart costs
    // without filling the store again (at 10^7 the fill takes most of an hour).
    if args.iter().any(|a| a == "--startup-only") {
        let store_dir = work.join("store");
        assert!(
            store_dir.exists(),
            "--startup-only needs --dir with the store of an earlier run"
        );
        let t = Instant::now();
        let store = Store::open_with(&store_dir, &options).expect("store reopens");
        let opened_s = t.elapsed().as_secs_f64();
        let report = store
            .verify_chains(FED, &mut |_, _| {})
            .expect("chains verify");
        let verified_s = t.elapsed().as_secs_f64();
        let metrics = Arc::new(Metrics::default());
        let (core, links) = engine(store, &manifest, metrics);
        let startup_s = t.elapsed().as_secs_f64();
        println!(
            "start-up: {startup_s:.2} s (open {opened_s:.2} s, verify {} envelopes' chains in {} regions {:.2} s, engine start {:.2} s)",
            report.envelopes,
            report.regions,
            verified_s - opened_s,
            startup_s - verified_s
        );
        core.shutdown().expect("engine stopped");
        drop(links);
        return;
    }

    // Steps 4 to 6 alone, on the store an earlier run of the same N left in `--dir`:
    // to measure (or profile) the read paths again without filling the store.
    if args.iter().any(|a| a == "--reads-only") {
        let store_dir = work.join("store");
        assert!(
            store_dir.exists(),
            "--reads-only needs --dir with the store of an earlier run"
        );
        let log_bytes: u64 = regions
            .iter()
            .map(|c| std::fs::metadata(work.join(format!("logs/{c}"))).map_or(0, |m| m.len()))
            .sum();
        let reads = serve_reads(&read_setup(log_bytes));
        println!(
            "engine: {}, cache {} MiB; {n} records (reads only, on the store in {})",
            options.engine.name(),
            options.cache_bytes >> 20,
            work.display()
        );
        print_reads(&reads, n);
        return;
    }

    // 1. The logs, signed on every core beforehand.
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    eprintln!(
        "signing {n} envelopes ({per_region} for each of {} regions) on {cores} threads…",
        regions.len()
    );
    let t = Instant::now();
    let log_bytes: u64 = std::thread::scope(|s| {
        let chunks: Vec<Vec<u32>> = (0..cores)
            .map(|i| regions.iter().copied().skip(i).step_by(cores).collect())
            .collect();
        let work = &work;
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|mine| {
                s.spawn(move || {
                    mine.iter()
                        .map(|c| generate(*c, per_region, now, &work.join(format!("logs/{c}"))))
                        .sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signer")).sum()
    });
    eprintln!("signed in {:.1} s", t.elapsed().as_secs_f64());

    // 2. Ingest: ranges of every region in turn, a map version after each.
    let store_dir = work.join("store");
    let _ = std::fs::remove_dir_all(&store_dir);
    let metrics = Arc::new(Metrics::default());
    let (core, mut links) = engine(
        Store::open_with(&store_dir, &options).expect("store"),
        &manifest,
        metrics.clone(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut readers: Vec<(u32, BufReader<std::fs::File>, u64)> = regions
        .iter()
        .map(|c| {
            let f = std::fs::File::open(work.join(format!("logs/{c}"))).expect("log file");
            (*c, BufReader::with_capacity(1 << 20, f), 0)
        })
        .collect();
    let peer = libp2p::PeerId::random();
    let (mut ingest_s, mut map_s, mut versions) = (0.0, 0.0, 0u64);
    let mut progress = Instant::now();
    let started = Instant::now();
    runtime.block_on(async {
        loop {
            let mut any = false;
            for (code, reader, size) in readers.iter_mut() {
                let envelopes = read_range(reader, RANGE);
                if envelopes.is_empty() {
                    continue;
                }
                any = true;
                let count = envelopes.len() as u64;
                let t = Instant::now();
                let job = IngestJob::Range {
                    peer,
                    region: region(*code),
                    from: Some(*size + 1),
                    envelopes,
                };
                links.ingest.send(job).await.expect("writer running");
                loop {
                    match links.events.recv().await.expect("writer running") {
                        EngineEvent::RangeDone { forked, .. } => {
                            assert!(!forked, "{code}: range from {} refused", *size + 1);
                            break;
                        }
                        _ => continue,
                    }
                }
                ingest_s += t.elapsed().as_secs_f64();
                *size += count;
                if with_map {
                    let t = Instant::now();
                    core.map_root(region(*code), *size).expect("map computed");
                    map_s += t.elapsed().as_secs_f64();
                    versions += 1;
                }
            }
            if !any {
                break;
            }
            if progress.elapsed().as_secs() >= 10 {
                progress = Instant::now();
                let done = metrics.ingested.load(Ordering::Relaxed);
                eprintln!(
                    "  {done}/{n} records ({:.0}%), {:.0} s, {} MB on disk",
                    100.0 * done as f64 / n as f64,
                    started.elapsed().as_secs_f64(),
                    disk_usage(&store_dir) / 1_000_000
                );
            }
        }
    });
    let applied = metrics.ingested.load(Ordering::Relaxed);
    assert_eq!(applied, n, "every envelope applied");
    eprintln!(
        "ingested in {ingest_s:.1} s and {versions} map versions in {map_s:.1} s \
         (the ratios are printed at the end, against the verify rate measured then)"
    );
    let (rss_filled, peak_filled) = memory();
    let rss_filled_live = resident_without_freed_heap();
    eprintln!(
        "resident after filling: {:.0} MiB; {:.0} MiB once the heap the fill freed is given back",
        mib(rss_filled),
        mib(rss_filled_live)
    );
    let disk_before_prune = disk_usage(&store_dir);
    // What stays once superseded map versions age out (the node prunes them by itself
    // a minute after they are superseded).
    for c in &regions {
        core.prune_map_versions(region(*c), 0).expect("map pruned");
    }
    core.shutdown().expect("engine stopped");
    drop(core);
    drop(links);

    // 3. What the store holds, part by part, against its files.
    let mut store = Store::open_with(&store_dir, &options).expect("store reopens");
    let parts = store.live_bytes().expect("store walked");
    let sled_estimate = store.size_on_disk();
    let disk_uncompacted = disk_usage(&store_dir);
    let t = Instant::now();
    store.compact().expect("store compacts");
    let compact_s = t.elapsed().as_secs_f64();
    drop(store);
    let disk = disk_usage(&store_dir);

    // 4–6. Start-up, checks, workflows and HTTPS on the filled store.
    let reads = serve_reads(&read_setup(log_bytes));
    let verify_pairs = reads.verify_pairs;
    let envelope_bytes = parts.get(&b'L').map_or(log_bytes, |p| p.bytes);
    println!(
        "engine: {}, cache {} MiB",
        options.engine.name(),
        options.cache_bytes >> 20
    );
    println!(
        "scale: {n} records of {} regions ({per_region} each), envelopes {:.0} bytes each",
        regions.len(),
        log_bytes as f64 / n as f64
    );
    println!(
        "ingest: {:.0} records/s; raw verify pairs {verify_pairs:.0}/s; ingest / verify = {:.2}",
        n as f64 / ingest_s,
        n as f64 / ingest_s / verify_pairs
    );
    println!(
        "map: {versions} versions in {map_s:.1} s, {:.2} ms each, {:.1} µs per record; (ingest + map) / ingest = {:.2}",
        map_s * 1e3 / versions as f64,
        map_s * 1e6 / n as f64,
        (ingest_s + map_s) / ingest_s
    );
    println!(
        "disk: {:.1} MiB = {:.0} bytes/record = {:.2} × the envelope bytes (before pruning the map: {:.1} MiB; the engine's own figure {:.1} MiB)",
        mib(disk),
        disk as f64 / n as f64,
        disk as f64 / envelope_bytes as f64,
        mib(disk_before_prune),
        mib(sled_estimate)
    );
    println!(
        "before compaction: {:.1} MiB = {:.2} × the envelope bytes; compaction took {compact_s:.1} s",
        mib(disk_uncompacted),
        disk_uncompacted as f64 / envelope_bytes as f64
    );
    for (sub, bytes) in disk_by_directory(&store_dir, 3) {
        println!(
            "  files in {:<30} {:>10.1} MiB {:>8.1} bytes/record",
            if sub.is_empty() { "." } else { &sub },
            mib(bytes),
            bytes as f64 / n as f64
        );
    }
    let live: u64 = parts.values().map(|p| p.bytes).sum();
    println!(
        "live data: {:.0} bytes/record; file / live = {:.2}",
        live as f64 / n as f64,
        disk as f64 / live as f64
    );
    let mut by_size: Vec<_> = parts.iter().collect();
    by_size.sort_by_key(|(_, p)| std::cmp::Reverse(p.bytes));
    for (prefix, p) in by_size {
        println!(
            "  {:<26} {:>10} records {:>8.1} bytes/record",
            part_name(*prefix),
            p.records,
            p.bytes as f64 / n as f64
        );
    }
    println!(
        "memory: {:.0} MiB resident after filling (peak {:.0} MiB), {:.0} MiB after restart and {} checks",
        mib(rss_filled),
        mib(peak_filled),
        mib(reads.rss_serving),
        2 * CHECK_SAMPLES
    );
    print_reads(&reads, n);
}

/// Prints what [`serve_reads`] measured.
fn print_reads(reads: &Reads, n: u64) {
    let Reads {
        startup_s,
        listed,
        unlisted,
        proven,
        workflows,
        verify_pairs,
        https,
        rss_serving,
    } = reads;
    println!("start-up: {startup_s:.2} s (open, verify {n} envelopes' chains, engine start)");
    println!(
        "serving: {:.0} MiB resident after the checks; raw verify pairs {verify_pairs:.0}/s (what the HTTPS ratios divide by)",
        mib(*rss_serving)
    );
    println!(
        "check in process: listed p50 {:.3} ms p99 {:.3} ms; unlisted p50 {:.3} ms p99 {:.3} ms",
        percentile(listed, 0.5),
        percentile(listed, 0.99),
        percentile(unlisted, 0.5),
        percentile(unlisted, 0.99)
    );
    if let Some(p) = proven {
        println!(
            "proven answers (witnessing every head and a federation checkpoint first: {:.2} s): listed p50 {:.2} ms p99 {:.2} ms; unlisted p50 {:.2} ms p99 {:.2} ms; files up to {} bytes; one of each verified offline in {:.2} ms",
            p.setup_s,
            percentile(&p.listed_ms, 0.5),
            percentile(&p.listed_ms, 0.99),
            percentile(&p.unlisted_ms, 0.5),
            percentile(&p.unlisted_ms, 0.99),
            p.max_bytes,
            p.verify_ms
        );
    }
    if let Some(workflows) = workflows {
        println!(
            "inbox (every region's, {} reads): p50 {:.2} ms p99 {:.2} ms, up to {} tasks",
            workflows.inbox_ms.len(),
            percentile(&workflows.inbox_ms, 0.5),
            percentile(&workflows.inbox_ms, 0.99),
            workflows.max_tasks
        );
        for (what, lat) in &workflows.listings {
            println!(
                "listing, {what}: p50 {:.2} ms p99 {:.2} ms ({} pages)",
                percentile(lat, 0.5),
                percentile(lat, 0.99),
                lat.len()
            );
        }
    }
    for h in https {
        println!(
            "checks over HTTPS, {:>2} clients: {:>6.0} checks/s = {:.2} × the raw verify-pair rate; p50 {:.2} ms p99 {:.2} ms",
            h.clients,
            h.rate,
            h.rate / verify_pairs,
            h.p50_ms,
            h.p99_ms
        );
    }
}

/// Check samples timed in process, listed and unlisted each.
const CHECK_SAMPLES: u64 = 20_000;

/// What [`serve_reads`] needs: the filled store and how it was filled.
struct ReadSetup<'a> {
    work: &'a Path,
    store_dir: PathBuf,
    options: &'a StoreOptions,
    manifest: &'a Manifest,
    authority: &'a Keypair,
    regions: &'a [u32],
    per_region: u64,
    n: u64,
    with_map: bool,
    https: bool,
    workflows: bool,
    /// An envelope's average length: the payload of the raw verify-pair rate.
    envelope_len: usize,
}

/// What a filled store serves: start-up, checks, proven answers, workflows' reads,
/// HTTPS checks, and the raw verify-pair rate of the same moment.
struct Reads {
    startup_s: f64,
    listed: Vec<f64>,
    unlisted: Vec<f64>,
    proven: Option<ProvenTimes>,
    /// `None` with `--no-workflows`.
    workflows: Option<WorkflowTimes>,
    rss_serving: u64,
    verify_pairs: f64,
    https: Vec<HttpsChecks>,
}

/// Steps 4 to 6 of the bench on a filled store (also alone, `--reads-only`).
fn serve_reads(setup: &ReadSetup) -> Reads {
    // 4. Start-up as the daemon does it: open, verify every chain, start the engine.
    let t = Instant::now();
    let store = Store::open_with(&setup.store_dir, setup.options).expect("store reopens");
    let report = store
        .verify_chains(FED, &mut |_, _| {})
        .expect("chains verify");
    assert_eq!(report.envelopes, setup.n);
    let metrics = Arc::new(Metrics::default());
    let (core, links) = engine(store, setup.manifest, metrics);
    let startup_s = t.elapsed().as_secs_f64();

    // 5. Checks: listed companies (every region's first block is listed) and unlisted
    // ones (serials no region used), one at a time.
    let samples = CHECK_SAMPLES;
    let time_checks = |listed: bool| {
        let mut lat = Vec::with_capacity(samples as usize);
        for i in 0..samples {
            let key = sample_company(setup.regions, setup.per_region, i, listed);
            let t = Instant::now();
            let answer = core.check(&key, MeasureDomain::Procurement).expect("check");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(answer);
        }
        lat.sort_by(f64::total_cmp);
        lat
    };
    let listed = time_checks(true);
    let unlisted = time_checks(false);
    let proven = setup
        .with_map
        .then(|| proven_answers(&core, setup.manifest, setup.regions, setup.per_region));
    let workflows = setup
        .workflows
        .then(|| workflow_reads(&core, setup.regions));
    let (rss_serving_untrimmed, _) = memory();
    // This process filled the store before it "restarted" it: a restarted node starts
    // without the heap the fill freed, so the figure is taken without it.
    let rss_serving = resident_without_freed_heap();
    eprintln!(
        "resident after restart and checks: {:.0} MiB; {:.0} MiB before the heap the fill freed was given back",
        mib(rss_serving),
        mib(rss_serving_untrimmed)
    );

    // The limit: two strict verifications per envelope (catch-up's own cryptography).
    let key = node_key(OWN);
    let payload = vec![0x5a; setup.envelope_len];
    let sig = key.sign(Domain::EnvelopeHeader, FED, &payload);
    let public = key.public();
    let t = Instant::now();
    for _ in 0..20_000 {
        public
            .verify(Domain::EnvelopeHeader, FED, &payload, &sig, "bench")
            .expect("verifies");
    }
    let verify_pairs = 10_000.0 / t.elapsed().as_secs_f64();
    core.shutdown().expect("engine stopped");
    drop(core);
    drop(links);

    // 6. Checks over HTTPS: the daemon on the filled store, kept-alive connections.
    let https = if setup.https {
        let store = Store::open_with(&setup.store_dir, setup.options).expect("store reopens");
        https_checks(
            setup.work,
            setup.manifest,
            setup.authority,
            store,
            setup.regions,
            setup.per_region,
        )
    } else {
        Vec::new()
    };
    Reads {
        startup_s,
        listed,
        unlisted,
        proven,
        workflows,
        rss_serving,
        verify_pairs,
        https,
    }
}

/// The `i`-th company a check sample asks about: listed ones among every region's first
/// block of publications, unlisted ones at serials no region used.
fn sample_company(regions: &[u32], per_region: u64, i: u64, listed: bool) -> SubjectKey {
    let code = regions[(i as usize * 7) % regions.len()];
    let serial = if listed {
        2 + (i * 7919) % 40
    } else {
        per_region + 1_000 + i
    };
    SubjectKey::Uscc(company(code, serial))
}

/// Proven answers timed on the filled node.
/// Inbox and listing latencies, in process.
struct WorkflowTimes {
    inbox_ms: Vec<f64>,
    max_tasks: usize,
    listings: Vec<(&'static str, Vec<f64>)>,
}

/// Every region's inbox, ten times over; then first pages of 50 (reading at most the
/// API's scan budget of index keys) for listings a department asks: a region's entries
/// newest first, the same filtered to a rare state (repaired), a name search by a pair
/// of words (one name in 1,600) and by a trade (one in five), and the actions
/// targeting a region.
fn workflow_reads(core: &Core, regions: &[u32]) -> WorkflowTimes {
    use credfed_protocol::listing::{ListFilter, ListingKind, normalise_name};
    const BUDGET: usize = 5_000;
    let mut inbox_ms = Vec::new();
    let mut max_tasks = 0;
    for _ in 0..10 {
        for code in regions {
            let t = Instant::now();
            let (tasks, _) = core.inbox(region(*code), 20_000).expect("inbox");
            inbox_ms.push(t.elapsed().as_secs_f64() * 1e3);
            max_tasks = max_tasks.max(tasks.len());
        }
    }
    inbox_ms.sort_by(f64::total_cmp);
    let mut listings = Vec::new();
    let mut time = |what: &'static str, kind: ListingKind, filters: Vec<ListFilter>| {
        let mut lat = Vec::new();
        for f in &filters {
            let t = Instant::now();
            let page = core.list(kind, f, 50, None, BUDGET).expect("listing");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(page);
        }
        lat.sort_by(f64::total_cmp);
        listings.push((what, lat));
    };
    let by_region = |state: Option<&str>| -> Vec<ListFilter> {
        regions
            .iter()
            .map(|c| ListFilter {
                region: Some(region(*c)),
                state: state.map(str::to_owned),
                ..ListFilter::default()
            })
            .collect()
    };
    time(
        "a region's entries, newest first",
        ListingKind::Entry,
        by_region(None),
    );
    time(
        "a region's repaired entries",
        ListingKind::Entry,
        by_region(Some("repaired")),
    );
    time(
        "entries by a pair of words of the name",
        ListingKind::Entry,
        (0..200u64)
            .map(|i| ListFilter {
                name: Some(normalise_name(&format!(
                    "{}{}",
                    NAME_WORDS[(i * 7 % 40) as usize],
                    NAME_WORDS[(i * 13 % 40) as usize]
                ))),
                ..ListFilter::default()
            })
            .collect(),
    );
    time(
        "entries by a trade in the name",
        ListingKind::Entry,
        NAME_TRADES
            .iter()
            .map(|t| ListFilter {
                name: Some(normalise_name(t)),
                ..ListFilter::default()
            })
            .collect(),
    );
    time(
        "actions targeting a region",
        ListingKind::Action,
        regions
            .iter()
            .map(|c| ListFilter {
                target: Some(region(*c)),
                ..ListFilter::default()
            })
            .collect(),
    );
    WorkflowTimes {
        inbox_ms,
        max_tasks,
        listings,
    }
}

struct ProvenTimes {
    /// Witnessing every region's head and cosigning a federation checkpoint over them.
    setup_s: f64,
    listed_ms: Vec<f64>,
    unlisted_ms: Vec<f64>,
    max_bytes: usize,
    /// Offline verification of one listed and one unlisted answer, together.
    verify_ms: f64,
}

/// Proven answers as a node makes them under a federation checkpoint. The bench holds
/// every member's key, so it signs each region's head as that region would and cosigns
/// it and the federation checkpoint as the other members would; the node accepts them
/// through the same checks as gossiped ones. Then 1,000 listed and 1,000 unlisted
/// companies are answered with proofs, one at a time, and one of each is verified
/// offline as `credfed verify` does.
fn proven_answers(
    core: &Core,
    manifest: &Manifest,
    regions: &[u32],
    per_region: u64,
) -> ProvenTimes {
    use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin, witness_name};
    let t = Instant::now();
    let now = core.now_seconds();
    let heads = core.heads().expect("heads");
    let members: Vec<u32> = manifest.members.iter().map(|m| m.region.code()).collect();
    for &c in &members {
        let r = region(c);
        let size = heads.get(&r).map_or(0, |h| h.seq);
        let root = core.tree_root_at(r, size).expect("tree root");
        let map = core.map_root(r, size).expect("map root");
        let name = origin(FED, r);
        let mut signed = SignedCheckpoint::sign(
            Checkpoint::with_map_at(name.clone(), size, root, map, now),
            &name,
            &node_key(c),
        );
        for &w in members.iter().filter(|&&w| w != c) {
            signed.cosign(&witness_name(FED, region(w)), &node_key(w), now);
        }
        core.accept_witnessed(&signed.encode())
            .expect("a head witnessed by every other member is accepted");
    }
    let (mut fed, leaves, _) = core.propose_federation().expect("federation proposal");
    for &w in members.iter().filter(|&&w| w != OWN) {
        fed.cosign(&witness_name(FED, region(w)), &node_key(w), now);
    }
    core.set_federation(credfed_node::engine::FederationHead {
        signed: fed,
        leaves,
        witnessed_at: now,
    });
    let head = core.federation().expect("federation head set");
    let setup_s = t.elapsed().as_secs_f64();
    let mut max_bytes = 0;
    let mut kept = Vec::new();
    let mut time = |listed: bool| {
        let mut lat = Vec::with_capacity(1000);
        for i in 0..1000u64 {
            let key = sample_company(regions, per_region, i, listed);
            let t = Instant::now();
            let answer = core
                .prove(&key, MeasureDomain::Procurement, &head, false)
                .expect("proven answer");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let file = answer.to_file();
            max_bytes = max_bytes.max(file.len());
            if i == 0 {
                kept.push(answer);
            }
        }
        lat.sort_by(f64::total_cmp);
        lat
    };
    let listed_ms = time(true);
    let unlisted_ms = time(false);
    let catalogue = Catalogue::embedded().expect("catalogue");
    let t = Instant::now();
    for answer in &kept {
        let report = credfed_protocol::federation::verify_proven_answer(
            answer, manifest, &catalogue, now, 3600,
        );
        assert!(
            report.ok(),
            "a proven answer verifies offline: {:?}",
            report.failures
        );
    }
    let verify_ms = t.elapsed().as_secs_f64() * 1e3;
    ProvenTimes {
        setup_s,
        listed_ms,
        unlisted_ms,
        max_bytes,
        verify_ms,
    }
}

/// Checks per second and latency over HTTPS with one number of clients.
struct HttpsChecks {
    clients: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Starts the node daemon (its own data directory: keys, certificates, the bench's
/// manifest) on the filled store and measures `GET /v1/check` — listed and unlisted
/// companies in turn — from 1, 4, 16 and 64 clients, each on its own kept-alive
/// connection, for 3 seconds each (`CREDFED_BENCH_HTTPS_SECONDS`). The clients run in this process, on the same
/// two cores as the node: the rate is the node's and its load's together.
fn https_checks(
    work: &Path,
    manifest: &Manifest,
    authority: &Keypair,
    store: Store,
    regions: &[u32],
    per_region: u64,
) -> Vec<HttpsChecks> {
    use credfed_node::config::{InitOptions, init_data_dir};
    // Seconds per client count; a profile wants longer (CREDFED_BENCH_HTTPS_SECONDS).
    let https_seconds: f64 = std::env::var("CREDFED_BENCH_HTTPS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let dir = work.join("node");
    let _ = std::fs::remove_dir_all(&dir);
    let report = init_data_dir(&InitOptions {
        region: region(OWN),
        dir: dir.clone(),
        authority_key: authority.public().to_hex(),
        node_key: Some(node_key(OWN)),
        operator_key: Some(operator_key(OWN).public()),
        person_share_text: None,
        p2p_port: free_port(),
        api_port: free_port(),
        public_port: None,
        listen_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    })
    .expect("data directory");
    std::fs::write(
        report.dir.join("manifest.json"),
        serde_json::to_string(&manifest.sign(authority).expect("sign")).expect("json"),
    )
    .expect("manifest");
    let mut cfg = report.config;
    cfg.solo = true;
    // 64 clients and this bench share one address and one operator certificate.
    cfg.api_max_connections_per_client = 256;
    cfg.api_max_connections_per_certificate = 256;
    cfg.save(&report.dir.join("config.toml")).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let node = credfed_node::daemon::start_with(&cfg, Some(Box::new(store)))
            .await
            .expect("node starts");
        let op = report.dir.join("operator");
        let client = credfed_client::ApiClient::with_identity(
            &node.api_addr.to_string(),
            &report.dir.join("api-ca.pem"),
            &op.join(format!("{OWN}-operator.pem")),
            &op.join(format!("{OWN}-operator.key")),
        )
        .expect("client");
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while client.status().await.is_err() {
            assert!(Instant::now() < deadline, "the node never answered");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let paths: Arc<Vec<String>> = Arc::new(
            (0..1000u64)
                .map(|i| {
                    let code = regions[(i as usize * 7) % regions.len()];
                    let serial = if i % 2 == 0 {
                        2 + (i * 7919) % 40
                    } else {
                        per_region + 1_000 + i
                    };
                    format!(
                        "/v1/check?uscc={}&domain=procurement",
                        company(code, serial)
                    )
                })
                .collect(),
        );
        // Every path answers 200 before anything is timed.
        for p in paths.iter().take(20) {
            assert_eq!(client.get(p).await.expect("check").status, 200, "{p}");
        }
        let mut out = Vec::new();
        for clients in [1usize, 4, 16, 64] {
            let pool = client.clone().with_max_connections(clients);
            let stop = Instant::now() + std::time::Duration::from_secs_f64(https_seconds);
            let started = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|c| {
                    let (pool, paths) = (pool.clone(), paths.clone());
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut i = c * 13;
                        while Instant::now() < stop {
                            let t = Instant::now();
                            let r = pool.get(&paths[i % paths.len()]).await.expect("check");
                            assert_eq!(r.status, 200);
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                            i += 1;
                        }
                        lat
                    })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await.expect("client"));
            }
            let seconds = started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            out.push(HttpsChecks {
                clients,
                rate: lat.len() as f64 / seconds,
                p50_ms: percentile(&lat, 0.5),
                p99_ms: percentile(&lat, 0.99),
            });
        }
        node.stop().await.expect("node stops");
        out
    })
}

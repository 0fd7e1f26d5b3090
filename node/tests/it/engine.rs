//! The engine's promises about its own faults and about load: a disk error is never
//! blamed on a peer, nothing is acknowledged that was not made durable, a slow disk does
//! not silence the network, and a burst of concurrent writers is answered in time.
//! Faulty nodes run inside the test process over a store that fails on demand.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use credfed_client::SubmitRecord;
use credfed_protocol::ids::DepartmentId;
use credfed_protocol::record::*;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

/// A store failure while applying records from a peer is ours: the peer's messages
/// are not reported invalid, no fork probe starts, the failures are counted in their
/// own metric, and the records arrive once the disk works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_during_ingest_blames_no_peer() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start(0);
    let (gd, faults) = c.start_faulty(1).await;
    c.wait_writable(0).await;
    c.wait_writable(1).await;
    c.register_departments(0).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            c.head(1, SH).await == 4
        })
        .await
    );
    let m = gd.core.metrics();
    for (phase, switch) in [
        ("writes", &faults.fail_writes),
        ("reads", &faults.fail_reads),
    ] {
        let errors_before = m.ingest_store_errors.load(Ordering::SeqCst);
        switch.store(true, Ordering::SeqCst);
        for n in 0..3 {
            let r = c
                .submit(
                    0,
                    "310000:pub",
                    &Body::ListEntryPublished(wage_arrears_entry(&format!("{phase}-{n}"))),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
        }
        // Gossip and several rounds of pull (heads every 500 ms) meet the failing disk.
        assert!(
            wait_until(Duration::from_secs(20), || async {
                m.ingest_store_errors.load(Ordering::SeqCst) >= errors_before + 3
            })
            .await,
            "{phase}: the failures were not counted"
        );
        // Nothing may be blamed for a while: the absence of an event is what is tested,
        // so this observes a window rather than waiting on a condition.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut look = tokio::time::interval(Duration::from_millis(100));
        while Instant::now() < deadline {
            look.tick().await;
            assert_eq!(
                m.gossip_rejected.load(Ordering::SeqCst),
                0,
                "{phase}: a peer was blamed"
            );
            assert_eq!(
                m.fork_probes.load(Ordering::SeqCst),
                0,
                "{phase}: a fork probe started"
            );
            assert!(
                m.rejected.lock().unwrap().is_empty(),
                "{phase}: a valid record was counted as rejected"
            );
        }
        switch.store(false, Ordering::SeqCst);
        let want = c.head(0, SH).await;
        assert!(
            wait_until(Duration::from_secs(30), || async {
                c.head(1, SH).await == want
            })
            .await,
            "{phase}: the records never arrived once the disk worked"
        );
    }
    gd.stop().await.unwrap();
}

/// A store failure during an append answers 503 and acknowledges nothing; a failed
/// write or fsync pauses writes (the disk cannot be trusted) and says why in the status,
/// and once the disk works again the node reopens its store and writes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_during_append_is_503_and_nothing_acknowledged() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start(0);
    let (gd, faults) = c.start_faulty(1).await;
    c.wait_writable(0).await;
    c.wait_writable(1).await;
    c.register_departments(1).await;
    let m = gd.core.metrics();
    let head = c.head(1, GD).await;
    let acknowledged = m.appends.load(Ordering::SeqCst);

    faults.fail_writes.store(true, Ordering::SeqCst);
    let r = c
        .submit(
            1,
            "440000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("gd-1")),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error().code, "cannot_persist");
    assert_eq!(c.head(1, GD).await, head, "nothing applied");
    assert_eq!(m.appends.load(Ordering::SeqCst), acknowledged);
    // Writes stay closed, saying why and since when, until the disk takes writes again;
    // then the node reopens its store by itself.
    let status = c.status(1).await.unwrap();
    assert_eq!(status["writes_open"], false, "{status}");
    let why = status["writes_paused_reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("cannot persist writes since") && why.contains("retries by itself"),
        "{status}"
    );
    assert!(m.store_failing_since_ms.load(Ordering::SeqCst) > 0);
    faults.fail_writes.store(false, Ordering::SeqCst);
    c.wait_writable(1).await;
    assert_eq!(m.store_failing_since_ms.load(Ordering::SeqCst), 0);
    assert_eq!(c.metric(1, "credfed_store_recoveries_total").await, 1);

    faults.fail_sync.store(true, Ordering::SeqCst);
    let r = c
        .submit(
            1,
            "440000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("gd-2")),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("not acknowledged"), "{}", r.body);
    assert_eq!(
        m.appends.load(Ordering::SeqCst),
        acknowledged,
        "nothing acknowledged"
    );
    let r = c
        .submit(
            1,
            "440000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("gd-3")),
        )
        .await;
    assert_eq!(
        (r.status, r.error().code.as_str()),
        (503, "writes_paused"),
        "{}",
        r.body
    );
    let status = c.status(1).await.unwrap();
    assert_eq!(status["writes_open"], false);
    assert!(
        status["writes_paused_reason"]
            .as_str()
            .unwrap()
            .contains("cannot persist writes since"),
        "{status}"
    );
    faults.fail_sync.store(false, Ordering::SeqCst);
    // Recovered by itself: the next write is acknowledged, without a restart.
    c.wait_writable(1).await;
    let r = c
        .submit(
            1,
            "440000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("gd-4")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gd.stop().await.unwrap();
}

/// A node whose disk takes seconds to sync keeps answering pings and gossip: its peer
/// does not drop it for silence, and records from the peer are applied while its own
/// write waits for the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_disk_keeps_the_node_answering_pings_and_gossip() {
    let mut c = Cluster::new(&[SH, GD]);
    for i in 0..2 {
        let mut cfg = c.config(i);
        cfg.liveness_timeout_ms = 2000;
        c.save_config(i, &cfg);
    }
    c.start(0);
    let (gd, faults) = c.start_faulty(1).await;
    c.wait_writable(0).await;
    c.wait_writable(1).await;
    c.register_departments(0).await;
    c.register_departments(1).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            c.head(1, SH).await == 4
        })
        .await
    );

    // Six seconds per sync: three liveness timeouts.
    faults.sync_delay_ms.store(6000, Ordering::SeqCst);
    let writer = {
        let client = c.nodes[1]
            .client
            .clone()
            .with_timeout(Duration::from_secs(30));
        let author = DepartmentId::parse("440000:pub", "author").unwrap();
        let record = SubmitRecord::sign(
            FED,
            &author,
            &key("dept-440000:pub"),
            &Body::ListEntryPublished(wage_arrears_entry("slow")),
        );
        tokio::spawn(async move { client.submit(&record).await })
    };
    let started = Instant::now();
    let r = c
        .submit(
            0,
            "310000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("while-slow")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut gossip_applied = false;
    // The node must stay responsive throughout the slow write: observe it for 5 s.
    let mut look = tokio::time::interval(Duration::from_millis(250));
    while started.elapsed() < Duration::from_millis(5000) {
        look.tick().await;
        let t = Instant::now();
        let s = c.status(1).await.expect("the slow node answers its API");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "status took {:?}",
            t.elapsed()
        );
        assert_eq!(s["peers_connected"], 1, "the slow node lost its peer: {s}");
        let peer = c.status(0).await.unwrap();
        assert_eq!(
            peer["peers_connected"], 1,
            "the peer dropped the slow node: {peer}"
        );
        gossip_applied |= c.head(1, SH).await == 5;
    }
    assert!(
        !writer.is_finished(),
        "the slow write should still wait for its fsync"
    );
    assert!(
        gossip_applied,
        "a record from the peer was not applied while the disk was slow"
    );
    let receipt = writer.await.unwrap().expect("acknowledged once synced");
    assert_eq!(receipt.seq, 5);
    assert!(started.elapsed() >= Duration::from_secs(5));
    faults.sync_delay_ms.store(0, Ordering::SeqCst);
    gd.stop().await.unwrap();
}

/// 256 writers at once against one node: every write is acknowledged within its
/// deadline, and group commit made several durable per fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_all_answered_within_their_deadline() {
    let _exclusive = crate::harness::EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    c.register_departments(0).await;
    let client = c.nodes[0]
        .client
        .clone()
        // Below the node's limit of connections per client address, with room for the
        // harness's own client.
        .with_max_connections(48)
        .with_timeout(Duration::from_secs(30));
    let author = DepartmentId::parse("310000:pub", "author").unwrap();
    let signer = key("dept-310000:pub");
    let metric = |name: &'static str| {
        let c = &c;
        async move { c.metric(0, name).await }
    };
    let (appends, fsyncs) = (
        metric("credfed_appends_total").await,
        metric("credfed_fsyncs_total").await,
    );
    let writers: Vec<_> = (0..256)
        .map(|n| {
            let record = SubmitRecord::sign(
                FED,
                &author,
                &signer,
                &Body::ListEntryPublished(wage_arrears_entry(&format!("w-{n}"))),
            );
            let client = client.clone();
            tokio::spawn(async move { client.submit(&record).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            Ok(receipt) => seqs.push(receipt.seq),
            Err(e) => panic!("a writer got no acknowledgement: {e}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (5..=260).collect::<Vec<u64>>(),
        "one position per write, no gaps"
    );
    let appended = metric("credfed_appends_total").await - appends;
    let synced = metric("credfed_fsyncs_total").await - fsyncs;
    assert_eq!(appended, 256);
    assert!(
        synced < 256 / 2,
        "group commit: {appended} appends took {synced} fsyncs"
    );
}

/// A witness refuses a checkpoint whose log root its replica reproduces but whose map
/// root it does not — for a region's checkpoint and for a leaf of a federation
/// checkpoint — and cosigns the same checkpoint with the map root its replica gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_refuses_a_wrong_map_root() {
    use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin, witness_name};
    use credfed_protocol::crypto::Hash256;
    use credfed_protocol::ids::RegionCode;
    use credfed_protocol::witness::CosignRefusal;
    let mut c = Cluster::new(&[SH, GD]);
    c.start(0);
    let (gd, _faults) = c.start_faulty(1).await;
    c.wait_writable(0).await;
    c.wait_writable(1).await;
    c.register_departments(0).await;
    let r = c
        .submit(
            0,
            "310000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("map-1")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let size = c.head(0, SH).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            c.head(1, SH).await == size
        })
        .await
    );
    let sh = RegionCode::new(SH, "r").unwrap();
    let core = gd.core.clone();
    let root = core.tree_root_at(sh, size).unwrap();
    let name = origin(FED, sh);
    let now = core.now_seconds();
    let signed = |map: Hash256| {
        SignedCheckpoint::sign(
            Checkpoint::with_map_at(name.clone(), size, root, map, now),
            &name,
            &c.nodes[0].node_key,
        )
        .encode()
    };
    let wrong = signed(Hash256([7; 32]));
    let refused = tokio::task::block_in_place(|| core.witness(&wrong));
    assert!(
        matches!(refused, Err(CosignRefusal::WrongMap { size: s, .. }) if s == size),
        "{refused:?}"
    );
    let right = signed(tokio::task::block_in_place(|| core.map_root(sh, size)).unwrap());
    let cosigned = tokio::task::block_in_place(|| core.witness(&right));
    assert!(cosigned.is_ok(), "{cosigned:?}");
    // A federation checkpoint whose Shanghai leaf carries a wrong map root, once this
    // node holds a witnessed head of every region.
    let leaves_now = || {
        c.manifest
            .members
            .iter()
            .map(|m| tokio::task::block_in_place(|| core.federation_leaf(m.region, &[])))
            .collect::<Result<Vec<Checkpoint>, _>>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || async {
            leaves_now().is_ok_and(|l| l.iter().any(|x| x.origin == name && x.size == size))
        })
        .await,
        "{:?}",
        leaves_now()
    );
    let mut leaves = leaves_now().unwrap();
    let at = c
        .manifest
        .members
        .iter()
        .position(|m| m.region == sh)
        .unwrap();
    // Signed no later than the witnessed head held, so that it is judged against the
    // replica rather than awaited as a newer witnessed head.
    let held_time = leaves[at].time().unwrap();
    leaves[at] = Checkpoint::with_map_at(name.clone(), size, root, Hash256([7; 32]), held_time);
    let mut note = SignedCheckpoint {
        checkpoint: credfed_protocol::federation::federation_checkpoint(&c.manifest, &leaves),
        signatures: vec![],
    };
    note.cosign(
        &witness_name(FED, sh),
        &c.nodes[0].node_key,
        core.now_seconds(),
    );
    let bodies: Vec<String> = leaves.iter().map(Checkpoint::body).collect();
    let refused =
        tokio::task::block_in_place(|| core.witness_federation(&note.encode(), &bodies, &[]));
    assert!(
        matches!(refused, Err(CosignRefusal::WrongMap { .. })),
        "{refused:?}"
    );
}

/// A small file system mounted over a node's store for one test (tmpfs: the test
/// runs as root, as CI does), unmounted when dropped.
struct SmallDisk {
    at: std::path::PathBuf,
}

impl SmallDisk {
    /// `None` (and says so) when the test does not run as root: it cannot mount then.
    fn mount(at: &std::path::Path, mib: u64) -> Option<SmallDisk> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIPPED: mounting a small file system needs root (CI runs the tests as root)"
            );
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mounting a {mib} MiB tmpfs at {} failed: this test needs root (CI runs as root)",
            at.display()
        );
        Some(SmallDisk {
            at: at.to_path_buf(),
        })
    }

    /// Fills the file system until at most `leave` bytes are free; returns the filler.
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.at.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// A disk that fills while the node copies other regions' records stops its writes and
/// its replication with a clear reason (writes_open false, the metrics say so), and once
/// space is freed the node reopens its store and catches up by itself — the same
/// process, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_during_replication_recovers_without_a_restart() {
    disk_filled_during_replication("sled").await;
}

/// The same on the LSM engine: its journal write fails where sled's log did, and the
/// store reopened once space is back replays the journal's synced part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_during_replication_recovers_on_fjall() {
    disk_filled_during_replication("fjall").await;
}

async fn disk_filled_during_replication(engine: &str) {
    let mut c = Cluster::new(&[SH, GD]);
    let mut cfg = c.config(1);
    cfg.store_engine = engine.into();
    c.save_config(1, &cfg);
    let Some(disk) = SmallDisk::mount(&c.nodes[1].dir.join("store"), 48) else {
        return;
    };
    c.start_all().await;
    c.register_departments(0).await;
    let filler = disk.fill(1 << 20);
    let mut written = 0;
    // Records until the replica's disk is full (a few MiB of sled at most).
    for n in 0..3000 {
        let r = c
            .submit(
                0,
                "310000:pub",
                &Body::ListEntryPublished(wage_arrears_entry(&format!("fill-{n}"))),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        written += 1;
        if n % 50 == 49 && c.metric(1, "credfed_store_failures_total").await > 0 {
            break;
        }
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            c.metric(1, "credfed_store_failures_total").await > 0
        })
        .await,
        "the replica's disk never filled after {written} records; log:\n{}",
        c.log(1)
    );
    let status = c.status(1).await.unwrap();
    assert_eq!(status["writes_open"], false, "{status}");
    assert!(
        status["writes_paused_reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot persist writes since")),
        "{status}"
    );
    let sh_head = c.head(0, SH).await;
    let stopped_at = c.head(1, SH).await;
    eprintln!("{engine}: written {written}, head {sh_head}, the replica stopped at {stopped_at}");
    assert!(stopped_at < sh_head, "the replica stopped short");
    // Reads go on while the disk is full.
    assert!(c.status(1).await.is_some());

    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(90), || async {
            c.head(1, SH).await == sh_head
        })
        .await,
        "the replica never caught up after space was freed; log:\n{}",
        c.log(1)
    );
    c.wait_writable(1).await;
    assert!(c.metric(1, "credfed_store_recoveries_total").await >= 1);
    assert!(
        c.nodes[1]
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "the node process is the one started before the disk filled"
    );
    c.register_departments(1).await;
    let r = c
        .submit(
            1,
            "440000:pub",
            &Body::ListEntryPublished(wage_arrears_entry("gd-after")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    c.stop(0);
    c.stop(1);
    drop(disk);
}

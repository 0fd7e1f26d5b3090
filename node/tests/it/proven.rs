//! Proven answers against real node processes attacked the way an outsider would:
//! a member that runs two copies of its node, one on each side of a partition, to fork
//! its log; a quiet fork at the tip after the partition heals; a region cut off from
//! its witnesses for longer than a verifier's freshness bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::check::Verdict;
use credfed_protocol::federation::{ProofReport, ProvenAnswer, verify_proven_answer};
use credfed_protocol::ids::RegionCode;
use credfed_protocol::record::*;
use credfed_protocol::time::Date;
use serde_json::json;

use crate::harness::*;

const BJ: u32 = 110000;
const TJ: u32 = 120000;
const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;
const SC: u32 = 510000;

/// The company the forking region lists on one side of the partition.
const LISTED_ON_ONE_SIDE: &str = "91350100M000100Y43";
/// The company its twin lists at the same position on the other side.
const LISTED_ON_THE_OTHER: &str = "91110000100000000R";

fn black_entry(uscc: &str, doc: &str) -> ListEntry {
    let d = |s: &str| Date::parse(s).unwrap();
    ListEntry {
        category: Category::Black(BlackCategory::FoodAndDrug),
        subject: Subject::Organisation {
            uscc: uscc.into(),
            name: "某某食品有限公司".into(),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: Basis {
            document_no: doc.into(),
            authority: "广东省市场监督管理局".into(),
            decided_on: d("2026-01-05"),
            legal_basis: "《食品安全法》第一百三十五条".into(),
        },
        effective_from: d("2026-01-05"),
        expires_on: d("2029-01-05"),
        requested_measures: vec![MeasureCode("P-PROCUREMENT".into())],
        findings: vec![],
        summary: "生产经营致病性微生物超标食品".into(),
    }
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A proven answer for a company at a node, if it gives one now.
async fn proven(n: &Node, uscc: &str) -> Option<ProvenAnswer> {
    let r = n
        .client
        .post(
            "/v1/check",
            &json!({"uscc": uscc, "domain": "procurement", "proofs": true}),
        )
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    serde_json::from_str(&r.body).ok()
}

fn verify(c: &Cluster, p: &ProvenAnswer, max_age: u64) -> ProofReport {
    verify_proven_answer(
        p,
        &c.manifest,
        &Catalogue::parse(&c.manifest.catalogue).unwrap(),
        now_seconds(),
        max_age,
    )
}

async fn partition(n: &Node, blocked: &[u32]) {
    let r = n
        .client
        .post(
            "/v1/admin/partition",
            &json!({"blocked": blocked.iter().map(|c| c.to_string()).collect::<Vec<_>>()}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn flags(n: &Node, region: u32) -> bool {
    n.client
        .get_json::<serde_json::Value>("/v1/status")
        .await
        .ok()
        .and_then(|s| s["equivocating_regions"].as_array().cloned())
        .is_some_and(|a| a.iter().any(|r| r == &json!(region.to_string())))
}

/// The partition-and-fork attack: five members (tolerating one fault), the four honest
/// ones split 2 | 2, and Guangdong running one copy of its node on each side, each
/// writing a different record at the same position. Neither side can get the forked
/// head witnessed (3 of the 4 others needed) nor a federation checkpoint (4 of 5), so
/// no two proven answers that contradict each other verify — every answer that does
/// verify says the same about both companies. After the partition heals, the fork sits
/// quietly at the tip of both copies (nobody writes): every honest node still flags
/// Guangdong within five seconds, and proven answers then exclude it with the proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forking_member_on_both_sides_of_a_partition_gets_no_contradicting_answers() {
    let _exclusive = EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[BJ, TJ, SH, GD, GS]);
    assert_eq!(c.manifest.policy.faults_tolerated, 1);
    for i in 0..5 {
        let mut cfg = c.config(i);
        cfg.drill_faults = true;
        c.save_config(i, &cfg);
    }
    c.start_all().await;
    c.register_departments(3).await;
    // Before the fork: proven answers verify, both companies clear.
    let before = wait_until(Duration::from_secs(30), || async {
        match proven(&c.nodes[2], LISTED_ON_ONE_SIDE).await {
            Some(p) => verify(&c, &p, 60).ok(),
            None => false,
        }
    })
    .await;
    assert!(before, "no verified proven answer before the attack");
    // Guangdong's twin, from a copy of its store; the honest members split 2 | 2.
    let mut twin = c.twin(3);
    c.wait_writable(3).await;
    let side_one = [2usize, 4]; // Shanghai, Gansu, with Guangdong's first copy
    let side_two = [0usize, 1]; // Beijing, Tianjin, with the twin
    for i in side_one {
        partition(&c.nodes[i], &[BJ, TJ]).await;
    }
    partition(&c.nodes[3], &[BJ, TJ]).await;
    for i in side_two {
        partition(&c.nodes[i], &[SH, GS]).await;
    }
    // The twin starts cut off from side one: it sees only Beijing and Tianjin.
    {
        let mut cfg =
            credfed_node::config::NodeConfig::load(&twin.dir.join("config.toml")).unwrap();
        cfg.drill_faults = true;
        cfg.save(&twin.dir.join("config.toml")).unwrap();
    }
    start_node(&mut twin);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            twin.client
                .get("/v1/status")
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await
    );
    partition(&twin, &[SH, GS]).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            twin.client
                .get_json::<serde_json::Value>("/v1/status")
                .await
                .is_ok_and(|s| s["writes_open"] == json!(true))
        })
        .await,
        "the twin never opened for writes"
    );
    // The fork: one record at the same position on each side.
    let r = c
        .submit(
            3,
            "440000:pub",
            &Body::ListEntryPublished(black_entry(LISTED_ON_ONE_SIDE, "粤市监〔2026〕1号")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let seq_one: u64 = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let (bytes, sig) = credfed_protocol::envelope::sign_body(
        FED,
        &key("dept-440000:pub"),
        &Body::ListEntryPublished(black_entry(LISTED_ON_THE_OTHER, "粤市监〔2026〕2号")),
    );
    let r = twin
        .client
        .post(
            "/v1/records",
            &json!({"author": "440000:pub", "body": hex::encode(bytes), "signature": sig.to_hex()}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let seq_two = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(seq_one, seq_two, "both copies wrote at the same position");
    // Ask every node on both sides, repeatedly, for proven answers about both
    // companies; verify each offline. Contradicting verdicts must never both verify.
    let everyone: Vec<&Node> = c.nodes.iter().chain(std::iter::once(&twin)).collect();
    let mut verified: BTreeMap<&str, BTreeMap<&'static str, usize>> = BTreeMap::new();
    let mut asked = 0;
    let end = Instant::now() + Duration::from_secs(15);
    let mut every = tokio::time::interval(Duration::from_millis(500));
    while Instant::now() < end {
        every.tick().await;
        for n in &everyone {
            for uscc in [LISTED_ON_ONE_SIDE, LISTED_ON_THE_OTHER] {
                asked += 1;
                if let Some(p) = proven(n, uscc).await {
                    let r = verify(&c, &p, 3600);
                    if r.verified() {
                        *verified
                            .entry(uscc)
                            .or_default()
                            .entry(credfed_protocol::check::verdict_name(r.verdict.unwrap()))
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    eprintln!("during the split: {asked} proven answers asked for, verified: {verified:?}");
    for (uscc, verdicts) in &verified {
        assert!(
            verdicts.len() <= 1,
            "{uscc}: contradicting proven answers both verified during the split: {verdicts:?}"
        );
        assert!(
            !verdicts.contains_key(credfed_protocol::check::verdict_name(
                Verdict::MeasuresApply
            )),
            "{uscc}: a listing no quorum witnessed was proven: {verdicts:?}"
        );
    }
    // Heal: the twin goes; the fork stays at the tip of both copies, and nobody writes.
    stop_node(&mut twin, true);
    let healed = Instant::now();
    for i in 0..5 {
        partition(&c.nodes[i], &[]).await;
    }
    let honest = [0usize, 1, 2, 4];
    let mut took = Duration::ZERO;
    for i in honest {
        let ok = wait_until(Duration::from_secs(30), || async {
            flags(&c.nodes[i], GD).await
        })
        .await;
        assert!(ok, "node {i} never flagged Guangdong; log:\n{}", c.log(i));
        took = took.max(healed.elapsed());
    }
    eprintln!("quiet tip fork flagged by every honest node {took:?} after the heal");
    assert!(
        took <= Duration::from_secs(5),
        "the quiet fork was flagged everywhere only {took:?} after the links healed (goal 5 s)"
    );
    // Proven answers now exclude Guangdong, with the proof: verified, but partial.
    let end = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(300));
    let report = loop {
        poll.tick().await;
        if let Some(p) = proven(&c.nodes[0], LISTED_ON_ONE_SIDE).await {
            let r = verify(&c, &p, 60);
            if r.verified() || Instant::now() > end {
                break r;
            }
        }
        assert!(Instant::now() < end, "no proven answer after the heal");
    };
    assert!(
        report.verified(),
        "{:?} {:?}",
        report.failures,
        report.answer.failures
    );
    assert_eq!(
        report.partial_regions(),
        vec![RegionCode::new(GD, "r").unwrap()]
    );
    assert!(!report.ok());
}

/// A region cut off from every other member cannot get its head witnessed again: its
/// last witnessed head grows old in every proven answer, and a verifier whose bound is
/// shorter than the cut finds it stale — the answer verifies only as partial, naming
/// the region and its age — while the other regions stay fresh (idle, their heads are
/// witnessed again every ten seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_cut_off_longer_than_the_bound_is_stale_in_every_answer() {
    let _exclusive = EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[SH, GD, SC, GS]);
    for i in 0..4 {
        let mut cfg = c.config(i);
        cfg.drill_faults = true;
        c.save_config(i, &cfg);
    }
    c.start_all().await;
    let fresh = wait_until(Duration::from_secs(30), || async {
        match proven(&c.nodes[0], LISTED_ON_ONE_SIDE).await {
            Some(p) => verify(&c, &p, 30).ok(),
            None => false,
        }
    })
    .await;
    assert!(fresh, "no fresh proven answer before the cut");
    for i in 0..3 {
        partition(&c.nodes[i], &[GS]).await;
    }
    partition(&c.nodes[3], &[SH, GD, SC]).await;
    let cut = Instant::now();
    const BOUND: u64 = 25;
    // Wait past the bound (and past Gansu's last refresh), asking as we go.
    let mut last = None;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    while cut.elapsed() < Duration::from_secs(BOUND + 12) {
        every.tick().await;
        if let Some(p) = proven(&c.nodes[0], LISTED_ON_ONE_SIDE).await {
            last = Some(p);
        }
    }
    let p = last.expect("the three connected members kept giving proven answers");
    let r = verify(&c, &p, BOUND);
    assert!(r.verified(), "{:?} {:?}", r.failures, r.answer.failures);
    assert_eq!(r.partial_regions(), vec![RegionCode::new(GS, "r").unwrap()]);
    let gs = r.regions.iter().find(|x| x.region.code() == GS).unwrap();
    assert!(gs.stale && gs.age_seconds.unwrap() > BOUND, "{gs:?}");
    for x in r.regions.iter().filter(|x| x.region.code() != GS) {
        assert!(!x.stale, "{x:?}");
    }
    // The same answer within a bound longer than the cut is complete.
    assert!(verify(&c, &p, 600).ok());
}

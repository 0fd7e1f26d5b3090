//! Drills on a small federation of real node processes (the default test command runs
//! these; the 31-region drill is `credfed-testnet drill`, see README).

use credfed_testnet::fed::NetworkChoice;
use credfed_testnet::{ChaosRun, DrillRun, run_drill, scenario};

const REGIONS: &str = "110000,310000,440000,620000";

/// Link faults for the tests that need real ones: network namespaces and nftables, which
/// `scripts/setup` installs as root (the README's test command runs it). Without root the
/// test is skipped and says why; as root, missing tools are a failure (run the setup).
/// `CREDFED_TESTNET_NETWORK=in-node` runs these drills in the nodes' fault mode instead.
fn real_links(test: &str) -> Option<NetworkChoice> {
    if let Ok(v) = std::env::var("CREDFED_TESTNET_NETWORK") {
        return Some(
            v.parse()
                .expect("CREDFED_TESTNET_NETWORK: auto, netns or in-node"),
        );
    }
    match credfed_testnet::netns::unavailable_reason() {
        Some(why) if !credfed_testnet::netns::is_root() => {
            eprintln!(
                "SKIPPED {test}: {why}. Run `scripts/setup` and the tests as root for real link faults, or set CREDFED_TESTNET_NETWORK=in-node to run it in the in-node fault mode."
            );
            None
        }
        Some(why) => {
            panic!("{test}: {why}; run `scripts/setup` first (the README's test command does)")
        }
        None => Some(NetworkChoice::Netns),
    }
}

async fn drill(
    name: &str,
    base_port: u16,
    network: NetworkChoice,
) -> credfed_testnet::report::Report {
    let text = scenario::SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1;
    drill_text(name, text, REGIONS, base_port, network, None).await
}

async fn drill_text(
    name: &str,
    text: &str,
    regions: &str,
    base_port: u16,
    network: NetworkChoice,
    keep: Option<std::path::PathBuf>,
) -> credfed_testnet::report::Report {
    let sc = scenario::parse(text).unwrap();
    let report_dir =
        std::env::temp_dir().join(format!("credfed-it-report-{name}-{}", std::process::id()));
    let run = DrillRun {
        regions: regions.into(),
        dir: keep,
        report_dir: report_dir.clone(),
        base_port,
        network,
        store_engine: None,
    };
    let report = run_drill(&sc, &run)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(
        report.passed(),
        "{name}: {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_eq!(report.invariants.len(), 9);
    // The files a drill organiser reads.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    for field in [
        "regions",
        "steps",
        "invariants",
        "propagation_ms",
        "convergence_ms",
        "acknowledgement_ms",
        "messages",
        "bytes",
    ] {
        assert!(json.get(field).is_some(), "report.json lacks {field}");
    }
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("PASSED"));
    let _ = std::fs::remove_dir_all(report_dir);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_joint_punishment() {
    let kept = std::env::temp_dir().join(format!("credfed-it-fed-01-{}", std::process::id()));
    let text = scenario::SHIPPED
        .iter()
        .find(|(n, _)| *n == "01-joint-punishment")
        .unwrap()
        .1;
    let r = drill_text(
        "01-joint-punishment",
        text,
        REGIONS,
        27000,
        NetworkChoice::Auto,
        Some(kept.clone()),
    )
    .await;
    // The persons the scenario names and checks by number: no file the federation left
    // (stores, node logs, audit logs, configs) holds a clear number, there is no shared
    // person secret, and every node holds its own person-key share (docs/privacy.md).
    let mut files = Vec::new();
    let mut stack = vec![kept.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        assert_ne!(f.file_name().unwrap(), "person.secret", "{}", f.display());
        let bytes = std::fs::read(f).unwrap();
        for number in [
            "11010519491231002X",
            "11010519491231002x",
            "440524188001010014",
        ] {
            assert!(
                !bytes.windows(number.len()).any(|w| w == number.as_bytes()),
                "{} holds {number}",
                f.display()
            );
        }
    }
    for region in REGIONS.split(',') {
        assert!(
            kept.join(region).join("person-share.key").exists(),
            "{region}"
        );
    }
    let _ = std::fs::remove_dir_all(&kept);
    assert!(r.propagation_ms.n >= 2);
    // Three target regions acknowledged.
    assert_eq!(r.acknowledgement_ms.len(), 3);
    // Every node shows every target's acknowledgement and execution report.
    let lines = r.steps.iter().find(|s| s.action == "AssertAction").unwrap();
    assert_eq!(
        lines.detail,
        "3 target lines accepted, P-PROCUREMENT executed at 4 nodes"
    );
    assert!(
        r.steps
            .iter()
            .any(|s| s.action == "AssertInvariants" && s.ok)
    );
    assert!(r.messages > 0 && r.bytes > 0);
    // Credit repair on application: Shanghai had to decide, and after its decision a
    // region that executed the bar has to lift it.
    let inbox: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.action == "AssertInbox" && s.ok)
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(
        inbox,
        [
            "310000 must decide_repair e1",
            "310000 has no decide_repair task about e1",
            "440000 must lift a1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_objection_in_node_fault_mode() {
    let r = drill("02-objection", 27100, NetworkChoice::InNode).await;
    assert!(
        r.fault_mode.contains("in-node fault mode"),
        "{}",
        r.fault_mode
    );
}

/// A member added while the federation runs: installed on one member, adopted by every
/// running member in its own process, the new node takes part in a joint punishment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_10_a_member_added_while_the_federation_runs() {
    let r = drill("10-add-member", 28600, NetworkChoice::Auto).await;
    assert!(r.regions.iter().any(|x| x == "650000"), "{:?}", r.regions);
    let added = r
        .steps
        .iter()
        .find(|s| s.action == "AddMember")
        .expect("the add_member step ran");
    assert!(
        added.ok && added.detail.contains("all 4 running members ran it"),
        "{}",
        added.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_partition_and_heal() {
    let Some(network) = real_links("scenario_4_partition_and_heal") else {
        return;
    };
    let r = drill("04-partition-heal", 27200, network).await;
    assert!(r.convergence_ms.iter().any(|c| c.after == "heal"));
    // The cut was noticed (silent connections closed) and the heal re-dialled.
    let links: Vec<_> = r.steps.iter().filter(|s| s.action == "WaitLinks").collect();
    assert_eq!(links.len(), 2);
    assert!(
        links
            .iter()
            .all(|s| s.ok && s.detail.starts_with("links match the faults at 4 nodes"))
    );
    // Both sides wrote during the partition and neither saw the other's records.
    let split = r
        .steps
        .iter()
        .find(|s| s.action == "WaitConverged")
        .unwrap();
    assert!(
        split
            .detail
            .contains("in 2 components holding 2 distinct sets of heads"),
        "{}",
        split.detail
    );
    if network == NetworkChoice::Netns {
        assert!(
            r.fault_mode.contains("network namespaces"),
            "{}",
            r.fault_mode
        );
    }
    // Invariants were checked after every step, not only at the end.
    let lost = r
        .invariants
        .iter()
        .find(|i| i.name == "no_acknowledged_record_lost")
        .unwrap();
    assert!(
        lost.detail
            .contains(&format!("checked after each of {} steps", r.steps.len())),
        "{}",
        lost.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_8_one_way_cut_and_loss() {
    let Some(network) = real_links("scenario_8_one_way_cut_and_loss") else {
        return;
    };
    let r = drill("08-one-way-and-loss", 28200, network).await;
    let cut = r.steps.iter().find(|s| s.action == "OneWay").unwrap();
    assert!(
        cut.detail.starts_with("1 directed links cut"),
        "{}",
        cut.detail
    );
    let loss = r.steps.iter().find(|s| s.action == "Loss").unwrap();
    assert!(
        loss.detail.starts_with("20% of packets into 4 node(s)"),
        "{}",
        loss.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_7_equivocation() {
    let r = drill("07-equivocation-intruder", 27300, NetworkChoice::Auto).await;
    let inv = r
        .invariants
        .iter()
        .find(|i| i.name == "equivocation_detected_by_every_honest_node")
        .unwrap();
    assert!(
        inv.held && inv.detail.contains("440000 flagged"),
        "{}",
        inv.detail
    );
    // The split view is shown: witnesses refused the forked region's checkpoints, and no
    // node holds a witnessed checkpoint of the fork.
    let refused: u64 = ["equivocator", "split_view"]
        .iter()
        .filter_map(|k| r.cosign_refusals.get(*k))
        .sum();
    assert!(refused > 0, "{:?}", r.cosign_refusals);
    let inv = r
        .invariants
        .iter()
        .find(|i| i.name == "no_split_view_witnessed")
        .unwrap();
    assert!(inv.held, "{}", inv.detail);
}

/// Scenario 9 on five members (tolerating one faulty): Guangdong forks its log across a
/// 2 | 2 partition of the honest members, a copy of its node on each side. No two
/// contradicting proven answers verify during the split; after the heal the quiet fork
/// at the tip is flagged everywhere within 5 s, and proven answers exclude Guangdong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_9_fork_across_partition() {
    let Some(network) = real_links("scenario_9_fork_across_partition") else {
        return;
    };
    let text = r#"
name = "a member forks its log across a partition (five members)"
description = "scenario 9 on five members"
[[step]]
do = "publish"
id = "e1"
region = "310000"
uscc = "91350100M000100Y43"
[[step]]
do = "wait_converged"
[[step]]
do = "fork_across_partition"
region = "440000"
side = ["110000", "120000"]
watch_ms = 8000
[[step]]
do = "wait_converged"
"#;
    let r = drill_text(
        "09-fork-across-partition",
        text,
        "110000,120000,310000,440000,620000",
        27500,
        network,
        None,
    )
    .await;
    let inv = |name: &str| r.invariants.iter().find(|i| i.name == name).unwrap();
    let contradicting = inv("no_contradicting_proven_answers");
    assert!(
        contradicting.held
            && contradicting
                .detail
                .contains("proven answers asked for during the split"),
        "{}",
        contradicting.detail
    );
    let flagged = inv("equivocation_detected_by_every_honest_node");
    assert!(
        flagged.held
            && flagged
                .detail
                .contains("the quiet fork flagged by all 4 honest nodes"),
        "{}",
        flagged.detail
    );
    assert!(
        r.fork_flagged_ms.is_some_and(|ms| ms <= 5000),
        "{:?}",
        r.fork_flagged_ms
    );
    let proven = inv("proven_answers_verify");
    assert!(proven.detail.contains("1 excluded"), "{}", proven.detail);
}

#[test]
fn every_shipped_scenario_parses() {
    for (name, text) in scenario::SHIPPED {
        let s = scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!s.steps.is_empty(), "{name}");
    }
    assert!(scenario::parse("name = 'x'\n[[step]]\ndo = 'teleport'\n").is_err());
}

/// A scenario that lists the subject every convergence proves unlisted would make the
/// `proven_answers_verify` invariant fail for the scenario's sake, not the federation's.
#[test]
fn a_scenario_may_not_list_the_subject_proven_unlisted() {
    let text = format!(
        "name = 'x'\n[[step]]\ndo = 'publish'\nid = 'e'\nregion = '440000'\nuscc = '{}'\n",
        scenario::UNLISTED_USCC
    );
    let err = scenario::parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("step[0].uscc") && err.contains("reserved"),
        "{err}"
    );
    let text = format!(
        "name = 'x'\n[[step]]\ndo = 'evaluation'\nregion = '440000'\nuscc = '{}'\nscheme = 'tax-credit'\nclass = 'A'\n",
        scenario::UNLISTED_USCC
    );
    assert!(scenario::parse(&text).is_err());
}

/// A few chaos seeds (the long run is `credfed-testnet chaos --seed S --schedules 200`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seeds() {
    let dir = std::env::temp_dir().join(format!("credfed-it-chaos-{}", std::process::id()));
    let run = ChaosRun {
        seed: 20261126,
        start: 0,
        count: 3,
        nodes: 4,
        steps: 14,
        report_dir: dir.clone(),
        base_port: 27400,
        network: NetworkChoice::Auto,
    };
    let (passed, failed) = credfed_testnet::run_chaos(&run).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(passed, 3);
    let _ = std::fs::remove_dir_all(dir);
}

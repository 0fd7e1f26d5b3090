//! Drills on a small federation of real node processes (the default test command runs
//! these; the 31-region drill is `credfed-testnet drill`, see README).

use credfed_testnet::{DrillRun, run_drill, scenario};

const REGIONS: &str = "110000,310000,440000,620000";

async fn drill(name: &str, base_port: u16) -> credfed_testnet::report::Report {
    let text = scenario::SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1;
    let sc = scenario::parse(text).unwrap();
    let report_dir =
        std::env::temp_dir().join(format!("credfed-it-report-{name}-{}", std::process::id()));
    let run = DrillRun {
        regions: REGIONS.into(),
        dir: None,
        report_dir: report_dir.clone(),
        base_port,
    };
    let report = run_drill(&sc, &run)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(
        report.passed(),
        "{name}: {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_eq!(report.invariants.len(), 5);
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
    let r = drill("01-joint-punishment", 27000).await;
    assert!(r.propagation_ms.n >= 2);
    // Three target regions acknowledged.
    assert_eq!(r.acknowledgement_ms.len(), 3);
    assert!(r.messages > 0 && r.bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_objection() {
    drill("02-objection", 27100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_partition_and_heal() {
    let r = drill("04-partition-heal", 27200).await;
    assert!(r.convergence_ms.iter().any(|c| c.after == "heal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_7_equivocation() {
    let r = drill("07-equivocation-intruder", 27300).await;
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
}

#[test]
fn every_shipped_scenario_parses() {
    for (name, text) in scenario::SHIPPED {
        let s = scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!s.steps.is_empty(), "{name}");
    }
    assert!(scenario::parse("name = 'x'\n[[step]]\ndo = 'teleport'\n").is_err());
}

/// A few chaos seeds (the long run is `credfed-testnet chaos --seed S --schedules 200`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seeds() {
    let dir = std::env::temp_dir().join(format!("credfed-it-chaos-{}", std::process::id()));
    let (passed, failed) = credfed_testnet::run_chaos(20261126, 0, 3, 4, 14, &dir, 27400)
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(passed, 3);
    let _ = std::fs::remove_dir_all(dir);
}

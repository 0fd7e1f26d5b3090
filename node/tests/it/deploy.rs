//! The operator's kit in `deploy/`: the alert rules pass `promtool check rules` and their
//! own unit tests, every metric the rules and the dashboard use is one a running node
//! exports, the dashboard parses, and the systemd unit passes `systemd-analyze verify`
//! with its hardening in place.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A tool the setup installs as root: `None` (and says so) without root and without it;
/// as root its absence is a failure (run `scripts/setup`, as the README's test command does).
fn tool(name: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        assert!(
            unsafe { libc::geteuid() } != 0,
            "{name} is missing; run scripts/setup first (the README's test command does)"
        );
        eprintln!(
            "SKIPPED the {name} check: not installed and not root to install it (scripts/setup)"
        );
    }
    found
}

/// The metric names an expression uses.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("credfed_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        out.push(text[start..end].to_string());
        i = end;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_and_dashboard_watch_metrics_the_node_exports() {
    let rules = deploy("prometheus/credfed.rules.yml");
    if let Some(promtool) = tool("promtool") {
        for args in [
            vec!["check", "rules", rules.to_str().unwrap()],
            vec![
                "test",
                "rules",
                deploy("prometheus/credfed.rules.test.yml")
                    .to_str()
                    .unwrap(),
            ],
        ] {
            let out = Command::new(&promtool).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // Every name the rules and the dashboard use is exported by a running node (one
    // federation with a department registered, so that checkpoints get witnessed).
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    c.register_departments(0).await;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/credfed-node.json")).unwrap(),
    )
    .unwrap();
    let mut wanted = metric_names(&std::fs::read_to_string(&rules).unwrap());
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "a panel for each concern");
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            wanted.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    wanted.sort();
    wanted.dedup();
    let missing_now = || async {
        let body = c.nodes[0]
            .client
            .get("/metrics")
            .await
            .map(|r| r.body)
            .unwrap_or_default();
        let names: Vec<String> = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
            .collect();
        wanted
            .iter()
            .filter(|w| !names.contains(w))
            .cloned()
            .collect::<Vec<String>>()
    };
    let exported = wait_until(Duration::from_secs(60), || async {
        missing_now().await.is_empty()
    })
    .await;
    let missing = missing_now().await;
    assert!(exported, "used by deploy/ but not exported: {missing:?}");
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let text = std::fs::read_to_string(deploy("systemd/credfed-node.service")).unwrap();
    for setting in [
        "User=credfed",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/credfed",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(text.contains(setting), "the unit lacks {setting:?}");
    }
    // Where available: the test setup does not install systemd on a machine without it.
    let Some(analyze) = on_path("systemd-analyze") else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    // Verified with the binary this build made in place of the installed one.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("credfed-node.service");
    std::fs::write(&unit, text.replace("/usr/bin/credfed-node", BIN)).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !said.contains(unit.to_str().unwrap()),
        "systemd-analyze verify: {said}"
    );
}

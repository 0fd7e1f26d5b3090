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

/// `scripts/package-deb` makes a Debian package of the node: its control fields, every
/// file where the unit and the operator's guide expect it, owned by root with the modes
/// a package should have, nothing under /etc, maintainer scripts that parse, create the
/// data directory 0700 and never delete it; the packaged binary runs.
#[test]
fn the_debian_package_holds_the_node_its_unit_and_kit() {
    let Some(dpkg_deb) = on_path("dpkg-deb") else {
        eprintln!("SKIPPED the package check: dpkg-deb is not installed (not a Debian system)");
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let made = Command::new(root.join("scripts/package-deb"))
        .args(["--bin", BIN, "--compress", "none", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "package-deb: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let deb = PathBuf::from(String::from_utf8(made.stdout).unwrap().trim());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.ends_with(format!(
            "credfed-node_{version}_{}.deb",
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64")
        )),
        "{}",
        deb.display()
    );
    let run = |args: &[&str]| {
        let o = Command::new(&dpkg_deb)
            .args(args)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dpkg-deb {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let fields = run(&["--field"]);
    let field = |name: &str| {
        fields
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {name} field:\n{fields}"))
    };
    assert_eq!(field("Package"), "credfed-node");
    assert_eq!(field("Version"), version);
    assert!(field("Depends").contains("libc6"), "no libc6 dependency");

    // path -> (mode, owner)
    let contents = run(&["--contents"]);
    let files: std::collections::BTreeMap<String, (String, String)> = contents
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(5)?.trim_start_matches('.').to_string(),
                (f[0].to_string(), f[1].to_string()),
            ))
        })
        .collect();
    for (path, mode) in [
        ("/usr/bin/credfed-node", "-rwxr-xr-x"),
        ("/lib/systemd/system/credfed-node.service", "-rw-r--r--"),
        ("/usr/share/doc/credfed-node/operator.md", "-rw-r--r--"),
        (
            "/usr/share/doc/credfed-node/examples/config.toml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/credfed-node/prometheus/credfed.rules.yml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/credfed-node/prometheus/prometheus.yml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/credfed-node/grafana/credfed-node.json",
            "-rw-r--r--",
        ),
        (
            "/usr/share/bash-completion/completions/credfed-node",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_credfed-node",
            "-rw-r--r--",
        ),
    ] {
        let Some((m, _)) = files.get(path) else {
            panic!("{path} missing from the package:\n{contents}");
        };
        assert_eq!(m, mode, "{path}");
    }
    for (path, (_, owner)) in &files {
        assert_eq!(owner, "root/root", "{path} not owned by root");
        assert!(
            !path.starts_with("/etc/"),
            "{path}: the package holds no configuration files"
        );
    }

    // `dpkg-deb -x` (the files) or `-e` (the maintainer scripts) into a new directory.
    let unpack = |flag: &str| {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new(&dpkg_deb)
            .arg(flag)
            .arg(&deb)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dpkg-deb {flag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    };
    // The unit names what the package holds.
    let dir = unpack("-x");
    let unit = std::fs::read_to_string(dir.path().join("lib/systemd/system/credfed-node.service"))
        .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/credfed-node run"));
    assert!(unit.contains("Documentation=file:///usr/share/doc/credfed-node/operator.md"));
    let v = Command::new(dir.path().join("usr/bin/credfed-node"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("credfed-node {version}")
    );

    // Maintainer scripts: valid shell; the data directory made 0700, never removed.
    let control = unpack("-e");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        let parsed = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            parsed.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&parsed.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("rm -"), "{script} deletes files: {text}");
        if script == "postinst" {
            assert!(
                text.contains("install -d -m 0700 -o credfed -g credfed /var/lib/credfed"),
                "{text}"
            );
            assert!(
                !text.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("systemctl enable")
                        || l.starts_with("systemctl start")
                        || l.contains("deb-systemd-helper enable")
                }),
                "postinst must not start or enable the node before its init: {text}"
            );
        }
    }
}

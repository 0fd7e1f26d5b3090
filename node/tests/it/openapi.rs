//! The OpenAPI document is the truth: schemathesis generates requests from the document
//! the node serves and checks every answer against it (status codes, content types,
//! response schemas, method-not-allowed, schema-valid input accepted and invalid input
//! refused), with the operator's certificate and without one.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

/// The schemathesis `st` that `scripts/setup` installs (or `CREDFED_SCHEMATHESIS`).
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("CREDFED_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/credfed-tools/venv/bin/st")
}

fn run_schemathesis(c: &Cluster, with_certificate: bool) -> (bool, String) {
    let st = schemathesis();
    assert!(
        st.exists(),
        "{} is missing: run scripts/setup, which installs schemathesis from PyPI into ~/.cache/credfed-tools",
        st.display()
    );
    let node = &c.nodes[0];
    let report = node.dir.join(if with_certificate {
        "st-operator"
    } else {
        "st-anonymous"
    });
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let mut cmd = Command::new(&st);
    cmd.args([
        "--config-file",
        config.to_str().unwrap(),
        "run",
        &format!("https://{}/v1/openapi.json", node.api),
        "--checks",
        "all",
        "--max-examples",
        "50",
        "--phases",
        "examples,coverage,fuzzing",
        // Reproducible runs: one seed, no variation between tests (which also keeps no
        // example database between runs), one worker (two interleave differently from run to
        // run), and Python's hash seed fixed below. schemathesis 4.32.5 crashed in its
        // own coverage phase in about one run in three without these; with them every
        // run generates the same cases (docs/decisions.md, "The contract test is
        // deterministic").
        "--seed",
        "20261127",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--tls-verify",
        node.dir.join("api-ca.pem").to_str().unwrap(),
        "--report-dir",
        report.to_str().unwrap(),
    ]);
    if with_certificate {
        let op = node.dir.join("operator");
        let code = node.region.code();
        cmd.args([
            "--request-cert",
            op.join(format!("{code}-operator.pem")).to_str().unwrap(),
            "--request-cert-key",
            op.join(format!("{code}-operator.key")).to_str().unwrap(),
        ]);
    }
    // Schemathesis keeps a cache in its working directory: keep it out of the tree.
    std::fs::create_dir_all(&report).unwrap();
    let out = cmd
        .current_dir(&report)
        .env("NO_COLOR", "1")
        .env("PYTHONHASHSEED", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_with_and_without_a_certificate() {
    let _exclusive = crate::harness::EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[310000, 440000]);
    c.start_all().await;
    c.register_departments(0).await;
    for with_certificate in [true, false] {
        let c = &c;
        let (mut ok, mut text) =
            tokio::task::block_in_place(|| run_schemathesis(c, with_certificate));
        // schemathesis 4.32.5 now and then crashes inside its own coverage phase (a
        // KeyError in its schema walker, listed under ERRORS) without having found
        // anything (no FAILURES section). That says nothing about the API, so such a run
        // is repeated once; a run that reports failures is never repeated.
        if !ok && !text.contains("FAILURES") && text.contains("ERRORS") {
            (ok, text) = tokio::task::block_in_place(|| run_schemathesis(c, with_certificate));
        }
        let how = if with_certificate { "with" } else { "without" };
        assert!(
            ok,
            "schemathesis {how} a client certificate failed:\n{text}"
        );
        // It ran: every operation tested, hundreds of cases generated.
        let generated: usize = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[1].starts_with("generated"))
            .find_map(|w| w[0].parse().ok())
            .unwrap_or(0);
        let tested: usize = text
            .split("Tested: ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        eprintln!("schemathesis {how} a certificate: {tested} operations, {generated} cases");
        assert!(
            tested >= 19 && generated >= 300,
            "schemathesis {how} a certificate tested too little ({generated} cases):\n{text}"
        );
    }
}

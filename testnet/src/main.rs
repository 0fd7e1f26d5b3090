//! credfed-testnet: local federations, drills and reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use credfed_testnet::{ChaosRun, DrillRun, fed, report, run_drill, scenario};

#[derive(Parser)]
#[command(
    name = "credfed-testnet",
    version,
    about = "Whole credfed federations on one machine: drills with real faults and reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a federation of real credfed-node processes and leave it running.
    Up {
        /// A count (first N of the 31 provinces) or a list like 110000,310000,440000.
        #[arg(long, default_value = "31")]
        regions: String,
        /// Directory for keys, manifest and node data.
        #[arg(long)]
        dir: PathBuf,
        /// First port (node i: base+2i for libp2p, base+2i+1 for the API).
        #[arg(long, default_value_t = 24000)]
        base_port: u16,
        /// Link faults: `netns` (real packet drops between network namespaces; needs root and
        /// nftables), `in-node` (the nodes' own fault mode on loopback) or `auto`.
        #[arg(long, value_parser = ["auto", "netns", "in-node"], default_value = "auto")]
        network: String,
        /// Store engine of every node (`sled`, the default, `redb` or `fjall`): drills on any.
        #[arg(long, value_parser = ["sled", "redb", "fjall"])]
        store_engine: Option<String>,
    },
    /// Stop a federation started with `up`.
    Down {
        /// The directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run a drill scenario on a fresh federation and write report.json and report.html.
    Drill {
        /// Scenario file, or the name of a shipped scenario (default: cross-region joint
        /// punishment with a partition, kill and heal).
        scenario: Option<String>,
        /// A count or a list of region codes.
        #[arg(long, default_value = "31")]
        regions: String,
        /// Where to write the report.
        #[arg(long, default_value = "drill-report")]
        report_dir: PathBuf,
        /// Keep the federation in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// First port.
        #[arg(long, default_value_t = 24000)]
        base_port: u16,
        /// Print the report as JSON instead of a summary.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
        /// Link faults: `netns` (real packet drops between network namespaces; needs root and
        /// nftables), `in-node` (the nodes' own fault mode on loopback) or `auto`.
        #[arg(long, value_parser = ["auto", "netns", "in-node"], default_value = "auto")]
        network: String,
        /// Store engine of every node (`sled`, the default, `redb` or `fjall`): drills on any.
        #[arg(long, value_parser = ["sled", "redb", "fjall"])]
        store_engine: Option<String>,
    },
    /// Random fault schedules with random workloads; every invariant checked. A failing
    /// schedule is saved as a scenario file and its replay command printed.
    Chaos {
        /// Seed of the schedules.
        #[arg(long)]
        seed: u64,
        /// How many schedules.
        #[arg(long, default_value_t = 5)]
        schedules: u64,
        /// First schedule index (replays one schedule with --schedules 1).
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Nodes per federation.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Steps per schedule.
        #[arg(long, default_value_t = 16)]
        steps: usize,
        /// Where reports and failing schedules go.
        #[arg(long, default_value = "chaos-report")]
        report_dir: PathBuf,
        /// First port.
        #[arg(long, default_value_t = 25000)]
        base_port: u16,
        /// Link faults: `netns` (real packet drops between network namespaces; needs root and
        /// nftables), `in-node` (the nodes' own fault mode on loopback) or `auto`.
        #[arg(long, value_parser = ["auto", "netns", "in-node"], default_value = "auto")]
        network: String,
    },
    /// List the shipped scenarios.
    Scenarios,
    /// The protocol cycle on 31 regions in one process (no networking).
    Demo,
}

/// Runs `work` until it ends or the organiser interrupts (Ctrl-C, SIGTERM). Interrupted,
/// the work is dropped, and with it the federation: its nodes are killed and its network
/// namespaces removed, instead of being left behind.
async fn interruptible<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: nodes stopped and network namespaces removed"),
        _ = term.recv() => anyhow::bail!("terminated: nodes stopped and network namespaces removed"),
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    match cli.command {
        Cmd::Demo => Ok(match credfed_testnet::demo::demo() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        }),
        Cmd::Chaos { seed, schedules, start, nodes, steps, report_dir, base_port, network } => {
            let run = ChaosRun { seed, start, count: schedules, nodes, steps, report_dir: report_dir.clone(), base_port, network: network.parse()? };
            let (passed, failed) = rt()?.block_on(interruptible(credfed_testnet::run_chaos(&run)))?;
            println!("chaos seed {seed}: {passed} schedules passed, {} failed", failed.len());
            for (i, why) in &failed {
                println!("  schedule {i}: {why}\n    replay: credfed-testnet chaos --seed {seed} --start {i} --schedules 1 --nodes {nodes} --steps {steps} --network {network}\n    scenario: {}", report_dir.join(format!("schedule-{i}.toml")).display());
            }
            Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Scenarios => {
            for (name, text) in scenario::SHIPPED {
                let s = scenario::parse(text)?;
                println!("{name:<28} {}", s.description.lines().next().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Up { regions, dir, base_port, network, store_engine } => rt()?.block_on(interruptible(async {
            let regions = fed::parse_regions(&regions)?;
            let mut f = fed::Federation::create(&dir, &regions, &fed::FedOptions { base_port, heads_interval_ms: fed::heads_interval_ms(regions.len()), network: network.parse()?, store_engine, standby: Vec::new() })?;
            f.start_all(true).await?;
            f.register_departments().await?;
            f.write_department_credentials()?;
            f.save()?;
            println!("{:<8} {:<18} {:<22} data", "region", "name", "API (HTTPS)");
            for n in &f.nodes {
                println!("{:<8} {:<18} {:<22} {}", n.region, n.region.province_info().name_en, n.api, n.dir.display());
            }
            let units: Vec<String> = fed::UNITS.iter().map(|(u, roles)| format!("{u} ({})", roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect::<Vec<_>>().join(", "))).collect();
            let first = &f.nodes[0];
            println!("\n{} nodes running. Links: {}.\nDepartments of every region: {}; each has a CLI config <node dir>/<unit>.toml (signing key, client certificate, node, manifest), e.g.\n  CREDFED_CONFIG={}/pub.toml credfed status\nEach region's operator (registers and revokes departments with the operator key): <node dir>/operator.toml, e.g.\n  CREDFED_CONFIG={}/operator.toml credfed dept list\nStop with: credfed-testnet down --dir {}", f.nodes.len(), f.fault_mode, units.join(", "), first.dir.display(), first.dir.display(), dir.display());
            f.detach();
            Ok(ExitCode::SUCCESS)
        })),
        Cmd::Down { dir } => {
            let n = fed::down(&dir)?;
            println!("stopped {n} nodes");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Drill { scenario: which, regions, report_dir, dir, base_port, output, network, store_engine } => {
            let text = match &which {
                None => scenario::SHIPPED[0].1.to_string(),
                Some(w) => match scenario::SHIPPED.iter().find(|(n, _)| n == w) {
                    Some((_, t)) => t.to_string(),
                    None => std::fs::read_to_string(w).with_context(|| format!("{w}: not a shipped scenario (see `credfed-testnet scenarios`) nor a readable file"))?,
                },
            };
            let sc = scenario::parse(&text)?;
            eprintln!("drill: {} on {regions} regions", sc.name);
            let run = DrillRun { regions, dir, report_dir: report_dir.clone(), base_port, network: network.parse()?, store_engine };
            let report = rt()?.block_on(interruptible(run_drill(&sc, &run)));
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("drill failed: {e:#}\n(partial report in {})", report_dir.display());
                    return Ok(ExitCode::FAILURE);
                }
            };
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                summary(&report, &report_dir);
            }
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

fn summary(r: &report::Report, dir: &std::path::Path) {
    println!(
        "\ndrill '{}' on {} regions: {} in {:.1} s",
        r.scenario,
        r.regions.len(),
        if r.passed() { "PASSED" } else { "FAILED" },
        r.duration_ms as f64 / 1000.0
    );
    // Which fault mode ran matters to the reader: real packet drops, or the fallback.
    println!("  links: {}", r.fault_mode);
    for i in &r.invariants {
        println!(
            "  {} {:<50} {}",
            if i.held { "held    " } else { "VIOLATED" },
            i.name,
            i.detail.chars().take(90).collect::<String>()
        );
    }
    let p = &r.propagation_ms;
    println!(
        "  propagation to every reachable node: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} records)",
        p.p50, p.p90, p.p99, p.max, p.n
    );
    let p = &r.proven_visible_ms;
    if p.n > 0 {
        println!(
            "  a record in a proven answer at another node: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms from its acknowledgement ({} records; goal p99 ≤ 2000 ms)",
            p.p50, p.p90, p.p99, p.max, p.n
        );
    }
    if let Some(ms) = r.fork_flagged_ms {
        println!(
            "  a quiet fork flagged by every honest node {ms} ms after the links healed (goal ≤ 5000 ms)"
        );
    }
    for c in &r.convergence_ms {
        println!("  converged {:.0} ms after {}", c.since_fault_ms, c.after);
    }
    if !r.cosign_refusals.is_empty() {
        let parts: Vec<String> = r
            .cosign_refusals
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  cosignatures refused by witnesses: {}", parts.join(", "));
    }
    if r.records_applied > 0 {
        println!(
            "  traffic: {} messages (gossip + pulled ranges), {} envelopes applied, {} received again after they were held ({:.1} %)",
            r.messages,
            r.records_applied,
            r.records_duplicate,
            100.0 * r.records_duplicate as f64 / r.records_applied as f64
        );
    }
    if !r.person_keys.is_empty() {
        let parts: Vec<String> = r
            .person_keys
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "  person keys (all nodes): {} (docs/privacy.md)",
            parts.join(", ")
        );
    }
    let p = &r.person_key_ms;
    if p.n > 0 {
        println!(
            "  one person key at a time: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} keys; goal p99 ≤ 20 ms)",
            p.p50, p.p90, p.p99, p.max, p.n
        );
    }
    if let Some(rate) = r.person_key_batch_per_s {
        println!("  person keys in batches of 512: {rate:.0} persons/s (goal ≥ 1000)");
    }
    if let Some(ms) = r.person_key_refresh_ms {
        println!(
            "  person-key shares refreshed by every member over their connections in {ms} ms (key unchanged)"
        );
    }
    if r.map_versions_pruned > 0 {
        println!(
            "  map versions pruned (superseded over a minute ago, no longer served): {}",
            r.map_versions_pruned
        );
    }
    // A bucket bound, or "over 10000 ms" past the last bucket.
    let bound = |ms: f64| {
        if ms.is_finite() {
            format!("≤ {ms:.0} ms")
        } else {
            "> 10000 ms".to_string()
        }
    };
    let w = &r.witness_round_ms;
    if let (Some(p50), Some(p99)) = (w.p50_at_most, w.p99_at_most) {
        println!(
            "  checkpoints witnessed (quorum of cosignatures): {} rounds, p50 {}, p99 {} from signing",
            w.count,
            bound(p50),
            bound(p99)
        );
    }
    let w = &r.federation_round_ms;
    if let (Some(p50), Some(p99)) = (w.p50_at_most, w.p99_at_most) {
        println!(
            "  federation checkpoints for proven answers: {} rounds, p50 {}, p99 {} from the call",
            w.count,
            bound(p50),
            bound(p99)
        );
    }
    let w = &r.witness_from_append_ms;
    if let (Some(p50), Some(p99)) = (w.p50_at_most, w.p99_at_most) {
        println!(
            "  a record waits to be witnessed: p50 {}, p99 {} from its append ({} checkpoints)",
            bound(p50),
            bound(p99),
            w.count
        );
    }
    let p = &r.proven_answers;
    if p.count > 0 {
        println!(
            "  proven answers (unlisted subject, every region): {} verified offline, ≤ {} bytes, ≤ {} µs to verify",
            p.count, p.max_file_bytes, p.max_verify_us
        );
    }
    if !r.resources.is_empty() {
        let n = r.resources.len() as f64;
        let rss = r.resources.values().map(|v| v.0 as f64).sum::<f64>() / n / 1024.0;
        let cpu = r.resources.values().map(|v| v.1).sum::<f64>() / n;
        println!(
            "  per node: {rss:.0} MiB resident, {cpu:.2} s CPU over the whole run (mean of {n} nodes)"
        );
    }
    println!(
        "  report: {}/report.json, {}/report.html",
        dir.display(),
        dir.display()
    );
}

//! credfed-testnet: whole federations of real `credfed-node` processes on one machine,
//! drills with faults, invariant checks and reports.
//!
//! [`fed`] (start, stop, signal nodes) · [`scenario`] (TOML steps) · [`drill`] (runs
//! steps, checks docs/design.md §8 invariants, measures) · [`report`] (JSON and HTML) · [`demo`]
//! (the protocol cycle in one process).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod chaos;
pub mod demo;
pub mod drill;
pub mod fed;
pub mod netns;
pub mod procs;
pub mod report;
pub mod scenario;

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Options of a drill run.
#[derive(Debug, Clone)]
pub struct DrillRun {
    /// Regions (`--regions`).
    pub regions: String,
    /// Where the federation lives (a temporary directory is used if `None`).
    pub dir: Option<PathBuf>,
    /// Where report.json and report.html go.
    pub report_dir: PathBuf,
    /// First port.
    pub base_port: u16,
    /// How link faults are made.
    pub network: fed::NetworkChoice,
    /// Store engine of every node (`None`: the node's default).
    pub store_engine: Option<String>,
}

/// Options of a chaos run.
#[derive(Debug, Clone)]
pub struct ChaosRun {
    /// Seed of the schedules.
    pub seed: u64,
    /// First schedule index.
    pub start: u64,
    /// How many schedules.
    pub count: u64,
    /// Nodes per federation.
    pub nodes: usize,
    /// Steps per schedule.
    pub steps: usize,
    /// Where reports and failing schedules go.
    pub report_dir: PathBuf,
    /// First port.
    pub base_port: u16,
    /// How link faults are made.
    pub network: fed::NetworkChoice,
}

/// Runs chaos schedules `start..start+count` of `seed`; returns (passed, failures).
pub async fn run_chaos(opts: &ChaosRun) -> Result<(usize, Vec<(u64, String)>)> {
    let ChaosRun {
        seed,
        start,
        count,
        nodes,
        steps,
        ref report_dir,
        base_port,
        network,
    } = *opts;
    let regions: Vec<String> = fed::parse_regions(&nodes.to_string())?
        .iter()
        .map(|r| r.to_string())
        .collect();
    std::fs::create_dir_all(report_dir)?;
    let mut passed = 0;
    let mut failed = Vec::new();
    for i in start..start + count {
        let sc = chaos::schedule(seed, i, &regions, steps);
        let file = report_dir.join(format!("schedule-{i}.toml"));
        std::fs::write(&file, toml::to_string(&sc)?)?;
        let run = DrillRun {
            regions: regions.join(","),
            dir: None,
            report_dir: report_dir.join(format!("schedule-{i}")),
            base_port: base_port + (i % 8) as u16 * 100,
            network,
            store_engine: None,
        };
        eprintln!("chaos schedule {i}: {} steps", sc.steps.len());
        match run_drill(&sc, &run).await {
            Ok(r) if r.passed() => {
                passed += 1;
                let _ = std::fs::remove_file(&file);
            }
            Ok(r) => failed.push((
                i,
                r.invariants
                    .iter()
                    .filter(|x| !x.held)
                    .map(|x| format!("{}: {}", x.name, x.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            Err(e) => failed.push((i, format!("{e:#}"))),
        }
    }
    Ok((passed, failed))
}

/// Builds a federation, runs `scenario`, writes the report, stops the nodes.
pub async fn run_drill(scenario: &scenario::Scenario, opts: &DrillRun) -> Result<report::Report> {
    let mut regions = fed::parse_regions(&opts.regions)?;
    // A region the scenario adds is not a member at the start, whatever --regions says.
    let added = scenario.regions_added()?;
    regions.retain(|r| !added.contains(r));
    let tmp;
    let dir: &Path = match &opts.dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!(
                "credfed-drill-{}-{}",
                std::process::id(),
                opts.base_port
            ));
            &tmp
        }
    };
    // Heads exchange costs CPU per peer pair; large federations poll less often.
    let heads_interval_ms = fed::heads_interval_ms(regions.len());
    let started = std::time::Instant::now();
    let mut federation = fed::Federation::create(
        dir,
        &regions,
        &fed::FedOptions {
            base_port: opts.base_port,
            heads_interval_ms,
            network: opts.network,
            store_engine: opts.store_engine.clone(),
            standby: added,
        },
    )?;
    eprintln!(
        "federation of {} nodes created in {}",
        regions.len(),
        dir.display()
    );
    federation.start_all(false).await?;
    federation.register_departments().await?;
    eprintln!(
        "all nodes writable, departments registered ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let mut d = drill::Drill::new(federation);
    d.mark_baseline().await;
    let outcome = d.run(scenario).await;
    let report = d.report(scenario).await;
    d.fed.stop_all();
    std::fs::create_dir_all(&opts.report_dir)?;
    std::fs::write(
        opts.report_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(opts.report_dir.join("report.html"), report::html(&report))?;
    if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    outcome?;
    Ok(report)
}

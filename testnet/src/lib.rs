//! credfed-testnet: whole federations of real `credfed-node` processes on one machine,
//! drills with faults, invariant checks and reports.
//!
//! [`fed`] (start, stop, signal nodes) · [`scenario`] (TOML steps) · [`drill`] (runs
//! steps, checks DESIGN §8 invariants, measures) · [`report`] (JSON and HTML) · [`demo`]
//! (the protocol cycle in one process).

pub mod demo;
pub mod drill;
pub mod fed;
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
}

/// Builds a federation, runs `scenario`, writes the report, stops the nodes.
pub async fn run_drill(scenario: &scenario::Scenario, opts: &DrillRun) -> Result<report::Report> {
    let regions = fed::parse_regions(&opts.regions)?;
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
    let heads_interval_ms = if regions.len() > 8 { 2000 } else { 500 };
    let started = std::time::Instant::now();
    let mut federation = fed::Federation::create(
        dir,
        &regions,
        &fed::FedOptions {
            base_port: opts.base_port,
            heads_interval_ms,
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

//! What the protocol benches share.

use std::path::PathBuf;

/// The mean time (ns) criterion measured for `group/id` in this run, from its
/// estimates file: how a bench prints ratios of figures measured side by side.
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let text = std::fs::read_to_string(
        target
            .join("criterion")
            .join(group)
            .join(id)
            .join("new/estimates.json"),
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

//! Printing: readable tables for people, JSON for machines.

use serde_json::Value;

use crate::cli::Output;

/// Prints `value` as JSON, or `text` for people. A reader that stops early (`| head`)
/// is not an error of the command: the rest is dropped and the command's own exit code
/// stands (`println!` would panic on the closed pipe).
pub fn emit(mode: Output, value: &Value, text: impl FnOnce() -> String) {
    use std::io::Write;
    let body = match mode {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
        Output::Text => text(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{body}").and_then(|()| out.flush());
}

/// A simple aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{c}{}",
                    " ".repeat(widths[i].saturating_sub(c.chars().count()) + 2)
                )
            })
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// A JSON value as short text.
pub fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        Value::Array(items) => items.iter().map(s).collect::<Vec<_>>().join(","),
        // A department id reads as people write it.
        Value::Object(o) if o.len() == 2 && o.contains_key("region") && o.contains_key("unit") => {
            format!("{}:{}", s(&o["region"]), s(&o["unit"]))
        }
        // A one-field variant ({"related": "legal_representative"}) as two words.
        Value::Object(o) if o.len() == 1 => o
            .iter()
            .map(|(k, v)| format!("{k} {}", s(v)))
            .collect::<String>(),
        other => other.to_string(),
    }
}

pub use credfed_client::query_value;

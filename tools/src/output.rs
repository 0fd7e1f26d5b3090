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

/// `text` as a URL query value: RFC 3986's unreserved characters as they are, every
/// other byte of its UTF-8 as `%XX` (a name in Chinese goes in a query this way).
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

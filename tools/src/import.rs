//! Bulk import of existing list data.
//!
//! Every row is validated before anything is sent; bad rows are reported with line,
//! field and rule, and nothing is submitted unless `--skip-invalid`. Entry ids derive
//! from region, list, document number and subject, so a rerun after an interruption
//! meets its earlier rows as 409 "already published" and counts them as done instead of
//! duplicating them.
//!
//! CSV columns (header row required; see docs/cli.md): `uscc` or `person`, `name, list,
//! category, document_no, authority, decided_on, legal_basis, effective_from, expires_on,
//! measures, summary`, and optionally `related` (`ROLE:NUMBER:NAME` items) and `findings`
//! — lists separated by `;`, `effective_from` optional. JSON Lines: one object per line
//! with the same keys (lists as arrays or `;` strings).
//!
//! Persons are validated here, then hashed by the node in requests of up to 512
//! (`POST /v1/persons/refs`): the CLI never holds the federation secret.

use std::collections::BTreeMap;

use credfed_client::SubmitRecord;
use credfed_protocol::ids::DepartmentId;
use credfed_protocol::record::{Body, entry_id};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::cli::{EntryFields, ImportArgs, Output};
use crate::commands::persons::{self, NamedPerson};
use crate::commands::{client, entry_from_fields, persons_of};
use crate::output::emit;
use crate::{Failure, exit};

fn field(row: &BTreeMap<String, String>, k: &str) -> String {
    row.get(k).cloned().unwrap_or_default().trim().to_string()
}

fn list(row: &BTreeMap<String, String>, k: &str) -> Vec<String> {
    field(row, k)
        .split(';')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn to_fields(row: &BTreeMap<String, String>) -> EntryFields {
    let opt = |k: &str| Some(field(row, k)).filter(|v| !v.is_empty());
    EntryFields {
        uscc: opt("uscc"),
        person: opt("person"),
        name: field(row, "name"),
        related: list(row, "related"),
        findings: list(row, "findings"),
        list: opt("list").unwrap_or_else(|| "black".into()),
        category: field(row, "category"),
        document_no: field(row, "document_no"),
        authority: field(row, "authority"),
        decided_on: field(row, "decided_on"),
        legal_basis: field(row, "legal_basis"),
        effective_from: opt("effective_from"),
        expires_on: field(row, "expires_on"),
        measures: list(row, "measures"),
        summary: field(row, "summary"),
        check_exemption: opt("check_exemption"),
    }
}

/// Validates a row completely, offline (persons with provisional refs), and names the
/// persons the node must hash for it.
fn validate_row(f: &EntryFields) -> Result<Vec<NamedPerson>, Failure> {
    let named = persons_of(f)?;
    let e = entry_from_fields(f, &|p| Ok(persons::provisional_ref(p)))?;
    Body::ListEntryPublished(e)
        .validate()
        .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
    Ok(named)
}

/// A row: its line number in the file and its fields by column name, or why the row
/// cannot be read (judged like a row that breaks a rule: `--skip-invalid` skips it).
type Row = (usize, Result<BTreeMap<String, String>, String>);

fn read_rows(path: &std::path::Path) -> Result<Vec<Row>, Failure> {
    let bad = |m: String| Failure::new(exit::INVALID, m);
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let mut rows = Vec::new();
    if is_jsonl {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    rows.push((i + 1, Err(format!("not JSON: {e}"))));
                    continue;
                }
            };
            let mut row = BTreeMap::new();
            for (k, x) in v.as_object().cloned().unwrap_or_default() {
                let text = match x {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(";"),
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                row.insert(k, text);
            }
            rows.push((i + 1, Ok(row)));
        }
    } else {
        // Flexible: a row with too few or too many fields is one invalid row, not the
        // end of the import.
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let headers = r
            .headers()
            .map_err(|e| bad(format!("{}: header row: {e}", path.display())))?
            .clone();
        let mut next_line = 2;
        for rec in r.records() {
            // The line a record starts on, as the file counts (a quoted field may span
            // lines): one number in every message.
            let line = match &rec {
                Ok(rec) => rec.position().map_or(next_line, |p| p.line() as usize),
                Err(e) => e.position().map_or(next_line, |p| p.line() as usize),
            };
            next_line = line + 1;
            let row = match rec {
                Err(e) => Err(match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
                    _ => "not a CSV record".to_string(),
                }),
                Ok(rec) if rec.len() != headers.len() => Err(format!(
                    "has {} fields where the header has {} (a missing or extra comma?)",
                    rec.len(),
                    headers.len()
                )),
                Ok(rec) => Ok(headers
                    .iter()
                    .map(str::to_string)
                    .zip(rec.iter().map(str::to_string))
                    .collect()),
            };
            rows.push((line, row));
        }
    }
    Ok(rows)
}

/// Runs an import.
pub fn run(mode: Output, args: &ImportArgs) -> Result<(), Failure> {
    let rows = read_rows(&args.file)?;
    let author = DepartmentId::parse(&args.sign.author, "--author")
        .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
    let mut valid_fields = Vec::new();
    let mut named = Vec::new();
    let mut problems = Vec::new();
    for (line, row) in &rows {
        let row = match row {
            Ok(row) => row,
            Err(why) => {
                problems.push(json!({"line": line, "error": why}));
                continue;
            }
        };
        let f = to_fields(row);
        match validate_row(&f) {
            Ok(p) => {
                named.extend(p);
                valid_fields.push((*line, f));
            }
            Err(f) => problems.push(json!({"line": line, "error": f.message})),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("line {}: {}", p["line"], p["error"].as_str().unwrap_or(""));
        }
        if !args.skip_invalid {
            return Err(Failure::new(
                exit::INVALID,
                format!(
                    "{} of {} rows are invalid; nothing was submitted. Fix them, or rerun with --skip-invalid to submit the {} valid rows",
                    problems.len(),
                    rows.len(),
                    valid_fields.len()
                ),
            ));
        }
    }
    if args.sign.dry_run {
        emit(
            mode,
            &json!({"valid": valid_fields.len(), "invalid": problems.len()}),
            || {
                format!(
                    "{} valid rows, {} invalid; nothing submitted (--dry-run)",
                    valid_fields.len(),
                    problems.len()
                )
            },
        );
        return Ok(());
    }
    let manifest_text = std::fs::read_to_string(&args.sign.manifest).map_err(|e| {
        Failure::new(
            exit::INVALID,
            format!("{}: {e}", args.sign.manifest.display()),
        )
    })?;
    let signed: credfed_protocol::manifest::SignedManifest =
        serde_json::from_str(&manifest_text)
            .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
    let manifest: credfed_protocol::manifest::Manifest = credfed_protocol::codec::decode(
        &signed.manifest,
        credfed_protocol::limits::MAX_MANIFEST_BYTES,
        "manifest",
    )
    .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
    let key = credfed_client::keys::read_key(&args.sign.key)
        .map_err(|e| Failure::new(exit::INVALID, format!("{e:#}")))?;
    let c = client(&args.node)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
    if !named.is_empty() && mode == Output::Text {
        eprintln!(
            "asking the node for the record form of {} persons",
            named.len()
        );
    }
    let refs = if named.is_empty() {
        BTreeMap::new()
    } else {
        rt.block_on(persons::resolve(&args.node, &c, &named))?
    };
    let mut valid = Vec::with_capacity(valid_fields.len());
    for (line, f) in &valid_fields {
        valid.push((
            *line,
            entry_from_fields(f, &|p| persons::resolved(&refs, p))?,
        ));
    }
    let bar = ProgressBar::new(valid.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if mode == Output::Json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut submitted, mut already, mut refused) = (0usize, 0usize, Vec::new());
    let batch = args.batch.clamp(1, 256);
    for chunk in valid.chunks(batch) {
        let results = rt.block_on(async {
            let futs = chunk.iter().map(|(line, e)| {
                let req = SubmitRecord::sign(
                    &manifest.federation_id,
                    &author,
                    &key,
                    &Body::ListEntryPublished(e.clone()),
                );
                let c = c.clone();
                async move { (*line, c.post("/v1/records", &req).await) }
            });
            futures::future::join_all(futs).await
        });
        for (line, r) in results {
            match r {
                Err(e) => {
                    bar.abandon();
                    let f = crate::commands::client_failure(&args.node, e);
                    return Err(Failure::new(f.code, format!("{} — after {submitted} rows; rerun the same command to resume (rows already recorded are recognised, not duplicated)", f.message)));
                }
                Ok(r) if r.status == 201 => submitted += 1,
                Ok(r) if r.status == 409 && r.body.contains("already published") => already += 1,
                Ok(r) => refused.push(json!({"line": line, "status": r.status, "error": r.json().ok().and_then(|v| v["message"].as_str().map(str::to_owned)).unwrap_or(r.body)})),
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let ids: Vec<String> = valid
        .iter()
        .take(3)
        .map(|(_, e)| entry_id(author.home_province(), e).to_string())
        .collect();
    let v = json!({"rows": rows.len(), "invalid": problems.len(), "submitted": submitted, "already_recorded": already, "refused": refused, "first_entry_ids": ids});
    emit(mode, &v, || {
        format!(
            "{} rows: {submitted} submitted, {already} already recorded (resumed), {} refused by the node, {} invalid skipped",
            rows.len(),
            refused.len(),
            problems.len()
        )
    });
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            exit::REFUSED,
            format!(
                "{} rows refused by the node (first: {})",
                refused.len(),
                refused[0]
            ),
        ))
    }
}

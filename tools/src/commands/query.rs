//! Commands that ask a node (checks, status, statistics, peers) and verify answers
//! offline.

use super::*;

/// Which kind of identifier `code` is: the one it is valid as, or `--kind` when it is
/// valid as both; a code valid as neither is refused with both rules.
pub fn identifier_kind(code: &str, kind: Option<IdKind>) -> Result<(String, IdKind), Failure> {
    let d = credfed_protocol::ids::detect(code);
    let valid = d.valid_kinds();
    let as_cli = |k: credfed_protocol::ids::IdentifierKind| match k {
        credfed_protocol::ids::IdentifierKind::Uscc => IdKind::Uscc,
        credfed_protocol::ids::IdentifierKind::ResidentId => IdKind::Person,
    };
    match (kind, valid.as_slice()) {
        (Some(k), _) => Ok((d.normalised, k)),
        (None, [one]) => Ok((d.normalised, as_cli(*one))),
        (None, []) => {
            // An exempted pilot code fails its check character but is still asked about.
            if uscc::validate_structure(&d.normalised, "code").is_ok()
                && resident_id::validate(&d.normalised, "code").is_err()
            {
                return Ok((d.normalised, IdKind::Uscc));
            }
            let rules: Vec<String> = d
                .as_kind
                .iter()
                .filter_map(|(_, r)| r.as_ref().err().cloned())
                .collect();
            Err(invalid(format!(
                "{}; fix the code, or run `credfed id check` on it",
                rules.join("; ")
            )))
        }
        (None, _) => Err(invalid(
            "code: valid both as a USCC and as a resident identity number; say which with --kind uscc or --kind person",
        )),
    }
}

/// Where a check's answer goes besides the screen.
pub struct CheckOutputs<'a> {
    /// The answer as JSON.
    pub save: Option<&'a Path>,
    /// Ask for proofs.
    pub proofs: bool,
    /// The proven answer as an evidence file.
    pub evidence: Option<&'a Path>,
}

pub fn check(
    mode: Output,
    code: &str,
    kind: Option<IdKind>,
    domain: &str,
    outputs: CheckOutputs<'_>,
    node: &NodeArgs,
) -> Res {
    let (c, kind) = identifier_kind(code, kind)?;
    let proofs = outputs.proofs || outputs.evidence.is_some();
    let save = outputs.save;
    let request = match kind {
        IdKind::Uscc => credfed_client::CheckRequest {
            uscc: Some(c.clone()),
            person: None,
            domain: domain.to_owned(),
            proofs,
        },
        IdKind::Person => credfed_client::CheckRequest {
            uscc: None,
            person: Some(c.clone()),
            domain: domain.to_owned(),
            proofs,
        },
    };
    // A person's number goes in the request body, never in a URL.
    let shown = match kind {
        IdKind::Uscc => c.clone(),
        IdKind::Person => credfed_protocol::ids::person::mask(&c),
    };
    let cl = client(node)?;
    let r = runtime()?.block_on(async { call(node, cl.post("/v1/check", &request)).await })?;
    let full = r.json().map_err(|e| invalid(e.to_string()))?;
    if let Some(p) = save {
        write_json(p, &full)?;
    }
    if let Some(p) = outputs.evidence {
        let proven: ProvenAnswer = serde_json::from_value(full.clone())
            .map_err(|e| invalid(format!("the node's answer has no proofs: {e}")))?;
        std::fs::write(p, proven.to_file())
            .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
    }
    let v = if proofs {
        full["answer"].clone()
    } else {
        full.clone()
    };
    emit(mode, &full, || {
        let mut out = format!("{shown} in {domain}: {}\n", s(&v["verdict"]));
        let rows: Vec<Vec<String>> = ["mandatory", "recommended"]
            .iter()
            .flat_map(|k| {
                v[*k]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |m| {
                        vec![
                            k.to_string(),
                            s(&m["code"]),
                            s(&m["title_zh"]),
                            s(&m["region"]),
                            measure_source(&m["source"]),
                            s(&m["roles"]),
                        ]
                    })
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(
                &["applies", "measure", "title", "region", "because of", "as"],
                &rows,
            ));
            out.push('\n');
        }
        for w in v["withheld"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "  withheld {}: {}\n",
                s(&w["measure"]["code"]),
                s(&w["reason"])
            ));
        }
        for e in v["entries"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "  entry {} {} {} ({})\n",
                s(&e["entry"]).chars().take(16).collect::<String>(),
                s(&e["state"]),
                s(&e["document_no"]),
                s(&e["region"])
            ));
        }
        let stale: Vec<String> = v["freshness"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|f| f["head_seq"] == json!(0))
            .map(|f| s(&f["region"]))
            .collect();
        if !stale.is_empty() {
            out.push_str(&format!("  no data yet from: {}\n", stale.join(" ")));
        }
        if proofs {
            out.push_str(&format!(
                "  proven under a federation checkpoint of {} regions\n",
                full["regions"].as_array().map_or(0, Vec::len)
            ));
        }
        if let Some(p) = save {
            out.push_str(&format!(
                "  answer with evidence saved to {} (verify with `credfed verify`)\n",
                p.display()
            ));
        }
        if let Some(p) = outputs.evidence {
            out.push_str(&format!(
                "  evidence file written to {} (check it anywhere with `credfed verify {} --manifest <manifest.json>`)\n",
                p.display(),
                p.display()
            ));
        }
        out.trim_end().to_string()
    });
    Ok(())
}

/// "entry 1a2b…" or "evaluation 3c4d…" from an applied measure's source.
fn measure_source(source: &Value) -> String {
    match source.as_object().and_then(|o| o.iter().next()) {
        Some((kind, id)) => format!("{kind} {}", s(id).chars().take(12).collect::<String>()),
        None => s(source),
    }
}

/// "2026-11-27 17:30:12 CST" for seconds since the epoch.
fn cst_time(seconds: u64) -> String {
    let ms = i64::try_from(seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let of_day = (seconds + 8 * 3600) % 86_400;
    format!(
        "{} {:02}:{:02}:{:02} CST",
        Timestamp(ms).date_cst(),
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The freshness bound of `credfed verify`.
pub struct Freshness {
    /// Oldest acceptable federation checkpoint, seconds.
    pub max_age: u64,
    /// Verify as of this instant instead of now.
    pub at: Option<u64>,
}

/// What `credfed verify` was given.
enum Saved {
    Plain(Box<CheckAnswer>),
    Proven(Box<ProvenAnswer>),
}

fn read_saved(path: &Path) -> Result<Saved, Failure> {
    let limit = credfed_protocol::federation::MAX_EVIDENCE_FILE_BYTES;
    let len = std::fs::metadata(path)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?
        .len();
    if len > limit as u64 {
        return Err(invalid(format!(
            "{}: {len} bytes, more than any answer ({limit} at most); is it the right file?",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if bytes.starts_with(credfed_protocol::federation::EVIDENCE_MAGIC) {
        return ProvenAnswer::from_file(&bytes)
            .map(|p| Saved::Proven(Box::new(p)))
            .map_err(|e| invalid(format!("{}: {e}", path.display())));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        invalid(format!(
            "{}: neither an evidence file nor a JSON answer: {e}",
            path.display()
        ))
    })?;
    if v.get("federation_note").is_some() {
        serde_json::from_value(v)
            .map(|p| Saved::Proven(Box::new(p)))
            .map_err(|e| invalid(format!("{}: not a proven answer: {e}", path.display())))
    } else {
        serde_json::from_value(v)
            .map(|a| Saved::Plain(Box::new(a)))
            .map_err(|e| invalid(format!("{}: not a check answer: {e}", path.display())))
    }
}

pub fn verify(
    mode: Output,
    answer: &Path,
    manifest: &Path,
    authority_key: Option<&str>,
    freshness: Freshness,
) -> Res {
    let saved = read_saved(answer)?;
    let as_of = match &saved {
        Saved::Plain(a) => a.as_of,
        Saved::Proven(p) => p.answer.as_of,
    };
    let signed: SignedManifest = serde_json::from_str(
        &std::fs::read_to_string(manifest)
            .map_err(|e| invalid(format!("{}: {e}", manifest.display())))?,
    )
    .map_err(|e| invalid(format!("{}: {e}", manifest.display())))?;
    let (m, pinned) = match authority_key {
        Some(k) => {
            let key =
                PublicKey::from_hex(k).map_err(|e| invalid(format!("--authority-key: {e}")))?;
            (
                signed
                    .verify(&key, as_of)
                    .map_err(|e| Failure::new(exit::UNVERIFIED, e.to_string()))?,
                true,
            )
        }
        None => (
            credfed_protocol::codec::decode::<Manifest>(
                &signed.manifest,
                credfed_protocol::limits::MAX_MANIFEST_BYTES,
                "manifest",
            )
            .map_err(|e| invalid(e.to_string()))?,
            false,
        ),
    };
    let catalogue = Catalogue::parse(&m.catalogue)
        .or_else(|_| Catalogue::embedded())
        .map_err(|e| invalid(e.to_string()))?;
    let unpinned = "\n(the manifest's own signature was not checked: pass --authority-key to pin the federation authority)";
    let (ok, problems) = match saved {
        Saved::Plain(a) => {
            let report = verify_answer(&a, &m, &catalogue);
            let v = json!({"ok": report.ok(), "proven": false, "envelopes_verified": report.envelopes_verified, "entries_confirmed": report.entries_confirmed, "failures": report.failures, "manifest_signature_checked": pinned});
            emit(mode, &v, || {
                let mut out = if report.ok() {
                    format!(
                        "VERIFIED: {} envelopes, {} entries confirmed against manifest {} v{}\n\
                         (an answer without proofs shows that what it lists is genuine, not that it is complete: ask with --proofs)",
                        report.envelopes_verified,
                        report.entries_confirmed,
                        m.federation_id,
                        m.version
                    )
                } else {
                    format!("NOT VERIFIED:\n  {}", report.failures.join("\n  "))
                };
                if !pinned {
                    out.push_str(unpinned);
                }
                out
            });
            (report.ok(), report.failures.len())
        }
        Saved::Proven(p) => {
            let now = freshness.at.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
            let report = verify_proven_answer(&p, &m, &catalogue, now, freshness.max_age);
            let mut failures = report.answer.failures.clone();
            failures.extend(report.failures.iter().cloned());
            let v = json!({
                "ok": report.ok(), "proven": true, "subject": p.answer.subject,
                "domain": p.answer.domain, "verdict": p.answer.verdict,
                "cosigners": report.cosigners, "quorum": credfed_protocol::federation::federation_quorum(m.members.len()),
                "witnessed_at": report.witnessed_at, "age_seconds": report.age_seconds, "max_age_seconds": freshness.max_age,
                "regions": report.regions, "envelopes_verified": report.answer.envelopes_verified,
                "entries_confirmed": report.answer.entries_confirmed, "failures": failures,
                "manifest_signature_checked": pinned,
            });
            emit(mode, &v, || {
                let subject = match &p.answer.subject {
                    SubjectKey::Uscc(c) => c.clone(),
                    SubjectKey::Person(_) => "the person asked about".to_string(),
                };
                let mut out = if report.ok() {
                    format!(
                        "VERIFIED: {subject} in {}: {}\n",
                        p.answer.domain.name(),
                        s(&json!(p.answer.verdict))
                    )
                } else {
                    format!("NOT VERIFIED:\n  {}\n", failures.join("\n  "))
                };
                out.push_str(&format!(
                    "  federation checkpoint cosigned by {} members (quorum {} of {}), witnessed at {} ({}s before {}, limit {}s)\n",
                    report.cosigners.len(),
                    credfed_protocol::federation::federation_quorum(m.members.len()),
                    m.members.len(),
                    cst_time(report.witnessed_at),
                    report.age_seconds,
                    if freshness.at.is_some() { "the instant given" } else { "now" },
                    freshness.max_age
                ));
                let rows: Vec<Vec<String>> = report
                    .regions
                    .iter()
                    .map(|r| {
                        vec![
                            r.region.to_string(),
                            r.size.to_string(),
                            if r.naming_records == 0 {
                                "none (proven absent)".to_string()
                            } else {
                                format!("{} record(s), all shown", r.naming_records)
                            },
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["region", "records in head", "naming the subject"],
                    &rows,
                ));
                out.push_str(&format!(
                    "\n  {} envelopes verified, {} entries confirmed against manifest {} v{}",
                    report.answer.envelopes_verified,
                    report.answer.entries_confirmed,
                    m.federation_id,
                    m.version
                ));
                if !pinned {
                    out.push_str(unpinned);
                }
                out
            });
            (report.ok(), failures.len())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            exit::UNVERIFIED,
            format!("{problems} problem(s) in the answer"),
        ))
    }
}

pub fn stats(mode: Output, node: &NodeArgs) -> Res {
    let v = get_json(node, "/v1/stats")?;
    emit(mode, &v, || {
        serde_json::to_string_pretty(&v).unwrap_or_default()
    });
    Ok(())
}

pub fn status(mode: Output, node: &NodeArgs) -> Res {
    let v = get_json(node, "/v1/status")?;
    emit(mode, &v, || {
        table(
            &[
                "region",
                "own head",
                "regions",
                "peers",
                "writes",
                "equivocating",
                "store",
            ],
            &[vec![
                s(&v["region"]),
                s(&v["own_head"]),
                s(&v["regions_held"]),
                format!(
                    "{}/{}",
                    s(&v["peers_connected"]),
                    v["members"].as_u64().unwrap_or(1).saturating_sub(1)
                ),
                if v["writes_open"] == json!(true) {
                    "open".into()
                } else {
                    "paused".into()
                },
                s(&v["equivocating_regions"]),
                format!("{} KiB", v["store_bytes"].as_u64().unwrap_or(0) / 1024),
            ]],
        )
    });
    Ok(())
}

pub fn peers(mode: Output, node: &NodeArgs) -> Res {
    let v = get_json(node, "/v1/peers")?;
    emit(mode, &v, || {
        let rows: Vec<Vec<String>> = v["connected"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|(r, p)| vec![r.clone(), s(p), s(&v["last_contact_ms"][r])])
            .collect();
        table(&["region", "peer id", "last contact (ms)"], &rows)
    });
    Ok(())
}

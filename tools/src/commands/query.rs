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

pub fn check(
    mode: Output,
    code: &str,
    kind: Option<IdKind>,
    domain: &str,
    save: Option<&Path>,
    node: &NodeArgs,
) -> Res {
    let (c, kind) = identifier_kind(code, kind)?;
    let request = match kind {
        IdKind::Uscc => credfed_client::CheckRequest {
            uscc: Some(c.clone()),
            person: None,
            domain: domain.to_owned(),
        },
        IdKind::Person => credfed_client::CheckRequest {
            uscc: None,
            person: Some(c.clone()),
            domain: domain.to_owned(),
        },
    };
    // A person's number goes in the request body, never in a URL.
    let shown = match kind {
        IdKind::Uscc => c.clone(),
        IdKind::Person => credfed_protocol::ids::person::mask(&c),
    };
    let cl = client(node)?;
    let r = runtime()?.block_on(async { call(node, cl.post("/v1/check", &request)).await })?;
    let v = r.json().map_err(|e| invalid(e.to_string()))?;
    if let Some(p) = save {
        write_json(p, &v)?;
    }
    emit(mode, &v, || {
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
        if let Some(p) = save {
            out.push_str(&format!(
                "  answer with evidence saved to {} (verify with `credfed verify`)",
                p.display()
            ));
        }
        out
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

pub fn verify(mode: Output, answer: &Path, manifest: &Path, authority_key: Option<&str>) -> Res {
    let text = std::fs::read_to_string(answer)
        .map_err(|e| invalid(format!("{}: {e}", answer.display())))?;
    let a: CheckAnswer = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{}: not a check answer: {e}", answer.display())))?;
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
                    .verify(&key, a.as_of)
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
    let catalogue = Catalogue::embedded().map_err(|e| invalid(e.to_string()))?;
    let report = verify_answer(&a, &m, &catalogue);
    let v = json!({"ok": report.ok(), "envelopes_verified": report.envelopes_verified, "entries_confirmed": report.entries_confirmed, "failures": report.failures, "manifest_signature_checked": pinned});
    emit(mode, &v, || {
        let mut out = if report.ok() {
            format!(
                "VERIFIED: {} envelopes, {} entries confirmed against manifest {} v{}",
                report.envelopes_verified, report.entries_confirmed, m.federation_id, m.version
            )
        } else {
            format!("NOT VERIFIED:\n  {}", report.failures.join("\n  "))
        };
        if !pinned {
            out.push_str("\n(the manifest's own signature was not checked: pass --authority-key to pin the federation authority)");
        }
        out
    });
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::new(
            exit::UNVERIFIED,
            format!("{} problem(s) in the answer", report.failures.len()),
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

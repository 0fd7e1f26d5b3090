//! Commands that ask a node (checks, status, statistics, peers) and verify answers
//! offline.

use super::*;

pub fn check(mode: Output, code: &str, domain: &str, save: Option<&Path>, node: &NodeArgs) -> Res {
    let c = code.trim().to_ascii_uppercase();
    let param = if resident_id::validate(&c, "code").is_ok() {
        "person"
    } else {
        "uscc"
    };
    let v = get_json(node, &format!("/v1/check?{param}={c}&domain={domain}"))?;
    if let Some(p) = save {
        write_json(p, &v)?;
    }
    emit(mode, &v, || {
        let mut out = format!("{} in {domain}: {}\n", c, s(&v["verdict"]));
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
                        ]
                    })
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(
                &["applies", "measure", "title", "from region"],
                &rows,
            ));
            out.push('\n');
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

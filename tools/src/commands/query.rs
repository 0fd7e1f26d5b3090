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
            manifest: outputs.evidence.is_some(),
        },
        IdKind::Person => credfed_client::CheckRequest {
            uscc: None,
            person: Some(c.clone()),
            domain: domain.to_owned(),
            proofs,
            manifest: outputs.evidence.is_some(),
        },
    };
    // A person's number goes in the request body, never in a URL.
    let shown = match kind {
        IdKind::Uscc => c.clone(),
        IdKind::Person => credfed_protocol::ids::person::mask(&c),
    };
    let cl = client(node)?;
    let r = runtime()?.block_on(async { call(node, cl.post("/v1/check", &request)).await })?;
    let mut full = r.json().map_err(|e| invalid(e.to_string()))?;
    // This region's own declines come beside the answer, not in it: they are kept out
    // of saved answers and evidence files, which hold exactly what verifies.
    let declined = full
        .as_object_mut()
        .and_then(|o| o.remove("declined_here"))
        .unwrap_or(Value::Null);
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
    let mut shown_json = full.clone();
    if !declined.is_null() {
        shown_json["declined_here"] = declined.clone();
    }
    emit(mode, &shown_json, || {
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
        for d in declined.as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "  declined here ({}) on {}: {} from action {}: {}{}\n",
                s(&d["region"]),
                s(&d["declined_on"]),
                s(&d["measure"]),
                s(&d["action"]).chars().take(12).collect::<String>(),
                s(&d["reason"]),
                if d["mandatory"] == json!(true) {
                    " (mandatory by law all the same)"
                } else {
                    ""
                }
            ));
        }
        for c in v["commitments"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!("  {}\n", commitment_line(&c)));
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
            // Each region's head and how old it is (the time its node signed it).
            let now_ms = now().0;
            let ages: Vec<(String, Option<i64>, bool)> = v["freshness"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    (
                        s(&f["region"]),
                        f["head_time"].as_i64().map(|t| (now_ms - t).max(0) / 1000),
                        f["equivocated"] == json!(true),
                    )
                })
                .collect();
            let oldest = ages.iter().filter_map(|a| a.1).max().unwrap_or(0);
            out.push_str(&format!(
                "  proven under a federation checkpoint of {} regions as of {}; oldest region head {oldest}s\n",
                ages.len(),
                v["as_of"]
                    .as_i64()
                    .map_or("-".into(), |t| cst_time(u64::try_from(t / 1000).unwrap_or(0)))
            ));
            let excluded: Vec<&str> = ages.iter().filter(|a| a.2).map(|a| a.0.as_str()).collect();
            if !excluded.is_empty() {
                out.push_str(&format!(
                    "  WARNING: excluded for equivocation (nothing of theirs proven): {}\n",
                    excluded.join(" ")
                ));
            }
            let old: Vec<String> = ages
                .iter()
                .filter(|a| a.1.is_some_and(|x| x > 60))
                .map(|a| format!("{} {}s", a.0, a.1.unwrap_or(0)))
                .collect();
            if !old.is_empty() {
                out.push_str(&format!(
                    "  regions whose head is over a minute old (cut off, or a wrong clock): {}\n",
                    old.join(", ")
                ));
            }
        }
        if let Some(p) = save {
            out.push_str(&format!(
                "  answer with evidence saved to {} (verify with `credfed verify`)\n",
                p.display()
            ));
        }
        if let Some(p) = outputs.evidence {
            out.push_str(&format!(
                "  evidence file written to {} (check it anywhere with `credfed verify {} --authority-key <the federation authority's public key>`: it carries the manifest)\n",
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
    Timestamp::from_seconds(seconds).cst_string()
}

/// The freshness bound of `credfed verify`.
pub struct Freshness {
    /// Oldest acceptable federation checkpoint and region head, seconds.
    pub max_age: u64,
    /// Verify as of this instant instead of now.
    pub at: Option<u64>,
    /// Accept an answer in which some regions are stale or excluded (exit 6 then).
    pub partial: bool,
}

/// Where the manifest comes from and whether its authority is pinned.
pub struct Trust<'a> {
    /// The manifest file given (`--manifest`), if any.
    pub manifest: Option<&'a Path>,
    /// The federation authority's public key (hex), if pinned.
    pub authority_key: Option<&'a str>,
    /// Verify against the manifest without checking who signed it.
    pub trust_manifest: bool,
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
    if bytes.starts_with(b"credfed evidence") {
        // An evidence file that does not decode was changed or cut: that is a failed
        // verification, not a usage error.
        return ProvenAnswer::from_file(&bytes)
            .map(|p| Saved::Proven(Box::new(p)))
            .map_err(|e| {
                Failure::new(
                    exit::UNVERIFIED,
                    format!("NOT VERIFIED: {}: {e}", path.display()),
                )
            });
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        invalid(format!(
            "{}: neither an evidence file nor a JSON answer: {e}",
            path.display()
        ))
    })?;
    // A JSON answer must be exactly the answer it parses to: a field no answer has
    // (JSON parsing would ignore it) or a value in another spelling is refused, so that
    // nothing in the file escapes verification. A plain answer's `last_contact_ms` is
    // the node's word, said so in docs/cli.md.
    let unchanged = |parsed: serde_json::Result<Value>, mut original: Value| {
        if let Some(o) = original.as_object_mut()
            && !o.contains_key("federation_note")
        {
            o.remove("last_contact_ms");
        }
        // Answers saved before commitments were records have no `commitments`: absent
        // reads as none, which verification then recomputes like every other claim.
        let answer = match original.get_mut("answer") {
            Some(a) => a,
            None => &mut original,
        };
        if let Some(o) = answer.as_object_mut() {
            o.entry("commitments").or_insert_with(|| json!([]));
        }
        match parsed {
            Ok(back) if back == original => Ok(()),
            Ok(back) => Err(Failure::new(
                exit::UNVERIFIED,
                format!(
                    "NOT VERIFIED: {}: {} is no part of an answer as the node gave it: the file was changed",
                    path.display(),
                    first_difference(&original, &back, "")
                ),
            )),
            Err(e) => Err(invalid(e.to_string())),
        }
    };
    if v.get("federation_note").is_some() {
        let p: ProvenAnswer = serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("{}: not a proven answer: {e}", path.display())))?;
        unchanged(serde_json::to_value(&p), v)?;
        Ok(Saved::Proven(Box::new(p)))
    } else {
        let a: CheckAnswer = serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("{}: not a check answer: {e}", path.display())))?;
        unchanged(serde_json::to_value(&a), v)?;
        Ok(Saved::Plain(Box::new(a)))
    }
}

/// Where `original` first differs from `parsed` (its answer re-serialised), as a path
/// like `answer.note`.
fn first_difference(original: &Value, parsed: &Value, at: &str) -> String {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_owned()
        } else {
            format!("{at}.{k}")
        }
    };
    match (original, parsed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    None => return join(k),
                    Some(w) if w != v => return first_difference(v, w, &join(k)),
                    Some(_) => {}
                }
            }
            at.to_owned()
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map_or(at.to_owned(), |(i, (x, y))| {
                first_difference(x, y, &format!("{at}[{i}]"))
            }),
        _ => at.to_owned(),
    }
}

/// The manifest to verify against: the one given or the one the file carries — the
/// one its federation checkpoint names when both are at hand — checked against the
/// pinned authority, or taken as it stands when the caller said to trust it.
fn manifest_for(
    trust: &Trust<'_>,
    carried: Option<&SignedManifest>,
    named: Option<credfed_protocol::federation::ManifestRef>,
    at: Timestamp,
) -> Result<(Manifest, bool), Failure> {
    let given = match trust.manifest {
        Some(path) => Some(
            serde_json::from_str::<SignedManifest>(
                &std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?,
            )
            .map_err(|e| invalid(format!("{}: not a signed manifest: {e}", path.display())))?,
        ),
        None => None,
    };
    let named_hash = named.map(|n| n.hash);
    let signed = match (given, carried) {
        (Some(g), Some(c)) if Some(g.hash()) != named_hash && Some(c.hash()) == named_hash => {
            c.clone()
        }
        (Some(g), _) => g,
        (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(invalid(
                "no manifest: the file carries none; pass --manifest FILE (the federation's signed manifest)",
            ));
        }
    };
    match (trust.authority_key, trust.trust_manifest) {
        (Some(k), _) => {
            let key =
                PublicKey::from_hex(k).map_err(|e| invalid(format!("--authority-key: {e}")))?;
            let m = signed
                .verify(&key, at)
                .map_err(|e| Failure::new(exit::UNVERIFIED, format!("NOT VERIFIED: {e}")))?;
            Ok((m, true))
        }
        (None, true) => Ok((
            credfed_protocol::codec::decode::<Manifest>(
                &signed.manifest,
                credfed_protocol::limits::MAX_MANIFEST_BYTES,
                "manifest",
            )
            .map_err(|e| invalid(e.to_string()))?,
            false,
        )),
        (None, false) => Err(Failure::new(
            exit::UNPINNED,
            "NOT VERIFIED: the federation authority is not pinned, so any self-made manifest would do; \
             pass --authority-key HEX (the authority's public key, from your operator or CREDFED_AUTHORITY_KEY), \
             or --trust-manifest to verify against the manifest as it stands",
        )),
    }
}

pub fn verify(
    mode: Output,
    answer: &Path,
    trust: Trust<'_>,
    freshness: Freshness,
    person: Option<(&str, &NodeArgs)>,
) -> Res {
    let saved = read_saved(answer)?;
    let (as_of, carried, named) = match &saved {
        Saved::Plain(a) => (a.as_of, None, None),
        Saved::Proven(p) => (
            p.answer.as_of,
            p.signed_manifest.as_ref(),
            p.manifest_named(),
        ),
    };
    let (m, pinned) = manifest_for(&trust, carried, named, as_of)?;
    let catalogue = Catalogue::parse(&m.catalogue)
        .map_err(|e| invalid(format!("the manifest's catalogue: {e}")))?;
    let unpinned_line = format!(
        "UNPINNED: verified against manifest {} v{} as it stands; who signed it was not checked (--trust-manifest)",
        m.federation_id, m.version
    );
    match saved {
        Saved::Plain(a) => {
            let report = verify_answer(&a, &m, &catalogue);
            let v = json!({"ok": report.ok(), "proven": false, "envelopes_verified": report.envelopes_verified, "entries_confirmed": report.entries_confirmed, "failures": report.failures, "authority_pinned": pinned});
            emit(mode, &v, || {
                let mut out = String::new();
                if !pinned {
                    out.push_str(&unpinned_line);
                    out.push('\n');
                }
                out.push_str(&if report.ok() {
                    format!(
                        "VERIFIED (NOT PROVEN COMPLETE): {} in {}: {} at {} (the node's time)\n  {} envelopes, {} entries confirmed against manifest {} v{}\n  an answer without proofs shows that what it lists is genuine, not that it is complete or current: ask with --proofs",
                        subject_text(&a.subject, &a.evidence),
                        a.domain.name(),
                        credfed_protocol::check::verdict_name(a.verdict),
                        cst_time_ms(a.as_of),
                        report.envelopes_verified,
                        report.entries_confirmed,
                        m.federation_id,
                        m.version
                    )
                } else {
                    format!(
                        "NOT VERIFIED: {} problem(s)\n  {}",
                        report.failures.len(),
                        report.failures.join("\n  ")
                    )
                });
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
        Saved::Proven(p) => verify_proven(
            mode,
            &p,
            &m,
            &catalogue,
            pinned,
            &unpinned_line,
            freshness,
            person,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_proven(
    mode: Output,
    p: &ProvenAnswer,
    m: &Manifest,
    catalogue: &Catalogue,
    pinned: bool,
    unpinned_line: &str,
    freshness: Freshness,
    person: Option<(&str, &NodeArgs)>,
) -> Res {
    let now = freshness
        .at
        .unwrap_or_else(|| u64::try_from(now().0 / 1000).unwrap_or(0));
    let report = verify_proven_answer(p, m, catalogue, now, freshness.max_age);
    // The person the file is about, confirmed through the verifier's own node.
    let mut extra = Vec::new();
    let mut person_line = None;
    if let (Some((number, node)), SubjectKey::Person(key)) = (person, &p.answer.subject) {
        match person_key_of(number, node) {
            Ok((hash, masked)) if &hash == key => {
                person_line = Some(format!(
                    "the person is {masked}: the file's person key is this number's, as your node computes it"
                ));
            }
            Ok((_, masked)) => extra.push(format!(
                "--person: the file is about another person than {masked} (its person key is not this number's)"
            )),
            Err(e) => return Err(e),
        }
    }
    let stale: Vec<&credfed_protocol::federation::RegionReport> =
        report.regions.iter().filter(|r| r.stale).collect();
    let excluded: Vec<&credfed_protocol::federation::RegionReport> = report
        .regions
        .iter()
        .filter(|r| r.standing == RegionStanding::Excluded)
        .collect();
    let judged =
        credfed_protocol::federation::judge(&report, extra, freshness.max_age, freshness.partial);
    let failures = judged.failures;
    let status = match judged.status {
        credfed_protocol::federation::VerificationStatus::Verified => "verified",
        credfed_protocol::federation::VerificationStatus::Partial => "partial",
        credfed_protocol::federation::VerificationStatus::NotVerified => "not_verified",
    };
    let subject = subject_text(&p.answer.subject, &p.answer.evidence);
    let v = json!({
        "ok": status == "verified", "status": status, "proven": true,
        "subject": p.answer.subject, "subject_shown": subject, "person_confirmed": person_line.is_some(),
        "domain": p.answer.domain, "verdict": report.verdict, "as_of": report.witnessed_at,
        "manifest": {"federation_id": m.federation_id, "version": m.version, "hash": m.hash(), "authority_pinned": pinned},
        "answered_by": report.answered_by,
        "cosigners": report.cosigners, "quorum": report.quorum, "members": m.members.len(),
        "faults_tolerated": m.policy.faults_tolerated,
        "age_seconds": report.age_seconds, "max_age_seconds": freshness.max_age,
        "regions": report.regions, "envelopes_verified": report.answer.envelopes_verified,
        "entries_confirmed": report.answer.entries_confirmed, "failures": failures,
    });
    emit(mode, &v, || {
        let mut out = String::new();
        if !pinned {
            out.push_str(unpinned_line);
            out.push('\n');
        }
        let verdict = report
            .verdict
            .map_or("-", credfed_protocol::check::verdict_name);
        match status {
            "verified" | "partial" => out.push_str(&format!(
                "{}: {subject} in {}: {verdict}{}, as of {} (manifest {} v{})\n",
                if status == "partial" {
                    "VERIFIED, PARTIAL"
                } else {
                    "VERIFIED"
                },
                p.answer.domain.name(),
                if status == "partial" {
                    " for the regions proven fresh"
                } else {
                    ""
                },
                cst_time(report.witnessed_at),
                m.federation_id,
                m.version
            )),
            _ => out.push_str(&format!(
                "NOT VERIFIED: {} problem(s) — do not rely on this answer\n  {}\n",
                failures.len(),
                failures.join("\n  ")
            )),
        }
        if let Some(l) = &person_line {
            out.push_str(&format!("  {l}\n"));
        } else if matches!(p.answer.subject, SubjectKey::Person(_)) {
            out.push_str("  a person's answer names them by a key only the federation's nodes compute: pass --person NUMBER (with your node's --node, --ca, --cert, --cert-key) to confirm whom it is about\n");
        }
        for r in &excluded {
            out.push_str(&format!(
                "WARNING: {} signed two different records at #{} (proof in the file): it is excluded, and nothing about its records is proven\n",
                r.region,
                r.equivocated_at.unwrap_or(0)
            ));
        }
        for r in &stale {
            out.push_str(&format!(
                "WARNING: {} is stale: its head was signed {} before the instant verified (limit {}s)\n",
                r.region,
                r.age_seconds.map_or("an unknown time".into(), |a| format!("{a}s")),
                freshness.max_age
            ));
        }
        if report.cosigners.is_empty() {
            out.push_str("  no cosignature on the federation checkpoint verified\n");
        } else {
            out.push_str(&format!(
                "  federation checkpoint cosigned by {} of {} members (quorum {}, tolerating {} faulty), {}s before {} (limit {}s); answered and signed by {}\n",
                report.cosigners.len(),
                m.members.len(),
                report.quorum,
                m.policy.faults_tolerated,
                report.age_seconds,
                if freshness.at.is_some() { "the instant given" } else { "now" },
                freshness.max_age,
                report.answered_by
            ));
        }
        let rows: Vec<Vec<String>> = report
            .regions
            .iter()
            .map(|r| {
                vec![
                    r.region.to_string(),
                    if r.standing == RegionStanding::Excluded {
                        "-".into()
                    } else {
                        r.size.to_string()
                    },
                    r.signed_at.map_or("-".into(), cst_time),
                    match (r.age_seconds, r.stale) {
                        (Some(a), true) => format!("{a}s STALE"),
                        (Some(a), false) => format!("{a}s"),
                        (None, _) => "-".into(),
                    },
                    match r.standing {
                        RegionStanding::ProvenAbsent => "none (proven absent)".into(),
                        RegionStanding::AllShown if r.naming_records == r.records => {
                            format!("{} record(s), all shown", r.records)
                        }
                        RegionStanding::AllShown => format!(
                            "{} record(s), all shown ({} naming the subject)",
                            r.records, r.naming_records
                        ),
                        RegionStanding::Excluded => format!(
                            "EXCLUDED (equivocated at #{})",
                            r.equivocated_at.unwrap_or(0)
                        ),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "region",
                "records in head",
                "head signed",
                "age",
                "about this subject",
            ],
            &rows,
        ));
        out.push('\n');
        for (kind, list) in [
            ("mandatory", &p.answer.mandatory),
            ("recommended", &p.answer.recommended),
        ] {
            // One line per measure, region and basis, however many entries it comes
            // from (a company listed 50 times bears one restriction).
            let grouped = tally(list.iter().map(|a| {
                (
                    a.code.0.as_str(),
                    a.title_zh.as_str(),
                    a.region,
                    a.basis.as_str(),
                )
            }));
            for ((code, title, region, basis), n) in grouped {
                let from = if n == 1 {
                    format!("{region}")
                } else {
                    format!("{n} entries of {region}")
                };
                out.push_str(&format!(
                    "  {kind}: {code} {title} (from {from}; {basis})\n"
                ));
            }
        }
        let reasons = tally(
            p.answer
                .withheld
                .iter()
                .map(|w| format!("{} {}: {}", w.measure.code.0, w.measure.title_zh, w.reason)),
        );
        for (line, n) in reasons {
            let times = if n > 1 {
                format!(" ({n} entries)")
            } else {
                String::new()
            };
            out.push_str(&format!("  withheld: {line}{times}\n"));
        }
        for c in &p.answer.commitments {
            out.push_str(&format!(
                "  {}\n",
                commitment_line(&serde_json::to_value(c).unwrap_or_default())
            ));
        }
        out.push_str(&format!(
            "  {} envelopes verified, {} entries confirmed; every field recomputed from the proven evidence",
            report.answer.envelopes_verified, report.answer.entries_confirmed
        ));
        out
    });
    match status {
        "verified" => Ok(()),
        "partial" => Err(Failure::new(
            exit::PARTIAL,
            "verified, but not every region is covered fresh (stale or excluded regions listed above)",
        )),
        _ => Err(Failure::new(
            exit::UNVERIFIED,
            format!("{} problem(s) in the answer", failures.len()),
        )),
    }
}

/// Each distinct item with how many times it occurs, in order of first occurrence.
fn tally<K: PartialEq>(items: impl Iterator<Item = K>) -> Vec<(K, usize)> {
    let mut out: Vec<(K, usize)> = Vec::new();
    for k in items {
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some((_, n)) => *n += 1,
            None => out.push((k, 1)),
        }
    }
    out
}

/// Evidence against a member, as `credfed verify-evidence` reads it.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum MemberEvidence {
    /// Two envelopes the region's node signed at one position.
    Equivocation(credfed_protocol::ledger::EquivocationProof),
    /// Two checkpoints the region's node signed with one size and different roots.
    SplitView {
        /// The two signed notes.
        notes: [String; 2],
    },
}

pub fn verify_evidence(mode: Output, evidence: &Path, trust: Trust<'_>) -> Res {
    let text = std::fs::read_to_string(evidence)
        .map_err(|e| invalid(format!("{}: {e}", evidence.display())))?;
    let parsed: MemberEvidence = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{}: neither equivocation evidence {{region, seq, first, second}} nor {{notes: [two checkpoints]}}: {e}",
            evidence.display()
        ))
    })?;
    let (m, pinned) = manifest_for(&trust, None, None, now())?;
    let result: Result<(RegionCode, String), String> = match parsed {
        MemberEvidence::Equivocation(p) => {
            credfed_protocol::ledger::verify_equivocation(&m, &m.federation_id, &p.first, &p.second)
                .and_then(|region| {
                    let seq =
                        credfed_protocol::envelope::decode_envelope(&m.federation_id, &p.first)
                            .map(|v| v.envelope.seq)
                            .map_err(|e| e.to_string())?;
                    Ok((
                        region,
                        format!("its node signed two different envelopes at #{seq} (equivocation)"),
                    ))
                })
        }
        MemberEvidence::SplitView { notes } => (|| {
            let a = credfed_protocol::checkpoint::SignedCheckpoint::parse(&notes[0])
                .map_err(|e| format!("notes[0]: {e}"))?;
            let b = credfed_protocol::checkpoint::SignedCheckpoint::parse(&notes[1])
                .map_err(|e| format!("notes[1]: {e}"))?;
            let ra = credfed_protocol::witness::checkpoint_region(&a, &m)
                .map_err(|e| format!("notes[0]: {e}"))?;
            let rb = credfed_protocol::witness::checkpoint_region(&b, &m)
                .map_err(|e| format!("notes[1]: {e}"))?;
            if ra != rb {
                return Err(format!("the notes are of two regions ({ra}, {rb})"));
            }
            if a.checkpoint.size != b.checkpoint.size || a.checkpoint.root == b.checkpoint.root {
                return Err("the notes do not contradict each other: a split view is two checkpoints of one size with different roots".into());
            }
            Ok((
                ra,
                format!(
                    "its node signed two different roots for its first {} records (a split view)",
                    a.checkpoint.size
                ),
            ))
        })(),
    };
    let v = json!({
        "ok": result.is_ok(),
        "region": result.as_ref().ok().map(|(r, _)| r.to_string()),
        "finding": result.as_ref().ok().map(|(_, f)| f.clone()),
        "failure": result.as_ref().err(),
        "authority_pinned": pinned,
    });
    emit(mode, &v, || {
        let mut out = String::new();
        if !pinned {
            out.push_str(&format!(
                "UNPINNED: verified against manifest {} v{} as it stands (--trust-manifest)\n",
                m.federation_id, m.version
            ));
        }
        match &result {
            Ok((r, finding)) => out.push_str(&format!(
                "VERIFIED: {r} ({}): {finding}; signed with the node key manifest {} v{} names",
                m.member(*r).map_or("", |x| x.name.as_str()),
                m.federation_id,
                m.version
            )),
            Err(e) => out.push_str(&format!("NOT VERIFIED: {e}")),
        }
        out
    });
    result
        .map(|_| ())
        .map_err(|e| Failure::new(exit::UNVERIFIED, e))
}

/// How a reader recognises the subject: the USCC, or for a person the name and masked
/// number a record in the evidence gives for their key (as the subject of an entry or
/// evaluation, or as a related person) — the key alone names no one.
fn subject_text(subject: &SubjectKey, evidence: &[credfed_protocol::check::Evidence]) -> String {
    let key = match subject {
        SubjectKey::Uscc(c) => return c.clone(),
        SubjectKey::Person(key) => key,
    };
    let mut named = None;
    for e in evidence {
        // Names only: the envelopes' signatures are checked by the verification this
        // line is printed beside.
        let Ok(env) = credfed_protocol::codec::decode::<credfed_protocol::envelope::Envelope>(
            &e.envelope,
            credfed_protocol::limits::MAX_ENVELOPE_BYTES,
            "envelope",
        ) else {
            continue;
        };
        let Ok(body) = Body::decode(&env.body) else {
            continue;
        };
        let entry = match &body {
            Body::ListEntryPublished(e) | Body::ListEntryAmended { amended: e, .. } => Some(e),
            _ => None,
        };
        if let Some(e) = entry {
            let persons = std::iter::once(&e.subject)
                .filter_map(|s| match s {
                    Subject::Person(p) => Some(p),
                    Subject::Organisation { .. } => None,
                })
                .chain(e.related_persons.iter().map(|r| &r.person));
            for p in persons {
                if &p.id_hash == key {
                    named = Some(format!("{} ({})", p.name, p.masked));
                }
            }
        }
        if let Body::EvaluationPublished(ev) = &body
            && let Subject::Person(p) = &ev.subject
            && &p.id_hash == key
        {
            named = Some(format!("{} ({})", p.name, p.masked));
        }
    }
    match named {
        Some(n) => format!("person {n}"),
        None => format!("the person with key {}…", &key.to_hex()[..12]),
    }
}

/// The person key and mask of `number` as the verifier's own node computes them.
fn person_key_of(
    number: &str,
    node: &NodeArgs,
) -> Result<(credfed_protocol::crypto::Hash256, String), Failure> {
    let n = number.trim().to_ascii_uppercase();
    resident_id::validate(&n, "--person").map_err(|e| invalid(e.to_string()))?;
    let cl = client(node)?;
    let request = credfed_client::PersonRefsRequest {
        persons: vec![credfed_client::PersonToHash {
            number: n.clone(),
            name: "-".into(),
        }],
    };
    let r =
        runtime()?.block_on(async { call(node, cl.post("/v1/persons/refs", &request)).await })?;
    let answer: credfed_client::PersonRefsAnswer = r
        .json()
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .map_err(|e| invalid(format!("the node's answer to /v1/persons/refs: {e}")))?;
    let first = answer
        .refs
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the node's answer to /v1/persons/refs is empty"))?;
    Ok((first.id_hash, first.masked))
}

/// "2026-11-27 17:30:12 CST" for a timestamp in milliseconds.
/// A commitment shown by a check (article 四), as a person reads it.
fn commitment_line(c: &Value) -> String {
    let id = s(&c["id"]).chars().take(12).collect::<String>();
    match c["state"].as_str() {
        Some("breached") => format!(
            "commitment BREACHED: {} found on {} that {} for {} was not kept (due {}; commitment {id})",
            s(&c["region"]),
            s(&c["settled_on"]),
            s(&c["acceptance_no"]),
            s(&c["matter"]),
            s(&c["due_on"])
        ),
        _ => format!(
            "commitment overdue: {} for {} was due {} and {} has not recorded it kept or breached (commitment {id})",
            s(&c["acceptance_no"]),
            s(&c["matter"]),
            s(&c["due_on"]),
            s(&c["region"])
        ),
    }
}

fn cst_time_ms(t: Timestamp) -> String {
    cst_time(u64::try_from(t.0 / 1000).unwrap_or(0))
}

pub fn inbox(
    mode: Output,
    kind: Option<TaskKindArg>,
    overdue: bool,
    limit: usize,
    offset: usize,
    node: &NodeArgs,
) -> Res {
    let mut path = format!("/v1/inbox?limit={limit}&offset={offset}");
    if let Some(k) = kind {
        let name = match k {
            TaskKindArg::Acknowledge => "acknowledge",
            TaskKindArg::ReportExecution => "report_execution",
            TaskKindArg::Lift => "lift",
            TaskKindArg::ResolveObjection => "resolve_objection",
            TaskKindArg::DecideRepair => "decide_repair",
            TaskKindArg::SettleCommitment => "settle_commitment",
        };
        path.push_str(&format!("&kind={name}"));
    }
    if overdue {
        path.push_str("&overdue=true");
    }
    let v = get_json(node, &path)?;
    emit(mode, &v, || {
        let empty = Vec::new();
        let tasks = v["tasks"].as_array().unwrap_or(&empty);
        let rows: Vec<Vec<String>> = tasks
            .iter()
            .map(|t| {
                let (what, id) = t["about"]
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .map(|(k, v)| (k.clone(), s(v)))
                    .unwrap_or_default();
                vec![
                    format!(
                        "{}{}{}",
                        s(&t["due"]),
                        if t["due_estimated"] == json!(true) {
                            "~"
                        } else {
                            ""
                        },
                        if t["overdue"] == json!(true) {
                            " OVERDUE"
                        } else {
                            ""
                        }
                    ),
                    s(&t["kind"]),
                    match t["application"].as_str() {
                        Some(a) => format!("{what} {id} application {a}"),
                        None => format!("{what} {id}"),
                    },
                    s(&t["measures"]),
                    s(&t["entry_state"]),
                ]
            })
            .collect();
        let mut out = format!(
            "inbox of {} ({}) on {}: {} tasks, {} overdue\n{}",
            s(&v["department"]),
            s(&v["region"]),
            s(&v["as_of"]),
            s(&v["total"]),
            s(&v["overdue"]),
            table(&["due", "task", "about", "measures", "entry"], &rows)
        );
        if let Some(next) = v["next_offset"].as_u64() {
            out.push_str(&format!("\nmore: credfed inbox --offset {next}"));
        }
        if v["truncated"] == json!(true) {
            out.push_str("\nthe region has more due tasks than an inbox reads: the oldest are shown; clear them first");
        }
        if tasks.iter().any(|t| t["due_estimated"] == json!(true)) {
            out.push_str("\n~ due date beyond the node's working-day calendar: counted as if every later weekday were a working day");
        }
        out
    });
    Ok(())
}

pub fn stats(mode: Output, node: &NodeArgs) -> Res {
    let v = get_json(node, "/v1/stats")?;
    emit(mode, &v, || {
        // Each count map as a two-column table under its heading.
        let section = |title: &str, key: &str, what: &str| {
            let rows: Vec<Vec<String>> = v[key]
                .as_object()
                .map(|o| o.iter().map(|(k, n)| vec![k.clone(), s(n)]).collect())
                .unwrap_or_default();
            if rows.is_empty() {
                format!("{title}: none")
            } else {
                format!("{title}\n{}", table(&[what, "count"], &rows))
            }
        };
        let median = v["median_acknowledgement_ms"]
            .as_i64()
            .map(|ms| format!("{:.1} h", ms as f64 / 3_600_000.0))
            .unwrap_or_else(|| "-".into());
        [
            section("Entries by list", "entries_by_list", "list"),
            section("Entries by category", "entries_by_category", "category"),
            section("Entries by issuing region", "entries_by_region", "region"),
            section("Entries by state today", "entries_by_state", "state"),
            section(
                "Action targets by status (跟踪问效)",
                "action_targets_by_status",
                "status",
            ),
            section(
                "Mandatory measures declined, by region (non-compliance)",
                "mandatory_measures_declined_by_region",
                "region",
            ),
            format!(
                "overdue acknowledgements {}, overdue objections {}, median acknowledgement {median}",
                s(&v["overdue_acknowledgements"]),
                s(&v["overdue_objections"])
            ),
        ]
        .join("\n\n")
    });
    Ok(())
}

pub fn status(mode: Output, node: &NodeArgs) -> Res {
    let v = get_json(node, "/v1/status")?;
    emit(mode, &v, || {
        let t = table(
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
        );
        let mut out = t;
        if let Some(why) = v["writes_paused_reason"].as_str() {
            out.push_str(&format!("\nwrites paused: {why}"));
        }
        for key in [
            "calendar_warning",
            "manifest_warning",
            "manifest_versions_warning",
            "manifest_refused",
            "certificates_warning",
        ] {
            if let Some(w) = v[key].as_str() {
                out.push_str(&format!("\nWARNING: {w}"));
            }
        }
        let pk = &v["person_keys"];
        if pk["configured"] == serde_json::json!(true) {
            out.push_str(&format!(
                "\nperson keys: {} ({} of {} members holding shares reachable, {} needed)",
                if pk["available"] == serde_json::json!(true) {
                    "available"
                } else {
                    "UNAVAILABLE: person checks and publications naming persons are refused"
                },
                pk["reachable"],
                pk["members_with_shares"],
                pk["threshold"]
            ));
            for (what, map) in [
                (
                    "members that failed to answer this node",
                    &pk["member_failures"],
                ),
                (
                    "asking members this node refused over their budget",
                    &pk["over_budget"],
                ),
            ] {
                if let Some(m) = map.as_object().filter(|m| !m.is_empty()) {
                    let list: Vec<String> = m.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
                    out.push_str(&format!("\nperson keys, {what}: {}", list.join(", ")));
                }
            }
            if let Some(m) = pk["over_budget_reported"]
                .as_object()
                .filter(|m| !m.is_empty())
            {
                let list: Vec<String> = m
                    .iter()
                    .map(|(asker, by)| {
                        let by: Vec<String> = by
                            .as_object()
                            .map(|b| b.iter().map(|(r, n)| format!("{r} ×{n}")).collect())
                            .unwrap_or_default();
                        format!("{asker} (by {})", by.join(", "))
                    })
                    .collect();
                out.push_str(&format!(
                    "\nperson keys, asking members other members report refusing over their budget: {}",
                    list.join("; ")
                ));
            }
        } else {
            out.push_str("\nperson keys: not set up (the manifest has no person_key; person checks are refused; the members make one with `credfed person-key start`, docs/operator.md)");
        }
        out
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
            .map(|(r, p)| {
                let contact = v["last_contact_ms"][r]
                    .as_i64()
                    .map(|t| {
                        format!(
                            "{} ({}s ago)",
                            cst_time_ms(Timestamp(t)),
                            (now().0 - t).max(0) / 1000
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                vec![r.clone(), s(p), contact]
            })
            .collect();
        table(&["region", "peer id", "last contact"], &rows)
    });
    Ok(())
}

/// A listing table's column: its header and how a line's JSON gives its cell.
pub type Column<'a> = (&'a str, &'a dyn Fn(&Value) -> String);

/// A listing page (`GET /v1/entries`, `/v1/evaluations`, `/v1/actions`): the query
/// built from the filters, a table of `columns` for people.
pub fn list(
    mode: Output,
    path: &str,
    extra: &[(&str, &Option<String>)],
    f: &ListArgs,
    node: &NodeArgs,
    columns: &[Column<'_>],
) -> Res {
    let mut query = vec![format!("limit={}", f.limit)];
    let given = [
        ("region", &f.region),
        ("department", &f.department),
        ("state", &f.state),
        ("name", &f.name),
        ("from", &f.from),
        ("to", &f.to),
        ("cursor", &f.cursor),
    ];
    for (k, v) in given.iter().chain(extra.iter()) {
        if let Some(v) = v {
            query.push(format!("{k}={}", crate::output::query_value(v)));
        }
    }
    let v = get_json(node, &format!("{path}?{}", query.join("&")))?;
    emit(mode, &v, || {
        let empty = Vec::new();
        let items = v["items"].as_array().unwrap_or(&empty);
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|item| columns.iter().map(|(_, c)| c(item)).collect())
            .collect();
        let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
        let mut out = table(&headers, &rows);
        match v["next_cursor"].as_str() {
            Some(c) => out.push_str(&format!("\n{} shown; more: add --cursor {c}", items.len())),
            None => out.push_str(&format!("\n{} shown; no more", items.len())),
        }
        out
    });
    Ok(())
}

/// The first 12 hex digits of an id: what tables show and commands take back.
pub fn short_id(v: &Value) -> String {
    v.as_str().unwrap_or("-").chars().take(12).collect()
}

/// Follows the node's event stream, one line per event (JSON Lines with `--output
/// json`), until `count` events or the stream ends.
pub fn events(mode: Output, from: Option<&str>, count: Option<usize>, node: &NodeArgs) -> Res {
    use std::io::Write;
    let cl = client(node)?;
    let mut seen = 0usize;
    let mut broken_pipe = false;
    let result = runtime()?.block_on(cl.follow_events(from, |e| {
        let line = match mode {
            Output::Json => json!({"id": e.id, "event": e.event, "data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::String(e.data.clone()))}).to_string(),
            Output::Text => {
                let d: Value = serde_json::from_str(&e.data).unwrap_or_default();
                format!(
                    "{}#{} {} by {} at {}   (resume: --from {})",
                    s(&d["region"]),
                    s(&d["seq"]),
                    e.event,
                    s(&d["author"]),
                    d["at"]
                        .as_i64()
                        .map(|t| cst_time_ms(Timestamp(t)))
                        .unwrap_or_default(),
                    e.id
                )
            }
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            broken_pipe = true;
            return false;
        }
        seen += 1;
        count.is_none_or(|n| seen < n)
    }));
    if broken_pipe {
        return Ok(());
    }
    result.map_err(|e| client_failure(node, e))
}

/// The supervision report: a table of the region lines (and their departments), or CSV.
pub fn report(
    mode: Output,
    period: &str,
    from: Option<&str>,
    to: Option<&str>,
    csv: bool,
    xlsx: Option<&std::path::Path>,
    node: &NodeArgs,
) -> Res {
    let mut path = format!("/v1/reports?period={period}");
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={v}"));
        }
    }
    let v = get_json(node, &path)?;
    if csv {
        let lines: Vec<credfed_protocol::report::ReportLine> =
            serde_json::from_value(v["lines"].clone())
                .map_err(|e| invalid(format!("the node's report: {e}")))?;
        print!("{}", credfed_protocol::report::to_csv(&lines));
        return Ok(());
    }
    if let Some(file) = xlsx {
        let book = crate::xlsx::report_workbook(&v)
            .map_err(|e| Failure::new(exit::INVALID, format!("--xlsx: {e}")))?;
        std::fs::write(file, book).map_err(|e| {
            Failure::new(
                exit::INVALID,
                format!("--xlsx {}: {e}; choose a writable path", file.display()),
            )
        })?;
        eprintln!(
            "{} report lines written to {}",
            v["lines"].as_array().map_or(0, Vec::len),
            file.display()
        );
        return Ok(());
    }
    emit(mode, &v, || {
        let opt = |x: &Value| x.as_f64().map(|f| format!("{f:.1}")).unwrap_or("—".into());
        let rows: Vec<Vec<String>> = v["lines"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| {
                vec![
                    s(&l["period"]),
                    s(&l["region"]),
                    l["department"].as_str().unwrap_or("(region)").to_owned(),
                    format!("{}/{}", s(&l["acknowledged"]), s(&l["actions_asked"])),
                    s(&l["acknowledgements_overdue"]),
                    format!(
                        "{} ({} mandatory)",
                        s(&l["declined"]),
                        s(&l["mandatory_declined"])
                    ),
                    opt(&l["median_acknowledgement_hours"]),
                    format!(
                        "{}/{}",
                        s(&l["measures_executed"]),
                        s(&l["measures_accepted"])
                    ),
                    format!("{}/{}", s(&l["disclosed_late"]), s(&l["entries_published"])),
                    format!(
                        "{}/{} ({} overdue)",
                        s(&l["objections_resolved"]),
                        s(&l["objections_received"]),
                        s(&l["objections_overdue"])
                    ),
                    format!(
                        "{}/{} ({} overdue)",
                        s(&l["repairs_decided"]),
                        s(&l["repairs_received"]),
                        s(&l["repairs_overdue"])
                    ),
                    format!(
                        "{}/{}",
                        s(&l["decisions_disclosed_late"]),
                        s(&l["decisions_disclosed"])
                    ),
                    s(&l["checks"]),
                    format!(
                        "{} kept, {} breached, {} overdue of {}",
                        s(&l["commitments_fulfilled"]),
                        s(&l["commitments_breached"]),
                        s(&l["commitments_overdue"]),
                        s(&l["commitments_made"])
                    ),
                ]
            })
            .collect();
        if rows.is_empty() {
            return format!(
                "nothing arose between {} and {}\n",
                s(&v["from"]),
                s(&v["to"])
            );
        }
        table(
            &[
                "period",
                "region",
                "department",
                "answered/asked",
                "overdue",
                "declined",
                "ack h (median)",
                "executed/accepted",
                "late/published",
                "objections",
                "repairs",
                "双公示 late/disclosed",
                "checks",
                "commitments",
            ],
            &rows,
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tally;

    /// A measure that comes from many entries is printed once, with their number.
    #[test]
    fn tally_counts_each_distinct_item_in_first_seen_order() {
        let got = tally(["b", "a", "b", "b", "c"].into_iter());
        assert_eq!(got, vec![("b", 3), ("a", 1), ("c", 1)]);
    }
}

//! The person key's ceremonies from a member's side (`credfed person-key …`) and the
//! authority's step that puts their result into a draft manifest
//! (`credfed federation person-key`); docs/operator.md, "Person keys".

use std::time::{Duration, Instant};

use credfed_client::{CeremonyRequest, CeremonyResult, CeremonyState, CeremonyStatus};

use super::*;

pub fn person_key(mode: Output, cmd: PersonKeyCmd) -> Res {
    match cmd {
        PersonKeyCmd::Start {
            label,
            refresh,
            repair,
            threshold,
            members,
            wait,
            node,
        } => {
            let kind = match (&repair, refresh) {
                (Some(_), _) => "repair",
                (None, true) => "refresh",
                (None, false) => "generate",
            };
            let request = CeremonyRequest {
                kind: kind.into(),
                label,
                threshold,
                members: (!members.is_empty()).then_some(members),
                member: repair,
            };
            let c = client(&node)?;
            let r = runtime()?
                .block_on(async { c.post("/v1/admin/person-key-ceremony", &request).await })
                .map_err(|e| client_failure(&node, e))?;
            if r.status >= 400 {
                let e = r.error();
                return Err(Failure::new(
                    exit::REFUSED,
                    format!(
                        "the node refused: {} {} (every member's operator starts the same plan: docs/operator.md, \"Person keys\")",
                        r.status, e.message
                    ),
                ));
            }
            let status: CeremonyStatus =
                serde_json::from_str(&r.body).map_err(|e| invalid(e.to_string()))?;
            follow(mode, &node, status, wait)
        }
        PersonKeyCmd::Status { wait, node } => {
            let status = fetch(&node)?;
            follow(mode, &node, status, wait)
        }
    }
}

fn fetch(node: &NodeArgs) -> Result<CeremonyStatus, Failure> {
    let v = get_json(node, "/v1/admin/person-key-ceremony")?;
    serde_json::from_value(v).map_err(|e| invalid(e.to_string()))
}

/// Prints the status; with `wait`, polls until the ceremony ends or the time is up,
/// printing a progress line whenever it moves (to stderr, so that `--output json` stays
/// one document).
fn follow(mode: Output, node: &NodeArgs, mut status: CeremonyStatus, wait: Option<u64>) -> Res {
    if let Some(secs) = wait {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        while status.state == CeremonyState::Running && Instant::now() < deadline {
            let line = progress_line(&status);
            if last.as_ref() != Some(&line) {
                eprintln!("{line}");
                last = Some(line);
            }
            std::thread::sleep(Duration::from_millis(500));
            status = fetch(node)?;
        }
    }
    let v = serde_json::to_value(&status).map_err(|e| invalid(e.to_string()))?;
    emit(mode, &v, || describe(&status));
    match status.state {
        CeremonyState::Failed => Err(Failure::new(
            exit::REFUSED,
            format!(
                "the ceremony failed: {}; every member starts a new plan (another --label)",
                status.error.clone().unwrap_or_default()
            ),
        )),
        CeremonyState::Running if wait.is_some() => Err(Failure::new(
            exit::NOT_YET,
            format!(
                "the ceremony has not ended yet ({}); `credfed person-key status --wait 600` follows it further",
                progress_line(&status)
            ),
        )),
        _ => Ok(()),
    }
}

fn progress_line(s: &CeremonyStatus) -> String {
    let n = s.members.len();
    let waiting: Vec<String> = s.waiting_for.iter().map(|r| r.to_string()).collect();
    let step = if s.kind == "repair" {
        format!(
            "repair: {} of {} helpers' values",
            s.round1_held,
            n.saturating_sub(1)
        )
    } else if s.round1_held < n {
        format!("round 1: {} of {n} packages", s.round1_held)
    } else {
        format!("round 2: {} of {} packages", s.round2_held, n - 1)
    };
    if waiting.is_empty() {
        step
    } else {
        format!(
            "{step}; waiting for {} (has its operator started the same plan?)",
            waiting.join(", ")
        )
    }
}

fn describe(s: &CeremonyStatus) -> String {
    let mut out = format!(
        "{} ceremony {:?} ({}), {} of {} members needed: {}",
        s.kind,
        s.label,
        s.ceremony,
        s.threshold,
        s.members.len(),
        match s.state {
            CeremonyState::Running => format!("running — {}", progress_line(s)),
            CeremonyState::Done if s.share_file.is_none() => {
                "done (this member helped; it writes nothing)".into()
            }
            CeremonyState::Done => "done".into(),
            CeremonyState::Failed => format!("FAILED — {}", s.error.clone().unwrap_or_default()),
        }
    );
    for u in &s.undelivered {
        out.push_str(&format!(
            "\n  not yet delivered to {}: {} message(s){}",
            u.region,
            u.messages,
            u.last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if let (Some(share), "repair") = (&s.share_file, s.kind.as_str()) {
        out.push_str(&format!(
            "\nrepaired share: {} (checked against the public shares)\nnext: a member that lost its share sets person_share_file to it, removes person_share_lost and restarts; a new member's public share goes into the manifest with `credfed federation person-key`",
            share.display()
        ));
    } else if let (Some(share), Some(public)) = (&s.share_file, &s.person_key_file) {
        out.push_str(&format!(
            "\nnew share: {} (keep it and back it up; it is used once the manifest lists these public shares)\npublic shares for the federation authority: {}\nnext: the authority runs `credfed federation person-key DRAFT --from <each member's file>`, signs and distributes the manifest; then set person_share_file to the new share and restart",
            share.display(),
            public.display()
        ));
    }
    out
}

/// The authority's step: every member's result must list the same public shares.
pub fn set_in_draft(
    mode: Output,
    draft: &Path,
    from: &[std::path::PathBuf],
    evaluations_per_day: Option<u32>,
    burst: Option<u32>,
) -> Res {
    let mut m = read_draft(draft)?;
    let mut agreed: Option<(std::path::PathBuf, CeremonyResult)> = None;
    for path in from {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("--from {}: {e}", path.display())))?;
        let result = parse_result(&text).map_err(|e| {
            invalid(format!(
                "--from {}: {e}; give the person-key-*.json a member's node wrote, or the output of `credfed person-key status --output json`",
                path.display()
            ))
        })?;
        if let Some((first, agreed)) = &agreed {
            if agreed.ceremony != result.ceremony {
                return Err(invalid(format!(
                    "--from {}: ceremony {}, but {} is of ceremony {}; give the files of one ceremony",
                    path.display(),
                    result.ceremony,
                    first.display(),
                    agreed.ceremony
                )));
            }
            if (agreed.person_key.threshold, &agreed.person_key.shares)
                != (result.person_key.threshold, &result.person_key.shares)
            {
                return Err(invalid(format!(
                    "--from {}: {} computed other public shares than {} did in the same ceremony; a member saw other packages: do not use this ceremony, run a new one",
                    path.display(),
                    result.written_by,
                    first.display()
                )));
            }
        } else {
            agreed = Some((path.clone(), result));
        }
    }
    let Some((_, result)) = agreed else {
        return Err(invalid("--from: give at least one member's result"));
    };
    let mut person_key = result.person_key;
    let (default_rate, default_burst) = m.person_key.as_ref().map_or(
        (
            credfed_protocol::manifest::DEFAULT_PERSON_EVALUATIONS_PER_DAY,
            credfed_protocol::manifest::DEFAULT_PERSON_EVALUATION_BURST,
        ),
        |p| (p.evaluations_per_day, p.burst),
    );
    person_key.evaluations_per_day = evaluations_per_day.unwrap_or(default_rate);
    person_key.burst = burst.unwrap_or(default_burst);
    let members = person_key.shares.len();
    let threshold = person_key.threshold;
    m.person_key = Some(person_key);
    m.validate().map_err(|e| {
        let text = e.to_string();
        if text.contains("member") {
            invalid(format!(
                "{text}; the ceremony's members must be the draft's members (add or remove members first, or run a ceremony among the draft's members)"
            ))
        } else if text.contains("evaluations_per_day") || text.contains("burst") {
            invalid(format!("{text}; change --evaluations-per-day or --burst"))
        } else {
            invalid(text)
        }
    })?;
    write_json(draft, &m)?;
    let files = from.len();
    emit(
        mode,
        &json!({"draft": draft, "ceremony": result.ceremony, "threshold": threshold,
                "members_with_shares": members, "results_compared": files}),
        || {
            let mut out = format!(
                "{}: person_key set from ceremony {} ({threshold} of {members} members needed; {files} member result(s) agree); sign it with `credfed federation sign`",
                draft.display(),
                result.ceremony
            );
            if files < members {
                out.push_str(&format!(
                    "\nnote: only {files} of the {members} members' results were compared; comparing every member's catches a member that saw other packages"
                ));
            }
            out
        },
    );
    Ok(())
}

/// A result file, or the status JSON of a finished ceremony.
fn parse_result(text: &str) -> Result<CeremonyResult, String> {
    if let Ok(r) = serde_json::from_str::<CeremonyResult>(text) {
        return Ok(r);
    }
    let status: CeremonyStatus = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if status.state != CeremonyState::Done {
        return Err(format!("the ceremony there is {:?}, not done", status.state).to_lowercase());
    }
    Ok(CeremonyResult {
        ceremony: status.ceremony,
        label: status.label,
        written_by: status.member,
        person_key: status.person_key.ok_or("no public shares in it")?,
    })
}

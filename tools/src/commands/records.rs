//! Commands that sign and submit records: departments, entries, evaluations, joint
//! actions, objections.

use super::query;
use super::*;

pub fn dept(mode: Output, command: DeptCmd) -> Res {
    match command {
        DeptCmd::Register {
            department,
            name,
            roles,
            public_key,
            sign,
            node,
        } => {
            let department = DepartmentId::parse(&department, "--department")
                .map_err(|e| invalid(e.to_string()))?;
            let mut rs: Vec<Role> = roles
                .iter()
                .map(|r| {
                    choice(
                        r.trim(),
                        "--roles",
                        "publisher, initiator, implementer, objection_handler, operator",
                    )
                })
                .collect::<Result<_, _>>()?;
            rs.sort();
            rs.dedup();
            let key = public_key_arg(&public_key, false)?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::DepartmentRegistered {
                    department,
                    name,
                    roles: rs,
                    key,
                },
            )
        }
        DeptCmd::Revoke {
            department,
            reason,
            sign,
            node,
        } => {
            let department = DepartmentId::parse(&department, "--department")
                .map_err(|e| invalid(e.to_string()))?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::DepartmentRevoked { department, reason },
            )
        }
        DeptCmd::List { region, node } => {
            let path = match &region {
                Some(r) => format!("/v1/departments?region={r}"),
                None => "/v1/departments".to_string(),
            };
            let v = get_json(&node, &path)?;
            emit(mode, &v, || {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|d| {
                        let id = format!(
                            "{}:{}",
                            s(&d["department"]["region"]),
                            s(&d["department"]["unit"])
                        );
                        vec![
                            id,
                            s(&d["name"]),
                            s(&d["roles"]),
                            if d["revoked_at"].is_null() {
                                "".into()
                            } else {
                                "revoked".into()
                            },
                        ]
                    })
                    .collect();
                table(&["department", "name", "roles", ""], &rows)
            });
            Ok(())
        }
        DeptCmd::Show { department, node } => {
            let v = get_json(&node, &format!("/v1/departments/{department}"))?;
            emit(mode, &v, || {
                table(
                    &["department", "name", "roles", "key", "revoked"],
                    &[vec![
                        department.clone(),
                        s(&v["name"]),
                        s(&v["roles"]),
                        s(&v["key"]),
                        if v["revoked_at"].is_null() {
                            "no".into()
                        } else {
                            "yes".into()
                        },
                    ]],
                )
            });
            Ok(())
        }
    }
}

pub fn entry(mode: Output, command: EntryCmd) -> Res {
    match command {
        EntryCmd::Publish { fields, sign, node } => sign_and_submit(
            mode,
            &sign,
            &node,
            &Body::ListEntryPublished(entry_with_persons(&fields, &node)?),
        ),
        EntryCmd::Amend {
            entry,
            reason,
            changes,
            file,
            sign,
            node,
        } => {
            let id = EntryId(resolve_id(&entry, "--entry", "entry", &node)?);
            let amended = match file {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
                    serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("{}: not an entry: {e}", file.display())))?
                }
                None => amended_entry(&id, &changes, &node)?,
            };
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ListEntryAmended {
                    entry: id,
                    amended,
                    reason,
                },
            )
        }
        EntryCmd::Revoke {
            entry,
            reason,
            sign,
            node,
        } => sign_and_submit(
            mode,
            &sign,
            &node,
            &Body::ListEntryRevoked {
                entry: EntryId(resolve_id(&entry, "--entry", "entry", &node)?),
                reason,
            },
        ),
        EntryCmd::Repair {
            entry,
            basis,
            reason,
            sign,
            node,
        } => {
            let basis = choice(&basis, "--basis", "corrected_within_period, public_service")?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ListEntryRepaired {
                    entry: EntryId(resolve_id(&entry, "--entry", "entry", &node)?),
                    basis,
                    reason,
                },
            )
        }
        EntryCmd::List {
            category,
            filter,
            node,
        } => query::list(
            mode,
            "/v1/entries",
            &[("category", &category)],
            &filter,
            &node,
            &[
                ("entry", &|v| query::short_id(&v["id"])),
                ("region", &|v| s(&v["region"])),
                ("decided", &|v| s(&v["decided_on"])),
                ("state", &|v| s(&v["state"])),
                ("category", &|v| s(&v["category"])),
                ("subject", &|v| {
                    format!("{} {}", s(&v["name"]), s(&v["code"]))
                }),
                ("document", &|v| s(&v["document_no"])),
            ],
        ),
        EntryCmd::Show { entry, node } => {
            let entry = resolve_id(&entry, "entry", "entry", &node)?.to_hex();
            let v = get_json(&node, &format!("/v1/entries/{entry}"))?;
            let e = &v["entry"];
            emit(mode, &v, || {
                table(
                    &[
                        "entry", "region", "state", "category", "subject", "document", "period",
                    ],
                    &[vec![
                        entry.chars().take(16).collect(),
                        s(&e["published"]["pos"]["region"]),
                        s(&v["state"]),
                        s(&e["content"]["category"]),
                        s(&e["content"]["subject"]["organisation"]["name"]),
                        s(&e["content"]["basis"]["document_no"]),
                        format!(
                            "{} – {}",
                            s(&e["content"]["effective_from"]),
                            s(&e["content"]["expires_on"])
                        ),
                    ]],
                )
            });
            Ok(())
        }
    }
}

pub fn evaluation(mode: Output, command: EvaluationCmd) -> Res {
    match command {
        EvaluationCmd::Publish {
            uscc,
            person,
            name,
            scheme,
            class,
            score,
            evaluated_on,
            valid_until,
            sign,
            node,
        } => {
            let grade = match (class, score) {
                (Some(c), None) => {
                    let c = c.trim().to_ascii_uppercase();
                    if c.is_empty() || c.len() > 4 || !c.is_ascii() {
                        return Err(invalid(format!(
                            "--class: '{c}' must be 1 to 4 ASCII characters, e.g. A or AEO"
                        )));
                    }
                    let mut g = [0u8; 4];
                    g[..c.len()].copy_from_slice(c.as_bytes());
                    Grade::Class(g)
                }
                (None, Some(s)) => Grade::Score(s),
                _ => return Err(invalid("--class: give --class or --score")),
            };
            let evaluated_on = date(&evaluated_on, "--evaluated-on")?;
            let valid_until = date(&valid_until, "--valid-until")?;
            let ev = Evaluation {
                subject: subject_with_person(uscc.as_deref(), person.as_deref(), &name, &node)?,
                scheme,
                grade,
                evaluated_on,
                valid_until,
            };
            sign_and_submit(mode, &sign, &node, &Body::EvaluationPublished(ev))
        }
        EvaluationCmd::Revoke {
            evaluation,
            reason,
            sign,
            node,
        } => sign_and_submit(
            mode,
            &sign,
            &node,
            &Body::EvaluationRevoked {
                evaluation: EvaluationId(resolve_id(
                    &evaluation,
                    "--evaluation",
                    "evaluation",
                    &node,
                )?),
                reason,
            },
        ),
        EvaluationCmd::List {
            scheme,
            filter,
            node,
        } => query::list(
            mode,
            "/v1/evaluations",
            &[("scheme", &scheme)],
            &filter,
            &node,
            &[
                ("evaluation", &|v| query::short_id(&v["id"])),
                ("region", &|v| s(&v["region"])),
                ("evaluated", &|v| s(&v["evaluated_on"])),
                ("state", &|v| s(&v["state"])),
                ("scheme", &|v| s(&v["scheme"])),
                ("grade", &|v| s(&v["grade"])),
                ("subject", &|v| {
                    format!("{} {}", s(&v["name"]), s(&v["code"]))
                }),
            ],
        ),
    }
}

pub fn action(mode: Output, command: ActionCmd) -> Res {
    match command {
        ActionCmd::Initiate {
            entry,
            reference,
            kind,
            targets,
            measures: m,
            respond_by,
            sign,
            node,
        } => {
            let kind = match kind.as_str() {
                "punishment" => ActionKind::Punishment,
                "incentive" => ActionKind::Incentive,
                o => {
                    return Err(invalid(format!(
                        "--kind: '{o}' is neither punishment nor incentive"
                    )));
                }
            };
            let targets = if targets.len() == 1 && targets[0] == "all" {
                Targets::AllMembers
            } else {
                let mut t: Vec<RegionCode> = targets
                    .iter()
                    .map(|r| RegionCode::parse(r.trim(), "--targets"))
                    .collect::<Result<_, _>>()
                    .map_err(|e| invalid(e.to_string()))?;
                t.sort();
                t.dedup();
                Targets::Regions(t)
            };
            let a = JointAction {
                reference,
                kind,
                entry: EntryId(resolve_id(&entry, "--entry", "entry", &node)?),
                targets,
                measures: measures(&m),
                respond_by: date(&respond_by, "--respond-by")?,
            };
            sign_and_submit(mode, &sign, &node, &Body::JointActionInitiated(a))
        }
        ActionCmd::Ack {
            action,
            decision,
            accepted,
            reason,
            implementing,
            sign,
            node,
        } => {
            let decision = match decision.as_str() {
                "accepted" => AckDecision::Accepted,
                "declined" => AckDecision::Declined { reason },
                "partly" => AckDecision::Partly {
                    accepted: measures(&accepted),
                    reason,
                },
                o => {
                    return Err(invalid(format!(
                        "--decision: '{o}' is not accepted, declined or partly"
                    )));
                }
            };
            let mut imp: Vec<DepartmentId> = implementing
                .iter()
                .filter(|d| !d.is_empty())
                .map(|d| DepartmentId::parse(d.trim(), "--implementing"))
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(e.to_string()))?;
            imp.sort();
            imp.dedup();
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::JointActionAcknowledged {
                    action: ActionId(resolve_id(&action, "--action", "action", &node)?),
                    decision,
                    implementing: imp,
                },
            )
        }
        ActionCmd::Execute {
            action,
            measure,
            reference,
            executed_on,
            sign,
            node,
        } => sign_and_submit(
            mode,
            &sign,
            &node,
            &Body::MeasureExecuted {
                action: ActionId(resolve_id(&action, "--action", "action", &node)?),
                measure: MeasureCode(measure),
                reference,
                executed_on: date(&executed_on, "--executed-on")?,
            },
        ),
        ActionCmd::List {
            category,
            target,
            filter,
            node,
        } => query::list(
            mode,
            "/v1/actions",
            &[("category", &category), ("target", &target)],
            &filter,
            &node,
            &[
                ("action", &|v| query::short_id(&v["id"])),
                ("region", &|v| s(&v["region"])),
                ("initiated", &|v| s(&v["initiated_on"])),
                ("respond by", &|v| s(&v["respond_by"])),
                ("state", &|v| {
                    format!("{} ({} answered)", s(&v["state"]), s(&v["answered"]))
                }),
                ("subject", &|v| s(&v["name"])),
                ("reference", &|v| s(&v["reference"])),
            ],
        ),
        ActionCmd::Lift {
            action,
            measure,
            reference,
            reason,
            sign,
            node,
        } => sign_and_submit(
            mode,
            &sign,
            &node,
            &Body::MeasureLifted {
                action: ActionId(resolve_id(&action, "--action", "action", &node)?),
                measure: MeasureCode(measure.trim().to_string()),
                reference,
                reason,
            },
        ),
        ActionCmd::Show { action, node } => {
            let action = resolve_id(&action, "action", "action", &node)?.to_hex();
            let v = get_json(&node, &format!("/v1/actions/{action}"))?;
            emit(mode, &v, || {
                let rows: Vec<Vec<String>> = v["targets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|t| {
                        vec![
                            s(&t["region"]),
                            s(&t["status"]),
                            if t["answered_late"] == json!(true) {
                                "late".into()
                            } else {
                                "".into()
                            },
                            t["acknowledgement_ms"]
                                .as_i64()
                                .map(|m| format!("{:.1} h", m as f64 / 3.6e6))
                                .unwrap_or("-".into()),
                            s(&t["answered_by"]),
                            s(&t["accepted"]),
                            s(&t["executed"]),
                            s(&t["lifted"]),
                            s(&t["declined"]),
                            s(&t["non_compliant"]),
                        ]
                    })
                    .collect();
                let reasons: String = v["targets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter(|t| !t["decline_reason"].is_null())
                    .map(|t| {
                        format!(
                            "\n  {} declined because: {}",
                            s(&t["region"]),
                            s(&t["decline_reason"])
                        )
                    })
                    .collect();
                let entry_state = match v["entry"]["state"].as_str() {
                    Some(st @ ("repaired" | "revoked" | "expired")) => format!(
                        " ({st}{}: executed measures are to be lifted)",
                        v["entry"][st]
                            .as_str()
                            .or(v["entry"]["repaired"]["on"].as_str())
                            .map(|d| format!(" on {d}"))
                            .unwrap_or_default()
                    ),
                    Some(st) => format!(" ({st})"),
                    None => String::new(),
                };
                format!(
                    "action {} on entry {}{entry_state}, respond by {}\n{}{reasons}",
                    action.chars().take(16).collect::<String>(),
                    s(&v["action"]["action"]["entry"])
                        .chars()
                        .take(16)
                        .collect::<String>(),
                    s(&v["action"]["action"]["respond_by"]),
                    table(
                        &[
                            "region",
                            "status",
                            "",
                            "ack after",
                            "by",
                            "accepted",
                            "executed",
                            "lifted",
                            "declined",
                            "MANDATORY DECLINED"
                        ],
                        &rows
                    )
                )
            });
            Ok(())
        }
    }
}

pub fn objection(mode: Output, command: ObjectionCmd) -> Res {
    match command {
        ObjectionCmd::File {
            entry,
            evaluation,
            case_no,
            grounds,
            filed_on,
            sign,
            node,
        } => {
            let target = match (entry, evaluation) {
                (Some(e), None) => {
                    ObjectionTarget::Entry(EntryId(resolve_id(&e, "--entry", "entry", &node)?))
                }
                (None, Some(e)) => ObjectionTarget::Evaluation(EvaluationId(resolve_id(
                    &e,
                    "--evaluation",
                    "evaluation",
                    &node,
                )?)),
                _ => {
                    return Err(invalid(
                        "--entry: give exactly one of --entry and --evaluation",
                    ));
                }
            };
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ObjectionFiled {
                    case_no,
                    target,
                    grounds,
                    filed_on: date(&filed_on, "--filed-on")?,
                },
            )
        }
        ObjectionCmd::Resolve {
            objection,
            outcome,
            note,
            sign,
            node,
        } => {
            let outcome = choice(&outcome, "--outcome", "upheld, corrected, revoked")?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ObjectionResolved {
                    objection: ObjectionId(resolve_id(
                        &objection,
                        "--objection",
                        "objection",
                        &node,
                    )?),
                    outcome,
                    note,
                },
            )
        }
    }
}

pub fn submit_file(mode: Output, file: &Path, sign: &SignArgs, node: &NodeArgs) -> Res {
    let text =
        std::fs::read_to_string(file).map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    let body: Body = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{}: not a record body: {e}", file.display())))?;
    sign_and_submit(mode, sign, node, &body)
}

/// The entry as the node holds it, with the fields `changes` gives replaced: what
/// `entry amend` signs. Persons named anew are resolved through the node.
fn amended_entry(
    id: &EntryId,
    changes: &AmendFields,
    node: &NodeArgs,
) -> Result<ListEntry, Failure> {
    let c = changes;
    let nothing = c.name.is_none()
        && c.uscc.is_none()
        && c.summary.is_none()
        && c.expires_on.is_none()
        && c.effective_from.is_none()
        && c.measures.is_none()
        && c.legal_basis.is_none()
        && c.document_no.is_none()
        && c.authority.is_none()
        && c.decided_on.is_none()
        && c.findings.is_none()
        && c.related.is_empty()
        && !c.no_related;
    if nothing {
        return Err(invalid(
            "nothing to amend: give the fields that change (--name, --uscc, --summary, --expires-on, --effective-from, --measures, --legal-basis, --document-no, --authority, --decided-on, --findings, --related or --no-related), or --file",
        ));
    }
    let v = get_json(node, &format!("/v1/entries/{id}"))?;
    let mut e: ListEntry = serde_json::from_value(v["entry"]["content"].clone())
        .map_err(|e| invalid(format!("the node's entry {id}: {e}")))?;
    if let Some(name) = &c.name {
        match &mut e.subject {
            Subject::Organisation { name: n, .. } => *n = name.trim().to_owned(),
            Subject::Person(p) => p.name = name.trim().to_owned(),
        }
    }
    if let Some(code) = &c.uscc {
        match &mut e.subject {
            Subject::Organisation { uscc, .. } => *uscc = code.trim().to_ascii_uppercase(),
            Subject::Person(_) => {
                return Err(invalid(
                    "--uscc: the entry's subject is a natural person; a person's number is corrected by a new entry",
                ));
            }
        }
    }
    if let Some(x) = &c.summary {
        e.summary = x.clone();
    }
    if let Some(x) = &c.expires_on {
        e.expires_on = date(x, "--expires-on")?;
    }
    if let Some(x) = &c.effective_from {
        e.effective_from = date(x, "--effective-from")?;
    }
    if let Some(x) = &c.measures {
        e.requested_measures = measures(x);
    }
    if let Some(x) = &c.legal_basis {
        e.basis.legal_basis = x.clone();
    }
    if let Some(x) = &c.document_no {
        e.basis.document_no = x.clone();
    }
    if let Some(x) = &c.authority {
        e.basis.authority = x.clone();
    }
    if let Some(x) = &c.decided_on {
        e.basis.decided_on = date(x, "--decided-on")?;
    }
    if let Some(x) = &c.findings {
        e.findings = x
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| choice(f.trim(), "--findings", "able_but_refuses"))
            .collect::<Result<_, _>>()?;
    }
    if c.no_related {
        e.related_persons.clear();
    } else if !c.related.is_empty() {
        let named: Vec<persons::NamedPerson> = c
            .related
            .iter()
            .enumerate()
            .map(|(i, r)| persons::related_person(r, &format!("--related[{i}]")))
            .collect::<Result<_, _>>()?;
        let client = client(node)?;
        let refs = runtime()?.block_on(persons::resolve(node, &client, &named))?;
        e.related_persons = named
            .iter()
            .map(|p| {
                Ok(RelatedPerson {
                    role: p
                        .role
                        .ok_or_else(|| invalid("--related: ROLE:NUMBER:NAME"))?,
                    person: persons::resolved(&refs, p)?,
                })
            })
            .collect::<Result<_, Failure>>()?;
    }
    Ok(e)
}

/// 双公示 (article 十七): a department discloses its licensing and penalty decisions.
pub fn disclosure(mode: Output, command: DisclosureCmd) -> Res {
    match command {
        DisclosureCmd::Publish {
            kind,
            uscc,
            person,
            name,
            decision_no,
            authority,
            decided_on,
            summary,
            public_until,
            sign,
            node,
        } => {
            let d = Disclosure {
                kind: choice(&kind, "--kind", "licensing, penalty")?,
                subject: subject_with_person(uscc.as_deref(), person.as_deref(), &name, &node)?,
                decision_no,
                authority,
                decided_on: date(&decided_on, "--decided-on")?,
                summary,
                public_until: date(&public_until, "--public-until")?,
            };
            sign_and_submit(mode, &sign, &node, &Body::DecisionDisclosed(d))
        }
        DisclosureCmd::Show { disclosure, node } => {
            let id = resolve_id(&disclosure, "disclosure", "disclosure", &node)?.to_hex();
            let v = get_json(&node, &format!("/v1/disclosures/{id}"))?;
            emit(mode, &v, || {
                let d = &v["disclosure"]["disclosure"];
                format!(
                    "disclosure {id}\n  kind:        {}\n  decision:    {} by {} on {}\n  disclosed:   {} (seq {}) by {}, due {}{}\n  public until {}{}\n  summary:     {}",
                    s(&d["kind"]),
                    s(&d["decision_no"]),
                    s(&d["authority"]),
                    s(&d["decided_on"]),
                    s(&v["disclosure"]["published"]["pos"]["region"]),
                    s(&v["disclosure"]["published"]["pos"]["seq"]),
                    s(&v["disclosure"]["published"]["author"]),
                    s(&v["due"]),
                    if v["late"] == json!(true) {
                        " — LATE (article 十七: 7 working days)"
                    } else {
                        ""
                    },
                    s(&d["public_until"]),
                    if v["public"] == json!(true) {
                        ""
                    } else {
                        " (period over)"
                    },
                    s(&d["summary"]),
                )
            });
            Ok(())
        }
    }
}

/// Written commitments under 容缺受理 (article 四): made and settled by the accepting
/// region's licensing department.
pub fn commitment(mode: Output, command: CommitmentCmd) -> Res {
    match command {
        CommitmentCmd::Make {
            uscc,
            person,
            name,
            acceptance_no,
            matter,
            waived,
            made_on,
            due_on,
            sign,
            node,
        } => {
            let c = Commitment {
                subject: subject_with_person(uscc.as_deref(), person.as_deref(), &name, &node)?,
                acceptance_no,
                matter,
                waived,
                made_on: date(&made_on, "--made-on")?,
                due_on: date(&due_on, "--due-on")?,
            };
            sign_and_submit(mode, &sign, &node, &Body::CommitmentMade(c))
        }
        CommitmentCmd::Settle {
            commitment,
            outcome,
            settled_on,
            note,
            sign,
            node,
        } => {
            let outcome = choice(&outcome, "--outcome", "fulfilled, breached")?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::CommitmentSettled {
                    commitment: CommitmentId(resolve_id(
                        &commitment,
                        "--commitment",
                        "commitment",
                        &node,
                    )?),
                    outcome,
                    settled_on: date(&settled_on, "--settled-on")?,
                    note,
                },
            )
        }
        CommitmentCmd::Show { commitment, node } => {
            let id = resolve_id(&commitment, "commitment", "commitment", &node)?.to_hex();
            let v = get_json(&node, &format!("/v1/commitments/{id}"))?;
            emit(mode, &v, || {
                let c = &v["commitment"];
                let subject = &c["commitment"]["subject"];
                let subject = match (subject.get("organisation"), subject.get("person")) {
                    (Some(o), _) => format!("{} {}", s(&o["name"]), s(&o["uscc"])),
                    (_, Some(p)) => format!("{} {}", s(&p["name"]), s(&p["masked"])),
                    _ => subject.to_string(),
                };
                let settled = match c["settled"].as_object() {
                    Some(x) => format!("{} on {}", s(&x["outcome"]), s(&x["settled_on"])),
                    None => "not settled".into(),
                };
                format!(
                    "commitment {id}\n  state:      {}\n  recorded:   {} (seq {}) by {}\n  subject:    {}\n  acceptance: {}\n  matter:     {}\n  waived:     {}\n  made on:    {}\n  due on:     {}\n  settled:    {settled}",
                    s(&v["state"]),
                    s(&c["made"]["pos"]["region"]),
                    s(&c["made"]["pos"]["seq"]),
                    s(&c["made"]["author"]),
                    subject,
                    s(&c["commitment"]["acceptance_no"]),
                    s(&c["commitment"]["matter"]),
                    c["commitment"]["waived"]
                        .as_array()
                        .map(|w| w.iter().map(s).collect::<Vec<_>>().join("、"))
                        .unwrap_or_default(),
                    s(&c["commitment"]["made_on"]),
                    s(&c["commitment"]["due_on"]),
                )
            });
            Ok(())
        }
    }
}

/// Credit repair on the subject's application: recorded anywhere, decided by the issuer.
pub fn repair(mode: Output, command: RepairCmd) -> Res {
    match command {
        RepairCmd::Apply {
            entry,
            case_no,
            basis,
            grounds,
            filed_on,
            sign,
            node,
        } => {
            let basis = choice(&basis, "--basis", "corrected_within_period, public_service")?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::RepairApplied {
                    entry: EntryId(resolve_id(&entry, "--entry", "entry", &node)?),
                    case_no,
                    basis,
                    grounds,
                    filed_on: date(&filed_on, "--filed-on")?,
                },
            )
        }
        RepairCmd::Decide {
            entry,
            application,
            outcome,
            reason,
            sign,
            node,
        } => {
            let outcome = choice(&outcome, "--outcome", "repaired, refused, not_accepted")?;
            let entry = EntryId(resolve_id(&entry, "--entry", "entry", &node)?);
            let v = get_json(&node, &format!("/v1/entries/{}", entry.0.to_hex()))?;
            let application = RepairApplicationId(application_by_prefix(&v, &application)?);
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::RepairDecided {
                    entry,
                    application,
                    outcome,
                    reason,
                },
            )
        }
        RepairCmd::List { entry, node } => {
            let entry = resolve_id(&entry, "--entry", "entry", &node)?.to_hex();
            let v = get_json(&node, &format!("/v1/entries/{entry}"))?;
            let due: std::collections::BTreeMap<String, &Value> = v["repairs_due"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| (s(&d["application"]), d))
                .collect();
            let empty = serde_json::Map::new();
            let rows: Vec<Vec<String>> = v["entry"]["repairs"]
                .as_object()
                .unwrap_or(&empty)
                .iter()
                .map(|(id, r)| {
                    let status = match r["decided"].as_array() {
                        Some(d) => format!("{} (seq {})", s(&d[0]), s(&d[1]["pos"]["seq"])),
                        None => match due.get(id) {
                            Some(d) if d["overdue"] == true => {
                                format!("OVERDUE since {}", s(&d["due"]))
                            }
                            Some(d) => format!("to decide by {}", s(&d["due"])),
                            None => "open".into(),
                        },
                    };
                    vec![
                        id.chars().take(12).collect(),
                        format!("{} {}", s(&r["filed"]["author"]), s(&r["case_no"])),
                        s(&r["basis"]),
                        s(&r["filed_on"]),
                        status,
                    ]
                })
                .collect();
            emit(mode, &v["entry"]["repairs"], || {
                if rows.is_empty() {
                    return "no repair application for this entry\n".into();
                }
                table(
                    &["application", "recorded by", "basis", "filed", "decision"],
                    &rows,
                )
            });
            Ok(())
        }
    }
}

/// The full id of the application of an entry (as `/v1/entries/{id}` gives it) that
/// `text` names by a unique prefix of at least 8 hex digits.
fn application_by_prefix(
    entry: &Value,
    text: &str,
) -> Result<credfed_protocol::crypto::Hash256, Failure> {
    let prefix = id_prefix(text, "--application", "repair application")?;
    let ids: Vec<String> = entry["entry"]["repairs"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    one_id(
        &ids,
        &prefix,
        "--application",
        "repair application of this entry",
        "see `credfed repair list --entry …`",
    )
}

//! Commands that sign and submit records: departments, entries, evaluations, joint
//! actions, objections.

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
            let key = public_key_arg(&public_key)?;
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
            file,
            reason,
            sign,
            node,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
            let amended: ListEntry = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("{}: not an entry: {e}", file.display())))?;
            sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ListEntryAmended {
                    entry: EntryId(hash_id(&entry, "--entry")?),
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
                entry: EntryId(hash_id(&entry, "--entry")?),
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
                    entry: EntryId(hash_id(&entry, "--entry")?),
                    basis,
                    reason,
                },
            )
        }
        EntryCmd::Show { entry, node } => {
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
                evaluation: EvaluationId(hash_id(&evaluation, "--evaluation")?),
                reason,
            },
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
                entry: EntryId(hash_id(&entry, "--entry")?),
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
                    action: ActionId(hash_id(&action, "--action")?),
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
                action: ActionId(hash_id(&action, "--action")?),
                measure: MeasureCode(measure),
                reference,
                executed_on: date(&executed_on, "--executed-on")?,
            },
        ),
        ActionCmd::Show { action, node } => {
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
                format!(
                    "action {} on entry {}, respond by {}\n{}{reasons}",
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
                (Some(e), None) => ObjectionTarget::Entry(EntryId(hash_id(&e, "--entry")?)),
                (None, Some(e)) => {
                    ObjectionTarget::Evaluation(EvaluationId(hash_id(&e, "--evaluation")?))
                }
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
                    objection: ObjectionId(hash_id(&objection, "--objection")?),
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

//! The record bodies drill steps write, as pure functions of the step and the day: what a
//! step means is decided here, apart from the network and the clock, and tested below.

use anyhow::{Result, bail};
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::record::*;
use credfed_protocol::time::Date;

/// What a `publish` step asks for.
#[derive(Debug, Clone, Default)]
pub struct EntrySpec {
    /// `black` or `red`.
    pub list: String,
    /// Category name; the list's default when `None`.
    pub category: Option<String>,
    /// Subject's code (an organisation).
    pub uscc: String,
    /// The subject when it is a natural person, as the publishing node returned it.
    pub person: Option<credfed_protocol::ids::PersonRef>,
    /// Related persons, as the publishing node returned them.
    pub related: Vec<RelatedPerson>,
    /// Findings, e.g. `able_but_refuses`.
    pub findings: Vec<String>,
    /// Measures requested.
    pub measures: Vec<String>,
    /// Days in force (three years by default).
    pub expires_in_days: Option<i32>,
}

/// A drill's list entry, decided yesterday: by default a black entry of a company that
/// defies a judgment (article 九 group 3) or a red one of good credit.
pub fn drill_entry(
    region: RegionCode,
    name: &str,
    spec: &EntrySpec,
    serial: usize,
    today: Date,
) -> Result<ListEntry> {
    let list = if spec.list == "red" { "red" } else { "black" };
    let category_name = spec.category.clone().unwrap_or_else(|| {
        if list == "red" {
            "good_credit_classification".into()
        } else {
            "defying_judgment_or_decision".into()
        }
    });
    let category: Category = serde_json::from_value(serde_json::json!({ list: category_name }))
        .map_err(|_| {
            anyhow::anyhow!("category: '{category_name}' is not a {list}-list category")
        })?;
    let mut findings = Vec::new();
    for f in &spec.findings {
        findings.push(
            serde_json::from_value::<Finding>(serde_json::json!(f)).map_err(|_| {
                anyhow::anyhow!("findings: '{f}' is not a finding (able_but_refuses)")
            })?,
        );
    }
    findings.sort();
    findings.dedup();
    let mut related = spec.related.clone();
    related.sort();
    related.dedup();
    let uscc = &spec.uscc;
    let subject = match &spec.person {
        Some(p) => Subject::Person(p.clone()),
        None => Subject::Organisation {
            uscc: uscc.to_owned(),
            name: format!("演练企业 {uscc}"),
            check_exemption: None,
        },
    };
    Ok(ListEntry {
        category,
        subject,
        related_persons: related,
        basis: Basis {
            document_no: format!("演练〔{}〕{serial}号 {name}", today.ymd().0),
            authority: format!("{} 演练部门", region.province_info().name_zh),
            decided_on: today.add_days(-1),
            legal_basis: "国发〔2016〕33号".into(),
        },
        effective_from: today.add_days(-1),
        expires_on: today.add_days(spec.expires_in_days.unwrap_or(3 * 365)),
        // The record's rule is sorted and unique; a scenario lists them as it likes.
        requested_measures: spec
            .measures
            .iter()
            .map(|m| MeasureCode(m.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        findings,
        summary: format!("drill entry {name}"),
    })
}

/// Parses a person subject of a step, `NUMBER:NAME`.
pub fn person_spec(text: &str) -> Result<(String, String)> {
    match text.split_once(':') {
        Some((number, name)) if !name.trim().is_empty() => {
            Ok((number.trim().to_owned(), name.trim().to_owned()))
        }
        _ => bail!("person: expected NUMBER:NAME"),
    }
}

/// Parses a related person of a step, `ROLE:NUMBER:NAME`, into the role and the person
/// to ask the node to hash.
pub fn related_spec(text: &str) -> Result<(RelatedRole, String, String)> {
    let mut parts = text.splitn(3, ':');
    let (Some(role), Some(number), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("related: expected ROLE:NUMBER:NAME");
    };
    let role: RelatedRole = serde_json::from_value(serde_json::json!(role))
        .map_err(|_| anyhow::anyhow!("related: '{role}' is not a related role"))?;
    Ok((role, number.trim().to_owned(), name.trim().to_owned()))
}

/// One entry of a write burst (the measure that costs least to check: none).
/// The company burst entries are about.
pub const BURST_USCC: &str = "91350100M000100Y43";

pub fn burst_entry(serial: usize, today: Date) -> ListEntry {
    ListEntry {
        category: Category::Black(BlackCategory::MaliciousWageArrears),
        subject: Subject::Organisation {
            uscc: BURST_USCC.into(),
            name: "演练企业".into(),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: Basis {
            document_no: format!("演练批量 {serial}"),
            authority: "演练".into(),
            decided_on: today.add_days(-1),
            legal_basis: "演练".into(),
        },
        effective_from: today.add_days(-1),
        expires_on: today.add_days(365),
        requested_measures: vec![],
        findings: vec![],
        summary: String::new(),
    }
}

/// What the issuer does to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// 更正: the entry as amended.
    Amend,
    /// 更正 that removes every related person (wrongly named).
    DropRelated,
    /// 撤销.
    Revoke,
    /// 信用修复.
    Repair,
}

/// The body of a change to entry `id`, whose content is `content`.
pub fn change_body(change: Change, id: EntryId, content: &ListEntry) -> Body {
    match change {
        Change::Amend => {
            let mut amended = content.clone();
            amended.summary = format!("{} (amended)", amended.summary);
            Body::ListEntryAmended {
                entry: id,
                amended,
                reason: "演练更正".into(),
            }
        }
        Change::DropRelated => {
            let mut amended = content.clone();
            amended.related_persons.clear();
            // Measures that fell only on the removed persons no longer apply to the
            // entry, and a correction may not keep them (article 十四).
            if let Ok(catalogue) = credfed_protocol::catalogue::Catalogue::embedded() {
                let probe = amended.clone();
                amended.requested_measures.retain(|m| {
                    catalogue
                        .get(m)
                        .is_some_and(|x| x.applicable(&probe).is_ok())
                });
            }
            amended.summary = format!("{} (related persons removed)", amended.summary);
            Body::ListEntryAmended {
                entry: id,
                amended,
                reason: "演练更正：关联人员认定有误".into(),
            }
        }
        Change::Revoke => Body::ListEntryRevoked {
            entry: id,
            reason: "演练撤销".into(),
        },
        Change::Repair => Body::ListEntryRepaired {
            entry: id,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "演练修复".into(),
        },
    }
}

/// A joint action on entry `entry` named `name`: an incentive if every measure is one,
/// else a punishment; a week to respond.
pub fn joint_action(
    name: &str,
    entry: EntryId,
    targets: Targets,
    measures: &[String],
    today: Date,
) -> JointAction {
    let kind = if measures.iter().all(|m| m.starts_with('I')) {
        ActionKind::Incentive
    } else {
        ActionKind::Punishment
    };
    JointAction {
        reference: format!("演练联〔{}〕{name}", today.ymd().0),
        kind,
        entry,
        targets,
        measures: measures.iter().map(|m| MeasureCode(m.clone())).collect(),
        respond_by: today.add_days(7),
    }
}

/// A target region's answer to an action: acknowledgement (all accepted, implemented by
/// `implementer`), or execution feedback for `measure`.
pub fn target_answer(
    action: ActionId,
    region: RegionCode,
    implementer: &DepartmentId,
    measure: Option<&str>,
    today: Date,
) -> Body {
    match measure {
        None => Body::JointActionAcknowledged {
            action,
            decision: AckDecision::Accepted,
            implementing: vec![implementer.clone()],
        },
        Some(m) => Body::MeasureExecuted {
            action,
            measure: MeasureCode(m.to_owned()),
            reference: format!("{region} 执行 {m}"),
            executed_on: today,
        },
    }
}

/// The case number of a drill repair application named `name`.
pub fn repair_case(name: &str, today: Date) -> String {
    format!("演练修〔{}〕{name}", today.ymd().0)
}

/// A written commitment of the subject `uscc` made ten days before `today` and due the
/// day before it (article 四).
pub fn commitment(name: &str, uscc: &str, today: Date) -> Commitment {
    Commitment {
        subject: Subject::Organisation {
            uscc: uscc.into(),
            name: "演练企业".into(),
            check_exemption: None,
        },
        acceptance_no: format!("演练许〔{}〕{name}", today.ymd().0),
        matter: "演练：食品经营许可".into(),
        waived: vec!["场所平面图".into()],
        made_on: today.add_days(-10),
        due_on: today.add_days(-1),
    }
}

/// The settlement of a commitment made by [`commitment`]: `fulfilled` on its deadline,
/// or `breached` today.
pub fn commitment_settlement(id: CommitmentId, outcome: &str, today: Date) -> Result<Body> {
    let outcome: CommitmentOutcome =
        serde_json::from_value(serde_json::json!(outcome)).map_err(|_| {
            anyhow::anyhow!("settle_commitment.outcome: '{outcome}' is not fulfilled or breached")
        })?;
    Ok(Body::CommitmentSettled {
        commitment: id,
        outcome,
        settled_on: match outcome {
            CommitmentOutcome::Fulfilled => today.add_days(-1),
            CommitmentOutcome::Breached => today,
        },
        note: "演练".into(),
    })
}

/// A penalty decision of the subject `uscc` decided on `decided_on`, to disclose (双公示).
pub fn penalty_disclosure(name: &str, uscc: &str, decided_on: Date) -> Disclosure {
    Disclosure {
        kind: DisclosureKind::Penalty,
        subject: Subject::Organisation {
            uscc: uscc.into(),
            name: "演练企业".into(),
            check_exemption: None,
        },
        decision_no: format!("演练罚〔{}〕{name}", decided_on.ymd().0),
        authority: "演练".into(),
        decided_on,
        summary: "演练：罚款".into(),
        public_until: decided_on.add_days(365),
    }
}

/// A subject's repair application for `entry`, filed today.
pub fn repair_application(case_no: &str, entry: EntryId, today: Date) -> Body {
    Body::RepairApplied {
        entry,
        case_no: case_no.to_owned(),
        basis: RepairBasis::CorrectedWithinPeriod,
        grounds: "演练：已履行".into(),
        filed_on: today,
    }
}

/// The issuer's decision on `application` (`repaired`, `refused`, `not_accepted`).
pub fn repair_decision(
    entry: EntryId,
    application: RepairApplicationId,
    outcome: &str,
) -> Result<Body> {
    let outcome: RepairOutcome =
        serde_json::from_value(serde_json::json!(outcome)).map_err(|_| {
            anyhow::anyhow!(
                "decide_repair.outcome: '{outcome}' is not repaired, refused or not_accepted"
            )
        })?;
    Ok(Body::RepairDecided {
        entry,
        application,
        outcome,
        reason: "演练决定".into(),
    })
}

/// The case number of a drill objection named `name`.
pub fn objection_case(name: &str, today: Date) -> String {
    format!("演练异〔{}〕{name}", today.ymd().0)
}

/// An objection to `entry` under `case_no`.
pub fn objection_body(case_no: &str, entry: EntryId, today: Date) -> Body {
    Body::ObjectionFiled {
        case_no: case_no.to_owned(),
        target: ObjectionTarget::Entry(entry),
        grounds: "演练异议".into(),
        filed_on: today,
    }
}

/// The issuer's resolution of an objection.
pub fn resolution_body(objection: ObjectionId, outcome: &str) -> Result<Body> {
    let outcome = match outcome {
        "upheld" => ObjectionOutcome::Upheld,
        "corrected" => ObjectionOutcome::Corrected,
        "revoked" => ObjectionOutcome::Revoked,
        o => bail!("resolve.outcome: '{o}' is not upheld, corrected or revoked"),
    };
    Ok(Body::ObjectionResolved {
        objection,
        outcome,
        note: "演练核实".into(),
    })
}

/// An evaluation result in `scheme` of class `class` (up to four letters), valid a year.
pub fn evaluation(uscc: &str, scheme: &str, class: &str, today: Date) -> Evaluation {
    let mut grade = [0u8; 4];
    for (i, b) in class.bytes().take(4).enumerate() {
        grade[i] = b;
    }
    Evaluation {
        subject: Subject::Organisation {
            uscc: uscc.to_owned(),
            name: format!("演练企业 {uscc}"),
            check_exemption: None,
        },
        scheme: scheme.to_owned(),
        grade: Grade::Class(grade),
        evaluated_on: today.add_days(-1),
        valid_until: today.add_days(365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Date {
        Date::parse("2026-11-27").unwrap()
    }

    fn region(code: u32) -> RegionCode {
        RegionCode::new(code, "r").unwrap()
    }

    /// Every body a step builds passes the protocol's own field rules.
    #[test]
    fn every_step_body_is_valid() {
        let sh = region(310000);
        let spec = EntrySpec {
            list: "black".into(),
            uscc: "91350100M000100Y43".into(),
            measures: vec!["P-PROCUREMENT".into()],
            findings: vec!["able_but_refuses".into()],
            ..EntrySpec::default()
        };
        let e = drill_entry(sh, "e1", &spec, 1, day()).unwrap();
        assert_eq!(
            e.category,
            Category::Black(BlackCategory::DefyingJudgmentOrDecision)
        );
        assert_eq!(e.findings, [Finding::AbleButRefuses]);
        assert_eq!(e.expires_on, day().add_days(3 * 365));
        let id = entry_id(sh, &e);
        let impl_dept = DepartmentId::parse("440000:impl", "d").unwrap();
        let action = action_id(&DepartmentId::parse("310000:init", "d").unwrap(), "x");
        let bodies = vec![
            Body::ListEntryPublished(e.clone()),
            Body::ListEntryPublished(burst_entry(7, day())),
            change_body(Change::Amend, id, &e),
            change_body(Change::DropRelated, id, &e),
            change_body(Change::Revoke, id, &e),
            change_body(Change::Repair, id, &e),
            Body::JointActionInitiated(joint_action(
                "a1",
                id,
                Targets::AllMembers,
                &["P-PROCUREMENT".into()],
                day(),
            )),
            target_answer(action, region(440000), &impl_dept, None, day()),
            target_answer(
                action,
                region(440000),
                &impl_dept,
                Some("P-PROCUREMENT"),
                day(),
            ),
            objection_body(&objection_case("o1", day()), id, day()),
            resolution_body(ObjectionId(id.0), "upheld").unwrap(),
            repair_application(&repair_case("r1", day()), id, day()),
            repair_decision(id, RepairApplicationId(id.0), "repaired").unwrap(),
            Body::EvaluationPublished(evaluation("91350100M000100Y43", "tax-credit", "A", day())),
        ];
        for b in bodies {
            b.validate()
                .unwrap_or_else(|e| panic!("{:?}: {e}", b.kind()));
        }
    }

    /// A category or finding the protocol does not know is refused by name.
    #[test]
    fn unknown_category_or_finding_is_refused() {
        let spec = EntrySpec {
            list: "black".into(),
            category: Some("jaywalking".into()),
            uscc: "91350100M000100Y43".into(),
            ..EntrySpec::default()
        };
        let e = drill_entry(region(310000), "e", &spec, 1, day()).unwrap_err();
        assert!(e.to_string().contains("'jaywalking'"), "{e}");
        let spec = EntrySpec {
            findings: vec!["guilty".into()],
            category: None,
            ..spec
        };
        let e = drill_entry(region(310000), "e", &spec, 1, day()).unwrap_err();
        assert!(e.to_string().contains("'guilty'"), "{e}");
        assert_eq!(
            related_spec("legal_representative:11010519491231002X:张三")
                .unwrap()
                .0,
            RelatedRole::LegalRepresentative
        );
        assert!(related_spec("boss:1:x").is_err());
    }

    #[test]
    fn action_kind_follows_the_measures() {
        let id = EntryId(credfed_protocol::crypto::Hash256([1; 32]));
        let a = joint_action(
            "a",
            id,
            Targets::AllMembers,
            &["I-LICENSING-GREEN".into()],
            day(),
        );
        assert_eq!(a.kind, ActionKind::Incentive);
        let a = joint_action(
            "a",
            id,
            Targets::AllMembers,
            &["I-LICENSING-GREEN".into(), "P-PROCUREMENT".into()],
            day(),
        );
        assert_eq!(a.kind, ActionKind::Punishment);
        assert_eq!(a.respond_by, day().add_days(7));
    }

    #[test]
    fn an_unknown_outcome_is_refused_with_the_allowed_ones() {
        let e = resolution_body(
            ObjectionId(credfed_protocol::crypto::Hash256([1; 32])),
            "maybe",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("upheld, corrected or revoked"),
            "{e}"
        );
    }

    /// Every organisation a shipped scenario publishes, and every commitment and
    /// disclosure it makes, gives a body the protocol's field rules accept: a scenario
    /// that lists measures out of order, or names a category wrongly, fails here rather
    /// than in a 31-region drill (persons are hashed by a node, so left to the drills).
    #[test]
    fn every_shipped_scenarios_bodies_are_valid() {
        use crate::scenario::{SHIPPED, Step, parse};
        for (name, text) in SHIPPED {
            let scenario = parse(text).unwrap();
            for (i, step) in scenario.steps.iter().enumerate() {
                let at = format!("{name} step {i}");
                let body = match step {
                    Step::Publish {
                        id,
                        region: r,
                        list,
                        category,
                        uscc: Some(uscc),
                        person: None,
                        related,
                        findings,
                        measures,
                        expires_in_days,
                    } if related.is_empty() => {
                        let spec = EntrySpec {
                            list: list.clone(),
                            category: category.clone(),
                            uscc: uscc.clone(),
                            findings: findings.clone(),
                            measures: measures.clone(),
                            expires_in_days: *expires_in_days,
                            ..EntrySpec::default()
                        };
                        let region = RegionCode::parse(r, "region").unwrap();
                        Body::ListEntryPublished(
                            drill_entry(region, id, &spec, i, day())
                                .unwrap_or_else(|e| panic!("{at}: {e}")),
                        )
                    }
                    Step::MakeCommitment { id, uscc, .. } => {
                        Body::CommitmentMade(commitment(id, uscc, day()))
                    }
                    Step::Disclose { id, uscc, late, .. } => Body::DecisionDisclosed(
                        penalty_disclosure(id, uscc, day().add_days(if *late { -20 } else { 0 })),
                    ),
                    _ => continue,
                };
                body.validate()
                    .unwrap_or_else(|e| panic!("{at}: {:?}: {e}", body.kind()));
            }
        }
    }
}

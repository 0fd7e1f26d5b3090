//! The record bodies drill steps write, as pure functions of the step and the day: what a
//! step means is decided here, apart from the network and the clock, and tested below.

use anyhow::{Result, bail};
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::record::*;
use credfed_protocol::time::Date;

/// A drill's list entry: a food-safety black entry (or a red one), decided yesterday,
/// in force for `expires_in_days` (three years by default).
pub fn drill_entry(
    region: RegionCode,
    name: &str,
    list: &str,
    uscc: &str,
    measures: &[String],
    expires_in_days: Option<i32>,
    serial: usize,
    today: Date,
) -> ListEntry {
    let category = if list == "red" {
        Category::Red(RedSource::GoodCreditClassification)
    } else {
        Category::Black(BlackCategory::FoodAndDrug)
    };
    ListEntry {
        category,
        subject: Subject::Organisation {
            uscc: uscc.to_owned(),
            name: format!("演练企业 {uscc}"),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: Basis {
            document_no: format!("演练〔{}〕{serial}号 {name}", today.ymd().0),
            authority: format!("{} 演练部门", region.province_info().name_zh),
            decided_on: today.add_days(-1),
            legal_basis: "国发〔2016〕33号".into(),
        },
        effective_from: today.add_days(-1),
        expires_on: today.add_days(expires_in_days.unwrap_or(3 * 365)),
        requested_measures: measures.iter().map(|m| MeasureCode(m.clone())).collect(),
        summary: format!("drill entry {name}"),
    }
}

/// One entry of a write burst (the measure that costs least to check: none).
pub fn burst_entry(serial: usize, today: Date) -> ListEntry {
    ListEntry {
        category: Category::Black(BlackCategory::MaliciousWageArrears),
        subject: Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
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
        summary: String::new(),
    }
}

/// What the issuer does to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// 更正: the entry as amended.
    Amend,
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

/// The case number of a drill objection named `name`.
pub fn objection_case(name: &str, today: Date) -> String {
    format!("演练异〔{}〕{name}", today.ymd().0)
}

/// An objection to `entry` under `case_no`.
pub fn objection_body(case_no: &str, entry: EntryId, today: Date) -> Body {
    Body::ObjectionFiled {
        case_no: case_no.to_owned(),
        entry,
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
        let e = drill_entry(
            sh,
            "e1",
            "black",
            "91350100M000100Y43",
            &["P-10-10".into()],
            None,
            1,
            day(),
        );
        assert_eq!(e.category.list(), ListKind::Black);
        assert_eq!(e.expires_on, day().add_days(3 * 365));
        let id = entry_id(sh, &e);
        let impl_dept = DepartmentId::parse("440000:impl", "d").unwrap();
        let action = action_id(&DepartmentId::parse("310000:init", "d").unwrap(), "x");
        let bodies = vec![
            Body::ListEntryPublished(e.clone()),
            Body::ListEntryPublished(burst_entry(7, day())),
            change_body(Change::Amend, id, &e),
            change_body(Change::Revoke, id, &e),
            change_body(Change::Repair, id, &e),
            Body::JointActionInitiated(joint_action(
                "a1",
                id,
                Targets::AllMembers,
                &["P-10-10".into()],
                day(),
            )),
            target_answer(action, region(440000), &impl_dept, None, day()),
            target_answer(action, region(440000), &impl_dept, Some("P-10-10"), day()),
            objection_body(&objection_case("o1", day()), id, day()),
            resolution_body(ObjectionId(id.0), "upheld").unwrap(),
            Body::EvaluationPublished(evaluation("91350100M000100Y43", "tax", "A", day())),
        ];
        for b in bodies {
            b.validate()
                .unwrap_or_else(|e| panic!("{:?}: {e}", b.kind()));
        }
    }

    #[test]
    fn action_kind_follows_the_measures() {
        let id = EntryId(credfed_protocol::crypto::Hash256([1; 32]));
        let a = joint_action("a", id, Targets::AllMembers, &["I-04-01".into()], day());
        assert_eq!(a.kind, ActionKind::Incentive);
        let a = joint_action(
            "a",
            id,
            Targets::AllMembers,
            &["I-04-01".into(), "P-10-10".into()],
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
}

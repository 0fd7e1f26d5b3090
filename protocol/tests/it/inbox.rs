//! The inbox (articles 二十, 二十一, 二十二, 二十三): which region must do what on an action
//! or an objection, from when and by when, following the records as they come.

use credfed_protocol::inbox::{
    Task, TaskKind, TaskRef, action_tasks, commitment_task, objection_task, repair_tasks,
    sort_tasks,
};
use credfed_protocol::record::*;

use crate::fixture::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;

/// What `code`'s inbox holds at the world's clock, through the index the ledger keeps.
fn inbox(w: &World, code: u32) -> Vec<Task> {
    let r = region(code);
    let mut tasks = Vec::new();
    for (task, _) in w.ledger.marks_due(r, w.now.date_cst()) {
        match task {
            TaskRef::Action(id) => {
                let a = w.ledger.action(&id).unwrap();
                let e = w.ledger.entry(&a.action.entry).unwrap();
                tasks.extend(action_tasks(
                    &a,
                    &e,
                    r,
                    w.now,
                    &w.calendar,
                    &w.manifest.policy,
                ));
            }
            TaskRef::Objection(id) => {
                let status = w
                    .ledger
                    .entries()
                    .find_map(|e| e.objections.get(&id).cloned())
                    .unwrap();
                tasks.extend(objection_task(
                    id,
                    &status,
                    w.now,
                    &w.calendar,
                    &w.manifest.policy,
                ));
            }
            TaskRef::Repair(id) => {
                let e = w.ledger.entry(&id).unwrap();
                tasks.extend(repair_tasks(
                    &e,
                    w.now,
                    &w.calendar,
                    w.catalogue.repair.as_ref(),
                ));
            }
            TaskRef::Commitment(id) => {
                let c = w.ledger.commitment(&id).unwrap();
                tasks.extend(commitment_task(&c, w.now));
            }
        }
    }
    sort_tasks(&mut tasks);
    tasks
}

fn kinds(tasks: &[Task]) -> Vec<TaskKind> {
    tasks.iter().map(|t| t.kind).collect()
}

fn sh_action() -> ActionId {
    action_id(&dept("310000:init"), "沪联惩〔2026〕5号")
}

/// Article 二十三 (跟踪问效) with 二十 and 二十一: a target region is asked to answer by
/// the respond-by date, then to report executing what it accepted, then — once the
/// issuer repairs the entry — to lift what it executed; each step leaves the inbox when
/// done, and a region that declined has nothing left to do.
#[test]
fn art23_inbox_follows_an_action_from_initiation_to_lifting() {
    let (mut w, id1, _) = acme_world();
    let aid = sh_action();
    // Every target region, members or not under "all members", is asked to answer.
    for code in [GD, GS] {
        let t = inbox(&w, code);
        let ack: Vec<_> = t
            .iter()
            .filter(|t| t.about == TaskRef::Action(aid))
            .collect();
        assert_eq!(ack.len(), 1, "{code}: {t:?}");
        assert_eq!(ack[0].kind, TaskKind::Acknowledge);
        assert_eq!(ack[0].due, date("2026-11-09"));
        assert!(!ack[0].overdue);
    }
    // The initiator is not a target.
    assert!(
        inbox(&w, SH)
            .iter()
            .all(|t| t.about != TaskRef::Action(aid))
    );
    // Guangdong accepts: now it must report execution, within five working days of
    // the answer (2026-11-02, a Monday → 2026-11-09).
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Accepted,
            implementing: vec![dept("440000:impl")],
        },
    );
    let t = inbox(&w, GD);
    assert_eq!(kinds(&t), vec![TaskKind::ReportExecution], "{t:?}");
    assert_eq!(t[0].due, date("2026-11-09"));
    assert_eq!(
        t[0].measures,
        vec![mc("P-FISCAL-FUNDING"), mc("P-PROCUREMENT")]
    );
    // Gansu declines: nothing left for it.
    w.accept(
        "620000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Declined {
                reason: "本省无此类交易".into(),
            },
            implementing: vec![],
        },
    );
    assert!(
        inbox(&w, GS)
            .iter()
            .all(|t| t.about != TaskRef::Action(aid))
    );
    // Guangdong reports one measure, then the other: the task shrinks, then leaves.
    let exec = |m: &str| Body::MeasureExecuted {
        action: aid,
        measure: mc(m),
        reference: "粤执".into(),
        executed_on: date("2026-11-03"),
    };
    w.accept("440000:impl", exec("P-PROCUREMENT"));
    assert_eq!(inbox(&w, GD)[0].measures, vec![mc("P-FISCAL-FUNDING")]);
    w.accept("440000:impl", exec("P-FISCAL-FUNDING"));
    assert!(inbox(&w, GD).is_empty(), "{:?}", inbox(&w, GD));
    // Executed measures of an entry in force are no task, and their mark waits for
    // the entry's expiry rather than being read by every inbox.
    assert!(
        w.ledger
            .marks_due(region(GD), date("2029-10-31"))
            .is_empty()
    );
    assert_eq!(w.ledger.marks_due(region(GD), date("2029-11-01")).len(), 1);
    // Shanghai repairs the entry (article 二十一): Guangdong must lift both measures.
    w.now = noon("2026-11-20");
    w.accept(
        "310000:pub",
        Body::ListEntryRepaired {
            entry: id1,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "已履行".into(),
        },
    );
    let t = inbox(&w, GD);
    assert_eq!(kinds(&t), vec![TaskKind::Lift], "{t:?}");
    assert_eq!(t[0].since, date("2026-11-20"));
    // 2026-11-20 is a Friday: five working days → Friday 2026-11-27.
    assert_eq!(t[0].due, date("2026-11-27"));
    assert_eq!(
        t[0].measures,
        vec![mc("P-FISCAL-FUNDING"), mc("P-PROCUREMENT")]
    );
    w.now = noon("2026-11-30");
    assert!(inbox(&w, GD)[0].overdue);
    for m in ["P-FISCAL-FUNDING", "P-PROCUREMENT"] {
        w.accept(
            "440000:impl",
            Body::MeasureLifted {
                action: aid,
                measure: mc(m),
                reference: "粤解".into(),
                reason: "信用修复".into(),
            },
        );
    }
    assert!(inbox(&w, GD).is_empty());
    assert!(
        w.ledger
            .marks_due(region(GD), date("2099-01-01"))
            .is_empty()
    );
    // A region that never answered has nothing to do once a record ended the entry.
    assert!(
        inbox(&w, 110000)
            .iter()
            .all(|t| t.about != TaskRef::Action(aid))
    );
}

/// Article 二十二 (异议处理): an objection asks the issuing region to verify and resolve
/// it within the policy's working days; resolving it empties the task.
#[test]
fn art22_an_objection_is_the_issuers_task_until_resolved() {
    let (mut w, _, id2) = acme_world();
    let t: Vec<_> = inbox(&w, SH)
        .into_iter()
        .filter(|t| t.kind == TaskKind::ResolveObjection)
        .collect();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].entry, Some(id2));
    assert_eq!(t[0].since, date("2026-11-02"));
    // Ten working days from Monday 2026-11-02.
    assert_eq!(t[0].due, date("2026-11-16"));
    // Not the objecting region's task.
    assert!(
        inbox(&w, GS)
            .iter()
            .all(|t| t.kind != TaskKind::ResolveObjection)
    );
    let TaskRef::Objection(oid) = t[0].about else {
        panic!("{t:?}")
    };
    w.accept(
        "310000:obj",
        Body::ObjectionResolved {
            objection: oid,
            outcome: ObjectionOutcome::Upheld,
            note: "核实无误".into(),
        },
    );
    assert!(
        inbox(&w, SH)
            .iter()
            .all(|t| t.kind != TaskKind::ResolveObjection)
    );
}

/// Article 二十一 (退出): a measure executed on an entry that expires must be lifted after
/// the expiry, with no record to announce it.
#[test]
fn art21_expiry_makes_lifting_due_without_a_record() {
    let mut w = World::new(&[SH, GD]);
    let mut e = black_entry(org(ACME), "沪市监处〔2026〕99号", &["P-PROCUREMENT"]);
    e.expires_on = date("2026-12-01");
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    w.accept(
        "310000:init",
        Body::JointActionInitiated(JointAction {
            reference: "沪联惩〔2026〕9号".into(),
            kind: ActionKind::Punishment,
            entry: id,
            targets: Targets::Regions(vec![region(GD)]),
            measures: vec![mc("P-PROCUREMENT")],
            respond_by: date("2026-11-09"),
        }),
    );
    let aid = action_id(&dept("310000:init"), "沪联惩〔2026〕9号");
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Accepted,
            implementing: vec![dept("440000:impl")],
        },
    );
    w.accept(
        "440000:impl",
        Body::MeasureExecuted {
            action: aid,
            measure: mc("P-PROCUREMENT"),
            reference: "粤执".into(),
            executed_on: date("2026-11-03"),
        },
    );
    w.now = noon("2026-11-30");
    assert!(inbox(&w, GD).is_empty());
    w.now = noon("2026-12-01");
    let t = inbox(&w, GD);
    assert_eq!(kinds(&t), vec![TaskKind::Lift], "{t:?}");
    assert_eq!(t[0].since, date("2026-12-01"));
    assert_eq!(t[0].due, date("2026-12-08"));
}

/// Article 二十三 with the working-day calendar: a task's deadline skips the Spring
/// Festival and National Day holidays and counts the Saturdays made working days
/// (2026: 2-14 and 2-28; 10-10), and a deadline beyond the calendar held is marked as
/// estimated.
#[test]
fn art23_deadlines_count_working_days_across_spring_festival_and_national_day() {
    // One real answer, then the same answer dated as each case needs (the world's clock
    // cannot go back before its registrations): the deadline is computed from the fold.
    let mut w = World::new(&[SH, GD]);
    let e = black_entry(org(ACME), "沪市监处〔2026〕77号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    w.accept(
        "310000:init",
        Body::JointActionInitiated(JointAction {
            reference: "沪联惩〔2026〕88号".into(),
            kind: ActionKind::Punishment,
            entry: id,
            targets: Targets::Regions(vec![region(GD)]),
            measures: vec![mc("P-PROCUREMENT")],
            respond_by: date("2028-01-01"),
        }),
    );
    let aid = action_id(&dept("310000:init"), "沪联惩〔2026〕88号");
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Accepted,
            implementing: vec![dept("440000:impl")],
        },
    );
    let action = w.ledger.action(&aid).unwrap();
    let entry = w.ledger.entry(&id).unwrap();
    let run = |answered: &str| -> Task {
        let mut a = action.clone();
        a.responses.get_mut(&region(GD)).unwrap().origin.at = noon(answered);
        let t = action_tasks(
            &a,
            &entry,
            region(GD),
            noon(answered),
            &w.calendar,
            &w.manifest.policy,
        );
        assert_eq!(kinds(&t), vec![TaskKind::ReportExecution], "{t:?}");
        t[0].clone()
    };
    // Friday 2-13: Saturday 2-14 is a working day (1), 2-15 to 2-23 are the holiday,
    // 2-24 … 2-27 (2 to 5).
    let t = run("2026-02-13");
    assert_eq!(t.due, date("2026-02-27"));
    assert!(!t.due_estimated);
    // Wednesday 9-30: 10-1 to 10-7 are the holiday; 10-8, 10-9, Saturday 10-10 (a working
    // day), 10-12, 10-13.
    let t = run("2026-09-30");
    assert_eq!(t.due, date("2026-10-13"));
    // Answered on 2026-12-28: five working days end in 2027, beyond the calendar held.
    let t = run("2026-12-28");
    assert!(t.due_estimated, "{t:?}");
}

/// Articles 十八 (信息推送) and 二十三 (跟踪问效): what a region's event stream carries —
/// its own records, an action naming it and the answers to its own actions, objections
/// and repair applications to what it issued and the outcome of those it recorded, a
/// change to an entry it was asked to act on — and not others' business.
#[test]
fn art18_23_each_region_is_told_what_concerns_it() {
    use credfed_protocol::events::concerns;
    let mut w = World::new(&[SH, GD, GS, 110000]);
    let e = judgment_entry(&w, org(ACME), "（2026）沪01执8号", &["P-PROCUREMENT"]);
    let publish = Body::ListEntryPublished(e.clone());
    w.accept("310000:pub", publish.clone());
    let id = published_id(&w, SH, &e);
    let action = JointAction {
        reference: "沪联惩〔2026〕88号".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::Regions(vec![region(GD)]),
        measures: vec![mc("P-PROCUREMENT")],
        respond_by: date("2026-11-09"),
    };
    let initiate = Body::JointActionInitiated(action.clone());
    w.accept("310000:init", initiate.clone());
    let aid = action_id(&dept("310000:init"), &action.reference);
    let ack = Body::JointActionAcknowledged {
        action: aid,
        decision: AckDecision::Accepted,
        implementing: vec![dept("440000:impl")],
    };
    w.accept("440000:impl", ack.clone());
    let apply = Body::RepairApplied {
        entry: id,
        case_no: "甘信修〔2026〕8号".into(),
        basis: RepairBasis::CorrectedWithinPeriod,
        grounds: "已履行".into(),
        filed_on: w.now.date_cst(),
    };
    w.accept("620000:obj", apply.clone());
    let decide = Body::RepairDecided {
        entry: id,
        application: repair_application_id(&dept("620000:obj"), "甘信修〔2026〕8号"),
        outcome: RepairOutcome::Repaired,
        reason: "准予".into(),
    };
    w.accept("310000:pub", decide.clone());
    let told = |to: u32, from: u32, body: &Body| {
        concerns(&w.ledger, region(to), region(from), body).unwrap()
    };
    // Own records always; another region's publication with no action: not.
    assert!(told(SH, SH, &publish));
    assert!(!told(GD, SH, &publish));
    // The action: its target, not a bystander; the answer: the initiator.
    assert!(told(GD, SH, &initiate));
    assert!(!told(GS, SH, &initiate));
    assert!(told(SH, GD, &ack));
    assert!(!told(110000, GD, &ack));
    // A repair application: the issuer; the decision: the recording region, and the
    // target that may have to lift; not a bystander.
    assert!(told(SH, GS, &apply));
    assert!(!told(GD, GS, &apply));
    assert!(told(GS, SH, &decide));
    assert!(told(GD, SH, &decide));
    assert!(!told(110000, SH, &decide));
}

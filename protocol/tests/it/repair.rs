//! Credit repair on the subject's application (信用修复, articles 十八 and 二十一): recorded
//! by a department of any region, decided by the issuing region (谁认定、谁修复), with the
//! least periods and the decision deadline the federation's policy data sets.

use credfed_protocol::ids::Role;
use credfed_protocol::inbox::{TaskKind, TaskRef, repair_tasks};
use credfed_protocol::ledger::{Admission, RejectReason, local_policy};
use credfed_protocol::record::*;
use credfed_protocol::state::EntryState;
use credfed_protocol::time::Timestamp;

use crate::fixture::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;

fn world() -> World {
    World::new(&[110000, SH, GD, GS])
}

/// A food-safety black entry of Shanghai's, in force from 2026-11-01 to 2029-11-01.
fn food_entry(w: &mut World) -> EntryId {
    let e = black_entry(org(ACME), "沪市监处〔2026〕12号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    published_id(w, SH, &e)
}

fn application(entry: EntryId, case_no: &str, filed_on: &str) -> Body {
    Body::RepairApplied {
        entry,
        case_no: case_no.into(),
        basis: RepairBasis::CorrectedWithinPeriod,
        grounds: "已全部整改并缴清罚款".into(),
        filed_on: date(filed_on),
    }
}

fn decision(entry: EntryId, by: &str, case_no: &str, outcome: RepairOutcome) -> Body {
    Body::RepairDecided {
        entry,
        application: repair_application_id(&dept(by), case_no),
        outcome,
        reason: "经审核".into(),
    }
}

/// What the recording node's own rules say of a body now.
fn local(w: &World, body: &Body) -> Result<(), credfed_protocol::ledger::Rejection> {
    local_policy(w.rules(), &w.ledger, body, w.now).unwrap()
}

fn state(w: &World, id: &EntryId) -> EntryState {
    w.ledger.entry(id).unwrap().state_at(w.now)
}

/// Article 二十一: an application recorded in Guangdong for Shanghai's entry is decided by
/// Shanghai only; granted, the entry is repaired with the basis the subject claimed, and a
/// second decision on the same application is refused.
#[test]
fn art21_repair_application_recorded_anywhere_is_decided_by_the_issuer() {
    let mut w = world();
    let id = food_entry(&mut w);
    w.now = noon("2027-11-02");
    let apply = application(id, "粤信修〔2027〕1号", "2027-11-02");
    local(&w, &apply).unwrap();
    // The desk that takes applications is the objection handler's, not a publisher's.
    assert_eq!(
        w.refuse("440000:pub", apply.clone()).reason,
        RejectReason::Unauthorised
    );
    w.accept("440000:obj", apply.clone());
    assert_eq!(
        w.refuse("440000:obj", apply).field,
        "case_no",
        "a case number is used once per department and entry"
    );
    assert_eq!(
        state(&w, &id),
        EntryState::Active,
        "an application changes nothing yet"
    );

    let grant = decision(
        id,
        "440000:obj",
        "粤信修〔2027〕1号",
        RepairOutcome::Repaired,
    );
    let r = w.refuse("440000:pub", grant.clone());
    assert_eq!(r.reason, RejectReason::Unauthorised, "{r}");
    assert!(r.message.contains("谁认定、谁修复"), "{r}");
    w.accept("310000:pub", grant.clone());
    assert_eq!(state(&w, &id), EntryState::Repaired);
    let fold = w.ledger.entry(&id).unwrap();
    assert_eq!(
        fold.repaired.as_ref().map(|(b, _)| *b),
        Some(RepairBasis::CorrectedWithinPeriod)
    );
    let r = w.refuse("310000:pub", grant);
    assert_eq!(
        (r.reason, r.field.as_str()),
        (RejectReason::Conflict, "application")
    );
}

/// Article 二十一 with the 2023 national repair rules: serious dishonesty stays disclosed
/// at least a year; an application before that is refused, naming the field, the day it
/// becomes possible and the source; nothing is stored.
#[test]
fn art21_application_before_the_least_period_is_refused_naming_the_rule() {
    let mut w = world();
    let id = food_entry(&mut w);
    w.now = noon("2027-06-01");
    let early = application(id, "粤信修〔2027〕2号", "2027-06-01");
    let r = local(&w, &early).unwrap_err();
    assert_eq!(
        (r.reason, r.field.as_str()),
        (RejectReason::NotApplicable, "filed_on")
    );
    assert!(r.message.contains("2027-11-01"), "{r}");
    assert!(r.message.contains("58号"), "{r}");
    // The day it becomes possible, it is accepted.
    w.now = noon("2027-11-01");
    local(&w, &application(id, "粤信修〔2027〕2号", "2027-11-01")).unwrap();
    // An application dated after the day it is recorded: refused by every node.
    let r = w.refuse(
        "440000:obj",
        application(id, "粤信修〔2027〕3号", "2027-11-05"),
    );
    assert_eq!(r.field, "filed_on", "{r}");
    assert!(w.ledger.entry(&id).unwrap().repairs.is_empty());
}

/// 法释〔2017〕7号 第十条: a court-listed debtor who performs is deleted; no least period.
#[test]
fn art21_court_listed_debtor_may_apply_as_soon_as_it_performs() {
    let mut w = world();
    let e = judgment_entry(&w, org(ACME), "（2026）沪01执1号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    w.now = noon("2026-11-03");
    let apply = application(id, "沪信修〔2026〕1号", "2026-11-03");
    local(&w, &apply).unwrap();
    w.accept("310000:obj", apply);
}

/// Article 二十一: repair is for black-list entries; a red entry has nothing to repair, and
/// an entry already ended takes no application.
#[test]
fn art21_applications_only_for_black_entries_in_force() {
    let mut w = world();
    let red = red_entry(org(ACME), "京发改〔2026〕1号", &["I-LICENSING-GREEN"]);
    w.accept("310000:pub", Body::ListEntryPublished(red.clone()));
    let rid = published_id(&w, SH, &red);
    let r = w.refuse(
        "440000:obj",
        application(rid, "粤信修〔2026〕9号", "2026-11-02"),
    );
    assert_eq!(r.reason, RejectReason::NotApplicable, "{r}");
    assert!(r.message.contains("二十一"), "{r}");

    let id = food_entry(&mut w);
    w.accept(
        "310000:pub",
        Body::ListEntryRevoked {
            entry: id,
            reason: "认定错误".into(),
        },
    );
    w.now = noon("2027-11-02");
    let r = local(&w, &application(id, "粤信修〔2027〕4号", "2027-11-02")).unwrap_err();
    assert_eq!(r.reason, RejectReason::Conflict, "{r}");
    w.now = noon("2029-11-02");
    let id2 = {
        let e = black_entry(org(ACME), "沪市监处〔2026〕13号", &["P-PROCUREMENT"]);
        w.now = noon("2026-11-02");
        w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
        published_id(&w, SH, &e)
    };
    w.now = noon("2029-11-02");
    let r = local(&w, &application(id2, "粤信修〔2029〕1号", "2029-11-02")).unwrap_err();
    assert!(r.message.contains("expired"), "{r}");
}

/// Article 二十一: refused or not accepted, the entry stays in force and its measures
/// apply; the subject may apply again under a new case number.
#[test]
fn art21_refused_application_leaves_the_entry_in_force() {
    let mut w = world();
    let id = food_entry(&mut w);
    w.now = noon("2027-11-02");
    w.accept(
        "440000:obj",
        application(id, "粤信修〔2027〕5号", "2027-11-02"),
    );
    w.accept(
        "310000:pub",
        decision(
            id,
            "440000:obj",
            "粤信修〔2027〕5号",
            RepairOutcome::Refused,
        ),
    );
    assert_eq!(state(&w, &id), EntryState::Active);
    w.accept(
        "440000:obj",
        application(id, "粤信修〔2027〕6号", "2027-11-02"),
    );
    w.accept(
        "310000:pub",
        decision(
            id,
            "440000:obj",
            "粤信修〔2027〕6号",
            RepairOutcome::NotAccepted,
        ),
    );
    assert_eq!(state(&w, &id), EntryState::Active);
    // A decision on an application that does not exist, at its issuer: refused, named.
    let ghost = decision(id, "440000:obj", "不存在", RepairOutcome::Repaired);
    let r = local(&w, &ghost).unwrap_err();
    assert_eq!(r.field, "application", "{r}");
}

/// Article 二十一, replication: a replica that holds the issuer's decision before the
/// application from the recording region waits for it (a missing dependency), never
/// refuses it; once the application arrives, the replica holds the same fold.
#[test]
fn art21_a_decision_ahead_of_its_application_waits_for_it() {
    let mut w = world();
    let id = food_entry(&mut w);
    w.now = noon("2027-11-02");
    w.accept(
        "440000:obj",
        application(id, "粤信修〔2027〕7号", "2027-11-02"),
    );
    w.accept(
        "310000:pub",
        decision(
            id,
            "440000:obj",
            "粤信修〔2027〕7号",
            RepairOutcome::Repaired,
        ),
    );
    let mut replica = credfed_protocol::ledger::Ledger::new();
    let rules = w.rules();
    let logs = w.logs();
    let guangdong = logs
        .iter()
        .position(|l| l.first().is_some_and(|e| envelope_region(e) == region(GD)))
        .unwrap();
    let mut waiting = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        if i == guangdong {
            continue;
        }
        for env in log {
            match replica.ingest(rules, env).unwrap() {
                Admission::Accept(_) | Admission::Duplicate => {}
                Admission::MissingDependency { what } => {
                    assert!(what.contains("repair application"), "{what}");
                    waiting.push(env.clone());
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(waiting.len(), 1, "only the decision waits");
    for env in &logs[guangdong] {
        replica.ingest(rules, env).unwrap();
    }
    for env in &waiting {
        assert!(matches!(
            replica.ingest(rules, env).unwrap(),
            Admission::Accept(_)
        ));
    }
    assert_eq!(replica.entry(&id), w.ledger.entry(&id));
}

fn envelope_region(bytes: &[u8]) -> credfed_protocol::ids::RegionCode {
    credfed_protocol::envelope::decode_envelope(FED, bytes)
        .unwrap()
        .envelope
        .region
}

/// Articles 二十一, 二十三: an undecided application is a task of the issuer's publishing
/// department, due the policy's working days after filing, counted over the 2026
/// National Day holiday; beyond the calendar the node holds the deadline is marked
/// estimated. A granted repair gives every region that executed a measure a lifting task.
#[test]
fn art21_23_applications_and_lifting_reach_the_right_inboxes() {
    // A court-listed debtor (no least period), listed in August 2026.
    let mut w = World::starting(&[110000, SH, GD, GS], noon("2026-08-31"));
    let e = ListEntry {
        basis: Basis {
            decided_on: date("2026-08-28"),
            ..judgment_entry(&w, org(ACME), "（2026）沪01执9号", &[]).basis
        },
        effective_from: date("2026-08-31"),
        expires_on: date("2028-08-31"),
        requested_measures: vec![mc("P-PROCUREMENT")],
        ..judgment_entry(&w, org(ACME), "（2026）沪01执9号", &[])
    };
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    let action = JointAction {
        reference: "沪联惩〔2026〕9号".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::Regions(vec![region(GD), region(GS)]),
        measures: vec![mc("P-PROCUREMENT")],
        respond_by: date("2026-09-07"),
    };
    w.accept("310000:init", Body::JointActionInitiated(action.clone()));
    let aid = action_id(&dept("310000:init"), &action.reference);
    for r in ["440000", "620000"] {
        w.accept(
            &format!("{r}:impl"),
            Body::JointActionAcknowledged {
                action: aid,
                decision: AckDecision::Accepted,
                implementing: vec![dept(&format!("{r}:impl"))],
            },
        );
        w.accept(
            &format!("{r}:impl"),
            Body::MeasureExecuted {
                action: aid,
                measure: mc("P-PROCUREMENT"),
                reference: "执行".into(),
                executed_on: date("2026-09-01"),
            },
        );
    }
    // Filed in Gansu on the Monday before the National Day week.
    w.now = noon("2026-09-28");
    let today = date("2026-09-28");
    w.accept(
        "620000:obj",
        application(id, "甘信修〔2026〕1号", "2026-09-28"),
    );
    let marks = w.ledger.marks_due(region(SH), today);
    assert!(marks.contains(&(TaskRef::Repair(id), today)), "{marks:?}");
    assert!(
        !w.ledger
            .marks_due(region(GS), today)
            .iter()
            .any(|(t, _)| matches!(t, TaskRef::Repair(_))),
        "the recording region decides nothing"
    );
    let fold = w.ledger.entry(&id).unwrap();
    let repair = w.catalogue.repair.as_ref();
    let tasks = repair_tasks(&fold, w.now, &w.calendar, repair);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].kind, TaskKind::DecideRepair);
    assert_eq!(tasks[0].role, Role::Publisher);
    let days = repair.unwrap().decision_working_days as i32;
    // Counted on weekdays alone the deadline would fall on 2026-10-19; the National Day
    // holiday moves it later, and the calendar covers it.
    let weekdays_only = {
        let (mut d, mut left) = (today, days);
        while left > 0 {
            d = d.succ();
            if d.weekday() < 5 {
                left -= 1;
            }
        }
        d
    };
    assert_eq!(weekdays_only, date("2026-10-19"));
    assert!(tasks[0].due > weekdays_only, "{}", tasks[0].due);
    assert!(!tasks[0].due_estimated);
    assert!(!tasks[0].overdue);
    let after_due = Timestamp(tasks[0].due.succ().start_cst().0 + 12 * 3_600_000);
    assert!(repair_tasks(&fold, after_due, &w.calendar, repair)[0].overdue);
    // Filed late in the year, the deadline falls in 2027, beyond the calendar held.
    let mut late = fold.clone();
    late.repairs
        .values_mut()
        .for_each(|r| r.filed_on = date("2026-12-22"));
    assert!(repair_tasks(&late, w.now, &w.calendar, repair)[0].due_estimated);

    w.accept(
        "310000:pub",
        decision(
            id,
            "620000:obj",
            "甘信修〔2026〕1号",
            RepairOutcome::Repaired,
        ),
    );
    assert!(
        !w.ledger
            .marks_due(region(SH), today)
            .iter()
            .any(|(t, _)| *t == TaskRef::Repair(id)),
        "decided: the issuer's mark is gone"
    );
    for r in [GD, GS] {
        let marks = w.ledger.marks_due(region(r), today);
        assert!(
            marks.contains(&(TaskRef::Action(aid), today)),
            "{r} lifts what it executed: {marks:?}"
        );
    }
    assert!(w.ledger.marks_due(region(110000), today).is_empty());
}

/// The policy data refuses a least period as long as the longest listing (nothing could
/// ever be repaired on application) and a decision deadline of no working days.
#[test]
fn art21_policy_data_refuses_impossible_repair_periods() {
    let mut c = credfed_protocol::catalogue::Catalogue::embedded().unwrap();
    let r = c.repair.as_mut().unwrap();
    r.default_min_days = 1096;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("least period"), "{e}");
    let mut c = credfed_protocol::catalogue::Catalogue::embedded().unwrap();
    c.repair.as_mut().unwrap().decision_working_days = 0;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("decision_working_days"), "{e}");
}

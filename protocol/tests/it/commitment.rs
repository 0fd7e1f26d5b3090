//! Written commitments under 容缺受理 (信用承诺, article 四): recorded by the accepting
//! department of any region, settled by that region only, fulfilled by the deadline or
//! breached after it; a breach shows in every region's checks and withholds acceptance
//! on a commitment for a year.

use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::check::{BREACH_SHOWN_DAYS, COMMITMENT_MEASURE, Verdict, check};
use credfed_protocol::inbox::{TaskKind, TaskRef, commitment_task};
use credfed_protocol::ledger::RejectReason;
use credfed_protocol::record::*;
use credfed_protocol::state::CommitmentState;

use crate::fixture::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

fn commitment(acceptance_no: &str, made_on: &str, due_on: &str) -> Commitment {
    Commitment {
        subject: org(ACME),
        acceptance_no: acceptance_no.into(),
        matter: "食品经营许可证新办".into(),
        waived: vec!["场所平面图".into(), "设备布局图".into()],
        made_on: date(made_on),
        due_on: date(due_on),
    }
}

fn settle(by: &str, acceptance_no: &str, outcome: CommitmentOutcome, on: &str) -> Body {
    Body::CommitmentSettled {
        commitment: commitment_id(&dept(by), acceptance_no),
        outcome,
        settled_on: date(on),
        note: "核查".into(),
    }
}

/// A world in which Guangdong's red list names ACME with 容缺受理 among its measures.
fn world_with_incentive() -> World {
    let mut w = World::new(&[SH, GD]);
    let red = red_entry(org(ACME), "粤信红〔2026〕3号", &[COMMITMENT_MEASURE]);
    w.accept("440000:pub", Body::ListEntryPublished(red));
    w
}

fn licensing_check(w: &World) -> credfed_protocol::check::CheckAnswer {
    check(
        w.rules(),
        &w.ledger,
        &SubjectKey::Uscc(ACME.into()),
        MeasureDomain::Licensing,
        w.now,
    )
    .unwrap()
}

/// Article 四: a commitment names what is missing and a deadline; one without either,
/// or with a deadline not after the day it was made, is refused naming the field.
#[test]
fn art4_a_commitment_without_deadline_or_materials_is_refused() {
    let mut w = World::new(&[SH, GD]);
    let same_day = commitment("沪许受〔2026〕1号", "2026-11-02", "2026-11-02");
    let e = w.refuse("310000:pub", Body::CommitmentMade(same_day));
    assert_eq!(e.field, "body.commitment.due_on", "{e:?}");
    assert!(e.message.contains("四"), "{e:?}");
    let none_waived = Commitment {
        waived: vec![],
        ..commitment("沪许受〔2026〕1号", "2026-11-02", "2026-12-02")
    };
    let e = w.refuse("310000:pub", Body::CommitmentMade(none_waived));
    assert_eq!(e.field, "body.commitment.waived", "{e:?}");
    let decades = commitment("沪许受〔2026〕1号", "2026-11-02", "2046-11-02");
    assert_eq!(
        w.refuse("310000:pub", Body::CommitmentMade(decades)).field,
        "body.commitment.due_on"
    );
    let future = commitment("沪许受〔2026〕1号", "2026-11-03", "2026-12-02");
    assert_eq!(
        w.refuse("310000:pub", Body::CommitmentMade(future)).field,
        "commitment.made_on"
    );
    // The accepting department is a publisher (行政许可机关); others may not record one.
    let ok = commitment("沪许受〔2026〕1号", "2026-11-02", "2026-12-02");
    assert_eq!(
        w.refuse("310000:obj", Body::CommitmentMade(ok.clone()))
            .reason,
        RejectReason::Unauthorised
    );
    w.accept("310000:pub", Body::CommitmentMade(ok.clone()));
    assert_eq!(
        w.refuse("310000:pub", Body::CommitmentMade(ok)).field,
        "commitment.acceptance_no",
        "an acceptance number is used once per department"
    );
}

/// Article 四 (在规定期限内提供): fulfilled only by the deadline, breached only after it;
/// only the recording region settles, and only once.
#[test]
fn art4_fulfilled_by_the_deadline_breached_only_after_it_settled_once_by_the_recorder() {
    let mut w = World::new(&[SH, GD]);
    w.accept(
        "310000:pub",
        Body::CommitmentMade(commitment("沪许受〔2026〕1号", "2026-11-02", "2026-11-20")),
    );
    let id = commitment_id(&dept("310000:pub"), "沪许受〔2026〕1号");
    let early_breach = settle(
        "310000:pub",
        "沪许受〔2026〕1号",
        CommitmentOutcome::Breached,
        "2026-11-02",
    );
    let e = w.refuse("310000:pub", early_breach);
    assert_eq!(e.field, "outcome", "{e:?}");
    assert!(e.message.contains("has not passed"), "{e:?}");
    // Guangdong cannot settle Shanghai's commitment.
    let e = w.refuse(
        "440000:pub",
        settle(
            "310000:pub",
            "沪许受〔2026〕1号",
            CommitmentOutcome::Fulfilled,
            "2026-11-02",
        ),
    );
    assert_eq!(e.reason, RejectReason::Unauthorised, "{e:?}");
    w.now = noon("2026-11-25");
    let late = settle(
        "310000:pub",
        "沪许受〔2026〕1号",
        CommitmentOutcome::Fulfilled,
        "2026-11-24",
    );
    let e = w.refuse("310000:pub", late);
    assert_eq!(e.field, "outcome");
    assert!(e.message.contains("breached"), "{e:?}");
    let future = settle(
        "310000:pub",
        "沪许受〔2026〕1号",
        CommitmentOutcome::Breached,
        "2026-11-26",
    );
    assert_eq!(w.refuse("310000:pub", future).field, "settled_on");
    w.accept(
        "310000:pub",
        settle(
            "310000:pub",
            "沪许受〔2026〕1号",
            CommitmentOutcome::Breached,
            "2026-11-21",
        ),
    );
    let fold = w.ledger.commitment(&id).unwrap();
    assert_eq!(fold.state_on(w.now.date_cst()), CommitmentState::Breached);
    let again = settle(
        "310000:pub",
        "沪许受〔2026〕1号",
        CommitmentOutcome::Breached,
        "2026-11-22",
    );
    assert_eq!(w.refuse("310000:pub", again).field, "commitment");
}

/// Article 四: a breach recorded in Shanghai shows in Guangdong's check of the subject
/// and withholds 容缺受理 that Guangdong's red list would give, naming the breach; a
/// year later it is shown no more and the measure applies again. A commitment fulfilled
/// in time shows nothing.
#[test]
fn art4_a_breach_shows_in_checks_and_withholds_acceptance_on_commitment_for_a_year() {
    let mut w = world_with_incentive();
    let before = licensing_check(&w);
    assert!(
        before
            .recommended
            .iter()
            .any(|m| m.code.0 == COMMITMENT_MEASURE),
        "{:?}",
        before.recommended
    );
    w.accept(
        "310000:pub",
        Body::CommitmentMade(commitment("沪许受〔2026〕1号", "2026-11-02", "2026-11-20")),
    );
    w.accept(
        "310000:pub",
        Body::CommitmentMade(commitment("沪许受〔2026〕2号", "2026-11-02", "2026-11-20")),
    );
    w.now = noon("2026-11-19");
    w.accept(
        "310000:pub",
        settle(
            "310000:pub",
            "沪许受〔2026〕2号",
            CommitmentOutcome::Fulfilled,
            "2026-11-19",
        ),
    );
    assert!(licensing_check(&w).commitments.is_empty(), "open or kept");
    // Past the deadline and not settled: shown as overdue, nothing withheld yet.
    w.now = noon("2026-11-23");
    let overdue = licensing_check(&w);
    assert_eq!(overdue.commitments.len(), 1);
    assert_eq!(overdue.commitments[0].state, CommitmentState::Overdue);
    assert!(overdue.withheld.is_empty());
    w.accept(
        "310000:pub",
        settle(
            "310000:pub",
            "沪许受〔2026〕1号",
            CommitmentOutcome::Breached,
            "2026-11-23",
        ),
    );
    let after = licensing_check(&w);
    assert_eq!(after.commitments.len(), 1);
    assert_eq!(after.commitments[0].state, CommitmentState::Breached);
    assert_eq!(after.commitments[0].region, region(SH));
    let withheld = after
        .withheld
        .iter()
        .find(|m| m.measure.code.0 == COMMITMENT_MEASURE)
        .expect("容缺受理 withheld");
    assert!(
        withheld.reason.contains("沪许受〔2026〕1号") && withheld.reason.contains("四"),
        "{}",
        withheld.reason
    );
    assert!(
        !after
            .recommended
            .iter()
            .any(|m| m.code.0 == COMMITMENT_MEASURE)
    );
    // Other incentives are not touched by a breach.
    assert_ne!(after.verdict, Verdict::Clear);
    // The breach's year runs out.
    let last_day = date("2026-11-23").add_days(BREACH_SHOWN_DAYS - 1);
    w.now = noon(&last_day.to_string());
    assert_eq!(licensing_check(&w).commitments.len(), 1);
    w.now = noon(&last_day.add_days(1).to_string());
    let later = licensing_check(&w);
    assert!(later.commitments.is_empty());
    assert!(
        later
            .recommended
            .iter()
            .any(|m| m.code.0 == COMMITMENT_MEASURE)
    );
}

/// Article 四: the recording region's inbox follows a commitment from the day it was
/// made to its deadline (overdue after it) and drops it once settled; no other region
/// sees it.
#[test]
fn art4_the_recording_region_follows_its_commitment_in_the_inbox() {
    let mut w = World::new(&[SH, GD]);
    w.accept(
        "310000:pub",
        Body::CommitmentMade(commitment("沪许受〔2026〕1号", "2026-11-02", "2026-11-20")),
    );
    let id = commitment_id(&dept("310000:pub"), "沪许受〔2026〕1号");
    let due = |w: &World, code: u32| {
        w.ledger
            .marks_due(region(code), w.now.date_cst())
            .into_iter()
            .filter_map(|(t, _)| match t {
                TaskRef::Commitment(c) => commitment_task(&w.ledger.commitment(&c).unwrap(), w.now),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let tasks = due(&w, SH);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].kind, TaskKind::SettleCommitment);
    assert_eq!(tasks[0].about, TaskRef::Commitment(id));
    assert_eq!(tasks[0].due, date("2026-11-20"));
    assert!(!tasks[0].overdue);
    assert!(due(&w, GD).is_empty());
    w.now = noon("2026-11-21");
    assert!(due(&w, SH)[0].overdue);
    // Never settled, it shows in checks as overdue for a year after its deadline, then
    // no more (the task stays in the inbox until the region settles it).
    let shown = |w: &World| licensing_check(w).commitments.len();
    assert_eq!(shown(&w), 1);
    let back = w.now;
    w.now = noon(&date("2026-11-20").add_days(BREACH_SHOWN_DAYS).to_string());
    assert_eq!(shown(&w), 1);
    w.now = noon(
        &date("2026-11-20")
            .add_days(BREACH_SHOWN_DAYS + 1)
            .to_string(),
    );
    assert_eq!(shown(&w), 0);
    assert_eq!(due(&w, SH).len(), 1);
    w.now = back;
    w.accept(
        "310000:pub",
        settle(
            "310000:pub",
            "沪许受〔2026〕1号",
            CommitmentOutcome::Breached,
            "2026-11-21",
        ),
    );
    assert!(due(&w, SH).is_empty());
}

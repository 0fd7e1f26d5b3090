//! The check (应查必查) and offline verification of its answers.

use credfed_protocol::catalogue::{Bearer, MeasureDomain, SubjectKind};
use credfed_protocol::check::{CheckAnswer, MeasureSource, Verdict, check, verify_answer};
use credfed_protocol::envelope::sign_body;
use credfed_protocol::ids::Role;
use credfed_protocol::record::*;
use credfed_protocol::state::EntryState;

use crate::fixture::*;

/// The shared ACME world (`fixture::acme_world`).
fn scenario() -> (World, EntryId, EntryId) {
    acme_world()
}

fn answer(w: &World) -> CheckAnswer {
    check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::FiscalFunding,
        w.now,
    )
    .unwrap()
}

#[test]
fn answer_splits_active_and_suspended_and_verifies_offline() {
    let (w, id1, id2) = scenario();
    let a = answer(&w);
    assert_eq!(a.verdict, Verdict::MeasuresApply);
    // P-FISCAL-FUNDING comes from the joint action, not the entry's request; no statute
    // makes it compulsory, so it is recommended.
    assert_eq!(
        a.recommended
            .iter()
            .map(|m| m.code.0.as_str())
            .collect::<Vec<_>>(),
        ["P-FISCAL-FUNDING"]
    );
    assert!(
        a.recommended
            .iter()
            .all(|m| m.source == MeasureSource::Entry(id1))
    );
    assert!(a.mandatory.is_empty());
    let suspended = a.entries.iter().find(|e| e.entry == id2).unwrap();
    assert_eq!(suspended.state, EntryState::Suspended);
    assert_eq!(a.evaluations.len(), 1);
    assert_eq!(a.freshness.len(), 3);
    assert!(a.freshness.iter().all(|f| f.head_seq > 0));

    // Through JSON, as the CLI receives it.
    let json = serde_json::to_string(&a).unwrap();
    let back: CheckAnswer = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    let report = verify_answer(&back, &w.manifest, &w.catalogue);
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.entries_confirmed, 2);
    assert!(report.envelopes_verified >= 5);
}

#[test]
fn a_flipped_byte_is_named() {
    let (w, _, _) = scenario();
    let mut a = answer(&w);
    let pos = a.evidence[0].pos;
    let n = a.evidence[0].envelope.len();
    a.evidence[0].envelope[n / 2] ^= 0x10;
    let r = verify_answer(&a, &w.manifest, &w.catalogue);
    assert!(!r.ok());
    let label = format!("evidence {}#{}", pos.region, pos.seq);
    assert!(
        r.failures.iter().any(|f| f.starts_with(&label)),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_missing_envelope_is_named() {
    let (w, id1, _) = scenario();
    let mut a = answer(&w);
    // Drop the publication of entry 1.
    let publication = w
        .ledger
        .entries()
        .find(|e| e.id == id1)
        .unwrap()
        .published
        .pos;
    a.evidence.retain(|e| e.pos != publication);
    let r = verify_answer(&a, &w.manifest, &w.catalogue);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains(&id1.to_string()) && f.contains("not in the evidence")),
        "{:?}",
        r.failures
    );
    // Dropping an author's registration breaks every envelope that author signed.
    let mut a = answer(&w);
    let reg = w
        .ledger
        .entries()
        .find(|e| e.id == id1)
        .unwrap()
        .published
        .author
        .clone();
    let reg_pos = w.ledger.department(&reg).unwrap().registered_at;
    a.evidence.retain(|e| e.pos != reg_pos);
    let r = verify_answer(&a, &w.manifest, &w.catalogue);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("no registration of author 310000:pub")),
        "{:?}",
        r.failures
    );
}

#[test]
fn an_unauthorised_author_is_named() {
    let (mut w, _, _) = scenario();
    // An implementer signs a publication; a lying node puts it in its log and the answer.
    w.register("310000:rogue", &[Role::Implementer]);
    let e = black_entry(org(ACME), "伪造", &["P-FISCAL-FUNDING"]);
    let body = Body::ListEntryPublished(e.clone());
    let (bytes, sig) = sign_body(FED, &w.depts[&dept("310000:rogue")], &body);
    let forged = w.seal_signed(dept("310000:rogue"), bytes, sig);
    assert!(w.ingest(&forged).is_err(), "the ledger refuses it");
    let mut a = answer(&w);
    let head = w.ledger.head(region(310000)).unwrap();
    a.evidence.push(credfed_protocol::check::Evidence {
        pos: credfed_protocol::state::RecordPos {
            region: region(310000),
            seq: head.seq + 1,
        },
        envelope: forged,
    });
    let reg = w
        .ledger
        .department(&dept("310000:rogue"))
        .unwrap()
        .registered_at;
    a.evidence.push(credfed_protocol::check::Evidence {
        pos: reg,
        envelope: w.ledger.range(region(310000), reg.seq, 1).remove(0),
    });
    let r = verify_answer(&a, &w.manifest, &w.catalogue);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("lacks the publisher role")),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_tampered_claim_is_caught() {
    let (w, _, id2) = scenario();
    let mut a = answer(&w);
    // Claim the suspended entry is active and applies its measure (invariant 5).
    let e = a.entries.iter_mut().find(|e| e.entry == id2).unwrap();
    e.state = EntryState::Active;
    let r = verify_answer(&a, &w.manifest, &w.catalogue);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("claimed state Active")),
        "{:?}",
        r.failures
    );
    let mut a = answer(&w);
    a.mandatory.push(credfed_protocol::check::AppliedMeasure {
        code: mc("P-PROCUREMENT"),
        title_zh: "x".into(),
        kind: ActionKind::Punishment,
        source: MeasureSource::Entry(id2),
        region: region(310000),
        roles: vec![Bearer::Subject(SubjectKind::Organisation)],
        basis: String::new(),
    });
    let r = verify_answer(&a, &w.manifest, &w.catalogue);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("a suspended or corrected entry applies none")),
        "{:?}",
        r.failures
    );
    let mut a = answer(&w);
    a.evaluations[0].evaluation.grade = Grade::Class(*b"A\0\0\0");
    assert!(!verify_answer(&a, &w.manifest, &w.catalogue).ok());
}

/// The folds travel as JSON through the node's API: every map must have string keys.
#[test]
fn folds_round_trip_through_json() {
    let (mut w, id1, _) = scenario();
    let aid = action_id(&dept("310000:init"), "沪联惩〔2026〕5号");
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
            reference: "r".into(),
            executed_on: date("2026-11-03"),
        },
    );
    let a = w.ledger.action(&aid).unwrap();
    assert_eq!(a.executions.len(), 1);
    let back: credfed_protocol::state::ActionFold =
        serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    let e = w.ledger.entry(&id1).unwrap();
    let back: credfed_protocol::state::EntryFold =
        serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(back, e);
    // And through the binary store encoding.
    let bytes = credfed_protocol::codec::encode(&a).unwrap();
    assert_eq!(
        credfed_protocol::codec::decode::<credfed_protocol::state::ActionFold>(
            &bytes,
            1 << 20,
            "a"
        )
        .unwrap(),
        a
    );
}

/// Article 二十 (发起与响应): a target region may decline an action, wholly or in part, with
/// its reasons. The federation's answer is the same everywhere; beside it, the declining
/// region sees which of the measures it applies that region declined, when and why — a
/// mandatory one flagged as mandatory all the same — and a region that accepted sees
/// nothing.
#[test]
fn art20_a_declining_region_sees_its_decline_beside_the_answer() {
    use credfed_protocol::check::declined_here;
    let mut w = World::new(&[310000, 440000, 620000]);
    let e = judgment_entry(&w, org(ACME), "（2026）沪01执7号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, 310000, &e);
    let action = JointAction {
        reference: "沪联惩〔2026〕77号".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::Regions(vec![region(440000), region(620000)]),
        measures: vec![mc("P-FISCAL-FUNDING"), mc("P-PROCUREMENT")],
        respond_by: date("2026-11-09"),
    };
    w.accept("310000:init", Body::JointActionInitiated(action.clone()));
    let aid = action_id(&dept("310000:init"), &action.reference);
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Partly {
                accepted: vec![mc("P-PROCUREMENT")],
                reason: "本省无财政资金扶持项目".into(),
            },
            implementing: vec![dept("440000:impl")],
        },
    );
    w.accept(
        "620000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Declined {
                reason: "当事人已履行".into(),
            },
            implementing: vec![],
        },
    );
    let actions = vec![w.ledger.action(&aid).unwrap()];
    let ask = |domain| check(w.rules(), &w.ledger, &org(ACME).key(), domain, w.now).unwrap();
    let funding = ask(MeasureDomain::FiscalFunding);
    assert!(
        funding
            .recommended
            .iter()
            .any(|m| m.code == mc("P-FISCAL-FUNDING"))
    );
    let gansu = declined_here(&funding, &actions, region(620000));
    assert_eq!(gansu.len(), 1, "{gansu:?}");
    assert_eq!(gansu[0].measure, mc("P-FISCAL-FUNDING"));
    assert_eq!(gansu[0].reason, "当事人已履行");
    assert_eq!(gansu[0].declined_on, w.now.date_cst());
    assert!(!gansu[0].mandatory);
    let guangdong = declined_here(&funding, &actions, region(440000));
    assert_eq!(guangdong.len(), 1);
    assert_eq!(guangdong[0].reason, "本省无财政资金扶持项目");
    assert!(declined_here(&funding, &actions, region(310000)).is_empty());
    // The procurement bar is mandatory for judgment defiers (财库〔2016〕125号): Gansu
    // declined it, and is told it applies by law all the same; Guangdong accepted it.
    let procurement = ask(MeasureDomain::Procurement);
    assert!(
        procurement
            .mandatory
            .iter()
            .any(|m| m.code == mc("P-PROCUREMENT"))
    );
    let gansu = declined_here(&procurement, &actions, region(620000));
    assert_eq!(gansu.len(), 1);
    assert!(gansu[0].mandatory);
    assert!(declined_here(&procurement, &actions, region(440000)).is_empty());
}

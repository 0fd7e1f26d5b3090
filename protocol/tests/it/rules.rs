//! One test per state rule, each naming the article of 国发〔2016〕33号 it serves.

use credfed_protocol::catalogue::{Bearer, MeasureDomain};
use credfed_protocol::check::{Verdict, check, verify_answer};
use credfed_protocol::codec;
use credfed_protocol::envelope::{Envelope, NODE_UNIT};
use credfed_protocol::ids::Role;
use credfed_protocol::ledger::{Admission, RejectReason, verify_equivocation};
use credfed_protocol::record::*;
use credfed_protocol::state::{EntryState, EvaluationState, TargetStatus};

use crate::fixture::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;

fn world() -> World {
    World::new(&[110000, SH, GD, GS])
}

fn publish_black(w: &mut World) -> EntryId {
    let e = judgment_entry(
        w,
        org(ACME),
        "沪市监处〔2026〕12号",
        &["P-PROCUREMENT", "P-TRAVEL-AIR"],
    );
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    published_id(w, SH, &e)
}

fn state(w: &World, id: &EntryId) -> EntryState {
    w.ledger.entry(id).unwrap().state_at(w.now)
}

/// Articles 九, 十一, 十四: a black-list entry applies its measures from its effective
/// date, each to whom it falls on: government procurement to the company, the flight ban
/// to its legal representative and not to the company (法释〔2015〕17号 第三条).
#[test]
fn art9_11_14_black_entry_applies_in_its_period_to_whom_its_measures_fall_on() {
    let mut w = world();
    w.now = noon("2026-10-30");
    let id = publish_black(&mut w);
    assert_eq!(state(&w, &id), EntryState::Pending);
    w.now = noon("2026-11-01");
    assert_eq!(state(&w, &id), EntryState::Active);
    let ask = |key: &SubjectKey, domain| check(w.rules(), &w.ledger, key, domain, w.now).unwrap();
    let codes = |v: &[credfed_protocol::check::AppliedMeasure]| {
        v.iter().map(|m| m.code.0.clone()).collect::<Vec<_>>()
    };
    let company = ask(&org(ACME).key(), MeasureDomain::Procurement);
    assert_eq!(company.verdict, Verdict::MeasuresApply);
    assert_eq!(codes(&company.mandatory), ["P-PROCUREMENT"]);
    let company_travel = ask(&org(ACME).key(), MeasureDomain::Travel);
    assert_eq!(company_travel.verdict, Verdict::NothingApplies);
    let rep = ask(
        &SubjectKey::Person(legal_rep(&w).person.id_hash),
        MeasureDomain::Travel,
    );
    assert_eq!(codes(&rep.mandatory), ["P-TRAVEL-AIR"]);
    assert_eq!(
        rep.mandatory[0].roles,
        vec![Bearer::Related(RelatedRole::LegalRepresentative)]
    );
    assert_eq!(rep.entries[0].entry, id);
}

/// Article 十九 (退出机制): at the end of the period the entry leaves the list with no action.
#[test]
fn art19_entry_expires_at_end_of_period() {
    let mut w = world();
    let id = publish_black(&mut w);
    w.now = noon("2029-10-31");
    assert_eq!(state(&w, &id), EntryState::Active);
    w.now = noon("2029-11-01");
    assert_eq!(state(&w, &id), EntryState::Expired);
    assert_eq!(
        check(
            w.rules(),
            &w.ledger,
            &org(ACME).key(),
            MeasureDomain::Travel,
            w.now
        )
        .unwrap()
        .verdict,
        Verdict::Clear
    );
}

/// Article 二十二: an objection recorded in any region suspends the entry everywhere;
/// a suspended entry yields no applied measure; only the issuer resolves.
#[test]
fn art22_objection_from_any_region_suspends_and_only_issuer_resolves() {
    let mut w = world();
    let id = publish_black(&mut w);
    let filed = Body::ObjectionFiled {
        case_no: "粤异〔2026〕3号".into(),
        target: ObjectionTarget::Entry(id),
        grounds: "主体名称登记错误".into(),
        filed_on: date("2026-11-02"),
    };
    w.accept("440000:obj", filed);
    assert_eq!(state(&w, &id), EntryState::Suspended);
    let a = check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::Procurement,
        w.now,
    )
    .unwrap();
    assert_eq!(a.verdict, Verdict::NothingApplies);
    assert!(a.mandatory.is_empty() && a.recommended.is_empty());
    assert_eq!(a.entries[0].state, EntryState::Suspended);
    assert_eq!(a.entries[0].measures_in_domain, vec![mc("P-PROCUREMENT")]);

    let oid = objection_id(&dept("440000:obj"), "粤异〔2026〕3号");
    let resolve = |outcome| Body::ObjectionResolved {
        objection: oid,
        outcome,
        note: "经核实".into(),
    };
    let r = w.refuse("440000:obj", resolve(ObjectionOutcome::Upheld));
    assert_eq!(r.reason, RejectReason::Unauthorised, "{r}");
    assert!(r.message.contains("谁认定"), "{r}");
    let r = w.refuse("310000:pub", resolve(ObjectionOutcome::Upheld));
    assert_eq!(
        r.reason,
        RejectReason::Unauthorised,
        "a publisher is not an objection handler: {r}"
    );
    w.accept("310000:obj", resolve(ObjectionOutcome::Upheld));
    assert_eq!(state(&w, &id), EntryState::Active);
    assert_eq!(
        w.refuse("310000:obj", resolve(ObjectionOutcome::Revoked))
            .reason,
        RejectReason::Conflict
    );

    // A second case resolved as revoked revokes the entry.
    w.accept(
        "620000:obj",
        Body::ObjectionFiled {
            case_no: "甘异1".into(),
            target: ObjectionTarget::Entry(id),
            grounds: "已履行".into(),
            filed_on: date("2026-11-02"),
        },
    );
    let oid2 = objection_id(&dept("620000:obj"), "甘异1");
    w.accept(
        "310000:obj",
        Body::ObjectionResolved {
            objection: oid2,
            outcome: ObjectionOutcome::Revoked,
            note: "信息有误".into(),
        },
    );
    assert_eq!(state(&w, &id), EntryState::Revoked);
}

/// Article 二十二 (谁认定、谁修复): only the issuing region amends or revokes.
#[test]
fn art22_only_issuer_amends_or_revokes() {
    let mut w = world();
    let id = publish_black(&mut w);
    let mut amended = black_entry(org(ACME), "沪市监处〔2026〕12号", &["P-PROCUREMENT"]);
    amended.summary = "更正：涉案批次".into();
    let body = Body::ListEntryAmended {
        entry: id,
        amended: amended.clone(),
        reason: "更正".into(),
    };
    let r = w.refuse("440000:pub", body.clone());
    assert_eq!(r.reason, RejectReason::Unauthorised, "{r}");
    w.accept("310000:pub", body);
    assert_eq!(
        w.ledger.entry(&id).unwrap().content.summary,
        "更正：涉案批次"
    );
    assert_eq!(w.ledger.entry(&id).unwrap().amendments, 1);

    let moved = Body::ListEntryAmended {
        entry: id,
        amended: red_entry(org(ACME), "x", &[]),
        reason: "r".into(),
    };
    assert_eq!(w.refuse("310000:pub", moved).reason, RejectReason::Conflict);

    assert_eq!(
        w.refuse(
            "440000:pub",
            Body::ListEntryRevoked {
                entry: id,
                reason: "r".into()
            }
        )
        .reason,
        RejectReason::Unauthorised
    );
    w.accept(
        "310000:pub",
        Body::ListEntryRevoked {
            entry: id,
            reason: "撤销".into(),
        },
    );
    assert_eq!(state(&w, &id), EntryState::Revoked);
    assert_eq!(
        w.refuse(
            "310000:pub",
            Body::ListEntryRevoked {
                entry: id,
                reason: "again".into()
            }
        )
        .reason,
        RejectReason::Conflict
    );
}

/// Article 二十一: credit repair by the issuer ends the measures; repair is for black entries.
#[test]
fn art21_repair_ends_measures_and_applies_to_black_entries_only() {
    let mut w = world();
    let id = publish_black(&mut w);
    w.accept(
        "310000:pub",
        Body::ListEntryRepaired {
            entry: id,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "已整改".into(),
        },
    );
    assert_eq!(state(&w, &id), EntryState::Repaired);
    let red = red_entry(
        org("91110000100000000R"),
        "京发改〔2026〕1号",
        &["I-LICENSING-GREEN"],
    );
    w.accept("310000:pub", Body::ListEntryPublished(red.clone()));
    let rid = published_id(&w, SH, &red);
    let r = w.refuse(
        "310000:pub",
        Body::ListEntryRepaired {
            entry: rid,
            basis: RepairBasis::PublicService,
            reason: "x".into(),
        },
    );
    assert_eq!(r.reason, RejectReason::Conflict);
    assert!(r.message.contains("二十一"));
}

/// Articles 十五, 十八, 二十三: initiation by an initiating department, acknowledgement by
/// targets, execution feedback, overdue tracking and acknowledgement times.
#[test]
fn art15_18_23_joint_action_cycle() {
    let mut w = world();
    let id = publish_black(&mut w);
    let action = JointAction {
        reference: "沪联惩〔2026〕5号".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::Regions(vec![region(GD), region(GS)]),
        measures: vec![mc("P-PROCUREMENT"), mc("P-TRAVEL-AIR")],
        respond_by: date("2026-11-09"),
    };
    // A publisher is not an initiating department (article 十五).
    assert_eq!(
        w.refuse("310000:pub", Body::JointActionInitiated(action.clone()))
            .reason,
        RejectReason::Unauthorised
    );
    w.accept("310000:init", Body::JointActionInitiated(action.clone()));
    let aid = action_id(&dept("310000:init"), &action.reference);
    assert_eq!(
        w.refuse("310000:init", Body::JointActionInitiated(action.clone()))
            .reason,
        RejectReason::Conflict
    );

    w.now = noon("2026-11-03");
    let ack = Body::JointActionAcknowledged {
        action: aid,
        decision: AckDecision::Accepted,
        implementing: vec![dept("440000:impl")],
    };
    w.accept("440000:impl", ack);
    // Beijing is not a target.
    let r = w.refuse(
        "110000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Accepted,
            implementing: vec![dept("110000:impl")],
        },
    );
    assert_eq!(r.reason, RejectReason::Unauthorised);
    // A partial acceptance may not accept what was not asked.
    let bad = AckDecision::Partly {
        accepted: vec![mc("P-EXIT")],
        reason: "x".into(),
    };
    assert_eq!(
        w.refuse(
            "620000:impl",
            Body::JointActionAcknowledged {
                action: aid,
                decision: bad,
                implementing: vec![dept("620000:impl")]
            }
        )
        .reason,
        RejectReason::Conflict
    );
    // Execution before acceptance is refused.
    let exec = |m: &str| Body::MeasureExecuted {
        action: aid,
        measure: mc(m),
        reference: "粤财采〔2026〕9号".into(),
        executed_on: date("2026-11-04"),
    };
    assert_eq!(
        w.refuse("620000:impl", exec("P-PROCUREMENT")).reason,
        RejectReason::Conflict
    );
    w.accept("440000:impl", exec("P-PROCUREMENT"));

    let a = w.ledger.action(&aid).unwrap();
    w.now = noon("2026-11-09");
    let v = a.view_at(w.now, &w.manifest, &w.catalogue);
    assert_eq!(v[0].status, TargetStatus::Accepted);
    assert_eq!(v[0].executed, vec![mc("P-PROCUREMENT")]);
    assert_eq!(v[0].acknowledgement_ms, Some(24 * 3600 * 1000));
    assert_eq!(v[1].status, TargetStatus::Awaiting);
    w.now = noon("2026-11-10");
    assert_eq!(
        a.view_at(w.now, &w.manifest, &w.catalogue)[1].status,
        TargetStatus::Overdue
    );
    // Gansu answers late: recorded, flagged late.
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
    let v = w
        .ledger
        .action(&aid)
        .unwrap()
        .view_at(w.now, &w.manifest, &w.catalogue);
    assert_eq!(v[1].status, TargetStatus::Declined);
    assert!(v[1].answered_late);
    // Lifting a measure that was executed.
    w.accept(
        "440000:impl",
        Body::MeasureLifted {
            action: aid,
            measure: mc("P-PROCUREMENT"),
            reference: "粤解".into(),
            reason: "信用修复".into(),
        },
    );
    assert_eq!(
        w.ledger
            .action(&aid)
            .unwrap()
            .view_at(w.now, &w.manifest, &w.catalogue)[0]
            .lifted,
        vec![mc("P-PROCUREMENT")]
    );
}

/// Article 十六: an action rests on the initiating region's own entry and on the right list.
#[test]
fn art16_actions_rest_on_own_entries_of_the_matching_list() {
    let mut w = world();
    let id = publish_black(&mut w);
    let action = JointAction {
        reference: "粤1".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::AllMembers,
        measures: vec![mc("P-PROCUREMENT")],
        respond_by: date("2026-11-09"),
    };
    assert_eq!(
        w.refuse("440000:init", Body::JointActionInitiated(action.clone()))
            .reason,
        RejectReason::Unauthorised
    );
    let incentive = JointAction {
        kind: ActionKind::Incentive,
        measures: vec![mc("I-LICENSING-GREEN")],
        ..action.clone()
    };
    assert_eq!(
        w.refuse("310000:init", Body::JointActionInitiated(incentive))
            .reason,
        RejectReason::Conflict
    );
    let unknown = JointAction {
        measures: vec![mc("P-NOT-IN-CATALOGUE")],
        ..action
    };
    let r = w.refuse("310000:init", Body::JointActionInitiated(unknown));
    assert_eq!(
        (r.reason, r.field.as_str()),
        (RejectReason::NotApplicable, "action.measures")
    );
    assert!(r.message.contains("not in the measures catalogue"), "{r}");
}

/// Article 十五: departments write only what their role allows, only through their own
/// province's node, and not after revocation; city departments belong to their province.
#[test]
fn art15_department_roles_regions_and_revocation() {
    let mut w = world();
    let e = black_entry(org(ACME), "d1", &[]);
    let r = w.refuse("310000:impl", Body::ListEntryPublished(e.clone()));
    assert_eq!(r.reason, RejectReason::Unauthorised);
    assert!(r.message.contains("publisher"), "{r}");
    // 合作市 (623001) is a Gansu city: registered by and writing through 620000.
    w.register("623001:fgw", &[Role::Publisher]);
    w.accept("623001:fgw", Body::ListEntryPublished(e.clone()));
    assert_eq!(
        w.ledger.entry(&published_id(&w, GS, &e)).unwrap().issuer(),
        region(GS)
    );
    // A province cannot register another province's department.
    let k = key("x");
    let foreign = Body::DepartmentRegistered {
        department: dept("440000:fake"),
        name: "x".into(),
        roles: vec![Role::Publisher],
        key: k.public(),
    };
    assert_eq!(
        w.refuse("310000:operator", foreign.clone()).reason,
        RejectReason::Unauthorised
    );
    // Operators register; publishers do not.
    assert_eq!(
        w.refuse(
            "310000:pub",
            Body::DepartmentRegistered {
                department: dept("310000:new"),
                name: "n".into(),
                roles: vec![Role::Publisher],
                key: k.public()
            }
        )
        .reason,
        RejectReason::Unauthorised
    );
    w.accept(
        "310000:ops",
        Body::DepartmentRegistered {
            department: dept("310000:new"),
            name: "n".into(),
            roles: vec![Role::Publisher],
            key: k.public(),
        },
    );
    // Revoked departments write nothing more, and cannot be re-registered.
    w.accept(
        "310000:operator",
        Body::DepartmentRevoked {
            department: dept("310000:pub"),
            reason: "机构改革".into(),
        },
    );
    let r = w.refuse(
        "310000:pub",
        Body::ListEntryPublished(black_entry(org(ACME), "d2", &[])),
    );
    assert_eq!(r.reason, RejectReason::AuthorRevoked);
    assert_eq!(
        w.refuse(
            "310000:operator",
            Body::DepartmentRegistered {
                department: dept("310000:pub"),
                name: "n".into(),
                roles: vec![Role::Publisher],
                key: k.public()
            }
        )
        .reason,
        RejectReason::Conflict
    );
    // Neither the node nor the operator may publish list entries in its own name.
    for own in ["310000:node", "310000:operator"] {
        assert_eq!(
            w.refuse(
                own,
                Body::ListEntryPublished(black_entry(org(ACME), "d3", &[]))
            )
            .reason,
            RejectReason::Unauthorised
        );
    }
}

/// Invariant 3: forged signatures, non-members, broken chains and replays are refused;
/// identical replays are idempotent.
#[test]
fn signatures_membership_chain_and_replay() {
    let mut w = world();
    let body = Body::ListEntryPublished(black_entry(org(ACME), "d1", &[]));
    // Author signature by the wrong key.
    let (bytes, _) =
        credfed_protocol::envelope::sign_body(FED, &w.depts[&dept("310000:pub")], &body);
    let forged = key("mallory").sign(credfed_protocol::crypto::Domain::Body, FED, &bytes);
    let env = w.seal_signed(dept("310000:pub"), bytes.clone(), forged);
    assert_eq!(
        w.ingest(&env).unwrap_err().reason,
        RejectReason::BadAuthorSignature
    );
    // Node signature flipped.
    let mut good = w.seal_as("310000:pub", &body);
    let n = good.len();
    good[n - 1] ^= 0x01;
    assert_eq!(
        w.ingest(&good).unwrap_err().reason,
        RejectReason::BadNodeSignature
    );
    good[n - 1] ^= 0x01;
    // A signature for another federation does not verify here.
    let other_fed = key("x").sign(credfed_protocol::crypto::Domain::Body, "other-fed", &bytes);
    let env = w.seal_signed(dept("310000:pub"), bytes, other_fed);
    assert_eq!(
        w.ingest(&env).unwrap_err().reason,
        RejectReason::BadAuthorSignature
    );
    // Accept, then replay: duplicate.
    assert!(matches!(w.ingest(&good).unwrap(), Admission::Accept(_)));
    assert_eq!(w.ingest(&good).unwrap(), Admission::Duplicate);
    // A non-member's log.
    let mut stranger = World::new(&[SH, 650000]);
    let env = stranger.seal_as("650000:pub", &body);
    stranger.accept("650000:pub", body.clone());
    assert_eq!(w.ingest(&env).unwrap_err().reason, RejectReason::NotMember);
    // Gap: an envelope two ahead.
    let mut ahead = World::new(&[110000, SH, GD, GS]);
    ahead.ledger = w.ledger.clone();
    ahead.accept(
        "310000:pub",
        Body::ListEntryPublished(black_entry(org(ACME), "d9", &[])),
    );
    let skip = ahead.seal_as(
        "310000:pub",
        &Body::ListEntryPublished(black_entry(org(ACME), "d10", &[])),
    );
    assert!(
        matches!(w.ingest(&skip).unwrap(), Admission::Gap { got, have, .. } if got == have + 2)
    );
}

/// Signatures verified ahead of admission on other threads (catch-up verifies a range's
/// signatures in parallel) decide nothing that admission alone would not: a signature
/// known under the wrong key, a flipped one, or one by a revoked author is refused as
/// before, and a good one is admitted as before.
#[test]
fn signatures_known_ahead_decide_nothing_admission_would_not() {
    use credfed_protocol::crypto::{Domain, VerifiedSignatures};
    use credfed_protocol::ledger::admit_with;
    let mut w = world();
    let preverified =
        |w: &World, bytes: &[u8], author_key: &credfed_protocol::crypto::PublicKey| {
            let env: Envelope = codec::decode(bytes, 1 << 16, "envelope").unwrap();
            let mut known = VerifiedSignatures::new();
            env.preverify(
                &mut known,
                FED,
                &w.nodes[&env.region].public(),
                Some(author_key),
            );
            known
        };
    let refusal = |w: &World, bytes: &[u8], known: &VerifiedSignatures| {
        admit_with(w.rules(), &w.ledger, bytes, known)
            .unwrap_err()
            .into_rejection()
            .reason
    };
    let body = Body::ListEntryPublished(black_entry(org(ACME), "d1", &[]));
    // Signed by mallory and known as mallory's: still not the department's signature.
    let (bytes, _) =
        credfed_protocol::envelope::sign_body(FED, &w.depts[&dept("310000:pub")], &body);
    let mallory = key("mallory");
    let forged = mallory.sign(Domain::Body, FED, &bytes);
    let env = w.seal_signed(dept("310000:pub"), bytes, forged);
    let known = preverified(&w, &env, &mallory.public());
    assert_eq!(known.len(), 2, "signatures verified ahead");
    assert_eq!(refusal(&w, &env, &known), RejectReason::BadAuthorSignature);
    // Known before a bit of the node signature flipped: the flipped one is not known.
    let good = w.seal_as("310000:pub", &body);
    let author = w.depts[&dept("310000:pub")].public();
    let known = preverified(&w, &good, &author);
    assert_eq!(known.len(), 2, "signatures verified ahead");
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 0x01;
    assert_eq!(
        refusal(&w, &flipped, &known),
        RejectReason::BadNodeSignature
    );
    // The good envelope: admitted exactly as without the set.
    let plain = credfed_protocol::ledger::admit(w.rules(), &w.ledger, &good).unwrap();
    let with = admit_with(w.rules(), &w.ledger, &good, &known).unwrap();
    assert_eq!(plain, with);
    assert!(matches!(with, Admission::Accept(_)));
    // Known while the author was registered, admitted after its revocation: refused.
    let later = Body::ListEntryPublished(black_entry(org(ACME), "d2", &[]));
    w.accept(
        "310000:ops",
        Body::DepartmentRevoked {
            department: dept("310000:pub"),
            reason: "rotated".into(),
        },
    );
    let env = w.seal_as("310000:pub", &later);
    let known = preverified(&w, &env, &author);
    assert_eq!(known.len(), 2, "signatures verified ahead");
    assert_eq!(refusal(&w, &env, &known), RejectReason::AuthorRevoked);
}

/// Invariant 4: two different envelopes at one position are proof of equivocation that a
/// third party verifies offline; the evidence record flags the region everywhere.
#[test]
fn equivocation_is_detected_and_provable() {
    let mut w = world();
    let a = w.seal_as(
        "310000:pub",
        &Body::ListEntryPublished(black_entry(org(ACME), "d1", &[])),
    );
    let b = w.seal_as(
        "310000:pub",
        &Body::ListEntryPublished(black_entry(org(ACME), "d2", &[])),
    );
    assert!(matches!(w.ingest(&a).unwrap(), Admission::Accept(_)));
    let Admission::Equivocation(proof) = w.ingest(&b).unwrap() else {
        panic!("not detected")
    };
    assert_eq!(
        verify_equivocation(&w.manifest, FED, &proof.first, &proof.second),
        Ok(region(SH))
    );
    assert!(verify_equivocation(&w.manifest, FED, &proof.first, &proof.first).is_err());
    assert_eq!(w.ledger.equivocators(), vec![region(SH)]);
    // A different envelope at a held position that the node did not sign is a forgery,
    // not proof: refused, and nobody else is flagged.
    let forged = w.seal_as(
        "440000:pub",
        &Body::ListEntryPublished(black_entry(org(ACME), "d3", &[])),
    );
    assert!(matches!(w.ingest(&forged).unwrap(), Admission::Accept(_)));
    let mut tampered = w.seal_as(
        "440000:pub",
        &Body::ListEntryPublished(black_entry(org(ACME), "d4", &[])),
    );
    let decoded: credfed_protocol::envelope::Envelope =
        credfed_protocol::codec::decode(&tampered, usize::MAX, "e").unwrap();
    assert_eq!(decoded.seq, w.ledger.head(region(GD)).unwrap().seq + 1);
    // Rewrite it to claim the held position and break its signature.
    let mut env = decoded.clone();
    env.seq -= 1;
    env.prev_hash = w
        .ledger
        .envelope_at(credfed_protocol::state::RecordPos {
            region: region(GD),
            seq: env.seq - 1,
        })
        .map(|b| credfed_protocol::envelope::envelope_hash(FED, &b))
        .unwrap();
    tampered = codec::encode(&env).unwrap();
    assert_eq!(
        w.ingest(&tampered).unwrap_err().reason,
        RejectReason::BadNodeSignature
    );
    assert_eq!(w.ledger.equivocators(), vec![region(SH)]);
    // Recorded by Guangdong's node as evidence: every replica that folds it flags Shanghai.
    let mut fresh = World::new(&[110000, SH, GD, GS]);
    fresh.accept(
        "440000:node",
        Body::EquivocationEvidence {
            first: proof.first.clone(),
            second: proof.second.clone(),
        },
    );
    assert_eq!(fresh.ledger.equivocators(), vec![region(SH)]);
    // Forged evidence (same envelope twice, or a tampered one) is refused.
    let mut tampered = proof.second.clone();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    assert_eq!(
        fresh
            .refuse(
                "440000:node",
                Body::EquivocationEvidence {
                    first: proof.first.clone(),
                    second: tampered
                }
            )
            .reason,
        RejectReason::Conflict
    );
}

/// References across logs wait for their dependency instead of being refused, so
/// replicas that receive logs in different orders reach the same verdicts.
#[test]
fn missing_cross_region_reference_is_a_dependency_not_a_rejection() {
    let mut w = world();
    let id = publish_black(&mut w);
    let filed = w.seal_as(
        "440000:obj",
        &Body::ObjectionFiled {
            case_no: "c".into(),
            target: ObjectionTarget::Entry(id),
            grounds: "g".into(),
            filed_on: date("2026-11-02"),
        },
    );
    let mut replica = World::new(&[110000, SH, GD, GS]);
    assert!(matches!(
        replica.ingest(&filed).unwrap(),
        Admission::MissingDependency { .. }
    ));
}

/// Wire rules: unknown versions, oversize, trailing bytes and non-canonical forms.
#[test]
fn decoder_limits_and_canonical_form() {
    let mut w = world();
    let good = w.seal_as(
        "310000:pub",
        &Body::ListEntryPublished(black_entry(org(ACME), "d1", &[])),
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(
        w.ingest(&trailing)
            .unwrap_err()
            .message
            .contains("trailing")
    );
    // A version from the future in front.
    let mut v3 = good.clone();
    v3[0] = 3;
    assert!(w.ingest(&v3).unwrap_err().message.contains("not supported"));
    // Non-canonical: the version written as a 3-byte varint (251, 2, 0) decodes to 2.
    let mut long = vec![251, 2, 0];
    long.extend_from_slice(&good[1..]);
    let e = w.ingest(&long).unwrap_err();
    assert_eq!(e.reason, RejectReason::Malformed);
    assert!(e.message.contains("non-canonical"), "{e}");
    // Oversize body.
    let mut big = black_entry(org(ACME), "d1", &[]);
    big.summary = "长".repeat(5_000);
    let r = w.refuse("310000:pub", Body::ListEntryPublished(big.clone()));
    assert_eq!(r.reason, RejectReason::Malformed);
    assert!(r.message.contains("entry.summary"), "{r}");
    big.summary = "长".repeat(20_000);
    let r = w.refuse("310000:pub", Body::ListEntryPublished(big));
    assert!(r.message.contains("exceeds the limit"), "{r}");
    let huge = vec![0u8; credfed_protocol::limits::MAX_ENVELOPE_BYTES + 1];
    assert!(w.ingest(&huge).unwrap_err().message.contains("exceeds"));
    // Nothing above changed the log.
    assert!(w.ledger.head(region(SH)).unwrap().seq == 5);
    let _: Envelope = codec::decode(&good, usize::MAX, "envelope").unwrap();
}

/// GB 32100-2015: a failing check character is accepted only with a recorded exemption.
#[test]
fn uscc_check_exemption_is_explicit() {
    let mut w = world();
    let pilot = "91350100M000100Y44";
    let no_ex = Body::ListEntryPublished(black_entry(org(pilot), "d1", &[]));
    let r = w.refuse("310000:pub", no_ex);
    assert_eq!(
        r.message,
        "body.subject.uscc: check character is '4', expected '3' (GB 32100-2015)"
    );
    let with = Subject::Organisation {
        uscc: pilot.into(),
        name: "试点企业".into(),
        check_exemption: Some(CheckExemption {
            reason: "登记机关确认函 沪市监〔2015〕8号".into(),
        }),
    };
    w.accept(
        "310000:pub",
        Body::ListEntryPublished(black_entry(with, "d1", &[])),
    );
    let needless = Subject::Organisation {
        uscc: ACME.into(),
        name: "x".into(),
        check_exemption: Some(CheckExemption { reason: "r".into() }),
    };
    assert!(
        w.refuse(
            "310000:pub",
            Body::ListEntryPublished(black_entry(needless, "d2", &[]))
        )
        .message
        .contains("check_exemption")
    );
}

/// Article 十四: related persons are carried by keyed hash and masked number; the clear
/// identity number never appears in any envelope, and a check by number finds the person.
#[test]
fn art14_persons_are_hashed_and_masked() {
    let mut w = world();
    let e = judgment_entry(&w, org(ACME), "d1", &["P-TRAVEL-AIR"]);
    w.accept("310000:pub", Body::ListEntryPublished(e));
    let debtor = judgment_entry(
        &w,
        Subject::Person(w.person("440304200002290014", "李四")),
        "d2",
        &["P-TRAVEL-AIR"],
    );
    w.accept("310000:pub", Body::ListEntryPublished(debtor));
    for log in w.logs() {
        for env in log {
            let hay = String::from_utf8_lossy(&env);
            for clear in [LEGAL_REP_ID, "440304200002290014", "188001010", "20000229"] {
                assert!(!hay.contains(clear), "{clear} in an envelope");
            }
        }
    }
    let key = Subject::Person(w.person("440304200002290014", "李四")).key();
    let a = check(w.rules(), &w.ledger, &key, MeasureDomain::Travel, w.now).unwrap();
    assert_eq!(a.mandatory.len(), 1);
    assert_eq!(a.entries[0].subject_name, "李四 (44****************)");
    // A clear number typed into the masked field is refused.
    let mut leak = black_entry(Subject::Person(legal_rep(&w).person), "d3", &[]);
    if let Subject::Person(p) = &mut leak.subject {
        p.masked = LEGAL_REP_ID.into();
    }
    assert!(
        w.refuse("310000:pub", Body::ListEntryPublished(leak))
            .message
            .contains("masked")
    );
}

/// Articles 十一, 二十: a measure that cannot apply to the entry is refused with the
/// measure and the rule named: the flight ban on a food-safety company, the flight ban
/// on a company without a person it falls on, a restriction of 十一 without the finding
/// 有履行能力但拒不履行, a 十一 restriction asked by a joint action on such an entry.
#[test]
fn art11_20_inapplicable_measures_are_refused_with_the_rule() {
    let mut w = world();
    let food = black_entry(org(ACME), "d1", &["P-TRAVEL-AIR"]);
    let r = w.refuse("310000:pub", Body::ListEntryPublished(food));
    assert_eq!(
        (r.reason, r.field.as_str()),
        (RejectReason::NotApplicable, "entry.requested_measures")
    );
    assert!(
        r.message.contains("P-TRAVEL-AIR") && r.message.contains("group(s) 3"),
        "{r}"
    );
    assert!(r.message.contains("法释〔2015〕17号"), "{r}");
    let mut nobody = judgment_entry(&w, org(ACME), "d2", &["P-TRAVEL-AIR"]);
    nobody.related_persons.clear();
    let r = w.refuse("310000:pub", Body::ListEntryPublished(nobody));
    assert!(
        r.message.contains("falls only on") && r.message.contains("法定代表人"),
        "{r}"
    );
    let mut no_finding = judgment_entry(&w, org(ACME), "d3", &["P-TRAVEL-AIR"]);
    no_finding.findings.clear();
    let r = w.refuse("310000:pub", Body::ListEntryPublished(no_finding));
    assert!(r.message.contains("able_but_refuses"), "{r}");
    // The finding belongs to article 九's third group only.
    let mut wrong_group = black_entry(org(ACME), "d4", &[]);
    wrong_group.findings = vec![Finding::AbleButRefuses];
    let r = w.refuse("310000:pub", Body::ListEntryPublished(wrong_group));
    assert_eq!(r.field, "body.entry.findings", "{r}");
    // A joint action cannot add what the entry could not ask for.
    let food = black_entry(org(ACME), "d5", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(food.clone()));
    let r = w.refuse(
        "310000:init",
        Body::JointActionInitiated(JointAction {
            reference: "a1".into(),
            kind: ActionKind::Punishment,
            entry: published_id(&w, SH, &food),
            targets: Targets::AllMembers,
            measures: vec![mc("P-TRAVEL-RAIL")],
            respond_by: date("2026-11-09"),
        }),
    );
    assert_eq!(r.field, "action.measures", "{r}");
    assert!(r.message.contains("P-TRAVEL-RAIL"), "{r}");
}

/// Article 二十 with the statutes: a measure is mandatory only where a law makes it so.
/// Government procurement is compulsory for a 失信被执行人 (政府采购法 第二十二条,
/// 财库〔2016〕125号) and only recommended for a food-safety entry.
#[test]
fn art20_mandatory_only_where_a_law_makes_it_so() {
    let mut w = world();
    let food = black_entry(org(ACME), "d1", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(food));
    let a = check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::Procurement,
        w.now,
    )
    .unwrap();
    assert!(a.mandatory.is_empty());
    assert_eq!(a.recommended[0].code, mc("P-PROCUREMENT"));
    assert!(
        a.recommended[0].basis.contains("国发〔2016〕33号 十"),
        "{}",
        a.recommended[0].basis
    );
    let other = org("91110000100000000R");
    let debt = judgment_entry(&w, other.clone(), "d2", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(debt));
    let a = check(
        w.rules(),
        &w.ledger,
        &other.key(),
        MeasureDomain::Procurement,
        w.now,
    )
    .unwrap();
    assert_eq!(a.mandatory[0].code, mc("P-PROCUREMENT"));
    assert!(
        a.mandatory[0].basis.contains("政府采购法"),
        "{}",
        a.mandatory[0].basis
    );
}

/// Articles 十九, 二十一: a black-list entry is listed no longer than its category's
/// longest period, from the policy data the manifest carries.
#[test]
fn art19_21_listing_period_is_bounded_by_category() {
    let mut w = world();
    let mut e = black_entry(org(ACME), "d1", &[]);
    e.expires_on = e.effective_from.add_days(1097);
    let r = w.refuse("310000:pub", Body::ListEntryPublished(e.clone()));
    assert_eq!(r.field, "entry.expires_on", "{r}");
    assert!(
        r.message.contains("1096") && r.message.contains("2023"),
        "{r}"
    );
    // 失信被执行人 of 第一条第二项至第六项: two years, extendable by one to three
    // (法释〔2017〕7号 第二条).
    let mut debt = judgment_entry(&w, org(ACME), "d2", &[]);
    debt.findings.clear();
    debt.expires_on = debt.effective_from.add_days(1826);
    w.accept("310000:pub", Body::ListEntryPublished(debt.clone()));
    debt.basis.document_no = "d3".into();
    debt.expires_on = debt.effective_from.add_days(1827);
    let r = w.refuse("310000:pub", Body::ListEntryPublished(debt));
    assert!(
        r.message.contains("法释〔2017〕7号") && r.message.contains("第二条"),
        "{r}"
    );
    assert!(!r.message.contains("第十条"), "{r}");
}

/// 法释〔2017〕7号 第一条第一项 with 第二条 and 第十条: a subject with the means to perform
/// who refuses (finding able_but_refuses) is listed without a fixed term, until deleted
/// under 第十条 (recorded as a repair or revocation); the term of 第二条 does not bind it.
#[test]
fn fashi_2017_7_art1_item1_listing_has_no_fixed_term() {
    let mut w = world();
    let mut debt = judgment_entry(&w, org(ACME), "沪执〔2026〕99号", &[]);
    assert!(debt.findings.contains(&Finding::AbleButRefuses));
    debt.expires_on = date("2199-12-31");
    w.accept("310000:pub", Body::ListEntryPublished(debt.clone()));
    let id = published_id(&w, SH, &debt);
    w.now = noon("2040-01-01");
    assert_eq!(state(&w, &id), EntryState::Active);
    // Deleted under 第十条 once performed: the issuer records the repair.
    w.accept(
        "310000:pub",
        Body::ListEntryRepaired {
            entry: id,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "已履行完毕（法释〔2017〕7号 第十条第一项）".into(),
        },
    );
    assert_eq!(state(&w, &id), EntryState::Repaired);
}

/// Article 十七: publication more than 7 working days after the decision is flagged late.
#[test]
fn art17_late_disclosure_is_flagged() {
    let mut w = world();
    let mut e = black_entry(org(ACME), "d1", &[]);
    e.basis.decided_on = date("2026-09-28");
    e.effective_from = date("2026-09-28");
    e.expires_on = date("2029-09-28");
    w.now = noon("2026-10-13");
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let on_time = w.ledger.entry(&published_id(&w, SH, &e)).unwrap();
    assert!(!on_time.disclosed_late(&w.calendar, &w.manifest.policy));
    let mut e2 = e.clone();
    e2.basis.document_no = "d2".into();
    w.now = noon("2026-10-14");
    w.accept("310000:pub", Body::ListEntryPublished(e2.clone()));
    assert!(
        w.ledger
            .entry(&published_id(&w, SH, &e2))
            .unwrap()
            .disclosed_late(&w.calendar, &w.manifest.policy)
    );
}

/// Article 二十二 with 二十三: an objection open past its working-day deadline is overdue.
#[test]
fn art22_23_objection_overdue_after_working_days() {
    let mut w = world();
    let id = publish_black(&mut w);
    w.accept(
        "440000:obj",
        Body::ObjectionFiled {
            case_no: "c".into(),
            target: ObjectionTarget::Entry(id),
            grounds: "g".into(),
            filed_on: date("2026-09-28"),
        },
    );
    let e = w.ledger.entry(&id).unwrap();
    // 10 working days from 28 Sept 2026: 29, 30 Sept; (1-7 Oct holiday); 8, 9, 10 (adjusted
    // Saturday), 12, 13, 14, 15, 16 Oct. Counting 24-hour days would say 8 Oct.
    assert!(
        e.overdue_objections(noon("2026-10-16"), &w.calendar, &w.manifest.policy)
            .is_empty()
    );
    assert_eq!(
        e.overdue_objections(noon("2026-10-17"), &w.calendar, &w.manifest.policy)
            .len(),
        1
    );
}

/// Article 三, 四: a red-list entry yields the green-channel incentive in licensing.
#[test]
fn art3_4_red_list_green_channel() {
    let mut w = world();
    let e = red_entry(
        org(ACME),
        "沪信用〔2026〕1号",
        &["I-INSPECTION-FREQUENCY", "I-LICENSING-GREEN"],
    );
    w.accept("310000:pub", Body::ListEntryPublished(e));
    let a = check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::Licensing,
        w.now,
    )
    .unwrap();
    assert_eq!(
        a.recommended
            .iter()
            .map(|m| m.code.0.as_str())
            .collect::<Vec<_>>(),
        ["I-LICENSING-GREEN"]
    );
    assert_eq!(a.recommended[0].kind, ActionKind::Incentive);
    assert!(a.mandatory.is_empty());
    let a = check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::Inspection,
        w.now,
    )
    .unwrap();
    assert_eq!(a.recommended[0].code, mc("I-INSPECTION-FREQUENCY"));
}

/// Articles 六, 十六: results are recognised across regions while they hold, so the
/// authoring node refuses a result whose validity has already ended; and a scheme grades
/// only the subjects its rules cover (纳税信用管理办法（试行）第二条: enterprises), so a tax
/// credit class for a natural person is refused, naming the rule.
#[test]
fn art6_16_evaluations_only_while_valid_and_for_the_subjects_a_scheme_covers() {
    let mut w = world();
    let ended = Body::EvaluationPublished(Evaluation {
        subject: org(ACME),
        scheme: "tax-credit".into(),
        grade: Grade::Class(*b"A\0\0\0"),
        evaluated_on: date("2024-04-01"),
        valid_until: date("2025-04-01"),
    });
    let refused = credfed_protocol::ledger::local_policy(w.rules(), &w.ledger, &ended, w.now)
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.field, "evaluation.valid_until", "{refused}");
    assert!(refused.message.contains("2025-04-01"), "{refused}");
    let person = w.person(LEGAL_REP_ID, "张三");
    let r = w.refuse(
        "440000:pub",
        Body::EvaluationPublished(Evaluation {
            subject: Subject::Person(person),
            scheme: "tax-credit".into(),
            grade: Grade::Class(*b"A\0\0\0"),
            evaluated_on: date("2026-04-01"),
            valid_until: date("2027-04-01"),
        }),
    );
    assert_eq!(r.reason, RejectReason::NotApplicable, "{r}");
    assert_eq!(r.field, "evaluation.subject", "{r}");
    assert!(
        r.message.contains("第二条") && r.message.contains("natural_person"),
        "{r}"
    );
}

/// Articles 六, 十六: evaluation results are returned while valid, from any region, and
/// their class's measures apply (分级分类监管); a later result of the same department in
/// the same scheme supersedes an earlier one; the issuer may revoke one; an objection
/// suspends one like an entry (article 二十二).
#[test]
fn art6_16_evaluations_are_mutually_recognised_while_valid() {
    let mut w = world();
    let tax = |class: &[u8; 4], on: &str| Evaluation {
        subject: org(ACME),
        scheme: "tax-credit".into(),
        grade: Grade::Class(*class),
        evaluated_on: date(on),
        valid_until: date("2027-04-01"),
    };
    let ev = tax(b"A\0\0\0", "2026-04-01");
    w.accept("440000:pub", Body::EvaluationPublished(ev.clone()));
    assert_eq!(
        w.refuse("440000:pub", Body::EvaluationPublished(ev.clone()))
            .reason,
        RejectReason::Conflict
    );
    let ask = |w: &World, domain, now| {
        check(w.rules(), &w.ledger, &org(ACME).key(), domain, now).unwrap()
    };
    let a = ask(&w, MeasureDomain::Financing, w.now);
    assert_eq!(a.evaluations.len(), 1);
    assert_eq!(a.evaluations[0].region, region(GD));
    assert!(a.evaluations[0].class_meaning.contains("A级"));
    assert_eq!(a.recommended[0].code, mc("I-CREDIT-PRODUCTS"));
    assert!(
        ask(&w, MeasureDomain::Financing, noon("2027-04-01"))
            .evaluations
            .is_empty()
    );
    // A later D supersedes the A: its supervision measure applies, the incentive not.
    w.accept(
        "440000:pub",
        Body::EvaluationPublished(tax(b"D\0\0\0", "2026-10-01")),
    );
    let a = ask(&w, MeasureDomain::Inspection, w.now);
    assert_eq!(a.evaluations.len(), 1);
    assert_eq!(
        a.recommended
            .iter()
            .map(|m| m.code.0.as_str())
            .collect::<Vec<_>>(),
        ["P-SUPERVISION-FOCUS"]
    );
    let d_id = evaluation_id(&dept("440000:pub"), &tax(b"D\0\0\0", "2026-10-01"));
    // An objection suspends it; the issuer revokes it; the A is current again.
    w.accept(
        "310000:obj",
        Body::ObjectionFiled {
            case_no: "沪异1".into(),
            target: ObjectionTarget::Evaluation(d_id),
            grounds: "评价有误".into(),
            filed_on: date("2026-11-02"),
        },
    );
    let a = ask(&w, MeasureDomain::Inspection, w.now);
    assert_eq!(a.evaluations[0].state, EvaluationState::Suspended);
    assert!(a.recommended.is_empty() && a.withheld.len() == 1);
    assert_eq!(
        w.refuse(
            "310000:pub",
            Body::EvaluationRevoked {
                evaluation: d_id,
                reason: "x".into()
            }
        )
        .reason,
        RejectReason::Unauthorised,
        "only the issuing region revokes (谁认定、谁修复)"
    );
    w.accept(
        "440000:pub",
        Body::EvaluationRevoked {
            evaluation: d_id,
            reason: "复评更正".into(),
        },
    );
    let a = ask(&w, MeasureDomain::Financing, w.now);
    assert_eq!(a.evaluations.len(), 1);
    assert_eq!(a.evaluations[0].evaluation.grade, Grade::Class(*b"A\0\0\0"));
    // Unknown schemes and classes are refused with the known ones named.
    let bad = Evaluation {
        scheme: "s".into(),
        ..tax(b"A\0\0\0", "2026-05-01")
    };
    let r = w.refuse("440000:pub", Body::EvaluationPublished(bad));
    assert!(r.message.contains("tax-credit"), "{r}");
    let r = w.refuse(
        "440000:pub",
        Body::EvaluationPublished(tax(b"E\0\0\0", "2026-05-01")),
    );
    assert_eq!(r.field, "evaluation.grade", "{r}");
}

/// Article 三, 四 with 九: an active black-list entry about the subject withholds every
/// incentive from it, with the reason; once it is repaired the incentive applies.
#[test]
fn art3_4_active_black_entry_withholds_incentives() {
    let mut w = world();
    let red = red_entry(org(ACME), "沪信用〔2026〕1号", &["I-LICENSING-GREEN"]);
    w.accept("310000:pub", Body::ListEntryPublished(red));
    let id = publish_black(&mut w);
    let a = check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::Licensing,
        w.now,
    )
    .unwrap();
    assert!(a.recommended.is_empty(), "{:?}", a.recommended);
    assert_eq!(a.withheld[0].measure.code, mc("I-LICENSING-GREEN"));
    assert!(
        a.withheld[0].reason.contains("black-list"),
        "{}",
        a.withheld[0].reason
    );
    assert!(verify_answer(&a, &w.manifest, &w.catalogue).ok());
    w.accept(
        "310000:pub",
        Body::ListEntryRepaired {
            entry: id,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "已履行".into(),
        },
    );
    let a = check(
        w.rules(),
        &w.ledger,
        &org(ACME).key(),
        MeasureDomain::Licensing,
        w.now,
    )
    .unwrap();
    assert_eq!(a.recommended[0].code, mc("I-LICENSING-GREEN"));
}

/// Article 十四: an organisation's serious dishonesty goes into the personal credit
/// record of its 法定代表人, 主要负责人 and other directly responsible persons, so while
/// its black-list entry is in force they are not given incentives either (the answer
/// says why); a director named in the entry is not one of those roles, and the
/// incentive returns once the entry is repaired.
#[test]
fn art14_incentives_are_withheld_from_the_responsible_persons_of_a_listed_organisation() {
    let mut w = world();
    let director = w.person("11010519491231002X", "王五");
    let mut e = judgment_entry(&w, org(ACME), "沪执〔2026〕7号", &["P-PROCUREMENT"]);
    e.related_persons.push(RelatedPerson {
        role: RelatedRole::DirectorSupervisorOrSeniorManager,
        person: director.clone(),
    });
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    let rep = legal_rep(&w).person;
    for (person, doc) in [
        (&rep, "粤文明〔2026〕1号"),
        (&director, "粤文明〔2026〕2号"),
    ] {
        let mut red = red_entry(
            Subject::Person(person.clone()),
            doc,
            &["I-PUBLIC-SERVICES-PRIORITY"],
        );
        red.category = Category::Red(RedSource::MoralModel);
        w.accept("440000:pub", Body::ListEntryPublished(red));
    }
    let ask = |w: &World, who: &credfed_protocol::ids::PersonRef| {
        check(
            w.rules(),
            &w.ledger,
            &SubjectKey::Person(who.id_hash),
            MeasureDomain::PublicServices,
            w.now,
        )
        .unwrap()
    };
    let a = ask(&w, &rep);
    assert!(a.recommended.is_empty(), "{:?}", a.recommended);
    assert_eq!(a.withheld.len(), 1, "{:?}", a.withheld);
    assert_eq!(a.withheld[0].measure.code, mc("I-PUBLIC-SERVICES-PRIORITY"));
    let reason = &a.withheld[0].reason;
    assert!(
        reason.contains("十四") && reason.contains("法定代表人"),
        "{reason}"
    );
    assert!(verify_answer(&a, &w.manifest, &w.catalogue).ok());
    // A director is not named by article 十四: the incentive stands.
    let a = ask(&w, &director);
    assert_eq!(
        a.recommended[0].code,
        mc("I-PUBLIC-SERVICES-PRIORITY"),
        "{:?}",
        a.withheld
    );
    // Repaired: the legal representative's incentive applies again.
    w.accept(
        "310000:pub",
        Body::ListEntryRepaired {
            entry: id,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "已履行".into(),
        },
    );
    let a = ask(&w, &rep);
    assert!(a.withheld.is_empty(), "{:?}", a.withheld);
    assert_eq!(a.recommended[0].code, mc("I-PUBLIC-SERVICES-PRIORITY"));
}

/// Article 二十二 (更正): an amendment that corrects the subject moves the entry from
/// the wrongly named subject to the right one; the wrong one is clear again and an
/// answer that still applies the entry to it does not verify.
#[test]
fn art22_correction_moves_the_entry_to_the_corrected_subject() {
    let mut w = world();
    let wrong = org("91110000100000000R");
    let e = black_entry(wrong.clone(), "沪市监处〔2026〕20号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    let ask = |w: &World, s: &Subject| {
        check(
            w.rules(),
            &w.ledger,
            &s.key(),
            MeasureDomain::Procurement,
            w.now,
        )
        .unwrap()
    };
    let before = ask(&w, &wrong);
    assert_eq!(before.verdict, Verdict::MeasuresApply);
    let mut corrected = e.clone();
    corrected.subject = org(ACME);
    w.accept(
        "310000:pub",
        Body::ListEntryAmended {
            entry: id,
            amended: corrected,
            reason: "统一社会信用代码录入错误".into(),
        },
    );
    assert_eq!(ask(&w, &wrong).verdict, Verdict::Clear);
    let right = ask(&w, &org(ACME));
    assert_eq!(right.verdict, Verdict::MeasuresApply);
    assert_eq!(right.entries[0].entry, id);
    // The old answer, replayed with the correction in its evidence, no longer verifies.
    let mut stale = before.clone();
    stale.evidence = right.evidence.clone();
    let r = verify_answer(&stale, &w.manifest, &w.catalogue);
    assert!(
        r.failures.iter().any(|f| f.contains("another subject")),
        "{:?}",
        r.failures
    );
}

/// Article 十四: related persons of an organisation's entry are indexed; a check on a
/// person finds the entries where they are the subject or a related person, with the
/// measures that fall on that role; a corrected related person is moved too.
#[test]
fn art14_related_persons_are_found_with_their_role() {
    let mut w = world();
    let e = judgment_entry(
        &w,
        org(ACME),
        "沪执〔2026〕1号",
        &["P-HONOURS", "P-PROCUREMENT", "P-TRAVEL-AIR"],
    );
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    let rep = SubjectKey::Person(legal_rep(&w).person.id_hash);
    let a = check(w.rules(), &w.ledger, &rep, MeasureDomain::Honours, w.now).unwrap();
    assert_eq!(
        a.entries[0].roles,
        vec![Bearer::Related(RelatedRole::LegalRepresentative)]
    );
    assert_eq!(a.recommended[0].code, mc("P-HONOURS"));
    // Procurement falls on the company, not on its legal representative.
    let a = check(
        w.rules(),
        &w.ledger,
        &rep,
        MeasureDomain::Procurement,
        w.now,
    )
    .unwrap();
    assert_eq!(a.verdict, Verdict::NothingApplies);
    assert!(verify_answer(&a, &w.manifest, &w.catalogue).ok());
    // The legal representative is corrected: the wrong person is clear again.
    let mut corrected = e.clone();
    corrected.related_persons = vec![RelatedPerson {
        role: RelatedRole::LegalRepresentative,
        person: w.person("11010519491231002X", "王五"),
    }];
    w.accept(
        "310000:pub",
        Body::ListEntryAmended {
            entry: id,
            amended: corrected,
            reason: "法定代表人更正".into(),
        },
    );
    assert_eq!(
        check(w.rules(), &w.ledger, &rep, MeasureDomain::Travel, w.now)
            .unwrap()
            .verdict,
        Verdict::Clear
    );
    let new_rep = SubjectKey::Person(w.person("11010519491231002X", "王五").id_hash);
    let a = check(w.rules(), &w.ledger, &new_rep, MeasureDomain::Travel, w.now).unwrap();
    assert_eq!(a.mandatory[0].code, mc("P-TRAVEL-AIR"));
}

#[test]
fn node_and_operator_units_are_reserved() {
    let mut w = world();
    for unit in [NODE_UNIT, credfed_protocol::envelope::OPERATOR_UNIT] {
        let r = w.refuse(
            "310000:operator",
            Body::DepartmentRegistered {
                department: dept(&format!("310000:{unit}")),
                name: "n".into(),
                roles: vec![Role::Operator],
                key: key("k").public(),
            },
        );
        assert_eq!(r.reason, RejectReason::Unauthorised);
        assert!(r.to_string().contains("reserved"), "{r}");
    }
}

/// Departments are registered and revoked by the region's operator, with the operator
/// key the manifest names apart from the node key (docs/protocol.md §7): the running
/// node's key cannot make a department, an operator record signed with the node key is
/// refused, and the operator writes nothing but registrations and revocations, in its
/// own region's log only.
#[test]
fn department_registration_is_signed_by_the_operator_key_not_the_node_key() {
    let mut w = world();
    let body = Body::DepartmentRegistered {
        department: dept("310000:new"),
        name: "n".into(),
        roles: vec![Role::Publisher],
        key: key("k").public(),
    };
    let r = w.refuse("310000:node", body.clone());
    assert_eq!(r.reason, RejectReason::Unauthorised);
    assert!(
        r.to_string()
            .contains("registered and revoked by the operator"),
        "{r}"
    );
    let r = w.refuse(
        "310000:node",
        Body::DepartmentRevoked {
            department: dept("310000:pub"),
            reason: "x".into(),
        },
    );
    assert_eq!(r.reason, RejectReason::Unauthorised);
    // Author "operator", signed with the node key.
    let (bytes, sig) = credfed_protocol::envelope::sign_body(FED, &w.nodes[&region(SH)], &body);
    let sealed = w.seal_signed(dept("310000:operator"), bytes, sig);
    assert_eq!(
        w.ingest(&sealed).unwrap_err().reason,
        RejectReason::BadAuthorSignature
    );
    // Another region's operator in this region's log.
    let (bytes, sig) = credfed_protocol::envelope::sign_body(FED, &w.operators[&region(GD)], &body);
    let sealed = w.seal_signed(dept("440000:operator"), bytes, sig);
    assert_eq!(
        w.ingest(&sealed).unwrap_err().reason,
        RejectReason::Unauthorised
    );
    // The operator may not write equivocation evidence (the node's own record).
    let r = w.refuse(
        "310000:operator",
        Body::EquivocationEvidence {
            first: vec![1],
            second: vec![2],
        },
    );
    assert_eq!(r.reason, RejectReason::Unauthorised);
    w.accept("310000:operator", body);
}

/// Articles 二十 and 二十三: a target region may decline a measure, but must say why; a
/// declined 强制性 measure is recorded as non-compliance of that region and department,
/// while a declined recommended one is not.
#[test]
fn art20_23_declining_a_mandatory_measure_is_non_compliance() {
    let mut w = world();
    let id = publish_black(&mut w);
    let aid = action_id(&dept("310000:init"), "沪联惩〔2026〕6号");
    w.accept(
        "310000:init",
        Body::JointActionInitiated(JointAction {
            reference: "沪联惩〔2026〕6号".into(),
            kind: ActionKind::Punishment,
            entry: id,
            targets: Targets::Regions(vec![region(GD), region(GS)]),
            measures: vec![mc("P-FISCAL-FUNDING"), mc("P-PROCUREMENT")],
            respond_by: date("2026-11-09"),
        }),
    );
    // A decline without a reason is refused, naming the field.
    let silent = w.refuse(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Declined { reason: " ".into() },
            implementing: vec![],
        },
    );
    assert_eq!(
        (silent.reason, silent.field.as_str()),
        (RejectReason::Malformed, "body.decision.reason"),
        "{silent}"
    );
    // Guangdong declines both; Gansu accepts only the procurement bar.
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Declined {
                reason: "本省财政资金项目已另行处理".into(),
            },
            implementing: vec![],
        },
    );
    w.accept(
        "620000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Partly {
                accepted: vec![mc("P-PROCUREMENT")],
                reason: "本省无财政性资金支持项目".into(),
            },
            implementing: vec![dept("620000:impl")],
        },
    );
    let v = w
        .ledger
        .action(&aid)
        .unwrap()
        .view_at(w.now, &w.manifest, &w.catalogue);
    let gd = v.iter().find(|t| t.region == region(GD)).unwrap();
    assert_eq!(gd.status, TargetStatus::Declined);
    assert_eq!(gd.answered_by, Some(dept("440000:impl")));
    assert_eq!(gd.declined, [mc("P-FISCAL-FUNDING"), mc("P-PROCUREMENT")]);
    // P-PROCUREMENT is mandatory for judgment defiers (财库〔2016〕125号); fiscal funding
    // is recommended.
    assert_eq!(gd.non_compliant, [mc("P-PROCUREMENT")]);
    assert_eq!(
        gd.decline_reason.as_deref(),
        Some("本省财政资金项目已另行处理")
    );
    let gs = v.iter().find(|t| t.region == region(GS)).unwrap();
    assert_eq!(gs.accepted, [mc("P-PROCUREMENT")]);
    assert_eq!(gs.declined, [mc("P-FISCAL-FUNDING")]);
    assert!(gs.non_compliant.is_empty());
}

/// Article 二十二 (措施在核实期间暂不执行): while an objection suspends the entry, a
/// region's own node refuses to record the execution of a measure on it, and accepts it
/// again once the objection is resolved.
#[test]
fn art22_no_execution_is_recorded_while_the_entry_is_suspended() {
    let mut w = world();
    let id = publish_black(&mut w);
    let aid = action_id(&dept("310000:init"), "沪联惩〔2026〕7号");
    w.accept(
        "310000:init",
        Body::JointActionInitiated(JointAction {
            reference: "沪联惩〔2026〕7号".into(),
            kind: ActionKind::Punishment,
            entry: id,
            targets: Targets::Regions(vec![region(GD)]),
            measures: vec![mc("P-PROCUREMENT")],
            respond_by: date("2026-11-09"),
        }),
    );
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Accepted,
            implementing: vec![dept("440000:impl")],
        },
    );
    w.accept(
        "620000:obj",
        Body::ObjectionFiled {
            case_no: "甘异〔2026〕1号".into(),
            target: ObjectionTarget::Entry(id),
            grounds: "主体认定有误".into(),
            filed_on: date("2026-11-02"),
        },
    );
    let exec = Body::MeasureExecuted {
        action: aid,
        measure: mc("P-PROCUREMENT"),
        reference: "粤财采〔2026〕10号".into(),
        executed_on: date("2026-11-02"),
    };
    let refused = credfed_protocol::ledger::local_policy(w.rules(), &w.ledger, &exec, w.now)
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::Conflict);
    assert!(refused.message.contains("article 二十二"), "{refused}");
    let oid = objection_id(&dept("620000:obj"), "甘异〔2026〕1号");
    w.accept(
        "310000:obj",
        Body::ObjectionResolved {
            objection: oid,
            outcome: ObjectionOutcome::Upheld,
            note: "经核实，认定无误".into(),
        },
    );
    assert!(
        credfed_protocol::ledger::local_policy(w.rules(), &w.ledger, &exec, w.now)
            .unwrap()
            .is_ok()
    );
}

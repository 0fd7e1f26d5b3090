//! Property tests: round trips, mangled encodings, and order-independence of folds.

use std::collections::{BTreeMap, VecDeque};

use credfed_protocol::codec;
use credfed_protocol::crypto::{Hash256, PublicKey, Signature};
use credfed_protocol::envelope::{Envelope, decode_envelope};
use credfed_protocol::ids::{DepartmentId, PROVINCES, PersonRef, RegionCode, Role};
use credfed_protocol::ledger::Admission;
use credfed_protocol::record::*;
use credfed_protocol::state::RecordPos;
use credfed_protocol::time::{Date, Timestamp};
use proptest::prelude::*;

use crate::fixture::*;

fn arb_date() -> impl Strategy<Value = Date> {
    (-25_000i32..60_000).prop_map(|d| Date::from_days_since_epoch(d).unwrap())
}
fn arb_region() -> impl Strategy<Value = RegionCode> {
    (0..PROVINCES.len(), 0u32..10_000)
        .prop_map(|(i, sub)| RegionCode::new(PROVINCES[i].code + sub, "r").unwrap())
}
fn arb_text() -> impl Strategy<Value = String> {
    ".{0,12}"
}
fn arb_hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}
fn arb_dept() -> impl Strategy<Value = DepartmentId> {
    (arb_region(), "[a-z0-9-]{1,8}").prop_map(|(region, unit)| DepartmentId { region, unit })
}
fn arb_measures() -> impl Strategy<Value = Vec<MeasureCode>> {
    prop::collection::vec(
        "[IP]-[A-Z]{2,8}(-[A-Z0-9]{1,6}){0,2}".prop_map(MeasureCode),
        0..4,
    )
}
fn arb_person() -> impl Strategy<Value = PersonRef> {
    (arb_hash(), arb_text(), arb_text()).prop_map(|(id_hash, masked, name)| PersonRef {
        id_hash,
        masked,
        name,
    })
}
fn arb_subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        (arb_text(), arb_text(), prop::option::of(arb_text())).prop_map(|(uscc, name, ex)| {
            Subject::Organisation {
                uscc,
                name,
                check_exemption: ex.map(|reason| CheckExemption { reason }),
            }
        }),
        arb_person().prop_map(Subject::Person),
    ]
}
fn arb_category() -> impl Strategy<Value = Category> {
    prop_oneof![
        (0..BlackCategory::ALL.len()).prop_map(|i| Category::Black(BlackCategory::ALL[i])),
        Just(Category::Red(RedSource::MoralModel)),
        Just(Category::Red(RedSource::NoAdverseRecord)),
    ]
}
fn arb_entry() -> impl Strategy<Value = ListEntry> {
    (
        arb_category(),
        arb_subject(),
        prop::collection::vec((arb_person(), 0..3u8), 0..3),
        (arb_text(), arb_text(), arb_date(), arb_text()),
        (arb_date(), arb_date()),
        arb_measures(),
        arb_text(),
    )
        .prop_map(
            |(
                category,
                subject,
                rp,
                (document_no, authority, decided_on, legal_basis),
                (effective_from, expires_on),
                requested_measures,
                summary,
            )| ListEntry {
                category,
                subject,
                related_persons: rp
                    .into_iter()
                    .map(|(person, r)| RelatedPerson {
                        role: RelatedRole::ALL[r as usize % RelatedRole::ALL.len()],
                        person,
                    })
                    .collect(),
                basis: Basis {
                    document_no,
                    authority,
                    decided_on,
                    legal_basis,
                },
                effective_from,
                expires_on,
                requested_measures,
                findings: vec![],
                summary,
            },
        )
}

pub fn arb_body() -> impl Strategy<Value = Body> {
    let id = || arb_hash();
    prop_oneof![
        (
            arb_dept(),
            arb_text(),
            prop::collection::vec(0..5usize, 0..4),
            any::<[u8; 32]>()
        )
            .prop_map(|(department, name, r, k)| Body::DepartmentRegistered {
                department,
                name,
                roles: r.into_iter().map(|i| Role::ALL[i]).collect(),
                key: PublicKey(k)
            }),
        (arb_dept(), arb_text())
            .prop_map(|(department, reason)| Body::DepartmentRevoked { department, reason }),
        arb_entry().prop_map(Body::ListEntryPublished),
        (id(), arb_entry(), arb_text()).prop_map(|(e, amended, reason)| Body::ListEntryAmended {
            entry: EntryId(e),
            amended,
            reason
        }),
        (id(), arb_text()).prop_map(|(e, reason)| Body::ListEntryRevoked {
            entry: EntryId(e),
            reason
        }),
        (id(), any::<bool>(), arb_text()).prop_map(|(e, b, reason)| Body::ListEntryRepaired {
            entry: EntryId(e),
            basis: if b {
                RepairBasis::PublicService
            } else {
                RepairBasis::CorrectedWithinPeriod
            },
            reason
        }),
        (
            arb_subject(),
            arb_text(),
            any::<[u8; 4]>(),
            any::<u16>(),
            arb_date(),
            arb_date(),
            any::<bool>()
        )
            .prop_map(
                |(subject, scheme, c, s, evaluated_on, valid_until, class)| {
                    Body::EvaluationPublished(Evaluation {
                        subject,
                        scheme,
                        grade: if class {
                            Grade::Class(c)
                        } else {
                            Grade::Score(s)
                        },
                        evaluated_on,
                        valid_until,
                    })
                }
            ),
        (
            arb_text(),
            any::<bool>(),
            id(),
            prop::option::of(prop::collection::vec(arb_region(), 0..4)),
            arb_measures(),
            arb_date()
        )
            .prop_map(|(reference, inc, e, t, measures, respond_by)| {
                Body::JointActionInitiated(JointAction {
                    reference,
                    kind: if inc {
                        ActionKind::Incentive
                    } else {
                        ActionKind::Punishment
                    },
                    entry: EntryId(e),
                    targets: t.map_or(Targets::AllMembers, Targets::Regions),
                    measures,
                    respond_by,
                })
            }),
        (
            id(),
            0..3u8,
            arb_measures(),
            arb_text(),
            prop::collection::vec(arb_dept(), 0..3)
        )
            .prop_map(|(a, d, accepted, reason, implementing)| {
                let decision = match d {
                    0 => AckDecision::Accepted,
                    1 => AckDecision::Declined { reason },
                    _ => AckDecision::Partly { accepted, reason },
                };
                Body::JointActionAcknowledged {
                    action: ActionId(a),
                    decision,
                    implementing,
                }
            }),
        (
            id(),
            "[IP]-[A-Z]{2,8}(-[A-Z0-9]{1,6}){0,2}",
            arb_text(),
            arb_date()
        )
            .prop_map(|(a, m, reference, executed_on)| Body::MeasureExecuted {
                action: ActionId(a),
                measure: MeasureCode(m),
                reference,
                executed_on
            }),
        (
            id(),
            "[IP]-[A-Z]{2,8}(-[A-Z0-9]{1,6}){0,2}",
            arb_text(),
            arb_text()
        )
            .prop_map(|(a, m, reference, reason)| Body::MeasureLifted {
                action: ActionId(a),
                measure: MeasureCode(m),
                reference,
                reason
            }),
        (arb_text(), id(), any::<bool>(), arb_text(), arb_date()).prop_map(
            |(case_no, e, on_entry, grounds, filed_on)| Body::ObjectionFiled {
                case_no,
                target: if on_entry {
                    ObjectionTarget::Entry(EntryId(e))
                } else {
                    ObjectionTarget::Evaluation(EvaluationId(e))
                },
                grounds,
                filed_on,
            }
        ),
        (id(), arb_text()).prop_map(|(e, reason)| Body::EvaluationRevoked {
            evaluation: EvaluationId(e),
            reason
        }),
        (id(), 0..3u8, arb_text()).prop_map(|(o, k, note)| Body::ObjectionResolved {
            objection: ObjectionId(o),
            outcome: [
                ObjectionOutcome::Upheld,
                ObjectionOutcome::Corrected,
                ObjectionOutcome::Revoked
            ][k as usize],
            note
        }),
        (
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(first, second)| Body::EquivocationEvidence { first, second }),
        (id(), arb_text(), any::<bool>(), arb_text(), arb_date()).prop_map(
            |(e, case_no, public, grounds, filed_on)| Body::RepairApplied {
                entry: EntryId(e),
                case_no,
                basis: if public {
                    RepairBasis::PublicService
                } else {
                    RepairBasis::CorrectedWithinPeriod
                },
                grounds,
                filed_on,
            }
        ),
        (id(), id(), 0..3u8, arb_text()).prop_map(|(e, a, k, reason)| Body::RepairDecided {
            entry: EntryId(e),
            application: RepairApplicationId(a),
            outcome: [
                RepairOutcome::Repaired,
                RepairOutcome::Refused,
                RepairOutcome::NotAccepted
            ][k as usize],
            reason
        }),
        (
            arb_subject(),
            arb_text(),
            arb_text(),
            prop::collection::vec(arb_text(), 0..4),
            arb_date(),
            arb_date()
        )
            .prop_map(
                |(subject, acceptance_no, matter, waived, made_on, due_on)| {
                    Body::CommitmentMade(Commitment {
                        subject,
                        acceptance_no,
                        matter,
                        waived,
                        made_on,
                        due_on,
                    })
                }
            ),
        (
            any::<bool>(),
            arb_subject(),
            (arb_text(), arb_text(), arb_text()),
            arb_date(),
            arb_date()
        )
            .prop_map(
                |(
                    penalty,
                    subject,
                    (decision_no, authority, summary),
                    decided_on,
                    public_until,
                )| {
                    Body::DecisionDisclosed(Disclosure {
                        kind: if penalty {
                            DisclosureKind::Penalty
                        } else {
                            DisclosureKind::Licensing
                        },
                        subject,
                        decision_no,
                        authority,
                        decided_on,
                        summary,
                        public_until,
                    })
                }
            ),
        (id(), any::<bool>(), arb_date(), arb_text()).prop_map(|(c, kept, settled_on, note)| {
            Body::CommitmentSettled {
                commitment: CommitmentId(c),
                outcome: if kept {
                    CommitmentOutcome::Fulfilled
                } else {
                    CommitmentOutcome::Breached
                },
                settled_on,
                note,
            }
        }),
    ]
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        arb_body(),
        prop::sample::select(PROVINCES.to_vec()),
        1u64..u64::MAX,
        arb_hash(),
        any::<i64>(),
        arb_dept(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(body, p, seq, prev_hash, ts, author, s1, s2)| {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&s1);
            sig[32..].copy_from_slice(&s2);
            Envelope {
                version: credfed_protocol::PROTOCOL_VERSION,
                region: RegionCode::new(p.code, "r").unwrap(),
                seq,
                prev_hash,
                timestamp: Timestamp(ts),
                author,
                body: body.encode(),
                author_sig: Signature(sig),
                node_sig: Signature(sig),
            }
        })
}

/// A valid envelope produced the way nodes produce them.
fn valid_envelope() -> Vec<u8> {
    let mut w = World::new(&[310000, 440000]);
    let mut e = black_entry(org(ACME), "d1", &["P-PROCUREMENT"]);
    e.related_persons = vec![RelatedPerson {
        role: RelatedRole::LegalRepresentative,
        person: w.person("11010519491231002X", "张三"),
    }];
    let bytes = w.seal_as("310000:pub", &Body::ListEntryPublished(e.clone()));
    w.accept("310000:pub", Body::ListEntryPublished(e));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn body_round_trips(body in arb_body()) {
        let bytes = body.encode();
        // Evidence bodies may be larger than other bodies; all generated ones fit.
        let back = Body::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &body);
        let json = serde_json::to_string(&body).unwrap();
        prop_assert_eq!(serde_json::from_str::<Body>(&json).unwrap(), body);
    }

    #[test]
    fn envelope_round_trips(env in arb_envelope()) {
        let bytes = codec::encode(&env).unwrap();
        prop_assert_eq!(codec::decode::<Envelope>(&bytes, usize::MAX, "envelope").unwrap(), env);
    }

    #[test]
    fn mangled_gossip_batches_never_panic_and_never_decode_differently(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 1..16),
        copies in 1usize..5,
    ) {
        let envelopes = vec![valid_envelope(); copies];
        let good = credfed_protocol::gossip::encode_batch(&envelopes).unwrap();
        prop_assert_eq!(credfed_protocol::gossip::decode_batch(&good).unwrap(), envelopes);
        let mut flipped = good.clone();
        for (i, bit) in &flips {
            let at = i.index(flipped.len());
            flipped[at] ^= 1 << bit;
        }
        if let Ok(back) = credfed_protocol::gossip::decode_batch(&flipped) {
            // Whatever still decodes is exactly what it encodes to.
            prop_assert_eq!(credfed_protocol::gossip::encode_batch(&back).unwrap(), flipped);
        }
        let truncated = &good[..cut.index(good.len())];
        prop_assert!(credfed_protocol::gossip::decode_batch(truncated).is_err());
        let mut appended = good.clone();
        appended.extend_from_slice(&tail);
        prop_assert!(credfed_protocol::gossip::decode_batch(&appended).is_err());
    }

    /// Person-key evaluation messages: a flipped bit either fails to decode or, when it
    /// still decodes, the proof no longer verifies (unless the flip re-encodes the same
    /// batch); truncated or extended buffers never decode.
    #[test]
    fn mangled_person_key_messages_never_panic_and_never_verify(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 1..16),
        count in 1u8..6,
    ) {
        use credfed_protocol::oprf::{self, EvaluationRequest, EvaluationResponse, ShareKey};
        let share = ShareKey::from_bytes(3, [9; 32]).unwrap();
        let blinded: Vec<_> = (0..count).map(|i| oprf::blind(&[i], &[i + 1; 64]).unwrap().1).collect();
        let (evaluated, proof) = oprf::evaluate_share(&share, &blinded, &[4; 64]).unwrap();
        let request = codec::encode(&EvaluationRequest { members: vec![3, 1], blinded: blinded.clone() }).unwrap();
        let response = codec::encode(&EvaluationResponse::Evaluated { member: 3, evaluated, proof }).unwrap();
        prop_assert_eq!(oprf::decode_request(&request).unwrap().blinded, blinded.clone());
        let mut flipped = response.clone();
        for (i, bit) in &flips {
            let at = i.index(flipped.len());
            flipped[at] ^= 1 << bit;
        }
        if flipped != response
            && let Ok(EvaluationResponse::Evaluated { member, evaluated, proof }) = oprf::decode_response(&flipped)
            && member == 3
        {
            prop_assert!(oprf::verify_share_evaluation(3, &share.public(), &blinded, &evaluated, &proof).is_err());
        }
        prop_assert!(oprf::decode_response(&response[..cut.index(response.len())]).is_err());
        prop_assert!(oprf::decode_request(&request[..cut.index(request.len())]).is_err());
        let mut appended = response.clone();
        appended.extend_from_slice(&tail);
        prop_assert!(oprf::decode_response(&appended).is_err());
    }

    #[test]
    fn mangled_envelopes_never_panic_and_never_decode_differently(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let good = valid_envelope();
        let mut flipped = good.clone();
        for (i, bit) in &flips {
            let at = i.index(flipped.len());
            flipped[at] ^= 1 << bit;
        }
        if let Ok(v) = decode_envelope(FED, &flipped) {
            // Anything that still decodes is canonical: it is exactly what it encodes to.
            prop_assert_eq!(codec::encode(&v.envelope).unwrap(), flipped.clone());
        }
        let truncated = &good[..cut.index(good.len())];
        prop_assert!(decode_envelope(FED, truncated).is_err());
        let mut appended = good.clone();
        appended.extend_from_slice(&tail);
        prop_assert!(decode_envelope(FED, &appended).is_err());
        // Through the whole admission path as well: typed refusal, no panic, no state change.
        let mut w = World::new(&[310000, 440000]);
        let before = w.ledger.head(region(310000));
        for bytes in [&flipped[..], truncated, &appended[..]] {
            if let Ok(Admission::Accept(_)) = w.ingest(bytes) {
                prop_assert_eq!(bytes, &good[..]);
            }
        }
        let after = w.ledger.head(region(310000));
        prop_assert!(after == before || after.map(|h| h.seq) == before.map(|h| h.seq + 1));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_envelope(FED, &bytes);
        let _ = Body::decode(&bytes);
        let _ = codec::decode::<credfed_protocol::manifest::Manifest>(&bytes, 1 << 20, "manifest");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish(usize, u8),
    Object(usize, usize),
    Resolve(usize, u8),
    Initiate(usize),
    Ack(usize, usize, bool),
    Amend(usize),
    Revoke(usize),
    Repair(usize),
    ApplyRepair(usize, usize),
    DecideRepair(usize, u8),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize, any::<u8>()).prop_map(|(r, n)| Op::Publish(r, n)),
        2 => (0..4usize, 0..8usize).prop_map(|(r, e)| Op::Object(r, e)),
        2 => (0..8usize, 0..3u8).prop_map(|(o, k)| Op::Resolve(o, k)),
        2 => (0..8usize).prop_map(Op::Initiate),
        2 => (0..4usize, 0..8usize, any::<bool>()).prop_map(|(r, a, ok)| Op::Ack(r, a, ok)),
        1 => (0..8usize).prop_map(Op::Amend),
        1 => (0..8usize).prop_map(Op::Revoke),
        1 => (0..8usize).prop_map(Op::Repair),
        2 => (0..4usize, 0..8usize).prop_map(|(r, e)| Op::ApplyRepair(r, e)),
        2 => (0..8usize, 0..3u8).prop_map(|(a, k)| Op::DecideRepair(a, k)),
    ]
}

const REGIONS: [u32; 4] = [110000, 310000, 440000, 620000];

/// Runs ops through a world; returns it with the ids it created.
fn run(ops: &[Op]) -> World {
    let mut w = World::new(&REGIONS);
    let mut entries: Vec<(u32, EntryId)> = Vec::new();
    let mut actions: Vec<ActionId> = Vec::new();
    let mut objections: Vec<(u32, ObjectionId)> = Vec::new();
    let mut applications: Vec<(u32, EntryId, RepairApplicationId)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        w.now = Timestamp(w.now.0 + 60_000);
        let pick = |v: usize, n: usize| if n == 0 { None } else { Some(v % n) };
        let _ = match op {
            Op::Publish(r, n) => {
                let code = REGIONS[*r];
                let mut e = black_entry(org(ACME), &format!("doc-{n}"), &["P-PROCUREMENT"]);
                if n % 3 == 0 {
                    e = red_entry(org(ACME), &format!("doc-{n}"), &["I-LICENSING-GREEN"]);
                }
                let res = w.submit(&format!("{code}:pub"), Body::ListEntryPublished(e.clone()));
                if matches!(res, Ok(Admission::Accept(_))) {
                    entries.push((code, entry_id(region(code), &e)));
                }
                res
            }
            Op::Object(r, e) => match pick(*e, entries.len()) {
                Some(k) => {
                    let code = REGIONS[*r];
                    let case_no = format!("case-{i}");
                    let res = w.submit(
                        &format!("{code}:obj"),
                        Body::ObjectionFiled {
                            case_no: case_no.clone(),
                            target: ObjectionTarget::Entry(entries[k].1),
                            grounds: "g".into(),
                            filed_on: date("2026-11-02"),
                        },
                    );
                    if matches!(res, Ok(Admission::Accept(_))) {
                        objections.push((
                            entries[k].0,
                            objection_id(&dept(&format!("{code}:obj")), &case_no),
                        ));
                    }
                    res
                }
                None => continue,
            },
            Op::ApplyRepair(r, e) => match pick(*e, entries.len()) {
                Some(k) => {
                    let code = REGIONS[*r];
                    let case_no = format!("repair-{i}");
                    let res = w.submit(
                        &format!("{code}:obj"),
                        Body::RepairApplied {
                            entry: entries[k].1,
                            case_no: case_no.clone(),
                            basis: RepairBasis::CorrectedWithinPeriod,
                            grounds: "g".into(),
                            filed_on: w.now.date_cst(),
                        },
                    );
                    if matches!(res, Ok(Admission::Accept(_))) {
                        applications.push((
                            entries[k].0,
                            entries[k].1,
                            repair_application_id(&dept(&format!("{code}:obj")), &case_no),
                        ));
                    }
                    res
                }
                None => continue,
            },
            Op::DecideRepair(a, k) => match pick(*a, applications.len()) {
                Some(j) => {
                    let (issuer, entry, application) = applications[j];
                    w.submit(
                        &format!("{issuer}:pub"),
                        Body::RepairDecided {
                            entry,
                            application,
                            outcome: [
                                RepairOutcome::Repaired,
                                RepairOutcome::Refused,
                                RepairOutcome::NotAccepted,
                            ][*k as usize],
                            reason: "r".into(),
                        },
                    )
                }
                None => continue,
            },
            Op::Resolve(o, k) => match pick(*o, objections.len()) {
                Some(j) => {
                    let (issuer, oid) = objections[j];
                    let outcome = [
                        ObjectionOutcome::Upheld,
                        ObjectionOutcome::Corrected,
                        ObjectionOutcome::Revoked,
                    ][*k as usize];
                    w.submit(
                        &format!("{issuer}:obj"),
                        Body::ObjectionResolved {
                            objection: oid,
                            outcome,
                            note: "n".into(),
                        },
                    )
                }
                None => continue,
            },
            Op::Initiate(e) => match pick(*e, entries.len()) {
                Some(k) => {
                    let (code, id) = entries[k];
                    let kind =
                        if w.ledger.entry(&id).unwrap().content.category.list() == ListKind::Red {
                            ActionKind::Incentive
                        } else {
                            ActionKind::Punishment
                        };
                    let measures = vec![mc(if kind == ActionKind::Incentive {
                        "I-LICENSING-GREEN"
                    } else {
                        "P-PROCUREMENT"
                    })];
                    let reference = format!("act-{i}");
                    let res = w.submit(
                        &format!("{code}:init"),
                        Body::JointActionInitiated(JointAction {
                            reference: reference.clone(),
                            kind,
                            entry: id,
                            targets: Targets::AllMembers,
                            measures,
                            respond_by: date("2026-12-01"),
                        }),
                    );
                    if matches!(res, Ok(Admission::Accept(_))) {
                        actions.push(action_id(&dept(&format!("{code}:init")), &reference));
                    }
                    res
                }
                None => continue,
            },
            Op::Ack(r, a, ok) => match pick(*a, actions.len()) {
                Some(k) => {
                    let code = REGIONS[*r];
                    let decision = if *ok {
                        AckDecision::Accepted
                    } else {
                        AckDecision::Declined { reason: "r".into() }
                    };
                    let implementing = if *ok {
                        vec![dept(&format!("{code}:impl"))]
                    } else {
                        vec![]
                    };
                    w.submit(
                        &format!("{code}:impl"),
                        Body::JointActionAcknowledged {
                            action: actions[k],
                            decision,
                            implementing,
                        },
                    )
                }
                None => continue,
            },
            Op::Amend(e) | Op::Revoke(e) | Op::Repair(e) => match pick(*e, entries.len()) {
                Some(k) => {
                    let (code, id) = entries[k];
                    let held = w.ledger.entry(&id).unwrap();
                    let body = match op {
                        Op::Amend(_) => {
                            let mut c = held.content.clone();
                            c.summary = format!("amended {i}");
                            Body::ListEntryAmended {
                                entry: id,
                                amended: c,
                                reason: "r".into(),
                            }
                        }
                        Op::Revoke(_) => Body::ListEntryRevoked {
                            entry: id,
                            reason: "r".into(),
                        },
                        _ => Body::ListEntryRepaired {
                            entry: id,
                            basis: RepairBasis::CorrectedWithinPeriod,
                            reason: "r".into(),
                        },
                    };
                    w.submit(&format!("{code}:pub"), body)
                }
                None => continue,
            },
        };
    }
    w
}

/// Everything derived, in a comparable form.
fn derived(w: &World) -> String {
    let entries: Vec<_> = w
        .ledger
        .entries()
        .map(|e| (e.clone(), e.state_at(w.now)))
        .collect();
    let actions: Vec<_> = w.ledger.actions().cloned().collect();
    format!("{:?}|{entries:?}|{actions:?}", w.ledger.heads())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// docs/design.md §8 invariant 2: replicas that receive the region logs in any interleaving
    /// (waiting on missing cross-region references) reach the same heads and state.
    #[test]
    fn any_interleaving_of_region_logs_folds_to_the_same_state(
        ops in prop::collection::vec(arb_op(), 1..40),
        choices in prop::collection::vec(any::<prop::sample::Index>(), 64),
    ) {
        let origin = run(&ops);
        let mut queues: Vec<VecDeque<Vec<u8>>> = origin.logs().into_iter().map(VecDeque::from).collect();
        let mut replica = World::new(&[]);
        replica.manifest = origin.manifest.clone();
        replica.now = origin.now;
        let mut step = 0usize;
        let mut stalled: BTreeMap<usize, usize> = BTreeMap::new();
        while queues.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let qi = live[choices[step % choices.len()].index(live.len())];
            step += 1;
            let bytes = queues[qi].front().unwrap().clone();
            match replica.ingest(&bytes) {
                Ok(Admission::Accept(_)) => { queues[qi].pop_front(); stalled.clear(); }
                Ok(Admission::MissingDependency { .. }) => {
                    *stalled.entry(qi).or_default() += 1;
                    prop_assert!(stalled.len() <= live.len() && step < 100_000, "no progress");
                }
                other => prop_assert!(false, "replica verdict {:?} for a valid log", other),
            }
        }
        prop_assert_eq!(derived(&replica), derived(&origin));
        // Every position the origin holds, the replica holds byte for byte.
        for (r, h) in origin.ledger.heads() {
            for seq in 1..=h.seq {
                let pos = RecordPos { region: *r, seq };
                prop_assert_eq!(replica.ledger.envelope_at(pos), origin.ledger.envelope_at(pos));
            }
        }
    }
}

/// Inputs that once crashed a fuzz target (`tests/fuzz-regressions/<target>-<what>`): each
/// must now be refused or accepted without a panic, through every decoder.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        let _ = Body::decode(&bytes).map(|b| b.validate());
        let _ = decode_envelope(FED, &bytes);
        n += 1;
    }
    assert!(n >= 1);
}

proptest! {
    /// Time arithmetic saturates instead of overflowing, whatever a record or a
    /// configuration carries: no day count or instant panics or wraps.
    #[test]
    fn time_arithmetic_never_overflows(days in any::<i32>(), n in any::<i32>(), ms in any::<i64>()) {
        let d = Date::parse("1970-01-01").unwrap().add_days(days);
        prop_assert!(d.weekday() < 7);
        prop_assert!(d.succ() >= d);
        let moved = d.add_days(n);
        let monotone = if n >= 0 { moved >= d } else { moved <= d };
        prop_assert!(monotone);
        let _ = d.start_cst();
        let _ = Timestamp(ms).date_cst();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every leaf's inclusion proof verifies in every tree size, and any tampering with
    /// the proof, the leaf or the index makes it fail. (The size is not in the proof: a
    /// proof for leaf 0 of 3 also fits leaf 0 of 4 under the same root, which is why
    /// checkpoints sign the size with the root.)
    #[test]
    fn inclusion_proofs_verify_and_any_tampering_fails(
        n in 1u64..70,
        pick in any::<u64>(),
        flip in any::<(usize, usize, u8)>(),
    ) {
        use credfed_protocol::merkle::*;
        let data: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
        let tree = MemoryTree::from_data(&data);
        let size = 1 + pick % n;
        let root = root_at(&tree, size).unwrap();
        for index in 0..size {
            let leaf = leaf_hash(&data[index as usize]);
            let proof = inclusion_proof(&tree, index, size).unwrap();
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root));
            if size > 1 {
                prop_assert!(!verify_inclusion((index + 1) % size, size, &leaf, &proof, &root));
                let mut bad = proof.clone();
                let (i, byte, bit) = flip;
                let k = i % bad.len();
                bad[k].0[byte % 32] ^= 1 << (bit % 8);
                prop_assert!(!verify_inclusion(index, size, &leaf, &bad, &root));
                let mut short = proof.clone();
                short.pop();
                prop_assert!(!verify_inclusion(index, size, &leaf, &short, &root));
            }
            let mut long = proof.clone();
            long.push(leaf);
            prop_assert!(!verify_inclusion(index, size, &leaf, &long, &root));
            let mut other = leaf;
            other.0[0] ^= 1;
            prop_assert!(!verify_inclusion(index, size, &other, &proof, &root));
        }
    }

    /// Every pair of sizes has a verifying consistency proof; tampering fails, and a
    /// tree whose history differs at any leaf is never proven consistent.
    #[test]
    fn consistency_proofs_verify_and_a_rewritten_history_never_does(
        n in 2u64..50,
        changed in any::<u64>(),
        flip in any::<(usize, usize)>(),
    ) {
        use credfed_protocol::merkle::*;
        let data: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
        let tree = MemoryTree::from_data(&data);
        let mut forked_data = data.clone();
        let at = (changed % n) as usize;
        forked_data[at].push(0xff);
        let forked = MemoryTree::from_data(&forked_data);
        for first in 1..=n {
            for second in first..=n {
                let proof = consistency_proof(&tree, first, second).unwrap();
                let r1 = root_at(&tree, first).unwrap();
                let r2 = root_at(&tree, second).unwrap();
                prop_assert!(verify_consistency(first, second, &r1, &r2, &proof));
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let k = flip.0 % bad.len();
                    bad[k].0[flip.1 % 32] ^= 1;
                    prop_assert!(!verify_consistency(first, second, &r1, &r2, &bad));
                }
                // A fork at a leaf the first tree already holds is caught.
                if (at as u64) < first {
                    let fr2 = root_at(&forked, second).unwrap();
                    let fproof = consistency_proof(&forked, first, second).unwrap();
                    prop_assert!(!verify_consistency(first, second, &r1, &fr2, &fproof));
                }
            }
        }
    }
}

proptest! {
    /// Signed checkpoints round-trip through their text, and mangled texts (bit flips,
    /// truncation, appended bytes) never panic and never verify.
    #[test]
    fn checkpoint_notes_round_trip_and_mangling_never_verifies(
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        at in any::<usize>(),
        bit in 0u8..8,
        cut in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        use credfed_protocol::checkpoint::*;
        use credfed_protocol::crypto::Keypair;
        let sh = RegionCode::new(310000, "r").unwrap();
        let name = origin("cn-credit", sh);
        let key = Keypair::from_secret([9; 32]);
        let s = SignedCheckpoint::sign(Checkpoint::new(name.clone(), size, Hash256(root)), &name, &key);
        let text = s.encode();
        let back = SignedCheckpoint::parse(&text).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert!(back.verify_log_signature(&name, &key.public()).is_ok());
        let mut bytes = text.clone().into_bytes();
        let i = at % bytes.len();
        bytes[i] ^= 1 << bit;
        let mut variants = vec![bytes, text.as_bytes()[..cut % text.len()].to_vec()];
        let mut appended = text.clone().into_bytes();
        appended.extend_from_slice(&tail);
        variants.push(appended);
        for v in variants {
            if v == text.as_bytes() {
                continue;
            }
            if let Ok(t) = std::str::from_utf8(&v)
                && let Ok(parsed) = SignedCheckpoint::parse(t)
            {
                // Something parsed: it must not be the same signed statement unless the
                // bytes that changed were outside the body and signature.
                if parsed.checkpoint != s.checkpoint {
                    prop_assert!(parsed.verify_log_signature(&name, &key.public()).is_err());
                }
            }
        }
    }
}

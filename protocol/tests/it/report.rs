//! Reports (跟踪问效, 通报: article 二十三): every figure of a region's line recomputed
//! from the raw logs (the envelopes, decoded one by one, with no fold) and compared.

use std::collections::BTreeMap;

use credfed_protocol::envelope::decode_envelope;
use credfed_protocol::record::*;
use credfed_protocol::report::{Period, ReportLine, ReportRules, report, to_csv};
use credfed_protocol::time::Timestamp;

use crate::fixture::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;
const BJ: u32 = 110000;

/// A month of work: a court-listed debtor in Shanghai with a joint punishment to three
/// regions (one accepts and executes, one declines the mandatory bar, one never
/// answers), a Guangdong entry published late, an objection and a repair application
/// from Gansu, both decided by Shanghai; three written commitments in Beijing (one kept,
/// one breached, one left overdue); two decisions disclosed in Guangdong (双公示), one of
/// them late.
fn month_of_work() -> World {
    let mut w = World::new(&[SH, GD, GS, BJ]);
    for (no, decided_on) in [("粤市监罚1", "2026-10-09"), ("粤市监罚2", "2026-10-30")] {
        w.accept(
            "440000:pub",
            Body::DecisionDisclosed(Disclosure {
                kind: DisclosureKind::Penalty,
                subject: org(ACME),
                decision_no: no.into(),
                authority: "广东省市场监督管理局".into(),
                decided_on: date(decided_on),
                summary: "罚款".into(),
                public_until: date("2027-10-30"),
            }),
        );
    }
    for no in ["京许1", "京许2", "京许3"] {
        w.accept(
            "110000:pub",
            Body::CommitmentMade(Commitment {
                subject: org(ACME),
                acceptance_no: no.into(),
                matter: "食品经营许可".into(),
                waived: vec!["场所平面图".into()],
                made_on: date("2026-11-02"),
                due_on: date("2026-11-10"),
            }),
        );
    }
    let e = judgment_entry(&w, org(ACME), "（2026）沪01执21号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    let late = ListEntry {
        basis: Basis {
            decided_on: date("2026-10-09"),
            ..black_entry(org(ACME), "粤市监处〔2026〕3号", &[]).basis
        },
        effective_from: date("2026-10-09"),
        expires_on: date("2029-10-09"),
        ..black_entry(org(ACME), "粤市监处〔2026〕3号", &[])
    };
    w.accept("440000:pub", Body::ListEntryPublished(late));
    let action = JointAction {
        reference: "沪联惩〔2026〕21号".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::Regions(vec![region(BJ), region(GD), region(GS)]),
        measures: vec![mc("P-PROCUREMENT")],
        respond_by: date("2026-11-09"),
    };
    w.accept("310000:init", Body::JointActionInitiated(action.clone()));
    let aid = action_id(&dept("310000:init"), &action.reference);
    w.now = Timestamp(w.now.0 + 5 * 3_600_000);
    w.accept(
        "440000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Accepted,
            implementing: vec![dept("440000:impl")],
        },
    );
    w.now = noon("2026-11-04");
    w.accept(
        "440000:impl",
        Body::MeasureExecuted {
            action: aid,
            measure: mc("P-PROCUREMENT"),
            reference: "粤执1".into(),
            executed_on: date("2026-11-04"),
        },
    );
    w.accept(
        "620000:impl",
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Declined {
                reason: "本省另案处理".into(),
            },
            implementing: vec![],
        },
    );
    w.accept(
        "620000:obj",
        Body::ObjectionFiled {
            case_no: "甘异1".into(),
            target: ObjectionTarget::Entry(id),
            grounds: "已履行".into(),
            filed_on: date("2026-11-04"),
        },
    );
    w.accept(
        "620000:obj",
        Body::RepairApplied {
            entry: id,
            case_no: "甘信修1".into(),
            basis: RepairBasis::CorrectedWithinPeriod,
            grounds: "已履行".into(),
            filed_on: date("2026-11-04"),
        },
    );
    w.now = noon("2026-11-10");
    w.accept(
        "310000:obj",
        Body::ObjectionResolved {
            objection: objection_id(&dept("620000:obj"), "甘异1"),
            outcome: ObjectionOutcome::Upheld,
            note: "核实".into(),
        },
    );
    w.accept(
        "110000:pub",
        Body::CommitmentSettled {
            commitment: commitment_id(&dept("110000:pub"), "京许1"),
            outcome: CommitmentOutcome::Fulfilled,
            settled_on: date("2026-11-10"),
            note: "已补正".into(),
        },
    );
    w.now = noon("2026-11-12");
    w.accept(
        "110000:pub",
        Body::CommitmentSettled {
            commitment: commitment_id(&dept("110000:pub"), "京许2"),
            outcome: CommitmentOutcome::Breached,
            settled_on: date("2026-11-12"),
            note: "逾期未补正".into(),
        },
    );
    w.accept(
        "310000:pub",
        Body::RepairDecided {
            entry: id,
            application: repair_application_id(&dept("620000:obj"), "甘信修1"),
            outcome: RepairOutcome::Refused,
            reason: "不符合条件".into(),
        },
    );
    w.now = noon("2026-11-20");
    w
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn line(
    out: &mut BTreeMap<String, ReportLine>,
    r: credfed_protocol::ids::RegionCode,
) -> &mut ReportLine {
    out.entry(r.to_string()).or_insert_with(|| ReportLine {
        period: "2026-11".into(),
        region: r.to_string(),
        ..ReportLine::default()
    })
}

/// Each region's line, recomputed from the envelopes alone.
fn from_the_logs(w: &World) -> BTreeMap<String, ReportLine> {
    let mut records = Vec::new();
    for log in w.logs() {
        for bytes in log {
            let v = decode_envelope(FED, &bytes).unwrap();
            records.push((
                v.envelope.region,
                v.envelope.timestamp,
                v.envelope.author.clone(),
                v.body,
            ));
        }
    }
    let mut out: BTreeMap<String, ReportLine> = BTreeMap::new();
    let today = w.now.date_cst();
    type Samples = BTreeMap<String, Vec<f64>>;
    let mut ack_hours = Samples::new();
    let mut exec_hours = Samples::new();
    let mut objection_days = Samples::new();
    let mut repair_days = Samples::new();
    for (region, at, author, body) in &records {
        match body {
            Body::ListEntryPublished(e) => {
                let due = w.calendar.add_working_days(e.basis.decided_on, 7).date;
                let l = line(&mut out, *region);
                l.entries_published += 1;
                l.disclosed_late += u64::from(at.date_cst() > due);
            }
            Body::DecisionDisclosed(d) => {
                let due = w.calendar.add_working_days(d.decided_on, 7).date;
                let l = line(&mut out, *region);
                l.decisions_disclosed += 1;
                l.decisions_disclosed_late += u64::from(at.date_cst() > due);
            }
            Body::CommitmentMade(c) => {
                let cid = commitment_id(author, &c.acceptance_no);
                let settled = records.iter().find_map(|(_, _, _, b)| match b {
                    Body::CommitmentSettled {
                        commitment,
                        outcome,
                        ..
                    } if *commitment == cid => Some(*outcome),
                    _ => None,
                });
                let l = line(&mut out, *region);
                l.commitments_made += 1;
                l.commitments_fulfilled += u64::from(settled == Some(CommitmentOutcome::Fulfilled));
                l.commitments_breached += u64::from(settled == Some(CommitmentOutcome::Breached));
                l.commitments_overdue += u64::from(settled.is_none() && today > c.due_on);
            }
            Body::JointActionInitiated(a) => {
                let aid = action_id(author, &a.reference);
                let entry_category = records
                    .iter()
                    .find_map(|(r, _, _, b)| match b {
                        Body::ListEntryPublished(e) if entry_id(*r, e) == a.entry => {
                            Some(e.category)
                        }
                        _ => None,
                    })
                    .unwrap();
                let Targets::Regions(targets) = &a.targets else {
                    unreachable!()
                };
                for t in targets {
                    let answer = records.iter().find(|(r, _, _, b)| {
                        *r == *t && matches!(b, Body::JointActionAcknowledged { action, .. } if *action == aid)
                    });
                    let l = line(&mut out, *t);
                    l.actions_asked += 1;
                    match answer {
                        None => l.acknowledgements_overdue += u64::from(today > a.respond_by),
                        Some((_, ack_at, _, Body::JointActionAcknowledged { decision, .. })) => {
                            l.acknowledged += 1;
                            l.acknowledged_late += u64::from(ack_at.date_cst() > a.respond_by);
                            ack_hours
                                .entry(t.to_string())
                                .or_default()
                                .push((ack_at.0 - at.0) as f64 / 3_600_000.0);
                            let accepted: Vec<MeasureCode> = match decision {
                                AckDecision::Accepted => a.measures.clone(),
                                AckDecision::Declined { .. } => vec![],
                                AckDecision::Partly { accepted, .. } => accepted.clone(),
                            };
                            if !matches!(decision, AckDecision::Accepted) {
                                l.declined += 1;
                                let refused = a.measures.iter().filter(|m| !accepted.contains(m));
                                let mandatory = refused
                                    .filter(|m| {
                                        w.catalogue.get(m).unwrap().is_mandatory_for(entry_category)
                                    })
                                    .count() as u64;
                                l.mandatory_declined += mandatory;
                                if mandatory > 0
                                    && let AckDecision::Declined { reason }
                                    | AckDecision::Partly { reason, .. } = decision
                                {
                                    l.mandatory_decline_reasons.push(reason.clone());
                                }
                            }
                            l.measures_accepted += accepted.len() as u64;
                            for m in &accepted {
                                if let Some((_, x_at, _, _)) = records.iter().find(|(r, _, _, b)| {
                                    *r == *t && matches!(b, Body::MeasureExecuted { action, measure, .. } if *action == aid && measure == m)
                                }) {
                                    l.measures_executed += 1;
                                    exec_hours.entry(t.to_string()).or_default().push((x_at.0 - ack_at.0) as f64 / 3_600_000.0);
                                }
                            }
                        }
                        Some(_) => unreachable!(),
                    }
                }
            }
            Body::ObjectionFiled {
                case_no,
                filed_on,
                target: ObjectionTarget::Entry(e),
                ..
            } => {
                let oid = objection_id(author, case_no);
                let issuer = records
                    .iter()
                    .find_map(|(r, _, _, b)| match b {
                        Body::ListEntryPublished(x) if entry_id(*r, x) == *e => Some(*r),
                        _ => None,
                    })
                    .unwrap();
                let resolved = records.iter().find(|(_, _, _, b)| matches!(b, Body::ObjectionResolved { objection, .. } if *objection == oid));
                let l = line(&mut out, issuer);
                l.objections_received += 1;
                match resolved {
                    Some((_, at, _, _)) => {
                        l.objections_resolved += 1;
                        objection_days
                            .entry(issuer.to_string())
                            .or_default()
                            .push(f64::from(
                                at.date_cst().days_since_epoch() - filed_on.days_since_epoch(),
                            ));
                    }
                    None => {
                        l.objections_overdue += u64::from(
                            today
                                > w.calendar
                                    .add_working_days(
                                        *filed_on,
                                        w.manifest.policy.objection_working_days as u32,
                                    )
                                    .date,
                        )
                    }
                }
            }
            Body::RepairApplied {
                entry,
                case_no,
                filed_on,
                ..
            } => {
                let app = repair_application_id(author, case_no);
                let decided = records.iter().find(|(_, _, _, b)| matches!(b, Body::RepairDecided { application, .. } if *application == app));
                let issuer = records
                    .iter()
                    .find_map(|(r, _, _, b)| match b {
                        Body::ListEntryPublished(x) if entry_id(*r, x) == *entry => Some(*r),
                        _ => None,
                    })
                    .unwrap();
                let l = line(&mut out, issuer);
                l.repairs_received += 1;
                if let Some((_, at, _, _)) = decided {
                    l.repairs_decided += 1;
                    repair_days
                        .entry(issuer.to_string())
                        .or_default()
                        .push(f64::from(
                            at.date_cst().days_since_epoch() - filed_on.days_since_epoch(),
                        ));
                }
            }
            _ => {}
        }
    }
    for (r, l) in out.iter_mut() {
        l.median_acknowledgement_hours = median(ack_hours.remove(r).unwrap_or_default());
        l.median_execution_hours = median(exec_hours.remove(r).unwrap_or_default());
        l.median_objection_days = median(objection_days.remove(r).unwrap_or_default());
        l.median_repair_days = median(repair_days.remove(r).unwrap_or_default());
    }
    out
}

/// Article 二十三: the report's region lines equal what the raw logs give, figure by
/// figure; department lines hold what each department did.
#[test]
fn art23_every_report_figure_is_what_the_raw_logs_give() {
    let w = month_of_work();
    let rules = ReportRules {
        manifest: &w.manifest,
        catalogue: &w.catalogue,
        calendar: &w.calendar,
    };
    let entries: Vec<_> = w.ledger.entries().cloned().collect();
    let actions: Vec<_> = w.ledger.actions().cloned().collect();
    let commitments: Vec<_> = w.ledger.commitments().cloned().collect();
    let disclosures: Vec<_> = w.ledger.disclosures().cloned().collect();
    let lines = report(
        &rules,
        &entries,
        &actions,
        &commitments,
        &disclosures,
        Period::Month,
        date("2026-11-01"),
        date("2026-11-30"),
        w.now,
    );
    let regions: BTreeMap<String, ReportLine> = lines
        .iter()
        .filter(|l| l.department.is_none())
        .map(|l| (l.region.clone(), l.clone()))
        .collect();
    let expected = from_the_logs(&w);
    assert_eq!(regions, expected);
    // The scenario exercises every figure.
    let gs = &regions["620000"];
    assert_eq!((gs.declined, gs.mandatory_declined), (1, 1));
    assert_eq!(gs.mandatory_decline_reasons, ["本省另案处理"]);
    assert_eq!(regions["110000"].acknowledgements_overdue, 1);
    let bj = &regions["110000"];
    assert_eq!(
        (
            bj.commitments_made,
            bj.commitments_fulfilled,
            bj.commitments_breached,
            bj.commitments_overdue
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(regions["440000"].disclosed_late, 1);
    assert_eq!(
        (
            regions["440000"].decisions_disclosed,
            regions["440000"].decisions_disclosed_late
        ),
        (2, 1)
    );
    assert_eq!(regions["440000"].measures_executed, 1);
    assert_eq!(regions["440000"].median_acknowledgement_hours, Some(5.0));
    let sh = &regions["310000"];
    assert_eq!(
        (sh.objections_resolved, sh.median_objection_days),
        (1, Some(6.0))
    );
    assert_eq!((sh.repairs_decided, sh.median_repair_days), (1, Some(8.0)));
    // Department lines: who did the work.
    let dept = |r: &str, d: &str| {
        lines
            .iter()
            .find(|l| l.region == r && l.department.as_deref() == Some(d))
            .cloned()
            .unwrap_or_else(|| panic!("no line for {d}"))
    };
    assert_eq!(dept("440000", "440000:impl").measures_executed, 1);
    assert_eq!(dept("440000", "440000:pub").disclosed_late, 1);
    assert_eq!(dept("310000", "310000:obj").objections_resolved, 1);
    assert_eq!(dept("310000", "310000:pub").repairs_decided, 1);
    // By day, the same work spreads over the days it arose on.
    let by_day = report(
        &rules,
        &entries,
        &actions,
        &commitments,
        &disclosures,
        Period::Day,
        date("2026-11-01"),
        date("2026-11-30"),
        w.now,
    );
    let asked: u64 = by_day
        .iter()
        .filter(|l| l.department.is_none())
        .map(|l| l.actions_asked)
        .sum();
    assert_eq!(asked, 3);
    // Outside the range, nothing.
    let none = report(
        &rules,
        &entries,
        &actions,
        &commitments,
        &disclosures,
        Period::Quarter,
        date("2027-01-01"),
        date("2027-03-31"),
        w.now,
    );
    assert!(none.is_empty());
    // A node's checks join the report where they belong: on its region's line and the
    // asking department's, creating lines where none was, in the report's order.
    let counts: BTreeMap<_, u64> = [
        (
            (
                date("2026-11-03"),
                "licensing".to_string(),
                "440000:pub".to_string(),
            ),
            2,
        ),
        (
            (
                date("2026-11-04"),
                "procurement".to_string(),
                "440000:pub".to_string(),
            ),
            1,
        ),
        (
            (
                date("2026-11-04"),
                "licensing".to_string(),
                "440000:init".to_string(),
            ),
            4,
        ),
    ]
    .into_iter()
    .collect();
    let with_checks =
        credfed_protocol::report::add_checks(lines.clone(), region(GD), &counts, Period::Month);
    let gd = with_checks
        .iter()
        .find(|l| l.region == "440000" && l.department.is_none())
        .unwrap();
    assert_eq!(gd.checks, 7);
    assert_eq!(gd.checks_by_domain["licensing"], 6);
    assert_eq!(gd.disclosed_late, 1, "the other figures stay");
    let init = with_checks
        .iter()
        .find(|l| l.department.as_deref() == Some("440000:init"))
        .unwrap();
    assert_eq!((init.checks, init.actions_asked), (4, 0));
    let keys: Vec<_> = with_checks
        .iter()
        .map(|l| (l.period.clone(), l.region.clone(), l.department.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        with_checks.len(),
        lines.len() + 1,
        "one new line: 440000:init"
    );
    // CSV: a header and one line per report line; a reason with a comma stays one field.
    let csv = to_csv(&lines);
    assert_eq!(csv.lines().count(), lines.len() + 1);
    assert!(csv.starts_with("period,region,department,actions_asked"));
}

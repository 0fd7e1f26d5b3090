//! 双公示 (article 十七): administrative licensing and penalty decisions made public within
//! 7 working days of the decision, each public until the end of its period; late
//! disclosures are counted per department.

use credfed_protocol::ledger::RejectReason;
use credfed_protocol::record::*;
use credfed_protocol::report::{Period, ReportRules, report};

use crate::fixture::*;

const SH: u32 = 310000;

fn penalty(decision_no: &str, decided_on: &str, public_until: &str) -> Disclosure {
    Disclosure {
        kind: DisclosureKind::Penalty,
        subject: org(ACME),
        decision_no: decision_no.into(),
        authority: "上海市市场监督管理局".into(),
        decided_on: date(decided_on),
        summary: "销售不符合食品安全标准的食品，罚款五万元（食品安全法第一百二十四条）".into(),
        public_until: date(public_until),
    }
}

/// Article 十七: the deadline is 7 working days from the decision, counted on the
/// calendar (National Day's holidays do not count); a disclosure on the last day is in
/// time, one a day later is late, and each is counted against its department.
#[test]
fn art17_a_decision_disclosed_after_seven_working_days_is_late() {
    let mut w = World::starting(&[SH, 440000], noon("2026-09-01"));
    let decided = date("2026-09-29");
    let due = w.calendar.add_working_days(decided, 7).date;
    assert!(
        due > date("2026-10-08"),
        "the National Day holidays are not working days: due {due}"
    );
    w.now = noon(&due.to_string());
    w.accept(
        "310000:pub",
        Body::DecisionDisclosed(penalty("沪市监罚〔2026〕1号", "2026-09-29", "2027-09-29")),
    );
    w.now = noon(&due.add_days(1).to_string());
    w.accept(
        "310000:pub",
        Body::DecisionDisclosed(penalty("沪市监罚〔2026〕2号", "2026-09-29", "2027-09-29")),
    );
    let late: Vec<bool> = w
        .ledger
        .disclosures()
        .map(|d| d.disclosed_late(&w.calendar, &w.manifest.policy))
        .collect();
    assert_eq!(late.iter().filter(|l| **l).count(), 1, "{late:?}");
    let rules = ReportRules {
        manifest: &w.manifest,
        catalogue: &w.catalogue,
        calendar: &w.calendar,
    };
    let disclosures: Vec<_> = w.ledger.disclosures().cloned().collect();
    let lines = report(
        &rules,
        std::iter::empty(),
        std::iter::empty(),
        std::iter::empty(),
        &disclosures,
        Period::Quarter,
        date("2026-10-01"),
        date("2026-12-31"),
        w.now,
    );
    let dept = lines
        .iter()
        .find(|l| l.department.as_deref() == Some("310000:pub"))
        .unwrap();
    assert_eq!(
        (dept.decisions_disclosed, dept.decisions_disclosed_late),
        (2, 1)
    );
    // The period ends: still public on its last day, no more after it.
    let d = w.ledger.disclosures().next().unwrap();
    assert!(d.public_on(date("2027-09-29")));
    assert!(!d.public_on(date("2027-09-30")));
}

/// Article 十七 with the national repair rules (国家发展改革委令2023年第58号): penalty
/// information is public for at most the catalogue's longest period; a longer one is
/// refused naming the field and the source. A period that ends before it starts, a
/// decision dated after its disclosure, a second disclosure of one decision, and a
/// department without the publisher role are refused too; nothing is stored.
#[test]
fn art17_disclosure_rules_refuse_what_does_not_apply() {
    let mut w = World::new(&[SH, 440000]);
    let e = w.refuse(
        "310000:pub",
        Body::DecisionDisclosed(penalty("沪市监罚〔2026〕9号", "2026-10-30", "2031-10-30")),
    );
    assert_eq!(e.field, "disclosure.public_until", "{e:?}");
    assert!(e.message.contains("58号"), "{e:?}");
    let e = w.refuse(
        "310000:pub",
        Body::DecisionDisclosed(penalty("沪市监罚〔2026〕9号", "2026-10-30", "2026-10-30")),
    );
    assert_eq!(e.field, "body.disclosure.public_until", "{e:?}");
    let e = w.refuse(
        "310000:pub",
        Body::DecisionDisclosed(penalty("沪市监罚〔2026〕9号", "2026-11-03", "2027-11-03")),
    );
    assert_eq!(e.field, "disclosure.decided_on", "{e:?}");
    let ok = penalty("沪市监罚〔2026〕9号", "2026-10-30", "2027-10-30");
    assert_eq!(
        w.refuse("310000:obj", Body::DecisionDisclosed(ok.clone()))
            .reason,
        RejectReason::Unauthorised
    );
    assert_eq!(w.ledger.disclosures().count(), 0);
    w.accept("310000:pub", Body::DecisionDisclosed(ok.clone()));
    assert_eq!(
        w.refuse("310000:pub", Body::DecisionDisclosed(ok.clone()))
            .field,
        "disclosure.decision_no"
    );
    // A licence may stay public longer than penalty information (while it is valid).
    let licence = Disclosure {
        kind: DisclosureKind::Licensing,
        decision_no: "沪食许〔2026〕7号".into(),
        public_until: date("2031-10-30"),
        ..ok
    };
    w.accept("310000:pub", Body::DecisionDisclosed(licence));
    assert_eq!(w.ledger.disclosures().count(), 2);
}

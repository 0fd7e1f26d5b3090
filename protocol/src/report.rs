//! Reports for supervision (跟踪问效 and 通报, article 二十三): per period, region and
//! department, how joint actions were answered and carried out, how fast objections and
//! repair applications were decided, and which publications came late. Pure: computed
//! from the folds, so that a test can recompute every figure from the raw logs.
//!
//! Each figure is counted where the work lay and in the period the work arose:
//!
//! | figure | region | department | period of |
//! |---|---|---|---|
//! | actions asked, acknowledged, overdue, declined, mandatory declined, acknowledgement hours | the target | the answering one | the initiation |
//! | measures accepted, executed, execution hours (answer → report) | the target | the reporting one | the initiation |
//! | entries published, disclosed late (article 十七: 7 working days) | the issuer | the publishing one | the publication |
//! | objections received, resolved, overdue, resolution days | the issuer | the resolving one | the filing |
//! | repair applications received, decided, overdue, decision days | the issuer | the deciding one | the application |
//! | commitments made, fulfilled, breached, overdue (article 四) | the recording one | the recording one | the commitment |
//! | licensing and penalty decisions disclosed, disclosed late (双公示, article 十七: 7 working days) | the disclosing one | the disclosing one | the disclosure |
//! | checks answered, per domain (应查必查, article 十八) — this node's own figures ([`add_checks`]) | the answering node's | the asking one | the check |
//!
//! A region's line (`department` = `None`) holds every figure of the region; a
//! department's line only what that department did (an unanswered action belongs to no
//! department yet).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;
use crate::catalogue::{Catalogue, RepairPeriods};
use crate::ids::{DepartmentId, RegionCode};
use crate::manifest::{Manifest, Policy};
use crate::record::CommitmentOutcome;
use crate::state::{ActionFold, CommitmentFold, DisclosureFold, EntryFold, TargetStatus};
use crate::time::{Date, Timestamp};

/// How figures are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// `2026-12-05`.
    Day,
    /// `2026-12`.
    Month,
    /// `2026-Q4`.
    Quarter,
}

impl Period {
    /// The period `date` falls in, as a label that sorts in time order.
    pub fn label(self, date: Date) -> String {
        let (y, m, d) = date.ymd();
        match self {
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Month => format!("{y:04}-{m:02}"),
            Period::Quarter => format!("{y:04}-Q{}", (m - 1) / 3 + 1),
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportLine {
    /// Period label.
    pub period: String,
    /// Region.
    pub region: String,
    /// Department, or `None` for the region's line.
    pub department: Option<String>,
    /// Actions naming the region as a target.
    pub actions_asked: u64,
    /// Of those, answered.
    pub acknowledged: u64,
    /// Unanswered past their respond-by date.
    pub acknowledgements_overdue: u64,
    /// Answered after their respond-by date.
    pub acknowledged_late: u64,
    /// Declined wholly or in part.
    pub declined: u64,
    /// Mandatory measures declined (non-compliance, article 二十).
    pub mandatory_declined: u64,
    /// Median hours from initiation to answer.
    pub median_acknowledgement_hours: Option<f64>,
    /// Measures accepted.
    pub measures_accepted: u64,
    /// Of those, reported executed.
    pub measures_executed: u64,
    /// Median hours from the answer to the execution report.
    pub median_execution_hours: Option<f64>,
    /// Entries published.
    pub entries_published: u64,
    /// Of those, published later than the disclosure deadline (article 十七).
    pub disclosed_late: u64,
    /// Objections to the region's records.
    pub objections_received: u64,
    /// Of those, resolved.
    pub objections_resolved: u64,
    /// Open past their deadline.
    pub objections_overdue: u64,
    /// Median days from filing to resolution.
    pub median_objection_days: Option<f64>,
    /// Repair applications for the region's entries.
    pub repairs_received: u64,
    /// Of those, decided.
    pub repairs_decided: u64,
    /// Undecided past their deadline.
    pub repairs_overdue: u64,
    /// Median days from application to decision.
    pub median_repair_days: Option<f64>,
    /// Written commitments recorded (容缺受理, article 四).
    pub commitments_made: u64,
    /// Of those, fulfilled by their deadline.
    pub commitments_fulfilled: u64,
    /// Of those, breached.
    pub commitments_breached: u64,
    /// Unsettled past their deadline.
    pub commitments_overdue: u64,
    /// Licensing and penalty decisions disclosed (双公示, article 十七).
    pub decisions_disclosed: u64,
    /// Of those, disclosed later than the disclosure deadline.
    pub decisions_disclosed_late: u64,
    /// Checks this node answered (its own figure: checks are not replicated).
    pub checks: u64,
    /// The same by domain.
    pub checks_by_domain: BTreeMap<String, u64>,
    /// The reasons given for mandatory declines.
    pub mandatory_decline_reasons: Vec<String>,
}

#[derive(Default)]
struct Acc {
    line: ReportLine,
    ack_hours: Vec<f64>,
    exec_hours: Vec<f64>,
    objection_days: Vec<f64>,
    repair_days: Vec<f64>,
}

fn median(v: &mut [f64]) -> Option<f64> {
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

fn hours(from: Timestamp, to: Timestamp) -> f64 {
    (to.0 - from.0) as f64 / 3_600_000.0
}

fn days(from: Date, to: Date) -> f64 {
    f64::from(to.days_since_epoch() - from.days_since_epoch())
}

/// What the report is computed with.
pub struct ReportRules<'a> {
    /// The manifest in force (policy deadlines, membership).
    pub manifest: &'a Manifest,
    /// The policy data (mandatory measures, repair deadlines).
    pub catalogue: &'a Catalogue,
    /// The working-day calendar.
    pub calendar: &'a WorkingCalendar,
}

/// The report of `entries`, `actions` (each action with the entry it rests on found
/// in `entries`, or left out), `commitments` and `disclosures` for periods of `period` whose work arose
/// between `from` and `to` (both included), as it stands at `now`.
#[allow(clippy::too_many_arguments)]
pub fn report<'e>(
    rules: &ReportRules<'_>,
    entries: impl IntoIterator<Item = &'e EntryFold>,
    actions: impl IntoIterator<Item = &'e ActionFold>,
    commitments: impl IntoIterator<Item = &'e CommitmentFold>,
    disclosures: impl IntoIterator<Item = &'e DisclosureFold>,
    period: Period,
    from: Date,
    to: Date,
    now: Timestamp,
) -> Vec<ReportLine> {
    let policy: &Policy = &rules.manifest.policy;
    let repair: Option<&RepairPeriods> = rules.catalogue.repair.as_ref();
    let today = now.date_cst();
    let mut acc: BTreeMap<(String, RegionCode, Option<DepartmentId>), Acc> = BTreeMap::new();
    let within = |d: Date| d >= from && d <= to;
    // Adds to the region's line and, when known, the department's.
    let mut add = |day: Date,
                   region: RegionCode,
                   department: Option<&DepartmentId>,
                   f: &mut dyn FnMut(&mut Acc)| {
        let p = period.label(day);
        f(acc.entry((p.clone(), region, None)).or_default());
        if let Some(d) = department {
            f(acc.entry((p, region, Some(d.clone()))).or_default());
        }
    };
    for e in entries {
        let published = e.published.at.date_cst();
        if within(published) {
            let late = e.disclosed_late(rules.calendar, policy);
            add(published, e.issuer(), Some(&e.published.author), &mut |a| {
                a.line.entries_published += 1;
                a.line.disclosed_late += u64::from(late);
            });
        }
        for o in e.objections.values() {
            if !within(o.filed_on) {
                continue;
            }
            let resolved = o.resolved.as_ref();
            let due = rules
                .calendar
                .add_working_days(o.filed_on, policy.objection_working_days as u32)
                .date;
            let overdue = resolved.is_none() && today > due;
            add(o.filed_on, e.issuer(), None, &mut |a| {
                a.line.objections_received += 1;
                a.line.objections_overdue += u64::from(overdue);
            });
            if let Some((_, by)) = resolved {
                let d = days(o.filed_on, by.at.date_cst());
                add(o.filed_on, e.issuer(), Some(&by.author), &mut |a| {
                    a.line.objections_resolved += 1;
                    a.objection_days.push(d);
                });
            }
        }
        for r in e.repairs.values() {
            if !within(r.filed_on) {
                continue;
            }
            let overdue = r.decided.is_none()
                && repair.is_some_and(|p| {
                    today
                        > rules
                            .calendar
                            .add_working_days(r.filed_on, p.decision_working_days as u32)
                            .date
                });
            add(r.filed_on, e.issuer(), None, &mut |a| {
                a.line.repairs_received += 1;
                a.line.repairs_overdue += u64::from(overdue);
            });
            if let Some((_, by)) = &r.decided {
                let d = days(r.filed_on, by.at.date_cst());
                add(r.filed_on, e.issuer(), Some(&by.author), &mut |a| {
                    a.line.repairs_decided += 1;
                    a.repair_days.push(d);
                });
            }
        }
    }
    for action in actions {
        let initiated = action.initiated.at.date_cst();
        if !within(initiated) {
            continue;
        }
        for t in action.view_at(now, rules.manifest, rules.catalogue) {
            let response = action.responses.get(&t.region);
            let answered_by = response.map(|r| &r.origin.author);
            add(initiated, t.region, None, &mut |a| {
                a.line.actions_asked += 1;
                a.line.acknowledgements_overdue += u64::from(t.status == TargetStatus::Overdue);
            });
            let Some(r) = response else {
                continue;
            };
            let ack_hours = hours(action.initiated.at, r.origin.at);
            let declined = matches!(t.status, TargetStatus::Declined | TargetStatus::Partly);
            let mandatory = t.non_compliant.len() as u64;
            let reason = t.decline_reason.clone();
            add(initiated, t.region, answered_by, &mut |a| {
                a.line.acknowledged += 1;
                a.line.acknowledged_late += u64::from(t.answered_late);
                a.line.declined += u64::from(declined);
                a.line.mandatory_declined += mandatory;
                if mandatory > 0
                    && let Some(why) = &reason
                {
                    a.line.mandatory_decline_reasons.push(why.clone());
                }
                a.line.measures_accepted += t.accepted.len() as u64;
                a.ack_hours.push(ack_hours);
            });
            for m in &t.accepted {
                if let Some(x) = action.executions.get(&(t.region, m.clone())) {
                    let h = hours(r.origin.at, x.origin.at);
                    add(initiated, t.region, Some(&x.origin.author), &mut |a| {
                        a.line.measures_executed += 1;
                        a.exec_hours.push(h);
                    });
                }
            }
        }
    }
    for c in commitments {
        let made_on = c.commitment.made_on;
        if !within(made_on) {
            continue;
        }
        let outcome = c.settled.as_ref().map(|s| s.outcome);
        let overdue = outcome.is_none() && today > c.commitment.due_on;
        add(made_on, c.issuer(), Some(&c.made.author), &mut |a| {
            a.line.commitments_made += 1;
            a.line.commitments_fulfilled +=
                u64::from(outcome == Some(CommitmentOutcome::Fulfilled));
            a.line.commitments_breached += u64::from(outcome == Some(CommitmentOutcome::Breached));
            a.line.commitments_overdue += u64::from(overdue);
        });
    }
    for d in disclosures {
        let published = d.published.at.date_cst();
        if !within(published) {
            continue;
        }
        let late = d.disclosed_late(rules.calendar, policy);
        add(published, d.issuer(), Some(&d.published.author), &mut |a| {
            a.line.decisions_disclosed += 1;
            a.line.decisions_disclosed_late += u64::from(late);
        });
    }
    acc.into_iter()
        .map(|((p, region, department), mut a)| {
            a.line.period = p;
            a.line.region = region.to_string();
            a.line.department = department.map(|d| d.to_string());
            a.line.median_acknowledgement_hours = median(&mut a.ack_hours);
            a.line.median_execution_hours = median(&mut a.exec_hours);
            a.line.median_objection_days = median(&mut a.objection_days);
            a.line.median_repair_days = median(&mut a.repair_days);
            a.line
        })
        .collect()
}

/// Adds the checks a node answered to a report made by [`report`]: `counts` by day,
/// domain and asking department, all of the node's `region`; lines are created where
/// none exists and the result stays in the report's order.
pub fn add_checks(
    lines: Vec<ReportLine>,
    region: RegionCode,
    counts: &BTreeMap<(Date, String, String), u64>,
    period: Period,
) -> Vec<ReportLine> {
    let mut by_key: BTreeMap<(String, String, Option<String>), ReportLine> = lines
        .into_iter()
        .map(|l| {
            (
                (l.period.clone(), l.region.clone(), l.department.clone()),
                l,
            )
        })
        .collect();
    for ((day, domain, department), n) in counts {
        let p = period.label(*day);
        for d in [None, Some(department.clone())] {
            let l = by_key
                .entry((p.clone(), region.to_string(), d.clone()))
                .or_insert_with(|| ReportLine {
                    period: p.clone(),
                    region: region.to_string(),
                    department: d,
                    ..ReportLine::default()
                });
            l.checks += n;
            *l.checks_by_domain.entry(domain.clone()).or_default() += n;
        }
    }
    by_key.into_values().collect()
}

/// The columns of a report's CSV, in order.
pub const CSV_COLUMNS: [&str; 30] = [
    "period",
    "region",
    "department",
    "actions_asked",
    "acknowledged",
    "acknowledgements_overdue",
    "acknowledged_late",
    "declined",
    "mandatory_declined",
    "median_acknowledgement_hours",
    "measures_accepted",
    "measures_executed",
    "median_execution_hours",
    "entries_published",
    "disclosed_late",
    "objections_received",
    "objections_resolved",
    "objections_overdue",
    "median_objection_days",
    "repairs_received",
    "repairs_decided",
    "repairs_overdue",
    "median_repair_days",
    "commitments_made",
    "commitments_fulfilled",
    "commitments_breached",
    "commitments_overdue",
    "decisions_disclosed",
    "decisions_disclosed_late",
    "checks",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break; a
/// field a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, tab or
/// carriage return) gets a leading `'`, so that text from records cannot run as one
/// (OWASP, "CSV injection").
pub fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{f}")
    } else {
        f.to_owned()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

/// A report as CSV (RFC 4180: fields with commas, quotes or line breaks quoted), one
/// line per report line, the region's lines with an empty department.
pub fn to_csv(lines: &[ReportLine]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_default();
    for l in lines {
        let fields = [
            l.period.clone(),
            l.region.clone(),
            l.department.clone().unwrap_or_default(),
            l.actions_asked.to_string(),
            l.acknowledged.to_string(),
            l.acknowledgements_overdue.to_string(),
            l.acknowledged_late.to_string(),
            l.declined.to_string(),
            l.mandatory_declined.to_string(),
            opt(l.median_acknowledgement_hours),
            l.measures_accepted.to_string(),
            l.measures_executed.to_string(),
            opt(l.median_execution_hours),
            l.entries_published.to_string(),
            l.disclosed_late.to_string(),
            l.objections_received.to_string(),
            l.objections_resolved.to_string(),
            l.objections_overdue.to_string(),
            opt(l.median_objection_days),
            l.repairs_received.to_string(),
            l.repairs_decided.to_string(),
            l.repairs_overdue.to_string(),
            opt(l.median_repair_days),
            l.commitments_made.to_string(),
            l.commitments_fulfilled.to_string(),
            l.commitments_breached.to_string(),
            l.commitments_overdue.to_string(),
            l.decisions_disclosed.to_string(),
            l.decisions_disclosed_late.to_string(),
            l.checks.to_string(),
        ];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push_str("\r\n");
    }
    out
}

//! What a region has to do next: the tasks of a department's inbox (跟踪问效, article
//! 二十三; 异议处理, article 二十二).
//!
//! Two halves, both pure:
//!
//! * [`attention`] and [`TaskMark`]: when a record changes an action or an objection,
//!   the date from which each region concerned has something to do on it, or `None`
//!   when nothing is left. A node keeps these marks in an index ordered by region and
//!   date, so an inbox reads only the region's marks due by today — never the whole
//!   store, and never an executed measure whose entry is still in force (its mark is
//!   dated at the entry's expiry, when lifting becomes due).
//! * [`action_tasks`] and [`objection_task`]: at the moment an inbox is read, what
//!   exactly is to be done, by which role and by when (deadlines in working days from
//!   the federation's calendar).
//!
//! The deadlines (docs/policy.md, "Inbox"): acknowledging by the action's respond-by
//! date; reporting execution within the policy's acknowledgement working days of
//! accepting; lifting within the same number of working days of the day the entry
//! stopped being in force (revoked, repaired or expired); resolving an objection within
//! the policy's objection working days of its filing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;
use crate::catalogue::RepairPeriods;
use crate::ids::{PROVINCES, RegionCode, Role};
use crate::manifest::Policy;
use crate::record::{
    ActionId, CommitmentId, EntryId, MeasureCode, ObjectionId, ObjectionTarget,
    RepairApplicationId, Targets,
};
use crate::state::{ActionFold, CommitmentFold, EntryFold, EntryState, ObjectionStatus};
use crate::time::{Date, Timestamp};

/// What a task is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRef {
    /// A joint action the region is a target of.
    Action(ActionId),
    /// An objection to a record the region issued.
    Objection(ObjectionId),
    /// Credit-repair applications for an entry the region issued (one mark per entry).
    Repair(EntryId),
    /// A written commitment the region recorded and has not settled (article 四).
    Commitment(CommitmentId),
}

/// A region's attention mark on an action or objection: from `from` on it has something
/// to do; `None` removes the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskMark {
    /// The region that must act.
    pub region: RegionCode,
    /// On what.
    pub task: TaskRef,
    /// From when; `None`: nothing left to do.
    pub from: Option<Date>,
}

impl TaskMark {
    /// The move from a mark that held `was` to this one, or `None` if it did not move.
    pub fn moved_from(self, was: Option<Date>) -> Option<MarkMove> {
        (was != self.from).then_some(MarkMove {
            region: self.region,
            task: self.task,
            was,
            now: self.from,
        })
    }
}

/// The regions an action's targets name. "All members" is every province but the
/// initiator's, the same reading authorisation uses ([`ActionFold::targets_region`]):
/// the marks must not depend on the manifest version a node holds, and a region that is
/// not a member never reads an inbox.
pub fn target_regions(action: &ActionFold) -> Vec<RegionCode> {
    match &action.action.targets {
        Targets::Regions(r) => r.clone(),
        Targets::AllMembers => PROVINCES
            .iter()
            .filter_map(|p| RegionCode::new(p.code, "province").ok())
            .filter(|r| *r != action.initiated.pos.region)
            .collect(),
    }
}

/// The day an entry stopped being in force for good, if a record ended it (revocation,
/// or repair); its expiry date otherwise.
pub fn end_of_force(entry: &EntryFold) -> Date {
    let by_record = [
        entry.revoked.as_ref(),
        entry.repaired.as_ref().map(|(_, o)| o),
    ]
    .into_iter()
    .flatten()
    .map(|o| o.at.date_cst())
    .min();
    by_record.map_or(entry.content.expires_on, |d| {
        d.min(entry.content.expires_on)
    })
}

/// Whether a record ended the entry (revoked or repaired): no region need act on it
/// any more but to lift what it executed.
fn ended_by_record(entry: &EntryFold) -> bool {
    entry.revoked.is_some() || entry.repaired.is_some()
}

/// Measures `region` accepted and has not reported executing.
fn unreported(action: &ActionFold, region: RegionCode) -> Vec<MeasureCode> {
    action
        .accepted_measures(region)
        .into_iter()
        .filter(|m| !action.executions.contains_key(&(region, m.clone())))
        .collect()
}

/// Measures `region` executed and has not lifted.
fn unlifted(action: &ActionFold, region: RegionCode) -> Vec<MeasureCode> {
    action
        .executions
        .iter()
        .filter(|((r, _), e)| *r == region && e.lifted.is_none())
        .map(|((_, m), _)| m.clone())
        .collect()
}

/// From when `region` has something to do on `action` (resting on `entry`), or `None`.
///
/// * not answered, and no record ended the entry: from the initiation;
/// * accepted measures not reported executed, and no record ended the entry: from the
///   answer;
/// * measures executed and not lifted: from the day the entry stopped being in force
///   ([`end_of_force`]; its expiry while it is in force, so the mark waits until then).
///
/// The earliest applies: a region with several things to do sees the action once.
pub fn attention(action: &ActionFold, entry: &EntryFold, region: RegionCode) -> Option<Date> {
    let ended = ended_by_record(entry);
    let answer = action.responses.get(&region);
    let mut from: Vec<Date> = Vec::new();
    match answer {
        None if !ended => from.push(action.initiated.at.date_cst()),
        Some(r) if !ended && !unreported(action, region).is_empty() => {
            from.push(r.origin.at.date_cst())
        }
        _ => {}
    }
    if !unlifted(action, region).is_empty() {
        from.push(end_of_force(entry));
    }
    from.into_iter().min()
}

/// The marks of every target region of `action`.
pub fn action_marks(action: &ActionFold, entry: &EntryFold) -> Vec<TaskMark> {
    target_regions(action)
        .into_iter()
        .map(|region| TaskMark {
            region,
            task: TaskRef::Action(action.id),
            from: attention(action, entry, region),
        })
        .collect()
}

/// The mark an objection leaves on the region that must resolve it (the issuer of what
/// it objects to, 谁认定、谁核实).
pub fn objection_mark(id: ObjectionId, status: &ObjectionStatus, issuer: RegionCode) -> TaskMark {
    TaskMark {
        region: issuer,
        task: TaskRef::Objection(id),
        from: status.resolved.is_none().then_some(status.filed_on),
    }
}

/// The mark undecided repair applications leave on the entry's issuer (谁认定、谁修复):
/// from the earliest day one of them was filed.
pub fn repair_mark(entry: &EntryFold) -> TaskMark {
    TaskMark {
        region: entry.issuer(),
        task: TaskRef::Repair(entry.id),
        from: entry.open_repairs().map(|(_, r)| r.filed_on).min(),
    }
}

/// The mark an unsettled commitment leaves on its recording region, from the day it
/// was made: the accepting department follows it until the materials come or the
/// deadline passes.
pub fn commitment_mark(c: &CommitmentFold) -> TaskMark {
    TaskMark {
        region: c.issuer(),
        task: TaskRef::Commitment(c.id),
        from: c.settled.is_none().then_some(c.commitment.made_on),
    }
}

/// The task an unsettled commitment sets its recording region today: record the
/// materials as supplied, by the deadline; once the deadline has passed without them,
/// record the breach (article 四). `None` once settled.
pub fn commitment_task(c: &CommitmentFold, now: Timestamp) -> Option<Task> {
    if c.settled.is_some() {
        return None;
    }
    Some(Task {
        kind: TaskKind::SettleCommitment,
        role: Role::Publisher,
        about: TaskRef::Commitment(c.id),
        entry: None,
        since: c.commitment.made_on,
        due: c.commitment.due_on,
        due_estimated: false,
        overdue: now.date_cst() > c.commitment.due_on,
        measures: Vec::new(),
        application: None,
        entry_state: None,
    })
}

/// What is to be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Answer a joint action: accept, accept some, or decline with a reason (article 二十).
    Acknowledge,
    /// Report the execution of accepted measures (执行反馈, article 二十三).
    ReportExecution,
    /// Lift executed measures: the entry is revoked, repaired or expired (article 二十一).
    Lift,
    /// Verify and resolve an objection (article 二十二).
    ResolveObjection,
    /// Decide a subject's credit-repair application (articles 十八, 二十一).
    DecideRepair,
    /// Follow a written commitment: fulfilled by its deadline, or breached after it
    /// (article 四).
    SettleCommitment,
}

impl TaskKind {
    /// The role whose departments do it.
    pub fn role(self) -> Role {
        match self {
            TaskKind::Acknowledge | TaskKind::ReportExecution | TaskKind::Lift => Role::Implementer,
            TaskKind::ResolveObjection => Role::ObjectionHandler,
            TaskKind::DecideRepair | TaskKind::SettleCommitment => Role::Publisher,
        }
    }
}

/// One line of an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// What is to be done.
    pub kind: TaskKind,
    /// The role that does it.
    pub role: Role,
    /// On what.
    pub about: TaskRef,
    /// The list entry concerned (the action's, or the objected entry).
    pub entry: Option<EntryId>,
    /// The day the task arose.
    pub since: Date,
    /// The day it is due.
    pub due: Date,
    /// Whether `due` lies beyond the working-day calendar the node holds (counted as
    /// if every later weekday were a working day).
    pub due_estimated: bool,
    /// Past due.
    pub overdue: bool,
    /// The measures concerned (to report or lift; for an acknowledgement, those asked).
    pub measures: Vec<MeasureCode>,
    /// The repair application to decide, for [`TaskKind::DecideRepair`].
    pub application: Option<RepairApplicationId>,
    /// The entry's state today.
    pub entry_state: Option<EntryState>,
}

/// The tasks `region` has on `action` today.
pub fn action_tasks(
    action: &ActionFold,
    entry: &EntryFold,
    region: RegionCode,
    now: Timestamp,
    calendar: &WorkingCalendar,
    policy: &Policy,
) -> Vec<Task> {
    let today = now.date_cst();
    let state = entry.state_at(now);
    let in_force = !matches!(
        state,
        EntryState::Revoked | EntryState::Repaired | EntryState::Expired
    );
    let task = |kind, since: Date, due: Date, covered: bool, measures| Task {
        kind,
        role: TaskKind::role(kind),
        about: TaskRef::Action(action.id),
        entry: Some(entry.id),
        since,
        due,
        due_estimated: !covered,
        overdue: today > due,
        measures,
        application: None,
        entry_state: Some(state),
    };
    let mut out = Vec::new();
    let answer = action.responses.get(&region);
    if in_force {
        match answer {
            None => out.push(task(
                TaskKind::Acknowledge,
                action.initiated.at.date_cst(),
                action.action.respond_by,
                calendar.covers(action.action.respond_by),
                action.action.measures.clone(),
            )),
            Some(r) => {
                let missing = unreported(action, region);
                if !missing.is_empty() {
                    let since = r.origin.at.date_cst();
                    let due =
                        calendar.add_working_days(since, policy.acknowledge_working_days as u32);
                    out.push(task(
                        TaskKind::ReportExecution,
                        since,
                        due.date,
                        due.calendar_covered,
                        missing,
                    ));
                }
            }
        }
    }
    let executed = unlifted(action, region);
    if !in_force && !executed.is_empty() {
        let since = end_of_force(entry);
        let due = calendar.add_working_days(since, policy.acknowledge_working_days as u32);
        out.push(task(
            TaskKind::Lift,
            since,
            due.date,
            due.calendar_covered,
            executed,
        ));
    }
    out
}

/// The task an open objection sets its issuer today (`None` once resolved).
pub fn objection_task(
    id: ObjectionId,
    status: &ObjectionStatus,
    now: Timestamp,
    calendar: &WorkingCalendar,
    policy: &Policy,
) -> Option<Task> {
    if status.resolved.is_some() {
        return None;
    }
    let due = calendar.add_working_days(status.filed_on, policy.objection_working_days as u32);
    Some(Task {
        kind: TaskKind::ResolveObjection,
        role: Role::ObjectionHandler,
        about: TaskRef::Objection(id),
        entry: match status.target {
            ObjectionTarget::Entry(e) => Some(e),
            ObjectionTarget::Evaluation(_) => None,
        },
        since: status.filed_on,
        due: due.date,
        due_estimated: !due.calendar_covered,
        overdue: now.date_cst() > due.date,
        measures: Vec::new(),
        application: None,
        entry_state: None,
    })
}

/// The tasks undecided repair applications set the entry's issuer today, one per
/// application, due the catalogue's decision working days after it was filed. Without
/// repair periods in the catalogue (before version 4) no application can have been
/// admitted, and none is listed.
pub fn repair_tasks(
    entry: &EntryFold,
    now: Timestamp,
    calendar: &WorkingCalendar,
    repair: Option<&RepairPeriods>,
) -> Vec<Task> {
    let Some(repair) = repair else {
        return Vec::new();
    };
    let state = entry.state_at(now);
    entry
        .open_repairs()
        .map(|(id, r)| {
            let due = calendar.add_working_days(r.filed_on, repair.decision_working_days as u32);
            Task {
                kind: TaskKind::DecideRepair,
                role: Role::Publisher,
                about: TaskRef::Repair(entry.id),
                entry: Some(entry.id),
                since: r.filed_on,
                due: due.date,
                due_estimated: !due.calendar_covered,
                overdue: now.date_cst() > due.date,
                measures: Vec::new(),
                application: Some(*id),
                entry_state: Some(state),
            }
        })
        .collect()
}

/// Orders an inbox: earliest due first, then the oldest, then by kind and subject, so
/// that pages are stable.
pub fn sort_tasks(tasks: &mut [Task]) {
    tasks.sort_by_key(|a| (a.due, a.since, a.kind, a.about, a.application));
}

/// A mark a record moves: from the day it held (`was`, computed from the folds before
/// the record) to the day it holds now (`now`); `None` on either side is no mark. The
/// node removes the old key and writes the new one without reading either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MarkMove {
    /// The region that must act.
    pub region: RegionCode,
    /// On what.
    pub task: TaskRef,
    /// The day the mark held before the record.
    pub was: Option<Date>,
    /// The day it holds after.
    pub now: Option<Date>,
}

/// The moves that turn the marks `before` a record into those `after` it (marks absent
/// from `after` are removed); unchanged marks give none.
pub fn changed_marks(before: &[TaskMark], after: &[TaskMark]) -> Vec<MarkMove> {
    let was = |region: RegionCode, task: TaskRef| {
        before
            .iter()
            .find(|m| m.region == region && m.task == task)
            .and_then(|m| m.from)
    };
    let after_keys: BTreeSet<(RegionCode, TaskRef)> =
        after.iter().map(|m| (m.region, m.task)).collect();
    let mut out: Vec<MarkMove> = after
        .iter()
        .map(|m| MarkMove {
            region: m.region,
            task: m.task,
            was: was(m.region, m.task),
            now: m.from,
        })
        .filter(|m| m.was != m.now)
        .collect();
    out.extend(
        before
            .iter()
            .filter(|m| m.from.is_some() && !after_keys.contains(&(m.region, m.task)))
            .map(|m| MarkMove {
                region: m.region,
                task: m.task,
                was: m.from,
                now: None,
            }),
    );
    out
}

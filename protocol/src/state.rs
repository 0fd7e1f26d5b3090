//! Folds: the state of an entry or a joint action is a pure function of the records
//! that touch it (docs/design.md §5).
//!
//! A fold stores what it has seen keyed by record position, never by arrival order, so
//! folding the same records in any interleaving of regions gives the same value; the
//! state at a time `t` is then read off the fold by [`EntryFold::state_at`] and
//! [`ActionFold::view_at`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;
use crate::ids::{DepartmentId, RegionCode};
use crate::manifest::{Manifest, Policy};
use crate::record::*;
use crate::time::{Date, Timestamp};

/// Where a record sits: its region's log and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordPos {
    /// Region whose log holds it.
    pub region: RegionCode,
    /// Its sequence number there.
    pub seq: u64,
}

/// A record's position, author and node timestamp: what every fold step needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Position.
    pub pos: RecordPos,
    /// Node timestamp of the envelope.
    pub at: Timestamp,
    /// Authoring department.
    pub author: DepartmentId,
}

/// State of a list entry at an instant (docs/design.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Published but its effective period has not begun.
    Pending,
    /// In force: measures apply.
    Active,
    /// An objection from some region is open: measures are not applied (article 二十二).
    Suspended,
    /// The period is over: the subject left the list with no action (退出机制, article 十九).
    Expired,
    /// Credit repaired (article 二十一).
    Repaired,
    /// Revoked as wrong (article 二十二).
    Revoked,
}

/// An objection's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectionStatus {
    /// What is objected to.
    pub target: ObjectionTarget,
    /// Where it was recorded.
    pub filed: Origin,
    /// Case number at the recording department.
    pub case_no: String,
    /// Day filed.
    pub filed_on: Date,
    /// Resolution, once the issuer resolves it.
    pub resolved: Option<(ObjectionOutcome, Origin)>,
}

/// A credit-repair application's record (articles 十八, 二十一).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairApplicationStatus {
    /// Where it was recorded (any region's department).
    pub filed: Origin,
    /// Case number at the recording department.
    pub case_no: String,
    /// The basis the subject claims.
    pub basis: RepairBasis,
    /// Day the subject applied.
    pub filed_on: Date,
    /// The issuer's decision, once made.
    pub decided: Option<(RepairOutcome, Origin)>,
}

/// Everything known about a list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFold {
    /// Id.
    pub id: EntryId,
    /// Publication.
    pub published: Origin,
    /// Current content (after amendments).
    pub content: ListEntry,
    /// Number of amendments applied.
    pub amendments: u32,
    /// Revocation, if any (directly or by an objection resolved as revoked).
    pub revoked: Option<Origin>,
    /// Repair, if any.
    pub repaired: Option<(RepairBasis, Origin)>,
    /// Objections on this entry.
    pub objections: BTreeMap<ObjectionId, ObjectionStatus>,
    /// Credit-repair applications for this entry.
    pub repairs: BTreeMap<RepairApplicationId, RepairApplicationStatus>,
    /// Joint actions resting on this entry.
    pub actions: BTreeSet<ActionId>,
    /// Every record that touched the entry (the evidence a check returns).
    pub evidence: BTreeSet<RecordPos>,
}

impl EntryFold {
    /// A new fold from its publication.
    pub fn published(id: EntryId, origin: Origin, content: ListEntry) -> EntryFold {
        let mut evidence = BTreeSet::new();
        evidence.insert(origin.pos);
        EntryFold {
            id,
            published: origin,
            content,
            amendments: 0,
            revoked: None,
            repaired: None,
            objections: BTreeMap::new(),
            repairs: BTreeMap::new(),
            actions: BTreeSet::new(),
            evidence,
        }
    }

    /// The issuing region: the only one that may amend, revoke, repair or resolve
    /// (谁认定、谁修复).
    pub fn issuer(&self) -> RegionCode {
        self.published.pos.region
    }

    /// Applies a record that touches this entry. Records not about this entry are ignored.
    pub fn apply(&mut self, origin: &Origin, body: &Body) {
        let touched = match body {
            Body::ListEntryAmended { entry, amended, .. } if *entry == self.id => {
                self.content = amended.clone();
                self.amendments += 1;
                true
            }
            Body::ListEntryRevoked { entry, .. } if *entry == self.id => {
                self.revoked.get_or_insert(origin.clone());
                true
            }
            Body::ListEntryRepaired { entry, basis, .. } if *entry == self.id => {
                self.repaired.get_or_insert((*basis, origin.clone()));
                true
            }
            Body::ObjectionFiled {
                target: ObjectionTarget::Entry(entry),
                ..
            } if *entry == self.id => file_objection(&mut self.objections, origin, body),
            Body::ObjectionResolved { .. } => {
                resolve_objection(&mut self.objections, &mut self.revoked, origin, body)
            }
            Body::JointActionInitiated(a) if a.entry == self.id => {
                self.actions.insert(action_id(&origin.author, &a.reference));
                true
            }
            Body::RepairApplied {
                entry,
                case_no,
                basis,
                filed_on,
                ..
            } if *entry == self.id => {
                let id = repair_application_id(&origin.author, case_no);
                let decided = self.repairs.get(&id).and_then(|r| r.decided.clone());
                self.repairs.insert(
                    id,
                    RepairApplicationStatus {
                        filed: origin.clone(),
                        case_no: case_no.clone(),
                        basis: *basis,
                        filed_on: *filed_on,
                        decided,
                    },
                );
                true
            }
            Body::RepairDecided {
                entry,
                application,
                outcome,
                ..
            } if *entry == self.id => match self.repairs.get_mut(application) {
                Some(r) => {
                    r.decided.get_or_insert((*outcome, origin.clone()));
                    if *outcome == RepairOutcome::Repaired {
                        self.repaired.get_or_insert((r.basis, origin.clone()));
                    }
                    true
                }
                None => false,
            },
            _ => false,
        };
        if touched {
            self.evidence.insert(origin.pos);
        }
    }

    /// Repair applications not yet decided.
    pub fn open_repairs(
        &self,
    ) -> impl Iterator<Item = (&RepairApplicationId, &RepairApplicationStatus)> {
        self.repairs.iter().filter(|(_, r)| r.decided.is_none())
    }

    /// Objections not yet resolved.
    pub fn open_objections(&self) -> impl Iterator<Item = (&ObjectionId, &ObjectionStatus)> {
        self.objections.iter().filter(|(_, o)| o.resolved.is_none())
    }

    /// The entry's state at `now` (dates in China Standard Time).
    ///
    /// Precedence: revoked, repaired and expired are final and win over a pending
    /// objection; an open objection suspends an entry that would otherwise be in force
    /// or about to be.
    pub fn state_at(&self, now: Timestamp) -> EntryState {
        let today = now.date_cst();
        if self.revoked.is_some() {
            EntryState::Revoked
        } else if self.repaired.is_some() {
            EntryState::Repaired
        } else if today >= self.content.expires_on {
            EntryState::Expired
        } else if self.open_objections().next().is_some() {
            EntryState::Suspended
        } else if today < self.content.effective_from {
            EntryState::Pending
        } else {
            EntryState::Active
        }
    }

    /// Whether publication came later than the disclosure deadline (article 十七: within
    /// 7 working days of the decision).
    pub fn disclosed_late(&self, calendar: &WorkingCalendar, policy: &Policy) -> bool {
        let due = calendar.add_working_days(
            self.content.basis.decided_on,
            policy.disclosure_working_days as u32,
        );
        self.published.at.date_cst() > due.date
    }

    /// Open objections past their verification deadline (article 二十二, 二十三).
    pub fn overdue_objections(
        &self,
        now: Timestamp,
        calendar: &WorkingCalendar,
        policy: &Policy,
    ) -> Vec<ObjectionId> {
        let today = now.date_cst();
        self.open_objections()
            .filter(|(_, o)| {
                today
                    > calendar
                        .add_working_days(o.filed_on, policy.objection_working_days as u32)
                        .date
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Records an objection filed against the fold's subject. Returns true (it touched it).
fn file_objection(
    objections: &mut BTreeMap<ObjectionId, ObjectionStatus>,
    origin: &Origin,
    body: &Body,
) -> bool {
    let Body::ObjectionFiled {
        target,
        case_no,
        filed_on,
        ..
    } = body
    else {
        return false;
    };
    let oid = objection_id(&origin.author, case_no);
    let resolved = objections.get(&oid).and_then(|o| o.resolved.clone());
    objections.insert(
        oid,
        ObjectionStatus {
            target: *target,
            filed: origin.clone(),
            case_no: case_no.clone(),
            filed_on: *filed_on,
            resolved,
        },
    );
    true
}

/// Applies a resolution of one of the fold's objections; a `Revoked` outcome revokes.
fn resolve_objection(
    objections: &mut BTreeMap<ObjectionId, ObjectionStatus>,
    revoked: &mut Option<Origin>,
    origin: &Origin,
    body: &Body,
) -> bool {
    let Body::ObjectionResolved {
        objection, outcome, ..
    } = body
    else {
        return false;
    };
    match objections.get_mut(objection) {
        Some(o) => {
            o.resolved.get_or_insert((*outcome, origin.clone()));
            if *outcome == ObjectionOutcome::Revoked {
                revoked.get_or_insert(origin.clone());
            }
            true
        }
        None => false,
    }
}

/// A target region's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The decision.
    pub decision: AckDecision,
    /// Implementing departments.
    pub implementing: Vec<DepartmentId>,
    /// The acknowledgement record.
    pub origin: Origin,
}

/// Execution feedback for one measure in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// Implementing decision reference.
    pub reference: String,
    /// Day executed.
    pub executed_on: Date,
    /// The feedback record.
    pub origin: Origin,
    /// Lifting, if the measure was lifted later.
    pub lifted: Option<Origin>,
}

/// Everything known about a joint action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionFold {
    /// Id.
    pub id: ActionId,
    /// The initiation.
    pub initiated: Origin,
    /// What was asked.
    pub action: JointAction,
    /// The category of the entry it rests on, at initiation (decides which measures are
    /// mandatory for it).
    pub entry_category: Category,
    /// Latest answer per target region.
    pub responses: BTreeMap<RegionCode, Response>,
    /// Execution feedback per (region, measure). Serialised as a list of pairs: JSON maps
    /// need string keys.
    #[serde(with = "pairs")]
    pub executions: BTreeMap<(RegionCode, MeasureCode), Execution>,
    /// Every record that touched the action.
    pub evidence: BTreeSet<RecordPos>,
}

mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<
        'de,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    >(
        d: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Where a target region stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// No answer yet, deadline not passed.
    Awaiting,
    /// No answer and the respond-by date has passed (跟踪问效, article 二十三).
    Overdue,
    /// Accepted all measures.
    Accepted,
    /// Accepted some.
    Partly,
    /// Declined.
    Declined,
}

/// One target region's line in an action view (跟踪问效, article 二十三).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    /// Region.
    pub region: RegionCode,
    /// Status.
    pub status: TargetStatus,
    /// Whether the answer came after the respond-by date.
    pub answered_late: bool,
    /// Milliseconds from initiation to the answer.
    pub acknowledgement_ms: Option<i64>,
    /// The department that answered.
    pub answered_by: Option<DepartmentId>,
    /// The departments that will implement.
    pub implementing: Vec<DepartmentId>,
    /// Measures accepted.
    pub accepted: Vec<MeasureCode>,
    /// Measures declined.
    pub declined: Vec<MeasureCode>,
    /// Why they were declined, as the region said.
    pub decline_reason: Option<String>,
    /// Mandatory (强制性) measures declined: non-compliance (articles 二十, 二十三).
    pub non_compliant: Vec<MeasureCode>,
    /// Measures executed and not lifted.
    pub executed: Vec<MeasureCode>,
    /// Measures lifted.
    pub lifted: Vec<MeasureCode>,
}

impl ActionFold {
    /// A new fold from its initiation, resting on an entry of `entry_category`.
    pub fn initiated(
        id: ActionId,
        origin: Origin,
        action: JointAction,
        entry_category: Category,
    ) -> ActionFold {
        let mut evidence = BTreeSet::new();
        evidence.insert(origin.pos);
        ActionFold {
            id,
            initiated: origin,
            action,
            entry_category,
            responses: BTreeMap::new(),
            executions: BTreeMap::new(),
            evidence,
        }
    }

    /// Applies an acknowledgement or execution feedback for this action.
    pub fn apply(&mut self, origin: &Origin, body: &Body) {
        let region = origin.pos.region;
        let touched = match body {
            Body::JointActionAcknowledged {
                action,
                decision,
                implementing,
            } if *action == self.id => {
                // A region may revise its answer; its log orders the revisions.
                let newer = self
                    .responses
                    .get(&region)
                    .is_none_or(|r| r.origin.pos.seq < origin.pos.seq);
                if newer {
                    self.responses.insert(
                        region,
                        Response {
                            decision: decision.clone(),
                            implementing: implementing.clone(),
                            origin: origin.clone(),
                        },
                    );
                }
                true
            }
            Body::MeasureExecuted {
                action,
                measure,
                reference,
                executed_on,
            } if *action == self.id => {
                self.executions
                    .entry((region, measure.clone()))
                    .or_insert_with(|| Execution {
                        reference: reference.clone(),
                        executed_on: *executed_on,
                        origin: origin.clone(),
                        lifted: None,
                    });
                true
            }
            Body::MeasureLifted {
                action, measure, ..
            } if *action == self.id => {
                if let Some(e) = self.executions.get_mut(&(region, measure.clone())) {
                    e.lifted.get_or_insert(origin.clone());
                }
                true
            }
            _ => false,
        };
        if touched {
            self.evidence.insert(origin.pos);
        }
    }

    /// The regions asked to act, resolving "all members" against a manifest.
    pub fn target_regions(&self, manifest: &Manifest) -> Vec<RegionCode> {
        match &self.action.targets {
            Targets::Regions(r) => r.clone(),
            Targets::AllMembers => manifest
                .members
                .iter()
                .map(|m| m.region)
                .filter(|r| *r != self.initiated.pos.region)
                .collect(),
        }
    }

    /// Whether `region` is a target (used by authorisation, which cannot depend on the
    /// manifest version a node happens to hold: "all members" admits any region other
    /// than the initiator's).
    pub fn targets_region(&self, region: RegionCode) -> bool {
        match &self.action.targets {
            Targets::Regions(r) => r.binary_search(&region).is_ok(),
            Targets::AllMembers => region != self.initiated.pos.region,
        }
    }

    /// The measures a region accepted, given its answer.
    pub fn accepted_measures(&self, region: RegionCode) -> Vec<MeasureCode> {
        match self.responses.get(&region).map(|r| &r.decision) {
            Some(AckDecision::Accepted) => self.action.measures.clone(),
            Some(AckDecision::Partly { accepted, .. }) => accepted.clone(),
            _ => Vec::new(),
        }
    }

    /// Per-target view at `now`; `catalogue` says which measures are mandatory.
    pub fn view_at(
        &self,
        now: Timestamp,
        manifest: &Manifest,
        catalogue: &crate::catalogue::Catalogue,
    ) -> Vec<TargetView> {
        let today = now.date_cst();
        self.target_regions(manifest)
            .into_iter()
            .map(|region| {
                let resp = self.responses.get(&region);
                let accepted = if resp.is_some() {
                    self.accepted_measures(region)
                } else {
                    Vec::new()
                };
                let declined: Vec<MeasureCode> = if resp.is_some() {
                    self.action
                        .measures
                        .iter()
                        .filter(|m| !accepted.contains(m))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                let non_compliant = declined
                    .iter()
                    .filter(|m| {
                        catalogue
                            .get(m)
                            .is_some_and(|c| c.is_mandatory_for(self.entry_category))
                    })
                    .cloned()
                    .collect();
                let decline_reason = resp.and_then(|r| match &r.decision {
                    AckDecision::Accepted => None,
                    AckDecision::Declined { reason } | AckDecision::Partly { reason, .. } => {
                        Some(reason.clone())
                    }
                });
                let status = match resp.map(|r| &r.decision) {
                    Some(AckDecision::Accepted) => TargetStatus::Accepted,
                    Some(AckDecision::Partly { .. }) => TargetStatus::Partly,
                    Some(AckDecision::Declined { .. }) => TargetStatus::Declined,
                    None if today > self.action.respond_by => TargetStatus::Overdue,
                    None => TargetStatus::Awaiting,
                };
                let mut executed = Vec::new();
                let mut lifted = Vec::new();
                for ((r, m), e) in &self.executions {
                    if *r == region {
                        if e.lifted.is_some() {
                            lifted.push(m.clone())
                        } else {
                            executed.push(m.clone())
                        }
                    }
                }
                TargetView {
                    region,
                    status,
                    answered_late: resp
                        .is_some_and(|r| r.origin.at.date_cst() > self.action.respond_by),
                    acknowledgement_ms: resp
                        .map(|r| r.origin.at.0.saturating_sub(self.initiated.at.0)),
                    answered_by: resp.map(|r| r.origin.author.clone()),
                    implementing: resp.map(|r| r.implementing.clone()).unwrap_or_default(),
                    accepted,
                    declined,
                    decline_reason,
                    non_compliant,
                    executed,
                    lifted,
                }
            })
            .collect()
    }
}

/// State of an evaluation result at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationState {
    /// Not yet determined (evaluated in the future).
    Pending,
    /// In force: its class's measures apply.
    Valid,
    /// An objection is open: shown, not applied (article 二十二).
    Suspended,
    /// Past its validity.
    Expired,
    /// Withdrawn by its issuer, or by an objection resolved as revoked.
    Revoked,
}

/// Everything known about an evaluation result (articles 六, 十六).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationFold {
    /// Id.
    pub id: EvaluationId,
    /// Publication.
    pub published: Origin,
    /// The result.
    pub evaluation: Evaluation,
    /// Revocation, if any.
    pub revoked: Option<Origin>,
    /// Objections on this result.
    pub objections: BTreeMap<ObjectionId, ObjectionStatus>,
    /// Every record that touched it.
    pub evidence: BTreeSet<RecordPos>,
}

impl EvaluationFold {
    /// A new fold from its publication.
    pub fn published(id: EvaluationId, origin: Origin, evaluation: Evaluation) -> EvaluationFold {
        let mut evidence = BTreeSet::new();
        evidence.insert(origin.pos);
        EvaluationFold {
            id,
            published: origin,
            evaluation,
            revoked: None,
            objections: BTreeMap::new(),
            evidence,
        }
    }

    /// The issuing region: the only one that may revoke it or resolve its objections.
    pub fn issuer(&self) -> RegionCode {
        self.published.pos.region
    }

    /// Applies a record that touches this result.
    pub fn apply(&mut self, origin: &Origin, body: &Body) {
        let touched = match body {
            Body::EvaluationRevoked { evaluation, .. } if *evaluation == self.id => {
                self.revoked.get_or_insert(origin.clone());
                true
            }
            Body::ObjectionFiled {
                target: ObjectionTarget::Evaluation(e),
                ..
            } if *e == self.id => file_objection(&mut self.objections, origin, body),
            Body::ObjectionResolved { .. } => {
                resolve_objection(&mut self.objections, &mut self.revoked, origin, body)
            }
            _ => false,
        };
        if touched {
            self.evidence.insert(origin.pos);
        }
    }

    /// The result's state at `now`.
    pub fn state_at(&self, now: Timestamp) -> EvaluationState {
        let today = now.date_cst();
        if self.revoked.is_some() {
            EvaluationState::Revoked
        } else if today >= self.evaluation.valid_until {
            EvaluationState::Expired
        } else if self.objections.values().any(|o| o.resolved.is_none()) {
            EvaluationState::Suspended
        } else if today < self.evaluation.evaluated_on {
            EvaluationState::Pending
        } else {
            EvaluationState::Valid
        }
    }

    /// Valid on the date of `now`.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.state_at(now) == EvaluationState::Valid
    }

    /// Whether `other` replaces this one: the same department's later result in the same
    /// scheme for the same subject (分级分类: the current class is the latest).
    pub fn superseded_by(&self, other: &EvaluationFold) -> bool {
        other.id != self.id
            && other.published.author == self.published.author
            && other.evaluation.scheme == self.evaluation.scheme
            && other.evaluation.subject.key() == self.evaluation.subject.key()
            && (other.evaluation.evaluated_on, other.published.pos)
                > (self.evaluation.evaluated_on, self.published.pos)
    }
}

/// State of a written commitment at a day (article 四).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitmentState {
    /// Within its term, not settled.
    Open,
    /// Past its deadline and not settled: the recording department owes a finding.
    Overdue,
    /// The materials were supplied by the deadline.
    Fulfilled,
    /// Breached (违背承诺): shown in every region's checks.
    Breached,
}

/// How a commitment was settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentSettlement {
    /// The settling record.
    pub origin: Origin,
    /// Fulfilled or breached.
    pub outcome: CommitmentOutcome,
    /// Day it was supplied or the breach found.
    pub settled_on: Date,
}

/// Everything known about a written commitment (article 四).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentFold {
    /// Id.
    pub id: CommitmentId,
    /// The record that made it.
    pub made: Origin,
    /// The commitment.
    pub commitment: Commitment,
    /// Its settlement, once recorded.
    pub settled: Option<CommitmentSettlement>,
    /// Every record that touched it.
    pub evidence: BTreeSet<RecordPos>,
}

impl CommitmentFold {
    /// A new fold from the record that made it.
    pub fn made(id: CommitmentId, origin: Origin, commitment: Commitment) -> CommitmentFold {
        let mut evidence = BTreeSet::new();
        evidence.insert(origin.pos);
        CommitmentFold {
            id,
            made: origin,
            commitment,
            settled: None,
            evidence,
        }
    }

    /// The recording region: the only one that settles it.
    pub fn issuer(&self) -> RegionCode {
        self.made.pos.region
    }

    /// Applies a record that touches this commitment (the first settlement counts;
    /// admission refuses a second).
    pub fn apply(&mut self, origin: &Origin, body: &Body) {
        if let Body::CommitmentSettled {
            commitment,
            outcome,
            settled_on,
            ..
        } = body
            && *commitment == self.id
            && origin.pos.region == self.issuer()
        {
            if self.settled.is_none() {
                self.settled = Some(CommitmentSettlement {
                    origin: origin.clone(),
                    outcome: *outcome,
                    settled_on: *settled_on,
                });
            }
            self.evidence.insert(origin.pos);
        }
    }

    /// Its state on `today`.
    pub fn state_on(&self, today: Date) -> CommitmentState {
        match &self.settled {
            Some(s) if s.outcome == CommitmentOutcome::Fulfilled => CommitmentState::Fulfilled,
            Some(_) => CommitmentState::Breached,
            None if today > self.commitment.due_on => CommitmentState::Overdue,
            None => CommitmentState::Open,
        }
    }
}

/// A disclosed licensing or penalty decision (双公示, article 十七).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureFold {
    /// Id.
    pub id: DisclosureId,
    /// The disclosing record.
    pub published: Origin,
    /// The decision.
    pub disclosure: Disclosure,
}

impl DisclosureFold {
    /// The disclosing region.
    pub fn issuer(&self) -> RegionCode {
        self.published.pos.region
    }

    /// Whether it was disclosed later than `disclosure_working_days` working days after
    /// the decision (article 十七: 7个工作日内).
    pub fn disclosed_late(&self, calendar: &WorkingCalendar, policy: &Policy) -> bool {
        let due = calendar.add_working_days(
            self.disclosure.decided_on,
            policy.disclosure_working_days as u32,
        );
        self.published.at.date_cst() > due.date
    }

    /// Still within its disclosure period on `today`.
    pub fn public_on(&self, today: Date) -> bool {
        today <= self.disclosure.public_until
    }
}

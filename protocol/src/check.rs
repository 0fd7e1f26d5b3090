//! The check (应查必查, article 十八): what applies to a subject in a domain, with the
//! signed evidence to verify the answer offline.
//!
//! Which measure applies to whom is decided once, by [`decide`], from folds: the check
//! runs it on the node's replica and [`verify_answer`] runs it again on the folds
//! rebuilt from the answer's evidence, so an answer verifies only if the evidence yields
//! exactly the measures it claims.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalogue::{Bearer, Catalogue, Measure, MeasureDomain, SubjectKind};
use crate::crypto::PublicKey;
use crate::envelope::{VerifiedEnvelope, decode_envelope};
use crate::ids::{DepartmentId, RegionCode};
use crate::ledger::{Reads, Rules, StateView, SubjectRef, grade_text, required_role};
use crate::limits::MAX_EVIDENCE_ENVELOPES;
use crate::manifest::Manifest;
use crate::record::*;
use crate::state::*;
use crate::time::{Date, Timestamp};

/// The overall answer, for a workflow that needs one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No entry or evaluation applies and none is suspended.
    Clear,
    /// At least one measure applies in the domain.
    MeasuresApply,
    /// Entries or evaluations exist but are suspended or apply no measure in this domain.
    NothingApplies,
}

/// What makes a measure apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureSource {
    /// A list entry (its requested measures and those of joint actions on it).
    Entry(EntryId),
    /// The current class of an evaluation (分级分类监管).
    Evaluation(EvaluationId),
}

/// A measure that applies, the record it comes from and on which of the subject's
/// roles it falls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMeasure {
    /// Code.
    pub code: MeasureCode,
    /// Title.
    pub title_zh: String,
    /// Incentive or punishment.
    pub kind: ActionKind,
    /// The record that makes it apply.
    pub source: MeasureSource,
    /// That record's region.
    pub region: RegionCode,
    /// How the asked subject is named there: as the subject, or as a related person in
    /// a role (article 十四).
    pub roles: Vec<Bearer>,
    /// Where the measure comes from (guidance article, statute).
    pub basis: String,
}

/// A measure that would apply but is withheld, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldMeasure {
    /// The measure.
    pub measure: AppliedMeasure,
    /// Why it does not apply now.
    pub reason: String,
}

/// An entry in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedEntry {
    /// Id.
    pub entry: EntryId,
    /// Issuing region.
    pub region: RegionCode,
    /// Category (and so list).
    pub category: Category,
    /// State at `as_of`: active or suspended.
    pub state: EntryState,
    /// How the asked subject is named in the entry now.
    pub roles: Vec<Bearer>,
    /// The entry's subject name as it reads now.
    pub subject_name: String,
    /// Decision document number.
    pub document_no: String,
    /// Effective period.
    pub effective_from: Date,
    /// End of period.
    pub expires_on: Date,
    /// Measures of the entry that fall on the asked subject in the asked domain: applied
    /// if active, withheld if suspended.
    pub measures_in_domain: Vec<MeasureCode>,
}

/// An evaluation in the answer: the current result of its department in its scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedEvaluation {
    /// Id.
    pub id: EvaluationId,
    /// Region.
    pub region: RegionCode,
    /// Evaluating department.
    pub author: DepartmentId,
    /// The result.
    pub evaluation: Evaluation,
    /// State at `as_of`: valid or suspended.
    pub state: EvaluationState,
    /// What the class means, from the scheme.
    pub class_meaning: String,
    /// The class's measures in the asked domain: applied if valid, withheld if suspended.
    pub measures_in_domain: Vec<MeasureCode>,
}

/// A commitment in the answer (article 四): one breached within the last
/// [`BREACH_SHOWN_DAYS`], or one past its deadline (by at most as long) that its region
/// has not settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedCommitment {
    /// Id.
    pub id: CommitmentId,
    /// Recording region.
    pub region: RegionCode,
    /// Recording (accepting) department.
    pub author: DepartmentId,
    /// Acceptance number of the application.
    pub acceptance_no: String,
    /// What was applied for.
    pub matter: String,
    /// The deadline.
    pub due_on: Date,
    /// Breached, or overdue (not settled after its deadline).
    pub state: CommitmentState,
    /// Day the breach was found (breached only).
    pub settled_on: Option<Date>,
}

/// How long a breach stays in checks and withholds [`COMMITMENT_MEASURE`], in days from
/// the day it was found. A breached commitment is ordinary dishonesty (一般失信), whose
/// longest disclosure is one year under the national credit-repair rules
/// (国家发展改革委令2023年第58号); the federation takes that figure (docs/decisions.md).
pub const BREACH_SHOWN_DAYS: i32 = 365;

/// The measure that rests on a written commitment: 容缺受理 (article 四). A subject that
/// breached a commitment is not offered another while the breach is shown.
pub const COMMITMENT_MEASURE: &str = "I-LICENSING-INCOMPLETE";

/// How current a region's data is in the answering replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionFreshness {
    /// Region.
    pub region: RegionCode,
    /// Last sequence number held (0 = nothing yet).
    pub head_seq: u64,
    /// Node timestamp of that envelope.
    pub head_time: Option<Timestamp>,
    /// Flagged for equivocation.
    pub equivocated: bool,
}

/// One evidence envelope, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Position.
    pub pos: RecordPos,
    /// Envelope bytes (hex in JSON).
    #[serde(with = "crate::codec::hex_bytes")]
    pub envelope: Vec<u8>,
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// Federation.
    pub federation_id: String,
    /// Subject asked about.
    pub subject: SubjectKey,
    /// Domain asked about.
    pub domain: MeasureDomain,
    /// Instant the states were computed for.
    pub as_of: Timestamp,
    /// One word.
    pub verdict: Verdict,
    /// Active and suspended entries from every region that name the subject.
    pub entries: Vec<CheckedEntry>,
    /// Current, valid or suspended evaluations of the subject.
    pub evaluations: Vec<CheckedEvaluation>,
    /// Mandatory measures that apply (强制性).
    pub mandatory: Vec<AppliedMeasure>,
    /// Recommended measures that apply (推荐性).
    pub recommended: Vec<AppliedMeasure>,
    /// Measures that would apply but are withheld, with the reason.
    pub withheld: Vec<WithheldMeasure>,
    /// Every member's freshness.
    pub freshness: Vec<RegionFreshness>,
    /// Signed envelopes backing every claim, including the authors' registrations.
    pub evidence: Vec<Evidence>,
    /// True if evidence was cut at the limit.
    pub truncated: bool,
    /// Commitments breached or overdue (article 四). Absent in answers saved before
    /// commitments were records: those had none.
    #[serde(default)]
    pub commitments: Vec<CheckedCommitment>,
}

/// What [`decide`] concludes about one subject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Entries that name the subject and are active or suspended.
    pub entries: Vec<CheckedEntry>,
    /// Current evaluations, valid or suspended.
    pub evaluations: Vec<CheckedEvaluation>,
    /// Mandatory measures that apply.
    pub mandatory: Vec<AppliedMeasure>,
    /// Recommended measures that apply.
    pub recommended: Vec<AppliedMeasure>,
    /// Measures withheld, with why.
    pub withheld: Vec<WithheldMeasure>,
    /// Commitments breached or overdue.
    pub commitments: Vec<CheckedCommitment>,
}

/// The measures of an entry (requested, plus those of joint actions resting on it) that
/// bite in `domain` and fall on one of `roles`, each with whether it is mandatory for
/// the entry's category. A measure that does not serve the entry (list, category,
/// findings) never applies, whoever named it.
pub fn entry_measures<'c>(
    entry: &EntryFold,
    actions: &[ActionFold],
    catalogue: &'c Catalogue,
    domain: MeasureDomain,
    roles: &[Bearer],
) -> Vec<(&'c Measure, bool, Vec<Bearer>)> {
    let mut codes: BTreeSet<&MeasureCode> = entry.content.requested_measures.iter().collect();
    for a in actions.iter().filter(|a| a.action.entry == entry.id) {
        codes.extend(a.action.measures.iter());
    }
    codes
        .into_iter()
        .filter_map(|c| catalogue.get(c))
        .filter(|m| m.domains.contains(&domain) && m.serves(&entry.content).is_ok())
        .filter_map(|m| {
            let on: Vec<Bearer> = roles.iter().copied().filter(|r| m.falls_on(*r)).collect();
            (!on.is_empty()).then(|| (m, m.is_mandatory_for(entry.content.category), on))
        })
        .collect()
}

fn subject_name(s: &Subject) -> String {
    match s {
        Subject::Organisation { name, .. } => name.clone(),
        Subject::Person(p) => format!("{} ({})", p.name, p.masked),
    }
}

/// The roles of an organisation's related persons whose personal credit record article
/// 十四 says the organisation's serious dishonesty goes into (法定代表人、主要负责人和其他
/// 负有直接责任人员): incentives are withheld from them as from the organisation. Actual
/// controllers and directors, supervisors or senior managers are not named there; the
/// measures that fall on them rest on other instruments (docs/policy.md).
pub const ARTICLE_14_ROLES: [RelatedRole; 3] = [
    RelatedRole::LegalRepresentative,
    RelatedRole::PrincipalResponsible,
    RelatedRole::DirectlyResponsible,
];

/// Decides what applies to the subject `key` from the folds about it: entries (with the
/// joint actions resting on them) and evaluations. Pure: the check and the offline
/// verifier both run it.
///
/// Rules, each from its source:
/// - an entry applies only while active, and only the measures that serve its category
///   and findings and fall on the subject's role in it (articles 十, 十一, 十四, 二十);
///   a suspended entry's measures are withheld (article 二十二);
/// - an entry that no longer names the subject (corrected, article 二十二) is not
///   about it, whatever an index says;
/// - an evaluation applies its class's measures while valid and current (the same
///   department's latest result in the scheme; articles 六, 十六);
/// - an active black-list entry about the subject withholds every incentive from it
///   (articles 三, 四: incentives are for subjects without serious dishonesty), and so
///   does one naming it as a related person in a role article 十四 names
///   ([`ARTICLE_14_ROLES`]);
/// - a commitment the subject breached is shown for [`BREACH_SHOWN_DAYS`] and withholds
///   容缺受理 ([`COMMITMENT_MEASURE`]) meanwhile; one past its deadline and not settled is
///   shown as overdue (article 四).
pub fn decide(
    key: &SubjectKey,
    entries: &[(EntryFold, Vec<ActionFold>)],
    evaluations: &[EvaluationFold],
    commitments: &[CommitmentFold],
    catalogue: &Catalogue,
    domain: MeasureDomain,
    now: Timestamp,
) -> Decision {
    let mut d = Decision::default();
    let today = now.date_cst();
    for c in commitments
        .iter()
        .filter(|c| &c.commitment.subject.key() == key)
    {
        let state = c.state_on(today);
        let settled_on = c.settled.as_ref().map(|s| s.settled_on);
        // Shown for a year from the deadline missed (overdue) or the breach found: a
        // commitment its region never settled does not mark the subject for ever.
        let shown = match state {
            CommitmentState::Overdue => {
                today.days_since_epoch() - c.commitment.due_on.days_since_epoch()
                    <= BREACH_SHOWN_DAYS
            }
            CommitmentState::Breached => settled_on.is_some_and(|on| {
                today.days_since_epoch() - on.days_since_epoch() < BREACH_SHOWN_DAYS
            }),
            CommitmentState::Open | CommitmentState::Fulfilled => false,
        };
        if shown {
            d.commitments.push(CheckedCommitment {
                id: c.id,
                region: c.issuer(),
                author: c.made.author.clone(),
                acceptance_no: c.commitment.acceptance_no.clone(),
                matter: c.commitment.matter.clone(),
                due_on: c.commitment.due_on,
                state,
                settled_on,
            });
        }
    }
    d.commitments.sort_by_key(|c| (c.region, c.id));
    // The breach that withholds 容缺受理: the latest found, so every node names the same.
    let breach = d
        .commitments
        .iter()
        .filter(|c| c.state == CommitmentState::Breached)
        .max_by_key(|c| (c.settled_on, c.region, c.id))
        .cloned();
    let mut applicable: Vec<(AppliedMeasure, bool, Option<String>)> = Vec::new();
    // The active black-list entry that withholds incentives (the least by id and region,
    // so that every node names the same one), and the related role it names the subject
    // in, if not as its subject.
    let mut blacklisted_by: Option<(EntryId, RegionCode, Option<RelatedRole>)> = None;
    for (e, actions) in entries {
        let roles = e.content.roles_of(key);
        if roles.is_empty() {
            continue;
        }
        let state = e.state_at(now);
        if !matches!(state, EntryState::Active | EntryState::Suspended) {
            continue;
        }
        // Article 十四: an organisation's serious dishonesty is recorded in the personal
        // credit record of its 法定代表人, 主要负责人 and other directly responsible
        // persons too, so they are not trustworthy subjects for incentives either.
        let named_as = if roles.iter().any(|r| matches!(r, Bearer::Subject(_))) {
            Some(None)
        } else {
            roles.iter().find_map(|r| match r {
                Bearer::Related(role) if ARTICLE_14_ROLES.contains(role) => Some(Some(*role)),
                _ => None,
            })
        };
        if state == EntryState::Active
            && e.content.category.list() == ListKind::Black
            && let Some(role) = named_as
            && blacklisted_by.is_none_or(|(id, r, _)| (e.id, e.issuer()) < (id, r))
        {
            blacklisted_by = Some((e.id, e.issuer(), role));
        }
        let measures = entry_measures(e, actions, catalogue, domain, &roles);
        for (m, mandatory, on) in &measures {
            let applied = AppliedMeasure {
                code: m.code.clone(),
                title_zh: m.title_zh.clone(),
                kind: m.kind,
                source: MeasureSource::Entry(e.id),
                region: e.issuer(),
                roles: on.clone(),
                basis: m.cites(),
            };
            let withheld = (state == EntryState::Suspended).then(|| {
                "the entry is suspended while an objection is verified (措施在核实期间暂不执行, article 二十二)".to_string()
            });
            applicable.push((applied, *mandatory, withheld));
        }
        d.entries.push(CheckedEntry {
            entry: e.id,
            region: e.issuer(),
            category: e.content.category,
            state,
            roles,
            subject_name: subject_name(&e.content.subject),
            document_no: e.content.basis.document_no.clone(),
            effective_from: e.content.effective_from,
            expires_on: e.content.expires_on,
            measures_in_domain: measures.iter().map(|(m, _, _)| m.code.clone()).collect(),
        });
    }
    let about: Vec<&EvaluationFold> = evaluations
        .iter()
        .filter(|ev| &ev.evaluation.subject.key() == key)
        .collect();
    for ev in &about {
        // A revoked result supersedes nothing: the one before it is current again.
        if about
            .iter()
            .any(|other| other.revoked.is_none() && ev.superseded_by(other))
        {
            continue;
        }
        let state = ev.state_at(now);
        if !matches!(state, EvaluationState::Valid | EvaluationState::Suspended) {
            continue;
        }
        let Some(scheme) = catalogue.scheme(&ev.evaluation.scheme) else {
            continue;
        };
        let class_text = match ev.evaluation.grade {
            Grade::Class(c) => grade_text(c),
            Grade::Score(_) => String::new(),
        };
        let Some(class) = scheme.class(&class_text) else {
            continue;
        };
        let bearer = Bearer::Subject(SubjectKind::of(&ev.evaluation.subject));
        let measures: Vec<&Measure> = class
            .measures
            .iter()
            .filter_map(|c| catalogue.get(c))
            .filter(|m| m.domains.contains(&domain) && m.falls_on(bearer))
            .collect();
        for m in &measures {
            let applied = AppliedMeasure {
                code: m.code.clone(),
                title_zh: m.title_zh.clone(),
                kind: m.kind,
                source: MeasureSource::Evaluation(ev.id),
                region: ev.issuer(),
                roles: vec![bearer],
                basis: format!("{}; scheme {} class {}", m.cites(), scheme.id, class.class),
            };
            let withheld = (state == EvaluationState::Suspended).then(|| {
                "the evaluation is suspended while an objection is verified (article 二十二)"
                    .to_string()
            });
            applicable.push((
                applied,
                m.mandatory && m.mandatory_only_for.is_empty(),
                withheld,
            ));
        }
        d.evaluations.push(CheckedEvaluation {
            id: ev.id,
            region: ev.issuer(),
            author: ev.published.author.clone(),
            evaluation: ev.evaluation.clone(),
            state,
            class_meaning: class.meaning_zh.clone(),
            measures_in_domain: measures.iter().map(|m| m.code.clone()).collect(),
        });
    }
    for (applied, mandatory, withheld) in applicable {
        let withheld = withheld.or_else(|| {
            let b = breach.as_ref()?;
            (applied.code.0 == COMMITMENT_MEASURE).then(|| {
                format!(
                    "{} found on {} that this subject breached its written commitment {} for {} (due {}): acceptance on a commitment is not offered again for {BREACH_SHOWN_DAYS} days (article 四: 书面承诺在规定期限内提供)",
                    b.region,
                    b.settled_on.map(|d| d.to_string()).unwrap_or_default(),
                    b.acceptance_no,
                    b.matter,
                    b.due_on
                )
            })
        });
        let withheld = withheld.or_else(|| {
            let (entry, region, role) = blacklisted_by?;
            (applied.kind == ActionKind::Incentive).then(|| match role {
                None => format!(
                    "an active black-list entry of {region} ({entry}) names this subject: incentives are withheld while it is in force (articles 三, 四: incentives are for subjects without serious dishonesty)"
                ),
                Some(role) => format!(
                    "an active black-list entry of {region} ({entry}) names this person as {} of a seriously untrustworthy organisation: incentives are withheld while it is in force (article 十四: the organisation's serious dishonesty is recorded in the personal credit record of its 法定代表人, 主要负责人 and other directly responsible persons)",
                    role.name_zh()
                ),
            })
        });
        match withheld {
            Some(reason) => d.withheld.push(WithheldMeasure {
                measure: applied,
                reason,
            }),
            None if mandatory => d.mandatory.push(applied),
            None => d.recommended.push(applied),
        }
    }
    d
}

/// Answers a check from the local replica. A failed read of `view` gives its error,
/// never an answer that might leave out an entry.
pub fn check<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &V,
    subject: &SubjectKey,
    domain: MeasureDomain,
    now: Timestamp,
) -> Result<CheckAnswer, V::Error> {
    check_including(rules, view, subject, domain, now, BTreeSet::new())
}

/// [`check`], with the envelopes at `extra` (and their authors' registrations) added to
/// the evidence: a proven answer carries every record its map proofs list.
pub fn check_including<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &V,
    subject: &SubjectKey,
    domain: MeasureDomain,
    now: Timestamp,
    extra: BTreeSet<RecordPos>,
) -> Result<CheckAnswer, V::Error> {
    let reads = Reads::new(view);
    let answer = check_reading(rules, &reads, subject, domain, now, extra);
    reads.finish(answer)
}

fn check_reading<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &Reads<'_, V>,
    subject: &SubjectKey,
    domain: MeasureDomain,
    now: Timestamp,
    extra: BTreeSet<RecordPos>,
) -> CheckAnswer {
    let mut entries = Vec::new();
    let mut evaluations = Vec::new();
    let mut commitments = Vec::new();
    for r in view.subject_refs(subject) {
        match r {
            SubjectRef::Entry(id) => {
                if let Some(e) = view.entry_keeping_envelope(&id) {
                    let actions: Vec<ActionFold> =
                        e.actions.iter().filter_map(|a| view.action(a)).collect();
                    entries.push((e, actions));
                }
            }
            SubjectRef::Evaluation(id) => {
                if let Some(ev) = view.evaluation(&id) {
                    evaluations.push(ev);
                }
            }
            SubjectRef::Commitment(id) => {
                if let Some(c) = view.commitment(&id) {
                    commitments.push(c);
                }
            }
            // A disclosed licence or penalty is information for the public (article 十七),
            // not a list decision: it changes no measure.
            SubjectRef::Disclosure(_) => {}
        }
    }
    let decision = decide(
        subject,
        &entries,
        &evaluations,
        &commitments,
        rules.catalogue,
        domain,
        now,
    );
    let mut positions: BTreeSet<RecordPos> = extra;
    for (e, actions) in &entries {
        if decision.entries.iter().any(|c| c.entry == e.id) {
            positions.extend(e.evidence.iter().copied());
            positions.extend(actions.iter().map(|a| a.initiated.pos));
        }
    }
    for ev in &evaluations {
        if decision.evaluations.iter().any(|c| c.id == ev.id) {
            positions.extend(ev.evidence.iter().copied());
        }
    }
    for c in &commitments {
        if decision.commitments.iter().any(|s| s.id == c.id) {
            positions.extend(c.evidence.iter().copied());
        }
    }
    let (evidence, truncated) = collect_evidence(view, positions);
    let equivocators = view.equivocators();
    let freshness = rules
        .manifest
        .members
        .iter()
        .map(|m| {
            let h = view.head(m.region);
            RegionFreshness {
                region: m.region,
                head_seq: h.map_or(0, |h| h.seq),
                head_time: h.map(|h| h.timestamp),
                equivocated: equivocators.contains(&m.region),
            }
        })
        .collect();
    let verdict = verdict_of(&decision);
    CheckAnswer {
        federation_id: rules.manifest.federation_id.clone(),
        subject: subject.clone(),
        domain,
        as_of: now,
        verdict,
        entries: decision.entries,
        evaluations: decision.evaluations,
        mandatory: decision.mandatory,
        recommended: decision.recommended,
        withheld: decision.withheld,
        freshness,
        evidence,
        truncated,
        commitments: decision.commitments,
    }
}

/// The envelopes at `positions` plus, transitively, the registrations of their authors.
fn collect_evidence<V: StateView + ?Sized>(
    view: &Reads<'_, V>,
    mut positions: BTreeSet<RecordPos>,
) -> (Vec<Evidence>, bool) {
    let mut out: BTreeMap<RecordPos, Vec<u8>> = BTreeMap::new();
    while let Some(pos) = positions.pop_first() {
        if out.contains_key(&pos) {
            continue;
        }
        if out.len() >= MAX_EVIDENCE_ENVELOPES {
            return (
                out.into_iter()
                    .map(|(pos, envelope)| Evidence { pos, envelope })
                    .collect(),
                true,
            );
        }
        let Some(bytes) = view.envelope_at(pos) else {
            continue;
        };
        if let Ok(env) = crate::codec::decode::<crate::envelope::Envelope>(
            &bytes,
            crate::limits::MAX_ENVELOPE_BYTES,
            "envelope",
        ) && !crate::envelope::reserved_unit(&env.author.unit)
            && let Some(d) = view.department(&env.author)
        {
            positions.insert(d.registered_at);
        }
        out.insert(pos, bytes);
    }
    (
        out.into_iter()
            .map(|(pos, envelope)| Evidence { pos, envelope })
            .collect(),
        false,
    )
}

/// The result of verifying an answer offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// Evidence envelopes whose signatures and authorship verified.
    pub envelopes_verified: usize,
    /// Entries whose claimed state and measures were recomputed and matched.
    pub entries_confirmed: usize,
    /// Everything that failed, each naming the envelope or entry and the rule.
    pub failures: Vec<String>,
}

impl VerificationReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What the evidence of an answer gives once every envelope's signatures and authorship
/// are checked: the folds of the entries, evaluations and joint actions it carries.
/// Shared by [`verify_answer`] and [`recompute_answer`], so that an answer verifies only
/// if the node's computation and the verifier's agree.
pub struct Folded {
    /// Entries with the joint actions resting on them.
    pub entries: Vec<(EntryFold, Vec<ActionFold>)>,
    /// Evaluations.
    pub evaluations: Vec<EvaluationFold>,
    /// Written commitments.
    pub commitments: Vec<CommitmentFold>,
    /// Envelopes whose signatures and authorship verified.
    pub envelopes_verified: usize,
    /// Envelopes refused, each naming the envelope and the rule.
    pub failures: Vec<String>,
}

/// Folds the authentic envelopes of `evidence` (node signature of a member, author
/// signature and role from a registration in the evidence, an author's registration
/// before its use) into entries, actions and evaluations.
pub fn fold_evidence(evidence: &[Evidence], manifest: &Manifest) -> Folded {
    let fed = manifest.federation_id.as_str();
    let mut failures = Vec::new();
    let mut decoded: BTreeMap<RecordPos, VerifiedEnvelope> = BTreeMap::new();
    for ev in evidence {
        let label = format!("evidence {}#{}", ev.pos.region, ev.pos.seq);
        match decode_envelope(fed, &ev.envelope) {
            Err(e) => failures.push(format!("{label}: {e}")),
            Ok(v) if v.envelope.region != ev.pos.region || v.envelope.seq != ev.pos.seq => failures
                .push(format!(
                    "{label}: envelope says {}#{}",
                    v.envelope.region, v.envelope.seq
                )),
            Ok(v) => match manifest.member(v.envelope.region) {
                None => failures.push(format!("{label}: {} is not a member", v.envelope.region)),
                Some(m) => match v.envelope.verify_node_sig(fed, &m.node_key) {
                    Err(e) => failures.push(format!("{label}: {e}")),
                    Ok(()) => {
                        decoded.insert(ev.pos, v);
                    }
                },
            },
        }
    }
    // Department keys and roles as registered in the evidence (latest registration before use).
    let mut registrations: BTreeMap<DepartmentId, Vec<(u64, PublicKey, Vec<crate::ids::Role>)>> =
        BTreeMap::new();
    for (pos, v) in &decoded {
        if let Body::DepartmentRegistered {
            department,
            key,
            roles,
            ..
        } = &v.body
            && department.home_province() == pos.region
        {
            registrations.entry(department.clone()).or_default().push((
                pos.seq,
                *key,
                roles.clone(),
            ));
        }
    }
    let mut authentic: BTreeMap<RecordPos, &VerifiedEnvelope> = BTreeMap::new();
    for (pos, v) in &decoded {
        let label = format!("evidence {}#{}", pos.region, pos.seq);
        let env = &v.envelope;
        let (key, roles) = if let Some(key) =
            crate::ledger::region_author_key(manifest, pos.region, &env.author, v.body.kind())
        {
            match key {
                Ok(k) => (k, None),
                Err(why) => {
                    failures.push(format!("{label}: {why}"));
                    continue;
                }
            }
        } else {
            match registrations.get(&env.author).and_then(|r| {
                r.iter()
                    .rev()
                    .find(|(s, _, _)| env.author.home_province() == pos.region && *s < pos.seq)
            }) {
                Some((_, k, roles)) => (*k, Some(roles.clone())),
                None => {
                    failures.push(format!(
                        "{label}: no registration of author {} in the evidence",
                        env.author
                    ));
                    continue;
                }
            }
        };
        if let Err(e) = env.verify_author_sig(fed, &key) {
            failures.push(format!("{label}: {e}"));
            continue;
        }
        if let (Some(roles), Some(role)) = (roles, required_role(v.body.kind()))
            && !roles.contains(&role)
        {
            failures.push(format!(
                "{label}: author {} lacks the {} role for {:?}",
                env.author,
                role.name(),
                v.body.kind()
            ));
            continue;
        }
        authentic.insert(*pos, v);
    }
    // Rebuild the folds from authentic evidence: publications first, then records that
    // reference them, then resolutions and decisions (which reference objections and
    // repair applications, possibly recorded in a region sorted after the issuer's).
    let phase = |b: &Body| match b {
        Body::ListEntryPublished(_)
        | Body::EvaluationPublished(_)
        | Body::CommitmentMade(_)
        | Body::DepartmentRegistered { .. } => 0,
        Body::ObjectionResolved { .. } | Body::RepairDecided { .. } => 2,
        _ => 1,
    };
    let mut ordered: Vec<(&RecordPos, &&VerifiedEnvelope)> = authentic.iter().collect();
    ordered.sort_by_key(|(pos, v)| (phase(&v.body), **pos));
    let mut entries: BTreeMap<EntryId, EntryFold> = BTreeMap::new();
    let mut evaluations: BTreeMap<EvaluationId, EvaluationFold> = BTreeMap::new();
    let mut actions: Vec<ActionFold> = Vec::new();
    let mut objections: BTreeMap<ObjectionId, ObjectionTarget> = BTreeMap::new();
    let mut commitments: BTreeMap<CommitmentId, CommitmentFold> = BTreeMap::new();
    for (pos, v) in ordered {
        let origin = Origin {
            pos: *pos,
            at: v.envelope.timestamp,
            author: v.envelope.author.clone(),
        };
        match &v.body {
            Body::ListEntryPublished(e) => {
                let id = entry_id(pos.region, e);
                entries.insert(id, EntryFold::published(id, origin, e.clone()));
            }
            Body::EvaluationPublished(ev) => {
                let id = evaluation_id(&origin.author, ev);
                evaluations.insert(id, EvaluationFold::published(id, origin, ev.clone()));
            }
            Body::JointActionInitiated(a) => {
                let id = action_id(&origin.author, &a.reference);
                if let Some(e) = entries.get_mut(&a.entry)
                    && e.issuer() == pos.region
                {
                    e.apply(&origin, &v.body);
                    actions.push(ActionFold::initiated(
                        id,
                        origin,
                        a.clone(),
                        e.content.category,
                    ));
                }
            }
            Body::ObjectionFiled {
                target, case_no, ..
            } => {
                objections.insert(objection_id(&origin.author, case_no), *target);
                match target {
                    ObjectionTarget::Entry(id) => {
                        if let Some(e) = entries.get_mut(id) {
                            e.apply(&origin, &v.body);
                        }
                    }
                    ObjectionTarget::Evaluation(id) => {
                        if let Some(e) = evaluations.get_mut(id) {
                            e.apply(&origin, &v.body);
                        }
                    }
                }
            }
            Body::ObjectionResolved { objection, .. } => match objections.get(objection) {
                Some(ObjectionTarget::Entry(id)) => {
                    if let Some(e) = entries.get_mut(id)
                        && e.issuer() == pos.region
                    {
                        e.apply(&origin, &v.body);
                    }
                }
                Some(ObjectionTarget::Evaluation(id)) => {
                    if let Some(e) = evaluations.get_mut(id)
                        && e.issuer() == pos.region
                    {
                        e.apply(&origin, &v.body);
                    }
                }
                None => {}
            },
            // A repair application may be recorded in any region (like an objection).
            Body::RepairApplied { entry, .. } => {
                if let Some(e) = entries.get_mut(entry) {
                    e.apply(&origin, &v.body);
                }
            }
            Body::ListEntryAmended { entry, .. }
            | Body::ListEntryRevoked { entry, .. }
            | Body::ListEntryRepaired { entry, .. }
            | Body::RepairDecided { entry, .. } => {
                if let Some(e) = entries.get_mut(entry)
                    && e.issuer() == pos.region
                {
                    e.apply(&origin, &v.body);
                }
            }
            Body::EvaluationRevoked { evaluation, .. } => {
                if let Some(e) = evaluations.get_mut(evaluation)
                    && e.issuer() == pos.region
                {
                    e.apply(&origin, &v.body);
                }
            }
            Body::CommitmentMade(c) => {
                let id = commitment_id(&origin.author, &c.acceptance_no);
                commitments.insert(id, CommitmentFold::made(id, origin, c.clone()));
            }
            // The fold takes a settlement only from the recording region.
            Body::CommitmentSettled { commitment, .. } => {
                if let Some(c) = commitments.get_mut(commitment) {
                    c.apply(&origin, &v.body);
                }
            }
            _ => {}
        }
    }
    let with_actions: Vec<(EntryFold, Vec<ActionFold>)> = entries
        .into_values()
        .map(|e| {
            let on: Vec<ActionFold> = actions
                .iter()
                .filter(|a| a.action.entry == e.id)
                .cloned()
                .collect();
            (e, on)
        })
        .collect();
    Folded {
        entries: with_actions,
        evaluations: evaluations.into_values().collect(),
        commitments: commitments.into_values().collect(),
        envelopes_verified: authentic.len(),
        failures,
    }
}

/// The one word for a decision: measures apply, or entries or evaluations exist that
/// apply nothing here, or nothing at all.
pub fn verdict_of(d: &Decision) -> Verdict {
    if !d.mandatory.is_empty() || !d.recommended.is_empty() {
        Verdict::MeasuresApply
    } else if d.entries.is_empty() && d.evaluations.is_empty() && d.commitments.is_empty() {
        Verdict::Clear
    } else {
        Verdict::NothingApplies
    }
}

/// The answer the evidence gives: `decide` over the authentic evidence for `subject` in
/// `domain` at `as_of`, with `freshness` as the caller proves it and the evidence
/// itself, sorted. A proven answer is made by this function at the node and checked by
/// calling it again at the verifier ([`crate::federation::verify_proven_answer`]), so
/// that nothing an answer states is left to the node's word. Also returns what
/// [`fold_evidence`] refused.
#[allow(clippy::too_many_arguments)]
pub fn recompute_answer(
    manifest: &Manifest,
    catalogue: &Catalogue,
    subject: &SubjectKey,
    domain: MeasureDomain,
    as_of: Timestamp,
    freshness: Vec<RegionFreshness>,
    mut evidence: Vec<Evidence>,
) -> (CheckAnswer, Folded) {
    evidence.sort_by_key(|e| e.pos);
    let folded = fold_evidence(&evidence, manifest);
    let d = decide(
        subject,
        &folded.entries,
        &folded.evaluations,
        &folded.commitments,
        catalogue,
        domain,
        as_of,
    );
    let answer = CheckAnswer {
        federation_id: manifest.federation_id.clone(),
        subject: subject.clone(),
        domain,
        as_of,
        verdict: verdict_of(&d),
        entries: d.entries,
        evaluations: d.evaluations,
        mandatory: d.mandatory,
        recommended: d.recommended,
        withheld: d.withheld,
        freshness,
        evidence,
        truncated: false,
        commitments: d.commitments,
    };
    (answer, folded)
}

/// Names every difference between what `claimed` states and what the evidence gives
/// (`recomputed`): the verdict, each entry and evaluation shown or omitted, each
/// measure with its title, kind, roles, basis and, when withheld, the reason. Order is
/// not compared here.
pub fn answer_differences(
    claimed: &CheckAnswer,
    recomputed: &CheckAnswer,
    folded: &Folded,
) -> Vec<String> {
    let mut out = Vec::new();
    let verdict = recomputed.verdict;
    if claimed.verdict != verdict {
        out.push(format!(
            "verdict: the answer says {}, the evidence gives {} (the verdict is recomputed, never taken from the answer)",
            verdict_name(claimed.verdict),
            verdict_name(verdict)
        ));
    }
    for c in &claimed.entries {
        let label = format!("entry {}", c.entry);
        match recomputed.entries.iter().find(|r| r.entry == c.entry) {
            None => match folded.entries.iter().find(|(e, _)| e.id == c.entry) {
                None => out.push(format!(
                    "{label}: shown as {:?}, but its publication is not in the evidence",
                    c.state
                )),
                Some((e, _)) if e.content.roles_of(&claimed.subject).is_empty() => out.push(format!(
                    "{label}: is about another subject (its current content does not name the one asked about)"
                )),
                Some((e, _)) => out.push(format!(
                    "{label}: claimed {:?}, evidence gives {:?} at {} (not in force)",
                    c.state,
                    e.state_at(claimed.as_of),
                    claimed.as_of.0
                )),
            },
            Some(r) if r != c => out.push(format!(
                "{label}: claimed state {:?}, roles {:?}, measures {:?}; evidence gives {:?}, {:?}, {:?}",
                c.state, c.roles, c.measures_in_domain, r.state, r.roles, r.measures_in_domain
            )),
            Some(_) => {}
        }
    }
    for r in &recomputed.entries {
        if !claimed.entries.iter().any(|c| c.entry == r.entry) {
            out.push(format!(
                "entry {}: {:?} by the evidence, and the answer omits it",
                r.entry, r.state
            ));
        }
    }
    for c in &claimed.evaluations {
        match recomputed.evaluations.iter().find(|r| r.id == c.id) {
            None => out.push(format!(
                "evaluation {}: not backed by an authentic, current, valid result in the evidence",
                c.id
            )),
            Some(r) if r != c => out.push(format!(
                "evaluation {}: claimed {:?} {:?}, evidence gives {:?} {:?}",
                c.id, c.state, c.measures_in_domain, r.state, r.measures_in_domain
            )),
            Some(_) => {}
        }
    }
    for r in &recomputed.evaluations {
        if !claimed.evaluations.iter().any(|c| c.id == r.id) {
            out.push(format!(
                "evaluation {}: current by the evidence, and the answer omits it",
                r.id
            ));
        }
    }
    for c in &claimed.commitments {
        match recomputed.commitments.iter().find(|r| r.id == c.id) {
            None => out.push(format!(
                "commitment {}: claimed {:?}, but the evidence does not show it breached or overdue",
                c.id, c.state
            )),
            Some(r) if r != c => out.push(format!(
                "commitment {}: claimed {:?} (due {}, settled {:?}), evidence gives {:?} (due {}, settled {:?})",
                c.id, c.state, c.due_on, c.settled_on, r.state, r.due_on, r.settled_on
            )),
            Some(_) => {}
        }
    }
    for r in &recomputed.commitments {
        if !claimed.commitments.iter().any(|c| c.id == r.id) {
            out.push(format!(
                "commitment {}: {:?} by the evidence, and the answer omits it (article 四)",
                r.id, r.state
            ));
        }
    }
    let applied = |v: &[AppliedMeasure]| -> Vec<(AppliedMeasure, Option<String>)> {
        v.iter().map(|m| (m.clone(), None)).collect()
    };
    let withheld = |v: &[WithheldMeasure]| -> Vec<(AppliedMeasure, Option<String>)> {
        v.iter()
            .map(|w| (w.measure.clone(), Some(w.reason.clone())))
            .collect()
    };
    for (name, claimed, recomputed) in [
        (
            "mandatory",
            applied(&claimed.mandatory),
            applied(&recomputed.mandatory),
        ),
        (
            "recommended",
            applied(&claimed.recommended),
            applied(&recomputed.recommended),
        ),
        (
            "withheld",
            withheld(&claimed.withheld),
            withheld(&recomputed.withheld),
        ),
    ] {
        let key = |m: &AppliedMeasure| (m.code.clone(), m.source);
        for (m, reason) in &claimed {
            match recomputed.iter().find(|(r, _)| key(r) == key(m)) {
                None => out.push(format!(
                    "measure {} from {:?} is claimed {name}, but the evidence does not make it {name} (a suspended or corrected entry applies none to this subject)",
                    m.code.0, m.source
                )),
                Some((r, r_reason)) => {
                    let mut fields = Vec::new();
                    if r.title_zh != m.title_zh {
                        fields.push("title");
                    }
                    if r.kind != m.kind {
                        fields.push("kind");
                    }
                    if r.region != m.region {
                        fields.push("region");
                    }
                    if r.roles != m.roles {
                        fields.push("roles");
                    }
                    if r.basis != m.basis {
                        fields.push("basis");
                    }
                    if r_reason != reason {
                        fields.push("reason withheld");
                    }
                    if !fields.is_empty() {
                        out.push(format!(
                            "measure {} from {:?} ({name}): {} differ from what the manifest's catalogue and the evidence give",
                            m.code.0,
                            m.source,
                            fields.join(", ")
                        ));
                    }
                }
            }
        }
        for (r, _) in &recomputed {
            if !claimed.iter().any(|(m, _)| key(m) == key(r)) {
                out.push(format!(
                    "measure {} from {:?} should be {name} by the evidence, and the answer omits it",
                    r.code.0, r.source
                ));
            }
        }
    }
    out
}

/// The verdict as the API spells it.
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Clear => "clear",
        Verdict::MeasuresApply => "measures_apply",
        Verdict::NothingApplies => "nothing_applies",
    }
}

/// Verifies a check answer against a manifest and catalogue without any node: every
/// envelope's node signature, every author's signature and role (from registrations in
/// the evidence), and everything the answer states — verdict, entries, evaluations,
/// measures with their details, reasons withheld — recomputed from the evidence at the
/// answer's `as_of`.
///
/// What this does not prove: that the answering node withheld nothing, nor the time:
/// `as_of` and `freshness` of an answer without proofs are the node's word. A proven
/// answer ([`crate::federation::verify_proven_answer`]) proves both.
pub fn verify_answer(
    answer: &CheckAnswer,
    manifest: &Manifest,
    catalogue: &Catalogue,
) -> VerificationReport {
    let mut failures = Vec::new();
    if answer.federation_id != manifest.federation_id {
        failures.push(format!(
            "federation_id: answer is for '{}', manifest for '{}'",
            answer.federation_id, manifest.federation_id
        ));
    }
    let (recomputed, folded) = recompute_answer(
        manifest,
        catalogue,
        &answer.subject,
        answer.domain,
        answer.as_of,
        answer.freshness.clone(),
        answer.evidence.clone(),
    );
    failures.extend(folded.failures.iter().cloned());
    let confirmed = answer
        .entries
        .iter()
        .filter(|c| recomputed.entries.contains(c))
        .count();
    failures.extend(answer_differences(answer, &recomputed, &folded));
    VerificationReport {
        envelopes_verified: folded.envelopes_verified,
        entries_confirmed: confirmed,
        failures,
    }
}

/// A measure an answer applies that the asking region declined when a joint action on
/// the entry asked it to (article 二十: a target region responds, and may decline
/// recommended measures with its reasons). The federation's answer is the same
/// everywhere and stays so; this is the asking region's own record beside it, so that a
/// department of a declining region sees that its region chose not to carry the measure
/// out, when and why. A mandatory measure stays mandatory by law whatever the region
/// answered (`mandatory` says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclinedHere {
    /// The measure.
    pub measure: MeasureCode,
    /// Whether the answer applies it as mandatory.
    pub mandatory: bool,
    /// The entry it comes from.
    pub entry: EntryId,
    /// The action that asked for it.
    pub action: ActionId,
    /// The region that declined (the asking node's).
    pub region: RegionCode,
    /// The day of the answer (China Standard Time).
    pub declined_on: Date,
    /// The reason given.
    pub reason: String,
}

/// The measures of `answer` that `region` declined in its answers to `actions` (the
/// actions on the answer's entries): a whole decline covers every measure the action
/// asked for; a partial one those it did not accept.
pub fn declined_here(
    answer: &CheckAnswer,
    actions: &[ActionFold],
    region: RegionCode,
) -> Vec<DeclinedHere> {
    let mut out = Vec::new();
    for a in actions {
        let Some(response) = a.responses.get(&region) else {
            continue;
        };
        let (declined, reason): (Vec<&MeasureCode>, &str) = match &response.decision {
            AckDecision::Accepted => continue,
            AckDecision::Declined { reason } => (a.action.measures.iter().collect(), reason),
            AckDecision::Partly { accepted, reason } => (
                a.action
                    .measures
                    .iter()
                    .filter(|m| !accepted.contains(m))
                    .collect(),
                reason,
            ),
        };
        let applied = answer
            .mandatory
            .iter()
            .map(|m| (m, true))
            .chain(answer.recommended.iter().map(|m| (m, false)));
        for (m, mandatory) in applied {
            if m.source == MeasureSource::Entry(a.action.entry) && declined.contains(&&m.code) {
                out.push(DeclinedHere {
                    measure: m.code.clone(),
                    mandatory,
                    entry: a.action.entry,
                    action: a.id,
                    region,
                    declined_on: response.origin.at.date_cst(),
                    reason: reason.to_owned(),
                });
            }
        }
    }
    out.sort_by(|x, y| (&x.measure, x.action).cmp(&(&y.measure, y.action)));
    out.dedup();
    out
}

//! The check (应查必查, article 十八): what applies to a subject in a domain, with the
//! signed evidence to verify the answer offline.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalogue::{Catalogue, MeasureDomain};
use crate::crypto::PublicKey;
use crate::envelope::{NODE_UNIT, VerifiedEnvelope, decode_envelope};
use crate::ids::{DepartmentId, RegionCode};
use crate::ledger::{Reads, Rules, StateView, SubjectRef, required_role};
use crate::limits::MAX_EVIDENCE_ENVELOPES;
use crate::manifest::Manifest;
use crate::record::*;
use crate::state::*;
use crate::time::{Date, Timestamp};

/// The overall answer, for a workflow that needs one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No entry applies and none is suspended.
    Clear,
    /// At least one measure applies in the domain.
    MeasuresApply,
    /// Entries exist but are suspended or apply no measure in this domain.
    NothingApplies,
}

/// A measure that applies, and the entry it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMeasure {
    /// Code.
    pub code: MeasureCode,
    /// Title.
    pub title_zh: String,
    /// Incentive or punishment.
    pub kind: ActionKind,
    /// The entry that makes it apply.
    pub entry: EntryId,
    /// The entry's issuing region.
    pub region: RegionCode,
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
    /// Subject name as published.
    pub subject_name: String,
    /// Decision document number.
    pub document_no: String,
    /// Effective period.
    pub effective_from: Date,
    /// End of period.
    pub expires_on: Date,
    /// Measures in the asked domain: applied if active, withheld if suspended.
    pub measures_in_domain: Vec<MeasureCode>,
}

/// An evaluation in the answer.
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
}

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
    /// Active and suspended entries from every region.
    pub entries: Vec<CheckedEntry>,
    /// Valid evaluations from every region.
    pub evaluations: Vec<CheckedEvaluation>,
    /// Mandatory measures that apply (强制性).
    pub mandatory: Vec<AppliedMeasure>,
    /// Recommended measures that apply (推荐性).
    pub recommended: Vec<AppliedMeasure>,
    /// Every member's freshness.
    pub freshness: Vec<RegionFreshness>,
    /// Signed envelopes backing every claim, including the authors' registrations.
    pub evidence: Vec<Evidence>,
    /// True if evidence was cut at the limit.
    pub truncated: bool,
}

/// Measures of an entry (requested, plus those of joint actions resting on it) that
/// bite in `domain`, split into (mandatory, recommended).
pub fn entry_measures<'c>(
    entry: &EntryFold,
    actions: &[ActionFold],
    catalogue: &'c Catalogue,
    domain: MeasureDomain,
) -> (
    Vec<&'c crate::catalogue::Measure>,
    Vec<&'c crate::catalogue::Measure>,
) {
    let mut codes: BTreeSet<&MeasureCode> = entry.content.requested_measures.iter().collect();
    for a in actions.iter().filter(|a| a.action.entry == entry.id) {
        codes.extend(a.action.measures.iter());
    }
    let want = match entry.content.category.list() {
        ListKind::Red => ActionKind::Incentive,
        ListKind::Black => ActionKind::Punishment,
    };
    let (mut mandatory, mut recommended) = (Vec::new(), Vec::new());
    for m in codes.into_iter().filter_map(|c| catalogue.get(c)) {
        if m.kind == want && m.domains.contains(&domain) {
            if m.mandatory {
                mandatory.push(m)
            } else {
                recommended.push(m)
            }
        }
    }
    (mandatory, recommended)
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
    let reads = Reads::new(view);
    let answer = check_reading(rules, &reads, subject, domain, now);
    reads.finish(answer)
}

fn check_reading<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &Reads<'_, V>,
    subject: &SubjectKey,
    domain: MeasureDomain,
    now: Timestamp,
) -> CheckAnswer {
    let mut entries = Vec::new();
    let mut evaluations = Vec::new();
    let (mut mandatory, mut recommended) = (Vec::new(), Vec::new());
    let mut positions: BTreeSet<RecordPos> = BTreeSet::new();
    for r in view.subject_refs(subject) {
        match r {
            SubjectRef::Entry(id) => {
                let Some(e) = view.entry(&id) else { continue };
                let state = e.state_at(now);
                if !matches!(state, EntryState::Active | EntryState::Suspended) {
                    continue;
                }
                let actions: Vec<ActionFold> =
                    e.actions.iter().filter_map(|a| view.action(a)).collect();
                let (mand, rec) = entry_measures(&e, &actions, rules.catalogue, domain);
                let applied = |m: &crate::catalogue::Measure| AppliedMeasure {
                    code: m.code.clone(),
                    title_zh: m.title_zh.clone(),
                    kind: m.kind,
                    entry: e.id,
                    region: e.issuer(),
                };
                if state == EntryState::Active {
                    mandatory.extend(mand.iter().map(|m| applied(m)));
                    recommended.extend(rec.iter().map(|m| applied(m)));
                }
                positions.extend(e.evidence.iter().copied());
                positions.extend(actions.iter().map(|a| a.initiated.pos));
                entries.push(CheckedEntry {
                    entry: e.id,
                    region: e.issuer(),
                    category: e.content.category,
                    state,
                    subject_name: subject_name(&e.content.subject),
                    document_no: e.content.basis.document_no.clone(),
                    effective_from: e.content.effective_from,
                    expires_on: e.content.expires_on,
                    measures_in_domain: mand
                        .iter()
                        .chain(rec.iter())
                        .map(|m| m.code.clone())
                        .collect(),
                });
            }
            SubjectRef::Evaluation(id) => {
                let Some(ev) = view.evaluation(&id) else {
                    continue;
                };
                if ev.valid_at(now) {
                    positions.insert(ev.published.pos);
                    evaluations.push(CheckedEvaluation {
                        id,
                        region: ev.published.pos.region,
                        author: ev.published.author.clone(),
                        evaluation: ev.evaluation,
                    });
                }
            }
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
    let verdict = if !mandatory.is_empty() || !recommended.is_empty() {
        Verdict::MeasuresApply
    } else if entries.is_empty() {
        Verdict::Clear
    } else {
        Verdict::NothingApplies
    };
    CheckAnswer {
        federation_id: rules.manifest.federation_id.clone(),
        subject: subject.clone(),
        domain,
        as_of: now,
        verdict,
        entries,
        evaluations,
        mandatory,
        recommended,
        freshness,
        evidence,
        truncated,
    }
}

fn subject_name(s: &Subject) -> String {
    match s {
        Subject::Organisation { name, .. } => name.clone(),
        Subject::Person(p) => format!("{} ({})", p.name, p.masked),
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
        ) && env.author.unit != NODE_UNIT
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

/// Verifies a check answer against a manifest and catalogue without any node: every
/// envelope's node signature, every author's signature and role (from registrations in
/// the evidence), and every claimed entry state and measure list, recomputed from the
/// evidence.
///
/// What this does not prove: that the answering node withheld nothing. The freshness
/// section says how far each region's log was known; compare it with another node.
pub fn verify_answer(
    answer: &CheckAnswer,
    manifest: &Manifest,
    catalogue: &Catalogue,
) -> VerificationReport {
    let fed = manifest.federation_id.as_str();
    let mut failures = Vec::new();
    if answer.federation_id != manifest.federation_id {
        failures.push(format!(
            "federation_id: answer is for '{}', manifest for '{fed}'",
            answer.federation_id
        ));
    }
    let mut decoded: BTreeMap<RecordPos, VerifiedEnvelope> = BTreeMap::new();
    for ev in &answer.evidence {
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
        let (key, roles) = if env.author.unit == NODE_UNIT && env.author.region == pos.region {
            match manifest.member(pos.region) {
                Some(m) => (m.node_key, None),
                None => continue,
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
    // Recompute entry folds from authentic evidence. Publications first, then records
    // that reference them, then resolutions (which reference objections).
    let phase = |b: &Body| match b {
        Body::ListEntryPublished(_) | Body::DepartmentRegistered { .. } => 0,
        Body::ObjectionResolved { .. } => 2,
        _ => 1,
    };
    let mut ordered: Vec<(&RecordPos, &&VerifiedEnvelope)> = authentic.iter().collect();
    ordered.sort_by_key(|(pos, v)| (phase(&v.body), **pos));
    let mut entries: BTreeMap<EntryId, EntryFold> = BTreeMap::new();
    let mut actions: Vec<ActionFold> = Vec::new();
    let mut objections: BTreeMap<ObjectionId, EntryId> = BTreeMap::new();
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
            Body::JointActionInitiated(a) => {
                let id = action_id(&origin.author, &a.reference);
                if let Some(e) = entries.get_mut(&a.entry) {
                    e.apply(&origin, &v.body);
                }
                actions.push(ActionFold::initiated(id, origin, a.clone()));
            }
            Body::ObjectionFiled { entry, case_no, .. } => {
                objections.insert(objection_id(&origin.author, case_no), *entry);
                if let Some(e) = entries.get_mut(entry) {
                    e.apply(&origin, &v.body);
                }
            }
            Body::ObjectionResolved { objection, .. } => {
                if let Some(e) = objections.get(objection).and_then(|id| entries.get_mut(id))
                    && e.issuer() == pos.region
                {
                    e.apply(&origin, &v.body);
                }
            }
            Body::ListEntryAmended { entry, .. }
            | Body::ListEntryRevoked { entry, .. }
            | Body::ListEntryRepaired { entry, .. } => {
                if let Some(e) = entries.get_mut(entry)
                    && e.issuer() == pos.region
                {
                    e.apply(&origin, &v.body);
                }
            }
            _ => {}
        }
    }
    let mut confirmed = 0;
    for claimed in &answer.entries {
        let label = format!("entry {}", claimed.entry);
        let Some(e) = entries.get(&claimed.entry) else {
            failures.push(format!("{label}: its publication is not in the evidence"));
            continue;
        };
        if e.content.subject.key() != answer.subject {
            failures.push(format!("{label}: is about another subject"));
            continue;
        }
        let state = e.state_at(answer.as_of);
        if state != claimed.state {
            failures.push(format!(
                "{label}: claimed {:?}, evidence gives {state:?} at {}",
                claimed.state, answer.as_of.0
            ));
            continue;
        }
        let (mand, rec) = entry_measures(e, &actions, catalogue, answer.domain);
        let recomputed: Vec<MeasureCode> = mand
            .iter()
            .chain(rec.iter())
            .map(|m| m.code.clone())
            .collect();
        if recomputed != claimed.measures_in_domain {
            failures.push(format!(
                "{label}: claimed measures {:?}, evidence gives {:?}",
                claimed.measures_in_domain, recomputed
            ));
            continue;
        }
        let applied_here: Vec<&MeasureCode> = answer
            .mandatory
            .iter()
            .chain(answer.recommended.iter())
            .filter(|m| m.entry == claimed.entry)
            .map(|m| &m.code)
            .collect();
        let should_apply: Vec<&MeasureCode> = if state == EntryState::Active {
            recomputed.iter().collect()
        } else {
            Vec::new()
        };
        if applied_here != should_apply {
            failures.push(format!("{label}: applied measures {applied_here:?} differ from {should_apply:?} (a suspended entry applies none)"));
            continue;
        }
        confirmed += 1;
    }
    for claimed in &answer.evaluations {
        let backed = authentic.values().any(|v| match &v.body {
            Body::EvaluationPublished(ev) => {
                *ev == claimed.evaluation
                    && evaluation_id(&v.envelope.author, ev) == claimed.id
                    && v.envelope.author == claimed.author
            }
            _ => false,
        });
        let today = answer.as_of.date_cst();
        if !backed {
            failures.push(format!(
                "evaluation {}: not backed by an authentic envelope in the evidence",
                claimed.id
            ));
        } else if !(claimed.evaluation.evaluated_on <= today
            && today < claimed.evaluation.valid_until)
        {
            failures.push(format!("evaluation {}: not valid on {today}", claimed.id));
        } else if claimed.evaluation.subject.key() != answer.subject {
            failures.push(format!(
                "evaluation {}: is about another subject",
                claimed.id
            ));
        }
    }
    for m in answer.mandatory.iter().chain(answer.recommended.iter()) {
        if !answer.entries.iter().any(|e| e.entry == m.entry) {
            failures.push(format!(
                "measure {}: rests on entry {} which the answer does not list",
                m.code.0, m.entry
            ));
        }
    }
    VerificationReport {
        envelopes_verified: authentic.len(),
        entries_confirmed: confirmed,
        failures,
    }
}

//! What the public may see of the federation (articles 八, 十一, 十七; docs/public.md,
//! docs/policy.md "Public disclosure").
//!
//! Two questions, answered here without I/O so that they can be tested exhaustively:
//!
//! 1. **Which log records are published verbatim** (the open-data feed, public evidence
//!    files): a record whose signed bytes name no natural person, about a subject that is
//!    not a natural person ([`record_publicity`]). A person's record carries the person
//!    key (the federation's keyed hash of the identity number, docs/privacy.md) inside
//!    its signed bytes; those bytes cannot be shown without it, so such a record is
//!    *withheld*: the feed gives only its Merkle leaf hash, from which nothing about the
//!    person can be derived, so that a mirror still proves the log complete.
//! 2. **What a public page shows of a list entry or evaluation** ([`public_entry`],
//!    [`public_evaluation`]): a projection of the node's current state with persons
//!    reduced to what the law makes public for the entry's category
//!    ([`person_subject_disclosure`], [`related_person_disclosure`]), never a person key.
//!
//! Security notes.
//! - Requires: callers pass the subject of a followed record *as first published*
//!   (immutable), so that a record's publicity never changes after it was decided.
//! - Provides: no projection and no published record carries a person key; every
//!   person shown is shown by name and masked number only, and only for a category whose
//!   basis is cited.
//! - Does not provide: judgement over free text. Summaries, reasons and grounds of
//!   records about organisations are published as their departments wrote them
//!   (docs/decisions.md, 94).

use serde::{Deserialize, Serialize};

use crate::ids::{DepartmentId, RegionCode};
use crate::record::{
    ActionId, Body, Category, CommitmentId, EntryId, EvaluationId, Grade, ListKind, MeasureCode,
    ObjectionId, ObjectionTarget, RedSource, RelatedRole, Subject,
};
use crate::state::{EntryFold, EntryState, EvaluationFold, EvaluationState};
use crate::time::{Date, Timestamp};

/// A record another record is about, to be resolved to its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// A list entry.
    Entry(EntryId),
    /// An evaluation.
    Evaluation(EvaluationId),
    /// An objection (about an entry or an evaluation).
    Objection(ObjectionId),
    /// A joint action (resting on an entry).
    Action(ActionId),
    /// A written commitment.
    Commitment(CommitmentId),
}

impl From<ObjectionTarget> for About {
    fn from(t: ObjectionTarget) -> About {
        match t {
            ObjectionTarget::Entry(id) => About::Entry(id),
            ObjectionTarget::Evaluation(id) => About::Evaluation(id),
        }
    }
}

/// Why a record is not published verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// Its signed bytes name a natural person (as subject or related person): they
    /// carry the person key.
    NamesANaturalPerson,
    /// It follows a record whose subject is a natural person.
    AboutANaturalPerson,
    /// It carries two other envelopes verbatim, which may name persons; the exclusion it
    /// proves is public through the federation checkpoint.
    EquivocationEvidence,
    /// The record it follows could not be resolved (fail closed).
    Unresolved,
}

impl Withheld {
    /// In words, for feeds and pages.
    pub fn describe(self) -> &'static str {
        match self {
            Withheld::NamesANaturalPerson => {
                "names a natural person: its signed bytes carry a person key, which is never public"
            }
            Withheld::AboutANaturalPerson => "follows a record about a natural person",
            Withheld::EquivocationEvidence => {
                "equivocation evidence carries other envelopes verbatim"
            }
            Withheld::Unresolved => "the record it follows could not be resolved",
        }
    }
}

/// Whether the body's own fields name a natural person.
pub fn body_names_a_person(body: &Body) -> bool {
    let subject_is_person = |s: &Subject| matches!(s, Subject::Person(_));
    match body {
        Body::ListEntryPublished(e) | Body::ListEntryAmended { amended: e, .. } => {
            subject_is_person(&e.subject) || !e.related_persons.is_empty()
        }
        Body::EvaluationPublished(e) => subject_is_person(&e.subject),
        Body::CommitmentMade(c) => subject_is_person(&c.subject),
        Body::DecisionDisclosed(d) => subject_is_person(&d.subject),
        // Listed exhaustively: a new record kind must be decided here.
        Body::DepartmentRegistered { .. }
        | Body::DepartmentRevoked { .. }
        | Body::ListEntryRevoked { .. }
        | Body::ListEntryRepaired { .. }
        | Body::JointActionInitiated(_)
        | Body::JointActionAcknowledged { .. }
        | Body::MeasureExecuted { .. }
        | Body::MeasureLifted { .. }
        | Body::ObjectionFiled { .. }
        | Body::ObjectionResolved { .. }
        | Body::EquivocationEvidence { .. }
        | Body::EvaluationRevoked { .. }
        | Body::RepairApplied { .. }
        | Body::RepairDecided { .. }
        | Body::CommitmentSettled { .. } => false,
    }
}

/// The record a body follows, if any.
pub fn followed(body: &Body) -> Option<About> {
    match body {
        Body::ListEntryAmended { entry, .. }
        | Body::ListEntryRevoked { entry, .. }
        | Body::ListEntryRepaired { entry, .. }
        | Body::RepairApplied { entry, .. }
        | Body::RepairDecided { entry, .. } => Some(About::Entry(*entry)),
        Body::JointActionInitiated(a) => Some(About::Entry(a.entry)),
        Body::JointActionAcknowledged { action, .. }
        | Body::MeasureExecuted { action, .. }
        | Body::MeasureLifted { action, .. } => Some(About::Action(*action)),
        Body::ObjectionFiled { target, .. } => Some((*target).into()),
        Body::ObjectionResolved { objection, .. } => Some(About::Objection(*objection)),
        Body::EvaluationRevoked { evaluation, .. } => Some(About::Evaluation(*evaluation)),
        Body::CommitmentSettled { commitment, .. } => Some(About::Commitment(*commitment)),
        Body::DepartmentRegistered { .. }
        | Body::DepartmentRevoked { .. }
        | Body::ListEntryPublished(_)
        | Body::EvaluationPublished(_)
        | Body::EquivocationEvidence { .. }
        | Body::CommitmentMade(_)
        | Body::DecisionDisclosed(_) => None,
    }
}

/// Whether a record is published verbatim. `subject_is_person` answers, for a followed
/// record, whether its subject *as first published* is a natural person (`None`: it
/// could not be resolved, and the record is withheld).
pub fn record_publicity(
    body: &Body,
    mut subject_is_person: impl FnMut(About) -> Option<bool>,
) -> Result<(), Withheld> {
    if matches!(body, Body::EquivocationEvidence { .. }) {
        return Err(Withheld::EquivocationEvidence);
    }
    if body_names_a_person(body) {
        return Err(Withheld::NamesANaturalPerson);
    }
    match followed(body).map(&mut subject_is_person) {
        None | Some(Some(false)) => Ok(()),
        Some(Some(true)) => Err(Withheld::AboutANaturalPerson),
        Some(None) => Err(Withheld::Unresolved),
    }
}

/// Why a natural person listed as an entry's subject may be shown on public pages (by
/// name and masked number), or `None`: the entry is not shown at all.
pub fn person_subject_disclosure(category: Category) -> Option<&'static str> {
    use crate::record::BlackCategory;
    match category {
        // Court-listed dishonest debtors: the courts publish the list with names and
        // partly hidden identity numbers.
        Category::Black(BlackCategory::DefyingJudgmentOrDecision) => Some(
            "最高人民法院关于公布失信被执行人名单信息的若干规定（法释〔2017〕7号）第六条、第七条: the list is published with the debtor's name and a partly hidden identity number",
        ),
        // Honours the state confers in public.
        Category::Red(RedSource::MoralModel) => {
            Some("诚信道德模范: chosen and announced in public (guidance article 三)")
        }
        Category::Red(RedSource::OutstandingYouthVolunteer) => {
            Some("优秀青年志愿者: chosen and announced in public (guidance article 三)")
        }
        // Everything else about a person: no statute makes it public, and the
        // Personal Information Protection Law (第十三条) requires one.
        Category::Black(_) | Category::Red(_) => None,
    }
}

/// Why a related person of an organisation's entry may be shown by name, or `None`.
pub fn related_person_disclosure(role: RelatedRole) -> Option<&'static str> {
    match role {
        RelatedRole::LegalRepresentative => Some(
            "企业信息公示暂行条例 第六条: the legal representative is part of the registration information the registration authority publishes",
        ),
        RelatedRole::PrincipalResponsible
        | RelatedRole::ActualController
        | RelatedRole::DirectlyResponsible
        | RelatedRole::DirectorSupervisorOrSeniorManager => None,
    }
}

/// A subject as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PublicSubject {
    /// An organisation, by its code and registered name.
    Organisation {
        /// Unified Social Credit Code.
        uscc: String,
        /// Registered name.
        name: String,
    },
    /// A natural person, by name and masked number (provincial prefix only).
    Person {
        /// Name.
        name: String,
        /// Masked number.
        masked: String,
    },
}

/// A list entry as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicEntry {
    /// Entry id (hex).
    pub id: EntryId,
    /// Issuing region.
    pub region: RegionCode,
    /// Publishing department.
    pub department: DepartmentId,
    /// Red or black.
    pub list: ListKind,
    /// Category.
    pub category: Category,
    /// Category as the guidance names it.
    pub category_zh: String,
    /// Who is listed.
    pub subject: PublicSubject,
    /// The organisation's legal representative, by name, where published.
    pub legal_representative: Option<String>,
    /// Decision document number.
    pub document_no: String,
    /// Deciding authority.
    pub authority: String,
    /// Decision date.
    pub decided_on: Date,
    /// Legal basis.
    pub legal_basis: String,
    /// First day in force.
    pub effective_from: Date,
    /// First day no longer in force.
    pub expires_on: Date,
    /// Its state now.
    pub state: EntryState,
    /// Measures the publisher asked others to apply.
    pub requested_measures: Vec<MeasureCode>,
    /// Public description; left out once the entry has ended (repaired or expired).
    pub summary: Option<String>,
    /// Why a person is shown, when the subject is one.
    pub person_basis: Option<String>,
}

/// The category's name in Chinese.
pub fn category_zh(category: Category) -> &'static str {
    match category {
        Category::Black(b) => b.name_zh(),
        Category::Red(r) => match r {
            RedSource::GoodCreditClassification => "信用分类监管确定的信用状况良好的行政相对人",
            RedSource::MoralModel => "诚信道德模范",
            RedSource::OutstandingYouthVolunteer => "优秀青年志愿者",
            RedSource::AssociationRecommendedMember => "行业协会商会推荐的诚信会员",
            RedSource::MediaIdentified => "新闻媒体挖掘的诚信主体",
            RedSource::NoAdverseRecord => "无不良信用记录者",
        },
    }
}

/// Whether an entry in this state is shown: a revoked entry was wrong information
/// (article 二十二) and is never shown; every other state is shown as such.
pub fn entry_state_shown(state: EntryState) -> bool {
    state != EntryState::Revoked
}

/// The public view of an entry now, or `None` if the public may not see it (revoked, or
/// about a person whose category is not disclosed).
pub fn public_entry(fold: &EntryFold, now: Timestamp) -> Option<PublicEntry> {
    let state = fold.state_at(now);
    if !entry_state_shown(state) {
        return None;
    }
    let c = &fold.content;
    let (subject, person_basis, legal_representative) = match &c.subject {
        Subject::Organisation { uscc, name, .. } => (
            PublicSubject::Organisation {
                uscc: uscc.clone(),
                name: name.clone(),
            },
            None,
            c.related_persons
                .iter()
                .find(|p| related_person_disclosure(p.role).is_some())
                .map(|p| p.person.name.clone()),
        ),
        Subject::Person(p) => {
            let basis = person_subject_disclosure(c.category)?;
            (
                PublicSubject::Person {
                    name: p.name.clone(),
                    masked: p.masked.clone(),
                },
                Some(basis.to_owned()),
                None,
            )
        }
    };
    let ended = matches!(state, EntryState::Repaired | EntryState::Expired);
    Some(PublicEntry {
        id: fold.id,
        region: fold.published.pos.region,
        department: fold.published.author.clone(),
        list: c.category.list(),
        category: c.category,
        category_zh: category_zh(c.category).to_owned(),
        subject,
        legal_representative,
        document_no: c.basis.document_no.clone(),
        authority: c.basis.authority.clone(),
        decided_on: c.basis.decided_on,
        legal_basis: c.basis.legal_basis.clone(),
        effective_from: c.effective_from,
        expires_on: c.expires_on,
        state,
        requested_measures: c.requested_measures.clone(),
        summary: (!ended).then(|| c.summary.clone()),
        person_basis,
    })
}

/// An evaluation result as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicEvaluation {
    /// Evaluation id.
    pub id: EvaluationId,
    /// Evaluating region.
    pub region: RegionCode,
    /// Scheme id.
    pub scheme: String,
    /// The class.
    pub class: String,
    /// The organisation.
    pub subject: PublicSubject,
    /// Day evaluated.
    pub evaluated_on: Date,
    /// First day no longer valid.
    pub valid_until: Date,
}

/// The public view of an evaluation now: only an organisation's result in the best
/// class of its scheme (`best_class`, the scheme's first), valid now — article 八 asks
/// that trustworthy subjects' good records be published; the other classes serve
/// supervision (article 六) and are not published.
pub fn public_evaluation(
    fold: &EvaluationFold,
    best_class: Option<&str>,
    now: Timestamp,
) -> Option<PublicEvaluation> {
    let e = &fold.evaluation;
    let Subject::Organisation { uscc, name, .. } = &e.subject else {
        return None;
    };
    if fold.state_at(now) != EvaluationState::Valid {
        return None;
    }
    let class = match e.grade {
        Grade::Class(c) => crate::ledger::grade_text(c),
        Grade::Score(_) => return None,
    };
    if Some(class.as_str()) != best_class {
        return None;
    }
    Some(PublicEvaluation {
        id: fold.id,
        region: fold.published.pos.region,
        scheme: e.scheme.clone(),
        class,
        subject: PublicSubject::Organisation {
            uscc: uscc.clone(),
            name: name.clone(),
        },
        evaluated_on: e.evaluated_on,
        valid_until: e.valid_until,
    })
}

/// Columns of the bulk CSV of public entries (docs/public.md, "Open data").
pub const ENTRY_CSV_COLUMNS: [&str; 20] = [
    "id",
    "region",
    "department",
    "list",
    "category",
    "category_zh",
    "subject_kind",
    "uscc",
    "name",
    "masked_number",
    "legal_representative",
    "document_no",
    "authority",
    "decided_on",
    "legal_basis",
    "effective_from",
    "expires_on",
    "state",
    "requested_measures",
    "summary",
];

/// One CSV line (without its line break) of a public entry, in [`ENTRY_CSV_COLUMNS`]
/// order.
pub fn entry_csv_row(e: &PublicEntry) -> String {
    let (kind, uscc, name, masked) = match &e.subject {
        PublicSubject::Organisation { uscc, name } => {
            ("organisation", uscc.as_str(), name.as_str(), "")
        }
        PublicSubject::Person { name, masked } => ("person", "", name.as_str(), masked.as_str()),
    };
    let fields = [
        e.id.to_string(),
        e.region.to_string(),
        e.department.to_string(),
        crate::catalogue::snake_name(&e.list),
        category_code(e.category),
        e.category_zh.clone(),
        kind.to_owned(),
        uscc.to_owned(),
        name.to_owned(),
        masked.to_owned(),
        e.legal_representative.clone().unwrap_or_default(),
        e.document_no.clone(),
        e.authority.clone(),
        e.decided_on.to_string(),
        e.legal_basis.clone(),
        e.effective_from.to_string(),
        e.expires_on.to_string(),
        crate::catalogue::snake_name(&e.state),
        e.requested_measures
            .iter()
            .map(|m| m.0.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        e.summary.clone().unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|f| crate::report::csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// The category's code, e.g. `black/food_and_drug`.
pub fn category_code(c: Category) -> String {
    match c {
        Category::Black(b) => format!("black/{}", crate::catalogue::snake_name(&b)),
        Category::Red(r) => format!("red/{}", crate::catalogue::snake_name(&r)),
    }
}

/// A FollowTheMoney entity (the schema OpenSanctions' bulk data uses): an id, a schema
/// name and multi-valued properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtmEntity {
    /// Stable id.
    pub id: String,
    /// FtM schema: `Company`, `Person` or `Sanction`.
    pub schema: String,
    /// Properties, each a list of strings.
    pub properties: std::collections::BTreeMap<String, Vec<String>>,
}

/// The FollowTheMoney entities of a black-list entry: the listed party (`Company` by its
/// code, or `Person` by name only — a person has no public identifier, so each entry
/// names its own) and a `Sanction` linking to it. Red-list entries are not mapped: FtM
/// has no schema for a commendation (docs/decisions.md, 95).
pub fn ftm_entities(e: &PublicEntry) -> Vec<FtmEntity> {
    if e.list != ListKind::Black {
        return Vec::new();
    }
    let props = |pairs: &[(&str, String)]| {
        let mut m = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            if !v.is_empty() {
                m.entry((*k).to_owned())
                    .or_insert_with(Vec::new)
                    .push(v.clone());
            }
        }
        m
    };
    let party = match &e.subject {
        PublicSubject::Organisation { uscc, name } => FtmEntity {
            id: format!("credfed-org-{uscc}"),
            schema: "Company".into(),
            properties: props(&[
                ("name", name.clone()),
                ("registrationNumber", uscc.clone()),
                ("jurisdiction", "cn".into()),
                ("topics", "debarment".into()),
            ]),
        },
        PublicSubject::Person { name, .. } => FtmEntity {
            id: format!("credfed-person-{}", e.id),
            schema: "Person".into(),
            properties: props(&[
                ("name", name.clone()),
                ("country", "cn".into()),
                ("topics", "debarment".into()),
            ]),
        },
    };
    let sanction = FtmEntity {
        id: format!("credfed-entry-{}", e.id),
        schema: "Sanction".into(),
        properties: props(&[
            ("entity", party.id.clone()),
            ("authority", e.authority.clone()),
            ("program", e.category_zh.clone()),
            ("reason", e.summary.clone().unwrap_or_default()),
            ("listingDate", e.decided_on.to_string()),
            ("startDate", e.effective_from.to_string()),
            ("endDate", e.expires_on.to_string()),
            ("status", crate::catalogue::snake_name(&e.state)),
            ("country", "cn".into()),
        ]),
    };
    vec![party, sanction]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sha256;
    use crate::ids::PersonRef;
    use crate::record::{Basis, BlackCategory, ListEntry, RelatedPerson};

    fn person() -> PersonRef {
        PersonRef {
            id_hash: sha256(&[b"publicity-test"]),
            masked: "11****************".into(),
            name: "张三".into(),
        }
    }

    fn entry(category: Category, subject: Subject, related: Vec<RelatedPerson>) -> ListEntry {
        let d = |s: &str| Date::parse(s).unwrap();
        ListEntry {
            category,
            subject,
            related_persons: related,
            basis: Basis {
                document_no: "d".into(),
                authority: "a".into(),
                decided_on: d("2026-01-05"),
                legal_basis: "l".into(),
            },
            effective_from: d("2026-01-05"),
            expires_on: d("2029-01-05"),
            requested_measures: vec![],
            findings: vec![],
            summary: "s".into(),
        }
    }

    fn org() -> Subject {
        Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: "某某公司".into(),
            check_exemption: None,
        }
    }

    #[test]
    fn art11_14_a_record_naming_a_person_is_withheld_and_one_about_an_organisation_published() {
        let black = Category::Black(BlackCategory::FoodAndDrug);
        let plain = Body::ListEntryPublished(entry(black, org(), vec![]));
        assert_eq!(record_publicity(&plain, |_| None), Ok(()));
        let rep = vec![RelatedPerson {
            role: RelatedRole::LegalRepresentative,
            person: person(),
        }];
        let with_rep = Body::ListEntryPublished(entry(black, org(), rep));
        assert_eq!(
            record_publicity(&with_rep, |_| Some(false)),
            Err(Withheld::NamesANaturalPerson)
        );
        let of_person = Body::ListEntryPublished(entry(black, Subject::Person(person()), vec![]));
        assert_eq!(
            record_publicity(&of_person, |_| Some(false)),
            Err(Withheld::NamesANaturalPerson)
        );
        // A follow-up takes the subject of what it follows; unresolved fails closed.
        let id = EntryId(sha256(&[b"e"]));
        let repair = Body::ListEntryRevoked {
            entry: id,
            reason: "r".into(),
        };
        assert_eq!(record_publicity(&repair, |_| Some(false)), Ok(()));
        assert_eq!(
            record_publicity(&repair, |_| Some(true)),
            Err(Withheld::AboutANaturalPerson)
        );
        assert_eq!(
            record_publicity(&repair, |_| None),
            Err(Withheld::Unresolved)
        );
        let evidence = Body::EquivocationEvidence {
            first: vec![],
            second: vec![],
        };
        assert_eq!(
            record_publicity(&evidence, |_| Some(false)),
            Err(Withheld::EquivocationEvidence)
        );
    }

    #[test]
    fn fashi_2017_7_court_listed_debtors_are_shown_by_name_and_masked_number_others_not_at_all() {
        let now = Timestamp(1_780_000_000_000); // 2026-05
        let fold_of = |e: ListEntry| {
            EntryFold::published(
                EntryId(sha256(&[b"x"])),
                crate::state::Origin {
                    pos: crate::state::RecordPos {
                        region: RegionCode::new(310000, "r").unwrap(),
                        seq: 1,
                    },
                    at: now,
                    author: DepartmentId::parse("310000:pub", "a").unwrap(),
                },
                e,
            )
        };
        let debtor = fold_of(entry(
            Category::Black(BlackCategory::DefyingJudgmentOrDecision),
            Subject::Person(person()),
            vec![],
        ));
        let shown = public_entry(&debtor, now).expect("a court-listed debtor is public");
        assert_eq!(
            shown.subject,
            PublicSubject::Person {
                name: "张三".into(),
                masked: "11****************".into()
            }
        );
        assert!(shown.person_basis.unwrap().contains("法释〔2017〕7号"));
        for b in BlackCategory::ALL {
            let f = fold_of(entry(Category::Black(b), Subject::Person(person()), vec![]));
            assert_eq!(
                public_entry(&f, now).is_some(),
                b == BlackCategory::DefyingJudgmentOrDecision,
                "{b:?}"
            );
        }
        // Of an organisation's related persons only the legal representative is named.
        for role in RelatedRole::ALL {
            let f = fold_of(entry(
                Category::Black(BlackCategory::FoodAndDrug),
                org(),
                vec![RelatedPerson {
                    role,
                    person: person(),
                }],
            ));
            let e = public_entry(&f, now).unwrap();
            assert_eq!(
                e.legal_representative.is_some(),
                role == RelatedRole::LegalRepresentative
            );
        }
        // No projection carries the person key, whatever it shows.
        let text = format!("{:?}", public_entry(&debtor, now));
        assert!(!text.contains(&person().id_hash.to_hex()));
    }

    #[test]
    fn csv_fields_cannot_run_as_formulas() {
        assert_eq!(crate::report::csv_field("=1+1"), "'=1+1");
        assert_eq!(crate::report::csv_field("-2,3"), "\"'-2,3\"");
        assert_eq!(crate::report::csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(crate::report::csv_field("某某公司"), "某某公司");
    }
}

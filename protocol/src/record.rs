//! Record bodies: what departments and nodes write into region logs (docs/design.md §4).
//!
//! A body is signed by its author department over its canonical bytes. Field-level
//! rules that need no other record are checked by [`Body::validate`]; rules that need
//! the rest of the federation's state (authorisation, references) live in
//! [`crate::ledger`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::{Domain, Hash256, PublicKey, sha256};
use crate::ids::department::DepartmentIdError;
use crate::ids::uscc::{self, UsccError};
use crate::ids::{DepartmentId, PersonRef, RegionCode, Role, person};
use crate::limits::*;
use crate::time::Date;

/// A field that breaks a rule; the message names the field path and the rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// A USCC rule.
    #[error(transparent)]
    Uscc(#[from] UsccError),
    /// A department id rule.
    #[error(transparent)]
    Department(#[from] DepartmentIdError),
    /// Any other rule, with the field path.
    #[error("{field}: {rule}")]
    Rule {
        /// Dotted path of the field, e.g. `entry.basis.document_no`.
        field: String,
        /// The rule broken, in words.
        rule: String,
    },
}

impl FieldError {
    /// Dotted path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            FieldError::Uscc(e) => e.field(),
            FieldError::Department(e) => e.field(),
            FieldError::Rule { field, .. } => field,
        }
    }
}

fn rule(field: &str, rule: impl Into<String>) -> FieldError {
    FieldError::Rule {
        field: field.to_owned(),
        rule: rule.into(),
    }
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<(), FieldError> {
    if required && value.trim().is_empty() {
        return Err(rule(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(rule(
            field,
            format!("{} bytes exceeds the limit of {max}", value.len()),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(rule(field, "control characters are not allowed"));
    }
    Ok(())
}

fn sorted_unique<T: Ord>(field: &str, items: &[T], max: usize) -> Result<(), FieldError> {
    if items.len() > max {
        return Err(rule(
            field,
            format!("{} items exceeds the limit of {max}", items.len()),
        ));
    }
    // One order for sets keeps the encoding canonical: the same set, the same bytes.
    if !items.windows(2).all(|w| w[0] < w[1]) {
        return Err(rule(field, "must be sorted ascending without duplicates"));
    }
    Ok(())
}

macro_rules! record_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Hash256);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

record_id!(
    /// A list entry, derived from the issuing region, the list and the decision
    /// document number: re-submitting the same decision yields the same id, so a
    /// resumed bulk import does not duplicate.
    EntryId
);
record_id!(
    /// A joint action, derived from the initiating department and its reference.
    ActionId
);
record_id!(
    /// An evaluation result, derived from the evaluating department, scheme and subject.
    EvaluationId
);
record_id!(
    /// An objection case, derived from the recording department and its case number.
    ObjectionId
);
record_id!(
    /// A credit-repair application, derived from the recording department and its case
    /// number.
    RepairApplicationId
);
record_id!(
    /// A written commitment (信用承诺), derived from the recording department and the
    /// acceptance number of the application it was given for.
    CommitmentId
);
record_id!(
    /// A disclosed licensing or penalty decision (双公示), derived from the disclosing
    /// department, the kind and the decision number.
    DisclosureId
);

fn derive_id(kind: &str, parts: &[&[u8]]) -> Hash256 {
    // Length-prefixed parts: no two different part lists give the same preimage.
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(kind.as_bytes());
    buf.push(0);
    for p in parts {
        buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
        buf.extend_from_slice(p);
    }
    sha256(&[crate::crypto::tag(Domain::RecordId, "").as_slice(), &buf])
}

/// Measure code from the catalogue, e.g. `P-TRAVEL-AIR` (restrict air travel): `I-` for
/// an incentive or `P-` for a punishment, then upper-case words joined by `-`. Codes
/// name the measure, not the article it came from, so that measures added by later
/// catalogue versions (e.g. from 合作备忘录) fit the same scheme.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeasureCode(pub String);

impl MeasureCode {
    /// Shape check: `I-` or `P-`, then 1–6 words of `A-Z0-9` joined by `-`, at most
    /// 32 characters.
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        let c = self.0.as_str();
        let ok = c.len() <= 32
            && (c.starts_with("I-") || c.starts_with("P-"))
            && c[2..].split('-').count() <= 6
            && c[2..].split('-').all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            });
        if !ok {
            return Err(rule(
                field,
                format!(
                    "'{}' is not a measure code like P-TRAVEL-AIR",
                    c.chars().take(40).collect::<String>()
                ),
            ));
        }
        Ok(())
    }
}

/// Red list (诚信典型红名单) or black list (严重失信主体黑名单).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Trustworthy exemplars: joint incentives.
    Red,
    /// Seriously untrustworthy subjects: joint punishment.
    Black,
}

/// Sources of red-list exemplars (article 三).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedSource {
    /// 信用分类监管确定的信用状况良好的行政相对人.
    GoodCreditClassification,
    /// 诚信道德模范.
    MoralModel,
    /// 优秀青年志愿者.
    OutstandingYouthVolunteer,
    /// 行业协会商会推荐的诚信会员.
    AssociationRecommendedMember,
    /// 新闻媒体挖掘的诚信主体.
    MediaIdentified,
    /// 无不良信用记录者 (e.g. three years without an adverse record, article 四).
    NoAdverseRecord,
}

/// Seriously untrustworthy conduct (article 九), one variant per field the article names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlackCategory {
    // 一、严重危害人民群众身体健康和生命安全
    /// 食品药品.
    FoodAndDrug,
    /// 生态环境.
    Environment,
    /// 工程质量.
    ConstructionQuality,
    /// 安全生产.
    WorkSafety,
    /// 消防安全.
    FireSafety,
    /// 强制性产品认证.
    CompulsoryCertification,
    // 二、严重破坏市场公平竞争秩序和社会正常秩序
    /// 贿赂.
    Bribery,
    /// 逃税骗税.
    TaxEvasionOrFraud,
    /// 恶意逃废债务.
    MaliciousDebtEvasion,
    /// 恶意拖欠货款或服务费.
    MaliciousPaymentArrears,
    /// 恶意欠薪.
    MaliciousWageArrears,
    /// 非法集资.
    IllegalFundraising,
    /// 合同欺诈.
    ContractFraud,
    /// 传销.
    PyramidSelling,
    /// 无证照经营.
    UnlicensedOperation,
    /// 制售假冒伪劣产品.
    CounterfeitGoods,
    /// 故意侵犯知识产权.
    IntellectualPropertyInfringement,
    /// 出借和借用资质投标.
    QualificationLending,
    /// 围标串标.
    BidRigging,
    /// 虚假广告.
    FalseAdvertising,
    /// 侵害消费者或证券期货投资者合法权益.
    ConsumerOrInvestorHarm,
    /// 严重破坏网络空间传播秩序.
    CyberspaceDisorder,
    /// 聚众扰乱社会秩序.
    DisturbingPublicOrder,
    // 三、拒不履行法定义务，严重影响司法机关、行政机关公信力
    /// 有履行能力但拒不履行、逃避执行判决或决定.
    DefyingJudgmentOrDecision,
    // 四、拒不履行国防义务
    /// 拒绝、逃避兵役.
    EvadingMilitaryService,
    /// 拒绝、拖延民用资源征用或者阻碍对被征用的民用资源进行改造.
    ObstructingCivilResourceRequisition,
    /// 危害国防利益，破坏国防设施.
    HarmingNationalDefence,
}

impl BlackCategory {
    /// Every category, in article order.
    pub const ALL: [BlackCategory; 27] = {
        use BlackCategory::*;
        [
            FoodAndDrug,
            Environment,
            ConstructionQuality,
            WorkSafety,
            FireSafety,
            CompulsoryCertification,
            Bribery,
            TaxEvasionOrFraud,
            MaliciousDebtEvasion,
            MaliciousPaymentArrears,
            MaliciousWageArrears,
            IllegalFundraising,
            ContractFraud,
            PyramidSelling,
            UnlicensedOperation,
            CounterfeitGoods,
            IntellectualPropertyInfringement,
            QualificationLending,
            BidRigging,
            FalseAdvertising,
            ConsumerOrInvestorHarm,
            CyberspaceDisorder,
            DisturbingPublicOrder,
            DefyingJudgmentOrDecision,
            EvadingMilitaryService,
            ObstructingCivilResourceRequisition,
            HarmingNationalDefence,
        ]
    };

    /// Which of the four groups of article 九 the category belongs to (1–4).
    pub fn group(self) -> u8 {
        use BlackCategory::*;
        match self {
            FoodAndDrug
            | Environment
            | ConstructionQuality
            | WorkSafety
            | FireSafety
            | CompulsoryCertification => 1,
            DefyingJudgmentOrDecision => 3,
            EvadingMilitaryService
            | ObstructingCivilResourceRequisition
            | HarmingNationalDefence => 4,
            _ => 2,
        }
    }

    /// The field as the guidance names it.
    pub fn name_zh(self) -> &'static str {
        use BlackCategory::*;
        match self {
            FoodAndDrug => "食品药品",
            Environment => "生态环境",
            ConstructionQuality => "工程质量",
            WorkSafety => "安全生产",
            FireSafety => "消防安全",
            CompulsoryCertification => "强制性产品认证",
            Bribery => "贿赂",
            TaxEvasionOrFraud => "逃税骗税",
            MaliciousDebtEvasion => "恶意逃废债务",
            MaliciousPaymentArrears => "恶意拖欠货款或服务费",
            MaliciousWageArrears => "恶意欠薪",
            IllegalFundraising => "非法集资",
            ContractFraud => "合同欺诈",
            PyramidSelling => "传销",
            UnlicensedOperation => "无证照经营",
            CounterfeitGoods => "制售假冒伪劣产品",
            IntellectualPropertyInfringement => "故意侵犯知识产权",
            QualificationLending => "出借和借用资质投标",
            BidRigging => "围标串标",
            FalseAdvertising => "虚假广告",
            ConsumerOrInvestorHarm => "侵害消费者或证券期货投资者合法权益",
            CyberspaceDisorder => "严重破坏网络空间传播秩序",
            DisturbingPublicOrder => "聚众扰乱社会秩序",
            DefyingJudgmentOrDecision => "有履行能力但拒不履行、逃避执行",
            EvadingMilitaryService => "拒绝、逃避兵役",
            ObstructingCivilResourceRequisition => "拒绝、拖延民用资源征用或阻碍改造",
            HarmingNationalDefence => "危害国防利益、破坏国防设施",
        }
    }
}

/// What an entry is about; the variant also fixes which list it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A red-list source.
    Red(RedSource),
    /// A black-list field.
    Black(BlackCategory),
}

impl Category {
    /// The list this category belongs to.
    pub fn list(self) -> ListKind {
        match self {
            Category::Red(_) => ListKind::Red,
            Category::Black(_) => ListKind::Black,
        }
    }
}

/// An exemption for an early pilot code that fails the GB 32100 check character
/// but is legally valid. Recorded, never silent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckExemption {
    /// Why the code is accepted (e.g. the registration authority's confirmation number).
    pub reason: String,
}

/// The subject of an entry or evaluation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A legal person or other organisation, by Unified Social Credit Code.
    Organisation {
        /// The 18-character code.
        uscc: String,
        /// Registered name.
        name: String,
        /// Present only for a code that fails the check character.
        check_exemption: Option<CheckExemption>,
    },
    /// A natural person, by keyed hash and masked number.
    Person(PersonRef),
}

/// The index key of a subject: what a check looks up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKey {
    /// By USCC.
    Uscc(String),
    /// By person key (docs/privacy.md).
    Person(Hash256),
}

impl Subject {
    /// The key a check uses to find this subject.
    pub fn key(&self) -> SubjectKey {
        match self {
            Subject::Organisation { uscc, .. } => SubjectKey::Uscc(uscc.clone()),
            Subject::Person(p) => SubjectKey::Person(p.id_hash),
        }
    }

    fn validate(&self, field: &'static str) -> Result<(), FieldError> {
        match self {
            Subject::Organisation {
                uscc,
                name,
                check_exemption,
            } => {
                text("subject.name", name, MAX_TEXT_BYTES, true)?;
                match (uscc::validate(uscc, field), check_exemption) {
                    (Ok(()), None) => Ok(()),
                    (Ok(()), Some(_)) => Err(rule(
                        "subject.check_exemption",
                        "given for a code whose check character is correct; remove the exemption",
                    )),
                    (Err(UsccError::Check { .. }), Some(ex)) => {
                        text(
                            "subject.check_exemption.reason",
                            &ex.reason,
                            MAX_TEXT_BYTES,
                            true,
                        )?;
                        uscc::validate_structure(uscc, field).map_err(FieldError::from)
                    }
                    (Err(e), _) => Err(e.into()),
                }
            }
            Subject::Person(p) => validate_person(p, "subject"),
        }
    }
}

fn validate_person(p: &PersonRef, field: &str) -> Result<(), FieldError> {
    if !person::is_masked_form(&p.masked) {
        return Err(rule(
            &format!("{field}.masked"),
            "must be the 2-digit provincial prefix and 16 '*' (a clear number never appears in a record; docs/privacy.md)",
        ));
    }
    text(&format!("{field}.name"), &p.name, MAX_TEXT_BYTES, true)
}

/// The role of a related person of an organisation (article 十四; the roles the
/// consumption restrictions name in 法释〔2015〕17号 第三条, and article 十's senior
/// management).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelatedRole {
    /// 法定代表人.
    LegalRepresentative,
    /// 主要负责人.
    PrincipalResponsible,
    /// 实际控制人.
    ActualController,
    /// 直接责任人员 (影响债务履行的直接责任人员; 对失信行为负有直接责任的人员, including
    /// responsible registered practitioners, article 十).
    DirectlyResponsible,
    /// 董事、监事、高级管理人员.
    DirectorSupervisorOrSeniorManager,
}

impl RelatedRole {
    /// Every role.
    pub const ALL: [RelatedRole; 5] = [
        RelatedRole::LegalRepresentative,
        RelatedRole::PrincipalResponsible,
        RelatedRole::ActualController,
        RelatedRole::DirectlyResponsible,
        RelatedRole::DirectorSupervisorOrSeniorManager,
    ];

    /// The role as the law names it.
    pub fn name_zh(self) -> &'static str {
        match self {
            RelatedRole::LegalRepresentative => "法定代表人",
            RelatedRole::PrincipalResponsible => "主要负责人",
            RelatedRole::ActualController => "实际控制人",
            RelatedRole::DirectlyResponsible => "直接责任人员",
            RelatedRole::DirectorSupervisorOrSeniorManager => "董事、监事、高级管理人员",
        }
    }
}

/// A finding of the decision an entry rests on that a measure may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// 有履行能力但拒不履行: the subject has the means to perform the judgment or decision
    /// and refuses (article 十一's condition for the travel and consumption restrictions).
    /// Only an entry of article 九's third group can state it.
    AbleButRefuses,
}

/// A person recorded with an organisation's entry, so measures reach people (article 十四).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RelatedPerson {
    /// Their role in the organisation.
    pub role: RelatedRole,
    /// Who they are.
    pub person: PersonRef,
}

/// The decision an entry rests on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Basis {
    /// Decision document number, e.g. `沪市监处〔2026〕12号`.
    pub document_no: String,
    /// Deciding authority.
    pub authority: String,
    /// Date of the decision.
    pub decided_on: Date,
    /// Legal basis (law, article).
    pub legal_basis: String,
}

/// The content of a list entry (as published, or as amended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Red source or black category; fixes the list.
    pub category: Category,
    /// Who is listed.
    pub subject: Subject,
    /// Persons the measures also reach (article 十四); sorted, unique.
    pub related_persons: Vec<RelatedPerson>,
    /// The decision.
    pub basis: Basis,
    /// First day the entry is in force.
    pub effective_from: Date,
    /// First day it is no longer in force (惩戒期限 ends the day before).
    pub expires_on: Date,
    /// Measures the publisher asks others to apply; sorted, unique.
    pub requested_measures: Vec<MeasureCode>,
    /// Findings of the decision that measures may require; sorted, unique.
    pub findings: Vec<Finding>,
    /// A short public description.
    pub summary: String,
}

impl ListEntry {
    /// The index keys of everyone the entry names: its subject and its related persons
    /// (article 十四: measures reach the persons, so checks must find them).
    pub fn named_keys(&self) -> std::collections::BTreeSet<SubjectKey> {
        let mut keys = std::collections::BTreeSet::new();
        keys.insert(self.subject.key());
        for p in &self.related_persons {
            keys.insert(SubjectKey::Person(p.person.id_hash));
        }
        keys
    }

    /// The roles in which the entry names the subject with `key` (none if it does not).
    pub fn roles_of(&self, key: &SubjectKey) -> Vec<crate::catalogue::Bearer> {
        let mut out = Vec::new();
        if &self.subject.key() == key {
            out.push(crate::catalogue::Bearer::Subject(
                crate::catalogue::SubjectKind::of(&self.subject),
            ));
        }
        for p in &self.related_persons {
            if &SubjectKey::Person(p.person.id_hash) == key {
                out.push(crate::catalogue::Bearer::Related(p.role));
            }
        }
        out
    }

    fn validate(&self) -> Result<(), FieldError> {
        self.subject.validate("subject.uscc")?;
        sorted_unique(
            "entry.related_persons",
            &self.related_persons,
            MAX_RELATED_PERSONS,
        )?;
        if !self.related_persons.is_empty() && matches!(self.subject, Subject::Person(_)) {
            return Err(rule(
                "entry.related_persons",
                "only an organisation's entry names related persons (article 十四)",
            ));
        }
        for rp in &self.related_persons {
            validate_person(&rp.person, "entry.related_persons[]")?;
        }
        // One person, one role entry each: the same person in two roles is listed twice.
        let mut seen = std::collections::BTreeSet::new();
        for rp in &self.related_persons {
            if !seen.insert((rp.person.id_hash, rp.role)) {
                return Err(rule(
                    "entry.related_persons",
                    "the same person appears twice in the same role",
                ));
            }
        }
        text(
            "entry.basis.document_no",
            &self.basis.document_no,
            MAX_SHORT_TEXT_BYTES,
            true,
        )?;
        text(
            "entry.basis.authority",
            &self.basis.authority,
            MAX_TEXT_BYTES,
            true,
        )?;
        text(
            "entry.basis.legal_basis",
            &self.basis.legal_basis,
            MAX_TEXT_BYTES,
            true,
        )?;
        if self.expires_on <= self.effective_from {
            return Err(rule(
                "entry.expires_on",
                format!(
                    "{} must be after effective_from {}",
                    self.expires_on, self.effective_from
                ),
            ));
        }
        if self.effective_from < self.basis.decided_on {
            return Err(rule(
                "entry.effective_from",
                "must not precede the decision date",
            ));
        }
        validate_measures(
            "entry.requested_measures",
            &self.requested_measures,
            self.category.list(),
        )?;
        sorted_unique("entry.findings", &self.findings, 8)?;
        if self.findings.contains(&Finding::AbleButRefuses)
            && self.category != Category::Black(BlackCategory::DefyingJudgmentOrDecision)
        {
            return Err(rule(
                "entry.findings",
                "able_but_refuses (有履行能力但拒不履行) is a finding of article 九's third group only (category defying_judgment_or_decision)",
            ));
        }
        text("entry.summary", &self.summary, MAX_TEXT_BYTES, false)
    }
}

fn validate_measures(
    field: &str,
    measures: &[MeasureCode],
    list: ListKind,
) -> Result<(), FieldError> {
    sorted_unique(field, measures, MAX_MEASURES)?;
    let want = match list {
        ListKind::Red => b'I',
        ListKind::Black => b'P',
    };
    for m in measures {
        m.validate(field)?;
        if m.0.as_bytes()[0] != want {
            return Err(rule(
                field,
                format!("{} is not a measure for the {list:?} list", m.0),
            ));
        }
    }
    Ok(())
}

/// Basis of a credit repair (article 二十一).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairBasis {
    /// Conduct corrected and effects removed within the period.
    CorrectedWithinPeriod,
    /// A natural person's public-service (社会公益服务) repair.
    PublicService,
}

/// A credit evaluation or classification result (articles 六, 十六).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// A class such as A, B, C, D (one to three ASCII letters, optional +/-).
    Class([u8; 4]),
    /// A score in thousandths of the scheme's maximum (0–1000).
    Score(u16),
}

/// Result of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Who was evaluated.
    pub subject: Subject,
    /// Evaluation scheme, e.g. `tax-credit-abcd` (a short code).
    pub scheme: String,
    /// The result.
    pub grade: Grade,
    /// When it was determined.
    pub evaluated_on: Date,
    /// First day it no longer holds.
    pub valid_until: Date,
}

/// Joint incentive or joint punishment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// 守信联合激励, rests on a red-list entry.
    Incentive,
    /// 失信联合惩戒, rests on a black-list entry.
    Punishment,
}

impl ActionKind {
    /// The list an action of this kind must rest on.
    pub fn list(self) -> ListKind {
        match self {
            ActionKind::Incentive => ListKind::Red,
            ActionKind::Punishment => ListKind::Black,
        }
    }
}

/// Regions asked to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// Every member of the manifest other than the initiator's.
    AllMembers,
    /// These provincial regions (sorted, unique).
    Regions(Vec<RegionCode>),
}

/// A joint action (articles 十五, 十六, 十八: 发起).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JointAction {
    /// Action document reference, unique for the initiating department.
    pub reference: String,
    /// Incentive or punishment.
    pub kind: ActionKind,
    /// The entry it rests on.
    pub entry: EntryId,
    /// Regions asked to act.
    pub targets: Targets,
    /// Measures asked for (sorted, unique, matching the kind).
    pub measures: Vec<MeasureCode>,
    /// Last day to acknowledge.
    pub respond_by: Date,
}

/// A target region's answer (articles 十五, 十八: 响应).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckDecision {
    /// All measures accepted.
    Accepted,
    /// Declined, with the reason.
    Declined {
        /// Why.
        reason: String,
    },
    /// Some measures accepted.
    Partly {
        /// Which (sorted, unique, a subset of the action's).
        accepted: Vec<MeasureCode>,
        /// Why not the rest.
        reason: String,
    },
}

/// How an objection ended (article 二十二).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectionOutcome {
    /// The information stands; the entry applies again.
    Upheld,
    /// The information was corrected (by an amendment); the entry applies as amended.
    Corrected,
    /// The information was wrong; the entry is revoked.
    Revoked,
}

/// How the issuing region decided a credit-repair application (article 二十一).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairOutcome {
    /// Granted: the entry is repaired and every region lifts what it executed.
    Repaired,
    /// Examined and refused: the entry stays as it was.
    Refused,
    /// Not accepted for examination (不予受理: e.g. incomplete or not the subject's own).
    NotAccepted,
}

/// A subject's written commitment to supply, by a deadline, the materials an
/// application lacked when it was accepted (容缺受理, article 四: 如其书面承诺在规定期限内
/// 提供，应先行受理). Recorded by the accepting department of any region; only that
/// region settles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// Who committed.
    pub subject: Subject,
    /// Acceptance number of the application at the recording department (受理编号).
    pub acceptance_no: String,
    /// What was applied for (the licence or service).
    pub matter: String,
    /// The materials accepted as missing, to be supplied (1 to [`MAX_WAIVED`]).
    pub waived: Vec<String>,
    /// Day the commitment was signed and the application accepted.
    pub made_on: Date,
    /// Last day to supply the materials (规定期限).
    pub due_on: Date,
}

/// Most materials one commitment may waive: an application lacking more is not
/// "部分申报材料不齐备" (article 四), and the bound keeps a record small.
pub const MAX_WAIVED: usize = 16;

/// Longest term a commitment may give, in days: the federation's own bound (no national
/// figure; docs/decisions.md), so that a typo of a year cannot leave a commitment open
/// for decades.
pub const MAX_COMMITMENT_TERM_DAYS: i32 = 366;

/// How a commitment ended (article 四).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitmentOutcome {
    /// The materials were supplied by the deadline.
    Fulfilled,
    /// They were not: the deadline passed (违背承诺). Every region's checks show it.
    Breached,
}

/// Which decisions article 十七 makes public (双公示).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisclosureKind {
    /// 行政许可.
    Licensing,
    /// 行政处罚.
    Penalty,
}

/// An administrative licensing or penalty decision made public (双公示, article 十七:
/// 7个工作日内通过政府网站公开).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// Licensing or penalty.
    pub kind: DisclosureKind,
    /// Whom the decision concerns.
    pub subject: Subject,
    /// Decision document number (许可决定书 / 处罚决定书文号).
    pub decision_no: String,
    /// The deciding authority.
    pub authority: String,
    /// Day of the decision: the 7 working days count from it.
    pub decided_on: Date,
    /// What was decided (licence granted, penalty imposed, legal basis).
    pub summary: String,
    /// Last day it is shown publicly (公示期).
    pub public_until: Date,
}

/// Every record kind (docs/design.md §4). The variant order is part of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The region node binds a department's id, roles and key (article 十五).
    DepartmentRegistered {
        /// The department.
        department: DepartmentId,
        /// Its name.
        name: String,
        /// Its roles (sorted, unique).
        roles: Vec<Role>,
        /// Its signing key.
        key: PublicKey,
    },
    /// The department may no longer write.
    DepartmentRevoked {
        /// The department.
        department: DepartmentId,
        /// Why.
        reason: String,
    },
    /// A red or black list entry (articles 三, 九, 十四, 十九).
    ListEntryPublished(ListEntry),
    /// The issuing region corrects an entry (article 二十二).
    ListEntryAmended {
        /// Which entry.
        entry: EntryId,
        /// The entry as it now reads (the list may not change).
        amended: ListEntry,
        /// Why.
        reason: String,
    },
    /// The issuing region withdraws wrong information (article 二十二).
    ListEntryRevoked {
        /// Which entry.
        entry: EntryId,
        /// Why.
        reason: String,
    },
    /// Credit repair (article 二十一).
    ListEntryRepaired {
        /// Which entry.
        entry: EntryId,
        /// On what basis.
        basis: RepairBasis,
        /// Details.
        reason: String,
    },
    /// A credit evaluation result (articles 六, 十六).
    EvaluationPublished(Evaluation),
    /// A joint incentive or punishment (articles 十五, 十六, 十八).
    JointActionInitiated(JointAction),
    /// A target region's acknowledgement (articles 十五, 十八).
    JointActionAcknowledged {
        /// Which action.
        action: ActionId,
        /// The answer.
        decision: AckDecision,
        /// Departments that will implement (sorted, unique).
        implementing: Vec<DepartmentId>,
    },
    /// Execution feedback (articles 十八, 二十三).
    MeasureExecuted {
        /// Which action.
        action: ActionId,
        /// Which measure.
        measure: MeasureCode,
        /// Reference of the implementing decision.
        reference: String,
        /// When.
        executed_on: Date,
    },
    /// A measure no longer applied.
    MeasureLifted {
        /// Which action.
        action: ActionId,
        /// Which measure.
        measure: MeasureCode,
        /// Reference of the lifting decision.
        reference: String,
        /// Why.
        reason: String,
    },
    /// An objection or complaint, recordable by any region; suspends the entry or
    /// evaluation it is about (article 二十二).
    ObjectionFiled {
        /// Case number at the recording department.
        case_no: String,
        /// What it is about.
        target: ObjectionTarget,
        /// Grounds.
        grounds: String,
        /// Day filed.
        filed_on: Date,
    },
    /// The issuing region's resolution (article 二十二).
    ObjectionResolved {
        /// Which objection.
        objection: ObjectionId,
        /// Outcome.
        outcome: ObjectionOutcome,
        /// Explanation.
        note: String,
    },
    /// Two valid envelopes with the same (region, seq): proof that a node equivocated.
    EquivocationEvidence {
        /// First envelope, verbatim.
        first: Vec<u8>,
        /// Second envelope, verbatim.
        second: Vec<u8>,
    },
    /// The issuing region withdraws an evaluation result (articles 二十二, 十六).
    EvaluationRevoked {
        /// Which evaluation.
        evaluation: EvaluationId,
        /// Why.
        reason: String,
    },
    /// A subject applies for credit repair of a black-list entry; recorded by a
    /// department of any region and addressed to the entry's issuing region (articles
    /// 十八, 二十一: 信用修复, 谁认定、谁修复).
    RepairApplied {
        /// Which entry.
        entry: EntryId,
        /// Case number at the recording department.
        case_no: String,
        /// The basis the subject claims.
        basis: RepairBasis,
        /// What the subject did (performed, paid, corrected, public service …).
        grounds: String,
        /// Day the subject applied.
        filed_on: Date,
    },
    /// The issuing region's decision on a repair application (article 二十一).
    RepairDecided {
        /// Which entry (so that a verifier following the entry finds the decision).
        entry: EntryId,
        /// Which application.
        application: RepairApplicationId,
        /// The decision.
        outcome: RepairOutcome,
        /// The reasons given to the subject.
        reason: String,
    },
    /// A subject's written commitment under 容缺受理 (article 四).
    CommitmentMade(Commitment),
    /// The recording region settles a commitment: fulfilled by the deadline, or breached
    /// after it (article 四).
    CommitmentSettled {
        /// Which commitment.
        commitment: CommitmentId,
        /// How it ended.
        outcome: CommitmentOutcome,
        /// Day the materials were supplied (fulfilled) or the breach was found (breached).
        settled_on: Date,
        /// What was supplied, or what is missing.
        note: String,
    },
    /// A licensing or penalty decision made public (双公示, article 十七).
    DecisionDisclosed(Disclosure),
}

/// What an objection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectionTarget {
    /// A list entry.
    Entry(EntryId),
    /// An evaluation result.
    Evaluation(EvaluationId),
}

impl std::fmt::Display for ObjectionTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectionTarget::Entry(id) => write!(f, "entry {id}"),
            ObjectionTarget::Evaluation(id) => write!(f, "evaluation {id}"),
        }
    }
}

/// The kind of a body, without its fields (for metrics, authorisation tables, docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum BodyKind {
    DepartmentRegistered,
    DepartmentRevoked,
    ListEntryPublished,
    ListEntryAmended,
    ListEntryRevoked,
    ListEntryRepaired,
    EvaluationPublished,
    JointActionInitiated,
    JointActionAcknowledged,
    MeasureExecuted,
    MeasureLifted,
    ObjectionFiled,
    ObjectionResolved,
    EquivocationEvidence,
    EvaluationRevoked,
    RepairApplied,
    RepairDecided,
    CommitmentMade,
    CommitmentSettled,
    DecisionDisclosed,
}

impl Body {
    /// Decodes body bytes (canonical, size-limited).
    pub fn decode(bytes: &[u8]) -> Result<Body, crate::codec::DecodeError> {
        crate::codec::decode(bytes, MAX_EVIDENCE_BODY_BYTES, "body").and_then(|b: Body| {
            if !matches!(b, Body::EquivocationEvidence { .. }) && bytes.len() > MAX_BODY_BYTES {
                return Err(crate::codec::DecodeError::TooLarge {
                    what: "body",
                    len: bytes.len(),
                    limit: MAX_BODY_BYTES,
                });
            }
            Ok(b)
        })
    }

    /// The canonical bytes of this body.
    pub fn encode(&self) -> Vec<u8> {
        // Bodies contain only strings, integers, fixed arrays and sequences of known
        // length: bincode cannot fail on them.
        crate::codec::encode(self).unwrap_or_default()
    }

    /// Its kind.
    pub fn kind(&self) -> BodyKind {
        match self {
            Body::DepartmentRegistered { .. } => BodyKind::DepartmentRegistered,
            Body::DepartmentRevoked { .. } => BodyKind::DepartmentRevoked,
            Body::ListEntryPublished(_) => BodyKind::ListEntryPublished,
            Body::ListEntryAmended { .. } => BodyKind::ListEntryAmended,
            Body::ListEntryRevoked { .. } => BodyKind::ListEntryRevoked,
            Body::ListEntryRepaired { .. } => BodyKind::ListEntryRepaired,
            Body::EvaluationPublished(_) => BodyKind::EvaluationPublished,
            Body::JointActionInitiated(_) => BodyKind::JointActionInitiated,
            Body::JointActionAcknowledged { .. } => BodyKind::JointActionAcknowledged,
            Body::MeasureExecuted { .. } => BodyKind::MeasureExecuted,
            Body::MeasureLifted { .. } => BodyKind::MeasureLifted,
            Body::ObjectionFiled { .. } => BodyKind::ObjectionFiled,
            Body::ObjectionResolved { .. } => BodyKind::ObjectionResolved,
            Body::EquivocationEvidence { .. } => BodyKind::EquivocationEvidence,
            Body::EvaluationRevoked { .. } => BodyKind::EvaluationRevoked,
            Body::RepairApplied { .. } => BodyKind::RepairApplied,
            Body::RepairDecided { .. } => BodyKind::RepairDecided,
            Body::CommitmentMade(_) => BodyKind::CommitmentMade,
            Body::CommitmentSettled { .. } => BodyKind::CommitmentSettled,
            Body::DecisionDisclosed(_) => BodyKind::DecisionDisclosed,
        }
    }

    /// Field rules that need no other record.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Body::DepartmentRegistered {
                department,
                name,
                roles,
                key: _,
            } => {
                department.validate("department")?;
                text("name", name, MAX_TEXT_BYTES, true)?;
                if roles.is_empty() {
                    return Err(rule("roles", "at least one role is required"));
                }
                sorted_unique("roles", roles, Role::ALL.len())
            }
            Body::DepartmentRevoked { department, reason } => {
                department.validate("department")?;
                text("reason", reason, MAX_TEXT_BYTES, true)
            }
            Body::ListEntryPublished(e) => e.validate(),
            Body::ListEntryAmended {
                amended, reason, ..
            } => {
                amended.validate()?;
                text("reason", reason, MAX_TEXT_BYTES, true)
            }
            Body::ListEntryRevoked { reason, .. }
            | Body::ListEntryRepaired { reason, .. }
            | Body::EvaluationRevoked { reason, .. } => {
                text("reason", reason, MAX_TEXT_BYTES, true)
            }
            Body::EvaluationPublished(ev) => {
                ev.subject.validate("subject.uscc")?;
                text("evaluation.scheme", &ev.scheme, MAX_SHORT_TEXT_BYTES, true)?;
                match ev.grade {
                    Grade::Class(c) => {
                        let len = c.iter().position(|&b| b == 0).unwrap_or(4);
                        let ok = len >= 1
                            && c[..len].iter().enumerate().all(|(i, &b)| {
                                b.is_ascii_uppercase() || (i > 0 && (b == b'+' || b == b'-'))
                            })
                            && c[len..].iter().all(|&b| b == 0);
                        if !ok {
                            return Err(rule(
                                "evaluation.grade",
                                "a class is 1-4 upper-case letters (then '+'/'-'), zero-padded",
                            ));
                        }
                    }
                    Grade::Score(s) if s > 1000 => {
                        return Err(rule("evaluation.grade", "a score is 0-1000 thousandths"));
                    }
                    Grade::Score(_) => {}
                }
                if ev.valid_until <= ev.evaluated_on {
                    return Err(rule("evaluation.valid_until", "must be after evaluated_on"));
                }
                Ok(())
            }
            Body::JointActionInitiated(a) => {
                text("action.reference", &a.reference, MAX_SHORT_TEXT_BYTES, true)?;
                if let Targets::Regions(r) = &a.targets {
                    if r.is_empty() {
                        return Err(rule(
                            "action.targets",
                            "name at least one region, or all_members",
                        ));
                    }
                    sorted_unique("action.targets", r, MAX_MEMBERS)?;
                    if let Some(bad) = r.iter().find(|c| !c.is_province()) {
                        return Err(rule(
                            "action.targets",
                            format!(
                                "{bad} is not a provincial-level code; targets are member regions"
                            ),
                        ));
                    }
                }
                if a.measures.is_empty() {
                    return Err(rule("action.measures", "at least one measure is required"));
                }
                validate_measures("action.measures", &a.measures, a.kind.list())
            }
            Body::JointActionAcknowledged {
                decision,
                implementing,
                ..
            } => {
                match decision {
                    AckDecision::Accepted => {}
                    AckDecision::Declined { reason } => {
                        text("decision.reason", reason, MAX_TEXT_BYTES, true)?
                    }
                    AckDecision::Partly { accepted, reason } => {
                        text("decision.reason", reason, MAX_TEXT_BYTES, true)?;
                        if accepted.is_empty() {
                            return Err(rule(
                                "decision.accepted",
                                "a partial acceptance names at least one measure",
                            ));
                        }
                        sorted_unique("decision.accepted", accepted, MAX_MEASURES)?;
                        for m in accepted {
                            m.validate("decision.accepted")?;
                        }
                    }
                }
                sorted_unique("implementing", implementing, MAX_IMPLEMENTERS)?;
                if !matches!(decision, AckDecision::Declined { .. }) && implementing.is_empty() {
                    return Err(rule(
                        "implementing",
                        "name the implementing departments (article 十五)",
                    ));
                }
                for d in implementing {
                    d.validate("implementing[]")?;
                }
                Ok(())
            }
            Body::MeasureExecuted {
                measure, reference, ..
            } => {
                measure.validate("measure")?;
                text("reference", reference, MAX_SHORT_TEXT_BYTES, true)
            }
            Body::MeasureLifted {
                measure,
                reference,
                reason,
                ..
            } => {
                measure.validate("measure")?;
                text("reference", reference, MAX_SHORT_TEXT_BYTES, true)?;
                text("reason", reason, MAX_TEXT_BYTES, true)
            }
            Body::ObjectionFiled {
                case_no, grounds, ..
            } => {
                text("case_no", case_no, MAX_SHORT_TEXT_BYTES, true)?;
                text("grounds", grounds, MAX_TEXT_BYTES, true)
            }
            Body::ObjectionResolved { note, .. } => text("note", note, MAX_TEXT_BYTES, true),
            Body::RepairApplied {
                case_no, grounds, ..
            } => {
                text("case_no", case_no, MAX_SHORT_TEXT_BYTES, true)?;
                text("grounds", grounds, MAX_TEXT_BYTES, true)
            }
            Body::RepairDecided { reason, .. } => text("reason", reason, MAX_TEXT_BYTES, true),
            Body::CommitmentMade(c) => c.validate(),
            Body::CommitmentSettled { note, .. } => text("note", note, MAX_TEXT_BYTES, true),
            Body::DecisionDisclosed(d) => d.validate(),
            Body::EquivocationEvidence { first, second } => {
                if first == second {
                    return Err(rule("second", "evidence needs two different envelopes"));
                }
                Ok(())
            }
        }
    }
}

/// The id of the entry a publication creates in `region`: list kind and decision
/// document number identify a decision within a region.
pub fn entry_id(region: RegionCode, entry: &ListEntry) -> EntryId {
    let list = [entry.category.list() as u8];
    let subject = crate::codec::encode(&entry.subject.key()).unwrap_or_default();
    EntryId(derive_id(
        "entry",
        &[
            &region.code().to_le_bytes(),
            &list,
            entry.basis.document_no.as_bytes(),
            &subject,
        ],
    ))
}

/// The id of an action initiated by `author`.
pub fn action_id(author: &DepartmentId, reference: &str) -> ActionId {
    ActionId(derive_id(
        "action",
        &[author.to_string().as_bytes(), reference.as_bytes()],
    ))
}

/// The id of an evaluation by `author` in `scheme` for `subject` on `evaluated_on`.
pub fn evaluation_id(author: &DepartmentId, ev: &Evaluation) -> EvaluationId {
    let subject = crate::codec::encode(&ev.subject.key()).unwrap_or_default();
    let day = ev.evaluated_on.days_since_epoch().to_le_bytes();
    EvaluationId(derive_id(
        "evaluation",
        &[
            author.to_string().as_bytes(),
            ev.scheme.as_bytes(),
            &subject,
            &day,
        ],
    ))
}

/// The id of an objection recorded by `author` under `case_no`.
pub fn objection_id(author: &DepartmentId, case_no: &str) -> ObjectionId {
    ObjectionId(derive_id(
        "objection",
        &[author.to_string().as_bytes(), case_no.as_bytes()],
    ))
}

/// The id of the commitment `author` recorded for its application `acceptance_no`.
pub fn commitment_id(author: &DepartmentId, acceptance_no: &str) -> CommitmentId {
    CommitmentId(derive_id(
        "commitment",
        &[author.to_string().as_bytes(), acceptance_no.as_bytes()],
    ))
}

/// The id of the decision `author` disclosed as `kind` under `decision_no`.
pub fn disclosure_id(
    author: &DepartmentId,
    kind: DisclosureKind,
    decision_no: &str,
) -> DisclosureId {
    DisclosureId(derive_id(
        "disclosure",
        &[
            author.to_string().as_bytes(),
            &[kind as u8],
            decision_no.as_bytes(),
        ],
    ))
}

impl Disclosure {
    /// Field rules that need no other record.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.subject.validate("disclosure.subject.uscc")?;
        text(
            "disclosure.decision_no",
            &self.decision_no,
            MAX_SHORT_TEXT_BYTES,
            true,
        )?;
        text(
            "disclosure.authority",
            &self.authority,
            MAX_TEXT_BYTES,
            true,
        )?;
        text("disclosure.summary", &self.summary, MAX_TEXT_BYTES, true)?;
        if self.public_until <= self.decided_on {
            return Err(rule(
                "disclosure.public_until",
                "the disclosure period must end after decided_on (article 十七)",
            ));
        }
        Ok(())
    }
}

impl Commitment {
    /// Field rules that need no other record (article 四: a commitment names what is
    /// missing and a deadline).
    pub fn validate(&self) -> Result<(), FieldError> {
        self.subject.validate("commitment.subject.uscc")?;
        text(
            "commitment.acceptance_no",
            &self.acceptance_no,
            MAX_SHORT_TEXT_BYTES,
            true,
        )?;
        text("commitment.matter", &self.matter, MAX_TEXT_BYTES, true)?;
        if self.waived.is_empty() {
            return Err(rule(
                "commitment.waived",
                "name at least one material the subject commits to supply (article 四: 部分申报材料不齐备)",
            ));
        }
        if self.waived.len() > MAX_WAIVED {
            return Err(rule(
                "commitment.waived",
                format!(
                    "at most {MAX_WAIVED} materials; an application lacking more is not 部分申报材料不齐备 (article 四)"
                ),
            ));
        }
        for w in &self.waived {
            text("commitment.waived[]", w, MAX_SHORT_TEXT_BYTES, true)?;
        }
        if self.due_on <= self.made_on {
            return Err(rule(
                "commitment.due_on",
                "a commitment needs a deadline after made_on (article 四: 在规定期限内提供)",
            ));
        }
        if self.due_on.days_since_epoch() - self.made_on.days_since_epoch()
            > MAX_COMMITMENT_TERM_DAYS
        {
            return Err(rule(
                "commitment.due_on",
                format!(
                    "at most {MAX_COMMITMENT_TERM_DAYS} days after made_on (the federation's bound, docs/decisions.md)"
                ),
            ));
        }
        Ok(())
    }
}

/// The id of a repair application recorded by `author` under `case_no`.
pub fn repair_application_id(author: &DepartmentId, case_no: &str) -> RepairApplicationId {
    RepairApplicationId(derive_id(
        "repair",
        &[author.to_string().as_bytes(), case_no.as_bytes()],
    ))
}

//! The federation's policy data: the measures catalogue (措施清单, article 二十) with each
//! measure's applicability, the evaluation schemes (articles 六, 十六) and the longest
//! listing period of each black-list category. Shipped as `data/measures.toml` for new
//! federations and carried, signed, in the manifest: the federation adds measures (e.g.
//! from a 合作备忘录) with a new manifest version, not a new release.
//!
//! "Which measure applies to whom" is a security property here: [`Measure::applicable`]
//! is what admission refuses with and what the check applies by, and every rule it
//! enforces names its source (the guidance's article and, where one exists, the statute).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::{Hash256, sha256};
use crate::record::{
    ActionKind, BlackCategory, Category, Finding, ListEntry, MeasureCode, RedSource, RelatedRole,
    Subject,
};

/// The policy data embedded in this build (the default for new manifests).
pub const EMBEDDED_CATALOGUE: &str = include_str!("../data/measures.toml");

/// Where a measure bites: the domain an asking department works in (应查必查).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureDomain {
    /// Administrative licensing and permits (行政许可).
    Licensing,
    /// Approval of investment projects (项目审批、核准).
    ProjectApproval,
    /// Share and bond issuance, listing (证券).
    Securities,
    /// Founding or holding stakes in financial institutions.
    FinancialInstitutions,
    /// Internet information services.
    InternetServices,
    /// Fiscal funding and preferential policies (财政性资金).
    FiscalFunding,
    /// Public resource trading (公共资源交易).
    PublicResourceTrading,
    /// Government procurement and tendering (政府采购、招投标).
    Procurement,
    /// Infrastructure and utility concessions (特许经营).
    Concessions,
    /// Market and industry entry (市场和行业准入).
    MarketEntry,
    /// Honours and awards (荣誉、评先评优).
    Honours,
    /// Supervision and inspection frequency (监管、检查).
    Inspection,
    /// Public services: education, employment, social security (公共服务).
    PublicServices,
    /// Lending and credit products (融资、信贷).
    Financing,
    /// Insurance.
    Insurance,
    /// Commercial services (市场服务机构).
    MarketServices,
    /// Travel: exit, flights, high-speed rail (出行).
    Travel,
    /// High consumption: real estate, hotels, holidays (高消费).
    HighConsumption,
    /// Publication and promotion (公示、披露、推介).
    Disclosure,
    /// Trade association self-regulation (行业自律).
    IndustrySelfRegulation,
}

impl MeasureDomain {
    /// Every domain.
    pub const ALL: [MeasureDomain; 20] = {
        use MeasureDomain::*;
        [
            Licensing,
            ProjectApproval,
            Securities,
            FinancialInstitutions,
            InternetServices,
            FiscalFunding,
            PublicResourceTrading,
            Procurement,
            Concessions,
            MarketEntry,
            Honours,
            Inspection,
            PublicServices,
            Financing,
            Insurance,
            MarketServices,
            Travel,
            HighConsumption,
            Disclosure,
            IndustrySelfRegulation,
        ]
    };

    /// The snake_case name used in files, JSON and the CLI.
    pub fn name(self) -> String {
        snake(&self)
    }

    /// Parses a snake_case name.
    pub fn parse(name: &str) -> Option<MeasureDomain> {
        MeasureDomain::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The snake_case spelling of a unit variant, as files, JSON and the CLI spell it.
pub fn snake_name<T: Serialize>(v: &T) -> String {
    snake(v)
}

/// The snake_case spelling of a unit variant (serde_json is not a dependency here; the
/// TOML serializer spells unit variants the same way).
fn snake<T: Serialize>(v: &T) -> String {
    toml::Value::try_from(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What kind of subject an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A legal person or other organisation (by USCC).
    Organisation,
    /// A natural person (by identity number).
    NaturalPerson,
}

impl SubjectKind {
    /// The kind of a subject.
    pub fn of(subject: &Subject) -> SubjectKind {
        match subject {
            Subject::Organisation { .. } => SubjectKind::Organisation,
            Subject::Person(_) => SubjectKind::NaturalPerson,
        }
    }
}

/// On whom a measure falls in one entry: its subject, or a related person of an
/// organisation's entry in a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bearer {
    /// The entry's subject, of this kind.
    Subject(SubjectKind),
    /// A related person in this role (article 十四).
    Related(RelatedRole),
}

impl Bearer {
    /// The name the CLI and JSON use: `organisation`, `natural_person` or a related
    /// role (`legal_representative`, …).
    pub fn name(self) -> String {
        match self {
            Bearer::Subject(k) => snake(&k),
            Bearer::Related(r) => snake(&r),
        }
    }

    /// Parses [`Bearer::name`].
    pub fn parse(name: &str) -> Option<Bearer> {
        [SubjectKind::Organisation, SubjectKind::NaturalPerson]
            .into_iter()
            .map(Bearer::Subject)
            .chain(RelatedRole::ALL.into_iter().map(Bearer::Related))
            .find(|b| b.name() == name)
    }

    /// Every bearer's name, for error messages.
    pub fn all_names() -> String {
        [SubjectKind::Organisation, SubjectKind::NaturalPerson]
            .into_iter()
            .map(Bearer::Subject)
            .chain(RelatedRole::ALL.into_iter().map(Bearer::Related))
            .map(Bearer::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Which measures a reader of the catalogue wants to see (`credfed measures list`);
/// `None` leaves a criterion open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeasureFilter {
    /// Incentives or punishments.
    pub kind: Option<ActionKind>,
    /// Bites in this domain.
    pub domain: Option<MeasureDomain>,
    /// Falls on this bearer.
    pub bearer: Option<Bearer>,
    /// Serves entries of this group of article 九 (punishments only: an incentive
    /// serves no group).
    pub group: Option<u8>,
    /// Mandatory (强制性) wherever it applies or for some categories (`true`), or
    /// recommended everywhere (`false`).
    pub mandatory: Option<bool>,
}

/// A statute, judicial interpretation or policy document and the article relied on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalBasis {
    /// The instrument, e.g. `最高人民法院关于限制被执行人高消费及有关消费的若干规定（法释〔2015〕17号）`.
    pub source: String,
    /// The article, e.g. `第三条第（一）项`.
    pub article: String,
}

/// One measure and to whom it may apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// Code, e.g. `P-TRAVEL-AIR`.
    pub code: MeasureCode,
    /// Incentive or punishment.
    pub kind: ActionKind,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Domains it bites in.
    pub domains: Vec<MeasureDomain>,
    /// The kinds of entry subject it falls on.
    #[serde(default)]
    pub subjects: Vec<SubjectKind>,
    /// The roles of an organisation's related persons it falls on (article 十四).
    #[serde(default)]
    pub related_roles: Vec<RelatedRole>,
    /// Punishments: the groups of article 九 (1–4) whose entries it serves; empty = all.
    #[serde(default)]
    pub groups: Vec<u8>,
    /// Punishments: the black-list categories it serves; empty = every category of the
    /// groups above.
    #[serde(default)]
    pub categories: Vec<BlackCategory>,
    /// Incentives: the red-list sources (article 三) it serves; empty = all.
    #[serde(default)]
    pub red_sources: Vec<RedSource>,
    /// Findings the entry must state (e.g. 有履行能力但拒不履行 for article 十一's
    /// restrictions).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// 强制性: a statute or judicial interpretation makes it compulsory (依法必须联合执行).
    pub mandatory: bool,
    /// When mandatory only for some categories, which (empty = wherever it applies).
    #[serde(default)]
    pub mandatory_only_for: Vec<BlackCategory>,
    /// The guidance's article it comes from (e.g. `十一`).
    pub guidance_article: String,
    /// The statutes and documents it rests on, statute first where one exists.
    pub legal_basis: Vec<LegalBasis>,
    /// The kind of department or body that executes it.
    pub executor: String,
}

/// One class of an evaluation scheme, in the scheme's order (best first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeClass {
    /// The class as graded, e.g. `A` (1–4 upper-case letters).
    pub class: String,
    /// What it means.
    pub meaning_zh: String,
    /// Measures a subject of this class meets (incentives or supervision measures).
    #[serde(default)]
    pub measures: Vec<MeasureCode>,
}

/// A credit evaluation scheme (信用评价、分类监管, articles 六, 十六) that evaluations name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationScheme {
    /// Id, e.g. `tax-credit`.
    pub id: String,
    /// Name.
    pub name_zh: String,
    /// Who runs it.
    pub owner: String,
    /// The rules that define it.
    pub basis: String,
    /// The kinds of subject it grades (empty: any, as catalogues before version 3 read).
    #[serde(default)]
    pub subjects: Vec<SubjectKind>,
    /// Where `subjects` comes from.
    #[serde(default)]
    pub subjects_basis: String,
    /// The classes, best first.
    pub classes: Vec<SchemeClass>,
}

impl EvaluationScheme {
    /// The class named `class`.
    pub fn class(&self, class: &str) -> Option<&SchemeClass> {
        self.classes.iter().find(|c| c.class == class)
    }
}

/// A longer or shorter listing period for some categories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodOverride {
    /// Categories it covers.
    pub categories: Vec<BlackCategory>,
    /// Longest period, days.
    pub max_days: u32,
    /// Where the figure comes from.
    pub basis: String,
}

/// Entries listed without a fixed term: those of these categories that state one of
/// these findings stay listed until their issuer ends them (repair, revocation), so no
/// longest period applies to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenEndedListing {
    /// Categories it covers.
    pub categories: Vec<BlackCategory>,
    /// Findings that make the listing open-ended (any of them).
    pub findings: Vec<Finding>,
    /// Where the rule comes from.
    pub basis: String,
}

/// The longest a black-list entry may stay listed (惩戒期限, 退出机制, articles 十九, 二十一).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingPeriods {
    /// For categories without an override, days.
    pub default_max_days: u32,
    /// Where the default comes from.
    pub default_basis: String,
    /// Per-category periods.
    #[serde(default, rename = "override")]
    pub overrides: Vec<PeriodOverride>,
    /// Listings without a fixed term.
    #[serde(default)]
    pub open_ended: Vec<OpenEndedListing>,
}

impl ListingPeriods {
    /// If an entry of `category` stating `findings` has no fixed term, the rule's source.
    pub fn open_ended(&self, category: BlackCategory, findings: &[Finding]) -> Option<&str> {
        self.open_ended
            .iter()
            .find(|o| {
                o.categories.contains(&category) && o.findings.iter().any(|f| findings.contains(f))
            })
            .map(|o| o.basis.as_str())
    }

    /// The longest listing of `category`, in days, and its source.
    pub fn max_days(&self, category: BlackCategory) -> (u32, &str) {
        self.overrides
            .iter()
            .find(|o| o.categories.contains(&category))
            .map_or((self.default_max_days, self.default_basis.as_str()), |o| {
                (o.max_days, o.basis.as_str())
            })
    }
}

/// A shorter or longer least period before repair for some categories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairOverride {
    /// Categories it covers.
    pub categories: Vec<BlackCategory>,
    /// Least days in force before the subject may apply.
    pub min_days: u32,
    /// Where the figure comes from.
    pub basis: String,
}

/// Credit repair (信用修复, articles 十八, 二十一): how long a black-list entry must have
/// been in force before its subject may apply, and how many working days its issuer has
/// to decide. The longest period is [`ListingPeriods`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairPeriods {
    /// For categories without an override: least days from the entry's effective date
    /// to the application.
    pub default_min_days: u32,
    /// Where the default comes from.
    pub default_basis: String,
    /// Per-category least periods.
    #[serde(default, rename = "override")]
    pub overrides: Vec<RepairOverride>,
    /// Working days from the application to the issuer's decision.
    pub decision_working_days: u16,
    /// Where the decision deadline comes from.
    pub decision_basis: String,
}

impl RepairPeriods {
    /// The least period before a subject of `category` may apply, in days, and its source.
    pub fn min_days(&self, category: BlackCategory) -> (u32, &str) {
        self.overrides
            .iter()
            .find(|o| o.categories.contains(&category))
            .map_or((self.default_min_days, self.default_basis.as_str()), |o| {
                (o.min_days, o.basis.as_str())
            })
    }
}

/// The whole policy data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Catalogue version.
    pub version: u32,
    /// Listing periods of black-list categories.
    pub listing_periods: ListingPeriods,
    /// Credit-repair periods; a catalogue without them (before version 4) takes no
    /// repair applications.
    #[serde(default)]
    pub repair: Option<RepairPeriods>,
    /// Measures, in file order.
    #[serde(rename = "measure")]
    pub measures: Vec<Measure>,
    /// Evaluation schemes.
    #[serde(default, rename = "scheme")]
    pub schemes: Vec<EvaluationScheme>,
}

/// A catalogue file that breaks a rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CatalogueError {
    /// Not valid TOML for the schema (unknown domains and fields are caught here).
    #[error("catalogue: {0}")]
    Parse(String),
    /// A measure or scheme breaks a rule.
    #[error("catalogue: {item}: {rule}")]
    Item {
        /// The measure's code or the scheme's id.
        item: String,
        /// The rule.
        rule: String,
    },
}

/// The name of a category as the guidance spells it, with its group.
fn describe_category(c: Category) -> String {
    match c {
        Category::Black(b) => format!(
            "{} ({}, article 九 group {})",
            snake(&b),
            b.name_zh(),
            b.group()
        ),
        Category::Red(r) => format!("red source {}", snake(&r)),
    }
}

impl Measure {
    /// The sources, for messages: `guidance 十一; 法释〔2015〕17号 第三条第（一）项`.
    pub fn cites(&self) -> String {
        let mut parts = vec![format!("国发〔2016〕33号 {}", self.guidance_article)];
        parts.extend(
            self.legal_basis
                .iter()
                .filter(|b| !b.source.contains("国发〔2016〕33号"))
                .map(|b| format!("{} {}", b.source, b.article)),
        );
        parts.join("; ")
    }

    fn label(&self) -> String {
        format!("{} ({})", self.code.0, self.title_zh)
    }

    /// Whether the measure meets every criterion `filter` sets.
    pub fn matches(&self, filter: &MeasureFilter) -> bool {
        filter.kind.is_none_or(|k| self.kind == k)
            && filter.domain.is_none_or(|d| self.domains.contains(&d))
            && filter.bearer.is_none_or(|b| self.falls_on(b))
            && filter.group.is_none_or(|g| {
                (1..=4).contains(&g)
                    && self.kind == ActionKind::Punishment
                    && (self.groups.contains(&g)
                        || (self.groups.is_empty()
                            && (self.categories.is_empty()
                                || self.categories.iter().any(|c| c.group() == g))))
            })
            && filter.mandatory.is_none_or(|m| self.mandatory == m)
    }

    /// Whether the measure serves this entry's list, category and findings; else the
    /// rule it breaks, naming the measure and its sources.
    pub fn serves(&self, entry: &ListEntry) -> Result<(), String> {
        let list_kind = match entry.category.list() {
            crate::record::ListKind::Red => ActionKind::Incentive,
            crate::record::ListKind::Black => ActionKind::Punishment,
        };
        if self.kind != list_kind {
            return Err(format!(
                "{} is {:?}, not a measure for a {:?}-list entry",
                self.label(),
                self.kind,
                entry.category.list()
            ));
        }
        match entry.category {
            Category::Black(b) => {
                let group_ok = self.groups.is_empty() || self.groups.contains(&b.group());
                let cat_ok = self.categories.is_empty() || self.categories.contains(&b);
                if !group_ok || !cat_ok {
                    return Err(format!(
                        "{} serves only entries of {}; this entry is {} (rule: {})",
                        self.label(),
                        self.served_lists(),
                        describe_category(entry.category),
                        self.cites()
                    ));
                }
            }
            Category::Red(r) => {
                if !self.red_sources.is_empty() && !self.red_sources.contains(&r) {
                    return Err(format!(
                        "{} serves only red-list entries from {}; this entry is {} (rule: {})",
                        self.label(),
                        self.red_sources
                            .iter()
                            .map(snake)
                            .collect::<Vec<_>>()
                            .join(", "),
                        describe_category(entry.category),
                        self.cites()
                    ));
                }
            }
        }
        if let Some(missing) = self.findings.iter().find(|f| !entry.findings.contains(f)) {
            return Err(format!(
                "{} requires the finding {} (有履行能力但拒不履行) in the decision, which this entry does not state (rule: {})",
                self.label(),
                snake(missing),
                self.cites()
            ));
        }
        Ok(())
    }

    fn served_lists(&self) -> String {
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!(
                "article 九 group(s) {}",
                self.groups
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.categories.is_empty() {
            parts.push(format!(
                "categories {}",
                self.categories
                    .iter()
                    .map(snake)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if parts.is_empty() {
            "any black-list category".into()
        } else {
            parts.join(" and ")
        }
    }

    /// Whether the measure falls on `bearer`.
    pub fn falls_on(&self, bearer: Bearer) -> bool {
        match bearer {
            Bearer::Subject(k) => self.subjects.contains(&k),
            Bearer::Related(r) => self.related_roles.contains(&r),
        }
    }

    /// Whether the measure can apply to this entry at all: it serves the entry and
    /// falls on its subject or on at least one of its related persons. Else the rule.
    pub fn applicable(&self, entry: &ListEntry) -> Result<(), String> {
        self.serves(entry)?;
        let subject = SubjectKind::of(&entry.subject);
        if self.falls_on(Bearer::Subject(subject)) {
            return Ok(());
        }
        if entry
            .related_persons
            .iter()
            .any(|p| self.falls_on(Bearer::Related(p.role)))
        {
            return Ok(());
        }
        let on_whom = if self.related_roles.is_empty() {
            format!(
                "falls only on {}",
                self.subjects
                    .iter()
                    .map(snake)
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        } else {
            format!(
                "falls only on {}{}related persons who are {}",
                self.subjects
                    .iter()
                    .map(|s| format!("{} subjects or ", snake(s)))
                    .collect::<String>(),
                "",
                self.related_roles
                    .iter()
                    .map(|r| r.name_zh())
                    .collect::<Vec<_>>()
                    .join("、")
            )
        };
        Err(format!(
            "{} {on_whom}; this entry's subject is {} and it names {} (rule: {})",
            self.label(),
            snake(&subject),
            if entry.related_persons.is_empty() {
                "no related person".to_string()
            } else {
                format!(
                    "related persons who are {}",
                    entry
                        .related_persons
                        .iter()
                        .map(|p| p.role.name_zh())
                        .collect::<Vec<_>>()
                        .join("、")
                )
            },
            self.cites()
        ))
    }

    /// 强制性 for an entry of `category`: compulsory by a statute or judicial
    /// interpretation for it.
    pub fn is_mandatory_for(&self, category: Category) -> bool {
        self.mandatory
            && match category {
                Category::Black(b) => {
                    self.mandatory_only_for.is_empty() || self.mandatory_only_for.contains(&b)
                }
                Category::Red(_) => self.mandatory_only_for.is_empty(),
            }
    }
}

impl Catalogue {
    /// Parses and validates a catalogue file.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let c: Catalogue =
            toml::from_str(text).map_err(|e| CatalogueError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// The catalogue shipped with this build.
    pub fn embedded() -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(EMBEDDED_CATALOGUE)
    }

    /// SHA-256 of a catalogue file's bytes.
    pub fn file_hash(text: &str) -> Hash256 {
        sha256(&[text.as_bytes()])
    }

    /// Every rule a catalogue must meet.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        let mut seen = BTreeSet::new();
        for m in &self.measures {
            let bad = |rule: String| CatalogueError::Item {
                item: format!("measure {}", m.code.0),
                rule,
            };
            m.code.validate("code").map_err(|e| bad(e.to_string()))?;
            if !seen.insert(&m.code) {
                return Err(bad("code appears twice".into()));
            }
            let want_kind = match m.code.0.as_bytes()[0] {
                b'I' => ActionKind::Incentive,
                _ => ActionKind::Punishment,
            };
            if m.kind != want_kind {
                return Err(bad(format!(
                    "kind {:?} does not match the code prefix",
                    m.kind
                )));
            }
            if m.domains.is_empty() {
                return Err(bad("names no domain".into()));
            }
            if m.subjects.is_empty() && m.related_roles.is_empty() {
                return Err(bad("falls on no one: give subjects or related_roles".into()));
            }
            if m.title_zh.is_empty() || m.legal_basis.is_empty() || m.executor.is_empty() {
                return Err(bad("title_zh, legal_basis and executor are required".into()));
            }
            if m.guidance_article.is_empty() {
                return Err(bad("guidance_article is required".into()));
            }
            if m.groups.iter().any(|g| !(1..=4).contains(g)) {
                return Err(bad("groups are article 九's 1 to 4".into()));
            }
            if m.kind == ActionKind::Incentive
                && (!m.groups.is_empty()
                    || !m.categories.is_empty()
                    || !m.findings.is_empty()
                    || !m.mandatory_only_for.is_empty())
            {
                return Err(bad(
                    "an incentive serves red-list sources only (no groups, categories, findings)"
                        .into(),
                ));
            }
            if m.kind == ActionKind::Punishment && !m.red_sources.is_empty() {
                return Err(bad("a punishment serves black-list entries only".into()));
            }
            if !m.mandatory && !m.mandatory_only_for.is_empty() {
                return Err(bad("mandatory_only_for needs mandatory = true".into()));
            }
        }
        let mut ids = BTreeSet::new();
        for s in &self.schemes {
            let bad = |rule: String| CatalogueError::Item {
                item: format!("scheme {}", s.id),
                rule,
            };
            if !ids.insert(&s.id) {
                return Err(bad("id appears twice".into()));
            }
            if s.classes.is_empty() {
                return Err(bad("has no class".into()));
            }
            let mut classes = BTreeSet::new();
            for c in &s.classes {
                let ok = (1..=4).contains(&c.class.len())
                    && c.class.bytes().all(|b| b.is_ascii_uppercase());
                if !ok || !classes.insert(&c.class) {
                    return Err(bad(format!(
                        "class '{}' must be 1-4 upper-case letters, once",
                        c.class
                    )));
                }
                if let Some(m) = c.measures.iter().find(|m| self.get(m).is_none()) {
                    return Err(bad(format!(
                        "class {} names {}, which is not in the catalogue",
                        c.class, m.0
                    )));
                }
            }
        }
        if self.listing_periods.default_max_days == 0
            || self
                .listing_periods
                .overrides
                .iter()
                .any(|o| o.max_days == 0)
        {
            return Err(CatalogueError::Item {
                item: "listing_periods".into(),
                rule: "a period of 0 days lists nothing".into(),
            });
        }
        if let Some(r) = &self.repair {
            if r.decision_working_days == 0 {
                return Err(CatalogueError::Item {
                    item: "repair.decision_working_days".into(),
                    rule: "the issuer needs at least one working day to decide".into(),
                });
            }
            for (category, min, basis) in BlackCategory::ALL.iter().map(|c| {
                let (min, basis) = r.min_days(*c);
                (*c, min, basis)
            }) {
                let (max, _) = self.listing_periods.max_days(category);
                if min >= max {
                    return Err(CatalogueError::Item {
                        item: "repair".into(),
                        rule: format!(
                            "{}: least period before repair ({min} days, {basis}) must be shorter than the longest listing ({max} days)",
                            snake(&category)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The measure with this code.
    pub fn get(&self, code: &MeasureCode) -> Option<&Measure> {
        self.measures.iter().find(|m| &m.code == code)
    }

    /// The evaluation scheme with this id.
    pub fn scheme(&self, id: &str) -> Option<&EvaluationScheme> {
        self.schemes.iter().find(|s| s.id == id)
    }

    /// Checks that every code in `measures` exists and applies to `entry`; the error
    /// names the field, the measure and the rule.
    pub fn check_applicable(
        &self,
        field: &str,
        measures: &[MeasureCode],
        entry: &ListEntry,
    ) -> Result<(), String> {
        for code in measures {
            let Some(m) = self.get(code) else {
                return Err(format!(
                    "{field}: {} is not in the measures catalogue v{}",
                    code.0, self.version
                ));
            };
            m.applicable(entry)
                .map_err(|rule| format!("{field}: {rule}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogue_is_valid_and_covers_articles_4_to_12() {
        let c = Catalogue::embedded().unwrap();
        // Articles 四–八 (incentives) and 十–十二 (punishments) each have measures.
        for article in ["四", "五", "六", "七", "八", "十", "十一", "十二"] {
            assert!(
                c.measures.iter().any(|m| m.guidance_article == article),
                "article {article} has no measure"
            );
        }
        // Article 十三's items are social mechanisms, not measures a department executes.
        assert!(c.measures.iter().all(|m| m.guidance_article != "十三"));
        // Every mandatory measure rests on something other than the guidance itself.
        for m in c.measures.iter().filter(|m| m.mandatory) {
            assert!(
                m.legal_basis
                    .iter()
                    .any(|b| !b.source.contains("国发〔2016〕33号")),
                "{} is mandatory on the guidance alone",
                m.code.0
            );
        }
        let g = c.get(&MeasureCode("I-LICENSING-GREEN".into())).unwrap();
        assert_eq!(g.kind, ActionKind::Incentive);
        assert!(g.domains.contains(&MeasureDomain::Licensing));
    }

    #[test]
    fn duplicate_codes_unknown_domains_and_mismatches_are_refused() {
        let dup = format!(
            "{}\n[[measure]]\ncode = \"I-LICENSING-GREEN\"\nkind = \"incentive\"\nmandatory = false\nguidance_article = \"四\"\ndomains = [\"licensing\"]\nsubjects = [\"organisation\"]\ntitle_zh = \"x\"\ntitle_en = \"x\"\nexecutor = \"x\"\nlegal_basis = [{{ source = \"x\", article = \"x\" }}]\n",
            EMBEDDED_CATALOGUE
        );
        assert!(
            Catalogue::parse(&dup)
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        let unknown = EMBEDDED_CATALOGUE.replacen("\"licensing\"", "\"astrology\"", 1);
        assert!(matches!(
            Catalogue::parse(&unknown),
            Err(CatalogueError::Parse(_))
        ));
        let wrong_kind =
            EMBEDDED_CATALOGUE.replacen("kind = \"incentive\"", "kind = \"punishment\"", 1);
        assert!(
            Catalogue::parse(&wrong_kind)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
    }

    #[test]
    fn domain_names_round_trip() {
        for d in MeasureDomain::ALL {
            assert_eq!(MeasureDomain::parse(&d.name()), Some(d));
        }
        assert_eq!(MeasureDomain::Procurement.name(), "procurement");
    }
}

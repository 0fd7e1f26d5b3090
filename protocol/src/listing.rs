//! Listings and search of entries, evaluations and actions (what departments browse:
//! by region, department, category or scheme, state, subject name and decision date).
//!
//! Pure parts only: what a node indexes (the record's region and date, and the
//! two-character pieces of the subject's name) and whether a fold matches a filter. The
//! node keeps the indexes (docs/decisions.md, 73) so that a listing reads the keys of
//! one region's dates or of one name piece, never the whole store.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::{DepartmentId, RegionCode};
use crate::record::{Category, Grade, Subject};
use crate::state::{ActionFold, EntryFold, EntryState, EvaluationFold, EvaluationState};
use crate::time::{Date, Timestamp};

/// The kinds of records listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingKind {
    /// List entries, dated by their decision.
    Entry,
    /// Evaluation results, dated by their evaluation.
    Evaluation,
    /// Joint actions, dated by their initiation.
    Action,
}

impl ListingKind {
    /// The byte the node's index keys use.
    pub fn tag(self) -> u8 {
        match self {
            ListingKind::Entry => b'e',
            ListingKind::Evaluation => b'v',
            ListingKind::Action => b'a',
        }
    }
}

/// The fewest characters a name search takes: the index holds pairs of characters (a
/// Chinese name is searched by two characters or more).
pub const MIN_NAME_QUERY_CHARS: usize = 2;

/// The longest name query: names are bounded by the record limits; a longer query
/// cannot match.
pub const MAX_NAME_QUERY_CHARS: usize = 100;

/// A name as indexed and searched: without white space, ASCII letters lower-cased,
/// full-width ASCII forms (ＡＢＣ１２３) as their half-width letters — so that a search
/// finds a name however its Latin letters and digits were typed.
pub fn normalise_name(name: &str) -> Vec<char> {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Pairs the index leaves out: those inside the legal forms nearly every company name
/// ends with (有限公司, 有限责任公司, 股份有限公司, 分公司). They would add a key per name
/// and find every company; a search goes by another pair of its query.
pub const STOP_GRAMS: [&str; 9] = [
    "有限", "限公", "公司", "限责", "责任", "任公", "股份", "份有", "分公",
];

fn is_stop_gram(g: [u32; 2]) -> bool {
    STOP_GRAMS.iter().any(|s| {
        let mut c = s.chars();
        c.next().map(|a| a as u32) == Some(g[0]) && c.next().map(|b| b as u32) == Some(g[1])
    })
}

/// The pieces of a name the index keys: every two consecutive characters of the
/// normalised name (a one-character name is its character twice) but [`STOP_GRAMS`].
pub fn name_grams(name: &str) -> BTreeSet<[u32; 2]> {
    let chars = normalise_name(name);
    match chars.as_slice() {
        [] => BTreeSet::new(),
        [one] => [[*one as u32, *one as u32]].into_iter().collect(),
        _ => chars
            .windows(2)
            .map(|w| [w[0] as u32, w[1] as u32])
            .filter(|g| !is_stop_gram(*g))
            .collect(),
    }
}

/// The pair of a (normalised) query a search reads the index by: its first that is not a
/// [`STOP_GRAMS`] pair; `None` when the query is only a legal form.
pub fn query_gram(query: &[char]) -> Option<[u32; 2]> {
    query
        .windows(2)
        .map(|w| [w[0] as u32, w[1] as u32])
        .find(|g| !is_stop_gram(*g))
}

/// Whether `name` contains `query` as the index would find it.
pub fn name_contains(name: &str, query: &[char]) -> bool {
    let name = normalise_name(name);
    query.is_empty() || name.windows(query.len()).any(|w| w == query)
}

/// The subject's name.
pub fn subject_name(subject: &Subject) -> &str {
    match subject {
        Subject::Organisation { name, .. } => name,
        Subject::Person(p) => &p.name,
    }
}

/// What a listing asks; `None` leaves a criterion open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Issued (entries, evaluations) or initiated (actions) by this region.
    pub region: Option<RegionCode>,
    /// By this department.
    pub department: Option<DepartmentId>,
    /// Entries: of this category; actions: resting on an entry of it.
    pub category: Option<Category>,
    /// Evaluations: of this scheme.
    pub scheme: Option<String>,
    /// State today, by its snake_case name (an entry's or evaluation's state; for an
    /// action `open`, some target has still to answer, or `answered`).
    pub state: Option<String>,
    /// Actions: naming this region as a target.
    pub target: Option<RegionCode>,
    /// The subject's name contains this (normalised, at least two characters).
    pub name: Option<Vec<char>>,
    /// Dated on or after.
    pub from: Option<Date>,
    /// Dated on or before.
    pub to: Option<Date>,
}

fn within(filter: &ListFilter, day: Date) -> bool {
    filter.from.is_none_or(|f| day >= f) && filter.to.is_none_or(|t| day <= t)
}

fn snake<T: Serialize>(v: &T) -> String {
    crate::catalogue::snake_name(v)
}

/// One line of an entry listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryLine {
    /// Id.
    pub id: crate::record::EntryId,
    /// Issuing region.
    pub region: RegionCode,
    /// Publishing department.
    pub department: DepartmentId,
    /// Category.
    pub category: Category,
    /// Subject's name.
    pub name: String,
    /// USCC, or a person's masked number.
    pub code: String,
    /// Decision document.
    pub document_no: String,
    /// Decision date.
    pub decided_on: Date,
    /// Last day before it expires.
    pub expires_on: Date,
    /// State today.
    pub state: EntryState,
}

/// The entry's listing line if it matches `filter` at `now`.
pub fn entry_line(e: &EntryFold, filter: &ListFilter, now: Timestamp) -> Option<EntryLine> {
    let state = e.state_at(now);
    let c = &e.content;
    let ok = filter.region.is_none_or(|r| e.issuer() == r)
        && filter
            .department
            .as_ref()
            .is_none_or(|d| *d == e.published.author)
        && filter.category.is_none_or(|k| c.category == k)
        && filter.state.as_ref().is_none_or(|s| *s == snake(&state))
        && filter.scheme.is_none()
        && filter.target.is_none()
        && filter
            .name
            .as_ref()
            .is_none_or(|q| name_contains(subject_name(&c.subject), q))
        && within(filter, c.basis.decided_on);
    ok.then(|| EntryLine {
        id: e.id,
        region: e.issuer(),
        department: e.published.author.clone(),
        category: c.category,
        name: subject_name(&c.subject).to_owned(),
        code: match &c.subject {
            Subject::Organisation { uscc, .. } => uscc.clone(),
            Subject::Person(p) => p.masked.clone(),
        },
        document_no: c.basis.document_no.clone(),
        decided_on: c.basis.decided_on,
        expires_on: c.expires_on,
        state,
    })
}

/// One line of an evaluation listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationLine {
    /// Id.
    pub id: crate::record::EvaluationId,
    /// Evaluating region.
    pub region: RegionCode,
    /// Evaluating department.
    pub department: DepartmentId,
    /// Scheme.
    pub scheme: String,
    /// Grade: the class as graded (`A`), or the score in thousandths (`score 870`).
    pub grade: String,
    /// Subject's name.
    pub name: String,
    /// USCC, or a person's masked number.
    pub code: String,
    /// Evaluation date.
    pub evaluated_on: Date,
    /// State today.
    pub state: EvaluationState,
}

/// The evaluation's listing line if it matches `filter` at `now`.
pub fn evaluation_line(
    v: &EvaluationFold,
    filter: &ListFilter,
    now: Timestamp,
) -> Option<EvaluationLine> {
    let state = v.state_at(now);
    let ev = &v.evaluation;
    let ok = filter.region.is_none_or(|r| v.issuer() == r)
        && filter
            .department
            .as_ref()
            .is_none_or(|d| *d == v.published.author)
        && filter.category.is_none()
        && filter.target.is_none()
        && filter.scheme.as_ref().is_none_or(|s| *s == ev.scheme)
        && filter.state.as_ref().is_none_or(|s| *s == snake(&state))
        && filter
            .name
            .as_ref()
            .is_none_or(|q| name_contains(subject_name(&ev.subject), q))
        && within(filter, ev.evaluated_on);
    ok.then(|| EvaluationLine {
        id: v.id,
        region: v.issuer(),
        department: v.published.author.clone(),
        scheme: ev.scheme.clone(),
        grade: match ev.grade {
            Grade::Class(c) => crate::ledger::grade_text(c),
            Grade::Score(n) => format!("score {n}"),
        },
        name: subject_name(&ev.subject).to_owned(),
        code: match &ev.subject {
            Subject::Organisation { uscc, .. } => uscc.clone(),
            Subject::Person(p) => p.masked.clone(),
        },
        evaluated_on: ev.evaluated_on,
        state,
    })
}

/// One line of an action listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLine {
    /// Id.
    pub id: crate::record::ActionId,
    /// Initiating region.
    pub region: RegionCode,
    /// Initiating department.
    pub department: DepartmentId,
    /// Reference.
    pub reference: String,
    /// The entry it rests on.
    pub entry: crate::record::EntryId,
    /// The category of that entry.
    pub category: Category,
    /// The subject's name (from the entry).
    pub name: String,
    /// Initiation date.
    pub initiated_on: Date,
    /// Respond-by date.
    pub respond_by: Date,
    /// Target regions named (empty: all members).
    pub targets: Vec<RegionCode>,
    /// Regions that answered.
    pub answered: usize,
    /// `open` while a named target has not answered (or, for "all members", always),
    /// `answered` otherwise.
    pub state: String,
}

/// The action's listing line if it matches `filter` at `now`; `entry` is the entry it
/// rests on (its subject's name is what a name search matches).
pub fn action_line(a: &ActionFold, entry: &EntryFold, filter: &ListFilter) -> Option<ActionLine> {
    let named: Vec<RegionCode> = match &a.action.targets {
        crate::record::Targets::Regions(r) => r.clone(),
        crate::record::Targets::AllMembers => Vec::new(),
    };
    let open = named.is_empty() || named.iter().any(|r| !a.responses.contains_key(r));
    let state = if open { "open" } else { "answered" };
    let day = a.initiated.at.date_cst();
    let name = subject_name(&entry.content.subject);
    let ok = filter.region.is_none_or(|r| a.initiated.pos.region == r)
        && filter
            .department
            .as_ref()
            .is_none_or(|d| *d == a.initiated.author)
        && filter.category.is_none_or(|k| a.entry_category == k)
        && filter.scheme.is_none()
        && filter.target.is_none_or(|t| a.targets_region(t))
        && filter.state.as_ref().is_none_or(|s| s == state)
        && filter.name.as_ref().is_none_or(|q| name_contains(name, q))
        && within(filter, day);
    ok.then(|| ActionLine {
        id: a.id,
        region: a.initiated.pos.region,
        department: a.initiated.author.clone(),
        reference: a.action.reference.clone(),
        entry: a.action.entry,
        category: a.entry_category,
        name: name.to_owned(),
        initiated_on: day,
        respond_by: a.action.respond_by,
        targets: named,
        answered: a.responses.len(),
        state: state.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_however_latin_letters_and_spaces_were_typed() {
        let q = normalise_name("ＡＢＣ 食品");
        assert!(name_contains("上海abc食品有限公司", &q));
        assert!(name_contains(
            "上海 ABC 食品有限公司",
            &normalise_name("abc食品")
        ));
        assert!(!name_contains(
            "上海某某食品有限公司",
            &normalise_name("食品厂")
        ));
        // Every piece of a query is a piece of the name it is in.
        let name = "某某建筑劳务有限公司";
        let grams = name_grams(name);
        for w in normalise_name("建筑劳务").windows(2) {
            assert!(grams.contains(&[w[0] as u32, w[1] as u32]));
        }
        assert_eq!(name_grams("张").len(), 1);
        assert!(name_grams("").is_empty());
        // The legal form is not indexed, and a query goes by a pair that is.
        assert!(!name_grams(name).contains(&['公' as u32, '司' as u32]));
        assert_eq!(
            query_gram(&normalise_name("有限公司建筑")),
            Some(['司' as u32, '建' as u32])
        );
        assert_eq!(query_gram(&normalise_name("有限公司")), None);
    }
}

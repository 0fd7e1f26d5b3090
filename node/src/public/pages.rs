//! Public pages: search by code or name, a subject's public records, an entry, the
//! evidence download and the verification page (docs/public.md).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::ledger::SubjectRef;
use credfed_protocol::listing::{ListFilter, ListingKind, normalise_name, query_gram};
use credfed_protocol::publicity::{
    PublicEntry, PublicSubject, Withheld, public_entry, public_evaluation,
};
use credfed_protocol::record::{DisclosureKind, EntryId, ListKind, SubjectKey};
use credfed_protocol::state::RecordPos;
use serde::Deserialize;

use super::Public;
use crate::console::secure_headers;
use crate::engine::Core;

/// Lines a search shows at most.
const SEARCH_LIMIT: usize = 50;
/// Index keys a search reads at most (bounds its cost whatever the query).
const SEARCH_SCAN_BUDGET: usize = 4096;
/// Envelopes a subject page looks at to decide whether its evidence may be public.
const EVIDENCE_SCAN_LIMIT: usize = 512;
/// Domain offered first for the evidence download: public procurement is what trading
/// partners check most.
const DEFAULT_DOMAIN: MeasureDomain = MeasureDomain::Procurement;

/// Pages render as the console's do: same headers, same Content-Security-Policy.
use crate::console::pages::page as html;

#[derive(Template)]
#[template(path = "public/error.html")]
struct ErrorPage {
    region: String,
    status: u16,
    message: String,
}

fn error(core: &Core, status: StatusCode, message: impl Into<String>) -> Response {
    html(
        status,
        &ErrorPage {
            region: core.region().to_string(),
            status: status.as_u16(),
            message: message.into(),
        },
    )
}

/// Any path the public side does not serve: the API, the console and the operator's
/// functions are not here at all.
pub async fn not_found(state: Public) -> Response {
    error(
        &state.api.core,
        StatusCode::NOT_FOUND,
        "没有这个页面 No such page. The public pages are the search (/), subjects, entries, verification (/verify) and the open data (/open-data/v1/).",
    )
}

/// Crawling policy: pages are for people, the open data is for programs.
pub async fn robots() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "# Pages are for people; programs mirror the open data (docs/public.md).\n\
         User-agent: *\n\
         Allow: /$\n\
         Allow: /open-data/\n\
         Allow: /verify\n\
         Disallow: /?\n\
         Disallow: /subjects/\n\
         Disallow: /entries/\n\
         Crawl-delay: 10\n",
    )
        .into_response()
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

struct SearchRow {
    href: String,
    name: String,
    code: String,
    list: String,
    category: String,
    region: String,
    state: String,
}

#[derive(Template)]
#[template(path = "public/search.html")]
struct SearchPage {
    region: String,
    query: String,
    searched: bool,
    error: Option<String>,
    rows: Vec<SearchRow>,
    more: bool,
}

fn list_name(list: ListKind) -> &'static str {
    match list {
        ListKind::Red => "红名单 red",
        ListKind::Black => "黑名单 black",
    }
}

fn state_name<T: serde::Serialize>(state: &T) -> String {
    let s = credfed_protocol::catalogue::snake_name(state);
    let zh = match s.as_str() {
        "pending" => "尚未生效",
        "active" => "有效",
        "suspended" => "异议中暂停",
        "expired" => "已到期",
        "repaired" => "已修复",
        "valid" => "有效",
        _ => "",
    };
    format!("{zh} {s}")
}

fn subject_texts(s: &PublicSubject) -> (String, String) {
    match s {
        PublicSubject::Organisation { uscc, name } => (name.clone(), uscc.clone()),
        PublicSubject::Person { name, masked } => (name.clone(), masked.clone()),
    }
}

fn entry_row(e: &PublicEntry) -> SearchRow {
    let (name, code) = subject_texts(&e.subject);
    SearchRow {
        href: match &e.subject {
            PublicSubject::Organisation { uscc, .. } => format!("/subjects/{uscc}"),
            PublicSubject::Person { .. } => format!("/entries/{}", e.id),
        },
        name,
        code,
        list: list_name(e.list).to_owned(),
        category: e.category_zh.clone(),
        region: e.region.to_string(),
        state: state_name(&e.state),
    }
}

/// The search page; a query that is a USCC goes straight to the subject's page.
pub async fn search(state: Public, Query(q): Query<SearchQuery>) -> Response {
    let core = &state.api.core;
    let query: String = q.q.trim().chars().take(100).collect();
    let mut page = SearchPage {
        region: core.region().to_string(),
        query: query.clone(),
        searched: !query.is_empty(),
        error: None,
        rows: Vec::new(),
        more: false,
    };
    if query.is_empty() {
        return html(StatusCode::OK, &page);
    }
    if query.len() == 18 && query.bytes().all(|b| b.is_ascii_alphanumeric()) {
        let code = query.to_ascii_uppercase();
        return match credfed_protocol::ids::uscc::validate_structure(&code, "q") {
            Ok(()) => crate::console::see_other(&format!("/subjects/{code}")),
            Err(e) => {
                page.searched = false;
                page.error = Some(format!("{e}"));
                html(StatusCode::UNPROCESSABLE_ENTITY, &page)
            }
        };
    }
    let name = normalise_name(&query);
    if name.len() < credfed_protocol::listing::MIN_NAME_QUERY_CHARS || query_gram(&name).is_none() {
        page.searched = false;
        page.error = Some(
            "q: give an 18-character USCC, or two characters or more of a name besides 有限公司 and the like"
                .into(),
        );
        return html(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let filter = ListFilter {
        name: Some(name),
        ..ListFilter::default()
    };
    let now = core.now();
    let mut seen_subjects = std::collections::BTreeSet::new();
    let listed = core.list(
        ListingKind::Entry,
        &filter,
        SEARCH_LIMIT,
        None,
        SEARCH_SCAN_BUDGET,
    );
    let (lines, cursor) = match listed {
        Ok(v) => v,
        Err(e) => return error(core, StatusCode::SERVICE_UNAVAILABLE, format!("{e}")),
    };
    page.more = cursor.is_some();
    for line in lines {
        let Some(id) = line["id"]
            .as_str()
            .and_then(|h| credfed_protocol::crypto::Hash256::from_hex(h).ok())
        else {
            continue;
        };
        let Ok(Some(fold)) = core.entry(&EntryId(id)) else {
            continue;
        };
        let Some(e) = public_entry(&fold, now) else {
            continue;
        };
        let row = entry_row(&e);
        // One line per organisation (its page lists every entry); a person's entry
        // has its own page.
        if matches!(e.subject, PublicSubject::Organisation { .. })
            && !seen_subjects.insert(row.code.clone())
        {
            continue;
        }
        page.rows.push(row);
    }
    html(StatusCode::OK, &page)
}

struct EntryCell {
    id: String,
    list: String,
    category: String,
    authority: String,
    document_no: String,
    decided_on: String,
    period: String,
    state: String,
    region: String,
}

#[derive(Template)]
#[template(path = "public/subject.html")]
struct SubjectPage {
    region: String,
    uscc: String,
    name: String,
    entries: Vec<EntryCell>,
    evaluations: Vec<(String, String, String, String, String)>,
    disclosures: Vec<DisclosureCell>,
    evidence_withheld: Option<String>,
    domains: Vec<(String, bool)>,
}

/// A licensing or penalty decision on the subject page (双公示, article 十七).
struct DisclosureCell {
    kind: &'static str,
    decision_no: String,
    authority: String,
    decided_on: String,
    summary: String,
    public_until: String,
    region: String,
    /// Disclosed later than the working days the policy allows.
    late: bool,
}

/// Why the subject's evidence file may not be public (`None`: it may): every record
/// the file would carry must be public ([`Core::record_publicity`]).
fn evidence_withheld(core: &Core, positions: &[RecordPos]) -> Option<String> {
    if positions.len() > EVIDENCE_SCAN_LIMIT {
        return Some(format!(
            "该主体记录过多，证据文件仅向部门提供 The answer would carry more than {EVIDENCE_SCAN_LIMIT} records; departments get it through the API"
        ));
    }
    for pos in positions {
        let withheld = core
            .envelope_at(*pos)
            .ok()
            .flatten()
            .and_then(|bytes| {
                credfed_protocol::envelope::decode_envelope(&core.manifest().federation_id, &bytes)
                    .ok()
            })
            .map_or(Some(Withheld::Unresolved), |v| {
                core.record_publicity(&v.body)
                    .unwrap_or(Err(Withheld::Unresolved))
                    .err()
            });
        if let Some(w) = withheld {
            return Some(format!(
                "证据文件不公开：其中的记录涉及自然人（第十四条的相关责任人），其签名内容含有不公开的个人密钥；部门可通过接口获取。The evidence file is not public: a record it would carry ({}#{}) {}. Departments get it through the API; the open-data feed proves the record is in the log.",
                pos.region,
                pos.seq,
                w.describe()
            ));
        }
    }
    None
}

fn domains(selected: MeasureDomain) -> Vec<(String, bool)> {
    MeasureDomain::ALL
        .iter()
        .map(|d| (d.name(), *d == selected))
        .collect()
}

/// A subject's public records from every region.
pub async fn subject(state: Public, Path(uscc): Path<String>) -> Response {
    let core = state.api.core.clone();
    let code = uscc.to_ascii_uppercase();
    if code.len() != 18 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return error(
            &core,
            StatusCode::UNPROCESSABLE_ENTITY,
            "uscc: 18 letters or digits (GB 32100-2015)",
        );
    }
    if let Err(e) = credfed_protocol::ids::uscc::validate_structure(&code, "uscc") {
        return error(&core, StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    let c = core.clone();
    let code2 = code.clone();
    let built = tokio::task::spawn_blocking(move || build_subject(&c, &code2)).await;
    match built {
        Ok(Ok(page)) => html(StatusCode::OK, &page),
        Ok(Err(e)) => error(&core, StatusCode::SERVICE_UNAVAILABLE, format!("{e}")),
        Err(e) => error(&core, StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}

fn build_subject(core: &Core, code: &str) -> Result<SubjectPage, crate::store::StoreError> {
    let now = core.now();
    let mut name = String::new();
    let mut entries = Vec::new();
    let mut evaluations = Vec::new();
    let mut disclosures = Vec::new();
    let mut positions = Vec::new();
    for r in core.subject_refs(&SubjectKey::Uscc(code.to_owned()))? {
        match r {
            SubjectRef::Entry(id) => {
                let Some(fold) = core.entry(&id)? else {
                    continue;
                };
                positions.extend(fold.evidence.iter().copied());
                let Some(e) = public_entry(&fold, now) else {
                    continue;
                };
                let (n, _) = subject_texts(&e.subject);
                name = n;
                entries.push(EntryCell {
                    id: e.id.to_string(),
                    list: list_name(e.list).to_owned(),
                    category: e.category_zh.clone(),
                    authority: e.authority.clone(),
                    document_no: e.document_no.clone(),
                    decided_on: e.decided_on.to_string(),
                    period: format!("{} – {}", e.effective_from, e.expires_on),
                    state: state_name(&e.state),
                    region: e.region.to_string(),
                });
            }
            SubjectRef::Evaluation(id) => {
                let Some(fold) = core.evaluation(&id)? else {
                    continue;
                };
                positions.extend(fold.evidence.iter().copied());
                let best = core
                    .catalogue()
                    .schemes
                    .iter()
                    .find(|s| s.id == fold.evaluation.scheme)
                    .and_then(|s| s.classes.first())
                    .map(|c| c.class.clone());
                if let Some(v) = public_evaluation(&fold, best.as_deref(), now) {
                    if name.is_empty() {
                        name = subject_texts(&v.subject).0;
                    }
                    evaluations.push((
                        v.scheme,
                        v.class,
                        v.evaluated_on.to_string(),
                        v.valid_until.to_string(),
                        v.region.to_string(),
                    ));
                }
            }
            // Shown during its public period (公示期) only, and only if its record may be
            // published verbatim (one about an organisation naming no person).
            SubjectRef::Disclosure(id) => {
                let Some(fold) = core.disclosure(&id)? else {
                    continue;
                };
                if !fold.public_on(now.date_cst()) {
                    continue;
                }
                let body =
                    credfed_protocol::record::Body::DecisionDisclosed(fold.disclosure.clone());
                if core.record_publicity(&body)?.is_err() {
                    continue;
                }
                let d = &fold.disclosure;
                disclosures.push(DisclosureCell {
                    kind: match d.kind {
                        DisclosureKind::Licensing => "行政许可 Licensing",
                        DisclosureKind::Penalty => "行政处罚 Penalty",
                    },
                    decision_no: d.decision_no.clone(),
                    authority: d.authority.clone(),
                    decided_on: d.decided_on.to_string(),
                    summary: d.summary.clone(),
                    public_until: d.public_until.to_string(),
                    region: fold.issuer().to_string(),
                    late: fold.disclosed_late(core.calendar(), &core.manifest().policy),
                });
            }
            SubjectRef::Commitment(id) => {
                if let Some(fold) = core.commitment(&id)? {
                    positions.push(fold.made.pos);
                    if let Some(s) = &fold.settled {
                        positions.push(s.origin.pos);
                    }
                }
            }
        }
    }
    positions.sort();
    positions.dedup();
    Ok(SubjectPage {
        region: core.region().to_string(),
        uscc: code.to_owned(),
        name: if name.is_empty() {
            code.to_owned()
        } else {
            name
        },
        entries,
        evaluations,
        disclosures,
        evidence_withheld: evidence_withheld(core, &positions),
        domains: domains(DEFAULT_DOMAIN),
    })
}

#[derive(Deserialize, Default)]
pub struct EvidenceQuery {
    domain: Option<String>,
}

/// The proven answer about an organisation as an evidence file, when every record it
/// carries is public.
pub async fn evidence(
    state: Public,
    Path(uscc): Path<String>,
    Query(q): Query<EvidenceQuery>,
) -> Response {
    let core = state.api.core.clone();
    let code = uscc.to_ascii_uppercase();
    if code.len() != 18
        || !code.bytes().all(|b| b.is_ascii_alphanumeric())
        || credfed_protocol::ids::uscc::validate_structure(&code, "uscc").is_err()
    {
        return error(
            &core,
            StatusCode::UNPROCESSABLE_ENTITY,
            "uscc: 18 letters or digits with GB 32100-2015's structure",
        );
    }
    let domain = match q.domain.as_deref() {
        None => DEFAULT_DOMAIN,
        Some(d) => match MeasureDomain::parse(d) {
            Some(d) => d,
            None => {
                return error(
                    &core,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "domain: '{}' is not a measure domain",
                        d.chars().take(40).collect::<String>()
                    ),
                );
            }
        },
    };
    let head = match tokio::time::timeout(
        super::PUBLIC_PROOF_WAIT,
        crate::api::federation_head(&state.api),
    )
    .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            return error(
                &core,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}; try again in a minute", e.message()),
            );
        }
        Err(_) => {
            return error(
                &core,
                StatusCode::SERVICE_UNAVAILABLE,
                "the federation's checkpoint is not ready; try again in a minute",
            );
        }
    };
    let c = core.clone();
    let key = SubjectKey::Uscc(code.clone());
    let proven = tokio::task::spawn_blocking(move || {
        let proven = c.prove(&key, domain, &head, true).map_err(|e| e.to_string())?;
        for ev in &proven.answer.evidence {
            let v = credfed_protocol::envelope::decode_envelope(
                &c.manifest().federation_id,
                &ev.envelope,
            )
            .map_err(|e| e.to_string())?;
            if let Err(w) = c.record_publicity(&v.body).map_err(|e| e.to_string())? {
                return Ok(Err(format!(
                    "证据文件不公开 The evidence file is not public: the record at {}#{} {}. Departments get it through the API.",
                    ev.pos.region,
                    ev.pos.seq,
                    w.describe()
                )));
            }
        }
        Ok::<_, String>(Ok(proven))
    })
    .await;
    let proven = match proven {
        Ok(Ok(Ok(p))) => p,
        Ok(Ok(Err(why))) => return error(&core, StatusCode::FORBIDDEN, why),
        Ok(Err(e)) => {
            return error(
                &core,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("proofs: {e}; try again in a minute"),
            );
        }
        Err(e) => return error(&core, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut r = (StatusCode::OK, proven.to_file()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{code}-{}.evidence\"",
        domain.name()
    )) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(&mut r);
    r
}

#[derive(Template)]
#[template(path = "public/entry.html")]
struct EntryPage {
    region: String,
    subject: String,
    subject_href: Option<String>,
    facts: Vec<(String, String)>,
}

/// One public entry. An id that is not public reads exactly like one that does not
/// exist, so that the page is no oracle for withheld entries.
pub async fn entry(state: Public, Path(id): Path<String>) -> Response {
    let core = &state.api.core;
    let absent = || {
        error(
            core,
            StatusCode::NOT_FOUND,
            "没有这条公示记录 No public entry has this id.",
        )
    };
    let Ok(hash) = credfed_protocol::crypto::Hash256::from_hex(&id) else {
        return absent();
    };
    let Ok(Some(fold)) = core.entry(&EntryId(hash)) else {
        return absent();
    };
    let Some(e) = public_entry(&fold, core.now()) else {
        return absent();
    };
    let (name, code) = subject_texts(&e.subject);
    let mut facts = vec![
        ("名单 List".to_owned(), list_name(e.list).to_owned()),
        ("类别 Category".to_owned(), e.category_zh.clone()),
        ("主体 Subject".to_owned(), format!("{name} ({code})")),
    ];
    if let Some(rep) = &e.legal_representative {
        facts.push(("法定代表人 Legal representative".into(), rep.clone()));
    }
    facts.extend([
        ("状态 State".to_owned(), state_name(&e.state)),
        ("认定机关 Authority".to_owned(), e.authority.clone()),
        ("文书号 Document".to_owned(), e.document_no.clone()),
        ("认定日期 Decided".to_owned(), e.decided_on.to_string()),
        ("法律依据 Legal basis".to_owned(), e.legal_basis.clone()),
        (
            "期间 Period".to_owned(),
            format!("{} – {}", e.effective_from, e.expires_on),
        ),
        (
            "发布 Published by".to_owned(),
            format!("{} ({})", e.department, e.region),
        ),
        (
            "措施 Measures asked".to_owned(),
            e.requested_measures
                .iter()
                .map(|m| m.0.clone())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]);
    if let Some(s) = &e.summary {
        facts.push(("情形 Summary".into(), s.clone()));
    }
    if let Some(b) = &e.person_basis {
        facts.push(("公示依据 Why this person is shown".into(), b.clone()));
    }
    facts.push(("编号 Id".into(), e.id.to_string()));
    html(
        StatusCode::OK,
        &EntryPage {
            region: core.region().to_string(),
            subject: name,
            subject_href: match &e.subject {
                PublicSubject::Organisation { uscc, .. } => Some(format!("/subjects/{uscc}")),
                PublicSubject::Person { .. } => None,
            },
            facts,
        },
    )
}

#[derive(Template)]
#[template(path = "public/verify.html")]
struct VerifyPage {
    region: String,
}

/// The verification page.
pub async fn verify_page(state: Public) -> Response {
    html(
        StatusCode::OK,
        &VerifyPage {
            region: state.api.core.region().to_string(),
        },
    )
}

/// Verifies an evidence file (the request body) against the federation's manifest.
pub async fn verify_file(state: Public, body: Bytes) -> Response {
    crate::console::pages::judge_evidence_file(&state.api.core, &body)
}

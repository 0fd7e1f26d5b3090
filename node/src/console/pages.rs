//! The console's handlers and page models (templates in `node/templates/console/`).

use std::collections::BTreeMap;
use std::time::Instant;

use askama::Template;
use axum::Form;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::console::{CHALLENGE_BYTES, login_message, verify_login};
use credfed_protocol::crypto::{Domain, PublicKey, Signature, tag};
use credfed_protocol::ids::DepartmentId;
use credfed_protocol::record::{AckDecision, ActionId, Body, ListEntry};
use credfed_protocol::time::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::labels::Labels;
use super::session::{Session, TableFull};
use super::{
    Console, ConsoleState, LANG_COOKIE, PRELOGIN_COOKIE, SESSION_COOKIE, audited, csrf_ok, labels,
    random_hex, secure_headers, see_other, set_cookie,
};

/// What every page's frame shows.
pub struct Frame {
    /// Words.
    pub l: &'static Labels,
    /// The logged-in department's menu, if any.
    pub nav: Option<Nav>,
    /// This page's path, for the language switch to come back to.
    pub here: String,
}

/// The menu of a logged-in department.
pub struct Nav {
    /// Who.
    pub department: String,
    /// CSRF token for the logout form and the scripts.
    pub csrf: String,
    /// Operator pages shown.
    pub operator: bool,
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    f: Frame,
    region: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    f: Frame,
    name: String,
    department: String,
    roles: String,
    tasks: u64,
    overdue: u64,
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    f: Frame,
    status: u16,
    message: String,
    next: String,
}

/// An error shown on a page, naming its field.
pub struct ShownError {
    field: Option<String>,
    message: String,
}

#[derive(Template)]
#[template(path = "console/check.html")]
struct CheckPage {
    f: Frame,
    csrf: String,
    domains: Vec<(String, bool)>,
    domain: String,
    uscc: String,
    name: String,
    error: Option<ShownError>,
    matches: Vec<MatchRow>,
    result: Option<CheckView>,
}

struct MatchRow {
    id: String,
    short: String,
    name: String,
    uscc: String,
    region: String,
    state: String,
}

struct MeasureRow {
    code: String,
    title: String,
    region: String,
    source: String,
}

struct EntryRow {
    id: String,
    short: String,
    category: String,
    state: String,
    region: String,
    document_no: String,
}

struct FreshRow {
    region: String,
    seq: String,
    age: String,
    stale: bool,
}

struct CheckView {
    shown: String,
    domain: String,
    verdict: String,
    verdict_class: String,
    evidence_link: Option<String>,
    person_evidence: bool,
    person_number: String,
    mandatory: Vec<MeasureRow>,
    recommended: Vec<MeasureRow>,
    withheld: Vec<(String, String)>,
    declined: Vec<String>,
    entries: Vec<EntryRow>,
    evaluations: Vec<(String, String)>,
    freshness: Vec<FreshRow>,
}

#[derive(Template)]
#[template(path = "console/inbox.html")]
struct InboxPage {
    f: Frame,
    total: u64,
    overdue: u64,
    error: Option<String>,
    rows: Vec<TaskRow>,
}

struct TaskRow {
    due: String,
    overdue: bool,
    kind: String,
    link: String,
    link_text: String,
    measures: String,
    entry_state: String,
}

#[derive(Template)]
#[template(path = "console/record.html")]
struct RecordPage {
    f: Frame,
    heading: String,
    id: String,
    error: Option<String>,
    summary: Vec<(String, String)>,
    steps: Vec<(String, String)>,
    ack: Option<AckForm>,
    timeline: Vec<TimelineRow>,
    fields: Vec<(String, String)>,
}

struct AckForm {
    action: String,
    implementing: String,
}

struct TimelineRow {
    time: String,
    what: String,
    region: String,
    department: String,
    pos: String,
}

#[derive(Template)]
#[template(path = "console/sign.html")]
struct SignPage {
    f: Frame,
    body: String,
}

#[derive(Template)]
#[template(path = "console/federation.html")]
struct FederationPage {
    f: Frame,
    node: Vec<(String, String)>,
    regions: Vec<RegionRow>,
    departments: Vec<(String, String, String, String, String)>,
}

struct RegionRow {
    region: String,
    connected: bool,
    seq: String,
    lag: String,
    age: String,
    witnessed_age: String,
    flags: Vec<String>,
}

/// Renders a page with the console's headers (the public side's pages too).
pub(crate) fn page<T: Template>(status: StatusCode, t: &T) -> Response {
    let mut r = match t.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be rendered: {e}"),
        )
            .into_response(),
    };
    secure_headers(&mut r);
    r
}

/// A JSON answer for the console's scripts, with the console's headers.
fn json_answer(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, axum::Json(v.clone())).into_response();
    secure_headers(&mut r);
    r
}

/// An error for a script: `{code, field, message}` like the API's.
fn json_error(status: StatusCode, code: &str, field: Option<&str>, message: &str) -> Response {
    json_answer(
        status,
        &json!({"code": code, "field": field, "message": message}),
    )
}

fn frame(l: &'static Labels, session: Option<&Session>, state: &ConsoleState, here: &str) -> Frame {
    Frame {
        l,
        nav: session.map(|s| Nav {
            department: s.department.to_string(),
            csrf: s.csrf.clone(),
            operator: state.is_operator(&s.department),
        }),
        here: here.to_owned(),
    }
}

fn error_page(
    l: &'static Labels,
    session: Option<&Session>,
    state: &ConsoleState,
    status: StatusCode,
    message: String,
    next: &str,
) -> Response {
    page(
        status,
        &ErrorPage {
            f: frame(l, session, state, "/console/"),
            status: status.as_u16(),
            message,
            next: next.to_owned(),
        },
    )
}

/// The session of a page request, or a redirect to the login page.
#[allow(clippy::result_large_err)]
fn require_session(state: &ConsoleState, headers: &HeaderMap) -> Result<Session, Response> {
    live_session(state, headers).ok_or_else(|| see_other("/console/login"))
}

/// The request's session if its department may still log in (registered, not revoked):
/// a revoked department's session ends at its next request.
fn live_session(state: &ConsoleState, headers: &HeaderMap) -> Option<Session> {
    let (token, s) = state.session(headers)?;
    if login_key(state, &s.department).is_err() {
        if let Ok(mut t) = state.sessions.lock() {
            t.end(&token);
        }
        return None;
    }
    Some(s)
}

/// `/` and `/console` lead to the console.
pub async fn to_console() -> Response {
    see_other("/console/")
}

/// The department's start page.
pub async fn home(state: Console, headers: HeaderMap) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let inbox = state
        .api(&s.department, Method::GET, "/v1/inbox?limit=1", None)
        .await;
    let dept = state
        .api(
            &s.department,
            Method::GET,
            &format!("/v1/departments/{}", s.department),
            None,
        )
        .await;
    let roles = dept.json["roles"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let name = dept.json["name"]
        .as_str()
        .map_or_else(|| s.department.to_string(), str::to_owned);
    page(
        StatusCode::OK,
        &HomePage {
            f: frame(l, Some(&s), &state, "/console/"),
            name,
            department: s.department.to_string(),
            roles,
            tasks: inbox.json["total"].as_u64().unwrap_or(0),
            overdue: inbox.json["overdue"].as_u64().unwrap_or(0),
        },
    )
}

/// The login page; gives the browser its pre-login cookie.
pub async fn login_page(state: Console, headers: HeaderMap) -> Response {
    let l = labels(&headers);
    let mut r = page(
        StatusCode::OK,
        &LoginPage {
            f: frame(l, None, &state, "/console/login"),
            region: state.api.core.region().to_string(),
        },
    );
    if super::cookie(&headers, PRELOGIN_COOKIE).is_none()
        && let Some(pre) = random_hex(16)
    {
        set_cookie(&mut r, PRELOGIN_COOKIE, &pre, None);
    }
    r
}

#[derive(Deserialize)]
pub struct ChallengeForm {
    department: String,
}

/// The key a department logs in with: its registered signing key, or for the node's
/// operator (`REGION:operator`) the operator key the manifest names. The node key never
/// logs in: it stays on the node.
fn login_key(state: &ConsoleState, id: &DepartmentId) -> Result<PublicKey, (StatusCode, String)> {
    let core = &state.api.core;
    if id.unit == credfed_protocol::envelope::NODE_UNIT {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "department: {id} is the node itself, whose key never leaves it; the operator logs in as {}:{}",
                id.region,
                credfed_protocol::envelope::OPERATOR_UNIT
            ),
        ));
    }
    if id.unit == credfed_protocol::envelope::OPERATOR_UNIT {
        if id.region != core.region() {
            return Err((
                StatusCode::UNAUTHORIZED,
                format!(
                    "department: {id} is another node's operator; log in at that node, or as a department of {}",
                    core.region()
                ),
            ));
        }
        return core
            .manifest()
            .members
            .iter()
            .find(|m| m.region == id.region)
            .map(|m| m.operator_key)
            .ok_or((
                StatusCode::UNAUTHORIZED,
                format!("department: {id} is not a member of the manifest"),
            ));
    }
    if id.home_province() != core.region() {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "department: {id} belongs to region {}; log in at its own node",
                id.home_province()
            ),
        ));
    }
    match core.department(id) {
        Ok(Some(d)) if d.revoked_at.is_none() => Ok(d.key),
        Ok(Some(_)) => Err((
            StatusCode::FORBIDDEN,
            format!("department: {id} was revoked; ask the operator"),
        )),
        Ok(None) => Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "department: {id} is not registered in {}'s log; check the id with your operator",
                core.region()
            ),
        )),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"))),
    }
}

/// Opens a login challenge: `{challenge, message}` (hex); the browser signs `message`.
pub async fn challenge(
    state: Console,
    headers: HeaderMap,
    client: Option<axum::Extension<crate::api::server::ClientAddr>>,
    Form(form): Form<ChallengeForm>,
) -> Response {
    let client = client.map(|c| c.0.0.ip());
    let Some(prelogin) = super::cookie(&headers, PRELOGIN_COOKIE) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "no_login_cookie",
            None,
            "open the login page first (/console/login), with cookies allowed",
        );
    };
    let id = match DepartmentId::parse(form.department.trim(), "department") {
        Ok(id) => id,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                Some("department"),
                &e.to_string(),
            );
        }
    };
    if let Err((status, message)) = login_key(&state, &id) {
        return json_error(status, "cannot_log_in", Some("department"), &message);
    }
    let mut c = [0u8; CHALLENGE_BYTES];
    let random = random_hex(CHALLENGE_BYTES).unwrap_or_default();
    if hex::decode_to_slice(random, &mut c).is_err() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_randomness",
            None,
            "the node cannot draw random numbers right now; tell the operator",
        );
    }
    let opened = state
        .sessions
        .lock()
        .map_err(|_| TableFull::Challenges)
        .and_then(|mut s| s.open_challenge(c, &prelogin, id.clone(), client, Instant::now()));
    match opened {
        Ok(()) => {}
        Err(TableFull::ChallengesOfClient) => {
            return json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                None,
                "this address has too many logins open; finish one or try again in two minutes",
            );
        }
        Err(_) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                None,
                "too many logins are open at once; try again in two minutes",
            );
        }
    }
    let core = &state.api.core;
    let message = login_message(&core.manifest().federation_id, core.region(), &id, &c);
    json_answer(
        StatusCode::OK,
        &json!({"challenge": hex::encode(c), "message": hex::encode(message)}),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    department: String,
    challenge: String,
    signature: String,
}

/// Checks the signed challenge and starts a session.
pub async fn login(state: Console, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let fail = |status: StatusCode, field: Option<&str>, message: String| {
        audited(
            json_error(status, "login_failed", field, &message),
            None,
            Some("console login".into()),
        )
    };
    let Some(prelogin) = super::cookie(&headers, PRELOGIN_COOKIE) else {
        return fail(
            StatusCode::BAD_REQUEST,
            None,
            "open the login page first (/console/login), with cookies allowed".into(),
        );
    };
    let id = match DepartmentId::parse(form.department.trim(), "department") {
        Ok(id) => id,
        Err(e) => return fail(StatusCode::BAD_REQUEST, Some("department"), e.to_string()),
    };
    let mut c = [0u8; CHALLENGE_BYTES];
    if hex::decode_to_slice(form.challenge.trim(), &mut c).is_err() {
        return fail(
            StatusCode::BAD_REQUEST,
            Some("challenge"),
            "challenge: expected 64 hex digits".into(),
        );
    }
    let signature = match Signature::from_hex(&form.signature.trim().to_ascii_lowercase()) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Some("signature"),
                format!("signature: {e}"),
            );
        }
    };
    let taken = state
        .sessions
        .lock()
        .map(|mut s| s.take_challenge(&c, &prelogin, &id, Instant::now()))
        .unwrap_or(false);
    if !taken {
        return fail(
            StatusCode::UNAUTHORIZED,
            Some("challenge"),
            "challenge: unknown, used or older than two minutes; log in again".into(),
        );
    }
    let key = match login_key(&state, &id) {
        Ok(k) => k,
        Err((status, m)) => return fail(status, Some("department"), m),
    };
    let core = &state.api.core;
    if verify_login(
        &key,
        &core.manifest().federation_id,
        core.region(),
        &id,
        &c,
        &signature,
    )
    .is_err()
    {
        return fail(
            StatusCode::UNAUTHORIZED,
            Some("key"),
            format!(
                "key: the signature does not verify under {id}'s registered key; choose that department's signing key file"
            ),
        );
    }
    let (Some(token), Some(csrf)) = (random_hex(32), random_hex(16)) else {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the node cannot draw random numbers right now; tell the operator".into(),
        );
    };
    let session = Session {
        department: id.clone(),
        csrf,
        expires: Instant::now() + state.session_ttl,
    };
    let started = state
        .sessions
        .lock()
        .map_err(|_| TableFull::Sessions)
        .and_then(|mut s| s.start(&token, session, Instant::now()));
    if started.is_err() {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the node holds as many console sessions as it may; ask the operator".into(),
        );
    }
    let mut r = json_answer(StatusCode::OK, &json!({"next": "/console/"}));
    set_cookie(&mut r, SESSION_COOKIE, &token, Some(state.session_ttl));
    set_cookie(&mut r, PRELOGIN_COOKIE, "", Some(std::time::Duration::ZERO));
    audited(r, Some(&id), Some("console login".into()))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// Ends the session.
pub async fn logout(
    state: Console,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let l = labels(&headers);
    // A body that is not a form carries no token: refused like a wrong one.
    let form = form.map_or(CsrfForm { csrf: None }, |Form(f)| f);
    let Some((token, s)) = state.session(&headers) else {
        return see_other("/console/login");
    };
    if !csrf_ok(&s, form.csrf.as_deref()) {
        return csrf_refused(l, &s, &state);
    }
    if let Ok(mut t) = state.sessions.lock() {
        t.end(&token);
    }
    let mut r = see_other("/console/login");
    set_cookie(&mut r, SESSION_COOKIE, "", Some(std::time::Duration::ZERO));
    audited(r, Some(&s.department), Some("console logout".into()))
}

fn csrf_refused(l: &'static Labels, s: &Session, state: &ConsoleState) -> Response {
    error_page(
        l,
        Some(s),
        state,
        StatusCode::FORBIDDEN,
        "csrf: the form's token does not match this session (a page from another site, or an old tab)".into(),
        "Reload the page and send the form again.",
    )
}

#[derive(Deserialize)]
pub struct LangQuery {
    to: Option<String>,
    back: Option<String>,
}

/// Sets the language cookie and returns to the page (console paths only).
pub async fn switch_lang(Query(q): Query<LangQuery>) -> Response {
    let lang = if q.to.as_deref() == Some("en") {
        "en"
    } else {
        "zh"
    };
    let back = q
        .back
        .filter(|b| b.starts_with("/console/") && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/console/".into());
    let mut r = see_other(&back);
    set_cookie(
        &mut r,
        LANG_COOKIE,
        lang,
        Some(std::time::Duration::from_secs(365 * 86_400)),
    );
    r
}

#[derive(Deserialize, Default)]
pub struct CheckQuery {
    uscc: Option<String>,
    name: Option<String>,
    domain: Option<String>,
}

fn domains(selected: &str) -> Vec<(String, bool)> {
    MeasureDomain::ALL
        .iter()
        .map(|d| (d.name().to_owned(), d.name() == selected))
        .collect()
}

/// A JSON value as page text. Bidirectional controls (U+202A–202E, U+2066–2069,
/// U+200E–200F, U+061C) are shown as `[U+XXXX]`: a record's text must not reorder what
/// the page shows around it (a name that reads backwards, a number that swaps digits).
/// HTML escaping is the template engine's.
fn text(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Null => return String::new(),
        other => other.to_string(),
    };
    if !raw.chars().any(is_bidi_control) {
        return raw;
    }
    raw.chars()
        .map(|c| {
            if is_bidi_control(c) {
                format!("[U+{:04X}]", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn shown_error(reply: &super::ApiReply) -> ShownError {
    ShownError {
        field: reply.json["field"].as_str().map(str::to_owned),
        message: reply.message(),
    }
}

/// The check page: by USCC (GET), or a name search among list entries.
pub async fn check_page(
    state: Console,
    headers: HeaderMap,
    Query(q): Query<CheckQuery>,
) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let domain = q
        .domain
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "procurement".into());
    let mut p = CheckPage {
        f: frame(l, Some(&s), &state, "/console/check"),
        csrf: s.csrf.clone(),
        domains: domains(&domain),
        domain: domain.clone(),
        uscc: q.uscc.clone().unwrap_or_default(),
        name: q.name.clone().unwrap_or_default(),
        error: None,
        matches: Vec::new(),
        result: None,
    };
    let mut subject = None;
    if let Some(uscc) = q.uscc.as_deref().filter(|u| !u.trim().is_empty()) {
        let uri = format!(
            "/v1/check?uscc={}&domain={}",
            credfed_client::query_value(uscc.trim()),
            credfed_client::query_value(&domain)
        );
        let reply = state.api(&s.department, Method::GET, &uri, None).await;
        subject = reply.subject.clone();
        if reply.status.is_success() {
            let evidence = format!(
                "/console/evidence?uscc={}&domain={}",
                credfed_client::query_value(uscc.trim()),
                credfed_client::query_value(&domain)
            );
            p.result = Some(check_view(
                l,
                &reply.json,
                uscc.trim(),
                Some(evidence),
                None,
            ));
        } else {
            p.error = Some(shown_error(&reply));
        }
    } else if let Some(name) = q.name.as_deref().filter(|n| !n.trim().is_empty()) {
        let uri = format!(
            "/v1/entries?name={}&limit=50",
            credfed_client::query_value(name.trim())
        );
        let reply = state.api(&s.department, Method::GET, &uri, None).await;
        if reply.status.is_success() {
            p.matches = reply.json["items"]
                .as_array()
                .map(|a| a.iter().map(match_row).collect())
                .unwrap_or_default();
            if p.matches.is_empty() {
                p.error = Some(ShownError {
                    field: None,
                    message: format!("{}: {}", l.matches, l.nothing),
                });
            }
        } else {
            p.error = Some(shown_error(&reply));
        }
    }
    audited(page(StatusCode::OK, &p), Some(&s.department), subject)
}

fn match_row(e: &Value) -> MatchRow {
    let id = text(&e["id"]);
    let code = text(&e["code"]);
    MatchRow {
        short: short(&id),
        id,
        name: text(&e["name"]),
        // Persons are listed by their masked number: only a USCC links to a check.
        uscc: if code.contains('*') {
            String::new()
        } else {
            code
        },
        region: text(&e["region"]),
        state: text(&e["state"]),
    }
}

#[derive(Deserialize, Default)]
pub struct PersonCheckForm {
    csrf: Option<String>,
    #[serde(default)]
    person: String,
    #[serde(default)]
    domain: String,
}

/// A person's check through the API (`POST /v1/check`, with proofs for an evidence
/// file) for a session whose form carries its CSRF token.
async fn ask_about_person(
    state: &ConsoleState,
    headers: &HeaderMap,
    form: Result<Form<PersonCheckForm>, FormRejection>,
    proofs: bool,
) -> Result<(Session, PersonCheckForm, super::ApiReply), Response> {
    let form = form.map_or_else(|_| PersonCheckForm::default(), |Form(f)| f);
    let s = require_session(state, headers)?;
    if !csrf_ok(&s, form.csrf.as_deref()) {
        return Err(csrf_refused(labels(headers), &s, state));
    }
    let mut request = json!({"person": form.person, "domain": form.domain});
    if proofs {
        request["proofs"] = json!(true);
        request["manifest"] = json!(true);
    }
    let reply = state
        .api(&s.department, Method::POST, "/v1/check", Some(&request))
        .await;
    Ok((s, form, reply))
}

/// A person's check: the number travels in the form body, never in a URL.
pub async fn check_person(
    state: Console,
    headers: HeaderMap,
    form: Result<Form<PersonCheckForm>, FormRejection>,
) -> Response {
    let l = labels(&headers);
    let (s, form, reply) = match ask_about_person(&state, &headers, form, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut p = CheckPage {
        f: frame(l, Some(&s), &state, "/console/check"),
        csrf: s.csrf.clone(),
        domains: domains(&form.domain),
        domain: form.domain.clone(),
        uscc: String::new(),
        name: String::new(),
        error: None,
        matches: Vec::new(),
        result: None,
    };
    if reply.status.is_success() {
        let masked = reply.subject.clone().unwrap_or_default();
        p.result = Some(check_view(
            l,
            &reply.json,
            &masked,
            None,
            Some(form.person.trim().to_owned()),
        ));
    } else {
        p.error = Some(shown_error(&reply));
    }
    audited(page(StatusCode::OK, &p), Some(&s.department), reply.subject)
}

fn measure_rows(v: &Value) -> Vec<MeasureRow> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|m| MeasureRow {
                    code: text(&m["code"]),
                    title: text(&m["title_zh"]),
                    region: text(&m["region"]),
                    source: source_text(&m["source"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn source_text(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| format!("{k} {}", short(&text(x))))
            .collect::<Vec<_>>()
            .join(", "),
        other => text(other),
    }
}

fn check_view(
    l: &Labels,
    v: &Value,
    shown: &str,
    evidence: Option<String>,
    person: Option<String>,
) -> CheckView {
    let verdict = text(&v["verdict"]);
    let now_ms = v["as_of"].as_i64().unwrap_or(0);
    let (words, class) = match verdict.as_str() {
        "clear" => (l.verdict_clear, "good"),
        "measures_apply" => (l.verdict_measures_apply, "bad"),
        "nothing_applies" => (l.verdict_nothing_applies, "neutral"),
        _ => ("", "neutral"),
    };
    CheckView {
        shown: shown.to_owned(),
        domain: text(&v["domain"]),
        verdict_class: class.into(),
        verdict: format!("{words} ({verdict})"),
        evidence_link: evidence,
        person_evidence: person.is_some(),
        person_number: person.unwrap_or_default(),
        mandatory: measure_rows(&v["mandatory"]),
        recommended: measure_rows(&v["recommended"]),
        withheld: v["withheld"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|w| (text(&w["measure"]["code"]), text(&w["reason"])))
                    .collect()
            })
            .unwrap_or_default(),
        declined: v["declined_here"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        format!(
                            "{} {} {}: {}",
                            text(&d["region"]),
                            text(&d["declined_on"]),
                            text(&d["measure"]),
                            text(&d["reason"])
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        entries: v["entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let id = text(&e["entry"]);
                        EntryRow {
                            short: short(&id),
                            id,
                            category: category_text(&e["category"]),
                            state: text(&e["state"]),
                            region: text(&e["region"]),
                            document_no: text(&e["document_no"]),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
        evaluations: v["evaluations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let ev = &e["evaluation"];
                        let grade = match (&ev["grade"]["class"], &ev["grade"]["score"]) {
                            (Value::Array(bytes), _) => bytes
                                .iter()
                                .filter_map(|b| b.as_u64())
                                .filter(|b| *b != 0)
                                .filter_map(|b| char::from_u32(b as u32))
                                .collect::<String>(),
                            (_, Value::Number(n)) => format!("{n}‰"),
                            _ => String::new(),
                        };
                        let line = format!(
                            "{} {} — {} · {} ({}, {} – {})",
                            text(&ev["scheme"]),
                            text(&Value::String(grade)),
                            text(&e["class_meaning"]),
                            text(&e["state"]),
                            text(&e["region"]),
                            text(&ev["evaluated_on"]),
                            text(&ev["valid_until"])
                        );
                        (text(&e["id"]), line)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        freshness: v["freshness"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        let seq = f["head_seq"].as_u64().unwrap_or(0);
                        FreshRow {
                            region: text(&f["region"]),
                            seq: seq.to_string(),
                            age: f["head_time"]
                                .as_i64()
                                .map(|t| format!("{} s", (now_ms - t).max(0) / 1000))
                                .unwrap_or_default(),
                            stale: seq == 0,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn category_text(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| format!("{k}: {}", text(x)))
            .collect::<Vec<_>>()
            .join(", "),
        other => text(other),
    }
}

/// The proven answer as an evidence file (`credfed verify` reads it).
pub async fn evidence_get(
    state: Console,
    headers: HeaderMap,
    Query(q): Query<CheckQuery>,
) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let uscc = q.uscc.unwrap_or_default();
    let domain = q.domain.unwrap_or_default();
    let uri = format!(
        "/v1/check?uscc={}&domain={}&proofs=true&manifest=true",
        credfed_client::query_value(uscc.trim()),
        credfed_client::query_value(&domain)
    );
    let reply = state.api(&s.department, Method::GET, &uri, None).await;
    evidence_file(l, &s, &state, reply, &format!("{}-{domain}", uscc.trim()))
}

/// A person's evidence file: the number in the form body.
pub async fn evidence_person(
    state: Console,
    headers: HeaderMap,
    form: Result<Form<PersonCheckForm>, FormRejection>,
) -> Response {
    let l = labels(&headers);
    let (s, form, reply) = match ask_about_person(&state, &headers, form, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = reply
        .subject
        .clone()
        .unwrap_or_else(|| "person".into())
        .replace('*', "x");
    evidence_file(l, &s, &state, reply, &format!("{name}-{}", form.domain))
}

fn evidence_file(
    l: &'static Labels,
    s: &Session,
    state: &ConsoleState,
    reply: super::ApiReply,
    stem: &str,
) -> Response {
    if !reply.status.is_success() {
        return error_page(
            l,
            Some(s),
            state,
            reply.status,
            reply.message(),
            "Go back to the check page and try again.",
        );
    }
    // This region's own declines travel beside the proven answer, never inside the
    // signed file (the API says so): they are left out of it here too.
    let mut signed = reply.json.clone();
    if let Some(o) = signed.as_object_mut() {
        o.remove("declined_here");
    }
    let proven: credfed_protocol::federation::ProvenAnswer = match serde_json::from_value(signed) {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                l,
                Some(s),
                state,
                StatusCode::BAD_GATEWAY,
                format!("the node's answer carries no proofs: {e}"),
                "",
            );
        }
    };
    let file_name: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(80)
        .collect();
    let mut r = (StatusCode::OK, proven.to_file()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}.evidence\""))
    {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(&mut r);
    audited(r, Some(&s.department), reply.subject)
}

/// The department's inbox, earliest due first.
pub async fn inbox_page(state: Console, headers: HeaderMap) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reply = state
        .api(&s.department, Method::GET, "/v1/inbox?limit=500", None)
        .await;
    let rows = reply.json["tasks"]
        .as_array()
        .map(|a| a.iter().map(task_row).collect())
        .unwrap_or_default();
    page(
        StatusCode::OK,
        &InboxPage {
            f: frame(l, Some(&s), &state, "/console/inbox"),
            total: reply.json["total"].as_u64().unwrap_or(0),
            overdue: reply.json["overdue"].as_u64().unwrap_or(0),
            error: (!reply.status.is_success()).then(|| reply.message()),
            rows,
        },
    )
}

fn task_row(t: &Value) -> TaskRow {
    let about = &t["about"];
    let (link, id) = if let Some(a) = about["action"].as_str() {
        (format!("/console/actions/{a}"), a.to_owned())
    } else if let Some(c) = about["commitment"].as_str() {
        (format!("/console/commitments/{c}"), c.to_owned())
    } else {
        let e = text(&t["entry"]);
        (format!("/console/entries/{e}"), e)
    };
    TaskRow {
        due: format!(
            "{}{}",
            if t["due_estimated"] == json!(true) {
                "~"
            } else {
                ""
            },
            text(&t["due"])
        ),
        overdue: t["overdue"] == json!(true),
        kind: text(&t["kind"]),
        link_text: short(&id),
        link,
        measures: t["measures"]
            .as_array()
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        entry_state: text(&t["entry_state"]),
    }
}

/// Every `{at, author, pos}` in a record's JSON, as timeline rows named by where they sit.
fn timeline(v: &Value) -> Vec<TimelineRow> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(i64, TimelineRow)>) {
        match v {
            Value::Object(o) => {
                if let (Some(at), Some(author), Some(pos)) = (
                    o.get("at").and_then(Value::as_i64),
                    o.get("author"),
                    o.get("pos"),
                ) {
                    out.push((
                        at,
                        TimelineRow {
                            time: Timestamp(at).cst_string(),
                            what: path.trim_start_matches('.').to_owned(),
                            region: text(&author["region"]),
                            department: format!(
                                "{}:{}",
                                text(&author["region"]),
                                text(&author["unit"])
                            ),
                            pos: format!("{}#{}", text(&pos["region"]), text(&pos["seq"])),
                        },
                    ));
                }
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Leaves of a JSON value as `path = value` rows (bounded: a page stays small).
fn flatten(v: &Value, limit: usize) -> Vec<(String, String)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, String)>, limit: usize) {
        if out.len() >= limit {
            return;
        }
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), out, limit);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), out, limit);
                }
            }
            other => out.push((path.trim_start_matches('.').to_owned(), text(other))),
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out, limit);
    out
}

/// Fields shown per page at most (keeps every page under the size budget).
const MAX_FIELDS: usize = 400;

#[derive(Deserialize)]
pub struct RecordId {
    id: String,
}

/// The route of a record page: `kind` is the API's collection (`entries`, `actions`,
/// `evaluations`, `commitments`, `disclosures`), read as `/v1/{kind}/{id}`.
pub fn record_route(
    kind: &'static str,
) -> axum::routing::MethodRouter<std::sync::Arc<ConsoleState>> {
    axum::routing::get(
        move |state: Console, headers: HeaderMap, Path(RecordId { id }): Path<RecordId>| {
            record_page(state, headers, kind, id)
        },
    )
}

async fn record_page(state: Console, headers: HeaderMap, kind: &str, id: String) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reply = state
        .api(
            &s.department,
            Method::GET,
            &format!("/v1/{kind}/{}", credfed_client::query_value(&id)),
            None,
        )
        .await;
    let here = format!("/console/{kind}/{}", credfed_client::query_value(&id));
    if !reply.status.is_success() {
        let status = reply.status;
        return audited(
            error_page(l, Some(&s), &state, status, reply.message(), ""),
            Some(&s.department),
            reply.subject,
        );
    }
    let v = &reply.json;
    let (heading, summary, ack) = if kind == "entries" {
        let e = &v["entry"];
        let c = &e["content"];
        let subject = &c["subject"];
        let name = text(&subject["organisation"]["name"]) + &text(&subject["person"]["name"]);
        (
            format!("{} · {}", l.entries, name),
            vec![
                (l.state.to_owned(), text(&v["state"])),
                (l.kind.to_owned(), category_text(&c["category"])),
                (l.uscc.to_owned(), text(&subject["organisation"]["uscc"])),
                ("basis".into(), text(&c["basis"]["document_no"])),
                ("authority".into(), text(&c["basis"]["authority"])),
                ("expires_on".into(), text(&c["expires_on"])),
            ],
            None,
        )
    } else if kind != "actions" {
        // Commitments and disclosures: their fields and timeline say it all.
        let title = match kind {
            "commitments" => super::forms::form("commitment"),
            "evaluations" => super::forms::form("evaluate"),
            _ => super::forms::form("disclose"),
        }
        .map_or(kind, |f| if l.lang == "en" { f.en } else { f.zh });
        (format!("{title} · {}", short(&id)), Vec::new(), None)
    } else {
        let a = &v["action"]["action"];
        let mine = v["targets"].as_array().is_some_and(|t| {
            t.iter()
                .any(|x| text(&x["region"]) == s.department.region.to_string())
        });
        (
            format!("{} · {}", l.acknowledge, text(&a["reference"])),
            vec![
                (l.kind.to_owned(), text(&a["kind"])),
                (
                    l.measure.to_owned(),
                    a["measures"]
                        .as_array()
                        .map(|m| m.iter().map(text).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                ),
                (l.due.to_owned(), text(&a["respond_by"])),
                (l.entries.to_owned(), text(&a["entry"])),
            ],
            mine.then(|| AckForm {
                action: text(&v["action"]["id"]),
                implementing: s.department.to_string(),
            }),
        )
    };
    let steps = record_steps(l, kind, v);
    let p = RecordPage {
        f: frame(l, Some(&s), &state, &here),
        heading,
        id: id.clone(),
        error: None,
        summary,
        steps,
        ack,
        timeline: timeline(v),
        fields: flatten(v, MAX_FIELDS),
    };
    audited(page(StatusCode::OK, &p), Some(&s.department), reply.subject)
}

#[derive(Deserialize, Default)]
pub struct SignQuery {
    body: Option<String>,
}

/// Any record body as JSON, signed in the browser (every kind the API takes).
pub async fn sign_page(state: Console, headers: HeaderMap, Query(q): Query<SignQuery>) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    page(
        StatusCode::OK,
        &SignPage {
            f: frame(l, Some(&s), &state, "/console/sign"),
            body: q.body.unwrap_or_default(),
        },
    )
}

/// The session of a script's request with its CSRF header, or the JSON refusal.
#[allow(clippy::result_large_err)]
fn script_session(state: &ConsoleState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(s) = live_session(state, headers) else {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "no_session",
            None,
            "the console session ended; log in again",
        ));
    };
    let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !csrf_ok(&s, given) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "csrf",
            None,
            "csrf: the token does not match this session; reload the page",
        ));
    }
    Ok(s)
}

/// Builds the body a form describes: `{body, message}` (hex); the browser signs
/// `message` (the record tag followed by the body).
pub async fn prepare(
    state: Console,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form: BTreeMap<String, String> = pairs.iter().cloned().collect();
    let s = match script_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // `form` names the form: `kind` is a field of some records (an action's, a
    // disclosure's).
    let built = match super::forms::form(field(&form, "form")) {
        Some(spec) => {
            // A person is named by the reference the members' key gives their number
            // (docs/privacy.md): asked of the API as the CLI asks it, the number only
            // in this request's body.
            let mut resolved = Vec::new();
            if spec.amends_entry {
                let entry = field(&form, "entry");
                let r = state
                    .api(
                        &s.department,
                        Method::GET,
                        &format!("/v1/entries/{}", credfed_client::query_value(entry)),
                        None,
                    )
                    .await;
                if !r.status.is_success() {
                    return json_error(r.status, "invalid", Some("entry"), &r.message());
                }
                resolved.push(("amended", r.json["entry"]["content"].clone()));
            }
            let related = match super::forms::related_of(spec, &pairs) {
                Ok(r) => r,
                Err((field, message)) => {
                    return json_error(StatusCode::BAD_REQUEST, "invalid", Some(&field), &message);
                }
            };
            let subject = super::forms::person_of(spec, &pairs);
            let mut persons: Vec<Value> = Vec::new();
            if let Some((number, name)) = &subject {
                persons.push(json!({"number": number, "name": name}));
            }
            for (_, number, name) in &related {
                persons.push(json!({"number": number, "name": name}));
            }
            if !persons.is_empty() {
                let r = state
                    .api(
                        &s.department,
                        Method::POST,
                        "/v1/persons/refs",
                        Some(&json!({ "persons": persons })),
                    )
                    .await;
                if !r.status.is_success() {
                    // The API names `persons[i].number`: point at the form's field.
                    let api_field = r.json["field"].as_str().unwrap_or("");
                    let index: usize = api_field
                        .trim_start_matches("persons[")
                        .split(']')
                        .next()
                        .and_then(|i| i.parse().ok())
                        .unwrap_or(0);
                    let field = if subject.is_some() && index == 0 {
                        if api_field.ends_with("name") {
                            "person.name"
                        } else {
                            "person.number"
                        }
                    } else {
                        "related_persons"
                    };
                    return json_error(r.status, "invalid", Some(field), &r.message());
                }
                let refs = r.json["refs"].as_array().cloned().unwrap_or_default();
                if refs.len() != persons.len() {
                    return json_error(
                        StatusCode::BAD_GATEWAY,
                        "internal",
                        None,
                        "the node answered another number of person references than asked",
                    );
                }
                let mut refs = refs.into_iter();
                if subject.is_some() {
                    let first = refs.next().unwrap_or(Value::Null);
                    resolved.push(("subject", json!({ "person": first })));
                }
                let listed: Vec<Value> = related
                    .iter()
                    .zip(refs)
                    .map(|((role, _, _), person)| json!({"role": role, "person": person}))
                    .collect();
                if let Some(path) = spec
                    .fields
                    .iter()
                    .find(|f| f.input == super::forms::Input::Related)
                    .map(|f| f.path)
                    .filter(|_| !listed.is_empty())
                {
                    // After the entry as held, for an amendment: given, they replace it.
                    resolved.push((path, Value::Array(listed)));
                }
            }
            super::forms::build(spec, &pairs, &resolved)
        }
        None => body_of(&form, &s).map_err(|(f, m)| (f.to_owned(), m)),
    };
    let body = match built {
        Ok(b) => b,
        Err((field, message)) => {
            return json_error(StatusCode::BAD_REQUEST, "invalid", Some(&field), &message);
        }
    };
    let bytes = body.encode();
    if bytes.len() > credfed_protocol::limits::MAX_BODY_BYTES {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Some("body"),
            &format!(
                "body: {} bytes, more than a record may hold ({})",
                bytes.len(),
                credfed_protocol::limits::MAX_BODY_BYTES
            ),
        );
    }
    let mut message = tag(Domain::Body, &state.api.core.manifest().federation_id);
    message.extend_from_slice(&bytes);
    json_answer(
        StatusCode::OK,
        &json!({"body": hex::encode(&bytes), "message": hex::encode(message)}),
    )
}

fn field<'a>(form: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

fn body_of(form: &BTreeMap<String, String>, s: &Session) -> Result<Body, (&'static str, String)> {
    match field(form, "form") {
        "body" => serde_json::from_str::<Body>(field(form, "body")).map_err(|e| {
            (
                "body",
                format!(
                    "body: not a record body as JSON ({e}); see docs/protocol.md for the kinds"
                ),
            )
        }),
        "acknowledge" => {
            let action = hex32("action", field(form, "action"))?;
            let reason = field(form, "reason").to_owned();
            let decision = match field(form, "decision") {
                "accepted" => AckDecision::Accepted,
                "declined" if reason.is_empty() => {
                    return Err((
                        "reason",
                        "reason: a decline names its reason (article 十八: the initiator and the state need it)".into(),
                    ));
                }
                "declined" => AckDecision::Declined { reason },
                other => {
                    return Err((
                        "decision",
                        format!("decision: '{other}' is not accepted or declined"),
                    ));
                }
            };
            let mut implementing = Vec::new();
            for part in field(form, "implementing")
                .split([',', ' ', '，'])
                .filter(|p| !p.is_empty())
            {
                implementing.push(
                    DepartmentId::parse(part, "implementing")
                        .map_err(|e| ("implementing", e.to_string()))?,
                );
            }
            if implementing.is_empty() && matches!(decision, AckDecision::Accepted) {
                implementing.push(s.department.clone());
            }
            implementing.sort();
            implementing.dedup();
            Ok(Body::JointActionAcknowledged {
                action: ActionId(action),
                decision,
                implementing,
            })
        }
        other => Err((
            "form",
            format!(
                "form: '{}' is not a form this console signs",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

fn hex32(
    name: &'static str,
    v: &str,
) -> Result<credfed_protocol::crypto::Hash256, (&'static str, String)> {
    credfed_protocol::crypto::Hash256::from_hex(v)
        .map_err(|_| (name, format!("{name}: expected 64 hex digits")))
}

#[derive(Deserialize)]
pub struct Signed {
    body: String,
    signature: String,
}

/// Submits a body the browser signed, as the session's department, through
/// `POST /v1/records`; answers the API's receipt or error.
pub async fn submit(state: Console, headers: HeaderMap, body: Bytes) -> Response {
    let s = match script_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let signed: Signed = match serde_json::from_slice(&body) {
        Ok(x) => x,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                None,
                &format!("expected {{body, signature}} as JSON: {e}"),
            );
        }
    };
    let reply = state
        .api(
            &s.department,
            Method::POST,
            "/v1/records",
            Some(&json!({
                "author": s.department.to_string(),
                "body": signed.body,
                "signature": signed.signature,
            })),
        )
        .await;
    audited(
        json_answer(reply.status, &reply.json),
        Some(&s.department),
        reply.subject,
    )
}

/// The steps a department can take on a record, as links to their forms (the API
/// decides whether this department may take them).
fn record_steps(l: &Labels, kind: &str, v: &Value) -> Vec<(String, String)> {
    let title = |slug: &str| {
        super::forms::form(slug).map_or(slug.to_owned(), |f| {
            if l.lang == "en" { f.en } else { f.zh }.to_owned()
        })
    };
    let mut out = Vec::new();
    if kind == "entries" {
        let id = text(&v["entry"]["id"]);
        for slug in [
            "initiate",
            "amend",
            "object",
            "repair-apply",
            "repair",
            "revoke",
        ] {
            out.push((format!("/console/forms/{slug}?entry={id}"), title(slug)));
        }
        if let Some(o) = v["entry"]["objections"].as_object() {
            for oid in o.keys() {
                out.push((
                    format!("/console/forms/resolve?objection={oid}"),
                    format!("{} {}", title("resolve"), short(oid)),
                ));
            }
        }
        if let Some(r) = v["entry"]["repairs"].as_object() {
            for aid in r.keys() {
                out.push((
                    format!("/console/forms/repair-decide?entry={id}&application={aid}"),
                    format!("{} {}", title("repair-decide"), short(aid)),
                ));
            }
        }
    } else if kind == "actions" {
        let id = text(&v["action"]["id"]);
        for slug in ["execute", "lift"] {
            out.push((format!("/console/forms/{slug}?action={id}"), title(slug)));
        }
    } else if kind == "evaluations"
        && let Some(id) = v["evaluation"]["id"].as_str()
    {
        out.push((
            format!("/console/forms/object-evaluation?evaluation={id}"),
            title("object-evaluation"),
        ));
        out.push((
            format!("/console/forms/evaluation-revoke?evaluation={id}"),
            title("evaluation-revoke"),
        ));
        if let Some(o) = v["evaluation"]["objections"].as_object() {
            for oid in o.keys() {
                out.push((
                    format!("/console/forms/resolve?objection={oid}"),
                    format!("{} {}", title("resolve"), short(oid)),
                ));
            }
        }
    } else if kind == "commitments"
        && let Some(id) = v["id"].as_str().or(v["commitment"]["id"].as_str())
    {
        out.push((
            format!("/console/forms/settle?commitment={id}"),
            title("settle"),
        ));
    }
    out
}

#[derive(Template)]
#[template(path = "console/forms.html")]
struct FormsPage {
    f: Frame,
    forms: Vec<(String, String)>,
}

/// The forms a department can fill in.
pub async fn forms_page(state: Console, headers: HeaderMap) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    page(
        StatusCode::OK,
        &FormsPage {
            f: frame(l, Some(&s), &state, "/console/forms"),
            forms: super::forms::FORMS
                .iter()
                .map(|x| {
                    (
                        x.slug.to_owned(),
                        if l.lang == "en" { x.en } else { x.zh }.to_owned(),
                    )
                })
                .collect(),
        },
    )
}

#[derive(Template)]
#[template(path = "console/form.html")]
struct FormPage {
    f: Frame,
    slug: String,
    title: String,
    error: Option<String>,
    choose_category: bool,
    categories: Vec<(String, String)>,
    fields: Vec<FieldView>,
}

struct FieldView {
    name: String,
    label: String,
    widget: String,
    value: String,
    required: bool,
    options: Vec<(String, String, bool)>,
}

/// One form, filled in from the query (`entry`, `action`, `category`, …).
pub async fn form_page(
    state: Console,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    use super::forms::Input;
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(spec) = super::forms::form(&slug) else {
        return error_page(
            l,
            Some(&s),
            &state,
            StatusCode::NOT_FOUND,
            format!("no form '{}'", slug.chars().take(40).collect::<String>()),
            "See /console/forms for every step.",
        );
    };
    let here = format!("/console/forms/{}", spec.slug);
    let title = if l.lang == "en" { spec.en } else { spec.zh }.to_owned();
    let needs_category = spec.fields.iter().any(|x| x.input == Input::Category);
    let category = q
        .get("category")
        .and_then(|c| super::forms::parse_category(c).map(|_| c.clone()));
    if needs_category && category.is_none() {
        return page(
            StatusCode::OK,
            &FormPage {
                f: frame(l, Some(&s), &state, &here),
                slug: spec.slug.into(),
                title,
                error: None,
                choose_category: true,
                categories: super::forms::categories(),
                fields: Vec::new(),
            },
        );
    }
    // The measures offered: those the catalogue lets apply to the entry (the chosen
    // category with an organisation as subject, or the entry named), or the action's.
    let catalogue = state.api.core.catalogue();
    let mut error = None;
    // An amendment's form shows the entry as held.
    let mut held: Option<Value> = None;
    let mut measures: Vec<(String, String)> = Vec::new();
    if let Some(c) = category.as_deref().and_then(super::forms::parse_category) {
        let findings = if c
            == credfed_protocol::record::Category::Black(
                credfed_protocol::record::BlackCategory::DefyingJudgmentOrDecision,
            ) {
            vec![credfed_protocol::record::Finding::AbleButRefuses]
        } else {
            vec![]
        };
        let mut probe = probe_entry(c, findings);
        if spec.fields.iter().any(|x| x.input == Input::Related) {
            // Measures that fall on related persons are offered too: the protocol
            // refuses them if the entry names no one in that role.
            probe.related_persons = credfed_protocol::record::RelatedRole::ALL
                .into_iter()
                .map(|role| credfed_protocol::record::RelatedPerson {
                    role,
                    person: credfed_protocol::ids::PersonRef {
                        id_hash: credfed_protocol::crypto::Hash256([0; 32]),
                        masked: String::new(),
                        name: String::new(),
                    },
                })
                .collect();
        }
        if spec.fields.iter().any(|x| x.input == Input::PersonNumber) {
            probe.subject =
                credfed_protocol::record::Subject::Person(credfed_protocol::ids::PersonRef {
                    id_hash: credfed_protocol::crypto::Hash256([0; 32]),
                    masked: String::new(),
                    name: String::new(),
                });
        }
        measures = super::forms::measures_for(catalogue, &probe);
    } else if let Some(entry) = q
        .get("entry")
        .filter(|_| spec.slug == "initiate" || spec.amends_entry)
    {
        let r = state
            .api(
                &s.department,
                Method::GET,
                &format!("/v1/entries/{}", credfed_client::query_value(entry)),
                None,
            )
            .await;
        match serde_json::from_value::<ListEntry>(r.json["entry"]["content"].clone()) {
            Ok(e) => {
                measures = super::forms::measures_for(catalogue, &e);
                held = Some(r.json["entry"]["content"].clone());
            }
            Err(_) => error = Some(r.message()),
        }
    } else if let Some(action) = q.get("action") {
        let r = state
            .api(
                &s.department,
                Method::GET,
                &format!("/v1/actions/{}", credfed_client::query_value(action)),
                None,
            )
            .await;
        match r.json["action"]["action"]["measures"].as_array() {
            Some(a) => {
                measures = a
                    .iter()
                    .map(|m| {
                        let code = text(m);
                        let title = catalogue
                            .get(&credfed_protocol::record::MeasureCode(code.clone()))
                            .map(|x| x.title_zh.clone())
                            .unwrap_or_default();
                        (code, title)
                    })
                    .collect()
            }
            None => error = Some(r.message()),
        }
    }
    let defying = category.as_deref().and_then(super::forms::parse_category)
        == Some(credfed_protocol::record::Category::Black(
            credfed_protocol::record::BlackCategory::DefyingJudgmentOrDecision,
        ));
    let fields = spec
        .fields
        .iter()
        // Findings belong to court-listed entries only (article 九 group 4).
        .filter(|x| x.input != Input::Findings || defying)
        .map(|x| {
            let value = q
                .get(x.path)
                .or_else(|| q.get(x.path.rsplit('.').next().unwrap_or(x.path)))
                .cloned()
                .unwrap_or_default();
            let (widget, options) = match x.input {
                Input::Text | Input::List | Input::Targets | Input::PersonName => ("text", vec![]),
                // Typed, never carried in a link (no value from the query).
                Input::PersonNumber => ("text", vec![]),
                Input::LongText | Input::Related => ("textarea", vec![]),
                Input::Class => ("text", vec![]),
                Input::Scheme => (
                    "select",
                    catalogue
                        .schemes
                        .iter()
                        .map(|x| {
                            (
                                x.id.clone(),
                                format!("{} {}", x.id, x.name_zh),
                                value == x.id,
                            )
                        })
                        .collect(),
                ),
                Input::Date => ("date", vec![]),
                Input::Category => ("hidden", vec![]),
                Input::Choice(o) => (
                    "select",
                    o.iter()
                        .map(|v| ((*v).to_owned(), (*v).to_owned(), value == *v))
                        .collect(),
                ),
                Input::Measures => (
                    "checkboxes",
                    measures
                        .iter()
                        .map(|(c, t)| (c.clone(), t.clone(), false))
                        .collect(),
                ),
                Input::Measure => (
                    "select",
                    measures
                        .iter()
                        .map(|(c, t)| (c.clone(), format!("{c} {t}"), false))
                        .collect(),
                ),
                Input::Findings => (
                    "checkboxes",
                    vec![(
                        "able_but_refuses".into(),
                        "有履行能力而拒不履行".into(),
                        false,
                    )],
                ),
            };
            let held_value = held.as_ref().and_then(|h| {
                let path = x.path.strip_prefix("amended.")?;
                let mut at = h;
                for part in path.split('.') {
                    at = at.get(part)?;
                }
                Some(at.clone())
            });
            let value = match (&held_value, value.is_empty()) {
                (Some(v), true) if !v.is_array() => text(v),
                _ => value,
            };
            let options = match &held_value {
                Some(Value::Array(chosen)) => options
                    .into_iter()
                    .map(|(c, t, _)| {
                        let on = chosen.iter().any(|x| x.as_str() == Some(c.as_str()));
                        (c, t, on)
                    })
                    .collect(),
                _ => options,
            };
            let value = match x.input {
                Input::Category => category.clone().unwrap_or_default(),
                // Numbers are typed, never carried in a link or shown back.
                Input::PersonNumber | Input::Related => String::new(),
                Input::Targets if value.is_empty() => "all".into(),
                _ => value,
            };
            FieldView {
                name: x.path.to_owned(),
                label: if l.lang == "en" { x.en } else { x.zh }.to_owned(),
                widget: widget.to_owned(),
                value,
                required: x.required,
                options,
            }
        })
        .collect();
    page(
        StatusCode::OK,
        &FormPage {
            f: frame(l, Some(&s), &state, &here),
            slug: spec.slug.into(),
            title,
            error,
            choose_category: false,
            categories: Vec::new(),
            fields,
        },
    )
}

/// An entry of `category` against an organisation, to ask the catalogue which measures
/// could apply before the form is filled in.
fn probe_entry(
    category: credfed_protocol::record::Category,
    findings: Vec<credfed_protocol::record::Finding>,
) -> ListEntry {
    let day = credfed_protocol::time::Date::from_days_since_epoch(20_000)
        .unwrap_or_else(|_| Timestamp(0).date_cst());
    ListEntry {
        category,
        subject: credfed_protocol::record::Subject::Organisation {
            uscc: String::new(),
            name: String::new(),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: credfed_protocol::record::Basis {
            document_no: String::new(),
            authority: String::new(),
            decided_on: day,
            legal_basis: String::new(),
        },
        effective_from: day,
        expires_on: day,
        requested_measures: vec![],
        findings,
        summary: String::new(),
    }
}

#[derive(Template)]
#[template(path = "console/verify.html")]
struct VerifyPage {
    f: Frame,
}

/// The verification page: an evidence file is chosen and its result shown.
pub async fn verify_page(state: Console, headers: HeaderMap) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    page(
        StatusCode::OK,
        &VerifyPage {
            f: frame(l, Some(&s), &state, "/console/verify"),
        },
    )
}

/// Verifies an evidence file (the request body) as `credfed verify` does, against the
/// manifest the file carries if the federation's authority signed it, else against this
/// node's; answers `{status, headline, lines, failures}` for the page to show.
pub async fn verify_file(state: Console, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = script_session(&state, &headers) {
        return r;
    }
    judge_evidence_file(&state.api.core, &body)
}

/// Verifies an evidence file against the federation's manifest and answers the
/// judgement as JSON `{status, headline, lines, failures}`: the console's and the public
/// verification pages (docs/console.md, docs/public.md).
pub(crate) fn judge_evidence_file(core: &crate::engine::Core, body: &[u8]) -> Response {
    use credfed_protocol::federation::{ProvenAnswer, VerificationStatus};
    let proven = match ProvenAnswer::from_file(body) {
        Ok(p) => p,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                Some("file"),
                &format!("file: not an evidence file: {e}"),
            );
        }
    };
    let own = core.manifest();
    let (manifest, carried_note) = match &proven.signed_manifest {
        Some(signed) => match signed.verify(&own.authority_key, proven.answer.as_of) {
            Ok(m) => (m, None),
            Err(e) => {
                return json_answer(
                    StatusCode::OK,
                    &json!({
                        "status": "not_verified",
                        "headline": "NOT VERIFIED",
                        "lines": [],
                        "failures": [format!("manifest: the file's manifest is not the federation authority's: {e}")],
                    }),
                );
            }
        },
        None => (
            own.clone(),
            Some("the file carries no manifest: checked against this node's"),
        ),
    };
    let catalogue = match credfed_protocol::catalogue::Catalogue::parse(&manifest.catalogue) {
        Ok(c) => c,
        Err(e) => {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some("file"),
                &format!("the manifest's catalogue: {e}"),
            );
        }
    };
    let max_age = 300;
    let report = credfed_protocol::federation::verify_proven_answer(
        &proven,
        &manifest,
        &catalogue,
        core.now_seconds(),
        max_age,
    );
    let judged = credfed_protocol::federation::judge(&report, Vec::new(), max_age, false);
    let (status, headline) = match judged.status {
        VerificationStatus::Verified => ("verified", "VERIFIED"),
        VerificationStatus::Partial => ("partial", "VERIFIED, PARTIAL"),
        VerificationStatus::NotVerified => ("not_verified", "NOT VERIFIED"),
    };
    let subject = match &proven.answer.subject {
        credfed_protocol::record::SubjectKey::Uscc(u) => u.clone(),
        other => format!("{other:?}").chars().take(80).collect(),
    };
    if judged.status == VerificationStatus::NotVerified {
        // Nothing in the file can be relied on: only what it claims to be about, said
        // as a claim, and the problems.
        return json_answer(
            StatusCode::OK,
            &json!({
                "status": "not_verified",
                "headline": headline,
                "lines": [format!(
                    "the file claims to answer about {subject} in {} — do not rely on it",
                    proven.answer.domain.name()
                )],
                "failures": judged.failures,
            }),
        );
    }
    let mut lines = vec![
        format!("{}: {subject}", proven.answer.domain.name()),
        format!(
            "verdict (recomputed from the proofs): {}",
            report
                .verdict
                .map_or("-", credfed_protocol::check::verdict_name)
        ),
        format!(
            "as of {} ({} s old), answered by {}, cosigned by {} of {} members (quorum {})",
            Timestamp::from_seconds(report.witnessed_at).cst_string(),
            report.age_seconds,
            report.answered_by,
            report.cosigners.len(),
            manifest.members.len(),
            report.quorum
        ),
        format!("manifest {} v{}", manifest.federation_id, manifest.version),
    ];
    if let Some(n) = carried_note {
        lines.push(n.to_owned());
    }
    json_answer(
        StatusCode::OK,
        &json!({"status": status, "headline": headline, "lines": lines, "failures": judged.failures}),
    )
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    f: Frame,
    caller: String,
    endpoint: String,
    outcomes: Vec<(String, bool)>,
    error: Option<String>,
    total: usize,
    shown: usize,
    rows: Vec<AuditRow>,
}

struct AuditRow {
    time: String,
    caller: String,
    endpoint: String,
    subject: String,
    status: String,
    outcome: String,
    ms: String,
    failed: bool,
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    caller: Option<String>,
    endpoint: Option<String>,
    outcome: Option<String>,
}

/// The audit log's latest lines (operators), filtered by caller, endpoint and outcome.
pub async fn audit_page(
    state: Console,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reply = state
        .api(&s.department, Method::GET, "/v1/audit", None)
        .await;
    if !reply.status.is_success() {
        return error_page(l, Some(&s), &state, reply.status, reply.message(), "");
    }
    let caller = q.caller.unwrap_or_default();
    let endpoint = q.endpoint.unwrap_or_default();
    let outcome = q.outcome.unwrap_or_else(|| "all".into());
    let lines = reply.json.as_array().cloned().unwrap_or_default();
    let total = lines.len();
    let rows: Vec<AuditRow> = lines
        .iter()
        .rev()
        .filter(|x| caller.is_empty() || text(&x["caller"]).contains(caller.trim()))
        .filter(|x| endpoint.is_empty() || text(&x["endpoint"]).contains(endpoint.trim()))
        .filter(|x| match outcome.as_str() {
            "ok" => x["outcome"] == "ok",
            "refused" => x["outcome"] != "ok",
            _ => true,
        })
        // The newest 300 that match: a page stays under 100 KB.
        .take(300)
        .map(|x| AuditRow {
            time: x["time_ms"]
                .as_i64()
                .map(|t| Timestamp(t).cst_string())
                .unwrap_or_default(),
            caller: text(&x["caller"]),
            endpoint: text(&x["endpoint"]),
            subject: text(&x["subject"]),
            status: text(&x["status"]),
            outcome: text(&x["outcome"]),
            ms: x["ms"]
                .as_f64()
                .map(|m| format!("{m:.1}"))
                .unwrap_or_default(),
            failed: x["outcome"] != "ok",
        })
        .collect();
    page(
        StatusCode::OK,
        &AuditPage {
            f: frame(l, Some(&s), &state, "/console/audit"),
            outcomes: ["all", "ok", "refused"]
                .iter()
                .map(|o| ((*o).to_owned(), *o == outcome))
                .collect(),
            caller,
            endpoint,
            error: None,
            total,
            shown: rows.len(),
            rows,
        },
    )
}

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    f: Frame,
    from: String,
    to: String,
    error: Option<String>,
    chart: Chart,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A bar chart drawn by the node (SVG, no script).
struct Chart {
    width: u32,
    height: u32,
    bar: u32,
    label_y: u32,
    bars: Vec<Bar>,
}

struct Bar {
    label: String,
    asked: u64,
    answered: u64,
    declined: u64,
    x: u32,
    x_answered: u32,
    x_declined: u32,
    x_text: u32,
    y_asked: u32,
    h_asked: u32,
    y_answered: u32,
    h_answered: u32,
    y_declined: u32,
    h_declined: u32,
}

/// Bars of joint actions asked, answered and declined per region (three thin bars
/// side by side per region, its code below).
fn answers_chart(per_region: &[(String, u64, u64, u64)]) -> Chart {
    const PLOT: u32 = 220;
    const TOP: u32 = 10;
    const BAR: u32 = 10;
    const STEP: u32 = 48;
    let max = per_region
        .iter()
        .map(|r| r.1.max(r.2))
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |v: u64| ((v.min(max) * u64::from(PLOT)) / max) as u32;
    let bars = per_region
        .iter()
        .enumerate()
        .map(|(i, (label, asked, answered, declined))| {
            let x = 14 + i as u32 * STEP;
            let (ha, hn, hd) = (scale(*asked), scale(*answered), scale(*declined));
            Bar {
                label: label.clone(),
                asked: *asked,
                answered: *answered,
                declined: *declined,
                x,
                x_answered: x + BAR + 1,
                x_declined: x + 2 * (BAR + 1),
                x_text: x + (3 * BAR + 2) / 2,
                y_asked: TOP + PLOT - ha,
                h_asked: ha,
                y_answered: TOP + PLOT - hn,
                h_answered: hn,
                y_declined: TOP + PLOT - hd,
                h_declined: hd,
            }
        })
        .collect::<Vec<_>>();
    Chart {
        width: (28 + bars.len() as u32 * STEP).max(640),
        height: TOP + PLOT + 24,
        bar: BAR,
        label_y: TOP + PLOT + 16,
        bars,
    }
}

#[derive(Deserialize, Default)]
pub struct ReportsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The 通报 figures of the period (article 二十三), per region and department, with a
/// chart of answers per region.
pub async fn reports_page(
    state: Console,
    headers: HeaderMap,
    Query(q): Query<ReportsQuery>,
) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut uri = "/v1/reports?period=month".to_owned();
    for (k, v) in [("from", &q.from), ("to", &q.to)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            uri.push_str(&format!("&{k}={}", credfed_client::query_value(v)));
        }
    }
    let reply = state.api(&s.department, Method::GET, &uri, None).await;
    let lines = reply.json["lines"].as_array().cloned().unwrap_or_default();
    let columns = [
        "period",
        "region",
        "department",
        "actions_asked",
        "acknowledged",
        "acknowledgements_overdue",
        "declined",
        "mandatory_declined",
        "measures_executed",
        "entries_published",
        "disclosed_late",
        "objections_received",
        "objections_overdue",
        "repairs_received",
    ];
    let mut per_region: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for x in &lines {
        if x["department"].is_null() {
            let e = per_region.entry(text(&x["region"])).or_default();
            e.0 += x["actions_asked"].as_u64().unwrap_or(0);
            e.1 += x["acknowledged"].as_u64().unwrap_or(0);
            e.2 += x["declined"].as_u64().unwrap_or(0);
        }
    }
    let bars: Vec<(String, u64, u64, u64)> = per_region
        .into_iter()
        .map(|(r, (a, n, d))| (r, a, n, d))
        .collect();
    page(
        StatusCode::OK,
        &ReportsPage {
            f: frame(l, Some(&s), &state, "/console/reports"),
            from: text(&reply.json["from"]),
            to: text(&reply.json["to"]),
            error: (!reply.status.is_success()).then(|| reply.message()),
            chart: answers_chart(&bars),
            head: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: lines
                .iter()
                // A page stays under 100 KB: a month of 31 regions and their
                // departments fits; the CLI's `credfed report --csv` gives every line.
                .take(400)
                .map(|x| columns.iter().map(|c| text(&x[*c])).collect())
                .collect(),
        },
    )
}

/// A witnessed checkpoint older than this is flagged on the operator's page: the
/// verifier's default freshness bound (`credfed verify --max-age`), past which proven
/// answers about the region verify only as partial.
const WITNESSED_AGE_WARNING_SECONDS: i64 = 300;

/// The federation at a glance (operators).
pub async fn federation_page(state: Console, headers: HeaderMap) -> Response {
    let l = labels(&headers);
    let s = match require_session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !state.is_operator(&s.department) {
        return error_page(
            l,
            Some(&s),
            &state,
            StatusCode::FORBIDDEN,
            format!(
                "{} does not hold the operator role; this page is for the node's operators",
                s.department
            ),
            "",
        );
    }
    let status = state
        .api(&s.department, Method::GET, "/v1/status", None)
        .await;
    let peers = state
        .api(&s.department, Method::GET, "/v1/peers", None)
        .await;
    let heads = state
        .api(&s.department, Method::GET, "/v1/heads", None)
        .await;
    let depts = state
        .api(&s.department, Method::GET, "/v1/departments", None)
        .await;
    let st = &status.json;
    let now_ms = st["now_ms"].as_i64().unwrap_or(0);
    let own = text(&st["region"]);
    let equivocating: Vec<String> = st["equivocating_regions"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let mut regions = Vec::new();
    for m in &state.api.core.manifest().members {
        let r = m.region.to_string();
        let head = &heads.json[&r];
        let mut flags = Vec::new();
        if equivocating.contains(&r) {
            flags.push("equivocation".to_owned());
        }
        // The region's checkpoint as this node holds it: evidence of a fork or a split
        // view, and the latest checkpoint the members witnessed (its age: how current
        // proven answers about this region can be).
        let cp = state
            .api(
                &s.department,
                Method::GET,
                &format!("/v1/log/{r}/checkpoint"),
                None,
            )
            .await;
        for (key, flag) in [
            ("fork_evidence", "fork"),
            ("split_view_evidence", "split view"),
            ("equivocation_evidence", "equivocation"),
        ] {
            if !cp.json[key].is_null() && !flags.iter().any(|f| f == flag) {
                flags.push(flag.to_owned());
            }
        }
        let witnessed_age = cp.json["witnessed"]
            .as_str()
            .and_then(|note| credfed_protocol::checkpoint::SignedCheckpoint::parse(note).ok())
            .and_then(|w| w.checkpoint.time())
            .map(|t| {
                let age = (now_ms / 1000 - i64::try_from(t).unwrap_or(i64::MAX)).max(0);
                if age > WITNESSED_AGE_WARNING_SECONDS {
                    flags.push("witnessed checkpoint old".to_owned());
                }
                format!("{age} s")
            })
            .unwrap_or_else(|| "-".to_owned());
        let connected = r == own || peers.json["connected"].get(&r).is_some();
        if !connected {
            flags.push("unreachable".to_owned());
        }
        regions.push(RegionRow {
            connected,
            seq: text(&head["seq"]),
            // Only regions whose newer records a peer has announced have a lag.
            lag: match &st["lag"][&r] {
                Value::Null => "-".to_owned(),
                v => text(v),
            },
            age: head["timestamp_ms"]
                .as_i64()
                .map(|t| format!("{} s", (now_ms - t).max(0) / 1000))
                .unwrap_or_default(),
            witnessed_age,
            flags,
            region: r,
        });
    }
    let node = [
        "region",
        "federation_id",
        "manifest_version",
        "writes_open",
        "writes_paused_reason",
        "peers_connected",
        "members",
        "own_head",
        "store_bytes",
        "audit_ok",
        "calendar_warning",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), text(&st[*k])))
    .collect();
    // Client certificates this node issued, by department (the file names are their
    // fingerprints: deleting one cuts that certificate off, docs/operator.md).
    let mut certificates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(&state.api.clients_dir) {
        for e in dir.flatten().take(10_000) {
            if let Ok(record) = std::fs::read_to_string(e.path()) {
                let mut lines = record.lines();
                let who = lines.next().unwrap_or("").trim().to_owned();
                let until = lines
                    .find_map(|l| l.strip_prefix("not_after="))
                    .unwrap_or("?");
                certificates.entry(who).or_default().push(format!(
                    "{} (valid until {until})",
                    short(&e.file_name().to_string_lossy())
                ));
            }
        }
    }
    let departments = depts
        .json
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let id = format!(
                        "{}:{}",
                        text(&d["department"]["region"]),
                        text(&d["department"]["unit"])
                    );
                    (
                        certificates
                            .get(&id)
                            .map(|c| c.join(" "))
                            .unwrap_or_default(),
                        id,
                        text(&d["name"]),
                        d["roles"]
                            .as_array()
                            .map(|r| r.iter().map(text).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default(),
                        if d["revoked_at"].is_null() {
                            String::new()
                        } else {
                            "revoked".into()
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    page(
        StatusCode::OK,
        &FederationPage {
            f: frame(l, Some(&s), &state, "/console/federation"),
            node,
            regions,
            departments,
        },
    )
}

/// The console's script (vendored, no build step).
pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console/console.js"),
    )
}

/// The console's stylesheet.
pub async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/console/console.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure_headers(&mut r);
    r
}

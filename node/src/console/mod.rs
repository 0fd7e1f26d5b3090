//! The web console: server-rendered pages for departments and operators under
//! `/console/` on the API listener (docs/console.md).
//!
//! Architecture invariant: the console holds no rule of its own. Every page reads
//! through the API's own handlers, called in process as the session's department
//! ([`ConsoleCaller`]), so a page shows exactly what the API would answer that
//! department, scoping and refusals included; every change is a record the department
//! signed in its browser and that goes through `POST /v1/records`.
//!
//! Security notes.
//! - Requires: the listener is TLS (cookies are `Secure`); departments' signing keys
//!   stay in their browsers (imported non-extractable into WebCrypto, kept in the
//!   browser's IndexedDB until logout).
//! - Provides: login by a signed challenge ([`credfed_protocol::console`]); sessions of
//!   `console_session_seconds` bound to one department, `HttpOnly`, `SameSite=Strict`, `Secure`;
//!   a CSRF token on every change; a Content-Security-Policy allowing only the node's
//!   own scripts and styles, so hostile text in records cannot run; every page escaped
//!   by the template engine.
//! - Does not provide: protection against the node itself serving a hostile script
//!   (the department trusts its node, as with the API; the script at least refuses to
//!   sign anything but a login or a record body).

pub mod forms;
pub mod labels;
pub mod pages;
pub mod session;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use credfed_protocol::ids::DepartmentId;
use tower::ServiceExt;

use crate::api::ApiState;
use crate::api::audit::{AuditCaller, AuditSubject};
use labels::Labels;
use session::{Session, Sessions};

/// Largest answer of the API a page reads (a check answer with evidence is the largest).
const MAX_INNER_ANSWER: usize = 64 << 20;

/// Cookie of a logged-in session.
pub const SESSION_COOKIE: &str = "credfed_session";
/// Cookie that binds a login challenge to the browser that asked for it.
pub const PRELOGIN_COOKIE: &str = "credfed_prelogin";
/// Cookie with the chosen language.
pub const LANG_COOKIE: &str = "credfed_lang";

/// The department a console session acts as, set on the API request the console makes
/// in process. Only the console sets it: HTTP clients cannot set request extensions.
#[derive(Debug, Clone)]
pub struct ConsoleCaller(pub DepartmentId);

/// The console's state.
pub struct ConsoleState {
    /// The API's state (the engine, the manifest).
    pub api: Arc<ApiState>,
    /// The API's routes with authentication, called in process.
    pub inner: Router,
    /// Sessions and open challenges.
    pub sessions: Mutex<Sessions>,
    /// Session lifetime (tests shorten it).
    pub session_ttl: Duration,
}

/// An answer of the API to a console call.
pub struct ApiReply {
    /// Its status.
    pub status: StatusCode,
    /// Its JSON (`Null` if it was not JSON).
    pub json: serde_json::Value,
    /// What the API's audit line would name.
    pub subject: Option<String>,
}

impl ApiReply {
    /// The API's error message, for a page.
    pub fn message(&self) -> String {
        self.json["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the node answered {}", self.status))
    }
}

impl ConsoleState {
    /// Calls the API as `department`.
    pub async fn api(
        &self,
        department: &DepartmentId,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> ApiReply {
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = match builder.body(Body::from(bytes)) {
            Ok(r) => r,
            Err(e) => {
                return ApiReply {
                    status: StatusCode::BAD_REQUEST,
                    json: serde_json::json!({"message": format!("request: {e}")}),
                    subject: None,
                };
            }
        };
        req.extensions_mut()
            .insert(ConsoleCaller(department.clone()));
        let response = match self.inner.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let subject = response
            .extensions()
            .get::<AuditSubject>()
            .map(|s| s.0.clone());
        let json = match axum::body::to_bytes(response.into_body(), MAX_INNER_ANSWER).await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        };
        ApiReply {
            status,
            json,
            subject,
        }
    }

    /// The live session of a request's cookie.
    pub fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let token = cookie(headers, SESSION_COOKIE)?;
        let s = self.sessions.lock().ok()?.get(&token, Instant::now())?;
        Some((token, s))
    }

    /// Whether a department is the node's operator or holds the operator role.
    pub fn is_operator(&self, department: &DepartmentId) -> bool {
        crate::api::Caller(department.clone())
            .is_operator(&self.api)
            .unwrap_or(false)
    }
}

/// Builds the console's routes (merged into the API router, outside its mutual-TLS
/// layer: the console authenticates by its own session).
pub fn routes(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/", get(pages::to_console))
        .route("/console", get(pages::to_console))
        .route("/console/", get(pages::home))
        .route("/console/login", get(pages::login_page).post(pages::login))
        .route("/console/login/challenge", post(pages::challenge))
        .route("/console/logout", post(pages::logout))
        .route("/console/lang", get(pages::switch_lang))
        .route(
            "/console/check",
            get(pages::check_page).post(pages::check_person),
        )
        .route(
            "/console/evidence",
            get(pages::evidence_get).post(pages::evidence_person),
        )
        .route("/console/inbox", get(pages::inbox_page))
        .route("/console/entries/{id}", pages::record_route("entries"))
        .route("/console/actions/{id}", pages::record_route("actions"))
        .route(
            "/console/commitments/{id}",
            pages::record_route("commitments"),
        )
        .route(
            "/console/evaluations/{id}",
            pages::record_route("evaluations"),
        )
        .route(
            "/console/disclosures/{id}",
            pages::record_route("disclosures"),
        )
        .route("/console/sign", get(pages::sign_page))
        .route("/console/forms", get(pages::forms_page))
        .route(
            "/console/verify",
            get(pages::verify_page).post(pages::verify_file),
        )
        .route("/console/forms/{slug}", get(pages::form_page))
        .route("/console/sign/prepare", post(pages::prepare))
        .route("/console/sign/submit", post(pages::submit))
        .route("/console/federation", get(pages::federation_page))
        .route("/console/audit", get(pages::audit_page))
        .route("/console/reports", get(pages::reports_page))
        .route("/console/static/console.js", get(pages::script))
        .route("/console/static/console.css", get(pages::stylesheet))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            name_the_caller,
        ))
        .with_state(state)
}

/// Names the session's department on every console answer's audit line (handlers that
/// know better, such as the login, name it themselves).
async fn name_the_caller(
    State(state): State<Arc<ConsoleState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let who = state.session(req.headers()).map(|(_, s)| s.department);
    let mut r = next.run(req).await;
    if let Some(d) = who
        && r.extensions().get::<AuditCaller>().is_none()
    {
        r.extensions_mut()
            .insert(AuditCaller(format!("{d} (console)")));
    }
    r
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The labels of the request's language (cookie, else Chinese).
pub fn labels(headers: &HeaderMap) -> &'static Labels {
    labels::for_lang(cookie(headers, LANG_COOKIE).as_deref())
}

/// `n` random bytes as hex; `None` if the operating system gives no randomness (then
/// no token can be made safely, and the caller refuses).
pub fn random_hex(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

/// The headers every console answer carries: nothing but the node's own scripts and
/// styles run, no framing, no caching of pages that show records.
pub fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Marks the response with the caller and subject for the audit line.
pub fn audited(
    mut r: Response,
    caller: Option<&DepartmentId>,
    subject: Option<String>,
) -> Response {
    if let Some(c) = caller {
        r.extensions_mut()
            .insert(AuditCaller(format!("{c} (console)")));
    }
    if let Some(s) = subject {
        r.extensions_mut().insert(AuditSubject(s));
    }
    r
}

/// A redirect (303: the browser follows it with GET).
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

/// `Set-Cookie` for a console cookie.
pub fn set_cookie(r: &mut Response, name: &str, value: &str, max_age: Option<Duration>) {
    let age = match max_age {
        Some(d) => format!("; Max-Age={}", d.as_secs()),
        None => String::new(),
    };
    let text = format!("{name}={value}; Path=/console; Secure; HttpOnly; SameSite=Strict{age}");
    if let Ok(v) = HeaderValue::from_str(&text) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Whether a form's or script's CSRF token matches the session's (constant time).
pub fn csrf_ok(session: &Session, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    let (a, b) = (session.csrf.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The state used by handlers.
pub type Console = State<Arc<ConsoleState>>;

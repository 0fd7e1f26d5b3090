//! The HTTPS/JSON API (paths under `/v1`).
//!
//! Writes carry a department's signature over the exact body bytes; the node places the
//! body in its log only if the protocol admits it, and answers 201 only after the
//! envelope is on disk. Requests and answers are the types of `credfed_client`; errors
//! are [`ApiError`]s. Every call leaves one audit line ([`audit`]).
//!
//! Layers, outermost first: audit → body read within its time limit → concurrency
//! limit → routing (404/405 answered here, before authentication) → authentication
//! (mutual TLS, matched routes only) → handler.

pub mod audit;
pub mod error;
pub mod events;
pub mod input;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use credfed_client::{
    CheckRequest, HeadInfo, LogPage, MAX_PERSONS_PER_REQUEST, NodeStatus, PartitionRequest, Peers,
    PersonRefsAnswer, PersonRefsRequest, Receipt, SubmitRecord,
};
use credfed_protocol::crypto::{Hash256, Signature};
use credfed_protocol::ids::{DepartmentId, RegionCode, Role};
use credfed_protocol::record::{ActionId, EntryId, SubjectKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery};

use crate::api::audit::{Audit, AuditCaller, AuditLine, AuditSubject};
use crate::api::server::{ClientAddr, PeerCertificate};

use crate::engine::Core;
use crate::p2p::{Command, NetStatus};

/// Shared API state.
pub struct ApiState {
    /// The engine.
    pub core: Arc<Core>,
    /// To the network task.
    pub commands: mpsc::Sender<Command>,
    /// Network status.
    pub status: Arc<Mutex<NetStatus>>,
    /// Append-only audit log (shared with the network task, which audits person-key
    /// evaluations it answers).
    pub audit: Arc<Audit>,
    /// Person keys: asking members for evaluations (docs/privacy.md).
    pub person_keys: Arc<crate::person_keys::PersonKeyer>,
    /// This member's part in person-key ceremonies (the network task sends and receives
    /// their messages).
    pub ceremonies: Arc<Mutex<crate::ceremonies::Ceremonies>>,
    /// Serve /metrics unauthenticated.
    pub metrics_public: bool,
    /// Directory of issued client certificate fingerprints (`<data-dir>/clients`).
    pub clients_dir: PathBuf,
    /// The departments of those files as last read, by fingerprint.
    pub client_ids: ClientIds,
    /// The API's server certificate and its CA's certificate (PEM files), whose expiry
    /// status and metrics report.
    pub cert_files: Vec<(&'static str, PathBuf)>,
    /// Serve the in-node drill fault endpoint (testnets only).
    pub drill_faults: bool,
    /// Event streams served at once ([`events::MAX_EVENT_STREAMS`]).
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

/// Limits of request handling (the connection limits are in [`server::ServerLimits`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest request body.
    pub max_body: usize,
    /// Requests handled at once.
    pub max_concurrency: usize,
    /// Time to receive a request body.
    pub body_timeout: Duration,
}

/// The department a request's client certificate was issued to.
#[derive(Debug, Clone)]
pub struct Caller(pub DepartmentId);

impl Caller {
    /// The node's own operator (`REGION:operator`; `REGION:node` for a certificate
    /// issued before the operator had its own unit), or a department holding the
    /// operator role.
    pub fn is_operator(&self, state: &ApiState) -> Result<bool, ApiError> {
        let core = &state.core;
        if credfed_protocol::envelope::reserved_unit(&self.0.unit) && self.0.region == core.region()
        {
            return Ok(true);
        }
        Ok(core
            .department(&self.0)?
            .is_some_and(|d| d.roles.contains(&Role::Operator)))
    }

    fn require_operator(&self, state: &ApiState, what: &str) -> Result<(), ApiError> {
        if self.is_operator(state)? {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "not_allowed",
                format!("{what} is for the node's operator; use the operator certificate"),
            ))
        }
    }
}

/// The OpenAPI document, checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Builds the router: the API under `/v1` and the web console under `/console/`, whose
/// sessions last `session_ttl`.
pub fn router(state: Arc<ApiState>, limits: RequestLimits, session_ttl: Duration) -> Router {
    // The console reads and writes through these same routes, called in process as the
    // session's department (crate::console).
    let inner = api_routes(state.clone())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state.clone());
    let console = crate::console::routes(Arc::new(crate::console::ConsoleState {
        api: state.clone(),
        inner,
        sessions: Mutex::new(crate::console::session::Sessions::default()),
        session_ttl,
    }));
    api_routes(state.clone())
        .with_state(state.clone())
        .merge(console)
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrency,
        ))
        .layer(middleware::from_fn_with_state(limits, read_body))
        .layer(middleware::from_fn_with_state(state, audit_calls))
}

/// The API's routes behind mutual TLS (or a console session's department).
fn api_routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/records", post(submit))
        .route("/v1/check", get(check_subject).post(check_posted))
        .route("/v1/persons/refs", post(person_refs))
        .route("/v1/entries/{id}", get(entry))
        .route("/v1/actions/{id}", get(action))
        .route("/v1/commitments/{id}", get(commitment))
        .route("/v1/evaluations/{id}", get(evaluation))
        .route("/v1/disclosures/{id}", get(disclosure))
        .route("/v1/inbox", get(inbox))
        .route("/v1/events", get(events::events))
        .route("/v1/ids/{prefix}", get(ids_by_prefix))
        .route("/v1/entries", get(list_entries))
        .route("/v1/evaluations", get(list_evaluations))
        .route("/v1/actions", get(list_actions))
        .route("/v1/departments", get(departments))
        .route("/v1/departments/{id}", get(department))
        .route("/v1/heads", get(heads))
        .route("/v1/log/{region}", get(log_range))
        .route("/v1/log/{region}/checkpoint", get(checkpoint))
        .route("/v1/log/{region}/proof/inclusion", get(inclusion_proof))
        .route("/v1/log/{region}/proof/consistency", get(consistency_proof))
        .route("/v1/peers", get(peers))
        .route("/v1/status", get(status))
        .route("/v1/stats", get(stats))
        .route("/v1/reports", get(reports))
        .route("/v1/audit", get(audit_log))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        // Always routed, so that other methods get 405 like everywhere; the handler
        // answers 404 on nodes without drill faults.
        .route("/v1/admin/partition", post(partition))
        .route(
            "/v1/admin/person-key-ceremony",
            get(ceremony_status).post(ceremony_start),
        )
        .route_layer(middleware::from_fn_with_state(state, authenticate))
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError::new_not_found_route(req.uri().path())
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::method_not_allowed(req.method().as_str(), req.uri().path())
}

impl ApiError {
    fn new_not_found_route(path: &str) -> ApiError {
        // Not a record that may arrive later: the path is not served at all.
        let shown: String = path.chars().take(200).collect();
        ApiError::with_status(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no route {shown} on this node: the API's paths are in /v1/openapi.json, the web console is at /console/"
            ),
        )
    }
}

/// Reads the whole body within its time limit before the request takes a concurrency
/// slot: a client that sends its body slowly holds only its own connection.
async fn read_body(State(limits): State<RequestLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, limits.max_body),
    )
    .await
    {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::too_large(
                    "body",
                    format!(
                        "body: larger than the node's limit of {} bytes",
                        limits.max_body
                    ),
                )
                .into_response()
            } else {
                ApiError::bad_request("invalid_body", format!("body: could not be read: {e}"))
                    .into_response()
            }
        }
        Err(_) => {
            let mut r = ApiError::request_timeout(limits.body_timeout).into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// One audit line per call, written before the answer leaves.
async fn audit_calls(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        None => format!(
            "{} {}",
            req.method(),
            req.uri().path().chars().take(200).collect::<String>()
        ),
    };
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map(|a| a.0.to_string())
        .unwrap_or_default();
    let response = next.run(req).await;
    let caller = response
        .extensions()
        .get::<AuditCaller>()
        .map_or("anonymous", |c| c.0.as_str());
    let subject = response
        .extensions()
        .get::<AuditSubject>()
        .map(|s| s.0.as_str());
    let status = response.status();
    let outcome = if status.is_success() {
        "ok"
    } else {
        response
            .extensions()
            .get::<ErrorCode>()
            .map_or(status.canonical_reason().unwrap_or("error"), |c| {
                c.0.as_str()
            })
    };
    let seconds = started.elapsed().as_secs_f64();
    state.core.metrics().observe_api(&endpoint, seconds);
    state.audit.record(&AuditLine {
        time_ms: state.core.now().0,
        caller,
        client,
        endpoint: &endpoint,
        subject,
        status: status.as_u16(),
        outcome,
        ms: seconds * 1000.0,
    });
    response
}

/// The error code of an error answer, for the audit line.
#[derive(Debug, Clone)]
struct ErrorCode(String);

impl ApiError {
    fn method_not_allowed(method: &str, path: &str) -> ApiError {
        let shown: String = path.chars().take(200).collect();
        ApiError::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not served at {shown}; see /v1/openapi.json"),
        )
    }

    fn request_timeout(limit: Duration) -> ApiError {
        ApiError::with_status(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {limit:?}; send it at once"),
        )
    }

    /// An answer carrying `subject` for the audit line, whatever the outcome.
    fn respond(result: Result<Response, ApiError>, subject: Option<String>) -> Response {
        let mut r = match result {
            Ok(r) => r,
            Err(e) => e.into_response_with_code(),
        };
        if let Some(s) = subject {
            r.extensions_mut().insert(AuditSubject(s));
        }
        r
    }

    fn into_response_with_code(self) -> Response {
        let code = ErrorCode(self.code().to_owned());
        let mut r = self.into_response();
        r.extensions_mut().insert(code);
        r
    }
}

/// Mutual TLS: a request must present a client certificate this node issued, to a
/// department registered and not revoked in its log (or to the node's operator), except
/// for the public endpoints. Revoking a department or deleting its fingerprint file cuts
/// it off at the next request.
async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/v1/openapi.json" || (path == "/metrics" && state.metrics_public) {
        return next.run(req).await;
    }
    // A console session's call, made in process (HTTP clients cannot set extensions):
    // the department is checked as a certificate's would be, at every call.
    if let Some(console) = req.extensions().get::<crate::console::ConsoleCaller>() {
        let id = console.0.clone();
        let mut response = match registered(&state, id.clone()) {
            Ok(id) => {
                req.extensions_mut().insert(Caller(id));
                next.run(req).await
            }
            Err(e) => e.into_response_with_code(),
        };
        response
            .extensions_mut()
            .insert(AuditCaller(format!("{id} (console)")));
        return response;
    }
    let cert = req
        .extensions()
        .get::<PeerCertificate>()
        .and_then(|c| c.0.clone());
    let (caller, verdict) = match cert {
        None => (
            "anonymous".to_string(),
            Err(ApiError::unauthorized(
                "no_client_certificate",
                "present the client certificate this node issued to your department (credfed-node issue-client-cert)",
            )),
        ),
        Some(cert) => {
            let fp = crate::config::cert_fingerprint(&cert);
            match identify(&state, &fp) {
                Ok(id) => (id.to_string(), Ok(id)),
                Err(e) => (format!("certificate {fp}"), Err(e)),
            }
        }
    };
    let mut response = match verdict {
        Ok(id) => {
            req.extensions_mut().insert(Caller(id));
            next.run(req).await
        }
        Err(e) => e.into_response_with_code(),
    };
    response.extensions_mut().insert(AuditCaller(caller));
    response
}

fn identify(state: &ApiState, fingerprint: &str) -> Result<DepartmentId, ApiError> {
    let unknown = || {
        ApiError::unauthorized(
            "unknown_client_certificate",
            format!(
                "certificate {fingerprint} is not (or no longer) registered with this node; ask the operator for a new one"
            ),
        )
    };
    let id = state
        .client_ids
        .department(&state.clients_dir, fingerprint)
        .ok_or_else(unknown)?;
    registered(state, id)
}

/// Issued certificates' departments, read from their fingerprint files and kept with
/// the file's identity (device, inode, size, modification time). Every request still
/// looks at the file — deleting it cuts the certificate off at the next request — but
/// with one `stat` instead of opening and reading it, which was a few per cent of a
/// check over HTTPS (docs/performance.md, "National scale").
#[derive(Default)]
pub struct ClientIds {
    known: Mutex<std::collections::HashMap<String, (FileStamp, DepartmentId)>>,
}

/// What identifies one version of a file without reading it.
type FileStamp = (u64, u64, u64, Option<std::time::SystemTime>);

/// Fingerprints kept at most: more than a node issues in years; past it the map is
/// emptied and filled again from the files.
const MAX_CLIENT_IDS: usize = 10_000;

impl ClientIds {
    /// The department the certificate `fingerprint` was issued to, if its file is
    /// there and names one.
    fn department(&self, dir: &std::path::Path, fingerprint: &str) -> Option<DepartmentId> {
        use std::os::unix::fs::MetadataExt;
        let path = dir.join(fingerprint);
        let meta = std::fs::metadata(&path).ok()?;
        let stamp = (meta.dev(), meta.ino(), meta.len(), meta.modified().ok());
        if let Ok(known) = self.known.lock()
            && let Some((seen, id)) = known.get(fingerprint)
            && *seen == stamp
        {
            return Some(id.clone());
        }
        let text = std::fs::read_to_string(&path).ok()?;
        // The first line names the department (issuance details follow it).
        let first = text.lines().next().unwrap_or("");
        let id = DepartmentId::parse(first.trim(), "client").ok()?;
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= MAX_CLIENT_IDS {
                known.clear();
            }
            known.insert(fingerprint.to_owned(), (stamp, id.clone()));
        }
        Some(id)
    }
}

/// `id` if it is this node's operator or a department registered and not revoked here.
fn registered(state: &ApiState, id: DepartmentId) -> Result<DepartmentId, ApiError> {
    let core = &state.core;
    if credfed_protocol::envelope::reserved_unit(&id.unit) && id.region == core.region() {
        return Ok(id);
    }
    match core.department(&id)? {
        None => Err(ApiError::unauthorized(
            "unknown_department",
            format!("{id} is not registered in {}'s log", core.region()),
        )),
        Some(d) if d.revoked_at.is_some() => Err(ApiError::forbidden(
            "department_revoked",
            format!("{id} was revoked"),
        )),
        Some(_) => Ok(id),
    }
}

fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Result<Response, ApiError> {
    // Straight to bytes: going through a `serde_json::Value` first built a tree of maps
    // per answer and was the largest part of a check's CPU over HTTPS
    // (docs/performance.md, "National scale").
    let body = serde_json::to_vec(v)
        .map_err(|e| ApiError::internal(format!("cannot render the answer as JSON: {e}")))?;
    Ok((
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

fn ok<T: Serialize>(v: &T) -> Result<Response, ApiError> {
    json_response(StatusCode::OK, v)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn submit(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<SubmitRecord>,
) -> Response {
    let subject = Some(format!(
        "author {}",
        req.author.chars().take(64).collect::<String>()
    ));
    ApiError::respond(submit_inner(&state, &caller, req).await, subject)
}

async fn submit_inner(
    state: &ApiState,
    caller: &Caller,
    req: SubmitRecord,
) -> Result<Response, ApiError> {
    let author = input::department_id("author", &req.author)?;
    // A department submits its own records; the operator may submit any department's
    // (bulk import), which still needs that department's signature.
    if caller.0 != author && !caller.is_operator(state)? {
        return Err(ApiError::forbidden(
            "not_allowed",
            format!(
                "author: {} may not submit records authored by {author}",
                caller.0
            ),
        ));
    }
    if !state.audit.healthy() {
        return Err(ApiError::unavailable(
            "audit_unavailable",
            "the node's audit log cannot be written, so it accepts no writes; the operator must free the disk or fix the file",
        ));
    }
    let body = input::hex_bytes("body", &req.body, credfed_protocol::limits::MAX_BODY_BYTES)?;
    let signature_bytes = input::hex_bytes("signature", &req.signature, 64)?;
    if signature_bytes.len() != 64 {
        return Err(ApiError::invalid(
            "signature",
            "signature: expected 128 hex digits (an Ed25519 signature)",
        ));
    }
    let signature = Signature::from_hex(&req.signature.to_ascii_lowercase())
        .map_err(|e| ApiError::invalid("signature", format!("signature: {e}")))?;
    let v = state.core.append(author, body, signature).await?;
    json_response(
        StatusCode::CREATED,
        &Receipt {
            region: v.envelope.region.to_string(),
            seq: v.envelope.seq,
            hash: v.hash.to_hex(),
            envelope: hex::encode(&v.bytes),
        },
    )
}

/// Query of `GET /v1/check`: organisations only. A person's number never travels in a
/// URL, which proxies and access logs keep: persons are checked with `POST /v1/check`.
#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    /// Unified Social Credit Code.
    pub uscc: Option<String>,
    /// Refused with a pointer to `POST /v1/check` (present so the refusal can say so).
    pub person: Option<String>,
    /// Domain of the asking department, e.g. `procurement`.
    pub domain: String,
    /// Answer with proofs (`true`/`false`).
    #[serde(default)]
    pub proofs: bool,
    /// With proofs, carry the signed manifest (`true`/`false`).
    #[serde(default)]
    pub manifest: bool,
}

async fn check_subject(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<CheckQuery>,
) -> Response {
    if q.person.is_some() {
        return ApiError::respond(
            Err(ApiError::invalid(
                "person",
                "person: a resident identity number is never sent in a URL (URLs are logged); \
                 send POST /v1/check with {\"person\": \"...\", \"domain\": \"...\"}",
            )),
            None,
        );
    }
    let request = CheckRequest {
        uscc: q.uscc,
        person: None,
        domain: q.domain,
        proofs: q.proofs,
        manifest: q.manifest,
    };
    check_request(state, caller, request).await
}

async fn check_posted(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CheckRequest>,
) -> Response {
    check_request(state, caller, request).await
}

async fn check_request(state: Arc<ApiState>, caller: Caller, q: CheckRequest) -> Response {
    let mut shown = None;
    let result = match input::domain(&q.domain) {
        Ok(domain) => {
            let answered = check_inner(&state, q, domain, &mut shown).await;
            // Answered checks count for reports (checks per domain, article 二十三).
            if answered.is_ok() {
                state.core.count_check(&caller.0.to_string(), domain);
            }
            answered
        }
        Err(e) => Err(e),
    };
    ApiError::respond(result, shown)
}

/// The person keys of normalised, valid resident identity numbers, by the members'
/// threshold key (docs/privacy.md): 503 `person_checks_unavailable` when fewer than t
/// members holding shares answer.
async fn key_persons(state: &ApiState, numbers: Vec<String>) -> Result<Vec<Hash256>, ApiError> {
    state.person_keys.keys(&numbers).await.map_err(|e| match e {
        crate::person_keys::PersonKeyError::Internal(m) => ApiError::internal(m),
        other => ApiError::unavailable("person_checks_unavailable", other.to_string()),
    })
}

async fn check_inner(
    state: &ApiState,
    q: CheckRequest,
    domain: credfed_protocol::catalogue::MeasureDomain,
    shown: &mut Option<String>,
) -> Result<Response, ApiError> {
    let key = match (&q.uscc, &q.person) {
        (Some(code), None) => {
            // A failing check character may still be an exempted pilot code: only the
            // structure is required to ask.
            let code = input::uscc_code("uscc", code)?;
            *shown = Some(code.clone());
            SubjectKey::Uscc(code)
        }
        (None, Some(n)) => {
            let n = input::resident_number("person", n)?;
            // The audit line carries the mask only.
            *shown = Some(credfed_protocol::ids::person::mask(&n));
            let keys = key_persons(state, vec![n]).await?;
            SubjectKey::Person(keys[0])
        }
        _ => {
            return Err(ApiError::invalid(
                "uscc",
                "uscc: give exactly one of uscc and person",
            ));
        }
    };
    if q.proofs {
        let head = federation_head(state).await?;
        let core = state.core.clone();
        let with_manifest = q.manifest;
        let proven =
            tokio::task::spawn_blocking(move || core.prove(&key, domain, &head, with_manifest))
                .await
                .map_err(|e| ApiError::internal(format!("proving failed: {e}")))?
                .map_err(|e| match e {
                    crate::engine::ProofFailure::Store(e) => ApiError::store(e),
                    // The heads moved under the proof: the next try uses fresher ones.
                    other => ApiError::unavailable(
                        "proofs_unavailable",
                        format!("proofs: {other}; ask again"),
                    ),
                })?;
        // Every field of a proven answer is signed and recomputed by its verifier:
        // nothing is added to it but this region's own declines, beside it (present
        // only when there are some; the CLI keeps them out of saved answers).
        let declined = declined_here(&state.core, &proven.answer)?;
        return ok(&CheckResponse {
            answer: &proven,
            declined_here: &declined,
            last_contact_ms: None,
        });
    };
    let answer = state.core.check(&key, domain)?;
    let declined = declined_here(&state.core, &answer)?;
    // Serialised under the status lock rather than cloned out of it: thirty strings
    // copied per check showed in the profile, and writing them is as short.
    let status = state.status.lock().ok();
    ok(&CheckResponse {
        answer: &answer,
        declined_here: &declined,
        last_contact_ms: status.as_ref().map(|s| &s.last_contact_ms),
    })
}

/// A check's answer as sent: the answer's own fields, this region's declines beside
/// them when there are any, and (plain answers only) when each member was last heard
/// from. Serialised directly, without an intermediate JSON tree.
#[derive(Serialize)]
struct CheckResponse<'a, A: Serialize> {
    #[serde(flatten)]
    answer: &'a A,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    declined_here: &'a [credfed_protocol::check::DeclinedHere],
    #[serde(skip_serializing_if = "Option::is_none")]
    last_contact_ms: Option<&'a BTreeMap<String, i64>>,
}

/// The measures of `answer` this node's region declined when joint actions on its
/// entries asked for them (`credfed_protocol::check::declined_here`): a few fold reads
/// per entry shown.
fn declined_here(
    core: &crate::engine::Core,
    answer: &credfed_protocol::check::CheckAnswer,
) -> Result<Vec<credfed_protocol::check::DeclinedHere>, ApiError> {
    // Only an applied measure can have been declined: an answer that applies none (the
    // unlisted subject, the common case) costs no further reads.
    if answer.mandatory.is_empty() && answer.recommended.is_empty() {
        return Ok(Vec::new());
    }
    let mut actions = Vec::new();
    for shown in &answer.entries {
        let Some(e) = core.entry(&shown.entry).map_err(ApiError::store)? else {
            continue;
        };
        for id in &e.actions {
            if let Some(a) = core.action(id).map_err(ApiError::store)? {
                actions.push(a);
            }
        }
    }
    Ok(credfed_protocol::check::declined_here(
        answer,
        &actions,
        core.region(),
    ))
}

/// Days before the working-day calendar ends from which the status warns.
pub const CALENDAR_WARNING_DAYS: i32 = 60;

/// A federation checkpoint recent enough to prove under: the one held if it was
/// cosigned less than [`FEDERATION_REUSE_SECONDS`] ago and still has every region's
/// witnessed head held ([`crate::engine::Core::federation_is_current`]), else a fresh
/// one collected by the network task (waiting at most [`FEDERATION_WAIT`]).
pub(crate) async fn federation_head(
    state: &ApiState,
) -> Result<crate::engine::FederationHead, ApiError> {
    if let Some(h) = state.core.federation()
        && state.core.now_seconds().saturating_sub(h.witnessed_at) < FEDERATION_REUSE_SECONDS
    {
        let core = state.core.clone();
        let head = h.clone();
        let current = tokio::task::spawn_blocking(move || core.federation_is_current(&head))
            .await
            .map_err(|e| ApiError::internal(format!("reading witnessed heads failed: {e}")))?
            .map_err(ApiError::store)?;
        if current {
            return Ok(h);
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .commands
        .send(Command::Federation(tx))
        .await
        .map_err(|_| ApiError::unavailable("network_down", "the network task is not running"))?;
    match tokio::time::timeout(FEDERATION_WAIT, rx).await {
        Ok(Ok(Ok(head))) => Ok(head),
        Ok(Ok(Err(why))) => Err(ApiError::unavailable(
            "no_quorum",
            format!(
                "proofs: the members did not cosign a federation checkpoint ({why}); \
                 retry shortly, or ask without proofs"
            ),
        )),
        _ => Err(ApiError::unavailable(
            "no_quorum",
            "proofs: no federation checkpoint within the time limit; retry shortly, or ask without proofs",
        )),
    }
}

/// A federation checkpoint younger than this is reused for proven answers: collecting
/// one costs every member a signature, and verifiers ask for freshness in minutes.
pub const FEDERATION_REUSE_SECONDS: u64 = 10;

/// Longest wait for a fresh federation checkpoint (a round ends after 5 s).
const FEDERATION_WAIT: Duration = Duration::from_secs(7);

/// `POST /v1/persons/refs`: the form records carry (keyed hash, mask, name) for persons
/// given by clear number, so a department can name persons in a record it signs without
/// holding the federation secret. Nothing is stored; the audit line has the masks only.
async fn person_refs(
    State(state): State<Arc<ApiState>>,
    ApiJson(request): ApiJson<PersonRefsRequest>,
) -> Response {
    let mut shown = None;
    let result = person_refs_inner(&state, request, &mut shown).await;
    ApiError::respond(result, shown)
}

async fn person_refs_inner(
    state: &ApiState,
    request: PersonRefsRequest,
    shown: &mut Option<String>,
) -> Result<Response, ApiError> {
    let count = request.persons.len();
    if count == 0 || count > MAX_PERSONS_PER_REQUEST {
        return Err(ApiError::invalid(
            "persons",
            format!(
                "persons: {count} given, 1 to {MAX_PERSONS_PER_REQUEST} per request \
                 (each hash is deliberately slow); split the list"
            ),
        ));
    }
    let mut numbers = Vec::with_capacity(count);
    let mut masks = Vec::with_capacity(count);
    // Every shape first (400), then the rules (422), so a request is judged the same
    // whatever order its faults come in.
    let mut names = Vec::with_capacity(count);
    for (i, p) in request.persons.iter().enumerate() {
        names.push(input::person_name(&format!("persons[{i}].name"), &p.name)?);
    }
    for (i, p) in request.persons.iter().enumerate() {
        let n = input::resident_number(&format!("persons[{i}].number"), &p.number)?;
        masks.push(credfed_protocol::ids::person::mask(&n));
        numbers.push(n);
    }
    *shown = Some(if count <= 4 {
        masks.join(",")
    } else {
        format!("{},… ({count} persons)", masks[..4].join(","))
    });
    let keys = key_persons(state, numbers).await?;
    let refs = keys
        .into_iter()
        .zip(masks)
        .zip(names)
        .map(
            |((id_hash, masked), name)| credfed_protocol::ids::PersonRef {
                id_hash,
                masked,
                name,
            },
        )
        .collect();
    ok(&PersonRefsAnswer { refs })
}

async fn entry(State(state): State<Arc<ApiState>>, ApiPath(id): ApiPath<String>) -> Response {
    let subject = Some(format!("entry {}", id.chars().take(64).collect::<String>()));
    let result = (|| {
        let core = &state.core;
        let e = core
            .entry(&EntryId(input::record_id("id", &id)?))?
            .ok_or_else(|| ApiError::not_found("entry", &id))?;
        let now = core.now();
        ok(&json!({
            "entry": e,
            "state": e.state_at(now),
            "disclosed_late": e.disclosed_late(core.calendar(), &core.manifest().policy),
            "overdue_objections": e.overdue_objections(now, core.calendar(), &core.manifest().policy),
            // Undecided repair applications with the issuer's deadline (articles 十八, 二十一).
            "repairs_due": credfed_protocol::inbox::repair_tasks(&e, now, core.calendar(), core.catalogue().repair.as_ref())
                .iter()
                .map(|t| json!({"application": t.application, "since": t.since, "due": t.due, "overdue": t.overdue, "due_estimated": t.due_estimated}))
                .collect::<Vec<_>>(),
        }))
    })();
    ApiError::respond(result, subject)
}

async fn action(State(state): State<Arc<ApiState>>, ApiPath(id): ApiPath<String>) -> Response {
    let subject = Some(format!(
        "action {}",
        id.chars().take(64).collect::<String>()
    ));
    let result = (|| {
        let core = &state.core;
        let a = core
            .action(&ActionId(input::record_id("id", &id)?))?
            .ok_or_else(|| ApiError::not_found("action", &id))?;
        let targets = a.view_at(core.now(), core.manifest(), core.catalogue());
        // The entry it rests on as it stands today: a repaired, revoked or expired entry
        // means executed measures are to be lifted (the targets' inboxes say so).
        let entry = core.entry(&a.action.entry)?.map(|e| {
            json!({
                "id": e.id,
                "state": e.state_at(core.now()),
                "revoked": e.revoked.as_ref().map(|o| o.at.date_cst()),
                "repaired": e.repaired.as_ref().map(|(basis, o)| json!({"basis": basis, "on": o.at.date_cst()})),
                "expires_on": e.content.expires_on,
            })
        });
        ok(&json!({ "action": a, "targets": targets, "entry": entry }))
    })();
    ApiError::respond(result, subject)
}

/// A written commitment (article 四) and its state today.
async fn commitment(State(state): State<Arc<ApiState>>, ApiPath(id): ApiPath<String>) -> Response {
    let subject = Some(format!(
        "commitment {}",
        id.chars().take(64).collect::<String>()
    ));
    let result = (|| {
        let core = &state.core;
        let c = core
            .commitment(&credfed_protocol::record::CommitmentId(input::record_id(
                "id", &id,
            )?))?
            .ok_or_else(|| ApiError::not_found("commitment", &id))?;
        let state = c.state_on(core.now().date_cst());
        ok(&json!({ "commitment": c, "state": state }))
    })();
    ApiError::respond(result, subject)
}

/// An evaluation result (articles 六, 十六) and its state today (pending, valid,
/// suspended, expired, revoked).
async fn evaluation(State(state): State<Arc<ApiState>>, ApiPath(id): ApiPath<String>) -> Response {
    let subject = Some(format!(
        "evaluation {}",
        id.chars().take(64).collect::<String>()
    ));
    let result = (|| {
        let core = &state.core;
        let e = core
            .evaluation(&credfed_protocol::record::EvaluationId(input::record_id(
                "id", &id,
            )?))?
            .ok_or_else(|| ApiError::not_found("evaluation", &id))?;
        let state = e.state_at(core.now());
        ok(&json!({ "evaluation": e, "state": state }))
    })();
    ApiError::respond(result, subject)
}

/// A disclosed licensing or penalty decision (双公示, article 十七): whether it came
/// within the disclosure deadline, and whether it is still public today.
async fn disclosure(State(state): State<Arc<ApiState>>, ApiPath(id): ApiPath<String>) -> Response {
    let subject = Some(format!(
        "disclosure {}",
        id.chars().take(64).collect::<String>()
    ));
    let result = (|| {
        let core = &state.core;
        let d = core
            .disclosure(&credfed_protocol::record::DisclosureId(input::record_id(
                "id", &id,
            )?))?
            .ok_or_else(|| ApiError::not_found("disclosure", &id))?;
        let due = core.calendar().add_working_days(
            d.disclosure.decided_on,
            core.manifest().policy.disclosure_working_days as u32,
        );
        ok(&json!({
            "disclosure": d,
            "due": due.date,
            "late": d.disclosed_late(core.calendar(), &core.manifest().policy),
            "public": d.public_on(core.now().date_cst()),
        }))
    })();
    ApiError::respond(result, subject)
}

/// Query of the listings `/v1/entries`, `/v1/evaluations` and `/v1/actions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Issuing (or initiating) region.
    pub region: Option<String>,
    /// Publishing (or initiating) department, `REGION:unit`.
    pub department: Option<String>,
    /// Entries and actions: a black-list category (article 九) or red-list source (三).
    pub category: Option<String>,
    /// Evaluations: the scheme.
    pub scheme: Option<String>,
    /// State today.
    pub state: Option<String>,
    /// Actions: naming this region as a target.
    pub target: Option<String>,
    /// The subject's name contains this (at least two characters).
    pub name: Option<String>,
    /// Dated on or after (YYYY-MM-DD).
    pub from: Option<String>,
    /// Dated on or before.
    pub to: Option<String>,
    /// Lines per page (1–[`MAX_LIST_PAGE`], default 50).
    pub limit: Option<usize>,
    /// Where the previous page stopped (its `next_cursor`).
    pub cursor: Option<String>,
}

/// The longest listing page.
pub const MAX_LIST_PAGE: usize = 200;

/// Index keys one listing request reads at most: a selective filter over a large
/// region answers in pages that each cost a bounded read, with a cursor to go on.
pub const LIST_SCAN_BUDGET: usize = 5_000;

fn list_filter(
    kind: credfed_protocol::listing::ListingKind,
    q: &ListQuery,
) -> Result<credfed_protocol::listing::ListFilter, ApiError> {
    use credfed_protocol::listing::{
        ListFilter, ListingKind, MAX_NAME_QUERY_CHARS, MIN_NAME_QUERY_CHARS, normalise_name,
    };
    use credfed_protocol::record::{BlackCategory, Category, RedSource};
    // Shapes the schema states are 400; a value of the right shape that breaks a
    // rule is 422 (docs/openapi.json).
    let date = |field: &'static str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                let shaped = t.len() == 10
                    && t.bytes().enumerate().all(|(i, b)| {
                        if i == 4 || i == 7 {
                            b == b'-'
                        } else {
                            b.is_ascii_digit()
                        }
                    });
                if !shaped {
                    return Err(ApiError::invalid(
                        field,
                        format!("{field}: expected YYYY-MM-DD"),
                    ));
                }
                credfed_protocol::time::Date::parse(t)
                    .map_err(|e| ApiError::unprocessable(field, format!("{field}: {e}")))
            })
            .transpose()
    };
    let category = match &q.category {
        None => None,
        Some(_) if kind == ListingKind::Evaluation => {
            return Err(ApiError::invalid(
                "category",
                "evaluations have schemes, not categories: use scheme",
            ));
        }
        Some(c) => Some(
            serde_json::from_value::<BlackCategory>(json!(c))
                .map(Category::Black)
                .or_else(|_| serde_json::from_value::<RedSource>(json!(c)).map(Category::Red))
                .map_err(|_| {
                    ApiError::invalid(
                        "category",
                        format!(
                            "'{}' is neither a black-list category of article 九 (e.g. food_and_drug) nor a red-list source of article 三 (e.g. good_credit_classification)",
                            c.chars().take(60).collect::<String>()
                        ),
                    )
                })?,
        ),
    };
    let states: &[&str] = match kind {
        ListingKind::Entry => &[
            "pending",
            "active",
            "suspended",
            "expired",
            "repaired",
            "revoked",
        ],
        ListingKind::Evaluation => &["pending", "valid", "suspended", "expired", "revoked"],
        ListingKind::Action => &["open", "answered"],
    };
    if let Some(st) = &q.state
        && !states.contains(&st.as_str())
    {
        return Err(ApiError::invalid(
            "state",
            format!(
                "'{}' is not a state here: {}",
                st.chars().take(40).collect::<String>(),
                states.join(", ")
            ),
        ));
    }
    if q.scheme
        .as_ref()
        .is_some_and(|x| x.is_empty() || x.len() > 64)
    {
        return Err(ApiError::invalid(
            "scheme",
            "scheme: expected 1 to 64 characters",
        ));
    }
    if q.scheme.is_some() && kind != ListingKind::Evaluation {
        return Err(ApiError::invalid(
            "scheme",
            "only evaluations have a scheme",
        ));
    }
    if q.target.is_some() && kind != ListingKind::Action {
        return Err(ApiError::invalid("target", "only actions have targets"));
    }
    let name = match &q.name {
        None => None,
        Some(n) => {
            let rule = format!(
                "search by {MIN_NAME_QUERY_CHARS} to {MAX_NAME_QUERY_CHARS} characters of the name (spaces are ignored)"
            );
            let given = n.chars().count();
            if !(MIN_NAME_QUERY_CHARS..=MAX_NAME_QUERY_CHARS).contains(&given) {
                return Err(ApiError::invalid("name", format!("name: {rule}")));
            }
            let chars = normalise_name(n);
            if chars.len() < MIN_NAME_QUERY_CHARS {
                return Err(ApiError::unprocessable("name", format!("name: {rule}")));
            }
            if credfed_protocol::listing::query_gram(&chars).is_none() {
                return Err(ApiError::unprocessable(
                    "name",
                    "name: only a legal form such as 有限公司, which nearly every company name has: add more of the name",
                ));
            }
            Some(chars)
        }
    };
    let filter = ListFilter {
        region: q
            .region
            .as_deref()
            .map(|r| input::region_code("region", r))
            .transpose()?,
        department: q
            .department
            .as_deref()
            .map(|d| input::department_id("department", d))
            .transpose()?,
        category,
        scheme: q.scheme.clone(),
        state: q.state.clone(),
        target: q
            .target
            .as_deref()
            .map(|r| input::region_code("target", r))
            .transpose()?,
        name,
        from: date("from", &q.from)?,
        to: date("to", &q.to)?,
    };
    if let (Some(f), Some(t)) = (filter.from, filter.to)
        && f > t
    {
        return Err(ApiError::unprocessable(
            "from",
            format!("from {f} is after to {t}"),
        ));
    }
    Ok(filter)
}

fn listing(
    state: &ApiState,
    kind: credfed_protocol::listing::ListingKind,
    q: &ListQuery,
) -> Result<Response, ApiError> {
    let filter = list_filter(kind, q)?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIST_PAGE {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit}: a page holds 1 to {MAX_LIST_PAGE} lines"),
        ));
    }
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            hex::decode(c)
                .ok()
                .filter(|b| b.len() >= 2 && b.len() <= 128)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "cursor",
                        "not a cursor this node gave: pass the next_cursor of the previous page unchanged",
                    )
                })
        })
        .transpose()?;
    let (items, next) =
        state
            .core
            .list(kind, &filter, limit, cursor.as_deref(), LIST_SCAN_BUDGET)?;
    ok(&json!({
        "kind": kind,
        "count": items.len(),
        "items": items,
        "next_cursor": next.map(hex::encode),
    }))
}

/// Entries, newest decision first, filtered (region, department, category, state,
/// name, decision dates).
async fn list_entries(
    State(state): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Response {
    ApiError::respond(
        listing(&state, credfed_protocol::listing::ListingKind::Entry, &q),
        None,
    )
}

/// Evaluation results, newest first, filtered.
async fn list_evaluations(
    State(state): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Response {
    ApiError::respond(
        listing(
            &state,
            credfed_protocol::listing::ListingKind::Evaluation,
            &q,
        ),
        None,
    )
}

/// Joint actions, newest first, filtered (also by target region).
async fn list_actions(
    State(state): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Response {
    ApiError::respond(
        listing(&state, credfed_protocol::listing::ListingKind::Action, &q),
        None,
    )
}

/// Query of `/v1/ids/{prefix}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsQuery {
    /// Only this kind of record: `entry`, `action`, `evaluation` or `objection`.
    pub kind: Option<String>,
}

/// The fewest hex digits an id prefix may have: 8 digits leave 2^32 ids apart, so a
/// prefix from a table is unique in practice and a typo rarely lands on another record.
pub const MIN_ID_PREFIX: usize = 8;

/// The records whose ids start with `prefix` (8–64 hex digits), at most two per kind:
/// one is the record meant, two say the prefix is ambiguous.
async fn ids_by_prefix(
    State(state): State<Arc<ApiState>>,
    ApiPath(prefix): ApiPath<String>,
    ApiQuery(q): ApiQuery<IdsQuery>,
) -> Response {
    let result = (|| {
        if !(MIN_ID_PREFIX..=64).contains(&prefix.len())
            || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ApiError::invalid(
                "prefix",
                format!(
                    "'{}' is not an id prefix: give {MIN_ID_PREFIX} to 64 hex digits of the id",
                    prefix.chars().take(70).collect::<String>()
                ),
            ));
        }
        const KINDS: [(&str, u8); 6] = [
            ("entry", b'E'),
            ("action", b'A'),
            ("evaluation", b'V'),
            ("objection", b'O'),
            ("commitment", b'F'),
            ("disclosure", b'B'),
        ];
        let kinds: Vec<(&str, u8)> = match &q.kind {
            None => KINDS.to_vec(),
            Some(k) => vec![*KINDS.iter().find(|(n, _)| n == k).ok_or_else(|| {
                ApiError::invalid(
                    "kind",
                    format!(
                        "'{}' is not a kind of record with an id: entry, action, evaluation, objection, commitment or disclosure",
                        k.chars().take(40).collect::<String>()
                    ),
                )
            })?],
        };
        let mut matches = Vec::new();
        for (name, byte) in kinds {
            for id in state.core.ids_with_prefix(byte, &prefix, 2)? {
                matches.push(json!({"kind": name, "id": id.to_hex()}));
            }
        }
        ok(&json!({
            "prefix": prefix.to_ascii_lowercase(),
            "ambiguous": matches.len() > 1,
            "matches": matches,
        }))
    })();
    ApiError::respond(result, None)
}

/// Query of `/v1/inbox`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only tasks of this kind (`acknowledge`, `report_execution`, `lift`,
    /// `resolve_objection`, `decide_repair`, `settle_commitment`).
    pub kind: Option<String>,
    /// Only overdue tasks (`true`) or only those not yet due (`false`).
    pub overdue: Option<bool>,
    /// Tasks per page (default 100, at most [`MAX_INBOX_PAGE`]).
    pub limit: Option<usize>,
    /// Tasks to skip (the `next_offset` of the previous page).
    pub offset: Option<usize>,
}

/// The largest inbox page.
pub const MAX_INBOX_PAGE: usize = 1_000;

/// Attention marks an inbox reads at most: a region with more due marks sees the
/// oldest and `truncated: true` (its backlog is then the problem to report).
pub const MAX_INBOX_MARKS: usize = 20_000;

/// The caller's inbox: what its region must do, for the roles the caller holds (the
/// node's operator sees every role's tasks), earliest due first.
async fn inbox(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> Response {
    let result = (|| {
        use credfed_protocol::inbox::TaskKind;
        let core = &state.core;
        let kind: Option<TaskKind> = match &q.kind {
            Some(k) => Some(serde_json::from_value(json!(k)).map_err(|_| {
                ApiError::invalid(
                    "kind",
                    format!(
                        "'{}' is not a task kind: acknowledge, report_execution, lift, resolve_objection, decide_repair or settle_commitment",
                        k.chars().take(40).collect::<String>()
                    ),
                )
            })?),
            None => None,
        };
        let limit = q.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_INBOX_PAGE {
            return Err(ApiError::invalid(
                "limit",
                format!("{limit}: a page holds 1 to {MAX_INBOX_PAGE} tasks"),
            ));
        }
        let offset = q.offset.unwrap_or(0);
        let roles: Option<Vec<Role>> = if caller.is_operator(&state)? {
            None
        } else {
            Some(
                core.department(&caller.0)?
                    .map(|d| d.roles)
                    .unwrap_or_default(),
            )
        };
        let region = caller.0.home_province();
        let (tasks, truncated) = core.inbox(region, MAX_INBOX_MARKS)?;
        let mine: Vec<_> = tasks
            .into_iter()
            .filter(|t| roles.as_ref().is_none_or(|r| r.contains(&t.role)))
            .filter(|t| kind.is_none_or(|k| t.kind == k))
            .filter(|t| q.overdue.is_none_or(|o| t.overdue == o))
            .collect();
        let total = mine.len();
        let overdue = mine.iter().filter(|t| t.overdue).count();
        let page: Vec<_> = mine.into_iter().skip(offset).take(limit).collect();
        let next_offset = (offset + page.len() < total).then_some(offset + page.len());
        ok(&json!({
            "region": region,
            "department": caller.0,
            "as_of": core.now().date_cst(),
            "total": total,
            "overdue": overdue,
            "truncated": truncated,
            "next_offset": next_offset,
            "tasks": page,
        }))
    })();
    ApiError::respond(result, None)
}

async fn department(State(state): State<Arc<ApiState>>, ApiPath(id): ApiPath<String>) -> Response {
    let subject = Some(format!(
        "department {}",
        id.chars().take(64).collect::<String>()
    ));
    let result = (|| {
        let d = input::department_id("id", &id)?;
        let rec = state
            .core
            .department(&d)?
            .ok_or_else(|| ApiError::not_found("department", &id))?;
        ok(&rec)
    })();
    ApiError::respond(result, subject)
}

/// Query of `/v1/departments`.
#[derive(Debug, Deserialize)]
pub struct DepartmentsQuery {
    /// Only departments of this province (default: every region).
    pub region: Option<String>,
}

async fn departments(
    State(state): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<DepartmentsQuery>,
) -> Response {
    let result = (|| {
        let region = match &q.region {
            Some(r) => Some(input::region_code("region", r)?),
            None => None,
        };
        let list: Vec<_> = state
            .core
            .departments()?
            .into_iter()
            .filter(|d| region.is_none_or(|r| d.department.home_province() == r))
            .collect();
        ok(&list)
    })();
    ApiError::respond(result, q.region.clone().map(|r| format!("region {r}")))
}

async fn partition(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<PartitionRequest>,
) -> Response {
    let result = async {
        if !state.drill_faults {
            return Err(ApiError::not_found(
                "drill fault endpoint",
                "(drill_faults is off: this node is not a drill's)",
            ));
        }
        caller.require_operator(&state, "fault injection")?;
        let mut regions = std::collections::BTreeSet::new();
        for r in &req.blocked {
            regions.insert(input::region_code("blocked", r)?);
        }
        if req.loss_percent > 100 {
            return Err(ApiError::invalid(
                "loss_percent",
                format!(
                    "loss_percent: {} is not a percentage (0..=100)",
                    req.loss_percent
                ),
            ));
        }
        state
            .commands
            .send(Command::Fault(crate::p2p::InNodeFault {
                blocked: regions.clone(),
                loss_percent: req.loss_percent,
                lie_person_keys: req.lie_person_keys,
            }))
            .await
            .map_err(|_| {
                ApiError::unavailable("network_down", "the network task is not running")
            })?;
        ok(&PartitionRequest {
            blocked: regions.iter().map(|r| r.to_string()).collect(),
            loss_percent: req.loss_percent,
            lie_person_keys: req.lie_person_keys,
        })
    }
    .await;
    ApiError::respond(result, None)
}

/// Starts this member's part of a person-key ceremony (docs/operator.md, "Person keys").
async fn ceremony_start(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<credfed_client::CeremonyRequest>,
) -> Response {
    let result = (|| {
        caller.require_operator(&state, "a person-key ceremony")?;
        let manifest = state.core.manifest();
        let mut members = Vec::new();
        for r in req.members.iter().flatten() {
            let region = input::region_code("members", r)?;
            if manifest.member(region).is_none() {
                return Err(ApiError::unprocessable(
                    "members",
                    format!("members: {region} is not a member of the federation"),
                ));
            }
            members.push(region);
        }
        // The plan's rules name what they are about; the field follows.
        let plan_error = |e: credfed_protocol::oprf::ceremony::CeremonyError| {
            let text = e.to_string();
            let text = text.trim_start_matches("plan: ");
            let field = if text.starts_with("label") {
                "label"
            } else if text.starts_with("threshold") {
                "threshold"
            } else {
                "members"
            };
            ApiError::unprocessable(field, text)
        };
        let mut ceremonies = state
            .ceremonies
            .lock()
            .map_err(|_| ApiError::internal("the ceremony state is poisoned; restart the node"))?;
        use crate::ceremonies::Plan;
        use credfed_protocol::oprf::ceremony::CeremonyPlan;
        if req.member.is_some() && req.kind != "repair" {
            return Err(ApiError::unprocessable(
                "member",
                "member: names the member being repaired, so it goes with kind \"repair\" only",
            ));
        }
        let plan = match req.kind.as_str() {
            "generate" => {
                if members.is_empty() {
                    members = manifest.members.iter().map(|m| m.region).collect();
                }
                let threshold = req
                    .threshold
                    .unwrap_or_else(|| credfed_protocol::oprf::keygen::majority(members.len()));
                if threshold <= manifest.policy.faults_tolerated {
                    return Err(ApiError::unprocessable(
                        "threshold",
                        format!(
                            "threshold: {threshold} members could all be among the {} faulty members the federation tolerates (policy.faults_tolerated); use more than {}",
                            manifest.policy.faults_tolerated, manifest.policy.faults_tolerated
                        ),
                    ));
                }
                Plan::Keys(
                    CeremonyPlan::generate(&req.label, threshold, &members).map_err(plan_error)?,
                )
            }
            "refresh" => {
                let current = ceremonies
                    .current_shares()
                    .filter(|_| ceremonies.holds_share())
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "kind",
                            "kind: refresh renews the manifest's person key, and this node runs without a share of one; run a generation, or have the share repaired first",
                        )
                    })?;
                if req.threshold.is_some_and(|t| t != current.threshold) {
                    return Err(ApiError::unprocessable(
                        "threshold",
                        format!(
                            "threshold: a refresh keeps the key's threshold ({}); leave it out",
                            current.threshold
                        ),
                    ));
                }
                let chosen = (!members.is_empty()).then_some(members.as_slice());
                Plan::Keys(CeremonyPlan::refresh(&req.label, &current, chosen).map_err(plan_error)?)
            }
            "repair" => {
                let current = ceremonies.current_shares().cloned().ok_or_else(|| {
                    ApiError::unprocessable(
                        "kind",
                        "kind: the manifest this node runs has no person_key to repair",
                    )
                })?;
                let Some(member) = &req.member else {
                    return Err(ApiError::unprocessable(
                        "member",
                        "member: name the member whose share is repaired (its region code)",
                    ));
                };
                let member = input::region_code("member", member)?;
                if manifest.member(member).is_none() {
                    return Err(ApiError::unprocessable(
                        "member",
                        format!("member: {member} is not a member of the federation"),
                    ));
                }
                if req.threshold.is_some() {
                    return Err(ApiError::unprocessable(
                        "threshold",
                        "threshold: a repair keeps the key's threshold; leave it out",
                    ));
                }
                let chosen = (!members.is_empty()).then_some(members.as_slice());
                Plan::Repair(
                    credfed_protocol::oprf::repair::RepairPlan::new(
                        &req.label, &current, member, chosen,
                    )
                    .map_err(plan_error)?,
                )
            }
            other => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("kind: {other:?}, expected \"generate\", \"refresh\" or \"repair\""),
                ));
            }
        };
        let status = ceremonies
            .start(plan, state.core.now().0)
            .map_err(|e| ApiError::unprocessable("members", e))?;
        ok(&status)
    })();
    ApiError::respond(result, None)
}

/// The running or last person-key ceremony's progress and, once done, the public shares.
async fn ceremony_status(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let result = (|| {
        caller.require_operator(&state, "a person-key ceremony")?;
        let status = state
            .ceremonies
            .lock()
            .map_err(|_| ApiError::internal("the ceremony state is poisoned; restart the node"))?
            .status();
        match status {
            Some(s) => ok(&s),
            None => Err(ApiError::with_status(
                axum::http::StatusCode::NOT_FOUND,
                "no_ceremony",
                "no person-key ceremony has been started on this node since it started; start one with `credfed person-key start`",
            )),
        }
    })();
    ApiError::respond(result, None)
}

async fn audit_log(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let result = (|| {
        caller.require_operator(&state, "the audit log")?;
        let lines = state.audit.tail(1000).map_err(|e| {
            ApiError::unavailable("audit_unavailable", format!("reading the audit log: {e}"))
        })?;
        ok(&lines)
    })();
    ApiError::respond(result, None)
}

/// Query of `/v1/log/{region}`.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// First sequence number (default 1).
    pub from: Option<u64>,
    /// At most this many (default and maximum 256).
    pub limit: Option<usize>,
}

async fn log_range(
    State(state): State<Arc<ApiState>>,
    ApiPath(region): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Response {
    let subject = Some(format!(
        "log {}",
        region.chars().take(16).collect::<String>()
    ));
    let result = (|| {
        let r = input::region_code("region", &region)?;
        let core = &state.core;
        let from = q.from.unwrap_or(1).max(1);
        let limit = q.limit.unwrap_or(256).min(256);
        let envelopes = core.range(r, from, limit, 8 * 1024 * 1024)?;
        let mut received_ms = Vec::with_capacity(envelopes.len());
        for k in 0..envelopes.len() as u64 {
            received_ms.push(core.received_at(credfed_protocol::state::RecordPos {
                region: r,
                seq: from + k,
            })?);
        }
        ok(&LogPage {
            region: r.to_string(),
            from,
            envelopes: envelopes.iter().map(hex::encode).collect(),
            received_ms,
        })
    })();
    ApiError::respond(result, subject)
}

impl From<crate::engine::ProofFailure> for ApiError {
    fn from(e: crate::engine::ProofFailure) -> ApiError {
        use crate::engine::ProofFailure;
        match e {
            ProofFailure::NotHeld { held } => ApiError::not_found(
                "tree of that size",
                &format!(
                    "(this node holds {held} records of the region; ask later or ask the region's node)"
                ),
            ),
            ProofFailure::OutOfRange(m) => ApiError::unprocessable("query", format!("query: {m}")),
            e @ ProofFailure::Passed { .. } => {
                ApiError::unavailable("map_passed", format!("proofs: {e}"))
            }
            ProofFailure::Store(e) => ApiError::store(e),
        }
    }
}

fn hex_list(hashes: &[Hash256]) -> Vec<String> {
    hashes.iter().map(|h| h.to_hex()).collect()
}

/// `GET /v1/log/{region}/checkpoint`: the region's tree as this replica holds it; the
/// region's own signed checkpoint when this node is that region's; the latest witnessed
/// checkpoint held; what this node cosigned as a witness; split-view evidence if any.
async fn checkpoint(
    State(state): State<Arc<ApiState>>,
    ApiPath(region): ApiPath<String>,
) -> Response {
    let subject = Some(format!(
        "checkpoint {}",
        region.chars().take(16).collect::<String>()
    ));
    let result = (|| {
        let r = input::region_code("region", &region)?;
        let core = &state.core;
        let own = if r == core.region() {
            Some(core.own_checkpoint()?)
        } else {
            None
        };
        let (size, root) = match &own {
            Some(s) => (s.checkpoint.size, s.checkpoint.root),
            None => core.tree_head(r)?,
        };
        ok(&json!({
            "region": r.to_string(),
            "size": size,
            "root": root.to_hex(),
            "note": own.map(|s| s.encode()),
            "witnessed": core.witnessed_checkpoint(r)?.map(|s| s.encode()),
            "cosigned": core.witness_view(r)?.map(|v| json!({"size": v.size, "root": v.root.to_hex()})),
            "split_view_evidence": core.split_view_evidence(r)?,
            "fork_evidence": core.fork_evidence(r)?,
            "equivocation_evidence": core.equivocation_evidence(r)?,
        }))
    })();
    ApiError::respond(result, subject)
}

/// Query of `/v1/log/{region}/proof/inclusion`.
#[derive(Debug, Deserialize)]
pub struct InclusionQuery {
    /// The envelope's sequence number.
    pub seq: u64,
    /// Tree size (a checkpoint's).
    pub size: u64,
}

async fn inclusion_proof(
    State(state): State<Arc<ApiState>>,
    ApiPath(region): ApiPath<String>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Response {
    let result = (|| {
        let r = input::region_code("region", &region)?;
        let core = &state.core;
        let proof = core.inclusion_proof(r, q.seq, q.size)?;
        let root = core.tree_root_at(r, q.size)?;
        ok(&json!({
            "region": r.to_string(), "seq": q.seq, "size": q.size,
            "root": root.to_hex(), "proof": hex_list(&proof),
        }))
    })();
    ApiError::respond(result, None)
}

/// Query of `/v1/log/{region}/proof/consistency`.
#[derive(Debug, Deserialize)]
pub struct ConsistencyQuery {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
}

async fn consistency_proof(
    State(state): State<Arc<ApiState>>,
    ApiPath(region): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Response {
    let result = (|| {
        let r = input::region_code("region", &region)?;
        let core = &state.core;
        let proof = core.consistency_proof(r, q.from, q.to)?;
        ok(&json!({
            "region": r.to_string(), "from": q.from, "to": q.to,
            "from_root": core.tree_root_at(r, q.from)?.to_hex(),
            "to_root": core.tree_root_at(r, q.to)?.to_hex(),
            "proof": hex_list(&proof),
        }))
    })();
    ApiError::respond(result, None)
}

async fn heads(State(state): State<Arc<ApiState>>) -> Response {
    let result = (|| {
        let map: BTreeMap<String, HeadInfo> = state
            .core
            .heads()?
            .into_iter()
            .map(|(r, h)| {
                (
                    r.to_string(),
                    HeadInfo {
                        seq: h.seq,
                        hash: h.hash.to_hex(),
                        timestamp_ms: h.timestamp.0,
                    },
                )
            })
            .collect();
        ok(&map)
    })();
    ApiError::respond(result, None)
}

fn net_status(state: &ApiState) -> NetStatus {
    state.status.lock().map(|s| s.clone()).unwrap_or_default()
}

async fn peers(State(state): State<Arc<ApiState>>) -> Response {
    let s = net_status(&state);
    ApiError::respond(
        ok(&Peers {
            connected: s.connected,
            best_known: s.best_known,
            last_contact_ms: s.last_contact_ms,
        }),
        None,
    )
}

/// Records behind the highest head any peer reported, per region.
fn replication_lag(
    s: &NetStatus,
    heads: &BTreeMap<RegionCode, credfed_protocol::ledger::Head>,
) -> Vec<(String, u64)> {
    let held: BTreeMap<String, u64> = heads.iter().map(|(r, h)| (r.to_string(), h.seq)).collect();
    s.best_known
        .iter()
        .map(|(r, best)| {
            (
                r.clone(),
                best.saturating_sub(held.get(r).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Days before its expiry from which a certificate is warned about.
pub const CERT_WARNING_DAYS: i64 = 30;

/// Days left of the API's own certificates: (which, days left, last valid instant).
fn own_certificates(
    state: &ApiState,
    now: credfed_protocol::time::Timestamp,
) -> Vec<(&'static str, i64, String)> {
    state
        .cert_files
        .iter()
        .filter_map(|(which, path)| {
            crate::config::cert_days_left(path, now).map(|(left, last)| (*which, left, last))
        })
        .collect()
}

/// Days left of the client certificate that ends first, and how many end within
/// [`CERT_WARNING_DAYS`] (from the validity recorded at issuance).
fn client_certificates(
    state: &ApiState,
    now: credfed_protocol::time::Timestamp,
) -> (Option<i64>, usize) {
    let Some(data_dir) = state.clients_dir.parent() else {
        return (None, 0);
    };
    let today = now.date_cst().days_since_epoch() as i64;
    let left: Vec<i64> = crate::config::registered_certificates(data_dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let d = credfed_protocol::time::Date::parse(c.not_after.as_deref()?).ok()?;
            Some(d.days_since_epoch() as i64 - today)
        })
        .collect();
    (
        left.iter().copied().min(),
        left.iter().filter(|l| **l < CERT_WARNING_DAYS).count(),
    )
}

/// What `/v1/status` says from [`CERT_WARNING_DAYS`] before a certificate ends.
fn certificates_warning(
    state: &ApiState,
    now: credfed_protocol::time::Timestamp,
) -> Option<String> {
    let mut parts = Vec::new();
    for (which, left, last) in own_certificates(state, now) {
        if left < CERT_WARNING_DAYS {
            let what = match which {
                "ca" => {
                    "the API's certificate authority (credfed-node rotate-ca: docs/operator.md, \"Certificates\")"
                }
                _ => "the API's server certificate (credfed-node rotate-server-cert)",
            };
            parts.push(format!("{what} ends at {last} ({left} days)"));
        }
    }
    let (_, soon) = client_certificates(state, now);
    if soon > 0 {
        parts.push(format!(
            "{soon} department client certificate(s) end within {CERT_WARNING_DAYS} days (credfed-node certs; reissue from a new request)"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// What `/v1/status` says when members run other manifest versions than this node.
fn manifest_versions_warning(own: u64, members: &BTreeMap<String, u64>) -> Option<String> {
    let other: Vec<String> = members
        .iter()
        .filter(|(_, v)| **v != own)
        .map(|(r, v)| format!("{r} runs version {v}"))
        .collect();
    (!other.is_empty()).then(|| {
        format!(
            "this node runs manifest version {own}, but {}: a member fetches a newer version from a member that runs it and adopts it within seconds; one that stays behind refused it (its status says why in manifest_refused) or is not connected (docs/operator.md, \"Manifests\")",
            other.join(", ")
        )
    })
}

/// Days before its expiry from which the manifest is warned about.
pub const MANIFEST_WARNING_DAYS: i64 = 30;

/// Days until the manifest expires (fractions dropped; negative once it has).
fn manifest_days_left(
    manifest: &credfed_protocol::manifest::Manifest,
    now: credfed_protocol::time::Timestamp,
) -> i64 {
    (manifest.expires_at.0 - now.0).div_euclid(86_400_000)
}

/// The warning `/v1/status` carries from [`MANIFEST_WARNING_DAYS`] before the manifest
/// expires: a node refuses to start on an expired manifest.
pub fn manifest_warning(
    manifest: &credfed_protocol::manifest::Manifest,
    now: credfed_protocol::time::Timestamp,
) -> Option<String> {
    let left = manifest_days_left(manifest, now);
    (left < MANIFEST_WARNING_DAYS).then(|| {
        format!(
            "the manifest (version {}) expires at {} ({left} days from now): ask the federation authority for the next version and install it on every node before then (docs/operator.md, \"Manifests\"); a node does not start on an expired manifest",
            manifest.version,
            manifest.expires_at.cst_string()
        )
    })
}

async fn status(State(state): State<Arc<ApiState>>) -> Response {
    let result = (|| {
        let core = &state.core;
        let s = net_status(&state);
        let heads = core.heads()?;
        let paused = core.writes_paused();
        let metrics = core.metrics();
        ok(&NodeStatus {
            region: core.region().to_string(),
            federation_id: core.manifest().federation_id.clone(),
            manifest_version: core.manifest().version,
            peer_id: s.peer_id.clone(),
            own_head: heads.get(&core.region()).map_or(0, |h| h.seq),
            regions_held: heads.len(),
            peers_connected: s.connected.len(),
            members: core.manifest().members.len(),
            writes_open: paused.is_none() && state.audit.healthy(),
            writes_paused_reason: paused.or_else(|| {
                (!state.audit.healthy()).then(|| "the audit log cannot be written".to_string())
            }),
            audit_ok: state.audit.healthy(),
            parked: metrics.parked.load(std::sync::atomic::Ordering::Relaxed) as usize,
            lag: replication_lag(&s, &heads).into_iter().collect(),
            equivocating_regions: core.equivocators()?.iter().map(|r| r.to_string()).collect(),
            store_bytes: core.store_bytes(),
            now_ms: core.now().0,
            last_applied_ms: metrics
                .last_applied_ms
                .load(std::sync::atomic::Ordering::Relaxed),
            calendar_covers_until: core.calendar().last_covered_day().map(|d| d.to_string()),
            calendar_warning: core
                .calendar()
                .coverage_warning(core.now().date_cst(), CALENDAR_WARNING_DAYS),
            person_keys: state.person_keys.status(),
            manifest_expires_at: Some(core.manifest().expires_at.cst_string()),
            manifest_warning: manifest_warning(core.manifest(), core.now()),
            certificates_warning: certificates_warning(&state, core.now()),
            manifest_versions_warning: manifest_versions_warning(
                core.manifest().version,
                &s.manifest_versions,
            ),
            members_manifest_versions: s.manifest_versions.clone(),
            manifest_refused: s.manifest_refused.clone(),
        })
    })();
    ApiError::respond(result, None)
}

async fn stats(State(state): State<Arc<ApiState>>) -> Response {
    let result = (|| {
        let core = &state.core;
        let now = core.now();
        let mut by_list: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_region: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut overdue_objections = 0;
        for e in core.entries() {
            let e = e?;
            *by_list
                .entry(format!("{:?}", e.content.category.list()).to_lowercase())
                .or_default() += 1;
            // "black:food_and_drug", "red:moral_model": the list and the category as
            // records spell them.
            let category = match e.content.category {
                credfed_protocol::record::Category::Black(b) => {
                    format!("black:{}", credfed_protocol::catalogue::snake_name(&b))
                }
                credfed_protocol::record::Category::Red(r) => {
                    format!("red:{}", credfed_protocol::catalogue::snake_name(&r))
                }
            };
            *by_category.entry(category).or_default() += 1;
            *by_region.entry(e.issuer().to_string()).or_default() += 1;
            *by_state
                .entry(format!("{:?}", e.state_at(now)).to_lowercase())
                .or_default() += 1;
            overdue_objections += e
                .overdue_objections(now, core.calendar(), &core.manifest().policy)
                .len();
        }
        let mut targets: BTreeMap<String, u64> = BTreeMap::new();
        let mut ack_ms: Vec<i64> = Vec::new();
        // Mandatory measures a region declined, per region (articles 二十, 二十三: the
        // supervision the guidance asks for).
        let mut non_compliance: BTreeMap<String, u64> = BTreeMap::new();
        for a in core.actions() {
            for t in a?.view_at(now, core.manifest(), core.catalogue()) {
                *targets
                    .entry(format!("{:?}", t.status).to_lowercase())
                    .or_default() += 1;
                ack_ms.extend(t.acknowledgement_ms);
                if !t.non_compliant.is_empty() {
                    *non_compliance.entry(t.region.to_string()).or_default() +=
                        t.non_compliant.len() as u64;
                }
            }
        }
        ack_ms.sort_unstable();
        let median = ack_ms.get(ack_ms.len() / 2).copied();
        ok(&json!({
            "entries_by_list": by_list, "entries_by_category": by_category, "entries_by_region": by_region, "entries_by_state": by_state,
            "action_targets_by_status": targets, "overdue_acknowledgements": targets.get("overdue").copied().unwrap_or(0),
            "overdue_objections": overdue_objections, "median_acknowledgement_ms": median,
            "mandatory_measures_declined_by_region": non_compliance,
        }))
    })();
    ApiError::respond(result, None)
}

/// Query of `/v1/reports`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `day`, `month` (default) or `quarter`.
    pub period: Option<String>,
    /// First day (default: 30 days ago).
    pub from: Option<String>,
    /// Last day (default: today).
    pub to: Option<String>,
}

/// Longest range of a report: a year and a day.
pub const MAX_REPORT_DAYS: i32 = 366;

/// Supervision report (article 二十三) per period, region and department
/// (`credfed_protocol::report`). Like `/v1/stats`, it reads every fold, on a blocking
/// thread.
async fn reports(
    State(state): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Response {
    use credfed_protocol::report::{Period, ReportRules, report};
    let result: Result<Response, ApiError> = async {
        let period: Period = serde_json::from_value(json!(q.period.as_deref().unwrap_or("month")))
            .map_err(|_| ApiError::invalid("period", "period: day, month or quarter"))?;
        let today = state.core.now().date_cst();
        let day = |v: &Option<String>, field: &str, default| match v {
            None => Ok(default),
            // The documented shape (YYYY-MM-DD) is 400; a date that does not exist, 422.
            Some(t) if t.len() != 10 || !t.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                Err(ApiError::invalid(field, format!("{field}: expected YYYY-MM-DD")))
            }
            Some(t) => credfed_protocol::time::Date::parse(t)
                .map_err(|e| ApiError::unprocessable(field, format!("{field}: {e}"))),
        };
        let from = day(&q.from, "from", today.add_days(-30))?;
        let to = day(&q.to, "to", today)?;
        let span = to.days_since_epoch() - from.days_since_epoch();
        if !(0..=MAX_REPORT_DAYS).contains(&span) {
            return Err(ApiError::unprocessable(
                "to",
                format!("to: {to} must be on or after from ({from}) and at most {MAX_REPORT_DAYS} days later"),
            ));
        }
        let core = state.core.clone();
        let lines = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            let entries: Vec<_> = core.entries().collect::<Result<_, _>>()?;
            let actions: Vec<_> = core.actions().collect::<Result<_, _>>()?;
            let commitments: Vec<_> = core.commitments().collect::<Result<_, _>>()?;
            let disclosures: Vec<_> = core.disclosures().collect::<Result<_, _>>()?;
            let rules = ReportRules {
                manifest: core.manifest(),
                catalogue: core.catalogue(),
                calendar: core.calendar(),
            };
            let lines = report(
                &rules,
                &entries,
                &actions,
                &commitments,
                &disclosures,
                period,
                from,
                to,
                core.now(),
            );
            let checks = core.check_counts(from, to)?;
            Ok(credfed_protocol::report::add_checks(
                lines,
                core.region(),
                &checks,
                period,
            ))
        })
        .await
        .map_err(|e| ApiError::internal(format!("report failed: {e}")))?
        .map_err(ApiError::store)?;
        ok(&json!({"period": period, "from": from, "to": to, "lines": lines}))
    }
    .await;
    ApiError::respond(result, None)
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    if !state.metrics_public {
        return ApiError::respond(
            Err(ApiError::forbidden(
                "not_allowed",
                "metrics are not public on this node (metrics_public = false)",
            )),
            None,
        );
    }
    let core = &state.core;
    let heads = match core.heads() {
        Ok(h) => h,
        Err(e) => return ApiError::respond(Err(e.into()), None),
    };
    let lag = replication_lag(&net_status(&state), &heads);
    let mut text = core.metrics().render(
        &lag,
        core.store_bytes(),
        core.store_cache(),
        state.audit.failures(),
    );
    state.person_keys.render_metrics(&mut text);
    let members = core.manifest().members.len();
    let s = net_status(&state);
    if !s.manifest_versions.is_empty() {
        text.push_str("# HELP credfed_member_manifest_version The manifest version a member said it runs when it last connected.\n# TYPE credfed_member_manifest_version gauge\n");
        for (region, v) in &s.manifest_versions {
            text.push_str(&format!(
                "credfed_member_manifest_version{{region=\"{region}\"}} {v}\n"
            ));
        }
    }
    text.push_str(&format!(
        "# HELP credfed_members Members in the manifest in force, this node included (alert when credfed_peers < credfed_members - 1).\n# TYPE credfed_members gauge\ncredfed_members {members}\n"
    ));
    // How old this region's latest witnessed checkpoint is: proven answers are no
    // fresher than it.
    if let Ok(Some(time)) = core
        .witnessed_checkpoint(core.region())
        .map(|w| w.and_then(|w| w.checkpoint.time()))
    {
        let age = (core.now_seconds()).saturating_sub(time);
        text.push_str(&format!(
            "# HELP credfed_witnessed_checkpoint_age_seconds Age of this region's latest checkpoint cosigned by a quorum.\n# TYPE credfed_witnessed_checkpoint_age_seconds gauge\ncredfed_witnessed_checkpoint_age_seconds {age}\n"
        ));
    }
    // Joint actions this region's departments have not acknowledged by the deadline
    // (article 二十三), from the bounded attention-mark index the inbox reads.
    if let Ok((tasks, _)) = core.inbox(core.region(), MAX_INBOX_MARKS) {
        let overdue = tasks
            .iter()
            .filter(|t| t.overdue && t.kind == credfed_protocol::inbox::TaskKind::Acknowledge)
            .count();
        text.push_str(&format!(
            "# HELP credfed_acknowledgements_overdue Joint actions this region has not acknowledged by their deadline.\n# TYPE credfed_acknowledgements_overdue gauge\ncredfed_acknowledgements_overdue {overdue}\n"
        ));
    }
    text.push_str("# HELP credfed_certificate_days_left Days until the API's own certificates end (server, ca).\n# TYPE credfed_certificate_days_left gauge\n");
    for (which, left, _) in own_certificates(&state, core.now()) {
        text.push_str(&format!(
            "credfed_certificate_days_left{{cert=\"{which}\"}} {left}\n"
        ));
    }
    if let (Some(first), _) = client_certificates(&state, core.now()) {
        text.push_str(&format!("# HELP credfed_client_certificate_days_left_min Days until the first department client certificate ends.\n# TYPE credfed_client_certificate_days_left_min gauge\ncredfed_client_certificate_days_left_min {first}\n"));
    }
    text.push_str(&format!(
        "# HELP credfed_manifest_version Version of the manifest in force.\n# TYPE credfed_manifest_version gauge\ncredfed_manifest_version {}\n# HELP credfed_manifest_days_left Days until the manifest in force expires (warned from {MANIFEST_WARNING_DAYS}).\n# TYPE credfed_manifest_days_left gauge\ncredfed_manifest_days_left {}\n",
        core.manifest().version,
        manifest_days_left(core.manifest(), core.now())
    ));
    if let Some(last) = core.calendar().last_covered_day() {
        let left = last.days_since_epoch() - core.now().date_cst().days_since_epoch();
        text.push_str(&format!(
            "# HELP credfed_calendar_days_left Days until the working-day calendar ends (negative: ended; deadlines beyond it are estimated).\n# TYPE credfed_calendar_days_left gauge\ncredfed_calendar_days_left {left}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members on another manifest version than this node are named in the status
    /// (members normally adopt a newer version within seconds: one still named has
    /// refused it or cannot fetch it).
    #[test]
    fn members_on_another_manifest_version_are_flagged() {
        let mut members = BTreeMap::new();
        assert_eq!(manifest_versions_warning(2, &members), None);
        members.insert("310000".to_string(), 2);
        assert_eq!(manifest_versions_warning(2, &members), None);
        members.insert("440000".to_string(), 1);
        members.insert("620000".to_string(), 3);
        let w = manifest_versions_warning(2, &members).unwrap();
        assert!(
            w.contains("runs manifest version 2")
                && w.contains("440000 runs version 1, 620000 runs version 3")
                && !w.contains("310000")
                && w.contains("manifest_refused"),
            "{w}"
        );
    }

    /// A certificate's department is read from its fingerprint file once and kept, but
    /// deleting the file cuts it off at the next look and a file written anew is read
    /// again.
    #[test]
    fn a_client_certificate_file_deleted_or_replaced_is_seen_at_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ClientIds::default();
        let fp = "ab".repeat(32);
        assert!(ids.department(dir.path(), &fp).is_none());
        std::fs::write(dir.path().join(&fp), "110000:scjgj\nnot_after=2027-12-01\n").unwrap();
        assert_eq!(
            ids.department(dir.path(), &fp).unwrap().to_string(),
            "110000:scjgj"
        );
        // Kept: a second look gives the same without reading.
        assert_eq!(
            ids.department(dir.path(), &fp).unwrap().to_string(),
            "110000:scjgj"
        );
        std::fs::remove_file(dir.path().join(&fp)).unwrap();
        assert!(
            ids.department(dir.path(), &fp).is_none(),
            "a deleted file still admitted"
        );
        // Written again (another inode, another length): read again.
        std::fs::write(
            dir.path().join(&fp),
            "110000:tax\nnot_after=2027-12-01\nnote=x\n",
        )
        .unwrap();
        assert_eq!(
            ids.department(dir.path(), &fp).unwrap().to_string(),
            "110000:tax"
        );
        std::fs::write(dir.path().join(&fp), "not a department\n").unwrap();
        assert!(ids.department(dir.path(), &fp).is_none());
    }

    /// The checked-in OpenAPI document lists every route the router serves.
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        // Only the code above the tests: this test's own text would match too.
        let src = include_str!("mod.rs").split("#[cfg(test)]").next().unwrap();
        let routes: Vec<&str> = src
            .split(".route(")
            .skip(1)
            .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        assert!(routes.len() >= 12, "{routes:?}");
        for r in routes {
            assert!(
                doc["paths"].get(r).is_some(),
                "route {r} missing from docs/openapi.json"
            );
        }
    }
}

//! The HTTPS/JSON API (paths under `/v1`).
//!
//! Writes carry a department's signature over the exact body bytes; the node places the
//! body in its log only if the protocol admits it, and answers 201 only after the
//! envelope is on disk. Errors are `{code, field, message}`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::check::check;
use credfed_protocol::crypto::{Hash256, Signature};
use credfed_protocol::ids::person::person_hash;
use credfed_protocol::ids::{DepartmentId, resident_id, uscc};
use credfed_protocol::ledger::RejectReason;
use credfed_protocol::record::{ActionId, EntryId, SubjectKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::core::{AppendError, Core};
use crate::p2p::{Command, NetStatus};

/// Shared API state.
pub struct ApiState {
    /// The engine.
    pub core: Arc<Core>,
    /// To the network task.
    pub commands: mpsc::Sender<Command>,
    /// Network status.
    pub status: Arc<Mutex<NetStatus>>,
    /// Append-only operator audit log.
    pub audit: Mutex<std::fs::File>,
    /// Serve /metrics unauthenticated.
    pub metrics_public: bool,
    /// Directory of issued client certificate fingerprints (`<data-dir>/clients`).
    pub clients_dir: std::path::PathBuf,
}

/// The department a request's client certificate was issued to.
#[derive(Debug, Clone)]
pub struct Caller(pub DepartmentId);

impl Caller {
    /// The node's own operator identity (`REGION:node`).
    pub fn is_operator(&self, core: &Core) -> bool {
        self.0.unit == credfed_protocol::envelope::NODE_UNIT && self.0.region == core.region
            || core
                .store
                .department(&self.0)
                .is_some_and(|d| d.roles.contains(&credfed_protocol::ids::Role::Operator))
    }
}

/// Mutual TLS: a request must present a client certificate this node issued, to a
/// department registered and not revoked in its log (or to the node's operator), except
/// for the public endpoints. Revoking a department or deleting its fingerprint file cuts
/// it off at the next request.
async fn authenticate(
    State(state): State<Arc<ApiState>>,
    tls: Option<Extension<Arc<axum_server::tls::TlsInfo>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/v1/openapi.json" || (path == "/metrics" && state.metrics_public) {
        return next.run(req).await;
    }
    let cert = tls
        .as_ref()
        .and_then(|t| t.peer_certificates.first().cloned());
    let Some(cert) = cert else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "no_client_certificate", None, "present the client certificate this node issued to your department (credfed-node issue-client-cert)").into_response();
    };
    let fp = crate::config::cert_fingerprint(&cert);
    let Some(id) = std::fs::read_to_string(state.clients_dir.join(&fp))
        .ok()
        .and_then(|t| DepartmentId::parse(t.trim(), "client").ok())
    else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unknown_client_certificate", None, format!("certificate {fp} is not (or no longer) registered with this node; ask the operator for a new one")).into_response();
    };
    let core = &state.core;
    let is_node = id.unit == credfed_protocol::envelope::NODE_UNIT && id.region == core.region;
    if !is_node {
        match core.store.department(&id) {
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown_department",
                    None,
                    format!("{id} is not registered in {}'s log", core.region),
                )
                .into_response();
            }
            Some(d) if d.revoked_at.is_some() => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "department_revoked",
                    None,
                    format!("{id} was revoked"),
                )
                .into_response();
            }
            Some(_) => {}
        }
    }
    req.extensions_mut().insert(Caller(id));
    next.run(req).await
}

/// The OpenAPI document, checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// A JSON error: machine code, the field at fault and a message naming the rule.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: String,
    /// Field at fault, if one is.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    #[serde(skip)]
    status: u16,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &str,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            code: code.into(),
            field: field.map(str::to_owned),
            message: message.into(),
            status: status.as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

fn field_of(message: &str) -> Option<&str> {
    message
        .split_once(": ")
        .map(|(f, _)| f)
        .filter(|f| !f.contains(' '))
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        match e {
            AppendError::Rejected(r) => {
                let (status, code) = match r.reason {
                    RejectReason::Malformed => (StatusCode::BAD_REQUEST, "invalid"),
                    RejectReason::UnknownAuthor => (StatusCode::UNAUTHORIZED, "unknown_department"),
                    RejectReason::BadAuthorSignature => (StatusCode::UNAUTHORIZED, "bad_signature"),
                    RejectReason::AuthorRevoked => (StatusCode::FORBIDDEN, "department_revoked"),
                    RejectReason::Unauthorised => (StatusCode::FORBIDDEN, "not_allowed"),
                    RejectReason::Conflict => (StatusCode::CONFLICT, "conflict"),
                    RejectReason::NotMember
                    | RejectReason::BadNodeSignature
                    | RejectReason::ChainBroken => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                let field = field_of(&r.message).map(str::to_owned);
                ApiError::new(status, code, field.as_deref(), r.message)
            }
            AppendError::Store(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot_persist",
                None,
                format!("{e}; nothing was recorded, retry later"),
            ),
            AppendError::Gated(why) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "writes_paused",
                None,
                format!("{why}; retry in a few seconds"),
            ),
        }
    }
}

/// A department-signed record submission.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitRecord {
    /// Authoring department, `REGION:UNIT`.
    pub author: String,
    /// The body's canonical bytes, hex.
    pub body: String,
    /// The department's signature over the body (body-sig tag), hex.
    pub signature: String,
}

/// Where a record landed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// Region log.
    pub region: String,
    /// Sequence number.
    pub seq: u64,
    /// Envelope hash.
    pub hash: String,
    /// The envelope, hex (so the caller keeps the signed evidence).
    pub envelope: String,
}

/// Builds the router.
pub fn router(state: Arc<ApiState>, max_body: usize, max_concurrency: usize) -> Router {
    Router::new()
        .route("/v1/records", post(submit))
        .route("/v1/check", get(check_subject))
        .route("/v1/entries/{id}", get(entry))
        .route("/v1/actions/{id}", get(action))
        .route("/v1/departments", get(departments))
        .route("/v1/departments/{id}", get(department))
        .route("/v1/heads", get(heads))
        .route("/v1/log/{region}", get(log_range))
        .route("/v1/peers", get(peers))
        .route("/v1/status", get(status))
        .route("/v1/stats", get(stats))
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .route("/v1/audit", get(audit_log))
        .route("/v1/admin/partition", post(partition))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            max_concurrency,
        ))
        .with_state(state)
}

fn audit(
    state: &ApiState,
    endpoint: &str,
    department: Option<&str>,
    subject: Option<&str>,
    outcome: &str,
    started: Instant,
) {
    state
        .core
        .metrics
        .observe_api(endpoint, started.elapsed().as_secs_f64());
    let line = json!({"time_ms": state.core.now().0, "endpoint": endpoint, "department": department, "subject": subject, "outcome": outcome});
    if let Ok(mut f) = state.audit.lock() {
        let _ = writeln!(f, "{line}");
    }
}

async fn submit(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<SubmitRecord>,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let started = Instant::now();
    // A department submits its own records; the operator may submit any department's
    // (bulk import), which still needs that department's signature.
    let result = if caller.0.to_string() != req.author && !caller.is_operator(&state.core) {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            Some("author"),
            format!(
                "author: {} may not submit records authored by {}",
                caller.0, req.author
            ),
        ))
    } else {
        submit_inner(&state, &req).await
    };
    let outcome = match &result {
        Ok(r) => format!("201 {}#{}", r.region, r.seq),
        Err(e) => format!("{} {}", e.status, e.code),
    };
    audit(
        &state,
        "POST /v1/records",
        Some(&req.author),
        None,
        &outcome,
        started,
    );
    result.map(|r| (StatusCode::CREATED, Json(r)))
}

async fn submit_inner(state: &Arc<ApiState>, req: &SubmitRecord) -> Result<Receipt, ApiError> {
    let bad =
        |field: &str, m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid", Some(field), m);
    let author =
        DepartmentId::parse(&req.author, "author").map_err(|e| bad("author", e.to_string()))?;
    let body = hex::decode(&req.body).map_err(|_| {
        bad(
            "body",
            "body: expected hex of the body's canonical bytes".into(),
        )
    })?;
    if body.len() > credfed_protocol::limits::MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Some("body"),
            format!(
                "body: {} bytes exceeds {}",
                body.len(),
                credfed_protocol::limits::MAX_BODY_BYTES
            ),
        ));
    }
    let signature = Signature::from_hex(&req.signature)
        .map_err(|e| bad("signature", format!("signature: {e}")))?;
    let core = state.core.clone();
    // The append ends in an fsync: keep it off the async workers.
    let v = tokio::task::spawn_blocking(move || core.append(author, body, signature))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                e.to_string(),
            )
        })??;
    if state
        .commands
        .try_send(Command::Publish(v.bytes.clone()))
        .is_err()
    {
        tracing::debug!("push queue full; peers will pull the record");
    }
    Ok(Receipt {
        region: v.envelope.region.to_string(),
        seq: v.envelope.seq,
        hash: v.hash.to_hex(),
        envelope: hex::encode(&v.bytes),
    })
}

/// Query of `/v1/check`: exactly one of `uscc` and `person`.
#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    /// Unified Social Credit Code.
    pub uscc: Option<String>,
    /// Resident identity number (clear; hashed here, never stored or logged).
    pub person: Option<String>,
    /// Domain of the asking department, e.g. `procurement`.
    pub domain: String,
}

async fn check_subject(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<CheckQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let started = Instant::now();
    let bad =
        |field: &str, m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid", Some(field), m);
    let domain = MeasureDomain::parse(&q.domain).ok_or_else(|| {
        let names: Vec<String> = MeasureDomain::ALL.iter().map(|d| d.name()).collect();
        bad(
            "domain",
            format!("domain: '{}' is not one of {}", q.domain, names.join(", ")),
        )
    })?;
    let (key, shown) = match (&q.uscc, &q.person) {
        (Some(code), None) => {
            let code = code.trim().to_ascii_uppercase();
            // A failing check character may still be an exempted pilot code: only the
            // structure is required to ask.
            uscc::validate_structure(&code, "uscc").map_err(|e| bad("uscc", e.to_string()))?;
            (SubjectKey::Uscc(code.clone()), code)
        }
        (None, Some(n)) => {
            let n = resident_id::normalise(n);
            resident_id::validate(&n, "person").map_err(|e| bad("person", e.to_string()))?;
            (
                SubjectKey::Person(person_hash(&state.core.person_key, &n)),
                credfed_protocol::ids::person::mask(&n),
            )
        }
        _ => return Err(bad("uscc", "give exactly one of uscc= and person=".into())),
    };
    let core = &state.core;
    let answer = check(core.rules(), &*core.store, &key, domain, core.now());
    audit(
        &state,
        "GET /v1/check",
        Some(&caller.0.to_string()),
        Some(&shown),
        &format!("{:?}", answer.verdict),
        started,
    );
    let mut v = serde_json::to_value(&answer).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            e.to_string(),
        )
    })?;
    if let Ok(s) = state.status.lock() {
        v["last_contact_ms"] = json!(s.last_contact_ms);
    }
    Ok(Json(v))
}

/// JSON of a value, as an error rather than a panic if it cannot be represented.
fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            format!("cannot render as JSON: {e}"),
        )
    })
}

fn parse_id(text: &str, field: &str) -> Result<Hash256, ApiError> {
    Hash256::from_hex(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            Some(field),
            format!("{field}: {e}"),
        )
    })
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        format!("no {what} {id} in this node's replica (it may not have replicated yet)"),
    )
}

async fn entry(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let core = &state.core;
    let e = core
        .store
        .entry(&EntryId(parse_id(&id, "id")?))
        .ok_or_else(|| not_found("entry", &id))?;
    let now = core.now();
    Ok(Json(json!({
        "entry": to_json(&e)?,
        "state": e.state_at(now),
        "disclosed_late": e.disclosed_late(&core.calendar, &core.manifest.policy),
        "overdue_objections": e.overdue_objections(now, &core.calendar, &core.manifest.policy),
    })))
}

async fn action(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let core = &state.core;
    let a = core
        .store
        .action(&ActionId(parse_id(&id, "id")?))
        .ok_or_else(|| not_found("action", &id))?;
    let targets = a.view_at(core.now(), &core.manifest);
    Ok(Json(
        json!({ "action": to_json(&a)?, "targets": to_json(&targets)? }),
    ))
}

async fn department(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let d = DepartmentId::parse(&id, "id").map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("id"),
            e.to_string(),
        )
    })?;
    let rec = state
        .core
        .store
        .department(&d)
        .ok_or_else(|| not_found("department", &id))?;
    Ok(Json(to_json(&rec)?))
}

/// Query of `/v1/departments`.
#[derive(Debug, Deserialize)]
pub struct DepartmentsQuery {
    /// Only departments of this province (default: every region).
    pub region: Option<String>,
}

async fn departments(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<DepartmentsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<_> = state
        .core
        .store
        .all_departments()
        .filter(|d| {
            q.region
                .as_ref()
                .is_none_or(|r| d.department.home_province().to_string() == *r)
        })
        .collect();
    Ok(Json(to_json(&list)?))
}

/// Body of `/v1/admin/partition`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRequest {
    /// Regions whose nodes this node must not talk to; empty heals.
    pub blocked: Vec<String>,
    /// Percentage of received gossip messages and pulled ranges to drop (0 = none).
    #[serde(default)]
    pub loss_percent: u8,
}

/// Drill fault mode (operator only): cut this node's links to some regions and drop a
/// share of what it receives. Used by credfed-testnet where network namespaces are
/// unavailable; the cut is at the libp2p connection level, so gossip and pull both stop.
async fn partition(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<PartitionRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !caller.is_operator(&state.core) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            None,
            "fault injection is for the node's operator",
        ));
    }
    let mut regions = std::collections::BTreeSet::new();
    for r in &req.blocked {
        regions.insert(
            credfed_protocol::ids::RegionCode::parse(r, "blocked").map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    Some("blocked"),
                    e.to_string(),
                )
            })?,
        );
    }
    if req.loss_percent > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("loss_percent"),
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
        }))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "network_down",
                None,
                "the network task is not running",
            )
        })?;
    Ok(Json(
        json!({"blocked": regions.iter().map(|r| r.to_string()).collect::<Vec<_>>(), "loss_percent": req.loss_percent}),
    ))
}

/// The last lines of the audit log: operators only.
async fn audit_log(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !caller.is_operator(&state.core) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            None,
            "the audit log is for the node's operator",
        ));
    }
    let path = state
        .clients_dir
        .parent()
        .map(|d| d.join("audit.log"))
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .rev()
        .take(1000)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok(Json(json!(lines)))
}

/// Query of `/v1/log/{region}`.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// First sequence number (default 1).
    pub from: Option<u64>,
    /// At most this many (default and maximum 256).
    pub limit: Option<usize>,
}

/// Envelopes of a region's log, verbatim (hex), in sequence order.
async fn log_range(
    State(state): State<Arc<ApiState>>,
    Path(region): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = credfed_protocol::ids::RegionCode::parse(&region, "region").map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("region"),
            e.to_string(),
        )
    })?;
    let limit = q.limit.unwrap_or(256).min(256);
    let envs = state
        .core
        .store
        .range(r, q.from.unwrap_or(1), limit, 8 * 1024 * 1024)
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                None,
                e.to_string(),
            )
        })?;
    let from = q.from.unwrap_or(1).max(1);
    let received: Vec<Option<i64>> = (0..envs.len() as u64)
        .map(|k| {
            state
                .core
                .store
                .received_at(credfed_protocol::state::RecordPos {
                    region: r,
                    seq: from + k,
                })
        })
        .collect();
    Ok(Json(json!({
        "region": r.to_string(),
        "from": from,
        "envelopes": envs.iter().map(hex::encode).collect::<Vec<_>>(),
        "received_ms": received,
    })))
}

async fn heads(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let h = state.core.store.heads().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            None,
            e.to_string(),
        )
    })?;
    let map: BTreeMap<String, _> = h
        .into_iter()
        .map(|(r, h)| {
            (
                r.to_string(),
                json!({"seq": h.seq, "hash": h.hash.to_hex(), "timestamp_ms": h.timestamp.0}),
            )
        })
        .collect();
    Ok(Json(json!(map)))
}

async fn peers(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let s = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    Json(
        json!({ "connected": s.connected, "best_known": s.best_known, "last_contact_ms": s.last_contact_ms }),
    )
}

/// Records behind the highest head any peer reported, per region.
fn replication_lag(
    s: &NetStatus,
    heads: &BTreeMap<credfed_protocol::ids::RegionCode, credfed_protocol::ledger::Head>,
) -> Vec<(String, u64)> {
    s.best_known
        .iter()
        .map(|(r, best)| {
            let have = heads
                .iter()
                .find(|(rc, _)| rc.to_string() == *r)
                .map_or(0, |(_, h)| h.seq);
            (r.clone(), best.saturating_sub(have))
        })
        .collect()
}

async fn status(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let core = &state.core;
    let s = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    let heads = core.store.heads().unwrap_or_default();
    let own = heads.get(&core.region).map_or(0, |h| h.seq);
    let lag: BTreeMap<String, u64> = replication_lag(&s, &heads).into_iter().collect();
    Json(json!({
        "region": core.region.to_string(),
        "federation_id": core.manifest.federation_id,
        "manifest_version": core.manifest.version,
        "peer_id": s.peer_id,
        "own_head": own,
        "regions_held": heads.len(),
        "peers_connected": s.connected.len(),
        "members": core.manifest.members.len(),
        "writes_open": s.writes_open,
        "parked": s.parked,
        "lag": lag,
        "equivocating_regions": core.store.equivocators().iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "store_bytes": core.store.size_on_disk(),
        "now_ms": core.now().0,
        "last_applied_ms": core.metrics.last_applied_ms.load(std::sync::atomic::Ordering::Relaxed),
    }))
}

async fn stats(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let core = &state.core;
    let now = core.now();
    let mut by_list: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_region: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let mut overdue_objections = 0;
    for e in core.store.all_entries() {
        *by_list
            .entry(format!("{:?}", e.content.category.list()).to_lowercase())
            .or_default() += 1;
        *by_category
            .entry(
                serde_json::to_value(e.content.category)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            )
            .or_default() += 1;
        *by_region.entry(e.issuer().to_string()).or_default() += 1;
        *by_state
            .entry(format!("{:?}", e.state_at(now)).to_lowercase())
            .or_default() += 1;
        overdue_objections += e
            .overdue_objections(now, &core.calendar, &core.manifest.policy)
            .len();
    }
    let mut targets: BTreeMap<String, u64> = BTreeMap::new();
    let mut ack_ms: Vec<i64> = Vec::new();
    for a in core.store.all_actions() {
        for t in a.view_at(now, &core.manifest) {
            *targets
                .entry(format!("{:?}", t.status).to_lowercase())
                .or_default() += 1;
            ack_ms.extend(t.acknowledgement_ms);
        }
    }
    ack_ms.sort_unstable();
    let median = ack_ms.get(ack_ms.len() / 2).copied();
    Json(json!({
        "entries_by_list": by_list, "entries_by_category": by_category, "entries_by_region": by_region, "entries_by_state": by_state,
        "action_targets_by_status": targets, "overdue_acknowledgements": targets.get("overdue").copied().unwrap_or(0),
        "overdue_objections": overdue_objections, "median_acknowledgement_ms": median,
    }))
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    if !state.metrics_public {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            None,
            "metrics are not public on this node (metrics_public = false)",
        )
        .into_response();
    }
    let core = &state.core;
    let heads = core.store.heads().unwrap_or_default();
    let s = state.status.lock().map(|s| s.clone()).unwrap_or_default();
    let lag = replication_lag(&s, &heads);
    (
        [("content-type", "text/plain; version=0.0.4")],
        core.metrics.render(&lag, core.store.size_on_disk()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in OpenAPI document lists every route the router serves.
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        // Only the code above the tests: this test's own text would match too.
        let src = include_str!("api.rs").split("#[cfg(test)]").next().unwrap();
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

    /// Fail closed: a store that cannot persist answers 503 and says nothing was recorded.
    #[test]
    fn persistence_failure_is_503() {
        let e = ApiError::from(AppendError::Store(crate::store::StoreError::Io(
            std::io::Error::other("disk full"),
        )));
        assert_eq!(e.status, 503);
        assert!(e.message.contains("nothing was recorded"));
        let e = ApiError::from(AppendError::Gated("waiting".into()));
        assert_eq!((e.status, e.code.as_str()), (503, "writes_paused"));
    }
}

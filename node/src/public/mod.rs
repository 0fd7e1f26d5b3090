//! The public side: one-stop query pages and the open-data feed, on a listener of their
//! own (`public_listen`) with their own budgets (docs/public.md).
//!
//! Architecture invariant: nothing here calls the API's routes, and no route of the
//! API, the console or the operator is mounted on this router. Every page and feed line
//! is built from the node's state through `credfed_protocol::publicity`, which decides
//! what the public may see; persons' keys never leave through it.
//!
//! Security notes.
//! - Requires: the listener is reachable by anyone; no client certificate is asked.
//! - Provides: per-address request rate limits (`public_requests_per_minute`), a
//!   concurrency budget (`public_max_concurrency`) and connection budgets separate from
//!   the department API's, so that a flood of public requests waits for its own slots
//!   rather than the API's; conditional requests (ETag) answered before any work; pages
//!   escaped by the template engine with a Content-Security-Policy.
//! - Does not provide: protection against many addresses (a botnet) beyond the
//!   concurrency budget — put a CDN or rate-limiting proxy in front for the open
//!   internet (docs/public.md).

pub mod feed;
pub mod pages;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::ApiState;
use crate::api::server::ClientAddr;

/// Limits of the public side.
#[derive(Debug, Clone, Copy)]
pub struct PublicLimits {
    /// Requests per minute one client address may make (and the burst it may save up).
    pub requests_per_minute: u32,
    /// Requests handled at once.
    pub max_concurrency: usize,
}

/// Addresses whose rate is tracked at most; past it, addresses idle for a full bucket
/// are forgotten first, and if none are, the table is cleared (every address starts
/// with a full bucket again, which errs towards serving).
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// A token bucket per client address.
#[derive(Default)]
pub struct RateTable {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateTable {
    /// Takes one request's token for `ip`; `Err(seconds)` until the next token when
    /// the bucket is empty.
    pub fn take(&mut self, ip: IpAddr, per_minute: u32, now: Instant) -> Result<(), u64> {
        let capacity = f64::from(per_minute.max(1));
        let per_second = capacity / 60.0;
        if self.buckets.len() >= MAX_TRACKED_ADDRESSES && !self.buckets.contains_key(&ip) {
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < capacity
            });
            if self.buckets.len() >= MAX_TRACKED_ADDRESSES {
                self.buckets.clear();
            }
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((capacity, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / per_second).ceil().max(1.0) as u64)
        }
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The public side's state.
pub struct PublicState {
    /// The node's state (read only here).
    pub api: Arc<ApiState>,
    /// Rate per client address.
    pub rates: Mutex<RateTable>,
    /// Limits.
    pub limits: PublicLimits,
}

/// Handlers' state.
pub type Public = State<Arc<PublicState>>;

/// The public router.
pub fn router(api: Arc<ApiState>, limits: PublicLimits) -> Router {
    let state = Arc::new(PublicState {
        api,
        rates: Mutex::new(RateTable::default()),
        limits,
    });
    Router::new()
        .route("/", get(pages::search))
        .route("/subjects/{uscc}", get(pages::subject))
        .route("/subjects/{uscc}/evidence", get(pages::evidence))
        .route("/entries/{id}", get(pages::entry))
        .route("/verify", get(pages::verify_page).post(pages::verify_file))
        .route("/robots.txt", get(pages::robots))
        .route("/static/console.js", get(crate::console::pages::script))
        .route(
            "/static/console.css",
            get(crate::console::pages::stylesheet),
        )
        .route("/open-data/v1/", get(feed::index))
        .route("/open-data/v1/manifest", get(feed::manifest))
        .route("/open-data/v1/checkpoints", get(feed::checkpoints))
        .route("/open-data/v1/feed/{region}", get(feed::region_feed))
        .route("/open-data/v1/entries.jsonl", get(feed::entries_jsonl))
        .route("/open-data/v1/entries.csv", get(feed::entries_csv))
        .route("/open-data/v1/entities.ftm.json", get(feed::entities_ftm))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), conditional))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrency.max(1),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limited))
        .with_state(state)
}

/// How long a refusal for too many requests waits before it is sent.
const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(1);

/// Refuses a client address over its rate with 429 and `Retry-After`, before any work,
/// after [`RATE_LIMITED_PAUSE`].
async fn rate_limited(State(state): Public, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ClientAddr>()
        .map(|a| a.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let verdict = state
        .rates
        .lock()
        .map(|mut t| t.take(ip, state.limits.requests_per_minute, Instant::now()))
        .unwrap_or(Ok(()));
    if let Err(wait) = verdict {
        state
            .api
            .core
            .metrics()
            .public_rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A client that ignores Retry-After on a kept-alive connection would otherwise
        // get refusals as fast as it asks: each costs TLS and parsing. Answering after
        // a pause costs a timer, and bounds refusals to one per open connection per
        // pause (its connections are bounded by `public_max_connections_per_client`).
        tokio::time::sleep(RATE_LIMITED_PAUSE.min(Duration::from_secs(wait))).await;
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests from this address: at most {} a minute; retry in {wait} s, or mirror the open data (/open-data/v1/) instead of scraping pages",
                state.limits.requests_per_minute
            ),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    state
        .api
        .core
        .metrics()
        .public_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    next.run(req).await
}

/// How long a public answer may be cached: the state behind it changes with every
/// record, and the version tag below says when.
const MAX_AGE_SECONDS: u64 = 60;

/// The version of everything a public answer reads: every region's head, the manifest
/// and the day (states change at midnight CST).
fn state_version(state: &PublicState) -> Option<String> {
    use credfed_protocol::crypto::sha256;
    let core = &state.api.core;
    let heads = core.heads().ok()?;
    let mut text = format!(
        "{}/{}/{}",
        core.manifest().version,
        core.now().date_cst(),
        heads.len()
    );
    for (r, h) in heads {
        text.push_str(&format!(";{r}:{}:{}", h.seq, h.hash));
    }
    Some(sha256(&[text.as_bytes()]).to_hex()[..32].to_owned())
}

/// Answers `If-None-Match` with 304 when nothing has changed (no work done), and tags
/// every successful GET with its ETag and caching headers.
async fn conditional(State(state): Public, req: Request, next: Next) -> Response {
    let is_get = req.method() == axum::http::Method::GET;
    let tag = is_get.then(|| state_version(&state)).flatten().map(|v| {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let h = credfed_protocol::crypto::sha256(&[v.as_bytes(), target.as_bytes()]);
        format!("\"{}\"", &h.to_hex()[..32])
    });
    if let Some(t) = &tag
        && let Some(inm) = req.headers().get(header::IF_NONE_MATCH)
        && inm
            .to_str()
            .is_ok_and(|v| v.split(',').any(|x| x.trim() == t || x.trim() == "*"))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(t) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    let mut r = next.run(req).await;
    if let Some(t) = tag
        && r.status() == StatusCode::OK
    {
        if let Ok(v) = HeaderValue::from_str(&t) {
            r.headers_mut().insert(header::ETAG, v);
        }
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={MAX_AGE_SECONDS}"))
                .unwrap_or(HeaderValue::from_static("public")),
        );
    }
    r
}

/// Time a public answer may take to be produced before the client is told to retry
/// (proofs wait for a federation checkpoint).
pub const PUBLIC_PROOF_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_address_gets_its_rate_and_no_more() {
        let mut t = RateTable::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let now = Instant::now();
        for _ in 0..60 {
            assert!(t.take(ip, 60, now).is_ok());
        }
        let wait = t.take(ip, 60, now).unwrap_err();
        assert_eq!(wait, 1, "one token a second at 60 a minute");
        assert!(
            t.take(other, 60, now).is_ok(),
            "another address has its own bucket"
        );
        assert!(t.take(ip, 60, now + Duration::from_millis(1100)).is_ok());
        assert!(t.take(ip, 60, now + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn the_rate_table_stays_bounded() {
        let mut t = RateTable::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            let _ = t.take(IpAddr::from(i.to_be_bytes()), 60, now);
        }
        assert!(t.len() <= MAX_TRACKED_ADDRESSES);
    }
}

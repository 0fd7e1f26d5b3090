//! `GET /v1/events`: a resumable stream of the records that concern the caller's region
//! (Server-Sent Events; `credfed_protocol::events` decides what concerns whom).
//!
//! Each event's `id` is the cursor after its record: every region's last sequence
//! number passed. A client that reconnects with `Last-Event-ID` (or `?from=`) gets every
//! later record that concerns it once. `?from=now` starts at the heads held.
//!
//! Bounds: at most [`MAX_EVENT_STREAMS`] streams at once per node (503 beyond); each
//! reads at most [`MAX_RECORDS_PER_PASS`] records per pass on a blocking thread and hands
//! events to its connection through a buffer of [`EVENT_BUFFER`]: a slow client makes
//! its own reader wait on that buffer, and a vanished one ends its reader. The backlog
//! is the logs themselves, never a queue in memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use credfed_protocol::envelope::decode_envelope;
use credfed_protocol::events::EventCursor;
use credfed_protocol::ids::RegionCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{ApiError, ApiQuery, ApiState};
use crate::engine::Core;

/// Event streams a node serves at once: each holds a reader task and its buffer.
pub const MAX_EVENT_STREAMS: usize = 64;

/// Events buffered between a stream's reader and its connection.
pub const EVENT_BUFFER: usize = 64;

/// Records a stream's reader reads (and judges) in one pass before yielding.
pub const MAX_RECORDS_PER_PASS: usize = 512;

/// How long a reader that found nothing new waits before looking again.
pub const EVENT_POLL: Duration = Duration::from_millis(250);

/// Query of `/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// A cursor (the `id` of the last event received), or `now`; `Last-Event-ID` wins.
    pub from: Option<String>,
}

/// The stream of records that concern the node's region.
pub async fn events(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Response {
    match open(&state, &headers, q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn open(state: &ApiState, headers: &HeaderMap, q: EventsQuery) -> Result<Response, ApiError> {
    let core = state.core.clone();
    let (text, field) = match headers.get("last-event-id") {
        Some(v) => (
            v.to_str()
                .map_err(|_| ApiError::invalid("Last-Event-ID", "Last-Event-ID: not text"))?
                .to_owned(),
            "Last-Event-ID",
        ),
        None => (q.from.clone().unwrap_or_default(), "from"),
    };
    let cursor = if text == "now" {
        EventCursor(
            core.heads()
                .map_err(ApiError::store)?
                .into_iter()
                .map(|(r, h)| (r, h.seq))
                .collect(),
        )
    } else {
        EventCursor::parse(&text, field).map_err(|e| {
            ApiError::invalid(
                field,
                format!(
                    "{e}; give the id of the last event received, `now`, or nothing for the start"
                ),
            )
        })?
    };
    let permit = state.event_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "too_many_streams",
            format!(
                "this node already serves {MAX_EVENT_STREAMS} event streams; reconnect later with Last-Event-ID"
            ),
        )
    })?;
    let (tx, rx) = mpsc::channel::<Event>(EVENT_BUFFER);
    let region = core.region();
    tokio::spawn(async move {
        let _permit = permit;
        read_on(core, region, cursor, tx).await;
    });
    // The receiver moves through the stream's state: each step waits for one event.
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Reads the logs after `cursor` and sends the events of the records that concern
/// `region` until the client goes away.
async fn read_on(
    core: Arc<Core>,
    region: RegionCode,
    mut cursor: EventCursor,
    tx: mpsc::Sender<Event>,
) {
    loop {
        let c = core.clone();
        let from = cursor.clone();
        let pass = tokio::task::spawn_blocking(move || one_pass(&c, region, from)).await;
        let Ok(Ok((events, after, read))) = pass else {
            // A store error ends the stream; the client reconnects with its cursor.
            return;
        };
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        cursor = after;
        if read == 0 {
            tokio::select! {
                () = tokio::time::sleep(EVENT_POLL) => {}
                () = tx.closed() => return,
            }
        }
    }
}

/// One bounded pass over the logs after `cursor`: the events of the records that
/// concern `region`, the cursor after the pass, and how many records were read.
fn one_pass(
    core: &Core,
    region: RegionCode,
    mut cursor: EventCursor,
) -> Result<(Vec<Event>, EventCursor, usize), crate::store::StoreError> {
    let fed = core.manifest().federation_id.clone();
    let mut events = Vec::new();
    let mut read = 0;
    for (r, head) in core.heads()? {
        let mut at = cursor.at(r);
        while at < head.seq && read < MAX_RECORDS_PER_PASS {
            let page = core.range(r, at + 1, (MAX_RECORDS_PER_PASS - read).min(256), 4 << 20)?;
            if page.is_empty() {
                break;
            }
            for bytes in page {
                at += 1;
                read += 1;
                cursor.0.insert(r, at);
                // Records in the store were admitted: one that no longer decodes is the
                // store's fault, and is skipped here rather than ending every stream.
                let Ok(v) = decode_envelope(&fed, &bytes) else {
                    continue;
                };
                if !core.concerns(region, r, &v.body)? {
                    continue;
                }
                let data = json!({
                    "region": r,
                    "seq": at,
                    "kind": v.body.kind(),
                    "author": v.envelope.author.to_string(),
                    "at": v.envelope.timestamp.0,
                    "body": v.body,
                });
                events.push(
                    Event::default()
                        .id(cursor.format())
                        .event(credfed_protocol::catalogue::snake_name(&v.body.kind()))
                        .data(data.to_string()),
                );
            }
        }
        if read >= MAX_RECORDS_PER_PASS {
            break;
        }
    }
    Ok((events, cursor, read))
}

//! Open data: every region's log as the public may see it (a feed a mirror verifies,
//! `credfed_protocol::open_data`), the witnessed checkpoints and manifest to verify it
//! against, and bulk files of the public entries as they stand (JSON Lines, CSV,
//! FollowTheMoney). Schemas: docs/public.md.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use credfed_protocol::envelope::decode_envelope;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::open_data::{FEED_FORMAT, FeedLine, MAX_FEED_PAGE};
use credfed_protocol::publicity::{
    ENTRY_CSV_COLUMNS, PublicEntry, Withheld, entry_csv_row, ftm_entities, public_entry,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Public;
use crate::engine::Core;

/// Bytes of envelopes one feed page reads at most (besides [`MAX_FEED_PAGE`] lines).
const MAX_FEED_PAGE_BYTES: usize = 8 << 20;
/// Bytes a bulk file's writer hands over at once.
const CHUNK_BYTES: usize = 64 << 10;

fn json_ok(v: &Value) -> Response {
    let mut r = (StatusCode::OK, axum::Json(v.clone())).into_response();
    crate::console::secure_headers(&mut r);
    r
}

fn refused(status: StatusCode, field: &str, message: String) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"code": "invalid", "field": field, "message": message})),
    )
        .into_response();
    crate::console::secure_headers(&mut r);
    r
}

/// What the open data holds, and where.
pub async fn index(state: Public) -> Response {
    let core = &state.api.core;
    let heads = core.heads().unwrap_or_default();
    let regions: Vec<Value> = core
        .manifest()
        .members
        .iter()
        .map(|m| {
            json!({
                "region": m.region,
                "name": m.name,
                "records_held": heads.get(&m.region).map_or(0, |h| h.seq),
                "feed": format!("/open-data/v1/feed/{}?after=0", m.region),
            })
        })
        .collect();
    json_ok(&json!({
        "format": FEED_FORMAT,
        "federation_id": core.manifest().federation_id,
        "manifest_version": core.manifest().version,
        "authority_key": core.manifest().authority_key,
        "served_by": core.region(),
        "manifest": "/open-data/v1/manifest",
        "checkpoints": "/open-data/v1/checkpoints",
        "regions": regions,
        "bulk": {
            "entries_jsonl": "/open-data/v1/entries.jsonl",
            "entries_csv": "/open-data/v1/entries.csv",
            "followthemoney": "/open-data/v1/entities.ftm.json",
        },
        "schema": "docs/public.md of the credfed repository",
        "licence": "public information under 国发〔2016〕33号 articles 八, 十一, 十七; cite the issuing region and authority",
    }))
}

/// The manifest as the authority signed it: a mirror verifies it with the authority key
/// it pins, then the checkpoints and feed lines against it.
pub async fn manifest(state: Public) -> Response {
    match state.api.core.signed_manifest() {
        Some(m) => json_ok(&serde_json::to_value(m).unwrap_or(Value::Null)),
        None => refused(
            StatusCode::NOT_FOUND,
            "manifest",
            "this node was started without a signed manifest".into(),
        ),
    }
}

/// Every region's latest witnessed checkpoint held (C2SP note text), by region.
pub async fn checkpoints(state: Public) -> Response {
    let core = &state.api.core;
    let mut out = serde_json::Map::new();
    for m in &core.manifest().members {
        if let Ok(Some(note)) = core.witnessed_note(m.region) {
            out.insert(m.region.to_string(), Value::String(note));
        }
    }
    json_ok(&Value::Object(out))
}

#[derive(Deserialize, Default)]
pub struct FeedQuery {
    after: Option<u64>,
    limit: Option<u64>,
}

/// The feed line of one envelope, with the readable fields a node adds (`kind`,
/// `record`) for a public record.
pub fn feed_line(core: &Core, region: RegionCode, seq: u64, bytes: &[u8]) -> Value {
    let decoded = decode_envelope(&core.manifest().federation_id, bytes);
    let publicity = match &decoded {
        Ok(v) => core
            .record_publicity(&v.body)
            .unwrap_or(Err(Withheld::Unresolved)),
        Err(_) => Err(Withheld::Unresolved),
    };
    match (publicity, decoded) {
        (Ok(()), Ok(v)) => {
            let mut line = serde_json::to_value(FeedLine::published(region, seq, bytes))
                .unwrap_or(Value::Null);
            line["kind"] = json!(credfed_protocol::catalogue::snake_name(&v.body.kind()));
            line["author"] = json!(v.envelope.author);
            line["timestamp_ms"] = json!(v.envelope.timestamp.0);
            line["record"] = serde_json::to_value(&v.body).unwrap_or(Value::Null);
            line
        }
        (publicity, _) => {
            // An envelope that does not decode here cannot be judged: withheld.
            let why = publicity.err().unwrap_or(Withheld::Unresolved);
            serde_json::to_value(FeedLine::withheld(region, seq, bytes, why)).unwrap_or(Value::Null)
        }
    }
}

/// One page of a region's feed: the positions after `after`, at most `limit`
/// (≤ [`MAX_FEED_PAGE`]), as JSON Lines; `X-Next-After` says where the next page
/// starts, absent once the page reaches the records held.
pub async fn region_feed(
    state: Public,
    Path(region): Path<String>,
    Query(q): Query<FeedQuery>,
) -> Response {
    let core = state.api.core.clone();
    let Ok(region) = RegionCode::parse(&region, "region") else {
        return refused(
            StatusCode::NOT_FOUND,
            "region",
            format!(
                "region: '{}' is not a member region code (see /open-data/v1/)",
                region.chars().take(12).collect::<String>()
            ),
        );
    };
    if !core.manifest().members.iter().any(|m| m.region == region) {
        return refused(
            StatusCode::NOT_FOUND,
            "region",
            format!("region: {region} is not a member of the federation (see /open-data/v1/)"),
        );
    }
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(MAX_FEED_PAGE);
    if limit == 0 || limit > MAX_FEED_PAGE {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
            format!("limit: between 1 and {MAX_FEED_PAGE}"),
        );
    }
    let held = core
        .heads()
        .ok()
        .and_then(|h| h.get(&region).map(|h| h.seq))
        .unwrap_or(0);
    let c = core.clone();
    let page = tokio::task::spawn_blocking(move || {
        let envelopes = c.range(region, after + 1, limit as usize, MAX_FEED_PAGE_BYTES)?;
        let mut out = String::new();
        let mut last = after;
        for (i, bytes) in envelopes.iter().enumerate() {
            let seq = after + 1 + i as u64;
            out.push_str(&feed_line(&c, region, seq, bytes).to_string());
            out.push('\n');
            last = seq;
        }
        Ok::<_, crate::store::StoreError>((out, last))
    })
    .await;
    let (text, last) = match page {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                format!("{e}; try again later"),
            );
        }
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, "feed", e.to_string()),
    };
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")],
        text,
    )
        .into_response();
    if last < held
        && let Ok(v) = HeaderValue::from_str(&last.to_string())
    {
        r.headers_mut().insert("x-next-after", v);
    }
    if let Ok(v) = HeaderValue::from_str(FEED_FORMAT) {
        r.headers_mut().insert("x-feed-format", v);
    }
    r
}

/// Streams a bulk file built from every public entry: `head` first, then one piece of
/// text per entry, in chunks, from a blocking thread (the store is read as the client
/// reads, never held whole in memory).
fn bulk(
    core: std::sync::Arc<Core>,
    content_type: &'static str,
    head: String,
    render: fn(&PublicEntry, &mut String),
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        let now = core.now();
        let mut buf = head;
        for fold in core.entries() {
            let Ok(fold) = fold else {
                // A store error ends the file early; the client sees a short file and
                // the missing final line break.
                return;
            };
            if let Some(e) = public_entry(&fold, now) {
                render(&e, &mut buf);
            }
            if buf.len() >= CHUNK_BYTES
                && tx
                    .blocking_send(Bytes::from(std::mem::take(&mut buf)))
                    .is_err()
            {
                return;
            }
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(Bytes::from(buf));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Every public entry as it stands, one JSON object per line.
pub async fn entries_jsonl(state: Public) -> Response {
    bulk(
        state.api.core.clone(),
        "application/x-ndjson; charset=utf-8",
        String::new(),
        |e, buf| {
            buf.push_str(&serde_json::to_string(e).unwrap_or_default());
            buf.push('\n');
        },
    )
}

/// Every public entry as it stands, as CSV (RFC 4180, UTF-8 with a byte-order mark so
/// that spreadsheets read the Chinese text).
pub async fn entries_csv(state: Public) -> Response {
    bulk(
        state.api.core.clone(),
        "text/csv; charset=utf-8",
        format!("\u{feff}{}\r\n", ENTRY_CSV_COLUMNS.join(",")),
        |e, buf| {
            buf.push_str(&entry_csv_row(e));
            buf.push_str("\r\n");
        },
    )
}

/// The black-list entries as FollowTheMoney entities, one per line.
pub async fn entities_ftm(state: Public) -> Response {
    bulk(
        state.api.core.clone(),
        "application/x-ndjson; charset=utf-8",
        String::new(),
        |e, buf| {
            for entity in ftm_entities(e) {
                buf.push_str(&serde_json::to_string(&entity).unwrap_or_default());
                buf.push('\n');
            }
        },
    )
}

//! Every API error is an [`ApiError`]: a status and the `{code, field, message}` body
//! (`credfed_client::ErrorBody`), built by the helpers below — the framework's own
//! rejections (bad JSON, bad query, unknown route, wrong method) included, through
//! [`ApiJson`], [`ApiQuery`], [`ApiPath`] and the router's fallbacks.

use std::fmt::Display;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use credfed_client::ErrorBody;
use credfed_protocol::ledger::{RejectReason, Rejection};
use serde::de::DeserializeOwned;

use crate::engine::AppendError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, field: Option<&str>, message: impl Display) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.into(),
                field: field.map(str::to_owned),
                message: message.to_string(),
            },
        }
    }

    /// An error with any status.
    pub(crate) fn with_status(status: StatusCode, code: &str, message: impl Display) -> ApiError {
        Self::new(status, code, None, message)
    }

    /// An error with any status, naming the field at fault.
    pub(crate) fn with_status_field(
        status: StatusCode,
        code: &str,
        field: &str,
        message: impl Display,
    ) -> ApiError {
        Self::new(status, code, Some(field), message)
    }

    /// 400: `field` breaks a rule the message names.
    pub fn invalid(field: &str, message: impl Display) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid", Some(field), message)
    }

    /// 400 without a single field at fault.
    pub fn bad_request(code: &str, message: impl Display) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, code, None, message)
    }

    /// 401: the caller is not known.
    pub fn unauthorized(code: &str, message: impl Display) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, code, None, message)
    }

    /// 403: known, but not allowed.
    pub fn forbidden(code: &str, message: impl Display) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, code, None, message)
    }

    /// 404: nothing at this id in this node's replica.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!("no {what} {id} in this node's replica (it may not have replicated yet)"),
        )
    }

    /// 413: `field` is larger than its limit.
    pub fn too_large(field: &str, message: impl Display) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Some(field),
            message,
        )
    }

    /// 503: the node cannot serve this now; the message says when to retry.
    pub fn unavailable(code: &str, message: impl Display) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, None, message)
    }

    /// 503 for a store that failed a read.
    pub fn store(e: StoreError) -> ApiError {
        Self::unavailable(
            "store_unavailable",
            format!("{e}; the node's store could not be read, retry later or ask the operator"),
        )
    }

    /// 500: a bug; the message says what failed.
    pub fn internal(message: impl Display) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine code.
    pub fn code(&self) -> &str {
        &self.body.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.body.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::store(e)
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        let (status, code) = match r.reason {
            // The request had the documented shape; the record bytes it carries break a
            // rule of the protocol (`input` explains 400 against 422).
            RejectReason::Malformed => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            RejectReason::UnknownAuthor => (StatusCode::UNAUTHORIZED, "unknown_department"),
            RejectReason::BadAuthorSignature => (StatusCode::UNAUTHORIZED, "bad_signature"),
            RejectReason::AuthorRevoked => (StatusCode::FORBIDDEN, "department_revoked"),
            RejectReason::Unauthorised => (StatusCode::FORBIDDEN, "not_allowed"),
            RejectReason::Conflict => (StatusCode::CONFLICT, "conflict"),
            RejectReason::NotApplicable => (StatusCode::UNPROCESSABLE_ENTITY, "not_applicable"),
            // The node sealed the envelope itself: these would be bugs.
            RejectReason::NotMember
            | RejectReason::BadNodeSignature
            | RejectReason::ChainBroken => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, Some(&r.field), r.message)
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        match e {
            AppendError::Rejected(r) => r.into(),
            AppendError::Store(e) => ApiError::unavailable(
                "cannot_persist",
                format!("{e}; the record was not acknowledged, retry later"),
            ),
            // Every reason says what the node waits for and what would end it: a
            // generic "retry in a few seconds" misled when no member was reachable.
            AppendError::Gated(why) => ApiError::unavailable("writes_paused", why),
            AppendError::Busy(why) => ApiError::unavailable("busy", why),
            AppendError::Stopped => ApiError::unavailable(
                "shutting_down",
                "the node is shutting down; retry when it is back",
            ),
        }
    }
}

/// A JSON body whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// The parser's message with every run of 15 or more digits (or `X`, a resident
/// identity number's check character) replaced: a parser quotes the value it could not
/// read, and a person's number sent with the wrong JSON type must not come back in an
/// error body, which clients and proxies log (docs/privacy.md).
fn withhold_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == 'X' || **c == 'x')
            .count();
        if run >= 15 && chars[i].is_ascii_digit() {
            out.push_str("[number withheld]");
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn json_rejection(r: JsonRejection) -> ApiError {
    // A body that is not the documented JSON is 400 (axum says 422 for wrong fields;
    // here 422 means a well-formed request that breaks a rule).
    let (status, code, hint) = match &r {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not valid JSON",
        ),
        JsonRejection::JsonDataError(_) => (
            StatusCode::BAD_REQUEST,
            "invalid",
            "the JSON does not have the fields the API documents (see /v1/openapi.json)",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "invalid",
            "the body could not be read",
        ),
    };
    ApiError::new(
        status,
        code,
        Some("body"),
        format!("body: {hint}: {}", withhold_numbers(&r.body_text())),
    )
}

/// A query string whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("query"),
        format!("query: {}", withhold_numbers(&r.body_text())),
    )
}

/// Path parameters whose rejections are [`ApiError`]s.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("path"),
        format!("path: {}", r.body_text()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person's number sent as a JSON number is refused without being quoted back.
    #[tokio::test]
    async fn a_refused_body_never_quotes_a_persons_number() {
        use axum::extract::FromRequest;
        #[derive(Debug, serde::Deserialize)]
        struct Persons {
            #[allow(dead_code)]
            number: String,
        }
        for body in [
            r#"{"number": 110105194912310021}"#,
            r#"{"number": ["11010519491231002X"], "x": 1}"#,
        ] {
            let req = axum::http::Request::post("/")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let Err(e) = ApiJson::<Persons>::from_request(req, &()).await else {
                panic!("{body} was taken");
            };
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(!e.message().contains("1101051949123100"), "{}", e.message());
        }
        assert_eq!(
            withhold_numbers("integer `110105194912310021`, expected a string"),
            "integer `[number withheld]`, expected a string"
        );
        assert_eq!(withhold_numbers("line 1 column 34"), "line 1 column 34");
    }

    /// Fail closed: a store that cannot persist answers 503 and says nothing was
    /// acknowledged; paused writes say so.
    #[test]
    fn persistence_failure_is_503() {
        let e = ApiError::from(AppendError::Store(StoreError::Io(std::io::Error::other(
            "disk full",
        ))));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message().contains("not acknowledged"), "{}", e.message());
        let e = ApiError::from(AppendError::Gated("waiting".into()));
        assert_eq!((e.status().as_u16(), e.code()), (503, "writes_paused"));
    }

    /// A rejection's field travels as it is, not parsed from the message.
    #[test]
    fn rejection_field_is_kept() {
        let r = Rejection::new(RejectReason::Conflict, "entry.basis", "already published");
        let e = ApiError::from(r);
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.body.field.as_deref(), Some("entry.basis"));
    }
}

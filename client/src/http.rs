//! [`ApiClient`]: HTTPS with mutual TLS to one node, connections kept alive and reused.
//!
//! Why a pool of kept-alive connections: a new TLS connection per request cost a check
//! about 47 ms at p90 against 0.5 ms on a kept-alive one (handshake, plus Nagle's
//! algorithm meeting delayed acknowledgements on the small writes of a fresh
//! connection). Every connection sets `TCP_NODELAY`.
//!
//! Why a bounded pool: a bulk import of 256 concurrent rows must not open 256
//! connections to a node that limits connections per client; requests beyond
//! [`DEFAULT_MAX_CONNECTIONS`] wait for a free connection within their own deadline.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::types::{ErrorBody, HeadInfo, NodeStatus, Receipt, SubmitRecord};

/// Largest response read: a log page or a check answer with its evidence stays far
/// below; anything larger is a broken or hostile server.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Deadline for one request, waiting for a connection, connecting and the TLS
/// handshake included: a lost response must not hang the caller.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections one client keeps open to its node at most.
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;

/// Why a request got no usable answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No TCP connection could be made.
    #[error(
        "cannot reach the node at {addr} ({detail}); is it running? Start it with `credfed-node run --config <data-dir>/config.toml`, or check the address"
    )]
    Unreachable {
        /// Address tried.
        addr: String,
        /// What the operating system said.
        detail: String,
    },
    /// The TLS handshake failed.
    #[error(
        "TLS handshake with the node at {addr} failed ({detail}); check that the CA file is the node's api-ca.pem and that the client certificate was issued by this node. A connection closed at once may also mean the node refused it: it limits open connections per client address (api_max_connections_per_client)"
    )]
    Tls {
        /// Address tried.
        addr: String,
        /// What rustls said.
        detail: String,
    },
    /// No complete answer within the deadline.
    #[error(
        "{method} {path} at {addr}: no response within {after:?}; the node may be overloaded, retry"
    )]
    Timeout {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Address.
        addr: String,
        /// The deadline.
        after: Duration,
    },
    /// The node answered with an error status.
    #[error("the node at {addr} refused ({status}): {error}")]
    Refused {
        /// Address.
        addr: String,
        /// HTTP status.
        status: u16,
        /// The node's error body.
        error: ErrorBody,
    },
    /// The exchange broke off or the answer is not what the API promises.
    #[error("{0}")]
    Protocol(String),
    /// A certificate or key file is missing or unreadable.
    #[error("{0}")]
    Config(String),
}

/// A response: status and body text.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl ApiResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_str(&self.body).map_err(|e| {
            ClientError::Protocol(format!(
                "response is not JSON ({e}): {}",
                self.body.chars().take(200).collect::<String>()
            ))
        })
    }

    /// The error body of an error response, or a stand-in when the body is not one.
    pub fn error(&self) -> ErrorBody {
        serde_json::from_str(&self.body).unwrap_or_else(|_| ErrorBody {
            code: "unknown".into(),
            field: None,
            message: self.body.chars().take(500).collect(),
        })
    }
}

struct Pool {
    addr: String,
    host: String,
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    slots: Semaphore,
}

/// A client for one node. Cloning shares the connections.
#[derive(Clone)]
pub struct ApiClient {
    pool: Arc<Pool>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("addr", &self.pool.addr)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("reading {what} {}: {e}", path.display())))
}

impl ApiClient {
    /// A client for `addr` (host:port) trusting the CA in `ca_pem_file`, without a
    /// client certificate (only the node's public endpoints will answer).
    pub fn new(addr: &str, ca_pem_file: &Path) -> Result<ApiClient, ClientError> {
        Self::build(addr, ca_pem_file, None, DEFAULT_MAX_CONNECTIONS)
    }

    /// A client presenting the certificate and key a node issued to a department.
    pub fn with_identity(
        addr: &str,
        ca_pem_file: &Path,
        cert_pem_file: &Path,
        key_pem_file: &Path,
    ) -> Result<ApiClient, ClientError> {
        Self::build(
            addr,
            ca_pem_file,
            Some((cert_pem_file, key_pem_file)),
            DEFAULT_MAX_CONNECTIONS,
        )
    }

    /// The same client with its own pool of at most `n` connections (benchmarks use one
    /// connection per concurrent writer).
    pub fn with_max_connections(self, n: usize) -> ApiClient {
        let p = &self.pool;
        ApiClient {
            pool: Arc::new(Pool {
                addr: p.addr.clone(),
                host: p.host.clone(),
                server_name: p.server_name.clone(),
                tls: p.tls.clone(),
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(n.max(1)),
            }),
            timeout: self.timeout,
        }
    }

    fn build(
        addr: &str,
        ca_pem_file: &Path,
        identity: Option<(&Path, &Path)>,
        max_connections: usize,
    ) -> Result<ApiClient, ClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        // Both rustls providers may be linked into a binary; pick one explicitly.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pem = read(ca_pem_file, "CA certificate")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                ClientError::Config(format!(
                    "{}: not a PEM certificate: {e}",
                    ca_pem_file.display()
                ))
            })?;
            roots.add(cert).map_err(|e| {
                ClientError::Config(format!(
                    "{}: unusable CA certificate: {e}",
                    ca_pem_file.display()
                ))
            })?;
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let cert_pem = read(cert, "client certificate")?;
                let certs = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        ClientError::Config(format!(
                            "{}: not a PEM certificate: {e}",
                            cert.display()
                        ))
                    })?;
                let key_pem = read(key, "client key")?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    ClientError::Config(format!("{}: not a PEM private key: {e}", key.display()))
                })?;
                builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                    ClientError::Config(format!(
                        "{} and {} do not form a client identity: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // The node's certificate names its IP address (and localhost): verify an IP
        // as an IP, a name as a name.
        let server_name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone())
                .map_err(|e| ClientError::Config(format!("{addr}: not a host name: {e}")))?,
        };
        Ok(ApiClient {
            pool: Arc::new(Pool {
                addr: addr.to_owned(),
                host,
                server_name,
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(max_connections.max(1)),
            }),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client with another per-request deadline (pollers use a short one, so
    /// a stalled connection costs little). The connections are shared.
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// The node address.
    pub fn addr(&self) -> &str {
        &self.pool.addr
    }

    /// GET a path; any status is an answer.
    pub async fn get(&self, path: &str) -> Result<ApiResponse, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// POST JSON to a path; any status is an answer.
    pub async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<ApiResponse, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ClientError::Protocol(format!("request body: {e}")))?;
        self.request(Method::POST, path, Some(bytes)).await
    }

    /// GET a path and decode a success; an error status is [`ClientError::Refused`].
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.decode(self.get(path).await?)
    }

    /// POST JSON and decode a success; an error status is [`ClientError::Refused`].
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.decode(self.post(path, body).await?)
    }

    /// Submits a signed record; the receipt comes only once it is on disk.
    pub async fn submit(&self, record: &SubmitRecord) -> Result<Receipt, ClientError> {
        self.post_json("/v1/records", record).await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.get_json("/v1/status").await
    }

    /// Every region's head held by the node.
    pub async fn heads(&self) -> Result<BTreeMap<String, HeadInfo>, ClientError> {
        self.get_json("/v1/heads").await
    }

    fn decode<T: DeserializeOwned>(&self, r: ApiResponse) -> Result<T, ClientError> {
        if r.status >= 400 {
            return Err(ClientError::Refused {
                addr: self.pool.addr.clone(),
                status: r.status,
                error: r.error(),
            });
        }
        serde_json::from_str(&r.body).map_err(|e| {
            ClientError::Protocol(format!(
                "unexpected answer from {} ({e}): {}",
                self.pool.addr,
                r.body.chars().take(200).collect::<String>()
            ))
        })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, ClientError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(method.clone(), path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                method: method.to_string(),
                path: path.to_owned(),
                addr: self.pool.addr.clone(),
                after: timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, ClientError> {
        let pool = &self.pool;
        let _slot = pool
            .slots
            .acquire()
            .await
            .map_err(|_| ClientError::Protocol("client closed".into()))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, pool.host.as_str());
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(format!("request {path}: {e}")))?;
        // A kept-alive connection the node has closed meanwhile hands the request back
        // unsent: try the next one, then a fresh connection. A request that was sent is
        // never sent twice.
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return self.finish(sender, response).await,
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        return Err(ClientError::Protocol(format!(
                            "{path} at {}: connection broke off: {}",
                            pool.addr,
                            e.into_error()
                        )));
                    }
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fresh_connection_broke_off(path, &pool.addr, &e))?;
        self.finish(sender, response).await
    }

    async fn finish(
        &self,
        sender: SendRequest<Full<Bytes>>,
        response: Response<Incoming>,
    ) -> Result<ApiResponse, ClientError> {
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                ClientError::Protocol(format!("reading the answer of {}: {e}", self.pool.addr))
            })?
            .to_bytes();
        // The whole body is read: the connection is ready for the next request.
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(sender);
        }
        // Answers are UTF-8 JSON: the checked conversion (an ASCII fast path) first; the
        // lossy one, a character at a time, only for a body that is not.
        let body = String::from_utf8(body.to_vec())
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(ApiResponse { status, body })
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.pool.idle.lock().ok()?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// A TLS connection to the node with this client's identity: what the pool's
    /// connections are made of, and, outside the pool, for tools that speak HTTP
    /// themselves (tests of slow and hostile clients).
    pub async fn connect_tls(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ClientError> {
        let pool = &self.pool;
        let unreachable = |e: std::io::Error| ClientError::Unreachable {
            addr: pool.addr.clone(),
            detail: e.to_string(),
        };
        let tcp = tokio::net::TcpStream::connect(&pool.addr)
            .await
            .map_err(unreachable)?;
        // Requests and answers are small writes: without this, Nagle's algorithm holds
        // them for the peer's delayed acknowledgement (≈ 40 ms).
        tcp.set_nodelay(true).map_err(unreachable)?;
        pool.tls
            .connect(pool.server_name.clone(), tcp)
            .await
            .map_err(|e| ClientError::Tls {
                addr: pool.addr.clone(),
                detail: e.to_string(),
            })
    }

    /// Follows the node's event stream (`GET /v1/events`) from `from` (an event id, or
    /// `now`; `None` for the start of every log) on a connection of its own, calling
    /// `on_event` for each event until it returns `false` or the node ends the stream.
    /// Each event is bounded by [`MAX_EVENT_BYTES`]; waiting for the first byte of the
    /// answer has the request deadline, the stream itself none.
    pub async fn follow_events(
        &self,
        from: Option<&str>,
        mut on_event: impl FnMut(StreamEvent) -> bool,
    ) -> Result<(), ClientError> {
        let pool = &self.pool;
        let mut sender = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| ClientError::Timeout {
                method: "GET".into(),
                path: "/v1/events".into(),
                addr: pool.addr.clone(),
                after: self.timeout,
            })??;
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri("/v1/events")
            .header(hyper::header::HOST, pool.host.as_str())
            .header(hyper::header::ACCEPT, "text/event-stream");
        if let Some(f) = from {
            builder = builder.header("last-event-id", f);
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Protocol(format!("request /v1/events: {e}")))?;
        let response = tokio::time::timeout(self.timeout, sender.send_request(request))
            .await
            .map_err(|_| ClientError::Timeout {
                method: "GET".into(),
                path: "/v1/events".into(),
                addr: pool.addr.clone(),
                after: self.timeout,
            })?
            .map_err(|e| {
                ClientError::Protocol(format!(
                    "/v1/events at {}: connection broke off: {e}",
                    pool.addr
                ))
            })?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if status != 200 {
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let r = ApiResponse {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            };
            return Err(ClientError::Refused {
                addr: pool.addr.clone(),
                status,
                error: r.error(),
            });
        }
        let mut parser = EventParser::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ClientError::Protocol(format!("reading events from {}: {e}", pool.addr))
            })?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            for event in parser.feed(data).map_err(ClientError::Protocol)? {
                if !on_event(event) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let pool = &self.pool;
        let tls = self.connect_tls().await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Protocol(format!("HTTP with {}: {e}", pool.addr)))?;
        tokio::spawn(async move {
            // Ends when the node or this client closes the connection.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Largest event of a stream read: a record's body is far smaller.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEvent {
    /// Its id: the cursor to resume after it.
    pub id: String,
    /// Its type (the record kind).
    pub event: String,
    /// Its data (JSON).
    pub data: String,
}

/// Splits a byte stream into Server-Sent Events (fields `id`, `event`, `data`; comment
/// lines ignored), bounding what it holds.
#[derive(Debug, Default)]
pub struct EventParser {
    line: Vec<u8>,
    current: StreamEvent,
    held: usize,
}

impl EventParser {
    /// The events completed by `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                self.held += 1;
                if self.held > MAX_EVENT_BYTES {
                    return Err(format!(
                        "an event of more than {MAX_EVENT_BYTES} bytes: not a credfed node's stream"
                    ));
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.current.data.is_empty() || !self.current.id.is_empty() {
                    out.push(std::mem::take(&mut self.current));
                }
                self.held = 0;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.to_owned(),
                "event" => self.current.event = value.to_owned(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A request on a connection just made broke off before its answer. With TLS 1.3 the
/// node checks a client certificate after the handshake, so a certificate it did not
/// issue (another node's, or one whose fingerprint was deleted) shows here, as an alert
/// in the error's chain: the message says so and what to check.
fn fresh_connection_broke_off(path: &str, addr: &str, e: &hyper::Error) -> ClientError {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let hint = if lower.contains("alert") || lower.contains("certificate") {
        "; the node refused the client certificate: use the one this node issued to your department (credfed-node issue-client-cert on this node), with --cert/--cert-key or CREDFED_CERT/CREDFED_CERT_KEY"
    } else {
        // The alert may close the connection before the request is even sent, and then
        // only "not ready" or "canceled" is left of it.
        "; the node closed a new connection before answering: if it refused the client certificate, use the one this node issued to your department (credfed-node issue-client-cert on this node), with --cert/--cert-key or CREDFED_CERT/CREDFED_CERT_KEY"
    };
    ClientError::Protocol(format!(
        "{path} at {addr}: connection broke off: {chain}{hint}"
    ))
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn events_split_across_frames_are_reassembled_and_oversized_ones_refused() {
        let mut p = EventParser::default();
        assert!(
            p.feed(b": keep-alive\n\nid: 310000:3\nevent: list_entry_pub")
                .unwrap()
                .is_empty()
        );
        let got = p.feed(b"lished\ndata: {\"a\":1}\n\n").unwrap();
        assert_eq!(
            got,
            [StreamEvent {
                id: "310000:3".into(),
                event: "list_entry_published".into(),
                data: "{\"a\":1}".into()
            }]
        );
        let mut p = EventParser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(p.feed(&big).is_err());
    }
}

//! The HTTPS server: accepts TCP, runs the TLS handshake, serves HTTP/1.1 with the
//! router, and bounds what every stage may cost.
//!
//! Why its own loop rather than a ready-made server: every stage of a connection needs
//! a time limit and the client needs a connection budget, so that a slow or hostile
//! client costs only its own connections (the limits and their defaults are in
//! docs/operator.md):
//!
//! | stage | limit |
//! |---|---|
//! | connections per client address | `api_max_connections_per_client` (refused at accept) |
//! | connections in all | `api_max_connections` |
//! | TLS handshake | `api_handshake_timeout_ms` |
//! | request head, and idle keep-alive between requests | `api_request_head_timeout_ms` (hyper's header timer runs while a connection waits for a head) |
//! | request body | `api_request_body_timeout_ms` (the body is read in full before the request takes one of the `api_max_concurrency` slots) |
//!
//! HTTP/2 is not offered: its connections have no idle limit in hyper, and every client
//! of the node speaks HTTP/1.1.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::Service;

use crate::metrics::Metrics;

/// Time and count limits of the API server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// TLS handshake.
    pub handshake: Duration,
    /// Request head (and the wait for one on a kept-alive connection).
    pub request_head: Duration,
    /// Request body.
    pub request_body: Duration,
    /// Open connections per client IP address.
    pub per_client: usize,
    /// Open connections in all.
    pub total: usize,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
    /// Which listener this is: its refusals are counted apart.
    pub listener: Listener,
}

/// The node's HTTPS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The department API and console (`api_listen`).
    Api,
    /// The public side (`public_listen`, docs/public.md).
    Public,
}

/// The client certificate of a request's connection, if it presented one.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<CertificateDer<'static>>);

/// The client's address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Open connections per client address; a slot frees itself when dropped.
#[derive(Clone, Default)]
struct ClientSlots(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct ClientSlot {
    slots: ClientSlots,
    ip: IpAddr,
}

impl ClientSlots {
    fn take(&self, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut map = self.0.lock().ok()?;
        let n = map.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.slots.0.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then waits up to
/// `limits.drain` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let clients = ClientSlots::default();
    let total = Arc::new(Semaphore::new(limits.total));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a reset before accept: keep serving.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let refused = match limits.listener {
            Listener::Api => &metrics.api_connections_refused,
            Listener::Public => &metrics.public_connections_refused,
        };
        let Some(slot) = clients.take(addr.ip(), limits.per_client) else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // Answers are small writes: without this, Nagle's algorithm holds them for the
        // client's delayed acknowledgement (≈ 40 ms).
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slots = (slot, permit);
            let stream = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "API TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "API TLS handshake timed out");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(PeerCertificate(cert.clone()));
                    req.extensions_mut().insert(ClientAddr(addr));
                    let mut app = app.clone();
                    async move { app.call(req.map(axum::body::Body::new)).await }
                },
            );
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.request_head)
                .keep_alive(true);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%addr, error = %e, "API connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain) => {
            tracing::warn!("API requests still in flight after {:?}; closing", limits.drain);
        }
    }
}

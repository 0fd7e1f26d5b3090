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
//! | TLS handshakes in progress | `api_max_handshakes`, and `api_max_connections_per_network` per network (a /24 or /48) |
//! | connections without a client certificate | `api_max_anonymous_connections`, and `api_max_connections_per_network` per network |
//! | connections with a client certificate | `api_max_connections`, and `api_max_connections_per_certificate` for one certificate |
//! | TLS handshake | `api_handshake_timeout_ms` |
//! | request head, and idle keep-alive between requests | `api_request_head_timeout_ms` (hyper's header timer runs while a connection waits for a head) |
//! | request body | `api_request_body_timeout_ms` (the body is read in full before the request takes one of the `api_max_concurrency` slots) |
//!
//! Why pools: before its handshake ends a connection is anyone's, so handshakes and
//! connections without a certificate are budgeted per network and in all, apart from
//! those of certified clients (departments, the operator): a flood of half-open or
//! half-sent connections from many addresses fills the anonymous pools, never the one
//! departments are served from. What this does not provide: a flood of slow handshakes
//! from more networks than `api_max_handshakes` ÷ `api_max_connections_per_network` can
//! still delay new connections for the handshake deadline (docs/operator.md, "Security
//! notes").
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
    /// Open connections with a client certificate, in all.
    pub total: usize,
    /// TLS handshakes in progress, in all.
    pub handshakes: usize,
    /// Open connections without a client certificate, in all.
    pub anonymous: usize,
    /// Handshakes and connections without a certificate per network (/24, /48).
    pub per_network: usize,
    /// Open connections with one client certificate.
    pub per_certificate: usize,
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

/// Open connections per key (a client address, a network, a certificate); a slot frees
/// itself when dropped.
#[derive(Clone)]
struct Slots<K: std::hash::Hash + Eq + Clone>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: std::hash::Hash + Eq + Clone> Default for Slots<K> {
    fn default() -> Self {
        Slots(Arc::new(Mutex::new(HashMap::new())))
    }
}

struct Slot<K: std::hash::Hash + Eq + Clone> {
    slots: Slots<K>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> Slots<K> {
    fn take(&self, key: K, limit: usize) -> Option<Slot<K>> {
        let mut map = self.0.lock().ok()?;
        let n = map.entry(key.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            key,
        })
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.slots.0.lock()
            && let Some(n) = map.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The network an address belongs to for the per-network budget: its /24 (IPv4) or
/// /48 (IPv6, an IPv4-mapped address as IPv4), the usual size of one site's block.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let mut octets = v6.octets();
                octets[6..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(octets))
            }
        },
    }
}

/// What an established connection holds of the budgets until it closes.
#[allow(dead_code)] // held for their Drop
enum Budget {
    Certified(Slot<[u8; 32]>, tokio::sync::OwnedSemaphorePermit),
    Anonymous(Slot<IpAddr>, tokio::sync::OwnedSemaphorePermit),
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
    let clients: Slots<IpAddr> = Slots::default();
    // Handshakes in progress and connections without a certificate are counted apart:
    // a client opening its pool of connections at once (the CLI keeps 32) handshakes
    // them all together.
    let handshaking: Slots<IpAddr> = Slots::default();
    let networks: Slots<IpAddr> = Slots::default();
    let certificates: Slots<[u8; 32]> = Slots::default();
    let handshakes = Arc::new(Semaphore::new(limits.handshakes));
    let anonymous = Arc::new(Semaphore::new(limits.anonymous));
    let certified = Arc::new(Semaphore::new(limits.total));
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
        let Some(handshaking_slot) = handshaking.take(network_of(addr.ip()), limits.per_network)
        else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (anonymous, certified, certificates, networks) = (
            anonymous.clone(),
            certified.clone(),
            certificates.clone(),
            networks.clone(),
        );
        let metrics = metrics.clone();
        // Answers are small writes: without this, Nagle's algorithm holds them for the
        // client's delayed acknowledgement (≈ 40 ms).
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
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
            drop((handshake, handshaking_slot));
            let refused = match limits.listener {
                Listener::Api => &metrics.api_connections_refused,
                Listener::Public => &metrics.public_connections_refused,
            };
            // A certificate the node's CA signed moves the connection to the certified
            // pool (whether its department is registered is checked per request);
            // without one it stays in the anonymous pools.
            let _budget = match &cert {
                Some(der) => {
                    let key = credfed_protocol::crypto::sha256(&[der.as_ref()]).0;
                    match (
                        certificates.take(key, limits.per_certificate),
                        certified.try_acquire_owned(),
                    ) {
                        (Some(one), Ok(permit)) => Budget::Certified(one, permit),
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
                None => match (
                    networks.take(network_of(addr.ip()), limits.per_network),
                    anonymous.try_acquire_owned(),
                ) {
                    (Some(network), Ok(permit)) => Budget::Anonymous(network, permit),
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_48_and_mapped_addresses_count_as_ipv4() {
        let n = |s: &str| network_of(s.parse().unwrap()).to_string();
        assert_eq!(n("203.0.113.77"), "203.0.113.0");
        assert_eq!(n("203.0.114.77"), "203.0.114.0");
        assert_eq!(n("::ffff:203.0.113.77"), "203.0.113.0");
        assert_eq!(n("2001:db8:1:2:3::9"), "2001:db8:1::");
    }

    #[test]
    fn a_slot_is_given_back_when_dropped_and_a_full_key_refuses() {
        let slots: Slots<u8> = Slots::default();
        let a = slots.take(1, 2).unwrap();
        let _b = slots.take(1, 2).unwrap();
        assert!(slots.take(1, 2).is_none());
        assert!(slots.take(2, 2).is_some(), "another key has its own budget");
        drop(a);
        assert!(slots.take(1, 2).is_some());
    }
}

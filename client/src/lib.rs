//! credfed-client: the node's HTTPS/JSON API as one contract shared by the node (which
//! serves these types), the `credfed` CLI, the testnet and the tests.
//!
//! [`types`] (requests, responses and the error body) · [`http`] ([`ApiClient`]: mutual
//! TLS, kept-alive connections, a deadline per request) · [`keys`] (key files and peer
//! ids).
//!
//! **Architecture invariant:** this crate links neither libp2p, nor sled, nor axum: a
//! department's tools must not carry the node's networking and storage.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod http;
pub mod keys;
pub mod node_config;
pub mod types;

pub use http::{ApiClient, ApiResponse, ClientError, StreamEvent};
pub use types::*;

/// `text` as a URL query value: RFC 3986's unreserved characters as they are, every
/// other byte of its UTF-8 as `%XX` (a name in Chinese goes in a query this way).
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

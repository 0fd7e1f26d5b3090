//! credfed-node: a provincial node of a credfed federation.
//!
//! [`engine`] (the one writer: admission, group commit; reads) · [`store`] (sled,
//! durable; a fault-injecting wrapper) · [`replication`] (anti-entropy state machine) ·
//! [`wire`] (pull protocol) · [`p2p`] (libp2p event loop) · [`api`] (HTTPS/JSON, audit,
//! server limits) · [`daemon`] (start and stop a node) · [`config`] · [`metrics`].
//! docs/architecture.md is the map.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admission;
pub mod api;
pub mod backup;
pub mod ceremonies;
pub mod config;
pub mod console;
pub mod daemon;
pub mod engine;
pub mod metrics;
pub mod p2p;
pub mod person_keys;
pub mod public;
pub mod replication;
pub mod store;
pub mod wire;
pub mod witnessing;

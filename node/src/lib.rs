//! credfed-node: a provincial node of a credfed federation.
//!
//! [`store`] (sled, durable) · [`core`] (admission and appends with the protocol's rules)
//! · [`replication`] (anti-entropy state machine) · [`wire`] (pull protocol) · [`p2p`]
//! (libp2p glue) · [`api`] (HTTPS/JSON) · [`config`] · [`metrics`].

pub mod api;
pub mod client;
pub mod config;
pub mod core;
pub mod metrics;
pub mod p2p;
pub mod replication;
pub mod store;
pub mod wire;

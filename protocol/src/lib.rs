//! credfed-protocol: the contract every credfed node, the CLI and the tests share.
//!
//! Identifiers, record types, the canonical encoding, signatures, the federation
//! manifest and the state rules of 国发〔2016〕33号 as pure functions. This crate does no
//! I/O: no network, no disk, no clock (callers pass `now`), no randomness (callers pass
//! key seeds), so that every rule can be tested exhaustively and the same rules run in
//! the node, the CLI's offline verifier and the tests.
//!
//! Map: [`codec`] (bytes) → [`crypto`] (tags, keys, signatures) → [`ids`], [`record`],
//! [`envelope`], [`manifest`] (wire types) → [`catalogue`], [`calendar`] (policy data) →
//! [`ledger`] (validation and authorisation of envelopes against state) → [`state`]
//! (folds: entry, action) → [`check`] (应查必查 answers and their offline verification).

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod calendar;
pub mod catalogue;
pub mod check;
pub mod checkpoint;
pub mod codec;
pub mod console;
pub mod crypto;
pub mod envelope;
pub mod events;
pub mod federation;
pub mod gossip;
pub mod ids;
pub mod inbox;
pub mod ledger;
pub mod limits;
pub mod listing;
pub mod manifest;
pub mod map;
pub mod measures_doc;
pub mod merkle;
pub mod open_data;
pub mod oprf;
pub mod publicity;
pub mod record;
pub mod report;
pub mod state;
pub mod time;
pub mod witness;

/// The protocol version this build speaks. Part of every signing tag and envelope.
pub const PROTOCOL_VERSION: u16 = 2;

//! Integration tests: several real credfed-node processes on loopback.

mod browser;
#[path = "../../benches/common/mod.rs"]
mod chain;
mod cluster;
mod console;
mod deploy;
mod engine;
mod events;
mod hardening;
mod harness;
mod inbox;
mod openapi;
mod person_keys;
mod proven;
mod public;
mod public_load;
mod ranges;

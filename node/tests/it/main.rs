//! Integration tests: several real credfed-node processes on loopback.

mod cluster;
mod engine;
mod hardening;
mod harness;
mod openapi;
mod proven;

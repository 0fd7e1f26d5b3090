//! Integration tests of credfed-protocol: one binary so it links once.

mod check;
mod fixture;
mod props;
mod rules;
mod vectors;

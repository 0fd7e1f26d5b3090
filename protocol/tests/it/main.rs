//! Integration tests of credfed-protocol: one binary so it links once.

mod check;
mod failing_view;
mod inbox;
mod fixture;
mod props;
mod proven;
mod rules;
mod vectors;

//! Integration tests of credfed-protocol: one binary so it links once.

mod check;
mod commitment;
mod disclosure;
mod failing_view;
mod fixture;
mod inbox;
mod props;
mod proven;
mod repair;
mod report;
mod rules;
mod vectors;

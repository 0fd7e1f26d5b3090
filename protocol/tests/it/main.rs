//! Integration tests of credfed-protocol: one binary so it links once.

mod check;
mod failing_view;
mod fixture;
mod props;
mod rules;
mod vectors;

//! What a region's departments are told as records arrive: which records concern a
//! region, and the cursor an event stream resumes from. Pure: the node reads the logs
//! and the folds, this module decides.
//!
//! A record concerns region R when R's departments have something to learn or do from
//! it (跟踪问效, article 二十三; 信息推送, article 十八):
//!
//! * every record of R's own log;
//! * an action that names R as a target, and every answer, execution report or lifting
//!   of an action R initiated;
//! * an objection to, or a repair application for, a record R issued; the resolution or
//!   decision of one that R recorded;
//! * a correction, revocation, repair or repair decision of an entry on which an action
//!   targets R (what R executed may have to be lifted);
//! * equivocation evidence (every member must know).
//!
//! Publications, evaluations, commitments and disclosed decisions of other regions are
//! not pushed: they reach a region through its checks and listings.
//!
//! The cursor is each region's last sequence number the stream has passed, so that a
//! client that reconnects with it gets every later record that concerns it once, in
//! the order the node reads the logs, whatever it skipped as not concerning it.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::ids::RegionCode;
use crate::ledger::{Reads, StateView};
use crate::limits::MAX_MEMBERS;
use crate::record::*;
use crate::state::EntryFold;

/// Longest cursor text accepted: a region code, a colon and a 20-digit number per
/// member, with separators.
pub const MAX_CURSOR_CHARS: usize = MAX_MEMBERS * 28;

/// Where an event stream stands: per region, the last sequence number passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCursor(pub BTreeMap<RegionCode, u64>);

/// A cursor that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {rule}")]
pub struct CursorError {
    /// Where it came from (`Last-Event-ID` or `from`).
    pub field: String,
    /// What is wrong.
    pub rule: String,
}

impl EventCursor {
    /// Parses `REGION:SEQ` pairs joined by commas (the `id` of an event); an empty text is
    /// the start of every log.
    pub fn parse(text: &str, field: &str) -> Result<EventCursor, CursorError> {
        let bad = |rule: String| CursorError {
            field: field.to_owned(),
            rule,
        };
        if text.len() > MAX_CURSOR_CHARS {
            return Err(bad(format!(
                "{} characters; a cursor has at most {MAX_CURSOR_CHARS}",
                text.len()
            )));
        }
        let mut out = BTreeMap::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let Some((r, s)) = pair.split_once(':') else {
                return Err(bad(format!(
                    "'{pair}' is not REGION:SEQ (use the id of the last event received)"
                )));
            };
            let region = r
                .parse::<u32>()
                .ok()
                .and_then(|c| RegionCode::new(c, "region").ok())
                .filter(|c| c.is_province())
                .ok_or_else(|| bad(format!("'{r}' is not a provincial-level region code")))?;
            let seq = s
                .parse::<u64>()
                .map_err(|_| bad(format!("'{s}' is not a sequence number")))?;
            if out.insert(region, seq).is_some() {
                return Err(bad(format!("{region} appears twice")));
            }
        }
        Ok(EventCursor(out))
    }

    /// The text form, regions in code order, regions at 0 left out.
    pub fn format(&self) -> String {
        self.0
            .iter()
            .filter(|(_, s)| **s > 0)
            .map(|(r, s)| format!("{r}:{s}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The last sequence number passed in `region`.
    pub fn at(&self, region: RegionCode) -> u64 {
        self.0.get(&region).copied().unwrap_or(0)
    }
}

/// Whether the record `body`, at the head of `record_region`'s log, concerns `region`
/// (see the module documentation). A failed read gives the view's error.
pub fn concerns<V: StateView + ?Sized>(
    view: &V,
    region: RegionCode,
    record_region: RegionCode,
    body: &Body,
) -> Result<bool, V::Error> {
    let reads = Reads::new(view);
    let answer = concerns_reading(&reads, region, record_region, body);
    reads.finish(answer)
}

fn concerns_reading<V: StateView + ?Sized>(
    view: &Reads<'_, V>,
    region: RegionCode,
    record_region: RegionCode,
    body: &Body,
) -> bool {
    if record_region == region {
        return true;
    }
    let issued_here = |entry: &EntryId| view.entry(entry).is_some_and(|e| e.issuer() == region);
    // An entry on which an action targets the region: a change to it may mean lifting.
    let targets_here = |e: &EntryFold| {
        e.actions
            .iter()
            .filter_map(|a| view.action(a))
            .any(|a| a.targets_region(region))
    };
    let targeted_here = |entry: &EntryId| view.entry(entry).is_some_and(|e| targets_here(&e));
    let initiated_here = |action: &ActionId| {
        view.action(action)
            .is_some_and(|a| a.initiated.pos.region == region)
    };
    match body {
        Body::JointActionInitiated(a) => match &a.targets {
            Targets::Regions(r) => r.contains(&region),
            Targets::AllMembers => true,
        },
        Body::JointActionAcknowledged { action, .. }
        | Body::MeasureExecuted { action, .. }
        | Body::MeasureLifted { action, .. } => initiated_here(action),
        Body::ObjectionFiled { target, .. } => match target {
            ObjectionTarget::Entry(e) => issued_here(e),
            ObjectionTarget::Evaluation(e) => {
                view.evaluation(e).is_some_and(|v| v.issuer() == region)
            }
        },
        Body::ObjectionResolved { objection, .. } => match view.objection_target(objection) {
            Some(ObjectionTarget::Entry(e)) => view.entry(&e).is_some_and(|f| {
                f.objections
                    .get(objection)
                    .is_some_and(|o| o.filed.pos.region == region)
                    || targets_here(&f)
            }),
            Some(ObjectionTarget::Evaluation(e)) => view.evaluation(&e).is_some_and(|f| {
                f.objections
                    .get(objection)
                    .is_some_and(|o| o.filed.pos.region == region)
            }),
            None => false,
        },
        Body::RepairApplied { entry, .. } => issued_here(entry),
        Body::RepairDecided {
            entry, application, ..
        } => view.entry(entry).is_some_and(|f| {
            f.repairs
                .get(application)
                .is_some_and(|r| r.filed.pos.region == region)
                || targets_here(&f)
        }),
        Body::ListEntryAmended { entry, .. }
        | Body::ListEntryRevoked { entry, .. }
        | Body::ListEntryRepaired { entry, .. } => targeted_here(entry),
        Body::EquivocationEvidence { .. } => true,
        Body::DepartmentRegistered { .. }
        | Body::DepartmentRevoked { .. }
        | Body::ListEntryPublished(_)
        | Body::EvaluationPublished(_)
        | Body::EvaluationRevoked { .. }
        // A commitment is the recording region's business; a breach reaches the others
        // through their checks, as a publication does.
        | Body::CommitmentMade(_)
        | Body::CommitmentSettled { .. }
        | Body::DecisionDisclosed(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        let c = EventCursor::parse("310000:12,110000:3", "Last-Event-ID").unwrap();
        assert_eq!(c.format(), "110000:3,310000:12");
        assert_eq!(EventCursor::parse(&c.format(), "x").unwrap(), c);
        assert_eq!(EventCursor::parse("", "x").unwrap(), EventCursor::default());
        for (text, says) in [
            ("310000", "REGION:SEQ"),
            ("310100:1", "provincial"),
            ("310000:x", "sequence"),
            ("310000:1,310000:2", "twice"),
        ] {
            let e = EventCursor::parse(text, "Last-Event-ID").unwrap_err();
            assert_eq!(e.field, "Last-Event-ID");
            assert!(e.rule.contains(says), "{text}: {e}");
        }
        let long = "1".repeat(MAX_CURSOR_CHARS + 1);
        assert!(
            EventCursor::parse(&long, "x")
                .unwrap_err()
                .rule
                .contains("at most")
        );
    }
}

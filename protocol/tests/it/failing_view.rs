//! A state view whose reads fail on demand: a failed read must never become a verdict.

use std::cell::Cell;

use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::check::check;
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::ledger::{
    AdmitError, DepartmentRecord, Head, Ledger, RejectReason, StateView, SubjectRef, admit, effects,
};
use credfed_protocol::record::*;
use credfed_protocol::state::{
    ActionFold, CommitmentFold, DisclosureFold, EntryFold, EvaluationFold, RecordPos,
};

use crate::fixture::*;

/// A disk that fails: every read of the kind named in `failing` errors.
struct FailingView<'a> {
    inner: &'a Ledger,
    failing: Cell<&'static str>,
}

#[derive(Debug, PartialEq)]
struct DiskError;

impl FailingView<'_> {
    fn read<T>(&self, kind: &str, v: T) -> Result<T, DiskError> {
        if self.failing.get() == kind {
            Err(DiskError)
        } else {
            Ok(v)
        }
    }
}

impl StateView for FailingView<'_> {
    type Error = DiskError;
    fn head(&self, region: RegionCode) -> Result<Option<Head>, DiskError> {
        self.read("head", self.inner.head(region))
    }
    fn envelope_at(&self, pos: RecordPos) -> Result<Option<Vec<u8>>, DiskError> {
        self.read("envelope", self.inner.envelope_at(pos))
    }
    fn department(&self, id: &DepartmentId) -> Result<Option<DepartmentRecord>, DiskError> {
        self.read("department", self.inner.department(id))
    }
    fn entry(&self, id: &EntryId) -> Result<Option<EntryFold>, DiskError> {
        self.read("entry", self.inner.entry(id))
    }
    fn action(&self, id: &ActionId) -> Result<Option<ActionFold>, DiskError> {
        self.read("action", self.inner.action(id))
    }
    fn objection_target(&self, id: &ObjectionId) -> Result<Option<ObjectionTarget>, DiskError> {
        self.read(
            "objection",
            StateView::objection_target(self.inner, id).unwrap_or(None),
        )
    }
    fn evaluation(&self, id: &EvaluationId) -> Result<Option<EvaluationFold>, DiskError> {
        self.read("evaluation", self.inner.evaluation(id))
    }
    fn commitment(&self, id: &CommitmentId) -> Result<Option<CommitmentFold>, DiskError> {
        self.read("commitment", self.inner.commitment(id))
    }
    fn disclosure(&self, id: &DisclosureId) -> Result<Option<DisclosureFold>, DiskError> {
        self.read(
            "disclosure",
            StateView::disclosure(self.inner, id).unwrap_or(None),
        )
    }
    fn subject_refs(&self, key: &SubjectKey) -> Result<Vec<SubjectRef>, DiskError> {
        self.read("subject", self.inner.subject_refs(key))
    }
    fn equivocators(&self) -> Result<Vec<RegionCode>, DiskError> {
        self.read("equivocators", self.inner.equivocators())
    }
}

/// A valid record read against a failing disk is neither accepted nor refused: the
/// failure is ours, and a refusal would blame the sender (an unknown author, a
/// missing entry) for it.
#[test]
fn failed_reads_give_unavailable_never_a_rejection() {
    let mut w = World::new(&[310000, 440000]);
    let e = black_entry(org(ACME), "沪市监处〔2026〕12号", &["P-PROCUREMENT"]);
    let bytes = w.seal_as("310000:pub", &Body::ListEntryPublished(e));
    for kind in ["head", "department", "entry"] {
        let view = FailingView {
            inner: &w.ledger,
            failing: Cell::new(kind),
        };
        match admit(w.rules(), &view, &bytes) {
            Err(AdmitError::Unavailable(DiskError)) => {}
            other => panic!("a failing {kind} read gave {other:?}"),
        }
    }
    // With a healthy disk the same bytes are accepted, and effects fail closed too.
    let view = FailingView {
        inner: &w.ledger,
        failing: Cell::new("none"),
    };
    let Ok(credfed_protocol::ledger::Admission::Accept(v)) = admit(w.rules(), &view, &bytes) else {
        panic!("a healthy read must accept");
    };
    assert!(effects(w.rules(), &view, &v).is_ok());
    w.ingest(&bytes).unwrap();
    let view = FailingView {
        inner: &w.ledger,
        failing: Cell::new("entry"),
    };
    assert_eq!(
        check(
            w.rules(),
            &view,
            &org(ACME).key(),
            MeasureDomain::Procurement,
            w.now
        )
        .err(),
        Some(DiskError),
        "a check that cannot read an entry must not answer 'clear'"
    );
}

/// A rejection names its field apart from the message, so callers never parse it.
#[test]
fn rejections_carry_their_field() {
    let mut w = World::new(&[310000, 440000]);
    let e = black_entry(org(ACME), "沪市监处〔2026〕12号", &["P-NOT-IN-CATALOGUE"]);
    let r = w.refuse("310000:pub", Body::ListEntryPublished(e));
    assert_eq!(r.reason, RejectReason::NotApplicable);
    assert_eq!(r.field, "entry.requested_measures");
    assert!(
        r.message.starts_with("entry.requested_measures: "),
        "{}",
        r.message
    );
    let r = w.refuse(
        "310000:init",
        Body::ListEntryPublished(black_entry(org(ACME), "x", &[])),
    );
    assert_eq!(
        (r.reason, r.field.as_str()),
        (RejectReason::Unauthorised, "envelope.author")
    );
}

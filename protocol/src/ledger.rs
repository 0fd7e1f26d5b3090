//! Admission of envelopes and the effects they have on state.
//!
//! [`admit`] decides, as a pure function of the bytes, the manifest, the catalogue and
//! the current state, whether an envelope is the next valid record of its region's
//! log; [`effects`] lists the state changes an admitted envelope causes. A node applies
//! those changes to its store in one atomic step; [`Ledger`] applies them in memory
//! (tests, the demo, the offline verifier).
//!
//! Determinism: every node must reach the same verdict on the same log, whatever else
//! it holds. Rules therefore look only at (a) the record's own log prefix and (b) the
//! *existence* of records it references in other logs — never at their later fate,
//! which a node may or may not have heard of yet. A missing reference is not a
//! rejection but [`Admission::MissingDependency`]: fetch and retry.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::catalogue::Catalogue;
use crate::crypto::{Hash256, PublicKey, VerifiedSignatures};
use crate::envelope::{
    EnvelopeError, GENESIS_PREV_HASH, NODE_UNIT, OPERATOR_UNIT, VerifiedEnvelope, decode_envelope,
};
use crate::ids::{DepartmentId, RegionCode, Role};
use crate::inbox::{MarkMove, TaskRef};
use crate::manifest::Manifest;
use crate::record::*;
use crate::state::*;
use crate::time::{Date, Timestamp};

/// The head of a region's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Last sequence number.
    pub seq: u64,
    /// Hash of that envelope.
    pub hash: Hash256,
    /// Its node timestamp.
    pub timestamp: Timestamp,
}

/// A department as registered in its province's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentRecord {
    /// Id.
    pub department: DepartmentId,
    /// Name.
    pub name: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Signing key.
    pub key: PublicKey,
    /// The registration record.
    pub registered_at: RecordPos,
    /// Revocation record, if revoked.
    pub revoked_at: Option<RecordPos>,
}

/// What an index entry for a subject points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectRef {
    /// A list entry.
    Entry(EntryId),
    /// An evaluation.
    Evaluation(EvaluationId),
    /// A written commitment (article 四).
    Commitment(CommitmentId),
    /// A licensing or penalty decision disclosed (双公示, article 十七): shown on the
    /// public subject page, never part of a check's verdict.
    Disclosure(DisclosureId),
}

/// Read access to the state admission and checks need. Implemented in memory by
/// [`Ledger`] and over sled by the node.
///
/// Every read can fail (a store's disk error): the rules never turn a failed read into
/// "absent", because a verdict reached on a missing department or entry would blame a
/// valid record for our own fault. [`admit`], [`effects`] and [`crate::check::check`]
/// return the store's error instead of any verdict reached while a read failed.
pub trait StateView {
    /// Why a read failed. The in-memory [`Ledger`] cannot fail
    /// ([`std::convert::Infallible`]).
    type Error;
    /// Head of a region's log.
    fn head(&self, region: RegionCode) -> Result<Option<Head>, Self::Error>;
    /// The envelope bytes at a position.
    fn envelope_at(&self, pos: RecordPos) -> Result<Option<Vec<u8>>, Self::Error>;
    /// A department.
    fn department(&self, id: &DepartmentId) -> Result<Option<DepartmentRecord>, Self::Error>;
    /// A list entry.
    fn entry(&self, id: &EntryId) -> Result<Option<EntryFold>, Self::Error>;
    /// A list entry and, when the view read its content from the envelope that carries
    /// it, that envelope's position and bytes exactly as [`StateView::envelope_at`]
    /// gives them: a check that also needs the envelope as evidence need not read it a
    /// second time. A view holding folds whole gives no envelope (the default).
    #[allow(clippy::type_complexity)]
    fn entry_with_envelope(
        &self,
        id: &EntryId,
    ) -> Result<Option<(EntryFold, Option<(RecordPos, Vec<u8>)>)>, Self::Error> {
        Ok(self.entry(id)?.map(|e| (e, None)))
    }
    /// A joint action.
    fn action(&self, id: &ActionId) -> Result<Option<ActionFold>, Self::Error>;
    /// What an objection is about.
    fn objection_target(&self, id: &ObjectionId) -> Result<Option<ObjectionTarget>, Self::Error>;
    /// An evaluation.
    fn evaluation(&self, id: &EvaluationId) -> Result<Option<EvaluationFold>, Self::Error>;
    /// A written commitment.
    fn commitment(&self, id: &CommitmentId) -> Result<Option<CommitmentFold>, Self::Error>;
    /// A disclosed decision.
    fn disclosure(&self, id: &DisclosureId) -> Result<Option<DisclosureFold>, Self::Error>;
    /// Entries and evaluations about a subject.
    fn subject_refs(&self, key: &SubjectKey) -> Result<Vec<SubjectRef>, Self::Error>;
    /// Regions flagged for equivocation.
    fn equivocators(&self) -> Result<Vec<RegionCode>, Self::Error>;
}

/// The rules' view of a [`StateView`]: reads return plain options, and the first failed
/// read is kept so that the caller can discard the verdict and report the failure.
/// This keeps every rule free of error plumbing while guaranteeing that no verdict is
/// reached on a read that failed.
pub(crate) struct Reads<'v, V: StateView + ?Sized> {
    view: &'v V,
    failed: std::cell::RefCell<Option<V::Error>>,
    /// Envelopes the view handed over with an entry's content
    /// ([`StateView::entry_with_envelope`]), given again by
    /// [`Reads::envelope_at`] without a read (once; a later ask reads the view). A
    /// position's envelope never changes once held, and a `Reads` lives for one rule's
    /// evaluation: at most one envelope per entry read through
    /// [`Reads::entry_keeping_envelope`].
    envelopes: std::cell::RefCell<BTreeMap<RecordPos, Vec<u8>>>,
}

impl<'v, V: StateView + ?Sized> Reads<'v, V> {
    pub(crate) fn new(view: &'v V) -> Self {
        Reads {
            view,
            failed: std::cell::RefCell::new(None),
            envelopes: std::cell::RefCell::new(BTreeMap::new()),
        }
    }

    /// `Ok(value)` if every read succeeded, else the first read's error.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, V::Error> {
        match self.failed.into_inner() {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }

    fn keep<T: Default>(&self, r: Result<T, V::Error>) -> T {
        r.unwrap_or_else(|e| {
            let mut failed = self.failed.borrow_mut();
            if failed.is_none() {
                *failed = Some(e);
            }
            T::default()
        })
    }

    pub(crate) fn head(&self, region: RegionCode) -> Option<Head> {
        self.keep(self.view.head(region))
    }
    pub(crate) fn envelope_at(&self, pos: RecordPos) -> Option<Vec<u8>> {
        // Taken, not copied: evidence reads each position once.
        if let Some(bytes) = self.envelopes.borrow_mut().remove(&pos) {
            return Some(bytes);
        }
        self.keep(self.view.envelope_at(pos))
    }
    pub(crate) fn department(&self, id: &DepartmentId) -> Option<DepartmentRecord> {
        self.keep(self.view.department(id))
    }
    pub(crate) fn entry(&self, id: &EntryId) -> Option<EntryFold> {
        self.keep(self.view.entry(id))
    }
    /// [`Reads::entry`], keeping the envelope its content was read from (if the view
    /// gives it) for [`Reads::envelope_at`].
    pub(crate) fn entry_keeping_envelope(&self, id: &EntryId) -> Option<EntryFold> {
        let (entry, envelope) = self.keep(self.view.entry_with_envelope(id))?;
        if let Some((pos, bytes)) = envelope {
            self.envelopes.borrow_mut().insert(pos, bytes);
        }
        Some(entry)
    }
    pub(crate) fn action(&self, id: &ActionId) -> Option<ActionFold> {
        self.keep(self.view.action(id))
    }
    pub(crate) fn objection_target(&self, id: &ObjectionId) -> Option<ObjectionTarget> {
        self.keep(self.view.objection_target(id))
    }
    pub(crate) fn evaluation(&self, id: &EvaluationId) -> Option<EvaluationFold> {
        self.keep(self.view.evaluation(id))
    }
    pub(crate) fn commitment(&self, id: &CommitmentId) -> Option<CommitmentFold> {
        self.keep(self.view.commitment(id))
    }
    pub(crate) fn disclosure(&self, id: &DisclosureId) -> Option<DisclosureFold> {
        self.keep(self.view.disclosure(id))
    }
    pub(crate) fn subject_refs(&self, key: &SubjectKey) -> Vec<SubjectRef> {
        self.keep(self.view.subject_refs(key))
    }
    pub(crate) fn equivocators(&self) -> Vec<RegionCode> {
        self.keep(self.view.equivocators())
    }
}

/// What a node holds fixed while admitting: the federation's manifest and catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The manifest in force.
    pub manifest: &'a Manifest,
    /// The measures catalogue.
    pub catalogue: &'a Catalogue,
}

/// Proof that a region's node signed two different envelopes at one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquivocationProof {
    /// Region accused.
    pub region: RegionCode,
    /// The position.
    pub seq: u64,
    /// One envelope (the one held).
    #[serde(with = "crate::codec::hex_bytes")]
    pub first: Vec<u8>,
    /// The other.
    #[serde(with = "crate::codec::hex_bytes")]
    pub second: Vec<u8>,
}

/// Verdict on an envelope that is not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The next valid record of its log: apply [`effects`].
    Accept(Box<VerifiedEnvelope>),
    /// Already held, byte for byte.
    Duplicate,
    /// Validly node-signed but beyond the head: fetch the gap first.
    Gap {
        /// Region.
        region: RegionCode,
        /// Head held (0 for none).
        have: u64,
        /// Sequence number received.
        got: u64,
    },
    /// Validly node-signed, different from the held envelope at the same position.
    Equivocation(Box<EquivocationProof>),
    /// References a record in another log not yet held: fetch and retry.
    MissingDependency {
        /// What is missing.
        what: String,
    },
}

/// Why an envelope is refused (each maps to a metric label and an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not a canonical envelope/body, over size, bad field, unknown version.
    Malformed,
    /// Region not in the manifest.
    NotMember,
    /// Node signature fails.
    BadNodeSignature,
    /// Author signature fails.
    BadAuthorSignature,
    /// Author not registered in its region.
    UnknownAuthor,
    /// Author revoked.
    AuthorRevoked,
    /// Author lacks the role, writes through another province, or another region
    /// touches an entry it did not issue.
    Unauthorised,
    /// An id already used with different content, or a state that forbids the record.
    Conflict,
    /// prev_hash or timestamp do not continue the held chain.
    ChainBroken,
    /// The rules the federation's policy data takes from the guidance and the statutes
    /// do not allow it: a measure that does not serve the entry or fall on its subject,
    /// a listing period longer than the statute's, a class the scheme does not have.
    NotApplicable,
}

/// A refusal with its reason, the field at fault and a message naming the field and
/// the rule (`"field: rule"`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct Rejection {
    /// Category.
    pub reason: RejectReason,
    /// Dotted path of the field at fault (e.g. `entry.requested_measures`), or the record
    /// part (`envelope`) when no single field is.
    pub field: String,
    /// Human-readable detail, starting with the field.
    pub message: String,
}

impl Rejection {
    /// A refusal of `field` for breaking `rule`.
    pub fn new(reason: RejectReason, field: &str, rule: impl std::fmt::Display) -> Rejection {
        Rejection {
            reason,
            field: field.to_owned(),
            message: format!("{field}: {rule}"),
        }
    }
}

impl Rejection {
    /// A refusal carrying an error whose message already names `field`.
    pub fn from_error(
        reason: RejectReason,
        field: &str,
        error: &impl std::fmt::Display,
    ) -> Rejection {
        Rejection {
            reason,
            field: field.to_owned(),
            message: error.to_string(),
        }
    }
}

fn reject(reason: RejectReason, field: &str, rule: impl std::fmt::Display) -> Rejection {
    Rejection::new(reason, field, rule)
}

impl From<EnvelopeError> for Rejection {
    fn from(e: EnvelopeError) -> Rejection {
        let reason = match e {
            EnvelopeError::Signature(_) => RejectReason::BadNodeSignature,
            _ => RejectReason::Malformed,
        };
        Rejection {
            reason,
            field: e.field(),
            message: e.to_string(),
        }
    }
}

/// Why [`admit`] reached no verdict.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AdmitError<E> {
    /// The envelope breaks a rule: the sender may be blamed.
    #[error(transparent)]
    Invalid(#[from] Rejection),
    /// Reading the state failed: a fault of the local store, never of the sender.
    #[error("state could not be read: {0}")]
    Unavailable(E),
}

impl AdmitError<std::convert::Infallible> {
    /// The rejection, for a view that cannot fail.
    pub fn into_rejection(self) -> Rejection {
        match self {
            AdmitError::Invalid(r) => r,
            AdmitError::Unavailable(never) => match never {},
        }
    }
}

/// Which role a body needs, or `None` for bodies only the node itself writes
/// (department registration may also be written by an operator).
pub fn required_role(kind: BodyKind) -> Option<Role> {
    use BodyKind::*;
    match kind {
        DepartmentRegistered | DepartmentRevoked => Some(Role::Operator),
        ListEntryPublished | ListEntryAmended | ListEntryRevoked | ListEntryRepaired
        | EvaluationPublished | EvaluationRevoked => Some(Role::Publisher),
        JointActionInitiated => Some(Role::Initiator),
        JointActionAcknowledged | MeasureExecuted | MeasureLifted => Some(Role::Implementer),
        // The desk that takes subjects' objections also takes their repair applications;
        // the issuer's publishing department decides, as it repairs (谁认定、谁修复).
        ObjectionFiled | ObjectionResolved | RepairApplied => Some(Role::ObjectionHandler),
        RepairDecided => Some(Role::Publisher),
        // The licensing department that accepted the application records the
        // commitment and finds it kept or breached (article 四).
        CommitmentMade | CommitmentSettled => Some(Role::Publisher),
        // The deciding department discloses its own decisions (article 十七).
        DecisionDisclosed => Some(Role::Publisher),
        EquivocationEvidence => None,
    }
}

/// Bodies the node may write in its own name (author unit [`NODE_UNIT`]): only what it
/// writes by itself.
pub fn node_may_author(kind: BodyKind) -> bool {
    matches!(kind, BodyKind::EquivocationEvidence)
}

/// Bodies the region's operator may write (author unit [`OPERATOR_UNIT`]): who the
/// region's departments are.
pub fn operator_may_author(kind: BodyKind) -> bool {
    matches!(
        kind,
        BodyKind::DepartmentRegistered | BodyKind::DepartmentRevoked
    )
}

/// The key that must have signed a record written in a region's own name — by its node
/// ([`NODE_UNIT`], the node key) or its operator ([`OPERATOR_UNIT`], the operator key) —
/// in the log of `log_region`; `None` when `author` is a department (its registration
/// names its key). Refuses, saying why, a region's own author in another region's log
/// or writing a body its role does not cover.
pub fn region_author_key(
    manifest: &Manifest,
    log_region: crate::ids::RegionCode,
    author: &crate::ids::DepartmentId,
    kind: BodyKind,
) -> Option<Result<crate::crypto::PublicKey, String>> {
    let member = manifest.member(log_region)?;
    region_author_key_of(
        (member.node_key, member.operator_key),
        log_region,
        author,
        kind,
    )
}

/// [`region_author_key`] given the region's node and operator keys.
pub fn region_author_key_of(
    (node_key, operator_key): (crate::crypto::PublicKey, crate::crypto::PublicKey),
    log_region: crate::ids::RegionCode,
    author: &crate::ids::DepartmentId,
    kind: BodyKind,
) -> Option<Result<crate::crypto::PublicKey, String>> {
    let (may, role) = match author.unit.as_str() {
        NODE_UNIT => (node_may_author(kind), "node"),
        OPERATOR_UNIT => (operator_may_author(kind), "operator"),
        _ => return None,
    };
    if author.region != log_region {
        return Some(Err(format!(
            "the {role} of {} may not write in {log_region}'s log",
            author.region
        )));
    }
    if !may {
        return Some(Err(format!(
            "the {role} of {} may not write {kind:?} in its own name{}",
            author.region,
            if role == "node" && operator_may_author(kind) {
                " (departments are registered and revoked by the operator: author <region>:operator, signed with the operator key the manifest names)"
            } else {
                ""
            }
        )));
    }
    Some(Ok(if role == "node" {
        node_key
    } else {
        operator_key
    }))
}

/// Decides whether `bytes` is the next valid envelope of its region's log.
///
/// A failed read of `view` gives [`AdmitError::Unavailable`], never a verdict: the
/// envelope may be perfectly valid, and its sender must not be blamed for our disk.
pub fn admit<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &V,
    bytes: &[u8],
) -> Result<Admission, AdmitError<V::Error>> {
    admit_with(rules, view, bytes, &VerifiedSignatures::new())
}

/// [`admit`], taking signatures already verified (strictly, on other threads) from
/// `known` instead of verifying them again. The verdict is the same as [`admit`]'s:
/// `known` can only hold signatures that verify, and admission still decides which key
/// each signature must be by.
pub fn admit_with<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &V,
    bytes: &[u8],
    known: &VerifiedSignatures,
) -> Result<Admission, AdmitError<V::Error>> {
    let reads = Reads::new(view);
    let verdict = admit_reading(rules, &reads, bytes, known);
    match reads.finish(verdict) {
        Ok(verdict) => Ok(verdict?),
        Err(e) => Err(AdmitError::Unavailable(e)),
    }
}

fn admit_reading<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &Reads<'_, V>,
    bytes: &[u8],
    known: &VerifiedSignatures,
) -> Result<Admission, Rejection> {
    let fed = rules.manifest.federation_id.as_str();
    let v = decode_envelope(fed, bytes)?;
    let env = &v.envelope;
    let member = rules.manifest.member(env.region).ok_or_else(|| {
        reject(
            RejectReason::NotMember,
            "envelope.region",
            format!("{} is not a member of federation {fed}", env.region),
        )
    })?;
    let head = view.head(env.region);
    let have = head.map_or(0, |h| h.seq);
    if env.seq <= have {
        let pos = RecordPos {
            region: env.region,
            seq: env.seq,
        };
        return Ok(match view.envelope_at(pos) {
            // Byte-identical to an envelope admitted (and verified) before: nothing to
            // check again. Pull overlapping push makes this the common case under load.
            Some(held) if held == bytes => Admission::Duplicate,
            // A different envelope is proof of equivocation only if validly signed.
            Some(held) => {
                env.verify_node_sig(fed, &member.node_key).map_err(|e| {
                    Rejection::from_error(RejectReason::BadNodeSignature, e.field(), &e)
                })?;
                Admission::Equivocation(Box::new(EquivocationProof {
                    region: env.region,
                    seq: env.seq,
                    first: held,
                    second: bytes.to_vec(),
                }))
            }
            // A store that has the head must have every position below it.
            None => {
                return Err(reject(
                    RejectReason::ChainBroken,
                    "envelope.seq",
                    format!(
                        "position {}#{} missing below head {have}",
                        env.region, env.seq
                    ),
                ));
            }
        });
    }
    env.verify_node_sig_unless_known(known, fed, &member.node_key)
        .map_err(|e| Rejection::from_error(RejectReason::BadNodeSignature, e.field(), &e))?;
    if env.seq > have + 1 {
        return Ok(Admission::Gap {
            region: env.region,
            have,
            got: env.seq,
        });
    }
    let (prev_hash, prev_time) = head.map_or((GENESIS_PREV_HASH, Timestamp(i64::MIN)), |h| {
        (h.hash, h.timestamp)
    });
    if env.prev_hash != prev_hash {
        return Err(reject(
            RejectReason::ChainBroken,
            "envelope.prev_hash",
            format!("does not match the hash of {}#{have}", env.region),
        ));
    }
    if env.timestamp < prev_time {
        return Err(reject(
            RejectReason::ChainBroken,
            "envelope.timestamp",
            "earlier than the previous envelope's",
        ));
    }

    let kind = v.body.kind();
    let author_key =
        if let Some(key) = region_author_key(rules.manifest, env.region, &env.author, kind) {
            key.map_err(|why| reject(RejectReason::Unauthorised, "envelope.author", why))?
        } else {
            let dept = view.department(&env.author).ok_or_else(|| {
                reject(
                    RejectReason::UnknownAuthor,
                    "envelope.author",
                    format!("{} is not registered", env.author),
                )
            })?;
            if dept.revoked_at.is_some() {
                return Err(reject(
                    RejectReason::AuthorRevoked,
                    "envelope.author",
                    format!("{} was revoked", env.author),
                ));
            }
            if env.author.home_province() != env.region {
                return Err(reject(
                    RejectReason::Unauthorised,
                    "envelope.author",
                    format!(
                        "{} belongs to {}, not to {}",
                        env.author,
                        env.author.home_province(),
                        env.region
                    ),
                ));
            }
            match required_role(kind) {
                Some(role) if dept.roles.contains(&role) => {}
                Some(role) => {
                    return Err(reject(
                        RejectReason::Unauthorised,
                        "envelope.author",
                        format!(
                            "{} lacks the {} role needed for {kind:?}",
                            env.author,
                            role.name()
                        ),
                    ));
                }
                None => {
                    return Err(reject(
                        RejectReason::Unauthorised,
                        "envelope.author",
                        format!("{kind:?} is written by the node only"),
                    ));
                }
            }
            dept.key
        };
    env.verify_author_sig_unless_known(known, fed, &author_key)
        .map_err(|e| Rejection::from_error(RejectReason::BadAuthorSignature, e.field(), &e))?;

    match authorise(rules, view, &v)? {
        Some(missing) => Ok(Admission::MissingDependency { what: missing }),
        None => Ok(Admission::Accept(Box::new(v))),
    }
}

/// A day a record states (filed, made, decided) may not be later than the day its
/// envelope was recorded (China Standard Time): every replica judges this alike.
fn not_after_recording(
    field: &str,
    day: Date,
    env: &crate::envelope::Envelope,
) -> Result<(), Rejection> {
    let recorded = env.timestamp.date_cst();
    if day > recorded {
        return Err(reject(
            RejectReason::NotApplicable,
            field,
            format!("{day} is after the day it is recorded ({recorded})"),
        ));
    }
    Ok(())
}

/// Body rules that need state. `Ok(Some(what))` means a referenced record is missing.
fn authorise<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &Reads<'_, V>,
    v: &VerifiedEnvelope,
) -> Result<Option<String>, Rejection> {
    let env = &v.envelope;
    let region = env.region;
    let fed = rules.manifest.federation_id.as_str();
    let unauth = |field: &str, m: String| Err(reject(RejectReason::Unauthorised, field, m));
    let conflict = |field: &str, m: String| Err(reject(RejectReason::Conflict, field, m));
    // An entry referenced by an issuer-only record must be in the same log: a missing one
    // is a conflict (the log prefix is complete), not a dependency.
    let own_entry = |id: &EntryId| -> Result<EntryFold, Rejection> {
        match view.entry(id) {
            Some(e) if e.issuer() == region => Ok(e),
            Some(e) => Err(reject(
                RejectReason::Unauthorised,
                "entry",
                format!(
                    "{id} was issued by {}; only the issuing region may change it (谁认定、谁修复, articles 二十一, 二十二)",
                    e.issuer()
                ),
            )),
            None => Err(reject(
                RejectReason::Conflict,
                "entry",
                format!("{id} does not exist in {region}'s log"),
            )),
        }
    };
    let own_evaluation = |id: &EvaluationId| -> Result<EvaluationFold, Rejection> {
        match view.evaluation(id) {
            Some(e) if e.issuer() == region => Ok(e),
            Some(e) => Err(reject(
                RejectReason::Unauthorised,
                "evaluation",
                format!(
                    "{id} was issued by {}; only the issuing region may change it (谁认定、谁修复, articles 二十一, 二十二)",
                    e.issuer()
                ),
            )),
            None => Err(reject(
                RejectReason::Conflict,
                "evaluation",
                format!("{id} does not exist in {region}'s log"),
            )),
        }
    };

    match &v.body {
        Body::DepartmentRegistered {
            department, key, ..
        } => {
            if department.home_province() != region {
                return unauth(
                    "department",
                    format!(
                        "{department} belongs to {}; it is registered by that province's node",
                        department.home_province()
                    ),
                );
            }
            if crate::envelope::reserved_unit(&department.unit) {
                return unauth(
                    "department.unit",
                    format!(
                        "'{}' is reserved for the region itself ('{NODE_UNIT}', '{OPERATOR_UNIT}')",
                        department.unit
                    ),
                );
            }
            key.verifying_key("key")
                .map_err(|e| Rejection::from_error(RejectReason::Malformed, e.field(), &e))?;
            if let Some(d) = view.department(department)
                && d.revoked_at.is_some()
            {
                return conflict(
                    "department",
                    format!("{department} was revoked; register a new unit code"),
                );
            }
        }
        Body::DepartmentRevoked { department, .. } => match view.department(department) {
            Some(d) if d.department.home_province() == region && d.revoked_at.is_none() => {}
            Some(d) if d.revoked_at.is_some() => {
                return conflict("department", format!("{department} is already revoked"));
            }
            _ => {
                return conflict(
                    "department",
                    format!("{department} is not registered in {region}"),
                );
            }
        },
        Body::ListEntryPublished(e) => {
            entry_policy(rules, "entry", e)?;
            if view.entry(&entry_id(region, e)).is_some() {
                return conflict(
                    "entry",
                    format!(
                        "decision {} for this subject is already published in {region}",
                        e.basis.document_no
                    ),
                );
            }
        }
        Body::ListEntryAmended { entry, amended, .. } => {
            let held = own_entry(entry)?;
            if held.revoked.is_some() {
                return conflict("entry", format!("{entry} is revoked"));
            }
            if amended.category.list() != held.content.category.list() {
                return conflict(
                    "amended.category",
                    "an amendment cannot move an entry between red and black lists; revoke and publish".into(),
                );
            }
            entry_policy(rules, "amended", amended)?;
        }
        Body::ListEntryRevoked { entry, .. } => {
            if own_entry(entry)?.revoked.is_some() {
                return conflict("entry", format!("{entry} is already revoked"));
            }
        }
        Body::ListEntryRepaired { entry, .. } => {
            let held = own_entry(entry)?;
            if held.content.category.list() != ListKind::Black {
                return conflict(
                    "entry",
                    "credit repair applies to black-list entries (article 二十一)".into(),
                );
            }
            if held.revoked.is_some() || held.repaired.is_some() {
                return conflict("entry", format!("{entry} is already revoked or repaired"));
            }
        }
        Body::EvaluationPublished(ev) => {
            evaluation_policy(rules, ev)?;
            if view.evaluation(&evaluation_id(&env.author, ev)).is_some() {
                return conflict(
                    "evaluation",
                    "this department already published this scheme's result for this subject on that date".into(),
                );
            }
        }
        Body::EvaluationRevoked { evaluation, .. } => {
            if own_evaluation(evaluation)?.revoked.is_some() {
                return conflict("evaluation", format!("{evaluation} is already revoked"));
            }
        }
        Body::JointActionInitiated(a) => {
            let entry = own_entry(&a.entry).map_err(|_| {
                reject(RejectReason::Unauthorised, "action.entry", format!("{} is not an entry of {region}; a region initiates actions on its own decisions (article 十六)", a.entry))
            })?;
            if entry.content.category.list() != a.kind.list() {
                return conflict(
                    "action.kind",
                    format!("{:?} must rest on a {:?}-list entry", a.kind, a.kind.list()),
                );
            }
            rules
                .catalogue
                .check_applicable("action.measures", &a.measures, &entry.content)
                .map_err(|m| {
                    Rejection::from_error(RejectReason::NotApplicable, "action.measures", &m)
                })?;
            if entry.revoked.is_some() || entry.repaired.is_some() {
                return conflict(
                    "action.entry",
                    format!("{} is revoked or repaired", a.entry),
                );
            }
            if a.respond_by < env.timestamp.date_cst() {
                return conflict(
                    "action.respond_by",
                    format!("{} is before the initiation date", a.respond_by),
                );
            }
            if view.action(&action_id(&env.author, &a.reference)).is_some() {
                return conflict(
                    "action.reference",
                    format!("{} was already used by {}", a.reference, env.author),
                );
            }
        }
        Body::JointActionAcknowledged {
            action,
            decision,
            implementing,
        } => {
            let Some(a) = view.action(action) else {
                return Ok(Some(format!("action {action}")));
            };
            if !a.targets_region(region) {
                return unauth("action", format!("{region} is not a target of {action}"));
            }
            if let AckDecision::Partly { accepted, .. } = decision
                && let Some(m) = accepted.iter().find(|m| !a.action.measures.contains(m))
            {
                return conflict("decision.accepted", format!("{} was not asked for", m.0));
            }
            if let Some(d) = implementing.iter().find(|d| d.home_province() != region) {
                return unauth(
                    "implementing",
                    format!("{d} is not a department of {region}"),
                );
            }
        }
        Body::MeasureExecuted {
            action, measure, ..
        }
        | Body::MeasureLifted {
            action, measure, ..
        } => {
            let Some(a) = view.action(action) else {
                return Ok(Some(format!("action {action}")));
            };
            if !a.accepted_measures(region).contains(measure) {
                return conflict(
                    "measure",
                    format!(
                        "{region} has not accepted {} for {action}; acknowledge first",
                        measure.0
                    ),
                );
            }
            if matches!(v.body, Body::MeasureLifted { .. })
                && !a.executions.contains_key(&(region, measure.clone()))
            {
                return conflict(
                    "measure",
                    format!("{} was never executed in {region}", measure.0),
                );
            }
        }
        Body::ObjectionFiled {
            target, case_no, ..
        } => {
            let exists = match target {
                ObjectionTarget::Entry(e) => view.entry(e).is_some(),
                ObjectionTarget::Evaluation(e) => view.evaluation(e).is_some(),
            };
            if !exists {
                return Ok(Some(target.to_string()));
            }
            if view
                .objection_target(&objection_id(&env.author, case_no))
                .is_some()
            {
                return conflict(
                    "case_no",
                    format!("{case_no} was already used by {}", env.author),
                );
            }
        }
        Body::ObjectionResolved { objection, .. } => {
            let Some(target) = view.objection_target(objection) else {
                return Ok(Some(format!("objection {objection}")));
            };
            let objections = match target {
                ObjectionTarget::Entry(id) => own_entry(&id)?.objections,
                ObjectionTarget::Evaluation(id) => own_evaluation(&id)?.objections,
            };
            if objections
                .get(objection)
                .is_some_and(|o| o.resolved.is_some())
            {
                return conflict("objection", format!("{objection} is already resolved"));
            }
        }
        Body::RepairApplied {
            entry,
            case_no,
            filed_on,
            ..
        } => {
            let Some(held) = view.entry(entry) else {
                return Ok(Some(format!("entry {entry}")));
            };
            // Rules every replica judges the same way: the list cannot change by
            // amendment, and the recording day is the envelope's. Whether the entry is
            // still in force, and since when, depends on the issuer's records, which a
            // replica may hold in another order: those are the recording node's rules
            // (`local_policy`).
            if held.content.category.list() != ListKind::Black {
                return Err(reject(
                    RejectReason::NotApplicable,
                    "entry",
                    "credit repair applies to black-list entries (article 二十一)",
                ));
            }
            not_after_recording("filed_on", *filed_on, env)?;
            if held
                .repairs
                .contains_key(&repair_application_id(&env.author, case_no))
            {
                return conflict(
                    "case_no",
                    format!(
                        "{case_no} was already used by {} for this entry",
                        env.author
                    ),
                );
            }
        }
        Body::RepairDecided {
            entry,
            application,
            outcome,
            ..
        } => {
            let held = own_entry(entry)?;
            // The application comes from another region's log: not here yet is a missing
            // dependency, as for an objection's resolution.
            let Some(applied) = held.repairs.get(application) else {
                return Ok(Some(format!(
                    "repair application {application} for {entry}"
                )));
            };
            if applied.decided.is_some() {
                return conflict("application", format!("{application} is already decided"));
            }
            if *outcome == RepairOutcome::Repaired
                && (held.revoked.is_some() || held.repaired.is_some())
            {
                return conflict(
                    "outcome",
                    format!(
                        "{entry} is already revoked or repaired; refuse or decline the application instead"
                    ),
                );
            }
        }
        Body::CommitmentMade(c) => {
            not_after_recording("commitment.made_on", c.made_on, env)?;
            if view
                .commitment(&commitment_id(&env.author, &c.acceptance_no))
                .is_some()
            {
                return conflict(
                    "commitment.acceptance_no",
                    format!(
                        "{} already recorded a commitment for application {}",
                        env.author, c.acceptance_no
                    ),
                );
            }
        }
        Body::CommitmentSettled {
            commitment,
            outcome,
            settled_on,
            ..
        } => {
            // Made and settled in one log: a missing commitment is a conflict.
            let held = match view.commitment(commitment) {
                Some(c) if c.issuer() == region => c,
                Some(c) => {
                    return unauth(
                        "commitment",
                        format!(
                            "{commitment} was recorded by {}; only that region finds it kept or breached (article 四)",
                            c.issuer()
                        ),
                    );
                }
                None => {
                    return conflict(
                        "commitment",
                        format!("{commitment} does not exist in {region}'s log"),
                    );
                }
            };
            if held.settled.is_some() {
                return conflict("commitment", format!("{commitment} is already settled"));
            }
            let today = env.timestamp.date_cst();
            let c = &held.commitment;
            if *settled_on < c.made_on || *settled_on > today {
                return Err(reject(
                    RejectReason::NotApplicable,
                    "settled_on",
                    format!(
                        "{settled_on} is outside the commitment's life: from {} (made) to {today} (recorded)",
                        c.made_on
                    ),
                ));
            }
            match outcome {
                CommitmentOutcome::Fulfilled if *settled_on > c.due_on => {
                    return Err(reject(
                        RejectReason::NotApplicable,
                        "outcome",
                        format!(
                            "materials supplied on {settled_on}, after the deadline {}, do not fulfil the commitment: record it as breached (article 四: 在规定期限内提供)",
                            c.due_on
                        ),
                    ));
                }
                CommitmentOutcome::Breached if *settled_on <= c.due_on => {
                    return Err(reject(
                        RejectReason::NotApplicable,
                        "outcome",
                        format!(
                            "the deadline {} has not passed on {settled_on}: the subject may still supply the materials (article 四: 在规定期限内提供)",
                            c.due_on
                        ),
                    ));
                }
                _ => {}
            }
        }
        Body::DecisionDisclosed(d) => {
            not_after_recording("disclosure.decided_on", d.decided_on, env)?;
            // Penalty information is public for at most the national rules' longest
            // period, the catalogue's listing default (国家发展改革委令2023年第58号).
            let max = rules.catalogue.listing_periods.default_max_days;
            if d.kind == DisclosureKind::Penalty
                && d.public_until.days_since_epoch() - d.decided_on.days_since_epoch() > max as i32
            {
                return Err(reject(
                    RejectReason::NotApplicable,
                    "disclosure.public_until",
                    format!(
                        "penalty information is public for at most {max} days after the decision ({})",
                        rules.catalogue.listing_periods.default_basis
                    ),
                ));
            }
            if view
                .disclosure(&disclosure_id(&env.author, d.kind, &d.decision_no))
                .is_some()
            {
                return conflict(
                    "disclosure.decision_no",
                    format!(
                        "{} already disclosed decision {}",
                        env.author, d.decision_no
                    ),
                );
            }
        }
        Body::EquivocationEvidence { first, second } => {
            verify_equivocation(rules.manifest, fed, first, second)
                .map_err(|m| Rejection::from_error(RejectReason::Conflict, "evidence", &m))?;
        }
    }
    Ok(None)
}

/// What the federation's policy data requires of an entry (as published or amended):
/// every requested measure applies to it (articles 十, 十一, 十四, 二十), and a black-list
/// entry is listed no longer than its category's longest period (articles 十九, 二十一).
fn entry_policy(rules: Rules<'_>, field: &str, e: &ListEntry) -> Result<(), Rejection> {
    let measures_field = format!("{field}.requested_measures");
    rules
        .catalogue
        .check_applicable(&measures_field, &e.requested_measures, e)
        .map_err(|m| Rejection::from_error(RejectReason::NotApplicable, &measures_field, &m))?;
    if let Category::Black(b) = e.category
        && rules
            .catalogue
            .listing_periods
            .open_ended(b, &e.findings)
            .is_none()
    {
        let (max, basis) = rules.catalogue.listing_periods.max_days(b);
        let days = e.expires_on.days_since_epoch() - e.effective_from.days_since_epoch();
        if days > max as i32 {
            return Err(reject(
                RejectReason::NotApplicable,
                &format!("{field}.expires_on"),
                format!(
                    "{} ({}) may stay listed at most {max} days; this entry runs {days} days from {} ({basis})",
                    snake_name(&b),
                    b.name_zh(),
                    e.effective_from
                ),
            ));
        }
    }
    Ok(())
}

/// When a subject may apply for credit repair (articles 十八, 二十一): the entry is a
/// black-list entry still in force, the application is not dated after the day it is
/// recorded, and the category's least period (policy data, [`crate::catalogue::RepairPeriods`])
/// has passed since the entry took effect.
fn repair_application_policy(
    rules: Rules<'_>,
    entry: &EntryFold,
    filed_on: Date,
    recorded_at: Timestamp,
) -> Result<(), Rejection> {
    let not_applicable = |field: &str, m: String| reject(RejectReason::NotApplicable, field, m);
    let Category::Black(category) = entry.content.category else {
        return Err(not_applicable(
            "entry",
            "credit repair applies to black-list entries (article 二十一)".into(),
        ));
    };
    let Some(repair) = rules.catalogue.repair.as_ref() else {
        return Err(not_applicable(
            "entry",
            format!(
                "the federation's policy data v{} sets no credit-repair periods; a catalogue with a [repair] section (version 4 or later) must be published first",
                rules.catalogue.version
            ),
        ));
    };
    if entry.revoked.is_some() || entry.repaired.is_some() {
        return Err(reject(
            RejectReason::Conflict,
            "entry",
            format!("{} is already revoked or repaired", entry.id),
        ));
    }
    let recorded_on = recorded_at.date_cst();
    if recorded_on >= entry.content.expires_on {
        return Err(reject(
            RejectReason::Conflict,
            "entry",
            format!(
                "{} expired on {}; its subject left the list without repair (article 十九)",
                entry.id, entry.content.expires_on
            ),
        ));
    }
    if filed_on > recorded_on {
        return Err(not_applicable(
            "filed_on",
            format!("{filed_on} is after the day the application is recorded ({recorded_on})"),
        ));
    }
    let (min_days, basis) = repair.min_days(category);
    let earliest = entry.content.effective_from.add_days(min_days as i32);
    if filed_on < earliest {
        return Err(not_applicable(
            "filed_on",
            format!(
                "a {} ({}) entry may be repaired on application from {earliest}, {min_days} days after it took effect on {} ({basis}); applied on {filed_on}",
                snake_name(&category),
                category.name_zh(),
                entry.content.effective_from
            ),
        ));
    }
    Ok(())
}

/// An evaluation names a scheme of the policy data and one of its classes (articles 六,
/// 十六: 信用评价结果互认 needs results the federation reads the same way).
fn evaluation_policy(rules: Rules<'_>, ev: &Evaluation) -> Result<(), Rejection> {
    let Some(scheme) = rules.catalogue.scheme(&ev.scheme) else {
        let known: Vec<&str> = rules
            .catalogue
            .schemes
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        return Err(reject(
            RejectReason::NotApplicable,
            "evaluation.scheme",
            format!(
                "'{}' is not a scheme of the federation's policy data v{} (known: {})",
                ev.scheme,
                rules.catalogue.version,
                known.join(", ")
            ),
        ));
    };
    let kind = crate::catalogue::SubjectKind::of(&ev.subject);
    if !scheme.subjects.is_empty() && !scheme.subjects.contains(&kind) {
        return Err(reject(
            RejectReason::NotApplicable,
            "evaluation.subject",
            format!(
                "scheme {} ({}) grades {} only, not a {} ({})",
                scheme.id,
                scheme.name_zh,
                scheme
                    .subjects
                    .iter()
                    .map(snake_name)
                    .collect::<Vec<_>>()
                    .join(", "),
                snake_name(&kind),
                scheme.subjects_basis
            ),
        ));
    }
    let class = match ev.grade {
        Grade::Class(c) => grade_text(c),
        Grade::Score(_) => {
            return Err(reject(
                RejectReason::NotApplicable,
                "evaluation.grade",
                format!("scheme {} grades by class, not by score", scheme.id),
            ));
        }
    };
    if scheme.class(&class).is_none() {
        let classes: Vec<&str> = scheme.classes.iter().map(|c| c.class.as_str()).collect();
        return Err(reject(
            RejectReason::NotApplicable,
            "evaluation.grade",
            format!(
                "class {class} is not one of scheme {}'s classes {}",
                scheme.id,
                classes.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The text of a class grade (`A`, `AEO`).
pub fn grade_text(c: [u8; 4]) -> String {
    c.iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect()
}

fn snake_name<T: Serialize>(v: &T) -> String {
    toml::Value::try_from(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Rules a node applies to its *own* appends only, against its current replica: they
/// depend on records of other regions (an objection from anywhere suspends an entry),
/// so they cannot be admission rules, which must give every node the same verdict.
///
/// Execution feedback for an entry that is suspended (措施在核实期间暂不执行, article
/// 二十二), revoked, repaired or expired is refused: the measure must not be executed.
/// A repair application is refused before its category's least period or once the
/// entry has ended ([`repair_application_policy`]); a decision on an application the
/// node does not hold is refused rather than left waiting for it.
pub fn local_policy<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &V,
    body: &Body,
    now: Timestamp,
) -> Result<Result<(), Rejection>, V::Error> {
    let reads = Reads::new(view);
    let verdict = local_policy_reading(rules, &reads, body, now);
    reads.finish(verdict)
}

fn local_policy_reading<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &Reads<'_, V>,
    body: &Body,
    now: Timestamp,
) -> Result<(), Rejection> {
    if let Body::RepairApplied {
        entry, filed_on, ..
    } = body
        && let Some(held) = view.entry(entry)
    {
        repair_application_policy(rules, &held, *filed_on, now)?;
    }
    if let Body::RepairDecided {
        entry, application, ..
    } = body
        && let Some(held) = view.entry(entry)
        && !held.repairs.contains_key(application)
    {
        return Err(reject(
            RejectReason::Conflict,
            "application",
            format!(
                "{application} is not a repair application for {entry} that this node holds; check the id with `credfed repair list --entry {entry}`"
            ),
        ));
    }
    // Articles 六, 十六: results are recognised across regions while they hold; a result
    // whose validity has already ended when it is recorded has nothing to be recognised
    // for (replicas take it as it was recorded: this is the author's rule).
    if let Body::EvaluationPublished(ev) = body
        && ev.valid_until <= now.date_cst()
    {
        return Err(reject(
            RejectReason::NotApplicable,
            "evaluation.valid_until",
            format!(
                "{} has passed (today is {}): record a result while it is valid (articles 六, 十六: results in force are recognised across regions)",
                ev.valid_until,
                now.date_cst()
            ),
        ));
    }
    if let Body::MeasureExecuted { action, .. } = body
        && let Some(a) = view.action(action)
        && let Some(e) = view.entry(&a.action.entry)
    {
        let state = e.state_at(now);
        if state != EntryState::Active {
            return Err(reject(
                RejectReason::Conflict,
                "measure",
                format!(
                    "entry {} is {state:?} now: no measure may be executed on it{}",
                    e.id,
                    if state == EntryState::Suspended {
                        " while an objection is verified (措施在核实期间暂不执行, article 二十二); report execution once it is resolved"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Verifies equivocation evidence offline: both envelopes well-formed, validly signed
/// by the same member's node key, at the same position, and different.
pub fn verify_equivocation(
    manifest: &Manifest,
    fed: &str,
    first: &[u8],
    second: &[u8],
) -> Result<RegionCode, String> {
    let a = decode_envelope(fed, first).map_err(|e| format!("evidence.first: {e}"))?;
    let b = decode_envelope(fed, second).map_err(|e| format!("evidence.second: {e}"))?;
    let (ea, eb) = (&a.envelope, &b.envelope);
    if ea.region != eb.region || ea.seq != eb.seq {
        return Err("evidence: the envelopes are not at the same (region, seq)".into());
    }
    if first == second {
        return Err("evidence: the envelopes are identical".into());
    }
    let member = manifest
        .member(ea.region)
        .ok_or_else(|| format!("evidence: {} is not a member", ea.region))?;
    ea.verify_node_sig(fed, &member.node_key)
        .map_err(|e| format!("evidence.first: {e}"))?;
    eb.verify_node_sig(fed, &member.node_key)
        .map_err(|e| format!("evidence.second: {e}"))?;
    Ok(ea.region)
}

/// A state change caused by an admitted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Append the envelope to its log and move the head.
    Append {
        /// Position.
        pos: RecordPos,
        /// New head.
        head: Head,
        /// Exact bytes.
        bytes: Vec<u8>,
    },
    /// Store a department.
    Department(DepartmentRecord),
    /// Store an entry fold.
    Entry(Box<EntryFold>),
    /// Store an action fold.
    Action(Box<ActionFold>),
    /// Remember what an objection is about.
    Objection(ObjectionId, ObjectionTarget),
    /// Store an evaluation fold.
    Evaluation(Box<EvaluationFold>),
    /// Store a commitment fold.
    Commitment(Box<CommitmentFold>),
    /// Store a disclosed decision.
    Disclosure(Box<DisclosureFold>),
    /// Index a subject (or a related person) under a record about them.
    Subject(SubjectKey, SubjectRef),
    /// Remove an index entry: a correction no longer names that subject (article 二十二).
    Unindex(SubjectKey, SubjectRef),
    /// Flag a region for equivocation.
    Equivocator(RegionCode),
    /// Move or remove a region's attention mark on an action or objection (the inbox's
    /// index: [`crate::inbox`]). Local, derived state: never part of a proof.
    Task(crate::inbox::MarkMove),
}

/// The state changes an admitted envelope causes, computed against the state it was
/// admitted against. A failed read gives the view's error, never partial updates.
pub fn effects<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &V,
    v: &VerifiedEnvelope,
) -> Result<Vec<Update>, V::Error> {
    let reads = Reads::new(view);
    let updates = effects_reading(rules, &reads, v);
    reads.finish(updates)
}

fn effects_reading<V: StateView + ?Sized>(
    rules: Rules<'_>,
    view: &Reads<'_, V>,
    v: &VerifiedEnvelope,
) -> Vec<Update> {
    let env = &v.envelope;
    let pos = RecordPos {
        region: env.region,
        seq: env.seq,
    };
    let origin = Origin {
        pos,
        at: env.timestamp,
        author: env.author.clone(),
    };
    let mut out = vec![Update::Append {
        pos,
        head: Head {
            seq: env.seq,
            hash: v.hash,
            timestamp: env.timestamp,
        },
        bytes: v.bytes.clone(),
    }];
    // The folds as they were before this record, kept as they are read: the inbox's
    // marks compare them with the updated folds without reading them again.
    let before = std::cell::RefCell::new(Before::default());
    let touch_entry = |out: &mut Vec<Update>, id: &EntryId| {
        if let Some(old) = view.entry(id) {
            let mut e = old.clone();
            before.borrow_mut().entries.insert(*id, old);
            e.apply(&origin, &v.body);
            out.push(Update::Entry(Box::new(e)));
        }
    };
    let touch_evaluation = |out: &mut Vec<Update>, id: &EvaluationId| {
        if let Some(old) = view.evaluation(id) {
            let mut e = old.clone();
            before.borrow_mut().evaluations.insert(*id, old);
            e.apply(&origin, &v.body);
            out.push(Update::Evaluation(Box::new(e)));
        }
    };
    let touch_action = |out: &mut Vec<Update>, id: &ActionId| {
        if let Some(old) = view.action(id) {
            let mut a = old.clone();
            before.borrow_mut().actions.insert(*id, old);
            a.apply(&origin, &v.body);
            out.push(Update::Action(Box::new(a)));
        }
    };
    match &v.body {
        Body::DepartmentRegistered {
            department,
            name,
            roles,
            key,
        } => out.push(Update::Department(DepartmentRecord {
            department: department.clone(),
            name: name.clone(),
            roles: roles.clone(),
            key: *key,
            registered_at: pos,
            revoked_at: None,
        })),
        Body::DepartmentRevoked { department, .. } => {
            if let Some(mut d) = view.department(department) {
                d.revoked_at = Some(pos);
                out.push(Update::Department(d));
            }
        }
        Body::ListEntryPublished(e) => {
            let id = entry_id(env.region, e);
            for key in e.named_keys() {
                out.push(Update::Subject(key, SubjectRef::Entry(id)));
            }
            out.push(Update::Entry(Box::new(EntryFold::published(
                id,
                origin.clone(),
                e.clone(),
            ))));
        }
        Body::ListEntryAmended { entry, amended, .. } => {
            // A correction of the subject or of a related person moves the entry from the
            // old key to the new one (article 二十二: 更正): the person wrongly named must
            // no longer find it.
            if let Some(old) = view.entry(entry) {
                let before = old.content.named_keys();
                let after = amended.named_keys();
                for key in before.difference(&after) {
                    out.push(Update::Unindex(key.clone(), SubjectRef::Entry(*entry)));
                }
                for key in after.difference(&before) {
                    out.push(Update::Subject(key.clone(), SubjectRef::Entry(*entry)));
                }
            }
            touch_entry(&mut out, entry);
        }
        Body::ListEntryRevoked { entry, .. }
        | Body::ListEntryRepaired { entry, .. }
        | Body::RepairApplied { entry, .. }
        | Body::RepairDecided { entry, .. } => touch_entry(&mut out, entry),
        Body::EvaluationPublished(ev) => {
            let id = evaluation_id(&env.author, ev);
            out.push(Update::Subject(
                ev.subject.key(),
                SubjectRef::Evaluation(id),
            ));
            out.push(Update::Evaluation(Box::new(EvaluationFold::published(
                id,
                origin.clone(),
                ev.clone(),
            ))));
        }
        Body::EvaluationRevoked { evaluation, .. } => touch_evaluation(&mut out, evaluation),
        Body::JointActionInitiated(a) => {
            let id = action_id(&env.author, &a.reference);
            if let Some(entry) = view.entry(&a.entry) {
                out.push(Update::Action(Box::new(ActionFold::initiated(
                    id,
                    origin.clone(),
                    a.clone(),
                    entry.content.category,
                ))));
            }
            touch_entry(&mut out, &a.entry);
        }
        Body::JointActionAcknowledged { action, .. }
        | Body::MeasureExecuted { action, .. }
        | Body::MeasureLifted { action, .. } => touch_action(&mut out, action),
        Body::ObjectionFiled {
            target, case_no, ..
        } => {
            out.push(Update::Objection(
                objection_id(&env.author, case_no),
                *target,
            ));
            match target {
                ObjectionTarget::Entry(e) => touch_entry(&mut out, e),
                ObjectionTarget::Evaluation(e) => touch_evaluation(&mut out, e),
            }
        }
        Body::ObjectionResolved { objection, .. } => match view.objection_target(objection) {
            Some(ObjectionTarget::Entry(e)) => touch_entry(&mut out, &e),
            Some(ObjectionTarget::Evaluation(e)) => touch_evaluation(&mut out, &e),
            None => {}
        },
        Body::CommitmentMade(c) => {
            let id = commitment_id(&env.author, &c.acceptance_no);
            out.push(Update::Subject(c.subject.key(), SubjectRef::Commitment(id)));
            out.push(Update::Commitment(Box::new(CommitmentFold::made(
                id,
                origin.clone(),
                c.clone(),
            ))));
        }
        Body::CommitmentSettled { commitment, .. } => {
            if let Some(mut c) = view.commitment(commitment) {
                before
                    .borrow_mut()
                    .commitments
                    .insert(*commitment, c.clone());
                c.apply(&origin, &v.body);
                out.push(Update::Commitment(Box::new(c)));
            }
        }
        Body::DecisionDisclosed(d) => {
            let id = disclosure_id(&env.author, d.kind, &d.decision_no);
            out.push(Update::Subject(d.subject.key(), SubjectRef::Disclosure(id)));
            out.push(Update::Disclosure(Box::new(DisclosureFold {
                id,
                published: origin.clone(),
                disclosure: d.clone(),
            })));
        }
        Body::EquivocationEvidence { first, second } => {
            if let Ok(region) =
                verify_equivocation(rules.manifest, &rules.manifest.federation_id, first, second)
            {
                out.push(Update::Equivocator(region));
            }
        }
    }
    let marks = task_marks(view, &before.into_inner(), &out);
    out.extend(marks.into_iter().map(Update::Task));
    out
}

/// Folds as they stood before a record, as `effects` read them.
#[derive(Default)]
struct Before {
    entries: BTreeMap<EntryId, EntryFold>,
    evaluations: BTreeMap<EvaluationId, EvaluationFold>,
    actions: BTreeMap<ActionId, ActionFold>,
    commitments: BTreeMap<CommitmentId, CommitmentFold>,
}

impl Before {
    fn entry<V: StateView + ?Sized>(&self, view: &Reads<'_, V>, id: &EntryId) -> Option<EntryFold> {
        self.entries.get(id).cloned().or_else(|| view.entry(id))
    }
}

/// The attention marks the fold updates in `out` move ([`crate::inbox`]): an action's
/// targets when the action changes, or when its entry ends or its expiry moves; the
/// issuer when an objection or a repair application is filed or decided; the recording
/// region when a commitment is made or settled.
fn task_marks<V: StateView + ?Sized>(
    view: &Reads<'_, V>,
    before: &Before,
    out: &[Update],
) -> Vec<MarkMove> {
    use crate::inbox::{action_marks, changed_marks, end_of_force, objection_mark, repair_mark};
    let new_entries: BTreeMap<EntryId, &EntryFold> = out
        .iter()
        .filter_map(|u| match u {
            Update::Entry(e) => Some((e.id, e.as_ref())),
            _ => None,
        })
        .collect();
    let mut marks = Vec::new();
    let mut done: BTreeSet<ActionId> = BTreeSet::new();
    for u in out {
        if let Update::Action(a) = u {
            let old_entry = before.entry(view, &a.action.entry);
            // An action just initiated has no earlier fold (and was never touched).
            let was = match (before.actions.get(&a.id), &old_entry) {
                (Some(old), Some(e)) => action_marks(old, e),
                _ => Vec::new(),
            };
            let after = match new_entries.get(&a.action.entry) {
                Some(e) => action_marks(a, e),
                None => old_entry.map(|e| action_marks(a, &e)).unwrap_or_default(),
            };
            marks.extend(changed_marks(&was, &after));
            done.insert(a.id);
        }
    }
    let objection_changes = |old: Option<&BTreeMap<ObjectionId, ObjectionStatus>>,
                             new: &BTreeMap<ObjectionId, ObjectionStatus>,
                             issuer: RegionCode,
                             marks: &mut Vec<MarkMove>| {
        for (id, status) in new {
            let before = old.and_then(|o| o.get(id));
            if before != Some(status) {
                let was = before.and_then(|b| objection_mark(*id, b, issuer).from);
                marks.extend(objection_mark(*id, status, issuer).moved_from(was));
            }
        }
    };
    for u in out {
        match u {
            Update::Entry(e) => {
                // Not in `before` only when this record published it.
                let old = before.entries.get(&e.id).cloned();
                objection_changes(
                    old.as_ref().map(|o| &o.objections),
                    &e.objections,
                    e.issuer(),
                    &mut marks,
                );
                let repair_was = old.as_ref().and_then(|o| repair_mark(o).from);
                marks.extend(repair_mark(e).moved_from(repair_was));
                let Some(old) = old else { continue };
                let ended = |f: &EntryFold| f.revoked.is_some() || f.repaired.is_some();
                if end_of_force(&old) == end_of_force(e) && ended(&old) == ended(e) {
                    continue;
                }
                for id in e.actions.iter().filter(|id| !done.contains(id)) {
                    if let Some(a) = view.action(id) {
                        marks.extend(changed_marks(&action_marks(&a, &old), &action_marks(&a, e)));
                    }
                }
            }
            Update::Evaluation(ev) => {
                let old = before.evaluations.get(&ev.id).cloned();
                objection_changes(
                    old.as_ref().map(|o| &o.objections),
                    &ev.objections,
                    ev.issuer(),
                    &mut marks,
                );
            }
            Update::Commitment(c) => {
                let was = before
                    .commitments
                    .get(&c.id)
                    .and_then(|o| crate::inbox::commitment_mark(o).from);
                marks.extend(crate::inbox::commitment_mark(c).moved_from(was));
            }
            _ => {}
        }
    }
    marks
}

/// In-memory state: every region's log and the folds over it.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    logs: BTreeMap<RegionCode, Vec<Vec<u8>>>,
    heads: BTreeMap<RegionCode, Head>,
    departments: BTreeMap<DepartmentId, DepartmentRecord>,
    entries: BTreeMap<EntryId, EntryFold>,
    actions: BTreeMap<ActionId, ActionFold>,
    objections: BTreeMap<ObjectionId, ObjectionTarget>,
    evaluations: BTreeMap<EvaluationId, EvaluationFold>,
    commitments: BTreeMap<CommitmentId, CommitmentFold>,
    disclosures: BTreeMap<DisclosureId, DisclosureFold>,
    subjects: BTreeMap<SubjectKey, BTreeSet<SubjectRef>>,
    equivocators: BTreeSet<RegionCode>,
    tasks: BTreeMap<(RegionCode, TaskRef), Date>,
    /// Equivocation proofs seen (kept so they can be forwarded).
    pub proofs: Vec<EquivocationProof>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Admits and, if accepted, applies an envelope. Equivocation proofs are kept and the
    /// region flagged locally (the node also records them as evidence in its own log).
    pub fn ingest(&mut self, rules: Rules<'_>, bytes: &[u8]) -> Result<Admission, Rejection> {
        let verdict = admit(rules, self, bytes).map_err(AdmitError::into_rejection)?;
        match &verdict {
            Admission::Accept(v) => {
                let Ok(updates) = effects(rules, self, v);
                self.apply(updates);
            }
            Admission::Equivocation(p) => {
                self.equivocators.insert(p.region);
                if !self
                    .proofs
                    .iter()
                    .any(|q| q.region == p.region && q.seq == p.seq)
                {
                    self.proofs.push((**p).clone());
                }
            }
            _ => {}
        }
        Ok(verdict)
    }

    /// Applies updates computed by [`effects`].
    pub fn apply(&mut self, updates: Vec<Update>) {
        for u in updates {
            match u {
                Update::Append { pos, head, bytes } => {
                    let log = self.logs.entry(pos.region).or_default();
                    debug_assert_eq!(
                        log.len() as u64 + 1,
                        pos.seq,
                        "append must extend the log by one"
                    );
                    log.push(bytes);
                    self.heads.insert(pos.region, head);
                }
                Update::Department(d) => {
                    self.departments.insert(d.department.clone(), d);
                }
                Update::Entry(e) => {
                    self.entries.insert(e.id, *e);
                }
                Update::Action(a) => {
                    self.actions.insert(a.id, *a);
                }
                Update::Objection(o, t) => {
                    self.objections.insert(o, t);
                }
                Update::Evaluation(ev) => {
                    self.evaluations.insert(ev.id, *ev);
                }
                Update::Commitment(c) => {
                    self.commitments.insert(c.id, *c);
                }
                Update::Disclosure(d) => {
                    self.disclosures.insert(d.id, *d);
                }
                Update::Subject(k, r) => {
                    self.subjects.entry(k).or_default().insert(r);
                }
                Update::Unindex(k, r) => {
                    if let Some(refs) = self.subjects.get_mut(&k) {
                        refs.remove(&r);
                        if refs.is_empty() {
                            self.subjects.remove(&k);
                        }
                    }
                }
                Update::Equivocator(r) => {
                    self.equivocators.insert(r);
                }
                Update::Task(m) => match m.now {
                    Some(from) => {
                        self.tasks.insert((m.region, m.task), from);
                    }
                    None => {
                        self.tasks.remove(&(m.region, m.task));
                    }
                },
            }
        }
    }

    /// Head of a region's log (in memory a read cannot fail, so this answers directly).
    pub fn head(&self, region: RegionCode) -> Option<Head> {
        self.heads.get(&region).copied()
    }

    /// A department.
    pub fn department(&self, id: &DepartmentId) -> Option<DepartmentRecord> {
        self.departments.get(id).cloned()
    }

    /// A list entry.
    pub fn entry(&self, id: &EntryId) -> Option<EntryFold> {
        self.entries.get(id).cloned()
    }

    /// A joint action.
    pub fn action(&self, id: &ActionId) -> Option<ActionFold> {
        self.actions.get(id).cloned()
    }

    /// An evaluation.
    pub fn evaluation(&self, id: &EvaluationId) -> Option<EvaluationFold> {
        self.evaluations.get(id).cloned()
    }

    /// A written commitment.
    pub fn commitment(&self, id: &CommitmentId) -> Option<CommitmentFold> {
        self.commitments.get(id).cloned()
    }

    /// Entries and evaluations about a subject.
    pub fn subject_refs(&self, key: &SubjectKey) -> Vec<SubjectRef> {
        self.subjects
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The envelope bytes at a position.
    pub fn envelope_at(&self, pos: RecordPos) -> Option<Vec<u8>> {
        let idx = usize::try_from(pos.seq.checked_sub(1)?).ok()?;
        self.logs.get(&pos.region)?.get(idx).cloned()
    }

    /// Regions flagged for equivocation.
    pub fn equivocators(&self) -> Vec<RegionCode> {
        self.equivocators.iter().copied().collect()
    }

    /// All heads.
    pub fn heads(&self) -> &BTreeMap<RegionCode, Head> {
        &self.heads
    }

    /// Envelopes of a region from `from_seq` (inclusive), at most `limit`.
    pub fn range(&self, region: RegionCode, from_seq: u64, limit: usize) -> Vec<Vec<u8>> {
        let Some(log) = self.logs.get(&region) else {
            return Vec::new();
        };
        let start = from_seq.saturating_sub(1) as usize;
        log.iter().skip(start).take(limit).cloned().collect()
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = &EntryFold> {
        self.entries.values()
    }

    /// Every action.
    pub fn actions(&self) -> impl Iterator<Item = &ActionFold> {
        self.actions.values()
    }

    /// Every commitment.
    pub fn commitments(&self) -> impl Iterator<Item = &CommitmentFold> {
        self.commitments.values()
    }

    /// Every disclosed decision.
    pub fn disclosures(&self) -> impl Iterator<Item = &DisclosureFold> {
        self.disclosures.values()
    }

    /// A region's attention marks due by `today` (the inbox's index, [`crate::inbox`]).
    pub fn marks_due(&self, region: RegionCode, today: Date) -> Vec<(TaskRef, Date)> {
        self.tasks
            .iter()
            .filter(|((r, _), from)| *r == region && **from <= today)
            .map(|((_, t), from)| (*t, *from))
            .collect()
    }
}

impl StateView for Ledger {
    type Error = std::convert::Infallible;
    fn head(&self, region: RegionCode) -> Result<Option<Head>, Self::Error> {
        Ok(Ledger::head(self, region))
    }
    fn envelope_at(&self, pos: RecordPos) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(Ledger::envelope_at(self, pos))
    }
    fn department(&self, id: &DepartmentId) -> Result<Option<DepartmentRecord>, Self::Error> {
        Ok(Ledger::department(self, id))
    }
    fn entry(&self, id: &EntryId) -> Result<Option<EntryFold>, Self::Error> {
        Ok(Ledger::entry(self, id))
    }
    fn action(&self, id: &ActionId) -> Result<Option<ActionFold>, Self::Error> {
        Ok(Ledger::action(self, id))
    }
    fn objection_target(&self, id: &ObjectionId) -> Result<Option<ObjectionTarget>, Self::Error> {
        Ok(self.objections.get(id).copied())
    }
    fn evaluation(&self, id: &EvaluationId) -> Result<Option<EvaluationFold>, Self::Error> {
        Ok(Ledger::evaluation(self, id))
    }
    fn commitment(&self, id: &CommitmentId) -> Result<Option<CommitmentFold>, Self::Error> {
        Ok(Ledger::commitment(self, id))
    }
    fn disclosure(&self, id: &DisclosureId) -> Result<Option<DisclosureFold>, Self::Error> {
        Ok(self.disclosures.get(id).cloned())
    }
    fn subject_refs(&self, key: &SubjectKey) -> Result<Vec<SubjectRef>, Self::Error> {
        Ok(Ledger::subject_refs(self, key))
    }
    fn equivocators(&self) -> Result<Vec<RegionCode>, Self::Error> {
        Ok(Ledger::equivocators(self))
    }
}

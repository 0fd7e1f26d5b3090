//! What travels over the API, in one place: the node serialises these and clients
//! deserialise them, so that a field renamed on one side is a compile error on the other.

use std::collections::BTreeMap;

use credfed_protocol::crypto::{Keypair, Signature};
use credfed_protocol::envelope::sign_body;
use credfed_protocol::ids::DepartmentId;
use credfed_protocol::record::Body;
use serde::{Deserialize, Serialize};

/// Every API error: a machine code, the field at fault (if one is) and a message that
/// names the rule broken and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid`, `not_found`, `writes_paused`.
    pub code: String,
    /// Dotted path of the field at fault.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A department-signed record: `POST /v1/records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRecord {
    /// Authoring department, `REGION:UNIT`.
    pub author: String,
    /// The body's canonical bytes, hex.
    pub body: String,
    /// The department's signature over the body (body-sig tag), hex.
    pub signature: String,
}

impl SubmitRecord {
    /// Signs `body` as `author` with `key` for federation `federation_id`: the one way
    /// every tool builds a submission.
    pub fn sign(
        federation_id: &str,
        author: &DepartmentId,
        key: &Keypair,
        body: &Body,
    ) -> SubmitRecord {
        let (bytes, signature) = sign_body(federation_id, key, body);
        SubmitRecord::from_parts(author, &bytes, &signature)
    }

    /// A submission of body bytes already signed.
    pub fn from_parts(author: &DepartmentId, body: &[u8], signature: &Signature) -> SubmitRecord {
        SubmitRecord {
            author: author.to_string(),
            body: hex::encode(body),
            signature: signature.to_hex(),
        }
    }
}

/// Where a record landed: the answer to `POST /v1/records`, sent only once the envelope
/// is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Region log.
    pub region: String,
    /// Sequence number.
    pub seq: u64,
    /// Envelope hash, hex.
    pub hash: String,
    /// The envelope, hex (so the caller keeps the signed evidence).
    pub envelope: String,
}

/// One region's head: `GET /v1/heads` answers a map of these by region code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Last sequence number.
    pub seq: u64,
    /// Hash of that envelope, hex.
    pub hash: String,
    /// Its node timestamp, ms since the epoch.
    pub timestamp_ms: i64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's region.
    pub region: String,
    /// Federation id.
    pub federation_id: String,
    /// Version of the manifest in force.
    pub manifest_version: u64,
    /// libp2p peer id.
    pub peer_id: String,
    /// Head of this region's own log.
    pub own_head: u64,
    /// Regions whose logs this node holds.
    pub regions_held: usize,
    /// Members connected now.
    pub peers_connected: usize,
    /// Members in the manifest (this node included).
    pub members: usize,
    /// Whether writes are accepted.
    pub writes_open: bool,
    /// Why writes are paused, when they are.
    pub writes_paused_reason: Option<String>,
    /// Whether the audit log is being written (writes are refused while it is not).
    pub audit_ok: bool,
    /// Envelopes waiting for a gap or a dependency.
    pub parked: usize,
    /// Records behind the highest head any peer reported, per region.
    pub lag: BTreeMap<String, u64>,
    /// Regions flagged for equivocation.
    pub equivocating_regions: Vec<String>,
    /// Store size on disk, bytes.
    pub store_bytes: u64,
    /// Node clock, ms since the epoch.
    pub now_ms: i64,
    /// When this node last applied an envelope (node clock, ms; 0 = never).
    pub last_applied_ms: i64,
    /// The last day the working-day calendar covers (`YYYY-12-31`).
    #[serde(default)]
    pub calendar_covers_until: Option<String>,
    /// Set when the calendar ends within 60 days or has ended: deadlines beyond it are
    /// estimated.
    #[serde(default)]
    pub calendar_warning: Option<String>,
    /// Person keys: whether t members holding shares are reachable, and which members
    /// failed or were refused (docs/privacy.md).
    #[serde(default)]
    pub person_keys: PersonKeyStatus,
    /// When the manifest in force expires (CST).
    #[serde(default)]
    pub manifest_expires_at: Option<String>,
    /// Set from 30 days before the manifest expires: what to do.
    #[serde(default)]
    pub manifest_warning: Option<String>,
    /// Set from 30 days before the API's server or CA certificate, or a department's
    /// client certificate, ends: which, when, and what to do.
    #[serde(default)]
    pub certificates_warning: Option<String>,
    /// The manifest version each member said it runs when it last connected, by region.
    #[serde(default)]
    pub members_manifest_versions: BTreeMap<String, u64>,
    /// Set when a member runs another manifest version than this node: which, and what
    /// to do.
    #[serde(default)]
    pub manifest_versions_warning: Option<String>,
    /// Set when a newer manifest (a member's, or the file replaced) was not adopted: why.
    /// The node keeps running the version it runs.
    #[serde(default)]
    pub manifest_refused: Option<String>,
}

/// Person keys as `/v1/status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKeyStatus {
    /// Whether the manifest carries a threshold person key.
    pub configured: bool,
    /// Members needed per key (t).
    pub threshold: u16,
    /// Members holding shares.
    pub members_with_shares: usize,
    /// Whether this node holds a share.
    pub own_share: bool,
    /// Members holding shares that are reachable now (this one included).
    pub reachable: usize,
    /// Whether a person key can be computed now.
    pub available: bool,
    /// Members that failed to answer this node, as `region:reason` → count (refused,
    /// over_budget, timeout, bad_proof, unreachable).
    pub member_failures: BTreeMap<String, u64>,
    /// Asking members this node refused for exceeding their budget → count.
    pub over_budget: BTreeMap<String, u64>,
    /// Asking members other members report refusing over their budget (signed reports
    /// gossiped to every member): asker → reporter → count.
    #[serde(default)]
    pub over_budget_reported: BTreeMap<String, BTreeMap<String, u64>>,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    /// Connected members: region → peer id.
    pub connected: BTreeMap<String, String>,
    /// Highest head any peer reported, per region.
    pub best_known: BTreeMap<String, u64>,
    /// Last time (ms since the epoch) anything was heard from each member.
    pub last_contact_ms: BTreeMap<String, i64>,
}

/// `GET /v1/log/{region}`: envelopes verbatim, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// Region.
    pub region: String,
    /// Sequence number of the first envelope.
    pub from: u64,
    /// Envelopes, hex.
    pub envelopes: Vec<String>,
    /// When this node applied each (node clock, ms), where it remembers.
    pub received_ms: Vec<Option<i64>>,
}

/// `POST /v1/admin/partition` (only on nodes whose configuration enables drill faults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRequest {
    /// Regions whose nodes this node must not talk to; empty heals.
    pub blocked: Vec<String>,
    /// Percentage of received gossip messages and pulled ranges to drop (0 = none).
    #[serde(default, deserialize_with = "whole_number")]
    pub loss_percent: u8,
    /// Answer other members' person-key requests with evaluations under a wrong share
    /// (a lying member, for drills: the askers' proof checks must catch it).
    #[serde(default)]
    pub lie_person_keys: bool,
}

/// A JSON number that is a whole number of the target type: `75` and `75.0` alike (JSON
/// Schema's "integer" admits both).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let x = f64::deserialize(d)?;
    if x.fract() == 0.0 && (0.0..=f64::from(u8::MAX)).contains(&x) {
        Ok(x as u8)
    } else {
        Err(serde::de::Error::custom(format!(
            "{x} is not a whole number from 0 to {}",
            u8::MAX
        )))
    }
}

/// An optional whole number of `u16` (see [`whole_number`]).
fn optional_whole_u16<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let Some(x) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if x.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(&x) {
        Ok(Some(x as u16))
    } else {
        Err(serde::de::Error::custom(format!(
            "{x} is not a whole number from 0 to {}",
            u16::MAX
        )))
    }
}

/// A person to hash: `POST /v1/persons/refs`, to the department's own node only (the
/// clear number travels in this body over mutual TLS, never in a URL, and the node
/// neither stores nor logs it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonToHash {
    /// Resident identity number, clear.
    pub number: String,
    /// Name as on the decision document.
    pub name: String,
}

/// `POST /v1/persons/refs`: up to [`MAX_PERSONS_PER_REQUEST`] persons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRefsRequest {
    /// The persons.
    pub persons: Vec<PersonToHash>,
}

/// Persons hashed per request at most: each hash is deliberately slow (docs/privacy.md).
pub const MAX_PERSONS_PER_REQUEST: usize = 512;

/// The answer: the form records carry, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRefsAnswer {
    /// Keyed hash, mask and name of each person.
    pub refs: Vec<credfed_protocol::ids::PersonRef>,
}

/// `POST /v1/check`: exactly one of `uscc` and `person` (a person's number only ever in a
/// request body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Unified Social Credit Code.
    #[serde(
        default,
        deserialize_with = "present_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub uscc: Option<String>,
    /// Resident identity number, clear (hashed by the node, never stored or logged).
    #[serde(
        default,
        deserialize_with = "present_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub person: Option<String>,
    /// Domain of the asking department, e.g. `procurement`.
    pub domain: String,
    /// Answer with proofs under a federation checkpoint (a proven answer, verifiable
    /// offline with `credfed verify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proofs: bool,
    /// With `proofs`: carry the signed manifest in the answer (about 30 KB, its
    /// catalogue), so that an evidence file verifies with the authority key alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manifest: bool,
}

/// Deserialises a field that may be absent but, when present, is a string and not
/// `null`: what the OpenAPI document's `"type": "string"` says.
fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    <String as Deserialize>::deserialize(d).map(Some)
}

/// `POST /v1/admin/person-key-ceremony`: start this member's part of a person-key
/// ceremony (docs/operator.md, "Person keys"). Every member's operator starts the same
/// plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyRequest {
    /// `generate` (a new key), `refresh` (new shares of the manifest's key) or `repair`
    /// (a member's lost share given back, or a new member's first share).
    pub kind: String,
    /// The label the members agreed on.
    pub label: String,
    /// Members needed for one person key (generation only; default: a majority).
    #[serde(default, deserialize_with = "optional_whole_u16")]
    pub threshold: Option<u16>,
    /// Members taking part (default: every member for a generation, every current
    /// share holder for a refresh; a refresh may leave members out to remove them). For
    /// a repair: the helpers (default every other share holder; at least the threshold).
    #[serde(default)]
    pub members: Option<Vec<String>>,
    /// The member being repaired (repair only).
    #[serde(default)]
    pub member: Option<String>,
}

/// Where a ceremony stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyState {
    /// Exchanging packages.
    Running,
    /// This member's share is written; `person_key` lists the public shares.
    Done,
    /// Stopped; `error` says why and names the member at fault where there is one.
    Failed,
}

/// What `GET /v1/admin/person-key-ceremony` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyStatus {
    /// The ceremony's id (the plan's hash; equal at every member that started the same
    /// plan).
    pub ceremony: credfed_protocol::crypto::Hash256,
    /// The member this status is from.
    pub member: credfed_protocol::ids::RegionCode,
    /// `generate` or `refresh`.
    pub kind: String,
    /// The plan's label.
    pub label: String,
    /// Members needed for one person key.
    pub threshold: u16,
    /// The members, in plan order.
    pub members: Vec<credfed_protocol::ids::RegionCode>,
    /// Running, done or failed.
    pub state: CeremonyState,
    /// When this member's operator started it (ms since the epoch).
    pub started_ms: i64,
    /// Round-1 packages held (this member's own included).
    pub round1_held: usize,
    /// Round-2 packages received.
    pub round2_held: usize,
    /// Members whose package this member still needs for its next step.
    pub waiting_for: Vec<credfed_protocol::ids::RegionCode>,
    /// Members this member's messages have not reached yet, with the last reason.
    pub undelivered: Vec<Undelivered>,
    /// Why it failed.
    pub error: Option<String>,
    /// This member's new share (0600), once done.
    pub share_file: Option<std::path::PathBuf>,
    /// The public shares for the next manifest, once done (with the budget of the
    /// manifest this node runs, or the defaults).
    pub person_key: Option<credfed_protocol::manifest::PersonKeyShares>,
    /// The file the public shares were written to, for the federation authority.
    pub person_key_file: Option<std::path::PathBuf>,
}

/// A member not reached yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    /// The member.
    pub region: credfed_protocol::ids::RegionCode,
    /// Messages waiting for it.
    pub messages: usize,
    /// The last failure or refusal.
    pub last_error: Option<String>,
}

/// What the federation authority reads (`credfed federation person-key --from FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyResult {
    /// The ceremony.
    pub ceremony: credfed_protocol::crypto::Hash256,
    /// Its label.
    pub label: String,
    /// The member that wrote this file.
    pub written_by: credfed_protocol::ids::RegionCode,
    /// The public shares for the manifest's `person_key`.
    pub person_key: credfed_protocol::manifest::PersonKeyShares,
}

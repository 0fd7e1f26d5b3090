//! Drill scenarios: TOML files of steps (see `docs/testnet.md`).

use serde::{Deserialize, Serialize};

/// A scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it rehearses.
    #[serde(default)]
    pub description: String,
    /// Steps, in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

fn default_measures() -> Vec<String> {
    vec!["P-PROCUREMENT".into()]
}

/// Regions a step applies to: `"all"`, `"targets"` (of an action) or a list of codes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Regions {
    /// A keyword.
    Word(String),
    /// Region codes.
    List(Vec<String>),
}

/// One step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Publish a list entry; `id` names it for later steps.
    Publish {
        /// Name for later steps.
        id: String,
        /// Issuing region.
        region: String,
        /// `black` or `red`.
        #[serde(default = "black")]
        list: String,
        /// Category (default: `defying_judgment_or_decision` on the black list,
        /// `good_credit_classification` on the red).
        #[serde(default)]
        category: Option<String>,
        /// Subject, an organisation: its USCC.
        #[serde(default)]
        uscc: Option<String>,
        /// Subject, a natural person: `NUMBER:NAME`; keyed by the publishing node.
        #[serde(default)]
        person: Option<String>,
        /// Related persons, `ROLE:NUMBER:NAME` (article 十四); keyed by the publishing node.
        #[serde(default)]
        related: Vec<String>,
        /// Findings of the decision, e.g. `able_but_refuses`.
        #[serde(default)]
        findings: Vec<String>,
        /// Measures requested.
        #[serde(default = "default_measures")]
        measures: Vec<String>,
        /// Days until expiry (default 3 years).
        #[serde(default)]
        expires_in_days: Option<i32>,
    },
    /// Publish a credit evaluation result (articles 六, 十六).
    Evaluation {
        /// Evaluating region.
        region: String,
        /// Subject USCC.
        uscc: String,
        /// Scheme code.
        scheme: String,
        /// Class such as A or D.
        class: String,
    },
    /// Wait until an entry is in a state at the given nodes (a condition with a deadline).
    WaitUntil {
        /// Where.
        #[serde(default = "all")]
        at: Regions,
        /// Entry name.
        entry: String,
        /// State to reach.
        state: String,
        /// Deadline in milliseconds.
        #[serde(default = "thirty_seconds")]
        timeout_ms: u64,
    },
    /// Correct an entry's summary (issuing region).
    Amend {
        /// Entry name.
        entry: String,
        /// The correction removes every related person (they were wrongly named): from
        /// then on no measure may reach them through this entry anywhere.
        #[serde(default)]
        drop_related: bool,
    },
    /// Revoke an entry (issuing region).
    Revoke {
        /// Entry name.
        entry: String,
    },
    /// Credit repair (issuing region).
    Repair {
        /// Entry name.
        entry: String,
    },
    /// Initiate a joint action on an entry, from its issuing region.
    Initiate {
        /// Name for later steps.
        id: String,
        /// Entry name.
        entry: String,
        /// `all` or a list of target regions.
        #[serde(default = "all")]
        targets: Regions,
        /// Measures asked for.
        #[serde(default = "default_measures")]
        measures: Vec<String>,
    },
    /// Target regions acknowledge an action.
    Acknowledge {
        /// Action name.
        action: String,
        /// Which regions answer (`targets` = every target).
        #[serde(default = "targets")]
        regions: Regions,
    },
    /// Target regions report execution of a measure.
    Execute {
        /// Action name.
        action: String,
        /// Measure code.
        measure: String,
        /// Which regions report.
        #[serde(default = "targets")]
        regions: Regions,
    },
    /// A region records an objection (suspends the entry everywhere).
    Object {
        /// Name for later steps.
        id: String,
        /// Entry name.
        entry: String,
        /// Recording region.
        region: String,
    },
    /// The issuing region resolves an objection.
    Resolve {
        /// Objection name.
        objection: String,
        /// `upheld`, `corrected` or `revoked`.
        outcome: String,
    },
    /// A subject applies for credit repair at a region's objection desk (articles 十八,
    /// 二十一); the entry's issuing region decides it in a `decide_repair` step.
    ApplyRepair {
        /// Name for later steps.
        id: String,
        /// Entry name.
        entry: String,
        /// Recording region (any member).
        region: String,
    },
    /// A region's licensing department records a subject's written commitment under
    /// 容缺受理 (article 四), made ten days ago and due yesterday, so that a later
    /// `settle_commitment` may find it kept or breached at once.
    MakeCommitment {
        /// Name for later steps.
        id: String,
        /// Recording region.
        region: String,
        /// The subject's USCC.
        uscc: String,
    },
    /// The recording region settles a commitment: `fulfilled` (on its deadline) or
    /// `breached` (today, after it).
    SettleCommitment {
        /// Commitment name.
        commitment: String,
        /// `fulfilled` or `breached`.
        outcome: String,
    },
    /// Every listed node's check of the commitment's subject (licensing) shows it in
    /// `state` (`overdue`, `breached`), or not at all (`none`: fulfilled).
    AssertCommitment {
        /// Nodes that must show it.
        #[serde(default = "all")]
        at: Regions,
        /// Commitment name.
        commitment: String,
        /// `overdue`, `breached` or `none`.
        state: String,
    },
    /// A region's publishers disclose a penalty decision (双公示, article 十七): decided
    /// today, or twenty days ago when `late` (past the 7 working days).
    Disclose {
        /// Name for later steps.
        id: String,
        /// Disclosing region.
        region: String,
        /// The subject's USCC.
        uscc: String,
        /// Decided twenty days before it is disclosed.
        #[serde(default)]
        late: bool,
    },
    /// Every listed live node holds the disclosure and judges it late (or in time).
    AssertDisclosure {
        /// Nodes to ask.
        #[serde(default = "all")]
        at: Regions,
        /// Disclosure name.
        disclosure: String,
        /// Expected lateness.
        late: bool,
    },
    /// The issuing region decides a repair application.
    DecideRepair {
        /// Application name.
        application: String,
        /// `repaired`, `refused` or `not_accepted`.
        outcome: String,
    },
    /// A stream of publications from one region.
    Burst {
        /// Region.
        region: String,
        /// How many.
        count: usize,
        /// Wait for each record to reach every reachable node and time it.
        #[serde(default)]
        measure: bool,
        /// Then wait until a proven answer at another node covers it, and time that
        /// (docs/testnet.md, `proven_visible_ms`).
        #[serde(default)]
        measure_proven: bool,
        /// Writes in flight at once (default 1: each waits for the one before), as a
        /// department's import keeps many in flight; the node makes them durable and
        /// gossips them in groups. Measuring each record needs 1.
        #[serde(default)]
        concurrency: Option<usize>,
    },
    /// Add a member while the federation runs (docs/operator.md, "Adding a member"): the
    /// authority signs the next manifest naming `region`, whose node was prepared but
    /// left out of the first manifest; it is installed on `via` only; every running
    /// member must run it within the deadline, in its own process; then the new node
    /// starts on it and its departments are registered.
    AddMember {
        /// The region to add (not among the drill's members at the start).
        region: String,
        /// The member whose operator installs the manifest (default: the first).
        #[serde(default)]
        via: Option<String>,
        /// Deadline in milliseconds for every member to run it.
        #[serde(default = "sixty_seconds")]
        timeout_ms: u64,
    },
    /// SIGKILL a node.
    Kill {
        /// Region.
        region: String,
    },
    /// Restart a killed or stopped node.
    Restart {
        /// Region.
        region: String,
    },
    /// Restart a node with its clock moved by `offset_ms` (its envelopes carry the skewed
    /// time; deadlines it computes move with it).
    Skew {
        /// Region.
        region: String,
        /// Milliseconds added to the system clock (negative: behind).
        offset_ms: i64,
    },
    /// SIGSTOP a node.
    Pause {
        /// Region.
        region: String,
    },
    /// SIGCONT a paused node.
    Resume {
        /// Region.
        region: String,
    },
    /// Stop a node, delete its store, restart it: it must recover its own log from peers.
    Wipe {
        /// Region.
        region: String,
    },
    /// Split the federation: nodes talk only within their group (regions not listed form
    /// their own group).
    Partition {
        /// Groups of region codes.
        groups: Vec<Vec<String>>,
    },
    /// Cut links one way: packets from the `from` regions' nodes no longer reach the `to`
    /// regions' nodes (TCP then fails both ways, as on a real asymmetric fault). Adds to
    /// the cuts in force.
    OneWay {
        /// Sending regions.
        from: Vec<String>,
        /// Receiving regions.
        to: Vec<String>,
    },
    /// Drop a share of the packets that reach these regions' nodes from other nodes
    /// (`percent` = 0 removes the loss).
    Loss {
        /// Receiving regions.
        #[serde(default = "all")]
        regions: Regions,
        /// Percentage dropped, 0..=100.
        percent: u8,
    },
    /// Remove every partition, cut and loss.
    Heal,
    /// Wait until every live node is connected to exactly the live nodes it can reach
    /// under the faults in force: a cut noticed (silent connections closed), a healed
    /// link re-dialled.
    WaitLinks {
        /// Deadline in milliseconds.
        #[serde(default = "thirty_seconds")]
        timeout_ms: u64,
    },
    /// Wait until every live node holds the same heads (and check invariants).
    WaitConverged {
        /// Deadline in milliseconds.
        #[serde(default = "thirty_seconds")]
        timeout_ms: u64,
    },
    /// Ask nodes a check (应查必查) and compare.
    AssertCheck {
        /// Where to ask.
        #[serde(default = "all")]
        at: Regions,
        /// Subject, an organisation.
        #[serde(default)]
        uscc: Option<String>,
        /// Subject, a natural person: resident identity number (sent in a POST body).
        #[serde(default)]
        person: Option<String>,
        /// Domain.
        domain: String,
        /// Mandatory measures expected to apply (exactly).
        #[serde(default)]
        mandatory: Vec<String>,
        /// Recommended measures expected to apply (exactly).
        #[serde(default)]
        recommended: Vec<String>,
    },
    /// Person keys at these nodes: once each node's status says they are (un)available
    /// (waited for, up to `timeout_ms`), a person check there must answer accordingly —
    /// 200, or 503 `person_checks_unavailable` (docs/privacy.md, "Availability").
    AssertPersonKeys {
        /// Where to ask.
        #[serde(default = "all")]
        at: Regions,
        /// Whether t members holding shares should be reachable there.
        available: bool,
        /// How long the status may take to say so.
        #[serde(default = "person_keys_timeout")]
        timeout_ms: u64,
    },
    /// Every member refreshes its person-key share over the members' connections (the
    /// operators' `credfed person-key start --refresh`), up to `timeout_ms`: every member
    /// must end with the same public shares, its own new share written, and the same key
    /// (the public shares interpolate to the manifest's public value). The nodes keep
    /// running on their current shares (adopting needs a new manifest).
    PersonKeyRefresh {
        /// The plan's label.
        label: String,
        /// How long the ceremony may take.
        #[serde(default = "person_keys_timeout")]
        timeout_ms: u64,
    },
    /// Person keys under load at `region`: `singles` numbers keyed one request at a
    /// time (latency percentiles in the report), then `batched` numbers in requests of
    /// 512 as a bulk import sends them (persons per second in the report). Numbers are
    /// made up and valid; none is published.
    PersonKeyLoad {
        /// Asking region.
        region: String,
        /// Numbers keyed one at a time.
        #[serde(default)]
        singles: u32,
        /// Numbers keyed in batches.
        #[serde(default)]
        batched: u32,
    },
    /// Ask nodes for an entry's state.
    AssertEntry {
        /// Where to ask.
        #[serde(default = "all")]
        at: Regions,
        /// Entry name.
        entry: String,
        /// Expected state (`active`, `suspended`, `revoked`, `repaired`, `expired`, `pending`).
        state: String,
    },
    /// Ask nodes for an action's target lines.
    AssertAction {
        /// Where to ask.
        #[serde(default = "all")]
        at: Regions,
        /// Action name.
        action: String,
        /// Which target lines (`targets` = every target).
        #[serde(default = "targets")]
        regions: Regions,
        /// Expected status: `awaiting`, `overdue`, `accepted`, `partly` or `declined`.
        status: String,
        /// A measure each of those regions must report executed (and not lifted).
        #[serde(default)]
        executed: Option<String>,
    },
    /// Ask a region's node for its inbox (every role's tasks, as its operator sees
    /// them): a task of `kind` about the named entry or action must be there (or, with
    /// `absent`, must not).
    AssertInbox {
        /// The region whose inbox.
        region: String,
        /// Task kind: `acknowledge`, `report_execution`, `lift`, `resolve_objection`,
        /// `decide_repair`, `settle_commitment`.
        kind: String,
        /// Name of the entry (repair applications), action or commitment the task is
        /// about.
        about: String,
        /// The task must not be there.
        #[serde(default)]
        absent: bool,
    },
    /// Fail here if any invariant has been violated so far.
    AssertInvariants,
    /// Submit invalid records (forged signature, wrong role, another region revoking) and
    /// check that each is refused and nothing is stored.
    InjectInvalid {
        /// Entry name to attack.
        entry: String,
        /// Region whose node receives the forgeries.
        region: String,
    },
    /// Make a member equivocate: stop it, wipe its store, start it alone and let it write a
    /// different history; every other node must detect it.
    Equivocate {
        /// Region.
        region: String,
    },
    /// A member forks its log across a partition: a second copy of its node (from a copy
    /// of its store, with its own address) runs on the side of `side`, the original on
    /// the other, and each writes a different record at the same position. For
    /// `watch_ms` every node is asked for proven answers about both records and each is
    /// verified: no two that contradict may verify. Then the copy stops and the
    /// partition heals; every honest node must flag the member within 5 s, although
    /// the fork sits quietly at the tip of both copies.
    ForkAcrossPartition {
        /// The forking member.
        region: String,
        /// The members that see its copy (the rest see the original).
        side: Vec<String>,
        /// How long proven answers are asked for during the split.
        #[serde(default = "fifteen_seconds")]
        watch_ms: u64,
    },
}

fn fifteen_seconds() -> u64 {
    15_000
}

fn person_keys_timeout() -> u64 {
    30_000
}

fn black() -> String {
    "black".into()
}
fn all() -> Regions {
    Regions::Word("all".into())
}
fn targets() -> Regions {
    Regions::Word("targets".into())
}
fn thirty_seconds() -> u64 {
    30_000
}

fn sixty_seconds() -> u64 {
    60_000
}

impl Scenario {
    /// Regions an `add_member` step adds: their nodes are prepared at the start but left
    /// out of the first manifest.
    pub fn regions_added(&self) -> anyhow::Result<Vec<credfed_protocol::ids::RegionCode>> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::AddMember { region, .. } => Some(region),
                _ => None,
            })
            .map(|r| {
                r.parse::<u32>()
                    .ok()
                    .and_then(|c| credfed_protocol::ids::RegionCode::new(c, "region").ok())
                    .filter(|c| c.is_province())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "add_member.region: {r:?} is not a provincial-level region code"
                        )
                    })
            })
            .collect()
    }
}

impl Step {
    /// The step's kind, as written in the file.
    pub fn kind(&self) -> String {
        format!("{self:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_string()
    }
}

/// A company no scenario may list or evaluate: the `proven_answers_verify` invariant
/// asks every convergence for a proven answer that all regions hold nothing about it,
/// which a step naming it would make false (docs/testnet.md, "Invariants").
pub const UNLISTED_USCC: &str = "91110000100000000R";

/// Parses a scenario, refusing one whose steps list or evaluate [`UNLISTED_USCC`].
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let scenario: Scenario = toml::from_str(text)?;
    for (i, step) in scenario.steps.iter().enumerate() {
        let named = match step {
            Step::Publish { uscc, .. } => uscc.as_deref(),
            Step::Evaluation { uscc, .. }
            | Step::MakeCommitment { uscc, .. }
            | Step::Disclose { uscc, .. } => Some(uscc.as_str()),
            _ => None,
        };
        if named == Some(UNLISTED_USCC) {
            anyhow::bail!(
                "step[{i}].uscc: {UNLISTED_USCC} is reserved as the subject every convergence proves unlisted; choose another USCC"
            );
        }
    }
    Ok(scenario)
}

/// The scenarios shipped in `testnet/scenarios/`, by file stem.
pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../scenarios/default.toml")),
    (
        "01-joint-punishment",
        include_str!("../scenarios/01-joint-punishment.toml"),
    ),
    (
        "02-objection",
        include_str!("../scenarios/02-objection.toml"),
    ),
    (
        "03-repair-expiry-red-list",
        include_str!("../scenarios/03-repair-expiry-red-list.toml"),
    ),
    (
        "04-partition-heal",
        include_str!("../scenarios/04-partition-heal.toml"),
    ),
    (
        "05-origin-offline",
        include_str!("../scenarios/05-origin-offline.toml"),
    ),
    (
        "06-kill-and-wipe",
        include_str!("../scenarios/06-kill-and-wipe.toml"),
    ),
    (
        "07-equivocation-intruder",
        include_str!("../scenarios/07-equivocation-intruder.toml"),
    ),
    (
        "08-one-way-and-loss",
        include_str!("../scenarios/08-one-way-and-loss.toml"),
    ),
    (
        "09-fork-across-partition",
        include_str!("../scenarios/09-fork-across-partition.toml"),
    ),
    (
        "10-add-member",
        include_str!("../scenarios/10-add-member.toml"),
    ),
    (
        "perf-propagation",
        include_str!("../scenarios/perf-propagation.toml"),
    ),
    ("perf-proven", include_str!("../scenarios/perf-proven.toml")),
    (
        "perf-person-keys",
        include_str!("../scenarios/perf-person-keys.toml"),
    ),
    (
        "perf-heal-10k",
        include_str!("../scenarios/perf-heal-10k.toml"),
    ),
    (
        "perf-stream-10k",
        include_str!("../scenarios/perf-stream-10k.toml"),
    ),
];

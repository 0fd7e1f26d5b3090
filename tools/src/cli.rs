//! Command-line surface (clap). Every setting that names a node, a key or a manifest can
//! also come from the environment (`CREDFED_*`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "credfed", version, about = "Sign, submit and check credit records of a credfed federation (国发〔2016〕33号)", long_about = None)]
pub struct Cli {
    /// Output for people (tables) or machines (JSON).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "CREDFED_OUTPUT")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// How to reach a node's API.
#[derive(Args, Clone)]
pub struct NodeArgs {
    /// Node API address (host:port).
    #[arg(long, env = "CREDFED_NODE", default_value = "127.0.0.1:8443")]
    pub node: String,
    /// The node's API CA certificate (api-ca.pem from the node's operator).
    #[arg(long, env = "CREDFED_CA")]
    pub ca: PathBuf,
    /// Client certificate the node issued to your department.
    #[arg(long, env = "CREDFED_CERT")]
    pub cert: PathBuf,
    /// Its private key.
    #[arg(long, env = "CREDFED_CERT_KEY")]
    pub cert_key: PathBuf,
}

/// Who signs.
#[derive(Args, Clone)]
pub struct SignArgs {
    /// Authoring department, REGION:UNIT (REGION:operator for the region's operator,
    /// who registers and revokes departments with the operator key).
    #[arg(long, env = "CREDFED_AUTHOR")]
    pub author: String,
    /// The department's secret key file (from `credfed key gen`).
    #[arg(long, env = "CREDFED_KEY")]
    pub key: PathBuf,
    /// The federation manifest (gives the federation id that every signature names).
    #[arg(long, env = "CREDFED_MANIFEST")]
    pub manifest: PathBuf,
    /// Print the signed record instead of submitting it.
    #[arg(long)]
    pub dry_run: bool,
}

// Parsed once per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Cmd {
    /// Validate identifiers (USCC, GB 32100-2015; resident identity numbers, GB 11643-1999).
    Id {
        #[command(subcommand)]
        command: IdCmd,
    },
    /// Generate and show keys.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// Build, sign and verify the federation manifest.
    Federation {
        #[command(subcommand)]
        command: FederationCmd,
    },
    /// Register, revoke and show departments.
    Dept {
        #[command(subcommand)]
        command: DeptCmd,
    },
    /// Red- and black-list entries.
    Entry {
        #[command(subcommand)]
        command: EntryCmd,
    },
    /// Credit evaluation results.
    Evaluation {
        #[command(subcommand)]
        command: EvaluationCmd,
    },
    /// Joint incentives and punishments.
    Action {
        #[command(subcommand)]
        command: ActionCmd,
    },
    /// Objections and complaints.
    Objection {
        #[command(subcommand)]
        command: ObjectionCmd,
    },
    /// Credit repair on the subject's application (信用修复, articles 十八, 二十一).
    Repair {
        #[command(subcommand)]
        command: RepairCmd,
    },
    /// Written commitments under 容缺受理 (信用承诺, article 四).
    Commitment {
        #[command(subcommand)]
        command: CommitmentCmd,
    },
    /// Licensing and penalty decisions made public (双公示, article 十七).
    Disclosure {
        #[command(subcommand)]
        command: DisclosureCmd,
    },
    /// Sign and submit any record body given as JSON (see docs/protocol.md).
    Submit {
        /// File with the body as JSON, e.g. {"list_entry_revoked": {...}}.
        file: PathBuf,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Import existing list data (CSV or JSON Lines), validating every row first.
    Import(ImportArgs),
    /// 应查必查: what applies to a subject in a domain.
    Check {
        /// USCC or resident identity number (a number is sent in the request body only).
        code: String,
        /// The code's kind, when it is valid as both.
        #[arg(long, value_enum)]
        kind: Option<IdKind>,
        /// Domain of your approval workflow, e.g. procurement, licensing, travel.
        #[arg(long)]
        domain: String,
        /// Save the full answer (with evidence) for offline verification.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Ask for a proven answer: per region a map proof (the subject's records, or
        /// that there are none) and inclusion proofs under a federation checkpoint that
        /// a majority of members cosigned.
        #[arg(long)]
        proofs: bool,
        /// Export the proven answer as one self-contained evidence file (implies
        /// --proofs), to attach to an approval file; check it with `credfed verify`.
        #[arg(long)]
        evidence: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Verify a saved check answer or evidence file offline: signatures, authorisation
    /// and states; for proven answers also the cosignature quorum, map and inclusion
    /// proofs, the answering node's signature, each region's freshness, and the answer
    /// itself, recomputed from the proven evidence. Exit 0 verified, 5 not verified,
    /// 6 verified but partial (with --partial), 7 authority not pinned.
    Verify {
        /// The answer (JSON from `credfed check --save`) or evidence file (from
        /// `credfed check --evidence`).
        answer: PathBuf,
        /// Oldest acceptable federation checkpoint and region head, in seconds before
        /// now (or --at): a region whose head is older is stale.
        #[arg(long, default_value_t = 300)]
        max_age: u64,
        /// Verify as of this instant (seconds since the epoch) instead of now: to
        /// re-check an archived evidence file as it stood when it was filed.
        #[arg(long)]
        at: Option<u64>,
        /// Accept an answer in which some regions are stale or excluded for
        /// equivocation: it verifies with exit code 6 and names them.
        #[arg(long)]
        partial: bool,
        /// The federation manifest (signed). Optional when the evidence file carries
        /// the manifest its checkpoint names.
        #[arg(long, env = "CREDFED_MANIFEST")]
        manifest: Option<PathBuf>,
        /// Federation authority public key (hex): the manifest must be signed by it.
        #[arg(long, env = "CREDFED_AUTHORITY_KEY")]
        authority_key: Option<String>,
        /// Verify against the manifest without checking who signed it (anyone can make
        /// a manifest: the first line of the result says so).
        #[arg(long)]
        trust_manifest: bool,
        /// For an answer about a person: the resident identity number to confirm it is
        /// about, through your own node (which alone computes person keys).
        #[arg(long)]
        person: Option<String>,
        /// Your node's API address (with --person).
        #[arg(long, env = "CREDFED_NODE")]
        node: Option<String>,
        /// Your node's API CA certificate (with --person).
        #[arg(long, env = "CREDFED_CA")]
        ca: Option<PathBuf>,
        /// Your department's client certificate (with --person).
        #[arg(long, env = "CREDFED_CERT")]
        cert: Option<PathBuf>,
        /// Its private key (with --person).
        #[arg(long, env = "CREDFED_CERT_KEY")]
        cert_key: Option<PathBuf>,
    },
    /// Verify evidence that a member equivocated (two envelopes it signed at one
    /// position, JSON as `GET /v1/log/{region}/checkpoint` gives it under
    /// `equivocation_evidence`) or showed a split view (two checkpoints it signed with
    /// one size and different roots), offline against the manifest.
    VerifyEvidence {
        /// The evidence (JSON).
        evidence: PathBuf,
        /// The federation manifest (signed).
        #[arg(long, env = "CREDFED_MANIFEST")]
        manifest: PathBuf,
        /// Federation authority public key (hex).
        #[arg(long, env = "CREDFED_AUTHORITY_KEY")]
        authority_key: Option<String>,
        /// Verify against the manifest without checking who signed it.
        #[arg(long)]
        trust_manifest: bool,
    },
    /// The measures catalogue (措施清单): which measures exist, where they bite, on whom
    /// they fall and what they rest on (docs/measures.md).
    Measures {
        #[command(subcommand)]
        command: MeasuresCmd,
    },
    /// Your department's inbox: what your region must do (acknowledge joint actions,
    /// report execution, lift measures, resolve objections), earliest due first.
    Inbox {
        /// Only tasks of this kind.
        #[arg(long, value_enum)]
        kind: Option<TaskKindArg>,
        /// Only overdue tasks.
        #[arg(long)]
        overdue: bool,
        /// Tasks per page (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Tasks to skip (the next offset a previous page printed).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Follow the records that concern your region as they arrive (actions naming it,
    /// answers to its actions, objections and repair applications to its records, and
    /// their outcomes); one line each. Resume with `--from` the last id printed.
    Events {
        /// Where to start: the id of the last event received, `now`, or nothing for the
        /// start of every log.
        #[arg(long)]
        from: Option<String>,
        /// Stop after this many events (default: follow until interrupted).
        #[arg(long)]
        count: Option<usize>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Supervision report (通报, article 二十三) per period, region and department;
    /// `--csv` for a spreadsheet.
    Report {
        /// day, month or quarter.
        #[arg(long, default_value = "month")]
        period: String,
        /// First day (default: 30 days ago).
        #[arg(long)]
        from: Option<String>,
        /// Last day (default: today).
        #[arg(long)]
        to: Option<String>,
        /// Print CSV (RFC 4180) instead of a table.
        #[arg(long, conflicts_with = "xlsx")]
        csv: bool,
        /// Write a spreadsheet for 通报 to this file (figures, mandatory-decline reasons).
        #[arg(long)]
        xlsx: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Tracking statistics of a node (跟踪问效).
    Stats {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// The person key's shares (docs/operator.md, "Person keys"): start this member's
    /// part of a key generation or refresh, and follow it to the end.
    PersonKey {
        #[command(subcommand)]
        command: PersonKeyCmd,
    },
    /// A node's status.
    Status {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// A node's peers.
    Peers {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum MeasuresCmd {
    /// List measures, filtered: e.g. `--domain travel --bearer legal_representative`.
    List {
        /// Only incentives or only punishments.
        #[arg(long, value_enum)]
        kind: Option<MeasureKindArg>,
        /// Only those that bite in this domain (e.g. procurement, travel, licensing).
        #[arg(long)]
        domain: Option<String>,
        /// Only those that fall on this bearer: organisation, natural_person, or a
        /// related person's role (legal_representative, principal_responsible,
        /// actual_controller, directly_responsible,
        /// director_supervisor_or_senior_manager).
        #[arg(long)]
        bearer: Option<String>,
        /// Only punishments that serve entries of this group of article 九 (1–4).
        #[arg(long)]
        group: Option<u8>,
        /// Only mandatory (强制性) measures.
        #[arg(long, conflicts_with = "recommended")]
        mandatory: bool,
        /// Only recommended (推荐性) measures.
        #[arg(long)]
        recommended: bool,
        /// Read the catalogue of this manifest (signed or draft) instead of the one
        /// this build embeds.
        #[arg(long, env = "CREDFED_MANIFEST")]
        manifest: Option<PathBuf>,
    },
    /// Print the catalogue as Markdown (what docs/measures.md holds for the embedded
    /// catalogue).
    Doc {
        /// Read the catalogue of this manifest (signed or draft) instead.
        #[arg(long, env = "CREDFED_MANIFEST")]
        manifest: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TaskKindArg {
    /// Answer a joint action.
    Acknowledge,
    /// Report the execution of accepted measures.
    ReportExecution,
    /// Lift executed measures of an entry no longer in force.
    Lift,
    /// Resolve an objection.
    ResolveObjection,
    /// Decide a credit-repair application.
    DecideRepair,
    /// Record a written commitment fulfilled or breached.
    SettleCommitment,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MeasureKindArg {
    /// 守信联合激励.
    Incentive,
    /// 失信联合惩戒.
    Punishment,
}

#[derive(Subcommand)]
pub enum IdCmd {
    /// Check codes; exits 0 only if all are valid.
    Check {
        /// Codes to check.
        #[arg(required = true)]
        codes: Vec<String>,
        /// Force the kind instead of detecting it.
        #[arg(long, value_enum)]
        kind: Option<IdKind>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum IdKind {
    Uscc,
    Person,
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Generate a key file (mode 0600; never overwrites).
    Gen {
        /// What the key is for.
        #[arg(long, value_enum)]
        kind: KeyKind,
        /// File to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a department's API (TLS) key and a certificate signing request for it: the
    /// key stays here (mode 0600), the request goes to the node's operator
    /// (`credfed-node issue-client-cert --csr`), the certificate comes back.
    Csr {
        /// The department, e.g. 310000:scjgj.
        #[arg(long)]
        department: String,
        /// Directory to write <department>.key and <department>.csr into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a key file's public key (and PeerId for node keys).
    Show {
        /// Key file.
        key: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KeyKind {
    Authority,
    Node,
    /// A province operator's key: signs its department registrations and revocations
    /// (author `<region>:operator`); kept by the operator, never on the node.
    Operator,
    Department,
}

#[derive(Subcommand)]
pub enum FederationCmd {
    /// Create an unsigned manifest from a members file (TOML: [[member]] region, name, node_key, operator_key, addresses).
    Init {
        /// Members file.
        #[arg(long)]
        members: PathBuf,
        /// Federation id.
        #[arg(long)]
        federation_id: String,
        /// Authority public key (hex) or key file.
        #[arg(long)]
        authority: String,
        /// Days until the manifest expires.
        #[arg(long, default_value_t = 365)]
        valid_days: i64,
        /// Manifest version.
        #[arg(long, default_value_t = 1)]
        version: u64,
        /// Cosignatures of other members a region's checkpoint needs at least; default
        /// and minimum: the quorum the tolerated faults require, ⌈(n + f)/2⌉.
        #[arg(long)]
        witnesses: Option<u16>,
        /// Faulty members the federation's quorums tolerate; default: the most the
        /// membership allows, ⌊(n − 2)/3⌋ (docs/design.md, "Availability under
        /// partition").
        #[arg(long)]
        faults_tolerated: Option<u16>,
        /// Draft file to write (unsigned manifest JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add or replace a member in a draft.
    AddMember {
        /// Draft manifest.
        draft: PathBuf,
        /// Region code.
        #[arg(long)]
        region: String,
        /// Platform name.
        #[arg(long)]
        name: String,
        /// Node public key (hex).
        #[arg(long)]
        node_key: String,
        /// The province operator's public key (hex, or its `.pub` file): signs the
        /// region's department registrations (`credfed key gen --kind operator`).
        #[arg(long)]
        operator_key: String,
        /// Bootstrap addresses.
        #[arg(long, value_delimiter = ',')]
        addresses: Vec<String>,
    },
    /// Remove a member from a draft.
    RemoveMember {
        /// Draft manifest.
        draft: PathBuf,
        /// Region code.
        #[arg(long)]
        region: String,
    },
    /// Sign a draft with the authority key.
    Sign {
        /// Draft manifest.
        draft: PathBuf,
        /// Authority secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Signed manifest to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a signed manifest against the authority key.
    Verify {
        /// Signed manifest.
        manifest: PathBuf,
        /// Authority public key (hex).
        #[arg(long, env = "CREDFED_AUTHORITY_KEY")]
        authority_key: String,
    },
    /// Show a signed manifest or a draft.
    Show {
        /// File.
        manifest: PathBuf,
    },
    /// Put the public shares a person-key ceremony ended with into a draft (the members'
    /// files must agree), with the evaluation budget.
    PersonKey {
        /// Draft manifest.
        draft: PathBuf,
        /// A member's result: the person-key-*.json its node wrote, or
        /// `credfed person-key status --output json`. Give every member's, so that a
        /// member that saw other public shares is caught here.
        #[arg(long = "from", required = true)]
        from: Vec<PathBuf>,
        /// Evaluations a member answers per asking member and day (default: the
        /// draft's, or 50 000).
        #[arg(long)]
        evaluations_per_day: Option<u32>,
        /// Evaluations an asking member may use at once (default: the draft's, or
        /// 25 000).
        #[arg(long)]
        burst: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum PersonKeyCmd {
    /// Start this member's part of a ceremony; every member's operator starts the same
    /// plan (same kind, label, threshold and members).
    Start {
        /// A label the members agreed on, e.g. "2027-01 person key".
        #[arg(long)]
        label: String,
        /// Renew the shares of the manifest's key instead of making a new key (the key
        /// and every person key stay; leave members out with --members to remove them).
        #[arg(long)]
        refresh: bool,
        /// Give a member's lost share back, or a new member its first share of the
        /// manifest's key: the region being repaired (its own operator starts the same
        /// plan); --members names the helpers (default every other share holder).
        #[arg(long, value_name = "REGION", conflicts_with = "refresh")]
        repair: Option<String>,
        /// Members needed for one person key (generation only; default a majority).
        #[arg(long)]
        threshold: Option<u16>,
        /// Members taking part, comma-separated region codes (default: every member,
        /// or every current share holder for --refresh).
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        /// Wait up to this many seconds for the ceremony to end, showing progress.
        #[arg(long)]
        wait: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// The ceremony's progress; once done, the new share file and the public shares
    /// for the federation authority.
    Status {
        /// Wait up to this many seconds for the ceremony to end, showing progress.
        #[arg(long)]
        wait: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
pub enum DeptCmd {
    /// Register a department (signed by the node key or an operator department).
    Register {
        /// Department id REGION:UNIT.
        #[arg(long)]
        department: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Roles: publisher, initiator, implementer, objection_handler, operator.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// The department's public key (hex) or its key file.
        #[arg(long)]
        public_key: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Revoke a department.
    Revoke {
        /// Department id.
        #[arg(long)]
        department: String,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List registered departments (of one province with --region).
    List {
        /// Province code.
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show a department as registered.
    Show {
        /// Department id.
        department: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["uscc", "person"])))]
pub struct EntryFields {
    /// Subject, an organisation: its Unified Social Credit Code.
    #[arg(long)]
    pub uscc: Option<String>,
    /// Subject, a natural person: resident identity number. The node turns it into the
    /// keyed hash and mask records carry; the clear number is never recorded.
    #[arg(long)]
    pub person: Option<String>,
    /// Subject's registered name (a person's name as on the decision).
    #[arg(long)]
    pub name: String,
    /// A related person of an organisation (article 十四), ROLE:NUMBER:NAME; repeatable.
    /// Roles: legal_representative, principal_responsible, actual_controller,
    /// directly_responsible, director_supervisor_or_senior_manager.
    #[arg(long)]
    pub related: Vec<String>,
    /// Findings of the decision that measures require, e.g. able_but_refuses (有履行能力
    /// 但拒不履行, article 十一; only for article 九 group-3 categories).
    #[arg(long, value_delimiter = ',')]
    pub findings: Vec<String>,
    /// black or red.
    #[arg(long, default_value = "black")]
    pub list: String,
    /// Category: a field of article 九 (e.g. food_and_drug) or a red-list source of article 三.
    #[arg(long)]
    pub category: String,
    /// Decision document number.
    #[arg(long)]
    pub document_no: String,
    /// Deciding authority.
    #[arg(long)]
    pub authority: String,
    /// Decision date YYYY-MM-DD.
    #[arg(long)]
    pub decided_on: String,
    /// Legal basis.
    #[arg(long)]
    pub legal_basis: String,
    /// First day in force (default: decision date).
    #[arg(long)]
    pub effective_from: Option<String>,
    /// First day no longer in force.
    #[arg(long)]
    pub expires_on: String,
    /// Requested measures, e.g. P-PROCUREMENT,P-TRAVEL-AIR.
    #[arg(long, value_delimiter = ',')]
    pub measures: Vec<String>,
    /// Public summary.
    #[arg(long, default_value = "")]
    pub summary: String,
    /// Reason, if the code fails the check character but is a legal early pilot code.
    #[arg(long)]
    pub check_exemption: Option<String>,
}

/// Filters and paging of `entry list`, `evaluation list` and `action list`.
#[derive(Args)]
pub struct ListArgs {
    /// Issuing (or initiating) region.
    #[arg(long)]
    pub region: Option<String>,
    /// Publishing (or initiating) department, REGION:unit.
    #[arg(long)]
    pub department: Option<String>,
    /// State today (entries: pending, active, suspended, expired, repaired, revoked;
    /// evaluations: pending, valid, suspended, expired, revoked; actions: open, answered).
    #[arg(long)]
    pub state: Option<String>,
    /// The subject's name contains this (two characters or more).
    #[arg(long)]
    pub name: Option<String>,
    /// Dated on or after (decision, evaluation or initiation), YYYY-MM-DD.
    #[arg(long)]
    pub from: Option<String>,
    /// Dated on or before.
    #[arg(long)]
    pub to: Option<String>,
    /// Lines per page (1–200).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Continue where a previous page stopped (the cursor it printed).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// The fields `entry amend` may change; those not given stay as they are.
#[derive(Args)]
pub struct AmendFields {
    /// The subject's registered name (or a person's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The organisation's corrected code (a wrongly named organisation stops finding
    /// the entry; the new one finds it).
    #[arg(long)]
    pub uscc: Option<String>,
    /// Public summary.
    #[arg(long)]
    pub summary: Option<String>,
    /// First day no longer in force.
    #[arg(long)]
    pub expires_on: Option<String>,
    /// First day in force.
    #[arg(long)]
    pub effective_from: Option<String>,
    /// Requested measures (replaces the list).
    #[arg(long, value_delimiter = ',')]
    pub measures: Option<Vec<String>>,
    /// Legal basis.
    #[arg(long)]
    pub legal_basis: Option<String>,
    /// Decision document number.
    #[arg(long)]
    pub document_no: Option<String>,
    /// Deciding authority.
    #[arg(long)]
    pub authority: Option<String>,
    /// Decision date.
    #[arg(long)]
    pub decided_on: Option<String>,
    /// Findings (replaces the list), e.g. able_but_refuses.
    #[arg(long, value_delimiter = ',')]
    pub findings: Option<Vec<String>>,
    /// Related persons, ROLE:NUMBER:NAME, repeatable (replaces the list).
    #[arg(long)]
    pub related: Vec<String>,
    /// Remove every related person.
    #[arg(long, conflicts_with = "related")]
    pub no_related: bool,
}

// Parsed once per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum EntryCmd {
    /// Publish an entry.
    Publish {
        #[command(flatten)]
        fields: EntryFields,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Correct an entry of your region (更正, article 二十二): give the fields that change;
    /// the rest is kept as the node holds it. The list and category may not change.
    Amend {
        /// Entry id (or a unique prefix of at least 8 hex digits).
        #[arg(long)]
        entry: String,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        changes: AmendFields,
        /// Or: the whole corrected entry as JSON (the `list_entry_published` content).
        #[arg(long, conflicts_with_all = ["name", "uscc", "summary", "expires_on", "effective_from", "measures", "legal_basis", "document_no", "authority", "decided_on", "findings", "related", "no_related"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Revoke an entry of your region.
    Revoke {
        /// Entry id.
        #[arg(long)]
        entry: String,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Record a credit repair.
    Repair {
        /// Entry id.
        #[arg(long)]
        entry: String,
        /// corrected_within_period or public_service.
        #[arg(long, default_value = "corrected_within_period")]
        basis: String,
        /// Details.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List entries, newest decision first: by region, department, category, state,
    /// name or decision dates.
    List {
        /// A black-list category of article 九 or a red-list source of article 三.
        #[arg(long)]
        category: Option<String>,
        #[command(flatten)]
        filter: ListArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show an entry, its state and overdue objections.
    Show {
        /// Entry id.
        entry: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
pub enum EvaluationCmd {
    /// Publish an evaluation result.
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["uscc", "person"])))]
    Publish {
        /// Subject, an organisation: USCC.
        #[arg(long)]
        uscc: Option<String>,
        /// Subject, a natural person: resident identity number (hashed by the node).
        #[arg(long)]
        person: Option<String>,
        /// Subject name.
        #[arg(long)]
        name: String,
        /// Scheme code from the federation's catalogue, e.g. tax-credit.
        #[arg(long)]
        scheme: String,
        /// Class (A, B, C, D …).
        #[arg(long, conflicts_with = "score")]
        class: Option<String>,
        /// Score in thousandths (0–1000).
        #[arg(long)]
        score: Option<u16>,
        /// Evaluation date.
        #[arg(long)]
        evaluated_on: String,
        /// First day no longer valid.
        #[arg(long)]
        valid_until: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Withdraw an evaluation result of your region (its measures stop everywhere).
    Revoke {
        /// Evaluation id.
        #[arg(long)]
        evaluation: String,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List evaluation results, newest first: by region, department, scheme, state,
    /// name or dates.
    List {
        /// The scheme, e.g. tax-credit.
        #[arg(long)]
        scheme: Option<String>,
        #[command(flatten)]
        filter: ListArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
pub enum ActionCmd {
    /// Initiate a joint action on an entry of your region.
    Initiate {
        /// Entry id.
        #[arg(long)]
        entry: String,
        /// Your action document reference.
        #[arg(long)]
        reference: String,
        /// punishment or incentive.
        #[arg(long, default_value = "punishment")]
        kind: String,
        /// "all" or region codes.
        #[arg(long, value_delimiter = ',', default_value = "all")]
        targets: Vec<String>,
        /// Measures.
        #[arg(long, value_delimiter = ',', required = true)]
        measures: Vec<String>,
        /// Last day to acknowledge.
        #[arg(long)]
        respond_by: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Acknowledge an action as a target region.
    Ack {
        /// Action id.
        #[arg(long)]
        action: String,
        /// accepted, declined or partly.
        #[arg(long, default_value = "accepted")]
        decision: String,
        /// For partly: the measures accepted.
        #[arg(long, value_delimiter = ',')]
        accepted: Vec<String>,
        /// Reason (declined, partly).
        #[arg(long, default_value = "")]
        reason: String,
        /// Implementing departments.
        #[arg(long, value_delimiter = ',')]
        implementing: Vec<String>,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Report execution of a measure.
    Execute {
        /// Action id.
        #[arg(long)]
        action: String,
        /// Measure code.
        #[arg(long)]
        measure: String,
        /// Implementing decision reference.
        #[arg(long)]
        reference: String,
        /// Date executed.
        #[arg(long)]
        executed_on: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List joint actions, newest first: by region, department, target, category of
    /// the entry, state (open, answered), the subject's name or dates.
    List {
        /// The category of the entry the action rests on.
        #[arg(long)]
        category: Option<String>,
        /// Naming this region as a target.
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        filter: ListArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Report that a measure your region executed was lifted (the entry was revoked,
    /// repaired or expired: `credfed inbox --kind lift` lists what is due).
    Lift {
        /// Action id (or a unique prefix of at least 8 hex digits).
        #[arg(long)]
        action: String,
        /// Measure code.
        #[arg(long)]
        measure: String,
        /// Lifting decision reference.
        #[arg(long)]
        reference: String,
        /// Why, e.g. 信用修复 or 期满.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show an action with per-region acknowledgement, execution and overdue status.
    Show {
        /// Action id.
        action: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
pub enum ObjectionCmd {
    /// Record an objection (any region); the entry or evaluation is suspended everywhere.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["entry", "evaluation"])))]
    File {
        /// Entry id.
        #[arg(long)]
        entry: Option<String>,
        /// Evaluation id.
        #[arg(long)]
        evaluation: Option<String>,
        /// Your case number.
        #[arg(long)]
        case_no: String,
        /// Grounds.
        #[arg(long)]
        grounds: String,
        /// Date filed.
        #[arg(long)]
        filed_on: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Resolve an objection (issuing region only).
    Resolve {
        /// Objection id.
        #[arg(long)]
        objection: String,
        /// upheld, corrected or revoked.
        #[arg(long)]
        outcome: String,
        /// Explanation.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
pub enum RepairCmd {
    /// Record a subject's application (any region's objection desk); the entry's issuing
    /// region decides. Refused before the category's least period (`credfed measures
    /// doc`, "Credit repair on application").
    Apply {
        /// Entry id (or a unique prefix of at least 8 hex digits).
        #[arg(long)]
        entry: String,
        /// Your case number.
        #[arg(long)]
        case_no: String,
        /// corrected_within_period or public_service.
        #[arg(long, default_value = "corrected_within_period")]
        basis: String,
        /// What the subject did (performed, paid, corrected …).
        #[arg(long)]
        grounds: String,
        /// The day the subject applied (YYYY-MM-DD).
        #[arg(long)]
        filed_on: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Decide an application (the entry's issuing region, a publishing department).
    Decide {
        /// Entry id (or a unique prefix).
        #[arg(long)]
        entry: String,
        /// Application id, or a unique prefix of it (`credfed repair list --entry`).
        #[arg(long)]
        application: String,
        /// repaired, refused or not_accepted.
        #[arg(long)]
        outcome: String,
        /// The reasons given to the subject.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// An entry's repair applications: where recorded, basis, filed, decision or deadline.
    List {
        /// Entry id (or a unique prefix).
        #[arg(long)]
        entry: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum DisclosureCmd {
    /// Disclose one of your department's licensing or penalty decisions (within 7 working
    /// days of the decision; later ones are recorded and counted late).
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["uscc", "person"])))]
    Publish {
        /// licensing or penalty.
        #[arg(long)]
        kind: String,
        /// Subject, an organisation: USCC.
        #[arg(long)]
        uscc: Option<String>,
        /// Subject, a natural person: resident identity number (hashed by the node).
        #[arg(long)]
        person: Option<String>,
        /// Subject name.
        #[arg(long)]
        name: String,
        /// Decision document number.
        #[arg(long)]
        decision_no: String,
        /// The deciding authority.
        #[arg(long)]
        authority: String,
        /// The day of the decision (YYYY-MM-DD).
        #[arg(long)]
        decided_on: String,
        /// What was decided, with its legal basis.
        #[arg(long)]
        summary: String,
        /// The last day it is public (YYYY-MM-DD; a penalty at most the catalogue's
        /// longest period after the decision).
        #[arg(long)]
        public_until: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// A disclosed decision: its deadline, whether it came late, whether still public.
    Show {
        /// Disclosure id (or a unique prefix).
        disclosure: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand)]
pub enum CommitmentCmd {
    /// Record a subject's written commitment to supply missing materials by a deadline
    /// (your region's licensing department, a publisher).
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["uscc", "person"])))]
    Make {
        /// Subject, an organisation: USCC.
        #[arg(long)]
        uscc: Option<String>,
        /// Subject, a natural person: resident identity number (hashed by the node).
        #[arg(long)]
        person: Option<String>,
        /// Subject name.
        #[arg(long)]
        name: String,
        /// Acceptance number of the application (受理编号), once per department.
        #[arg(long)]
        acceptance_no: String,
        /// What was applied for.
        #[arg(long)]
        matter: String,
        /// A material accepted as missing (repeat for each, at most 16).
        #[arg(long = "waived", required = true)]
        waived: Vec<String>,
        /// The day the commitment was signed (YYYY-MM-DD).
        #[arg(long)]
        made_on: String,
        /// The last day to supply the materials (YYYY-MM-DD).
        #[arg(long)]
        due_on: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Record a commitment of your region fulfilled (by its deadline) or breached (after it).
    Settle {
        /// Commitment id (or a unique prefix of at least 8 hex digits).
        #[arg(long)]
        commitment: String,
        /// fulfilled or breached.
        #[arg(long)]
        outcome: String,
        /// The day the materials came, or the breach was found (YYYY-MM-DD).
        #[arg(long)]
        settled_on: String,
        /// What was supplied, or what is missing.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// A commitment and its state today.
    Show {
        /// Commitment id (or a unique prefix).
        commitment: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Args)]
pub struct ImportArgs {
    /// CSV (header row, columns in docs/cli.md) or JSON Lines (one entry object per line).
    pub file: PathBuf,
    /// Submit the valid rows even if some are invalid (those are reported and skipped).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Rows submitted concurrently.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

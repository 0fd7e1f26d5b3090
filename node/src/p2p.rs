//! libp2p glue: transports, gossip push, request-response pull, connection gating.
//!
//! Transports are TCP + TLS 1.3 (rustls, via libp2p-tls; noise as fallback) + yamux, and
//! QUIC, so that nodes behind networks that block UDP still connect. libp2p's TLS
//! certificates are self-signed and carry the node key, so authorisation is the
//! manifest's PeerId allow-list: any other peer is refused at the connection level.
//!
//! The event loop ([`Network`]) only moves bytes and decisions, in the manner of
//! rust-libp2p's examples: one method per kind of event (swarm event, engine event,
//! command, tick). Envelopes go to the engine's writer through a bounded queue and
//! verdicts come back as events; range reads run on blocking threads; the heads it
//! answers and plans with are the ones the engine reported, so no event costs a store
//! scan. Nothing here waits: a full queue drops a gossip message (pull repairs it) or
//! fails a range (it is fetched again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use credfed_protocol::ids::RegionCode;
use credfed_protocol::ledger::Head;
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, allow_block_list, connection_limits, gossipsub, identify, identity,
    ping,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::engine::{Core, EngineEvent, EngineLinks, IngestJob, PeerVerdict};
use crate::person_keys::Responder;
use crate::replication::{Input, Output, ReplicationConfig, Replicator};
use crate::wire::{
    CEREMONY_PROTOCOL, CeremonyCodec, MAX_RANGE_ENVELOPES, MAX_RESPONSE_BYTES, PERSON_KEY_PROTOCOL,
    PersonKeyCodec, SYNC_PROTOCOL, SyncCodec, SyncRequest, SyncResponse,
};
use credfed_protocol::oprf::{EvaluationRefusal, EvaluationRequest, EvaluationResponse};

/// Capacity of the command channel from the API to the network task.
pub const COMMAND_CAPACITY: usize = 64;

/// Envelopes fetched below our head when a peer's copy of a log forks from ours.
const FORK_PROBE: u64 = 64;

/// A dial that has not produced a connection after this is abandoned; the next re-dial
/// tries again. Bounded so that a dial into a black hole (SYNs dropped) does not hold the
/// slot for TCP's two-minute connect timeout after the link is back.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Range reads from the store running at once for peers. A read of 1024 envelopes
/// takes milliseconds; more in flight would only queue on the disk. A request beyond
/// this is answered with an empty range, which the asking peer re-plans.
const MAX_RANGE_READS: usize = 8;

/// Person-key evaluations waiting to be sent: they share the range readers' permits
/// (blocking threads doing a peer's work), so this many can never be exceeded.
const MAX_PERSON_KEY_JOBS: usize = MAX_RANGE_READS;

/// Mesh peers per node for the envelope and checkpoint topics (gossipsub's D). Every
/// copy beyond the first a node receives is a duplicate it pays for in TLS, framing and
/// a system call; see `build_swarm` for why 4 suits a federation of about 31 members.
const GOSSIP_MESH: usize = 4;

/// A member reports one asker over budget at most this often (the first refusal at
/// once): enough for operators to see an enumeration, too little to flood the mesh.
const ALERT_INTERVAL: Duration = Duration::from_secs(10);

/// How often the loop checks liveness and lets the replicator plan.
const TICK: Duration = Duration::from_millis(250);

/// Work for the network task from the API.
#[derive(Debug)]
pub enum Command {
    /// Drill fault (in-node mode, where network namespaces are unavailable).
    Fault(InNodeFault),
    /// Collect a fresh federation checkpoint (docs/protocol.md, "Federation
    /// checkpoints"); the reply comes when a quorum cosigned or the round failed.
    Federation(tokio::sync::oneshot::Sender<Result<crate::engine::FederationHead, String>>),
    /// Ask a member for its share's evaluation of blinded elements (person keys); the
    /// reply is its answer or why the request failed.
    PersonKey {
        /// The member.
        peer: PeerId,
        /// The blinded elements.
        request: EvaluationRequest,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Result<EvaluationResponse, String>>,
    },
}

/// An evaluation done on a blocking thread, waiting to be sent.
type PersonKeyDone = (ResponseChannel<EvaluationResponse>, EvaluationResponse);

/// What the network task needs to answer person-key requests.
pub struct PersonKeyLinks {
    /// The share, budgets and counters.
    pub responder: Responder,
    /// Where evaluations are audited.
    pub audit: Arc<crate::api::audit::Audit>,
    /// This member's part in person-key ceremonies (shared with the API, which starts
    /// them).
    pub ceremonies: Arc<Mutex<crate::ceremonies::Ceremonies>>,
}

/// A cosign request waiting for records this replica does not hold yet.
struct ParkedCosign {
    needs: Vec<(RegionCode, u64)>,
    until: Instant,
    channel: ResponseChannel<SyncResponse>,
    request: SyncRequest,
}

/// A cosign request about records not here yet waits at most this long for them (the
/// asker's round lasts 5 s): a witness a few milliseconds behind the gossip answers once
/// the records land, instead of refusing and being asked again.
const PARK_LIMIT: Duration = Duration::from_secs(1);

/// Cosign requests parked at once; beyond this they are judged at once (and refused as
/// "not yet" if the records are still missing).
const MAX_PARKED: usize = 64;

/// Results of blocking work the loop handed to other threads.
enum Background {
    /// This region's checkpoint, signed (its map computed).
    OwnCheckpoint(Result<credfed_protocol::checkpoint::SignedCheckpoint, String>),
    /// A federation checkpoint proposal, cosigned by this node, with its leaves.
    Federation(
        Result<
            (
                credfed_protocol::checkpoint::SignedCheckpoint,
                Vec<credfed_protocol::checkpoint::Checkpoint>,
                Vec<String>,
            ),
            String,
        >,
    ),
}

/// Federation rounds: the rounds machinery, the leaves of the round in flight, who
/// waits for it, and why members refused.
struct FederationRounds {
    rounds: crate::witnessing::Rounds,
    leaves: Vec<String>,
    /// Witnessed notes sent along with the round's requests.
    witnessed: Vec<String>,
    /// When the proposal in flight was asked for.
    asked_at: Option<Instant>,
    proposing: bool,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<crate::engine::FederationHead, String>>>,
    refusals: BTreeMap<String, usize>,
    requests: BTreeMap<OutboundRequestId, u64>,
}

/// The in-node fault mode: what a drill asks a node to simulate at the libp2p level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InNodeFault {
    /// Cut and refuse connections to these regions' nodes; empty heals.
    pub blocked: BTreeSet<RegionCode>,
    /// Percentage of received gossip messages and pulled ranges to drop, 0..=100.
    pub loss_percent: u8,
    /// Answer person-key requests under a wrong share (a lying member).
    pub lie_person_keys: bool,
}

/// Random drops for the in-node loss fault. A xorshift generator: the drops need to be
/// spread, not unpredictable, and this keeps a random-number crate out of the node.
struct Loss {
    percent: u8,
    state: u64,
}

impl Loss {
    fn new(percent: u8) -> Loss {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Loss {
            percent: percent.min(100),
            state: seed | 1,
        }
    }

    fn drops(&mut self) -> bool {
        if self.percent == 0 {
            return false;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % 100) < u64::from(self.percent)
    }
}

/// What the network task reports for `/v1/peers` and `/v1/status`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NetStatus {
    /// PeerId of this node.
    pub peer_id: String,
    /// Connected members: region → peer id.
    pub connected: BTreeMap<String, String>,
    /// Highest head any peer reported, per region.
    pub best_known: BTreeMap<String, u64>,
    /// Last time (ms since the epoch) anything was heard from each member.
    pub last_contact_ms: BTreeMap<String, i64>,
    /// The manifest version each connected member says it runs (libp2p identify's
    /// agent string), by region.
    pub manifest_versions: BTreeMap<String, u64>,
    /// Why the last newer manifest offered (by a member or in the manifest file) was not
    /// adopted.
    pub manifest_refused: Option<String>,
}

/// The identify agent string: this build and the manifest version it runs, which the
/// other members show in their status (members on different versions are flagged).
pub fn agent_version(manifest_version: u64) -> String {
    format!(
        "credfed-node/{} manifest/{manifest_version}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The manifest version in an agent string of [`agent_version`]'s form.
pub fn manifest_version_of(agent: &str) -> Option<u64> {
    agent
        .split_whitespace()
        .find_map(|w| w.strip_prefix("manifest/"))
        .and_then(|v| v.parse().ok())
}

// Order matters: the allow list decides first, so that a non-member's denial reaches
// `admission` as a listen failure with the peer id (and penalises its address).
#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    admission: crate::admission::Behaviour,
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    person_key: request_response::Behaviour<PersonKeyCodec>,
    ceremony: request_response::Behaviour<CeremonyCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// The libp2p PeerId of a manifest key.
pub fn peer_id_of(key: &credfed_protocol::crypto::PublicKey) -> Result<PeerId> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(&key.0)
        .context("node key is not an Ed25519 key")?;
    Ok(identity::PublicKey::from(ed).to_peer_id())
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Node secret (the same key signs envelopes).
    pub node_secret: [u8; 32],
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Anti-entropy tunables.
    pub replication: ReplicationConfig,
    /// Re-dial period for disconnected members.
    pub redial_interval: Duration,
    /// Shortest time between the starts of two witnessing rounds.
    pub witness_round_gap: Duration,
    /// Silence after which a connection is closed (see `NodeConfig::liveness_timeout_ms`).
    pub liveness_timeout: Duration,
    /// Start with writes open (see `NodeConfig::solo`).
    pub solo: bool,
    /// Where manifests that members run at a newer version than this node's go, once
    /// fetched from them (the daemon verifies and adopts them; `None`: not fetched).
    pub manifest_offers: Option<mpsc::Sender<ManifestOffer>>,
}

/// A newer manifest a member runs, as it sent it: nothing about it is trusted until the
/// daemon has verified it against the pinned authority (`daemon::adopt_offered_manifest`).
#[derive(Debug, Clone)]
pub struct ManifestOffer {
    /// The member that sent it.
    pub from: RegionCode,
    /// The manifest as signed.
    pub signed: credfed_protocol::manifest::SignedManifest,
}

/// How long before a member is asked again for a newer manifest (one that was refused,
/// or lost on the way): a member cannot make this node fetch and verify manifests in a
/// loop.
const MANIFEST_ASK_PERIOD: Duration = Duration::from_secs(60);

type ReadDone = (ResponseChannel<SyncResponse>, SyncResponse);

/// The network event loop and everything it owns.
pub struct Network {
    swarm: Swarm<Behaviour>,
    core: Arc<Core>,
    cfg: P2pConfig,
    topic: gossipsub::IdentTopic,
    /// Members other than ourselves: the allow-list and the dial book.
    members: BTreeMap<PeerId, (RegionCode, Vec<Multiaddr>)>,
    replicator: Replicator,
    /// Heads held, as the engine reports them.
    local: BTreeMap<RegionCode, Head>,
    /// The same, sequence numbers only (what the replicator plans with).
    local_seq: BTreeMap<RegionCode, u64>,
    pending_ranges: BTreeMap<OutboundRequestId, (RegionCode, u64)>,
    connected: BTreeMap<PeerId, RegionCode>,
    /// Live member connections and the last answered ping (or the start) of each. A
    /// member counts as connected while it has one: a connection closed for silence may
    /// take long to finish closing, and must not keep the member from being re-dialled.
    /// Silence is judged by the last pong because libp2p's ping reports only the second
    /// failure in a row, after renegotiating a stream (10 s timeout): a cut took ≈ 18 s
    /// to notice that way, and `liveness_timeout` this way.
    live_connections: BTreeMap<ConnectionId, (PeerId, Instant)>,
    /// One fork probe per (peer, region) per connection: a forked log keeps failing.
    fork_probed: BTreeSet<(PeerId, RegionCode)>,
    /// Peers cut off by a drill partition (in-node fault mode).
    blocked: BTreeSet<PeerId>,
    loss: Loss,
    ingest: mpsc::Sender<IngestJob>,
    reads: Arc<Semaphore>,
    reads_done_tx: mpsc::Sender<ReadDone>,
    status: Arc<Mutex<NetStatus>>,
    /// The connected map is published only when it changes: rendering 30 PeerIds in
    /// base58 after every swarm event cost more CPU than admitting the envelopes.
    connected_changed: bool,
    outputs: Vec<Output>,
    refusal_log: RefusalLog,
    /// This region's witnessing rounds (docs/protocol.md, witnessing).
    rounds: crate::witnessing::Rounds,
    /// Where witnessed checkpoints are gossiped.
    checkpoint_topic: gossipsub::IdentTopic,
    /// Where members report askers over their person-key budget.
    alert_topic: gossipsub::IdentTopic,
    /// When this member last reported each asker (reports are rate-limited).
    alerts_sent: BTreeMap<RegionCode, Instant>,
    /// Askers refused since their last report.
    alerts_due: BTreeSet<RegionCode>,
    /// Outstanding cosign requests and the round each belongs to, to tell their
    /// failures from range failures and late answers from current ones.
    cosign_requests: BTreeMap<OutboundRequestId, u64>,
    /// Cosign requests held until this replica has the records they are about.
    parked: Vec<ParkedCosign>,
    /// Drill fault: answer person-key requests under a wrong share.
    lie_person_keys: bool,
    /// Person-key requests this node sent, and where each answer goes.
    person_key_calls: BTreeMap<
        OutboundRequestId,
        tokio::sync::oneshot::Sender<Result<EvaluationResponse, String>>,
    >,
    /// Answering person-key requests.
    person_keys: PersonKeyLinks,
    /// Ceremony messages sent and not answered yet.
    ceremony_calls: BTreeMap<OutboundRequestId, crate::ceremonies::Delivery>,
    /// Evaluations finished on blocking threads.
    person_key_done_tx: mpsc::Sender<PersonKeyDone>,
    person_key_done_rx: Option<mpsc::Receiver<PersonKeyDone>>,
    /// This region's checkpoint is being signed on a blocking thread.
    signing: bool,
    /// Federation checkpoints being collected.
    federation: FederationRounds,
    background_tx: mpsc::Sender<Background>,
    background_rx: Option<mpsc::Receiver<Background>>,
    /// Manifest requests in flight, and when each member was last asked for which
    /// version (bounded by the members).
    manifest_requests: BTreeMap<OutboundRequestId, RegionCode>,
    manifest_asked: BTreeMap<PeerId, Instant>,
}

/// Refused inbound connections are logged at most once per [`REFUSAL_LOG_PERIOD`] per
/// reason, with the count since the last line: a flood must not fill the disk with
/// one line per attempt.
#[derive(Default)]
struct RefusalLog {
    last: BTreeMap<&'static str, (Instant, u64)>,
}

/// How often each refusal reason may be logged.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

impl RefusalLog {
    /// Counts a refusal; returns how many to report if a line is due now.
    fn note(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, n)) if now.duration_since(*at) < REFUSAL_LOG_PERIOD => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let count = *n + 1;
                *at = now;
                *n = 0;
                Some(count)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(1)
            }
        }
    }
}

/// Why an inbound connection was refused, as a metric label.
fn refusal_reason(error: &libp2p::swarm::ListenError) -> Option<&'static str> {
    let libp2p::swarm::ListenError::Denied { cause } = error else {
        return None;
    };
    Some(
        if let Some(r) = cause.downcast_ref::<crate::admission::AdmissionRefused>() {
            r.reason.name()
        } else if cause
            .downcast_ref::<allow_block_list::NotAllowed>()
            .is_some()
        {
            "not_member"
        } else if cause
            .downcast_ref::<connection_limits::Exceeded>()
            .is_some()
        {
            "established_limit"
        } else {
            "other"
        },
    )
}

impl Network {
    /// Builds the swarm and starts listening.
    pub fn new(
        core: Arc<Core>,
        cfg: P2pConfig,
        ingest: mpsc::Sender<IngestJob>,
        status: Arc<Mutex<NetStatus>>,
        reads_done_tx: mpsc::Sender<ReadDone>,
        person_keys: PersonKeyLinks,
    ) -> Result<Network> {
        let (background_tx, background_rx) = mpsc::channel(8);
        let (person_key_done_tx, person_key_done_rx) = mpsc::channel(MAX_PERSON_KEY_JOBS);
        let mut secret = cfg.node_secret;
        let keypair = identity::Keypair::ed25519_from_bytes(&mut secret).context("node key")?;
        let local_peer = keypair.public().to_peer_id();
        let fed = core.manifest().federation_id.clone();
        let mut members = BTreeMap::new();
        for m in &core.manifest().members {
            let pid = peer_id_of(&m.node_key)?;
            if pid != local_peer {
                members.insert(
                    pid,
                    (
                        m.region,
                        m.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                    ),
                );
            }
        }
        let topic = gossipsub::IdentTopic::new(format!("credfed/{fed}/envelopes/2"));
        let checkpoint_topic = gossipsub::IdentTopic::new(format!("credfed/{fed}/checkpoints/1"));
        let alert_topic = gossipsub::IdentTopic::new(format!("credfed/{fed}/alerts/1"));
        let quorum = core
            .manifest()
            .policy
            .witness_quorum(core.manifest().members.len());
        let swarm = build_swarm(
            keypair,
            &members,
            &cfg,
            agent_version(core.manifest().version),
        )?;
        let local = core.heads().context("reading heads at start")?;
        let local_seq = local.iter().map(|(r, h)| (*r, h.seq)).collect();
        if let Ok(mut s) = status.lock() {
            s.peer_id = local_peer.to_string();
        }
        // A store holding some of its own log holds all of it that ever left the node
        // (`engine::ShareableHead`): writes open at once. An empty one may be a wiped
        // store whose records the peers hold: it waits for one of them.
        let restored = core.restored_from();
        let intact = core.shareable_own_head().is_some() && restored.is_none();
        let open_at_start = cfg.solo || members.is_empty() || intact;
        if let Some(backup) = restored.filter(|_| !open_at_start) {
            core.close_writes(format!(
                "this store was restored from a backup ({backup}): since {} it waits for a member to report region {}'s head and fetches what the backup lacks, so that no sequence number is used twice; check that a member is reachable (credfed peers)",
                core.now().cst_string(),
                core.region(),
            ));
        } else if !open_at_start {
            core.close_writes(format!(
                "this node holds none of region {}'s own log (a new or emptied store): since {} it waits for a member to report the region's head, so that no sequence number is used twice; check that a member is reachable (credfed peers)",
                core.region(),
                core.now().cst_string(),
            ));
        }
        let replicator = Replicator::new(cfg.replication, core.region(), open_at_start);
        let members_count = core.manifest().members.len();
        let federation_quorum = core.manifest().policy.federation_quorum(members_count);
        let mut net = Network {
            swarm,
            core,
            topic,
            members,
            replicator,
            local,
            local_seq,
            pending_ranges: BTreeMap::new(),
            connected: BTreeMap::new(),
            live_connections: BTreeMap::new(),
            fork_probed: BTreeSet::new(),
            blocked: BTreeSet::new(),
            loss: Loss::new(0),
            ingest,
            reads: Arc::new(Semaphore::new(MAX_RANGE_READS)),
            reads_done_tx,
            status,
            connected_changed: true,
            outputs: Vec::new(),
            refusal_log: RefusalLog::default(),
            rounds: crate::witnessing::Rounds::with_gap(quorum, cfg.witness_round_gap),
            checkpoint_topic,
            alert_topic,
            alerts_sent: BTreeMap::new(),
            alerts_due: BTreeSet::new(),
            cosign_requests: BTreeMap::new(),
            parked: Vec::new(),
            person_key_calls: BTreeMap::new(),
            lie_person_keys: false,
            person_keys,
            ceremony_calls: BTreeMap::new(),
            person_key_done_tx,
            person_key_done_rx: Some(person_key_done_rx),
            signing: false,
            federation: FederationRounds {
                // The proposer's own cosignature is on the note from the start.
                rounds: crate::witnessing::Rounds::new(federation_quorum.saturating_sub(1)),
                leaves: Vec::new(),
                witnessed: Vec::new(),
                asked_at: None,
                proposing: false,
                waiters: Vec::new(),
                refusals: BTreeMap::new(),
                requests: BTreeMap::new(),
            },
            background_tx,
            background_rx: Some(background_rx),
            manifest_requests: BTreeMap::new(),
            manifest_asked: BTreeMap::new(),
            cfg,
        };
        net.swarm.behaviour_mut().gossipsub.subscribe(&net.topic)?;
        net.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&net.checkpoint_topic)?;
        net.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&net.alert_topic)?;
        for a in net.cfg.listen.clone() {
            net.swarm
                .listen_on(a.clone())
                .with_context(|| format!("listening on {a}"))?;
        }
        Ok(net)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<EngineEvent>,
        mut reads_done: mpsc::Receiver<ReadDone>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        let mut redial = tokio::time::interval(self.cfg.redial_interval);
        let Some(mut background) = self.background_rx.take() else {
            return;
        };
        let Some(mut person_key_done) = self.person_key_done_rx.take() else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(done) = background.recv() => self.on_background(done),
                Some(event) = events.recv() => self.on_engine_event(event),
                Some((channel, response)) = reads_done.recv() => {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                }
                Some((channel, response)) = person_key_done.recv() => {
                    let _ = self.swarm.behaviour_mut().person_key.send_response(channel, response);
                }
                _ = tick.tick() => self.on_tick(),
                _ = redial.tick() => self.on_redial(),
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
            self.send_outputs();
            self.publish_status();
        }
        tracing::info!("network stopped");
    }

    fn step(&mut self, input: Input) {
        let out = self.replicator.step(input, &self.local_seq, Instant::now());
        self.outputs.extend(out);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::PersonKey {
                peer,
                request,
                reply,
            } => {
                if self.blocked.contains(&peer) {
                    let _ = reply.send(Err("cut off by a drill partition".into()));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .person_key
                    .send_request(&peer, request);
                self.person_key_calls.insert(id, reply);
            }
            Command::Fault(fault) => {
                tracing::warn!(blocked = ?fault.blocked, loss_percent = fault.loss_percent, "drill fault (in-node mode)");
                self.loss = Loss::new(fault.loss_percent);
                self.lie_person_keys = fault.lie_person_keys;
                self.blocked.clear();
                for (pid, (region, _)) in &self.members {
                    if fault.blocked.contains(region) {
                        self.blocked.insert(*pid);
                        self.swarm.behaviour_mut().allow.disallow_peer(*pid);
                    } else {
                        self.swarm.behaviour_mut().allow.allow_peer(*pid);
                    }
                }
            }
            Command::Federation(reply) => {
                self.federation.waiters.push(reply);
                if self.federation.proposing || self.federation.rounds.in_flight() {
                    return;
                }
                self.federation.proposing = true;
                self.federation.asked_at = Some(Instant::now());
                self.federation.refusals.clear();
                let core = self.core.clone();
                let done = self.background_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let proposal = core.propose_federation().map_err(|e| e.to_string());
                    let _ = done.blocking_send(Background::Federation(proposal));
                });
            }
        }
    }

    fn on_background(&mut self, done: Background) {
        match done {
            Background::OwnCheckpoint(signed) => {
                self.signing = false;
                let signed = match signed {
                    Ok(s) => s,
                    Err(e) => {
                        // At most one line per period, with how many failed meanwhile
                        // (a full disk fails every attempt).
                        if let Some(n) = self.refusal_log.note("checkpoint_sign", Instant::now()) {
                            tracing::warn!(error = %e, failures = n, "cannot sign a checkpoint; retrying");
                        }
                        return;
                    }
                };
                let now = Instant::now();
                if self.connected.is_empty() || !self.rounds.due(signed.checkpoint.size, now) {
                    return;
                }
                let peers = self.cosigning_peers();
                let action = self.rounds.start(signed, peers, now);
                self.on_round_action(action);
            }
            Background::Federation(Err(e)) => {
                self.federation.proposing = false;
                self.end_federation_round(Err(format!("cannot propose: {e}")));
            }
            Background::Federation(Ok((signed, leaves, witnessed))) => {
                self.federation.proposing = false;
                self.federation.leaves = leaves.iter().map(|l| l.body()).collect();
                self.federation.witnessed = witnessed;
                if self.federation.rounds.quorum() == 0 {
                    self.federation_witnessed(&signed.encode());
                    return;
                }
                let now = Instant::now();
                let peers = self.cosigning_peers();
                if peers.is_empty() {
                    self.end_federation_round(Err("no member is connected".into()));
                    return;
                }
                let action = self.federation.rounds.start(signed, peers, now);
                self.on_federation_action(action);
            }
        }
    }

    fn cosigning_peers(&self) -> Vec<PeerId> {
        self.connected
            .keys()
            .filter(|p| !self.blocked.contains(p))
            .copied()
            .collect()
    }

    fn on_federation_action(&mut self, action: crate::witnessing::RoundAction) {
        match action {
            crate::witnessing::RoundAction::Ask(peers, note) => {
                for p in peers {
                    let id = self.swarm.behaviour_mut().sync.send_request(
                        &p,
                        SyncRequest::CosignFederation {
                            note: note.clone(),
                            leaves: self.federation.leaves.clone(),
                            witnessed: self.federation.witnessed.clone(),
                        },
                    );
                    self.federation
                        .requests
                        .insert(id, self.federation.rounds.current_id().unwrap_or(0));
                }
            }
            crate::witnessing::RoundAction::Witnessed(note, _, _) => {
                self.federation_witnessed(&note)
            }
        }
    }

    fn federation_witnessed(&mut self, note: &str) {
        let head = credfed_protocol::checkpoint::SignedCheckpoint::parse(note)
            .map_err(|e| e.to_string())
            .and_then(|signed| {
                let leaves = self
                    .federation
                    .leaves
                    .iter()
                    .map(|l| credfed_protocol::checkpoint::Checkpoint::parse_body(l))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                // The time its quorum vouches for, from the cosignatures: what answers
                // proven under it state as their `as_of`.
                let quorum = credfed_protocol::federation::verify_federation_quorum(
                    self.core.manifest(),
                    &signed,
                )?;
                Ok(crate::engine::FederationHead {
                    signed,
                    leaves,
                    witnessed_at: quorum.time,
                })
            });
        if let Ok(head) = &head {
            self.core.set_federation(head.clone());
            if let Some(at) = self.federation.asked_at.take() {
                self.core
                    .metrics()
                    .observe_federation_latency(at.elapsed().as_secs_f64());
            }
        }
        self.end_federation_round(head);
    }

    /// Answers everyone waiting for a federation checkpoint.
    fn end_federation_round(&mut self, result: Result<crate::engine::FederationHead, String>) {
        let result = result.map_err(|e| {
            let refusals: Vec<String> = self
                .federation
                .refusals
                .iter()
                .map(|(why, n)| format!("{n}× {why}"))
                .collect();
            if refusals.is_empty() {
                e
            } else {
                format!("{e}; refusals: {}", refusals.join("; "))
            }
        });
        for w in self.federation.waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }

    /// A federation round that ended without its quorum fails its waiters.
    fn check_federation_round(&mut self) {
        if !self.federation.proposing
            && !self.federation.rounds.in_flight()
            && !self.federation.waiters.is_empty()
        {
            let need = self.federation.rounds.quorum() + 1;
            self.end_federation_round(Err(format!(
                "no quorum of {need} cosignatures for a federation checkpoint (a majority of all members)"
            )));
        }
    }

    fn on_engine_event(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Gossip {
                source,
                message_id,
                verdict,
            } => {
                let acceptance = match verdict {
                    PeerVerdict::Accept => gossipsub::MessageAcceptance::Accept,
                    PeerVerdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    PeerVerdict::Reject => {
                        self.core
                            .metrics()
                            .gossip_rejected
                            .fetch_add(1, Ordering::Relaxed);
                        gossipsub::MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &source, acceptance);
            }
            EngineEvent::RangeDone {
                peer,
                region,
                from,
                forked,
            } => {
                if forked {
                    // The peer's copy of this log does not continue ours: fetch an
                    // overlapping range so that a differing envelope at a position we
                    // hold (equivocation proof) is found.
                    let have = self.local_seq.get(&region).copied().unwrap_or(0);
                    let from = have.saturating_sub(FORK_PROBE - 1).max(1);
                    self.probe_fork(peer, region, from, FORK_PROBE as u32);
                }
                if let Some(from) = from {
                    self.step(Input::RangeDone(peer, region, from));
                }
            }
            EngineEvent::Heads(moved) => {
                let own = moved.iter().any(|(r, _)| *r == self.core.region());
                for (region, head) in moved {
                    self.local.insert(region, head);
                    self.local_seq.insert(region, head.seq);
                }
                self.step(Input::Tick);
                if !self.parked.is_empty() {
                    self.release_parked(Instant::now());
                }
                if own {
                    self.maybe_start_round();
                }
            }
            EngineEvent::HeadsReloaded(heads) => {
                // The store was reopened after a failure: what it holds now replaces
                // what was reported (records applied and not made durable may be gone),
                // so that the missing ones are fetched again.
                self.local_seq = heads.iter().map(|(r, h)| (*r, h.seq)).collect();
                self.local = heads;
                self.step(Input::Tick);
            }
            EngineEvent::Appended(envelopes) => {
                for batch in credfed_protocol::gossip::split_into_batches(envelopes) {
                    let message = match credfed_protocol::gossip::encode_batch(&batch) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "own envelopes not gossiped; pull will deliver");
                            continue;
                        }
                    };
                    if let Err(e) = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(self.topic.clone(), message)
                    {
                        tracing::debug!(error = %e, "gossip publish skipped; pull will deliver");
                    }
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let timeout = self.cfg.liveness_timeout;
        let silent: Vec<(ConnectionId, PeerId)> = self
            .live_connections
            .iter()
            .filter(|(_, (_, t))| now.duration_since(*t) > timeout)
            .map(|(c, (p, _))| (*c, *p))
            .collect();
        for (connection, peer) in silent {
            tracing::info!(%peer, "member silent (no pong within the liveness timeout): closing the connection, re-dial will follow");
            self.swarm.close_connection(connection);
            self.forget_connection(peer, connection, "silent");
        }
        self.step(Input::Tick);
        if let Some(action) = self.rounds.tick(now) {
            self.on_round_action(action);
        }
        if let Some(action) = self.federation.rounds.tick(now) {
            self.on_federation_action(action);
        }
        self.check_federation_round();
        self.release_parked(now);
        self.maybe_start_round();
        self.send_ceremony_mail(now);
        if !self.alerts_due.is_empty() {
            self.send_due_alerts(now);
        }
    }

    /// Sends the ceremony messages that are due to the members they are for.
    fn send_ceremony_mail(&mut self, now: Instant) {
        let due = match self.person_keys.ceremonies.lock() {
            Ok(mut c) => c.due(now),
            Err(_) => return,
        };
        for (region, delivery, message) in due {
            let peer = self
                .members
                .iter()
                .find(|(_, (r, _))| *r == region)
                .map(|(p, _)| *p);
            let outcome = match peer {
                Some(p) if self.blocked.contains(&p) => {
                    Err("cut off by a drill partition".to_string())
                }
                Some(p) => {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .ceremony
                        .send_request(&p, message);
                    self.ceremony_calls.insert(id, delivery);
                    continue;
                }
                None => Err(format!("{region} is not a member in this node's manifest")),
            };
            if let Ok(mut c) = self.person_keys.ceremonies.lock() {
                c.delivered(delivery, outcome);
            }
        }
    }

    /// A member's ceremony message: handed over with the region its connection
    /// authenticated, and answered at once (the work is a few scalar operations, and a
    /// share written to disk at the end).
    fn on_ceremony_message(
        &mut self,
        peer: PeerId,
        message: credfed_protocol::oprf::ceremony::CeremonyMessage,
        channel: ResponseChannel<credfed_protocol::oprf::ceremony::CeremonyReply>,
    ) {
        let Some((region, _)) = self.members.get(&peer).cloned() else {
            return;
        };
        if self.blocked.contains(&peer) {
            return;
        }
        let reply = match self.person_keys.ceremonies.lock() {
            Ok(mut c) => c.receive(region, message),
            Err(_) => credfed_protocol::oprf::ceremony::CeremonyReply::Refused(
                "this member's ceremony state is unusable; restart the node and the ceremony"
                    .into(),
            ),
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .ceremony
            .send_response(channel, reply);
        // Round 2 or a finished share may have become due.
        self.send_ceremony_mail(Instant::now());
    }

    /// Starts a witnessing round if this region's log grew since the last witnessed
    /// checkpoint and the rounds allow one now.
    fn maybe_start_round(&mut self) {
        let size = self
            .local_seq
            .get(&self.core.region())
            .copied()
            .unwrap_or(0);
        let now = Instant::now();
        if self.connected.is_empty() || !self.rounds.due(size, now) {
            return;
        }
        // Signing stores the region's map: not while the store cannot persist.
        if self.signing || self.core.store_failing() {
            return;
        }
        // Signing computes the region's map for the new records: off the loop.
        self.signing = true;
        let core = self.core.clone();
        let done = self.background_tx.clone();
        tokio::task::spawn_blocking(move || {
            let signed = core.own_checkpoint().map_err(|e| e.to_string());
            let _ = done.blocking_send(Background::OwnCheckpoint(signed));
        });
    }

    fn on_round_action(&mut self, action: crate::witnessing::RoundAction) {
        match action {
            crate::witnessing::RoundAction::Ask(peers, note) => {
                for p in peers {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&p, SyncRequest::Cosign { note: note.clone() });
                    self.cosign_requests
                        .insert(id, self.rounds.current_id().unwrap_or(0));
                }
            }
            crate::witnessing::RoundAction::Witnessed(note, took, before) => {
                let metrics = self.core.metrics();
                metrics
                    .checkpoints_witnessed
                    .fetch_add(1, Ordering::Relaxed);
                metrics.observe_witness_latency(took.as_secs_f64());
                // One small read: when the oldest newly covered record was appended here.
                let first = credfed_protocol::state::RecordPos {
                    region: self.core.region(),
                    seq: before + 1,
                };
                if let Ok(Some(at_ms)) = self.core.received_at(first) {
                    let waited = (self.core.now().0 - at_ms).max(0) as f64 / 1000.0;
                    metrics.observe_witness_from_append(waited);
                }
                if let Err(e) = self.core.accept_witnessed(&note) {
                    tracing::warn!(error = %e, "own witnessed checkpoint not kept");
                }
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.checkpoint_topic.clone(), note.into_bytes())
                {
                    tracing::debug!(error = %e, "witnessed checkpoint not gossiped (no peers?)");
                }
            }
        }
    }

    /// A witnessed checkpoint from the gossip: kept if larger than the one held,
    /// split-view evidence if it contradicts this replica, rejected (and its sender
    /// penalised) if it is not witnessed.
    fn on_checkpoint_gossip(
        &mut self,
        source: PeerId,
        message_id: gossipsub::MessageId,
        data: Vec<u8>,
    ) {
        use crate::engine::Witnessed;
        let verdict = match std::str::from_utf8(&data)
            .map_err(|e| e.to_string())
            .and_then(|note| self.core.accept_witnessed(note))
        {
            Ok(Witnessed::SplitView(region, size)) => {
                self.core
                    .metrics()
                    .split_views
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(%region, "a witnessed checkpoint of {region} contradicts this replica: split view, evidence kept");
                // Whoever forwarded it may hold that other history: its envelope at
                // that size and ours are two envelopes the region signed at one
                // position — equivocation evidence every member can check.
                self.probe_fork(source, region, size.max(1), 1);
                gossipsub::MessageAcceptance::Accept
            }
            Ok(_) => gossipsub::MessageAcceptance::Accept,
            Err(e) => {
                tracing::debug!(%source, error = %e, "checkpoint gossip refused");
                gossipsub::MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &source, verdict);
    }

    /// A peer whose head of a region is at our position but hashes differently holds
    /// another history of that region: a fork at the tip, which no chain check catches
    /// while the region stays quiet. Fetch its envelope there; the writer turns the two
    /// into equivocation evidence (docs/protocol.md, "Forks"). One probe per (peer,
    /// region) per connection.
    fn probe_tip_forks(&mut self, peer: PeerId, heads: &[(RegionCode, Head)]) {
        for (region, theirs) in heads {
            let Some(ours) = self.local.get(region) else {
                continue;
            };
            if ours.seq != theirs.seq || ours.hash == theirs.hash || theirs.seq == 0 {
                continue;
            }
            if self.fork_probed.contains(&(peer, *region)) {
                continue;
            }
            tracing::warn!(%peer, %region, seq = theirs.seq, "a peer's head differs from ours at the same position: fetching its envelope");
            self.probe_fork(peer, *region, theirs.seq, 1);
        }
    }

    /// Fetches `limit` envelopes of `region` from `from` off `peer`, whose copy of that
    /// log may be another history: the writer turns an envelope that differs from the
    /// one held at its position into equivocation evidence. At most one probe per
    /// (peer, region) per connection: a forked log keeps failing.
    fn probe_fork(&mut self, peer: PeerId, region: RegionCode, from: u64, limit: u32) {
        if !self.fork_probed.insert((peer, region)) {
            return;
        }
        self.core
            .metrics()
            .fork_probes
            .fetch_add(1, Ordering::Relaxed);
        self.swarm.behaviour_mut().sync.send_request(
            &peer,
            SyncRequest::Range {
                region,
                from,
                limit,
            },
        );
    }

    fn on_redial(&mut self) {
        for (pid, (_, addrs)) in &self.members {
            if !self.connected.contains_key(pid) && !self.blocked.contains(pid) && !addrs.is_empty()
            {
                // One dial at a time per member: dials into a dead link must not pile up.
                // Not `Disconnected`: a connection still closing counts as connected.
                let opts = DialOpts::peer_id(*pid)
                    .condition(PeerCondition::NotDialing)
                    .addresses(addrs.clone())
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    /// Forgets one connection of `peer`; the member is down once none is left.
    fn forget_connection(&mut self, peer: PeerId, connection: ConnectionId, why: &str) {
        self.live_connections.remove(&connection);
        let none_left = !self.live_connections.values().any(|(p, _)| *p == peer);
        if none_left && self.connected.remove(&peer).is_some() {
            tracing::info!(%peer, "member disconnected ({why})");
            self.connected_changed = true;
            self.step(Input::PeerDown(peer));
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some((region, _)) = self.members.get(&peer_id) {
                    let region = *region;
                    self.live_connections
                        .insert(connection_id, (peer_id, Instant::now()));
                    if self.connected.insert(peer_id, region).is_none() {
                        tracing::info!(%peer_id, region = %region, "member connected");
                        self.connected_changed = true;
                        self.step(Input::PeerUp(peer_id));
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.fork_probed.retain(|(p, _)| *p != peer_id);
                }
                self.forget_connection(peer_id, connection_id, "closed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                if let Some(reason) = refusal_reason(&error) {
                    self.core.metrics().count_refused_connection(reason);
                    if let Some(n) = self.refusal_log.note(reason, Instant::now()) {
                        tracing::warn!(
                            reason,
                            refused = n,
                            last_from = %send_back_addr,
                            "refused inbound connections (logged at most every {REFUSAL_LOG_PERIOD:?} per reason)"
                        );
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Only members' connections get this far (the allow list).
                if let (Some((region, _)), Some(version)) = (
                    self.members.get(&peer_id),
                    manifest_version_of(&info.agent_version),
                ) {
                    let region = *region;
                    if let Ok(mut s) = self.status.lock() {
                        s.manifest_versions.insert(region.to_string(), version);
                    }
                    self.ask_for_newer_manifest(peer_id, region, version);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                connection,
                result: Ok(_),
                ..
            })) => {
                if let Some(entry) = self.live_connections.get_mut(&connection) {
                    entry.1 = Instant::now();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                if message.topic == self.checkpoint_topic.hash() {
                    self.on_checkpoint_gossip(propagation_source, message_id, message.data)
                } else if message.topic == self.alert_topic.hash() {
                    self.on_alert_gossip(propagation_source, message_id, message.data)
                } else {
                    self.on_gossip(propagation_source, message_id, message.data)
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::PersonKey(
                request_response::Event::Message { peer, message, .. },
            )) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_person_key_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.person_key_calls.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Ceremony(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_ceremony_message(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(delivery) = self.ceremony_calls.remove(&request_id)
                        && let Ok(mut c) = self.person_keys.ceremonies.lock()
                    {
                        c.delivered(delivery, Ok(response));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Ceremony(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if let Some(delivery) = self.ceremony_calls.remove(&request_id)
                    && let Ok(mut c) = self.person_keys.ceremonies.lock()
                {
                    c.delivered(delivery, Err(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::PersonKey(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if let Some(reply) = self.person_key_calls.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(peer, request_id, response),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                },
            )) => {
                tracing::debug!(%peer, %error, "sync request failed");
                if self.manifest_requests.remove(&request_id).is_some() {
                    return;
                }
                if let Some(round) = self.cosign_requests.remove(&request_id) {
                    if self.rounds.current_id() == Some(round) {
                        self.rounds.failed(peer);
                    }
                    return;
                }
                if let Some(round) = self.federation.requests.remove(&request_id) {
                    if self.federation.rounds.current_id() != Some(round) {
                        return;
                    }
                    *self
                        .federation
                        .refusals
                        .entry("unreachable".into())
                        .or_default() += 1;
                    self.federation.rounds.failed(peer);
                    self.check_federation_round();
                    return;
                }
                let range = self.pending_ranges.remove(&request_id);
                self.step(Input::RequestFailed(peer, range));
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, message_id: gossipsub::MessageId, data: Vec<u8>) {
        let ignore = gossipsub::MessageAcceptance::Ignore;
        if self.loss.drops() {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &source, ignore);
            return;
        }
        let metrics = self.core.metrics();
        metrics.gossip_received.fetch_add(1, Ordering::Relaxed);
        metrics
            .bytes_received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.touch(&source);
        let job = IngestJob::Gossip {
            bytes: data,
            source,
            message_id: message_id.clone(),
        };
        if self.ingest.try_send(job).is_err() {
            // The writer is behind: drop the message without blaming anyone; pull
            // brings the record later.
            metrics.ingest_queue_full.fetch_add(1, Ordering::Relaxed);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &source, ignore);
        }
    }

    /// A member asks for this member's share's evaluation: budget first, then the work
    /// on a blocking thread; every request is audited (asking member, element count,
    /// outcome — nothing else is known here).
    fn on_person_key_request(
        &mut self,
        peer: PeerId,
        request: EvaluationRequest,
        channel: ResponseChannel<EvaluationResponse>,
    ) {
        let Some((region, _)) = self.members.get(&peer).cloned() else {
            return;
        };
        if self.blocked.contains(&peer) {
            return;
        }
        let elements = request.blinded.len();
        let audit = |this: &Self, status: u16, outcome: &str| {
            this.person_keys
                .audit
                .record(&crate::api::audit::AuditLine {
                    time_ms: this.core.now().0,
                    caller: &format!("{region}:{}", credfed_protocol::envelope::NODE_UNIT),
                    client: peer.to_string(),
                    endpoint: "p2p /credfed/person-key/1",
                    subject: Some(&format!("{elements} blinded elements")),
                    status,
                    outcome,
                    ms: 0.0,
                });
        };
        // A thread first, so that a busy refusal spends none of the asker's budget.
        let Ok(permit) = self.reads.clone().try_acquire_owned() else {
            audit(self, 503, "busy");
            let busy = EvaluationResponse::Refused(EvaluationRefusal::Invalid(
                "busy: every evaluation thread is in use; ask another member".into(),
            ));
            let _ = self
                .swarm
                .behaviour_mut()
                .person_key
                .send_response(channel, busy);
            return;
        };
        match self
            .person_keys
            .responder
            .admit(region, &request, Instant::now())
        {
            Ok(scaled) => {
                audit(self, 200, "ok");
                let scaled = if self.lie_person_keys {
                    crate::person_keys::wrong_share(&scaled).unwrap_or(scaled)
                } else {
                    scaled
                };
                let done = self.person_key_done_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let answer = crate::person_keys::answer_with(&scaled, &request.blinded);
                    // Room for every permit: this never waits.
                    let _ = done.blocking_send((channel, answer));
                    drop(permit);
                });
            }
            Err(refusal) => {
                let outcome = match &refusal {
                    EvaluationRefusal::OverBudget { .. } => {
                        tracing::warn!(asking = %region, elements, "person-key evaluations refused: the asking member exceeded its budget (an enumeration?)");
                        self.report_over_budget(region);
                        "over_budget"
                    }
                    EvaluationRefusal::NoShare => "no_share",
                    EvaluationRefusal::Invalid(_) => "invalid",
                };
                audit(self, 429, outcome);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .person_key
                    .send_response(channel, EvaluationResponse::Refused(refusal));
            }
        }
    }

    /// Tells every member, signed, that `asker` exceeded its budget here: at once the
    /// first time, then at most every [`ALERT_INTERVAL`] per asker with the count so far.
    /// A report that cannot be gossiped yet (no member subscribed) stays due and is tried
    /// again at every tick.
    fn report_over_budget(&mut self, asker: RegionCode) {
        self.alerts_due.insert(asker);
        self.send_due_alerts(Instant::now());
    }

    fn send_due_alerts(&mut self, now: Instant) {
        let due: Vec<RegionCode> = self
            .alerts_due
            .iter()
            .filter(|a| {
                self.alerts_sent
                    .get(a)
                    .is_none_or(|t| now.duration_since(*t) >= ALERT_INTERVAL)
            })
            .copied()
            .collect();
        for asker in due {
            // `admit` counted the refusals already.
            let refused = self
                .person_keys
                .responder
                .stats
                .refused_over_budget(&asker.to_string());
            let bytes = match self
                .core
                .sign_budget_alert(asker, refused)
                .and_then(|a| credfed_protocol::codec::encode(&a).map_err(|e| e.to_string()))
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "could not sign a budget report");
                    self.alerts_due.remove(&asker);
                    continue;
                }
            };
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.alert_topic.clone(), bytes)
            {
                Ok(_) => {
                    self.alerts_sent.insert(asker, now);
                    self.alerts_due.remove(&asker);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "budget report not gossiped yet (no member subscribed?); trying again");
                }
            }
        }
    }

    /// Another member's report of an asker over budget: kept and shown if its reporter's
    /// node key signed it.
    fn on_alert_gossip(&mut self, source: PeerId, message_id: gossipsub::MessageId, data: Vec<u8>) {
        let fed = self.core.manifest().federation_id.clone();
        let verdict = credfed_protocol::oprf::alert::decode_alert(&data)
            .map_err(|e| e.to_string())
            .and_then(|signed| {
                let reporter = signed.alert.reporter;
                if reporter == self.core.region() {
                    return Ok(None);
                }
                let key = self
                    .core
                    .manifest()
                    .member(reporter)
                    .map(|m| m.node_key)
                    .ok_or_else(|| format!("{reporter} is not a member"))?;
                signed.verify(&key, &fed).map_err(|e| e.to_string())?;
                Ok(Some(signed.alert))
            });
        let acceptance = match verdict {
            Ok(Some(alert)) => {
                let (asker, reporter) = (alert.asker.to_string(), alert.reporter.to_string());
                if self
                    .person_keys
                    .responder
                    .stats
                    .note_report(&asker, &reporter, alert.refused)
                {
                    tracing::warn!(asking = %asker, %reporter, refused = alert.refused, "a member reports refusing an asking member over its person-key budget (an enumeration?)");
                }
                gossipsub::MessageAcceptance::Accept
            }
            Ok(None) => gossipsub::MessageAcceptance::Ignore,
            Err(e) => {
                tracing::debug!(%source, error = %e, "budget report refused");
                gossipsub::MessageAcceptance::Reject
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &source, acceptance);
    }

    /// Asks a member that runs a newer manifest version than this node for it, at most
    /// once per [`MANIFEST_ASK_PERIOD`] per member whatever version it names (a member
    /// naming ever higher versions costs one request and one refusal a period). A
    /// manifest that is adopted restarts the node, which forgets what it asked.
    fn ask_for_newer_manifest(&mut self, peer: PeerId, region: RegionCode, version: u64) {
        if self.cfg.manifest_offers.is_none() || version <= self.core.manifest().version {
            return;
        }
        let now = Instant::now();
        if self
            .manifest_asked
            .get(&peer)
            .is_some_and(|at| now.duration_since(*at) < MANIFEST_ASK_PERIOD)
        {
            return;
        }
        self.manifest_asked.insert(peer, now);
        tracing::info!(%region, version, running = self.core.manifest().version, "a member runs a newer manifest: asking it for it");
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, SyncRequest::Manifest);
        self.manifest_requests.insert(id, region);
    }

    fn on_request(&mut self, request: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        match request {
            SyncRequest::Manifest => {
                // Nodes started without a signed manifest (in-process tests) have none to
                // give: the channel is dropped and the asker's request fails.
                if let Some(signed) = self.core.signed_manifest().cloned() {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, SyncResponse::Manifest(signed));
                }
            }
            SyncRequest::Heads => {
                // Our own log only as far as it may leave the node (`ShareableHead`).
                let own = self.core.region();
                let shareable = self.core.shareable_own_head();
                let heads = self
                    .local
                    .iter()
                    .filter_map(|(r, h)| {
                        if *r == own {
                            shareable.map(|s| (*r, s))
                        } else {
                            Some((*r, *h))
                        }
                    })
                    .collect();
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, SyncResponse::Heads(heads));
            }
            SyncRequest::Range {
                region,
                from,
                limit,
            } => {
                let Ok(permit) = self.reads.clone().try_acquire_owned() else {
                    self.core
                        .metrics()
                        .range_reads_refused
                        .fetch_add(1, Ordering::Relaxed);
                    let empty = SyncResponse::Range {
                        region,
                        envelopes: Vec::new(),
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, empty);
                    return;
                };
                let core = self.core.clone();
                let done = self.reads_done_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let limit = limit.min(MAX_RANGE_ENVELOPES) as usize;
                    let envelopes = core
                        .range(region, from, limit, MAX_RESPONSE_BYTES - 64 * 1024)
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "range read failed; answering empty");
                            Vec::new()
                        });
                    // Room for every permit: this never waits.
                    let _ =
                        done.blocking_send((channel, SyncResponse::Range { region, envelopes }));
                    drop(permit);
                });
            }
            request @ (SyncRequest::Cosign { .. } | SyncRequest::CosignFederation { .. }) => {
                let needs = self.records_needed(&request);
                if self.missing(&needs) && self.parked.len() < MAX_PARKED {
                    self.parked.push(ParkedCosign {
                        needs,
                        until: Instant::now() + PARK_LIMIT,
                        channel,
                        request,
                    });
                } else {
                    self.judge_cosign(request, channel);
                }
            }
        }
    }

    /// The (region, size) pairs a cosign request is about, read from its text without
    /// checking signatures (the judgement does that).
    fn records_needed(&self, request: &SyncRequest) -> Vec<(RegionCode, u64)> {
        use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin};
        let manifest = self.core.manifest();
        let region_of = |cp: &Checkpoint| {
            manifest
                .members
                .iter()
                .find(|m| origin(&manifest.federation_id, m.region) == cp.origin)
                .map(|m| (m.region, cp.size))
        };
        match request {
            SyncRequest::Cosign { note } => SignedCheckpoint::parse(note)
                .ok()
                .and_then(|s| region_of(&s.checkpoint))
                .into_iter()
                .collect(),
            SyncRequest::CosignFederation { leaves, .. } => leaves
                .iter()
                .filter_map(|l| Checkpoint::parse_body(l).ok())
                .filter_map(|c| region_of(&c))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn missing(&self, needs: &[(RegionCode, u64)]) -> bool {
        needs
            .iter()
            .any(|(r, n)| self.local_seq.get(r).copied().unwrap_or(0) < *n)
    }

    /// Judges parked cosign requests whose records have arrived, or whose wait is over.
    fn release_parked(&mut self, now: Instant) {
        let parked = std::mem::take(&mut self.parked);
        for p in parked {
            if !self.missing(&p.needs) || now >= p.until {
                self.judge_cosign(p.request, p.channel);
            } else {
                self.parked.push(p);
            }
        }
    }

    fn judge_cosign(&mut self, request: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        match request {
            SyncRequest::Cosign { note } => {
                self.answer_cosign(channel, move |core| core.witness(&note));
            }
            SyncRequest::CosignFederation {
                note,
                leaves,
                witnessed,
            } => {
                self.answer_cosign(channel, move |core| {
                    core.witness_federation(&note, &leaves, &witnessed)
                });
            }
            _ => {}
        }
    }

    /// Runs a witness judgement off the loop (it may fsync or compute a map), bounded
    /// like range reads, and answers with the cosignature or the refusal.
    fn answer_cosign(
        &mut self,
        channel: ResponseChannel<SyncResponse>,
        judge: impl FnOnce(
            &Core,
        ) -> Result<
            credfed_protocol::checkpoint::NoteSignature,
            credfed_protocol::witness::CosignRefusal,
        > + Send
        + 'static,
    ) {
        use credfed_protocol::witness::CosignRefusal;
        let Ok(permit) = self.reads.clone().try_acquire_owned() else {
            let busy = SyncResponse::CosignRefused(CosignRefusal::NotYet { held: 0 });
            let _ = self.swarm.behaviour_mut().sync.send_response(channel, busy);
            return;
        };
        let core = self.core.clone();
        let done = self.reads_done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let response = match judge(&core) {
                Ok(line) => SyncResponse::Cosigned(line),
                Err(why) => {
                    let reason = why.reason();
                    if let Ok(mut m) = core.metrics().cosign_refusals.lock() {
                        *m.entry(reason).or_default() += 1;
                    }
                    if matches!(
                        why,
                        CosignRefusal::Conflict { .. }
                            | CosignRefusal::Equivocator
                            | CosignRefusal::WrongMap { .. }
                    ) {
                        tracing::error!(%why, "refused to cosign a checkpoint");
                    } else if matches!(why, CosignRefusal::Invalid(_)) {
                        tracing::warn!(%why, "refused to cosign an invalid checkpoint request");
                    }
                    SyncResponse::CosignRefused(why)
                }
            };
            let _ = done.blocking_send((channel, response));
            drop(permit);
        });
    }

    fn on_response(&mut self, peer: PeerId, request_id: OutboundRequestId, response: SyncResponse) {
        if self.loss.drops() {
            let range = self.pending_ranges.remove(&request_id);
            self.step(Input::RequestFailed(peer, range));
            return;
        }
        self.touch(&peer);
        if let Some(from) = self.manifest_requests.remove(&request_id) {
            if let (SyncResponse::Manifest(signed), Some(offers)) =
                (response, self.cfg.manifest_offers.as_ref())
                && offers.try_send(ManifestOffer { from, signed }).is_err()
            {
                tracing::debug!(%from, "a manifest offer is already being looked at; asked again later");
            }
            return;
        }
        if let Some(round) = self.federation.requests.remove(&request_id) {
            if self.federation.rounds.current_id() != Some(round) {
                return;
            }
            match response {
                SyncResponse::Cosigned(line) => self.on_federation_cosigned(peer, line),
                SyncResponse::CosignRefused(why) => {
                    tracing::debug!(%peer, %why, "federation checkpoint not cosigned");
                    let kind = match &why {
                        credfed_protocol::witness::CosignRefusal::NotYet { .. } => "not yet",
                        credfed_protocol::witness::CosignRefusal::Stale { .. } => "stale",
                        _ => "refused",
                    };
                    *self
                        .federation
                        .refusals
                        .entry(format!("{kind} ({why})").chars().take(160).collect())
                        .or_default() += 1;
                    self.federation.rounds.refused(peer, &why, Instant::now());
                    self.check_federation_round();
                }
                _ => {
                    self.federation.rounds.failed(peer);
                    self.check_federation_round();
                }
            }
            return;
        }
        if let Some(round) = self.cosign_requests.remove(&request_id)
            && self.rounds.current_id() != Some(round)
        {
            // An answer to a round already over: its checkpoint is not the current one.
            return;
        }
        match response {
            // Only asked for with a request id kept in `manifest_requests` (above).
            SyncResponse::Manifest(_) => {
                tracing::debug!(%peer, "a manifest nobody asked for, ignored");
            }
            SyncResponse::Cosigned(line) => {
                self.on_cosigned(peer, line);
            }
            SyncResponse::CosignRefused(why) => {
                if matches!(
                    why,
                    credfed_protocol::witness::CosignRefusal::Conflict { .. }
                ) {
                    tracing::error!(%peer, %why, "a witness holds another history of this region");
                }
                self.rounds.refused(peer, &why, Instant::now());
            }
            SyncResponse::Heads(heads) => {
                self.probe_tip_forks(peer, &heads);
                self.step(Input::Heads(peer, heads));
            }
            SyncResponse::Range { region, envelopes } => {
                tracing::debug!(%peer, %region, count = envelopes.len(), "pull: range received");
                let metrics = self.core.metrics();
                metrics.ranges_fetched.fetch_add(1, Ordering::Relaxed);
                let bytes: usize = envelopes.iter().map(Vec::len).sum();
                metrics
                    .bytes_received
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                // A fork probe was not planned by the replicator: only its envelopes matter.
                let from = self
                    .pending_ranges
                    .remove(&request_id)
                    .map(|(_, from)| from);
                let job = IngestJob::Range {
                    peer,
                    region,
                    from,
                    envelopes,
                };
                if self.ingest.try_send(job).is_err() {
                    metrics.ingest_queue_full.fetch_add(1, Ordering::Relaxed);
                    if let Some(from) = from {
                        self.step(Input::RequestFailed(peer, Some((region, from))));
                    }
                }
            }
        }
    }

    /// A cosignature from `peer`: counted only if it is that member's, over this round's
    /// checkpoint.
    /// Whether `line` is `region`'s member's cosignature on the checkpoint of the round
    /// in flight (`None`: no round, nothing to count).
    fn cosignature_verifies(
        &self,
        round: Option<&credfed_protocol::checkpoint::SignedCheckpoint>,
        region: RegionCode,
        line: &credfed_protocol::checkpoint::NoteSignature,
    ) -> bool {
        let manifest = self.core.manifest();
        round.is_some_and(|cp| {
            let mut with = cp.clone();
            with.signatures.push(line.clone());
            manifest.member(region).is_some_and(|m| {
                with.verify_cosignature(
                    &credfed_protocol::checkpoint::witness_name(&manifest.federation_id, region),
                    &m.node_key,
                )
                .is_ok()
            })
        })
    }

    fn on_cosigned(&mut self, peer: PeerId, line: credfed_protocol::checkpoint::NoteSignature) {
        let Some((region, _)) = self.members.get(&peer) else {
            return;
        };
        let region = *region;
        let valid = self.cosignature_verifies(self.rounds.current(), region, &line);
        if !valid {
            tracing::warn!(%peer, %region, "cosignature does not verify; ignored");
            self.rounds.failed(peer);
            return;
        }
        if let Some(action) = self.rounds.cosigned(peer, region, line, Instant::now()) {
            self.on_round_action(action);
        }
    }

    /// A cosignature on the federation checkpoint in flight: counted only if it is
    /// that member's.
    fn on_federation_cosigned(
        &mut self,
        peer: PeerId,
        line: credfed_protocol::checkpoint::NoteSignature,
    ) {
        let Some((region, _)) = self.members.get(&peer) else {
            return;
        };
        let region = *region;
        let valid = self.cosignature_verifies(self.federation.rounds.current(), region, &line);
        if !valid {
            tracing::warn!(%peer, %region, "federation cosignature does not verify; ignored");
            self.federation.rounds.failed(peer);
            self.check_federation_round();
            return;
        }
        if let Some(action) = self
            .federation
            .rounds
            .cosigned(peer, region, line, Instant::now())
        {
            self.on_federation_action(action);
        }
        self.check_federation_round();
    }

    fn touch(&self, peer: &PeerId) {
        if let (Some(r), Ok(mut s)) = (self.connected.get(peer), self.status.lock()) {
            s.last_contact_ms.insert(r.to_string(), self.core.now().0);
        }
    }

    fn send_outputs(&mut self) {
        for o in std::mem::take(&mut self.outputs) {
            match o {
                Output::RequestHeads(p) => {
                    self.swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&p, SyncRequest::Heads);
                }
                Output::RequestRange {
                    peer,
                    region,
                    from,
                    limit,
                } => {
                    tracing::debug!(%peer, %region, from, limit, "pull: requesting range");
                    let id = self.swarm.behaviour_mut().sync.send_request(
                        &peer,
                        SyncRequest::Range {
                            region,
                            from,
                            limit,
                        },
                    );
                    self.pending_ranges.insert(id, (region, from));
                }
                Output::OpenWrites => self.core.open_writes(),
                Output::CloseWrites { peer_head, local } => self.core.close_writes(format!(
                    "a member holds region {}'s own log up to record {peer_head}, this node only up to {local} (was its store copied back from an older state? restore with credfed-node restore): since {} writes wait until the missing records are fetched back",
                    self.core.region(),
                    self.core.now().cst_string(),
                )),
            }
        }
    }

    fn publish_status(&mut self) {
        self.core
            .metrics()
            .peers
            .store(self.connected.len() as u64, Ordering::Relaxed);
        let best_changed = self.replicator.take_best_changed();
        if !self.connected_changed && !best_changed {
            return;
        }
        if let Ok(mut s) = self.status.lock() {
            if self.connected_changed {
                s.connected = self
                    .connected
                    .iter()
                    .map(|(p, r)| (r.to_string(), p.to_string()))
                    .collect();
                self.connected_changed = false;
            }
            if best_changed {
                s.best_known = self
                    .replicator
                    .best_known()
                    .into_iter()
                    .map(|(r, h)| (r.to_string(), h))
                    .collect();
            }
        }
    }
}

fn build_swarm(
    keypair: identity::Keypair,
    members: &BTreeMap<PeerId, (RegionCode, Vec<Multiaddr>)>,
    cfg: &P2pConfig,
    agent: String,
) -> Result<Swarm<Behaviour>> {
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        // Content-addressed ids: the same envelope is the same message whoever sends it.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(credfed_protocol::crypto::sha256(&[&m.data]).0.to_vec())
        })
        .max_transmit_size(credfed_protocol::gossip::MAX_GOSSIP_BYTES + 1024)
        .heartbeat_interval(Duration::from_millis(700))
        .heartbeat_initial_delay(Duration::from_millis(100))
        // Sized for a federation of about 31 members, where every member wants every
        // message: each node receives a message about once per mesh peer (one copy is
        // used, the rest are duplicates it still decrypts and drops). gossipsub's
        // defaults (6 mesh peers, up to 12, gossip to 6 more) suit open networks of
        // strangers; among 31 authorised members a mesh of 4 still reaches everyone in
        // three hops, and the origin publishes to every member directly (flood
        // publishing, on by default), so a record is one hop from most nodes anyway.
        .mesh_n(GOSSIP_MESH)
        .mesh_n_low(GOSSIP_MESH - 1)
        .mesh_n_high(2 * GOSSIP_MESH)
        .mesh_outbound_min(GOSSIP_MESH / 2)
        // IHAVE announcements to peers outside the mesh repair what the mesh missed;
        // pull (anti-entropy) repairs it too, so three such peers are enough.
        .gossip_lazy(3)
        .gossip_factor(0.1)
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let member_count = members.len() as u32;
    let liveness = cfg.liveness_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            (libp2p::tls::Config::new, libp2p::noise::Config::new),
            libp2p::yamux::Config::default,
        )?
        .with_quic()
        .with_behaviour(|key| {
            let mut allow =
                allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            for p in members.keys() {
                allow.allow_peer(*p);
            }
            // Four per member: the two a simultaneous dial makes, plus room for a fresh
            // connection while one closed for silence is still shutting down (a graceful
            // close over a dead link waits for TCP to give up).
            // Pending inbound connections are budgeted by `admission` (members' addresses
            // apart from strangers'), not by one shared limit a flood could fill.
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(4))
                    .with_max_established(Some(4 * member_count + 4)),
            );
            let admission = crate::admission::Behaviour::new(
                crate::admission::AdmissionLimits::for_members(members.len()),
                crate::admission::Admission::ips_of(members.values().flat_map(|(_, a)| a)),
                members.keys().copied().collect(),
            );
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                gossip_cfg.clone(),
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            let sync = request_response::Behaviour::with_codec(
                SyncCodec::default(),
                [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(64),
            );
            let person_key = request_response::Behaviour::with_codec(
                PersonKeyCodec::default(),
                [(PERSON_KEY_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(crate::person_keys::MEMBER_TIMEOUT)
                    .with_max_concurrent_streams(64),
            );
            // Ceremony messages are a few per member per ceremony; a member answers at
            // once, so the default timeout only bounds a dead connection.
            let ceremony = request_response::Behaviour::with_codec(
                CeremonyCodec::default(),
                [(CEREMONY_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(16),
            );
            let identify = identify::Behaviour::new(
                identify::Config::new("/credfed/1".into(), key.public()).with_agent_version(agent),
            );
            Ok(Behaviour {
                allow,
                admission,
                limits,
                gossipsub,
                sync,
                person_key,
                ceremony,
                identify,
                // Pings are the liveness probe: a connection without a pong for
                // `liveness_timeout` is closed (see `Network::on_tick`), and the re-dial
                // finds the peer again.
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(liveness / 2)
                        .with_timeout(liveness),
                ),
            })
        })?
        // Members stay connected: libp2p would close idle connections after 10 s.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .with_connection_timeout(CONNECTION_TIMEOUT)
        .build();
    Ok(swarm)
}

/// Starts the network task: builds the swarm, listens, and runs the loop until
/// `shutdown`.
pub fn spawn(
    core: Arc<Core>,
    cfg: P2pConfig,
    links: EngineLinks,
    commands: mpsc::Receiver<Command>,
    status: Arc<Mutex<NetStatus>>,
    person_keys: PersonKeyLinks,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let (reads_done_tx, reads_done_rx) = mpsc::channel(MAX_RANGE_READS);
    let net = Network::new(core, cfg, links.ingest, status, reads_done_tx, person_keys)?;
    Ok(tokio::spawn(net.run(
        commands,
        links.events,
        reads_done_rx,
        shutdown,
    )))
}

#[cfg(test)]
mod refusal_log_tests {
    use super::*;

    /// The first refusal of a reason is logged at once; the next ones only after the
    /// period, with their count; reasons do not share a budget.
    #[test]
    fn refusals_are_logged_at_a_bounded_rate_with_their_count() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note("not_member", t0), Some(1));
        for n in 1..1000u64 {
            assert_eq!(log.note("not_member", t0 + Duration::from_millis(n)), None);
        }
        assert_eq!(log.note("source_penalised", t0), Some(1));
        assert_eq!(
            log.note(
                "not_member",
                t0 + REFUSAL_LOG_PERIOD + Duration::from_millis(1)
            ),
            Some(1000)
        );
    }
}

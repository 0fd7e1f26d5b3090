//! libp2p glue: transports, gossip push, request-response pull, connection gating.
//!
//! Transports are TCP + TLS 1.3 (rustls, via libp2p-tls; noise as fallback) + yamux, and
//! QUIC, so that nodes behind networks that block UDP still connect. libp2p's TLS
//! certificates are self-signed and carry the node key, so authorisation is the
//! manifest's PeerId allow-list: any other peer is refused at the connection level.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use credfed_protocol::codec;
use credfed_protocol::envelope::Envelope;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::ledger::Admission;
use credfed_protocol::limits::MAX_ENVELOPE_BYTES;
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, allow_block_list, connection_limits, gossipsub, identify, identity, ping,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::core::Core;
use crate::replication::{Input, Output, Parked, ReplicationConfig, Replicator};
use crate::wire::{
    MAX_RANGE_ENVELOPES, MAX_RESPONSE_BYTES, SYNC_PROTOCOL, SyncCodec, SyncRequest, SyncResponse,
};

/// Capacity of the command channel from the API to the network task. A full channel
/// drops the push (pull repairs it), it never blocks a write.
pub const COMMAND_CAPACITY: usize = 1024;

/// Envelopes fetched below our head when a peer's copy of a log forks from ours.
const FORK_PROBE: u64 = 64;

/// A dial that has not produced a connection after this is abandoned; the next re-dial
/// tries again. Bounded so that a dial into a black hole (SYNs dropped) does not hold the
/// slot for TCP's two-minute connect timeout after the link is back.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Work for the network task.
#[derive(Debug)]
pub enum Command {
    /// Gossip an envelope this node appended.
    Publish(Vec<u8>),
    /// Drill fault (in-node mode, where network namespaces are unavailable).
    Fault(InNodeFault),
}

/// The in-node fault mode: what a drill asks a node to simulate at the libp2p level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InNodeFault {
    /// Cut and refuse connections to these regions' nodes; empty heals.
    pub blocked: BTreeSet<RegionCode>,
    /// Percentage of received gossip messages and pulled ranges to drop, 0..=100.
    pub loss_percent: u8,
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
    /// Envelopes waiting for a gap or a dependency.
    pub parked: usize,
    /// Last time (ms since the epoch) anything was heard from each member.
    pub last_contact_ms: BTreeMap<String, i64>,
    /// Whether writes are open (own log confirmed with a peer).
    pub writes_open: bool,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
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
    /// Silence after which a connection is closed (see `NodeConfig::liveness_timeout_ms`).
    pub liveness_timeout: Duration,
    /// Start with writes open (see `NodeConfig::solo`).
    pub solo: bool,
}

/// Runs the network until `shutdown` turns true.
pub async fn run(
    core: Arc<Core>,
    cfg: P2pConfig,
    mut commands: mpsc::Receiver<Command>,
    status: Arc<Mutex<NetStatus>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut secret = cfg.node_secret;
    let keypair = identity::Keypair::ed25519_from_bytes(&mut secret).context("node key")?;
    let local_peer = keypair.public().to_peer_id();
    let fed = core.manifest.federation_id.clone();

    // Members other than ourselves: the allow-list and the dial book.
    let mut members: BTreeMap<PeerId, (RegionCode, Vec<Multiaddr>)> = BTreeMap::new();
    for m in &core.manifest.members {
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

    let topic = gossipsub::IdentTopic::new(format!("credfed/{fed}/envelopes/1"));
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        // Content-addressed ids: the same envelope is the same message whoever sends it.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(credfed_protocol::crypto::sha256(&[&m.data]).0.to_vec())
        })
        .max_transmit_size(MAX_ENVELOPE_BYTES + 1024)
        .heartbeat_interval(Duration::from_millis(700))
        .heartbeat_initial_delay(Duration::from_millis(100))
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let member_count = members.len() as u32;

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
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
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(4))
                    .with_max_established(Some(4 * member_count + 4))
                    .with_max_pending_incoming(Some(64)),
            );
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                gossip_cfg.clone(),
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(64),
            );
            let identify =
                identify::Behaviour::new(identify::Config::new("/credfed/1".into(), key.public()));
            Ok(Behaviour {
                allow,
                limits,
                gossipsub,
                sync,
                identify,
                // Pings are the liveness probe: a connection without a pong for
                // `liveness_timeout` is closed (see `live_connections`), and the re-dial
                // finds the peer again.
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(cfg.liveness_timeout / 2)
                        .with_timeout(cfg.liveness_timeout),
                ),
            })
        })?
        // Members stay connected: libp2p would close idle connections after 10 s.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .with_connection_timeout(CONNECTION_TIMEOUT)
        .build();
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    for a in &cfg.listen {
        swarm
            .listen_on(a.clone())
            .with_context(|| format!("listening on {a}"))?;
    }
    if let Ok(mut s) = status.lock() {
        s.peer_id = local_peer.to_string();
    }

    let mut replicator =
        Replicator::new(cfg.replication, core.region, cfg.solo || members.is_empty());
    let mut parked = Parked::default();
    let mut pending_ranges: BTreeMap<request_response::OutboundRequestId, (RegionCode, u64)> =
        BTreeMap::new();
    let mut connected: BTreeMap<PeerId, RegionCode> = BTreeMap::new();
    // Live member connections and the last answered ping (or the start) of each.
    // A member counts as connected while it has one: a connection closed for silence may
    // take long to finish closing, and must not keep the member from being re-dialled.
    // Silence is judged by the last pong because libp2p's ping reports only the second
    // failure in a row, after renegotiating a stream (10 s timeout): a cut took ≈ 18 s to
    // notice that way, and `liveness_timeout` this way.
    let mut live_connections: BTreeMap<libp2p::swarm::ConnectionId, (PeerId, Instant)> =
        BTreeMap::new();
    let mut evidence_published: BTreeSet<(RegionCode, u64)> = BTreeSet::new();
    // One fork probe per (peer, region) per connection: a forked log keeps failing to chain.
    let mut fork_probed: BTreeSet<(PeerId, RegionCode)> = BTreeSet::new();
    // Peers cut off by a drill partition, and drill packet loss (in-node fault mode).
    let mut blocked: BTreeSet<PeerId> = BTreeSet::new();
    let mut loss = Loss::new(0);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut redial = tokio::time::interval(cfg.redial_interval);

    // The connected map is published only when it changes: rendering 30 PeerIds in
    // base58 after every swarm event cost more CPU than admitting the envelopes.
    let mut connected_changed = true;
    loop {
        let mut outputs = Vec::new();
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(cmd) = commands.recv() => match cmd {
                Command::Publish(bytes) => {
                    if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes) {
                        tracing::debug!(error = %e, "gossip publish skipped; pull will deliver");
                    }
                }
                Command::Fault(fault) => {
                    tracing::warn!(blocked = ?fault.blocked, loss_percent = fault.loss_percent, "drill fault (in-node mode)");
                    loss = Loss::new(fault.loss_percent);
                    blocked.clear();
                    for (pid, (region, _)) in &members {
                        if fault.blocked.contains(region) {
                            blocked.insert(*pid);
                            swarm.behaviour_mut().allow.disallow_peer(*pid);
                        } else {
                            swarm.behaviour_mut().allow.allow_peer(*pid);
                        }
                    }
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let silent: Vec<(libp2p::swarm::ConnectionId, PeerId)> = live_connections
                    .iter()
                    .filter(|(_, (_, t))| now.duration_since(*t) > cfg.liveness_timeout)
                    .map(|(c, (p, _))| (*c, *p))
                    .collect();
                for (connection, peer) in silent {
                    tracing::info!(%peer, "member silent (no pong within the liveness timeout): closing the connection, re-dial will follow");
                    swarm.close_connection(connection);
                    if forget_connection(&mut live_connections, peer, connection) && connected.remove(&peer).is_some() {
                        tracing::info!(%peer, "member disconnected (silent)");
                        connected_changed = true;
                        outputs.extend(replicator.step(Input::PeerDown(peer), &local_heads(&core), now));
                    }
                }
                outputs.extend(replicator.step(Input::Tick, &local_heads(&core), now));
            }
            _ = redial.tick() => {
                for (pid, (_, addrs)) in &members {
                    if !connected.contains_key(pid) && !blocked.contains(pid) && !addrs.is_empty() {
                        // One dial at a time per member: dials into a dead link must not pile up.
                        // Not `Disconnected`: a connection still closing counts as connected.
                        let opts = DialOpts::peer_id(*pid)
                            .condition(PeerCondition::NotDialing)
                            .addresses(addrs.clone())
                            .build();
                        let _ = swarm.dial(opts);
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                    if members.contains_key(&peer_id) {
                        live_connections.insert(connection_id, (peer_id, Instant::now()));
                    }
                    if let Some((region, _)) = members.get(&peer_id)
                        && connected.insert(peer_id, *region).is_none()
                    {
                        tracing::info!(%peer_id, region = %region, "member connected");
                        connected_changed = true;
                        outputs.extend(replicator.step(Input::PeerUp(peer_id), &local_heads(&core), Instant::now()));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                    if num_established == 0 {
                        fork_probed.retain(|(p, _)| *p != peer_id);
                    }
                    if forget_connection(&mut live_connections, peer_id, connection_id) && connected.remove(&peer_id).is_some() {
                        tracing::info!(%peer_id, "member disconnected");
                        connected_changed = true;
                        outputs.extend(replicator.step(Input::PeerDown(peer_id), &local_heads(&core), Instant::now()));
                    }
                }
                SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                    if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                        core.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%send_back_addr, "refused a connection from a peer not in the manifest");
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { connection, result: Ok(_), .. })) => {
                    if let Some(entry) = live_connections.get_mut(&connection) {
                        entry.1 = Instant::now();
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, .. })) if loss.drops() => {
                    swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, gossipsub::MessageAcceptance::Ignore);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    core.metrics.gossip_received.fetch_add(1, Ordering::Relaxed);
                    core.metrics.bytes_received.fetch_add(message.data.len() as u64, Ordering::Relaxed);
                    touch(&status, &connected, &propagation_source, &core);
                    let acceptance = handle_envelope(&core, message.data, &mut parked, &mut evidence_published);
                    swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, acceptance);
                    drain_parked(&core, &mut parked, &mut evidence_published);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let response = answer(&core, request);
                        let _ = swarm.behaviour_mut().sync.send_response(channel, response);
                    }
                    request_response::Message::Response { request_id, .. } if loss.drops() => {
                        let range = pending_ranges.remove(&request_id);
                        outputs.extend(replicator.step(Input::RequestFailed(peer, range), &local_heads(&core), Instant::now()));
                    }
                    request_response::Message::Response { request_id, response } => {
                        touch(&status, &connected, &peer, &core);
                        match response {
                            SyncResponse::Heads(heads) => outputs.extend(replicator.step(Input::Heads(peer, heads), &local_heads(&core), Instant::now())),
                            SyncResponse::Range { region, envelopes } => {
                                tracing::debug!(%peer, %region, count = envelopes.len(), "pull: range received");
                                let from = pending_ranges.remove(&request_id).map_or(0, |(_, from)| from);
                                core.metrics.ranges_fetched.fetch_add(1, Ordering::Relaxed);
                                let mut forked = false;
                                for bytes in envelopes {
                                    core.metrics.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                                    if handle_envelope(&core, bytes, &mut parked, &mut evidence_published) == gossipsub::MessageAcceptance::Reject {
                                        forked = true;
                                        break;
                                    }
                                }
                                if forked && fork_probed.insert((peer, region)) {
                                    // The peer's copy of this log does not continue ours: fetch
                                    // an overlapping range so that a differing envelope at a
                                    // position we hold (equivocation proof) is found.
                                    let have = core.store.head(region).map_or(0, |h| h.seq);
                                    let from = have.saturating_sub(FORK_PROBE - 1).max(1);
                                    swarm.behaviour_mut().sync.send_request(&peer, SyncRequest::Range { region, from, limit: FORK_PROBE as u32 });
                                }
                                drain_parked(&core, &mut parked, &mut evidence_published);
                                outputs.extend(replicator.step(Input::RangeDone(peer, region, from), &local_heads(&core), Instant::now()));
                            }
                        }
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure { peer, request_id, error, .. })) => {
                    tracing::debug!(%peer, %error, "sync request failed");
                    let range = pending_ranges.remove(&request_id);
                    outputs.extend(replicator.step(Input::RequestFailed(peer, range), &local_heads(&core), Instant::now()));
                }
                _ => {}
            },
        }
        for o in outputs {
            match o {
                Output::RequestHeads(p) => {
                    swarm
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
                    let id = swarm.behaviour_mut().sync.send_request(
                        &peer,
                        SyncRequest::Range {
                            region,
                            from,
                            limit,
                        },
                    );
                    pending_ranges.insert(id, (region, from));
                }
                Output::OpenWrites => core.open_writes(),
            }
        }
        core.metrics
            .peers
            .store(connected.len() as u64, Ordering::Relaxed);
        if let Ok(mut s) = status.lock() {
            if connected_changed {
                s.connected = connected
                    .iter()
                    .map(|(p, r)| (r.to_string(), p.to_string()))
                    .collect();
                connected_changed = false;
            }
            if replicator.take_best_changed() {
                s.best_known = replicator
                    .best_known()
                    .into_iter()
                    .map(|(r, h)| (r.to_string(), h))
                    .collect();
            }
            s.parked = parked.len();
            s.writes_open = core.write_gate.lock().map(|g| g.is_none()).unwrap_or(false);
        }
    }
    tracing::info!("network stopped");
    Ok(())
}

/// Forgets one connection of `peer`; true if `peer` has no live connection left.
fn forget_connection(
    live: &mut BTreeMap<libp2p::swarm::ConnectionId, (PeerId, Instant)>,
    peer: PeerId,
    connection: libp2p::swarm::ConnectionId,
) -> bool {
    live.remove(&connection);
    !live.values().any(|(p, _)| *p == peer)
}

fn touch(
    status: &Arc<Mutex<NetStatus>>,
    connected: &BTreeMap<PeerId, RegionCode>,
    peer: &PeerId,
    core: &Core,
) {
    if let (Some(r), Ok(mut s)) = (connected.get(peer), status.lock()) {
        s.last_contact_ms.insert(r.to_string(), core.now().0);
    }
}

/// Admits one envelope from the network and says what gossip should do with it.
fn handle_envelope(
    core: &Core,
    bytes: Vec<u8>,
    parked: &mut Parked,
    evidence_published: &mut BTreeSet<(RegionCode, u64)>,
) -> gossipsub::MessageAcceptance {
    use gossipsub::MessageAcceptance::*;
    match core.ingest(&bytes) {
        Ok(Admission::Accept(_)) => Accept,
        Ok(Admission::Duplicate) => Ignore,
        Ok(Admission::Gap { region, got, .. }) => {
            parked.park(region, got, bytes);
            Ignore
        }
        Ok(Admission::MissingDependency { what }) => {
            tracing::debug!(%what, "envelope waits for a dependency");
            if let Ok(env) = codec::decode::<Envelope>(&bytes, MAX_ENVELOPE_BYTES, "envelope") {
                parked.park(env.region, env.seq, bytes);
            }
            Ignore
        }
        Ok(Admission::Equivocation(proof)) => {
            if evidence_published.insert((proof.region, proof.seq)) {
                match core.publish_evidence(&proof) {
                    Ok(v) => {
                        tracing::warn!(region = %proof.region, seq = proof.seq, evidence_seq = v.envelope.seq, "equivocation evidence recorded in own log")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record equivocation evidence yet")
                    }
                }
            }
            Ignore
        }
        Err(r) => {
            tracing::warn!(reason = ?r.reason, message = %r.message, "rejected envelope");
            Reject
        }
    }
}

/// Retries parked envelopes while progress is made (bounded by what is parked).
fn drain_parked(
    core: &Core,
    parked: &mut Parked,
    evidence_published: &mut BTreeSet<(RegionCode, u64)>,
) {
    let mut local = local_heads(core);
    for _ in 0..crate::replication::MAX_PARKED_PER_REGION {
        let ready = parked.ready(&local);
        if ready.is_empty() {
            return;
        }
        for bytes in ready {
            // Whatever does not apply yet stays in `parked` until its turn comes.
            handle_envelope(core, bytes, &mut Parked::default(), evidence_published);
        }
        let now = local_heads(core);
        if now == local {
            return;
        }
        local = now;
    }
}

/// Sequence number of every region's head in the store.
fn local_heads(core: &Core) -> BTreeMap<RegionCode, u64> {
    core.store
        .heads()
        .map(|h| h.into_iter().map(|(r, h)| (r, h.seq)).collect())
        .unwrap_or_default()
}

fn answer(core: &Core, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Heads => SyncResponse::Heads(
            core.store
                .heads()
                .map(|h| h.into_iter().collect())
                .unwrap_or_default(),
        ),
        SyncRequest::Range {
            region,
            from,
            limit,
        } => {
            let limit = limit.min(MAX_RANGE_ENVELOPES) as usize;
            let envelopes = core
                .store
                .range(region, from, limit, MAX_RESPONSE_BYTES - 64 * 1024)
                .unwrap_or_default();
            SyncResponse::Range { region, envelopes }
        }
    }
}

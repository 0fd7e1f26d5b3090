//! Admission of inbound libp2p connections: members first.
//!
//! Who is a member is known only after the security handshake (the PeerId), and a
//! handshake costs the node CPU and a pending-connection slot for up to the connection
//! timeout. With one shared budget of pending connections, anyone could keep it full by
//! reopening connections as fast as they are refused, and members whose link had just
//! healed could not get back in. So, before any handshake:
//!
//! * connections from the addresses the manifest lists for members ("known" sources)
//!   and from any other address ("unknown" sources) draw on separate budgets, so
//!   strangers cannot exhaust the members' one;
//! * one unknown address may hold only a few pending connections;
//! * an unknown address that completed a handshake as a non-member is refused outright
//!   for a while, the wait doubling with each offence (1 s up to a minute), so a flood
//!   costs the node an accept and a close per attempt, not a handshake.
//!
//! A member whose address is not in the manifest still gets in through the unknown
//! budget when it is not full, and its address leaves the penalty list once it has
//! authenticated. Refusals carry their reason ([`AdmissionRefused`]) so that the network
//! loop can count and log them per reason.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::PortUse;
use libp2p::swarm::behaviour::{ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, ListenError, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Budgets of pending inbound connections.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Pending connections from members' manifest addresses, in all.
    pub pending_known: usize,
    /// Pending connections from every other address, in all.
    pub pending_unknown: usize,
    /// Pending connections from one unknown address.
    pub pending_per_unknown_source: usize,
    /// First penalty of an address that handshook as a non-member.
    pub penalty_initial: Duration,
    /// Longest penalty.
    pub penalty_max: Duration,
    /// Addresses remembered for penalties; the oldest is forgotten beyond this (a
    /// bound on memory however many addresses a flood uses).
    pub max_penalised_sources: usize,
}

impl AdmissionLimits {
    /// Budgets for a federation of `members` nodes: room for every member to dial twice
    /// at once (a simultaneous dial) plus slack; strangers get a fixed share.
    pub fn for_members(members: usize) -> AdmissionLimits {
        AdmissionLimits {
            pending_known: 2 * members + 8,
            pending_unknown: 32,
            pending_per_unknown_source: 4,
            penalty_initial: Duration::from_secs(1),
            penalty_max: Duration::from_secs(60),
            max_penalised_sources: 4096,
        }
    }
}

/// Why a connection was refused before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalReason {
    /// Every pending slot for members' addresses is taken.
    KnownBudgetFull,
    /// Every pending slot for other addresses is taken.
    UnknownBudgetFull,
    /// This unknown address already holds its pending connections.
    SourceBudgetFull,
    /// This address recently handshook as a non-member.
    SourcePenalised,
}

impl RefusalReason {
    /// The metric label and log word.
    pub fn name(self) -> &'static str {
        match self {
            RefusalReason::KnownBudgetFull => "known_pending_limit",
            RefusalReason::UnknownBudgetFull => "unknown_pending_limit",
            RefusalReason::SourceBudgetFull => "per_source_pending_limit",
            RefusalReason::SourcePenalised => "source_penalised",
        }
    }
}

/// A refusal by [`Admission`], as the swarm reports it.
#[derive(Debug, thiserror::Error)]
#[error("inbound connection from {source_ip} refused: {}", reason.name())]
pub struct AdmissionRefused {
    /// Why.
    pub reason: RefusalReason,
    /// From where.
    pub source_ip: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    until: Instant,
    offences: u32,
    last: Instant,
}

/// The admission state machine, apart from libp2p so that it can be tested directly.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    known: HashSet<IpAddr>,
    pending: HashMap<ConnectionId, (IpAddr, bool)>,
    pending_known: usize,
    pending_unknown: usize,
    per_source: HashMap<IpAddr, usize>,
    penalties: HashMap<IpAddr, Penalty>,
}

impl Admission {
    /// Admission with members at `known` addresses.
    pub fn new(limits: AdmissionLimits, known: HashSet<IpAddr>) -> Admission {
        Admission {
            limits,
            known,
            pending: HashMap::new(),
            pending_known: 0,
            pending_unknown: 0,
            per_source: HashMap::new(),
            penalties: HashMap::new(),
        }
    }

    /// The IP addresses of a set of multiaddresses (those that have one).
    pub fn ips_of<'a>(addrs: impl IntoIterator<Item = &'a Multiaddr>) -> HashSet<IpAddr> {
        addrs.into_iter().filter_map(ip_of).collect()
    }

    /// Decides on a new inbound connection `id` from `ip`, before its handshake.
    pub fn admit(
        &mut self,
        id: ConnectionId,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), RefusalReason> {
        let known = self.known.contains(&ip);
        if known {
            if self.pending_known >= self.limits.pending_known {
                return Err(RefusalReason::KnownBudgetFull);
            }
            self.pending_known += 1;
        } else {
            if self.penalties.get(&ip).is_some_and(|p| now < p.until) {
                return Err(RefusalReason::SourcePenalised);
            }
            if self.pending_unknown >= self.limits.pending_unknown {
                return Err(RefusalReason::UnknownBudgetFull);
            }
            let held = self.per_source.entry(ip).or_default();
            if *held >= self.limits.pending_per_unknown_source {
                return Err(RefusalReason::SourceBudgetFull);
            }
            *held += 1;
            self.pending_unknown += 1;
        }
        self.pending.insert(id, (ip, known));
        Ok(())
    }

    /// The connection's handshake ended (established, refused or failed): its slot is free.
    pub fn release(&mut self, id: ConnectionId) {
        let Some((ip, known)) = self.pending.remove(&id) else {
            return;
        };
        if known {
            self.pending_known = self.pending_known.saturating_sub(1);
        } else {
            self.pending_unknown = self.pending_unknown.saturating_sub(1);
            if let Some(n) = self.per_source.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_source.remove(&ip);
                }
            }
        }
    }

    /// A peer at `ip` completed a handshake and is not a member: refuse the address
    /// outright for a while (never a member's manifest address: a member's IP may be
    /// shared with a stranger, as on one host).
    pub fn penalise(&mut self, ip: IpAddr, now: Instant) {
        if self.known.contains(&ip) {
            return;
        }
        if self.penalties.len() >= self.limits.max_penalised_sources
            && !self.penalties.contains_key(&ip)
        {
            // Forget the address offended least recently.
            if let Some(oldest) = self
                .penalties
                .iter()
                .min_by_key(|(_, p)| p.last)
                .map(|(ip, _)| *ip)
            {
                self.penalties.remove(&oldest);
            }
        }
        let p = self.penalties.entry(ip).or_insert(Penalty {
            until: now,
            offences: 0,
            last: now,
        });
        p.offences = p.offences.saturating_add(1);
        let factor = 1u32 << p.offences.saturating_sub(1).min(16);
        let wait = self
            .limits
            .penalty_initial
            .saturating_mul(factor)
            .min(self.limits.penalty_max);
        p.until = now + wait;
        p.last = now;
    }

    /// A member authenticated from `ip`: whatever the address did before, it is a
    /// member's now.
    pub fn pardon(&mut self, ip: IpAddr) {
        self.penalties.remove(&ip);
    }

    /// Pending connections held (known, unknown).
    pub fn pending(&self) -> (usize, usize) {
        (self.pending_known, self.pending_unknown)
    }
}

/// The first IP component of a multiaddress.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// [`Admission`] as a libp2p behaviour. It must come after the allow list in the
/// composed behaviour, so that a denial by the allow list reaches it as a listen failure
/// with the peer's id.
pub struct Behaviour {
    admission: Admission,
    members: HashSet<PeerId>,
}

impl Behaviour {
    /// Admission for `members` with manifest addresses `known`.
    pub fn new(
        limits: AdmissionLimits,
        known: HashSet<IpAddr>,
        members: HashSet<PeerId>,
    ) -> Behaviour {
        Behaviour {
            admission: Admission::new(limits, known),
            members,
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // Transports without IP addresses (none in use) are not budgeted.
        let Some(ip) = ip_of(remote_addr) else {
            return Ok(());
        };
        self.admission
            .admit(connection_id, ip, Instant::now())
            .map_err(|reason| {
                ConnectionDenied::new(AdmissionRefused {
                    reason,
                    source_ip: ip,
                })
            })
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admission.release(connection_id);
        if self.members.contains(&peer)
            && let Some(ip) = ip_of(remote_addr)
        {
            self.admission.pardon(ip);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished { connection_id, .. }) => {
                self.admission.release(connection_id);
            }
            FromSwarm::ListenFailure(ListenFailure {
                connection_id,
                send_back_addr,
                error,
                peer_id,
                ..
            }) => {
                self.admission.release(connection_id);
                // A completed handshake by a peer that is not a member.
                let not_member = peer_id.is_some_and(|p| !self.members.contains(&p))
                    && matches!(error, ListenError::Denied { cause } if cause.downcast_ref::<libp2p::allow_block_list::NotAllowed>().is_some());
                if not_member && let Some(ip) = ip_of(send_back_addr) {
                    self.admission.penalise(ip, Instant::now());
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admission() -> Admission {
        let limits = AdmissionLimits {
            pending_known: 3,
            pending_unknown: 4,
            pending_per_unknown_source: 2,
            ..AdmissionLimits::for_members(1)
        };
        Admission::new(limits, [ip("10.0.0.1")].into_iter().collect())
    }

    /// Strangers exhaust their own budget, never the members': a member's address is
    /// admitted while strangers are refused.
    #[test]
    fn strangers_cannot_exhaust_the_members_budget() {
        let mut a = admission();
        let now = Instant::now();
        let mut ids = Vec::new();
        for n in 0..2 {
            for src in ["192.0.2.1", "192.0.2.2"] {
                let id = ConnectionId::new_unchecked(ids.len());
                assert_eq!(a.admit(id, ip(src), now), Ok(()), "{src} #{n}");
                ids.push(id);
            }
        }
        assert_eq!(
            a.admit(ConnectionId::new_unchecked(100), ip("192.0.2.3"), now),
            Err(RefusalReason::UnknownBudgetFull)
        );
        for n in 0..3 {
            assert_eq!(
                a.admit(ConnectionId::new_unchecked(200 + n), ip("10.0.0.1"), now),
                Ok(())
            );
        }
        assert_eq!(
            a.admit(ConnectionId::new_unchecked(300), ip("10.0.0.1"), now),
            Err(RefusalReason::KnownBudgetFull)
        );
        assert_eq!(a.pending(), (3, 4));
        for id in ids {
            a.release(id);
        }
        a.release(ConnectionId::new_unchecked(999)); // unknown ids are ignored
        assert_eq!(a.pending(), (3, 0));
    }

    /// One stranger holds at most its own share of the strangers' budget.
    #[test]
    fn one_source_holds_only_its_share() {
        let mut a = admission();
        let now = Instant::now();
        let src = ip("192.0.2.9");
        assert!(a.admit(ConnectionId::new_unchecked(1), src, now).is_ok());
        assert!(a.admit(ConnectionId::new_unchecked(2), src, now).is_ok());
        assert_eq!(
            a.admit(ConnectionId::new_unchecked(3), src, now),
            Err(RefusalReason::SourceBudgetFull)
        );
        assert!(
            a.admit(ConnectionId::new_unchecked(4), ip("192.0.2.10"), now)
                .is_ok()
        );
    }

    /// A non-member's address is refused for a doubling while, capped; a member's
    /// manifest address never is, and authenticating as a member pardons an address.
    #[test]
    fn penalties_double_are_capped_and_spare_members() {
        let mut a = admission();
        let t0 = Instant::now();
        let src = ip("192.0.2.7");
        a.penalise(src, t0);
        assert_eq!(
            a.admit(ConnectionId::new_unchecked(1), src, t0),
            Err(RefusalReason::SourcePenalised)
        );
        assert!(
            a.admit(
                ConnectionId::new_unchecked(2),
                src,
                t0 + Duration::from_millis(1_001)
            )
            .is_ok()
        );
        a.release(ConnectionId::new_unchecked(2));
        a.penalise(src, t0);
        assert!(
            a.admit(
                ConnectionId::new_unchecked(3),
                src,
                t0 + Duration::from_millis(1_500)
            )
            .is_err()
        );
        assert!(
            a.admit(
                ConnectionId::new_unchecked(4),
                src,
                t0 + Duration::from_millis(2_001)
            )
            .is_ok()
        );
        a.release(ConnectionId::new_unchecked(4));
        for _ in 0..40 {
            a.penalise(src, t0);
        }
        assert!(
            a.admit(
                ConnectionId::new_unchecked(5),
                src,
                t0 + Duration::from_secs(59)
            )
            .is_err()
        );
        assert!(
            a.admit(
                ConnectionId::new_unchecked(6),
                src,
                t0 + Duration::from_secs(61)
            )
            .is_ok()
        );
        a.penalise(ip("10.0.0.1"), t0);
        assert!(
            a.admit(ConnectionId::new_unchecked(7), ip("10.0.0.1"), t0)
                .is_ok()
        );
        a.penalise(src, t0 + Duration::from_secs(61));
        a.pardon(src);
        assert!(
            a.admit(
                ConnectionId::new_unchecked(8),
                src,
                t0 + Duration::from_secs(61)
            )
            .is_ok()
        );
    }

    /// However many addresses offend, the penalty list stays bounded.
    #[test]
    fn the_penalty_list_is_bounded() {
        let limits = AdmissionLimits {
            max_penalised_sources: 8,
            ..AdmissionLimits::for_members(1)
        };
        let mut a = Admission::new(limits, HashSet::new());
        let t0 = Instant::now();
        for n in 0..100u8 {
            a.penalise(
                IpAddr::from([198, 51, 100, n]),
                t0 + Duration::from_millis(u64::from(n)),
            );
        }
        assert_eq!(a.penalties.len(), 8);
        // The most recent offenders are the ones remembered.
        assert!(a.penalties.contains_key(&IpAddr::from([198, 51, 100, 99])));
    }

    #[test]
    fn ip_of_reads_the_address_component() {
        let m: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(ip_of(&m), Some(ip("127.0.0.1")));
        let m: Multiaddr = "/ip6/::1/udp/4001/quic-v1".parse().unwrap();
        assert_eq!(ip_of(&m), Some(ip("::1")));
        let m: Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&m), None);
    }
}

//! Getting this region's checkpoints witnessed: a small state machine the network loop
//! drives (no I/O here, so that it can be tested without a network).
//!
//! After this region's log grows, the node signs a checkpoint and asks every connected
//! member to cosign it (a *round*): at most one round at a time, and one per
//! [`MIN_ROUND_GAP`] under load, so that a burst of appends costs one round, not one per
//! append, while a single append on an idle node is witnessed at once. A member that has
//! not received the records yet answers "not yet" and is asked again shortly. As soon as
//! the witnessing quorum of the other members (the manifest's fault policy) have
//! cosigned, the checkpoint is *witnessed*: the node keeps it and gossips it. A round
//! ends when everyone asked has answered or after [`ROUND_DEADLINE`].
//!
//! An idle region signs its unchanged head again every [`REFRESH`]: each checkpoint
//! carries the time its node signed it, and that is how a verifier tells an idle region
//! (fresh, witnessed a few seconds ago) from one cut off from its witnesses (its last
//! witnessed head grows old) — docs/protocol.md, "Freshness".

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use credfed_protocol::checkpoint::{NoteSignature, SignedCheckpoint};
use credfed_protocol::ids::RegionCode;
use credfed_protocol::witness::CosignRefusal;
use libp2p::PeerId;

/// Shortest time between the starts of two rounds.
pub const MIN_ROUND_GAP: Duration = Duration::from_secs(1);
/// A round stops waiting for answers after this.
pub const ROUND_DEADLINE: Duration = Duration::from_secs(5);
/// A member that is behind is asked again after this.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);
/// An unchanged head is signed and witnessed again after this: a verifier's freshness
/// bound is in minutes (docs/cli.md, `verify --max-age`), so ten seconds keeps an idle
/// region's age well inside it for the price of one round per region every ten
/// seconds (no fsync at the witnesses: their view does not change).
pub const REFRESH: Duration = Duration::from_secs(10);

struct Round {
    signed: SignedCheckpoint,
    started: Instant,
    waiting: BTreeSet<PeerId>,
    retry: BTreeMap<PeerId, Instant>,
    cosigners: BTreeSet<RegionCode>,
    witnessed: bool,
}

/// What the network loop must do.
#[derive(Debug, PartialEq, Eq)]
pub enum RoundAction {
    /// Ask these peers to cosign this note.
    Ask(Vec<PeerId>, String),
    /// The checkpoint reached its quorum: keep and gossip this note; `after` is how long
    /// the round took; the size witnessed before it (its first new record is the one
    /// that waited longest).
    Witnessed(String, Duration, u64),
}

/// This region's witnessing rounds.
pub struct Rounds {
    quorum: usize,
    gap: Duration,
    current: Option<Round>,
    /// Numbers the rounds, so that a late answer to an earlier round is told apart.
    round_id: u64,
    last_start: Option<Instant>,
    witnessed_size: u64,
    refresh: Duration,
}

impl Rounds {
    /// Rounds needing `quorum` cosignatures, at most one per [`MIN_ROUND_GAP`].
    pub fn new(quorum: usize) -> Rounds {
        Rounds::with_gap(quorum, MIN_ROUND_GAP)
    }

    /// Rounds needing `quorum` cosignatures, at most one per `gap`.
    pub fn with_gap(quorum: usize, gap: Duration) -> Rounds {
        Rounds {
            quorum,
            gap,
            round_id: 0,
            current: None,
            last_start: None,
            witnessed_size: 0,
            refresh: REFRESH,
        }
    }

    /// The same rounds refreshing an unchanged head every `refresh` (tests).
    pub fn with_refresh(mut self, refresh: Duration) -> Rounds {
        self.refresh = refresh;
        self
    }

    /// Whether a round should start now for a log of `size` records: one round at a
    /// time until it is witnessed (its stragglers are then not waited for), one per gap
    /// when the log grew, one per [`REFRESH`] when it did not (also for an empty log,
    /// whose head is witnessed like any other).
    pub fn due(&self, size: u64, now: Instant) -> bool {
        let since_start = |d: Duration| self.last_start.is_none_or(|t| now.duration_since(t) >= d);
        self.current.as_ref().is_none_or(|r| r.witnessed)
            && ((size > self.witnessed_size && since_start(self.gap)) || since_start(self.refresh))
    }

    /// Cosignatures a round needs.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// A round is collecting cosignatures and has not reached its quorum.
    pub fn in_flight(&self) -> bool {
        self.current.as_ref().is_some_and(|r| !r.witnessed)
    }

    /// The number of the round in flight: answers carrying another are late.
    pub fn current_id(&self) -> Option<u64> {
        self.current.as_ref().map(|_| self.round_id)
    }

    /// Starts a round for `signed` (this node's checkpoint), asking `peers`.
    pub fn start(
        &mut self,
        signed: SignedCheckpoint,
        peers: Vec<PeerId>,
        now: Instant,
    ) -> RoundAction {
        let note = signed.encode();
        self.last_start = Some(now);
        self.round_id += 1;
        self.current = Some(Round {
            signed,
            started: now,
            waiting: peers.iter().copied().collect(),
            retry: BTreeMap::new(),
            cosigners: BTreeSet::new(),
            witnessed: false,
        });
        RoundAction::Ask(peers, note)
    }

    /// A cosignature from `peer`, the node of `region`, already verified by the caller.
    pub fn cosigned(
        &mut self,
        peer: PeerId,
        region: RegionCode,
        line: NoteSignature,
        now: Instant,
    ) -> Option<RoundAction> {
        let round = self.current.as_mut()?;
        if !round.waiting.remove(&peer) {
            return None;
        }
        round.retry.remove(&peer);
        if round.cosigners.insert(region) {
            round.signed.signatures.push(line);
        }
        let mut out = None;
        if !round.witnessed && round.cosigners.len() >= self.quorum {
            round.witnessed = true;
            let before = self.witnessed_size;
            self.witnessed_size = round.signed.checkpoint.size;
            out = Some(RoundAction::Witnessed(
                round.signed.encode(),
                now.duration_since(round.started),
                before,
            ));
        }
        self.finish_if_done();
        out
    }

    /// The round's checkpoint, to check a cosignature against.
    pub fn current(&self) -> Option<&SignedCheckpoint> {
        self.current.as_ref().map(|r| &r.signed)
    }

    /// A refusal from `peer`: asked again later if it is only behind.
    pub fn refused(&mut self, peer: PeerId, why: &CosignRefusal, now: Instant) {
        let Some(round) = self.current.as_mut() else {
            return;
        };
        if why.retryable() && round.waiting.contains(&peer) {
            round.retry.insert(peer, now + RETRY_AFTER);
            return;
        }
        round.waiting.remove(&peer);
        round.retry.remove(&peer);
        self.finish_if_done();
    }

    /// The request to `peer` failed (disconnected, timed out): stop waiting for it.
    pub fn failed(&mut self, peer: PeerId) {
        if let Some(round) = self.current.as_mut() {
            round.waiting.remove(&peer);
            round.retry.remove(&peer);
        }
        self.finish_if_done();
    }

    /// Periodic: peers to ask again, and the end of a round past its deadline.
    pub fn tick(&mut self, now: Instant) -> Option<RoundAction> {
        let round = self.current.as_mut()?;
        if now.duration_since(round.started) >= ROUND_DEADLINE {
            self.current = None;
            return None;
        }
        let due: Vec<PeerId> = round
            .retry
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        if due.is_empty() {
            return None;
        }
        for p in &due {
            round.retry.remove(p);
        }
        Some(RoundAction::Ask(due, round.signed.encode()))
    }

    fn finish_if_done(&mut self) {
        if self.current.as_ref().is_some_and(|r| r.waiting.is_empty()) {
            self.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credfed_protocol::checkpoint::{Checkpoint, origin, witness_name};
    use credfed_protocol::crypto::{Hash256, Keypair};

    fn region(c: u32) -> RegionCode {
        RegionCode::new(c, "r").unwrap()
    }

    fn checkpoint(size: u64) -> SignedCheckpoint {
        let name = origin("f", region(310000));
        SignedCheckpoint::sign(
            Checkpoint::new(name.clone(), size, Hash256([1; 32])),
            &name,
            &Keypair::from_secret([1; 32]),
        )
    }

    fn line(c: u32) -> NoteSignature {
        let mut s = checkpoint(5);
        s.cosign(
            &witness_name("f", region(c)),
            &Keypair::from_secret([2; 32]),
            1,
        );
        s.signatures.pop().unwrap()
    }

    /// One round at a time, one per second under load; witnessed at the quorum, once;
    /// a peer that is behind is asked again; the round ends when all have answered.
    #[test]
    fn a_round_is_witnessed_at_its_quorum() {
        let t0 = Instant::now();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut r = Rounds::new(2);
        assert!(r.due(5, t0));
        let RoundAction::Ask(asked, note) = r.start(checkpoint(5), vec![a, b, c], t0) else {
            panic!()
        };
        assert_eq!(asked.len(), 3);
        assert!(note.contains("\n5\n"));
        assert!(
            !r.due(6, t0 + Duration::from_millis(10)),
            "one round at a time"
        );
        r.refused(b, &CosignRefusal::NotYet { held: 3 }, t0);
        assert_eq!(r.tick(t0 + Duration::from_millis(50)), None);
        assert!(matches!(r.tick(t0 + RETRY_AFTER), Some(RoundAction::Ask(p, _)) if p == vec![b]));
        assert_eq!(r.cosigned(a, region(440000), line(440000), t0), None);
        // The same peer twice counts once.
        assert_eq!(r.cosigned(a, region(440000), line(440000), t0), None);
        let Some(RoundAction::Witnessed(note, took, _)) = r.cosigned(
            b,
            region(620000),
            line(620000),
            t0 + Duration::from_millis(120),
        ) else {
            panic!()
        };
        assert_eq!(took, Duration::from_millis(120));
        assert_eq!(SignedCheckpoint::parse(&note).unwrap().signatures.len(), 3);
        // Nothing new to witness at size 5 until the refresh; at 6, not before the gap
        // has passed — and then without waiting for the straggler c.
        assert!(!r.due(5, t0 + Duration::from_secs(2)));
        assert!(r.due(5, t0 + REFRESH));
        assert!(!r.due(6, t0 + Duration::from_millis(500)));
        assert!(r.due(6, t0 + MIN_ROUND_GAP));
        let id = r.current_id();
        r.start(checkpoint(6), vec![a, b, c], t0 + MIN_ROUND_GAP);
        assert_ne!(r.current_id(), id, "a new round has a new number");
        r.failed(c);
    }

    /// A round whose witnesses never answer ends at its deadline, unwitnessed.
    #[test]
    fn a_silent_round_ends_at_its_deadline() {
        let t0 = Instant::now();
        let mut r = Rounds::new(1);
        r.start(checkpoint(3), vec![PeerId::random()], t0);
        assert_eq!(r.tick(t0 + ROUND_DEADLINE), None);
        assert!(r.current().is_none());
        assert!(r.due(3, t0 + ROUND_DEADLINE));
    }

    /// An idle region (its log unchanged, even empty) signs its head again every
    /// refresh, not more often.
    #[test]
    fn an_unchanged_head_is_refreshed_once_per_refresh_interval() {
        let t0 = Instant::now();
        let mut r = Rounds::new(1).with_refresh(Duration::from_secs(3));
        assert!(r.due(0, t0), "an empty log's head is witnessed too");
        r.start(checkpoint(0), vec![PeerId::random()], t0);
        assert!(!r.due(0, t0 + Duration::from_secs(1)), "a round in flight");
        r.current = None;
        assert!(!r.due(0, t0 + Duration::from_secs(2)));
        assert!(r.due(0, t0 + Duration::from_secs(3)));
    }
}

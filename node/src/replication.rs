//! Anti-entropy as a state machine: inputs in, requests out, no I/O.
//!
//! The libp2p glue (`p2p.rs`) feeds it peer events, heads and completed ranges and sends
//! what it returns. Keeping it pure lets tests drive many peers through failures
//! deterministically.
//!
//! Policy: learn every connected member's heads (on connect and every few seconds);
//! for each region where some peer is ahead, fetch the next range from the least busy
//! peer that has it — any peer, not only the region's own node, so an offline origin's
//! records still spread (docs/design.md §6). Up to [`RANGES_PER_REGION`] consecutive ranges in
//! flight per region (the next one travels while this one is applied), a bounded number
//! per peer, and a timeout that frees a stuck fetch for another peer.
//!
//! No rollback: until some peer has told us its view of our own region and we hold at
//! least that much of our own log, the node must not write (it could reuse sequence
//! numbers). [`Output::OpenWrites`] is emitted once that is confirmed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use credfed_protocol::ids::RegionCode;
use credfed_protocol::ledger::Head;
use libp2p::PeerId;

use crate::wire::MAX_RANGE_ENVELOPES;

/// Consecutive ranges of one region in flight at once. Two hide the round trip behind
/// applying the previous range; a range that overtakes the one before it is parked,
/// and [`MAX_PARKED_PER_REGION`] holds exactly one range, so more would be refetched.
pub const RANGES_PER_REGION: usize = 2;

/// A region a peer is ahead in by at most this many records is left to gossip for
/// [`PUSH_GRACE`]: in a steady stream every heads answer shows some peer a record or
/// two ahead, which gossip is delivering at that moment, and fetching it as well made
/// every node receive and check it twice. A larger gap (a partition healed, a node
/// restarted) is not gossip's to fill and is fetched at once.
pub const PUSH_WINDOW: u64 = 32;

/// How long a small gap may wait for gossip before it is fetched: several times the
/// propagation p99 of a 31-node federation on one machine (docs/performance.md), short
/// next to the heads interval that finds a gap gossip lost.
pub const PUSH_GRACE: Duration = Duration::from_millis(500);

/// Tunables, all bounded.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationConfig {
    /// How often to ask each peer for its heads.
    pub heads_interval: Duration,
    /// A range fetch not answered within this is given up and re-planned.
    pub fetch_timeout: Duration,
    /// Range requests in flight to one peer.
    pub max_inflight_per_peer: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            heads_interval: Duration::from_secs(2),
            fetch_timeout: Duration::from_secs(10),
            max_inflight_per_peer: 4,
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Input {
    /// A member peer connected.
    PeerUp(PeerId),
    /// It disconnected.
    PeerDown(PeerId),
    /// It reported its heads.
    Heads(PeerId, Vec<(RegionCode, Head)>),
    /// A range request to it (region, first sequence number) finished, applied or not.
    RangeDone(PeerId, RegionCode, u64),
    /// A request to it failed; for a range, which one.
    RequestFailed(PeerId, Option<(RegionCode, u64)>),
    /// Time passed.
    Tick,
}

/// Something to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Ask a peer for its heads.
    RequestHeads(PeerId),
    /// Ask a peer for a range.
    RequestRange {
        /// Whom.
        peer: PeerId,
        /// Which log.
        region: RegionCode,
        /// First sequence number.
        from: u64,
        /// How many at most.
        limit: u32,
    },
    /// The own log is confirmed complete: writes may start.
    OpenWrites,
    /// A peer holds more of our own log than this node does (a store copied back from
    /// an older state): writes stop until the missing records are fetched back.
    CloseWrites {
        /// The own head the peer reported.
        peer_head: u64,
        /// The own head held here.
        local: u64,
    },
}

#[derive(Debug, Default)]
struct PeerSync {
    heads: BTreeMap<RegionCode, u64>,
    inflight: usize,
    last_heads_request: Option<Instant>,
}

#[derive(Debug)]
struct Fetch {
    peer: PeerId,
    from: u64,
    sent: Instant,
}

/// The anti-entropy state machine.
#[derive(Debug)]
pub struct Replicator {
    config: ReplicationConfig,
    own_region: RegionCode,
    peers: BTreeMap<PeerId, PeerSync>,
    fetching: BTreeMap<RegionCode, Vec<Fetch>>,
    /// Per region, the peer whose last fetch timed out or failed: tried last next time.
    failed: BTreeMap<RegionCode, PeerId>,
    /// Highest head any connected peer reported, per region: kept up to date on every
    /// report (recomputing it per event showed in idle profiles of 31-node federations).
    best: BTreeMap<RegionCode, u64>,
    /// `best` changed since [`Replicator::take_best_changed`] last said so.
    best_changed: bool,
    /// Highest own-region head any peer reported, once one has.
    own_head_seen: Option<u64>,
    writes_open: bool,
    /// Per region, since when a peer has been at most [`PUSH_WINDOW`] records ahead of
    /// us with nothing fetched: the gap gossip is given [`PUSH_GRACE`] to fill.
    behind_since: BTreeMap<RegionCode, Instant>,
}

impl Replicator {
    /// A replicator for a node of `own_region`. With `open_at_start`, writes open at
    /// once: a store that holds its own log intact (every record of it that ever left
    /// the node is in it, see `engine::ShareableHead`), a federation of one, or an
    /// operator's explicit `solo` start. Otherwise they open once a peer has reported
    /// our own head and we hold at least that much.
    pub fn new(
        config: ReplicationConfig,
        own_region: RegionCode,
        open_at_start: bool,
    ) -> Replicator {
        Replicator {
            config,
            own_region,
            peers: BTreeMap::new(),
            fetching: BTreeMap::new(),
            failed: BTreeMap::new(),
            best: BTreeMap::new(),
            best_changed: false,
            own_head_seen: open_at_start.then_some(0),
            writes_open: false,
            behind_since: BTreeMap::new(),
        }
    }

    /// Connected peers and what they reported.
    pub fn peer_heads(&self) -> impl Iterator<Item = (&PeerId, &BTreeMap<RegionCode, u64>)> {
        self.peers.iter().map(|(p, s)| (p, &s.heads))
    }

    /// Highest head any connected peer reported for each region.
    pub fn best_known(&self) -> BTreeMap<RegionCode, u64> {
        self.best.clone()
    }

    /// Whether [`Replicator::best_known`] changed since the last call.
    pub fn take_best_changed(&mut self) -> bool {
        std::mem::take(&mut self.best_changed)
    }

    fn recompute_best(&mut self) {
        let mut best = BTreeMap::new();
        for s in self.peers.values() {
            for (r, h) in &s.heads {
                let e = best.entry(*r).or_insert(0);
                *e = (*e).max(*h);
            }
        }
        if best != self.best {
            self.best = best;
            self.best_changed = true;
        }
    }

    /// Feeds one input; `local` is the store's heads now, `now` the monotonic clock.
    pub fn step(
        &mut self,
        input: Input,
        local: &BTreeMap<RegionCode, u64>,
        now: Instant,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::PeerUp(p) => {
                let s = self.peers.entry(p).or_default();
                s.last_heads_request = Some(now);
                out.push(Output::RequestHeads(p));
            }
            Input::PeerDown(p) => {
                self.peers.remove(&p);
                self.recompute_best();
                for fetches in self.fetching.values_mut() {
                    fetches.retain(|f| f.peer != p);
                }
            }
            Input::Heads(p, heads) => {
                if let Some(s) = self.peers.get_mut(&p) {
                    for (r, h) in heads {
                        let e = s.heads.entry(r).or_insert(0);
                        *e = (*e).max(h.seq);
                        let b = self.best.entry(r).or_insert(0);
                        if h.seq > *b {
                            *b = h.seq;
                            self.best_changed = true;
                        }
                    }
                    let own = s.heads.get(&self.own_region).copied().unwrap_or(0);
                    self.own_head_seen = Some(self.own_head_seen.unwrap_or(0).max(own));
                    let held = local.get(&self.own_region).copied().unwrap_or(0);
                    if self.writes_open && own > held {
                        self.writes_open = false;
                        out.push(Output::CloseWrites {
                            peer_head: own,
                            local: held,
                        });
                    }
                }
            }
            Input::RangeDone(p, r, from) | Input::RequestFailed(p, Some((r, from))) => {
                if matches!(input, Input::RequestFailed(..)) {
                    self.failed.insert(r, p);
                } else if self.failed.get(&r) == Some(&p) {
                    self.failed.remove(&r);
                }
                if let Some(fetches) = self.fetching.get_mut(&r) {
                    fetches.retain(|f| !(f.peer == p && f.from == from));
                }
                if let Some(s) = self.peers.get_mut(&p) {
                    s.inflight = s.inflight.saturating_sub(1);
                }
            }
            Input::RequestFailed(_, None) => {}
            Input::Tick => {
                let timeout = self.config.fetch_timeout;
                for (r, fetches) in self.fetching.iter_mut() {
                    for f in fetches.extract_if(.., |f| now.duration_since(f.sent) > timeout) {
                        self.failed.insert(*r, f.peer);
                        if let Some(s) = self.peers.get_mut(&f.peer) {
                            s.inflight = s.inflight.saturating_sub(1);
                        }
                    }
                }
                for (p, s) in self.peers.iter_mut() {
                    if s.last_heads_request
                        .is_none_or(|t| now.duration_since(t) >= self.config.heads_interval)
                    {
                        s.last_heads_request = Some(now);
                        out.push(Output::RequestHeads(*p));
                    }
                }
            }
        }
        self.plan(local, now, &mut out);
        if !self.writes_open
            && let Some(seen) = self.own_head_seen
            && local.get(&self.own_region).copied().unwrap_or(0) >= seen
        {
            self.writes_open = true;
            out.push(Output::OpenWrites);
        }
        out
    }

    fn plan(&mut self, local: &BTreeMap<RegionCode, u64>, now: Instant, out: &mut Vec<Output>) {
        let limit = u64::from(MAX_RANGE_ENVELOPES);
        let behind: Vec<(RegionCode, u64)> = self
            .best
            .iter()
            .filter(|(r, b)| **b > local.get(*r).copied().unwrap_or(0))
            .map(|(r, b)| (*r, *b))
            .collect();
        self.behind_since
            .retain(|r, _| behind.iter().any(|(b, _)| b == r));
        for (region, best) in behind {
            let have = local.get(&region).copied().unwrap_or(0);
            let idle = self.fetching.get(&region).is_none_or(Vec::is_empty);
            if idle && region != self.own_region && best - have <= PUSH_WINDOW {
                let since = *self.behind_since.entry(region).or_insert(now);
                if now.duration_since(since) < PUSH_GRACE {
                    continue;
                }
            }
            for _ in 0..RANGES_PER_REGION {
                let fetches = self.fetching.entry(region).or_default();
                if fetches.len() >= RANGES_PER_REGION {
                    break;
                }
                // The first missing record must always be asked for; after that, the
                // range following the last one in flight.
                let first_missing = have + 1;
                let covered = fetches
                    .iter()
                    .any(|f| f.from <= first_missing && first_missing < f.from + limit);
                let from = if covered {
                    fetches
                        .iter()
                        .map(|f| f.from + limit)
                        .max()
                        .unwrap_or(first_missing)
                } else {
                    first_missing
                };
                if from > best {
                    break;
                }
                let max = self.config.max_inflight_per_peer;
                let candidate = self
                    .peers
                    .iter()
                    .filter(|(_, s)| {
                        s.inflight < max && s.heads.get(&region).copied().unwrap_or(0) >= from
                    })
                    .min_by_key(|(p, s)| (self.failed.get(&region) == Some(*p), s.inflight, **p))
                    .map(|(p, _)| *p);
                let Some(peer) = candidate else {
                    break;
                };
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.inflight += 1;
                }
                self.fetching.entry(region).or_default().push(Fetch {
                    peer,
                    from,
                    sent: now,
                });
                out.push(Output::RequestRange {
                    peer,
                    region,
                    from,
                    limit: MAX_RANGE_ENVELOPES,
                });
            }
        }
    }
}

/// Envelopes that arrived ahead of their turn (a gap in push, or a cross-region
/// reference not yet held), kept until pull fills in what they wait for. Bounded per
/// region; the oldest are dropped first, and pull fetches them again later.
#[derive(Debug, Default)]
pub struct Parked {
    by_region: BTreeMap<RegionCode, VecDeque<(u64, Vec<u8>)>>,
}

/// Envelopes parked per region.
pub const MAX_PARKED_PER_REGION: usize = 1024;

impl Parked {
    /// Keeps an envelope at `(region, seq)`.
    pub fn park(&mut self, region: RegionCode, seq: u64, bytes: Vec<u8>) {
        let q = self.by_region.entry(region).or_default();
        if q.iter().any(|(s, _)| *s == seq) {
            return;
        }
        if q.len() >= MAX_PARKED_PER_REGION {
            q.pop_back();
        }
        let at = q.partition_point(|(s, _)| *s < seq);
        q.insert(at, (seq, bytes));
    }

    /// Drops what is at or below the local head and returns, per region, the envelope
    /// that is next in line, if parked.
    pub fn ready(&mut self, local: &BTreeMap<RegionCode, u64>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (r, q) in self.by_region.iter_mut() {
            let have = local.get(r).copied().unwrap_or(0);
            while q.front().is_some_and(|(s, _)| *s <= have) {
                q.pop_front();
            }
            if let Some((s, b)) = q.front()
                && *s == have + 1
            {
                out.push(b.clone());
            }
        }
        self.by_region.retain(|_, q| !q.is_empty());
        out
    }

    /// Drops the envelope parked at `(region, seq)`, if any.
    pub fn remove(&mut self, region: RegionCode, seq: u64) {
        if let Some(q) = self.by_region.get_mut(&region) {
            q.retain(|(s, _)| *s != seq);
            if q.is_empty() {
                self.by_region.remove(&region);
            }
        }
    }

    /// Total parked.
    pub fn len(&self) -> usize {
        self.by_region.values().map(VecDeque::len).sum()
    }

    /// Nothing parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credfed_protocol::crypto::Hash256;
    use credfed_protocol::time::Timestamp;

    fn r(c: u32) -> RegionCode {
        RegionCode::new(c, "r").unwrap()
    }
    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: Hash256([0; 32]),
            timestamp: Timestamp(0),
        }
    }

    #[test]
    fn fetches_from_any_peer_that_has_the_range_and_reassigns_on_timeout() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut rep = Replicator::new(ReplicationConfig::default(), r(110000), false);
        let t0 = Instant::now();
        let local = BTreeMap::new();
        assert_eq!(
            rep.step(Input::PeerUp(a), &local, t0),
            vec![Output::RequestHeads(a)]
        );
        rep.step(Input::PeerUp(b), &local, t0);
        // B (not Shanghai's own node) has Shanghai's records: fetch from B.
        let out = rep.step(Input::Heads(b, vec![(r(310000), head(100))]), &local, t0);
        assert!(
            out.contains(&Output::RequestRange {
                peer: b,
                region: r(310000),
                from: 1,
                limit: MAX_RANGE_ENVELOPES
            }),
            "{out:?}"
        );
        // One fetch per region at a time.
        let out = rep.step(Input::Heads(a, vec![(r(310000), head(100))]), &local, t0);
        assert!(
            !out.iter().any(|o| matches!(o, Output::RequestRange { .. })),
            "{out:?}"
        );
        // B goes silent: after the timeout the region is re-planned, on A (least busy).
        let later = t0 + Duration::from_secs(11);
        let out = rep.step(Input::Tick, &local, later);
        assert!(
            out.contains(&Output::RequestRange {
                peer: a,
                region: r(310000),
                from: 1,
                limit: MAX_RANGE_ENVELOPES
            }),
            "{out:?}"
        );
        // Progress: the next fetch starts after what is now held.
        let mut local = BTreeMap::new();
        local.insert(r(310000), 4);
        let out = rep.step(Input::RangeDone(a, r(310000), 1), &local, later);
        assert!(out.iter().any(|o| matches!(o, Output::RequestRange { region, from: 5, .. } if *region == r(310000))), "{out:?}");
    }

    fn ranges(out: &[Output]) -> Vec<(PeerId, u64)> {
        out.iter()
            .filter_map(|o| match o {
                Output::RequestRange { peer, from, .. } => Some((*peer, *from)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn long_catch_up_keeps_two_consecutive_ranges_in_flight() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let sh = r(310000);
        let n = u64::from(MAX_RANGE_ENVELOPES);
        let mut rep = Replicator::new(ReplicationConfig::default(), r(110000), false);
        let t = Instant::now();
        let mut local = BTreeMap::new();
        rep.step(Input::PeerUp(a), &local, t);
        rep.step(Input::PeerUp(b), &local, t);
        rep.step(Input::Heads(b, vec![(sh, head(10 * n))]), &local, t);
        let out = rep.step(Input::Heads(a, vec![(sh, head(10 * n))]), &local, t);
        // Together the two heads answers asked for the first two ranges, one per peer.
        let mut asked: Vec<u64> = ranges(&out).iter().map(|x| x.1).collect();
        asked.extend(
            ranges(&rep.step(Input::Tick, &local, t))
                .iter()
                .map(|x| x.1),
        );
        let first_two = rep
            .fetching
            .get(&sh)
            .map(|f| f.iter().map(|f| f.from).collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(first_two, vec![1, n + 1], "asked {asked:?}");
        // The first range applied: the third is asked for, after the one still in flight.
        local.insert(sh, n);
        let peer_of_first = rep.fetching[&sh][0].peer;
        let out = rep.step(Input::RangeDone(peer_of_first, sh, 1), &local, t);
        assert_eq!(
            ranges(&out).iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![2 * n + 1]
        );
        // The second range fails: the first missing record is asked for again at once,
        // not skipped past.
        let peer_of_second = rep.fetching[&sh][0].peer;
        let out = rep.step(
            Input::RequestFailed(peer_of_second, Some((sh, n + 1))),
            &local,
            t,
        );
        assert_eq!(
            ranges(&out).iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![n + 1]
        );
        // Never more than two in flight for the region.
        assert_eq!(rep.fetching[&sh].len(), RANGES_PER_REGION);
        // Nothing past the best known head is asked for.
        let mut near_end = BTreeMap::new();
        near_end.insert(sh, 10 * n - 5);
        let mut fresh = Replicator::new(ReplicationConfig::default(), r(110000), false);
        fresh.step(Input::PeerUp(a), &near_end, t);
        let out = fresh.step(Input::Heads(a, vec![(sh, head(10 * n))]), &near_end, t);
        // Five records behind: gossip gets its grace first.
        assert!(ranges(&out).is_empty(), "{out:?}");
        let out = fresh.step(Input::Tick, &near_end, t + PUSH_GRACE);
        assert_eq!(ranges(&out), vec![(a, 10 * n - 4)]);
    }

    #[test]
    fn writes_open_only_after_own_log_is_confirmed_and_recovered() {
        let p = PeerId::random();
        let own = r(310000);
        let mut rep = Replicator::new(ReplicationConfig::default(), own, false);
        let t = Instant::now();
        let mut local = BTreeMap::new();
        let out = rep.step(Input::PeerUp(p), &local, t);
        assert!(!out.contains(&Output::OpenWrites));
        // The peer holds 7 of our records, we hold 3 (restored from an old backup).
        local.insert(own, 3);
        let out = rep.step(Input::Heads(p, vec![(own, head(7))]), &local, t);
        assert!(!out.contains(&Output::OpenWrites));
        assert!(out.contains(&Output::RequestRange {
            peer: p,
            region: own,
            from: 4,
            limit: MAX_RANGE_ENVELOPES
        }));
        local.insert(own, 7);
        let out = rep.step(Input::RangeDone(p, own, 4), &local, t);
        assert!(out.contains(&Output::OpenWrites));
        // Once only.
        assert!(
            !rep.step(Input::Tick, &local, t)
                .contains(&Output::OpenWrites)
        );
        // Solo mode opens at once.
        let mut solo = Replicator::new(ReplicationConfig::default(), own, true);
        assert!(
            solo.step(Input::Tick, &BTreeMap::new(), t)
                .contains(&Output::OpenWrites)
        );
    }

    #[test]
    fn an_intact_store_opens_at_once_and_closes_if_a_peer_holds_more_of_its_log() {
        let p = PeerId::random();
        let own = r(310000);
        let mut rep = Replicator::new(ReplicationConfig::default(), own, true);
        let t = Instant::now();
        let mut local = BTreeMap::new();
        local.insert(own, 5);
        // No peer at all: open.
        assert!(
            rep.step(Input::Tick, &local, t)
                .contains(&Output::OpenWrites)
        );
        rep.step(Input::PeerUp(p), &local, t);
        // A peer that holds what we hold changes nothing.
        let out = rep.step(Input::Heads(p, vec![(own, head(5))]), &local, t);
        assert!(
            !out.iter().any(|o| matches!(o, Output::CloseWrites { .. })),
            "{out:?}"
        );
        // One that holds more of our own log than we do closes writes at once and has
        // the missing records fetched back...
        let out = rep.step(Input::Heads(p, vec![(own, head(8))]), &local, t);
        assert!(
            out.contains(&Output::CloseWrites {
                peer_head: 8,
                local: 5
            }),
            "{out:?}"
        );
        assert!(ranges(&out).contains(&(p, 6)), "{out:?}");
        // ...and they open again once we hold them.
        local.insert(own, 8);
        let out = rep.step(Input::RangeDone(p, own, 6), &local, t);
        assert!(out.contains(&Output::OpenWrites), "{out:?}");
    }

    #[test]
    fn heads_are_polled_and_busy_peers_are_spared() {
        let p = PeerId::random();
        let cfg = ReplicationConfig {
            max_inflight_per_peer: 1,
            ..ReplicationConfig::default()
        };
        let mut rep = Replicator::new(cfg, r(110000), false);
        let t = Instant::now();
        let local = BTreeMap::new();
        rep.step(Input::PeerUp(p), &local, t);
        let out = rep.step(
            Input::Heads(p, vec![(r(310000), head(100)), (r(440000), head(100))]),
            &local,
            t,
        );
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, Output::RequestRange { .. }))
                .count(),
            1,
            "{out:?}"
        );
        let out = rep.step(Input::Tick, &local, t + Duration::from_secs(3));
        assert!(out.contains(&Output::RequestHeads(p)));
        // Disconnect frees everything.
        rep.step(Input::PeerDown(p), &local, t);
        assert!(rep.best_known().is_empty());
    }

    #[test]
    fn small_gaps_are_left_to_gossip_for_a_grace_then_fetched() {
        let p = PeerId::random();
        let (own, sh, gd) = (r(110000), r(310000), r(440000));
        let mut rep = Replicator::new(ReplicationConfig::default(), own, false);
        let t = Instant::now();
        let mut local = BTreeMap::new();
        local.insert(sh, 10);
        rep.step(Input::PeerUp(p), &local, t);
        // Shanghai two records ahead, Guangdong far ahead, our own log one behind.
        let heads = vec![
            (sh, head(12)),
            (gd, head(10 + PUSH_WINDOW + 1)),
            (own, head(1)),
        ];
        let out = rep.step(Input::Heads(p, heads), &local, t);
        let regions: Vec<RegionCode> = out
            .iter()
            .filter_map(|o| match o {
                Output::RequestRange { region, .. } => Some(*region),
                _ => None,
            })
            .collect();
        assert!(regions.contains(&gd) && regions.contains(&own), "{out:?}");
        assert!(
            !regions.contains(&sh),
            "a two-record gap waits for gossip: {out:?}"
        );
        // Gossip delivers one of the two; the gap is still open inside the grace.
        local.insert(sh, 11);
        let out = rep.step(Input::Tick, &local, t + PUSH_GRACE / 2);
        assert!(!ranges(&out).iter().any(|(_, from)| *from == 12), "{out:?}");
        // The grace runs out with the last record still missing: it is fetched.
        let out = rep.step(Input::Tick, &local, t + PUSH_GRACE);
        assert!(
            out.contains(&Output::RequestRange {
                peer: p,
                region: sh,
                from: 12,
                limit: MAX_RANGE_ENVELOPES
            }),
            "{out:?}"
        );
        // A gap gossip closes in time is never fetched, and the next one waits afresh.
        let mut fresh = Replicator::new(ReplicationConfig::default(), own, false);
        let mut local = BTreeMap::new();
        local.insert(sh, 10);
        fresh.step(Input::PeerUp(p), &local, t);
        fresh.step(Input::Heads(p, vec![(sh, head(11))]), &local, t);
        local.insert(sh, 11);
        let out = fresh.step(Input::Tick, &local, t + PUSH_GRACE / 2);
        assert!(ranges(&out).is_empty(), "{out:?}");
        let later = t + PUSH_GRACE;
        fresh.step(Input::Heads(p, vec![(sh, head(12))]), &local, later);
        let out = fresh.step(Input::Tick, &local, later + PUSH_GRACE / 2);
        assert!(ranges(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn parked_envelopes_come_out_in_order_and_are_bounded() {
        let mut parked = Parked::default();
        let sh = r(310000);
        parked.park(sh, 3, vec![3]);
        parked.park(sh, 2, vec![2]);
        parked.park(sh, 2, vec![2]);
        assert_eq!(parked.len(), 2);
        let mut local = BTreeMap::new();
        assert!(parked.ready(&local).is_empty());
        local.insert(sh, 1);
        assert_eq!(parked.ready(&local), vec![vec![2]]);
        local.insert(sh, 2);
        assert_eq!(parked.ready(&local), vec![vec![3]]);
        local.insert(sh, 3);
        assert!(parked.ready(&local).is_empty() && parked.is_empty());
        for s in 0..(MAX_PARKED_PER_REGION as u64 + 10) {
            parked.park(sh, 100 + s, vec![]);
        }
        assert_eq!(parked.len(), MAX_PARKED_PER_REGION);
    }
}

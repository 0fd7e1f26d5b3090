//! Person keys at this node (docs/privacy.md): asking t members for a number's key, and
//! answering other members' requests with this member's share.
//!
//! Asking ([`PersonKeyer::keys`]): every number is hashed to the group and blinded here;
//! only blinded elements leave the node. This member's own share answers first (no
//! round trip), then connected members in turn until t verified answers are in; a member
//! that refuses, times out or answers with an evaluation its proof does not cover is
//! counted against it (metrics and status name it) and the next member is asked. With
//! fewer than t members reachable the answer says so: person checks and publications
//! are unavailable, organisation checks are not affected. Keys of numbers this node's
//! departments asked about recently are cached in memory (bounded, expiring), so that a
//! repeated check costs no round trip.
//!
//! Answering ([`Responder::answer`]): each asking member has a budget (the manifest's
//! `person_key.evaluations_per_day`, with `burst`), refilled continuously; a request
//! beyond it is refused, audited, counted and logged. Every evaluation is audited with
//! the asking member and the number of elements — never anything about the numbers,
//! which this member never sees.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credfed_client::types::PersonKeyStatus;
use credfed_protocol::crypto::Hash256;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::manifest::PersonKeyShares;
use credfed_protocol::oprf::{
    self, Blind, Element, EvaluationRefusal, EvaluationRequest, EvaluationResponse, RistrettoPoint,
    ShareKey,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::p2p::{Command, NetStatus};

/// How long an asked member has to answer before the next is asked.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys kept in the cache at most: about 80 bytes each, so 8 MiB at most.
pub const CACHE_ENTRIES: usize = 100_000;

/// How long a cached key is used: long enough for a desk's repeated checks of one person
/// during a procedure, short enough that the cache is not a standing list of everyone
/// the node's departments looked at.
pub const CACHE_TTL: Duration = Duration::from_secs(15 * 60);

/// Why no key could be given.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PersonKeyError {
    /// The manifest carries no person key yet.
    #[error(
        "person keys are not set up in this federation's manifest (no person_key): the members' key ceremony has not run; organisation checks are unaffected (docs/operator.md, \"Person keys\")"
    )]
    NotConfigured,
    /// Too few members answered.
    #[error(
        "person checks unavailable: {answered} of the {needed} members needed answered ({reachable} reachable){}; organisation checks are unaffected; try again when more members are connected",
        if failures.is_empty() { String::new() } else { format!("; {}", failures.join("; ")) }
    )]
    Unavailable {
        /// Members needed (t).
        needed: u16,
        /// Members that were reachable when asked (this one included if it holds a share).
        reachable: usize,
        /// Members that answered with a verified evaluation.
        answered: usize,
        /// What went wrong with each member asked that did not.
        failures: Vec<String>,
    },
    /// A local failure (randomness, a task).
    #[error("person key: {0}")]
    Internal(String),
}

/// Counters for `/metrics` and `/v1/status`.
#[derive(Debug, Default)]
pub struct PersonKeyStats {
    /// Numbers keyed for this node's departments (cache hits included).
    pub asked: AtomicU64,
    /// Of those, answered from the cache.
    pub cache_hits: AtomicU64,
    /// Requests that could not be answered for want of members.
    pub unavailable: AtomicU64,
    /// Failed answers by member region and reason (refused, over_budget, timeout,
    /// bad_proof, unreachable).
    pub member_failures: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Elements this member evaluated for others, by asking region.
    pub evaluated_for: Mutex<BTreeMap<String, u64>>,
    /// Requests this member refused, by asking region and reason.
    pub refused: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Other members' signed reports of askers over budget: (asker, reporter) → the
    /// highest count reported.
    pub reported: Mutex<BTreeMap<(String, String), u64>>,
}

impl PersonKeyStats {
    /// Requests this member refused `asker` over its budget so far.
    pub fn refused_over_budget(&self, asker: &str) -> u64 {
        self.refused
            .lock()
            .ok()
            .and_then(|m| m.get(&(asker.to_string(), "over_budget")).copied())
            .unwrap_or(0)
    }

    /// Takes in another member's verified report; whether it is news (a higher count).
    pub fn note_report(&self, asker: &str, reporter: &str, refused: u64) -> bool {
        let Ok(mut m) = self.reported.lock() else {
            return false;
        };
        let held = m
            .entry((asker.to_string(), reporter.to_string()))
            .or_default();
        if refused > *held {
            *held = refused;
            true
        } else {
            false
        }
    }
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K, n: u64) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += n;
    }
}

/// Recently computed keys, by a salted hash of the number (the salt is random per
/// process, so the cache's keys mean nothing outside it).
struct KeyCache {
    salt: [u8; 32],
    keys: HashMap<[u8; 32], (Hash256, Instant)>,
    order: VecDeque<([u8; 32], Instant)>,
}

impl KeyCache {
    fn new() -> Result<KeyCache, PersonKeyError> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| PersonKeyError::Internal(e.to_string()))?;
        Ok(KeyCache {
            salt,
            keys: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    fn slot(&self, number: &str) -> [u8; 32] {
        credfed_protocol::crypto::sha256(&[&self.salt, number.as_bytes()]).0
    }

    fn get(&mut self, number: &str, now: Instant) -> Option<Hash256> {
        self.expire(now);
        self.keys.get(&self.slot(number)).map(|(k, _)| *k)
    }

    fn put(&mut self, number: &str, key: Hash256, now: Instant) {
        self.expire(now);
        while self.keys.len() >= CACHE_ENTRIES {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&old).is_some_and(|(_, t)| *t == at) {
                self.keys.remove(&old);
            }
        }
        let slot = self.slot(number);
        self.keys.insert(slot, (key, now));
        self.order.push_back((slot, now));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((slot, at)) = self.order.front().copied() {
            if now.duration_since(at) < CACHE_TTL {
                break;
            }
            self.order.pop_front();
            if self.keys.get(&slot).is_some_and(|(_, t)| *t == at) {
                self.keys.remove(&slot);
            }
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The asking side.
pub struct PersonKeyer {
    region: RegionCode,
    shares: Option<PersonKeyShares>,
    own: Option<Arc<ShareKey>>,
    peers: BTreeMap<RegionCode, PeerId>,
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<NetStatus>>,
    cache: Mutex<KeyCache>,
    stats: Arc<PersonKeyStats>,
    /// Rotates the first remote member asked, so that load spreads over members.
    next_start: AtomicU64,
}

fn random64() -> Result<[u8; 64], PersonKeyError> {
    let mut r = [0u8; 64];
    getrandom::fill(&mut r).map_err(|e| PersonKeyError::Internal(e.to_string()))?;
    Ok(r)
}

impl PersonKeyer {
    /// Builds the asking side from the manifest's shares, this member's share (if it
    /// holds one) and the members' peer ids.
    pub fn new(
        region: RegionCode,
        shares: Option<PersonKeyShares>,
        own: Option<Arc<ShareKey>>,
        peers: BTreeMap<RegionCode, PeerId>,
        commands: mpsc::Sender<Command>,
        status: Arc<Mutex<NetStatus>>,
        stats: Arc<PersonKeyStats>,
    ) -> Result<PersonKeyer, PersonKeyError> {
        Ok(PersonKeyer {
            region,
            shares,
            own,
            peers,
            commands,
            status,
            cache: Mutex::new(KeyCache::new()?),
            stats,
            next_start: AtomicU64::new(0),
        })
    }

    /// Keys cached now.
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// The counters.
    pub fn stats(&self) -> &PersonKeyStats {
        &self.stats
    }

    /// Members holding shares that are reachable now, this one first if it holds one.
    /// `rotate` turns the order of the remote members by one each time (when asking, so
    /// that load spreads; the status only counts them).
    fn reachable(&self, shares: &PersonKeyShares, rotate: bool) -> Vec<RegionCode> {
        let connected: Vec<String> = self
            .status
            .lock()
            .map(|s| s.connected.keys().cloned().collect())
            .unwrap_or_default();
        let mut remote: Vec<RegionCode> = shares
            .shares
            .iter()
            .map(|s| s.region)
            .filter(|r| *r != self.region && connected.contains(&r.to_string()))
            .collect();
        if rotate && !remote.is_empty() {
            let start = (self.next_start.fetch_add(1, Ordering::Relaxed) as usize) % remote.len();
            remote.rotate_left(start);
        }
        let own = self
            .own
            .as_ref()
            .filter(|_| shares.of_region(self.region).is_some())
            .map(|_| self.region);
        own.into_iter().chain(remote).collect()
    }

    /// What `/v1/status` shows.
    pub fn status(&self) -> PersonKeyStatus {
        let (threshold, members_with_shares, reachable) = match &self.shares {
            Some(s) => (s.threshold, s.shares.len(), self.reachable(s, false).len()),
            None => (0, 0, 0),
        };
        let flatten = |m: &Mutex<BTreeMap<(String, &'static str), u64>>, only: Option<&str>| {
            let mut out = BTreeMap::new();
            if let Ok(m) = m.lock() {
                for ((region, reason), n) in m.iter() {
                    if only.is_none_or(|o| o == *reason) {
                        let key = if only.is_some() {
                            region.clone()
                        } else {
                            format!("{region}:{reason}")
                        };
                        *out.entry(key).or_default() += n;
                    }
                }
            }
            out
        };
        PersonKeyStatus {
            configured: self.shares.is_some(),
            threshold,
            members_with_shares,
            own_share: self.own.is_some(),
            reachable,
            available: self.shares.is_some() && reachable >= usize::from(threshold),
            member_failures: flatten(&self.stats.member_failures, None),
            over_budget: flatten(&self.stats.refused, Some("over_budget")),
            over_budget_reported: {
                let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
                if let Ok(m) = self.stats.reported.lock() {
                    for ((asker, reporter), n) in m.iter() {
                        out.entry(asker.clone())
                            .or_default()
                            .insert(reporter.clone(), *n);
                    }
                }
                out
            },
        }
    }

    /// Appends the person-key metrics in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let st = &self.stats;
        let status = self.status();
        let mut w = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        w(
            "credfed_person_keys_asked_total",
            "counter",
            "Numbers keyed for this node's departments (cache hits included).",
            vec![(String::new(), st.asked.load(Ordering::Relaxed))],
        );
        w(
            "credfed_person_key_cache_hits_total",
            "counter",
            "Person keys answered from the in-memory cache.",
            vec![(String::new(), st.cache_hits.load(Ordering::Relaxed))],
        );
        w(
            "credfed_person_key_cache_entries",
            "gauge",
            "Person keys cached now.",
            vec![(String::new(), self.cached() as u64)],
        );
        w(
            "credfed_person_keys_unavailable_total",
            "counter",
            "Person-key requests that failed for want of members.",
            vec![(String::new(), st.unavailable.load(Ordering::Relaxed))],
        );
        w(
            "credfed_person_key_members_reachable",
            "gauge",
            "Members holding shares that are reachable now (this one included).",
            vec![(String::new(), status.reachable as u64)],
        );
        let labelled = |m: &Mutex<BTreeMap<(String, &'static str), u64>>, a: &str, b: &str| {
            m.lock()
                .map(|m| {
                    m.iter()
                        .map(|((r, why), n)| (format!("{{{a}=\"{r}\",{b}=\"{why}\"}}"), *n))
                        .collect()
                })
                .unwrap_or_default()
        };
        w(
            "credfed_person_key_member_failures_total",
            "counter",
            "Members that did not give a verified evaluation when asked, by member and reason.",
            labelled(&st.member_failures, "member", "reason"),
        );
        w(
            "credfed_person_key_refused_total",
            "counter",
            "Evaluation requests this member refused, by asking member and reason.",
            labelled(&st.refused, "asking", "reason"),
        );
        w(
            "credfed_person_key_over_budget_reported",
            "gauge",
            "Requests other members report refusing an asking member over its budget (signed reports, gossiped), by asking and reporting member.",
            self.stats
                .reported
                .lock()
                .map(|m| {
                    m.iter()
                        .map(|((asker, reporter), n)| {
                            (
                                format!("{{asking=\"{asker}\",reporter=\"{reporter}\"}}"),
                                *n,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        );
        w(
            "credfed_person_key_evaluations_total",
            "counter",
            "Elements this member evaluated for other members, by asking member.",
            st.evaluated_for
                .lock()
                .map(|m| {
                    m.iter()
                        .map(|(r, n)| (format!("{{asking=\"{r}\"}}"), *n))
                        .collect()
                })
                .unwrap_or_default(),
        );
    }

    /// The person keys of valid, normalised identity numbers, in order.
    pub async fn keys(&self, numbers: &[String]) -> Result<Vec<Hash256>, PersonKeyError> {
        let shares = self.shares.as_ref().ok_or(PersonKeyError::NotConfigured)?;
        self.stats
            .asked
            .fetch_add(numbers.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut out: Vec<Option<Hash256>> = {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| PersonKeyError::Internal("cache lock poisoned".into()))?;
            numbers.iter().map(|n| cache.get(n, now)).collect()
        };
        let misses: Vec<usize> = (0..numbers.len()).filter(|&i| out[i].is_none()).collect();
        self.stats
            .cache_hits
            .fetch_add((numbers.len() - misses.len()) as u64, Ordering::Relaxed);
        for chunk in misses.chunks(oprf::MAX_BATCH) {
            let batch: Vec<String> = chunk.iter().map(|&i| numbers[i].clone()).collect();
            let keys = self.key_batch(shares, batch).await.inspect_err(|_| {
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
            })?;
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| PersonKeyError::Internal("cache lock poisoned".into()))?;
            for (&i, key) in chunk.iter().zip(keys) {
                cache.put(&numbers[i], key, Instant::now());
                out[i] = Some(key);
            }
        }
        out.into_iter()
            .map(|k| k.ok_or_else(|| PersonKeyError::Internal("a key was not computed".into())))
            .collect()
    }

    async fn key_batch(
        &self,
        shares: &PersonKeyShares,
        numbers: Vec<String>,
    ) -> Result<Vec<Hash256>, PersonKeyError> {
        let needed = shares.threshold;
        let t = usize::from(needed);
        let candidates = self.reachable(shares, true);
        let reachable = candidates.len();
        if reachable < t {
            return Err(PersonKeyError::Unavailable {
                needed,
                reachable,
                answered: 0,
                failures: vec![],
            });
        }
        let mut blinds: Vec<Blind> = Vec::with_capacity(numbers.len());
        let mut blinded: Vec<Element> = Vec::with_capacity(numbers.len());
        for n in &numbers {
            let (b, e) = oprf::blind(n.as_bytes(), &random64()?)
                .map_err(|e| PersonKeyError::Internal(e.to_string()))?;
            blinds.push(b);
            blinded.push(e);
        }
        // Decoded once, for this node's own evaluation and every member's verification.
        let points = blinded
            .iter()
            .map(|e| oprf::decode_element(e, "blinded_element"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PersonKeyError::Internal(e.to_string()))?;
        let (blinded, points) = (Arc::new(blinded), Arc::new(points));
        let mut failed: Vec<RegionCode> = Vec::new();
        let mut failures = Vec::new();
        let mut answered = 0;
        // Each round asks one set of t members, each scaling its share by its Lagrange
        // coefficient in the set, so that the answers only need adding up. A member
        // that fails is left out and the next round asks a new set (the others' answers
        // were scaled for the old one).
        loop {
            let members: Vec<RegionCode> = candidates
                .iter()
                .filter(|r| !failed.contains(r))
                .take(t)
                .copied()
                .collect();
            if members.len() < t {
                return Err(PersonKeyError::Unavailable {
                    needed,
                    reachable,
                    answered,
                    failures,
                });
            }
            let set: Arc<Vec<u16>> = Arc::new(
                members
                    .iter()
                    .filter_map(|r| shares.of_region(*r).map(|s| s.index))
                    .collect(),
            );
            let answers: Vec<_> = members
                .iter()
                .map(|r| self.ask(shares, *r, set.clone(), blinded.clone(), points.clone()))
                .collect::<FuturesUnordered<_>>()
                .collect()
                .await;
            let mut parts = Vec::with_capacity(t);
            for (region, answer) in answers {
                match answer {
                    Ok(part) => parts.push(part),
                    Err((reason, detail)) => {
                        bump(&self.stats.member_failures, (region.to_string(), reason), 1);
                        tracing::warn!(member = %region, reason, detail, "a member did not give a person-key evaluation; asking another set");
                        failures.push(format!("{region}: {detail}"));
                        failed.push(region);
                    }
                }
            }
            answered = parts.len();
            if parts.len() == t {
                return tokio::task::spawn_blocking(move || finish(&numbers, &blinds, &parts))
                    .await
                    .map_err(|e| PersonKeyError::Internal(e.to_string()))?;
            }
        }
    }

    /// Asks one member of the set (this one locally) and verifies its answer.
    async fn ask(
        &self,
        shares: &PersonKeyShares,
        region: RegionCode,
        set: Arc<Vec<u16>>,
        blinded: Arc<Vec<Element>>,
        points: Arc<Vec<RistrettoPoint>>,
    ) -> (
        RegionCode,
        Result<Vec<RistrettoPoint>, (&'static str, String)>,
    ) {
        let Some(entry) = shares.of_region(region).cloned() else {
            return (region, Err(("refused", "holds no share".into())));
        };
        if region == self.region {
            let Some(own) = self.own.clone() else {
                return (region, Err(("refused", "this node holds no share".into())));
            };
            // This node's own answer needs no proof to itself.
            let local = tokio::task::spawn_blocking(move || {
                oprf::scaled_share(&own, &set).map(|s| s.evaluate_unproven(&points))
            })
            .await;
            return match local {
                Ok(Ok(p)) => (region, Ok(p)),
                Ok(Err(e)) => (region, Err(("refused", e.to_string()))),
                Err(e) => (region, Err(("refused", e.to_string()))),
            };
        }
        let Some(peer) = self.peers.get(&region).copied() else {
            return (region, Err(("unreachable", "no peer id".into())));
        };
        let (tx, rx) = oneshot::channel();
        let call = Command::PersonKey {
            peer,
            request: EvaluationRequest {
                members: set.to_vec(),
                blinded: blinded.to_vec(),
            },
            reply: tx,
        };
        if self.commands.send(call).await.is_err() {
            return (region, Err(("unreachable", "network stopped".into())));
        }
        let response = match tokio::time::timeout(MEMBER_TIMEOUT, rx).await {
            Err(_) => {
                return (
                    region,
                    Err(("timeout", format!("no answer within {MEMBER_TIMEOUT:?}"))),
                );
            }
            Ok(Err(_)) => return (region, Err(("unreachable", "request dropped".into()))),
            Ok(Ok(Err(e))) => return (region, Err(("unreachable", e))),
            Ok(Ok(Ok(r))) => r,
        };
        let (member, evaluated, proof) = match response {
            EvaluationResponse::Evaluated {
                member,
                evaluated,
                proof,
            } => (member, evaluated, proof),
            EvaluationResponse::Refused(EvaluationRefusal::OverBudget {
                per_day,
                retry_after_ms,
            }) => {
                return (
                    region,
                    Err((
                        "over_budget",
                        format!(
                            "refused: this member used its budget of {per_day} a day; retry after {retry_after_ms} ms"
                        ),
                    )),
                );
            }
            EvaluationResponse::Refused(r) => {
                return (region, Err(("refused", format!("refused: {r:?}"))));
            }
        };
        if member != entry.index {
            return (
                region,
                Err((
                    "bad_proof",
                    format!("answered as member {member}, listed as {}", entry.index),
                )),
            );
        }
        let verified = tokio::task::spawn_blocking(move || {
            let public = oprf::scaled_public(entry.index, &entry.public_share, &set)?;
            oprf::verify_share_evaluation_decoded(
                entry.index,
                &public,
                &blinded,
                &points,
                &evaluated,
                &proof,
            )
        })
        .await;
        match verified {
            Ok(Ok(points)) => (region, Ok(points)),
            Ok(Err(e)) => (region, Err(("bad_proof", e.to_string()))),
            Err(e) => (region, Err(("bad_proof", e.to_string()))),
        }
    }
}

/// Adds up t verified scaled answers per element and finalizes.
fn finish(
    numbers: &[String],
    blinds: &[Blind],
    parts: &[Vec<RistrettoPoint>],
) -> Result<Vec<Hash256>, PersonKeyError> {
    numbers
        .iter()
        .enumerate()
        .map(|(j, n)| {
            let element: Vec<RistrettoPoint> = parts.iter().map(|pts| pts[j]).collect();
            let output = oprf::finalize(n.as_bytes(), &blinds[j], &oprf::sum(&element))
                .map_err(|e| PersonKeyError::Internal(e.to_string()))?;
            Ok(oprf::person_key_from_output(&output))
        })
        .collect()
}

/// This member's answer with its share scaled for the request's set ([`Responder::admit`]
/// gives it), blocking: a scalar multiplication per element.
pub fn answer_with(scaled: &ShareKey, blinded: &[Element]) -> EvaluationResponse {
    let invalid = |e: String| EvaluationResponse::Refused(EvaluationRefusal::Invalid(e));
    let randomness = match random64() {
        Ok(r) => r,
        Err(e) => return invalid(e.to_string()),
    };
    match oprf::evaluate_share(scaled, blinded, &randomness) {
        Ok((evaluated, proof)) => EvaluationResponse::Evaluated {
            member: scaled.index(),
            evaluated,
            proof,
        },
        Err(e) => invalid(e.to_string()),
    }
}

/// A share with this member's index and a random scalar: what a lying member would
/// answer with (drill fault `lie_person_keys`). Its proofs are valid for the wrong public
/// share, so askers catch it.
pub fn wrong_share(share: &ShareKey) -> Option<ShareKey> {
    let wide = random64().ok()?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&wide[..32]);
    // Clear the top bits: a canonical scalar below 2^252.
    bytes[31] &= 0x0f;
    ShareKey::from_bytes(share.index(), bytes).ok()
}

/// Per asking member budgets: a token bucket of `burst` elements refilled at
/// `per_day` a day.
#[derive(Debug)]
pub struct Budget {
    per_day: u32,
    burst: u32,
    buckets: BTreeMap<RegionCode, (f64, Instant)>,
}

impl Budget {
    /// A budget from the manifest's policy.
    pub fn new(per_day: u32, burst: u32) -> Budget {
        Budget {
            per_day: per_day.max(1),
            burst: burst.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Takes `n` evaluations for `region`, or says when enough will be back.
    pub fn take(
        &mut self,
        region: RegionCode,
        n: u32,
        now: Instant,
    ) -> Result<(), EvaluationRefusal> {
        let per_ms = f64::from(self.per_day) / 86_400_000.0;
        let burst = f64::from(self.burst);
        let (tokens, at) = self.buckets.entry(region).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * 1000.0 * per_ms)
            .min(burst);
        *at = now;
        let want = f64::from(n);
        if want > burst {
            return Err(EvaluationRefusal::Invalid(format!(
                "blinded: {n} elements exceed the burst of {} the manifest allows per request",
                self.burst
            )));
        }
        if *tokens >= want {
            *tokens -= want;
            return Ok(());
        }
        Err(EvaluationRefusal::OverBudget {
            per_day: self.per_day,
            retry_after_ms: ((want - *tokens) / per_ms).ceil() as u64,
        })
    }
}

/// The answering side, owned by the network task.
pub struct Responder {
    /// This member's share, if it holds one.
    pub share: Option<Arc<ShareKey>>,
    /// Budgets per asking member.
    pub budget: Budget,
    /// Counters shared with the asking side.
    pub stats: Arc<PersonKeyStats>,
}

impl Responder {
    /// Decides on a request from `region` before any work: the share, the asked set
    /// (which must include this member), then the budget — so that a request refused for
    /// its shape spends none. `Ok` is the share scaled for the set, to evaluate with (on a
    /// blocking thread, with [`answer_with`]).
    pub fn admit(
        &mut self,
        region: RegionCode,
        request: &EvaluationRequest,
        now: Instant,
    ) -> Result<ShareKey, EvaluationRefusal> {
        let Some(share) = self.share.as_deref() else {
            bump(&self.stats.refused, (region.to_string(), "no_share"), 1);
            return Err(EvaluationRefusal::NoShare);
        };
        let share = oprf::scaled_share(share, &request.members).map_err(|e| {
            bump(&self.stats.refused, (region.to_string(), "invalid"), 1);
            EvaluationRefusal::Invalid(e.to_string())
        })?;
        let n = u32::try_from(request.blinded.len()).unwrap_or(u32::MAX);
        match self.budget.take(region, n, now) {
            Ok(()) => {
                bump(&self.stats.evaluated_for, region.to_string(), u64::from(n));
                Ok(share)
            }
            Err(r) => {
                let reason = match r {
                    EvaluationRefusal::OverBudget { .. } => "over_budget",
                    _ => "invalid",
                };
                bump(&self.stats.refused, (region.to_string(), reason), 1);
                Err(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: u32) -> RegionCode {
        RegionCode::new(code, "r").unwrap()
    }

    /// The burst is available at once, then the budget refills at its daily rate; a
    /// second asking member has its own bucket; a batch beyond the burst is refused as
    /// invalid, not as over budget.
    #[test]
    fn budget_allows_a_burst_then_the_daily_rate_per_asking_member() {
        let mut b = Budget::new(86_400, 100);
        let t0 = Instant::now();
        let (a, c) = (region(110000), region(310000));
        assert!(b.take(a, 100, t0).is_ok());
        let Err(EvaluationRefusal::OverBudget {
            retry_after_ms,
            per_day,
        }) = b.take(a, 1, t0)
        else {
            panic!("expected over budget");
        };
        assert_eq!(per_day, 86_400);
        assert_eq!(retry_after_ms, 1000, "one a second");
        assert!(
            b.take(c, 100, t0).is_ok(),
            "another member has its own budget"
        );
        assert!(b.take(a, 1, t0 + Duration::from_millis(1000)).is_ok());
        assert!(b.take(a, 10, t0 + Duration::from_millis(1500)).is_err());
        assert!(
            b.take(a, 10, t0 + Duration::from_secs(3600)).is_ok(),
            "refilled, capped at the burst"
        );
        assert!(matches!(
            b.take(a, 101, t0 + Duration::from_secs(7200)),
            Err(EvaluationRefusal::Invalid(_))
        ));
    }

    /// The cache returns what was put for the same number only, forgets after its time
    /// and never holds more than its bound.
    #[test]
    fn cache_is_bounded_and_expires() {
        let mut c = KeyCache::new().unwrap();
        let t0 = Instant::now();
        c.put("110105194912310029", Hash256([1; 32]), t0);
        assert_eq!(c.get("110105194912310029", t0), Some(Hash256([1; 32])));
        assert_eq!(c.get("11010519491231002X", t0), None);
        assert_eq!(c.get("110105194912310029", t0 + CACHE_TTL), None);
        for i in 0..(CACHE_ENTRIES + 10) {
            c.put(&format!("{i:018}"), Hash256([2; 32]), t0 + CACHE_TTL);
        }
        assert_eq!(c.len(), CACHE_ENTRIES);
        assert_eq!(
            c.get(&format!("{:018}", 0), t0 + CACHE_TTL),
            None,
            "oldest evicted"
        );
        assert!(
            c.get(&format!("{:018}", CACHE_ENTRIES + 9), t0 + CACHE_TTL)
                .is_some()
        );
    }
}

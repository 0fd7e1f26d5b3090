//! Runs a scenario against a federation, checks the invariants after every step and
//! measures (the invariants are listed in docs/design.md).
//!
//! [`bodies`] (what each writing step writes, pure) · [`writes`] (steps that write) ·
//! [`faults`] (process and link faults) · [`waits`] (waiting on conditions with a
//! deadline) · [`invariants`] (assertions and the invariants checked after every step).

mod bodies;
mod faults;
mod fork;
mod invariants;
mod waits;
mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::check::{CheckAnswer, verify_answer};
use credfed_protocol::envelope::envelope_hash;
use credfed_protocol::ids::{DepartmentId, RegionCode};
use credfed_protocol::record::*;
use credfed_protocol::state::EntryState;
use credfed_protocol::time::{Date, Timestamp};
use serde_json::json;

use crate::fed::{FEDERATION_ID, Federation};
use crate::netns::LinkRules;
use crate::report::{Convergence, Invariant, Percentiles, Report, StepReport};
use crate::scenario::{Regions, Scenario, Step, UNLISTED_USCC};

struct Named<T> {
    id: T,
    region: RegionCode,
}

/// Drill state.
pub struct Drill {
    /// The federation under test.
    pub fed: Federation,
    entries: BTreeMap<String, (Named<EntryId>, ListEntry)>,
    actions: BTreeMap<String, (Named<ActionId>, Vec<RegionCode>)>,
    objections: BTreeMap<String, (Named<ObjectionId>, String)>,
    /// Repair applications by name: the application (with the entry's issuer) and the
    /// entry's name.
    repair_applications: BTreeMap<String, (Named<RepairApplicationId>, String)>,
    /// Written commitments by name, with the subject's USCC.
    commitments: BTreeMap<String, (Named<CommitmentId>, String)>,
    /// Disclosed decisions by name.
    disclosures: BTreeMap<String, Named<DisclosureId>>,
    /// Entries corrected, with the sequence number of their latest correction in the
    /// issuer's log: a node that holds it must apply the corrected content.
    corrected_at: BTreeMap<EntryId, u64>,
    acked: Vec<(RegionCode, u64, String)>,
    propagation_ms: Vec<f64>,
    /// From a record's acknowledgement to the first proven answer at another node that
    /// covers it, ms.
    proven_visible_ms: Vec<f64>,
    /// One person key asked at a time (`person_key_load`): request to answer, ms.
    person_key_ms: Vec<f64>,
    /// Persons keyed per second by batched requests (`person_key_load`).
    person_key_batch_per_s: Option<f64>,
    /// How long the members' share refresh took (`person_key_refresh`), ms.
    person_key_refresh_ms: Option<u64>,
    /// Made-up numbers used so far (each load step uses new ones, past the cache).
    person_keys_made: u32,
    convergence: Vec<Convergence>,
    steps: Vec<StepReport>,
    invariants: BTreeMap<String, (bool, Vec<String>)>,
    /// Directed cuts in force: (from, to) = packets from node `from` do not reach `to`.
    cuts: BTreeSet<(usize, usize)>,
    /// Packet loss in force, percent, by receiving node.
    loss: BTreeMap<usize, u8>,
    /// Firewall rules last applied per node (namespaces mode), so that unchanged ones are
    /// not rewritten.
    applied_rules: Vec<Option<LinkRules>>,
    /// Heads each node held after the previous step (a head never moves back).
    last_heads: Vec<BTreeMap<String, u64>>,
    /// Steps after which the always-true invariants were checked.
    step_checks: usize,
    expected_equivocators: BTreeSet<RegionCode>,
    /// Regions whose node clock the drill set off (their heads carry that clock's time).
    skewed: BTreeSet<RegionCode>,
    /// A region's second node copy while a `fork_across_partition` step runs.
    twin: Option<fork::Twin>,
    /// How long after the heal every honest node flagged a quiet fork (ms).
    fork_flagged_ms: Option<u64>,
    last_fault: Option<(String, Instant)>,
    started: Instant,
    doc_counter: usize,
    proven: crate::report::ProvenAnswers,
    /// Each node's witnessing counters after set-up ([`Drill::mark_baseline`]).
    baseline: Vec<Option<NodeMetrics>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn today() -> Date {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms).date_cst()
}

const INVARIANTS: [&str; 9] = [
    "no_acknowledged_record_lost",
    "live_connected_nodes_converge",
    "nothing_invalid_accepted",
    "equivocation_detected_by_every_honest_node",
    "suspended_entry_never_applies_a_measure",
    "no_measure_on_a_subject_the_entry_no_longer_names",
    "no_split_view_witnessed",
    "proven_answers_verify",
    "no_contradicting_proven_answers",
];

/// Counters read from one node's /metrics (or summed over nodes).
#[derive(Debug, Clone, Default)]
pub(super) struct NodeMetrics {
    messages: u64,
    bytes: u64,
    records_applied: u64,
    records_duplicate: u64,
    round_buckets: BTreeMap<String, u64>,
    round_count: u64,
    append_buckets: BTreeMap<String, u64>,
    append_count: u64,
    federation_buckets: BTreeMap<String, u64>,
    federation_count: u64,
    pub(super) cosign_refusals: BTreeMap<String, u64>,
    map_versions_pruned: u64,
    person_keys: BTreeMap<String, u64>,
}

impl NodeMetrics {
    /// The witnessing histograms since `before` (same node, counters not restarted).
    fn minus(&self, before: &NodeMetrics) -> NodeMetrics {
        let sub = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(b.get(k).copied().unwrap_or(0))))
                .collect()
        };
        NodeMetrics {
            round_buckets: sub(&self.round_buckets, &before.round_buckets),
            round_count: self.round_count.saturating_sub(before.round_count),
            append_buckets: sub(&self.append_buckets, &before.append_buckets),
            append_count: self.append_count.saturating_sub(before.append_count),
            federation_buckets: sub(&self.federation_buckets, &before.federation_buckets),
            federation_count: self
                .federation_count
                .saturating_sub(before.federation_count),
            ..self.clone()
        }
    }

    fn add(&mut self, other: &NodeMetrics) {
        for (k, v) in &other.round_buckets {
            *self.round_buckets.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.append_buckets {
            *self.append_buckets.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.federation_buckets {
            *self.federation_buckets.entry(k.clone()).or_default() += v;
        }
        self.federation_count += other.federation_count;
        self.round_count += other.round_count;
        self.append_count += other.append_count;
    }
}

impl Drill {
    /// A drill on a running federation with departments registered.
    pub fn new(fed: Federation) -> Drill {
        let n = fed.nodes.len();
        Drill {
            fed,
            entries: BTreeMap::new(),
            actions: BTreeMap::new(),
            objections: BTreeMap::new(),
            repair_applications: BTreeMap::new(),
            commitments: BTreeMap::new(),
            disclosures: BTreeMap::new(),
            corrected_at: BTreeMap::new(),
            acked: Vec::new(),
            propagation_ms: Vec::new(),
            proven_visible_ms: Vec::new(),
            person_key_ms: Vec::new(),
            person_key_batch_per_s: None,
            person_key_refresh_ms: None,
            person_keys_made: 0,
            convergence: Vec::new(),
            steps: Vec::new(),
            invariants: INVARIANTS
                .iter()
                .map(|n| (n.to_string(), (true, Vec::new())))
                .collect(),
            cuts: BTreeSet::new(),
            loss: BTreeMap::new(),
            applied_rules: vec![None; n],
            last_heads: vec![BTreeMap::new(); n],
            step_checks: 0,
            expected_equivocators: BTreeSet::new(),
            skewed: BTreeSet::new(),
            twin: None,
            fork_flagged_ms: None,
            last_fault: None,
            started: Instant::now(),
            doc_counter: 0,
            proven: Default::default(),
            baseline: Vec::new(),
        }
    }

    fn violate(&mut self, name: &str, detail: String) {
        let e = self.invariants.entry(name.into()).or_default();
        e.0 = false;
        e.1.push(detail);
    }

    fn note(&mut self, name: &str, detail: String) {
        self.invariants
            .entry(name.into())
            .or_default()
            .1
            .push(detail);
    }

    /// Whether `a` and `b` can talk directly: both live, no cut either way (a connection
    /// needs packets in both directions).
    fn reachable(&self, a: usize, b: usize) -> bool {
        self.fed.live(a)
            && self.fed.live(b)
            && !self.cuts.contains(&(a, b))
            && !self.cuts.contains(&(b, a))
    }

    /// Connected components of `nodes` under `reachable`: records travel between any two
    /// nodes of a component, through others if need be, so each must converge.
    fn components(&self, nodes: &[usize]) -> Vec<Vec<usize>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for &start in nodes {
            if !seen.insert(start) {
                continue;
            }
            let mut component = vec![start];
            let mut k = 0;
            while k < component.len() {
                let a = component[k];
                for &b in nodes {
                    if !seen.contains(&b) && self.reachable(a, b) {
                        seen.insert(b);
                        component.push(b);
                    }
                }
                k += 1;
            }
            component.sort();
            out.push(component);
        }
        out
    }

    fn regions(&self, r: &Regions, action: Option<&str>) -> Result<Vec<usize>> {
        match r {
            Regions::Word(w) if w == "all" => Ok((0..self.fed.nodes.len()).collect()),
            Regions::Word(w) if w == "targets" => {
                let a = action.context("'targets' needs an action")?;
                let (_, t) = self
                    .actions
                    .get(a)
                    .with_context(|| format!("no action named {a}"))?;
                t.iter().map(|r| self.fed.index(&r.to_string())).collect()
            }
            Regions::Word(w) => Ok(vec![self.fed.index(w)?]),
            Regions::List(l) => l.iter().map(|r| self.fed.index(r)).collect(),
        }
    }

    fn entry_named(&self, name: &str) -> Result<&(Named<EntryId>, ListEntry)> {
        self.entries
            .get(name)
            .with_context(|| format!("no entry named {name} (publish it first)"))
    }

    fn author(&self, region: RegionCode, unit: &str) -> String {
        format!("{region}:{unit}")
    }

    /// Runs every step, then the final convergence and invariant checks.
    pub async fn run(&mut self, scenario: &Scenario) -> Result<()> {
        for (i, step) in scenario.steps.iter().enumerate() {
            let t0 = Instant::now();
            let at_ms = self.started.elapsed().as_millis() as u64;
            // Boxed: the future of `step` holds the state of every kind of step, and on a
            // debug build's 2 MiB thread stack it does not fit beside its callers.
            let result = Box::pin(self.step(step)).await;
            // The step's own time; the invariant checks that follow are not part of it.
            let duration_ms = t0.elapsed().as_millis() as u64;
            let (ok, mut detail) = match &result {
                Ok(d) => (true, d.clone()),
                Err(e) => (false, format!("{e:#}")),
            };
            if ok {
                let violated = Box::pin(self.check_step_invariants(i + 1, step)).await;
                if !violated.is_empty() {
                    detail = format!("{detail} [invariants violated: {}]", violated.join(", "));
                }
            }
            self.steps.push(StepReport {
                index: i + 1,
                action: step.kind(),
                at_ms,
                duration_ms,
                ok,
                detail,
            });
            if !ok {
                eprintln!(
                    "  step {} {} FAILED: {}",
                    i + 1,
                    step.kind(),
                    self.steps.last().map(|s| s.detail.as_str()).unwrap_or("")
                );
                return result.map(|_| ());
            }
        }
        // Whatever the scenario left, the federation must heal and converge.
        if !self.cuts.is_empty() || !self.loss.is_empty() {
            Box::pin(self.step(&Step::Heal)).await?;
        }
        for i in 0..self.fed.nodes.len() {
            if self.fed.nodes[i].paused {
                self.fed.signal(i, "-CONT")?;
            }
            if self.fed.nodes[i].child.is_none() {
                self.fed.start(i, false)?;
            }
        }
        Box::pin(self.step(&Step::WaitConverged { timeout_ms: 60_000 })).await?;
        Ok(())
    }

    /// One step: dispatched to the module that knows how to do it.
    async fn step(&mut self, step: &Step) -> Result<String> {
        use bodies::Change;
        match step {
            Step::Publish {
                id,
                region,
                list,
                category,
                uscc,
                person,
                related,
                findings,
                measures,
                expires_in_days,
            } => {
                let spec = bodies::EntrySpec {
                    list: list.clone(),
                    category: category.clone(),
                    uscc: uscc.clone().unwrap_or_default(),
                    person: None,
                    related: vec![],
                    findings: findings.clone(),
                    measures: measures.clone(),
                    expires_in_days: *expires_in_days,
                };
                self.publish(id, region, spec, person.as_deref(), related)
                    .await
            }
            Step::Amend {
                entry,
                drop_related,
            } => {
                let change = if *drop_related {
                    Change::DropRelated
                } else {
                    Change::Amend
                };
                self.change(entry, change).await
            }
            Step::Revoke { entry } => self.change(entry, Change::Revoke).await,
            Step::Repair { entry } => self.change(entry, Change::Repair).await,
            Step::Initiate {
                id,
                entry,
                targets,
                measures,
            } => self.initiate(id, entry, targets, measures).await,
            Step::Acknowledge { action, regions } => self.respond(action, regions, None).await,
            Step::Execute {
                action,
                regions,
                measure,
            } => self.respond(action, regions, Some(measure)).await,
            Step::Object { id, entry, region } => self.object(id, entry, region).await,
            Step::Resolve { objection, outcome } => self.resolve(objection, outcome).await,
            Step::ApplyRepair { id, entry, region } => self.apply_repair(id, entry, region).await,
            Step::AssertInbox {
                region,
                kind,
                about,
                absent,
            } => self.assert_inbox(region, kind, about, *absent).await,
            Step::DecideRepair {
                application,
                outcome,
            } => self.decide_repair(application, outcome).await,
            Step::Disclose {
                id,
                region,
                uscc,
                late,
            } => self.disclose(id, region, uscc, *late).await,
            Step::AssertDisclosure {
                at,
                disclosure,
                late,
            } => self.assert_disclosure(at, disclosure, *late).await,
            Step::MakeCommitment { id, region, uscc } => {
                self.make_commitment(id, region, uscc).await
            }
            Step::SettleCommitment {
                commitment,
                outcome,
            } => self.settle_commitment(commitment, outcome).await,
            Step::AssertCommitment {
                at,
                commitment,
                state,
            } => self.assert_commitment(at, commitment, state).await,
            Step::Burst {
                region,
                count,
                measure,
                measure_proven,
                concurrency: Some(n),
            } if *n > 1 => {
                if *measure || *measure_proven {
                    bail!(
                        "burst.concurrency: {n} writes in flight cannot be measured one by one; set measure and measure_proven to false, or concurrency to 1"
                    );
                }
                self.concurrent_burst(region, *count, *n).await
            }
            Step::Burst {
                region,
                count,
                measure,
                measure_proven,
                ..
            } => self.burst(region, *count, *measure, *measure_proven).await,
            Step::Evaluation {
                region,
                uscc,
                scheme,
                class,
            } => self.evaluate(region, uscc, scheme, class).await,
            Step::WaitUntil {
                at,
                entry,
                state,
                timeout_ms,
            } => self.wait_until_state(at, entry, state, timeout_ms).await,
            Step::AddMember {
                region,
                via,
                timeout_ms,
            } => self.add_member(region, via.as_deref(), *timeout_ms).await,
            Step::Kill { region } => self.kill(region).await,
            Step::Restart { region } => self.restart(region).await,
            Step::Skew { region, offset_ms } => self.skew(region, offset_ms).await,
            Step::Pause { region } => self.pause(region).await,
            Step::Resume { region } => self.resume(region).await,
            Step::Wipe { region } => self.wipe(region).await,
            Step::Partition { groups } => self.partition(groups).await,
            Step::OneWay { from, to } => self.one_way(from, to).await,
            Step::Loss { regions, percent } => self.loss(regions, percent).await,
            Step::Heal => self.heal().await,
            Step::WaitLinks { timeout_ms } => self.wait_links(timeout_ms).await,
            Step::WaitConverged { timeout_ms } => {
                self.wait_converged(Duration::from_millis(*timeout_ms))
                    .await
            }
            Step::AssertCheck {
                at,
                uscc,
                person,
                domain,
                mandatory,
                recommended,
            } => {
                let request = credfed_client::CheckRequest {
                    proofs: false,
                    manifest: false,
                    uscc: uscc.clone(),
                    person: person.clone(),
                    domain: domain.clone(),
                };
                self.assert_check(at, &request, mandatory, recommended)
                    .await
            }
            Step::PersonKeyLoad {
                region,
                singles,
                batched,
            } => self.person_key_load(region, *singles, *batched).await,
            Step::PersonKeyRefresh { label, timeout_ms } => {
                self.person_key_refresh(label, Duration::from_millis(*timeout_ms))
                    .await
            }
            Step::AssertPersonKeys {
                at,
                available,
                timeout_ms,
            } => {
                self.assert_person_keys(at, *available, Duration::from_millis(*timeout_ms))
                    .await
            }
            Step::AssertEntry { at, entry, state } => self.assert_entry(at, entry, state).await,
            Step::AssertAction {
                at,
                action,
                regions,
                status,
                executed,
            } => {
                self.assert_action(at, action, regions, status, executed)
                    .await
            }
            Step::AssertInvariants => self.assert_invariants().await,
            Step::InjectInvalid { entry, region } => self.inject_invalid(entry, region).await,
            Step::Equivocate { region } => self.equivocate(region).await,
            Step::ForkAcrossPartition {
                region,
                side,
                watch_ms,
            } => self.fork_across_partition(region, side, *watch_ms).await,
        }
    }

    /// Notes every node's witnessing counters now, so that the report counts what
    /// happened after this point (call after the federation's set-up).
    pub async fn mark_baseline(&mut self) {
        // First let the set-up's own appends get witnessed: every node's checkpoint of
        // its own log at its head (bounded: a drill that cannot get there reports it in
        // its witnessing figures, it is not blocked).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let mut pending = 0;
            for (i, n) in self.fed.nodes.iter().enumerate() {
                let r = n.region;
                let Some(v) = self.fed.get(i, &format!("/v1/log/{r}/checkpoint")).await else {
                    pending += 1;
                    continue;
                };
                let witnessed = v["witnessed"]
                    .as_str()
                    .and_then(|t| credfed_protocol::checkpoint::SignedCheckpoint::parse(t).ok())
                    .map_or(0, |c| c.checkpoint.size);
                if witnessed < v["size"].as_u64().unwrap_or(0) {
                    pending += 1;
                }
            }
            if pending == 0 || Instant::now() >= deadline {
                break;
            }
        }
        let mut baseline = Vec::with_capacity(self.fed.nodes.len());
        for i in 0..self.fed.nodes.len() {
            baseline.push(self.node_metrics(i).await);
        }
        self.baseline = baseline;
    }

    /// One node's counters from its /metrics.
    pub(super) async fn node_metrics(&self, i: usize) -> Option<NodeMetrics> {
        let r = self.fed.nodes[i].client.get("/metrics").await.ok()?;
        let mut m = NodeMetrics::default();
        for l in r.body.lines() {
            let v = l
                .rsplit(' ')
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
            let bucket = |name: &str| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix("_bucket{le=\""))
                    .and_then(|r| r.split('"').next())
                    .map(str::to_owned)
            };
            if l.starts_with("credfed_gossip_received_total ")
                || l.starts_with("credfed_ranges_fetched_total ")
            {
                m.messages += v;
            } else if l.starts_with("credfed_bytes_received_total ") {
                m.bytes += v;
            } else if l.starts_with("credfed_records_ingested_total ") {
                m.records_applied += v;
            } else if l.starts_with("credfed_records_duplicate_total ") {
                m.records_duplicate += v;
            } else if l.starts_with("credfed_map_versions_pruned_total ") {
                m.map_versions_pruned += v;
            } else if let Some(le) = bucket("credfed_witness_round_seconds") {
                *m.round_buckets.entry(le).or_default() += v;
            } else if l.starts_with("credfed_witness_round_seconds_count ") {
                m.round_count += v;
            } else if let Some(le) = bucket("credfed_federation_round_seconds") {
                *m.federation_buckets.entry(le).or_default() += v;
            } else if l.starts_with("credfed_federation_round_seconds_count ") {
                m.federation_count += v;
            } else if let Some(le) = bucket("credfed_witness_from_append_seconds") {
                *m.append_buckets.entry(le).or_default() += v;
            } else if l.starts_with("credfed_witness_from_append_seconds_count ") {
                m.append_count += v;
            } else if let Some(what) = [
                ("credfed_person_keys_asked_total", "asked"),
                ("credfed_person_key_evaluations_total", "evaluations"),
                ("credfed_person_key_refused_total", "refused"),
                (
                    "credfed_person_key_member_failures_total",
                    "member_failures",
                ),
                ("credfed_person_keys_unavailable_total", "unavailable"),
            ]
            .iter()
            .find(|(name, _)| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .map(|(_, what)| *what)
            {
                *m.person_keys.entry(what.to_owned()).or_default() += v;
            } else if let Some(reason) = l
                .strip_prefix("credfed_cosign_refusals_total{reason=\"")
                .and_then(|r| r.split('"').next())
            {
                *m.cosign_refusals.entry(reason.to_owned()).or_default() += v;
            }
        }
        Some(m)
    }

    /// Builds the report.
    pub async fn report(&mut self, scenario: &Scenario) -> Report {
        let mut messages = 0;
        let mut bytes = 0;
        let (mut records_applied, mut records_duplicate) = (0, 0);
        let mut witness = NodeMetrics::default();
        let mut cosign_refusals: BTreeMap<String, u64> = BTreeMap::new();
        let mut map_versions_pruned = 0;
        let mut person_keys: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..self.fed.nodes.len() {
            if !self.fed.live(i) {
                continue;
            }
            let Some(m) = self.node_metrics(i).await else {
                continue;
            };
            messages += m.messages;
            bytes += m.bytes;
            records_applied += m.records_applied;
            records_duplicate += m.records_duplicate;
            map_versions_pruned += m.map_versions_pruned;
            for (k, v) in &m.cosign_refusals {
                *cosign_refusals.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &m.person_keys {
                *person_keys.entry(k.clone()).or_default() += v;
            }
            // Witnessing after the drill's set-up: the genesis rounds of 31 nodes
            // starting at once say nothing about a running federation. A node restarted
            // since (its counters began again) counts whole.
            let since = match self.baseline.get(i).and_then(Option::as_ref) {
                Some(b) if m.round_count >= b.round_count => m.minus(b),
                _ => m,
            };
            witness.add(&since);
        }
        let mut acknowledgement_ms: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (named, _) in self.actions.values() {
            let i = self.fed.index(&named.region.to_string()).unwrap_or(0);
            if let Some(v) = self.fed.get(i, &format!("/v1/actions/{}", named.id)).await {
                for t in v["targets"].as_array().cloned().unwrap_or_default() {
                    if let (Some(r), Some(ms)) =
                        (t["region"].as_str(), t["acknowledgement_ms"].as_i64())
                    {
                        acknowledgement_ms
                            .entry(r.to_string())
                            .or_default()
                            .push(ms);
                    }
                }
            }
        }
        let mut resources = BTreeMap::new();
        for n in &self.fed.nodes {
            if let Some(pid) = n.child.as_ref().map(|c| c.id()) {
                resources.insert(n.region.to_string(), proc_usage(pid));
            }
        }
        for name in [
            "no_acknowledged_record_lost",
            "nothing_invalid_accepted",
            "equivocation_detected_by_every_honest_node",
            "suspended_entry_never_applies_a_measure",
        ] {
            self.note(
                name,
                format!("checked after each of {} steps", self.step_checks),
            );
        }
        Report {
            resources,
            scenario: scenario.name.clone(),
            regions: self
                .fed
                .nodes
                .iter()
                .map(|n| n.region.to_string())
                .collect(),
            steps: self.steps.clone(),
            invariants: self
                .invariants
                .iter()
                .map(|(n, (held, d))| Invariant {
                    name: n.clone(),
                    held: *held,
                    detail: d.join("; "),
                })
                .collect(),
            propagation_ms: Percentiles::of(&self.propagation_ms),
            propagation_samples_ms: self.propagation_ms.clone(),
            person_key_ms: Percentiles::of(&self.person_key_ms),
            person_key_batch_per_s: self.person_key_batch_per_s,
            person_key_refresh_ms: self.person_key_refresh_ms,
            proven_visible_ms: Percentiles::of(&self.proven_visible_ms),
            fork_flagged_ms: self.fork_flagged_ms,
            convergence_ms: self.convergence.clone(),
            acknowledgement_ms,
            witness_round_ms: crate::report::WitnessRounds::from_buckets(
                &witness.round_buckets,
                witness.round_count,
            ),
            witness_from_append_ms: crate::report::WitnessRounds::from_buckets(
                &witness.append_buckets,
                witness.append_count,
            ),
            federation_round_ms: crate::report::WitnessRounds::from_buckets(
                &witness.federation_buckets,
                witness.federation_count,
            ),
            proven_answers: self.proven.clone(),
            cosign_refusals,
            person_keys,
            map_versions_pruned,
            messages,
            bytes,
            records_applied,
            records_duplicate,
            fault_mode: format!(
                "processes: SIGKILL, SIGSTOP/SIGCONT, restart, wipe; links: {}",
                self.fed.fault_mode
            ),
            duration_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// Resident memory (KiB) and CPU time (s) of a process, from /proc.
pub fn proc_usage(pid: u32) -> (u64, f64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    // Fields 14 and 15 of /proc/<pid>/stat (after the command name) are utime and stime in
    // clock ticks; Linux uses 100 ticks per second.
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) as f64 / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

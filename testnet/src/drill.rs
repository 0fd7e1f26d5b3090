//! Runs a scenario against a federation, checks the invariants of DESIGN §8 and measures.

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
use crate::scenario::{Regions, Scenario, Step};

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
    acked: Vec<(RegionCode, u64, String)>,
    propagation_ms: Vec<f64>,
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
    last_fault: Option<(String, Instant)>,
    started: Instant,
    doc_counter: usize,
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

const INVARIANTS: [&str; 5] = [
    "no_acknowledged_record_lost",
    "live_connected_nodes_converge",
    "nothing_invalid_accepted",
    "equivocation_detected_by_every_honest_node",
    "suspended_entry_never_applies_a_measure",
];

impl Drill {
    /// A drill on a running federation with departments registered.
    pub fn new(fed: Federation) -> Drill {
        let n = fed.nodes.len();
        Drill {
            fed,
            entries: BTreeMap::new(),
            actions: BTreeMap::new(),
            objections: BTreeMap::new(),
            acked: Vec::new(),
            propagation_ms: Vec::new(),
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
            last_fault: None,
            started: Instant::now(),
            doc_counter: 0,
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

    /// Submits, requires 201, records the acknowledgement; returns (seq, origin index).
    async fn write(&mut self, author: &str, body: &Body) -> Result<(u64, usize)> {
        let r = self.fed.submit(author, body).await?;
        if r.status != 201 {
            bail!("{author} {:?}: {} {}", body.kind(), r.status, r.body);
        }
        let v = r.json()?;
        let region = RegionCode::parse(v["region"].as_str().unwrap_or(""), "region")?;
        let seq = v["seq"].as_u64().unwrap_or(0);
        self.acked
            .push((region, seq, v["hash"].as_str().unwrap_or("").to_string()));
        Ok((seq, self.fed.index(&region.to_string())?))
    }

    /// Waits until every node reachable from the origin holds `region#seq`; records the time.
    /// Waits until every node reachable from the origin holds `region#seq`, then records
    /// the propagation time from the nodes' own clocks: the latest moment any of them
    /// applied the envelope, minus the origin's append timestamp (all nodes share this
    /// machine's clock, so the difference is exact, unlike timing the polls).
    async fn propagate(&mut self, origin: usize, seq: u64) -> Result<()> {
        let region = self.fed.nodes[origin].region.to_string();
        let targets: Vec<usize> = (0..self.fed.nodes.len())
            .filter(|&j| j != origin && self.reachable(origin, j))
            .collect();
        let mut pending: BTreeSet<usize> = targets.iter().copied().collect();
        let end = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        while !pending.is_empty() {
            poll.tick().await;
            let fed = &self.fed;
            let polls = pending.iter().map(|&j| {
                let region = region.clone();
                async move {
                    (
                        j,
                        fed.heads(j)
                            .await
                            .and_then(|h| h.get(&region).map(|x| x.0))
                            .unwrap_or(0)
                            >= seq,
                    )
                }
            });
            for (j, done) in futures::future::join_all(polls).await {
                if done {
                    pending.remove(&j);
                }
            }
            if Instant::now() > end {
                bail!(
                    "{region}#{seq} did not reach {} node(s) within 30 s",
                    pending.len()
                );
            }
        }
        let path = format!("/v1/log/{region}?from={seq}&limit=1");
        let origin_log = self.fed.get(origin, &path).await.context("origin log")?;
        let bytes =
            hex::decode(origin_log["envelopes"][0].as_str().unwrap_or("")).unwrap_or_default();
        let env: credfed_protocol::envelope::Envelope = credfed_protocol::codec::decode(
            &bytes,
            credfed_protocol::limits::MAX_ENVELOPE_BYTES,
            "envelope",
        )
        .context("origin envelope")?;
        let fed = &self.fed;
        let applied = futures::future::join_all(targets.iter().map(|&j| {
            let path = path.clone();
            async move {
                fed.get(j, &path)
                    .await
                    .and_then(|v| v["received_ms"][0].as_i64())
            }
        }))
        .await;
        let latest = applied
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(env.timestamp.0);
        self.propagation_ms
            .push((latest - env.timestamp.0).max(0) as f64);
        Ok(())
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

    async fn step(&mut self, step: &Step) -> Result<String> {
        match step {
            Step::Publish {
                id,
                region,
                list,
                uscc,
                measures,
                expires_in_days,
            } => {
                let r = RegionCode::parse(region, "region")?;
                let today = today();
                let category = if list == "red" {
                    Category::Red(RedSource::GoodCreditClassification)
                } else {
                    Category::Black(BlackCategory::FoodAndDrug)
                };
                self.doc_counter += 1;
                let e = ListEntry {
                    category,
                    subject: Subject::Organisation {
                        uscc: uscc.clone(),
                        name: format!("演练企业 {uscc}"),
                        check_exemption: None,
                    },
                    related_persons: vec![],
                    basis: Basis {
                        document_no: format!(
                            "演练〔{}〕{}号 {id}",
                            today.ymd().0,
                            self.doc_counter
                        ),
                        authority: format!("{} 演练部门", r.province_info().name_zh),
                        decided_on: today.add_days(-1),
                        legal_basis: "国发〔2016〕33号".into(),
                    },
                    effective_from: today.add_days(-1),
                    expires_on: today.add_days(expires_in_days.unwrap_or(3 * 365)),
                    requested_measures: measures.iter().map(|m| MeasureCode(m.clone())).collect(),
                    summary: format!("drill entry {id}"),
                };
                let (seq, origin) = self
                    .write(&self.author(r, "pub"), &Body::ListEntryPublished(e.clone()))
                    .await?;
                self.propagate(origin, seq).await?;
                self.entries.insert(
                    id.clone(),
                    (
                        Named {
                            id: entry_id(r, &e),
                            region: r,
                        },
                        e,
                    ),
                );
                Ok(format!(
                    "{region}#{seq}, at every reachable node in {:.0} ms",
                    self.propagation_ms.last().copied().unwrap_or(0.0)
                ))
            }
            Step::Amend { entry } | Step::Revoke { entry } | Step::Repair { entry } => {
                let (named, content) = self.entry_named(entry)?;
                let (id, r) = (named.id, named.region);
                let body = match step {
                    Step::Amend { .. } => {
                        let mut c = content.clone();
                        c.summary = format!("{} (amended)", c.summary);
                        Body::ListEntryAmended {
                            entry: id,
                            amended: c,
                            reason: "演练更正".into(),
                        }
                    }
                    Step::Revoke { .. } => Body::ListEntryRevoked {
                        entry: id,
                        reason: "演练撤销".into(),
                    },
                    _ => Body::ListEntryRepaired {
                        entry: id,
                        basis: RepairBasis::CorrectedWithinPeriod,
                        reason: "演练修复".into(),
                    },
                };
                let (seq, origin) = self.write(&self.author(r, "pub"), &body).await?;
                self.propagate(origin, seq).await?;
                Ok(format!("{r}#{seq}"))
            }
            Step::Initiate {
                id,
                entry,
                targets,
                measures,
            } => {
                let (named, _) = self.entry_named(entry)?;
                let (eid, r) = (named.id, named.region);
                let kind = if measures.iter().all(|m| m.starts_with('I')) {
                    ActionKind::Incentive
                } else {
                    ActionKind::Punishment
                };
                let target_list: Vec<RegionCode> = match targets {
                    Regions::Word(w) if w == "all" => self
                        .fed
                        .nodes
                        .iter()
                        .map(|n| n.region)
                        .filter(|x| *x != r)
                        .collect(),
                    other => self
                        .regions(other, None)?
                        .into_iter()
                        .map(|i| self.fed.nodes[i].region)
                        .collect(),
                };
                let a = JointAction {
                    reference: format!("演练联〔{}〕{id}", today().ymd().0),
                    kind,
                    entry: eid,
                    targets: if matches!(targets, Regions::Word(w) if w == "all") {
                        Targets::AllMembers
                    } else {
                        Targets::Regions(target_list.clone())
                    },
                    measures: measures.iter().map(|m| MeasureCode(m.clone())).collect(),
                    respond_by: today().add_days(7),
                };
                let author = self.author(r, "init");
                let (seq, origin) = self
                    .write(&author, &Body::JointActionInitiated(a.clone()))
                    .await?;
                self.propagate(origin, seq).await?;
                let aid = action_id(&DepartmentId::parse(&author, "a")?, &a.reference);
                self.actions
                    .insert(id.clone(), (Named { id: aid, region: r }, target_list));
                Ok(format!("{r}#{seq} to {} regions", self.actions[id].1.len()))
            }
            Step::Acknowledge { action, regions }
            | Step::Execute {
                action, regions, ..
            } => {
                let aid = self
                    .actions
                    .get(action)
                    .with_context(|| format!("no action named {action}"))?
                    .0
                    .id;
                let who = self.regions(regions, Some(action))?;
                let mut writes = Vec::new();
                for i in who {
                    let r = self.fed.nodes[i].region;
                    let implementer = DepartmentId::parse(&self.author(r, "impl"), "d")?;
                    let body = match step {
                        Step::Acknowledge { .. } => Body::JointActionAcknowledged {
                            action: aid,
                            decision: AckDecision::Accepted,
                            implementing: vec![implementer.clone()],
                        },
                        Step::Execute { measure, .. } => Body::MeasureExecuted {
                            action: aid,
                            measure: MeasureCode(measure.clone()),
                            reference: format!("{r} 执行 {measure}"),
                            executed_on: today(),
                        },
                        _ => unreachable!(),
                    };
                    // The record references the action, so the target must hold it first.
                    self.wait_holds_action(i, &aid).await?;
                    writes.push((implementer.to_string(), body));
                }
                let n = writes.len();
                for (author, body) in writes {
                    self.write(&author, &body).await?;
                }
                Ok(format!("{n} regions"))
            }
            Step::Object { id, entry, region } => {
                let (named, _) = self.entry_named(entry)?;
                let (eid, issuer) = (named.id, named.region);
                let r = RegionCode::parse(region, "region")?;
                let i = self.fed.index(region)?;
                self.wait_holds_entry(i, &eid).await?;
                let case_no = format!("演练异〔{}〕{id}", today().ymd().0);
                let author = self.author(r, "obj");
                let (seq, origin) = self
                    .write(
                        &author,
                        &Body::ObjectionFiled {
                            case_no: case_no.clone(),
                            entry: eid,
                            grounds: "演练异议".into(),
                            filed_on: today(),
                        },
                    )
                    .await?;
                self.propagate(origin, seq).await?;
                let oid = objection_id(&DepartmentId::parse(&author, "a")?, &case_no);
                self.objections.insert(
                    id.clone(),
                    (
                        Named {
                            id: oid,
                            region: issuer,
                        },
                        entry.clone(),
                    ),
                );
                Ok(format!("{r}#{seq}"))
            }
            Step::Resolve { objection, outcome } => {
                let (named, _) = self
                    .objections
                    .get(objection)
                    .with_context(|| format!("no objection named {objection}"))?;
                let (oid, issuer) = (named.id, named.region);
                let outcome = match outcome.as_str() {
                    "upheld" => ObjectionOutcome::Upheld,
                    "corrected" => ObjectionOutcome::Corrected,
                    "revoked" => ObjectionOutcome::Revoked,
                    o => bail!("outcome {o}: upheld, corrected or revoked"),
                };
                let (seq, origin) = self
                    .write(
                        &self.author(issuer, "obj"),
                        &Body::ObjectionResolved {
                            objection: oid,
                            outcome,
                            note: "演练核实".into(),
                        },
                    )
                    .await?;
                self.propagate(origin, seq).await?;
                Ok(format!("{issuer}#{seq}"))
            }
            Step::Burst {
                region,
                count,
                measure,
            } => {
                let r = RegionCode::parse(region, "region")?;
                let t = Instant::now();
                let mut last = (0, 0);
                for _ in 0..*count {
                    self.doc_counter += 1;
                    let e = ListEntry {
                        category: Category::Black(BlackCategory::MaliciousWageArrears),
                        subject: Subject::Organisation {
                            uscc: "91350100M000100Y43".into(),
                            name: "演练企业".into(),
                            check_exemption: None,
                        },
                        related_persons: vec![],
                        basis: Basis {
                            document_no: format!("演练批量 {}", self.doc_counter),
                            authority: "演练".into(),
                            decided_on: today().add_days(-1),
                            legal_basis: "演练".into(),
                        },
                        effective_from: today().add_days(-1),
                        expires_on: today().add_days(365),
                        requested_measures: vec![],
                        summary: String::new(),
                    };
                    last = self
                        .write(&self.author(r, "pub"), &Body::ListEntryPublished(e))
                        .await?;
                    if *measure {
                        self.propagate(last.1, last.0).await?;
                    }
                }
                let rate = *count as f64 / t.elapsed().as_secs_f64();
                Ok(format!(
                    "{count} acknowledged writes at {rate:.0}/s, last {region}#{}",
                    last.0
                ))
            }
            Step::Evaluation {
                region,
                uscc,
                scheme,
                class,
            } => {
                let r = RegionCode::parse(region, "region")?;
                let mut grade = [0u8; 4];
                for (i, b) in class.bytes().take(4).enumerate() {
                    grade[i] = b;
                }
                let ev = Evaluation {
                    subject: Subject::Organisation {
                        uscc: uscc.clone(),
                        name: format!("演练企业 {uscc}"),
                        check_exemption: None,
                    },
                    scheme: scheme.clone(),
                    grade: Grade::Class(grade),
                    evaluated_on: today().add_days(-1),
                    valid_until: today().add_days(365),
                };
                let (seq, origin) = self
                    .write(&self.author(r, "pub"), &Body::EvaluationPublished(ev))
                    .await?;
                self.propagate(origin, seq).await?;
                Ok(format!("{region}#{seq}"))
            }
            Step::WaitUntil {
                at,
                entry,
                state,
                timeout_ms,
            } => {
                let id = self.entry_named(entry)?.0.id;
                let nodes: Vec<usize> = self
                    .regions(at, None)?
                    .into_iter()
                    .filter(|&i| self.fed.live(i))
                    .collect();
                let end = Instant::now() + Duration::from_millis(*timeout_ms);
                let mut poll = tokio::time::interval(Duration::from_millis(100));
                loop {
                    poll.tick().await;
                    let fed = &self.fed;
                    let states = futures::future::join_all(nodes.iter().map(|&i| async move {
                        fed.get(i, &format!("/v1/entries/{id}"))
                            .await
                            .map(|v| v["state"].clone())
                    }))
                    .await;
                    if states.iter().all(|s| s.as_ref() == Some(&json!(state))) {
                        return Ok(format!("{state} at {} nodes", nodes.len()));
                    }
                    if Instant::now() > end {
                        bail!(
                            "entry {entry} did not become {state} everywhere within {timeout_ms} ms: {states:?}"
                        );
                    }
                }
            }
            Step::Kill { region } => {
                let i = self.fed.index(region)?;
                self.fed.signal(i, "-KILL")?;
                self.last_fault = Some((format!("kill {region}"), Instant::now()));
                Ok(String::new())
            }
            Step::Restart { region } => {
                let i = self.fed.index(region)?;
                if self.fed.nodes[i].child.is_some() {
                    self.fed.signal(i, "-TERM")?;
                }
                self.fed.start(i, false)?;
                let detail = self.wait_started(i).await?;
                self.reapply_faults().await?;
                self.last_fault = Some((format!("restart {region}"), Instant::now()));
                Ok(detail)
            }
            Step::Skew { region, offset_ms } => {
                let i = self.fed.index(region)?;
                if self.fed.nodes[i].child.is_some() {
                    self.fed.signal(i, "-TERM")?;
                }
                let cfg = self.fed.nodes[i].dir.join("config.toml");
                let text = std::fs::read_to_string(&cfg)?;
                let mut table: toml::Table = toml::from_str(&text)?;
                table.insert("clock_offset_ms".into(), toml::Value::Integer(*offset_ms));
                std::fs::write(&cfg, toml::to_string(&table)?)?;
                self.fed.start(i, false)?;
                let detail = self.wait_started(i).await?;
                self.reapply_faults().await?;
                self.last_fault = Some((format!("skew {region} {offset_ms} ms"), Instant::now()));
                Ok(format!("clock offset {offset_ms} ms; {detail}"))
            }
            Step::Pause { region } => {
                let i = self.fed.index(region)?;
                self.fed.signal(i, "-STOP")?;
                self.last_fault = Some((format!("pause {region}"), Instant::now()));
                Ok(String::new())
            }
            Step::Resume { region } => {
                let i = self.fed.index(region)?;
                self.fed.signal(i, "-CONT")?;
                self.reapply_faults().await?;
                self.last_fault = Some((format!("resume {region}"), Instant::now()));
                Ok(String::new())
            }
            Step::Wipe { region } => {
                let i = self.fed.index(region)?;
                if self.fed.nodes[i].child.is_some() {
                    self.fed.signal(i, "-KILL")?;
                }
                std::fs::remove_dir_all(self.fed.nodes[i].dir.join("store"))
                    .context("wiping the store")?;
                self.fed.start(i, false)?;
                self.fed.wait_writable(i, Duration::from_secs(60)).await?;
                let own = self
                    .fed
                    .heads(i)
                    .await
                    .and_then(|h| h.get(region).map(|x| x.0))
                    .unwrap_or(0);
                let acked_own = self
                    .acked
                    .iter()
                    .filter(|(r, _, _)| r.to_string() == *region)
                    .map(|(_, s, _)| *s)
                    .max()
                    .unwrap_or(0);
                if own < acked_own {
                    self.violate("no_acknowledged_record_lost", format!("{region} reopened writes holding {own} of its own records, {acked_own} were acknowledged"));
                }
                self.last_fault = Some((format!("wipe {region}"), Instant::now()));
                Ok(format!(
                    "recovered its own log to #{own} before accepting writes"
                ))
            }
            Step::Partition { groups } => {
                let mut sets: Vec<BTreeSet<usize>> = Vec::new();
                for g in groups {
                    sets.push(g.iter().map(|r| self.fed.index(r)).collect::<Result<_>>()?);
                }
                let listed: BTreeSet<usize> = sets.iter().flatten().copied().collect();
                let rest: BTreeSet<usize> = (0..self.fed.nodes.len())
                    .filter(|i| !listed.contains(i))
                    .collect();
                if !rest.is_empty() {
                    sets.push(rest);
                }
                let n = self.fed.nodes.len();
                let group_of = |i: usize| sets.iter().position(|s| s.contains(&i));
                self.cuts = (0..n)
                    .flat_map(|a| (0..n).map(move |b| (a, b)))
                    .filter(|&(a, b)| a != b && group_of(a) != group_of(b))
                    .collect();
                self.apply_faults().await?;
                self.last_fault = Some(("partition".into(), Instant::now()));
                Ok(format!("{} groups, {}", sets.len(), self.link_fault_kind()))
            }
            Step::OneWay { from, to } => {
                let from: Vec<usize> = from
                    .iter()
                    .map(|r| self.fed.index(r))
                    .collect::<Result<_>>()?;
                let to: Vec<usize> = to
                    .iter()
                    .map(|r| self.fed.index(r))
                    .collect::<Result<_>>()?;
                let before = self.cuts.len();
                for &a in &from {
                    for &b in &to {
                        if a != b {
                            self.cuts.insert((a, b));
                        }
                    }
                }
                self.apply_faults().await?;
                self.last_fault = Some(("one-way cut".into(), Instant::now()));
                Ok(format!(
                    "{} directed links cut, {}",
                    self.cuts.len() - before,
                    self.link_fault_kind()
                ))
            }
            Step::Loss { regions, percent } => {
                if *percent > 100 {
                    bail!("loss.percent: {percent} is not a percentage (0..=100)");
                }
                let nodes = self.regions(regions, None)?;
                for &i in &nodes {
                    if *percent == 0 {
                        self.loss.remove(&i);
                    } else {
                        self.loss.insert(i, *percent);
                    }
                }
                self.apply_faults().await?;
                self.last_fault = Some((format!("{percent}% loss"), Instant::now()));
                Ok(format!(
                    "{percent}% of packets into {} node(s) dropped, {}",
                    nodes.len(),
                    self.link_fault_kind()
                ))
            }
            Step::Heal => {
                self.cuts.clear();
                self.loss.clear();
                self.apply_faults().await?;
                self.last_fault = Some(("heal".into(), Instant::now()));
                Ok(String::new())
            }
            Step::WaitLinks { timeout_ms } => {
                let t0 = Instant::now();
                let deadline = Duration::from_millis(*timeout_ms);
                let n = self.fed.nodes.len();
                let live: Vec<usize> = (0..n).filter(|&i| self.fed.live(i)).collect();
                let expected: BTreeMap<usize, BTreeSet<String>> = live
                    .iter()
                    .map(|&i| {
                        let peers = live
                            .iter()
                            .filter(|&&j| j != i && self.reachable(i, j))
                            .map(|&j| self.fed.nodes[j].region.to_string())
                            .collect();
                        (i, peers)
                    })
                    .collect();
                let mut poll = tokio::time::interval(Duration::from_millis(200));
                loop {
                    poll.tick().await;
                    let fed = &self.fed;
                    let seen = futures::future::join_all(live.iter().map(|&i| async move {
                        let connected: Option<BTreeSet<String>> =
                            fed.get(i, "/v1/peers").await.and_then(|v| {
                                v["connected"]
                                    .as_object()
                                    .map(|m| m.keys().cloned().collect())
                            });
                        (i, connected)
                    }))
                    .await;
                    let wrong: Vec<String> = seen
                        .iter()
                        .filter(|(i, c)| c.as_ref() != expected.get(i))
                        .map(|(i, c)| {
                            format!(
                                "{} sees {c:?}, expected {:?}",
                                self.fed.nodes[*i].region,
                                expected.get(i)
                            )
                        })
                        .collect();
                    if wrong.is_empty() {
                        return Ok(format!(
                            "links match the faults at {} nodes after {} ms",
                            live.len(),
                            t0.elapsed().as_millis()
                        ));
                    }
                    if t0.elapsed() > deadline {
                        bail!(
                            "links did not match the faults within {timeout_ms} ms: {}",
                            wrong.join("; ")
                        );
                    }
                }
            }
            Step::WaitConverged { timeout_ms } => {
                self.wait_converged(Duration::from_millis(*timeout_ms))
                    .await
            }
            Step::AssertCheck {
                at,
                uscc,
                domain,
                mandatory,
                recommended,
            } => {
                let mut asked = 0;
                let catalogue = Catalogue::embedded()?;
                for i in self.regions(at, None)? {
                    if !self.fed.live(i) {
                        continue;
                    }
                    let path = format!("/v1/check?uscc={uscc}&domain={domain}");
                    let v = self
                        .fed
                        .get(i, &path)
                        .await
                        .with_context(|| format!("check at {}", self.fed.nodes[i].region))?;
                    let answer: CheckAnswer = serde_json::from_value(v).context("check answer")?;
                    let report = verify_answer(&answer, &self.fed.manifest, &catalogue);
                    let region = self.fed.nodes[i].region;
                    for e in answer
                        .entries
                        .iter()
                        .filter(|e| e.state == EntryState::Suspended)
                    {
                        if answer
                            .mandatory
                            .iter()
                            .chain(&answer.recommended)
                            .any(|m| m.entry == e.entry)
                        {
                            self.violate(
                                "suspended_entry_never_applies_a_measure",
                                format!("{region}: suspended entry {} applied a measure", e.entry),
                            );
                        }
                    }
                    if !report.ok() {
                        bail!(
                            "{region}: answer failed offline verification: {:?}",
                            report.failures
                        );
                    }
                    let got_m: BTreeSet<String> =
                        answer.mandatory.iter().map(|m| m.code.0.clone()).collect();
                    let got_r: BTreeSet<String> = answer
                        .recommended
                        .iter()
                        .map(|m| m.code.0.clone())
                        .collect();
                    let want_m: BTreeSet<String> = mandatory.iter().cloned().collect();
                    let want_r: BTreeSet<String> = recommended.iter().cloned().collect();
                    if got_m != want_m || got_r != want_r {
                        bail!(
                            "{region}: mandatory {got_m:?} recommended {got_r:?}, expected {want_m:?} {want_r:?}"
                        );
                    }
                    asked += 1;
                }
                self.note(
                    "suspended_entry_never_applies_a_measure",
                    format!("{asked} check answers verified offline"),
                );
                Ok(format!(
                    "{asked} nodes answered as expected; evidence verified offline"
                ))
            }
            Step::AssertEntry { at, entry, state } => {
                let id = self.entry_named(entry)?.0.id;
                let mut n = 0;
                for i in self.regions(at, None)? {
                    if !self.fed.live(i) {
                        continue;
                    }
                    let v = self
                        .fed
                        .get(i, &format!("/v1/entries/{id}"))
                        .await
                        .with_context(|| format!("entry at {}", self.fed.nodes[i].region))?;
                    if v["state"] != json!(state) {
                        bail!(
                            "{}: entry {entry} is {}, expected {state}",
                            self.fed.nodes[i].region,
                            v["state"]
                        );
                    }
                    n += 1;
                }
                Ok(format!("{state} at {n} nodes"))
            }
            Step::AssertAction {
                at,
                action,
                regions,
                status,
                executed,
            } => {
                let (named, _) = self
                    .actions
                    .get(action)
                    .with_context(|| format!("no action named {action}"))?;
                let id = named.id;
                let lines: BTreeSet<String> = self
                    .regions(regions, Some(action))?
                    .into_iter()
                    .map(|i| self.fed.nodes[i].region.to_string())
                    .collect();
                let mut asked = 0;
                for i in self.regions(at, None)? {
                    if !self.fed.live(i) {
                        continue;
                    }
                    let here = self.fed.nodes[i].region;
                    let v = self
                        .fed
                        .get(i, &format!("/v1/actions/{id}"))
                        .await
                        .with_context(|| format!("action {action} at {here}"))?;
                    let targets = v["targets"].as_array().cloned().unwrap_or_default();
                    for region in &lines {
                        let Some(t) = targets.iter().find(|t| t["region"] == json!(region)) else {
                            bail!("{here}: action {action} has no target line for {region}");
                        };
                        if t["status"] != json!(status) {
                            bail!(
                                "{here}: action {action}, target {region} is {}, expected {status}",
                                t["status"]
                            );
                        }
                        if let Some(m) = executed
                            && !t["executed"]
                                .as_array()
                                .is_some_and(|a| a.contains(&json!(m)))
                        {
                            bail!(
                                "{here}: action {action}, target {region} has not executed {m} (executed {})",
                                t["executed"]
                            );
                        }
                    }
                    asked += 1;
                }
                Ok(format!(
                    "{} target lines {status}{} at {asked} nodes",
                    lines.len(),
                    executed
                        .as_ref()
                        .map(|m| format!(", {m} executed"))
                        .unwrap_or_default()
                ))
            }
            Step::AssertInvariants => {
                let violated: Vec<String> = self
                    .invariants
                    .iter()
                    .filter(|(_, (held, _))| !held)
                    .map(|(name, (_, detail))| format!("{name}: {}", detail.join("; ")))
                    .collect();
                if !violated.is_empty() {
                    bail!("invariants violated: {}", violated.join(" | "));
                }
                Ok(format!("all {} invariants hold", self.invariants.len()))
            }
            Step::InjectInvalid { entry, region } => self.inject_invalid(entry, region).await,
            Step::Equivocate { region } => self.equivocate(region).await,
        }
    }

    async fn wait_holds(&self, i: usize, path: &str) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            if self.fed.nodes[i]
                .client
                .get(path)
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("{} never received {path}", self.fed.nodes[i].region);
            }
        }
    }

    async fn wait_holds_action(&self, i: usize, id: &ActionId) -> Result<()> {
        self.wait_holds(i, &format!("/v1/actions/{id}")).await
    }

    async fn wait_holds_entry(&self, i: usize, id: &EntryId) -> Result<()> {
        self.wait_holds(i, &format!("/v1/entries/{id}")).await
    }

    /// The invariants that hold at every instant, checked after every step (convergence
    /// can only be judged at a `wait_converged`, and is):
    /// - a node's head of a log never moves back, and the origin holds every record it
    ///   acknowledged (`no_acknowledged_record_lost`);
    /// - no two nodes hold different records at the same position of an honest region's
    ///   log (`nothing_invalid_accepted`: a forged or altered record would show as such);
    /// - no node flags a region that did not equivocate;
    /// - no node's check lets a suspended entry apply a measure.
    ///
    /// Returns the names of the invariants this step violated.
    async fn check_step_invariants(&mut self, index: usize, step: &Step) -> Vec<String> {
        let n = self.fed.nodes.len();
        let before: BTreeMap<String, bool> = self
            .invariants
            .iter()
            .map(|(k, v)| (k.clone(), v.0))
            .collect();
        // A wiped or rewritten store starts again from nothing, and a crash may lose
        // replicated records not yet synced (by design: they are fetched again; only the
        // node's own acknowledged records must survive, which is checked below).
        if let Step::Wipe { region }
        | Step::Equivocate { region }
        | Step::Kill { region }
        | Step::Restart { region }
        | Step::Skew { region, .. } = step
            && let Ok(i) = self.fed.index(region)
        {
            self.last_heads[i].clear();
        }
        let live: Vec<usize> = (0..n).filter(|&i| self.fed.live(i)).collect();
        let fed = &self.fed;
        let polled = futures::future::join_all(
            live.iter()
                .map(|&i| async move { (i, fed.heads(i).await, fed.get(i, "/v1/status").await) }),
        )
        .await;
        let mut by_position: BTreeMap<(String, u64), (String, usize)> = BTreeMap::new();
        for (i, heads, status) in polled {
            let region_i = self.fed.nodes[i].region;
            let Some(heads) = heads else {
                continue; // busy or restarting: judged at the next step
            };
            for (r, (seq, hash)) in &heads {
                let previous = self.last_heads[i].get(r).copied().unwrap_or(0);
                if *seq < previous {
                    self.violate(
                        "no_acknowledged_record_lost",
                        format!("after step {index}: {region_i}'s head of {r} went back from #{previous} to #{seq}"),
                    );
                }
                let honest = !self
                    .expected_equivocators
                    .iter()
                    .any(|e| e.to_string() == *r);
                if honest {
                    match by_position.get(&(r.clone(), *seq)) {
                        Some((other, j)) if other != hash => {
                            let d = format!(
                                "after step {index}: {} and {region_i} hold different records at {r}#{seq}",
                                self.fed.nodes[*j].region
                            );
                            self.violate("nothing_invalid_accepted", d);
                        }
                        Some(_) => {}
                        None => {
                            by_position.insert((r.clone(), *seq), (hash.clone(), i));
                        }
                    }
                }
            }
            self.last_heads[i] = heads.iter().map(|(r, (s, _))| (r.clone(), *s)).collect();
            if !self.expected_equivocators.contains(&region_i) {
                let acked_own = self
                    .acked
                    .iter()
                    .filter(|(r, _, _)| *r == region_i)
                    .map(|(_, s, _)| *s)
                    .max()
                    .unwrap_or(0);
                let own = heads.get(&region_i.to_string()).map_or(0, |h| h.0);
                if own < acked_own {
                    self.violate(
                        "no_acknowledged_record_lost",
                        format!("after step {index}: {region_i} holds its log to #{own}, #{acked_own} was acknowledged"),
                    );
                }
            }
            let flagged = status
                .and_then(|s| s["equivocating_regions"].as_array().cloned())
                .unwrap_or_default();
            for f in flagged {
                let f = f.as_str().unwrap_or("").to_string();
                if !self
                    .expected_equivocators
                    .iter()
                    .any(|e| e.to_string() == f)
                {
                    self.violate(
                        "equivocation_detected_by_every_honest_node",
                        format!(
                            "after step {index}: {region_i} flagged {f}, which did not equivocate"
                        ),
                    );
                }
            }
        }
        self.check_suspended_entries(index, &live).await;
        self.step_checks += 1;
        self.invariants
            .iter()
            .filter(|(k, v)| !v.0 && before.get(*k).copied().unwrap_or(true))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// For every entry that has had an objection: wherever it is suspended, a check of
    /// its subject in the domains of its measures must not apply any of them.
    async fn check_suspended_entries(&mut self, index: usize, live: &[usize]) {
        let Ok(catalogue) = Catalogue::embedded() else {
            return;
        };
        let objected: BTreeSet<&String> = self.objections.values().map(|(_, e)| e).collect();
        let mut work = Vec::new();
        for name in objected {
            let Some((named, entry)) = self.entries.get(name) else {
                continue;
            };
            let Subject::Organisation { uscc, .. } = &entry.subject else {
                continue;
            };
            let domains: BTreeSet<String> = entry
                .requested_measures
                .iter()
                .filter_map(|c| catalogue.get(c))
                .filter_map(|m| m.domains.first().map(|d| d.name()))
                .collect();
            work.push((named.id, uscc.clone(), domains));
        }
        for (id, uscc, domains) in work {
            for &i in live {
                let suspended = self
                    .fed
                    .get(i, &format!("/v1/entries/{id}"))
                    .await
                    .is_some_and(|v| v["state"] == json!("suspended"));
                if !suspended {
                    continue;
                }
                for domain in &domains {
                    let Some(v) = self
                        .fed
                        .get(i, &format!("/v1/check?uscc={uscc}&domain={domain}"))
                        .await
                    else {
                        continue;
                    };
                    let Ok(answer) = serde_json::from_value::<CheckAnswer>(v) else {
                        continue;
                    };
                    // The entry may have been resolved between the two requests: judge by
                    // the state the answer itself reports.
                    let still_suspended = answer
                        .entries
                        .iter()
                        .any(|e| e.entry == id && e.state == EntryState::Suspended);
                    if still_suspended
                        && answer
                            .mandatory
                            .iter()
                            .chain(&answer.recommended)
                            .any(|m| m.entry == id)
                    {
                        let region = self.fed.nodes[i].region;
                        self.violate(
                            "suspended_entry_never_applies_a_measure",
                            format!("after step {index}: {region} applied a measure of suspended entry {id} ({domain})"),
                        );
                    }
                }
            }
        }
    }

    /// Waits for a (re)started node: until it accepts writes if some peer is reachable
    /// (it must first confirm its own log with one), else until its API answers.
    async fn wait_started(&self, i: usize) -> Result<String> {
        let n = self.fed.nodes.len();
        let isolated = self.fed.lab.is_some()
            && (0..n).all(|j| {
                j == i
                    || !self.fed.live(j)
                    || self.cuts.contains(&(i, j))
                    || self.cuts.contains(&(j, i))
            });
        if !isolated {
            self.fed.wait_writable(i, Duration::from_secs(60)).await?;
            return Ok("writable again".into());
        }
        let end = Instant::now() + Duration::from_secs(60);
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            if self.fed.get(i, "/v1/status").await.is_some() {
                return Ok("running; writes stay closed until it reaches a peer (cut off)".into());
            }
            if Instant::now() > end {
                bail!(
                    "{} did not answer within 60 s after its start",
                    self.fed.nodes[i].region
                );
            }
        }
    }

    /// A restarted or resumed node must rejoin the faults in force: in the in-node mode
    /// they are process state, lost on restart (namespace rules outlive the process).
    async fn reapply_faults(&mut self) -> Result<()> {
        if self.fed.lab.is_none() && (!self.cuts.is_empty() || !self.loss.is_empty()) {
            self.apply_faults().await?;
        }
        Ok(())
    }

    fn link_fault_kind(&self) -> &'static str {
        if self.fed.lab.is_some() {
            "nftables drops between namespaces"
        } else {
            "in-node fault mode"
        }
    }

    /// Makes the links match `cuts` and `loss`.
    async fn apply_faults(&mut self) -> Result<()> {
        let n = self.fed.nodes.len();
        if let Some(lab) = self.fed.lab.clone() {
            for i in 0..n {
                let rules = LinkRules {
                    drop_from: self
                        .cuts
                        .iter()
                        .filter(|(_, to)| *to == i)
                        .map(|(from, _)| lab.node_ip(*from))
                        .collect(),
                    loss_percent: self.loss.get(&i).copied().unwrap_or(0),
                };
                if self.applied_rules[i].as_ref() != Some(&rules) {
                    lab.apply(i, &rules)?;
                    self.applied_rules[i] = Some(rules);
                }
            }
            return Ok(());
        }
        for (i, node) in self.fed.nodes.iter().enumerate() {
            if !self.fed.live(i) {
                continue;
            }
            // A connection needs both directions: a one-way cut is a cut at this level.
            let blocked: Vec<String> = (0..n)
                .filter(|&j| self.cuts.contains(&(i, j)) || self.cuts.contains(&(j, i)))
                .map(|j| self.fed.nodes[j].region.to_string())
                .collect();
            let loss_percent = self.loss.get(&i).copied().unwrap_or(0);
            let r = node
                .client
                .post(
                    "/v1/admin/partition",
                    &json!({"blocked": blocked, "loss_percent": loss_percent}),
                )
                .await?;
            if r.status != 200 {
                bail!("fault at {}: {} {}", node.region, r.status, r.body);
            }
        }
        Ok(())
    }

    async fn wait_converged(&mut self, timeout: Duration) -> Result<String> {
        let t0 = Instant::now();
        // An equivocating member holds a forked copy of its own log that can never match
        // the honest copies: convergence is judged among the honest nodes.
        let live: Vec<usize> = (0..self.fed.nodes.len())
            .filter(|&i| {
                self.fed.live(i)
                    && !self
                        .expected_equivocators
                        .contains(&self.fed.nodes[i].region)
            })
            .collect();
        let components = self.components(&live);
        // Each poll is a TLS handshake per node: on 31 nodes sharing 2 cores, frequent polls
        // would slow the convergence they measure. The exact time comes from the nodes'
        // own `last_applied_ms`; polling only has to notice it.
        let every = if live.len() > 8 { 600 } else { 200 };
        let mut poll = tokio::time::interval(Duration::from_millis(every));
        let heads = loop {
            poll.tick().await;
            let fed = &self.fed;
            let all = futures::future::join_all(
                live.iter().map(|&i| async move { (i, fed.heads(i).await) }),
            )
            .await;
            let map: BTreeMap<usize, BTreeMap<String, (u64, String)>> = all
                .into_iter()
                .filter_map(|(i, h)| h.map(|h| (i, h)))
                .collect();
            let same = components.iter().all(|c| {
                c.windows(2)
                    .all(|w| map.contains_key(&w[0]) && map.get(&w[0]) == map.get(&w[1]))
            });
            if same && map.len() == live.len() {
                break map;
            }
            if t0.elapsed() > timeout {
                let detail = format!("heads differ after {timeout:?}");
                self.violate("live_connected_nodes_converge", detail.clone());
                bail!(detail);
            }
        };
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        if let Some((fault, at)) = self.last_fault.clone() {
            // Exact time of convergence from the nodes' own clocks: the last moment any live
            // node applied an envelope (all share this machine's clock), measured from the
            // fault; polling only bounds it from above.
            let fault_wall_ms = now_ms() - at.elapsed().as_millis() as i64;
            let fed = &self.fed;
            let last = futures::future::join_all(live.iter().map(|&i| async move {
                fed.get(i, "/v1/status")
                    .await
                    .and_then(|s| s["last_applied_ms"].as_i64())
            }))
            .await;
            let polled = at.elapsed().as_secs_f64() * 1000.0;
            let exact = last
                .into_iter()
                .flatten()
                .max()
                .map(|t| (t - fault_wall_ms) as f64)
                .filter(|ms| *ms >= 0.0 && *ms <= polled);
            self.convergence.push(Convergence {
                after: fault,
                since_fault_ms: exact.unwrap_or(polled),
                wait_ms: took,
            });
        }
        // Derived state: the same statistics everywhere within a component.
        for c in &components {
            let mut first: Option<(usize, serde_json::Value)> = None;
            for &i in c {
                let Some(mut s) = self.fed.get(i, "/v1/stats").await else {
                    continue;
                };
                if let Some(o) = s.as_object_mut() {
                    o.remove("median_acknowledgement_ms");
                }
                match &first {
                    None => first = Some((i, s)),
                    Some((j, f)) if *f != s => {
                        let d = format!(
                            "{} and {} hold the same heads but derive different state",
                            self.fed.nodes[*j].region, self.fed.nodes[i].region
                        );
                        self.violate("live_connected_nodes_converge", d);
                    }
                    _ => {}
                }
            }
        }
        self.note(
            "live_connected_nodes_converge",
            format!("{} live nodes converged in {took:.0} ms", live.len()),
        );
        if components.len() <= 1 {
            self.check_acknowledged(&heads).await?;
            self.check_equivocation().await;
        }
        if components.len() > 1 {
            // Evidence that the cut is real: the sides hold different logs.
            let distinct: BTreeSet<&BTreeMap<String, (u64, String)>> = components
                .iter()
                .filter_map(|c| c.first().and_then(|i| heads.get(i)))
                .collect();
            return Ok(format!(
                "{} live nodes in {} components holding {} distinct sets of heads, {took:.0} ms",
                live.len(),
                components.len(),
                distinct.len()
            ));
        }
        Ok(format!("{} live nodes, {took:.0} ms", live.len()))
    }

    /// Every acknowledged record is at its position, with its hash, at a live node whose
    /// heads every live node shares (hash-linked chains: same head ⇒ same log).
    async fn check_acknowledged(
        &mut self,
        heads: &BTreeMap<usize, BTreeMap<String, (u64, String)>>,
    ) -> Result<()> {
        let Some((&i, h)) = heads.iter().next() else {
            return Ok(());
        };
        let mut by_region: BTreeMap<RegionCode, Vec<(u64, String)>> = BTreeMap::new();
        for (r, s, hash) in &self.acked {
            by_region.entry(*r).or_default().push((*s, hash.clone()));
        }
        let mut checked = 0;
        for (r, acks) in by_region {
            let held = h.get(&r.to_string()).map_or(0, |x| x.0);
            let mut positions: BTreeMap<u64, String> = BTreeMap::new();
            let mut from = 1;
            while from <= held {
                let v = self
                    .fed
                    .get(i, &format!("/v1/log/{r}?from={from}&limit=256"))
                    .await
                    .context("log range")?;
                let envs = v["envelopes"].as_array().cloned().unwrap_or_default();
                if envs.is_empty() {
                    break;
                }
                for (k, e) in envs.iter().enumerate() {
                    let bytes = hex::decode(e.as_str().unwrap_or("")).unwrap_or_default();
                    positions.insert(
                        from + k as u64,
                        envelope_hash(FEDERATION_ID, &bytes).to_hex(),
                    );
                }
                from += envs.len() as u64;
            }
            for (s, hash) in acks {
                checked += 1;
                match positions.get(&s) {
                    Some(x) if *x == hash => {}
                    Some(_) if self.expected_equivocators.contains(&r) => {}
                    other => self.violate(
                        "no_acknowledged_record_lost",
                        format!("{r}#{s}: acknowledged {hash}, held {other:?}"),
                    ),
                }
            }
        }
        self.note(
            "no_acknowledged_record_lost",
            format!("{checked} acknowledged records found with their hashes on every live node"),
        );
        Ok(())
    }

    async fn check_equivocation(&mut self) {
        if self.expected_equivocators.is_empty() {
            self.invariants
                .entry("equivocation_detected_by_every_honest_node".into())
                .or_default()
                .1 = vec!["no member equivocated in this scenario; no node flagged one".into()];
            for i in 0..self.fed.nodes.len() {
                if !self.fed.live(i) {
                    continue;
                }
                let flagged = self
                    .fed
                    .get(i, "/v1/status")
                    .await
                    .and_then(|s| s["equivocating_regions"].as_array().cloned())
                    .unwrap_or_default();
                if !flagged.is_empty() {
                    self.violate(
                        "equivocation_detected_by_every_honest_node",
                        format!(
                            "{} flagged {flagged:?} though nobody equivocated",
                            self.fed.nodes[i].region
                        ),
                    );
                }
            }
        }
        for r in self.expected_equivocators.clone() {
            for i in 0..self.fed.nodes.len() {
                if !self.fed.live(i) || self.fed.nodes[i].region == r {
                    continue;
                }
                let flagged = self.fed.get(i, "/v1/status").await.is_some_and(|s| {
                    s["equivocating_regions"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!(r.to_string())))
                });
                if !flagged {
                    self.violate(
                        "equivocation_detected_by_every_honest_node",
                        format!("{} did not flag {r}", self.fed.nodes[i].region),
                    );
                }
            }
            self.note(
                "equivocation_detected_by_every_honest_node",
                format!("{r} flagged by every other live node"),
            );
        }
    }

    async fn inject_invalid(&mut self, entry: &str, region: &str) -> Result<String> {
        let (named, content) = self.entry_named(entry)?;
        let (eid, issuer) = (named.id, named.region);
        let content = content.clone();
        let i = self.fed.index(region)?;
        let r = self.fed.nodes[i].region;
        let before = self.fed.heads(i).await.unwrap_or_default();
        let client = &self.fed.nodes[i].client;
        let mut refused = Vec::new();
        let submit = |author: String, key: &credfed_protocol::crypto::Keypair, body: Body| {
            let (bytes, sig) = credfed_protocol::envelope::sign_body(FEDERATION_ID, key, &body);
            let req =
                json!({"author": author, "body": hex::encode(bytes), "signature": sig.to_hex()});
            async move { client.post("/v1/records", &req).await }
        };
        let forged = credfed_protocol::crypto::Keypair::from_secret([0x66; 32]);
        let cases = vec![
            (
                "forged signature",
                submit(
                    format!("{r}:pub"),
                    &forged,
                    Body::ListEntryPublished(ListEntry {
                        summary: "forged".into(),
                        ..content.clone()
                    }),
                )
                .await?,
            ),
            (
                "wrong role",
                submit(
                    format!("{r}:impl"),
                    &self.fed.dept_key(&format!("{r}:impl")),
                    Body::ListEntryPublished(ListEntry {
                        summary: "role".into(),
                        ..content.clone()
                    }),
                )
                .await?,
            ),
            (
                "another region revokes",
                if r == issuer {
                    bail!("inject_invalid: choose a region other than the entry's issuer {issuer}")
                } else {
                    submit(
                        format!("{r}:pub"),
                        &self.fed.dept_key(&format!("{r}:pub")),
                        Body::ListEntryRevoked {
                            entry: eid,
                            reason: "越权".into(),
                        },
                    )
                    .await?
                },
            ),
        ];
        for (what, resp) in &cases {
            if resp.status == 201 {
                self.violate("nothing_invalid_accepted", format!("{r} accepted a {what}"));
            } else {
                refused.push(format!("{what}: {}", resp.status));
            }
        }
        let after = self.fed.heads(i).await.unwrap_or_default();
        if before.get(&r.to_string()) != after.get(&r.to_string()) {
            self.violate(
                "nothing_invalid_accepted",
                format!("{r}'s log changed while refusing invalid records"),
            );
        }
        self.note(
            "nothing_invalid_accepted",
            format!("at {r}: {}", refused.join(", ")),
        );
        Ok(refused.join("; "))
    }

    async fn equivocate(&mut self, region: &str) -> Result<String> {
        let i = self.fed.index(region)?;
        let r = self.fed.nodes[i].region;
        // Everyone else goes offline, the member loses its store and is (wrongly) started
        // solo: it rewrites its log from seq 1.
        let others: Vec<usize> = (0..self.fed.nodes.len())
            .filter(|&j| j != i && self.fed.nodes[j].child.is_some())
            .collect();
        for &j in &others {
            self.fed.signal(j, "-STOP")?;
        }
        self.fed.signal(i, "-KILL")?;
        std::fs::remove_dir_all(self.fed.nodes[i].dir.join("store"))?;
        let cfg = self.fed.nodes[i].dir.join("config.toml");
        let text = std::fs::read_to_string(&cfg)?;
        std::fs::write(&cfg, text.replace("solo = false", "solo = true"))?;
        self.fed.start(i, false)?;
        self.fed.wait_writable(i, Duration::from_secs(30)).await?;
        let held_elsewhere = self
            .acked
            .iter()
            .filter(|(x, _, _)| *x == r)
            .map(|(_, s, _)| *s)
            .max()
            .unwrap_or(0);
        for n in 0..(held_elsewhere + 6) {
            let d = DepartmentId::new(r, &format!("rogue{n}"), "d")?;
            let body = Body::DepartmentRegistered {
                department: d,
                name: "rogue".into(),
                roles: vec![credfed_protocol::ids::Role::Publisher],
                key: self.fed.dept_key("rogue").public(),
            };
            let (bytes, sig) = credfed_protocol::envelope::sign_body(
                FEDERATION_ID,
                &self.fed.nodes[i].node_key,
                &body,
            );
            let resp = self.fed.nodes[i].writer.post("/v1/records", &json!({"author": format!("{r}:node"), "body": hex::encode(bytes), "signature": sig.to_hex()})).await?;
            if resp.status != 201 {
                bail!("rogue write at {r}: {} {}", resp.status, resp.body);
            }
        }
        std::fs::write(&cfg, text)?;
        for &j in &others {
            self.fed.signal(j, "-CONT")?;
        }
        self.expected_equivocators.insert(r);
        self.last_fault = Some((format!("equivocate {region}"), Instant::now()));
        // Detection is checked at the next convergence.
        let end = Instant::now() + Duration::from_secs(60);
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            let mut all = true;
            for &j in &others {
                if !self.fed.live(j) {
                    continue;
                }
                let flagged = self.fed.get(j, "/v1/status").await.is_some_and(|s| {
                    s["equivocating_regions"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!(r.to_string())))
                });
                all &= flagged;
            }
            if all {
                return Ok(format!("{} honest nodes flagged {r}", others.len()));
            }
            if Instant::now() > end {
                self.violate(
                    "equivocation_detected_by_every_honest_node",
                    format!("not every node flagged {r} within 60 s"),
                );
                return Ok("detection incomplete".into());
            }
        }
    }

    /// Builds the report.
    pub async fn report(&mut self, scenario: &Scenario) -> Report {
        let mut messages = 0;
        let mut bytes = 0;
        for i in 0..self.fed.nodes.len() {
            if !self.fed.live(i) {
                continue;
            }
            if let Ok(r) = self.fed.nodes[i].client.get("/metrics").await {
                for l in r.body.lines() {
                    let v = l
                        .rsplit(' ')
                        .next()
                        .and_then(|x| x.parse::<u64>().ok())
                        .unwrap_or(0);
                    if l.starts_with("credfed_gossip_received_total ")
                        || l.starts_with("credfed_ranges_fetched_total ")
                    {
                        messages += v;
                    } else if l.starts_with("credfed_bytes_received_total ") {
                        bytes += v;
                    }
                }
            }
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
            convergence_ms: self.convergence.clone(),
            acknowledgement_ms,
            messages,
            bytes,
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

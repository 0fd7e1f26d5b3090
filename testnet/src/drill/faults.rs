//! Process faults (kill, restart, skew, pause, wipe) and link faults (partitions,
//! one-way cuts, loss), applied as real packet drops or in the nodes' fault mode.

use super::*;

impl Drill {
    /// SIGKILL a node.
    pub(super) async fn kill(&mut self, region: &str) -> Result<String> {
        let i = self.fed.index(region)?;
        self.fed.signal(i, "-KILL")?;
        self.last_fault = Some((format!("kill {region}"), Instant::now()));
        Ok(String::new())
    }

    /// Stop a node if it runs, start it, wait until it serves.
    pub(super) async fn restart(&mut self, region: &str) -> Result<String> {
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

    /// Adds a prepared region as a member while the federation runs
    /// ([`crate::fed::Federation::add_member`]); the drill's per-node state grows with it.
    pub(super) async fn add_member(
        &mut self,
        region: &str,
        via: Option<&str>,
        timeout_ms: u64,
    ) -> Result<String> {
        let code = region
            .parse::<u32>()
            .ok()
            .and_then(|c| credfed_protocol::ids::RegionCode::new(c, "region").ok())
            .with_context(|| format!("add_member.region: {region:?} is not a region code"))?;
        let via = match via {
            Some(v) => self.fed.index(v)?,
            None => (0..self.fed.nodes.len())
                .find(|&i| self.fed.live(i))
                .context("add_member: no member is running to install the manifest on")?,
        };
        let (_, detail) = self
            .fed
            .add_member(code, via, std::time::Duration::from_millis(timeout_ms))
            .await?;
        let n = self.fed.nodes.len();
        self.applied_rules.resize(n, None);
        self.last_heads.resize(n, Default::default());
        self.reapply_faults().await?;
        self.last_fault = Some((format!("add member {region}"), Instant::now()));
        Ok(detail)
    }

    /// Restart a node with its clock offset by `offset_ms`.
    pub(super) async fn skew(&mut self, region: &str, offset_ms: &i64) -> Result<String> {
        let i = self.fed.index(region)?;
        if self.fed.nodes[i].child.is_some() {
            self.fed.signal(i, "-TERM")?;
        }
        let path = self.fed.nodes[i].dir.join("config.toml");
        let mut cfg = credfed_client::node_config::NodeConfig::load(&path)?;
        cfg.clock_offset_ms = *offset_ms;
        cfg.save(&path)?;
        let region_code = self.fed.nodes[i].region;
        if *offset_ms == 0 {
            self.skewed.remove(&region_code);
        } else {
            self.skewed.insert(region_code);
        }
        self.fed.start(i, false)?;
        let detail = self.wait_started(i).await?;
        self.reapply_faults().await?;
        self.last_fault = Some((format!("skew {region} {offset_ms} ms"), Instant::now()));
        Ok(format!("clock offset {offset_ms} ms; {detail}"))
    }

    /// SIGSTOP a node.
    pub(super) async fn pause(&mut self, region: &str) -> Result<String> {
        let i = self.fed.index(region)?;
        self.fed.signal(i, "-STOP")?;
        self.last_fault = Some((format!("pause {region}"), Instant::now()));
        Ok(String::new())
    }

    /// SIGCONT a node.
    pub(super) async fn resume(&mut self, region: &str) -> Result<String> {
        let i = self.fed.index(region)?;
        self.fed.signal(i, "-CONT")?;
        self.reapply_faults().await?;
        self.last_fault = Some((format!("resume {region}"), Instant::now()));
        Ok(String::new())
    }

    /// Kill a node, delete its store, restart it: it must recover its own log from peers before writing.
    pub(super) async fn wipe(&mut self, region: &str) -> Result<String> {
        let i = self.fed.index(region)?;
        if self.fed.nodes[i].child.is_some() {
            self.fed.signal(i, "-KILL")?;
        }
        std::fs::remove_dir_all(self.fed.nodes[i].dir.join("store")).context("wiping the store")?;
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

    /// Cut every link between the groups (the unlisted nodes form one more group).
    pub(super) async fn partition(&mut self, groups: &[Vec<String>]) -> Result<String> {
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

    /// Cut the links from `from` to `to` in that direction only.
    pub(super) async fn one_way(&mut self, from: &[String], to: &[String]) -> Result<String> {
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

    /// Drop `percent` of the packets into the given nodes.
    pub(super) async fn loss(&mut self, regions: &Regions, percent: &u8) -> Result<String> {
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

    /// Lift every cut and every loss.
    pub(super) async fn heal(&mut self) -> Result<String> {
        self.cuts.clear();
        self.loss.clear();
        self.apply_faults().await?;
        self.last_fault = Some(("heal".into(), Instant::now()));
        Ok(String::new())
    }

    /// A restarted or resumed node must rejoin the faults in force: in the in-node mode
    /// they are process state, lost on restart (namespace rules outlive the process).
    pub(super) async fn reapply_faults(&mut self) -> Result<()> {
        if self.fed.lab.is_none() && (!self.cuts.is_empty() || !self.loss.is_empty()) {
            self.apply_faults().await?;
        }
        Ok(())
    }

    pub(super) fn link_fault_kind(&self) -> &'static str {
        if self.fed.lab.is_some() {
            "nftables drops between namespaces"
        } else {
            "in-node fault mode"
        }
    }

    /// Makes the links match `cuts` and `loss`. A region's twin (a second copy of its
    /// node, [`super::fork`]) is node index `nodes.len()` in `cuts`: in namespaces it has
    /// an address of its own; in the in-node mode, where a node blocks peers by region,
    /// a node blocks the twin's region only if it is cut from both copies.
    pub(super) async fn apply_faults(&mut self) -> Result<()> {
        let n = self.fed.nodes.len();
        let twin = self.twin.as_ref().map(|t| t.of);
        let total = n + usize::from(twin.is_some());
        if let Some(lab) = self.fed.lab.clone() {
            if self.applied_rules.len() < total {
                self.applied_rules.resize(total, None);
            }
            for i in 0..total {
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
        let cut = |a: usize, b: usize| self.cuts.contains(&(a, b)) || self.cuts.contains(&(b, a));
        let region_of = |j: usize| match twin {
            Some(of) if j == n => self.fed.nodes[of].region,
            _ => self.fed.nodes[j].region,
        };
        let mut requests = Vec::new();
        for i in 0..total {
            let client = if i == n {
                match &self.twin {
                    Some(t) if t.running => t.handle.client.clone(),
                    _ => continue,
                }
            } else if self.fed.live(i) {
                self.fed.nodes[i].client.clone()
            } else {
                continue;
            };
            // A connection needs both directions: a one-way cut is a cut at this level.
            let mut blocked: BTreeSet<String> = BTreeSet::new();
            for j in (0..total).filter(|&j| j != i && cut(i, j)) {
                let both_copies = match twin {
                    Some(of) if j == of || j == n => {
                        let other = if j == of { n } else { of };
                        other == i || cut(i, other)
                    }
                    _ => true,
                };
                if both_copies {
                    blocked.insert(region_of(j).to_string());
                }
            }
            let loss_percent = self.loss.get(&i).copied().unwrap_or(0);
            requests.push((region_of(i), client, blocked, loss_percent));
        }
        for (region, client, blocked, loss_percent) in requests {
            let r = client
                .post(
                    "/v1/admin/partition",
                    &credfed_client::PartitionRequest {
                        blocked: blocked.into_iter().collect(),
                        loss_percent,
                        lie_person_keys: false,
                    },
                )
                .await?;
            if r.status != 200 {
                bail!("fault at {region}: {} {}", r.status, r.body);
            }
        }
        Ok(())
    }

    pub(super) async fn inject_invalid(&mut self, entry: &str, region: &str) -> Result<String> {
        let (named, content) = self.entry_named(entry)?;
        let (eid, issuer) = (named.id, named.region);
        let content = content.clone();
        let i = self.fed.index(region)?;
        let r = self.fed.nodes[i].region;
        let before = self.fed.heads(i).await.unwrap_or_default();
        let client = &self.fed.nodes[i].client;
        let mut refused = Vec::new();
        // Submitted as the node's operator: what matters is that the node refuses them.
        let submit = |author: String, key: &credfed_protocol::crypto::Keypair, body: Body| {
            let (bytes, sig) = credfed_protocol::envelope::sign_body(FEDERATION_ID, key, &body);
            let req = credfed_client::SubmitRecord {
                author,
                body: hex::encode(bytes),
                signature: sig.to_hex(),
            };
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

    pub(super) async fn equivocate(&mut self, region: &str) -> Result<String> {
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
        let path = self.fed.nodes[i].dir.join("config.toml");
        let mut cfg = credfed_client::node_config::NodeConfig::load(&path)?;
        cfg.solo = true;
        cfg.save(&path)?;
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
            // The rogue member's own operator signs: it holds its region's keys.
            let operator = DepartmentId::parse(&format!("{r}:operator"), "author")?;
            let record = credfed_client::SubmitRecord::sign(
                FEDERATION_ID,
                &operator,
                &self.fed.nodes[i].operator_key,
                &body,
            );
            let resp = self.fed.nodes[i]
                .writer
                .post("/v1/records", &record)
                .await?;
            if resp.status != 201 {
                bail!("rogue write at {r}: {} {}", resp.status, resp.body);
            }
        }
        cfg.solo = false;
        cfg.save(&path)?;
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
                break;
            }
            if Instant::now() > end {
                self.violate(
                    "equivocation_detected_by_every_honest_node",
                    format!("not every node flagged {r} within 60 s"),
                );
                return Ok("detection incomplete".into());
            }
        }
        // The forked node asks the others to witness its new history as soon as it is
        // connected again: wait until a witness has refused it, so that the report
        // shows the split view whatever the timing.
        let mut refused = 0;
        while Instant::now() < end {
            poll.tick().await;
            refused = 0;
            for &j in &others {
                if let Some(m) = self.node_metrics(j).await {
                    refused += ["equivocator", "split_view"]
                        .iter()
                        .filter_map(|k| m.cosign_refusals.get(*k))
                        .sum::<u64>();
                }
            }
            if refused > 0 {
                break;
            }
        }
        Ok(format!(
            "{} honest nodes flagged {r}; {refused} cosignatures of its forked history refused",
            others.len()
        ))
    }
}

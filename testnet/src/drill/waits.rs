//! Waiting on conditions across the federation, each with a deadline.

use super::*;

impl Drill {
    /// Wait until an entry has `state` at the given nodes.
    pub(super) async fn wait_until_state(
        &mut self,
        at: &Regions,
        entry: &str,
        state: &str,
        timeout_ms: &u64,
    ) -> Result<String> {
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

    /// Wait until every live node is connected to exactly the peers the faults allow.
    pub(super) async fn wait_links(&mut self, timeout_ms: &u64) -> Result<String> {
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

    pub(super) async fn wait_holds(&self, i: usize, path: &str) -> Result<()> {
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

    pub(super) async fn wait_holds_action(&self, i: usize, id: &ActionId) -> Result<()> {
        self.wait_holds(i, &format!("/v1/actions/{id}")).await
    }

    pub(super) async fn wait_holds_entry(&self, i: usize, id: &EntryId) -> Result<()> {
        self.wait_holds(i, &format!("/v1/entries/{id}")).await
    }

    /// Waits for a (re)started node: until it accepts writes if some peer is reachable
    /// (it must first confirm its own log with one), else until its API answers.
    pub(super) async fn wait_started(&self, i: usize) -> Result<String> {
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

    pub(super) async fn wait_converged(&mut self, timeout: Duration) -> Result<String> {
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
            // An equivocating member's own log may legitimately differ between honest
            // nodes (each holds the branch it saw first): it is left out of the comparison.
            let forked: BTreeSet<String> = self
                .expected_equivocators
                .iter()
                .map(|r| r.to_string())
                .collect();
            let map: BTreeMap<usize, BTreeMap<String, (u64, String)>> = all
                .into_iter()
                .filter_map(|(i, h)| {
                    h.map(|mut h| {
                        h.retain(|r, _| !forked.contains(r));
                        (i, h)
                    })
                })
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
        self.check_witnessed_checkpoints(&live).await;
        self.check_proven_answer(&live).await;
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
}

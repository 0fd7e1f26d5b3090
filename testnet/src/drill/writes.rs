//! Steps that write records: each builds its body with [`super::bodies`], submits it at
//! the author's node and waits until it has reached every node it can reach.

use super::bodies::{self, Change};
use super::*;

impl Drill {
    /// `publish`: a list entry at `region`; related persons are keyed by that region's
    /// node (`POST /v1/persons/refs`), as a department's CLI would have them keyed.
    pub(super) async fn publish(
        &mut self,
        name: &str,
        region: &str,
        mut spec: bodies::EntrySpec,
        person: Option<&str>,
        related: &[String],
    ) -> Result<String> {
        let r = RegionCode::parse(region, "region")?;
        let i = self.fed.index(region)?;
        if person.is_some() != spec.uscc.is_empty() {
            bail!("publish {name}: give exactly one of uscc and person");
        }
        let mut roles = Vec::new();
        let mut persons = Vec::new();
        if let Some(text) = person {
            let (number, person_name) = bodies::person_spec(text)?;
            persons.push(credfed_client::PersonToHash {
                number,
                name: person_name,
            });
        }
        for text in related {
            let (role, number, person_name) = bodies::related_spec(text)?;
            roles.push(role);
            persons.push(credfed_client::PersonToHash {
                number,
                name: person_name,
            });
        }
        if !persons.is_empty() {
            let answer: credfed_client::PersonRefsAnswer = self.fed.nodes[i]
                .client
                .post_json(
                    "/v1/persons/refs",
                    &credfed_client::PersonRefsRequest { persons },
                )
                .await
                .with_context(|| format!("keying persons at {region}"))?;
            let mut refs = answer.refs.into_iter();
            if person.is_some() {
                spec.person = refs.next();
            }
            spec.related = roles
                .into_iter()
                .zip(refs)
                .map(|(role, person)| RelatedPerson { role, person })
                .collect();
        }
        self.doc_counter += 1;
        let e = bodies::drill_entry(r, name, &spec, self.doc_counter, today())?;
        let (seq, origin) = self
            .write(&self.author(r, "pub"), &Body::ListEntryPublished(e.clone()))
            .await?;
        self.propagate(origin, seq).await?;
        let id = entry_id(r, &e);
        self.entries
            .insert(name.to_owned(), (Named { id, region: r }, e));
        Ok(format!(
            "{region}#{seq}, at every reachable node in {:.0} ms",
            self.propagation_ms.last().copied().unwrap_or(0.0)
        ))
    }

    /// `amend`, `revoke`, `repair`: the issuer changes its entry.
    pub(super) async fn change(&mut self, entry: &str, change: Change) -> Result<String> {
        let (named, content) = self.entry_named(entry)?;
        let (id, r) = (named.id, named.region);
        let body = bodies::change_body(change, id, content);
        let (seq, origin) = self.write(&self.author(r, "pub"), &body).await?;
        // The drill's copy follows the issuer's corrections: the invariants compare what
        // nodes apply with what the entry says now.
        if let Body::ListEntryAmended { amended, .. } = &body {
            if let Some((_, content)) = self.entries.get_mut(entry) {
                *content = amended.clone();
            }
            self.corrected_at.insert(id, seq);
        }
        self.propagate(origin, seq).await?;
        Ok(format!("{r}#{seq}"))
    }

    /// `initiate`: a joint action on an entry, at the entry's region.
    pub(super) async fn initiate(
        &mut self,
        name: &str,
        entry: &str,
        targets: &Regions,
        measures: &[String],
    ) -> Result<String> {
        let (named, _) = self.entry_named(entry)?;
        let (eid, r) = (named.id, named.region);
        let all = matches!(targets, Regions::Word(w) if w == "all");
        let target_list: Vec<RegionCode> = if all {
            self.fed
                .nodes
                .iter()
                .map(|n| n.region)
                .filter(|x| *x != r)
                .collect()
        } else {
            self.regions(targets, None)?
                .into_iter()
                .map(|i| self.fed.nodes[i].region)
                .collect()
        };
        let targets = if all {
            Targets::AllMembers
        } else {
            Targets::Regions(target_list.clone())
        };
        let a = bodies::joint_action(name, eid, targets, measures, today());
        let author = self.author(r, "init");
        let (seq, origin) = self
            .write(&author, &Body::JointActionInitiated(a.clone()))
            .await?;
        self.propagate(origin, seq).await?;
        let aid = action_id(&DepartmentId::parse(&author, "author")?, &a.reference);
        let n = target_list.len();
        self.actions
            .insert(name.to_owned(), (Named { id: aid, region: r }, target_list));
        Ok(format!("{r}#{seq} to {n} regions"))
    }

    /// `acknowledge` (no measure) or `execute` (a measure): each target region answers.
    pub(super) async fn respond(
        &mut self,
        action: &str,
        regions: &Regions,
        measure: Option<&str>,
    ) -> Result<String> {
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
            let implementer = DepartmentId::parse(&self.author(r, "impl"), "implementer")?;
            let body = bodies::target_answer(aid, r, &implementer, measure, today());
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

    /// `object`: an objection recorded at `region` (any region may).
    pub(super) async fn object(&mut self, name: &str, entry: &str, region: &str) -> Result<String> {
        let (named, _) = self.entry_named(entry)?;
        let (eid, issuer) = (named.id, named.region);
        let r = RegionCode::parse(region, "region")?;
        let i = self.fed.index(region)?;
        self.wait_holds_entry(i, &eid).await?;
        let case_no = bodies::objection_case(name, today());
        let author = self.author(r, "obj");
        let (seq, origin) = self
            .write(&author, &bodies::objection_body(&case_no, eid, today()))
            .await?;
        self.propagate(origin, seq).await?;
        let oid = objection_id(&DepartmentId::parse(&author, "author")?, &case_no);
        self.objections.insert(
            name.to_owned(),
            (
                Named {
                    id: oid,
                    region: issuer,
                },
                entry.to_owned(),
            ),
        );
        Ok(format!("{r}#{seq}"))
    }

    /// `resolve`: the issuing region resolves an objection.
    pub(super) async fn resolve(&mut self, objection: &str, outcome: &str) -> Result<String> {
        let (named, _) = self
            .objections
            .get(objection)
            .with_context(|| format!("no objection named {objection}"))?;
        let (oid, issuer) = (named.id, named.region);
        let body = bodies::resolution_body(oid, outcome)?;
        let (seq, origin) = self.write(&self.author(issuer, "obj"), &body).await?;
        self.propagate(origin, seq).await?;
        Ok(format!("{issuer}#{seq}"))
    }

    /// `apply_repair`: a region's objection desk records a subject's repair application
    /// for another region's (or its own) entry.
    pub(super) async fn apply_repair(
        &mut self,
        name: &str,
        entry: &str,
        region: &str,
    ) -> Result<String> {
        let (named, _) = self.entry_named(entry)?;
        let (eid, issuer) = (named.id, named.region);
        let r = RegionCode::parse(region, "region")?;
        let i = self.fed.index(region)?;
        self.wait_holds_entry(i, &eid).await?;
        let case_no = bodies::repair_case(name, today());
        let author = self.author(r, "obj");
        let (seq, origin) = self
            .write(&author, &bodies::repair_application(&case_no, eid, today()))
            .await?;
        self.propagate(origin, seq).await?;
        let id = repair_application_id(&DepartmentId::parse(&author, "author")?, &case_no);
        self.repair_applications.insert(
            name.to_owned(),
            (Named { id, region: issuer }, entry.to_owned()),
        );
        Ok(format!("{r}#{seq}"))
    }

    /// `decide_repair`: the issuing region's publishers decide an application.
    pub(super) async fn decide_repair(
        &mut self,
        application: &str,
        outcome: &str,
    ) -> Result<String> {
        let (id, issuer, entry) = {
            let (named, entry) = self
                .repair_applications
                .get(application)
                .with_context(|| format!("no repair application named {application}"))?;
            (named.id, named.region, entry.clone())
        };
        let entry_id = self.entry_named(&entry)?.0.id;
        let body = bodies::repair_decision(entry_id, id, outcome)?;
        let (seq, origin) = self.write(&self.author(issuer, "pub"), &body).await?;
        self.propagate(origin, seq).await?;
        Ok(format!("{issuer}#{seq}"))
    }

    /// `make_commitment`: the region's publishers record a commitment made ten days ago
    /// and due yesterday (article 四).
    pub(super) async fn make_commitment(
        &mut self,
        name: &str,
        region: &str,
        uscc: &str,
    ) -> Result<String> {
        let r = RegionCode::parse(region, "region")?;
        let author = self.author(r, "pub");
        let c = bodies::commitment(name, uscc, today());
        let id = commitment_id(&DepartmentId::parse(&author, "author")?, &c.acceptance_no);
        let (seq, origin) = self.write(&author, &Body::CommitmentMade(c)).await?;
        self.propagate(origin, seq).await?;
        self.commitments
            .insert(name.to_owned(), (Named { id, region: r }, uscc.to_owned()));
        Ok(format!("{r}#{seq}"))
    }

    /// `disclose`: the region's publishers disclose a penalty decided today, or twenty
    /// days ago when `late`.
    pub(super) async fn disclose(
        &mut self,
        name: &str,
        region: &str,
        uscc: &str,
        late: bool,
    ) -> Result<String> {
        let r = RegionCode::parse(region, "region")?;
        let author = self.author(r, "pub");
        let decided_on = if late { today().add_days(-20) } else { today() };
        let d = bodies::penalty_disclosure(name, uscc, decided_on);
        let id = disclosure_id(
            &DepartmentId::parse(&author, "author")?,
            d.kind,
            &d.decision_no,
        );
        let (seq, origin) = self.write(&author, &Body::DecisionDisclosed(d)).await?;
        self.propagate(origin, seq).await?;
        self.disclosures
            .insert(name.to_owned(), Named { id, region: r });
        Ok(format!("{r}#{seq}"))
    }

    /// `settle_commitment`: the recording region finds it kept (on its deadline) or
    /// breached (today).
    pub(super) async fn settle_commitment(
        &mut self,
        commitment: &str,
        outcome: &str,
    ) -> Result<String> {
        let (named, _) = self.commitments.get(commitment).with_context(|| {
            format!("settle_commitment.commitment: no commitment named {commitment}")
        })?;
        let (id, region) = (named.id, named.region);
        let body = bodies::commitment_settlement(id, outcome, today())?;
        let (seq, origin) = self.write(&self.author(region, "pub"), &body).await?;
        self.propagate(origin, seq).await?;
        Ok(format!("{region}#{seq}"))
    }

    /// `burst`: `count` acknowledged writes one after another.
    pub(super) async fn burst(
        &mut self,
        region: &str,
        count: usize,
        measure: bool,
        measure_proven: bool,
    ) -> Result<String> {
        let r = RegionCode::parse(region, "region")?;
        let t = Instant::now();
        let mut last = (0, 0);
        for _ in 0..count {
            self.doc_counter += 1;
            let e = bodies::burst_entry(self.doc_counter, today());
            last = self
                .write(&self.author(r, "pub"), &Body::ListEntryPublished(e))
                .await?;
            let acknowledged = Instant::now();
            if measure {
                self.propagate(last.1, last.0).await?;
            }
            if measure_proven {
                self.proven_visible(last.1, last.0, acknowledged).await?;
            }
        }
        let rate = count as f64 / t.elapsed().as_secs_f64();
        Ok(format!(
            "{count} acknowledged writes at {rate:.0}/s, last {region}#{}",
            last.0
        ))
    }

    /// Publishes `count` entries from `region` with `concurrency` writes in flight, as an
    /// import does; every acknowledgement is kept for the invariants, as in [`Self::burst`].
    pub(super) async fn concurrent_burst(
        &mut self,
        region: &str,
        count: usize,
        concurrency: usize,
    ) -> Result<String> {
        use futures::StreamExt;
        let r = RegionCode::parse(region, "region")?;
        let author = self.author(r, "pub");
        let bodies: Vec<Body> = (0..count)
            .map(|_| {
                self.doc_counter += 1;
                Body::ListEntryPublished(bodies::burst_entry(self.doc_counter, today()))
            })
            .collect();
        let t = Instant::now();
        let fed = &self.fed;
        let receipts: Vec<Result<credfed_client::Receipt>> = futures::stream::iter(&bodies)
            .map(|body| {
                let author = author.clone();
                async move {
                    let resp = fed.submit(&author, body).await?;
                    if resp.status != 201 {
                        bail!("{author} {:?}: {} {}", body.kind(), resp.status, resp.body);
                    }
                    serde_json::from_str::<credfed_client::Receipt>(&resp.body).context("receipt")
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = t.elapsed().as_secs_f64();
        let mut last = 0;
        for receipt in receipts {
            let receipt = receipt?;
            let at = RegionCode::parse(&receipt.region, "region")?;
            last = last.max(receipt.seq);
            self.acked.push((at, receipt.seq, receipt.hash));
        }
        Ok(format!(
            "{count} acknowledged writes at {:.0}/s with {concurrency} in flight, last {region}#{last}",
            count as f64 / elapsed
        ))
    }

    /// Polls proven answers about the burst's company at the next reachable node after
    /// the origin until one covers `origin`'s record `seq` (its map lists it for the
    /// company), and records the time since `acknowledged`.
    pub(super) async fn proven_visible(
        &mut self,
        origin: usize,
        seq: u64,
        acknowledged: Instant,
    ) -> Result<()> {
        let n = self.fed.nodes.len();
        let at = (1..n)
            .map(|k| (origin + k) % n)
            .find(|&j| {
                self.reachable(origin, j) && !self.skewed.contains(&self.fed.nodes[j].region)
            })
            .context("no other reachable node to ask for proven answers")?;
        let request = credfed_client::CheckRequest {
            uscc: Some(bodies::BURST_USCC.into()),
            person: None,
            domain: "procurement".into(),
            proofs: true,
            manifest: false,
        };
        let origin_index = origin;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(p) = self.fed.nodes[at]
                .client
                .post_json::<credfed_protocol::federation::ProvenAnswer>("/v1/check", &request)
                .await
                && p.regions
                    .get(origin_index)
                    .is_some_and(|r| r.subject.positions.contains(&seq))
            {
                self.proven_visible_ms
                    .push(acknowledged.elapsed().as_secs_f64() * 1000.0);
                return Ok(());
            }
            if Instant::now() > end {
                bail!(
                    "{}#{seq} was in no proven answer at {} within 30 s",
                    self.fed.nodes[origin].region,
                    self.fed.nodes[at].region
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `evaluation`: an evaluation result at `region`.
    pub(super) async fn evaluate(
        &mut self,
        region: &str,
        uscc: &str,
        scheme: &str,
        class: &str,
    ) -> Result<String> {
        let r = RegionCode::parse(region, "region")?;
        let ev = bodies::evaluation(uscc, scheme, class, today());
        let (seq, origin) = self
            .write(&self.author(r, "pub"), &Body::EvaluationPublished(ev))
            .await?;
        self.propagate(origin, seq).await?;
        Ok(format!("{region}#{seq}"))
    }

    /// Submits, requires 201, records the acknowledgement; returns (seq, origin index).
    pub(super) async fn write(&mut self, author: &str, body: &Body) -> Result<(u64, usize)> {
        let r = self.fed.submit(author, body).await?;
        if r.status != 201 {
            bail!("{author} {:?}: {} {}", body.kind(), r.status, r.body);
        }
        let receipt: credfed_client::Receipt = serde_json::from_str(&r.body).context("receipt")?;
        let region = RegionCode::parse(&receipt.region, "region")?;
        self.acked.push((region, receipt.seq, receipt.hash));
        Ok((receipt.seq, self.fed.index(&region.to_string())?))
    }

    /// Waits until every node reachable from the origin holds `region#seq`, then records
    /// the propagation time from the nodes' own clocks: the latest moment any of them
    /// applied the envelope, minus the origin's append timestamp (all nodes share this
    /// machine's clock, so the difference is exact, unlike timing the polls).
    pub(super) async fn propagate(&mut self, origin: usize, seq: u64) -> Result<()> {
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

    /// `person_key_load`: keys made-up numbers at `region`, one per request and then in
    /// batches of 512, recording the latency and the rate.
    pub(super) async fn person_key_load(
        &mut self,
        region: &str,
        singles: u32,
        batched: u32,
    ) -> Result<String> {
        let i = self.fed.index(region)?;
        // Distinct valid numbers per run: Dongcheng district, birth days from 1950 on,
        // sequence numbers; a fresh offset per step keeps the cache out of the figures.
        let base = self.person_keys_made;
        self.person_keys_made += singles + batched;
        let number = |k: u32| -> String {
            let k = base + k;
            let (y, m, d) = credfed_protocol::time::Date::parse("1950-01-01")
                .map(|d| d.add_days(i32::try_from(k / 1000).unwrap_or(0)))
                .unwrap_or_else(|_| today())
                .ymd();
            let first17 = format!("110101{y:04}{m:02}{d:02}{:03}", k % 1000);
            let check = credfed_protocol::ids::resident_id::check_character(first17.as_bytes())
                .unwrap_or('0');
            format!("{first17}{check}")
        };
        let ask = |numbers: Vec<String>| credfed_client::PersonRefsRequest {
            persons: numbers
                .into_iter()
                .map(|number| credfed_client::PersonToHash {
                    number,
                    name: "测试".into(),
                })
                .collect(),
        };
        for k in 0..singles {
            let started = Instant::now();
            let _: credfed_client::PersonRefsAnswer = self.fed.nodes[i]
                .writer
                .post_json("/v1/persons/refs", &ask(vec![number(k)]))
                .await
                .with_context(|| format!("keying one person at {region}"))?;
            self.person_key_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let mut rate = None;
        if batched > 0 {
            let started = Instant::now();
            let mut k = singles;
            while k < singles + batched {
                let end = (k + 512).min(singles + batched);
                let answer: credfed_client::PersonRefsAnswer = self.fed.nodes[i]
                    .writer
                    .post_json("/v1/persons/refs", &ask((k..end).map(number).collect()))
                    .await
                    .with_context(|| format!("keying persons {k}..{end} at {region}"))?;
                if answer.refs.len() != (end - k) as usize {
                    bail!(
                        "{region}: {} refs for {} persons",
                        answer.refs.len(),
                        end - k
                    );
                }
                k = end;
            }
            let per_s = f64::from(batched) / started.elapsed().as_secs_f64();
            self.person_key_batch_per_s = Some(per_s);
            rate = Some(per_s);
        }
        let p = Percentiles::of(&self.person_key_ms);
        Ok(format!(
            "{singles} single keys p50 {:.1} ms p99 {:.1} ms; {batched} batched{}",
            p.p50,
            p.p99,
            rate.map(|r| format!(" at {r:.0} persons/s"))
                .unwrap_or_default()
        ))
    }
}

//! Assertions steps make, and the invariants checked after every step.

use super::*;

impl Drill {
    /// Ask the check at the given nodes, verify each answer offline and compare the measures.
    pub(super) async fn assert_check(
        &mut self,
        at: &Regions,
        request: &credfed_client::CheckRequest,
        mandatory: &[String],
        recommended: &[String],
    ) -> Result<String> {
        let mut asked = 0;
        let catalogue = Catalogue::embedded()?;
        for i in self.regions(at, None)? {
            if !self.fed.live(i) {
                continue;
            }
            // Persons and organisations alike by POST: a person's number never in a URL.
            let region = self.fed.nodes[i].region;
            let answer: CheckAnswer = self.fed.nodes[i]
                .client
                .post_json("/v1/check", request)
                .await
                .with_context(|| format!("check at {region}"))?;
            let report = verify_answer(&answer, &self.fed.manifest, &catalogue);
            for e in answer
                .entries
                .iter()
                .filter(|e| e.state == EntryState::Suspended)
            {
                if answer
                    .mandatory
                    .iter()
                    .chain(&answer.recommended)
                    .any(|m| m.source == credfed_protocol::check::MeasureSource::Entry(e.entry))
                {
                    self.violate(
                        "suspended_entry_never_applies_a_measure",
                        format!("{region}: suspended entry {} applied a measure", e.entry),
                    );
                }
            }
            self.check_applies_only_to_the_named(region, &answer);
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
        self.note(
            "no_measure_on_a_subject_the_entry_no_longer_names",
            format!("{asked} check answers compared with the entries as corrected"),
        );
        Ok(format!(
            "{asked} nodes answered as expected; evidence verified offline"
        ))
    }

    /// A node that holds an entry's latest correction applies its measures only to the
    /// subjects the corrected entry names (article 二十二: a correction takes effect
    /// everywhere; article 十四: measures reach only the persons the entry names).
    fn check_applies_only_to_the_named(&mut self, region: RegionCode, answer: &CheckAnswer) {
        for m in answer.mandatory.iter().chain(&answer.recommended) {
            let credfed_protocol::check::MeasureSource::Entry(id) = m.source else {
                continue;
            };
            let Some((named, content)) = self.entries.values().find(|(n, _)| n.id == id) else {
                continue;
            };
            let Some(corrected_seq) = self.corrected_at.get(&id) else {
                continue;
            };
            let held = answer
                .freshness
                .iter()
                .find(|f| f.region == named.region)
                .map_or(0, |f| f.head_seq);
            if held >= *corrected_seq && !content.named_keys().contains(&answer.subject) {
                self.violate(
                    "no_measure_on_a_subject_the_entry_no_longer_names",
                    format!(
                        "{region}: {} applied through entry {id} to a subject its correction ({}#{corrected_seq}) removed",
                        m.code.0, named.region
                    ),
                );
            }
        }
    }

    /// `no_split_view_witnessed`: every witnessed checkpoint a node holds verifies against
    /// the manifest (a quorum of the other members cosigned it), and no node holds one
    /// that contradicts its replica — a region that forks can get no checkpoint of the
    /// fork witnessed.
    pub(super) async fn check_witnessed_checkpoints(&mut self, live: &[usize]) {
        let regions: Vec<RegionCode> = self.fed.nodes.iter().map(|n| n.region).collect();
        let mut checked = 0;
        let mut fork_evidence = 0;
        for &i in live {
            let at = self.fed.nodes[i].region;
            for r in &regions {
                let Some(v) = self.fed.get(i, &format!("/v1/log/{r}/checkpoint")).await else {
                    continue;
                };
                if let Some(evidence) = v["split_view_evidence"].as_str() {
                    self.violate(
                        "no_split_view_witnessed",
                        format!(
                            "{at} holds a witnessed checkpoint of {r} that contradicts its replica: {}",
                            evidence.lines().take(3).collect::<Vec<_>>().join(" ")
                        ),
                    );
                }
                if let Some(note) = v["fork_evidence"].as_str() {
                    // Expected where a scenario forks a region; it must be that region's
                    // own signature, or it is no evidence at all.
                    let verdict = credfed_protocol::checkpoint::SignedCheckpoint::parse(note)
                        .map_err(|e| e.to_string())
                        .and_then(|s| {
                            credfed_protocol::witness::checkpoint_region(&s, &self.fed.manifest)
                                .map_err(|e| e.to_string())
                        });
                    match verdict {
                        Ok(signer) if signer == *r => fork_evidence += 1,
                        Ok(signer) => self.violate(
                            "no_split_view_witnessed",
                            format!("{at} holds fork evidence against {r} signed by {signer}"),
                        ),
                        Err(e) => self.violate(
                            "no_split_view_witnessed",
                            format!(
                                "{at} holds fork evidence against {r} that does not verify: {e}"
                            ),
                        ),
                    }
                }
                if let Some(note) = v["witnessed"].as_str() {
                    let verdict = credfed_protocol::checkpoint::SignedCheckpoint::parse(note)
                        .map_err(|e| e.to_string())
                        .and_then(|s| {
                            credfed_protocol::witness::verify_witnessed(&s, &self.fed.manifest)
                                .map_err(|e| e.to_string())
                        });
                    if let Err(e) = verdict {
                        self.violate(
                            "no_split_view_witnessed",
                            format!("{at} holds a checkpoint of {r} that is not witnessed: {e}"),
                        );
                    }
                    checked += 1;
                }
            }
        }
        self.note(
            "no_split_view_witnessed",
            format!(
                "{checked} witnessed checkpoints held by {} nodes verified against the manifest; no split-view evidence; {fork_evidence} verified pieces of fork evidence held",
                live.len()
            ),
        );
    }

    /// `proven_answers_verify`: with every live node converged and a quorum of members
    /// live and uncut, a proven answer for a subject no region lists, asked at a live
    /// node whose clock the drill did not skew, verifies offline against the manifest
    /// with a freshness bound of a minute: a quorum cosigned a federation checkpoint
    /// within the last minute, every region's map proves the subject absent or the
    /// region is excluded for an equivocation the scenario caused, and every region's
    /// head is under a minute old — but for regions whose clock the drill skewed (their
    /// heads carry their clock's time) and excluded ones.
    pub(super) async fn check_proven_answer(&mut self, live: &[usize]) {
        const NAME: &str = "proven_answers_verify";
        let quorum = self
            .fed
            .manifest
            .policy
            .federation_quorum(self.fed.nodes.len());
        if live.len() < quorum || !self.cuts.is_empty() {
            self.note(
                NAME,
                format!(
                    "skipped at a convergence with {} live nodes (quorum {quorum}) and {} cuts",
                    live.len(),
                    self.cuts.len()
                ),
            );
            return;
        }
        let Some(&i) = live
            .iter()
            .find(|i| !self.skewed.contains(&self.fed.nodes[**i].region))
        else {
            self.note(NAME, "skipped: every live node's clock is skewed".into());
            return;
        };
        let region = self.fed.nodes[i].region;
        let request = credfed_client::CheckRequest {
            uscc: Some(UNLISTED_USCC.into()),
            person: None,
            domain: "procurement".into(),
            proofs: true,
            manifest: false,
        };
        // A round can miss its quorum while a member is still catching up, or while an
        // equivocation's evidence is still replicating; a region back from a cut needs a
        // round to get a fresh head witnessed: ask again until the deadline.
        let catalogue = match Catalogue::parse(&self.fed.manifest.catalogue) {
            Ok(c) => c,
            Err(e) => {
                self.violate(NAME, format!("the manifest's catalogue: {e}"));
                return;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        let (proven, report, verify_us, absent, excluded) = loop {
            poll.tick().await;
            let answer = self.fed.nodes[i]
                .client
                .post_json::<credfed_protocol::federation::ProvenAnswer>("/v1/check", &request)
                .await;
            let outcome = match answer {
                Ok(proven) => {
                    let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
                    let t0 = Instant::now();
                    let report = credfed_protocol::federation::verify_proven_answer(
                        &proven,
                        &self.fed.manifest,
                        &catalogue,
                        now,
                        60,
                    );
                    let verify_us = t0.elapsed().as_micros() as u64;
                    let absent = report
                        .regions
                        .iter()
                        .filter(|r| {
                            r.standing == credfed_protocol::federation::RegionStanding::ProvenAbsent
                        })
                        .count();
                    let excluded: Vec<RegionCode> = report
                        .regions
                        .iter()
                        .filter(|r| {
                            r.standing == credfed_protocol::federation::RegionStanding::Excluded
                        })
                        .map(|r| r.region)
                        .collect();
                    let unexpected: Vec<RegionCode> = report
                        .partial_regions()
                        .into_iter()
                        .filter(|r| {
                            !self.skewed.contains(r) && !self.expected_equivocators.contains(r)
                        })
                        .collect();
                    if report.verified()
                        && absent + excluded.len() == self.fed.nodes.len()
                        && unexpected.is_empty()
                    {
                        Ok((proven, report, verify_us, absent, excluded))
                    } else {
                        let mut failures = report.failures.clone();
                        failures.extend(report.answer.failures.iter().cloned());
                        Err(format!(
                            "proven answer did not verify ({absent} regions proven absent, excluded {excluded:?}, stale or excluded unexpectedly {unexpected:?}): {}",
                            failures.join("; ")
                        ))
                    }
                }
                Err(e) => Err(format!("no proven answer: {e}")),
            };
            match outcome {
                Ok(done) => break done,
                Err(why) if Instant::now() >= deadline => {
                    self.violate(NAME, format!("{region}: within 20 s: {why}"));
                    return;
                }
                Err(_) => {}
            }
        };
        let bytes = proven.to_file().len() as u64;
        self.proven.count += 1;
        self.proven.max_file_bytes = self.proven.max_file_bytes.max(bytes);
        self.proven.max_verify_us = self.proven.max_verify_us.max(verify_us);
        self.note(
            NAME,
            format!(
                "{region}: {} regions proven absent, {} excluded, under a checkpoint cosigned by {} members {} s before, oldest region head {} s; {bytes} bytes, verified in {verify_us} µs",
                absent,
                excluded.len(),
                report.cosigners.len(),
                report.age_seconds,
                report
                    .regions
                    .iter()
                    .filter(|r| !self.skewed.contains(&r.region))
                    .filter_map(|r| r.age_seconds)
                    .max()
                    .unwrap_or(0)
            ),
        );
    }

    /// The entry is in `state` at the given nodes.
    pub(super) async fn assert_entry(
        &mut self,
        at: &Regions,
        entry: &str,
        state: &str,
    ) -> Result<String> {
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

    /// At every listed live node, waits for `/v1/status` to say person keys are
    /// (un)available, then checks a person and expects 200 or 503
    /// `person_checks_unavailable` (docs/privacy.md, "Availability").
    pub(super) async fn person_key_refresh(
        &mut self,
        label: &str,
        timeout: Duration,
    ) -> Result<String> {
        use credfed_client::{CeremonyState, CeremonyStatus};
        let n = self.fed.nodes.len();
        if let Some(i) = (0..n).find(|i| !self.fed.live(*i)) {
            bail!(
                "{} is not running: a refresh that keeps every member needs every member",
                self.fed.nodes[i].region
            );
        }
        let Some(current) = self.fed.manifest.person_key.clone() else {
            bail!("the manifest has no person key to refresh");
        };
        let started = Instant::now();
        let plan = credfed_client::CeremonyRequest {
            kind: "refresh".into(),
            label: label.into(),
            threshold: None,
            members: None,
            member: None,
        };
        for i in 0..n {
            let r = self.fed.nodes[i]
                .client
                .post("/v1/admin/person-key-ceremony", &plan)
                .await
                .with_context(|| format!("starting the refresh at {}", self.fed.nodes[i].region))?;
            if r.status != 200 {
                bail!("{}: {} {}", self.fed.nodes[i].region, r.status, r.body);
            }
        }
        let deadline = started + timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        let done: Vec<CeremonyStatus> = loop {
            poll.tick().await;
            let mut statuses = Vec::with_capacity(n);
            for i in 0..n {
                let v = self
                    .fed
                    .get(i, "/v1/admin/person-key-ceremony")
                    .await
                    .unwrap_or_default();
                let s: Option<CeremonyStatus> = serde_json::from_value(v).ok();
                statuses.push(s);
            }
            if let Some(failed) = statuses
                .iter()
                .flatten()
                .find(|s| s.state == CeremonyState::Failed)
            {
                bail!(
                    "the refresh failed at {}: {}",
                    failed.member,
                    failed.error.clone().unwrap_or_default()
                );
            }
            if statuses
                .iter()
                .all(|s| s.as_ref().is_some_and(|s| s.state == CeremonyState::Done))
            {
                break statuses.into_iter().flatten().collect();
            }
            if Instant::now() >= deadline {
                let waiting: Vec<String> = statuses
                    .iter()
                    .flatten()
                    .filter(|s| s.state != CeremonyState::Done)
                    .map(|s| {
                        format!(
                            "{} (round 1 {}/{n}, round 2 {}/{}, waiting for {:?})",
                            s.member,
                            s.round1_held,
                            s.round2_held,
                            n - 1,
                            s.waiting_for
                        )
                    })
                    .collect();
                bail!(
                    "the refresh did not end within {timeout:?}: {}",
                    waiting.join("; ")
                );
            }
        };
        let ms = started.elapsed().as_millis();
        let new = done[0]
            .person_key
            .clone()
            .context("a finished refresh without public shares")?;
        for s in &done[1..] {
            if s.person_key.as_ref() != Some(&new) {
                bail!(
                    "{} ended with other public shares than {}",
                    s.member,
                    done[0].member
                );
            }
        }
        let value = |p: &credfed_protocol::manifest::PersonKeyShares| {
            credfed_protocol::oprf::keygen::public_value(&p.policy())
                .map_err(|e| anyhow::anyhow!(e.to_string()))
        };
        if value(&new)? != value(&current)? {
            bail!("the refresh changed the person key (its public value differs)");
        }
        for s in &done {
            let listed = new
                .of_region(s.member)
                .with_context(|| format!("{} is not in the refreshed shares", s.member))?;
            let file = s
                .share_file
                .as_ref()
                .with_context(|| format!("{} wrote no share", s.member))?;
            let share = credfed_protocol::oprf::ShareKey::from_file_text(
                &std::fs::read_to_string(file).with_context(|| file.display().to_string())?,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if share.public() != listed.public_share {
                bail!("{}'s new share is not the one the shares list", s.member);
            }
            let old = current
                .of_region(s.member)
                .context("a member without a share before the refresh")?;
            if old.public_share == listed.public_share {
                bail!("{}'s public share did not change", s.member);
            }
        }
        self.person_key_refresh_ms = Some(ms as u64);
        Ok(format!(
            "{n} members refreshed their person-key shares in {ms} ms over their connections: every share changed, the key did not"
        ))
    }

    pub(super) async fn assert_person_keys(
        &mut self,
        at: &Regions,
        available: bool,
        timeout: Duration,
    ) -> Result<String> {
        let mut seen = Vec::new();
        for i in self.regions(at, None)? {
            if !self.fed.live(i) {
                continue;
            }
            let region = self.fed.nodes[i].region;
            let deadline = Instant::now() + timeout;
            let mut poll = tokio::time::interval(Duration::from_millis(200));
            let status = loop {
                poll.tick().await;
                let status = self.fed.get(i, "/v1/status").await.unwrap_or_default();
                let keys = status["person_keys"].clone();
                if keys["available"] == json!(available) {
                    break keys;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{region}: person keys still {} after {timeout:?} (status: {keys})",
                        if available {
                            "unavailable"
                        } else {
                            "available"
                        }
                    );
                }
            };
            // A number no scenario names: the answer is "clear" when keys are available.
            let request = credfed_client::CheckRequest {
                proofs: false,
                manifest: false,
                uscc: None,
                person: Some("110101194912310016".into()),
                domain: "travel".into(),
            };
            let r = self.fed.nodes[i]
                .client
                .post("/v1/check", &request)
                .await
                .with_context(|| format!("person check at {region}"))?;
            let code = r
                .json()
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned));
            match (available, r.status, code.as_deref()) {
                (true, 200, _) | (false, 503, Some("person_checks_unavailable")) => {}
                _ => bail!(
                    "{region}: a person check answered {} {}, expected {}",
                    r.status,
                    r.body,
                    if available {
                        "200"
                    } else {
                        "503 person_checks_unavailable"
                    }
                ),
            }
            seen.push(format!(
                "{region} {}/{} reachable",
                status["reachable"], status["threshold"]
            ));
        }
        Ok(format!(
            "person checks {} at {}",
            if available { "answered" } else { "unavailable" },
            seen.join(", ")
        ))
    }

    /// Every listed live node's check of the commitment's subject in licensing shows it in
    /// `state` (`none`: not shown), within 20 s (a node may still be receiving it).
    pub(super) async fn assert_commitment(
        &mut self,
        at: &Regions,
        commitment: &str,
        state: &str,
    ) -> Result<String> {
        if !["overdue", "breached", "none"].contains(&state) {
            bail!("assert_commitment.state: '{state}' is not overdue, breached or none");
        }
        let (named, uscc) = self.commitments.get(commitment).with_context(|| {
            format!("assert_commitment.commitment: no commitment named {commitment}")
        })?;
        let (id, uscc) = (named.id.to_string(), uscc.clone());
        let path = format!("/v1/check?uscc={uscc}&domain=licensing");
        let mut n = 0;
        for i in self.regions(at, None)? {
            if !self.fed.live(i) {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut poll = tokio::time::interval(Duration::from_millis(200));
            loop {
                poll.tick().await;
                let v = self
                    .fed
                    .get(i, &path)
                    .await
                    .with_context(|| format!("check at {}", self.fed.nodes[i].region))?;
                let shown = v["commitments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["id"] == json!(id))
                    .map(|c| c["state"].as_str().unwrap_or("").to_owned());
                if shown.as_deref().unwrap_or("none") == state {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{}: the check shows commitment {commitment} as {}, expected {state}",
                        self.fed.nodes[i].region,
                        shown.as_deref().unwrap_or("none")
                    );
                }
            }
            n += 1;
        }
        Ok(format!("{state} in the checks of {n} nodes"))
    }

    /// Every listed live node holds the disclosure and judges it `late` (or in time).
    pub(super) async fn assert_disclosure(
        &mut self,
        at: &Regions,
        disclosure: &str,
        late: bool,
    ) -> Result<String> {
        let id = self
            .disclosures
            .get(disclosure)
            .with_context(|| {
                format!("assert_disclosure.disclosure: no disclosure named {disclosure}")
            })?
            .id;
        let mut n = 0;
        for i in self.regions(at, None)? {
            if !self.fed.live(i) {
                continue;
            }
            let v = self
                .fed
                .get(i, &format!("/v1/disclosures/{id}"))
                .await
                .with_context(|| format!("disclosure at {}", self.fed.nodes[i].region))?;
            if v["late"] != json!(late) {
                bail!(
                    "{}: disclosure {disclosure} judged late = {}, expected {late} (due {})",
                    self.fed.nodes[i].region,
                    v["late"],
                    v["due"]
                );
            }
            n += 1;
        }
        Ok(format!(
            "{} at {n} nodes",
            if late { "late" } else { "in time" }
        ))
    }

    /// The region's inbox holds (or, `absent`, does not hold) a task of `kind` about the
    /// entry or action named `about`.
    pub(super) async fn assert_inbox(
        &mut self,
        region: &str,
        kind: &str,
        about: &str,
        absent: bool,
    ) -> Result<String> {
        let id = match (self.actions.get(about), self.commitments.get(about)) {
            (Some((named, _)), _) => named.id.to_string(),
            (None, Some((named, _))) => named.id.to_string(),
            (None, None) => self
                .entry_named(about)
                .with_context(|| format!("assert_inbox.about: no entry or action named {about}"))?
                .0
                .id
                .to_string(),
        };
        let i = self.fed.index(region)?;
        let v = self
            .fed
            .get(i, &format!("/v1/inbox?kind={kind}&limit=1000"))
            .await
            .with_context(|| format!("inbox of {region}"))?;
        let found = v["tasks"].as_array().into_iter().flatten().any(|t| {
            t["about"]
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|x| x.as_str())
                == Some(id.as_str())
        });
        match (found, absent) {
            (true, false) => Ok(format!("{region} must {kind} {about}")),
            (false, true) => Ok(format!("{region} has no {kind} task about {about}")),
            (false, false) => bail!("{region}'s inbox has no {kind} task about {about}: {v}"),
            (true, true) => bail!("{region}'s inbox still has a {kind} task about {about}"),
        }
    }

    /// Every node shows the action's target lines in `status` (and the measure executed).
    pub(super) async fn assert_action(
        &mut self,
        at: &Regions,
        action: &str,
        regions: &Regions,
        status: &str,
        executed: &Option<String>,
    ) -> Result<String> {
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

    /// Every invariant held so far.
    pub(super) async fn assert_invariants(&mut self) -> Result<String> {
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
    pub(super) async fn check_step_invariants(&mut self, index: usize, step: &Step) -> Vec<String> {
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
    pub(super) async fn check_suspended_entries(&mut self, index: usize, live: &[usize]) {
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
                            .any(|m| m.source == credfed_protocol::check::MeasureSource::Entry(id))
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

    /// Every acknowledged record is at its position, with its hash, at a live node whose
    /// heads every live node shares (hash-linked chains: same head ⇒ same log).
    pub(super) async fn check_acknowledged(
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

    pub(super) async fn check_equivocation(&mut self) {
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
}

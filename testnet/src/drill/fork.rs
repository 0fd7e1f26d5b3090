//! A member that forks its log across a partition: it runs a second copy of its node
//! (its *twin*, from a copy of its store, with its own address) on the other side, and
//! each copy writes a different record at the same position. What the federation must
//! hold meanwhile: no two proven answers that contradict each other both verify
//! (`no_contradicting_proven_answers`); and after the partition heals, with the fork
//! sitting quietly at the tip of both copies, every honest node flags the member
//! within seconds (docs/testnet.md, scenario 9).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credfed_client::ApiClient;
use credfed_client::node_config::NodeConfig;
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::federation::{ProvenAnswer, verify_proven_answer};
use credfed_protocol::record::{Body, ListEntry};
use serde_json::json;

use super::{Drill, bodies, now_ms, today};
use crate::fed::{FEDERATION_ID, NodeHandle, node_bin};

/// The company the member's own node lists during the split.
const LISTED_BY_THE_ORIGINAL: &str = "91650000100000001Y";
/// The company its twin lists at the same position on the other side.
const LISTED_BY_THE_TWIN: &str = "916500001000000022";

/// A second running copy of a region's node; killed when dropped (a step that fails
/// midway leaves no process behind).
pub(super) struct Twin {
    /// Index of the node it copies.
    pub(super) of: usize,
    /// Its handle (data directory, API client, process).
    pub(super) handle: NodeHandle,
    /// Whether its process runs.
    pub(super) running: bool,
}

impl Drop for Twin {
    fn drop(&mut self) {
        if let Some(mut c) = self.handle.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Goal for flagging a quiet fork everywhere after the links heal (docs/testnet.md).
const FLAGGED_WITHIN: Duration = Duration::from_secs(5);

impl Drill {
    /// The step `fork_across_partition`: see the module documentation.
    pub(super) async fn fork_across_partition(
        &mut self,
        region: &str,
        side: &[String],
        watch_ms: u64,
    ) -> Result<String> {
        let i = self.fed.index(region)?;
        let r = self.fed.nodes[i].region;
        let n = self.fed.nodes.len();
        let twin_side: BTreeSet<usize> = side
            .iter()
            .map(|x| self.fed.index(x))
            .collect::<Result<_>>()?;
        if twin_side.contains(&i) {
            bail!("fork_across_partition.side: {region} itself cannot be on its twin's side");
        }
        self.twin = Some(self.make_twin(i)?);
        self.wait_started(i).await?;
        // The partition: the twin (index n) with `side`, the original with the rest.
        let original_side: BTreeSet<usize> = (0..n).filter(|j| !twin_side.contains(j)).collect();
        let with_twin: BTreeSet<usize> = twin_side.iter().copied().chain([n]).collect();
        self.cuts = original_side
            .iter()
            .flat_map(|&a| with_twin.iter().flat_map(move |&b| [(a, b), (b, a)]))
            .collect();
        self.apply_faults().await?;
        self.start_twin().await?;
        self.apply_faults().await?;
        let twin_client = self.twin_client()?;
        wait_writes_open(&twin_client, Duration::from_secs(60))
            .await
            .context("the twin never opened for writes (it needs a peer on its side)")?;
        // One record at the same position on each side.
        let original_seq = self
            .write_fork_record(&self.fed.nodes[i].writer, r, LISTED_BY_THE_ORIGINAL)
            .await?;
        let twin_seq = self
            .write_fork_record(&twin_client, r, LISTED_BY_THE_TWIN)
            .await?;
        if original_seq != twin_seq {
            bail!("the copies wrote at #{original_seq} and #{twin_seq}, not at one position");
        }
        self.expected_equivocators.insert(r);
        self.last_fault = Some((format!("fork {region} across a partition"), Instant::now()));
        // Proven answers about both companies, from every node and the twin, verified.
        let watched = self.watch_proven_answers(watch_ms).await?;
        // Heal: the twin goes, the fork stays at the tip of both copies.
        if let Some(t) = self.twin.as_mut() {
            if let Some(mut c) = t.handle.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            t.running = false;
        }
        self.cuts.clear();
        self.apply_faults().await?;
        self.twin = None;
        let healed = Instant::now();
        self.last_fault = Some(("heal".into(), healed));
        let flagged = self.wait_flagged(r, healed).await;
        Ok(format!(
            "{region} and its twin wrote at #{original_seq}; {watched}; {flagged}"
        ))
    }

    /// Makes the twin of node `i`: a fresh data directory (`credfed-node init`, its own
    /// address and TLS certificates) holding node `i`'s key, manifest and a copy of its
    /// store, taken while node `i` is stopped; node `i` is restarted.
    fn make_twin(&mut self, i: usize) -> Result<Twin> {
        // The twin is the same member: it holds the region's person-key share too.
        fn original_share(dir: &std::path::Path) -> std::path::PathBuf {
            dir.join("person-share.key")
        }
        let n = self.fed.nodes.len();
        let region = self.fed.nodes[i].region;
        let dir = self.fed.dir.join(format!("{region}-twin"));
        let _ = std::fs::remove_dir_all(&dir);
        let (ip, p2p) = match &self.fed.lab {
            Some(lab) => (lab.node_ip(n), self.fed.nodes[i].p2p_port),
            None => (
                std::net::Ipv4Addr::LOCALHOST,
                crate::procs::free_range(self.fed.nodes[i].p2p_port + 1000, 2)?,
            ),
        };
        let api = p2p + 1;
        crate::fed::init_node_dir(
            &node_bin()?,
            region,
            &dir,
            (ip, p2p, api, None),
            &self.fed.authority.public().to_hex(),
            Some(&original_share(&self.fed.nodes[i].dir)),
        )
        .context("making the twin's data directory")?;
        let original = self.fed.nodes[i].dir.clone();
        let original_cfg = NodeConfig::load(&original.join("config.toml"))?;
        let mut cfg = NodeConfig::load(&dir.join("config.toml"))?;
        cfg.heads_interval_ms = original_cfg.heads_interval_ms;
        cfg.redial_interval_ms = original_cfg.redial_interval_ms;
        cfg.liveness_timeout_ms = original_cfg.liveness_timeout_ms;
        cfg.worker_threads = original_cfg.worker_threads;
        cfg.witness_round_gap_ms = original_cfg.witness_round_gap_ms;
        cfg.drill_faults = true;
        cfg.save(&dir.join("config.toml"))?;
        // The store is copied while its node is stopped (a running store is not a
        // consistent copy); the node key and manifest are the region's.
        if self.fed.nodes[i].child.is_some() {
            self.fed.signal(i, "-TERM")?;
            if let Some(mut c) = self.fed.nodes[i].child.take() {
                c.wait()?;
            }
        }
        copy_dir(&original.join("store"), &dir.join("store"))?;
        std::fs::copy(original.join("node.key"), dir.join("node.key"))?;
        std::fs::copy(original.join("manifest.json"), dir.join("manifest.json"))?;
        self.fed.start(i, false)?;
        let op = dir.join("operator");
        let client = ApiClient::with_identity(
            &format!("{ip}:{api}"),
            &dir.join("api-ca.pem"),
            &op.join(format!("{region}-operator.pem")),
            &op.join(format!("{region}-operator.key")),
        )?
        .with_timeout(Duration::from_secs(5));
        let writer = client.clone().with_timeout(Duration::from_secs(30));
        Ok(Twin {
            of: i,
            handle: NodeHandle {
                region,
                dir,
                api: format!("{ip}:{api}"),
                p2p_port: p2p,
                node_key: credfed_protocol::crypto::Keypair::from_secret(
                    self.fed.nodes[i].node_key.secret_bytes(),
                ),
                operator_key: credfed_protocol::crypto::Keypair::from_secret(
                    self.fed.nodes[i].operator_key.secret_bytes(),
                ),
                client,
                writer,
                child: None,
                paused: false,
            },
            running: false,
        })
    }

    async fn start_twin(&mut self) -> Result<()> {
        let n = self.fed.nodes.len();
        let lab = self.fed.lab.clone();
        let t = self.twin.as_mut().context("no twin")?;
        let log = std::fs::File::create(t.handle.dir.join("node.log"))?;
        let bin = node_bin()?;
        let mut cmd = match &lab {
            Some(lab) => lab.command(n, &bin),
            None => Command::new(bin),
        };
        cmd.args(["run", "--config"])
            .arg(t.handle.dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .stdin(Stdio::null());
        // Like every drill node, the twin must not outlive the drill, however the drill
        // ends (a failed step, SIGKILL): the kernel kills it when the drill dies.
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        t.handle.child = Some(cmd.spawn().context("starting the twin")?);
        t.running = true;
        let client = t.handle.client.clone();
        let end = Instant::now() + Duration::from_secs(60);
        while !client
            .get("/v1/status")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            if Instant::now() > end {
                bail!("the twin did not answer within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    fn twin_client(&self) -> Result<ApiClient> {
        Ok(self.twin.as_ref().context("no twin")?.handle.writer.clone())
    }

    /// A black-list entry of `region` naming `uscc`, written through `client`; its seq.
    async fn write_fork_record(
        &self,
        client: &ApiClient,
        region: credfed_protocol::ids::RegionCode,
        uscc: &str,
    ) -> Result<u64> {
        let spec = bodies::EntrySpec {
            list: "black".into(),
            category: None,
            uscc: uscc.into(),
            person: None,
            related: vec![],
            findings: vec![],
            measures: vec!["P-PROCUREMENT".into()],
            expires_in_days: None,
        };
        let entry: ListEntry =
            bodies::drill_entry(region, &format!("fork-{uscc}"), &spec, 9000, today())?;
        let author = format!("{region}:pub");
        let record = credfed_client::SubmitRecord::sign(
            FEDERATION_ID,
            &credfed_protocol::ids::DepartmentId::parse(&author, "author")?,
            &self.fed.dept_key(&author),
            &Body::ListEntryPublished(entry),
        );
        let r = client.post("/v1/records", &record).await?;
        if r.status != 201 {
            bail!("fork record at {region}: {} {}", r.status, r.body);
        }
        let v: serde_json::Value = serde_json::from_str(&r.body)?;
        v["seq"].as_u64().context("a receipt without seq")
    }

    /// Asks every live node and the twin, every half second for `watch_ms`, for proven
    /// answers about both forked companies and verifies each offline: per company, all
    /// verified answers must agree, and none may show a listing no quorum witnessed.
    async fn watch_proven_answers(&mut self, watch_ms: u64) -> Result<String> {
        const NAME: &str = "no_contradicting_proven_answers";
        let catalogue = Catalogue::parse(&self.fed.manifest.catalogue)?;
        let mut clients: Vec<(String, ApiClient)> = (0..self.fed.nodes.len())
            .filter(|&i| self.fed.live(i))
            .map(|i| {
                (
                    self.fed.nodes[i].region.to_string(),
                    self.fed.nodes[i].client.clone(),
                )
            })
            .collect();
        if let Some(t) = &self.twin {
            clients.push((
                format!("{} (twin)", t.handle.region),
                t.handle.client.clone(),
            ));
        }
        let mut verdicts: BTreeMap<&str, BTreeMap<&'static str, usize>> = BTreeMap::new();
        let (mut asked, mut answered) = (0usize, 0usize);
        let end = Instant::now() + Duration::from_millis(watch_ms);
        while Instant::now() < end {
            let round = futures::future::join_all(clients.iter().flat_map(|(who, c)| {
                [LISTED_BY_THE_ORIGINAL, LISTED_BY_THE_TWIN].map(|uscc| async move {
                    let request = credfed_client::CheckRequest {
                        uscc: Some(uscc.into()),
                        person: None,
                        domain: "procurement".into(),
                        proofs: true,
                        manifest: false,
                    };
                    (
                        who.clone(),
                        uscc,
                        c.post_json::<ProvenAnswer>("/v1/check", &request)
                            .await
                            .ok(),
                    )
                })
            }))
            .await;
            let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
            for (_, uscc, answer) in round {
                asked += 1;
                let Some(p) = answer else {
                    continue;
                };
                answered += 1;
                let report = verify_proven_answer(&p, &self.fed.manifest, &catalogue, now, 3600);
                if report.verified()
                    && let Some(v) = report.verdict
                {
                    *verdicts
                        .entry(uscc)
                        .or_default()
                        .entry(credfed_protocol::check::verdict_name(v))
                        .or_default() += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for (uscc, v) in &verdicts {
            if v.len() > 1 {
                self.violate(
                    NAME,
                    format!(
                        "{uscc}: contradicting proven answers both verified during the split: {v:?}"
                    ),
                );
            }
            if v.contains_key("measures_apply") {
                self.violate(
                    NAME,
                    format!("{uscc}: a listing no quorum witnessed was proven: {v:?}"),
                );
            }
        }
        let summary = format!(
            "{asked} proven answers asked for during the split, {answered} given, verified by verdict: {verdicts:?}"
        );
        self.note(NAME, summary.clone());
        Ok(summary)
    }

    /// Waits until every live node but the forked member's flags it; says how long after
    /// the heal that took, against [`FLAGGED_WITHIN`].
    async fn wait_flagged(
        &mut self,
        r: credfed_protocol::ids::RegionCode,
        healed: Instant,
    ) -> String {
        let honest: Vec<usize> = (0..self.fed.nodes.len())
            .filter(|&j| self.fed.live(j) && self.fed.nodes[j].region != r)
            .collect();
        let end = healed + Duration::from_secs(60);
        let mut pending: BTreeSet<usize> = honest.iter().copied().collect();
        while !pending.is_empty() && Instant::now() < end {
            let fed = &self.fed;
            let checks = futures::future::join_all(pending.iter().map(|&j| async move {
                let flagged = fed.get(j, "/v1/status").await.is_some_and(|s| {
                    s["equivocating_regions"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!(r.to_string())))
                });
                (j, flagged)
            }))
            .await;
            for (j, flagged) in checks {
                if flagged {
                    pending.remove(&j);
                }
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let took = healed.elapsed();
        self.fork_flagged_ms = Some(took.as_millis() as u64);
        if !pending.is_empty() {
            self.violate(
                "equivocation_detected_by_every_honest_node",
                format!(
                    "{} nodes never flagged {r} within 60 s of the heal",
                    pending.len()
                ),
            );
            return format!("{} nodes never flagged {r}", pending.len());
        }
        let text = format!(
            "the quiet fork flagged by all {} honest nodes {} ms after the heal (goal ≤ {} ms)",
            honest.len(),
            took.as_millis(),
            FLAGGED_WITHIN.as_millis()
        );
        if took > FLAGGED_WITHIN {
            self.violate("equivocation_detected_by_every_honest_node", text.clone());
        } else {
            self.note("equivocation_detected_by_every_honest_node", text.clone());
        }
        text
    }
}

async fn wait_writes_open(client: &ApiClient, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get("/v1/status").await
            && r.json().is_ok_and(|v| v["writes_open"] == json!(true))
        {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("writes not open within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn copy_dir(src: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

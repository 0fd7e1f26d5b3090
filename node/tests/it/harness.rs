//! A federation of real `credfed-node` processes on loopback, for tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credfed_client::{ApiClient, ApiResponse};
use std::sync::Arc;

use credfed_node::config::NodeConfig;
use credfed_node::daemon::RunningNode;
use credfed_node::store::Store;
use credfed_node::store::faulty::{Faults, FaultyStore};
use credfed_protocol::crypto::{Keypair, sha256};
use credfed_protocol::envelope::sign_body;
use credfed_protocol::ids::{DepartmentId, RegionCode, Role};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::{
    Basis, BlackCategory, Body, Category, ListEntry, MeasureCode, Subject,
};
use credfed_protocol::time::Timestamp;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_credfed-node");

/// A black-list entry for malicious wage arrears against one company, under document
/// number `doc` (what the engine and replication tests publish).
pub fn wage_arrears_entry(doc: &str) -> ListEntry {
    let d = |s: &str| credfed_protocol::time::Date::parse(s).unwrap();
    ListEntry {
        category: Category::Black(BlackCategory::MaliciousWageArrears),
        subject: Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: "某某建筑劳务有限公司".into(),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: Basis {
            document_no: doc.into(),
            authority: "人力资源社会保障局".into(),
            decided_on: d("2026-01-05"),
            legal_basis: "《保障农民工工资支付条例》第四十八条".into(),
        },
        effective_from: d("2026-01-05"),
        expires_on: d("2029-01-05"),
        requested_measures: vec![MeasureCode("P-PROCUREMENT".into())],
        findings: vec![],
        summary: String::new(),
    }
}

pub fn key(label: &str) -> Keypair {
    Keypair::from_secret(sha256(&[b"it-key", label.as_bytes()]).0)
}

/// A port free for TCP and UDP that this test process has never handed out before: a
/// stopped node must find its port free again when it restarts, so ports are never
/// recycled among the tests running in parallel in this binary.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
}

pub struct Node {
    pub region: RegionCode,
    pub api: String,
    pub dir: PathBuf,
    pub p2p_port: u16,
    pub node_key: Keypair,
    /// The region's operator key (`init` wrote it to `operator/`): registers departments.
    pub operator_key: Keypair,
    pub child: Option<Child>,
    pub client: ApiClient,
}

pub struct Cluster {
    _tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub manifest: Manifest,
}

pub const FED: &str = "cn-credit-it";

/// Units registered in every region, with roles.
pub const UNITS: &[(&str, &[Role])] = &[
    ("pub", &[Role::Publisher]),
    ("init", &[Role::Initiator]),
    ("impl", &[Role::Implementer]),
    ("obj", &[Role::ObjectionHandler]),
];

impl Cluster {
    /// Creates data directories and a signed manifest for `regions` (not started).
    pub fn new(regions: &[u32]) -> Cluster {
        Self::with_extra(regions, &[]).0
    }

    /// Also creates nodes for `outsiders`, which are NOT in the manifest (they get their
    /// own manifest naming themselves and the first member).
    pub fn with_extra(regions: &[u32], outsiders: &[u32]) -> (Cluster, Vec<Node>) {
        Self::with_options(regions, outsiders, false)
    }

    /// With `quic`, the manifest gives members only QUIC addresses, so every connection
    /// runs over QUIC.
    pub fn with_options(regions: &[u32], outsiders: &[u32], quic: bool) -> (Cluster, Vec<Node>) {
        let tmp = tempfile::tempdir().unwrap();
        let authority = key("authority");
        // The members' person key, made by the key generation's rounds run here for
        // every member (one machine holds every node's keys in a test anyway).
        let member_regions: Vec<RegionCode> = regions
            .iter()
            .map(|&c| RegionCode::new(c, "r").unwrap())
            .collect();
        let mut sorted_regions = member_regions.clone();
        sorted_regions.sort();
        let (person_shares, person_key) = credfed_protocol::oprf::keygen::ceremony_in_one_process(
            &sorted_regions,
            credfed_protocol::oprf::keygen::majority(sorted_regions.len()),
            credfed_protocol::manifest::DEFAULT_PERSON_EVALUATIONS_PER_DAY,
            credfed_protocol::manifest::DEFAULT_PERSON_EVALUATION_BURST,
            &mut credfed_client::keys::SystemRng,
        )
        .unwrap();
        let share_of = |code: u32| -> Option<PathBuf> {
            let region = RegionCode::new(code, "r").unwrap();
            let i = sorted_regions.iter().position(|r| *r == region)?;
            let path = tmp.path().join(format!("{code}.share"));
            std::fs::write(&path, person_shares[i].to_file_text()).unwrap();
            Some(path)
        };
        let make = |code: u32| -> Node {
            let region = RegionCode::new(code, "r").unwrap();
            let dir = tmp.path().join(code.to_string());
            let (p2p_port, api_port) = (free_port(), free_port());
            let out = Command::new(BIN)
                .args([
                    "init",
                    "--region",
                    &code.to_string(),
                    "--data-dir",
                    dir.to_str().unwrap(),
                    "--p2p-port",
                    &p2p_port.to_string(),
                    "--api-port",
                    &api_port.to_string(),
                    "--output",
                    "json",
                ])
                .args(["--authority-key", &authority.public().to_hex()])
                .args(
                    share_of(code)
                        .map(|p| vec!["--person-share".to_string(), p.display().to_string()])
                        .unwrap_or_default(),
                )
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let node_key = credfed_node::config::read_key(&dir.join("node.key")).unwrap();
            let operator_key =
                credfed_node::config::read_key(&dir.join(credfed_node::config::OPERATOR_KEY_FILE))
                    .unwrap();
            let api = format!("127.0.0.1:{api_port}");
            let op = dir.join("operator");
            let client = ApiClient::with_identity(
                &api,
                &dir.join("api-ca.pem"),
                &op.join(format!("{code}-operator.pem")),
                &op.join(format!("{code}-operator.key")),
            )
            .unwrap();
            // Fast anti-entropy for tests.
            let cfg_path = dir.join("config.toml");
            let mut cfg = NodeConfig::load(&cfg_path).unwrap();
            cfg.heads_interval_ms = 500;
            cfg.redial_interval_ms = 500;
            cfg.save(&cfg_path).unwrap();
            Node {
                region,
                dir,
                api,
                p2p_port,
                node_key,
                operator_key,
                child: None,
                client,
            }
        };
        let nodes: Vec<Node> = regions.iter().map(|&c| make(c)).collect();
        let extra: Vec<Node> = outsiders.iter().map(|&c| make(c)).collect();
        let manifest_for = |ns: &[&Node]| {
            let members: Vec<Member> = ns
                .iter()
                .map(|n| {
                    let address = if quic {
                        format!("/ip4/127.0.0.1/udp/{}/quic-v1", n.p2p_port)
                    } else {
                        format!("/ip4/127.0.0.1/tcp/{}", n.p2p_port)
                    };
                    Member::for_province(
                        n.region,
                        n.node_key.public(),
                        n.operator_key.public(),
                        vec![address],
                    )
                })
                .collect();
            let mut m = Manifest::for_build(
                FED,
                1,
                Timestamp(0),
                Timestamp(i64::MAX / 2),
                authority.public(),
                members,
            );
            // The person key is the members' (outsiders' manifests have none).
            if ns.len() == regions.len() && ns.iter().all(|n| member_regions.contains(&n.region)) {
                m.person_key = Some(person_key.clone());
            }
            m
        };
        let manifest = manifest_for(&nodes.iter().collect::<Vec<_>>());
        let signed = manifest.sign(&authority).unwrap();
        for n in &nodes {
            std::fs::write(
                n.dir.join("manifest.json"),
                serde_json::to_string(&signed).unwrap(),
            )
            .unwrap();
        }
        for x in &extra {
            // The intruder's own manifest names itself and the first member, signed by
            // the same authority key it was given — but the members' manifest omits it.
            let m = manifest_for(&[x, &nodes[0]]);
            std::fs::write(
                x.dir.join("manifest.json"),
                serde_json::to_string(&m.sign(&authority).unwrap()).unwrap(),
            )
            .unwrap();
        }
        (
            Cluster {
                _tmp: tmp,
                nodes,
                manifest,
            },
            extra,
        )
    }

    pub fn start(&mut self, i: usize) {
        start_node(&mut self.nodes[i]);
    }

    /// Node `i`'s configuration (tests change it before starting the node).
    pub fn config(&self, i: usize) -> NodeConfig {
        NodeConfig::load(&self.nodes[i].dir.join("config.toml")).unwrap()
    }

    pub fn save_config(&self, i: usize, cfg: &NodeConfig) {
        cfg.save(&self.nodes[i].dir.join("config.toml")).unwrap();
    }

    /// Starts node `i` inside this test process over its own store wrapped in a
    /// [`FaultyStore`], so that the test can make its disk fail or stall.
    pub async fn start_faulty(&mut self, i: usize) -> (RunningNode, Arc<Faults>) {
        let cfg = self.config(i);
        let store = Store::open(&cfg.data_dir.join("store")).unwrap();
        let (faulty, faults) = FaultyStore::wrap(Box::new(store));
        let node = credfed_node::daemon::start_with(&cfg, Some(Box::new(faulty)))
            .await
            .unwrap();
        (node, faults)
    }

    /// A second instance of node `i`'s region: node `i` is stopped, its data directory
    /// copied (store, keys, certificates) to a new one with its own ports, and node `i`
    /// restarted. The twin is not started. What a region does when it runs two copies of
    /// its node, one on each side of a partition, to fork its log.
    pub fn twin(&mut self, i: usize) -> Node {
        self.stop(i);
        let src = self.nodes[i].dir.clone();
        let dst = src.with_file_name(format!(
            "{}-twin",
            src.file_name().unwrap().to_string_lossy()
        ));
        copy_dir(&src, &dst);
        let _ = std::fs::remove_file(dst.join("node.log"));
        let (p2p_port, api_port) = (free_port(), free_port());
        let cfg_path = dst.join("config.toml");
        let mut cfg = NodeConfig::load(&cfg_path).unwrap();
        let old = self.nodes[i].p2p_port.to_string();
        cfg.data_dir = dst.clone();
        cfg.p2p_listen = cfg
            .p2p_listen
            .iter()
            .map(|a| a.replace(&old, &p2p_port.to_string()))
            .collect();
        cfg.api_listen = format!("127.0.0.1:{api_port}");
        cfg.save(&cfg_path).unwrap();
        self.start(i);
        let code = self.nodes[i].region.code();
        let api = format!("127.0.0.1:{api_port}");
        let op = dst.join("operator");
        let client = ApiClient::with_identity(
            &api,
            &dst.join("api-ca.pem"),
            &op.join(format!("{code}-operator.pem")),
            &op.join(format!("{code}-operator.key")),
        )
        .unwrap();
        Node {
            region: self.nodes[i].region,
            api,
            dir: dst,
            p2p_port,
            node_key: Keypair::from_secret(self.nodes[i].node_key.secret_bytes()),
            operator_key: Keypair::from_secret(self.nodes[i].operator_key.secret_bytes()),
            child: None,
            client,
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self, i: usize) {
        stop_node(&mut self.nodes[i], false);
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self, i: usize) {
        stop_node(&mut self.nodes[i], true);
    }

    pub async fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_writable(i).await;
        }
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        self.nodes[i]
            .client
            .get("/v1/status")
            .await
            .ok()
            .and_then(|r| r.json().ok())
    }

    pub async fn wait_writable(&self, i: usize) {
        let ok = wait_until(Duration::from_secs(60), || async {
            self.status(i)
                .await
                .is_some_and(|s| s["writes_open"] == json!(true))
        })
        .await;
        assert!(
            ok,
            "node {} never opened writes; log:\n{}",
            self.nodes[i].region,
            self.log(i)
        );
    }

    pub fn log(&self, i: usize) -> String {
        let s = std::fs::read_to_string(self.nodes[i].dir.join("node.log")).unwrap_or_default();
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Registers the standard departments of node `i` (operator-authored records).
    pub async fn register_departments(&self, i: usize) {
        let n = &self.nodes[i];
        for (unit, roles) in UNITS {
            let d = DepartmentId::new(n.region, unit, "d").unwrap();
            let body = Body::DepartmentRegistered {
                department: d.clone(),
                name: format!("{d}"),
                roles: roles.to_vec(),
                key: key(&format!("dept-{d}")).public(),
            };
            let r = self
                .submit_signed(i, &format!("{}:operator", n.region), &n.operator_key, &body)
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
        }
    }

    /// Submits `body` authored by department `author` (its test key).
    pub async fn submit(&self, i: usize, author: &str, body: &Body) -> ApiResponse {
        self.submit_signed(i, author, &key(&format!("dept-{author}")), body)
            .await
    }

    pub async fn submit_signed(
        &self,
        i: usize,
        author: &str,
        signer: &Keypair,
        body: &Body,
    ) -> ApiResponse {
        let (bytes, sig) = sign_body(FED, signer, body);
        let req = json!({"author": author, "body": hex::encode(bytes), "signature": sig.to_hex()});
        self.nodes[i]
            .client
            .post("/v1/records", &req)
            .await
            .unwrap()
    }

    pub async fn head(&self, i: usize, region: u32) -> u64 {
        match self.nodes[i].client.get("/v1/heads").await {
            Ok(r) => r
                .json()
                .ok()
                .and_then(|v| v[region.to_string()]["seq"].as_u64())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    pub async fn metric(&self, i: usize, name: &str) -> u64 {
        let Ok(r) = self.nodes[i].client.get("/metrics").await else {
            return 0;
        };
        r.body
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Runs `credfed-node ARGS --config CONFIG` and returns what it did.
pub fn node_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// Issues a client certificate for `department` with the node's CLI; returns a client using it.
pub fn department_client(n: &Node, department: &str) -> ApiClient {
    let out = n.dir.join("certs");
    let st = Command::new(BIN)
        .args([
            "issue-client-cert",
            "--config",
            n.dir.join("config.toml").to_str().unwrap(),
            "--department",
            department,
            "--out",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let stem = department.replace(':', "-");
    ApiClient::with_identity(
        &n.api,
        &n.dir.join("api-ca.pem"),
        &out.join(format!("{stem}.pem")),
        &out.join(format!("{stem}.key")),
    )
    .unwrap()
}

/// Copies a directory tree (regular files and directories).
pub fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

pub fn start_node(n: &mut Node) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(n.dir.join("node.log"))
        .unwrap();
    let child = Command::new(BIN)
        .args([
            "run",
            "--config",
            n.dir.join("config.toml").to_str().unwrap(),
        ])
        .env("RUST_LOG", "info,libp2p_gossipsub=warn,libp2p_swarm=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    n.child = Some(child);
}

pub fn stop_node(n: &mut Node, kill: bool) {
    if let Some(mut c) = n.child.take() {
        let sig = if kill { "-KILL" } else { "-TERM" };
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            stop_node(n, true);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop_node(self, true);
    }
}

/// Today in China Standard Time, by the system clock.
pub fn today() -> credfed_protocol::time::Date {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
    .date_cst()
}

impl Cluster {
    /// Node `i`'s publisher lists `entry` (effective from yesterday for a year) and its
    /// initiator asks every other member to apply the entry's requested measures within
    /// two weeks, under `reference`. Returns the entry and the action.
    pub async fn list_and_ask_all(
        &self,
        i: usize,
        entry: ListEntry,
        reference: &str,
    ) -> (
        credfed_protocol::record::EntryId,
        credfed_protocol::record::ActionId,
    ) {
        use credfed_protocol::record::{ActionKind, JointAction, Targets, action_id, entry_id};
        let region = self.nodes[i].region;
        let today = today();
        let entry = ListEntry {
            effective_from: today.add_days(-1),
            expires_on: today.add_days(365),
            ..entry
        };
        let publisher = format!("{region}:pub");
        let r = self
            .submit(i, &publisher, &Body::ListEntryPublished(entry.clone()))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let action = JointAction {
            reference: reference.into(),
            kind: ActionKind::Punishment,
            entry: entry_id(region, &entry),
            targets: Targets::AllMembers,
            measures: entry.requested_measures.clone(),
            respond_by: today.add_days(14),
        };
        let initiator = format!("{region}:init");
        let r = self
            .submit(i, &initiator, &Body::JointActionInitiated(action.clone()))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let initiator = DepartmentId::parse(&initiator, "initiator").unwrap();
        (action.entry, action_id(&initiator, &action.reference))
    }
}

/// Polls `cond` until it holds or `deadline` passes. Returns whether it held.
pub async fn wait_until<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        if cond().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
    }
}

/// Tests that measure time against a bound (answers within 100 ms, reconnection within
/// 2 s) and tests that load both cores (schemathesis, hundreds of concurrent writers)
/// take this lock, so that the test harness's parallel threads never run two of them at
/// once: on a shared 2-core machine a bound must not depend on which test ran beside.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

//! A federation of real `credfed-node` processes: on loopback, or (as root) each in its
//! own network namespace of a [`NetLab`] so that link faults are real packet drops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use credfed_client::keys::{random_secret, read_key};
use credfed_client::node_config::NodeConfig;
use credfed_client::{ApiClient, ApiResponse, SubmitRecord};
use credfed_protocol::crypto::{Keypair, sha256};
use credfed_protocol::envelope::OPERATOR_UNIT;
use credfed_protocol::ids::{DepartmentId, PROVINCES, RegionCode, Role};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::Body;
use credfed_protocol::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::netns::NetLab;

/// Federation id of testnets.
pub const FEDERATION_ID: &str = "cn-credit-testnet";

/// Departments every region gets, with their roles.
pub const UNITS: &[(&str, &[Role])] = &[
    ("pub", &[Role::Publisher]),
    ("init", &[Role::Initiator]),
    ("impl", &[Role::Implementer]),
    ("obj", &[Role::ObjectionHandler]),
];

/// Heads exchange interval for a federation of `nodes`: every node asks every other, so
/// the cost grows with the square of the size while gossip carries the records anyway;
/// the exchange only repairs what gossip missed (and runs at once on every reconnect).
pub fn heads_interval_ms(nodes: usize) -> u64 {
    match nodes {
        0..=8 => 500,
        9..=16 => 2000,
        _ => 5000,
    }
}

/// Where to find the `credfed-node` binary: `$CREDFED_NODE_BIN`, else beside this
/// executable (or one directory up, for test executables in `deps/`).
pub fn node_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CREDFED_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join("credfed-node");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "credfed-node binary not found beside {}; build it with `cargo build --release -p credfed-node` or set CREDFED_NODE_BIN",
        exe.display()
    )
}

/// Parses `--regions`: a count (the first N of the 31 provinces) or a comma list of codes.
pub fn parse_regions(spec: &str) -> Result<Vec<RegionCode>> {
    if let Ok(n) = spec.parse::<usize>() {
        if !(1..=31).contains(&n) {
            bail!("--regions {n}: between 1 and 31");
        }
        return PROVINCES[..n]
            .iter()
            .map(|p| RegionCode::new(p.code, "--regions").map_err(Into::into))
            .collect();
    }
    let mut out: Vec<RegionCode> = spec
        .split(',')
        .map(|c| RegionCode::parse(c.trim(), "--regions"))
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    if let Some(r) = out.iter().find(|r| !r.is_province()) {
        bail!("--regions: {r} is not provincial-level");
    }
    Ok(out)
}

/// Makes a node's data directory with `credfed-node init`: keys, API certificates and a
/// configuration listening on `ip` at ports `p2p` and `api` (and `public`, the public
/// side, if given).
pub fn init_node_dir(
    bin: &Path,
    region: RegionCode,
    dir: &Path,
    (ip, p2p, api, public): (std::net::Ipv4Addr, u16, u16, Option<u16>),
    authority_key_hex: &str,
    person_share: Option<&Path>,
) -> Result<()> {
    let out = Command::new(bin)
        .args(["init", "--region", &region.to_string(), "--data-dir"])
        .arg(dir)
        .args([
            "--p2p-port",
            &p2p.to_string(),
            "--api-port",
            &api.to_string(),
            "--listen-ip",
            &ip.to_string(),
            "--output",
            "json",
            "--authority-key",
            authority_key_hex,
        ])
        .args(public.map(|p| format!("--public-port={p}")))
        .args(
            person_share
                .map(|p| [std::ffi::OsStr::new("--person-share"), p.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .output()
        .context("running credfed-node init")?;
    if !out.status.success() {
        bail!(
            "credfed-node init for {region} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Deterministic key for a label within one testnet (seeded by the authority key, which
/// is random per testnet).
pub fn derived_key(seed: &Keypair, label: &str) -> Keypair {
    Keypair::from_secret(sha256(&[&seed.secret_bytes(), label.as_bytes()]).0)
}

/// One node.
pub struct NodeHandle {
    /// Region.
    pub region: RegionCode,
    /// Data directory.
    pub dir: PathBuf,
    /// API address.
    pub api: String,
    /// libp2p port.
    pub p2p_port: u16,
    /// Node key.
    pub node_key: Keypair,
    /// The region's operator key (`init` wrote it to `operator/`): registers departments.
    pub operator_key: Keypair,
    /// Operator client (node certificate) for reads and polls: short deadline.
    pub client: ApiClient,
    /// The same for writes: a write waits for an fsync, which on a machine running 31
    /// nodes can take seconds while they all start at once.
    pub writer: ApiClient,
    /// The process, if this testnet process started it.
    pub child: Option<Child>,
    /// Stopped by SIGSTOP.
    pub paused: bool,
}

/// What `up` records so that `down` (another process) can find the nodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct FederationFile {
    /// Regions and API addresses.
    pub nodes: Vec<(String, String, u32)>,
    /// The network lab (slot, node count), if the nodes run in namespaces.
    #[serde(default)]
    pub lab: Option<(u8, usize)>,
}

/// How link faults (partitions, one-way cuts, loss) are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkChoice {
    /// Namespaces + nftables where possible (root, `ip` and `nft` present), else in-node.
    Auto,
    /// Namespaces + nftables, or fail.
    Netns,
    /// The nodes' own fault mode over loopback (`POST /v1/admin/partition`).
    InNode,
}

impl std::str::FromStr for NetworkChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(NetworkChoice::Auto),
            "netns" => Ok(NetworkChoice::Netns),
            "in-node" => Ok(NetworkChoice::InNode),
            other => bail!("--network {other}: expected auto, netns or in-node"),
        }
    }
}

/// A node's entry in the manifest: its key and its libp2p address at `ip`.
fn member_of(n: &NodeHandle, ip: std::net::Ipv4Addr) -> Member {
    let address = format!("/ip4/{ip}/tcp/{}", n.p2p_port);
    Member::for_province(
        n.region,
        n.node_key.public(),
        n.operator_key.public(),
        vec![address],
    )
}

/// A running federation.
pub struct Federation {
    /// Root directory.
    pub dir: PathBuf,
    /// Nodes, by region order.
    pub nodes: Vec<NodeHandle>,
    /// The manifest.
    pub manifest: Manifest,
    /// Authority key (seeds department keys).
    pub authority: Keypair,
    /// Nodes prepared but not in the manifest yet (`FedOptions::standby`), not started.
    pub standby: Vec<NodeHandle>,
    /// The namespaces the nodes run in, if link faults are real.
    pub lab: Option<NetLab>,
    /// How faults are injected, in words (for the report).
    pub fault_mode: String,
}

/// Options for building a federation.
#[derive(Debug, Clone)]
pub struct FedOptions {
    /// First port; node i uses base + 2i (p2p) and base + 2i + 1 (API).
    pub base_port: u16,
    /// Heads exchange interval in ms (more nodes → slower, to spare the CPU).
    pub heads_interval_ms: u64,
    /// Namespaces or in-node faults.
    pub network: NetworkChoice,
    /// Store engine of every node (`None`: the node's default).
    pub store_engine: Option<String>,
    /// Regions whose nodes are prepared (keys, certificates, configuration) but left out
    /// of the first manifest: a drill adds them later (`add_member`).
    pub standby: Vec<RegionCode>,
}

impl Federation {
    /// Creates keys, certificates, a signed manifest and configs for `regions` in `dir`.
    pub fn create(dir: &Path, regions: &[RegionCode], opts: &FedOptions) -> Result<Federation> {
        // A directory an earlier `up` or drill left behind holds nodes' stores and keys:
        // refuse it here, naming this tool's own flag, instead of letting the first
        // node's `init` fail on it.
        if dir.join("federation.json").exists()
            || regions.iter().any(|r| dir.join(r.to_string()).exists())
        {
            bail!(
                "--dir {}: already holds a federation; stop it with `credfed-testnet down --dir {}` and remove the directory, or choose another --dir",
                dir.display(),
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let bin = node_bin()?;
        let (lab, fault_mode) = match (opts.network, crate::netns::unavailable_reason()) {
            (NetworkChoice::InNode, _) => (None, IN_NODE_MODE.to_string()),
            (NetworkChoice::Auto, Some(why)) => (
                None,
                format!("{IN_NODE_MODE} (namespaces unavailable: {why})"),
            ),
            (NetworkChoice::Netns, Some(why)) => bail!(
                "--network netns: {why}; run as root with iproute2 and nftables installed, or use --network in-node"
            ),
            (_, None) => {
                // One namespace more than nodes: room for a region's twin, the second
                // copy of its node a drill may start to fork its log (drill::fork).
                let lab = NetLab::create(regions.len() + opts.standby.len() + 1)?;
                let mode = format!(
                    "network namespaces + nftables (lab {}, {}): partitions, one-way cuts and loss are real packet drops between namespaces",
                    lab.slot,
                    lab.subnet()
                );
                (Some(lab), mode)
            }
        };
        if let Some(r) = opts.standby.iter().find(|r| regions.contains(r)) {
            bail!("region {r} is both a member and a node to add later");
        }
        let total = regions.len() + opts.standby.len();
        // Each node in its own namespace has its own address; on loopback a federation
        // must find ports no other federation uses.
        let base_port = if lab.is_some() {
            opts.base_port
        } else {
            crate::procs::free_range(opts.base_port, 3 * total as u16)?
        };
        let node_ip = |i: usize| {
            lab.as_ref()
                .map_or(std::net::Ipv4Addr::LOCALHOST, |l| l.node_ip(i))
        };
        let authority = Keypair::from_secret(random_secret()?);
        // The members' person key (docs/privacy.md): the key generation's rounds run here
        // for every member, each party's state apart (a drill's machine holds every
        // node's keys anyway); each share goes to its node's directory only.
        let mut by_region = regions.to_vec();
        by_region.sort();
        let (shares, person_key) = credfed_protocol::oprf::keygen::ceremony_in_one_process(
            &by_region,
            credfed_protocol::oprf::keygen::majority(by_region.len()),
            credfed_protocol::manifest::DEFAULT_PERSON_EVALUATIONS_PER_DAY,
            credfed_protocol::manifest::DEFAULT_PERSON_EVALUATION_BURST,
            &mut credfed_client::keys::SystemRng,
        )
        .map_err(|e| anyhow::anyhow!("person key generation: {e}"))?;
        let mut nodes = Vec::new();
        for (i, r) in regions.iter().chain(&opts.standby).enumerate() {
            let ndir = dir.join(r.to_string());
            let p2p = base_port + 2 * i as u16;
            let api = p2p + 1;
            // The public side (docs/public.md) after every node's pair of ports.
            let public = base_port + 2 * total as u16 + i as u16;
            let ip = node_ip(i);
            // Handed to `init`, which keeps it (mode 0600) in the node's directory. A
            // node added later has no share until a ceremony gives it one.
            let share_file = match by_region.iter().position(|x| x == r) {
                Some(share_index) => {
                    let file = dir.join(format!(".{r}.share"));
                    credfed_client::keys::write_secret(&file, &shares[share_index].to_file_text())?;
                    Some(file)
                }
                None => None,
            };
            let made = init_node_dir(
                &bin,
                *r,
                &ndir,
                (ip, p2p, api, Some(public)),
                &authority.public().to_hex(),
                share_file.as_deref(),
            );
            if let Some(f) = &share_file {
                std::fs::remove_file(f)?;
            }
            made?;
            let cfg_path = ndir.join("config.toml");
            let mut cfg = NodeConfig::load(&cfg_path)?;
            cfg.heads_interval_ms = opts.heads_interval_ms;
            cfg.redial_interval_ms = 500;
            // Drills cut links for seconds: notice the silence within a few.
            cfg.liveness_timeout_ms = 4000;
            // Many nodes on few cores: one worker thread each spares context switches.
            cfg.worker_threads = if regions.len() > 8 { 1 } else { 0 };
            // Many nodes share one machine's memory: each store's cache gets a share.
            cfg.store_cache_mib = if regions.len() > 8 { 32 } else { 0 };
            if let Some(engine) = &opts.store_engine {
                cfg.store_engine = engine.clone();
            }
            // The in-node fault mode is a drill's; it exists only where drills run.
            cfg.drill_faults = true;
            cfg.save(&cfg_path)?;
            let node_key = read_key(&ndir.join("node.key"))?;
            let operator_key =
                read_key(&ndir.join(credfed_client::node_config::OPERATOR_KEY_FILE))?;
            let op = ndir.join("operator");
            let api_addr = format!("{ip}:{api}");
            // Drills poll many nodes at once: a stalled connection must cost seconds, not 30.
            let client = ApiClient::with_identity(
                &api_addr,
                &ndir.join("api-ca.pem"),
                &op.join(format!("{r}-operator.pem")),
                &op.join(format!("{r}-operator.key")),
            )?
            .with_timeout(Duration::from_secs(5));
            let writer = client.clone().with_timeout(Duration::from_secs(30));
            nodes.push(NodeHandle {
                region: *r,
                dir: ndir,
                api: api_addr,
                p2p_port: p2p,
                node_key,
                operator_key,
                client,
                writer,
                child: None,
                paused: false,
            });
        }
        let standby = nodes.split_off(regions.len());
        let manifest = Manifest::for_build(
            FEDERATION_ID,
            1,
            Timestamp(0),
            Timestamp(i64::MAX / 2),
            authority.public(),
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| member_of(n, node_ip(i)))
                .collect(),
        );
        let mut manifest = manifest;
        manifest.person_key = Some(person_key);
        let signed = serde_json::to_string_pretty(&manifest.sign(&authority)?)?;
        for n in &nodes {
            std::fs::write(n.dir.join("manifest.json"), &signed)?;
        }
        std::fs::write(dir.join("manifest.json"), &signed)?;
        std::fs::write(
            dir.join("authority.key"),
            hex::encode(authority.secret_bytes()),
        )?;
        Ok(Federation {
            dir: dir.to_path_buf(),
            nodes,
            standby,
            manifest,
            authority,
            lab,
            fault_mode,
        })
    }

    /// Starts node `i`. With `detached`, it outlives this process (`up`).
    pub fn start(&mut self, i: usize, detached: bool) -> Result<()> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("node.log"))?;
        let bin = node_bin()?;
        let mut cmd = match &self.lab {
            Some(lab) => lab.command(i, &bin),
            None => Command::new(bin),
        };
        cmd.args(["run", "--config"])
            .arg(n.dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .stdin(Stdio::null());
        use std::os::unix::process::CommandExt;
        if detached {
            cmd.process_group(0);
        } else {
            // A drill's nodes must not outlive it, even if it is SIGKILLed or aborts (no
            // destructor runs then). The signal is kept across `ip netns exec`'s exec.
            // SAFETY: prctl is async-signal-safe and touches only the child's own state.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().context("starting credfed-node")?;
        std::fs::write(n.dir.join("pid"), child.id().to_string())?;
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    /// Sends a signal to node `i`'s process.
    pub fn signal(&mut self, i: usize, sig: &str) -> Result<()> {
        let n = &mut self.nodes[i];
        let Some(c) = n.child.as_mut() else {
            bail!("{} is not running", n.region)
        };
        let st = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} {} failed", c.id());
        }
        match sig {
            "-STOP" => n.paused = true,
            "-CONT" => n.paused = false,
            "-KILL" | "-TERM" => {
                let _ = c.wait();
                n.child = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether node `i` is running and not paused.
    pub fn live(&self, i: usize) -> bool {
        self.nodes[i].child.is_some() && !self.nodes[i].paused
    }

    /// Index of a region.
    pub fn index(&self, region: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.region.to_string() == region)
            .with_context(|| format!("region {region} is not in this testnet"))
    }

    /// Waits until node `i` accepts writes.
    pub async fn wait_writable(&self, i: usize, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            if let Ok(r) = self.nodes[i].client.get("/v1/status").await
                && r.json().is_ok_and(|v| v["writes_open"] == json!(true))
            {
                return Ok(());
            }
            if Instant::now() > end {
                bail!(
                    "node {} did not open writes within {timeout:?}; see {}",
                    self.nodes[i].region,
                    self.nodes[i].dir.join("node.log").display()
                );
            }
        }
    }

    /// Starts every node and waits until all accept writes and every node is connected
    /// to every other (so push reaches everyone from the first record on).
    pub async fn start_all(&mut self, detached: bool) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i, detached)?;
        }
        for i in 0..self.nodes.len() {
            self.wait_writable(i, Duration::from_secs(120)).await?;
        }
        let want = self.nodes.len() - 1;
        let end = Instant::now() + Duration::from_secs(120);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let all: Vec<usize> = (0..self.nodes.len()).collect();
            let counts: Vec<u64> = self
                .statuses(&all)
                .await
                .iter()
                .map(|s| {
                    s.as_ref()
                        .and_then(|v| v["peers_connected"].as_u64())
                        .unwrap_or(0)
                })
                .collect();
            if counts.iter().all(|c| *c as usize >= want) {
                return Ok(());
            }
            if Instant::now() > end {
                bail!(
                    "not every node connected to all {want} others within 120 s (connected counts {counts:?})"
                );
            }
        }
    }

    /// `/v1/status` of nodes `at`, asked at once (`None` where a node does not answer).
    async fn statuses(&self, at: &[usize]) -> Vec<Option<serde_json::Value>> {
        let nodes = &self.nodes;
        futures::future::join_all(at.iter().map(|&i| async move {
            nodes[i]
                .client
                .get("/v1/status")
                .await
                .ok()
                .and_then(|r| r.json().ok())
        }))
        .await
    }

    /// Key of a department in this testnet.
    pub fn dept_key(&self, dept: &str) -> Keypair {
        derived_key(&self.authority, &format!("dept-{dept}"))
    }

    /// Gives every department of [`UNITS`] what it needs to act through the CLI: its
    /// signing key (`<node dir>/departments/<unit>.signing.key`, the key registered for
    /// it), an API client certificate issued by its node's CA, and a CLI config file
    /// `<node dir>/<unit>.toml` naming them, the node and the manifest
    /// (`CREDFED_CONFIG=<node dir>/pub.toml credfed inbox`). Returns the config files.
    pub fn write_department_credentials(&self) -> Result<Vec<PathBuf>> {
        let bin = node_bin()?;
        let manifest = std::fs::canonicalize(self.dir.join("manifest.json"))?;
        let mut configs = Vec::new();
        for n in &self.nodes {
            let dir = std::fs::canonicalize(&n.dir)?;
            let out = dir.join("departments");
            std::fs::create_dir_all(&out)?;
            for (unit, _) in UNITS {
                let d = DepartmentId::new(n.region, unit, "department")?;
                let stem = d.to_string().replace(':', "-");
                if !out.join(format!("{stem}.pem")).exists() {
                    let issued = Command::new(&bin)
                        .args(["issue-client-cert", "--config"])
                        .arg(dir.join("config.toml"))
                        .args(["--department", &d.to_string(), "--out"])
                        .arg(&out)
                        .output()
                        .context("running credfed-node issue-client-cert")?;
                    if !issued.status.success() {
                        bail!(
                            "issuing {d}'s client certificate: {}",
                            String::from_utf8_lossy(&issued.stderr)
                        );
                    }
                }
                let key = out.join(format!("{unit}.signing.key"));
                credfed_client::keys::write_secret(
                    &key,
                    &hex::encode(self.dept_key(&d.to_string()).secret_bytes()),
                )?;
                configs.push(self.write_cli_config(
                    n,
                    &dir.join(format!("{unit}.toml")),
                    &d,
                    (
                        &out.join(format!("{stem}.pem")),
                        &out.join(format!("{stem}.key")),
                    ),
                    &key,
                    &manifest,
                )?);
            }
            // The region's operator: its API certificate and the operator signing key
            // `init` made (departments are registered with it).
            let operator = DepartmentId::new(n.region, OPERATOR_UNIT, "operator")?;
            let op = dir.join("operator");
            let stem = operator.to_string().replace(':', "-");
            configs.push(self.write_cli_config(
                n,
                &dir.join("operator.toml"),
                &operator,
                (
                    &op.join(format!("{stem}.pem")),
                    &op.join(format!("{stem}.key")),
                ),
                &dir.join(credfed_client::node_config::OPERATOR_KEY_FILE),
                &manifest,
            )?);
        }
        Ok(configs)
    }

    /// Writes a `credfed` CLI settings file at `path` acting as `author` at node `n`.
    fn write_cli_config(
        &self,
        n: &NodeHandle,
        path: &Path,
        author: &DepartmentId,
        (cert, cert_key): (&Path, &Path),
        key: &Path,
        manifest: &Path,
    ) -> Result<PathBuf> {
        let dir = std::fs::canonicalize(&n.dir)?;
        let mut config = toml::Table::new();
        for (k, v) in [
            ("node", n.api.clone()),
            ("ca", dir.join("api-ca.pem").display().to_string()),
            ("cert", cert.display().to_string()),
            ("cert_key", cert_key.display().to_string()),
            ("author", author.to_string()),
            ("key", key.display().to_string()),
            ("manifest", manifest.display().to_string()),
            ("authority_key", self.authority.public().to_hex()),
        ] {
            config.insert(k.into(), toml::Value::String(v));
        }
        std::fs::write(
            path,
            format!(
                "# CLI settings of {author} in this testnet: CREDFED_CONFIG={} credfed …\n{}",
                path.display(),
                toml::to_string(&config)?
            ),
        )?;
        Ok(path.to_path_buf())
    }

    /// Adds the prepared node of `region` as the authority and one operator would, while
    /// the federation runs: the authority signs the next manifest version naming it,
    /// `credfed-node install-manifest` puts it on member `via` only, and every live member
    /// must run it within `timeout` (the others fetch it from `via`), each in the process
    /// it ran in before; then the new node starts on it, is writable, and its departments
    /// are registered. Returns its index and what happened.
    pub async fn add_member(
        &mut self,
        region: RegionCode,
        via: usize,
        timeout: Duration,
    ) -> Result<(usize, String)> {
        let j = self
            .standby
            .iter()
            .position(|n| n.region == region)
            .with_context(|| format!("region {region} is not a node prepared to be added"))?;
        let ip: std::net::SocketAddr = self.standby[j]
            .api
            .parse()
            .context("the prepared node's API address")?;
        let mut manifest = self.manifest.clone();
        manifest.version += 1;
        manifest.members.push(member_of(
            &self.standby[j],
            match ip.ip() {
                std::net::IpAddr::V4(v4) => v4,
                std::net::IpAddr::V6(_) => bail!("a testnet node has an IPv4 address"),
            },
        ));
        manifest.members.sort_by_key(|m| m.region);
        let signed = serde_json::to_string_pretty(&manifest.sign(&self.authority)?)?;
        let file = self
            .dir
            .join(format!("manifest-v{}.json", manifest.version));
        std::fs::write(&file, &signed)?;
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.live(i)).collect();
        let pids: Vec<Option<u32>> = self
            .nodes
            .iter()
            .map(|n| n.child.as_ref().map(Child::id))
            .collect();
        let started = Instant::now();
        let out = Command::new(node_bin()?)
            .args(["install-manifest", "--config"])
            .arg(self.nodes[via].dir.join("config.toml"))
            .arg(&file)
            .output()
            .context("running credfed-node install-manifest")?;
        if !out.status.success() {
            bail!(
                "install-manifest at {}: {}",
                self.nodes[via].region,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let version = manifest.version;
        let members = manifest.members.len();
        let end = started + timeout;
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let running: Vec<bool> = self
                .statuses(&live)
                .await
                .iter()
                .map(|s| {
                    s.as_ref().is_some_and(|v| {
                        v["manifest_version"].as_u64() == Some(version)
                            && v["members"].as_u64() == Some(members as u64)
                    })
                })
                .collect();
            if running.iter().all(|r| *r) {
                break;
            }
            if Instant::now() > end {
                let behind: Vec<String> = live
                    .iter()
                    .zip(&running)
                    .filter(|(_, r)| !**r)
                    .map(|(&i, _)| self.nodes[i].region.to_string())
                    .collect();
                bail!(
                    "manifest version {version} installed at {}, but {} did not run it within {timeout:?}",
                    self.nodes[via].region,
                    behind.join(", ")
                );
            }
        }
        let adopted_ms = started.elapsed().as_millis();
        for &i in &live {
            let n = &mut self.nodes[i];
            let same = n.child.as_ref().map(Child::id) == pids[i]
                && n.child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !same {
                bail!(
                    "{} runs version {version}, but not in the process it ran in before",
                    n.region
                );
            }
        }
        let node = self.standby.remove(j);
        std::fs::write(node.dir.join("manifest.json"), &signed)?;
        std::fs::write(self.dir.join("manifest.json"), &signed)?;
        self.manifest = manifest;
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.start(i, false)?;
        self.wait_writable(i, timeout).await?;
        self.register_departments_at(&[i]).await?;
        Ok((
            i,
            format!(
                "manifest version {version} installed at {} only; all {} running members ran it {adopted_ms} ms later, each in its own process (no restart by an operator); {region} started on it, writable, departments registered",
                self.nodes[via].region,
                live.len()
            ),
        ))
    }

    /// Registers the standard departments in every region.
    pub async fn register_departments(&self) -> Result<()> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.register_departments_at(&all).await
    }

    /// Registers the standard departments of the regions of nodes `at`.
    pub async fn register_departments_at(&self, at: &[usize]) -> Result<()> {
        let tasks = at.iter().map(|&i| &self.nodes[i]).map(|n| async move {
            for (unit, roles) in UNITS {
                let d = DepartmentId::new(n.region, unit, "department")?;
                let body = Body::DepartmentRegistered {
                    department: d.clone(),
                    name: format!("{} {unit}", n.region.province_info().name_zh),
                    roles: roles.to_vec(),
                    key: self.dept_key(&d.to_string()).public(),
                };
                let r = self
                    .submit_signed(
                        n,
                        &format!("{}:{OPERATOR_UNIT}", n.region),
                        &n.operator_key,
                        &body,
                    )
                    .await?;
                if r.status != 201 {
                    bail!("registering {d}: {} {}", r.status, r.body);
                }
            }
            Ok(())
        });
        for r in futures::future::join_all(tasks).await {
            r?;
        }
        Ok(())
    }

    /// Signs and submits a body at the author's node.
    pub async fn submit(&self, author: &str, body: &Body) -> Result<ApiResponse> {
        let d = DepartmentId::parse(author, "author")?;
        let i = self.index(&d.home_province().to_string())?;
        self.submit_signed(&self.nodes[i], author, &self.dept_key(author), body)
            .await
    }

    async fn submit_signed(
        &self,
        n: &NodeHandle,
        author: &str,
        key: &Keypair,
        body: &Body,
    ) -> Result<ApiResponse> {
        let author = DepartmentId::parse(author, "author")?;
        let record = SubmitRecord::sign(FEDERATION_ID, &author, key, body);
        Ok(n.writer.post("/v1/records", &record).await?)
    }

    /// Heads of node `i` (region → (seq, hash)).
    pub async fn heads(&self, i: usize) -> Option<BTreeMap<String, (u64, String)>> {
        let v = self.nodes[i]
            .client
            .get("/v1/heads")
            .await
            .ok()?
            .json()
            .ok()?;
        Some(
            v.as_object()?
                .iter()
                .map(|(k, h)| {
                    (
                        k.clone(),
                        (
                            h["seq"].as_u64().unwrap_or(0),
                            h["hash"].as_str().unwrap_or("").to_string(),
                        ),
                    )
                })
                .collect(),
        )
    }

    /// A JSON GET at node `i`.
    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        self.nodes[i].client.get(path).await.ok()?.json().ok()
    }

    /// Writes `federation.json` for `down`.
    pub fn save(&self) -> Result<()> {
        let f = FederationFile {
            nodes: self
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.region.to_string(),
                        n.api.clone(),
                        n.child.as_ref().map_or(0, |c| c.id()),
                    )
                })
                .collect(),
            lab: self.lab.as_ref().map(|l| (l.slot, l.nodes)),
        };
        std::fs::write(
            self.dir.join("federation.json"),
            serde_json::to_string_pretty(&f)?,
        )?;
        Ok(())
    }

    /// Stops every node (SIGTERM, then wait).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                let _ = self.signal(i, "-CONT");
            }
            if self.nodes[i].child.is_some() {
                let _ = self.signal(i, "-TERM");
            }
        }
    }
}

impl Federation {
    /// Leaves the nodes and their namespaces running after this process exits (`up`).
    pub fn detach(&mut self) {
        for n in &mut self.nodes {
            std::mem::forget(n.child.take());
        }
        self.lab = None;
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(lab) = self.lab.take() {
            lab.destroy();
        }
    }
}

/// Description of the fallback fault mode, for reports.
pub const IN_NODE_MODE: &str = "in-node fault mode over loopback: links cut at the libp2p connection level by each node's allow-list (one-way cuts act both ways), loss drops received gossip messages and pulled ranges";

/// Stops every node of the federation in `dir` (SIGTERM, then waits for each to exit):
/// found by their configuration files, not by recorded PIDs (see [`crate::procs`]), so a
/// node restarted by hand is stopped too and no other process is ever signalled.
pub fn down(dir: &Path) -> Result<usize> {
    let f: FederationFile = serde_json::from_str(
        &std::fs::read_to_string(dir.join("federation.json")).with_context(|| {
            format!(
                "{}: no federation.json; was `up` run with this --dir?",
                dir.display()
            )
        })?,
    )?;
    let mut stopped = 0;
    for p in crate::procs::nodes_of(dir) {
        if crate::procs::stop(&p, libc::SIGTERM, Duration::from_secs(15))? {
            stopped += 1;
        }
    }
    if let Some((slot, nodes)) = f.lab {
        NetLab { slot, nodes }.destroy();
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory an earlier federation left behind is refused before any node is
    /// touched, naming this tool's flag and what to do.
    #[test]
    fn a_directory_holding_a_federation_is_refused_with_what_to_do() {
        let path = std::env::temp_dir().join(format!("credfed-fed-test-{}", std::process::id()));
        std::fs::create_dir_all(path.join("310000")).unwrap();
        let regions = parse_regions("310000,440000").unwrap();
        let opts = FedOptions {
            base_port: 47_000,
            heads_interval_ms: 500,
            network: NetworkChoice::InNode,
            store_engine: None,
            standby: Vec::new(),
        };
        let e = Federation::create(&path, &regions, &opts)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("--dir") && e.contains("already holds a federation") && e.contains("down"),
            "{e}"
        );
        assert!(!path.join("federation.json").exists());
        std::fs::remove_dir_all(&path).unwrap();
    }
}

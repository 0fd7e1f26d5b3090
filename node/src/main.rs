//! credfed-node: the daemon a provincial operator runs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use credfed_node::api::{ApiState, router};
use credfed_node::config::{NodeConfig, random_secret, read_key, write_api_certs, write_secret};
use credfed_node::core::Core;
use credfed_node::metrics::Metrics;
use credfed_node::p2p::{self, COMMAND_CAPACITY, NetStatus, P2pConfig, peer_id_of};
use credfed_node::replication::ReplicationConfig;
use credfed_node::store::{Backend, Store};
use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::ids::{PersonHashKey, RegionCode};
use credfed_protocol::manifest::SignedManifest;

#[derive(Parser)]
#[command(
    name = "credfed-node",
    version,
    about = "A provincial node of a credfed federation (国发〔2016〕33号 cross-region mutual recognition)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a data directory: node key (0600), API certificates, person-hash secret and a
    /// config file with every default written out.
    Init {
        /// Provincial-level region code, e.g. 310000.
        #[arg(long)]
        region: String,
        /// Data directory to create.
        #[arg(long)]
        data_dir: PathBuf,
        /// Signed manifest to copy in (can be added later as <data-dir>/manifest.json).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Federation authority public key (hex) to pin.
        #[arg(long, default_value = "")]
        authority_key: String,
        /// Use this node secret key file instead of generating one.
        #[arg(long)]
        node_key: Option<PathBuf>,
        /// The federation's person-hash secret file (the same on every node); a new one is
        /// generated if absent, for the first node.
        #[arg(long)]
        person_secret: Option<PathBuf>,
        /// libp2p port (TCP and UDP/QUIC).
        #[arg(long, default_value_t = 4101)]
        p2p_port: u16,
        /// HTTPS API port.
        #[arg(long, default_value_t = 8443)]
        api_port: u16,
        /// Address both listeners bind to (and the API certificate names): the host's
        /// address on the federation's network; loopback by default.
        #[arg(long, default_value = "127.0.0.1")]
        listen_ip: std::net::IpAddr,
        /// Print machine-readable JSON.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Run the node.
    Run {
        /// Config file.
        #[arg(long, env = "CREDFED_CONFIG")]
        config: PathBuf,
    },
    /// Issue an API client certificate to a department of this node's region (or to the
    /// operator: `REGION:node`) and register it with the node.
    IssueClientCert {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_CONFIG")]
        config: PathBuf,
        /// Department id, e.g. 310000:scjgj.
        #[arg(long)]
        department: String,
        /// Directory to write <dept>.pem and <dept>.key into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask a running node for its status (uses the operator certificate in
    /// <data-dir>/operator/, created by `init`).
    Status {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Init {
            region,
            data_dir,
            manifest,
            authority_key,
            node_key,
            person_secret,
            p2p_port,
            api_port,
            listen_ip,
            output,
        } => init(
            &region,
            &data_dir,
            manifest,
            &authority_key,
            node_key,
            person_secret,
            p2p_port,
            api_port,
            listen_ip,
            &output,
        ),
        Cmd::Run { config } => {
            let cfg = NodeConfig::load(&config)?;
            init_logging(&cfg.log_format);
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if cfg.worker_threads > 0 {
                runtime.worker_threads(cfg.worker_threads);
            }
            runtime.enable_all().build()?.block_on(run(cfg))
        }
        Cmd::IssueClientCert {
            config,
            department,
            out,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let dept = credfed_protocol::ids::DepartmentId::parse(&department, "--department")?;
            let path =
                credfed_node::config::issue_client_cert(&cfg.data_dir, cfg.region()?, &dept, &out)?;
            println!(
                "issued {} (key beside it, mode 0600); give both to {dept} with api-ca.pem",
                path.display()
            );
            Ok(())
        }
        Cmd::Status { config } => {
            let cfg = NodeConfig::load(&config)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let op = cfg.data_dir.join("operator");
                    let stem = format!("{}-node", cfg.region);
                    let client = credfed_node::client::ApiClient::with_identity(
                        &cfg.api_listen,
                        &cfg.path(&PathBuf::from("api-ca.pem")),
                        &op.join(format!("{stem}.pem")),
                        &op.join(format!("{stem}.key")),
                    )?;
                    let r = client.get("/v1/status").await?;
                    println!("{}", serde_json::to_string_pretty(&r.json()?)?);
                    Ok(())
                })
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,libp2p_gossipsub=warn,libp2p_swarm=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init()
    } else {
        builder.init()
    }
}

#[allow(clippy::too_many_arguments)]
fn init(
    region: &str,
    dir: &std::path::Path,
    manifest: Option<PathBuf>,
    authority_key: &str,
    node_key: Option<PathBuf>,
    person_secret: Option<PathBuf>,
    p2p_port: u16,
    api_port: u16,
    listen_ip: std::net::IpAddr,
    output: &str,
) -> Result<()> {
    let region = RegionCode::parse(region, "region")?;
    if !region.is_province() {
        bail!(
            "--region {region}: nodes are provincial; register city departments with the province's node"
        );
    }
    if dir.join("config.toml").exists() {
        bail!(
            "{} already holds a node (config.toml exists); choose another --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let key = match node_key {
        Some(p) => read_key(&p)?,
        None => credfed_protocol::crypto::Keypair::from_secret(random_secret()?),
    };
    write_secret(&dir.join("node.key"), &hex::encode(key.secret_bytes()))?;
    let person = match person_secret {
        Some(p) => std::fs::read_to_string(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .trim()
            .to_string(),
        None => hex::encode(random_secret()?),
    };
    write_secret(&dir.join("person.secret"), &person)?;
    write_api_certs(&dir, region, listen_ip)?;
    if let Some(m) = manifest {
        std::fs::copy(&m, dir.join("manifest.json"))
            .with_context(|| format!("copying manifest {}", m.display()))?;
    }
    let operator = credfed_protocol::ids::DepartmentId {
        region,
        unit: credfed_protocol::envelope::NODE_UNIT.into(),
    };
    credfed_node::config::issue_client_cert(&dir, region, &operator, &dir.join("operator"))?;
    let mut cfg = NodeConfig::defaults(region, &dir, listen_ip, p2p_port, api_port);
    cfg.authority_key = authority_key.to_string();
    cfg.save(&dir.join("config.toml"))?;
    let peer = peer_id_of(&key.public())?;
    if output == "json" {
        println!(
            "{}",
            serde_json::json!({"region": region.to_string(), "node_key": key.public().to_hex(), "peer_id": peer.to_string(), "config": dir.join("config.toml"), "addresses": cfg.p2p_listen})
        );
    } else {
        println!("created node {region} in {}", dir.display());
        println!("  node public key  {}", key.public());
        println!("  peer id          {peer}");
        println!("  addresses        {}", cfg.p2p_listen.join(" "));
        println!(
            "next: send the public key and addresses to the federation authority, put the signed manifest at {}, set authority_key in config.toml, then run `credfed-node run --config {}`",
            dir.join("manifest.json").display(),
            dir.join("config.toml").display()
        );
    }
    Ok(())
}

async fn run(cfg: NodeConfig) -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let region = cfg.region()?;
    let node_key = read_key(&cfg.path(&cfg.node_key_file))?;
    let node_secret = node_key.secret_bytes();
    let manifest_path = cfg.path(&cfg.manifest);
    let signed: SignedManifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).with_context(|| {
            format!(
                "reading manifest {}; ask the federation authority for it",
                manifest_path.display()
            )
        })?)
        .with_context(|| format!("{}: not a signed manifest", manifest_path.display()))?;
    let metrics = Arc::new(Metrics::default());
    let now = credfed_protocol::time::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64
            + cfg.clock_offset_ms,
    );
    let manifest = signed
        .verify(&cfg.authority()?, now)
        .with_context(|| format!("manifest {}", manifest_path.display()))?;
    let member = manifest.member(region).with_context(|| {
        format!(
            "region {region} is not a member of federation {}",
            manifest.federation_id
        )
    })?;
    if member.node_key != node_key.public() {
        bail!(
            "the manifest names node key {} for {region}, but {} holds {}; use the key the manifest names",
            member.node_key,
            cfg.node_key_file.display(),
            node_key.public()
        );
    }
    let catalogue = Catalogue::embedded()?;
    if Catalogue::file_hash(credfed_protocol::catalogue::EMBEDDED_CATALOGUE)
        != manifest.catalogue_hash
    {
        bail!(
            "the manifest names measures catalogue {}, this build ships {}; run the build that matches the manifest",
            manifest.catalogue_hash,
            Catalogue::file_hash(credfed_protocol::catalogue::EMBEDDED_CATALOGUE)
        );
    }
    let person_hex = std::fs::read_to_string(cfg.path(&cfg.person_secret_file))?;
    let person_key =
        PersonHashKey::new(&hex::decode(person_hex.trim()).context("person secret: hex")?)?;

    let store_dir = cfg.data_dir.join("store");
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening store {}", store_dir.display()))?;
    let started = std::time::Instant::now();
    let report = store
        .verify_chains(&manifest.federation_id, &mut |r, n| tracing::info!(region = %r, verified = n, "verifying chains"))
        .context("the store failed verification; restore a backup or move the store away to re-sync from peers")?;
    tracing::info!(
        regions = report.regions,
        envelopes = report.envelopes,
        ms = started.elapsed().as_millis() as u64,
        "store chains verified"
    );

    let core = Arc::new(Core::new(
        Box::new(store),
        manifest,
        catalogue,
        WorkingCalendar::embedded()?,
        region,
        node_key,
        person_key,
        cfg.clock_offset_ms,
        metrics,
    ));
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(COMMAND_CAPACITY);
    let status = Arc::new(Mutex::new(NetStatus::default()));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let p2p_cfg = P2pConfig {
        node_secret,
        listen: cfg
            .p2p_listen
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()
            .context("p2p_listen: not a multiaddress")?,
        replication: ReplicationConfig {
            heads_interval: std::time::Duration::from_millis(cfg.heads_interval_ms),
            ..ReplicationConfig::default()
        },
        redial_interval: std::time::Duration::from_millis(cfg.redial_interval_ms),
        liveness_timeout: std::time::Duration::from_millis(cfg.liveness_timeout_ms.max(1000)),
        solo: cfg.solo,
    };
    let net = tokio::spawn(p2p::run(
        core.clone(),
        p2p_cfg,
        cmd_rx,
        status.clone(),
        shutdown_rx,
    ));

    let audit = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.data_dir.join("audit.log"))?;
    let state = Arc::new(ApiState {
        core: core.clone(),
        commands: cmd_tx,
        status,
        audit: Mutex::new(audit),
        metrics_public: cfg.metrics_public,
        clients_dir: cfg.data_dir.join("clients"),
    });
    let app = router(state, cfg.api_max_body_bytes, cfg.api_max_concurrency);
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(api_tls_config(&cfg)?));
    let addr: std::net::SocketAddr = cfg.api_listen.parse().context("api_listen")?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
        h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    tracing::info!(%addr, region = %region, "API listening (HTTPS)");
    axum_server::bind_rustls(addr, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .context("API server")?;
    let _ = net.await;
    core.store.sync()?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Server TLS with optional client certificates from the node's API CA: public endpoints
/// answer without one, everything else checks it (api::authenticate).
fn api_tls_config(cfg: &NodeConfig) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cfg.path(&PathBuf::from("api-ca.pem")))
        .context("api-ca.pem")?
    {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let certs = CertificateDer::pem_file_iter(cfg.path(&cfg.tls_cert))
        .context("tls_cert")?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(cfg.path(&cfg.tls_key)).context("tls_key")?;
    let mut server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}

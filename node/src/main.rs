//! credfed-node: the daemon a provincial operator runs.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use credfed_node::config::{InitOptions, NodeConfig, init_data_dir, read_key};
use credfed_node::p2p::peer_id_of;
use credfed_protocol::ids::RegionCode;

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
enum ManifestCmd {
    /// Install a new manifest version (see `install-manifest`).
    Install {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// The signed manifest the federation authority published.
        manifest: PathBuf,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a data directory: node key (0600), API certificates, this member's person-key
    /// share if given (0600), and a config file with every default written out.
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
        /// The operator's public key (hex, or the `.pub` file `credfed key gen --kind
        /// operator` wrote): signs this region's department registrations. Without it a
        /// key pair is generated into <data-dir>/operator/ for the operator to take away.
        #[arg(long)]
        operator_key: Option<String>,
        /// This member's share of the federation's person key (a file the key ceremony
        /// wrote for this region), copied into the data directory (docs/privacy.md).
        #[arg(long)]
        person_share: Option<PathBuf>,
        /// libp2p port (TCP and UDP/QUIC).
        #[arg(long, default_value_t = 4101)]
        p2p_port: u16,
        /// HTTPS API port.
        #[arg(long, default_value_t = 8443)]
        api_port: u16,
        /// Port of the public side: search pages and open data for anyone, HTTPS
        /// without client certificates (docs/public.md). Not served unless given.
        #[arg(long)]
        public_port: Option<u16>,
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
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Issue an API client certificate to a department of this node's region (or to the
    /// operator: `REGION:node`) and register it with the node.
    IssueClientCert {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// Department id, e.g. 310000:scjgj.
        #[arg(long)]
        department: String,
        /// Directory to write <dept>.pem and <dept>.key into.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing certificate and key in --out (they are kept as
        /// <name>.replaced-<ms>; the old certificate stays valid until it is revoked
        /// with `credfed-node revoke-client-cert`).
        #[arg(long)]
        replace: bool,
        /// The department's certificate signing request (`credfed key csr`): the
        /// certificate is issued for the key the department keeps, and no private key
        /// is written. Without it the node makes the key (hand it over securely).
        #[arg(long)]
        csr: Option<PathBuf>,
    },
    /// List the client certificates this node accepts: fingerprint, department, last
    /// valid day.
    Certs {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// Print machine-readable JSON.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Revoke client certificates: by fingerprint (12 or more hex digits, as `certs`
    /// shows), by the certificate's file, or every one of a department. Takes effect at
    /// the next connection; says what it revoked.
    RevokeClientCert {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// Fingerprint, or a prefix of at least 12 hex digits.
        #[arg(long, conflicts_with_all = ["cert", "department"], required_unless_present_any = ["cert", "department"])]
        fingerprint: Option<String>,
        /// The certificate file (PEM).
        #[arg(long, conflicts_with = "department")]
        cert: Option<PathBuf>,
        /// Every certificate of this department.
        #[arg(long)]
        department: Option<String>,
    },
    /// Renew the API server certificate (valid one year; the node warns 30 days before it
    /// ends). Clients trust the node's CA, so nothing changes for them; a running node
    /// serves the new certificate within seconds, without a restart.
    RotateServerCert {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Ask a running node for its status (uses the operator certificate in
    /// <data-dir>/operator/, created by `init`).
    Status {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Back up a running node into a new directory: every region's records up to the
    /// heads read at the start (read through the API with the operator certificate) and
    /// the data directory's files (keys, certificates, configuration, manifest, audit
    /// log). No pause: the logs are append-only. Keep the directory as secret as
    /// node.key: it holds it.
    Backup {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// Directory to create for the backup (must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Print machine-readable JSON.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Rebuild a node's data directory from a backup (the node stopped; the directory
    /// empty or absent). Every record is verified again as it is admitted; the node then
    /// waits for a member to confirm its own log before it writes.
    Restore {
        /// Backup directory (made by `credfed-node backup`).
        #[arg(long)]
        from: PathBuf,
        /// Data directory to create (its config.toml is the backup's, pointed here).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print machine-readable JSON.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Roll the API's certificate authority over. `--begin` makes a new CA beside the
    /// current one: after a restart the node trusts client certificates of both, new
    /// ones are issued by the new CA, and departments should trust
    /// `<data-dir>/api-ca-bundle.pem` (both CAs). `--finish`, once every department has
    /// a certificate of the new CA, makes it the CA and signs the server certificate
    /// again with it (restart then).
    RotateCa {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// Begin: make the next CA.
        #[arg(long, conflicts_with = "finish", required_unless_present = "finish")]
        begin: bool,
        /// Finish: the next CA becomes the CA.
        #[arg(long)]
        finish: bool,
        /// With --finish: cut off the client certificates of the old CA still registered.
        #[arg(long, requires = "finish")]
        force: bool,
    },
    /// Install a new manifest version: verified first (the pinned authority's signature,
    /// not expired, this node's key named for its region, a version above the one in
    /// use), then put in place of the manifest file (the old one kept beside it). A
    /// running node adopts it within 5 s and its members fetch it from it; a stopped
    /// one runs it when started. Also `credfed-node manifest install`.
    InstallManifest {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
        /// The signed manifest the federation authority published.
        manifest: PathBuf,
    },
    /// The manifest: `install` (the same as `install-manifest`).
    #[command(subcommand)]
    Manifest(ManifestCmd),
    /// Mark the store as restored (the node stopped): at its next start the node waits for
    /// a member to confirm this region's log before it writes. For a machine brought
    /// back from a disk image or VM snapshot, which the node cannot tell from its own
    /// files (`credfed-node restore` marks what it restores by itself).
    MarkRestored {
        /// Config file of the node.
        #[arg(long, env = "CREDFED_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Shell completions (`credfed-node completions bash > /etc/bash_completion.d/credfed-node`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
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
            operator_key,
            person_share,
            p2p_port,
            api_port,
            public_port,
            listen_ip,
            output,
        } => init(
            &region,
            &data_dir,
            manifest,
            &authority_key,
            (node_key, operator_key),
            person_share,
            (p2p_port, api_port, public_port),
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
            replace,
            csr,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let dept = credfed_protocol::ids::DepartmentId::parse(&department, "--department")?;
            if !credfed_protocol::envelope::reserved_unit(&dept.unit) {
                runtime()?.block_on(require_registered(&cfg, &dept))?;
            }
            let csr_text = match &csr {
                Some(p) => Some(
                    std::fs::read_to_string(p).with_context(|| format!("--csr {}", p.display()))?,
                ),
                None => None,
            };
            let issued = credfed_node::config::issue_client_cert_for(
                &cfg.data_dir,
                cfg.region()?,
                &dept,
                &out,
                replace,
                csr_text.as_deref(),
            )?;
            match &issued.key {
                Some(key) => println!(
                    "issued {} and {} (mode 0600), valid until {}; give both to {dept} with api-ca.pem",
                    issued.cert.display(),
                    key.display(),
                    issued.not_after
                ),
                None => println!(
                    "issued {} for the key in the request, valid until {}; give it to {dept} with api-ca.pem (no private key left this node's hands)",
                    issued.cert.display(),
                    issued.not_after
                ),
            }
            println!(
                "  fingerprint {} (credfed-node revoke-client-cert --fingerprint {})",
                issued.fingerprint,
                &issued.fingerprint[..16]
            );
            for b in issued.backups {
                println!("  kept the replaced file as {}", b.display());
            }
            Ok(())
        }
        Cmd::RotateCa {
            config,
            begin,
            finish: _,
            force,
        } => {
            let cfg = NodeConfig::load(&config)?;
            if begin {
                let last = credfed_node::config::begin_ca_rollover(&cfg.data_dir, cfg.region()?)?;
                println!(
                    "new CA in {} (valid until {last}); restart the node to trust its certificates, give departments {} (both CAs) and reissue their certificates (issue-client-cert --replace), then rotate-ca --finish",
                    cfg.data_dir.join(credfed_node::config::NEXT_CA).display(),
                    cfg.data_dir.join(credfed_node::config::CA_BUNDLE).display()
                );
            } else {
                let listen = cfg.api_addr()?;
                let cut = credfed_node::config::finish_ca_rollover(
                    &cfg.data_dir,
                    cfg.region()?,
                    listen.ip(),
                    force,
                )?;
                println!(
                    "the new CA is {}; server certificate signed again; restart the node",
                    cfg.data_dir.join("api-ca.pem").display()
                );
                for c in cut {
                    println!("  cut off {} of {}", c.fingerprint, c.department);
                }
            }
            Ok(())
        }
        Cmd::InstallManifest { config, manifest }
        | Cmd::Manifest(ManifestCmd::Install { config, manifest }) => {
            let cfg = NodeConfig::load(&config)?;
            let report = credfed_node::daemon::install_manifest(&cfg, &manifest)?;
            println!("{report}");
            Ok(())
        }
        Cmd::MarkRestored { config } => {
            use credfed_node::store::Backend;
            let cfg = NodeConfig::load(&config)?;
            let store = credfed_node::daemon::open_store(&cfg)?;
            store.set_note(
                credfed_node::engine::NOTE_RESTORED,
                cfg.region()?,
                "marked restored by the operator",
            )?;
            store.sync()?;
            println!(
                "marked {}: at its next start the node waits for a member to confirm region {}'s log before it writes",
                cfg.data_dir.join("store").display(),
                cfg.region
            );
            Ok(())
        }
        Cmd::Certs { config, output } => {
            let cfg = NodeConfig::load(&config)?;
            let certs = credfed_node::config::registered_certificates(&cfg.data_dir)?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&certs)?);
            } else {
                println!("{:<18} {:<24} valid until", "fingerprint", "department");
                for c in certs {
                    println!(
                        "{:<18} {:<24} {}",
                        &c.fingerprint[..16],
                        c.department,
                        c.not_after.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        Cmd::RevokeClientCert {
            config,
            fingerprint,
            cert,
            department,
        } => {
            use credfed_node::config::RevokeWhich;
            let cfg = NodeConfig::load(&config)?;
            let which = match (fingerprint, cert, department) {
                (Some(f), _, _) => RevokeWhich::Fingerprint(f),
                (_, Some(c), _) => RevokeWhich::CertFile(c),
                (_, _, Some(d)) => RevokeWhich::Department(d),
                _ => anyhow::bail!("give --fingerprint, --cert or --department"),
            };
            for c in credfed_node::config::revoke_client_certs(&cfg.data_dir, &which)? {
                println!(
                    "revoked {} of {} (valid until {})",
                    c.fingerprint,
                    c.department,
                    c.not_after.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        Cmd::RotateServerCert { config } => {
            let cfg = NodeConfig::load(&config)?;
            let listen = cfg.api_addr()?;
            let last = credfed_node::config::rotate_server_cert(
                &cfg.data_dir,
                cfg.region()?,
                listen.ip(),
            )?;
            println!(
                "new server certificate in {} valid until {last}; the old pair kept as *.replaced-*; a running node serves it within seconds",
                cfg.data_dir.join("api-cert.pem").display()
            );
            Ok(())
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into a buffer first: a reader that stops early (`| head`) is no error here
            // (the daemon keeps SIGPIPE ignored, as a network process must).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "credfed-node", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Cmd::Status { config } => {
            let cfg = NodeConfig::load(&config)?;
            runtime()?.block_on(async {
                let status = operator_client(&cfg)?.status().await?;
                println!("{}", serde_json::to_string_pretty(&status)?);
                Ok(())
            })
        }
        Cmd::Backup { config, to, output } => {
            let cfg = NodeConfig::load(&config)?;
            let json = output == "json";
            let report = runtime()?.block_on(async {
                let client = operator_client(&cfg)?;
                credfed_node::backup::backup(&cfg, &client, &to, &mut |line| {
                    if !json {
                        eprintln!("{line}");
                    }
                })
                .await
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "backed up {} records of {} regions and {} files ({} bytes) into {}; keep it as secret as node.key",
                    report.records.values().sum::<u64>(),
                    report.records.len(),
                    report.files,
                    report.bytes,
                    report.dir.display()
                );
            }
            Ok(())
        }
        Cmd::Restore {
            from,
            data_dir,
            output,
        } => {
            let json = output == "json";
            // The writer says why a record is refused: shown on stderr.
            init_logging("text");
            let report = runtime()?.block_on(credfed_node::backup::restore(
                &from,
                &data_dir,
                &mut |line| {
                    if !json {
                        eprintln!("{line}");
                    }
                },
            ))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "restored {} records of {} regions and {} files into {}; start the node: it waits for a member to confirm its own log, then writes",
                    report.records.values().sum::<u64>(),
                    report.records.len(),
                    report.files,
                    report.data_dir.display()
                );
            }
            Ok(())
        }
    }
}

/// Refuses to issue a certificate to a department the node does not know as registered
/// and unrevoked (asked of the running node: the registry is in its store).
async fn require_registered(
    cfg: &NodeConfig,
    dept: &credfed_protocol::ids::DepartmentId,
) -> Result<()> {
    let client = operator_client(cfg)?;
    let r = client
        .get(&format!("/v1/departments/{}", credfed_client::query_value(&dept.to_string())))
        .await
        .context("asking the node whether the department is registered (the node must be running: the registry is in its store)")?;
    match r.status {
        200 => {
            let v = r.json()?;
            if !v["revoked_at"].is_null() {
                anyhow::bail!(
                    "--department {dept}: revoked; a revoked department gets no certificate"
                );
            }
            Ok(())
        }
        404 => anyhow::bail!(
            "--department {dept}: not registered at this node; register it first (credfed dept register), then issue its certificate"
        ),
        s => anyhow::bail!(
            "asking the node about {dept}: HTTP {s}: {}",
            r.error().message
        ),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A client of the node's API with the operator certificate `init` made.
fn operator_client(cfg: &NodeConfig) -> Result<credfed_client::ApiClient> {
    let op = cfg.data_dir.join("operator");
    // `<region>-operator` since the operator has its own unit; `<region>-node` in a data
    // directory made before.
    let stem = [
        credfed_protocol::envelope::OPERATOR_UNIT,
        credfed_protocol::envelope::NODE_UNIT,
    ]
    .iter()
    .map(|unit| format!("{}-{unit}", cfg.region))
    .find(|stem| op.join(format!("{stem}.pem")).exists())
    .unwrap_or_else(|| {
        format!(
            "{}-{}",
            cfg.region,
            credfed_protocol::envelope::OPERATOR_UNIT
        )
    });
    Ok(credfed_client::ApiClient::with_identity(
        &cfg.api_listen,
        &cfg.path(&PathBuf::from("api-ca.pem")),
        &op.join(format!("{stem}.pem")),
        &op.join(format!("{stem}.key")),
    )?)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,libp2p_gossipsub=warn,libp2p_swarm=warn".into());
    // Colour codes only for a terminal: logs written to files (a service's journal, a
    // testnet's node.log) stay plain text that grep and log shippers read.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init()
    } else {
        builder.init()
    }
}

/// An operator public key given as hex or a `.pub` file; a secret key file is refused
/// (it never needs to reach the node).
fn operator_public_key(text: &str) -> Result<credfed_protocol::crypto::PublicKey> {
    if let Ok(k) = credfed_protocol::crypto::PublicKey::from_hex(text.trim()) {
        return Ok(k);
    }
    let path = std::path::Path::new(text);
    if path.extension().is_none_or(|e| e != "pub") {
        bail!(
            "--operator-key {text}: give the public key (64 hex digits, or the .pub file `credfed key gen --kind operator` wrote); the secret key stays with the operator"
        );
    }
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("--operator-key {}: cannot read it", path.display()))?;
    credfed_protocol::crypto::PublicKey::from_hex(content.trim())
        .map_err(|e| anyhow::anyhow!("--operator-key {}: not a public key ({e})", path.display()))
}

#[allow(clippy::too_many_arguments)]
fn init(
    region: &str,
    dir: &std::path::Path,
    manifest: Option<PathBuf>,
    authority_key: &str,
    (node_key, operator_key): (Option<PathBuf>, Option<String>),
    person_share: Option<PathBuf>,
    (p2p_port, api_port, public_port): (u16, u16, Option<u16>),
    listen_ip: std::net::IpAddr,
    output: &str,
) -> Result<()> {
    let region = RegionCode::parse(region, "--region")?;
    let node_key = match node_key {
        Some(p) => Some(read_key(&p)?),
        None => None,
    };
    let operator_key = match operator_key {
        Some(text) => Some(operator_public_key(&text)?),
        None => None,
    };
    let person_share = match person_share {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("--person-share {}: cannot read it", p.display()))?;
            credfed_protocol::oprf::ShareKey::from_file_text(&text)
                .with_context(|| format!("--person-share {}", p.display()))?;
            Some(text)
        }
        None => None,
    };
    let done = init_data_dir(&InitOptions {
        region,
        dir: dir.to_path_buf(),
        authority_key: authority_key.to_string(),
        node_key,
        operator_key,
        person_share_text: person_share,
        p2p_port,
        api_port,
        public_port,
        listen_ip,
    })?;
    if let Some(m) = manifest {
        std::fs::copy(&m, done.dir.join("manifest.json"))
            .with_context(|| format!("copying manifest {}", m.display()))?;
    }
    let cfg = &done.config;
    let peer = peer_id_of(&done.node_key)?;
    if output == "json" {
        println!(
            "{}",
            serde_json::json!({"region": region.to_string(), "node_key": done.node_key.to_hex(), "operator_key": done.operator_key.to_hex(), "operator_key_file": done.operator_key_file, "peer_id": peer.to_string(), "config": done.dir.join("config.toml"), "addresses": cfg.p2p_listen})
        );
    } else {
        println!("created node {region} in {}", done.dir.display());
        println!("  node public key      {}", done.node_key);
        println!("  operator public key  {}", done.operator_key);
        println!("  peer id              {peer}");
        println!("  addresses            {}", cfg.p2p_listen.join(" "));
        if let Some(file) = &done.operator_key_file {
            println!(
                "the operator's signing key is in {} (0600): it registers and revokes this region's departments and the node never reads it; move it to the operator's own machine",
                file.display()
            );
        }
        println!(
            "next: send both public keys and the addresses to the federation authority, put the signed manifest at {}, set authority_key in config.toml, then run `credfed-node run --config {}`",
            done.dir.join("manifest.json").display(),
            done.dir.join("config.toml").display()
        );
    }
    Ok(())
}

async fn run(cfg: NodeConfig) -> Result<()> {
    let mut node = credfed_node::daemon::start(&cfg).await?;
    let adopted = tokio::select! {
        _ = shutdown_signal() => None,
        version = node.manifest_adopted() => Some(version),
    };
    tracing::info!("shutting down");
    node.stop().await?;
    tracing::info!("stopped cleanly");
    if let Some(version) = adopted {
        // Every part of a node (allow list, quorums, federation checkpoints, person
        // keys, catalogue) follows from the manifest it starts on: the node starts again
        // on the new one as this same process (same pid, for systemd and drills), with
        // the store made durable above (docs/decisions.md).
        tracing::info!(
            version,
            "starting again on manifest version {version} (same process)"
        );
        return Err(exec_self());
    }
    Ok(())
}

/// Replaces this process by a new run of its own binary with the same arguments and
/// environment; returns only if that failed (then the process exits with an error and
/// a service manager restarts it).
fn exec_self() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "credfed-node".into());
    // /proc/self/exe is this very binary even if its file was replaced meanwhile.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec();
    anyhow::anyhow!(
        "could not start again on the new manifest ({error}); start the node again: it runs the installed manifest"
    )
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

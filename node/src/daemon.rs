//! Starting and stopping a node: what `credfed-node run` does, as a library so that
//! tests and benchmarks can run a node in-process over a store of their choosing.
//!
//! Order matters: every file the node needs (keys, manifest, secret, certificates, audit
//! log) is read and checked first, each error naming the file and the setting; only
//! then is the store opened and verified, and only then does the node listen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::manifest::SignedManifest;
use tokio::sync::{mpsc, watch};

use crate::api::audit::Audit;
use crate::api::server::{Listener, ServerLimits, serve};
use crate::api::{ApiState, RequestLimits, router};
use crate::config::{NodeConfig, read_key};
use crate::engine::{Clock, Core, EngineConfig};
use crate::metrics::Metrics;
use crate::p2p::{self, COMMAND_CAPACITY, NetStatus, P2pConfig};
use crate::person_keys::{Budget, PersonKeyStats, PersonKeyer, Responder};
use crate::replication::ReplicationConfig;
use crate::store::{Backend, Store, StoreOptions};

/// A node running in this process.
pub struct RunningNode {
    /// The engine (for in-process tests).
    pub core: Arc<Core>,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// The router the API listener serves (in-process tests call it directly).
    pub router: axum::Router,
    /// Where the public side listens, if `public_listen` is set.
    pub public_addr: Option<SocketAddr>,
    /// The public side's router (built whether or not it listens; tests call it).
    pub public_router: axum::Router,
    shutdown: watch::Sender<bool>,
    network: tokio::task::JoinHandle<()>,
    api: tokio::task::JoinHandle<()>,
    public: Option<(tokio::task::JoinHandle<()>, PublicRuntime)>,
    adopted: watch::Receiver<Option<u64>>,
}

/// How much lower the public side's threads run than the API's (a `nice` value): under
/// contention the kernel weighs a nice-19 thread at 15 against a nice-0 thread's 1024,
/// so a public flood cannot take the cores the departments' checks need; on an idle
/// machine it has them all. Measured against nice 10 and SCHED_IDLE in
/// docs/performance.md ("Public side under a flood").
const PUBLIC_NICE: i32 = 19;

/// The public side's own runtime: `public_worker_threads` threads (and a blocking pool
/// bounded by `public_max_concurrency`), all at [`PUBLIC_NICE`]. Its budgets are
/// separate from the API's down to the CPU (docs/public.md). Shut down in the
/// background when dropped, since a runtime may not be dropped inside another.
struct PublicRuntime {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PublicRuntime {
    fn build(cfg: &NodeConfig) -> Result<PublicRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.public_worker_threads.max(1))
            .max_blocking_threads(cfg.public_max_concurrency.max(1))
            .thread_name("credfed-public")
            .on_thread_start(lower_this_threads_priority)
            .enable_all()
            .build()
            .context("the public side's runtime")?;
        Ok(PublicRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }
}

impl Drop for PublicRuntime {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

/// Lowers the calling thread's CPU priority by [`PUBLIC_NICE`] (on Linux `nice` is a
/// thread's own). Failing to is logged, not fatal: the public side then competes at
/// the API's priority, still within its own concurrency and connection budgets.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, PUBLIC_NICE)
        };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not lower the public side's thread priority"
            );
        }
    }
}

impl RunningNode {
    /// Resolves when a newer manifest has been installed while the node runs (from its
    /// file or from a member), with its version: the node must then be stopped and
    /// started again on it.
    pub async fn manifest_adopted(&mut self) -> u64 {
        match self.adopted.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or_default(),
            // The watch ended without adopting (the node stops): never resolves.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops the API and the network, answers every queued append, and makes the store
    /// durable.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let _ = self.api.await;
        if let Some((task, runtime)) = self.public {
            let _ = task.await;
            drop(runtime);
        }
        let _ = self.network.await;
        let core = self.core;
        tokio::task::spawn_blocking(move || core.shutdown())
            .await
            .context("engine shutdown")?
            .context("final store sync")
    }
}

/// This member's share of the person key, checked against the manifest's public share;
/// `None` when the manifest lists no share for this region.
fn read_person_share(
    cfg: &NodeConfig,
    region: credfed_protocol::ids::RegionCode,
    shares: &credfed_protocol::manifest::PersonKeyShares,
) -> Result<Option<Arc<credfed_protocol::oprf::ShareKey>>> {
    let Some(listed) = shares.of_region(region) else {
        return Ok(None);
    };
    let path = cfg.path(&cfg.person_share_file);
    let matches = |share: &credfed_protocol::oprf::ShareKey| {
        share.index() == listed.index && share.public() == listed.public_share
    };
    // After a ceremony the new share sits beside the old one under the ceremony's name;
    // a node started with the new manifest and the old setting says which file it is.
    let hint = || -> String {
        let dir = path.parent().unwrap_or(Path::new("."));
        let found = std::fs::read_dir(dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("person-share-") && n.ends_with(".key"))
                    && std::fs::read_to_string(p)
                        .ok()
                        .and_then(|t| credfed_protocol::oprf::ShareKey::from_file_text(&t).ok())
                        .is_some_and(|s| matches(&s))
            })
        });
        match found {
            Some(p) => format!(
                "; {} holds the share the manifest lists (a ceremony wrote it): set person_share_file = \"{}\" in the config",
                p.display(),
                p.display()
            ),
            None => "; restore the file from backup, or set person_share_lost = true and have the threshold of members repair it (docs/operator.md, \"Person keys\")".into(),
        }
    };
    if cfg.person_share_lost && !path.exists() {
        tracing::warn!(
            file = %path.display(),
            "person_share_lost: running without this member's person-key share; it answers no evaluations until the other members repair it (`credfed person-key start --repair`)"
        );
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "person_share_file = {}: cannot read it ({e}); the manifest lists a person-key share for this region{}",
            path.display(),
            hint()
        )
    })?;
    let share = credfed_protocol::oprf::ShareKey::from_file_text(&text)
        .with_context(|| format!("person_share_file = {}", path.display()))?;
    if !matches(&share) {
        if share.index() == listed.index {
            bail!(
                "person_share_file = {}: holds another share of member {} than the manifest lists for {region} (an earlier one, before a refresh, or one of another key){}",
                path.display(),
                share.index(),
                hint()
            );
        }
        bail!(
            "person_share_file = {}: holds member {}'s share, which is not the share the manifest lists for {region} (member {}){}",
            path.display(),
            share.index(),
            listed.index,
            hint()
        );
    }
    Ok(Some(Arc::new(share)))
}

fn read_text(path: &Path, setting: &str, hint: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("{setting} = {}: cannot read it; {hint}", path.display()))
}

/// What the engine is built from, read from the node's files: its key, the signed
/// manifest (verified against the pinned authority key and this machine's clock) and the
/// catalogue it carries. Shared by the daemon and by `restore`.
pub fn engine_config(cfg: &NodeConfig) -> Result<EngineConfig> {
    let region = cfg.region()?;
    let clock = Clock::new(cfg.clock_offset_ms);
    let node_key_path = cfg.path(&cfg.node_key_file);
    let node_key = read_key(&node_key_path)
        .with_context(|| format!("node_key_file = {}", node_key_path.display()))?;
    let manifest_path = cfg.path(&cfg.manifest);
    let signed: SignedManifest = serde_json::from_str(&read_text(
        &manifest_path,
        "manifest",
        "ask the federation authority for the signed manifest",
    )?)
    .with_context(|| {
        format!(
            "manifest = {}: not a signed manifest",
            manifest_path.display()
        )
    })?;
    let manifest = signed
        .verify(&cfg.authority()?, clock.now())
        .with_context(|| format!("manifest = {}", manifest_path.display()))?;
    let member = manifest.member(region).with_context(|| {
        format!(
            "region {region} is not a member of federation {} (manifest = {})",
            manifest.federation_id,
            manifest_path.display()
        )
    })?;
    if member.node_key != node_key.public() {
        bail!(
            "the manifest names node key {} for {region}, but node_key_file = {} holds {}; use the key the manifest names",
            member.node_key,
            node_key_path.display(),
            node_key.public()
        );
    }
    // The federation's policy data travels in the manifest (validated with it).
    let catalogue = manifest
        .parse_catalogue()
        .with_context(|| format!("manifest = {}", manifest_path.display()))?;
    Ok(EngineConfig {
        region,
        manifest,
        catalogue,
        calendar: WorkingCalendar::embedded()?,
        node_key,
        clock,
        group_commit_max: cfg.group_commit_max,
        signed_manifest: Some(signed),
    })
}

use crate::store::{NOTE_MANIFEST, NOTE_RUNS};

/// The same count kept beside the store, in the data directory.
pub const RUNS_FILE: &str = "store-runs";

/// Counts this start in the store and beside it. A store whose count is below the
/// file's is older than the node's last run on this machine — a store directory copied
/// back by hand, not restored with `credfed-node restore` — and is marked as restored, so
/// that the node confirms its own log with a member before writing (docs/operator.md,
/// "Restarts and no rollback"). The store is written first: a crash between the two
/// leaves the store ahead, never behind.
fn count_runs(
    store: &dyn Backend,
    region: credfed_protocol::ids::RegionCode,
    file: &Path,
) -> Result<()> {
    let in_store: u64 = store
        .note(NOTE_RUNS, region)?
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let beside: Option<u64> = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    if let Some(beside) = beside
        && in_store < beside
    {
        tracing::warn!(
            store_runs = in_store,
            last_run = beside,
            "the store is older than the node's last run here (copied back?): writes wait for a member to confirm this region's log"
        );
        store.set_note(
            crate::engine::NOTE_RESTORED,
            region,
            &format!("a store older than the node's last run here: run {in_store} of {beside}"),
        )?;
    }
    let next = in_store.max(beside.unwrap_or(0)) + 1;
    store.set_note(NOTE_RUNS, region, &next.to_string())?;
    store.sync()?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{next}\n"))
        .and_then(|()| std::fs::rename(&tmp, file))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

/// Refuses to start on a manifest older than one this node has run on, or on other
/// content under the same version (docs/protocol.md §7), then records this one as the
/// highest. Kept in the store, not beside the manifest file: an operator copying an old
/// manifest back cannot copy the record back with it.
fn keep_manifest_forward(
    store: &dyn Backend,
    manifest: &credfed_protocol::manifest::Manifest,
    region: credfed_protocol::ids::RegionCode,
    path: &Path,
) -> Result<()> {
    let held = store.note(NOTE_MANIFEST, region)?;
    if let Some(held) = &held {
        let (version, hash) = held
            .split_once(' ')
            .and_then(|(v, h)| {
                Some((
                    v.parse::<u64>().ok()?,
                    credfed_protocol::crypto::Hash256::from_hex(h).ok()?,
                ))
            })
            .with_context(|| {
                format!("the store's record of the manifest run on is damaged: {held:?}")
            })?;
        manifest
            .may_follow(version, &hash)
            .with_context(|| format!("manifest = {}", path.display()))?;
    }
    let now = format!("{} {}", manifest.version, manifest.hash().to_hex());
    if held.as_deref() != Some(now.as_str()) {
        store.set_note(NOTE_MANIFEST, region, &now)?;
        store.sync()?;
    }
    Ok(())
}

/// Verifies `offered` as the successor of the manifest the node's config names and puts
/// it in its place, keeping the old file as `<name>.replaced-<ms>`. Returns what it did.
/// Refuses (naming the rule) a manifest signed by another authority, expired, issued
/// ahead of the clock, not naming this node's key for its region, for another
/// federation, or not newer than the one in use.
pub fn install_manifest(cfg: &NodeConfig, offered: &Path) -> Result<String> {
    let text = read_text(
        offered,
        "manifest",
        "ask the federation authority for the signed manifest",
    )?;
    install_manifest_text(cfg, &text, &offered.display().to_string()).map(|i| i.report)
}

/// What [`install_manifest_text`] installed.
pub struct Installed {
    /// The version now in the manifest file.
    pub version: u64,
    /// What was done, for the operator.
    pub report: String,
}

fn read_signed_manifest(p: &Path) -> Result<SignedManifest> {
    serde_json::from_str(&read_text(
        p,
        "manifest",
        "ask the federation authority for the signed manifest",
    )?)
    .with_context(|| format!("{}: not a signed manifest", p.display()))
}

/// [`install_manifest`] for a manifest's text already read: `source` names where it
/// came from in errors (a file, or the member that sent it). The text is installed as
/// it is (checked, never rewritten).
pub fn install_manifest_text(cfg: &NodeConfig, text: &str, source: &str) -> Result<Installed> {
    let signed: SignedManifest =
        serde_json::from_str(text).with_context(|| format!("{source}: not a signed manifest"))?;
    let clock = Clock::new(cfg.clock_offset_ms);
    let path = cfg.path(&cfg.manifest);
    let in_use = read_signed_manifest(&path)?;
    let authority = cfg.authority()?;
    let held = in_use
        .verify(&authority, clock.now())
        .or_else(|_| {
            // An expired manifest in use is what a new one replaces: its signature is
            // still checked, against a time inside its validity.
            let m: credfed_protocol::manifest::Manifest = credfed_protocol::codec::decode(
                &in_use.manifest,
                credfed_protocol::limits::MAX_MANIFEST_BYTES,
                "manifest",
            )?;
            in_use
                .verify(&authority, m.issued_at)
                .map_err(anyhow::Error::from)
        })
        .with_context(|| format!("the manifest in use ({})", path.display()))?;
    let new = successor(cfg, &held, &signed, clock.now(), source)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let kept = path.with_extension(format!("json.replaced-{stamp}"));
    std::fs::copy(&path, &kept).with_context(|| format!("keeping {}", path.display()))?;
    crate::config::write_atomically(&path, text.as_bytes(), 0o644)?;
    let report = format!(
        "installed manifest version {} (was {}; kept as {}), {} members, expires {}; a running node adopts it within {} s and its members fetch it from it, a stopped one runs it when started",
        new.version,
        held.version,
        kept.display(),
        new.members.len(),
        new.expires_at.cst_string(),
        MANIFEST_CHECK.as_secs()
    );
    Ok(Installed {
        version: new.version,
        report,
    })
}

/// Verifies `signed` as a manifest this node may run after `held`: signed by the
/// authority `held` names (which the node pins), unexpired, of the same federation, a
/// higher version, and naming this node's key for its region.
fn successor(
    cfg: &NodeConfig,
    held: &credfed_protocol::manifest::Manifest,
    signed: &SignedManifest,
    now: credfed_protocol::time::Timestamp,
    source: &str,
) -> Result<credfed_protocol::manifest::Manifest> {
    let region = cfg.region()?;
    let new = signed
        .verify_update(held, now)
        .with_context(|| source.to_string())?;
    let node_key = read_key(&cfg.path(&cfg.node_key_file))?;
    if new.member(region).map(|m| m.node_key) != Some(node_key.public()) {
        bail!(
            "{source}: does not name this node's key for {region}; a node cannot run on a manifest that leaves it out"
        );
    }
    Ok(new)
}

/// How often a running node looks whether its manifest file changed
/// (`credfed-node install-manifest` put a newer one in place).
pub const MANIFEST_CHECK: Duration = Duration::from_secs(5);

/// Watches for a newer manifest while the node runs: the file replaced by
/// `install-manifest`, or one a member runs and sent (`p2p::ManifestOffer`). A newer
/// manifest that verifies is installed and announced on `adopted`; the caller stops the
/// node and starts it again on it (`credfed-node run` executes itself anew, same pid:
/// docs/decisions.md). Anything else is refused, logged (once per manifest) and shown in
/// `/v1/status` as `manifest_refused`; the node keeps running the version it runs, and
/// never goes back.
struct ManifestWatch {
    cfg: NodeConfig,
    core: Arc<Core>,
    offers: mpsc::Receiver<p2p::ManifestOffer>,
    status: Arc<Mutex<NetStatus>>,
    adopted: watch::Sender<Option<u64>>,
    shutdown: watch::Receiver<bool>,
}

impl ManifestWatch {
    async fn run(mut self) {
        let path = self.cfg.path(&self.cfg.manifest);
        let mut seen = modified(&path);
        let mut refused: Option<credfed_protocol::crypto::Hash256> = None;
        let mut tick = tokio::time::interval(MANIFEST_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let outcome = tokio::select! {
                _ = self.shutdown.changed() => return,
                Some(offer) = self.offers.recv() => {
                    let hash = offer.signed.hash();
                    if refused == Some(hash) {
                        continue;
                    }
                    let cfg = self.cfg.clone();
                    let source = format!("the manifest member {} runs", offer.from);
                    let text = match serde_json::to_string_pretty(&offer.signed) {
                        Ok(t) => t,
                        Err(_) => continue,
                    };
                    let installed = tokio::task::spawn_blocking(move || {
                        install_manifest_text(&cfg, &text, &source)
                    })
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("installing: {e}")));
                    // Whatever happened, the file this task wrote is not news to it.
                    seen = modified(&path);
                    (hash, false, installed.map(|i| (i.version, i.report)))
                }
                _ = tick.tick() => {
                    let now_modified = modified(&path);
                    if now_modified == seen {
                        continue;
                    }
                    seen = now_modified;
                    let Ok(text) = std::fs::read_to_string(&path) else { continue };
                    let Ok(signed) = serde_json::from_str::<SignedManifest>(&text) else {
                        tracing::warn!(file = %path.display(), "the manifest file changed but is not a signed manifest; the node keeps running version {}", self.core.manifest().version);
                        continue;
                    };
                    let hash = signed.hash();
                    if self.core.signed_manifest().map(SignedManifest::hash) == Some(hash) {
                        // The file holds the manifest the node runs again (a refused
                        // file put right): nothing is wrong with it any more.
                        if let Ok(mut s) = self.status.lock() {
                            s.manifest_refused = None;
                        }
                        refused = None;
                        continue;
                    }
                    if refused == Some(hash) {
                        continue;
                    }
                    let source = path.display().to_string();
                    let checked = successor(&self.cfg, self.core.manifest(), &signed, self.core.now(), &source)
                        .map(|m| (m.version, format!("{source} holds manifest version {}", m.version)));
                    (hash, true, checked)
                }
            };
            match outcome {
                (_, _, Ok((version, said))) => {
                    tracing::info!(
                        version,
                        running = self.core.manifest().version,
                        "{said}; adopting it: the node stops and starts again on it"
                    );
                    let _ = self.adopted.send(Some(version));
                    return;
                }
                (hash, from_file, Err(e)) => {
                    refused = Some(hash);
                    let not_newer = e.chain().any(|c| {
                        matches!(
                            c.downcast_ref::<credfed_protocol::manifest::ManifestError>(),
                            Some(credfed_protocol::manifest::ManifestError::NotNewer { .. })
                        )
                    });
                    if not_newer && !from_file {
                        // A member asked before it moved on: nothing to adopt.
                        tracing::debug!(error = %format!("{e:#}"), "not a newer manifest");
                        continue;
                    }
                    // A file put back to an older version is refused here as it would be
                    // at the next start: the node never goes back.
                    let why = format!("{e:#}");
                    tracing::warn!(error = %why, "a newer manifest was refused; the node keeps running version {}", self.core.manifest().version);
                    if let Ok(mut s) = self.status.lock() {
                        s.manifest_refused = Some(why);
                    }
                }
            }
        }
    }
}

/// Opens (or creates) the store under `data_dir/store` with the config's engine and
/// cache budget.
pub fn open_store(cfg: &NodeConfig) -> Result<Store> {
    let dir = cfg.data_dir.join("store");
    let options = StoreOptions {
        engine: cfg.store_engine.parse().map_err(anyhow::Error::msg)?,
        cache_bytes: match cfg.store_cache_mib {
            0 => crate::store::machine_cache_bytes(),
            mib => mib << 20,
        },
        compact: cfg.store_compact_at_start,
    };
    let store = Store::open_with(&dir, &options)
        .with_context(|| format!("opening store {}", dir.display()))?;
    tracing::info!(
        engine = store.engine().name(),
        cache_mib = options.cache_bytes >> 20,
        "store opened"
    );
    Ok(store)
}

/// Starts a node over the store in its data directory.
pub async fn start(cfg: &NodeConfig) -> Result<RunningNode> {
    start_with(cfg, None).await
}

/// Starts a node; `store` replaces the one in the data directory (tests wrap it to
/// inject faults).
pub async fn start_with(cfg: &NodeConfig, store: Option<Box<dyn Backend>>) -> Result<RunningNode> {
    // Both rustls providers may be linked into this binary; pick one explicitly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cfg.validate()?;
    let engine_config = engine_config(cfg)?;
    let region = engine_config.region;
    let manifest = &engine_config.manifest;
    let node_secret = engine_config.node_key.secret_bytes();
    // Person keys (docs/privacy.md): this member's share of the threshold key, when the
    // manifest lists one for this region.
    let person_share = match &manifest.person_key {
        Some(pk) => read_person_share(cfg, region, pk)?,
        None => None,
    };
    let tls = Arc::new(api_tls_config(cfg)?);
    for (which, path) in [
        ("server certificate", cfg.path(&cfg.tls_cert)),
        ("CA certificate", cfg.path(&PathBuf::from("api-ca.pem"))),
    ] {
        if let Some((left, last)) = crate::config::cert_days_left(&path, engine_config.clock.now())
            && left < crate::api::CERT_WARNING_DAYS
        {
            tracing::warn!(
                "the API's {which} ({}) ends at {last}, in {left} days: renew it (docs/operator.md, \"Certificates\")",
                path.display()
            );
        }
    }
    let audit_path = cfg.data_dir.join("audit.log");
    let audit = Arc::new(Audit::open_with(
        &audit_path,
        crate::api::audit::AuditRotation {
            max_bytes: cfg.audit_rotate_mib << 20,
            max_age_ms: i64::try_from(cfg.audit_rotate_days).unwrap_or(366) * 86_400_000,
            retention_ms: i64::try_from(cfg.audit_retention_days).unwrap_or(36_600) * 86_400_000,
        },
    )?);
    let api_addr: SocketAddr = cfg.api_addr()?;
    let listen = cfg
        .p2p_listen
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("p2p_listen: {a:?} is not a multiaddress"))
        })
        .collect::<Result<Vec<libp2p::Multiaddr>>>()?;

    let store = match store {
        Some(s) => s,
        None => Box::new(open_store(cfg)?),
    };
    keep_manifest_forward(&*store, manifest, region, &cfg.path(&cfg.manifest))?;
    count_runs(&*store, region, &cfg.data_dir.join(RUNS_FILE))?;
    if let Some(warning) = crate::api::manifest_warning(manifest, engine_config.clock.now()) {
        tracing::warn!("{warning}");
    }
    let started = std::time::Instant::now();
    let fed = manifest.federation_id.clone();
    let report = tokio::task::spawn_blocking(move || {
        let r = store.verify_chains(&fed, &mut |r, n| {
            tracing::info!(region = %r, verified = n, "verifying chains")
        });
        r.map(|r| (r, store))
    })
    .await
    .context("chain verification")?
    .context("the store failed verification; restore a backup or move the store away to re-sync from peers")?;
    let (report, store) = report;
    tracing::info!(
        regions = report.regions,
        envelopes = report.envelopes,
        ms = started.elapsed().as_millis() as u64,
        "store chains verified"
    );

    let metrics = Arc::new(Metrics::default());
    let (core, links) =
        Core::start(store, engine_config, metrics.clone()).context("starting the engine")?;

    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| {
            format!(
                "api_listen = {api_addr}: cannot listen (in use, or not an address of this host?)"
            )
        })?;
    let api_addr = listener.local_addr()?;
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let person_key_shares = core.manifest().person_key.clone();
    let person_key_stats = Arc::new(PersonKeyStats::default());
    let person_key_peers = core
        .manifest()
        .members
        .iter()
        .map(|m| Ok((m.region, p2p::peer_id_of(&m.node_key)?)))
        .collect::<Result<std::collections::BTreeMap<_, _>>>()?;
    let status = Arc::new(Mutex::new(NetStatus::default()));
    // Person-key ceremonies write new shares beside the share in use.
    let share_path = cfg.path(&cfg.person_share_file);
    let ceremonies = Arc::new(Mutex::new(crate::ceremonies::Ceremonies::new(
        region,
        share_path
            .parent()
            .map_or_else(|| cfg.data_dir.clone(), Path::to_path_buf),
        person_share.clone(),
        person_key_shares.clone(),
        person_key_shares.as_ref().map_or(
            (
                credfed_protocol::manifest::DEFAULT_PERSON_EVALUATIONS_PER_DAY,
                credfed_protocol::manifest::DEFAULT_PERSON_EVALUATION_BURST,
            ),
            |p| (p.evaluations_per_day, p.burst),
        ),
    )));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (manifest_offers, offers) = mpsc::channel(1);
    let (adopted_tx, adopted) = watch::channel(None);
    tokio::spawn(
        ManifestWatch {
            cfg: cfg.clone(),
            core: core.clone(),
            offers,
            status: status.clone(),
            adopted: adopted_tx,
            shutdown: shutdown_rx.clone(),
        }
        .run(),
    );
    let network = p2p::spawn(
        core.clone(),
        P2pConfig {
            node_secret,
            listen,
            replication: ReplicationConfig {
                heads_interval: Duration::from_millis(cfg.heads_interval_ms),
                ..ReplicationConfig::default()
            },
            redial_interval: Duration::from_millis(cfg.redial_interval_ms),
            witness_round_gap: Duration::from_millis(cfg.witness_round_gap_ms),
            liveness_timeout: Duration::from_millis(cfg.liveness_timeout_ms),
            solo: cfg.solo,
            manifest_offers: Some(manifest_offers),
        },
        links,
        command_rx,
        status.clone(),
        p2p::PersonKeyLinks {
            responder: Responder {
                share: person_share.clone(),
                budget: Budget::new(
                    person_key_shares
                        .as_ref()
                        .map_or(1, |p| p.evaluations_per_day),
                    person_key_shares.as_ref().map_or(1, |p| p.burst),
                ),
                stats: person_key_stats.clone(),
            },
            audit: audit.clone(),
            ceremonies: ceremonies.clone(),
        },
        shutdown_rx.clone(),
    )?;
    let person_keys = Arc::new(
        PersonKeyer::new(
            region,
            person_key_shares,
            person_share,
            person_key_peers,
            command_tx.clone(),
            status.clone(),
            person_key_stats,
        )
        .map_err(|e| anyhow::anyhow!(e))?,
    );
    let state = Arc::new(ApiState {
        core: core.clone(),
        commands: command_tx,
        status,
        audit,
        person_keys,
        ceremonies,
        metrics_public: cfg.metrics_public,
        clients_dir: cfg.data_dir.join("clients"),
        client_ids: Default::default(),
        cert_files: vec![
            ("server", cfg.path(&cfg.tls_cert)),
            ("ca", cfg.path(&PathBuf::from("api-ca.pem"))),
        ],
        drill_faults: cfg.drill_faults,
        event_streams: Arc::new(tokio::sync::Semaphore::new(
            crate::api::events::MAX_EVENT_STREAMS,
        )),
    });
    let public_router = crate::public::router(
        state.clone(),
        crate::public::PublicLimits {
            requests_per_minute: cfg.public_requests_per_minute,
            max_concurrency: cfg.public_max_concurrency,
        },
    );
    let app = router(
        state,
        RequestLimits {
            max_body: cfg.api_max_body_bytes,
            max_concurrency: cfg.api_max_concurrency,
            body_timeout: Duration::from_millis(cfg.api_request_body_timeout_ms),
        },
        Duration::from_secs(cfg.console_session_seconds),
    );
    let limits = ServerLimits {
        handshake: Duration::from_millis(cfg.api_handshake_timeout_ms),
        request_head: Duration::from_millis(cfg.api_request_head_timeout_ms),
        request_body: Duration::from_millis(cfg.api_request_body_timeout_ms),
        per_client: cfg.api_max_connections_per_client,
        total: cfg.api_max_connections,
        handshakes: cfg.api_max_handshakes,
        anonymous: cfg.api_max_anonymous_connections,
        per_network: cfg.api_max_connections_per_network,
        per_certificate: cfg.api_max_connections_per_certificate,
        drain: Duration::from_secs(5),
        listener: Listener::Api,
    };
    // The public side: its own listener, connection budgets and TLS without client
    // certificates (docs/public.md).
    let (public_addr, public) = if cfg.public_listen.is_empty() {
        (None, None)
    } else {
        let addr: SocketAddr = cfg.public_listen.parse().with_context(|| {
            format!("public_listen = {:?}: expected IP:port", cfg.public_listen)
        })?;
        // Bound here, registered with the public runtime's reactor inside it.
        let public_listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "public_listen = {addr}: cannot listen (in use, or not an address of this host?)"
            )
        })?;
        public_listener.set_nonblocking(true)?;
        let addr = public_listener.local_addr()?;
        tracing::info!(%addr, "public side listening (HTTPS, no client certificates)");
        let public_limits = ServerLimits {
            per_client: cfg.public_max_connections_per_client,
            // Nobody shows a certificate on the public side: every connection is in
            // the anonymous pools.
            total: cfg.public_max_connections,
            handshakes: cfg.public_max_connections,
            anonymous: cfg.public_max_connections,
            per_network: cfg.public_max_connections_per_client.saturating_mul(8),
            listener: Listener::Public,
            ..limits
        };
        let runtime = PublicRuntime::build(cfg)?;
        let tls = Arc::new(public_tls_config(cfg)?);
        let (router, metrics, shutdown) =
            (public_router.clone(), metrics.clone(), shutdown_rx.clone());
        let task = runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(public_listener) {
                Ok(l) => serve(l, tls, router, public_limits, metrics, shutdown).await,
                Err(e) => tracing::error!(error = %e, "the public side cannot listen"),
            }
        });
        (Some(addr), Some((task, runtime)))
    };
    tracing::info!(%api_addr, region = %region, "API listening (HTTPS)");
    let api = tokio::spawn(serve(
        listener,
        tls,
        app.clone(),
        limits,
        metrics,
        shutdown_rx,
    ));
    Ok(RunningNode {
        core,
        api_addr,
        router: app,
        public_addr,
        public_router,
        shutdown: shutdown_tx,
        network,
        api,
        public,
        adopted,
    })
}

/// How often a handshake looks whether the server certificate's file changed.
const CERT_RELOAD_CHECK: Duration = Duration::from_secs(5);

/// The server certificate, taken again from its files when they change: a renewed
/// certificate (`credfed-node rotate-server-cert`) is served within
/// [`CERT_RELOAD_CHECK`] without a restart. A pair that cannot be read or does not
/// match is logged and the one in use kept.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    state: std::sync::RwLock<ServedCertificate>,
}

#[derive(Debug)]
struct ServedCertificate {
    key: Arc<rustls::sign::CertifiedKey>,
    modified: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn certified_key(cfg_cert: &Path, cfg_key: &Path) -> Result<Arc<rustls::sign::CertifiedKey>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cfg_cert)
        .with_context(|| format!("tls_cert = {}: cannot read it", cfg_cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls_cert = {}: not a PEM certificate", cfg_cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(cfg_key).with_context(|| {
        format!(
            "tls_key = {}: cannot read a PEM private key",
            cfg_key.display()
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = rustls::sign::CertifiedKey::from_der(certs, key, &provider).with_context(|| {
        format!(
            "tls_cert and tls_key ({} and {}) do not match",
            cfg_cert.display(),
            cfg_key.display()
        )
    })?;
    Ok(Arc::new(key))
}

impl ReloadingCertificate {
    /// Loads the pair named by the config.
    pub fn load(cfg: &NodeConfig) -> Result<ReloadingCertificate> {
        let (cert_path, key_path) = (cfg.path(&cfg.tls_cert), cfg.path(&cfg.tls_key));
        let key = certified_key(&cert_path, &key_path)?;
        Ok(ReloadingCertificate {
            state: std::sync::RwLock::new(ServedCertificate {
                key,
                modified: modified(&cert_path),
                checked: std::time::Instant::now(),
            }),
            cert_path,
            key_path,
        })
    }

    fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        let now = std::time::Instant::now();
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(s.checked) < CERT_RELOAD_CHECK {
                return s.key.clone();
            }
        }
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(s.checked) >= CERT_RELOAD_CHECK {
            s.checked = now;
            let m = modified(&self.cert_path);
            if m != s.modified {
                // The key file is renamed into place before the certificate: once the
                // certificate changed, both are the new pair.
                match certified_key(&self.cert_path, &self.key_path) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert_path.display(), "serving the renewed API server certificate");
                        s.key = key;
                        s.modified = m;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "the API server certificate changed but cannot be used; serving the previous one");
                        s.modified = m;
                    }
                }
            }
        }
        s.key.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

/// Server TLS for the public side: the node's server certificate, no client
/// certificates asked (a browser would otherwise offer its user's).
pub fn public_tls_config(cfg: &NodeConfig) -> Result<rustls::ServerConfig> {
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ReloadingCertificate::load(cfg)?));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

/// Server TLS with optional client certificates from the node's API CA: public endpoints
/// answer without one, everything else checks it (see `api::authenticate`). Offers
/// HTTP/1.1 only (see `api::server`).
pub fn api_tls_config(cfg: &NodeConfig) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca_path = cfg.path(&PathBuf::from("api-ca.pem"));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca_path).with_context(|| {
        format!(
            "{}: cannot read the API CA certificate (written by `credfed-node init`)",
            ca_path.display()
        )
    })? {
        roots.add(c.with_context(|| format!("{}: not a PEM certificate", ca_path.display()))?)?;
    }
    // During a CA rollover, client certificates of the next CA are trusted as well.
    let next = cfg.path(&PathBuf::from(crate::config::NEXT_CA));
    if next.exists() {
        for c in CertificateDer::pem_file_iter(&next)
            .with_context(|| format!("{}: cannot read it", next.display()))?
        {
            roots.add(c.with_context(|| format!("{}: not a PEM certificate", next.display()))?)?;
        }
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let mut server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ReloadingCertificate::load(cfg)?));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

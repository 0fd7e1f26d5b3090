//! Online backups and restores (docs/operator.md, "Backups").
//!
//! A backup needs no pause and no file-system snapshot: every log is append-only, so the
//! records up to heads read at one moment are a consistent state however many are
//! appended meanwhile, and everything else in the store (folds, indexes, trees, maps)
//! follows from the logs. `backup` reads the heads and then every region's records
//! through the node's API with the operator certificate (the own log only as far as it
//! is durable), and copies the data directory's other files (keys, certificates,
//! configuration, manifest, audit log) with their modes. `restore` builds a new store
//! from those records through admission — every signature and chain link verified
//! again, every index rebuilt — and marks it restored, so that the node waits for a
//! member to confirm its own log before it writes (the federation may hold records of
//! it newer than the backup).
//!
//! Not in a backup: equivocation proofs and witnessed checkpoints (members send them
//! again), and the per-day counts of checks answered since the last report (kept only in
//! the store; a restored node counts from zero).

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use credfed_client::ApiClient;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::limits::MAX_ENVELOPE_BYTES;
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::engine::{Core, EngineEvent, IngestJob};
use crate::metrics::Metrics;

/// The backup's description, `backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupManifest {
    /// Format of this directory; a restore refuses one it does not know.
    pub format: u32,
    /// Federation of the node backed up.
    pub federation_id: String,
    /// Region of the node backed up.
    pub region: String,
    /// When the heads were read (CST).
    pub taken_at: String,
    /// Every region's head the backup holds: sequence number and envelope hash (hex).
    pub heads: BTreeMap<String, BackedUpHead>,
    /// The data directory's files copied (relative paths).
    pub files: Vec<String>,
}

/// One region's head in a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackedUpHead {
    /// Last sequence number held.
    pub seq: u64,
    /// Hash of that envelope, hex.
    pub hash: String,
}

/// The backup format this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// `backup.json` larger than this is not one (31 regions' heads and a few hundred file
/// names take a few KB).
const MAX_BACKUP_MANIFEST_BYTES: u64 = 1 << 20;

/// How long a backup waits for the node's own log to become durable up to the head it
/// read (one group commit: milliseconds).
const OWN_LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Records per API page (the API's maximum).
const PAGE: u64 = 256;

/// Records per range given to the writer while restoring.
const RESTORE_CHUNK: usize = 1024;

/// What `backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// Where.
    pub dir: PathBuf,
    /// Records per region.
    pub records: BTreeMap<String, u64>,
    /// Files copied from the data directory.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The data directory restored.
    pub data_dir: PathBuf,
    /// Records admitted per region.
    pub records: BTreeMap<String, u64>,
    /// Files restored.
    pub files: usize,
}

fn log_file(dir: &Path, region: &str) -> PathBuf {
    dir.join("logs").join(format!("{region}.log"))
}

/// Files of the data directory that belong in a backup: everything but the store
/// (backed up as records) and what describes only a running process.
fn backed_up_files(data_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = data_dir.join(&rel);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let e = e?;
            let name = rel.join(e.file_name());
            let t = e.file_type()?;
            if rel.as_os_str().is_empty() && (e.file_name() == "store" || e.file_name() == "pid") {
                continue;
            }
            if t.is_dir() {
                stack.push(name);
            } else if t.is_file() {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies `from` to `to` (created new), keeping its permission bits.
fn copy_file(from: &Path, to: &Path) -> Result<u64> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let n = std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(n)
}

/// Backs up the node whose configuration is `cfg` into `to` (which must not exist),
/// reading its records through `client` (the operator's). `progress` is told about each
/// region as it goes.
pub async fn backup(
    cfg: &NodeConfig,
    client: &ApiClient,
    to: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BackupReport> {
    if to.exists() {
        bail!(
            "--to {}: already exists; a backup goes into a new directory",
            to.display()
        );
    }
    let status = client.status().await.context(
        "asking the node for its status (is it running, and is the operator certificate in <data-dir>/operator/?)",
    )?;
    let heads = client.heads().await.context("reading the node's heads")?;
    let taken_at = credfed_protocol::time::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
    .cst_string();
    create_private_dir(to)?;
    create_private_dir(&to.join("logs"))?;
    let mut report = BackupReport {
        dir: to.to_path_buf(),
        records: BTreeMap::new(),
        files: 0,
        bytes: 0,
    };
    let mut held = BTreeMap::new();
    for (region, head) in &heads {
        RegionCode::parse(region, "heads")?;
        let path = log_file(to, region);
        let mut out = BufWriter::new(
            std::fs::File::create_new(&path)
                .with_context(|| format!("creating {}", path.display()))?,
        );
        let mut next = 1u64;
        let mut last_hash = String::new();
        let mut waited_since = None;
        while next <= head.seq {
            let want = (head.seq - next + 1).min(PAGE);
            let page: credfed_client::LogPage = client
                .get_json(&format!("/v1/log/{region}?from={next}&limit={want}"))
                .await
                .with_context(|| format!("reading region {region}'s log from {next}"))?;
            if page.envelopes.is_empty() {
                // The node's own log is served only as far as it is durable: the
                // last records read in the heads may be one fsync away.
                let since = *waited_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > OWN_LOG_WAIT {
                    bail!(
                        "region {region}: the node served its log only up to {} of {}; is its disk failing? (credfed-node status)",
                        next - 1,
                        head.seq
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            for hex_env in &page.envelopes {
                let bytes = hex::decode(hex_env)
                    .with_context(|| format!("region {region} #{next}: not hex"))?;
                write_record(&mut out, &bytes)?;
                report.bytes += bytes.len() as u64 + 4;
                last_hash =
                    credfed_protocol::envelope::envelope_hash(&status.federation_id, &bytes)
                        .to_hex();
                next += 1;
            }
        }
        out.flush()?;
        out.into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?
            .sync_all()?;
        report.records.insert(region.clone(), head.seq);
        held.insert(
            region.clone(),
            BackedUpHead {
                seq: head.seq,
                hash: last_hash,
            },
        );
        progress(&format!("region {region}: {} records", head.seq));
    }
    let files = backed_up_files(&cfg.data_dir)?;
    let mut names = Vec::new();
    for rel in &files {
        report.bytes += copy_file(&cfg.data_dir.join(rel), &to.join("files").join(rel))?;
        names.push(rel.to_string_lossy().into_owned());
    }
    report.files = names.len();
    progress(&format!("{} files of the data directory", names.len()));
    let manifest = BackupManifest {
        format: BACKUP_FORMAT,
        federation_id: status.federation_id.clone(),
        region: cfg.region.clone(),
        taken_at,
        heads: held,
        files: names,
    };
    let path = to.join("backup.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// One record in a log file: length (u32, big-endian), then the envelope's bytes as the
/// region's node signed them.
fn write_record(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len()).context("envelope larger than 4 GiB")?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    Ok(())
}

/// Reads the next record of a log file; `None` at its end. Bounded: a length above the
/// largest envelope is refused, not allocated.
fn read_record(input: &mut impl Read, what: &str) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ENVELOPE_BYTES {
        bail!(
            "{what}: a record of {len} bytes exceeds the largest envelope ({MAX_ENVELOPE_BYTES}); the file is damaged"
        );
    }
    let mut bytes = vec![0u8; len];
    input
        .read_exact(&mut bytes)
        .with_context(|| format!("{what}: cut short"))?;
    Ok(Some(bytes))
}

/// Reads `backup.json` from a backup directory.
pub fn read_manifest(from: &Path) -> Result<BackupManifest> {
    let path = from.join("backup.json");
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("{}: not a credfed backup (no backup.json)", from.display()))?;
    if meta.len() > MAX_BACKUP_MANIFEST_BYTES {
        bail!("{}: larger than any backup description", path.display());
    }
    let m: BackupManifest = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{}: not a backup description", path.display()))?;
    if m.format != BACKUP_FORMAT {
        bail!(
            "{}: backup format {} (this build reads {BACKUP_FORMAT}); restore with the release that wrote it",
            path.display(),
            m.format
        );
    }
    Ok(m)
}

/// Restores the backup in `from` into `data_dir`, which must be empty or absent. The
/// configuration is the backup's, with `data_dir` set to the one given.
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<RestoreReport> {
    let manifest = read_manifest(from)?;
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        bail!(
            "--data-dir {}: not empty; restore into an empty directory (move what is there away first)",
            data_dir.display()
        );
    }
    create_private_dir(data_dir)?;
    for rel in &manifest.files {
        let rel = Path::new(rel);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!(
                "backup.json: file {} is not a plain relative path",
                rel.display()
            );
        }
        copy_file(&from.join("files").join(rel), &data_dir.join(rel))?;
    }
    let config_path = data_dir.join("config.toml");
    let mut cfg =
        NodeConfig::load(&config_path).with_context(|| "the backup's config.toml".to_string())?;
    if cfg.data_dir != data_dir {
        cfg.data_dir = data_dir.to_path_buf();
        cfg.save(&config_path)?;
    }
    if cfg.region != manifest.region {
        bail!(
            "backup.json names region {}, its config.toml {}",
            manifest.region,
            cfg.region
        );
    }
    let engine = crate::daemon::engine_config(&cfg)?;
    if engine.manifest.federation_id != manifest.federation_id {
        bail!(
            "backup.json names federation {}, its manifest {}",
            manifest.federation_id,
            engine.manifest.federation_id
        );
    }
    let store = crate::daemon::open_store(&cfg)?;
    let (core, mut links) = Core::start(Box::new(store), engine, Arc::new(Metrics::default()))?;
    let result = admit_logs(&core, &mut links, from, &manifest, progress).await;
    let restored = match result {
        Ok(records) => {
            core.mark_restored(&format!(
                "taken at {} with {} records",
                manifest.taken_at,
                records.values().sum::<u64>()
            ))?;
            Ok(records)
        }
        Err(e) => Err(e),
    };
    drop(links);
    core.shutdown()?;
    Ok(RestoreReport {
        data_dir: data_dir.to_path_buf(),
        records: restored?,
        files: manifest.files.len(),
    })
}

/// Gives every region's records to the writer as ranges, round-robin across regions
/// (records may depend on other regions' earlier ones), until every head is the
/// backup's.
async fn admit_logs(
    core: &Core,
    links: &mut crate::engine::EngineLinks,
    from: &Path,
    manifest: &BackupManifest,
    progress: &mut dyn FnMut(&str),
) -> Result<BTreeMap<String, u64>> {
    let peer = libp2p::PeerId::random();
    let mut readers = BTreeMap::new();
    for (region, head) in &manifest.heads {
        let r = RegionCode::parse(region, "backup.json heads")?;
        let path = log_file(from, region);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("{}: the backup lacks this region's log", path.display()))?;
        readers.insert(r, (BufReader::new(file), 1u64, head.clone(), Vec::new()));
    }
    loop {
        let mut progressed = false;
        let mut done = true;
        for (r, (reader, next, head, pending)) in readers.iter_mut() {
            let held = core.heads()?.get(r).map_or(0, |h| h.seq);
            if held >= head.seq {
                continue;
            }
            done = false;
            // Records the writer did not take (waiting for another region's) are
            // given again, from the first one it lacks.
            let skip = usize::try_from(held + 1 - (*next - pending.len() as u64))?;
            pending.drain(..skip.min(pending.len()));
            while pending.len() < RESTORE_CHUNK && *next <= head.seq {
                let what = format!("region {r} #{next}");
                match read_record(reader, &what)? {
                    Some(bytes) => pending.push(bytes),
                    None => bail!(
                        "{what}: the log file ends before the backup's head {}",
                        head.seq
                    ),
                }
                *next += 1;
            }
            links
                .ingest
                .send(IngestJob::Range {
                    peer,
                    region: *r,
                    from: None,
                    envelopes: pending.clone(),
                })
                .await
                .map_err(|_| anyhow::anyhow!("the writer stopped"))?;
            let forked = loop {
                match links.events.recv().await {
                    Some(EngineEvent::RangeDone { forked, .. }) => break forked,
                    Some(_) => continue,
                    None => bail!("the writer stopped"),
                }
            };
            let now = core.heads()?.get(r).map_or(0, |h| h.seq);
            if forked {
                bail!(
                    "region {r}: record {} of the backup was refused (a damaged or edited log file); see the log above",
                    now + 1
                );
            }
            if now > held {
                progressed = true;
                progress(&format!("region {r}: {now} of {}", head.seq));
            }
        }
        if done {
            break;
        }
        if !progressed {
            let stuck: Vec<String> = readers
                .iter()
                .filter_map(|(r, (_, _, head, _))| {
                    let held = core.heads().ok()?.get(r).map_or(0, |h| h.seq);
                    (held < head.seq).then(|| format!("{r} at {held} of {}", head.seq))
                })
                .collect();
            bail!(
                "the backup's records no longer advance ({}): a record refers to one the backup lacks",
                stuck.join(", ")
            );
        }
    }
    let mut records = BTreeMap::new();
    let heads = core.heads()?;
    for (region, want) in &manifest.heads {
        let r = RegionCode::parse(region, "backup.json heads")?;
        let got = heads.get(&r);
        let got_hash = got.map(|h| h.hash.to_hex()).unwrap_or_default();
        if got.map(|h| h.seq) != Some(want.seq) || got_hash != want.hash {
            bail!(
                "region {region}: restored head {} {got_hash} is not the backup's {} {}",
                got.map_or(0, |h| h.seq),
                want.seq,
                want.hash
            );
        }
        records.insert(region.clone(), want.seq);
    }
    Ok(records)
}

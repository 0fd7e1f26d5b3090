//! The audit log: one JSON line per API call, written before the answer leaves.
//!
//! Policy when the log cannot be written (disk full, file removed read-only): the call
//! is answered, the failure counted (`credfed_audit_failures_total`) and shown in
//! `/v1/status` (`audit_ok`), and **writes are refused** (503 `audit_unavailable`) until
//! an audit line is written again. Reads go on: refusing a check because a log line
//! cannot be written would stop departments' approvals for the operator's disk.
//!
//! Rotation: when the file reaches [`AuditRotation::max_bytes`] or its first line is
//! [`AuditRotation::max_age_ms`] old, it is renamed `audit-<ms of its last line>.log`
//! and a new one begun (mode 0600, like the rotated files); a background thread
//! compresses the rotated file to `.log.gz` and deletes compressed files older than
//! [`AuditRotation::retention_ms`]. A rotation that fails is a write that fails: writes
//! are refused until a line is written again.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Bytes of the log's end read by `GET /v1/audit` at most.
const TAIL_BYTES: u64 = 1024 * 1024;

/// Who called, as the response reports it to the audit layer.
#[derive(Debug, Clone)]
pub struct AuditCaller(pub String);

/// What a call was about (a subject, an entry id, a region), as the handler reports it.
#[derive(Debug, Clone)]
pub struct AuditSubject(pub String);

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct AuditLine<'a> {
    /// When the answer was ready (node clock, ms since the epoch).
    pub time_ms: i64,
    /// The department (or `REGION:node` for the operator), or what is known of an
    /// unauthenticated caller.
    pub caller: &'a str,
    /// Client address.
    pub client: String,
    /// `METHOD /path/{param}` (or the raw path for an unknown route).
    pub endpoint: &'a str,
    /// Subject asked about, where there is one (persons masked).
    pub subject: Option<&'a str>,
    /// HTTP status.
    pub status: u16,
    /// Error code or `ok`.
    pub outcome: &'a str,
    /// Time spent, ms.
    pub ms: f64,
}

/// When the audit log is rotated and how long rotated logs are kept.
#[derive(Debug, Clone, Copy)]
pub struct AuditRotation {
    /// Size at which the log is rotated.
    pub max_bytes: u64,
    /// Age of its first line at which it is rotated, ms.
    pub max_age_ms: i64,
    /// Age after which a rotated, compressed log is deleted, ms.
    pub retention_ms: i64,
}

impl Default for AuditRotation {
    fn default() -> AuditRotation {
        AuditRotation {
            max_bytes: 64 << 20,
            max_age_ms: 86_400_000,
            retention_ms: 365 * 86_400_000,
        }
    }
}

/// The file being written, its size and the time of its first line.
struct Current {
    file: std::fs::File,
    bytes: u64,
    first_ms: Option<i64>,
}

/// The append-only audit file.
pub struct Audit {
    path: PathBuf,
    file: Mutex<Current>,
    rotation: AuditRotation,
    ok: AtomicBool,
    failures: AtomicU64,
}

/// Opens the log for appending, created 0600 (and an older file made 0600).
fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// The `time_ms` of the file's first line, if it has one.
fn first_line_ms(path: &Path) -> Option<i64> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(4096)
        .read_to_end(&mut head)
        .ok()?;
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next()?;
    serde_json::from_str::<serde_json::Value>(line).ok()?["time_ms"].as_i64()
}

impl Audit {
    /// Opens (or creates) the log for appending, with the default rotation.
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        Audit::open_with(path, AuditRotation::default())
    }

    /// Opens (or creates) the log for appending, rotated as `rotation` says.
    pub fn open_with(path: &Path, rotation: AuditRotation) -> std::io::Result<Audit> {
        let file = open_log(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "audit log {}: {e}; check the data directory's permissions",
                    path.display()
                ),
            )
        })?;
        let bytes = file.metadata()?.len();
        Ok(Audit {
            path: path.to_path_buf(),
            file: Mutex::new(Current {
                file,
                bytes,
                first_ms: first_line_ms(path),
            }),
            rotation,
            ok: AtomicBool::new(true),
            failures: AtomicU64::new(0),
        })
    }

    /// Renames the current log aside and begins a new one; compresses and prunes in the
    /// background.
    fn rotate(&self, current: &mut Current, at_ms: i64) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut stamp = at_ms;
        let rotated = loop {
            let candidate = dir.join(format!("audit-{stamp}.log"));
            if !candidate.exists() && !candidate.with_extension("log.gz").exists() {
                break candidate;
            }
            stamp += 1;
        };
        current.file.sync_all()?;
        std::fs::rename(&self.path, &rotated)?;
        current.file = open_log(&self.path)?;
        current.bytes = 0;
        current.first_ms = None;
        let retention = self.rotation.retention_ms;
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("credfed-audit-gzip".into())
            .spawn(move || {
                if let Err(e) = compress(&rotated) {
                    tracing::warn!(file = %rotated.display(), error = %e, "could not compress a rotated audit log (kept uncompressed)");
                }
                prune(&dir, at_ms - retention);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread to compress the rotated audit log (kept uncompressed)");
        }
        Ok(())
    }

    /// Writes one line. A failure flips the log to unhealthy until a line is written.
    pub fn record(&self, line: &AuditLine<'_>) {
        let mut text = serde_json::to_string(line).unwrap_or_else(|e| {
            format!(
                "{{\"time_ms\":{},\"error\":\"unrenderable audit line: {e}\"}}",
                line.time_ms
            )
        });
        text.push('\n');
        let written = match self.file.lock() {
            Ok(mut current) => {
                let due = current.bytes > 0
                    && (current.bytes + text.len() as u64 > self.rotation.max_bytes
                        || current
                            .first_ms
                            .is_some_and(|f| line.time_ms - f >= self.rotation.max_age_ms));
                let rotated = if due {
                    self.rotate(&mut current, line.time_ms)
                } else {
                    Ok(())
                };
                rotated
                    .and_then(|()| current.file.write_all(text.as_bytes()))
                    .map(|()| {
                        current.bytes += text.len() as u64;
                        current.first_ms.get_or_insert(line.time_ms);
                    })
            }
            Err(_) => Err(std::io::Error::other("audit log lock poisoned")),
        };
        match written {
            Ok(()) => {
                if !self.ok.swap(true, Ordering::SeqCst) {
                    tracing::warn!(path = %self.path.display(), "audit log writable again: writes accepted");
                }
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self.ok.swap(false, Ordering::SeqCst) {
                    tracing::error!(path = %self.path.display(), error = %e, "audit log cannot be written: refusing writes until it can");
                }
            }
        }
    }

    /// Rotated logs beside the current one (`audit-<ms>.log.gz`, or `.log` until
    /// compressed), oldest first.
    pub fn rotated(&self) -> Vec<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| Some((rotated_ms(&e.path())?, e.path())))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Whether the last line was written.
    pub fn healthy(&self) -> bool {
        self.ok.load(Ordering::SeqCst)
    }

    /// Lines that could not be written.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The last `max` lines, newest first.
    pub fn tail(&self, max: usize) -> std::io::Result<Vec<serde_json::Value>> {
        let mut f = std::fs::File::open(&self.path)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        f.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        f.take(TAIL_BYTES).read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines();
        if start > 0 {
            // The first line read may be cut.
            lines.next();
        }
        Ok(lines
            .rev()
            .take(max)
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

/// The stamp of a rotated log's name (`audit-<ms>.log` or `audit-<ms>.log.gz`).
fn rotated_ms(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix("audit-")?;
    let digits = rest
        .strip_suffix(".log.gz")
        .or_else(|| rest.strip_suffix(".log"))?;
    digits.parse().ok()
}

/// Compresses a rotated log to `<name>.gz` (0600, synced), then removes it.
fn compress(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let gz = path.with_extension("log.gz");
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&gz)?;
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut std::fs::File::open(path)?, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    std::fs::remove_file(path)
}

/// Deletes compressed rotated logs whose last line is older than `before_ms`.
fn prune(dir: &Path, before_ms: i64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "gz")
            && rotated_ms(&path).is_some_and(|ms| ms < before_ms)
            && let Err(err) = std::fs::remove_file(&path)
        {
            tracing::warn!(file = %path.display(), error = %err, "could not delete an expired audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time_ms: i64) -> AuditLine<'static> {
        AuditLine {
            time_ms,
            caller: "310000:pub",
            client: "127.0.0.1".into(),
            endpoint: "GET /v1/stats",
            subject: None,
            status: 200,
            outcome: "ok",
            ms: 0.1,
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never happened"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn the_audit_log_rotates_by_size_and_age_compressed_private_and_pruned() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // A rotated log past retention, left by an earlier run.
        std::fs::write(dir.path().join("audit-1000.log.gz"), b"old").unwrap();
        let day = 86_400_000;
        let t0 = 1_800_000_000_000;
        let line_bytes = serde_json::to_string(&line(t0)).unwrap().len() as u64 + 1;
        let audit = Audit::open_with(
            &path,
            AuditRotation {
                max_bytes: 5 * line_bytes,
                max_age_ms: day,
                retention_ms: 180 * day,
            },
        )
        .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        // By size: five lines fill it, so the sixth starts a new file.
        for k in 0..6 {
            audit.record(&line(t0 + k));
        }
        assert!(audit.healthy());
        // The background thread compresses, then prunes: wait for both.
        wait_for("compression of the first rotated log, then pruning", || {
            audit
                .rotated()
                .iter()
                .any(|p| p.extension().is_some_and(|x| x == "gz") && rotated_ms(p) != Some(1000))
                && !dir.path().join("audit-1000.log.gz").exists()
        });
        assert!(
            !dir.path().join("audit-1000.log.gz").exists(),
            "pruned past retention"
        );
        let rotated = audit.rotated();
        assert_eq!(rotated.len(), 1, "{rotated:?}");
        assert_eq!(mode(&rotated[0]), 0o600);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&rotated[0]).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(
            text.lines().count(),
            5,
            "the rotated file holds the first five lines"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        // By age: a line a day after the current file's first starts another.
        audit.record(&line(t0 + 5 + day));
        wait_for("the second rotation", || audit.rotated().len() == 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(mode(&path), 0o600);
        // The tail reads the current file.
        assert_eq!(audit.tail(10).unwrap().len(), 1);
    }
}

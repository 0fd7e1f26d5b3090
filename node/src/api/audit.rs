//! The audit log: one JSON line per API call, written before the answer leaves.
//!
//! Policy when the log cannot be written (disk full, file removed read-only): the call
//! is answered, the failure counted (`credfed_audit_failures_total`) and shown in
//! `/v1/status` (`audit_ok`), and **writes are refused** (503 `audit_unavailable`) until
//! an audit line is written again. Reads go on: refusing a check because a log line
//! cannot be written would stop departments' approvals for the operator's disk.

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

/// The append-only audit file.
pub struct Audit {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    ok: AtomicBool,
    failures: AtomicU64,
}

impl Audit {
    /// Opens (or creates) the log for appending.
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "audit log {}: {e}; check the data directory's permissions",
                        path.display()
                    ),
                )
            })?;
        Ok(Audit {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            ok: AtomicBool::new(true),
            failures: AtomicU64::new(0),
        })
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
            Ok(mut f) => f.write_all(text.as_bytes()),
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

//! The node's configuration file: a TOML file written by `credfed-node init` with every
//! default spelled out, overridable by `CREDFED_*` environment variables and flags.
//!
//! It lives here, beside the API types, because tools other than the node write it (the
//! testnet configures the nodes it starts): one definition, edited only through
//! [`NodeConfig`], never by string replacement.

use std::path::{Path, PathBuf};

use credfed_protocol::crypto::PublicKey;
use credfed_protocol::ids::RegionCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration that cannot be used; the message names the file or setting.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read or written.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// The file is not a valid configuration.
    #[error("{path}: invalid configuration: {detail}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A setting is out of its range or malformed.
    #[error("{0}")]
    Setting(String),
}

type Result<T> = std::result::Result<T, ConfigError>;

macro_rules! bail {
    ($($arg:tt)*) => { return Err(ConfigError::Setting(format!($($arg)*))) };
}

/// The configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Provincial-level region code this node speaks for.
    pub region: String,
    /// Directory of the store and keys (relative paths below are relative to it).
    pub data_dir: PathBuf,
    /// Signed manifest (JSON), as issued by the federation authority.
    pub manifest: PathBuf,
    /// Federation authority public key (hex): the trust anchor for manifests.
    pub authority_key: String,
    /// Node secret key file (hex, mode 0600).
    pub node_key_file: PathBuf,
    /// This member's share of the federation's person key (mode 0600), read when the
    /// manifest lists a share for this region (docs/privacy.md).
    #[serde(default = "default_person_share_file")]
    pub person_share_file: PathBuf,
    /// The share is lost: start without it (this member answers no evaluations) so
    /// that the other members can repair it (docs/operator.md, "Person keys"). Only
    /// honoured while `person_share_file` is missing.
    #[serde(default)]
    pub person_share_lost: bool,
    /// libp2p listen addresses (TCP+TLS+yamux and QUIC).
    pub p2p_listen: Vec<String>,
    /// HTTPS API listen address.
    pub api_listen: String,
    /// API server certificate and key (PEM).
    pub tls_cert: PathBuf,
    /// API server key (PEM).
    pub tls_key: PathBuf,
    /// Serve `/metrics` without authentication.
    pub metrics_public: bool,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Milliseconds added to the system clock (drills).
    pub clock_offset_ms: i64,
    /// Accept writes without confirming this region's head with a peer first. Only for a
    /// federation of one or a deliberate first start: otherwise a restored backup could
    /// reuse sequence numbers.
    pub solo: bool,
    /// How often to exchange heads with each peer, ms.
    pub heads_interval_ms: u64,
    /// How often to re-dial disconnected members, ms.
    pub redial_interval_ms: u64,
    /// A member that answers no ping for this long is disconnected and re-dialled, ms.
    /// Without it a silently dropped link (a firewall dropping packets, a cut cable) stays
    /// "connected" until TCP gives up, which takes minutes.
    #[serde(default = "default_liveness_timeout_ms")]
    pub liveness_timeout_ms: u64,
    /// Async runtime worker threads; 0 = one per core. Drills running 31 nodes on two
    /// cores set 1: idle profiles were dominated by threads waking each other.
    #[serde(default)]
    pub worker_threads: usize,
    /// Concurrent API requests.
    pub api_max_concurrency: usize,
    /// Largest API request body, bytes.
    pub api_max_body_bytes: usize,
    /// Open API connections per client address; more are refused at accept.
    #[serde(default = "default_api_max_connections_per_client")]
    pub api_max_connections_per_client: usize,
    /// Open API connections with a client certificate, in all (departments, the
    /// operator); those without one have their own budgets below.
    #[serde(default = "default_api_max_connections")]
    pub api_max_connections: usize,
    /// TLS handshakes in progress at once (before a client has shown a certificate).
    #[serde(default = "default_api_max_handshakes")]
    pub api_max_handshakes: usize,
    /// Open API connections without a client certificate (the console's login, the
    /// OpenAPI document, a metrics scraper), apart from the certified ones.
    #[serde(default = "default_api_max_anonymous_connections")]
    pub api_max_anonymous_connections: usize,
    /// Handshakes in progress from one network (a /24 or a /48) at once, and apart
    /// from them its connections without a certificate.
    #[serde(default = "default_api_max_connections_per_network")]
    pub api_max_connections_per_network: usize,
    /// Open API connections with one client certificate.
    #[serde(default = "default_api_max_connections_per_certificate")]
    pub api_max_connections_per_certificate: usize,
    /// How long a web console session lasts, seconds, whatever the activity
    /// (docs/console.md).
    #[serde(default = "default_console_session_seconds")]
    pub console_session_seconds: u64,
    /// Address of the public side (search pages, open data; docs/public.md), HTTPS
    /// without client certificates, on a listener and budgets of its own. Empty: not
    /// served.
    #[serde(default)]
    pub public_listen: String,
    /// Requests per minute one client address may make of the public side (and the
    /// burst it may save up).
    #[serde(default = "default_public_requests_per_minute")]
    pub public_requests_per_minute: u32,
    /// Public requests handled at once (apart from the API's `api_max_concurrency`).
    #[serde(default = "default_public_max_concurrency")]
    pub public_max_concurrency: usize,
    /// Threads that serve the public side: a runtime of their own, at a lower CPU
    /// priority than the department API's (docs/public.md), so that a public flood
    /// takes at most these threads' share of the machine.
    #[serde(default = "default_public_worker_threads")]
    pub public_worker_threads: usize,
    /// Open public connections in all.
    #[serde(default = "default_public_max_connections")]
    pub public_max_connections: usize,
    /// Open public connections per client address.
    #[serde(default = "default_public_max_connections_per_client")]
    pub public_max_connections_per_client: usize,
    /// Time for a client to complete the TLS handshake, ms.
    #[serde(default = "default_api_handshake_timeout_ms")]
    pub api_handshake_timeout_ms: u64,
    /// Time for a request head to arrive, and for an idle kept-alive connection to send
    /// its next one, ms.
    #[serde(default = "default_api_request_head_timeout_ms")]
    pub api_request_head_timeout_ms: u64,
    /// Time for a request body to arrive, ms.
    #[serde(default = "default_api_request_body_timeout_ms")]
    pub api_request_body_timeout_ms: u64,
    /// Appends made durable by one fsync at most (group commit); 1 turns group commit
    /// off (one fsync per append).
    #[serde(default = "default_group_commit_max")]
    pub group_commit_max: usize,
    /// The audit log is rotated when it reaches this size, MiB (the rotated file is
    /// compressed and kept).
    #[serde(default = "default_audit_rotate_mib")]
    pub audit_rotate_mib: u64,
    /// ... or when its oldest line is this many days old.
    #[serde(default = "default_audit_rotate_days")]
    pub audit_rotate_days: u64,
    /// Rotated audit logs are deleted after this many days (at least 180: network logs
    /// are kept six months, 网络安全法 第二十一条).
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u64,
    /// Serve `POST /v1/admin/partition`, the in-node fault mode of drills. Off on every
    /// real node: `credfed-testnet` turns it on for its own federations.
    #[serde(default)]
    pub drill_faults: bool,
    /// Shortest time between the starts of two witnessing rounds of this region's
    /// checkpoints, ms: under load, a record waits for up to this long plus one round
    /// before it is witnessed, and every round costs each other member a signature and
    /// an fsync (docs/decisions.md, "Witnessing cadence").
    #[serde(default = "default_witness_round_gap_ms")]
    pub witness_round_gap_ms: u64,
    /// The engine of a store created by this node: `sled` (the embedded default),
    /// `redb` (a B-tree whose file tracks its live data; docs/decisions.md, "Store
    /// engine") or `fjall` (an LSM tree: the most compact store at national scale, not
    /// yet through the crash drills; docs/decisions.md, "An LSM engine measured"). An
    /// existing store keeps the engine it was created with.
    #[serde(default = "default_store_engine")]
    pub store_engine: String,
    /// The store engine's page cache, MiB; 0 = derived from the machine (a thirty-second
    /// of its memory, between 64 and 512 MiB). Exported as
    /// `credfed_store_cache_budget_bytes`.
    #[serde(default)]
    pub store_cache_mib: u64,
    /// Compact the store's file at start-up (redb only: gives the pages freed by pruned
    /// map versions back to the file system; takes about 17 s per GB measured).
    #[serde(default)]
    pub store_compact_at_start: bool,
}

fn default_store_engine() -> String {
    "sled".into()
}

fn default_witness_round_gap_ms() -> u64 {
    250
}

fn default_person_share_file() -> PathBuf {
    "person-share.key".into()
}

fn default_liveness_timeout_ms() -> u64 {
    10_000
}
fn default_api_max_connections_per_client() -> usize {
    // A department's tools use a pool of 32; several people behind one address share it.
    128
}
fn default_api_max_handshakes() -> usize {
    1024
}

fn default_api_max_anonymous_connections() -> usize {
    512
}

fn default_api_max_connections_per_network() -> usize {
    64
}

fn default_api_max_connections_per_certificate() -> usize {
    64
}

fn default_api_max_connections() -> usize {
    4096
}
fn default_console_session_seconds() -> u64 {
    // A working morning or afternoon: the department logs in with its key again after.
    4 * 3600
}
fn default_public_requests_per_minute() -> u32 {
    // A person reading pages makes a few requests a minute; programs use the open data.
    120
}
fn default_public_max_concurrency() -> usize {
    // Public requests may wait; the department API's 256 slots are not theirs.
    16
}
fn default_public_worker_threads() -> usize {
    // One thread: the public side is read-only and may wait; the cores are the API's.
    1
}
fn default_public_max_connections() -> usize {
    1024
}
fn default_public_max_connections_per_client() -> usize {
    16
}
fn default_api_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_api_request_head_timeout_ms() -> u64 {
    10_000
}
fn default_api_request_body_timeout_ms() -> u64 {
    10_000
}
/// Where `credfed-node init` writes a generated operator signing key, in the data
/// directory: `operator/` beside the operator's API client certificate, for the operator
/// to take off the machine (the node never reads it).
pub const OPERATOR_KEY_FILE: &str = "operator/operator-signing.key";

/// Appends made durable by one fsync at most, by default. Bounds the latency of the
/// first caller of a group; 1 turns group commit off (one fsync per append, as a
/// baseline).
pub const DEFAULT_GROUP_COMMIT_MAX: usize = 256;

fn default_audit_rotate_mib() -> u64 {
    64
}

fn default_audit_rotate_days() -> u64 {
    1
}

fn default_audit_retention_days() -> u64 {
    365
}

fn default_group_commit_max() -> usize {
    DEFAULT_GROUP_COMMIT_MAX
}

/// The furthest a drill may skew a node's clock: a year either way. Anything beyond is
/// a typo, and an offset near `i64::MAX` would wrap the clock.
pub const MAX_CLOCK_OFFSET_MS: i64 = 366 * 24 * 3600 * 1000;

const TEMPLATE_COMMENTS: &str = "\
# credfed-node configuration. Every setting is shown with its value and what it does;
# paths are relative to data_dir unless absolute. Environment variables CREDFED_<NAME>
# (upper case) override the file, and command-line flags override both.
";

/// Each field of [`NodeConfig`] with its doc comment (joined into one paragraph; blank
/// doc lines kept as paragraph breaks), in declaration order, read from this file.
fn setting_notes() -> Vec<(&'static str, String)> {
    const SOURCE: &str = include_str!("node_config.rs");
    let Some(body) = SOURCE
        .split_once("pub struct NodeConfig {")
        .and_then(|(_, rest)| rest.split_once("\n}\n"))
        .map(|(body, _)| body)
    else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim());
        } else if let Some((name, _)) = t.strip_prefix("pub ").and_then(|r| r.split_once(':')) {
            notes.push((name.trim(), doc.join(" ").replace("  ", "\n")));
            doc.clear();
        } else if !t.starts_with("#[") && !t.starts_with("//") && !t.is_empty() {
            doc.clear();
        }
    }
    notes
}

/// `text` as `# ` comment lines of at most `width` characters (a blank doc line starts a
/// new paragraph).
fn wrap_comment(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.chars().count() + 1 + word.chars().count() > width && line.len() > 1 {
                lines.push(std::mem::replace(&mut line, String::from("#")));
            }
            line.push(' ');
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

impl NodeConfig {
    /// Defaults for a region and data directory.
    pub fn defaults(
        region: RegionCode,
        data_dir: &Path,
        listen_ip: std::net::IpAddr,
        p2p_port: u16,
        api_port: u16,
    ) -> NodeConfig {
        let ip_proto = if listen_ip.is_ipv4() { "ip4" } else { "ip6" };
        NodeConfig {
            region: region.to_string(),
            data_dir: data_dir.to_path_buf(),
            manifest: "manifest.json".into(),
            authority_key: String::new(),
            node_key_file: "node.key".into(),
            person_share_file: default_person_share_file(),
            person_share_lost: false,
            p2p_listen: vec![
                format!("/{ip_proto}/{listen_ip}/tcp/{p2p_port}"),
                format!("/{ip_proto}/{listen_ip}/udp/{p2p_port}/quic-v1"),
            ],
            api_listen: std::net::SocketAddr::new(listen_ip, api_port).to_string(),
            tls_cert: "api-cert.pem".into(),
            tls_key: "api-key.pem".into(),
            metrics_public: true,
            log_format: "text".into(),
            clock_offset_ms: 0,
            solo: false,
            heads_interval_ms: 2000,
            redial_interval_ms: 2000,
            liveness_timeout_ms: default_liveness_timeout_ms(),
            witness_round_gap_ms: default_witness_round_gap_ms(),
            worker_threads: 0,
            api_max_concurrency: 256,
            api_max_body_bytes: 256 * 1024,
            api_max_connections_per_client: default_api_max_connections_per_client(),
            api_max_connections: default_api_max_connections(),
            api_max_handshakes: default_api_max_handshakes(),
            api_max_anonymous_connections: default_api_max_anonymous_connections(),
            api_max_connections_per_network: default_api_max_connections_per_network(),
            api_max_connections_per_certificate: default_api_max_connections_per_certificate(),
            console_session_seconds: default_console_session_seconds(),
            public_listen: String::new(),
            public_requests_per_minute: default_public_requests_per_minute(),
            public_max_concurrency: default_public_max_concurrency(),
            public_worker_threads: default_public_worker_threads(),
            public_max_connections: default_public_max_connections(),
            public_max_connections_per_client: default_public_max_connections_per_client(),
            api_handshake_timeout_ms: default_api_handshake_timeout_ms(),
            api_request_head_timeout_ms: default_api_request_head_timeout_ms(),
            api_request_body_timeout_ms: default_api_request_body_timeout_ms(),
            group_commit_max: default_group_commit_max(),
            audit_rotate_mib: default_audit_rotate_mib(),
            audit_rotate_days: default_audit_rotate_days(),
            audit_retention_days: default_audit_retention_days(),
            drill_faults: false,
            store_engine: default_store_engine(),
            store_cache_mib: 0,
            store_compact_at_start: false,
        }
    }

    /// Checks every value against its range, naming the setting at fault.
    pub fn validate(&self) -> Result<()> {
        self.region()?;
        let range = |name: &str, v: u64, lo: u64, hi: u64| -> Result<()> {
            if !(lo..=hi).contains(&v) {
                bail!("{name} = {v}: must be between {lo} and {hi}");
            }
            Ok(())
        };
        if !(-MAX_CLOCK_OFFSET_MS..=MAX_CLOCK_OFFSET_MS).contains(&self.clock_offset_ms) {
            bail!(
                "clock_offset_ms = {}: must be within ±{MAX_CLOCK_OFFSET_MS} (a year); drills skew clocks by minutes or days",
                self.clock_offset_ms
            );
        }
        range("heads_interval_ms", self.heads_interval_ms, 100, 600_000)?;
        range("redial_interval_ms", self.redial_interval_ms, 100, 600_000)?;
        range(
            "liveness_timeout_ms",
            self.liveness_timeout_ms,
            1_000,
            600_000,
        )?;
        range("worker_threads", self.worker_threads as u64, 0, 1024)?;
        if !matches!(self.store_engine.as_str(), "sled" | "redb" | "fjall") {
            bail!(
                "store_engine = {:?}: must be \"sled\", \"redb\" or \"fjall\"",
                self.store_engine
            );
        }
        if self.store_cache_mib != 0 {
            range("store_cache_mib", self.store_cache_mib, 16, 1 << 20)?;
        }
        range(
            "api_max_concurrency",
            self.api_max_concurrency as u64,
            1,
            65_536,
        )?;
        range(
            "api_max_body_bytes",
            self.api_max_body_bytes as u64,
            1024,
            64 * 1024 * 1024,
        )?;
        range(
            "api_max_connections_per_client",
            self.api_max_connections_per_client as u64,
            1,
            65_536,
        )?;
        range(
            "console_session_seconds",
            self.console_session_seconds,
            1,
            24 * 3600,
        )?;
        range(
            "api_max_connections",
            self.api_max_connections as u64,
            1,
            1_000_000,
        )?;
        range(
            "public_requests_per_minute",
            u64::from(self.public_requests_per_minute),
            1,
            1_000_000,
        )?;
        range(
            "public_max_concurrency",
            self.public_max_concurrency as u64,
            1,
            65_536,
        )?;
        range("audit_rotate_mib", self.audit_rotate_mib, 1, 1 << 20)?;
        range(
            "api_max_handshakes",
            self.api_max_handshakes as u64,
            1,
            1_000_000,
        )?;
        range(
            "api_max_anonymous_connections",
            self.api_max_anonymous_connections as u64,
            1,
            1_000_000,
        )?;
        range(
            "api_max_connections_per_network",
            self.api_max_connections_per_network as u64,
            1,
            1_000_000,
        )?;
        range(
            "api_max_connections_per_certificate",
            self.api_max_connections_per_certificate as u64,
            1,
            1_000_000,
        )?;
        range("audit_rotate_days", self.audit_rotate_days, 1, 366)?;
        range(
            "audit_retention_days",
            self.audit_retention_days,
            180,
            36_600,
        )?;
        range(
            "public_worker_threads",
            self.public_worker_threads as u64,
            1,
            256,
        )?;
        range(
            "public_max_connections",
            self.public_max_connections as u64,
            1,
            1_000_000,
        )?;
        range(
            "public_max_connections_per_client",
            self.public_max_connections_per_client as u64,
            1,
            65_536,
        )?;
        if !self.public_listen.is_empty()
            && self.public_listen.parse::<std::net::SocketAddr>().is_err()
        {
            bail!(
                "public_listen = {:?}: expected IP:port, or empty to serve no public side",
                self.public_listen
            );
        }
        range(
            "api_handshake_timeout_ms",
            self.api_handshake_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "api_request_head_timeout_ms",
            self.api_request_head_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "api_request_body_timeout_ms",
            self.api_request_body_timeout_ms,
            100,
            600_000,
        )?;
        range("group_commit_max", self.group_commit_max as u64, 1, 65_536)?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!(
                "log_format = {:?}: must be \"text\" or \"json\"",
                self.log_format
            );
        }
        Ok(())
    }

    /// Reads a config file and applies `CREDFED_*` overrides.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: shown.clone(),
            detail: format!(
                "cannot read the configuration ({e}); create one with `credfed-node init`"
            ),
        })?;
        let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
        if value.contains_key("author") && !value.contains_key("region") {
            return Err(ConfigError::Parse {
                path: shown,
                detail: "this is a `credfed` CLI settings file (it names an author), not a node's configuration; give credfed-node the node's config.toml (--config, or CREDFED_NODE_CONFIG)".into(),
            });
        }
        for (k, v) in std::env::vars() {
            let Some(name) = k.strip_prefix("CREDFED_") else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if let Some(old) = value.get(&name) {
                let new = match old {
                    toml::Value::Integer(_) => toml::Value::Integer(v.parse().map_err(|_| {
                        ConfigError::Setting(format!("{k}={v:?}: expected an integer"))
                    })?),
                    toml::Value::Boolean(_) => toml::Value::Boolean(v.parse().map_err(|_| {
                        ConfigError::Setting(format!("{k}={v:?}: expected true or false"))
                    })?),
                    toml::Value::Array(_) => toml::Value::Array(
                        v.split(',')
                            .map(|s| toml::Value::String(s.trim().into()))
                            .collect(),
                    ),
                    _ => toml::Value::String(v),
                };
                value.insert(name, new);
            }
        }
        let cfg: NodeConfig =
            value
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: shown.clone(),
                    detail: e.to_string(),
                })?;
        cfg.validate().map_err(|e| ConfigError::Parse {
            path: shown,
            detail: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// Writes the file with a header comment.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |detail: String| ConfigError::Io {
            path: path.display().to_string(),
            detail,
        };
        let text = self
            .commented()
            .map_err(|e| io(format!("cannot render: {e}")))?;
        std::fs::write(path, text).map_err(|e| io(format!("cannot write: {e}")))
    }

    /// The configuration as TOML with every setting preceded by what it does: the
    /// setting's doc comment on [`NodeConfig`], taken from this file's source when it is
    /// compiled, so that a setting and its explanation cannot drift apart.
    pub fn commented(&self) -> std::result::Result<String, toml::ser::Error> {
        let table = toml::Table::try_from(self)?;
        let mut out = format!("{TEMPLATE_COMMENTS}\n");
        let notes = setting_notes();
        let mut written = std::collections::BTreeSet::new();
        for (name, note) in &notes {
            let Some(value) = table.get(*name) else {
                continue;
            };
            for line in wrap_comment(note, 88) {
                out.push_str(&line);
                out.push('\n');
            }
            let mut one = toml::Table::new();
            one.insert((*name).to_string(), value.clone());
            out.push_str(&toml::to_string(&one)?);
            out.push('\n');
            written.insert(*name);
        }
        // A setting without a doc comment would be a build error (missing_docs); keep
        // anything else rather than lose it.
        let mut rest = toml::Table::new();
        for (k, v) in &table {
            if !written.contains(k.as_str()) {
                rest.insert(k.clone(), v.clone());
            }
        }
        if !rest.is_empty() {
            out.push_str(&toml::to_string(&rest)?);
        }
        Ok(out)
    }

    /// The region code.
    pub fn region(&self) -> Result<RegionCode> {
        let r = RegionCode::parse(&self.region, "region")
            .map_err(|e| ConfigError::Setting(e.to_string()))?;
        if !r.is_province() {
            bail!(
                "region: {r} is not a provincial-level code; city and county departments register with their province's node"
            );
        }
        Ok(r)
    }

    /// The API's listening address (`api_listen`).
    pub fn api_addr(&self) -> Result<std::net::SocketAddr> {
        self.api_listen.parse().map_err(|e| {
            ConfigError::Setting(format!(
                "api_listen = {:?}: expected IP:port ({e})",
                self.api_listen
            ))
        })
    }

    /// A path relative to the data directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }

    /// The pinned authority key.
    pub fn authority(&self) -> Result<PublicKey> {
        PublicKey::from_hex(&self.authority_key).map_err(|e| {
            ConfigError::Setting(format!(
                "authority_key: {e}; set the federation authority's public key (64 hex characters)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> NodeConfig {
        NodeConfig::defaults(
            RegionCode::new(310000, "region").unwrap(),
            Path::new("/var/lib/credfed"),
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            4101,
            8443,
        )
    }

    /// Every setting a node's config.toml holds says what it does, the commented file
    /// reads back as the same configuration, and the example the Debian package ships
    /// (`deploy/config.example.toml`) is this build's. Regenerate it with
    /// `CREDFED_WRITE_CONFIG_EXAMPLE=1 cargo test -p credfed-client commented`.
    #[test]
    fn the_commented_configuration_explains_every_setting_and_reads_back() {
        let cfg = example();
        let table = toml::Table::try_from(&cfg).unwrap();
        let notes = setting_notes();
        for key in table.keys() {
            let note = notes.iter().find(|(n, _)| n == key).map(|(_, d)| d);
            assert!(
                note.is_some_and(|d| d.len() > 10),
                "setting {key} has no doc comment to explain it"
            );
        }
        let text = cfg.commented().unwrap();
        assert!(
            text.contains(
                "# Provincial-level region code this node speaks for.\nregion = \"310000\"\n"
            ),
            "{text}"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let dir =
            std::env::temp_dir().join(format!("credfed-config-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        cfg.save(&path).unwrap();
        let back = NodeConfig::load(&path).unwrap();
        assert_eq!(back.commented().unwrap(), text);
        std::fs::remove_dir_all(&dir).unwrap();
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/config.example.toml");
        if std::env::var_os("CREDFED_WRITE_CONFIG_EXAMPLE").is_some() {
            std::fs::write(shipped, &text).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(shipped).unwrap(),
            text,
            "deploy/config.example.toml is not this build's; regenerate it (see the test's doc)"
        );
    }

    /// The CLI's settings file given to the node is named as such, with the way out.
    #[test]
    fn a_cli_settings_file_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("credfed-node-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pub.toml");
        std::fs::write(&path, "author = \"110000:pub\"\nnode = \"127.0.0.1:1\"\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("CLI settings file"), "{e}");
        assert!(e.contains("CREDFED_NODE_CONFIG"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

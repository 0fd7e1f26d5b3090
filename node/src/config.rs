//! Node configuration: a TOML file written by `credfed-node init` with every default
//! spelled out, overridable by `CREDFED_*` environment variables and flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use credfed_protocol::crypto::{Keypair, PublicKey};
use credfed_protocol::ids::RegionCode;
use serde::{Deserialize, Serialize};

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
    /// Federation secret keying person hashes (hex, ≥ 32 bytes, mode 0600); the same on
    /// every member node.
    pub person_secret_file: PathBuf,
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
}

fn default_liveness_timeout_ms() -> u64 {
    10_000
}

const TEMPLATE_COMMENTS: &str = "\
# credfed-node configuration. Every setting is shown with its value; paths are relative
# to data_dir unless absolute. Environment variables CREDFED_<NAME> (upper case) override
# the file, and command-line flags override both.
";

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
            person_secret_file: "person.secret".into(),
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
            worker_threads: 0,
            api_max_concurrency: 256,
            api_max_body_bytes: 256 * 1024,
        }
    }

    /// Reads a config file and applies `CREDFED_*` overrides.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading config {}; create one with `credfed-node init`",
                path.display()
            )
        })?;
        let mut value: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for (k, v) in std::env::vars() {
            let Some(name) = k.strip_prefix("CREDFED_") else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if let Some(old) = value.get(&name) {
                let new = match old {
                    toml::Value::Integer(_) => toml::Value::Integer(
                        v.parse()
                            .with_context(|| format!("{k}: expected an integer"))?,
                    ),
                    toml::Value::Boolean(_) => toml::Value::Boolean(
                        v.parse()
                            .with_context(|| format!("{k}: expected true or false"))?,
                    ),
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
        let cfg: NodeConfig = value
            .try_into()
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        cfg.region()?;
        Ok(cfg)
    }

    /// Writes the file with a header comment.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string(self)?;
        std::fs::write(path, format!("{TEMPLATE_COMMENTS}\n{body}"))?;
        Ok(())
    }

    /// The region code.
    pub fn region(&self) -> Result<RegionCode> {
        let r = RegionCode::parse(&self.region, "region")?;
        if !r.is_province() {
            bail!(
                "region: {r} is not a provincial-level code; city and county departments register with their province's node"
            );
        }
        Ok(r)
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
        PublicKey::from_hex(&self.authority_key)
            .context("authority_key: set the federation authority's public key (64 hex characters)")
    }
}

/// Reads a hex secret key file.
pub fn read_key(path: &Path) -> Result<Keypair> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .with_context(|| format!("{}: expected 64 hex characters", path.display()))?;
    Ok(Keypair::from_secret(secret))
}

/// Writes a secret file with mode 0600, refusing to overwrite.
pub fn write_secret(path: &Path, hex_text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(hex_text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// 32 bytes from the operating system.
pub fn random_secret() -> Result<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| anyhow::anyhow!("no entropy: {e}"))?;
    Ok(s)
}

/// The node's API certificate authority and a server certificate it signs for
/// `localhost`, 127.0.0.1 and the listen address. Clients trust the CA (`api-ca.pem`); the CA key also signs
/// department client certificates.
pub fn write_api_certs(dir: &Path, region: RegionCode, listen_ip: std::net::IpAddr) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("credfed node {region} API CA"));
    let ca_cert = ca.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !listen_ip.is_loopback() {
        names.push(listen_ip.to_string());
    }
    let mut server = CertificateParams::new(names)?;
    server
        .distinguished_name
        .push(DnType::CommonName, format!("credfed node {region}"));
    let issuer = Issuer::new(ca, ca_key);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    std::fs::create_dir_all(dir.join("clients"))?;
    std::fs::write(dir.join("api-ca.pem"), ca_cert.pem())?;
    write_secret(&dir.join("api-ca-key.pem"), &issuer.key().serialize_pem())?;
    std::fs::write(dir.join("api-cert.pem"), server_cert.pem())?;
    write_secret(&dir.join("api-key.pem"), &server_key.serialize_pem())?;
    Ok(())
}

fn ca_issuer(dir: &Path, region: RegionCode) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let key_pem = std::fs::read_to_string(dir.join("api-ca-key.pem"))
        .context("reading api-ca-key.pem (run this on the node's machine)")?;
    let key = KeyPair::from_pem(&key_pem)?;
    // The same subject as at `init`: certificates chain to api-ca.pem by name and key.
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("credfed node {region} API CA"));
    Ok(Issuer::new(ca, key))
}

/// SHA-256 of a certificate's DER: the name of its entry in `<data-dir>/clients/`.
pub fn cert_fingerprint(der: &[u8]) -> String {
    credfed_protocol::crypto::sha256(&[der]).to_hex()
}

/// Issues an API client certificate for `department`, writes `<out>/<department>.pem` and
/// `<out>/<department>.key` (0600), and registers its fingerprint with the node.
/// Deleting `<data-dir>/clients/<fingerprint>` revokes it.
pub fn issue_client_cert(
    data_dir: &Path,
    region: RegionCode,
    department: &credfed_protocol::ids::DepartmentId,
    out: &Path,
) -> Result<PathBuf> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    if department.home_province() != region {
        bail!(
            "{department} belongs to {}; its certificate is issued by that province's node",
            department.home_province()
        );
    }
    let issuer = ca_issuer(data_dir, region)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, department.to_string());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out)?;
    let stem = department.to_string().replace(':', "-");
    let cert_path = out.join(format!("{stem}.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    write_secret(&out.join(format!("{stem}.key")), &key.serialize_pem())?;
    let clients = data_dir.join("clients");
    std::fs::create_dir_all(&clients)?;
    std::fs::write(
        clients.join(cert_fingerprint(cert.der())),
        department.to_string(),
    )?;
    Ok(cert_path)
}

//! The node's configuration file ([`NodeConfig`], shared with the tools in
//! `credfed_client::node_config`) and its certificates: the API CA, the server
//! certificate and department client certificates.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use credfed_protocol::ids::RegionCode;

pub use credfed_client::keys::{random_secret, read_key, write_secret};
pub use credfed_client::node_config::{
    DEFAULT_GROUP_COMMIT_MAX, MAX_CLOCK_OFFSET_MS, NodeConfig, OPERATOR_KEY_FILE,
};

/// What a new data directory is made from.
pub struct InitOptions {
    /// Provincial-level region.
    pub region: RegionCode,
    /// Directory to create.
    pub dir: PathBuf,
    /// Federation authority public key (hex) to pin; may be set later.
    pub authority_key: String,
    /// The node key, or `None` to generate one.
    pub node_key: Option<credfed_protocol::crypto::Keypair>,
    /// The operator's public key (made by the operator with `credfed key gen --kind
    /// operator`), or `None` to generate a key pair into `operator/` for the operator to
    /// take away.
    pub operator_key: Option<credfed_protocol::crypto::PublicKey>,
    /// This member's person-key share file's text, if the ceremony has run.
    pub person_share_text: Option<String>,
    /// libp2p port (TCP and UDP/QUIC).
    pub p2p_port: u16,
    /// HTTPS API port.
    pub api_port: u16,
    /// Port of the public side (search pages, open data; docs/public.md), if served.
    pub public_port: Option<u16>,
    /// Address both listeners bind to, and the API certificate names.
    pub listen_ip: std::net::IpAddr,
}

/// What [`init_data_dir`] made.
pub struct InitReport {
    /// The data directory (canonical).
    pub dir: PathBuf,
    /// The configuration written to `<dir>/config.toml`.
    pub config: NodeConfig,
    /// The node's public key (send it to the federation authority).
    pub node_key: credfed_protocol::crypto::PublicKey,
    /// The operator's public key (send it to the federation authority too).
    pub operator_key: credfed_protocol::crypto::PublicKey,
    /// Where a generated operator key was written (`None` when it was given).
    pub operator_key_file: Option<PathBuf>,
}

/// Creates a data directory: node key (0600), the member's person-key share if given (0600), API
/// certificates, the operator's client certificate and a config file with every default
/// written out. Refuses a directory that already holds a node.
pub fn init_data_dir(opts: &InitOptions) -> Result<InitReport> {
    let region = opts.region;
    if !region.is_province() {
        bail!(
            "--region {region}: nodes are provincial; register city departments with the province's node"
        );
    }
    let dir = &opts.dir;
    if dir.join("config.toml").exists() {
        bail!(
            "{} already holds a node (config.toml exists); choose another --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let key = match &opts.node_key {
        Some(k) => credfed_protocol::crypto::Keypair::from_secret(k.secret_bytes()),
        None => credfed_protocol::crypto::Keypair::from_secret(random_secret()?),
    };
    write_secret(&dir.join("node.key"), &hex::encode(key.secret_bytes()))?;
    if let Some(text) = &opts.person_share_text {
        write_secret(&dir.join("person-share.key"), text)?;
    }
    write_api_certs(&dir, region, opts.listen_ip)?;
    let operator = credfed_protocol::ids::DepartmentId {
        region,
        unit: credfed_protocol::envelope::OPERATOR_UNIT.into(),
    };
    issue_client_cert(&dir, region, &operator, &dir.join("operator"), false)?;
    let (operator_key, operator_key_file) = match opts.operator_key {
        Some(k) => (k, None),
        None => {
            let k = credfed_protocol::crypto::Keypair::from_secret(random_secret()?);
            let file = dir.join(OPERATOR_KEY_FILE);
            write_secret(&file, &hex::encode(k.secret_bytes()))?;
            credfed_client::keys::write_public(
                &file.with_extension("key.pub"),
                &k.public().to_hex(),
            )?;
            (k.public(), Some(file))
        }
    };
    let mut cfg = NodeConfig::defaults(region, &dir, opts.listen_ip, opts.p2p_port, opts.api_port);
    cfg.authority_key = opts.authority_key.clone();
    if let Some(port) = opts.public_port {
        cfg.public_listen = std::net::SocketAddr::new(opts.listen_ip, port).to_string();
    }
    cfg.save(&dir.join("config.toml"))?;
    Ok(InitReport {
        dir,
        config: cfg,
        node_key: key.public(),
        operator_key,
        operator_key_file,
    })
}

/// How long the node's API certificate authority is valid: ten years, renewed by a CA
/// rollover long before (docs/operator.md, "Certificates").
pub const CA_LIFETIME_DAYS: i32 = 3650;
/// How long the API server certificate is valid; `credfed-node rotate-server-cert`
/// renews it (the node warns 30 days ahead).
pub const SERVER_CERT_LIFETIME_DAYS: i32 = 365;
/// How long a department's client certificate is valid; reissued from a new request.
pub const CLIENT_CERT_LIFETIME_DAYS: i32 = 365;

/// Sets a certificate valid from yesterday (clocks differ) for `days` days from today,
/// and returns its last day.
fn set_lifetime(params: &mut rcgen::CertificateParams, days: i32) -> credfed_protocol::time::Date {
    let today = credfed_protocol::time::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
    .date_cst();
    let at = |d: credfed_protocol::time::Date| {
        let (y, m, day) = d.ymd();
        rcgen::date_time_ymd(y, m as u8, day as u8)
    };
    let last = today.add_days(days);
    params.not_before = at(today.add_days(-1));
    params.not_after = at(last);
    last
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
    set_lifetime(&mut ca, CA_LIFETIME_DAYS);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    std::fs::create_dir_all(dir.join("clients"))?;
    std::fs::write(dir.join("api-ca.pem"), ca_cert.pem())?;
    write_secret(&dir.join("api-ca-key.pem"), &issuer.key().serialize_pem())?;
    write_server_cert(dir, region, listen_ip, &issuer)?;
    Ok(())
}

/// Makes a new server key and certificate signed by the API CA, valid for
/// [`SERVER_CERT_LIFETIME_DAYS`], for `localhost`, 127.0.0.1 and `listen_ip`; written
/// through temporary files and renames, so the node never reads half of them.
fn write_server_cert(
    dir: &Path,
    region: RegionCode,
    listen_ip: std::net::IpAddr,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Result<credfed_protocol::time::Date> {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let server_key = KeyPair::generate()?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !listen_ip.is_loopback() {
        names.push(listen_ip.to_string());
    }
    let mut server = CertificateParams::new(names)?;
    server
        .distinguished_name
        .push(DnType::CommonName, format!("credfed node {region}"));
    let last = set_lifetime(&mut server, SERVER_CERT_LIFETIME_DAYS);
    let server_cert = server.signed_by(&server_key, issuer)?;
    write_atomically(
        &dir.join("api-key.pem"),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomically(
        &dir.join("api-cert.pem"),
        server_cert.pem().as_bytes(),
        0o644,
    )?;
    Ok(last)
}

/// Renews the API server certificate and key before they expire (`credfed-node
/// rotate-server-cert`): the old pair is kept as `*.replaced-<ms>`; clients trust the
/// CA, so nothing changes for them. Returns the new certificate's last day.
pub fn rotate_server_cert(
    data_dir: &Path,
    region: RegionCode,
    listen_ip: std::net::IpAddr,
) -> Result<credfed_protocol::time::Date> {
    // Signed by the current CA even during a rollover: every client trusts it.
    let issuer = ca_issuer_of(data_dir, "api-ca.pem", "api-ca-key.pem", region)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for name in ["api-cert.pem", "api-key.pem"] {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::copy(&path, data_dir.join(format!("{name}.replaced-{stamp}")))
                .with_context(|| format!("keeping a copy of {}", path.display()))?;
        }
    }
    write_server_cert(data_dir, region, listen_ip, &issuer)
}

/// Days a certificate (PEM file) has left, and its last day; `None` when the file
/// holds no certificate it can read.
pub fn cert_days_left(
    pem_file: &Path,
    now: credfed_protocol::time::Timestamp,
) -> Option<(i64, String)> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(pem_file).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let left = (not_after * 1000 - now.0).div_euclid(86_400_000);
    let last = credfed_protocol::time::Timestamp(not_after * 1000).cst_string();
    Some((left, last))
}

/// The CA that signs new certificates: the next one during a CA rollover, else the
/// current one.
fn ca_issuer(dir: &Path, region: RegionCode) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>> {
    if dir.join(NEXT_CA).exists() {
        ca_issuer_of(dir, NEXT_CA, NEXT_CA_KEY, region)
    } else {
        ca_issuer_of(dir, "api-ca.pem", "api-ca-key.pem", region)
    }
}

/// The CA in `cert`/`key` as an issuer: certificates chain to it by its subject and key,
/// so the subject is read from the certificate.
fn ca_issuer_of(
    dir: &Path,
    cert: &str,
    key: &str,
    region: RegionCode,
) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::pem::PemObject;
    let key_pem = std::fs::read_to_string(dir.join(key))
        .with_context(|| format!("reading {key} (run this on the node's machine)"))?;
    let key = KeyPair::from_pem(&key_pem)?;
    let der = rustls::pki_types::CertificateDer::from_pem_file(dir.join(cert))
        .with_context(|| format!("reading {cert}"))?;
    let common_name = x509_parser::parse_x509_certificate(&der)
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|n| n.as_str().ok().map(str::to_string))
        })
        .unwrap_or_else(|| format!("credfed node {region} API CA"));
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, common_name);
    Ok(Issuer::new(ca, key))
}

/// The next API CA during a rollover, its key, when the rollover began (ms), and the
/// bundle of both CA certificates clients trust meanwhile.
pub const NEXT_CA: &str = "api-ca-next.pem";
const NEXT_CA_KEY: &str = "api-ca-next-key.pem";
const ROLLOVER_BEGAN: &str = "api-ca-rollover";
/// Both CA certificates during a rollover: what departments trust meanwhile.
pub const CA_BUNDLE: &str = "api-ca-bundle.pem";

/// Begins a CA rollover: a new CA (ten years) beside the current one. Until
/// [`finish_ca_rollover`], the node trusts client certificates of both (after a
/// restart), new certificates are issued by the new one, and clients should trust
/// `api-ca-bundle.pem`, which holds both. Returns the new CA's last day.
pub fn begin_ca_rollover(dir: &Path, region: RegionCode) -> Result<credfed_protocol::time::Date> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    if dir.join(NEXT_CA).exists() {
        bail!(
            "a CA rollover is under way already ({NEXT_CA} exists): finish it with `credfed-node rotate-ca --finish`"
        );
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("credfed node {region} API CA {stamp}"),
    );
    let last = set_lifetime(&mut ca, CA_LIFETIME_DAYS);
    let cert = ca.self_signed(&key)?;
    write_atomically(
        &dir.join(NEXT_CA_KEY),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomically(&dir.join(NEXT_CA), cert.pem().as_bytes(), 0o644)?;
    let current = std::fs::read_to_string(dir.join("api-ca.pem")).context("reading api-ca.pem")?;
    write_atomically(
        &dir.join(CA_BUNDLE),
        format!("{current}{}", cert.pem()).as_bytes(),
        0o644,
    )?;
    write_atomically(
        &dir.join(ROLLOVER_BEGAN),
        format!("{stamp}\n").as_bytes(),
        0o644,
    )?;
    Ok(last)
}

/// Ends a CA rollover: the new CA becomes the CA (the old one kept as
/// `*.replaced-<ms>`), and the server certificate is signed again by it. Client
/// certificates issued before the rollover began stop working: listed and refused unless
/// `force`. Returns those cut off.
pub fn finish_ca_rollover(
    dir: &Path,
    region: RegionCode,
    listen_ip: std::net::IpAddr,
    force: bool,
) -> Result<Vec<RegisteredCertificate>> {
    if !dir.join(NEXT_CA).exists() {
        bail!("no CA rollover is under way: begin one with `credfed-node rotate-ca --begin`");
    }
    let began: u128 = std::fs::read_to_string(dir.join(ROLLOVER_BEGAN))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(u128::MAX);
    let issued_before = |c: &RegisteredCertificate| -> bool {
        let text =
            std::fs::read_to_string(dir.join("clients").join(&c.fingerprint)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("issued_ms="))
            .and_then(|v| v.parse::<u128>().ok())
            .is_none_or(|ms| ms < began)
    };
    let old: Vec<RegisteredCertificate> = registered_certificates(dir)?
        .into_iter()
        .filter(issued_before)
        .collect();
    if !old.is_empty() && !force {
        let names: Vec<String> = old
            .iter()
            .map(|c| format!("{} ({})", c.department, &c.fingerprint[..16]))
            .collect();
        bail!(
            "{} client certificate(s) were issued by the old CA and would stop working: {}; reissue them (issue-client-cert --replace), or pass --force to cut them off",
            old.len(),
            names.join(", ")
        );
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for name in ["api-ca.pem", "api-ca-key.pem"] {
        std::fs::rename(dir.join(name), dir.join(format!("{name}.replaced-{stamp}")))
            .with_context(|| format!("keeping {name}"))?;
    }
    std::fs::rename(dir.join(NEXT_CA_KEY), dir.join("api-ca-key.pem"))?;
    std::fs::rename(dir.join(NEXT_CA), dir.join("api-ca.pem"))?;
    let _ = std::fs::remove_file(dir.join(ROLLOVER_BEGAN));
    std::fs::copy(dir.join("api-ca.pem"), dir.join(CA_BUNDLE))?;
    let issuer = ca_issuer_of(dir, "api-ca.pem", "api-ca-key.pem", region)?;
    write_server_cert(dir, region, listen_ip, &issuer)?;
    for c in &old {
        let _ = std::fs::remove_file(dir.join("clients").join(&c.fingerprint));
    }
    Ok(old)
}

/// SHA-256 of a certificate's DER: the name of its entry in `<data-dir>/clients/`.
pub fn cert_fingerprint(der: &[u8]) -> String {
    credfed_protocol::crypto::sha256(&[der]).to_hex()
}

/// What [`issue_client_cert`] wrote.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM, mode 0600), unless issued for a signing request.
    pub key: Option<PathBuf>,
    /// Where the files it replaced were moved, with `--replace`.
    pub backups: Vec<PathBuf>,
    /// Its fingerprint: the name of its entry in `<data-dir>/clients/`.
    pub fingerprint: String,
    /// Its last valid day.
    pub not_after: String,
}

/// One client certificate the node accepts, as its entry in `<data-dir>/clients/`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegisteredCertificate {
    /// Its fingerprint (the entry's file name).
    pub fingerprint: String,
    /// The department it was issued to.
    pub department: String,
    /// Its last valid day, when recorded.
    pub not_after: Option<String>,
}

/// Every client certificate the node accepts.
pub fn registered_certificates(data_dir: &Path) -> Result<Vec<RegisteredCertificate>> {
    let dir = data_dir.join("clients");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let mut lines = text.lines();
        out.push(RegisteredCertificate {
            fingerprint: name,
            department: lines.next().unwrap_or_default().trim().to_string(),
            not_after: lines.find_map(|l| l.strip_prefix("not_after=").map(str::to_string)),
        });
    }
    out.sort_by(|a, b| (&a.department, &a.fingerprint).cmp(&(&b.department, &b.fingerprint)));
    Ok(out)
}

/// Revokes client certificates: the one whose fingerprint is given (a prefix of at
/// least 12 hex digits, as `credfed-node certs` shows), or the one in a PEM file, or
/// every one of a department. Returns what it revoked; refuses a prefix that names
/// more than one, and revoking nothing.
pub fn revoke_client_certs(
    data_dir: &Path,
    which: &RevokeWhich,
) -> Result<Vec<RegisteredCertificate>> {
    let all = registered_certificates(data_dir)?;
    let chosen: Vec<RegisteredCertificate> = match which {
        RevokeWhich::Fingerprint(f) => {
            let f = f.to_ascii_lowercase();
            if f.len() < 12 {
                bail!(
                    "--fingerprint: give at least 12 hex digits of it (credfed-node certs lists them)"
                );
            }
            let hits: Vec<_> = all
                .into_iter()
                .filter(|c| c.fingerprint.starts_with(&f))
                .collect();
            if hits.len() > 1 {
                bail!(
                    "--fingerprint {f}: names {} certificates; give more digits",
                    hits.len()
                );
            }
            hits
        }
        RevokeWhich::CertFile(path) => {
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_file(path).map_err(|e| {
                anyhow::anyhow!("--cert {}: not a PEM certificate ({e})", path.display())
            })?;
            let f = cert_fingerprint(&der);
            all.into_iter().filter(|c| c.fingerprint == f).collect()
        }
        RevokeWhich::Department(d) => all.into_iter().filter(|c| &c.department == d).collect(),
    };
    if chosen.is_empty() {
        bail!("no certificate this node accepts matches; credfed-node certs lists those it does");
    }
    for c in &chosen {
        let path = data_dir.join("clients").join(&c.fingerprint);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(chosen)
}

/// Which client certificates to revoke.
#[derive(Debug, Clone)]
pub enum RevokeWhich {
    /// By fingerprint (or a prefix of it).
    Fingerprint(String),
    /// The certificate in this PEM file.
    CertFile(PathBuf),
    /// Every certificate of this department.
    Department(String),
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a
/// rename, so that `path` holds either nothing or the whole new content.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Issues an API client certificate for `department`, writes `<out>/<department>.pem` and
/// `<out>/<department>.key` (0600), and registers its fingerprint with the node.
/// Deleting `<data-dir>/clients/<fingerprint>` revokes it.
///
/// A working certificate is never destroyed: every output path is checked before
/// anything is written, and an existing certificate or key is refused unless `replace`
/// is given, in which case the old files are kept beside the new ones as
/// `<name>.replaced-<ms>` (and the old certificate stays registered until its
/// fingerprint file is deleted).
pub fn issue_client_cert(
    data_dir: &Path,
    region: RegionCode,
    department: &credfed_protocol::ids::DepartmentId,
    out: &Path,
    replace: bool,
) -> Result<IssuedCertificate> {
    issue_client_cert_for(data_dir, region, department, out, replace, None)
}

/// As [`issue_client_cert`], for the key in a certificate signing request the
/// department made (`credfed key csr`) when `csr_pem` is given: no private key is
/// written or handed over then, only the certificate.
pub fn issue_client_cert_for(
    data_dir: &Path,
    region: RegionCode,
    department: &credfed_protocol::ids::DepartmentId,
    out: &Path,
    replace: bool,
    csr_pem: Option<&str>,
) -> Result<IssuedCertificate> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    if department.home_province() != region {
        bail!(
            "{department} belongs to {}; its certificate is issued by that province's node",
            department.home_province()
        );
    }
    let stem = department.to_string().replace(':', "-");
    let cert_path = out.join(format!("{stem}.pem"));
    let key_path = out.join(format!("{stem}.key"));
    let existing: Vec<&PathBuf> = [&cert_path, &key_path]
        .into_iter()
        .filter(|p| p.exists() && (csr_pem.is_none() || *p == &cert_path))
        .collect();
    if !replace && !existing.is_empty() {
        bail!(
            "{} already exists: a department's certificate is never overwritten. Give it another --out directory, or pass --replace to issue a new one (the old files are kept as backups)",
            existing[0].display()
        );
    }
    let clients = data_dir.join("clients");
    let issuer = ca_issuer(data_dir, region)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, department.to_string());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_lifetime(&mut params, CLIENT_CERT_LIFETIME_DAYS);
    // The subject and usage are the node's to decide, whatever the request asks for;
    // only its public key is taken (its signature proves the requester holds the key).
    let (cert, key) = match csr_pem {
        Some(pem) => {
            let csr = rcgen::CertificateSigningRequestParams::from_pem(pem).map_err(|e| {
                anyhow::anyhow!("--csr: not a certificate signing request this node can read ({e}); make one with `credfed key csr`")
            })?;
            (params.signed_by(&csr.public_key, &issuer)?, None)
        }
        None => {
            let key = KeyPair::generate()?;
            (params.signed_by(&key, &issuer)?, Some(key))
        }
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::create_dir_all(&clients).with_context(|| format!("creating {}", clients.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut backups = Vec::new();
    for old in existing {
        let name = old
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let backup = old.with_file_name(format!("{name}.replaced-{stamp}"));
        std::fs::rename(old, &backup)
            .with_context(|| format!("keeping {} as {}", old.display(), backup.display()))?;
        backups.push(backup);
    }
    if let Some(key) = &key {
        write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    }
    write_atomically(&cert_path, cert.pem().as_bytes(), 0o644)?;
    // Registered last: a certificate is usable only once both files are in place. The
    // file's first line is the department; the next ones say when it was issued and
    // until when it is valid, for the operator's page (docs/console.md).
    let not_after = params.not_after;
    let fingerprint = cert_fingerprint(cert.der());
    let record = format!(
        "{department}\nissued_ms={stamp}\nnot_after={:04}-{:02}-{:02}\n",
        not_after.year(),
        u8::from(not_after.month()),
        not_after.day()
    );
    write_atomically(&clients.join(&fingerprint), record.as_bytes(), 0o644)?;
    Ok(IssuedCertificate {
        cert: cert_path,
        key: key.map(|_| key_path),
        backups,
        fingerprint,
        not_after: format!(
            "{:04}-{:02}-{:02}",
            not_after.year(),
            u8::from(not_after.month()),
            not_after.day()
        ),
    })
}

//! A minimal HTTPS/JSON client for the node's API (used by `credfed-node status`, the
//! tests and the CLI). HTTP/1.1, one request per connection, bounded response size.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Deadline for one request, connection and TLS handshake included: a lost response must
/// not hang the caller (seen under heavy load in a 31-node drill).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A client for one node.
#[derive(Clone)]
pub struct ApiClient {
    addr: String,
    timeout: std::time::Duration,
    tls: tokio_rustls::TlsConnector,
}

/// A response: status and body.
#[derive(Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl ApiResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "response is not JSON: {}",
                self.body.chars().take(200).collect::<String>()
            )
        })
    }
}

impl ApiClient {
    /// A client for `addr` (host:port) trusting the CA in `ca_pem_file`, without a client
    /// certificate (only public endpoints will answer).
    pub fn new(addr: &str, ca_pem_file: &Path) -> Result<ApiClient> {
        Self::build(addr, ca_pem_file, None)
    }

    /// A client presenting the certificate and key a node issued to a department.
    pub fn with_identity(
        addr: &str,
        ca_pem_file: &Path,
        cert_pem_file: &Path,
        key_pem_file: &Path,
    ) -> Result<ApiClient> {
        Self::build(addr, ca_pem_file, Some((cert_pem_file, key_pem_file)))
    }

    fn build(
        addr: &str,
        ca_pem_file: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ApiClient> {
        use rustls::pki_types::pem::PemObject;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pem = std::fs::read(ca_pem_file)
            .with_context(|| format!("reading CA certificate {}", ca_pem_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer<'static> =
                cert.context("CA certificate PEM")?;
            roots.add(cert)?;
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("reading client certificate {}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()?;
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("reading client key {}", key.display()))?;
                builder.with_client_auth_cert(certs, key)?
            }
        };
        Ok(ApiClient {
            addr: addr.to_owned(),
            timeout: REQUEST_TIMEOUT,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// The same client with another per-request deadline (pollers use a short one, so a
    /// stalled connection costs little).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> Result<ApiResponse> {
        self.request("GET", path, None).await
    }

    /// POST JSON to a path.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<ApiResponse> {
        self.request("POST", path, Some(body.to_string())).await
    }

    async fn request(&self, method: &str, path: &str, body: Option<String>) -> Result<ApiResponse> {
        match tokio::time::timeout(self.timeout, self.request_inner(method, path, body)).await {
            Ok(r) => r,
            Err(_) => bail!(
                "{method} {path} at {}: no response within {:?}",
                self.addr,
                self.timeout
            ),
        }
    }

    async fn request_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<ApiResponse> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .with_context(|| {
                format!(
                    "connecting to {}: is the node running? start it with `credfed-node run`",
                    self.addr
                )
            })?;
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h);
        let name = rustls::pki_types::ServerName::try_from(if host == "127.0.0.1" {
            "127.0.0.1".to_string()
        } else {
            "localhost".to_string()
        })?;
        let mut tls = self
            .tls
            .connect(name, tcp)
            .await
            .context("TLS handshake with the node")?;
        let body = body.unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(req.as_bytes()).await?;
        tls.flush().await?;
        // Read until the response is complete (by Content-Length or the last chunk), not
        // until the server closes: waiting for the close stalled requests under load.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if response_complete(&buf) {
                break;
            }
            if buf.len() > MAX_RESPONSE_BYTES {
                bail!(
                    "response from {} exceeds {MAX_RESPONSE_BYTES} bytes",
                    self.addr
                );
            }
            match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // Servers may close without close_notify after Connection: close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
        }
        parse_response(&buf)
    }
}

/// Whether `buf` holds a whole HTTP/1.1 response.
fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if let Some(len) = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    }) {
        return body.len() >= len;
    }
    if head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn parse_response(buf: &[u8]) -> Result<ApiResponse> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed status line")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(ApiResponse { status, body })
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").context("malformed chunk")?;
        let n = usize::from_str_radix(len.trim(), 16).context("malformed chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        if rest.len() < n {
            bail!("truncated chunk");
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
}

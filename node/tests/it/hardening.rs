//! Hostile and careless clients and operators: each test reproduces one way a node could
//! be held, misled or made to lose something, and checks that it no longer can.

use std::process::Command;
use std::time::{Duration, Instant};

use credfed_client::ApiClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

/// Reads until the node closes the connection (or `limit` passes); what it sent.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Time left until `deadline`, and a little more for the read to report the close.
fn left_until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(10)
}

/// Every stream in `streams` is closed by the node before `deadline`.
async fn assert_all_closed<S: tokio::io::AsyncRead + Unpin>(
    streams: &mut [S],
    what: &str,
    deadline: Instant,
) {
    for (i, s) in streams.iter_mut().enumerate() {
        assert!(
            read_until_closed(s, left_until(deadline)).await.is_some(),
            "{what} {i} still open at the deadline"
        );
    }
}

/// Slow clients cost only their own connections: a request head sent a line at a time
/// (slowloris), a body that never completes, a TCP connection that never starts TLS —
/// each is cut within its documented limit, and meanwhile other clients, including
/// public endpoints, are answered within 100 ms even with only 8 request slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_are_cut_while_others_are_served() {
    let _exclusive = crate::harness::EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[SH, GD]);
    let mut cfg = c.config(0);
    cfg.api_handshake_timeout_ms = 1_000;
    cfg.api_request_head_timeout_ms = 1_000;
    cfg.api_request_body_timeout_ms = 1_000;
    cfg.api_max_concurrency = 8;
    c.save_config(0, &cfg);
    c.start_all().await;
    c.register_departments(0).await;
    let node = &c.nodes[0];
    let anonymous = ApiClient::new(&node.api, &node.dir.join("api-ca.pem")).unwrap();
    let department = department_client(node, "310000:obj");

    // 40 heads that never finish (no client certificate needed to get this far).
    let mut heads = Vec::new();
    for _ in 0..40 {
        let mut s = anonymous.connect_tls().await.unwrap();
        s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: node\r\n")
            .await
            .unwrap();
        heads.push(s);
    }
    // 10 bodies that never finish, more than the 8 request slots.
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let mut s = department.connect_tls().await.unwrap();
        s.write_all(
            b"POST /v1/records HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"author\":",
        )
        .await
        .unwrap();
        bodies.push(s);
    }
    // 10 TCP connections that never start TLS.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(tokio::net::TcpStream::connect(&node.api).await.unwrap());
    }
    let started = Instant::now();
    let head_before = c.status(0).await.unwrap()["own_head"].clone();

    // Others are served meanwhile: public and authenticated endpoints, on connections
    // opened now, while a slowloris client keeps adding header lines.
    let fresh = ApiClient::new(&node.api, &node.dir.join("api-ca.pem")).unwrap();
    let mut worst = Duration::ZERO;
    // Requests are paced over ~0.5 s, the window in which the slow clients hold on.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for i in 0..20 {
        pace.tick().await;
        heads[0]
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .await
            .ok();
        let t = Instant::now();
        let r = if i % 2 == 0 {
            fresh.get("/v1/openapi.json").await.unwrap()
        } else {
            c.nodes[0].client.get("/v1/status").await.unwrap()
        };
        assert_eq!(r.status, 200, "{}", r.body);
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_millis(100),
        "a request took {worst:?} while slow clients held connections"
    );

    // Every slow connection is closed within its limit (1 s) plus scheduling slack.
    let deadline = started + Duration::from_millis(1_000 + 2_000);
    assert_all_closed(&mut heads, "slow head", deadline).await;
    for (i, s) in bodies.iter_mut().enumerate() {
        let answer = read_until_closed(s, left_until(deadline))
            .await
            .unwrap_or_else(|| panic!("slow body {i} still open after {:?}", started.elapsed()));
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("\"request_timeout\""),
            "slow body {i} got: {answer}"
        );
    }
    assert_all_closed(&mut silent, "silent connection", deadline).await;
    // Nothing of the half-sent records was stored.
    assert_eq!(c.status(0).await.unwrap()["own_head"], head_before);
}

/// One client address may hold only `api_max_connections_per_client` connections: the
/// next ones are refused at accept and counted, and a connection freed is reusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_holds_at_most_its_connection_budget() {
    let mut c = Cluster::new(&[SH, GD]);
    let mut cfg = c.config(0);
    cfg.api_max_connections_per_client = 16;
    c.save_config(0, &cfg);
    c.start_all().await;
    let node = &c.nodes[0];
    // The harness's own client already holds one or two kept-alive connections.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(&node.api).await.unwrap());
    }
    let mut refused = 0;
    for s in held.iter_mut() {
        // A refused connection is closed at once; a held one stays open (silent).
        if read_until_closed(s, Duration::from_millis(300))
            .await
            .is_some()
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 4,
        "only {refused} of 20 connections refused at a budget of 16"
    );
    drop(held);
    let ok = wait_until(Duration::from_secs(5), || async {
        c.nodes[0]
            .client
            .get("/v1/status")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ok, "the budget was not given back");
    assert!(c.metric(0, "credfed_api_connections_refused").await >= 4);
}

/// Every API call leaves exactly one audit line, in order, failures and unauthenticated
/// calls included, with caller, endpoint, subject and outcome; a person's number never
/// appears, only its mask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_scripted_session_is_audited() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    c.register_departments(0).await;
    let node = &c.nodes[0];
    let anonymous = ApiClient::new(&node.api, &node.dir.join("api-ca.pem")).unwrap();
    let department = department_client(node, "310000:obj");
    let operator = &node.client;
    // Start from a marker: everything before it is setup.
    let marker = operator.get("/v1/status").await.unwrap();
    assert_eq!(marker.status, 200);
    let acme = "91350100M000100Y43";
    // (client, method, path, body, expected status, expected caller, expected subject)
    type Call<'a> = (
        &'a ApiClient,
        &'a str,
        String,
        Option<Value>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let script: Vec<Call> = vec![
        (
            &anonymous,
            "GET",
            "/v1/openapi.json".into(),
            None,
            200,
            "anonymous",
            None,
        ),
        (
            &anonymous,
            "GET",
            "/v1/status".into(),
            None,
            401,
            "anonymous",
            None,
        ),
        (
            &anonymous,
            "GET",
            "/v1/nowhere".into(),
            None,
            404,
            "anonymous",
            None,
        ),
        (
            &anonymous,
            "POST",
            "/v1/status".into(),
            Some(json!({})),
            405,
            "anonymous",
            None,
        ),
        (
            &department,
            "GET",
            format!("/v1/check?uscc={acme}&domain=procurement"),
            None,
            200,
            "310000:obj",
            Some(acme),
        ),
        (
            &department,
            "GET",
            "/v1/check?uscc=BAD&domain=procurement".into(),
            None,
            400,
            "310000:obj",
            None,
        ),
        (
            &department,
            "POST",
            "/v1/check".into(),
            Some(json!({"person": "11010519491231002X", "domain": "travel"})),
            200,
            "310000:obj",
            Some("11****************"),
        ),
        (
            &department,
            "GET",
            "/v1/log/310000?from=1&limit=2".into(),
            None,
            200,
            "310000:obj",
            None,
        ),
        (
            &department,
            "GET",
            "/v1/stats".into(),
            None,
            200,
            "310000:obj",
            None,
        ),
        (
            &department,
            "GET",
            "/v1/departments".into(),
            None,
            200,
            "310000:obj",
            None,
        ),
        (
            &department,
            "GET",
            "/v1/heads".into(),
            None,
            200,
            "310000:obj",
            None,
        ),
        (
            &department,
            "GET",
            "/v1/audit".into(),
            None,
            403,
            "310000:obj",
            None,
        ),
        (
            &department,
            "POST",
            "/v1/admin/partition".into(),
            Some(json!({"blocked": []})),
            404,
            "310000:obj",
            None,
        ),
        (
            &department,
            "POST",
            "/v1/records".into(),
            Some(json!({"author": "310000:obj", "body": "zz", "signature": "00"})),
            400,
            "310000:obj",
            None,
        ),
        (
            operator,
            "GET",
            "/v1/peers".into(),
            None,
            200,
            "310000:operator",
            None,
        ),
    ];
    for (client, method, path, body, status, _, _) in &script {
        let r = match *method {
            "GET" => client.get(path).await.unwrap(),
            _ => client.post(path, body.as_ref().unwrap()).await.unwrap(),
        };
        assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
    }
    let lines: Vec<Value> = operator
        .get("/v1/audit")
        .await
        .unwrap()
        .json()
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    // Newest first on the wire; oldest first here.
    let lines: Vec<Value> = lines.into_iter().rev().collect();
    let text = serde_json::to_string(&lines).unwrap();
    assert!(
        !text.contains("11010519491231002X"),
        "a clear number in the audit log"
    );
    // The session's lines follow the marker, one per call, in order.
    let start = lines
        .iter()
        .rposition(|l| l["endpoint"] == "GET /v1/status" && l["caller"] == "310000:operator")
        .expect("the marker's line");
    let session = &lines[start + 1..];
    assert_eq!(session.len(), script.len(), "{session:#?}");
    for (line, (_, method, path, _, status, caller, subject)) in session.iter().zip(&script) {
        let route = path.split('?').next().unwrap();
        let endpoint = line["endpoint"].as_str().unwrap();
        assert!(
            endpoint.starts_with(method) && (endpoint.ends_with(route) || endpoint.contains('{')),
            "{endpoint} for {method} {path}"
        );
        assert_eq!(line["status"], json!(status), "{line}");
        assert_eq!(line["caller"], json!(caller), "{line}");
        if let Some(s) = subject {
            assert_eq!(line["subject"], json!(s), "{line}");
        }
        assert!(
            line["time_ms"].as_i64().is_some() && line["outcome"].is_string(),
            "{line}"
        );
    }
}

/// Issuing a department's certificate a second time never destroys the first: without
/// `--replace` it refuses before writing anything; with it the old files are kept and
/// the old certificate keeps working until its fingerprint file is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_issuance_leaves_the_first_certificate_working() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    c.register_departments(0).await;
    let node = &c.nodes[0];
    let first = department_client(node, "310000:obj");
    assert_eq!(first.get("/v1/stats").await.unwrap().status, 200);
    let certs = node.dir.join("certs");
    let pem = certs.join("310000-obj.pem");
    let before = std::fs::read(&pem).unwrap();
    let issue = |replace: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "issue-client-cert",
            "--config",
            node.dir.join("config.toml").to_str().unwrap(),
            "--department",
            "310000:obj",
            "--out",
            certs.to_str().unwrap(),
        ]);
        if replace {
            cmd.arg("--replace");
        }
        cmd.output().unwrap()
    };
    let out = issue(false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--replace") && err.contains("310000-obj"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&pem).unwrap(),
        before,
        "the certificate was touched"
    );
    // A fresh connection with the first identity still works.
    let again = ApiClient::with_identity(
        &node.api,
        &node.dir.join("api-ca.pem"),
        &pem,
        &certs.join("310000-obj.key"),
    )
    .unwrap();
    assert_eq!(again.get("/v1/stats").await.unwrap().status, 200);
    // --replace: a new pair, the old kept beside it, both accepted.
    let out = issue(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read(&pem).unwrap(), before);
    let backups: Vec<_> = std::fs::read_dir(&certs)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("310000-obj.pem.replaced-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let old = ApiClient::with_identity(
        &node.api,
        &node.dir.join("api-ca.pem"),
        &certs.join(&backups[0]),
        &certs.join(backups[0].replace(".pem.", ".key.")),
    )
    .unwrap();
    assert_eq!(old.get("/v1/stats").await.unwrap().status, 200);
    let new = ApiClient::with_identity(
        &node.api,
        &node.dir.join("api-ca.pem"),
        &pem,
        &certs.join("310000-obj.key"),
    )
    .unwrap();
    assert_eq!(new.get("/v1/stats").await.unwrap().status, 200);
}

/// Runs the node on `c`'s node 0 configuration and returns its stderr once it exits
/// (it must exit: every case here is refused before the node listens).
fn refused_start(c: &Cluster) -> String {
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--config",
            c.nodes[0].dir.join("config.toml").to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(
                !err.contains("listening"),
                "the node listened before refusing: {err}"
            );
            return err;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the node started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Settings and files are checked before anything listens, and an error names the
/// setting, the file and what to do: an overflowing clock offset, a manifest issued
/// seventy years ahead, a missing person-key share or another member's, a missing API
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_time_manifest_and_files_are_refused_at_start_naming_the_culprit() {
    let c = Cluster::new(&[SH, GD]);
    let good = c.config(0);

    let mut cfg = good.clone();
    cfg.clock_offset_ms = i64::MAX;
    c.save_config(0, &cfg);
    let err = refused_start(&c);
    assert!(
        err.contains("clock_offset_ms = 9223372036854775807"),
        "{err}"
    );
    c.save_config(0, &good);

    let manifest_path = c.nodes[0].dir.join("manifest.json");
    let original = std::fs::read(&manifest_path).unwrap();
    let mut future = c.manifest.clone();
    let seventy_years = 70 * 366 * 24 * 3600 * 1000_i64;
    future.issued_at = credfed_protocol::time::Timestamp(
        future.issued_at.0.max(1_790_000_000_000) + seventy_years,
    );
    future.expires_at = credfed_protocol::time::Timestamp(future.issued_at.0 + seventy_years);
    future.version += 1;
    let signed = future.sign(&key("authority")).unwrap();
    std::fs::write(&manifest_path, serde_json::to_string(&signed).unwrap()).unwrap();
    let err = refused_start(&c);
    assert!(
        err.contains("manifest = ")
            && err.contains("issued_at")
            && err.contains("more than a day after this node's clock"),
        "{err}"
    );
    std::fs::write(&manifest_path, original).unwrap();

    let share = c.nodes[0].dir.join("person-share.key");
    let kept = std::fs::read(&share).unwrap();
    std::fs::remove_file(&share).unwrap();
    let err = refused_start(&c);
    assert!(
        err.contains(&format!("person_share_file = {}", share.display())) && err.contains("repair"),
        "{err}"
    );
    std::fs::copy(c.nodes[1].dir.join("person-share.key"), &share).unwrap();
    let err = refused_start(&c);
    assert!(
        err.contains("holds member 2's share") && err.contains("member 1"),
        "{err}"
    );
    std::fs::write(&share, kept).unwrap();

    let cert = c.nodes[0].dir.join(&good.tls_cert);
    std::fs::rename(&cert, cert.with_extension("away")).unwrap();
    let err = refused_start(&c);
    assert!(err.contains(&cert.display().to_string()), "{err}");
    std::fs::rename(cert.with_extension("away"), &cert).unwrap();
}

/// Keeps `per_node` TCP connections from `source` open to each of `targets`, reopening
/// each as soon as the node closes it, never speaking (a stranger holding handshake
/// slots), until `stop` turns true. Returns how many connections it opened.
async fn flood(
    source: std::net::IpAddr,
    targets: Vec<std::net::SocketAddr>,
    per_node: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        for _ in 0..per_node {
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut opened = 0u64;
                while !*stop.borrow() {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    if socket.bind(std::net::SocketAddr::new(source, 0)).is_err() {
                        return opened;
                    }
                    let Ok(mut conn) = socket.connect(target).await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    opened += 1;
                    // Held until the node closes it (or the flood ends).
                    let mut stop = stop.clone();
                    let mut buf = [0u8; 64];
                    tokio::select! {
                        _ = async { while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {} } => {}
                        _ = stop.changed() => {}
                    }
                }
                opened
            });
        }
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.unwrap_or(0);
    }
    total
}

async fn linked(c: &Cluster) -> bool {
    connected_to(c, 0, "440000").await && connected_to(c, 1, "310000").await
}

async fn connected_to(c: &Cluster, i: usize, region: &str) -> bool {
    c.nodes[i]
        .client
        .get("/v1/peers")
        .await
        .ok()
        .and_then(|r| r.json().ok())
        .is_some_and(|v: Value| v["connected"].get(region).is_some())
}

/// Members first: while 80 connections per node from a stranger's address are held and
/// reopened as fast as they are closed, two members whose link was cut reconnect within
/// 2 s of the heal; the stranger's connections are refused by reason, counted per
/// reason, and logged at a bounded rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_reconnect_within_two_seconds_during_a_stranger_flood() {
    let _exclusive = crate::harness::EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[SH, GD]);
    for i in 0..2 {
        let mut cfg = c.config(i);
        cfg.drill_faults = true;
        c.save_config(i, &cfg);
    }
    c.start_all().await;
    assert!(
        wait_until(Duration::from_secs(30), || linked(&c)).await,
        "never linked"
    );
    // Cut the link in both nodes.
    for (i, other) in [(0, "440000"), (1, "310000")] {
        let r = c.nodes[i]
            .client
            .post("/v1/admin/partition", &json!({"blocked": [other]}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let cut = wait_until(Duration::from_secs(30), || async {
        !connected_to(&c, 0, "440000").await && !connected_to(&c, 1, "310000").await
    })
    .await;
    assert!(cut, "the partition did not cut the link");
    // A stranger (another loopback address than the members' 127.0.0.1) floods both.
    let targets: Vec<std::net::SocketAddr> = c
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.p2p_port).parse().unwrap())
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flooder = tokio::spawn(flood("127.0.0.2".parse().unwrap(), targets, 80, stop_rx));
    // The flood is in force once both nodes refuse it for holding too many connections.
    let flooding = wait_until(Duration::from_secs(10), || async {
        let mut all = true;
        for i in 0..2 {
            all &= c
                .metric(
                    i,
                    "credfed_connections_refused_total{reason=\"per_source_pending_limit\"}",
                )
                .await
                > 0;
        }
        all
    })
    .await;
    assert!(
        flooding,
        "the flood never filled a node's budget for strangers"
    );
    // Heal, and time the reconnection.
    let healed = Instant::now();
    for i in 0..2 {
        let r = c.nodes[i]
            .client
            .post("/v1/admin/partition", &json!({"blocked": []}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let back = wait_until(Duration::from_secs(30), || linked(&c)).await;
    let took = healed.elapsed();
    stop_tx.send(true).unwrap();
    let opened = flooder.await.unwrap();
    assert!(back, "members never reconnected during the flood");
    assert!(
        took < Duration::from_secs(2),
        "members took {took:?} to reconnect after the heal"
    );
    assert!(opened >= 160, "the flood opened only {opened} connections");
    // Refusals are counted by their real reason, and logged at a bounded rate.
    for i in 0..2 {
        let refused = c
            .metric(
                i,
                "credfed_connections_refused_total{reason=\"per_source_pending_limit\"}",
            )
            .await;
        assert!(
            refused > 0,
            "node {i}: no refusal counted as per_source_pending_limit"
        );
        let lines = c
            .log(i)
            .lines()
            .filter(|l| l.contains("refused inbound connections"))
            .count();
        assert!(
            lines <= 12,
            "node {i} logged {lines} refusal lines:\n{}",
            c.log(i)
        );
    }
}

/// `credfed-node completions SHELL` prints a completion script naming its commands.
#[test]
fn the_node_binary_prints_shell_completions() {
    let out = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("credfed-node") && text.contains("issue-client-cert"),
        "{text}"
    );
}

/// Days from now until the certificate in `pem` ends.
fn cert_days_left(pem: &std::path::Path) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    credfed_node::config::cert_days_left(pem, credfed_protocol::time::Timestamp(now))
        .unwrap()
        .0
}

/// Certificates with lifetimes (docs/operator.md, "Certificates"): the CA ten years, the
/// server and client certificates one year; a department's certificate issued for the
/// key in its own signing request (no private key handed over), refused for a
/// department the node does not know; listed and revoked by a name the tool prints; the
/// server certificate renewed while clients keep trusting the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_have_lifetimes_come_from_requests_and_are_revoked_by_name() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    c.register_departments(0).await;
    let dir = c.nodes[0].dir.clone();
    let config = dir.join("config.toml");
    let node = |args: &[&str]| node_cli(&config, args);
    let ca_left = cert_days_left(&dir.join("api-ca.pem"));
    let server_left = cert_days_left(&dir.join("api-cert.pem"));
    assert!((3640..=3650).contains(&ca_left), "CA: {ca_left} days");
    assert!(
        (360..=365).contains(&server_left),
        "server: {server_left} days"
    );

    let out_dir = dir.join("issued");
    let out_arg = out_dir.to_str().unwrap().to_string();
    // A department the node does not know gets nothing.
    let out = node(&[
        "issue-client-cert",
        "--department",
        "310000:ghost",
        "--out",
        &out_arg,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not registered") && err.contains("register it first"),
        "{err}"
    );
    assert!(!out_dir.join("310000-ghost.pem").exists());

    // The department makes its key and request; only the request travels.
    let tls_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "310000:obj");
    let csr = params.serialize_request(&tls_key).unwrap().pem().unwrap();
    let csr_file = dir.join("obj.csr");
    std::fs::write(&csr_file, csr).unwrap();
    let out = node(&[
        "issue-client-cert",
        "--department",
        "310000:obj",
        "--out",
        &out_arg,
        "--csr",
        csr_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("fingerprint") && said.contains("valid until"),
        "{said}"
    );
    assert!(
        !out_dir.join("310000-obj.key").exists(),
        "no private key written"
    );
    let cert = out_dir.join("310000-obj.pem");
    assert!((360..=365).contains(&cert_days_left(&cert)));
    let key_file = dir.join("obj-own.key");
    std::fs::write(&key_file, tls_key.serialize_pem()).unwrap();
    let obj = ApiClient::with_identity(&c.nodes[0].api, &dir.join("api-ca.pem"), &cert, &key_file)
        .unwrap();
    assert_eq!(obj.get("/v1/stats").await.unwrap().status, 200);

    // Listed by fingerprint, department and last day; revoked by the printed name.
    let out = node(&["certs", "--output", "json"]);
    let certs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&Value> = certs
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["department"] == json!("310000:obj"))
        .collect();
    assert_eq!(ours.len(), 1, "{certs}");
    let fingerprint = ours[0]["fingerprint"].as_str().unwrap().to_string();
    assert!(said.contains(&fingerprint), "{said}");
    assert!(ours[0]["not_after"].as_str().is_some_and(|d| d.len() == 10));
    let out = node(&["revoke-client-cert", "--fingerprint", &fingerprint[..16]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("revoked {fingerprint} of 310000:obj"))
    );
    let refused =
        ApiClient::with_identity(&c.nodes[0].api, &dir.join("api-ca.pem"), &cert, &key_file)
            .unwrap()
            .get("/v1/stats")
            .await;
    assert!(refused.is_err() || refused.is_ok_and(|r| r.status == 401 || r.status == 403));
    let out = node(&["revoke-client-cert", "--fingerprint", &fingerprint[..16]]);
    assert!(!out.status.success(), "revoking nothing is an error");

    // Expiry in the status and the metrics; nothing to warn about a year ahead.
    let status = c.status(0).await.unwrap();
    assert!(status["certificates_warning"].is_null(), "{status}");
    let metrics = c.nodes[0].client.get("/metrics").await.unwrap().body;
    assert!(
        metrics.contains(&format!(
            "credfed_certificate_days_left{{cert=\"server\"}} {server_left}"
        )),
        "{metrics}"
    );

    // The server certificate renewed: the running node serves it within seconds, no
    // restart, and clients that trust the CA go on.
    let served = || async {
        use rustls::pki_types::pem::PemObject;
        let tls = crate::public_load::tls_connector(&dir.join("api-ca.pem"));
        let tcp = tokio::net::TcpStream::connect(&c.nodes[0].api)
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tls.connect(name, tcp).await.unwrap();
        let der = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let on_disk =
            rustls::pki_types::CertificateDer::from_pem_file(dir.join("api-cert.pem")).unwrap();
        der == on_disk
    };
    assert!(served().await);
    let before = std::fs::read(dir.join("api-cert.pem")).unwrap();
    let out = node(&["rotate-server-cert"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read(dir.join("api-cert.pem")).unwrap(), before);
    assert!(
        wait_until(Duration::from_secs(30), || async { served().await }).await,
        "the renewed certificate was never served; log:\n{}",
        c.log(0)
    );
    let status = c.nodes[0].client.get("/v1/status").await.unwrap();
    assert_eq!(status.status, 200);
}

/// Departments first on the API: 80 addresses in 80 networks each hold 16 connections
/// that finished the TLS handshake without a certificate and sent half a request — more
/// than every certified connection the node allows — and still 150 requests of a
/// department, each on a new connection, are all answered. The flood fills the pools of
/// connections without a certificate; departments are served from their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_flood_from_80_networks_leaves_departments_served() {
    let mut c = Cluster::new(&[SH, GD]);
    let mut cfg = c.config(0);
    cfg.api_max_connections = 512;
    cfg.api_max_connections_per_client = 16;
    cfg.api_max_anonymous_connections = 256;
    cfg.api_max_handshakes = 64;
    c.save_config(0, &cfg);
    c.start_all().await;
    c.register_departments(0).await;
    let node = &c.nodes[0];
    let target: std::net::SocketAddr = node.api.parse().unwrap();
    let tls = crate::public_load::tls_connector(&node.dir.join("api-ca.pem"));
    let mut held = Vec::new();
    let mut established = 0;
    for net in 1..=80u8 {
        let source: std::net::IpAddr = format!("127.0.{net}.1").parse().unwrap();
        for _ in 0..16 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
            let Ok(tcp) = socket.connect(target).await else {
                continue;
            };
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(Duration::from_secs(5), tls.connect(name, tcp)).await
            else {
                continue;
            };
            if stream
                .write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .is_ok()
            {
                established += 1;
                held.push(stream);
            }
        }
    }
    // More than the certified pool's 512 got through their handshakes.
    assert!(
        established > 512,
        "only {established} flood connections got through TLS"
    );
    let obj = department_client(node, "310000:obj");
    drop(obj);
    let mut failures = Vec::new();
    let mut times = Vec::new();
    for _ in 0..150 {
        // A new client each time: a new connection, a new handshake.
        let client = ApiClient::with_identity(
            &node.api,
            &node.dir.join("api-ca.pem"),
            &node.dir.join("certs/310000-obj.pem"),
            &node.dir.join("certs/310000-obj.key"),
        )
        .unwrap();
        let t = Instant::now();
        match client.get("/v1/stats").await {
            Ok(r) if r.status == 200 => times.push(t.elapsed()),
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 150 failed: {:?}",
        failures.len(),
        failures.first()
    );
    times.sort();
    let p99 = times[times.len() * 99 / 100];
    eprintln!(
        "department requests under the flood: p99 {p99:?}, flood connections held {}",
        held.len()
    );
    drop(held);
}

/// A CA rollover with an overlap (docs/operator.md, "Certificates"): after `rotate-ca
/// --begin` the node trusts client certificates of both CAs and issues from the new
/// one; `--finish` refuses while certificates of the old CA are registered (naming
/// them) unless forced, then the new CA is the CA, the server certificate is signed by
/// it, and the old CA's certificates no longer connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_ca_rolls_over_with_an_overlap_in_which_both_are_trusted() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    c.register_departments(0).await;
    let dir = c.nodes[0].dir.clone();
    let config = dir.join("config.toml");
    let node = |args: &[&str]| node_cli(&config, args);
    let _ = department_client(&c.nodes[0], "310000:obj");
    let api = c.nodes[0].api.clone();
    let client = |ca: &str, dept: &str, certs: &str| {
        let stem = dept.replace(':', "-");
        ApiClient::with_identity(
            &api,
            &dir.join(ca),
            &dir.join(certs).join(format!("{stem}.pem")),
            &dir.join(certs).join(format!("{stem}.key")),
        )
        .unwrap()
    };
    let works =
        |cl: ApiClient| async move { cl.get("/v1/stats").await.is_ok_and(|r| r.status == 200) };
    assert!(works(client("api-ca.pem", "310000:obj", "certs")).await);

    let out = node(&["rotate-ca", "--begin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = std::fs::read_to_string(dir.join("api-ca-bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    c.stop(0);
    c.start(0);
    c.wait_writable(0).await;
    // The overlap: the old CA's certificate still connects, a new one from the new CA too.
    assert!(works(client("api-ca.pem", "310000:obj", "certs")).await);
    let out = node(&[
        "issue-client-cert",
        "--department",
        "310000:impl",
        "--out",
        dir.join("new").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(works(client("api-ca-bundle.pem", "310000:impl", "new")).await);

    // Finishing would cut off the old CA's certificates: refused, naming them.
    let out = node(&["rotate-ca", "--finish"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("310000:obj") && err.contains("--force"),
        "{err}"
    );
    let out = node(&["rotate-ca", "--finish", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cut off"));
    c.stop(0);
    c.start(0);
    // The new CA's certificate connects, trusting the new CA alone; the old one does not.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            works(client("api-ca.pem", "310000:impl", "new")).await
        })
        .await,
        "log:\n{}",
        c.log(0)
    );
    assert!(!works(client("api-ca-bundle.pem", "310000:obj", "certs")).await);
}

//! Person keys across real nodes (docs/privacy.md): the members' threshold evaluation, a
//! member that lies, a member enumerating beyond its budget, a region cut off from the
//! majority.

use std::time::Duration;

use credfed_protocol::ids::resident_id::check_character;
use serde_json::json;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;

/// A valid identity number of a person born 1949-12-31 in Beijing's Dongcheng district,
/// with sequence `seq`.
fn number(seq: u16) -> String {
    let first17 = format!("11010119491231{seq:03}");
    let check = check_character(first17.as_bytes()).unwrap();
    format!("{first17}{check}")
}

async fn person_refs(c: &Cluster, i: usize, numbers: &[String]) -> credfed_client::ApiResponse {
    let persons: Vec<_> = numbers
        .iter()
        .map(|n| json!({"number": n, "name": "张三"}))
        .collect();
    c.nodes[i]
        .client
        .post("/v1/persons/refs", &json!({ "persons": persons }))
        .await
        .unwrap()
}

/// A cluster whose nodes accept drill faults (partitions, a lying member).
fn drill_cluster(regions: &[u32]) -> Cluster {
    let c = Cluster::new(regions);
    for i in 0..regions.len() {
        let mut cfg = c.config(i);
        cfg.drill_faults = true;
        c.save_config(i, &cfg);
    }
    c
}

async fn wait_person_keys_available(c: &Cluster, i: usize, available: bool) {
    let ok = wait_until(Duration::from_secs(30), || async {
        c.status(i)
            .await
            .is_some_and(|s| s["person_keys"]["available"] == json!(available))
    })
    .await;
    assert!(
        ok,
        "node {i}: person keys never became available = {available}; status {:?}; log:\n{}",
        c.status(i).await,
        c.log(i)
    );
}

/// The same number keyed at every node gives one key (members' shares combine to one
/// function, whichever members answer), different numbers give different keys, and no
/// answer or audit line carries a clear number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_keys_a_number_alike_and_no_clear_number_is_kept() {
    let mut c = Cluster::new(&[SH, GD, GS]);
    c.start_all().await;
    let numbers: Vec<String> = (1..=5).map(number).collect();
    let mut keys = Vec::new();
    for i in 0..3 {
        wait_person_keys_available(&c, i, true).await;
        let r = person_refs(&c, i, &numbers).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let refs: credfed_client::PersonRefsAnswer = serde_json::from_str(&r.body).unwrap();
        keys.push(refs.refs.iter().map(|p| p.id_hash).collect::<Vec<_>>());
    }
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], keys[2]);
    let mut distinct = keys[0].clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5);
    for i in 0..3 {
        c.stop(i);
        for file in ["audit.log", "node.log"] {
            let text = std::fs::read_to_string(c.nodes[i].dir.join(file)).unwrap_or_default();
            for n in &numbers {
                assert!(!text.contains(n.as_str()), "node {i} {file} holds {n}");
            }
        }
    }
    // The answering members' audit logs name the asking member and the count, nothing
    // more: one line per remote answer, at least one per asking node.
    let lines: Vec<String> = (0..3)
        .flat_map(|i| {
            std::fs::read_to_string(c.nodes[i].dir.join("audit.log"))
                .unwrap()
                .lines()
                .filter(|l| l.contains("p2p /credfed/person-key/1"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(":node") && l.contains("5 blinded elements")),
        "{lines:?}"
    );
}

/// A member that answers with evaluations under a wrong share is caught by its proof,
/// named in the asking node's status, and another member is asked: every check succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_member_is_caught_by_its_proof_and_another_member_is_asked() {
    let mut c = drill_cluster(&[SH, GD, GS]);
    c.start_all().await;
    wait_person_keys_available(&c, 0, true).await;
    let honest = person_refs(&c, 0, &[number(7)]).await;
    assert_eq!(honest.status, 200, "{}", honest.body);
    let r = c.nodes[1]
        .client
        .post(
            "/v1/admin/partition",
            &json!({"blocked": [], "lie_person_keys": true}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The rotation asks connected members only: wait until Shanghai holds connections
    // to both others (on a loaded machine one may still be dialling).
    let connected = wait_until(Duration::from_secs(30), || async {
        c.status(0)
            .await
            .is_some_and(|s| s["peers_connected"].as_u64().unwrap_or(0) >= 2)
    })
    .await;
    assert!(connected, "Shanghai never connected to both other members");
    // Several distinct numbers (the cache would answer a repeated one), so that the
    // rotation asks Guangdong first at least once.
    for seq in 10..16 {
        let r = person_refs(&c, 0, &[number(seq)]).await;
        assert_eq!(r.status, 200, "number {seq}: {}", r.body);
    }
    let status = c.status(0).await.unwrap();
    let failures = &status["person_keys"]["member_failures"];
    assert!(
        failures["440000:bad_proof"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
    assert!(
        c.metric(0, "credfed_person_key_member_failures_total")
            .await
            >= 1
    );
    // Keys made while Guangdong lied are the same as honest ones.
    c.nodes[1]
        .client
        .post("/v1/admin/partition", &json!({"blocked": []}))
        .await
        .unwrap();
    let again = person_refs(&c, 2, &[number(7)]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again.body).unwrap()["refs"][0]["id_hash"],
        serde_json::from_str::<serde_json::Value>(&honest.body).unwrap()["refs"][0]["id_hash"]
    );
}

/// A member asking for more evaluations than the manifest's budget is refused by every
/// member it asks, the refusals are counted and shown at the refusing members and, by
/// signed gossiped reports, at every member; its departments get 503
/// `person_checks_unavailable` naming the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enumerating_member_is_refused_over_its_budget() {
    let mut c = Cluster::new(&[SH, GD, GS]);
    let mut m = c.manifest.clone();
    let pk = m.person_key.as_mut().unwrap();
    pk.burst = 3;
    pk.evaluations_per_day = 3;
    m.version += 1;
    let signed = serde_json::to_string(&m.sign(&key("authority")).unwrap()).unwrap();
    for n in &c.nodes {
        std::fs::write(n.dir.join("manifest.json"), &signed).unwrap();
    }
    c.start_all().await;
    wait_person_keys_available(&c, 0, true).await;
    let mut refused = None;
    // Each key costs Shanghai one evaluation at Guangdong or Gansu: 3 + 3, then none.
    for seq in 100..110 {
        let r = person_refs(&c, 0, &[number(seq)]).await;
        if r.status != 200 {
            refused = Some((seq, r));
            break;
        }
    }
    let (seq, r) = refused.expect("the budget never ran out");
    assert!(seq <= 106, "refused only at the {}th number", seq - 99);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error().code, "person_checks_unavailable", "{}", r.body);
    assert!(r.body.contains("budget of 3 a day"), "{}", r.body);
    for i in [1, 2] {
        let status = c.status(i).await.unwrap();
        assert!(
            status["person_keys"]["over_budget"]["310000"]
                .as_u64()
                .unwrap_or(0)
                >= 1,
            "node {i}: {status}"
        );
        let audit = std::fs::read_to_string(c.nodes[i].dir.join("audit.log")).unwrap();
        assert!(audit.contains("over_budget"), "node {i}");
    }
    // Each refusing member tells every member, signed: Guangdong learns of Gansu's
    // refusals and Gansu of Guangdong's, and the enumerator's own node hears of both.
    for (i, reporter) in [(1, "620000"), (2, "440000"), (0, "440000"), (0, "620000")] {
        let ok = wait_until(Duration::from_secs(20), || async {
            c.status(i).await.is_some_and(|s| {
                s["person_keys"]["over_budget_reported"]["310000"][reporter]
                    .as_u64()
                    .unwrap_or(0)
                    >= 1
            })
        })
        .await;
        assert!(
            ok,
            "node {i} never heard {reporter}'s report: {:?}",
            c.status(i).await
        );
    }
}

/// A region cut off from the majority answers person checks "unavailable" (and still
/// answers organisation checks); after the heal it answers person checks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_cut_off_from_the_majority_says_person_checks_are_unavailable() {
    let mut c = drill_cluster(&[SH, GD, GS]);
    c.start_all().await;
    wait_person_keys_available(&c, 0, true).await;
    let cut = c.nodes[0]
        .client
        .post(
            "/v1/admin/partition",
            &json!({"blocked": [GD.to_string(), GS.to_string()]}),
        )
        .await
        .unwrap();
    assert_eq!(cut.status, 200, "{}", cut.body);
    wait_person_keys_available(&c, 0, false).await;
    let r = person_refs(&c, 0, &[number(20)]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error().code, "person_checks_unavailable", "{}", r.body);
    assert!(r.body.contains("of the 2 members needed"), "{}", r.body);
    let check = c.nodes[0]
        .client
        .post(
            "/v1/check",
            &json!({"person": number(20), "domain": "travel"}),
        )
        .await
        .unwrap();
    assert_eq!(check.status, 503, "{}", check.body);
    let org = c.nodes[0]
        .client
        .get("/v1/check?uscc=91350100M000100Y43&domain=procurement")
        .await
        .unwrap();
    assert_eq!(org.status, 200, "organisation checks go on: {}", org.body);
    c.nodes[0]
        .client
        .post("/v1/admin/partition", &json!({"blocked": []}))
        .await
        .unwrap();
    wait_person_keys_available(&c, 0, true).await;
    let r = person_refs(&c, 0, &[number(20)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn install_manifest(c: &mut Cluster, m: &credfed_protocol::manifest::Manifest) {
    let signed = serde_json::to_string(&m.sign(&key("authority")).unwrap()).unwrap();
    for n in &c.nodes {
        std::fs::write(n.dir.join("manifest.json"), &signed).unwrap();
    }
    c.manifest = m.clone();
}

async fn ceremony(c: &Cluster, i: usize, body: serde_json::Value) -> serde_json::Value {
    let r = c.nodes[i]
        .client
        .post("/v1/admin/person-key-ceremony", &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "node {i}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

async fn ceremony_status(c: &Cluster, i: usize) -> serde_json::Value {
    let r = c.nodes[i]
        .client
        .get("/v1/admin/person-key-ceremony")
        .await
        .unwrap();
    serde_json::from_str(&r.body).unwrap()
}

/// Waits until every node's ceremony is done; returns their statuses.
async fn ceremony_done(c: &Cluster) -> Vec<credfed_client::CeremonyStatus> {
    let ok = wait_until(Duration::from_secs(30), || async {
        let mut all = true;
        for i in 0..c.nodes.len() {
            all &= ceremony_status(c, i).await["state"] == json!("done");
        }
        all
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..c.nodes.len() {
        statuses.push(ceremony_status(c, i).await);
    }
    assert!(ok, "ceremony never ended everywhere: {statuses:#?}");
    statuses
        .into_iter()
        .map(|s| serde_json::from_value(s).unwrap())
        .collect()
}

/// Every node switches to the ceremony's result: the manifest with its public shares,
/// and the new share file named in the config.
async fn adopt(c: &mut Cluster, done: &[credfed_client::CeremonyStatus]) {
    for i in 0..c.nodes.len() {
        c.stop(i);
    }
    let mut m = c.manifest.clone();
    m.person_key = done[0].person_key.clone();
    m.version += 1;
    install_manifest(c, &m);
    for (i, s) in done.iter().enumerate() {
        let mut cfg = c.config(i);
        cfg.person_share_file = s.share_file.clone().unwrap();
        c.save_config(i, &cfg);
    }
    c.start_all().await;
}

/// The members make the person key between themselves over their connections — one
/// member starts late and gets what was held for it, an impersonating or malformed plan
/// is refused — every node writes only its own share, the nodes use the key once the
/// manifest lists it, and a refresh among them changes every share but no person key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_make_and_refresh_the_person_key_over_their_connections() {
    let mut c = Cluster::new(&[SH, GD, GS]);
    let mut m = c.manifest.clone();
    m.person_key = None;
    install_manifest(&mut c, &m);
    c.start_all().await;
    let status = c.status(0).await.unwrap();
    assert_eq!(
        status["person_keys"]["configured"],
        json!(false),
        "{status}"
    );
    // No ceremony yet: 404 saying how to start one; bad plans are refused naming the field.
    let r = c.nodes[0]
        .client
        .get("/v1/admin/person-key-ceremony")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("credfed person-key start"), "{}", r.body);
    for (body, field) in [
        (
            json!({"kind": "generate", "label": "x", "threshold": 4}),
            "threshold",
        ),
        (json!({"kind": "mint", "label": "x"}), "kind"),
        (json!({"kind": "refresh", "label": "x"}), "kind"),
        (
            json!({"kind": "generate", "label": "x", "members": ["650000"]}),
            "members",
        ),
    ] {
        let r = c.nodes[0]
            .client
            .post("/v1/admin/person-key-ceremony", &body)
            .await
            .unwrap();
        assert!(r.status == 400 || r.status == 422, "{body}: {}", r.body);
        assert_eq!(
            r.error().field.as_deref(),
            Some(field),
            "{body}: {}",
            r.body
        );
    }
    // Departments may not run ceremonies.
    c.register_departments(0).await;
    let dept = department_client(&c.nodes[0], "310000:pub");
    let r = dept
        .post(
            "/v1/admin/person-key-ceremony",
            &json!({"kind": "generate", "label": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    let plan = json!({"kind": "generate", "label": "it 2026-12"});
    let first = ceremony(&c, 0, plan.clone()).await;
    assert_eq!(first["threshold"], json!(2));
    ceremony(&c, 1, plan.clone()).await;
    // Gansu has not started: the others wait for it by name.
    let ok = wait_until(Duration::from_secs(20), || async {
        ceremony_status(&c, 0).await["waiting_for"] == json!(["620000"])
    })
    .await;
    assert!(ok, "{}", ceremony_status(&c, 0).await);
    let third = ceremony(&c, 2, plan).await;
    assert_eq!(third["ceremony"], first["ceremony"], "one plan, one id");
    let done = ceremony_done(&c).await;
    for s in &done[1..] {
        assert_eq!(s.person_key, done[0].person_key);
    }
    // Each node wrote its own share, and no node's share is another's.
    let shares: Vec<credfed_protocol::oprf::ShareKey> = done
        .iter()
        .map(|s| {
            credfed_protocol::oprf::ShareKey::from_file_text(
                &std::fs::read_to_string(s.share_file.as_ref().unwrap()).unwrap(),
            )
            .unwrap()
        })
        .collect();
    for (i, s) in shares.iter().enumerate() {
        assert!(
            done[i]
                .share_file
                .as_ref()
                .unwrap()
                .starts_with(&c.nodes[i].dir)
        );
        let listed = done[0]
            .person_key
            .as_ref()
            .unwrap()
            .of_region(c.nodes[i].region)
            .unwrap();
        assert_eq!(listed.public_share, s.public());
    }

    adopt(&mut c, &done).await;
    let numbers: Vec<String> = (40..43).map(number).collect();
    let mut before = Vec::new();
    for i in 0..3 {
        wait_person_keys_available(&c, i, true).await;
        let r = person_refs(&c, i, &numbers).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let refs: credfed_client::PersonRefsAnswer = serde_json::from_str(&r.body).unwrap();
        before.push(refs.refs.iter().map(|p| p.id_hash).collect::<Vec<_>>());
    }
    assert_eq!(before[0], before[1]);
    assert_eq!(before[0], before[2]);

    // A refresh: new shares, the same key.
    let refresh = json!({"kind": "refresh", "label": "it refresh"});
    for i in 0..3 {
        ceremony(&c, i, refresh.clone()).await;
    }
    let refreshed = ceremony_done(&c).await;
    let old = c.manifest.person_key.clone().unwrap();
    let new = refreshed[0].person_key.clone().unwrap();
    for (a, b) in old.shares.iter().zip(&new.shares) {
        assert_eq!((a.region, a.index), (b.region, b.index));
        assert_ne!(a.public_share, b.public_share);
    }
    adopt(&mut c, &refreshed).await;
    for i in 0..3 {
        wait_person_keys_available(&c, i, true).await;
        let r = person_refs(&c, i, &numbers).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let refs: credfed_client::PersonRefsAnswer = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            refs.refs.iter().map(|p| p.id_hash).collect::<Vec<_>>(),
            before[0],
            "node {i}: a refresh changed person keys"
        );
    }
}

/// A member whose share file is gone starts only when told the share is lost, answers
/// no evaluations, and gets the same share back from the others over their connections
/// (checked against the manifest's public share); after a restart on it, the keys are
/// what they were. A helper writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_share_gets_it_back_from_the_others() {
    let mut c = Cluster::new(&[SH, GD, GS]);
    c.start_all().await;
    wait_person_keys_available(&c, 0, true).await;
    let numbers: Vec<String> = (60..62).map(number).collect();
    let r = person_refs(&c, 0, &numbers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before: credfed_client::PersonRefsAnswer = serde_json::from_str(&r.body).unwrap();

    // Gansu loses its share.
    c.stop(2);
    let cfg = c.config(2);
    let share_path = c.nodes[2].dir.join(&cfg.person_share_file);
    let original = std::fs::read_to_string(&share_path).unwrap();
    std::fs::remove_file(&share_path).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "run",
            "--config",
            c.nodes[2].dir.join("config.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("person_share_lost"), "{err}");
    let mut lost = cfg.clone();
    lost.person_share_lost = true;
    c.save_config(2, &lost);
    c.start(2);
    c.wait_writable(2).await;

    let plan = json!({"kind": "repair", "label": "gansu lost", "member": "620000"});
    for i in 0..3 {
        ceremony(&c, i, plan.clone()).await;
    }
    let done = ceremony_done(&c).await;
    assert!(done[0].share_file.is_none() && done[1].share_file.is_none());
    let repaired = std::fs::read_to_string(done[2].share_file.as_ref().unwrap()).unwrap();
    assert_eq!(
        credfed_protocol::oprf::ShareKey::from_file_text(&repaired)
            .unwrap()
            .secret_bytes(),
        credfed_protocol::oprf::ShareKey::from_file_text(&original)
            .unwrap()
            .secret_bytes()
    );
    assert_eq!(done[2].person_key, c.manifest.person_key);

    c.stop(2);
    let mut back = c.config(2);
    back.person_share_lost = false;
    back.person_share_file = done[2].share_file.clone().unwrap();
    c.save_config(2, &back);
    c.start(2);
    wait_person_keys_available(&c, 2, true).await;
    // Gansu answers again: with Shanghai stopped, Guangdong needs Gansu's share.
    c.stop(0);
    wait_person_keys_available(&c, 1, true).await;
    let r = person_refs(&c, 1, &numbers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after: credfed_client::PersonRefsAnswer = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        after.refs.iter().map(|p| p.id_hash).collect::<Vec<_>>(),
        before.refs.iter().map(|p| p.id_hash).collect::<Vec<_>>()
    );
}

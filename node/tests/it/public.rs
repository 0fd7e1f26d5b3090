//! The public side through its own router, in process (docs/public.md): search, subject
//! and entry pages, what is shown of persons and what never is, the evidence download
//! and its verification, the open-data feed followed from the start and resumed from a
//! cursor and checked against the witnessed checkpoint, the bulk files, and that no
//! department or operator route is reachable.

use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode, header};
use credfed_protocol::crypto::{Hash256, PublicKey, sha256};
use credfed_protocol::ids::PersonRef;
use credfed_protocol::open_data::{CheckpointMatch, FeedLine, RegionFeedVerifier};
use credfed_protocol::record::*;
use serde_json::Value;
use tower::ServiceExt;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const MAX_PAGE_BYTES: usize = 100 * 1024;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
    bytes: Vec<u8>,
}

async fn send(router: &axum::Router, req: Request<HttpBody>) -> Answer {
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
    {
        assert!(
            bytes.len() <= MAX_PAGE_BYTES,
            "page of {} bytes",
            bytes.len()
        );
        assert!(
            headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "a page without a CSP"
        );
    }
    Answer {
        status,
        headers,
        body,
        bytes,
    }
}

async fn get(router: &axum::Router, path: &str) -> Answer {
    send(router, Request::get(path).body(HttpBody::empty()).unwrap()).await
}

fn person(label: &str, name: &str) -> PersonRef {
    PersonRef {
        id_hash: sha256(&[b"public-test-person", label.as_bytes()]),
        masked: "11****************".into(),
        name: name.into(),
    }
}

/// Reads a region's feed page by page (`limit` lines each) into `v` until the page
/// reaches `to` records; returns the bodies of the published records.
async fn follow(
    router: &axum::Router,
    v: &mut RegionFeedVerifier,
    to: u64,
    limit: u64,
) -> Vec<Body> {
    let mut bodies = Vec::new();
    while v.size() < to {
        let page = get(
            router,
            &format!(
                "/open-data/v1/feed/{}?after={}&limit={limit}",
                v.region,
                v.size()
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for text in page.body.lines() {
            if v.size() >= to {
                break;
            }
            let line: FeedLine = serde_json::from_str(text).unwrap();
            if let Some(b) = v.apply(&line).unwrap_or_else(|e| panic!("{e}")) {
                bodies.push(b);
            }
        }
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_sees_what_the_law_makes_public_and_can_verify_it() {
    let mut c = Cluster::new(&[SH, GD]);
    let mut cfg = c.config(1);
    // Every request here comes from one in-process "address": no rate limit in the way.
    cfg.public_requests_per_minute = 1_000_000;
    c.save_config(1, &cfg);
    c.start(0);
    let (gd, _faults) = c.start_faulty(1).await;
    c.wait_writable(0).await;
    c.wait_writable(1).await;
    c.register_departments(0).await;
    c.register_departments(1).await;

    // 1. A company without related persons, with hostile text: public, evidence too.
    let mut plain = wage_arrears_entry("沪人社罚〔2026〕<script>alert(1)</script>号");
    if let Subject::Organisation { name, .. } = &mut plain.subject {
        *name = "<img src=x onerror=alert(2)>某某劳务有限公司".into();
    }
    plain.summary = "=HYPERLINK(\"http://x\")拖欠工资".into();
    let (plain_id, _) = c.list_and_ask_all(0, plain, "沪联惩〔2026〕31号").await;
    // 2. A company whose entry names its legal representative (article 十四): the page
    //    shows the representative's name, but the signed record carries a person key,
    //    so its evidence file is not public.
    let legal_rep = person("legal-rep", "王五");
    let mut with_rep = wage_arrears_entry("沪人社罚〔2026〕32号");
    with_rep.subject = Subject::Organisation {
        uscc: "91110000100000000R".into(),
        name: "某某科技有限公司".into(),
        check_exemption: None,
    };
    with_rep.related_persons = vec![RelatedPerson {
        role: RelatedRole::LegalRepresentative,
        person: legal_rep.clone(),
    }];
    let (rep_id, _) = c.list_and_ask_all(0, with_rep, "沪联惩〔2026〕32号").await;
    // 3. A court-listed dishonest debtor: shown by name and masked number.
    let debtor = person("debtor", "赵六");
    let mut court = wage_arrears_entry("（2026）沪01执33号");
    court.category = Category::Black(BlackCategory::DefyingJudgmentOrDecision);
    court.subject = Subject::Person(debtor.clone());
    court.findings = vec![Finding::AbleButRefuses];
    court.requested_measures = vec![MeasureCode("P-TRAVEL-AIR".into())];
    let (debtor_id, _) = c.list_and_ask_all(0, court, "沪联惩〔2026〕33号").await;
    // 4. A person on the food-safety list: no statute makes it public; never shown.
    let hidden = person("hidden", "钱七");
    let mut food = wage_arrears_entry("沪市监罚〔2026〕34号");
    food.category = Category::Black(BlackCategory::FoodAndDrug);
    food.subject = Subject::Person(hidden.clone());
    food.requested_measures = vec![];
    let today = today();
    food.effective_from = today.add_days(-1);
    food.expires_on = today.add_days(365);
    let r = c
        .submit(0, "310000:pub", &Body::ListEntryPublished(food.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let hidden_id = entry_id(c.nodes[0].region, &food);
    // 5. Two penalty decisions about the first company (双公示, article 十七): one within
    //    its public period, one whose period ended yesterday.
    let plain_subject = wage_arrears_entry("x").subject;
    for (no, decided, until) in [
        (
            "沪市监罚〔2026〕35号",
            today.add_days(-3),
            today.add_days(90),
        ),
        (
            "沪市监罚〔2025〕36号",
            today.add_days(-200),
            today.add_days(-1),
        ),
    ] {
        let d = Disclosure {
            kind: DisclosureKind::Penalty,
            subject: plain_subject.clone(),
            decision_no: no.into(),
            authority: "上海市市场监督管理局".into(),
            decided_on: decided,
            summary: "<b>罚款</b>二万元".into(),
            public_until: until,
        };
        let r = c.submit(0, "310000:pub", &Body::DecisionDisclosed(d)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let sh_head = c.head(0, SH).await;
    let held = wait_until(Duration::from_secs(30), || async {
        c.head(1, SH).await >= sh_head
    })
    .await;
    assert!(held, "Guangdong never received Shanghai's records");
    let p = gd.public_router.clone();
    let secrets: Vec<String> = [&legal_rep, &debtor, &hidden]
        .iter()
        .map(|p| p.id_hash.to_hex())
        .collect();
    let leaks = |text: &str, what: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a person key in {what}");
        }
    };

    // No department, console or operator route is on the public side.
    for path in [
        "/v1/status",
        "/v1/check?uscc=91350100M000100Y43&domain=procurement",
        "/v1/audit",
        "/v1/inbox",
        "/console/",
        "/metrics",
        "/v1/admin/person-key-ceremony",
    ] {
        let a = get(&p, path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path} is reachable");
    }

    // Search by code goes to the subject's page; by name lists the subject.
    let home = get(&p, "/").await;
    assert_eq!(home.status, StatusCode::OK);
    let by_code = get(&p, "/?q=91350100m000100y43").await;
    assert_eq!(by_code.status, StatusCode::SEE_OTHER);
    let by_name = get(&p, "/?q=%E5%8A%B3%E5%8A%A1").await; // 劳务
    assert_eq!(by_name.status, StatusCode::OK);
    assert!(
        by_name.body.contains("/subjects/91350100M000100Y43"),
        "{}",
        by_name.body
    );
    let short = get(&p, "/?q=%E5%85%AC%E5%8F%B8").await; // 公司 alone
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("q:"), "{}", short.body);
    // The court-listed debtor is found by name; the food-list person is not.
    let found = get(&p, "/?q=%E8%B5%B5%E5%85%AD").await; // 赵六
    assert!(
        found.body.contains(&debtor_id.to_string()),
        "{}",
        found.body
    );
    assert!(found.body.contains("11****************"), "{}", found.body);
    let not_found = get(&p, "/?q=%E9%92%B1%E4%B8%83").await; // 钱七
    assert!(!not_found.body.contains(&hidden_id.to_string()));
    assert!(!not_found.body.contains("<tbody>"), "{}", not_found.body);

    // The subject page: escaped, with its entry, and a verifiable evidence file.
    let subject = get(&p, "/subjects/91350100M000100Y43").await;
    assert_eq!(subject.status, StatusCode::OK);
    assert!(subject.body.contains(&plain_id.to_string()));
    assert!(
        !subject.body.contains("<img src=x"),
        "raw HTML from a record"
    );
    assert!(subject.body.contains("&#60;img src=x"), "{}", subject.body);
    // The disclosure within its period is listed (escaped); the ended one is not.
    assert!(
        subject.body.contains("沪市监罚〔2026〕35号"),
        "{}",
        subject.body
    );
    assert!(subject.body.contains("&#60;b&#62;罚款"), "{}", subject.body);
    assert!(
        !subject.body.contains("沪市监罚〔2025〕36号"),
        "{}",
        subject.body
    );
    assert!(
        subject
            .body
            .contains("/subjects/91350100M000100Y43/evidence")
    );
    // A proven answer speaks as of the latest federation checkpoint: wait for one that
    // covers Shanghai's records.
    let listed_in_evidence = wait_until(Duration::from_secs(60), || async {
        let a = get(
            &p,
            "/subjects/91350100M000100Y43/evidence?domain=procurement",
        )
        .await;
        a.status == StatusCode::OK
            && credfed_protocol::federation::ProvenAnswer::from_file(&a.bytes)
                .is_ok_and(|f| !f.answer.entries.is_empty())
    })
    .await;
    assert!(
        listed_in_evidence,
        "no proven answer ever listed the company"
    );
    let evidence = get(
        &p,
        "/subjects/91350100M000100Y43/evidence?domain=procurement",
    )
    .await;
    assert_eq!(evidence.status, StatusCode::OK, "{}", evidence.body);
    leaks(
        &String::from_utf8_lossy(&evidence.bytes),
        "a public evidence file",
    );
    let verified = send(
        &p,
        Request::post("/verify")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(HttpBody::from(evidence.bytes.clone()))
            .unwrap(),
    )
    .await;
    let v: Value = serde_json::from_str(&verified.body).unwrap();
    assert_eq!(v["status"], "verified", "{v}");
    let mut forged = evidence.bytes.clone();
    let at = forged.len() / 2;
    forged[at] ^= 1;
    let refused = send(
        &p,
        Request::post("/verify")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(HttpBody::from(forged))
            .unwrap(),
    )
    .await;
    assert!(
        !refused.body.contains("\"status\":\"verified\""),
        "{}",
        refused.body
    );

    // The company with a legal representative: shown by name, no evidence file.
    let rep_page = get(&p, &format!("/entries/{rep_id}")).await;
    assert_eq!(rep_page.status, StatusCode::OK);
    assert!(rep_page.body.contains("王五"), "{}", rep_page.body);
    let rep_subject = get(&p, "/subjects/91110000100000000R").await;
    assert!(
        rep_subject.body.contains("证据文件不公开"),
        "{}",
        rep_subject.body
    );
    let refused_once_covered = wait_until(Duration::from_secs(60), || async {
        get(&p, "/subjects/91110000100000000R/evidence")
            .await
            .status
            == StatusCode::FORBIDDEN
    })
    .await;
    assert!(
        refused_once_covered,
        "the evidence of a record naming a person was never refused"
    );
    let rep_evidence = get(&p, "/subjects/91110000100000000R/evidence").await;
    assert!(
        rep_evidence.body.contains("natural person"),
        "{}",
        rep_evidence.body
    );
    leaks(&rep_evidence.body, "a refusal");
    // The debtor's entry shows name and masked number and the basis for showing them;
    // the food-list person's entry reads like an entry that does not exist.
    let debtor_page = get(&p, &format!("/entries/{debtor_id}")).await;
    assert_eq!(debtor_page.status, StatusCode::OK);
    assert!(debtor_page.body.contains("赵六") && debtor_page.body.contains("法释〔2017〕7号"));
    let hidden_page = get(&p, &format!("/entries/{hidden_id}")).await;
    let nothing = get(&p, &format!("/entries/{}", "ab".repeat(32))).await;
    assert_eq!(hidden_page.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden_page.body, nothing.body);
    for a in [
        &home,
        &by_name,
        &found,
        &subject,
        &rep_page,
        &rep_subject,
        &debtor_page,
    ] {
        leaks(&a.body, "a page");
    }

    // Conditional requests: the same state, the same tag, 304 with no body.
    let tag = subject.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = send(
        &p,
        Request::get("/subjects/91350100M000100Y43")
            .header(header::IF_NONE_MATCH, &tag)
            .body(HttpBody::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.bytes.is_empty());

    // Bulk files: the public entries, no person key, formulas defused in CSV.
    let jsonl = get(&p, "/open-data/v1/entries.jsonl").await;
    assert_eq!(jsonl.body.lines().count(), 3, "{}", jsonl.body);
    leaks(&jsonl.body, "entries.jsonl");
    assert!(!jsonl.body.contains("钱七"));
    let csv = get(&p, "/open-data/v1/entries.csv").await;
    assert_eq!(csv.body.lines().count(), 4);
    assert!(csv.body.contains("\"'=HYPERLINK("), "{}", csv.body);
    leaks(&csv.body, "entries.csv");
    let ftm = get(&p, "/open-data/v1/entities.ftm.json").await;
    let entities: Vec<Value> = ftm
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        entities
            .iter()
            .filter(|e| e["schema"] == "Sanction")
            .count(),
        3
    );
    leaks(&ftm.body, "the FollowTheMoney file");

    // The feed: the manifest verifies under the pinned authority key, the witnessed
    // checkpoint covers Shanghai's log, and a mirror that follows it from the start and
    // one that resumes from a cursor both reproduce its root.
    let authority = PublicKey::from_hex(&cfg.authority_key).unwrap();
    let signed: credfed_protocol::manifest::SignedManifest =
        serde_json::from_str(&get(&p, "/open-data/v1/manifest").await.body).unwrap();
    let manifest = signed
        .verify(
            &authority,
            credfed_protocol::time::Timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64,
            ),
        )
        .unwrap();
    let covered = wait_until(Duration::from_secs(60), || async {
        let cps: Value =
            serde_json::from_str(&get(&p, "/open-data/v1/checkpoints").await.body).unwrap();
        cps["310000"].as_str().is_some_and(|n| {
            credfed_protocol::checkpoint::SignedCheckpoint::parse(n)
                .is_ok_and(|s| s.checkpoint.size >= sh_head)
        })
    })
    .await;
    assert!(
        covered,
        "no witnessed checkpoint of Shanghai covers its log"
    );
    let cps: Value =
        serde_json::from_str(&get(&p, "/open-data/v1/checkpoints").await.body).unwrap();
    let note =
        credfed_protocol::checkpoint::SignedCheckpoint::parse(cps["310000"].as_str().unwrap())
            .unwrap();
    let size = note.checkpoint.size;
    let region = c.nodes[0].region;
    let mut whole = RegionFeedVerifier::new(&manifest, region).unwrap();
    let all = follow(&p, &mut whole, size, 1000).await;
    assert_eq!(
        whole.check_checkpoint(&note, &manifest).unwrap(),
        CheckpointMatch::Matches
    );
    assert!(
        whole.withheld >= 3,
        "the three person-naming entries are withheld"
    );
    assert_eq!(whole.published + whole.withheld, size);
    let mut first = RegionFeedVerifier::new(&manifest, region).unwrap();
    let mut resumed_bodies = follow(&p, &mut first, size / 2, 3).await;
    let saved = serde_json::to_string(&first).unwrap();
    let mut resumed: RegionFeedVerifier = serde_json::from_str(&saved).unwrap();
    assert_eq!(resumed.cursor(), format!("{region}:{}", size / 2));
    resumed_bodies.extend(follow(&p, &mut resumed, size, 4).await);
    assert_eq!(resumed_bodies, all);
    assert_eq!(resumed.frontier, whole.frontier);
    assert_eq!(
        resumed.check_checkpoint(&note, &manifest).unwrap(),
        CheckpointMatch::Matches
    );
    // The published records are the node's log minus the withheld ones, byte for byte.
    let page = get(
        &p,
        &format!("/open-data/v1/feed/{region}?after=0&limit=1000"),
    )
    .await;
    leaks(&page.body, "the feed");
    let log = c.nodes[1]
        .client
        .get(&format!("/v1/log/{region}?from=1&limit={size}"))
        .await
        .unwrap();
    assert_eq!(log.status, 200, "{}", log.body);
    let lines: Vec<FeedLine> = page
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .take(size as usize)
        .collect();
    let envelopes: Value = serde_json::from_str(&log.body).unwrap();
    let held: Vec<String> = envelopes["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held.len(), lines.len());
    for (line, hex) in lines.iter().zip(&held) {
        let bytes = hex::decode(hex).unwrap();
        assert_eq!(line.leaf_hash, credfed_protocol::merkle::leaf_hash(&bytes));
    }
    // A feed line changed in transit fails the mirror, naming the position.
    let mut tampered = lines.clone();
    let victim = tampered.iter_mut().find(|l| l.envelope.is_some()).unwrap();
    victim.leaf_hash = Hash256([7; 32]);
    let mut v = RegionFeedVerifier::new(&manifest, region).unwrap();
    let failed = tampered.iter().find_map(|l| v.apply(l).err());
    assert!(
        failed
            .as_ref()
            .is_some_and(|e| e.to_string().contains("leaf_hash")),
        "{failed:?}"
    );
    // A withheld line dropped from the feed: the mirror refuses the gap.
    let mut v = RegionFeedVerifier::new(&manifest, region).unwrap();
    let gap = lines
        .iter()
        .filter(|l| {
            l.withheld.is_none()
                || l.seq != lines.iter().find(|x| x.withheld.is_some()).unwrap().seq
        })
        .find_map(|l| v.apply(l).err());
    assert!(
        gap.as_ref()
            .is_some_and(|e| e.to_string().contains("out of order")),
        "{gap:?}"
    );
    let _ = c;
}

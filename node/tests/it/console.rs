//! The web console through the node's own router, in process: login by a signed
//! challenge, every page's status, escaping of hostile record text, CSRF refusals,
//! scoping, session expiry, and a record signed as the browser signs it.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode, header};
use credfed_protocol::crypto::Keypair;
use credfed_protocol::ids::DepartmentId;
use credfed_protocol::record::*;
use serde_json::Value;
use tower::ServiceExt;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

/// Largest page the console may serve.
const MAX_PAGE_BYTES: usize = 100 * 1024;

/// A browser: keeps cookies, sends forms, reads answers.
struct Browser {
    router: axum::Router,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Browser {
    fn new(router: axum::Router) -> Browser {
        Browser {
            router,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, mut req: Request<HttpBody>) -> Answer {
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !jar.is_empty() {
            req.headers_mut()
                .insert(header::COOKIE, jar.join("; ").parse().unwrap());
        }
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        for c in headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            assert!(
                c.contains("; Secure") && c.contains("; HttpOnly") && c.contains("SameSite=Strict"),
                "cookie without Secure/HttpOnly/SameSite: {c}"
            );
            let (kv, _) = c.split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
        let body = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap();
        let bytes = body.to_vec();
        let body = String::from_utf8_lossy(&body).into_owned();
        if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
        {
            assert!(body.len() <= MAX_PAGE_BYTES, "page of {} bytes", body.len());
            let csp = headers
                .get(header::CONTENT_SECURITY_POLICY)
                .expect("every page has a CSP")
                .to_str()
                .unwrap();
            assert!(csp.contains("script-src 'self'"), "{csp}");
        }
        Answer {
            status,
            headers,
            body,
            bytes,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(Request::get(path).body(HttpBody::empty()).unwrap())
            .await
    }

    async fn post_form(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: Option<&str>,
    ) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        self.send(req.body(HttpBody::from(body)).unwrap()).await
    }

    async fn post_json(&mut self, path: &str, v: &Value, csrf: Option<&str>) -> Answer {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        self.send(req.body(HttpBody::from(v.to_string())).unwrap())
            .await
    }

    /// Logs in as `department` signing with `key`, as the console's script does.
    async fn log_in(&mut self, department: &str, key: &Keypair) -> Answer {
        let page = self.get("/console/login").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let c = self
            .post_form(
                "/console/login/challenge",
                &[("department", department)],
                None,
            )
            .await;
        if c.status != StatusCode::OK {
            return c;
        }
        let c = c.json();
        let message = hex::decode(c["message"].as_str().unwrap()).unwrap();
        let signature = browser_sign(key, &message);
        self.post_form(
            "/console/login",
            &[
                ("department", department),
                ("challenge", c["challenge"].as_str().unwrap()),
                ("signature", &signature),
            ],
            None,
        )
        .await
    }

    /// Fills a form as the console's script does: prepares the body, signs the message
    /// with `signer`'s key and submits it. Returns the message signed and the answer.
    async fn sign_form(
        &mut self,
        fields: &[(&str, &str)],
        csrf: &str,
        signer: &str,
    ) -> (Vec<u8>, Answer) {
        let prepared = self
            .post_form("/console/sign/prepare", fields, Some(csrf))
            .await;
        assert_eq!(prepared.status, StatusCode::OK, "{}", prepared.body);
        let p = prepared.json();
        let message = hex::decode(p["message"].as_str().unwrap()).unwrap();
        let signature = browser_sign(&dept_key(signer), &message);
        let submitted = self
            .post_json(
                "/console/sign/submit",
                &serde_json::json!({"body": p["body"], "signature": signature}),
                Some(csrf),
            )
            .await;
        (message, submitted)
    }

    /// The CSRF token the pages carry.
    async fn csrf(&mut self) -> String {
        let home = self.get("/console/").await;
        let at = home
            .body
            .find("name=\"csrf\" content=\"")
            .expect("csrf meta");
        home.body[at + 21..].split('"').next().unwrap().to_owned()
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// WebCrypto's Ed25519 sign: plain Ed25519 over the message bytes.
fn browser_sign(key: &Keypair, message: &[u8]) -> String {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(&key.secret_bytes());
    hex::encode(sk.sign(message).to_bytes())
}

fn dept_key(d: &str) -> Keypair {
    key(&format!("dept-{d}"))
}

/// Shanghai (a process) lists a company with hostile text in its name and document
/// number and asks every region to act; Guangdong runs in this process.
async fn federation_with_an_action(
    console_session_seconds: Option<u64>,
) -> (Cluster, credfed_node::daemon::RunningNode, String, String) {
    let mut c = Cluster::new(&[SH, GD]);
    if let Some(s) = console_session_seconds {
        let mut cfg = c.config(1);
        cfg.console_session_seconds = s;
        c.save_config(1, &cfg);
    }
    c.start(0);
    let (gd, _faults) = c.start_faulty(1).await;
    c.wait_writable(0).await;
    c.wait_writable(1).await;
    c.register_departments(0).await;
    c.register_departments(1).await;
    let mut entry = wage_arrears_entry("沪<script>alert(1)</script>\"'\u{202E}〔2026〕9号");
    if let Subject::Organisation { name, .. } = &mut entry.subject {
        *name = "<img src=x onerror=alert(2)>某某公司".into();
    }
    let (eid, aid) = c
        .list_and_ask_all(0, entry, "沪联惩〔2026〕<b>22</b>号")
        .await;
    // Guangdong holds both records before the pages are read.
    let held = wait_until(Duration::from_secs(30), || async {
        c.head(1, SH).await >= 6
    })
    .await;
    assert!(held, "Guangdong never received Shanghai's records");
    (c, gd, eid.to_string(), aid.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_checks_and_answers_an_action_in_the_console() {
    let (c, gd, eid, aid) = federation_with_an_action(None).await;
    let mut b = Browser::new(gd.router.clone());
    // A path the node does not serve says so (not "not replicated yet"), and where the
    // API and the console are.
    let unknown = b.get("/v2/nothing").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let message = unknown.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("no route /v2/nothing") && message.contains("/console/"),
        "{message}"
    );
    assert!(!message.contains("replicated"), "{message}");
    // Shanghai's node writes its log to a file: plain text, no colour codes.
    let log = c.log(0);
    assert!(
        !log.is_empty() && !log.contains('\u{1b}'),
        "colour codes in node.log"
    );

    // Without a session every page leads to the login page; `/` leads to the console.
    assert_eq!(b.get("/").await.location(), "/console/");
    for p in [
        "/console/",
        "/console/check",
        "/console/inbox",
        "/console/federation",
    ] {
        let a = b.get(p).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{p}");
        assert_eq!(a.location(), "/console/login", "{p}");
    }
    let login = b.log_in("440000:impl", &dept_key("440000:impl")).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(b.cookies.contains_key("credfed_session"));
    let home = b.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("440000:impl"), "{}", home.body);

    // The check shows the listing, the hostile name and number escaped, never raw.
    let check = b
        .get("/console/check?uscc=91350100M000100Y43&domain=procurement")
        .await;
    assert_eq!(check.status, StatusCode::OK);
    assert!(check.body.contains("P-PROCUREMENT"), "{}", check.body);
    assert!(check.body.contains(&eid[..12]));
    assert!(
        !check.body.contains("<script>alert"),
        "raw script in the page"
    );
    let at = check.body.find("alert(1)").unwrap_or(0).saturating_sub(60);
    assert!(
        check
            .body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;&#34;&#39;[U+202E]"),
        "{}",
        &check.body[at..(at + 200).min(check.body.len())]
    );
    // An unlisted company is clear; a malformed code names the field and the rule.
    let clear = b
        .get("/console/check?uscc=91110000100000000R&domain=procurement")
        .await;
    assert!(clear.body.contains("clear"), "{}", clear.body);
    let bad = b
        .get("/console/check?uscc=91350100M000100Y4&domain=procurement")
        .await;
    assert!(bad.body.contains("uscc"), "{}", bad.body);
    assert!(bad.body.contains("class=\"error\""), "{}", bad.body);
    // A person's check goes by POST (the number never in a URL); the page shows the
    // mask, never the number outside the form that downloads the evidence.
    let csrf = b.csrf().await;
    let person = b
        .post_form(
            "/console/check",
            &[
                ("csrf", &csrf),
                ("person", "11010519491231002X"),
                ("domain", "travel"),
            ],
            None,
        )
        .await;
    assert_eq!(person.status, StatusCode::OK);
    assert!(person.body.contains("clear"), "{}", person.body);
    assert!(
        person
            .body
            .contains(&credfed_protocol::ids::person::mask("11010519491231002X")),
        "{}",
        person.body
    );
    assert_eq!(
        person.body.matches("11010519491231002X").count(),
        1,
        "{}",
        person.body
    );
    // A name search finds the entry.
    let found = b
        .get(&format!("/console/check?name={}", enc("某某公司")))
        .await;
    assert!(
        found.body.contains(&format!("/console/entries/{eid}")),
        "{}",
        found.body
    );

    // The evidence download is a proven answer that verifies offline.
    let ev = b
        .get("/console/evidence?uscc=91350100M000100Y43&domain=procurement")
        .await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.body);
    assert!(
        ev.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let proven = credfed_protocol::federation::ProvenAnswer::from_file(&ev.bytes).unwrap();
    let report = credfed_protocol::federation::verify_proven_answer(
        &proven,
        gd.core.manifest(),
        gd.core.catalogue(),
        gd.core.now_seconds(),
        300,
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // The verification page's check agrees; an edited file never verifies.
    let csrf = b.csrf().await;
    let verify = |bytes: Vec<u8>, csrf: String| {
        Request::post("/console/verify")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("x-csrf-token", csrf)
            .body(HttpBody::from(bytes))
            .unwrap()
    };
    let ok = b.send(verify(ev.bytes.clone(), csrf.clone())).await;
    assert_eq!(ok.json()["status"], "verified", "{}", ok.body);
    for at in [ev.bytes.len() / 3, ev.bytes.len() / 2, ev.bytes.len() - 10] {
        let mut edited = ev.bytes.clone();
        edited[at] ^= 0x01;
        let r = b.send(verify(edited, csrf.clone())).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.json()["status"] == "not_verified",
            "a file edited at byte {at} was taken: {}",
            r.body
        );
    }
    let no_token = b.send(verify(ev.bytes.clone(), "nope".into())).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);

    // The publication form asks for the category first, then offers only the measures
    // the catalogue lets serve it (punishments for a black-list entry).
    let step = b.get("/console/forms/publish").await;
    assert!(step.body.contains("name=\"category\""), "{}", step.body);
    let form = b
        .get("/console/forms/publish?category=black:malicious_wage_arrears")
        .await;
    assert!(
        form.body.contains("value=\"P-PROCUREMENT\""),
        "{}",
        form.body
    );
    assert!(
        !form.body.contains("value=\"I-"),
        "an incentive offered for a black-list entry"
    );
    assert_eq!(
        b.get("/console/forms/nonsense").await.status,
        StatusCode::NOT_FOUND
    );

    // Entry page: the timeline names the region and department; the name is escaped.
    let entry = b.get(&format!("/console/entries/{eid}")).await;
    assert_eq!(entry.status, StatusCode::OK);
    assert!(entry.body.contains("310000:pub"));
    assert!(!entry.body.contains("<img src=x"));
    assert!(entry.body.contains("&#60;img src=x onerror=alert(2)&#62;"));
    assert!(
        !entry.body.contains('\u{202E}'),
        "a bidi override reached the page raw"
    );

    // The inbox holds the acknowledgement, and the action page its form.
    let inbox = b.get("/console/inbox").await;
    assert!(
        inbox.body.contains(&format!("/console/actions/{aid}")),
        "{}",
        inbox.body
    );
    assert!(inbox.body.contains("acknowledge"));
    let action = b.get(&format!("/console/actions/{aid}")).await;
    assert!(
        action.body.contains("data-sign=\"acknowledge\""),
        "{}",
        action.body
    );
    assert!(!action.body.contains("<b>22</b>"));

    // Declining without a reason is refused beside the field; with one it is signed as
    // the browser signs it and lands through the API.
    let csrf = b.csrf().await;
    let no_reason = b
        .post_form(
            "/console/sign/prepare",
            &[
                ("form", "acknowledge"),
                ("action", &aid),
                ("decision", "declined"),
            ],
            Some(&csrf),
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_reason.json()["field"], "reason");
    let prepared = b
        .post_form(
            "/console/sign/prepare",
            &[
                ("form", "acknowledge"),
                ("action", &aid),
                ("decision", "declined"),
                ("reason", "本地区无相应采购项目 <script>"),
            ],
            Some(&csrf),
        )
        .await;
    assert_eq!(prepared.status, StatusCode::OK, "{}", prepared.body);
    let p = prepared.json();
    let message = hex::decode(p["message"].as_str().unwrap()).unwrap();
    assert!(message.starts_with(b"credfed\0\x08body-sig"));
    let signature = browser_sign(&dept_key("440000:impl"), &message);
    let submitted = b
        .post_json(
            "/console/sign/submit",
            &serde_json::json!({"body": p["body"], "signature": signature}),
            Some(&csrf),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{}", submitted.body);
    let answered = b.get(&format!("/console/actions/{aid}")).await;
    assert!(
        answered
            .body
            .contains("本地区无相应采购项目 &#60;script&#62;"),
        "{}",
        answered.body
    );
    assert!(answered.body.contains("declined"));

    // A signature by another key is the API's refusal, shown as such.
    let forged = b
        .post_json(
            "/console/sign/submit",
            &serde_json::json!({"body": p["body"], "signature": browser_sign(&dept_key("440000:pub"), &message)}),
            Some(&csrf),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);

    // A publisher lists a person with the person form: the number becomes the person's
    // reference through the members' key; the listed person's check then applies it.
    let mut publisher = Browser::new(gd.router.clone());
    let r = publisher
        .log_in("440000:pub", &dept_key("440000:pub"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let form = publisher
        .get("/console/forms/publish-person?category=black:defying_judgment_or_decision")
        .await;
    assert!(
        form.body.contains("value=\"P-TRAVEL-RAIL\""),
        "{}",
        form.body
    );
    let pcsrf = publisher.csrf().await;
    let today = gd.core.now().date_cst();
    let (decided, from, until) = (
        today.add_days(-3).to_string(),
        today.add_days(-2).to_string(),
        today.add_days(300).to_string(),
    );
    let fields = [
        ("form", "publish-person"),
        ("category", "black:defying_judgment_or_decision"),
        ("person.number", "440524188001010014"),
        ("person.name", "李四"),
        ("basis.document_no", "（2026）粤01执1号"),
        ("basis.authority", "广州市中级人民法院"),
        ("basis.decided_on", &decided),
        (
            "basis.legal_basis",
            "《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条",
        ),
        ("effective_from", &from),
        ("expires_on", &until),
        ("findings", "able_but_refuses"),
        ("requested_measures", "P-TRAVEL-RAIL"),
    ];
    let (message, r) = publisher.sign_form(&fields, &pcsrf, "440000:pub").await;
    assert!(
        !String::from_utf8_lossy(&message).contains("440524188001010014"),
        "the clear number went into the record"
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let listed = publisher
        .post_form(
            "/console/check",
            &[
                ("csrf", &pcsrf),
                ("person", "440524188001010014"),
                ("domain", "travel"),
            ],
            None,
        )
        .await;
    assert!(listed.body.contains("P-TRAVEL-RAIL"), "{}", listed.body);
    // The publisher corrects the entry: the amendment form shows it as held, and only
    // the field filled in changes.
    let found = publisher
        .get(&format!("/console/check?name={}", enc("李四")))
        .await;
    let at = found
        .body
        .find("/console/entries/")
        .expect("the person's entry is listed");
    let pid = found.body[at + 17..at + 17 + 64].to_owned();
    let form = publisher
        .get(&format!("/console/forms/amend?entry={pid}"))
        .await;
    assert!(form.body.contains("（2026）粤01执1号"), "{}", form.body);
    assert!(
        form.body.contains("value=\"P-TRAVEL-RAIL\" checked"),
        "{}",
        form.body
    );
    let later = today.add_days(200).to_string();
    let (_, r) = publisher
        .sign_form(
            &[
                ("form", "amend"),
                ("entry", &pid),
                ("amended.expires_on", &later),
                ("reason", "更正截止日期"),
            ],
            &pcsrf,
            "440000:pub",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let amended = publisher.get(&format!("/console/entries/{pid}")).await;
    assert!(amended.body.contains(&later), "{}", amended.body);
    assert!(amended.body.contains("（2026）粤01执1号"));
    assert!(amended.body.contains("李四"));

    // A court-listed company with its legal representative: the representative's
    // number becomes a reference too, and the air-travel bar falls on them.
    let company = [
        ("form", "publish"),
        ("category", "black:defying_judgment_or_decision"),
        ("subject.organisation.uscc", "91350100M000100Y43"),
        ("subject.organisation.name", "某某建筑劳务有限公司"),
        ("basis.document_no", "（2026）粤01执2号"),
        ("basis.authority", "广州市中级人民法院"),
        ("basis.decided_on", &decided),
        (
            "basis.legal_basis",
            "《最高人民法院关于限制被执行人高消费及有关消费的若干规定》第一条",
        ),
        ("effective_from", &from),
        ("expires_on", &until),
        ("findings", "able_but_refuses"),
        (
            "related_persons",
            "legal_representative:11010519491231002X:张三",
        ),
        ("requested_measures", "P-TRAVEL-AIR"),
    ];
    let form = publisher
        .get("/console/forms/publish?category=black:defying_judgment_or_decision")
        .await;
    assert!(
        form.body.contains("value=\"P-TRAVEL-AIR\""),
        "{}",
        form.body
    );
    let (message, r) = publisher.sign_form(&company, &pcsrf, "440000:pub").await;
    assert!(!String::from_utf8_lossy(&message).contains("11010519491231002X"));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let rep = publisher
        .post_form(
            "/console/check",
            &[
                ("csrf", &pcsrf),
                ("person", "11010519491231002X"),
                ("domain", "travel"),
            ],
            None,
        )
        .await;
    assert!(rep.body.contains("P-TRAVEL-AIR"), "{}", rep.body);
    // The company's legal representative changes: an amendment that names only the new
    // one moves the bar from 张三 to 李四 and leaves the rest of the entry as held.
    let found = publisher
        .get(&format!(
            "/console/check?name={}",
            enc("某某建筑劳务有限公司")
        ))
        .await;
    let at = found
        .body
        .find("/console/entries/")
        .expect("the company is listed");
    let cid = found.body[at + 17..at + 17 + 64].to_owned();
    let (_, r) = publisher
        .sign_form(
            &[
                ("form", "amend"),
                ("entry", &cid),
                (
                    "amended.related_persons",
                    "legal_representative:440524188001010014:李四",
                ),
                ("reason", "法定代表人变更"),
            ],
            &pcsrf,
            "440000:pub",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let travel = |number: &'static str| {
        let csrf = pcsrf.clone();
        let mut b = Browser {
            router: gd.router.clone(),
            cookies: publisher.cookies.clone(),
        };
        async move {
            b.post_form(
                "/console/check",
                &[("csrf", &csrf), ("person", number), ("domain", "travel")],
                None,
            )
            .await
            .body
        }
    };
    assert!(!travel("11010519491231002X").await.contains("P-TRAVEL-AIR"));
    assert!(travel("440524188001010014").await.contains("P-TRAVEL-AIR"));
    let amended = publisher.get(&format!("/console/entries/{cid}")).await;
    assert!(
        amended.body.contains("（2026）粤01执2号"),
        "{}",
        amended.body
    );
    let mut bad = company.to_vec();
    bad[11] = ("related_persons", "chairman:11010519491231002X:张三");
    let r = publisher
        .post_form("/console/sign/prepare", &bad, Some(&pcsrf))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], "related_persons");

    // An evaluation result published with its form shows in the company's check.
    let (evaluated, valid) = (
        today.add_days(-1).to_string(),
        today.add_days(365).to_string(),
    );
    let (_, r) = publisher
        .sign_form(
            &[
                ("form", "evaluate"),
                ("subject.organisation.uscc", "91440300MA5DC7KX3L"),
                ("subject.organisation.name", "深圳某某科技有限公司"),
                ("scheme", "tax-credit"),
                ("grade", "a"),
                ("evaluated_on", &evaluated),
                ("valid_until", &valid),
            ],
            &pcsrf,
            "440000:pub",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let checked = publisher
        .get("/console/check?uscc=91440300MA5DC7KX3L&domain=procurement")
        .await;
    assert!(checked.body.contains("tax-credit A —"), "{}", checked.body);
    let at = checked
        .body
        .find("/console/evaluations/")
        .expect("the evaluation links to its page");
    let evid = checked.body[at + 21..at + 21 + 64].to_owned();
    let page = publisher.get(&format!("/console/evaluations/{evid}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("440000:pub"), "{}", page.body);
    assert!(
        page.body
            .contains("/console/forms/evaluation-revoke?evaluation=")
    );
    // An objection to the evaluation, recorded by the objection desk from the
    // evaluation's page, suspends it; the page then offers its resolution.
    let mut desk = Browser::new(gd.router.clone());
    let r = desk.log_in("440000:obj", &dept_key("440000:obj")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let form = desk
        .get(&format!(
            "/console/forms/object-evaluation?evaluation={evid}"
        ))
        .await;
    assert!(form.body.contains(&evid), "{}", form.body);
    let dcsrf = desk.csrf().await;
    let filed_on = today.to_string();
    let (_, r) = desk
        .sign_form(
            &[
                ("form", "object-evaluation"),
                ("target.evaluation", &evid),
                ("case_no", "粤信异〔2026〕3号"),
                ("grounds", "评价所依据的纳税记录有误"),
                ("filed_on", &filed_on),
            ],
            &dcsrf,
            "440000:obj",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let page = desk.get(&format!("/console/evaluations/{evid}")).await;
    assert!(
        page.body.contains("/console/forms/resolve?objection="),
        "{}",
        page.body
    );

    // A number that is not one is named beside its field.
    let mut bad = fields.to_vec();
    bad[2] = ("person.number", "440524188001010015");
    let r = publisher
        .post_form("/console/sign/prepare", &bad, Some(&pcsrf))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "person.number");
    assert!(r.json()["message"].as_str().unwrap().contains("GB 11643"));

    // A department revoked while logged in loses its session at the next request.
    let r = c
        .submit_signed(
            1,
            "440000:operator",
            &c.nodes[1].operator_key,
            &Body::DepartmentRevoked {
                department: DepartmentId::parse("440000:impl", "d").unwrap(),
                reason: "密钥泄露".into(),
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(b.get("/console/inbox").await.location(), "/console/login");
    let again = b.log_in("440000:impl", &dept_key("440000:impl")).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    gd.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_forged_logins_foreign_forms_and_ended_sessions() {
    let (c, gd, _eid, aid) = federation_with_an_action(Some(2)).await;
    let router = gd.router.clone();

    // Another department's key, another region's department, an unknown one.
    let mut b = Browser::new(router.clone());
    let wrong = b.log_in("440000:impl", &dept_key("440000:pub")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["field"], "key");
    assert!(!b.cookies.contains_key("credfed_session"));
    let foreign = b.log_in("310000:impl", &dept_key("310000:impl")).await;
    assert_eq!(foreign.status, StatusCode::UNAUTHORIZED, "{}", foreign.body);
    assert!(
        foreign.json()["message"]
            .as_str()
            .unwrap()
            .contains("own node")
    );
    let ghost = b.log_in("440000:ghost", &dept_key("440000:ghost")).await;
    assert_eq!(ghost.status, StatusCode::UNAUTHORIZED);

    // A challenge answered twice, or from another browser, does not log in.
    let mut b = Browser::new(router.clone());
    b.get("/console/login").await;
    let ch = b
        .post_form(
            "/console/login/challenge",
            &[("department", "440000:impl")],
            None,
        )
        .await
        .json();
    let sig = browser_sign(
        &dept_key("440000:impl"),
        &hex::decode(ch["message"].as_str().unwrap()).unwrap(),
    );
    let fields = [
        ("department", "440000:impl"),
        ("challenge", ch["challenge"].as_str().unwrap()),
        ("signature", sig.as_str()),
    ];
    let mut other = Browser::new(router.clone());
    other.get("/console/login").await;
    let stolen = other.post_form("/console/login", &fields, None).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED, "{}", stolen.body);
    // The challenge was spent by the attempt: even its own browser cannot use it now.
    let late = b.post_form("/console/login", &fields, None).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);

    // A department that is not an operator is refused the operator page; the node's
    // operator (its node key) sees each region.
    let mut dept = Browser::new(router.clone());
    assert_eq!(
        dept.log_in("440000:impl", &dept_key("440000:impl"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        dept.get("/console/federation").await.status,
        StatusCode::FORBIDDEN
    );
    // The node key never logs in, not even for the operator.
    let mut node = Browser::new(router.clone());
    let r = node.log_in("440000:node", &c.nodes[1].node_key).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("440000:operator"), "{}", r.body);
    let mut op = Browser::new(router.clone());
    let r = op.log_in("440000:operator", &c.nodes[1].operator_key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fed = op.get("/console/federation").await;
    assert_eq!(fed.status, StatusCode::OK);
    assert!(
        fed.body.contains("310000") && fed.body.contains("440000:impl"),
        "{}",
        fed.body
    );
    // A department's client certificate, once issued, is listed with its validity.
    let _impl_client = department_client(&c.nodes[1], "440000:impl");
    let fed = op.get("/console/federation").await;
    assert!(fed.body.contains("(valid until "), "{}", fed.body);
    // Each region's witnessed checkpoint has an age once the members cosign it.
    let witnessed = wait_until(Duration::from_secs(30), || {
        let mut op = Browser {
            router: router.clone(),
            cookies: op.cookies.clone(),
        };
        async move {
            let page = op.get("/console/federation").await.body;
            page.matches(" s</td>").count() >= 4
        }
    })
    .await;
    assert!(
        witnessed,
        "no witnessed checkpoint age on the operator's page"
    );

    // The audit log names the console's callers; a department may not read it.
    let audit = op.get("/console/audit?caller=440000:impl").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.body.contains("440000:impl (console)"),
        "{}",
        audit.body
    );
    assert!(
        !audit.body.contains("<td>440000:operator (console)</td>"),
        "the filter let another caller through"
    );
    assert_eq!(
        dept.get("/console/audit").await.status,
        StatusCode::FORBIDDEN
    );
    // Reports: Shanghai's action counts as asked of Guangdong, drawn by the node.
    let reports = op.get("/console/reports").await;
    assert_eq!(reports.status, StatusCode::OK);
    assert!(reports.body.contains("<svg"), "{}", reports.body);
    assert!(
        reports.body.contains("<title>440000: 1 / "),
        "{}",
        reports.body
    );
    // A department sees only its role's tasks: the publisher has no acknowledgement.
    let mut publisher = Browser::new(router.clone());
    let r = publisher
        .log_in("440000:pub", &dept_key("440000:pub"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let inbox = publisher.get("/console/inbox").await;
    assert!(
        !inbox.body.contains(&format!("/console/actions/{aid}")),
        "{}",
        inbox.body
    );
    // English on request, kept by a cookie; the way back is a console path only.
    let en = publisher
        .get("/console/lang?to=en&back=/console/inbox")
        .await;
    assert_eq!(en.location(), "/console/inbox");
    let page = publisher.get("/console/inbox").await;
    assert!(page.body.contains("<html lang=\"en\">"), "{}", page.body);
    let away = publisher
        .get("/console/lang?to=en&back=//evil.example/")
        .await;
    assert_eq!(away.location(), "/console/");

    // Forms and scripts without the session's CSRF token are refused.
    let csrf = dept.csrf().await;
    let no_token = dept
        .post_form(
            "/console/sign/prepare",
            &[
                ("form", "acknowledge"),
                ("action", &aid),
                ("decision", "accepted"),
            ],
            None,
        )
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let wrong_token = dept
        .post_form(
            "/console/sign/prepare",
            &[
                ("form", "acknowledge"),
                ("action", &aid),
                ("decision", "accepted"),
            ],
            Some("0123"),
        )
        .await;
    assert_eq!(wrong_token.status, StatusCode::FORBIDDEN);
    let person = dept
        .post_form(
            "/console/check",
            &[("person", "11010519491231002X"), ("domain", "travel")],
            None,
        )
        .await;
    assert_eq!(person.status, StatusCode::FORBIDDEN);
    let logout = dept.post_form("/console/logout", &[], None).await;
    assert_eq!(
        logout.status,
        StatusCode::FORBIDDEN,
        "logout without the token"
    );
    let bare = dept
        .send(
            Request::post("/console/logout")
                .body(HttpBody::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN, "logout without a form");
    let logout = dept
        .post_form("/console/logout", &[("csrf", &csrf)], None)
        .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(
        dept.get("/console/inbox").await.location(),
        "/console/login"
    );

    // Sessions end by themselves (this node's are two seconds long).
    let mut short = Browser::new(router.clone());
    assert_eq!(
        short
            .log_in("440000:obj", &dept_key("440000:obj"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(short.get("/console/inbox").await.status, StatusCode::OK);
    let ended = wait_until(Duration::from_secs(15), || {
        let mut s = Browser {
            router: router.clone(),
            cookies: short.cookies.clone(),
        };
        async move { s.get("/console/inbox").await.location() == "/console/login" }
    })
    .await;
    assert!(ended, "a session outlived console_session_seconds");
    gd.stop().await.unwrap();
}

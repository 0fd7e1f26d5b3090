//! The web console end to end in Debian's headless Chromium (installed by
//! scripts/setup), driven over WebDriver against real node processes: a department logs
//! in by signing the challenge with WebCrypto, checks a listed and an unlisted company,
//! publishes an entry that then shows on another node's console, declines an action
//! from its inbox with a reason; an operator sees a cut-off region flagged. Every page
//! loads only from the node's origin. The public side too: search, a subject's page,
//! the evidence downloaded with the page's button and verified on the public
//! verification page. Screenshots land in
//! `target/console-screenshots/` (docs/console.md shows the best of them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

/// Polling the browser against a deadline: `tick` waits for the next poll (every
/// 100 ms) and fails the test, naming what never happened, once the deadline passes.
struct Deadline {
    end: Instant,
    every: tokio::time::Interval,
}

impl Deadline {
    fn in_seconds(seconds: u64) -> Deadline {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Deadline {
            end: Instant::now() + Duration::from_secs(seconds),
            every,
        }
    }

    async fn tick(&mut self, what: impl std::fmt::Display) {
        assert!(Instant::now() < self.end, "{what}");
        self.every.tick().await;
    }
}

/// chromedriver, stopped with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and a headless Chromium with its profile in `profile` and its
/// downloads saved, without asking, to `profile/downloads`.
async fn start_browser(profile: &Path) -> (Driver, Client) {
    assert!(
        Path::new("/usr/bin/chromedriver").exists() && Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium and chromium-driver are needed: run scripts/setup as root"
    );
    let port = free_local_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": profile.join("downloads").display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            }
        }
    }))
    .unwrap();
    // chromedriver takes a moment to listen: retry the session until a deadline.
    let mut deadline = Deadline::in_seconds(60);
    loop {
        let mut b = ClientBuilder::rustls().unwrap();
        b.capabilities(caps.clone());
        match b.connect(&url).await {
            Ok(c) => return (driver, c),
            Err(e) => {
                deadline
                    .tick(format!("no WebDriver session with chromium: {e}"))
                    .await
            }
        }
    }
}

/// Waits until the page's source satisfies `cond` (reloading with `reload`).
async fn wait_for_page(
    b: &Client,
    what: &str,
    reload: bool,
    cond: impl Fn(&str) -> bool,
) -> String {
    let mut deadline = Deadline::in_seconds(30);
    loop {
        // A page still arriving serialises as a closed document cut short (a form
        // without its later fields and buttons), which can already satisfy `cond`:
        // read it only once the browser has the whole document, in the same script
        // so that a navigation cannot come between the two.
        let page = b
            .execute(
                "return document.readyState === 'complete' \
                 ? document.documentElement.outerHTML : null;",
                vec![],
            )
            .await
            .unwrap();
        let failure = match page.as_str() {
            Some(src) if cond(src) => return src.to_owned(),
            Some(src) => format!("the page never showed {what}:\n{src}"),
            None => format!("the page never finished loading while waiting for {what}"),
        };
        deadline.tick(failure).await;
        if reload {
            b.refresh().await.unwrap();
        }
    }
}

/// The page's source once the browser has all of it (a navigation may return before a
/// long page has been parsed, and a page cut short can pass a test's assertion or fail
/// it for nothing).
async fn whole_page(b: &Client) -> String {
    wait_for_page(b, "the whole page", false, |_| true).await
}

/// Every resource the page loaded came from `origin`.
async fn only_from(b: &Client, origin: &str) {
    let urls = b
        .execute(
            "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
            vec![],
        )
        .await
        .unwrap();
    for u in urls.as_array().unwrap() {
        let u = u.as_str().unwrap();
        assert!(u.starts_with(origin), "request to {u}, outside {origin}");
    }
}

async fn shot(b: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.png")),
        b.screenshot().await.unwrap(),
    )
    .unwrap();
}

async fn log_in(b: &Client, origin: &str, department: &str, key_file: &Path) {
    b.goto(&format!("{origin}/console/login")).await.unwrap();
    b.find(Locator::Css("input[name=department]"))
        .await
        .unwrap()
        .send_keys(department)
        .await
        .unwrap();
    b.find(Locator::Css("input[name=key]"))
        .await
        .unwrap()
        .send_keys(key_file.to_str().unwrap())
        .await
        .unwrap();
    b.find(Locator::Css("#login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut deadline = Deadline::in_seconds(30);
    while b.current_url().await.unwrap().path() != "/console/" {
        let err = match b
            .find(Locator::Css("#login .form-error, #login .field-error"))
            .await
        {
            Ok(e) => e.text().await.ok(),
            Err(_) => None,
        };
        deadline
            .tick(format!("login as {department} did not finish: {err:?}"))
            .await;
    }
}

async fn log_out(b: &Client) {
    b.find(Locator::Css("#logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut deadline = Deadline::in_seconds(15);
    while b.current_url().await.unwrap().path() != "/console/login" {
        deadline
            .tick("logout did not return to the login page")
            .await;
    }
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Sets a field's value as a person's typing would end up (date inputs take
/// `YYYY-MM-DD` whatever the browser's locale shows).
async fn set_value(b: &Client, css: &str, value: &str) {
    b.execute(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('change'));",
        vec![json!(css), json!(value)],
    )
    .await
    .unwrap();
}

/// Writes a department's signing key file (what `credfed key gen` writes).
fn key_file(dir: &Path, department: &str) -> PathBuf {
    let p = dir.join(format!("{}.key", department.replace(':', "-")));
    std::fs::write(
        &p,
        hex::encode(key(&format!("dept-{department}")).secret_bytes()),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_works_through_the_console_in_chromium() {
    let _exclusive = EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[SH, GD]);
    for i in 0..2 {
        let mut cfg = c.config(i);
        cfg.drill_faults = true;
        c.save_config(i, &cfg);
    }
    c.start_all().await;
    c.register_departments(0).await;
    c.register_departments(1).await;
    let today = today();
    // Shanghai lists a company and asks every region to act.
    let (_, aid) = c
        .list_and_ask_all(
            0,
            wage_arrears_entry("沪人社罚〔2026〕31号"),
            "沪联惩〔2026〕31号",
        )
        .await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            c.head(1, SH).await >= 6
        })
        .await
    );

    let tmp = tempfile::tempdir().unwrap();
    let (_driver, b) = start_browser(&tmp.path().join("profile")).await;
    let gd = format!("https://{}", c.nodes[1].api);
    let sh = format!("https://{}", c.nodes[0].api);

    // Guangdong's implementer logs in (the key signs the challenge in the browser).
    log_in(&b, &gd, "440000:impl", &key_file(tmp.path(), "440000:impl")).await;
    shot(&b, "home").await;
    only_from(&b, &gd).await;

    // The listed company: its measure and entry; an unlisted one: clear.
    b.goto(&format!(
        "{gd}/console/check?uscc=91350100M000100Y43&domain=procurement"
    ))
    .await
    .unwrap();
    let src = whole_page(&b).await;
    assert!(
        src.contains("P-PROCUREMENT") && src.contains("沪人社罚〔2026〕31号"),
        "{src}"
    );
    shot(&b, "check-listed").await;
    only_from(&b, &gd).await;
    b.goto(&format!(
        "{gd}/console/check?uscc=91110000100000000R&domain=procurement"
    ))
    .await
    .unwrap();
    assert!(whole_page(&b).await.contains("clear"));

    // On a tablet held upright the pages fit the screen's width (nothing to scroll
    // sideways but wide tables, which scroll inside themselves).
    b.set_window_size(768, 1024).await.unwrap();
    for path in [
        "/console/check?uscc=91350100M000100Y43&domain=procurement",
        "/console/inbox",
        "/console/forms/publish?category=black:food_and_drug",
    ] {
        b.goto(&format!("{gd}{path}")).await.unwrap();
        let fits = b
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{path} is wider than a tablet");
    }
    shot(&b, "tablet-form").await;
    b.set_window_size(1280, 800).await.unwrap();

    // The inbox leads to the action; declining with a reason is signed and lands.
    b.goto(&format!("{gd}/console/inbox")).await.unwrap();
    shot(&b, "inbox").await;
    b.find(Locator::Css(&format!("a[href='/console/actions/{aid}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.find(Locator::Css("input[name=decision][value=declined]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.find(Locator::Css("form[data-sign] input[name=reason]"))
        .await
        .unwrap()
        .send_keys("本地区无相应采购项目")
        .await
        .unwrap();
    b.find(Locator::Css("form[data-sign] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_page(&b, "the receipt", false, |s| s.contains("✓ 440000#")).await;
    shot(&b, "action-declined").await;
    b.refresh().await.unwrap();
    let src = whole_page(&b).await;
    assert!(
        src.contains("本地区无相应采购项目") && src.contains("declined"),
        "{src}"
    );
    log_out(&b).await;

    // Guangdong's publisher publishes an entry with the form: the category first, then
    // the measures the catalogue offers for it...
    log_in(&b, &gd, "440000:pub", &key_file(tmp.path(), "440000:pub")).await;
    b.goto(&format!("{gd}/console/forms/publish"))
        .await
        .unwrap();
    set_value(&b, "select[name=category]", "black:malicious_wage_arrears").await;
    click(&b, "main form button[type=submit]").await;
    let src = wait_for_page(&b, "the publication form", false, |s| {
        s.contains("name=\"requested_measures\"")
    })
    .await;
    assert!(src.contains("value=\"P-PROCUREMENT\""), "{src}");
    assert!(
        !src.contains("value=\"I-"),
        "an incentive offered for a black-list entry"
    );
    for (field, value) in [
        ("subject.organisation.uscc", "91440300MA5DC7KX3L"),
        ("subject.organisation.name", "深圳某某劳务有限公司"),
        ("basis.document_no", "粤人社罚〔2026〕5号"),
        ("basis.authority", "深圳市人力资源和社会保障局"),
        ("basis.decided_on", &today.add_days(-2).to_string()),
        ("basis.legal_basis", "《保障农民工工资支付条例》第四十八条"),
        ("effective_from", &today.add_days(-1).to_string()),
        ("expires_on", &today.add_days(365).to_string()),
    ] {
        set_value(&b, &format!("[name='{field}']"), value).await;
    }
    click(&b, "input[name=requested_measures][value=P-PROCUREMENT]").await;
    click(&b, "form[data-sign] button[type=submit]").await;
    wait_for_page(&b, "the receipt", false, |s| s.contains("✓ 440000#")).await;
    shot(&b, "publish").await;
    log_out(&b).await;

    // Guangdong's initiator asks every region to act on it, from the entry's page.
    log_in(&b, &gd, "440000:init", &key_file(tmp.path(), "440000:init")).await;
    b.goto(&format!(
        "{gd}/console/check?uscc=91440300MA5DC7KX3L&domain=procurement"
    ))
    .await
    .unwrap();
    click(&b, "main a[href^='/console/entries/']").await;
    click(&b, "main a[href^='/console/forms/initiate']").await;
    wait_for_page(&b, "the initiation form", false, |s| {
        s.contains("name=\"respond_by\"")
    })
    .await;
    set_value(&b, "[name=reference]", "粤联惩〔2026〕5号").await;
    set_value(&b, "[name=respond_by]", &today.add_days(10).to_string()).await;
    click(&b, "input[name=measures][value=P-PROCUREMENT]").await;
    click(&b, "form[data-sign] button[type=submit]").await;
    wait_for_page(&b, "the receipt", false, |s| s.contains("✓ 440000#")).await;
    log_out(&b).await;

    // ... and Shanghai's console shows the entry; its implementer accepts the action
    // from its inbox and reports the execution.
    log_in(&b, &sh, "310000:impl", &key_file(tmp.path(), "310000:impl")).await;
    b.goto(&format!(
        "{sh}/console/check?uscc=91440300MA5DC7KX3L&domain=procurement"
    ))
    .await
    .unwrap();
    wait_for_page(&b, "Guangdong's entry", true, |s| {
        s.contains("粤人社罚〔2026〕5号")
    })
    .await;
    only_from(&b, &sh).await;
    b.goto(&format!("{sh}/console/inbox")).await.unwrap();
    wait_for_page(&b, "Guangdong's action", true, |s| {
        s.contains("/console/actions/")
    })
    .await;
    click(&b, "main a[href^='/console/actions/']").await;
    wait_for_page(&b, "the acknowledgement form", false, |s| {
        s.contains("data-sign=\"acknowledge\"")
    })
    .await;
    click(&b, "form[data-sign] button[type=submit]").await;
    wait_for_page(&b, "the receipt", false, |s| s.contains("✓ 310000#")).await;
    click(&b, "main a[href^='/console/forms/execute']").await;
    wait_for_page(&b, "the execution form", false, |s| {
        s.contains("name=\"executed_on\"")
    })
    .await;
    set_value(&b, "[name=reference]", "沪财采〔2026〕8号").await;
    set_value(&b, "[name=executed_on]", &today.to_string()).await;
    click(&b, "form[data-sign] button[type=submit]").await;
    wait_for_page(&b, "the receipt", false, |s| s.contains("✓ 310000#")).await;
    log_out(&b).await;

    // Guangdong's publisher repairs its entry (article 二十一) from the entry's page.
    log_in(&b, &gd, "440000:pub", &key_file(tmp.path(), "440000:pub")).await;
    b.goto(&format!(
        "{gd}/console/check?uscc=91440300MA5DC7KX3L&domain=procurement"
    ))
    .await
    .unwrap();
    click(&b, "main a[href^='/console/entries/']").await;
    click(&b, "main a[href^='/console/forms/repair?']").await;
    wait_for_page(&b, "the repair form", false, |s| {
        s.contains("name=\"basis\"")
    })
    .await;
    set_value(&b, "[name=reason]", "已足额支付拖欠工资并公开承诺").await;
    click(&b, "form[data-sign] button[type=submit]").await;
    wait_for_page(&b, "the receipt", false, |s| s.contains("✓ 440000#")).await;
    b.goto(&format!(
        "{gd}/console/check?uscc=91440300MA5DC7KX3L&domain=procurement"
    ))
    .await
    .unwrap();
    let src = whole_page(&b).await;
    assert!(
        !src.contains("P-PROCUREMENT"),
        "a repaired entry still applies: {src}"
    );
    log_out(&b).await;

    // An evidence file while both regions are connected, for the verification page.
    let evidence = c.nodes[1]
        .client
        .get("/v1/check?uscc=91350100M000100Y43&domain=procurement&proofs=true&manifest=true")
        .await
        .unwrap();
    assert_eq!(evidence.status, 200, "{}", evidence.body);
    // The console's download of the same answer (this region's declines left out).
    let mut v: serde_json::Value = serde_json::from_str(&evidence.body).unwrap();
    assert!(
        v.get("declined_here").is_some(),
        "Guangdong declined; the answer says so"
    );
    v.as_object_mut().unwrap().remove("declined_here");
    let proven: credfed_protocol::federation::ProvenAnswer = serde_json::from_value(v).unwrap();
    let good = tmp.path().join("listed.evidence");
    std::fs::write(&good, proven.to_file()).unwrap();
    let mut bytes = proven.to_file();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let bad = tmp.path().join("edited.evidence");
    std::fs::write(&bad, bytes).unwrap();
    // Guangdong's operator sees Shanghai flagged once it is cut off.
    let r = c.nodes[1]
        .client
        .post("/v1/admin/partition", &json!({"blocked": ["310000"]}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let operator_key = tmp.path().join("440000-operator-signing.key");
    std::fs::write(
        &operator_key,
        hex::encode(c.nodes[1].operator_key.secret_bytes()),
    )
    .unwrap();
    log_in(&b, &gd, "440000:operator", &operator_key).await;
    b.goto(&format!("{gd}/console/federation")).await.unwrap();
    wait_for_page(&b, "310000 flagged unreachable", true, |s| {
        s.contains("unreachable")
    })
    .await;
    shot(&b, "federation").await;
    only_from(&b, &gd).await;
    b.goto(&format!("{gd}/console/reports")).await.unwrap();
    assert!(whole_page(&b).await.contains("<svg"));
    shot(&b, "reports").await;
    only_from(&b, &gd).await;

    // The evidence file checks out on the verification page; the same file with one
    // byte changed does not.
    for (file, expect) in [(&good, "VERIFIED"), (&bad, "NOT VERIFIED")] {
        b.goto(&format!("{gd}/console/verify")).await.unwrap();
        let (status, error) = verdict_for(&b, file).await;
        if expect == "VERIFIED" {
            assert_eq!(status, "VERIFIED", "{error}");
            shot(&b, "verify").await;
        } else {
            assert!(
                status == "NOT VERIFIED" || !error.is_empty(),
                "an edited file verified: {status}"
            );
        }
    }
    b.close().await.unwrap();
}

/// Waits for a finished download in `dir` (Chromium writes `*.crdownload` and hidden
/// temporary files until done) and returns its path.
async fn downloaded(dir: &Path) -> PathBuf {
    let mut deadline = Deadline::in_seconds(30);
    loop {
        let done: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            // Chromium's own temporary files start with a dot.
            .filter(|p| {
                p.extension().is_none_or(|x| x != "crdownload")
                    && p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect();
        if let Some(p) = done.into_iter().next() {
            return p;
        }
        deadline
            .tick(format!("no download finished in {}", dir.display()))
            .await;
    }
}

/// Submits `file` on a verification page already open and returns the verdict shown
/// (or the form's error when the file was refused before any verdict).
async fn verdict_for(b: &Client, file: &Path) -> (String, String) {
    b.find(Locator::Css("input[name=file]"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    click(b, "#verify button[type=submit]").await;
    let mut deadline = Deadline::in_seconds(30);
    loop {
        let text = |css: &'static str| async move {
            b.find(Locator::Css(css))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        let status = text("#verdict .status").await;
        let error = text("#verify .form-error").await;
        if !status.is_empty() || !error.is_empty() {
            return (status, error);
        }
        deadline.tick("the verification never answered").await;
    }
}

/// The public side in Chromium, as a citizen or a bank uses it: search a company by a
/// part of its name, open its page, download the evidence file with the page's button
/// and verify it on the public verification page; the file with one byte changed is
/// refused. No login, no client certificate; every request stays on the node's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_searches_downloads_and_verifies_in_chromium() {
    let _exclusive = EXCLUSIVE.lock().await;
    let mut c = Cluster::new(&[SH, GD]);
    let public_port = free_local_port();
    let mut cfg = c.config(1);
    cfg.public_listen = format!("127.0.0.1:{public_port}");
    c.save_config(1, &cfg);
    c.start_all().await;
    c.register_departments(0).await;
    c.register_departments(1).await;
    let (entry, _) = c
        .list_and_ask_all(
            0,
            wage_arrears_entry("沪人社罚〔2026〕41号"),
            "沪联惩〔2026〕41号",
        )
        .await;

    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("profile");
    let downloads = profile.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let (_driver, b) = start_browser(&profile).await;
    let public = format!("https://127.0.0.1:{public_port}");

    // Search by a part of the registered name (劳务), once Guangdong holds the entry.
    let mut deadline = Deadline::in_seconds(60);
    loop {
        // From the home page each time: a search box found while the previous results
        // page was still loading went stale under the test (StaleElementReference).
        b.goto(&format!("{public}/")).await.unwrap();
        let q = b.find(Locator::Css("input[name=q]")).await.unwrap();
        q.clear().await.unwrap();
        q.send_keys("劳务").await.unwrap();
        click(&b, "form[role=search] button[type=submit]").await;
        if whole_page(&b)
            .await
            .contains("/subjects/91350100M000100Y43")
        {
            break;
        }
        deadline
            .tick("the search never found the company Shanghai listed")
            .await;
    }
    shot(&b, "public-search").await;
    only_from(&b, &public).await;

    // Its page: the entry from Shanghai, with its state.
    click(&b, "a[href='/subjects/91350100M000100Y43']").await;
    let src = wait_for_page(&b, "the subject page", false, |s| {
        s.contains("沪人社罚〔2026〕41号")
    })
    .await;
    assert!(src.contains(&entry.to_string()), "{src}");
    shot(&b, "public-subject").await;
    only_from(&b, &public).await;

    // The evidence speaks as of the federation's latest cosigned checkpoint: wait (in
    // the page's own origin) until one covers the entry, then download it with the
    // page's button.
    let mut deadline = Deadline::in_seconds(90);
    loop {
        let hexed = b
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/subjects/91350100M000100Y43/evidence?domain=procurement')
                   .then(r => r.ok ? r.arrayBuffer() : new ArrayBuffer(0))
                   .then(a => done(Array.from(new Uint8Array(a), x => x.toString(16).padStart(2, '0')).join('')))
                   .catch(() => done(''));",
                vec![],
            )
            .await
            .unwrap();
        let bytes = hex::decode(hexed.as_str().unwrap_or("")).unwrap_or_default();
        if credfed_protocol::federation::ProvenAnswer::from_file(&bytes)
            .is_ok_and(|f| !f.answer.entries.is_empty())
        {
            break;
        }
        deadline
            .tick("no evidence file ever listed the company")
            .await;
    }
    click(&b, "form[action$='/evidence'] button[type=submit]").await;
    let file = downloaded(&downloads).await;
    let bytes = std::fs::read(&file).unwrap();
    let answer = credfed_protocol::federation::ProvenAnswer::from_file(&bytes).unwrap();
    assert!(
        answer.answer.entries.iter().any(|e| e.entry == entry),
        "the downloaded answer does not carry the entry"
    );

    // The public verification page: the file verifies; one byte changed does not.
    b.goto(&format!("{public}/verify")).await.unwrap();
    let (status, error) = verdict_for(&b, &file).await;
    assert_eq!(status, "VERIFIED", "{error}");
    shot(&b, "public-verify").await;
    only_from(&b, &public).await;
    let mut edited = bytes.clone();
    let at = edited.len() / 2;
    edited[at] ^= 1;
    let bad = tmp.path().join("edited.evidence");
    std::fs::write(&bad, edited).unwrap();
    b.goto(&format!("{public}/verify")).await.unwrap();
    let (status, error) = verdict_for(&b, &bad).await;
    assert!(
        status == "NOT VERIFIED" || !error.is_empty(),
        "an edited file verified: {status}"
    );
    b.close().await.unwrap();
}

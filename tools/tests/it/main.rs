//! End-to-end tests of the `credfed` CLI against real node processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use credfed_protocol::federation::ProvenAnswer;
use credfed_protocol::ids::RegionCode;
use credfed_testnet::fed::{FedOptions, Federation};
use serde_json::{Value, json};

const CLI: &str = env!("CARGO_BIN_EXE_credfed");

struct Env {
    fed: Federation,
    _tmp: tempfile::TempDir,
    keys: PathBuf,
}

async fn federation(base_port: u16) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let regions = [
        RegionCode::new(310000, "r").unwrap(),
        RegionCode::new(440000, "r").unwrap(),
    ];
    let mut fed = Federation::create(
        &tmp.path().join("fed"),
        &regions,
        &FedOptions {
            base_port,
            heads_interval_ms: 300,
            // The CLI needs no link faults: loopback keeps these tests root-free.
            network: credfed_testnet::fed::NetworkChoice::InNode,
            store_engine: None,
            standby: Vec::new(),
        },
    )
    .unwrap();
    fed.start_all(false).await.unwrap();
    fed.register_departments().await.unwrap();
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for r in ["310000", "440000"] {
        for u in ["pub", "init", "impl", "obj"] {
            let d = format!("{r}:{u}");
            std::fs::write(
                keys.join(format!("{r}-{u}.key")),
                hex::encode(fed.dept_key(&d).secret_bytes()),
            )
            .unwrap();
        }
    }
    Env {
        fed,
        _tmp: tmp,
        keys,
    }
}

impl Env {
    /// Runs the CLI against node `i` (its operator certificate) as department `dept`.
    fn cli(&self, i: usize, dept: &str, args: &[&str]) -> Output {
        let n = &self.fed.nodes[i];
        let r = n.region.to_string();
        Command::new(CLI)
            .args(args)
            .env("CREDFED_NODE", &n.api)
            .env("CREDFED_CA", n.dir.join("api-ca.pem"))
            .env(
                "CREDFED_CERT",
                n.dir.join("operator").join(format!("{r}-operator.pem")),
            )
            .env(
                "CREDFED_CERT_KEY",
                n.dir.join("operator").join(format!("{r}-operator.key")),
            )
            .env("CREDFED_AUTHOR", dept)
            .env(
                "CREDFED_KEY",
                self.keys.join(format!("{}.key", dept.replace(':', "-"))),
            )
            .env("CREDFED_MANIFEST", self.fed.dir.join("manifest.json"))
            .output()
            .unwrap()
    }

    fn json(&self, i: usize, dept: &str, args: &[&str]) -> Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        let out = self.cli(i, dept, &a);
        assert!(
            out.status.success(),
            "credfed {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn wait_json(&self, i: usize, args: &[&str], cond: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            let mut a = vec!["--output", "json"];
            a.extend_from_slice(args);
            let out = self.cli(i, "310000:pub", &a);
            if out.status.success()
                && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
                && cond(&v)
            {
                return v;
            }
            assert!(
                Instant::now() < end,
                "condition never held for {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The legal representative named with the entry (GB 11643-1999's printed example).
const LEGAL_REP: &str = "11010519491231002X";

/// A company that defies a judgment it can perform (article 九 group 3, 有履行能力但拒不
/// 履行): procurement is barred to the company, air travel to its legal representative.
const PUBLISH: &[&str] = &[
    "entry",
    "publish",
    "--uscc",
    "91350100M000100Y43",
    "--name",
    "某某食品有限公司",
    "--related",
    "legal_representative:11010519491231002X:张三",
    "--findings",
    "able_but_refuses",
    "--category",
    "defying_judgment_or_decision",
    "--document-no",
    "（2026）沪01执123号",
    "--authority",
    "上海市第一中级人民法院",
    "--decided-on",
    "2026-01-05",
    "--expires-on",
    "2031-01-05",
    "--legal-basis",
    "《民事诉讼法》第二百六十六条",
    "--measures",
    "P-PROCUREMENT,P-TRAVEL-AIR",
];

/// the whole joint-action cycle between two nodes, driven only by the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_action_cycle_between_two_nodes() {
    let env = federation(29000).await;
    let v = env.json(0, "310000:pub", PUBLISH);
    let entry = v["entry"].as_str().unwrap().to_string();
    let v = env.json(
        0,
        "310000:init",
        &[
            "action",
            "initiate",
            "--entry",
            &entry,
            "--reference",
            "沪联惩〔2026〕5号",
            "--targets",
            "440000",
            "--measures",
            "P-PROCUREMENT,P-TRAVEL-AIR",
            "--respond-by",
            "2030-01-01",
        ],
    );
    let action = v["action"].as_str().unwrap().to_string();
    env.wait_json(1, &["action", "show", &action], |_| true)
        .await;
    // The nodes are connected: `peers` says when each was last heard from, in words.
    let out = env.cli(1, "440000:impl", &["peers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" CST (") && text.contains("s ago)"), "{text}");
    env.json(
        1,
        "440000:impl",
        &[
            "action",
            "ack",
            "--action",
            &action,
            "--implementing",
            "440000:impl",
        ],
    );
    env.json(
        1,
        "440000:impl",
        &[
            "action",
            "execute",
            "--action",
            &action,
            "--measure",
            "P-PROCUREMENT",
            "--reference",
            "粤财采〔2026〕9号",
            "--executed-on",
            "2026-11-20",
        ],
    );
    let v = env
        .wait_json(0, &["action", "show", &action], |v| {
            v["targets"][0]["status"] == "accepted"
                && v["targets"][0]["executed"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(v["targets"][0]["region"], "440000");
    // The text table for people.
    let out = env.cli(0, "310000:pub", &["action", "show", &action]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("440000") && text.contains("accepted") && text.contains("P-PROCUREMENT"),
        "{text}"
    );
    // A check at Guangdong applies the mandatory procurement bar to the company, saved and
    // verified offline.
    let answer = env._tmp.path().join("answer.json");
    let v = env
        .wait_json(
            1,
            &[
                "check",
                "91350100M000100Y43",
                "--domain",
                "procurement",
                "--save",
                answer.to_str().unwrap(),
            ],
            |v| v["verdict"] == "measures_apply",
        )
        .await;
    assert_eq!(v["mandatory"][0]["code"], "P-PROCUREMENT");
    // The air-travel restriction falls on the legal representative, not on the company
    // (a company does not board a plane).
    let v = env.json(
        1,
        "440000:impl",
        &["check", "91350100M000100Y43", "--domain", "travel"],
    );
    assert_eq!(v["verdict"], "nothing_applies", "{v}");
    let v = env.json(
        1,
        "440000:impl",
        &["check", LEGAL_REP, "--domain", "travel"],
    );
    assert_eq!(v["mandatory"][0]["code"], "P-TRAVEL-AIR", "{v}");
    assert_eq!(
        v["mandatory"][0]["roles"],
        serde_json::json!([{"related": "legal_representative"}])
    );
    // People read the mask, never the number; the node's audit line has the mask only.
    let out = env.cli(
        1,
        "440000:impl",
        &["check", LEGAL_REP, "--domain", "travel"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("11****************") && !text.contains(LEGAL_REP),
        "{text}"
    );
    let audit = env
        .fed
        .get(1, "/v1/audit?limit=1000")
        .await
        .unwrap()
        .to_string();
    assert!(
        audit.contains("11****************") && !audit.contains(LEGAL_REP),
        "{audit}"
    );
    let out = Command::new(CLI)
        .args([
            "verify",
            answer.to_str().unwrap(),
            "--manifest",
            env.fed.dir.join("manifest.json").to_str().unwrap(),
            "--authority-key",
            &env.fed.authority.public().to_hex(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("VERIFIED"));
    // Departments as registered, and a correction of the entry through `entry amend`.
    let v = env.json(0, "310000:pub", &["dept", "list", "--region", "310000"]);
    assert_eq!(v.as_array().unwrap().len(), 4);
    let mut corrected: Value = env
        .fed
        .get(0, &format!("/v1/entries/{entry}"))
        .await
        .unwrap()["entry"]["content"]
        .clone();
    corrected["summary"] = Value::String("更正：涉案批次".into());
    let file = env._tmp.path().join("corrected.json");
    std::fs::write(&file, corrected.to_string()).unwrap();
    env.json(
        0,
        "310000:pub",
        &[
            "entry",
            "amend",
            "--entry",
            &entry,
            "--file",
            file.to_str().unwrap(),
            "--reason",
            "更正",
        ],
    );
    let v = env.json(0, "310000:pub", &["entry", "show", &entry]);
    assert_eq!(v["entry"]["content"]["summary"], "更正：涉案批次");
    assert_eq!(v["entry"]["amendments"], 1);
    // The same with typed flags and the id by a prefix as tables show it: only the
    // fields given change.
    let short = &entry[..12];
    env.json(
        0,
        "310000:pub",
        &[
            "entry",
            "amend",
            "--entry",
            short,
            "--summary",
            "更正：第二批次",
            "--reason",
            "更正摘要",
        ],
    );
    let v = env.json(0, "310000:pub", &["entry", "show", short]);
    assert_eq!(v["entry"]["content"]["summary"], "更正：第二批次");
    assert_eq!(v["entry"]["amendments"], 2);
    assert_eq!(v["entry"]["content"]["basis"], corrected["basis"]);
    let out = env.cli(
        0,
        "310000:pub",
        &["entry", "amend", "--entry", short, "--reason", "x"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to amend"));
    // Prefixes too short, or matching nothing, are refused with what to do.
    for (prefix, says) in [("abc", "at least 8"), ("00000000", "no entry on this node")] {
        let out = env.cli(0, "310000:pub", &["entry", "show", prefix]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{prefix}: {err}");
    }
    // Guangdong's inbox still asks for the air-travel measure's execution report;
    // lifting the procurement bar goes through `action lift` by prefix.
    let v = env.json(1, "440000:impl", &["inbox"]);
    let task = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["about"]["action"] == action.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(task["kind"], "report_execution", "{v}");
    assert_eq!(task["measures"], serde_json::json!(["P-TRAVEL-AIR"]));
    env.json(
        1,
        "440000:impl",
        &[
            "action",
            "lift",
            "--action",
            &action[..10],
            "--measure",
            "P-PROCUREMENT",
            "--reference",
            "粤财采解〔2026〕1号",
            "--reason",
            "演练",
        ],
    );
    env.wait_json(0, &["action", "show", &action[..10]], |v| {
        v["targets"][0]["lifted"] == serde_json::json!(["P-PROCUREMENT"])
    })
    .await;
    // `action show` says what the entry it rests on is today.
    let v = env.json(0, "310000:pub", &["action", "show", &action]);
    assert_eq!(v["entry"]["state"], "active", "{v}");
    let out = env.cli(0, "310000:pub", &["action", "show", &action]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(active)"));
    // Statistics as tables for people, readable keys in JSON.
    let out = env.cli(0, "310000:pub", &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Entries by category") && text.contains("black:defying_judgment_or_decision"),
        "{text}"
    );
    let v = env.json(0, "310000:pub", &["stats"]);
    assert_eq!(
        v["entries_by_category"]["black:defying_judgment_or_decision"], 1,
        "{v}"
    );
    // --dry-run signs without submitting.
    let mut dry = PUBLISH.to_vec();
    dry.push("--dry-run");
    let before = env.json(0, "310000:pub", &["status"])["own_head"].clone();
    env.json(0, "310000:pub", &dry);
    assert_eq!(env.json(0, "310000:pub", &["status"])["own_head"], before);
}

fn write_csv(path: &Path, rows: usize, bad: &[usize]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record([
        "uscc",
        "name",
        "list",
        "category",
        "document_no",
        "authority",
        "decided_on",
        "legal_basis",
        "effective_from",
        "expires_on",
        "measures",
        "summary",
    ])
    .unwrap();
    for i in 0..rows {
        let uscc = if bad.contains(&i) {
            "91350100M000100Y44"
        } else {
            "91350100M000100Y43"
        };
        let decided = if bad.contains(&i) && i % 2 == 0 {
            "2026-02-30"
        } else {
            "2026-01-05"
        };
        w.write_record([
            uscc,
            "某某公司",
            "black",
            "malicious_wage_arrears",
            &format!("沪人社罚〔2026〕{i}号"),
            "上海市人社局",
            decided,
            "《劳动保障监察条例》",
            "",
            "2029-01-05",
            "P-PROCUREMENT;P-MARKET-ENTRY",
            "",
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

/// bulk import with bad rows, and an interrupted import resumed without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_validates_first_and_resumes_without_duplicates() {
    let env = federation(29100).await;
    let dir = env._tmp.path();
    let all = dir.join("all.csv");
    let bad = [7, 500, 1501, 1999];
    write_csv(&all, 2000, &bad);
    let head = |env: &Env| {
        env.json(0, "310000:pub", &["status"])["own_head"]
            .as_u64()
            .unwrap()
    };
    let start = head(&env);
    // Bad rows: reported with line and rule, nothing submitted, exit 4.
    let out = env.cli(0, "310000:pub", &["import", all.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 9: subject.uscc: check character is '4', expected '3'"),
        "{err}"
    );
    assert!(err.contains("line 502: --decided-on"), "{err}");
    assert!(err.contains("nothing was submitted"), "{err}");
    assert_eq!(head(&env), start);
    // An interrupted import: the first 600 rows went in.
    let part = dir.join("part.csv");
    write_csv(&part, 600, &bad);
    let v = env.json(
        0,
        "310000:pub",
        &["import", part.to_str().unwrap(), "--skip-invalid"],
    );
    assert_eq!(v["submitted"], 598);
    // Rerun on the whole file: earlier rows are recognised, not duplicated.
    let v = env.json(
        0,
        "310000:pub",
        &["import", all.to_str().unwrap(), "--skip-invalid"],
    );
    assert_eq!(v["already_recorded"], 598);
    assert_eq!(v["submitted"], 2000 - 4 - 598);
    assert_eq!(v["invalid"], 4);
    assert_eq!(head(&env), start + 1996, "exactly one record per valid row");
    // A row with columns missing is one invalid row, with one line number, skipped like
    // any other with --skip-invalid.
    let short = dir.join("short.csv");
    write_csv(&short, 2, &[]);
    let mut text = std::fs::read_to_string(&short).unwrap();
    text = text.replace("沪人社罚〔2026〕1号", "沪人社罚〔2026〕short-1号");
    text = text.replace("沪人社罚〔2026〕0号", "沪人社罚〔2026〕short-0号");
    text.push_str("91350100M000100Y43,某某公司,black\n");
    std::fs::write(&short, text).unwrap();
    let out = env.cli(
        0,
        "310000:pub",
        &[
            "import",
            short.to_str().unwrap(),
            "--skip-invalid",
            "--output",
            "json",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4: has 3 fields where the header has 12"),
        "{err}"
    );
    assert!(!err.contains("(line:"), "one line number: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["submitted"].as_u64(), v["invalid"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
}

/// Bulk import of natural-person entries and related persons: the CLI validates every
/// person first (bad role, bad number: line, field and rule), the node hashes them, and
/// a person is then found at the other region both as a subject and as a related person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_of_persons_and_related_persons() {
    let env = federation(29400).await;
    let file = env._tmp.path().join("persons.jsonl");
    let person = "440524188001010014";
    let court = r#""authority": "广州市中级人民法院", "decided_on": "2026-01-05", "legal_basis": "《民事诉讼法》第二百六十六条", "expires_on": "2028-01-05", "category": "defying_judgment_or_decision", "findings": ["able_but_refuses"]"#;
    let rows = [
        format!(
            r#"{{"person": "{person}", "name": "李四", "document_no": "（2026）粤01执1号", "measures": ["P-TRAVEL-RAIL"], {court}}}"#
        ),
        format!(
            r#"{{"uscc": "91350100M000100Y43", "name": "某某公司", "related": ["legal_representative:11010519491231002X:张三", "actual_controller:{person}:李四"], "document_no": "（2026）粤01执2号", "measures": ["P-PROCUREMENT", "P-TRAVEL-AIR"], {court}}}"#
        ),
        format!(
            r#"{{"uscc": "91350100M000100Y43", "name": "某某公司", "related": ["chairman:{person}:李四"], "document_no": "（2026）粤01执3号", "measures": ["P-PROCUREMENT"], {court}}}"#
        ),
        format!(
            r#"{{"uscc": "91350100M000100Y43", "name": "某某公司", "related": ["legal_representative:440524188001010015:李四"], "document_no": "（2026）粤01执4号", "measures": ["P-PROCUREMENT"], {court}}}"#
        ),
    ];
    std::fs::write(&file, rows.join("\n")).unwrap();
    let out = env.cli(0, "310000:pub", &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: --related[0].role: 'chairman'"),
        "{err}"
    );
    assert!(
        err.contains("line 4: --related[0].number") && err.contains("GB 11643-1999"),
        "{err}"
    );
    assert!(
        !err.contains("440524188001010015"),
        "a clear number in an error: {err}"
    );
    let v = env.json(
        0,
        "310000:pub",
        &["import", file.to_str().unwrap(), "--skip-invalid"],
    );
    assert_eq!(v["submitted"], 2, "{v}");
    // Found at Guangdong by the number: rail as the subject, air as the actual controller.
    let v = env
        .wait_json(1, &["check", person, "--domain", "travel"], |v| {
            v["mandatory"].as_array().is_some_and(|m| m.len() == 2)
        })
        .await;
    let mut got: Vec<(String, String)> = v["mandatory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["code"].as_str().unwrap().to_owned(),
                m["roles"].to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "P-TRAVEL-AIR".to_owned(),
                r#"[{"related":"actual_controller"}]"#.to_owned()
            ),
            (
                "P-TRAVEL-RAIL".to_owned(),
                r#"[{"subject":"natural_person"}]"#.to_owned()
            ),
        ]
    );
}

/// A bulk import with 256 rows in flight at once completes (it used to hang after a few
/// hundred rows: a request left unflushed in a TLS buffer), every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_with_256_rows_in_flight_completes() {
    let env = federation(29200).await;
    let all = env._tmp.path().join("big.csv");
    write_csv(&all, 20_000, &[]);
    let start = env.json(0, "310000:pub", &["status"])["own_head"]
        .as_u64()
        .unwrap();
    let began = Instant::now();
    let v = env.json(
        0,
        "310000:pub",
        &["import", all.to_str().unwrap(), "--batch", "256"],
    );
    assert_eq!(v["submitted"], 20_000, "{v}");
    let head = env.json(0, "310000:pub", &["status"])["own_head"]
        .as_u64()
        .unwrap();
    assert_eq!(head, start + 20_000);
    eprintln!("20000 rows in {:?}", began.elapsed());
}

/// offline verification of a good answer and of broken ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_exactly_what_fails() {
    let env = federation(29200).await;
    env.json(0, "310000:pub", PUBLISH);
    let dir = env._tmp.path();
    let good = dir.join("good.json");
    env.json(
        0,
        "310000:pub",
        &[
            "check",
            "91350100M000100Y43",
            "--domain",
            "procurement",
            "--save",
            good.to_str().unwrap(),
        ],
    );
    let manifest = env.fed.dir.join("manifest.json");
    let authority = env.fed.authority.public().to_hex();
    let verify = |p: &Path| {
        Command::new(CLI)
            .args([
                "verify",
                p.to_str().unwrap(),
                "--manifest",
                manifest.to_str().unwrap(),
                "--authority-key",
                &authority,
            ])
            .output()
            .unwrap()
    };
    assert!(verify(&good).status.success());
    // The verdict is recomputed even without proofs: a listed company shown clear.
    let mut a: Value = serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    a["verdict"] = Value::String("clear".into());
    let p = dir.join("flipped-verdict.json");
    std::fs::write(&p, a.to_string()).unwrap();
    let out = verify(&p);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("verdict: the answer says clear, the evidence gives measures_apply"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Saves a mangled answer, verifies it, and expects exit code 5 naming the failure.
    let refused = |name: &str, answer: &Value, expected: &str| {
        let p = dir.join(name);
        std::fs::write(&p, answer.to_string()).unwrap();
        let out = verify(&p);
        assert_eq!(out.status.code(), Some(5), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expected),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let answer: Value = serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    // A flipped byte.
    let mut a = answer.clone();
    let hex_env = a["evidence"][0]["envelope"].as_str().unwrap().to_string();
    let mut bytes = hex::decode(&hex_env).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    a["evidence"][0]["envelope"] = Value::String(hex::encode(bytes));
    refused("flipped.json", &a, "evidence 310000#");
    // A missing envelope (the publication).
    let mut a = answer.clone();
    let ev = a["evidence"].as_array().unwrap().clone();
    let kept: Vec<Value> = ev.into_iter().filter(|e| e["pos"]["seq"] != 5).collect();
    a["evidence"] = Value::Array(kept);
    refused("missing.json", &a, "not in the evidence");
    // An unauthorised author: an implementer's publication, sealed by the node, slipped in.
    let mut a = answer.clone();
    let body = credfed_protocol::record::Body::ListEntryPublished(serde_json::from_value::<credfed_protocol::record::ListEntry>(serde_json::json!({
        "category": {"black": "food_and_drug"},
        "subject": {"organisation": {"uscc": "91350100M000100Y43", "name": "x", "check_exemption": null}},
        "related_persons": [], "basis": {"document_no": "forged", "authority": "x", "decided_on": "2026-01-05", "legal_basis": "x"},
        "effective_from": "2026-01-05", "expires_on": "2031-01-05", "requested_measures": ["P-EXIT"], "findings": [], "summary": ""
    })).unwrap());
    let (b, sig) = credfed_protocol::envelope::sign_body(
        credfed_testnet::fed::FEDERATION_ID,
        &env.fed.dept_key("310000:impl"),
        &body,
    );
    let at = credfed_protocol::envelope::AppendPosition {
        region: RegionCode::new(310000, "r").unwrap(),
        seq: 99,
        prev_hash: credfed_protocol::crypto::Hash256([1; 32]),
        timestamp: credfed_protocol::time::Timestamp(1_790_000_000_000),
    };
    let forged = credfed_protocol::envelope::seal(
        credfed_testnet::fed::FEDERATION_ID,
        &env.fed.nodes[0].node_key,
        &at,
        credfed_protocol::ids::DepartmentId::parse("310000:impl", "d").unwrap(),
        b,
        sig,
    )
    .unwrap();
    let reg = env.json(0, "310000:pub", &["dept", "show", "310000:impl"])["registered_at"]["seq"]
        .as_u64()
        .unwrap();
    let log: Value = serde_json::from_str(
        &env.fed.nodes[0]
            .client
            .get(&format!("/v1/log/310000?from={reg}&limit=1"))
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let ev = a["evidence"].as_array_mut().unwrap();
    ev.push(serde_json::json!({"pos": {"region": "310000", "seq": 99}, "envelope": hex::encode(forged)}));
    ev.push(serde_json::json!({"pos": {"region": "310000", "seq": reg}, "envelope": log["envelopes"][0]}));
    refused("unauthorised.json", &a, "lacks the publisher role");
}

/// Proven answers: a clear answer exported as an evidence file verifies offline with
/// every region proven absent; a listed subject's proven answer lists its records; and
/// `credfed verify` refuses an answer that claims absence for the listed subject, one
/// whose federation checkpoint is older than the bound, and one without its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proven_answers_verify_offline_and_lies_are_refused() {
    let env = federation(29400).await;
    env.json(0, "310000:pub", PUBLISH);
    let dir = env._tmp.path();
    let manifest = env.fed.dir.join("manifest.json");
    let authority = env.fed.authority.public().to_hex();
    let verify = |p: &Path, extra: &[&str]| {
        let mut args = vec![
            "verify",
            p.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--authority-key",
            &authority,
        ];
        args.extend_from_slice(extra);
        Command::new(CLI).args(&args).output().unwrap()
    };
    // What a lying answering node could produce: the changed answer, signed again with
    // its node key (so that only recomputation and the proofs can catch it).
    let resign = |v: &Value, node: usize| -> Value {
        let mut p: ProvenAnswer = serde_json::from_value(v.clone()).unwrap();
        p.sign(
            &env.fed.nodes[node].node_key,
            credfed_testnet::fed::FEDERATION_ID,
        );
        serde_json::to_value(&p).unwrap()
    };
    // An unlisted company, exported as an evidence file at the other node.
    let file = dir.join("clear.evidence");
    let v = env.json(
        1,
        "440000:pub",
        &[
            "check",
            "91110000100000000R",
            "--domain",
            "procurement",
            "--evidence",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(v["answer"]["verdict"], "clear");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"credfed evidence v3\n"));
    let out = verify(&file, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("VERIFIED: 91110000100000000R in procurement: clear, as of 20"),
        "{text}"
    );
    assert_eq!(text.matches("none (proven absent)").count(), 2, "{text}");
    // The file carries its manifest: the authority key alone verifies it.
    let out = Command::new(CLI)
        .args([
            "verify",
            file.to_str().unwrap(),
            "--authority-key",
            &authority,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without the authority pinned: refused (exit 7) unless told to trust the manifest,
    // and then the first line says so.
    let out = Command::new(CLI)
        .args([
            "verify",
            file.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ])
        .env_remove("CREDFED_AUTHORITY_KEY")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--authority-key"));
    let out = Command::new(CLI)
        .args(["verify", file.to_str().unwrap(), "--trust-manifest"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNPINNED: "));
    // A reader that stops after the first line: no panic, the exit code stands.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{CLI}' verify '{}' --authority-key {authority} | head -c 1 >/dev/null; exit ${{PIPESTATUS:-0}}",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every byte of the file is authenticated: one flipped bit is refused.
    let mut flipped = bytes.clone();
    let at = flipped.len() / 3;
    flipped[at] ^= 0x10;
    let flipped_path = dir.join("flipped.evidence");
    std::fs::write(&flipped_path, &flipped).unwrap();
    let out = verify(&flipped_path, &[]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The listed company: once the federation checkpoint covers the entry, Shanghai's
    // map lists the publication, and the answer verifies.
    let listed = dir.join("listed.json");
    env.wait_json(
        1,
        &[
            "check",
            "91350100M000100Y43",
            "--domain",
            "procurement",
            "--proofs",
            "--save",
            listed.to_str().unwrap(),
        ],
        |v| {
            v["regions"][0]["subject"]["positions"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        },
    )
    .await;
    let out = verify(&listed, &["--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["regions"][0]["naming_records"], 1, "{report}");
    let answer: Value = serde_json::from_str(&std::fs::read_to_string(&listed).unwrap()).unwrap();
    // A self-made manifest (another authority, the same members) given for a file that
    // does not carry one: refused when the authority is pinned.
    let mut forged_manifest = env.fed.manifest.clone();
    let forger = credfed_protocol::crypto::Keypair::from_secret([42; 32]);
    forged_manifest.authority_key = forger.public();
    let forged_path = dir.join("forged-manifest.json");
    std::fs::write(
        &forged_path,
        serde_json::to_string(&forged_manifest.sign(&forger).unwrap()).unwrap(),
    )
    .unwrap();
    let mut bare = answer.clone();
    bare["signed_manifest"] = Value::Null;
    let bare_path = dir.join("bare.json");
    std::fs::write(&bare_path, resign(&bare, 1).to_string()).unwrap();
    let out = Command::new(CLI)
        .args([
            "verify",
            bare_path.to_str().unwrap(),
            "--manifest",
            forged_path.to_str().unwrap(),
            "--authority-key",
            &authority,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the pinned federation authority"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = |name: &str, a: &Value, extra: &[&str], expected: &str| {
        let p = dir.join(name);
        std::fs::write(&p, resign(a, 1).to_string()).unwrap();
        let out = verify(&p, extra);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "{name}: {text}");
        assert!(text.contains(expected), "{name}: {text}");
    };
    // A field no answer has, added to the JSON: refused, named (JSON parsing alone
    // would have ignored it).
    let mut a = answer.clone();
    a["answer"]["note"] = json!("clear, really");
    let p = dir.join("extra-field.json");
    std::fs::write(&p, a.to_string()).unwrap();
    let out = verify(&p, &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answer.note is no part of an answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Saved before commitments were records: no `commitments` field at all. Absent reads
    // as none, and the file still verifies.
    let mut a = answer.clone();
    a["answer"].as_object_mut().unwrap().remove("commitments");
    let p = dir.join("before-commitments.json");
    std::fs::write(&p, a.to_string()).unwrap();
    let out = verify(&p, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The verdict flipped: unsigned, the answering node's signature fails; re-signed by
    // it, the recomputation refuses it.
    let mut a = answer.clone();
    a["answer"]["verdict"] = Value::String("clear".into());
    let p = dir.join("verdict-unsigned.json");
    std::fs::write(&p, a.to_string()).unwrap();
    let out = verify(&p, &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signature: not 440000's node's signature")
    );
    refused(
        "verdict.json",
        &a,
        &[],
        "verdict: the answer says clear, the evidence gives measures_apply",
    );
    // as_of moved a year back.
    let mut a = answer.clone();
    a["answer"]["as_of"] = json!(a["answer"]["as_of"].as_i64().unwrap() - 365 * 86_400_000);
    refused("as_of.json", &a, &[], "as_of: the answer says");
    // Claiming absence for the listed company: no entries, no positions.
    let mut a = answer.clone();
    a["regions"][0]["subject"]["positions"] = Value::Array(vec![]);
    a["regions"][0]["subject"]["inclusion"] = Value::Array(vec![]);
    for k in ["entries", "mandatory", "recommended", "withheld"] {
        a["answer"][k] = Value::Array(vec![]);
    }
    a["answer"]["verdict"] = Value::String("clear".into());
    refused(
        "absent.json",
        &a,
        &[],
        "310000: the map lists other records",
    );
    // Stale: verified two hours after the checkpoint with a one-hour bound.
    let at = (report["as_of"].as_u64().unwrap() + 7200).to_string();
    refused(
        "stale.json",
        &answer,
        &["--at", &at, "--max-age", "3600"],
        "freshness",
    );
    // Uncosigned: the federation checkpoint stripped of all but its first signature.
    let mut a = answer.clone();
    let note = a["federation_note"].as_str().unwrap().to_string();
    let (body, sigs) = note.split_once("\n\n").unwrap();
    let first = sigs.lines().next().unwrap();
    a["federation_note"] = Value::String(format!("{body}\n\n{first}\n"));
    refused("uncosigned.json", &a, &[], "cosignatures needed");

    // The check printout of a proven answer says as of when and how old the oldest
    // region's head is.
    let out = env.cli(
        1,
        "440000:pub",
        &[
            "check",
            "91110000100000000R",
            "--domain",
            "procurement",
            "--proofs",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("proven under a federation checkpoint of 2 regions as of 20")
            && text.contains("oldest region head"),
        "{text}"
    );
    // A person's file names them by name and mask, and `--person` confirms the number
    // through the verifier's own node (which alone computes person keys).
    let person_file = dir.join("person.evidence");
    env.json(
        1,
        "440000:pub",
        &[
            "check",
            "11010519491231002X",
            "--domain",
            "travel",
            "--evidence",
            person_file.to_str().unwrap(),
        ],
    );
    let out = env.cli(
        1,
        "440000:pub",
        &[
            "verify",
            person_file.to_str().unwrap(),
            "--authority-key",
            &authority,
            "--person",
            "11010519491231002X",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("VERIFIED: person 张三 (11****************) in travel: measures_apply"),
        "{text}"
    );
    assert!(
        text.contains("the person is 11****************: the file's person key is this number's"),
        "{text}"
    );
    assert!(!text.contains("11010519491231002X"), "{text}");
    let out = env.cli(
        1,
        "440000:pub",
        &[
            "verify",
            person_file.to_str().unwrap(),
            "--authority-key",
            &authority,
            "--person",
            "440524188001010014",
        ],
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("--person: the file is about another person than 44****************"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An objection recorded in Guangdong suspends the entry: the proven answer follows
    // the entry into every region and shows it suspended, and withholding the
    // objection — from the evidence and from Guangdong's listing — is refused.
    let entry = answer["answer"]["entries"][0]["entry"]
        .as_str()
        .unwrap()
        .to_string();
    env.json(
        1,
        "440000:obj",
        &[
            "objection",
            "file",
            "--entry",
            &entry,
            "--case-no",
            "粤异议〔2026〕7号",
            "--grounds",
            "当事人称已履行",
            "--filed-on",
            "2026-02-01",
        ],
    );
    let suspended = dir.join("suspended.json");
    env.wait_json(
        1,
        &[
            "check",
            "91350100M000100Y43",
            "--domain",
            "procurement",
            "--proofs",
            "--save",
            suspended.to_str().unwrap(),
        ],
        |v| {
            v["answer"]["entries"][0]["state"] == "suspended"
                && v["regions"][1]["related"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|k| !k["listing"]["positions"].as_array().unwrap().is_empty())
                })
        },
    )
    .await;
    let out = verify(&suspended, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let answer: Value =
        serde_json::from_str(&std::fs::read_to_string(&suspended).unwrap()).unwrap();
    let mut a = answer.clone();
    let related = a["regions"][1]["related"].as_array_mut().unwrap();
    let k = related
        .iter_mut()
        .find(|k| !k["listing"]["positions"].as_array().unwrap().is_empty())
        .unwrap();
    let seqs: Vec<u64> = k["listing"]["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    k["listing"]["positions"] = Value::Array(vec![]);
    k["listing"]["inclusion"] = Value::Array(vec![]);
    let evidence = a["answer"]["evidence"].as_array_mut().unwrap();
    evidence.retain(|e| {
        !(e["pos"]["region"] == "440000" && seqs.contains(&e["pos"]["seq"].as_u64().unwrap()))
    });
    let entries = a["answer"]["entries"].as_array_mut().unwrap();
    entries[0]["state"] = Value::String("active".into());
    refused("withheld-objection.json", &a, &[], "440000: Entry");
    // And a proof left out altogether.
    let mut a = answer.clone();
    a["regions"][1]["related"] = Value::Array(vec![]);
    refused("no-entry-proof.json", &a, &[], "no map proof");
}

/// a node that is down gives exit code 3 and says where it looked and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_gives_exit_code_3() {
    let mut env = federation(29300).await;
    env.fed.signal(0, "-TERM").unwrap();
    let out = env.cli(0, "310000:pub", &["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&env.fed.nodes[0].api) && err.contains("credfed-node run"),
        "{err}"
    );
}

/// `credfed verify` refuses a file larger than any answer before reading it.
#[test]
fn verify_refuses_a_file_larger_than_any_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.evidence");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(credfed_protocol::federation::MAX_EVIDENCE_FILE_BYTES as u64 + 1)
        .unwrap();
    let out = Command::new(CLI)
        .args([
            "verify",
            big.to_str().unwrap(),
            "--manifest",
            tmp.path().join("absent.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("more than any answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn id_check_and_keys_and_completions() {
    // Non-ASCII input 18 bytes long is an invalid code, not a crash (byte slicing).
    assert_eq!("123456789012345合".len(), 18);
    let out = Command::new(CLI)
        .args(["id", "check", "123456789012345合"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(CLI)
        .args(["id", "check", "--kind", "person", "123456789012345合"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(CLI)
        .args(["id", "check", "91350100M000100Y43", "11010519491231002X"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(CLI)
        .args([
            "--output",
            "json",
            "id",
            "check",
            "--kind",
            "person",
            "110105194912310021",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["expected_check_character"], "X");
    // Without --kind the code is tried as both kinds and each rule is reported.
    let out = Command::new(CLI)
        .args(["--output", "json", "id", "check", "110105194912310021"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["kind"], "uscc|person");
    assert!(
        v[0]["rule"].as_str().unwrap().contains("GB 32100-2015")
            && v[0]["rule"].as_str().unwrap().contains("GB 11643-1999"),
        "{v}"
    );
    // A national-authority code (registration authority 1, 100000) is valid.
    let out = Command::new(CLI)
        .args(["id", "check", "91100000100003962T"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("dept.key");
    assert!(
        Command::new(CLI)
            .args([
                "key",
                "gen",
                "--kind",
                "department",
                "--out",
                k.to_str().unwrap()
            ])
            .status()
            .unwrap()
            .success()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The public half lies beside it, readable, holding only the public key.
    let public = dir.path().join("dept.key.pub");
    let text = std::fs::read_to_string(&public).unwrap();
    let secret = std::fs::read_to_string(&k).unwrap();
    assert_eq!(text.trim().len(), 64);
    assert_ne!(text.trim(), secret.trim());
    assert_eq!(
        std::fs::metadata(&public).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(
        !Command::new(CLI)
            .args([
                "key",
                "gen",
                "--kind",
                "department",
                "--out",
                k.to_str().unwrap()
            ])
            .status()
            .unwrap()
            .success(),
        "must refuse to overwrite"
    );
    // A config file supplies settings below the environment and flags.
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "output = \"json\"\n").unwrap();
    let out = Command::new(CLI)
        .args(["id", "check", "91350100M000100Y43"])
        .env("CREDFED_CONFIG", &cfg)
        .env_remove("CREDFED_OUTPUT")
        .output()
        .unwrap();
    assert!(
        serde_json::from_slice::<Value>(&out.stdout).is_ok(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(CLI)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("credfed"));
}

/// `federation init` sizes the quorums from the faults tolerated: by default the most
/// the membership allows (says the quorums it gives); a federation may tolerate fewer;
/// claiming more than its quorums can survive is refused, naming the setting and the
/// flag to change.
#[test]
fn federation_init_states_the_faults_its_quorums_tolerate() {
    use credfed_protocol::crypto::Keypair;
    use credfed_protocol::ids::PROVINCES;
    let tmp = tempfile::tempdir().unwrap();
    let members = tmp.path().join("members.toml");
    let text: String = PROVINCES[..5]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "[[member]]\nregion = \"{}\"\nname = \"{}\"\nnode_key = \"{}\"\noperator_key = \"{}\"\n\n",
                p.code,
                p.name_zh,
                Keypair::from_secret([i as u8 + 1; 32]).public().to_hex(),
                Keypair::from_secret([i as u8 + 101; 32]).public().to_hex()
            )
        })
        .collect();
    std::fs::write(&members, text).unwrap();
    let authority = Keypair::from_secret([9; 32]).public().to_hex();
    let init = |extra: &[&str]| {
        let out = tmp.path().join("draft.json");
        let mut args = vec![
            "federation",
            "init",
            "--members",
            members.to_str().unwrap(),
            "--federation-id",
            "cn-test",
            "--authority",
            &authority,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Command::new(CLI).args(&args).output().unwrap()
    };
    let out = init(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("5 members, tolerating 1 faulty: a region's head is witnessed by 3 of the 4 others, a federation checkpoint needs 4 of 5"),
        "{text}"
    );
    let out = init(&["--faults-tolerated", "0", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["witness_quorum"].as_u64(),
            v["federation_quorum"].as_u64()
        ),
        (Some(3), Some(3))
    );
    let out = init(&["--faults-tolerated", "2"]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("manifest.policy.faults_tolerated: 2 with 5 members")
            && err.contains("at most 1")
            && err.contains("--faults-tolerated"),
        "{err}"
    );
    // A draft whose expiry has passed is not signed: every node would refuse it.
    let draft = tmp.path().join("draft.json");
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(&draft).unwrap()).unwrap();
    d["expires_at"] = json!(1_000);
    std::fs::write(&draft, d.to_string()).unwrap();
    let key = tmp.path().join("authority.key");
    std::fs::write(&key, "09".repeat(32)).unwrap();
    let out = Command::new(CLI)
        .args(["federation", "sign", draft.to_str().unwrap(), "--key"])
        .arg(&key)
        .args(["--out", tmp.path().join("signed.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has passed") && err.contains("--valid-days"),
        "{err}"
    );
    assert!(!tmp.path().join("signed.json").exists());
}

/// `credfed verify-evidence` checks evidence against a member offline: two envelopes its
/// node signed at one position, or two checkpoints it signed with one size and different
/// roots; evidence that does not hold (one envelope twice, a checkpoint signed by
/// another key, two consistent checkpoints) is refused with exit code 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_evidence_checks_a_members_fork_offline() {
    use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin};
    use credfed_protocol::crypto::Hash256;
    use credfed_protocol::envelope::{AppendPosition, seal, sign_body};
    let env = federation(29600).await;
    let dir = env._tmp.path();
    let manifest = env.fed.dir.join("manifest.json");
    let authority = env.fed.authority.public().to_hex();
    let fed_id = credfed_testnet::fed::FEDERATION_ID;
    let sh = RegionCode::new(310000, "r").unwrap();
    let node_key = &env.fed.nodes[0].node_key;
    let envelope = |name: &str| {
        let body = credfed_protocol::record::Body::DepartmentRegistered {
            department: credfed_protocol::ids::DepartmentId::new(sh, name, "d").unwrap(),
            name: name.into(),
            roles: vec![credfed_protocol::ids::Role::Publisher],
            key: node_key.public(),
        };
        let (bytes, sig) = sign_body(fed_id, &env.fed.nodes[0].operator_key, &body);
        let at = AppendPosition {
            region: sh,
            seq: 3,
            prev_hash: Hash256([2; 32]),
            timestamp: credfed_protocol::time::Timestamp(1_790_000_000_000),
        };
        let author = credfed_protocol::ids::DepartmentId::parse("310000:operator", "a").unwrap();
        seal(fed_id, node_key, &at, author, bytes, sig).unwrap()
    };
    let verify = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        Command::new(CLI)
            .args([
                "verify-evidence",
                p.to_str().unwrap(),
                "--manifest",
                manifest.to_str().unwrap(),
                "--authority-key",
                &authority,
            ])
            .output()
            .unwrap()
    };
    let (a, b) = (envelope("one"), envelope("two"));
    let proof =
        json!({"region": "310000", "seq": 3, "first": hex::encode(&a), "second": hex::encode(&b)});
    let out = verify("equivocation.json", &proof);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("VERIFIED: 310000") && text.contains("two different envelopes at #3"),
        "{text}"
    );
    let same =
        json!({"region": "310000", "seq": 3, "first": hex::encode(&a), "second": hex::encode(&a)});
    let out = verify("same.json", &same);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stdout).contains("identical"));
    // Split view: two checkpoints of one size with different roots, both Shanghai's.
    let name = origin(fed_id, sh);
    let note = |root: u8, key: &credfed_protocol::crypto::Keypair| {
        SignedCheckpoint::sign(
            Checkpoint::new(name.clone(), 5, Hash256([root; 32])),
            &name,
            key,
        )
        .encode()
    };
    let out = verify(
        "split.json",
        &json!({"notes": [note(1, node_key), note(2, node_key)]}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("split view"));
    let other = &env.fed.nodes[1].node_key;
    let out = verify(
        "forged.json",
        &json!({"notes": [note(1, node_key), note(2, other)]}),
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = verify(
        "consistent.json",
        &json!({"notes": [note(1, node_key), note(1, node_key)]}),
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stdout).contains("do not contradict"));
}

/// The person key node `i` gives the legal representative's number (polling until
/// enough members are connected).
async fn person_ref(env: &Env, i: usize) -> Value {
    let n = &env.fed.nodes[i];
    let r = n.region.to_string();
    let client = credfed_client::ApiClient::with_identity(
        &n.api,
        &n.dir.join("api-ca.pem"),
        &n.dir.join("operator").join(format!("{r}-operator.pem")),
        &n.dir.join("operator").join(format!("{r}-operator.key")),
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        poll.tick().await;
        let r = client
            .post(
                "/v1/persons/refs",
                &json!({"persons": [{"number": LEGAL_REP, "name": "张三"}]}),
            )
            .await
            .unwrap();
        if r.status == 200 {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            return v["refs"][0]["id_hash"].clone();
        }
        assert!(Instant::now() < end, "person refs: {}", r.body);
    }
}

/// A person key's refresh through the shipped commands: each member's operator starts
/// it with `credfed person-key start --refresh` and follows it with `--wait`; the
/// authority's `credfed federation person-key` takes the members' result files only if
/// they agree (a file with one public share changed is refused), the manifest is signed
/// and installed, the nodes restart on their new shares, and every person key is what
/// it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_key_refresh_runs_through_the_cli_and_the_authority_step() {
    let mut env = federation(29700).await;
    let before = person_ref(&env, 0).await;
    assert_eq!(person_ref(&env, 1).await, before);

    let started = env.json(
        0,
        "310000:pub",
        &["person-key", "start", "--refresh", "--label", "cli refresh"],
    );
    assert_eq!(started["state"], json!("running"), "{started}");
    let done1 = env.json(
        1,
        "310000:pub",
        &[
            "person-key",
            "start",
            "--refresh",
            "--label",
            "cli refresh",
            "--wait",
            "60",
        ],
    );
    assert_eq!(done1["state"], json!("done"), "{done1}");
    let done0 = env.json(0, "310000:pub", &["person-key", "status", "--wait", "60"]);
    assert_eq!(done0["person_key"], done1["person_key"]);
    let text = env.cli(0, "310000:pub", &["person-key", "status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("done") && text.contains("credfed federation person-key"),
        "{text}"
    );

    // The authority: the current manifest as a draft, the members' results, a check
    // that they agree.
    let tmp = tempfile::tempdir().unwrap();
    let draft = tmp.path().join("draft.json");
    let shown = env.json(
        0,
        "310000:pub",
        &[
            "federation",
            "show",
            env.fed.dir.join("manifest.json").to_str().unwrap(),
        ],
    );
    let mut m = shown.clone();
    m["version"] = json!(m["version"].as_u64().unwrap() + 1);
    std::fs::write(&draft, serde_json::to_string(&m).unwrap()).unwrap();
    let files: Vec<String> = [&done0, &done1]
        .iter()
        .map(|d| d["person_key_file"].as_str().unwrap().to_string())
        .collect();
    let forged = tmp.path().join("forged.json");
    let mut f: Value = serde_json::from_str(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
    f["person_key"]["shares"][0]["public_share"] =
        done0["person_key"]["shares"][1]["public_share"].clone();
    std::fs::write(&forged, f.to_string()).unwrap();
    let out = env.cli(
        0,
        "310000:pub",
        &[
            "federation",
            "person-key",
            draft.to_str().unwrap(),
            "--from",
            &files[0],
            "--from",
            forged.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("computed other public shares"), "{err}");
    let set = env.json(
        0,
        "310000:pub",
        &[
            "federation",
            "person-key",
            draft.to_str().unwrap(),
            "--from",
            &files[0],
            "--from",
            &files[1],
        ],
    );
    assert_eq!(set["results_compared"], json!(2));
    let signed = tmp.path().join("signed.json");
    env.json(
        0,
        "310000:pub",
        &[
            "federation",
            "sign",
            draft.to_str().unwrap(),
            "--key",
            env.fed.dir.join("authority.key").to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ],
    );

    // Every node runs the new manifest with its new share.
    for (i, done) in [&done0, &done1].iter().enumerate() {
        env.fed.signal(i, "-TERM").unwrap();
        let dir = env.fed.nodes[i].dir.clone();
        std::fs::copy(&signed, dir.join("manifest.json")).unwrap();
        let cfg_path = dir.join("config.toml");
        let mut cfg = credfed_client::node_config::NodeConfig::load(&cfg_path).unwrap();
        cfg.person_share_file = done["share_file"].as_str().unwrap().into();
        cfg.save(&cfg_path).unwrap();
    }
    for i in 0..2 {
        env.fed.start(i, false).unwrap();
    }
    for i in 0..2 {
        env.fed
            .wait_writable(i, Duration::from_secs(60))
            .await
            .unwrap();
    }
    assert_eq!(
        person_ref(&env, 0).await,
        before,
        "the refresh changed a person key"
    );
    assert_eq!(person_ref(&env, 1).await, before);
}

/// A reader that stops early (`credfed … | head`) ends the CLI quietly, no panic.
#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(CLI)
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reading end is dropped here, as `head -1` exits.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(first.contains("credfed"), "{first}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `credfed key csr` leaves the department's TLS key with it (0600) and writes only a
/// certificate signing request to hand over; it never overwrites a key.
#[test]
fn key_csr_keeps_the_key_and_writes_a_request() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(CLI)
            .args(["key", "csr", "--department", "310000:scjgj", "--out"])
            .arg(tmp.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = tmp.path().join("310000-scjgj.key");
    let csr = std::fs::read_to_string(tmp.path().join("310000-scjgj.csr")).unwrap();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("issue-client-cert --department 310000:scjgj --csr")
    );
    let before = std::fs::read(&key).unwrap();
    let again = run();
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

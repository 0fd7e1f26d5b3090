//! The inbox across real nodes: a joint action initiated in Shanghai shows up in the
//! target regions' inboxes, moves through acknowledgement, execution and lifting as
//! their departments act, and an objection is Shanghai's own task; each department sees
//! only its role's tasks.

use std::time::Duration;

use credfed_client::ApiClient;
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;
use serde_json::{Value, json};

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;

async fn inbox(client: &ApiClient, query: &str) -> Value {
    let r = client.get(&format!("/v1/inbox{query}")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().unwrap()
}

/// The kinds of the tasks about `about` (an action or objection id) in an inbox.
fn kinds_about(v: &Value, about: &str) -> Vec<String> {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["about"]
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                == Some(about)
        })
        .map(|t| t["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `client`'s inbox holds exactly `kinds` about `about`; returns it.
async fn wait_for_kinds(client: &ApiClient, about: &str, kinds: &[&str]) -> Value {
    let ok = wait_until(Duration::from_secs(30), || async {
        kinds_about(&inbox(client, "").await, about) == kinds
    })
    .await;
    let v = inbox(client, "").await;
    assert!(ok, "inbox never held {kinds:?} about {about}: {v}");
    assert_eq!(kinds_about(&v, about), kinds, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_action_moves_through_the_target_regions_inboxes() {
    let mut c = Cluster::new(&[SH, GD, GS]);
    c.start_all().await;
    for i in 0..3 {
        c.register_departments(i).await;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = Timestamp(now_ms).date_cst();
    let entry = ListEntry {
        effective_from: today.add_days(-1),
        expires_on: today.add_days(365),
        ..wage_arrears_entry("沪人社罚〔2026〕7号")
    };
    let r = c
        .submit(0, "310000:pub", &Body::ListEntryPublished(entry.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entry_id = entry_id(
        credfed_protocol::ids::RegionCode::new(SH, "r").unwrap(),
        &entry,
    );
    let action = JointAction {
        reference: "沪联惩〔2026〕21号".into(),
        kind: ActionKind::Punishment,
        entry: entry_id,
        targets: Targets::Regions(vec![
            credfed_protocol::ids::RegionCode::new(GD, "r").unwrap(),
            credfed_protocol::ids::RegionCode::new(GS, "r").unwrap(),
        ]),
        measures: entry.requested_measures.clone(),
        respond_by: today.add_days(14),
    };
    let r = c
        .submit(
            0,
            "310000:init",
            &Body::JointActionInitiated(action.clone()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let aid = action_id(
        &credfed_protocol::ids::DepartmentId::parse("310000:init", "d").unwrap(),
        &action.reference,
    )
    .to_string();

    let gd_impl = department_client(&c.nodes[1], "440000:impl");
    let gd_pub = department_client(&c.nodes[1], "440000:pub");
    let gs_impl = department_client(&c.nodes[2], "620000:impl");
    let sh_obj = department_client(&c.nodes[0], "310000:obj");

    // Both targets are asked to answer, by the respond-by date.
    let v = wait_for_kinds(&gd_impl, &aid, &["acknowledge"]).await;
    assert_eq!(v["region"], json!("440000"));
    let task = &v["tasks"][0];
    assert_eq!(task["due"], json!(action.respond_by.to_string()));
    assert_eq!(task["overdue"], json!(false));
    assert_eq!(task["role"], json!("implementer"));
    wait_for_kinds(&gs_impl, &aid, &["acknowledge"]).await;
    // A publisher of the same region has no implementer's task; the operator sees all.
    assert!(kinds_about(&inbox(&gd_pub, "").await, &aid).is_empty());
    assert_eq!(
        kinds_about(&inbox(&c.nodes[1].client, "").await, &aid),
        ["acknowledge"]
    );

    // Guangdong accepts: it must report execution.
    let r = c
        .submit(
            1,
            "440000:impl",
            &Body::JointActionAcknowledged {
                action: action_id(
                    &credfed_protocol::ids::DepartmentId::parse("310000:init", "d").unwrap(),
                    &action.reference,
                ),
                decision: AckDecision::Accepted,
                implementing: vec![
                    credfed_protocol::ids::DepartmentId::parse("440000:impl", "d").unwrap(),
                ],
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = wait_for_kinds(&gd_impl, &aid, &["report_execution"]).await;
    assert_eq!(
        v["tasks"][0]["measures"].as_array().unwrap().len(),
        action.measures.len()
    );
    // Gansu still has to answer.
    wait_for_kinds(&gs_impl, &aid, &["acknowledge"]).await;

    let aid_typed = action_id(
        &credfed_protocol::ids::DepartmentId::parse("310000:init", "d").unwrap(),
        &action.reference,
    );
    for m in &action.measures {
        let r = c
            .submit(
                1,
                "440000:impl",
                &Body::MeasureExecuted {
                    action: aid_typed,
                    measure: m.clone(),
                    reference: "粤执〔2026〕1号".into(),
                    executed_on: today,
                },
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    wait_for_kinds(&gd_impl, &aid, &[]).await;

    // Gansu objects to the entry: verifying it is Shanghai's objection handlers' task.
    let r = c
        .submit(
            2,
            "620000:obj",
            &Body::ObjectionFiled {
                case_no: "甘异〔2026〕3号".into(),
                target: ObjectionTarget::Entry(entry_id),
                grounds: "已足额支付".into(),
                filed_on: today,
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let oid = objection_id(
        &credfed_protocol::ids::DepartmentId::parse("620000:obj", "d").unwrap(),
        "甘异〔2026〕3号",
    );
    wait_for_kinds(&sh_obj, &oid.to_string(), &["resolve_objection"]).await;
    let r = c
        .submit(
            0,
            "310000:obj",
            &Body::ObjectionResolved {
                objection: oid,
                outcome: ObjectionOutcome::Upheld,
                note: "核实无误".into(),
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_for_kinds(&sh_obj, &oid.to_string(), &[]).await;

    // Shanghai repairs the entry: Guangdong must lift what it executed; Gansu, which
    // never answered, has nothing left to do.
    let r = c
        .submit(
            0,
            "310000:pub",
            &Body::ListEntryRepaired {
                entry: entry_id,
                basis: RepairBasis::CorrectedWithinPeriod,
                reason: "已足额支付工资".into(),
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = wait_for_kinds(&gd_impl, &aid, &["lift"]).await;
    assert_eq!(v["tasks"][0]["since"], json!(today.to_string()));
    // The action says its entry was repaired, and when.
    let r = gd_impl.get(&format!("/v1/actions/{aid}")).await.unwrap();
    let shown = r.json().unwrap();
    assert_eq!(shown["entry"]["state"], json!("repaired"), "{shown}");
    assert_eq!(shown["entry"]["repaired"]["on"], json!(today.to_string()));
    wait_for_kinds(&gs_impl, &aid, &[]).await;
    for m in &action.measures {
        let r = c
            .submit(
                1,
                "440000:impl",
                &Body::MeasureLifted {
                    action: aid_typed,
                    measure: m.clone(),
                    reference: "粤解〔2026〕1号".into(),
                    reason: "信用修复".into(),
                },
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    wait_for_kinds(&gd_impl, &aid, &[]).await;

    // Bad queries name the parameter and the rule.
    let r = gd_impl.get("/v1/inbox?kind=chase").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("kind") && r.body.contains("acknowledge"),
        "{}",
        r.body
    );
    let r = gd_impl.get("/v1/inbox?limit=0").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("limit"), "{}", r.body);
}

async fn list(client: &ApiClient, path: &str) -> Value {
    let r = client.get(path).await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json().unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Listings by region, name (Chinese substring, across regions), category, state and
/// decision dates, newest first, in pages joined by cursors; bad filters are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_find_records_by_region_name_state_and_dates() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    for i in 0..2 {
        c.register_departments(i).await;
    }
    let d = |s: &str| credfed_protocol::time::Date::parse(s).unwrap();
    let company = |name: &str, doc: &str, decided: &str, category| {
        let mut e = wage_arrears_entry(doc);
        e.subject = Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: name.into(),
            check_exemption: None,
        };
        e.category = Category::Black(category);
        e.basis.decided_on = d(decided);
        e.effective_from = d(decided);
        e
    };
    let published = [
        (
            0,
            "310000:pub",
            company(
                "上海某某食品有限公司",
                "沪市监处〔2026〕1号",
                "2026-03-01",
                BlackCategory::FoodAndDrug,
            ),
        ),
        (
            0,
            "310000:pub",
            company(
                "上海某某食品有限公司",
                "沪市监处〔2026〕2号",
                "2026-06-01",
                BlackCategory::FoodAndDrug,
            ),
        ),
        (
            0,
            "310000:pub",
            company(
                "某某建筑劳务有限公司",
                "沪人社罚〔2026〕3号",
                "2026-04-01",
                BlackCategory::MaliciousWageArrears,
            ),
        ),
        (
            1,
            "440000:pub",
            company(
                "广州 ABC 食品厂",
                "粤市监处〔2026〕4号",
                "2026-05-01",
                BlackCategory::FoodAndDrug,
            ),
        ),
    ];
    let mut entry_ids = Vec::new();
    for (i, author, e) in &published {
        let r = c
            .submit(*i, author, &Body::ListEntryPublished(e.clone()))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let region = if *i == 0 { SH } else { GD };
        entry_ids.push(
            entry_id(
                credfed_protocol::ids::RegionCode::new(region, "r").unwrap(),
                e,
            )
            .to_string(),
        );
    }
    let gd = department_client(&c.nodes[1], "440000:impl");
    // Everything has replicated to Guangdong once its listing of all regions holds four.
    let ok = wait_until(Duration::from_secs(30), || async {
        list(&gd, "/v1/entries").await["count"] == json!(4)
    })
    .await;
    assert!(
        ok,
        "entries never replicated: {}",
        list(&gd, "/v1/entries").await
    );
    // One region, newest decision first.
    let v = list(&gd, "/v1/entries?region=310000").await;
    assert_eq!(
        ids(&v),
        [
            entry_ids[1].as_str(),
            entry_ids[2].as_str(),
            entry_ids[0].as_str()
        ]
    );
    assert_eq!(v["items"][0]["name"], json!("上海某某食品有限公司"));
    assert_eq!(v["next_cursor"], Value::Null);
    // A name, in Chinese, across regions; Latin letters however typed.
    let by_name = |q: &str| format!("/v1/entries?name={}", percent(q));
    assert_eq!(list(&gd, &by_name("食品")).await["count"], json!(3));
    assert_eq!(
        ids(&list(&gd, &by_name("ａｂｃ食品")).await),
        [entry_ids[3].as_str()]
    );
    assert_eq!(list(&gd, &by_name("建筑劳务")).await["count"], json!(1));
    assert_eq!(list(&gd, &by_name("食品厂家")).await["count"], json!(0));
    // Category, state and dates.
    let v = list(
        &gd,
        "/v1/entries?category=malicious_wage_arrears&state=active",
    )
    .await;
    assert_eq!(ids(&v), [entry_ids[2].as_str()]);
    let v = list(
        &gd,
        "/v1/entries?region=310000&from=2026-03-15&to=2026-05-31",
    )
    .await;
    assert_eq!(ids(&v), [entry_ids[2].as_str()]);
    let v = list(
        &gd,
        &format!("/v1/entries?department=440000:pub&name={}", percent("食品")),
    )
    .await;
    assert_eq!(ids(&v), [entry_ids[3].as_str()]);
    // Pages of one, joined by cursors: every entry once, in the same order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/entries?limit=1&cursor={c}"),
            None => "/v1/entries?limit=1".to_string(),
        };
        let v = list(&gd, &path).await;
        seen.extend(ids(&v));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() <= 4, "{seen:?}");
    }
    let all = ids(&list(&gd, "/v1/entries").await);
    assert_eq!(seen, all);
    // Actions by target and state; evaluations by scheme.
    let action = JointAction {
        reference: "沪联惩〔2026〕31号".into(),
        kind: ActionKind::Punishment,
        entry: credfed_protocol::record::EntryId(
            credfed_protocol::crypto::Hash256::from_hex(&entry_ids[1]).unwrap(),
        ),
        targets: Targets::Regions(vec![
            credfed_protocol::ids::RegionCode::new(GD, "r").unwrap(),
        ]),
        measures: vec![MeasureCode("P-PROCUREMENT".into())],
        respond_by: d("2030-01-01"),
    };
    let r = c
        .submit(0, "310000:init", &Body::JointActionInitiated(action))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ok = wait_until(Duration::from_secs(30), || async {
        list(&gd, "/v1/actions?target=440000&state=open").await["count"] == json!(1)
    })
    .await;
    assert!(ok, "{}", list(&gd, "/v1/actions").await);
    let v = list(&gd, &format!("/v1/actions?name={}", percent("食品"))).await;
    assert_eq!(v["count"], json!(1), "{v}");
    assert_eq!(
        list(&gd, "/v1/actions?target=310000").await["count"],
        json!(0)
    );
    // Bad filters name the parameter and the rule.
    for (path, field, status) in [
        (by_name("食"), "name", 400),
        (by_name("食 "), "name", 422),
        ("/v1/entries?state=dormant".to_string(), "state", 400),
        ("/v1/entries?category=speeding".to_string(), "category", 400),
        (
            "/v1/entries?from=2026-05-01&to=2026-01-01".to_string(),
            "from",
            422,
        ),
        ("/v1/entries?from=2026-02-30".to_string(), "from", 422),
        ("/v1/entries?cursor=zz".to_string(), "cursor", 400),
        ("/v1/entries?limit=500".to_string(), "limit", 400),
        (
            "/v1/evaluations?category=food_and_drug".to_string(),
            "category",
            400,
        ),
    ] {
        let r = gd.get(&path).await.unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body.contains(field), "{path}: {}", r.body);
    }
}

/// A query value, percent-encoded.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Credit repair on application across four regions (articles 十八, 二十一, 二十三): Beijing
/// records the subject's application for Shanghai's entry; it is Shanghai's publishers'
/// task, not Guangdong's to decide; once Shanghai grants it, Guangdong and Gansu, which
/// executed a measure, must lift it. An application before the least period is refused
/// naming the field, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_application_is_decided_by_the_issuer_and_lifted_everywhere() {
    const BJ: u32 = 110000;
    let mut c = Cluster::new(&[SH, GD, GS, BJ]);
    c.start_all().await;
    for i in 0..4 {
        c.register_departments(i).await;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = Timestamp(now_ms).date_cst();
    let region = |code| credfed_protocol::ids::RegionCode::new(code, "r").unwrap();
    let dept = |d: &str| credfed_protocol::ids::DepartmentId::parse(d, "d").unwrap();
    let listed = |doc: &str, since: i32| {
        let mut e = wage_arrears_entry(doc);
        e.basis.decided_on = today.add_days(-since);
        e.effective_from = today.add_days(-since);
        e.expires_on = today.add_days(1_000 - since);
        e
    };
    // Listed 370 days ago (past the least period of a year), and ten days ago.
    let old = listed("沪人社罚〔2025〕3号", 370);
    let recent = listed("沪人社罚〔2026〕30号", 10);
    for e in [&old, &recent] {
        let r = c
            .submit(0, "310000:pub", &Body::ListEntryPublished(e.clone()))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let old_id = entry_id(region(SH), &old);
    let recent_id = entry_id(region(SH), &recent);
    let action = JointAction {
        reference: "沪联惩〔2026〕40号".into(),
        kind: ActionKind::Punishment,
        entry: old_id,
        targets: Targets::Regions(vec![region(GD), region(GS)]),
        measures: old.requested_measures.clone(),
        respond_by: today.add_days(14),
    };
    let r = c
        .submit(
            0,
            "310000:init",
            &Body::JointActionInitiated(action.clone()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let aid = action_id(&dept("310000:init"), &action.reference);
    let gd_impl = department_client(&c.nodes[1], "440000:impl");
    let gs_impl = department_client(&c.nodes[2], "620000:impl");
    for (i, code) in [(1, "440000"), (2, "620000")] {
        let imp = format!("{code}:impl");
        let client = if i == 1 { &gd_impl } else { &gs_impl };
        wait_for_kinds(client, &aid.to_string(), &["acknowledge"]).await;
        let r = c
            .submit(
                i,
                &imp,
                &Body::JointActionAcknowledged {
                    action: aid,
                    decision: AckDecision::Accepted,
                    implementing: vec![dept(&imp)],
                },
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        for m in &action.measures {
            let r = c
                .submit(
                    i,
                    &imp,
                    &Body::MeasureExecuted {
                        action: aid,
                        measure: m.clone(),
                        reference: "执〔2026〕1号".into(),
                        executed_on: today,
                    },
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
        }
        wait_for_kinds(client, &aid.to_string(), &[]).await;
    }

    // Beijing's node must hold both entries before it can record applications for them.
    let bj = &c.nodes[3].client;
    for id in [old_id, recent_id] {
        assert!(
            wait_until(Duration::from_secs(30), || async {
                bj.get(&format!("/v1/entries/{id}")).await.unwrap().status == 200
            })
            .await,
            "Beijing never held {id}"
        );
    }
    let apply = |entry, case_no: &str| Body::RepairApplied {
        entry,
        case_no: case_no.into(),
        basis: RepairBasis::CorrectedWithinPeriod,
        grounds: "已足额支付拖欠工资".into(),
        filed_on: today,
    };
    // Too early: refused, naming the field and the least period's source.
    let r = c
        .submit(3, "110000:obj", &apply(recent_id, "京信修〔2026〕1号"))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("filed_on") && r.body.contains("58号"),
        "{}",
        r.body
    );
    let held = bj.get(&format!("/v1/entries/{recent_id}")).await.unwrap();
    assert_eq!(held.json().unwrap()["entry"]["repairs"], json!({}));

    let r = c
        .submit(3, "110000:obj", &apply(old_id, "京信修〔2026〕2号"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let application = repair_application_id(&dept("110000:obj"), "京信修〔2026〕2号");
    // Shanghai's publishers decide it; Beijing's objection desk only recorded it.
    let sh_pub = department_client(&c.nodes[0], "310000:pub");
    let v = wait_for_kinds(&sh_pub, &old_id.to_string(), &["decide_repair"]).await;
    let task = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == json!("decide_repair"))
        .unwrap();
    assert_eq!(task["application"], json!(application.to_string()));
    assert_eq!(task["since"], json!(today.to_string()));
    let bj_obj = department_client(&c.nodes[3], "110000:obj");
    assert!(kinds_about(&inbox(&bj_obj, "").await, &old_id.to_string()).is_empty());

    let grant = Body::RepairDecided {
        entry: old_id,
        application,
        outcome: RepairOutcome::Repaired,
        reason: "已纠正失信行为，准予修复".into(),
    };
    // Wait until Guangdong holds the application, so that its refusal is about authority.
    let gd = &c.nodes[1].client;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let v = gd.get(&format!("/v1/entries/{old_id}")).await.unwrap();
            v.json().unwrap()["entry"]["repairs"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
        })
        .await
    );
    let r = c.submit(1, "440000:pub", &grant).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("谁认定、谁修复"), "{}", r.body);
    let r = c.submit(0, "310000:pub", &grant).await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_for_kinds(&sh_pub, &old_id.to_string(), &[]).await;
    // Every region that executed a measure must now lift it.
    wait_for_kinds(&gd_impl, &aid.to_string(), &["lift"]).await;
    wait_for_kinds(&gs_impl, &aid.to_string(), &["lift"]).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let v = bj.get(&format!("/v1/entries/{old_id}")).await.unwrap();
            v.json().unwrap()["state"] == json!("repaired")
        })
        .await,
        "Beijing sees the entry repaired"
    );
    // The report (article 二十三) counts the application at the issuer, decided by its
    // publishers, and the two regions' answers and executions.
    let sh_report = list(&sh_pub, "/v1/reports?period=quarter").await;
    let region_line = |v: &Value, r: &str| {
        v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["region"] == r && l["department"].is_null())
            .cloned()
            .unwrap_or_else(|| panic!("no line for {r}: {v}"))
    };
    let sh_line = region_line(&sh_report, "310000");
    assert_eq!(sh_line["repairs_received"], json!(1), "{sh_line}");
    assert_eq!(sh_line["repairs_decided"], json!(1), "{sh_line}");
    for r in ["440000", "620000"] {
        let l = region_line(&sh_report, r);
        assert_eq!(
            (l["actions_asked"].clone(), l["measures_executed"].clone()),
            (json!(1), json!(1)),
            "{l}"
        );
    }
    let r = sh_pub.get("/v1/reports?period=week").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("period"), "{}", r.body);
}

/// Article 二十 over the API: Gansu declines Shanghai's action; its node's check shows
/// the decline beside the answer (plain and proven), the answer itself unchanged, and
/// Shanghai's node, which declined nothing, shows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declining_regions_check_shows_its_decline() {
    let mut c = Cluster::new(&[SH, GS]);
    c.start_all().await;
    for i in 0..2 {
        c.register_departments(i).await;
    }
    let region = |code| credfed_protocol::ids::RegionCode::new(code, "r").unwrap();
    let dept = |d: &str| credfed_protocol::ids::DepartmentId::parse(d, "d").unwrap();
    let entry = wage_arrears_entry("沪人社罚〔2026〕55号");
    let r = c
        .submit(0, "310000:pub", &Body::ListEntryPublished(entry.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = entry_id(region(SH), &entry);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = Timestamp(now_ms).date_cst();
    let action = JointAction {
        reference: "沪联惩〔2026〕55号".into(),
        kind: ActionKind::Punishment,
        entry: id,
        targets: Targets::Regions(vec![region(GS)]),
        measures: entry.requested_measures.clone(),
        respond_by: today.add_days(7),
    };
    let r = c
        .submit(
            0,
            "310000:init",
            &Body::JointActionInitiated(action.clone()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let aid = action_id(&dept("310000:init"), &action.reference);
    let gs_impl = department_client(&c.nodes[1], "620000:impl");
    wait_for_kinds(&gs_impl, &aid.to_string(), &["acknowledge"]).await;
    let r = c
        .submit(
            1,
            "620000:impl",
            &Body::JointActionAcknowledged {
                action: aid,
                decision: AckDecision::Declined {
                    reason: "本省已另案处理".into(),
                },
                implementing: vec![],
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = "/v1/check?uscc=91350100M000100Y43&domain=procurement";
    let at_gansu = list(&gs_impl, path).await;
    let declined = at_gansu["declined_here"].as_array().unwrap();
    assert_eq!(declined.len(), 1, "{at_gansu}");
    assert_eq!(declined[0]["measure"], json!("P-PROCUREMENT"));
    assert_eq!(declined[0]["reason"], json!("本省已另案处理"));
    assert_eq!(declined[0]["declined_on"], json!(today.to_string()));
    // The answer is the federation's: the measure still applies in it.
    assert_eq!(
        at_gansu["recommended"][0]["code"],
        json!("P-PROCUREMENT"),
        "{at_gansu}"
    );
    // A proven answer stands under a federation checkpoint, reused for a few seconds:
    // wait for one that covers the entry.
    let proven_path = format!("{path}&proofs=true");
    assert!(
        wait_until(Duration::from_secs(60), || async {
            list(&gs_impl, &proven_path).await["answer"]["entries"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        })
        .await
    );
    let proven = list(&gs_impl, &proven_path).await;
    assert_eq!(
        proven["declined_here"], at_gansu["declined_here"],
        "{}",
        proven["answer"]
    );
    // Shanghai's node holds the same decline but did not make it.
    let sh = department_client(&c.nodes[0], "310000:impl");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let v = list(&sh, &format!("/v1/actions/{aid}")).await;
            v.to_string().contains("本省已另案处理")
        })
        .await
    );
    let at_shanghai = list(&sh, path).await;
    assert!(at_shanghai.get("declined_here").is_none(), "{at_shanghai}");
}

/// Article 四 across real nodes: Shanghai's licensing department records a written
/// commitment; it is Shanghai's task, overdue once its deadline passed, and Guangdong's
/// check of the subject shows it overdue; Shanghai records the breach, the task goes,
/// and Guangdong's check (plain and proven) shows the breach. A commitment without a
/// material, or a fulfilment after the deadline, is refused naming the field, and
/// nothing stored changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_commitment_shows_in_another_regions_check() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    for i in 0..2 {
        c.register_departments(i).await;
    }
    let dept = |d: &str| credfed_protocol::ids::DepartmentId::parse(d, "d").unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = Timestamp(now_ms).date_cst();
    let made = Commitment {
        subject: Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: "某某食品有限公司".into(),
            check_exemption: None,
        },
        acceptance_no: "沪许受〔2026〕88号".into(),
        matter: "食品经营许可证新办".into(),
        waived: vec!["场所平面图".into()],
        made_on: today.add_days(-20),
        due_on: today.add_days(-1),
    };
    let id = commitment_id(&dept("310000:pub"), &made.acceptance_no);
    let sh = department_client(&c.nodes[0], "310000:pub");
    // Bad input first: nothing is stored.
    let r = c
        .submit(
            0,
            "310000:pub",
            &Body::CommitmentMade(Commitment {
                waived: vec![],
                ..made.clone()
            }),
        )
        .await;
    assert!(
        r.status >= 400 && r.body.contains("commitment.waived"),
        "{} {}",
        r.status,
        r.body
    );
    assert_eq!(
        sh.get(&format!("/v1/commitments/{id}"))
            .await
            .unwrap()
            .status,
        404
    );
    let r = c
        .submit(0, "310000:pub", &Body::CommitmentMade(made.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = wait_for_kinds(&sh, &id.to_string(), &["settle_commitment"]).await;
    let task = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == json!("settle_commitment"))
        .unwrap()
        .clone();
    assert_eq!(task["overdue"], json!(true), "{task}");
    assert_eq!(task["due"], json!(made.due_on.to_string()));
    let gd = department_client(&c.nodes[1], "440000:pub");
    assert!(kinds_about(&inbox(&gd, "").await, &id.to_string()).is_empty());
    let path = "/v1/check?uscc=91350100M000100Y43&domain=licensing";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            list(&gd, path).await["commitments"][0]["state"] == json!("overdue")
        })
        .await,
        "{}",
        list(&gd, path).await
    );
    // Supplied after the deadline is no fulfilment.
    let settle = |outcome| Body::CommitmentSettled {
        commitment: id,
        outcome,
        settled_on: today,
        note: "逾期未补正".into(),
    };
    let r = c
        .submit(0, "310000:pub", &settle(CommitmentOutcome::Fulfilled))
        .await;
    assert!(r.status >= 400 && r.body.contains("outcome"), "{}", r.body);
    let held = list(&sh, &format!("/v1/commitments/{id}")).await;
    assert_eq!(held["state"], json!("overdue"), "{held}");
    let r = c
        .submit(0, "310000:pub", &settle(CommitmentOutcome::Breached))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_for_kinds(&sh, &id.to_string(), &[]).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            list(&gd, path).await["commitments"][0]["state"] == json!("breached")
        })
        .await
    );
    let answer = list(&gd, path).await;
    assert_eq!(
        answer["commitments"][0]["region"],
        json!("310000"),
        "{answer}"
    );
    assert_ne!(answer["verdict"], json!("clear"));
    // The proven answer carries it too, under a federation checkpoint that covers it.
    let proven_path = format!("{path}&proofs=true");
    assert!(
        wait_until(Duration::from_secs(60), || async {
            list(&gd, &proven_path).await["answer"]["commitments"][0]["state"] == json!("breached")
        })
        .await,
        "{}",
        list(&gd, &proven_path).await
    );
}

/// Article 十七 over the API: Shanghai discloses a penalty decided twenty days ago (late)
/// and one decided today (in time); the disclosure reads back with its deadline and
/// lateness at another region's node, and Shanghai's report counts one late of two
/// against the disclosing department. A penalty public longer than the national period
/// is refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosures_are_counted_late_against_their_department() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    for i in 0..2 {
        c.register_departments(i).await;
    }
    let dept = |d: &str| credfed_protocol::ids::DepartmentId::parse(d, "d").unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = Timestamp(now_ms).date_cst();
    let penalty = |no: &str, decided_on: credfed_protocol::time::Date, days: i32| Disclosure {
        kind: DisclosureKind::Penalty,
        subject: Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: "某某食品有限公司".into(),
            check_exemption: None,
        },
        decision_no: no.into(),
        authority: "上海市市场监督管理局".into(),
        decided_on,
        summary: "罚款五万元".into(),
        public_until: decided_on.add_days(days),
    };
    let r = c
        .submit(
            0,
            "310000:pub",
            &Body::DecisionDisclosed(penalty("沪罚3", today, 2_000)),
        )
        .await;
    assert!(
        r.status >= 400 && r.body.contains("disclosure.public_until"),
        "{} {}",
        r.status,
        r.body
    );
    for (no, decided_on) in [("沪罚1", today.add_days(-20)), ("沪罚2", today)] {
        let r = c
            .submit(
                0,
                "310000:pub",
                &Body::DecisionDisclosed(penalty(no, decided_on, 365)),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let late_id = disclosure_id(&dept("310000:pub"), DisclosureKind::Penalty, "沪罚1");
    let gd = department_client(&c.nodes[1], "440000:pub");
    let path = format!("/v1/disclosures/{late_id}");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            gd.get(&path).await.unwrap().status == 200
        })
        .await
    );
    let v = list(&gd, &path).await;
    assert_eq!(v["late"], json!(true), "{v}");
    assert_eq!(v["public"], json!(true), "{v}");
    let sh = department_client(&c.nodes[0], "310000:pub");
    // Checks count for reports by domain (this node's own figures); a refused one not.
    for domain in ["licensing", "licensing", "procurement"] {
        list(
            &sh,
            &format!("/v1/check?uscc=91350100M000100Y43&domain={domain}"),
        )
        .await;
    }
    let refused = sh
        .get("/v1/check?uscc=91350100M000100Y43&domain=astrology")
        .await
        .unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);
    let report = list(&sh, "/v1/reports?period=quarter").await;
    let line = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["department"] == json!("310000:pub"))
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    assert_eq!(line["decisions_disclosed"], json!(2), "{line}");
    assert_eq!(line["decisions_disclosed_late"], json!(1), "{line}");
    assert_eq!(line["checks"], json!(3), "{line}");
    assert_eq!(
        line["checks_by_domain"],
        json!({"licensing": 2, "procurement": 1}),
        "{line}"
    );
    let region_line = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["department"].is_null() && l["region"] == json!("310000"))
        .unwrap()
        .clone();
    assert_eq!(region_line["checks"], json!(3), "{region_line}");
}

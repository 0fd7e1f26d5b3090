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
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = inbox(client, "").await;
        if kinds_about(&v, about) == kinds {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "inbox never held {kinds:?} about {about}: {v}"
        );
        // The poll interval of a wait with a deadline, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        .submit(0, "310000:init", &Body::JointActionInitiated(action.clone()))
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
    assert!(r.body.contains("kind") && r.body.contains("acknowledge"), "{}", r.body);
    let r = gd_impl.get("/v1/inbox?limit=0").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("limit"), "{}", r.body);
}

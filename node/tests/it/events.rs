//! The event stream (`GET /v1/events`) across real nodes: a department's system learns of
//! an action targeting its region as it arrives, never of records that do not concern
//! it, and resumes after a reconnection from the id of the last event it received,
//! without a gap or a repeat.

use std::time::Duration;

use credfed_client::{ApiClient, StreamEvent};
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;
use serde_json::Value;

use crate::harness::*;

const SH: u32 = 310000;
const GD: u32 = 440000;

/// Follows `client`'s stream from `from` until `until` holds for the events gathered,
/// within a deadline; returns them.
async fn follow_until(
    client: &ApiClient,
    from: Option<&str>,
    until: impl Fn(&[StreamEvent]) -> bool,
) -> Vec<StreamEvent> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        client.follow_events(from, |e| {
            got.push(e);
            !until(&got)
        }),
    )
    .await;
    assert!(r.is_ok(), "the stream never held what was awaited: {got:?}");
    r.unwrap().unwrap();
    got
}

fn data(e: &StreamEvent) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_is_told_what_concerns_it_and_resumes_without_gap_or_repeat() {
    let mut c = Cluster::new(&[SH, GD]);
    c.start_all().await;
    for i in 0..2 {
        c.register_departments(i).await;
    }
    let region = |code| credfed_protocol::ids::RegionCode::new(code, "r").unwrap();
    let dept = |d: &str| credfed_protocol::ids::DepartmentId::parse(d, "d").unwrap();
    let today = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
    .date_cst();
    // A Shanghai entry with no action: nothing for Guangdong.
    let quiet = wage_arrears_entry("沪人社罚〔2026〕60号");
    let r = c
        .submit(0, "310000:pub", &Body::ListEntryPublished(quiet.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entry = wage_arrears_entry("沪人社罚〔2026〕61号");
    let r = c
        .submit(0, "310000:pub", &Body::ListEntryPublished(entry.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let action = JointAction {
        reference: "沪联惩〔2026〕61号".into(),
        kind: ActionKind::Punishment,
        entry: entry_id(region(SH), &entry),
        targets: Targets::Regions(vec![region(GD)]),
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

    let gd = department_client(&c.nodes[1], "440000:impl");
    let first = follow_until(&gd, None, |got| {
        got.iter().any(|e| e.event == "joint_action_initiated")
    })
    .await;
    // Guangdong's own records (its departments' registrations) and the action; none of
    // Shanghai's publications or registrations.
    for e in &first {
        let d = data(e);
        assert!(
            d["region"] == "440000" || e.event == "joint_action_initiated",
            "{e:?}"
        );
    }
    let initiated = first.last().unwrap();
    assert_eq!(data(initiated)["region"], "310000");
    assert!(initiated.id.contains("310000:"), "{}", initiated.id);

    // Guangdong answers while no stream is open; Shanghai publishes more that does not
    // concern it. Resuming from the last id gives the answer, and nothing twice.
    let aid = action_id(&dept("310000:init"), &action.reference);
    let r = c
        .submit(
            1,
            "440000:impl",
            &Body::JointActionAcknowledged {
                action: aid,
                decision: AckDecision::Accepted,
                implementing: vec![dept("440000:impl")],
            },
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let more = wage_arrears_entry("沪人社罚〔2026〕62号");
    let r = c
        .submit(0, "310000:pub", &Body::ListEntryPublished(more))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let resumed = follow_until(&gd, Some(&initiated.id), |got| {
        got.iter().any(|e| e.event == "joint_action_acknowledged")
    })
    .await;
    // Nothing delivered before is delivered again (the first stream stopped in
    // Shanghai's log, so Guangdong's own earlier records come now), and nothing of
    // Shanghai's that does not concern Guangdong comes at all.
    let position = |e: &StreamEvent| {
        let d = data(e);
        (
            d["region"].as_str().unwrap().to_owned(),
            d["seq"].as_u64().unwrap(),
        )
    };
    for e in &resumed {
        assert!(
            !first.iter().any(|f| position(f) == position(e)),
            "again: {e:?}"
        );
        assert_eq!(data(e)["region"], "440000", "{e:?}");
    }
    assert_eq!(
        resumed.last().map(|e| e.event.as_str()),
        Some("joint_action_acknowledged")
    );

    // Shanghai, the initiator, is told of Guangdong's answer too.
    let sh = department_client(&c.nodes[0], "310000:init");
    let at_sh = follow_until(&sh, None, |got| {
        got.iter().any(|e| e.event == "joint_action_acknowledged")
    })
    .await;
    assert!(at_sh.iter().all(|e| {
        let d = data(e);
        d["region"] == "310000" || e.event == "joint_action_acknowledged"
    }));

    // A cursor that is not one is refused, naming the header and what to send.
    let r = gd.get("/v1/events?from=310000").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("from") && r.body.contains("REGION:SEQ"),
        "{}",
        r.body
    );
    let e = gd
        .follow_events(Some("bogus"), |_| true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Last-Event-ID"), "{e}");
}

/// The node says how far its working-day calendar reaches, warns operators before it
/// ends (status) and exports the days left (metrics), so that estimated deadlines are
/// never a surprise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendars_end_is_in_status_and_metrics() {
    let mut c = Cluster::new(&[SH]);
    c.start_all().await;
    let calendar = credfed_protocol::calendar::WorkingCalendar::embedded().unwrap();
    let last = calendar.last_covered_day().unwrap();
    let status = c.nodes[0].client.get("/v1/status").await.unwrap();
    let v: Value = status.json().unwrap();
    assert_eq!(v["calendar_covers_until"], last.to_string());
    let today = Timestamp(v["now_ms"].as_i64().unwrap()).date_cst();
    let expected = calendar.coverage_warning(today, 60);
    assert_eq!(v["calendar_warning"].as_str(), expected.as_deref(), "{v}");
    let metrics = c.nodes[0].client.get("/metrics").await.unwrap().body;
    let left: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("credfed_calendar_days_left "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        left,
        (last.days_since_epoch() - today.days_since_epoch()) as i64
    );
}

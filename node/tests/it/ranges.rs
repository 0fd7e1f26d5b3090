//! Pulled ranges through the writer, whose signatures other threads verify ahead of
//! admission: the outcome is exactly what one-by-one admission gives — everything up
//! to the first invalid envelope applied, that one and everything after it not, the
//! range reported as a possible fork — whoever signed what and wherever in the range.
//! Gossip batches go through the same path and are judged as one message.

use std::sync::Arc;

use credfed_node::engine::{Clock, Core, EngineConfig, EngineEvent, IngestJob, PeerVerdict};
use credfed_node::metrics::Metrics;
use credfed_node::store::{Engine, Store, StoreOptions};
use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::crypto::Keypair;
use credfed_protocol::envelope::OPERATOR_UNIT;
use credfed_protocol::ids::{DepartmentId, RegionCode, Role};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;

use crate::chain::Chain;
use crate::harness::wage_arrears_entry;

const FED: &str = "cn-credit-ranges";

fn region(code: u32) -> RegionCode {
    RegionCode::new(code, "region").unwrap()
}

fn key(n: u8) -> Keypair {
    Keypair::from_secret([n; 32])
}

/// Region 310000's log of `n` envelopes: the operator registers a publisher, which then
/// publishes; `tamper(index, envelope)` may change any envelope as it is made.
fn log(n: usize, tamper: impl Fn(usize, &mut Vec<u8>)) -> Vec<Vec<u8>> {
    let node_key = key(31);
    let publisher = key(32);
    let sh = region(310000);
    let dept = DepartmentId::new(sh, "pub", "department").unwrap();
    let operator = DepartmentId {
        region: sh,
        unit: OPERATOR_UNIT.into(),
    };
    let now = Timestamp(1_780_000_000_000);
    let mut chain = Chain::new(FED, sh, &node_key, now);
    (0..n)
        .map(|i| {
            let mut env = if i == 0 {
                chain.append(
                    operator.clone(),
                    &key(34),
                    &Body::DepartmentRegistered {
                        department: dept.clone(),
                        name: "认定部门".into(),
                        roles: vec![Role::Publisher],
                        key: publisher.public(),
                    },
                )
            } else {
                let entry = wage_arrears_entry(&format!("沪人社〔2026〕{i}号"));
                chain.append(dept.clone(), &publisher, &Body::ListEntryPublished(entry))
            };
            tamper(i, &mut env);
            env
        })
        .collect()
}

/// A fresh node of 110000 on redb in `dir`.
fn start_node(dir: &std::path::Path) -> (Arc<Core>, credfed_node::engine::EngineLinks) {
    let store = Store::open_with(
        dir,
        &StoreOptions {
            engine: Engine::Redb,
            cache_bytes: 8 << 20,
            compact: false,
        },
    )
    .unwrap();
    let manifest = Manifest::for_build(
        FED,
        1,
        Timestamp(0),
        Timestamp(i64::MAX / 2),
        key(1).public(),
        vec![
            Member::for_province(region(110000), key(11).public(), key(12).public(), vec![]),
            Member::for_province(region(310000), key(31).public(), key(34).public(), vec![]),
        ],
    );
    Core::start(
        Box::new(store),
        EngineConfig {
            region: region(110000),
            manifest,
            catalogue: Catalogue::embedded().unwrap(),
            calendar: WorkingCalendar::embedded().unwrap(),
            node_key: key(11),
            clock: Clock::new(0),
            group_commit_max: 256,
            signed_manifest: None,
        },
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

fn shanghai_head(core: &Core) -> u64 {
    core.heads()
        .unwrap()
        .get(&region(310000))
        .map_or(0, |h| h.seq)
}

/// The next event `pick` takes, passing over the others (heads reports).
async fn next_event<T>(
    links: &mut credfed_node::engine::EngineLinks,
    pick: impl Fn(EngineEvent) -> Option<T>,
) -> T {
    loop {
        if let Some(t) = pick(links.events.recv().await.unwrap()) {
            return t;
        }
    }
}

/// Admits `envelopes` as one pulled range into a fresh node of 110000 and returns
/// whether the range was reported forked and the head it reached.
async fn pull(envelopes: Vec<Vec<u8>>) -> (bool, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (core, mut links) = start_node(dir.path());
    links
        .ingest
        .send(IngestJob::Range {
            peer: libp2p::PeerId::random(),
            region: region(310000),
            from: Some(1),
            envelopes,
        })
        .await
        .unwrap();
    let forked = next_event(&mut links, |e| match e {
        EngineEvent::RangeDone { forked, .. } => Some(forked),
        _ => None,
    })
    .await;
    let head = shanghai_head(&core);
    core.shutdown().unwrap();
    (forked, head)
}

/// Delivers gossip messages one after another to a fresh node of 110000 and returns
/// the verdict on each and the head reached.
async fn gossip(messages: Vec<Vec<u8>>) -> (Vec<PeerVerdict>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (core, mut links) = start_node(dir.path());
    let mut verdicts = Vec::new();
    for bytes in messages {
        links
            .ingest
            .send(IngestJob::Gossip {
                bytes,
                source: libp2p::PeerId::random(),
                message_id: libp2p::gossipsub::MessageId::from(vec![1]),
            })
            .await
            .unwrap();
        verdicts.push(
            next_event(&mut links, |e| match e {
                EngineEvent::Gossip { verdict, .. } => Some(verdict),
                _ => None,
            })
            .await,
        );
    }
    let head = shanghai_head(&core);
    core.shutdown().unwrap();
    (verdicts, head)
}

fn batch(envelopes: &[Vec<u8>]) -> Vec<u8> {
    credfed_protocol::gossip::encode_batch(envelopes).unwrap()
}

/// A gossip batch is admitted as a range is: all of a good one (accepted, so gossipsub
/// forwards it), nothing new from the same again (ignored, no one blamed), and a batch
/// that carries an invalid envelope rejected (its forwarder penalised) after applying
/// what came before it; whatever does not decode as a batch is rejected and changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_batches_are_admitted_in_order_and_judged_whole() {
    let good = log(400, |_, _| {});
    let (verdicts, head) = gossip(vec![
        batch(&good[..200]),
        batch(&good[..200]),
        batch(&good[200..]),
    ])
    .await;
    assert_eq!(
        verdicts,
        vec![
            PeerVerdict::Accept,
            PeerVerdict::Ignore,
            PeerVerdict::Accept
        ]
    );
    assert_eq!(head, 400);

    let bad = log(300, |i, env| {
        if i == 250 {
            flip_last_byte(env)
        }
    });
    let (verdicts, head) = gossip(vec![batch(&bad[..200]), batch(&bad[200..])]).await;
    assert_eq!(verdicts, vec![PeerVerdict::Accept, PeerVerdict::Reject]);
    assert_eq!(head, 250);

    // A bare envelope (the old topic's message) and bytes cut short are not batches.
    let mut cut = batch(&good[..3]);
    cut.truncate(cut.len() - 1);
    let (verdicts, head) = gossip(vec![good[0].clone(), cut]).await;
    assert_eq!(verdicts, vec![PeerVerdict::Reject, PeerVerdict::Reject]);
    assert_eq!(head, 0);
}

fn flip_last_byte(env: &mut [u8]) {
    let n = env.len();
    env[n - 1] ^= 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_range_verified_ahead_is_applied_whole() {
    // 700 envelopes: eleven chunks over the verifying threads, the first of which names
    // an author only registered inside the range.
    assert_eq!(pull(log(700, |_, _| {})).await, (false, 700));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_stops_at_a_flipped_node_signature() {
    // Index 450 is seq 451: 450 envelopes before it are applied.
    let envelopes = log(700, |i, env| {
        if i == 450 {
            flip_last_byte(env)
        }
    });
    assert_eq!(pull(envelopes).await, (true, 450));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_stops_at_an_author_signature_by_another_key() {
    // The body at index 200 is re-signed by a key the publisher never registered and
    // re-sealed by the (honest) node: only the author signature is wrong.
    let forger = key(66);
    let mut envelopes = log(700, |_, _| {});
    let env: credfed_protocol::envelope::Envelope =
        credfed_protocol::codec::decode(&envelopes[200], 1 << 16, "envelope").unwrap();
    let forged = forger.sign(credfed_protocol::crypto::Domain::Body, FED, &env.body);
    let at = credfed_protocol::envelope::AppendPosition {
        region: env.region,
        seq: env.seq,
        prev_hash: env.prev_hash,
        timestamp: env.timestamp,
    };
    envelopes[200] =
        credfed_protocol::envelope::seal(FED, &key(31), &at, env.author, env.body, forged).unwrap();
    assert_eq!(pull(envelopes).await, (true, 200));
}

/// Start-up walks the regions' chains on several threads: a clean store counts every
/// envelope of every region, and when two chains are broken the error names the first
/// region in code order (as a walk in order would), whichever thread found what first.
#[test]
fn start_up_chain_walk_counts_every_region_and_names_the_first_broken_one() {
    use credfed_protocol::envelope::envelope_hash;
    use credfed_protocol::ledger::{Head, Update};
    use credfed_protocol::state::RecordPos;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let codes = [110000u32, 310000, 440000, 620000, 650000];
    let now = Timestamp(1_780_000_000_000);
    let mut third = Vec::new();
    for (r, code) in codes.iter().enumerate() {
        let node_key = key(40 + r as u8);
        let mut chain = Chain::new(FED, region(*code), &node_key, now);
        let operator = DepartmentId {
            region: region(*code),
            unit: OPERATOR_UNIT.into(),
        };
        for seq in 1..=7u64 {
            let bytes = chain.append(
                operator.clone(),
                &key(60 + r as u8),
                &Body::DepartmentRegistered {
                    department: DepartmentId::new(region(*code), &format!("d{seq}"), "d").unwrap(),
                    name: "认定部门".into(),
                    roles: vec![Role::Publisher],
                    key: key(80).public(),
                },
            );
            if seq == 3 {
                third.push(bytes.clone());
            }
            store
                .apply(&[Update::Append {
                    pos: RecordPos {
                        region: region(*code),
                        seq,
                    },
                    head: Head {
                        seq,
                        hash: envelope_hash(FED, &bytes),
                        timestamp: now,
                    },
                    bytes,
                }])
                .unwrap();
        }
    }
    use credfed_node::store::Backend;
    let report = store.verify_chains(FED, &mut |_, _| {}).unwrap();
    assert_eq!((report.regions, report.envelopes), (5, 35));

    // 440000's third envelope replaced by 620000's, then 310000's by 650000's.
    store
        .corrupt_envelope_for_drills(
            RecordPos {
                region: region(440000),
                seq: 3,
            },
            &third[3],
        )
        .unwrap();
    let e = store
        .verify_chains(FED, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("440000"), "{e}");
    store
        .corrupt_envelope_for_drills(
            RecordPos {
                region: region(310000),
                seq: 3,
            },
            &third[4],
        )
        .unwrap();
    for _ in 0..20 {
        let e = store
            .verify_chains(FED, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("310000#3") && e.contains("chain broken"), "{e}");
    }
}

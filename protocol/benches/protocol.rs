//! Protocol benchmarks. Figures that matter are ratios against a limit measured in the
//! same run (machines here are shared and noisy), printed at the end:
//!
//! * envelope admission ÷ two raw `verify_strict` (goal ≤ 1.1)
//! * RFC 9162 inclusion-proof verification in a tree of 10^7 leaves ÷ raw `verify_strict`,
//!   and proof sizes at 10^3, 10^6 and 10^7 leaves
//! * person keys (docs/privacy.md): a member's evaluation of one element with its proof,
//!   and per element in a batch of 512, ÷ raw `verify_strict`; the asking node's work per
//!   element with t = 16
//!
//! Run: `cargo bench -p credfed-protocol --bench protocol`

mod common;

use std::hint::black_box;

use common::mean_ns;

use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::codec;
use credfed_protocol::crypto::{Domain, Keypair};
use credfed_protocol::envelope::{
    AppendPosition, Envelope, GENESIS_PREV_HASH, OPERATOR_UNIT, decode_envelope, seal, sign_body,
};
use credfed_protocol::ids::{DepartmentId, RegionCode, Role};
use credfed_protocol::ledger::{Admission, Ledger, Rules, admit};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::time::{Date, Timestamp};
use criterion::{Criterion, Throughput};

const FED: &str = "cn-credit-bench";

struct Setup {
    manifest: Manifest,
    catalogue: Catalogue,
    ledger: Ledger,
    envelope: Vec<u8>,
}

fn setup() -> Setup {
    let node = Keypair::from_secret([2; 32]);
    let operator = Keypair::from_secret([4; 32]);
    let dept_key = Keypair::from_secret([3; 32]);
    let sh = RegionCode::new(310000, "r").unwrap();
    let manifest = Manifest::for_build(
        FED,
        1,
        Timestamp(0),
        Timestamp(i64::MAX),
        Keypair::from_secret([1; 32]).public(),
        vec![Member::for_province(
            sh,
            node.public(),
            operator.public(),
            vec![],
        )],
    );
    let catalogue = Catalogue::embedded().unwrap();
    let mut ledger = Ledger::new();
    let dept = DepartmentId::new(sh, "scjgj", "d").unwrap();
    let operator_author = DepartmentId::new(sh, OPERATOR_UNIT, "d").unwrap();
    let rules = Rules {
        manifest: &manifest,
        catalogue: &catalogue,
    };
    let append = |ledger: &mut Ledger, author: DepartmentId, signer: &Keypair, body: &Body| {
        let head = ledger.head(sh);
        let at = AppendPosition {
            region: sh,
            seq: head.map_or(1, |h| h.seq + 1),
            prev_hash: head.map_or(GENESIS_PREV_HASH, |h| h.hash),
            timestamp: Timestamp(1_793_000_000_000),
        };
        let (b, s) = sign_body(FED, signer, body);
        seal(FED, &node, &at, author, b, s).unwrap()
    };
    let reg = Body::DepartmentRegistered {
        department: dept.clone(),
        name: "市场监管局".into(),
        roles: vec![Role::Publisher],
        key: dept_key.public(),
    };
    let env = append(&mut ledger, operator_author, &operator, &reg);
    assert!(matches!(
        ledger.ingest(rules, &env).unwrap(),
        Admission::Accept(_)
    ));
    let d = |s: &str| Date::parse(s).unwrap();
    let entry = ListEntry {
        category: Category::Black(BlackCategory::FoodAndDrug),
        subject: Subject::Organisation {
            uscc: "91350100M000100Y43".into(),
            name: "某某食品有限公司".into(),
            check_exemption: None,
        },
        related_persons: vec![],
        basis: Basis {
            document_no: "沪市监处〔2026〕12号".into(),
            authority: "上海市市场监督管理局".into(),
            decided_on: d("2026-10-28"),
            legal_basis: "《食品安全法》第一百三十五条".into(),
        },
        effective_from: d("2026-11-01"),
        expires_on: d("2029-11-01"),
        requested_measures: vec![
            MeasureCode("P-FISCAL-FUNDING".into()),
            MeasureCode("P-PROCUREMENT".into()),
        ],
        findings: vec![],
        summary: "生产经营致病性微生物超标食品".into(),
    };
    let envelope = append(
        &mut ledger,
        dept,
        &dept_key,
        &Body::ListEntryPublished(entry),
    );
    Setup {
        manifest,
        catalogue,
        ledger,
        envelope,
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let rules = Rules {
        manifest: &s.manifest,
        catalogue: &s.catalogue,
    };
    let decoded: Envelope = codec::decode(&s.envelope, usize::MAX, "envelope").unwrap();

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(s.envelope.len() as u64));
    g.bench_function("encode_envelope", |b| {
        b.iter(|| codec::encode(black_box(&decoded)).unwrap())
    });
    g.bench_function("decode_envelope", |b| {
        b.iter(|| decode_envelope(FED, black_box(&s.envelope)).unwrap())
    });
    g.finish();

    let key = Keypair::from_secret([9; 32]);
    let msg = vec![7u8; 200];
    let sig = key.sign(Domain::EnvelopeHeader, FED, &msg);
    let mut g = c.benchmark_group("verify");
    g.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            key.public()
                .verify(Domain::EnvelopeHeader, FED, black_box(&msg), &sig, "s")
                .unwrap()
        })
    });
    g.bench_function("admit_envelope", |b| {
        b.iter(|| {
            assert!(matches!(
                admit(rules, &s.ledger, black_box(&s.envelope)),
                Ok(Admission::Accept(_))
            ))
        })
    });
    g.finish();

    // Proofs in a tree of 10^7 leaves: nodes come from a stand-in store (every complete
    // subtree hashes to a constant), which is all proof generation and verification
    // need to be timed.
    struct AnyNodes;
    impl credfed_protocol::merkle::TreeNodes for AnyNodes {
        type Error = ();
        fn node(&self, level: u8, index: u64) -> Result<credfed_protocol::crypto::Hash256, ()> {
            Ok(credfed_protocol::crypto::sha256(&[
                &[level],
                &index.to_be_bytes(),
            ]))
        }
    }
    let big = 10_000_000u64;
    let proof = credfed_protocol::merkle::inclusion_proof(&AnyNodes, big / 3, big).unwrap();
    let root = credfed_protocol::merkle::root_at(&AnyNodes, big).unwrap();
    let leaf = credfed_protocol::merkle::TreeNodes::node(&AnyNodes, 0, big / 3).unwrap();
    let mut g = c.benchmark_group("merkle");
    g.bench_function("verify_inclusion_1e7", |b| {
        b.iter(|| {
            credfed_protocol::merkle::verify_inclusion(
                big / 3,
                big,
                black_box(&leaf),
                black_box(&proof),
                &root,
            )
        })
    });
    g.finish();

    // Person keys (docs/privacy.md): a member's work per evaluation request, the asking
    // node's verification of one member's answer, and combining t = 16 answers.
    use credfed_protocol::oprf;
    let share = oprf::ShareKey::from_bytes(3, [7; 32]).unwrap();
    let public = share.public();
    let one = vec![oprf::blind(b"11010519491231002X", &[1; 64]).unwrap().1];
    let batch: Vec<oprf::Element> = (0..512u32)
        .map(|i| oprf::blind(&i.to_le_bytes(), &[2; 64]).unwrap().1)
        .collect();
    let (ev_one, proof_one) = oprf::evaluate_share(&share, &one, &[3; 64]).unwrap();
    let (ev_batch, proof_batch) = oprf::evaluate_share(&share, &batch, &[3; 64]).unwrap();
    let mut g = c.benchmark_group("person_key");
    g.sample_size(20);
    g.bench_function("evaluate_1", |b| {
        b.iter(|| oprf::evaluate_share(&share, black_box(&one), &[3; 64]).unwrap())
    });
    g.bench_function("evaluate_512", |b| {
        b.iter(|| oprf::evaluate_share(&share, black_box(&batch), &[3; 64]).unwrap())
    });
    g.bench_function("verify_1", |b| {
        b.iter(|| {
            oprf::verify_share_evaluation(3, &public, black_box(&one), &ev_one, &proof_one).unwrap()
        })
    });
    g.bench_function("verify_512", |b| {
        b.iter(|| {
            oprf::verify_share_evaluation(3, &public, black_box(&batch), &ev_batch, &proof_batch)
                .unwrap()
        })
    });
    let batch_points: Vec<oprf::RistrettoPoint> = batch
        .iter()
        .map(|e| oprf::decode_element(e, "e").unwrap())
        .collect();
    g.bench_function("own_unproven_512", |b| {
        b.iter(|| share.evaluate_unproven(black_box(&batch_points)))
    });
    g.bench_function("verify_decoded_512", |b| {
        b.iter(|| {
            oprf::verify_share_evaluation_decoded(
                3,
                &public,
                &batch,
                black_box(&batch_points),
                &ev_batch,
                &proof_batch,
            )
            .unwrap()
        })
    });
    g.finish();
}

/// Proof sizes at 10^3, 10^6 and 10^7 leaves: the longest inclusion proof (over leaves
/// at the start, the middle and the end) and the longest consistency proof (from sizes
/// just past a power of two, the worst case).
fn proof_sizes() {
    struct AnyNodes;
    impl credfed_protocol::merkle::TreeNodes for AnyNodes {
        type Error = ();
        fn node(&self, _: u8, _: u64) -> Result<credfed_protocol::crypto::Hash256, ()> {
            Ok(credfed_protocol::crypto::Hash256([0; 32]))
        }
    }
    for n in [1_000u64, 1_000_000, 10_000_000] {
        let inclusion = [0, n / 2, n - 1]
            .iter()
            .map(|&i| {
                credfed_protocol::merkle::inclusion_proof(&AnyNodes, i, n)
                    .unwrap()
                    .len()
            })
            .max()
            .unwrap_or(0);
        let consistency = (0..40)
            .filter_map(|k| {
                let m = (1u64 << k) + 1;
                (m < n).then(|| {
                    credfed_protocol::merkle::consistency_proof(&AnyNodes, m, n)
                        .unwrap()
                        .len()
                })
            })
            .max()
            .unwrap_or(0);
        println!(
            "PROOF n = {n}: inclusion {} hashes = {} bytes; consistency {} hashes = {} bytes",
            inclusion,
            inclusion * 32,
            consistency,
            consistency * 32
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    // Ratios against limits measured in this same run.
    if let (Some(raw), Some(admit)) = (
        mean_ns("verify", "raw_verify_strict"),
        mean_ns("verify", "admit_envelope"),
    ) {
        println!(
            "RATIO admit_envelope / (2 x raw verify_strict) = {:.3}  (goal <= 1.1; raw verify_strict {:.1} us)",
            admit / (2.0 * raw),
            raw / 1000.0
        );
    }
    proof_sizes();
    if let (Some(raw), Some(v)) = (
        mean_ns("verify", "raw_verify_strict"),
        mean_ns("merkle", "verify_inclusion_1e7"),
    ) {
        println!(
            "RATIO verify_inclusion (10^7 leaves) / raw verify_strict = {:.3}  ({:.1} us)",
            v / raw,
            v / 1000.0
        );
    }
    if let (Some(raw), Some(one), Some(batch), Some(v1), Some(v512), Some(own)) = (
        mean_ns("verify", "raw_verify_strict"),
        mean_ns("person_key", "evaluate_1"),
        mean_ns("person_key", "evaluate_512"),
        mean_ns("person_key", "verify_1"),
        mean_ns("person_key", "verify_decoded_512"),
        mean_ns("person_key", "own_unproven_512"),
    ) {
        println!(
            "RATIO person-key evaluation at a member (1 element + proof) / raw verify_strict = {:.2}  (goal <= 3; {:.1} us)",
            one / raw,
            one / 1000.0
        );
        println!(
            "RATIO person-key evaluation per element in a batch of 512 / raw verify_strict = {:.2}  ({:.1} us per element)",
            batch / 512.0 / raw,
            batch / 512.0 / 1000.0
        );
        println!(
            "RATIO asking node per element, t = 16 (own share + 15 verifications of a 512 batch; the scaled answers are summed) / raw verify_strict = {:.2}  (a single element: one verification {:.1} us)",
            (15.0 * v512 / 512.0 + own / 512.0) / raw,
            v1 / 1000.0
        );
    }
    if let (Some(raw), Some(dec)) = (
        mean_ns("verify", "raw_verify_strict"),
        mean_ns("codec", "decode_envelope"),
    ) {
        println!(
            "RATIO decode_envelope / raw verify_strict = {:.3}",
            dec / raw
        );
    }
}

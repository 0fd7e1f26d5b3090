//! Proven answers and the verifiable map. Figures are printed at the end as ratios
//! against a raw signature verification measured in the same run, and as sizes:
//!
//! * verifying offline a proven *clear* answer over all 31 regions (a federation
//!   checkpoint with a quorum of 21 cosignatures — 31 members tolerating 9 faulty —,
//!   31 leaves, 31 absence proofs in maps of 10^6 keys, the answer recomputed, the
//!   answering node's signature) — goal ≤ 5 ms on one core and ≤ 32 KB as an evidence
//!   file (without the manifest it may carry);
//! * map proof lengths at 10^3 … 10^6 keys;
//! * the map's cost per record: applying a checkpoint's worth of changes (1 000 records
//!   naming 2 keys each) to a map of 10^5 keys, per record, ÷ raw verification (a record
//!   costs two verifications to admit).
//!
//! Run: `cargo bench -p credfed-protocol --bench proven`

use std::collections::BTreeMap;
mod common;

use std::hint::black_box;

use common::mean_ns;

use credfed_protocol::catalogue::{Catalogue, MeasureDomain};
use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin, witness_name};
use credfed_protocol::crypto::{Domain, Hash256, Keypair, sha256};
use credfed_protocol::federation::{
    ProvenAnswer, RegionProof, assemble_proven_answer, federation_checkpoint, verify_proven_answer,
};
use credfed_protocol::ids::{PROVINCES, RegionCode};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::map::{Indexed, MemoryMap, map_key, map_proof, map_update, value_after};
use credfed_protocol::record::SubjectKey;
use credfed_protocol::time::Timestamp;
use criterion::{BatchSize, Criterion};

const FED: &str = "cn-credit-bench";
const NOW: u64 = 1_800_000_000;

fn key_of(i: usize) -> Keypair {
    Keypair::from_secret(sha256(&[b"bench member", &i.to_be_bytes()]).0)
}

fn random_keys(n: u64, salt: &str) -> BTreeMap<Hash256, Hash256> {
    (0..n)
        .map(|i| {
            (
                sha256(&[salt.as_bytes(), &i.to_be_bytes()]),
                value_after(None, i + 1),
            )
        })
        .collect()
}

struct Fixture {
    manifest: Manifest,
    catalogue: Catalogue,
    proven: ProvenAnswer,
}

/// 31 members; every region's map holds `keys` subjects (the same map everywhere: the
/// proof for one absent subject has the same shape in each); a quorum of 16 cosigns.
fn fixture(keys: u64) -> Fixture {
    let members: Vec<Member> = PROVINCES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Member::for_province(
                RegionCode::new(p.code, "r").unwrap(),
                key_of(i).public(),
                key_of(i + 1000).public(),
                vec![],
            )
        })
        .collect();
    let manifest = Manifest::for_build(
        FED,
        1,
        Timestamp(0),
        Timestamp(i64::MAX / 2),
        Keypair::from_secret([99; 32]).public(),
        members,
    );
    let mut map = MemoryMap::default();
    let map_root = map.apply(keys, &random_keys(keys, "subject")).unwrap();
    let subject = SubjectKey::Uscc("91110000100000000R".into());
    let key = map_key(&Indexed::Subject(subject.clone()));
    let proof = map_proof(&map, keys, &key).unwrap();
    let leaves: Vec<Checkpoint> = manifest
        .members
        .iter()
        .map(|m| {
            Checkpoint::with_map_at(
                origin(FED, m.region),
                keys * 3,
                sha256(&[b"log root", &m.region.code().to_be_bytes()]),
                map_root,
                NOW - 8,
            )
        })
        .collect();
    let mut note = SignedCheckpoint {
        checkpoint: federation_checkpoint(&manifest, &leaves),
        signatures: vec![],
    };
    for (i, m) in manifest
        .members
        .iter()
        .enumerate()
        .take(manifest.policy.federation_quorum(31))
    {
        note.cosign(&witness_name(FED, m.region), &key_of(i), NOW - 5);
    }
    let regions = manifest
        .members
        .iter()
        .map(|m| RegionProof {
            region: m.region,
            subject: credfed_protocol::federation::Listing {
                proof: proof.clone(),
                positions: vec![],
                inclusion: vec![],
            },
            related: vec![],
        })
        .collect();
    let catalogue = Catalogue::embedded().unwrap();
    let proven = assemble_proven_answer(
        &manifest,
        &catalogue,
        &subject,
        MeasureDomain::Procurement,
        &note,
        &leaves,
        regions,
        vec![],
        vec![],
        None,
        manifest.members[0].region,
        &key_of(0),
    )
    .unwrap();
    Fixture {
        manifest,
        catalogue,
        proven,
    }
}

fn benches(c: &mut Criterion, f: &Fixture) {
    let key = Keypair::from_secret([9; 32]);
    let msg = vec![7u8; 200];
    let sig = key.sign(Domain::EnvelopeHeader, FED, &msg);
    let mut g = c.benchmark_group("proven");
    g.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            key.public()
                .verify(Domain::EnvelopeHeader, FED, black_box(&msg), &sig, "s")
                .unwrap()
        })
    });
    g.bench_function("verify_clear_31_regions", |b| {
        b.iter(|| {
            let r = verify_proven_answer(black_box(&f.proven), &f.manifest, &f.catalogue, NOW, 60);
            assert!(r.ok(), "{:?}", r.failures);
        })
    });
    // A checkpoint's worth of changes on a map of 10^5 keys: 1 000 records, each naming
    // a subject and an entry.
    let mut base = MemoryMap::default();
    base.apply(1, &random_keys(100_000, "base")).unwrap();
    let batch: BTreeMap<Hash256, credfed_protocol::map::ValueUpdate> = random_keys(2_000, "batch")
        .into_keys()
        .enumerate()
        .map(|(i, k)| {
            (
                k,
                credfed_protocol::map::ValueUpdate::Append(vec![i as u64 + 1]),
            )
        })
        .collect();
    g.bench_function("map_update_1000_records", |b| {
        b.iter_batched(
            || (),
            |_| map_update(&base, 1, black_box(&batch)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    // Map proof lengths grow as log2 of the keys held.
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let mut m = MemoryMap::default();
        m.apply(n, &random_keys(n, "size")).unwrap();
        let lens: Vec<usize> = (0..200u64)
            .map(|i| {
                let absent = sha256(&[b"absent", &i.to_be_bytes()]);
                map_proof(&m, n, &absent).unwrap().encode().len()
            })
            .collect();
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        println!(
            "SIZE map absence proof at {n} keys: mean {mean:.0} bytes, max {} bytes",
            lens.iter().max().unwrap()
        );
    }
    let f = fixture(1_000_000);
    let file = f.proven.to_file();
    let json = serde_json::to_vec(&f.proven).unwrap();
    println!(
        "SIZE proven clear answer, 31 regions, maps of 10^6 keys: evidence file {} bytes ({:.1} KB; goal <= 32 KB), JSON {} bytes",
        file.len(),
        file.len() as f64 / 1024.0,
        json.len()
    );
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &f);
    c.final_summary();
    if let (Some(raw), Some(v)) = (
        mean_ns("proven", "raw_verify_strict"),
        mean_ns("proven", "verify_clear_31_regions"),
    ) {
        println!(
            "RATIO verify proven clear answer (31 regions) / raw verify_strict = {:.1}  ({:.2} ms; goal <= 5 ms)",
            v / raw,
            v / 1e6
        );
    }
    if let (Some(raw), Some(m)) = (
        mean_ns("proven", "raw_verify_strict"),
        mean_ns("proven", "map_update_1000_records"),
    ) {
        println!(
            "RATIO map update per record (2 keys, map of 10^5) / raw verify_strict = {:.3}  ({:.1} us per record)",
            m / 1000.0 / raw,
            m / 1000.0 / 1000.0
        );
    }
}

//! Known-answer vectors: fixed keys and inputs → fixed bytes, signatures and hashes.
//!
//! If one of these fails, the wire format or a signing rule changed. That is a
//! protocol change: bump PROTOCOL_VERSION, update docs/protocol.md, then the constants.

use credfed_protocol::crypto::Hash256;
use credfed_protocol::crypto::{Domain, Keypair, sha256, tag};
use credfed_protocol::envelope::{
    AppendPosition, GENESIS_PREV_HASH, envelope_hash, seal, sign_body,
};
use credfed_protocol::ids::PersonRef;
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;

use crate::fixture::*;

fn vector_body() -> Body {
    let mut e = black_entry(
        org(ACME),
        "沪执〔2026〕12号",
        &["P-PROCUREMENT", "P-TRAVEL-AIR"],
    );
    e.category = Category::Black(BlackCategory::DefyingJudgmentOrDecision);
    e.findings = vec![Finding::AbleButRefuses];
    e.related_persons = vec![RelatedPerson {
        role: RelatedRole::LegalRepresentative,
        // A fixed person key (the value an earlier keying gave; the encoding pinned here
        // does not depend on how the key was computed).
        person: PersonRef {
            id_hash: Hash256::from_hex(
                "2b4b3f32b5eec5abbdb42b7a2042f56f588d1d14fee85e8d25db6a432ac58711",
            )
            .unwrap(),
            masked: "11****************".into(),
            name: "张三".into(),
        },
    }];
    Body::ListEntryPublished(e)
}

/// The kinds added after the first release of the format (credit repair on application),
/// pinned apart: `every_kind`'s hash staying the same shows that adding them changed no
/// earlier kind's bytes (new variants go last).
fn later_kinds() -> Vec<Body> {
    let id = EntryId(sha256(&[b"e"]));
    vec![
        Body::RepairApplied {
            entry: id,
            case_no: "粤信修〔2027〕1号".into(),
            basis: RepairBasis::CorrectedWithinPeriod,
            grounds: "已整改".into(),
            filed_on: date("2027-11-02"),
        },
        Body::RepairDecided {
            entry: id,
            application: repair_application_id(&dept("440000:xyb"), "粤信修〔2027〕1号"),
            outcome: RepairOutcome::Repaired,
            reason: "准予修复".into(),
        },
    ]
}

/// The commitment (article 四) and disclosure (article 十七) kinds, added after credit
/// repair on application and pinned apart for the same reason.
fn commitment_kinds() -> Vec<Body> {
    vec![
        Body::DecisionDisclosed(Disclosure {
            kind: DisclosureKind::Penalty,
            subject: org(ACME),
            decision_no: "沪市监罚〔2026〕1号".into(),
            authority: "上海市市场监督管理局".into(),
            decided_on: date("2026-10-30"),
            summary: "罚款".into(),
            public_until: date("2027-10-30"),
        }),
        Body::CommitmentMade(Commitment {
            subject: org(ACME),
            acceptance_no: "沪许受〔2026〕1号".into(),
            matter: "食品经营许可证新办".into(),
            waived: vec!["场所平面图".into()],
            made_on: date("2026-11-02"),
            due_on: date("2026-11-20"),
        }),
        Body::CommitmentSettled {
            commitment: commitment_id(&dept("310000:scjgj"), "沪许受〔2026〕1号"),
            outcome: CommitmentOutcome::Breached,
            settled_on: date("2026-11-23"),
            note: "逾期未补正".into(),
        },
    ]
}

/// One sample of every body kind, concatenated: its hash pins the whole body layout.
fn every_kind() -> Vec<Body> {
    let id = EntryId(sha256(&[b"e"]));
    let aid = ActionId(sha256(&[b"a"]));
    let entry = match vector_body() {
        Body::ListEntryPublished(e) => e,
        _ => unreachable!(),
    };
    vec![
        Body::DepartmentRegistered {
            department: dept("310000:scjgj"),
            name: "上海市市场监督管理局".into(),
            roles: vec![credfed_protocol::ids::Role::Publisher],
            key: Keypair::from_secret([3; 32]).public(),
        },
        Body::DepartmentRevoked {
            department: dept("310000:scjgj"),
            reason: "机构改革".into(),
        },
        Body::ListEntryPublished(entry.clone()),
        Body::ListEntryAmended {
            entry: id,
            amended: entry,
            reason: "更正".into(),
        },
        Body::ListEntryRevoked {
            entry: id,
            reason: "撤销".into(),
        },
        Body::ListEntryRepaired {
            entry: id,
            basis: RepairBasis::CorrectedWithinPeriod,
            reason: "整改".into(),
        },
        Body::EvaluationPublished(Evaluation {
            subject: org(ACME),
            scheme: "tax-credit".into(),
            grade: Grade::Class(*b"A\0\0\0"),
            evaluated_on: date("2026-04-01"),
            valid_until: date("2027-04-01"),
        }),
        Body::JointActionInitiated(JointAction {
            reference: "r".into(),
            kind: ActionKind::Punishment,
            entry: id,
            targets: Targets::Regions(vec![region(440000)]),
            measures: vec![mc("P-PROCUREMENT")],
            respond_by: date("2026-11-09"),
        }),
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Partly {
                accepted: vec![mc("P-PROCUREMENT")],
                reason: "r".into(),
            },
            implementing: vec![dept("440000:czt")],
        },
        Body::MeasureExecuted {
            action: aid,
            measure: mc("P-PROCUREMENT"),
            reference: "r".into(),
            executed_on: date("2026-11-04"),
        },
        Body::MeasureLifted {
            action: aid,
            measure: mc("P-PROCUREMENT"),
            reference: "r".into(),
            reason: "r".into(),
        },
        Body::ObjectionFiled {
            case_no: "c".into(),
            target: ObjectionTarget::Entry(id),
            grounds: "g".into(),
            filed_on: date("2026-11-02"),
        },
        Body::ObjectionResolved {
            objection: ObjectionId(sha256(&[b"o"])),
            outcome: ObjectionOutcome::Upheld,
            note: "n".into(),
        },
        Body::EquivocationEvidence {
            first: vec![1, 2],
            second: vec![3, 4],
        },
        Body::EvaluationRevoked {
            evaluation: EvaluationId(sha256(&[b"v"])),
            reason: "复评".into(),
        },
        Body::ObjectionFiled {
            case_no: "c2".into(),
            target: ObjectionTarget::Evaluation(EvaluationId(sha256(&[b"v"]))),
            grounds: "g".into(),
            filed_on: date("2026-11-02"),
        },
    ]
}

#[test]
fn known_answers() {
    let author = Keypair::from_secret([1; 32]);
    let node = Keypair::from_secret([2; 32]);
    let body = vector_body();
    let (body_bytes, author_sig) = sign_body("cn-credit", &author, &body);
    let at = AppendPosition {
        region: region(310000),
        seq: 1,
        prev_hash: GENESIS_PREV_HASH,
        timestamp: Timestamp(1_793_000_000_000),
    };
    let env = seal(
        "cn-credit",
        &node,
        &at,
        dept("310000:scjgj"),
        body_bytes.clone(),
        author_sig,
    )
    .unwrap();
    let all: Vec<u8> = every_kind().iter().flat_map(|b| b.encode()).collect();
    let later: Vec<u8> = later_kinds().iter().flat_map(|b| b.encode()).collect();
    let commitments: Vec<u8> = commitment_kinds().iter().flat_map(|b| b.encode()).collect();
    let got = [
        (
            "tag(body-sig, cn-credit)",
            hex::encode(tag(Domain::Body, "cn-credit")),
        ),
        ("author public key", author.public().to_hex()),
        ("sha256(body)", sha256(&[&body_bytes]).to_hex()),
        ("author_sig", author_sig.to_hex()),
        ("sha256(envelope)", sha256(&[&env]).to_hex()),
        ("envelope_hash", envelope_hash("cn-credit", &env).to_hex()),
        (
            "entry_id",
            entry_id(
                region(310000),
                match &body {
                    Body::ListEntryPublished(e) => e,
                    _ => unreachable!(),
                },
            )
            .to_string(),
        ),
        ("sha256(every body kind)", sha256(&[&all]).to_hex()),
        ("sha256(later body kinds)", sha256(&[&later]).to_hex()),
        (
            "sha256(commitment and disclosure body kinds)",
            sha256(&[&commitments]).to_hex(),
        ),
    ];
    let want = WANT;
    let mut mismatches = Vec::new();
    for ((name, g), (_, w)) in got.iter().zip(want.iter()) {
        if g != w {
            mismatches.push(format!("{name}: got {g}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "wire format changed:\n{}",
        mismatches.join("\n")
    );
}

const WANT: [(&str, &str); 10] = [
    (
        "tag(body-sig, cn-credit)",
        "637265646665640008626f64792d736967020009636e2d637265646974",
    ),
    (
        "author public key",
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    ),
    (
        "sha256(body)",
        "ef184b1506e8afa0ab4309c43e3d310aa128c83ba54a5107711a76620b897a72",
    ),
    (
        "author_sig",
        "77a1e578902b9c1cd0d95fd8c9381377983d1b01c422f08b77ef4d20740461b2f9f1dad052e2ccae2bb53a04d23db606958b7c0dbd8e6ede87ac5cf37dc2d303",
    ),
    (
        "sha256(envelope)",
        "6666e43895df12de4dd43038dec3cab03e82c2a868af2ccbee5fb28f20819424",
    ),
    (
        "envelope_hash",
        "e19aa23e0c8a5ec7147316cb66d9d7b9dfd16d4e8274a783f421d671746fa679",
    ),
    (
        "entry_id",
        "0945fabbddd08c7b380453df30de5773d096d96eb04495969a21d70719630de9",
    ),
    (
        "sha256(every body kind)",
        "f3e6c065f1b50d434246411fe6cbb1bd9fa1bd3c04a94299ea3880e4e66fab31",
    ),
    (
        "sha256(later body kinds)",
        "ca60b34ae0f0edac43317adb5a063ad7abaeb67fb683330b92752f07daccbb1c",
    ),
    (
        "sha256(commitment and disclosure body kinds)",
        "34f8ce6391435ad5d9a231035c779a6b7545df7a9290ae8526aec8101017bb37",
    ),
];

/// A checkpoint of the reference tree (RFC 6962 vectors, 8 leaves), signed by a fixed
/// log key and cosigned by a fixed witness key at a fixed time: the C2SP note bytes are
/// pinned (Ed25519 signatures are deterministic).
#[test]
fn checkpoint_note_bytes() {
    use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin, witness_name};
    use credfed_protocol::ids::RegionCode;
    use credfed_protocol::merkle::MemoryTree;
    let leaves: Vec<Vec<u8>> = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|x| hex::decode(x).unwrap())
    .collect();
    let tree = MemoryTree::from_data(&leaves);
    let sh = RegionCode::new(310000, "r").unwrap();
    let cp = Checkpoint::new(origin("cn-credit-vectors", sh), tree.size(), tree.root());
    let mut s = SignedCheckpoint::sign(
        cp,
        &origin("cn-credit-vectors", sh),
        &Keypair::from_secret([0x31; 32]),
    );
    s.cosign(
        &witness_name("cn-credit-vectors", RegionCode::new(440000, "r").unwrap()),
        &Keypair::from_secret([0x44; 32]),
        1_795_000_000,
    );
    assert_eq!(s.encode(), CHECKPOINT_NOTE, "{}", s.encode());
}

const CHECKPOINT_NOTE: &str = "credfed/cn-credit-vectors/310000\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u{2014} credfed/cn-credit-vectors/310000 CORSuiI5h0mQJ1A6omOG6x/BmAEpTnkuR3eR3y1nrrFTyL9zSThMI3F5vhnLBZD6D21+aWZ7tTkNfRC7zY/c0zS0aAo=\n\u{2014} credfed/cn-credit-vectors/witness/440000 gqdA5gAAAABq/YbARC6bUj7bFSkPgkOLDhGjD1ic5PYEOY7Z4AmuOgmsMfb8ynrOzQ1QSVPZ2WpHCpdzq9xkHFFw0Mz7vG//xv2zCQ==\n";

/// The manifest the JSON fuzz target verifies against must parse as today's
/// `Manifest`, or that target would fuzz only the parser: this keeps it current.
/// Regenerate with `CREDFED_WRITE_FUZZ_SEED=1 cargo test -p credfed-protocol --test it
/// fuzz_seed`.
#[test]
fn fuzz_seed_manifest_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seed_manifest.json");
    if std::env::var_os("CREDFED_WRITE_FUZZ_SEED").is_some() {
        use credfed_protocol::crypto::Keypair;
        use credfed_protocol::ids::{PROVINCES, RegionCode};
        use credfed_protocol::manifest::{Manifest, Member};
        let m = Manifest::for_build(
            "cn-credit-fuzz",
            1,
            credfed_protocol::time::Timestamp(0),
            credfed_protocol::time::Timestamp(i64::MAX / 2),
            Keypair::from_secret([99; 32]).public(),
            PROVINCES[..5]
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Member::for_province(
                        RegionCode::new(p.code, "r").unwrap(),
                        Keypair::from_secret([i as u8 + 1; 32]).public(),
                        Keypair::from_secret([i as u8 + 101; 32]).public(),
                        vec![],
                    )
                })
                .collect(),
        );
        std::fs::write(path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    }
    let m: credfed_protocol::manifest::Manifest =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    m.validate().unwrap();
}

/// A gossip message's layout is pinned like the envelope's: a change is a deliberate
/// act (and a new topic version, docs/protocol.md "Gossip").
#[test]
fn gossip_batch_known_answer() {
    let bytes =
        credfed_protocol::gossip::encode_batch(&[vec![1, 2, 3], vec![], vec![0xab; 251]]).unwrap();
    let want = format!("030301020300fbfb00{}", "ab".repeat(251));
    assert_eq!(
        hex::encode(&bytes),
        want,
        "gossip batch wire format changed"
    );
}

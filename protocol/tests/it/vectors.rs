//! Known-answer vectors: fixed keys and inputs → fixed bytes, signatures and hashes.
//!
//! If one of these fails, the wire format or a signing rule changed. That is a
//! protocol change: bump PROTOCOL_VERSION, update docs/protocol.md, then the constants.

use credfed_protocol::crypto::{Domain, Keypair, sha256, tag};
use credfed_protocol::envelope::{
    AppendPosition, GENESIS_PREV_HASH, envelope_hash, seal, sign_body,
};
use credfed_protocol::ids::PersonHashKey;
use credfed_protocol::ids::person::person_ref;
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;

use crate::fixture::*;

fn vector_body() -> Body {
    let pk = PersonHashKey::new(&[0x42; 32]).unwrap();
    let mut e = black_entry(org(ACME), "沪市监处〔2026〕12号", &["P-10-10", "P-11-04"]);
    e.related_persons = vec![RelatedPerson {
        role: RelatedRole::LegalRepresentative,
        person: person_ref(&pk, "11010519491231002X", "张三", "p").unwrap(),
    }];
    Body::ListEntryPublished(e)
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
            scheme: "tax-abcd".into(),
            grade: Grade::Class(*b"A\0\0\0"),
            evaluated_on: date("2026-04-01"),
            valid_until: date("2027-04-01"),
        }),
        Body::JointActionInitiated(JointAction {
            reference: "r".into(),
            kind: ActionKind::Punishment,
            entry: id,
            targets: Targets::Regions(vec![region(440000)]),
            measures: vec![mc("P-10-10")],
            respond_by: date("2026-11-09"),
        }),
        Body::JointActionAcknowledged {
            action: aid,
            decision: AckDecision::Partly {
                accepted: vec![mc("P-10-10")],
                reason: "r".into(),
            },
            implementing: vec![dept("440000:czt")],
        },
        Body::MeasureExecuted {
            action: aid,
            measure: mc("P-10-10"),
            reference: "r".into(),
            executed_on: date("2026-11-04"),
        },
        Body::MeasureLifted {
            action: aid,
            measure: mc("P-10-10"),
            reference: "r".into(),
            reason: "r".into(),
        },
        Body::ObjectionFiled {
            case_no: "c".into(),
            entry: id,
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

const WANT: [(&str, &str); 8] = [
    (
        "tag(body-sig, cn-credit)",
        "637265646665640008626f64792d736967010009636e2d637265646974",
    ),
    (
        "author public key",
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    ),
    (
        "sha256(body)",
        "e10026b8a8c4910d341b7169eb87082c18a472ce318b3a67424185c05b413743",
    ),
    (
        "author_sig",
        "7880c9d9ddd981a891f59cfaba13f6f2e3e44f9e3a09f59e2ba9445845335661545fda45b074ace0bc9e498d13585ccfe6b2e6959066d5ebec4cc09631d54700",
    ),
    (
        "sha256(envelope)",
        "243d7bd46a6dc381b00ff9d4d99705192aeb2ca0f404a0ead7e4852099bccf39",
    ),
    (
        "envelope_hash",
        "5fe60e663c2c4f5e357b311c6e75eefe7425015a7b6cd6f9263d693f1ddec95b",
    ),
    (
        "entry_id",
        "fb17a1bb9bc6c03c3666067b8aba0d24075d0b17c9e303b016bcc604ade8b7a0",
    ),
    (
        "sha256(every body kind)",
        "8efbf2cf76924806b82343ab45047976dda92ecc17fe3b939c8e1f65337f74df",
    ),
];

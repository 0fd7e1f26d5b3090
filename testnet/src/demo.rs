//! `credfed-testnet demo`: the protocol's full cycle on the 31 provincial regions in one
//! process, each region's replica a separate in-memory ledger fed every region's log in a
//! shuffled order. It exercises signing, chaining, admission, folding, the check and
//! offline verification — not networking, storage or processes (the drill does those).

use std::time::Instant;

use credfed_protocol::catalogue::{Catalogue, MeasureDomain};
use credfed_protocol::check::{check, verify_answer};
use credfed_protocol::crypto::{Keypair, sha256};
use credfed_protocol::envelope::{
    AppendPosition, GENESIS_PREV_HASH, NODE_UNIT, OPERATOR_UNIT, seal, sign_body,
};
use credfed_protocol::ids::{DepartmentId, PROVINCES, RegionCode, Role};
use credfed_protocol::ledger::{Admission, Ledger, Rules};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::state::{EntryState, TargetStatus};
use credfed_protocol::time::{Date, Timestamp};

const FED: &str = "cn-credit-demo";

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Demo keys derive from labels so runs are reproducible. Never use such keys for real.
fn key(label: &str) -> Keypair {
    Keypair::from_secret(sha256(&[b"credfed-demo-key", label.as_bytes()]).0)
}

struct Origin {
    manifest: Manifest,
    catalogue: Catalogue,
    /// The writers' view: every region appends to its own log here.
    ledger: Ledger,
    now: Timestamp,
}

impl Origin {
    fn write(&mut self, author: &DepartmentId, body: Body) -> Result<(), String> {
        let region = author.home_province();
        let signer = if author.unit == NODE_UNIT {
            key(&format!("node-{region}"))
        } else if author.unit == OPERATOR_UNIT {
            key(&format!("operator-{region}"))
        } else {
            key(&format!("dept-{author}"))
        };
        let (bytes, sig) = sign_body(FED, &signer, &body);
        let head = self.ledger.head(region);
        let at = AppendPosition {
            region,
            seq: head.map_or(1, |h| h.seq + 1),
            prev_hash: head.map_or(GENESIS_PREV_HASH, |h| h.hash),
            timestamp: self.now,
        };
        let env = seal(
            FED,
            &key(&format!("node-{region}")),
            &at,
            author.clone(),
            bytes,
            sig,
        )
        .map_err(|e| e.to_string())?;
        let rules = Rules {
            manifest: &self.manifest,
            catalogue: &self.catalogue,
        };
        match self.ledger.ingest(rules, &env) {
            Ok(Admission::Accept(_)) => Ok(()),
            other => Err(format!(
                "{author} could not write {:?}: {other:?}",
                body.kind()
            )),
        }
    }
}

/// Runs the demo, printing as it goes.
pub fn demo() -> Result<(), String> {
    println!("credfed protocol demo — 31 regions in ONE process: signing, chaining, admission,");
    println!(
        "folding, the check and offline verification. No networking, storage or processes yet.\n"
    );
    let d = |s: &str| Date::parse(s).map_err(|e| e.to_string());
    let regions: Vec<RegionCode> = PROVINCES
        .iter()
        .map(|p| RegionCode::new(p.code, "region"))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let manifest = Manifest::for_build(
        FED,
        1,
        d("2026-01-01")?.start_cst(),
        d("2027-01-01")?.start_cst(),
        key("authority").public(),
        regions
            .iter()
            .map(|r| {
                Member::for_province(
                    *r,
                    key(&format!("node-{r}")).public(),
                    key(&format!("operator-{r}")).public(),
                    vec![],
                )
            })
            .collect(),
    );
    let signed = manifest
        .sign(&key("authority"))
        .map_err(|e| e.to_string())?;
    let now = d("2026-11-02")?.start_cst();
    let manifest = signed
        .verify(&key("authority").public(), now)
        .map_err(|e| e.to_string())?;
    let catalogue = Catalogue::embedded().map_err(|e| e.to_string())?;
    let mut o = Origin {
        manifest,
        catalogue,
        ledger: Ledger::new(),
        now,
    };
    let dept = |r: RegionCode, unit: &str| {
        DepartmentId::new(r, unit, "department").map_err(|e| e.to_string())
    };

    // Every node registers its departments (article 十五: initiating and implementing).
    for r in &regions {
        for (unit, roles) in [
            (
                "xyb",
                vec![Role::Publisher, Role::Initiator, Role::ObjectionHandler],
            ),
            ("ssbm", vec![Role::Implementer]),
        ] {
            let id = dept(*r, unit)?;
            let body = Body::DepartmentRegistered {
                department: id.clone(),
                name: format!("{} {unit}", r.province_info().name_zh),
                roles,
                key: key(&format!("dept-{id}")).public(),
            };
            o.write(&dept(*r, OPERATOR_UNIT)?, body)?;
        }
    }
    let sh = regions
        .iter()
        .copied()
        .find(|r| r.code() == 310000)
        .ok_or("no Shanghai")?;
    let gd = regions
        .iter()
        .copied()
        .find(|r| r.code() == 440000)
        .ok_or("no Guangdong")?;
    let gs = regions
        .iter()
        .copied()
        .find(|r| r.code() == 620000)
        .ok_or("no Gansu")?;
    let subject = Subject::Organisation {
        uscc: "91350100M000100Y43".into(),
        name: "某某食品有限公司".into(),
        check_exemption: None,
    };
    // A court's 失信被执行人 decision on a company, naming its legal representative: the
    // flight ban falls on the person (article 十四, 法释〔2015〕17号 第三条).
    // The demo runs offline: its person key is held whole here (a federation's members
    // hold only shares of theirs; docs/privacy.md).
    let person_key =
        credfed_protocol::oprf::ShareKey::from_bytes(1, [9; 32]).map_err(|e| e.to_string())?;
    let legal_rep = credfed_protocol::ids::person::person_ref(
        |n| credfed_protocol::oprf::person_key_with_whole_key(&person_key, n),
        "440524188001010014",
        "张三",
        "legal_rep",
    )
    .map_err(|e| e.to_string())?;
    let entry = ListEntry {
        category: Category::Black(BlackCategory::DefyingJudgmentOrDecision),
        subject: subject.clone(),
        related_persons: vec![RelatedPerson {
            role: RelatedRole::LegalRepresentative,
            person: legal_rep.clone(),
        }],
        basis: Basis {
            document_no: "沪01执〔2026〕12号".into(),
            authority: "上海市第一中级人民法院".into(),
            decided_on: d("2026-10-28")?,
            legal_basis: "《中华人民共和国民事诉讼法》第二百六十六条；法释〔2017〕7号".into(),
        },
        effective_from: d("2026-11-01")?,
        expires_on: d("2028-11-01")?,
        requested_measures: vec![
            MeasureCode("P-PROCUREMENT".into()),
            MeasureCode("P-TRAVEL-AIR".into()),
        ],
        findings: vec![Finding::AbleButRefuses],
        summary: "有履行能力而拒不履行生效判决".into(),
    };
    let entry_id = credfed_protocol::record::entry_id(sh, &entry);
    o.write(&dept(sh, "xyb")?, Body::ListEntryPublished(entry))?;
    let action = JointAction {
        reference: "沪联惩〔2026〕5号".into(),
        kind: ActionKind::Punishment,
        entry: entry_id,
        targets: Targets::AllMembers,
        measures: vec![
            MeasureCode("P-PROCUREMENT".into()),
            MeasureCode("P-TRAVEL-AIR".into()),
        ],
        respond_by: d("2026-11-09")?,
    };
    let action_id = credfed_protocol::record::action_id(&dept(sh, "xyb")?, &action.reference);
    o.write(&dept(sh, "xyb")?, Body::JointActionInitiated(action))?;
    for (i, r) in regions.iter().filter(|r| **r != sh).enumerate() {
        o.now = Timestamp(now.0 + (i as i64 + 1) * 3_600_000);
        let implementer = dept(*r, "ssbm")?;
        o.write(
            &implementer,
            Body::JointActionAcknowledged {
                action: action_id,
                decision: AckDecision::Accepted,
                implementing: vec![implementer.clone()],
            },
        )?;
        o.write(
            &implementer,
            Body::MeasureExecuted {
                action: action_id,
                measure: MeasureCode("P-PROCUREMENT".into()),
                reference: format!("{r}-exec-1"),
                executed_on: d("2026-11-03")?,
            },
        )?;
    }
    // A second entry that Guangdong objects to: suspended everywhere (article 二十二).
    let mut second = ListEntry {
        category: Category::Black(BlackCategory::TaxEvasionOrFraud),
        findings: vec![],
        related_persons: vec![],
        requested_measures: vec![MeasureCode("P-PROCUREMENT".into())],
        ..match o.ledger.entry(&entry_id) {
            Some(e) => e.content,
            None => return Err("entry missing".into()),
        }
    };
    second.basis.document_no = "沪税处〔2026〕3号".into();
    let second_id = credfed_protocol::record::entry_id(sh, &second);
    o.write(&dept(sh, "xyb")?, Body::ListEntryPublished(second))?;
    o.write(
        &dept(gd, "xyb")?,
        Body::ObjectionFiled {
            case_no: "粤异〔2026〕1号".into(),
            target: ObjectionTarget::Entry(second_id),
            grounds: "已补缴税款".into(),
            filed_on: d("2026-11-02")?,
        },
    )?;

    // Replicate: every region's replica takes every log, in a per-region shuffled order,
    // retrying records whose cross-region references have not arrived yet.
    let logs: Vec<Vec<Vec<u8>>> = o
        .ledger
        .heads()
        .keys()
        .map(|r| o.ledger.range(*r, 1, usize::MAX))
        .collect();
    let total: usize = logs.iter().map(Vec::len).sum();
    let rules = Rules {
        manifest: &o.manifest,
        catalogue: &o.catalogue,
    };
    let started = Instant::now();
    let mut replicas = Vec::new();
    for (ri, r) in regions.iter().enumerate() {
        let mut replica = Ledger::new();
        let mut cursors = vec![0usize; logs.len()];
        // A stride coprime with the number of logs visits every log in turn (so the
        // earliest pending record is always reached) in an order that differs per replica.
        let n = logs.len();
        let stride = (1..n)
            .map(|k| (ri + k) % n)
            .find(|&s| s > 0 && gcd(s, n) == 1)
            .unwrap_or(1);
        let mut turn = ri % n.max(1);
        while cursors.iter().zip(&logs).any(|(c, l)| *c < l.len()) {
            turn = (turn + stride) % n;
            let Some(bytes) = logs[turn].get(cursors[turn]) else {
                continue;
            };
            match replica.ingest(rules, bytes) {
                Ok(Admission::Accept(_)) => cursors[turn] += 1,
                Ok(Admission::MissingDependency { .. }) => {}
                other => return Err(format!("replica {r} refused a valid record: {other:?}")),
            }
        }
        replicas.push((*r, replica));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replicated {total} records to {} replicas: {:.0} records/s admitted (two signatures each)",
        regions.len(),
        (total * regions.len()) as f64 / secs
    );
    let converged = replicas.iter().all(|(_, l)| l.heads() == o.ledger.heads());
    println!("all replicas hold the same heads: {converged}");

    let gansu = &replicas
        .iter()
        .find(|(r, _)| *r == gs)
        .ok_or("no Gansu replica")?
        .1;
    let rep_key = SubjectKey::Person(legal_rep.id_hash);
    let Ok(answer) = check(rules, gansu, &rep_key, MeasureDomain::Travel, o.now);
    println!(
        "\ncheck at 甘肃 (620000), domain travel, the company's legal representative {}:",
        legal_rep.masked
    );
    println!("  verdict: {:?}", answer.verdict);
    for m in &answer.mandatory {
        println!(
            "  mandatory  {}  {}  ({:?} of {}, as {:?})",
            m.code.0, m.title_zh, m.source, m.region, m.roles
        );
    }
    for e in &answer.entries {
        println!(
            "  entry {}…  {:<9}  {}",
            &e.entry.to_string()[..12],
            format!("{:?}", e.state),
            e.document_no
        );
    }
    let report = verify_answer(&answer, &o.manifest, &o.catalogue);
    println!(
        "  offline verification: {} envelopes verified, {} entries confirmed, {} failures",
        report.envelopes_verified,
        report.entries_confirmed,
        report.failures.len()
    );
    let suspended = answer
        .entries
        .iter()
        .filter(|e| e.state == EntryState::Suspended)
        .count();
    let action = gansu.action(&action_id).ok_or("action missing")?;
    let accepted = action
        .view_at(o.now, &o.manifest, &o.catalogue)
        .iter()
        .filter(|t| t.status == TargetStatus::Accepted)
        .count();
    println!(
        "\njoint action {}…: {accepted}/30 target regions accepted and reported execution",
        &action_id.to_string()[..12]
    );
    let ok = converged
        && report.ok()
        && suspended == 1
        && accepted == 30
        && !answer.mandatory.is_empty();
    println!(
        "\nsummary: {}",
        if ok {
            "all checks held"
        } else {
            "SOMETHING FAILED"
        }
    );
    if ok {
        Ok(())
    } else {
        Err("a demo check did not hold".into())
    }
}

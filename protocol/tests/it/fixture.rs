//! A federation in memory: an authority, member nodes, registered departments and a
//! "world" ledger holding every region's log, written the way nodes write them.

use std::collections::BTreeMap;

use credfed_protocol::calendar::WorkingCalendar;
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::crypto::Keypair;
use credfed_protocol::envelope::{
    AppendPosition, GENESIS_PREV_HASH, NODE_UNIT, OPERATOR_UNIT, seal, sign_body,
};
use credfed_protocol::ids::person::person_ref;
use credfed_protocol::ids::{DepartmentId, PersonRef, RegionCode, Role};
use credfed_protocol::ledger::{Admission, Ledger, Rejection, Rules};
use credfed_protocol::manifest::{Manifest, Member};
use credfed_protocol::record::*;
use credfed_protocol::time::{Date, Timestamp};

pub const FED: &str = "cn-credit-test";

/// A real identity number: GB 11643-1999's own worked example (born 1880).
pub const LEGAL_REP_ID: &str = "440524188001010014";

pub fn date(s: &str) -> Date {
    Date::parse(s).unwrap()
}

/// Noon in Beijing on `s`.
pub fn noon(s: &str) -> Timestamp {
    Timestamp(date(s).start_cst().0 + 12 * 3600 * 1000)
}

pub fn region(code: u32) -> RegionCode {
    RegionCode::new(code, "region").unwrap()
}

pub fn dept(s: &str) -> DepartmentId {
    DepartmentId::parse(s, "department").unwrap()
}

pub fn mc(code: &str) -> MeasureCode {
    MeasureCode(code.into())
}

/// Deterministic key for a label.
pub fn key(label: &str) -> Keypair {
    let h = credfed_protocol::crypto::sha256(&[b"test-key", label.as_bytes()]);
    Keypair::from_secret(h.0)
}

pub struct World {
    #[allow(dead_code)] // kept so tests can sign manifest updates
    pub authority: Keypair,
    pub nodes: BTreeMap<RegionCode, Keypair>,
    /// Each region's operator key (signs its department registrations).
    pub operators: BTreeMap<RegionCode, Keypair>,
    pub manifest: Manifest,
    pub catalogue: Catalogue,
    pub calendar: WorkingCalendar,
    pub depts: BTreeMap<DepartmentId, Keypair>,
    pub ledger: Ledger,
    pub now: Timestamp,
    /// A person key held whole (tests only; members hold shares of theirs).
    pub person_key: credfed_protocol::oprf::ShareKey,
}

/// Units every test region gets, with their roles.
pub const UNITS: &[(&str, &[Role])] = &[
    ("pub", &[Role::Publisher]),
    ("init", &[Role::Initiator]),
    ("impl", &[Role::Implementer]),
    ("obj", &[Role::ObjectionHandler]),
    ("ops", &[Role::Operator]),
];

impl World {
    pub fn new(codes: &[u32]) -> World {
        let mut w = World::starting(codes, noon("2026-10-01"));
        w.now = noon("2026-11-02");
        w
    }

    /// A world whose departments are registered at `at`, with its clock there.
    pub fn starting(codes: &[u32], at: Timestamp) -> World {
        let authority = key("authority");
        let nodes: BTreeMap<RegionCode, Keypair> = codes
            .iter()
            .map(|&c| (region(c), key(&format!("node-{c}"))))
            .collect();
        let operators: BTreeMap<RegionCode, Keypair> = codes
            .iter()
            .map(|&c| (region(c), key(&format!("operator-{c}"))))
            .collect();
        let manifest = Manifest::for_build(
            FED,
            1,
            noon("2026-01-01"),
            noon("2030-01-01"),
            authority.public(),
            nodes
                .iter()
                .map(|(r, k)| Member::for_province(*r, k.public(), operators[r].public(), vec![]))
                .collect(),
        );
        let mut w = World {
            authority,
            nodes,
            operators,
            manifest,
            catalogue: Catalogue::embedded().unwrap(),
            calendar: WorkingCalendar::embedded().unwrap(),
            depts: BTreeMap::new(),
            ledger: Ledger::new(),
            now: at,
            person_key: credfed_protocol::oprf::ShareKey::from_bytes(1, [7; 32]).unwrap(),
        };
        for &c in codes {
            for (unit, roles) in UNITS {
                w.register(&format!("{c}:{unit}"), roles);
            }
        }
        w
    }

    pub fn rules(&self) -> Rules<'_> {
        Rules {
            manifest: &self.manifest,
            catalogue: &self.catalogue,
        }
    }

    /// Registers a department as its province's operator.
    pub fn register(&mut self, id: &str, roles: &[Role]) -> DepartmentId {
        let d = dept(id);
        let k = key(&format!("dept-{id}"));
        let body = Body::DepartmentRegistered {
            department: d.clone(),
            name: format!("unit {id}"),
            roles: roles.to_vec(),
            key: k.public(),
        };
        let operator = DepartmentId {
            region: d.home_province(),
            unit: OPERATOR_UNIT.into(),
        };
        self.depts.insert(d.clone(), k);
        self.accept(&operator.to_string(), body);
        d
    }

    /// The envelope `author` would get for `body` at the head of its province's log.
    pub fn seal_as(&self, author: &str, body: &Body) -> Vec<u8> {
        let author = dept(author);
        let region = author.home_province();
        let signer = if author.unit == NODE_UNIT {
            &self.nodes[&region]
        } else if author.unit == OPERATOR_UNIT {
            &self.operators[&region]
        } else {
            &self.depts[&author]
        };
        let (bytes, sig) = sign_body(FED, signer, body);
        self.seal_signed(author, bytes, sig)
    }

    pub fn seal_signed(
        &self,
        author: DepartmentId,
        body: Vec<u8>,
        sig: credfed_protocol::crypto::Signature,
    ) -> Vec<u8> {
        let region = author.home_province();
        let head = self.ledger.head(region);
        let at = AppendPosition {
            region,
            seq: head.map_or(1, |h| h.seq + 1),
            prev_hash: head.map_or(GENESIS_PREV_HASH, |h| h.hash),
            timestamp: self.now,
        };
        seal(FED, &self.nodes[&region], &at, author, body, sig).unwrap()
    }

    pub fn submit(&mut self, author: &str, body: Body) -> Result<Admission, Rejection> {
        let bytes = self.seal_as(author, &body);
        self.ingest(&bytes)
    }

    pub fn ingest(&mut self, bytes: &[u8]) -> Result<Admission, Rejection> {
        let rules = Rules {
            manifest: &self.manifest,
            catalogue: &self.catalogue,
        };
        self.ledger.ingest(rules, bytes)
    }

    /// Submits and asserts acceptance.
    pub fn accept(&mut self, author: &str, body: Body) {
        match self.submit(author, body) {
            Ok(Admission::Accept(_)) => {}
            other => panic!("expected Accept for {author}, got {other:?}"),
        }
    }

    /// Submits and returns the rejection message.
    pub fn refuse(&mut self, author: &str, body: Body) -> Rejection {
        match self.submit(author, body) {
            Err(r) => r,
            other => panic!("expected a rejection for {author}, got {other:?}"),
        }
    }

    pub fn person(&self, number: &str, name: &str) -> PersonRef {
        let key = &self.person_key;
        person_ref(
            |n| credfed_protocol::oprf::person_key_with_whole_key(key, n),
            number,
            name,
            "person",
        )
        .unwrap()
    }

    /// Every region's log, in order.
    pub fn logs(&self) -> Vec<Vec<Vec<u8>>> {
        self.ledger
            .heads()
            .keys()
            .map(|r| self.ledger.range(*r, 1, usize::MAX))
            .collect()
    }
}

pub const ACME: &str = "91350100M000100Y43";

pub fn org(uscc: &str) -> Subject {
    Subject::Organisation {
        uscc: uscc.into(),
        name: "某某食品有限公司".into(),
        check_exemption: None,
    }
}

pub fn black_entry(subject: Subject, doc: &str, measures: &[&str]) -> ListEntry {
    ListEntry {
        category: Category::Black(BlackCategory::FoodAndDrug),
        subject,
        related_persons: vec![],
        basis: Basis {
            document_no: doc.into(),
            authority: "上海市市场监督管理局".into(),
            decided_on: date("2026-10-28"),
            legal_basis: "《中华人民共和国食品安全法》第一百三十五条".into(),
        },
        effective_from: date("2026-11-01"),
        expires_on: date("2029-11-01"),
        requested_measures: measures.iter().map(|m| mc(m)).collect(),
        findings: vec![],
        summary: "生产经营致病性微生物超标食品".into(),
    }
}

/// The legal representative of an organisation in the entries below (article 十四).
pub fn legal_rep(w: &World) -> RelatedPerson {
    RelatedPerson {
        role: RelatedRole::LegalRepresentative,
        person: w.person(LEGAL_REP_ID, "张三"),
    }
}

/// A 失信被执行人 entry (article 九's third group, with the finding 有履行能力但拒不履行)
/// naming the legal representative of an organisation subject: the entries article
/// 十一's travel and consumption restrictions serve.
pub fn judgment_entry(w: &World, subject: Subject, doc: &str, measures: &[&str]) -> ListEntry {
    let related = match subject {
        Subject::Organisation { .. } => vec![legal_rep(w)],
        Subject::Person(_) => vec![],
    };
    ListEntry {
        category: Category::Black(BlackCategory::DefyingJudgmentOrDecision),
        related_persons: related,
        findings: vec![Finding::AbleButRefuses],
        basis: Basis {
            document_no: doc.into(),
            authority: "上海市第一中级人民法院".into(),
            decided_on: date("2026-10-28"),
            legal_basis: "《中华人民共和国民事诉讼法》第二百六十六条；法释〔2017〕7号".into(),
        },
        ..black_entry(subject, doc, measures)
    }
}

pub fn red_entry(subject: Subject, doc: &str, measures: &[&str]) -> ListEntry {
    ListEntry {
        category: Category::Red(RedSource::GoodCreditClassification),
        requested_measures: measures.iter().map(|m| mc(m)).collect(),
        ..black_entry(subject, doc, &[])
    }
}

pub fn published_id(w: &World, code: u32, e: &ListEntry) -> EntryId {
    let _ = w;
    entry_id(region(code), e)
}

/// Shanghai lists ACME (black), initiates a punishment to all; Guangdong lists ACME red
/// too (an unrelated good record), and an evaluation exists; Gansu objects to a second
/// black entry, which is therefore suspended.
pub fn acme_world() -> (World, EntryId, EntryId) {
    let mut w = World::new(&[310000, 440000, 620000]);
    let e1 = judgment_entry(
        &w,
        org(ACME),
        "沪执〔2026〕12号",
        &["P-PROCUREMENT", "P-TRAVEL-AIR"],
    );
    w.accept("310000:pub", Body::ListEntryPublished(e1.clone()));
    let id1 = published_id(&w, 310000, &e1);
    let mut e2 = black_entry(org(ACME), "沪税处〔2026〕3号", &["P-PROCUREMENT"]);
    e2.category = Category::Black(BlackCategory::TaxEvasionOrFraud);
    w.accept("310000:pub", Body::ListEntryPublished(e2.clone()));
    let id2 = published_id(&w, 310000, &e2);
    w.accept(
        "310000:init",
        Body::JointActionInitiated(JointAction {
            reference: "沪联惩〔2026〕5号".into(),
            kind: ActionKind::Punishment,
            entry: id1,
            targets: Targets::AllMembers,
            measures: vec![mc("P-FISCAL-FUNDING"), mc("P-PROCUREMENT")],
            respond_by: date("2026-11-09"),
        }),
    );
    w.accept(
        "620000:obj",
        Body::ObjectionFiled {
            case_no: "甘异1".into(),
            target: ObjectionTarget::Entry(id2),
            grounds: "已补缴".into(),
            filed_on: date("2026-11-02"),
        },
    );
    w.accept(
        "440000:pub",
        Body::EvaluationPublished(Evaluation {
            subject: org(ACME),
            scheme: "tax-credit".into(),
            grade: Grade::Class(*b"D\0\0\0"),
            evaluated_on: date("2026-04-01"),
            valid_until: date("2027-04-01"),
        }),
    );
    (w, id1, id2)
}

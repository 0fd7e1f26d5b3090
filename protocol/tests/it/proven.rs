//! Proven answers end to end in memory: real logs of three regions, their trees and
//! maps, witnessed region heads and a cosigned federation checkpoint; answers gathered
//! the way a node gathers them and verified the way `credfed verify` does — then
//! attacked: fields changed and re-signed by the answering node (so that only the
//! recomputation can catch them), every single-bit flip of an evidence file, stale
//! regions, another manifest, an equivocating region.

use std::collections::BTreeMap;

use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::check::{Evidence, Verdict};
use credfed_protocol::checkpoint::{Checkpoint, SignedCheckpoint, origin, witness_name};
use credfed_protocol::envelope::{AppendPosition, seal, sign_body};
use credfed_protocol::federation::{
    MemoryLogs, ProofReport, ProvenAnswer, RegionStanding, assemble_proven_answer,
    federation_checkpoint, gather_proofs, verify_proven_answer,
};
use credfed_protocol::ids::RegionCode;
use credfed_protocol::ledger::EquivocationProof;
use credfed_protocol::record::*;
use credfed_protocol::time::Timestamp;

use crate::fixture::*;

/// A federation whose heads are witnessed and cosigned.
struct Proving {
    w: World,
    logs: MemoryLogs,
    leaves: Vec<Checkpoint>,
    note: SignedCheckpoint,
    exclusions: Vec<EquivocationProof>,
    /// The federation checkpoint's quorum time (seconds).
    at: u64,
}

const SH: u32 = 310000;
const GD: u32 = 440000;
const GS: u32 = 620000;

/// Shanghai lists ACME twice (a judgment entry with a joint punishment, a tax entry that
/// Gansu's objection suspends); Guangdong publishes a D-class tax evaluation of it
/// (`fixture::acme_world`).
fn world() -> World {
    acme_world().0
}

fn seconds(t: Timestamp) -> u64 {
    (t.0 / 1000) as u64
}

/// Witnessed heads of every region signed at `signed_at` (per region, defaulting to
/// `at`), excluding `excluded`, under a federation checkpoint every member cosigned at
/// `at`.
fn proving(
    w: World,
    at: u64,
    signed_at: &BTreeMap<u32, u64>,
    excluded: &[(u32, EquivocationProof)],
) -> Proving {
    let logs: BTreeMap<RegionCode, Vec<Vec<u8>>> = w
        .manifest
        .members
        .iter()
        .map(|m| (m.region, w.ledger.range(m.region, 1, usize::MAX)))
        .collect();
    let logs = MemoryLogs::new(logs).unwrap();
    let leaves: Vec<Checkpoint> = w
        .manifest
        .members
        .iter()
        .map(|m| {
            let o = origin(FED, m.region);
            if excluded.iter().any(|(c, _)| region(*c) == m.region) {
                return Checkpoint::excluded(o);
            }
            let (size, root, map) = logs.head(m.region);
            let t = signed_at.get(&m.region.code()).copied().unwrap_or(at);
            Checkpoint::with_map_at(o, size, root, map, t)
        })
        .collect();
    let mut note = SignedCheckpoint {
        checkpoint: federation_checkpoint(&w.manifest, &leaves),
        signatures: vec![],
    };
    for (r, k) in &w.nodes {
        note.cosign(&witness_name(FED, *r), k, at);
    }
    Proving {
        exclusions: excluded.iter().map(|(_, p)| p.clone()).collect(),
        w,
        logs,
        leaves,
        note,
        at,
    }
}

fn acme() -> SubjectKey {
    SubjectKey::Uscc(ACME.into())
}

const CLEAN: &str = "91110000100000000R";

fn prove(p: &Proving, subject: &SubjectKey, domain: MeasureDomain) -> ProvenAnswer {
    let (regions, evidence) = gather_proofs(&p.logs, &p.w.manifest, subject, &p.leaves).unwrap();
    assemble_proven_answer(
        &p.w.manifest,
        &p.w.catalogue,
        subject,
        domain,
        &p.note,
        &p.leaves,
        regions,
        p.exclusions.clone(),
        evidence,
        None,
        region(GD),
        &p.w.nodes[&region(GD)],
    )
    .unwrap()
}

fn verify(p: &Proving, answer: &ProvenAnswer, now: u64, max_age: u64) -> ProofReport {
    verify_proven_answer(answer, &p.w.manifest, &p.w.catalogue, now, max_age)
}

fn failures(r: &ProofReport) -> Vec<String> {
    let mut f = r.failures.clone();
    f.extend(r.answer.failures.iter().cloned());
    f
}

/// Re-signs a changed answer as the answering node: what a lying node could produce.
fn resign(p: &Proving, mut a: ProvenAnswer) -> ProvenAnswer {
    a.sign(&p.w.nodes[&region(GD)], FED);
    a
}

fn standard() -> Proving {
    let w = world();
    let at = seconds(w.now) + 60;
    proving(w, at, &BTreeMap::new(), &[])
}

#[test]
fn a_listed_and_an_unlisted_answer_verify_and_say_what_is_true() {
    let p = standard();
    let listed = prove(&p, &acme(), MeasureDomain::Procurement);
    let r = verify(&p, &listed, p.at + 5, 60);
    assert!(r.ok(), "{:?}", failures(&r));
    assert_eq!(r.verdict, Some(Verdict::MeasuresApply));
    assert_eq!(
        listed.answer.as_of.0,
        (p.at * 1000) as i64,
        "as_of is the cosigned time"
    );
    let standing: BTreeMap<u32, (RegionStanding, usize)> = r
        .regions
        .iter()
        .map(|x| (x.region.code(), (x.standing, x.naming_records)))
        .collect();
    // Shanghai names ACME twice; Guangdong's evaluation names it; Gansu's objection is
    // about Shanghai's entry (a record the answer rests on, not naming ACME).
    assert_eq!(standing[&SH], (RegionStanding::AllShown, 2));
    assert_eq!(standing[&GD], (RegionStanding::AllShown, 1));
    assert_eq!(standing[&GS], (RegionStanding::AllShown, 0));
    assert!(!listed.answer.mandatory.is_empty());
    assert!(
        listed
            .answer
            .withheld
            .iter()
            .any(|w| w.reason.contains("二十二"))
    );

    let clean = prove(
        &p,
        &SubjectKey::Uscc(CLEAN.into()),
        MeasureDomain::Procurement,
    );
    let r = verify(&p, &clean, p.at + 5, 60);
    assert!(r.ok(), "{:?}", failures(&r));
    assert_eq!(r.verdict, Some(Verdict::Clear));
    assert!(
        r.regions
            .iter()
            .all(|x| x.standing == RegionStanding::ProvenAbsent)
    );
    // The evidence file round-trips.
    assert_eq!(ProvenAnswer::from_file(&clean.to_file()).unwrap(), clean);
}

/// What a lying answering node might sign: each refused by recomputation or by the
/// proofs, with the field named.
#[test]
fn forgeries_re_signed_by_the_answering_node_are_refused() {
    let p = standard();
    let listed = prove(&p, &acme(), MeasureDomain::Procurement);
    let clean = prove(
        &p,
        &SubjectKey::Uscc(CLEAN.into()),
        MeasureDomain::Procurement,
    );
    let now = p.at + 5;
    let refused = |a: ProvenAnswer, what: &str| {
        let r = verify(&p, &resign(&p, a), now, 60);
        let f = failures(&r);
        assert!(!r.verified(), "{what}: verified");
        assert!(f.iter().any(|x| x.contains(what)), "{what}: {f:?}");
    };
    // The verdict flipped both ways: a listed subject shown clear, a clean one framed.
    let mut a = listed.clone();
    a.answer.verdict = Verdict::Clear;
    refused(
        a,
        "verdict: the answer says clear, the evidence gives measures_apply",
    );
    let mut a = clean.clone();
    a.answer.verdict = Verdict::MeasuresApply;
    refused(
        a,
        "verdict: the answer says measures_apply, the evidence gives clear",
    );
    // as_of moved before the entries' start, entries and measures dropped to match.
    let mut a = listed.clone();
    a.answer.as_of = noon("2026-10-01");
    a.answer.entries.clear();
    a.answer.mandatory.clear();
    a.answer.recommended.clear();
    a.answer.withheld.clear();
    a.answer.evaluations.clear();
    a.answer.verdict = Verdict::Clear;
    refused(a, "as_of: the answer says");
    // Entries dropped alone; a measure dropped alone.
    let mut a = listed.clone();
    a.answer.entries.clear();
    refused(a, "and the answer omits it");
    let mut a = listed.clone();
    a.answer.mandatory.pop();
    refused(a, "and the answer omits it");
    // A measure's legal basis, title, kind or roles changed.
    let mut a = listed.clone();
    a.answer.mandatory[0].basis = "no statute".into();
    refused(a, "basis");
    let mut a = listed.clone();
    a.answer.mandatory[0].title_zh = "无".into();
    refused(a, "title");
    let mut a = listed.clone();
    a.answer.withheld[0].reason = "because".into();
    refused(a, "reason withheld");
    // Freshness and truncation are recomputed too.
    let mut a = clean.clone();
    a.answer.freshness[0].head_seq += 1;
    refused(a, "freshness");
    let mut a = clean.clone();
    a.answer.truncated = true;
    refused(a, "truncated");
    // Shanghai's records withheld: the map lists them.
    let mut a = listed.clone();
    a.regions[0].subject.positions.clear();
    a.regions[0].subject.inclusion.clear();
    refused(a, "310000");
    // Gansu's objection withheld (a suspended entry would show active): its proof
    // dropped, or its envelope dropped from the evidence.
    let mut a = listed.clone();
    let gs = a
        .regions
        .iter_mut()
        .find(|x| x.region == region(GS))
        .unwrap();
    gs.related.clear();
    refused(a, "620000");
    // An authentic envelope nothing lists, added to the evidence.
    let mut a = clean.clone();
    let extra = p.w.ledger.range(region(SH), 7, 1).remove(0);
    a.answer.evidence.push(Evidence {
        pos: credfed_protocol::state::RecordPos {
            region: region(SH),
            seq: 7,
        },
        envelope: extra,
    });
    a.answer.evidence.sort_by_key(|e| e.pos);
    refused(a, "neither listed by a proof nor an author's registration");
    // A cosignature removed (the quorum is all three with f = 0 and three members? no:
    // two) and the file claiming the older quorum time.
    let mut a = listed.clone();
    a.answered_by = region(SH);
    refused(a, "signature");
}

/// A field changed without the answering node's signature — even one whose new value
/// would still be true (another domain) — is refused.
#[test]
fn a_field_changed_in_transit_is_refused_by_the_answering_nodes_signature() {
    let p = standard();
    let mut a = prove(
        &p,
        &SubjectKey::Uscc(CLEAN.into()),
        MeasureDomain::Procurement,
    );
    a.answer.domain = MeasureDomain::Financing;
    let r = verify(&p, &a, p.at + 5, 60);
    assert!(
        failures(&r)
            .iter()
            .any(|f| f.starts_with("signature: not 440000")),
        "{:?}",
        failures(&r)
    );
}

/// Every single-bit flip of a listed and an unlisted evidence file is refused, by
/// decoding or by verification. No field is left unauthenticated (docs/protocol.md,
/// "Proven answers": the list of unauthenticated fields is empty).
#[test]
fn every_single_bit_flip_of_an_evidence_file_is_refused() {
    let p = standard();
    for subject in [acme(), SubjectKey::Uscc(CLEAN.into())] {
        let file = prove(&p, &subject, MeasureDomain::Procurement).to_file();
        let original = ProvenAnswer::from_file(&file).unwrap();
        assert!(verify(&p, &original, p.at + 5, 60).ok());
        let chunks: Vec<std::ops::Range<usize>> = {
            let half = file.len() / 2;
            vec![0..half, half..file.len()]
        };
        let verified: usize = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|range| {
                    let (file, p) = (&file, &p);
                    s.spawn(move || {
                        let mut verified = 0;
                        for i in range {
                            for bit in 0..8 {
                                let mut bad = file.clone();
                                bad[i] ^= 1 << bit;
                                if let Ok(a) = ProvenAnswer::from_file(&bad)
                                    && verify(p, &a, p.at + 5, 60).verified()
                                {
                                    verified += 1;
                                    eprintln!("byte {i} bit {bit} still verifies");
                                }
                            }
                        }
                        verified
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(
            verified,
            0,
            "{} byte file: flips that still verify",
            file.len()
        );
    }
}

/// The answer is true at its cosigned time: older than the verifier's bound, it is
/// refused; a region whose head is older than the bound (cut off, so its node could not
/// get newer checkpoints witnessed) leaves the answer verified but partial, with the
/// region and its age named.
#[test]
fn stale_answers_and_stale_regions_are_refused_or_reported() {
    let p = standard();
    let a = prove(
        &p,
        &SubjectKey::Uscc(CLEAN.into()),
        MeasureDomain::Procurement,
    );
    let r = verify(&p, &a, p.at + 4000, 3600);
    assert!(!r.verified());
    assert!(
        failures(&r)
            .iter()
            .any(|f| f.starts_with("freshness: the federation checkpoint was cosigned 4000s")),
        "{:?}",
        failures(&r)
    );
    // Gansu's head was signed 248 s before the checkpoint: cut off.
    let w = world();
    let at = seconds(w.now) + 600;
    let p = proving(w, at, &BTreeMap::from([(GS, at - 248)]), &[]);
    let a = prove(
        &p,
        &SubjectKey::Uscc(CLEAN.into()),
        MeasureDomain::Procurement,
    );
    let r = verify(&p, &a, at + 2, 60);
    assert!(r.verified(), "{:?}", failures(&r));
    assert!(!r.ok());
    assert_eq!(r.partial_regions(), vec![region(GS)]);
    let gs = r.regions.iter().find(|x| x.region == region(GS)).unwrap();
    assert_eq!(gs.age_seconds, Some(250));
    assert!(gs.stale);
    // Within a bound of 300 s it is fresh.
    assert!(verify(&p, &a, at + 2, 300).ok());
}

/// Verified against another manifest (a version the note does not name) the answer is
/// refused, naming both versions.
#[test]
fn an_answer_under_another_manifest_is_refused() {
    let p = standard();
    let a = prove(&p, &acme(), MeasureDomain::Procurement);
    let mut m2 = p.w.manifest.clone();
    m2.version = 2;
    let r = verify_proven_answer(&a, &m2, &p.w.catalogue, p.at + 5, 60);
    assert!(
        failures(&r).iter().any(|f| f.starts_with(
            "manifest: the federation checkpoint was cosigned under manifest version 1"
        )),
        "{:?}",
        failures(&r)
    );
}

/// A region that signed two envelopes at one position is excluded by the federation
/// checkpoint: the answer carries the proof, says the region is excluded and where it
/// equivocated, and proves nothing about its log — verified, but partial.
#[test]
fn an_equivocating_region_is_excluded_with_its_proof() {
    let w = world();
    // Guangdong's node signs another envelope at the position of its evaluation.
    let gd = region(GD);
    let held = w.ledger.range(gd, 1, usize::MAX);
    let seq = held.len() as u64;
    let first = held.last().unwrap().clone();
    let body = Body::EvaluationRevoked {
        evaluation: EvaluationId(credfed_protocol::crypto::Hash256([1; 32])),
        reason: "forged".into(),
    };
    let (bytes, sig) = sign_body(FED, &w.depts[&dept("440000:pub")], &body);
    let prev = credfed_protocol::envelope::decode_envelope(FED, &held[held.len() - 2])
        .unwrap()
        .hash;
    let second = seal(
        FED,
        &w.nodes[&gd],
        &AppendPosition {
            region: gd,
            seq,
            prev_hash: prev,
            timestamp: w.now,
        },
        dept("440000:pub"),
        bytes,
        sig,
    )
    .unwrap();
    let proof = EquivocationProof {
        region: gd,
        seq,
        first,
        second,
    };
    let at = seconds(w.now) + 60;
    let p = proving(w, at, &BTreeMap::new(), &[(GD, proof.clone())]);
    let a = prove(&p, &acme(), MeasureDomain::Procurement);
    let r = verify(&p, &a, at + 5, 60);
    assert!(r.verified(), "{:?}", failures(&r));
    assert!(!r.ok());
    let x = r.regions.iter().find(|x| x.region == gd).unwrap();
    assert_eq!(
        (x.standing, x.equivocated_at),
        (RegionStanding::Excluded, Some(seq))
    );
    assert!(
        a.answer
            .freshness
            .iter()
            .any(|f| f.region == gd && f.equivocated)
    );
    assert!(
        a.answer.evaluations.is_empty(),
        "nothing of Guangdong's log is shown"
    );
    // An exclusion needs a valid proof against that region.
    let mut bad = a.clone();
    bad.exclusions[0].second = bad.exclusions[0].first.clone();
    let r = verify(&p, &resign(&p, bad), at + 5, 60);
    assert!(
        failures(&r)
            .iter()
            .any(|f| f.contains("excluded without a valid proof")),
        "{:?}",
        failures(&r)
    );
}

/// Article 二十一 on application: Shanghai's entry, an application recorded in Guangdong
/// (whose log sorts after Shanghai's) and Shanghai's decision to repair. The proven answer
/// says clear and verifies; a node that drops the decision from the evidence to make the
/// subject look listed — or drops the application so that the decision cannot apply — is
/// caught by the map (every record naming the entry is proven present).
#[test]
fn a_repair_on_application_is_proven_and_cannot_be_hidden() {
    let mut w = World::new(&[SH, GD, GS]);
    let e = black_entry(org(ACME), "沪市监处〔2026〕12号", &["P-PROCUREMENT"]);
    w.accept("310000:pub", Body::ListEntryPublished(e.clone()));
    let id = published_id(&w, SH, &e);
    w.now = noon("2027-11-02");
    w.accept(
        "440000:obj",
        Body::RepairApplied {
            entry: id,
            case_no: "粤信修〔2027〕1号".into(),
            basis: RepairBasis::CorrectedWithinPeriod,
            grounds: "已整改".into(),
            filed_on: date("2027-11-02"),
        },
    );
    w.accept(
        "310000:pub",
        Body::RepairDecided {
            entry: id,
            application: repair_application_id(&dept("440000:obj"), "粤信修〔2027〕1号"),
            outcome: RepairOutcome::Repaired,
            reason: "准予修复".into(),
        },
    );
    let fold = w.ledger.entry(&id).unwrap();
    let decided_at = fold.repaired.as_ref().unwrap().1.pos;
    let applied_at = fold.repairs.values().next().unwrap().filed.pos;
    let at = seconds(w.now) + 60;
    let p = proving(w, at, &BTreeMap::new(), &[]);
    let answer = prove(&p, &acme(), MeasureDomain::Procurement);
    let r = verify(&p, &answer, p.at + 5, 60);
    assert!(r.ok(), "{:?}", failures(&r));
    assert_eq!(r.verdict, Some(Verdict::Clear));
    for (what, pos) in [("decision", decided_at), ("application", applied_at)] {
        let mut a = answer.clone();
        let before = a.answer.evidence.len();
        a.answer.evidence.retain(|e| e.pos != pos);
        assert_eq!(
            a.answer.evidence.len() + 1,
            before,
            "the {what} is in the evidence"
        );
        // Claim exactly what the rest of the evidence gives (listed, measures apply),
        // so that only the proof of completeness can catch the lie.
        let (forged, _) = credfed_protocol::check::recompute_answer(
            &p.w.manifest,
            &p.w.catalogue,
            &a.answer.subject,
            a.answer.domain,
            a.answer.as_of,
            a.answer.freshness.clone(),
            a.answer.evidence.clone(),
        );
        assert_eq!(
            forged.verdict,
            Verdict::MeasuresApply,
            "hiding the {what} lists the subject"
        );
        a.answer = forged;
        let r = verify(&p, &resign(&p, a), p.at + 5, 60);
        assert!(
            !r.verified(),
            "the {what} was hidden and the answer verified"
        );
        let f = failures(&r);
        assert!(!f.is_empty(), "{f:?}");
    }
}

/// Article 四: a commitment breached in Shanghai is part of Guangdong's proven answer for
/// the subject; a node that drops the breach (or the commitment) from the evidence and
/// claims what the rest gives is caught: the map lists every record about the subject
/// and the commitment.
#[test]
fn a_breached_commitment_is_proven_and_cannot_be_hidden() {
    let mut w = World::new(&[SH, GD, GS]);
    let made = Commitment {
        subject: org(ACME),
        acceptance_no: "沪许受〔2026〕1号".into(),
        matter: "食品经营许可证新办".into(),
        waived: vec!["场所平面图".into()],
        made_on: date("2026-11-02"),
        due_on: date("2026-11-20"),
    };
    w.accept("310000:pub", Body::CommitmentMade(made));
    w.now = noon("2026-11-23");
    w.accept(
        "310000:pub",
        Body::CommitmentSettled {
            commitment: commitment_id(&dept("310000:pub"), "沪许受〔2026〕1号"),
            outcome: CommitmentOutcome::Breached,
            settled_on: date("2026-11-23"),
            note: "逾期未补正".into(),
        },
    );
    let fold = w
        .ledger
        .commitment(&commitment_id(&dept("310000:pub"), "沪许受〔2026〕1号"))
        .unwrap();
    let made_at = fold.made.pos;
    let breached_at = fold.settled.as_ref().unwrap().origin.pos;
    let at = seconds(w.now) + 60;
    let p = proving(w, at, &BTreeMap::new(), &[]);
    let answer = prove(&p, &acme(), MeasureDomain::Licensing);
    let r = verify(&p, &answer, p.at + 5, 60);
    assert!(r.ok(), "{:?}", failures(&r));
    assert_eq!(answer.answer.commitments.len(), 1);
    assert_eq!(
        answer.answer.commitments[0].state,
        credfed_protocol::state::CommitmentState::Breached
    );
    assert_eq!(r.verdict, Some(Verdict::NothingApplies));
    // A file round trip keeps the commitment.
    let back = ProvenAnswer::from_file(&answer.to_file()).unwrap();
    assert_eq!(back.answer.commitments, answer.answer.commitments);
    for (what, pos) in [("breach", breached_at), ("commitment", made_at)] {
        let mut a = answer.clone();
        a.answer.evidence.retain(|e| e.pos != pos);
        let (forged, _) = credfed_protocol::check::recompute_answer(
            &p.w.manifest,
            &p.w.catalogue,
            &a.answer.subject,
            a.answer.domain,
            a.answer.as_of,
            a.answer.freshness.clone(),
            a.answer.evidence.clone(),
        );
        assert_ne!(
            forged.commitments, answer.answer.commitments,
            "hiding the {what} changes what the answer shows"
        );
        a.answer = forged;
        let r = verify(&p, &resign(&p, a), p.at + 5, 60);
        assert!(
            !r.verified(),
            "the {what} was hidden and the answer verified"
        );
    }
    // Claiming the breach away while keeping the evidence does not verify either.
    let mut a = answer.clone();
    a.answer.commitments.clear();
    a.answer.verdict = Verdict::Clear;
    let r = verify(&p, &resign(&p, a), p.at + 5, 60);
    assert!(!r.verified());
    assert!(
        failures(&r).iter().any(|f| f.contains("commitment")),
        "{:?}",
        failures(&r)
    );
}

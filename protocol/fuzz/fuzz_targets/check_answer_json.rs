//! Check answers, proven answers and evidence against a member (`credfed
//! verify-evidence`) arrive as JSON at the offline verifier: parsing and verifying never
//! panic. The seed manifest must parse (a test below), or nothing past parsing would be
//! fuzzed.
#![no_main]
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::check::{CheckAnswer, verify_answer};
use credfed_protocol::federation::{ProvenAnswer, verify_proven_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 1 << 20 {
        return;
    }
    if let Ok(answer) = serde_json::from_slice::<CheckAnswer>(data) {
        let catalogue = Catalogue::embedded().unwrap();
        let manifest: credfed_protocol::manifest::Manifest = match serde_json::from_str(include_str!("../seed_manifest.json")) {
            Ok(m) => m,
            Err(_) => return,
        };
        let _ = verify_answer(&answer, &manifest, &catalogue);
    }
    if let Ok(proven) = serde_json::from_slice::<ProvenAnswer>(data) {
        let catalogue = Catalogue::embedded().unwrap();
        let manifest: credfed_protocol::manifest::Manifest = match serde_json::from_str(include_str!("../seed_manifest.json")) {
            Ok(m) => m,
            Err(_) => return,
        };
        let _ = verify_proven_answer(&proven, &manifest, &catalogue, 1_800_000_000, 3600);
    }
    if let Ok(p) = serde_json::from_slice::<credfed_protocol::ledger::EquivocationProof>(data) {
        let manifest: credfed_protocol::manifest::Manifest = match serde_json::from_str(include_str!("../seed_manifest.json")) {
            Ok(m) => m,
            Err(_) => return,
        };
        let _ = credfed_protocol::ledger::verify_equivocation(&manifest, &manifest.federation_id, &p.first, &p.second);
    }
});

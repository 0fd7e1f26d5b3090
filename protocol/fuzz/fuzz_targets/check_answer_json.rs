//! Check answers arrive as JSON at the offline verifier: parsing and verifying never panic.
#![no_main]
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::check::{CheckAnswer, verify_answer};
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
});

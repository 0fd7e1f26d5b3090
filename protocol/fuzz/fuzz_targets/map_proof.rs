//! Map proofs and evidence files: the decoders never panic, a decoded proof re-encodes
//! to the same bytes, and no arbitrary proof verifies against a root it was not made for.
#![no_main]
use credfed_protocol::crypto::Hash256;
use credfed_protocol::federation::ProvenAnswer;
use credfed_protocol::map::{MapProof, verify_map_proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = MapProof::decode(data) {
        assert_eq!(p.encode(), data, "map proof encoding is canonical");
        // The all-ones root is no SHA-256 output anyone knows a preimage of.
        assert!(verify_map_proof(&Hash256([0xff; 32]), &Hash256([7; 32]), &p).is_err());
    }
    if let Ok(answer) = ProvenAnswer::from_file(data) {
        let _ = answer.to_file();
    }
});

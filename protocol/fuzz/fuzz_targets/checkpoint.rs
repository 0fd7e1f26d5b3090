//! Checkpoint notes and proof verification: never panic, and nothing arbitrary verifies.
#![no_main]
use credfed_protocol::checkpoint::SignedCheckpoint;
use credfed_protocol::crypto::{Hash256, Keypair};
use credfed_protocol::merkle::{verify_consistency, verify_inclusion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(s) = SignedCheckpoint::parse(text)
    {
        let key = Keypair::from_secret([1; 32]).public();
        assert!(s.verify_log_signature(&s.checkpoint.origin, &key).is_err());
        let _ = s.verify_cosignature("w", &key);
        let _ = s.encode();
    }
    // Arbitrary bytes as a proof: sizes from the first 16 bytes, hashes from the rest.
    if data.len() >= 16 {
        let a = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
        let b = u64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
        let proof: Vec<Hash256> = data[16..]
            .chunks_exact(32)
            .map(|c| Hash256(c.try_into().unwrap_or([0; 32])))
            .collect();
        let h = Hash256([0; 32]);
        let _ = verify_inclusion(a, b, &h, &proof, &h);
        let _ = verify_consistency(a, b, &h, &h, &proof);
    }
});

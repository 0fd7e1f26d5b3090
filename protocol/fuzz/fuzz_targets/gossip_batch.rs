//! Gossip batch decoder: never panics; anything accepted is canonical and within limits.
#![no_main]
use credfed_protocol::gossip::{MAX_GOSSIP_BYTES, MAX_GOSSIP_ENVELOPES, decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelopes) = decode_batch(data) {
        assert!(!envelopes.is_empty() && envelopes.len() <= MAX_GOSSIP_ENVELOPES);
        assert!(data.len() <= MAX_GOSSIP_BYTES);
        assert_eq!(encode_batch(&envelopes).unwrap(), data, "batch encoding is canonical");
    }
});

//! Envelope decoder: never panics; anything accepted is canonical.
#![no_main]
use credfed_protocol::{codec, envelope::decode_envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode_envelope("fuzz", data) {
        assert_eq!(codec::encode(&v.envelope).unwrap(), data);
    }
});

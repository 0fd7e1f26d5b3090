//! Body decoder and field validation: never panic; anything accepted is canonical.
#![no_main]
use credfed_protocol::record::Body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Body::decode(data) {
        let _ = b.validate();
        assert_eq!(b.encode(), data);
    }
});

//! Open-data feed lines (docs/public.md): a mirror reads JSON lines from a node it does
//! not trust; whatever they hold, the verifier never panics, refuses lines over the size
//! limit before parsing them, and never accepts a line out of order.
#![no_main]
use credfed_protocol::crypto::Keypair;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::open_data::{FeedLine, MAX_FEED_LINE_BYTES, RegionFeedVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let region = RegionCode::new(310000, "region").unwrap();
    let node = Keypair::from_secret([7; 32]);
    let mut v = RegionFeedVerifier::with_keys("fuzz", region, node.public(), node.public());
    for line in data.split(|b| *b == b'\n') {
        if line.len() > MAX_FEED_LINE_BYTES {
            continue;
        }
        let Ok(parsed) = serde_json::from_slice::<FeedLine>(line) else {
            continue;
        };
        let before = v.size();
        match v.apply(&parsed) {
            Ok(_) => assert_eq!(v.size(), before + 1),
            Err(_) => assert_eq!(v.size(), before),
        }
    }
});

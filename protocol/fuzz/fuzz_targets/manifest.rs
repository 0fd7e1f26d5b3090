//! Manifest decoder and verification: never panic.
#![no_main]
use credfed_protocol::crypto::{PublicKey, Signature};
use credfed_protocol::manifest::SignedManifest;
use credfed_protocol::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signed = SignedManifest { manifest: data.to_vec(), signature: Signature([0; 64]) };
    let _ = signed.verify(&PublicKey([0x11; 32]), Timestamp(0));
});

//! Person-key evaluation messages: decoding never panics, and whatever decodes is
//! evaluated or verified without panicking.
#![no_main]
use credfed_protocol::oprf::{self, ShareKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = oprf::decode_request(data) {
        let share = ShareKey::from_bytes(1, [7; 32]).expect("a canonical scalar");
        if let Ok(scaled) = oprf::scaled_share(&share, &request.members) {
            let _ = oprf::evaluate_share(&scaled, &request.blinded, &[3; 64]);
        }
    }
    if let Ok(oprf::EvaluationResponse::Evaluated { member, evaluated, proof }) =
        oprf::decode_response(data)
    {
        let share = ShareKey::from_bytes(1, [7; 32]).expect("a canonical scalar");
        let _ = oprf::verify_share_evaluation(member, &share.public(), &evaluated, &evaluated, &proof);
    }
});

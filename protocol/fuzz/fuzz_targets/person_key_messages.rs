//! Person-key evaluation, key-ceremony and budget-report messages: decoding never panics,
//! and whatever decodes is evaluated, verified or taken in by a ceremony without
//! panicking.
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
    if let Ok(alert) = oprf::alert::decode_alert(data) {
        let key = credfed_protocol::crypto::Keypair::from_secret([9; 32]);
        let _ = alert.verify(&key.public(), "fuzz");
    }
    if let Ok(message) = oprf::ceremony::decode_message(data) {
        let regions = [
            credfed_protocol::ids::RegionCode::new(110000, "r").expect("a province"),
            credfed_protocol::ids::RegionCode::new(310000, "r").expect("a province"),
        ];
        let plan = oprf::ceremony::CeremonyPlan::generate("fuzz", 2, &regions).expect("a plan");
        let mut rng = Fixed;
        if let Ok((mut c, _)) =
            oprf::ceremony::Ceremony::start(plan.clone(), regions[0], None, &mut rng)
        {
            let _ = c.receive(message.clone());
            let _ = c.round2();
            let _ = c.finish(1, 1);
        }
        // The same message at a member being repaired (a newcomer at index 3 of a key
        // whose public shares are G and 2G).
        let g = |n: u8| {
            let mut scalar = [0u8; 32];
            scalar[0] = n;
            ShareKey::from_bytes(1, scalar).expect("a canonical scalar").public()
        };
        let current = credfed_protocol::manifest::PersonKeyShares {
            threshold: 2,
            evaluations_per_day: 1,
            burst: 1,
            shares: vec![
                credfed_protocol::manifest::PersonKeyShare { region: regions[0], index: 1, public_share: g(1) },
                credfed_protocol::manifest::PersonKeyShare { region: regions[1], index: 2, public_share: g(2) },
            ],
        };
        let newcomer = credfed_protocol::ids::RegionCode::new(440000, "r").expect("a province");
        if let Ok(plan) = oprf::repair::RepairPlan::new("fuzz", &current, newcomer, None)
            && let Ok((mut r, _)) = oprf::repair::Repair::start(plan, newcomer, None, &current, &mut rng)
        {
            let _ = r.receive(message);
            let _ = r.finish();
        }
    }
});

/// Not random: the fuzzer explores messages, not keys.
struct Fixed;
impl oprf::keygen::frost::rand_core::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        7
    }
    fn next_u64(&mut self) -> u64 {
        7
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(7);
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), oprf::keygen::frost::rand_core::Error> {
        dest.fill(7);
        Ok(())
    }
}
impl oprf::keygen::frost::rand_core::CryptoRng for Fixed {}

//! RFC 9497 appendix A.1.1 (ristretto255-SHA512) vectors, and the threshold combination.

use super::*;

fn h32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

fn scalar(s: &str) -> Scalar {
    Option::from(Scalar::from_canonical_bytes(h32(s))).unwrap()
}

const SEED: &str = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";
const KEY_INFO: &[u8] = b"test key";
const BLIND_1: &str = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";
const BLIND_2: &str = "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e";
const INPUT_2: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// OPRF mode, test vectors 1 and 2: the key derived from the seed, the blinded element,
/// the evaluation and the output.
#[test]
fn rfc9497_oprf_mode_vectors() {
    let (sk, _) = derive_key_pair(&h32(SEED), KEY_INFO, false).unwrap();
    assert_eq!(
        hex::encode(sk),
        "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e"
    );
    let k = scalar(&hex::encode(sk));
    let cases = [
        (
            hex::decode("00").unwrap(),
            "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
            "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
            "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
        ),
        (
            hex::decode(INPUT_2).unwrap(),
            "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
            "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
            "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
        ),
    ];
    for (input, blinded_hex, evaluated_hex, output_hex) in cases {
        let (b, blinded) = blind_with(&input, scalar(BLIND_1)).unwrap();
        assert_eq!(hex::encode(blinded.0), blinded_hex);
        let evaluated = k * decode_element(&blinded, "b").unwrap();
        assert_eq!(hex::encode(encode(&evaluated)), evaluated_hex);
        assert_eq!(
            hex::encode(finalize(&input, &b, &evaluated).unwrap()),
            output_hex
        );
    }
}

/// VOPRF mode, test vectors 1–3: the proof of a share's evaluation is the RFC's batched
/// DLEQ proof (same bytes for the same proof randomness), and it verifies.
#[test]
fn rfc9497_voprf_mode_proof_vectors() {
    let (sk, pk) = derive_key_pair(&h32(SEED), KEY_INFO, true).unwrap();
    assert_eq!(
        hex::encode(sk),
        "e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909"
    );
    assert_eq!(
        hex::encode(pk.0),
        "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e"
    );
    // The member index does not enter the proof; 1 is arbitrary.
    let share = ShareKey::from_bytes(1, sk).unwrap();
    assert_eq!(share.public(), pk);
    let input_1 = hex::decode("00").unwrap();
    let input_2 = hex::decode(INPUT_2).unwrap();
    // (inputs with their blinds, proof randomness, proof, outputs)
    type Case<'a> = (Vec<(&'a [u8], &'a str)>, &'a str, &'a str, Vec<&'a str>);
    let cases: [Case; 3] = [
        (
            vec![(&input_1, BLIND_1)],
            BLIND_2,
            "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd066d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d",
            vec![
                "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
            ],
        ),
        (
            vec![(&input_2, BLIND_1)],
            BLIND_2,
            "401a0da6264f8cf45bb2f5264bc31e109155600babb3cd4e5af7d181a2c9dc0a67154fabf031fd936051dec80b0b6ae29c9503493dde7393b722eafdf5a50b02",
            vec![
                "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
            ],
        ),
        (
            vec![(&input_1, BLIND_1), (&input_2, BLIND_2)],
            "419c4f4f5052c53c45f3da494d2b67b220d02118e0857cdbcf037f9ea84bbe0c",
            "cc203910175d786927eeb44ea847328047892ddf8590e723c37205cb74600b0a5ab5337c8eb4ceae0494c2cf89529dcf94572ed267473d567aeed6ab873dee08",
            vec![
                "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
                "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
            ],
        ),
    ];
    for (inputs, proof_r, proof_hex, outputs) in cases {
        let blinds: Vec<(Blind, Element)> = inputs
            .iter()
            .map(|(input, b)| blind_in(input, scalar(b), VOPRF_CONTEXT).unwrap())
            .collect();
        let blinded: Vec<Element> = blinds.iter().map(|(_, e)| *e).collect();
        let (evaluated, proof) =
            evaluate_rfc_batch_with(&share, &blinded, scalar(proof_r)).unwrap();
        assert_eq!(
            format!("{}{}", hex::encode(proof.c), hex::encode(proof.s)),
            proof_hex
        );
        let c_points: Vec<RistrettoPoint> = blinded
            .iter()
            .map(|e| decode_element(e, "blinded").unwrap())
            .collect();
        let points =
            verify_rfc_batch_decoded(1, &pk, &blinded, &c_points, &evaluated, &proof).unwrap();
        // The evaluation a member sends is the same for any batch size; only a single
        // element's proof is credfed's own (it verifies, and not as the RFC's).
        let (own_evaluated, own_proof) =
            evaluate_share_with(&share, &blinded, scalar(proof_r)).unwrap();
        assert_eq!(own_evaluated, evaluated);
        verify_share_evaluation(1, &pk, &blinded, &own_evaluated, &own_proof).unwrap();
        if blinded.len() == 1 {
            assert_ne!(own_proof, proof);
            assert!(
                verify_rfc_batch_decoded(1, &pk, &blinded, &c_points, &evaluated, &own_proof)
                    .is_err()
            );
            assert!(verify_share_evaluation(1, &pk, &blinded, &evaluated, &proof).is_err());
        }
        for (((input, _), (b, _)), (point, output)) in
            inputs.iter().zip(&blinds).zip(points.iter().zip(&outputs))
        {
            assert_eq!(hex::encode(finalize(input, b, point).unwrap()), *output);
        }
    }
}

fn shares_of(k: Scalar, t: usize, n: u16, coeff_seed: u8) -> Vec<ShareKey> {
    let coeffs: Vec<Scalar> =
        std::iter::once(k)
            .chain((1..t).map(|j| {
                Scalar::from_bytes_mod_order_wide(&[coeff_seed.wrapping_add(j as u8); 64])
            }))
            .collect();
    (1..=n)
        .map(|i| {
            let x = Scalar::from(i);
            let mut y = Scalar::ZERO;
            for c in coeffs.iter().rev() {
                y = y * x + c;
            }
            ShareKey::from_bytes(i, y.to_bytes()).unwrap()
        })
        .collect()
}

fn threshold_output(input: &[u8], members: &[&ShareKey]) -> [u8; 64] {
    let (b, blinded) = blind(input, &[7u8; 64]).unwrap();
    let parts: Vec<(u16, RistrettoPoint)> = members
        .iter()
        .map(|s| {
            let (ev, proof) = evaluate_share(s, &[blinded], &[s.index as u8; 64]).unwrap();
            let pts =
                verify_share_evaluation(s.index, &s.public(), &[blinded], &ev, &proof).unwrap();
            (s.index, pts[0])
        })
        .collect();
    finalize(input, &b, &combine(&parts).unwrap()).unwrap()
}

/// Any t members' answers combine to the RFC's OPRF output under the shared key (here a
/// key from the RFC's vectors, shared 3 of 5); t − 1 give something else.
#[test]
fn threshold_output_is_the_rfc_oprf_output_under_the_shared_key() {
    let (sk, _) = derive_key_pair(&h32(SEED), KEY_INFO, false).unwrap();
    let k = scalar(&hex::encode(sk));
    let shares = shares_of(k, 3, 5, 40);
    let expected = "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6";
    for trio in [[0usize, 1, 2], [0, 2, 4], [4, 3, 1], [1, 2, 3]] {
        let members: Vec<&ShareKey> = trio.iter().map(|&i| &shares[i]).collect();
        assert_eq!(
            hex::encode(threshold_output(&[0], &members)),
            expected,
            "{trio:?}"
        );
    }
    let two: Vec<&ShareKey> = vec![&shares[0], &shares[1]];
    assert_ne!(hex::encode(threshold_output(&[0], &two)), expected);
    let four: Vec<&ShareKey> = shares.iter().take(4).collect();
    assert_eq!(
        hex::encode(threshold_output(&[0], &four)),
        expected,
        "more than t still agree"
    );
}

/// A member that answers with another scalar, swaps two answers of a batch or sends a
/// proof for other elements is caught by its proof and named.
#[test]
fn a_cheating_member_is_named_by_its_proof() {
    let shares = shares_of(Scalar::from(12345u64), 2, 3, 9);
    let s = &shares[1];
    let blinded: Vec<Element> = (0u8..3)
        .map(|i| blind(&[i], &[i + 1; 64]).unwrap().1)
        .collect();
    let (ev, proof) = evaluate_share(s, &blinded, &[5; 64]).unwrap();
    assert!(verify_share_evaluation(2, &s.public(), &blinded, &ev, &proof).is_ok());

    let wrong = ShareKey::from_bytes(2, Scalar::from(999u64).to_bytes()).unwrap();
    let (ev_wrong, proof_wrong) = evaluate_share(&wrong, &blinded, &[5; 64]).unwrap();
    assert_eq!(
        verify_share_evaluation(2, &s.public(), &blinded, &ev_wrong, &proof_wrong),
        Err(OprfError::BadProof { member: 2 })
    );
    let mut swapped = ev.clone();
    swapped.swap(0, 1);
    assert_eq!(
        verify_share_evaluation(2, &s.public(), &blinded, &swapped, &proof),
        Err(OprfError::BadProof { member: 2 })
    );
    let mut mixed = ev.clone();
    mixed[2] = ev_wrong[2];
    assert_eq!(
        verify_share_evaluation(2, &s.public(), &blinded, &mixed, &proof),
        Err(OprfError::BadProof { member: 2 })
    );
    let mut bent = proof;
    bent.s[0] ^= 1;
    assert_eq!(
        verify_share_evaluation(2, &s.public(), &blinded, &ev, &bent),
        Err(OprfError::BadProof { member: 2 })
    );
    // A proof that is right but for member 3's share does not pass as member 2's.
    let (ev3, proof3) = evaluate_share(&shares[2], &blinded, &[5; 64]).unwrap();
    assert_eq!(
        verify_share_evaluation(2, &s.public(), &blinded, &ev3, &proof3),
        Err(OprfError::BadProof { member: 2 })
    );
}

/// Malformed wire values are refused naming the field: the identity, a non-canonical
/// encoding, batches that are empty, too long or of unequal lengths, repeated indexes.
#[test]
fn malformed_inputs_are_refused_naming_the_field() {
    let s = ShareKey::from_bytes(1, Scalar::from(5u64).to_bytes()).unwrap();
    let identity = Element(encode(&RistrettoPoint::identity()));
    assert_eq!(
        evaluate_share(&s, &[identity], &[1; 64]).unwrap_err(),
        OprfError::BadElement {
            field: "blinded_element"
        }
    );
    assert_eq!(
        evaluate_share(&s, &[Element([0xff; 32])], &[1; 64]).unwrap_err(),
        OprfError::BadElement {
            field: "blinded_element"
        }
    );
    assert!(matches!(
        evaluate_share(&s, &[], &[1; 64]),
        Err(OprfError::Batch(_))
    ));
    let b = blind(b"x", &[3; 64]).unwrap().1;
    let too_many = vec![b; MAX_BATCH + 1];
    assert!(matches!(
        evaluate_share(&s, &too_many, &[1; 64]),
        Err(OprfError::Batch(_))
    ));
    let (ev, proof) = evaluate_share(&s, &[b, b], &[1; 64]).unwrap();
    assert!(matches!(
        verify_share_evaluation(1, &s.public(), &[b], &ev, &proof),
        Err(OprfError::Batch(_))
    ));
    let p = decode_element(&b, "b").unwrap();
    assert!(matches!(
        combine(&[(1, p), (1, p)]),
        Err(OprfError::Combine(_))
    ));
    assert!(matches!(combine(&[(0, p)]), Err(OprfError::Combine(_))));
    assert!(matches!(combine(&[]), Err(OprfError::Combine(_))));
    assert!(ShareKey::from_bytes(1, [0xff; 32]).is_err());
    assert!(ShareKey::from_bytes(0, Scalar::ONE.to_bytes()).is_err());
    assert!(matches!(
        blind(b"x", &[0; 64]),
        Err(OprfError::BadScalar { field: "blind" })
    ));
}

/// The same number gives the same key whatever the blind; a different number another.
#[test]
fn the_blind_does_not_change_the_key() {
    let shares = shares_of(Scalar::from(777u64), 2, 3, 1);
    let key = |input: &[u8], r: u8| {
        let (b, blinded) = blind(input, &[r; 64]).unwrap();
        let parts: Vec<(u16, RistrettoPoint)> = shares[..2]
            .iter()
            .map(|s| {
                let (ev, pr) = evaluate_share(s, &[blinded], &[r; 64]).unwrap();
                (
                    s.index,
                    verify_share_evaluation(s.index, &s.public(), &[blinded], &ev, &pr).unwrap()[0],
                )
            })
            .collect();
        person_key_from_output(&finalize(input, &b, &combine(&parts).unwrap()).unwrap())
    };
    assert_eq!(key(b"11010519491231002X", 1), key(b"11010519491231002X", 2));
    assert_ne!(key(b"11010519491231002X", 1), key(b"110105194912310029", 1));
}

/// Shares scaled by their Lagrange coefficients in the asked set answer with proofs
/// against the scaled public shares, and their answers sum to what the unscaled answers
/// combine to — the RFC's output; a set that leaves the member out is refused.
#[test]
fn scaled_shares_sum_to_the_combined_key() {
    let (sk, _) = derive_key_pair(&h32(SEED), KEY_INFO, false).unwrap();
    let k = scalar(&hex::encode(sk));
    let shares = shares_of(k, 3, 5, 77);
    let set = [5u16, 2, 4];
    let (b, blinded) = blind(&[0], &[9; 64]).unwrap();
    let mut points = Vec::new();
    for &i in &set {
        let share = &shares[usize::from(i) - 1];
        let scaled = scaled_share(share, &set).unwrap();
        let (ev, proof) = evaluate_share(&scaled, &[blinded], &[i as u8; 64]).unwrap();
        let public = scaled_public(i, &share.public(), &set).unwrap();
        points.push(verify_share_evaluation(i, &public, &[blinded], &ev, &proof).unwrap()[0]);
        // The unscaled public share does not verify a scaled answer.
        assert!(verify_share_evaluation(i, &share.public(), &[blinded], &ev, &proof).is_err());
    }
    let expected = "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6";
    assert_eq!(
        hex::encode(finalize(&[0], &b, &sum(&points)).unwrap()),
        expected
    );
    let own = scaled_share(&shares[1], &set).unwrap();
    let decoded = decode_element(&blinded, "b").unwrap();
    assert_eq!(own.evaluate_unproven(&[decoded])[0], points[1]);
    assert!(
        scaled_share(&shares[0], &set).is_err(),
        "member 1 is not in the set"
    );
    assert!(scaled_share(&shares[1], &[2, 2, 4]).is_err());
    assert!(scaled_public(2, &shares[1].public(), &[]).is_err());
}

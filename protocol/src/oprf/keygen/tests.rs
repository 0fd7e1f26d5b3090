//! Key generation, refresh and repair: any t shares give one key, t − 1 do not, a
//! cheating dealer is named, refresh and repair keep the key.

use std::collections::BTreeMap;

use frost_ristretto255::keys::dkg::{self, round1, round2};
use frost_ristretto255::keys::{refresh, repairable};

use super::super::{
    RistrettoPoint, blind, combine, evaluate_share, finalize, verify_share_evaluation,
};
use super::*;

use crate::oprf::keygen::TestRng;

type Round1 = BTreeMap<Identifier, round1::Package>;

/// The state after the first two rounds of a key generation (or refresh) among members
/// 1..=n, run as separate parties would: each keeps its own secret; only packages cross.
struct TwoRounds {
    ids: Vec<Identifier>,
    round1: Round1,
    secrets: BTreeMap<Identifier, round2::SecretPackage>,
    inbox: BTreeMap<Identifier, BTreeMap<Identifier, round2::Package>>,
}

impl TwoRounds {
    /// With `refresh`, the rounds deal zero (frost's dealerless refresh).
    fn run(n: u16, t: u16, seed: u8, refresh: bool) -> TwoRounds {
        let mut rng = TestRng(0, seed);
        let ids: Vec<Identifier> = (1..=n).map(|i| member_identifier(i).unwrap()).collect();
        let mut secrets1 = BTreeMap::new();
        let mut round1 = Round1::new();
        for id in &ids {
            let (secret, package) = if refresh {
                refresh::refresh_dkg_part1(*id, n, t, &mut rng).unwrap()
            } else {
                dkg::part1(*id, n, t, &mut rng).unwrap()
            };
            secrets1.insert(*id, secret);
            round1.insert(*id, package);
        }
        let mut rounds = TwoRounds {
            ids: ids.clone(),
            round1,
            secrets: BTreeMap::new(),
            inbox: BTreeMap::new(),
        };
        for id in &ids {
            let secret = secrets1.remove(id).unwrap();
            let others = rounds.others(id);
            let (secret, out) = if refresh {
                refresh::refresh_dkg_part2(secret, &others).unwrap()
            } else {
                dkg::part2(secret, &others).unwrap()
            };
            rounds.secrets.insert(*id, secret);
            for (to, package) in out {
                rounds.inbox.entry(to).or_default().insert(*id, package);
            }
        }
        rounds
    }

    /// The round-1 packages member `me` received (everyone's but its own).
    fn others(&self, me: &Identifier) -> Round1 {
        self.round1
            .iter()
            .filter(|(k, _)| *k != me)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}

/// Runs the three DKG rounds for members 1..=n.
fn run_dkg(n: u16, t: u16, seed: u8) -> (Vec<KeyPackage>, Vec<PublicKeyPackage>) {
    let r = TwoRounds::run(n, t, seed, false);
    r.ids
        .iter()
        .map(|id| dkg::part3(&r.secrets[id], &r.others(id), &r.inbox[id]).unwrap())
        .unzip()
}

fn oprf_with(shares: &[&ShareKey], policy: &PersonKeyPolicy, input: &[u8]) -> [u8; 64] {
    let (b, blinded) = blind(input, &[42; 64]).unwrap();
    let parts: Vec<(u16, RistrettoPoint)> = shares
        .iter()
        .map(|s| {
            let (ev, proof) = evaluate_share(s, &[blinded], &[s.index() as u8; 64]).unwrap();
            let public = policy.public_share(s.index()).unwrap();
            (
                s.index(),
                verify_share_evaluation(s.index(), public, &[blinded], &ev, &proof).unwrap()[0],
            )
        })
        .collect();
    finalize(input, &b, &combine(&parts).unwrap()).unwrap()
}

/// Every member computes the same public package, the policy it gives validates, and
/// any t members' shares give one key and one OPRF output while t − 1 do not.
#[test]
fn dkg_any_t_shares_give_one_key_and_t_minus_1_do_not() {
    let (n, t) = (7u16, 4u16);
    let (kps, pubs) = run_dkg(n, t, 1);
    let policy = policy_from_public_package(&pubs[0]).unwrap();
    for p in &pubs[1..] {
        assert_eq!(policy_from_public_package(p).unwrap(), policy);
    }
    assert_eq!(policy.threshold, t);
    let shares: Vec<ShareKey> = kps
        .iter()
        .map(|kp| share_from_key_package(kp).unwrap())
        .collect();
    for s in &shares {
        assert_eq!(policy.public_share(s.index()), Some(&s.public()));
    }
    let key = interpolate_secret(&shares.iter().take(4).collect::<Vec<_>>());
    let group: [u8; 32] = pubs[0]
        .verifying_key()
        .serialize()
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(RistrettoPoint::mul_base(&key).compress().to_bytes(), group);
    let reference = oprf_with(
        &shares.iter().take(4).collect::<Vec<_>>(),
        &policy,
        b"110105194912310029",
    );
    for pick in [[0usize, 1, 2, 3], [3, 4, 5, 6], [0, 2, 4, 6], [6, 1, 5, 2]] {
        let set: Vec<&ShareKey> = pick.iter().map(|&i| &shares[i]).collect();
        assert_eq!(interpolate_secret(&set), key, "{pick:?}");
        assert_eq!(
            oprf_with(&set, &policy, b"110105194912310029"),
            reference,
            "{pick:?}"
        );
    }
    let three: Vec<&ShareKey> = shares.iter().take(3).collect();
    assert_ne!(interpolate_secret(&three), key);
    assert_ne!(oprf_with(&three, &policy, b"110105194912310029"), reference);
}

/// A dealer whose round-2 share to one member does not match its commitment is named
/// by that member's round 3; a policy mixing shares of two key generations is refused.
#[test]
fn dkg_a_cheating_dealer_is_named_and_mixed_shares_are_refused() {
    let mut r = TwoRounds::run(4, 3, 2, false);
    let ids = r.ids.clone();
    // Member 2 sends member 1 the share it meant for member 3.
    let cheat = r.inbox[&ids[2]][&ids[1]].clone();
    r.inbox.get_mut(&ids[0]).unwrap().insert(ids[1], cheat);
    let err = dkg::part3(&r.secrets[&ids[0]], &r.others(&ids[0]), &r.inbox[&ids[0]]).unwrap_err();
    let culprits: Vec<u16> = err
        .culprits()
        .iter()
        .map(|c| member_index(c).unwrap())
        .collect();
    assert_eq!(culprits, vec![2], "{err:?}");

    let (_, pubs_a) = run_dkg(5, 3, 3);
    let (_, pubs_b) = run_dkg(5, 3, 4);
    let mut mixed = policy_from_public_package(&pubs_a[0]).unwrap();
    let other = policy_from_public_package(&pubs_b[0]).unwrap();
    mixed.public_shares.insert(5, other.public_shares[&5]);
    let msg = mixed.validate().unwrap_err().to_string();
    assert!(msg.contains("member 5"), "{msg}");
    let mut bad_t = policy_from_public_package(&pubs_a[0]).unwrap();
    bad_t.threshold = 6;
    assert!(
        bad_t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("person_key.threshold")
    );
}

/// A dealerless refresh changes every share and public share but not the key: the OPRF
/// output of a number is unchanged, and an old share mixed with new ones gives garbage.
#[test]
fn refresh_changes_every_share_but_not_the_key() {
    let (n, t) = (5u16, 3u16);
    let (kps, pubs) = run_dkg(n, t, 5);
    let old_policy = policy_from_public_package(&pubs[0]).unwrap();
    let old: Vec<ShareKey> = kps
        .iter()
        .map(|k| share_from_key_package(k).unwrap())
        .collect();
    let before = oprf_with(&old.iter().take(3).collect::<Vec<_>>(), &old_policy, b"x");

    let r = TwoRounds::run(n, t, 6, true);
    let mut new_kps = Vec::new();
    let mut new_pubs = Vec::new();
    for (i, id) in r.ids.iter().enumerate() {
        let (kp, pk) = refresh::refresh_dkg_shares(
            &r.secrets[id],
            &r.others(id),
            &r.inbox[id],
            pubs[i].clone(),
            kps[i].clone(),
        )
        .unwrap();
        new_kps.push(kp);
        new_pubs.push(pk);
    }
    let new_policy = policy_from_public_package(&new_pubs[0]).unwrap();
    let new: Vec<ShareKey> = new_kps
        .iter()
        .map(|k| share_from_key_package(k).unwrap())
        .collect();
    for i in 1..=n {
        assert_ne!(old_policy.public_shares[&i], new_policy.public_shares[&i]);
    }
    assert_eq!(
        oprf_with(&new.iter().skip(2).collect::<Vec<_>>(), &new_policy, b"x"),
        before
    );
    assert_ne!(
        interpolate_secret(&[&old[0], &new[1], &new[2]]),
        interpolate_secret(&[&new[0], &new[1], &new[2]])
    );
}

/// A member that lost its share gets the same share back from t helpers, none of whom
/// sees it (each helper sends one random-looking value per helper).
#[test]
fn repair_gives_a_lost_share_back_from_t_helpers() {
    let (n, t) = (5u16, 3u16);
    let (kps, pubs) = run_dkg(n, t, 7);
    let lost = member_identifier(4).unwrap();
    let helpers: Vec<Identifier> = [1u16, 2, 5]
        .iter()
        .map(|&i| member_identifier(i).unwrap())
        .collect();
    let mut rng = TestRng(0, 8);
    let mut deltas: BTreeMap<Identifier, Vec<repairable::Delta>> = BTreeMap::new();
    for h in &helpers {
        let kp = &kps[usize::from(member_index(h).unwrap()) - 1];
        for (to, d) in repairable::repair_share_part1::<frost_ristretto255::Ristretto255Sha512, _>(
            &helpers, kp, &mut rng, lost,
        )
        .unwrap()
        {
            deltas.entry(to).or_default().push(d);
        }
    }
    let sigmas: Vec<repairable::Sigma> = helpers
        .iter()
        .map(|h| repairable::repair_share_part2(&deltas[h]))
        .collect();
    let repaired = repairable::repair_share_part3(&sigmas, lost, &pubs[0]).unwrap();
    let repaired = share_from_key_package(&repaired).unwrap();
    let original = share_from_key_package(&kps[3]).unwrap();
    assert_eq!(repaired.secret_bytes(), original.secret_bytes());
    assert_eq!(repaired.index(), 4);
}

/// Member indexes round-trip through frost identifiers; index 0 is refused.
#[test]
fn member_indexes_round_trip() {
    for i in [1u16, 2, 31, 64, 300] {
        assert_eq!(member_index(&member_identifier(i).unwrap()).unwrap(), i);
    }
    assert!(member_identifier(0).is_err());
}

//! The federation key's shares: made, refreshed and repaired without anyone learning the
//! key (docs/privacy.md, "Key lifecycle").
//!
//! The rounds are the Zcash Foundation's `frost-ristretto255` (RFC 9591's group, audited),
//! whose distributed key generation is Pedersen's verifiable secret sharing with a proof
//! of knowledge per dealer (the FROST paper's DKG); its dealerless refresh re-randomises
//! every share without changing the key; its repairable threshold scheme lets t members
//! rebuild a member's lost share without any of them learning it. A FROST signing share
//! is a Shamir share of a ristretto255 scalar, which is all the OPRF needs: this module
//! only converts between frost's types and [`super::ShareKey`] / [`PersonKeyPolicy`], and
//! checks what a manifest lists.
//!
//! Channels are the caller's business, as frost requires: round-1 packages must reach
//! every member identically (the node sends them to all and each member echoes the
//! digest of what it received), round-2 packages and repair values must be confidential
//! and authenticated (the node sends them over the members' Noise-encrypted libp2p
//! connections, to the one member they are for).

use std::collections::BTreeMap;

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use serde::{Deserialize, Serialize};

pub use frost_ristretto255 as frost;
use frost_ristretto255::Identifier;
use frost_ristretto255::keys::{KeyPackage, PublicKeyPackage};

use super::{Element, MAX_MEMBERS, OprfError, ShareKey, decode_element};

/// What every member and every asking node must agree on: how many members answer a
/// person key (`threshold`), and each member's public share `k_i · G`. Carried in the
/// manifest; the federation key's own public value is not needed by anyone and is not
/// listed (nothing is ever verified against it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKeyPolicy {
    /// Members that must answer for one person key (t).
    pub threshold: u16,
    /// Member index (1-based) → public share.
    pub public_shares: BTreeMap<u16, Element>,
}

impl PersonKeyPolicy {
    /// Checks the policy's shape and that every listed public share lies on one
    /// polynomial of degree t − 1 (so that any t members give the same key). A manifest
    /// whose shares do not is refused: checks would give different answers depending on
    /// which members were asked.
    pub fn validate(&self) -> Result<(), OprfError> {
        let n = self.public_shares.len();
        let t = usize::from(self.threshold);
        if n == 0 || n > usize::from(MAX_MEMBERS) {
            return Err(OprfError::Combine(format!(
                "person_key.public_shares: {n} members, allowed 1 to {MAX_MEMBERS}"
            )));
        }
        if t == 0 || t > n {
            return Err(OprfError::Combine(format!(
                "person_key.threshold: {t}, must be 1 to the number of members ({n})"
            )));
        }
        if self.public_shares.contains_key(&0) {
            return Err(OprfError::Combine(
                "person_key.public_shares: member index 0 is reserved".into(),
            ));
        }
        let points = self
            .public_shares
            .values()
            .map(|e| decode_element(e, "person_key.public_shares"))
            .collect::<Result<Vec<_>, _>>()?;
        let indexes: Vec<u16> = self.public_shares.keys().copied().collect();
        let base = &indexes[..t];
        for (j, &x) in indexes.iter().enumerate().skip(t) {
            if interpolate_at(x, base, &points[..t]) != points[j] {
                return Err(OprfError::Combine(format!(
                    "person_key.public_shares: member {x}'s share is not on the polynomial the \
                     first {t} members define (the shares come from different key generations)"
                )));
            }
        }
        Ok(())
    }

    /// The public share of `member`, if listed.
    pub fn public_share(&self, member: u16) -> Option<&Element> {
        self.public_shares.get(&member)
    }
}

/// `f(x) · G` from `f(x_i) · G` at `base` (Lagrange interpolation in the exponent).
fn interpolate_at(x: u16, base: &[u16], points: &[RistrettoPoint]) -> RistrettoPoint {
    let xs = Scalar::from(x);
    let weights: Vec<Scalar> = base
        .iter()
        .map(|&i| {
            let xi = Scalar::from(i);
            let mut num = Scalar::ONE;
            let mut den = Scalar::ONE;
            for &j in base.iter().filter(|&&j| j != i) {
                let xj = Scalar::from(j);
                num *= xs - xj;
                den *= xi - xj;
            }
            num * den.invert()
        })
        .collect();
    RistrettoPoint::vartime_multiscalar_mul(&weights, points)
}

/// The key's public value `k · G`, interpolated from the public shares (frost's packages
/// carry it; nothing in credfed is verified against it).
pub fn public_value(policy: &PersonKeyPolicy) -> Result<Element, OprfError> {
    interpolated(policy, 0)
}

/// The public share member `index` holds — or would hold, for an index no member has
/// yet — on the polynomial the listed public shares define: what a repaired or newly
/// enrolled member's share must match.
pub fn public_share_at(policy: &PersonKeyPolicy, index: u16) -> Result<Element, OprfError> {
    if let Some(listed) = policy.public_share(index) {
        policy.validate()?;
        return Ok(*listed);
    }
    interpolated(policy, index)
}

fn interpolated(policy: &PersonKeyPolicy, index: u16) -> Result<Element, OprfError> {
    policy.validate()?;
    let t = usize::from(policy.threshold);
    let indexes: Vec<u16> = policy.public_shares.keys().copied().take(t).collect();
    let points = policy
        .public_shares
        .values()
        .take(t)
        .map(|e| decode_element(e, "person_key.public_shares"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Element(
        interpolate_at(index, &indexes, &points)
            .compress()
            .to_bytes(),
    ))
}

/// frost's identifier for member index `i` (the scalar `i`, as the Lagrange
/// coefficients here assume).
pub fn member_identifier(index: u16) -> Result<Identifier, OprfError> {
    Identifier::try_from(index)
        .map_err(|_| OprfError::Combine(format!("member index {index}: must be 1 or more")))
}

/// The member index behind a frost identifier made by [`member_identifier`].
pub fn member_index(id: &Identifier) -> Result<u16, OprfError> {
    let bytes = id.serialize();
    let small = bytes.len() == 32 && bytes[2..].iter().all(|&b| b == 0);
    if !small {
        return Err(OprfError::Combine(
            "identifier is not a member index".into(),
        ));
    }
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn to_element(bytes: &[u8], field: &'static str) -> Result<Element, OprfError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| OprfError::BadElement { field })?;
    Ok(Element(arr))
}

/// The member's OPRF share from the key package a DKG, refresh or repair gave it.
pub fn share_from_key_package(kp: &KeyPackage) -> Result<ShareKey, OprfError> {
    let index = member_index(kp.identifier())?;
    let bytes: [u8; 32] = kp
        .signing_share()
        .serialize()
        .as_slice()
        .try_into()
        .map_err(|_| OprfError::BadScalar {
            field: "signing_share",
        })?;
    ShareKey::from_bytes(index, bytes)
}

/// The manifest's policy from the public package every member computed (they must all
/// be equal; the authority compares them before signing the manifest).
pub fn policy_from_public_package(pkg: &PublicKeyPackage) -> Result<PersonKeyPolicy, OprfError> {
    let threshold = pkg
        .min_signers()
        .ok_or_else(|| OprfError::Combine("public key package without min_signers".into()))?;
    let mut public_shares = BTreeMap::new();
    for (id, share) in pkg.verifying_shares() {
        let bytes = share.serialize().map_err(|_| OprfError::BadElement {
            field: "verifying_share",
        })?;
        public_shares.insert(member_index(id)?, to_element(&bytes, "verifying_share")?);
    }
    let policy = PersonKeyPolicy {
        threshold,
        public_shares,
    };
    policy.validate()?;
    Ok(policy)
}

/// frost's packages for a member's current share and the public shares it belongs to:
/// what a refresh starts from. The key's public value `k · G` (which frost's packages
/// carry and the manifest does not list) is interpolated from the first t public shares.
pub fn packages_from_share(
    share: &ShareKey,
    policy: &PersonKeyPolicy,
) -> Result<(KeyPackage, PublicKeyPackage), OprfError> {
    use frost_ristretto255::keys::{SigningShare, VerifyingShare};
    policy.validate()?;
    let listed = policy.public_share(share.index()).ok_or_else(|| {
        OprfError::Combine(format!(
            "member {}: no public share listed for it",
            share.index()
        ))
    })?;
    if *listed != share.public() {
        return Err(OprfError::Combine(format!(
            "member {}: its share is not the one the public shares list",
            share.index()
        )));
    }
    let bad = |what: &str| OprfError::Combine(format!("{what}: not a frost value"));
    let public = public_package(policy)?;
    let key_package = KeyPackage::new(
        member_identifier(share.index())?,
        SigningShare::deserialize(&share.secret_bytes()).map_err(|_| bad("share"))?,
        VerifyingShare::deserialize(&listed.0).map_err(|_| bad("public share"))?,
        *public.verifying_key(),
        policy.threshold,
    );
    Ok((key_package, public))
}

/// frost's public package of the listed shares, with the key's public value `k · G`
/// interpolated from them: what a refresh and a repair take the key's public value and
/// threshold from.
pub fn public_package(policy: &PersonKeyPolicy) -> Result<PublicKeyPackage, OprfError> {
    use frost_ristretto255::VerifyingKey;
    use frost_ristretto255::keys::VerifyingShare;
    let bad = |what: &str| OprfError::Combine(format!("{what}: not a frost value"));
    let verifying_key =
        VerifyingKey::deserialize(&public_value(policy)?.0).map_err(|_| bad("key"))?;
    let mut verifying_shares = BTreeMap::new();
    for (index, element) in &policy.public_shares {
        verifying_shares.insert(
            member_identifier(*index)?,
            VerifyingShare::deserialize(&element.0).map_err(|_| bad("public share"))?,
        );
    }
    Ok(PublicKeyPackage::new(
        verifying_shares,
        verifying_key,
        Some(policy.threshold),
    ))
}

/// Runs the distributed key generation for `members` (sorted by region; member index =
/// position + 1): one [`super::ceremony::Ceremony`] per member, passing only the messages
/// each would send; returns each member's share and the manifest's `person_key`.
///
/// All parties run in the calling process, so this is for drills and tests, where one
/// machine holds every node's keys anyway: the caller learns every share (and could
/// compute the key), which a federation's ceremony between separate members does not
/// allow (docs/privacy.md, "Key lifecycle").
pub fn ceremony_in_one_process<R: frost::rand_core::RngCore + frost::rand_core::CryptoRng>(
    members: &[crate::ids::RegionCode],
    threshold: u16,
    evaluations_per_day: u32,
    burst: u32,
    rng: &mut R,
) -> Result<(Vec<ShareKey>, crate::manifest::PersonKeyShares), OprfError> {
    let n =
        u16::try_from(members.len()).map_err(|_| OprfError::Combine("too many members".into()))?;
    if n == 0 {
        return Err(OprfError::Combine("key generation: no members".into()));
    }
    if n == 1 {
        // A federation of one has no one to share with: its key is its member's alone
        // (frost's DKG needs two parties).
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let share = ShareKey::from_bytes(1, Scalar::from_bytes_mod_order_wide(&wide).to_bytes())?;
        let listed = vec![crate::manifest::PersonKeyShare {
            region: members[0],
            index: 1,
            public_share: share.public(),
        }];
        return Ok((
            vec![share],
            crate::manifest::PersonKeyShares {
                threshold: 1,
                evaluations_per_day,
                burst,
                shares: listed,
            },
        ));
    }
    // Every member's state machine, exactly as separate members run it; only the
    // delivery is local.
    use super::ceremony::{Ceremony, CeremonyMessage, CeremonyPlan};
    let fail =
        |e: super::ceremony::CeremonyError| OprfError::Combine(format!("key generation: {e}"));
    let plan = CeremonyPlan::generate("in one process", threshold, members).map_err(fail)?;
    let mut parties = Vec::with_capacity(members.len());
    let mut mail: Vec<(u16, CeremonyMessage)> = Vec::new();
    for member in &plan.members {
        let (party, round1) =
            Ceremony::start(plan.clone(), member.region, None, &mut *rng).map_err(fail)?;
        mail.extend(
            (1..=n)
                .filter(|to| *to != party.me())
                .map(|to| (to, round1.clone())),
        );
        parties.push(party);
    }
    while let Some((to, message)) = mail.pop() {
        let party = &mut parties[usize::from(to) - 1];
        party.receive(message).map_err(fail)?;
        if let Some(round2) = party.round2().map_err(fail)? {
            mail.extend(round2);
        }
    }
    let mut shares = Vec::with_capacity(parties.len());
    let mut public: Option<crate::manifest::PersonKeyShares> = None;
    for party in &parties {
        let (share, listed) = party
            .finish(evaluations_per_day, burst)
            .map_err(fail)?
            .ok_or_else(|| OprfError::Combine("key generation: a member did not finish".into()))?;
        if public.as_ref().is_some_and(|p| *p != listed) {
            return Err(OprfError::Combine(
                "key generation: members computed different public shares".into(),
            ));
        }
        public = Some(listed);
        shares.push(share);
    }
    let public = public.ok_or_else(|| OprfError::Combine("key generation: no members".into()))?;
    Ok((shares, public))
}

/// The threshold a federation of `members` uses unless it decides otherwise: a
/// majority, so that no minority of members can compute a person key and a majority
/// connected can.
pub fn majority(members: usize) -> u16 {
    u16::try_from(members / 2 + 1).unwrap_or(u16::MAX)
}

/// For property checks only: the key t shares interpolate to (no party ever holds it).
#[cfg(test)]
pub(crate) fn interpolate_secret(shares: &[&ShareKey]) -> Scalar {
    let members: Vec<u16> = shares.iter().map(|s| s.index).collect();
    shares
        .iter()
        .map(|s| super::lagrange_at_zero(s.index, &members) * s.secret)
        .sum()
}

/// For tests: `n` provincial regions from 110000 on.
#[cfg(test)]
pub(crate) fn test_regions(n: u32) -> Vec<crate::ids::RegionCode> {
    (0..n)
        .map(|i| crate::ids::RegionCode::new(110000 + 10000 * i, "r").unwrap())
        .collect()
}

#[cfg(test)]
/// A deterministic generator for tests (SHA-512 in counter mode).
pub(crate) struct TestRng(pub(crate) u64, pub(crate) u8);

#[cfg(test)]
impl frost::rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        frost::rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        frost::rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use sha2::Digest;
        for chunk in dest.chunks_mut(64) {
            self.0 += 1;
            let block: [u8; 64] = sha2::Sha512::new()
                .chain_update(self.0.to_le_bytes())
                .chain_update([self.1])
                .finalize()
                .into();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), frost_ristretto255::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
#[cfg(test)]
impl frost::rand_core::CryptoRng for TestRng {}

#[cfg(test)]
mod tests;

//! The person key's generation and refresh between separate members: one state machine
//! per member, driven by the messages it receives (docs/privacy.md, "Key lifecycle").
//!
//! Each member starts the same plan (what it does, its label, its members and the
//! threshold), sends its round-1 package to every other member, and once it holds
//! everyone's, sends each other member that member's round-2 package together with the
//! digest of the round-1 packages it holds. A member whose digest differs from the
//! receiver's saw different round-1 packages — some dealer showed members different
//! commitments — and is named; nobody finishes on a split view. Round-2 packages are
//! secret: the caller sends each only to the member it is for, over an authenticated,
//! encrypted channel (the members' libp2p connections). When a member holds every
//! round-2 package, it derives its share and the public shares every member must agree
//! on.
//!
//! A generation makes a new key. A refresh deals shares of zero on top of the current
//! shares: every share and public share changes, the key does not (so person keys and
//! the records written with them stay valid), and a member left out of the refresh
//! plan is left out of the key (its old share no longer combines with the new ones).
//!
//! Pure: randomness comes from the caller; messages in and out are values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::keygen::frost::keys::dkg::{self, round1, round2};
use super::keygen::frost::keys::refresh;
use super::keygen::frost::keys::{KeyPackage, PublicKeyPackage};
use super::keygen::{
    frost, member_identifier, packages_from_share, policy_from_public_package,
    share_from_key_package,
};
use super::{OprfError, ShareKey};
use crate::crypto::{Hash256, sha256};
use crate::ids::RegionCode;
use crate::manifest::{PersonKeyShare, PersonKeyShares};

/// Largest ceremony message: a round-1 package carries t commitments of 32 bytes and a
/// proof (about 16 KiB at the 512-member limit); round-2 packages are one scalar.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What members send each other during a ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CeremonyMessage {
    /// A dealer's commitments and proof of knowledge, to every other member.
    Round1 {
        /// The ceremony.
        ceremony: Hash256,
        /// The sending member's index.
        from: u16,
        /// frost's round-1 package, serialized.
        package: Vec<u8>,
    },
    /// A dealer's secret value for one member, with the digest of the round-1 packages
    /// the dealer holds.
    Round2 {
        /// The ceremony.
        ceremony: Hash256,
        /// The sending member's index.
        from: u16,
        /// SHA-256 over every member's round-1 package, in index order.
        round1_digest: Hash256,
        /// frost's round-2 package for the receiving member, serialized.
        package: Vec<u8>,
    },
    /// A repair helper's share of its contribution, for another helper
    /// ([`super::repair`]).
    RepairDelta {
        /// The repair.
        ceremony: Hash256,
        /// The sending helper's index.
        from: u16,
        /// frost's delta, serialized (one scalar).
        package: Vec<u8>,
    },
    /// A repair helper's sum of the deltas it received, for the member being repaired.
    RepairSigma {
        /// The repair.
        ceremony: Hash256,
        /// The sending helper's index.
        from: u16,
        /// frost's sigma, serialized (one scalar).
        package: Vec<u8>,
    },
}

impl CeremonyMessage {
    /// The ceremony and the sending member's index.
    pub fn ceremony_and_sender(&self) -> (Hash256, u16) {
        match self {
            CeremonyMessage::Round1 { ceremony, from, .. }
            | CeremonyMessage::Round2 { ceremony, from, .. }
            | CeremonyMessage::RepairDelta { ceremony, from, .. }
            | CeremonyMessage::RepairSigma { ceremony, from, .. } => (*ceremony, *from),
        }
    }

    /// The step the message belongs to: 1 and 2 for a generation's or refresh's rounds,
    /// 3 for a repair's deltas, 4 for its sigmas.
    pub fn round(&self) -> u8 {
        match self {
            CeremonyMessage::Round1 { .. } => 1,
            CeremonyMessage::Round2 { .. } => 2,
            CeremonyMessage::RepairDelta { .. } => 3,
            CeremonyMessage::RepairSigma { .. } => 4,
        }
    }

    /// The package it carries.
    pub fn package(&self) -> &[u8] {
        match self {
            CeremonyMessage::Round1 { package, .. }
            | CeremonyMessage::Round2 { package, .. }
            | CeremonyMessage::RepairDelta { package, .. }
            | CeremonyMessage::RepairSigma { package, .. } => package,
        }
    }
}

/// Decodes a ceremony message, whole buffer, within its limit.
pub fn decode_message(bytes: &[u8]) -> Result<CeremonyMessage, crate::codec::DecodeError> {
    crate::codec::decode(bytes, MAX_MESSAGE_BYTES, "person key ceremony message")
}

/// A member's answer to a ceremony message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CeremonyReply {
    /// Taken into the member's ceremony (or the same message again).
    Taken,
    /// Kept until the member starts the ceremony it belongs to (its operator has not
    /// yet, or started another plan).
    Held,
    /// Refused, with the reason (the member's ceremony failed, or the message is not
    /// what the sender may send).
    Refused(String),
}

/// Largest reply: a reason of a few hundred bytes.
pub const MAX_REPLY_BYTES: usize = 4 * 1024;

/// Decodes a ceremony reply, whole buffer, within its limit.
pub fn decode_reply(bytes: &[u8]) -> Result<CeremonyReply, crate::codec::DecodeError> {
    crate::codec::decode(bytes, MAX_REPLY_BYTES, "person key ceremony reply")
}

/// What a ceremony does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CeremonyKind {
    /// Make a new key.
    Generate,
    /// New shares of the current key (the public shares whose [`shares_digest`] this
    /// is), without changing it.
    Refresh {
        /// Digest of the public shares being refreshed.
        current: Hash256,
    },
}

/// A member of a ceremony and its index (the x-coordinate of its share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMember {
    /// The member.
    pub region: RegionCode,
    /// Its index: position + 1 in a generation; the current index in a refresh.
    pub index: u16,
}

/// What every member starts with: the same for all, or their messages are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyPlan {
    /// Generation or refresh.
    pub kind: CeremonyKind,
    /// A name the members agree on out of band (e.g. `2027-01 person key`).
    pub label: String,
    /// Members that must answer for one person key.
    pub threshold: u16,
    /// The members taking part, sorted by region.
    pub members: Vec<PlanMember>,
}

/// The digest a refresh names the public shares it refreshes by: members refreshing
/// different keys (or different public shares of one) refuse each other's messages.
pub fn shares_digest(shares: &PersonKeyShares) -> Hash256 {
    let mut bytes = Vec::with_capacity(shares.shares.len() * 38 + 2);
    bytes.extend_from_slice(&shares.threshold.to_be_bytes());
    for s in &shares.shares {
        bytes.extend_from_slice(&s.region.code().to_be_bytes());
        bytes.extend_from_slice(&s.index.to_be_bytes());
        bytes.extend_from_slice(&s.public_share.0);
    }
    sha256(&[b"credfed person key shares v1\0", &bytes])
}

impl CeremonyPlan {
    /// A generation among `regions` (any order; member index = position + 1 once
    /// sorted).
    pub fn generate(
        label: &str,
        threshold: u16,
        regions: &[RegionCode],
    ) -> Result<CeremonyPlan, CeremonyError> {
        let mut sorted = regions.to_vec();
        sorted.sort();
        let plan = CeremonyPlan {
            kind: CeremonyKind::Generate,
            label: label.to_string(),
            threshold,
            members: sorted
                .into_iter()
                .zip(1u16..)
                .map(|(region, index)| PlanMember { region, index })
                .collect(),
        };
        plan.validate()?;
        Ok(plan)
    }

    /// A refresh of `current` among `regions` (all its members when `None`; leaving
    /// members out removes them from the key). Indexes and threshold stay.
    pub fn refresh(
        label: &str,
        current: &PersonKeyShares,
        regions: Option<&[RegionCode]>,
    ) -> Result<CeremonyPlan, CeremonyError> {
        let mut members = Vec::new();
        for s in &current.shares {
            if regions.is_none_or(|r| r.contains(&s.region)) {
                members.push(PlanMember {
                    region: s.region,
                    index: s.index,
                });
            }
        }
        if let Some(regions) = regions
            && let Some(stranger) = regions
                .iter()
                .find(|r| !current.shares.iter().any(|s| s.region == **r))
        {
            return Err(CeremonyError::Plan(format!(
                "members: {stranger} holds no share of the current key; a refresh keeps or removes members, it adds none (docs/privacy.md, \"Key lifecycle\")"
            )));
        }
        members.sort_by_key(|m| m.region);
        let plan = CeremonyPlan {
            kind: CeremonyKind::Refresh {
                current: shares_digest(current),
            },
            label: label.to_string(),
            threshold: current.threshold,
            members,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Checks the plan's shape: members sorted with no region or index twice, indexes
    /// 1 or more (position + 1 in a generation), 2 ≤ threshold ≤ members, a label.
    pub fn validate(&self) -> Result<(), CeremonyError> {
        let plan = |why: String| Err(CeremonyError::Plan(why));
        if self.label.trim().is_empty() || self.label.len() > 200 {
            return plan("label: 1 to 200 characters, the same at every member".into());
        }
        if !self.members.windows(2).all(|w| w[0].region < w[1].region) {
            return plan("members must be sorted by region with no region twice".into());
        }
        let mut indexes: Vec<u16> = self.members.iter().map(|m| m.index).collect();
        indexes.sort_unstable();
        if indexes.first() == Some(&0) || indexes.windows(2).any(|w| w[0] == w[1]) {
            return plan("member indexes must be 1 or more, each once".into());
        }
        if self.kind == CeremonyKind::Generate
            && self.members.iter().zip(1u16..).any(|(m, i)| m.index != i)
        {
            return plan("a generation numbers its members 1, 2, … in region order".into());
        }
        let n = self.n();
        if n < 2 || self.threshold < 2 || self.threshold > n {
            return plan(format!(
                "threshold {} with {n} members: 2 ≤ threshold ≤ members",
                self.threshold
            ));
        }
        Ok(())
    }

    /// The ceremony's id: the plan's hash, so that members that started different
    /// plans refuse each other's messages.
    pub fn id(&self) -> Hash256 {
        let members = encode_members(&self.members);
        let kind: Vec<u8> = match &self.kind {
            CeremonyKind::Generate => b"generate".to_vec(),
            CeremonyKind::Refresh { current } => [b"refresh".as_slice(), &current.0].concat(),
        };
        sha256(&[
            b"credfed person key ceremony v2\0",
            &kind,
            b"\0",
            self.label.as_bytes(),
            b"\0",
            &self.threshold.to_be_bytes(),
            &members,
        ])
    }

    /// A member's index in this plan.
    pub fn index_of(&self, region: RegionCode) -> Option<u16> {
        self.members
            .iter()
            .find(|m| m.region == region)
            .map(|m| m.index)
    }

    /// The member holding `index` in this plan.
    pub fn region_of(&self, index: u16) -> Option<RegionCode> {
        self.members
            .iter()
            .find(|m| m.index == index)
            .map(|m| m.region)
    }

    fn n(&self) -> u16 {
        u16::try_from(self.members.len()).unwrap_or(u16::MAX)
    }
}

/// Why a ceremony step failed, naming the member at fault where there is one.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CeremonyError {
    /// The plan itself is unusable.
    #[error("plan: {0}")]
    Plan(String),
    /// A message of another ceremony (another plan).
    #[error(
        "a message of another ceremony (plan {found}, ours {ours}): the members started different plans"
    )]
    OtherCeremony {
        /// The message's ceremony.
        found: Hash256,
        /// Ours.
        ours: Hash256,
    },
    /// A member sent something that is not what its round requires.
    #[error("member {member}: {why}")]
    Member {
        /// The member at fault.
        member: u16,
        /// What was wrong.
        why: String,
    },
}

/// (region, index) of each member, as a plan's id hashes them.
pub(super) fn encode_members(members: &[PlanMember]) -> Vec<u8> {
    let mut out = Vec::with_capacity(members.len() * 6);
    for m in members {
        out.extend_from_slice(&m.region.code().to_be_bytes());
        out.extend_from_slice(&m.index.to_be_bytes());
    }
    out
}

pub(super) fn member_error(member: u16, why: impl Into<String>) -> CeremonyError {
    CeremonyError::Member {
        member,
        why: why.into(),
    }
}

/// One member's ceremony.
pub struct Ceremony {
    plan: CeremonyPlan,
    id: Hash256,
    me: u16,
    /// In a refresh: frost's packages of the member's current share.
    current: Option<(KeyPackage, PublicKeyPackage)>,
    round1_secret: Option<round1::SecretPackage>,
    round1: BTreeMap<u16, (Vec<u8>, round1::Package)>,
    round2_secret: Option<round2::SecretPackage>,
    digest: Option<Hash256>,
    /// Round-2 packages received, with the sender's digest (checked once ours is known).
    round2: BTreeMap<u16, (Hash256, Vec<u8>)>,
}

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ceremony(member {} of {}, round-1 {}, round-2 {})",
            self.me,
            self.plan.members.len(),
            self.round1.len(),
            self.round2.len()
        )
    }
}

impl Ceremony {
    /// Starts this member's part: returns the state and the round-1 message for every
    /// other member. A refresh needs the member's current share and the public shares
    /// it belongs to (the manifest's `person_key`).
    pub fn start<R: frost::rand_core::RngCore + frost::rand_core::CryptoRng>(
        plan: CeremonyPlan,
        me: RegionCode,
        current: Option<(&ShareKey, &PersonKeyShares)>,
        rng: &mut R,
    ) -> Result<(Ceremony, CeremonyMessage), CeremonyError> {
        plan.validate()?;
        let n = plan.n();
        let me = plan
            .index_of(me)
            .ok_or_else(|| CeremonyError::Plan(format!("{me} is not among the plan's members")))?;
        let id = plan.id();
        let oprf = |e: OprfError| CeremonyError::Plan(e.to_string());
        let identifier = member_identifier(me).map_err(oprf)?;
        let (current, (secret, package)) = match &plan.kind {
            CeremonyKind::Generate => (
                None,
                dkg::part1(identifier, n, plan.threshold, &mut *rng)
                    .map_err(|e| CeremonyError::Plan(e.to_string()))?,
            ),
            CeremonyKind::Refresh { current: digest } => {
                let Some((share, shares)) = current else {
                    return Err(CeremonyError::Plan(
                        "a refresh needs this member's current share and the manifest's person_key"
                            .into(),
                    ));
                };
                if shares_digest(shares) != *digest {
                    return Err(CeremonyError::Plan(
                        "the plan refreshes other public shares than this member's manifest lists; every member must refresh the manifest's person_key".into(),
                    ));
                }
                if share.index() != me {
                    return Err(CeremonyError::Plan(format!(
                        "this member's share is member {}'s; the plan gives it index {me}",
                        share.index()
                    )));
                }
                let packages = packages_from_share(share, &shares.policy()).map_err(oprf)?;
                (
                    Some(packages),
                    refresh::refresh_dkg_part1(identifier, n, plan.threshold, &mut *rng)
                        .map_err(|e| CeremonyError::Plan(e.to_string()))?,
                )
            }
        };
        let bytes = package
            .serialize()
            .map_err(|e| CeremonyError::Plan(e.to_string()))?;
        let mut round1 = BTreeMap::new();
        round1.insert(me, (bytes.clone(), package));
        Ok((
            Ceremony {
                plan,
                id,
                me,
                current,
                round1_secret: Some(secret),
                round1,
                round2_secret: None,
                digest: None,
                round2: BTreeMap::new(),
            },
            CeremonyMessage::Round1 {
                ceremony: id,
                from: me,
                package: bytes,
            },
        ))
    }

    /// This member's index.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// The ceremony's id.
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The plan.
    pub fn plan(&self) -> &CeremonyPlan {
        &self.plan
    }

    /// Round-1 and round-2 packages held (own round-1 included).
    pub fn progress(&self) -> (usize, usize) {
        (self.round1.len(), self.round2.len())
    }

    /// Members whose message this member still needs for its next step: round-1
    /// packages while some are missing, then round-2 packages.
    pub fn waiting_for(&self) -> Vec<u16> {
        let held: Vec<u16> = if self.round1.len() < self.plan.members.len() {
            self.round1.keys().copied().collect()
        } else {
            self.round2
                .keys()
                .copied()
                .chain(std::iter::once(self.me))
                .collect()
        };
        self.plan
            .members
            .iter()
            .map(|m| m.index)
            .filter(|i| !held.contains(i))
            .collect()
    }

    /// Takes in a message from another member. A repeated message is accepted if it is
    /// the same; a different one from the same member is an equivocation, named.
    pub fn receive(&mut self, message: CeremonyMessage) -> Result<(), CeremonyError> {
        let (ceremony, from) = message.ceremony_and_sender();
        if ceremony != self.id {
            return Err(CeremonyError::OtherCeremony {
                found: ceremony,
                ours: self.id,
            });
        }
        if from == self.me || self.plan.region_of(from).is_none() {
            return Err(member_error(from, "not another member of this ceremony"));
        }
        match message {
            CeremonyMessage::Round1 { package, .. } => {
                if let Some((held, _)) = self.round1.get(&from) {
                    return if *held == package {
                        Ok(())
                    } else {
                        Err(member_error(from, "sent two different round-1 packages"))
                    };
                }
                let parsed = round1::Package::deserialize(&package)
                    .map_err(|e| member_error(from, format!("round-1 package: {e}")))?;
                self.round1.insert(from, (package, parsed));
                Ok(())
            }
            CeremonyMessage::Round2 {
                round1_digest,
                package,
                ..
            } => {
                if let Some(held) = self.round2.get(&from) {
                    return if *held == (round1_digest, package) {
                        Ok(())
                    } else {
                        Err(member_error(from, "sent two different round-2 packages"))
                    };
                }
                if let Some(ours) = self.digest
                    && ours != round1_digest
                {
                    return Err(member_error(
                        from,
                        "holds different round-1 packages than this member: a dealer showed members different commitments; start a new ceremony",
                    ));
                }
                self.round2.insert(from, (round1_digest, package));
                Ok(())
            }
            CeremonyMessage::RepairDelta { .. } | CeremonyMessage::RepairSigma { .. } => {
                Err(member_error(
                    from,
                    "sent a repair's message to a key generation or refresh",
                ))
            }
        }
    }

    fn others_round1(&self) -> BTreeMap<frost::Identifier, round1::Package> {
        self.round1
            .iter()
            .filter(|(i, _)| **i != self.me)
            .filter_map(|(i, (_, p))| member_identifier(*i).ok().map(|id| (id, p.clone())))
            .collect()
    }

    /// Once every round-1 package is in: the round-2 message for each other member
    /// (each to be sent to that member only). `None` while some are missing; called again
    /// after it gave the messages, gives `None`.
    pub fn round2(&mut self) -> Result<Option<Vec<(u16, CeremonyMessage)>>, CeremonyError> {
        if self.round1.len() < self.plan.members.len() {
            return Ok(None);
        }
        let Some(secret) = self.round1_secret.take() else {
            return Ok(None);
        };
        let digest = {
            let parts: Vec<&[u8]> = self.round1.values().map(|(b, _)| b.as_slice()).collect();
            sha256(&parts)
        };
        let others = self.others_round1();
        let dealt = if self.current.is_some() {
            refresh::refresh_dkg_part2(secret, &others)
        } else {
            dkg::part2(secret, &others)
        };
        let (secret, outgoing) = dealt.map_err(|e| {
            let culprits: Vec<String> = e
                .culprits()
                .iter()
                .filter_map(|c| super::keygen::member_index(c).ok())
                .map(|i| i.to_string())
                .collect();
            CeremonyError::Plan(format!(
                "round 2: {e} (members named: {})",
                culprits.join(", ")
            ))
        })?;
        // A round-2 package received before this member's digest was known is checked now.
        if let Some((from, _)) = self.round2.iter().find(|(_, (d, _))| *d != digest) {
            return Err(member_error(
                *from,
                "holds different round-1 packages than this member: a dealer showed members different commitments; start a new ceremony",
            ));
        }
        self.digest = Some(digest);
        self.round2_secret = Some(secret);
        let mut messages = Vec::with_capacity(outgoing.len());
        for (to, package) in outgoing {
            let to =
                super::keygen::member_index(&to).map_err(|e| CeremonyError::Plan(e.to_string()))?;
            messages.push((
                to,
                CeremonyMessage::Round2 {
                    ceremony: self.id,
                    from: self.me,
                    round1_digest: digest,
                    package: package
                        .serialize()
                        .map_err(|e| CeremonyError::Plan(e.to_string()))?,
                },
            ));
        }
        Ok(Some(messages))
    }

    /// Once every round-2 package is in: this member's share and the manifest's
    /// `person_key` (with the given budget). `None` while some are missing.
    pub fn finish(
        &self,
        evaluations_per_day: u32,
        burst: u32,
    ) -> Result<Option<(ShareKey, PersonKeyShares)>, CeremonyError> {
        let Some(secret) = &self.round2_secret else {
            return Ok(None);
        };
        if self.round2.len() + 1 < self.plan.members.len() {
            return Ok(None);
        }
        let mut packages = BTreeMap::new();
        for (from, (_, bytes)) in &self.round2 {
            let package = round2::Package::deserialize(bytes)
                .map_err(|e| member_error(*from, format!("round-2 package: {e}")))?;
            let id = member_identifier(*from).map_err(|e| CeremonyError::Plan(e.to_string()))?;
            packages.insert(id, package);
        }
        let others = self.others_round1();
        let derived = match &self.current {
            Some((key_package, public_package)) => refresh::refresh_dkg_shares(
                secret,
                &others,
                &packages,
                public_package.clone(),
                key_package.clone(),
            ),
            None => dkg::part3(secret, &others, &packages),
        };
        let (key_package, public) = derived.map_err(|e| {
            match e
                .culprits()
                .first()
                .and_then(|c| super::keygen::member_index(c).ok())
            {
                Some(member) => member_error(
                    member,
                    format!("its round-2 value does not match its commitments: {e}"),
                ),
                None => CeremonyError::Plan(format!("round 3: {e}")),
            }
        })?;
        let oprf = |e: OprfError| CeremonyError::Plan(e.to_string());
        let share = share_from_key_package(&key_package).map_err(oprf)?;
        let policy = policy_from_public_package(&public).map_err(oprf)?;
        let shares = self
            .plan
            .members
            .iter()
            .map(|m| {
                policy
                    .public_shares
                    .get(&m.index)
                    .map(|e| PersonKeyShare {
                        region: m.region,
                        index: m.index,
                        public_share: *e,
                    })
                    .ok_or_else(|| {
                        CeremonyError::Plan(format!("no public share for member {}", m.index))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if shares.len() != policy.public_shares.len() {
            return Err(CeremonyError::Plan(
                "the derived public shares name members outside the plan".into(),
            ));
        }
        Ok(Some((
            share,
            PersonKeyShares {
                threshold: policy.threshold,
                evaluations_per_day,
                burst,
                shares,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oprf::keygen::{TestRng, test_regions as regions};

    fn plan(n: u32, t: u16) -> CeremonyPlan {
        CeremonyPlan::generate("test", t, &regions(n)).unwrap()
    }

    /// Every member, receiving messages in any order (round-2 before its own round 1 is
    /// complete included), ends with a share of one key and the same public shares.
    #[test]
    fn members_exchanging_messages_in_any_order_agree_on_one_key() {
        let p = plan(4, 3);
        let mut rng = TestRng(0, 11);
        let mut members = Vec::new();
        let mut mail: Vec<(u16, CeremonyMessage)> = Vec::new();
        for r in &p.members {
            let (c, m) = Ceremony::start(p.clone(), r.region, None, &mut rng).unwrap();
            for to in 1..=4u16 {
                if to != c.me() {
                    mail.push((to, m.clone()));
                }
            }
            members.push(c);
        }
        // Deliver in a scrambled order, letting members move to round 2 as soon as
        // they can.
        let mut step = 0usize;
        while !mail.is_empty() {
            step += 7;
            let (to, m) = mail.remove(step % mail.len());
            let c = &mut members[usize::from(to) - 1];
            c.receive(m.clone()).unwrap();
            c.receive(m).unwrap(); // a repeat is harmless
            if let Some(out) = c.round2().unwrap() {
                mail.extend(out);
            }
        }
        let results: Vec<_> = members
            .iter()
            .map(|c| c.finish(10, 10).unwrap().unwrap())
            .collect();
        for (_, shares) in &results[1..] {
            assert_eq!(*shares, results[0].1);
        }
        let mut m = crate::manifest::Manifest::for_build(
            "cn-credit",
            1,
            crate::time::Timestamp(1),
            crate::time::Timestamp(2),
            crate::crypto::Keypair::from_secret([1; 32]).public(),
            p.members
                .iter()
                .zip(1u8..)
                .map(|(r, i)| {
                    crate::manifest::Member::for_province(
                        r.region,
                        crate::crypto::Keypair::from_secret([i + 10; 32]).public(),
                        crate::crypto::Keypair::from_secret([i + 110; 32]).public(),
                        vec![],
                    )
                })
                .collect(),
        );
        m.person_key = Some(results[0].1.clone());
        m.validate().unwrap();
        let shares: Vec<&ShareKey> = results.iter().map(|(s, _)| s).collect();
        let whole = crate::oprf::keygen::interpolate_secret(&shares[..3]);
        assert_eq!(whole, crate::oprf::keygen::interpolate_secret(&shares[1..]));
    }

    /// A dealer that shows two members different round-1 packages is caught: a member
    /// that holds the other version refuses the round-2 packages of members that hold
    /// the first, naming them; a member that sends two different packages is named.
    #[test]
    fn a_dealer_showing_members_different_commitments_is_caught() {
        let p = plan(3, 2);
        let mut rng = TestRng(0, 12);
        let (mut a, ma) = Ceremony::start(p.clone(), p.members[0].region, None, &mut rng).unwrap();
        let (mut b, mb) = Ceremony::start(p.clone(), p.members[1].region, None, &mut rng).unwrap();
        let (mut c, mc) = Ceremony::start(p.clone(), p.members[2].region, None, &mut rng).unwrap();
        // Member 3 equivocates: a second round-1 package for member 2.
        let (_, mc2) = Ceremony::start(p.clone(), p.members[2].region, None, &mut rng).unwrap();
        a.receive(mb.clone()).unwrap();
        a.receive(mc.clone()).unwrap();
        b.receive(ma.clone()).unwrap();
        b.receive(mc2.clone()).unwrap();
        c.receive(ma).unwrap();
        c.receive(mb).unwrap();
        assert_eq!(
            b.receive(mc).unwrap_err(),
            member_error(3, "sent two different round-1 packages")
        );
        let from_a = a.round2().unwrap().unwrap();
        let _ = b.round2().unwrap().unwrap();
        let to_b = from_a.into_iter().find(|(to, _)| *to == 2).unwrap().1;
        let err = b.receive(to_b).unwrap_err();
        assert!(
            matches!(err, CeremonyError::Member { member: 1, .. }),
            "{err}"
        );
    }

    /// Messages of another plan, from a non-member or from oneself are refused; a plan
    /// with an impossible threshold does not start.
    #[test]
    fn foreign_messages_and_bad_plans_are_refused() {
        let p = plan(3, 2);
        let mut rng = TestRng(0, 13);
        let (mut a, _) = Ceremony::start(p.clone(), p.members[0].region, None, &mut rng).unwrap();
        let mut other = p.clone();
        other.label = "other".into();
        let (_, foreign) = Ceremony::start(other, p.members[1].region, None, &mut rng).unwrap();
        assert!(matches!(
            a.receive(foreign),
            Err(CeremonyError::OtherCeremony { .. })
        ));
        let (_, own) = Ceremony::start(p.clone(), p.members[0].region, None, &mut rng).unwrap();
        assert!(matches!(
            a.receive(own),
            Err(CeremonyError::Member { member: 1, .. })
        ));
        assert!(CeremonyPlan::generate("test", 4, &regions(3)).is_err());
        assert!(CeremonyPlan::generate("test", 1, &regions(3)).is_err());
        assert!(CeremonyPlan::generate(" ", 2, &regions(3)).is_err());
        let mut twice = regions(3);
        twice[2] = twice[1];
        assert!(CeremonyPlan::generate("test", 2, &twice).is_err());
        let stranger = RegionCode::new(650000, "r").unwrap();
        assert!(Ceremony::start(p.clone(), stranger, None, &mut rng).is_err());
        assert!(decode_message(&[0xff; 8]).is_err());
    }

    /// Delivers every message (round 1 to all, round 2 to its member) until no mail is
    /// left; returns each member's result.
    fn run_to_end(
        members: &mut [Ceremony],
        round1: Vec<CeremonyMessage>,
    ) -> Vec<(ShareKey, PersonKeyShares)> {
        let indexes: Vec<u16> = members.iter().map(|c| c.me()).collect();
        let mut mail: Vec<(u16, CeremonyMessage)> = Vec::new();
        for m in round1 {
            let (_, from) = m.ceremony_and_sender();
            mail.extend(
                indexes
                    .iter()
                    .filter(|i| **i != from)
                    .map(|i| (*i, m.clone())),
            );
        }
        while let Some((to, m)) = mail.pop() {
            let c = members.iter_mut().find(|c| c.me() == to).unwrap();
            c.receive(m).unwrap();
            if let Some(out) = c.round2().unwrap() {
                mail.extend(out);
            }
        }
        members
            .iter()
            .map(|c| c.finish(10, 10).unwrap().unwrap())
            .collect()
    }

    /// A refresh among every member changes every share and public share but not the
    /// key; a refresh leaving a member out removes it (its old share no longer combines
    /// with the new ones) and keeps the others' indexes; a member refreshing other public
    /// shares than the plan names, or without its share, does not start.
    #[test]
    fn a_refresh_keeps_the_key_and_can_remove_a_member() {
        let p = plan(4, 3);
        let mut rng = TestRng(0, 14);
        let (mut ms, r1): (Vec<_>, Vec<_>) = p
            .members
            .iter()
            .map(|m| Ceremony::start(p.clone(), m.region, None, &mut rng).unwrap())
            .unzip();
        let generated = run_to_end(&mut ms, r1);
        let current = generated[0].1.clone();
        let old: Vec<&ShareKey> = generated.iter().map(|(s, _)| s).collect();
        let key = crate::oprf::keygen::interpolate_secret(&old[..3]);

        // Everyone refreshes.
        let all = CeremonyPlan::refresh("refresh", &current, None).unwrap();
        let (mut ms, r1): (Vec<_>, Vec<_>) = all
            .members
            .iter()
            .zip(&generated)
            .map(|(m, (share, _))| {
                Ceremony::start(all.clone(), m.region, Some((share, &current)), &mut rng).unwrap()
            })
            .unzip();
        let refreshed = run_to_end(&mut ms, r1);
        for (_, shares) in &refreshed[1..] {
            assert_eq!(*shares, refreshed[0].1);
        }
        let new: Vec<&ShareKey> = refreshed.iter().map(|(s, _)| s).collect();
        assert_eq!(crate::oprf::keygen::interpolate_secret(&new[1..]), key);
        for (a, b) in refreshed[0].1.shares.iter().zip(&current.shares) {
            assert_eq!((a.region, a.index), (b.region, b.index));
            assert_ne!(a.public_share, b.public_share);
        }
        refreshed[0].1.policy().validate().unwrap();

        // Member 2 is left out: the others keep indexes 1, 3, 4 and the key.
        let current = refreshed[0].1.clone();
        let kept: Vec<RegionCode> = [0usize, 2, 3]
            .iter()
            .map(|i| p.members[*i].region)
            .collect();
        let without = CeremonyPlan::refresh("remove member 2", &current, Some(&kept)).unwrap();
        assert_eq!(
            without.members.iter().map(|m| m.index).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        let (mut ms, r1): (Vec<_>, Vec<_>) = [0usize, 2, 3]
            .iter()
            .map(|i| {
                Ceremony::start(
                    without.clone(),
                    p.members[*i].region,
                    Some((&refreshed[*i].0, &current)),
                    &mut rng,
                )
                .unwrap()
            })
            .unzip();
        let after = run_to_end(&mut ms, r1);
        assert_eq!(after[0].1.shares.len(), 3);
        let kept_shares: Vec<&ShareKey> = after.iter().map(|(s, _)| s).collect();
        assert_eq!(crate::oprf::keygen::interpolate_secret(&kept_shares), key);
        let removed = &refreshed[1].0;
        assert_ne!(
            crate::oprf::keygen::interpolate_secret(&[kept_shares[0], removed, kept_shares[1]]),
            key
        );

        // Refusals: a stranger in the plan, another key's shares, no share.
        let stranger = RegionCode::new(650000, "r").unwrap();
        assert!(CeremonyPlan::refresh("x", &current, Some(&[stranger, kept[0], kept[1]])).is_err());
        assert!(matches!(
            Ceremony::start(
                without.clone(),
                kept[0],
                Some((&after[0].0, &after[0].1)),
                &mut rng
            ),
            Err(CeremonyError::Plan(_))
        ));
        assert!(Ceremony::start(without.clone(), kept[0], None, &mut rng).is_err());
        assert!(
            Ceremony::start(
                without,
                kept[0],
                Some((&refreshed[2].0, &current)),
                &mut rng
            )
            .is_err(),
            "member 3's share offered as member 1's"
        );
    }
}

//! A member's lost share given back, or a new member given a share of the existing key,
//! by helpers that hold shares, without any of them learning it (docs/privacy.md, "Key
//! lifecycle").
//!
//! frost's repairable threshold scheme: each helper splits its share's contribution to
//! the repaired member's share into one random-looking delta per helper (itself
//! included) and sends each helper its delta; each helper sums the deltas it received
//! into a sigma and sends it to the repaired member, which sums the sigmas into its
//! share. A helper sees only deltas, which are uniformly random on their own; the
//! repaired member sees only sigmas. The repaired share is checked against the public
//! shares (the listed one for a lost share, the polynomial's value at the new index for
//! an enrolment), so a helper that sends a wrong value cannot plant a wrong share: the
//! repair fails and is repeated with other helpers (the scheme cannot name which helper
//! it was). Deltas travel only to the helper they are for, sigmas only to the repaired
//! member, over the members' encrypted connections.
//!
//! Pure: randomness comes from the caller; messages in and out are values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ceremony::{
    CeremonyError, CeremonyMessage, PlanMember, encode_members, member_error, shares_digest,
};
use super::keygen::frost::keys::repairable::{self, Delta, Sigma};
use super::keygen::{
    frost, member_identifier, packages_from_share, public_share_at, share_from_key_package,
};
use super::{OprfError, ShareKey};
use crate::crypto::{Hash256, sha256};
use crate::ids::RegionCode;
use crate::manifest::{PersonKeyShare, PersonKeyShares};

/// What every helper and the repaired member start with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairPlan {
    /// A name the members agree on out of band.
    pub label: String,
    /// Digest of the public shares of the key being repaired.
    pub current: Hash256,
    /// The member getting a share: its listed index, or the next free index for a
    /// member that holds none yet.
    pub member: PlanMember,
    /// The helpers (at least the threshold, holding shares), sorted by region.
    pub helpers: Vec<PlanMember>,
}

fn plan_error(why: impl Into<String>) -> CeremonyError {
    CeremonyError::Plan(why.into())
}

impl RepairPlan {
    /// A repair of `member`'s share of `current` by `helpers` (every other share holder
    /// when `None`).
    pub fn new(
        label: &str,
        current: &PersonKeyShares,
        member: RegionCode,
        helpers: Option<&[RegionCode]>,
    ) -> Result<RepairPlan, CeremonyError> {
        let index = match current.of_region(member) {
            Some(listed) => listed.index,
            None => current
                .shares
                .iter()
                .map(|s| s.index)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| plan_error("member: no free index"))?,
        };
        let mut chosen = Vec::new();
        for s in &current.shares {
            if s.region != member && helpers.is_none_or(|h| h.contains(&s.region)) {
                chosen.push(PlanMember {
                    region: s.region,
                    index: s.index,
                });
            }
        }
        if let Some(h) = helpers {
            if let Some(r) = h.iter().find(|r| **r == member) {
                return Err(plan_error(format!(
                    "members: {r} is the member being repaired; it cannot help itself"
                )));
            }
            if let Some(r) = h.iter().find(|r| current.of_region(**r).is_none()) {
                return Err(plan_error(format!(
                    "members: {r} holds no share of the key, so it cannot help"
                )));
            }
        }
        chosen.sort_by_key(|m| m.region);
        let plan = RepairPlan {
            label: label.to_string(),
            current: shares_digest(current),
            member: PlanMember {
                region: member,
                index,
            },
            helpers: chosen,
        };
        plan.validate(current.threshold)?;
        Ok(plan)
    }

    /// Helpers sorted, distinct, at least `threshold`, not the repaired member; a label.
    pub fn validate(&self, threshold: u16) -> Result<(), CeremonyError> {
        if self.label.trim().is_empty() || self.label.len() > 200 {
            return Err(plan_error(
                "label: 1 to 200 characters, the same at every member",
            ));
        }
        if !self.helpers.windows(2).all(|w| w[0].region < w[1].region) {
            return Err(plan_error(
                "members: helpers must be sorted by region, each once",
            ));
        }
        if self
            .helpers
            .iter()
            .any(|h| h.region == self.member.region || h.index == self.member.index)
        {
            return Err(plan_error(
                "members: the member being repaired cannot help itself",
            ));
        }
        if self.helpers.len() < usize::from(threshold) {
            return Err(plan_error(format!(
                "members: {} helpers, the key needs {threshold} to repair a share",
                self.helpers.len()
            )));
        }
        if self.member.index == 0 {
            return Err(plan_error("member index 0 is reserved"));
        }
        Ok(())
    }

    /// The repair's id, so that members that started different plans refuse each
    /// other's messages.
    pub fn id(&self) -> Hash256 {
        let helpers = encode_members(&self.helpers);
        sha256(&[
            b"credfed person key repair v1\0",
            &self.current.0,
            self.label.as_bytes(),
            b"\0",
            &self.member.region.code().to_be_bytes(),
            &self.member.index.to_be_bytes(),
            &helpers,
        ])
    }

    /// The region behind an index in this plan (helpers and the repaired member).
    pub fn region_of(&self, index: u16) -> Option<RegionCode> {
        if index == self.member.index {
            return Some(self.member.region);
        }
        self.helpers
            .iter()
            .find(|m| m.index == index)
            .map(|m| m.region)
    }

    /// Every party: helpers, then the repaired member.
    pub fn parties(&self) -> impl Iterator<Item = &PlanMember> {
        self.helpers.iter().chain(std::iter::once(&self.member))
    }
}

/// What a repair ends with at one member.
#[derive(Debug)]
pub enum RepairOutcome {
    /// A helper's part is done (it sent its sigma).
    Helped,
    /// The repaired member's share, checked against the public shares, and the public
    /// shares with it listed (unchanged for a lost share; one more for an enrolment).
    Share(ShareKey, PersonKeyShares),
}

enum Role {
    Helper {
        /// Deltas received (own included), by sending helper.
        deltas: BTreeMap<u16, Vec<u8>>,
        sigma_sent: bool,
    },
    Member {
        sigmas: BTreeMap<u16, Vec<u8>>,
    },
}

/// One party's repair.
pub struct Repair {
    plan: RepairPlan,
    id: Hash256,
    me: u16,
    current: PersonKeyShares,
    role: Role,
}

impl std::fmt::Debug for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repair(member {}, {:?})", self.me, self.progress())
    }
}

impl Repair {
    /// Starts this member's part: a helper gives one delta message per other helper
    /// (its own delta it keeps); the repaired member gives none. A helper needs its
    /// share; every party needs the public shares being repaired (the manifest's
    /// `person_key`).
    pub fn start<R: frost::rand_core::RngCore + frost::rand_core::CryptoRng>(
        plan: RepairPlan,
        me: RegionCode,
        share: Option<&ShareKey>,
        current: &PersonKeyShares,
        rng: &mut R,
    ) -> Result<(Repair, Vec<(u16, CeremonyMessage)>), CeremonyError> {
        plan.validate(current.threshold)?;
        if shares_digest(current) != plan.current {
            return Err(plan_error(
                "the plan repairs other public shares than this member's manifest lists; every member must repair the manifest's person_key",
            ));
        }
        let id = plan.id();
        let oprf = |e: OprfError| plan_error(e.to_string());
        if me == plan.member.region {
            let repair = Repair {
                me: plan.member.index,
                plan,
                id,
                current: current.clone(),
                role: Role::Member {
                    sigmas: BTreeMap::new(),
                },
            };
            return Ok((repair, Vec::new()));
        }
        let Some(helper) = plan.helpers.iter().find(|h| h.region == me).copied() else {
            return Err(plan_error(format!(
                "{me} is neither a helper nor the member being repaired"
            )));
        };
        let Some(share) = share else {
            return Err(plan_error(
                "a helper needs its share, and this member holds none",
            ));
        };
        if share.index() != helper.index {
            return Err(plan_error(format!(
                "this member's share is member {}'s; the plan gives it index {}",
                share.index(),
                helper.index
            )));
        }
        let (key_package, _) = packages_from_share(share, &current.policy()).map_err(oprf)?;
        let helpers: Vec<frost::Identifier> = plan
            .helpers
            .iter()
            .map(|h| member_identifier(h.index))
            .collect::<Result<_, _>>()
            .map_err(oprf)?;
        let deltas = repairable::repair_share_part1::<frost::Ristretto255Sha512, _>(
            &helpers,
            &key_package,
            rng,
            member_identifier(plan.member.index).map_err(oprf)?,
        )
        .map_err(|e| plan_error(format!("repair: {e}")))?;
        let mut own = BTreeMap::new();
        let mut out = Vec::new();
        for (to, delta) in deltas {
            let to = super::keygen::member_index(&to).map_err(oprf)?;
            let bytes = delta.serialize();
            if to == helper.index {
                own.insert(to, bytes);
            } else {
                out.push((
                    to,
                    CeremonyMessage::RepairDelta {
                        ceremony: id,
                        from: helper.index,
                        package: bytes,
                    },
                ));
            }
        }
        let repair = Repair {
            me: helper.index,
            plan,
            id,
            current: current.clone(),
            role: Role::Helper {
                deltas: own,
                sigma_sent: false,
            },
        };
        Ok((repair, out))
    }

    /// The repair's id.
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The plan.
    pub fn plan(&self) -> &RepairPlan {
        &self.plan
    }

    /// This party's index.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// Deltas held (a helper) or sigmas held (the repaired member), and how many are
    /// needed.
    pub fn progress(&self) -> (usize, usize) {
        match &self.role {
            Role::Helper { deltas, .. } => (deltas.len(), self.plan.helpers.len()),
            Role::Member { sigmas } => (sigmas.len(), self.plan.helpers.len()),
        }
    }

    /// Parties whose message this party still needs.
    pub fn waiting_for(&self) -> Vec<u16> {
        let held = match &self.role {
            Role::Helper { deltas, .. } => deltas,
            Role::Member { sigmas } => sigmas,
        };
        self.plan
            .helpers
            .iter()
            .map(|h| h.index)
            .filter(|i| !held.contains_key(i))
            .collect()
    }

    /// Takes in a message; a helper that now holds every delta gives its sigma message
    /// for the repaired member (once).
    pub fn receive(
        &mut self,
        message: CeremonyMessage,
    ) -> Result<Option<(u16, CeremonyMessage)>, CeremonyError> {
        let (ceremony, from) = message.ceremony_and_sender();
        if ceremony != self.id {
            return Err(CeremonyError::OtherCeremony {
                found: ceremony,
                ours: self.id,
            });
        }
        if from == self.me || !self.plan.helpers.iter().any(|h| h.index == from) {
            return Err(member_error(from, "not another helper of this repair"));
        }
        let (held, expected) = match (&mut self.role, &message) {
            (Role::Helper { deltas, .. }, CeremonyMessage::RepairDelta { .. }) => (deltas, "delta"),
            (Role::Member { sigmas }, CeremonyMessage::RepairSigma { .. }) => (sigmas, "sigma"),
            _ => {
                return Err(member_error(
                    from,
                    "sent a message this party does not take in a repair",
                ));
            }
        };
        let package = message.package().to_vec();
        if let Some(h) = held.get(&from) {
            return if *h == package {
                Ok(None)
            } else {
                Err(member_error(
                    from,
                    format!("sent two different {expected}s"),
                ))
            };
        }
        let parsed_ok = match expected {
            "delta" => Delta::deserialize(&package).is_ok(),
            _ => Sigma::deserialize(&package).is_ok(),
        };
        if !parsed_ok {
            return Err(member_error(
                from,
                format!("its {expected} is not a scalar"),
            ));
        }
        held.insert(from, package);
        self.sigma()
    }

    /// A helper's sigma, once every delta is in (once).
    fn sigma(&mut self) -> Result<Option<(u16, CeremonyMessage)>, CeremonyError> {
        let helpers = self.plan.helpers.len();
        let Role::Helper { deltas, sigma_sent } = &mut self.role else {
            return Ok(None);
        };
        if *sigma_sent || deltas.len() < helpers {
            return Ok(None);
        }
        let parsed = deltas
            .iter()
            .map(|(from, d)| {
                Delta::deserialize(d).map_err(|e| member_error(*from, format!("delta: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sigma = repairable::repair_share_part2(&parsed);
        *sigma_sent = true;
        Ok(Some((
            self.plan.member.index,
            CeremonyMessage::RepairSigma {
                ceremony: self.id,
                from: self.me,
                package: sigma.serialize(),
            },
        )))
    }

    /// The outcome once this party's part is done; `None` before.
    pub fn finish(&self) -> Result<Option<RepairOutcome>, CeremonyError> {
        let oprf = |e: OprfError| plan_error(e.to_string());
        match &self.role {
            Role::Helper { sigma_sent, .. } => Ok(sigma_sent.then_some(RepairOutcome::Helped)),
            Role::Member { sigmas } => {
                if sigmas.len() < self.plan.helpers.len() {
                    return Ok(None);
                }
                let parsed = sigmas
                    .iter()
                    .map(|(from, s)| {
                        Sigma::deserialize(s)
                            .map_err(|e| member_error(*from, format!("sigma: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let policy = self.current.policy();
                let expected = public_share_at(&policy, self.plan.member.index).map_err(oprf)?;
                // frost takes the key's public value and the threshold from it.
                let public = super::keygen::public_package(&policy).map_err(oprf)?;
                let key_package = repairable::repair_share_part3(
                    &parsed,
                    member_identifier(self.plan.member.index).map_err(oprf)?,
                    &public,
                )
                .map_err(|e| plan_error(format!("repair: {e}")))?;
                let share = share_from_key_package(&key_package).map_err(oprf)?;
                if share.public() != expected {
                    return Err(plan_error(
                        "the repaired share does not match the public shares: a helper sent a wrong value (the scheme cannot say which); repair again with other helpers",
                    ));
                }
                let mut shares = self.current.clone();
                if shares.of_region(self.plan.member.region).is_none() {
                    shares.shares.push(PersonKeyShare {
                        region: self.plan.member.region,
                        index: self.plan.member.index,
                        public_share: expected,
                    });
                    shares.shares.sort_by_key(|s| s.region);
                }
                Ok(Some(RepairOutcome::Share(share, shares)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oprf::keygen::{
        TestRng, ceremony_in_one_process, interpolate_secret, test_regions as regions,
    };

    /// Runs a repair among `parties` (helpers' shares by index); returns each party's
    /// outcome.
    fn run(
        plan: &RepairPlan,
        shares: &BTreeMap<u16, &ShareKey>,
        current: &PersonKeyShares,
        tamper: bool,
    ) -> Vec<Result<Option<RepairOutcome>, CeremonyError>> {
        let mut rng = TestRng(0, 21);
        let mut parties = Vec::new();
        let mut mail = Vec::new();
        for p in plan.parties() {
            let (r, out) = Repair::start(
                plan.clone(),
                p.region,
                shares.get(&p.index).copied(),
                current,
                &mut rng,
            )
            .unwrap();
            mail.extend(out);
            parties.push(r);
        }
        while let Some((to, mut m)) = mail.pop() {
            if tamper && let CeremonyMessage::RepairSigma { package, .. } = &mut m {
                // A helper lies: its sigma is another scalar.
                package[0] ^= 1;
            }
            let party = parties.iter_mut().find(|p| p.me() == to).unwrap();
            if let Some(next) = party.receive(m).unwrap() {
                mail.push(next);
            }
        }
        parties.iter().map(|p| p.finish()).collect()
    }

    /// A member that lost its share gets the same share back from t helpers; a new
    /// member gets a share of the same key at the next index; a wrong value from a
    /// helper fails the repair instead of planting a wrong share.
    #[test]
    fn a_lost_share_comes_back_and_a_new_member_is_enrolled_without_changing_the_key() {
        let members = regions(5);
        let (shares, current) =
            ceremony_in_one_process(&members, 3, 10, 10, &mut TestRng(0, 20)).unwrap();
        let key = interpolate_secret(&shares.iter().take(3).collect::<Vec<_>>());
        let by_index: BTreeMap<u16, &ShareKey> = shares.iter().map(|s| (s.index(), s)).collect();

        // Member 2 lost its share; members 1, 3, 5 help.
        let helpers = [members[0], members[2], members[4]];
        let plan = RepairPlan::new("lost", &current, members[1], Some(&helpers)).unwrap();
        let mut without = by_index.clone();
        without.remove(&2);
        let outcomes = run(&plan, &without, &current, false);
        let repaired = outcomes
            .into_iter()
            .find_map(|o| match o.unwrap() {
                Some(RepairOutcome::Share(s, listed)) => Some((s, listed)),
                _ => None,
            })
            .unwrap();
        assert_eq!(repaired.0.secret_bytes(), by_index[&2].secret_bytes());
        assert_eq!(repaired.1, current, "a lost share changes no public share");

        // A sixth member is enrolled at index 6 by the three first members.
        let newcomer = RegionCode::new(650000, "r").unwrap();
        let plan = RepairPlan::new("enrol", &current, newcomer, Some(&members[..3])).unwrap();
        assert_eq!(plan.member.index, 6);
        let outcomes = run(&plan, &by_index, &current, false);
        let (share, listed) = outcomes
            .into_iter()
            .find_map(|o| match o.unwrap() {
                Some(RepairOutcome::Share(s, l)) => Some((s, l)),
                _ => None,
            })
            .unwrap();
        assert_eq!(listed.shares.len(), 6);
        listed.policy().validate().unwrap();
        assert_eq!(
            interpolate_secret(&[&share, by_index[&4], by_index[&5]]),
            key,
            "the newcomer's share combines with the others into the same key"
        );

        // A helper's wrong sigma: the repaired share does not match; refused.
        let plan = RepairPlan::new("tampered", &current, members[1], Some(&helpers)).unwrap();
        let outcomes = run(&plan, &without, &current, true);
        let err = outcomes
            .into_iter()
            .find_map(|o| o.err())
            .expect("the tampered repair failed");
        assert!(
            err.to_string().contains("does not match the public shares"),
            "{err}"
        );
    }

    /// Plans with too few helpers, the repaired member among its helpers, a helper
    /// without a share, or another key's shares are refused.
    #[test]
    fn repair_plans_that_cannot_work_are_refused() {
        let members = regions(4);
        let (shares, current) =
            ceremony_in_one_process(&members, 3, 10, 10, &mut TestRng(0, 22)).unwrap();
        assert!(RepairPlan::new("x", &current, members[0], Some(&members[1..3])).is_err());
        assert!(RepairPlan::new("x", &current, members[0], Some(&members[..3])).is_err());
        let stranger = RegionCode::new(650000, "r").unwrap();
        assert!(
            RepairPlan::new(
                "x",
                &current,
                members[0],
                Some(&[members[1], members[2], stranger])
            )
            .is_err()
        );
        let plan = RepairPlan::new("x", &current, members[0], None).unwrap();
        assert_eq!(plan.helpers.len(), 3);
        let mut rng = TestRng(0, 23);
        assert!(Repair::start(plan.clone(), members[1], None, &current, &mut rng).is_err());
        let mut other = current.clone();
        other.shares.swap(0, 1);
        assert!(
            Repair::start(plan.clone(), members[1], Some(&shares[1]), &other, &mut rng).is_err()
        );
        assert!(
            Repair::start(plan, members[1], Some(&shares[2]), &current, &mut rng).is_err(),
            "member 3's share offered as member 2's"
        );
    }
}

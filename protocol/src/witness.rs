//! Witnessing: when a member cosigns another region's checkpoint, and when a checkpoint
//! counts as witnessed.
//!
//! Every member replicates every region's log, so a member can witness a region better
//! than a C2SP witness that sees only checkpoints: it cosigns a checkpoint only if its own
//! replica, at the checkpoint's size, has exactly the checkpoint's root. A region that
//! shows one history to some members and another to others (a split view) therefore
//! cannot collect cosignatures from the members that hold the other history, and a
//! checkpoint that contradicts a member's replica is evidence against its signer: a
//! signed tree head that no honest replica of that region can reproduce.
//!
//! A witness also remembers the largest checkpoint it has cosigned per region, durably
//! before it answers, and never cosigns a smaller one or a different root at that size:
//! even a witness whose replica was lost cannot be made to vouch for two histories.
//!
//! The quorum follows from the number *f* of faulty members the manifest's policy
//! tolerates ([`quorum`]): any two quorums of the other members intersect in at least
//! *f* + 1 of them, so one honest member is in both, and an honest member never cosigns
//! two conflicting checkpoints of a region — with at most *f* members faulty (the region
//! included or not), no two conflicting checkpoints of a region can both be witnessed
//! (docs/protocol.md, "Security argument").

use crate::checkpoint::{CheckpointError, SignedCheckpoint, origin, witness_name};
use crate::crypto::Hash256;
use crate::ids::RegionCode;
use crate::manifest::Manifest;

/// The largest checkpoint of a region a witness has cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WitnessView {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash256,
}

/// Why a witness does not cosign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CosignRefusal {
    /// The witness does not hold that many records of the region yet: ask again later.
    #[error("not yet: this replica holds {held} records")]
    NotYet {
        /// Records held.
        held: u64,
    },
    /// Smaller than a checkpoint already cosigned.
    #[error("older than the checkpoint of {cosigned} records already cosigned")]
    Older {
        /// Size already cosigned.
        cosigned: u64,
    },
    /// The root differs from the witness's replica at that size (or from what it
    /// cosigned): the region shows another history here.
    #[error(
        "split view: at {size} records this replica's root is {ours}, the checkpoint says {theirs}"
    )]
    Conflict {
        /// Size.
        size: u64,
        /// The witness's root.
        ours: Hash256,
        /// The checkpoint's.
        theirs: Hash256,
    },
    /// The witness holds proof that this region's node signed two different envelopes
    /// at one position: it vouches for none of its checkpoints any more.
    #[error("this region equivocated (evidence held): no checkpoint of it is cosigned")]
    Equivocator,
    /// Not a checkpoint of a member region, or not signed by that region's node.
    #[error("{0}")]
    Invalid(String),
    /// A federation checkpoint's leaf for `region` is older than a witnessed checkpoint
    /// of it this member has held for longer than the grace period.
    #[error(
        "stale: the leaf of {region} has {leaf} records; a checkpoint of {witnessed} was witnessed {age}s ago"
    )]
    Stale {
        /// Region.
        region: RegionCode,
        /// The leaf's size.
        leaf: u64,
        /// The witnessed checkpoint's size.
        witnessed: u64,
        /// Seconds since it was witnessed.
        age: u64,
    },
    /// The log root matches this replica but the map root does not (or is missing):
    /// the region commits to an index that its own log does not give.
    #[error("at {size} records this replica's map root is {ours}, the checkpoint says {theirs}")]
    WrongMap {
        /// Size.
        size: u64,
        /// The witness's map root.
        ours: Hash256,
        /// The checkpoint's (zeros if it has none).
        theirs: Hash256,
    },
    /// A federation leaf of `region` is newer than the witnessed checkpoint of it this
    /// member holds: ask again once the witnessed checkpoint has reached it (gossip).
    #[error(
        "not yet: no witnessed checkpoint of {region} at {size} records (or as recent) is held here yet"
    )]
    NotYetWitnessed {
        /// Region.
        region: RegionCode,
        /// The leaf's size.
        size: u64,
    },
    /// A federation leaf excludes `region` for equivocation, but this member holds no
    /// proof of it yet: ask again once the evidence has replicated.
    #[error("not yet: {region} is excluded, but no proof that it equivocated is held here yet")]
    NoEvidence {
        /// Region.
        region: RegionCode,
    },
}

impl CosignRefusal {
    /// Whether the witness may cosign later without anything changing at the asker:
    /// it is only behind.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            CosignRefusal::NotYet { .. }
                | CosignRefusal::NotYetWitnessed { .. }
                | CosignRefusal::NoEvidence { .. }
        )
    }

    /// A short name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            CosignRefusal::NotYet { .. } => "not_yet",
            CosignRefusal::Older { .. } => "older",
            CosignRefusal::Conflict { .. } => "split_view",
            CosignRefusal::Equivocator => "equivocator",
            CosignRefusal::Invalid(_) => "invalid",
            CosignRefusal::Stale { .. } => "stale",
            CosignRefusal::WrongMap { .. } => "wrong_map",
            CosignRefusal::NotYetWitnessed { .. } => "not_yet_witnessed",
            CosignRefusal::NoEvidence { .. } => "no_evidence",
        }
    }
}

/// The most faulty members a federation of `members` can tolerate: ⌊(n − 2) / 3⌋. With
/// more, quorums that intersect in f + 1 members could not be reached while f members
/// are down or cut off (see [`quorum`] and [`crate::federation::federation_quorum`]).
pub fn max_faults(members: usize) -> usize {
    members.saturating_sub(2) / 3
}

/// Cosignatures a region's checkpoint needs from the other members when `faults` of all
/// `members` may be faulty: ⌈(n + f) / 2⌉ of the n − 1 others, so that two such quorums
/// share at least 2⌈(n + f)/2⌉ − (n − 1) ≥ f + 1 members — one of them honest. A
/// federation of one has no others to ask: 0.
pub fn quorum(members: usize, faults: usize) -> usize {
    if members <= 1 {
        return 0;
    }
    (members + faults).div_ceil(2)
}

/// The region whose checkpoint this is, checked against the manifest: the origin line
/// names the federation and a member region, and the region's node key signed it.
pub fn checkpoint_region(
    signed: &SignedCheckpoint,
    manifest: &Manifest,
) -> Result<RegionCode, CosignRefusal> {
    let cp = &signed.checkpoint;
    let region = manifest
        .members
        .iter()
        .find(|m| origin(&manifest.federation_id, m.region) == cp.origin)
        .ok_or_else(|| {
            CosignRefusal::Invalid(format!(
                "origin '{}' is not a member region of federation {}",
                cp.origin.chars().take(80).collect::<String>(),
                manifest.federation_id
            ))
        })?;
    signed
        .verify_log_signature(&cp.origin, &region.node_key)
        .map_err(|e| CosignRefusal::Invalid(e.to_string()))?;
    Ok(region.region)
}

/// Whether a witness may cosign `signed`, given what it cosigned before (`view`), how
/// many of the region's records its replica holds, and its replica's root at a size.
/// The caller has checked the signature ([`checkpoint_region`]).
pub fn judge(
    signed: &SignedCheckpoint,
    view: Option<WitnessView>,
    replica_size: u64,
    replica_root_at: impl Fn(u64) -> Option<Hash256>,
) -> Result<WitnessView, CosignRefusal> {
    let cp = &signed.checkpoint;
    if let Some(v) = view {
        if cp.size < v.size {
            return Err(CosignRefusal::Older { cosigned: v.size });
        }
        if cp.size == v.size && cp.root != v.root {
            return Err(CosignRefusal::Conflict {
                size: cp.size,
                ours: v.root,
                theirs: cp.root,
            });
        }
    }
    if cp.size > replica_size {
        return Err(CosignRefusal::NotYet { held: replica_size });
    }
    let ours = replica_root_at(cp.size).ok_or(CosignRefusal::NotYet { held: replica_size })?;
    if ours != cp.root {
        return Err(CosignRefusal::Conflict {
            size: cp.size,
            ours,
            theirs: cp.root,
        });
    }
    Ok(WitnessView {
        size: cp.size,
        root: cp.root,
    })
}

/// Checks that `signed` is a witnessed checkpoint of a member region: signed by the
/// region's node and cosigned by at least [`quorum`] other members. Returns the region
/// and the members whose cosignatures verified — it stops at the quorum, so that a note
/// with every member's cosignature costs no more to check than one with just enough.
pub fn verify_witnessed(
    signed: &SignedCheckpoint,
    manifest: &Manifest,
) -> Result<(RegionCode, Vec<RegionCode>), CheckpointError> {
    let region = checkpoint_region(signed, manifest)
        .map_err(|e| CheckpointError::Signature(e.to_string()))?;
    let need = manifest.policy.witness_quorum(manifest.members.len());
    let cosigners: Vec<RegionCode> = verified_cosigners(signed, manifest, need, |r| r != region)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    if cosigners.len() < need {
        return Err(CheckpointError::Signature(format!(
            "{} of {need} cosignatures needed (the manifest's witness policy)",
            cosigners.len()
        )));
    }
    Ok((region, cosigners))
}

/// Verifies the cosignatures of `signed` by members `eligible` accepts, newest first (by
/// the time each line claims), until `need` members' verified: each member's region and
/// its verified cosignature time. Stops at `need`, so a note with every member's
/// cosignature costs no more to check than one with just enough.
pub fn verified_cosigners(
    signed: &SignedCheckpoint,
    manifest: &Manifest,
    need: usize,
    eligible: impl Fn(RegionCode) -> bool,
) -> Vec<(RegionCode, u64)> {
    let names: std::collections::BTreeMap<String, &crate::manifest::Member> = manifest
        .members
        .iter()
        .filter(|m| eligible(m.region))
        .map(|m| (witness_name(&manifest.federation_id, m.region), m))
        .collect();
    let mut lines: Vec<(u64, &String, &crate::manifest::Member)> = signed
        .signatures
        .iter()
        .filter_map(|line| {
            let m = names.get(&line.name)?;
            let claimed = <[u8; 8]>::try_from(line.data.get(..8)?).ok()?;
            Some((u64::from_be_bytes(claimed), &line.name, *m))
        })
        .collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.0));
    let mut verified: Vec<(RegionCode, u64)> = Vec::new();
    for (_, name, m) in lines {
        if verified.len() >= need {
            break;
        }
        if verified.iter().any(|(r, _)| *r == m.region) {
            continue;
        }
        if let Ok(t) = signed.verify_cosignature(name, &m.node_key) {
            verified.push((m.region, t));
        }
    }
    verified
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::crypto::Keypair;
    use crate::manifest::Member;
    use crate::merkle::MemoryTree;
    use crate::time::Timestamp;

    fn region(c: u32) -> RegionCode {
        RegionCode::new(c, "r").unwrap()
    }

    /// A region's node key (`c` a region code) or, at `c + 1`, its operator key.
    fn key(c: u32) -> Keypair {
        Keypair::from_secret([(c / 10_000) as u8 + 100 * (c % 2) as u8; 32])
    }

    fn manifest(codes: &[u32]) -> Manifest {
        Manifest::for_build(
            "cn-w",
            1,
            Timestamp(0),
            Timestamp(i64::MAX / 2),
            Keypair::from_secret([99; 32]).public(),
            codes
                .iter()
                .map(|&c| {
                    Member::for_province(region(c), key(c).public(), key(c + 1).public(), vec![])
                })
                .collect(),
        )
    }

    fn checkpoint_of(tree: &MemoryTree) -> SignedCheckpoint {
        let name = origin("cn-w", region(310000));
        SignedCheckpoint::sign(
            Checkpoint::new(name.clone(), tree.size(), tree.root()),
            &name,
            &key(310000),
        )
    }

    /// With f = 0 the quorum is a majority of the others; with the most faults a
    /// membership tolerates, any two quorums of the others share f + 1 members and a
    /// quorum is still reachable with f members down.
    #[test]
    fn quorums_of_the_others_intersect_in_f_plus_one_and_stay_reachable() {
        assert_eq!([2, 3, 4, 5, 31].map(|n| quorum(n, 0)), [1, 2, 2, 3, 16]);
        assert_eq!([2, 3, 4, 5, 8, 31].map(max_faults), [0, 0, 0, 1, 2, 9]);
        assert_eq!(quorum(31, 9), 20);
        assert_eq!(quorum(5, 1), 3);
        for n in 2..=64usize {
            for f in 0..=max_faults(n) {
                let q = quorum(n, f);
                let others = n - 1;
                // Two quorums of the others share at least f + 1 of them.
                let shared = 2 * q - others;
                assert!(shared > f, "n={n} f={f}: intersection");
                assert!(others - f >= q, "n={n} f={f}: reachable with f down");
            }
        }
    }

    /// A witness cosigns what its replica reproduces, waits when behind, refuses a root
    /// its replica contradicts, anything smaller than it cosigned, and another root at
    /// the size it cosigned.
    #[test]
    fn a_witness_vouches_only_for_what_its_replica_reproduces() {
        let data: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
        let replica = MemoryTree::from_data(&data);
        let root_at = |n| crate::merkle::root_at(&replica, n).ok();
        let at7 = checkpoint_of(&MemoryTree::from_data(&data[..7]));
        let view = judge(&at7, None, 10, root_at).unwrap();
        assert_eq!(view.size, 7);
        let at12 = checkpoint_of(&MemoryTree::from_data(
            &[data.clone(), vec![vec![10], vec![11]]].concat(),
        ));
        assert_eq!(
            judge(&at12, Some(view), 10, root_at),
            Err(CosignRefusal::NotYet { held: 10 })
        );
        let mut forked = data[..7].to_vec();
        forked[3] = vec![0xff];
        let split = checkpoint_of(&MemoryTree::from_data(&forked));
        assert!(matches!(
            judge(&split, None, 10, root_at),
            Err(CosignRefusal::Conflict { size: 7, .. })
        ));
        assert!(matches!(
            judge(&split, Some(view), 0, |_| None),
            Err(CosignRefusal::Conflict { .. })
        ));
        let at5 = checkpoint_of(&MemoryTree::from_data(&data[..5]));
        assert_eq!(
            judge(&at5, Some(view), 10, root_at),
            Err(CosignRefusal::Older { cosigned: 7 })
        );
        // The same checkpoint again is fine (a retried request).
        assert_eq!(judge(&at7, Some(view), 10, root_at), Ok(view));
    }

    /// A checkpoint counts as witnessed with a majority of the other members'
    /// cosignatures, under their witness names and node keys; the region's own
    /// cosignature and strangers' do not count.
    #[test]
    fn witnessed_needs_a_majority_of_the_others() {
        let m = manifest(&[310000, 440000, 620000, 110000, 120000]);
        let tree = MemoryTree::from_data(&[b"a".to_vec()]);
        let mut s = checkpoint_of(&tree);
        assert_eq!(checkpoint_region(&s, &m).unwrap(), region(310000));
        for c in [440000, 620000] {
            s.cosign(&witness_name("cn-w", region(c)), &key(c), 1);
        }
        s.cosign(&witness_name("cn-w", region(310000)), &key(310000), 1);
        s.cosign(&witness_name("cn-w", region(130000)), &key(130000), 1);
        let e = verify_witnessed(&s, &m).unwrap_err();
        assert!(e.to_string().contains("2 of 3"), "{e}");
        s.cosign(&witness_name("cn-w", region(110000)), &key(110000), 1);
        let (r, cosigners) = verify_witnessed(&s, &m).unwrap();
        assert_eq!(r, region(310000));
        assert_eq!(cosigners.len(), 3);
        // Signed by another key: not the region's checkpoint.
        let name = origin("cn-w", region(310000));
        let forged = SignedCheckpoint::sign(
            Checkpoint::new(name.clone(), 1, tree.root()),
            &name,
            &key(440000),
        );
        assert!(matches!(
            checkpoint_region(&forged, &m),
            Err(CosignRefusal::Invalid(_))
        ));
    }
}

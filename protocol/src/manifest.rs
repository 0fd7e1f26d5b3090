//! The federation manifest (联盟配置): who the members are and which keys speak for them.
//!
//! Signed by the federation authority (the inter-ministerial joint conference). A node
//! pins the authority's public key in its configuration and accepts a manifest only if
//! that key signed it, it has not expired, and it does not go back in version.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::PROTOCOL_VERSION;
use crate::codec::{self, DecodeError};
use crate::crypto::{Domain, Hash256, Keypair, PublicKey, Signature, SignatureError, sha256};
use crate::ids::RegionCode;
use crate::limits::*;
use crate::time::Timestamp;

/// One member region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Provincial-level region code.
    pub region: RegionCode,
    /// Name of the region's credit platform.
    pub name: String,
    /// The node's Ed25519 key: signs the region's envelopes and is its libp2p PeerId.
    pub node_key: PublicKey,
    /// The province operator's key: signs the region's department registrations and
    /// revocations (author unit [`crate::envelope::OPERATOR_UNIT`]). Apart from the node
    /// key, so that the running node — its key on a networked machine — cannot make
    /// departments, and registering one never needs the node's secret.
    pub operator_key: PublicKey,
    /// Bootstrap multiaddresses.
    pub addresses: Vec<String>,
}

/// Deadlines in working days that the state rules apply (articles 十七, 二十二, 二十三),
/// and the witnessing and fault-tolerance policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Working days after initiation by which a target region should acknowledge, when the
    /// initiator gives no later respond-by date. Default 5.
    pub acknowledge_working_days: u16,
    /// Working days within which the issuer should resolve an objection. Default 10.
    pub objection_working_days: u16,
    /// Working days from decision to publication (article 十七: 7).
    pub disclosure_working_days: u16,
    /// How many other members must cosign a region's checkpoint before it counts as
    /// witnessed (docs/protocol.md, "Witnessing").
    pub witness: WitnessPolicy,
    /// How many faulty members (lying, forking, colluding) the federation tolerates:
    /// every quorum is sized so that two quorums share at least this many plus one
    /// members ([`crate::witness::quorum`], [`crate::federation::federation_quorum`]).
    /// [`Manifest::for_build`] sets the most the membership allows
    /// ([`crate::witness::max_faults`]); [`Manifest::validate`] refuses more.
    pub faults_tolerated: u16,
}

/// The witness policy: cosignatures a region's checkpoint needs from the other members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessPolicy {
    /// The quorum that the tolerated faults require (the default): ⌈(n + f) / 2⌉ of the
    /// other members, so that two conflicting checkpoints of a region can never both be
    /// witnessed while at most f members are faulty.
    #[serde(alias = "majority_of_others")]
    Intersecting,
    /// At least this many of the other members: a stricter federation may ask for more
    /// (never fewer, which [`Manifest::validate`] refuses).
    AtLeast(u16),
}

impl WitnessPolicy {
    /// Cosignatures a region's checkpoint needs in a federation of `members` tolerating
    /// `faults`.
    pub fn cosignatures_needed(self, members: usize, faults: usize) -> usize {
        let intersecting = crate::witness::quorum(members, faults);
        match self {
            WitnessPolicy::Intersecting => intersecting,
            WitnessPolicy::AtLeast(n) => usize::from(n).max(intersecting),
        }
    }
}

impl Policy {
    /// Cosignatures of other members a region's checkpoint needs in a federation of
    /// `members`.
    pub fn witness_quorum(&self, members: usize) -> usize {
        self.witness
            .cosignatures_needed(members, usize::from(self.faults_tolerated))
    }

    /// Cosignatures a federation checkpoint needs in a federation of `members`.
    pub fn federation_quorum(&self, members: usize) -> usize {
        crate::federation::federation_quorum(members, usize::from(self.faults_tolerated))
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            acknowledge_working_days: 5,
            objection_working_days: 10,
            disclosure_working_days: 7,
            witness: WitnessPolicy::Intersecting,
            faults_tolerated: 0,
        }
    }
}

/// How far in the future a manifest's `issued_at` may lie and still be accepted: clocks
/// of provincial servers differ by seconds, an authority's by minutes at most; a day
/// covers both and refuses a manifest dated years ahead (a typo, or an attempt to
/// outlive the authority's key rotation).
pub const MAX_ISSUED_AT_SKEW_MS: i64 = 24 * 3600 * 1000;

/// The manifest content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Federation id (part of every signing tag), e.g. `cn-credit`.
    pub federation_id: String,
    /// Protocol version the members speak.
    pub protocol_version: u16,
    /// Manifest version; a higher version supersedes a lower.
    pub version: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// After this instant the manifest is refused: the authority must re-issue.
    pub expires_at: Timestamp,
    /// Key of the federation authority.
    pub authority_key: PublicKey,
    /// Members, sorted by region code.
    pub members: Vec<Member>,
    /// Deadlines.
    pub policy: Policy,
    /// The federation's policy data (measures, schemes, listing periods): the text of a
    /// catalogue file, signed with the rest of the manifest.
    pub catalogue: String,
    /// The person key's threshold, each member's public share and the evaluation budget
    /// (docs/privacy.md). `None` until the members' key ceremony has run: person checks
    /// and publications naming persons are unavailable until then.
    pub person_key: Option<PersonKeyShares>,
}

/// The federation's person key as the manifest states it: shared t of n among the
/// members, with each member's public share `k_i · G` against which its evaluations are
/// verified (docs/privacy.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKeyShares {
    /// Members that must answer for one person key.
    pub threshold: u16,
    /// Evaluations a member answers per asking member and day (refilled continuously).
    pub evaluations_per_day: u32,
    /// Evaluations an asking member may use at once (a batch import).
    pub burst: u32,
    /// One public share per member holding a share, sorted by region.
    pub shares: Vec<PersonKeyShare>,
}

/// One member's public share of the person key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKeyShare {
    /// The member.
    pub region: RegionCode,
    /// Its index in the key generation (1-based; fixed for the key's life).
    pub index: u16,
    /// `k_i · G`.
    pub public_share: crate::oprf::Element,
}

/// Evaluations each member answers per asking member and day unless the manifest says
/// otherwise. An asking member spreads its requests over the n − 1 others and needs t − 1
/// of them per person, so it can key 50 000 · (n − 1) / (t − 1) persons a day (100 000 in
/// a federation of 31 with t = 16); a lone member enumerating one masked person's ~5 ×
/// 10^9 candidates needs 5 × 10^9 / 10^5 days ≈ 137 years (docs/privacy.md gives the
/// colluding cases).
pub const DEFAULT_PERSON_EVALUATIONS_PER_DAY: u32 = 50_000;
/// Burst unless the manifest says otherwise: a 20 000-row import plus headroom.
pub const DEFAULT_PERSON_EVALUATION_BURST: u32 = 25_000;

impl PersonKeyShares {
    /// The shares as the OPRF's policy (member index → public share).
    pub fn policy(&self) -> crate::oprf::keygen::PersonKeyPolicy {
        crate::oprf::keygen::PersonKeyPolicy {
            threshold: self.threshold,
            public_shares: self
                .shares
                .iter()
                .map(|s| (s.index, s.public_share))
                .collect(),
        }
    }

    /// The share entry of a region.
    pub fn of_region(&self, region: RegionCode) -> Option<&PersonKeyShare> {
        self.shares.iter().find(|s| s.region == region)
    }

    /// The region of a member index.
    pub fn region_of(&self, index: u16) -> Option<RegionCode> {
        self.shares
            .iter()
            .find(|s| s.index == index)
            .map(|s| s.region)
    }

    fn validate(&self, members: &[Member], faults: u16) -> Result<(), ManifestError> {
        if !self.shares.windows(2).all(|w| w[0].region < w[1].region) {
            return Err(field(
                "person_key.shares",
                "must be sorted by region with no region twice",
            ));
        }
        let mut indexes: Vec<u16> = self.shares.iter().map(|s| s.index).collect();
        indexes.sort_unstable();
        if indexes.windows(2).any(|w| w[0] == w[1]) {
            return Err(field("person_key.shares", "two shares have the same index"));
        }
        if let Some(s) = self.shares.iter().find(|s| {
            members
                .binary_search_by_key(&s.region, |m| m.region)
                .is_err()
        }) {
            return Err(field(
                "person_key.shares",
                format!("{} holds a share but is not a member", s.region),
            ));
        }
        if self.threshold <= faults {
            return Err(field(
                "person_key.threshold",
                format!(
                    "{} is not above the {faults} tolerated faulty members: that many colluding members could compute every person key alone",
                    self.threshold
                ),
            ));
        }
        if self.evaluations_per_day == 0 || self.burst == 0 {
            return Err(field(
                "person_key.evaluations_per_day",
                "the budget and the burst must be at least 1",
            ));
        }
        self.policy()
            .validate()
            .map_err(|e| field("person_key", e.to_string()))
    }
}

/// A manifest and the authority's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// Canonical manifest bytes.
    #[serde(with = "crate::codec::hex_bytes")]
    pub manifest: Vec<u8>,
    /// Authority signature.
    pub signature: Signature,
}

/// Why a manifest was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not a canonical manifest.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Signature or key failure.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signer is not the authority this node trusts.
    #[error(
        "manifest.authority_key: {found} is not the pinned federation authority {expected}; check the node's authority_key setting"
    )]
    WrongAuthority {
        /// Key named in the manifest.
        found: PublicKey,
        /// Key the node pins.
        expected: PublicKey,
    },
    /// Expired.
    #[error(
        "manifest.expires_at: manifest version {version} expired at {expires_at} ms (now {now} ms); ask the federation authority for a new one"
    )]
    Expired {
        /// Version.
        version: u64,
        /// Expiry.
        expires_at: i64,
        /// Now.
        now: i64,
    },
    /// Not newer than the one held.
    #[error("manifest.version: {offered} does not supersede the held version {held}")]
    NotNewer {
        /// Offered.
        offered: u64,
        /// Held.
        held: u64,
    },
    /// Older than a version this node has already run on (docs/protocol.md §7).
    #[error(
        "manifest.version: {offered} is older than version {held}, which this node has already run on; a node never goes back to an older manifest — install version {held} or later"
    )]
    RolledBack {
        /// Offered.
        offered: u64,
        /// Held.
        held: u64,
    },
    /// The version this node has run on, with other content: two manifests signed with
    /// one version number (an authority's mistake, or a forgery with a stolen key).
    #[error(
        "manifest.version: {version} was already run on here with other content (hash {held_hash}, this one {offered_hash}); ask the federation authority which is valid, and for a higher version"
    )]
    ConflictingVersion {
        /// The version.
        version: u64,
        /// Hash of the held one.
        held_hash: String,
        /// Hash of this one.
        offered_hash: String,
    },
    /// Any other field rule.
    #[error("manifest.{field}: {rule}")]
    Field {
        /// Field.
        field: &'static str,
        /// Rule.
        rule: String,
    },
}

fn field(field: &'static str, rule: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field,
        rule: rule.into(),
    }
}

impl Member {
    /// A member named after its province (GB/T 2260 Chinese name).
    pub fn for_province(
        region: RegionCode,
        node_key: PublicKey,
        operator_key: PublicKey,
        addresses: Vec<String>,
    ) -> Member {
        Member {
            region,
            name: region.province_info().name_zh.into(),
            node_key,
            operator_key,
            addresses,
        }
    }
}

impl Manifest {
    /// A manifest for this build: its protocol version, the embedded measures catalogue
    /// and the default policy, with `members` sorted by region as [`Manifest::validate`]
    /// requires.
    pub fn for_build(
        federation_id: impl Into<String>,
        version: u64,
        issued_at: Timestamp,
        expires_at: Timestamp,
        authority_key: PublicKey,
        mut members: Vec<Member>,
    ) -> Manifest {
        members.sort_by_key(|m| m.region);
        let policy = Policy {
            faults_tolerated: u16::try_from(crate::witness::max_faults(members.len()))
                .unwrap_or(u16::MAX),
            ..Policy::default()
        };
        Manifest {
            federation_id: federation_id.into(),
            protocol_version: PROTOCOL_VERSION,
            version,
            issued_at,
            expires_at,
            authority_key,
            members,
            policy,
            catalogue: crate::catalogue::EMBEDDED_CATALOGUE.to_owned(),
            person_key: None,
        }
    }

    /// The federation's policy data, parsed.
    pub fn parse_catalogue(&self) -> Result<crate::catalogue::Catalogue, ManifestError> {
        crate::catalogue::Catalogue::parse(&self.catalogue)
            .map_err(|e| field("catalogue", e.to_string()))
    }

    /// Structural rules: id shape, protocol version, members sorted and unique by region
    /// and by key, provincial codes, address and name limits.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let id = &self.federation_id;
        if id.is_empty()
            || id.len() > MAX_FEDERATION_ID_BYTES
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(field(
                "federation_id",
                "1-64 characters of A-Z a-z 0-9 and '-'",
            ));
        }
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(field(
                "protocol_version",
                format!(
                    "{} is not {PROTOCOL_VERSION}, the version this build speaks",
                    self.protocol_version
                ),
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(field("expires_at", "must be after issued_at"));
        }
        let n = self.members.len();
        let f = usize::from(self.policy.faults_tolerated);
        let most = crate::witness::max_faults(n);
        if f > most {
            return Err(field(
                "policy.faults_tolerated",
                format!(
                    "{f} with {n} members: quorums that share f + 1 members ({} of the other members for a region's checkpoint, {} of all for a federation checkpoint) could not be reached with {f} members down; at most {most} (members ≥ 3f + 2)",
                    crate::witness::quorum(n, f),
                    crate::federation::federation_quorum(n, f)
                ),
            ));
        }
        if let WitnessPolicy::AtLeast(at_least) = self.policy.witness {
            let others = n.saturating_sub(1);
            let intersecting = crate::witness::quorum(n, f);
            if usize::from(at_least) < intersecting {
                return Err(field(
                    "policy.witness",
                    format!(
                        "at_least {at_least} is below the {intersecting} of the {others} other members that {f} tolerated faults need: two conflicting checkpoints of one region could both be witnessed"
                    ),
                ));
            }
            if usize::from(at_least) > others {
                return Err(field(
                    "policy.witness",
                    format!(
                        "at_least {at_least} is more than the {others} other members: no checkpoint could ever be witnessed"
                    ),
                ));
            }
        }
        self.parse_catalogue()?;
        if let Some(pk) = &self.person_key {
            pk.validate(&self.members, self.policy.faults_tolerated)?;
        }
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return Err(field(
                "members",
                format!("1-{MAX_MEMBERS} members required"),
            ));
        }
        if !self.members.windows(2).all(|w| w[0].region < w[1].region) {
            return Err(field(
                "members",
                "must be sorted by region with no region twice",
            ));
        }
        let mut keys: Vec<_> = self.members.iter().map(|m| m.node_key).collect();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(field("members", "two members share a node key"));
        }
        // Every key speaks for one member in one role: an operator key that is also a
        // node key (its own or another's) would let a running node register departments.
        let mut all: Vec<_> = self
            .members
            .iter()
            .flat_map(|m| [m.node_key, m.operator_key])
            .collect();
        all.sort();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err(field(
                "members",
                "an operator key is also a node key or another member's operator key; each operator makes its own with `credfed key gen --kind operator`",
            ));
        }
        for m in &self.members {
            if !m.region.is_province() {
                return Err(field(
                    "members",
                    format!("{} is not a provincial-level code", m.region),
                ));
            }
            m.node_key.verifying_key("manifest.members[].node_key")?;
            m.operator_key
                .verifying_key("manifest.members[].operator_key")?;
            if m.name.is_empty() || m.name.len() > MAX_TEXT_BYTES {
                return Err(field(
                    "members",
                    format!("{}: name must be 1-{MAX_TEXT_BYTES} bytes", m.region),
                ));
            }
            if m.addresses.len() > MAX_ADDRESSES_PER_MEMBER
                || m.addresses
                    .iter()
                    .any(|a| a.len() > MAX_SHORT_TEXT_BYTES * 2)
            {
                return Err(field(
                    "members",
                    format!(
                        "{}: at most {MAX_ADDRESSES_PER_MEMBER} addresses of at most 256 bytes",
                        m.region
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The member for a region.
    pub fn member(&self, region: RegionCode) -> Option<&Member> {
        self.members
            .binary_search_by_key(&region, |m| m.region)
            .ok()
            .map(|i| &self.members[i])
    }

    /// The hash that names this manifest in federation checkpoints and evidence files:
    /// SHA-256 of its canonical encoding (the bytes the authority signs).
    pub fn hash(&self) -> Hash256 {
        sha256(&[&codec::encode(self).unwrap_or_default()])
    }

    /// Whether a node that has run on manifest `held_version` (whose [`Manifest::hash`] was
    /// `held_hash`) may run on this one: never an older version, never the same version
    /// with other content (docs/protocol.md §7: no rollback).
    pub fn may_follow(&self, held_version: u64, held_hash: &Hash256) -> Result<(), ManifestError> {
        if self.version < held_version {
            return Err(ManifestError::RolledBack {
                offered: self.version,
                held: held_version,
            });
        }
        let hash = self.hash();
        if self.version == held_version && &hash != held_hash {
            return Err(ManifestError::ConflictingVersion {
                version: self.version,
                held_hash: held_hash.to_hex(),
                offered_hash: hash.to_hex(),
            });
        }
        Ok(())
    }

    /// The member whose node key this is.
    pub fn member_by_key(&self, key: &PublicKey) -> Option<&Member> {
        self.members.iter().find(|m| &m.node_key == key)
    }

    /// Signs this manifest with the authority key (whose public half must be `authority_key`).
    pub fn sign(&self, authority: &Keypair) -> Result<SignedManifest, ManifestError> {
        self.validate()?;
        if authority.public() != self.authority_key {
            return Err(ManifestError::WrongAuthority {
                found: authority.public(),
                expected: self.authority_key,
            });
        }
        let manifest = codec::encode(self).map_err(|e| field("encoding", e.0))?;
        let signature = authority.sign(Domain::Manifest, &self.federation_id, &manifest);
        Ok(SignedManifest {
            manifest,
            signature,
        })
    }
}

impl SignedManifest {
    /// Decodes, checks structure and signature against the pinned authority, and refuses
    /// an expired manifest or one issued further in the future than
    /// [`MAX_ISSUED_AT_SKEW_MS`].
    pub fn verify(
        &self,
        pinned_authority: &PublicKey,
        now: Timestamp,
    ) -> Result<Manifest, ManifestError> {
        let m: Manifest = codec::decode(&self.manifest, MAX_MANIFEST_BYTES, "manifest")?;
        if &m.authority_key != pinned_authority {
            return Err(ManifestError::WrongAuthority {
                found: m.authority_key,
                expected: *pinned_authority,
            });
        }
        m.validate()?;
        pinned_authority.verify(
            Domain::Manifest,
            &m.federation_id,
            &self.manifest,
            &self.signature,
            "manifest.signature",
        )?;
        if now >= m.expires_at {
            return Err(ManifestError::Expired {
                version: m.version,
                expires_at: m.expires_at.0,
                now: now.0,
            });
        }
        if m.issued_at.0 > now.0.saturating_add(MAX_ISSUED_AT_SKEW_MS) {
            return Err(field(
                "issued_at",
                format!(
                    "{} ms lies more than a day after this node's clock ({} ms); check the clock, or ask the authority to reissue",
                    m.issued_at.0, now.0
                ),
            ));
        }
        Ok(m)
    }

    /// Verifies `self` as a successor of `held`: same federation, higher version.
    pub fn verify_update(
        &self,
        held: &Manifest,
        now: Timestamp,
    ) -> Result<Manifest, ManifestError> {
        let m = self.verify(&held.authority_key, now)?;
        if m.federation_id != held.federation_id {
            return Err(field(
                "federation_id",
                format!(
                    "'{}' differs from the held '{}'",
                    m.federation_id, held.federation_id
                ),
            ));
        }
        if m.version <= held.version {
            return Err(ManifestError::NotNewer {
                offered: m.version,
                held: held.version,
            });
        }
        Ok(m)
    }

    /// Hash of the signed manifest bytes (for status displays and pinning).
    pub fn hash(&self) -> Hash256 {
        sha256(&[&self.manifest])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PROVINCES;

    fn manifest(authority: &Keypair, version: u64, n: usize) -> Manifest {
        Manifest {
            federation_id: "cn-credit".into(),
            protocol_version: PROTOCOL_VERSION,
            version,
            issued_at: Timestamp(1_000),
            expires_at: Timestamp(10_000),
            authority_key: authority.public(),
            members: PROVINCES[..n]
                .iter()
                .enumerate()
                .map(|(i, p)| Member {
                    region: RegionCode::new(p.code, "r").unwrap(),
                    name: p.name_zh.into(),
                    node_key: Keypair::from_secret([i as u8 + 10; 32]).public(),
                    operator_key: Keypair::from_secret([i as u8 + 110; 32]).public(),
                    addresses: vec![format!("/ip4/127.0.0.1/tcp/{}", 4000 + i)],
                })
                .collect(),
            policy: Policy {
                faults_tolerated: crate::witness::max_faults(n) as u16,
                ..Policy::default()
            },
            catalogue: crate::catalogue::EMBEDDED_CATALOGUE.to_owned(),
            person_key: None,
        }
    }

    #[test]
    fn for_build_sorts_members_and_names_this_build() {
        let auth = Keypair::from_secret([1; 32]);
        let members: Vec<Member> = PROVINCES[..3]
            .iter()
            .rev()
            .enumerate()
            .map(|(i, p)| {
                let key = Keypair::from_secret([i as u8 + 10; 32]).public();
                let operator = Keypair::from_secret([i as u8 + 110; 32]).public();
                Member::for_province(RegionCode::new(p.code, "r").unwrap(), key, operator, vec![])
            })
            .collect();
        let m = Manifest::for_build(
            "cn-credit",
            1,
            Timestamp(1),
            Timestamp(2),
            auth.public(),
            members,
        );
        m.validate().unwrap();
        assert_eq!(m.members[0].region.to_string(), "110000");
        assert_eq!(m.members[0].name, "北京市");
        assert_eq!(m.protocol_version, PROTOCOL_VERSION);
        assert_eq!(m.catalogue, crate::catalogue::EMBEDDED_CATALOGUE);
        assert!(m.parse_catalogue().is_ok());
    }

    /// A manifest dated more than a day ahead of the node's clock is refused, as is one
    /// carrying a policy file that does not parse or an absurd hash cost.
    #[test]
    fn future_issue_dates_bad_catalogues_and_absurd_costs_are_refused() {
        let auth = Keypair::from_secret([1; 32]);
        let mut m = manifest(&auth, 1, 3);
        m.issued_at = Timestamp(5_000 + MAX_ISSUED_AT_SKEW_MS + 1);
        m.expires_at = Timestamp(i64::MAX);
        let e = m
            .sign(&auth)
            .unwrap()
            .verify(&auth.public(), Timestamp(5_000))
            .unwrap_err();
        assert!(e.to_string().starts_with("manifest.issued_at"), "{e}");
        // Seventy years ahead of a clock at the epoch is refused too; no overflow near
        // the end of time.
        m.issued_at = Timestamp(70 * 365 * 24 * 3600 * 1000);
        assert!(
            m.sign(&auth)
                .unwrap()
                .verify(&auth.public(), Timestamp(0))
                .is_err()
        );
        assert!(
            m.sign(&auth)
                .unwrap()
                .verify(&auth.public(), Timestamp(i64::MAX - 1))
                .is_ok()
        );
        let mut m = manifest(&auth, 1, 3);
        m.catalogue = "version = 2".into();
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .starts_with("manifest.catalogue")
        );
    }

    /// A manifest's person key: shares only for members, a threshold above the tolerated
    /// faults, a budget of at least one, and public shares from one key generation.
    #[test]
    fn person_key_shares_must_be_members_above_faults_and_on_one_polynomial() {
        let auth = Keypair::from_secret([1; 32]);
        let mut m = manifest(&auth, 1, 5);
        let regions: Vec<RegionCode> = m.members.iter().map(|x| x.region).collect();
        let mut rng = crate::oprf::keygen::TestRng(0, 1);
        let (_, shares) =
            crate::oprf::keygen::ceremony_in_one_process(&regions, 3, 10, 10, &mut rng).unwrap();
        m.person_key = Some(shares.clone());
        m.validate().unwrap();
        let err = |m: &Manifest| m.validate().unwrap_err().to_string();

        let mut low = m.clone();
        low.policy.faults_tolerated = 1;
        low.person_key.as_mut().unwrap().threshold = 1;
        assert!(err(&low).contains("person_key.threshold"), "{}", err(&low));

        let mut stranger = m.clone();
        stranger.members.pop();
        stranger.policy.faults_tolerated = 0;
        assert!(
            err(&stranger).contains("is not a member"),
            "{}",
            err(&stranger)
        );

        let mut other = m.clone();
        let (_, foreign) =
            crate::oprf::keygen::ceremony_in_one_process(&regions, 3, 10, 10, &mut rng).unwrap();
        other.person_key.as_mut().unwrap().shares[4] = foreign.shares[4].clone();
        assert!(
            err(&other).contains("not on the polynomial"),
            "{}",
            err(&other)
        );

        let mut broke = m.clone();
        broke.person_key.as_mut().unwrap().evaluations_per_day = 0;
        assert!(err(&broke).contains("person_key.evaluations_per_day"));

        let mut twice = m.clone();
        twice.person_key.as_mut().unwrap().shares[1].index = 1;
        assert!(err(&twice).contains("same index"), "{}", err(&twice));
    }

    /// The witness policy may ask for more than the intersecting quorum of the other
    /// members, never fewer (two conflicting checkpoints could then both be witnessed),
    /// and never more than there are.
    #[test]
    fn witness_policy_is_at_least_the_intersecting_quorum() {
        let auth = Keypair::from_secret([1; 32]);
        let mut m = manifest(&auth, 1, 31);
        assert_eq!(m.policy.faults_tolerated, 9, "the most 31 members tolerate");
        assert_eq!(m.policy.witness_quorum(31), 20);
        assert_eq!(m.policy.federation_quorum(31), 21);
        m.policy.witness = WitnessPolicy::AtLeast(25);
        m.validate().unwrap();
        assert_eq!(m.policy.witness_quorum(31), 25);
        m.policy.witness = WitnessPolicy::AtLeast(19);
        let e = m.validate().unwrap_err().to_string();
        assert!(
            e.contains("policy.witness") && e.contains("below the 20 of the 30"),
            "{e}"
        );
        m.policy.witness = WitnessPolicy::AtLeast(31);
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("more than the 30 other members"), "{e}");
    }

    /// A federation cannot claim to tolerate more faulty members than its quorums can
    /// survive (members ≥ 3f + 2); fewer is allowed and gives smaller quorums.
    #[test]
    fn faults_tolerated_is_at_most_what_the_membership_allows() {
        let auth = Keypair::from_secret([1; 32]);
        let mut m = manifest(&auth, 1, 31);
        m.policy.faults_tolerated = 10;
        let e = m.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("manifest.policy.faults_tolerated: 10 with 31 members")
                && e.contains("at most 9"),
            "{e}"
        );
        m.policy.faults_tolerated = 1;
        m.validate().unwrap();
        assert_eq!(m.policy.witness_quorum(31), 16);
        assert_eq!(m.policy.federation_quorum(31), 17);
    }

    #[test]
    fn sign_verify_lookup() {
        let auth = Keypair::from_secret([1; 32]);
        let m = manifest(&auth, 1, 31);
        let signed = m.sign(&auth).unwrap();
        let back = signed.verify(&auth.public(), Timestamp(2_000)).unwrap();
        assert_eq!(back, m);
        let sh = RegionCode::parse("310000", "r").unwrap();
        assert_eq!(back.member(sh).unwrap().name, "上海市");
        let key = back.member(sh).unwrap().node_key;
        assert_eq!(back.member_by_key(&key).unwrap().region, sh);
        assert!(
            back.member(RegionCode::parse("623001", "r").unwrap())
                .is_none()
        );
    }

    #[test]
    fn expired_wrong_authority_tampered_and_older_are_refused() {
        let auth = Keypair::from_secret([1; 32]);
        let other = Keypair::from_secret([2; 32]);
        let signed = manifest(&auth, 2, 3).sign(&auth).unwrap();
        let e = signed
            .verify(&auth.public(), Timestamp(10_000))
            .unwrap_err();
        assert!(matches!(e, ManifestError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("expired"));
        assert!(matches!(
            signed.verify(&other.public(), Timestamp(2_000)),
            Err(ManifestError::WrongAuthority { .. })
        ));
        let mut tampered = signed.clone();
        let last = tampered.manifest.len() - 1;
        tampered.manifest[last] ^= 1;
        assert!(tampered.verify(&auth.public(), Timestamp(2_000)).is_err());
        let held = signed.verify(&auth.public(), Timestamp(2_000)).unwrap();
        let older = manifest(&auth, 1, 3).sign(&auth).unwrap();
        assert!(matches!(
            older.verify_update(&held, Timestamp(2_000)),
            Err(ManifestError::NotNewer {
                offered: 1,
                held: 2
            })
        ));
        // A node never runs on an older manifest than one it ran on, nor on other
        // content under a version it ran on.
        let v2 = manifest(&auth, 2, 4);
        let v1 = manifest(&auth, 1, 4);
        assert!(v2.may_follow(2, &v2.hash()).is_ok());
        assert!(v2.may_follow(1, &v1.hash()).is_ok());
        assert!(matches!(
            v1.may_follow(2, &v2.hash()),
            Err(ManifestError::RolledBack {
                offered: 1,
                held: 2
            })
        ));
        let other_v2 = manifest(&auth, 2, 3);
        let e = other_v2.may_follow(2, &v2.hash()).unwrap_err();
        assert!(matches!(
            e,
            ManifestError::ConflictingVersion { version: 2, .. }
        ));
        assert!(
            e.to_string().contains("ask the federation authority"),
            "{e}"
        );
        let newer = manifest(&auth, 3, 4).sign(&auth).unwrap();
        assert_eq!(
            newer
                .verify_update(&held, Timestamp(2_000))
                .unwrap()
                .members
                .len(),
            4
        );
        // Only the authority can sign.
        assert!(matches!(
            manifest(&auth, 1, 3).sign(&other),
            Err(ManifestError::WrongAuthority { .. })
        ));
    }

    #[test]
    fn structural_rules() {
        let auth = Keypair::from_secret([1; 32]);
        let mut m = manifest(&auth, 1, 3);
        m.members.swap(0, 1);
        assert!(m.validate().is_err());
        let mut m = manifest(&auth, 1, 3);
        m.members[1].node_key = m.members[0].node_key;
        assert!(m.validate().is_err());
        let mut m = manifest(&auth, 1, 3);
        m.federation_id = "cn credit".into();
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .starts_with("manifest.federation_id")
        );
    }
}

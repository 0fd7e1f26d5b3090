//! RFC 6962 / RFC 9162 Merkle trees over a region's log.
//!
//! Alongside its hash chain, each region's log is a Merkle tree whose leaves are the
//! envelopes, verbatim, in sequence order (leaf index = seq − 1). A tree head (size and
//! root) commits to the whole log prefix; an inclusion proof shows in O(log n) hashes
//! that an envelope is at its position under a head, and a consistency proof that one
//! head's log is a prefix of another's. Those are what witnesses check before they
//! cosign a checkpoint ([`crate::checkpoint`]), and what lets a verifier trust a log it
//! does not hold.
//!
//! The hashing is RFC 6962's exactly (leaf `SHA-256(0x00 || data)`, node
//! `SHA-256(0x01 || left || right)`, empty tree `SHA-256("")`), so that other tools can
//! check our proofs; the test vectors are the Certificate Transparency reference ones.
//!
//! Storage is the caller's: a node keeps the hash of every *complete* subtree (level
//! `l`, index `i` covers leaves `[i·2^l, (i+1)·2^l)`), which [`Frontier::append`] hands
//! out as they complete, and answers proofs through [`TreeNodes`]. Everything here is
//! pure.

use crate::crypto::{Hash256, sha256};

/// The hash of a leaf (an envelope's bytes).
pub fn leaf_hash(data: &[u8]) -> Hash256 {
    sha256(&[&[0x00], data])
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash256, right: &Hash256) -> Hash256 {
    sha256(&[&[0x01], &left.0, &right.0])
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash256 {
    sha256(&[])
}

/// Most hashes a proof may have: a tree of 2^64 leaves needs 64 for inclusion and at
/// most 2·64 for consistency; anything longer is refused before any hashing.
pub const MAX_PROOF_HASHES: usize = 130;

/// Hashes of complete subtrees, as the caller stores them.
pub trait TreeNodes {
    /// Why a node could not be read (a store error, or a node never stored).
    type Error;
    /// The hash of the complete subtree at `level`, `index`.
    fn node(&self, level: u8, index: u64) -> Result<Hash256, Self::Error>;
}

/// The compact state of a tree: its size and the roots of its maximal complete subtrees
/// from left (largest) to right (smallest) — one per set bit of the size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frontier {
    /// Leaves in the tree.
    pub size: u64,
    /// Peak hashes, largest subtree first.
    pub peaks: Vec<Hash256>,
}

/// A complete subtree's hash, newly known after an append: store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedNode {
    /// Height (0 = the leaf itself).
    pub level: u8,
    /// Index at that height.
    pub index: u64,
    /// The hash.
    pub hash: Hash256,
}

impl Frontier {
    /// The empty tree.
    pub fn empty() -> Frontier {
        Frontier {
            size: 0,
            peaks: Vec::new(),
        }
    }

    /// Appends a leaf (its [`leaf_hash`]); returns every complete subtree the append
    /// completed, the leaf first, for the caller to store.
    pub fn append(&mut self, leaf: Hash256) -> Vec<CompletedNode> {
        let index = self.size;
        let mut completed = vec![CompletedNode {
            level: 0,
            index,
            hash: leaf,
        }];
        let mut hash = leaf;
        let mut level = 0u8;
        // Each trailing one bit of the old size is a peak of the same height that the
        // new subtree merges with.
        let mut size = self.size;
        while size & 1 == 1 {
            // A well-formed frontier has one peak per set bit of its size
            // (`is_well_formed`, checked when one is loaded).
            let Some(left) = self.peaks.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push(CompletedNode {
                level,
                index: index >> level,
                hash,
            });
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
        completed
    }

    /// One peak per set bit of the size: what a frontier read back from storage must be.
    pub fn is_well_formed(&self) -> bool {
        self.peaks.len() == self.size.count_ones() as usize
    }

    /// The tree's root (RFC 6962's MTH).
    pub fn root(&self) -> Hash256 {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |acc, p| node_hash(p, &acc))
    }
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `[start, start + n)` (n ≥ 1), from stored complete subtrees.
fn subtree<N: TreeNodes>(nodes: &N, start: u64, n: u64) -> Result<Hash256, N::Error> {
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros() as u8, start / n);
    }
    let k = split(n);
    let left = subtree(nodes, start, k)?;
    let right = subtree(nodes, start + k, n - k)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree's first `size` leaves, from stored nodes.
pub fn root_at<N: TreeNodes>(nodes: &N, size: u64) -> Result<Hash256, N::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(nodes, 0, size)
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The positions asked for are not in the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// A node could not be read.
    #[error("reading the tree: {0:?}")]
    Nodes(E),
}

/// RFC 9162's PATH: the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<N: TreeNodes>(
    nodes: &N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash256>, ProofError<N::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size}"
        )));
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof).map_err(ProofError::Nodes)?;
    Ok(proof)
}

fn path<N: TreeNodes>(
    nodes: &N,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Hash256>,
) -> Result<(), N::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, k, out)?;
        out.push(subtree(nodes, start + k, n - k)?);
    } else {
        path(nodes, m - k, start + k, n - k, out)?;
        out.push(subtree(nodes, start, k)?);
    }
    Ok(())
}

/// RFC 9162's PROOF: the consistency proof from the tree of `first` leaves to the tree
/// of `second` leaves (empty when they are equal or `first` is 0).
pub fn consistency_proof<N: TreeNodes>(
    nodes: &N,
    first: u64,
    second: u64,
) -> Result<Vec<Hash256>, ProofError<N::Error>> {
    if first > second {
        return Err(ProofError::OutOfRange(format!(
            "a tree of {first} cannot be a prefix of one of {second}"
        )));
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(nodes, first, 0, second, true, &mut proof).map_err(ProofError::Nodes)?;
    }
    Ok(proof)
}

fn subproof<N: TreeNodes>(
    nodes: &N,
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    out: &mut Vec<Hash256>,
) -> Result<(), N::Error> {
    if m == n {
        if !whole {
            out.push(subtree(nodes, start, n)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, k, whole, out)?;
        out.push(subtree(nodes, start + k, n - k)?);
    } else {
        subproof(nodes, m - k, start + k, n - k, false, out)?;
        out.push(subtree(nodes, start, k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf` at `index` in the tree of `size` with
/// `root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash256,
    proof: &[Hash256],
    root: &Hash256,
) -> bool {
    if index >= size || proof.len() > MAX_PROOF_HASHES {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with
/// `first_root` is a prefix of the tree of `second` leaves with `second_root`?
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash256,
    second_root: &Hash256,
    proof: &[Hash256],
) -> bool {
    if first > second || proof.len() > MAX_PROOF_HASHES {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty() && *first_root == empty_root();
    }
    let mut path: Vec<Hash256> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == first_root && &sr == second_root && s == 0
}

/// A tree held in memory, for tests, benchmarks and small tools.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Option<Frontier>,
    levels: Vec<Vec<Hash256>>,
}

impl MemoryTree {
    /// A tree of `leaves` (their data, hashed here).
    pub fn from_data<D: AsRef<[u8]>>(leaves: &[D]) -> MemoryTree {
        let mut t = MemoryTree::default();
        for d in leaves {
            t.push(leaf_hash(d.as_ref()));
        }
        t
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash256) {
        let frontier = self.frontier.get_or_insert_with(Frontier::empty);
        for c in frontier.append(leaf) {
            let level = c.level as usize;
            if self.levels.len() <= level {
                self.levels.resize(level + 1, Vec::new());
            }
            self.levels[level].push(c.hash);
        }
    }

    /// Leaves held.
    pub fn size(&self) -> u64 {
        self.frontier.as_ref().map_or(0, |f| f.size)
    }

    /// The current root.
    pub fn root(&self) -> Hash256 {
        self.frontier
            .as_ref()
            .map_or_else(empty_root, Frontier::root)
    }
}

/// A node the tree does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingNode {
    /// Its height.
    pub level: u8,
    /// Its index.
    pub index: u64,
}

impl TreeNodes for MemoryTree {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash256, MissingNode> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hex: &str) -> Hash256 {
        Hash256::from_hex(hex).unwrap()
    }

    /// The Certificate Transparency reference leaves (google/certificate-transparency,
    /// reproduced by every RFC 6962 implementation's tests).
    fn ct_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| hex::decode(x).unwrap())
        .collect()
    }

    /// Roots of the reference trees of 0 to 8 leaves.
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_reference_vectors() {
        let leaves = ct_leaves();
        for n in 0..=8 {
            let t = MemoryTree::from_data(&leaves[..n]);
            assert_eq!(t.root(), h(CT_ROOTS[n]), "size {n}");
            let full = MemoryTree::from_data(&leaves);
            assert_eq!(
                root_at(&full, n as u64).unwrap(),
                h(CT_ROOTS[n]),
                "root_at {n}"
            );
        }
    }

    /// Reference inclusion proofs: (leaf index, tree size, path).
    #[test]
    fn inclusion_proofs_match_the_reference_vectors() {
        let cases: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let leaves = ct_leaves();
        let t = MemoryTree::from_data(&leaves);
        for (index, size, expected) in cases {
            let proof = inclusion_proof(&t, index, size).unwrap();
            let expected: Vec<Hash256> = expected.iter().map(|x| h(x)).collect();
            assert_eq!(proof, expected, "leaf {index} of {size}");
            let leaf = leaf_hash(&leaves[index as usize]);
            assert!(verify_inclusion(
                index,
                size,
                &leaf,
                &proof,
                &h(CT_ROOTS[size as usize])
            ));
            assert!(!verify_inclusion(
                index,
                size,
                &leaf,
                &proof,
                &h(CT_ROOTS[0])
            ));
        }
    }

    /// Reference consistency proofs: (first size, second size, proof).
    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let t = MemoryTree::from_data(&ct_leaves());
        for (first, second, expected) in cases {
            let proof = consistency_proof(&t, first, second).unwrap();
            let expected: Vec<Hash256> = expected.iter().map(|x| h(x)).collect();
            assert_eq!(proof, expected, "{first} -> {second}");
            assert!(verify_consistency(
                first,
                second,
                &h(CT_ROOTS[first as usize]),
                &h(CT_ROOTS[second as usize]),
                &proof
            ));
        }
    }

    #[test]
    fn positions_outside_the_tree_are_refused() {
        let t = MemoryTree::from_data(&ct_leaves());
        assert!(matches!(
            inclusion_proof(&t, 8, 8),
            Err(ProofError::OutOfRange(_))
        ));
        assert!(matches!(
            consistency_proof(&t, 5, 4),
            Err(ProofError::OutOfRange(_))
        ));
        // Asking beyond what is stored is a node error, not a wrong proof.
        assert!(matches!(
            inclusion_proof(&t, 0, 9),
            Err(ProofError::Nodes(_))
        ));
        assert!(!verify_inclusion(3, 3, &empty_root(), &[], &empty_root()));
        assert!(verify_consistency(
            0,
            5,
            &empty_root(),
            &h(CT_ROOTS[5]),
            &[]
        ));
        assert!(!verify_consistency(
            0,
            5,
            &h(CT_ROOTS[1]),
            &h(CT_ROOTS[5]),
            &[]
        ));
    }
}

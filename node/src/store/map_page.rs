//! How the verifiable map's nodes are laid out on disk: in pages of [`PAGE_LEVELS`]
//! levels, one sled record per page and version.
//!
//! Why pages: a map version rewrites every node on the path of every changed key, and
//! sled's cost is mostly per record (about 5 µs an insert on these machines, whatever
//! its size up to a few hundred bytes). A record per node made the map cost a third of
//! catch-up ingest; grouping four levels per record writes each touched band once. Four
//! levels keeps a full page at 15 nodes (about 1 KB): a wider band would copy kilobytes
//! per touched page in the densely filled middle of a large map.
//!
//! A page is named by the depth its band starts at (a multiple of [`PAGE_LEVELS`]) and
//! the path bits above it; inside, a node's slot is its heap index in the band's
//! 15-node binary tree. A page is stored whole at every version that changes it, so a
//! read at a version is the last page written at or before it (docs/decisions.md,
//! "Map nodes in pages").
//!
//! A page record leaves out the child hashes of an internal node whose children are in
//! the same page and hash to them ([`MapPage::encode_stored`]): they are recomputed
//! when the page is read.
//!
//! A leaf also carries the position of the first record naming its key (not part of
//! any hash). Most keys are named once — an entry's publication, a subject listed once
//! — so keeping that position with the leaf, which is written anyway, spares a
//! separate position record for most keys; later positions are stored apart (the `K`
//! records), since a list inside the leaf would be copied with its page at every
//! version and grow without bound for a busy subject.

use credfed_protocol::crypto::Hash256;
use credfed_protocol::map::MapNode;

/// Levels per page.
pub const PAGE_LEVELS: u16 = 4;

/// Slots per page: a binary tree of [`PAGE_LEVELS`] levels, heap-indexed from 1.
const SLOTS: u8 = (1 << PAGE_LEVELS) - 1;

/// Which page a node lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageId {
    /// The depth of the band's top level (a multiple of [`PAGE_LEVELS`]).
    pub band_depth: u16,
    /// The path above the band: bits at and beyond `band_depth` are zero.
    pub prefix: Hash256,
}

impl PageId {
    /// The page holding the node at `depth` on `prefix`, and the node's slot in it.
    pub fn of(depth: u16, prefix: &Hash256) -> (PageId, u8) {
        let band_depth = depth - depth % PAGE_LEVELS;
        let mut above = *prefix;
        clear_from(&mut above, band_depth);
        let offset = depth - band_depth;
        let mut within = 0u8;
        for d in band_depth..depth {
            within = (within << 1) | u8::from(bit(prefix, d));
        }
        (
            PageId {
                band_depth,
                prefix: above,
            },
            (1u8 << offset) | within,
        )
    }

    /// The path bytes a key needs (those holding bits above the band).
    pub fn path_bytes(&self) -> &[u8] {
        &self.prefix.0[..Self::used_bytes(self.band_depth)]
    }

    /// The page named by a band depth and the path bytes [`PageId::path_bytes`] gave;
    /// `None` if they cannot name one (a stored list that is corrupt).
    pub fn from_parts(band_depth: u16, path: &[u8]) -> Option<PageId> {
        if !band_depth.is_multiple_of(PAGE_LEVELS)
            || band_depth >= 256
            || path.len() != Self::used_bytes(band_depth)
        {
            return None;
        }
        let mut prefix = Hash256([0; 32]);
        prefix.0[..path.len()].copy_from_slice(path);
        let mut masked = prefix;
        clear_from(&mut masked, band_depth);
        (masked == prefix).then_some(PageId { band_depth, prefix })
    }

    fn used_bytes(band_depth: u16) -> usize {
        usize::from(band_depth).div_ceil(8).min(32)
    }
}

/// What the store keeps about a map version besides its pages: when it was computed
/// and which pages it wrote, so that pruning finds the records a later version
/// shadows without scanning the whole map.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionRecord {
    /// When it was computed (node clock, seconds since the epoch).
    pub computed_at: u64,
    /// The pages it wrote: band depth and path bytes.
    pub pages: Vec<(u16, Vec<u8>)>,
}

/// A node as a page keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageNode {
    /// Its slot (1..=15).
    pub slot: u8,
    /// The node.
    pub node: MapNode,
    /// For a leaf, the position of the first record naming its key (`None` for an
    /// internal node, or a value set without a position).
    pub first: Option<u64>,
}

/// The nodes of one page, by slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapPage {
    /// Present nodes, sorted by slot.
    nodes: Vec<PageNode>,
}

impl MapPage {
    /// The node in `slot`, if any.
    pub fn get(&self, slot: u8) -> Option<PageNode> {
        self.nodes
            .binary_search_by_key(&slot, |n| n.slot)
            .ok()
            .map(|at| self.nodes[at])
    }

    /// Puts `node` in its slot, replacing what was there.
    pub fn set(&mut self, node: PageNode) {
        debug_assert!(
            (1..=SLOTS).contains(&node.slot),
            "slot {} outside a page",
            node.slot
        );
        match self.nodes.binary_search_by_key(&node.slot, |n| n.slot) {
            Ok(at) => self.nodes[at] = node,
            Err(at) => self.nodes.insert(at, node),
        }
    }

    /// Whether a page read from disk is well formed: slots in range, sorted, unique,
    /// and only leaves carrying a position.
    pub fn is_well_formed(&self) -> bool {
        self.nodes.len() <= usize::from(SLOTS)
            && self.nodes.iter().all(|n| {
                (1..=SLOTS).contains(&n.slot)
                    && (n.first.is_none() || matches!(n.node, MapNode::Leaf { .. }))
            })
            && self.nodes.windows(2).all(|w| w[0].slot < w[1].slot)
    }
}

/// A node as a page record stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum StoredNode {
    /// A leaf, with the position of the first record naming its key.
    Leaf {
        key: Hash256,
        value: Hash256,
        first: Option<u64>,
    },
    /// An internal node whose children are in another page (or not in this one).
    Internal { left: Hash256, right: Hash256 },
    /// An internal node whose two children are in this page: its child hashes are
    /// theirs, recomputed when the page is read.
    Derived,
}

/// A page record: its nodes by slot, internal nodes above the band's bottom level
/// without the child hashes the page's own nodes give (about half the bytes of a
/// crowded page; see [`MapPage::encode_stored`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StoredPage {
    nodes: Vec<(u8, StoredNode)>,
}

impl MapPage {
    /// The page as stored. An internal node is stored without its child hashes when
    /// both children are in the page and hash to exactly those values — so the form is
    /// lossless whatever the page holds, and reading it back gives this page.
    pub fn encode_stored(&self) -> Vec<u8> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let stored = match n.node {
                    MapNode::Leaf { key, value } => StoredNode::Leaf {
                        key,
                        value,
                        first: n.first,
                    },
                    MapNode::Internal { left, right } => {
                        let child = |slot: u8| {
                            (slot <= SLOTS)
                                .then(|| self.get(slot))
                                .flatten()
                                .map(|c| c.node.hash())
                        };
                        let (l, r) = (n.slot.checked_mul(2), n.slot.checked_mul(2));
                        let derived = l.and_then(child) == Some(left)
                            && r.and_then(|r| child(r + 1)) == Some(right);
                        if derived {
                            StoredNode::Derived
                        } else {
                            StoredNode::Internal { left, right }
                        }
                    }
                };
                (n.slot, stored)
            })
            .collect();
        credfed_protocol::codec::encode(&StoredPage { nodes }).unwrap_or_default()
    }

    /// A page from its stored form; `None` when the bytes are not a well-formed page
    /// (bad encoding, slots out of range or out of order, a derived node whose
    /// children are not in the page).
    pub fn decode_stored(bytes: &[u8], max_bytes: usize) -> Option<MapPage> {
        let stored: StoredPage =
            credfed_protocol::codec::decode(bytes, max_bytes, "map page").ok()?;
        if stored.nodes.len() > usize::from(SLOTS)
            || !stored
                .nodes
                .iter()
                .all(|(slot, _)| (1..=SLOTS).contains(slot))
            || !stored.nodes.windows(2).all(|w| w[0].0 < w[1].0)
        {
            return None;
        }
        // Deepest slots first, so that a derived node's children are complete.
        let mut nodes: Vec<PageNode> = Vec::with_capacity(stored.nodes.len());
        for (slot, node) in stored.nodes.into_iter().rev() {
            let (node, first) = match node {
                StoredNode::Leaf { key, value, first } => (MapNode::Leaf { key, value }, first),
                StoredNode::Internal { left, right } => (MapNode::Internal { left, right }, None),
                StoredNode::Derived => {
                    let child = |at: u8| nodes.iter().find(|n| n.slot == at).map(|n| n.node.hash());
                    let left = child(slot.checked_mul(2)?)?;
                    let right = child(slot.checked_mul(2)?.checked_add(1)?)?;
                    (MapNode::Internal { left, right }, None)
                }
            };
            nodes.push(PageNode { slot, node, first });
        }
        nodes.reverse();
        let page = MapPage { nodes };
        page.is_well_formed().then_some(page)
    }
}

fn bit(h: &Hash256, depth: u16) -> bool {
    let byte = h.0[usize::from(depth / 8)];
    byte & (0x80 >> (depth % 8)) != 0
}

fn clear_from(h: &mut Hash256, depth: u16) {
    let whole = usize::from(depth / 8);
    if whole >= 32 {
        return;
    }
    // Keep the first `depth % 8` bits of the partly used byte; zero every later byte.
    h.0[whole] &= !(0xffu8 >> (depth % 8));
    h.0[whole + 1..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn path(bits: &[bool]) -> Hash256 {
        let mut h = Hash256([0; 32]);
        for (d, b) in bits.iter().enumerate() {
            if *b {
                h.0[d / 8] |= 0x80 >> (d % 8);
            }
        }
        h
    }

    /// The stored form gives back the page exactly, derived or not: a full page whose
    /// internal nodes all hash their children, one whose nodes do not (stored whole),
    /// and a sparse one; a full page stores in about half the bytes.
    #[test]
    fn a_page_survives_its_stored_form_and_crowded_pages_shrink() {
        let leaf = |slot: u8, k: u8| PageNode {
            slot,
            node: MapNode::Leaf {
                key: Hash256([k; 32]),
                value: Hash256([k.wrapping_add(1); 32]),
            },
            first: Some(u64::from(k)),
        };
        // A full band: leaves at slots 8..=15, internal nodes above hashing them.
        let mut full = MapPage::default();
        for slot in 8..=15u8 {
            full.set(leaf(slot, slot));
        }
        for slot in (1..8u8).rev() {
            let left = full.get(2 * slot).unwrap().node.hash();
            let right = full.get(2 * slot + 1).unwrap().node.hash();
            full.set(PageNode {
                slot,
                node: MapNode::Internal { left, right },
                first: None,
            });
        }
        let stored = full.encode_stored();
        assert_eq!(MapPage::decode_stored(&stored, 1 << 16), Some(full.clone()));
        let plain = credfed_protocol::codec::encode(&full).unwrap();
        assert!(
            stored.len() * 10 < plain.len() * 7,
            "{} vs {}",
            stored.len(),
            plain.len()
        );
        // Internal nodes whose hashes are not their children's: kept as they are.
        let mut odd = full.clone();
        odd.set(PageNode {
            slot: 3,
            node: MapNode::Internal {
                left: Hash256([9; 32]),
                right: Hash256([8; 32]),
            },
            first: None,
        });
        assert_eq!(
            MapPage::decode_stored(&odd.encode_stored(), 1 << 16),
            Some(odd)
        );
        // Bottom-level internal nodes (children in the next band) and a lone leaf.
        let mut sparse = MapPage::default();
        sparse.set(PageNode {
            slot: 9,
            node: MapNode::Internal {
                left: Hash256([1; 32]),
                right: Hash256([2; 32]),
            },
            first: None,
        });
        sparse.set(leaf(12, 7));
        assert_eq!(
            MapPage::decode_stored(&sparse.encode_stored(), 1 << 16),
            Some(sparse)
        );
        // A derived node without its children is refused.
        let orphan = credfed_protocol::codec::encode(&StoredPage {
            nodes: vec![(2, StoredNode::Derived)],
        })
        .unwrap();
        assert_eq!(MapPage::decode_stored(&orphan, 1 << 16), None);
    }

    /// Every node of the first three bands has one (page, slot), and no two nodes share
    /// one: the layout loses nothing.
    #[test]
    fn every_node_has_its_own_page_slot() {
        let mut seen = BTreeSet::new();
        for depth in 0..12u16 {
            for p in 0..(1u32 << depth) {
                let bits: Vec<bool> = (0..depth).map(|d| p >> (depth - 1 - d) & 1 == 1).collect();
                let (page, slot) = PageId::of(depth, &path(&bits));
                assert!((1..=SLOTS).contains(&slot));
                assert_eq!(page.band_depth % PAGE_LEVELS, 0);
                assert!(seen.insert((page, slot)), "depth {depth} path {p} collides");
            }
        }
    }

    /// Bits beyond the node's depth do not change its page or slot (the map passes
    /// paths whose deeper bits are those of a key).
    #[test]
    fn bits_below_the_node_do_not_move_it() {
        let key = path(&[
            true, false, true, true, false, true, true, true, false, true,
        ]);
        let truncated = path(&[true, false, true, true, false, true]);
        assert_eq!(PageId::of(6, &key), PageId::of(6, &truncated));
        assert_eq!(PageId::of(6, &key).0.path_bytes(), &[0b1011_0000]);
    }

    #[test]
    fn a_page_id_survives_its_parts_and_bad_parts_are_refused() {
        let key = path(&[
            true, true, false, true, false, false, true, true, true, false,
        ]);
        for depth in [0u16, 3, 4, 9, 12, 17] {
            let (page, _) = PageId::of(depth, &key);
            assert_eq!(
                PageId::from_parts(page.band_depth, page.path_bytes()),
                Some(page)
            );
        }
        assert_eq!(PageId::from_parts(6, &[0x80]), None, "not a band start");
        assert_eq!(PageId::from_parts(8, &[]), None, "path too short");
        assert_eq!(PageId::from_parts(4, &[0x08]), None, "bits below the band");
    }

    #[test]
    fn a_page_keeps_slots_sorted_and_replaces_in_place() {
        let leaf = |slot: u8, v: u8| PageNode {
            slot,
            node: MapNode::Leaf {
                key: Hash256([v; 32]),
                value: Hash256([v; 32]),
            },
            first: Some(u64::from(v)),
        };
        let mut page = MapPage::default();
        page.set(leaf(9, 1));
        page.set(leaf(2, 2));
        page.set(leaf(9, 3));
        assert_eq!(page.get(9), Some(leaf(9, 3)));
        assert_eq!(page.get(2), Some(leaf(2, 2)));
        assert_eq!(page.get(1), None);
        assert!(page.is_well_formed());
        let duplicate = MapPage {
            nodes: vec![leaf(3, 1), leaf(3, 2)],
        };
        assert!(!duplicate.is_well_formed());
        let internal_with_position = MapPage {
            nodes: vec![PageNode {
                slot: 1,
                node: MapNode::Internal {
                    left: Hash256([1; 32]),
                    right: Hash256([2; 32]),
                },
                first: Some(4),
            }],
        };
        assert!(!internal_with_position.is_well_formed());
    }
}

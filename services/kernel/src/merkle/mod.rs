//! The Merkle tree of the audit log, exactly as RFC 9162 §2.1 defines it
//! (the same tree as RFC 6962), with no I/O.
//!
//! - leaf hash `SHA-256(0x00 || entry)`, node hash `SHA-256(0x01 || left || right)`;
//! - the hash of an empty list is `SHA-256("")`;
//! - a list of `n > 1` entries splits at `k`, the largest power of two
//!   smaller than `n`.
//!
//! [`Tree`] is the incremental builder the audit projector appends to. The
//! free functions [`verify_inclusion`] and [`verify_consistency`] are the
//! verifier's algorithms (RFC 9162 §2.1.3.2 and §2.1.4.2): they need only
//! hashes, never the log.
//!
//! [`checkpoint`] signs tree heads; [`proof`] is the self-contained JSON
//! form of the proofs that `carelog audit check-proof` reads.

pub mod checkpoint;
pub mod proof;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf, an interior node or a root.
pub type Hash = [u8; 32];

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} is larger than the {len} leaves appended")]
    SizeOutOfRange { size: u64, len: u64 },
    #[error("the first tree size {first} is larger than the second {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the recomputed root does not match the expected root")]
    RootMismatch,
    #[error("the recomputed first root does not match the expected first root")]
    FirstRootMismatch,
}

/// RFC 9162 §2.1.3.2: the root that `leaf` at `index` in a tree of `size`
/// leaves implies through `path`. Compare it with a signed root, or use
/// [`verify_inclusion`].
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok(r)
}

/// RFC 9162 §2.1.3.2: does `path` prove that `leaf` is entry `index` of the
/// tree of `size` leaves whose root is `root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(index, size, leaf, path)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// RFC 9162 §2.1.4.2: does `path` prove that the tree of `first` leaves with
/// root `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root`?
///
/// The RFC defines proofs for `0 < first < second`. The two degenerate cases
/// are decided here as well, both with an empty path: `first == second`
/// holds when the roots are equal, and `first == 0` holds when `first_root`
/// is the empty tree's root (the empty log is a prefix of every log).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second {
        if !path.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if first == 0 {
        if !path.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if *first_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::FirstRootMismatch)
        };
    }
    // 1. An empty path proves nothing between two different sizes.
    if path.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // 2. When `first` is a power of two its root is the first subtree.
    let prepended;
    let path = if first.is_power_of_two() {
        prepended = std::iter::once(*first_root)
            .chain(path.iter().copied())
            .collect::<Vec<_>>();
        &prepended[..]
    } else {
        path
    };
    // 3, 4.
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // 5.
    let (mut fr, mut sr) = (path[0], path[0]);
    // 6.
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // 7.
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root {
        return Err(ProofError::FirstRootMismatch);
    }
    if sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The incremental tree: append leaf hashes, then ask for the root, an
/// inclusion proof or a consistency proof of any prefix size.
///
/// Storage: every complete, aligned subtree hash is kept, level by level
/// (`levels[0]` are the leaf hashes, `levels[k][i]` covers leaves
/// `i·2^k .. (i+1)·2^k`), which is under two hashes (64 bytes) per leaf:
/// about 64 MB for a million entries. Appending is amortised O(1). Any
/// subtree of the RFC's recursion is either one stored hash or a stored
/// hash joined to a smaller subtree on the right edge, so a root takes
/// O(log n) hashes and a proof O(log² n) at worst, without touching the
/// leaves.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from entries' canonical bytes.
    pub fn from_entries<I, B>(entries: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut tree = Self::new();
        for entry in entries {
            tree.append_entry(entry.as_ref());
        }
        tree
    }

    /// Rebuilds a tree from stored leaf hashes, in log order (what the audit
    /// projector does at start from its table).
    pub fn from_leaf_hashes<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.append_leaf_hash(leaf);
        }
        tree
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an entry's canonical bytes; returns its index.
    pub fn append_entry(&mut self, entry: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(entry))
    }

    /// Appends a leaf hash (`SHA-256(0x00 || entry)`); returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.len();
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let nodes = &self.levels[level];
            if nodes.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            level += 1;
        }
        index
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
    }

    /// MTH of leaves `start .. start + size` (a subtree of the RFC's
    /// recursion: `size > 0`, and when `size` is a power of two, `start` is
    /// a multiple of it).
    fn subtree(&self, start: u64, size: u64) -> Hash {
        if size.is_power_of_two() {
            let level = size.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = split(size);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, size - k))
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.len() {
            Err(ProofError::SizeOutOfRange {
                size,
                len: self.len(),
            })
        } else {
            Ok(())
        }
    }

    /// The root of the first `size` leaves (MTH(D[0:size])).
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// The root of all the leaves.
    pub fn root(&self) -> Hash {
        self.root_at(self.len()).unwrap_or_else(|_| empty_root())
    }

    /// RFC 9162 §2.1.3.1: the audit path of leaf `index` in the tree of the
    /// first `size` leaves, the sibling nearest the leaf first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        path.reverse();
        Ok(path)
    }

    /// PATH(m, D[start:start+n]), pushed root side first.
    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            out.push(self.subtree(start + k, n - k));
            self.path(m, start, k, out);
        } else {
            out.push(self.subtree(start, k));
            self.path(m - k, start + k, n - k, out);
        }
    }

    /// RFC 9162 §2.1.4.1: the consistency proof from the tree of the first
    /// `first` leaves to the tree of the first `second` leaves. Empty when
    /// `first` is 0 or equal to `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(second)?;
        if first > second {
            return Err(ProofError::SizesOutOfOrder { first, second });
        }
        let mut proof = Vec::new();
        if first > 0 && first < second {
            self.subproof(first, 0, second, true, &mut proof);
        }
        proof.reverse();
        Ok(proof)
    }

    /// SUBPROOF(m, D[start:start+n], b), pushed root side first.
    fn subproof(&self, m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.subtree(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            out.push(self.subtree(start + k, n - k));
            self.subproof(m, start, k, whole, out);
        } else {
            out.push(self.subtree(start, k));
            self.subproof(m - k, start + k, n - k, false, out);
        }
    }
}

#[cfg(test)]
mod tests;

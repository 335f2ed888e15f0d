//! The self-contained JSON proof documents (see docs/audit-proofs.md) and
//! their check against signed checkpoints.
//!
//! ```json
//! {"type": "inclusion", "version": 1, "leaf_index": 5, "tree_size": 8,
//!  "leaf_hash": "<base64>", "entry": "<base64, optional>",
//!  "audit_path": ["<base64>", ...]}
//! {"type": "consistency", "version": 1, "first_size": 6, "second_size": 8,
//!  "consistency_path": ["<base64>", ...]}
//! ```
//!
//! Every hash is 32 bytes in standard base64 (RFC 4648 §4, padded), as in
//! the checkpoint.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::{Hash, ProofError, leaf_hash, verify_consistency, verify_inclusion};

/// The only version of the documents so far.
pub const VERSION: u32 = 1;

/// A proof document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProofDocument {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

/// That the entry at `leaf_index` is in the tree of `tree_size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub version: u32,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// `SHA-256(0x00 || entry)`; optional when `entry` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// The entry's canonical bytes; optional when `leaf_hash` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Sibling hashes from the leaf up to the root (RFC 9162 §2.1.3.1).
    pub audit_path: Vec<String>,
}

/// That the tree of `first_size` entries is a prefix of the tree of
/// `second_size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub version: u32,
    pub first_size: u64,
    pub second_size: u64,
    /// RFC 9162 §2.1.4.1, without the first root even when `first_size` is
    /// a power of two (the verifier prepends it).
    pub consistency_path: Vec<String>,
}

fn b64(hash: &Hash) -> String {
    B64.encode(hash)
}

impl InclusionProof {
    pub fn new(leaf_index: u64, tree_size: u64, leaf: &Hash, path: &[Hash]) -> Self {
        Self {
            version: VERSION,
            leaf_index,
            tree_size,
            leaf_hash: Some(b64(leaf)),
            entry: None,
            audit_path: path.iter().map(b64).collect(),
        }
    }

    /// The same proof carrying the entry's bytes as well.
    pub fn with_entry(mut self, entry: &[u8]) -> Self {
        self.entry = Some(B64.encode(entry));
        self
    }
}

impl ConsistencyProof {
    pub fn new(first_size: u64, second_size: u64, path: &[Hash]) -> Self {
        Self {
            version: VERSION,
            first_size,
            second_size,
            consistency_path: path.iter().map(b64).collect(),
        }
    }
}

/// Why a proof did not verify against its checkpoints. The message names
/// what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("proof is malformed: {0}")]
    Malformed(String),
    #[error(
        "size mismatch: the proof is for tree size {proof}, the checkpoint has size {checkpoint}"
    )]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("origin mismatch: the checkpoints are of {new:?} and {old:?}")]
    OriginMismatch { new: String, old: String },
    #[error("leaf mismatch: the entry's hash is not the proof's leaf_hash")]
    LeafMismatch,
    #[error("a consistency proof needs the older checkpoint (--old-checkpoint)")]
    NeedsOldCheckpoint,
    #[error("root mismatch: the proof does not lead to the checkpoint's root hash")]
    RootMismatch,
    #[error("root mismatch: the proof does not lead to the older checkpoint's root hash")]
    OldRootMismatch,
    #[error("proof is malformed: the path has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("proof is malformed: {0}")]
    Range(String),
}

impl From<ProofError> for CheckError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::RootMismatch => Self::RootMismatch,
            ProofError::FirstRootMismatch => Self::OldRootMismatch,
            ProofError::WrongLength => Self::WrongLength,
            other => Self::Range(other.to_string()),
        }
    }
}

fn hash(field: &str, text: &str) -> Result<Hash, CheckError> {
    B64.decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CheckError::Malformed(format!("{field} is not 32 bytes of standard base64")))
}

fn hashes(field: &str, texts: &[String]) -> Result<Vec<Hash>, CheckError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| hash(&format!("{field}[{i}]"), t))
        .collect()
}

/// What a proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Inclusion { leaf_index: u64, tree_size: u64 },
    Consistency { first_size: u64, second_size: u64 },
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inclusion {
                leaf_index,
                tree_size,
            } => write!(
                f,
                "entry {leaf_index} is included in the log of {tree_size} entries"
            ),
            Self::Consistency {
                first_size,
                second_size,
            } => write!(
                f,
                "the log of {first_size} entries is a prefix of the log of {second_size} entries"
            ),
        }
    }
}

impl ProofDocument {
    pub fn from_json(text: &str) -> Result<Self, CheckError> {
        let doc: Self = serde_json::from_str(text)
            .map_err(|e| CheckError::Malformed(format!("not a proof document: {e}")))?;
        let version = match &doc {
            Self::Inclusion(p) => p.version,
            Self::Consistency(p) => p.version,
        };
        if version != VERSION {
            return Err(CheckError::Malformed(format!(
                "version {version} is not supported (only {VERSION})"
            )));
        }
        Ok(doc)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the proof against a checkpoint whose signature has already been
    /// verified (and, for a consistency proof, the older verified checkpoint).
    pub fn check(
        &self,
        checkpoint: &Checkpoint,
        old: Option<&Checkpoint>,
    ) -> Result<Verified, CheckError> {
        match self {
            Self::Inclusion(p) => {
                if p.tree_size != checkpoint.size {
                    return Err(CheckError::SizeMismatch {
                        proof: p.tree_size,
                        checkpoint: checkpoint.size,
                    });
                }
                let from_entry = p
                    .entry
                    .as_deref()
                    .map(|e| {
                        B64.decode(e)
                            .map(|bytes| leaf_hash(&bytes))
                            .map_err(|_| CheckError::Malformed("entry is not base64".into()))
                    })
                    .transpose()?;
                let given = p
                    .leaf_hash
                    .as_deref()
                    .map(|h| hash("leaf_hash", h))
                    .transpose()?;
                let leaf = match (from_entry, given) {
                    (Some(a), Some(b)) if a != b => return Err(CheckError::LeafMismatch),
                    (Some(a), _) | (None, Some(a)) => a,
                    (None, None) => {
                        return Err(CheckError::Malformed(
                            "neither leaf_hash nor entry is given".into(),
                        ));
                    }
                };
                let path = hashes("audit_path", &p.audit_path)?;
                verify_inclusion(p.leaf_index, p.tree_size, &leaf, &path, &checkpoint.root)?;
                Ok(Verified::Inclusion {
                    leaf_index: p.leaf_index,
                    tree_size: p.tree_size,
                })
            }
            Self::Consistency(p) => {
                let old = old.ok_or(CheckError::NeedsOldCheckpoint)?;
                if old.origin != checkpoint.origin {
                    return Err(CheckError::OriginMismatch {
                        new: checkpoint.origin.clone(),
                        old: old.origin.clone(),
                    });
                }
                if p.second_size != checkpoint.size {
                    return Err(CheckError::SizeMismatch {
                        proof: p.second_size,
                        checkpoint: checkpoint.size,
                    });
                }
                if p.first_size != old.size {
                    return Err(CheckError::SizeMismatch {
                        proof: p.first_size,
                        checkpoint: old.size,
                    });
                }
                let path = hashes("consistency_path", &p.consistency_path)?;
                verify_consistency(
                    p.first_size,
                    p.second_size,
                    &old.root,
                    &checkpoint.root,
                    &path,
                )?;
                Ok(Verified::Consistency {
                    first_size: p.first_size,
                    second_size: p.second_size,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::super::Tree;
    use super::*;

    fn log() -> Tree {
        Tree::from_entries((0..11u8).map(|i| vec![i; 3]))
    }

    fn checkpoint(tree: &Tree, size: u64) -> Checkpoint {
        Checkpoint::new(
            "carelog.test/audit",
            size,
            tree.root_at(size).expect("root"),
            Utc::now(),
        )
        .expect("checkpoint")
    }

    #[test]
    fn an_inclusion_document_round_trips_and_verifies() {
        let tree = log();
        let path = tree.inclusion_proof(6, 11).expect("proof");
        let doc = ProofDocument::Inclusion(
            InclusionProof::new(6, 11, &tree.leaf(6).expect("leaf"), &path).with_entry(&[6; 3]),
        );
        let back = ProofDocument::from_json(&doc.to_json()).expect("parse");
        assert_eq!(back, doc);
        assert_eq!(
            back.check(&checkpoint(&tree, 11), None),
            Ok(Verified::Inclusion {
                leaf_index: 6,
                tree_size: 11
            })
        );
        assert_eq!(
            back.check(&checkpoint(&tree, 10), None),
            Err(CheckError::SizeMismatch {
                proof: 11,
                checkpoint: 10
            })
        );
        let mut wrong = checkpoint(&tree, 11);
        wrong.root = tree.root_at(10).expect("root");
        assert_eq!(back.check(&wrong, None), Err(CheckError::RootMismatch));
        let ProofDocument::Inclusion(mut p) = doc else {
            unreachable!()
        };
        p.entry = Some(B64.encode([7; 3]));
        assert_eq!(
            ProofDocument::Inclusion(p.clone()).check(&checkpoint(&tree, 11), None),
            Err(CheckError::LeafMismatch)
        );
        p.leaf_hash = None;
        assert_eq!(
            ProofDocument::Inclusion(p).check(&checkpoint(&tree, 11), None),
            Err(CheckError::RootMismatch)
        );
    }

    #[test]
    fn a_consistency_document_verifies_between_two_checkpoints() {
        let tree = log();
        let path = tree.consistency_proof(5, 11).expect("proof");
        let doc = ProofDocument::Consistency(ConsistencyProof::new(5, 11, &path));
        let back = ProofDocument::from_json(&doc.to_json()).expect("parse");
        let (old, new) = (checkpoint(&tree, 5), checkpoint(&tree, 11));
        assert_eq!(
            back.check(&new, Some(&old)),
            Ok(Verified::Consistency {
                first_size: 5,
                second_size: 11
            })
        );
        assert_eq!(back.check(&new, None), Err(CheckError::NeedsOldCheckpoint));
        let mut forged = old.clone();
        forged.root = Tree::from_entries((0..5u8).map(|i| vec![i + 1; 3])).root();
        assert_eq!(
            back.check(&new, Some(&forged)),
            Err(CheckError::OldRootMismatch)
        );
        assert_eq!(
            back.check(&checkpoint(&tree, 10), Some(&old)),
            Err(CheckError::SizeMismatch {
                proof: 11,
                checkpoint: 10
            })
        );
    }

    #[test]
    fn malformed_documents_are_named() {
        for text in [
            "{}",
            r#"{"type":"inclusion","version":2,"leaf_index":0,"tree_size":1,"leaf_hash":"","audit_path":[]}"#,
            r#"{"type":"inclusion","version":1,"leaf_index":0,"tree_size":1,"audit_path":[],"extra":1}"#,
        ] {
            assert!(matches!(
                ProofDocument::from_json(text),
                Err(CheckError::Malformed(_))
            ));
        }
    }
}

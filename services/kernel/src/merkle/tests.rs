//! The reference vectors of the RFC 6962 implementations (Google's
//! transparency-dev/merkle `testonly` and `proof` tests, shared with
//! Trillian and certificate-transparency-go), written out here from those
//! sources, not from this code; then properties over random trees.

use proptest::prelude::*;

use super::*;

fn h(hex: &str) -> Hash {
    let bytes = hex::decode(hex).expect("hex");
    bytes.try_into().expect("32 bytes")
}

/// The eight standard leaf inputs.
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of the first 0..=8 leaf inputs.
const ROOTS: [&str; 9] = [
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

/// Leaf hashes of the eight inputs (level 0 of the reference node hashes).
const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

/// (leaf index, tree size, audit path).
fn inclusion_vectors() -> Vec<(u64, u64, Vec<&'static str>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            vec![
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ]
}

/// (first size, second size, consistency path).
fn consistency_vectors() -> Vec<(u64, u64, Vec<&'static str>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ]
}

fn reference_tree() -> Tree {
    Tree::from_entries(LEAF_INPUTS.iter().map(|x| hex::decode(x).expect("hex")))
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(empty_root(), h(ROOTS[0]));
    assert_eq!(Tree::new().root(), h(ROOTS[0]));
}

#[test]
fn leaf_hashes_match_the_reference() {
    for (input, want) in LEAF_INPUTS.iter().zip(LEAF_HASHES) {
        assert_eq!(leaf_hash(&hex::decode(input).expect("hex")), h(want));
    }
}

#[test]
fn roots_of_every_prefix_match_the_reference() {
    let tree = reference_tree();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(tree.root_at(size as u64), Ok(h(want)), "size {size}");
        // And the same root from a tree built to exactly that size.
        let exact = Tree::from_entries(
            LEAF_INPUTS[..size]
                .iter()
                .map(|x| hex::decode(x).expect("hex")),
        );
        assert_eq!(exact.root(), h(want), "exact tree of size {size}");
    }
    assert!(tree.root_at(9).is_err());
    let rebuilt = Tree::from_leaf_hashes(LEAF_HASHES.map(h));
    assert_eq!(rebuilt.root(), h(ROOTS[8]));
}

#[test]
fn inclusion_proofs_match_the_reference_and_verify() {
    let tree = reference_tree();
    for (index, size, want) in inclusion_vectors() {
        let want: Vec<Hash> = want.into_iter().map(h).collect();
        let got = tree.inclusion_proof(index, size).expect("proof");
        assert_eq!(got, want, "inclusion {index}/{size}");
        let leaf = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        assert_eq!(verify_inclusion(index, size, &leaf, &want, &root), Ok(()));
    }
}

#[test]
fn consistency_proofs_match_the_reference_and_verify() {
    let tree = reference_tree();
    for (first, second, want) in consistency_vectors() {
        let want: Vec<Hash> = want.into_iter().map(h).collect();
        let got = tree.consistency_proof(first, second).expect("proof");
        assert_eq!(got, want, "consistency {first}->{second}");
        let (r1, r2) = (h(ROOTS[first as usize]), h(ROOTS[second as usize]));
        assert_eq!(verify_consistency(first, second, &r1, &r2, &want), Ok(()));
    }
}

/// The corruptions of the reference verifier's tests: each must fail.
#[test]
fn corrupted_reference_inclusion_proofs_fail() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, path) in inclusion_vectors() {
        let path: Vec<Hash> = path.into_iter().map(h).collect();
        let leaf = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        let bad = |i: u64, s: u64, leaf: &Hash, p: &[Hash], r: &Hash| {
            assert!(
                verify_inclusion(i, s, leaf, p, r).is_err(),
                "accepted a corruption of {index}/{size}: {i}/{s}"
            );
        };
        if index > 0 {
            bad(index - 1, size, &leaf, &path, &root);
        }
        bad(index + 1, size, &leaf, &path, &root);
        bad(index ^ 2, size, &leaf, &path, &root);
        bad(index, size * 2, &leaf, &path, &root);
        bad(index, size / 2, &leaf, &path, &root);
        bad(index, size, &leaf_hash(b"WrongLeaf"), &path, &root);
        bad(index, size, &leaf, &path, &empty_root());
        bad(index, size, &leaf, &path, &some);
        let mut extended = path.clone();
        extended.push(root);
        bad(index, size, &leaf, &extended, &root);
        let mut prepended = vec![root];
        prepended.extend(&path);
        bad(index, size, &leaf, &prepended, &root);
        for i in 0..path.len() {
            let mut flipped = path.clone();
            flipped[i][0] ^= 8;
            bad(index, size, &leaf, &flipped, &root);
        }
        if !path.is_empty() {
            bad(index, size, &leaf, &path[..path.len() - 1], &root);
        }
        if path.len() > 1 {
            let mut inserted = vec![path[0], some];
            inserted.extend(&path[1..]);
            bad(index, size, &leaf, &inserted, &root);
        }
    }
}

#[test]
fn corrupted_reference_consistency_proofs_fail() {
    for (first, second, path) in consistency_vectors() {
        let path: Vec<Hash> = path.into_iter().map(h).collect();
        if path.is_empty() {
            continue;
        }
        let (r1, r2) = (h(ROOTS[first as usize]), h(ROOTS[second as usize]));
        let wrong = leaf_hash(b"WrongRoot");
        let bad = |f: u64, s: u64, a: &Hash, b: &Hash, p: &[Hash]| {
            assert!(
                verify_consistency(f, s, a, b, p).is_err(),
                "accepted a corruption of {first}->{second}: {f}->{s}"
            );
        };
        bad(first - 1, second, &r1, &r2, &path);
        bad(first + 1, second, &r1, &r2, &path);
        bad(first ^ 2, second, &r1, &r2, &path);
        bad(first, second * 2, &r1, &r2, &path);
        bad(first, second / 2, &r1, &r2, &path);
        bad(first, second, &wrong, &r2, &path);
        bad(first, second, &r1, &wrong, &path);
        bad(first, second, &r2, &r1, &path);
        bad(first, second, &r1, &r2, &[]);
        for extra in [r1, r2] {
            let mut extended = path.clone();
            extended.push(extra);
            bad(first, second, &r1, &r2, &extended);
            let mut prepended = vec![extra];
            prepended.extend(&path);
            bad(first, second, &r1, &r2, &prepended);
        }
        let mut prepended = vec![path[0]];
        prepended.extend(&path);
        bad(first, second, &r1, &r2, &prepended);
        bad(first, second, &r1, &r2, &path[..path.len() - 1]);
        for i in 0..path.len() {
            let mut flipped = path.clone();
            flipped[i][0] ^= 16;
            bad(first, second, &r1, &r2, &flipped);
        }
    }
}

#[test]
fn degenerate_consistency_cases() {
    let tree = reference_tree();
    let r4 = tree.root_at(4).expect("root");
    let r5 = tree.root_at(5).expect("root");
    assert_eq!(verify_consistency(4, 4, &r4, &r4, &[]), Ok(()));
    assert!(verify_consistency(4, 4, &r4, &r5, &[]).is_err());
    assert!(verify_consistency(4, 4, &r4, &r4, &[r4]).is_err());
    assert_eq!(verify_consistency(0, 5, &empty_root(), &r5, &[]), Ok(()));
    assert!(verify_consistency(0, 5, &r4, &r5, &[]).is_err());
    assert!(verify_consistency(0, 5, &empty_root(), &r5, &[r4]).is_err());
    assert!(verify_consistency(5, 4, &r5, &r4, &[]).is_err());
    assert!(tree.consistency_proof(5, 4).is_err());
    assert!(tree.consistency_proof(1, 9).is_err());
    assert!(tree.inclusion_proof(8, 8).is_err());
    assert!(verify_inclusion(0, 0, &r4, &[], &r4).is_err());
}

/// MTH straight from the RFC's recursive definition, over leaf hashes: the
/// independent reference for the incremental tree.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn entries(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_prefix_root_equals_the_recursive_definition(entries in entries(80)) {
        let tree = Tree::from_entries(&entries);
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        for size in 0..=leaves.len() {
            prop_assert_eq!(tree.root_at(size as u64), Ok(mth(&leaves[..size])));
        }
    }

    #[test]
    fn every_inclusion_proof_verifies(entries in entries(70)) {
        let tree = Tree::from_entries(&entries);
        for size in 1..=tree.len() {
            let root = tree.root_at(size).expect("root");
            for index in 0..size {
                let path = tree.inclusion_proof(index, size).expect("proof");
                let leaf = tree.leaf(index).expect("leaf");
                prop_assert_eq!(verify_inclusion(index, size, &leaf, &path, &root), Ok(()));
                // The same path never proves a neighbour's leaf at this index.
                if size > 1 {
                    let other = tree.leaf((index + 1) % size).expect("leaf");
                    if other != leaf {
                        prop_assert!(verify_inclusion(index, size, &other, &path, &root).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies(entries in entries(60)) {
        let tree = Tree::from_entries(&entries);
        for second in 0..=tree.len() {
            let r2 = tree.root_at(second).expect("root");
            for first in 0..=second {
                let r1 = tree.root_at(first).expect("root");
                let path = tree.consistency_proof(first, second).expect("proof");
                prop_assert_eq!(verify_consistency(first, second, &r1, &r2, &path), Ok(()));
            }
        }
    }

    /// A changed, removed, inserted or reordered entry changes the root, so
    /// every proof against the honest checkpoint fails for the tampered log.
    #[test]
    fn tampering_with_the_log_fails_verification(
        entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 2..60),
        at in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        kind in 0..4u8,
        flip in any::<u8>(),
    ) {
        let honest = Tree::from_entries(&entries);
        let size = honest.len();
        let root = honest.root();
        let i = at.index(entries.len());
        let mut tampered = entries.clone();
        match kind {
            0 => tampered[i][0] ^= flip | 1,
            1 => { tampered.remove(i); }
            2 => tampered.insert(i, b"inserted".to_vec()),
            _ => {
                let j = other.index(entries.len());
                prop_assume!(entries[i] != entries[j]);
                tampered.swap(i, j);
            }
        }
        let forged = Tree::from_entries(&tampered);
        prop_assert_ne!(forged.root(), root);
        // Each entry of the tampered log, proved by the tampered tree,
        // against the honest signed root: the tampered positions fail.
        let mut failures = 0;
        let n = forged.len().min(size);
        for index in 0..n {
            let leaf = forged.leaf(index).expect("leaf");
            let path = forged.inclusion_proof(index, forged.len()).expect("proof");
            if verify_inclusion(index, size, &leaf, &path, &root).is_err() {
                failures += 1;
            }
        }
        prop_assert!(failures > 0);
        // The tampered tree cannot prove it extends the honest one...
        if forged.len() >= size {
            let path = forged.consistency_proof(size, forged.len()).expect("proof");
            prop_assert!(verify_consistency(size, forged.len(), &root, &forged.root(), &path).is_err());
        }
        // ...nor that the honest one extends a prefix it rewrote.
        let k = (i as u64 + 1).min(forged.len());
        if k <= size {
            let path = honest.consistency_proof(k, size).expect("proof");
            let forged_prefix = forged.root_at(k).expect("root");
            if forged_prefix != honest.root_at(k).expect("root") {
                prop_assert!(verify_consistency(k, size, &forged_prefix, &root, &path).is_err());
            }
        }
    }
}

#[test]
fn a_large_tree_builds_and_proves_quickly() {
    let mut tree = Tree::new();
    for i in 0u64..200_000 {
        tree.append_entry(&i.to_be_bytes());
    }
    let root = tree.root();
    let size = tree.len();
    for index in [0, 1, 99_999, 131_071, 131_072, 199_999] {
        let path = tree.inclusion_proof(index, size).expect("proof");
        let leaf = leaf_hash(&index.to_be_bytes());
        assert_eq!(verify_inclusion(index, size, &leaf, &path, &root), Ok(()));
    }
    for first in [1, 3, 65_536, 100_001, 199_999] {
        let r1 = tree.root_at(first).expect("root");
        let path = tree.consistency_proof(first, size).expect("proof");
        assert_eq!(verify_consistency(first, size, &r1, &root, &path), Ok(()));
    }
}

/// The worked example of docs/audit-proofs.md, whose values were computed
/// outside carelog (Python's hashlib for the tree, OpenSSL for the Ed25519
/// signatures) with the RFC 8032 §7.1 TEST 1 key: carelog must produce and
/// accept exactly these bytes.
mod worked_example {
    use chrono::{DateTime, Utc};

    use super::super::checkpoint::{Checkpoint, signing_key_from_pem, verifying_key_from_pem};
    use super::super::proof::{ProofDocument, Verified};
    use super::*;

    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
    const CHECKPOINT_8: &str = "carelog.example/audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\ntime 2026-11-22T01:00:00Z\n\n\u{2014} carelog.example/audit KrBPryuIGG6yVHZkXqCDQiGnIyspjxrIlZ4+tBvnfWkNWdmst61WmAbgqBzQs8OKiORRUCKRQcCDu4TSSxdzKD0qzgw=\n";
    const CHECKPOINT_6: &str = "carelog.example/audit\n6\nduZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=\ntime 2026-11-22T00:00:00Z\n\n\u{2014} carelog.example/audit KrBPr/fbx9SHTCPAhsvs/JndwGrIUysfv1PaimwvrC73/M/SMk+83x2ngfoMP38McZUwvv1ryp8yBx4vOYmk2sz0XQw=\n";
    const INCLUSION: &str = r#"{
  "type": "inclusion",
  "version": 1,
  "leaf_index": 5,
  "tree_size": 8,
  "leaf_hash": "QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=",
  "entry": "QEFCQw==",
  "audit_path": [
    "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
    "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
    "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="
  ]
}"#;
    const CONSISTENCY: &str = r#"{
  "type": "consistency",
  "version": 1,
  "first_size": 6,
  "second_size": 8,
  "consistency_path": [
    "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
    "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
    "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="
  ]
}"#;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn carelog_writes_the_same_checkpoints_and_proofs() {
        let key = signing_key_from_pem(PRIVATE).expect("key");
        let tree = reference_tree();
        let cp8 = Checkpoint::new(
            "carelog.example/audit",
            8,
            tree.root(),
            at("2026-11-22T01:00:00Z"),
        )
        .expect("checkpoint");
        assert_eq!(cp8.sign(&key), CHECKPOINT_8);
        let cp6 = Checkpoint::new(
            "carelog.example/audit",
            6,
            tree.root_at(6).expect("root"),
            at("2026-11-22T00:00:00Z"),
        )
        .expect("checkpoint");
        assert_eq!(cp6.sign(&key), CHECKPOINT_6);

        let inclusion = ProofDocument::Inclusion(
            super::super::proof::InclusionProof::new(
                5,
                8,
                &tree.leaf(5).expect("leaf"),
                &tree.inclusion_proof(5, 8).expect("proof"),
            )
            .with_entry(&hex::decode("40414243").expect("hex")),
        );
        assert_eq!(inclusion.to_json(), INCLUSION);
        let consistency = ProofDocument::Consistency(super::super::proof::ConsistencyProof::new(
            6,
            8,
            &tree.consistency_proof(6, 8).expect("proof"),
        ));
        assert_eq!(consistency.to_json(), CONSISTENCY);
    }

    #[test]
    fn carelog_verifies_them_with_only_the_public_key() {
        let public = verifying_key_from_pem(PUBLIC).expect("public key");
        let cp8 = Checkpoint::verify(CHECKPOINT_8, &public).expect("checkpoint 8");
        let cp6 = Checkpoint::verify(CHECKPOINT_6, &public).expect("checkpoint 6");
        assert_eq!(
            ProofDocument::from_json(INCLUSION)
                .expect("inclusion")
                .check(&cp8, None),
            Ok(Verified::Inclusion {
                leaf_index: 5,
                tree_size: 8
            })
        );
        assert_eq!(
            ProofDocument::from_json(CONSISTENCY)
                .expect("consistency")
                .check(&cp8, Some(&cp6)),
            Ok(Verified::Consistency {
                first_size: 6,
                second_size: 8
            })
        );
    }
}

/// A million entries: append, root, and proofs for sizes all over the log
/// (`cargo test -p carelog-kernel --release -- --ignored a_million`).
#[test]
#[ignore = "a timing run, not a check"]
fn a_million_entries() {
    let started = std::time::Instant::now();
    let mut tree = Tree::new();
    for i in 0u64..1_000_000 {
        tree.append_entry(&i.to_be_bytes());
    }
    let appended = started.elapsed();
    let started = std::time::Instant::now();
    let mut proofs = 0;
    for k in 1..=1000u64 {
        let size = k * 1000 - 1;
        let index = (k * 7919) % size;
        let root = tree.root_at(size).expect("root");
        let path = tree.inclusion_proof(index, size).expect("proof");
        let leaf = tree.leaf(index).expect("leaf");
        assert_eq!(verify_inclusion(index, size, &leaf, &path, &root), Ok(()));
        let first = size / 3 + 1;
        let old = tree.root_at(first).expect("root");
        let path = tree.consistency_proof(first, size).expect("proof");
        assert_eq!(verify_consistency(first, size, &old, &root, &path), Ok(()));
        proofs += 2;
    }
    println!(
        "1,000,000 appends in {appended:?}; {proofs} proofs with roots, made and verified, in {:?}",
        started.elapsed()
    );
}

//! `carelog audit keygen` and `carelog audit check-proof` as an auditor runs
//! them: the real binary, on files written here. A good proof passes; a
//! tampered entry, checkpoint, key or size fails with a non-zero exit that
//! names what failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use carelog_kernel::merkle::Tree;
use carelog_kernel::merkle::checkpoint::{Checkpoint, signing_key_from_pem};
use carelog_kernel::merkle::proof::{ConsistencyProof, InclusionProof, ProofDocument};
use chrono::Utc;

const ORIGIN: &str = "carelog.test/audit";

fn carelog(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carelog"));
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    cmd.output().expect("run carelog")
}

fn check(dir: &Path, public: &Path, checkpoint: &str, proof: &str, old: Option<&str>) -> Output {
    let checkpoint = dir.join(checkpoint);
    let proof = dir.join(proof);
    let old = old.map(|o| dir.join(o));
    let mut paths = vec![
        ("--public-key", public),
        ("--checkpoint", checkpoint.as_path()),
        ("--proof", proof.as_path()),
    ];
    if let Some(old) = &old {
        paths.push(("--old-checkpoint", old.as_path()));
    }
    carelog(&["audit", "check-proof"], &paths)
}

fn passes(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "expected success: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("verified: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    stdout
}

fn fails(out: &Output, naming: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure naming {naming}");
    assert!(
        stderr.contains(naming),
        "expected the failure to name {naming:?}: {stderr}"
    );
}

fn entry(i: u64) -> Vec<u8> {
    format!(
        r#"{{"seq":{i},"event":"RecordAccessed","patient":"p{}"}}"#,
        i % 4
    )
    .into_bytes()
}

#[test]
fn check_proof_accepts_good_proofs_and_names_every_tampering() {
    let dir: PathBuf = std::env::temp_dir().join(format!("carelog-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.join("keys");

    // keygen: a 0600 private key and a public key; never overwrites.
    let out = carelog(&["audit", "keygen"], &[("--out", &keys)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = keys.join("audit-signing-key.pem");
    let public = keys.join("audit-public-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = carelog(&["audit", "keygen"], &[("--out", &keys)]);
    assert!(!again.status.success(), "keygen overwrote a key");

    // The log the operator signs: 13 entries, checkpoints at 6 and 13.
    let key = signing_key_from_pem(&std::fs::read_to_string(&private).expect("read key"))
        .expect("parse key");
    let tree = Tree::from_entries((0..13).map(entry));
    let sign = |size: u64, root| {
        Checkpoint::new(ORIGIN, size, root, Utc::now())
            .expect("checkpoint")
            .sign(&key)
    };
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
    write("cp13", &sign(13, tree.root()));
    write("cp6", &sign(6, tree.root_at(6).expect("root")));

    let index = 4;
    let path = tree.inclusion_proof(index, 13).expect("proof");
    let leaf = tree.leaf(index).expect("leaf");
    let good = ProofDocument::Inclusion(
        InclusionProof::new(index, 13, &leaf, &path).with_entry(&entry(index)),
    );
    write("good.json", &good.to_json());
    let line = passes(&check(&dir, &public, "cp13", "good.json", None));
    assert!(
        line.contains("entry 4 is included in the log of 13 entries"),
        "{line}"
    );

    // A verifier that has only the entry's bytes (no leaf hash) agrees.
    let mut bytes_only = InclusionProof::new(index, 13, &leaf, &path).with_entry(&entry(index));
    bytes_only.leaf_hash = None;
    write(
        "bytes.json",
        &ProofDocument::Inclusion(bytes_only.clone()).to_json(),
    );
    passes(&check(&dir, &public, "cp13", "bytes.json", None));

    // A changed entry: the proof no longer reaches the signed root.
    let mut changed = bytes_only.clone();
    changed.entry = Some(base64_of(&entry(index + 1)));
    write("changed.json", &ProofDocument::Inclusion(changed).to_json());
    fails(
        &check(&dir, &public, "cp13", "changed.json", None),
        "root mismatch",
    );

    // A changed audit path.
    let mut forged_path = path.clone();
    forged_path[1][0] ^= 1;
    write(
        "path.json",
        &ProofDocument::Inclusion(InclusionProof::new(index, 13, &leaf, &forged_path)).to_json(),
    );
    fails(
        &check(&dir, &public, "cp13", "path.json", None),
        "root mismatch",
    );

    // A proof for another tree size than the checkpoint's.
    fails(
        &check(&dir, &public, "cp6", "good.json", None),
        "size mismatch",
    );

    // A checkpoint edited after signing, and one signed by another key.
    let cp13 = std::fs::read_to_string(dir.join("cp13")).expect("read");
    let (head, rest) = cp13.split_once('\n').expect("origin line");
    let (_, rest) = rest.split_once('\n').expect("size line");
    write("edited", &format!("{head}\n12\n{rest}"));
    fails(
        &check(&dir, &public, "edited", "good.json", None),
        "signature",
    );
    let other = dir.join("other");
    let out = carelog(
        &["audit", "keygen", "--origin", ORIGIN],
        &[("--out", &other)],
    );
    assert!(out.status.success());
    let vkey = std::fs::read_to_string(other.join("audit-public-key.vkey")).expect("vkey");
    assert!(vkey.starts_with(&format!("{ORIGIN}+")), "{vkey}");
    fails(
        &check(
            &dir,
            &other.join("audit-public-key.pem"),
            "cp13",
            "good.json",
            None,
        ),
        "signature",
    );

    // Consistency 6 -> 13 between the two signed checkpoints.
    let consistency = ProofDocument::Consistency(ConsistencyProof::new(
        6,
        13,
        &tree.consistency_proof(6, 13).expect("proof"),
    ));
    write("consistency.json", &consistency.to_json());
    let line = passes(&check(
        &dir,
        &public,
        "cp13",
        "consistency.json",
        Some("cp6"),
    ));
    assert!(line.contains("prefix"), "{line}");
    fails(
        &check(&dir, &public, "cp13", "consistency.json", None),
        "--old-checkpoint",
    );

    // History rewritten: a validly signed older checkpoint of a log whose
    // entry 2 was changed is not a prefix of the current log.
    let mut rewritten: Vec<Vec<u8>> = (0..6).map(entry).collect();
    rewritten[2] = b"rewritten".to_vec();
    write(
        "cp6-rewritten",
        &sign(6, Tree::from_entries(&rewritten).root()),
    );
    fails(
        &check(
            &dir,
            &public,
            "cp13",
            "consistency.json",
            Some("cp6-rewritten"),
        ),
        "root mismatch",
    );

    // Not a proof at all.
    write("junk.json", "{\"type\":\"inclusion\"}");
    fails(
        &check(&dir, &public, "cp13", "junk.json", None),
        "malformed",
    );

    let _ = std::fs::remove_dir_all(&dir);
}

fn base64_of(bytes: &[u8]) -> String {
    // Standard base64 (RFC 4648 §4), written out so the test does not lean on
    // the code under test for its encoding.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

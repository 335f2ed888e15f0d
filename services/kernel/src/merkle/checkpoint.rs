//! Signed checkpoints: the tree head (origin, size, root, time) as a C2SP
//! `tlog-checkpoint` signed with Ed25519 as a C2SP `signed-note`.
//!
//! ```text
//! carelog.example.nhs.uk/audit
//! 8
//! XcnaeacGWamtVZy3Ad7Zoqudgjqy9JYM/jcO/0YEMyg=
//! time 2026-11-22T00:40:00Z
//!
//! — carelog.example.nhs.uk/audit <base64(key id || Ed25519 signature)>
//! ```
//!
//! The note text (everything before the blank line, including the last
//! newline) is what is signed. The key name is the origin; the key id is
//! the first four bytes of `SHA-256(name || 0x0A || 0x01 || public key)`.
//! `time` is carelog's extension line (RFC 3339, UTC, whole seconds).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, Verifier as _};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::Hash;

/// The C2SP signature type byte of Ed25519.
const ED25519: u8 = 0x01;
const TIME_PREFIX: &str = "time ";

/// A tree head: what a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The carelog deployment's log name, e.g. `carelog.example.nhs.uk/audit`.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub time: DateTime<Utc>,
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is malformed: {0}")]
    Malformed(String),
    #[error("checkpoint signature: no signature by the given key (origin {origin})")]
    NoSignature { origin: String },
    #[error("checkpoint signature is not valid for the given key")]
    BadSignature,
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin { found: String, expected: String },
    #[error(
        "origin {0:?} is not a valid log name (non-empty, no spaces, '+' or control characters)"
    )]
    BadOrigin(String),
}

fn malformed(why: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed(why.into())
}

/// A log name must also be a signed-note key name.
pub fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty()
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        Err(CheckpointError::BadOrigin(origin.to_owned()))
    } else {
        Ok(())
    }
}

/// The signed-note key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The key in the verifier-key text form of signed-note implementations
/// (Go's `golang.org/x/mod/sumdb/note`): `<name>+<key id, hex>+<base64(0x01 || public key)>`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> Result<String, CheckpointError> {
    check_origin(name)?;
    let mut blob = vec![ED25519];
    blob.extend_from_slice(key.as_bytes());
    Ok(format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, key)),
        B64.encode(blob)
    ))
}

impl Checkpoint {
    /// A checkpoint of `size` entries with `root`, timed to the second.
    pub fn new(
        origin: impl Into<String>,
        size: u64,
        root: Hash,
        time: DateTime<Utc>,
    ) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        check_origin(&origin)?;
        let time = DateTime::from_timestamp(time.timestamp(), 0)
            .ok_or_else(|| malformed("time out of range"))?;
        Ok(Self {
            origin,
            size,
            root,
            time,
        })
    }

    /// The note text: the body that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{TIME_PREFIX}{}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.time.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// The signed note: body, blank line, one signature line.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let signature = key.sign(body.as_bytes());
        let mut blob = key_id(&self.origin, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.origin, B64.encode(blob))
    }

    /// Parses a signed checkpoint and verifies its signature by `key`
    /// (under the checkpoint's own origin as key name). Signatures by other
    /// keys (witnesses' cosignatures) are ignored.
    pub fn verify(note: &str, key: &VerifyingKey) -> Result<Self, CheckpointError> {
        let note = note.strip_prefix('\u{feff}').unwrap_or(note);
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("control characters other than newline"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let (body, signatures) = (&note[..=split], &note[split + 2..]);
        let checkpoint = Self::parse_body(body)?;
        let want_id = key_id(&checkpoint.origin, key);
        let mut found = false;
        for line in signatures.lines() {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| malformed(format!("signature line {line:?}")))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| malformed(format!("signature line {line:?}")))?;
            let blob = B64
                .decode(blob)
                .map_err(|_| malformed("signature is not base64"))?;
            if name != checkpoint.origin || blob.len() < 4 || blob[..4] != want_id {
                continue;
            }
            found = true;
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| CheckpointError::BadSignature)?;
            key.verify(body.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature)?;
        }
        if found {
            Ok(checkpoint)
        } else {
            Err(CheckpointError::NoSignature {
                origin: checkpoint.origin,
            })
        }
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let mut lines = body.strip_suffix('\n').unwrap_or(body).split('\n');
        let origin = lines.next().unwrap_or_default().to_owned();
        check_origin(&origin)?;
        let size = lines.next().ok_or_else(|| malformed("no tree size"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(malformed(format!("tree size {size:?}")));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| malformed(format!("tree size {size:?}")))?;
        let root = lines.next().ok_or_else(|| malformed("no root hash"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed(format!("root hash {root:?} is not 32 bytes of base64")))?;
        let mut time = None;
        for line in lines {
            if line.is_empty() {
                return Err(malformed("empty extension line"));
            }
            if let Some(t) = line.strip_prefix(TIME_PREFIX) {
                if time.is_some() {
                    return Err(malformed("two time lines"));
                }
                let t = DateTime::parse_from_rfc3339(t)
                    .map_err(|_| malformed(format!("time {t:?} is not RFC 3339")))?;
                time = Some(t.with_timezone(&Utc));
            }
        }
        let time = time.ok_or_else(|| malformed("no time line"))?;
        Ok(Self {
            origin,
            size,
            root,
            time,
        })
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

fn pem_decode(text: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| KeyError(format!("no '{begin}' line")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| KeyError(format!("no '{end}' line")))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64)
        .map_err(|_| KeyError(format!("{label} is not base64")))
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An Ed25519 private key from a PKCS#8 PEM (`BEGIN PRIVATE KEY`), as
/// written by `carelog audit keygen` or `openssl genpkey -algorithm ed25519`.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    let der = pem_decode(pem, "PRIVATE KEY")?;
    SigningKey::from_pkcs8_der(&der)
        .map_err(|e| KeyError(format!("not an Ed25519 PKCS#8 private key: {e}")))
}

/// The RFC 8410 PKCS#8 v1 encoding (`OneAsymmetricKey` without the public
/// key), the form OpenSSL writes and reads: a fixed DER prefix, then the
/// 32-byte seed.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

pub fn signing_key_to_pem(key: &SigningKey) -> Result<String, KeyError> {
    let mut der = PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&key.to_bytes());
    Ok(pem_encode(&der, "PRIVATE KEY"))
}

/// An Ed25519 public key from a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
    let der = pem_decode(pem, "PUBLIC KEY")?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|e| KeyError(format!("not an Ed25519 public key: {e}")))
}

pub fn verifying_key_to_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    let der = key
        .to_public_key_der()
        .map_err(|e| KeyError(format!("cannot encode the public key: {e}")))?;
    Ok(pem_encode(der.as_bytes(), "PUBLIC KEY"))
}

/// A new random signing key.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn checkpoint() -> Checkpoint {
        let time = DateTime::parse_from_rfc3339("2026-11-22T00:40:00.75Z")
            .expect("time")
            .with_timezone(&Utc);
        Checkpoint::new("carelog.example/audit", 8, [9; 32], time).expect("checkpoint")
    }

    #[test]
    fn a_signed_checkpoint_round_trips_and_its_format_is_c2sp() {
        let cp = checkpoint();
        let note = cp.sign(&key());
        let mut lines = note.lines();
        assert_eq!(lines.next(), Some("carelog.example/audit"));
        assert_eq!(lines.next(), Some("8"));
        assert_eq!(lines.next(), Some(B64.encode([9; 32]).as_str()));
        assert_eq!(lines.next(), Some("time 2026-11-22T00:40:00Z"));
        assert_eq!(lines.next(), Some(""));
        let sig = lines.next().expect("signature line");
        assert!(sig.starts_with("\u{2014} carelog.example/audit "));
        assert_eq!(lines.next(), None);
        assert_eq!(Checkpoint::verify(&note, &key().verifying_key()), Ok(cp));
    }

    #[test]
    fn key_id_follows_signed_note() {
        let vk = key().verifying_key();
        let mut h = Sha256::new();
        h.update(b"carelog.example/audit\n\x01");
        h.update(vk.as_bytes());
        assert_eq!(key_id("carelog.example/audit", &vk)[..], h.finalize()[..4]);
    }

    /// The RFC 8032 TEST 1 key under the worked example's name; the key id
    /// was computed with Python's hashlib.
    #[test]
    fn verifier_key_text() {
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .expect("hex");
        let key = VerifyingKey::from_bytes(&public.try_into().expect("32")).expect("key");
        assert_eq!(
            verifier_key("carelog.example/audit", &key).expect("vkey"),
            "carelog.example/audit+2ab04faf+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
        );
    }

    #[test]
    fn tampering_with_any_line_breaks_the_signature() {
        let note = checkpoint().sign(&key());
        let vk = key().verifying_key();
        for (from, to) in [
            ("\n8\n", "\n9\n"),
            ("00:40:00Z", "00:40:01Z"),
            ("CQkJ", "CQkK"),
        ] {
            let forged = note.replacen(from, to, 1);
            assert_ne!(forged, note, "{from}");
            assert!(Checkpoint::verify(&forged, &vk).is_err(), "{from}");
        }
        // The origin is the key name: a renamed log has no signature by the key.
        let renamed = note.replace("carelog.example/audit", "other.example/audit");
        assert!(matches!(
            Checkpoint::verify(&renamed, &vk),
            Err(CheckpointError::NoSignature { .. })
        ));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(
            Checkpoint::verify(&note, &other),
            Err(CheckpointError::NoSignature { .. })
        ));
    }

    #[test]
    fn a_witness_cosignature_is_ignored_and_a_bad_own_signature_is_not() {
        let cp = checkpoint();
        let note = cp.sign(&key());
        let witness = format!("{note}\u{2014} witness.example AAAAAAAA\n");
        assert_eq!(
            Checkpoint::verify(&witness, &key().verifying_key()),
            Ok(cp.clone())
        );
        let (head, sig) = note.rsplit_once(' ').expect("sig");
        let mut blob = B64.decode(sig.trim()).expect("b64");
        blob[10] ^= 1;
        let bad = format!("{head} {}\n", B64.encode(blob));
        assert_eq!(
            Checkpoint::verify(&bad, &key().verifying_key()),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let key = generate_signing_key();
        let pem = signing_key_to_pem(&key).expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = signing_key_from_pem(&pem).expect("parse");
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public = verifying_key_to_pem(&key.verifying_key()).expect("pem");
        assert_eq!(
            verifying_key_from_pem(&public).expect("parse"),
            key.verifying_key()
        );
        assert!(verifying_key_from_pem(&pem).is_err());
    }

    /// A key from `openssl genpkey -algorithm ed25519` and its
    /// `openssl pkey -pubout`, byte for byte.
    #[test]
    fn openssl_keys_load() {
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMvqbgqLqUk9atjoMo8Kc3DJCYffFjSCT7xfhNRkN79R\n-----END PRIVATE KEY-----\n";
        let key = signing_key_from_pem(private).expect("openssl private key");
        assert_eq!(signing_key_to_pem(&key).expect("pem"), private);
        let public = verifying_key_to_pem(&key.verifying_key()).expect("pem");
        assert_eq!(
            public,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA0/abTdVT9PdABtoppOCdh2VFC9xGbSmO7sb47/wEqqQ=\n-----END PUBLIC KEY-----\n"
        );
    }

    #[test]
    fn malformed_bodies_are_refused_even_when_signed() {
        let cp = checkpoint();
        let good = cp.body();
        for body in [
            good.replace("\n8\n", "\n+8\n"),
            good.replace("\n8\n", "\n08\n"),
            good.replace("\n8\n", "\n\n"),
            good.replace("time ", "when "),
            format!("{good}time 2026-11-22T00:40:00Z\n"),
            good.replacen(&B64.encode([9; 32]), &B64.encode([9; 31]), 1),
        ] {
            let signature = key().sign(body.as_bytes());
            let mut blob = key_id(&cp.origin, &key().verifying_key()).to_vec();
            blob.extend_from_slice(&signature.to_bytes());
            let note = format!("{body}\n\u{2014} {} {}\n", cp.origin, B64.encode(blob));
            assert!(
                matches!(
                    Checkpoint::verify(&note, &key().verifying_key()),
                    Err(CheckpointError::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn bad_origins_are_refused() {
        for origin in ["", "has space", "a+b", "tab\there"] {
            assert!(Checkpoint::new(origin, 0, [0; 32], Utc::now()).is_err());
        }
    }
}

//! `carelog audit`: the audit log's offline tools. `keygen` makes the
//! checkpoint signing key; `check-proof` is the standalone verifier that
//! needs only the public key, a signed checkpoint and a proof document
//! (docs/audit-proofs.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use carelog_kernel::merkle::checkpoint::{
    self, Checkpoint, SigningKey, VerifyingKey, generate_signing_key, signing_key_to_pem,
    verifying_key_from_pem, verifying_key_to_pem,
};
use carelog_kernel::merkle::proof::ProofDocument;
use clap::{Args, Subcommand};

/// The private key's file name in `keygen --out DIR`.
pub const PRIVATE_KEY_FILE: &str = "audit-signing-key.pem";
/// The public key's file name in `keygen --out DIR`.
pub const PUBLIC_KEY_FILE: &str = "audit-public-key.pem";
/// The verifier key's file name in `keygen --out DIR --origin NAME`.
pub const VERIFIER_KEY_FILE: &str = "audit-public-key.vkey";

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes a new Ed25519 checkpoint signing key (PKCS#8 PEM, mode 0600)
    /// and its public key (SubjectPublicKeyInfo PEM) into a directory.
    Keygen(KeygenArgs),
    /// Verifies a signed checkpoint with the public key, then an inclusion
    /// or consistency proof against it. Exit 0 when verified, 1 naming what
    /// failed.
    CheckProof(CheckProofArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write audit-signing-key.pem and audit-public-key.pem
    /// into (created if missing; an existing key is never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// The log's origin (key name). When given, also writes
    /// audit-public-key.vkey, the key in the signed-note verifier-key form
    /// that other note verifiers (Go's sumdb/note) read.
    #[arg(long)]
    pub origin: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckProofArgs {
    /// The log's Ed25519 public key (PEM, `BEGIN PUBLIC KEY`).
    #[arg(long)]
    pub public_key: PathBuf,
    /// The signed checkpoint the proof is checked against (for a
    /// consistency proof, the newer one).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The proof document (JSON).
    #[arg(long)]
    pub proof: PathBuf,
    /// For a consistency proof: the older signed checkpoint.
    #[arg(long)]
    pub old_checkpoint: Option<PathBuf>,
    /// The origin (log name) the checkpoints must carry.
    #[arg(long)]
    pub origin: Option<String>,
}

/// How the checkpoint signing key is configured for the services that sign.
#[derive(Debug, Clone, Args)]
pub struct SigningKeyArgs {
    /// The Ed25519 checkpoint signing key (PKCS#8 PEM file).
    #[arg(long, env = "CARELOG_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// The log's origin line: this carelog deployment's name, e.g.
    /// `carelog.example.nhs.uk/audit`.
    #[arg(long, env = "CARELOG_AUDIT_ORIGIN")]
    pub audit_origin: Option<String>,
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Keygen(args) => keygen(&args.out, args.origin.as_deref()),
        AuditCommand::CheckProof(args) => {
            let verified = check_proof(&args)?;
            println!("{verified}");
            Ok(())
        }
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Loads the checkpoint signing key from a PKCS#8 PEM file.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = read(path, "audit signing key")?;
    checkpoint::signing_key_from_pem(&pem)
        .map_err(|e| crate::commands::ConfigError(format!("{}: {e}", path.display())).into())
}

fn keygen(dir: &Path, origin: Option<&str>) -> anyhow::Result<()> {
    if let Some(origin) = origin {
        checkpoint::check_origin(origin)
            .map_err(|e| crate::commands::ConfigError(e.to_string()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = generate_signing_key();
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    let private_pem = signing_key_to_pem(&key)?;
    let public_pem = verifying_key_to_pem(&key.verifying_key())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&private).with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            private.display()
        )
    })?;
    file.write_all(private_pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", private.display()))?;
    std::fs::write(&public, public_pem)
        .with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "wrote {} (private, mode 0600) and {}",
        private.display(),
        public.display()
    );
    if let Some(origin) = origin {
        let vkey = dir.join(VERIFIER_KEY_FILE);
        let text = checkpoint::verifier_key(origin, &key.verifying_key())?;
        std::fs::write(&vkey, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", vkey.display()))?;
        println!("wrote {}: {text}", vkey.display());
    }
    Ok(())
}

/// Why `check-proof` failed; the message names the step.
#[derive(Debug, thiserror::Error)]
#[error("not verified: {0}")]
pub struct NotVerified(String);

fn checkpoint_at(
    path: &Path,
    key: &VerifyingKey,
    origin: Option<&str>,
    which: &str,
) -> anyhow::Result<Checkpoint> {
    let note = read(path, which)?;
    let cp = Checkpoint::verify(&note, key).map_err(|e| NotVerified(format!("{which}: {e}")))?;
    if let Some(origin) = origin
        && cp.origin != origin
    {
        return Err(NotVerified(format!(
            "{which}: origin is {:?}, expected {origin:?}",
            cp.origin
        ))
        .into());
    }
    Ok(cp)
}

/// Verifies the checkpoint(s) and the proof; the one-line message on success.
pub fn check_proof(args: &CheckProofArgs) -> anyhow::Result<String> {
    let key = verifying_key_from_pem(&read(&args.public_key, "public key")?)
        .map_err(|e| NotVerified(format!("public key {}: {e}", args.public_key.display())))?;
    let origin = args.origin.as_deref();
    let cp = checkpoint_at(&args.checkpoint, &key, origin, "checkpoint")?;
    let old = args
        .old_checkpoint
        .as_deref()
        .map(|p| checkpoint_at(p, &key, origin, "old checkpoint"))
        .transpose()?;
    let doc = ProofDocument::from_json(&read(&args.proof, "proof")?)
        .map_err(|e| NotVerified(e.to_string()))?;
    let verified = doc
        .check(&cp, old.as_ref())
        .map_err(|e| NotVerified(e.to_string()))?;
    Ok(format!(
        "verified: {verified} (checkpoint of {} signed {}, size {})",
        cp.origin,
        cp.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cp.size
    ))
}

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
    /// Recomputes every audit log from JetStream, checks every aggregate's
    /// hash chain, compares every entry with the PostgreSQL log and checks
    /// the latest signed checkpoints. Exit 0 when all holds; 1 naming the
    /// first entry of each log that differs (changed, deleted, inserted or
    /// reordered row).
    Verify(VerifyArgs),
    /// Prints the inclusion proof document of an entry against the log's
    /// latest signed checkpoint, and that checkpoint.
    Prove(ProveArgs),
    /// Writes a self-contained HTML report of a patient's audit history:
    /// who accessed the record, the changes made, and whether the audit
    /// log verifies.
    Report(crate::audit_report::ReportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connections: crate::cli::Connections,
    /// The log's public key (PEM): checkpoint signatures are checked with
    /// it. After a key rotation give every key the log was signed with
    /// (`--public-key old.pem --public-key new.pem`): each checkpoint must
    /// be signed by one of them. Without any (and without a signing key)
    /// the stored checkpoints' sizes and roots are compared but their
    /// signatures are not checked.
    #[arg(long)]
    pub public_key: Vec<PathBuf>,
    #[command(flatten)]
    pub signing: SigningKeyArgs,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    #[command(flatten)]
    pub connections: crate::cli::Connections,
    /// The log: demographics, consultations, medications, tasks, sharing,
    /// access or history.
    #[arg(long)]
    pub log: String,
    /// The entry's index in the log (from 0).
    #[arg(long)]
    pub entry: u64,
    /// Writes the signed checkpoint here (otherwise it is printed on
    /// standard error).
    #[arg(long)]
    pub checkpoint_out: Option<PathBuf>,
    /// Writes the proof document here (otherwise it is printed on standard
    /// output).
    #[arg(long)]
    pub proof_out: Option<PathBuf>,
    /// With a signing key, signs a fresh checkpoint first.
    #[command(flatten)]
    pub signing: SigningKeyArgs,
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

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify(args) => verify_command(&args).await,
        AuditCommand::Prove(args) => prove_command(&args).await,
        AuditCommand::Report(args) => crate::audit_report::run(&args).await,
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

/// The configured signing key and origin, if any (both or neither).
pub fn signing_key(args: &SigningKeyArgs) -> anyhow::Result<Option<(SigningKey, String)>> {
    match (&args.audit_signing_key, &args.audit_origin) {
        (None, _) => Ok(None),
        (Some(_), None) => Err(crate::commands::ConfigError(
            "--audit-signing-key needs --audit-origin (CARELOG_AUDIT_ORIGIN)".into(),
        )
        .into()),
        (Some(path), Some(origin)) => {
            checkpoint::check_origin(origin)
                .map_err(|e| crate::commands::ConfigError(e.to_string()))?;
            Ok(Some((load_signing_key(path)?, origin.clone())))
        }
    }
}

/// The event store and the database, as every `audit` command that reads
/// them connects.
pub async fn connect(
    c: &crate::cli::Connections,
) -> anyhow::Result<(sqlx::PgPool, carelog_kernel::store::EventStore)> {
    let (nats, db) = crate::commands::urls(c)?;
    // An operator's command: a wrong address is said at once, not waited on.
    let options = carelog_kernel::store::StoreOptions {
        connect_wait: std::time::Duration::ZERO,
        ..crate::commands::store_options(c)
    };
    let store = crate::stack::event_store(&nats, options).await?;
    let pool = crate::stack::database(&db, 4).await?;
    Ok((pool, store))
}

/// `audit verify` without the command line: the report, or an error naming
/// every finding.
pub async fn verify(
    pool: &sqlx::PgPool,
    store: &carelog_kernel::store::EventStore,
    keys: &[VerifyingKey],
) -> anyhow::Result<carelog_projections::audit_log::VerifyReport> {
    Ok(carelog_projections::audit_log::verify(pool, store, keys).await?)
}

/// The public keys given (`--public-key`, repeatable), each loaded.
pub fn load_public_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<VerifyingKey>> {
    paths.iter().map(|p| load_public_key(p)).collect()
}

/// Loads the log's public key from a SubjectPublicKeyInfo PEM file.
pub fn load_public_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    verifying_key_from_pem(&read(path, "public key")?)
        .map_err(|e| crate::commands::ConfigError(format!("{}: {e}", path.display())).into())
}

async fn verify_command(args: &VerifyArgs) -> anyhow::Result<()> {
    let mut keys = load_public_keys(&args.public_key)?;
    if keys.is_empty()
        && let Some((key, _)) = signing_key(&args.signing)?
    {
        keys.push(key.verifying_key());
    }
    let (pool, store) = connect(&args.connections).await?;
    let started = std::time::Instant::now();
    let report = verify(&pool, &store, &keys).await?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    for log in &report.logs {
        println!(
            "{}: {} entries from JetStream, {} rows in PostgreSQL, root {}, {}",
            log.log,
            log.entries,
            log.rows,
            hex::encode(log.root),
            log.checkpoint_size
                .map_or("no signed checkpoint".to_owned(), |s| format!(
                    "checkpoint of size {s}"
                ))
        );
    }
    println!(
        "audit_events: {} rows compared with their events in JetStream",
        report.audit_events
    );
    if keys.is_empty() {
        println!("checkpoint signatures not checked (no --public-key)");
    }
    println!(
        "{} entries in {elapsed:.2}s ({:.0} entries/s)",
        report.entries(),
        report.entries() as f64 / elapsed
    );
    if report.ok() {
        println!("verified: every log and every audit_events row matches JetStream");
        return Ok(());
    }
    for finding in &report.findings {
        println!("not verified: {finding}");
    }
    let named: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    Err(NotVerified(named.join("; ")).into())
}

async fn prove_command(args: &ProveArgs) -> anyhow::Result<()> {
    use carelog_projections::audit_log;
    let (pool, _store) = connect(&args.connections).await?;
    if let Some((key, origin)) = signing_key(&args.signing)? {
        audit_log::sign_checkpoint(&pool, &args.log, &origin, &key, false).await?;
    }
    let cp = audit_log::latest_checkpoint(&pool, &args.log)
        .await?
        .ok_or_else(|| audit_log::AuditError::NoCheckpoint(args.log.clone()))?;
    if args.entry >= cp.tree_size {
        return Err(crate::commands::ConfigError(format!(
            "entry {} is not in the latest checkpoint of log {} (size {})",
            args.entry, args.log, cp.tree_size
        ))
        .into());
    }
    let proof =
        audit_log::inclusion_proof(&pool, &args.log, args.entry, cp.tree_size, true).await?;
    match &args.checkpoint_out {
        Some(path) => std::fs::write(path, &cp.note)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => eprint!("{}", cp.note),
    }
    match &args.proof_out {
        Some(path) => std::fs::write(path, proof.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{}", proof.to_json()),
    }
    Ok(())
}

/// How often the signer looks whether a log grew.
pub const SIGN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Signs a checkpoint of every log that grew, now and every `every`, until
/// shutdown. Failures are logged and retried at the next tick.
pub async fn run_signer(
    pool: sqlx::PgPool,
    key: SigningKey,
    origin: String,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match carelog_projections::audit_log::sign_all(&pool, &origin, &key, false).await {
            Ok(signed) => {
                for cp in signed {
                    tracing::info!(log = %cp.log, size = cp.tree_size, "signed an audit checkpoint");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot sign audit checkpoints"),
        }
    }
}

/// The origin `carelog up` signs with when none is configured.
pub const DEV_ORIGIN: &str = "localhost/carelog-audit";

/// The configured key, or for `carelog up` a development key kept under
/// `dir` (made on first use) with [`DEV_ORIGIN`].
pub fn signing_key_or_dev(
    args: &SigningKeyArgs,
    dir: &Path,
) -> anyhow::Result<(SigningKey, String)> {
    if let Some(configured) = signing_key(args)? {
        return Ok(configured);
    }
    let origin = args
        .audit_origin
        .clone()
        .unwrap_or_else(|| DEV_ORIGIN.to_owned());
    let private = dir.join(PRIVATE_KEY_FILE);
    if !private.exists() {
        keygen(dir, Some(&origin))?;
    }
    Ok((load_signing_key(&private)?, origin))
}

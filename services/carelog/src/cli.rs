//! The command line. Every setting of `up`, `serve`, `project`, `migrate`
//! and `rebuild` is a flag with an environment twin (but `up
//! --without-projectors`); `dev-token`, `audit` and `bench` take flags, and
//! read the environment only for the settings they share with those (the
//! connections, the data dir, the audit signing key and origin).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "carelog",
    version,
    about = "carelog: an event-sourced clinical record"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Starts everything on one machine: its own nats-server and PostgreSQL
    /// under --data-dir (unless NATS_URL / DATABASE_URL are given), every
    /// service and projector, and a development token issuer.
    Up(UpArgs),
    /// Serves one context's gRPC API (the Kubernetes shape).
    Serve(ServeArgs),
    /// Runs the projectors (the Kubernetes shape).
    Project(ProjectArgs),
    /// Replays a projection from sequence 1 into fresh tables and swaps them in.
    Rebuild(RebuildArgs),
    /// Creates or checks the streams and runs the read-model migrations.
    Migrate(ProjectArgs),
    /// Prints a token signed by the development issuer of `carelog up`.
    DevToken(DevTokenArgs),
    /// Benchmarks commands over gRPC against the raw guarded JetStream ceiling.
    Bench(crate::bench::BenchArgs),
    /// The verifiable audit log's tools (keygen, check-proof).
    Audit(crate::audit_cli::AuditArgs),
    /// Serves the FHIR R4 API (HTTP, JSON) over the gRPC services.
    Gateway(GatewayArgs),
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The HTTP address of the FHIR API (`/fhir/r4`), with `/healthz`
    /// and `/readyz`.
    #[arg(long, env = "CARELOG_GATEWAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The demographics gRPC service (`https://` needs --api-ca).
    #[arg(
        long,
        env = "CARELOG_DEMOGRAPHICS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub demographics_url: String,
    /// The medications gRPC service (allergies; `https://` needs --api-ca).
    #[arg(
        long,
        env = "CARELOG_MEDICATIONS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub medications_url: String,
    /// The consultations gRPC service (the problem list; `https://` needs
    /// --api-ca).
    #[arg(
        long,
        env = "CARELOG_CONSULTATIONS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub consultations_url: String,
    /// The FHIR base URL callers reach the gateway at, for the links in
    /// its answers (e.g. https://fhir.example.nhs.uk/fhir/r4). Required: a
    /// request's Host is the caller's to choose, and behind a TLS ingress
    /// the gateway cannot see the scheme.
    #[arg(long, env = "CARELOG_GATEWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PEM CA certificate(s) the services' TLS certificates must chain to
    /// (for every https:// service URL).
    #[arg(long, env = "CARELOG_GATEWAY_API_CA")]
    pub api_ca: Option<PathBuf>,
    /// PEM client certificate for services that require mutual TLS.
    #[arg(long, env = "CARELOG_GATEWAY_API_CERT", requires = "api_key")]
    pub api_cert: Option<PathBuf>,
    /// PEM private key of --api-cert.
    #[arg(long, env = "CARELOG_GATEWAY_API_KEY", requires = "api_cert")]
    pub api_key: Option<PathBuf>,
    /// The admin port serving Prometheus metrics on `/metrics`.
    #[arg(long, env = "CARELOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct Connections {
    /// NATS server with JetStream (2.14 or newer).
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// PostgreSQL for the read models.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Replicas of every stream (3 in production).
    #[arg(long, env = "CARELOG_STREAM_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Deduplication window of request ids.
    #[arg(long, env = "CARELOG_DUPLICATE_WINDOW", default_value = "10m", value_parser = humantime)]
    pub duplicate_window: Duration,
    /// PostgreSQL pool size.
    #[arg(long, env = "CARELOG_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,
    /// How long to keep trying NATS and PostgreSQL while they do not answer
    /// yet (a pod started before them), before giving up.
    #[arg(long, env = "CARELOG_CONNECT_TIMEOUT", default_value = "60s", value_parser = humantime)]
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct Identity {
    /// JWKS file of the OIDC issuer.
    #[arg(long, env = "CARELOG_JWKS_FILE", conflicts_with = "jwks_url")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL of the OIDC issuer (fetched at start and every --jwks-refresh).
    #[arg(long, env = "CARELOG_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again.
    #[arg(long, env = "CARELOG_JWKS_REFRESH", default_value = "10m", value_parser = humantime)]
    pub jwks_refresh: Duration,
    /// Expected `iss` of tokens.
    #[arg(long, env = "CARELOG_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// Expected `aud` of tokens.
    #[arg(long, env = "CARELOG_OIDC_AUDIENCE", default_value = "carelog")]
    pub audience: String,
    /// How far a token's `exp` and `nbf` may be off this server's clock.
    #[arg(long, env = "CARELOG_OIDC_CLOCK_SKEW", default_value = "60s", value_parser = humantime)]
    pub clock_skew: Duration,
    /// A token naming a key id the JWKS does not hold makes carelog fetch
    /// the JWKS URL again, at most this often.
    #[arg(long, env = "CARELOG_JWKS_REFETCH_INTERVAL", default_value = "30s", value_parser = humantime)]
    pub jwks_refetch_interval: Duration,
}

/// TLS on the gRPC API port (the health and metrics ports stay plaintext).
#[derive(Debug, Clone, Args)]
pub struct Tls {
    /// PEM certificate chain of the API port; with --tls-key, the API speaks
    /// TLS only.
    #[arg(long, env = "CARELOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CARELOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) for mutual TLS: every client must present a
    /// certificate signed by it.
    #[arg(long, env = "CARELOG_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the embedded nats-server and PostgreSQL keep their data.
    #[arg(long, env = "CARELOG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The gRPC API address.
    #[arg(long, env = "CARELOG_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// A plaintext port serving gRPC health only (liveness, readiness).
    #[arg(long, env = "CARELOG_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// The admin port serving Prometheus metrics on `/metrics`.
    #[arg(long, env = "CARELOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Run no projectors (queries then wait for nothing; for benchmarks of
    /// the write path alone).
    #[arg(long)]
    pub without_projectors: bool,
    /// A site's drug catalogue (CSV: dmd_code,name,ingredient_codes; see
    /// docs/drug-catalogue.md). Without it the built-in SAMPLE catalogue is
    /// used, which is not clinical reference data.
    #[arg(long, env = "CARELOG_DRUG_CATALOGUE")]
    pub drug_catalogue: Option<PathBuf>,
    /// A site's access policy (JSON: role codes to carelog permissions; see
    /// docs/access-policy.md). Without it the built-in default is used.
    #[arg(long, env = "CARELOG_ACCESS_POLICY")]
    pub access_policy: Option<PathBuf>,
    /// The organisation (ODS code) whose privacy officer reviews an
    /// emergency access to a patient with no registered practice, such as
    /// a shared-care host's information governance team. Without it, the
    /// organisation that broke glass reviews it (ADR 0022).
    #[arg(long, env = "CARELOG_BREAK_GLASS_REVIEWER", value_parser = ods_code)]
    pub break_glass_reviewer: Option<carelog_kernel::OdsCode>,
    /// The FHIR R4 gateway's HTTP address (`off`: none). Not started when
    /// the API speaks TLS (then run `carelog gateway --public-url ...
    /// --api-ca ...`, with --api-cert and --api-key under mutual TLS).
    #[arg(long, env = "CARELOG_GATEWAY_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_or_off)]
    pub gateway_listen: MaybeListen,
    /// How long to wait for the nats-server and PostgreSQL `up` starts to
    /// take connections: recovering a large data directory after a crash
    /// can take longer than the default.
    #[arg(long, env = "CARELOG_START_TIMEOUT", default_value = "60s", value_parser = humantime)]
    pub start_timeout: Duration,
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub tls: Tls,
    /// Without a key, a development key under the data dir.
    #[command(flatten)]
    pub audit: crate::audit_cli::SigningKeyArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The context whose gRPC service to serve.
    #[arg(value_parser = ["demographics", "consultations", "medications", "tasks", "sharing"])]
    pub context: String,
    #[arg(long, env = "CARELOG_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// A plaintext port serving gRPC health only (liveness, readiness), for
    /// Kubernetes probes when the API port uses mTLS.
    #[arg(long, env = "CARELOG_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// The admin port serving Prometheus metrics on `/metrics`.
    #[arg(long, env = "CARELOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// A site's drug catalogue (CSV: dmd_code,name,ingredient_codes; see
    /// docs/drug-catalogue.md). Without it the built-in SAMPLE catalogue is
    /// used, which is not clinical reference data.
    #[arg(long, env = "CARELOG_DRUG_CATALOGUE")]
    pub drug_catalogue: Option<PathBuf>,
    /// A site's access policy (JSON: role codes to carelog permissions; see
    /// docs/access-policy.md). Without it the built-in default is used.
    #[arg(long, env = "CARELOG_ACCESS_POLICY")]
    pub access_policy: Option<PathBuf>,
    /// The organisation (ODS code) whose privacy officer reviews an
    /// emergency access to a patient with no registered practice, such as
    /// a shared-care host's information governance team. Without it, the
    /// organisation that broke glass reviews it (ADR 0022).
    #[arg(long, env = "CARELOG_BREAK_GLASS_REVIEWER", value_parser = ods_code)]
    pub break_glass_reviewer: Option<carelog_kernel::OdsCode>,
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub identity: Identity,
    #[command(flatten)]
    pub tls: Tls,
}

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    pub connections: Connections,
    /// With a key, audit checkpoints are signed every minute the log grew.
    /// Not used by `migrate`.
    #[command(flatten)]
    pub audit: crate::audit_cli::SigningKeyArgs,
    /// A plaintext port serving gRPC health only (liveness, readiness), for
    /// Kubernetes probes. Not used by `migrate`.
    #[arg(long, env = "CARELOG_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// The admin port serving Prometheus metrics on `/metrics`.
    #[arg(long, env = "CARELOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The projection: patients, consultations, medications, tasks,
    /// sharing, audit_events or audit_log.
    pub projection: String,
    /// The admin port serving Prometheus metrics on `/metrics` (rebuild
    /// progress); none unless asked for. Its environment twin is not the
    /// long-running commands' CARELOG_METRICS_LISTEN, so a rebuild run
    /// beside them (`kubectl exec` into the projectors' pod) never tries to
    /// take the port they hold.
    #[arg(long, env = "CARELOG_REBUILD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub connections: Connections,
}

#[derive(Debug, Args)]
pub struct DevTokenArgs {
    /// Surrogate user id (the token's `sub`).
    #[arg(long)]
    pub user: String,
    /// ODS code of the user's organisation.
    #[arg(long)]
    pub org: String,
    /// Role code of the session.
    #[arg(long)]
    pub role: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// A team of the user's organisation they are a member of (the
    /// token's `teams` claim); repeat for several.
    #[arg(long = "team")]
    pub teams: Vec<String>,
    #[arg(long, default_value = "8h", value_parser = humantime)]
    pub ttl: Duration,
    #[arg(long, env = "CARELOG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// "10m", "30s", "2h", "500ms".
pub fn humantime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 30s, 10m or 2h"))?;
    // A hundred years at most: added to a time, no longer one overflows.
    const MAX: Duration = Duration::from_secs(100 * 366 * 24 * 3600);
    let too_long = || format!("'{text}' is too long a duration (a hundred years at most)");
    let seconds = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or_else(too_long)
    };
    let duration = match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("'{text}' is not a duration such as 30s, 10m or 2h")),
    }?;
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

/// An ODS code given on the command line.
fn ods_code(text: &str) -> Result<carelog_kernel::OdsCode, String> {
    carelog_kernel::OdsCode::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::humantime;
    use std::time::Duration;

    #[test]
    fn a_duration_is_read_in_its_unit_and_one_too_long_is_refused() {
        assert_eq!(humantime("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(humantime("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(humantime("2h"), Ok(Duration::from_secs(7200)));
        assert!(humantime("6000000000000000h").is_err_and(|e| e.contains("too long")));
        assert!(humantime("18446744073709551615s").is_err_and(|e| e.contains("too long")));
        assert!(humantime("ten minutes").is_err());
    }
}

/// An address to listen on, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeListen(pub Option<SocketAddr>);

fn listen_or_off(text: &str) -> Result<MaybeListen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(MaybeListen(None));
    }
    text.parse()
        .map(|a| MaybeListen(Some(a)))
        .map_err(|e| format!("'{text}' is not an address such as 127.0.0.1:8080, nor off: {e}"))
}

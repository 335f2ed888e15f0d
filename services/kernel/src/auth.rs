//! Identity: every RPC carries an OIDC JWT bearer token whose verified claims
//! become the `Actor`. Keys come from a JWKS document (file or URL). For
//! `carelog up` a local development issuer signs tokens with an Ed25519 key
//! kept under the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::actor::{Actor, Teams};
use crate::error::Failure;
use crate::ids::OdsCode;

/// Issuer and audience of the local development issuer.
pub const DEV_ISSUER: &str = "carelog-dev";
pub const DEV_AUDIENCE: &str = "carelog";
const DEV_KEY_ID: &str = "carelog-dev-1";

/// Algorithms accepted; never `none`, never HMAC (no key confusion).
const ALLOWED: [Algorithm; 7] = [
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("cannot read the JWKS at {path}: {source}")]
    ReadJwks {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWKS is not valid JSON Web Key Set: {0}")]
    ParseJwks(#[from] serde_json::Error),
    #[error("the JWKS holds no usable signing key")]
    NoKeys,
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    FetchJwks { url: String, reason: String },
    #[error("development issuer key: {0}")]
    DevKey(String),
}

/// The claims carelog puts in a token it signs (the development issuer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub name: String,
    /// ODS code of the user's organisation for this session.
    pub org: String,
    /// The session's selected role code.
    pub role: String,
    /// The role codes the user holds (national RBAC); when present, the
    /// selected `role` must be one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// Team ids the user is a member of (optional; tasks performed by a
    /// team may be claimed by its members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
}

/// The claims carelog reads from a verified token (`iss`, `aud`, `exp` and
/// `nbf` are checked by the validation; `aud` may be a string or a list).
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    purpose_of_use: Option<String>,
    #[serde(default)]
    teams: Vec<String>,
    exp: u64,
}

/// The part of a token's header read before anything is trusted.
#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

struct Key {
    kid: Option<String>,
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// How far `exp` and `nbf` may be off the server's clock by default.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A token naming a key id the key set does not hold makes carelog fetch
/// the JWKS URL again at most this often (the issuer may have rotated its
/// keys; a stream of made-up key ids must not become a stream of fetches).
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Why a token was refused: said to the caller and logged, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection(String);

impl Rejection {
    fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// Verifies bearer tokens against a key set.
pub struct Authenticator {
    keys: std::sync::RwLock<Arc<Vec<Key>>>,
    issuer: String,
    audience: String,
    leeway: Duration,
    /// Tokens already verified, with their expiry: a session sends the same
    /// token with every call, and a signature check costs more than the
    /// rest of a command.
    verified: std::sync::Mutex<std::collections::HashMap<String, (Actor, Teams, u64)>>,
    /// Wakes the JWKS refresh task for an unknown key id (URL key sets only).
    refetch: std::sync::OnceLock<Refetch>,
}

/// The rate-limited request for an early JWKS fetch.
struct Refetch {
    wake: Arc<tokio::sync::Notify>,
    at_most_every: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Refetch {
    /// Asks for a fetch unless one was asked within `at_most_every`.
    fn request(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.at_most_every) {
            return false;
        }
        *last = Some(now);
        self.wake.notify_one();
        true
    }
}

/// Verified tokens remembered at most (the memory is cleared when full).
const VERIFIED_CAPACITY: usize = 10_000;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "keys",
                &self.keys.read().map(|k| k.len()).unwrap_or_default(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("clock_skew", &self.leeway)
            .finish()
    }
}

impl Authenticator {
    pub fn from_jwks(jwks: &JwkSet, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        Ok(Self {
            keys: std::sync::RwLock::new(Arc::new(usable_keys(jwks)?)),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: DEFAULT_CLOCK_SKEW,
            verified: Default::default(),
            refetch: std::sync::OnceLock::new(),
        })
    }

    /// How far `exp` and `nbf` may be off the server's clock.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.leeway = skew;
        self
    }

    /// Fetches the key set from the issuer's JWKS URL (https in
    /// production).
    pub async fn from_jwks_url(url: &str, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        Self::from_jwks(&fetch_jwks(url).await?, issuer, audience)
    }

    /// Fetches the key set from `url` again every `every`, so the issuer's
    /// key rotation reaches carelog, and early when a token names a key id
    /// the set does not hold (at most once per `at_most_every`; that token
    /// is refused, the caller's retry finds the new key). A failed fetch
    /// keeps the keys in use.
    pub fn refresh_from(self: &Arc<Self>, url: String, every: Duration, at_most_every: Duration) {
        let wake = Arc::new(tokio::sync::Notify::new());
        let refetch = Refetch {
            wake: wake.clone(),
            at_most_every,
            last: std::sync::Mutex::new(None),
        };
        if self.refetch.set(refetch).is_err() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let early = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    _ = wake.notified() => true,
                };
                let Some(auth) = me.upgrade() else { return };
                match fetch_jwks(&url).await.and_then(|jwks| usable_keys(&jwks)) {
                    Ok(keys) => {
                        tracing::info!(keys = keys.len(), early, "JWKS fetched");
                        if let Ok(mut current) = auth.keys.write() {
                            *current = Arc::new(keys);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys in use")
                    }
                }
            }
        });
    }

    pub fn from_jwks_file(path: &Path, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadJwks {
            path: path.to_owned(),
            source,
        })?;
        Self::from_jwks(&serde_json::from_str(&text)?, issuer, audience)
    }

    /// Checks signature, algorithm, `exp`/`nbf` (with leeway), `iss` and
    /// `aud`, and turns the claims into an `Actor`.
    pub fn verify(&self, token: &str) -> Result<Actor, Failure> {
        self.verify_session(token).map(|(actor, _)| actor)
    }

    /// As `verify`, with the teams the token names. A refusal is logged
    /// with its reason (never the token).
    pub fn verify_session(&self, token: &str) -> Result<(Actor, Teams), Failure> {
        let now = now_secs();
        if let Ok(verified) = self.verified.lock()
            && let Some((actor, teams, exp)) = verified.get(token)
            && now < exp + self.leeway.as_secs()
        {
            return Ok((actor.clone(), teams.clone()));
        }
        let (actor, teams, exp) = self.verify_signature(token).map_err(|Rejection(why)| {
            tracing::warn!(reason = %why, "bearer token rejected");
            Failure::unauthenticated(format!("bearer token rejected: {why}"))
        })?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_owned(), (actor.clone(), teams.clone(), exp));
        }
        Ok((actor, teams))
    }

    fn verify_signature(&self, token: &str) -> Result<(Actor, Teams, u64), Rejection> {
        let header = raw_header(token)?;
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| ALLOWED.contains(a))
            .ok_or_else(|| {
                Rejection::new(format!(
                    "algorithm '{}' not allowed",
                    printable(&header.alg)
                ))
            })?;
        let keys = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            .filter(|k| k.algorithm.is_none_or(|a| a == alg))
            .collect();
        if candidates.is_empty() {
            let kid = header.kid.as_deref().map(printable).unwrap_or_default();
            let known = keys.iter().any(|k| k.kid == header.kid);
            if !known && self.refetch.get().is_some_and(Refetch::request) {
                return Err(Rejection::new(format!(
                    "unknown key id '{kid}' (key set refetch requested)"
                )));
            }
            return Err(Rejection::new(if known {
                format!("key '{kid}' is not for algorithm {alg:?}")
            } else {
                format!("unknown key id '{kid}'")
            }));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last = Rejection::new("no key matches the token");
        for key in candidates {
            match jsonwebtoken::decode::<TokenClaims>(token, &key.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    let teams = Teams(data.claims.teams.clone());
                    return actor_from_claims(data.claims)
                        .map(|a| (a, teams, exp))
                        .map_err(Rejection);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = Rejection::new(match e.kind() {
                        ErrorKind::ExpiredSignature => "expired".to_owned(),
                        ErrorKind::ImmatureSignature => "not yet valid (nbf)".to_owned(),
                        ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
                        ErrorKind::InvalidAudience => "wrong audience".to_owned(),
                        ErrorKind::InvalidSignature => "bad signature".to_owned(),
                        ErrorKind::MissingRequiredClaim(claim) => {
                            format!("claim '{}' missing", printable(claim))
                        }
                        ErrorKind::Json(_) | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                            "malformed claims".to_owned()
                        }
                        _ => "invalid token".to_owned(),
                    });
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        // The signature held: the reason is about this token,
                        // not about which key signed it.
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// A tonic interceptor: no token or a bad one is `UNAUTHENTICATED`;
    /// a good one puts the `Actor` in the request's extensions, and then
    /// the access policy decides whether its role may call the RPC (whose
    /// path the server's RPC layer put in the extensions as `RpcPath`).
    pub fn interceptor(
        self: Arc<Self>,
        policy: Arc<crate::policy::Policy>,
    ) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
        move |mut request: tonic::Request<()>| {
            let token = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or_else(|| {
                    tracing::info!(reason = "no bearer token", "bearer token rejected");
                    tonic::Status::from(Failure::unauthenticated(
                        "a bearer token is required (metadata 'authorization: Bearer <JWT>')",
                    ))
                })?;
            let (actor, teams) = self.verify_session(token)?;
            let path = request
                .extensions()
                .get::<crate::policy::RpcPath>()
                .map(|p| p.0.as_str())
                .unwrap_or_default();
            if let Err(refused) = policy.check(&actor, path) {
                if let Some(note) = request.extensions().get::<crate::guard::RoleRefusal>() {
                    note.note(&actor);
                }
                return Err(refused.into());
            }
            request.extensions_mut().insert(actor);
            request.extensions_mut().insert(teams);
            Ok(request)
        }
    }
}

/// The header of a token, read before any check (its `alg` may be
/// anything, `none` included).
fn raw_header(token: &str) -> Result<RawHeader, Rejection> {
    let malformed = || Rejection::new("malformed token");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

/// A value from an unverified token, safe to log: at most 40 printable
/// ASCII characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

/// The signing keys of a key set that carelog accepts (never HMAC).
fn usable_keys(jwks: &JwkSet) -> Result<Vec<Key>, AuthError> {
    let keys: Vec<Key> = jwks
        .keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            if algorithm.is_some_and(|a| !ALLOWED.contains(&a)) {
                return None;
            }
            DecodingKey::from_jwk(jwk).ok().map(|key| Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .filter(|k| !matches!(k.key.family(), jsonwebtoken::AlgorithmFamily::Hmac))
        .collect();
    if keys.is_empty() {
        return Err(AuthError::NoKeys);
    }
    Ok(keys)
}

async fn fetch_jwks(url: &str) -> Result<JwkSet, AuthError> {
    // One crypto provider for the whole process (ring); installing it twice
    // is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fail = |reason: String| AuthError::FetchJwks {
        url: url.to_owned(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let response = response
        .error_for_status()
        .map_err(|e| fail(e.to_string()))?;
    let text = response.text().await.map_err(|e| fail(e.to_string()))?;
    Ok(serde_json::from_str(&text)?)
}

/// A national RBAC role code from a claim: either the bare code (`R8000`)
/// or the job-role triple of a role profile (`S8000:G8000:R8000`), whose
/// last part is the role code.
pub fn role_code(claim: &str) -> &str {
    claim.trim().rsplit(':').next().unwrap_or_default().trim()
}

fn actor_from_claims(claims: TokenClaims) -> Result<Actor, String> {
    if claims.sub.trim().is_empty() {
        return Err("claim 'sub' is empty".into());
    }
    let role = role_code(&claims.role);
    if role.is_empty() {
        return Err("claim 'role' is empty".into());
    }
    if !claims.roles.is_empty() && !claims.roles.iter().any(|r| role_code(r) == role) {
        return Err(format!(
            "the selected role '{}' is not among the user's role codes (claim 'roles')",
            printable(role)
        ));
    }
    let organisation = OdsCode::parse(&claims.org).map_err(|e| format!("claim 'org' {e}"))?;
    Ok(Actor {
        user_id: claims.sub,
        display_name: claims.name,
        role: role.to_owned(),
        organisation,
        purpose_of_use: claims
            .purpose_of_use
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| crate::access_control::DIRECT_CARE.into()),
    })
}

/// The local development issuer of `carelog up`: an Ed25519 key kept in
/// `<dir>/dev-issuer.key` (mode 0600) and its public key set in
/// `<dir>/jwks.json`. Never for production.
pub struct DevIssuer {
    key: SigningKey,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevIssuer")
    }
}

impl DevIssuer {
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let err = |e: std::io::Error| AuthError::DevKey(e.to_string());
        let key_path = dir.join("dev-issuer.key");
        let issuer = if key_path.exists() {
            Self::load(dir)?
        } else {
            std::fs::create_dir_all(dir).map_err(err)?;
            let seed: [u8; 32] = rand::random();
            write_private(&key_path, &URL_SAFE_NO_PAD.encode(seed)).map_err(err)?;
            Self {
                key: SigningKey::from_bytes(&seed),
            }
        };
        let jwks = serde_json::to_string_pretty(&issuer.jwks_json())
            .map_err(|e| AuthError::DevKey(e.to_string()))?;
        std::fs::write(dir.join("jwks.json"), jwks).map_err(err)?;
        Ok(issuer)
    }

    /// A throw-away issuer whose tokens nobody else holds (for parts of
    /// carelog that serve no API).
    pub fn ephemeral() -> Self {
        Self {
            key: SigningKey::from_bytes(&rand::random()),
        }
    }

    pub fn load(dir: &Path) -> Result<Self, AuthError> {
        let path = dir.join("dev-issuer.key");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            AuthError::DevKey(format!(
                "cannot read {}: {e} (start `carelog up` first)",
                path.display()
            ))
        })?;
        let seed = URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| AuthError::DevKey(format!("{} is not a key", path.display())))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn jwks_json(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes()),
                "kid": DEV_KEY_ID,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }

    pub fn authenticator(&self) -> Result<Authenticator, AuthError> {
        let jwks: JwkSet = serde_json::from_value(self.jwks_json())?;
        Authenticator::from_jwks(&jwks, DEV_ISSUER, DEV_AUDIENCE)
    }

    /// Signs a token for a user of an organisation in a role.
    pub fn token(
        &self,
        user: &str,
        name: &str,
        org: &str,
        role: &str,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        self.token_in_teams(user, name, org, role, &[], ttl)
    }

    /// As `token`, naming the user a member of `teams`.
    pub fn token_in_teams(
        &self,
        user: &str,
        name: &str,
        org: &str,
        role: &str,
        teams: &[String],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let now = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            name: name.to_owned(),
            org: org.to_owned(),
            role: role.to_owned(),
            roles: Vec::new(),
            purpose_of_use: None,
            teams: teams.to_vec(),
            iss: DEV_ISSUER.to_owned(),
            aud: DEV_AUDIENCE.to_owned(),
            exp: now + ttl.as_secs(),
            nbf: now.saturating_sub(1),
            iat: now,
        };
        self.sign(&claims)
    }

    /// The claims of a valid token for a user of an organisation in a role
    /// (tests alter them to make bad ones).
    pub fn claims(&self, user: &str, org: &str, role: &str, ttl: Duration) -> Claims {
        let now = now_secs();
        Claims {
            sub: user.to_owned(),
            name: String::new(),
            org: org.to_owned(),
            role: role.to_owned(),
            roles: Vec::new(),
            purpose_of_use: None,
            teams: Vec::new(),
            iss: DEV_ISSUER.to_owned(),
            aud: DEV_AUDIENCE.to_owned(),
            exp: now + ttl.as_secs(),
            nbf: now.saturating_sub(1),
            iat: now,
        }
    }

    /// The raw Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs arbitrary claims (tests use it for expired or foreign tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        self.sign_as(DEV_KEY_ID, claims)
    }

    /// Signs claims naming key id `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Claims) -> Result<String, AuthError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| AuthError::DevKey(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
            .map_err(|e| AuthError::DevKey(e.to_string()))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> DevIssuer {
        DevIssuer {
            key: SigningKey::from_bytes(&[7u8; 32]),
        }
    }

    #[test]
    fn the_teams_claim_is_optional_and_read_when_present() {
        let issuer = issuer();
        let auth = issuer.authenticator().expect("authenticator");
        let plain = issuer
            .token("u-1", "", "A81001", "R8000", Duration::from_secs(60))
            .expect("token");
        assert_eq!(
            auth.verify_session(&plain).expect("valid").1,
            Teams::default()
        );
        let member = issuer
            .token_in_teams(
                "u-2",
                "",
                "A81001",
                "R8000",
                &["pharmacists".to_owned()],
                Duration::from_secs(60),
            )
            .expect("token");
        let (actor, teams) = auth.verify_session(&member).expect("valid");
        assert_eq!(actor.user_id, "u-2");
        assert_eq!(teams, Teams(vec!["pharmacists".into()]));
    }

    #[test]
    fn a_dev_token_becomes_the_actor() {
        let issuer = issuer();
        let auth = issuer.authenticator().expect("authenticator");
        let token = issuer
            .token(
                "u-1",
                "Dr A Jones",
                "A81001",
                "R8000",
                Duration::from_secs(60),
            )
            .expect("token");
        let actor = auth.verify(&token).expect("valid");
        assert_eq!(actor.user_id, "u-1");
        assert_eq!(actor.organisation.as_str(), "A81001");
        assert_eq!(actor.purpose_of_use, "DIRECT_CARE");
    }

    #[tokio::test]
    async fn keys_are_fetched_from_the_issuers_jwks_url() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let issuer = issuer();
        let body = issuer.jwks_json().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        let auth = Authenticator::from_jwks_url(&url, DEV_ISSUER, DEV_AUDIENCE)
            .await
            .expect("fetched");
        let token = issuer
            .token("u-2", "", "A81001", "R8000", Duration::from_secs(60))
            .expect("token");
        assert_eq!(auth.verify(&token).expect("valid").user_id, "u-2");
        let missing =
            Authenticator::from_jwks_url("http://127.0.0.1:1/jwks.json", DEV_ISSUER, DEV_AUDIENCE)
                .await;
        assert!(matches!(missing, Err(AuthError::FetchJwks { .. })));
    }

    #[test]
    fn expired_foreign_and_malformed_tokens_are_refused() {
        let issuer = issuer();
        let auth = issuer.authenticator().expect("authenticator");
        let mut claims = Claims {
            sub: "u".into(),
            name: String::new(),
            org: "A81001".into(),
            role: "R8000".into(),
            roles: vec![],
            purpose_of_use: None,
            teams: vec![],
            iss: DEV_ISSUER.into(),
            aud: DEV_AUDIENCE.into(),
            exp: 1,
            nbf: 0,
            iat: 0,
        };
        let expired = issuer.sign(&claims).expect("token");
        assert!(
            auth.verify(&expired)
                .expect_err("expired")
                .message
                .contains("expired")
        );
        claims.exp = u64::MAX / 2;
        claims.aud = "someone-else".into();
        let foreign = issuer.sign(&claims).expect("token");
        assert!(
            auth.verify(&foreign)
                .expect_err("aud")
                .message
                .contains("audience")
        );
        let other = DevIssuer {
            key: SigningKey::from_bytes(&[9u8; 32]),
        };
        let forged = other
            .token("u", "", "A81001", "R", Duration::from_secs(60))
            .expect("token");
        assert!(auth.verify(&forged).is_err());
        assert!(auth.verify("not-a-jwt").is_err());
    }
    /// A JWT of `header` and `claims` (JSON) with `signature` bytes.
    fn compact(header: &serde_json::Value, claims: &Claims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json")),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn refused(auth: &Authenticator, token: &str) -> String {
        let failure = auth.verify(token).expect_err("refused");
        assert_eq!(failure.code, tonic::Code::Unauthenticated);
        failure.message
    }

    #[test]
    fn exp_and_nbf_are_checked_with_the_configured_clock_skew() {
        let issuer = issuer();
        let mut claims = issuer.claims("u", "A81001", "R8000", Duration::from_secs(60));
        let now = now_secs();
        // Expired 30 s ago: inside the default skew of 60 s, outside a skew of 10 s.
        claims.exp = now - 30;
        let late = issuer.sign(&claims).expect("token");
        assert!(issuer.authenticator().expect("auth").verify(&late).is_ok());
        let strict = issuer
            .authenticator()
            .expect("auth")
            .with_clock_skew(Duration::from_secs(10));
        assert!(refused(&strict, &late).contains("expired"));
        // Valid from 30 s ahead: accepted within 60 s of skew, not within 10 s.
        claims.exp = now + 600;
        claims.nbf = now + 30;
        let early = issuer.sign(&claims).expect("token");
        assert!(issuer.authenticator().expect("auth").verify(&early).is_ok());
        assert!(refused(&strict, &early).contains("not yet valid"));
    }

    #[test]
    fn none_and_hmac_with_the_public_key_are_refused_by_algorithm() {
        let issuer = issuer();
        let auth = issuer.authenticator().expect("auth");
        let claims = issuer.claims("u", "A81001", "R8000", Duration::from_secs(60));
        let none = compact(
            &serde_json::json!({"alg": "none", "typ": "JWT"}),
            &claims,
            b"",
        );
        assert!(refused(&auth, &none).contains("algorithm 'none' not allowed"));
        // HS256 keyed with the public key as the JWKS publishes it (x).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(DEV_KEY_ID.to_owned());
        let secret = URL_SAFE_NO_PAD.encode(issuer.public_key());
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("token");
        assert!(refused(&auth, &forged).contains("algorithm 'HS256' not allowed"));
    }

    #[test]
    fn the_selected_role_must_be_one_of_the_users_role_codes() {
        let issuer = issuer();
        let auth = issuer.authenticator().expect("auth");
        let mut claims = issuer.claims("u", "A81001", "S8000:G8000:R8000", Duration::from_secs(60));
        // A role profile's job-role triple is read as its role code.
        let actor = auth
            .verify(&issuer.sign(&claims).expect("token"))
            .expect("valid");
        assert_eq!(actor.role, "R8000");
        claims.roles = vec!["S8000:G8000:R8000".into(), "R8010".into()];
        claims.sub = "u-2".into();
        assert!(auth.verify(&issuer.sign(&claims).expect("token")).is_ok());
        claims.role = "R0260".into();
        claims.sub = "u-3".into();
        let message = refused(&auth, &issuer.sign(&claims).expect("token"));
        assert!(
            message.contains("not among the user's role codes"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_unknown_key_id_refetches_the_key_set_at_most_once_per_interval() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (old, new) = (issuer(), DevIssuer::ephemeral());
        let mut rotated = new.jwks_json();
        rotated["keys"][0]["kid"] = "carelog-dev-2".into();
        let body = Arc::new(std::sync::Mutex::new(old.jwks_json().to_string()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let (served, counted) = (body.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().expect("body").clone();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        let auth = Arc::new(
            Authenticator::from_jwks_url(&url, DEV_ISSUER, DEV_AUDIENCE)
                .await
                .expect("fetched"),
        );
        auth.refresh_from(url, Duration::from_secs(3600), Duration::from_secs(3600));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // The issuer rotates to a new key; a token signed with it names a
        // key id carelog has not seen: refused, and one fetch is asked for.
        *body.lock().expect("body") = rotated.to_string();
        let claims = new.claims("u", "A81001", "R8000", Duration::from_secs(600));
        let token = new.sign_as("carelog-dev-2", &claims).expect("token");
        assert!(
            refused(&auth, &token)
                .contains("unknown key id 'carelog-dev-2' (key set refetch requested)")
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while auth.verify(&token).is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new key never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        // Made-up key ids within the interval fetch nothing more.
        for n in 0..5 {
            let made_up = new
                .sign_as(&format!("made-up-{n}"), &claims)
                .expect("token");
            let message = refused(&auth, &made_up);
            assert!(
                message.contains("unknown key id") && !message.contains("refetch"),
                "{message}"
            );
        }
        tokio::task::yield_now().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let issuer = issuer();
        let auth = issuer.authenticator().expect("auth");
        let token = issuer
            .token("u", "", "A81001", "R8010", Duration::from_secs(60))
            .expect("token");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
        claims["role"] = "R8000".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(refused(&auth, &parts.join(".")).contains("bad signature"));
    }
}

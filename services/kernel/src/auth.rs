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

/// The claims carelog reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub name: String,
    /// ODS code of the user's organisation for this session.
    pub org: String,
    /// The session's selected role code.
    pub role: String,
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

struct Key {
    kid: Option<String>,
    algorithm: Option<Algorithm>,
    key: DecodingKey,
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
            .finish()
    }
}

impl Authenticator {
    pub fn from_jwks(jwks: &JwkSet, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        Ok(Self {
            keys: std::sync::RwLock::new(Arc::new(usable_keys(jwks)?)),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: Duration::from_secs(60),
            verified: Default::default(),
        })
    }

    /// Fetches the key set from the issuer's JWKS URL (https in
    /// production).
    pub async fn from_jwks_url(url: &str, issuer: &str, audience: &str) -> Result<Self, AuthError> {
        Self::from_jwks(&fetch_jwks(url).await?, issuer, audience)
    }

    /// Fetches the key set from `url` again every `every`, so the issuer's
    /// key rotation reaches carelog; a failed fetch keeps the keys it has.
    pub fn refresh_from(self: &Arc<Self>, url: String, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(auth) = me.upgrade() else { return };
                match fetch_jwks(&url).await.and_then(|jwks| usable_keys(&jwks)) {
                    Ok(keys) => {
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

    /// As `verify`, with the teams the token names.
    pub fn verify_session(&self, token: &str) -> Result<(Actor, Teams), Failure> {
        let now = now_secs();
        if let Ok(verified) = self.verified.lock()
            && let Some((actor, teams, exp)) = verified.get(token)
            && now < exp + self.leeway.as_secs()
        {
            return Ok((actor.clone(), teams.clone()));
        }
        let (actor, teams, exp) = self.verify_signature(token)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_owned(), (actor.clone(), teams.clone(), exp));
        }
        Ok((actor, teams))
    }

    fn verify_signature(&self, token: &str) -> Result<(Actor, Teams, u64), Failure> {
        let bad = |why: &str| Failure::unauthenticated(format!("bearer token rejected: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed token"))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(bad("algorithm not allowed"));
        }
        let keys = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        let candidates = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid);
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last = bad("no key matches the token");
        for key in candidates {
            if key.algorithm.is_some_and(|a| a != header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    let teams = Teams(data.claims.teams.clone());
                    return actor_from_claims(data.claims)
                        .map(|a| (a, teams, exp))
                        .map_err(|e| bad(&e));
                }
                Err(e) => {
                    last = bad(match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired",
                        jsonwebtoken::errors::ErrorKind::ImmatureSignature => "not yet valid",
                        jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong issuer",
                        jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong audience",
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature",
                        _ => "invalid token",
                    });
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

fn actor_from_claims(claims: Claims) -> Result<Actor, String> {
    if claims.sub.trim().is_empty() {
        return Err("claim 'sub' is empty".into());
    }
    if claims.role.trim().is_empty() {
        return Err("claim 'role' is empty".into());
    }
    let organisation = OdsCode::parse(&claims.org).map_err(|e| format!("claim 'org' {e}"))?;
    Ok(Actor {
        user_id: claims.sub,
        display_name: claims.name,
        role: claims.role,
        organisation,
        purpose_of_use: claims
            .purpose_of_use
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "DIRECT_CARE".into()),
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

    /// Signs arbitrary claims (tests use it for expired or foreign tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| AuthError::DevKey(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(DEV_KEY_ID.to_owned());
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
}

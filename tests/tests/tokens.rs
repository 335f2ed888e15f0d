//! Bad bearer tokens against the running stack: expired, not yet valid,
//! wrong issuer, wrong audience, `alg: none`, HMAC keyed with the issuer's
//! public key, an unknown key id and a tampered payload are each refused
//! with UNAUTHENTICATED, and the server logs a line saying why, without the
//! token. (Its own test binary: the log capture must be the process's
//! subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carelog_kernel::auth::{Claims, DevIssuer};
use carelog_proto::demographics::v1 as pb;
use carelog_tests::harness::TestStack;
use tonic::Code;

/// Every log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("carelog_kernel=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    /// The lines written since `from` bytes.
    fn since(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")[from..]).into_owned()
    }

    fn len(&self) -> usize {
        self.0.lock().expect("log").len()
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json(claims: &Claims) -> String {
    b64(serde_json::to_vec(claims).expect("claims"))
}

/// A token signed with HMAC-SHA256 keyed by `secret`.
fn hs256(claims: &Claims, kid: &str, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_token_is_refused_and_the_server_logs_why() {
    // Given carelog with its issuer, and the server's log captured
    let log = Captured::install();
    let stack = TestStack::start().await;
    let issuer = &stack.issuer;
    let now = chrono::Utc::now().timestamp() as u64;
    let valid = || issuer.claims("dr-mallory", "A81001", "R8000", Duration::from_secs(600));
    let good = issuer.sign(&valid()).expect("token");

    let expired = Claims {
        exp: now - 3600,
        nbf: now - 7200,
        ..valid()
    };
    let not_yet = Claims {
        nbf: now + 3600,
        exp: now + 7200,
        ..valid()
    };
    let wrong_issuer = Claims {
        iss: "https://idp.example.org".into(),
        ..valid()
    };
    let wrong_audience = Claims {
        aud: "another-service".into(),
        ..valid()
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        json(&valid())
    );
    // The classic key confusion: HS256 keyed with the public key, both as
    // the JWKS publishes it (x) and as a PEM document.
    let spki = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &issuer.public_key()[..],
    ]
    .concat();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let jwks = issuer.jwks_json();
    let kid = jwks["keys"][0]["kid"].as_str().expect("kid").to_owned();
    let x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
    let stranger = DevIssuer::ephemeral();
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = json(&Claims {
            org: "Y00001".into(),
            ..valid()
        });
        parts.join(".")
    };

    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", issuer.sign(&expired).expect("token"), "expired"),
        (
            "not yet valid",
            issuer.sign(&not_yet).expect("token"),
            "not yet valid",
        ),
        (
            "wrong issuer",
            issuer.sign(&wrong_issuer).expect("token"),
            "wrong issuer",
        ),
        (
            "wrong audience",
            issuer.sign(&wrong_audience).expect("token"),
            "wrong audience",
        ),
        ("alg none", none, "algorithm 'none' not allowed"),
        (
            "HS256 keyed with the JWK's x",
            hs256(&valid(), &kid, x.as_bytes()),
            "algorithm 'HS256' not allowed",
        ),
        (
            "HS256 keyed with the public key PEM",
            hs256(&valid(), &kid, pem.as_bytes()),
            "algorithm 'HS256' not allowed",
        ),
        (
            "unknown key id",
            stranger.sign_as("rotated-away", &valid()).expect("token"),
            "unknown key id 'rotated-away'",
        ),
        (
            "another key under our key id",
            stranger.sign(&valid()).expect("token"),
            "bad signature",
        ),
        ("tampered payload", tampered, "bad signature"),
        ("not a JWT", "not-a-jwt".into(), "malformed token"),
    ];

    for (case, token, why) in cases {
        // When a caller presents the token
        let from = log.len();
        let mut request = tonic::Request::new(pb::SearchPatientsRequest {
            nhs_number: carelog_tests::harness::test_nhs_number(),
            ..Default::default()
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata"),
        );
        let status = stack
            .client()
            .search_patients(request)
            .await
            .expect_err(case);

        // Then it is refused as unauthenticated, saying why
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        assert!(
            status.message().contains(why),
            "{case}: {}",
            status.message()
        );
        // and the server logged the refusal with the reason, not the token
        let lines = log.since(from);
        let line = lines
            .lines()
            .find(|l| l.contains("bearer token rejected"))
            .unwrap_or_else(|| panic!("{case}: no log line in {lines:?}"));
        assert!(line.contains(why), "{case}: {line}");
        assert!(line.contains("WARN"), "{case}: {line}");
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            !line.contains(&token) && (signature.is_empty() || !line.contains(signature)),
            "{case}: the log line holds the token: {line}"
        );
    }

    // And the good token still reads
    let mut request = tonic::Request::new(pb::SearchPatientsRequest {
        nhs_number: carelog_tests::harness::test_nhs_number(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {good}").parse().expect("metadata"),
    );
    stack
        .client()
        .search_patients(request)
        .await
        .expect("a valid token is accepted");
    stack.stop().await;
}

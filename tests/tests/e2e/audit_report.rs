//! `carelog audit report`: after a scenario, the HTML report names who
//! accessed the record and from which organisation, the changes made and
//! why, escapes what people typed, and says whether the audit log verifies.

use carelog_kernel::merkle::checkpoint::{generate_signing_key, verifying_key_to_pem};
use carelog_projections::audit_log;
use carelog_proto::demographics::v1 as pb;
use carelog_tests::audit::caught_up;
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TempDir, TestStack, jane_smith};

const HOSTILE: &str = "<script>alert('x')</script>";

async fn carelog(args: &[&str]) -> anyhow::Result<()> {
    let cli = <carelog::cli::Cli as clap::Parser>::try_parse_from(
        std::iter::once("carelog").chain(args.iter().copied()),
    )?;
    carelog::commands::run(cli.command).await
}

#[tokio::test]
async fn the_report_names_who_looked_and_what_changed_and_whether_the_log_verifies() {
    // Given a patient whose family name is hostile markup, registered by
    // dr-jones, read by dr-patel and by dr-khan of another organisation,
    // and whose address dr-jones then corrected, giving a reason
    let stack = TestStack::start().await;
    let mut details = jane_smith();
    details.name = Some(pb::HumanName {
        family: HOSTILE.into(),
        given: vec!["Jane".into()],
        prefix: String::new(),
    });
    let nhs_number = details.nhs_number.clone();
    let jane = stack.register(details).await;
    let mut client = stack.client();
    let get = |user: &str, org: &str| {
        stack.req_in_role(
            user,
            org,
            "R8000",
            pb::GetPatientRequest {
                patient_id: jane.patient_id.clone(),
                min_sequence: jane.stream_sequence,
            },
        )
    };
    client
        .get_patient(get("dr-patel", "A81001"))
        .await
        .expect("dr-patel reads");
    // Answered or denied by the access policy, the attempt is recorded.
    let _answered_or_denied = client.get_patient(get("dr-khan", "B82002")).await;
    let mut moved = jane_smith();
    moved.addresses[0].postcode = "LS2 7EE".into();
    client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: jane.patient_id.clone(),
            details: Some(moved),
            update_mask: mask(&["addresses"]),
            reason: "Patient moved house".into(),
            ..Default::default()
        }))
        .await
        .expect("update");
    caught_up(&stack, carelog_projections::audit::NAME).await;
    caught_up(&stack, audit_log::NAME).await;
    let key = generate_signing_key();
    audit_log::sign_all(&stack.pool, "test.example/audit", &key, false)
        .await
        .expect("sign");
    let dir = TempDir::new();
    let public = dir.0.join("public.pem");
    std::fs::write(
        &public,
        verifying_key_to_pem(&key.verifying_key()).expect("pem"),
    )
    .expect("write key");
    let out = dir.0.join("report.html");
    let (nats, db) = (
        stack.servers.nats.url.clone(),
        stack.servers.database_url.clone(),
    );
    let report = |out: &std::path::Path, extra: &[&str]| {
        let args: Vec<String> = [
            "audit",
            "report",
            "--patient",
            &jane.patient_id,
            "--nats-url",
            &nats,
            "--database-url",
            &db,
            "--public-key",
            &public.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            carelog(&args).await
        }
    };

    // When the report is written for the whole record
    report(&out, &[]).await.expect("report");
    let html = std::fs::read_to_string(&out).expect("read report");

    // Then it names the patient, escaping the hostile name
    assert!(html.starts_with("<!DOCTYPE html>"));
    let lower = html.to_lowercase();
    assert!(!lower.contains(HOSTILE), "unescaped markup in the report");
    assert!(!lower.contains("<script"), "a script element in the report");
    assert!(lower.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains(&nhs_number));
    assert!(html.contains(&jane.patient_id));
    // Who accessed it, from which organisation
    assert!(html.contains("Dr dr-patel (dr-patel)"));
    assert!(html.contains("Dr dr-khan (dr-khan)"));
    assert!(html.contains("B82002"));
    assert!(html.contains("A81001"));
    assert!(html.contains("Get patient"));
    // The changes, who made them and why
    assert!(html.contains("Patient registered"));
    assert!(html.contains("Patient moved house"));
    assert!(html.contains("Dr dr-jones (dr-jones)"));
    // And the verification status, with the signed checkpoints
    assert!(html.contains("The audit log verifies."), "{html}");
    assert!(html.contains("test.example/audit/access"));
    assert!(html.contains("test.example/audit/history"));
    // Self-contained: no external assets
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<link") && !html.contains("src="));

    // When the report covers a period after everything happened
    let later = dir.0.join("later.html");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    report(&later, &["--from", &tomorrow])
        .await
        .expect("report");
    let html = std::fs::read_to_string(&later).expect("read report");
    // Then nobody looked and nothing changed in it
    assert!(html.contains("Nobody looked at the record in this period."));
    assert!(html.contains("No changes were made in this period."));
    assert!(!html.contains("dr-patel"));

    // When an access row of the audit log is altered in PostgreSQL
    sqlx::query(
        "UPDATE audit_log SET entry = entry || '\\x00'::bytea \
         WHERE log = 'access' AND stream_sequence = (SELECT min(stream_sequence) FROM audit_log WHERE log = 'access')",
    )
    .execute(&stack.pool)
    .await
    .expect("tamper");
    report(&out, &[]).await.expect("report");
    let html = std::fs::read_to_string(&out).expect("read report");
    // Then the report says the log does not verify, and where
    assert!(html.contains("The audit log does NOT verify."), "{html}");
    assert!(html.contains("log access: entry 0: changed row"), "{html}");
    stack.stop().await;
}

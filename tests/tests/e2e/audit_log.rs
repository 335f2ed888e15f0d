//! The verifiable audit log: proofs from the PostgreSQL log verify with the
//! kernel's verifier and the public key alone; `audit verify` passes on an
//! untouched log and names the first entry of a tampered one, classified.

use std::time::Duration;

use carelog_kernel::merkle::checkpoint::{Checkpoint, VerifyingKey, generate_signing_key};
use carelog_kernel::merkle::proof::ProofDocument;
use carelog_projections::audit_log::{self, Finding, Tamper};
use carelog_proto::audit::v1 as apb;
use carelog_proto::audit::v1::audit_service_client::AuditServiceClient;
use carelog_proto::demographics::v1 as pb;
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};

const ORIGIN: &str = "test.example/audit";
const LOG: &str = "demographics";

async fn activity(stack: &TestStack, n: usize) {
    let mut client = stack.client();
    for i in 0..n {
        let p = stack
            .register(pb::PatientDetails {
                nhs_number: test_nhs_number(),
                ..jane_smith()
            })
            .await;
        let mut moved = jane_smith();
        moved.addresses[0].postcode = format!("LS{} 1AB", 1 + i % 9);
        client
            .update_demographics(stack.req(pb::UpdateDemographicsRequest {
                patient_id: p.patient_id.clone(),
                details: Some(moved),
                update_mask: mask(&["addresses"]),
                ..Default::default()
            }))
            .await
            .expect("update");
    }
    let last = stack.last_sequence_of("demographics").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(
        carelog_projections::checkpoint::wait_for(
            &stack.pool,
            audit_log::NAME,
            "CARELOG_DEMOGRAPHICS",
            last,
            deadline
        )
        .await
        .expect("checkpoint"),
        "the audit log did not reach {last}"
    );
}

/// What `audit verify` reports. Read two messages and rows at a time, the
/// stream and the tables give the same findings as read a page of a
/// thousand at a time: the pages' edges hide nothing.
async fn verify(stack: &TestStack, keys: &[VerifyingKey]) -> audit_log::VerifyReport {
    let report = audit_log::verify(&stack.pool, &stack.store, keys)
        .await
        .expect("verify runs");
    let paged = audit_log::verify_in_pages(&stack.pool, &stack.store, keys, 2)
        .await
        .expect("verify runs two at a time");
    assert_eq!(paged.findings, report.findings, "read two at a time");
    report
}

async fn first_entry_finding(stack: &TestStack) -> Option<(u64, Tamper)> {
    let report = verify(stack, &[]).await;
    report.findings.iter().find_map(|f| match f {
        Finding::Entry {
            log, index, kind, ..
        } if log == LOG => Some((*index, *kind)),
        _ => None,
    })
}

/// `carelog audit verify` fails, naming `finding`.
async fn cli_names(stack: &TestStack, finding: &str) {
    let (nats, db) = (
        stack.servers.nats.url.clone(),
        stack.servers.database_url.clone(),
    );
    let failed = carelog(&[
        "audit",
        "verify",
        "--nats-url",
        &nats,
        "--database-url",
        &db,
    ])
    .await
    .expect_err("a tampered log does not verify");
    assert!(failed.to_string().contains(finding), "{failed:#}");
}

async fn exec(stack: &TestStack, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&stack.pool)
        .await
        .expect(&sql);
}

#[tokio::test]
async fn proofs_from_the_log_verify_and_tampering_is_named_and_classified() {
    let stack = TestStack::start().await;
    activity(&stack, 4).await;
    let key = generate_signing_key();
    let public = key.verifying_key();

    // One entry per commit: 4 registrations and 4 updates.
    let rows = audit_log::rows(&stack.pool, LOG).await.expect("rows");
    assert_eq!(rows.len(), 8);

    // An inclusion proof against a signed checkpoint.
    let old = audit_log::sign_checkpoint(&stack.pool, LOG, ORIGIN, &key, true)
        .await
        .expect("sign")
        .expect("signed when forced");
    assert_eq!(old.tree_size, 8);
    assert_eq!(old.origin, "test.example/audit/demographics");
    let old_cp = Checkpoint::verify(&old.note, &public).expect("signature");
    for index in [0, 5, 7] {
        let proof = audit_log::inclusion_proof(&stack.pool, LOG, index, old.tree_size, true)
            .await
            .expect("proof");
        let doc = ProofDocument::from_json(&proof.to_json()).expect("round trip");
        doc.check(&old_cp, None).expect("inclusion verifies");
    }
    // The same over gRPC: AuditService's proof verifies with the kernel
    // verifier against the checkpoint it returns.
    let mut audit = AuditServiceClient::new(stack.channel.clone());
    let latest = audit
        .get_latest_checkpoint(stack.req(apb::GetLatestCheckpointRequest { log: LOG.into() }))
        .await
        .expect("latest checkpoint")
        .into_inner();
    assert_eq!(
        (latest.tree_size, latest.note.as_str()),
        (8, old.note.as_str())
    );
    let served = audit
        .get_inclusion_proof(stack.req(apb::GetInclusionProofRequest {
            log: LOG.into(),
            leaf_index: 6,
            tree_size: 0,
        }))
        .await
        .expect("inclusion proof")
        .into_inner();
    let served_cp = Checkpoint::verify(&served.checkpoint.expect("checkpoint").note, &public)
        .expect("signature");
    let verified = ProofDocument::from_json(&served.document)
        .expect("document")
        .check(&served_cp, None)
        .expect("verifies");
    assert!(verified.to_string().contains('6'), "{verified}");
    // Over the API a proof carries the leaf hash, not the entry (a commit
    // holds patient data).
    assert!(
        !served.document.contains("\"entry\""),
        "{}",
        served.document
    );
    let unknown = audit
        .get_inclusion_proof(stack.req(apb::GetInclusionProofRequest {
            log: "nonsense".into(),
            leaf_index: 0,
            tree_size: 1,
        }))
        .await
        .expect_err("unknown log");
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    let unsigned = audit
        .sign_checkpoint(stack.req(apb::SignCheckpointRequest { log: LOG.into() }))
        .await
        .expect_err("no key in the test stack");
    assert_eq!(unsigned.code(), tonic::Code::FailedPrecondition);

    // Nothing new: nothing signed unless forced.
    assert!(
        audit_log::sign_checkpoint(&stack.pool, LOG, ORIGIN, &key, false)
            .await
            .expect("sign")
            .is_none()
    );

    // More activity: a consistency proof between the two checkpoints.
    activity(&stack, 2).await;
    let new = audit_log::sign_checkpoint(&stack.pool, LOG, ORIGIN, &key, false)
        .await
        .expect("sign")
        .expect("the log grew");
    assert_eq!(new.tree_size, 12);
    let new_cp = Checkpoint::verify(&new.note, &public).expect("signature");
    let consistency = audit_log::consistency_proof(&stack.pool, LOG, 8, 12)
        .await
        .expect("proof");
    consistency
        .check(&new_cp, Some(&old_cp))
        .expect("consistency verifies");
    let served = audit
        .get_consistency_proof(stack.req(apb::GetConsistencyProofRequest {
            log: LOG.into(),
            first_size: 8,
            second_size: 0,
        }))
        .await
        .expect("consistency proof")
        .into_inner();
    assert_eq!(served.old_checkpoint.expect("old").note, old.note);
    assert_eq!(served.checkpoint.expect("new").note, new.note);
    ProofDocument::from_json(&served.document)
        .expect("document")
        .check(&new_cp, Some(&old_cp))
        .expect("consistency over gRPC verifies");
    let latest = audit_log::latest_checkpoint(&stack.pool, LOG)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest, new);

    // Untouched: everything verifies, signatures included.
    let report = verify(&stack, std::slice::from_ref(&public)).await;
    assert!(report.ok(), "{:?}", report.findings);
    let demographics = report.logs.iter().find(|l| l.log == LOG).expect("log");
    assert_eq!((demographics.entries, demographics.rows), (12, 12));
    assert_eq!(demographics.checkpoint_size, Some(12));
    assert_eq!(demographics.root, new.root_hash);

    let seq = |i: usize| rows[i].stream_sequence as i64;

    // A changed row.
    exec(&stack, format!("UPDATE audit_log SET entry = entry || '\\x00'::bytea WHERE log = 'demographics' AND stream_sequence = {}", seq(3)))
    .await;
    assert_eq!(
        first_entry_finding(&stack).await,
        Some((3, Tamper::Changed))
    );
    cli_names(&stack, "log demographics: entry 3: changed row").await;
    sqlx::query(
        "UPDATE audit_log SET entry = $1 WHERE log = 'demographics' AND stream_sequence = $2",
    )
    .bind(&rows[3].entry)
    .bind(seq(3))
    .execute(&stack.pool)
    .await
    .expect("restore");
    assert_eq!(first_entry_finding(&stack).await, None);
    let (nats, db) = (
        stack.servers.nats.url.clone(),
        stack.servers.database_url.clone(),
    );
    carelog(&[
        "audit",
        "verify",
        "--nats-url",
        &nats,
        "--database-url",
        &db,
    ])
    .await
    .expect("restored, the log verifies again (exit 0)");

    // A deleted row.
    exec(&stack, format!("CREATE TABLE deleted_rows AS SELECT * FROM audit_log WHERE log = 'demographics' AND stream_sequence = {}", seq(2)))
    .await;
    exec(
        &stack,
        format!(
            "DELETE FROM audit_log WHERE log = 'demographics' AND stream_sequence = {}",
            seq(2)
        ),
    )
    .await;
    assert_eq!(
        first_entry_finding(&stack).await,
        Some((2, Tamper::Deleted))
    );
    cli_names(&stack, "log demographics: entry 2: deleted row").await;
    exec(
        &stack,
        format!(
            "INSERT INTO audit_log SELECT * FROM deleted_rows WHERE stream_sequence = {}",
            seq(2)
        ),
    )
    .await;
    assert_eq!(first_entry_finding(&stack).await, None);

    // An inserted row, before entry 5 (the later rows moved along to make room).
    exec(&stack, format!("UPDATE audit_log SET stream_sequence = stream_sequence + 1000000 WHERE log = 'demographics' AND stream_sequence >= {}", seq(5)))
    .await;
    exec(&stack, format!("INSERT INTO audit_log (log, stream_sequence, subject, aggregate_id, aggregate_version, recorded_at, entry, leaf_hash) \
         SELECT log, {}, subject, aggregate_id, aggregate_version + 1, recorded_at, 'forged'::bytea, sha256('\\x00'::bytea || 'forged'::bytea) \
         FROM audit_log WHERE log = 'demographics' ORDER BY stream_sequence LIMIT 1", seq(5)))
    .await;
    assert_eq!(
        first_entry_finding(&stack).await,
        Some((5, Tamper::Inserted))
    );
    cli_names(&stack, "log demographics: entry 5: inserted row").await;
    exec(
        &stack,
        format!(
            "DELETE FROM audit_log WHERE log = 'demographics' AND stream_sequence = {}",
            seq(5)
        ),
    )
    .await;
    exec(&stack, format!("UPDATE audit_log SET stream_sequence = stream_sequence - 1000000 WHERE log = 'demographics' AND stream_sequence >= {}", 1_000_000))
    .await;
    assert_eq!(first_entry_finding(&stack).await, None);

    // A row forged below the stream's first sequence.
    exec(&stack, "INSERT INTO audit_log (log, stream_sequence, subject, aggregate_id, aggregate_version, recorded_at, entry, leaf_hash) \
         SELECT log, 0, subject, aggregate_id, aggregate_version, recorded_at, 'forged'::bytea, sha256('\\x00'::bytea || 'forged'::bytea) \
         FROM audit_log WHERE log = 'demographics' ORDER BY stream_sequence LIMIT 1".into())
    .await;
    assert_eq!(
        first_entry_finding(&stack).await,
        Some((0, Tamper::Inserted))
    );
    exec(
        &stack,
        "DELETE FROM audit_log WHERE log = 'demographics' AND stream_sequence = 0".into(),
    )
    .await;
    assert_eq!(first_entry_finding(&stack).await, None);

    // Two rows swapped (their positions in the log exchanged).
    let swap = |a: i64, b: i64| {
        format!(
            "UPDATE audit_log SET stream_sequence = CASE stream_sequence WHEN {a} THEN {b} ELSE {a} END \
             WHERE log = 'demographics' AND stream_sequence IN ({a}, {b})"
        )
    };
    // Through a free sequence, as the primary key is checked row by row.
    exec(&stack, swap(seq(6), -1)).await;
    exec(&stack, swap(seq(7), seq(6))).await;
    exec(&stack, swap(-1, seq(7))).await;
    assert_eq!(
        first_entry_finding(&stack).await,
        Some((6, Tamper::Reordered))
    );
    cli_names(&stack, "log demographics: entry 6: reordered row").await;
    // The tampered PostgreSQL log no longer has the signed root, and a proof
    // built from it fails against the signed checkpoint.
    let tampered = audit_log::tree(&stack.pool, LOG).await.expect("tree");
    assert_ne!(tampered.root_at(12).expect("root"), new.root_hash);
    let proof = audit_log::inclusion_proof(&stack.pool, LOG, 6, 12, true)
        .await
        .expect("proof");
    assert!(proof.check(&new_cp, None).is_err());

    stack.stop().await;
}

async fn carelog(args: &[&str]) -> anyhow::Result<()> {
    let cli = <carelog::cli::Cli as clap::Parser>::try_parse_from(
        std::iter::once("carelog").chain(args.iter().copied()),
    )?;
    carelog::commands::run(cli.command).await
}

#[tokio::test]
async fn audit_prove_output_checks_and_audit_verify_fails_on_a_tampered_log() {
    let stack = TestStack::start().await;
    activity(&stack, 2).await;
    let dir = carelog_tests::harness::TempDir::new();
    let path = |name: &str| dir.0.join(name).to_string_lossy().into_owned();
    let (nats, db) = (
        stack.servers.nats.url.clone(),
        stack.servers.database_url.clone(),
    );
    let connections = ["--nats-url", &nats, "--database-url", &db];
    carelog(&["audit", "keygen", "--out", &path("keys")])
        .await
        .expect("keygen");
    let (key, public) = (
        path("keys/audit-signing-key.pem"),
        path("keys/audit-public-key.pem"),
    );
    let signing = ["--audit-signing-key", &key, "--audit-origin", ORIGIN];
    let (cp_file, proof_file) = (path("cp.txt"), path("proof.json"));

    let prove = [
        &["audit", "prove", "--log", LOG, "--entry", "2"][..],
        &connections,
        &signing,
        &["--checkpoint-out", &cp_file, "--proof-out", &proof_file],
    ]
    .concat();
    carelog(&prove).await.expect("prove");
    let check = [
        "--public-key",
        &public,
        "--checkpoint",
        &cp_file,
        "--proof",
        &proof_file,
        "--origin",
        "test.example/audit/demographics",
    ];
    carelog(&[&["audit", "check-proof"][..], &check].concat())
        .await
        .expect("the proof checks");

    let verify = [
        &["audit", "verify", "--public-key", &public][..],
        &connections,
    ]
    .concat();
    carelog(&verify).await.expect("an untouched log verifies");

    // A changed row: verify fails naming it, and a proof of it built from
    // the tampered log does not check against the signed checkpoint.
    let rows = audit_log::rows(&stack.pool, LOG).await.expect("rows");
    exec(
        &stack,
        format!(
            "UPDATE audit_log SET entry = entry || '\\x00'::bytea, leaf_hash = sha256('\\x00'::bytea || entry || '\\x00'::bytea) \
             WHERE log = 'demographics' AND stream_sequence = {}",
            rows[1].stream_sequence
        ),
    )
    .await;
    let failed = carelog(&verify).await.expect_err("a tampered log fails");
    assert!(failed.to_string().starts_with("not verified"), "{failed:#}");
    assert_eq!(
        first_entry_finding(&stack).await,
        Some((1, Tamper::Changed))
    );
    let prove_tampered = [
        &["audit", "prove", "--log", LOG, "--entry", "1"][..],
        &connections,
        &signing,
        &["--checkpoint-out", &cp_file, "--proof-out", &proof_file],
    ]
    .concat();
    carelog(&prove_tampered).await.expect("prove");
    let stale = carelog(&[&["audit", "check-proof"][..], &check].concat()).await;
    assert!(stale.is_err(), "a proof from a tampered log must not check");
    stack.stop().await;
}

#[tokio::test]
async fn a_rebuilt_audit_log_has_the_same_entries_and_its_checkpoints_still_hold() {
    let stack = TestStack::start().await;
    activity(&stack, 3).await;
    let key = generate_signing_key();
    let signed = audit_log::sign_all(&stack.pool, ORIGIN, &key, false)
        .await
        .expect("sign");
    // Only the log with entries grew, then the history naming its checkpoint.
    let logs: Vec<_> = signed.iter().map(|c| c.log.as_str()).collect();
    assert_eq!(logs, ["demographics", "history"]);
    let before = audit_log::rows(&stack.pool, LOG).await.expect("rows");
    stack.rebuild(audit_log::NAME).await;
    assert_eq!(
        audit_log::rows(&stack.pool, LOG).await.expect("rows"),
        before
    );
    let report = verify(&stack, &[key.verifying_key()]).await;
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(
        audit_log::latest_checkpoint(&stack.pool, LOG)
            .await
            .expect("latest"),
        Some(signed[0].clone())
    );
    stack.stop().await;
}

#[tokio::test]
async fn reads_are_entries_of_the_access_log_and_one_history_signs_every_log() {
    // Given a registered patient whose record was read three times
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut client = stack.client();
    for user in ["dr-patel", "dr-khan", "dr-patel"] {
        client
            .get_patient(stack.req_as(
                user,
                pb::GetPatientRequest {
                    patient_id: jane.patient_id.clone(),
                    min_sequence: jane.stream_sequence,
                },
            ))
            .await
            .expect("read");
    }
    carelog_tests::audit::caught_up(&stack, audit_log::NAME).await;

    // Then each read is an entry of the access log: the access message's
    // bytes as stored, holding the RecordAccessed
    let rows = audit_log::rows(&stack.pool, "access").await.expect("rows");
    assert_eq!(rows.len(), 3);
    let readers: Vec<_> = rows
        .iter()
        .map(|r| {
            let [event] = <[_; 1]>::try_from(carelog_kernel::access::decode(&r.entry))
                .expect("one access event per read");
            assert_eq!(event.patient_id, jane.patient_id);
            event.actor.expect("actor").user_id
        })
        .collect();
    assert_eq!(readers, ["dr-patel", "dr-khan", "dr-patel"]);

    // When every log is signed
    let key = generate_signing_key();
    let public = key.verifying_key();
    let signed = audit_log::sign_all(&stack.pool, ORIGIN, &key, false)
        .await
        .expect("sign");
    let logs: Vec<_> = signed
        .iter()
        .map(|c| (c.log.as_str(), c.tree_size))
        .collect();
    // Then the logs that grew are signed, and the history names their two
    // checkpoints
    assert_eq!(logs, [("demographics", 1), ("access", 3), ("history", 2)]);
    let access_cp = Checkpoint::verify(&signed[1].note, &public).expect("signature");
    assert_eq!(access_cp.origin, "test.example/audit/access");
    let history_cp = Checkpoint::verify(&signed[2].note, &public).expect("signature");
    assert_eq!(history_cp.origin, "test.example/audit/history");

    // And a read's entry is proved in the access log, and the access log's
    // checkpoint in the history, with the public key alone
    let proof = audit_log::inclusion_proof(&stack.pool, "access", 1, 3, true)
        .await
        .expect("proof");
    ProofDocument::from_json(&proof.to_json())
        .expect("document")
        .check(&access_cp, None)
        .expect("the read is in the access log");
    let mut audit = AuditServiceClient::new(stack.channel.clone());
    let served = audit
        .get_inclusion_proof(stack.req(apb::GetInclusionProofRequest {
            log: "history".into(),
            leaf_index: 1,
            tree_size: 0,
        }))
        .await
        .expect("history proof")
        .into_inner();
    let document = ProofDocument::from_json(&served.document).expect("document");
    document
        .check(&history_cp, None)
        .expect("the access checkpoint is in the history");
    // A history entry is a signed checkpoint (no patient data): given whole.
    let entry = serde_json::from_str::<serde_json::Value>(&served.document).expect("json")["entry"]
        .as_str()
        .map(str::to_owned)
        .expect("the entry");
    use base64::Engine as _;
    let entry = base64::engine::general_purpose::STANDARD
        .decode(entry)
        .expect("base64");
    assert_eq!(entry, signed[1].note.as_bytes());

    // And everything verifies, signatures included
    let report = verify(&stack, std::slice::from_ref(&public)).await;
    assert!(report.ok(), "{:?}", report.findings);
    let access = report.logs.iter().find(|l| l.log == "access").expect("log");
    assert_eq!((access.entries, access.rows), (3, 3));
    assert_eq!(access.root, access_cp.root);

    // When an access row is deleted from PostgreSQL
    exec(
        &stack,
        format!(
            "CREATE TABLE deleted_access AS SELECT * FROM audit_log WHERE log = 'access' AND stream_sequence = {}",
            rows[1].stream_sequence
        ),
    )
    .await;
    exec(
        &stack,
        format!(
            "DELETE FROM audit_log WHERE log = 'access' AND stream_sequence = {}",
            rows[1].stream_sequence
        ),
    )
    .await;
    // Then verify names it
    let report = verify(&stack, std::slice::from_ref(&public)).await;
    assert!(
        report.findings.contains(&Finding::Entry {
            log: "access".into(),
            index: 1,
            kind: Tamper::Deleted,
            expected_sequence: Some(rows[1].stream_sequence),
        }),
        "{:?}",
        report.findings
    );
    exec(
        &stack,
        "INSERT INTO audit_log SELECT * FROM deleted_access".into(),
    )
    .await;

    // When a signed checkpoint is removed after the history named it
    exec(
        &stack,
        "DELETE FROM audit_checkpoints WHERE log = 'demographics'".into(),
    )
    .await;
    // Then the history's signed checkpoint no longer holds
    let report = verify(&stack, std::slice::from_ref(&public)).await;
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert!(
        matches!(&report.findings[0], Finding::Checkpoint { log, .. } if log == "history"),
        "{:?}",
        report.findings
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_sharing_agreement_is_an_entry_of_the_sharing_log_and_verified_with_the_rest() {
    // Given a practice's privacy officer agreeing to share with a hospital
    // (an agreement decides who may read a record: its history must be as
    // tamper-evident as the records')
    let stack = TestStack::start().await;
    let agreement = crate::shared_care::share(
        &stack,
        "A81001",
        carelog_proto::sharing::v1::party::Party::OrganisationOds("A81001".into()),
        "RR801",
    )
    .await;
    carelog_tests::audit::caught_up(&stack, audit_log::NAME).await;

    // Then the agreement's commit is the entry of the sharing log
    let rows = audit_log::rows(&stack.pool, "sharing").await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].stream_sequence, agreement.stream_sequence);
    // and `audit verify` recomputes that log from JetStream and finds it whole
    let report = verify(&stack, &[]).await;
    assert!(report.ok(), "{:?}", report.findings);
    let sharing = report
        .logs
        .iter()
        .find(|l| l.log == "sharing")
        .expect("the sharing log is verified");
    assert_eq!((sharing.entries, sharing.rows), (1, 1));

    // And when its row is altered in PostgreSQL, verify names the sharing log
    exec(
        &stack,
        "UPDATE audit_log SET entry = entry || '\\x00'::bytea WHERE log = 'sharing'".into(),
    )
    .await;
    let report = verify(&stack, &[]).await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Entry { log, .. } if log == "sharing")),
        "{:?}",
        report.findings
    );
    stack.stop().await;
}

/// The `audit_events` finding of `audit verify` on the demographics stream.
async fn audit_event_finding(stack: &TestStack) -> Option<(i64, i32, Tamper)> {
    let report = verify(stack, &[]).await;
    assert!(report.audit_events > 0);
    report.findings.iter().find_map(|f| match f {
        Finding::AuditEvent {
            stream,
            stream_sequence,
            event_index,
            kind,
        } if stream == "CARELOG_DEMOGRAPHICS" => Some((*stream_sequence, *event_index, *kind)),
        _ => None,
    })
}

#[tokio::test]
async fn an_audit_events_row_changed_removed_or_added_is_named_by_audit_verify() {
    let stack = TestStack::start().await;
    activity(&stack, 2).await;
    let last = stack.last_sequence_of("demographics").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(
        carelog_projections::checkpoint::wait_for(
            &stack.pool,
            carelog_projections::audit::NAME,
            "CARELOG_DEMOGRAPHICS",
            last,
            deadline
        )
        .await
        .expect("checkpoint"),
        "audit_events did not reach {last}"
    );
    // Given the read model the audit queries answer from, untouched
    assert_eq!(audit_event_finding(&stack).await, None);
    let (second,): (i64,) = sqlx::query_as(
        "SELECT stream_sequence FROM audit_events WHERE stream = 'CARELOG_DEMOGRAPHICS' \
         ORDER BY stream_sequence LIMIT 1 OFFSET 1",
    )
    .fetch_one(&stack.pool)
    .await
    .expect("a second event");
    let row = format!("stream = 'CARELOG_DEMOGRAPHICS' AND stream_sequence = {second}");
    exec(
        &stack,
        format!("CREATE TABLE kept AS SELECT * FROM audit_events WHERE {row}"),
    )
    .await;

    // When someone with database access makes another user the author of
    // an update, then verify names that row as changed
    exec(
        &stack,
        format!("UPDATE audit_events SET actor_user_id = 'dr-someone-else' WHERE {row}"),
    )
    .await;
    assert_eq!(
        audit_event_finding(&stack).await,
        Some((second, 0, Tamper::Changed))
    );
    cli_names(
        &stack,
        &format!("CARELOG_DEMOGRAPHICS sequence {second} event 0: changed row"),
    )
    .await;
    // when the row is removed, as deleted
    exec(&stack, format!("DELETE FROM audit_events WHERE {row}")).await;
    assert_eq!(
        audit_event_finding(&stack).await,
        Some((second, 0, Tamper::Deleted))
    );
    // put back as it was, nothing is found
    exec(&stack, "INSERT INTO audit_events SELECT * FROM kept".into()).await;
    assert_eq!(audit_event_finding(&stack).await, None);
    // and an event JetStream never held, as inserted
    exec(
        &stack,
        "UPDATE kept SET event_index = 7; INSERT INTO audit_events SELECT * FROM kept".into(),
    )
    .await;
    assert_eq!(
        audit_event_finding(&stack).await,
        Some((second, 7, Tamper::Inserted))
    );
    // and so is one forged below the stream's first sequence
    exec(
        &stack,
        "DELETE FROM audit_events WHERE stream = 'CARELOG_DEMOGRAPHICS' AND event_index = 7; \
         UPDATE kept SET stream_sequence = -1, event_index = 0; INSERT INTO audit_events SELECT * FROM kept"
            .into(),
    )
    .await;
    assert_eq!(
        audit_event_finding(&stack).await,
        Some((-1, 0, Tamper::Inserted))
    );
    stack.stop().await;
}

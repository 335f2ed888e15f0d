//! The Kubernetes shape: `serve <context>` serves that context's API alone,
//! and gRPC health answers on a separate plaintext port.

use carelog::stack::{Parts, Settings};
use carelog_proto::demographics::v1 as pb;
use carelog_tests::harness::TestStack;
use tokio::net::TcpListener;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn status(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<i32, Code> {
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code())
}

#[tokio::test]
async fn a_tasks_replica_serves_tasks_alone_and_reports_health_on_its_own_port() {
    // Given carelog started as `serve tasks --health-listen ...`
    let health_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let health_addr = health_listener.local_addr().expect("addr");
    let stack = TestStack::start_with(
        Parts {
            api: true,
            projectors: false,
        },
        Settings {
            contexts: vec!["tasks"],
            health_listener: Some(health_listener),
            ..Settings::default()
        },
    )
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{health_addr}"))
        .expect("endpoint")
        .connect_lazy();
    let mut health = HealthClient::new(channel);

    // Then the health port answers liveness, readiness and the tasks service
    let serving = Ok(ServingStatus::Serving as i32);
    assert_eq!(status(&mut health, "liveness").await, serving);
    // (readiness once its first checks of NATS and PostgreSQL have passed,
    // which a loaded machine can take a moment over)
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while status(&mut health, "readiness").await != serving {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never became SERVING"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status(&mut health, "carelog.tasks.v1.TasksService").await,
        serving
    );
    // and knows nothing of a service this replica does not serve
    assert_eq!(
        status(&mut health, "carelog.demographics.v1.DemographicsService").await,
        Err(Code::NotFound)
    );

    // And the API port does not serve demographics
    demographics_is_not_served(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_sharing_replica_serves_sharing_agreements_alone() {
    // Given carelog started as `serve sharing` (its projectors run apart,
    // as on Kubernetes; here in the same process)
    let stack = TestStack::start_with(
        Parts {
            api: true,
            projectors: true,
        },
        Settings {
            contexts: vec!["sharing"],
            ..Settings::default()
        },
    )
    .await;

    // When the practice's privacy officer agrees to share its records with
    // the hospital trust for direct care
    let agreement = crate::shared_care::share(
        &stack,
        "A81001",
        carelog_proto::sharing::v1::party::Party::OrganisationOds("A81001".into()),
        "RR8",
    )
    .await;

    // Then the agreement is made and read back through this replica
    assert!(!agreement.agreement_id.is_empty());
    assert!(agreement.stream_sequence > 0);
    // and it serves no patient record
    demographics_is_not_served(&stack).await;
    stack.stop().await;
}

/// A GetPatient sent to a replica that does not serve demographics is
/// UNIMPLEMENTED.
async fn demographics_is_not_served(stack: &TestStack) {
    let refused = stack
        .client()
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }))
        .await
        .expect_err("demographics is not served here");
    assert_eq!(refused.code(), Code::Unimplemented);
}

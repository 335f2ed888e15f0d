//! `carelog rebuild` as an operator runs it inside the projectors' pod
//! (`kubectl exec deploy/carelog-projectors -- carelog rebuild patients`):
//! the pod's environment says CARELOG_METRICS_LISTEN, whose port the
//! running projectors hold. The rebuild must not try to take that port; it
//! serves its progress metrics only where it is asked to, by
//! `--metrics-listen` or CARELOG_REBUILD_METRICS_LISTEN.

use std::process::Output;

use carelog::embedded::{NatsServer, Postgres};
use tokio::process::Command;

async fn rebuild(nats: &str, db: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carelog"));
    cmd.args(["rebuild", "patients"])
        .args(args)
        .env("NATS_URL", nats)
        .env("DATABASE_URL", db)
        .env_remove("CARELOG_METRICS_LISTEN")
        .env_remove("CARELOG_REBUILD_METRICS_LISTEN")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    for (name, value) in env {
        cmd.env(name, value);
    }
    tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("carelog rebuild ended within 120 s")
        .expect("run carelog rebuild")
}

fn said(out: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_rebuild_beside_the_projectors_leaves_their_metrics_port_alone() {
    let dir = std::env::temp_dir().join(format!("carelog-rebuild-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nats = NatsServer::start(&dir.join("nats"), None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pg = Postgres::start(&dir.join("pg"), None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Given the projectors' metrics port, held, named by the pod's environment
    let projectors = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let held = projectors.local_addr().expect("address").to_string();
    let pod_env = [("CARELOG_METRICS_LISTEN", held.clone())];

    // when an operator runs a rebuild there, it rebuilds
    let out = rebuild(&nats.url, &pg.url, &pod_env, &[]).await;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rebuilt patients"),
        "{}",
        said(&out)
    );

    // and it serves its progress where it is asked to: a port of its own
    let free = carelog::embedded::free_port().expect("free port");
    let out = rebuild(
        &nats.url,
        &pg.url,
        &pod_env,
        &["--metrics-listen", &format!("127.0.0.1:{free}")],
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));

    // whose environment twin is its own, and is read: asked for the held
    // port, it says it cannot listen there
    let out = rebuild(
        &nats.url,
        &pg.url,
        &[("CARELOG_REBUILD_METRICS_LISTEN", held.clone())],
        &[],
    )
    .await;
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {held}")),
        "{}",
        said(&out)
    );

    drop(projectors);
    pg.stop().await.expect("stop postgres");
    nats.stop().await.expect("stop nats");
    let _ = std::fs::remove_dir_all(&dir);
}

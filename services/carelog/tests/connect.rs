//! A carelog pod started before NATS or PostgreSQL answer (a cluster
//! coming up, a database failing over) waits for them, for up to
//! `--connect-timeout`, rather than exiting at once into a crash loop; past
//! the wait it exits naming the server and the setting.

use std::process::{Output, Stdio};
use std::time::Duration;

use carelog::embedded::{NatsServer, Postgres, free_port};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

fn migrate(nats: &str, db: &str, wait: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carelog"));
    cmd.args(["migrate", "--nats-url", nats, "--database-url", db])
        .args(["--connect-timeout", wait])
        .env("RUST_LOG", "warn")
        .env_remove("CARELOG_LOG_FORMAT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
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
async fn a_migration_started_before_nats_waits_for_it_and_one_past_its_wait_names_the_server() {
    let dir = std::env::temp_dir().join(format!("carelog-connect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pg = Postgres::start(&dir.join("pg"), None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let port = free_port().expect("free port");
    let nats_url = format!("nats://127.0.0.1:{port}");

    // Given a migration started while nothing answers on NATS's port,
    // which says it is waiting
    let mut waiting = migrate(&nats_url, &pg.url, "60s")
        .spawn()
        .expect("start carelog migrate");
    let mut stderr = BufReader::new(waiting.stderr.take().expect("stderr")).lines();
    let mut said_before = String::new();
    let warned = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            said_before.push_str(&line);
            said_before.push('\n');
            if line.contains("not reachable yet") && line.contains(&format!("127.0.0.1:{port}")) {
                return true;
            }
        }
        false
    })
    .await
    .expect("a warning within 60 s");
    assert!(warned, "{said_before}");

    // When nats-server comes up a little later on that port
    let nats = NatsServer::start(&dir.join("nats"), Some(port))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Then the migration, which waited, completes
    let drained = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let status = tokio::time::timeout(Duration::from_secs(90), waiting.wait())
        .await
        .expect("the migration ended within 90 s")
        .expect("carelog migrate");
    let rest = drained.await.unwrap_or_default();
    assert!(status.success(), "exit {status}\n{said_before}{rest}");
    nats.stop().await.expect("stop nats-server");

    // And with nothing to wait for within its wait, it exits naming NATS
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        migrate(&nats_url, &pg.url, "1s").output(),
    )
    .await
    .expect("the migration ended within 60 s")
    .expect("carelog migrate");
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        said(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{}",
        said(&out)
    );
    pg.stop().await.expect("stop PostgreSQL");
    let _ = std::fs::remove_dir_all(&dir);
}

//! `carelog up` as a newcomer runs it: it starts its own nats-server and
//! PostgreSQL, serves a registration to a client that knows only the
//! server's reflection, and shuts everything down cleanly on SIGTERM.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn carelog_up_serves_a_reflection_only_client_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("carelog-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let port = carelog::embedded::free_port().expect("free port");
    let listen = format!("127.0.0.1:{port}");
    let mut up = Command::new(env!("CARGO_BIN_EXE_carelog"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--listen", &listen])
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start carelog up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with("carelog is up") {
                return true;
            }
        }
        false
    })
    .await
    .expect("carelog up did not come up within 90 s");
    assert!(ready, "carelog up exited before it was up");

    let token = Command::new(env!("CARGO_BIN_EXE_carelog"))
        .args([
            "dev-token",
            "--user",
            "newcomer",
            "--org",
            "A81001",
            "--role",
            "R8000",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .await
        .expect("dev-token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let python = std::env::var_os("CARELOG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools/venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/install-deps",
        python.display()
    );
    let client = Command::new(&python)
        .arg(workspace().join("tests/reflection/register_and_find.py"))
        .arg(&listen)
        .arg(&token)
        .output()
        .await
        .expect("run the reflection client");
    let said = String::from_utf8_lossy(&client.stdout).into_owned();
    assert!(
        client.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(said.contains("found patient"), "{said}");

    let pid = up.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), up.wait())
        .await
        .expect("stopped within 60 s")
        .expect("wait");
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(status.success(), "exit {status}; {rest}");
    assert!(rest.contains("carelog stopped"), "{rest}");
    // PostgreSQL shut down cleanly: no postmaster.pid left behind.
    assert!(!data.join("pg/postmaster.pid").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

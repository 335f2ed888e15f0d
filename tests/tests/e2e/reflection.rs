//! A client that knows only the server's reflection registers a patient and
//! finds it (Python's grpcio-reflection, installed by scripts/install-deps).

use std::path::PathBuf;

use carelog_tests::harness::TestStack;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CARELOG_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python")
}

#[tokio::test]
async fn a_reflection_only_client_registers_and_finds_a_patient() {
    let stack = TestStack::start().await;
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/install-deps",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reflection/register_and_find.py");
    let address = stack.endpoint.trim_start_matches("http://").to_owned();
    let token = stack.token("reflection-client", "A81001");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&address)
        .arg(&token)
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("found patient"), "{stdout}");
    stack.stop().await;
}

//! Every carelog container in `k8s/` runs the one binary with arguments that
//! its own parser accepts: a renamed flag or subcommand fails here, not in a
//! crash-looping pod.

use std::path::{Path, PathBuf};

use carelog::cli::Cli;
use clap::Parser as _;

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read k8s directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            manifests(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// The `args` of every container running the carelog image: the line after
/// `image: .../carelog:...`, written as a flow list (`args: [serve, tasks]`).
fn carelog_args(text: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(image) = line.trim().strip_prefix("image: ") else {
            continue;
        };
        if !image.contains("/carelog:") {
            continue;
        }
        let args = lines
            .iter()
            .skip(i + 1)
            .map(|l| l.trim())
            .find_map(|l| l.strip_prefix("args: "))
            .unwrap_or_else(|| panic!("a carelog container without flow-style args after {line}"));
        let inner = args
            .trim()
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or_else(|| panic!("args not a flow list: {args}"));
        found.push(
            inner
                .split(',')
                .map(|a| a.trim().trim_matches('"').to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
        );
    }
    found
}

#[test]
fn every_container_in_k8s_runs_arguments_the_binary_accepts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s");
    let mut files = Vec::new();
    manifests(&root, &mut files);
    let mut checked = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read manifest");
        for args in carelog_args(&text) {
            let argv = std::iter::once("carelog".to_owned()).chain(args.iter().cloned());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!(
                    "{}: `carelog {}` is refused: {e}",
                    file.display(),
                    args.join(" ")
                );
            }
            checked.push(args.join(" "));
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "gateway",
            "migrate",
            "project",
            "serve consultations",
            "serve demographics",
            "serve medications",
            "serve sharing",
            "serve tasks"
        ],
        "every part of carelog has its container"
    );
}

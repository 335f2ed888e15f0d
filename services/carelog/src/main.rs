//! carelog's one binary: parse the command line, then run the subcommand.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc in place of the system allocator: glibc's malloc spent a third
/// of the server's CPU under load (docs/benchmarks.md, "What the time went into").
/// Built with `no_thp` (the workspace's Cargo.toml): with transparent huge
/// pages a rebuild spent a quarter of its CPU zeroing 2 MiB pages
/// (docs/benchmarks.md, "the rebuild without transparent huge pages").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = carelog::cli::Cli::parse();
    let telemetry = carelog::telemetry::init();
    let result = carelog::commands::run(cli.command).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carelog: {e:#}");
            ExitCode::from(
                e.downcast_ref::<carelog::commands::ConfigError>()
                    .map_or(1, |_| 64),
            )
        }
    }
}

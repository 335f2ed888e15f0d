//! SIGTERM and Ctrl-C start a graceful shutdown; a second signal exits at
//! once.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT; exits on the second.
pub fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        wait().await;
        tracing::info!("shutting down (a second signal exits at once)");
        token.cancel();
        wait().await;
        std::process::exit(130);
    });
}

async fn wait() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

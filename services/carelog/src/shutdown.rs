//! SIGTERM and Ctrl-C start a graceful shutdown; a second signal exits at
//! once, after passing a stop signal on to the servers carelog started
//! itself (`carelog up`'s nats-server and PostgreSQL), so that they never
//! go on running after carelog, holding its data directory.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

/// The servers a second signal must stop too: (pid, signal name).
static CHILDREN: Mutex<Vec<(u32, &'static str)>> = Mutex::new(Vec::new());

/// A child server known to the second-signal exit, until dropped.
#[derive(Debug)]
pub struct Tracked {
    pid: u32,
}

/// Records a child server: should carelog exit on a second signal while
/// the returned guard lives, the child is sent SIG`signal` (a name such as
/// `TERM` or `INT`) first.
pub fn track(pid: u32, signal: &'static str) -> Tracked {
    if let Ok(mut children) = CHILDREN.lock() {
        children.push((pid, signal));
    }
    Tracked { pid }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(mut children) = CHILDREN.lock()
            && let Some(at) = children.iter().position(|(pid, _)| *pid == self.pid)
        {
            children.remove(at);
        }
    }
}

/// Sends each tracked child its stop signal, without waiting for it to exit.
async fn signal_children() {
    let children = match CHILDREN.lock() {
        Ok(children) => children.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for (pid, signal) in children {
        crate::embedded::signal_or_warn(pid, signal).await;
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT; on the second, signals
/// the tracked child servers and exits with status 130. The handlers are
/// installed before this returns, so from then on a signal never kills
/// carelog with the default action.
pub fn on_signal(token: CancellationToken) {
    let mut signals = Signals::install();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutting down (a second signal exits at once)");
        token.cancel();
        signals.next().await;
        signal_children().await;
        std::process::exit(130);
    });
}

/// SIGTERM and SIGINT, listened to from installation on.
#[cfg(unix)]
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        if let Err(e) = term.as_ref().and(int.as_ref()) {
            tracing::warn!(error = %e, "cannot listen for SIGTERM or SIGINT");
        }
        Signals {
            term: term.ok(),
            int: int.ok(),
        }
    }

    async fn next(&mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            let received = match signal {
                Some(signal) => signal.recv().await,
                None => None,
            };
            if received.is_none() {
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.int) => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Signals {
        Signals
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(pid: u32) -> bool {
        CHILDREN
            .lock()
            .map(|c| c.iter().any(|(p, _)| *p == pid))
            .unwrap_or(false)
    }

    #[test]
    fn a_child_is_tracked_while_its_guard_lives() {
        // Pids no process has (above the kernel's pid_max).
        let first = track(u32::MAX - 1, "TERM");
        let second = track(u32::MAX - 2, "INT");
        assert!(tracked(u32::MAX - 1) && tracked(u32::MAX - 2));
        drop(first);
        assert!(!tracked(u32::MAX - 1) && tracked(u32::MAX - 2));
        drop(second);
        assert!(!tracked(u32::MAX - 2));
    }
}

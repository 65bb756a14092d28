//! Ctrl-C, or SIGTERM on Unix (what service managers and `kill` send): the long-running
//! commands stop cleanly on either (trackers told, resume records saved).
//!
//! The handlers are installed when such a command starts ([`listen`]), not when it first
//! waits: a signal that arrived in between (say, right after `seed` printed that it is
//! seeding) would otherwise have killed the process the default way, or been missed.

use std::sync::OnceLock;

use tokio::sync::watch;

static INTERRUPTED: OnceLock<watch::Receiver<bool>> = OnceLock::new();

/// Starts listening for Ctrl-C and SIGTERM; a signal from now on is kept until
/// [`wait_for_signal`] asks. Call from inside the runtime, once.
pub fn listen() {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Made here, so the process no longer dies of them from this moment.
        if let (Ok(mut term), Ok(mut int)) =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        {
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                let _ = tx.send(true);
            });
            let _ = INTERRUPTED.set(rx);
            return;
        }
    }
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let _ = INTERRUPTED.set(rx);
}

/// Returns once Ctrl-C or SIGTERM came (at once if one came since [`listen`]).
pub async fn wait_for_signal() {
    let Some(rx) = INTERRUPTED.get() else {
        // Not listening yet (a command that did not ask): wait for one from now on.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    let mut rx = rx.clone();
    let _ = rx.wait_for(|&interrupted| interrupted).await;
}

//! The periodic reload task and its guard.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use super::ClusterTls;

const TARGET: &str = "catga_cluster::tls";

/// The shortest period [`ClusterTls::spawn_reloader`] accepts; shorter ones
/// are raised to it (each check reads three files).
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// The longest period; longer ones are lowered to it (so the timer's
/// arithmetic cannot overflow).
const MAX_RELOAD_INTERVAL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Stops the reload task of [`ClusterTls::spawn_reloader`] when dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), catga_cluster_core::tls::TlsError> {
/// use std::time::Duration;
/// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
///
/// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
/// let reloader = tls.spawn_reloader(Duration::from_secs(10));
/// // ... serve ...
/// drop(reloader); // no more reloads
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the reload task stops when the guard is dropped"]
pub struct ReloadGuard {
    task: JoinHandle<()>,
}

impl Drop for ReloadGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn spawn(tls: ClusterTls, every: Duration) -> ReloadGuard {
    let every = every.clamp(MIN_RELOAD_INTERVAL, MAX_RELOAD_INTERVAL);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let task = tokio::spawn(
        async move {
            // The last refusal logged at warn: the same refusal again (a bad
            // file left in place) is logged at debug, not every period.
            let mut refused: Option<String> = None;
            loop {
                ticks.tick().await;
                let reloading = tls.clone();
                // File reads block; keep them off the async workers.
                match tokio::task::spawn_blocking(move || reloading.reload()).await {
                    Ok(Ok(true)) => {
                        refused = None;
                        tracing::info!(
                            target: TARGET,
                            certificate = %tls.files().certificate.display(),
                            "new TLS certificate, key or CA certificates loaded; new handshakes use them"
                        );
                    }
                    Ok(Ok(false)) => refused = None,
                    Ok(Err(error)) => {
                        let reason = error.to_string();
                        if refused.as_deref() == Some(reason.as_str()) {
                            tracing::debug!(target: TARGET, %error, "new TLS files still refused");
                        } else {
                            tracing::warn!(
                                target: TARGET,
                                %error,
                                "new TLS files refused; still using the previous certificate"
                            );
                            refused = Some(reason);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(target: TARGET, %error, "TLS reload did not finish");
                    }
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    ReloadGuard { task }
}

//! Retrying transient failures. *Whether* to retry is the error's class
//! ([`Classify`]); *how long to wait* is [`Backoff`] (`crate::backoff`):
//! doubling with jitter, and starting over after an attempt that got some
//! work done.

use tokio_util::sync::CancellationToken;

use crate::apply::RunError;
use crate::error::Classify;
use crate::observe::progress::Progress;

pub use crate::backoff::Backoff;

/// Waits out `error` when it is transient: logged with `what`, a [`Backoff`]
/// step slept, `Ok(true)` to try again; `Ok(false)` when `cancel` fired while
/// waiting. A definite error is returned as `Err`. Either way `progress`
/// records it as the last error.
pub async fn wait_out(
    progress: &Progress,
    backoff: &mut Backoff,
    error: RunError,
    cancel: &CancellationToken,
    what: &str,
) -> Result<bool, RunError> {
    progress.error_now(&error.to_string());
    if !error.is_transient() {
        return Err(error);
    }
    let wait = backoff.step();
    tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying");
    Ok(tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    })
}

/// Runs `op` until it succeeds, waiting out transient errors with [`Backoff`]
/// (each logged with `what`). A definite error is returned; `Ok(None)` means
/// `cancel` fired during a wait. An attempt in progress is never interrupted.
/// Success beats `progress`; a failure is its last error.
///
/// `op` is a plain closure returning a future (not an async closure): the
/// futures of async closures are not provably `Send`, which `tokio::spawn` needs.
pub async fn retry<T, F, Fut>(progress: &Progress, cancel: &CancellationToken, what: &str, mut op: F) -> Result<Option<T>, RunError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RunError>>,
{
    let mut backoff = Backoff::default();
    loop {
        let done_before = progress.work_done();
        let outcome = op().await;
        // An attempt that wrote something before failing (a long load meeting a
        // throttled call) is not a service that stays down: start the backoff over.
        if outcome.is_err() && progress.work_done() > done_before {
            backoff.reset();
        }
        match outcome {
            // Only a step that succeeds is progress: a step failing over and
            // over (a table locked, Redis refusing writes) leaves the stall
            // watchdog counting, as a wait that never ends would.
            Ok(value) => {
                progress.beat_now();
                progress.succeeded_now();
                return Ok(Some(value));
            }
            Err(e) => {
                progress.failed_now();
                if !wait_out(progress, &mut backoff, e, cancel, what).await? {
                    return Ok(None);
                }
            }
        }
    }
}

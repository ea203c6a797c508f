//! Retrying transient failures. *Whether* to retry is the error's class
//! ([`Classify`]); *how long to wait* is this module's backoff.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RunError;
use crate::error::Classify;

/// First wait after a failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait: an outage of minutes is retried about twice a minute.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails definitely, or `cancel` fires
/// (then `Ok(None)`). Transient errors are logged with `what` and retried
/// with exponential backoff.
pub async fn with_retry<T, F, Fut>(cancel: &CancellationToken, what: &str, mut attempt: F) -> Result<Option<T>, RunError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RunError>>,
{
    let mut backoff = INITIAL_BACKOFF;
    loop {
        match attempt().await {
            Ok(value) => return Ok(Some(value)),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

//! Retrying transient failures. *Whether* to retry is the error's class
//! ([`Classify`]); *how long to wait* is [`Backoff`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RunError;
use crate::error::Classify;

/// First wait after a failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait: an outage of minutes is retried about twice a minute.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Exponential backoff for one operation; [`retry`] is the usual way to use it.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: INITIAL_BACKOFF }
    }
}

impl Backoff {
    /// Decides what to do after `error`: a definite error is returned as `Err`;
    /// a transient one is logged with `what`, waited out, and `Ok(true)` means
    /// try again. `Ok(false)` means `cancel` fired while waiting.
    pub async fn wait(&mut self, error: RunError, cancel: &CancellationToken, what: &str) -> Result<bool, RunError> {
        super::progress::record_error(&error.to_string());
        if !error.is_transient() {
            return Err(error);
        }
        tracing::warn!(error = %error, retry_in_ms = self.next.as_millis() as u64, "{what} failed; retrying");
        let slept = tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(self.next) => true,
        };
        self.next = (self.next * 2).min(MAX_BACKOFF);
        Ok(slept)
    }
}

/// Runs `op` until it succeeds, waiting out transient errors with [`Backoff`]
/// (each logged with `what`). A definite error is returned; `Ok(None)` means
/// `cancel` fired during a wait. An attempt in progress is never interrupted.
///
/// `op` is a plain closure returning a future (not an async closure): the
/// futures of async closures are not provably `Send`, which `tokio::spawn` needs.
pub async fn retry<T, F, Fut>(cancel: &CancellationToken, what: &str, mut op: F) -> Result<Option<T>, RunError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RunError>>,
{
    let mut backoff = Backoff::default();
    loop {
        let outcome = op().await;
        // An answer, even an error, means the loop is not stuck in a wait.
        super::progress::beat();
        match outcome {
            Ok(value) => return Ok(Some(value)),
            Err(e) => {
                if !backoff.wait(e, cancel, what).await? {
                    return Ok(None);
                }
            }
        }
    }
}

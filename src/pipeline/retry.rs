//! Retrying transient failures. *Whether* to retry is the error's class
//! ([`Classify`]); *how long to wait* is [`Backoff`]: doubling with jitter,
//! and starting over after an attempt that got some work done.

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
        let wait = self.step();
        tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying");
        let slept = tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        };
        Ok(slept)
    }

    /// How long to wait before the next try, and the step after that doubled
    /// (up to the maximum). Jitter (half to all of the step) keeps many
    /// writers, or a writer and its retries, from hitting a throttled service
    /// in lockstep.
    pub fn step(&mut self) -> Duration {
        let fraction = 0.5 + f64::from(crate::health::unix_ms().wrapping_mul(2_654_435_761) as u32 % 1000) / 2000.0;
        let wait = self.next.mul_f64(fraction);
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
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
        let done_before = super::progress::work_done();
        let outcome = op().await;
        // An attempt that wrote something before failing (a long load meeting a
        // throttled call) is not a service that stays down: start the backoff over.
        if outcome.is_err() && super::progress::work_done() > done_before {
            backoff = Backoff::default();
        }
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

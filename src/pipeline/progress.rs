//! Is the writer's loop moving? Every step that succeeds (a query answered,
//! a chunk written, an idle tick) beats; a wait that never ends and a step
//! that keeps failing (retried: a table locked, Redis refusing writes) stop
//! the beats. The lease renewer reads the silence: a writer silent past
//! `pipeline.stall_timeout_secs` stops renewing and exits naming its last
//! error, so a standby takes over instead of the index freezing behind a
//! live lease.
//!
//! The beat is reached through a task-local, so the retry helper and the
//! stages beat without every signature carrying it; outside a writer's run
//! (a reconcile, unit tests) a beat is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Progress;
}

/// The time of the last beat of one writer, and the last error it retried;
/// clones share them.
#[derive(Debug, Clone)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds after `origin` of the last beat.
    last_ms: Arc<AtomicU64>,
    /// The last error a step failed with (retried or not), and when (Unix seconds).
    last_error: Arc<std::sync::Mutex<Option<(String, u64)>>>,
    /// Chunks of documents written so far: a retry that made some starts its backoff over.
    work: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self { origin: Instant::now(), last_ms: Arc::default(), last_error: Arc::default(), work: Arc::default() }
    }
}

impl Progress {
    /// Records a beat now.
    pub fn beat_now(&self) {
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Records `error` as the last one (for `drugsync status`).
    pub fn error_now(&self, error: &str) {
        let at = crate::health::unix_ms() / 1000;
        *self.last_error.lock().expect("last error lock") = Some((error.to_owned(), at));
    }

    /// The last error recorded, with its Unix time.
    pub fn last_error(&self) -> Option<(String, u64)> {
        self.last_error.lock().expect("last error lock").clone()
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        self.origin.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Runs `work` with `self` as the progress [`beat`] reaches; beats first.
    pub async fn scope<F: std::future::Future>(&self, work: F) -> F::Output {
        self.beat_now();
        CURRENT.scope(self.clone(), work).await
    }
}

/// Beats the progress of the writer this task runs for, if any.
pub fn beat() {
    let _ = CURRENT.try_with(Progress::beat_now);
}

/// Counts a chunk of documents written by the writer this task runs for, if any.
pub fn worked() {
    let _ = CURRENT.try_with(|p| p.work.fetch_add(1, Ordering::Relaxed));
}

/// Chunks written so far by the writer this task runs for (0 outside one).
pub fn work_done() -> u64 {
    CURRENT.try_with(|p| p.work.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Records `error` as the last error of the writer this task runs for, if any.
pub fn record_error(error: &str) {
    let _ = CURRENT.try_with(|p| p.error_now(error));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beats_inside_the_scope_reach_it_and_silence_grows_without_them() {
        let progress = Progress { origin: Instant::now() - Duration::from_secs(10), ..Progress::default() };
        assert!(progress.silent_for() >= Duration::from_secs(10), "no beat since the origin");
        progress.scope(async { beat() }).await;
        assert!(progress.silent_for() < Duration::from_secs(1), "a beat inside the scope reached it");
        let other = Progress { origin: Instant::now() - Duration::from_secs(10), ..Progress::default() };
        beat(); // outside any scope: a no-op, not a panic
        assert!(other.silent_for() >= Duration::from_secs(10));
    }
}

//! Is the writer's loop moving? Every step that succeeds (a query answered,
//! a chunk written, an idle tick) beats; a wait that never ends and a step
//! that keeps failing (retried: a table locked, Redis refusing writes) stop
//! the beats. The lease renewer reads the silence: a writer silent past
//! `pipeline.stall_timeout_secs` stops renewing and exits naming its last
//! error, so a standby takes over instead of the index freezing behind a
//! live lease.
//!
//! The handle is explicit: [`crate::observe::Stats::progress`] holds it, and every
//! stage that beats and the retry helper take it from there. A reconcile run
//! on its own has its own `Stats`, whose beats nobody watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// Unix milliseconds of the first failure of the step being retried now;
    /// 0 while no step fails. Readiness reads it: a writer whose every
    /// attempt is refused (Redis out of memory) is not ready, whatever its lag.
    failing_since_ms: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: Arc::default(),
            last_error: Arc::default(),
            work: Arc::default(),
            failing_since_ms: Arc::default(),
        }
    }
}

impl Progress {
    /// Records a beat now.
    pub fn beat_now(&self) {
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Records `error` as the last one (for `drugsync status`).
    pub fn error_now(&self, error: &str) {
        let at = crate::observe::health::unix_ms() / 1000;
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

    /// Records that an attempt of the current step failed (the streak's start is kept).
    pub fn failed_now(&self) {
        let _ = self.failing_since_ms.compare_exchange(0, crate::observe::health::unix_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records that the step being retried succeeded: the failing streak is over.
    pub fn succeeded_now(&self) {
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// How long the step being retried has failed without one success; `None` while none fails.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(crate::observe::health::unix_ms().saturating_sub(since))),
        }
    }

    /// Counts a chunk of documents written.
    pub fn worked(&self) {
        self.work.fetch_add(1, Ordering::Relaxed);
    }

    /// Chunks of documents written so far.
    pub fn work_done(&self) -> u64 {
        self.work.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_end_the_silence_and_silence_grows_without_them() {
        let progress = Progress { origin: Instant::now() - Duration::from_secs(10), ..Progress::default() };
        assert!(progress.silent_for() >= Duration::from_secs(10), "no beat since the origin");
        let clone = progress.clone();
        clone.beat_now();
        assert!(progress.silent_for() < Duration::from_secs(1), "a clone's beat is the writer's");
        clone.worked();
        assert_eq!(progress.work_done(), 1);
        clone.error_now("redis away");
        assert_eq!(progress.last_error().map(|(e, _)| e).as_deref(), Some("redis away"));
    }

    #[test]
    fn a_failing_streak_runs_from_its_first_failure_until_a_success() {
        let progress = Progress::default();
        assert_eq!(progress.failing_for(), None);
        progress.failed_now();
        let first = progress.failing_since_ms.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        progress.failed_now();
        assert_eq!(progress.failing_since_ms.load(Ordering::Relaxed), first, "a later failure keeps the streak's start");
        assert!(progress.failing_for().is_some_and(|d| d >= Duration::from_millis(5)));
        progress.succeeded_now();
        assert_eq!(progress.failing_for(), None);
    }
}

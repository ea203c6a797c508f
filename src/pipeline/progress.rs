//! Is the writer's loop moving? Every step that succeeds (a query answered,
//! a chunk written, an idle tick) beats; a wait that never ends and a step
//! that keeps failing (retried: a table locked, Redis refusing writes) stop
//! the beats. The lease renewer reads the silence: a writer silent past
//! `pipeline.stall_timeout_secs` stops renewing and exits naming its last
//! error, so a standby takes over instead of the index freezing behind a
//! live lease.
//!
//! The handle is explicit: [`super::Stats::progress`] holds it, and every
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
}

//! How long to wait before the next try: exponential backoff with jitter.
//!
//! The one schedule every retry loop uses (the apply loop's `retry`, the
//! binlog tailer's reconnects, the filling of owed vectors, the OpenAI-
//! compatible client's retries within a call). *Whether* to
//! retry is the error's class (`crate::error::Classify`), decided by the
//! caller; this only says how long.

use std::time::Duration;

/// First wait after a failure.
pub const INITIAL: Duration = Duration::from_millis(250);
/// Longest wait: an outage of minutes is retried about twice a minute.
pub const MAX: Duration = Duration::from_secs(30);

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::between(INITIAL, MAX)
    }
}

impl Backoff {
    /// A schedule from `initial` doubling up to `max` (the default is
    /// [`INITIAL`] to [`MAX`]; a retry inside one call waits less).
    pub fn between(initial: Duration, max: Duration) -> Self {
        Self { next: initial, initial, max }
    }

    /// How long to wait before the next try, and the step after that doubled
    /// (up to its maximum). Jitter (half to all of the step) keeps many writers,
    /// or a writer and its retries, from hitting a throttled service in lockstep.
    pub fn step(&mut self) -> Duration {
        let fraction = 0.5 + f64::from(crate::observe::health::unix_ms().wrapping_mul(2_654_435_761) as u32 % 1000) / 2000.0;
        let wait = self.next.mul_f64(fraction);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Starts over from the first step (a try that got some work done).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_maximum_and_start_over_on_reset() {
        let mut backoff = Backoff::default();
        let first = backoff.step();
        assert!(first >= INITIAL / 2 && first <= INITIAL, "{first:?}");
        let second = backoff.step();
        assert!(second >= INITIAL && second <= INITIAL * 2, "{second:?}");
        for _ in 0..20 {
            assert!(backoff.step() <= MAX);
        }
        backoff.reset();
        assert!(backoff.step() <= INITIAL);
    }

    #[test]
    fn a_schedule_of_its_own_keeps_its_bounds() {
        let (initial, max) = (Duration::from_millis(200), Duration::from_secs(10));
        let mut backoff = Backoff::between(initial, max);
        let first = backoff.step();
        assert!(first >= initial / 2 && first <= initial, "{first:?}");
        for _ in 0..20 {
            assert!(backoff.step() <= max);
        }
        backoff.reset();
        assert!(backoff.step() <= initial);
    }
}

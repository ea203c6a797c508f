//! A circuit breaker for the embedding endpoint: after `failures` calls in
//! a row that found it unavailable, calls fail at once for `cooldown`,
//! instead of each waiting out its own timeouts and retries against an
//! endpoint that is down. Then one call is let through; its answer closes
//! the circuit or opens it again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::EmbedError;

/// See the module docs.
#[derive(Debug)]
pub struct CircuitBreaker {
    failures: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Unavailable answers in a row.
    in_a_row: u32,
    /// While set and in the future, calls fail fast.
    open_until: Option<Instant>,
}

impl CircuitBreaker {
    /// Opens after `failures` unavailable answers in a row (0: never), for `cooldown`.
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self { failures, cooldown, state: Mutex::default() }
    }

    /// `Err` (transient) while the circuit is open.
    pub fn check(&self) -> Result<(), EmbedError> {
        let state = self.state.lock().expect("breaker lock");
        match state.open_until {
            Some(until) if Instant::now() < until => Err(EmbedError::Unavailable(format!(
                "the embedding endpoint failed {} calls in a row; not calling it for another {}s (circuit open)",
                state.in_a_row,
                until.saturating_duration_since(Instant::now()).as_secs() + 1
            ))),
            _ => Ok(()),
        }
    }

    /// Records a call's outcome: `unavailable` when the endpoint could not answer.
    pub fn record(&self, unavailable: bool) {
        let mut state = self.state.lock().expect("breaker lock");
        if !unavailable {
            *state = State::default();
            return;
        }
        state.in_a_row += 1;
        if self.failures > 0 && state.in_a_row >= self.failures {
            if state.open_until.is_none_or(|until| Instant::now() >= until) {
                tracing::warn!(
                    failures = state.in_a_row,
                    cooldown_s = self.cooldown.as_secs(),
                    "embedding endpoint keeps failing: circuit open"
                );
            }
            state.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_then_lets_one_call_through() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            breaker.record(true);
            assert!(breaker.check().is_ok(), "not yet");
        }
        breaker.record(true);
        let err = breaker.check().unwrap_err();
        assert!(matches!(err, EmbedError::Unavailable(_)) && err.to_string().contains("circuit open"), "{err}");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(breaker.check().is_ok(), "half open after the cooldown");
        breaker.record(true);
        assert!(breaker.check().is_err(), "the trial failed: open again");
        tokio::time::advance(Duration::from_secs(31)).await;
        breaker.record(false);
        assert!(breaker.check().is_ok());
        breaker.record(true);
        assert!(breaker.check().is_ok(), "a success resets the count");
    }
}

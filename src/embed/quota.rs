//! Running at the embedding quota, never above it.
//!
//! Bedrock quotas are requests and tokens per minute, per account, region
//! and model. Retrying after a 429 wastes the call and the time; drugsync
//! paces itself instead: before each call it waits until the call fits the
//! last minute's requests and tokens (`embed.requests_per_minute`,
//! `embed.tokens_per_minute`). The window holds at most one entry per
//! request in it, so memory is bounded by the quota.
//!
//! Tokens are known only after the call; a call is admitted on an estimate
//! of one token per three characters, above what Titan reports for English
//! text, so the estimate errs on the side of staying under the quota.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// See the module docs.
#[derive(Debug)]
pub struct Quota {
    window: Duration,
    max_requests: Option<usize>,
    max_tokens: Option<u64>,
    state: Arc<(Mutex<Window>, Notify)>,
}

/// The requests that still count: admitted, and not yet a window past their end.
#[derive(Debug, Default)]
struct Window {
    next_id: u64,
    /// (id, tokens estimated, when the call ended; `None` while in flight), oldest first.
    requests: VecDeque<(u64, u64, Option<Instant>)>,
}

/// A request admitted by [`Quota::admit`]; dropping it ends the call.
///
/// A call counts from its admission until a window after it ended. The
/// service counts it when it arrives, somewhere in between (the first calls
/// of a process arrive late, after connection set-up, and the next ones on
/// warm connections early): counting the whole stretch keeps every window
/// of the service's under the quota, whatever the delays.
#[derive(Debug)]
pub struct Admission {
    id: u64,
    state: Arc<(Mutex<Window>, Notify)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let (window, notify) = &*self.state;
        let mut window = window.lock().expect("quota lock");
        if let Some(entry) = window.requests.iter_mut().find(|(id, _, _)| *id == self.id) {
            entry.2 = Some(Instant::now());
        }
        notify.notify_waiters();
    }
}

impl Quota {
    /// A per-minute quota; `0` means no limit of that kind.
    pub fn per_minute(requests: u32, tokens: u64) -> Self {
        Self::per_window(Duration::from_secs(60), requests, tokens)
    }

    /// The same over another window (tests use seconds).
    pub fn per_window(window: Duration, requests: u32, tokens: u64) -> Self {
        Self {
            window,
            max_requests: (requests > 0).then_some(requests as usize),
            max_tokens: (tokens > 0).then_some(tokens),
            state: Arc::default(),
        }
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_requests.is_some() || self.max_tokens.is_some()
    }

    /// The tokens a text is admitted as (see the module docs).
    pub fn estimate(text: &str) -> u64 {
        (text.chars().count() as u64).div_ceil(3).max(1)
    }

    /// Waits until a request of `tokens` fits, then counts it until the
    /// returned [`Admission`] is dropped and a window has passed.
    pub async fn admit(&self, tokens: u64) -> Admission {
        if !self.is_limited() {
            // Nothing to count: an admission no entry matches.
            return Admission { id: u64::MAX, state: self.state.clone() };
        }
        let (window, notify) = &*self.state;
        loop {
            let ended = notify.notified();
            let wait = {
                let mut state = window.lock().expect("quota lock");
                let now = Instant::now();
                let horizon = self.window;
                state.requests.retain(|(_, _, end)| end.is_none_or(|end| now.duration_since(end) < horizon));
                let used: u64 = state.requests.iter().map(|(_, t, _)| t).sum();
                let requests_fit = self.max_requests.is_none_or(|max| state.requests.len() < max);
                // A request larger than the whole token quota still goes, alone.
                let tokens_fit = self.max_tokens.is_none_or(|max| used + tokens <= max || state.requests.is_empty());
                if requests_fit && tokens_fit {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.requests.push_back((id, tokens, None));
                    return Admission { id, state: self.state.clone() };
                }
                // The first ended request to leave the window frees a place;
                // one in flight frees nothing until it ends (and notifies).
                state.requests.iter().filter_map(|(_, _, end)| *end).map(|end| horizon.saturating_sub(now.duration_since(end))).min()
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                        _ = ended => {}
                    }
                }
                None => ended.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits `n` requests of `tokens` each and returns when each was admitted.
    async fn admit_all(quota: &Quota, n: usize, tokens: u64) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..n {
            drop(quota.admit(tokens).await);
            at.push(Instant::now());
        }
        at
    }

    /// The most admissions inside any window starting at an admission.
    fn busiest(at: &[Instant], window: Duration) -> usize {
        at.iter().map(|start| at.iter().filter(|t| **t >= *start && t.duration_since(*start) < window).count()).max().unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_window_are_never_exceeded_and_the_quota_is_used() {
        let window = Duration::from_secs(60);
        let quota = Quota::per_window(window, 10, 0);
        let started = Instant::now();
        let at = admit_all(&quota, 35, 1).await;
        assert_eq!(busiest(&at, window), 10);
        // 35 requests at 10 a minute: the last one in the fourth minute, not later.
        assert!(started.elapsed() < Duration::from_secs(181), "{:?}", started.elapsed());
        assert!(started.elapsed() >= Duration::from_secs(180));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_window_are_never_exceeded() {
        let window = Duration::from_secs(60);
        let quota = Quota::per_window(window, 0, 1000);
        let at = admit_all(&quota, 12, 300).await;
        assert_eq!(busiest(&at, window), 3, "three requests of 300 tokens fit 1,000");
        let big = Quota::per_window(window, 0, 100);
        assert_eq!(admit_all(&big, 2, 500).await.len(), 2, "a request above the whole quota still goes, alone");
    }

    #[tokio::test]
    async fn no_limit_admits_at_once() {
        let quota = Quota::per_minute(0, 0);
        assert!(!quota.is_limited());
        let started = std::time::Instant::now();
        admit_all(&quota, 1000, 10).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(Quota::estimate("abcdefg"), 3);
    }
}

#[cfg(test)]
mod in_flight {
    use super::*;

    /// A call in flight keeps its place: the window only starts when it ends.
    #[tokio::test(start_paused = true)]
    async fn a_call_counts_from_admission_until_a_window_after_it_ends() {
        let quota = Arc::new(Quota::per_window(Duration::from_secs(10), 1, 0));
        let first = quota.admit(1).await;
        let started = Instant::now();
        let waiting = tokio::spawn({
            let quota = quota.clone();
            async move { drop(quota.admit(1).await) }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiting.is_finished(), "the first call is still in flight");
        drop(first);
        waiting.await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(40), "admitted a window after the first call ended: {:?}", started.elapsed());
    }
}

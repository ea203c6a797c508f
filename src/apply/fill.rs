//! Paying owed vectors back (see `sink::queues`): the writer's side.
//!
//! On the apply loop's idle tick the writer reads how many vectors are owed
//! (the metrics' gauges) and, when a try is due, rebuilds a chunk of owed
//! documents from current MySQL state through the one sync path
//! ([`WhenUnavailable::Leave`]): a document whose vector came back is
//! written with it and leaves the set; one whose vector still cannot be had
//! is left as it is, not rewritten. A try that fills something is followed by
//! the next at once; one that fills nothing waits a growing backoff and moves
//! on to the next chunk, so texts the service keeps failing (the oldest, by
//! then) hold back no other owed vector: the tries walk the whole set, and
//! start again at the oldest after the last chunk. Rebuilding from current
//! state is what a reconcile repair does: idempotent, and never older than
//! what the stream wrote.

use crate::observe::stats::Gauge;
use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::app::replicator::Connected;
use crate::apply::RunError;
use crate::apply::sync::{Syncer, WhenUnavailable};
use crate::backoff::Backoff;
use crate::document::DocumentKey;
use crate::error::Classify;
use crate::observe::Stats;
use crate::sink::Owed;
use crate::sink::{DocumentSink, Sink};

/// What filling uses, and nothing more: built by [`Connected::filler`].
pub struct Filler<S> {
    pool: mysql_async::Pool,
    sink: Arc<S>,
    stats: Arc<Stats>,
    syncer: Syncer<S>,
    /// `pipeline.write_chunk`: owed documents rebuilt per try.
    chunk: usize,
}

impl<S: Sink> Connected<S> {
    /// The parts filling owed vectors uses.
    pub fn filler(&self) -> Filler<S> {
        Filler {
            pool: self.pool.clone(),
            sink: self.sink.clone(),
            stats: self.stats.clone(),
            syncer: self.syncer(),
            chunk: self.config.pipeline.write_chunk,
        }
    }
}

/// What a try at filling reads and does: the owed set and the rebuild of
/// some of its documents. [`Filler`] is the one implementation outside
/// tests; the trait lets [`OwedVectors`]' order of tries be unit-tested.
pub trait OwedSource: Sync {
    /// How many vectors are owed and since when.
    fn owed(&self) -> impl Future<Output = Result<Owed, RunError>> + Send;
    /// Up to a chunk of owed documents, oldest first, after the `skip` oldest.
    fn oldest(&self, skip: usize) -> impl Future<Output = Result<Vec<DocumentKey>, RunError>> + Send;
    /// Rebuilds `keys` from current state, writing those whose vector the
    /// service now gives and leaving the others owed, untouched.
    fn rebuild(&self, keys: Vec<DocumentKey>) -> impl Future<Output = Result<(), RunError>> + Send;
    /// Where the owed gauges go.
    fn stats(&self) -> &Stats;
}

impl<S: DocumentSink> OwedSource for Filler<S> {
    async fn owed(&self) -> Result<Owed, RunError> {
        Ok(self.sink.owed().await?)
    }
    async fn oldest(&self, skip: usize) -> Result<Vec<DocumentKey>, RunError> {
        Ok(self.sink.owed_oldest(skip, self.chunk).await?)
    }
    async fn rebuild(&self, keys: Vec<DocumentKey>) -> Result<(), RunError> {
        let mut conn = crate::mysql::connect::pooled(&self.pool).await?;
        self.syncer.sync_keys(&mut conn, keys, WhenUnavailable::Leave).await
    }
    fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The writer's state of filling; see the module docs.
#[derive(Debug)]
pub struct OwedVectors {
    next_try: Instant,
    backoff: Backoff,
    /// Owed documents (oldest first) the next try passes over: the chunks
    /// before it filled nothing on their last try.
    skip: usize,
}

impl Default for OwedVectors {
    fn default() -> Self {
        Self { next_try: Instant::now(), backoff: Backoff::default(), skip: 0 }
    }
}

impl OwedVectors {
    /// Updates the owed gauges and, when due, tries to fill a write chunk
    /// of owed vectors. Transient failures (the service still down, MySQL
    /// away) only postpone the next try; a definite error (a lost lease, a
    /// refused write) is the writer's and is returned.
    pub async fn tick<F: OwedSource>(&mut self, f: &F) -> Result<(), RunError> {
        let before = match f.owed().await {
            Ok(owed) => owed,
            Err(e) if e.is_transient() => return Ok(()),
            Err(e) => return Err(e),
        };
        show(f.stats(), &before);
        if before.count == 0 {
            self.backoff.reset();
            self.skip = 0;
            return Ok(());
        }
        if Instant::now() < self.next_try {
            return Ok(());
        }
        if self.skip as u64 >= before.count {
            self.skip = 0;
        }
        let tried = match fill(f, self.skip).await {
            Ok(tried) => tried,
            Err(e) if e.is_transient() => {
                self.wait(before.count, &e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let after = f.owed().await?;
        show(f.stats(), &after);
        let filled = before.count.saturating_sub(after.count);
        if filled == 0 {
            // The documents tried keep their place: the next try starts past them.
            self.skip += tried;
            self.wait(after.count, "the embedding service did not answer for any of them");
            return Ok(());
        }
        tracing::info!(filled, owed = after.count, "owed vectors filled");
        self.backoff.reset();
        self.next_try = Instant::now();
        Ok(())
    }

    /// A try that filled nothing: the next waits a growing backoff.
    fn wait(&mut self, owed: u64, why: &str) {
        let wait = self.backoff.step();
        self.next_try = Instant::now() + wait;
        tracing::warn!(owed, error = why, retry_in_ms = wait.as_millis() as u64, "owed vectors not filled yet");
    }
}

/// Rebuilds up to a write chunk of owed documents, oldest first after the
/// `skip` oldest, writing those whose vector the service now gives. Returns
/// how many were tried.
async fn fill<F: OwedSource>(f: &F, skip: usize) -> Result<usize, RunError> {
    let keys = f.oldest(skip).await?;
    let tried = keys.len();
    f.rebuild(keys).await?;
    Ok(tried)
}

/// The owed gauges of the metrics endpoint.
fn show(stats: &Stats, owed: &Owed) {
    stats.set(Gauge::OwedNow, owed.count);
    stats.set(Gauge::OwedMaxAgeSecs, owed.max_age_secs(crate::observe::health::unix_ms() / 1000));
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::sink::SinkError;

    /// An owed set (oldest first) whose `poisoned` texts never embed.
    #[derive(Default)]
    struct FakeOwed {
        owed: Mutex<Vec<DocumentKey>>,
        poisoned: HashSet<DocumentKey>,
        /// What `rebuild` fails with, once.
        fault: Mutex<Option<RunError>>,
        /// Every chunk rebuilt, in order.
        tried: Mutex<Vec<Vec<String>>>,
        stats: Stats,
    }

    fn keys(names: &str) -> Vec<DocumentKey> {
        names.split_whitespace().map(|k| DocumentKey(k.into())).collect()
    }

    impl FakeOwed {
        fn new(owed: &str, poisoned: &str) -> Self {
            Self { owed: Mutex::new(keys(owed)), poisoned: keys(poisoned).into_iter().collect(), ..Self::default() }
        }
        fn tried(&self) -> Vec<String> {
            self.tried.lock().unwrap().iter().map(|chunk| chunk.join(" ")).collect()
        }
    }

    impl OwedSource for FakeOwed {
        async fn owed(&self) -> Result<Owed, RunError> {
            let count = self.owed.lock().unwrap().len() as u64;
            Ok(Owed { count, oldest_since: (count > 0).then_some(1_000) })
        }
        async fn oldest(&self, skip: usize) -> Result<Vec<DocumentKey>, RunError> {
            Ok(self.owed.lock().unwrap().iter().skip(skip).take(2).cloned().collect())
        }
        async fn rebuild(&self, keys: Vec<DocumentKey>) -> Result<(), RunError> {
            if let Some(fault) = self.fault.lock().unwrap().take() {
                return Err(fault);
            }
            self.tried.lock().unwrap().push(keys.iter().map(|k| k.0.clone()).collect());
            self.owed.lock().unwrap().retain(|k| !keys.contains(k) || self.poisoned.contains(k));
            Ok(())
        }
        fn stats(&self) -> &Stats {
            &self.stats
        }
    }

    /// Far past any backoff step.
    const LATER: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_chunk_that_fills_nothing_is_passed_over_and_tried_again_after_the_last() {
        let f = FakeOwed::new("a b c d e", "a b");
        let mut owed = OwedVectors::default();
        owed.tick(&f).await.unwrap();
        assert_eq!(f.tried(), ["a b"], "the oldest chunk first");
        owed.tick(&f).await.unwrap();
        assert_eq!(f.tried().len(), 1, "a try that filled nothing waits its backoff");
        tokio::time::advance(LATER).await;
        owed.tick(&f).await.unwrap();
        assert_eq!(f.tried(), ["a b", "c d"], "the failing chunk is passed over");
        owed.tick(&f).await.unwrap();
        assert_eq!(f.tried(), ["a b", "c d", "e"], "a try that filled something is followed at once");
        tokio::time::advance(LATER).await;
        owed.tick(&f).await.unwrap();
        assert_eq!(f.tried(), ["a b", "c d", "e", "a b"], "after the last chunk, the oldest again");
        assert_eq!(*f.owed.lock().unwrap(), keys("a b"));
        assert_eq!(f.stats.gauge(Gauge::OwedNow), 2, "the gauge shows what is still owed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_postpones_and_a_definite_one_is_the_writers() {
        let f = FakeOwed::new("a", "");
        *f.fault.lock().unwrap() = Some(RunError::Sink(SinkError::Unavailable("mysql away".into())));
        let mut owed = OwedVectors::default();
        owed.tick(&f).await.expect("a transient failure is no error of the writer");
        owed.tick(&f).await.unwrap();
        assert!(f.tried().is_empty(), "the next try waits");
        tokio::time::advance(LATER).await;
        owed.tick(&f).await.unwrap();
        assert_eq!((f.tried(), f.stats.gauge(Gauge::OwedNow)), (vec!["a".to_owned()], 0));

        let f = FakeOwed::new("a", "");
        *f.fault.lock().unwrap() = Some(RunError::Sink(SinkError::Fenced { holder: "another".into() }));
        let err = OwedVectors::default().tick(&f).await.expect_err("a lost lease stops the writer");
        assert!(matches!(err, RunError::Sink(SinkError::Fenced { .. })), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_owed_tries_nothing_and_shows_zero() {
        let f = FakeOwed::new("", "");
        f.stats.set(Gauge::OwedNow, 7);
        OwedVectors::default().tick(&f).await.unwrap();
        assert!(f.tried().is_empty());
        assert_eq!((f.stats.gauge(Gauge::OwedNow), f.stats.gauge(Gauge::OwedMaxAgeSecs)), (0, 0));
    }
}

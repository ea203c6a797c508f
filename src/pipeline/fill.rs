//! Paying owed vectors back (see `sink::pending`): the writer's side.
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

use tokio::time::Instant;

use super::replicator::Connected;
use super::sync::{Syncer, WhenUnavailable, sync_keys};
use super::{RunError, Stats};
use crate::backoff::Backoff;
use crate::embed::Embedder;
use crate::error::Classify;

/// What filling uses, and nothing more: built by [`Connected::filler`].
pub struct Filler<'a, E> {
    pool: &'a mysql_async::Pool,
    sink: &'a crate::sink::RedisSink,
    stats: &'a Stats,
    syncer: Syncer<'a, E>,
    /// `pipeline.write_chunk`: owed documents rebuilt per try.
    chunk: usize,
}

impl<E: Embedder> Connected<E> {
    /// The parts filling owed vectors uses.
    pub fn filler(&self) -> Filler<'_, E> {
        Filler { pool: &self.pool, sink: &self.sink, stats: &self.stats, syncer: self.syncer(), chunk: self.config.pipeline.write_chunk }
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
    pub async fn tick<E: Embedder>(&mut self, f: &Filler<'_, E>) -> Result<(), RunError> {
        let before = match f.sink.owed().await {
            Ok(owed) => owed,
            Err(e) if e.is_transient() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        show(f.stats, &before);
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
        let after = f.sink.owed().await?;
        show(f.stats, &after);
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
async fn fill<E: Embedder>(f: &Filler<'_, E>, skip: usize) -> Result<usize, RunError> {
    let keys = f.sink.owed_oldest(skip, f.chunk).await?;
    let tried = keys.len();
    let mut conn = crate::source::connect::pooled(f.pool).await?;
    sync_keys(&f.syncer, &mut conn, keys, None, WhenUnavailable::Leave).await?;
    Ok(tried)
}

/// The owed gauges of the metrics endpoint.
fn show(stats: &Stats, owed: &crate::sink::pending::Owed) {
    Stats::set(&stats.owed_now, owed.count);
    Stats::set(&stats.owed_max_age_secs, owed.max_age_secs(crate::health::unix_ms() / 1000));
}

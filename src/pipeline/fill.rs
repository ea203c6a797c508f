//! Paying owed vectors back (see `sink::pending`): the writer's side.
//!
//! On the apply loop's idle tick the writer reads how many vectors are owed
//! (the metrics' gauges) and, when a try is due, rebuilds the oldest owed
//! documents from current MySQL state through the one sync path, this time
//! waiting for the embedding service ([`WhenUnavailable::Wait`]): a document
//! whose vector still cannot be had is left as it is, not rewritten. A try
//! that fails waits a growing backoff; one that fills something is followed
//! by the next at once. Rebuilding from current state is what a reconcile
//! repair does: idempotent, and never older than what the stream wrote.

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
}

impl Default for OwedVectors {
    fn default() -> Self {
        Self { next_try: Instant::now(), backoff: Backoff::default() }
    }
}

impl OwedVectors {
    /// Updates the owed gauges and, when due, fills up to a write chunk of
    /// owed vectors. Transient failures (the service still down, MySQL
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
            return Ok(());
        }
        if Instant::now() < self.next_try {
            return Ok(());
        }
        match fill(f).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                let wait = self.backoff.step();
                self.next_try = Instant::now() + wait;
                tracing::warn!(owed = before.count, error = %e, retry_in_ms = wait.as_millis() as u64, "owed vectors not filled yet");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let after = f.sink.owed().await?;
        show(f.stats, &after);
        tracing::info!(filled = before.count.saturating_sub(after.count), owed = after.count, "owed vectors filled");
        self.backoff.reset();
        Ok(())
    }
}

/// Rebuilds the oldest owed documents, waiting for the embedding service.
async fn fill<E: Embedder>(f: &Filler<'_, E>) -> Result<(), RunError> {
    let keys = f.sink.owed_oldest(f.chunk).await?;
    let mut conn = crate::source::connect::pooled(f.pool).await?;
    sync_keys(&f.syncer, &mut conn, keys, None, WhenUnavailable::Wait).await
}

/// The owed gauges of the metrics endpoint.
fn show(stats: &Stats, owed: &crate::sink::pending::Owed) {
    Stats::set(&stats.owed_now, owed.count);
    Stats::set(&stats.owed_max_age_secs, owed.max_age_secs(crate::health::unix_ms() / 1000));
}

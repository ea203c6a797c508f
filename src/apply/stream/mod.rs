//! The apply loop: batches of source transactions -> Redis -> checkpoint.
//!
//! # The crash-safety invariant
//! A batch's position is stored only by its last write, through
//! [`crate::apply::committer::Committer::commit`]: in Redis atomically with that
//! write, which follows every other write of the batch, and locally only
//! after Redis acknowledged it. A crash at any point leaves the checkpoint at
//! or before the last acknowledged batch; restarting replays from there, and
//! replay is idempotent.
//!
//! # Error handling
//! A batch that fails transiently (Redis or MySQL away, embedding throttled)
//! is retried as a whole with backoff; the position does not move meanwhile.
//! On shutdown the batch in flight is finished, never half-applied.
//!
//! # Batching only while busy
//! A transaction that arrives while nothing is being applied is applied at
//! once: waiting for company would only add its wait to every lone change's
//! freshness. The transactions that arrive while a batch is applied queue
//! in the channel from the binlog reader, and the next batch takes all of
//! them (up to `pipeline.batch_max_transactions`) as soon as the current one
//! is acknowledged. While the source is that busy and transactions keep
//! arriving back to back (a reload storm), the batch goes on gathering for
//! up to `pipeline.batch_max_delay_ms`: small batches would split a drug's
//! DELETE from its INSERT and touch it twice. So a reload storm or a burst
//! of edits still touches each drug about once, and every bound on memory
//! and batch size holds as before.

pub mod batch;
mod idle;
pub mod tail;

use crate::observe::stats::{Counter, Gauge};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::Replicator;
use crate::app::replicator::StatusPublisher;
use crate::apply::RunError;
use crate::apply::committer::Committer;
use crate::apply::fill::Filler;
use crate::apply::reconcile::Reconciler;
use crate::apply::retry::retry;
use crate::apply::sync::{Syncer, WhenUnavailable};
use crate::cdc::InFlight;
use crate::config::OnLostSync;
use crate::mapping::Router;
use crate::mapping::router::Routed;
use crate::mysql::SourceError;
use crate::observe::Stats;
use crate::position::Position;
use crate::sink::Sink;
pub use batch::DENSE_GAP;
use batch::{Batch, gather};
use tail::{CHANNEL_CAPACITY, Tail};

/// How often an otherwise idle writer looks for reconcile repairs.
const REPAIR_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why streaming must start over from another position: an outcome the
/// caller acts on, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resync {
    /// Redis no longer holds the position of the last batch it acknowledged
    /// (restarted without persistence, failed over to a lagging replica,
    /// restored): writing on would build on missing documents. Decide again
    /// where to start.
    RedisRewound {
        /// The position Redis acknowledged last.
        expected: Position,
        /// What it holds now.
        found: Option<Position>,
    },
    /// The source no longer has the binlog at the position (purged), and
    /// `pipeline.on_lost_sync = "reconcile"`: reconcile, then stream from
    /// the server's current position.
    PositionLost {
        /// The position asked for.
        position: Position,
        /// What the server said.
        message: String,
    },
    /// The alias no longer answers though Redis kept the position (the
    /// index was dropped behind drugsync's back): decide again where to
    /// start, which creates the index version again and points the alias.
    IndexGone {
        /// The alias that does not answer.
        alias: String,
    },
}

/// How a stream ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Cancelled (a clean stop).
    Stopped,
    /// Start over elsewhere; see [`Resync`].
    Resync(Resync),
}

/// What streaming uses, and nothing more: built by [`Replicator::streamer`].
pub struct Streamer<S> {
    pool: mysql_async::Pool,
    /// Proves a batch's rows visible before they are re-read.
    gate: Arc<crate::mysql::visibility::VisibilityGate>,
    sink: Arc<S>,
    router: Arc<Router>,
    stats: Arc<Stats>,
    syncer: Syncer<S>,
    /// The one writer of positions.
    committer: Committer<S>,
    /// For a batch applied by a full diff.
    reconciler: Reconciler<S>,
    /// For owed vectors, on the idle tick.
    filler: Filler<S>,
    status: StatusPublisher<S>,
    tail: Tail<S>,
    settings: Settings,
}

/// The stream's settings, read from the configuration once.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// `mysql.server_id`: the replica id the binlog is read as.
    server_id: u32,
    /// `pipeline.on_lost_sync`.
    on_lost_sync: OnLostSync,
    /// `pipeline.batch_max_transactions`.
    max_transactions: usize,
    /// `pipeline.batch_max_delay_ms`: the longest a busy batch gathers.
    linger: Duration,
    /// Reconcile repairs taken per idle tick (10 write chunks).
    repairs_per_tick: usize,
}

impl<S: Sink> Replicator<S> {
    /// The parts streaming uses.
    pub fn streamer(&self) -> Streamer<S> {
        let parts = &self.parts;
        let c = &parts.config;
        Streamer {
            pool: parts.pool.clone(),
            gate: parts.gate.clone(),
            sink: parts.sink.clone(),
            router: parts.router.clone(),
            stats: parts.stats.clone(),
            syncer: parts.syncer(),
            committer: self.committer(),
            reconciler: parts.reconciler(),
            filler: parts.filler(),
            status: self.status(),
            tail: parts.tail(),
            settings: Settings {
                server_id: c.mysql.server_id,
                on_lost_sync: c.pipeline.on_lost_sync,
                max_transactions: c.pipeline.batch_max_transactions,
                linger: Duration::from_millis(c.pipeline.batch_max_delay_ms),
                repairs_per_tick: c.pipeline.write_chunk * 10,
            },
        }
    }
}

impl<S: Sink> Streamer<S> {
    /// Streams from `start` until cancelled, a [`Resync`], or a definite error.
    /// `replay`, when a replay is under way, logs its summary once it is caught up.
    pub async fn run(
        &self,
        start: Position,
        cancel: CancellationToken,
        replay: &mut Option<crate::app::replay::ReplayWatch>,
    ) -> Result<Ended, RunError> {
        let Some(limit) = self.tail.batch_key_limit(&cancel).await? else { return Ok(Ended::Stopped) };
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let tailer = self.tail.reader(limit, self.settings.server_id);
        let tail_cancel = cancel.child_token();
        let tail = tokio::spawn(tailer.run(start.clone(), tx, tail_cancel.clone()));
        tracing::info!(position = %start, full_diff_above_keys = limit, "streaming");
        let applied = self.apply_loop(&mut rx, &cancel, start.clone(), limit, replay).await;
        tail_cancel.cancel();
        drop(rx);
        let tailed = tail.await.map_err(|e| RunError::Task(e.to_string()))?;
        let ended = applied?;
        match tailed {
            Err(SourceError::PositionUnavailable { position, message }) if self.settings.on_lost_sync == OnLostSync::Reconcile => {
                Ok(Ended::Resync(Resync::PositionLost { position: *position, message }))
            }
            Err(e) => Err(e.into()),
            Ok(()) => Ok(ended),
        }
    }

    async fn apply_loop(
        &self,
        rx: &mut mpsc::Receiver<InFlight>,
        cancel: &CancellationToken,
        mut applied: Position,
        limit: usize,
        replay: &mut Option<crate::app::replay::ReplayWatch>,
    ) -> Result<Ended, RunError> {
        let Settings { max_transactions, linger, .. } = self.settings;
        let mut repair_tick = tokio::time::interval(REPAIR_POLL);
        let mut chores = self.idle_chores(&applied);
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => {
                    chores.activity.flush(&self.stats);
                    return Ok(Ended::Stopped);
                }
                _ = repair_tick.tick() => {
                    if let Some(ended) = self.idle_tick(&mut chores, &applied, cancel, replay).await? {
                        return Ok(ended);
                    }
                    continue;
                }
                next = rx.recv() => match next {
                    Some(tx) => tx,
                    None => return Ok(Ended::Stopped), // reader stopped; its result says why
                },
            };
            // Everything before `first` is applied: it is the oldest waiting.
            self.stats.waiting_for(first.transaction.committed_at);
            let batch = gather(first, rx, limit, max_transactions, linger).await;
            // The batch in flight is finished even when shutdown is requested meanwhile;
            // only the waits between retries give way to cancellation.
            let (kept, batch) = (&applied, &batch);
            let attempt = || async move {
                if let Some(resync) = self.redis_rewound(kept).await? {
                    return Ok(Some(resync));
                }
                self.apply_batch(batch, limit, cancel).await.map(|()| None)
            };
            match retry(&self.stats.progress, cancel, "applying batch", attempt).await? {
                None => return Ok(Ended::Stopped),
                Some(Some(resync)) => return Ok(Ended::Resync(resync)),
                Some(None) => {}
            }
            applied = batch.commit.clone();
            self.stats.set(Gauge::WaitingSinceUnix, 0);
            self.stats.lost_writes.applied(&applied);
            if let Some(beat) = batch.canary_beat_ms {
                self.stats.canary_visible(beat);
            }
            chores.activity.applied(&self.stats, batch.transactions, &applied);
            crate::app::replay::note_applied(&self.stats, replay, &applied);
        }
    }

    /// [`Resync::RedisRewound`] when Redis no longer holds the position of the
    /// last batch it acknowledged: writing on would build on missing documents.
    /// One GET per batch.
    async fn redis_rewound(&self, applied: &Position) -> Result<Option<Resync>, RunError> {
        let found = self.sink.stored_position().await?;
        // Another lineage (resumed by GTID) cannot be ordered; the GTID state vouched for it.
        let kept = found.as_ref().is_some_and(|p| p.try_cmp(applied).map_or(true, |o| o.is_ge()));
        Ok((!kept).then(|| Resync::RedisRewound { expected: applied.clone(), found }))
    }

    /// [`Self::redis_rewound`], or [`Resync::IndexGone`] when the alias no longer answers.
    async fn redis_lost(&self, applied: &Position) -> Result<Option<Resync>, RunError> {
        if let Some(resync) = self.redis_rewound(applied).await? {
            return Ok(Some(resync));
        }
        let Some(verdict) = self.sink.alias_verdict().await? else {
            return Ok(Some(Resync::IndexGone { alias: self.sink.version().alias.clone() }));
        };
        // Readiness waits for RediSearch's background scan (after an RDB load
        // it re-indexes every key), and the failures counter is published.
        self.stats.set(Gauge::IndexUnscannedPermille, 1000 - verdict.permille_indexed());
        let failures = self.stats.gauge(Gauge::IndexFailures);
        if verdict.indexing_failures > failures {
            tracing::warn!(
                failures = verdict.indexing_failures,
                "RediSearch could not index some documents Redis holds (FT.INFO hash_indexing_failures grew): they are invisible to search until repaired; run --reconcile"
            );
        }
        self.stats.set(Gauge::IndexFailures, verdict.indexing_failures);
        Ok(None)
    }

    /// Applies one batch of transactions and then, and only then, advances the checkpoint.
    ///
    /// A batch routed to more than `limit` documents is applied by a full hash
    /// diff of the index instead of key by key. So is a batch holding DDL on a
    /// tracked table (the DDL may have changed rows without row events). Either
    /// way the position is stored only once the diff is acknowledged, so a crash
    /// anywhere in between repeats the diff rather than skipping it.
    pub async fn apply_batch(&self, batch: &Batch, limit: usize, cancel: &CancellationToken) -> Result<(), RunError> {
        let commit = &batch.commit;
        if let (Some((refusal, at)), OnLostSync::Stop) = (&batch.refusal, self.settings.on_lost_sync) {
            return Err(SourceError::Refused { refusal: refusal.clone(), position: Box::new(at.clone()) }.into());
        }
        if let Some((refusal, _)) = &batch.refusal {
            tracing::warn!(%refusal, "the binlog cannot say which rows changed: reconciling before the position passes it");
            self.apply_by_full_diff(commit, cancel).await?;
        } else if batch.routing.is_empty() {
            // Nothing tracked changed: record progress so a restart need not re-read these events.
            self.committer.commit(&[], commit).await?;
        } else {
            self.stats.batch_gated(self.gate.wait(commit).await?);
            let mut conn = crate::mysql::connect::pooled(&self.pool).await?;
            match self.router.resolve(&mut conn, &batch.routing, limit).await? {
                Routed::Keys(keys) => {
                    tracing::debug!(transactions = batch.transactions, documents = keys.len(), position = %commit, "applying batch");
                    let last = self.syncer.sync_keys_but_last(&mut conn, keys.into_iter().collect(), WhenUnavailable::Owe).await?;
                    last.commit(&self.syncer, &self.committer, commit).await?;
                }
                Routed::Everything => {
                    tracing::info!(
                        transactions = batch.transactions,
                        rows = batch.rows,
                        limit,
                        position = %commit,
                        "batch touches a large share of the index: applying it by a full hash diff"
                    );
                    drop(conn);
                    self.apply_by_full_diff(commit, cancel).await?;
                }
            }
        }
        // The committer stored the position in Redis with the batch's last write, then locally.
        self.stats.count(Counter::Transactions, batch.transactions as u64);
        self.stats.count(Counter::Batches, 1);
        self.stats.applied_commit(batch.committed_at);
        Ok(())
    }

    /// Compares every document with MySQL once the source shows `commit`
    /// committed, then stores `commit`: the position passes only after the diff.
    async fn apply_by_full_diff(&self, commit: &Position, cancel: &CancellationToken) -> Result<(), RunError> {
        // Re-reads must see the batch's own transactions (invariant 7).
        self.stats.batch_gated(self.gate.wait(commit).await?);
        self.reconciler.repair_as_writer(cancel).await?;
        self.stats.count(Counter::FullDiffs, 1);
        self.committer.commit(&[], commit).await
    }
}

#[cfg(test)]
mod tests;

//! The apply loop's idle tick (once a second while no transaction waits):
//! a fixed list of named chores, run in order, each its own type. The loop
//! itself only gathers and applies batches.
//!
//! 1. [`ActivityLog`]: the activity line, flushed.
//! 2. The index check (`Streamer::redis_lost`): Redis behind what it
//!    acknowledged, the index gone, RediSearch's verdict.
//! 3. The status record (`StatusPublisher`).
//! 4. [`QuarantineGauge`]: the quarantine's size for /metrics.
//! 5. [`MemoryWatch`]: Redis's memory, and what it evicted repaired.
//! 6. [`RepairQueue`]: repairs a reconcile handed over, applied and acked.
//! 7. [`OwedVectors`]: owed vectors, paid when the service answers.
//! 8. The replay's summary, once it is caught up.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Ended, Streamer};
use crate::apply::RunError;
use crate::apply::fill::OwedVectors;
use crate::apply::retry::retry;
use crate::apply::sync::{Syncer, WhenUnavailable};
use crate::observe::Stats;
use crate::observe::activity::ActivityLog;
use crate::observe::memory_watch::{MemoryVerdict, MemoryWatch};
use crate::observe::stats::Gauge;
use crate::position::Position;
use crate::sink::{DocumentSink, Sink, WorkQueues};

/// The chores that keep state or handles from one tick to the next.
pub(super) struct IdleChores<S> {
    pub(super) activity: ActivityLog,
    memory: MemoryWatch,
    repairs: RepairQueue<S>,
    owed: OwedVectors,
}

impl<S: Sink> Streamer<S> {
    /// The idle tick's chores for a stream that starts at `applied`, built once per stream.
    pub(super) fn idle_chores(&self, applied: &Position) -> IdleChores<S> {
        let repairs = RepairQueue {
            sink: self.sink.clone(),
            syncer: self.syncer.clone(),
            pool: self.pool.clone(),
            per_tick: self.settings.repairs_per_tick,
        };
        IdleChores {
            activity: ActivityLog::new(&self.stats, applied),
            memory: MemoryWatch::default(),
            repairs,
            owed: OwedVectors::default(),
        }
    }
}

impl<S: Sink> Streamer<S> {
    /// Runs the idle tick's chores in order; `Some` when the stream must end
    /// (cancelled while a chore retried, or a resync).
    pub(super) async fn idle_tick(
        &self,
        chores: &mut IdleChores<S>,
        applied: &Position,
        cancel: &CancellationToken,
        replay: &mut Option<crate::app::replay::ReplayWatch>,
    ) -> Result<Option<Ended>, RunError> {
        chores.activity.flush(&self.stats);
        // A quiet source sends nothing that would show Redis lost
        // everything: look every tick (one GET and one FT.INFO).
        match retry(&self.stats.progress, cancel, "checking Redis still holds the index", || self.redis_lost(applied)).await? {
            None => return Ok(Some(Ended::Stopped)),
            Some(Some(resync)) => return Ok(Some(Ended::Resync(resync))),
            Some(None) => {}
        }
        self.status.publish().await;
        QuarantineGauge.tick(self.sink.as_ref(), &self.stats).await;
        if chores.memory.tick(self.sink.as_ref(), &self.stats).await == MemoryVerdict::RepairEvictions {
            tracing::warn!("Redis evicts no more: diffing the whole index with MySQL to rewrite what it evicted");
            let evicted = self.stats.gauge(Gauge::RedisEvictedKeys);
            if retry(&self.stats.progress, cancel, "repairing what Redis evicted", || self.reconciler.repair_as_writer(cancel))
                .await?
                .is_none()
            {
                return Ok(Some(Ended::Stopped));
            }
            MemoryWatch::repaired(&self.stats, evicted);
        }
        let repairs = &chores.repairs;
        if retry(&self.stats.progress, cancel, "applying reconcile repairs", || repairs.tick()).await?.is_none() {
            return Ok(Some(Ended::Stopped));
        }
        chores.owed.tick(&self.filler).await?;
        crate::app::replay::note_applied(&self.stats, replay, applied);
        Ok(None)
    }
}

/// Chore: the quarantine's size for /metrics, one read a tick. A failure is
/// the next tick's: the index check before it reports Redis away.
pub(super) struct QuarantineGauge;

impl QuarantineGauge {
    /// Sets [`Gauge::QuarantinedNow`] from the sink (left as it was when the sink does not answer).
    pub(super) async fn tick<S: WorkQueues>(&self, sink: &S, stats: &Stats) {
        if let Ok(quarantined) = sink.quarantine_len().await {
            stats.set(Gauge::QuarantinedNow, quarantined);
        }
    }
}

/// Chore: up to `per_tick` repairs a reconcile queued, rebuilt from current
/// MySQL state, then acked. Positions are not involved: the documents are
/// simply brought up to date, which is idempotent. A failure leaves them queued (the ack comes only
/// after the write), so a crash or an outage repeats a repair, never loses it.
pub(super) struct RepairQueue<S> {
    pub(super) sink: Arc<S>,
    pub(super) syncer: Syncer<S>,
    pub(super) pool: mysql_async::Pool,
    /// Repairs taken per tick (10 write chunks).
    pub(super) per_tick: usize,
}

impl<S: DocumentSink> RepairQueue<S> {
    /// Applies and acks the oldest queued repairs; nothing queued is no work.
    pub(super) async fn tick(&self) -> Result<(), RunError> {
        let keys = self.sink.peek_repairs(self.per_tick).await?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = crate::mysql::connect::pooled(&self.pool).await?;
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        self.syncer.sync_keys(&mut conn, unique, WhenUnavailable::Owe).await?;
        self.sink.ack_repairs(keys.len()).await?;
        tracing::info!(documents = keys.len(), "applied reconcile repairs");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocumentKey;
    use crate::error::Classify;
    use crate::sink::contract::*;
    use crate::testing::fakes::rig::Rig;

    #[tokio::test]
    async fn the_quarantine_gauge_reads_the_sinks_quarantine() {
        let rig = Rig::new(|c| c);
        let stats = Stats::default();
        let key = DocumentKey("00001".into());
        rig.sink().apply(&[crate::document::DocumentChange::Quarantine { key, reason: "test".into() }]).await.unwrap();
        QuarantineGauge.tick(rig.sink(), &stats).await;
        assert_eq!(stats.gauge(Gauge::QuarantinedNow), 1);
        rig.sink().tamper(|c| c.quarantine.clear());
        QuarantineGauge.tick(rig.sink(), &stats).await;
        assert_eq!(stats.gauge(Gauge::QuarantinedNow), 0, "the gauge follows the quarantine down");
    }

    fn repairs(rig: &Rig) -> RepairQueue<crate::testing::fakes::MemorySink> {
        let parts = rig.replicator.parts();
        RepairQueue { sink: parts.sink.clone(), syncer: parts.syncer(), pool: parts.pool.clone(), per_tick: 10 }
    }

    #[tokio::test]
    async fn no_repair_queued_is_no_work() {
        let rig = Rig::new(|c| c);
        // The rig's MySQL is unreachable: touching it would fail the tick.
        repairs(&rig).tick().await.expect("nothing queued: MySQL not asked");
        assert_eq!(rig.sink().contents(|c| c.writes), 0);
    }

    #[tokio::test]
    async fn repairs_that_could_not_be_applied_stay_queued() {
        let rig = Rig::new(|c| c);
        let keys: Vec<DocumentKey> = ["00001", "00002"].map(|k| DocumentKey(k.into())).into();
        rig.sink().push_repairs(&keys).await.unwrap();
        let err = repairs(&rig).tick().await.expect_err("MySQL is unreachable");
        assert!(err.is_transient(), "an outage is retried: {err}");
        assert_eq!(rig.sink().pending_repairs().await.unwrap(), 2, "not acked: the next tick tries them again");
    }
}

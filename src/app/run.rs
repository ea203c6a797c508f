//! Running: take the writer lease (or stand by), decide where to start,
//! load if needed, then stream, starting over elsewhere when the stream
//! says so ([`crate::apply::stream::Resync`]).

use crate::observe::stats::{Counter, Gauge};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::Replicator;
use crate::app::replay;
use crate::app::start;
use crate::app::writer;
use crate::apply::RunError;
use crate::apply::retry;
use crate::apply::stream;
use crate::position::Position;
use crate::sink::{AliasState, Lease, Sink};

impl<S: Sink> Replicator<S> {
    /// Runs until `cancel` fires (clean stop) or a definite error occurs.
    /// Transient failures are retried inside; the checkpoint never passes
    /// a change Redis has not acknowledged.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), RunError> {
        let lease = self.parts.sink.lease(self.instance_id().to_owned(), Duration::from_secs(self.parts.config.redis.lease_ttl_secs));
        if !writer::acquire(&lease, &cancel, &self.parts.stats.redis_seen).await? {
            return Ok(());
        }
        self.parts.sink.fence_with(Some(lease.holder().to_owned()));
        self.parts.stats.set(Gauge::Writer, 1);
        let inner = cancel.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        let stalled = CancellationToken::new();
        let stall = Duration::from_secs(self.parts.config.pipeline.stall_timeout_secs);
        let progress = self.parts.stats.progress.clone();
        // The silence the watchdog measures starts now: a standby may have
        // waited long for the lease since its stats were made.
        progress.beat_now();
        let renewer = tokio::spawn(writer::keep_renewed(
            lease.clone(),
            inner.clone(),
            lost.clone(),
            (progress.clone(), self.parts.stats.redis_seen.clone()),
            stall,
            stalled.clone(),
        ));
        // Only the writer beats: its stream is the one the beats measure.
        let canary = crate::observe::canary::CanaryWriter::of(&self.parts.config, &self.parts.opts)
            .map(|canary| tokio::spawn(canary.run(self.parts.stats.clone(), inner.clone())));
        let result = tokio::select! {
            result = self.replicate(inner.clone()) => result,
            // Dropping the run drops the wait it is stuck in, and every
            // connection that wait holds: nothing of it can write later.
            _ = stalled.cancelled() => Err(RunError::Stalled { secs: progress.silent_for().as_secs() }),
        };
        if let Err(e) = &result {
            self.parts.stats.progress.error_now(&e.to_string());
            if !lost.load(Ordering::SeqCst) {
                self.status().publish().await;
            }
        }
        inner.cancel();
        renewer.await.ok();
        if let Some(canary) = canary {
            canary.await.ok();
        }
        self.parts.stats.set(Gauge::Writer, 0);
        self.parts.stats.set(Gauge::IndexLive, 0);
        self.parts.stats.lost_writes.clear();
        if lost.load(Ordering::SeqCst) {
            let holder = lease.current_holder().await.ok().flatten().unwrap_or_default();
            return Err(RunError::LeaseLost { holder });
        }
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "could not release the writer lease; it expires by itself");
        }
        result
    }

    /// Stores the position [`Self::prepare_replay`] asked for, under the
    /// lease, and returns the watch that logs the replay's summary.
    async fn store_replay_position(&self, cancel: &CancellationToken) -> Result<Option<replay::ReplayWatch>, RunError> {
        let Some(position) = self.replay.lock().expect("replay lock").take() else { return Ok(None) };
        let store = || async { self.committer().rewind_to(&position).await };
        if retry::retry(&self.parts.stats.progress, cancel, "storing the replay position", store).await?.is_none() {
            return Err(RunError::Cancelled);
        }
        tracing::warn!(%position, "replaying from an operator-supplied position");
        let watch = || replay::ReplayWatch::start(&self.parts, &position);
        retry::retry(&self.parts.stats.progress, cancel, "reading the end of binlog for the replay summary", watch).await
    }

    /// Initial load if needed, then streaming; runs while holding the lease.
    async fn replicate(&self, cancel: CancellationToken) -> Result<(), RunError> {
        let mut replay = self.store_replay_position(&cancel).await?;
        let Some(mut start) = self.starting_position(&cancel).await? else { return Ok(()) };
        self.parts.stats.set(Gauge::IndexLive, 1);
        let result = loop {
            match self.streamer().run(start.clone(), cancel.clone(), &mut replay).await {
                Ok(stream::Ended::Stopped) => break Ok(()),
                Ok(stream::Ended::Resync(stream::Resync::PositionLost { position, message })) => {
                    tracing::warn!(%position, server = %message, "binlog position lost: reconciling, then continuing from the server's current position");
                    start = self.recover_lost_position(&cancel).await?;
                }
                Ok(stream::Ended::Resync(resync @ (stream::Resync::RedisRewound { .. } | stream::Resync::IndexGone { .. }))) => {
                    match resync {
                        stream::Resync::RedisRewound { expected, found } => {
                            // Not ready from the moment the rewind is counted.
                            self.parts.stats.lost_writes.lost_since(&expected);
                            self.parts.stats.count(Counter::RedisRewinds, 1);
                            tracing::warn!(
                                %expected,
                                found = ?found.map(|p| p.to_string()),
                                "Redis lost acknowledged writes (restart without persistence, failover, restore): deciding again where to start"
                            )
                        }
                        _ => {
                            tracing::warn!(alias = %self.parts.sink.version().alias, "the index no longer answers (dropped or Redis emptied): creating it again")
                        }
                    }
                    // Not ready until the index answers again.
                    self.parts.stats.set(Gauge::IndexLive, 0);
                    self.look_at_redis_memory().await;
                    match self.starting_position(&cancel).await? {
                        Some(position) => start = position,
                        None => break Ok(()),
                    }
                    // A start at or past what Redis lost (a new load) has nothing left to replay.
                    self.parts.stats.lost_writes.applied(&start);
                    self.parts.stats.set(Gauge::IndexLive, 1);
                }
                Err(e) => break Err(e),
            }
        };
        crate::mysql::connect::close_pool(self.parts.pool.clone()).await;
        result
    }

    /// Where to stream from: the checkpoint cross-checked with Redis, or an
    /// initial load (`None` if cancelled during it). Makes sure the index
    /// version exists first (Redis may have lost it) and, once this version
    /// is loaded, points the alias at it: only then may searches see it.
    async fn starting_position(&self, cancel: &CancellationToken) -> Result<Option<Position>, RunError> {
        loop {
            match retry::retry(&self.parts.stats.progress, cancel, "deciding where to start", || self.try_starting_position(cancel)).await {
                // Redis lost the load's writes: decide again from the top (the index
                // version and the alias may be gone too), which starts the load over.
                Err(RunError::Sink(crate::sink::SinkError::LoadLost { epoch })) => {
                    tracing::warn!(%epoch, "Redis lost the initial load's writes while it ran (flushed or replaced): starting over");
                    self.look_at_redis_memory().await;
                }
                other => return Ok(other?.flatten()),
            }
        }
    }

    /// Redis losing writes may be eviction, and the apply loop's memory watch
    /// does not tick while the writer decides again where to start: look now,
    /// so readiness and the log name it. (A start has just read it.)
    async fn look_at_redis_memory(&self) {
        crate::observe::memory_watch::MemoryWatch::default().look(self.parts.sink.as_ref(), &self.parts.stats).await;
    }

    async fn try_starting_position(&self, cancel: &CancellationToken) -> Result<Option<Position>, RunError> {
        let alias = self.parts.sink.prepare_index().await?;
        self.parts.sink.record_space().await?;
        // Housekeeping: a cache that outgrew its bound (an earlier version
        // without one) costs memory, not correctness, so it never blocks a start.
        if let Err(e) = self.parts.sink.adopt_vector_cache().await {
            tracing::warn!(error = %e, "could not bound the vector cache now; trying again at the next start");
        }
        if let AliasState::Switch { old: Some(old) } = &alias {
            tracing::warn!(
                live = %old,
                building = %self.parts.sink.version().index,
                "the index definition, embedding or mapping changed: building the new version beside the live one (searches keep using it); the alias switches once every document is loaded"
            );
        }
        let fields = crate::mapping::MappingFingerprint::of(&self.parts.config.mapping).fields;
        let start = match start::resume_position(&self.committer()).await? {
            Some(position) => {
                self.reconcile_changed_fields(&fields, cancel).await?;
                position
            }
            None => match self.loader().initial_load(cancel).await? {
                Some(position) => {
                    self.parts.sink.store_mapping_fingerprint(&fields).await?;
                    position
                }
                None => return Ok(None),
            },
        };
        if let AliasState::Switch { old } = alias {
            self.parts.sink.switch_alias(old.as_deref()).await?;
            if let Some(old) = old.filter(|o| *o != self.parts.sink.version().alias) {
                self.parts.sink.drop_vector_cache_of(&old).await?;
            }
        }
        Ok(Some(start))
    }

    /// The mapping changed in fields the embedded text does not use (a change
    /// that can reach the text is a new index version instead): every document
    /// is compared with MySQL in place, then the new fingerprint is recorded.
    async fn reconcile_changed_fields(&self, fields: &str, cancel: &CancellationToken) -> Result<(), RunError> {
        let stored = self.parts.sink.mapping_fingerprint().await?;
        if stored.as_deref() == Some(fields) {
            return Ok(());
        }
        match stored {
            Some(_) => tracing::warn!(
                "the mapping changed in fields the embedded text does not use: comparing every document with MySQL in place (no embedding call for an unchanged text)"
            ),
            None => tracing::info!("no mapping fingerprint recorded for this index version yet: comparing every document with MySQL once"),
        }
        self.parts.reconciler().repair_as_writer(cancel).await?;
        self.parts.sink.store_mapping_fingerprint(fields).await?;
        Ok(())
    }

    /// After the binlog lost our position: note the server's current position
    /// first, reconcile everything, then store that position. Changes made
    /// during the reconcile are after the noted position, so they are streamed
    /// (again, harmlessly) rather than missed.
    async fn recover_lost_position(&self, cancel: &CancellationToken) -> Result<Position, RunError> {
        let mut conn = crate::mysql::connect::pooled(&self.parts.pool).await?;
        let current = crate::mysql::server::current_position(&mut conn).await?;
        drop(conn);
        self.parts.reconciler().repair_as_writer(cancel).await?;
        self.committer().rewind_to(&current).await?;
        Ok(current)
    }
}

//! The initial load: every document from one consistent snapshot, then the
//! binlog position that snapshot corresponds to.
//!
//! # Resumption
//! Nothing is locked. On MariaDB the snapshot reports its exact binlog
//! position (`binlog_snapshot_file/position`); on MySQL the position is read
//! just *before* the snapshot starts, and the visibility gate waits until
//! everything logged up to it is committed in the engine; changes in between
//! are replayed afterwards, which is harmless because applying a change twice
//! equals applying it once. The checkpoint is written only after every document and
//! the orphan sweep are acknowledged by Redis.
//!
//! An interrupted load resumes after the last key it wrote, but only into a
//! Redis that still holds what it wrote: each load has an epoch, stored in
//! Redis (per index version) and in the local progress, and every write of
//! the load checks it atomically. A Redis flushed or replaced during the load,
//! or a config change meanwhile (another index version), loses the epoch, and
//! the load starts over instead of leaving the documents it had written missing.

use crate::observe::stats::{Counter, Gauge};
use std::time::Instant;

use mysql_async::TxOpts;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{BootstrapProgress, CheckpointStore};
use crate::document::DocumentKey;
use std::sync::Arc;

use crate::app::Replicator;
use crate::apply::RunError;
use crate::apply::committer::Committer;
use crate::apply::retry::retry;
use crate::apply::sync::Syncer;
use crate::apply::sync::orphans::OrphanScan;
use crate::apply::sync::{Prepared, WhenUnavailable};
use crate::mapping::DocumentLoader;
use crate::mysql::{SourceError, server};
use crate::observe::Stats;
use crate::position::Position;
use crate::sink::Sink;

/// What the initial load uses, and nothing more: built by [`Replicator::loader`].
pub struct Loader<S> {
    pool: mysql_async::Pool,
    /// On MySQL the position is read before the snapshot: the gate makes
    /// everything logged up to it visible to the snapshot (invariant 7).
    gate: Arc<crate::mysql::visibility::VisibilityGate>,
    sink: Arc<S>,
    documents: Arc<DocumentLoader>,
    stats: Arc<Stats>,
    syncer: Syncer<S>,
    /// The one writer of positions: the snapshot's position at the end.
    committer: Committer<S>,
    /// Where the load's progress (epoch, last key written) is kept.
    progress: Arc<CheckpointStore>,
    /// `pipeline.load_chunk`: documents per page.
    page_size: usize,
}

impl<S: Sink> Replicator<S> {
    /// The parts the initial load uses.
    pub fn loader(&self) -> Loader<S> {
        let parts = &self.parts;
        Loader {
            pool: parts.pool.clone(),
            gate: parts.gate.clone(),
            sink: parts.sink.clone(),
            documents: parts.loader.clone(),
            stats: parts.stats.clone(),
            syncer: parts.syncer(),
            committer: self.committer(),
            progress: self.checkpoint.clone(),
            page_size: parts.config.pipeline.load_chunk,
        }
    }
}

impl<S: Sink> Loader<S> {
    /// Loads everything and returns the position to stream from; `None` if cancelled.
    pub async fn initial_load(&self, cancel: &CancellationToken) -> Result<Option<Position>, RunError> {
        let loaded = retry(&self.stats.progress, cancel, "initial load", || self.load_once(cancel)).await;
        self.sink.end_load();
        let Some(position) = loaded?.flatten() else { return Ok(None) };
        self.progress.clear_bootstrap_progress()?;
        Ok(Some(position))
    }

    /// The load this run continues: the interrupted one when this sink
    /// still holds its epoch (its pages are there), else a new one from
    /// `snapshot` under a new epoch, stored in the sink and in the checkpoint
    /// store before any page is written. Either way, every write until
    /// `end_load` checks that the sink still holds the epoch.
    async fn claim(&self, snapshot: Position) -> Result<BootstrapProgress, RunError> {
        let stored_epoch = self.sink.stored_load_epoch().await?;
        Ok(match self.progress.bootstrap_progress()? {
            Some(progress) if progress.epoch.is_some() && progress.epoch == stored_epoch => {
                tracing::info!(position = %progress.position, after_key = ?progress.last_key, "initial load: resuming an interrupted load");
                self.sink.resume_load(progress.epoch.as_deref().unwrap_or_default());
                progress
            }
            stale => {
                if stale.is_some() {
                    tracing::warn!(
                        "initial load: the interrupted load's documents are not in this Redis (flushed or replaced, or the index version changed): starting it over"
                    );
                }
                tracing::info!(position = %snapshot, "initial load: reading a consistent snapshot");
                let epoch = format!("{:016x}", rand::random::<u64>());
                self.sink.begin_load(&epoch).await?;
                let progress = BootstrapProgress { position: snapshot, last_key: None, epoch: Some(epoch) };
                self.progress.set_bootstrap_progress(&progress)?;
                progress
            }
        })
    }

    async fn load_once(&self, cancel: &CancellationToken) -> Result<Option<Position>, RunError> {
        let started = Instant::now();
        let source = |e| SourceError::from_driver(e, "initial load");
        let mut conn = crate::mysql::connect::pooled(&self.pool).await?;
        let before = server::current_position(&mut conn).await?;
        // A transaction logged before `before` but not yet committed in the
        // engine would be missed by the snapshot and skipped by the stream
        // that starts at `before`. (MariaDB's snapshot reports its own exact
        // position below; the wait costs it one look.)
        self.stats.gate_used(self.gate.wait(&before).await?);
        let mut opts = TxOpts::default();
        opts.with_consistent_snapshot(true).with_readonly(true);
        let mut tx = conn.start_transaction(opts).await.map_err(source)?;
        let snapshot = match server::snapshot_position(&mut tx).await? {
            Some(mut exact) => {
                exact.gtid = server::gtid_state_at(&mut tx, &exact).await?;
                exact.server = before.server.clone();
                exact
            }
            None => before,
        };
        let mut progress = self.claim(snapshot).await?;
        let position = progress.position.clone();
        let mut after = progress.last_key.clone().map(DocumentKey);
        // Documents read by this run. No COUNT(*) up front: on MySQL it runs
        // the whole document query once more inside the snapshot (10-20 s at
        // 100,000 NDCs after a large update, past the query deadline at times).
        let mut loaded: u64 = 0;
        let page_size = self.page_size;
        // Two pages in flight: one written while the next is read, decided and
        // embedded, so Bedrock's calls and Redis's indexing overlap. The progress
        // moves only past a page whose write was acknowledged.
        let mut in_flight: Option<(Prepared, DocumentKey)> = None;
        loop {
            if cancel.is_cancelled() {
                tracing::info!(loaded, "initial load interrupted; the next run resumes where it stopped");
                return Ok(None);
            }
            let recent = in_flight.as_ref().map(|(prepared, _)| prepared.recent());
            let to_write = in_flight.take();
            let write = async {
                let Some((prepared, last_key)) = to_write else { return Ok(None) };
                self.syncer.write_prepared(prepared).await.map(|()| Some(last_key))
            };
            let next = async {
                let page = self.documents.page(&mut tx, after.as_ref(), page_size).await?;
                let Some(last_key) = page.last().map(|d| d.key.clone()) else { return Ok::<_, RunError>(None) };
                let documents = page.len() as u64;
                let wanted = page.into_iter().map(|d| (d.key.clone(), Some(d))).collect();
                let prepared = self.syncer.prepare(wanted, Default::default(), WhenUnavailable::Wait, recent.as_ref()).await?;
                Ok(Some((prepared, last_key, documents)))
            };
            let (written, next) = tokio::join!(write, next);
            if let Some(last_key) = written? {
                progress.last_key = Some(last_key.0.clone());
                self.progress.set_bootstrap_progress(&progress)?;
            }
            let Some((prepared, last_key, documents)) = next? else { break };
            after = Some(last_key.clone());
            in_flight = Some((prepared, last_key));
            loaded += documents;
            if loaded % (page_size as u64 * 20) < page_size as u64 {
                tracing::info!(
                    loaded,
                    embed_calls = self.stats.embed.calls(),
                    elapsed_s = started.elapsed().as_secs(),
                    "initial load progress"
                );
            }
        }
        tx.commit().await.map_err(source)?;
        self.sweep_orphans(&mut conn).await?;
        // Both positions to the snapshot's, Redis's still under the load's epoch.
        self.committer.rewind_to(&position).await?;
        // RediSearch's verdict on what the load wrote (a load resumed over an
        // earlier run's documents may meet hashes it cannot index).
        if let Some(verdict) = self.sink.verdict().await? {
            self.stats.set(Gauge::IndexFailures, verdict.indexing_failures);
            if verdict.indexing_failures > 0 {
                tracing::warn!(
                    failures = verdict.indexing_failures,
                    "RediSearch could not index some documents the load left in Redis: they are invisible to search; run --reconcile to find and repair them"
                );
            }
        }
        tracing::info!(
            read = loaded,
            embed_calls = self.stats.embed.calls(),
            written = self.stats.counted(Counter::Upserted),
            elapsed_s = started.elapsed().as_secs_f64(),
            %position,
            "initial load complete"
        );
        Ok(Some(position))
    }

    /// Removes Redis documents the source does not have (left over from an
    /// earlier life), a SCAN page at a time. Candidates are checked against
    /// *current* MySQL state, so documents written by an earlier, interrupted
    /// run of this load are kept.
    async fn sweep_orphans<Q: Queryable>(&self, conn: &mut Q) -> Result<(), RunError> {
        let syncer = &self.syncer;
        let mut scan = OrphanScan::default();
        let mut removed = 0;
        while let Some(orphans) = scan.next(syncer, conn).await? {
            self.stats.progress.beat_now();
            removed += orphans.len();
            syncer.sync_documents(orphans.into_iter().map(|k| (k, None)).collect(), WhenUnavailable::Wait).await?;
        }
        if removed > 0 {
            tracing::info!(orphans = removed, "initial load: removed documents the source no longer has");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

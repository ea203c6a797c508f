//! The apply loop: batches of source transactions -> Redis -> checkpoint.
//!
//! # The crash-safety invariant
//! [`apply_batch`] is the only code that advances the checkpoint, and it does
//! so only after Redis acknowledged the MULTI/EXEC holding every document the
//! batch touched (and the batch's commit position). A crash at any point
//! leaves the checkpoint at or before the last acknowledged batch; restarting
//! replays from there, and replay is idempotent.
//!
//! # Error handling
//! A batch that fails transiently (Redis or MySQL away, embedding throttled)
//! is retried as a whole with backoff; the position does not move meanwhile.
//! On shutdown the batch in flight is finished, never half-applied.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::reconcile;
use super::retry::retry;
use super::sync::sync_keys;
use super::{Replicator, RunError, Stats};
use crate::config::OnLostSync;
use crate::embed::Embedder;
use crate::mapping::router::AffectedValues;
use crate::position::Position;
use crate::source::{BinlogTailer, SourceError, Transaction};

/// Transactions buffered between the binlog reader and the apply loop.
const CHANNEL_CAPACITY: usize = 4096;
/// How often an otherwise idle writer looks for reconcile repairs.
const REPAIR_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Streams from `start` until cancelled or a definite error.
pub async fn run<E: Embedder>(r: &Replicator<E>, start: Position, cancel: CancellationToken) -> Result<(), RunError> {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let tailer = BinlogTailer::new(
        r.opts.clone(),
        r.config.mysql.server_id,
        &r.config.mysql.schema,
        r.router.tables().map(str::to_owned),
        Duration::from_secs(r.config.mysql.heartbeat_secs),
        r.config.mysql.resume_by,
    )
    .reporting_as(crate::source::preflight::replica_hostname(&r.config));
    let tail_cancel = cancel.child_token();
    let tail = tokio::spawn(tailer.run(start.clone(), tx, tail_cancel.clone()));
    tracing::info!(position = %start, "streaming");
    let applied = apply_loop(r, &mut rx, &cancel, start.clone()).await;
    tail_cancel.cancel();
    drop(rx);
    let tailed = tail.await.map_err(|e| RunError::Task(e.to_string()))?;
    applied?;
    tailed.map_err(RunError::from)
}

async fn apply_loop<E: Embedder>(
    r: &Replicator<E>,
    rx: &mut mpsc::Receiver<Transaction>,
    cancel: &CancellationToken,
    mut applied: Position,
) -> Result<(), RunError> {
    let max_transactions = r.config.pipeline.batch_max_transactions;
    let max_delay = Duration::from_millis(r.config.pipeline.batch_max_delay_ms);
    let mut repair_tick = tokio::time::interval(REPAIR_POLL);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = repair_tick.tick() => {
                if retry(cancel, "applying reconcile repairs", || apply_repairs(r)).await?.is_none() {
                    return Ok(());
                }
                continue;
            }
            next = rx.recv() => match next {
                Some(tx) => tx,
                None => return Ok(()), // reader stopped; its result says why
            },
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + max_delay;
        while batch.len() < max_transactions {
            match timeout_at(deadline, rx.recv()).await {
                Ok(Some(tx)) => batch.push(tx),
                Ok(None) | Err(_) => break,
            }
        }
        // The batch in flight is finished even when shutdown is requested meanwhile;
        // only the waits between retries give way to cancellation.
        let (kept, batch) = (&applied, &batch);
        let attempt = || async move {
            ensure_redis_kept(r, kept).await?;
            apply_batch(r, batch, cancel).await
        };
        if retry(cancel, "applying batch", attempt).await?.is_none() {
            return Ok(());
        }
        applied = batch.last().map(|t| t.commit.clone()).unwrap_or(applied);
    }
}

/// Errs with [`RunError::RedisRewound`] when Redis no longer holds the
/// position of the last batch it acknowledged: writing on would build on
/// missing documents. One GET per batch.
async fn ensure_redis_kept<E: Embedder>(r: &Replicator<E>, applied: &Position) -> Result<(), RunError> {
    let found = r.sink.position().await?;
    // Another lineage (resumed by GTID) cannot be ordered; the GTID state vouched for it.
    let kept = found.as_ref().is_some_and(|p| p.try_cmp(applied).map_or(true, |o| o.is_ge()));
    if kept { Ok(()) } else { Err(RunError::RedisRewound { expected: applied.clone(), found }) }
}

/// Rebuilds keys a reconcile queued for this writer (see `reconcile`), from
/// current MySQL state. Positions are not involved: the documents are simply
/// brought up to date, which is idempotent.
async fn apply_repairs<E: Embedder>(r: &Replicator<E>) -> Result<(), RunError> {
    let keys = r.sink.peek_repairs(r.config.pipeline.write_chunk * 10).await?;
    if keys.is_empty() {
        return Ok(());
    }
    let mut conn = crate::source::connect::pooled(&r.pool).await?;
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    sync_keys(r, &mut conn, unique, None).await?;
    r.sink.ack_repairs(keys.len()).await?;
    tracing::info!(documents = keys.len(), "applied reconcile repairs");
    Ok(())
}

/// Applies one batch of transactions and then, and only then, advances the checkpoint.
///
/// A batch holding DDL on a tracked table is applied, then every document is
/// reconciled against MySQL (the DDL may have changed rows without row
/// events), and only then does the position pass the DDL, so a crash anywhere
/// in between repeats the reconcile rather than skipping it.
pub async fn apply_batch<E: Embedder>(r: &Replicator<E>, batch: &[Transaction], cancel: &CancellationToken) -> Result<(), RunError> {
    let Some(last) = batch.last() else { return Ok(()) };
    let commit = &last.commit;
    let ddl = batch.iter().find_map(|t| t.ddl.as_ref().map(|d| (d, &t.commit)));
    if let (Some((ddl, at)), OnLostSync::Stop) = (ddl, r.config.pipeline.on_lost_sync) {
        return Err(SourceError::TrackedDdl { table: ddl.table.clone(), position: at.to_string(), statement: ddl.statement.clone() }.into());
    }
    // With DDL in the batch the position is stored only after the reconcile.
    let position_with_documents = if ddl.is_some() { None } else { Some(commit) };
    let mut affected = AffectedValues::default();
    r.router.collect(batch.iter().flat_map(|t| &t.changes), &mut affected);
    if affected.is_empty() {
        // Nothing tracked changed: record progress so a restart need not re-read these events.
        r.sink.apply(&[], position_with_documents).await?;
    } else {
        let mut conn = crate::source::connect::pooled(&r.pool).await?;
        let keys = r.router.resolve(&mut conn, &affected).await?;
        tracing::debug!(transactions = batch.len(), documents = keys.len(), position = %commit, "applying batch");
        sync_keys(r, &mut conn, keys.into_iter().collect(), position_with_documents).await?;
    }
    if let Some((ddl, _)) = ddl {
        tracing::warn!(table = %ddl.table, statement = %ddl.statement, "reconciling after DDL on a tracked table");
        reconcile::repair_as_writer(r, cancel).await?;
        r.sink.apply(&[], Some(commit)).await?;
    }
    // Redis acknowledged every document of the batch and the position: now it is safe.
    r.checkpoint()?.advance(commit)?;
    Stats::add(&r.stats.transactions, batch.len() as u64);
    Stats::add(&r.stats.batches, 1);
    r.stats.applied_commit(last.committed_at);
    Ok(())
}

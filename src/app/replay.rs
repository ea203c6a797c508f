//! Pricing a replay before running it: `--replay-from POS --dry-run`.
//!
//! A replay re-applies every change from a stored position. Its writes are
//! idempotent, but its embedding calls cost money: this reads the binlog
//! from the position to the source's current end exactly as the streamer
//! would (same decoder, same routing, the same switch to a full diff past
//! `full_diff_share`), then compares the documents those changes touch with
//! what Redis holds, as a reconcile dry run does. It reports the
//! transactions, the documents that would be written or deleted, and the
//! embedding calls, texts, tokens and cost, with the model. Nothing is
//! written, no lease is taken, the checkpoint is not touched, and the
//! binlog is read under another replica id than the streamer's
//! ([`PRICING_SERVER_ID_BIT`]), so it can run beside a running drugsync.
//!
//! The end is the source's end of binlog when the pricing starts; a source
//! that keeps writing is read until its transactions pass that point, or
//! until the stream has been quiet for [`QUIET_END`] (the binlog may end in
//! events that are no transaction).

use crate::observe::stats::Counter;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::replicator::Connected;
use crate::apply::RunError;
use crate::apply::reconcile::{self, Mode, ReconcileReport, WantedTexts};
use crate::apply::stream::batch::Batch;
use crate::apply::stream::tail;
use crate::document::DocumentKey;
use crate::embed::Embedder;
use crate::mapping::router::Routed;
use crate::observe::Stats;
use crate::position::Position;
use crate::sink::Sink;

/// The pricing reads the binlog as replica `mysql.server_id` with this bit
/// flipped, so it can run beside the streamer without displacing it.
pub const PRICING_SERVER_ID_BIT: u32 = 1 << 31;

/// A stream quiet this long has delivered the binlog up to its end.
pub const QUIET_END: Duration = Duration::from_secs(3);

/// What a replay from `from` would do. Serialised as the `--output json` summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayEstimate {
    /// The position replayed from.
    pub from: String,
    /// The last commit read.
    pub to: String,
    /// Source transactions between them that touch tracked tables or not.
    pub transactions: u64,
    /// Whether the changes are too many to apply by key (or include DDL), so
    /// the replay would compare the whole index.
    pub full_diff: bool,
    /// The documents compared and what would be done, priced.
    #[serde(flatten)]
    pub report: ReconcileReport,
}

impl ReplayEstimate {
    /// The summary as a table for people.
    pub fn to_table(&self) -> String {
        let head = [
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("transactions", self.transactions.to_string()),
            ("full diff", self.full_diff.to_string()),
        ];
        let mut out: String = head.iter().map(|(k, v)| format!("{k:<16} {v:>14}\n")).collect();
        out.push_str(&self.report.to_table());
        out
    }
}

/// See the module docs.
pub async fn price_replay<S: Sink>(r: &Connected<S>, from: &Position, cancel: &CancellationToken) -> Result<ReplayEstimate, RunError> {
    let started = std::time::Instant::now();
    let reconciler = r.reconciler();
    let end = {
        let mut conn = crate::mysql::connect::pooled(&r.pool).await?;
        crate::mysql::server::check_position_exists(&mut conn, from).await?;
        crate::mysql::server::current_position(&mut conn).await?
    };
    let Some(limit) = r.tail().batch_key_limit(cancel).await? else { return Err(RunError::Cancelled) };
    let (batch, to) = read_until(r, from, &end, limit, cancel).await?;
    let transactions = batch.as_ref().map_or(0, |b| b.transactions as u64);
    let mut report;
    let full_diff = match &batch {
        None => {
            report = ReconcileReport::default();
            false
        }
        Some(batch) if batch.refusal.is_some() => {
            report = reconciler.pass(Mode::DryRun, cancel).await?;
            true
        }
        Some(batch) => {
            let mut conn = crate::mysql::connect::pooled(&r.pool).await?;
            match r.router.resolve(&mut conn, &batch.routing, limit).await? {
                Routed::Everything => {
                    report = reconciler.pass(Mode::DryRun, cancel).await?;
                    true
                }
                Routed::Keys(keys) => {
                    report = ReconcileReport::default();
                    let mut texts = WantedTexts::default();
                    let keys: Vec<DocumentKey> = keys.into_iter().collect();
                    for chunk in keys.chunks(r.config.pipeline.load_chunk) {
                        let docs = r.loader.load(&mut conn, chunk).await?;
                        // A key the source no longer has is a delete when Redis holds it.
                        let gone: Vec<DocumentKey> = chunk.iter().filter(|k| !docs.contains_key(*k)).cloned().collect();
                        report.orphans += r.sink.read_state(&gone).await?.iter().filter(|s| s.is_some()).count() as u64;
                        reconciler.assess(docs.into_values().collect(), &mut report, &mut texts).await?;
                    }
                    texts.price(&reconciler, &mut report).await?;
                    false
                }
            }
        }
    };
    report.mode = Mode::DryRun;
    report.model = r.embedder.space().model.clone();
    report.duration_secs = started.elapsed().as_secs_f64();
    Ok(ReplayEstimate { from: from.to_string(), to: to.to_string(), transactions, full_diff, report })
}

/// Reads the binlog from `from` and merges every transaction up to `end`
/// into one batch (bounded like any batch: past `limit` keys it stands for
/// everything). `None` when there was no transaction; with it, the last commit read.
async fn read_until<S: Sink>(
    r: &Connected<S>,
    from: &Position,
    end: &Position,
    limit: usize,
    cancel: &CancellationToken,
) -> Result<(Option<Batch>, Position), RunError> {
    let (tx, mut rx) = mpsc::channel(tail::CHANNEL_CAPACITY);
    let tail_cancel = cancel.child_token();
    // Another replica id than the streamer's: a server drops the older of two connections with one id.
    let server_id = r.config.mysql.server_id ^ PRICING_SERVER_ID_BIT;
    let tail = tokio::spawn(r.tail().reader(limit, server_id).run(from.clone(), tx, tail_cancel.clone()));
    let mut batch: Option<Batch> = None;
    let mut last = from.clone();
    let ended = loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => break Err(RunError::Cancelled),
            next = tokio::time::timeout(QUIET_END, rx.recv()) => next,
        };
        let transaction = match next {
            Err(_) | Ok(None) => break Ok(()),
            Ok(Some(in_flight)) => in_flight.transaction,
        };
        r.stats.progress.beat_now();
        last = transaction.commit.clone();
        let reached = transaction.commit.try_cmp(end).is_ok_and(|o| o.is_ge());
        match &mut batch {
            Some(batch) => batch.push(transaction),
            None => batch = Some(Batch::start(transaction, limit)),
        }
        if reached {
            break Ok(());
        }
    };
    tail_cancel.cancel();
    drop(rx);
    let tailed = tail.await.map_err(|e| RunError::Task(e.to_string()))?;
    ended?;
    // The reader stops with an error only if it could not read (a purged file, access).
    tailed?;
    Ok((batch, last))
}

/// A replay under way: once the stream has applied everything up to the
/// end of binlog at the time it was asked for, [`Self::finish`] logs what
/// the replay did and what its embedding calls cost.
#[derive(Debug)]
pub struct ReplayWatch {
    from: Position,
    until: Position,
    spent: reconcile::Spending,
    pricing: crate::embed::Pricing,
    started: std::time::Instant,
    transactions: u64,
    upserts: u64,
    deletes: u64,
}

impl ReplayWatch {
    /// Starts watching a replay from `from`, up to the source's current end of binlog.
    pub async fn start<S: Sink>(r: &Connected<S>, from: &Position) -> Result<Self, RunError> {
        let mut conn = crate::mysql::connect::pooled(&r.pool).await?;
        let until = crate::mysql::server::current_position(&mut conn).await?;
        let stats = &r.stats;
        Ok(Self {
            from: from.clone(),
            until,
            spent: reconcile::Spending::start(&r.stats),
            pricing: r.pricing(),
            started: std::time::Instant::now(),
            transactions: stats.counted(Counter::Transactions),
            upserts: stats.counted(Counter::Upserted),
            deletes: stats.counted(Counter::Deleted),
        })
    }

    /// Whether `applied` has reached the end the replay was asked up to.
    pub fn reached(&self, applied: &Position) -> bool {
        applied.try_cmp(&self.until).is_ok_and(|o| o.is_ge())
    }

    /// Logs the replay's summary (`replay caught up`): transactions,
    /// documents written and deleted, embedding calls, texts, tokens and
    /// cost, with the model.
    pub fn finish(self, stats: &Stats, applied: &Position) {
        let mut report = ReconcileReport { mode: Mode::Repair, ..Default::default() };
        self.spent.record(stats, &self.pricing, &mut report);
        report.duration_secs = self.started.elapsed().as_secs_f64();
        let transactions = stats.counted(Counter::Transactions) - self.transactions;
        let upserts = stats.counted(Counter::Upserted) - self.upserts;
        let deletes = stats.counted(Counter::Deleted) - self.deletes;
        tracing::info!(
            from = %self.from,
            to = %applied,
            transactions,
            upserts,
            deletes,
            model = %report.model,
            embed_calls = report.embed_calls,
            embed_texts = report.embed_texts,
            tokens = report.tokens,
            estimated_cost_usd = report.estimated_cost_usd,
            elapsed_s = report.duration_secs,
            "replay caught up"
        );
    }
}

/// Logs the replay's summary once the stream has applied up to where it was
/// asked, and forgets the watch.
pub fn note_applied(stats: &Stats, watch: &mut Option<ReplayWatch>, applied: &Position) {
    if watch.as_ref().is_some_and(|w| w.reached(applied))
        && let Some(w) = watch.take()
    {
        w.finish(stats, applied);
    }
}

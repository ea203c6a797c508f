//! `--reconcile`: the nightly drift check, made cheap.
//!
//! Every document MySQL says should exist is compared, by hash, with what
//! Redis holds, and every document under the prefix that MySQL does not have
//! is an orphan. Nothing that matches is rewritten and no text whose vector
//! is stored or cached is embedded, so a pass without drift costs reads only.
//!
//! # One writer
//! When no streamer holds the index's writer lease, the reconcile takes it
//! and repairs directly. When a streamer is running, the reconcile writes
//! nothing itself: it hands the keys that differ to the streamer through a
//! repair queue in Redis, and the streamer rebuilds them from *current*
//! MySQL state. Either way a reconcile can never replace a document with
//! older data than the streamer wrote.

pub mod report;

use crate::observe::stats::Counter;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::replicator::Connected;
use crate::app::writer;
use crate::apply::RunError;
use crate::apply::sync::orphans::OrphanScan;
use crate::apply::sync::{Syncer, WhenUnavailable};
use crate::document::{Document, DocumentKey, TextHash};
use crate::embed::Pricing;
use crate::observe::Stats;
use crate::sink::{Lease, Sink, StoredState};
pub(crate) use report::Spending;
pub use report::{Mode, ReconcileReport};

/// Documents compared per round trip.
const PAGE: usize = 1000;

/// What a reconcile pass uses, and nothing more. Built from the parts of a
/// `--reconcile` process or of the streamer repairing as the writer
/// ([`Connected::reconciler`]); it holds no checkpoint and no committer, so
/// a reconcile cannot move a position.
pub struct Reconciler<S> {
    pool: mysql_async::Pool,
    sink: Arc<S>,
    loader: Arc<crate::mapping::DocumentLoader>,
    stats: Arc<Stats>,
    syncer: Syncer<S>,
    pricing: Pricing,
    /// `redis.lease_ttl_secs`: the writer lease a repairing reconcile holds.
    lease_ttl: Duration,
    /// `pipeline.stall_timeout_secs`: how long a pass may make no progress.
    stall: Duration,
}

impl<S: Sink> Connected<S> {
    /// The parts a reconcile pass uses.
    pub fn reconciler(&self) -> Reconciler<S> {
        Reconciler {
            pool: self.pool.clone(),
            sink: self.sink.clone(),
            loader: self.loader.clone(),
            stats: self.stats.clone(),
            syncer: self.syncer(),
            pricing: self.pricing(),
            lease_ttl: Duration::from_secs(self.config.redis.lease_ttl_secs),
            stall: Duration::from_secs(self.config.pipeline.stall_timeout_secs),
        }
    }
}

impl<S: Sink> Reconciler<S> {
    /// Runs one reconcile pass. `dry_run` reports and changes nothing.
    pub async fn reconcile(&self, dry_run: bool, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
        let started = Instant::now();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drugsync".into());
        let holder = format!("reconcile:{host}:{}", std::process::id());
        let lease = self.sink.lease(holder, self.lease_ttl);
        let mode = self.choose_mode(dry_run, &lease).await?;
        let renewing = CancellationToken::new();
        let stalled = CancellationToken::new();
        let progress = self.stats.progress.clone();
        // The silence the watchdog measures starts now, not when the stats were made.
        progress.beat_now();
        let renewer = (mode == Mode::Repair).then(|| {
            let lost = Arc::new(AtomicBool::new(false));
            tokio::spawn(writer::keep_renewed(
                lease.clone(),
                renewing.clone(),
                lost,
                (progress.clone(), self.stats.redis_seen.clone()),
                self.stall,
                stalled.clone(),
            ))
        });
        let result = tokio::select! {
            result = self.pass(mode, cancel) => result,
            _ = stalled.cancelled() => Err(RunError::Stalled { secs: progress.silent_for().as_secs() }),
        };
        renewing.cancel();
        if let Some(renewer) = renewer {
            renewer.await.ok();
            lease.release().await.ok();
        }
        let mut report = result?;
        report.duration_secs = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// What this pass may do: report only (`dry_run`); repair, fenced by
    /// `lease`, when it can take the lease; else hand the differing keys to
    /// the streamer that holds it.
    async fn choose_mode(&self, dry_run: bool, lease: &S::Lease) -> Result<Mode, RunError> {
        if dry_run {
            return Ok(Mode::DryRun);
        }
        if lease.try_acquire().await? {
            self.sink.fence_with(Some(lease.holder().to_owned()));
            return Ok(Mode::Repair);
        }
        tracing::info!("a streamer holds the writer lease: handing differing keys to it");
        Ok(Mode::Handoff)
    }

    /// A repairing pass for a caller that already holds the writer lease (the
    /// streamer recovering from a purged position or DDL on a tracked table).
    pub async fn repair_as_writer(&self, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
        let started = Instant::now();
        let mut report = self.pass(Mode::Repair, cancel).await?;
        report.duration_secs = started.elapsed().as_secs_f64();
        tracing::info!(
            checked = report.checked,
            missing = report.missing,
            stale_fields = report.stale_fields,
            stale_vectors = report.stale_vectors,
            orphans = report.orphans,
            unindexed = report.unindexed,
            embed_calls = report.embed_calls,
            "reconcile repaired drift"
        );
        Ok(report)
    }

    pub(crate) async fn pass(&self, mode: Mode, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
        let mut report = ReconcileReport { mode, ..Default::default() };
        let spent = Spending::start(&self.stats);
        let mut conn = crate::mysql::connect::pooled(&self.pool).await?;
        let progress = Progress::new(self.loader.count(&mut conn).await?);
        // RediSearch's own verdict: only when it admits failures is the index
        // asked, page by page, which current documents it holds.
        let failures = self.sink.verdict().await?.map_or(0, |v| v.indexing_failures);
        if failures > 0 {
            tracing::warn!(failures, "RediSearch reports hashes it could not index: looking for current documents search cannot find");
        }
        let mut texts = WantedTexts::default();
        let mut after: Option<DocumentKey> = None;
        loop {
            if cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            let page = self.loader.page(&mut conn, after.as_ref(), PAGE).await?;
            self.stats.progress.beat_now();
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let kept = (failures > 0).then(|| page.clone());
            let differing = self.assess(page, &mut report, &mut texts).await?;
            let differing_keys: std::collections::HashSet<DocumentKey> = differing.iter().map(|d| d.key.clone()).collect();
            self.repair(mode, differing.into_iter().map(|d| (d.key.clone(), Some(d))).collect(), &mut report).await?;
            if let Some(page) = kept {
                let current: Vec<Document> = page.into_iter().filter(|d| !differing_keys.contains(&d.key)).collect();
                self.repair_unindexed(mode, current, &mut report).await?;
            }
            progress.set(report.checked);
        }
        progress.finish();

        // Orphans a SCAN page at a time, checked against current MySQL state:
        // nothing here holds more than a page, whatever the size of the index.
        let mut scan = OrphanScan::default();
        while let Some(orphans) = scan.next(&self.syncer, &mut conn).await? {
            if cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            self.stats.progress.beat_now();
            report.orphans += orphans.len() as u64;
            self.repair(mode, orphans.into_iter().map(|k| (k, None)).collect(), &mut report).await?;
        }

        if mode == Mode::DryRun {
            texts.price(self, &mut report).await?;
        } else {
            spent.record(&self.stats, &self.pricing, &mut report);
        }
        Ok(report)
    }

    /// Compares `docs` with what Redis holds: counts each kind of drift in
    /// `report` and `checked`, notes the texts that would need a vector, and
    /// returns the documents that differ.
    pub(crate) async fn assess(
        &self,
        docs: Vec<Document>,
        report: &mut ReconcileReport,
        texts: &mut WantedTexts,
    ) -> Result<Vec<Document>, RunError> {
        let keys: Vec<DocumentKey> = docs.iter().map(|d| d.key.clone()).collect();
        let states = self.sink.read_state(&keys).await?;
        report.checked += keys.len() as u64;
        let mut differing = Vec::new();
        for (doc, state) in docs.into_iter().zip(states) {
            let drift = classify(&doc, state.as_ref());
            match drift {
                Drift::None => {
                    self.stats.count(Counter::Unchanged, 1);
                    continue;
                }
                Drift::Missing => report.missing += 1,
                Drift::Fields => report.stale_fields += 1,
                Drift::Vector => report.stale_vectors += 1,
            }
            if drift != Drift::Fields {
                texts.0.entry(doc.text_hash.clone()).or_insert(doc.text.chars().count());
            }
            differing.push(doc);
        }
        Ok(differing)
    }

    async fn repair(&self, mode: Mode, wanted: Vec<(DocumentKey, Option<Document>)>, report: &mut ReconcileReport) -> Result<(), RunError> {
        if wanted.is_empty() {
            return Ok(());
        }
        match mode {
            Mode::DryRun => Ok(()),
            Mode::Repair => self.syncer.sync_documents(wanted, WhenUnavailable::Owe).await,
            Mode::Handoff => {
                let keys: Vec<DocumentKey> = wanted.into_iter().map(|(k, _)| k).collect();
                self.sink.push_repairs(&keys).await?;
                report.handed_off += keys.len() as u64;
                Ok(())
            }
        }
    }

    /// Of `current` (documents Redis holds exactly as MySQL says), those the
    /// index does not hold are drift: counted, marked out of date and rebuilt,
    /// which either gets them indexed or quarantines them with the reason
    /// (see `DocumentLoader::unindexable`).
    async fn repair_unindexed(&self, mode: Mode, current: Vec<Document>, report: &mut ReconcileReport) -> Result<(), RunError> {
        let keys: Vec<DocumentKey> = current.iter().map(|d| d.key.clone()).collect();
        let unindexed = self.sink.unindexed(&keys).await?;
        if unindexed.is_empty() {
            return Ok(());
        }
        report.unindexed += unindexed.len() as u64;
        if mode != Mode::DryRun {
            self.sink.mark_out_of_date(&unindexed).await?;
        }
        let unindexed: std::collections::HashSet<DocumentKey> = unindexed.into_iter().collect();
        let wanted: Vec<(DocumentKey, Option<Document>)> =
            current.into_iter().filter(|d| unindexed.contains(&d.key)).map(|d| (d.key.clone(), Some(d))).collect();
        self.repair(mode, wanted, report).await
    }
}

/// Distinct texts a dry run found in need of a vector (hash -> characters):
/// held to count each text once, 64 bytes of hash and a count per text.
#[derive(Debug, Default)]
pub(crate) struct WantedTexts(BTreeMap<TextHash, usize>);

impl WantedTexts {
    /// What embedding them would cost: the texts the cache does not hold, in
    /// calls of the model's batch size, tokens estimated at characters / 4.
    pub(crate) async fn price<S: Sink>(&self, r: &Reconciler<S>, report: &mut ReconcileReport) -> Result<(), RunError> {
        let limit = r.pricing.input_char_limit;
        let wanted: Vec<(&TextHash, &usize)> = self.0.iter().collect();
        // A page at a time: the cache answers with whole vectors (4 KB each at 1,024 dimensions).
        for page in wanted.chunks(PAGE) {
            let hashes: Vec<&TextHash> = page.iter().map(|(hash, _)| *hash).collect();
            let cached = r.sink.cached_vectors(&hashes).await?;
            for ((_, chars), hit) in page.iter().zip(cached) {
                if hit.is_none() {
                    report.embed_texts += 1;
                    report.tokens += (*(*chars).min(&limit) as u64).div_ceil(4);
                }
            }
        }
        report.embed_calls = report.embed_texts.div_ceil(r.pricing.texts_per_call as u64);
        report::cost(&r.pricing, report);
        Ok(())
    }
}

/// How one document differs from what Redis holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drift {
    None,
    Missing,
    Fields,
    Vector,
}

fn classify(doc: &Document, state: Option<&StoredState>) -> Drift {
    match state {
        None => Drift::Missing,
        Some(s) if s.doc_hash.as_ref() == Some(&doc.doc_hash) && s.vector_ok => Drift::None,
        Some(s) if s.text_hash.as_ref() == Some(&doc.text_hash) && s.vector_ok => Drift::Fields,
        Some(_) => Drift::Vector,
    }
}

/// A bar on a terminal, a log line every 10% otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    logged: std::cell::Cell<u64>,
}

impl Progress {
    fn new(total: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("reconcile [{bar:40}] {pos}/{len} documents ({eta} left)")
                    .expect("static template"),
            );
            bar
        });
        Self { bar, total, logged: std::cell::Cell::new(0) }
    }

    fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let step = (self.total / 10).max(1);
                if done / step > self.logged.get() {
                    self.logged.set(done / step);
                    tracing::info!(checked = done, total = self.total, "reconcile progress");
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests;

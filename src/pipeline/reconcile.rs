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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::replicator::Connected;
use super::sync::orphans::OrphanScan;
use super::sync::{Syncer, WhenUnavailable, sync_documents};
use super::{RunError, Stats, writer};
use crate::document::{Document, DocumentKey, TextHash};
use crate::embed::Embedder;
use crate::sink::{RedisSink, StoredState};

/// Documents compared per round trip.
const PAGE: usize = 1000;

/// What a reconcile found and did. Serialised as the `--output json` summary.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ReconcileReport {
    /// How the drift was repaired (`repair`, `handoff` or `dry-run`).
    pub mode: Mode,
    /// Documents MySQL says should exist.
    pub checked: u64,
    /// Of those, absent from Redis.
    pub missing: u64,
    /// Present with the right vector but other field values.
    pub stale_fields: u64,
    /// Present with a vector for another text (or a broken one).
    pub stale_vectors: u64,
    /// In Redis but not (or no longer) in MySQL.
    pub orphans: u64,
    /// Keys handed to the running streamer (handoff mode).
    pub handed_off: u64,
    /// The embedding model calls are made to (or would be).
    pub model: String,
    /// Embedding calls made (repair mode) or that would be made (dry run).
    pub embed_calls: u64,
    /// Distinct texts embedded (or that would be): a call carries several with batching models.
    pub embed_texts: u64,
    /// Input tokens: as the service reported them (estimated at characters / 4
    /// where it does not say, and in a dry run).
    pub tokens: u64,
    /// Estimated cost in USD of the embedding calls (`embed.price_per_1k_tokens`, by model).
    pub estimated_cost_usd: f64,
    /// Wall-clock seconds.
    pub duration_secs: f64,
}

impl ReconcileReport {
    /// Documents that differ in any way.
    pub fn drift(&self) -> u64 {
        self.missing + self.stale_fields + self.stale_vectors + self.orphans
    }

    /// The summary as a table for people.
    pub fn to_table(&self) -> String {
        let rows: [(&str, String); 13] = [
            ("mode", self.mode.as_str().to_owned()),
            ("checked", self.checked.to_string()),
            ("missing", self.missing.to_string()),
            ("stale fields", self.stale_fields.to_string()),
            ("stale vectors", self.stale_vectors.to_string()),
            ("orphans", self.orphans.to_string()),
            ("handed off", self.handed_off.to_string()),
            ("model", self.model.clone()),
            ("embed calls", self.embed_calls.to_string()),
            ("embed texts", self.embed_texts.to_string()),
            ("tokens", self.tokens.to_string()),
            ("est. cost (USD)", format!("{:.6}", self.estimated_cost_usd)),
            ("duration (s)", format!("{:.2}", self.duration_secs)),
        ];
        rows.iter().map(|(k, v)| format!("{k:<16} {v:>14}\n")).collect()
    }
}

/// How the drift found is repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Found and priced, nothing changed.
    #[default]
    DryRun,
    /// This process held the writer lease and wrote.
    Repair,
    /// A running streamer holds the lease: the differing keys went to it.
    Handoff,
}

impl Mode {
    /// The name in summaries and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DryRun => "dry-run",
            Self::Repair => "repair",
            Self::Handoff => "handoff",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reconcile pass uses, and nothing more. Built from the parts of a
/// `--reconcile` process or of the streamer repairing as the writer
/// ([`Connected::reconciler`]); it holds no checkpoint and no committer, so
/// a reconcile cannot move a position.
pub struct Reconciler<'a, E> {
    pool: &'a mysql_async::Pool,
    sink: &'a RedisSink,
    loader: &'a crate::mapping::DocumentLoader,
    stats: &'a Stats,
    syncer: Syncer<'a, E>,
    pricing: Pricing,
    /// `redis.lease_ttl_secs`: the writer lease a repairing reconcile holds.
    lease_ttl: Duration,
    /// `pipeline.stall_timeout_secs`: how long a pass may make no progress.
    stall: Duration,
}

impl<E: Embedder> Connected<E> {
    /// The parts a reconcile pass uses.
    pub fn reconciler(&self) -> Reconciler<'_, E> {
        Reconciler {
            pool: &self.pool,
            sink: &self.sink,
            loader: &self.loader,
            stats: &self.stats,
            syncer: self.syncer(),
            pricing: Pricing::of(self),
            lease_ttl: Duration::from_secs(self.config.redis.lease_ttl_secs),
            stall: Duration::from_secs(self.config.pipeline.stall_timeout_secs),
        }
    }
}

/// How embedding is priced in summaries: the model, its input limit and
/// batch size, and its price per 1,000 input tokens.
#[derive(Debug, Clone)]
pub(super) struct Pricing {
    model: String,
    input_char_limit: usize,
    texts_per_call: usize,
    price_per_1k: f64,
}

impl Pricing {
    pub(super) fn of<E: Embedder>(c: &Connected<E>) -> Self {
        let embed = &c.config.embed;
        Self {
            model: c.embedder.space().model.clone(),
            input_char_limit: embed.input_char_limit(),
            texts_per_call: embed.texts_per_call(),
            price_per_1k: embed.price_per_1k(),
        }
    }

    /// Puts the model and the cost of `report.tokens` into `report`.
    fn cost(&self, report: &mut ReconcileReport) {
        report.model = self.model.clone();
        report.estimated_cost_usd = report.tokens as f64 / 1000.0 * self.price_per_1k;
    }
}

/// Runs one reconcile pass. `dry_run` reports and changes nothing.
pub async fn reconcile<E: Embedder>(r: &Reconciler<'_, E>, dry_run: bool, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
    let started = Instant::now();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drugsync".into());
    let holder = format!("reconcile:{host}:{}", std::process::id());
    let lease = r.sink.lease(holder, r.lease_ttl);
    let mode = if dry_run {
        Mode::DryRun
    } else if lease.try_acquire().await? {
        r.sink.fence_with(Some(lease.holder().to_owned()));
        Mode::Repair
    } else {
        tracing::info!("a streamer holds the writer lease: handing differing keys to it");
        Mode::Handoff
    };
    let renewing = CancellationToken::new();
    let stalled = CancellationToken::new();
    let progress = r.stats.progress.clone();
    let renewer = (mode == Mode::Repair).then(|| {
        let lost = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer::keep_renewed(
            lease.clone(),
            renewing.clone(),
            lost,
            (progress.clone(), r.stats.redis_seen.clone()),
            r.stall,
            stalled.clone(),
        ))
    });
    let result = tokio::select! {
        result = progress.scope(pass(r, mode, cancel)) => result,
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

/// A repairing pass for a caller that already holds the writer lease (the
/// streamer recovering from a purged position or DDL on a tracked table).
pub async fn repair_as_writer<E: Embedder>(r: &Reconciler<'_, E>, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
    let started = Instant::now();
    let mut report = pass(r, Mode::Repair, cancel).await?;
    report.duration_secs = started.elapsed().as_secs_f64();
    tracing::info!(
        checked = report.checked,
        missing = report.missing,
        stale_fields = report.stale_fields,
        stale_vectors = report.stale_vectors,
        orphans = report.orphans,
        embed_calls = report.embed_calls,
        "reconcile repaired drift"
    );
    Ok(report)
}

pub(super) async fn pass<E: Embedder>(r: &Reconciler<'_, E>, mode: Mode, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
    let mut report = ReconcileReport { mode, ..Default::default() };
    let spent = Spending::start(r.stats);
    let mut conn = crate::source::connect::pooled(r.pool).await?;
    let progress = Progress::new(r.loader.count(&mut conn).await?);
    let mut texts = WantedTexts::default();
    let mut after: Option<DocumentKey> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let page = r.loader.page(&mut conn, after.as_ref(), PAGE).await?;
        super::progress::beat();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        let differing = assess(r, page, &mut report, &mut texts).await?;
        repair(r, mode, differing.into_iter().map(|d| (d.key.clone(), Some(d))).collect(), &mut report).await?;
        progress.set(report.checked);
    }
    progress.finish();

    // Orphans a SCAN page at a time, checked against current MySQL state:
    // nothing here holds more than a page, whatever the size of the index.
    let mut scan = OrphanScan::default();
    while let Some(orphans) = scan.next(&r.syncer, &mut conn).await? {
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        super::progress::beat();
        report.orphans += orphans.len() as u64;
        repair(r, mode, orphans.into_iter().map(|k| (k, None)).collect(), &mut report).await?;
    }

    if mode == Mode::DryRun {
        texts.price(r, &mut report).await?;
    } else {
        spent.record(r.stats, &r.pricing, &mut report);
    }
    Ok(report)
}

/// Compares `docs` with what Redis holds: counts each kind of drift in
/// `report` and `checked`, notes the texts that would need a vector, and
/// returns the documents that differ.
pub(super) async fn assess<E: Embedder>(
    r: &Reconciler<'_, E>,
    docs: Vec<Document>,
    report: &mut ReconcileReport,
    texts: &mut WantedTexts,
) -> Result<Vec<Document>, RunError> {
    let keys: Vec<DocumentKey> = docs.iter().map(|d| d.key.clone()).collect();
    let states = r.sink.read_state(&keys).await?;
    report.checked += keys.len() as u64;
    let mut differing = Vec::new();
    for (doc, state) in docs.into_iter().zip(states) {
        let drift = classify(&doc, state.as_ref());
        match drift {
            Drift::None => {
                Stats::add(&r.stats.unchanged, 1);
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

/// Distinct texts a dry run found in need of a vector (hash -> characters).
#[derive(Debug, Default)]
pub(super) struct WantedTexts(BTreeMap<TextHash, usize>);

impl WantedTexts {
    /// What embedding them would cost: the texts the cache does not hold, in
    /// calls of the model's batch size, tokens estimated at characters / 4.
    pub(super) async fn price<E: Embedder>(&self, r: &Reconciler<'_, E>, report: &mut ReconcileReport) -> Result<(), RunError> {
        let hashes: Vec<&TextHash> = self.0.keys().collect();
        let cached = r.sink.cached_vectors(&hashes).await?;
        let limit = r.pricing.input_char_limit;
        for (chars, hit) in self.0.values().zip(cached) {
            if hit.is_none() {
                report.embed_texts += 1;
                report.tokens += (*chars.min(&limit) as u64).div_ceil(4);
            }
        }
        report.embed_calls = report.embed_texts.div_ceil(r.pricing.texts_per_call as u64);
        r.pricing.cost(report);
        Ok(())
    }
}

/// The embedding counters at the start of a pass, to report what it spent.
#[derive(Debug)]
pub(super) struct Spending {
    calls: u64,
    texts: u64,
    tokens: u64,
}

impl Spending {
    pub(super) fn start(stats: &Stats) -> Self {
        let e = &stats.embed;
        Self { calls: e.calls(), texts: Stats::get(&e.texts), tokens: e.billed_tokens() }
    }

    /// Puts what was spent since [`Self::start`] into `report`.
    pub(super) fn record(&self, stats: &Stats, pricing: &Pricing, report: &mut ReconcileReport) {
        let e = &stats.embed;
        report.embed_calls = e.calls() - self.calls;
        report.embed_texts = Stats::get(&e.texts) - self.texts;
        report.tokens = e.billed_tokens() - self.tokens;
        pricing.cost(report);
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
        Some(s) if s.doc_hash.as_deref() == Some(doc.doc_hash.as_str()) && s.vector_ok => Drift::None,
        Some(s) if s.text_hash.as_deref() == Some(doc.text_hash.0.as_str()) && s.vector_ok => Drift::Fields,
        Some(_) => Drift::Vector,
    }
}

async fn repair<E: Embedder>(
    r: &Reconciler<'_, E>,
    mode: Mode,
    wanted: Vec<(DocumentKey, Option<Document>)>,
    report: &mut ReconcileReport,
) -> Result<(), RunError> {
    if wanted.is_empty() {
        return Ok(());
    }
    match mode {
        Mode::DryRun => Ok(()),
        Mode::Repair => sync_documents(&r.syncer, wanted, None, WhenUnavailable::Owe).await,
        Mode::Handoff => {
            let keys: Vec<DocumentKey> = wanted.into_iter().map(|(k, _)| k).collect();
            r.sink.push_repairs(&keys).await?;
            report.handed_off += keys.len() as u64;
            Ok(())
        }
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

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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::sync::{WhenUnavailable, sync_documents};
use super::{Replicator, RunError, Stats, writer};
use crate::document::{Document, DocumentKey, TextHash};
use crate::embed::Embedder;
use crate::sink::StoredState;

/// Documents compared per round trip.
const PAGE: usize = 1000;

/// What a reconcile found and did. Serialised as the `--output json` summary.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ReconcileReport {
    /// `repair` (this process wrote), `handoff` (a running streamer repairs) or `dry-run`.
    pub mode: String,
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
    /// Embedding calls made (repair mode) or that would be made (dry run).
    pub embed_calls: u64,
    /// Input tokens billed (repair mode) or estimated (dry run: characters / 4).
    pub tokens: u64,
    /// Estimated cost in USD of the embedding calls (`embed.price_per_1k_tokens`).
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
        let rows: [(&str, String); 11] = [
            ("mode", self.mode.clone()),
            ("checked", self.checked.to_string()),
            ("missing", self.missing.to_string()),
            ("stale fields", self.stale_fields.to_string()),
            ("stale vectors", self.stale_vectors.to_string()),
            ("orphans", self.orphans.to_string()),
            ("handed off", self.handed_off.to_string()),
            ("embed calls", self.embed_calls.to_string()),
            ("tokens", self.tokens.to_string()),
            ("est. cost (USD)", format!("{:.6}", self.estimated_cost_usd)),
            ("duration (s)", format!("{:.2}", self.duration_secs)),
        ];
        rows.iter().map(|(k, v)| format!("{k:<16} {v:>14}\n")).collect()
    }
}

/// How the drift found is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    DryRun,
    Repair,
    Handoff,
}

/// Runs one reconcile pass. `dry_run` reports and changes nothing.
pub async fn reconcile<E: Embedder>(r: &Replicator<E>, dry_run: bool, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
    let started = Instant::now();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drugsync".into());
    let holder = format!("reconcile:{host}:{}", std::process::id());
    let lease = r.sink.lease(holder, Duration::from_secs(r.config.redis.lease_ttl_secs));
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
    let stall = Duration::from_secs(r.config.pipeline.stall_timeout_secs);
    let renewer = (mode == Mode::Repair).then(|| {
        let lost = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer::keep_renewed(
            lease.clone(),
            renewing.clone(),
            lost,
            (progress.clone(), r.stats.redis_seen.clone()),
            stall,
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
    report.estimated_cost_usd = report.tokens as f64 / 1000.0 * r.config.embed.price_per_1k_tokens;
    Ok(report)
}

/// A repairing pass for a caller that already holds the writer lease (the
/// streamer recovering from a purged position or DDL on a tracked table).
pub async fn repair_as_writer<E: Embedder>(r: &Replicator<E>, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
    let started = Instant::now();
    let mut report = pass(r, Mode::Repair, cancel).await?;
    report.duration_secs = started.elapsed().as_secs_f64();
    report.estimated_cost_usd = report.tokens as f64 / 1000.0 * r.config.embed.price_per_1k_tokens;
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

async fn pass<E: Embedder>(r: &Replicator<E>, mode: Mode, cancel: &CancellationToken) -> Result<ReconcileReport, RunError> {
    let mut report = ReconcileReport {
        mode: match mode {
            Mode::DryRun => "dry-run",
            Mode::Repair => "repair",
            Mode::Handoff => "handoff",
        }
        .into(),
        ..Default::default()
    };
    let calls_before = r.stats.embed.calls();
    let tokens_before = Stats::get(&r.stats.embed.tokens);
    let mut conn = crate::source::connect::pooled(&r.pool).await?;
    let progress = Progress::new(r.loader.count(&mut conn).await?);
    let mut seen: HashSet<DocumentKey> = HashSet::new();
    // Dry run: distinct texts that would need a vector.
    let mut wanted_texts: BTreeMap<TextHash, usize> = BTreeMap::new();
    let mut after: Option<DocumentKey> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let page = r.loader.page(&mut conn, after.as_ref(), PAGE).await?;
        super::progress::beat();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        let keys: Vec<DocumentKey> = page.iter().map(|d| d.key.clone()).collect();
        let states = r.sink.read_state(&keys).await?;
        let mut differing: Vec<Document> = Vec::new();
        for (doc, state) in page.into_iter().zip(states) {
            seen.insert(doc.key.clone());
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
                wanted_texts.entry(doc.text_hash.clone()).or_insert(doc.text.chars().count());
            }
            differing.push(doc);
        }
        report.checked += keys.len() as u64;
        repair(r, mode, differing.into_iter().map(|d| (d.key.clone(), Some(d))).collect(), &mut report).await?;
        progress.set(report.checked);
    }
    progress.finish();

    let orphans: Vec<(DocumentKey, Option<Document>)> =
        r.sink.document_keys().await?.into_iter().filter(|k| !seen.contains(k)).map(|k| (k, None)).collect();
    report.orphans = orphans.len() as u64;
    repair(r, mode, orphans, &mut report).await?;

    if mode == Mode::DryRun {
        let hashes: Vec<&TextHash> = wanted_texts.keys().collect();
        let cached = r.sink.cached_vectors(&hashes).await?;
        for (chars, hit) in wanted_texts.values().zip(cached) {
            if hit.is_none() {
                report.embed_calls += 1;
                report.tokens += (*chars as u64).div_ceil(4);
            }
        }
    } else {
        report.embed_calls = r.stats.embed.calls() - calls_before;
        report.tokens = Stats::get(&r.stats.embed.tokens) - tokens_before;
    }
    Ok(report)
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
    r: &Replicator<E>,
    mode: Mode,
    wanted: Vec<(DocumentKey, Option<Document>)>,
    report: &mut ReconcileReport,
) -> Result<(), RunError> {
    if wanted.is_empty() {
        return Ok(());
    }
    match mode {
        Mode::DryRun => Ok(()),
        Mode::Repair => sync_documents(r, wanted, None, WhenUnavailable::Owe).await,
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

//! What a reconcile found and spent: the summary it prints, how its
//! embedding work is priced, and the counters a pass starts from.

use serde::Serialize;

use crate::embed::Pricing;
use crate::observe::Stats;

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
    /// Current in Redis but not in the index: RediSearch could not index
    /// them, so no search finds them (looked for only when `FT.INFO`
    /// reports indexing failures).
    pub unindexed: u64,
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
        self.missing + self.stale_fields + self.stale_vectors + self.orphans + self.unindexed
    }

    /// The summary as a table for people.
    pub fn to_table(&self) -> String {
        let rows: [(&str, String); 14] = [
            ("mode", self.mode.as_str().to_owned()),
            ("checked", self.checked.to_string()),
            ("missing", self.missing.to_string()),
            ("stale fields", self.stale_fields.to_string()),
            ("stale vectors", self.stale_vectors.to_string()),
            ("orphans", self.orphans.to_string()),
            ("unindexed", self.unindexed.to_string()),
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

/// Puts the model and the cost of `report.tokens` into `report`.
pub(super) fn cost(pricing: &Pricing, report: &mut ReconcileReport) {
    report.model = pricing.model.clone();
    report.estimated_cost_usd = pricing.cost_usd(report.tokens);
}

/// The embedding counters at the start of a pass, to report what it spent.
#[derive(Debug)]
pub(crate) struct Spending {
    calls: u64,
    texts: u64,
    tokens: u64,
}

impl Spending {
    pub(crate) fn start(stats: &Stats) -> Self {
        let e = &stats.embed;
        Self { calls: e.calls(), texts: Stats::get(&e.texts), tokens: e.billed_tokens() }
    }

    /// Puts what was spent since [`Self::start`] into `report`.
    pub(crate) fn record(&self, stats: &Stats, pricing: &Pricing, report: &mut ReconcileReport) {
        let e = &stats.embed;
        report.embed_calls = e.calls() - self.calls;
        report.embed_texts = Stats::get(&e.texts) - self.texts;
        report.tokens = e.billed_tokens() - self.tokens;
        cost(pricing, report);
    }
}

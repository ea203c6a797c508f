//! `[pipeline]`, `[checkpoint]` and `[metrics]`: how the replicator runs.

use std::path::PathBuf;

use serde::Deserialize;

/// Local checkpoint store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// redb file holding the applied position; `DRUGSYNC_CHECKPOINT_PATH`.
    pub path: PathBuf,
}

/// Batching and chunk sizes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most source transactions coalesced into one Redis batch.
    #[serde(default = "default_batch_max_transactions")]
    pub batch_max_transactions: usize,
    /// The longest a batch keeps gathering while the source is busy and
    /// transactions arrive back to back, in ms. A lone change never waits
    /// (see `apply::stream`, "Batching only while busy").
    #[serde(default = "default_batch_max_delay_ms")]
    pub batch_max_delay_ms: u64,
    /// Keys per `WHERE key IN (...)` query when loading documents.
    #[serde(default = "default_load_chunk")]
    pub load_chunk: usize,
    /// Documents per Redis transaction (applies to the initial load and to huge batches).
    #[serde(default = "default_write_chunk")]
    pub write_chunk: usize,
    /// What to do when the binlog can no longer tell what changed: the stored
    /// position was purged (or is unusable), or DDL hit a tracked table.
    #[serde(default)]
    pub on_lost_sync: OnLostSync,
    /// A batch that routes to more than this share of the index's documents
    /// is applied by one full hash diff of the index (as a reconcile does)
    /// instead of key by key: a weekly FDB reload touches every drug.
    #[serde(default = "default_full_diff_share")]
    pub full_diff_share: f64,
    /// Most distinct routing values and document keys held for one batch;
    /// past it the batch is applied by a full hash diff whatever its share.
    /// This bounds memory however large a source transaction is.
    #[serde(default = "default_max_batch_keys")]
    pub max_batch_keys: usize,
    /// A writer that has been inside one step (a query, a write, an embedding
    /// call, a retry wait) for longer than this, in seconds, stops renewing
    /// its lease and exits, so a standby takes over. Every network wait has
    /// its own shorter deadline; this is the bound behind them all.
    #[serde(default = "default_stall_timeout_secs")]
    pub stall_timeout_secs: u64,
}

/// See [`PipelineConfig::on_lost_sync`].
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnLostSync {
    /// Reconcile every document against MySQL (cheap: hashes), then continue
    /// from the current server position (or past the DDL).
    #[default]
    Reconcile,
    /// Stop with an operator message; the position stays before the problem.
    Stop,
}

fn default_batch_max_transactions() -> usize {
    1000
}
/// A storm's batches as large as the fixed 200 ms window made them.
fn default_batch_max_delay_ms() -> u64 {
    200
}
fn default_load_chunk() -> usize {
    500
}
/// Measured with `examples/bench` at 125,000 documents (docs/benchmarks.md,
/// "Benchmarks"): key by key costs about 72 us a touched document, a full diff
/// about 58 us a document of the index, so they cross near 0.8. Half keeps
/// the slower path within 1.6x of the faster anywhere in between, and a
/// key-by-key batch at most half the index's keys.
fn default_full_diff_share() -> f64 {
    0.5
}
/// 100,000 keys are a few MB, and more than most indexes hold in a share.
fn default_max_batch_keys() -> usize {
    100_000
}
/// Above every single wait a healthy writer makes: a query (60 s), a
/// Redis reply (30 s), Bedrock's attempts (5 x 30 s), a backoff (30 s).
fn default_stall_timeout_secs() -> u64 {
    300
}
/// 100 documents per MULTI/EXEC keeps each transaction (synchronous HNSW
/// inserts) short enough not to stall searches noticeably.
fn default_write_chunk() -> usize {
    100
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max_transactions: default_batch_max_transactions(),
            batch_max_delay_ms: default_batch_max_delay_ms(),
            load_chunk: default_load_chunk(),
            write_chunk: default_write_chunk(),
            on_lost_sync: OnLostSync::default(),
            full_diff_share: default_full_diff_share(),
            max_batch_keys: default_max_batch_keys(),
            stall_timeout_secs: default_stall_timeout_secs(),
        }
    }
}

/// Prometheus endpoint settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics`, `/healthz` and `/readyz` on; empty = no endpoint.
    #[serde(default)]
    pub listen: String,
    /// `/readyz` fails when a source transaction has waited this many seconds
    /// to reach Redis (see `Stats::lag`).
    #[serde(default = "default_ready_max_lag_secs")]
    pub ready_max_lag_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: String::new(), ready_max_lag_secs: default_ready_max_lag_secs() }
    }
}

/// Five minutes: above the weekly reload's full diff (half a minute at full
/// FDB scale), far below a day of staleness.
fn default_ready_max_lag_secs() -> u64 {
    300
}

impl MetricsConfig {
    /// The address to listen on, `None` when metrics are off. Validated at load.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }
}

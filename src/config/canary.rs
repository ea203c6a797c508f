//! `[canary]`: the end-to-end freshness canary (off unless a table is named).

use serde::Deserialize;

/// The freshness canary: every `interval_secs` drugsync writes a heartbeat
/// row (`id` = `mysql.server_id`, `beat_ms` = now) to `table` in
/// `mysql.schema`, on its own connection; the row travels the binlog like
/// any change, and when the batch holding it is acknowledged by Redis the
/// time from the write to then is measured. Debezium's heartbeat action
/// query is the idea: lag measured end to end, and a quiet source still
/// shows a stream that delivers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The heartbeat table (operator-created, see docs/operations.md); unset = off.
    #[serde(default)]
    pub table: Option<String>,
    /// Seconds between heartbeats.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self { table: None, interval_secs: default_interval_secs() }
    }
}

fn default_interval_secs() -> u64 {
    10
}

/// The heartbeat table's column whose value the decoder keeps.
pub const CANARY_COLUMN: &str = "beat_ms";

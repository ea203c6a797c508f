//! `[mysql.visibility]`: how drugsync proves a batch's rows visible on MySQL
//! without GTIDs before it re-reads them (see `mysql::visibility`).

use serde::Deserialize;

/// The fence table's default name, in `mysql.schema`: the name docs/operations.md's
/// `CREATE TABLE` uses, so an operator who follows it needs no config.
pub const DEFAULT_FENCE_TABLE: &str = "drugsync_fence";

/// The visibility gate's settings. MariaDB and MySQL with `gtid_mode=ON`
/// need none of them: their gates are read-only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisibilityConfig {
    /// The InnoDB table in `mysql.schema` drugsync commits one row of
    /// (`id` = `mysql.server_id`) before each re-read on MySQL without GTIDs.
    /// Operator-created (docs/operations.md: Visibility); never a mapping or canary table.
    #[serde(default = "default_fence_table")]
    pub fence_table: String,
    /// Run on MySQL without GTIDs with no gate at all. A batch re-read a few
    /// milliseconds early then misses a commit and is applied stale until
    /// the next change to that drug or a reconcile; every such batch is
    /// counted (`drugsync_ungated_batches_total`). Off by default: the
    /// start refuses instead, naming the ways to a gate.
    #[serde(default)]
    pub allow_ungated_reads: bool,
}

impl Default for VisibilityConfig {
    fn default() -> Self {
        Self { fence_table: default_fence_table(), allow_ungated_reads: false }
    }
}

fn default_fence_table() -> String {
    DEFAULT_FENCE_TABLE.to_owned()
}

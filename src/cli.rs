//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_CONFIG_PATH;

/// drugsync: replicate FDB drug tables from MySQL binlog into a Redis vector index.
///
/// Tails the binlog of the FDB schema, rebuilds the drug documents each
/// committed change affects, embeds only texts that changed, and applies
/// incremental updates to the Redis Stack index. Progress is checkpointed
/// locally and only after Redis acknowledged it, so a restart resumes
/// without loss.
#[derive(Debug, Parser)]
#[command(name = "drugsync", version, about, long_about)]
pub struct Cli {
    /// Configuration file (TOML). URLs and secrets may come from the environment
    /// instead: DRUGSYNC_MYSQL_URL, DRUGSYNC_MYSQL_SECRET_ARN, DRUGSYNC_REDIS_URL,
    /// DRUGSYNC_SECRETS_ENDPOINT_URL, DRUGSYNC_EMBED_ENDPOINT_URL, DRUGSYNC_EMBED_API_KEY,
    /// DRUGSYNC_CHECKPOINT_PATH.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH, env = "DRUGSYNC_CONFIG", hide_env_values = true)]
    pub config: PathBuf,

    /// Log format: json for log shippers, text for people. Default: text on a terminal, json otherwise.
    #[arg(long, global = true, value_enum, env = "DRUGSYNC_LOG_FORMAT", hide_env_values = true)]
    pub log_format: Option<LogFormat>,

    /// Run one reconcile pass instead of replicating (the nightly job): compare
    /// every document MySQL says should exist with Redis by hash, write missing
    /// and stale ones, delete orphans, embed only texts not already stored. When
    /// a streamer is running it repairs the differing keys itself. Exits 0 on success.
    #[arg(long, conflicts_with_all = ["replay_from"])]
    pub reconcile: bool,

    /// With --reconcile or --replay-from: report what would be done
    /// (documents, embedding calls, texts, tokens and cost, with the model)
    /// and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --reconcile or --replay-from --dry-run: summary as a table
    /// (people) or JSON (machines).
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,

    /// Replay from a binlog position: FILE:OFFSET (as printed by `checkpoint show`
    /// or SHOW BINLOG EVENTS; a transaction boundary), or @GTID_STATE (MariaDB
    /// `@0-1-42`, MySQL `@uuid:1-100`). Checks that the server still has it,
    /// resets the checkpoint, then replicates from there.
    #[arg(long, value_name = "FILE:OFFSET | @GTID")]
    pub replay_from: Option<String>,

    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Summary format of --reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned table.
    Table,
    /// One JSON object.
    Json,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `checkpoint` subcommands.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Print the local checkpoint and the position stored in Redis with the last batch.
    Show,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate continuously (the default). Performs the initial load when no
    /// checkpoint exists, then streams. Stops cleanly on SIGTERM/SIGINT.
    Run,
    /// Where replication stands: positions, lag and age of the last commit,
    /// documents, quarantine, lease, the source's binlogs, the last error.
    /// Works whether drugsync runs or not; writes nothing.
    Status {
        /// A table (people) or one JSON object (machines).
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Inspect the checkpoint.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// DEVELOPMENT ONLY: drop and re-create the schema named in the config's
    /// mysql.schema with the 8 FDB tables and deterministic sample data.
    Seed {
        /// Number of rndc14 rows (500000 is full scale, ~25% active).
        #[arg(long, default_value_t = 2000)]
        ndcs: usize,
        /// Random seed; the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Required acknowledgement that the schema is destroyed.
        #[arg(long)]
        yes_destroy_schema: bool,
    },
}

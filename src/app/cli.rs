//! Command-line interface.

use std::path::PathBuf;

use clap::{ArgGroup, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::app::search::DEFAULT_EF_RUNTIME;
use crate::config::DEFAULT_CONFIG_PATH;
use crate::position::Position;

/// drugsync: replicate FDB drug tables from MySQL binlog into a Redis vector index.
///
/// Tails the binlog of the FDB schema, rebuilds the drug documents each
/// committed change affects, embeds only texts that changed, and applies
/// incremental updates to the Redis Stack index. Progress is checkpointed
/// locally and only after Redis acknowledged it, so a restart resumes
/// without loss.
#[derive(Debug, Parser)]
#[command(name = "drugsync", version, about, long_about)]
// The one-off passes: at most one of them.
#[command(group(ArgGroup::new("pass").args(["reconcile", "replay_from"])))]
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
    #[arg(long)]
    pub reconcile: bool,

    /// With --reconcile or --replay-from: report what would be done
    /// (documents, embedding calls, texts, tokens and cost, with the model)
    /// and change nothing.
    #[arg(long, requires = "pass")]
    pub dry_run: bool,

    /// With --reconcile or --replay-from --dry-run: summary as a table
    /// (people) or JSON (machines).
    #[arg(long, value_enum, requires = "pass")]
    pub output: Option<OutputFormat>,

    /// Replay from a binlog position: FILE:OFFSET (as printed by `checkpoint show`
    /// or SHOW BINLOG EVENTS; a transaction boundary), or @GTID_STATE (MariaDB
    /// `@0-1-42`, MySQL `@uuid:1-100`). Checks that the server still has it,
    /// resets the checkpoint, then replicates from there.
    #[arg(long, value_name = "FILE:OFFSET | @GTID")]
    pub replay_from: Option<Position>,

    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the process arguments, or prints the usage error and exits 2.
    /// Beyond what clap's declarations say: a pass (`--reconcile`,
    /// `--replay-from`) takes no subcommand (clap cannot declare that without
    /// also refusing the global `--config` before one), and `--output` with
    /// `--replay-from` needs `--dry-run` (a replay that runs prints no summary).
    pub fn parse_checked() -> Self {
        Self::check(Self::parse()).unwrap_or_else(|e| e.exit())
    }

    /// [`Self::parse_checked`] over given arguments, returning the error.
    pub fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::check(Self::try_parse_from(args)?)
    }

    fn check(cli: Self) -> Result<Self, clap::Error> {
        if cli.command.is_some() && (cli.reconcile || cli.replay_from.is_some()) {
            return Err(
                Self::command().error(clap::error::ErrorKind::ArgumentConflict, "--reconcile and --replay-from go without a subcommand")
            );
        }
        if cli.output.is_some() && cli.replay_from.is_some() && !cli.dry_run {
            return Err(Self::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--output with --replay-from needs --dry-run: a replay that runs replicates and prints no summary",
            ));
        }
        Ok(cli)
    }
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
    /// Ask the live index a question, as drug search does (through the
    /// alias): the query is embedded by the configured provider, and the
    /// nearest documents come back nearest first. Only reads.
    #[command(group(ArgGroup::new("what").required(true).args(["query", "ndc"])))]
    Search {
        /// The question, e.g. "cholesterol lowering tablet".
        query: Option<String>,
        /// Instead of a question, one document: what Redis holds for this key
        /// (fields, hashes, vector, indexed or not, quarantined, owed) and
        /// what the source builds for it now (its embedded text, in sync or not).
        #[arg(long)]
        ndc: Option<String>,
        /// How many documents.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// A RediSearch filter the documents must match, e.g. '@is_generic:{true}'.
        #[arg(long)]
        filter: Option<String>,
        /// Index fields to show besides the drug name, comma-separated.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// One hit per embedded text (its nearest document): the package
        /// sizes and labelers of one product share a text and would
        /// otherwise fill the k places.
        #[arg(long)]
        distinct: bool,
        /// HNSW's candidate list for this query: higher finds the true
        /// nearest neighbours more surely, slower.
        #[arg(long, default_value_t = DEFAULT_EF_RUNTIME)]
        ef_runtime: usize,
        /// A table (people) or one JSON array (machines).
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &str) -> Result<Cli, ErrorKind> {
        Cli::try_parse_checked(std::iter::once("drugsync").chain(args.split_whitespace())).map_err(|e| e.kind())
    }

    #[test]
    fn the_replay_position_is_parsed_by_clap() {
        let cli = parse("--replay-from binlog.000003:154").unwrap();
        assert_eq!(cli.replay_from, Some(Position::new("binlog.000003", 154)));
        let gtid = parse("--replay-from @0-1-42").unwrap().replay_from.unwrap();
        assert_eq!((gtid.is_gtid_only(), gtid.gtid.as_deref()), (true, Some("0-1-42")));
        assert_eq!(parse("--replay-from binlog.000001").err(), Some(ErrorKind::ValueValidation));
    }

    #[test]
    fn the_flag_rules_are_claps() {
        for good in [
            "",
            "--reconcile",
            "--reconcile --dry-run --output json",
            "--reconcile --output table",
            "--replay-from b.000001:4",
            "--replay-from b.000001:4 --dry-run --output json",
            "status --output json",
            "--config x.toml checkpoint show",
            "run",
        ] {
            assert!(parse(good).is_ok(), "{good:?} is a valid command line: {:?}", parse(good).err());
        }
        for (bad, kind) in [
            ("--reconcile --replay-from b.000001:4", ErrorKind::ArgumentConflict),
            ("--reconcile status", ErrorKind::ArgumentConflict),
            ("--replay-from b.000001:4 run", ErrorKind::ArgumentConflict),
            ("--dry-run", ErrorKind::MissingRequiredArgument),
            ("--output json", ErrorKind::MissingRequiredArgument),
            ("--replay-from b.000001:4 --output json", ErrorKind::MissingRequiredArgument),
        ] {
            assert_eq!(parse(bad).err(), Some(kind), "{bad:?}");
        }
    }
}

//! drugsync binary: CLI -> config -> tracing -> run. The only place that
//! turns errors into exit codes: 0 clean stop, 1 runtime failure (the message
//! says what to do), 2 configuration or usage error.

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use drugsync::app::Connected;
use drugsync::app::Replicator;
use drugsync::app::cli::{CheckpointCommand, Cli, Command, LogFormat, OutputFormat};
use drugsync::app::replay::ReplayEstimate;
use drugsync::app::search::Query;
use drugsync::app::status::StatusReport;
use drugsync::apply::reconcile::ReconcileReport;
use drugsync::checkpoint::CheckpointStore;
use drugsync::config::{Config, redact_url};
use drugsync::embed::{AnyEmbedder, Embedder};
use drugsync::position::Position;
use drugsync::sink::RemotePositions;

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    init_tracing(cli.log_format);
    let mut config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("drugsync: {e}");
            return ExitCode::from(2);
        }
    };
    let replay_from = cli.replay_from;
    let dry_run_replay = cli.dry_run && replay_from.is_some();
    let output = cli.output.unwrap_or(OutputFormat::Table);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        drugsync::mysql::secrets::resolve(&mut config).await?;
        if cli.reconcile {
            return reconcile(config, cli.dry_run, output).await;
        }
        if let (true, Some(from)) = (dry_run_replay, &replay_from) {
            return price_replay(config, from, output).await;
        }
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(config, replay_from).await,
            Command::Status { output } => status(config, output).await,
            Command::Search { query, ndc, k, filter, fields, distinct, ef_runtime, output } => match (query, ndc) {
                (_, Some(ndc)) => {
                    // The embedder's own space: the one the writer hashes texts in.
                    let space = AnyEmbedder::from_config(&config.embed).await?.space().clone();
                    let view = drugsync::app::search::document::inspect(&config, space, &ndc).await?;
                    print_summary(&view, drugsync::app::search::document::DocumentView::to_table, output)
                }
                (Some(query), None) => search(config, Query { text: query, k, filter, fields, distinct, ef_runtime }, output).await,
                (None, None) => Err(anyhow::anyhow!("give a question to search for, or --ndc KEY for one document")),
            },
            Command::Checkpoint(CheckpointCommand::Show) => show_checkpoint(config).await,
            Command::Seed { ndcs, seed, yes_destroy_schema } => seed_schema(config, ndcs, seed, yes_destroy_schema).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "drugsync stopped");
            eprintln!("drugsync: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRUGSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(config: Config, replay_from: Option<Position>) -> anyhow::Result<()> {
    tracing::info!(
        mysql = %redact_url(config.mysql.url.expose()),
        redis = %redact_url(config.redis.url.expose()),
        index = %config.index.name,
        embedder = ?config.embed.provider,
        "drugsync starting"
    );
    for warning in drugsync::config::plaintext_warnings(&config) {
        tracing::warn!("{warning}");
    }
    let embedder = AnyEmbedder::from_config(&config.embed).await?;
    let replicator = Replicator::connect(config, embedder).await?;
    if let Some(position) = replay_from {
        replicator.prepare_replay(&position).await?;
    }
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let parts = replicator.parts();
    if let Some(listen) = parts.config().metrics.address() {
        let bounds = drugsync::app::metrics::bounds(parts.config());
        drugsync::app::metrics::serve(listen, parts.stats().clone(), bounds, parts.pricing(), cancel.clone())?;
    }
    replicator.run(cancel).await?;
    tracing::info!("drugsync stopped cleanly");
    Ok(())
}

/// SIGINT or SIGTERM asks the replicator to stop after the batch in flight.
async fn stop_on_signal(cancel: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested; finishing the batch in flight");
    cancel.cancel();
}

/// What `--reconcile` and the replay pricing share: a connection to the
/// live index version, and a stop on SIGINT/SIGTERM.
async fn connect_for_reconcile(config: Config) -> anyhow::Result<(Connected, CancellationToken)> {
    let embedder = AnyEmbedder::from_config(&config.embed).await?;
    let connected = Connected::connect_for_reconcile(config, embedder).await?;
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    Ok((connected, cancel))
}

/// Prints a summary as `--output` asks: one JSON object, or a table for people.
fn print_summary<T: serde::Serialize>(summary: &T, table: impl FnOnce(&T) -> String, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(summary)?),
        OutputFormat::Table => print!("{}", table(summary)),
    }
    Ok(())
}

async fn reconcile(config: Config, dry_run: bool, output: OutputFormat) -> anyhow::Result<()> {
    let (connected, cancel) = connect_for_reconcile(config).await?;
    let report = connected.reconciler().reconcile(dry_run, &cancel).await?;
    print_summary(&report, ReconcileReport::to_table, output)?;
    // The nightly alarm on embedding calls reads this line (deploy/sst/drugsync.ts).
    tracing::info!(drift = report.drift(), mode = %report.mode, embed_calls = report.embed_calls, "reconcile finished");
    Ok(())
}

async fn price_replay(config: Config, from: &Position, output: OutputFormat) -> anyhow::Result<()> {
    let (connected, cancel) = connect_for_reconcile(config).await?;
    let estimate = drugsync::app::replay::price_replay(&connected, from, &cancel).await?;
    print_summary(&estimate, ReplayEstimate::to_table, output)
}

async fn status(config: Config, output: OutputFormat) -> anyhow::Result<()> {
    let report = drugsync::app::status::gather(&config).await?;
    print_summary(&report, StatusReport::to_table, output)
}

async fn search(config: Config, query: Query, output: OutputFormat) -> anyhow::Result<()> {
    let embedder = AnyEmbedder::from_config(&config.embed).await?;
    let hits = drugsync::app::search::search(&config.redis, &drugsync::app::compose::index_definition(&config), &embedder, &query).await?;
    print_summary(&hits, |hits| drugsync::app::search::to_table(hits, &query.fields), output)
}

async fn show_checkpoint(config: Config) -> anyhow::Result<()> {
    let show = |p: Option<Position>| p.map_or_else(|| "(none)".to_owned(), |p| p.to_string());
    // redb allows one process per file: while drugsync runs, its checkpoint is locked.
    let local = match CheckpointStore::open(&config.checkpoint.path) {
        Ok(store) => show(store.load()?),
        Err(drugsync::checkpoint::CheckpointError::Locked { .. }) => {
            "(locked: a running drugsync holds it; see the Redis position)".to_owned()
        }
        Err(e) => return Err(e.into()),
    };
    let sink = drugsync::app::compose::redis_sink(&config).await?;
    let remote = sink.stored_position().await?;
    println!("checkpoint file: {}", config.checkpoint.path.display());
    println!("local position:  {local}");
    println!("redis position:  {}", show(remote));
    Ok(())
}

#[cfg(not(feature = "fixture"))]
async fn seed_schema(_: Config, _: usize, _: u64, _: bool) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build has no sample-data generator: build with the `fixture` feature (cargo's default) to seed a development schema"
    )
}

#[cfg(feature = "fixture")]
async fn seed_schema(config: Config, ndcs: usize, seed: u64, confirmed: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    use drugsync::fixture::{self, FixtureSpec, Generator};
    use mysql_async::prelude::Queryable;
    let schema = &config.mysql.schema;
    anyhow::ensure!(confirmed, "seed drops and re-creates schema `{schema}`; pass --yes-destroy-schema to confirm");
    let opts = drugsync::mysql::connect::mysql_opts(&config.mysql)?;
    let mut conn = mysql_async::Conn::new(opts).await.context("connecting to MySQL")?;
    fixture::create_schema(&mut conn, schema).await.context("creating the FDB schema")?;
    Generator::new(FixtureSpec { ndcs, seed }).populate(&mut conn).await.context("inserting sample data")?;
    let active: Option<u64> = conn.query_first("SELECT COUNT(*) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await?;
    println!("seeded schema `{schema}`: {ndcs} NDCs, {} active", active.unwrap_or(0));
    // Any old checkpoint refers to data that no longer exists.
    CheckpointStore::open(&config.checkpoint.path)?.clear()?;
    Ok(())
}

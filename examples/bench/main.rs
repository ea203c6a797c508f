//! Benchmark: the drugsync binary through an initial load (against Redis's
//! own ingest floor, with the index's recall@10), freshness of single edits
//! (quiet and under a background of mixed commits), bursts of edits and a
//! reload storm (what batching buys), the weekly reload (one transaction
//! rewriting every `rndc14` row), a storm of single-row commits and two
//! fan-out changes, against the local MariaDB (or, with --mysql, MySQL) and
//! Redis of `tests/env/testenv.sh up`, with the offline embedder at
//! production dimensions.
//!
//!     cargo build --release --bins
//!     cargo run --release --example bench -- --ndcs 500000
//!
//! The replicator runs as its own process (the release binary beside this
//! example), so its peak RSS (VmHWM, reset between steps) is its own. Each
//! figure is compared with a reference measured in the same run: the reload's
//! catch-up with a full hash-diff pass (`--reconcile --dry-run`) of the same
//! index, the decoder's rows/s with `mariadb-binlog -v` and, when installed,
//! python-mysql-replication on the same binlog bytes.
//!
//! Prints figures; asserts nothing about time (machines are noisy).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_common::binlog::BinlogFile;
use mysql_common::binlog::consts::BinlogVersion;

mod bursts;
mod floor;
mod freshness;
mod model;
#[path = "../support/mod.rs"]
mod support;

use support::{BoxError, Corner, Prepared, Replicator, binary, status_kb, wait_for_position};

use drugsync::cdc::decode::Decoder;
use drugsync::config::Config;
use drugsync::position::Position;

#[derive(Parser)]
struct Args {
    /// rndc14 rows (500000 = full FDB scale, ~25% active).
    #[arg(long, default_value_t = 50_000)]
    ndcs: usize,
    /// Keep only this many NDCs active (the rest obsolete), for a reload far
    /// larger than the index: `--ndcs 5000000 --active 125000`. 0 keeps the generator's ~25%.
    #[arg(long, default_value_t = 0)]
    active: usize,
    /// Stop after the reload and the decode comparison (for very large reloads).
    #[arg(long)]
    only_reload: bool,
    /// Filler columns added to rndc14 so a row is as wide as FDB's (25 + 42 = 67 columns).
    #[arg(long, default_value_t = 42)]
    extra_columns: usize,
    /// Single-row transactions in the small-transaction storm.
    #[arg(long, default_value_t = 20_000)]
    small_transactions: usize,
    /// Client connections committing them.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Vector dimensions (production: 1024).
    #[arg(long, default_value_t = 1024)]
    dimensions: usize,
    #[arg(long, default_value = "mysql://drugsync:drugsync@127.0.0.1:33306")]
    mysql: String,
    #[arg(long, default_value = "redis://127.0.0.1:36379")]
    redis: String,
    /// Directory holding python-mysql-replication (`pip install --target DIR mysql-replication`).
    #[arg(long, default_value = ".testenv/pyrepl")]
    pyrepl: PathBuf,
    /// Megabytes of the reload python-mysql-replication decodes (it runs at a few thousand rows/s).
    #[arg(long, default_value_t = 20)]
    python_mb: u64,
    /// Single edits timed for freshness, in each of the two freshness runs.
    #[arg(long, default_value_t = 100)]
    freshness_edits: usize,
    /// Their rate, per second.
    #[arg(long, default_value_t = 10.0)]
    freshness_rate: f64,
    /// The background's commits per second in the second run (half fan out).
    #[arg(long, default_value_t = 100.0)]
    background_rate: f64,
    /// Sample documents whose KNN top 10 is compared with the exact top 10.
    #[arg(long, default_value_t = 300)]
    recall_queries: usize,
    /// Drugs in the reload storm (two commits each).
    #[arg(long, default_value_t = 500)]
    storm_drugs: usize,
    /// Drugs in the field-edit burst (four commits each: within one
    /// `batch_max_transactions` of 1000, so what merging buys shows).
    #[arg(long, default_value_t = 200)]
    edit_drugs: usize,
    /// Another drugsync binary to measure instead of the one beside this
    /// example (an earlier build, for a before/after comparison).
    #[arg(long)]
    drugsync: Option<PathBuf>,
    /// Stop after the freshness and burst steps.
    #[arg(long)]
    only_freshness: bool,
    /// The embedded model's directory: measure its texts/s, then the initial
    /// load with it (the demo's config), and stop.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Texts the model's speed is measured on.
    #[arg(long, default_value_t = 2_000)]
    model_texts: usize,
}

const SCHEMA: &str = "bench_fdb";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let corner = Corner { index: "bench_idx", prefix: "bench", state: "benchstate", schema: SCHEMA, server_id: 4343 };
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut config_text = corner.config_text(&args.mysql, &args.redis, args.dimensions, &dir.path().join("cp.redb")).replacen(
        "listen = \"\"",
        &format!("listen = \"127.0.0.1:{metrics_port}\""),
        1,
    );
    if let Some(model_dir) = &args.model {
        model::speed(model_dir, args.model_texts).await?;
        let local = format!("provider = \"local\"\nmodel_id = \"amazon.titan-embed-text-v2:0\"\ndimensions = {}", args.dimensions);
        assert!(config_text.contains(&local), "the reference config's [embed] starts as expected");
        config_text = config_text.replacen(&local, &model::embed_section(&std::fs::canonicalize(model_dir)?)?, 1);
    }
    let Prepared { config_path, position_key, mut redis } = corner.prepare(&config_text, dir.path(), &args.redis).await?;
    let config = Config::load(&config_path)?;
    let bin = match &args.drugsync {
        Some(other) => other.clone(),
        None => binary()?,
    };

    let t = Instant::now();
    let mut conn = corner.seed(&args.mysql, args.ndcs).await?;
    let columns = widen_rndc14(&mut conn, args.extra_columns).await?;
    if args.active > 0 {
        let last: Option<String> = conn
            .query_first(format!("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 1 OFFSET {}", args.active))
            .await?;
        if let Some(last) = last {
            conn.query_drop(format!("UPDATE rndc14 SET OBSDTEC = '2020-01-01' WHERE OBSDTEC = '0000-00-00' AND NDC >= '{last}'")).await?;
        }
    }
    let active: u64 = conn.query_first("SELECT COUNT(*) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await?.unwrap_or(0);
    let texts: u64 =
        conn.query_first("SELECT COUNT(DISTINCT LN60, GCN_SEQNO) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await?.unwrap_or(0);
    println!(
        "fixture: {} rndc14 rows of {columns} columns, {active} active, ~{texts} distinct product texts, generated in {:.1}s",
        args.ndcs,
        t.elapsed().as_secs_f64()
    );
    conn.query_drop("CREATE TABLE rndc14_copy AS SELECT * FROM rndc14").await?;
    let version: String = conn.query_first("SELECT VERSION()").await?.unwrap_or_default();
    if !version.contains("MariaDB") {
        // MySQL without GTIDs proves visibility with this table (docs/operations.md: Visibility).
        conn.query_drop("CREATE TABLE drugsync_fence (id INT UNSIGNED PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB").await?;
    }

    // Initial load.
    let log_path = dir.path().join("drugsync.log");
    let t = Instant::now();
    let mut streamer = Replicator::spawn(&bin, &config_path, &log_path)?;
    wait_for_position(&mut redis, &mut conn, &position_key, &mut streamer).await?;
    let load = t.elapsed().as_secs_f64();
    println!("initial load: {active} documents in {load:.1}s = {:.0} docs/s; peak RSS {} MB", active as f64 / load, streamer.peak_mb());
    if args.model.is_some() {
        streamer.stop()?;
        conn.query_drop(format!("DROP DATABASE {SCHEMA}")).await?;
        return Ok(());
    }

    ingest_floor_and_recall(&args, &config, &mut redis, load).await?;
    visibility_gate_cost(&config_path, &mut conn).await?;

    let ndcs: Vec<String> = conn.query("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC").await?;
    let mysql_url = format!("{}/{SCHEMA}", args.mysql);
    let key_prefix = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&config)).prefix;
    let mut fresh = freshness::Freshness { mysql_url: mysql_url.clone(), redis: redis.clone(), key_prefix: &key_prefix, ndcs: &ndcs };
    let quiet = fresh.run("quiet", args.freshness_edits, args.freshness_rate, None).await?;
    println!(
        "freshness, quiet source: {} single edits at {}/s, commit to visible in Redis: {}",
        args.freshness_edits,
        args.freshness_rate,
        quiet.quantiles()
    );
    let before = bursts::Counters::read(metrics_port).await?;
    let t = Instant::now();
    let busy = fresh.run("busy", args.freshness_edits, args.freshness_rate, Some(args.background_rate)).await?;
    wait_for_position(&mut redis, &mut conn, &position_key, &mut streamer).await?;
    let written = bursts::Counters::read(metrics_port).await?.upserts - before.upserts;
    println!(
        "freshness under a background of {:.0} commits/s (half labeler renames): {}; the background asked for {written:.0} document writes, {:.0}/s until caught up",
        busy.background_per_second.unwrap_or(0.0),
        busy.quantiles(),
        written / (t.elapsed().as_secs_f64() - 1.2)
    );
    let burst = bursts::Burst { mysql_url, metrics_port, clients: args.clients, ndcs: &ndcs };
    burst.field_edits(args.edit_drugs, 4, &mut redis, &mut conn, &position_key, &mut streamer).await?;
    burst.reload_storm(args.storm_drugs, &mut redis, &mut conn, &position_key, &mut streamer).await?;
    if args.only_freshness {
        streamer.stop()?;
        conn.query_drop(format!("DROP DATABASE {SCHEMA}")).await?;
        return Ok(());
    }

    // Reference: a full hash-diff pass of the same index.
    let (diff_secs, diff_peak) = full_diff(&bin, &config_path)?;
    println!("full hash diff (drugsync --reconcile --dry-run): {diff_secs:.1}s, peak RSS {diff_peak} MB");

    // The weekly reload: one transaction deleting and re-inserting every row.
    streamer.reset_peak();
    let before = drugsync::mysql::server::current_position(&mut conn).await?;
    let t = Instant::now();
    conn.query_drop("START TRANSACTION").await?;
    conn.query_drop("DELETE FROM rndc14").await?;
    conn.query_drop("INSERT INTO rndc14 SELECT * FROM rndc14_copy").await?;
    conn.query_drop("COMMIT").await?;
    let commit = t.elapsed().as_secs_f64();
    let after = drugsync::mysql::server::current_position(&mut conn).await?;
    let t = Instant::now();
    wait_for_position(&mut redis, &mut conn, &position_key, &mut streamer).await?;
    let caught_up = t.elapsed().as_secs_f64();
    let peak = streamer.peak_mb();
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "weekly reload: {} row images of {columns} columns in one transaction (MySQL commit {commit:.1}s); drugsync caught up {caught_up:.1}s after commit = {:.2}x the full hash diff; peak RSS {peak} MB, RSS 3 s later {} MB",
        2 * args.ndcs,
        caught_up / diff_secs,
        streamer.rss_mb()
    );

    decode_comparison(&args, &mut conn, &before, &after).await?;
    if args.only_reload {
        streamer.stop()?;
        conn.query_drop(format!("DROP DATABASE {SCHEMA}")).await?;
        return Ok(());
    }

    // Where key by key stops paying: batches touching a growing share of the
    // index, applied key by key (full diff switched off), against the full diff.
    streamer.stop()?;
    let keys_config = dir.path().join("bench-keys.toml");
    let keys_text = config_text.replacen("full_diff_share = 0.5", "full_diff_share = 1.0", 1).replacen(
        "max_batch_keys = 100000",
        "max_batch_keys = 100000000",
        1,
    );
    if !keys_text.contains("full_diff_share = 1.0") || !keys_text.contains("max_batch_keys = 100000000") {
        return Err("config/drugsync.toml no longer holds the defaults the crossover step replaces".into());
    }
    std::fs::write(&keys_config, keys_text)?;
    let mut by_key = Replicator::spawn(&bin, &keys_config, &dir.path().join("drugsync-keys.log"))?;
    wait_for_position(&mut redis, &mut conn, &position_key, &mut by_key).await?;
    for share in [0.05, 0.1, 0.2, 0.4] {
        let n = (active as f64 * share) as u64;
        let t = Instant::now();
        conn.query_drop(format!(
            "UPDATE rndc14 r JOIN (SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT {n}) x USING (NDC) \
             SET r.PD = IF(r.PD = 'SHARE A', 'SHARE B', 'SHARE A')"
        ))
        .await?;
        let t2 = Instant::now();
        wait_for_position(&mut redis, &mut conn, &position_key, &mut by_key).await?;
        let secs = t2.elapsed().as_secs_f64();
        println!(
            "crossover: one transaction touching {n} documents ({:.0}% of the index), applied key by key: caught up {secs:.2}s after commit (commit {:.2}s) = {:.2}x the full hash diff",
            share * 100.0,
            t2.duration_since(t).as_secs_f64(),
            secs / diff_secs
        );
    }
    by_key.stop()?;
    let mut streamer = Replicator::spawn(&bin, &config_path, &log_path)?;
    wait_for_position(&mut redis, &mut conn, &position_key, &mut streamer).await?;

    // Many small transactions from many clients: first a column no document
    // shows (routed, re-read, compared, unchanged), then a field (rewritten,
    // which makes RediSearch re-index the document, vector included).
    streamer.reset_peak();
    let package = "UPDATE rndc14 SET PD = IF(PD = 'BENCH A', 'BENCH B', 'BENCH A') WHERE NDC = ?";
    small_transactions(&args, "no document change", package, &mut conn, &mut redis, &position_key, &mut streamer).await?;
    let schedule = "UPDATE rndc14 SET DEA = IF(DEA = '2', '3', '2') WHERE NDC = ?";
    small_transactions(&args, "one field changed", schedule, &mut conn, &mut redis, &position_key, &mut streamer).await?;

    let lbl: String = conn
        .query_first("SELECT LBLRID FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY LBLRID ORDER BY COUNT(*) DESC LIMIT 1")
        .await?
        .ok_or("no labeler")?;
    let rename = format!("UPDATE rlblrid3 SET MFG = 'BENCH RENAMED' WHERE LBLRID = '{lbl}'");
    measure_change("labeler rename", &rename, &mut redis, &mut conn, &position_key, &mut streamer).await?;
    let gcn: u32 = conn
        .query_first("SELECT GCN_SEQNO FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY GCN_SEQNO ORDER BY COUNT(*) DESC LIMIT 1")
        .await?
        .ok_or("no GCN")?;
    let strength = format!("UPDATE rgcnseq4 SET STR60 = '12345 MG' WHERE GCN_SEQNO = {gcn}");
    measure_change("strength change", &strength, &mut redis, &mut conn, &position_key, &mut streamer).await?;

    streamer.stop()?;
    conn.query_drop(format!("DROP DATABASE {SCHEMA}")).await?;
    Ok(())
}

/// Redis's own floor for the load just done, with recall@10 of the live
/// index and of each variant's scratch copy (see `floor`).
async fn ingest_floor_and_recall(
    args: &Args,
    config: &Config,
    redis: &mut redis::aio::MultiplexedConnection,
    load_secs: f64,
) -> Result<(), BoxError> {
    let live_prefix = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(config)).prefix;
    let field = &config.index.vector_field;
    let corpus = floor::read_corpus(redis, &live_prefix, field).await?;
    let (m, ef) = (config.index.m, config.index.ef_construction);
    for ef_runtime in [10, 50, 200] {
        let live = floor::Searched { name: &config.index.name, prefix: &live_prefix, vector_field: field, float16: false };
        let recall = floor::recall_at_10(redis, &live, &corpus, args.recall_queries, ef_runtime).await?;
        println!(
            "recall@10 of drugsync's index (M {m}, EF_CONSTRUCTION {ef}, EF_RUNTIME {ef_runtime}{}): {recall:.3} over {} queries against an exact search of {} vectors",
            if ef_runtime == 10 { ", RediSearch's default" } else { "" },
            args.recall_queries.min(corpus.ids.len()),
            corpus.ids.len()
        );
    }
    let chunk = config.pipeline.write_chunk;
    let variants = [
        floor::Variant { label: "same definition", float16: false, ef_construction: None },
        floor::Variant { label: "FLOAT16 vectors", float16: true, ef_construction: None },
        floor::Variant { label: "EF_CONSTRUCTION 100", float16: false, ef_construction: Some(100) },
        floor::Variant { label: "EF_CONSTRUCTION 400", float16: false, ef_construction: Some(400) },
    ];
    let mut same = None;
    for variant in variants {
        let (name, prefix) = ("benchfloor_idx", "benchfloor:");
        let secs = floor::copy_into(redis, config, name, prefix, variant, &corpus, chunk).await?;
        let scratch = floor::Searched { name, prefix, vector_field: field, float16: variant.float16 };
        let recall = floor::recall_at_10(redis, &scratch, &corpus, args.recall_queries, 10).await?;
        floor::drop_scratch(redis, name).await;
        let base = *same.get_or_insert(secs);
        println!(
            "redis floor, {}: {} documents copied in chunks of {chunk} in {secs:.1}s = {:.0} docs/s ({:.2}x the same definition); recall@10 at EF_RUNTIME 10: {recall:.3}",
            variant.label,
            corpus.ids.len(),
            corpus.ids.len() as f64 / secs,
            secs / base
        );
    }
    println!("initial load against Redis's floor: {load_secs:.1}s / {:.1}s = {:.2}x", same.unwrap_or(0.0), load_secs / same.unwrap_or(1.0));
    Ok(())
}

/// What the visibility gate costs a batch on this server: the gate drugsync
/// uses before every re-read, run on its own against the current end of
/// binlog (nothing else writes meanwhile), timed 200 times.
async fn visibility_gate_cost(config_path: &Path, conn: &mut mysql_async::Conn) -> Result<(), BoxError> {
    let config = Config::load(config_path)?;
    let opts = drugsync::mysql::connect::mysql_opts(&config.mysql)?;
    let pool = mysql_async::Pool::new(opts.clone());
    let gate = drugsync::mysql::visibility::VisibilityGate::new(&config.mysql, pool.clone(), opts, Duration::from_secs(10));
    let mode = gate.preflight().await?;
    let end = drugsync::mysql::server::current_position(conn).await?;
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        gate.wait(&end).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "visibility gate ({mode}): {mean:.2} ms per batch on average, p50 {:.2} ms, p99 {:.2} ms (200 waits)",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    pool.disconnect().await?;
    Ok(())
}

/// The release binary built beside this example.
/// Runs `--reconcile --dry-run` and returns its wall time and peak RSS (MB).
fn full_diff(bin: &Path, config: &Path) -> Result<(f64, u64), BoxError> {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json", "--reconcile", "--dry-run", "--output", "json"])
        .env_remove("DRUGSYNC_MYSQL_URL")
        .env_remove("DRUGSYNC_REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut peak = 0;
    loop {
        peak = peak.max(status_kb(child.id(), "VmHWM:").unwrap_or(0));
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                return Err(format!("reconcile --dry-run failed: {status}").into());
            }
            return Ok((t.elapsed().as_secs_f64(), peak / 1024));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Adds `n` filler columns with defaults, so every row carries them.
async fn widen_rndc14(conn: &mut mysql_async::Conn, n: usize) -> Result<usize, BoxError> {
    if n > 0 {
        let columns: Vec<String> = (0..n).map(|i| format!("ADD COLUMN X{i:02} varchar(8) DEFAULT 'FILL{i:04}'")).collect();
        conn.query_drop(format!("ALTER TABLE rndc14 {}", columns.join(", "))).await?;
    }
    let count: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{SCHEMA}' AND TABLE_NAME = 'rndc14'"))
        .await?
        .unwrap_or(0);
    Ok(count as usize)
}

/// Rows/s of drugsync's decoder, `mariadb-binlog -v` and python-mysql-replication
/// over the reload's binlog bytes, each measured here and now.
async fn decode_comparison(args: &Args, conn: &mut mysql_async::Conn, before: &Position, after: &Position) -> Result<(), BoxError> {
    let basename: String = conn.query_first("SELECT @@log_bin_basename").await?.ok_or("binlog off")?;
    let path = Path::new(&basename).with_file_name(&before.file);
    let stop = if after.file == before.file { after.offset } else { std::fs::metadata(&path)?.len() };
    let megabytes = (stop - before.offset) as f64 / 1e6;

    let config = Config::from_toml(include_str!("../../config/drugsync.toml"), Path::new("bench"), |_| None)?;
    let router =
        drugsync::mapping::Router::new(&config.mapping.tables, 500, std::time::Duration::from_secs(config.mysql.query_timeout_secs));
    let mut decoder = Decoder::new(router.decode_spec(SCHEMA, config.pipeline.max_batch_keys), before)?;
    // The file was just written, so it is in the page cache: this times decoding, not the disk.
    let t = Instant::now();
    let mut rows = 0u64;
    let mut reader = BinlogFile::new(BinlogVersion::Version4, BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?))?;
    for event in reader.by_ref() {
        let event = event?;
        let end = u64::from(event.header().log_pos());
        if end <= before.offset {
            continue;
        }
        if end > stop {
            break;
        }
        if let Some(tx) = decoder.feed(&event)? {
            rows += tx.rows;
        }
    }
    let ours = t.elapsed().as_secs_f64();
    println!(
        "decode: drugsync's decoder read {megabytes:.0} MB of binlog, {rows} row images, in {ours:.2}s = {:.0} rows/s",
        rows as f64 / ours
    );

    let t = Instant::now();
    let status = Command::new("mariadb-binlog")
        .args(["-v", &format!("--start-position={}", before.offset), &format!("--stop-position={stop}")])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let theirs = t.elapsed().as_secs_f64();
    if status.success() {
        println!(
            "decode: mariadb-binlog -v on the same range {theirs:.2}s = {:.0} rows/s; drugsync decodes {:.1}x as fast",
            rows as f64 / theirs,
            theirs / ours
        );
    } else {
        println!("decode: mariadb-binlog failed ({status}); no comparison");
    }

    if args.pyrepl.join("pymysqlreplication").exists() {
        let url = mysql_async::Opts::from_url(&args.mysql)?;
        let script = format!(
            r#"
import sys, time
sys.path.insert(0, {dir:?})
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent
stream = BinLogStreamReader(
    connection_settings={{"host": {host:?}, "port": {port}, "user": {user:?}, "passwd": {password:?}}},
    server_id=4399, log_file={file:?}, log_pos={start}, end_log_pos={stop}, resume_stream=True,
    blocking=False, only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent], only_schemas=[{schema:?}])
start = time.time()
rows = 0
for event in stream:
    rows += len(event.rows)
print(rows, time.time() - start)
"#,
            dir = args.pyrepl.display().to_string(),
            host = url.ip_or_hostname(),
            port = url.tcp_port(),
            user = url.user().unwrap_or_default(),
            password = url.pass().unwrap_or_default(),
            file = before.file,
            start = before.offset,
            stop = (before.offset + args.python_mb * 1_000_000).min(stop),
            schema = SCHEMA,
        );
        let output = Command::new("python3").arg("-c").arg(script).output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        match text.split_whitespace().collect::<Vec<_>>()[..] {
            [count, secs] => {
                let secs: f64 = secs.parse()?;
                println!(
                    "decode: python-mysql-replication on the first {} MB of the same range: {count} rows in {secs:.2}s = {:.0} rows/s; drugsync decodes {:.1}x as fast",
                    args.python_mb,
                    count.parse::<f64>()? / secs,
                    (rows as f64 / ours) / (count.parse::<f64>()? / secs)
                );
            }
            _ => println!("decode: python-mysql-replication failed: {}", String::from_utf8_lossy(&output.stderr)),
        }
    } else {
        println!(
            "decode: python-mysql-replication not installed (pip install --target {} mysql-replication==1.0.17); skipped",
            args.pyrepl.display()
        );
    }
    Ok(())
}

/// `small_transactions` single-row commits from `clients` connections at full
/// speed, then how long drugsync took to apply them all.
async fn small_transactions(
    args: &Args,
    what: &str,
    statement: &'static str,
    conn: &mut mysql_async::Conn,
    redis: &mut redis::aio::MultiplexedConnection,
    position_key: &str,
    streamer: &mut Replicator,
) -> Result<(), BoxError> {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(redis).await?;
    let ndcs: Vec<String> = conn.query("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC").await?;
    // Cycle through the active NDCs when asked for more commits than there are.
    let ndcs: Vec<String> = ndcs.iter().cycle().take(args.small_transactions).cloned().collect();
    let per_client = args.small_transactions.div_ceil(args.clients);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let url = format!("{}/{SCHEMA}", args.mysql);
        let keys: Vec<String> = ndcs.iter().skip(c).step_by(args.clients).take(per_client).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url)?).await?;
            for key in &keys {
                conn.exec_drop(statement, (key,)).await?;
            }
            Ok::<usize, mysql_async::Error>(keys.len())
        }));
    }
    let mut committed = 0;
    for task in tasks {
        committed += task.await??;
    }
    let commit = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    wait_for_position(redis, conn, position_key, streamer).await?;
    let behind = t2.elapsed().as_secs_f64();
    let total = t.elapsed().as_secs_f64();
    println!(
        "small transactions ({what}): {committed} single-row commits from {} clients in {commit:.1}s = {:.0}/s committed by the source; drugsync caught up {behind:.1}s after the last = {:.0} transactions/s applied end to end; peak RSS {} MB",
        args.clients,
        committed as f64 / commit,
        committed as f64 / total,
        streamer.peak_mb()
    );
    // Where the time went on the Redis side: every HSET of an indexed hash
    // makes RediSearch re-index the whole document, vector included.
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(redis).await?;
    for line in info.lines().filter(|l| l.starts_with("cmdstat_hset:") || l.starts_with("cmdstat_evalsha:")) {
        let field = |name: &str| line.split(',').find_map(|kv| kv.split_once(name).map(|(_, v)| v.to_owned())).unwrap_or_default();
        let (command, calls) = line.split_once(":calls=").map(|(c, rest)| (c, rest.split(',').next().unwrap_or(""))).unwrap_or((line, ""));
        let usec: f64 = field("usec=").parse().unwrap_or(0.0);
        println!(
            "  redis {}: {calls} calls, {:.1}s in total, {} us per call",
            command.trim_start_matches("cmdstat_"),
            usec / 1e6,
            field("usec_per_call=")
        );
    }
    Ok(())
}

/// Commits `statement` and prints how long until Redis has it.
async fn measure_change(
    what: &str,
    statement: &str,
    redis: &mut redis::aio::MultiplexedConnection,
    conn: &mut mysql_async::Conn,
    position_key: &str,
    streamer: &mut Replicator,
) -> Result<(), BoxError> {
    let t = Instant::now();
    let result = conn.query_iter(statement).await?;
    let affected = result.affected_rows();
    drop(result);
    wait_for_position(redis, conn, position_key, streamer).await?;
    println!("{what}: {affected} source rows, visible {:.0} ms after commit", t.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

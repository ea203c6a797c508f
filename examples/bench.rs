//! Benchmark: initial load, a bulk-reload storm and a single fan-out change
//! at a chosen scale, against the local MariaDB and Redis of
//! `tests/env/testenv.sh up`, with the offline embedder at production dimensions.
//!
//!     cargo run --release --example bench -- --ndcs 500000
//!
//! Prints figures; asserts nothing about time (machines are noisy).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use drugsync::config::Config;
use drugsync::embed::LocalEmbedder;
use drugsync::fixture::{self, FixtureSpec, Generator};
use drugsync::pipeline::{Replicator, Stats};
use drugsync::position::Position;

#[derive(Parser)]
struct Args {
    /// rndc14 rows (500000 = full FDB scale, ~25% active).
    #[arg(long, default_value_t = 50_000)]
    ndcs: usize,
    /// Vector dimensions (production: 1024).
    #[arg(long, default_value_t = 1024)]
    dimensions: usize,
    #[arg(long, default_value = "mysql://drugsync:drugsync@127.0.0.1:33306")]
    mysql: String,
    #[arg(long, default_value = "redis://127.0.0.1:36379")]
    redis: String,
}

const SCHEMA: &str = "bench_fdb";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let config_text = include_str!("../config/drugsync.toml")
        .replacen("name = \"drugs_idx\"", "name = \"bench_idx\"", 1)
        .replacen("prefix = \"drug:\"", "prefix = \"bench:\"", 1)
        .replacen("state_prefix = \"drugsync:\"", "state_prefix = \"benchstate:\"", 1)
        .replacen("schema = \"fdb\"", &format!("schema = \"{SCHEMA}\""), 1)
        .replacen("server_id = 4242", "server_id = 4343", 1)
        .replacen("dimensions = 1024", &format!("dimensions = {}", args.dimensions), 1)
        .replacen("path = \"data/drugsync.redb\"", &format!("path = {:?}", dir.path().join("cp.redb")), 1)
        .replacen("mysql://drugsync:drugsync@127.0.0.1:33306/fdb", &format!("{}/{SCHEMA}", args.mysql), 1)
        .replacen("redis://127.0.0.1:36379", &args.redis, 1);
    let config = || Config::from_toml(&config_text, Path::new("bench"), |_| None).expect("config");
    let position_key = format!("benchstate:{}:position", drugsync::sink::IndexVersion::of(&config()).index);

    // Clean slate in Redis.
    let redis_config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut redis = redis::Client::open(args.redis.as_str())?.get_multiplexed_async_connection_with_config(&redis_config).await?;
    let _: Result<(), _> = redis::cmd("FT.ALIASDEL").arg("bench_idx").query_async(&mut redis).await;
    let indexes: Vec<String> = redis::cmd("FT._LIST").query_async(&mut redis).await?;
    for old in indexes.iter().filter(|i| i.starts_with("bench_idx")) {
        let _: Result<(), _> = redis::cmd("FT.DROPINDEX").arg(old).query_async(&mut redis).await;
    }
    for pattern in ["bench*", "benchstate:*"] {
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut redis).await?;
        for chunk in keys.chunks(10_000) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut redis).await?;
        }
    }

    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&args.mysql)?).await?;
    let t = Instant::now();
    fixture::create_schema(&mut conn, SCHEMA).await?;
    Generator::new(FixtureSpec { ndcs: args.ndcs, seed: 42 }).populate(&mut conn).await?;
    let active: u64 = conn.query_first("SELECT COUNT(*) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await?.unwrap_or(0);
    let texts: u64 =
        conn.query_first("SELECT COUNT(DISTINCT LN60, GCN_SEQNO) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await?.unwrap_or(0);
    println!(
        "fixture: {} rndc14 rows, {active} active, ~{texts} distinct product texts, generated in {:.1}s",
        args.ndcs,
        t.elapsed().as_secs_f64()
    );
    conn.query_drop("CREATE TABLE rndc14_copy AS SELECT * FROM rndc14").await?;

    let replicator = Replicator::connect(config(), LocalEmbedder::new(args.dimensions, 1)).await?;
    let stats: Arc<Stats> = replicator.stats.clone();
    let cancel = CancellationToken::new();
    let t = Instant::now();
    let handle = tokio::spawn(replicator.run(cancel.clone()));
    wait_for_position(&mut redis, &mut conn, &position_key).await?;
    let load = t.elapsed().as_secs_f64();
    println!(
        "initial load: {active} documents in {load:.1}s = {:.0} docs/s; {} embedding calls ({:.1} documents per call)",
        active as f64 / load,
        stats.embed.calls(),
        active as f64 / stats.embed.calls().max(1) as f64
    );

    let (calls, writes, unchanged) = (stats.embed.calls(), written(&stats), Stats::get(&stats.unchanged));
    let t = Instant::now();
    conn.query_drop("START TRANSACTION").await?;
    conn.query_drop("DELETE FROM rndc14").await?;
    conn.query_drop("INSERT INTO rndc14 SELECT * FROM rndc14_copy").await?;
    conn.query_drop("COMMIT").await?;
    let commit = t.elapsed().as_secs_f64();
    let t = Instant::now();
    wait_for_position(&mut redis, &mut conn, &position_key).await?;
    println!(
        "bulk reload of {} rows in one transaction: MySQL commit {commit:.1}s, drugsync caught up {:.1}s later; compared {} documents, wrote {}, embedding calls {}",
        args.ndcs,
        t.elapsed().as_secs_f64(),
        Stats::get(&stats.unchanged) - unchanged,
        written(&stats) - writes,
        stats.embed.calls() - calls
    );

    let lbl: String = conn
        .query_first("SELECT LBLRID FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY LBLRID ORDER BY COUNT(*) DESC LIMIT 1")
        .await?
        .unwrap();
    let rename = format!("UPDATE rlblrid3 SET MFG = 'BENCH RENAMED' WHERE LBLRID = '{lbl}'");
    measure_change("labeler rename", &rename, &stats, &mut redis, &mut conn, &position_key).await?;
    let gcn: u32 = conn
        .query_first("SELECT GCN_SEQNO FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY GCN_SEQNO ORDER BY COUNT(*) DESC LIMIT 1")
        .await?
        .unwrap();
    let strength = format!("UPDATE rgcnseq4 SET STR60 = '12345 MG' WHERE GCN_SEQNO = {gcn}");
    measure_change("strength change", &strength, &stats, &mut redis, &mut conn, &position_key).await?;

    cancel.cancel();
    handle.await??;
    conn.query_drop(format!("DROP DATABASE {SCHEMA}")).await?;
    Ok(())
}

/// Commits `statement` and prints how long until Redis has it and what it cost.
async fn measure_change(
    what: &str,
    statement: &str,
    stats: &Stats,
    redis: &mut redis::aio::MultiplexedConnection,
    conn: &mut mysql_async::Conn,
    position_key: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (calls, writes) = (stats.embed.calls(), written(stats));
    let t = Instant::now();
    conn.query_drop(statement).await?;
    wait_for_position(redis, conn, position_key).await?;
    println!(
        "{what}: {} documents rewritten, visible {:.0} ms after commit, embedding calls {}",
        written(stats) - writes,
        t.elapsed().as_secs_f64() * 1000.0,
        stats.embed.calls() - calls
    );
    Ok(())
}

fn written(stats: &Stats) -> u64 {
    Stats::get(&stats.upserts) + Stats::get(&stats.deletes)
}

async fn wait_for_position(
    redis: &mut redis::aio::MultiplexedConnection,
    conn: &mut mysql_async::Conn,
    position_key: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let target = drugsync::source::server::current_position(conn).await?;
    loop {
        let text: Option<String> = redis::cmd("GET").arg(position_key).query_async(redis).await?;
        if let Some(p) = text.and_then(|t| t.parse::<Position>().ok())
            && p.try_cmp(&target)? != std::cmp::Ordering::Less
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

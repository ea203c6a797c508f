//! Benchmark: the initial build of the index with Bedrock in the pipeline,
//! against a fake InvokeModel endpoint answering in `--latency-ms` (80 ms,
//! Titan's usual), with a client-side quota of `--rpm` requests a minute.
//!
//!     tests/env/testenv.sh up
//!     cargo build --release --bins
//!     cargo run --release --example bench_bedrock -- --ndcs 500000
//!
//! Prints documents per second, the share of the quota used (the fake counts
//! the calls as they arrive: their rate over the embedding phase against the
//! quota's, and the most calls in any 60 s, which must not pass it), and the
//! calls against the distinct texts the fake was asked for (equal when no
//! text is embedded twice). Asserts nothing about time.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use mysql_async::prelude::Queryable;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use drugsync::embed::LocalEmbedder;
use support::{BoxError, Corner, Prepared, Replicator, binary, wait_for_position};

#[derive(Parser)]
struct Args {
    /// rndc14 rows (500000 = full FDB scale, ~25% active).
    #[arg(long, default_value_t = 500_000)]
    ndcs: usize,
    /// The fake's answer time per call, in ms.
    #[arg(long, default_value_t = 80)]
    latency_ms: u64,
    /// The quota: requests per minute (`embed.requests_per_minute`).
    #[arg(long, default_value_t = 6_000)]
    rpm: u32,
    /// Calls in flight (`embed.concurrency`).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Vector dimensions (Titan V2: 256, 512 or 1024).
    #[arg(long, default_value_t = 1024)]
    dimensions: usize,
    #[arg(long, default_value = "mysql://drugsync:drugsync@127.0.0.1:33306")]
    mysql: String,
    #[arg(long, default_value = "redis://127.0.0.1:36379")]
    redis: String,
}

const SCHEMA: &str = "bench_bedrock";

/// Titan's answer (the offline embedder's vector), after the configured
/// latency; every call's arrival time and text is recorded.
struct FakeTitan {
    dimensions: usize,
    latency: Duration,
    calls: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Respond for FakeTitan {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let text = body["inputText"].as_str().unwrap_or_default().to_owned();
        let vector = LocalEmbedder::new(self.dimensions, 1).vector(&text);
        let tokens = text.split_whitespace().count() + 2;
        self.calls.lock().expect("calls").push((Instant::now(), text));
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": tokens}))
            .set_delay(self.latency)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let fake = MockServer::start().await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let latency = Duration::from_millis(args.latency_ms);
    Mock::given(method("POST")).respond_with(FakeTitan { dimensions: args.dimensions, latency, calls: calls.clone() }).mount(&fake).await;

    let dir = tempfile::tempdir()?;
    let corner = Corner { index: "bedrock_bench_idx", prefix: "bbench", state: "bbenchstate", schema: SCHEMA, server_id: 4344 };
    let config_text = corner
        .config_text(&args.mysql, &args.redis, args.dimensions, &dir.path().join("cp.redb"))
        .replacen("provider = \"local\"", &format!("provider = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"", fake.uri()), 1)
        .replacen("requests_per_minute = 0", &format!("requests_per_minute = {}", args.rpm), 1)
        .replacen("concurrency = 4", &format!("concurrency = {}", args.concurrency), 1);
    let Prepared { config_path, position_key, mut redis } = corner.prepare(&config_text, dir.path(), &args.redis).await?;
    let bin = binary()?;

    let t = Instant::now();
    let mut conn = corner.seed(&args.mysql, args.ndcs).await?;
    let active: u64 = conn.query_first("SELECT COUNT(*) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await?.unwrap_or(0);
    println!("fixture: {} rndc14 rows, {active} active, generated in {:.1}s", args.ndcs, t.elapsed().as_secs_f64());

    let log_path = dir.path().join("drugsync.log");
    let t = Instant::now();
    let mut streamer = Replicator::spawn_with_env(
        &bin,
        &config_path,
        &log_path,
        &[("AWS_ACCESS_KEY_ID", "AKIDBENCH"), ("AWS_SECRET_ACCESS_KEY", "bench-secret"), ("AWS_EC2_METADATA_DISABLED", "true")],
    )?;
    wait_for_position(&mut redis, &mut conn, &position_key, &mut streamer).await?;
    let load = t.elapsed().as_secs_f64();
    streamer.stop()?;

    let calls = calls.lock().expect("calls").clone();
    let distinct: HashSet<&str> = calls.iter().map(|(_, text)| text.as_str()).collect();
    let (first, last) = (calls.first().map(|c| c.0), calls.last().map(|c| c.0));
    let span = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let quota_per_sec = f64::from(args.rpm) / 60.0;
    // Calls per second over the stretch from the first call to the last, against the quota's rate.
    let share_embedding = if span > 0.0 { (calls.len() as f64 - 1.0) / span / quota_per_sec } else { 0.0 };
    let share_load = calls.len() as f64 / load / quota_per_sec;
    let max_window = max_in_window(&calls.iter().map(|c| c.0).collect::<Vec<_>>(), Duration::from_secs(60));
    println!(
        "initial load with Bedrock (fake, {} ms a call, quota {} requests/min, concurrency {}): {active} documents in {load:.1}s = {:.0} docs/s",
        args.latency_ms,
        args.rpm,
        args.concurrency,
        active as f64 / load
    );
    println!(
        "calls {} for {} distinct texts ({:.3} calls a text); {:.1}% of the quota used from the first call to the last ({span:.1}s), {:.1}% over the whole load; most calls in any 60 s: {max_window} (quota {})",
        calls.len(),
        distinct.len(),
        calls.len() as f64 / distinct.len().max(1) as f64,
        share_embedding * 100.0,
        share_load * 100.0,
        args.rpm
    );
    if let Some(first) = first {
        let mut minutes = vec![0usize; (span / 60.0) as usize + 1];
        for (at, _) in &calls {
            minutes[(at.duration_since(first).as_secs() / 60) as usize] += 1;
        }
        let shares: Vec<String> = minutes.iter().map(|n| format!("{:.0}%", *n as f64 * 100.0 / f64::from(args.rpm))).collect();
        println!("calls in each minute from the first, as a share of the quota: {}", shares.join(" "));
    }
    Ok(())
}

/// The most arrivals in any window of `width` (arrivals sorted).
fn max_in_window(arrivals: &[Instant], width: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let mut start = 0;
    let mut best = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

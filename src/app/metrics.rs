//! Prometheus metrics: an HTTP endpoint (`metrics.listen`) serving the
//! replicator's counters and gauges, and the `/healthz` and `/readyz` probes. Values are copied from [`Stats`] once a
//! second, so the pipeline itself only touches atomics. Metric names and
//! labels carry no configuration values, so no secret can reach a scrape.

use crate::observe::stats::{Counter, Gauge};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::embed::Pricing;
use crate::error::{Classify, ErrorClass};
use crate::observe::Stats;
use crate::observe::health::{self, Bounds};

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serve metrics on {listen} (config field metrics.listen): {message}. Choose a free address, or set listen = \"\" to turn metrics off"
)]
pub struct MetricsError {
    /// Address asked for.
    pub listen: SocketAddr,
    /// Why.
    pub message: String,
}

impl Classify for MetricsError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Definite
    }
}

/// Clients the metrics listener serves at once (probes and a scraper need a few).
const MAX_CLIENTS: usize = 32;

/// Pause after a failed accept (out of descriptors) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);

/// Starts the endpoint on `listen` and publishes `stats` every second (and
/// at every scrape) until `stop` fires. Paths: `/healthz` and `/readyz` (see [`crate::observe::health`]; 200
/// or 503 with a JSON body), anything else the Prometheus text. Call inside the runtime.
/// `pricing` labels the embedding metrics with the model and turns tokens into the cost gauge.
pub fn serve(listen: SocketAddr, stats: Arc<Stats>, bounds: Bounds, pricing: Pricing, stop: CancellationToken) -> Result<(), MetricsError> {
    let listener = std::net::TcpListener::bind(listen).map_err(|e| MetricsError { listen, message: e.to_string() })?;
    listener.set_nonblocking(true).map_err(|e| MetricsError { listen, message: e.to_string() })?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| MetricsError { listen, message: e.to_string() })?;
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| MetricsError { listen, message: e.to_string() })?;
    describe();
    let publisher = stats.clone();
    let stop_publishing = stop.clone();
    let pricing_for_scrapes = pricing.clone();
    tokio::spawn(async move {
        loop {
            publish(&publisher, &pricing, &bounds);
            tokio::select! {
                _ = stop_publishing.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    tokio::spawn(async move {
        // A bounded number of clients at once: the rest wait in the kernel's
        // backlog instead of taking the descriptors MySQL and Redis need.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
        loop {
            let slot = tokio::select! {
                _ = stop.cancelled() => return,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let socket = match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of descriptors (EMFILE) fails every accept at once
                    // until one is freed: pause instead of spinning on it.
                    tracing::warn!(error = %e, "the metrics listener could not accept a connection; pausing");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            let (stats, handle, pricing) = (stats.clone(), handle.clone(), pricing_for_scrapes.clone());
            tokio::spawn(async move {
                let _slot = slot;
                // A client that never finishes its request must not hold a task forever.
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(socket, &stats, &bounds, &handle, &pricing)).await;
            });
        }
    });
    tracing::info!(%listen, "serving Prometheus metrics, /healthz and /readyz");
    Ok(())
}

/// Reads one HTTP request's head and answers it.
async fn answer(
    mut socket: tokio::net::TcpStream,
    stats: &Stats,
    bounds: &Bounds,
    handle: &PrometheusHandle,
    pricing: &Pricing,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let path = std::str::from_utf8(&head).ok().and_then(|h| h.split_whitespace().nth(1)).unwrap_or("/").to_owned();
    let (status, content_type, body) = match path.split('?').next().unwrap_or("/") {
        "/healthz" => verdict(health::liveness(&observe(stats), bounds)),
        "/readyz" => verdict(health::readiness(&observe(stats), bounds)),
        _ => {
            // A scrape reads the counters as they are now, not as the last second's publish left them.
            publish(stats, pricing, bounds);
            ("200 OK", "text/plain; version=0.0.4", handle.render())
        }
    };
    let response =
        format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

fn verdict(verdict: health::Verdict) -> (&'static str, &'static str, String) {
    let status = if verdict.ok { "200 OK" } else { "503 Service Unavailable" };
    (status, "application/json", serde_json::to_string(&verdict).unwrap_or_default())
}

/// What the probes judge, read from `stats` now.
pub fn observe(stats: &Stats) -> health::Observed {
    health::Observed {
        writer: stats.gauge(Gauge::Writer) == 1,
        silent: stats.progress.silent_for(),
        source_age: stats.source_seen.age(),
        redis_age: stats.redis_seen.age(),
        index_live: stats.gauge(Gauge::IndexLive) == 1,
        replaying_lost_writes: stats.lost_writes.replaying_until().map(|p| p.to_string()),
        lag: stats.lag(),
        redis_may_evict: stats.gauge(Gauge::RedisMayEvict) == 1,
        index_unscanned_permille: stats.gauge(Gauge::IndexUnscannedPermille),
        failing: stats.progress.failing_for().map(|streak| {
            let error = stats.progress.last_error().map(|(e, _)| e).unwrap_or_default();
            (streak, error)
        }),
    }
}

/// The probes' bounds from the config.
pub fn bounds(config: &crate::config::Config) -> Bounds {
    Bounds {
        stall: Duration::from_secs(config.pipeline.stall_timeout_secs),
        source: Duration::from_secs(config.mysql.heartbeat_secs * 3 + 1),
        redis: Duration::from_secs(config.redis.lease_ttl_secs),
        lag: Duration::from_secs(config.metrics.ready_max_lag_secs),
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("drugsync_transactions_total", "Source transactions applied");
    describe_counter!("drugsync_batches_total", "Batches written to Redis and checkpointed");
    describe_counter!(
        "drugsync_full_diffs_total",
        "Batches applied by a full hash diff of the index (DDL on a tracked table, an event without column names, a batch past max_batch_keys or full_diff_share)"
    );
    describe_counter!("drugsync_documents_upserted_total", "Documents written (created or changed)");
    describe_counter!("drugsync_documents_deleted_total", "Documents removed");
    describe_counter!("drugsync_documents_unchanged_total", "Documents rebuilt and found identical (not rewritten)");
    describe_counter!(
        "drugsync_documents_quarantined_total",
        "Documents put in the quarantine (cannot be built or embedded; left as they are)"
    );
    describe_counter!(
        "drugsync_documents_owed_vector_total",
        "Documents written without their vector because the embedding service could not answer (the vector is owed)"
    );
    describe_gauge!("drugsync_vectors_owed", "Documents in the index waiting for their vector (the pending set)");
    describe_gauge!("drugsync_vectors_owed_max_age_seconds", "Seconds the oldest owed vector has waited; 0 when none is owed");
    describe_counter!("drugsync_vector_cache_hits_total", "Vectors reused from the cache instead of an embedding call");
    describe_counter!("drugsync_embed_calls_total", "Embedding calls made, by model (a call carries one text or a batch)");
    describe_counter!("drugsync_embed_texts_total", "Texts sent to the embedding model, by model");
    describe_counter!(
        "drugsync_embed_tokens_total",
        "Input tokens by model: source=reported as the service counted them, source=estimated (characters / 4) where it does not say"
    );
    describe_counter!("drugsync_embed_texts_cut_total", "Texts cut to the model's input limit (embed.max_input_chars), by model");
    describe_gauge!(
        "drugsync_replication_lag_seconds",
        "Age of the oldest source transaction received and not yet in Redis (binlog commit time to now); 0 while nothing waits"
    );
    describe_gauge!("drugsync_last_source_commit_timestamp_seconds", "Source commit time of the last applied transaction");
    describe_gauge!(
        "drugsync_embed_estimated_cost_usd",
        "Embedding cost of this process so far, by model: input tokens x embed.price_per_1k_tokens"
    );
    describe_gauge!("drugsync_writer", "1 while this instance holds the writer lease, 0 while it stands by");
    describe_gauge!("drugsync_ready", "1 while /readyz answers 200 (the writer is ready, or the standby can take over), 0 otherwise");
    describe_gauge!(
        "drugsync_quarantined_documents",
        "Documents in the quarantine now, as the writer last read it from Redis (not in search until released)"
    );
    describe_gauge!("drugsync_redis_may_evict", "1 while Redis's maxmemory-policy may evict drugsync's keys (redis.allow_eviction)");
    describe_gauge!("drugsync_redis_evicted_keys", "Keys Redis evicted since it started (INFO stats evicted_keys), as last read");
    describe_gauge!("drugsync_canary_enabled", "1 while the freshness canary writes heartbeats (canary.table)");
    describe_gauge!(
        "drugsync_canary_freshness_seconds",
        "Seconds since the latest canary heartbeat that Redis shows was written: grows while nothing gets through"
    );
    describe_gauge!(
        "drugsync_canary_lag_seconds",
        "For the latest visible heartbeat: seconds from its write in MySQL to Redis's acknowledgement"
    );
    describe_gauge!(
        "drugsync_index_percent_indexed",
        "Share (0 to 1) of the live index's keys RediSearch has scanned (FT.INFO percent_indexed); below 1 searches miss documents"
    );
    describe_gauge!(
        "drugsync_visibility_gate",
        "1 for the gate that proves a batch's rows visible before they are re-read (mode=snapshot|gtid|fence|none), 0 for the others"
    );
    describe_gauge!(
        "drugsync_redis_persistence",
        "1 for how Redis keeps drugsync's data across its restart (kind=rdb|aof|none|declared), 0 for the others; none: a restart empties the index and the vector cache"
    );
    describe_counter!(
        "drugsync_redis_rewinds_total",
        "Times Redis was found behind the position it had acknowledged (restored from an older snapshot, restarted empty, a lagging replica promoted) and the writer replayed from what it holds"
    );
    describe_counter!(
        "drugsync_ungated_batches_total",
        "Batches re-read with no visibility gate (MySQL without GTIDs and mysql.visibility.allow_ungated_reads): each may be applied stale"
    );
    describe_gauge!(
        "drugsync_index_hash_indexing_failures",
        "Hashes RediSearch could not index since the live index was created (FT.INFO hash_indexing_failures); a reconcile finds and repairs them"
    );
}

fn publish(stats: &Stats, pricing: &Pricing, bounds: &Bounds) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, value) in [
        ("drugsync_transactions_total", Counter::Transactions),
        ("drugsync_batches_total", Counter::Batches),
        ("drugsync_full_diffs_total", Counter::FullDiffs),
        ("drugsync_documents_upserted_total", Counter::Upserted),
        ("drugsync_documents_deleted_total", Counter::Deleted),
        ("drugsync_documents_unchanged_total", Counter::Unchanged),
        ("drugsync_documents_quarantined_total", Counter::Quarantined),
        ("drugsync_documents_owed_vector_total", Counter::Owed),
        ("drugsync_vector_cache_hits_total", Counter::CacheHit),
        ("drugsync_ungated_batches_total", Counter::UngatedBatches),
        ("drugsync_redis_rewinds_total", Counter::RedisRewinds),
    ] {
        metrics::counter!(name).absolute(stats.counted(value));
    }
    let model = pricing.model.clone();
    let e = &stats.embed;
    metrics::counter!("drugsync_embed_calls_total", "model" => model.clone()).absolute(e.calls.load(Relaxed));
    metrics::counter!("drugsync_embed_texts_total", "model" => model.clone()).absolute(e.texts.load(Relaxed));
    metrics::counter!("drugsync_embed_texts_cut_total", "model" => model.clone()).absolute(e.texts_cut.load(Relaxed));
    metrics::counter!("drugsync_embed_tokens_total", "model" => model.clone(), "source" => "reported").absolute(e.tokens.load(Relaxed));
    metrics::counter!("drugsync_embed_tokens_total", "model" => model.clone(), "source" => "estimated")
        .absolute(e.tokens_estimated.load(Relaxed));
    metrics::gauge!("drugsync_replication_lag_seconds").set(stats.lag().as_secs_f64());
    metrics::gauge!("drugsync_last_source_commit_timestamp_seconds").set(stats.gauge(Gauge::LastCommitUnix) as f64);
    metrics::gauge!("drugsync_vectors_owed").set(stats.gauge(Gauge::OwedNow) as f64);
    metrics::gauge!("drugsync_vectors_owed_max_age_seconds").set(stats.gauge(Gauge::OwedMaxAgeSecs) as f64);
    metrics::gauge!("drugsync_writer").set(stats.gauge(Gauge::Writer) as f64);
    // What /readyz answers, for alerting on a writer not ready for minutes.
    metrics::gauge!("drugsync_ready").set(if health::readiness(&observe(stats), bounds).ok { 1.0 } else { 0.0 });
    metrics::gauge!("drugsync_quarantined_documents").set(stats.gauge(Gauge::QuarantinedNow) as f64);
    metrics::gauge!("drugsync_redis_may_evict").set(stats.gauge(Gauge::RedisMayEvict) as f64);
    metrics::gauge!("drugsync_redis_evicted_keys").set(stats.gauge(Gauge::RedisEvictedKeys) as f64);
    metrics::gauge!("drugsync_index_percent_indexed").set(1.0 - stats.gauge(Gauge::IndexUnscannedPermille) as f64 / 1000.0);
    metrics::gauge!("drugsync_index_hash_indexing_failures").set(stats.gauge(Gauge::IndexFailures) as f64);
    let gate = stats.gate();
    for mode in crate::mysql::visibility::GateMode::ALL {
        metrics::gauge!("drugsync_visibility_gate", "mode" => mode.as_str()).set(if gate == Some(mode) { 1.0 } else { 0.0 });
    }
    let persistence = crate::sink::persistence::Persistence::from_code(stats.gauge(Gauge::RedisPersistence));
    for kind in crate::sink::persistence::Persistence::ALL {
        metrics::gauge!("drugsync_redis_persistence", "kind" => kind.as_str()).set(if persistence == Some(kind) { 1.0 } else { 0.0 });
    }
    metrics::gauge!("drugsync_canary_enabled").set(stats.gauge(Gauge::CanaryEnabled) as f64);
    if let Some(freshness) = stats.canary_freshness() {
        metrics::gauge!("drugsync_canary_freshness_seconds").set(freshness.as_secs_f64());
        metrics::gauge!("drugsync_canary_lag_seconds").set(stats.gauge(Gauge::CanaryLagMs) as f64 / 1000.0);
    }
    metrics::gauge!("drugsync_embed_estimated_cost_usd", "model" => model).set(pricing.cost_usd(e.billed_tokens()));
}

//! Prometheus metrics: an HTTP endpoint (`metrics.listen`) serving the
//! replicator's counters and gauges. Values are copied from [`Stats`] once a
//! second, so the pipeline itself only touches atomics. Metric names and
//! labels carry no configuration values, so no secret can reach a scrape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio_util::sync::CancellationToken;

use crate::error::{Classify, ErrorClass};
use crate::pipeline::Stats;

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

/// Starts the endpoint on `listen` (every path answers with the metrics) and
/// publishes `stats` every second until `stop` fires. Call inside the runtime.
pub fn serve(listen: SocketAddr, stats: Arc<Stats>, stop: CancellationToken) -> Result<(), MetricsError> {
    // Bind first: the exporter would only log a failure from its own task.
    std::net::TcpListener::bind(listen).map_err(|e| MetricsError { listen, message: e.to_string() })?;
    PrometheusBuilder::new().with_http_listener(listen).install().map_err(|e| MetricsError { listen, message: e.to_string() })?;
    describe();
    tokio::spawn(async move {
        loop {
            publish(&stats);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    tracing::info!(%listen, "serving Prometheus metrics");
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("drugsync_transactions_total", "Source transactions applied");
    describe_counter!("drugsync_batches_total", "Batches written to Redis and checkpointed");
    describe_counter!("drugsync_documents_upserted_total", "Documents written (created or changed)");
    describe_counter!("drugsync_documents_deleted_total", "Documents removed");
    describe_counter!("drugsync_documents_unchanged_total", "Documents rebuilt and found identical (not rewritten)");
    describe_counter!(
        "drugsync_documents_quarantined_total",
        "Documents put in the quarantine (cannot be built or embedded; left as they are)"
    );
    describe_counter!("drugsync_vector_cache_hits_total", "Vectors reused from the cache instead of an embedding call");
    describe_counter!("drugsync_embed_calls_total", "Embedding calls made");
    describe_counter!("drugsync_embed_tokens_total", "Input tokens reported by the embedding service");
    describe_gauge!("drugsync_replication_lag_seconds", "Seconds from the source commit to the Redis write, for the last batch");
    describe_gauge!("drugsync_last_source_commit_timestamp_seconds", "Source commit time of the last applied transaction");
    describe_gauge!("drugsync_writer", "1 while this instance holds the writer lease, 0 while it stands by");
}

fn publish(stats: &Stats) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, value) in [
        ("drugsync_transactions_total", &stats.transactions),
        ("drugsync_batches_total", &stats.batches),
        ("drugsync_documents_upserted_total", &stats.upserts),
        ("drugsync_documents_deleted_total", &stats.deletes),
        ("drugsync_documents_unchanged_total", &stats.unchanged),
        ("drugsync_documents_quarantined_total", &stats.quarantined),
        ("drugsync_vector_cache_hits_total", &stats.cache_hits),
        ("drugsync_embed_calls_total", &stats.embed.calls),
        ("drugsync_embed_tokens_total", &stats.embed.tokens),
    ] {
        metrics::counter!(name).absolute(value.load(Relaxed));
    }
    metrics::gauge!("drugsync_replication_lag_seconds").set(stats.lag_ms.load(Relaxed) as f64 / 1000.0);
    metrics::gauge!("drugsync_last_source_commit_timestamp_seconds").set(stats.last_commit_unix.load(Relaxed) as f64);
    metrics::gauge!("drugsync_writer").set(stats.writer.load(Relaxed) as f64);
}

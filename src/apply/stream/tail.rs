//! What the stream and the replay pricing share: the binlog reader of this
//! replicator, and how many keys a batch may be applied by.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::replicator::Connected;
use crate::apply::RunError;
use crate::apply::retry::retry;
use crate::cdc::BinlogTailer;
use crate::config::ResumeBy;
use crate::mapping::Router;
use crate::sink::{DocumentSink, Sink};

/// Transactions buffered between the binlog reader and the apply loop.
pub const CHANNEL_CAPACITY: usize = 4096;

/// What reading the binlog uses, and nothing more: built by
/// [`Connected::tail`] for the stream and the replay pricing.
pub struct Tail<S> {
    opts: mysql_async::Opts,
    router: Arc<Router>,
    sink: Arc<S>,
    schema: String,
    /// `canary.table`: heartbeats the decoder keeps apart.
    canary: Option<String>,
    heartbeat: Duration,
    resume_by: ResumeBy,
    /// `pipeline.max_batch_keys`: most keys a batch is applied by, and the decoder's budget.
    max_batch_keys: usize,
    /// `pipeline.full_diff_share`.
    full_diff_share: f64,
    hostname: String,
    seen: crate::observe::health::Heartbeat,
    progress: crate::observe::progress::Progress,
}

impl<S: Sink> Connected<S> {
    /// The parts reading the binlog uses.
    pub fn tail(&self) -> Tail<S> {
        let c = &self.config;
        Tail {
            opts: self.opts.clone(),
            router: self.router.clone(),
            sink: self.sink.clone(),
            schema: c.mysql.schema.clone(),
            canary: c.canary.table.as_ref().map(|t| t.to_ascii_lowercase()),
            heartbeat: Duration::from_secs(c.mysql.heartbeat_secs),
            resume_by: c.mysql.resume_by,
            max_batch_keys: c.pipeline.max_batch_keys,
            full_diff_share: c.pipeline.full_diff_share,
            hostname: crate::mysql::preflight::replica_hostname(&c.index.name),
            seen: self.stats.source_seen.clone(),
            progress: self.stats.progress.clone(),
        }
    }
}

impl<S: DocumentSink> Tail<S> {
    /// The binlog reader, decoding for batches of at most `limit` keys,
    /// connecting as replica `server_id`.
    pub fn reader(&self, limit: usize, server_id: u32) -> BinlogTailer {
        let spec = crate::cdc::DecodeSpec { canary: self.canary.clone(), ..self.router.decode_spec(&self.schema, limit) };
        BinlogTailer::new(self.opts.clone(), server_id, spec, self.heartbeat, self.resume_by)
            .with_budget(self.max_batch_keys)
            .reporting_as(self.hostname.clone())
            .observed_by(self.seen.clone())
    }

    /// Most keys a batch is applied by key: `pipeline.full_diff_share` of the
    /// documents in the index, never more than `pipeline.max_batch_keys`.
    /// `None` when cancelled meanwhile.
    pub async fn batch_key_limit(&self, cancel: &CancellationToken) -> Result<Option<usize>, RunError> {
        let count = || async { Ok::<_, RunError>(self.sink.document_count().await?) };
        let Some(documents) = retry(&self.progress, cancel, "counting indexed documents", count).await? else { return Ok(None) };
        Ok(Some(key_limit(documents, self.full_diff_share, self.max_batch_keys)))
    }
}

/// See [`Tail::batch_key_limit`]; at least one key, so a single change is never a full diff.
fn key_limit(documents: u64, share: f64, max_keys: usize) -> usize {
    ((documents as f64 * share).ceil() as usize).clamp(1, max_keys.max(1))
}

#[cfg(test)]
mod tests {
    use super::key_limit;

    #[test]
    fn key_limit_is_a_share_of_the_index_within_bounds() {
        assert_eq!(key_limit(125_000, 0.2, 100_000), 25_000);
        assert_eq!(key_limit(10_000_000, 0.2, 100_000), 100_000, "memory cap wins");
        assert_eq!(key_limit(0, 0.2, 100_000), 1, "an empty index still applies single changes by key");
        assert_eq!(key_limit(7, 0.5, 100_000), 4);
    }
}

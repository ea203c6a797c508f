//! What the stream and the replay pricing share: the binlog reader of this
//! replicator, and how many keys a batch may be applied by.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RunError;
use super::replicator::Connected;
use super::retry::retry;
use crate::embed::Embedder;
use crate::source::BinlogTailer;

/// Transactions buffered between the binlog reader and the apply loop.
pub const CHANNEL_CAPACITY: usize = 4096;
/// The binlog reader of this replicator, decoding for batches of at most
/// `limit` keys, connecting as replica `server_id`.
pub fn tailer<E: Embedder>(r: &Connected<E>, limit: usize, server_id: u32) -> BinlogTailer {
    BinlogTailer::new(
        r.opts.clone(),
        server_id,
        r.router.decode_spec(&r.config.mysql.schema, limit),
        Duration::from_secs(r.config.mysql.heartbeat_secs),
        r.config.mysql.resume_by,
    )
    .with_budget(r.config.pipeline.max_batch_keys)
    .reporting_as(crate::source::preflight::replica_hostname(&r.config))
    .observed_by(r.stats.source_seen.clone())
}

/// Most keys a batch is applied by key: `pipeline.full_diff_share` of the
/// documents in the index, never more than `pipeline.max_batch_keys`.
/// `None` when cancelled meanwhile.
pub async fn batch_key_limit<E: Embedder>(r: &Connected<E>, cancel: &CancellationToken) -> Result<Option<usize>, RunError> {
    let count = || async { Ok::<_, RunError>(r.sink.document_count().await?) };
    let Some(documents) = retry(cancel, "counting indexed documents", count).await? else { return Ok(None) };
    Ok(Some(key_limit(documents, r.config.pipeline.full_diff_share, r.config.pipeline.max_batch_keys)))
}

/// See [`batch_key_limit`]; at least one key, so a single change is never a full diff.
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

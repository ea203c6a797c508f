//! The work queues of one index version: what is still owed, refused or
//! handed over, kept in Redis so that the position may move on past it.
//!
//! **Owed vectors.** A Bedrock outage must not freeze freshness: a labeler
//! rename or an obsolete NDC is worth applying even when the new text cannot
//! be embedded yet. Such a document is written with all its fields and no
//! vector ([`crate::document::DocumentChange::Owe`]: the old vector goes, it
//! belongs to a text the document no longer has) and recorded in the sorted
//! set `<state_prefix><index version>:pending`, scored by when it was first
//! owed, in the same atomic write as the batch's position. Until the vector
//! comes, the document is found by its fields but not by vector search. The
//! writer fills the set as soon as the service answers again
//! (`apply::fill`); a write of the document with its vector, or its
//! deletion, takes it out in the same transaction.
//!
//! **The quarantine.** Documents drugsync cannot build or embed for good (a
//! key the source refuses to look up, a text the embedding service refuses).
//! Without it such a document stops the writer, and every restart meets it
//! again: a crash loop over one bad row. Instead it is recorded in the hash
//! `<state_prefix><index version>:quarantine` (key -> JSON with the reason,
//! the time and the position) in the same atomic write as the batch's
//! position, so the position can never pass a document that is neither
//! applied nor recorded. Whenever the document is in line again (a later
//! change, or a reconcile, which compares every document and so retries
//! these) it leaves the quarantine in that write.
//!
//! **Repairs.** A reconcile that does not hold the writer lease hands the
//! keys it found drifted to the holder through the list
//! `<state_prefix><index>:repair`; the holder acks them only after writing.

use std::future::Future;

use redis::AsyncCommands;

use super::ops::WriteOp;
use super::{RedisSink, SinkError};
use crate::document::DocumentKey;

/// How many vectors are owed, and since when the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owed {
    /// Documents waiting for their vector.
    pub count: u64,
    /// Unix seconds when the oldest of them was first owed (`None` when none is).
    pub oldest_since: Option<u64>,
}

impl Owed {
    /// Seconds the oldest owed vector has waited, at `now` (Unix seconds); 0 when none is owed.
    pub fn max_age_secs(&self, now: u64) -> u64 {
        self.oldest_since.map_or(0, |since| now.saturating_sub(since))
    }
}

/// Owed vectors, the quarantine and queued repairs. Documents enter and
/// leave the first two only through document writes (`Documents::apply`
/// and the committer's write); this role reads them.
pub trait WorkQueues: Sync {
    /// How many documents are owed their vector, and since when the oldest.
    fn owed(&self) -> impl Future<Output = Result<Owed, SinkError>> + Send;

    /// Up to `max` owed documents, oldest first, after the `skip` owed longest.
    fn owed_oldest(&self, skip: usize, max: usize) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send;

    /// For each key, in input order, whether it is in the quarantine now.
    fn quarantined(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<bool>, SinkError>> + Send;

    /// How many keys are in the quarantine.
    fn quarantine_len(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Every quarantined key with its entry (JSON: reason, since, position).
    /// Bounded by the quarantine, not by a table; for `drugsync status`.
    fn quarantine(&self) -> impl Future<Output = Result<Vec<(DocumentKey, String)>, SinkError>> + Send;

    /// Queues document keys for the lease holder to rebuild (a reconcile's handoff).
    fn push_repairs(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Up to `max` queued repairs, oldest first, left queued until
    /// [`Self::ack_repairs`]: a crash in between repeats a repair instead of losing it.
    fn peek_repairs(&self, max: usize) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send;

    /// Removes the `n` oldest queued repairs (those a writer rebuilt),
    /// fenced like every write of the lease holder: a paused former writer
    /// cannot drop repairs handed to the one that took over.
    fn ack_repairs(&self, n: usize) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// How many repairs are queued.
    fn pending_repairs(&self) -> impl Future<Output = Result<usize, SinkError>> + Send;
}

impl WorkQueues for RedisSink {
    /// ZCARD and the lowest score, one round trip.
    async fn owed(&self) -> Result<Owed, SinkError> {
        let mut conn = self.conn.clone();
        let (count, oldest): (u64, Vec<(String, f64)>) =
            redis::pipe().zcard(&self.keys.pending).zrange_withscores(&self.keys.pending, 0, 0).query_async(&mut conn).await?;
        Ok(Owed { count, oldest_since: oldest.first().map(|(_, score)| *score as u64) })
    }

    async fn owed_oldest(&self, skip: usize, max: usize) -> Result<Vec<DocumentKey>, SinkError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.zrange(&self.keys.pending, skip as isize, (skip + max) as isize - 1).await?;
        Ok(keys.into_iter().map(DocumentKey).collect())
    }

    async fn quarantined(&self, keys: &[DocumentKey]) -> Result<Vec<bool>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let fields: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let entries: Vec<Option<String>> = redis::cmd("HMGET").arg(&self.keys.quarantine).arg(fields).query_async(&mut conn).await?;
        Ok(entries.into_iter().map(|e| e.is_some()).collect())
    }

    async fn quarantine_len(&self) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.hlen(&self.keys.quarantine).await?)
    }

    async fn quarantine(&self) -> Result<Vec<(DocumentKey, String)>, SinkError> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, String)> = conn.hgetall(&self.keys.quarantine).await?;
        Ok(entries.into_iter().map(|(k, v)| (DocumentKey(k), v)).collect())
    }

    /// RPUSH, a thousand keys a command.
    async fn push_repairs(&self, keys: &[DocumentKey]) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(1000) {
            let values: Vec<&str> = chunk.iter().map(|k| k.0.as_str()).collect();
            let _: () = redis::cmd("RPUSH").arg(&self.repair_key).arg(values).query_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn peek_repairs(&self, max: usize) -> Result<Vec<DocumentKey>, SinkError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("LRANGE").arg(&self.repair_key).arg(0).arg(max.saturating_sub(1)).query_async(&mut conn).await?;
        Ok(keys.into_iter().map(DocumentKey).collect())
    }

    async fn ack_repairs(&self, n: usize) -> Result<(), SinkError> {
        self.write(vec![WriteOp::LTrimFront { key: self.repair_key.clone(), drop: n }]).await
    }

    async fn pending_repairs(&self) -> Result<usize, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("LLEN").arg(&self.repair_key).query_async(&mut conn).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::Owed;

    #[test]
    fn the_age_is_the_oldest_entrys_and_zero_when_nothing_is_owed() {
        assert_eq!(Owed::default().max_age_secs(1_000), 0);
        assert_eq!(Owed { count: 3, oldest_since: Some(940) }.max_age_secs(1_000), 60);
        assert_eq!(Owed { count: 1, oldest_since: Some(1_010) }.max_age_secs(1_000), 0, "a clock behind Redis's writer is no negative age");
    }
}

//! The quarantine: documents drugsync cannot build or embed for good (a key
//! the source refuses to look up, a text the embedding service refuses).
//!
//! Without it such a document stops the writer, and every restart meets it
//! again: a crash loop over one bad row. Instead it is recorded in a hash
//! `<state_prefix><index version>:quarantine` (key -> JSON with the reason,
//! the time and the position), counted in a metric and logged as an error
//! naming the key, and replication goes on. The entry is written in the same
//! atomic write as the batch's position, so the position can never pass a
//! document that is neither applied nor recorded. Whenever the document is
//! in line again (a later change, or a reconcile, which compares every
//! document and so retries these) it leaves the quarantine in that write.

use redis::AsyncCommands;

use super::{RedisSink, SinkError};
use crate::document::DocumentKey;

impl RedisSink {
    /// For each key, in order, whether it is in the quarantine now.
    pub async fn quarantined(&self, keys: &[DocumentKey]) -> Result<Vec<bool>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let fields: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let entries: Vec<Option<String>> = redis::cmd("HMGET").arg(&self.keys.quarantine).arg(fields).query_async(&mut conn).await?;
        Ok(entries.into_iter().map(|e| e.is_some()).collect())
    }

    /// Every quarantined key with its entry (JSON: reason, since, position).
    pub async fn quarantine(&self) -> Result<Vec<(DocumentKey, String)>, SinkError> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, String)> = conn.hgetall(&self.keys.quarantine).await?;
        Ok(entries.into_iter().map(|(k, v)| (DocumentKey(k), v)).collect())
    }

    /// How many documents are in the quarantine.
    pub async fn quarantine_len(&self) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.hlen(&self.keys.quarantine).await?)
    }
}

//! RediSearch's own verdict on an index version: how much of what Redis
//! holds it has indexed, and which documents it could not index.
//!
//! A hash under the prefix that RediSearch cannot index (a NUMERIC field
//! holding "N/A", a vector blob of the wrong size) is still in Redis but
//! invisible to every search, and nothing but `FT.INFO`'s
//! `hash_indexing_failures` says so. That counter only grows (a failure
//! later fixed stays counted), so it is a reason to look, not a list: which
//! documents are unindexed is asked of the index itself, a page at a time.

use redis::Value;

use super::alias::info_text;
use super::{RedisSink, SinkError};
use crate::document::DocumentKey;

/// What `FT.INFO` says about one index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexVerdict {
    /// Documents indexed (`num_docs`).
    pub docs: u64,
    /// Hashes RediSearch failed to index since the index was created
    /// (`hash_indexing_failures`; never decreases).
    pub indexing_failures: u64,
    /// Share of the keys under the prefix scanned so far, 0.0 to 1.0
    /// (`percent_indexed`): below 1 while RediSearch indexes existing keys
    /// in the background (after `FT.CREATE` over keys, or an RDB load), when
    /// searches miss documents Redis holds.
    pub percent_indexed: f64,
}

impl IndexVerdict {
    /// Reads the verdict from an `FT.INFO` reply; fields it lacks read as
    /// the healthy value, except `percent_indexed`, which RediSearch has
    /// always reported.
    fn of(info: &Value) -> Result<Self, SinkError> {
        let number = |field: &str| info_text(info, field).and_then(|n| n.parse::<f64>().ok());
        let percent_indexed = number("percent_indexed").ok_or_else(|| SinkError::Command {
            message: "FT.INFO has no percent_indexed".into(),
            hint: "check that redis.url points at Redis Stack / Redis 8 with search",
        })?;
        Ok(Self {
            docs: number("num_docs").unwrap_or(0.0) as u64,
            indexing_failures: number("hash_indexing_failures").unwrap_or(0.0) as u64,
            percent_indexed,
        })
    }

    /// Whether every key under the prefix has been scanned into the index.
    pub fn fully_indexed(&self) -> bool {
        self.percent_indexed >= 1.0
    }

    /// `percent_indexed` in thousandths, for an integer gauge.
    pub fn permille_indexed(&self) -> u64 {
        (self.percent_indexed.clamp(0.0, 1.0) * 1000.0).round() as u64
    }
}

impl RedisSink {
    /// The verdict on this index version, or `None` when it does not exist.
    pub async fn verdict(&self) -> Result<Option<IndexVerdict>, SinkError> {
        self.verdict_of(&self.version.index.clone()).await
    }

    /// The verdict on the index the alias points at, or `None` when the
    /// alias answers nothing (Redis emptied, the index dropped).
    pub async fn alias_verdict(&self) -> Result<Option<IndexVerdict>, SinkError> {
        self.verdict_of(&self.version.alias.clone()).await
    }

    async fn verdict_of(&self, name: &str) -> Result<Option<IndexVerdict>, SinkError> {
        match self.index_info(name).await? {
            Some(info) => Ok(Some(IndexVerdict::of(&info)?)),
            None => Ok(None),
        }
    }

    /// Of `keys` (documents Redis holds), those this index version has not
    /// indexed: one `FT.SEARCH … INKEYS` for the lot.
    pub async fn unindexed(&self, keys: &[DocumentKey]) -> Result<Vec<DocumentKey>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(&self.version.index).arg("*").arg("INKEYS").arg(keys.len());
        for key in keys {
            cmd.arg(self.key_of(key));
        }
        cmd.arg("NOCONTENT").arg("LIMIT").arg(0).arg(keys.len());
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = cmd.query_async(&mut conn).await?;
        let indexed: std::collections::HashSet<String> =
            reply.into_iter().skip(1).filter_map(|v| redis::from_redis_value::<String>(v).ok()).collect();
        Ok(keys.iter().filter(|k| !indexed.contains(&self.key_of(k))).cloned().collect())
    }

    /// Makes `keys` look out of date (their `doc_hash` removed), so the next
    /// sync of each rewrites it from current MySQL state. For documents Redis
    /// holds but cannot index: their hash says they are current, and would
    /// keep a rewrite from happening. Dropping the marker can only cause a
    /// rewrite, never make a document older, so a handing-off reconcile may
    /// do it next to the streamer.
    pub async fn mark_out_of_date(&self, keys: &[DocumentKey]) -> Result<(), SinkError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HDEL").arg(self.key_of(key)).arg("doc_hash").ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fields: &[(&str, Value)]) -> Value {
        Value::Array(fields.iter().flat_map(|(k, v)| [Value::SimpleString((*k).into()), v.clone()]).collect())
    }

    #[test]
    fn reads_the_three_numbers_whatever_their_reply_type() {
        let reply = info(&[
            ("num_docs", Value::Int(42)),
            ("hash_indexing_failures", Value::Int(3)),
            ("percent_indexed", Value::BulkString(b"0.25".to_vec())),
        ]);
        let v = IndexVerdict::of(&reply).unwrap();
        assert_eq!(v, IndexVerdict { docs: 42, indexing_failures: 3, percent_indexed: 0.25 });
        assert!(!v.fully_indexed());
        assert_eq!(v.permille_indexed(), 250);
        let done = IndexVerdict::of(&info(&[("percent_indexed", Value::BulkString(b"1".to_vec()))])).unwrap();
        assert!(done.fully_indexed() && done.permille_indexed() == 1000 && done.indexing_failures == 0);
    }

    #[test]
    fn a_reply_without_percent_indexed_is_not_taken_for_a_healthy_index() {
        assert!(IndexVerdict::of(&info(&[("num_docs", Value::Int(1))])).is_err());
    }
}

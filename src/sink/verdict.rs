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

use super::SinkError;
use super::index::info_text;

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
    pub(super) fn of(info: &Value) -> Result<Self, SinkError> {
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

//! The vector cache, bounded.
//!
//! Each new vector is also stored under `<state_prefix>vec:<text hash>`, so a
//! text that comes back (a change undone, a new package of an existing drug)
//! costs no embedding call. Left alone that grows with every text ever
//! embedded, under every model ever configured: under `noeviction` it ends
//! in Redis OOM, under an `allkeys-*` policy Redis evicts documents instead.
//!
//! So every entry is also scored in a sorted set per embedding space
//! (`<state_prefix>vec:space:<space id>`) by when it was stored, and after
//! each write that stored vectors the oldest are dropped past
//! `embed.cache_max_vectors`. When the alias moves to a version in another
//! space (a model or dimensions change), the old space's entries go with the
//! old version. Entries written before this bound existed belong to no set:
//! the writer adopts them at start as the oldest, so they go first.

use super::{RedisSink, SinkError};

/// Drops the oldest entries of KEYS[1] past ARGV[1], with their vectors (ARGV[2] .. hash).
const TRIM: &str = r"local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local old = redis.call('ZPOPMIN', KEYS[1], excess)
for i = 1, #old, 2 do redis.call('DEL', ARGV[2] .. old[i]) end
return excess";

/// Entries dropped or adopted per round trip.
const BATCH: usize = 1000;

pub use super::keys::{space_id, space_parts};

impl RedisSink {
    /// Drops the oldest cached vectors of this space past `embed.cache_max_vectors`; how many went.
    pub async fn trim_vector_cache(&self) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        let max = self.cache_max;
        Ok(redis::Script::new(TRIM).key(&self.cache_index_key).arg(max).arg(&self.cache_prefix).invoke_async(&mut conn).await?)
    }

    /// Caches vectors outside a document write (those of a chunk that failed
    /// on other texts and will be retried), then trims.
    pub async fn cache_vectors(&self, vectors: &[(crate::document::TextHash, std::sync::Arc<Vec<f32>>)]) -> Result<(), SinkError> {
        if self.cache_max == 0 || vectors.is_empty() {
            return Ok(());
        }
        let now_ms = crate::health::unix_ms();
        let mut pipe = redis::pipe();
        for (hash, vector) in vectors {
            pipe.cmd("SET").arg(format!("{}{}", self.cache_prefix, hash.0)).arg(crate::embed::vector_to_bytes(vector)).ignore();
            pipe.cmd("ZADD").arg(&self.cache_index_key).arg(now_ms).arg(&hash.0).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        self.trim_vector_cache().await.map(drop)
    }

    /// Cached vectors in this space's set.
    pub async fn vector_cache_len(&self) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZCARD").arg(&self.cache_index_key).query_async(&mut conn).await?)
    }

    /// Records this version's embedding space (so a later switch away knows
    /// which cache entries die with it).
    pub async fn record_space(&self) -> Result<(), SinkError> {
        let space = self.cache_index_key.rsplit(':').next().unwrap_or_default().to_owned();
        let mut conn = self.conn.clone();
        Ok(redis::cmd("SET").arg(&self.keys.space).arg(space).query_async(&mut conn).await?)
    }

    /// After the alias left `old`: drops the cached vectors of its embedding
    /// space when that is not this version's. Returns how many went.
    pub async fn drop_vector_cache_of(&self, old: &str) -> Result<u64, SinkError> {
        let old_space_key = super::keys::VersionKeys::of(&self.state_prefix, old).space;
        let mut conn = self.conn.clone();
        let space: Option<String> = redis::cmd("GET").arg(&old_space_key).query_async(&mut conn).await?;
        let old_set = space.map(|s| format!("{}space:{s}", self.cache_prefix)).filter(|set| *set != self.cache_index_key);
        let mut dropped = 0;
        if let Some(set) = old_set {
            loop {
                let popped: Vec<(String, f64)> = redis::cmd("ZPOPMIN").arg(&set).arg(BATCH).query_async(&mut conn).await?;
                if popped.is_empty() {
                    break;
                }
                dropped += popped.len() as u64;
                let keys: Vec<String> = popped.iter().map(|(hash, _)| format!("{}{hash}", self.cache_prefix)).collect();
                redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await?;
            }
            tracing::info!(index = %old, vectors = dropped, "dropped the vector cache of the old version's embedding space");
        }
        redis::cmd("DEL").arg(&old_space_key).query_async::<()>(&mut conn).await?;
        Ok(dropped)
    }

    /// Puts cache entries that belong to no space's set into this one as
    /// the oldest, then trims; returns how many were adopted.
    pub async fn adopt_vector_cache(&self) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", super::redis::escape_glob(&self.cache_prefix));
        let space_prefix = format!("{}space:", self.cache_prefix);
        let (mut cursor, mut sets, mut entries) = (0u64, Vec::new(), Vec::new());
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(BATCH).query_async(&mut conn).await?;
            for key in batch {
                match key.strip_prefix(&self.cache_prefix) {
                    Some(_) if key.starts_with(&space_prefix) => sets.push(key),
                    Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => entries.push(hash.to_owned()),
                    _ => {}
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut adopted = 0;
        for chunk in entries.chunks(BATCH) {
            let mut homeless: Vec<&String> = chunk.iter().collect();
            for set in &sets {
                let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE").arg(set).arg(&homeless).query_async(&mut conn).await?;
                homeless = homeless.into_iter().zip(scores).filter(|(_, s)| s.is_none()).map(|(h, _)| h).collect();
            }
            if !homeless.is_empty() {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&self.cache_index_key);
                for hash in &homeless {
                    zadd.arg(0).arg(*hash);
                }
                zadd.query_async::<()>(&mut conn).await?;
                adopted += homeless.len() as u64;
            }
        }
        if adopted > 0 {
            tracing::info!(vectors = adopted, "adopted cached vectors from before the cache was bounded (oldest first out)");
        }
        self.trim_vector_cache().await?;
        Ok(adopted)
    }
}

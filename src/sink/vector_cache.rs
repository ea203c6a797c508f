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

use std::future::Future;
use std::sync::Arc;

use super::{RedisSink, SinkError};
use crate::document::TextHash;
use crate::embed::vector_from_bytes;

/// Drops the oldest entries of KEYS[1] past ARGV[1], with their vectors (ARGV[2] .. hash).
const TRIM: &str = r"local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local old = redis.call('ZPOPMIN', KEYS[1], excess)
for i = 1, #old, 2 do redis.call('DEL', ARGV[2] .. old[i]) end
return excess";

/// Entries dropped or adopted per round trip.
const BATCH: usize = 1000;

pub use super::keys::{space_id, space_parts};

/// The vector cache of one embedding space: vectors by text hash, shared by
/// every index version of that space. A cache is an optimisation: a miss is
/// always allowed, a hit must be the vector that was stored.
pub trait VectorCache: Sync {
    /// Cached vectors by text hash, in input order (`None`: not cached, of
    /// the wrong size, or not a usable vector, which is logged).
    fn cached_vectors(&self, hashes: &[&TextHash]) -> impl Future<Output = Result<Vec<Option<Vec<f32>>>, SinkError>> + Send;

    /// Caches vectors outside a document write (those a failed chunk
    /// already paid for), then trims; best kept, never required.
    fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Keeps the cache within `embed.cache_max_vectors`, oldest out (after
    /// writes that added to it).
    fn trim_vector_cache(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// How many vectors the cache of this embedding space holds.
    fn vector_cache_len(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Records this version's embedding space, so a later switch away knows
    /// which cache entries die with it.
    fn record_space(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Takes over cache entries that belong to no space (written before the
    /// cache was bounded) as the oldest of this one, then trims; how many.
    fn adopt_vector_cache(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// After the alias left the version `old`: drops the cached vectors of
    /// its embedding space when that is not this version's; how many went.
    fn drop_vector_cache_of(&self, old: &str) -> impl Future<Output = Result<u64, SinkError>> + Send;
}

impl VectorCache for RedisSink {
    /// One MGET; entries that fail `embed::check_vector` count as misses.
    async fn cached_vectors(&self, hashes: &[&TextHash]) -> Result<Vec<Option<Vec<f32>>>, SinkError> {
        if self.cache_max == 0 {
            return Ok(vec![None; hashes.len()]);
        }
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes.iter().map(|h| format!("{}{}", self.cache_prefix, h.0)).collect();
        let mut conn = self.conn.clone();
        let blobs: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let dimensions = self.vector_bytes / 4;
        Ok(blobs
            .into_iter()
            .map(|blob| {
                let vector = blob.filter(|b| b.len() == self.vector_bytes).and_then(|b| vector_from_bytes(&b))?;
                // Written before vectors were checked, or by someone else: a miss, never reused.
                match crate::embed::check_vector(&vector, dimensions) {
                    Ok(()) => Some(vector),
                    Err(fault) => {
                        tracing::warn!(%fault, "a cached vector cannot be used; its text is embedded again");
                        None
                    }
                }
            })
            .collect())
    }

    async fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> Result<(), SinkError> {
        if self.cache_max == 0 || vectors.is_empty() {
            return Ok(());
        }
        let now_ms = crate::observe::health::unix_ms();
        let mut pipe = redis::pipe();
        for (hash, vector) in vectors {
            pipe.cmd("SET").arg(format!("{}{}", self.cache_prefix, hash.0)).arg(crate::embed::vector_to_bytes(vector)).ignore();
            pipe.cmd("ZADD").arg(&self.cache_index_key).arg(now_ms).arg(&hash.0).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        self.trim_vector_cache().await
    }

    /// A script drops the oldest past the bound, with their vectors.
    async fn trim_vector_cache(&self) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        let max = self.cache_max;
        let _dropped: u64 =
            redis::Script::new(TRIM).key(&self.cache_index_key).arg(max).arg(&self.cache_prefix).invoke_async(&mut conn).await?;
        Ok(())
    }

    /// ZCARD of this space's set.
    async fn vector_cache_len(&self) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZCARD").arg(&self.cache_index_key).query_async(&mut conn).await?)
    }

    async fn record_space(&self) -> Result<(), SinkError> {
        let space = self.cache_index_key.rsplit(':').next().unwrap_or_default().to_owned();
        let mut conn = self.conn.clone();
        Ok(redis::cmd("SET").arg(&self.keys.space).arg(space).query_async(&mut conn).await?)
    }

    async fn drop_vector_cache_of(&self, old: &str) -> Result<u64, SinkError> {
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

    /// Scans the cache prefix; entries no space's set scores join this one at score 0.
    async fn adopt_vector_cache(&self) -> Result<u64, SinkError> {
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

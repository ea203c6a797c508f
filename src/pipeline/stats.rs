//! Counters of work done, shared with logs and tests.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::embed::EmbedStats;

/// See the module docs. All counters only grow.
#[derive(Debug, Default)]
pub struct Stats {
    /// Embedding calls and tokens.
    pub embed: EmbedStats,
    /// Documents written (created or changed).
    pub upserts: AtomicU64,
    /// Documents removed.
    pub deletes: AtomicU64,
    /// Documents rebuilt but found identical in Redis (not rewritten).
    pub unchanged: AtomicU64,
    /// Vectors reused from the cache instead of calling the embedder.
    pub cache_hits: AtomicU64,
    /// Source transactions applied.
    pub transactions: AtomicU64,
    /// Batches committed (Redis EXEC + checkpoint).
    pub batches: AtomicU64,
}

impl Stats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

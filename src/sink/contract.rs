//! What the pipeline needs from a sink, as traits: the contract
//! [`RedisSink`] fulfils, and the seam that lets the pipeline's logic
//! (decide, embed, write; the committer's order) be unit-tested against an
//! in-memory sink with fault points instead of a Redis server.
//!
//! Durability, for every write below: when a call returns `Ok`, the sink
//! has acknowledged all of it (Redis: the MULTI/EXEC ran; with AOF
//! `appendfsync everysec`, a Redis crash may still lose the last second,
//! which the start-up cross-check of positions detects). When it returns
//! `Err`, nothing of it was applied, except after a lost connection, where
//! the caller cannot know and must treat it as not applied: every write is
//! idempotent, so applying it again is always safe.

use std::future::Future;
use std::sync::Arc;

use super::{RedisSink, SinkError, StoredState};
use crate::document::{DocumentChange, DocumentKey, TextHash};
use crate::position::Position;

/// A sink's position: documents and, with a batch's last write, its
/// position, in one atomic write (see the module docs for durability).
pub trait RemotePositions: Sync {
    /// Applies `changes` and stores `position` in one atomic write. When it
    /// returns `Ok`, the sink acknowledged both; on `Err`, neither happened
    /// (a fenced or refused write runs nothing) or, for a lost connection,
    /// the caller cannot know, and must treat the position as not stored.
    fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The position the last [`Self::apply_ending_at`] stored (`None`: none yet).
    fn stored_position(&self) -> impl Future<Output = Result<Option<Position>, SinkError>> + Send;
}

/// The documents side: what syncing a set of documents reads and writes.
pub trait DocumentSink: RemotePositions {
    /// What the sink holds for each key, in input order (`None`: nothing).
    fn read_state(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<Option<StoredState>>, SinkError>> + Send;

    /// For each key, in input order, whether it is in the quarantine now.
    fn quarantined(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<bool>, SinkError>> + Send;

    /// Cached vectors by text hash, in input order (`None`: not cached, or
    /// the wrong size). A cache is an optimisation: `None` is always allowed.
    fn cached_vectors(&self, hashes: &[&TextHash]) -> impl Future<Output = Result<Vec<Option<Vec<f32>>>, SinkError>> + Send;

    /// Caches vectors outside a document write (those a failed chunk
    /// already paid for); best kept, never required.
    fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Applies `changes` in one atomic write, moving no position. A new
    /// vector is cached under its text hash in the same write.
    fn apply(&self, changes: &[DocumentChange]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Keeps the vector cache within its bound (after writes that added to it).
    fn trim_vector_cache(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The key as the operator sees it in the sink (for logs).
    fn key_of(&self, key: &DocumentKey) -> String;
}

impl RemotePositions for RedisSink {
    fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::apply_ending_at(self, changes, position)
    }

    fn stored_position(&self) -> impl Future<Output = Result<Option<Position>, SinkError>> + Send {
        RedisSink::position(self)
    }
}

impl DocumentSink for RedisSink {
    fn read_state(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<Option<StoredState>>, SinkError>> + Send {
        RedisSink::read_state(self, keys)
    }
    fn quarantined(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<bool>, SinkError>> + Send {
        RedisSink::quarantined(self, keys)
    }
    fn cached_vectors(&self, hashes: &[&TextHash]) -> impl Future<Output = Result<Vec<Option<Vec<f32>>>, SinkError>> + Send {
        RedisSink::cached_vectors(self, hashes)
    }
    fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::cache_vectors(self, vectors)
    }
    fn apply(&self, changes: &[DocumentChange]) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::apply(self, changes)
    }
    async fn trim_vector_cache(&self) -> Result<(), SinkError> {
        RedisSink::trim_vector_cache(self).await.map(drop)
    }
    fn key_of(&self, key: &DocumentKey) -> String {
        RedisSink::key_of(self, key)
    }
}

//! The one writer of positions.
//!
//! drugsync keeps two positions: Redis's (`<state><version>:position`,
//! written in the same atomic write as the documents of the batch it ends)
//! and the local checkpoint (redb). The crash-safety invariant is that
//! neither ever passes a write Redis has not acknowledged, and that the
//! local one moves only after Redis's: so a crash anywhere leaves the
//! local position at or before Redis's, and the restart replays
//! (idempotently) from there (see `start`).
//!
//! [`Committer`] is the only code that writes either position: every other
//! Redis write goes through `DocumentSink::apply`, which takes no position,
//! and the checkpoint's `advance` and `reset` are called from here alone.
//! Its order is always Redis first, then local. It works over two small
//! traits, [`RemotePositions`] (the sink's contract) and [`LocalPositions`]
//! (the checkpoint's), so its order is unit-tested against in-memory fakes
//! with fault points. A reconcile has no committer at all: it cannot move
//! a position, by its type.

use std::sync::Arc;

use crate::apply::RunError;
use crate::checkpoint::LocalPositions;
use crate::document::DocumentChange;
use crate::position::Position;
use crate::sink::RemotePositions;

/// See the module docs. Cheap to clone: it shares both sides.
pub struct Committer<R> {
    remote: Arc<R>,
    local: Arc<dyn LocalPositions + Send + Sync>,
}

impl<R> Clone for Committer<R> {
    fn clone(&self) -> Self {
        Self { remote: self.remote.clone(), local: self.local.clone() }
    }
}

impl<R: RemotePositions> Committer<R> {
    /// A committer over Redis and the streamer's checkpoint.
    pub fn new(remote: Arc<R>, local: Arc<dyn LocalPositions + Send + Sync>) -> Self {
        Self { remote, local }
    }

    /// Ends a batch: `changes` (the batch's last write) and `position` in
    /// one atomic Redis write, then, once Redis acknowledged it, the local
    /// checkpoint forward to `position`. When this returns `Ok`, both hold
    /// it; when it fails, the local checkpoint has not moved past Redis's.
    pub async fn commit(&self, changes: &[DocumentChange], position: &Position) -> Result<(), RunError> {
        self.remote.apply_ending_at(changes, position).await?;
        self.local.advance(position)?;
        Ok(())
    }

    /// Moves both positions to `position`, earlier or later than where they
    /// stand (an initial load's snapshot, an operator's replay, the current
    /// end after a reconcile of a lost position): Redis first, then local.
    pub async fn rewind_to(&self, position: &Position) -> Result<(), RunError> {
        self.remote.apply_ending_at(&[], position).await?;
        self.local.reset(position)?;
        Ok(())
    }

    /// Both positions as they stand: the local checkpoint's and Redis's.
    pub async fn positions(&self) -> Result<(Option<Position>, Option<Position>), RunError> {
        let local = self.local.stored()?;
        let remote = self.remote.stored_position().await?;
        Ok((local, remote))
    }

    /// The local checkpoint takes `position`, which Redis already holds
    /// (the start decision: no local checkpoint, or Redis behind it).
    pub fn adopt(&self, position: &Position) -> Result<(), RunError> {
        self.local.reset(position)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::start::{Start, decide};
    use crate::document::DocumentKey;
    use crate::error::Classify;
    use crate::testing::fakes::rig::at;
    use crate::testing::fakes::{DiskFault, MemoryCheckpoint, MemorySink, SinkFault};

    fn delete(key: &str) -> DocumentChange {
        DocumentChange::Delete(DocumentKey(key.into()))
    }

    fn position(redis: &MemorySink) -> Option<Position> {
        redis.contents(|c| c.position.clone())
    }

    #[tokio::test]
    async fn a_commit_stores_redis_then_local_and_both_end_equal() {
        let (redis, local) = (Arc::new(MemorySink::new(4)), Arc::new(MemoryCheckpoint::default()));
        let committer = Committer::new(redis.clone(), local.clone());
        committer.commit(&[delete("a")], &at(100)).await.unwrap();
        assert_eq!((position(&redis), local.position()), (Some(at(100)), Some(at(100))));
        assert_eq!(redis.contents(|c| c.writes), 1);
    }

    #[tokio::test]
    async fn a_write_redis_did_not_acknowledge_never_moves_the_local_position() {
        for fault in [SinkFault::Fenced, SinkFault::Lost, SinkFault::LostAfterApplying] {
            let (redis, local) = (Arc::new(MemorySink::new(4)), Arc::new(MemoryCheckpoint::default()));
            let committer = Committer::new(redis.clone(), local.clone());
            committer.commit(&[], &at(100)).await.unwrap();
            redis.fail_write(1, fault);
            let err = committer.commit(&[delete("b")], &at(200)).await.unwrap_err();
            assert_eq!(err.is_transient(), fault != SinkFault::Fenced, "a lost lease is definite, a lost connection transient: {err}");
            assert_eq!(local.position(), Some(at(100)), "{fault:?}");
            // Applied but unacknowledged: Redis may be ahead of the checkpoint, never behind.
            let expected = if fault == SinkFault::LostAfterApplying { at(200) } else { at(100) };
            assert_eq!(position(&redis), Some(expected), "{fault:?}");
        }
    }

    #[tokio::test]
    async fn a_crash_after_redis_acknowledged_but_before_the_checkpoint_moved_replays_from_the_checkpoint() {
        let (redis, local) = (Arc::new(MemorySink::new(4)), Arc::new(MemoryCheckpoint::default()));
        let committer = Committer::new(redis.clone(), local.clone());
        committer.commit(&[], &at(100)).await.unwrap();
        local.fail_next(DiskFault::Full);
        assert!(committer.commit(&[delete("c")], &at(200)).await.is_err());
        assert_eq!((position(&redis), local.position()), (Some(at(200)), Some(at(100))), "Redis ahead, never behind");
        // The restart: Redis ahead of the checkpoint resumes from the checkpoint (a harmless replay).
        assert_eq!(decide(local.position(), position(&redis)), Start::Resume(at(100)));
    }

    #[tokio::test]
    async fn a_rewound_redis_is_replayed_from_and_rewind_moves_both_back() {
        let (redis, local) = (Arc::new(MemorySink::new(4)), Arc::new(MemoryCheckpoint::default()));
        let committer = Committer::new(redis.clone(), local.clone());
        committer.commit(&[], &at(300)).await.unwrap();
        // Redis restored from an older copy.
        redis.restore_older(at(150));
        assert_eq!(decide(local.position(), position(&redis)), Start::AdoptRedis(at(150)));
        committer.adopt(&at(150)).unwrap();
        assert_eq!(local.position(), Some(at(150)));
        committer.rewind_to(&at(50)).await.unwrap();
        assert_eq!((position(&redis), local.position()), (Some(at(50)), Some(at(50))));
    }

    #[tokio::test]
    async fn the_checkpoint_refuses_to_go_backwards_and_redis_keeps_what_it_acknowledged() {
        let (redis, local) = (Arc::new(MemorySink::new(4)), Arc::new(MemoryCheckpoint::default()));
        let committer = Committer::new(redis.clone(), local.clone());
        committer.commit(&[], &at(300)).await.unwrap();
        let err = committer.commit(&[], &at(200)).await.unwrap_err();
        assert!(!err.is_transient(), "a position going backwards is a bug to stop on: {err}");
        assert_eq!(local.position(), Some(at(300)));
        // Redis acknowledged the write before the checkpoint refused: it keeps
        // it, and the next start replays from there (earlier is always safe).
        assert_eq!(position(&redis), Some(at(200)));
        assert_eq!(decide(local.position(), position(&redis)), Start::AdoptRedis(at(200)));
    }
}

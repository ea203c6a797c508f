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
//! Redis write goes through `RedisSink::apply`, which takes no position,
//! and the checkpoint's `advance` and `reset` are called from here alone.
//! Its order is always Redis first, then local. It works over two small
//! traits, [`RemotePositions`] and [`LocalPositions`], so its order is
//! unit-tested against in-memory fakes with fault points.

use std::future::Future;

use super::RunError;
use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::document::DocumentChange;
use crate::position::Position;
use crate::sink::{RedisSink, SinkError};

/// Redis's side: documents and, with a batch's last write, its position.
pub trait RemotePositions: Sync {
    /// Applies `changes` and stores `position` in one atomic write. When it
    /// returns `Ok`, Redis acknowledged both; on `Err`, neither happened
    /// (a fenced or refused write runs nothing) or, for a lost connection,
    /// the caller cannot know, and must treat the position as not stored.
    fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// The local checkpoint's side.
pub trait LocalPositions: Sync {
    /// Moves forward to `position` durably (never backwards).
    fn advance(&self, position: &Position) -> Result<(), CheckpointError>;
    /// Sets `position` durably, whatever was stored.
    fn reset(&self, position: &Position) -> Result<(), CheckpointError>;
}

impl RemotePositions for RedisSink {
    fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::apply_ending_at(self, changes, position)
    }
}

impl LocalPositions for CheckpointStore {
    fn advance(&self, position: &Position) -> Result<(), CheckpointError> {
        CheckpointStore::advance(self, position)
    }
    fn reset(&self, position: &Position) -> Result<(), CheckpointError> {
        CheckpointStore::reset(self, position)
    }
}

/// See the module docs. Cheap to build: it borrows both sides.
pub struct Committer<'a, R = RedisSink, L = CheckpointStore> {
    remote: &'a R,
    /// `None` for a reconcile, which never moves a position.
    local: Option<&'a L>,
}

impl<'a, R: RemotePositions, L: LocalPositions> Committer<'a, R, L> {
    /// A committer over Redis and, for a streamer, its checkpoint.
    pub fn new(remote: &'a R, local: Option<&'a L>) -> Self {
        Self { remote, local }
    }

    fn local(&self) -> Result<&'a L, RunError> {
        self.local.ok_or_else(|| RunError::Task("a position write without a checkpoint (a reconcile never moves positions)".into()))
    }

    /// Ends a batch: `changes` (the batch's last write) and `position` in
    /// one atomic Redis write, then, once Redis acknowledged it, the local
    /// checkpoint forward to `position`. When this returns `Ok`, both hold
    /// it; when it fails, the local checkpoint has not moved past Redis's.
    pub async fn commit(&self, changes: &[DocumentChange], position: &Position) -> Result<(), RunError> {
        let local = self.local()?;
        self.remote.apply_ending_at(changes, position).await?;
        local.advance(position)?;
        Ok(())
    }

    /// Moves both positions to `position`, earlier or later than where they
    /// stand (an initial load's snapshot, an operator's replay, the current
    /// end after a reconcile of a lost position): Redis first, then local.
    pub async fn rewind_to(&self, position: &Position) -> Result<(), RunError> {
        let local = self.local()?;
        self.remote.apply_ending_at(&[], position).await?;
        local.reset(position)?;
        Ok(())
    }

    /// The local checkpoint takes `position`, which Redis already holds
    /// (the start decision: no local checkpoint, or Redis behind it).
    pub fn adopt(&self, position: &Position) -> Result<(), RunError> {
        self.local()?.reset(position)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::document::DocumentKey;
    use crate::error::Classify;
    use crate::pipeline::start::{Start, decide};

    /// Where a fake side fails next.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        None,
        /// Redis: another holder has the lease (nothing written).
        Fenced,
        /// Redis: the connection dropped (nothing known to be written).
        Lost,
        /// Local: the disk write failed.
        Disk,
    }

    /// Redis in memory: its position and the changes it acknowledged.
    struct FakeRedis {
        position: Mutex<Option<Position>>,
        applied: Mutex<Vec<DocumentChange>>,
        fault: Mutex<Fault>,
    }

    impl FakeRedis {
        fn new() -> Self {
            Self { position: Mutex::new(None), applied: Mutex::new(Vec::new()), fault: Mutex::new(Fault::None) }
        }
        fn position(&self) -> Option<Position> {
            self.position.lock().unwrap().clone()
        }
    }

    impl RemotePositions for FakeRedis {
        async fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> Result<(), SinkError> {
            match std::mem::replace(&mut *self.fault.lock().unwrap(), Fault::None) {
                Fault::Fenced => return Err(SinkError::Fenced { holder: "me".into() }),
                Fault::Lost => return Err(SinkError::Unavailable("connection lost".into())),
                _ => {}
            }
            self.applied.lock().unwrap().extend_from_slice(changes);
            *self.position.lock().unwrap() = Some(position.clone());
            Ok(())
        }
    }

    /// The checkpoint in memory, refusing to go backwards like the real one.
    struct FakeCheckpoint {
        position: Mutex<Option<Position>>,
        fault: Mutex<Fault>,
    }

    impl FakeCheckpoint {
        fn new() -> Self {
            Self { position: Mutex::new(None), fault: Mutex::new(Fault::None) }
        }
        fn position(&self) -> Option<Position> {
            self.position.lock().unwrap().clone()
        }
        fn fail(&self) -> Result<(), CheckpointError> {
            match std::mem::replace(&mut *self.fault.lock().unwrap(), Fault::None) {
                Fault::Disk => Err(CheckpointError::Store { path: "fake".into(), message: "disk full".into() }),
                _ => Ok(()),
            }
        }
    }

    impl LocalPositions for FakeCheckpoint {
        fn advance(&self, position: &Position) -> Result<(), CheckpointError> {
            self.fail()?;
            let mut current = self.position.lock().unwrap();
            if let Some(c) = current.as_ref()
                && c.try_cmp(position).is_ok_and(|o| o.is_gt())
            {
                return Err(CheckpointError::Backwards { current: c.clone(), requested: position.clone() });
            }
            *current = Some(position.clone());
            Ok(())
        }
        fn reset(&self, position: &Position) -> Result<(), CheckpointError> {
            self.fail()?;
            *self.position.lock().unwrap() = Some(position.clone());
            Ok(())
        }
    }

    fn at(offset: u64) -> Position {
        Position::new("binlog.000001", offset)
    }

    fn delete(key: &str) -> DocumentChange {
        DocumentChange::Delete(DocumentKey(key.into()))
    }

    #[tokio::test]
    async fn a_commit_stores_redis_then_local_and_both_end_equal() {
        let (redis, local) = (FakeRedis::new(), FakeCheckpoint::new());
        let committer = Committer::new(&redis, Some(&local));
        committer.commit(&[delete("a")], &at(100)).await.unwrap();
        assert_eq!((redis.position(), local.position()), (Some(at(100)), Some(at(100))));
        assert_eq!(redis.applied.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_write_redis_did_not_acknowledge_never_moves_the_local_position() {
        for fault in [Fault::Fenced, Fault::Lost] {
            let (redis, local) = (FakeRedis::new(), FakeCheckpoint::new());
            let committer = Committer::new(&redis, Some(&local));
            committer.commit(&[], &at(100)).await.unwrap();
            *redis.fault.lock().unwrap() = fault;
            let err = committer.commit(&[delete("b")], &at(200)).await.unwrap_err();
            assert_eq!(err.is_transient(), fault == Fault::Lost, "a lost lease is definite, a lost connection transient: {err}");
            assert_eq!((redis.position(), local.position()), (Some(at(100)), Some(at(100))), "{fault:?}");
        }
    }

    #[tokio::test]
    async fn a_crash_after_redis_acknowledged_but_before_the_checkpoint_moved_replays_from_the_checkpoint() {
        let (redis, local) = (FakeRedis::new(), FakeCheckpoint::new());
        let committer = Committer::new(&redis, Some(&local));
        committer.commit(&[], &at(100)).await.unwrap();
        *local.fault.lock().unwrap() = Fault::Disk;
        assert!(committer.commit(&[delete("c")], &at(200)).await.is_err());
        assert_eq!((redis.position(), local.position()), (Some(at(200)), Some(at(100))), "Redis ahead, never behind");
        // The restart: Redis ahead of the checkpoint resumes from the checkpoint (a harmless replay).
        assert_eq!(decide(local.position(), redis.position()), Start::Resume(at(100)));
    }

    #[tokio::test]
    async fn a_rewound_redis_is_replayed_from_and_rewind_moves_both_back() {
        let (redis, local) = (FakeRedis::new(), FakeCheckpoint::new());
        let committer = Committer::new(&redis, Some(&local));
        committer.commit(&[], &at(300)).await.unwrap();
        // Redis restored from an older copy.
        *redis.position.lock().unwrap() = Some(at(150));
        assert_eq!(decide(local.position(), redis.position()), Start::AdoptRedis(at(150)));
        committer.adopt(&at(150)).unwrap();
        assert_eq!(local.position(), Some(at(150)));
        committer.rewind_to(&at(50)).await.unwrap();
        assert_eq!((redis.position(), local.position()), (Some(at(50)), Some(at(50))));
    }

    #[tokio::test]
    async fn a_reconcile_has_no_checkpoint_and_cannot_move_a_position() {
        let redis = FakeRedis::new();
        let committer: Committer<'_, FakeRedis, FakeCheckpoint> = Committer::new(&redis, None);
        assert!(committer.commit(&[], &at(1)).await.is_err());
        assert_eq!(redis.position(), None, "not even Redis's");
    }
}

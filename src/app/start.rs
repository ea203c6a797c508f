//! Where to start: the local checkpoint, cross-checked with the position
//! Redis stored in its last applied batch.
//!
//! | local | Redis | decision |
//! |---|---|---|
//! | none | none | initial load |
//! | none | R | resume from R: a new task or host (the checkpoint is per task), or a standby taking over. R was written atomically with the batch it ends, so nothing before it is missing |
//! | some | none | Redis lost everything (flushed, new instance): initial load |
//! | L | R >= L | resume from L (Redis is ahead only after a crash between EXEC and checkpoint; replay is idempotent) |
//! | L | R < L | Redis lost recent writes (restored from an older snapshot): replay from R |
//! | L | other lineage | the source was replaced: initial load |

use std::cmp::Ordering;

use crate::apply::RunError;
use crate::apply::committer::Committer;
use crate::position::Position;
use crate::sink::RemotePositions;

/// Where to start, decided from the two positions by the table above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Stream from the local checkpoint.
    Resume(Position),
    /// Stream from Redis's position, which the checkpoint takes first.
    AdoptRedis(Position),
    /// Load every document again; the reason is for the log.
    InitialLoad(&'static str),
}

/// The table above, as a function of the two positions.
pub fn decide(local: Option<Position>, remote: Option<Position>) -> Start {
    match (local, remote) {
        (None, None) => Start::InitialLoad("no checkpoint"),
        (None, Some(remote)) => Start::AdoptRedis(remote),
        (Some(_), None) => Start::InitialLoad("Redis holds no applied position (flushed or replaced)"),
        (Some(local), Some(remote)) => match local.try_cmp(&remote) {
            Ok(Ordering::Greater) => Start::AdoptRedis(remote),
            Ok(_) => Start::Resume(local),
            Err(_) => Start::InitialLoad("checkpoint and Redis disagree on the binlog lineage (the source was replaced)"),
        },
    }
}

/// The position to stream from, or `None` when an initial load is needed,
/// decided by [`decide`] from the committer's two positions; Redis's
/// position, when adopted, becomes the local checkpoint first.
pub async fn resume_position<R: RemotePositions>(committer: &Committer<R>) -> Result<Option<Position>, RunError> {
    let (local, remote) = committer.positions().await?;
    match decide(local.clone(), remote.clone()) {
        Start::Resume(position) => {
            // Resuming needs both: Redis's is at or past the checkpoint.
            let redis = remote.as_ref().map(Position::to_string).unwrap_or_default();
            tracing::info!(checkpoint = %position, %redis, "resuming from checkpoint");
            Ok(Some(position))
        }
        Start::AdoptRedis(position) => {
            match &local {
                None => {
                    tracing::info!(redis = %position, "no local checkpoint (a new task or host, or a standby taking over): resuming from the position Redis stored with the last applied batch")
                }
                Some(local) => {
                    tracing::warn!(checkpoint = %local, redis = %position, "Redis is behind the checkpoint (restored from an older copy?): replaying from Redis's position")
                }
            }
            committer.adopt(&position)?;
            Ok(Some(position))
        }
        Start::InitialLoad(reason) if local.is_none() => {
            tracing::info!(reason, "starting with an initial load");
            Ok(None)
        }
        Start::InitialLoad(reason) => {
            tracing::warn!(reason, checkpoint = ?local.map(|p| p.to_string()), "running the initial load again");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::LocalPositions;
    use crate::testing::fakes::{MemoryCheckpoint, MemorySink};
    use std::sync::Arc;

    /// Both sides set as given, then the decision and where the checkpoint ends.
    async fn start_with(local: Option<Position>, remote: Option<Position>) -> (Option<Position>, Option<Position>) {
        let (sink, checkpoint) = (Arc::new(MemorySink::new(4)), Arc::new(MemoryCheckpoint::default()));
        if let Some(local) = &local {
            checkpoint.reset(local).unwrap();
        }
        if let Some(remote) = &remote {
            sink.apply_ending_at(&[], remote).await.unwrap();
        }
        let start = resume_position(&Committer::new(sink.clone(), checkpoint.clone())).await.unwrap();
        (start, checkpoint.position())
    }

    #[tokio::test]
    async fn the_start_reads_both_sides_and_an_adopted_position_becomes_the_checkpoint() {
        let (p, q) = (Position::new("binlog.000002", 100), Position::new("binlog.000003", 4));
        assert_eq!(start_with(None, None).await, (None, None), "initial load");
        assert_eq!(start_with(None, Some(q.clone())).await, (Some(q.clone()), Some(q.clone())), "a new task adopts Redis's");
        assert_eq!(start_with(Some(p.clone()), Some(q.clone())).await, (Some(p.clone()), Some(p.clone())), "Redis ahead: the checkpoint");
        assert_eq!(start_with(Some(q.clone()), Some(p.clone())).await, (Some(p.clone()), Some(p.clone())), "Redis behind: replay from it");
        assert_eq!(start_with(Some(p.clone()), None).await, (None, Some(p)), "Redis emptied: load, the checkpoint untouched until then");
    }

    fn at(file: &str, offset: u64) -> Option<Position> {
        Some(Position::new(file, offset))
    }

    #[test]
    fn every_row_of_the_table() {
        assert!(matches!(decide(None, None), Start::InitialLoad(_)));
        assert_eq!(decide(None, at("binlog.000002", 4)), Start::AdoptRedis(Position::new("binlog.000002", 4)));
        assert!(matches!(decide(at("binlog.000002", 4), None), Start::InitialLoad(_)));
        assert_eq!(
            decide(at("binlog.000002", 100), at("binlog.000003", 4)),
            Start::Resume(Position::new("binlog.000002", 100)),
            "Redis ahead"
        );
        assert_eq!(decide(at("binlog.000002", 100), at("binlog.000002", 100)), Start::Resume(Position::new("binlog.000002", 100)));
        assert_eq!(
            decide(at("binlog.000003", 100), at("binlog.000002", 7)),
            Start::AdoptRedis(Position::new("binlog.000002", 7)),
            "Redis behind"
        );
        assert!(matches!(decide(at("binlog.000003", 100), at("mysql-bin.000001", 4)), Start::InitialLoad(_)), "another lineage");
    }
}

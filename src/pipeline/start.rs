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

use super::{Replicator, RunError};
use crate::embed::Embedder;
use crate::position::Position;

/// The position to stream from, or `None` when an initial load is needed.
pub async fn resume_position<E: Embedder>(r: &Replicator<E>) -> Result<Option<Position>, RunError> {
    let Some(local) = r.checkpoint()?.load()? else {
        return match r.sink.position().await? {
            Some(remote) => {
                tracing::info!(redis = %remote, "no local checkpoint (a new task or host, or a standby taking over): resuming from the position Redis stored with the last applied batch");
                r.checkpoint()?.reset(&remote)?;
                Ok(Some(remote))
            }
            None => {
                tracing::info!("no checkpoint: starting with an initial load");
                Ok(None)
            }
        };
    };
    let Some(remote) = r.sink.position().await? else {
        tracing::warn!(checkpoint = %local, "Redis holds no applied position (flushed or replaced): running the initial load again");
        return Ok(None);
    };
    match local.try_cmp(&remote) {
        Ok(Ordering::Greater) => {
            tracing::warn!(checkpoint = %local, redis = %remote, "Redis is behind the checkpoint (restored from an older copy?): replaying from Redis's position");
            r.checkpoint()?.reset(&remote)?;
            Ok(Some(remote))
        }
        Ok(_) => {
            tracing::info!(checkpoint = %local, redis = %remote, "resuming from checkpoint");
            Ok(Some(local))
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint and Redis disagree on the binlog lineage: running the initial load again");
            Ok(None)
        }
    }
}

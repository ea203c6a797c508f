//! The replicator's error: one of the module errors, keeping its class.

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::embed::EmbedError;
use crate::error::{Classify, ErrorClass};
use crate::mysql::SourceError;
use crate::sink::SinkError;

/// Any error of a running replicator. Each variant's message carries the operator hint.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// MySQL / binlog.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Redis.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Embedding provider.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Local checkpoint store.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Another instance took the writer lease (this one stalled past the TTL).
    #[error(
        "lost the writer lease to {holder:?}: another drugsync now writes this index, so this one stopped. If that is unexpected, check for a second instance with the same index, or raise redis.lease_ttl_secs if this one stalls"
    )]
    LeaseLost {
        /// Current holder.
        holder: String,
    },
    /// The writer sat in one wait past `pipeline.stall_timeout_secs`.
    #[error(
        "the writer made no progress for {secs}s (one wait never ended: a half-open connection or a hung server), so it gave up its lease for a standby to take over and stopped. Check the network paths to MySQL, Redis and the embedding endpoint; raise pipeline.stall_timeout_secs only if one step legitimately takes longer"
    )]
    Stalled {
        /// How long the writer had been silent.
        secs: u64,
    },
    /// The operation was cancelled (shutdown requested) before it finished.
    #[error("cancelled before completion; nothing was left half-applied")]
    Cancelled,
    /// A background task died unexpectedly (a bug).
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Classify for RunError {
    fn class(&self) -> ErrorClass {
        match self {
            RunError::Config(e) => e.class(),
            RunError::Source(e) => e.class(),
            RunError::Sink(e) => e.class(),
            RunError::Embed(e) => e.class(),
            RunError::Checkpoint(e) => e.class(),
            RunError::Task(_) | RunError::LeaseLost { .. } | RunError::Stalled { .. } | RunError::Cancelled => ErrorClass::Definite,
        }
    }
}

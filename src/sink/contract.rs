//! What the pipeline needs from the Redis side, split by role. Each role is
//! a trait declared beside its one Redis implementation (on
//! [`RedisSink`](super::RedisSink)); the in-memory sink of
//! `testing::fakes` implements the same traits with fault points, and
//! `sink::conformance` holds both to the same behaviour, role by role. A
//! Redis feature therefore touches its role's file, the fake and the check.
//!
//! - [`RemotePositions`] and [`Documents`] (`documents.rs`): the documents,
//!   and a batch's last write with its position, together.
//! - [`VectorCache`] (`vector_cache.rs`): vectors by text hash.
//! - [`WorkQueues`] (`queues.rs`): owed vectors, the quarantine, repairs.
//! - [`IndexAdmin`] (`admin.rs`): the index version, the alias, what
//!   RediSearch says of them, the records writers agree on, memory.
//! - [`Fencing`] (`fence.rs`) and [`Lease`] (`lease.rs`): who writes.
//!
//! Stages are generic over the roles they use; two names bundle the usual
//! sets: [`DocumentSink`] (what syncing documents reads and writes) and
//! [`Sink`] (every role: what the writer as a whole is generic over).
//!
//! Durability, for every write of every role: when a call returns `Ok`, the
//! sink has acknowledged all of it (Redis: the MULTI/EXEC ran; with AOF
//! `appendfsync everysec`, a Redis crash may still lose the last second,
//! which the start-up cross-check of positions detects). When it returns
//! `Err`, nothing of it was applied, except after a lost connection, where
//! the caller cannot know and must treat it as not applied: every write is
//! idempotent, so applying it again is always safe.

pub use super::admin::IndexAdmin;
pub use super::documents::{Documents, RemotePositions};
pub use super::fence::Fencing;
pub use super::lease::Lease;
pub use super::queues::WorkQueues;
pub use super::vector_cache::VectorCache;

/// What syncing a set of documents reads and writes: the documents, their
/// cached vectors, the owed and quarantined ones.
pub trait DocumentSink: Documents + VectorCache + WorkQueues + Send + Sync + 'static {}

impl<T: Documents + VectorCache + WorkQueues + Send + Sync + 'static> DocumentSink for T {}

/// Every role: what the writer's stages are generic over.
pub trait Sink: DocumentSink + IndexAdmin + Fencing {}

impl<T: DocumentSink + IndexAdmin + Fencing> Sink for T {}

//! What the pipeline needs from the Redis side, split by role: the
//! contract [`RedisSink`](super::RedisSink) fulfils (`redis_roles.rs`) and
//! the seam that lets every stage be unit-tested against the in-memory
//! sink of `pipeline::fakes` with fault points instead of a Redis server.
//! `sink::conformance` holds both to the same behaviour.
//!
//! - [`RemotePositions`]: a batch's last write and its position, together.
//! - [`DocumentSink`]: the documents: their state, writes, the vector cache,
//!   the quarantine, owed vectors and what the search index made of them.
//! - [`Coordination`]: who writes and what the writers agreed on: the
//!   lease and its fence, the load epoch, the alias, status, repairs, the
//!   mapping fingerprint, the server's memory.
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
use std::time::Duration;

use super::memory::MemoryInfo;
use super::pending::Owed;
use super::{AliasState, IndexVerdict, IndexVersion, SinkError, StoredState};
use crate::config::Config;
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

/// The documents side: what syncing a set of documents reads and writes,
/// and what the search index made of them.
pub trait DocumentSink: RemotePositions {
    /// What the sink holds for each key, in input order (`None`: nothing).
    fn read_state(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<Option<StoredState>>, SinkError>> + Send;

    /// For each key, in input order, whether it is in the quarantine now.
    fn quarantined(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<bool>, SinkError>> + Send;

    /// How many keys are in the quarantine.
    fn quarantine_len(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

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

    /// How many vectors the cache of this embedding space holds.
    fn vector_cache_len(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// How many documents are owed their vector, and since when the oldest.
    fn owed(&self) -> impl Future<Output = Result<Owed, SinkError>> + Send;

    /// Up to `max` owed documents, oldest first, after the `skip` owed longest.
    fn owed_oldest(&self, skip: usize, max: usize) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send;

    /// One page of the document keys this version holds, and the cursor to
    /// pass next (0: done; start at 0). A key present for the whole scan is
    /// returned at least once; the memory held is one page.
    fn document_keys_page(&self, cursor: u64) -> impl Future<Output = Result<(u64, Vec<DocumentKey>), SinkError>> + Send;

    /// Documents the index of this version holds.
    fn document_count(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// What the search index of this version says of itself (`None`: no such index).
    fn verdict(&self) -> impl Future<Output = Result<Option<IndexVerdict>, SinkError>> + Send;

    /// The same, of the index the alias names (`None`: the alias answers nothing).
    fn alias_verdict(&self) -> impl Future<Output = Result<Option<IndexVerdict>, SinkError>> + Send;

    /// Of `keys` (documents the sink holds), those the search index has not indexed.
    fn unindexed(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send;

    /// Marks the documents of `keys` as out of date, so the next sync of
    /// each rewrites it whatever its hashes say.
    fn mark_out_of_date(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The key as the operator sees it in the sink (for logs).
    fn key_of(&self, key: &DocumentKey) -> String;
}

/// The writer lease of one index: at most one holder at a time (see `sink::lease`).
pub trait Lease: Clone + Send + Sync + 'static {
    /// The id this handle holds the lease under.
    fn holder(&self) -> &str;

    /// Takes the lease if it is free or already this holder's; `Ok(true)` when held afterwards.
    fn try_acquire(&self) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Extends the lease if this holder has it, or takes it back if nobody
    /// does; `Ok(false)` when another holder has it.
    fn renew(&self) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Gives the lease up if this holder has it (nothing otherwise).
    fn release(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Who holds the lease now, if anyone.
    fn current_holder(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// Milliseconds until the lease expires unless renewed; `None` when nobody holds it.
    fn ttl_left_ms(&self) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send;

    /// How long the lease lasts unless renewed.
    fn ttl(&self) -> Duration;

    /// How often to renew: a third of the TTL leaves two chances before expiry.
    fn renew_every(&self) -> Duration {
        self.ttl() / 3
    }

    /// How often a standby tries to take the lease: at most a second, so it
    /// takes over within the TTL plus one second of the writer's death.
    fn poll_every(&self) -> Duration {
        self.renew_every().min(Duration::from_secs(1))
    }
}

/// Who writes, and what the writers of one index agreed on.
pub trait Coordination: Sync {
    /// The lease handle this sink hands out.
    type Lease: Lease;

    /// The writer lease of this index, held (or wanted) under `holder`.
    fn lease(&self, holder: String, ttl: Duration) -> Self::Lease;

    /// Writes from now on are fenced by the lease held under `holder`: each
    /// write checks, atomically with itself, that the lease still names it
    /// (a lease nobody holds is taken back). `None` turns fencing off.
    fn fence_with(&self, holder: Option<String>);

    /// Starts an initial load under `epoch`: stores it, and every fenced
    /// write until [`Self::end_load`] fails with `LoadLost` (writing
    /// nothing) unless the sink still holds that epoch.
    fn begin_load(&self, epoch: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Continues a load stored earlier under `epoch` (after a restart): as
    /// [`Self::begin_load`] without storing it.
    fn resume_load(&self, epoch: &str);

    /// The load is over: writes no longer check an epoch.
    fn end_load(&self);

    /// The epoch of the load the sink holds, if any.
    fn stored_load_epoch(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// The index version this sink writes.
    fn version(&self) -> &IndexVersion;

    /// Creates this version's index if needed and says where the alias stands.
    fn prepare_index(&self, config: &Config) -> impl Future<Output = Result<AliasState, SinkError>> + Send;

    /// Points the alias at this version (under the lease's fence); `old` is what it named.
    fn switch_alias(&self, old: Option<&str>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Records this version's embedding space, so its cache can be found later.
    fn record_space(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Takes over the vector cache of an earlier version of the same space; how many entries.
    fn adopt_vector_cache(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Drops the cached vectors only the version `old` used; how many.
    fn drop_vector_cache_of(&self, old: &str) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// The mapping fingerprint (fields part) this version's documents were built with.
    fn mapping_fingerprint(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// Records the mapping fingerprint (fields part).
    fn store_mapping_fingerprint(&self, fields: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Publishes the writer's status record (JSON) for `drugsync status`.
    fn store_status(&self, json: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The last status record, if any.
    fn status_record(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// Queues document keys for the lease holder to rebuild (a reconcile's handoff).
    fn push_repairs(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Up to `max` queued repairs, oldest first, left queued until [`Self::ack_repairs`].
    fn peek_repairs(&self, max: usize) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send;

    /// Removes the `n` oldest queued repairs (those a writer rebuilt).
    fn ack_repairs(&self, n: usize) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// How many repairs are queued.
    fn pending_repairs(&self) -> impl Future<Output = Result<usize, SinkError>> + Send;

    /// The server's memory limit, policy, use and evictions now.
    fn memory_info(&self) -> impl Future<Output = Result<MemoryInfo, SinkError>> + Send;
}

/// Every role: what the writer's stages are generic over.
pub trait Sink: DocumentSink + Coordination + Send + Sync + 'static {}

impl<T: DocumentSink + Coordination + Send + Sync + 'static> Sink for T {}

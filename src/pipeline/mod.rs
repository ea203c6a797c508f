//! The replicator: wiring of source, mapping, embedder, sink and checkpoint.
//!
//! `Replicator::run` decides where to start ([`start`]), performs the initial
//! load when there is no usable checkpoint ([`load`]), then tails the
//! binlog ([`stream`]). Documents flow through [`sync`], the one place that
//! diffs against Redis, embeds what is new and writes.
//!
//! Grouped by stage, each with its own context holding only what it uses,
//! as owned handles (clones of shared `Arc`s, no lifetimes), built in one
//! place from the replicator's parts (a stage is a method of its context):
//! - [`load`] (`Loader::initial_load`);
//! - [`stream`] (`Streamer::run`), with the binlog reader (`stream::tail`),
//!   batches, the activity log, the Redis memory watch and the canary;
//! - [`reconcile`] (`Reconciler::reconcile`) and its report;
//! - [`fill`]: owed vectors, paid on the stream's idle tick;
//! - [`replay`]: an operator's replay, priced or watched.
//!
//! Beside them, what they share: [`sync`] (decide, embed, write: each
//! stage holds a `Syncer`, which moves no position: a batch that ends at
//! one gets the sync's last write back and commits it), [`committer`] (the
//! one writer of positions: only the streamer's contexts hold one), [`start`],
//! [`writer`] (the lease), [`retry`], [`progress`], [`stats`], [`error`].
//! [`replicator`] is the composition root: it holds the parts
//! ([`Connected`] for every mode, [`Replicator`] for the streamer, which
//! adds the checkpoint) and is the one place that names the Redis sink;
//! every stage is generic over the sink's roles (`sink::contract`), so
//! each is unit-tested over the in-memory fakes of `fakes`. The embedder
//! is one `embed::SharedEmbedder` handle, so no stage is generic over it.
//! [`run`] drives them.

pub mod committer;
pub mod error;
#[cfg(test)]
pub mod fakes;
pub mod fill;
pub mod load;
pub mod lost_writes;
pub mod progress;
pub mod reconcile;
pub mod replay;
pub mod replicator;
pub mod retry;
pub mod run;
pub mod start;
pub mod stats;
pub mod stream;
pub mod sync;
pub mod writer;

pub use error::RunError;
pub use replicator::{Connected, Replicator};
pub use stats::Stats;

//! Applying changes: the stages and what they share.
//!
//! Each stage has its own context holding only what it uses, as owned
//! handles (clones of shared `Arc`s, no lifetimes), built in one place from
//! the replicator's parts (`app::replicator`); a stage is a method of its
//! context, generic over the sink's roles only (`sink::contract`), so each
//! is unit-tested over the in-memory fakes of `testing::fakes`:
//! - [`load`] (`Loader::initial_load`): every document from one snapshot;
//! - [`stream`] (`Streamer::run`): the apply loop, its batches and the
//!   binlog reader it and the replay pricing use (`stream::tail`);
//! - [`reconcile`] (`Reconciler::reconcile`) and its report;
//! - [`fill`]: owed vectors, paid on the stream's idle tick.
//!
//! What they share: [`sync`] (decide, embed, write: the engine; it moves no
//! position, a batch that ends at one gets the sync's last write back and
//! commits it), [`committer`] (the one writer of positions: only the
//! streamer's contexts hold one), [`retry`] and [`error`].

pub mod committer;
pub mod error;
pub mod fill;
pub mod load;
pub mod reconcile;
pub mod retry;
pub mod stream;
pub mod sync;

pub use error::RunError;

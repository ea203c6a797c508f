//! The replicator: wiring of source, mapping, embedder, sink and checkpoint.
//!
//! `Replicator::run` decides where to start ([`start`]), performs the initial
//! load when there is no usable checkpoint ([`bootstrap`]), then tails the
//! binlog ([`stream`]). Documents flow through [`sync`], the one place that
//! diffs against Redis, embeds what is new and writes.
//!
//! This file only wires: [`replicator`] holds the parts ([`Connected`] for
//! every mode, [`Replicator`] for the streamer, which adds the checkpoint),
//! [`run`] drives them, and each stage has its own file and its own
//! context holding only what it uses, built from the parts in one place:
//! `Syncer` (decide, embed, write), `Reconciler`, `Loader` (initial load),
//! `Streamer`, `Filler` (owed vectors), `Tail` (the binlog reader). A
//! stage is a method of its context (`Loader::initial_load`,
//! `Streamer::run`, `Reconciler::reconcile`). Only the streamer's contexts
//! hold a `Committer`: nothing else can move a position.

pub mod activity;
pub mod batch;
pub mod bootstrap;
pub mod canary;
pub mod committer;
pub mod error;
#[cfg(test)]
pub mod fakes;
pub mod fill;
pub mod memory_watch;
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
pub mod tail;
pub mod writer;

pub use error::RunError;
pub use replicator::{Connected, Replicator};
pub use stats::Stats;

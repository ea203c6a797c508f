//! The application around the stages: the composition root, supervision,
//! the command-line modes and the metrics endpoint.
//!
//! - [`compose`] and [`replicator`]: components built from their own
//!   sections of the configuration, and the parts every mode holds
//!   ([`Connected`]) or the streamer holds ([`Replicator`], which adds the
//!   checkpoint); the one place that names the Redis sink.
//! - [`run`]: what drives the writer (the lease, the start, the load, the
//!   stream, resyncs), with [`start`] (the start decision, a pure table)
//!   and [`writer`] (taking and keeping the lease).
//! - The modes: [`cli`] (commands and options), [`replay`] (an operator's
//!   replay, priced or watched), [`status`], [`search`]; `--reconcile` is
//!   the reconcile stage run by `main`.
//! - [`metrics`]: the Prometheus endpoint with the liveness and readiness
//!   verdicts of `observe::health`.

pub mod cli;
pub mod compose;
pub mod metrics;
pub mod replay;
pub mod replicator;
pub mod run;
pub mod search;
pub mod start;
pub mod status;
pub mod writer;

pub use replicator::{Connected, Replicator};

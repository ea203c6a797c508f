//! What a running writer knows about itself, and the watchers that keep it
//! true: counters ([`stats`], the one `Stats` every stage and the metrics
//! endpoint share), progress and the stall watchdog ([`progress`]),
//! heartbeats, the clock and the liveness and readiness verdicts
//! ([`health`]), writes Redis lost after acknowledging them
//! ([`lost_writes`]), the activity log ([`activity`]), Redis's memory
//! watched on the idle tick ([`memory_watch`]) and the freshness canary
//! ([`canary`]).

pub mod activity;
pub mod canary;
pub mod health;
pub mod lost_writes;
pub mod memory_watch;
pub mod progress;
pub mod stats;

pub use stats::Stats;

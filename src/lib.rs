//! drugsync: change-data-capture from the FDB drug tables in MySQL to a
//! Redis Stack vector index, embedding only texts that changed.
//!
//! The flow: [`source`] tails the binlog into whole transactions; [`mapping`]
//! routes row changes to document keys and loads documents; [`pipeline`]
//! diffs them against Redis, embeds new texts through [`embed`] and writes
//! through [`sink`]; [`checkpoint`] records progress only after Redis
//! acknowledged it.

pub mod backoff;
pub mod checkpoint;
pub mod cli;
pub mod compose;
pub mod config;
pub mod document;
pub mod embed;
pub mod error;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod health;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod position;
pub mod search;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod sql_text;
pub mod status;

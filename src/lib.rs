//! drugsync: change-data-capture from the FDB drug tables in MySQL to a
//! Redis Stack vector index, embedding only texts that changed.
//!
//! The flow: [`cdc`] tails the binlog into whole transactions (over the
//! MySQL toolkit, [`mysql`]); [`mapping`] routes row changes to document
//! keys and loads documents; [`apply`]'s stages diff them against Redis,
//! embed new texts through [`embed`] and write through [`sink`];
//! [`checkpoint`] records progress only after Redis acknowledged it.
//! [`app`] composes and supervises them and serves the command-line modes;
//! [`observe`] holds the counters and watchers; [`testing`] the test support.

pub mod app;
pub mod apply;
pub mod backoff;
pub mod cdc;
pub mod checkpoint;
pub mod config;
pub mod document;
pub mod embed;
pub mod error;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod mapping;
pub mod mysql;
pub mod observe;
pub mod position;
pub mod sink;
pub mod sql_text;
#[cfg(any(test, feature = "fixture"))]
pub mod testing;

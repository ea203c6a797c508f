//! Integration tests against the real MariaDB and Redis Stack that
//! `tests/env/testenv.sh up` starts (and the fake Bedrock in `bedrock`).
//!
//! One test binary with a module per area, not one binary per file: every
//! binary links the whole dependency tree (AWS SDK, rustls, mysql_async), and
//! thirteen copies of it cost minutes of linking and gigabytes of disk, which
//! once ran CI out of space. nextest still runs each test in its own process.
//! Select an area with a filter, e.g. `cargo nextest run -E 'test(/^kill::/)'`.

mod common;

mod alerts;
mod bad_input;
mod bedrock;
mod bedrock_pipeline;
mod big_transaction;
mod canary;
mod ddl;
mod divergence;
mod edges;
mod gtid;
mod indexing;
mod kill;
mod model;
mod mysql_source;
mod operations;
mod oracle;
mod outage;
mod pins;
mod preflight;
mod providers;
mod purge;
mod quarantine;
mod reconcile;
mod redis_errors;
mod redis_state;
mod replay;
mod restart;
mod search;
mod search_quality;
mod security;
mod sink_contract;
mod stall;
mod streaming;
mod vector_cache;
mod visibility;

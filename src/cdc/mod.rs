//! Change data capture: the replication connection (`dump`: login, TLS,
//! packets, transaction payloads expanded as a stream), the decoder
//! (`decode`: events to transactions with their positions and routing
//! values), event helpers (`events`) and the binlog tailer that runs them
//! and hands transactions to the apply loop (`binlog`). Built on the MySQL
//! toolkit (`mysql`).

pub mod binlog;
pub mod decode;
pub mod dump;
pub mod events;

pub use binlog::{BinlogTailer, InFlight};
pub use decode::{DecodeSpec, RoutingValues, Transaction};

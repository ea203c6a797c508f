//! Reading the source database: the binlog tail, consistent snapshots, value conversion.

pub mod binlog;
pub mod connect;
pub mod error;
pub mod events;
pub mod gtid;
pub mod preflight;
pub mod server;
pub mod value;

pub use binlog::{BinlogTailer, RowChange, RowImage, TrackedDdl, Transaction};
pub use error::SourceError;

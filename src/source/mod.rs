//! Reading the source database: the binlog tail, consistent snapshots, value conversion.

pub mod aurora;
pub mod binlog;
pub mod connect;
pub mod deadline;
pub mod decode;
pub mod dialect;
pub mod dump;
pub mod error;
pub mod events;
pub mod gtid;
pub mod preflight;
pub mod query;
pub mod refusal;
pub mod server;
#[cfg(test)]
mod test_pki;
pub mod value;
pub mod visibility;

pub use binlog::{BinlogTailer, InFlight};
pub use decode::{DecodeSpec, RoutingValues, Transaction};
pub use error::SourceError;
pub use refusal::Refusal;

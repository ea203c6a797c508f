//! The MySQL toolkit every part that talks to the source uses: connections
//! (TLS, credentials from Secrets Manager, ping on checkout), query
//! deadlines, server facts and dialects (MySQL, MariaDB, Aurora), GTID sets,
//! positions and snapshots, start-up checks (preflight), the visibility gate,
//! value conversion, and the source's typed errors and refusals. The change
//! data capture reader (`cdc`) is built on it; so are the mapping's queries,
//! `drugsync status` and the stages.

pub mod aurora;
pub mod connect;
pub mod deadline;
pub mod dialect;
pub mod error;
pub mod gtid;
pub mod preflight;
pub mod query;
pub mod refusal;
pub mod secrets;
pub mod server;
pub mod value;
pub mod visibility;

pub use error::SourceError;
pub use refusal::Refusal;

//! The Redis side: the vector index definition and the document writer.

pub mod alias;
#[cfg(any(test, feature = "fixture"))]
pub mod conformance;
pub mod connection;
pub mod contract;
pub mod error;
pub mod fence;
pub mod index;
pub mod inspect;
pub mod keys;
pub mod knn;
pub mod lease;
pub mod memory;
pub mod ops;
pub mod pending;
pub mod persistence;
pub mod quarantine;
pub mod redis;
mod redis_roles;
pub mod vector_cache;
pub mod verdict;
pub mod version;

pub use self::contract::{Coordination, DocumentSink, Lease, RemotePositions, Sink};
pub use self::index::IndexSpec;
pub use self::lease::WriterLease;
pub use self::redis::{RedisSink, SinkError, StoredState};
pub use self::verdict::IndexVerdict;
pub use self::version::{AliasState, IndexVersion};

//! The Redis side: the vector index definition and the document writer.

pub mod admin;
pub mod connection;
pub mod contract;
pub mod definition;
pub mod documents;
pub mod error;
pub mod fence;
pub mod index;
pub mod inspect;
pub mod keys;
pub mod knn;
pub mod lease;
pub mod memory;
pub mod ops;
pub mod persistence;
pub mod queues;
pub mod redis;
pub mod vector_cache;
pub mod verdict;
pub mod version;

pub use self::contract::{DocumentSink, Documents, Fencing, IndexAdmin, Lease, RemotePositions, Sink, VectorCache, WorkQueues};
pub use self::definition::IndexDefinition;
pub use self::documents::StoredState;
pub use self::index::IndexSpec;
pub use self::lease::WriterLease;
pub use self::queues::Owed;
pub use self::redis::{RedisSink, SinkError};
pub use self::verdict::IndexVerdict;
pub use self::version::{AliasState, IndexVersion};

//! In-memory fakes of the sink, the checkpoint and the embedder, with
//! named fault points, for unit tests of the pipeline's logic without
//! servers. Each mirrors the contract of the real one it stands for
//! (`sink::contract`, `checkpoint::LocalPositions`, `embed::Embedder`).
//! The sink fake and `RedisSink` both pass `sink::conformance` (here, and
//! in the integration tests against a real Redis).

pub mod checkpoint;
pub mod embedder;
pub mod rig;
pub mod sink;

pub use self::checkpoint::{DiskFault, MemoryCheckpoint};
pub use self::embedder::ScriptedEmbedder;
pub use self::sink::{Contents, MemoryLease, MemorySink, SinkFault, Stored};
pub use crate::sink::conformance::document;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Embedder;

    /// The fake the pipeline's unit tests trust keeps the contract the
    /// integration tests hold `RedisSink` to (`sink_contract.rs`).
    #[tokio::test]
    async fn the_memory_sink_keeps_the_sink_contract() {
        let space = ScriptedEmbedder::new(4, 1).space().clone();
        crate::sink::conformance::check_document_sink(&MemorySink::new(4), &space, "conformance-", crate::sink::conformance::Caching::On)
            .await;
    }

    #[tokio::test]
    async fn the_memory_sink_keeps_the_coordination_contract() {
        let space = ScriptedEmbedder::new(4, 1).space().clone();
        crate::sink::conformance::check_coordination(&MemorySink::new(4), &space, "conformance-coordination").await;
    }
}

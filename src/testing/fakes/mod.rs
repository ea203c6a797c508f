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
pub mod sink_roles;

pub use self::checkpoint::{DiskFault, MemoryCheckpoint};
pub use self::embedder::ScriptedEmbedder;
pub use self::sink::{Contents, MemorySink, SinkFault, Stored};
pub use self::sink_roles::MemoryLease;
pub use crate::testing::conformance::document;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Embedder;

    /// The fake the pipeline's unit tests trust keeps the contract the
    /// integration tests hold `RedisSink` to (`sink_contract.rs`).
    #[tokio::test]
    async fn the_memory_sink_keeps_the_contract_of_each_role() {
        use crate::testing::conformance::{
            Caching, check_documents, check_fencing, check_index_admin, check_vector_cache, check_work_queues,
        };
        let space = ScriptedEmbedder::new(4, 1).space().clone();
        check_documents(&MemorySink::new(4), &space, "conformance-").await;
        check_vector_cache(&MemorySink::new(4), &space, "conformance-", Caching::On).await;
        check_work_queues(&MemorySink::new(4), &space, "conformance-").await;
        let unswitched = MemorySink::new(4);
        unswitched.tamper(|held| held.index_exists = false);
        check_index_admin(&unswitched, &space, "conformance-admin").await;
        check_fencing(&MemorySink::new(4), &space, "conformance-fencing").await;
    }

    /// The fake rewound as Redis restored from a snapshot: everything it held then.
    struct Snapshots<'a>(&'a MemorySink, std::sync::Mutex<Option<Contents>>);

    impl crate::testing::conformance::Rewind for Snapshots<'_> {
        async fn save(&self) {
            *self.1.lock().unwrap() = Some(self.0.contents(Contents::clone));
        }

        async fn restore(&self) {
            let saved = self.1.lock().unwrap().clone().expect("saved first");
            self.0.tamper(|contents| *contents = saved);
        }
    }

    #[tokio::test]
    async fn the_memory_sink_reads_as_the_older_state_it_was_rewound_to() {
        let space = ScriptedEmbedder::new(4, 1).space().clone();
        let sink = MemorySink::new(4);
        crate::testing::conformance::check_rewind(&sink, &Snapshots(&sink, Default::default()), &space, "conformance-").await;
    }

    /// The fake losing a reply by its own fault hook.
    struct LosesReplies<'a>(&'a MemorySink);

    impl crate::testing::conformance::LoseReply for LosesReplies<'_> {
        async fn lose_next_reply(&self) {
            self.0.fail_write(1, SinkFault::LostAfterApplying);
        }
    }

    #[tokio::test]
    async fn the_memory_sink_reads_a_write_whose_reply_was_lost_as_applied() {
        let space = ScriptedEmbedder::new(4, 1).space().clone();
        let sink = MemorySink::new(4);
        crate::testing::conformance::check_lost_reply(&sink, &LosesReplies(&sink), &space, "conformance-").await;
    }
}

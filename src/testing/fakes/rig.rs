//! A streamer's parts over the fakes (sink, embedder) and a real
//! checkpoint store in a temporary directory, for unit tests of the stages
//! on paths that read no MySQL (see `Replicator::in_memory`).

use std::path::Path;

use crate::app::replicator::Replicator;
use crate::checkpoint::{CheckpointStore, LocalPositions};
use crate::config::Config;
use crate::embed::SharedEmbedder;
use crate::position::Position;
use crate::sink::contract::*;
use crate::testing::fakes::{MemorySink, ScriptedEmbedder};

/// A position in one binlog file.
pub fn at(offset: u64) -> Position {
    Position::new("binlog.000001", offset)
}

/// A streamer's parts over fakes; `config_edit` changes the reference config.
pub struct Rig {
    /// The parts.
    pub replicator: Replicator<MemorySink>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// The reference configuration changed by `config_edit`.
    pub fn new(config_edit: impl FnOnce(String) -> String) -> Self {
        let text = config_edit(include_str!("../../../config/drugsync.toml").to_owned());
        let config = Config::from_toml(&text, Path::new("drugsync.toml"), |_| None).unwrap();
        let dimensions = config.embed.dimensions;
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = CheckpointStore::open(&dir.path().join("checkpoint.redb")).unwrap();
        let sink = MemorySink::new(dimensions);
        let replicator = Replicator::in_memory(config, sink, SharedEmbedder::new(ScriptedEmbedder::new(dimensions, 1)), checkpoint);
        Self { replicator, _dir: dir }
    }

    /// The in-memory sink.
    pub fn sink(&self) -> &MemorySink {
        self.replicator.parts().sink()
    }

    /// Both positions at `offset`, and the alias answering: a writer that
    /// streamed up to there.
    pub async fn streamed_up_to(&self, offset: u64) {
        self.replicator.committer().rewind_to(&at(offset)).await.unwrap();
        let index = self.sink().version().index.clone();
        self.sink().tamper(|c| c.alias = Some(index));
    }

    /// (local checkpoint, Redis) offsets.
    pub async fn positions(&self) -> (Option<u64>, Option<u64>) {
        let local = self.replicator.checkpoint().stored().unwrap().map(|p| p.offset);
        let remote = self.sink().stored_position().await.unwrap().map(|p| p.offset);
        (local, remote)
    }
}

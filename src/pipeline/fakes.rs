//! In-memory fakes of the sink, the checkpoint and the embedder, with
//! named fault points, for unit tests of the pipeline's logic without
//! servers. Each mirrors the contract of the real one it stands for
//! (`sink::contract`, `checkpoint::LocalPositions`, `embed::Embedder`).
//! The sink fake and `RedisSink` both pass `sink::conformance` (here, and
//! in the integration tests against a real Redis).

pub use crate::sink::conformance::document;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::checkpoint::{CheckpointError, LocalPositions};
use crate::document::{Document, DocumentChange, DocumentKey, EmbeddingSpace, TextHash};
use crate::embed::{EmbedError, Embedded, Embedder};
use crate::position::Position;
use crate::sink::{DocumentSink, RemotePositions, SinkError, StoredState};

/// How a sink write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFault {
    /// Another holder has the writer lease: nothing is written.
    Fenced,
    /// The connection drops before the write reaches the server: nothing is written.
    Lost,
    /// The write runs, but the connection drops before the reply: the
    /// caller sees a transient error and cannot know it was applied.
    LostAfterApplying,
}

/// A document as the sink holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its hashes and fields, as last written.
    pub doc: Document,
    /// Its vector, if it has one.
    pub vector: Option<Arc<Vec<f32>>>,
}

/// What the in-memory sink holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// Documents by key.
    pub docs: BTreeMap<DocumentKey, Stored>,
    /// Quarantined keys and why.
    pub quarantine: BTreeMap<DocumentKey, String>,
    /// Keys whose vector is owed.
    pub owed: BTreeSet<DocumentKey>,
    /// The vector cache.
    pub cache: HashMap<TextHash, Arc<Vec<f32>>>,
    /// The position stored with the last batch.
    pub position: Option<Position>,
    /// Atomic writes acknowledged.
    pub writes: usize,
}

/// The sink in memory: applies changes as `sink::ops` does, one write at a
/// time, and fails the writes it was told to (counted from the next one).
pub struct MemorySink {
    dimensions: usize,
    contents: Mutex<Contents>,
    /// Write attempts made so far.
    attempts: AtomicU64,
    /// Attempt number (1-based, over the sink's life) -> how it fails.
    faults: Mutex<BTreeMap<u64, SinkFault>>,
}

impl MemorySink {
    /// An empty sink whose vectors have `dimensions` elements.
    pub fn new(dimensions: usize) -> Self {
        Self { dimensions, contents: Mutex::default(), attempts: AtomicU64::new(0), faults: Mutex::default() }
    }

    /// The `n`-th write attempt from now (1 = the next) fails with `fault`.
    pub fn fail_write(&self, n: u64, fault: SinkFault) {
        let next = self.attempts.load(Ordering::SeqCst);
        self.faults.lock().unwrap().insert(next + n, fault);
    }

    /// A look at what it holds.
    pub fn contents<T>(&self, look: impl FnOnce(&Contents) -> T) -> T {
        look(&self.contents.lock().unwrap())
    }

    /// Puts a document in as if an earlier run had written it.
    pub fn put(&self, doc: Document, vector: Option<Vec<f32>>) {
        self.contents.lock().unwrap().docs.insert(doc.key.clone(), Stored { doc, vector: vector.map(Arc::new) });
    }

    /// Redis restored from an older copy (or failed over to a lagging
    /// replica): it holds an earlier position than it acknowledged.
    pub fn restore_older(&self, position: Position) {
        self.contents.lock().unwrap().position = Some(position);
    }

    fn write(&self, changes: &[DocumentChange], position: Option<&Position>) -> Result<(), SinkError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let fault = self.faults.lock().unwrap().remove(&attempt);
        match fault {
            Some(SinkFault::Fenced) => return Err(SinkError::Fenced { holder: "another".into() }),
            Some(SinkFault::Lost) => return Err(SinkError::Unavailable("connection lost before the write".into())),
            _ => {}
        }
        let mut held = self.contents.lock().unwrap();
        for change in changes {
            match change {
                DocumentChange::Upsert { doc, vector } => {
                    let vector = match vector {
                        Some(vector) => {
                            held.cache.insert(doc.text_hash.clone(), vector.clone());
                            held.owed.remove(&doc.key);
                            Some(vector.clone())
                        }
                        // Only the fields and hashes are written: the stored vector stays.
                        None => held.docs.get(&doc.key).and_then(|h| h.vector.clone()),
                    };
                    held.docs.insert(doc.key.clone(), Stored { doc: doc.clone(), vector });
                }
                DocumentChange::Delete(key) => {
                    held.docs.remove(key);
                    held.owed.remove(key);
                }
                DocumentChange::Owe(doc) => {
                    held.docs.insert(doc.key.clone(), Stored { doc: doc.clone(), vector: None });
                    held.owed.insert(doc.key.clone());
                }
                DocumentChange::Quarantine { key, reason } => {
                    held.quarantine.insert(key.clone(), reason.clone());
                    held.owed.remove(key);
                }
                DocumentChange::Release(key) => {
                    held.quarantine.remove(key);
                }
            }
        }
        if let Some(position) = position {
            held.position = Some(position.clone());
        }
        held.writes += 1;
        match fault {
            Some(SinkFault::LostAfterApplying) => Err(SinkError::Unavailable("connection lost before the reply".into())),
            _ => Ok(()),
        }
    }
}

impl RemotePositions for MemorySink {
    async fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> Result<(), SinkError> {
        self.write(changes, Some(position))
    }

    async fn stored_position(&self) -> Result<Option<Position>, SinkError> {
        Ok(self.contents.lock().unwrap().position.clone())
    }
}

impl DocumentSink for MemorySink {
    async fn read_state(&self, keys: &[DocumentKey]) -> Result<Vec<Option<StoredState>>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                held.docs.get(k).map(|h| StoredState {
                    doc_hash: Some(h.doc.doc_hash.clone()),
                    text_hash: Some(h.doc.text_hash.clone()),
                    vector_ok: h.vector.as_ref().is_some_and(|v| v.len() == self.dimensions),
                })
            })
            .collect())
    }
    async fn quarantined(&self, keys: &[DocumentKey]) -> Result<Vec<bool>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(keys.iter().map(|k| held.quarantine.contains_key(k)).collect())
    }
    async fn cached_vectors(&self, hashes: &[&TextHash]) -> Result<Vec<Option<Vec<f32>>>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(hashes.iter().map(|h| held.cache.get(*h).map(|v| v.as_ref().clone())).collect())
    }
    async fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> Result<(), SinkError> {
        self.contents.lock().unwrap().cache.extend(vectors.iter().cloned());
        Ok(())
    }
    async fn apply(&self, changes: &[DocumentChange]) -> Result<(), SinkError> {
        // As `RedisSink::apply`: nothing to write is no write.
        if changes.is_empty() {
            return Ok(());
        }
        self.write(changes, None)
    }
    async fn trim_vector_cache(&self) -> Result<(), SinkError> {
        Ok(())
    }
    fn key_of(&self, key: &DocumentKey) -> String {
        format!("drug:{}", key.0)
    }
}

/// How a checkpoint write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// The next write fails (disk full); nothing is stored.
    Full,
}

/// The checkpoint in memory, refusing to go backwards like the real one.
#[derive(Default)]
pub struct MemoryCheckpoint {
    position: Mutex<Option<Position>>,
    fault: Mutex<Option<DiskFault>>,
}

impl MemoryCheckpoint {
    /// The stored position.
    pub fn position(&self) -> Option<Position> {
        self.position.lock().unwrap().clone()
    }

    /// The next write fails with `fault`.
    pub fn fail_next(&self, fault: DiskFault) {
        *self.fault.lock().unwrap() = Some(fault);
    }

    fn fail(&self) -> Result<(), CheckpointError> {
        match self.fault.lock().unwrap().take() {
            Some(DiskFault::Full) => Err(CheckpointError::Store { path: "memory".into(), message: "disk full".into() }),
            None => Ok(()),
        }
    }
}

impl LocalPositions for MemoryCheckpoint {
    fn stored(&self) -> Result<Option<Position>, CheckpointError> {
        Ok(self.position())
    }
    fn advance(&self, position: &Position) -> Result<(), CheckpointError> {
        self.fail()?;
        let mut current = self.position.lock().unwrap();
        if let Some(c) = current.as_ref()
            && c.try_cmp(position).is_ok_and(|o| o.is_gt())
        {
            return Err(CheckpointError::Backwards { current: Box::new(c.clone()), requested: Box::new(position.clone()) });
        }
        *current = Some(position.clone());
        Ok(())
    }
    fn reset(&self, position: &Position) -> Result<(), CheckpointError> {
        self.fail()?;
        *self.position.lock().unwrap() = Some(position.clone());
        Ok(())
    }
}

/// An embedder whose answers are scripted: a vector derived from the text,
/// refusals of named texts, and an outage switch. Records every call.
pub struct ScriptedEmbedder {
    space: EmbeddingSpace,
    batch: usize,
    /// Texts the service refuses for good.
    pub refuse: Mutex<BTreeSet<String>>,
    /// While set, every call is throttled (transient).
    pub down: AtomicBool,
    /// Texts whose calls are throttled (transient), the others answered.
    pub throttled: Mutex<BTreeSet<String>>,
    /// The texts of every call that was answered, call by call.
    pub calls: Mutex<VecDeque<Vec<String>>>,
}

impl ScriptedEmbedder {
    /// `dimensions`-long vectors, `batch` texts a call.
    pub fn new(dimensions: usize, batch: usize) -> Self {
        let space = EmbeddingSpace { model: "scripted".into(), dimensions, normalize: false, template_version: 1 };
        Self { space, batch, refuse: Mutex::default(), down: AtomicBool::new(false), throttled: Mutex::default(), calls: Mutex::default() }
    }

    /// Every text embedded so far, in call order.
    pub fn texts(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().flatten().cloned().collect()
    }

    /// The vector this embedder gives `text`.
    pub fn vector_of(&self, text: &str) -> Vec<f32> {
        (0..self.space.dimensions).map(|i| (text.len() + i) as f32).collect()
    }
}

impl Embedder for ScriptedEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }
    fn max_batch(&self) -> usize {
        self.batch
    }
    fn max_input_chars(&self) -> usize {
        10_000
    }
    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        if self.down.load(Ordering::SeqCst) || texts.iter().any(|t| self.throttled.lock().unwrap().contains(*t)) {
            return Err(EmbedError::Unavailable("throttled".into()));
        }
        if let Some(refused) = texts.iter().find(|t| self.refuse.lock().unwrap().contains(**t)) {
            return Err(EmbedError::TextRejected(format!("too long: {refused}")));
        }
        self.calls.lock().unwrap().push_back(texts.iter().map(|t| t.to_string()).collect());
        Ok(Embedded { vectors: texts.iter().map(|t| self.vector_of(t)).collect(), tokens: Some(texts.len() as u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake the pipeline's unit tests trust keeps the contract the
    /// integration tests hold `RedisSink` to (`sink_contract.rs`).
    #[tokio::test]
    async fn the_memory_sink_keeps_the_sink_contract() {
        let space = ScriptedEmbedder::new(4, 1).space().clone();
        crate::sink::conformance::check_document_sink(&MemorySink::new(4), &space, "conformance-", crate::sink::conformance::Caching::On)
            .await;
    }
}

//! An embedder whose answers are scripted, recording every call.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::document::EmbeddingSpace;
use crate::embed::{EmbedError, Embedded, Embedder};

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
        Ok(Embedded { vectors: texts.iter().map(|t| self.vector_of(t)).collect(), tokens: Some(texts.len() as u64), cut: 0 })
    }
}

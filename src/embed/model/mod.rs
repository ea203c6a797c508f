//! The embedded semantic model (`embed.provider = "model"`): a
//! sentence-transformers BERT export (all-MiniLM-L6-v2 in the demo) run
//! inside drugsync with candle, on the CPU, from files on disk. Nothing is
//! downloaded at build or run time; the directory is checked at start-up.
//!
//! Like every provider its vectors are checked before they are written, it
//! has its own index version (model id, dimensions and normalisation are
//! part of the hash), and long texts are cut and counted, here in tokens at
//! the model's `max_seq_length` rather than in characters.

mod files;
mod forward;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use files::{ModelDir, ModelDirError, Pooling};
use forward::Encoder;

use super::{EmbedError, Embedded, Embedder};
use crate::config::{EmbedConfig, ModelFamily};
use crate::document::EmbeddingSpace;

/// See the module docs.
pub struct ModelEmbedder {
    space: EmbeddingSpace,
    encoder: Arc<Encoder>,
    max_batch: usize,
    /// One pass at a time: a pass already uses every core, and passes side by
    /// side would only compete for them (whatever `embed.concurrency` says).
    passes: Semaphore,
}

impl ModelEmbedder {
    /// Reads, checks and loads the model `config.model_path` names, for the
    /// space `config` describes (which must fit the model).
    pub fn from_config(config: &EmbedConfig) -> Result<Self, EmbedError> {
        let path = config
            .model_path
            .as_deref()
            .ok_or_else(|| ModelDirError::Missing { path: "embed.model_path (not set)".into(), file: "the directory itself" })?;
        let dir = ModelDir::read(path)?;
        dir.check_against(config.dimensions, config.normalize)?;
        let encoder = Encoder::load(&dir)?;
        tracing::info!(model = %config.model_id, path = %path.display(), max_seq_length = dir.max_seq_length, "embedded model loaded");
        Ok(Self {
            space: super::space_of(config),
            encoder: Arc::new(encoder),
            max_batch: config.texts_per_call().min(ModelFamily::Model.max_batch()),
            passes: Semaphore::new(1),
        })
    }
}

impl Embedder for ModelEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn max_input_chars(&self) -> usize {
        ModelFamily::Model.default_max_input_chars()
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        let _pass = self.passes.acquire().await.map_err(|_| EmbedError::Unavailable("the embedded model is shutting down".into()))?;
        let encoder = Arc::clone(&self.encoder);
        let owned: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        let pass = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
            encoder.embed(&texts)
        })
        .await
        .map_err(|e| EmbedError::Unavailable(format!("the embedded model's pass did not finish: {e}")))?
        .map_err(|e| EmbedError::BadResponse(format!("{} failed: {e}", self.space.model)))?;
        Ok(Embedded { vectors: pass.vectors, tokens: Some(pass.tokens), cut: pass.cut })
    }
}

//! Embedding: turning document texts into vectors.
//!
//! [`Embedder`] is one text in, one vector out (Titan V2 takes one text per
//! call). [`embed_distinct`] fans a set of distinct texts out with bounded
//! concurrency and counts calls and tokens. Deciding *whether* a text needs a
//! call (hash already stored, vector cached) is the pipeline's job, not the
//! embedder's.

pub mod bedrock;
pub mod breaker;
pub mod guarded;
pub mod local;
pub mod quota;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{EmbedConfig, EmbedProvider};
use crate::document::EmbeddingSpace;
use crate::error::{Classify, ErrorClass};

pub use bedrock::BedrockEmbedder;
pub use local::LocalEmbedder;

/// One embedding result.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The vector, of the configured dimensions.
    pub vector: Vec<f32>,
    /// Input tokens billed for this text (0 for the local embedder).
    pub tokens: u64,
}

/// Why a text could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Throttled, timed out, service unavailable: worth retrying later.
    #[error("embedding service temporarily unavailable: {0}")]
    Unavailable(String),
    /// Credentials, permissions, model id or request rejected: retrying cannot help.
    #[error("embedding request rejected: {message}. {hint}")]
    Rejected {
        /// What the service said.
        message: String,
        /// What the operator should check.
        hint: &'static str,
    },
    /// The service answered with something that is not a usable vector.
    #[error("embedding response unusable: {0}")]
    BadResponse(String),
    /// The service refused this one text (Bedrock's ValidationException:
    /// empty after a custom template, over the model's token limit). Other
    /// texts are fine, so the pipeline quarantines the documents of this
    /// text instead of stopping.
    #[error("the embedding service refused this text: {0}")]
    TextRejected(String),
}

impl Classify for EmbedError {
    fn class(&self) -> ErrorClass {
        match self {
            EmbedError::Unavailable(_) => ErrorClass::Transient,
            EmbedError::Rejected { .. } | EmbedError::BadResponse(_) | EmbedError::TextRejected(_) => ErrorClass::Definite,
        }
    }
}

/// Produces vectors for texts.
///
/// Contract: the same text in the same [`EmbeddingSpace`] yields a vector
/// close enough to be interchangeable (the pipeline caches by text hash); the
/// vector has exactly `space().dimensions` elements; errors are classed.
/// Implementations may retry internally but must return within bounded time.
pub trait Embedder: Send + Sync + 'static {
    /// The vector space this embedder produces; part of every text hash.
    fn space(&self) -> &EmbeddingSpace;

    /// Embeds one text.
    fn embed(&self, text: &str) -> impl Future<Output = Result<Embedding, EmbedError>> + Send;
}

/// The embedder chosen by configuration.
pub enum AnyEmbedder {
    /// Offline default.
    Local(LocalEmbedder),
    /// AWS Bedrock, paced to the quota behind a circuit breaker.
    Bedrock(guarded::Guarded<BedrockEmbedder>),
}

impl AnyEmbedder {
    /// Builds the configured embedder (Bedrock loads the default AWS credential chain).
    pub async fn from_config(config: &EmbedConfig) -> Self {
        match config.provider {
            EmbedProvider::Local => AnyEmbedder::Local(LocalEmbedder::new(config.dimensions, config.template_version)),
            EmbedProvider::Bedrock => {
                AnyEmbedder::Bedrock(guarded::Guarded::from_config(BedrockEmbedder::from_default_chain(config).await, config))
            }
        }
    }
}

impl Embedder for AnyEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        match self {
            AnyEmbedder::Local(e) => e.space(),
            AnyEmbedder::Bedrock(e) => e.space(),
        }
    }

    async fn embed(&self, text: &str) -> Result<Embedding, EmbedError> {
        match self {
            AnyEmbedder::Local(e) => e.embed(text).await,
            AnyEmbedder::Bedrock(e) => e.embed(text).await,
        }
    }
}

/// Running totals of embedding work, for logs, tests and the reconcile summary.
#[derive(Debug, Default)]
pub struct EmbedStats {
    /// Embedding calls made (one per distinct text).
    pub calls: AtomicU64,
    /// Input tokens reported by the service.
    pub tokens: AtomicU64,
}

impl EmbedStats {
    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Embeds each text once, at most `concurrency` at a time; results are in input order.
/// The caller passes distinct texts: this function does not deduplicate.
/// Any failure fails the whole set; see [`embed_each`] to keep the texts that worked.
pub async fn embed_distinct<E: Embedder>(
    embedder: &E,
    texts: &[&str],
    concurrency: usize,
    stats: &EmbedStats,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    embed_each(embedder, texts, concurrency, stats)
        .await?
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Vector(vector) => Ok(vector),
            Outcome::Refused(reason) => Err(EmbedError::TextRejected(reason)),
            Outcome::Unavailable(e) => Err(e),
        })
        .collect()
}

/// What became of one text in [`embed_each`].
#[derive(Debug)]
pub enum Outcome {
    /// Its vector.
    Vector(Vec<f32>),
    /// The service refused this text ([`EmbedError::TextRejected`]).
    Refused(String),
    /// The service could not answer this time (a transient error).
    Unavailable(EmbedError),
}

/// Embeds every text, whatever happens to the others: a refused text or a
/// call the service could not answer is that text's [`Outcome`], so the
/// vectors that did come back are kept (the caller caches them: a retry
/// then costs only the calls that failed). Only a definite error that is no
/// single text's (a vector of the wrong size, access denied) fails the set.
pub async fn embed_each<E: Embedder>(
    embedder: &E,
    texts: &[&str],
    concurrency: usize,
    stats: &EmbedStats,
) -> Result<Vec<Outcome>, EmbedError> {
    use futures_util::StreamExt;
    let dims = embedder.space().dimensions;
    let mut out = Vec::with_capacity(texts.len());
    // `concurrency` calls in flight all the time (a slow call does not hold
    // back the next ones), results kept in input order.
    // The futures are built eagerly (one per text of a chunk), so no closure
    // has to be generic over the borrow of `embedder`: the caller's future stays `Send`.
    let futures: Vec<_> = texts.iter().map(|text| embedder.embed(text)).collect();
    let mut calls = futures_util::stream::iter(futures).buffered(concurrency.max(1));
    while let Some(result) = calls.next().await {
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let embedding = match result {
            Ok(embedding) => embedding,
            Err(EmbedError::TextRejected(reason)) => {
                out.push(Outcome::Refused(reason));
                continue;
            }
            Err(e) if e.is_transient() => {
                out.push(Outcome::Unavailable(e));
                continue;
            }
            Err(e) => return Err(e),
        };
        stats.tokens.fetch_add(embedding.tokens, Ordering::Relaxed);
        if embedding.vector.len() != dims {
            return Err(EmbedError::BadResponse(format!(
                "model {} answered {} dimensions where embed.dimensions is {dims}; check embed.dimensions against the model",
                embedder.space().model,
                embedding.vector.len()
            )));
        }
        out.push(Outcome::Vector(embedding.vector));
    }
    Ok(out)
}

/// Little-endian FLOAT32 bytes, the layout RediSearch expects for a vector field.
pub fn vector_to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Inverse of [`vector_to_bytes`]; `None` when the length is not a multiple of 4.
pub fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_bytes_round_trip_little_endian() {
        let v = vec![1.0f32, -0.5, 0.25];
        let bytes = vector_to_bytes(&v);
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(vector_from_bytes(&bytes).unwrap(), v);
        assert!(vector_from_bytes(&bytes[..5]).is_none());
    }

    #[tokio::test]
    async fn embed_distinct_counts_calls_and_keeps_order() {
        let e = LocalEmbedder::new(16, 1);
        let stats = EmbedStats::default();
        let out = embed_distinct(&e, &["a b", "c d", "e f"], 2, &stats).await.unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1], e.embed("c d").await.unwrap().vector);
        assert_eq!(stats.calls(), 3);
    }
}

//! Embedding: turning document texts into vectors.
//!
//! [`Embedder`] is one call: up to [`Embedder::max_batch`] texts in (Titan
//! V2 takes one, Cohere 96, an OpenAI-compatible server a list), a vector
//! per text out. [`embed_each`] cuts texts to the model's limit, groups them
//! into calls, keeps `concurrency` calls in flight and counts calls, tokens
//! and cuts. Deciding *whether* a text needs a call (hash already stored,
//! vector cached) is the pipeline's job, not the embedder's.

pub mod any;
pub mod bedrock;
pub mod breaker;
pub mod cut;
pub mod each;
pub mod guarded;
pub mod local;
pub mod model;
pub mod openai;
pub mod pricing;
pub mod quota;
pub mod shared;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::EmbedConfig;
use crate::document::EmbeddingSpace;
use crate::error::{Classify, ErrorClass};

pub use any::AnyEmbedder;
pub use bedrock::BedrockEmbedder;
pub use each::{Outcome, embed_distinct, embed_each};
pub use local::LocalEmbedder;
pub use model::ModelEmbedder;
pub use openai::OpenAiEmbedder;
pub use pricing::Pricing;
pub use shared::SharedEmbedder;

/// The space a remote model of `config` embeds in (the offline embedder names its own model).
pub fn space_of(config: &EmbedConfig) -> EmbeddingSpace {
    EmbeddingSpace {
        model: config.model_id.clone(),
        dimensions: config.dimensions,
        normalize: config.normalize,
        template_version: config.template_version,
    }
}

/// One embedding result.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The vector, of the configured dimensions.
    pub vector: Vec<f32>,
    /// Input tokens billed for this text (0 for the local embedder).
    pub tokens: u64,
}

/// The answer to one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector per text, in the order of the texts.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens the service reported for the call; `None` when it does
    /// not say (Cohere on Bedrock), and the tokens are then estimated.
    pub tokens: Option<u64>,
    /// Texts the model cut to its own input limit, counted in tokens (the
    /// embedded model); models cut in characters before the call say 0.
    pub cut: u64,
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
    /// The embedded model's files are missing, unreadable, or do not fit the
    /// configuration; the message names the path and the way to install it.
    #[error("the embedded model cannot be used: {0}")]
    Model(#[from] model::ModelDirError),
}

impl Classify for EmbedError {
    fn class(&self) -> ErrorClass {
        match self {
            EmbedError::Unavailable(_) => ErrorClass::Transient,
            EmbedError::Rejected { .. } | EmbedError::BadResponse(_) | EmbedError::TextRejected(_) | EmbedError::Model(_) => {
                ErrorClass::Definite
            }
        }
    }
}

/// Produces vectors for texts.
///
/// Contract: the same text in the same [`EmbeddingSpace`] yields a vector
/// close enough to be interchangeable (the pipeline caches by text hash); each
/// vector has exactly `space().dimensions` elements, one per text, in order;
/// errors are classed, and a text the service refuses is
/// [`EmbedError::TextRejected`] (for a call of several texts, the caller
/// finds which one). Implementations may retry internally but must return
/// within bounded time.
pub trait Embedder: Send + Sync + 'static {
    /// The vector space this embedder produces; part of every text hash.
    fn space(&self) -> &EmbeddingSpace;

    /// Most texts one call carries.
    fn max_batch(&self) -> usize {
        1
    }

    /// Longest text in characters the model takes ([`cut::cut_to_limit`] applies it).
    fn max_input_chars(&self) -> usize;

    /// Embeds 1 to [`Self::max_batch`] texts, each within [`Self::max_input_chars`], in one call.
    fn embed_batch(&self, texts: &[&str]) -> impl Future<Output = Result<Embedded, EmbedError>> + Send;

    /// Embeds 1 to [`Self::max_batch`] search queries in one call. Models that
    /// embed a query differently from a document (Cohere's `search_query`)
    /// say so here; the others embed it as a document.
    fn embed_query_batch(&self, texts: &[&str]) -> impl Future<Output = Result<Embedded, EmbedError>> + Send {
        self.embed_batch(texts)
    }

    /// Embeds one search query in one call, checked as every vector is
    /// ([`check_vector`]): a query vector nothing could be near is refused.
    fn embed_query(&self, text: &str) -> impl Future<Output = Result<Vec<f32>, EmbedError>> + Send {
        async move {
            let (vector, _) = only_vector(self.embed_query_batch(&[text]).await?, &self.space().model)?;
            check_vector(&vector, self.space().dimensions)
                .map_err(|fault| EmbedError::BadResponse(format!("{} answered a query vector that {fault}", self.space().model)))?;
            Ok(vector)
        }
    }

    /// Embeds one text in one call.
    fn embed(&self, text: &str) -> impl Future<Output = Result<Embedding, EmbedError>> + Send {
        async move {
            let (vector, tokens) = only_vector(self.embed_batch(&[text]).await?, &self.space().model)?;
            Ok(Embedding { vector, tokens: tokens.unwrap_or(0) })
        }
    }
}

/// The one vector of an answer to a call that carried one text, with the
/// tokens counted; any other number of vectors is the service's hiccup.
fn only_vector(mut answer: Embedded, model: &str) -> Result<(Vec<f32>, Option<u64>), EmbedError> {
    match (answer.vectors.pop(), answer.vectors.len()) {
        (Some(vector), 0) => Ok((vector, answer.tokens)),
        (popped, rest) => {
            Err(EmbedError::Unavailable(format!("{model} answered {} vectors for one text", rest + usize::from(popped.is_some()))))
        }
    }
}

/// Running totals of embedding work, for logs, tests and the reconcile summary.
#[derive(Debug, Default)]
pub struct EmbedStats {
    /// Embedding calls made (a call carries up to [`Embedder::max_batch`] texts).
    pub calls: AtomicU64,
    /// Texts sent.
    pub texts: AtomicU64,
    /// Input tokens reported by the service.
    pub tokens: AtomicU64,
    /// Input tokens estimated (one per four characters) for calls whose
    /// answer does not say.
    pub tokens_estimated: AtomicU64,
    /// Texts cut to the model's input limit (see [`cut`]).
    pub texts_cut: AtomicU64,
}

impl EmbedStats {
    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Tokens reported plus tokens estimated: what the cost is computed from.
    pub fn billed_tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed) + self.tokens_estimated.load(Ordering::Relaxed)
    }
}

/// Tokens a text is estimated at when the service does not say: one per
/// four characters, AWS's own rule of thumb for these models.
pub fn estimated_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The smallest L2 norm a vector may have. Below it the vector has no
/// direction to speak of (a zero vector makes every cosine distance NaN).
pub const MIN_VECTOR_NORM: f64 = 1e-6;

/// Why a vector may not be written or cached.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorFault {
    /// Not the index's size.
    #[error("{got} dimensions where the index has {want}")]
    Size {
        /// Components found.
        got: usize,
        /// The index's dimensions.
        want: usize,
    },
    /// A component is NaN or infinite (an answer like `1e39` overflows f32).
    #[error("component {index} is {value}, not a finite number")]
    NotFinite {
        /// Which component.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The vector is (close to) zero.
    #[error("its length {norm:e} is below {MIN_VECTOR_NORM:e}: it points nowhere")]
    TooShort {
        /// Its L2 norm.
        norm: f64,
    },
}

/// Checks what every vector must be before it reaches Redis or the cache:
/// `dimensions` components, each finite, and a norm of at least
/// [`MIN_VECTOR_NORM`] (computed in f64, so large components cannot overflow it).
pub fn check_vector(vector: &[f32], dimensions: usize) -> Result<(), VectorFault> {
    if vector.len() != dimensions {
        return Err(VectorFault::Size { got: vector.len(), want: dimensions });
    }
    if let Some((index, value)) = vector.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(VectorFault::NotFinite { index, value: *value });
    }
    let norm = l2_norm(vector);
    if norm < MIN_VECTOR_NORM {
        return Err(VectorFault::TooShort { norm });
    }
    Ok(())
}

/// The L2 norm of `vector`, summed in f64 (what [`check_vector`] holds to
/// [`MIN_VECTOR_NORM`], and what `drugsync search --ndc` shows).
pub fn l2_norm(vector: &[f32]) -> f64 {
    vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt()
}

/// Scales `v` to unit length (a zero vector stays as it is).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
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
    fn only_finite_vectors_of_the_right_size_with_a_direction_pass() {
        assert_eq!(check_vector(&[0.6, 0.8], 2), Ok(()));
        assert_eq!(check_vector(&[3e38, 3e38], 2), Ok(()), "large but finite: the norm must not overflow");
        assert_eq!(check_vector(&[0.6], 2), Err(VectorFault::Size { got: 1, want: 2 }));
        assert!(matches!(check_vector(&[0.1, f32::NAN], 2), Err(VectorFault::NotFinite { index: 1, .. })));
        assert!(matches!(check_vector(&[f32::INFINITY, 0.0], 2), Err(VectorFault::NotFinite { index: 0, .. })));
        assert!(matches!(check_vector(&[0.0, 0.0], 2), Err(VectorFault::TooShort { .. })));
        assert!(matches!(check_vector(&[1e-9, 0.0], 2), Err(VectorFault::TooShort { .. })));
        // What normalising an answer with an overflowed component gives.
        let mut overflowed = vec!["1e39".parse::<f32>().unwrap(), 0.5];
        normalise(&mut overflowed);
        assert!(check_vector(&overflowed, 2).is_err(), "{overflowed:?}");
    }

    #[test]
    fn vector_bytes_round_trip_little_endian() {
        let v = vec![1.0f32, -0.5, 0.25];
        let bytes = vector_to_bytes(&v);
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(vector_from_bytes(&bytes).unwrap(), v);
        assert!(vector_from_bytes(&bytes[..5]).is_none());
    }
}

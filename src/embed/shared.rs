//! [`SharedEmbedder`]: any embedder behind one cheap, clonable handle, so
//! the pipeline's stages hold it without a type parameter of their own.
//!
//! [`Embedder`]'s calls return `impl Future`, which a trait object cannot
//! carry; this file boxes each call's future once. A call is a network
//! round trip or a model's forward pass, so one allocation per call costs
//! nothing measurable, and in exchange no stage is generic over the
//! embedder (the sink's roles are what stages are generic over).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{EmbedError, Embedded, Embedder};
use crate::document::EmbeddingSpace;

/// A call's answer, boxed.
type Call<'a> = Pin<Box<dyn Future<Output = Result<Embedded, EmbedError>> + Send + 'a>>;

/// [`Embedder`] in a form a trait object can hold.
trait Erased: Send + Sync + 'static {
    fn space(&self) -> &EmbeddingSpace;
    fn max_batch(&self) -> usize;
    fn max_input_chars(&self) -> usize;
    fn embed_batch<'a>(&'a self, texts: &'a [&'a str]) -> Call<'a>;
    fn embed_query_batch<'a>(&'a self, texts: &'a [&'a str]) -> Call<'a>;
}

impl<E: Embedder> Erased for E {
    fn space(&self) -> &EmbeddingSpace {
        Embedder::space(self)
    }
    fn max_batch(&self) -> usize {
        Embedder::max_batch(self)
    }
    fn max_input_chars(&self) -> usize {
        Embedder::max_input_chars(self)
    }
    fn embed_batch<'a>(&'a self, texts: &'a [&'a str]) -> Call<'a> {
        Box::pin(Embedder::embed_batch(self, texts))
    }
    fn embed_query_batch<'a>(&'a self, texts: &'a [&'a str]) -> Call<'a> {
        Box::pin(Embedder::embed_query_batch(self, texts))
    }
}

/// Any embedder, shared: clones are the same embedder (its quota, breaker
/// and counters included). It is an [`Embedder`] itself, with the contract
/// of the one inside.
#[derive(Clone)]
pub struct SharedEmbedder(Arc<dyn Erased>);

impl SharedEmbedder {
    /// Shares `embedder`.
    pub fn new<E: Embedder>(embedder: E) -> Self {
        Self(Arc::new(embedder))
    }

    /// Shares an embedder the caller keeps a handle to (a test's scripted one).
    pub fn from_arc<E: Embedder>(embedder: Arc<E>) -> Self {
        Self(embedder)
    }
}

impl Embedder for SharedEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        self.0.space()
    }
    fn max_batch(&self) -> usize {
        self.0.max_batch()
    }
    fn max_input_chars(&self) -> usize {
        self.0.max_input_chars()
    }
    // The boxed call lives as long as the shorter of the two borrows; an
    // async fn's future names both.
    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        self.0.embed_batch(texts).await
    }
    async fn embed_query_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        self.0.embed_query_batch(texts).await
    }
}

#[cfg(test)]
mod tests {
    use super::SharedEmbedder;
    use crate::embed::{Embedder, LocalEmbedder};

    #[tokio::test]
    async fn the_shared_embedder_answers_as_the_one_inside() {
        let inner = LocalEmbedder::new(16, 1);
        let shared = SharedEmbedder::new(LocalEmbedder::new(16, 1));
        assert_eq!(shared.space(), inner.space());
        assert_eq!((shared.max_batch(), shared.max_input_chars()), (inner.max_batch(), inner.max_input_chars()));
        let texts = ["atorvastatin 10 mg tablet", "insulin glargine 100 unit/ml"];
        assert_eq!(shared.embed_batch(&texts).await.unwrap(), inner.embed_batch(&texts).await.unwrap());
        assert_eq!(shared.embed_query("statin").await.unwrap(), inner.embed_query("statin").await.unwrap());
    }
}

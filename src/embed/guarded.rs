//! An embedder paced to its quota ([`Quota`]) behind a circuit breaker
//! ([`CircuitBreaker`]): what the pipeline calls Bedrock through.

use std::time::Duration;

use super::breaker::CircuitBreaker;
use super::quota::Quota;
use super::{EmbedError, Embedded, Embedder};
use crate::config::EmbedConfig;
use crate::document::EmbeddingSpace;

/// See the module docs.
#[derive(Debug)]
pub struct Guarded<E> {
    inner: E,
    quota: Quota,
    breaker: CircuitBreaker,
}

impl<E: Embedder> Guarded<E> {
    /// `inner` behind `quota` and `breaker`.
    pub fn new(inner: E, quota: Quota, breaker: CircuitBreaker) -> Self {
        Self { inner, quota, breaker }
    }

    /// With the quota and breaker settings of `config`.
    pub fn from_config(inner: E, config: &EmbedConfig) -> Self {
        Self::new(
            inner,
            Quota::per_minute(config.requests_per_minute, config.tokens_per_minute),
            CircuitBreaker::new(config.breaker_failures, Duration::from_secs(config.breaker_cooldown_secs)),
        )
    }
}

impl<E: Embedder> Embedder for Guarded<E> {
    fn space(&self) -> &EmbeddingSpace {
        self.inner.space()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    fn max_input_chars(&self) -> usize {
        self.inner.max_input_chars()
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        self.guard(texts, self.inner.embed_batch(texts)).await
    }

    async fn embed_query_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        self.guard(texts, self.inner.embed_query_batch(texts)).await
    }
}

impl<E: Embedder> Guarded<E> {
    /// Runs `call` for `texts` within the quota, unless the breaker is open.
    async fn guard(&self, texts: &[&str], call: impl Future<Output = Result<Embedded, EmbedError>>) -> Result<Embedded, EmbedError> {
        self.breaker.check()?;
        let admission = self.quota.admit(texts.iter().map(|t| Quota::estimate(t)).sum()).await;
        let result = call.await;
        drop(admission);
        self.breaker.record(matches!(result, Err(EmbedError::Unavailable(_))));
        result
    }
}

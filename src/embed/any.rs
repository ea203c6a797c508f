//! The embedder chosen by configuration: one type the binary holds,
//! dispatching to the provider `embed.provider` names.

use super::guarded::Guarded;
use super::{BedrockEmbedder, EmbedError, Embedded, Embedder, LocalEmbedder, ModelEmbedder, OpenAiEmbedder};
use crate::config::{EmbedConfig, EmbedProvider};
use crate::document::EmbeddingSpace;

/// The embedder chosen by configuration.
pub enum AnyEmbedder {
    /// Offline default.
    Local(LocalEmbedder),
    /// AWS Bedrock (Titan V2, Cohere Embed), paced to the quota behind a circuit breaker.
    Bedrock(Guarded<BedrockEmbedder>),
    /// An OpenAI-compatible server, paced and guarded the same way.
    OpenAi(Guarded<OpenAiEmbedder>),
    /// The semantic model run inside drugsync (no quota to pace, no service to break).
    Model(ModelEmbedder),
}

impl AnyEmbedder {
    /// Builds the configured embedder (Bedrock loads the default AWS
    /// credential chain; the embedded model is read and checked from disk).
    pub async fn from_config(config: &EmbedConfig) -> Result<Self, EmbedError> {
        Ok(match config.provider {
            EmbedProvider::Local => AnyEmbedder::Local(LocalEmbedder::new(config.dimensions, config.template_version)),
            EmbedProvider::Bedrock => AnyEmbedder::Bedrock(Guarded::from_config(BedrockEmbedder::from_default_chain(config).await, config)),
            EmbedProvider::Openai => AnyEmbedder::OpenAi(Guarded::from_config(OpenAiEmbedder::from_config(config)?, config)),
            EmbedProvider::Model => AnyEmbedder::Model(ModelEmbedder::from_config(config)?),
        })
    }
}

/// `$call` on whichever embedder `$any` holds.
macro_rules! on_each {
    ($any:expr, $e:ident => $call:expr) => {
        match $any {
            AnyEmbedder::Local($e) => $call,
            AnyEmbedder::Bedrock($e) => $call,
            AnyEmbedder::OpenAi($e) => $call,
            AnyEmbedder::Model($e) => $call,
        }
    };
}

impl Embedder for AnyEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        on_each!(self, e => e.space())
    }

    fn max_batch(&self) -> usize {
        on_each!(self, e => e.max_batch())
    }

    fn max_input_chars(&self) -> usize {
        on_each!(self, e => e.max_input_chars())
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        on_each!(self, e => e.embed_batch(texts).await)
    }

    async fn embed_query_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        on_each!(self, e => e.embed_query_batch(texts).await)
    }
}

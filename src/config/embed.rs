//! `[embed]`: which model produces vectors, and how it is called.

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// Which embedder produces vectors.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmbedProvider {
    /// Offline, deterministic hashed n-gram vectors: no network, no cost.
    Local,
    /// AWS Bedrock Titan Text Embeddings V2.
    Bedrock,
}

/// Embedding settings. Model, dimensions, normalisation and template version
/// are all part of every text hash, so changing any of them re-embeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// `local` (default, offline) or `bedrock`.
    pub provider: EmbedProvider,
    /// Bedrock model id.
    #[serde(default = "default_model_id")]
    pub model_id: String,
    /// Vector dimensions: 1024, 512 or 256 for Titan V2.
    pub dimensions: usize,
    /// Ask the model for unit-length vectors (needed for COSINE/IP to agree).
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// AWS region for Bedrock; the default credential chain supplies credentials.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (VPC endpoint, or a local fake in tests); `DRUGSYNC_BEDROCK_ENDPOINT_URL`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// SDK attempts per text, including the first (throttling is retried with backoff).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest wait for one embedding call's answer, in seconds (each attempt).
    #[serde(default = "default_embed_timeout_secs")]
    pub timeout_secs: u64,
    /// Client-side pacing to the Bedrock quota: calls per minute (0: none).
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Client-side pacing to the Bedrock quota: input tokens per minute (0: none).
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Unavailable answers in a row that open the circuit breaker (0: never).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// Seconds the open circuit fails calls at once before trying one again.
    #[serde(default = "default_breaker_cooldown_secs")]
    pub breaker_cooldown_secs: u64,
    /// Bump when the text template changes meaning, to force re-embedding.
    #[serde(default = "default_template_version")]
    pub template_version: u32,
    /// Texts embedded at once (concurrent Bedrock calls).
    #[serde(default = "default_embed_concurrency")]
    pub concurrency: usize,
    /// USD per 1,000 input tokens, for the reconcile's cost estimate.
    #[serde(default = "default_price_per_1k_tokens")]
    pub price_per_1k_tokens: f64,
    /// Most vectors kept in Redis's vector cache (by text hash), oldest out
    /// first; 0 keeps none. Each is 4 x dimensions bytes.
    #[serde(default = "default_cache_max_vectors")]
    pub cache_max_vectors: u64,
}

/// Titan Text Embeddings V2 on-demand price (us-east-1, 2026).
/// 50,000 vectors are about 200 MB at 1024 dimensions, a fifth of what the
/// 120,000 FDB documents take themselves; past it the oldest texts go, and a
/// text that comes back costs one embedding call.
fn default_cache_max_vectors() -> u64 {
    50_000
}
fn default_price_per_1k_tokens() -> f64 {
    0.00002
}

fn default_model_id() -> String {
    "amazon.titan-embed-text-v2:0".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_secs() -> u64 {
    30
}
fn default_embed_timeout_secs() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    5
}
fn default_template_version() -> u32 {
    1
}
/// Four in flight keeps one instance well under default Bedrock quotas.
fn default_embed_concurrency() -> usize {
    4
}

impl Config {
    pub(super) fn validate_embed(&self) -> Result<(), ConfigError> {
        let e = &self.embed;
        if !(1..=8192).contains(&e.dimensions) {
            return Err(invalid("embed.dimensions", "must be between 1 and 8192"));
        }
        if e.provider == EmbedProvider::Bedrock {
            if e.model_id.starts_with("amazon.titan-embed-text-v2") && ![256, 512, 1024].contains(&e.dimensions) {
                return Err(invalid("embed.dimensions", "Titan Text Embeddings V2 supports 256, 512 or 1024"));
            }
            if e.model_id.is_empty() {
                return Err(invalid("embed.model_id", "must name a Bedrock model"));
            }
        }
        if let Some(url) = &e.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("embed.endpoint_url", "must be an http:// or https:// URL"));
        }
        if e.max_attempts == 0 {
            return Err(invalid("embed.max_attempts", "must be at least 1"));
        }
        if !(e.price_per_1k_tokens.is_finite() && e.price_per_1k_tokens >= 0.0) {
            return Err(invalid("embed.price_per_1k_tokens", "must be a non-negative number"));
        }
        if !(1..=64).contains(&e.concurrency) {
            return Err(invalid("embed.concurrency", "must be between 1 and 64"));
        }
        Ok(())
    }
}

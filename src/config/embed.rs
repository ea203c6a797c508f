//! `[embed]`: which model produces vectors, and how it is called.

use serde::Deserialize;

use super::{Config, ConfigError, Secret, invalid};

/// Which embedder produces vectors.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmbedProvider {
    /// Offline, deterministic hashed n-gram vectors: no network, no cost.
    Local,
    /// AWS Bedrock: Titan Text Embeddings V2 or Cohere Embed, by `embed.model_id`.
    Bedrock,
    /// An OpenAI-compatible `/v1/embeddings` endpoint (text-embeddings-inference,
    /// vLLM, Ollama, a gateway) at `embed.endpoint_url`.
    Openai,
    /// A sentence-transformers BERT model run inside drugsync (candle), from
    /// the directory `embed.model_path`: semantic vectors with no network.
    Model,
}

/// The request and reply shapes a model speaks, from provider and model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// The offline embedder.
    Local,
    /// Bedrock `amazon.titan-embed-text-v2*`: one text per call.
    Titan,
    /// Bedrock `cohere.embed-*`: up to 96 texts per call.
    Cohere {
        /// Embed v4 takes `output_dimension`; v3 answers 1024 dimensions.
        v4: bool,
    },
    /// OpenAI-compatible `/v1/embeddings`: a list of inputs per call.
    OpenAi,
    /// The embedded model: a batch per forward pass, cut in tokens.
    Model,
}

impl ModelFamily {
    /// The family of `model_id` under `provider`: the one place model ids
    /// are read. `None` for a Bedrock model drugsync does not speak.
    /// Inference profiles prefix the id (`us.cohere.embed-v4:0`) or are
    /// ARNs ending in it, so the id is matched anywhere in the string.
    pub fn of(provider: EmbedProvider, model_id: &str) -> Option<Self> {
        match provider {
            EmbedProvider::Local => Some(Self::Local),
            EmbedProvider::Openai => Some(Self::OpenAi),
            EmbedProvider::Model => Some(Self::Model),
            EmbedProvider::Bedrock if model_id.contains("cohere.embed-") => Some(Self::Cohere { v4: model_id.contains("cohere.embed-v4") }),
            EmbedProvider::Bedrock if model_id.contains("amazon.titan-embed-text-v2") => Some(Self::Titan),
            EmbedProvider::Bedrock => None,
        }
    }

    /// Most texts one call may carry.
    pub fn max_batch(self) -> usize {
        match self {
            Self::Local | Self::Titan => 1,
            Self::Cohere { .. } => 96,
            Self::OpenAi => 2048,
            Self::Model => 64,
        }
    }

    /// Default texts per call (`embed.batch_size`).
    pub fn default_batch(self) -> usize {
        match self {
            Self::OpenAi => 32,
            // Texts of a forward pass are padded to the longest: small batches waste less.
            Self::Model => 16,
            other => other.max_batch(),
        }
    }

    /// Default longest text in characters (`embed.max_input_chars`): Titan
    /// V2 takes 50,000 characters, Cohere on Bedrock 2,048; for a self-hosted
    /// model 8,192 is a guess below common context sizes (512 tokens of
    /// text-embeddings-inference's defaults is about 2,000: set it). The
    /// embedded model cuts in tokens instead (its `max_seq_length`), so it
    /// takes any length of characters.
    pub fn default_max_input_chars(self) -> usize {
        match self {
            Self::Model => usize::MAX,
            Self::Local | Self::Titan => 50_000,
            Self::Cohere { .. } => 2_048,
            Self::OpenAi => 8_192,
        }
    }

    /// On-demand USD per 1,000 input tokens (us-east-1, 2026) by default; a
    /// self-hosted model costs nothing per token.
    pub fn default_price_per_1k_tokens(self) -> f64 {
        match self {
            Self::Titan => 0.00002,
            Self::Cohere { .. } => 0.0001,
            Self::Local | Self::OpenAi | Self::Model => 0.0,
        }
    }
}

/// Embedding settings. Model, dimensions, normalisation and template version
/// are all part of every text hash, so changing any of them re-embeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// `local` (default, offline), `bedrock`, `openai` or `model`.
    pub provider: EmbedProvider,
    /// Model id: a Bedrock model (Titan V2, Cohere Embed), the model an
    /// OpenAI-compatible server serves, or the name of the embedded model
    /// (`sentence-transformers/all-MiniLM-L6-v2`). Part of every text hash:
    /// new weights under the same name need a new `template_version`.
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
    /// Bedrock: endpoint override (VPC endpoint, or a local fake in tests).
    /// OpenAI-compatible: the server's base URL (`/v1/embeddings` is added
    /// unless the URL already ends in `/embeddings`). `DRUGSYNC_EMBED_ENDPOINT_URL`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Bearer token for an OpenAI-compatible server; only from the
    /// environment (`DRUGSYNC_EMBED_API_KEY`), never the file.
    #[serde(skip)]
    pub api_key: Option<Secret>,
    /// The embedded model's directory (`embed.provider = "model"`): a
    /// sentence-transformers export with `model.safetensors`,
    /// `tokenizer.json`, `config.json`, `sentence_bert_config.json` and
    /// `1_Pooling/config.json`. Relative to the working directory.
    /// `DRUGSYNC_EMBED_MODEL_PATH`.
    #[serde(default)]
    pub model_path: Option<std::path::PathBuf>,
    /// Texts per call: Cohere up to 96 (default 96), OpenAI-compatible
    /// default 32; Titan takes one.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Longest text sent, in characters; a longer one is cut at the last
    /// whitespace before the limit (counted in `drugsync_embed_texts_cut_total`).
    /// Default by model, see [`ModelFamily::default_max_input_chars`].
    #[serde(default)]
    pub max_input_chars: Option<usize>,
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
    /// USD per 1,000 input tokens, for cost estimates; default by model
    /// ([`ModelFamily::default_price_per_1k_tokens`]).
    #[serde(default)]
    pub price_per_1k_tokens: Option<f64>,
    /// Most vectors kept in Redis's vector cache (by text hash), oldest out
    /// first; 0 keeps none. Each is 4 x dimensions bytes.
    #[serde(default = "default_cache_max_vectors")]
    pub cache_max_vectors: u64,
}

/// 50,000 vectors are about 200 MB at 1024 dimensions, a fifth of what the
/// 120,000 FDB documents take themselves; past it the oldest texts go, and a
/// text that comes back costs one embedding call.
fn default_cache_max_vectors() -> u64 {
    50_000
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

impl EmbedConfig {
    /// The request shapes the configured model speaks. Start-up validation
    /// refuses a Bedrock model id [`ModelFamily::of`] does not know, so on a
    /// loaded config this is the recognised family.
    pub fn family(&self) -> ModelFamily {
        ModelFamily::of(self.provider, &self.model_id).unwrap_or(ModelFamily::Titan)
    }

    /// Texts per call.
    pub fn texts_per_call(&self) -> usize {
        self.batch_size.unwrap_or_else(|| self.family().default_batch())
    }

    /// Longest text sent, in characters.
    pub fn input_char_limit(&self) -> usize {
        self.max_input_chars.unwrap_or_else(|| self.family().default_max_input_chars())
    }

    /// USD per 1,000 input tokens.
    pub fn price_per_1k(&self) -> f64 {
        self.price_per_1k_tokens.unwrap_or_else(|| self.family().default_price_per_1k_tokens())
    }
}

impl Config {
    pub(super) fn validate_embed(&self) -> Result<(), ConfigError> {
        let e = &self.embed;
        if !(1..=8192).contains(&e.dimensions) {
            return Err(invalid("embed.dimensions", "must be between 1 and 8192"));
        }
        let Some(family) = ModelFamily::of(e.provider, &e.model_id) else {
            return Err(invalid(
                "embed.model_id",
                format!(
                    "{:?} is not a Bedrock model drugsync speaks: use amazon.titan-embed-text-v2:0 or a Cohere Embed model (cohere.embed-english-v3, cohere.embed-multilingual-v3, cohere.embed-v4:0)",
                    e.model_id
                ),
            ));
        };
        match family {
            ModelFamily::Titan if ![256, 512, 1024].contains(&e.dimensions) => {
                return Err(invalid("embed.dimensions", "Titan Text Embeddings V2 supports 256, 512 or 1024"));
            }
            ModelFamily::Cohere { v4: false } if e.dimensions != 1024 => {
                return Err(invalid("embed.dimensions", "Cohere Embed v3 answers 1024 dimensions"));
            }
            ModelFamily::Cohere { v4: true } if ![256, 512, 1024, 1536].contains(&e.dimensions) => {
                return Err(invalid("embed.dimensions", "Cohere Embed v4 supports 256, 512, 1024 or 1536"));
            }
            ModelFamily::OpenAi if e.endpoint_url.is_none() => {
                return Err(invalid(
                    "embed.endpoint_url",
                    "the openai provider needs the server's URL (e.g. http://tei:8080), in the file or DRUGSYNC_EMBED_ENDPOINT_URL",
                ));
            }
            ModelFamily::OpenAi if e.model_id.is_empty() || e.model_id == default_model_id() => {
                return Err(invalid("embed.model_id", "name the model the OpenAI-compatible server serves (e.g. BAAI/bge-small-en-v1.5)"));
            }
            ModelFamily::Model if e.model_path.is_none() => {
                return Err(invalid(
                    "embed.model_path",
                    "the model provider needs the model's directory (tests/env/testenv.sh model installs all-MiniLM-L6-v2 in .testenv/models/all-MiniLM-L6-v2), in the file or DRUGSYNC_EMBED_MODEL_PATH",
                ));
            }
            ModelFamily::Model if e.model_id.is_empty() || e.model_id == default_model_id() => {
                return Err(invalid("embed.model_id", "name the embedded model (e.g. sentence-transformers/all-MiniLM-L6-v2)"));
            }
            ModelFamily::Model if e.max_input_chars.is_some() => {
                return Err(invalid(
                    "embed.max_input_chars",
                    "the embedded model cuts texts at its max_seq_length in tokens (sentence_bert_config.json): remove this setting",
                ));
            }
            _ => {}
        }
        if let Some(batch) = e.batch_size
            && !(1..=family.max_batch()).contains(&batch)
        {
            return Err(invalid("embed.batch_size", format!("must be between 1 and {} for this model", family.max_batch())));
        }
        if let Some(chars) = e.max_input_chars
            && !(1..=family.default_max_input_chars().max(50_000)).contains(&chars)
        {
            return Err(invalid("embed.max_input_chars", "must be at least 1 and at most the model's limit"));
        }
        if let Some(url) = &e.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("embed.endpoint_url", "must be an http:// or https:// URL"));
        }
        if e.max_attempts == 0 {
            return Err(invalid("embed.max_attempts", "must be at least 1"));
        }
        if !(e.price_per_1k().is_finite() && e.price_per_1k() >= 0.0) {
            return Err(invalid("embed.price_per_1k_tokens", "must be a non-negative number"));
        }
        if !(1..=64).contains(&e.concurrency) {
            return Err(invalid("embed.concurrency", "must be between 1 and 64"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_read_in_one_place() {
        use EmbedProvider::*;
        let cases = [
            (Bedrock, "amazon.titan-embed-text-v2:0", Some(ModelFamily::Titan)),
            (Bedrock, "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0", Some(ModelFamily::Titan)),
            (Bedrock, "us.cohere.embed-v4:0", Some(ModelFamily::Cohere { v4: true })),
            (Bedrock, "cohere.embed-multilingual-v3", Some(ModelFamily::Cohere { v4: false })),
            (Bedrock, "amazon.titan-embed-text-v1", None),
            (Bedrock, "anthropic.claude-3", None),
            (Openai, "BAAI/bge-small-en-v1.5", Some(ModelFamily::OpenAi)),
            (Local, "anything", Some(ModelFamily::Local)),
        ];
        for (provider, id, family) in cases {
            assert_eq!(ModelFamily::of(provider, id), family, "{provider:?} {id}");
        }
    }
}

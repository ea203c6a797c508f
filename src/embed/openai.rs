//! An OpenAI-compatible `/v1/embeddings` endpoint: the API that
//! text-embeddings-inference, vLLM, Ollama and most gateways serve for
//! self-hosted models.
//!
//! One call carries `embed.batch_size` texts (`input` as a list) and asks
//! for floats; the reply's `data[].index` puts the vectors back in order, and
//! `usage.prompt_tokens` counts the tokens when the server says (else they
//! are estimated). `dimensions` is not sent: most self-hosted models have
//! one size and some servers refuse the field; a vector of another size than
//! `embed.dimensions` stops drugsync with both sizes named.
//!
//! # Errors
//! Timeouts, connection failures, 408, 429 and 5xx are retried here up to
//! `embed.max_attempts` (the shared backoff, from 200 ms doubling to 10 s,
//! with jitter), then
//! [`EmbedError::Unavailable`]. 400, 413 and 422 are the text's
//! ([`EmbedError::TextRejected`]: a call of several texts is then tried text
//! by text, and the refused one is quarantined). 401/403 and 404 stop with
//! what to check. The bearer token comes only from `DRUGSYNC_EMBED_API_KEY`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedded, Embedder};
use crate::backoff::Backoff;
use crate::config::{EmbedConfig, Secret};
use crate::document::EmbeddingSpace;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    api_key: Option<Secret>,
    space: EmbeddingSpace,
    batch: usize,
    max_input_chars: usize,
    max_attempts: u32,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

impl OpenAiEmbedder {
    /// A client for `embed.endpoint_url` (validated at start-up to be set).
    pub fn from_config(config: &EmbedConfig) -> Result<Self, EmbedError> {
        let base = config.endpoint_url.as_deref().unwrap_or_default().trim_end_matches('/');
        let url = if base.ends_with("/embeddings") { base.to_owned() } else { format!("{base}/v1/embeddings") };
        // The same rustls + aws-lc stack as MySQL, Redis and the AWS SDK, trusting the system's roots.
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            roots.add(cert).ok();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected(format!("TLS set-up failed: {e}"), "a TLS library problem; report it"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| rejected(format!("HTTP client set-up failed: {e}"), "a TLS library problem; report it"))?;
        Ok(Self {
            client,
            url,
            api_key: config.api_key.clone(),
            space: super::space_of(config),
            batch: config.texts_per_call(),
            max_input_chars: config.input_char_limit(),
            max_attempts: config.max_attempts.max(1),
        })
    }

    async fn attempt(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        let body = serde_json::to_vec(&Request { model: &self.space.model, input: texts, encoding_format: "float" })
            .map_err(|e| EmbedError::BadResponse(format!("cannot encode request: {e}")))?;
        let mut request = self.client.post(&self.url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let mut response = request.send().await.map_err(|e| EmbedError::Unavailable(format!("{}: {}", self.url, without_url(&e))))?;
        let status = response.status();
        // Read at most a sane answer's size: a server that streams on (or a
        // proxy's endless error page) must not grow the process.
        let limit = reply_limit(texts.len(), self.space.dimensions);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| EmbedError::Unavailable(format!("{}: {}", self.url, without_url(&e))))? {
            if body.len() + chunk.len() > limit {
                return Err(EmbedError::Unavailable(format!("{} answered more than {limit} bytes for {} texts", self.url, texts.len())));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message =
                format!("{} answered {status}: {}", self.url, crate::mysql::error::truncate(&String::from_utf8_lossy(&body), 300));
            return Err(match status.as_u16() {
                408 | 429 | 500..=599 => EmbedError::Unavailable(message),
                400 | 413 | 422 => EmbedError::TextRejected(message),
                401 | 403 => rejected(message, "set DRUGSYNC_EMBED_API_KEY to a token the embedding server accepts"),
                404 => rejected(message, "check embed.endpoint_url (the server's base URL) and embed.model_id (a model it serves)"),
                _ => rejected(message, "see the server's answer above"),
            });
        }
        let mut response: Response = serde_json::from_slice(&body)
            .map_err(|e| EmbedError::Unavailable(format!("{} answered something that is not an embeddings response: {e}", self.url)))?;
        response.data.sort_by_key(|item| item.index);
        let mut vectors: Vec<Vec<f32>> = response.data.into_iter().map(|item| item.embedding).collect();
        if self.space.normalize {
            vectors.iter_mut().for_each(|v| super::normalise(v));
        }
        Ok(Embedded { vectors, tokens: response.usage.and_then(|u| u.prompt_tokens), cut: 0 })
    }
}

impl Embedder for OpenAiEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    fn max_input_chars(&self) -> usize {
        self.max_input_chars
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        let mut backoff = Backoff::between(Duration::from_millis(200), Duration::from_secs(10));
        let mut attempt = 1;
        loop {
            match self.attempt(texts).await {
                Err(EmbedError::Unavailable(message)) if attempt < self.max_attempts => {
                    tracing::debug!(%message, attempt, "embedding call failed; retrying");
                    tokio::time::sleep(backoff.step()).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

fn rejected(message: String, hint: &'static str) -> EmbedError {
    EmbedError::Rejected { message, hint }
}

/// reqwest's error text, without the URL it repeats (the caller names it once).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "no answer within embed.timeout_secs"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}
/// The most bytes one answer may take: `texts` vectors of `dimensions`
/// floats written as JSON (at most about 25 characters each), four times
/// over for names and whitespace, and never under 1 MB (error pages).
fn reply_limit(texts: usize, dimensions: usize) -> usize {
    (texts.max(1) * dimensions.max(1) * 25 * 4).max(1 << 20)
}

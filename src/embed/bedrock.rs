//! AWS Bedrock Titan Text Embeddings V2 through `aws-sdk-bedrockruntime`.
//!
//! # Error handling
//! The SDK's standard retry policy retries throttling and 5xx answers with
//! backoff up to `embed.max_attempts`; what is still failing after that is
//! classed here: throttling/unavailability is [`EmbedError::Unavailable`]
//! (the pipeline retries the batch later, the position does not move),
//! anything the service rejected is [`EmbedError::Rejected`] with a hint.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::primitives::Blob;
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder, Embedding};
use crate::config::EmbedConfig;
use crate::document::EmbeddingSpace;

/// Titan V2 accepts at most 50,000 characters per text.
pub const MAX_INPUT_CHARS: usize = 50_000;

/// A Bedrock InvokeModel client for one model.
#[derive(Debug, Clone)]
pub struct BedrockEmbedder {
    client: aws_sdk_bedrockruntime::Client,
    space: EmbeddingSpace,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
    dimensions: usize,
    normalize: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: u64,
}

impl BedrockEmbedder {
    /// Uses the default AWS credential chain (env, profile, ECS task role, IMDS).
    pub async fn from_default_chain(config: &EmbedConfig) -> Self {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts));
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        Self::from_sdk_config(&loader.load().await, config)
    }

    /// Builds on an existing SDK config (tests pass static credentials and a local endpoint).
    pub fn from_sdk_config(sdk: &SdkConfig, config: &EmbedConfig) -> Self {
        // Each attempt is bounded: a call that never answers must not hold the writer.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(config.timeout_secs))
            .build();
        let mut builder = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
            .timeout_config(timeouts);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Self {
            client: aws_sdk_bedrockruntime::Client::from_conf(builder.build()),
            space: EmbeddingSpace {
                model: config.model_id.clone(),
                dimensions: config.dimensions,
                normalize: config.normalize,
                template_version: config.template_version,
            },
        }
    }
}

impl Embedder for BedrockEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    async fn embed(&self, text: &str) -> Result<Embedding, EmbedError> {
        let input_text = match text.char_indices().nth(MAX_INPUT_CHARS) {
            Some((cut, _)) => {
                tracing::warn!(chars = text.chars().count(), "embedding text truncated to {MAX_INPUT_CHARS} characters");
                &text[..cut]
            }
            None => text,
        };
        let body = serde_json::to_vec(&TitanRequest { input_text, dimensions: self.space.dimensions, normalize: self.space.normalize })
            .map_err(|e| EmbedError::BadResponse(format!("cannot encode request: {e}")))?;
        let output = self
            .client
            .invoke_model()
            .model_id(&self.space.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(classify_sdk_error)?;
        // A garbled answer is the service's hiccup, not this text's fault: retried.
        let response: TitanResponse = serde_json::from_slice(output.body().as_ref())
            .map_err(|e| EmbedError::Unavailable(format!("an answer that is not a Titan embedding response: {e}")))?;
        Ok(Embedding { vector: response.embedding, tokens: response.input_text_token_count })
    }
}

fn classify_sdk_error(err: SdkError<InvokeModelError>) -> EmbedError {
    let message = format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or(&err.to_string()));
    match &err {
        SdkError::ServiceError(service) => match service.err() {
            InvokeModelError::ThrottlingException(_)
            | InvokeModelError::ServiceUnavailableException(_)
            | InvokeModelError::InternalServerException(_)
            | InvokeModelError::ModelNotReadyException(_)
            | InvokeModelError::ModelTimeoutException(_) => EmbedError::Unavailable(message),
            InvokeModelError::AccessDeniedException(_) => EmbedError::Rejected {
                message,
                hint: "grant bedrock:InvokeModel on the model to the instance/task role and enable model access in the Bedrock console",
            },
            InvokeModelError::ResourceNotFoundException(_) => {
                EmbedError::Rejected { message, hint: "check embed.model_id and embed.region: the model must be available in that region" }
            }
            InvokeModelError::ServiceQuotaExceededException(_) => {
                EmbedError::Rejected { message, hint: "raise the Bedrock quota in Service Quotas or lower embed.concurrency" }
            }
            // The request is built the same way for every text, and the
            // dimensions are validated at start-up: what fails validation is this text.
            InvokeModelError::ValidationException(_) => EmbedError::TextRejected(message),
            InvokeModelError::ModelErrorException(_) => {
                EmbedError::Rejected { message, hint: "check embed.dimensions and embed.model_id; the request does not fit the model" }
            }
            _ if service.raw().status().as_u16() >= 500 || service.raw().status().as_u16() == 429 => EmbedError::Unavailable(message),
            _ => EmbedError::Rejected { message, hint: "see the Bedrock error code above" },
        },
        // Timeouts, connection failures, DNS: the network, not the request.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => EmbedError::Unavailable(message),
        _ => EmbedError::Rejected { message, hint: "the request could not be built or signed; check AWS credentials and region" },
    }
}

//! AWS Bedrock InvokeModel through `aws-sdk-bedrockruntime`, for the two
//! embedding families it serves drugsync: Titan Text Embeddings V2 (one
//! text per call; `inputText`, `dimensions`, `normalize`; the reply counts
//! tokens) and Cohere Embed (up to 96 texts per call; `texts`,
//! `input_type = search_document` for documents and `search_query` for
//! `drugsync search`'s queries, `truncate = END`; v4 also
//! `output_dimension`; the reply does not count tokens, so they are
//! estimated). Cohere's vectors are normalised here when `embed.normalize`
//! asks for it: Titan does that itself.
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

use super::{EmbedError, Embedded, Embedder};
use crate::config::{EmbedConfig, ModelFamily};
use crate::document::EmbeddingSpace;

/// A Bedrock InvokeModel client for one model.
#[derive(Debug, Clone)]
pub struct BedrockEmbedder {
    client: aws_sdk_bedrockruntime::Client,
    space: EmbeddingSpace,
    family: ModelFamily,
    batch: usize,
    max_input_chars: usize,
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
    input_text_token_count: Option<u64>,
}

#[derive(Serialize)]
struct CohereRequest<'a> {
    texts: &'a [&'a str],
    input_type: &'static str,
    truncate: &'static str,
    embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<usize>,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
}

/// `embeddings` is a list of vectors, or by type when `embedding_types` was sent.
#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f32>>),
    ByType { float: Vec<Vec<f32>> },
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
            family: config.family(),
            batch: config.texts_per_call(),
            max_input_chars: config.input_char_limit(),
            space: super::space_of(config),
        }
    }
}

impl Embedder for BedrockEmbedder {
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
        self.invoke(texts, "search_document").await
    }

    /// Cohere embeds a query as `search_query`; Titan has no input types.
    async fn embed_query_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        self.invoke(texts, "search_query").await
    }
}

impl BedrockEmbedder {
    /// One InvokeModel call for `texts`; `input_type` is Cohere's (Titan ignores it).
    async fn invoke(&self, texts: &[&str], input_type: &'static str) -> Result<Embedded, EmbedError> {
        let encoded = match self.family {
            ModelFamily::Cohere { v4 } => serde_json::to_vec(&CohereRequest {
                texts,
                input_type,
                truncate: "END",
                embedding_types: ["float"],
                output_dimension: v4.then_some(self.space.dimensions),
            }),
            _ => match texts {
                [input_text] => {
                    serde_json::to_vec(&TitanRequest { input_text, dimensions: self.space.dimensions, normalize: self.space.normalize })
                }
                _ => return Err(EmbedError::BadResponse(format!("Titan takes one text per call, not {}", texts.len()))),
            },
        };
        let body = encoded.map_err(|e| EmbedError::BadResponse(format!("cannot encode request: {e}")))?;
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
        let garbled =
            |e: serde_json::Error| EmbedError::Unavailable(format!("an answer that is not a {} embedding response: {e}", self.space.model));
        match self.family {
            ModelFamily::Cohere { .. } => {
                let response: CohereResponse = serde_json::from_slice(output.body().as_ref()).map_err(garbled)?;
                let mut vectors = match response.embeddings {
                    CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
                };
                if self.space.normalize {
                    vectors.iter_mut().for_each(|v| super::normalise(v));
                }
                Ok(Embedded { vectors, tokens: None, cut: 0 })
            }
            _ => {
                let response: TitanResponse = serde_json::from_slice(output.body().as_ref()).map_err(garbled)?;
                Ok(Embedded { vectors: vec![response.embedding], tokens: response.input_text_token_count, cut: 0 })
            }
        }
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

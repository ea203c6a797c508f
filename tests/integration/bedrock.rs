//! The real Bedrock SDK client against a local fake of the InvokeModel API.

use drugsync::config::{EmbedConfig, EmbedProvider};
use drugsync::embed::{BedrockEmbedder, EmbedError, EmbedStats, Embedder};
use drugsync::error::Classify;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn embed_config(endpoint: &str, max_attempts: u32) -> EmbedConfig {
    EmbedConfig {
        normalize: true,
        max_attempts,
        timeout_secs: 1,
        breaker_failures: 5,
        ..crate::common::embed_config(EmbedProvider::Bedrock, "amazon.titan-embed-text-v2:0", 256, endpoint)
    }
}

const INVOKE_PATH: &str = r"^/model/amazon\.titan-embed-text-v2(%3A|:)0/invoke$";

#[tokio::test]
async fn sends_titan_request_and_parses_the_vector() {
    let server = MockServer::start().await;
    let vector: Vec<f32> = (0..256).map(|i| i as f32 / 256.0).collect();
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": 7})))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 1));
    let result = embedder.embed("LIPITOR 10 MG TABLET | ATORVASTATIN").await.unwrap();
    assert_eq!(result.vector, vector);
    assert_eq!(result.tokens, 7);

    let requests = server.received_requests().await.unwrap();
    let request = &requests[0];
    assert!(request.url.path().starts_with("/model/amazon.titan-embed-text-v2"), "{}", request.url);
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, serde_json::json!({"inputText": "LIPITOR 10 MG TABLET | ATORVASTATIN", "dimensions": 256, "normalize": true}));
    let auth = request.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"), "signed with SigV4: {auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert_eq!(request.headers.get("content-type").unwrap(), "application/json");
}

#[tokio::test]
async fn a_rejected_request_is_a_typed_definite_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-amzn-errortype", "ValidationException")
                .set_body_json(serde_json::json!({"message": "Malformed input request"})),
        )
        .mount(&server)
        .await;
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 3));
    let err = embedder.embed("x").await.unwrap_err();
    assert!(matches!(err, EmbedError::TextRejected(_)), "a validation error is about this text: {err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("Malformed input request"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "a validation error is not retried");
}

#[tokio::test]
async fn throttling_is_retried_then_reported_as_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-errortype", "ThrottlingException")
                .set_body_json(serde_json::json!({"message": "Too many requests"})),
        )
        .mount(&server)
        .await;
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 2));
    let err = embedder.embed("x").await.unwrap_err();
    assert!(matches!(err, EmbedError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "the SDK retried once (max_attempts = 2)");
}

#[tokio::test]
async fn a_vector_of_the_wrong_size_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"embedding": [0.5, 0.5], "inputTextTokenCount": 1})))
        .mount(&server)
        .await;
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 1));
    let stats = drugsync::embed::EmbedStats::default();
    let err = drugsync::embed::embed_distinct(&embedder, &["x"], 1, &stats).await.unwrap_err();
    assert!(matches!(err, EmbedError::BadResponse(_)), "{err:?}");
}

/// Titan V2 takes at most 50,000 characters: longer text (here multi-byte,
/// so a byte cut would split a character) is cut to exactly that, not refused.
#[tokio::test]
async fn oversized_text_is_cut_to_the_model_limit_on_a_character_boundary() {
    let server = MockServer::start().await;
    let vector: Vec<f32> = vec![0.0625; 256];
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": 8192})))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 1));
    let limit = embedder.max_input_chars();
    assert_eq!(limit, 50_000);
    let text = "é".repeat(limit + 1234);
    let stats = EmbedStats::default();
    drugsync::embed::embed_each(&embedder, &[text.as_str()], 1, &stats).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    let sent = body["inputText"].as_str().unwrap();
    assert_eq!(sent.chars().count(), limit);
    assert!(sent.chars().all(|c| c == 'é'));
    assert_eq!(stats.texts_cut.load(std::sync::atomic::Ordering::Relaxed), 1, "the cut is counted");
}

/// A call that never answers is bounded by `embed.timeout_secs` per attempt
/// and comes back as a transient error, instead of holding the writer.
#[tokio::test]
async fn a_call_that_does_not_answer_times_out_as_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(600)))
        .mount(&server)
        .await;
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 2));
    let started = std::time::Instant::now();
    let err = embedder.embed("x").await.unwrap_err();
    assert!(matches!(err, EmbedError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "bounded by the per-attempt deadline, not the server");
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "each attempt timed out and was retried");
}

/// Records when each request arrived, then answers like Titan after `delay`.
struct Timed {
    at: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    delay: std::time::Duration,
}

impl wiremock::Respond for Timed {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.at.lock().unwrap().push(std::time::Instant::now());
        let vector: Vec<f32> = vec![0.0625; 256];
        ResponseTemplate::new(200).set_delay(self.delay).set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": 3}))
    }
}

/// With a quota of 10 calls per 2 s window and 8 calls allowed in flight
/// against an endpoint taking 80 ms a call, the endpoint never sees more
/// than 10 calls in any 2 s window, counted on its side.
#[tokio::test]
async fn a_configured_quota_is_never_exceeded_as_the_endpoint_counts() {
    use drugsync::embed::Embedder as _;
    let server = MockServer::start().await;
    let at = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(Timed { at: at.clone(), delay: std::time::Duration::from_millis(80) })
        .mount(&server)
        .await;
    let window = std::time::Duration::from_secs(2);
    let embedder = drugsync::embed::guarded::Guarded::new(
        BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 1)),
        drugsync::embed::quota::Quota::per_window(window, 10, 0),
        drugsync::embed::breaker::CircuitBreaker::new(5, std::time::Duration::from_secs(30)),
    );
    let texts: Vec<String> = (0..35).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let stats = drugsync::embed::EmbedStats::default();
    let vectors = drugsync::embed::embed_distinct(&embedder, &refs, 8, &stats).await.unwrap();
    assert_eq!(vectors.len(), 35);
    assert_eq!(embedder.space().dimensions, 256);
    let at = at.lock().unwrap().clone();
    assert_eq!(at.len(), 35);
    let busiest = at.iter().map(|start| at.iter().filter(|t| **t >= *start && t.duration_since(*start) < window).count()).max().unwrap();
    assert!(busiest <= 10, "the endpoint saw {busiest} calls in one window of the quota's 10");
}

/// An endpoint that keeps failing is called `breaker_failures` times in a
/// row, then not at all for the cooldown: the rest fail at once, transient.
#[tokio::test]
async fn a_failing_endpoint_opens_the_circuit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(INVOKE_PATH))
        .respond_with(ResponseTemplate::new(500).insert_header("x-amzn-errortype", "InternalServerException"))
        .mount(&server)
        .await;
    let embedder = drugsync::embed::guarded::Guarded::new(
        BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &embed_config(&server.uri(), 1)),
        drugsync::embed::quota::Quota::per_minute(0, 0),
        drugsync::embed::breaker::CircuitBreaker::new(3, std::time::Duration::from_secs(60)),
    );
    use drugsync::embed::Embedder as _;
    for i in 0..10 {
        let err = embedder.embed(&format!("text {i}")).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        if i >= 3 {
            assert!(err.to_string().contains("circuit open"), "call {i}: {err}");
        }
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "only the calls before the circuit opened reached the endpoint");
}

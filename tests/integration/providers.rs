//! Cohere Embed on Bedrock and an OpenAI-compatible `/v1/embeddings`
//! server, each against a fake endpoint started by the test: their request
//! shapes, batching, input limits, errors, and the binary with each in the
//! pipeline ending equal to MySQL (the oracle).

use crate::common;
use crate::common::on_each_server;

use std::sync::{Arc, Mutex};

use common::{TEST_DIMENSIONS, TestEnv, embed_config};
use drugsync::config::{EmbedProvider, Secret};
use drugsync::embed::{BedrockEmbedder, EmbedError, EmbedStats, Embedder, LocalEmbedder, OpenAiEmbedder, Outcome, embed_each};
use std::sync::atomic::Ordering::Relaxed;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Every request body the fake received, parsed.
type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// The vector a fake answers for `text`: the offline embedder's, which the oracle also computes.
fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    LocalEmbedder::new(dimensions, 1).vector(text)
}

/// Cohere Embed on Bedrock: `texts` in, `embeddings` out (by type, as
/// `embedding_types` asks); a text containing "REFUSE" fails the whole call
/// with a ValidationException, as Bedrock does.
struct FakeCohere {
    dimensions: usize,
    seen: Seen,
}

impl Respond for FakeCohere {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        self.seen.lock().unwrap().push(body.clone());
        let texts: Vec<&str> = body["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        if texts.iter().any(|t| t.contains("REFUSE")) {
            return ResponseTemplate::new(400)
                .insert_header("x-amzn-errortype", "ValidationException")
                .set_body_json(serde_json::json!({"message": "Malformed input request: text refused"}));
        }
        let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| vector(t, self.dimensions)).collect();
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "fake", "response_type": "embeddings_by_type", "texts": texts, "embeddings": {"float": embeddings}
        }))
    }
}

/// An OpenAI-compatible server: `input` in, `data` out in reverse order
/// (clients must use `index`), `usage.prompt_tokens` three per text; 400 for
/// a text containing "REFUSE"; 401 without the expected bearer token.
struct FakeOpenAi {
    dimensions: usize,
    token: Option<&'static str>,
    seen: Seen,
}

impl Respond for FakeOpenAi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        self.seen.lock().unwrap().push(body.clone());
        if let Some(token) = self.token {
            let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if auth != format!("Bearer {token}") {
                return ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": {"message": "bad token"}}));
            }
        }
        let inputs: Vec<&str> = body["input"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        if inputs.iter().any(|t| t.contains("REFUSE")) {
            return ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {"message": "input refused"}}));
        }
        let mut data: Vec<serde_json::Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"object": "embedding", "index": i, "embedding": vector(t, self.dimensions)}))
            .collect();
        data.reverse();
        let tokens = 3 * inputs.len();
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        }))
    }
}

fn kinds(outcomes: &[Outcome]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Vector(_) => "vector",
            Outcome::Refused(_) => "refused",
            Outcome::Unavailable(_) => "unavailable",
        })
        .collect()
}

#[tokio::test]
async fn cohere_takes_96_search_documents_per_call_and_cuts_texts_at_2048_characters() {
    let server = MockServer::start().await;
    let seen = Seen::default();
    Mock::given(method("POST"))
        .and(path_regex(r"^/model/cohere\.embed-english-v3/invoke$"))
        .respond_with(FakeCohere { dimensions: 1024, seen: seen.clone() })
        .mount(&server)
        .await;
    let config = embed_config(EmbedProvider::Bedrock, "cohere.embed-english-v3", 1024, &server.uri());
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &config);
    assert_eq!((embedder.max_batch(), embedder.max_input_chars()), (96, 2048));

    let mut texts: Vec<String> = (0..200).map(|i| format!("DRUG {i} 10 MG TABLET")).collect();
    texts.push("LONG WORDS ".repeat(300));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let stats = EmbedStats::default();
    let out = embed_each(&embedder, &refs, 2, &stats).await.unwrap();

    let bodies = seen.lock().unwrap().clone();
    let sizes: Vec<usize> = bodies.iter().map(|b| b["texts"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [96, 96, 9], "201 texts in calls of at most 96");
    for body in &bodies {
        assert_eq!(body["input_type"], "search_document");
        assert_eq!(body["truncate"], "END");
        assert!(body.get("output_dimension").is_none(), "v3 has one size");
    }
    let long_sent = bodies[2]["texts"][8].as_str().unwrap();
    assert!(long_sent.chars().count() <= 2048 && long_sent.starts_with("LONG WORDS"), "{}", long_sent.len());
    assert_eq!(stats.texts_cut.load(Relaxed), 1);
    for (i, outcome) in out.iter().take(200).enumerate() {
        assert!(matches!(outcome, Outcome::Vector(v) if *v == vector(&texts[i], 1024)), "text {i} got its own vector");
    }
    assert_eq!((stats.calls(), stats.tokens.load(Relaxed)), (3, 0), "Cohere's reply has no token count");
    assert!(stats.tokens_estimated.load(Relaxed) > 0, "so the tokens are estimated");
}

/// `drugsync search` embeds its question as Cohere's `search_query`, the
/// documents stay `search_document`; Titan has no input type.
#[tokio::test]
async fn a_search_query_is_embedded_as_cohere_search_query() {
    let server = MockServer::start().await;
    let seen = Seen::default();
    Mock::given(method("POST")).respond_with(FakeCohere { dimensions: 1024, seen: seen.clone() }).mount(&server).await;
    let config = embed_config(EmbedProvider::Bedrock, "cohere.embed-english-v3", 1024, &server.uri());
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &config);
    let query = embedder.embed_query("cholesterol lowering tablet").await.unwrap();
    assert_eq!(query, vector("cholesterol lowering tablet", 1024));
    embedder.embed("ATORVASTATIN 10 MG TABLET").await.unwrap();
    let bodies = seen.lock().unwrap().clone();
    let kinds: Vec<&str> = bodies.iter().map(|b| b["input_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["search_query", "search_document"]);
}

#[tokio::test]
async fn a_cohere_call_refused_for_one_text_refuses_only_that_text_and_v4_is_asked_for_its_size() {
    let server = MockServer::start().await;
    let seen = Seen::default();
    Mock::given(method("POST")).respond_with(FakeCohere { dimensions: 256, seen: seen.clone() }).mount(&server).await;
    let config = embed_config(EmbedProvider::Bedrock, "cohere.embed-v4:0", 256, &server.uri());
    let embedder = BedrockEmbedder::from_sdk_config(&crate::common::aws_sdk_config(), &config);
    let stats = EmbedStats::default();
    let out = embed_each(&embedder, &["A 1 MG", "B 2 MG", "REFUSE ME", "C 3 MG"], 1, &stats).await.unwrap();
    assert_eq!(kinds(&out), ["vector", "vector", "refused", "vector"]);
    assert_eq!(stats.calls(), 5, "one call of four refused, then each text alone");
    assert!(seen.lock().unwrap().iter().all(|b| b["output_dimension"] == 256), "v4 is told the configured size");
}

#[tokio::test]
async fn openai_compatible_batches_orders_by_index_counts_reported_tokens_and_sends_the_token() {
    let server = MockServer::start().await;
    let seen = Seen::default();
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeOpenAi { dimensions: 64, token: Some("sk-s3cret-token"), seen: seen.clone() })
        .mount(&server)
        .await;
    let mut config = embed_config(EmbedProvider::Openai, "BAAI/bge-small-en-v1.5", 64, &server.uri());
    config.batch_size = Some(10);
    config.api_key = Some(Secret::new("sk-s3cret-token"));
    let embedder = OpenAiEmbedder::from_config(&config).unwrap();
    let texts: Vec<String> = (0..25).map(|i| format!("DRUG {i} 5 MG CAPSULE")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let stats = EmbedStats::default();
    let out = embed_each(&embedder, &refs, 2, &stats).await.unwrap();
    for (i, outcome) in out.iter().enumerate() {
        assert!(matches!(outcome, Outcome::Vector(v) if *v == vector(&texts[i], 64)), "text {i} got its own vector");
    }
    let bodies = seen.lock().unwrap().clone();
    let sizes: Vec<usize> = bodies.iter().map(|b| b["input"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert!(bodies.iter().all(|b| b["model"] == "BAAI/bge-small-en-v1.5" && b["encoding_format"] == "float"));
    assert_eq!((stats.calls(), stats.tokens.load(Relaxed), stats.tokens_estimated.load(Relaxed)), (3, 75, 0), "tokens as reported");

    let refused = embed_each(&embedder, &["X 1", "REFUSE", "Y 2"], 1, &stats).await.unwrap();
    assert_eq!(kinds(&refused), ["vector", "refused", "vector"]);

    config.api_key = Some(Secret::new("wrong"));
    let err = OpenAiEmbedder::from_config(&config).unwrap().embed("X").await.unwrap_err();
    assert!(matches!(err, EmbedError::Rejected { .. }) && err.to_string().contains("DRUGSYNC_EMBED_API_KEY"), "{err}");
}

#[tokio::test]
async fn openai_compatible_retries_throttling_and_names_a_wrong_size() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(429)).up_to_n_times(2).mount(&server).await;
    Mock::given(method("POST")).respond_with(FakeOpenAi { dimensions: 32, token: None, seen: Seen::default() }).mount(&server).await;
    let mut config = embed_config(EmbedProvider::Openai, "nomic-embed-text", 64, &format!("{}/v1/embeddings", server.uri()));
    config.max_attempts = 3;
    let embedder = OpenAiEmbedder::from_config(&config).unwrap();
    let stats = EmbedStats::default();
    let err = embed_each(&embedder, &["A"], 1, &stats).await.unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "two throttled attempts, then the answer");
    let message = err.to_string();
    assert!(message.contains("nomic-embed-text") && message.contains("32 dimensions") && message.contains("64"), "{message}");
}

/// A server that answers without end (or a proxy's endless page) must not
/// grow the process: an answer past any sane size is the service failing
/// this time, not a body to keep reading.
#[tokio::test]
async fn an_openai_compatible_answer_past_a_sane_size_is_not_read_on() {
    let server = MockServer::start().await;
    let endless = vec![b' '; 3 << 20];
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_raw(endless, "application/json")).mount(&server).await;
    let config = embed_config(EmbedProvider::Openai, "nomic-embed-text", 8, &format!("{}/v1/embeddings", server.uri()));
    let embedder = OpenAiEmbedder::from_config(&config).unwrap();
    let outcomes = embed_each(&embedder, &["A"], 1, &EmbedStats::default()).await.unwrap();
    let Outcome::Unavailable(e) = &outcomes[0] else { panic!("{:?}", kinds(&outcomes)) };
    assert!(e.to_string().contains("more than"), "{e}");
}

/// The binary with `provider` in the pipeline: the index ends equal to the
/// oracle, with fewer calls than texts.
async fn pipeline_with(
    flavour: crate::common::Flavour,
    name: &str,
    config_for: impl Fn(&TestEnv, &str) -> String,
    mount: impl AsyncFnOnce(&MockServer, Seen),
) {
    let mut env = TestEnv::new(flavour, name, 400).await;
    let server = MockServer::start().await;
    let seen = Seen::default();
    mount(&server, seen.clone()).await;
    let config = config_for(&env, &server.uri());
    env.use_config(config.clone());
    let mut child = env.binary_with_aws(&config, "run.log").env("DRUGSYNC_EMBED_API_KEY", "sk-s3cret-token").arg("run").spawn().unwrap();
    env.wait_caught_up().await;
    env.exec(&["UPDATE rgcnseq4 SET STR60 = CONCAT(COALESCE(STR60, ''), ' B') WHERE GCN_SEQNO % 4 = 0"]).await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    let bodies = seen.lock().unwrap().clone();
    let texts: usize = bodies.iter().map(|b| b.get("texts").or(b.get("input")).and_then(|t| t.as_array()).map_or(0, Vec::len)).sum();
    assert!(bodies.len() < texts, "batched: {} calls for {texts} texts", bodies.len());
    assert!(child.try_wait().unwrap().is_none());
    child.kill().ok();
    child.wait().ok();
}

on_each_server! {
    async fn the_binary_with_cohere_ends_equal_to_mysql(flavour) {
        let config_for = |env: &TestEnv, endpoint: &str| {
            env.bedrock_config(endpoint)
                .replacen("model_id = \"amazon.titan-embed-text-v2:0\"", "model_id = \"cohere.embed-english-v3\"", 1)
                .replacen("dimensions = 256", "dimensions = 1024", 1)
                .replacen("normalize = true", "normalize = false", 1)
        };
        let mount = async |server: &MockServer, seen: Seen| {
            Mock::given(method("POST")).respond_with(FakeCohere { dimensions: 1024, seen }).mount(server).await;
        };
        pipeline_with(flavour, "cohere_pipeline", config_for, mount).await;
    }
}

on_each_server! {
    async fn the_binary_with_an_openai_compatible_server_ends_equal_to_mysql(flavour) {
        let config_for = |env: &TestEnv, endpoint: &str| {
            let text = env
                .config_text
                .replacen("provider = \"local\"", &format!("provider = \"openai\"\nendpoint_url = \"{endpoint}\"\nbatch_size = 16"), 1)
                .replacen("model_id = \"amazon.titan-embed-text-v2:0\"", "model_id = \"BAAI/bge-small-en-v1.5\"", 1)
                .replacen("normalize = true", "normalize = false", 1);
            assert!(text.contains("openai") && text.contains("bge-small") && text.contains(&format!("dimensions = {TEST_DIMENSIONS}")));
            text
        };
        let mount = async |server: &MockServer, seen: Seen| {
            Mock::given(method("POST"))
                .and(path("/v1/embeddings"))
                .respond_with(FakeOpenAi { dimensions: TEST_DIMENSIONS, token: Some("sk-s3cret-token"), seen })
                .mount(server)
                .await;
        };
        pipeline_with(flavour, "openai_pipeline", config_for, mount).await;
    }
}

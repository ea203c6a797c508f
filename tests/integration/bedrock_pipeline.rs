//! The binary with Bedrock in the pipeline, against a fake InvokeModel
//! endpoint that misbehaves the ways Bedrock does: bursts of throttling,
//! 500s, calls that never answer, malformed JSON. The index must end equal
//! to MySQL (the oracle), and a vector of the wrong size is never written.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::TestEnv;
use drugsync::embed::LocalEmbedder;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Titan's answer for a text: the offline embedder's vector at 256
/// dimensions, so the oracle knows what each document's vector must be.
fn titan_answer(request: &Request, dimensions: usize) -> ResponseTemplate {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let text = body["inputText"].as_str().unwrap();
    let vector = LocalEmbedder::new(dimensions, 1).vector(text);
    ResponseTemplate::new(200).set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": 4}))
}

/// Every call is numbered; in each 30, calls in a fault's stretch get that
/// fault (a burst of 4 throttles, 2 server errors, a timeout, a garbled
/// answer), the rest a good answer.
struct Faulty {
    calls: Arc<AtomicU64>,
}

impl Respond for Faulty {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        match n % 30 {
            // A burst of throttling.
            0..=3 => ResponseTemplate::new(429)
                .insert_header("x-amzn-errortype", "ThrottlingException")
                .set_body_json(serde_json::json!({"message": "Too many requests, please wait before trying again."})),
            // Server errors.
            10..=11 => ResponseTemplate::new(500)
                .insert_header("x-amzn-errortype", "InternalServerException")
                .set_body_json(serde_json::json!({"message": "internal"})),
            // A call that never answers in time (embed.timeout_secs = 1).
            15 => titan_answer(request, 256).set_delay(Duration::from_secs(5)),
            // Malformed JSON.
            20 => ResponseTemplate::new(200).set_body_raw("{\"embedding\": [0.1, ", "application/json"),
            _ => titan_answer(request, 256),
        }
    }
}

fn bedrock_env_config(env: &TestEnv, endpoint: &str) -> String {
    env.bedrock_config(endpoint)
        .replacen("\ntimeout_secs = 30", "\ntimeout_secs = 1", 1)
        // The faults come in bursts: the breaker would only slow this test down.
        .replacen("breaker_failures = 5", "breaker_failures = 0", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_timeouts_and_malformed_answers_all_end_equal_to_mysql() {
    let mut env = TestEnv::new("bedrock_faults", 600).await;
    let bedrock = MockServer::start().await;
    let calls = Arc::new(AtomicU64::new(0));
    Mock::given(method("POST")).respond_with(Faulty { calls: calls.clone() }).mount(&bedrock).await;
    let config = bedrock_env_config(&env, &bedrock.uri());
    env.use_config(config.clone());
    let mut child = env.binary_with_aws(&config, "faults.log").arg("run").spawn().unwrap();
    env.wait_caught_up().await;
    env.exec(&[
        "UPDATE rgcnseq4 SET STR60 = CONCAT(COALESCE(STR60, ''), ' X') WHERE GCN_SEQNO % 3 = 0",
        "UPDATE rlblrid3 SET MFG = 'THROUGH THE FAULTS' WHERE LBLRID = '000001'",
    ])
    .await;
    env.wait_caught_up().await;
    assert!(child.try_wait().unwrap().is_none(), "every fault was transient: drugsync kept running");
    assert!(calls.load(Ordering::SeqCst) > 60, "every fault was met ({} calls)", calls.load(Ordering::SeqCst));
    env.assert_matches_mysql().await;
    child.kill().ok();
    child.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_of_the_wrong_size_is_never_written_and_the_error_names_model_and_dimensions() {
    struct WrongSize;
    impl Respond for WrongSize {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            titan_answer(request, 64)
        }
    }
    let mut env = TestEnv::new("bedrock_dims", 60).await;
    let bedrock = MockServer::start().await;
    Mock::given(method("POST")).respond_with(WrongSize).mount(&bedrock).await;
    let config = bedrock_env_config(&env, &bedrock.uri());
    env.use_config(config.clone());
    let status = env.binary_with_aws(&config, "dims.log").arg("run").status().unwrap();
    assert_eq!(status.code(), Some(1), "a model answering another size is a stop, with the fix");
    let log = std::fs::read_to_string(env.log_path("dims.log")).unwrap();
    assert!(
        log.contains("amazon.titan-embed-text-v2:0") && log.contains("64 dimensions") && log.contains("embed.dimensions is 256"),
        "{log}"
    );
    assert!(env.actual().await.is_empty(), "no document was written");
}

//! The binary with Bedrock in the pipeline, against a fake InvokeModel
//! endpoint that misbehaves the ways Bedrock does: bursts of throttling,
//! 500s, calls that never answer, malformed JSON, added latency, and an
//! outage that must not freeze freshness. The index must end equal
//! to MySQL (the oracle), and a vector of the wrong size is never written.

use crate::common;
use crate::common::on_each_server;

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
/// answer, 4 answers 400 ms late), the rest a good answer.
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
            // Added latency: slow answers, still within the deadline.
            24..=27 => titan_answer(request, 256).set_delay(Duration::from_millis(400)),
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

on_each_server! {
    async fn throttling_server_errors_timeouts_and_malformed_answers_all_end_equal_to_mysql(flavour) {
        let mut env = TestEnv::new(flavour, "bedrock_faults", 600).await;
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
}

on_each_server! {
    async fn a_vector_of_the_wrong_size_is_never_written_and_the_error_names_model_and_dimensions(flavour) {
        struct WrongSize;
        impl Respond for WrongSize {
            fn respond(&self, request: &Request) -> ResponseTemplate {
                titan_answer(request, 64)
            }
        }
        let mut env = TestEnv::new(flavour, "bedrock_dims", 60).await;
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
}

/// Bedrock answering, or down (503 ServiceUnavailableException for every call).
struct Switchable {
    down: Arc<std::sync::atomic::AtomicBool>,
    calls_while_down: Arc<AtomicU64>,
}

impl Respond for Switchable {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if self.down.load(Ordering::SeqCst) {
            self.calls_while_down.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(503)
                .insert_header("x-amzn-errortype", "ServiceUnavailableException")
                .set_body_json(serde_json::json!({"message": "Bedrock is unavailable"}));
        }
        titan_answer(request, 256)
    }
}

on_each_server! {
    async fn a_bedrock_outage_does_not_freeze_freshness_and_the_owed_vectors_are_filled_when_it_answers(flavour) {
        let mut env = TestEnv::new(flavour, "bedrock_outage", 400).await;
        let bedrock = MockServer::start().await;
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let calls_while_down = Arc::new(AtomicU64::new(0));
        Mock::given(method("POST"))
            .respond_with(Switchable { down: down.clone(), calls_while_down: calls_while_down.clone() })
            .mount(&bedrock)
            .await;
        let config = bedrock_env_config(&env, &bedrock.uri()).replacen("breaker_cooldown_secs = 30", "breaker_cooldown_secs = 2", 1);
        env.use_config(config.clone());
        let mut child = env.binary_with_aws(&config, "outage.log").arg("run").spawn().unwrap();
        env.wait_caught_up().await;

        // What changes, chosen and judged by the test's own SQL: the strength of
        // the GCN with the most active NDCs (their text changes: vectors owed), a
        // labeler of other NDCs renamed (no text change), one other NDC obsoleted.
        let gcn = env.strings("SELECT CAST(GCN_SEQNO AS CHAR) FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY GCN_SEQNO ORDER BY COUNT(*) DESC, GCN_SEQNO LIMIT 1").await.remove(0);
        let text_changed =
            env.strings(&format!("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND GCN_SEQNO = {gcn} ORDER BY NDC")).await;
        let labeler = env
            .strings(&format!("SELECT LBLRID FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND GCN_SEQNO <> {gcn} ORDER BY NDC LIMIT 1"))
            .await
            .remove(0);
        let obsoleted = env
            .strings(&format!(
                "SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND GCN_SEQNO <> {gcn} AND LBLRID <> '{labeler}' ORDER BY NDC DESC LIMIT 1"
            ))
            .await
            .remove(0);
        assert!(text_changed.len() >= 2, "the GCN has several NDCs: {text_changed:?}");

        down.store(true, Ordering::SeqCst);
        let mut conn = env.mysql().await;
        {
            use mysql_async::prelude::Queryable;
            let mut tx = conn.start_transaction(Default::default()).await.unwrap();
            tx.query_drop(format!("UPDATE rgcnseq4 SET STR60 = 'OUTAGE 7.5 MG' WHERE GCN_SEQNO = {gcn}")).await.unwrap();
            tx.query_drop(format!("UPDATE rlblrid3 SET MFG = 'RENAMED DURING OUTAGE' WHERE LBLRID = '{labeler}'")).await.unwrap();
            tx.query_drop(format!("UPDATE rndc14 SET OBSDTEC = '2026-11-30' WHERE NDC = '{obsoleted}'")).await.unwrap();
            tx.commit().await.unwrap();
        }
        conn.disconnect().await.unwrap();

        // The position passes the transaction while Bedrock is still down.
        env.wait_applied().await;
        assert!(calls_while_down.load(Ordering::SeqCst) > 0, "the new texts were tried");
        assert_eq!(env.field(&obsoleted, "ndc").await, None, "the obsolete NDC left the index during the outage");
        let renamed = env.strings(&format!("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND LBLRID = '{labeler}'")).await;
        for ndc in &renamed {
            assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("RENAMED DURING OUTAGE"), "{ndc}");
        }
        let mut redis = env.redis.clone();
        for ndc in &text_changed {
            assert_eq!(env.field(ndc, "strength").await.as_deref(), Some("OUTAGE 7.5 MG"), "{ndc}: its new fields are written");
            let vector: Option<Vec<u8>> =
                redis::cmd("HGET").arg(format!("{}{ndc}", env.prefix)).arg("embedding").query_async(&mut redis).await.unwrap();
            assert_eq!(vector, None, "{ndc} keeps no vector of the text it no longer has");
        }
        let mut owed: Vec<String> = redis::cmd("ZRANGE").arg(env.owed_key()).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
        owed.sort();
        assert_eq!(owed, text_changed, "exactly the documents whose text changed owe a vector");
        let output = env
            .binary_with_aws(&config, "outage-status.log")
            .args(["status", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(status["owed_vectors"], text_changed.len(), "{status}");

        // Bedrock answers again: the owed vectors are filled, and the index equals MySQL.
        down.store(false, Ordering::SeqCst);
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(child.try_wait().unwrap().is_none(), "drugsync ran through the outage");
        let log = std::fs::read_to_string(env.log_path("outage.log")).unwrap();
        assert!(log.contains("owed vectors filled"), "{log}");
        child.kill().ok();
        child.wait().ok();
    }
}

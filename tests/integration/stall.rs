//! A writer stuck in one wait must not keep its lease. Every network wait
//! has its own deadline; this proves the bound behind them all
//! (`pipeline.stall_timeout_secs`) with a wait whose own deadline is set
//! far away: an embedding endpoint that accepts the call and never answers.

use crate::common;
use crate::common::on_each_server;

use std::time::{Duration, Instant};

use common::TestEnv;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The real binary on Bedrock (the SDK against a fake endpoint) with a
/// short lease and stall bound, and embedding calls allowed to wait long.
fn stall_config(env: &TestEnv, endpoint: &str) -> String {
    let config = env
        .bedrock_config(endpoint)
        .replacen("lease_ttl_secs = 10", "lease_ttl_secs = 3", 1)
        .replacen("\ntimeout_secs = 30", "\ntimeout_secs = 600", 1)
        .replacen("stall_timeout_secs = 300", "stall_timeout_secs = 6", 1);
    assert!(config.contains("stall_timeout_secs = 6") && config.contains("lease_ttl_secs = 3") && config.contains("\ntimeout_secs = 600"));
    config
}

fn spawn(env: &TestEnv, config: &str, log: &str) -> std::process::Child {
    env.binary_with_aws(config, log).arg("run").spawn().expect("spawn drugsync")
}

on_each_server! {
    async fn a_writer_stuck_in_one_wait_gives_up_its_lease_and_a_standby_takes_over(flavour) {
        let mut env = TestEnv::new(flavour, "stall", 120).await;
        let hanging = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600))).mount(&hanging).await;
        let working = MockServer::start().await;
        let vector: Vec<f32> = (0..256).map(|i| (i as f32 + 1.0) / 1000.0).collect();
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": 5})))
            .mount(&working)
            .await;

        let stuck_config = stall_config(&env, &hanging.uri());
        // A standby of its own: another instance, another checkpoint.
        let healthy_config = stall_config(&env, &working.uri()).replacen("checkpoint.redb", "standby.redb", 1);
        // Both are the same index version: the endpoint is not part of it.
        env.use_config(healthy_config.clone());

        let started = Instant::now();
        let mut stuck = spawn(&env, &stuck_config, "stuck.log");
        // The stuck writer must hold the lease before the standby starts.
        let mut redis = env.redis.clone();
        let lease_key = format!("ds:{}:{}:writer", env.name, env.index);
        loop {
            let holder: Option<String> = redis::cmd("GET").arg(&lease_key).query_async(&mut redis).await.unwrap();
            if holder.is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the first instance never took the lease");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut standby = spawn(&env, &healthy_config, "standby.log");

        // The stuck writer gives up within stall bound + a renewal period (+ slack), exiting 1.
        let status = loop {
            if let Some(status) = stuck.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "the stuck writer kept running");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status.code(), Some(1), "a stalled writer exits with the runtime-failure code");
        let log = std::fs::read_to_string(env.log_path("stuck.log")).unwrap();
        assert!(log.contains("made no progress"), "the operator is told why: {log}");
        assert!(!hanging.received_requests().await.unwrap().is_empty(), "it was stuck in an embedding call");

        // The standby takes over and builds the index.
        env.wait_caught_up().await;
        let (docs, failures) = env.index_counts().await;
        let expected = env.expected().await.len() as u64;
        assert_eq!((docs, failures), (expected, 0), "the standby loaded every document");
        standby.kill().ok();
        standby.wait().ok();
    }
}

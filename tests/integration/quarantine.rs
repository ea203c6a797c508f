//! Poison input: a key the source refuses to look up, or a text the
//! embedding service refuses, used to stop the writer on every restart. Now
//! it goes to the quarantine (a Redis hash, a metric, an error log), the
//! rest replicates, and a reconcile retries it.

use crate::common;
use crate::common::on_each_server;
use drugsync::observe::stats::Counter;

use std::time::Duration;

use common::{TestEnv, eventually};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn quarantine(env: &TestEnv, version_index: &str) -> std::collections::BTreeMap<String, String> {
    let mut redis = env.redis.clone();
    redis::cmd("HGETALL").arg(format!("ds:{}:{version_index}:quarantine", env.name)).query_async(&mut redis).await.unwrap()
}

fn version_index(env: &TestEnv) -> String {
    drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&env.config())).index
}

on_each_server! {
    /// A key under the prefix that no latin1 column can even be compared with
    /// (MySQL: "Illegal mix of collations"). The reconcile hands it, as an
    /// orphan, to the running streamer, whose lookup fails for that key alone.
    async fn a_key_the_source_refuses_is_quarantined_and_replication_goes_on(flavour) {
        let env = TestEnv::new(flavour, "poison_key", 150).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let poison = "\u{1F600}PILL";
        let mut redis = env.redis.clone();
        let _: () = redis::cmd("HSET").arg(format!("{}{poison}", env.prefix)).arg("ndc").arg(poison).query_async(&mut redis).await.unwrap();

        let report = env.reconcile(false).await;
        assert_eq!((report.mode.as_str(), report.orphans), ("handoff", 1), "{report:?}");
        let entries = eventually(Duration::from_secs(30), Duration::from_millis(50), "the key reached the quarantine", async || {
            assert!(!run.handle.is_finished(), "the streamer stopped on the poison key");
            let entries = quarantine(&env, &version_index(&env)).await;
            if entries.is_empty() { Err("an empty quarantine".into()) } else { Ok(entries) }
        })
        .await;
        assert_eq!(entries.keys().collect::<Vec<_>>(), [poison], "only the poison key, not its chunk");
        let entry: serde_json::Value = serde_json::from_str(&entries[poison]).unwrap();
        assert!(entry["reason"].as_str().unwrap().contains("refuses to look this key up"), "{entry}");
        assert_eq!(run.stats.counted(Counter::Quarantined), 1);

        // Replication goes on.
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER THE POISON' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        assert!(!run.handle.is_finished());
        run.stop().await;

        // A reconcile that writes itself removes the orphan and clears the quarantine.
        let report = env.reconcile(false).await;
        assert_eq!((report.mode.as_str(), report.orphans), ("repair", 1), "{report:?}");
        assert!(quarantine(&env, &version_index(&env)).await.is_empty(), "the reconcile took it out of the quarantine");
        env.assert_matches_mysql().await;
    }
}

on_each_server! {
    /// Bedrock refuses one text (ValidationException). Its document is
    /// quarantined, the rest of the same transaction arrives, and once the text
    /// is accepted a reconcile brings the document in and clears the quarantine.
    async fn a_text_the_embedding_service_refuses_is_quarantined_and_retried_by_a_reconcile(flavour) {
        let mut env = TestEnv::new(flavour, "poison_text", 150).await;
        let bedrock = MockServer::start().await;
        let refuse = || {
            Mock::given(method("POST")).and(body_string_contains("POISON")).respond_with(
                ResponseTemplate::new(400)
                    .insert_header("x-amzn-errortype", "ValidationException")
                    .set_body_json(serde_json::json!({"message": "Input text is not accepted"})),
            )
        };
        let vector: Vec<f32> = (0..256).map(|i| (i as f32 + 1.0) / 1000.0).collect();
        let answer = || {
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"embedding": vector, "inputTextTokenCount": 5})))
        };
        refuse().up_to_n_times(u64::MAX).with_priority(1).mount(&bedrock).await;
        answer().with_priority(2).mount(&bedrock).await;
        let config = env.bedrock_config(&bedrock.uri());
        env.use_config(config.clone());
        let spawn = |args: &[&str], log: &str| env.binary_with_aws(&config, log).args(args).spawn().unwrap();
        let mut streamer = spawn(&["run"], "streamer.log");
        env.wait_caught_up().await;

        let ndcs = env.active_ndcs_where("1 = 1").await;
        let (poisoned, other) = (&ndcs[0], &ndcs[1]);
        env.exec(&[
            "START TRANSACTION",
            &format!("UPDATE rndc14 SET LN60 = 'POISON PILL 5 MG' WHERE NDC = '{poisoned}'"),
            &format!("UPDATE rndc14 SET BN = 'SAME BATCH' WHERE NDC = '{other}'"),
            "COMMIT",
        ])
        .await;
        env.wait_caught_up().await;
        assert!(streamer.try_wait().unwrap().is_none(), "the streamer kept running");
        assert_eq!(env.field(other, "brand_name").await.as_deref(), Some("SAME BATCH"), "the rest of the batch arrived");
        assert_ne!(env.field(poisoned, "drug_name").await.as_deref(), Some("POISON PILL 5 MG"), "the refused document was left as it was");
        let entries = quarantine(&env, &version_index(&env)).await;
        assert_eq!(entries.keys().collect::<Vec<_>>(), [poisoned]);
        assert!(entries[poisoned].contains("ValidationException") && entries[poisoned].contains("POISON PILL"), "{}", entries[poisoned]);
        let log = std::fs::read_to_string(env.log_path("streamer.log")).unwrap();
        assert!(log.contains("document quarantined") && log.contains(poisoned.as_str()), "an error log names the key");
        // `drugsync status` lists it with its reason: JSON for all, the table for the first few.
        let status = |args: &[&str], log: &str| {
            let output = env.binary_with_aws(&config, log).args(args).stdout(std::process::Stdio::piped()).output().unwrap();
            assert!(output.status.success(), "{}", std::fs::read_to_string(env.log_path(log)).unwrap());
            String::from_utf8(output.stdout).unwrap()
        };
        let report: serde_json::Value = serde_json::from_str(&status(&["status", "--output", "json"], "status.log")).unwrap();
        let listed = report["quarantine"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{report}");
        assert_eq!(listed[0]["key"].as_str(), Some(poisoned.as_str()));
        assert!(listed[0]["reason"].as_str().unwrap().contains("ValidationException") && listed[0]["since"].as_u64() > Some(0), "{report}");
        let table = status(&["status"], "status-table.log");
        assert!(table.contains(&format!("quarantined    {poisoned}: ")) && table.contains("ValidationException"), "{table}");

        // The service accepts the text now; the nightly reconcile retries it.
        bedrock.reset().await;
        answer().mount(&bedrock).await;
        let status = spawn(&["--reconcile"], "reconcile.log").wait().unwrap();
        assert!(status.success(), "{}", std::fs::read_to_string(env.log_path("reconcile.log")).unwrap());
        eventually(Duration::from_secs(30), Duration::from_millis(50), "the reconcile's retry cleared the quarantine", async || {
            let entries = quarantine(&env, &version_index(&env)).await;
            if entries.is_empty() { Ok(()) } else { Err(format!("{entries:?}")) }
        })
        .await;
        assert_eq!(env.field(poisoned, "drug_name").await.as_deref(), Some("POISON PILL 5 MG"), "retried and written");
        streamer.kill().ok();
        streamer.wait().ok();
    }
}

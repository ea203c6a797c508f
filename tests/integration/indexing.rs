//! RediSearch's own verdict: a document Redis holds but the index does not
//! is in no search, and only `FT.INFO`'s `hash_indexing_failures` says so.
//! drugsync must never write one, and must find and repair one written
//! behind its back (an older release, a hand edit).

use crate::common;
use crate::common::on_each_server;
use drugsync::observe::stats::Gauge;

use std::time::Duration;

use common::{TestEnv, eventually};

/// Whether the alias's index holds `ndc`: the test's own query.
async fn indexed(env: &TestEnv, ndc: &str) -> bool {
    let mut redis = env.redis.clone();
    let reply: Vec<redis::Value> = redis::cmd("FT.SEARCH")
        .arg(&env.index)
        .arg("*")
        .arg("INKEYS")
        .arg(1)
        .arg(format!("{}{ndc}", env.prefix))
        .arg("NOCONTENT")
        .query_async(&mut redis)
        .await
        .unwrap();
    redis::from_redis_value::<u64>(reply[0].clone()).unwrap() == 1
}

on_each_server! {
    /// A current document whose NUMERIC field holds text: RediSearch drops
    /// it from the index and counts a failure. The writer publishes the
    /// count; a reconcile reports the document as drift and has it rebuilt.
    async fn a_document_redis_holds_but_cannot_index_is_reported_and_repaired_by_a_reconcile(flavour) {
        let env = TestEnv::new(flavour, "unindexed", 150).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let ndc = env.active_ndcs_where("1 = 1").await.remove(0);
        assert!(indexed(&env, &ndc).await);
        assert_eq!(env.index_counts().await.1, 0);
        let mut redis = env.redis.clone();
        let _: () = redis::cmd("HSET").arg(format!("{}{ndc}", env.prefix)).arg("gcn_seqno").arg("N/A").query_async(&mut redis).await.unwrap();
        assert!(!indexed(&env, &ndc).await, "RediSearch dropped it from the index");
        eventually(Duration::from_secs(10), Duration::from_millis(100), "the writer published RediSearch's failure count", async || {
            match run.stats.gauge(Gauge::IndexFailures) {
                0 => Err("0".into()),
                n => Ok(n),
            }
        })
        .await;

        let dry = env.reconcile(true).await;
        assert_eq!((dry.unindexed, dry.drift()), (1, 1), "{dry:?}");
        let handed = env.reconcile(false).await;
        assert_eq!((handed.mode.as_str(), handed.unindexed, handed.handed_off), ("handoff", 1, 1), "{handed:?}");
        eventually(Duration::from_secs(30), Duration::from_millis(100), "the document rebuilt and indexed", async || {
            if indexed(&env, &ndc).await { Ok(()) } else { Err("not in the index".into()) }
        })
        .await;
        env.assert_matches_mysql().await;
        let after = env.reconcile(true).await;
        assert_eq!((after.unindexed, after.drift()), (0, 0), "{after:?}");
        run.stop().await;
    }
}

on_each_server! {
    /// The source fills a NUMERIC field with text (here through the
    /// mapping's SQL). Written, the document would vanish from search; it is
    /// quarantined instead, with the field named, its indexed version kept,
    /// and it leaves the quarantine once the value is a number again.
    async fn a_numeric_field_the_source_fills_with_text_is_quarantined_not_written(flavour) {
        let mut env = TestEnv::new(flavour, "numtext", 150).await;
        let config = env.config_text.replacen(
            "n.GCN_SEQNO AS gcn_seqno,",
            "IF(g.STR60 LIKE 'NOT A NUMBER%', g.STR60, n.GCN_SEQNO) AS gcn_seqno,",
            1,
        );
        assert_ne!(config, env.config_text);
        env.use_config(config);
        let run = env.start().await;
        env.wait_caught_up().await;
        let gcn: u32 = env.strings("SELECT MIN(GCN_SEQNO) FROM rndc14 WHERE OBSDTEC = '0000-00-00'").await[0].parse().unwrap();
        let of_gcn = env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await;
        let before = env.field(&of_gcn[0], "strength").await;

        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = 'NOT A NUMBER 5 MG' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_applied().await;
        let index = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&env.config())).index;
        let mut redis = env.redis.clone();
        let entries: std::collections::BTreeMap<String, String> =
            redis::cmd("HGETALL").arg(format!("ds:{}:{index}:quarantine", env.name)).query_async(&mut redis).await.unwrap();
        assert_eq!(entries.keys().cloned().collect::<Vec<_>>(), of_gcn, "exactly the formulation's documents");
        let entry: serde_json::Value = serde_json::from_str(&entries[&of_gcn[0]]).unwrap();
        let reason = entry["reason"].as_str().unwrap();
        assert!(reason.contains("gcn_seqno") && reason.contains("NUMERIC") && reason.contains("NOT A NUMBER 5 MG"), "{reason}");
        for ndc in &of_gcn {
            assert!(indexed(&env, ndc).await, "{ndc}: its indexed version is kept");
        }
        assert_eq!(env.field(&of_gcn[0], "strength").await, before, "nothing of the refused version was written");
        assert_eq!(env.index_counts().await.1, 0, "RediSearch never met an unindexable hash");

        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = '5 MG' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_applied().await;
        let entries: std::collections::BTreeMap<String, String> =
            redis::cmd("HGETALL").arg(format!("ds:{}:{index}:quarantine", env.name)).query_async(&mut redis).await.unwrap();
        assert!(entries.is_empty(), "{entries:?}");
        assert_eq!(env.field(&of_gcn[0], "strength").await.as_deref(), Some("5 MG"));
        assert_eq!(env.field(&of_gcn[0], "gcn_seqno").await, Some(gcn.to_string()));
        run.stop().await;
    }
}

//! Redis that goes back in time, evicts, or keeps nothing across a restart,
//! on real Redis servers (private ones: the faults touch no other test).
//! Each recovery is judged by the oracle with no source traffic after the
//! loss, so only drugsync noticing by itself can bring the index back.

use drugsync::observe::stats::{Counter, Gauge};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::common::proxy::FaultyProxy;
use crate::common::{Durability, PrivateRedis, Running, TestEnv, eventually, on_each_server};
use drugsync::observe::Stats;
use drugsync::sink::persistence::Persistence;

async fn redis_cmd(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await.unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A field of `INFO <section>` on `url`.
async fn info_field(url: &str, section: &str, name: &str) -> String {
    let text: String = redis::from_redis_value(redis_cmd(url, &["INFO", section]).await).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO {section}"))
        .trim()
        .to_owned()
}

/// Waits until the writer noticed Redis behind its acknowledged position.
async fn wait_rewound(stats: &Stats, before: u64) {
    eventually(Duration::from_secs(30), Duration::from_millis(100), "the writer noticed Redis went back", async || {
        let now = stats.counted(Counter::RedisRewinds);
        if now > before { Ok(()) } else { Err(format!("{now} rewinds")) }
    })
    .await;
}

/// Brings Redis back in time with `go_back` while the replay's re-reads are
/// held behind a table lock, so the time Redis is behind what it
/// acknowledged lasts until the test says: the writer must notice, be not
/// ready all along (naming the lost writes), then once released end equal
/// to MySQL and ready again.
async fn replay_held_then_released(env: &TestEnv, run: &Running, go_back: impl AsyncFnOnce(), rewinds: u64) {
    let mut holder = env.mysql().await;
    holder.query_drop("LOCK TABLES rndc14 WRITE").await.unwrap();
    go_back().await;
    wait_rewound(&run.stats, rewinds).await;
    let bounds = drugsync::app::metrics::bounds(&env.config());
    let ready = || drugsync::observe::health::readiness(&drugsync::app::metrics::observe(&run.stats), &bounds);
    for _ in 0..3 {
        let verdict = ready();
        assert!(
            !verdict.ok && verdict.failing.iter().any(|f| f.contains("Redis lost writes it had acknowledged")),
            "not ready while Redis is behind what it acknowledged: {verdict:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    holder.query_drop("UNLOCK TABLES").await.unwrap();
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    eventually(Duration::from_secs(30), Duration::from_millis(100), "ready once the replay is back", async || {
        let verdict = ready();
        if verdict.ok { Ok(()) } else { Err(format!("{verdict:?}")) }
    })
    .await;
}

on_each_server! {
    /// `SAVE`, more transactions, then Redis SIGKILLed and started from the
    /// older RDB. The idle tick finds Redis behind its acknowledged position,
    /// the writer is not ready until it has replayed from the position Redis holds, and only the texts
    /// embedded after the snapshot are embedded again: the vectors Redis
    /// still has are reused.
    async fn redis_restored_from_an_older_snapshot_replays_from_its_position(flavour) {
        let mut redis = PrivateRedis::start_with(Durability::Rdb).await;
        let env = TestEnv::new_with(flavour, "rdb_back", 300, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        redis_cmd(&redis.url(), &["SAVE"]).await;
        let at_snapshot = run.embed_calls();

        env.exec(&[
            "UPDATE rlblrid3 SET MFG = 'AFTER THE SNAPSHOT' WHERE LBLRID = '000001'",
            "UPDATE rgcnseq4 SET STR60 = '313 MG' WHERE GCN_SEQNO = 2",
            "UPDATE rndc14 SET OBSDTEC = '2024-05-05' WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 2",
        ])
        .await;
        env.wait_caught_up().await;
        let after_snapshot = run.embed_calls() - at_snapshot;
        assert!(after_snapshot > 0, "the strength change embedded new texts");
        let rewinds = run.stats.counted(Counter::RedisRewinds);

        replay_held_then_released(&env, &run, async || redis.restart().await, rewinds).await;
        let recovery = run.embed_calls() - at_snapshot - after_snapshot;
        assert_eq!(recovery, after_snapshot, "only the texts embedded after the snapshot are embedded again");
        run.stop().await;
    }
}

on_each_server! {
    /// A replica that stopped receiving (its link partitioned) while drugsync
    /// wrote to the primary is promoted when the primary dies, and the
    /// address drugsync uses moves to it, as a DNS name does. It holds an
    /// older position with older documents: drugsync replays from there.
    async fn a_promoted_lagging_replica_is_replayed_from_its_position(flavour) {
        let mut primary = PrivateRedis::start(false).await;
        let replica = PrivateRedis::start(false).await;
        let link = FaultyProxy::start(format!("127.0.0.1:{}", primary.port)).await;
        redis_cmd(&replica.url(), &["REPLICAOF", "127.0.0.1", &link.port.to_string()]).await;
        let endpoint = FaultyProxy::start(format!("127.0.0.1:{}", primary.port)).await;
        let env = TestEnv::new_with(flavour, "redis_promoted", 300, &format!("redis://127.0.0.1:{}", endpoint.port)).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        // The replica has everything so far.
        eventually(Duration::from_secs(20), Duration::from_millis(100), "the replica caught up", async || {
            let synced = redis_cmd(&primary.url(), &["WAIT", "1", "100"]).await;
            if synced == redis::Value::Int(1) { Ok(()) } else { Err(format!("{synced:?}")) }
        })
        .await;

        link.partition().await;
        env.exec(&[
            "UPDATE rlblrid3 SET MFG = 'NEVER REPLICATED' WHERE LBLRID = '000002'",
            "UPDATE rgcnseq4 SET STR60 = '414 MG' WHERE GCN_SEQNO = 3",
        ])
        .await;
        env.wait_caught_up().await;
        let rewinds = run.stats.counted(Counter::RedisRewinds);

        let promote = async || {
            primary.stop();
            redis_cmd(&replica.url(), &["REPLICAOF", "NO", "ONE"]).await;
            endpoint.switch_to(format!("127.0.0.1:{}", replica.port));
            endpoint.cut().await;
        };
        replay_held_then_released(&env, &run, promote, rewinds).await;
        run.stop().await;
    }
}

on_each_server! {
    /// Eviction switched on while drugsync streams (`allkeys-lru`, maxmemory
    /// below what is used), and changes until Redis has evicted keys, any of
    /// drugsync's among them. drugsync reports not ready naming eviction;
    /// once `noeviction` and memory are back, it repairs by itself: the index
    /// ends equal to MySQL with no source traffic after the evictions.
    async fn eviction_switched_on_at_runtime_is_reported_then_repaired(flavour) {
        let redis = PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "redis_evict", 1500, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let used: u64 = info_field(&redis.url(), "memory", "used_memory").await.parse().unwrap();
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]).await;
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory", &(used * 8 / 10).to_string()]).await;
        let mut round = 0;
        eventually(Duration::from_secs(60), Duration::from_millis(200), "Redis evicted keys", async || {
            round += 1;
            env.exec(&[&format!("UPDATE rlblrid3 SET MFG = CONCAT('EVICTION ROUND {round} ', LBLRID) WHERE LBLRID <= '000040'")]).await;
            let evicted: u64 = info_field(&redis.url(), "stats", "evicted_keys").await.parse().unwrap();
            if evicted > 0 { Ok(()) } else { Err("no key evicted yet".to_owned()) }
        })
        .await;
        let bounds = drugsync::app::metrics::bounds(&env.config());
        let verdict = eventually(Duration::from_secs(15), Duration::from_millis(200), "not ready, naming eviction", async || {
            let verdict = drugsync::observe::health::readiness(&drugsync::app::metrics::observe(&run.stats), &bounds);
            if !verdict.ok && verdict.failing.iter().any(|f| f.contains("evict")) { Ok(verdict) } else { Err(format!("{verdict:?}")) }
        })
        .await;
        assert!(run.stats.gauge(Gauge::RedisEvictedKeys) > 0, "{verdict:?}");

        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory", "0"]).await;
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
        env.wait_caught_up().await;
        eventually(Duration::from_secs(60), Duration::from_secs(1), "the index equal to MySQL again", async || {
            let expected = env.expected().await;
            let actual = env.actual().await;
            let missing = expected.keys().filter(|k| !actual.contains_key(*k)).count();
            if missing == 0 { Ok(()) } else { Err(format!("{missing} documents missing")) }
        })
        .await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

/// What `INFO persistence` says is reported at start (`drugsync_redis_persistence`)
/// and by `drugsync status`; a durable service that does not say so is declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_persistence_is_reported_as_none_aof_rdb_or_declared_on_mariadb() {
    for (durability, declared, expected) in [
        (Durability::None, false, Persistence::None),
        (Durability::Aof, false, Persistence::Aof),
        (Durability::Rdb, false, Persistence::Rdb),
        (Durability::None, true, Persistence::Declared),
    ] {
        let redis = PrivateRedis::start_with(durability).await;
        let env = TestEnv::new_with(crate::common::Flavour::Mariadb, "persistence", 30, &redis.url()).await;
        let config = if declared {
            let text = env.config_text.replacen("# declared_durable = false", "declared_durable = true", 1);
            assert!(text.contains("\ndeclared_durable = true"));
            text
        } else {
            env.config_text.clone()
        };
        let replicator = env.connect(&config).await.unwrap();
        let code = replicator.parts().stats().gauge(Gauge::RedisPersistence);
        assert_eq!(Persistence::from_code(code), Some(expected), "{durability:?}, declared {declared}");
        drop(replicator);
        let output = env
            .binary_command(&config, "status.log")
            .args(["status", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", std::fs::read_to_string(env.log_path("status.log")).unwrap_or_default());
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(status["redis_persistence"], expected.as_str(), "{status}");
    }
}

on_each_server! {
    /// Only documents evicted (they alone carry a TTL under `volatile-lru`),
    /// drugsync's position and state kept: nothing in the binlog will bring
    /// them back and no start decision reloads them. Once Redis evicts no
    /// more, the writer's full diff must rewrite them.
    async fn evicted_documents_are_rewritten_once_redis_evicts_no_more(flavour) {
        let redis = PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "redis_evict_docs", 600, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let mut documents: Vec<String> = env.actual().await.into_keys().collect();
        documents.truncate(120);
        for ndc in &documents {
            redis_cmd(&redis.url(), &["PEXPIRE", &format!("{}{ndc}", env.prefix), "86400000"]).await;
        }
        let used: u64 = info_field(&redis.url(), "memory", "used_memory").await.parse().unwrap();
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]).await;
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory", &(used - 20_000).to_string()]).await;
        let mut round = 0;
        eventually(Duration::from_secs(30), Duration::from_millis(200), "Redis evicted documents", async || {
            round += 1;
            env.exec(&[&format!("UPDATE rlblrid3 SET MFG = 'VOLATILE ROUND {round}' WHERE LBLRID = '000003'")]).await;
            let evicted: u64 = info_field(&redis.url(), "stats", "evicted_keys").await.parse().unwrap();
            if evicted > 0 { Ok(()) } else { Err("no key evicted yet".to_owned()) }
        })
        .await;
        let missing = documents.len() - env.actual().await.keys().filter(|k| documents.contains(k)).count();
        assert!(missing > 0, "documents were evicted");
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory", "0"]).await;
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
        assert_eq!(run.stats.counted(Counter::RedisRewinds), 0, "Redis kept the position: no start decision reloads anything");
        eventually(Duration::from_secs(40), Duration::from_secs(1), "the evicted documents rewritten", async || {
            let actual = env.actual().await;
            let missing = env.expected().await.keys().filter(|k| !actual.contains_key(*k)).count();
            if missing == 0 { Ok(()) } else { Err(format!("{missing} documents missing")) }
        })
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

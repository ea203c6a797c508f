//! The vector cache stays within `embed.cache_max_vectors`, adopts entries
//! from before it was bounded, and leaves with a version of another
//! embedding space.

use crate::common;
use crate::common::on_each_server;

use common::TestEnv;

/// Cache entries (`<state>vec:<64 hex>`) of this test: key -> blob length.
async fn cache_entries(env: &TestEnv) -> std::collections::BTreeMap<String, usize> {
    let mut redis = env.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("ds:{}:vec:*", env.name)).query_async(&mut redis).await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for key in keys.into_iter().filter(|k| k.rsplit(':').next().is_some_and(|h| h.len() == 64)) {
        let len: usize = redis::cmd("STRLEN").arg(&key).query_async(&mut redis).await.unwrap();
        // 0: deleted (trimmed) between KEYS and STRLEN.
        if len > 0 {
            out.insert(key, len);
        }
    }
    out
}

async fn distinct_texts(env: &TestEnv) -> usize {
    env.expected().await.values().map(|e| e.text.clone()).collect::<std::collections::BTreeSet<_>>().len()
}

on_each_server! {
    async fn the_cache_stays_within_its_bound_and_adopts_older_entries(flavour) {
        const BOUND: usize = 10;
        let mut env = TestEnv::new(flavour, "vcache_bound", 1000).await;
        env.use_config(env.config_text.replacen("cache_max_vectors = 50000", &format!("cache_max_vectors = {BOUND}"), 1));
        assert!(distinct_texts(&env).await > 2 * BOUND, "the fixture must have more texts than the bound");
        // An entry from before the bound existed.
        let legacy = format!("ds:{}:vec:{}", env.name, "ab".repeat(32));
        let mut redis = env.redis.clone();
        let _: () = redis::cmd("SET").arg(&legacy).arg(vec![0u8; 4 * common::TEST_DIMENSIONS]).query_async(&mut redis).await.unwrap();

        let run = env.start().await;
        env.wait_caught_up().await;
        let entries = cache_entries(&env).await;
        assert!(entries.len() <= BOUND, "{} cached vectors after the load", entries.len());
        assert!(!entries.contains_key(&legacy), "the adopted older entry went first");

        // Every formulation gets a new strength: new texts, new vectors.
        env.exec(&["UPDATE rgcnseq4 SET STR60 = CONCAT(COALESCE(STR60, ''), ' NEW')"]).await;
        env.wait_caught_up().await;
        let entries = cache_entries(&env).await;
        assert!(entries.len() <= BOUND, "{} cached vectors after new texts", entries.len());
        assert!(!entries.is_empty(), "the cache still works");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn the_old_spaces_cache_leaves_with_its_version(flavour) {
        let mut env = TestEnv::new(flavour, "vcache_space", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let old_bytes = 4 * common::TEST_DIMENSIONS;
        assert!(cache_entries(&env).await.values().all(|len| *len == old_bytes));
        assert!(!cache_entries(&env).await.is_empty());
        run.stop().await;

        // Another vector size is another embedding space and another version.
        env.use_config(env.config_text.replacen(&format!("dimensions = {}", common::TEST_DIMENSIONS), "dimensions = 32", 1));
        let run = env.start().await;
        env.wait_caught_up().await;
        // The old space's vectors go just after the alias switch: wait for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let entries = loop {
            let entries = cache_entries(&env).await;
            if entries.values().all(|len| *len == 4 * 32) || std::time::Instant::now() > deadline {
                break entries;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert!(!entries.is_empty());
        assert!(entries.values().all(|len| *len == 4 * 32), "no vector of the dropped version's space is left: {entries:?}");
        let mut redis = env.redis.clone();
        let sets: Vec<String> = redis::cmd("KEYS").arg(format!("ds:{}:vec:space:*", env.name)).query_async(&mut redis).await.unwrap();
        assert_eq!(sets.len(), 1, "one space's set remains: {sets:?}");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

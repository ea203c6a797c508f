//! `RedisSink` on a real Redis keeps the sink contract: the same checks
//! (`drugsync::testing::conformance`) the in-memory fake of the pipeline's unit
//! tests passes, so those tests judge the pipeline against a faithful sink.

use crate::common;
use crate::common::on_each_server;

use common::{Flavour, TestEnv};
use drugsync::document::EmbeddingSpace;
use drugsync::sink::RedisSink;
use drugsync::sink::contract::IndexAdmin;
use drugsync::testing::conformance::{
    Caching, LoseReply, Rewind, check_documents, check_fencing, check_index_admin, check_lost_reply, check_rewind, check_vector_cache,
    check_work_queues,
};

/// A sink over a test environment of its own (kept alive with it), and
/// the embedding space of its config.
async fn sink(flavour: Flavour, name: &str) -> (TestEnv, RedisSink, EmbeddingSpace) {
    let env = TestEnv::new(flavour, name, 10).await;
    let config = env.config();
    let sink = drugsync::app::compose::redis_sink(&config).await.unwrap();
    let space = drugsync::embed::space_of(&config.embed);
    (env, sink, space)
}

/// The same, its index prepared.
async fn prepared_sink(flavour: Flavour, name: &str) -> (TestEnv, RedisSink, EmbeddingSpace) {
    let (env, sink, space) = sink(flavour, name).await;
    sink.prepare_index().await.unwrap();
    (env, sink, space)
}

on_each_server! {
    async fn the_redis_sink_keeps_the_contract_of_each_role(flavour) {
        let (_env, redis, space) = prepared_sink(flavour, "sink_contract").await;
        check_documents(&redis, &space, "conformance-").await;
        check_vector_cache(&redis, &space, "conformance-", Caching::On).await;
        check_work_queues(&redis, &space, "conformance-").await;
        check_fencing(&redis, &space, "conformance-fencing").await;
        let (_env, unprepared, space) = sink(flavour, "sink_admin").await;
        check_index_admin(&unprepared, &space, "conformance-admin").await;
    }
}

/// A real Redis rewound through the test's own connection: every key of
/// the test's index version and state, dumped, then restored in place of
/// whatever is there then (as a restart from that RDB would leave them).
struct Snapshot {
    redis: redis::aio::ConnectionManager,
    patterns: Vec<String>,
    saved: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
}

impl Snapshot {
    async fn keys(&self) -> Vec<String> {
        let mut redis = self.redis.clone();
        let mut keys = Vec::new();
        for pattern in &self.patterns {
            let found: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut redis).await.unwrap();
            keys.extend(found);
        }
        keys
    }
}

impl Rewind for Snapshot {
    async fn save(&self) {
        let mut redis = self.redis.clone();
        let mut saved = Vec::new();
        for key in self.keys().await {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(&mut redis).await.unwrap();
            saved.push((key, dump));
        }
        *self.saved.lock().unwrap() = saved;
    }

    async fn restore(&self) {
        let mut redis = self.redis.clone();
        let keys = self.keys().await;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
        }
        let saved = self.saved.lock().unwrap().clone();
        for (key, dump) in saved {
            let _: () = redis::cmd("RESTORE").arg(&key).arg(0).arg(dump).query_async(&mut redis).await.unwrap();
        }
    }
}

on_each_server! {
    async fn the_redis_sink_reads_as_the_older_state_it_was_rewound_to(flavour) {
        let (env, sink, space) = prepared_sink(flavour, "sink_rewind").await;
        let patterns = vec![format!("{}*", env.prefix), format!("ds:{}:*", env.name)];
        let snapshot = Snapshot { redis: env.redis.clone(), patterns, saved: Default::default() };
        check_rewind(&sink, &snapshot, &space, "conformance-").await;
    }
}

/// The network between the sink and a real Redis, losing one reply on demand.
struct LosingProxy(common::proxy::FaultyProxy);

impl LoseReply for LosingProxy {
    async fn lose_next_reply(&self) {
        self.0.lose_next_reply();
    }
}

on_each_server! {
    async fn the_redis_sink_reads_a_write_whose_reply_was_lost_as_applied(flavour) {
        let proxy = common::proxy::FaultyProxy::start(common::redis_url().trim_start_matches("redis://").to_owned()).await;
        let env = TestEnv::new_with(flavour, "sink_lost_reply", 10, &format!("redis://127.0.0.1:{}", proxy.port)).await;
        let config = env.config();
        let sink = drugsync::app::compose::redis_sink(&config).await.unwrap();
        sink.prepare_index().await.unwrap();
        let space = drugsync::embed::space_of(&config.embed);
        let accepted = proxy.accepted();
        let proxy = LosingProxy(proxy);
        check_lost_reply(&sink, &proxy, &space, "conformance-").await;
        assert!(proxy.0.accepted() > accepted, "the lost reply closed the sink's connection and it opened another");
    }
}

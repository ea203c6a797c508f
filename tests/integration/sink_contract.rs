//! `RedisSink` on a real Redis keeps the sink contract: the same checks
//! (`drugsync::sink::conformance`) the in-memory fake of the pipeline's unit
//! tests passes, so those tests judge the pipeline against a faithful sink.

use crate::common;
use crate::common::on_each_server;

use common::{Flavour, TestEnv};
use drugsync::document::EmbeddingSpace;
use drugsync::sink::RedisSink;
use drugsync::sink::conformance::{Caching, check_coordination, check_document_sink};

/// A sink over a test environment of its own (kept alive with it), its
/// index prepared, and the embedding space of its config.
async fn prepared_sink(flavour: Flavour, name: &str) -> (TestEnv, RedisSink, EmbeddingSpace) {
    let env = TestEnv::new(flavour, name, 10).await;
    let config = env.config();
    let sink = RedisSink::connect(&config).await.unwrap();
    sink.prepare_index(&config).await.unwrap();
    let space = drugsync::embed::space_of(&config.embed);
    (env, sink, space)
}

on_each_server! {
    async fn the_redis_sink_keeps_the_sink_contract(flavour) {
        let (_env, sink, space) = prepared_sink(flavour, "sink_contract").await;
        check_document_sink(&sink, &space, "conformance-", Caching::On).await;
    }
}

on_each_server! {
    async fn the_redis_sink_keeps_the_coordination_contract(flavour) {
        let (_env, sink, space) = prepared_sink(flavour, "sink_coordination").await;
        check_coordination(&sink, &space, "conformance-coordination").await;
    }
}

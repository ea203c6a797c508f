//! `RedisSink` on a real Redis keeps the sink contract: the same check
//! (`drugsync::sink::conformance`) the in-memory fake of the pipeline's unit
//! tests passes, so those tests judge the pipeline against a faithful sink.

use crate::common;
use crate::common::on_each_server;

use common::TestEnv;
use drugsync::sink::RedisSink;

on_each_server! {
    async fn the_redis_sink_keeps_the_sink_contract(flavour) {
        let env = TestEnv::new(flavour, "sink_contract", 10).await;
        let config = env.config();
        let sink = RedisSink::connect(&config).await.unwrap();
        sink.prepare_index(&config).await.unwrap();
        let space = drugsync::embed::space_of(&config.embed);
        drugsync::sink::conformance::check_document_sink(&sink, &space, "conformance-", drugsync::sink::conformance::Caching::On).await;
    }
}

on_each_server! {
    async fn the_redis_sink_keeps_the_coordination_contract(flavour) {
        let env = TestEnv::new(flavour, "sink_coordination", 10).await;
        let config = env.config();
        let sink = RedisSink::connect(&config).await.unwrap();
        sink.prepare_index(&config).await.unwrap();
        let space = drugsync::embed::space_of(&config.embed);
        drugsync::sink::conformance::check_coordination(&sink, &space, "conformance-coordination").await;
    }
}

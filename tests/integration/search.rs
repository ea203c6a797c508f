//! `drugsync search` against the live index on the real Redis, judged by the
//! oracle's documents (their texts, fields and vectors computed by the test)
//! and an exact nearest-neighbour search over them.

use crate::common::{Flavour, TestEnv, local_embedder, on_each_server};
use drugsync::app::search::{Query, SearchError, search};
use drugsync::embed::Embedder;

/// A streaming environment whose index is live and equal to the oracle.
async fn live_env(flavour: Flavour, name: &str) -> (TestEnv, crate::common::Running) {
    let env = TestEnv::new(flavour, name, 300).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    (env, run)
}

fn query(text: &str, k: usize, filter: Option<&str>) -> Query {
    Query {
        text: text.to_owned(),
        k,
        filter: filter.map(str::to_owned),
        fields: vec!["is_generic".into()],
        distinct: false,
        ef_runtime: drugsync::app::search::DEFAULT_EF_RUNTIME,
    }
}

/// Cosine distance, as the index measures it.
fn distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

on_each_server! {
    /// A document's own text finds it (or a document with the same text) at
    /// distance 0, the hits come nearest first, and they are the exact
    /// nearest neighbours by the oracle's vectors (ties aside).
    async fn search_answers_nearest_first_and_agrees_with_an_exact_search(flavour) {
        let (env, run) = live_env(flavour, "search_order").await;
        let config = env.config();
        let embedder = local_embedder(&config);
        let expected = env.expected().await;
        let (ndc, doc) = expected.iter().nth(7).unwrap();
        let hits = search(&config.redis, &drugsync::app::compose::index_definition(&config), &embedder, &query(&doc.text, 10, None)).await.unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.windows(2).all(|w| w[0].score <= w[1].score), "nearest first: {hits:?}");
        assert!(hits[0].score.abs() < 1e-4, "its own text is at distance 0: {:?}", hits[0]);
        assert_eq!(expected[&hits[0].key].text, doc.text, "the first hit has the query's text ({ndc})");
        assert_eq!(hits[0].fields.get("drug_name"), expected[&hits[0].key].fields.get("drug_name"), "fields come with the hit");
        // The exact 10th-nearest distance over the oracle's vectors bounds every hit.
        let query_vector = embedder.embed(&doc.text).await.unwrap().vector;
        let mut exact: Vec<f64> = expected.values().map(|d| distance(&query_vector, &d.vector)).collect();
        exact.sort_by(f64::total_cmp);
        for hit in &hits {
            let d = distance(&query_vector, &expected[&hit.key].vector);
            assert!((d - hit.score).abs() < 1e-4, "the score is the cosine distance: {hit:?} vs {d}");
            assert!(d <= exact[9] + 1e-6, "{} is not among the exact 10 nearest", hit.key);
        }
        run.stop().await;
    }
}

on_each_server! {
    /// A filter narrows the answers to documents matching it, by the
    /// oracle's fields; a filter no document matches answers nothing; a
    /// filter RediSearch cannot parse is its error, naming the filter.
    async fn search_applies_filters_and_names_a_bad_one(flavour) {
        let (env, run) = live_env(flavour, "search_filter").await;
        let config = env.config();
        let embedder = local_embedder(&config);
        let expected = env.expected().await;
        let brands = expected.values().filter(|d| d.fields.get("is_generic").map(String::as_str) == Some("false")).count();
        assert!(brands > 0 && brands < expected.len(), "the sample has both kinds");
        let text = &expected.values().next().unwrap().text;
        let hits = search(&config.redis, &drugsync::app::compose::index_definition(&config), &embedder, &query(text, 10, Some("@is_generic:{false}"))).await.unwrap();
        assert_eq!(hits.len(), brands.min(10));
        for hit in &hits {
            assert_eq!(expected[&hit.key].fields["is_generic"], "false", "{hit:?}");
            assert_eq!(hit.fields.get("is_generic").map(String::as_str), Some("false"));
        }
        let none = search(&config.redis, &drugsync::app::compose::index_definition(&config), &embedder, &query(text, 10, Some("@is_generic:{neither}"))).await.unwrap();
        assert!(none.is_empty(), "{none:?}");
        match search(&config.redis, &drugsync::app::compose::index_definition(&config), &embedder, &query(text, 10, Some("@is_generic:{false"))).await {
            Err(SearchError::BadFilter { filter, message }) => {
                assert_eq!(filter, "@is_generic:{false");
                assert!(!message.is_empty());
            }
            other => panic!("a bad filter must be refused with RediSearch's message, got {other:?}"),
        }
        run.stop().await;
    }
}

on_each_server! {
    /// Searching with another embedder than the live version's is refused,
    /// naming both versions and their dimensions; the binary prints JSON hits.
    async fn search_refuses_another_embedder_and_the_binary_prints_json(flavour) {
        let (env, run) = live_env(flavour, "search_refuse").await;
        let config = env.config();
        let other_text = env.config_text.replacen(
            &format!("dimensions = {}", config.embed.dimensions),
            &format!("dimensions = {}", config.embed.dimensions * 2),
            1,
        );
        let other = crate::common::parse_config(&other_text);
        let err = search(&other.redis, &drugsync::app::compose::index_definition(&other), &local_embedder(&other), &query("statin", 5, None)).await.unwrap_err();
        let message = err.to_string();
        let live = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&config)).index;
        let configured = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&other)).index;
        assert!(matches!(err, SearchError::EmbedderMismatch { .. }), "{message}");
        assert!(message.contains(&live) && message.contains(&configured), "names both versions: {message}");
        assert!(message.contains(&config.embed.dimensions.to_string()) && message.contains(&other.embed.dimensions.to_string()));

        let output = env
            .binary_command(&env.config_text, "search.log")
            .args(["search", "cholesterol", "--k", "3", "--fields", "route,is_generic", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", std::fs::read_to_string(env.log_path("search.log")).unwrap());
        let hits: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let hits = hits.as_array().unwrap();
        assert_eq!(hits.len(), 3);
        assert!(hits.iter().all(|h| h["fields"]["drug_name"].is_string() && h["fields"]["is_generic"].is_string()), "{hits:?}");
        run.stop().await;
    }
}

on_each_server! {
    /// `--ndc` shows one document's state as Redis holds it: a healthy one,
    /// then one quarantined, one owed its vector and one RediSearch could
    /// not index (each state set by the test through its own connection),
    /// and what the source builds for it (its text, in sync or not).
    async fn one_document_shows_indexed_quarantined_owed_and_unindexed(flavour) {
        use drugsync::app::search::document::inspect;
        let (env, run) = live_env(flavour, "search_ndc").await;
        run.stop().await;
        let config = env.config();
        let space = local_embedder(&config).space().clone();
        let expected = env.expected().await;
        let ndcs: Vec<String> = expected.keys().take(4).cloned().collect();
        let healthy = inspect(&config, space.clone(), &ndcs[0]).await.unwrap();
        assert!(healthy.in_redis && healthy.indexed && healthy.source.present && healthy.source.in_sync, "{healthy:?}");
        assert_eq!(healthy.source.text.as_deref(), Some(expected[&ndcs[0]].text.as_str()), "the embedded text, by the oracle");
        assert_eq!(healthy.vector.as_ref().map(|v| v.dimensions), Some(config.embed.dimensions));
        assert_eq!((healthy.quarantine.as_deref(), healthy.owed_since), (None, None));
        assert_eq!(healthy.fields.get("drug_name"), expected[&ndcs[0]].fields.get("drug_name"));

        let keys = drugsync::sink::keys::VersionKeys::of(&config.redis.state_prefix, &drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&config)).index);
        let mut redis = env.redis.clone();
        let entry = r#"{"reason":"refused by the model (test)"}"#;
        let _: () = redis::cmd("HSET").arg(&keys.quarantine).arg(&ndcs[1]).arg(entry).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("ZADD").arg(&keys.pending).arg(1_700_000_000).arg(&ndcs[2]).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("HDEL").arg(format!("{}{}", env.prefix, ndcs[2])).arg(&config.index.vector_field).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("HSET").arg(format!("{}{}", env.prefix, ndcs[3])).arg("gcn_seqno").arg("N/A").query_async(&mut redis).await.unwrap();

        let quarantined = inspect(&config, space.clone(), &ndcs[1]).await.unwrap();
        assert_eq!(quarantined.quarantine.as_deref(), Some(entry), "{quarantined:?}");
        let owed = inspect(&config, space.clone(), &ndcs[2]).await.unwrap();
        assert_eq!((owed.owed_since, owed.vector.as_ref()), (Some(1_700_000_000), None), "{owed:?}");
        let unindexed = inspect(&config, space.clone(), &ndcs[3]).await.unwrap();
        assert!(unindexed.in_redis && !unindexed.indexed, "a hash RediSearch could not index: {unindexed:?}");
        assert_eq!(unindexed.fields.get("gcn_seqno").map(String::as_str), Some("N/A"), "the stored value that made it so");

        let absent = inspect(&config, space, "99999999999").await.unwrap();
        assert!(!absent.in_redis && !absent.indexed && !absent.source.present && absent.source.in_sync, "{absent:?}");

        let output = env
            .binary_command(&env.config_text, "search-ndc.log")
            .args(["search", "--ndc", &ndcs[1]])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", std::fs::read_to_string(env.log_path("search-ndc.log")).unwrap());
        let table = String::from_utf8_lossy(&output.stdout);
        assert!(table.contains("refused by the model (test)") && table.contains("embedded text"), "{table}");
    }
}

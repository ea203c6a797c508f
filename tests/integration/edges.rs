//! No silent loss at the edges: what drugsync checks of the embedding
//! service's answers before anything reaches Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{self, TEST_DIMENSIONS, TestEnv, on_each_server};

/// An OpenAI-compatible server that answers, for a text containing
/// "OVERFLOW", a vector whose first component is `1e39` (past f32's range)
/// until it is healed, and for one containing "POISON" always; every other
/// text gets the offline embedder's vector.
struct Overflowing {
    healed: Arc<AtomicBool>,
}

impl Respond for Overflowing {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let inputs: Vec<&str> = body["input"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let data: Vec<serde_json::Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let vector = drugsync::embed::LocalEmbedder::new(TEST_DIMENSIONS, 1).vector(text);
                let mut json: Vec<serde_json::Value> = vector.iter().map(|x| serde_json::json!(x)).collect();
                if (text.contains("OVERFLOW") && !self.healed.load(Ordering::SeqCst)) || text.contains("POISON") {
                    json[0] = serde_json::json!(1e39f64);
                }
                serde_json::json!({"object": "embedding", "index": i, "embedding": json})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}
        }))
    }
}

/// Every vector stored under `pattern` (documents' `embedding` fields, or
/// cache entries), as the test reads them: each must be all finite numbers.
async fn non_finite_vectors(env: &TestEnv, pattern: &str, field: Option<&str>) -> Vec<String> {
    let mut redis = env.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut redis).await.unwrap();
    let mut bad = Vec::new();
    for key in keys {
        let bytes: Option<Vec<u8>> = match field {
            Some(field) => redis::cmd("HGET").arg(&key).arg(field).query_async(&mut redis).await.unwrap(),
            None => redis::cmd("GET").arg(&key).query_async(&mut redis).await.ok().flatten(),
        };
        let Some(bytes) = bytes else { continue };
        let finite = bytes.chunks_exact(4).all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite());
        if !finite {
            bad.push(key);
        }
    }
    bad
}

on_each_server! {
    /// An embedding service answering a vector past f32's range (which
    /// normalising turns into NaN) must not have it written or cached: the
    /// documents of that text are owed (written without a vector, counted),
    /// the position moves on, and the vectors are filled once the service
    /// answers well. Before the check, every such document was indexed with
    /// a NaN vector and KNN answered `-nan` scores.
    async fn vectors_that_are_not_finite_numbers_are_never_written_or_cached(flavour) {
        let mut env = TestEnv::new(flavour, "nanvec", 300).await;
        let server = MockServer::start().await;
        let healed = Arc::new(AtomicBool::new(false));
        Mock::given(method("POST"))
            .and(path("/v1/embeddings"))
            .respond_with(Overflowing { healed: healed.clone() })
            .mount(&server)
            .await;
        let config = env
            .config_text
            .replacen("provider = \"local\"", &format!("provider = \"openai\"\nendpoint_url = \"{}\"\nbatch_size = 16", server.uri()), 1)
            .replacen("model_id = \"amazon.titan-embed-text-v2:0\"", "model_id = \"BAAI/bge-small-en-v1.5\"", 1)
            .replacen("normalize = true", "normalize = false", 1);
        env.use_config(config.clone());
        let mut child = env.binary_command(&config, "run.log").env("DRUGSYNC_EMBED_API_KEY", "sk-s3cret-edges").arg("run").spawn().unwrap();
        env.wait_caught_up().await;

        let gcn: u32 = env.strings("SELECT MIN(GCN_SEQNO) FROM rgcnseq4").await[0].parse().unwrap();
        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = 'OVERFLOW 5 MG' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_applied().await;
        let of_gcn = env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await;
        assert!(!of_gcn.is_empty());
        assert_eq!(non_finite_vectors(&env, &format!("{}*", env.prefix), Some("embedding")).await, Vec::<String>::new());
        assert_eq!(non_finite_vectors(&env, &format!("ds:{}:vec:*", env.name), None).await, Vec::<String>::new());
        // Exactly the formulation's NDCs are owed, with their new fields and no vector.
        let mut redis = env.redis.clone();
        let owed: Vec<String> = redis::cmd("ZRANGE").arg(env.owed_key()).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
        let mut owed: Vec<String> = owed.iter().map(|k| k.strip_prefix(&env.prefix).unwrap_or(k).to_owned()).collect();
        owed.sort();
        assert_eq!(owed, of_gcn, "the formulation's documents are owed a vector");
        assert_eq!(env.field(&of_gcn[0], "strength").await.as_deref(), Some("OVERFLOW 5 MG"));
        assert_eq!(env.field(&of_gcn[0], "embedding").await, None, "written without a vector, never with NaN");

        healed.store(true, Ordering::SeqCst);
        common::eventually(Duration::from_secs(60), Duration::from_millis(100), "the owed vectors filled", async || {
            let owed: u64 = redis::cmd("ZCARD").arg(env.owed_key()).query_async(&mut redis).await.unwrap();
            if owed == 0 { Ok(()) } else { Err(format!("{owed} owed")) }
        })
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(child.try_wait().unwrap().is_none(), "drugsync kept running");
        child.kill().ok();
        child.wait().ok();
    }
}

/// The owed set, without the key prefix, sorted.
async fn owed_ndcs(env: &TestEnv) -> Vec<String> {
    let mut redis = env.redis.clone();
    let owed: Vec<String> = redis::cmd("ZRANGE").arg(env.owed_key()).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
    let mut owed: Vec<String> = owed.iter().map(|k| k.strip_prefix(&env.prefix).unwrap_or(k).to_owned()).collect();
    owed.sort();
    owed
}

on_each_server! {
    /// One text the service keeps failing must not hold back the other owed
    /// vectors. The poisoned formulation's documents are owed first, so they
    /// are the oldest, and more of them than a write chunk: a filler that
    /// always retries the oldest chunk never reaches the rest (it did).
    async fn one_text_the_service_keeps_failing_holds_back_no_other_owed_vector(flavour) {
        let mut env = TestEnv::new(flavour, "owedhol", 300).await;
        let server = MockServer::start().await;
        let healed = Arc::new(AtomicBool::new(false));
        Mock::given(method("POST")).and(path("/v1/embeddings")).respond_with(Overflowing { healed: healed.clone() }).mount(&server).await;
        let config = env
            .config_text
            .replacen("provider = \"local\"", &format!("provider = \"openai\"\nendpoint_url = \"{}\"\nbatch_size = 16", server.uri()), 1)
            .replacen("model_id = \"amazon.titan-embed-text-v2:0\"", "model_id = \"BAAI/bge-small-en-v1.5\"", 1)
            .replacen("normalize = true", "normalize = false", 1)
            .replacen("write_chunk = 100", "write_chunk = 2", 1);
        assert!(config.contains("write_chunk = 2"));
        env.use_config(config.clone());
        let mut child = env.binary_command(&config, "run.log").env("DRUGSYNC_EMBED_API_KEY", "sk-s3cret-edges").arg("run").spawn().unwrap();
        env.wait_caught_up().await;

        let busiest = env
            .strings("SELECT GCN_SEQNO FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY GCN_SEQNO HAVING COUNT(*) >= 3 ORDER BY COUNT(*) DESC, GCN_SEQNO LIMIT 2")
            .await;
        assert_eq!(busiest.len(), 2, "the fixture has two formulations with three active NDCs or more");
        let (poisoned, healing) = (&busiest[0], &busiest[1]);
        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = 'POISON 5 MG' WHERE GCN_SEQNO = {poisoned}")]).await;
        env.wait_applied().await;
        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = 'OVERFLOW 7 MG' WHERE GCN_SEQNO = {healing}")]).await;
        env.wait_applied().await;
        let of_poisoned = env.active_ndcs_where(&format!("n.GCN_SEQNO = {poisoned}")).await;
        let of_healing = env.active_ndcs_where(&format!("n.GCN_SEQNO = {healing}")).await;
        let mut both: Vec<String> = of_poisoned.iter().chain(&of_healing).cloned().collect();
        both.sort();
        assert_eq!(owed_ndcs(&env).await, both, "both formulations' documents are owed");

        healed.store(true, Ordering::SeqCst);
        common::eventually(Duration::from_secs(60), Duration::from_millis(200), "only the poisoned formulation still owed", async || {
            let owed = owed_ndcs(&env).await;
            if owed == of_poisoned { Ok(()) } else { Err(format!("{} owed: {owed:?}", owed.len())) }
        })
        .await;
        let mut redis = env.redis.clone();
        for ndc in &of_healing {
            let has: bool = redis::cmd("HEXISTS").arg(format!("{}{ndc}", env.prefix)).arg("embedding").query_async(&mut redis).await.unwrap();
            assert!(has, "{ndc} got its vector");
        }
        for ndc in &of_poisoned {
            let has: bool = redis::cmd("HEXISTS").arg(format!("{}{ndc}", env.prefix)).arg("embedding").query_async(&mut redis).await.unwrap();
            assert!(!has, "{ndc}: still no vector, never a bad one");
            assert_eq!(env.field(ndc, "strength").await.as_deref(), Some("POISON 5 MG"), "{ndc} keeps its new fields");
        }
        assert!(child.try_wait().unwrap().is_none(), "drugsync kept running");
        child.kill().ok();
        child.wait().ok();
    }
}

on_each_server! {
    /// Someone else's index behind drugsync's alias (`FT.ALIASADD drugs_idx
    /// products`). drugsync used to switch the alias to its version and drop
    /// `products` with DD, deleting every `product:` key. It must refuse at
    /// start with the way out, delete nothing, and, once the operator moves
    /// the alias as told, build its own version and leave `products` alone.
    async fn an_index_drugsync_did_not_build_behind_its_alias_is_never_dropped(flavour) {
        let env = TestEnv::new(flavour, "foreignidx", 60).await;
        let mut redis = env.redis.clone();
        let products = format!("products_{}", env.name);
        let prefix = format!("product_{}:", env.name);
        let _: Result<(), _> = redis::cmd("FT.DROPINDEX").arg(&products).query_async(&mut redis).await;
        let _: () = redis::cmd("FT.CREATE")
            .arg(&products)
            .arg(&["ON", "HASH", "PREFIX", "1", prefix.as_str(), "SCHEMA", "name", "TEXT"][..])
            .query_async(&mut redis)
            .await
            .unwrap();
        for (id, name) in [("1", "aspirin 81 mg"), ("2", "ibuprofen 200 mg")] {
            let _: () = redis::cmd("HSET").arg(format!("{prefix}{id}")).arg("name").arg(name).query_async(&mut redis).await.unwrap();
        }
        let _: () = redis::cmd("FT.ALIASADD").arg(&env.index).arg(&products).query_async(&mut redis).await.unwrap();
        let theirs = async |redis: &mut redis::aio::ConnectionManager| -> (bool, u64) {
            let index = redis::cmd("FT.INFO").arg(&products).query_async::<redis::Value>(redis).await.is_ok();
            let keys: u64 = redis::cmd("EXISTS").arg(format!("{prefix}1")).arg(format!("{prefix}2")).query_async(redis).await.unwrap();
            (index, keys)
        };

        let refused = env.start().await;
        let outcome = tokio::time::timeout(Duration::from_secs(30), refused.handle).await.expect("drugsync stops").unwrap();
        let message = outcome.expect_err("a foreign index behind the alias is refused").to_string();
        assert!(message.contains(&products) && message.contains(&format!("FT.ALIASDEL {}", env.index)), "{message}");
        assert_eq!(theirs(&mut redis).await, (true, 2), "nothing of theirs was touched");

        // The way out the message names.
        let _: () = redis::cmd("FT.ALIASDEL").arg(&env.index).query_async(&mut redis).await.unwrap();
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
        assert_eq!(theirs(&mut redis).await, (true, 2), "their index and documents outlive drugsync's version");
        let _: () = redis::cmd("FT.DROPINDEX").arg(&products).arg("DD").query_async(&mut redis).await.unwrap();
    }
}

on_each_server! {
    /// Redis emptied (a restart without persistence) while the source is
    /// quiet, then the index dropped behind drugsync's back: FDB is quiet for
    /// hours at night, and search stayed down with green probes until the
    /// next source transaction. drugsync must notice within seconds with no
    /// source traffic at all, and rebuild.
    async fn redis_emptied_or_the_index_dropped_while_the_source_is_quiet_is_rebuilt(flavour) {
        let redis_server = common::PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "emptied", 200, &redis_server.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let mut redis = env.redis.clone();
        let expected = env.expected().await.len();
        let index_answers = async |redis: &mut redis::aio::ConnectionManager| -> Result<(), String> {
            let info: Vec<redis::Value> = redis::cmd("FT.INFO").arg(&env.index).query_async(redis).await.map_err(|e| e.to_string())?;
            let docs = info
                .chunks(2)
                .find(|pair| redis::from_redis_value::<String>(pair[0].clone()).is_ok_and(|name| name == "num_docs"))
                .and_then(|pair| redis::from_redis_value::<String>(pair[1].clone()).ok().or_else(|| redis::from_redis_value::<u64>(pair[1].clone()).ok().map(|n| n.to_string())))
                .ok_or("no num_docs")?;
            if docs == expected.to_string() { Ok(()) } else { Err(format!("{docs} of {expected} documents")) }
        };

        let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await.unwrap();
        common::eventually(Duration::from_secs(15), Duration::from_millis(100), "the index rebuilt after FLUSHALL", async || index_answers(&mut redis).await).await;
        env.assert_matches_mysql().await;

        let version = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&env.config())).index;
        let _: () = redis::cmd("FT.DROPINDEX").arg(&version).query_async(&mut redis).await.unwrap();
        common::eventually(Duration::from_secs(15), Duration::from_millis(100), "the index created again after FT.DROPINDEX", async || index_answers(&mut redis).await).await;
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished(), "drugsync kept running");
        run.stop().await;
    }
}

on_each_server! {
    /// A Redis with `maxmemory` and `allkeys-lru` (a cache's setting, close to
    /// ElastiCache's default) evicts documents with nothing to say so: 4,055 of
    /// 5,505 went missing behind a green /readyz. drugsync refuses it at start
    /// with the fix; an operator who insists (`redis.allow_eviction = true`)
    /// gets a writer that says it is not ready; the fix named clears it.
    async fn a_redis_that_may_evict_is_refused_or_reported_not_ready(flavour) {
        let redis_server = common::PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "evicting", 100, &redis_server.url()).await;
        let mut redis = env.redis.clone();
        for (name, value) in [("maxmemory", "30mb"), ("maxmemory-policy", "allkeys-lru")] {
            let _: () = redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query_async(&mut redis).await.unwrap();
        }
        let message = env.connect_error(&env.config_text).await.expect("an evicting Redis is refused");
        assert!(message.contains("allkeys-lru") && message.contains("noeviction") && message.contains("allow_eviction"), "{message}");

        let insisting = env.config_text.replacen("lease_ttl_secs = 10", "lease_ttl_secs = 10\nallow_eviction = true", 1);
        assert_ne!(insisting, env.config_text);
        let run = env.start_with(&insisting).await;
        env.wait_caught_up().await;
        let verdict = drugsync::observe::health::readiness(&drugsync::app::metrics::observe(&run.stats), &drugsync::app::metrics::bounds(&env.config()));
        assert!(!verdict.ok && verdict.failing.iter().any(|f| f.contains("evict")), "{verdict:?}");
        run.stop().await;

        // The fix the refusal names.
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query_async(&mut redis).await.unwrap();
        let run = env.start().await;
        env.wait_caught_up().await;
        let verdict = drugsync::observe::health::readiness(&drugsync::app::metrics::observe(&run.stats), &drugsync::app::metrics::bounds(&env.config()));
        assert!(!verdict.failing.iter().any(|f| f.contains("evict")), "{verdict:?}");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    /// A batch stuck behind a lock: `LOCK TABLES rlblrid3 WRITE` held while
    /// an `rndc14` row changes, so the re-read of its document waits. The
    /// lag used to be that of the last batch that did apply (0) and /readyz
    /// stayed 200 for minutes. Lag is now the age of the oldest transaction
    /// not yet applied: it grows past `ready_max_lag_secs` and readiness
    /// falls; once the lock goes, the change arrives and the lag is 0 again.
    async fn a_batch_stuck_behind_a_lock_shows_as_lag_and_not_ready(flavour) {
        let mut env = TestEnv::new(flavour, "stuckbatch", 100).await;
        env.config_text = env.config_text.replacen("[metrics]", "[metrics]\nready_max_lag_secs = 2", 1);
        let run = env.start().await;
        env.wait_caught_up().await;
        let bounds = drugsync::app::metrics::bounds(&env.config());
        assert_eq!(bounds.lag, Duration::from_secs(2));
        let ndc = env.active_ndcs_where("1=1").await[0].clone();

        let mut lock = env.mysql().await;
        use mysql_async::prelude::Queryable;
        lock.query_drop("LOCK TABLES rlblrid3 WRITE").await.unwrap();
        env.exec(&[&format!("UPDATE rndc14 SET LN60 = 'AFTER THE LOCK' WHERE NDC = '{ndc}'")]).await;
        let verdict = common::eventually(Duration::from_secs(20), Duration::from_millis(200), "readiness falls on lag", async || {
            let verdict = drugsync::observe::health::readiness(&drugsync::app::metrics::observe(&run.stats), &bounds);
            if verdict.failing.iter().any(|f| f.contains("lag")) { Ok(verdict) } else { Err(format!("{verdict:?}")) }
        })
        .await;
        assert!(!verdict.ok && run.stats.lag() >= Duration::from_secs(2), "{verdict:?}");
        assert_ne!(env.field(&ndc, "drug_name").await.as_deref(), Some("AFTER THE LOCK"), "the change is held by the lock");

        lock.query_drop("UNLOCK TABLES").await.unwrap();
        lock.disconnect().await.unwrap();
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "drug_name").await.as_deref(), Some("AFTER THE LOCK"));
        common::eventually(Duration::from_secs(10), Duration::from_millis(100), "the lag back to zero", async || {
            if run.stats.lag() == Duration::ZERO { Ok(()) } else { Err(format!("{:?}", run.stats.lag())) }
        })
        .await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

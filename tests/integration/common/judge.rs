//! Waiting for drugsync and judging what Redis holds: against the oracle,
//! the mapping, RediSearch's counts.

use super::*;

impl TestEnv {
    /// Makes both positions `position` (the local checkpoint and Redis's), as
    /// a failover or a restored copy would leave them; the next start reads them.
    pub async fn store_position(&self, position: &Position) {
        drugsync::checkpoint::CheckpointStore::open(&self.config().checkpoint.path).unwrap().reset(position).unwrap();
        let mut redis = self.redis.clone();
        let _: () = redis::cmd("SET").arg(&self.position_key).arg(position.to_string()).query_async(&mut redis).await.unwrap();
    }

    /// The sorted set of documents whose vector is owed (see `sink::queues`).
    pub fn owed_key(&self) -> String {
        self.position_key.strip_suffix(":position").map(|stem| format!("{stem}:pending")).expect("position key ends in :position")
    }

    /// Waits until Redis holds a position at or past the source's current
    /// end of binlog, and owes no vector (a document written during an
    /// embedding outage is not caught up until its vector is in).
    pub async fn wait_caught_up(&self) {
        self.wait_until_applied(true).await;
    }

    /// Waits until Redis holds a position at or past the source's current
    /// end of binlog, whatever vectors are still owed.
    pub async fn wait_applied(&self) {
        self.wait_until_applied(false).await;
    }

    async fn wait_until_applied(&self, owing_nothing: bool) {
        let target = self.master_position().await;
        let key = self.position_key.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut redis = self.redis.clone();
        loop {
            // An error (Redis restarting under a test) is "not yet"; the manager reconnects.
            let text: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap_or_else(|e| {
                eprintln!("waiting for Redis: {e}");
                None
            });
            // A position of another lineage (before a GTID fallback) is simply not there yet.
            // Caught up, and the alias switched to the version that holds it (the
            // initial load writes its position just before the switch).
            if let Some(Ok(order)) = text.and_then(|t| t.parse::<Position>().ok()).map(|p| p.try_cmp(&target))
                && order != std::cmp::Ordering::Less
                && redis::cmd("FT.INFO").arg(&self.index).query_async::<redis::Value>(&mut redis).await.is_ok()
                && (!owing_nothing
                    || redis::cmd("ZCARD").arg(self.owed_key()).query_async::<u64>(&mut redis).await.is_ok_and(|owed| owed == 0))
            {
                return;
            }
            assert!(Instant::now() < deadline, "replicator did not reach {target} within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the index should hold: the test-owned [`oracle`] (its own SQL and
    /// formatting, nothing from `src/mapping`). A test that changes the
    /// mapping says what the change means in the oracle's terms and is judged
    /// by [`Self::assert_matches_oracle`]; judging it by drugsync's own loader
    /// would compute a wrong join the same wrong way on both sides.
    pub async fn expected(&self) -> BTreeMap<String, Expected> {
        assert!(
            is_reference_mapping(&self.config()),
            "the mapping differs from the reference: judge it with assert_matches_oracle and an oracle::Variant that says what the change means"
        );
        self.expected_by_oracle(oracle::Variant::REFERENCE).await
    }

    /// Every document hash under the test's prefix, as field -> raw bytes.
    pub async fn actual(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let mut redis = self.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query_async(&mut redis).await.unwrap();
        let mut out = BTreeMap::new();
        for key in keys {
            let hash: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL").arg(&key).query_async(&mut redis).await.unwrap();
            out.insert(key.strip_prefix(&self.prefix).unwrap().to_owned(), hash);
        }
        out
    }

    /// Asserts the index equals the documents computed from MySQL: same keys,
    /// every configured field, and each vector equal to its text's embedding.
    pub async fn assert_matches_mysql(&self) {
        self.assert_matches(self.expected().await).await;
    }

    /// What the oracle expects for a mapping changed as `variant` says.
    pub async fn expected_by_oracle(&self, variant: oracle::Variant) -> BTreeMap<String, Expected> {
        let embedder = local_embedder(&self.config());
        let limit = self.config().embed.input_char_limit();
        let mut conn = self.mysql().await;
        let documents = oracle::expected_documents_of(&mut conn, variant).await;
        conn.disconnect().await.unwrap();
        documents
            .into_iter()
            .map(|(ndc, doc)| {
                let vector = embedder.vector(cut_as_documented(&doc.text, limit));
                (ndc, Expected { fields: doc.fields, text: doc.text, vector })
            })
            .collect()
    }

    /// [`Self::assert_matches_mysql`] judged by the oracle for a changed
    /// mapping (`variant`), whatever the config says: for the tests that
    /// change the mapping, which drugsync's own loader must not judge.
    pub async fn assert_matches_oracle(&self, variant: oracle::Variant) {
        self.assert_matches(self.expected_by_oracle(variant).await).await;
    }

    /// The index holds exactly `expected`: the same documents, each field, each vector.
    async fn assert_matches(&self, expected: BTreeMap<String, Expected>) {
        let actual = self.actual().await;
        let missing: Vec<_> = expected.keys().filter(|k| !actual.contains_key(*k)).take(5).collect();
        let orphans: Vec<_> = actual.keys().filter(|k| !expected.contains_key(*k)).take(5).collect();
        assert!(
            missing.is_empty() && orphans.is_empty(),
            "missing {missing:?}, orphans {orphans:?} (expected {}, actual {})",
            expected.len(),
            actual.len()
        );
        let config = self.config();
        let field_names: Vec<String> = config.index.fields.iter().map(|f| f.name.clone()).collect();
        for (key, want) in &expected {
            let have = &actual[key];
            for name in &field_names {
                let have_value = have.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
                assert_eq!(have_value.as_deref(), want.fields.get(name).map(String::as_str), "document {key} field {name}");
            }
            let vector =
                drugsync::embed::vector_from_bytes(have.get("embedding").unwrap_or_else(|| panic!("{key} has no embedding"))).unwrap();
            assert_eq!(vector, want.vector, "document {key}: vector does not match its text {:?}", want.text);
        }
    }

    /// FT.INFO num_docs and hash_indexing_failures. A field FT.INFO does not
    /// answer, or answers with something that is not a number, fails the
    /// test: a missing field must not read as a reassuring 0.
    pub async fn index_counts(&self) -> (u64, u64) {
        let mut redis = self.redis.clone();
        let info: Vec<redis::Value> = redis::cmd("FT.INFO").arg(&self.index).query_async(&mut redis).await.unwrap();
        let field = |wanted: &str| -> u64 {
            let pair = info
                .chunks(2)
                .find(|pair| redis::from_redis_value::<String>(pair[0].clone()).is_ok_and(|name| name == wanted))
                .unwrap_or_else(|| panic!("FT.INFO {} has no {wanted}", self.index));
            match &pair[1] {
                redis::Value::Int(i) => *i as u64,
                other => redis::from_redis_value::<String>(other.clone())
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|n| n as u64)
                    .unwrap_or_else(|| panic!("FT.INFO {wanted} is not a number: {other:?}")),
            }
        };
        (field("num_docs"), field("hash_indexing_failures"))
    }

    pub async fn field(&self, ndc: &str, field: &str) -> Option<String> {
        let mut redis = self.redis.clone();
        redis::cmd("HGET").arg(format!("{}{ndc}", self.prefix)).arg(field).query_async(&mut redis).await.unwrap()
    }
}

/// `text` as the README says a text over the model's limit is sent: the
/// first `limit` characters, ended at the last whitespace among them unless
/// that drops more than a tenth of the limit. Written from that rule, not
/// from drugsync's `embed::cut`.
fn cut_as_documented(text: &str, limit: usize) -> &str {
    let Some((end, _)) = text.char_indices().nth(limit) else { return text };
    let within = &text[..end];
    let last_space = within.char_indices().rfind(|(_, c)| c.is_whitespace());
    match last_space {
        Some((at, _)) if within[..at].chars().count() >= limit - limit / 10 && !within[..at].trim_end().is_empty() => {
            within[..at].trim_end()
        }
        _ => within,
    }
}

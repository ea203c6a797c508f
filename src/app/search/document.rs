//! `drugsync search --ndc KEY`: one document, as Redis holds it and as the
//! source would build it now. For an operator asking "why does search not
//! find this drug": is it in Redis, is it indexed, quarantined, owed its
//! vector, and does it match what MySQL says today.

use std::collections::BTreeMap;

use serde::Serialize;

use super::SearchError;
use crate::config::Config;
use crate::document::{DocumentKey, EmbeddingSpace};
use crate::sink::Documents;

/// The document view (`--output json` serialises it as is).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DocumentView {
    /// The document key.
    pub key: String,
    /// Its Redis key in the configured index version.
    pub redis_key: String,
    /// Redis has a hash for it.
    pub in_redis: bool,
    /// The index answers for it (searches can find it).
    pub indexed: bool,
    /// Its stored fields (hashes and position included, the vector apart).
    pub fields: BTreeMap<String, String>,
    /// Its vector: dimensions and length, when it has one.
    pub vector: Option<VectorView>,
    /// Its quarantine entry (reason, since, position), when quarantined.
    pub quarantine: Option<String>,
    /// Unix seconds since its vector has been owed, when it is.
    pub owed_since: Option<u64>,
    /// The document as the source builds it now.
    pub source: SourceView,
}

/// A stored vector, summarised.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VectorView {
    /// Components (bytes / 4).
    pub dimensions: usize,
    /// Its L2 norm.
    pub norm: f64,
}

/// The document as MySQL's rows build it now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceView {
    /// The mapping yields a document for the key (an obsolete or unknown one does not).
    pub present: bool,
    /// The text that is embedded.
    pub text: Option<String>,
    /// Its text hash.
    pub text_hash: Option<String>,
    /// Its document hash.
    pub doc_hash: Option<String>,
    /// The stored document hash equals the source's.
    pub in_sync: bool,
}

/// Reads `key` from Redis and rebuilds it from the source, hashing its text
/// in `space` (the configured embedder's, as the writer does).
pub async fn inspect(config: &Config, space: EmbeddingSpace, key: &str) -> Result<DocumentView, SearchError> {
    let key = DocumentKey(key.to_owned());
    let sink = crate::app::compose::redis_sink(config).await?;
    let held = sink.held(&key).await?;
    let source = rebuild(config, space, &key).await?;
    let stored_hash = held.fields.get("doc_hash").cloned();
    let vector = held
        .vector
        .as_deref()
        .and_then(crate::embed::vector_from_bytes)
        .map(|v| VectorView { dimensions: v.len(), norm: crate::embed::l2_norm(&v) });
    Ok(DocumentView {
        redis_key: sink.key_of(&key),
        key: key.0,
        in_redis: !held.fields.is_empty() || held.vector.is_some(),
        indexed: held.indexed,
        vector,
        quarantine: held.quarantine,
        owed_since: held.owed_since,
        source: SourceView {
            present: source.is_some(),
            in_sync: match (&source, &stored_hash) {
                (Some(doc), Some(stored)) => doc.doc_hash.0 == *stored,
                // Neither side has it: nothing to be out of sync with.
                (None, None) => true,
                _ => false,
            },
            text_hash: source.as_ref().map(|d| d.text_hash.0.clone()),
            doc_hash: source.as_ref().map(|d| d.doc_hash.0.clone()),
            text: source.map(|d| d.text),
        },
        fields: held.fields,
    })
}

/// The document the mapping builds for `key` from MySQL now, if any.
async fn rebuild(config: &Config, space: EmbeddingSpace, key: &DocumentKey) -> Result<Option<crate::document::Document>, SearchError> {
    let opts = crate::mysql::connect::mysql_opts(&config.mysql)?;
    let pool = mysql_async::Pool::new(opts);
    let loaded = async {
        let mut conn = crate::mysql::connect::pooled(&pool).await?;
        let loader = crate::app::compose::document_loader(config, space);
        loader.load(&mut conn, std::slice::from_ref(key)).await
    }
    .await;
    crate::mysql::connect::close_pool(pool).await;
    Ok(loaded?.remove(key))
}

impl DocumentView {
    /// The view for people: one line per fact, then the stored fields.
    pub fn to_table(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut lines = vec![
            ("key", self.key.clone()),
            ("redis key", self.redis_key.clone()),
            ("in redis", yes_no(self.in_redis).to_owned()),
            ("indexed", yes_no(self.indexed).to_owned()),
            ("vector", self.vector.as_ref().map_or("none".to_owned(), |v| format!("{} dimensions, length {:.4}", v.dimensions, v.norm))),
            ("quarantined", self.quarantine.clone().unwrap_or_else(|| "no".to_owned())),
            ("vector owed", self.owed_since.map_or("no".to_owned(), |s| format!("since {s} (unix seconds)"))),
            ("in the source", yes_no(self.source.present).to_owned()),
            ("in sync", yes_no(self.source.in_sync).to_owned()),
            ("embedded text", self.source.text.clone().unwrap_or_default()),
        ];
        lines.extend(self.fields.iter().map(|(k, v)| (k.as_str(), v.clone())));
        lines.iter().map(|(k, v)| format!("{k:<16} {v}\n")).collect()
    }
}

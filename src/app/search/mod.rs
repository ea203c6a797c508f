//! `drugsync search`: the live index answering a question, as the search
//! product asks it (through the alias), for operators checking what a
//! search returns after an alias switch, a reconcile or a model change.
//!
//! The query is embedded by the configured provider and refused when that
//! is not the embedder the live version was built with (its vectors would be
//! compared with another model's). It only reads: no writer lease, so it
//! runs beside a writer and on a standby. [`document`] shows one document.

pub mod document;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::RedisConfig;
use crate::embed::{EmbedError, Embedder};
use crate::sink::{IndexDefinition, IndexVersion, RedisSink, SinkError};

/// What to ask.
#[derive(Debug, Clone)]
pub struct Query {
    /// The text, embedded as the documents' texts are.
    pub text: String,
    /// How many neighbours.
    pub k: usize,
    /// A RediSearch filter the neighbours must match (`@is_generic:{true}`).
    pub filter: Option<String>,
    /// Fields to show besides the drug name.
    pub fields: Vec<String>,
    /// One hit per embedded text, its nearest document ([`DISTINCT_LOOKAHEAD`]).
    pub distinct: bool,
    /// HNSW's candidate list for this query ([`DEFAULT_EF_RUNTIME`] by default).
    pub ef_runtime: usize,
}

/// The candidate list `drugsync search` asks HNSW for. The index's own
/// default (10) misses true nearest neighbours once documents have been
/// rewritten in place: on the demo's 4,983 documents, after one class rename
/// and its revert (261 statins rewritten twice), "cholesterol lowering
/// tablet" found no statin in its top 5 at 10 and the exact top 5 at 100.
/// An operator checking what the index holds wants the true neighbours.
pub const DEFAULT_EF_RUNTIME: usize = 200;

/// With [`Query::distinct`], how many neighbours per place are looked at:
/// package sizes and labelers of one product share its text (a product has
/// up to 8 NDCs in the sample data, more in FDB), so k places need more
/// than k neighbours. Fewer than k hits come back when the k * 20 nearest
/// hold fewer than k texts.
pub const DISTINCT_LOOKAHEAD: usize = 20;

/// The most neighbours one search asks RediSearch for.
const MAX_NEIGHBOURS: usize = 2_000;

/// One answer, nearest first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    /// The document key (the NDC for the reference mapping).
    pub key: String,
    /// Distance to the query in the index's metric (cosine: 0 is the same direction).
    pub score: f64,
    /// The fields shown.
    pub fields: BTreeMap<String, String>,
}

/// Why a search could not be answered; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Nothing answers behind the alias yet.
    #[error("no index answers behind the alias {alias}: start drugsync (its initial load creates it) and search once it is live")]
    NoIndex {
        /// The alias searched.
        alias: String,
    },
    /// The live version was built by another embedder than the configured one.
    #[error(
        "the live index {live} ({live_dimensions} dimensions, behind the alias {alias}) was not built by the configured embedder, which builds {configured} ({model}, {dimensions} dimensions): a query embedded by it would be compared with another model's vectors. Search with the config the writer runs with, or wait until drugsync has switched the alias to {configured}"
    )]
    EmbedderMismatch {
        /// The alias searched.
        alias: String,
        /// The index it serves.
        live: String,
        /// Its vector dimensions.
        live_dimensions: usize,
        /// The index the configured embedder builds.
        configured: String,
        /// The configured model.
        model: String,
        /// Its dimensions.
        dimensions: usize,
    },
    /// RediSearch refused the filter.
    #[error("RediSearch refused the filter {filter:?}: {message}")]
    BadFilter {
        /// The filter as given.
        filter: String,
        /// RediSearch's message.
        message: String,
    },
    /// Redis could not be asked.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The query could not be embedded.
    #[error("embedding the query failed: {0}")]
    Embed(#[from] EmbedError),
    /// The source could not rebuild the document (`--ndc`).
    #[error(transparent)]
    Source(#[from] crate::mysql::SourceError),
}

/// Runs `query` against the live index of `definition`'s alias in the
/// Redis of `redis`, embedded by `embedder`.
pub async fn search<E: Embedder>(
    redis: &RedisConfig,
    definition: &IndexDefinition,
    embedder: &E,
    query: &Query,
) -> Result<Vec<Hit>, SearchError> {
    let sink = RedisSink::connect(redis, definition).await?;
    let version = IndexVersion::of(definition);
    let live = sink.live_index().await?.ok_or_else(|| SearchError::NoIndex { alias: version.alias.clone() })?;
    let space = embedder.space();
    if live.name != version.index || live.dimensions != space.dimensions {
        return Err(SearchError::EmbedderMismatch {
            alias: version.alias.clone(),
            live: live.name,
            live_dimensions: live.dimensions,
            configured: version.index.clone(),
            model: space.model.clone(),
            dimensions: space.dimensions,
        });
    }
    let (text, _) = crate::embed::cut::cut_to_limit(&query.text, embedder.max_input_chars());
    let vector = embedder.embed_query(text).await?;
    let mut fields = vec!["drug_name".to_owned()];
    fields.extend(query.fields.iter().filter(|f| f.as_str() != "drug_name").cloned());
    let asked = if query.distinct { (query.k * DISTINCT_LOOKAHEAD).min(MAX_NEIGHBOURS) } else { query.k };
    if query.distinct {
        fields.push(TEXT_HASH.to_owned());
    }
    let neighbours = match sink.nearest(&vector, asked, Some(query.ef_runtime.max(asked)), query.filter.as_deref(), &fields).await {
        Err(SinkError::Command { message, .. }) if query.filter.is_some() => {
            return Err(SearchError::BadFilter { filter: query.filter.clone().unwrap_or_default(), message });
        }
        other => other?,
    };
    let mut seen = std::collections::HashSet::new();
    Ok(neighbours
        .into_iter()
        .filter(|n| !query.distinct || seen.insert(n.fields.get(TEXT_HASH).cloned()))
        .take(query.k)
        .map(|mut n| {
            if !query.fields.iter().any(|f| f == TEXT_HASH) {
                n.fields.remove(TEXT_HASH);
            }
            Hit { key: n.key.strip_prefix(&version.prefix).unwrap_or(&n.key).to_owned(), score: n.distance, fields: n.fields }
        })
        .collect())
}

/// The stored field that tells documents of the same embedded text.
const TEXT_HASH: &str = "text_hash";

/// The hits as an aligned table: rank, key, score, then each field.
pub fn to_table(hits: &[Hit], fields: &[String]) -> String {
    let mut columns = vec!["drug_name".to_owned()];
    columns.extend(fields.iter().filter(|f| f.as_str() != "drug_name").cloned());
    let mut out = format!("{:>4}  {:<14} {:>8}  {}\n", "#", "key", "score", columns.join("  |  "));
    for (rank, hit) in hits.iter().enumerate() {
        let values: Vec<&str> = columns.iter().map(|c| hit.fields.get(c).map_or("", String::as_str)).collect();
        out.push_str(&format!("{:>4}  {:<14} {:>8.4}  {}\n", rank + 1, hit.key, hit.score, values.join("  |  ")));
    }
    if hits.is_empty() {
        out.push_str("(no document matches)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_rank_key_score_and_the_fields_asked_for() {
        let hit = Hit {
            key: "00071015523".into(),
            score: 0.1234,
            fields: BTreeMap::from([("drug_name".into(), "LIPITOR 10 MG TABLET".into()), ("route".into(), "ORAL".into())]),
        };
        let table = to_table(&[hit], &["route".into()]);
        assert!(table.lines().nth(1).unwrap().contains("00071015523") && table.contains("0.1234"), "{table}");
        assert!(table.contains("LIPITOR 10 MG TABLET  |  ORAL"), "{table}");
        assert!(to_table(&[], &[]).contains("no document matches"));
    }
}

//! Vectors for distinct texts: from a set just prepared, from the cache,
//! else from the embedding service, a text at most once.

use crate::observe::stats::Counter;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::apply::RunError;
use crate::document::TextHash;
use crate::embed::{Outcome, SharedEmbedder, embed_each};
use crate::observe::Stats;
use crate::sink::DocumentSink;

/// What a document whose new text cannot be embedded now (the service is
/// throttling, failing or unreachable) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Its chunk fails transiently and is retried: nothing is written
    /// without its vector. For the initial load, which must not switch the
    /// alias to an index missing vectors.
    Wait,
    /// It is written without its vector and the vector is owed (see
    /// `sink::queues`): the position moves on. For everything after the
    /// initial load, so an outage does not freeze freshness.
    Owe,
    /// It is left as it is: not written, still owed. For filling owed
    /// vectors, where the documents are already written without one: the
    /// texts that did come back are written, so one text the service keeps
    /// failing holds back no other.
    Leave,
}

/// Where vectors come from: the cache in the sink and the embedding service
/// (a view of the syncer's handles for one preparation).
pub(super) struct VectorSources<'a, S> {
    pub(super) sink: &'a S,
    pub(super) embedder: &'a SharedEmbedder,
    pub(super) stats: &'a Stats,
    /// `embed.concurrency`: calls in flight.
    pub(super) concurrency: usize,
}

/// The vectors a [`crate::apply::sync::Prepared`] set fetched or computed: a set prepared
/// while it is being written looks here before the cache, which holds them
/// only once that write is acknowledged. Without it a text shared by two
/// adjacent sets would be embedded twice.
#[derive(Clone)]
pub struct RecentVectors(pub(super) Arc<HashMap<TextHash, VectorFor>>);

/// Where the vector of one distinct text comes from.
pub(super) enum VectorFor {
    /// Cached or just embedded.
    Vector(Arc<Vec<f32>>),
    /// The service refused the text: its documents are quarantined.
    Refused(String),
    /// The service could not answer: the vector is owed ([`WhenUnavailable::Owe`]).
    Owed,
    /// The service could not answer: the document is left as it is ([`WhenUnavailable::Leave`]).
    Later,
}

/// Vectors for distinct texts: from the cache where present, else one
/// embedding call each. A text the service refuses maps to its reason; one
/// it could not answer is owed or fails the chunk, as `unavailable` says.
pub(super) async fn vectors_for<S: DocumentSink>(
    s: &VectorSources<'_, S>,
    mut needed: BTreeMap<TextHash, String>,
    unavailable: WhenUnavailable,
    recent: Option<&RecentVectors>,
) -> Result<HashMap<TextHash, VectorFor>, RunError> {
    let mut out = HashMap::with_capacity(needed.len());
    if let Some(recent) = recent {
        needed.retain(|hash, _| match recent.0.get(hash) {
            Some(VectorFor::Vector(vector)) => {
                s.stats.count(Counter::CacheHit, 1);
                out.insert(hash.clone(), VectorFor::Vector(vector.clone()));
                false
            }
            _ => true,
        });
    }
    let hashes: Vec<&TextHash> = needed.keys().collect();
    let cached = s.sink.cached_vectors(&hashes).await?;
    let mut misses: Vec<(&TextHash, &str)> = Vec::new();
    for ((hash, text), hit) in needed.iter().zip(cached) {
        match hit {
            Some(vector) => {
                s.stats.count(Counter::CacheHit, 1);
                out.insert(hash.clone(), VectorFor::Vector(Arc::new(vector)));
            }
            None => misses.push((hash, text)),
        }
    }
    if !misses.is_empty() {
        let texts: Vec<&str> = misses.iter().map(|(_, t)| *t).collect();
        let outcomes = embed_each(s.embedder, &texts, s.concurrency, &s.stats.embed).await?;
        let mut failed = None;
        let mut got = Vec::new();
        for ((hash, _), outcome) in misses.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Vector(vector) => {
                    let vector = Arc::new(vector);
                    got.push((hash.clone(), vector.clone()));
                    out.insert(hash.clone(), VectorFor::Vector(vector));
                }
                Outcome::Refused(reason) => {
                    out.insert(hash.clone(), VectorFor::Refused(reason));
                }
                Outcome::Unavailable(e) => {
                    let later = if unavailable == WhenUnavailable::Leave { VectorFor::Later } else { VectorFor::Owed };
                    out.insert(hash.clone(), later);
                    failed.get_or_insert(e);
                }
            }
        }
        if let (Some(e), WhenUnavailable::Wait) = (failed, unavailable) {
            // The chunk is retried; the vectors that came back are not paid for twice.
            s.sink.cache_vectors(&got).await?;
            return Err(e.into());
        }
    }
    Ok(out)
}

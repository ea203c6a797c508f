//! Bringing Redis in line with a set of documents: the one place that diffs,
//! embeds and writes.
//!
//! For each chunk of keys: read what Redis holds (one pipelined round trip),
//! skip documents whose hash is unchanged, keep the stored vector when only
//! non-text fields changed, take vectors from the cache by text hash, embed
//! each remaining distinct text once, then write the chunk in one MULTI/EXEC.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mysql_async::prelude::Queryable;

use super::{Replicator, RunError, Stats};
use crate::document::{Document, DocumentChange, DocumentKey, TextHash};
use crate::embed::{Embedder, embed_distinct};
use crate::position::Position;

/// Loads the documents for `keys` and syncs them; `position` is stored with the last chunk.
pub async fn sync_keys<E: Embedder, Q: Queryable>(
    r: &Replicator<E>,
    conn: &mut Q,
    keys: Vec<DocumentKey>,
    position: Option<&Position>,
) -> Result<(), RunError> {
    if keys.is_empty() {
        return sync_documents(r, Vec::new(), position).await;
    }
    let chunk_size = r.config.pipeline.write_chunk;
    let chunks: Vec<&[DocumentKey]> = keys.chunks(chunk_size).collect();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut docs = r.loader.load(conn, chunk).await?;
        let wanted = chunk.iter().map(|k| (k.clone(), docs.remove(k))).collect();
        sync_documents(r, wanted, if i == last { position } else { None }).await?;
    }
    Ok(())
}

/// Makes Redis hold exactly `wanted` for these keys (`None` = must not exist).
/// Writes in chunks of `pipeline.write_chunk`; `position` goes with the last one,
/// so it is stored only once every chunk is acknowledged.
pub async fn sync_documents<E: Embedder>(
    r: &Replicator<E>,
    wanted: Vec<(DocumentKey, Option<Document>)>,
    position: Option<&Position>,
) -> Result<(), RunError> {
    if wanted.is_empty() {
        r.sink.apply(&[], position).await?;
        return Ok(());
    }
    let chunk_size = r.config.pipeline.write_chunk;
    let total = wanted.len().div_ceil(chunk_size);
    let mut wanted = wanted.into_iter();
    for i in 0..total {
        let chunk: Vec<_> = wanted.by_ref().take(chunk_size).collect();
        let changes = plan_chunk(r, chunk).await?;
        r.sink.apply(&changes, if i + 1 == total { position } else { None }).await?;
        super::progress::beat();
    }
    Ok(())
}

/// Decides the changes for one chunk and fetches or computes the vectors they need.
async fn plan_chunk<E: Embedder>(r: &Replicator<E>, chunk: Vec<(DocumentKey, Option<Document>)>) -> Result<Vec<DocumentChange>, RunError> {
    let keys: Vec<DocumentKey> = chunk.iter().map(|(k, _)| k.clone()).collect();
    let stored = r.sink.read_state(&keys).await?;
    let mut deletes = Vec::new();
    // (document, keep the stored vector)
    let mut upserts: Vec<(Document, bool)> = Vec::new();
    let mut needed: BTreeMap<TextHash, String> = BTreeMap::new();
    for ((key, doc), state) in chunk.into_iter().zip(stored) {
        match (doc, state) {
            (Some(doc), Some(state)) if state.doc_hash.as_deref() == Some(doc.doc_hash.as_str()) && state.vector_ok => {
                Stats::add(&r.stats.unchanged, 1);
            }
            (Some(doc), state) => {
                let keep = state.is_some_and(|s| s.vector_ok && s.text_hash.as_deref() == Some(doc.text_hash.0.as_str()));
                if !keep {
                    needed.entry(doc.text_hash.clone()).or_insert_with(|| doc.text.clone());
                }
                upserts.push((doc, keep));
            }
            (None, Some(_)) => deletes.push(DocumentChange::Delete(key)),
            (None, None) => {}
        }
    }
    let vectors = vectors_for(r, needed).await?;
    Stats::add(&r.stats.upserts, upserts.len() as u64);
    Stats::add(&r.stats.deletes, deletes.len() as u64);
    let mut changes: Vec<DocumentChange> = upserts
        .into_iter()
        .map(|(doc, keep)| {
            let vector = if keep { None } else { Some(vectors[&doc.text_hash].clone()) };
            DocumentChange::Upsert { doc, vector }
        })
        .collect();
    changes.extend(deletes);
    Ok(changes)
}

/// Vectors for distinct texts: from the cache where present, else one embedding call each.
async fn vectors_for<E: Embedder>(
    r: &Replicator<E>,
    needed: BTreeMap<TextHash, String>,
) -> Result<HashMap<TextHash, Arc<Vec<f32>>>, RunError> {
    let hashes: Vec<&TextHash> = needed.keys().collect();
    let cached = r.sink.cached_vectors(&hashes).await?;
    let mut out = HashMap::with_capacity(needed.len());
    let mut misses: Vec<(&TextHash, &str)> = Vec::new();
    for ((hash, text), hit) in needed.iter().zip(cached) {
        match hit {
            Some(vector) => {
                Stats::add(&r.stats.cache_hits, 1);
                out.insert(hash.clone(), Arc::new(vector));
            }
            None => misses.push((hash, text)),
        }
    }
    if !misses.is_empty() {
        let texts: Vec<&str> = misses.iter().map(|(_, t)| *t).collect();
        let vectors = embed_distinct(r.embedder.as_ref(), &texts, r.config.embed.concurrency, &r.stats.embed).await?;
        for ((hash, _), vector) in misses.into_iter().zip(vectors) {
            out.insert(hash.clone(), Arc::new(vector));
        }
    }
    Ok(out)
}

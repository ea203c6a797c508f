//! Bringing Redis in line with a set of documents: the one place that diffs,
//! embeds and writes.
//!
//! For each chunk of keys: read what Redis holds (one pipelined round trip),
//! skip documents whose hash is unchanged, keep the stored vector when only
//! non-text fields changed, take vectors from the cache by text hash, embed
//! each remaining distinct text once, then write the chunk in one MULTI/EXEC.

pub mod orphans;
pub mod vectors;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mysql_async::prelude::Queryable;

pub use vectors::{RecentVectors, WhenUnavailable};
use vectors::{VectorFor, VectorSources, vectors_for};

use super::committer::Committer;
use super::replicator::Connected;
use super::{RunError, Stats};
use crate::document::{Document, DocumentChange, DocumentKey, TextHash};
use crate::embed::Embedder;
use crate::error::Classify;
use crate::mapping::DocumentLoader;
use crate::position::Position;
use crate::sink::{DocumentSink, Sink};
use crate::source::SourceError;

/// What syncing documents uses, and nothing more (the stages build one
/// from the replicator's parts with [`Connected::syncer`]). It moves no
/// position by itself: a batch that ends at one passes a [`BatchEnd`].
pub struct Syncer<'a, E, S> {
    sink: &'a S,
    loader: &'a DocumentLoader,
    embedder: &'a E,
    stats: &'a Stats,
    /// `pipeline.write_chunk`: documents per atomic write.
    write_chunk: usize,
    /// `pipeline.load_chunk`: keys per load query, and per embedding round.
    load_chunk: usize,
    /// `embed.concurrency`: calls in flight.
    concurrency: usize,
}

impl<E: Embedder, S: Sink> Connected<E, S> {
    /// The parts syncing documents uses.
    pub fn syncer(&self) -> Syncer<'_, E, S> {
        Syncer {
            sink: &self.sink,
            loader: &self.loader,
            embedder: self.embedder.as_ref(),
            stats: &self.stats,
            write_chunk: self.config.pipeline.write_chunk,
            load_chunk: self.config.pipeline.load_chunk,
            concurrency: self.config.embed.concurrency,
        }
    }
}

/// Where a batch ends: its committer stores `position` with the batch's
/// last write, and only once every earlier write was acknowledged. Only a
/// streamer has one (a reconcile cannot move a position).
pub struct BatchEnd<'a, S> {
    /// The one writer of positions.
    pub committer: &'a Committer<'a, S>,
    /// The position the batch ends at.
    pub position: &'a Position,
}

impl<S> Clone for BatchEnd<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for BatchEnd<'_, S> {}

/// Loads the documents for `keys` and syncs them; `end`'s position is stored with the last chunk.
/// A key the source refuses to look up for good is quarantined (see
/// [`load_or_quarantine`]) and left as it is.
pub async fn sync_keys<E: Embedder, S: DocumentSink, Q: Queryable>(
    s: &Syncer<'_, E, S>,
    conn: &mut Q,
    keys: Vec<DocumentKey>,
    end: Option<BatchEnd<'_, S>>,
    unavailable: WhenUnavailable,
) -> Result<(), RunError> {
    if keys.is_empty() {
        return sync_documents(s, Vec::new(), end, unavailable).await;
    }
    // Loaded and planned a load chunk at a time: its new texts are embedded
    // together, so calls stay `embed.concurrency` in flight across write chunks.
    let chunks: Vec<&[DocumentKey]> = keys.chunks(s.load_chunk).collect();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let (mut docs, poisoned) = load_or_quarantine(s, conn, chunk).await?;
        let wanted = chunk.iter().filter(|k| !poisoned.contains_key(*k)).map(|k| (k.clone(), docs.remove(k))).collect();
        sync_documents_quarantining(s, wanted, poisoned, if i == last { end } else { None }, unavailable).await?;
    }
    Ok(())
}

/// The documents of `keys`, plus the keys whose lookup the source refuses
/// for good (with the reason). Such a key (written under the prefix by
/// something else, say, in a form the key column cannot even be compared
/// with) would otherwise fail its chunk on every retry and every restart.
///
/// A definite error could also be the mapping's fault, which must stop the
/// writer, not quarantine every key: so the query is first tried with a key
/// that cannot be anyone's problem. Only if that passes are the keys tried
/// one by one, and only those that fail alone are quarantined.
pub async fn load_or_quarantine<E: Embedder, S: DocumentSink, Q: Queryable>(
    s: &Syncer<'_, E, S>,
    conn: &mut Q,
    keys: &[DocumentKey],
) -> Result<(BTreeMap<DocumentKey, Document>, BTreeMap<DocumentKey, String>), RunError> {
    sort_out(keys, &mut SourceLookup { loader: s.loader, conn }).await
}

/// Looking documents up by key: the source's (`DocumentLoader` over a MySQL
/// connection) or, in unit tests, a scripted one.
trait KeyLookup {
    /// The documents of `keys` that exist (see `DocumentLoader::load`).
    fn load(&mut self, keys: &[DocumentKey]) -> impl Future<Output = Result<BTreeMap<DocumentKey, Document>, SourceError>> + Send;
}

/// The source's lookup on one connection.
struct SourceLookup<'a, Q> {
    loader: &'a DocumentLoader,
    conn: &'a mut Q,
}

impl<Q: Queryable> KeyLookup for SourceLookup<'_, Q> {
    fn load(&mut self, keys: &[DocumentKey]) -> impl Future<Output = Result<BTreeMap<DocumentKey, Document>, SourceError>> + Send {
        self.loader.load(self.conn, keys)
    }
}

/// The documents and the refused keys of `keys` (see [`load_or_quarantine`]).
/// A transient error is returned, never taken for a refusal: a key is
/// quarantined only for a definite one.
async fn sort_out<L: KeyLookup>(
    keys: &[DocumentKey],
    lookup: &mut L,
) -> Result<(BTreeMap<DocumentKey, Document>, BTreeMap<DocumentKey, String>), RunError> {
    let error = match lookup.load(keys).await {
        Ok(docs) => return Ok((docs, BTreeMap::new())),
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => e,
    };
    // The probe: a plain ASCII key no row has. Its failure is the mapping's.
    if lookup.load(&[DocumentKey("0".into())]).await.is_err() {
        return Err(error.into());
    }
    let (mut docs, mut poisoned) = (BTreeMap::new(), BTreeMap::new());
    for key in keys {
        match lookup.load(std::slice::from_ref(key)).await {
            Ok(found) => docs.extend(found),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                poisoned.insert(key.clone(), format!("the source refuses to look this key up: {e}"));
            }
        }
    }
    Ok((docs, poisoned))
}

/// Makes Redis hold exactly `wanted` for these keys (`None` = must not exist).
/// Writes in chunks of `pipeline.write_chunk`; `end`'s position goes with the last one,
/// so it is stored only once every chunk is acknowledged.
pub async fn sync_documents<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    wanted: Vec<(DocumentKey, Option<Document>)>,
    end: Option<BatchEnd<'_, S>>,
    unavailable: WhenUnavailable,
) -> Result<(), RunError> {
    sync_documents_quarantining(s, wanted, BTreeMap::new(), end, unavailable).await
}

/// [`sync_documents`], also quarantining `poisoned` (key -> reason) in the
/// first write, so the position never passes them unrecorded.
pub async fn sync_documents_quarantining<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    wanted: Vec<(DocumentKey, Option<Document>)>,
    poisoned: BTreeMap<DocumentKey, String>,
    end: Option<BatchEnd<'_, S>>,
    unavailable: WhenUnavailable,
) -> Result<(), RunError> {
    let prepared = prepare(s, wanted, poisoned, unavailable, None).await?;
    write_prepared(s, prepared, end).await
}

/// Documents decided against Redis with their vectors in hand: the first
/// half of [`sync_documents_quarantining`], so a caller can prepare the
/// next set while this one is written (the initial load does).
pub struct Prepared {
    first: Vec<DocumentChange>,
    plans: Vec<ChunkPlan>,
    vectors: RecentVectors,
}

impl Prepared {
    /// Its vectors, for preparing the next set.
    pub fn recent(&self) -> RecentVectors {
        self.vectors.clone()
    }
}

/// Decides every write chunk of `wanted` and gets the vectors they need,
/// the new texts of all chunks in one go: calls stay `embed.concurrency`
/// in flight instead of draining at the end of each write chunk.
pub async fn prepare<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    wanted: Vec<(DocumentKey, Option<Document>)>,
    poisoned: BTreeMap<DocumentKey, String>,
    unavailable: WhenUnavailable,
    recent: Option<&RecentVectors>,
) -> Result<Prepared, RunError> {
    let first: Vec<DocumentChange> = poisoned.into_iter().map(|(key, reason)| quarantine(s, key, reason)).collect();
    let mut needed: BTreeMap<TextHash, String> = BTreeMap::new();
    let mut plans = Vec::new();
    let mut wanted = wanted.into_iter().peekable();
    while wanted.peek().is_some() {
        let chunk: Vec<_> = wanted.by_ref().take(s.write_chunk).collect();
        plans.push(decide(s, chunk, &mut needed).await?);
    }
    let sources = VectorSources { sink: s.sink, embedder: s.embedder, stats: s.stats, concurrency: s.concurrency };
    let vectors = vectors_for(&sources, needed, unavailable, recent).await?;
    Ok(Prepared { first, plans, vectors: RecentVectors(Arc::new(vectors)) })
}

/// Writes a [`Prepared`] set, a write chunk per atomic write; `end`'s position
/// goes with the last one, so it is stored only once every chunk is acknowledged.
pub async fn write_prepared<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    prepared: Prepared,
    end: Option<BatchEnd<'_, S>>,
) -> Result<(), RunError> {
    let Prepared { mut first, plans, vectors } = prepared;
    if plans.is_empty() {
        return write_chunk(s, &first, end).await;
    }
    let total = plans.len();
    for (i, plan) in plans.into_iter().enumerate() {
        let mut changes = std::mem::take(&mut first);
        changes.extend(finish(s, plan, &vectors.0));
        write_chunk(s, &changes, if i + 1 == total { end } else { None }).await?;
        s.stats.progress.worked();
        if changes.iter().any(|c| matches!(c, DocumentChange::Upsert { vector: Some(_), .. })) {
            s.sink.trim_vector_cache().await?;
        }
        s.stats.progress.beat_now();
    }
    Ok(())
}

/// One atomic write; with `end`, the batch's last, through its committer.
async fn write_chunk<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    changes: &[DocumentChange],
    end: Option<BatchEnd<'_, S>>,
) -> Result<(), RunError> {
    match end {
        Some(BatchEnd { committer, position }) => committer.commit(changes, position).await,
        None => Ok(s.sink.apply(changes).await?),
    }
}

/// Records, counts and logs one document going into the quarantine.
fn quarantine<E: Embedder, S: DocumentSink>(s: &Syncer<'_, E, S>, key: DocumentKey, reason: String) -> DocumentChange {
    tracing::error!(key = %s.sink.key_of(&key), %reason, "document quarantined: left as it is, replication goes on; a reconcile retries it");
    Stats::add(&s.stats.quarantined, 1);
    DocumentChange::Quarantine { key, reason }
}

/// One write chunk, decided up to its vectors.
struct ChunkPlan {
    /// Changes that need no vector (deletes, quarantine releases).
    changes: Vec<DocumentChange>,
    /// Documents to write, once their vectors are known.
    upserts: Vec<PlannedUpsert>,
}

/// One document a chunk writes.
struct PlannedUpsert {
    doc: Document,
    /// Its text is the one the stored vector belongs to: only the fields are written.
    keeps_vector: bool,
    /// It is in the quarantine and leaves it when written.
    quarantined: bool,
}

/// Decides what one write chunk needs from what Redis holds, adding the
/// texts that need a vector to `needed`.
async fn decide<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    chunk: Vec<(DocumentKey, Option<Document>)>,
    needed: &mut BTreeMap<TextHash, String>,
) -> Result<ChunkPlan, RunError> {
    let keys: Vec<DocumentKey> = chunk.iter().map(|(k, _)| k.clone()).collect();
    let stored = s.sink.read_state(&keys).await?;
    let in_quarantine = s.sink.quarantined(&keys).await?;
    let mut plan = ChunkPlan { changes: Vec::new(), upserts: Vec::new() };
    for (((key, doc), state), quarantined) in chunk.into_iter().zip(stored).zip(in_quarantine) {
        // Written, it would be in Redis and in no search: refused instead, where it is seen.
        if let Some(reason) = doc.as_ref().and_then(|d| s.loader.unindexable(d)) {
            plan.changes.push(quarantine(s, key, reason));
            continue;
        }
        match (doc, state) {
            (Some(doc), Some(state)) if state.doc_hash.as_ref() == Some(&doc.doc_hash) && state.vector_ok => {
                Stats::add(&s.stats.unchanged, 1);
                if quarantined {
                    plan.changes.push(DocumentChange::Release(key));
                }
            }
            (Some(doc), state) => {
                let keep = state.is_some_and(|s| s.vector_ok && s.text_hash.as_ref() == Some(&doc.text_hash));
                if !keep {
                    needed.entry(doc.text_hash.clone()).or_insert_with(|| doc.text.clone());
                }
                plan.upserts.push(PlannedUpsert { doc, keeps_vector: keep, quarantined });
            }
            (None, Some(_)) => {
                Stats::add(&s.stats.deletes, 1);
                plan.changes.push(DocumentChange::Delete(key.clone()));
                if quarantined {
                    plan.changes.push(DocumentChange::Release(key));
                }
            }
            (None, None) if quarantined => plan.changes.push(DocumentChange::Release(key)),
            (None, None) => {}
        }
    }
    Ok(plan)
}

/// The changes of one decided chunk, given the vectors of its texts.
fn finish<E: Embedder, S: DocumentSink>(
    s: &Syncer<'_, E, S>,
    plan: ChunkPlan,
    vectors: &HashMap<TextHash, VectorFor>,
) -> Vec<DocumentChange> {
    let ChunkPlan { mut changes, upserts } = plan;
    let mut owed = 0u64;
    for PlannedUpsert { doc, keeps_vector, quarantined } in upserts {
        let vector = match (keeps_vector, vectors.get(&doc.text_hash)) {
            (true, _) => None,
            (false, Some(VectorFor::Vector(vector))) => Some(vector.clone()),
            (false, Some(VectorFor::Refused(reason))) => {
                changes.push(quarantine(
                    s,
                    doc.key.clone(),
                    format!("{reason} (text: {:?})", crate::source::error::truncate(&doc.text, 120)),
                ));
                continue;
            }
            (false, Some(VectorFor::Owed)) => {
                owed += 1;
                let key = doc.key.clone();
                changes.push(DocumentChange::Owe(doc));
                if quarantined {
                    changes.push(DocumentChange::Release(key));
                }
                continue;
            }
            // Already written without its vector and still owed: nothing to change.
            (false, Some(VectorFor::Later)) => continue,
            (false, None) => unreachable!("every text that needs a vector was asked for"),
        };
        Stats::add(&s.stats.upserts, 1);
        let key = doc.key.clone();
        changes.push(DocumentChange::Upsert { doc, vector });
        if quarantined {
            changes.push(DocumentChange::Release(key));
        }
    }
    if owed > 0 {
        Stats::add(&s.stats.owed, owed);
        tracing::warn!(
            documents = owed,
            "embedding service unavailable: documents written with their new fields and without a vector; the vectors are owed and filled when it answers"
        );
    }
    changes
}

#[cfg(test)]
mod tests;

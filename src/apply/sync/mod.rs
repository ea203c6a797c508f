//! Bringing Redis in line with a set of documents: the one place that diffs,
//! embeds and writes.
//!
//! For each chunk of keys: read what Redis holds (one pipelined round trip),
//! skip documents whose hash is unchanged, keep the stored vector when only
//! non-text fields changed, take vectors from the cache by text hash, embed
//! each remaining distinct text once, then write the chunk in one MULTI/EXEC.
//!
//! The syncer moves no position. A caller whose batch ends at one (the
//! streamer) asks for the sync *but its last write* ([`Syncer::sync_keys_but_last`]),
//! and hands that [`LastWrite`] to its committer with the position
//! ([`LastWrite::commit`]); every other caller has it all written.

mod lookup;
pub mod orphans;
pub mod vectors;

use crate::observe::stats::Counter;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mysql_async::prelude::Queryable;

use lookup::{SourceLookup, sort_out};
pub use vectors::{RecentVectors, WhenUnavailable};
use vectors::{VectorFor, VectorSources};

use crate::app::replicator::Connected;
use crate::apply::RunError;
use crate::apply::committer::Committer;
use crate::document::{Document, DocumentChange, DocumentKey, TextHash};
use crate::embed::SharedEmbedder;
use crate::mapping::DocumentLoader;
use crate::observe::Stats;
use crate::position::Position;
use crate::sink::{DocumentSink, Sink};

/// What syncing documents uses, and nothing more: owned handles (clones
/// share the sink, loader, embedder and counters). Built by
/// [`Connected::syncer`] for each stage that syncs; it holds no state of its
/// own, so every stage's syncer writes the same way.
pub struct Syncer<S> {
    sink: Arc<S>,
    loader: Arc<DocumentLoader>,
    embedder: SharedEmbedder,
    stats: Arc<Stats>,
    /// `pipeline.write_chunk`: documents per atomic write.
    write_chunk: usize,
    /// `pipeline.load_chunk`: keys per load query, and per embedding round.
    load_chunk: usize,
    /// `embed.concurrency`: calls in flight.
    concurrency: usize,
}

impl<S> Clone for Syncer<S> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            loader: self.loader.clone(),
            embedder: self.embedder.clone(),
            stats: self.stats.clone(),
            write_chunk: self.write_chunk,
            load_chunk: self.load_chunk,
            concurrency: self.concurrency,
        }
    }
}

impl<S: Sink> Connected<S> {
    /// The parts syncing documents uses.
    pub fn syncer(&self) -> Syncer<S> {
        Syncer {
            sink: self.sink.clone(),
            loader: self.loader.clone(),
            embedder: self.embedder.clone(),
            stats: self.stats.clone(),
            write_chunk: self.config.pipeline.write_chunk,
            load_chunk: self.config.pipeline.load_chunk,
            concurrency: self.config.embed.concurrency,
        }
    }
}

/// The last write of a sync, not made yet: the caller makes it, on its own
/// ([`Self::apply`]) or ending at a position through its committer
/// ([`Self::commit`]), so a position is only ever stored once every
/// earlier write of the sync was acknowledged.
#[must_use = "the last write of a sync must be made (apply or commit)"]
pub struct LastWrite {
    changes: Vec<DocumentChange>,
    /// What follows it once acknowledged.
    after: AfterWrite,
}

/// What follows a write once acknowledged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterWrite {
    /// Nothing: no document chunk was decided (quarantine entries alone, or
    /// nothing but a position).
    Nothing,
    /// A decided chunk: progress is counted, and the cache trimmed when it
    /// added vectors.
    Chunk {
        /// It writes new vectors.
        adds_vectors: bool,
    },
}

impl LastWrite {
    /// Makes the write, moving no position.
    pub async fn apply<S: DocumentSink>(self, s: &Syncer<S>) -> Result<(), RunError> {
        s.sink.apply(&self.changes).await?;
        s.after_write(self.after).await
    }

    /// Makes the write with `position`, through `committer` (Redis, then
    /// the local checkpoint): the batch it ends is then applied.
    pub async fn commit<S: DocumentSink>(self, s: &Syncer<S>, committer: &Committer<S>, position: &Position) -> Result<(), RunError> {
        committer.commit(&self.changes, position).await?;
        s.after_write(self.after).await
    }
}

impl<S: DocumentSink> Syncer<S> {
    /// Loads the documents for `keys` and syncs them, every write made. A
    /// key the source refuses to look up for good is quarantined (see
    /// [`Self::load_or_quarantine`]) and left as it is.
    pub async fn sync_keys<Q: Queryable>(
        &self,
        conn: &mut Q,
        keys: Vec<DocumentKey>,
        unavailable: WhenUnavailable,
    ) -> Result<(), RunError> {
        self.sync_keys_but_last(conn, keys, unavailable).await?.apply(self).await
    }

    /// [`Self::sync_keys`], but for its last write, which the caller makes.
    pub async fn sync_keys_but_last<Q: Queryable>(
        &self,
        conn: &mut Q,
        keys: Vec<DocumentKey>,
        unavailable: WhenUnavailable,
    ) -> Result<LastWrite, RunError> {
        // Loaded and planned a load chunk at a time: its new texts are embedded
        // together, so calls stay `embed.concurrency` in flight across write chunks.
        let mut last = LastWrite { changes: Vec::new(), after: AfterWrite::Nothing };
        for chunk in keys.chunks(self.load_chunk) {
            last.apply(self).await?;
            let (mut docs, poisoned) = self.load_or_quarantine(conn, chunk).await?;
            let wanted = chunk.iter().filter(|k| !poisoned.contains_key(*k)).map(|k| (k.clone(), docs.remove(k))).collect();
            let prepared = self.prepare(wanted, poisoned, unavailable, None).await?;
            last = self.write_but_last(prepared).await?;
        }
        Ok(last)
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
    pub async fn load_or_quarantine<Q: Queryable>(
        &self,
        conn: &mut Q,
        keys: &[DocumentKey],
    ) -> Result<(BTreeMap<DocumentKey, Document>, BTreeMap<DocumentKey, String>), RunError> {
        sort_out(keys, &mut SourceLookup { loader: &self.loader, conn }).await
    }

    /// Makes Redis hold exactly `wanted` for these keys (`None` = must not
    /// exist), in chunks of `pipeline.write_chunk`, every write made.
    pub async fn sync_documents(&self, wanted: Vec<(DocumentKey, Option<Document>)>, unavailable: WhenUnavailable) -> Result<(), RunError> {
        let prepared = self.prepare(wanted, BTreeMap::new(), unavailable, None).await?;
        self.write_prepared(prepared).await
    }

    /// Decides every write chunk of `wanted` and gets the vectors they need,
    /// the new texts of all chunks in one go: calls stay `embed.concurrency`
    /// in flight instead of draining at the end of each write chunk. The
    /// `poisoned` keys (key -> reason) are quarantined in the first write,
    /// so a position never passes them unrecorded.
    pub async fn prepare(
        &self,
        wanted: Vec<(DocumentKey, Option<Document>)>,
        poisoned: BTreeMap<DocumentKey, String>,
        unavailable: WhenUnavailable,
        recent: Option<&RecentVectors>,
    ) -> Result<Prepared, RunError> {
        let first: Vec<DocumentChange> = poisoned.into_iter().map(|(key, reason)| self.quarantine(key, reason)).collect();
        let mut needed: BTreeMap<TextHash, String> = BTreeMap::new();
        let mut plans = Vec::new();
        let mut wanted = wanted.into_iter().peekable();
        while wanted.peek().is_some() {
            let chunk: Vec<_> = wanted.by_ref().take(self.write_chunk).collect();
            plans.push(self.decide(chunk, &mut needed).await?);
        }
        let sources =
            VectorSources { sink: self.sink.as_ref(), embedder: &self.embedder, stats: &self.stats, concurrency: self.concurrency };
        let vectors = vectors::vectors_for(&sources, needed, unavailable, recent).await?;
        Ok(Prepared { first, plans, vectors: RecentVectors(Arc::new(vectors)) })
    }

    /// Writes a [`Prepared`] set, a write chunk per atomic write, every write made.
    pub async fn write_prepared(&self, prepared: Prepared) -> Result<(), RunError> {
        self.write_but_last(prepared).await?.apply(self).await
    }

    /// Writes a [`Prepared`] set but for its last write, which it returns.
    async fn write_but_last(&self, prepared: Prepared) -> Result<LastWrite, RunError> {
        let Prepared { first, plans, vectors } = prepared;
        // The quarantine entries go with the first write.
        let mut pending = first;
        let mut last: Option<LastWrite> = None;
        for plan in plans {
            if let Some(previous) = last.take() {
                previous.apply(self).await?;
            }
            let mut changes = std::mem::take(&mut pending);
            changes.extend(self.finish(plan, &vectors.0));
            let adds_vectors = changes.iter().any(|c| matches!(c, DocumentChange::Upsert { vector: Some(_), .. }));
            last = Some(LastWrite { changes, after: AfterWrite::Chunk { adds_vectors } });
        }
        Ok(last.unwrap_or(LastWrite { changes: pending, after: AfterWrite::Nothing }))
    }

    /// What follows an acknowledged write (see [`AfterWrite`]).
    async fn after_write(&self, after: AfterWrite) -> Result<(), RunError> {
        let AfterWrite::Chunk { adds_vectors } = after else { return Ok(()) };
        self.stats.progress.worked();
        if adds_vectors {
            self.sink.trim_vector_cache().await?;
        }
        self.stats.progress.beat_now();
        Ok(())
    }
}

/// Documents decided against Redis with their vectors in hand: the first
/// half of a sync, so a caller can prepare the next set while this one is
/// written (the initial load does).
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

impl<S: DocumentSink> Syncer<S> {
    /// Records, counts and logs one document going into the quarantine.
    fn quarantine(&self, key: DocumentKey, reason: String) -> DocumentChange {
        tracing::error!(key = %self.sink.key_of(&key), %reason, "document quarantined: left as it is, replication goes on; a reconcile retries it");
        self.stats.count(Counter::Quarantined, 1);
        DocumentChange::Quarantine { key, reason }
    }

    /// Decides what one write chunk needs from what Redis holds, adding the
    /// texts that need a vector to `needed`.
    async fn decide(
        &self,
        chunk: Vec<(DocumentKey, Option<Document>)>,
        needed: &mut BTreeMap<TextHash, String>,
    ) -> Result<ChunkPlan, RunError> {
        let s = self;
        let keys: Vec<DocumentKey> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let stored = s.sink.read_state(&keys).await?;
        let in_quarantine = s.sink.quarantined(&keys).await?;
        let mut plan = ChunkPlan { changes: Vec::new(), upserts: Vec::new() };
        for (((key, doc), state), quarantined) in chunk.into_iter().zip(stored).zip(in_quarantine) {
            // Written, it would be in Redis and in no search: refused instead, where it is seen.
            if let Some(reason) = doc.as_ref().and_then(|d| s.loader.unindexable(d)) {
                plan.changes.push(s.quarantine(key, reason));
                continue;
            }
            match (doc, state) {
                (Some(doc), Some(state)) if state.doc_hash.as_ref() == Some(&doc.doc_hash) && state.vector_ok => {
                    s.stats.count(Counter::Unchanged, 1);
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
                    s.stats.count(Counter::Deleted, 1);
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
    fn finish(&self, plan: ChunkPlan, vectors: &HashMap<TextHash, VectorFor>) -> Vec<DocumentChange> {
        let s = self;
        let ChunkPlan { mut changes, upserts } = plan;
        let mut owed = 0u64;
        for PlannedUpsert { doc, keeps_vector, quarantined } in upserts {
            let vector = match (keeps_vector, vectors.get(&doc.text_hash)) {
                (true, _) => None,
                (false, Some(VectorFor::Vector(vector))) => Some(vector.clone()),
                (false, Some(VectorFor::Refused(reason))) => {
                    changes.push(
                        s.quarantine(doc.key.clone(), format!("{reason} (text: {:?})", crate::mysql::error::truncate(&doc.text, 120))),
                    );
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
            s.stats.count(Counter::Upserted, 1);
            let key = doc.key.clone();
            changes.push(DocumentChange::Upsert { doc, vector });
            if quarantined {
                changes.push(DocumentChange::Release(key));
            }
        }
        if owed > 0 {
            s.stats.count(Counter::Owed, owed);
            tracing::warn!(
                documents = owed,
                "embedding service unavailable: documents written with their new fields and without a vector; the vectors are owed and filled when it answers"
            );
        }
        changes
    }
}

#[cfg(test)]
mod tests;

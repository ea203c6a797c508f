//! The sink in memory, in every role of `sink::contract`: documents,
//! positions and coordination (lease, fence, load epoch, alias, status,
//! repairs), applied as `RedisSink` applies them, with named fault points.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::document::{Document, DocumentChange, DocumentKey, TextHash};
use crate::position::Position;
use crate::sink::memory::MemoryInfo;
use crate::sink::pending::Owed;
use crate::sink::{AliasState, Coordination, DocumentSink, IndexVerdict, IndexVersion, Lease, RemotePositions, SinkError, StoredState};

/// How a sink write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFault {
    /// Another holder has the writer lease: nothing is written.
    Fenced,
    /// The connection drops before the write reaches the server: nothing is written.
    Lost,
    /// The write runs, but the connection drops before the reply: the
    /// caller sees a transient error and cannot know it was applied.
    LostAfterApplying,
}

/// A document as the sink holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its hashes and fields, as last written.
    pub doc: Document,
    /// Its vector, if it has one.
    pub vector: Option<Arc<Vec<f32>>>,
    /// Marked out of date: it reads with no document hash until rewritten.
    pub out_of_date: bool,
}

/// What the in-memory sink holds.
#[derive(Debug, Default, Clone)]
pub struct Contents {
    /// Documents by key.
    pub docs: BTreeMap<DocumentKey, Stored>,
    /// Quarantined keys and why.
    pub quarantine: BTreeMap<DocumentKey, String>,
    /// Keys whose vector is owed, with when each was first owed (a sequence number).
    pub owed: BTreeMap<DocumentKey, u64>,
    /// The vector cache.
    pub cache: HashMap<TextHash, Arc<Vec<f32>>>,
    /// The position stored with the last batch.
    pub position: Option<Position>,
    /// Atomic writes acknowledged.
    pub writes: usize,
    /// Who holds the writer lease.
    pub lease: Option<String>,
    /// The epoch of the load the sink holds.
    pub load_epoch: Option<String>,
    /// Queued repairs, oldest first.
    pub repairs: VecDeque<DocumentKey>,
    /// The last status record.
    pub status: Option<String>,
    /// The mapping fingerprint recorded.
    pub fingerprint: Option<String>,
    /// The index the alias names.
    pub alias: Option<String>,
    /// Whether this version's index exists (Redis emptied: it does not).
    pub index_exists: bool,
    /// Keys the index fails to index (as RediSearch does with a bad field).
    pub unindexable: BTreeSet<DocumentKey>,
    /// Hashes the index failed to index since it was created.
    pub indexing_failures: u64,
    /// Sequence of "when first owed".
    owed_clock: u64,
}

impl Contents {
    /// How many documents the index counts: those held that it can index.
    fn indexed(&self) -> u64 {
        self.docs.keys().filter(|k| !self.unindexable.contains(*k)).count() as u64
    }
}

/// The sink in memory: applies changes as `sink::ops` does, one write at a
/// time, fenced by the lease and the load epoch as the real one is, and
/// fails the writes it was told to (counted from the next one).
pub struct MemorySink {
    dimensions: usize,
    version: IndexVersion,
    contents: Arc<Mutex<Contents>>,
    /// Write attempts made so far.
    attempts: AtomicU64,
    /// Attempt number (1-based, over the sink's life) -> how it fails.
    faults: Mutex<BTreeMap<u64, SinkFault>>,
    /// The holder every write checks the lease against (`None`: unfenced).
    fence: Mutex<Option<String>>,
    /// The load epoch every write checks while a load runs.
    active_epoch: Mutex<Option<String>>,
    /// How long each write that stores a position takes (tokio time), as a
    /// real Redis's round trip and indexing do.
    write_time: Mutex<Duration>,
}

impl MemorySink {
    /// An empty sink whose vectors have `dimensions` elements; its index exists.
    pub fn new(dimensions: usize) -> Self {
        let version = IndexVersion {
            alias: "drugs".into(),
            index: "drugs_v0000000a".into(),
            prefix: "drug_v0000000a:".into(),
            hash: "0000000a".into(),
        };
        let contents = Contents { index_exists: true, ..Contents::default() };
        Self {
            dimensions,
            version,
            contents: Arc::new(Mutex::new(contents)),
            attempts: AtomicU64::new(0),
            faults: Mutex::default(),
            fence: Mutex::default(),
            active_epoch: Mutex::default(),
            write_time: Mutex::default(),
        }
    }

    /// Every write that stores a position takes `time` from now on.
    pub fn take_per_write(&self, time: Duration) {
        *self.write_time.lock().unwrap() = time;
    }

    /// The `n`-th write attempt from now (1 = the next) fails with `fault`.
    pub fn fail_write(&self, n: u64, fault: SinkFault) {
        let next = self.attempts.load(Ordering::SeqCst);
        self.faults.lock().unwrap().insert(next + n, fault);
    }

    /// A look at what it holds.
    pub fn contents<T>(&self, look: impl FnOnce(&Contents) -> T) -> T {
        look(&self.contents.lock().unwrap())
    }

    /// Changes what it holds, as something other than drugsync would
    /// (an operator, an eviction, a restore).
    pub fn tamper<T>(&self, change: impl FnOnce(&mut Contents) -> T) -> T {
        change(&mut self.contents.lock().unwrap())
    }

    /// Puts a document in as if an earlier run had written it.
    pub fn put(&self, doc: Document, vector: Option<Vec<f32>>) {
        self.contents.lock().unwrap().docs.insert(doc.key.clone(), Stored { doc, vector: vector.map(Arc::new), out_of_date: false });
    }

    /// Redis restored from an older copy (or failed over to a lagging
    /// replica): it holds an earlier position than it acknowledged.
    pub fn restore_older(&self, position: Position) {
        self.contents.lock().unwrap().position = Some(position);
    }

    /// Redis emptied (FLUSHALL, a restart without persistence): nothing is
    /// left, the index included.
    pub fn empty(&self) {
        *self.contents.lock().unwrap() = Contents::default();
    }

    /// The fault of this attempt, if one was set for it.
    fn next_fault(&self) -> Option<SinkFault> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.faults.lock().unwrap().remove(&attempt)
    }

    /// The checks the fenced write script makes before writing anything:
    /// the load's epoch, then the lease (taken back when nobody holds it).
    fn check_fence(&self, held: &mut Contents) -> Result<(), SinkError> {
        if let Some(epoch) = self.active_epoch.lock().unwrap().clone()
            && held.load_epoch.as_deref() != Some(epoch.as_str())
        {
            return Err(SinkError::LoadLost { epoch });
        }
        if let Some(holder) = self.fence.lock().unwrap().clone() {
            match &held.lease {
                None => held.lease = Some(holder),
                Some(other) if *other != holder => return Err(SinkError::Fenced { holder }),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A fenced write of something other than documents.
    fn fenced(&self, change: impl FnOnce(&mut Contents)) -> Result<(), SinkError> {
        let mut held = self.contents.lock().unwrap();
        self.check_fence(&mut held)?;
        change(&mut held);
        Ok(())
    }

    fn write(&self, changes: &[DocumentChange], position: Option<&Position>) -> Result<(), SinkError> {
        let fault = self.next_fault();
        match fault {
            Some(SinkFault::Fenced) => return Err(SinkError::Fenced { holder: "another".into() }),
            Some(SinkFault::Lost) => return Err(SinkError::Unavailable("connection lost before the write".into())),
            _ => {}
        }
        let mut held = self.contents.lock().unwrap();
        self.check_fence(&mut held)?;
        for change in changes {
            match change {
                DocumentChange::Upsert { doc, vector } => {
                    let vector = match vector {
                        Some(vector) => {
                            held.cache.insert(doc.text_hash.clone(), vector.clone());
                            held.owed.remove(&doc.key);
                            Some(vector.clone())
                        }
                        // Only the fields and hashes are written: the stored vector stays.
                        None => held.docs.get(&doc.key).and_then(|h| h.vector.clone()),
                    };
                    held.docs.insert(doc.key.clone(), Stored { doc: doc.clone(), vector, out_of_date: false });
                }
                DocumentChange::Delete(key) => {
                    held.docs.remove(key);
                    held.owed.remove(key);
                }
                DocumentChange::Owe(doc) => {
                    held.docs.insert(doc.key.clone(), Stored { doc: doc.clone(), vector: None, out_of_date: false });
                    if !held.owed.contains_key(&doc.key) {
                        held.owed_clock += 1;
                        let since = held.owed_clock;
                        held.owed.insert(doc.key.clone(), since);
                    }
                }
                DocumentChange::Quarantine { key, reason } => {
                    held.quarantine.insert(key.clone(), reason.clone());
                    held.owed.remove(key);
                }
                DocumentChange::Release(key) => {
                    held.quarantine.remove(key);
                }
            }
        }
        let failed = changes
            .iter()
            .filter(|c| matches!(c, DocumentChange::Upsert { doc, .. } | DocumentChange::Owe(doc) if held.unindexable.contains(&doc.key)))
            .count() as u64;
        held.indexing_failures += failed;
        if let Some(position) = position {
            held.position = Some(position.clone());
        }
        held.writes += 1;
        match fault {
            Some(SinkFault::LostAfterApplying) => Err(SinkError::Unavailable("connection lost before the reply".into())),
            _ => Ok(()),
        }
    }

    fn verdict_now(held: &Contents) -> IndexVerdict {
        IndexVerdict { docs: held.indexed(), indexing_failures: held.indexing_failures, percent_indexed: 1.0 }
    }
}

impl RemotePositions for MemorySink {
    async fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> Result<(), SinkError> {
        let time = *self.write_time.lock().unwrap();
        if !time.is_zero() {
            tokio::time::sleep(time).await;
        }
        self.write(changes, Some(position))
    }

    async fn stored_position(&self) -> Result<Option<Position>, SinkError> {
        Ok(self.contents.lock().unwrap().position.clone())
    }
}

impl DocumentSink for MemorySink {
    async fn read_state(&self, keys: &[DocumentKey]) -> Result<Vec<Option<StoredState>>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                held.docs.get(k).map(|h| StoredState {
                    doc_hash: (!h.out_of_date).then(|| h.doc.doc_hash.clone()),
                    text_hash: Some(h.doc.text_hash.clone()),
                    vector_ok: h.vector.as_ref().is_some_and(|v| v.len() == self.dimensions),
                })
            })
            .collect())
    }
    async fn quarantined(&self, keys: &[DocumentKey]) -> Result<Vec<bool>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(keys.iter().map(|k| held.quarantine.contains_key(k)).collect())
    }
    async fn quarantine_len(&self) -> Result<u64, SinkError> {
        Ok(self.contents.lock().unwrap().quarantine.len() as u64)
    }
    async fn cached_vectors(&self, hashes: &[&TextHash]) -> Result<Vec<Option<Vec<f32>>>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(hashes.iter().map(|h| held.cache.get(*h).map(|v| v.as_ref().clone())).collect())
    }
    async fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> Result<(), SinkError> {
        self.contents.lock().unwrap().cache.extend(vectors.iter().cloned());
        Ok(())
    }
    async fn apply(&self, changes: &[DocumentChange]) -> Result<(), SinkError> {
        // As `RedisSink::apply`: nothing to write is no write.
        if changes.is_empty() {
            return Ok(());
        }
        self.write(changes, None)
    }
    async fn trim_vector_cache(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn vector_cache_len(&self) -> Result<u64, SinkError> {
        Ok(self.contents.lock().unwrap().cache.len() as u64)
    }
    async fn owed(&self) -> Result<Owed, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(Owed { count: held.owed.len() as u64, oldest_since: held.owed.values().min().copied() })
    }
    async fn owed_oldest(&self, skip: usize, max: usize) -> Result<Vec<DocumentKey>, SinkError> {
        let held = self.contents.lock().unwrap();
        let mut by_age: Vec<(&u64, &DocumentKey)> = held.owed.iter().map(|(k, since)| (since, k)).collect();
        by_age.sort();
        Ok(by_age.into_iter().skip(skip).take(max).map(|(_, k)| k.clone()).collect())
    }
    async fn document_keys_page(&self, cursor: u64) -> Result<(u64, Vec<DocumentKey>), SinkError> {
        const PAGE: usize = 1000;
        let held = self.contents.lock().unwrap();
        let from = usize::try_from(cursor).unwrap_or(usize::MAX);
        let page: Vec<DocumentKey> = held.docs.keys().skip(from).take(PAGE).cloned().collect();
        let next = if from + page.len() >= held.docs.len() { 0 } else { (from + page.len()) as u64 };
        Ok((next, page))
    }
    async fn document_count(&self) -> Result<u64, SinkError> {
        Ok(self.contents.lock().unwrap().indexed())
    }
    async fn verdict(&self) -> Result<Option<IndexVerdict>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(held.index_exists.then(|| Self::verdict_now(&held)))
    }
    async fn alias_verdict(&self) -> Result<Option<IndexVerdict>, SinkError> {
        let held = self.contents.lock().unwrap();
        let answers = held.index_exists && held.alias.as_deref() == Some(self.version.index.as_str());
        Ok(answers.then(|| Self::verdict_now(&held)))
    }
    async fn unindexed(&self, keys: &[DocumentKey]) -> Result<Vec<DocumentKey>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(keys.iter().filter(|k| !held.docs.contains_key(*k) || held.unindexable.contains(*k)).cloned().collect())
    }
    async fn mark_out_of_date(&self, keys: &[DocumentKey]) -> Result<(), SinkError> {
        let mut held = self.contents.lock().unwrap();
        for key in keys {
            if let Some(stored) = held.docs.get_mut(key) {
                stored.out_of_date = true;
            }
        }
        Ok(())
    }
    fn key_of(&self, key: &DocumentKey) -> String {
        format!("{}{}", self.version.prefix, key.0)
    }
}

/// The writer lease of a [`MemorySink`]: held in its contents, so every
/// handle of the same sink sees one holder. It never expires by itself
/// (a test takes it away with [`MemorySink::tamper`]).
#[derive(Clone)]
pub struct MemoryLease {
    contents: Arc<Mutex<Contents>>,
    holder: String,
    ttl: Duration,
}

impl MemoryLease {
    fn held(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.contents.lock().unwrap()
    }
}

impl Lease for MemoryLease {
    fn holder(&self) -> &str {
        &self.holder
    }
    fn try_acquire(&self) -> impl Future<Output = Result<bool, SinkError>> + Send {
        let mut held = self.held();
        let ok = match &held.lease {
            None => {
                held.lease = Some(self.holder.clone());
                true
            }
            Some(h) => *h == self.holder,
        };
        std::future::ready(Ok(ok))
    }
    fn renew(&self) -> impl Future<Output = Result<bool, SinkError>> + Send {
        // The same as taking it: renewed if ours, taken back if nobody's.
        self.try_acquire()
    }
    fn release(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        let mut held = self.held();
        if held.lease.as_deref() == Some(self.holder.as_str()) {
            held.lease = None;
        }
        std::future::ready(Ok(()))
    }
    fn current_holder(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send {
        std::future::ready(Ok(self.held().lease.clone()))
    }
    fn ttl_left_ms(&self) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send {
        let left = self.held().lease.is_some().then_some(self.ttl.as_millis() as u64);
        std::future::ready(Ok(left))
    }
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Coordination for MemorySink {
    type Lease = MemoryLease;

    fn lease(&self, holder: String, ttl: Duration) -> MemoryLease {
        MemoryLease { contents: self.contents.clone(), holder, ttl }
    }
    fn fence_with(&self, holder: Option<String>) {
        *self.fence.lock().unwrap() = holder;
    }
    async fn begin_load(&self, epoch: &str) -> Result<(), SinkError> {
        self.contents.lock().unwrap().load_epoch = Some(epoch.to_owned());
        self.resume_load(epoch);
        Ok(())
    }
    fn resume_load(&self, epoch: &str) {
        *self.active_epoch.lock().unwrap() = Some(epoch.to_owned());
    }
    fn end_load(&self) {
        *self.active_epoch.lock().unwrap() = None;
    }
    async fn stored_load_epoch(&self) -> Result<Option<String>, SinkError> {
        Ok(self.contents.lock().unwrap().load_epoch.clone())
    }
    fn version(&self) -> &IndexVersion {
        &self.version
    }
    async fn prepare_index(&self, _config: &Config) -> Result<AliasState, SinkError> {
        let mut held = self.contents.lock().unwrap();
        held.index_exists = true;
        Ok(match &held.alias {
            Some(alias) if *alias == self.version.index => AliasState::Current,
            old => AliasState::Switch { old: old.clone() },
        })
    }
    async fn switch_alias(&self, _old: Option<&str>) -> Result<(), SinkError> {
        // As the WATCHed switch: refused only when another holder has the lease.
        let mut held = self.contents.lock().unwrap();
        if let Some(holder) = self.fence.lock().unwrap().clone()
            && held.lease.as_ref().is_some_and(|current| *current != holder)
        {
            return Err(SinkError::Fenced { holder });
        }
        held.alias = Some(self.version.index.clone());
        Ok(())
    }
    async fn record_space(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn adopt_vector_cache(&self) -> Result<u64, SinkError> {
        Ok(0)
    }
    async fn drop_vector_cache_of(&self, _old: &str) -> Result<u64, SinkError> {
        Ok(0)
    }
    async fn mapping_fingerprint(&self) -> Result<Option<String>, SinkError> {
        Ok(self.contents.lock().unwrap().fingerprint.clone())
    }
    async fn store_mapping_fingerprint(&self, fields: &str) -> Result<(), SinkError> {
        self.fenced(|held| held.fingerprint = Some(fields.to_owned()))
    }
    async fn store_status(&self, json: &str) -> Result<(), SinkError> {
        self.fenced(|held| held.status = Some(json.to_owned()))
    }
    async fn status_record(&self) -> Result<Option<String>, SinkError> {
        Ok(self.contents.lock().unwrap().status.clone())
    }
    async fn push_repairs(&self, keys: &[DocumentKey]) -> Result<(), SinkError> {
        self.contents.lock().unwrap().repairs.extend(keys.iter().cloned());
        Ok(())
    }
    async fn peek_repairs(&self, max: usize) -> Result<Vec<DocumentKey>, SinkError> {
        Ok(self.contents.lock().unwrap().repairs.iter().take(max).cloned().collect())
    }
    async fn ack_repairs(&self, n: usize) -> Result<(), SinkError> {
        self.fenced(|held| {
            let n = n.min(held.repairs.len());
            held.repairs.drain(..n);
        })
    }
    async fn pending_repairs(&self) -> Result<usize, SinkError> {
        Ok(self.contents.lock().unwrap().repairs.len())
    }
    async fn memory_info(&self) -> Result<MemoryInfo, SinkError> {
        Ok(MemoryInfo { maxmemory: 0, policy: "noeviction".into(), used: 0, evicted_keys: 0 })
    }
}

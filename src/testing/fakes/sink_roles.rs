//! [`MemorySink`] in each role of `sink::contract`, one impl per role, as
//! `RedisSink` does them (its role files say how Redis does each).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::document::{DocumentChange, DocumentKey, TextHash};
use crate::position::Position;
use crate::sink::memory::MemoryInfo;
use crate::sink::{
    AliasState, Documents, Fencing, IndexAdmin, IndexVerdict, IndexVersion, Lease, Owed, RemotePositions, SinkError, StoredState,
    VectorCache, WorkQueues,
};
use crate::testing::fakes::sink::{Contents, MemorySink};

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

impl Documents for MemorySink {
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
    async fn apply(&self, changes: &[DocumentChange]) -> Result<(), SinkError> {
        // As Redis: nothing to write is no write.
        if changes.is_empty() {
            return Ok(());
        }
        self.write(changes, None)
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

impl VectorCache for MemorySink {
    async fn cached_vectors(&self, hashes: &[&TextHash]) -> Result<Vec<Option<Vec<f32>>>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(hashes.iter().map(|h| held.cache.get(*h).map(|v| v.as_ref().clone())).collect())
    }
    async fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> Result<(), SinkError> {
        self.contents.lock().unwrap().cache.extend(vectors.iter().cloned());
        Ok(())
    }
    /// Unbounded: the fake keeps every vector.
    async fn trim_vector_cache(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn vector_cache_len(&self) -> Result<u64, SinkError> {
        Ok(self.contents.lock().unwrap().cache.len() as u64)
    }
    /// One space: nothing to record, adopt or drop.
    async fn record_space(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn adopt_vector_cache(&self) -> Result<u64, SinkError> {
        Ok(0)
    }
    async fn drop_vector_cache_of(&self, _old: &str) -> Result<u64, SinkError> {
        Ok(0)
    }
}

impl WorkQueues for MemorySink {
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
    async fn quarantined(&self, keys: &[DocumentKey]) -> Result<Vec<bool>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(keys.iter().map(|k| held.quarantine.contains_key(k)).collect())
    }
    async fn quarantine_len(&self) -> Result<u64, SinkError> {
        Ok(self.contents.lock().unwrap().quarantine.len() as u64)
    }
    async fn quarantine(&self) -> Result<Vec<(DocumentKey, String)>, SinkError> {
        let held = self.contents.lock().unwrap();
        Ok(held.quarantine.iter().map(|(k, reason)| (k.clone(), serde_json::json!({ "reason": reason }).to_string())).collect())
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
}

impl IndexAdmin for MemorySink {
    fn version(&self) -> &IndexVersion {
        &self.version
    }
    async fn prepare_index(&self) -> Result<AliasState, SinkError> {
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
    async fn memory_info(&self) -> Result<MemoryInfo, SinkError> {
        Ok(MemoryInfo { maxmemory: 0, policy: "noeviction".into(), used: 0, evicted_keys: 0 })
    }
}

impl Fencing for MemorySink {
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

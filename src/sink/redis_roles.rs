//! [`RedisSink`] and [`WriterLease`] in the roles of `contract.rs`: each
//! method is the inherent one of the same name (whose docs say how Redis
//! does it), so the pipeline's stages can be generic over the roles.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::contract::{Coordination, DocumentSink, Lease, RemotePositions};
use super::memory::MemoryInfo;
use super::pending::Owed;
use super::{AliasState, IndexVerdict, IndexVersion, RedisSink, SinkError, StoredState, WriterLease};
use crate::config::Config;
use crate::document::{DocumentChange, DocumentKey, TextHash};
use crate::position::Position;

impl RemotePositions for RedisSink {
    fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::apply_ending_at(self, changes, position)
    }
    fn stored_position(&self) -> impl Future<Output = Result<Option<Position>, SinkError>> + Send {
        RedisSink::position(self)
    }
}

impl DocumentSink for RedisSink {
    fn read_state(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<Option<StoredState>>, SinkError>> + Send {
        RedisSink::read_state(self, keys)
    }
    fn quarantined(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<bool>, SinkError>> + Send {
        RedisSink::quarantined(self, keys)
    }
    fn quarantine_len(&self) -> impl Future<Output = Result<u64, SinkError>> + Send {
        RedisSink::quarantine_len(self)
    }
    fn cached_vectors(&self, hashes: &[&TextHash]) -> impl Future<Output = Result<Vec<Option<Vec<f32>>>, SinkError>> + Send {
        RedisSink::cached_vectors(self, hashes)
    }
    fn cache_vectors(&self, vectors: &[(TextHash, Arc<Vec<f32>>)]) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::cache_vectors(self, vectors)
    }
    fn apply(&self, changes: &[DocumentChange]) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::apply(self, changes)
    }
    async fn trim_vector_cache(&self) -> Result<(), SinkError> {
        RedisSink::trim_vector_cache(self).await.map(drop)
    }
    fn vector_cache_len(&self) -> impl Future<Output = Result<u64, SinkError>> + Send {
        RedisSink::vector_cache_len(self)
    }
    fn owed(&self) -> impl Future<Output = Result<Owed, SinkError>> + Send {
        RedisSink::owed(self)
    }
    fn owed_oldest(&self, skip: usize, max: usize) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send {
        RedisSink::owed_oldest(self, skip, max)
    }
    fn document_keys_page(&self, cursor: u64) -> impl Future<Output = Result<(u64, Vec<DocumentKey>), SinkError>> + Send {
        RedisSink::document_keys_page(self, cursor)
    }
    fn document_count(&self) -> impl Future<Output = Result<u64, SinkError>> + Send {
        RedisSink::document_count(self)
    }
    fn verdict(&self) -> impl Future<Output = Result<Option<IndexVerdict>, SinkError>> + Send {
        RedisSink::verdict(self)
    }
    fn alias_verdict(&self) -> impl Future<Output = Result<Option<IndexVerdict>, SinkError>> + Send {
        RedisSink::alias_verdict(self)
    }
    fn unindexed(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send {
        RedisSink::unindexed(self, keys)
    }
    fn mark_out_of_date(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::mark_out_of_date(self, keys)
    }
    fn key_of(&self, key: &DocumentKey) -> String {
        RedisSink::key_of(self, key)
    }
}

impl Lease for WriterLease {
    fn holder(&self) -> &str {
        WriterLease::holder(self)
    }
    fn try_acquire(&self) -> impl Future<Output = Result<bool, SinkError>> + Send {
        WriterLease::try_acquire(self)
    }
    fn renew(&self) -> impl Future<Output = Result<bool, SinkError>> + Send {
        WriterLease::renew(self)
    }
    fn release(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        WriterLease::release(self)
    }
    fn current_holder(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send {
        WriterLease::current_holder(self)
    }
    fn ttl_left_ms(&self) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send {
        WriterLease::ttl_left_ms(self)
    }
    fn ttl(&self) -> Duration {
        WriterLease::ttl(self)
    }
}

impl Coordination for RedisSink {
    type Lease = WriterLease;

    fn lease(&self, holder: String, ttl: Duration) -> WriterLease {
        RedisSink::lease(self, holder, ttl)
    }
    fn fence_with(&self, holder: Option<String>) {
        RedisSink::fence_with(self, holder)
    }
    fn begin_load(&self, epoch: &str) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::begin_load(self, epoch)
    }
    fn resume_load(&self, epoch: &str) {
        RedisSink::resume_load(self, epoch)
    }
    fn end_load(&self) {
        RedisSink::end_load(self)
    }
    fn stored_load_epoch(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send {
        RedisSink::stored_load_epoch(self)
    }
    fn version(&self) -> &IndexVersion {
        RedisSink::version(self)
    }
    fn prepare_index(&self, config: &Config) -> impl Future<Output = Result<AliasState, SinkError>> + Send {
        RedisSink::prepare_index(self, config)
    }
    fn switch_alias(&self, old: Option<&str>) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::switch_alias(self, old)
    }
    fn record_space(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::record_space(self)
    }
    fn adopt_vector_cache(&self) -> impl Future<Output = Result<u64, SinkError>> + Send {
        RedisSink::adopt_vector_cache(self)
    }
    fn drop_vector_cache_of(&self, old: &str) -> impl Future<Output = Result<u64, SinkError>> + Send {
        RedisSink::drop_vector_cache_of(self, old)
    }
    fn mapping_fingerprint(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send {
        RedisSink::mapping_fingerprint(self)
    }
    fn store_mapping_fingerprint(&self, fields: &str) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::store_mapping_fingerprint(self, fields)
    }
    fn store_status(&self, json: &str) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::store_status(self, json)
    }
    fn status_record(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send {
        RedisSink::status_record(self)
    }
    fn push_repairs(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::push_repairs(self, keys)
    }
    fn peek_repairs(&self, max: usize) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send {
        RedisSink::peek_repairs(self, max)
    }
    fn ack_repairs(&self, n: usize) -> impl Future<Output = Result<(), SinkError>> + Send {
        RedisSink::ack_repairs(self, n)
    }
    fn pending_repairs(&self) -> impl Future<Output = Result<usize, SinkError>> + Send {
        RedisSink::pending_repairs(self)
    }
    fn memory_info(&self) -> impl Future<Output = Result<MemoryInfo, SinkError>> + Send {
        RedisSink::memory_info(self)
    }
}

//! The sink contract as an executable check, one function per role of
//! `sink::contract` ([`check_documents`], [`check_vector_cache`],
//! [`check_work_queues`], [`check_index_admin`], [`check_fencing`]) and,
//! with faults the test injects from outside, [`check_rewind`] and
//! [`check_lost_reply`]: each runs the same sequence of writes and reads
//! against any sink of those roles and panics, naming the step, where the
//! sink differs from the contract. The
//! unit tests run it against the in-memory fake of `testing::fakes`, the
//! integration tests against `RedisSink` on a real Redis: so the fake the
//! pipeline's unit tests trust behaves as the real sink does.
//!
//! Built with the `fixture` feature (test support, like the sample data).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::document::{Document, DocumentChange, DocumentKey, EmbeddingSpace};
use crate::position::Position;
use crate::sink::{AliasState, Documents, Fencing, IndexAdmin, Lease, SinkError, StoredState, VectorCache, WorkQueues};

/// A document under `key` with `text` and a `label` field, hashed in
/// `space` (the document hash covers all three, as the real one does).
pub fn document(space: &EmbeddingSpace, key: &str, text: &str, label: &str) -> Document {
    Document {
        key: DocumentKey(key.into()),
        fields: BTreeMap::from([("label".to_owned(), label.to_owned())]),
        text: text.to_owned(),
        text_hash: space.text_hash(text),
        doc_hash: crate::document::DocHash(format!("{key}|{text}|{label}")),
    }
}

/// Whether the sink under test keeps a vector cache (a cache is optional in
/// the contract; one that is on must return what it was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Cached vectors must come back exactly.
    On,
    /// Nothing is cached: every read is a miss.
    Off,
}

/// A vector of `dimensions` elements, different for each `seed`.
fn vector(dimensions: usize, seed: f32) -> Arc<Vec<f32>> {
    Arc::new((0..dimensions).map(|i| seed + i as f32 / 1000.0).collect())
}

/// What the sink reads for a document written whole (`vector_ok`: with a usable vector).
fn state(doc: &Document, vector_ok: bool) -> Option<StoredState> {
    Some(StoredState { doc_hash: Some(doc.doc_hash.clone()), text_hash: Some(doc.text_hash.clone()), vector_ok })
}

/// What the sink holds for `key`.
async fn read<S: Documents>(sink: &S, key: &DocumentKey) -> Option<StoredState> {
    sink.read_state(std::slice::from_ref(key)).await.expect("read_state").remove(0)
}

/// The [`Documents`] and [`RemotePositions`](crate::sink::RemotePositions) roles,
/// with vectors of `space.dimensions` elements and document keys that start
/// with `key_prefix` (none may exist yet). Panics with the step that failed.
pub async fn check_documents<S: Documents>(sink: &S, space: &EmbeddingSpace, key_prefix: &str) {
    let key = |name: &str| format!("{key_prefix}{name}");
    let (a, b) = (DocumentKey(key("a")), DocumentKey(key("b")));
    assert_eq!(sink.read_state(&[a.clone(), b.clone()]).await.expect("read_state"), vec![None, None], "absent keys read as None");
    sink.apply(&[]).await.expect("an empty write is allowed");

    let before = sink.stored_position().await.expect("stored_position");
    let first = document(space, &key("a"), "aspirin 81 mg tablet", "Bayer");
    sink.apply(&[DocumentChange::Upsert { doc: first.clone(), vector: Some(vector(space.dimensions, 0.25)) }])
        .await
        .expect("upsert with a vector");
    assert_eq!(read(sink, &a).await, state(&first, true), "an upsert with a vector stores both hashes and a usable vector");

    let relabelled = document(space, &key("a"), "aspirin 81 mg tablet", "Bayer AG");
    sink.apply(&[DocumentChange::Upsert { doc: relabelled.clone(), vector: None }]).await.expect("upsert keeping the vector");
    assert_eq!(read(sink, &a).await, state(&relabelled, true), "an upsert without a vector keeps the stored one");

    let owed = document(space, &key("a"), "aspirin 325 mg tablet", "Bayer AG");
    sink.apply(&[DocumentChange::Owe(owed.clone())]).await.expect("owe");
    assert_eq!(read(sink, &a).await, state(&owed, false), "an owed document has its new fields and no usable vector");

    sink.apply(&[DocumentChange::Upsert { doc: first.clone(), vector: Some(vector(space.dimensions, 0.25)) }]).await.expect("upsert");
    assert!(all_keys(sink).await.contains(&a), "a written document is among the document keys");
    sink.mark_out_of_date(std::slice::from_ref(&a)).await.expect("mark_out_of_date");
    assert_eq!(
        read(sink, &a).await,
        Some(StoredState { doc_hash: None, text_hash: Some(first.text_hash.clone()), vector_ok: true }),
        "a document marked out of date reads with no document hash, and keeps its text hash and vector"
    );

    sink.apply(&[DocumentChange::Delete(a.clone()), DocumentChange::Delete(b.clone())]).await.expect("deletes, one of an absent key");
    assert!(!all_keys(sink).await.contains(&a), "a deleted document is not among the document keys");
    assert_eq!(sink.stored_position().await.expect("stored_position"), before, "writes without a position move none");
    assert_eq!(read(sink, &a).await, None, "a deleted document reads as None");

    let second = document(space, &key("a"), "naproxen 220 mg tablet", "Aleve");
    let position = Position::new("conformance-bin.000001", 4);
    sink.apply_ending_at(&[DocumentChange::Upsert { doc: second.clone(), vector: Some(vector(space.dimensions, 0.75)) }], &position)
        .await
        .expect("a write ending at a position");
    assert_eq!(read(sink, &a).await, state(&second, true), "the changes of a write ending at a position are applied");
    assert_eq!(sink.stored_position().await.expect("stored_position"), Some(position), "and the position is stored with them");
    sink.apply(&[DocumentChange::Delete(a)]).await.expect("clean up");
}

/// Every document key the sink lists, page by page.
async fn all_keys<S: Documents>(sink: &S) -> Vec<DocumentKey> {
    let (mut cursor, mut keys) = (0, Vec::new());
    loop {
        let (next, page) = sink.document_keys_page(cursor).await.expect("document_keys_page");
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// The [`VectorCache`] role (with the document write that fills it), under
/// document keys that start with `key_prefix` (none may exist yet).
pub async fn check_vector_cache<S: Documents + VectorCache>(sink: &S, space: &EmbeddingSpace, key_prefix: &str, caching: Caching) {
    let expect_cached = |v: &Arc<Vec<f32>>| match caching {
        Caching::On => Some(v.as_ref().clone()),
        Caching::Off => None,
    };
    let len_before = sink.vector_cache_len().await.expect("vector_cache_len");
    let doc = document(space, &format!("{key_prefix}cached"), "atorvastatin 10 mg tablet", "Lipitor");
    let v1 = vector(space.dimensions, 0.125);
    sink.apply(&[DocumentChange::Upsert { doc: doc.clone(), vector: Some(v1.clone()) }]).await.expect("upsert with a vector");
    let cached = sink.cached_vectors(&[&doc.text_hash]).await.expect("cached_vectors").remove(0);
    assert_eq!(cached, expect_cached(&v1), "a written vector is cached for its text ({caching:?})");

    let (other, v2) = (space.text_hash("ibuprofen 200 mg capsule"), vector(space.dimensions, 0.5));
    sink.cache_vectors(&[(other.clone(), v2.clone())]).await.expect("cache_vectors");
    let cached = sink.cached_vectors(&[&other]).await.expect("cached_vectors").remove(0);
    assert_eq!(cached, expect_cached(&v2), "a vector cached by hand is the one given ({caching:?})");
    let unknown = space.text_hash("a text nobody embedded");
    assert_eq!(sink.cached_vectors(&[&unknown]).await.expect("cached_vectors"), vec![None], "a text never cached is a miss");
    sink.trim_vector_cache().await.expect("trim_vector_cache");
    if caching == Caching::On {
        assert!(sink.vector_cache_len().await.expect("vector_cache_len") >= len_before + 2, "the cache counts both entries");
    }
    sink.record_space().await.expect("record_space");
    sink.adopt_vector_cache().await.expect("adopt_vector_cache");
    sink.apply(&[DocumentChange::Delete(doc.key)]).await.expect("clean up");
}

/// The [`WorkQueues`] role (with the document writes that fill and empty
/// the owed set and the quarantine), under document keys that start with
/// `key_prefix` (none may exist yet), no repairs queued, unfenced.
pub async fn check_work_queues<S: Documents + WorkQueues>(sink: &S, space: &EmbeddingSpace, key_prefix: &str) {
    let (a, b) = (DocumentKey(format!("{key_prefix}owed")), DocumentKey(format!("{key_prefix}refused")));
    let quarantined = async |k: &DocumentKey| sink.quarantined(std::slice::from_ref(k)).await.expect("quarantined").remove(0);
    assert_eq!(
        sink.quarantined(&[a.clone(), b.clone()]).await.expect("quarantined"),
        vec![false, false],
        "absent keys are not quarantined"
    );

    let owed = document(space, &a.0, "aspirin 325 mg tablet", "Bayer AG");
    sink.apply(&[DocumentChange::Owe(owed.clone())]).await.expect("owe");
    assert_eq!(sink.owed().await.expect("owed").count, 1, "the owed document is counted");
    assert!(sink.owed().await.expect("owed").oldest_since.is_some(), "and it says since when");
    assert_eq!(sink.owed_oldest(0, 10).await.expect("owed_oldest"), vec![a.clone()], "the owed document is listed");
    assert_eq!(sink.owed_oldest(1, 10).await.expect("owed_oldest"), Vec::<DocumentKey>::new(), "after skipping it, nothing");
    sink.apply(&[DocumentChange::Upsert { doc: owed, vector: Some(vector(space.dimensions, 0.5)) }]).await.expect("upsert paying it");
    assert_eq!(sink.owed().await.expect("owed").count, 0, "a write with a vector pays what was owed");

    let quarantine_before = sink.quarantine_len().await.expect("quarantine_len");
    sink.apply(&[DocumentChange::Quarantine { key: b.clone(), reason: "conformance".into() }]).await.expect("quarantine");
    assert!(quarantined(&b).await, "a quarantined key reads as quarantined");
    assert_eq!(sink.quarantine_len().await.expect("quarantine_len"), quarantine_before + 1, "the quarantine counts it");
    let entry = sink.quarantine().await.expect("quarantine").into_iter().find(|(k, _)| *k == b).map(|(_, entry)| entry);
    assert!(entry.is_some_and(|e| e.contains("conformance")), "the quarantine lists it with its reason");
    assert_eq!(read(sink, &b).await, None, "the quarantine leaves the document as it is (absent)");
    sink.apply(&[DocumentChange::Release(b.clone())]).await.expect("release");
    assert!(!quarantined(&b).await, "a released key is out of the quarantine");

    let repairs: Vec<DocumentKey> = ["r1", "r2", "r3"].map(|k| DocumentKey(k.into())).into();
    sink.push_repairs(&repairs).await.expect("push_repairs");
    assert_eq!(sink.pending_repairs().await.expect("pending_repairs"), 3, "queued repairs are counted");
    assert_eq!(sink.peek_repairs(2).await.expect("peek_repairs"), repairs[..2], "the oldest come first");
    assert_eq!(sink.pending_repairs().await.expect("pending_repairs"), 3, "peeking takes nothing");
    sink.ack_repairs(2).await.expect("ack_repairs");
    assert_eq!(sink.peek_repairs(10).await.expect("peek_repairs"), repairs[2..], "an ack removes the oldest");
    sink.ack_repairs(1).await.expect("ack_repairs");
    assert_eq!(sink.pending_repairs().await.expect("pending_repairs"), 0, "all acked");
    sink.apply(&[DocumentChange::Delete(a)]).await.expect("clean up");
}

/// The [`IndexAdmin`] role: its index prepared, the alias not switched
/// yet, unfenced, and `doc_key` a document key no one uses.
pub async fn check_index_admin<S: Documents + IndexAdmin>(sink: &S, space: &EmbeddingSpace, doc_key: &str) {
    assert_eq!(sink.prepare_index().await.expect("prepare_index"), AliasState::Switch { old: None }, "nothing behind the alias yet");
    assert_eq!(sink.alias_verdict().await.expect("alias_verdict"), None, "an alias not switched answers nothing");
    sink.switch_alias(None).await.expect("the alias switches");
    assert!(sink.alias_verdict().await.expect("alias_verdict").is_some(), "the alias answers after the switch");
    assert!(sink.verdict().await.expect("verdict").is_some(), "the prepared index answers");
    assert_eq!(sink.prepare_index().await.expect("prepare_index"), AliasState::Current, "preparing again finds the alias current");

    let doc = document(space, doc_key, "conformance index", "indexed");
    sink.apply(&[DocumentChange::Upsert { doc: doc.clone(), vector: Some(vector(space.dimensions, 0.25)) }]).await.expect("upsert");
    let unindexed = sink.unindexed(std::slice::from_ref(&doc.key)).await.expect("unindexed");
    assert_eq!(unindexed, Vec::<DocumentKey>::new(), "a document the index holds is not unindexed");
    sink.apply(&[DocumentChange::Delete(doc.key)]).await.expect("clean up");

    sink.store_status("{\"state\":\"conformance\"}").await.expect("store_status");
    assert_eq!(sink.status_record().await.expect("status_record").as_deref(), Some("{\"state\":\"conformance\"}"), "the status reads back");
    sink.store_mapping_fingerprint("conformance-fields").await.expect("store_mapping_fingerprint");
    assert_eq!(
        sink.mapping_fingerprint().await.expect("mapping_fingerprint").as_deref(),
        Some("conformance-fields"),
        "so does the fingerprint"
    );
    let memory = sink.memory_info().await.expect("memory_info");
    assert!(!memory.policy.is_empty(), "memory info names a policy");
}

/// The [`Fencing`] role and its [`Lease`]: no lease held, no load, and
/// `doc_key` a document key no one uses. Every fenced write is tried
/// (documents, status, alias, repair acks). Leaves the sink unfenced, out
/// of any load, its lease free.
pub async fn check_fencing<S: Fencing + Documents + IndexAdmin + WorkQueues>(sink: &S, space: &EmbeddingSpace, doc_key: &str) {
    let ttl = std::time::Duration::from_secs(30);
    let (mine, theirs) = (sink.lease("conformance-1".into(), ttl), sink.lease("conformance-2".into(), ttl));
    assert_eq!(mine.current_holder().await.expect("current_holder"), None, "nobody holds a fresh lease");
    assert_eq!(mine.ttl_left_ms().await.expect("ttl_left_ms"), None, "a lease nobody holds has no time left");
    assert!(mine.try_acquire().await.expect("try_acquire"), "a free lease is taken");
    assert!(mine.try_acquire().await.expect("try_acquire"), "taking one's own lease again holds it");
    assert!(!theirs.try_acquire().await.expect("try_acquire"), "a held lease is not taken by another");
    assert!(!theirs.renew().await.expect("renew"), "nor renewed by another");
    assert!(mine.renew().await.expect("renew"), "the holder renews it");
    assert_eq!(mine.current_holder().await.expect("current_holder"), Some("conformance-1".into()), "it names its holder");
    assert!(mine.ttl_left_ms().await.expect("ttl_left_ms").is_some_and(|ms| ms > 0 && ms <= 30_000), "a held lease has time left");
    assert!(mine.renew_every() < ttl && mine.poll_every() <= mine.renew_every(), "renewal comes well before expiry");

    let doc = document(space, doc_key, "conformance coordination", "fenced");
    let key = DocumentKey(doc_key.into());
    let delete = [DocumentChange::Delete(key.clone())];
    let write = || sink.apply(&delete);
    sink.push_repairs(std::slice::from_ref(&key)).await.expect("push_repairs");
    sink.fence_with(Some("conformance-2".into()));
    assert!(matches!(write().await, Err(SinkError::Fenced { .. })), "a write fenced by a holder that lost the lease is refused");
    assert!(matches!(sink.store_status("{}").await, Err(SinkError::Fenced { .. })), "so is a status record");
    assert!(matches!(sink.switch_alias(None).await, Err(SinkError::Fenced { .. })), "and an alias switch");
    assert!(matches!(sink.ack_repairs(1).await, Err(SinkError::Fenced { .. })), "and a repair ack");
    assert_eq!(sink.pending_repairs().await.expect("pending_repairs"), 1, "the refused ack took nothing");
    sink.fence_with(Some("conformance-1".into()));
    sink.ack_repairs(1).await.expect("the holder's ack");
    sink.apply(&[DocumentChange::Upsert { doc: doc.clone(), vector: None }]).await.expect("the holder's fenced write");
    assert!(read(sink, &key).await.is_some(), "is applied");

    theirs.release().await.expect("release by another holder");
    assert_eq!(mine.current_holder().await.expect("current_holder"), Some("conformance-1".into()), "another's release frees nothing");
    mine.release().await.expect("release");
    assert_eq!(theirs.current_holder().await.expect("current_holder"), None, "a released lease is free");
    write().await.expect("a fenced write when nobody holds the lease");
    assert_eq!(mine.current_holder().await.expect("current_holder"), Some("conformance-1".into()), "takes the lease back");

    sink.begin_load("epoch-1").await.expect("begin_load");
    assert_eq!(sink.stored_load_epoch().await.expect("stored_load_epoch"), Some("epoch-1".into()), "a load's epoch is stored");
    write().await.expect("a write under the stored epoch");
    sink.resume_load("epoch-0");
    assert!(
        matches!(write().await, Err(SinkError::LoadLost { epoch }) if epoch == "epoch-0"),
        "a write under an epoch the sink does not hold is refused as a lost load"
    );
    sink.end_load();
    write().await.expect("after the load, writes check no epoch");

    sink.fence_with(None);
    mine.release().await.expect("release");
}

/// A fault the test that owns a sink injects from outside, as Redis's own
/// failures do: the in-memory fake by its hooks, the real Redis through the
/// test's own connection to it (`DUMP`/`RESTORE` of the sink's keys).
pub trait Rewind {
    /// Remembers everything the sink holds now.
    fn save(&self) -> impl Future<Output = ()>;
    /// Puts back what [`Self::save`] remembered and drops everything written
    /// since: a restart from an older snapshot, a lagging replica promoted.
    fn restore(&self) -> impl Future<Output = ()>;
}

/// A sink put back to an older state reads as that state: its older
/// position and its older documents, together, from the server and never
/// from anything the client remembers. The writer's check "Redis behind
/// what it acknowledged" and the replay from the position Redis holds rely
/// on it. Uses document keys that start with `key_prefix` (none may exist).
pub async fn check_rewind<S: Documents, R: Rewind>(sink: &S, rewind: &R, space: &EmbeddingSpace, key_prefix: &str) {
    let key = DocumentKey(format!("{key_prefix}rewound"));
    let (older, newer) = (Position::new("conformance-bin.000002", 100), Position::new("conformance-bin.000002", 200));
    let old = document(space, &key.0, "metformin 500 mg tablet", "before the snapshot");
    let new = document(space, &key.0, "metformin 1000 mg tablet", "after the snapshot");

    sink.apply_ending_at(&[DocumentChange::Upsert { doc: old.clone(), vector: Some(vector(space.dimensions, 0.1)) }], &older)
        .await
        .expect("a write before the snapshot");
    rewind.save().await;
    sink.apply_ending_at(&[DocumentChange::Upsert { doc: new.clone(), vector: Some(vector(space.dimensions, 0.2)) }], &newer)
        .await
        .expect("a write after it");
    assert_eq!(sink.stored_position().await.expect("stored_position"), Some(newer.clone()), "the later write's position");
    assert_eq!(read(sink, &key).await, state(&new, true), "and its document");

    rewind.restore().await;
    assert_eq!(sink.stored_position().await.expect("stored_position"), Some(older.clone()), "a rewound sink reads its older position");
    assert_eq!(read(sink, &key).await, state(&old, true), "and the document as it was then: position and documents went back together");

    // Replaying from the older position brings it forward again.
    sink.apply_ending_at(&[DocumentChange::Upsert { doc: new.clone(), vector: Some(vector(space.dimensions, 0.2)) }], &newer)
        .await
        .expect("the replayed write");
    assert_eq!(sink.stored_position().await.expect("stored_position"), Some(newer), "the replay's position");
    assert_eq!(read(sink, &key).await, state(&new, true), "and its document");
    sink.apply(&[DocumentChange::Delete(key)]).await.expect("clean up");
}

/// A fault the test that owns a sink injects from outside: the server
/// applies the sink's next request, and the connection drops before its
/// reply arrives (the in-memory fake by its fault hook, the real Redis
/// through a proxy that swallows one reply and closes).
pub trait LoseReply {
    /// Arms the fault for the sink's next request.
    fn lose_next_reply(&self) -> impl Future<Output = ()>;
}

/// A write whose reply was lost after the server applied it: the sink
/// reports a transient error (the caller cannot know the outcome and must
/// try again), reads afterwards come from the server and show that the
/// write landed, position and document together, and writing it again is
/// harmless. The committer's rule (a checkpoint moves only past an
/// acknowledged write, and a failed one is retried first) rests on it.
/// Uses document keys that start with `key_prefix` (none may exist).
pub async fn check_lost_reply<S: Documents, L: LoseReply>(sink: &S, fault: &L, space: &EmbeddingSpace, key_prefix: &str) {
    use crate::error::{Classify, ErrorClass};
    let key = DocumentKey(format!("{key_prefix}unacknowledged"));
    let (acknowledged, unacknowledged) = (Position::new("conformance-bin.000003", 100), Position::new("conformance-bin.000003", 200));
    let old = document(space, &key.0, "lisinopril 10 mg tablet", "acknowledged");
    let new = document(space, &key.0, "lisinopril 20 mg tablet", "applied, reply lost");

    sink.apply_ending_at(&[DocumentChange::Upsert { doc: old.clone(), vector: Some(vector(space.dimensions, 0.3)) }], &acknowledged)
        .await
        .expect("an acknowledged write");
    fault.lose_next_reply().await;
    let lost = sink
        .apply_ending_at(&[DocumentChange::Upsert { doc: new.clone(), vector: Some(vector(space.dimensions, 0.4)) }], &unacknowledged)
        .await
        .expect_err("a write whose reply was lost cannot report success");
    assert_eq!(lost.class(), ErrorClass::Transient, "a lost reply is worth retrying: {lost}");
    assert_eq!(
        sink.stored_position().await.expect("stored_position after the lost reply"),
        Some(unacknowledged.clone()),
        "the server applied the write: its position reads back, from the server"
    );
    assert_eq!(read(sink, &key).await, state(&new, true), "and its document, with the position (one transaction)");

    // The caller's retry of the same write changes nothing.
    sink.apply_ending_at(&[DocumentChange::Upsert { doc: new.clone(), vector: Some(vector(space.dimensions, 0.4)) }], &unacknowledged)
        .await
        .expect("the retried write");
    assert_eq!(sink.stored_position().await.expect("stored_position"), Some(unacknowledged), "the retry's position");
    assert_eq!(read(sink, &key).await, state(&new, true), "and the same document");
    sink.apply(&[DocumentChange::Delete(key)]).await.expect("clean up");
}

//! The sink contract as an executable check: [`check_document_sink`] runs
//! the same sequence of writes and reads against any [`DocumentSink`] and
//! panics, naming the step, where the sink differs from the contract. The
//! unit tests run it against the in-memory fake of `pipeline::fakes`, the
//! integration tests against `RedisSink` on a real Redis: so the fake the
//! pipeline's unit tests trust behaves as the real sink does.
//!
//! Built with the `fixture` feature (test support, like the sample data).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{DocumentSink, StoredState};
use crate::document::{Document, DocumentChange, DocumentKey, EmbeddingSpace};
use crate::position::Position;

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

/// Runs the contract against `sink`, whose vectors have `space.dimensions`
/// elements, using document keys that start with `key_prefix` (none may
/// exist yet). Panics with the step that failed.
pub async fn check_document_sink<S: DocumentSink>(sink: &S, space: &EmbeddingSpace, key_prefix: &str, caching: Caching) {
    let expect_cached = |v: &Arc<Vec<f32>>| match caching {
        Caching::On => Some(v.as_ref().clone()),
        Caching::Off => None,
    };
    let key = |name: &str| format!("{key_prefix}{name}");
    let (a, b) = (DocumentKey(key("a")), DocumentKey(key("b")));
    let vector = |seed: f32| Arc::new((0..space.dimensions).map(|i| seed + i as f32 / 1000.0).collect::<Vec<f32>>());
    let state = |doc: &Document, vector_ok: bool| {
        Some(StoredState { doc_hash: Some(doc.doc_hash.clone()), text_hash: Some(doc.text_hash.clone()), vector_ok })
    };
    let read = async |k: &DocumentKey| sink.read_state(std::slice::from_ref(k)).await.expect("read_state").remove(0);
    let quarantined = async |k: &DocumentKey| sink.quarantined(std::slice::from_ref(k)).await.expect("quarantined").remove(0);

    assert_eq!(sink.read_state(&[a.clone(), b.clone()]).await.expect("read_state"), vec![None, None], "absent keys read as None");
    assert_eq!(
        sink.quarantined(&[a.clone(), b.clone()]).await.expect("quarantined"),
        vec![false, false],
        "absent keys are not quarantined"
    );
    sink.apply(&[]).await.expect("an empty write is allowed");

    let before = sink.stored_position().await.expect("stored_position");
    let first = document(space, &key("a"), "aspirin 81 mg tablet", "Bayer");
    let v1 = vector(0.25);
    sink.apply(&[DocumentChange::Upsert { doc: first.clone(), vector: Some(v1.clone()) }]).await.expect("upsert with a vector");
    assert_eq!(read(&a).await, state(&first, true), "an upsert with a vector stores both hashes and a usable vector");
    let cached = sink.cached_vectors(&[&first.text_hash]).await.expect("cached_vectors").remove(0);
    assert_eq!(cached, expect_cached(&v1), "a written vector is cached for its text ({caching:?})");

    let relabelled = document(space, &key("a"), "aspirin 81 mg tablet", "Bayer AG");
    sink.apply(&[DocumentChange::Upsert { doc: relabelled.clone(), vector: None }]).await.expect("upsert keeping the vector");
    assert_eq!(read(&a).await, state(&relabelled, true), "an upsert without a vector keeps the stored one");

    let owed = document(space, &key("a"), "aspirin 325 mg tablet", "Bayer AG");
    sink.apply(&[DocumentChange::Owe(owed.clone())]).await.expect("owe");
    assert_eq!(read(&a).await, state(&owed, false), "an owed document has its new fields and no usable vector");

    sink.apply(&[DocumentChange::Quarantine { key: b.clone(), reason: "conformance".into() }]).await.expect("quarantine");
    assert!(quarantined(&b).await, "a quarantined key reads as quarantined");
    assert_eq!(read(&b).await, None, "the quarantine leaves the document as it is (absent)");
    sink.apply(&[DocumentChange::Release(b.clone())]).await.expect("release");
    assert!(!quarantined(&b).await, "a released key is out of the quarantine");

    sink.apply(&[DocumentChange::Delete(a.clone()), DocumentChange::Delete(b.clone())]).await.expect("deletes, one of an absent key");
    assert_eq!(sink.stored_position().await.expect("stored_position"), before, "writes without a position move none");
    assert_eq!(read(&a).await, None, "a deleted document reads as None");

    let (other, v2) = (space.text_hash("ibuprofen 200 mg capsule"), vector(0.5));
    sink.cache_vectors(&[(other.clone(), v2.clone())]).await.expect("cache_vectors");
    let cached = sink.cached_vectors(&[&other]).await.expect("cached_vectors").remove(0);
    assert_eq!(cached, expect_cached(&v2), "a vector cached by hand is the one given ({caching:?})");
    sink.trim_vector_cache().await.expect("trim_vector_cache");

    let second = document(space, &key("a"), "naproxen 220 mg tablet", "Aleve");
    let position = Position::new("conformance-bin.000001", 4);
    sink.apply_ending_at(&[DocumentChange::Upsert { doc: second.clone(), vector: Some(vector(0.75)) }], &position)
        .await
        .expect("a write ending at a position");
    assert_eq!(read(&a).await, state(&second, true), "the changes of a write ending at a position are applied");
    assert_eq!(sink.stored_position().await.expect("stored_position"), Some(position), "and the position is stored with them");
    sink.apply(&[DocumentChange::Delete(a)]).await.expect("clean up");
}

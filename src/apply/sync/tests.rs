//! The sync stage (decide, embed, write) against the in-memory sink,
//! checkpoint and embedder of `testing::fakes`: what ends up in the sink,
//! which texts were embedded and where the positions stand, judged from
//! the documents the test wrote down, not from the stage's own plan.

use crate::observe::stats::Counter;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::*;
use crate::apply::committer::Committer;
use crate::config::Config;
use crate::document::DocHash;
use crate::embed::{Embedder, SharedEmbedder};
use crate::error::Classify;
use crate::sink::contract::*;
use crate::testing::fakes::{MemoryCheckpoint, MemorySink, ScriptedEmbedder, SinkFault, document};

const DIMENSIONS: usize = 4;

/// The sync stage's parts, in memory.
struct Rig {
    sink: Arc<MemorySink>,
    local: Arc<MemoryCheckpoint>,
    embedder: Arc<ScriptedEmbedder>,
    stats: Arc<Stats>,
    loader: Arc<DocumentLoader>,
    write_chunk: usize,
}

impl Rig {
    /// Writes of `write_chunk` documents; an embedder of one text a call.
    fn new(write_chunk: usize) -> Self {
        let config = Config::from_toml(include_str!("../../../config/drugsync.toml"), Path::new("drugsync.toml"), |_| None).unwrap();
        let embedder = ScriptedEmbedder::new(DIMENSIONS, 1);
        let loader = crate::app::compose::document_loader(&config, embedder.space().clone());
        Self {
            sink: Arc::new(MemorySink::new(DIMENSIONS)),
            local: Arc::new(MemoryCheckpoint::default()),
            embedder: Arc::new(embedder),
            stats: Arc::default(),
            loader: Arc::new(loader),
            write_chunk,
        }
    }

    fn syncer(&self) -> Syncer<MemorySink> {
        Syncer {
            sink: self.sink.clone(),
            loader: self.loader.clone(),
            embedder: SharedEmbedder::from_arc(self.embedder.clone()),
            stats: self.stats.clone(),
            write_chunk: self.write_chunk,
            load_chunk: 1000,
            concurrency: 2,
        }
    }

    /// Syncs `wanted`; a batch ending at `at` when given.
    async fn sync(&self, wanted: &[(&str, Option<Document>)], at: Option<u64>, unavailable: WhenUnavailable) -> Result<(), RunError> {
        let wanted = wanted.iter().map(|(k, d)| (DocumentKey((*k).into()), d.clone())).collect();
        let syncer = self.syncer();
        let Some(offset) = at else { return syncer.sync_documents(wanted, unavailable).await };
        // As the streamer ends a batch: every write but the last, then the last through the committer.
        let committer = Committer::new(self.sink.clone(), self.local.clone());
        let prepared = syncer.prepare(wanted, BTreeMap::new(), unavailable, None).await?;
        let last = syncer.write_but_last(prepared).await?;
        last.commit(&syncer, &committer, &Position::new("binlog.000001", offset)).await
    }

    fn doc(&self, key: &str, text: &str, label: &str) -> Document {
        document(self.embedder.space(), key, text, label)
    }

    /// The sink's document of `key`: (its document hash, its vector).
    fn held(&self, key: &str) -> Option<(DocHash, Option<Vec<f32>>)> {
        self.sink.contents(|c| c.docs.get(&DocumentKey(key.into())).map(|h| (h.doc.doc_hash.clone(), h.vector.as_deref().cloned())))
    }

    fn positions(&self) -> (Option<u64>, Option<u64>) {
        let offset = |p: Option<Position>| p.map(|p| p.offset);
        (offset(self.sink.contents(|c| c.position.clone())), offset(self.local.position()))
    }

    fn owed(&self) -> Vec<String> {
        self.sink.contents(|c| c.owed.keys().map(|k| k.0.clone()).collect())
    }

    fn quarantined(&self) -> Vec<String> {
        self.sink.contents(|c| c.quarantine.keys().map(|k| k.0.clone()).collect())
    }
}

#[tokio::test]
async fn new_documents_are_embedded_once_per_distinct_text_and_the_position_goes_with_the_last_write() {
    let rig = Rig::new(2);
    let docs = [
        ("1", rig.doc("1", "aspirin 81 mg tablet", "Bayer")),
        ("2", rig.doc("2", "aspirin 81 mg tablet", "Ecotrin")),
        ("3", rig.doc("3", "ibuprofen 200 mg capsule", "Advil")),
        ("4", rig.doc("4", "naproxen 220 mg tablet", "Aleve")),
        ("5", rig.doc("5", "ibuprofen 200 mg capsule", "Motrin")),
    ];
    let wanted: Vec<_> = docs.iter().map(|(k, d)| (*k, Some(d.clone()))).collect();
    rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap();

    let mut embedded = rig.embedder.texts();
    embedded.sort();
    assert_eq!(embedded, ["aspirin 81 mg tablet", "ibuprofen 200 mg capsule", "naproxen 220 mg tablet"], "one call per distinct text");
    for (key, doc) in &docs {
        assert_eq!(rig.held(key), Some((doc.doc_hash.clone(), Some(rig.embedder.vector_of(&doc.text)))), "document {key}");
    }
    assert_eq!(rig.sink.contents(|c| c.writes), 3, "5 documents in writes of 2");
    assert_eq!(rig.positions(), (Some(100), Some(100)));
}

#[tokio::test]
async fn a_batch_whose_last_write_fails_keeps_both_positions_and_its_retry_embeds_nothing_again() {
    let rig = Rig::new(1);
    let wanted =
        [("1", Some(rig.doc("1", "aspirin", "a"))), ("2", Some(rig.doc("2", "ibuprofen", "b"))), ("3", Some(rig.doc("3", "aspirin", "c")))];
    rig.sync(&[], Some(50), WhenUnavailable::Owe).await.unwrap();
    rig.sink.fail_write(3, SinkFault::Lost);
    let err = rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(rig.positions(), (Some(50), Some(50)), "the position passes no unacknowledged write");
    assert!(rig.held("1").is_some() && rig.held("2").is_some() && rig.held("3").is_none());

    let calls = rig.embedder.texts().len();
    rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap();
    assert_eq!(rig.embedder.texts().len(), calls, "the retry finds every vector stored or cached");
    assert_eq!(rig.held("3").unwrap().1, Some(rig.embedder.vector_of("aspirin")));
    assert_eq!(rig.positions(), (Some(100), Some(100)));
}

#[tokio::test]
async fn a_last_write_applied_but_unacknowledged_leaves_redis_ahead_and_the_replay_is_harmless() {
    let rig = Rig::new(10);
    let wanted = [("1", Some(rig.doc("1", "aspirin", "a")))];
    rig.sink.fail_write(1, SinkFault::LostAfterApplying);
    assert!(rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap_err().is_transient());
    assert_eq!(rig.positions(), (Some(100), None), "Redis may be ahead of the checkpoint, never behind");

    // What a restart does: the same batch again, from the checkpoint.
    let writes = rig.sink.contents(|c| c.writes);
    rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap();
    assert_eq!(rig.embedder.texts(), ["aspirin"], "not embedded again");
    assert_eq!(rig.sink.contents(|c| c.writes), writes + 1, "only the position is written again");
    assert_eq!(rig.positions(), (Some(100), Some(100)));
}

#[tokio::test]
async fn a_lease_lost_mid_batch_stops_definitely_with_neither_position_moved() {
    let rig = Rig::new(1);
    let wanted: Vec<_> = ["1", "2", "3"].iter().map(|k| (*k, Some(rig.doc(k, &format!("text {k}"), "x")))).collect();
    rig.sink.fail_write(2, SinkFault::Fenced);
    let err = rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap_err();
    assert!(!err.is_transient(), "another writer holds the lease: stop, do not retry: {err}");
    assert!(rig.held("1").is_some(), "the first write was acknowledged before the lease went");
    assert!(rig.held("2").is_none() && rig.held("3").is_none(), "nothing written after the fence");
    assert_eq!(rig.positions(), (None, None));
}

#[tokio::test]
async fn unchanged_documents_cost_no_call_and_no_write() {
    let rig = Rig::new(10);
    let (a, b) = (rig.doc("1", "aspirin", "a"), rig.doc("2", "ibuprofen", "b"));
    rig.sink.put(a.clone(), Some(rig.embedder.vector_of("aspirin")));
    rig.sink.put(b.clone(), Some(rig.embedder.vector_of("ibuprofen")));
    rig.sync(&[("1", Some(a)), ("2", Some(b))], None, WhenUnavailable::Owe).await.unwrap();
    assert!(rig.embedder.texts().is_empty());
    assert_eq!(rig.sink.contents(|c| c.writes), 0);
    assert_eq!(rig.stats.counted(Counter::Unchanged), 2);
}

#[tokio::test]
async fn a_change_outside_the_text_keeps_the_stored_vector_and_a_cached_text_is_not_embedded() {
    let rig = Rig::new(10);
    rig.sink.put(rig.doc("1", "aspirin", "Bayer"), Some(rig.embedder.vector_of("aspirin")));
    let relabelled = rig.doc("1", "aspirin", "Bayer AG");
    let new = rig.doc("2", "naproxen", "Aleve");
    // A vector another document paid for, in the cache under its text's hash.
    rig.sink.cache_vectors(&[(new.text_hash.clone(), Arc::new(rig.embedder.vector_of("naproxen")))]).await.unwrap();
    rig.sync(&[("1", Some(relabelled.clone())), ("2", Some(new.clone()))], None, WhenUnavailable::Owe).await.unwrap();
    assert!(rig.embedder.texts().is_empty(), "neither text needed a call");
    assert_eq!(rig.held("1"), Some((relabelled.doc_hash, Some(rig.embedder.vector_of("aspirin")))));
    assert_eq!(rig.held("2"), Some((new.doc_hash, Some(rig.embedder.vector_of("naproxen")))));
    assert_eq!(rig.stats.counted(Counter::CacheHit), 1);
}

#[tokio::test]
async fn a_document_the_source_no_longer_has_is_deleted_and_one_never_written_is_left_alone() {
    let rig = Rig::new(10);
    rig.sink.put(rig.doc("1", "aspirin", "a"), Some(rig.embedder.vector_of("aspirin")));
    rig.sync(&[("1", None), ("2", None)], Some(7), WhenUnavailable::Owe).await.unwrap();
    assert_eq!((rig.held("1"), rig.held("2")), (None, None));
    assert_eq!(rig.stats.counted(Counter::Deleted), 1);
    assert_eq!(rig.positions(), (Some(7), Some(7)));
}

#[tokio::test]
async fn a_refused_text_quarantines_only_its_documents_and_they_leave_once_it_is_accepted() {
    let rig = Rig::new(10);
    rig.embedder.refuse.lock().unwrap().insert("x".repeat(50));
    let wanted = [
        ("1", Some(rig.doc("1", &"x".repeat(50), "a"))),
        ("2", Some(rig.doc("2", "aspirin", "b"))),
        ("3", Some(rig.doc("3", &"x".repeat(50), "c"))),
    ];
    rig.sync(&wanted, Some(100), WhenUnavailable::Owe).await.unwrap();
    assert_eq!(rig.quarantined(), ["1", "3"]);
    assert!(rig.held("1").is_none() && rig.held("3").is_none(), "left as they were (absent)");
    assert!(rig.held("2").is_some());
    assert_eq!(rig.positions(), (Some(100), Some(100)), "replication goes on");

    rig.embedder.refuse.lock().unwrap().clear();
    rig.sync(&wanted, Some(200), WhenUnavailable::Owe).await.unwrap();
    assert!(rig.quarantined().is_empty());
    assert_eq!(rig.held("3").unwrap().1, Some(rig.embedder.vector_of(&"x".repeat(50))));
}

#[tokio::test]
async fn an_embedding_outage_owes_vectors_while_streaming_and_the_fill_pays_them() {
    let rig = Rig::new(10);
    rig.sink.put(rig.doc("1", "aspirin 81", "a"), Some(rig.embedder.vector_of("aspirin 81")));
    rig.embedder.down.store(true, Ordering::SeqCst);
    let changed = rig.doc("1", "aspirin 325", "a");
    rig.sync(&[("1", Some(changed.clone()))], Some(100), WhenUnavailable::Owe).await.unwrap();
    assert_eq!(rig.held("1"), Some((changed.doc_hash.clone(), None)), "new fields now; the old text's vector gone");
    assert_eq!(rig.owed(), ["1"]);
    assert_eq!(rig.stats.counted(Counter::Owed), 1, "the owed vector is counted");
    assert_eq!(rig.positions(), (Some(100), Some(100)), "freshness does not wait for the service");

    // The fill while the service is still down writes nothing.
    let writes = rig.sink.contents(|c| c.writes);
    rig.sync(&[("1", Some(changed.clone()))], None, WhenUnavailable::Leave).await.unwrap();
    assert_eq!(rig.sink.contents(|c| c.writes), writes);
    assert_eq!(rig.owed(), ["1"]);
    rig.embedder.down.store(false, Ordering::SeqCst);
    rig.sync(&[("1", Some(changed.clone()))], None, WhenUnavailable::Leave).await.unwrap();
    assert_eq!(rig.held("1"), Some((changed.doc_hash, Some(rig.embedder.vector_of("aspirin 325")))));
    assert!(rig.owed().is_empty());
}

#[tokio::test]
async fn filling_writes_the_vectors_that_came_back_and_leaves_the_others_owed_untouched() {
    let rig = Rig::new(10);
    rig.embedder.down.store(true, Ordering::SeqCst);
    let (a, b) = (rig.doc("1", "aspirin", "a"), rig.doc("2", "ibuprofen", "b"));
    rig.sync(&[("1", Some(a.clone())), ("2", Some(b.clone()))], Some(100), WhenUnavailable::Owe).await.unwrap();
    assert_eq!(rig.owed(), ["1", "2"]);
    rig.embedder.down.store(false, Ordering::SeqCst);
    rig.embedder.throttled.lock().unwrap().insert("aspirin".into());
    let writes = rig.sink.contents(|c| c.writes);
    let owed_before = rig.stats.counted(Counter::Owed);

    rig.sync(&[("1", Some(a.clone())), ("2", Some(b.clone()))], None, WhenUnavailable::Leave).await.unwrap();
    assert_eq!(rig.stats.counted(Counter::Owed), owed_before, "nothing owed again: the unanswered document is not rewritten");
    assert_eq!(rig.held("2"), Some((b.doc_hash, Some(rig.embedder.vector_of("ibuprofen")))), "the text that came back is written");
    assert_eq!(rig.held("1"), Some((a.doc_hash, None)), "the other is left as it was");
    assert_eq!(rig.owed(), ["1"], "and still owed");
    assert_eq!(rig.sink.contents(|c| c.writes), writes + 1, "one write, for the filled document only");
    assert_eq!(rig.positions(), (Some(100), Some(100)), "filling moves no position");
}

#[tokio::test]
async fn a_load_that_must_wait_writes_nothing_but_keeps_the_vectors_it_got() {
    let rig = Rig::new(10);
    rig.embedder.throttled.lock().unwrap().insert("ibuprofen".into());
    let wanted = [("1", Some(rig.doc("1", "aspirin", "a"))), ("2", Some(rig.doc("2", "ibuprofen", "b")))];
    assert!(rig.sync(&wanted, None, WhenUnavailable::Wait).await.unwrap_err().is_transient());
    assert_eq!((rig.held("1"), rig.held("2")), (None, None), "no document without its vector");
    assert!(rig.owed().is_empty());

    rig.embedder.throttled.lock().unwrap().clear();
    rig.sync(&wanted, None, WhenUnavailable::Wait).await.unwrap();
    assert_eq!(rig.embedder.texts(), ["aspirin", "ibuprofen"], "aspirin was paid for once");
    assert!(rig.held("1").is_some() && rig.held("2").is_some());
}

#[tokio::test]
async fn a_quarantined_key_the_source_and_redis_no_longer_have_leaves_the_quarantine() {
    let rig = Rig::new(10);
    rig.embedder.refuse.lock().unwrap().insert("refused".into());
    rig.sync(&[("1", Some(rig.doc("1", "refused", "a")))], Some(100), WhenUnavailable::Owe).await.unwrap();
    assert_eq!((rig.quarantined(), rig.held("1")), (vec!["1".to_owned()], None));
    // The source deleted it: nothing to delete in Redis, but the entry must not stay behind.
    rig.sync(&[("1", None)], Some(200), WhenUnavailable::Owe).await.unwrap();
    assert!(rig.quarantined().is_empty(), "{:?}", rig.quarantined());
    assert_eq!(rig.stats.counted(Counter::Deleted), 0, "and nothing was deleted");
}

#[tokio::test]
async fn a_text_the_page_before_embedded_is_not_embedded_again_before_that_page_is_written() {
    let rig = Rig::new(10);
    let s = rig.syncer();
    let page = |key: &str| vec![(DocumentKey(key.into()), Some(rig.doc(key, "aspirin", key)))];
    let first = s.prepare(page("1"), BTreeMap::new(), WhenUnavailable::Wait, None).await.unwrap();
    // The initial load prepares the next page while the first is still being written.
    let second = s.prepare(page("2"), BTreeMap::new(), WhenUnavailable::Wait, Some(&first.recent())).await.unwrap();
    assert_eq!(rig.embedder.texts(), ["aspirin"], "one call for the text of both pages");
    s.write_prepared(first).await.unwrap();
    s.write_prepared(second).await.unwrap();
    let vector = Some(rig.embedder.vector_of("aspirin"));
    assert_eq!((rig.held("1").unwrap().1, rig.held("2").unwrap().1), (vector.clone(), vector));
}

/// A lookup whose answer per key is scripted: a document, a definite
/// refusal, or a transient failure; a batch fails as its worst key does.
struct ScriptedLookup {
    refused: Vec<&'static str>,
    transient: Vec<&'static str>,
    /// The transient keys fail only when asked alone (the connection drops
    /// while keys are tried one by one).
    transient_alone: bool,
    /// Keys asked, call by call.
    calls: Vec<Vec<String>>,
}

impl crate::apply::sync::lookup::KeyLookup for ScriptedLookup {
    fn load(
        &mut self,
        keys: &[DocumentKey],
    ) -> impl std::future::Future<Output = Result<BTreeMap<DocumentKey, Document>, crate::mysql::SourceError>> + Send {
        self.calls.push(keys.iter().map(|k| k.0.clone()).collect());
        let has = |list: &[&str]| keys.iter().any(|k| list.contains(&k.0.as_str()));
        let answer = if has(&self.transient) && (!self.transient_alone || keys.len() == 1) {
            Err(crate::mysql::SourceError::Connection("connection reset".into()))
        } else if has(&self.refused) {
            Err(crate::mysql::SourceError::Query { message: "Illegal mix of collations".into(), query: "SELECT".into() })
        } else {
            let space = ScriptedEmbedder::new(DIMENSIONS, 1).space().clone();
            Ok(keys.iter().filter(|k| k.0 != "0").map(|k| (k.clone(), document(&space, &k.0, "text", "label"))).collect())
        };
        std::future::ready(answer)
    }
}

fn keys(names: &[&str]) -> Vec<DocumentKey> {
    names.iter().map(|k| DocumentKey((*k).into())).collect()
}

#[tokio::test]
async fn a_key_the_source_refuses_for_good_is_set_apart_and_the_others_load() {
    let mut lookup = ScriptedLookup { refused: vec!["b\u{e9}"], transient: vec![], transient_alone: false, calls: vec![] };
    let (docs, refused) = crate::apply::sync::lookup::sort_out(&keys(&["a", "b\u{e9}", "c"]), &mut lookup).await.unwrap();
    assert_eq!(docs.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(refused.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["b\u{e9}"]);
    assert_eq!(lookup.calls[1], ["0"], "the probe comes before any key is tried alone");
}

#[tokio::test]
async fn a_transient_failure_is_returned_and_never_taken_for_a_refusal() {
    // On the whole batch: returned at once.
    let mut lookup = ScriptedLookup { refused: vec![], transient: vec!["b"], transient_alone: false, calls: vec![] };
    let err = crate::apply::sync::lookup::sort_out(&keys(&["a", "b"]), &mut lookup).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(lookup.calls.len(), 1, "no probe, no key alone");
    // While keys are tried one by one (the connection drops mid-way): returned, nothing quarantined.
    let mut lookup = ScriptedLookup { refused: vec!["a"], transient: vec!["c"], transient_alone: true, calls: vec![] };
    let err = crate::apply::sync::lookup::sort_out(&keys(&["a", "b", "c"]), &mut lookup).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(lookup.calls.last().unwrap(), &["c"], "it failed on the key tried alone");
}

#[tokio::test]
async fn when_the_probe_fails_too_the_mapping_is_at_fault_and_no_key_is_quarantined() {
    let mut lookup = ScriptedLookup { refused: vec!["a", "0"], transient: vec![], transient_alone: false, calls: vec![] };
    let err = crate::apply::sync::lookup::sort_out(&keys(&["a", "b"]), &mut lookup).await.unwrap_err();
    assert!(!err.is_transient() && err.to_string().contains("Illegal mix"), "{err}");
    assert_eq!(lookup.calls.len(), 2, "the batch, then the probe; no key alone");
}

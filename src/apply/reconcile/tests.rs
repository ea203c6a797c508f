//! A reconcile's decisions over the in-memory sink: which mode it takes,
//! how it classes drift, and what each mode does with the drift it found.
//! The documents MySQL would return are given by the test; the expected
//! counts and contents are written from them, not from the code.

use super::*;
use crate::embed::Embedder;
use crate::sink::contract::*;
use crate::testing::fakes::rig::Rig;
use crate::testing::fakes::{SinkFault, document};

const TTL: Duration = Duration::from_secs(30);

fn doc(rig: &Rig, key: &str, text: &str, label: &str) -> Document {
    document(rig.replicator.parts().embedder.space(), key, text, label)
}

fn vector(rig: &Rig) -> Vec<f32> {
    vec![0.5; rig.replicator.parts().embedder.space().dimensions]
}

fn keys(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.key.0.clone()).collect()
}

#[tokio::test]
async fn a_reconcile_repairs_when_it_can_take_the_lease_and_hands_off_when_a_streamer_holds_it() {
    let rig = Rig::new(|c| c);
    let reconciler = rig.replicator.parts().reconciler();
    let streamer = rig.sink().lease("streamer".into(), TTL);

    let dry = rig.sink().lease("reconcile-dry".into(), TTL);
    assert_eq!(reconciler.choose_mode(true, &dry).await.unwrap(), Mode::DryRun);
    assert_eq!(dry.current_holder().await.unwrap(), None, "a dry run takes no lease");

    assert!(streamer.try_acquire().await.unwrap());
    let second = rig.sink().lease("reconcile-2".into(), TTL);
    assert_eq!(reconciler.choose_mode(false, &second).await.unwrap(), Mode::Handoff);
    assert_eq!(second.current_holder().await.unwrap().as_deref(), Some("streamer"), "the streamer keeps its lease");

    streamer.release().await.unwrap();
    assert_eq!(reconciler.choose_mode(false, &second).await.unwrap(), Mode::Repair);
    assert_eq!(second.current_holder().await.unwrap().as_deref(), Some("reconcile-2"));
    // Its writes are fenced by that lease: once a streamer takes it over, they are refused.
    rig.sink().tamper(|c| c.lease = Some("streamer".into()));
    let write = rig.sink().apply(&[crate::document::DocumentChange::Delete(DocumentKey("x".into()))]).await;
    assert!(matches!(write, Err(crate::sink::SinkError::Fenced { .. })), "{write:?}");
}

#[tokio::test]
async fn each_kind_of_drift_is_counted_once_and_only_what_needs_a_vector_is_priced() {
    let rig = Rig::new(|c| c);
    let reconciler = rig.replicator.parts().reconciler();
    let same = doc(&rig, "00001", "aspirin 81 mg", "Bayer");
    let relabelled = doc(&rig, "00002", "ibuprofen 200 mg", "Advil");
    let no_vector = doc(&rig, "00003", "naproxen 220 mg", "Aleve");
    let missing = doc(&rig, "00004", "acetaminophen 500 mg", "Tylenol");
    let new_text = doc(&rig, "00005", "cetirizine 10 mg", "Zyrtec");
    rig.sink().put(same.clone(), Some(vector(&rig)));
    rig.sink().put(doc(&rig, "00002", "ibuprofen 200 mg", "Motrin"), Some(vector(&rig)));
    rig.sink().put(no_vector.clone(), None);
    rig.sink().put(doc(&rig, "00005", "cetirizine 5 mg", "Zyrtec"), Some(vector(&rig)));

    let mut report = ReconcileReport::default();
    let mut texts = WantedTexts::default();
    let current = vec![same, relabelled.clone(), no_vector.clone(), missing.clone(), new_text.clone()];
    let differing = reconciler.assess(current, &mut report, &mut texts).await.unwrap();

    assert_eq!(keys(&differing), ["00002", "00003", "00004", "00005"]);
    let counts = (report.checked, report.missing, report.stale_fields, report.stale_vectors);
    assert_eq!(counts, (5, 1, 1, 2), "checked, missing, stale fields, stale vectors");
    let priced: Vec<&TextHash> = texts.0.keys().collect();
    let mut wanted = vec![&no_vector.text_hash, &missing.text_hash, &new_text.text_hash];
    wanted.sort();
    assert_eq!(priced, wanted, "a relabelled document keeps its vector: its text is not priced");
}

#[tokio::test]
async fn a_repair_writes_a_handoff_queues_and_a_dry_run_changes_nothing() {
    let rig = Rig::new(|c| c);
    let reconciler = rig.replicator.parts().reconciler();
    let current = doc(&rig, "00001", "aspirin 81 mg", "Bayer");
    rig.sink().put(doc(&rig, "00009", "orphan", "gone"), Some(vector(&rig)));
    let wanted = || vec![(current.key.clone(), Some(current.clone())), (DocumentKey("00009".into()), None)];

    let mut report = ReconcileReport::default();
    reconciler.repair(Mode::DryRun, wanted(), &mut report).await.unwrap();
    let held = || rig.sink().contents(|c| c.docs.keys().map(|k| k.0.clone()).collect::<Vec<_>>());
    assert_eq!(held(), ["00009"], "a dry run writes nothing");

    reconciler.repair(Mode::Handoff, wanted(), &mut report).await.unwrap();
    assert_eq!(held(), ["00009"], "a handoff writes no document");
    assert_eq!(rig.sink().peek_repairs(10).await.unwrap(), [DocumentKey("00001".into()), DocumentKey("00009".into())]);
    assert_eq!(report.handed_off, 2);

    reconciler.repair(Mode::Repair, wanted(), &mut report).await.unwrap();
    assert_eq!(held(), ["00001"], "a repair writes the current document and deletes the orphan");
}

/// The fault point: the repair's write is lost. Nothing of it may count as
/// done; repairing again (the next pass) applies it.
#[tokio::test]
async fn a_repair_whose_write_is_lost_fails_as_transient_and_applies_when_repeated() {
    let rig = Rig::new(|c| c);
    let reconciler = rig.replicator.parts().reconciler();
    let current = doc(&rig, "00001", "aspirin 81 mg", "Bayer");
    let wanted = || vec![(current.key.clone(), Some(current.clone()))];
    rig.sink().fail_write(1, SinkFault::Lost);
    let err = reconciler.repair(Mode::Repair, wanted(), &mut ReconcileReport::default()).await.unwrap_err();
    assert!(crate::error::Classify::is_transient(&err), "{err}");
    assert_eq!(rig.sink().contents(|c| c.docs.len()), 0, "nothing was written");
    reconciler.repair(Mode::Repair, wanted(), &mut ReconcileReport::default()).await.unwrap();
    let stored = rig.sink().read_state(std::slice::from_ref(&current.key)).await.unwrap().remove(0);
    assert_eq!(stored.and_then(|s| s.doc_hash), Some(current.doc_hash.clone()));
}

#[tokio::test]
async fn a_current_document_the_index_cannot_hold_is_counted_marked_and_rewritten_but_not_in_a_dry_run() {
    let rig = Rig::new(|c| c);
    let reconciler = rig.replicator.parts().reconciler();
    let indexed = doc(&rig, "00001", "aspirin 81 mg", "Bayer");
    let refused = doc(&rig, "00002", "ibuprofen 200 mg", "Advil");
    rig.sink().put(indexed.clone(), Some(vector(&rig)));
    rig.sink().put(refused.clone(), Some(vector(&rig)));
    rig.sink().tamper(|c| c.unindexable.insert(refused.key.clone()));
    let current = || vec![indexed.clone(), refused.clone()];

    let mut report = ReconcileReport::default();
    reconciler.repair_unindexed(Mode::DryRun, current(), &mut report).await.unwrap();
    assert_eq!(report.unindexed, 1);
    let writes = rig.sink().contents(|c| c.writes);
    assert_eq!(writes, 0, "a dry run writes nothing");
    let hash_of = async |key: &DocumentKey| rig.sink().read_state(std::slice::from_ref(key)).await.unwrap().remove(0).unwrap().doc_hash;
    assert!(hash_of(&refused.key).await.is_some(), "nor marks anything");

    let mut report = ReconcileReport::default();
    reconciler.repair_unindexed(Mode::Repair, current(), &mut report).await.unwrap();
    assert_eq!(report.unindexed, 1);
    let rewritten = rig.sink().contents(|c| c.writes);
    assert_eq!(rewritten, 1, "the unindexed document was rewritten, the indexed one left alone");
    assert_eq!(hash_of(&indexed.key).await, Some(indexed.doc_hash.clone()));
}

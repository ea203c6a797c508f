//! The initial load's claim on a load (resume the interrupted one, or
//! begin anew under a new epoch) over the in-memory sink and a real
//! checkpoint store, and the epoch guarding the load's writes.

use super::*;
use crate::apply::sync::WhenUnavailable;
use crate::checkpoint::BootstrapProgress;
use crate::document::DocumentKey;
use crate::embed::Embedder;
use crate::sink::SinkError;
use crate::sink::contract::*;
use crate::testing::fakes::rig::{Rig, at};
use crate::testing::fakes::{MemorySink, document};

/// Writes a page of one document through the load's syncer.
async fn write_a_page(rig: &Rig, loader: &Loader<MemorySink>) -> Result<(), RunError> {
    let space = rig.replicator.parts().embedder.space().clone();
    let doc = document(&space, "00001", "aspirin 81 mg tablet", "Bayer");
    loader.syncer.sync_documents(vec![(DocumentKey("00001".into()), Some(doc))], WhenUnavailable::Wait).await
}

#[tokio::test]
async fn a_first_load_begins_under_a_new_epoch_stored_on_both_sides() {
    let rig = Rig::new(|c| c);
    let loader = rig.replicator.loader();
    let progress = loader.claim(at(500)).await.unwrap();
    assert_eq!((progress.position.offset, progress.last_key.as_deref()), (500, None));
    let epoch = progress.epoch.clone().expect("an epoch");
    assert_eq!(rig.sink().stored_load_epoch().await.unwrap(), Some(epoch), "the sink holds it");
    assert_eq!(rig.replicator.checkpoint().bootstrap_progress().unwrap(), Some(progress), "so does the checkpoint store");
    write_a_page(&rig, &loader).await.expect("a page written under the epoch");
}

#[tokio::test]
async fn an_interrupted_load_whose_epoch_the_sink_holds_is_resumed_where_it_stopped() {
    let rig = Rig::new(|c| c);
    let loader = rig.replicator.loader();
    let first = loader.claim(at(500)).await.unwrap();
    let interrupted = BootstrapProgress { last_key: Some("00420".into()), ..first.clone() };
    rig.replicator.checkpoint().set_bootstrap_progress(&interrupted).unwrap();
    // The process ends; a new run claims again.
    rig.sink().end_load();

    let resumed = loader.claim(at(900)).await.unwrap();
    assert_eq!(resumed, interrupted, "same snapshot position, epoch and last key: not the new snapshot");
    assert_eq!(rig.sink().stored_load_epoch().await.unwrap(), first.epoch, "the sink's epoch is kept");
    rig.sink().tamper(|c| c.load_epoch = Some("another".into()));
    assert!(
        matches!(write_a_page(&rig, &loader).await, Err(RunError::Sink(SinkError::LoadLost { .. }))),
        "the resumed load's writes check its epoch again"
    );
}

#[tokio::test]
async fn an_interrupted_load_whose_pages_the_sink_lost_starts_over_from_the_new_snapshot() {
    let rig = Rig::new(|c| c);
    let loader = rig.replicator.loader();
    let first = loader.claim(at(500)).await.unwrap();
    rig.replicator.checkpoint().set_bootstrap_progress(&BootstrapProgress { last_key: Some("00420".into()), ..first.clone() }).unwrap();
    rig.sink().empty();

    let again = loader.claim(at(900)).await.unwrap();
    assert_eq!((again.position.offset, again.last_key.as_deref()), (900, None), "from the new snapshot, from the first key");
    assert!(again.epoch.is_some() && again.epoch != first.epoch, "under a new epoch: {again:?} {first:?}");
    assert_eq!(rig.sink().stored_load_epoch().await.unwrap(), again.epoch);
    assert_eq!(rig.replicator.checkpoint().bootstrap_progress().unwrap(), Some(again), "and recorded before any page");
}

/// The fault point: Redis is emptied while the load runs. Its next page
/// must not land in the empty Redis as if the earlier pages were there.
#[tokio::test]
async fn a_page_written_after_the_sink_lost_the_load_is_refused_and_writes_nothing() {
    let rig = Rig::new(|c| c);
    let loader = rig.replicator.loader();
    let progress = loader.claim(at(500)).await.unwrap();
    rig.sink().empty();
    let err = write_a_page(&rig, &loader).await.unwrap_err();
    assert!(matches!(&err, RunError::Sink(SinkError::LoadLost { epoch }) if Some(epoch) == progress.epoch.as_ref()), "{err:?}");
    assert_eq!(rig.sink().contents(|c| c.docs.len()), 0, "nothing was written");
}

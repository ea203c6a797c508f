//! The apply loop against the in-memory sink and a real checkpoint store
//! (redb in a temporary directory), fed transactions through its channel
//! as the binlog reader would. Only paths that read no MySQL: transactions
//! that touch no tracked row, refusals stopped on, and Redis losing what it
//! acknowledged. Judged by where both positions end, from the positions the
//! test itself sent.

use crate::observe::stats::{Counter, Gauge};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cdc::binlog::InFlight;
use crate::cdc::decode::Transaction;
use crate::mysql::refusal::Refusal;
use crate::sink::contract::*;
use crate::testing::fakes::SinkFault;
use crate::testing::fakes::rig::{Rig, at};

/// Runs the apply loop from `start` over `transactions`; the channel
/// closes after them, which ends the loop once they are applied.
async fn apply(rig: &Rig, start: u64, transactions: Vec<Transaction>) -> Result<Ended, RunError> {
    let (tx, mut rx) = mpsc::channel(transactions.len().max(1));
    for t in transactions {
        tx.send(InFlight::unbudgeted(t)).await.unwrap();
    }
    drop(tx);
    let streamer = rig.replicator.streamer();
    streamer.apply_loop(&mut rx, &CancellationToken::new(), at(start), 1000, &mut None).await
}

/// A transaction ending at `offset` that changed no tracked row.
fn untracked(offset: u64) -> Transaction {
    Transaction {
        routing: Default::default(),
        rows: 0,
        commit: at(offset),
        committed_at: 1_700_000_000,
        refusal: None,
        canary_beat_ms: None,
    }
}

#[tokio::test(start_paused = true)]
async fn transactions_touching_no_tracked_row_move_both_positions_to_the_last_commit() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    let ended = apply(&rig, 100, (1..=5).map(|i| untracked(100 + i * 10)).collect()).await.unwrap();
    assert!(matches!(ended, Ended::Stopped), "{ended:?}");
    assert_eq!(rig.positions().await, (Some(150), Some(150)));
    assert_eq!(rig.replicator.parts().stats().counted(Counter::Transactions), 5);
}

#[tokio::test(start_paused = true)]
async fn a_commit_redis_never_acknowledged_is_retried_and_the_checkpoint_waits_for_it() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    // The batch's write is lost, then its retry's reply is lost after applying.
    rig.sink().fail_write(1, SinkFault::Lost);
    rig.sink().fail_write(2, SinkFault::LostAfterApplying);
    let ended = apply(&rig, 100, vec![untracked(110), untracked(120)]).await.unwrap();
    assert!(matches!(ended, Ended::Stopped), "{ended:?}");
    assert_eq!(rig.positions().await, (Some(120), Some(120)));
    assert!(rig.sink().contents(|c| c.writes) >= 2, "the retried write reached the sink");
}

#[tokio::test(start_paused = true)]
async fn redis_behind_what_it_acknowledged_stops_the_loop_before_anything_is_written() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    rig.sink().restore_older(at(40));
    let writes = rig.sink().contents(|c| c.writes);
    let ended = apply(&rig, 100, vec![untracked(110)]).await.unwrap();
    match ended {
        Ended::Resync(Resync::RedisRewound { expected, found }) => {
            assert_eq!((expected.offset, found.map(|p| p.offset)), (100, Some(40)));
        }
        other => panic!("expected RedisRewound, got {other:?}"),
    }
    assert_eq!(rig.positions().await, (Some(100), Some(40)), "neither position moved");
    assert_eq!(rig.sink().contents(|c| c.writes), writes, "nothing was written");
}

#[tokio::test(start_paused = true)]
async fn an_index_that_stops_answering_ends_the_loop_on_its_idle_tick() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    rig.sink().tamper(|c| c.alias = None);
    let (_tx, mut rx) = mpsc::channel::<InFlight>(1);
    let streamer = rig.replicator.streamer();
    let ended = streamer.apply_loop(&mut rx, &CancellationToken::new(), at(100), 1000, &mut None).await.unwrap();
    assert!(matches!(&ended, Ended::Resync(Resync::IndexGone { alias }) if *alias == rig.sink().version().alias), "{ended:?}");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_under_on_lost_sync_stop_stops_with_it_and_moves_no_position() {
    let rig = Rig::new(|c| c.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1));
    rig.streamed_up_to(100).await;
    let mut refused = untracked(120);
    refused.refusal = Some(Refusal::Incident);
    let err = apply(&rig, 100, vec![untracked(110), refused]).await.unwrap_err();
    assert!(err.to_string().contains("INCIDENT") || err.to_string().to_lowercase().contains("incident"), "{err}");
    let (local, remote) = rig.positions().await;
    assert!(local <= Some(110) && remote <= Some(110), "the position never passes the refusal: {local:?} {remote:?}");
}

/// The loop over a channel the test keeps open, so transactions can arrive
/// while a batch is applied; the loop ends when the sender is dropped.
fn open_loop(rig: &Rig, start: u64) -> (mpsc::Sender<InFlight>, impl std::future::Future<Output = Result<Ended, RunError>> + '_) {
    let (tx, mut rx) = mpsc::channel(64);
    let run = async move {
        let streamer = rig.replicator.streamer();
        streamer.apply_loop(&mut rx, &CancellationToken::new(), at(start), 1000, &mut None).await
    };
    (tx, run)
}

/// Watches Redis's position every millisecond (tokio time, paused: exact
/// and deterministic) until it reads `offset`; returns every position it
/// held on the way, in order, and when it got there. Fails after a minute
/// of that clock (no real time): a position that never comes is a failure,
/// not a hang.
async fn watch_until(rig: &Rig, offset: u64) -> (Vec<u64>, std::time::Duration) {
    let started = tokio::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        let now = rig.positions().await.1;
        if let Some(p) = now
            && seen.last() != Some(&p)
        {
            seen.push(p);
        }
        if now == Some(offset) {
            return (seen, started.elapsed());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "Redis never reached {offset}: it held {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_lone_transaction_is_applied_at_once() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    let (tx, run) = open_loop(&rig, 100);
    let test = async {
        tx.send(InFlight::unbudgeted(untracked(110))).await.unwrap();
        let (seen, took) = watch_until(&rig, 110).await;
        drop(tx);
        (seen, took)
    };
    let (ended, (seen, took)) = tokio::join!(run, test);
    assert!(matches!(ended.unwrap(), Ended::Stopped));
    assert_eq!(seen, vec![100, 110]);
    // Tokio's paused clock: no wait for company was added (it was 200 ms).
    assert!(took <= std::time::Duration::from_millis(1), "a lone change waited {took:?}");
}

#[tokio::test(start_paused = true)]
async fn transactions_arriving_during_an_apply_form_the_next_batch() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    rig.sink().take_per_write(std::time::Duration::from_millis(50));
    let batches = rig.replicator.parts().stats().counted(Counter::Batches);
    let (tx, run) = open_loop(&rig, 100);
    let test = async {
        tx.send(InFlight::unbudgeted(untracked(110))).await.unwrap();
        // While the first batch is being written, three more arrive.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        for offset in [120, 130, 140] {
            tx.send(InFlight::unbudgeted(untracked(offset))).await.unwrap();
        }
        let watched = watch_until(&rig, 140).await;
        drop(tx);
        watched
    };
    let (ended, (seen, took)) = tokio::join!(run, test);
    assert!(matches!(ended.unwrap(), Ended::Stopped));
    assert_eq!(seen, vec![100, 110, 140], "the first went alone, the three that arrived meanwhile together");
    assert_eq!(rig.replicator.parts().stats().counted(Counter::Batches) - batches, 2);
    assert_eq!(rig.replicator.parts().stats().counted(Counter::Transactions), 4);
    // The second batch started when the first was acknowledged (50 ms) and
    // one dense gap found nothing more coming, not a fixed window later.
    let ack = std::time::Duration::from_millis(50);
    assert!(took <= ack + DENSE_GAP + ack + std::time::Duration::from_millis(1), "took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_storm_arriving_back_to_back_is_gathered_for_up_to_the_batch_delay() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    rig.sink().take_per_write(std::time::Duration::from_millis(50));
    let batches = rig.replicator.parts().stats().counted(Counter::Batches);
    let (tx, run) = open_loop(&rig, 100);
    let send = async move {
        // 400 transactions, one a millisecond (closer than the dense gap).
        for i in 1..=400u64 {
            tx.send(InFlight::unbudgeted(untracked(100 + i))).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    let (ended, (), (seen, _)) = tokio::join!(run, send, watch_until(&rig, 500));
    assert!(matches!(ended.unwrap(), Ended::Stopped));
    // The first goes alone at 0 ms; the ones that arrived during its write
    // (to 50 ms) start the next, which gathers for the batch delay (200 ms:
    // to 250 ms), then the rest once the storm ends: 3 batches, not 100s.
    let batches = rig.replicator.parts().stats().counted(Counter::Batches) - batches;
    assert_eq!(batches, 3, "positions seen: {seen:?}");
    assert_eq!(seen[1], 101, "the storm's first transaction went alone");
    let second = seen[2] - 101;
    assert!((240..=260).contains(&second), "the second batch gathered about 250 ms of the storm: {second} transactions ({seen:?})");
}

#[tokio::test(start_paused = true)]
async fn the_idle_tick_reads_the_quarantine_size_for_the_metrics() {
    let rig = Rig::new(|c| c);
    rig.streamed_up_to(100).await;
    rig.sink().tamper(|c| {
        for key in ["a", "b"] {
            c.quarantine.insert(crate::document::DocumentKey(key.into()), "refused by the model".into());
        }
    });
    let (_tx, mut rx) = mpsc::channel::<InFlight>(1);
    let cancel = CancellationToken::new();
    let streamer = rig.replicator.streamer();
    let stop = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        cancel.cancel();
    };
    let mut no_replay = None;
    let (ended, ()) = tokio::join!(streamer.apply_loop(&mut rx, &cancel, at(100), 1000, &mut no_replay), stop);
    assert!(matches!(ended.unwrap(), Ended::Stopped));
    assert_eq!(rig.replicator.parts().stats().gauge(Gauge::QuarantinedNow), 2);
}

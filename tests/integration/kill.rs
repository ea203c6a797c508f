//! The kill harness: a random mix of transactions over all 8 tables while
//! the real binary is SIGKILLed at random moments and restarted. At the end
//! the index must equal the documents computed from MySQL: every field, every
//! vector matching its text, no orphan, none missing.
//!
//! Two runs of it. **Checkpoint order** is run where nothing can repair a
//! lost write: one transaction per batch and `full_diff_share = 1`, so no
//! batch is applied by a full hash diff, `on_lost_sync = "stop"`, and the
//! logs must show no full diff, no reconcile and no reload. Convergence
//! there can only come from the order "Redis first, then the checkpoint". A
//! start that finds Redis behind the checkpoint is that order broken, and
//! fails both runs. **The repair path** keeps the default batching, where
//! big batches are applied by full diffs.
//!
//! Each runs at full size by default, CI included: 5,000 transactions and at
//! least 20 kills while they are written. A quicker local run:
//!
//!     DRUGSYNC_KILL_TRANSACTIONS=600 DRUGSYNC_KILL_KILLS=5 cargo nextest run -E 'test(/^kill::/)'

use crate::common;
use crate::common::on_every_source;

use std::time::Duration;

use common::TestEnv;
use rand::{Rng, SeedableRng};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One random transaction touching one or more of the 8 tracked tables.
fn random_transaction(rng: &mut impl Rng, i: usize) -> Vec<String> {
    let ndc_at = |rng: &mut dyn rand::RngCore, active_only: bool| {
        let filter = if active_only { "WHERE OBSDTEC = '0000-00-00'" } else { "" };
        format!("(SELECT NDC FROM (SELECT NDC FROM rndc14 {filter} ORDER BY NDC LIMIT {}, 1) x)", rng.random_range(0..100))
    };
    let gcn = rng.random_range(1..=40);
    match rng.random_range(0..11) {
        0 => vec![format!("UPDATE rlblrid3 SET MFG = 'MAKER {i}' WHERE LBLRID = '{:06}'", rng.random_range(1..=10))],
        1 => vec![format!("UPDATE rgcnseq4 SET STR60 = '{} MG' WHERE GCN_SEQNO = {gcn}", rng.random_range(1..50))],
        2 => vec![format!(
            "UPDATE rndc14 SET OBSDTEC = IF(OBSDTEC = '0000-00-00', '2031-01-01', '0000-00-00') WHERE NDC = {}",
            ndc_at(rng, false)
        )],
        3 => vec![format!("UPDATE rndc14 SET LN60 = CONCAT('RENAMED ', {i}) WHERE NDC = {}", ndc_at(rng, true))],
        4 => vec![format!("UPDATE retctbl0 SET ETC_NAME = 'Class {i}' WHERE ETC_ID = {}", 1000 + rng.random_range(0..10))],
        5 => vec![format!("UPDATE rdosed2 SET GCDF_DESC = 'FORM {i}' WHERE GCDF = '{:02}'", rng.random_range(1..=16))],
        6 => vec![format!("UPDATE rrouted3 SET GCRT_DESC = 'ROUTE {i}' WHERE GCRT = '{}'", rng.random_range(1..=8))],
        7 => vec![
            // Move a default class link to another formulation (before image matters).
            format!(
                "UPDATE IGNORE retcgc0 SET GCN_SEQNO = {} WHERE GCN_SEQNO = {gcn} AND ETC_DEFAULT_USE_IND = '1'",
                rng.random_range(1..=40)
            ),
        ],
        8 => vec![format!(
            "INSERT INTO rndc14 (NDC, LBLRID, GCN_SEQNO, LN60, INNOV, DEA, OBSDTEC) VALUES ('7{:010}', '{:06}', {gcn}, 'NEW {i}', '0', '0', '0000-00-00')",
            i,
            rng.random_range(1..=10)
        )],
        9 => vec![format!("DELETE FROM rndc14 WHERE NDC LIKE '7%' ORDER BY NDC LIMIT {}", rng.random_range(1..3))],
        _ => vec![
            "START TRANSACTION".into(),
            format!("UPDATE rhiclsq1 SET GNN60 = 'GENERIC {i}' WHERE HICL_SEQNO = {}", rng.random_range(1..=10)),
            format!("UPDATE rgcnseq4 SET HICL_SEQNO = {} WHERE GCN_SEQNO = {gcn}", rng.random_range(1..=10)),
            format!("UPDATE rndc14 SET LBLRID = '{:06}' WHERE NDC = {}", rng.random_range(1..=10), ndc_at(rng, true)),
            "COMMIT".into(),
        ],
    }
}

/// How a harness run is configured, and what it may see.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Harness {
    /// No full diff, no reconcile: only the checkpoint order can converge.
    CheckpointOrder,
    /// Default batching: full diffs repair what they meet.
    RepairPath,
}

on_every_source! {
    async fn random_transactions_with_sigkills_converge_by_checkpoint_order_alone(flavour) {
        harness(flavour, Harness::CheckpointOrder).await;
    }
}

on_every_source! {
    async fn random_transactions_with_sigkills_converge_to_mysql(flavour) {
        harness(flavour, Harness::RepairPath).await;
    }
}

async fn harness(flavour: common::Flavour, kind: Harness) {
    let transactions = env_number("DRUGSYNC_KILL_TRANSACTIONS", 5000);
    let wanted_kills = env_number("DRUGSYNC_KILL_KILLS", 20);
    let name = if kind == Harness::CheckpointOrder { "killorder" } else { "kill" };
    let mut env = TestEnv::new(flavour, name, 600).await;
    if kind == Harness::CheckpointOrder {
        let strict = env
            .config_text
            .replacen("batch_max_transactions = 1000", "batch_max_transactions = 1", 1)
            .replacen("full_diff_share = 0.5", "full_diff_share = 1.0", 1)
            .replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
        for setting in ["batch_max_transactions = 1\n", "full_diff_share = 1.0", "on_lost_sync = \"stop\""] {
            assert!(strict.contains(setting), "{setting}");
        }
        env.config_text = strict;
    }
    let mut child = env.spawn_binary("run-0.log");
    env.wait_caught_up().await;

    let mut writer_conn = env.mysql().await;
    let writer = tokio::spawn(async move {
        use mysql_async::prelude::Queryable;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for i in 0..transactions {
            for statement in random_transaction(&mut rng, i) {
                writer_conn.query_drop(&statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..6))).await;
        }
        writer_conn.disconnect().await.unwrap();
    });

    // SIGKILL at random moments while the transactions are written, every
    // other one aimed at the moment a batch is acknowledged.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut kills = 0;
    let mut redis = env.redis.clone();
    while !writer.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        if kills % 2 == 1 {
            // Aimed: the moment Redis shows a new position, the writer is
            // about to move its checkpoint; kill it in that window.
            let seen: Option<String> = redis::cmd("GET").arg(&env.position_key).query_async(&mut redis).await.unwrap();
            let aim_until = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let now: Option<String> = redis::cmd("GET").arg(&env.position_key).query_async(&mut redis).await.unwrap();
                if now != seen || writer.is_finished() {
                    break;
                }
                assert!(std::time::Instant::now() < aim_until, "no batch was acknowledged within 20 s while transactions were written");
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = env.spawn_binary(&format!("run-{kills}.log"));
        // The next kill waits for this run's start-up decision, which is what
        // tells where the last kill fell (a loaded machine starts slowly).
        let log = env.log_path(&format!("run-{kills}.log"));
        common::eventually(Duration::from_secs(30), Duration::from_millis(20), "a restarted run's start-up decision", async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if kill_fell(&text) != KillFell::Unknown { Ok(()) } else { Err(format!("run {kills} has not decided")) }
        })
        .await;
    }
    writer.await.unwrap();
    assert!(kills >= wanted_kills, "only {kills} kills fell while the transactions were written ({wanted_kills} wanted)");
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Where each kill fell, read from the start-up decision of the run after it.
    let logs: Vec<String> = (0..=kills).map(|run| std::fs::read_to_string(env.log_path(&format!("run-{run}.log"))).unwrap()).collect();
    let falls: Vec<KillFell> = logs[1..].iter().map(|text| kill_fell(text)).collect();
    let count = |fell: KillFell| falls.iter().filter(|f| **f == fell).count();
    eprintln!(
        "{kind:?}: {kills} kills: {} after Redis acknowledged a batch and before the checkpoint moved, {} elsewhere, {} during an initial load, {} unknown (the next run was killed before deciding), {} with Redis behind the checkpoint",
        count(KillFell::BetweenRedisAndCheckpoint),
        count(KillFell::Elsewhere),
        count(KillFell::DuringLoad),
        count(KillFell::Unknown),
        count(KillFell::RedisBehindCheckpoint),
    );
    assert_eq!(count(KillFell::RedisBehindCheckpoint), 0, "the checkpoint moved before Redis acknowledged: {falls:?}");
    assert_eq!(count(KillFell::DuringLoad), 0, "a run reloaded instead of resuming: {falls:?}");
    assert_eq!(count(KillFell::Unknown), 0, "every run decided where to start before the next kill: {falls:?}");
    assert!(count(KillFell::BetweenRedisAndCheckpoint) > 0, "no kill fell inside an apply's critical window: {falls:?}");
    if kind == Harness::CheckpointOrder {
        // Nothing that could have repaired a lost write ran.
        for (run, text) in logs.iter().enumerate() {
            for repair in
                ["applying it by a full hash diff", "reconcil", "Redis lost acknowledged writes", "running the initial load again"]
            {
                assert!(!text.contains(repair), "run {run} logged {repair:?}: the order was not the only thing tested");
            }
        }
    }
}

/// Where a SIGKILL fell, as the next run's start-up decision tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillFell {
    /// Redis held a later position than the local checkpoint: the batch was
    /// acknowledged and the checkpoint not yet moved (the crash-safety window).
    BetweenRedisAndCheckpoint,
    /// Both positions equal: killed between batches, or before Redis acknowledged.
    Elsewhere,
    /// The checkpoint was ahead of Redis: it moved before Redis acknowledged
    /// the batch it ends. The violation.
    RedisBehindCheckpoint,
    /// A run started with an initial load.
    DuringLoad,
    /// No start-up decision in the log (yet).
    Unknown,
}

/// The start-up decision in a run's JSON log.
fn kill_fell(log: &str) -> KillFell {
    for line in log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        let message = line["message"].as_str().unwrap_or_default();
        if message == "resuming from checkpoint" {
            let position = |field: &str| line[field].as_str().unwrap().parse::<drugsync::position::Position>().unwrap();
            let ahead = position("redis").try_cmp(&position("checkpoint")).is_ok_and(|o| o.is_gt());
            return if ahead { KillFell::BetweenRedisAndCheckpoint } else { KillFell::Elsewhere };
        }
        if message.contains("Redis is behind the checkpoint") {
            return KillFell::RedisBehindCheckpoint;
        }
        if message.contains("initial load") {
            return KillFell::DuringLoad;
        }
    }
    KillFell::Unknown
}

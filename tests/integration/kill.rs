//! The kill harness: a random mix of transactions over all 8 tables while
//! the real binary is SIGKILLed at random moments and restarted. At the end
//! the index must equal the documents computed from MySQL: every field, every
//! vector matching its text, no orphan, none missing.
//!
//! It runs at full size by default, CI included (about 25 s on the 2-core
//! machine): 5,000 transactions and 20 kills. A quicker local run:
//!
//!     DRUGSYNC_KILL_TRANSACTIONS=600 DRUGSYNC_KILL_KILLS=5 cargo nextest run -E 'test(/^kill::/)'

use crate::common;
use crate::common::on_each_server;

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

on_each_server! {
    async fn random_transactions_with_sigkills_converge_to_mysql(flavour) {
        let transactions = env_number("DRUGSYNC_KILL_TRANSACTIONS", 5000);
        let wanted_kills = env_number("DRUGSYNC_KILL_KILLS", 20);
        let env = TestEnv::new(flavour, "kill", 600).await;
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

        // SIGKILL at random moments, every other one aimed at the moment a batch
        // is acknowledged: while the writer runs and while the backlog drains.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut kills = 0;
        let mut redis = env.redis.clone();
        while !writer.is_finished() || kills < wanted_kills {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
            if kills % 2 == 1 {
                // Aimed: the moment Redis shows a new position, the writer is
                // about to move its checkpoint; kill it in that window.
                let seen: Option<String> = redis::cmd("GET").arg(&env.position_key).query_async(&mut redis).await.unwrap();
                let aim_until = std::time::Instant::now() + Duration::from_secs(2);
                while std::time::Instant::now() < aim_until {
                    let now: Option<String> = redis::cmd("GET").arg(&env.position_key).query_async(&mut redis).await.unwrap();
                    if now != seen {
                        break;
                    }
                }
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            child = env.spawn_binary(&format!("run-{kills}.log"));
        }
        writer.await.unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        // The previous run may have caught up before it was killed: the last one
        // must still get to its start-up decision before it is stopped.
        let last_log = env.log_path(&format!("run-{kills}.log"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let last = loop {
            let text = std::fs::read_to_string(&last_log).unwrap_or_default();
            if text.contains("resuming from") || text.contains("initial load") || std::time::Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(kills >= wanted_kills);
        assert!(last.contains("resuming from checkpoint"), "the last run resumed rather than reloading:\n{last}");

        // Where each kill fell, read from the start-up decision of the run after it.
        let falls: Vec<KillFell> = (1..=kills).map(|run| kill_fell(&env.log_path(&format!("run-{run}.log")))).collect();
        let count = |kind: KillFell| falls.iter().filter(|f| **f == kind).count();
        eprintln!(
            "kills: {} after Redis acknowledged a batch and before the checkpoint moved, {} elsewhere (idle, reading, or before the acknowledgement), {} during the initial load, {} unknown (the next run was killed before deciding)",
            count(KillFell::BetweenRedisAndCheckpoint),
            count(KillFell::Elsewhere),
            count(KillFell::DuringLoad),
            count(KillFell::Unknown)
        );
        assert!(count(KillFell::BetweenRedisAndCheckpoint) > 0, "no kill fell inside an apply's critical window: {falls:?}");
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
    /// No checkpoint yet: killed during the initial load.
    DuringLoad,
    /// The next run was itself killed before it decided where to start.
    Unknown,
}

fn kill_fell(log: &std::path::Path) -> KillFell {
    let text = std::fs::read_to_string(log).unwrap();
    for line in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if line["message"] == "resuming from checkpoint" {
            let position = |field: &str| line[field].as_str().unwrap().parse::<drugsync::position::Position>().unwrap();
            let ahead = position("redis").try_cmp(&position("checkpoint")).is_ok_and(|o| o.is_gt());
            return if ahead { KillFell::BetweenRedisAndCheckpoint } else { KillFell::Elsewhere };
        }
        if line["message"].as_str().is_some_and(|m| m.contains("initial load")) {
            return KillFell::DuringLoad;
        }
    }
    KillFell::Unknown
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_transactions_with_sigkills_converge_to_mysql() {
    let transactions = env_number("DRUGSYNC_KILL_TRANSACTIONS", 5000);
    let wanted_kills = env_number("DRUGSYNC_KILL_KILLS", 20);
    let env = TestEnv::new("kill", 600).await;
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

    // SIGKILL at random moments: while the writer runs and while the backlog drains.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut kills = 0;
    while !writer.is_finished() || kills < wanted_kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = env.spawn_binary(&format!("run-{kills}.log"));
    }
    writer.await.unwrap();
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(kills >= wanted_kills);
    let last = std::fs::read_to_string(env.log_path(&format!("run-{kills}.log"))).unwrap();
    assert!(last.contains("resuming from checkpoint"), "the last run resumed rather than reloading:\n{last}");
}

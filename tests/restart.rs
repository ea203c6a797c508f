//! Stopping and crashing mid-stream: the final index must equal what MySQL says.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestEnv;
use drugsync::pipeline::Stats;
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_then_changes_then_restart_catches_up_without_reloading() {
    let env = TestEnv::new("restart", 600).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'BEFORE STOP' WHERE LBLRID = '000002'"]).await;
    env.wait_caught_up().await;
    run.stop().await;

    // Changes while drugsync is down.
    env.exec(&[
        "UPDATE rlblrid3 SET MFG = 'WHILE DOWN' WHERE LBLRID = '000003'",
        "UPDATE rgcnseq4 SET STR60 = '555 MG' WHERE GCN_SEQNO = 4",
        "UPDATE rndc14 SET OBSDTEC = '2030-01-01' WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 3",
    ])
    .await;

    let run = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    let written = Stats::get(&run.stats.upserts) + Stats::get(&run.stats.deletes);
    let expected_total = env.expected().await.len() as u64;
    assert!(written < expected_total / 2, "resumed from the checkpoint instead of reloading ({written} writes)");
    run.stop().await;
}

fn spawn_binary(env: &TestEnv, log_name: &str) -> Child {
    let log = std::fs::File::create(env.dir.path().join(log_name)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_drugsync"))
        .arg("--config")
        .arg(env.config_file())
        .arg("--log-format")
        .arg("json")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn drugsync")
}

/// One random small transaction over the tracked tables.
fn random_change(rng: &mut impl Rng, i: usize) -> Vec<String> {
    match rng.random_range(0..6) {
        0 => vec![format!("UPDATE rlblrid3 SET MFG = 'MAKER {i}' WHERE LBLRID = '{:06}'", rng.random_range(1..=10))],
        1 => vec![format!("UPDATE rgcnseq4 SET STR60 = '{} MG' WHERE GCN_SEQNO = {}", rng.random_range(1..50), rng.random_range(1..=40))],
        2 => vec![format!(
            "UPDATE rndc14 SET OBSDTEC = IF(OBSDTEC = '0000-00-00', '2031-01-01', '0000-00-00') WHERE NDC = (SELECT NDC FROM (SELECT NDC FROM rndc14 ORDER BY NDC LIMIT {}, 1) x)",
            rng.random_range(0..600)
        )],
        3 => vec![format!(
            "UPDATE rndc14 SET LN60 = CONCAT('RENAMED ', {i}) WHERE NDC = (SELECT NDC FROM (SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT {}, 1) x)",
            rng.random_range(0..100)
        )],
        4 => vec![format!("UPDATE retctbl0 SET ETC_NAME = 'Class {i}' WHERE ETC_ID = {}", 1000 + rng.random_range(0..10))],
        _ => vec![
            "START TRANSACTION".into(),
            format!("UPDATE rhiclsq1 SET GNN60 = 'GENERIC {i}' WHERE HICL_SEQNO = {}", rng.random_range(1..=10)),
            format!("UPDATE rgcnseq4 SET HICL_SEQNO = {} WHERE GCN_SEQNO = {}", rng.random_range(1..=10), rng.random_range(1..=40)),
            "COMMIT".into(),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_converges() {
    let env = TestEnv::new("sigkill", 600).await;
    let mut child = spawn_binary(&env, "run-0.log");
    env.wait_caught_up().await;

    // A writer keeps committing small random transactions while drugsync is killed and restarted.
    let mut writer_conn = env.mysql().await;
    let writer = tokio::spawn(async move {
        use mysql_async::prelude::Queryable;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for i in 0..400 {
            for statement in random_change(&mut rng, i) {
                writer_conn.query_drop(&statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..12))).await;
        }
        writer_conn.disconnect().await.unwrap();
    });

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut kills = 0;
    while !writer.is_finished() && kills < 8 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..450))).await;
        // SIGKILL: no chance to finish the batch or flush anything.
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = spawn_binary(&env, &format!("run-{kills}.log"));
    }
    writer.await.unwrap();
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(kills >= 3, "only {kills} kills happened while the writer ran");
    let restarted = std::fs::read_to_string(env.dir.path().join(format!("run-{kills}.log"))).unwrap();
    assert!(restarted.contains("resuming from checkpoint"), "the last run resumed rather than reloading:\n{restarted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_cleanly_with_exit_code_zero() {
    let env = TestEnv::new("sigterm", 100).await;
    let mut child = spawn_binary(&env, "run.log");
    env.wait_caught_up().await;
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(exit.code(), Some(0), "clean stop exits 0");
    let log = std::fs::read_to_string(env.dir.path().join("run.log")).unwrap();
    assert!(log.contains("drugsync stopped cleanly"), "{log}");
}

#[tokio::test]
async fn a_bad_config_exits_2_and_names_the_field() {
    let env_dir = tempfile::tempdir().unwrap();
    let path = env_dir.path().join("bad.toml");
    std::fs::write(&path, common::REFERENCE_CONFIG.replacen("dimensions = 1024", "dimensions = 0", 1)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_drugsync")).arg("--config").arg(&path).arg("run").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("embed.dimensions"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_stands_by_and_takes_over_when_the_writer_stops() {
    let env = TestEnv::new("standby", 150).await;
    let first = env.start().await;
    env.wait_caught_up().await;

    // A second instance with its own checkpoint file, same index.
    let second = env.start_with(&env.config_text.replacen("checkpoint.redb", "checkpoint-standby.redb", 1)).await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'WRITTEN BY FIRST' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    assert_eq!(Stats::get(&second.stats.batches), 0, "the standby writes nothing while the first holds the lease");
    assert_eq!(Stats::get(&second.stats.upserts), 0);

    first.stop().await; // releases the lease
    env.exec(&["UPDATE rlblrid3 SET MFG = 'WRITTEN BY SECOND' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    assert!(Stats::get(&second.stats.upserts) > 0, "the standby took over");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_initial_load_resumes_where_it_stopped() {
    let mut env = TestEnv::new("resumeload", 8000).await;
    env.config_text = env.config_text.replacen("write_chunk = 100", "write_chunk = 10", 1);
    let total = env.expected().await.len();
    let first = env.start().await;
    // Interrupt once a good part, but not all, is written.
    let mut redis = env.redis.clone();
    loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", env.prefix)).query_async(&mut redis).await.unwrap();
        if keys.len() >= total / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.stop().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", env.prefix)).query_async(&mut redis).await.unwrap();
    let written_first = keys.len() as u64;
    assert!(written_first < total as u64, "interrupted before the end ({written_first} of {total})");

    // Rows change in between: the resumed load must still end equal to MySQL.
    env.exec(&["UPDATE rlblrid3 SET MFG = 'CHANGED MID LOAD' WHERE LBLRID = '000001'"]).await;
    let second = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    // A restart from scratch would re-read and compare every document written before.
    let compared_again = Stats::get(&second.stats.unchanged);
    assert!(
        compared_again < written_first / 2,
        "resumed after the last key: re-compared {compared_again} of {written_first} already written"
    );
    second.stop().await;
}

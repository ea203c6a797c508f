//! The stored position is purged from the server while drugsync is down.
//! Runs on a private MariaDB: purging the shared one would disturb other tests.

use crate::common;
use crate::common::on_every_source;

use common::{PrivateServer, TestEnv};
use mysql_async::prelude::Queryable;

/// Purges every binlog before the current one, once the stopped drugsync's
/// dump thread is gone (MariaDB silently keeps files a dump thread reads).
async fn purge_all_but_current(env: &TestEnv) {
    let mut conn = env.mysql().await;
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    for _ in 0..100 {
        let dumps: Vec<u64> = conn.query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").await.unwrap();
        if dumps.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let current = env.master_position().await;
    // MariaDB also keeps a file until its binlog checkpoint (InnoDB durability) moved on.
    // Rows of (name, size) on MariaDB, (name, size, encrypted) on MySQL.
    let mut files: Vec<mysql_async::Row> = Vec::new();
    for _ in 0..100 {
        conn.query_drop(format!("PURGE BINARY LOGS TO '{}'", current.file)).await.unwrap();
        files = conn.query("SHOW BINARY LOGS").await.unwrap();
        if files.len() == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("older binlogs were not purged: {files:?}");
}

on_every_source! {
    async fn purged_binlog_at_start_reconciles_then_streams_from_the_current_position(flavour) {
        let server = PrivateServer::start(flavour).await;
        let env = TestEnv::new_on(&server, "purge", 400).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;

        // While drugsync is down: changes, then the binlog holding them (and the checkpoint) is purged.
        env.exec(&[
            "UPDATE rlblrid3 SET MFG = 'LOST IN PURGE' WHERE LBLRID = '000001'",
            "UPDATE rgcnseq4 SET STR60 = '909 MG' WHERE GCN_SEQNO = 2",
            "UPDATE rndc14 SET OBSDTEC = '2024-04-04' WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 2",
        ])
        .await;
        purge_all_but_current(&env).await;

        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        // Streaming works again after the recovery.
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER RECOVERY' WHERE LBLRID = '000002'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_every_source! {
    async fn purged_binlog_with_on_lost_sync_stop_is_a_clear_error(flavour) {
        let server = PrivateServer::start(flavour).await;
        let mut env = TestEnv::new_on(&server, "purgestop", 100).await;
        env.config_text = env.config_text.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'X' WHERE LBLRID = '000001'"]).await;
        purge_all_but_current(&env).await;
        let run = env.start().await;
        let result = tokio::time::timeout(std::time::Duration::from_secs(30), run.handle).await.expect("must stop").unwrap();
        let message = result.expect_err("purged position is an error under stop").to_string();
        assert!(message.contains("cannot stream from") && message.contains("binlog retention"), "{message}");
    }
}

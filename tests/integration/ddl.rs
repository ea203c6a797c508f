//! DDL on tracked tables: the bulk-load patterns FDB loads use. Each kind
//! must end with the index equal to MySQL, and row decoding must follow the
//! table's current columns.

use crate::common;
use crate::common::on_each_server;
use drugsync::observe::stats::Counter;
use std::time::Duration;

use common::TestEnv;

async fn ddl_env(flavour: common::Flavour, name: &str) -> (TestEnv, common::Running) {
    let env = TestEnv::new(flavour, name, 300).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    (env, run)
}

on_each_server! {
    async fn truncate_then_reload_with_other_values(flavour) {
        let (env, run) = ddl_env(flavour, "ddltruncate").await;
        env.exec(&["TRUNCATE TABLE rlblrid3"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await; // every manufacturer is gone
        let ndc = env.active_ndcs_where("n.LBLRID = '000001'").await[0].clone();
        assert_eq!(env.field(&ndc, "manufacturer").await, None);
        env.exec(&["INSERT INTO rlblrid3 (LBLRID, MFG) SELECT DISTINCT LBLRID, CONCAT('RELOADED ', LBLRID) FROM rndc14"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("RELOADED 000001"));
        run.stop().await;
    }
}

on_each_server! {
    /// A reload that drops a tracked table and creates it again: drugsync
    /// reaches the DROP while the table is missing (held there by the test
    /// until drugsync has met the missing table), waits for it without
    /// stopping and without moving its position, then follows.
    async fn drop_and_create_a_table(flavour) {
        let (env, run) = ddl_env(flavour, "ddldrop").await;
        env.exec(&["CREATE TABLE rdosed2_saved AS SELECT * FROM rdosed2", "DROP TABLE rdosed2"]).await;
        crate::common::eventually(Duration::from_secs(30), Duration::from_millis(50), "drugsync met the missing table", async || {
            match run.stats.progress.last_error() {
                Some((error, _)) if error.contains("rdosed2") && error.contains("drugsync waits for it") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(!run.handle.is_finished(), "a table dropped by a reload must not stop drugsync");
        env.exec(&["CREATE TABLE rdosed2 (GCDF char(2) NOT NULL, DOSE varchar(10), GCDF_DESC varchar(40), PRIMARY KEY (GCDF))"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await; // no dosage forms at all
        env.exec(&["INSERT INTO rdosed2 SELECT GCDF, DOSE, CONCAT(GCDF_DESC, ' (NEW)') FROM rdosed2_saved"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn rename_swap_of_a_freshly_loaded_copy(flavour) {
        let (env, run) = ddl_env(flavour, "ddlrename").await;
        // The usual weekly load: fill a copy, then swap it in atomically.
        env.exec(&[
            "CREATE TABLE rlblrid3_new LIKE rlblrid3",
            "INSERT INTO rlblrid3_new SELECT LBLRID, CONCAT(MFG, ' V2') FROM rlblrid3",
            "RENAME TABLE rlblrid3 TO rlblrid3_old, rlblrid3_new TO rlblrid3",
        ])
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = env.active_ndcs_where("n.LBLRID = '000002'").await[0].clone();
        assert!(env.field(&ndc, "manufacturer").await.unwrap().ends_with(" V2"));
        run.stop().await;
    }
}

on_each_server! {
    async fn alter_table_adds_drops_and_reorders_columns_and_decoding_follows(flavour) {
        let (env, run) = ddl_env(flavour, "ddlalter").await;
        // Each ALTER is reconciled by a full diff, which would repair anything
        // decoded wrongly before it: so each UPDATE comes only after its ALTER's
        // diff is done, and must arrive by decoding alone (no further diff).
        let alter_then_update = async |alter: &str, update: &str, lblrid: &str, value: &str| {
            let diffs = run.stats.counted(Counter::FullDiffs);
            env.exec(&[alter]).await;
            env.wait_caught_up().await;
            assert!(run.stats.counted(Counter::FullDiffs) > diffs, "{alter}: the DDL was reconciled");
            let diffs = run.stats.counted(Counter::FullDiffs);
            env.exec(&[update]).await;
            env.wait_caught_up().await;
            assert_eq!(run.stats.counted(Counter::FullDiffs), diffs, "{update}: applied by decoding the new layout, not by a diff");
            let ndc = env.active_ndcs_where(&format!("n.LBLRID = '{lblrid}'")).await[0].clone();
            assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some(value), "{update}");
        };
        alter_then_update(
            "ALTER TABLE rlblrid3 ADD COLUMN NOTE varchar(20) FIRST",
            "UPDATE rlblrid3 SET MFG = 'AFTER ADD', NOTE = 'x' WHERE LBLRID = '000001'",
            "000001",
            "AFTER ADD",
        )
        .await;
        // The routing column to the end: decoding must use names, not positions.
        alter_then_update(
            "ALTER TABLE rlblrid3 MODIFY COLUMN LBLRID char(6) NOT NULL AFTER MFG",
            "UPDATE rlblrid3 SET MFG = 'AFTER REORDER' WHERE LBLRID = '000002'",
            "000002",
            "AFTER REORDER",
        )
        .await;
        alter_then_update("ALTER TABLE rlblrid3 DROP COLUMN NOTE", "UPDATE rlblrid3 SET MFG = 'AFTER DROP' WHERE LBLRID = '000003'", "000003", "AFTER DROP")
            .await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn with_on_lost_sync_stop_ddl_stops_before_the_position_passes_it(flavour) {
        let mut env = TestEnv::new(flavour, "ddlstop", 100).await;
        env.config_text = env.config_text.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&["CREATE TABLE scratch (x int)", "DROP TABLE scratch"]).await;
        env.wait_caught_up().await;
        let before_ddl = env.master_position().await;
        env.exec(&["TRUNCATE TABLE rlblrid3"]).await;
        let result = tokio::time::timeout(std::time::Duration::from_secs(30), run.handle).await.expect("drugsync must stop").unwrap();
        let message = result.expect_err("DDL on a tracked table is an error").to_string();
        assert!(message.contains("`rlblrid3`") && message.contains("--reconcile"), "{message}");
        let store = drugsync::checkpoint::CheckpointStore::open(&env.config().checkpoint.path).unwrap();
        let stored = store.load().unwrap().unwrap();
        // Other tests share the binlog; find where our TRUNCATE starts.
        use mysql_async::prelude::Queryable;
        let mut conn = env.mysql().await;
        let events: Vec<(String, u64, String, u64, u64, String)> =
            conn.query(format!("SHOW BINLOG EVENTS IN '{}' FROM {}", before_ddl.file, before_ddl.offset)).await.unwrap();
        let ddl_start = events
            .iter()
            .find(|e| e.5.contains(&format!("`{}`", env.schema)) && e.5.contains("TRUNCATE TABLE rlblrid3"))
            .map(|e| drugsync::position::Position::new(e.0.clone(), e.1))
            .expect("the TRUNCATE is in the binlog");
        assert_ne!(
            stored.try_cmp(&ddl_start).unwrap(),
            std::cmp::Ordering::Greater,
            "the position ({stored}) never passes the DDL ({ddl_start})"
        );
    }
}

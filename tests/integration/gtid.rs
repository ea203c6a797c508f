//! Positions carry the GTID state; streams resume by GTID when asked to, and
//! fall back to GTID when the stored binlog file does not exist (failover).

use crate::common;
use crate::common::on_each_server;

use std::time::Duration;

use common::{Flavour, TestEnv};
use drugsync::checkpoint::CheckpointStore;
use drugsync::mysql::gtid::GtidState;
use drugsync::position::Position;
use mysql_async::prelude::Queryable;

/// A GTID resume that failed would otherwise be repaired by the reconcile
/// fallback and pass unnoticed: these tests stop on a lost position instead.
fn stopping_on_lost_sync(mut env: TestEnv) -> TestEnv {
    let stop = env.config_text.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
    assert_ne!(stop, env.config_text);
    env.config_text = stop;
    env
}

async fn stored_position(env: &TestEnv) -> Position {
    CheckpointStore::open(&env.config().checkpoint.path).unwrap().load().unwrap().expect("a checkpoint")
}

on_each_server! {
    async fn positions_carry_the_server_gtid_state_and_resume_by_gtid_works(flavour) {
        let env = stopping_on_lost_sync(TestEnv::new(flavour, "gtidresume", 200).await);
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'GTID ONE' WHERE LBLRID = '000001'"]).await;
        let after_update = env.master_position().await.gtid.unwrap_or_default();
        env.wait_caught_up().await;
        run.stop().await;

        let stored = stored_position(&env).await;
        let state = GtidState::parse(stored.gtid.as_deref().expect("position has a GTID state")).unwrap();
        let mut conn = env.mysql().await;
        match flavour {
            Flavour::Mariadb => {
                let GtidState::Mariadb(domains) = &state else { panic!("MariaDB state expected, got {state}") };
                assert_eq!(domains[&0].0, 1, "server id 1 wrote domain 0");
                // The stored state is exactly the server's state at the stored file:offset.
                let at = drugsync::mysql::server::gtid_state_at(&mut conn, &stored).await.unwrap().unwrap();
                assert_eq!(GtidState::parse(&at).unwrap(), state);
            }
            Flavour::Mysql | Flavour::MysqlGtidOff => {
                let GtidState::Mysql(_) = &state else { panic!("MySQL state expected, got {state}") };
                // The stored set holds every transaction up to the update (the
                // server's executed set right after it) and nothing the server
                // has not executed: asked of the server, not of drugsync.
                let stored_set = stored.gtid.clone().unwrap();
                let query = "SELECT GTID_SUBSET(?, ?), GTID_SUBSET(?, @@GLOBAL.gtid_executed)";
                let answer: Option<(i64, i64)> =
                    conn.exec_first(query, (&after_update, &stored_set, &stored_set)).await.unwrap();
                assert_eq!(answer, Some((1, 1)), "{stored_set} holds {after_update} and is within the executed set");
            }
        }

        // The stored file:offset now says "after the next change", its GTID
        // state says "before it": only a resume by GTID applies the change.
        env.exec(&["UPDATE rlblrid3 SET MFG = 'GTID TWO' WHERE LBLRID = '000002'"]).await;
        let end = env.master_position().await;
        let misleading = Position { file: end.file.clone(), offset: end.offset, server: stored.server.clone(), gtid: stored.gtid.clone() };
        env.store_position(&misleading).await;
        let mut env = env;
        env.config_text = env.config_text.replacen("resume_by = \"position\"", "resume_by = \"gtid\"", 1);
        let run = env.start().await;
        // Redis already holds the end position, so "caught up" proves nothing here: the change must arrive.
        let of_labeler = env.active_ndcs_where("n.LBLRID = '000002'").await;
        assert!(!of_labeler.is_empty());
        common::eventually(Duration::from_secs(20), Duration::from_millis(100), "the change resumed by the GTID state, not the offset", async || {
            match env.field(&of_labeler[0], "manufacturer").await {
                Some(m) if m == "GTID TWO" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn a_binlog_file_that_no_longer_exists_falls_back_to_the_gtid_state(flavour) {
        let env = stopping_on_lost_sync(TestEnv::new(flavour, "gtidfallback", 200).await);
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;

        // Pretend the source failed over: same transactions, binlog files of another name.
        let stored = stored_position(&env).await;
        let moved = Position { file: "failed-over-bin.000042".into(), offset: stored.offset, server: None, gtid: stored.gtid.clone() };
        env.store_position(&moved).await;

        env.exec(&["UPDATE rgcnseq4 SET STR60 = '818 MG' WHERE GCN_SEQNO = 3"]).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
        let now = stored_position(&env).await;
        assert!(now.file.starts_with("binlog."), "continued on the server's real binlog: {now}");
    }
}

on_each_server! {
    async fn replay_from_a_gtid_state_reapplies_changes(flavour) {
        let env = stopping_on_lost_sync(TestEnv::new(flavour, "gtidreplay", 200).await);
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let before = stored_position(&env).await;
        let run = env.start().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'REPLAYED BY GTID' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        run.stop().await;

        // Lose those documents, then replay from the GTID state before the change.
        let ndcs = env.active_ndcs_where("n.LBLRID = '000001'").await;
        let keys: Vec<String> = ndcs.iter().map(|n| format!("{}{n}", env.prefix)).collect();
        let mut redis = env.redis.clone();
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
        let replay: Position = format!("@{}", before.gtid.unwrap()).parse().unwrap();
        let replicator = env.connect(&env.config_text).await.unwrap();
        assert!(replicator.prepare_replay(&"@not-a-gtid".parse().unwrap()).await.is_err());
        replicator.prepare_replay(&replay).await.unwrap();

        let run = env.run(replicator);
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert_eq!(env.field(&ndcs[0], "manufacturer").await.as_deref(), Some("REPLAYED BY GTID"));
        run.stop().await;
        assert!(!stored_position(&env).await.is_gtid_only(), "positions learn the file again from the stream");
    }
}

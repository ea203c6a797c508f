//! Ways the index could silently drift from MySQL, each shown to end with
//! the index equal to MySQL (an expectation read back from MySQL itself).

use std::time::Duration;

use crate::common::on_each_server;
use crate::common::{Flavour, PrivateServer, TestEnv, eventually};
use drugsync::sink::contract::*;

/// MariaDB with `log_bin_compress=ON` writes compressed rows and query
/// events; they used to be skipped while the position moved past them.
/// (MySQL's compression is per transaction: `compressed_transactions_*`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_binlog_events_are_decoded_not_skipped_on_mariadb() {
    let server =
        PrivateServer::start_with(Flavour::Mariadb, vec!["--log-bin-compress=ON".into(), "--log-bin-compress-min-len=10".into()]).await;
    let env = TestEnv::new_on(&server, "compressed", 300).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.exec(&[
        "UPDATE rlblrid3 SET MFG = CONCAT('COMPRESSED ', MFG) WHERE LBLRID IN ('000001', '000002', '000003')",
        "UPDATE rgcnseq4 SET STR60 = '777 MG' WHERE GCN_SEQNO <= 3",
        "DELETE FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 3",
    ])
    .await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    // The events really were compressed.
    let mut conn = env.mysql().await;
    use mysql_async::prelude::Queryable;
    let file = env.master_position().await.file;
    let types: Vec<String> = conn
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap()
        .into_iter()
        .map(|row: mysql_async::Row| row.get::<String, _>("Event_type").unwrap())
        .collect();
    assert!(types.iter().any(|t| t.contains("compressed")), "no compressed event in {types:?}");
    conn.disconnect().await.unwrap();
    let mfg = env.field(&env.active_ndcs_where("n.LBLRID = '000001'").await[0], "manufacturer").await.unwrap_or_default();
    assert!(mfg.starts_with("COMPRESSED "), "{mfg}");
    // A compressed TRUNCATE is still seen as DDL.
    env.exec(&["TRUNCATE TABLE rlblrid3"]).await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    run.stop().await;
}

on_each_server! {
    /// `ROLLBACK TO SAVEPOINT` undoes part of a transaction; the changes before
    /// the savepoint still commit and must reach the index.
    async fn rollback_to_savepoint_keeps_the_earlier_changes(flavour) {
        let env = TestEnv::new(flavour, "savepoint", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&[
            "START TRANSACTION",
            "UPDATE rlblrid3 SET MFG = 'BEFORE SAVEPOINT' WHERE LBLRID = '000001'",
            "SAVEPOINT s1",
            "UPDATE rlblrid3 SET MFG = 'ROLLED BACK' WHERE LBLRID = '000002'",
            "ROLLBACK TO SAVEPOINT s1",
            "COMMIT",
        ])
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000001'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("BEFORE SAVEPOINT"));
        run.stop().await;
    }
}

on_each_server! {
    /// gh-ost's cut-over (`rename /* gh-ost */ table ...`) and DML a session logs
    /// as a statement change tracked rows without row events.
    async fn commented_renames_and_statement_logged_dml_are_reconciled(flavour) {
        let env = TestEnv::new(flavour, "ghost", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&[
            "CREATE TABLE _rlblrid3_gho LIKE rlblrid3",
            "INSERT INTO _rlblrid3_gho SELECT * FROM rlblrid3",
            "UPDATE _rlblrid3_gho SET MFG = 'MIGRATED BY GH-OST' WHERE LBLRID = '000003'",
            "rename /* gh-ost */ table `rlblrid3` to `_rlblrid3_del`, `_rlblrid3_gho` to `rlblrid3`",
        ])
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000003'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("MIGRATED BY GH-OST"));

        let mut conn = env.mysql().await;
        use mysql_async::prelude::Queryable;
        conn.query_drop("SET SESSION binlog_format = 'STATEMENT'").await.unwrap();
        conn.query_drop("UPDATE rlblrid3 SET MFG = 'LOGGED AS A STATEMENT' WHERE LBLRID = '000004'").await.unwrap();
        conn.disconnect().await.unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000004'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("LOGGED AS A STATEMENT"));
        run.stop().await;
    }
}

on_each_server! {
    /// FDB's fixed-width values keep trailing spaces in MySQL; documents carry
    /// them cut, unless `mapping.trim_trailing_spaces = false` (a mapping change:
    /// another index version, built beside).
    async fn trailing_spaces_are_cut_from_fields_unless_configured_to_stay(flavour) {
        let mut env = TestEnv::new(flavour, "trim", 150).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'IVORY DRUG CO LTD   ' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        let ndc = env.active_ndcs_where("n.LBLRID = '000001'").await.remove(0);
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("IVORY DRUG CO LTD"));
        run.stop().await;

        let kept = env.config_text.replacen("trim_trailing_spaces = true", "trim_trailing_spaces = false", 1);
        assert_ne!(kept, env.config_text);
        env.use_config(kept);
        let run = env.start().await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("IVORY DRUG CO LTD   "), "the new version was loaded untrimmed");
        env.exec(&["UPDATE rlblrid3 SET MFG = 'KEPT PADDING  ' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("KEPT PADDING  "));
        // Every field of every document, judged by the oracle told the padding stays.
        env.assert_matches_oracle(crate::common::oracle::Variant { trim: false, ..crate::common::oracle::Variant::REFERENCE }).await;
        run.stop().await;
    }
}

on_each_server! {
    /// A changed `select_sql` reaches every document, through a version built
    /// beside the live one (no index ever mixes two mappings); the old version's
    /// documents are gone afterwards.
    async fn a_changed_mapping_reaches_every_document_through_a_version_built_beside(flavour) {
        let mut env = TestEnv::new(flavour, "mapchange", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let old_prefix = env.prefix.clone();
        let strength = "COALESCE(NULLIF(g.STR60, ''), g.STR) AS strength";
        assert!(env.config_text.contains(strength));
        env.use_config(env.config_text.replacen(strength, "CONCAT('S:', g.STR) AS strength", 1));
        assert_ne!(env.prefix, old_prefix, "a new index version");
        let run = env.start().await;
        env.wait_caught_up().await;
        // Judged by the oracle told what the new SQL means, not by drugsync's loader.
        env.assert_matches_oracle(crate::common::oracle::Variant { strength_prefix: Some("S:"), ..crate::common::oracle::Variant::REFERENCE }).await;
        let ndc = env.active_ndcs_where("1 = 1").await.remove(0);
        assert!(env.field(&ndc, "strength").await.unwrap_or_default().starts_with("S:"));
        let mut redis = env.redis.clone();
        let left: Vec<String> = redis::cmd("KEYS").arg(format!("{old_prefix}*")).query_async(&mut redis).await.unwrap();
        assert!(left.is_empty(), "the old version's documents were dropped: {} left", left.len());
        run.stop().await;
    }
}

on_each_server! {
    /// Redis emptied while the initial load runs: the load's epoch is gone, so
    /// the load starts over instead of resuming and leaving the documents it had
    /// written missing for good.
    async fn redis_flushed_during_the_initial_load_loses_no_document(flavour) {
        let redis = crate::common::PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "flushload", 12_000, &redis.url()).await;
        let prefix = env.prefix.clone();
        let position_key = env.position_key.clone();
        let run = env.start().await;
        let mut conn = env.redis.clone();
        // Wait until the load has written some documents, then empty Redis under it.
        eventually(Duration::from_secs(60), Duration::from_millis(5), "the load wrote 200 documents", async || {
            let (_, keys): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(0).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(10_000).query_async(&mut conn).await.unwrap();
            if keys.len() >= 200 { Ok(()) } else { Err(format!("{} keys", keys.len())) }
        })
        .await;
        let loaded: Option<String> = redis::cmd("GET").arg(&position_key).query_async(&mut conn).await.unwrap();
        assert_eq!(loaded, None, "the flush must land while the load runs (make the fixture larger)");
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    /// The alias switch drops an index with its documents (FT.DROPINDEX DD):
    /// an instance that no longer holds the writer lease must not do it.
    async fn a_former_writer_cannot_switch_the_alias_or_drop_the_live_index(flavour) {
        let env = TestEnv::new(flavour, "fencedalias", 100).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let live = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&env.config())).index;
        // Another holder took the lease; this sink still believes it writes.
        let replicator = env.connect(&env.config_text).await.unwrap();
        let mut redis = env.redis.clone();
        let lease_key = format!("ds:{}:{}:writer", env.name, env.index);
        let _: () = redis::cmd("SET").arg(&lease_key).arg("someone-else").query_async(&mut redis).await.unwrap();
        replicator.parts().sink().fence_with(Some("me".into()));
        let err = replicator.parts().sink().switch_alias(Some(&live)).await.unwrap_err();
        assert!(matches!(err, drugsync::sink::SinkError::Fenced { .. }), "{err}");
        let info: Result<redis::Value, _> = redis::cmd("FT.INFO").arg(&live).query_async(&mut redis).await;
        assert!(info.is_ok(), "the live index was not dropped");
        let _: () = redis::cmd("DEL").arg(&lease_key).query_async(&mut redis).await.unwrap();
    }
}

on_each_server! {
    /// A legacy index named like the alias is replaced; dropped with its
    /// documents only when its prefixes cannot cover anyone else's keys (an
    /// index created without PREFIX covers every key in Redis).
    async fn a_legacy_index_without_prefix_is_dropped_without_its_documents(flavour) {
        let redis = crate::common::PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "legacyall", 100, &redis.url()).await;
        let mut conn = env.redis.clone();
        let _: () = redis::cmd("HSET").arg("someone:else:1").arg("x").arg("keep me").query_async(&mut conn).await.unwrap();
        let _: () = redis::cmd("FT.CREATE")
            .arg(&env.index)
            .arg("ON")
            .arg("HASH")
            .arg("SCHEMA")
            .arg("x")
            .arg("TEXT")
            .query_async(&mut conn)
            .await
            .unwrap();
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let kept: Option<String> = redis::cmd("HGET").arg("someone:else:1").arg("x").query_async(&mut conn).await.unwrap();
        assert_eq!(kept.as_deref(), Some("keep me"), "DD of an index without PREFIX would have deleted every key");
        run.stop().await;
    }
}

on_each_server! {
    /// MariaDB writes an XA transaction's rows at XA PREPARE, long before they
    /// are visible; XA COMMIT carries no rows. The rows must reach the index at
    /// the commit, and a rolled-back XA must change nothing. On a private server:
    /// an XA commit names no schema, so a replicator of another test that started
    /// between this prepare and commit would rightly have to reconcile.
    async fn xa_transactions_are_applied_at_commit_and_dropped_at_rollback(flavour) {
        let server = PrivateServer::start(flavour).await;
        let env = TestEnv::new_on(&server, "xa", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&[
            "XA START 'q1'",
            "UPDATE rlblrid3 SET MFG = 'XA VISIBLE LABS' WHERE LBLRID = '000001'",
            "XA END 'q1'",
            "XA PREPARE 'q1'",
            "DO SLEEP(2)",
            "XA COMMIT 'q1'",
            "XA START 'q2'",
            "UPDATE rlblrid3 SET MFG = 'XA ROLLED BACK' WHERE LBLRID = '000002'",
            "XA END 'q2'",
            "XA PREPARE 'q2'",
            "XA ROLLBACK 'q2'",
        ])
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000001'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("XA VISIBLE LABS"));
        run.stop().await;
    }
}

on_each_server! {
    /// A mapping change in a field the embedded text does not use keeps the
    /// index version: every document is compared in place, none re-embedded.
    async fn a_changed_field_the_text_does_not_use_is_reconciled_in_place(flavour) {
        let mut env = TestEnv::new(flavour, "fieldchange", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let prefix = env.prefix.clone();
        let manufacturer = "l.MFG AS manufacturer";
        assert!(env.config_text.contains(manufacturer));
        env.use_config(env.config_text.replacen(manufacturer, "CONCAT('M:', l.MFG) AS manufacturer", 1));
        assert_eq!(env.prefix, prefix, "the same index version");
        let run = env.start().await;
        env.wait_caught_up().await;
        // The position was already caught up: the in-place reconcile is done when
        // the new fingerprint is recorded, which happens only after it.
        let fields = drugsync::mapping::MappingFingerprint::of(&env.config().mapping).fields;
        let key = env.position_key.replace(":position", ":mapping");
        let mut redis = env.redis.clone();
        eventually(Duration::from_secs(30), Duration::from_millis(50), "the in-place reconcile recorded the new fields", async || {
            let stored = redis::cmd("GET").arg(&key).query_async::<Option<String>>(&mut redis).await.unwrap();
            if stored.as_deref() == Some(fields.as_str()) { Ok(()) } else { Err(format!("{stored:?}")) }
        })
        .await;
        env.assert_matches_oracle(crate::common::oracle::Variant { manufacturer_prefix: Some("M:"), ..crate::common::oracle::Variant::REFERENCE })
            .await;
        let ndc = env.active_ndcs_where("n.LBLRID = '000001'").await.remove(0);
        assert!(env.field(&ndc, "manufacturer").await.unwrap_or_default().starts_with("M:"));
        assert_eq!(run.embed_calls(), 0, "no text changed, so nothing was embedded");
        run.stop().await;
    }
}

on_each_server! {
    /// FDB's tables are latin1. A routing value read from the binlog arrives in
    /// the column's bytes; it must still find the NDCs of a non-ASCII labeler.
    async fn a_latin1_labeler_key_routes_its_rename(flavour) {
        let env = TestEnv::new(flavour, "latin1key", 150).await;
        let ndc = env.active_ndcs_where("1 = 1").await.remove(0);
        env.exec(&[
            "INSERT INTO rlblrid3 (LBLRID, MFG) VALUES ('ÄB0001', 'UMLAUT LABS')",
            &format!("UPDATE rndc14 SET LBLRID = 'ÄB0001' WHERE NDC = '{ndc}'"),
        ])
        .await;
        let run = env.start().await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("UMLAUT LABS"));
        env.exec(&["UPDATE rlblrid3 SET MFG = 'ÜMLAUT RENAMED' WHERE LBLRID = 'ÄB0001'"]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("ÜMLAUT RENAMED"), "the rename reached the document");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

//! Bad input never crashes drugsync or loses data silently: odd keys, latin1
//! and bytes that are not UTF-8, NULL in every nullable column, oversized
//! values, a table without a primary key, untracked tables, and keys of the
//! wrong type under the index prefix. Each ends with the index equal to MySQL.
//! (Malformed config and positions: `config.rs`/`position.rs` unit tests,
//! `restart.rs` and `reconcile.rs`; columns changed under a row event: `ddl.rs`.)

use crate::common;
use crate::common::on_each_server;

use common::TestEnv;
use mysql_async::prelude::Queryable;

/// SQL string literal for arbitrary text.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// Keys with quotes, glob and hash-tag characters, a colon, a backslash, and
/// latin1 letters including Windows-1252's 0x80-0x9F range (MySQL latin1).
const ODD_KEYS: [&str; 4] = ["00 1'2\"3*?", "{ht}:[é]\\%", "ÄÖÜ-ß€™", "a\tb c"];

on_each_server! {
    async fn odd_keys_and_latin1_text_are_written_updated_and_deleted(flavour) {
        let env = TestEnv::new(flavour, "odd_keys", 30).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let mut conn = env.mysql().await;
        let (labeler, template): (String, String) =
            conn.query_first("SELECT LBLRID, NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 1").await.unwrap().unwrap();
        for key in ODD_KEYS {
            conn.query_drop(format!(
                "INSERT INTO rndc14 (NDC, LBLRID, GCN_SEQNO, LN, BN, OBSDTEC, INNOV, DEA) \
                 SELECT {}, LBLRID, GCN_SEQNO, {}, BN, OBSDTEC, INNOV, DEA FROM rndc14 WHERE NDC = {}",
                quoted(key),
                quoted(&format!("Odd {key}")),
                quoted(&template)
            ))
            .await
            .unwrap();
        }
        // latin1 text, including the bytes where MySQL's latin1 is Windows-1252.
        let maker = "Société Générale €™";
        conn.query_drop(format!("UPDATE rlblrid3 SET MFG = {} WHERE LBLRID = {}", quoted(maker), quoted(&labeler))).await.unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        for key in ODD_KEYS {
            assert_eq!(env.field(key, "manufacturer").await.as_deref(), Some(maker), "key {key:?}");
            assert_eq!(env.field(key, "drug_name").await.as_deref(), Some(format!("Odd {key}").as_str()));
        }

        // Routing from the binlog's latin1 bytes must find the same keys: change and delete through them.
        conn.query_drop(format!("UPDATE rndc14 SET BN = 'RENAMED' WHERE NDC = {}", quoted(ODD_KEYS[2]))).await.unwrap();
        conn.query_drop(format!("DELETE FROM rndc14 WHERE NDC IN ({}, {})", quoted(ODD_KEYS[0]), quoted(ODD_KEYS[1]))).await.unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert_eq!(env.field(ODD_KEYS[2], "brand_name").await.as_deref(), Some("RENAMED"));
        assert_eq!(env.field(ODD_KEYS[0], "brand_name").await, None, "deleted through an odd key");
        conn.disconnect().await.unwrap();
        run.stop().await;
    }
}

on_each_server! {
    async fn null_in_every_nullable_column_and_zero_dates(flavour) {
        let env = TestEnv::new(flavour, "nulls", 60).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let mut conn = env.mysql().await;
        // Text protocol, not a prepared statement: a prepared information_schema
        // query once segfaulted MariaDB 10.11 under the test load (see preflight).
        let columns: Vec<(String, String)> = conn
            .query(format!(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' AND IS_NULLABLE = 'YES' ORDER BY TABLE_NAME, ORDINAL_POSITION",
                env.schema
            ))
            .await
            .unwrap();
        let tables: std::collections::BTreeSet<&str> = columns.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tables.len(), 8, "all eight FDB tables have nullable columns: {tables:?}");
        for table in tables {
            let set: Vec<String> = columns.iter().filter(|(t, _)| t == table).map(|(_, c)| format!("`{c}` = NULL")).collect();
            // A few rows per table, so routing sees NULL keys in before or after images.
            conn.query_drop(format!("UPDATE `{table}` SET {} LIMIT 3", set.join(", "))).await.unwrap();
        }
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;

        // Zero dates in row images (FDB marks active NDCs with one): obsolete NDCs
        // come back with zero dates everywhere, active ones go obsolete.
        conn.query_drop("UPDATE rndc14 SET OBSDTEC = '0000-00-00', DADDNC = '0000-00-00', DUPDC = '0000-00-00' WHERE OBSDTEC <> '0000-00-00' OR OBSDTEC IS NULL").await.unwrap();
        conn.query_drop("UPDATE rndc14 SET OBSDTEC = '2024-02-29', DESDTEC = '0000-00-00' WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 4")
            .await
            .unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        conn.disconnect().await.unwrap();
        run.stop().await;
    }
}

on_each_server! {
    async fn oversized_values_text_that_is_not_utf8_and_tables_without_keys(flavour) {
        let mut env = TestEnv::new(flavour, "oversized", 30).await;
        // A manufacturer of 1 MB (a field) and a generic name of 200,000 characters (embedded text).
        env.exec(&["ALTER TABLE rlblrid3 MODIFY MFG MEDIUMTEXT", "ALTER TABLE rhiclsq1 MODIFY GNN60 MEDIUMTEXT"]).await;
        // Bytes that are not UTF-8, selected as binary: decoded as latin1, never a crash.
        let config = env.config_text.replacen("n.BN AS brand_name", "CAST(CONCAT(n.BN, UNHEX('FF80')) AS BINARY) AS brand_name", 1);
        // Another mapping is another index version: the test follows it.
        env.use_config(config.clone());
        let run = env.start().await;
        env.wait_caught_up().await;
        // Each step is caught up before the next, so no DDL's full repair (below)
        // can cover for a row change that was not routed.
        env.exec(&[
            "UPDATE rlblrid3 SET MFG = REPEAT('Pharma ', 150000) WHERE LBLRID = (SELECT MIN(LBLRID) FROM rndc14 WHERE OBSDTEC = '0000-00-00')",
            "UPDATE rhiclsq1 SET GNN60 = REPEAT('x', 200000) WHERE HICL_SEQNO = (SELECT m FROM (SELECT MIN(HICL_SEQNO) AS m FROM rhiclsq1) AS least)",
        ])
        .await;
        env.wait_caught_up().await;
        let labeler_ndc = env.active_ndcs_where("n.LBLRID = (SELECT MIN(LBLRID) FROM rndc14 WHERE OBSDTEC = '0000-00-00')").await.remove(0);
        assert_eq!(
            env.field(&labeler_ndc, "manufacturer").await.map(|m| m.len()),
            Some(1_050_000 - 1),
            "the 1 MB value arrived (trailing space cut)"
        );
        // A tracked table without a primary key: row images still carry every column.
        env.exec(&["ALTER TABLE retcgc0 DROP PRIMARY KEY"]).await;
        env.wait_caught_up().await;
        env.exec(&["UPDATE retcgc0 SET ETC_DEFAULT_USE_IND = '1' WHERE ETC_DEFAULT_USE_IND <> '1' LIMIT 5"]).await;
        env.wait_caught_up().await;
        // Untracked tables, with and without a key, in this schema: ignored.
        env.exec(&[
            "CREATE TABLE notes_without_key (note MEDIUMTEXT)",
            "INSERT INTO notes_without_key VALUES (REPEAT('n', 70000)), (NULL)",
            "CREATE TABLE audit_log (id INT PRIMARY KEY, ndc CHAR(11))",
            "INSERT INTO audit_log SELECT ROW_NUMBER() OVER (), NDC FROM rndc14",
        ])
        .await;
        env.wait_caught_up().await;
        let mut conn = env.mysql().await;
        let (ndc, bn): (String, String) = conn
            .query_first("SELECT NDC, BN FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND BN IS NOT NULL ORDER BY NDC LIMIT 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(env.field(&ndc, "brand_name").await, Some(format!("{bn}ÿ€")), "non-UTF-8 bytes decode as MySQL latin1");
        let big: Option<u64> = conn.query_first("SELECT MAX(LENGTH(MFG)) FROM rlblrid3").await.unwrap();
        assert_eq!(big, Some(1_050_000));
        conn.disconnect().await.unwrap();
        // Every document against the oracle, with the binary brand_name written out in its terms.
        let variant = crate::common::oracle::Variant { brand_suffix: Some("ÿ€"), ..crate::common::oracle::Variant::REFERENCE };
        env.assert_matches_oracle(variant).await;
        run.stop().await;
    }
}

on_each_server! {
    async fn keys_of_the_wrong_type_under_the_prefix_are_replaced_or_removed(flavour) {
        let env = TestEnv::new(flavour, "wrong_type", 30).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let mut conn = env.mysql().await;
        let ndcs: Vec<String> = conn.query("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 2").await.unwrap();
        conn.disconnect().await.unwrap();
        let mut redis = env.redis.clone();
        // A document overwritten by a string, another by a list, and a stray set with no document behind it.
        let _: () = redis::cmd("SET").arg(format!("{}{}", env.prefix, ndcs[0])).arg("not a hash").query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("DEL").arg(format!("{}{}", env.prefix, ndcs[1])).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("RPUSH").arg(format!("{}{}", env.prefix, ndcs[1])).arg("x").query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("SADD").arg(format!("{}stray", env.prefix)).arg("x").query_async(&mut redis).await.unwrap();

        // A change to the first document goes through the stream and replaces the string.
        env.exec(&[&format!("UPDATE rndc14 SET BN = 'TYPED' WHERE NDC = {}", quoted(&ndcs[0]))]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndcs[0], "brand_name").await.as_deref(), Some("TYPED"));
        // The nightly reconcile finds the other two (handed to the running writer).
        let report = env.reconcile(false).await;
        assert_eq!(report.handed_off, 2, "{report:?}");
        let stray = format!("{}stray", env.prefix);
        crate::common::eventually(std::time::Duration::from_secs(10), std::time::Duration::from_millis(100), "the stray key removed", async || {
            let kind: String = redis::cmd("TYPE").arg(&stray).query_async(&mut redis).await.unwrap();
            if kind == "none" { Ok(()) } else { Err(kind) }
        })
        .await;
        let kind: String = redis::cmd("TYPE").arg(format!("{}{}", env.prefix, ndcs[1])).query_async(&mut redis).await.unwrap();
        assert_eq!(kind, "hash", "the list under a document's key is a document again");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

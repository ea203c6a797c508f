//! The streaming core against real MariaDB and Redis Stack: fan-out through
//! every table, embedding economy, bulk reloads, and vector search.

use crate::common;
use crate::common::{on_each_server, on_every_source};
use drugsync::observe::stats::Counter;

use common::TestEnv;
use drugsync::embed::vector_to_bytes;

/// The first active NDC of formulation `gcn`.
async fn of_gcn_first(env: &TestEnv, gcn: &str) -> String {
    env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await.remove(0)
}

on_every_source! {
    /// Each step changes one table, then the whole index must equal what MySQL
    /// says, and only the affected documents may have been rewritten.
    async fn every_table_fans_out_to_exactly_the_right_documents(flavour) {
        let env = TestEnv::new(flavour, "fanout", 600).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;

        // A step: statements, the set of NDCs whose documents must change, a check.
        let upserts = |r: &common::Running| r.stats.counted(Counter::Upserted) + r.stats.counted(Counter::Deleted);
        macro_rules! step {
            ($what:expr, $statements:expr, $affected:expr) => {{
                let before = upserts(&run);
                env.exec(&$statements).await;
                env.wait_caught_up().await;
                env.assert_matches_mysql().await;
                let changed = upserts(&run) - before;
                assert_eq!(changed, $affected as u64, "{}: documents written", $what);
            }};
        }

        // rndc14: insert an active NDC, update its label, delete it; obsolete another.
        step!(
            "rndc14 insert",
            [
                "INSERT INTO rndc14 (NDC, LBLRID, GCN_SEQNO, LN, LN60, BN, INNOV, DEA, CL, OBSDTEC) VALUES ('99999000001', '000001', 1, 'NEWDRUG 5 MG', 'NEWDRUG 5 MG TABLET', 'NEWDRUG', '1', '0', 'F', '0000-00-00')"
            ],
            1
        );
        assert_eq!(env.field("99999000001", "drug_name").await.as_deref(), Some("NEWDRUG 5 MG TABLET"));
        step!("rndc14 update", ["UPDATE rndc14 SET LN60 = 'NEWDRUG 5 MG CHEWABLE' WHERE NDC = '99999000001'"], 1);
        assert_eq!(env.field("99999000001", "drug_name").await.as_deref(), Some("NEWDRUG 5 MG CHEWABLE"));
        step!("rndc14 foreign key moves", ["UPDATE rndc14 SET GCN_SEQNO = 2 WHERE NDC = '99999000001'"], 1);
        assert_eq!(env.field("99999000001", "gcn_seqno").await.as_deref(), Some("2"));
        step!("rndc14 delete", ["DELETE FROM rndc14 WHERE NDC = '99999000001'"], 1);
        assert_eq!(env.field("99999000001", "ndc").await, None);
        let victim = env.active_ndcs_where("1=1").await[0].clone();
        step!("rndc14 becomes obsolete", [format!("UPDATE rndc14 SET OBSDTEC = '2025-01-01' WHERE NDC = '{victim}'").as_str()], 1);
        assert_eq!(env.field(&victim, "ndc").await, None, "an obsolete NDC is removed");
        step!("rndc14 becomes active again", [format!("UPDATE rndc14 SET OBSDTEC = '0000-00-00' WHERE NDC = '{victim}'").as_str()], 1);
        // The key itself changes: the before image names the document to remove.
        step!("rndc14 key changes", [format!("UPDATE rndc14 SET NDC = '99999000002' WHERE NDC = '{victim}'").as_str()], 2);
        assert_eq!(env.field(&victim, "ndc").await, None, "the old key is gone");
        assert_eq!(env.field("99999000002", "ndc").await.as_deref(), Some("99999000002"));

        // rgcnseq4: strength change reaches every NDC of the formulation.
        let gcn = busiest(&env, "GCN_SEQNO").await;
        let of_gcn = env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await;
        step!("rgcnseq4 update", [format!("UPDATE rgcnseq4 SET STR60 = '321 MG' WHERE GCN_SEQNO = {gcn}").as_str()], of_gcn.len());
        assert_eq!(env.field(&of_gcn[0], "strength").await.as_deref(), Some("321 MG"));

        // rgcnseq4 foreign key moves to another ingredient set: generic_name follows.
        step!("rgcnseq4 foreign key moves", [format!("UPDATE rgcnseq4 SET HICL_SEQNO = 3 WHERE GCN_SEQNO = {gcn}").as_str()], of_gcn.len());

        // rhiclsq1: ingredient set renamed -> every NDC whose formulation uses it.
        let of_hicl = env.active_ndcs_where("n.GCN_SEQNO IN (SELECT GCN_SEQNO FROM rgcnseq4 WHERE HICL_SEQNO = 3)").await;
        step!("rhiclsq1 update", ["UPDATE rhiclsq1 SET GNN60 = 'RENAMEDINE HCL' WHERE HICL_SEQNO = 3"], of_hicl.len());
        assert_eq!(env.field(&of_gcn[0], "generic_name").await.as_deref(), Some("RENAMEDINE HCL"));

        // rdosed2 and rrouted3: descriptions renamed, then a dosage form deleted.
        let of_form = env.active_ndcs_where("n.GCN_SEQNO IN (SELECT GCN_SEQNO FROM rgcnseq4 WHERE GCDF = '01')").await;
        step!("rdosed2 update", ["UPDATE rdosed2 SET GCDF_DESC = 'TABLET, FILM COATED' WHERE GCDF = '01'"], of_form.len());
        let of_route = env.active_ndcs_where("n.GCN_SEQNO IN (SELECT GCN_SEQNO FROM rgcnseq4 WHERE GCRT = '2')").await;
        step!("rrouted3 update", ["UPDATE rrouted3 SET GCRT_DESC = 'EXTERNAL' WHERE GCRT = '2'"], of_route.len());
        step!("rdosed2 delete", ["DELETE FROM rdosed2 WHERE GCDF = '01'"], of_form.len());
        step!("rdosed2 insert", ["INSERT INTO rdosed2 VALUES ('01', 'TAB', 'TABLET')"], of_form.len());

        // retcgc0: the default class link is deleted, then a new default inserted.
        let of_gcn2 = env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await;
        step!("retcgc0 delete", [format!("DELETE FROM retcgc0 WHERE GCN_SEQNO = {gcn}").as_str()], of_gcn2.len());
        assert_eq!(env.field(&of_gcn2[0], "therapeutic_class").await, None);
        step!("retcgc0 insert", [format!("INSERT INTO retcgc0 VALUES ({gcn}, 1001, '1', '1')").as_str()], of_gcn2.len());

        // retcgc0: the link moves to another formulation: the old one's NDCs lose the class
        // (found through the before image), the new one's are rebuilt too.
        let other_gcn: String = {
            use mysql_async::prelude::Queryable;
            let mut conn = env.mysql().await;
            conn.query_first(format!("SELECT CAST(n.GCN_SEQNO AS CHAR) FROM rndc14 n WHERE n.OBSDTEC = '0000-00-00' AND n.GCN_SEQNO <> {gcn} AND NOT EXISTS (SELECT 1 FROM retcgc0 c WHERE c.GCN_SEQNO = n.GCN_SEQNO AND c.ETC_ID = 1001) LIMIT 1")).await.unwrap().unwrap()
        };
        let of_other = env.active_ndcs_where(&format!("n.GCN_SEQNO = {other_gcn}")).await;
        let before = upserts(&run);
        env.exec(&[format!("UPDATE retcgc0 SET GCN_SEQNO = {other_gcn} WHERE GCN_SEQNO = {gcn} AND ETC_ID = 1001").as_str()]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert_eq!(env.field(&of_gcn2[0], "therapeutic_class").await, None, "old formulation lost its class");
        let written = upserts(&run) - before;
        assert!(written >= of_gcn2.len() as u64 && written <= (of_gcn2.len() + of_other.len()) as u64, "retcgc0 move wrote {written}");
        step!(
            "retcgc0 link moves back",
            [format!("UPDATE retcgc0 SET GCN_SEQNO = {gcn} WHERE GCN_SEQNO = {other_gcn} AND ETC_ID = 1001").as_str()],
            written
        );

        // retctbl0: a class renamed -> every NDC whose formulation links to it by default.
        let of_class = env
            .active_ndcs_where("1001 = (SELECT MIN(c.ETC_ID) FROM retcgc0 c WHERE c.GCN_SEQNO = n.GCN_SEQNO AND c.ETC_DEFAULT_USE_IND = '1')")
            .await;
        step!("retctbl0 update", ["UPDATE retctbl0 SET ETC_NAME = 'Renamed Class, With Comma' WHERE ETC_ID = 1001"], of_class.len());
        assert_eq!(env.field(&of_gcn2[0], "therapeutic_class").await.as_deref(), Some("Renamed Class, With Comma"));

        // rlblrid3: labeler renamed; a new labeler takes over one NDC (the NDC's foreign key moves).
        let lbl = busiest(&env, "LBLRID").await;
        let of_lbl = env.active_ndcs_where(&format!("n.LBLRID = '{lbl}'")).await;
        step!("rlblrid3 update", [format!("UPDATE rlblrid3 SET MFG = 'RENAMED LABS' WHERE LBLRID = '{lbl}'").as_str()], of_lbl.len());
        assert_eq!(env.field(&of_lbl[0], "manufacturer").await.as_deref(), Some("RENAMED LABS"));
        step!(
            "rlblrid3 insert + rndc14 moves",
            [
                "INSERT INTO rlblrid3 VALUES ('999999', 'NEW OWNER INC')",
                format!("UPDATE rndc14 SET LBLRID = '999999' WHERE NDC = '{}'", of_lbl[0]).as_str(),
            ],
            1
        );
        assert_eq!(env.field(&of_lbl[0], "manufacturer").await.as_deref(), Some("NEW OWNER INC"));
        step!("rlblrid3 delete", ["DELETE FROM rlblrid3 WHERE LBLRID = '999999'"], 1);
        assert_eq!(env.field(&of_lbl[0], "manufacturer").await, None);

        let (docs, failures) = env.index_counts().await;
        assert_eq!(failures, 0, "no document failed to index");
        assert_eq!(docs as usize, env.expected().await.len());
        run.stop().await;
    }
}

/// The value of `column` in rndc14 shared by the most active NDCs.
async fn busiest(env: &TestEnv, column: &str) -> String {
    use mysql_async::prelude::Queryable;
    let mut conn = env.mysql().await;
    let value: Option<String> = conn
        .query_first(format!(
            "SELECT CAST({column} AS CHAR) FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY {column} ORDER BY COUNT(*) DESC, {column} LIMIT 1"
        ))
        .await
        .unwrap();
    value.unwrap()
}

on_every_source! {
    async fn labeler_rename_costs_no_embedding_and_strength_change_embeds_each_new_text_once(flavour) {
        let env = TestEnv::new(flavour, "economy", 800).await;
        let run = env.start().await;
        env.wait_caught_up().await;

        let lbl = busiest(&env, "LBLRID").await;
        let of_lbl = env.active_ndcs_where(&format!("n.LBLRID = '{lbl}'")).await;
        assert!(of_lbl.len() > 1);
        let calls = run.embed_calls();
        env.exec(&[&format!("UPDATE rlblrid3 SET MFG = 'ZERO COST PHARMA' WHERE LBLRID = '{lbl}'")]).await;
        env.wait_caught_up().await;
        assert_eq!(run.embed_calls(), calls, "a labeler rename must not call the embedder");
        for ndc in &of_lbl {
            assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("ZERO COST PHARMA"));
        }

        let gcn = busiest(&env, "GCN_SEQNO").await;
        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = '417 MG' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_caught_up().await;
        let expected = env.expected().await;
        let new_texts: std::collections::BTreeSet<&str> =
            expected.values().filter(|e| e.fields.get("gcn_seqno") == Some(&gcn)).map(|e| e.text.as_str()).collect();
        assert!(!new_texts.is_empty());
        assert!(new_texts.len() < env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await.len(), "the fixture shares texts between NDCs");
        assert_eq!(run.embed_calls() - calls, new_texts.len() as u64, "one call per distinct new text");

        // Away to another strength (new texts: calls), then back: the way back
        // costs no call, though every document is written again, because the
        // vectors of the '417 MG' texts are in the cache.
        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = '418 MG' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&of_gcn_first(&env, &gcn).await, "strength").await.as_deref(), Some("418 MG"));
        let (calls, written) = (run.embed_calls(), run.stats.counted(Counter::Upserted));
        env.exec(&[&format!("UPDATE rgcnseq4 SET STR60 = '417 MG' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_caught_up().await;
        assert_eq!(run.stats.counted(Counter::Upserted) - written, env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await.len() as u64);
        assert_eq!(run.embed_calls(), calls, "texts embedded before come from the cache");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn bulk_reload_of_unchanged_rows_rewrites_nothing(flavour) {
        let env = TestEnv::new(flavour, "reload", 1500).await;
        env.exec(&["CREATE TABLE rndc14_copy AS SELECT * FROM rndc14"]).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let before = env.actual().await;
        let (calls, writes) = (run.embed_calls(), run.stats.counted(Counter::Upserted) + run.stats.counted(Counter::Deleted));

        env.exec(&["START TRANSACTION", "DELETE FROM rndc14", "INSERT INTO rndc14 SELECT * FROM rndc14_copy", "COMMIT"]).await;
        env.wait_caught_up().await;

        assert_eq!(run.embed_calls(), calls, "no embedding calls");
        assert_eq!(run.stats.counted(Counter::Upserted) + run.stats.counted(Counter::Deleted), writes, "no document rewritten");
        assert!(run.stats.counted(Counter::Unchanged) >= before.len() as u64, "every document was rebuilt and compared");
        assert_eq!(env.actual().await, before, "the index is byte-for-byte identical");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn knn_query_returns_the_document_whose_text_was_embedded(flavour) {
        let env = TestEnv::new(flavour, "knn", 400).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let (docs, failures) = env.index_counts().await;
        let expected = env.expected().await;
        assert_eq!((docs as usize, failures), (expected.len(), 0), "every document indexed, none failed");

        let config = env.config();
        let embedder = common::local_embedder(&config);
        let mut redis = env.redis.clone();
        for (ndc, want) in expected.iter().step_by(37).take(5) {
            let query = embedder.vector(&want.text);
            let reply: Vec<redis::Value> = redis::cmd("FT.SEARCH")
                .arg(&env.index)
                .arg("*=>[KNN 1 @embedding $v AS score]")
                .arg("PARAMS")
                .arg(2)
                .arg("v")
                .arg(vector_to_bytes(&query))
                .arg("RETURN")
                .arg(2)
                .arg("ndc")
                .arg("score")
                .arg("DIALECT")
                .arg(2)
                .query_async(&mut redis)
                .await
                .unwrap();
            let fields: Vec<String> = redis::from_redis_value(reply[2].clone()).unwrap();
            let hit_ndc = &fields[fields.iter().position(|f| f == "ndc").unwrap() + 1];
            let score: f32 = fields[fields.iter().position(|f| f == "score").unwrap() + 1].parse().unwrap();
            // NDCs share texts; the nearest neighbour must carry exactly this text.
            assert_eq!(expected[hit_ndc].text, want.text, "query for {ndc} found {hit_ndc}");
            assert!(score.abs() < 1e-4, "cosine distance of an identical text is 0, got {score}");
        }
        run.stop().await;
    }
}

on_each_server! {
    async fn initial_load_removes_orphans_and_a_flushed_redis_is_reloaded(flavour) {
        let env = TestEnv::new(flavour, "orphans", 300).await;
        let mut redis = env.redis.clone();
        let stray = format!("{}00000000000", env.prefix);
        let _: () = redis::cmd("HSET").arg(&stray).arg("ndc").arg("00000000000").query_async(&mut redis).await.unwrap();
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await; // the stray document is gone
        run.stop().await;

        // Redis loses everything while drugsync is down; a change happens meanwhile.
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", env.prefix)).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("DEL").arg(&env.position_key).query_async(&mut redis).await.unwrap();
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER FLUSH' WHERE LBLRID = '000004'"]).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn a_changed_index_definition_builds_a_new_version_while_the_alias_keeps_answering(flavour) {
        let env = TestEnv::new(flavour, "versions", 1500).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let old = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&env.config()));
        assert_eq!(alias_target(&env).await, old.index);

        // Searches through the alias run throughout the rebuild.
        let stop = tokio_util::sync::CancellationToken::new();
        let searches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let searcher = {
            let (mut redis, alias, stop, searches) = (env.redis.clone(), env.index.clone(), stop.clone(), searches.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.is_cancelled() {
                    let reply: Result<Vec<redis::Value>, _> =
                        redis::cmd("FT.SEARCH").arg(&alias).arg("*").arg("LIMIT").arg(0).arg(0).query_async(&mut redis).await;
                    answers.push(reply.map(|r| redis::from_redis_value::<i64>(r[0].clone()).unwrap()).map_err(|e| e.to_string()));
                    searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                answers
            })
        };
        let new_text = env.config_text.replacen(&format!("dimensions = {}", common::TEST_DIMENSIONS), "dimensions = 32", 1);
        let new = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&common::parse_config(&new_text)));
        assert_ne!(new.index, old.index);
        let run = env.start_with(&new_text).await;
        let mut redis = env.redis.clone();
        let target = env.master_position().await;
        common::eventually(std::time::Duration::from_secs(60), std::time::Duration::from_millis(20), "the new version caught up", async || {
            let text: Option<String> =
                redis::cmd("GET").arg(format!("ds:{}:{}:position", env.name, new.index)).query_async(&mut redis).await.unwrap();
            let caught_up = text
                .as_ref()
                .and_then(|t| t.parse::<drugsync::position::Position>().ok())
                .is_some_and(|p| p.try_cmp(&target).is_ok_and(|o| o.is_ge()));
            if caught_up { Ok(()) } else { Err(format!("{text:?}, the source at {target}")) }
        })
        .await;
        // The searcher's rounds on the new version are judged too.
        let at_switch = searches.load(std::sync::atomic::Ordering::Relaxed);
        common::eventually(std::time::Duration::from_secs(10), std::time::Duration::from_millis(5), "searches on the new version", async || {
            let done = searches.load(std::sync::atomic::Ordering::Relaxed) - at_switch;
            if done >= 5 { Ok(()) } else { Err(format!("{done} searches")) }
        })
        .await;
        stop.cancel();
        let answers = searcher.await.unwrap();
        let expected = env.expected().await.len() as i64;
        assert!(answers.len() > 10, "the searcher ran");
        for answer in &answers {
            assert_eq!(answer.as_ref().ok(), Some(&expected), "every search through the alias answered in full: {answer:?}");
        }
        assert_eq!(alias_target(&env).await, new.index, "the alias now points at the new version");
        let gone: Result<redis::Value, _> = redis::cmd("FT.INFO").arg(&old.index).query_async(&mut redis).await;
        assert!(gone.is_err(), "the old version is dropped");
        let old_keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", old.prefix)).query_async(&mut redis).await.unwrap();
        assert!(old_keys.is_empty(), "with its documents");
        let new_keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", new.prefix)).query_async(&mut redis).await.unwrap();
        assert_eq!(new_keys.len() as i64, expected);
        run.stop().await;
    }
}

/// The physical index an alias points at.
async fn alias_target(env: &TestEnv) -> String {
    let mut redis = env.redis.clone();
    let info: Vec<redis::Value> = redis::cmd("FT.INFO").arg(&env.index).query_async(&mut redis).await.unwrap();
    redis::from_redis_value(info[1].clone()).unwrap()
}

on_each_server! {
    /// A latin1 labeler id whose bytes happen to be valid UTF-8 (C3 A9: "Ã©"
    /// in latin1, "é" read as UTF-8). Routed by the column's charset from the
    /// table map, the rename reaches the labeler's NDC; decoded by guessing
    /// (UTF-8 when valid), the fan-out asked MySQL for another labeler and
    /// the NDC kept its old manufacturer.
    async fn a_latin1_key_whose_bytes_are_valid_utf8_routes_as_latin1(flavour) {
        let env = TestEnv::new(flavour, "latin1key", 150).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let ndc = env.active_ndcs_where("1 = 1").await.remove(0);
        env.exec(&[
            "INSERT INTO rlblrid3 (LBLRID, MFG) VALUES (X'C3A930303031', 'ACCENTED LABS')",
            &format!("UPDATE rndc14 SET LBLRID = X'C3A930303031' WHERE NDC = '{ndc}'"),
        ])
        .await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("ACCENTED LABS"));
        env.exec(&["UPDATE rlblrid3 SET MFG = 'RENAMED LABS' WHERE LBLRID = X'C3A930303031'"]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "manufacturer").await.as_deref(), Some("RENAMED LABS"), "the rename reached the labeler's NDC");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    /// A column `select_sql` returns that `index.fields` does not list (here
    /// the package size) is not written to the documents, and a change to it
    /// alone rebuilds its document, finds it equal and writes nothing.
    async fn a_selected_column_outside_index_fields_is_not_written_and_changes_nothing(flavour) {
        let mut env = TestEnv::new(flavour, "extrafield", 150).await;
        let config = env.config_text.replacen("n.DEA AS dea_schedule", "n.DEA AS dea_schedule,\n       n.PS AS package_size", 1);
        assert_ne!(config, env.config_text);
        env.use_config(config);
        let run = env.start().await;
        env.wait_caught_up().await;
        let ndc = env.active_ndcs_where("1 = 1").await.remove(0);
        assert_eq!(env.field(&ndc, "package_size").await, None, "not an index field: not written");
        let (upserts, unchanged, calls) = (run.stats.counted(Counter::Upserted), run.stats.counted(Counter::Unchanged), run.embed_calls());
        env.exec(&[&format!("UPDATE rndc14 SET PS = PS + 7 WHERE NDC = '{ndc}'")]).await;
        env.wait_caught_up().await;
        assert_eq!(run.stats.counted(Counter::Unchanged), unchanged + 1, "the document was rebuilt and found equal");
        assert_eq!((run.stats.counted(Counter::Upserted), run.embed_calls()), (upserts, calls), "no write, no embedding call");
        env.assert_matches_oracle(crate::common::oracle::Variant::REFERENCE).await;
        run.stop().await;
    }
}

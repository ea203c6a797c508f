//! The fan-out cases the test-owned expectation (`common::oracle`) makes
//! visible, and proof that it judges drugsync independently: a wrong mapping
//! loaded by drugsync's own loader is caught.

use crate::common;
use crate::common::on_each_server;

use common::TestEnv;
use mysql_async::prelude::Queryable;

/// The busiest active formulation and the ETC ids of three classes that exist.
async fn formulation_and_classes(env: &TestEnv) -> (String, [u64; 3]) {
    let mut conn = env.mysql().await;
    let gcn: String = conn
        .query_first("SELECT CAST(GCN_SEQNO AS CHAR) FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY GCN_SEQNO ORDER BY COUNT(*) DESC, GCN_SEQNO LIMIT 1")
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<u64> = conn.query("SELECT ETC_ID FROM retctbl0 WHERE ETC_NAME IS NOT NULL ORDER BY ETC_ID LIMIT 3").await.unwrap();
    conn.disconnect().await.unwrap();
    (gcn, [ids[0], ids[1], ids[2]])
}

async fn class_name(env: &TestEnv, etc: u64) -> String {
    let mut conn = env.mysql().await;
    let name: String = conn.query_first(format!("SELECT ETC_NAME FROM retctbl0 WHERE ETC_ID = {etc}")).await.unwrap().unwrap();
    conn.disconnect().await.unwrap();
    name.trim_end().to_owned()
}

on_each_server! {
    /// Several default links: the lowest default ETC_ID wins, a lower
    /// non-default link does not count, and removing the winner hands the class
    /// to the next default. Then a formulation with no class at all.
    async fn default_class_follows_the_lowest_default_link_and_may_be_absent(flavour) {
        let env = TestEnv::new(flavour, "oracle_class", 400).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let (gcn, [low, mid, high]) = formulation_and_classes(&env).await;
        let ndc = env.active_ndcs_where(&format!("n.GCN_SEQNO = {gcn}")).await.remove(0);

        env.exec(&[
            "START TRANSACTION",
            &format!("DELETE FROM retcgc0 WHERE GCN_SEQNO = {gcn}"),
            &format!("INSERT INTO retcgc0 (GCN_SEQNO, ETC_ID, ETC_DEFAULT_USE_IND) VALUES ({gcn}, {low}, '0'), ({gcn}, {mid}, '1'), ({gcn}, {high}, '1')"),
            "COMMIT",
        ])
        .await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "therapeutic_class").await, Some(class_name(&env, mid).await), "lowest default link, not the lowest link");
        env.assert_matches_mysql().await;

        env.exec(&[&format!("DELETE FROM retcgc0 WHERE GCN_SEQNO = {gcn} AND ETC_ID = {mid}")]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "therapeutic_class").await, Some(class_name(&env, high).await), "the next default link");
        env.assert_matches_mysql().await;

        env.exec(&[&format!("UPDATE retcgc0 SET ETC_DEFAULT_USE_IND = '1' WHERE GCN_SEQNO = {gcn} AND ETC_ID = {low}")]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "therapeutic_class").await, Some(class_name(&env, low).await), "a link that became default");
        env.assert_matches_mysql().await;

        // A class renamed reaches every formulation whose default it is.
        env.exec(&[&format!("UPDATE retctbl0 SET ETC_NAME = 'Renamed Class' WHERE ETC_ID = {low}")]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "therapeutic_class").await.as_deref(), Some("Renamed Class"));
        env.assert_matches_mysql().await;

        // No default link left: the field is absent and the text has no class.
        env.exec(&[&format!("UPDATE retcgc0 SET ETC_DEFAULT_USE_IND = '0' WHERE GCN_SEQNO = {gcn}")]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(&ndc, "therapeutic_class").await, None, "a formulation with no class");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    /// An NDC pointing at a labeler that has no row has no manufacturer; the
    /// labeler's row arriving later (a child-table insert) fills it in, and its
    /// removal takes it out again.
    async fn labeler_without_a_row_then_with_one_then_without(flavour) {
        let env = TestEnv::new(flavour, "oracle_labeler", 300).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let ndcs = env.active_ndcs_where("1 = 1").await;
        let (first, second) = (&ndcs[0], &ndcs[1]);

        env.exec(&[&format!("UPDATE rndc14 SET LBLRID = 'ZZ9999' WHERE NDC IN ('{first}', '{second}')")]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(first, "manufacturer").await, None, "no labeler row, no manufacturer");
        env.assert_matches_mysql().await;

        env.exec(&["INSERT INTO rlblrid3 (LBLRID, MFG) VALUES ('ZZ9999', 'LATE LABELER INC   ')"]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(second, "manufacturer").await.as_deref(), Some("LATE LABELER INC"), "the row arrived later");
        env.assert_matches_mysql().await;

        env.exec(&["DELETE FROM rlblrid3 WHERE LBLRID = 'ZZ9999'"]).await;
        env.wait_caught_up().await;
        assert_eq!(env.field(first, "manufacturer").await, None, "the row went away");
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    /// The expectation is not drugsync's: an index built by a mapping that picks
    /// the *highest* default class (a plausible bug) fails the comparison with
    /// the oracle, even though drugsync's loader agrees with what it wrote.
    async fn a_wrong_mapping_is_caught_by_the_oracle(flavour) {
        let mut env = TestEnv::new(flavour, "oracle_catches", 300).await;
        let (gcn, [low, _, high]) = formulation_and_classes(&env).await;
        env.exec(&[&format!("INSERT INTO retcgc0 (GCN_SEQNO, ETC_ID, ETC_DEFAULT_USE_IND) VALUES ({gcn}, {low}, '1'), ({gcn}, {high}, '1') ON DUPLICATE KEY UPDATE ETC_DEFAULT_USE_IND = '1'")]).await;
        let reference = env.config_text.clone();
        let wrong = reference.replacen("SELECT MIN(c.ETC_ID) FROM retcgc0 c", "SELECT MAX(c.ETC_ID) FROM retcgc0 c", 1);
        assert_ne!(wrong, reference);
        env.use_config(wrong);
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        // Judged by its own (wrong) mapping (drugsync's dry-run reconcile), the index is consistent...
        let own = env.reconcile_with(&env.config_text, true).await;
        assert_eq!((own.missing, own.stale_fields, own.stale_vectors, own.orphans), (0, 0, 0, 0), "{own:?}");
        // ...judged by the oracle, the assertion every test relies on trips, on the class.
        use futures_util::FutureExt;
        let tripped = std::panic::AssertUnwindSafe(env.assert_matches_oracle(common::oracle::Variant::REFERENCE)).catch_unwind().await;
        let message = match tripped {
            Ok(()) => panic!("assert_matches_oracle passed an index built by the wrong mapping"),
            Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        assert!(message.contains("therapeutic_class"), "it names the wrong field: {message}");
        let actual = env.actual().await;
        let mut conn = env.mysql().await;
        let oracle = common::oracle::expected_documents(&mut conn).await;
        conn.disconnect().await.unwrap();
        let wrong_classes = oracle
            .iter()
            .filter(|(ndc, doc)| {
                let have = actual.get(*ndc).and_then(|h| h.get("therapeutic_class")).map(|v| String::from_utf8_lossy(v).into_owned());
                have.as_ref() != doc.fields.get("therapeutic_class")
            })
            .count();
        assert!(wrong_classes > 0, "the oracle sees the wrong default class");
        assert_eq!(oracle.len(), actual.len(), "same documents, wrong field");
    }
}

on_each_server! {
    /// The fixture holds, in documents that exist, the values FDB has and a
    /// tidy generator would not: padded text in every field the mapping trims,
    /// empty and blank long names (the `NULLIF(..., '')` fallbacks), and
    /// formulations with two default classes. The index built from it matches
    /// the oracle field by field.
    async fn the_fixture_holds_fdbs_awkward_values_and_the_index_matches_the_oracle(flavour) {
        let env = TestEnv::new(flavour, "awkward", 600).await;
        let active = "FROM rndc14 n LEFT JOIN rgcnseq4 g ON g.GCN_SEQNO = n.GCN_SEQNO LEFT JOIN rhiclsq1 h ON h.HICL_SEQNO = g.HICL_SEQNO \
                      LEFT JOIN rdosed2 d ON d.GCDF = g.GCDF LEFT JOIN rrouted3 r ON r.GCRT = g.GCRT LEFT JOIN rlblrid3 l ON l.LBLRID = n.LBLRID \
                      WHERE n.OBSDTEC = '0000-00-00'";
        let count = async |condition: &str| -> u64 { env.strings(&format!("SELECT COUNT(*) {active} AND ({condition})")).await[0].parse().unwrap() };
        // Padded: text, then trailing spaces (LIKE compares them; = would not).
        for column in ["n.LN60", "n.BN", "h.GNN60", "g.STR60", "d.GCDF_DESC", "r.GCRT_DESC", "l.MFG"] {
            let padded = count(&format!("{column} LIKE '%_ '")).await;
            assert!(padded > 0, "no active document with a padded {column}");
        }
        let padded_class = env
            .strings(&format!(
                "SELECT COUNT(*) {active} AND EXISTS (SELECT 1 FROM retcgc0 c JOIN retctbl0 e ON e.ETC_ID = c.ETC_ID \
                 WHERE c.GCN_SEQNO = n.GCN_SEQNO AND c.ETC_DEFAULT_USE_IND = '1' AND e.ETC_NAME LIKE '%_ ')"
            ))
            .await[0]
            .parse::<u64>()
            .unwrap();
        assert!(padded_class > 0, "no active document with a padded class name");
        for column in ["n.LN60", "h.GNN60", "g.STR60"] {
            assert!(count(&format!("{column} LIKE ''")).await > 0, "no active document with an empty {column}");
            assert!(count(&format!("{column} LIKE ' %' AND TRIM({column}) LIKE ''")).await > 0, "no active document with a blank {column}");
        }
        let two_defaults = count(
            "(SELECT COUNT(*) FROM retcgc0 c WHERE c.GCN_SEQNO = n.GCN_SEQNO AND c.ETC_DEFAULT_USE_IND = '1') > 1",
        )
        .await;
        assert!(two_defaults > 0, "no active document whose formulation has two default classes");

        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

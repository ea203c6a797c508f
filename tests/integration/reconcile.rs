//! `--reconcile` and `--replay-from` against the real servers.

use crate::common;
use crate::common::on_each_server;
use drugsync::sink::contract::*;

use std::time::Duration;

use common::TestEnv;
use drugsync::apply::reconcile::ReconcileReport;

async fn run_reconcile(env: &TestEnv, dry_run: bool) -> ReconcileReport {
    env.reconcile(dry_run).await
}

/// Changes MySQL without writing the binlog: drift no stream can see.
async fn drift_behind_the_binlog(env: &TestEnv, statements: &[&str]) {
    let mut all = vec!["SET SESSION sql_log_bin = 0"];
    all.extend_from_slice(statements);
    env.exec(&all).await;
}

on_each_server! {
    async fn dry_run_reports_drift_without_changing_anything_then_repair_fixes_it(flavour) {
        let env = TestEnv::new(flavour, "reconcile", 500).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;

        let lbl_ndcs = env.active_ndcs_where("n.LBLRID = '000002'").await;
        let gcn_ndcs = env.active_ndcs_where("n.GCN_SEQNO = 6").await;
        let obsolete = env.active_ndcs_where("n.LBLRID <> '000002' AND n.GCN_SEQNO <> 6").await[0].clone();
        drift_behind_the_binlog(&env, &[
            "UPDATE rlblrid3 SET MFG = 'DRIFTED LABS' WHERE LBLRID = '000002'",
            "UPDATE rgcnseq4 SET STR60 = '606 MG' WHERE GCN_SEQNO = 6",
            "INSERT INTO rndc14 (NDC, LBLRID, GCN_SEQNO, LN60, INNOV, DEA, OBSDTEC) VALUES ('88888000001', '000001', 1, 'MISSING DRUG 1 MG', '0', '0', '0000-00-00')",
            &format!("UPDATE rndc14 SET OBSDTEC = '2020-02-02' WHERE NDC = '{obsolete}'"),
        ])
        .await;
        let mut redis = env.redis.clone();
        let deleted = env.active_ndcs_where("n.LBLRID <> '000002' AND n.GCN_SEQNO <> 6").await[5].clone();
        let _: () = redis::cmd("DEL").arg(format!("{}{deleted}", env.prefix)).query_async(&mut redis).await.unwrap();
        let _: () = redis::cmd("HSET").arg(format!("{}STRAY", env.prefix)).arg("ndc").arg("STRAY").query_async(&mut redis).await.unwrap();

        let before = env.actual().await;
        let dry = run_reconcile(&env, true).await;
        assert_eq!(env.actual().await, before, "a dry run changes nothing");
        assert_eq!(dry.mode, drugsync::apply::reconcile::Mode::DryRun);
        assert_eq!(dry.missing, 2, "the inserted NDC and the deleted hash: {dry:?}");
        assert_eq!(dry.orphans, 2, "the obsolete NDC and the stray hash: {dry:?}");
        // Strength drift changes the text (vector); a labeler rename changes fields only.
        let only_lbl = lbl_ndcs.iter().filter(|n| !gcn_ndcs.contains(n) && **n != deleted).count() as u64;
        assert_eq!(dry.stale_fields, only_lbl, "{dry:?}");
        assert!(dry.stale_vectors >= 1 && dry.stale_vectors <= gcn_ndcs.len() as u64, "{dry:?}");
        assert!(dry.embed_calls >= 2 && dry.tokens > 0, "estimates: {dry:?}");
        assert_eq!((dry.embed_calls, dry.model.as_str()), (dry.embed_texts, "drugsync-local-ngram-v1"), "one text per call: {dry:?}");
        assert_eq!(dry.estimated_cost_usd, 0.0, "the offline embedder costs nothing: {dry:?}");

        let repaired = run_reconcile(&env, false).await;
        assert_eq!(repaired.mode, drugsync::apply::reconcile::Mode::Repair);
        assert_eq!(repaired.embed_texts, dry.embed_texts, "the dry run predicted the texts embedded: {repaired:?}");
        assert_eq!(
            (repaired.missing, repaired.orphans, repaired.stale_fields, repaired.stale_vectors),
            (dry.missing, dry.orphans, dry.stale_fields, dry.stale_vectors)
        );
        assert_eq!(repaired.embed_calls, dry.embed_calls, "the dry run predicted the calls exactly");
        env.assert_matches_mysql().await;

        let clean = run_reconcile(&env, false).await;
        assert_eq!((clean.drift(), clean.embed_calls), (0, 0), "no drift, no embedding calls: {clean:?}");
        assert_eq!(clean.checked as usize, env.expected().await.len());
    }
}

on_each_server! {
    async fn reconcile_beside_a_running_streamer_hands_keys_over_and_the_index_ends_equal_to_mysql(flavour) {
        let env = TestEnv::new(flavour, "reconcilelive", 500).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        drift_behind_the_binlog(
            &env,
            &["UPDATE rlblrid3 SET MFG = 'SILENT CHANGE' WHERE LBLRID = '000003'", "UPDATE rgcnseq4 SET STR60 = '707 MG' WHERE GCN_SEQNO = 7"],
        )
        .await;

        // The table keeps changing (through the binlog) while the reconcile runs.
        let mut conn = env.mysql().await;
        let writer = tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            for i in 0..60 {
                conn.query_drop(format!("UPDATE rlblrid3 SET MFG = 'LIVE {i}' WHERE LBLRID = '{:06}'", 4 + i % 5)).await.unwrap();
                conn.query_drop(format!("UPDATE rgcnseq4 SET STR60 = '{i} MG' WHERE GCN_SEQNO = {}", 1 + i % 5)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let report = run_reconcile(&env, false).await;
        writer.await.unwrap();
        assert_eq!(
            report.mode,
            drugsync::apply::reconcile::Mode::Handoff,
            "the streamer holds the lease, so the reconcile must not write: {report:?}"
        );
        assert!(report.handed_off > 0);

        // The streamer drains the repair queue; then everything equals MySQL.
        let config = env.config();
        let sink = drugsync::app::compose::redis_sink(&config).await.unwrap();
        common::eventually(Duration::from_secs(10), Duration::from_millis(50), "the streamer drained the repairs", async || {
            let pending = sink.pending_repairs().await.unwrap();
            if pending == 0 { Ok(()) } else { Err(format!("{pending} pending")) }
        })
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    async fn replay_from_an_earlier_position_reapplies_changes(flavour) {
        let env = TestEnv::new(flavour, "replay", 300).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let earlier = env.master_position().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'REPLAYED LABS' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        run.stop().await;

        // Lose those documents in Redis; a replay from before the change restores them.
        let ndcs = env.active_ndcs_where("n.LBLRID = '000001'").await;
        let mut redis = env.redis.clone();
        let keys: Vec<String> = ndcs.iter().map(|n| format!("{}{n}", env.prefix)).collect();
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();

        let replicator = env.connect(&env.config_text).await.unwrap();
        let bogus = drugsync::position::Position::new(earlier.file.clone(), 999_999_999_999);
        let err = replicator.prepare_replay(&bogus).await.unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
        let gone = drugsync::position::Position::new("binlog.999999", 4);
        assert!(replicator.prepare_replay(&gone).await.unwrap_err().to_string().contains("not on the server"));
        replicator.prepare_replay(&earlier).await.unwrap();

        let run = env.run(replicator);
        // Redis still holds the later position until the writer, under its
        // lease, rewinds it to the replay's: caught up means nothing before that.
        common::eventually(Duration::from_secs(30), Duration::from_millis(50), "a deleted document replayed back", async || {
            match env.field(&ndcs[0], "manufacturer").await {
                Some(m) if m == "REPLAYED LABS" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

#[test]
fn cli_rejects_a_malformed_replay_position_with_exit_code_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drugsync"))
        .args(["--config", "config/drugsync.toml", "--replay-from", "binlog.000001"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("malformed binlog position"));
}

on_each_server! {
    async fn the_binary_prints_a_json_summary_and_the_checkpoint(flavour) {
        let env = TestEnv::new(flavour, "reconcilecli", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let config = env.config_file();
        let bin = env!("CARGO_BIN_EXE_drugsync");

        let output = std::process::Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["--reconcile", "--dry-run", "--output", "json"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
        assert_eq!(summary["mode"], "dry-run");
        assert_eq!(summary["checked"].as_u64().unwrap() as usize, env.expected().await.len());
        for field in ["missing", "stale_fields", "stale_vectors", "orphans", "embed_calls", "tokens"] {
            assert_eq!(summary[field], 0, "{field} in {summary}");
        }
        assert!(summary["duration_secs"].is_number() && summary["estimated_cost_usd"].is_number());

        let table = std::process::Command::new(bin).arg("--config").arg(&config).arg("--reconcile").output().unwrap();
        assert_eq!(table.status.code(), Some(0));
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(text.contains("checked") && text.contains("stale vectors") && text.contains("repair"), "{text}");

        let show = std::process::Command::new(bin).arg("--config").arg(&config).args(["checkpoint", "show"]).output().unwrap();
        assert_eq!(show.status.code(), Some(0));
        let text = String::from_utf8_lossy(&show.stdout);
        let stored = env.master_position().await;
        // Positions name their server first (see position.rs), then the file.
        let server_and_file = format!("{}/{}", stored.server.as_deref().unwrap_or_default(), stored.file);
        assert!(
            text.contains(&format!("local position:  {server_and_file}")) && text.contains(&format!("redis position:  {server_and_file}")),
            "{text}"
        );
    }
}

on_each_server! {
    /// Orphans are found a SCAN page at a time against MySQL's current state
    /// (nothing holds every key of the index): thousands of documents, spread
    /// over the whole key space and over many pages (the scan walks the shared
    /// test Redis, 1,000 keys a call), every one found, counted and removed.
    async fn orphans_spread_over_many_scan_pages_are_all_found_and_removed(flavour) {
        let env = TestEnv::new(flavour, "orphanpages", 3300).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let going = env.active_ndcs_where("MOD(CAST(n.NDC AS UNSIGNED), 3) = 0").await;
        assert!(going.len() > 250, "a spread large enough to span pages: {}", going.len());
        drift_behind_the_binlog(&env, &["UPDATE rndc14 SET OBSDTEC = '2021-01-01' WHERE MOD(CAST(NDC AS UNSIGNED), 3) = 0"]).await;

        let dry = run_reconcile(&env, true).await;
        assert_eq!((dry.orphans, dry.drift()), (going.len() as u64, going.len() as u64), "{dry:?}");
        let repaired = run_reconcile(&env, false).await;
        assert_eq!(repaired.orphans, going.len() as u64, "{repaired:?}");
        let actual = env.actual().await;
        assert!(going.iter().all(|ndc| !actual.contains_key(ndc)), "every orphan removed");
        env.assert_matches_mysql().await;
        assert_eq!(run_reconcile(&env, true).await.drift(), 0);
    }
}

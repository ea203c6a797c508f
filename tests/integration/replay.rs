//! A replay priced before it runs (`--replay-from POS --dry-run`), then run:
//! the estimate is judged by the test's own SQL, and the replay's own
//! summary (`replay caught up`) by the estimate.

use crate::common;
use crate::common::on_every_source;

use std::time::Duration;

use common::{TestEnv, eventually};

on_every_source! {
    async fn a_replay_is_priced_without_writing_and_then_costs_what_was_priced(flavour) {
        let env = TestEnv::new(flavour, "replay_price", 400).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        run.stop().await;
        let from = env.master_position().await;

        // Changes while no drugsync runs, chosen by the test's own SQL: a
        // strength (new texts), a labeler rename (fields only), an obsolete NDC.
        let gcn = env.strings("SELECT CAST(GCN_SEQNO AS CHAR) FROM rndc14 WHERE OBSDTEC = '0000-00-00' GROUP BY GCN_SEQNO ORDER BY COUNT(*) DESC, GCN_SEQNO LIMIT 1").await.remove(0);
        let text_changed = env.strings(&format!("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND GCN_SEQNO = {gcn}")).await;
        let labeler = env
            .strings(&format!("SELECT LBLRID FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND GCN_SEQNO <> {gcn} ORDER BY NDC LIMIT 1"))
            .await
            .remove(0);
        let renamed_only =
            env.strings(&format!("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND LBLRID = '{labeler}' AND GCN_SEQNO <> {gcn}")).await;
        let obsolete = env
            .strings(&format!(
                "SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' AND GCN_SEQNO <> {gcn} AND LBLRID <> '{labeler}' ORDER BY NDC LIMIT 1"
            ))
            .await
            .remove(0);
        env.exec(&[
            &format!("UPDATE rgcnseq4 SET STR60 = 'REPLAYED 9 MG' WHERE GCN_SEQNO = {gcn}"),
            &format!("UPDATE rlblrid3 SET MFG = 'REPLAYED LABS' WHERE LBLRID = '{labeler}'"),
            &format!("UPDATE rndc14 SET OBSDTEC = '2026-01-01' WHERE NDC = '{obsolete}'"),
        ])
        .await;

        let before = env.actual().await;
        let output = env
            .binary_command(&env.config_text, "price.log")
            .args(["--replay-from", &from.to_string(), "--dry-run", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", std::fs::read_to_string(env.log_path("price.log")).unwrap());
        let estimate: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(env.actual().await, before, "pricing writes nothing");
        assert_eq!(estimate["from"], from.to_string());
        assert_eq!(estimate["mode"], "dry-run");
        assert_eq!(estimate["full_diff"], false, "{estimate}");
        assert!(estimate["transactions"].as_u64().unwrap() >= 3, "{estimate}");
        assert_eq!(estimate["stale_vectors"], text_changed.len(), "the strength's NDCs need new vectors: {estimate}");
        assert_eq!(estimate["stale_fields"], renamed_only.len(), "the renamed labeler's other NDCs only new fields: {estimate}");
        assert_eq!((estimate["missing"].as_u64(), estimate["orphans"].as_u64()), (Some(0), Some(1)), "the obsolete NDC goes: {estimate}");
        let texts = estimate["embed_texts"].as_u64().unwrap();
        assert!(texts >= 1 && texts <= text_changed.len() as u64, "{estimate}");
        assert_eq!(estimate["embed_calls"], texts, "the offline embedder takes one text per call");
        assert_eq!(estimate["model"], "drugsync-local-ngram-v1");
        assert!(estimate["tokens"].as_u64().unwrap() > 0 && estimate["estimated_cost_usd"] == 0.0, "{estimate}");

        // The replay itself: its summary line says it cost what was priced.
        let mut child = env.binary_command(&env.config_text, "replay.log").args(["--replay-from", &from.to_string()]).spawn().unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let summary = eventually(Duration::from_secs(30), Duration::from_millis(100), "a replay summary in the log", async || {
            let log = std::fs::read_to_string(env.log_path("replay.log")).unwrap();
            let line = log.lines().find(|l| l.contains("replay caught up")).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
            line.ok_or(log)
        })
        .await;
        assert_eq!(summary["embed_texts"], texts, "priced {texts} texts: {summary}");
        assert_eq!(summary["embed_calls"], estimate["embed_calls"], "{summary}");
        assert_eq!(summary["model"], "drugsync-local-ngram-v1");
        assert!(summary["transactions"].as_u64().unwrap() >= 3 && summary["deletes"] == 1, "{summary}");
        child.kill().ok();
        child.wait().ok();
    }
}

#[test]
fn dry_run_and_output_need_something_to_price() {
    for args in [vec!["--dry-run"], vec!["--output", "json"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_drugsync"))
            .args(["--config", "config/drugsync.toml"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--replay-from"), "{args:?}");
    }
}

//! Invariant 7 on MySQL without GTIDs (Aurora MySQL 3's default): MySQL
//! hands a transaction to binlog readers once its binlog is synced, before
//! the engine commit makes its rows visible. The window is held open on
//! purpose, as block/spirit's reproduction does (PR #1080): a semi-synchronous
//! source with no semi-synchronous replica stalls every commit between binlog
//! sync and engine commit (inside the commit stage) for the whole
//! `rpl_semi_sync_source_timeout`, then falls back to asynchronous commits.
//! drugsync applies a lone change at once (it batches only while busy), so it
//! re-reads while the commit is held: without a gate it applies the old rows
//! and moves on; with the fence it waits and applies the new ones.

use drugsync::observe::stats::Counter;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::common::{Flavour, PrivateServer, TestEnv};
use drugsync::mysql::visibility::GateMode;

/// How long the semi-synchronous wait holds a commit: far longer than
/// drugsync takes to receive an event and re-read (milliseconds).
const HOLD_MS: u64 = 3000;

/// A MySQL without GTIDs that can hold a commit (the semi-sync source plugin loaded, off).
async fn holding_server() -> PrivateServer {
    PrivateServer::start_with(Flavour::MysqlGtidOff, vec!["--plugin-load-add=semisync_source.so".into()]).await
}

/// `env` with the opt-in to run without a gate as asked.
fn gated(env: &mut TestEnv, ungated: bool) {
    let text = env.config_text.replacen("allow_ungated_reads = false", &format!("allow_ungated_reads = {ungated}"), 1);
    assert!(text.contains(&format!("allow_ungated_reads = {ungated}")));
    env.config_text = text;
}

/// Runs `statement` (autocommit) with the server holding its commit between
/// binlog sync and engine commit for [`HOLD_MS`]; returns once it committed,
/// after checking that it really was held (a fresh read saw the old value
/// while the binlog already had the change, and the commit took the hold).
async fn commit_held(env: &TestEnv, statement: String, probe: String, old: &str) {
    let mut admin = env.mysql().await;
    admin
        .query_drop(format!(
            "SET GLOBAL rpl_semi_sync_source_timeout = {HOLD_MS}; SET GLOBAL rpl_semi_sync_source_enabled = OFF; SET GLOBAL rpl_semi_sync_source_enabled = ON"
        ))
        .await
        .unwrap();
    let status: Option<(String, String)> = admin.query_first("SHOW STATUS LIKE 'Rpl_semi_sync_source_status'").await.unwrap();
    assert_eq!(status.map(|s| s.1).as_deref(), Some("ON"), "semi-sync armed");
    let before = env.master_position().await;
    let mut writer = env.mysql().await;
    let started = std::time::Instant::now();
    let write = tokio::spawn(async move {
        writer.query_drop(statement).await.unwrap();
        writer.disconnect().await.unwrap();
    });
    // The change is in the binlog (readers have it) but not visible yet.
    crate::common::eventually(Duration::from_secs(2), Duration::from_millis(5), "the held change reached the binlog", async || {
        let now = env.master_position().await;
        if now.try_cmp(&before).is_ok_and(|o| o.is_gt()) { Ok(()) } else { Err(format!("binlog still at {now}")) }
    })
    .await;
    let seen: Option<String> = admin.query_first(probe.as_str()).await.unwrap();
    assert_eq!(seen.as_deref(), Some(old), "the change is logged and not yet visible: the window is open");
    write.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(HOLD_MS / 2), "the commit was held ({:?})", started.elapsed());
    admin.query_drop("SET GLOBAL rpl_semi_sync_source_enabled = OFF").await.unwrap();
    admin.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_after_its_binlog_is_applied_stale_without_a_gate_and_fresh_through_the_fence_on_mysql_without_gtids() {
    let server = holding_server().await;
    for (name, ungated) in [("held_ungated", true), ("held_fenced", false)] {
        let mut env = TestEnv::new_on(&server, name, 100).await;
        gated(&mut env, ungated);
        let ndc = env.active_ndcs_where("1 = 1").await.remove(7);
        let old = env.field_in_mysql(&ndc).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let expected_gate = if ungated { GateMode::None } else { GateMode::Fence };
        assert_eq!(run.stats.gate(), Some(expected_gate), "{name}: the gate the server and config give");

        let statement = format!("UPDATE rndc14 SET LN60 = 'HELD COMMIT' WHERE NDC = '{ndc}'");
        let probe = format!("SELECT COALESCE(NULLIF(LN60, ''), LN) FROM rndc14 WHERE NDC = '{ndc}'");
        commit_held(&env, statement, probe, &old).await;
        env.wait_caught_up().await;

        // The oracle (the test's own SQL) says what the document must be now.
        let expected = env.expected().await;
        assert_eq!(expected[&ndc].fields.get("drug_name").map(String::as_str), Some("HELD COMMIT"));
        let in_redis = env.field(&ndc, "drug_name").await;
        let ungated_batches = run.stats.counted(Counter::UngatedBatches);
        if ungated {
            // What a GTID-less source did to drugsync before the fence: the
            // position passed a change that was never applied.
            assert_eq!(in_redis.as_deref(), Some(old.as_str()), "without a gate the re-read ran inside the window");
            assert!(ungated_batches >= 1, "every ungated batch is counted");
        } else {
            assert_eq!(in_redis.as_deref(), Some("HELD COMMIT"), "the fence waited for the engine commit");
            assert_eq!(ungated_batches, 0);
            env.assert_matches_mysql().await;
        }
        run.stop().await;
    }
}

impl TestEnv {
    /// The drug name of `ndc` as the oracle builds it, read from MySQL now.
    async fn field_in_mysql(&self, ndc: &str) -> String {
        let expected = self.expected().await;
        expected[ndc].fields["drug_name"].clone()
    }
}

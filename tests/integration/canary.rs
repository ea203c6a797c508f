//! The freshness canary: heartbeats written to the source, measured when
//! Redis acknowledges them, and off (saying so) without the grant.

use crate::common;
use crate::common::on_each_server;
use drugsync::observe::stats::{Counter, Gauge};

use std::time::Duration;

use common::{TestEnv, eventually};

pub(crate) const HEARTBEAT_TABLE: &str = "CREATE TABLE drugsync_heartbeat (id INT UNSIGNED PRIMARY KEY, beat_ms BIGINT UNSIGNED NOT NULL)";

pub(crate) fn with_canary(config: &str) -> String {
    let on = config.replacen("# table = \"drugsync_heartbeat\"", "table = \"drugsync_heartbeat\"", 1).replacen(
        "interval_secs = 10",
        "interval_secs = 1",
        1,
    );
    assert!(
        on.contains("\ntable = \"drugsync_heartbeat\"") && on.contains("interval_secs = 1\n"),
        "the reference config's [canary] section"
    );
    on
}

on_each_server! {
    /// Each heartbeat the writer commits to MySQL comes back through the
    /// binlog and is marked visible once Redis acknowledged the batch
    /// holding it; the heartbeat rows touch no document, and DDL on the
    /// heartbeat table is no DDL on a tracked table (no reconcile).
    async fn heartbeats_written_to_the_source_are_measured_when_redis_holds_them(flavour) {
        let mut env = TestEnv::new(flavour, "canary", 60).await;
        env.exec(&[HEARTBEAT_TABLE]).await;
        env.use_config(with_canary(&env.config_text));
        let run = env.start().await;
        env.wait_caught_up().await;
        let id = env.config().mysql.server_id;
        // A heartbeat committed to the source ...
        let written = eventually(Duration::from_secs(10), Duration::from_millis(100), "a heartbeat row in MySQL", async || {
            let rows = env.strings(&format!("SELECT beat_ms FROM drugsync_heartbeat WHERE id = {id}")).await;
            rows.first().and_then(|b| b.parse::<u64>().ok()).ok_or_else(|| "no row".to_string())
        })
        .await;
        // ... is seen visible: that one or a later one.
        eventually(Duration::from_secs(20), Duration::from_millis(100), "the heartbeat visible through Redis", async || {
            let visible = run.stats.gauge(Gauge::CanaryVisibleMs);
            if visible >= written { Ok(()) } else { Err(format!("visible {visible} < written {written}")) }
        })
        .await;
        assert_eq!(run.stats.gauge(Gauge::CanaryEnabled), 1);
        assert!(run.stats.canary_freshness().is_some());
        // A reconcile would count every document it found equal.
        let unchanged_before = run.stats.counted(Counter::Unchanged);
        env.exec(&["TRUNCATE TABLE drugsync_heartbeat"]).await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER THE BEATS' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        assert_eq!(run.stats.counted(Counter::Unchanged), unchanged_before, "the heartbeat table's DDL reconciled nothing");
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished());
        run.stop().await;
    }
}

on_each_server! {
    /// The least-privilege user (SELECT and replication only) cannot write
    /// the heartbeat: the canary turns itself off and replication goes on.
    async fn without_the_grant_the_canary_is_off_and_replication_goes_on(flavour) {
        let mut env = TestEnv::new(flavour, "canarynogrant", 60).await;
        env.exec(&[HEARTBEAT_TABLE]).await;
        let user = "ds_no_canary";
        env.create_user(user, "Nc-s3cret", false, true).await;
        let config = with_canary(&env.config_text).replacen("drugsync:drugsync@", &format!("{user}:Nc-s3cret@"), 1);
        env.use_config(config);
        let run = env.start().await;
        env.wait_caught_up().await;
        eventually(Duration::from_secs(10), Duration::from_millis(100), "the canary off", async || {
            match run.stats.gauge(Gauge::CanaryEnabled) {
                0 => Ok(()),
                n => Err(format!("enabled = {n}")),
            }
        })
        .await;
        assert!(env.strings("SELECT beat_ms FROM drugsync_heartbeat").await.is_empty(), "nothing written");
        env.exec(&["UPDATE rlblrid3 SET MFG = 'NO CANARY LABS' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished(), "a canary it cannot write stops nothing");
        assert_eq!(run.stats.gauge(Gauge::CanaryVisibleMs), 0);
        run.stop().await;
    }
}

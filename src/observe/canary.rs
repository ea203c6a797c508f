//! The freshness canary's writer (see `config::CanaryConfig`).
//!
//! While this instance is the writer it upserts one heartbeat row every
//! `canary.interval_secs`, on a connection of its own, so a stuck pool or a
//! slow re-read cannot delay a beat. The beat comes back through the binlog
//! like any change; the apply loop marks it visible once the batch holding
//! it is acknowledged by Redis (`Stats::canary_visible`). Without the table
//! or the grant the canary turns itself off and says how to turn it on:
//! freshness is then judged by the lag alone.

use crate::observe::stats::Gauge;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio_util::sync::CancellationToken;

use crate::mysql::connect::CONNECT_TIMEOUT;
use crate::observe::Stats;

/// Server errors after which beating again cannot help: no table, no
/// grant, no column, a read-only server.
const OFF_FOR_GOOD: [u16; 6] = [1044, 1142, 1146, 1054, 1290, 1836];

/// The heartbeat writer of one writer run.
pub struct CanaryWriter {
    opts: Opts,
    /// `` `schema`.`table` ``, both validated identifiers.
    table: String,
    id: u32,
    every: Duration,
}

impl CanaryWriter {
    /// The writer for `config`, or `None` when the canary is off.
    pub fn of(config: &crate::config::Config, opts: &Opts) -> Option<Self> {
        let table = config.canary.table.as_ref()?;
        Some(Self {
            opts: opts.clone(),
            table: format!("`{}`.`{table}`", config.mysql.schema),
            id: config.mysql.server_id,
            every: Duration::from_secs(config.canary.interval_secs),
        })
    }

    /// Beats until `cancel` fires or the canary turns out impossible.
    pub async fn run(self, stats: std::sync::Arc<Stats>, cancel: CancellationToken) {
        let statement = format!("INSERT INTO {} (id, beat_ms) VALUES (?, ?) ON DUPLICATE KEY UPDATE beat_ms = ?", self.table);
        let mut conn: Option<Conn> = None;
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        stats.set(Gauge::CanaryEnabled, 1);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let beat = crate::observe::health::unix_ms();
            let result = tokio::time::timeout(CONNECT_TIMEOUT + self.every, async {
                if conn.is_none() {
                    conn = Some(Conn::new(self.opts.clone()).await?);
                }
                let c = conn.as_mut().expect("just connected");
                c.exec_drop(statement.as_str(), (self.id, beat, beat)).await
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(mysql_async::Error::Server(e))) if OFF_FOR_GOOD.contains(&e.code) => {
                    tracing::warn!(
                        table = %self.table,
                        error = %e.message,
                        "freshness canary off: drugsync cannot write its heartbeat. To turn it on: CREATE TABLE {} (id INT UNSIGNED PRIMARY KEY, beat_ms BIGINT UNSIGNED NOT NULL); GRANT INSERT, UPDATE ON {} TO the drugsync user; on the writer endpoint",
                        self.table,
                        self.table
                    );
                    stats.set(Gauge::CanaryEnabled, 0);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "freshness canary: heartbeat not written; trying again next interval");
                    conn = None;
                }
                Err(_) => {
                    tracing::warn!("freshness canary: heartbeat not written in time; trying again next interval");
                    conn = None;
                }
            }
        }
        if let Some(conn) = conn {
            tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await.ok();
        }
    }
}

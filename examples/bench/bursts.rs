//! What batching buys under bursts, read from drugsync's own counters
//! (`/metrics`): a burst of field edits (each drug edited several times by
//! separate autocommits, as a loader updating one column at a time does)
//! and a reload storm (each drug's row deleted and inserted again, each its
//! own transaction). Printed per distinct drug: upserts for the edits,
//! documents rebuilt (written, deleted or found unchanged) for the storm.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{BoxError, Replicator, wait_for_position};

/// drugsync's counters that matter here, from its `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub upserts: f64,
    pub deletes: f64,
    pub unchanged: f64,
    pub transactions: f64,
    pub batches: f64,
}

impl Counters {
    /// Reads them from the metrics listener on `port`, once drugsync has
    /// counted what it applied (its counters are published once a second).
    pub async fn read(port: u16) -> Result<Self, BoxError> {
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        let value =
            |name: &str| body.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0);
        Ok(Self {
            upserts: value("drugsync_documents_upserted_total "),
            deletes: value("drugsync_documents_deleted_total "),
            unchanged: value("drugsync_documents_unchanged_total "),
            transactions: value("drugsync_transactions_total "),
            batches: value("drugsync_batches_total "),
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            upserts: self.upserts - before.upserts,
            deletes: self.deletes - before.deletes,
            unchanged: self.unchanged - before.unchanged,
            transactions: self.transactions - before.transactions,
            batches: self.batches - before.batches,
        }
    }
}

/// What a burst needs.
pub struct Burst<'a> {
    pub mysql_url: String,
    pub metrics_port: u16,
    pub clients: usize,
    pub ndcs: &'a [String],
}

impl Burst<'_> {
    /// `rounds` edits of the schedule of each of `docs` drugs, a round after
    /// the other, every edit its own commit, from `clients` connections.
    pub async fn field_edits(
        &self,
        docs: usize,
        rounds: usize,
        redis: &mut redis::aio::MultiplexedConnection,
        conn: &mut mysql_async::Conn,
        position_key: &str,
        streamer: &mut Replicator,
    ) -> Result<(), BoxError> {
        let drugs: Vec<String> = self.ndcs.iter().take(docs).cloned().collect();
        let before = Counters::read(self.metrics_port).await?;
        streamer.reset_peak();
        let t = Instant::now();
        let statements: Vec<(String, String)> = (0..rounds)
            .flat_map(|round| {
                let value = ["W", "X", "Y", "Z"][round % 4].to_owned();
                drugs.iter().map(move |ndc| (value.clone(), ndc.clone()))
            })
            .collect();
        let committed = self.commit_all("UPDATE rndc14 SET DEA = ? WHERE NDC = ?", statements).await?;
        wait_for_position(redis, conn, position_key, streamer).await?;
        let spent = Counters::read(self.metrics_port).await?.since(before);
        println!(
            "field-edit burst: {committed} commits ({rounds} edits each of {} drugs, {} clients), caught up in {:.1}s: {:.0} upserts = {:.2} per distinct changed drug; {:.0} transactions in {:.0} batches ({:.1} a batch); peak RSS {} MB",
            drugs.len(),
            self.clients,
            t.elapsed().as_secs_f64(),
            spent.upserts,
            spent.upserts / drugs.len() as f64,
            spent.transactions,
            spent.batches,
            spent.transactions / spent.batches.max(1.0),
            streamer.peak_mb()
        );
        Ok(())
    }

    /// Each of `docs` drugs' `rndc14` row deleted and inserted again from a
    /// copy, each statement its own commit, the two of a drug back to back.
    pub async fn reload_storm(
        &self,
        docs: usize,
        redis: &mut redis::aio::MultiplexedConnection,
        conn: &mut mysql_async::Conn,
        position_key: &str,
        streamer: &mut Replicator,
    ) -> Result<(), BoxError> {
        let drugs: Vec<String> = self.ndcs.iter().rev().take(docs).cloned().collect();
        conn.query_drop("DROP TABLE IF EXISTS rndc14_storm").await?;
        // With rndc14's key, so each re-insert is one row read, as fast as a loader's.
        conn.query_drop("CREATE TABLE rndc14_storm LIKE rndc14").await?;
        conn.query_drop("INSERT INTO rndc14_storm SELECT * FROM rndc14").await?;
        let before = Counters::read(self.metrics_port).await?;
        streamer.reset_peak();
        let t = Instant::now();
        let committed = self.commit_pairs(&drugs).await?;
        wait_for_position(redis, conn, position_key, streamer).await?;
        let spent = Counters::read(self.metrics_port).await?.since(before);
        let rebuilt = spent.upserts + spent.deletes + spent.unchanged;
        println!(
            "reload storm: {committed} commits (each of {} drugs deleted then inserted again, {} clients), caught up in {:.1}s: {:.0} documents rebuilt = {:.2} per drug ({:.0} written, {:.0} deleted, {:.0} unchanged); {:.0} transactions in {:.0} batches; peak RSS {} MB",
            drugs.len(),
            self.clients,
            t.elapsed().as_secs_f64(),
            rebuilt,
            rebuilt / drugs.len() as f64,
            spent.upserts,
            spent.deletes,
            spent.unchanged,
            spent.transactions,
            spent.batches,
            streamer.peak_mb()
        );
        conn.query_drop("DROP TABLE rndc14_storm").await?;
        Ok(())
    }

    /// Runs `statement` once per parameter pair, spread round-robin over
    /// the clients in order; returns the commits made.
    async fn commit_all(&self, statement: &'static str, params: Vec<(String, String)>) -> Result<usize, BoxError> {
        let mut tasks = Vec::new();
        for c in 0..self.clients {
            let url = self.mysql_url.clone();
            let mine: Vec<(String, String)> = params.iter().skip(c).step_by(self.clients).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut conn = crate::support::loader_connection(&url).await.map_err(|e| e.to_string())?;
                for p in &mine {
                    conn.exec_drop(statement, p.clone()).await.map_err(|e| e.to_string())?;
                }
                Ok::<usize, String>(mine.len())
            }));
        }
        let mut committed = 0;
        for task in tasks {
            committed += task.await??;
        }
        Ok(committed)
    }

    /// A DELETE and an INSERT ... SELECT from the storm's copy per drug.
    async fn commit_pairs(&self, drugs: &[String]) -> Result<usize, BoxError> {
        let mut tasks = Vec::new();
        for c in 0..self.clients {
            let url = self.mysql_url.clone();
            let mine: Vec<String> = drugs.iter().skip(c).step_by(self.clients).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut conn = crate::support::loader_connection(&url).await.map_err(|e| e.to_string())?;
                for ndc in &mine {
                    conn.exec_drop("DELETE FROM rndc14 WHERE NDC = ?", (ndc,)).await.map_err(|e| e.to_string())?;
                    conn.exec_drop("INSERT INTO rndc14 SELECT * FROM rndc14_storm WHERE NDC = ?", (ndc,))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<usize, String>(mine.len() * 2)
            }));
        }
        let mut committed = 0;
        for task in tasks {
            committed += task.await??;
        }
        Ok(committed)
    }
}

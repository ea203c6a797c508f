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
        let edits: Vec<Vec<(&'static str, Vec<String>)>> = (0..rounds)
            .flat_map(|round| {
                let value = ["W", "X", "Y", "Z"][round % 4];
                drugs.iter().map(move |ndc| vec![("UPDATE rndc14 SET DEA = ? WHERE NDC = ?", vec![value.to_owned(), ndc.clone()])])
            })
            .collect();
        let (committed, secs, spent) = self.measured(edits, redis, conn, position_key, streamer).await?;
        println!(
            "field-edit burst: {committed} commits ({rounds} edits each of {} drugs, {} clients), caught up in {secs:.1}s: {:.0} upserts = {:.2} per distinct changed drug; {:.0} transactions in {:.0} batches ({:.1} a batch); peak RSS {} MB",
            drugs.len(),
            self.clients,
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
        let pairs = drugs
            .iter()
            .map(|ndc| {
                vec![
                    ("DELETE FROM rndc14 WHERE NDC = ?", vec![ndc.clone()]),
                    ("INSERT INTO rndc14 SELECT * FROM rndc14_storm WHERE NDC = ?", vec![ndc.clone()]),
                ]
            })
            .collect();
        let (committed, secs, spent) = self.measured(pairs, redis, conn, position_key, streamer).await?;
        let rebuilt = spent.upserts + spent.deletes + spent.unchanged;
        println!(
            "reload storm: {committed} commits (each of {} drugs deleted then inserted again, {} clients), caught up in {secs:.1}s: {:.0} documents rebuilt = {:.2} per drug ({:.0} written, {:.0} deleted, {:.0} unchanged); {:.0} transactions in {:.0} batches; peak RSS {} MB",
            drugs.len(),
            self.clients,
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

    /// Commits `units` (see [`Self::commit_units`]) and waits until drugsync
    /// caught up: the commits made, the seconds from the first commit to
    /// caught up, and what drugsync counted meanwhile (its peak RSS reset first).
    async fn measured(
        &self,
        units: Vec<Vec<(&'static str, Vec<String>)>>,
        redis: &mut redis::aio::MultiplexedConnection,
        conn: &mut mysql_async::Conn,
        position_key: &str,
        streamer: &mut Replicator,
    ) -> Result<(usize, f64, Counters), BoxError> {
        let before = Counters::read(self.metrics_port).await?;
        streamer.reset_peak();
        let t = Instant::now();
        let committed = self.commit_units(units).await?;
        wait_for_position(redis, conn, position_key, streamer).await?;
        let secs = t.elapsed().as_secs_f64();
        Ok((committed, secs, Counters::read(self.metrics_port).await?.since(before)))
    }

    /// Commits every unit (statements run in order, each its own commit),
    /// units spread round-robin over the clients; returns the commits made.
    async fn commit_units(&self, units: Vec<Vec<(&'static str, Vec<String>)>>) -> Result<usize, BoxError> {
        let mut tasks = Vec::new();
        for c in 0..self.clients {
            let url = self.mysql_url.clone();
            let mine: Vec<_> = units.iter().skip(c).step_by(self.clients).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut conn = crate::support::loader_connection(&url).await.map_err(|e| e.to_string())?;
                let mut committed = 0;
                for (statement, params) in mine.iter().flatten() {
                    let params = mysql_async::Params::Positional(params.iter().map(|p| p.as_str().into()).collect());
                    conn.exec_drop(*statement, params).await.map_err(|e| e.to_string())?;
                    committed += 1;
                }
                Ok::<usize, String>(committed)
            }));
        }
        let mut committed = 0;
        for task in tasks {
            committed += task.await??;
        }
        Ok(committed)
    }
}

//! "Event received" is not "rows visible" (architecture invariant 7).
//!
//! A server writes a transaction to the binlog before its storage engine
//! commits it, so a document re-read right after the event can still see the
//! old rows, and the position would then move past a change never applied.
//! XA transactions make the gap arbitrarily long; the decoder holds those
//! until their `XA COMMIT` (see `decode::xa`). For every batch, before its
//! documents are re-read, [`wait_until_visible`] waits until the source shows
//! the batch's commit as committed:
//!
//! - **MariaDB**: a consistent snapshot reports the binlog position it
//!   corresponds to (`binlog_snapshot_file/position`): every transaction up
//!   to it is visible to that snapshot and to every later read. Once that
//!   position reaches the batch's commit, the re-read cannot be stale.
//! - **MySQL with GTIDs** (`gtid_mode=ON`): `WAIT_FOR_EXECUTED_GTID_SET` on the
//!   commit's GTID set; `gtid_executed` moves at engine commit.
//! - **MySQL without GTIDs** (Aurora's default) offers neither: the gap is then
//!   the group-commit window between binlog write and engine commit, which the
//!   batching delay covers in practice but nothing here proves. Turn GTIDs on
//!   to close it.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};

use super::error::SourceError;
use super::server;
use crate::position::Position;

/// Pause between looks while the source has not committed yet.
const POLL: Duration = Duration::from_millis(10);

/// Returns once a re-read of the source sees every transaction up to
/// `commit`; errs (transient: the batch is retried) after `limit`.
/// Each look at the source is bounded by `query_timeout`.
pub async fn wait_until_visible(pool: &Pool, commit: &Position, limit: Duration, query_timeout: Duration) -> Result<(), SourceError> {
    let started = Instant::now();
    loop {
        let mut conn = super::connect::pooled(pool).await?;
        let look = async {
            let mut opts = TxOpts::default();
            opts.with_consistent_snapshot(true).with_readonly(true);
            let mut tx = conn.start_transaction(opts).await.map_err(|e| SourceError::from_driver(e, "consistent snapshot"))?;
            let snapshot = server::snapshot_position(&mut tx).await?;
            tx.rollback().await.map_err(|e| SourceError::from_driver(e, "consistent snapshot"))?;
            Ok(snapshot)
        };
        let what = "reading the source's committed position";
        let Some(snapshot) = super::deadline::within(query_timeout, what, look).await? else {
            let what = "waiting for the source to show the batch committed";
            return super::deadline::within(limit + query_timeout, what, wait_for_mysql_gtids(&mut conn, commit, limit)).await;
        };
        match snapshot.try_cmp(commit) {
            Ok(order) if order.is_ge() => return Ok(()),
            Ok(_) => {}
            // Another lineage (the stream resumed by GTID on another server): nothing to compare.
            Err(_) => return Ok(()),
        }
        if started.elapsed() >= limit {
            return Err(SourceError::Connection(format!(
                "the source has not committed {commit} {}s after it was logged (snapshot at {snapshot}); retrying",
                limit.as_secs()
            )));
        }
        drop(conn);
        tokio::time::sleep(POLL).await;
    }
}

/// MySQL: waits for the commit's GTID set when the server has GTIDs.
async fn wait_for_mysql_gtids<Q: Queryable>(conn: &mut Q, commit: &Position, limit: Duration) -> Result<(), SourceError> {
    let Some(gtids) = commit.gtid.as_deref().filter(|g| g.contains(':')) else { return Ok(()) };
    let query = "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)";
    let timed_out: Option<i64> =
        conn.exec_first(query, (gtids, limit.as_secs_f64())).await.map_err(|e| SourceError::from_driver(e, query))?;
    match timed_out {
        Some(0) => Ok(()),
        _ => Err(SourceError::Connection(format!(
            "the source has not committed {commit} {}s after it was logged; retrying",
            limit.as_secs()
        ))),
    }
}

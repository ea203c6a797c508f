//! "Event received" is not "rows visible" (architecture invariant 7).
//!
//! A server hands a transaction's events to binlog readers before its storage
//! engine commits it, so a document re-read right after the event can still
//! see the old rows, and the position would then move past a change never
//! applied. XA transactions make the gap arbitrarily long; the decoder holds
//! those until their `XA COMMIT` (see `decode::xa`). Before a batch's
//! documents are re-read, and before the initial load's snapshot starts,
//! [`VisibilityGate::wait`] returns only once the source shows everything up
//! to the batch's commit visible, by one of four gates ([`GateMode`]):
//!
//! - **snapshot** (MariaDB): a consistent snapshot reports the binlog
//!   position it corresponds to (`binlog_snapshot_file/position`): every
//!   transaction up to it is visible to that snapshot and to every later
//!   read. Once that position reaches the commit, the re-read cannot be stale.
//! - **gtid** (MySQL, `gtid_mode=ON`): `WAIT_FOR_EXECUTED_GTID_SET` on the
//!   commit's GTID set; `gtid_executed` moves at the engine commit.
//! - **fence** (MySQL without GTIDs, Aurora MySQL 3's default): drugsync
//!   commits a tiny binlogged write of its own ([`Fence`]) after the batch's
//!   last event arrived, and waits for that COMMIT to return.
//! - **none**: MySQL without GTIDs with `mysql.visibility.allow_ungated_reads`.
//!
//! The gate is chosen from the server's *current* `gtid_mode`, read with
//! every wait, never from whether a stored position carries a GTID set:
//! GTIDs turned off after being on leave `@@gtid_executed` (and so every
//! position) non-empty, and `WAIT_FOR_EXECUTED_GTID_SET` then fails (3062).
//!
//! # Why the fence holds
//! MySQL commits a transaction in `MYSQL_BIN_LOG::ordered_commit`
//! (`sql/binlog.cc`) in three stages, each a queue whose leader works for
//! the whole group: FLUSH (write to the binlog), SYNC (fsync it; binlog
//! readers are handed the group's events from here on), COMMIT (the engine
//! commit that makes the rows visible). With `binlog_order_commits=ON` the
//! COMMIT stage runs under `LOCK_commit`: groups enter it one at a time, in
//! the order they left SYNC, which is binlog order, and the leader commits
//! its group in queue order (`process_commit_stage_queue`) before it passes
//! `LOCK_commit` on. A session's COMMIT returns only after its own group's
//! engine commit (`finish_commit`). drugsync's fence write starts after the
//! batch's last event was received, so that transaction had already left
//! SYNC and sits in an earlier group: when the fence's COMMIT returns, it
//! is committed in the engine, and so is everything logged before it.
//! The semi-synchronous `after_sync` wait runs inside the COMMIT stage
//! (under `LOCK_commit`), so a commit stalled there stalls the fence too;
//! that is how the integration test holds the window open on purpose.
//! What breaks it, and is refused at start: `binlog_order_commits=OFF`
//! (each session then commits in the engine on its own, in any order), and
//! a write that skips the group commit: `sql_log_bin=0`, a non-InnoDB table,
//! or a write that changes nothing (no binlog events, no group).
//!
//! **Aurora MySQL 3** is not community MySQL underneath (its storage and,
//! with `aurora_enhanced_binlog`, its binlog are its own): the fence's
//! reasoning is verified against community MySQL's source and tested on
//! MySQL 9.7, not verified on Aurora (docs/sources.md: Aurora MySQL 3).

pub mod fence;
mod mode;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Pool, TxOpts};

use super::dialect::Flavor;
use super::error::{ER_GTID_MODE_OFF, SourceError};
use super::server;
use crate::config::MysqlConfig;
use crate::position::Position;
pub use fence::Fence;
pub use mode::GateMode;

/// Pause between looks while MariaDB has not committed yet.
const POLL: Duration = Duration::from_millis(10);

/// Proves re-reads fresh; see the module docs. One per run, shared by the
/// stages that re-read (stream, full diff, initial load).
#[derive(Debug)]
pub struct VisibilityGate {
    pool: Pool,
    /// For a fresh session at start: a pooled one was reset, which undoes
    /// what the server's `init_connect` set for new ones.
    opts: Opts,
    fence: Fence,
    /// `mysql.visibility.allow_ungated_reads`.
    allow_ungated: bool,
    /// Longest wait for the source to commit what its binlog already holds.
    limit: Duration,
    /// `mysql.query_timeout_secs`: the bound on each look.
    query_timeout: Duration,
    /// The server's flavour, learnt on first use (an endpoint does not change flavour).
    flavor: OnceLock<Flavor>,
}

impl VisibilityGate {
    /// The gate for the source `config` names, over `pool` (connections
    /// made with `opts`); `limit` bounds each wait (a healthy server takes
    /// milliseconds).
    pub fn new(config: &MysqlConfig, pool: Pool, opts: Opts, limit: Duration) -> Self {
        Self {
            pool,
            opts,
            fence: Fence::of(config),
            allow_ungated: config.visibility.allow_ungated_reads,
            limit,
            query_timeout: Duration::from_secs(config.query_timeout_secs),
            flavor: OnceLock::new(),
        }
    }

    /// The start-up check of the streamer: the gate this server gets, or a
    /// refusal with the ways out when it would have none (MySQL without
    /// GTIDs, no opt-in, and `binlog_order_commits=OFF` or no usable fence).
    pub async fn preflight(&self) -> Result<GateMode, SourceError> {
        let mut conn = super::connect::pooled(&self.pool).await?;
        if self.flavor(&mut conn).await? == Flavor::Mariadb {
            return Ok(GateMode::Snapshot);
        }
        let (gtid_mode, ordered) = mysql_commit_settings(&mut conn).await?;
        let mode = GateMode::for_mysql(&gtid_mode, self.allow_ungated);
        match mode {
            GateMode::Gtid | GateMode::Snapshot => {}
            GateMode::None => tracing::warn!(
                gtid_mode,
                "running WITHOUT a visibility gate (mysql.visibility.allow_ungated_reads = true): a batch re-read before MySQL's engine commit misses it, and the drug stays stale until its next change or a reconcile; every such batch is counted in drugsync_ungated_batches_total"
            ),
            GateMode::Fence => {
                if !ordered {
                    return Err(order_commits_off(&gtid_mode));
                }
                drop(conn);
                // A new session, as the server sets one up (init_connect included).
                let connect = async { mysql_async::Conn::new(self.opts.clone()).await.map_err(|e| SourceError::from_driver(e, "connect")) };
                let mut fresh = super::deadline::within(super::connect::CONNECT_TIMEOUT, "connecting for the fence check", connect).await?;
                let checked = self.fence.check(&mut fresh, self.limit + self.query_timeout).await;
                fresh.disconnect().await.ok();
                checked?;
            }
        }
        tracing::info!(gate = %mode, gtid_mode, "visibility gate");
        Ok(mode)
    }

    /// Returns once a re-read of the source sees every transaction up to
    /// `commit`, and which gate said so; errs (transient: the batch is
    /// retried) when the source has not committed it within the limit, and
    /// definitely when the gate cannot run (the error names the fix).
    pub async fn wait(&self, commit: &Position) -> Result<GateMode, SourceError> {
        let mut conn = super::connect::pooled(&self.pool).await?;
        match self.flavor(&mut conn).await? {
            Flavor::Mariadb => self.wait_for_snapshot(&mut conn, commit).await.map(|()| GateMode::Snapshot),
            Flavor::Mysql => self.wait_on_mysql(&mut conn, commit).await,
        }
    }

    async fn flavor(&self, conn: &mut mysql_async::Conn) -> Result<Flavor, SourceError> {
        if let Some(flavor) = self.flavor.get() {
            return Ok(*flavor);
        }
        let flavor = super::dialect::detect(conn).await?.flavor;
        Ok(*self.flavor.get_or_init(|| flavor))
    }

    /// MySQL: one statement reads the current `gtid_mode` and, only when it
    /// is `ON`, waits for the commit's GTID set (`IF` evaluates one branch);
    /// otherwise the fence, or nothing under the opt-in.
    async fn wait_on_mysql(&self, conn: &mut mysql_async::Conn, commit: &Position) -> Result<GateMode, SourceError> {
        // An empty set is executed already: a commit logged anonymously before
        // GTIDs were turned on is committed (gtid_mode reaches ON only once no
        // anonymous transaction is ongoing).
        let gtids = commit.gtid.as_deref().filter(|g| g.contains(':')).unwrap_or("");
        let query = "SELECT @@GLOBAL.gtid_mode, @@GLOBAL.binlog_order_commits, @@SESSION.sql_log_bin, \
                     IF(@@GLOBAL.gtid_mode = 'ON', WAIT_FOR_EXECUTED_GTID_SET(?, ?), NULL)";
        let look = async {
            match conn.exec_first::<(String, i64, i64, Option<i64>), _, _>(query, (gtids, self.limit.as_secs_f64())).await {
                Ok(row) => row.ok_or_else(|| SourceError::Connection(format!("{query} answered no row"))),
                // gtid_mode left ON between the statement's two reads of it: look again.
                Err(mysql_async::Error::Server(e)) if e.code == ER_GTID_MODE_OFF => {
                    Err(SourceError::Connection(format!("gtid_mode changed while waiting for {commit}: {}; retrying", e.message)))
                }
                Err(e) => Err(SourceError::from_driver(e, query)),
            }
        };
        let what = "waiting for the source to show the batch committed";
        let (gtid_mode, ordered, logged, waited) = super::deadline::within(self.limit + self.query_timeout, what, look).await?;
        match GateMode::for_mysql(&gtid_mode, self.allow_ungated) {
            GateMode::Gtid if waited == Some(0) => Ok(GateMode::Gtid),
            GateMode::Gtid | GateMode::Snapshot => Err(not_committed(commit, self.limit)),
            GateMode::None => Ok(GateMode::None),
            GateMode::Fence if ordered == 0 => Err(order_commits_off(&gtid_mode)),
            GateMode::Fence if logged == 0 => Err(self.fence.unlogged()),
            GateMode::Fence => {
                self.fence.commit(conn, self.limit + self.query_timeout).await?;
                Ok(GateMode::Fence)
            }
        }
    }

    /// MariaDB: polls a consistent snapshot's position on `conn` until it reaches `commit`.
    async fn wait_for_snapshot(&self, conn: &mut mysql_async::Conn, commit: &Position) -> Result<(), SourceError> {
        let started = Instant::now();
        loop {
            let look = async {
                let mut opts = TxOpts::default();
                opts.with_consistent_snapshot(true).with_readonly(true);
                let mut tx = conn.start_transaction(opts).await.map_err(|e| SourceError::from_driver(e, "consistent snapshot"))?;
                let snapshot = server::snapshot_position(&mut tx).await?;
                tx.rollback().await.map_err(|e| SourceError::from_driver(e, "consistent snapshot"))?;
                Ok(snapshot)
            };
            let what = "reading the source's committed position";
            let Some(snapshot) = super::deadline::within(self.query_timeout, what, look).await? else {
                return Err(SourceError::Misconfigured(
                    "MariaDB reported no consistent snapshot position (binlog_snapshot_file): is binary logging on?".into(),
                ));
            };
            match snapshot.try_cmp(commit) {
                Ok(order) if order.is_ge() => return Ok(()),
                Ok(_) => {}
                // Another lineage (the stream resumed by GTID on another server): nothing to compare.
                Err(_) => return Ok(()),
            }
            if started.elapsed() >= self.limit {
                return Err(not_committed(commit, self.limit));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// MySQL's `gtid_mode` and whether `binlog_order_commits` is on.
async fn mysql_commit_settings(conn: &mut mysql_async::Conn) -> Result<(String, bool), SourceError> {
    let query = "SELECT @@GLOBAL.gtid_mode, @@GLOBAL.binlog_order_commits";
    let row: Option<(String, i64)> = conn.query_first(query).await.map_err(|e| SourceError::from_driver(e, query))?;
    let (mode, ordered) = row.ok_or_else(|| SourceError::Connection(format!("{query} answered no row")))?;
    Ok((mode, ordered != 0))
}

/// Transient: the source logged `commit` but has not committed it within `limit`.
fn not_committed(commit: &Position, limit: Duration) -> SourceError {
    SourceError::Connection(format!("the source has not committed {commit} {}s after it was logged; retrying", limit.as_secs()))
}

/// The refusal when the fence would prove nothing.
fn order_commits_off(gtid_mode: &str) -> SourceError {
    SourceError::Misconfigured(format!(
        "binlog_order_commits is OFF on a MySQL without GTIDs (gtid_mode = {gtid_mode}): its engine commits may then happen out of binlog order, and drugsync's visibility fence proves nothing. Ways out: (1) binlog_order_commits = ON, its default (Aurora: in the DB cluster parameter group; MySQL: SET PERSIST binlog_order_commits = ON); (2) or turn GTIDs on: enforce_gtid_consistency = ON and gtid_mode = ON; (3) or set mysql.visibility.allow_ungated_reads = true to run without a gate (docs/operations.md: Visibility)"
    ))
}

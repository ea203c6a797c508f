//! The binlog tail: a replica connection that turns row events of tracked
//! tables into whole source transactions.
//!
//! # Resumption
//! The tailer starts from a [`Position`] at a transaction boundary and only
//! ever hands out whole transactions, each tagged with the position right
//! after its commit (XID, `COMMIT` query, or standalone statement). After a
//! transient failure it reconnects, with backoff, from the commit position
//! of the last transaction it delivered, so nothing is skipped and nothing
//! half-read is delivered.
//!
//! # Error handling
//! Connection loss, silence beyond three heartbeats and checksum mismatches
//! are retried forever with capped backoff. A purged position, DDL on a
//! tracked table, or missing column names stop the tailer with an operator
//! message; the transactions already delivered are still applied.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, Value};
use mysql_common::binlog::consts::BinlogChecksumAlg;
use mysql_common::binlog::value::BinlogValue;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::error::{ER_MASTER_FATAL_ERROR_READING_BINLOG, SourceError};
use super::events::{self, MariadbGtid};
use super::gtid::GtidState;
use super::server::{self, Flavor};
use crate::config::ResumeBy;
use crate::error::Classify;
use crate::position::Position;

/// One row image: column name -> value, in table order.
pub type RowImage = Vec<(String, Value)>;

/// One changed row of a tracked table. Inserts have only `after`, deletes
/// only `before`, updates both (the before image matters when a foreign key moves).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// Table name (within the configured schema).
    pub table: Arc<str>,
    /// Row before the change.
    pub before: Option<RowImage>,
    /// Row after the change.
    pub after: Option<RowImage>,
}

impl RowChange {
    /// The value of `column` in the before and after images (each when present).
    pub fn values_of<'a>(&'a self, column: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        [self.before.as_ref(), self.after.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(move |image| image.iter().find(|(name, _)| name.eq_ignore_ascii_case(column)).map(|(_, v)| v))
    }
}

/// A committed source transaction, reduced to its tracked row changes.
/// Transactions without tracked changes are still delivered (with no
/// changes) so the position can advance past them.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Tracked row changes in binlog order.
    pub changes: Vec<RowChange>,
    /// Position right after the commit.
    pub commit: Position,
    /// When the source committed it (binlog event time, Unix seconds): the
    /// replication lag is the time from here to the write in Redis.
    pub committed_at: u32,
    /// Set when this "transaction" is DDL on a tracked table (TRUNCATE, ALTER,
    /// DROP/CREATE, RENAME): rows may have changed without row events, so the
    /// documents it feeds must be reconciled before the position passes it.
    pub ddl: Option<TrackedDdl>,
}

/// DDL on a tracked table, as found in the binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedDdl {
    /// The tracked table the statement changes.
    pub table: String,
    /// The statement, shortened for messages.
    pub statement: String,
}

/// Settings of one binlog tail.
pub struct BinlogTailer {
    opts: Opts,
    server_id: u32,
    schema: String,
    tracked: HashSet<String>,
    heartbeat: Duration,
    resume_by: ResumeBy,
    hostname: String,
}

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl BinlogTailer {
    /// A tailer for `tracked` tables (lower-cased names) of `schema`.
    pub fn new(
        opts: Opts,
        server_id: u32,
        schema: &str,
        tracked: impl IntoIterator<Item = String>,
        heartbeat: Duration,
        resume_by: ResumeBy,
    ) -> Self {
        Self {
            resume_by,
            opts,
            server_id,
            schema: schema.to_owned(),
            tracked: tracked.into_iter().map(|t| t.to_ascii_lowercase()).collect(),
            heartbeat,
            hostname: String::new(),
        }
    }

    /// The host name to report when registering as a replica (shown by
    /// `SHOW REPLICAS`; preflight uses it to tell its own sessions from other replicas).
    pub fn reporting_as(mut self, hostname: String) -> Self {
        self.hostname = hostname;
        self
    }

    /// Streams transactions from `start` into `out` until cancelled, the
    /// receiver is dropped, or a definite error occurs.
    pub async fn run(self, start: Position, out: mpsc::Sender<Transaction>, cancel: CancellationToken) -> Result<(), SourceError> {
        let mut resume = start;
        let mut backoff = Duration::from_millis(500);
        let mut by_gtid = (self.resume_by == ResumeBy::Gtid && resume.gtid.is_some()) || resume.is_gtid_only();
        loop {
            let mut session = Session::new(&self, resume.clone(), by_gtid)?;
            let result = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = session.stream(&out) => r,
            };
            // Whatever was delivered before the failure is safe to skip on reconnect.
            let delivered_any = session.resume != resume;
            resume = session.resume;
            match result {
                Ok(()) => return Ok(()), // receiver gone: shutting down
                // The file is gone but the GTID state says where we are: continue by GTID.
                Err(SourceError::PositionUnavailable { message, .. }) if !by_gtid && resume.gtid.is_some() => {
                    tracing::warn!(position = %resume, server = %message, "binlog position unavailable; resuming by GTID state");
                    by_gtid = true;
                }
                Err(e) if e.is_transient() => {
                    if delivered_any {
                        backoff = Duration::from_millis(500);
                    }
                    tracing::warn!(error = %e, resume = %resume, retry_in_ms = backoff.as_millis() as u64, "binlog stream interrupted; reconnecting");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One connection's worth of streaming.
struct Session<'a> {
    tailer: &'a BinlogTailer,
    /// Commit position of the last delivered transaction (where to reconnect).
    resume: Position,
    /// File the stream is currently in.
    file: String,
    flavor: Flavor,
    /// Tracked changes of the open transaction.
    pending: Vec<RowChange>,
    /// Inside BEGIN ... COMMIT (or a MariaDB transactional GTID group): statements do not commit by themselves.
    in_transaction: bool,
    /// Transactions applied up to here (None when the server has no GTIDs or the start state is unknown).
    gtid_state: Option<GtidState>,
    /// Request the stream by GTID state instead of file:offset.
    by_gtid: bool,
}

impl<'a> Session<'a> {
    fn new(tailer: &'a BinlogTailer, resume: Position, by_gtid: bool) -> Result<Self, SourceError> {
        let file = resume.file.clone();
        let gtid_state = match &resume.gtid {
            Some(text) => Some(
                GtidState::parse(text)
                    .map_err(|e| SourceError::Decode { position: resume.to_string(), message: format!("stored GTID state: {e}") })?,
            ),
            None => None,
        };
        Ok(Self { tailer, resume, file, flavor: Flavor::Mysql, pending: Vec::new(), in_transaction: false, gtid_state, by_gtid })
    }

    async fn connect(&mut self) -> Result<BinlogStream, SourceError> {
        let mut conn = Conn::new(self.tailer.opts.clone()).await.map_err(|e| SourceError::from_driver(e, "connect"))?;
        self.flavor = server::flavor(&mut conn).await?;
        // Again on every reconnect, deliberately: after a failover the stream
        // lands on another server, whose settings nobody has checked yet.
        super::preflight::check_binlog_settings(&mut conn).await?;
        let heartbeat_ns = self.tailer.heartbeat.as_nanos() as u64;
        let mut setup = vec![format!("SET @master_heartbeat_period = {heartbeat_ns}")];
        if self.flavor == Flavor::Mariadb {
            // Without this MariaDB hides its GTID events and sends fake ones.
            setup.push("SET @mariadb_slave_capability = 4".into());
        }
        if self.gtid_state.is_none() && self.flavor == Flavor::Mariadb && !self.resume.is_gtid_only() {
            // Learn the GTID state at the start position so every stored position carries one.
            let state = server::gtid_state_at(&mut conn, &self.resume).await?;
            self.gtid_state = state.and_then(|s| GtidState::parse(&s).ok());
        }
        let by_gtid = self.by_gtid && self.gtid_state.is_some();
        if by_gtid && self.flavor == Flavor::Mariadb {
            let state = self.gtid_state.as_ref().map(ToString::to_string).unwrap_or_default();
            setup.push(format!("SET @slave_connect_state = '{state}'"));
        }
        for statement in &setup {
            conn.query_drop(statement).await.map_err(|e| SourceError::from_driver(e, statement))?;
        }
        let mut request = BinlogStreamRequest::new(self.tailer.server_id).with_hostname(self.tailer.hostname.as_bytes());
        if !by_gtid {
            request = request.with_filename(self.resume.file.as_bytes()).with_pos(self.resume.offset);
        } else if self.flavor == Flavor::Mysql {
            let sids = self
                .gtid_state
                .as_ref()
                .map(GtidState::mysql_sids)
                .transpose()
                .map_err(|e| SourceError::Decode { position: self.resume.to_string(), message: e })?;
            request = request.with_gtid().with_gtid_set(sids.unwrap_or_default());
        }
        tracing::info!(position = %self.resume, by_gtid, server_id = self.tailer.server_id, "binlog stream starting");
        conn.get_binlog_stream(request).await.map_err(|e| self.classify(e))
    }

    fn classify(&self, err: mysql_async::Error) -> SourceError {
        match err {
            mysql_async::Error::Server(ref s) if s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG => {
                SourceError::PositionUnavailable { position: self.resume.to_string(), message: s.message.clone() }
            }
            other => SourceError::from_driver(other, "binlog dump"),
        }
    }

    /// Reads until an error; `Ok` only when the receiver is gone.
    async fn stream(&mut self, out: &mpsc::Sender<Transaction>) -> Result<(), SourceError> {
        let mut stream = match tokio::time::timeout(super::connect::CONNECT_TIMEOUT, self.connect()).await {
            Ok(stream) => stream?,
            Err(_) => return Err(SourceError::Connection("binlog connection not established in time".into())),
        };
        let silence = self.tailer.heartbeat * 3;
        loop {
            let event = match tokio::time::timeout(silence, stream.next()).await {
                Err(_) => return Err(SourceError::Silent { secs: silence.as_secs() }),
                Ok(None) => return Err(SourceError::Connection("binlog stream closed by the server".into())),
                Ok(Some(Err(e))) => return Err(self.classify(e)),
                Ok(Some(Ok(event))) => event,
            };
            if let Some(tx) = self.handle(&stream, &event)? {
                let commit = tx.commit.clone();
                if out.send(tx).await.is_err() {
                    return Ok(());
                }
                self.resume = commit;
            }
        }
    }

    fn here(&self, event: &Event) -> Position {
        Position {
            file: self.file.clone(),
            offset: u64::from(event.header().log_pos()),
            gtid: self.gtid_state.as_ref().map(ToString::to_string),
        }
    }

    fn verify_checksum(&self, event: &Event) -> Result<(), SourceError> {
        let Some(stored) = event.checksum() else { return Ok(()) };
        let Ok(Some(alg @ BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) = event.fde().footer().get_checksum_alg() else {
            return Ok(());
        };
        if event.calc_checksum(alg) != u32::from_le_bytes(stored) {
            let offset = u64::from(event.header().log_pos()).saturating_sub(u64::from(event.header().event_size()));
            return Err(SourceError::Checksum { file: self.file.clone(), offset });
        }
        Ok(())
    }

    /// Processes one event; returns a transaction when this event commits one.
    fn handle(&mut self, stream: &BinlogStream, event: &Event) -> Result<Option<Transaction>, SourceError> {
        let header = event.header();
        let raw_type = header.event_type_raw();
        if raw_type == events::MARIADB_GTID_EVENT {
            self.verify_checksum(event)?;
            let gtid = MariadbGtid::parse(event.data())
                .ok_or_else(|| SourceError::Decode { position: self.resume.to_string(), message: "short MariaDB GTID event".into() })?;
            if let Some(state) = &mut self.gtid_state {
                state.observe_mariadb(gtid.domain, header.server_id(), gtid.seq);
            }
            self.begin(gtid.flags & events::MARIADB_FL_STANDALONE != 0);
            return Ok(None);
        }
        let data = match event.read_data() {
            Ok(Some(data)) => data,
            // Unknown to mysql_common: MariaDB annotate/checkpoint/GTID-list events, MySQL heartbeat v2.
            Ok(None) => return Ok(None),
            Err(e) => return Err(SourceError::Decode { position: self.here(event).to_string(), message: e.to_string() }),
        };
        if !matches!(data, EventData::RotateEvent(_) | EventData::FormatDescriptionEvent(_)) {
            self.verify_checksum(event)?;
        }
        match data {
            EventData::RotateEvent(rotate) => {
                let name = if header.log_pos() == 0 {
                    let raw = event.data();
                    let header_bytes = header_bytes(event);
                    events::rotate_file_name(&header_bytes, &raw[8.min(raw.len())..], &raw[..8.min(raw.len())])
                } else {
                    rotate.name_raw().to_vec()
                };
                self.file = String::from_utf8_lossy(&name).into_owned();
                Ok(None)
            }
            EventData::GtidEvent(gtid) => {
                let hex = hex::encode(gtid.sid());
                let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
                if let Some(state) = &mut self.gtid_state {
                    state.observe_mysql(&uuid, gtid.gno());
                }
                // MySQL follows its GTID with an explicit BEGIN for transactions.
                self.begin(true);
                Ok(None)
            }
            EventData::QueryEvent(query) => {
                let statement = query.query();
                let head = statement.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                match head.as_str() {
                    "BEGIN" => {
                        self.in_transaction = true;
                        Ok(None)
                    }
                    "ROLLBACK" => {
                        self.pending.clear();
                        self.in_transaction = false;
                        Ok(None)
                    }
                    "COMMIT" => Ok(Some(self.commit(event))),
                    _ => {
                        let tracked = self.tailer.tracked.iter().map(String::as_str);
                        if let Some(table) = events::ddl_touching(&statement, &query.schema(), &self.tailer.schema, tracked) {
                            tracing::warn!(table, statement = %super::error::truncate(&statement, 200), "DDL on a tracked table");
                            let ddl = TrackedDdl { table: table.to_owned(), statement: super::error::truncate(&statement, 200) };
                            let mut tx = self.commit(event);
                            tx.ddl = Some(ddl);
                            return Ok(Some(tx));
                        }
                        // A statement outside a transaction (DDL, non-transactional DML) commits by itself.
                        if self.in_transaction { Ok(None) } else { Ok(Some(self.commit(event))) }
                    }
                }
            }
            EventData::XidEvent(_) => Ok(Some(self.commit(event))),
            EventData::RowsEvent(rows) => {
                self.collect_rows(stream, &rows, event)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A GTID event opens a group: a transaction, or (standalone) a single statement.
    fn begin(&mut self, standalone: bool) {
        self.pending.clear();
        self.in_transaction = !standalone;
    }

    fn commit(&mut self, event: &Event) -> Transaction {
        let commit = self.here(event);
        self.in_transaction = false;
        Transaction { changes: std::mem::take(&mut self.pending), commit, committed_at: event.header().timestamp(), ddl: None }
    }

    fn collect_rows(&mut self, stream: &BinlogStream, rows: &RowsEventData<'_>, event: &Event) -> Result<(), SourceError> {
        let Some(tme) = stream.get_tme(rows.table_id()) else {
            return Err(SourceError::Decode {
                position: self.here(event).to_string(),
                message: format!("rows event for unknown table id {}", rows.table_id()),
            });
        };
        // Cheap skip: untracked schemas and tables are never decoded.
        if !tme.database_name().eq_ignore_ascii_case(&self.tailer.schema) {
            return Ok(());
        }
        let table = tme.table_name().to_ascii_lowercase();
        if !self.tailer.tracked.contains(&table) {
            return Ok(());
        }
        let table: Arc<str> = Arc::from(table.as_str());
        for row in rows.rows(tme) {
            let (before, after) =
                row.map_err(|e| SourceError::Decode { position: self.here(event).to_string(), message: e.to_string() })?;
            let before = before.map(|r| image(r, &table)).transpose()?;
            let after = after.map(|r| image(r, &table)).transpose()?;
            self.pending.push(RowChange { table: table.clone(), before, after });
        }
        Ok(())
    }
}

fn image(row: mysql_common::binlog::row::BinlogRow, table: &str) -> Result<RowImage, SourceError> {
    let columns = row.columns();
    let values = row.unwrap();
    columns
        .iter()
        .zip(values)
        .map(|(column, value)| {
            let name = column.name_str().into_owned();
            if name.starts_with('@') {
                return Err(SourceError::Misconfigured(format!(
                    "row events for `{table}` carry no column names: set binlog_row_metadata=FULL on the source"
                )));
            }
            let value = match value {
                BinlogValue::Value(v) => v,
                BinlogValue::Jsonb(j) => match serde_json::Value::try_from(j) {
                    Ok(json) => Value::Bytes(json.to_string().into_bytes()),
                    Err(_) => Value::NULL,
                },
                // Partial JSON updates only occur for JSON columns, which no FDB table has.
                BinlogValue::JsonDiff(_) => Value::NULL,
            };
            Ok((name, value))
        })
        .collect()
}

/// The 19 header bytes as they were on the wire, for checksum checks by hand.
fn header_bytes(event: &Event) -> [u8; 19] {
    let h = event.header();
    let mut out = [0u8; 19];
    out[0..4].copy_from_slice(&h.timestamp().to_le_bytes());
    out[4] = h.event_type_raw();
    out[5..9].copy_from_slice(&h.server_id().to_le_bytes());
    out[9..13].copy_from_slice(&h.event_size().to_le_bytes());
    out[13..17].copy_from_slice(&h.log_pos().to_le_bytes());
    out[17..19].copy_from_slice(&h.flags_raw().to_le_bytes());
    out
}

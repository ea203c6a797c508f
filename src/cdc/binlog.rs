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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::{Conn, Opts};
use mysql_common::packets::binlog_request::BinlogRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::decode::{DecodeSpec, Decoder, Transaction};
use super::dump::{DumpError, DumpRequest, DumpStream};
use crate::config::ResumeBy;
use crate::error::Classify;
use crate::mysql::error::{ER_MASTER_FATAL_ERROR_READING_BINLOG, SourceError};
use crate::mysql::gtid::GtidState;
use crate::mysql::server::{self, Flavor};
use crate::position::Position;

/// A transaction on its way to the apply loop. It holds its share of the
/// tailer's in-flight budget (one unit per routing value) until dropped,
/// which the apply loop does once it has merged it into a batch.
#[derive(Debug)]
pub struct InFlight {
    /// The transaction.
    pub transaction: Transaction,
    _budget: OwnedSemaphorePermit,
}

#[cfg(test)]
impl InFlight {
    /// A transaction that holds no share of a tail's budget (for tests that
    /// feed the apply loop without a binlog).
    pub(crate) fn unbudgeted(transaction: Transaction) -> Self {
        let budget = Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().expect("a fresh permit");
        Self { transaction, _budget: budget }
    }
}

/// Settings of one binlog tail.
pub struct BinlogTailer {
    opts: Opts,
    server_id: u32,
    spec: DecodeSpec,
    heartbeat: Duration,
    resume_by: ResumeBy,
    hostname: String,
    /// Routing values decoded but not yet merged into a batch: the tailer
    /// waits for budget rather than letting them pile up.
    budget: Arc<Semaphore>,
    budget_total: usize,
    /// Marked on everything the stream delivers.
    seen: crate::observe::health::Heartbeat,
}

impl BinlogTailer {
    /// A tailer for the tables of `spec`.
    pub fn new(opts: Opts, server_id: u32, spec: DecodeSpec, heartbeat: Duration, resume_by: ResumeBy) -> Self {
        let routes: HashMap<String, String> = spec.routes.iter().map(|(t, c)| (t.to_ascii_lowercase(), c.clone())).collect();
        let budget_total = spec.limit.max(1);
        Self {
            resume_by,
            opts,
            server_id,
            spec: DecodeSpec { routes, ..spec },
            heartbeat,
            hostname: String::new(),
            budget: Arc::new(Semaphore::new(budget_total)),
            budget_total,
            seen: crate::observe::health::Heartbeat::default(),
        }
    }

    /// At most `values` routing values decoded ahead of the apply loop
    /// (default: the decoder's per-transaction limit).
    pub fn with_budget(mut self, values: usize) -> Self {
        self.budget_total = values.clamp(1, Semaphore::MAX_PERMITS);
        self.budget = Arc::new(Semaphore::new(self.budget_total));
        self
    }

    /// The host name to report when registering as a replica (shown by
    /// `SHOW REPLICAS`; preflight uses it to tell its own sessions from other replicas).
    pub fn reporting_as(mut self, hostname: String) -> Self {
        self.hostname = hostname;
        self
    }

    /// Marks `heartbeat` whenever the stream delivers anything (an event or
    /// the server's heartbeat): what readiness checks.
    pub fn observed_by(mut self, heartbeat: crate::observe::health::Heartbeat) -> Self {
        self.seen = heartbeat;
        self
    }

    /// Streams transactions from `start` into `out` until cancelled, the
    /// receiver is dropped, or a definite error occurs.
    pub async fn run(self, start: Position, out: mpsc::Sender<InFlight>, cancel: CancellationToken) -> Result<(), SourceError> {
        let mut resume = start;
        let mut backoff = crate::backoff::Backoff::default();
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
                        backoff.reset();
                    }
                    let wait = backoff.step();
                    tracing::warn!(error = %e, resume = %resume, retry_in_ms = wait.as_millis() as u64, "binlog stream interrupted; reconnecting");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
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
    flavor: Flavor,
    /// Events -> transactions; new for every connection, since the server
    /// sends the table maps again from the resume position.
    decoder: Decoder,
    /// Request the stream by GTID state instead of file:offset.
    by_gtid: bool,
}

impl<'a> Session<'a> {
    fn new(tailer: &'a BinlogTailer, resume: Position, by_gtid: bool) -> Result<Self, SourceError> {
        let decoder = Decoder::new(tailer.spec.clone(), &resume)?;
        Ok(Self { tailer, resume, flavor: Flavor::Mysql, decoder, by_gtid })
    }

    async fn connect(&mut self) -> Result<DumpStream, SourceError> {
        let mut conn = Conn::new(self.tailer.opts.clone()).await.map_err(|e| SourceError::from_driver(e, "connect"))?;
        // Again on every reconnect, deliberately: after a failover the stream
        // lands on another server, whose version and settings nobody has checked yet.
        let dialect = crate::mysql::dialect::detect(&mut conn).await?;
        self.flavor = dialect.flavor;
        crate::mysql::preflight::check_binlog_settings(&mut conn).await?;
        let here = server::identity(&mut conn, self.flavor).await?;
        if !self.by_gtid && server::must_resume_by_gtid(&self.resume, &here)? {
            tracing::warn!(position = %self.resume, server = %here, "the stored position is another server's (failover?): resuming by its GTID state");
            self.by_gtid = true;
        }
        self.decoder.set_server(Some(here));
        let mut setup = dialect.heartbeat_statements(self.tailer.heartbeat.as_nanos() as u64);
        // MariaDB hides its GTID events (and sends fake ones) unless asked.
        setup.extend(dialect.stream_statements());
        if self.decoder.gtid_state().is_none() && self.flavor == Flavor::Mariadb && !self.resume.is_gtid_only() {
            // Learn the GTID state at the start position so every stored position carries one.
            let state = server::gtid_state_at(&mut conn, &self.resume).await?;
            self.decoder.set_gtid_state(state.and_then(|s| GtidState::parse(&s).ok()));
        }
        conn.disconnect().await.ok();
        let by_gtid = self.by_gtid && self.decoder.gtid_state().is_some();
        if by_gtid && self.flavor == Flavor::Mariadb {
            let state = self.decoder.gtid_state().map(ToString::to_string).unwrap_or_default();
            setup.push(format!("SET @slave_connect_state = '{state}'"));
        }
        let mut binlog = BinlogRequest::new(self.tailer.server_id);
        if !by_gtid {
            binlog = binlog.with_filename(self.resume.file.as_bytes()).with_pos(self.resume.offset);
        } else if self.flavor == Flavor::Mysql {
            let sids = self
                .decoder
                .gtid_state()
                .map(GtidState::mysql_sids)
                .transpose()
                .map_err(|e| SourceError::Decode { position: self.resume.to_string(), message: e })?;
            binlog = binlog.with_use_gtid(true).with_sids(sids.unwrap_or_default());
        }
        tracing::info!(position = %self.resume, by_gtid, server_id = self.tailer.server_id, "binlog stream starting");
        let request = DumpRequest { server_id: self.tailer.server_id, hostname: self.tailer.hostname.as_bytes(), setup: &setup, binlog };
        DumpStream::open(&self.tailer.opts, request).await.map_err(|e| self.classify(e))
    }

    fn classify(&self, err: DumpError) -> SourceError {
        match err {
            DumpError::Server(s) if s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG => {
                SourceError::PositionUnavailable { position: Box::new(self.resume.clone()), message: s.message }
            }
            DumpError::Server(s) => SourceError::from_driver(mysql_async::Error::Server(s), "binlog dump"),
            DumpError::Io { step, source } => SourceError::Connection(format!("replication connection, {step}: {source}")),
            DumpError::Tls(message) => SourceError::Tls(message),
            DumpError::Login(message) => SourceError::Misconfigured(message),
            DumpError::Protocol(message) | DumpError::Event(message) => SourceError::Decode { position: self.resume.to_string(), message },
        }
    }

    /// Reads until an error; `Ok` only when the receiver is gone.
    async fn stream(&mut self, out: &mpsc::Sender<InFlight>) -> Result<(), SourceError> {
        let mut stream = match tokio::time::timeout(crate::mysql::connect::CONNECT_TIMEOUT, self.connect()).await {
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
            self.tailer.seen.mark();
            if let Some(tx) = self.decoder.feed(&event)? {
                let commit = tx.commit.clone();
                let weight = tx.routing.len().clamp(1, self.tailer.budget_total) as u32;
                let Ok(budget) = self.tailer.budget.clone().acquire_many_owned(weight).await else { return Ok(()) };
                if out.send(InFlight { transaction: tx, _budget: budget }).await.is_err() {
                    return Ok(());
                }
                self.resume = commit;
            }
        }
    }
}

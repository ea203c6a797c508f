//! [`Decoder::feed`]'s event families, each in its own method: MariaDB's
//! own events (GTIDs, annotations, checkpoints, compressed events), file
//! and transaction boundaries (rotates, GTIDs, file headers), statements
//! (BEGIN, ROLLBACK, COMMIT, XA, DDL) and XA prepares. Row events and table
//! maps are `tables.rs`'s. Each is `#[inline]`: a module is its own codegen
//! unit, and these run for every event (without it the decoder read 30% fewer
//! rows a second in the 100,000-NDC bench).

use mysql_common::binlog::events::{Event, GtidEvent, PreviousGtidsEvent, QueryEvent, RotateEvent};

use super::checks::header_bytes;
use super::events::{self, MariadbGtid};
use super::{Decoder, MYSQL_HEARTBEAT_V2, Refusal, RoutingValues, Transaction, mariadb, mariadb_compressed, xa};
use crate::mysql::SourceError;
use crate::mysql::error::truncate;
use crate::mysql::gtid::GtidState;

impl Decoder {
    /// MariaDB's own event types (and MySQL's heartbeat v2), which the
    /// binlog crate does not parse: `Some(result)` when `raw_type` is one.
    #[inline]
    pub(super) fn feed_mariadb(&mut self, event: &Event, raw_type: u8) -> Result<Option<Option<Transaction>>, SourceError> {
        match raw_type {
            events::MARIADB_GTID_EVENT => {
                self.verify_checksum(event)?;
                let gtid = MariadbGtid::parse(event.data()).ok_or_else(|| self.decode_error(event, "short MariaDB GTID event"))?;
                if let Some(state) = &mut self.gtid_state {
                    state.observe_mariadb(gtid.domain, event.header().server_id(), gtid.seq);
                }
                self.begin(gtid.flags & events::MARIADB_FL_STANDALONE != 0);
                Ok(Some(None))
            }
            mariadb::ANNOTATE_ROWS => {
                self.verify_checksum(event)?;
                Ok(Some(None))
            }
            mariadb::BINLOG_CHECKPOINT | mariadb::GTID_LIST => {
                self.verify_checksum(event)?;
                Ok(Some(self.file_header_position(event)))
            }
            MYSQL_HEARTBEAT_V2 => Ok(Some(None)),
            t if mariadb_compressed::is_compressed(t) => {
                self.verify_checksum(event)?;
                let plain = mariadb_compressed::decompress(event)
                    .map_err(|e| self.decode_error(event, &format!("MariaDB compressed event (log_bin_compress=ON): {e}")))?;
                self.feed(&plain).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A rotate names the next file. The stream's first (fake) one, and
    /// one inside a transaction, only name it; a real one between
    /// transactions ends the file: a position marker.
    #[inline]
    pub(super) fn on_rotate(&mut self, rotate: &RotateEvent<'_>, event: &Event) -> Option<Transaction> {
        let header = event.header();
        let name = if header.log_pos() == 0 {
            let raw = event.data();
            events::rotate_file_name(&header_bytes(event), &raw[8.min(raw.len())..], &raw[..8.min(raw.len())])
        } else {
            rotate.name_raw().to_vec()
        };
        self.file = String::from_utf8_lossy(&name).into_owned();
        if header.log_pos() == 0 || self.in_transaction {
            return None; // the stream's first (fake) rotate only names the file
        }
        // A real rotate: table ids of the next file mean nothing here.
        self.tables.clear();
        self.at_file_start = true;
        Some(self.marker(rotate.position(), header.timestamp()))
    }

    /// A MySQL GTID: the GTID state moves, and a transaction begins (MySQL
    /// follows its GTID with an explicit BEGIN for transactions).
    #[inline]
    pub(super) fn on_mysql_gtid(&mut self, gtid: &GtidEvent) {
        let uuid = crate::mysql::gtid::uuid_text(gtid.sid());
        if let Some(state) = &mut self.gtid_state {
            state.observe_mysql(&uuid, gtid.tag().map(|t| t.as_str()), gtid.gno());
        }
        self.begin(true);
    }

    /// A file's executed GTID set. A stream that started without a GTID
    /// state (GTIDs were off when its position was stored, or it never had
    /// one) learns it here, at a file's start: every later position carries
    /// the executed set, so GTIDs turned on online (each step of gtid_mode
    /// rotates the binlog) are used from the first file that has them.
    #[inline]
    pub(super) fn on_previous_gtids(&mut self, previous: &PreviousGtidsEvent<'_>, event: &Event) -> Option<Transaction> {
        if self.gtid_state.is_none() {
            self.gtid_state = Some(GtidState::from_previous_gtids(previous));
        }
        self.file_header_position(event)
    }

    /// A statement: BEGIN, ROLLBACK (TO a savepoint or whole), COMMIT, XA,
    /// DDL on a tracked table (refused), or one outside a transaction,
    /// which commits by itself.
    #[inline]
    pub(super) fn on_statement(&mut self, query: &QueryEvent<'_>, event: &Event) -> Option<Transaction> {
        let statement = query.query();
        let head = statement.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        match head.as_str() {
            "BEGIN" => {
                self.at_file_start = false;
                self.in_transaction = true;
                None
            }
            // ROLLBACK TO [SAVEPOINT] s undoes part of the open transaction: the
            // server already dropped the undone rows from the transaction it logs,
            // and the changes before the savepoint still commit.
            "ROLLBACK" if statement.split_whitespace().nth(1).is_some_and(|w| w.eq_ignore_ascii_case("TO")) => None,
            "ROLLBACK" => {
                self.discard_pending();
                self.in_transaction = false;
                None
            }
            "COMMIT" => Some(self.commit(event)),
            "XA" => self.xa_statement(&statement, event),
            _ => {
                let tracked = self.tracked.iter().map(String::as_str);
                if let Some(table) = events::ddl_touching(&statement, &query.schema(), &self.spec.schema, tracked) {
                    tracing::warn!(table, statement = %truncate(&statement, 200), "DDL on a tracked table");
                    let refusal = Refusal::Statement { table: table.to_owned(), statement: truncate(&statement, 200) };
                    let mut tx = self.commit(event);
                    tx.refusal = Some(refusal);
                    return Some(tx);
                }
                // A statement outside a transaction (DDL, non-transactional DML) commits by itself.
                if self.in_transaction { None } else { Some(self.commit(event)) }
            }
        }
    }

    /// XA PREPARE: its rows stay invisible until XA COMMIT, so its routing
    /// values are held apart; ONE PHASE commits here.
    #[inline]
    pub(super) fn on_xa_prepare(&mut self, body: &[u8], event: &Event) -> Result<Option<Transaction>, SourceError> {
        let (xid, one_phase) = xa::Xid::from_prepare_event(body).ok_or_else(|| self.decode_error(event, "malformed XA_PREPARE event"))?;
        if one_phase {
            return Ok(Some(self.commit(event))); // XA COMMIT ... ONE PHASE: committed here
        }
        // Prepared, not committed: its rows are invisible until XA COMMIT.
        let routing = std::mem::replace(&mut self.pending, RoutingValues::with_limit(self.spec.limit));
        self.pending_rows = 0;
        self.in_transaction = false;
        self.prepared_xa.prepare(xid, routing);
        Ok(None)
    }

    /// `XA ...` statements: START opens a transaction (MySQL), COMMIT applies
    /// what its prepare held, ROLLBACK drops it. See [`xa`].
    #[inline]
    pub(super) fn xa_statement(&mut self, statement: &str, event: &Event) -> Option<Transaction> {
        match xa::XaStatement::recognise(statement)? {
            xa::XaStatement::Start => {
                self.at_file_start = false;
                self.in_transaction = true;
                None
            }
            xa::XaStatement::Commit(xid) => {
                let held = self.prepared_xa.take(&xid);
                let mut tx = self.commit(event);
                match held {
                    Some(routing) => tx.routing.merge(routing),
                    // Prepared before the stream's start: what it changed is unknown.
                    None => tx.refusal = Some(Refusal::XaWithoutPrepare { statement: truncate(statement, 200) }),
                }
                Some(tx)
            }
            xa::XaStatement::Rollback(xid) => {
                self.prepared_xa.take(&xid);
                (!self.in_transaction).then(|| self.commit(event))
            }
            xa::XaStatement::End | xa::XaStatement::Other => (!self.in_transaction).then(|| self.commit(event)),
        }
    }
}

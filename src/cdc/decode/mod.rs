//! The decode unit: binlog events in, whole transactions out, each with its
//! commit position and the routing values of its tracked rows. No network
//! inside, so every rule here is unit-tested from event bytes.
//!
//! # Memory
//! Row images are crossed as they arrive and only the routing column's
//! values are kept, de-duplicated, in a [`RoutingValues`] that gives up past
//! its limit. A transaction rewriting a million rows therefore holds at most
//! `limit` strings, never a million rows.
//!
//! # Events nobody may skip
//! Every event type is either understood (MariaDB's compressed events are
//! inflated first), known to be harmless, or treated like DDL on a tracked
//! table (`pipeline.on_lost_sync`: reconcile, or stop with the fix)
//! with an error saying what to change on the source: an event the decoder
//! cannot read could carry tracked changes, and skipping it silently would
//! leave documents stale with nothing to show for it.
//!
//! This file is over 400 lines on purpose: the decoder is one state machine
//! (transaction boundaries, table maps, XA, savepoints, what may be skipped),
//! and its rules read best side by side. What stands alone lives beside it:
//! column layouts, row images, routing values, XA, MariaDB's compression.

mod checks;
mod families;
pub mod layout;
pub mod mariadb_compressed;
pub mod routing;
pub mod rows;
mod tables;
pub mod xa;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mysql_common::binlog::events::{Event, EventData};

use super::events;
use crate::mysql::error::SourceError;
use crate::mysql::gtid::GtidState;
use crate::position::Position;
pub use layout::TableLayout;

pub use crate::mysql::refusal::Refusal;
pub use routing::RoutingValues;

/// MariaDB event types mysql_common does not know (see MariaDB's `log_event.h`).
mod mariadb {
    /// The statement behind the next rows events (informational).
    pub const ANNOTATE_ROWS: u8 = 160;
    /// Marks binlog files whose transactions are durably committed.
    pub const BINLOG_CHECKPOINT: u8 = 161;
    /// The GTID state at the start of a file.
    pub const GTID_LIST: u8 = 163;
}

/// MySQL 8.0.26+'s heartbeat event, unknown to mysql_common.
const MYSQL_HEARTBEAT_V2: u8 = 0x29;

/// What a decoder is told about the mapping.
#[derive(Debug, Clone)]
pub struct DecodeSpec {
    /// The source schema whose tables are tracked.
    pub schema: String,
    /// Tracked table (lower-cased) -> its routing column.
    pub routes: HashMap<String, String>,
    /// Most distinct routing values held for one transaction before it is
    /// treated as touching every document.
    pub limit: usize,
    /// The freshness canary's heartbeat table (lower-cased), if any: its
    /// `beat_ms` values are kept apart from routing, and its DDL is no
    /// concern of the documents.
    pub canary: Option<String>,
}

/// A committed source transaction, reduced to what routing needs.
/// Transactions without tracked changes are still produced so the position
/// can advance past them.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Routing values of its tracked rows (or "everything").
    pub routing: RoutingValues,
    /// Row images of tracked tables it carried (before and after count once per row).
    pub rows: u64,
    /// Position right after the commit.
    pub commit: Position,
    /// When the source committed it (binlog event time, Unix seconds).
    pub committed_at: u32,
    /// Set when this "transaction" is DDL on a tracked table (TRUNCATE, ALTER,
    /// DROP/CREATE, RENAME): rows may have changed without row events, so the
    /// documents it feeds must be reconciled before the position passes it.
    pub refusal: Option<Refusal>,
    /// The latest freshness-canary heartbeat it wrote (`beat_ms`, Unix ms).
    pub canary_beat_ms: Option<u64>,
}

/// A cached table map: its raw body (a later map with the same id but other
/// bytes is a new definition) and, for tracked tables, the layout.
struct KnownTable {
    body: Vec<u8>,
    layout: Option<Arc<TableLayout>>,
    /// The name of a tracked table whose map carries no column names: its
    /// rows cannot be routed, so a transaction that changes it is reconciled
    /// (see [`Decoder::lost`]).
    unnamed: Option<String>,
    /// The freshness canary's heartbeat table: `layout` routes by `beat_ms`.
    canary: bool,
}

/// See the module docs. Fed one event at a time by [`Decoder::feed`].
pub struct Decoder {
    spec: DecodeSpec,
    tracked: HashSet<String>,
    tables: HashMap<u64, KnownTable>,
    /// File the stream is in (from rotate events).
    file: String,
    /// The server streamed from (see [`Position::server`]), marked on every position.
    server: Option<String>,
    /// Transactions up to here (None when the server has no GTIDs or the start state is unknown).
    gtid_state: Option<GtidState>,
    /// Routing values of the open transaction.
    pending: RoutingValues,
    pending_rows: u64,
    /// The latest canary heartbeat of the open transaction.
    pending_beat: Option<u64>,
    /// Inside BEGIN ... COMMIT (or a transactional GTID group): statements do not commit by themselves.
    in_transaction: bool,
    /// End of the enclosing MySQL transaction payload: events inside one carry no position of their own.
    payload_end: Option<u32>,
    /// Bytes of inner events the open transaction payload declared and the
    /// stream has not delivered yet. The replication connection refuses a
    /// payload it cannot expand; this second guard tells any stream that
    /// hands over fewer events than declared (mysql_async's hands over none)
    /// from a transaction that changed nothing, and refuses it.
    payload_unseen: Option<u64>,
    /// Rotated into a new file and no transaction yet: its header events are positions to store.
    at_file_start: bool,
    /// Routing values of XA transactions prepared but not yet committed.
    prepared_xa: xa::PreparedXa,
    /// The open transaction held an event the decoder cannot read.
    pending_lost: Option<Refusal>,
}

impl Decoder {
    /// A decoder starting at `start`, a transaction boundary.
    pub fn new(spec: DecodeSpec, start: &Position) -> Result<Self, SourceError> {
        let gtid_state = match &start.gtid {
            Some(text) => Some(
                GtidState::parse(text)
                    .map_err(|e| SourceError::Decode { position: start.to_string(), message: format!("stored GTID state: {e}") })?,
            ),
            None => None,
        };
        let tracked = spec.routes.keys().map(|t| t.to_ascii_lowercase()).collect();
        let pending = RoutingValues::with_limit(spec.limit);
        Ok(Self {
            spec,
            tracked,
            tables: HashMap::new(),
            file: start.file.clone(),
            server: start.server.clone(),
            gtid_state,
            pending,
            pending_rows: 0,
            pending_beat: None,
            in_transaction: false,
            payload_end: None,
            payload_unseen: None,
            // Streaming from a file's start: its header events are positions too.
            at_file_start: !start.file.is_empty() && start.offset == 4,
            prepared_xa: xa::PreparedXa::default(),
            pending_lost: None,
        })
    }

    /// The GTID state after the last event fed.
    pub fn gtid_state(&self) -> Option<&GtidState> {
        self.gtid_state.as_ref()
    }

    /// Marks the positions from here on as `server`'s (the session asked it).
    pub fn set_server(&mut self, server: Option<String>) {
        self.server = server;
    }

    /// Sets the GTID state when the server told it apart from the stream
    /// (MariaDB: the state at a file position).
    pub fn set_gtid_state(&mut self, state: Option<GtidState>) {
        self.gtid_state = state;
    }

    /// Processes one event; returns a transaction when this event commits
    /// one. The events are handled by family (`families.rs`): MariaDB's own
    /// (GTIDs, annotations, checkpoints, compressed events), file and
    /// transaction boundaries (rotates, GTIDs, payloads, file headers),
    /// statements (BEGIN, ROLLBACK, COMMIT, XA, DDL) and row events.
    pub fn feed(&mut self, event: &Event) -> Result<Option<Transaction>, SourceError> {
        let raw_type = event.header().event_type_raw();
        self.account_payload(event)?;
        if let Some(handled) = self.feed_mariadb(event, raw_type)? {
            return Ok(handled);
        }
        let data = match event.read_data() {
            Ok(Some(data)) => data,
            Ok(None) => {
                tracing::warn!(event_type = raw_type, position = %self.here(event), "unknown binlog event type: it may have changed tracked rows");
                return Ok(self.lost(event, Refusal::UnknownEvent { event_type: raw_type }));
            }
            Err(e) => return Err(self.decode_error(event, &e.to_string())),
        };
        if !matches!(data, EventData::RotateEvent(_) | EventData::FormatDescriptionEvent(_)) {
            self.verify_checksum(event)?;
        }
        match data {
            EventData::RotateEvent(rotate) => Ok(self.on_rotate(&rotate, event)),
            EventData::GtidEvent(gtid) => {
                self.on_mysql_gtid(&gtid);
                Ok(None)
            }
            EventData::AnonymousGtidEvent(_) => {
                self.begin(true);
                Ok(None)
            }
            EventData::TransactionPayloadEvent(payload) => {
                // The events inside follow (mysql_async expands them) with log_pos 0.
                self.payload_end = Some(event.header().log_pos());
                self.payload_unseen = Some(payload.uncompressed_size()).filter(|&size| size > 0);
                Ok(None)
            }
            EventData::QueryEvent(query) => Ok(self.on_statement(&query, event)),
            EventData::XidEvent(_) => Ok(Some(self.commit(event))),
            EventData::XaPrepareLogEvent(body) => self.on_xa_prepare(&body, event),
            EventData::TableMapEvent(tme) => {
                self.remember_table(&tme, event)?;
                Ok(None)
            }
            EventData::RowsEvent(rows) => {
                self.route_rows(&rows, event)?;
                Ok(None)
            }
            EventData::PreviousGtidsEvent(previous) => Ok(self.on_previous_gtids(&previous, event)),
            EventData::FormatDescriptionEvent(_) => Ok(self.file_header_position(event)),
            EventData::StopEvent
            | EventData::HeartbeatEvent
            | EventData::IgnorableEvent(_)
            | EventData::RowsQueryEvent(_)
            | EventData::TransactionContextEvent(_)
            | EventData::ViewChangeEvent(_)
            | EventData::IntvarEvent(_)
            | EventData::RandEvent(_)
            | EventData::UserVarEvent(_)
            | EventData::BeginLoadQueryEvent(_)
            | EventData::ExecuteLoadQueryEvent(_) => Ok(None),
            EventData::IncidentEvent(_) => {
                tracing::warn!(position = %self.here(event), "the source logged an INCIDENT: it lost events");
                Ok(self.lost(event, Refusal::Incident))
            }
            other => Err(self.decode_error(
                event,
                &format!(
                    "binlog event {:?} is not supported (a pre-5.0 or LOAD DATA event): drugsync needs ROW binlog events",
                    event_name(&other)
                ),
            )),
        }
    }

    /// A position-only transaction (nothing tracked changed) at `offset` of the current file.
    fn marker(&self, offset: u64, committed_at: u32) -> Transaction {
        Transaction {
            routing: RoutingValues::with_limit(self.spec.limit),
            rows: 0,
            commit: Position { file: self.file.clone(), offset, server: self.server.clone(), gtid: self.gtid_text() },
            committed_at,
            refusal: None,
            canary_beat_ms: None,
        }
    }

    /// The end of a header event of a file the stream rotated into. The start
    /// of the next file and its header events are transaction boundaries too;
    /// storing them keeps an idle source's position off a file that will be
    /// purged (FDB changes weekly, Aurora keeps binlogs for hours) and lets
    /// "caught up" mean "at the server's end".
    fn file_header_position(&self, event: &Event) -> Option<Transaction> {
        let log_pos = event.header().log_pos();
        (self.at_file_start && !self.in_transaction && log_pos != 0).then(|| self.marker(u64::from(log_pos), event.header().timestamp()))
    }

    /// A GTID event opens a group: a transaction, or (standalone) a single statement.
    fn begin(&mut self, standalone: bool) {
        self.at_file_start = false;
        self.discard_pending();
        self.in_transaction = !standalone;
    }

    fn discard_pending(&mut self) {
        self.pending = RoutingValues::with_limit(self.spec.limit);
        self.pending_rows = 0;
        self.pending_lost = None;
        self.pending_beat = None;
    }

    /// An event after which the binlog cannot say what changed: the
    /// transaction it belongs to (or, outside one, the event itself) commits
    /// as one that must be reconciled (`pipeline.on_lost_sync`), never skipped.
    fn lost(&mut self, event: &Event, refusal: Refusal) -> Option<Transaction> {
        self.pending_lost = Some(refusal);
        (!self.in_transaction).then(|| self.commit(event))
    }

    fn commit(&mut self, event: &Event) -> Transaction {
        let commit = self.here(event);
        self.in_transaction = false;
        self.payload_end = None;
        let routing = std::mem::replace(&mut self.pending, RoutingValues::with_limit(self.spec.limit));
        let rows = std::mem::take(&mut self.pending_rows);
        let refusal = self.pending_lost.take();
        let canary_beat_ms = self.pending_beat.take();
        Transaction { routing, rows, commit, committed_at: event.header().timestamp(), refusal, canary_beat_ms }
    }

    /// The position right after `event` (inside a transaction payload: after the payload).
    fn here(&self, event: &Event) -> Position {
        let log_pos = match event.header().log_pos() {
            0 => self.payload_end.unwrap_or(0),
            pos => pos,
        };
        Position { file: self.file.clone(), offset: u64::from(log_pos), server: self.server.clone(), gtid: self.gtid_text() }
    }

    /// The GTID state as a position carries it; an empty set (GTIDs on, none
    /// executed yet) is no state to resume by.
    fn gtid_text(&self) -> Option<String> {
        self.gtid_state.as_ref().filter(|state| !state.is_empty()).map(ToString::to_string)
    }

    fn decode_error(&self, event: &Event, message: &str) -> SourceError {
        SourceError::Decode { position: self.here(event).to_string(), message: message.to_owned() }
    }
}

/// Reads a length-encoded integer at `data[*at]` and moves `*at` past it;
/// `None` when the bytes end first.
pub(crate) fn read_lenenc(data: &[u8], at: &mut usize) -> Option<u64> {
    let first = *data.get(*at)?;
    let width = match first {
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => {
            *at += 1;
            return Some(u64::from(first));
        }
    };
    let bytes = data.get(*at + 1..*at + 1 + width)?;
    *at += 1 + width;
    Some(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn event_name(data: &EventData<'_>) -> &'static str {
    match data {
        EventData::StartEventV3(_) => "START_EVENT_V3",
        EventData::LoadEvent(_) | EventData::NewLoadEvent(_) | EventData::CreateFileEvent(_) => "LOAD_EVENT",
        EventData::AppendBlockEvent(_) | EventData::ExecLoadEvent(_) | EventData::DeleteFileEvent(_) => "LOAD_EVENT",
        EventData::PreGaWriteRowsEvent(_) | EventData::PreGaUpdateRowsEvent(_) | EventData::PreGaDeleteRowsEvent(_) => "PRE_GA_ROWS_EVENT",
        _ => "UNKNOWN_EVENT",
    }
}

#[cfg(test)]
mod mysql8_fdb;
#[cfg(test)]
mod mysql_files;
#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

//! [`Decoder::feed`]'s table family: table maps (each tracked table's
//! layout, cached by table id) and row events (their routing values, or
//! the canary's heartbeats).

use std::sync::Arc;

use mysql_common::binlog::events::{Event, RowsEventData, TableMapEvent};

use super::layout::{LayoutError, TableLayout};
use super::{Decoder, KnownTable, Refusal, rows};
use crate::mysql::SourceError;

impl Decoder {
    /// Caches the layout of a tracked table; untracked ones are only noted.
    #[inline]
    pub(super) fn remember_table(&mut self, tme: &TableMapEvent<'_>, event: &Event) -> Result<(), SourceError> {
        if let Some(known) = self.tables.get(&tme.table_id())
            && known.body == event.data()
        {
            return Ok(());
        }
        let table = tme.table_name().to_ascii_lowercase();
        let (mut layout, mut unnamed) = (None, None);
        let in_schema = tme.database_name().eq_ignore_ascii_case(&self.spec.schema);
        let canary = in_schema && self.spec.canary.as_deref() == Some(table.as_str());
        if canary {
            // A canary table the decoder cannot read only leaves the canary blind: it says so.
            match TableLayout::build(tme, Arc::from(table.as_str()), crate::config::CANARY_COLUMN) {
                Ok(built) => layout = Some(Arc::new(built)),
                Err(e) => {
                    tracing::warn!(%table, error = ?e, "the freshness canary's table cannot be read from the binlog: heartbeats will not be seen")
                }
            }
        } else if in_schema && self.tracked.contains(&table) {
            let column = &self.spec.routes[&table];
            match TableLayout::build(tme, Arc::from(table.as_str()), column) {
                Ok(built) => layout = Some(Arc::new(built)),
                Err(LayoutError::Unnamed) => unnamed = Some(table),
                Err(LayoutError::Unusable(message)) => return Err(SourceError::Misconfigured(message)),
            }
        }
        self.tables.insert(tme.table_id(), KnownTable { body: event.data().to_vec(), layout, unnamed, canary });
        Ok(())
    }

    /// Routes a rows event of a known table: its routing values join the
    /// open transaction's (the canary's heartbeats are kept apart).
    #[inline]
    pub(super) fn route_rows(&mut self, rows: &RowsEventData<'_>, event: &Event) -> Result<(), SourceError> {
        let Some(known) = self.tables.get(&rows.table_id()) else {
            return Err(self.decode_error(event, &format!("rows event for unknown table id {}", rows.table_id())));
        };
        if let Some(table) = known.unnamed.clone() {
            // Written while binlog_row_metadata was MINIMAL (preflight refuses
            // that setting now, so this is an event from before it was fixed):
            // reconciled, like DDL, never guessed at and never a stop that
            // meets the same event again at every restart.
            tracing::warn!(%table, position = %self.here(event), "row event without column names (binlog_row_metadata=MINIMAL when it was written)");
            self.lost(event, Refusal::Unnamed { table });
            return Ok(());
        }
        // Cheap skip: untracked schemas and tables are never decoded.
        let Some(layout) = known.layout.clone() else { return Ok(()) };
        if known.canary {
            let beat = &mut self.pending_beat;
            rows::route_values(&layout, rows, |value| {
                if let Some(ms) = value.and_then(|v| v.parse::<u64>().ok()) {
                    *beat = Some(beat.map_or(ms, |b| b.max(ms)));
                }
            })
            .map_err(|e| self.decode_error(event, &format!("rows of the canary table `{}`: {e}", layout.table)))?;
            return Ok(());
        }
        let pending = &mut self.pending;
        let count = rows::route_values(&layout, rows, |value| {
            if let Some(value) = value {
                pending.insert(&layout.table, value);
            }
        })
        .map_err(|e| self.decode_error(event, &format!("rows of `{}`: {e}", layout.table)))?;
        self.pending_rows += count;
        Ok(())
    }
}

//! Real MySQL 8.0 to 9.x binlog files (tests/fixtures/mysql-binlogs, from
//! mysql_common's test data) through the decode unit: what Aurora MySQL 3
//! would send, with no MySQL server on the machine.
//!
//! The judge is written apart from the decoder: mysql_common's own full row
//! decoding (every column of every image, metadata walked the slow way) must
//! give exactly the values the decoder's width-stepping finds, for every
//! column of every table in every file that could route. Positions are the
//! `log_pos` of the files' own XID events.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use mysql_common::binlog::BinlogFile;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{Event, EventData, TableMapEvent, TransactionPayloadEvent};
use mysql_common::binlog::value::BinlogValue;

use super::*;
use crate::mysql::value::value_to_string;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql-binlogs").join(name)
}

/// The events of a file as mysql_async's binlog stream hands them over: a
/// TRANSACTION_PAYLOAD event, then the events inside it (no position of their own).
pub(super) fn events_as_streamed(name: &str) -> Vec<Event> {
    events_as_streamed_from(std::io::BufReader::new(std::fs::File::open(fixture(name)).unwrap()))
}

/// [`events_as_streamed`] of a binlog file's bytes.
fn events_as_streamed_from(file: impl std::io::BufRead) -> Vec<Event> {
    let mut reader = BinlogFile::new(BinlogVersion::Version4, file).unwrap();
    let mut events = Vec::new();
    while let Some(event) = reader.next() {
        let event = event.unwrap();
        let payload =
            (event.header().event_type_raw() == 40).then(|| event.read_event::<TransactionPayloadEvent<'_>>().unwrap().danger_decompress());
        events.push(event);
        if let Some(bytes) = payload {
            let mut cursor = std::io::Cursor::new(bytes);
            while let Some(inner) = reader.reader_mut().read_decompressed(&mut cursor).unwrap() {
                events.push(inner);
            }
        }
    }
    events
}

fn decoder_for(schema: &str, table: &str, column: &str, file: &str, gtid: Option<&str>) -> Decoder {
    let routes = HashMap::from([(table.to_owned(), column.to_owned())]);
    let mut start = Position::new(file, 4);
    start.gtid = gtid.map(str::to_owned);
    Decoder::new(DecodeSpec { schema: schema.into(), routes, limit: 100_000, canary: None }, &start).unwrap()
}

/// Every (schema, table, column names, column types) the file maps, in order of appearance.
fn tables_of(events: &[Event]) -> Vec<(String, String, Vec<String>, Vec<mysql_common::constants::ColumnType>)> {
    let mut seen = Vec::new();
    for event in events {
        if let Ok(Some(EventData::TableMapEvent(tme))) = event.read_data() {
            let extractor = mysql_common::binlog::events::OptionalMetaExtractor::new(tme.iter_optional_meta()).unwrap();
            let names: Vec<String> = extractor.iter_column_name().map(|n| n.unwrap().name().into_owned()).collect();
            let types = (0..tme.columns_count() as usize).map(|i| tme.get_column_type(i).unwrap().unwrap()).collect();
            let entry = (tme.database_name().into_owned(), tme.table_name().into_owned(), names, types);
            if !seen.contains(&entry) {
                seen.push(entry);
            }
        }
    }
    seen
}

/// The reference: every non-NULL value of `column` in every image of
/// `table`'s rows, decoded by mysql_common in full.
fn reference_values(events: &[Event], table: &str, column: usize) -> BTreeSet<String> {
    let mut maps: HashMap<u64, TableMapEvent<'static>> = HashMap::new();
    let mut out = BTreeSet::new();
    for event in events {
        match event.read_data() {
            Ok(Some(EventData::TableMapEvent(tme))) => {
                maps.insert(tme.table_id(), tme.into_owned());
            }
            Ok(Some(EventData::RowsEvent(rows))) => {
                let tme = &maps[&rows.table_id()];
                if tme.table_name() != table {
                    continue;
                }
                for row in rows.rows(tme) {
                    let (before, after) = row.unwrap();
                    for image in [before, after].into_iter().flatten() {
                        if let Some(BinlogValue::Value(value)) = value_of(&image, column)
                            && *value != mysql_common::Value::NULL
                        {
                            out.insert(value_to_string(value));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Table column `column` of an image, which holds only the columns present
/// in it; without names in the metadata mysql_common calls column i `@i`.
fn value_of(image: &mysql_common::binlog::row::BinlogRow, column: usize) -> Option<&BinlogValue<'_>> {
    let positional = format!("@{column}");
    let names: Vec<String> = image.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
    let at = names.iter().position(|n| *n == positional).or_else(|| {
        // Full metadata: names are real; the table map's order is the image's order.
        (names.len() > column && !names.iter().any(|n| n.starts_with('@'))).then_some(column)
    })?;
    image.as_ref(at)
}

/// What the decoder routes for `table`.`column` over the whole file, and every commit position.
fn decoded(events: &[Event], decoder: &mut Decoder, table: &str) -> Result<(BTreeSet<String>, Vec<u64>), SourceError> {
    let mut values = BTreeSet::new();
    let mut commits = Vec::new();
    for event in events {
        if let Some(tx) = decoder.feed(event)? {
            commits.push(tx.commit.offset);
            if let Some((_, found)) = tx.routing.tables().find(|(t, _)| *t == table) {
                values.extend(found.iter().cloned());
            }
        }
    }
    Ok((values, commits))
}

/// Files with full row metadata: every column that can route decodes to
/// exactly what mysql_common decodes, and the others are refused by rule.
#[test]
fn every_routable_column_of_real_mysql_files_decodes_like_mysql_common() {
    let mut compared = 0;
    for file in ["binlog-invisible-columns.000001", "mysql-enum-string-set.000001", "vector.binlog"] {
        let events = events_as_streamed(file);
        for (schema, table, names, types) in tables_of(&events) {
            assert_eq!(names.len(), types.len(), "{file}: full metadata carries every column name");
            for (i, name) in names.iter().enumerate() {
                let mut decoder = decoder_for(&schema, &table, name, file, None);
                match decoded(&events, &mut decoder, &table) {
                    Ok((values, _)) => {
                        let want = reference_values(&events, &table, i);
                        assert_eq!(values, want, "{file}: {table}.{name} ({:?})", types[i]);
                        compared += usize::from(!want.is_empty());
                    }
                    Err(e) => {
                        // Refused by rule (ENUM/SET/JSON/VECTOR... cannot route), never misread.
                        let message = e.to_string();
                        assert!(message.contains("route by another column"), "{file}: {table}.{name} ({:?}): {message}", types[i]);
                    }
                }
            }
        }
    }
    assert!(compared >= 10, "only {compared} columns had values to compare");
}

/// The transactions that must be reconciled (`Transaction::refusal`), by
/// commit offset, the table named and what the operator is told.
fn lost(events: &[Event], decoder: &mut Decoder) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter_map(|event| decoder.feed(event).unwrap())
        .filter_map(|tx| tx.refusal.map(|lost| (tx.commit.offset, lost.table().unwrap_or_default().to_owned(), lost.to_string())))
        .collect()
}

/// `binlog_row_metadata=MINIMAL` carries no column names: a transaction
/// that changes a tracked table is never guessed at, and is not a stop
/// either (the event stays in the binlog after the setting is fixed, so a
/// stop would meet it again at every restart): it is reconciled, like DDL,
/// with the setting to keep named.
#[test]
fn minimal_row_metadata_rows_of_a_tracked_table_are_reconciled_not_guessed() {
    let events = events_as_streamed("minimal_row_metadata.000001");
    let mut decoder = decoder_for("noria", "t1", "id", "minimal_row_metadata.000001", None);
    let lost = lost(&events, &mut decoder);
    assert_eq!(lost.len(), 1, "{lost:?}");
    let (commit, table, why) = &lost[0];
    assert_eq!((*commit, table.as_str()), (451, "t1"), "the transaction's commit, the table named");
    assert!(why.contains("binlog_row_metadata=FULL"), "{why}");
    // An untracked table in such a file costs nothing and stops nothing.
    let mut other = decoder_for("noria", "elsewhere", "id", "minimal_row_metadata.000001", None);
    assert_eq!(
        decoded(&events, &mut other, "elsewhere").unwrap().1,
        [126, 157, 451, 4],
        "header events, the commit, the next file's start"
    );
}

/// `binlog_transaction_compression=ON`: the transaction inside the zstd
/// payload commits at the payload's end (its inner events carry position 0).
#[test]
fn a_compressed_transaction_commits_at_the_end_of_its_payload() {
    let file = "transaction_compression.000001";
    let events = events_as_streamed(file);
    assert!(events.iter().any(|e| e.header().event_type_raw() == 40), "the file holds a TRANSACTION_PAYLOAD");
    // Its table map is MINIMAL (no names): the transaction, when it changes a
    // tracked table, is one to reconcile, committed at the payload's end...
    let mut tracked = decoder_for("test", "tb1", "a", file, None);
    let lost = lost(&events, &mut tracked);
    assert_eq!(lost.iter().map(|(commit, table, _)| (*commit, table.as_str())).collect::<Vec<_>>(), [(431, "tb1")]);
    // ...and an untracked one commits at the payload's end, 431, never 0.
    let mut decoder = decoder_for("test", "other", "a", file, None);
    let (_, commits) = decoded(&events, &mut decoder, "other").unwrap();
    assert!(commits.contains(&431), "{commits:?}");
    assert!(!commits.contains(&0), "{commits:?}");
}

/// mysql_async hands over an empty payload when it cannot decompress one
/// (`danger_decompress` answers an empty buffer): the transaction must be
/// refused at the next event of the stream, never read as one that changed
/// nothing while the position moves past it.
#[test]
fn a_transaction_payload_that_was_not_expanded_is_refused_not_skipped() {
    let file = "transaction_compression.000001";
    let events = events_as_streamed(file);
    let payload = events.iter().position(|e| e.header().event_type_raw() == 40).unwrap();
    let after = events[payload + 1..].iter().position(|e| e.header().log_pos() != 0).unwrap() + payload + 1;
    assert!(after > payload + 1, "the payload's inner events follow it");
    let empty: Vec<Event> = events[..=payload].iter().chain(&events[after..]).cloned().collect();
    for table in ["tb1", "other"] {
        let mut decoder = decoder_for("test", table, "a", file, None);
        let err = decoded(&empty, &mut decoder, table).expect_err("an unexpanded payload").to_string();
        assert!(err.contains("could not be decompressed") && err.contains("431"), "{err}");
    }
    // Expanded whole, the same file decodes (the sizes add up exactly).
    assert!(decoded(&events, &mut decoder_for("test", "other", "a", file, None), "other").is_ok());
}

/// MySQL GTIDs (8.0) and tagged GTIDs (8.4+): the state after each commit
/// names every transaction, tags included, and round-trips as text.
#[test]
fn gtid_states_follow_real_gtid_events_tags_included() {
    let file = "mysql-enum-string-set.000001";
    let events = events_as_streamed(file);
    let uuid = "93e95066-a2f4-11ec-9b69-9657f0ae95e2";
    let mut decoder = decoder_for("mysql", "elsewhere", "x", file, Some(&format!("{uuid}:1")));
    decoded(&events, &mut decoder, "elsewhere").unwrap();
    assert_eq!(decoder.gtid_state().unwrap().to_string(), format!("{uuid}:1-5"));

    let file = "binlog_transaction_with_GTID_TAG.000001";
    let events = events_as_streamed(file);
    let tagged = "55778904-0299-11f1-b1b8-4ef0c4956feb";
    let mut decoder = decoder_for("test", "elsewhere", "x", file, Some(&format!("{tagged}:1-2")));
    let (_, commits) = decoded(&events, &mut decoder, "elsewhere").unwrap();
    assert!(commits.contains(&541), "{commits:?}");
    let state = decoder.gtid_state().unwrap().to_string();
    assert!(state.starts_with(&format!("{tagged}:1-2:")), "the tag is kept apart from the untagged range: {state}");
    assert!(state.ends_with(":3"), "{state}");
    assert_eq!(crate::mysql::gtid::GtidState::parse(&state).unwrap().to_string(), state, "round trip");
    let sids = crate::mysql::gtid::GtidState::parse(&state).unwrap().mysql_sids().unwrap();
    assert_eq!(sids.len(), 2, "one Sid per (uuid, tag) for COM_BINLOG_DUMP_GTID");
}

/// `binlog_row_value_options=PARTIAL_JSON` (which needs a row image other
/// than FULL): a PARTIAL_UPDATE_ROWS event carries value options and JSON
/// diffs in its after images. The file was written with minimal metadata,
/// so the layout gets the names from its DDL (`t(id, json_col, name, ...)`).
/// Per column: either the decoder finds exactly what mysql_common decodes,
/// or some image really lacks the column and the decoder refuses with the fix.
#[test]
fn partial_json_updates_are_read_like_mysql_common_or_refused_by_rule() {
    let events = events_as_streamed("json.binlog.000001");
    assert!(events.iter().any(|e| e.header().event_type_raw() == 39), "the file holds a PARTIAL_UPDATE_ROWS event");
    let names: Vec<String> = ["id", "json_col", "name", "c4"].into_iter().map(String::from).collect();
    let (mut matched, mut refused) = (0, 0);
    for (i, name) in names.iter().enumerate().filter(|(i, _)| *i != 1) {
        let mut layout = None;
        let mut values = BTreeSet::new();
        let mut refusal = None;
        for event in &events {
            match event.read_data() {
                Ok(Some(EventData::TableMapEvent(tme))) => {
                    layout = Some(layout::TableLayout::build_named(&tme, std::sync::Arc::from("t"), name, &names).unwrap());
                }
                Ok(Some(EventData::RowsEvent(rows))) => {
                    if let Err(e) = rows::route_values(layout.as_ref().unwrap(), &rows, |v| values.extend(v)) {
                        refusal.get_or_insert(e.to_string());
                    }
                }
                _ => {}
            }
        }
        match refusal {
            None => {
                assert_eq!(values, reference_values(&events, "t", i), "t.{name}");
                matched += 1;
            }
            Some(message) => {
                assert!(message.contains("binlog_row_image=FULL"), "t.{name}: {message}");
                assert!(some_image_lacks(&events, i), "t.{name} was refused though every image has it");
                refused += 1;
            }
        }
    }
    eprintln!("partial JSON: {matched} columns matched, {refused} refused");
    assert_eq!(matched + refused, 3);
}

/// Whether some row image in `events` leaves out column `column`.
fn some_image_lacks(events: &[Event], column: usize) -> bool {
    let mut maps: HashMap<u64, TableMapEvent<'static>> = HashMap::new();
    for event in events {
        match event.read_data() {
            Ok(Some(EventData::TableMapEvent(tme))) => {
                maps.insert(tme.table_id(), tme.into_owned());
            }
            Ok(Some(EventData::RowsEvent(rows))) => {
                for row in rows.rows(&maps[&rows.table_id()]) {
                    let (before, after) = row.unwrap();
                    if [before, after].into_iter().flatten().any(|image| value_of(&image, column).is_none()) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

//! One FDB change as three servers log it: MariaDB 10.11 (v1 rows, its own
//! GTIDs), MySQL 8 / Aurora MySQL 3 (GTID, v2 rows), and MySQL 8 with
//! `binlog_transaction_compression=ON` (the same inside a zstd payload).
//! Each is handed to the decoder as mysql_async's stream would hand it
//! over (a payload, then its events), and all three must route to the same drugs. The synthetic MySQL events
//! are checked against a real MySQL 8.0.32 file so they are known to look
//! like a server's.

use std::collections::BTreeMap;

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{EventData, TransactionPayloadEvent};

use super::mysql_files::events_as_streamed;
use super::testkit::*;
use super::tests::{LBL_ID, NDC_ID, labeler_cols, ndc_cols, ndc_row};
use super::*;

const SID: [u8; 16] = [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62];
const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// One rows event of the change: table id, kind (0 write, 1 update, 2
/// delete, added to the flavour's write type), and its rows' images.
type RowsStep = (u64, u8, Vec<Vec<Vec<Cell>>>);

/// The change: a labeler renamed, an NDC moved to another formulation, one
/// NDC added and one removed, in one transaction.
fn change() -> Vec<RowsStep> {
    vec![
        (LBL_ID, 1, vec![vec![vec![Cell::Str("OLD LABS"), Cell::Str("B00001")], vec![Cell::Str("NEW LABS"), Cell::Str("B00001")]]]),
        (NDC_ID, 1, vec![vec![ndc_row("00000000001", 1), ndc_row("00000000001", 2)]]),
        (NDC_ID, 0, vec![vec![ndc_row("00000000009", 3)]]),
        (NDC_ID, 2, vec![vec![ndc_row("00000000003", 1)]]),
    ]
}

fn cols_of(table_id: u64) -> Vec<Col> {
    if table_id == NDC_ID { ndc_cols() } else { labeler_cols() }
}

fn maps(s: &mut Stream) -> Vec<Event> {
    vec![s.table_map(LBL_ID, "fdb", "rlblrid3", &labeler_cols()), s.table_map(NDC_ID, "fdb", "rndc14", &ndc_cols())]
}

/// Writes the events to a file, reads it back as mysql_async would stream
/// it, and decodes: the transactions and the decoder's final GTID state.
fn decode(s: &Stream, events: &[Event], gtid: &str) -> (Vec<Transaction>, String) {
    let streamed = s.as_streamed(events);
    let routes = std::collections::HashMap::from([("rndc14".to_owned(), "NDC".to_owned()), ("rlblrid3".to_owned(), "LBLRID".to_owned())]);
    let mut start = Position::new("binlog.000001", 4);
    start.gtid = Some(gtid.into());
    let mut decoder = Decoder::new(DecodeSpec { schema: "fdb".into(), routes, limit: 1000, canary: None }, &start).unwrap();
    let txs = streamed.iter().filter_map(|e| decoder.feed(e).unwrap()).filter(|t| t.rows > 0).collect();
    (txs, decoder.gtid_state().unwrap().to_string())
}

fn routing(tx: &Transaction) -> BTreeMap<String, Vec<String>> {
    tx.routing.tables().map(|(t, v)| (t.to_owned(), v.iter().cloned().collect())).collect()
}

#[test]
fn one_fdb_change_routes_alike_from_mariadb_mysql_8_and_a_compressed_mysql_8_transaction() {
    // MariaDB 10.11.
    let mut s = Stream::default();
    let mut events = vec![s.mariadb_gtid(0, 100, false), s.query("fdb", "BEGIN")];
    events.extend(maps(&mut s));
    for (table, kind, rows) in change() {
        events.push(s.rows_v1(23 + kind, table, &cols_of(table), &rows));
    }
    events.push(s.xid(7));
    let (mariadb, mariadb_gtid) = decode(&s, &events, "0-1-99");

    // MySQL 8 / Aurora MySQL 3.
    let mut s = Stream::default();
    let mut events = vec![s.mysql_gtid(SID, 7), s.query("fdb", "BEGIN")];
    events.extend(maps(&mut s));
    for (table, kind, rows) in change() {
        events.push(s.rows_v2(30 + kind, table, &cols_of(table), &rows));
    }
    let xid = s.xid(7);
    let plain_commit = u64::from(xid.header().log_pos());
    events.push(xid);
    let (mysql, mysql_gtid) = decode(&s, &events, &format!("{UUID}:1-6"));

    // The same, compressed.
    let mut s = Stream::default();
    let mut inner = vec![(EventType::QUERY_EVENT as u8, query_body("fdb", "BEGIN"))];
    inner.push((EventType::TABLE_MAP_EVENT as u8, table_map_body(LBL_ID, "fdb", "rlblrid3", &labeler_cols())));
    inner.push((EventType::TABLE_MAP_EVENT as u8, table_map_body(NDC_ID, "fdb", "rndc14", &ndc_cols())));
    for (table, kind, rows) in change() {
        inner.push((30 + kind, rows_v2_body(30 + kind, table, &cols_of(table), &rows)));
    }
    inner.push((EventType::XID_EVENT as u8, 7u64.to_le_bytes().to_vec()));
    let gtid = s.mysql_gtid(SID, 7);
    let payload = s.payload(&inner);
    let payload_end = u64::from(payload.header().log_pos());
    let (compressed, compressed_gtid) = decode(&s, &[gtid, payload], &format!("{UUID}:1-6"));

    let expected = BTreeMap::from([
        ("rlblrid3".to_owned(), vec!["B00001".to_owned()]),
        ("rndc14".to_owned(), vec!["00000000001".into(), "00000000003".into(), "00000000009".into()]),
    ]);
    for (flavour, txs) in [("MariaDB", &mariadb), ("MySQL 8", &mysql), ("MySQL 8 compressed", &compressed)] {
        assert_eq!(txs.len(), 1, "{flavour}: one transaction");
        assert_eq!(routing(&txs[0]), expected, "{flavour}");
        assert_eq!(txs[0].rows, 4, "{flavour}: rows of tracked tables");
    }
    assert_eq!(mysql[0].commit.offset, plain_commit, "MySQL commits at its XID");
    assert_eq!(compressed[0].commit.offset, payload_end, "compressed: at the payload's end");
    assert_eq!(mariadb_gtid, "0-1-100");
    assert_eq!((mysql_gtid.as_str(), compressed_gtid.as_str()), (format!("{UUID}:1-7").as_str(), format!("{UUID}:1-7").as_str()));
    assert_eq!(mysql[0].commit.gtid.as_deref(), Some(format!("{UUID}:1-7").as_str()), "the position carries the GTID set");
}

/// The synthetic MySQL events have the shape of a real server's: compared
/// with MySQL 8.0.32's compressed transaction (`transaction_compression.000001`).
#[test]
fn synthetic_mysql_8_events_look_like_a_real_servers() {
    let real = events_as_streamed("transaction_compression.000001");
    let mut s = Stream::default();
    let inner = vec![
        (EventType::QUERY_EVENT as u8, query_body("fdb", "BEGIN")),
        (EventType::TABLE_MAP_EVENT as u8, table_map_body(NDC_ID, "fdb", "rndc14", &ndc_cols())),
        (30, rows_v2_body(30, NDC_ID, &ndc_cols(), &[vec![ndc_row("00000000009", 3)]])),
        (EventType::XID_EVENT as u8, 7u64.to_le_bytes().to_vec()),
    ];
    let events = [s.mysql_gtid(SID, 1), s.payload(&inner)];
    let ours = s.as_streamed(&events);

    let shape = |events: &[Event]| -> Vec<(u8, bool)> {
        // (type, carries its own position): a payload's inner events carry none.
        events
            .iter()
            .filter(|e| e.header().event_type_raw() != 15)
            .map(|e| (e.header().event_type_raw(), e.header().log_pos() != 0))
            .collect()
    };
    let real_shape: Vec<(u8, bool)> = shape(&real).into_iter().filter(|(t, _)| ![35, 4].contains(t)).collect();
    let our_shape: Vec<(u8, bool)> = shape(&ours).into_iter().map(|(t, p)| (if t == 33 { 34 } else { t }, p)).collect();
    assert_eq!(our_shape, real_shape, "GTID, payload, then BEGIN, TABLE_MAP, WRITE_ROWS v2, XID inside (the real one is anonymous)");

    let payload_of = |events: &[Event]| {
        let event = events.iter().find(|e| e.header().event_type_raw() == 40).unwrap();
        let tpe = event.read_event::<TransactionPayloadEvent<'_>>().unwrap();
        (tpe.algorithm(), tpe.uncompressed_size() > 0)
    };
    assert_eq!(payload_of(&ours), payload_of(&real), "zstd with its uncompressed size");

    let rows_of = |events: &[Event]| {
        let event = events.iter().find(|e| e.header().event_type_raw() == 30).unwrap();
        assert!(matches!(event.read_data(), Ok(Some(EventData::RowsEvent(_)))), "a rows event mysql_common reads");
        // The v2 post-header: table id (6), flags (2), extra row info length (2).
        let d = event.data();
        (u16::from_le_bytes([d[6], d[7]]), u16::from_le_bytes([d[8], d[9]]))
    };
    assert_eq!(rows_of(&ours), rows_of(&real), "v2 rows: statement end, no extra row info");
}

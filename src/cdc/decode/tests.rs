//! The decode unit from event bytes: positions, GTIDs, transaction
//! boundaries, routing values, limits, checksums and refusals.
//!
//! Over 400 lines because it is one test per decoder rule, each short;
//! the event builders they share are in `testkit.rs`.

use std::collections::{BTreeSet, HashMap};

use super::testkit::*;
use super::*;

pub(super) const NDC_ID: u64 = 70;
pub(super) const LBL_ID: u64 = 71;
const OTHER_ID: u64 = 72;

/// rndc14 as FDB lays it out, trimmed: routing column NDC first, GCN_SEQNO, and filler.
pub(super) fn ndc_cols() -> Vec<Col> {
    vec![
        char_col("NDC", 11),
        char_col("LBLRID", 6),
        mediumint_col("GCN_SEQNO"),
        decimal_col("PS"),
        varchar_col("LN", 30),
        date_col("OBSDTEC"),
    ]
}

/// rlblrid3 with its routing column second, so values before it must be stepped over.
pub(super) fn labeler_cols() -> Vec<Col> {
    vec![varchar_col("MFG", 30), char_col("LBLRID", 6)]
}

pub(super) fn ndc_row(ndc: &'static str, gcn: u32) -> Vec<Cell> {
    vec![Cell::Str(ndc), Cell::Str("A00001"), Cell::Int24(gcn), Cell::Dec([0x80, 0, 0, 1, 0, 0]), Cell::Str("DRUG"), Cell::Date(0, 0, 0)]
}

pub(super) fn decoder(limit: usize) -> Decoder {
    let routes = HashMap::from([("rndc14".to_owned(), "NDC".to_owned()), ("rlblrid3".to_owned(), "LBLRID".to_owned())]);
    Decoder::new(DecodeSpec { schema: "fdb".into(), routes, limit, canary: None }, &Position::new("binlog.000001", 4)).unwrap()
}

/// Feeds every event, returning the transactions produced.
pub(super) fn feed_all(decoder: &mut Decoder, events: &[Event]) -> Vec<Transaction> {
    events.iter().filter_map(|e| decoder.feed(e).expect("decodes")).collect()
}

pub(super) fn values(tx: &Transaction, table: &str) -> Vec<String> {
    tx.routing.tables().find(|(t, _)| *t == table).map(|(_, v)| v.iter().cloned().collect()).unwrap_or_default()
}

#[test]
fn a_transaction_yields_its_routing_values_at_the_xid() {
    let mut s = Stream::default();
    let (ndc, lbl) = (ndc_cols(), labeler_cols());
    let events = vec![
        s.rotate("binlog.000001", true),
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)], vec![ndc_row("00000000002", 2)]]),
        s.rows_v1(24, NDC_ID, &ndc, &[vec![ndc_row("00000000003", 1), ndc_row("00000000004", 1)]]),
        s.rows_v1(25, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.table_map(LBL_ID, "fdb", "rlblrid3", &lbl),
        s.rows_v1(24, LBL_ID, &lbl, &[vec![vec![Cell::Str("OLD NAME"), Cell::Str("B00001")], vec![Cell::Str("NEW"), Cell::Str("B00001")]]]),
        s.xid(9),
    ];
    let commit_at = s.pos;
    let mut d = decoder(100);
    let txs = feed_all(&mut d, &events);
    assert_eq!(txs.len(), 1);
    let tx = &txs[0];
    assert_eq!(values(tx, "rndc14"), ["00000000001", "00000000002", "00000000003", "00000000004"], "before and after images, once each");
    assert_eq!(values(tx, "rlblrid3"), ["B00001"]);
    assert_eq!(tx.rows, 5);
    assert_eq!(tx.commit, Position::new("binlog.000001", u64::from(commit_at)));
    assert_eq!(tx.committed_at, s.timestamp);
    assert!(tx.refusal.is_none());
}

#[test]
fn untracked_tables_and_schemas_and_null_keys_route_nothing() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let mut null_key = ndc_row("x", 1);
    null_key[0] = Cell::Null;
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.table_map(OTHER_ID, "other", "rndc14", &ndc),
        s.rows_v1(23, OTHER_ID, &ndc, &[vec![ndc_row("00000000009", 1)]]),
        s.table_map(OTHER_ID + 1, "fdb", "rndc14_copy", &ndc),
        s.rows_v1(23, OTHER_ID + 1, &ndc, &[vec![ndc_row("00000000008", 1)]]),
        s.table_map(NDC_ID, "fdb", "RNDC14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![null_key]]),
        s.xid(1),
    ];
    let txs = feed_all(&mut decoder(100), &events);
    assert_eq!(txs.len(), 1, "a transaction with nothing tracked still moves the position");
    assert!(txs[0].routing.is_empty());
    assert_eq!(txs[0].rows, 1, "only the tracked table's row is counted");
}

#[test]
fn a_big_transaction_split_over_many_row_events_is_held_as_values_only() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let keys: Vec<&'static str> = (0..50).map(|i| &*Box::leak(format!("{i:011}").into_boxed_str())).collect();
    let mut events = vec![s.query("fdb", "BEGIN"), s.table_map(NDC_ID, "fdb", "rndc14", &ndc)];
    // 400 events of 50 deletes and 50 inserts of the same keys: 40,000 rows, 50 keys.
    for _ in 0..200 {
        events.push(s.rows_v1(25, NDC_ID, &ndc, &keys.iter().map(|k| vec![ndc_row(k, 1)]).collect::<Vec<_>>()));
        events.push(s.rows_v1(23, NDC_ID, &ndc, &keys.iter().map(|k| vec![ndc_row(k, 2)]).collect::<Vec<_>>()));
    }
    events.push(s.xid(2));
    let txs = feed_all(&mut decoder(50), &events);
    assert_eq!(txs[0].rows, 20_000);
    assert_eq!(txs[0].routing.len(), 50);
    assert!(!txs[0].routing.is_everything(), "50 distinct keys fit a limit of 50");
    let expected: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(values(&txs[0], "rndc14").into_iter().collect::<BTreeSet<_>>(), expected);

    let txs = feed_all(&mut decoder(49), &events);
    assert!(txs[0].routing.is_everything(), "one key more than the limit: the transaction stands for everything");
    assert_eq!(txs[0].routing.tables().count(), 0, "and holds no values");
}

#[test]
fn rollback_discards_and_the_next_transaction_starts_clean() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.query("fdb", "ROLLBACK"),
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000002", 1)]]),
        s.xid(3),
    ];
    let txs = feed_all(&mut decoder(100), &events);
    assert_eq!(txs.len(), 1);
    assert_eq!(values(&txs[0], "rndc14"), ["00000000002"]);
}

#[test]
fn rollback_to_a_savepoint_keeps_the_changes_before_it() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.query("fdb", "SAVEPOINT `s1`"),
        s.query("fdb", "ROLLBACK TO `s1`"),
        s.query("fdb", "rollback to savepoint s1"),
        s.xid(3),
    ];
    let txs = feed_all(&mut decoder(100), &events);
    assert_eq!(values(&txs[0], "rndc14"), ["00000000001"]);
}

/// An XA_PREPARE event body for `'name'` (MariaDB and MySQL lay it out alike).
fn xa_prepare_body(name: &str, one_phase: bool) -> Vec<u8> {
    let mut body = vec![u8::from(one_phase)];
    body.extend(1u32.to_le_bytes());
    body.extend((name.len() as u32).to_le_bytes());
    body.extend(0u32.to_le_bytes());
    body.extend(name.as_bytes());
    body
}

#[test]
fn xa_rows_are_held_from_prepare_to_commit_and_dropped_at_rollback() {
    let mut s = Stream::default();
    let (ndc, lbl) = (ndc_cols(), labeler_cols());
    let mut d = decoder(100);
    // MariaDB's layout: GTID, rows, XA END, XA_PREPARE; later XA COMMIT on its own.
    let prepared = feed_all(
        &mut d,
        &[
            s.mariadb_gtid(0, 1, false),
            s.table_map(LBL_ID, "fdb", "rlblrid3", &lbl),
            s.rows_v1(24, LBL_ID, &lbl, &[vec![vec![Cell::Str("OLD"), Cell::Str("X00001")], vec![Cell::Str("XA"), Cell::Str("X00001")]]]),
            s.query("fdb", "XA END X'7131',X'',1"),
            s.raw(38, &xa_prepare_body("q1", false)),
        ],
    );
    assert!(prepared.is_empty(), "nothing is routed while the rows are invisible");
    // Other transactions pass meanwhile.
    let between = feed_all(
        &mut d,
        &[
            s.mariadb_gtid(0, 2, false),
            s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
            s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000009", 1)]]),
            s.xid(2),
        ],
    );
    assert_eq!(values(&between[0], "rndc14"), ["00000000009"]);
    assert!(values(&between[0], "rlblrid3").is_empty());
    let committed = feed_all(&mut d, &[s.mariadb_gtid(0, 3, true), s.query("fdb", "XA COMMIT X'7131',X'',1")]);
    assert_eq!(values(&committed[0], "rlblrid3"), ["X00001"], "routed at XA COMMIT, when the rows become visible");
    assert!(committed[0].refusal.is_none());

    // A rolled-back XA routes nothing; a commit the stream never saw prepared is a full diff.
    let rolled_back = feed_all(
        &mut d,
        &[
            s.mariadb_gtid(0, 4, false),
            s.table_map(LBL_ID, "fdb", "rlblrid3", &lbl),
            s.rows_v1(23, LBL_ID, &lbl, &[vec![vec![Cell::Str("NEW"), Cell::Str("X00002")]]]),
            s.query("fdb", "XA END 'q2'"),
            s.raw(38, &xa_prepare_body("q2", false)),
            s.mariadb_gtid(0, 5, true),
            s.query("fdb", "XA ROLLBACK X'7132',X'',1"),
        ],
    );
    assert_eq!(rolled_back.len(), 1);
    assert!(rolled_back[0].routing.is_empty() && rolled_back[0].refusal.is_none());
    let unknown = feed_all(&mut d, &[s.mariadb_gtid(0, 6, true), s.query("fdb", "XA COMMIT 'before-start'")]);
    assert!(unknown[0].refusal.is_some(), "an unknown XA commit is reconciled, not ignored");
}

#[test]
fn mysql_xa_start_opens_the_transaction_and_one_phase_commits_at_once() {
    let mut s = Stream::default();
    let lbl = labeler_cols();
    let mut d = decoder(100);
    let txs = feed_all(
        &mut d,
        &[
            s.query("fdb", "XA START X'7133',X'',1"),
            s.table_map(LBL_ID, "fdb", "rlblrid3", &lbl),
            s.rows_v1(23, LBL_ID, &lbl, &[vec![vec![Cell::Str("ONE"), Cell::Str("X00003")]]]),
            s.query("fdb", "XA END X'7133',X'',1"),
            s.raw(38, &xa_prepare_body("q3", true)),
        ],
    );
    assert_eq!(txs.len(), 1, "nothing committed at XA START or XA END");
    assert_eq!(values(&txs[0], "rlblrid3"), ["X00003"]);
}

#[test]
fn rotate_sets_the_file_and_heartbeats_change_nothing() {
    let mut s = Stream::default();
    let events = vec![s.rotate("mysql-bin-changelog.000123", true), s.heartbeat(), s.query("fdb", "BEGIN"), s.heartbeat(), s.xid(4)];
    let commit_at = s.pos;
    let txs = feed_all(&mut decoder(10), &events);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].commit, Position::new("mysql-bin-changelog.000123", u64::from(commit_at)));
    let mut s = Stream::default();
    let events = vec![s.rotate("binlog.000001", true), s.query("fdb", "BEGIN"), s.xid(1), s.rotate("binlog.000002", false)];
    let mut d = decoder(10);
    let txs = feed_all(&mut d, &events);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[1].commit, Position::new("binlog.000002", 4), "a real rotate is a position to store: the next file's start");
    assert!(txs[1].routing.is_empty());
    // The new file's header events (MariaDB: GTID list, binlog checkpoint) move it on.
    let mut s2 = Stream::default();
    let header_end = s2.pos + 19 + 8 + 4;
    let header = feed_all(&mut d, &[s2.raw(163, &[0u8; 8])]);
    assert_eq!(header.iter().map(|t| t.commit.clone()).collect::<Vec<_>>(), [Position::new("binlog.000002", u64::from(header_end))]);
    let tx = feed_all(&mut d, &[s2.query("fdb", "BEGIN"), s2.xid(2)]);
    assert_eq!(tx[0].commit.file, "binlog.000002", "a real rotate moves to the next file");
}

#[test]
fn a_table_id_reused_after_rotate_is_mapped_again() {
    let mut s = Stream::default();
    let (ndc, lbl) = (ndc_cols(), labeler_cols());
    let mut d = decoder(10);
    feed_all(&mut d, &[s.query("fdb", "BEGIN"), s.table_map(NDC_ID, "fdb", "rndc14", &ndc), s.xid(1), s.rotate("binlog.000002", false)]);
    // Same id, another table after the rotate (a restarted server numbers from 1 again).
    let txs = feed_all(
        &mut d,
        &[
            s.query("fdb", "BEGIN"),
            s.table_map(NDC_ID, "fdb", "rlblrid3", &lbl),
            s.rows_v1(23, NDC_ID, &lbl, &[vec![vec![Cell::Str("M"), Cell::Str("C00001")]]]),
            s.xid(2),
        ],
    );
    assert_eq!(values(&txs[0], "rlblrid3"), ["C00001"]);
    // A rows event whose table map never came is refused, not skipped.
    let err = d.feed(&s.rows_v1(23, 999, &lbl, &[vec![vec![Cell::Str("M"), Cell::Str("C00001")]]])).unwrap_err();
    assert!(err.to_string().contains("unknown table id 999"), "{err}");
}

#[test]
fn mysql_gtids_are_tracked_into_the_commit_position() {
    let mut s = Stream::default();
    let sid = [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62];
    let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let mut d = Decoder::new(
        DecodeSpec { schema: "fdb".into(), routes: HashMap::new(), limit: 10, canary: None },
        &Position { file: "binlog.000001".into(), offset: 4, server: None, gtid: Some(format!("{uuid}:1-5")) },
    )
    .unwrap();
    let txs = feed_all(&mut d, &[s.mysql_gtid(sid, 6), s.query("fdb", "BEGIN"), s.xid(6)]);
    assert_eq!(txs[0].commit.gtid.as_deref(), Some(&*format!("{uuid}:1-6")));
}

#[test]
fn mariadb_gtids_open_groups_and_standalone_ddl_commits_by_itself() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let mut d = Decoder::new(
        DecodeSpec { schema: "fdb".into(), routes: HashMap::from([("rndc14".into(), "NDC".into())]), limit: 10, canary: None },
        &Position { file: "binlog.000001".into(), offset: 4, server: None, gtid: Some("0-1-10".into()) },
    )
    .unwrap();
    let txs = feed_all(
        &mut d,
        &[
            s.mariadb_gtid(0, 11, false),
            s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
            s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
            s.xid(11),
            s.mariadb_gtid(0, 12, true),
            s.query("fdb", "TRUNCATE TABLE rndc14"),
            s.mariadb_gtid(0, 13, true),
            s.query("fdb", "CREATE TABLE unrelated (x int)"),
        ],
    );
    assert_eq!(txs.len(), 3);
    assert_eq!(txs[0].commit.gtid.as_deref(), Some("0-1-11"));
    assert_eq!(values(&txs[0], "rndc14"), ["00000000001"]);
    assert_eq!(txs[1].refusal.as_ref().and_then(|d| d.table()), Some("rndc14"));
    assert_eq!(txs[1].commit.gtid.as_deref(), Some("0-1-12"));
    assert!(txs[2].refusal.is_none() && txs[2].routing.is_empty());
}

#[test]
fn a_corrupted_event_fails_its_checksum() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let rows = s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]);
    let mut d = decoder(10);
    feed_all(&mut d, &[s.query("fdb", "BEGIN"), s.table_map(NDC_ID, "fdb", "rndc14", &ndc)]);
    let err = d.feed(&s.corrupt(&rows)).unwrap_err();
    assert!(matches!(err, SourceError::Checksum { .. }), "{err}");
    assert!(crate::error::Classify::is_transient(&err), "re-read, not stop");
    assert!(d.feed(&rows).is_ok(), "the intact event decodes");
}

#[test]
fn events_that_cannot_be_read_are_reconciled_or_refused_never_skipped() {
    let mut s = Stream::default();
    let compressed = s.raw(166, &[0u8; 12]);
    let err = decoder(10).feed(&compressed).unwrap_err();
    assert!(err.to_string().contains("MariaDB compressed event"), "a broken compressed event is refused: {err}");
    // Outside a transaction an unreadable event commits at once as one to reconcile.
    let unknown = s.raw(200, &[0u8; 4]);
    let tx = decoder(10).feed(&unknown).unwrap().expect("reconciled, not skipped");
    assert_eq!(tx.refusal, Some(Refusal::UnknownEvent { event_type: 200 }), "{tx:?}");
    let incident = s.raw(26, &[1, 0, 0]);
    let tx = decoder(10).feed(&incident).unwrap().expect("reconciled, not skipped");
    assert_eq!(tx.refusal, Some(Refusal::Incident), "{tx:?}");
    // Inside one, the whole transaction is reconciled when it commits; a rollback forgets it.
    let mut d = decoder(10);
    let txs = feed_all(&mut d, &[s.query("fdb", "BEGIN"), s.raw(200, &[0u8; 4]), s.xid(1)]);
    assert!(txs[0].refusal.is_some(), "{txs:?}");
    let txs =
        feed_all(&mut d, &[s.query("fdb", "BEGIN"), s.raw(200, &[0u8; 4]), s.query("fdb", "ROLLBACK"), s.query("fdb", "BEGIN"), s.xid(2)]);
    assert!(txs[0].refusal.is_none());
}

#[test]
fn mariadb_compressed_rows_and_queries_decode_like_plain_ones() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let rows: Vec<Vec<Vec<Cell>>> = (0..40).map(|i| vec![ndc_row(["00000000001", "00000000002"][i % 2], 1)]).collect();
    // A plain write rows event, then the same rows compressed (type 166 is WRITE_ROWS_COMPRESSED_V1).
    let plain = s.rows_v1(23, NDC_ID, &ndc, &rows);
    let split = 8 + 1 + 1; // table id + flags, column count, column bitmap
    let mut body = plain.data()[..split].to_vec();
    body.extend(super::mariadb_compressed::compress(&plain.data()[split..]));
    let compressed_rows = s.raw(166, &body);
    // TRUNCATE as QUERY_COMPRESSED_EVENT (165): everything up to the schema's NUL stays plain.
    let truncate = s.query("fdb", "TRUNCATE TABLE rndc14");
    let split = 13 + 3 + 1; // post-header (no status variables), "fdb", NUL
    let mut body = truncate.data()[..split].to_vec();
    body.extend(super::mariadb_compressed::compress(&truncate.data()[split..]));
    let compressed_query = s.raw(165, &body);

    let txs = feed_all(
        &mut decoder(10),
        &[s.query("fdb", "BEGIN"), s.table_map(NDC_ID, "fdb", "rndc14", &ndc), compressed_rows, s.xid(1), compressed_query],
    );
    assert_eq!(values(&txs[0], "rndc14"), ["00000000001", "00000000002"]);
    assert_eq!(txs[0].rows, 40);
    assert!(
        matches!(&txs[1].refusal, Some(Refusal::Statement { statement, .. }) if statement == "TRUNCATE TABLE rndc14"),
        "{:?}",
        txs[1].refusal
    );
}

#[test]
fn a_table_without_column_names_or_routing_column_is_refused() {
    let mut s = Stream::default();
    let mut renamed = ndc_cols();
    renamed[0].name = "NDC_OLD";
    let err = decoder(10).feed(&s.table_map(NDC_ID, "fdb", "rndc14", &renamed)).unwrap_err();
    assert!(err.to_string().contains("no column `NDC`"), "{err}");
}

#[test]
fn events_inside_a_transaction_payload_commit_at_the_payload_end() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let mut body = Vec::new();
    TransactionPayloadEvent::new(0, TransactionPayloadCompressionType::NONE, 0, Vec::new()).serialize(&mut body);
    let payload = s.raw(EventType::TRANSACTION_PAYLOAD_EVENT as u8, &body);
    let payload_end = s.pos;
    // mysql_async expands the payload after it: inner events carry log_pos 0.
    let inner = [
        s.raw_at(EventType::QUERY_EVENT as u8, &query_body("fdb", "BEGIN"), 0),
        s.raw_at(EventType::TABLE_MAP_EVENT as u8, &table_map_body(NDC_ID, "fdb", "rndc14", &ndc), 0),
        s.raw_at(EventType::XID_EVENT as u8, &7u64.to_le_bytes(), 0),
    ];
    let mut d = decoder(10);
    assert!(d.feed(&payload).unwrap().is_none());
    let txs = feed_all(&mut d, &inner);
    assert_eq!(txs[0].commit, Position::new("binlog.000001", u64::from(payload_end)), "the payload's end, not file:0");
}

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::consts::TransactionPayloadCompressionType;
use mysql_common::binlog::events::TransactionPayloadEvent;
use mysql_common::proto::MySerialize;

#[test]
fn canary_heartbeats_are_kept_apart_from_routing_and_its_ddl_is_no_tracked_ddl() {
    let mut s = Stream::default();
    let (ndc, beat) = (ndc_cols(), vec![mediumint_col("id"), mediumint_col("beat_ms")]);
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.table_map(OTHER_ID, "fdb", "drugsync_heartbeat", &beat),
        s.rows_v1(23, OTHER_ID, &beat, &[vec![vec![Cell::Int24(7), Cell::Int24(1000)]], vec![vec![Cell::Int24(8), Cell::Int24(3000)]]]),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.xid(1),
        s.query("fdb", "TRUNCATE TABLE drugsync_heartbeat"),
    ];
    let routes = HashMap::from([("rndc14".to_owned(), "NDC".to_owned())]);
    let spec = DecodeSpec { schema: "fdb".into(), routes, limit: 100, canary: Some("drugsync_heartbeat".into()) };
    let txs = feed_all(&mut Decoder::new(spec, &Position::new("binlog.000001", 4)).unwrap(), &events);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].canary_beat_ms, Some(3000), "the latest heartbeat of the transaction");
    assert_eq!(values(&txs[0], "rndc14"), ["00000000001"]);
    assert_eq!(values(&txs[0], "drugsync_heartbeat"), Vec::<String>::new(), "heartbeats route no document");
    assert_eq!(txs[0].rows, 1, "and are no tracked rows");
    assert!(txs[1].refusal.is_none() && txs[1].canary_beat_ms.is_none(), "the heartbeat table's DDL is harmless: {:?}", txs[1].refusal);
}

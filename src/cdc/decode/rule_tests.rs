//! Decoder rules the FDB-shaped tests in `tests.rs` did not pin down (found
//! by cargo-mutants): length-encoded integers, the events
//! that carry no rows (MariaDB's annotations, checkpoints and GTID lists,
//! MySQL's heartbeat v2), a COMMIT statement, a table id given a new
//! definition, the size a transaction payload declares, the server and
//! GTID state a position carries, and a fake rotate's checksummed name.

use mysql_common::binlog::consts::{BinlogVersion, EventType};
use mysql_common::binlog::events::{Event, FormatDescriptionEvent, RotateEvent};
use mysql_common::proto::MySerialize;

use super::testkit::*;
use super::tests::{NDC_ID, decoder, feed_all, labeler_cols, ndc_cols, ndc_row, values};
use super::*;

/// BEGIN, rndc14's table map, one inserted NDC and the XID: one plain transaction.
fn one_insert(s: &mut Stream, ndc: &'static str) -> Vec<Event> {
    let cols = ndc_cols();
    vec![
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &cols),
        s.rows_v1(23, NDC_ID, &cols, &[vec![ndc_row(ndc, 1)]]),
        s.xid(1),
    ]
}

#[test]
fn length_encoded_integers_of_every_width_are_read_and_stepped_over() {
    let data = [9, 9, 0x05, 0xfc, 0x34, 0x12, 0xfd, 0x01, 0x02, 0x03, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8];
    let mut at = 2;
    assert_eq!((read_lenenc(&data, &mut at), at), (Some(5), 3), "one byte");
    assert_eq!((read_lenenc(&data, &mut at), at), (Some(0x1234), 6), "0xfc: two bytes, little-endian");
    assert_eq!((read_lenenc(&data, &mut at), at), (Some(0x03_0201), 10), "0xfd: three bytes");
    assert_eq!((read_lenenc(&data, &mut at), at), (Some(0x0807_0605_0403_0201), 19), "0xfe: eight bytes");
    assert_eq!(read_lenenc(&data, &mut at), None, "past the end");
    let mut at = 0;
    assert_eq!(read_lenenc(&[0xfd, 1, 2], &mut at), None, "cut short");
}

/// MariaDB's ANNOTATE_ROWS (the statement beside its row events, with
/// `binlog_annotate_row_events`) carries no rows: no refusal.
#[test]
fn a_mariadb_annotation_inside_a_transaction_changes_nothing() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.raw(160, b"UPDATE rndc14 SET LN = 'DRUG'"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.xid(1),
    ];
    let txs = feed_all(&mut decoder(10), &events);
    assert_eq!(txs.len(), 1);
    assert_eq!((txs[0].refusal.as_ref(), values(&txs[0], "rndc14")), (None, vec!["00000000001".to_owned()]));
}

/// MariaDB's BINLOG_CHECKPOINT and GTID_LIST head each file: right after a
/// rotate they are a boundary (the position moves onto the new file), later
/// in the file they are nothing.
#[test]
fn mariadb_file_header_events_are_boundaries_only_at_the_start_of_a_file() {
    for header_type in [161u8, 163] {
        let mut s = Stream::default();
        let mut d = decoder(10);
        assert!(d.feed(&s.rotate("binlog.000002", false)).unwrap().is_some(), "a real rotate is a boundary");
        let mut s2 = Stream::default();
        let head = s2.raw(header_type, &[0u8; 8]);
        let marker = d.feed(&head).unwrap().expect("a boundary at the head of the file");
        assert_eq!((marker.commit.file.as_str(), marker.commit.offset), ("binlog.000002", u64::from(s2.pos)), "type {header_type}");
        assert!(marker.refusal.is_none());
        let txs = feed_all(&mut d, &one_insert(&mut s2, "00000000001"));
        assert_eq!(txs.len(), 1);
        let later = s2.raw(header_type, &[0u8; 8]);
        assert!(d.feed(&later).unwrap().is_none(), "type {header_type} mid-file is no boundary");
    }
}

/// MySQL 8.0.26+'s HEARTBEAT_LOG_EVENT_V2 (41): an idle source's keep-alive.
#[test]
fn a_mysql_heartbeat_v2_is_neither_a_transaction_nor_a_refusal() {
    let mut s = Stream::default();
    let mut d = decoder(10);
    d.feed(&s.rotate("binlog.000001", true)).unwrap();
    let beat = s.raw_at(41, &[0x01, 0x0d, b'b', b'i', b'n', b'l', b'o', b'g', b'.', b'0', b'0', b'0', b'0', b'0', b'1'], 0);
    assert!(d.feed(&beat).unwrap().is_none());
    let txs = feed_all(&mut d, &one_insert(&mut s, "00000000001"));
    assert!(txs.len() == 1 && txs[0].refusal.is_none(), "{txs:?}");
}

/// A transaction on a non-transactional engine (or MariaDB's for some
/// statements) ends with a COMMIT statement instead of an XID event.
#[test]
fn a_commit_statement_ends_the_transaction_with_its_rows() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.query("fdb", "COMMIT"),
    ];
    let end = s.pos;
    let txs = feed_all(&mut decoder(10), &events);
    assert_eq!(txs.len(), 1, "{txs:?}");
    assert_eq!((txs[0].commit.offset, values(&txs[0], "rndc14")), (u64::from(end), vec!["00000000001".to_owned()]));
}

/// A table id mapped again with another definition (the server reuses ids
/// after a DDL) must be read with the new one, not the cached layout.
#[test]
fn a_table_id_mapped_again_with_another_definition_is_read_with_the_new_one() {
    let mut s = Stream::default();
    let (ndc, labeler) = (ndc_cols(), labeler_cols());
    let events = vec![
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
        s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
        s.xid(1),
        s.query("fdb", "BEGIN"),
        s.table_map(NDC_ID, "fdb", "rlblrid3", &labeler),
        s.rows_v1(23, NDC_ID, &labeler, &[vec![vec![Cell::Str("ACME PHARMA"), Cell::Str("A00042")]]]),
        s.xid(2),
    ];
    let txs = feed_all(&mut decoder(10), &events);
    assert_eq!(txs.len(), 2);
    assert_eq!(values(&txs[1], "rlblrid3"), vec!["A00042".to_owned()], "{:?}", txs[1].routing);
    assert!(values(&txs[1], "rndc14").is_empty());
}

/// The events inside a transaction payload add up to the size it declared:
/// the stream goes on after them; one more inner event than declared fails.
#[test]
fn a_transaction_payload_is_accounted_to_the_byte() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let inner = vec![
        (EventType::QUERY_EVENT as u8, query_body("fdb", "BEGIN")),
        (EventType::TABLE_MAP_EVENT as u8, table_map_body(NDC_ID, "fdb", "rndc14", &ndc)),
        (EventType::XID_EVENT as u8, 7u64.to_le_bytes().to_vec()),
    ];
    let payload = s.payload(&inner);
    let streamed = s.as_streamed(&[payload]);
    let mut d = decoder(10);
    let txs = feed_all(&mut d, &streamed);
    assert_eq!(txs.len(), 1);
    assert!(d.feed(&s.query("fdb", "BEGIN")).is_ok(), "the next outer event follows a payload read whole");

    // In place of the last inner event (27 bytes left to come), a longer one.
    let mut d = decoder(10);
    feed_all(&mut d, &streamed[..streamed.len() - 1]);
    let longer = s.raw_at(EventType::QUERY_EVENT as u8, &query_body("fdb", "BEGIN"), 0);
    assert!(d.feed(&longer).is_err(), "inner events past the declared size are refused");
}

#[test]
fn positions_carry_the_server_and_gtid_state_the_session_set() {
    let mut s = Stream::default();
    let mut d = decoder(10);
    d.set_server(Some("server-7".into()));
    d.set_gtid_state(Some(crate::mysql::gtid::GtidState::parse("0-1-5").unwrap()));
    let ndc = ndc_cols();
    let txs = feed_all(
        &mut d,
        &[
            s.mariadb_gtid(0, 6, false),
            s.table_map(NDC_ID, "fdb", "rndc14", &ndc),
            s.rows_v1(23, NDC_ID, &ndc, &[vec![ndc_row("00000000001", 1)]]),
            s.xid(1),
        ],
    );
    let commit = &txs[0].commit;
    assert_eq!((commit.server.as_deref(), commit.gtid.as_deref()), (Some("server-7"), Some("0-1-6")));
}

/// The server's first (fake) rotate carries its checksum inside the body
/// when the stream is read without checksums: the name is what precedes it.
#[test]
fn a_fake_rotate_name_ends_before_its_checksum() {
    let mut body = Vec::new();
    RotateEvent::new(4, b"binlog.000009".to_vec()).serialize(&mut body);
    let size = 19 + body.len() as u32 + 4;
    let mut bytes = Vec::new();
    bytes.extend(1_700_000_000u32.to_le_bytes());
    bytes.push(EventType::ROTATE_EVENT as u8);
    bytes.extend(1u32.to_le_bytes());
    bytes.extend(size.to_le_bytes());
    bytes.extend(0u32.to_le_bytes());
    bytes.extend(0x20u16.to_le_bytes());
    bytes.extend(&body);
    let crc = crc32fast::hash(&bytes);
    bytes.extend(crc.to_le_bytes());
    // Read as a stream without checksums: the 4 bytes stay in the body.
    let event = Event::read(&FormatDescriptionEvent::new(BinlogVersion::Version4), &bytes[..]).unwrap();
    let mut d = decoder(10);
    assert!(d.feed(&event).unwrap().is_none(), "the fake rotate only names the file");
    let mut s = Stream::default();
    let txs = feed_all(&mut d, &one_insert(&mut s, "00000000001"));
    assert_eq!(txs[0].commit.file, "binlog.000009");
}

/// MySQL's partial JSON updates: the after image of a PARTIAL_UPDATE_ROWS
/// event begins with value options and, when PARTIAL_JSON is set, a bitmap
/// over the JSON columns, both stepped over before the NULL bitmap.
#[test]
fn a_partial_json_update_routes_by_the_column_after_the_json_one() {
    // Nine columns besides the JSON one: the bitmap covers JSON columns only (one byte, not two).
    let mut cols = vec![json_col("DOC"), char_col("NDC", 11)];
    let fillers = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"];
    cols.extend(fillers.iter().map(|name| mediumint_col(name)));
    let image = |json: &'static [u8], ndc: &'static str| {
        let mut cells = vec![Cell::Json(json), Cell::Str(ndc)];
        cells.extend(fillers.iter().map(|_| Cell::Int24(7)));
        cells
    };
    for partial_bits in [Some(0x01), None] {
        let mut s = Stream::default();
        let events = vec![
            s.query("fdb", "BEGIN"),
            s.table_map(NDC_ID, "fdb", "rndc14", &cols),
            s.partial_update(
                NDC_ID,
                &cols,
                &image(b"\x00\x01\x00", "00000000001"),
                &image(b"\x00\x02\x00\x00", "00000000002"),
                partial_bits,
            ),
            s.xid(1),
        ];
        let txs = feed_all(&mut decoder(10), &events);
        assert_eq!(values(&txs[0], "rndc14"), vec!["00000000001".to_owned(), "00000000002".to_owned()], "{partial_bits:?}");
    }
}

/// MariaDB compresses an update's two images after both column bitmaps,
/// and a v2 rows event's after its extra-data block: both are split there.
#[test]
fn mariadb_compressed_updates_and_v2_rows_are_split_after_their_bitmaps() {
    let mut s = Stream::default();
    let ndc = ndc_cols();
    let update: Vec<Vec<Vec<Cell>>> = vec![vec![ndc_row("00000000001", 1), ndc_row("00000000002", 1)]];
    let plain_update = s.rows_v1(24, NDC_ID, &ndc, &update);
    let split = 8 + 1 + 2; // table id + flags, column count, two column bitmaps
    let mut body = plain_update.data()[..split].to_vec();
    body.extend(super::mariadb_compressed::compress(&plain_update.data()[split..]));
    let compressed_update = s.raw(167, &body);
    let plain_write = s.rows_v2(30, NDC_ID, &ndc, &[vec![ndc_row("00000000003", 1)]]);
    let split = 8 + 2 + 1 + 1; // table id + flags, extra data (its own length only), column count, bitmap
    let mut body = plain_write.data()[..split].to_vec();
    body.extend(super::mariadb_compressed::compress(&plain_write.data()[split..]));
    let compressed_write = s.raw(169, &body);
    let txs = feed_all(
        &mut decoder(10),
        &[s.query("fdb", "BEGIN"), s.table_map(NDC_ID, "fdb", "rndc14", &ndc), compressed_update, compressed_write, s.xid(1)],
    );
    assert_eq!(values(&txs[0], "rndc14"), ["00000000001", "00000000002", "00000000003"]);
    assert_eq!(txs[0].rows, 2, "one updated row (two images), one written");
}

/// The routing column's bytes are read in its own charset (COLUMN_CHARSET
/// metadata): a latin1 key is latin1 even after a utf8mb4 column and when
/// its bytes are valid UTF-8, a key
/// column of another charset is refused, and so is an ENUM key.
#[test]
fn a_routing_value_is_decoded_in_the_charset_of_its_column() {
    const LATIN1: u16 = 8;
    const UTF8MB4: u16 = 255;
    const GBK: u16 = 28;
    let cols = vec![mediumint_col("GCN_SEQNO"), varchar_col("LN", 30), char_col("NDC", 11)];
    let row = vec![Cell::Int24(1), Cell::Str("caf\u{e9}"), Cell::Bytes(b"000000000\xc3\xa9")];
    let routed = |collations: &[u16]| {
        let mut s = Stream::default();
        let events = [
            s.query("fdb", "BEGIN"),
            s.table_map_with_collations(NDC_ID, "fdb", "rndc14", &cols, collations),
            s.rows_v1(23, NDC_ID, &cols, &[vec![row.clone()]]),
            s.xid(1),
        ];
        let mut d = decoder(10);
        events.iter().map(|e| d.feed(e)).collect::<Result<Vec<_>, _>>().map(|txs| txs.into_iter().flatten().collect::<Vec<_>>())
    };
    let txs = routed(&[UTF8MB4, LATIN1]).expect("decodes");
    assert_eq!(
        values(&txs[0], "rndc14"),
        vec!["000000000\u{c3}\u{a9}".to_owned()],
        "latin1 bytes stay latin1 even when they read as UTF-8"
    );
    let gbk = routed(&[UTF8MB4, GBK]).unwrap_err();
    assert!(gbk.to_string().contains("collation (id 28)"), "a key column in GBK is refused: {gbk}");

    let enum_key = vec![mediumint_col("GCN_SEQNO"), Col { ty: 247, meta: vec![0xf7, 1], name: "NDC" }];
    let err = decoder(10).feed(&Stream::default().table_map(NDC_ID, "fdb", "rndc14", &enum_key)).unwrap_err();
    assert!(err.to_string().contains("route by another column"), "an ENUM routing column is refused: {err}");
}

/// MariaDB's compressed payload starts with a header byte: bit 7 set, the
/// algorithm in bits 4-6 (0: zlib, the only one defined), the length's
/// byte count in bits 0-2. Any other header is refused by name, not fed
/// to zlib.
#[test]
fn a_mariadb_compressed_event_with_an_unknown_header_byte_is_refused() {
    for head in [0x04u8, 0x94] {
        let mut s = Stream::default();
        let query = s.query("fdb", "TRUNCATE TABLE rndc14");
        let split = 13 + 3 + 1;
        let mut body = query.data()[..split].to_vec();
        let mut payload = super::mariadb_compressed::compress(&query.data()[split..]);
        payload[0] = head;
        body.extend(payload);
        let err = decoder(10).feed(&s.raw(165, &body)).unwrap_err();
        assert!(err.to_string().contains("compression header byte"), "{head:#04x}: {err}");
    }
}

/// A compressed query keeps its status variables and schema plain: the
/// compressed part starts after them (MariaDB writes status variables on
/// every query), and an update of more than eight columns has two-byte
/// column bitmaps, both before the compressed part.
#[test]
fn mariadb_compressed_events_split_after_status_variables_and_wide_bitmaps() {
    use mysql_common::binlog::events::QueryEvent;
    let mut s = Stream::default();
    // Q_FLAGS2_CODE (0) and its four bytes: five bytes of status variables.
    let status = vec![0u8, 0, 0, 0, 0];
    let mut plain = Vec::new();
    QueryEvent::new(status.clone(), b"fdb".to_vec()).with_query(b"TRUNCATE TABLE rndc14".to_vec()).serialize(&mut plain);
    let split = 13 + status.len() + 3 + 1;
    let mut body = plain[..split].to_vec();
    body.extend(super::mariadb_compressed::compress(&plain[split..]));
    let compressed_query = s.raw(165, &body);

    let mut cols = vec![char_col("NDC", 11)];
    let fillers = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"];
    cols.extend(fillers.iter().map(|name| mediumint_col(name)));
    let image = |ndc: &'static str| {
        let mut cells = vec![Cell::Str(ndc)];
        cells.extend(fillers.iter().map(|_| Cell::Int24(7)));
        cells
    };
    let plain_update = s.rows_v1(24, NDC_ID, &cols, &[vec![image("00000000001"), image("00000000002")]]);
    let split = 8 + 1 + 2 * 2; // table id + flags, column count, two bitmaps of two bytes
    let mut body = plain_update.data()[..split].to_vec();
    body.extend(super::mariadb_compressed::compress(&plain_update.data()[split..]));
    let compressed_update = s.raw(167, &body);

    let txs = feed_all(
        &mut decoder(10),
        &[s.query("fdb", "BEGIN"), s.table_map(NDC_ID, "fdb", "rndc14", &cols), compressed_update, s.xid(1), compressed_query],
    );
    assert_eq!(values(&txs[0], "rndc14"), ["00000000001", "00000000002"]);
    assert!(
        matches!(&txs[1].refusal, Some(Refusal::Statement { statement, .. }) if statement == "TRUNCATE TABLE rndc14"),
        "{:?}",
        txs[1].refusal
    );
}

//! Binlog events built from bytes, for the decoder's unit tests.
//!
//! Each event is laid out as a server writes it (19-byte header, body,
//! CRC32) and read back through mysql_common's own `Event::read`, so the
//! decoder sees exactly what the network stream would hand it.

use mysql_common::binlog::consts::TransactionPayloadCompressionType;
use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::{
    BinlogEventFooter, Event, FormatDescriptionEvent, GtidEvent, QueryEvent, RotateEvent, TransactionPayloadEvent,
};
use mysql_common::proto::MySerialize;

/// A column of a synthetic table: its type code, table-map metadata, and name.
#[derive(Clone)]
pub struct Col {
    pub ty: u8,
    pub meta: Vec<u8>,
    pub name: &'static str,
}

/// `CHAR(n)` latin1.
pub fn char_col(name: &'static str, n: u8) -> Col {
    Col { ty: 254, meta: vec![254, n], name }
}
/// `VARCHAR(n)` (n < 256).
pub fn varchar_col(name: &'static str, n: u8) -> Col {
    Col { ty: 15, meta: vec![n, 0], name }
}
/// `MEDIUMINT UNSIGNED`.
pub fn mediumint_col(name: &'static str) -> Col {
    Col { ty: 9, meta: vec![], name }
}
/// `DATE`.
pub fn date_col(name: &'static str) -> Col {
    Col { ty: 10, meta: vec![], name }
}
/// `DECIMAL(11,3)`.
pub fn decimal_col(name: &'static str) -> Col {
    Col { ty: 246, meta: vec![11, 3], name }
}
/// `JSON` (its value: a 4-byte length, then the binary document).
pub fn json_col(name: &'static str) -> Col {
    Col { ty: 245, meta: vec![4], name }
}

/// A cell of a row image.
#[derive(Clone, Debug)]
pub enum Cell {
    Null,
    /// Bytes of a CHAR/VARCHAR value (one length byte).
    Str(&'static str),
    /// A MEDIUMINT value.
    Int24(u32),
    /// A DATE (year, month, day).
    Date(u16, u8, u8),
    /// A DECIMAL(11,3) value's 6 packed bytes.
    Dec([u8; 6]),
    /// A JSON value's bytes (what follows its 4-byte length).
    Json(&'static [u8]),
    /// Raw bytes of a CHAR/VARCHAR value (one length byte).
    Bytes(&'static [u8]),
}

/// Writes a stream of events with consecutive positions in one file.
pub struct Stream {
    fde: FormatDescriptionEvent<'static>,
    /// Offset where the next event starts.
    pub pos: u32,
    pub server_id: u32,
    pub timestamp: u32,
}

impl Default for Stream {
    fn default() -> Self {
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4)
            .with_footer(BinlogEventFooter::new(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32));
        Self { fde, pos: 4, server_id: 1, timestamp: 1_700_000_000 }
    }
}

impl Stream {
    /// An event of raw type `type_code` with `body`, at the next position.
    pub fn raw(&mut self, type_code: u8, body: &[u8]) -> Event {
        let size = 19 + body.len() as u32 + 4;
        let log_pos = self.pos + size;
        self.pos = log_pos;
        self.raw_at(type_code, body, log_pos)
    }

    /// Like [`Self::raw`] with an explicit `log_pos` (0 inside a transaction payload).
    pub fn raw_at(&self, type_code: u8, body: &[u8], log_pos: u32) -> Event {
        let size = 19 + body.len() as u32 + 4;
        let mut bytes = Vec::with_capacity(size as usize);
        bytes.extend(self.timestamp.to_le_bytes());
        bytes.push(type_code);
        bytes.extend(self.server_id.to_le_bytes());
        bytes.extend(size.to_le_bytes());
        bytes.extend(log_pos.to_le_bytes());
        bytes.extend(0u16.to_le_bytes());
        bytes.extend(body);
        let crc = crc32fast::hash(&bytes);
        bytes.extend(crc.to_le_bytes());
        Event::read(&self.fde, &bytes[..]).expect("a well-formed event")
    }

    /// A copy of `event` with one body byte flipped (its checksum no longer matches).
    pub fn corrupt(&self, event: &Event) -> Event {
        let mut bytes = Vec::new();
        event.write(BinlogVersion::Version4, &mut bytes).expect("serialise");
        bytes[20] ^= 0xff;
        Event::read(&self.fde, &bytes[..]).expect("still parses")
    }

    pub fn rotate(&mut self, file: &str, fake: bool) -> Event {
        let mut body = Vec::new();
        RotateEvent::new(4, file.as_bytes().to_vec()).serialize(&mut body);
        if fake { self.raw_at(EventType::ROTATE_EVENT as u8, &body, 0) } else { self.raw(EventType::ROTATE_EVENT as u8, &body) }
    }

    pub fn query(&mut self, schema: &str, sql: &str) -> Event {
        self.raw(EventType::QUERY_EVENT as u8, &query_body(schema, sql))
    }

    pub fn xid(&mut self, xid: u64) -> Event {
        self.raw(EventType::XID_EVENT as u8, &xid.to_le_bytes())
    }

    pub fn heartbeat(&mut self) -> Event {
        self.raw_at(EventType::HEARTBEAT_EVENT as u8, b"binlog.000001", self.pos)
    }

    pub fn mysql_gtid(&mut self, sid: [u8; 16], gno: u64) -> Event {
        let mut body = Vec::new();
        GtidEvent::new(sid, gno).serialize(&mut body);
        self.raw(EventType::GTID_EVENT as u8, &body)
    }

    /// MariaDB's GTID event (162): seq, domain, flags (1 = standalone statement).
    pub fn mariadb_gtid(&mut self, domain: u32, seq: u64, standalone: bool) -> Event {
        let mut body = seq.to_le_bytes().to_vec();
        body.extend(domain.to_le_bytes());
        body.push(u8::from(standalone));
        body.extend([0u8; 6]);
        self.raw(162, &body)
    }

    /// A TABLE_MAP with full metadata (column names, signedness).
    pub fn table_map(&mut self, table_id: u64, schema: &str, table: &str, cols: &[Col]) -> Event {
        let body = table_map_body(table_id, schema, table, cols);
        self.raw(EventType::TABLE_MAP_EVENT as u8, &body)
    }

    /// [`Self::table_map`] whose character columns carry these collation ids.
    pub fn table_map_with_collations(&mut self, table_id: u64, schema: &str, table: &str, cols: &[Col], collations: &[u16]) -> Event {
        let body = table_map_body_with_collations(table_id, schema, table, cols, collations);
        self.raw(EventType::TABLE_MAP_EVENT as u8, &body)
    }

    /// A v1 rows event (MariaDB's): `kind` is 23 write, 24 update, 25 delete.
    /// Each row is one image (write, delete) or two (update).
    pub fn rows_v1(&mut self, kind: u8, table_id: u64, cols: &[Col], rows: &[Vec<Vec<Cell>>]) -> Event {
        let mut body = table_id.to_le_bytes()[..6].to_vec();
        body.extend(0u16.to_le_bytes());
        body.extend(rows_payload(kind == 24, cols, rows));
        self.raw(kind, &body)
    }
}

impl Stream {
    /// A v2 rows event (MySQL 8's): `kind` is 30 write, 31 update, 32 delete;
    /// no extra row info, the statement-end flag set, as the server writes them.
    pub fn rows_v2(&mut self, kind: u8, table_id: u64, cols: &[Col], rows: &[Vec<Vec<Cell>>]) -> Event {
        self.raw(kind, &rows_v2_body(kind, table_id, cols, rows))
    }

    /// A PARTIAL_UPDATE_ROWS_EVENT (39; MySQL with `binlog_row_value_options
    /// = PARTIAL_JSON`): one update whose after image starts with its value
    /// options (`partial_bits`: `Some` sets the PARTIAL_JSON option and
    /// writes that bitmap of the JSON columns updated in part).
    pub fn partial_update(&mut self, table_id: u64, cols: &[Col], before: &[Cell], after: &[Cell], partial_bits: Option<u8>) -> Event {
        let mut body = table_id.to_le_bytes()[..6].to_vec();
        body.extend(1u16.to_le_bytes()); // STMT_END_F
        body.extend(2u16.to_le_bytes()); // extra row info: its own length only
        body.push(cols.len() as u8);
        let all = vec![0xffu8; cols.len().div_ceil(8)];
        body.extend(&all);
        body.extend(&all);
        body.extend(image_bytes(before));
        match partial_bits {
            Some(bits) => body.extend([1u8, bits]),
            None => body.push(0),
        }
        body.extend(image_bytes(after));
        self.raw(39, &body)
    }

    /// A TRANSACTION_PAYLOAD event (`binlog_transaction_compression=ON`):
    /// the `inner` events (type, body), each with a 19-byte header, log_pos 0
    /// and no checksum of its own, compressed together with zstd.
    pub fn payload(&mut self, inner: &[(u8, Vec<u8>)]) -> Event {
        let mut plain = Vec::new();
        for (type_code, body) in inner {
            let size = 19 + body.len() as u32;
            plain.extend(self.timestamp.to_le_bytes());
            plain.push(*type_code);
            plain.extend(self.server_id.to_le_bytes());
            plain.extend(size.to_le_bytes());
            plain.extend(0u32.to_le_bytes());
            plain.extend(0u16.to_le_bytes());
            plain.extend(body);
        }
        let compressed = zstd::encode_all(&plain[..], 3).expect("zstd");
        let event =
            TransactionPayloadEvent::new(compressed.len() as u64, TransactionPayloadCompressionType::ZSTD, plain.len() as u64, compressed);
        let mut body = Vec::new();
        event.serialize(&mut body);
        self.raw(EventType::TRANSACTION_PAYLOAD_EVENT as u8, &body)
    }

    /// `events` as mysql_async's stream hands them over: after a
    /// TRANSACTION_PAYLOAD event come the events inside it, read without
    /// checksums (`EventStreamReader::read_decompressed` does the same).
    pub fn as_streamed(&self, events: &[Event]) -> Vec<Event> {
        let plain = FormatDescriptionEvent::new(BinlogVersion::Version4);
        let mut out = Vec::new();
        for event in events {
            out.push(event.clone());
            if event.header().event_type_raw() != EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
                continue;
            }
            let bytes = event.read_event::<TransactionPayloadEvent<'_>>().expect("payload").danger_decompress();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let size = u32::from_le_bytes(rest[9..13].try_into().expect("size")) as usize;
                out.push(Event::read(&plain, &rest[..size]).expect("an inner event"));
                rest = &rest[size..];
            }
        }
        out
    }
}

/// The body of a v2 rows event (see [`Stream::rows_v2`]).
pub fn rows_v2_body(kind: u8, table_id: u64, cols: &[Col], rows: &[Vec<Vec<Cell>>]) -> Vec<u8> {
    let mut body = table_id.to_le_bytes()[..6].to_vec();
    body.extend(1u16.to_le_bytes()); // STMT_END_F
    body.extend(2u16.to_le_bytes()); // extra row info: its own length only
    body.extend(rows_payload(kind == 31, cols, rows));
    body
}

/// What follows a rows event's post-header in both versions: the column
/// count, the present-column bitmaps (all present; two for an update), the images.
fn rows_payload(update: bool, cols: &[Col], rows: &[Vec<Vec<Cell>>]) -> Vec<u8> {
    let mut body = vec![cols.len() as u8];
    let all = vec![0xffu8; cols.len().div_ceil(8)];
    body.extend(&all);
    if update {
        body.extend(&all);
    }
    for row in rows {
        for image in row {
            body.extend(image_bytes(image));
        }
    }
    body
}

/// One row image: NULL bitmap over all columns, then the non-NULL values.
pub fn image_bytes(cells: &[Cell]) -> Vec<u8> {
    let mut nulls = vec![0u8; cells.len().div_ceil(8)];
    let mut values = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        match cell {
            Cell::Null => nulls[i / 8] |= 1 << (i % 8),
            Cell::Str(s) => {
                values.push(s.len() as u8);
                values.extend(s.as_bytes());
            }
            Cell::Int24(v) => values.extend(&v.to_le_bytes()[..3]),
            Cell::Date(y, m, d) => {
                let packed = (u32::from(*y) << 9) | (u32::from(*m) << 5) | u32::from(*d);
                values.extend(&packed.to_le_bytes()[..3]);
            }
            Cell::Dec(bytes) => values.extend(bytes),
            Cell::Bytes(bytes) => {
                values.push(bytes.len() as u8);
                values.extend(*bytes);
            }
            Cell::Json(bytes) => {
                values.extend((bytes.len() as u32).to_le_bytes());
                values.extend(*bytes);
            }
        }
    }
    nulls.extend(values);
    nulls
}

/// The body of a TABLE_MAP event with full metadata (column names, signedness).
pub fn table_map_body(table_id: u64, schema: &str, table: &str, cols: &[Col]) -> Vec<u8> {
    table_map_body_with_collations(table_id, schema, table, cols, &[])
}

/// [`table_map_body`] with a COLUMN_CHARSET entry: one collation id per
/// character column, in order (none when `collations` is empty).
pub fn table_map_body_with_collations(table_id: u64, schema: &str, table: &str, cols: &[Col], collations: &[u16]) -> Vec<u8> {
    let mut body = table_id.to_le_bytes()[..6].to_vec();
    body.extend(1u16.to_le_bytes());
    for name in [schema, table] {
        body.push(name.len() as u8);
        body.extend(name.as_bytes());
        body.push(0);
    }
    body.push(cols.len() as u8);
    body.extend(cols.iter().map(|c| c.ty));
    let meta: Vec<u8> = cols.iter().flat_map(|c| c.meta.clone()).collect();
    body.push(meta.len() as u8);
    body.extend(meta);
    body.extend(vec![0xffu8; cols.len().div_ceil(8)]);
    // SIGNEDNESS (1): one bit per numeric column, most significant first; all unsigned.
    let numeric = cols.iter().filter(|c| matches!(c.ty, 1 | 2 | 3 | 8 | 9 | 246)).count();
    if numeric > 0 {
        body.extend([1u8, numeric.div_ceil(8) as u8]);
        body.extend(vec![0xffu8; numeric.div_ceil(8)]);
    }
    // COLUMN_CHARSET (3): length-encoded collation ids.
    if !collations.is_empty() {
        let ids: Vec<u8> = collations
            .iter()
            .flat_map(|&id| if id < 251 { vec![id as u8] } else { [vec![0xfc], id.to_le_bytes().to_vec()].concat() })
            .collect();
        body.extend([3u8, ids.len() as u8]);
        body.extend(ids);
    }
    // COLUMN_NAME (4): length-prefixed names.
    let names: Vec<u8> = cols.iter().flat_map(|c| std::iter::once(c.name.len() as u8).chain(c.name.bytes())).collect();
    body.extend([4u8, names.len() as u8]);
    body.extend(names);
    body
}

/// The body of a QUERY event (no status variables).
pub fn query_body(schema: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    QueryEvent::new(Vec::new(), schema.as_bytes().to_vec()).with_query(sql.as_bytes().to_vec()).serialize(&mut body);
    body
}

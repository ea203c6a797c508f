//! MariaDB's compressed binlog events (`log_bin_compress=ON`), rebuilt as
//! the plain events they stand for so the rest of the decoder reads them as
//! usual.
//!
//! MariaDB compresses only the large part of an event: the statement text of
//! a query event, the row images of a rows event. That part becomes one
//! header byte (`0x80 | algorithm << 4 | n`), the uncompressed length in `n`
//! big-endian bytes, then a zlib stream (algorithm 0, the only one).

use std::io::Read;

use mysql_common::binlog::events::Event;

/// QUERY_COMPRESSED_EVENT.
pub const QUERY: u8 = 165;
/// The six compressed rows events, in the order of their plain twins.
const ROWS: [(u8, u8); 6] = [(166, 23), (167, 24), (168, 25), (169, 30), (170, 31), (171, 32)];

/// Length of the query event's fixed part (thread id, time, schema length, error code, status length).
const QUERY_POST_HEADER: usize = 13;
/// Length of a rows event's table id and flags.
const ROWS_POST_HEADER: usize = 8;

/// True for the event types this module rebuilds.
pub fn is_compressed(type_code: u8) -> bool {
    type_code == QUERY || ROWS.iter().any(|(c, _)| *c == type_code)
}

/// The plain event `event` stands for, with the same header fields and position.
pub fn decompress(event: &Event) -> Result<Event, String> {
    let header = event.header();
    let data = event.data();
    let type_code = header.event_type_raw();
    let (plain_type, split) = if type_code == QUERY {
        let status_len = usize::from(u16::from_le_bytes(field(data, 11, 2)?.try_into().map_err(|_| "short query event")?));
        let schema_len = usize::from(field(data, 8, 1)?[0]);
        (2, QUERY_POST_HEADER + status_len + schema_len + 1)
    } else {
        let plain = ROWS.iter().find(|(c, _)| *c == type_code).map(|(_, p)| *p).ok_or("not a compressed event")?;
        let mut at = ROWS_POST_HEADER;
        if plain >= 30 {
            // v2: the extra data length counts its own two bytes.
            let extra = usize::from(u16::from_le_bytes(field(data, at, 2)?.try_into().map_err(|_| "short rows event")?));
            at += extra.max(2);
        }
        let columns = super::read_lenenc(data, &mut at).ok_or("compressed rows event too short")? as usize;
        let bitmap = columns.div_ceil(8);
        at += if plain == 24 || plain == 31 { 2 * bitmap } else { bitmap };
        (plain, at)
    };
    let (plain_part, compressed) = data.split_at(split.min(data.len()));
    let inflated = inflate(compressed)?;
    let mut body = plain_part.to_vec();
    body.extend(inflated);
    rebuild(event, plain_type, &body)
}

fn field(data: &[u8], at: usize, len: usize) -> Result<&[u8], String> {
    data.get(at..at + len).ok_or_else(|| "compressed event too short".to_owned())
}

/// Undoes MariaDB's `binlog_buf_compress`.
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let (&head, rest) = compressed.split_first().ok_or("empty compressed payload")?;
    if head & 0x80 == 0 || (head >> 4) & 0x07 != 0 {
        return Err(format!("unknown compression header byte {head:#04x} (only zlib is defined)"));
    }
    let n = usize::from(head & 0x07);
    let length_bytes = rest.get(..n).ok_or("compressed payload too short")?;
    let length = length_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let mut out = Vec::with_capacity(length);
    flate2::read::ZlibDecoder::new(&rest[n..]).read_to_end(&mut out).map_err(|e| format!("zlib: {e}"))?;
    if out.len() != length {
        return Err(format!("inflated {} bytes where the event promised {length}", out.len()));
    }
    Ok(out)
}

/// The same header with another type and size, the new body, and a fresh
/// checksum when the stream has them (the compressed event's was verified).
fn rebuild(event: &Event, type_code: u8, body: &[u8]) -> Result<Event, String> {
    let header = event.header();
    let checksum = event.checksum().is_some() && event.footer().get_checksum_enabled();
    let size = 19 + body.len() + if checksum { 4 } else { 0 };
    let mut bytes = Vec::with_capacity(size);
    bytes.extend(header.timestamp().to_le_bytes());
    bytes.push(type_code);
    bytes.extend(header.server_id().to_le_bytes());
    bytes.extend(u32::try_from(size).map_err(|_| "event too large")?.to_le_bytes());
    bytes.extend(header.log_pos().to_le_bytes());
    bytes.extend(header.flags_raw().to_le_bytes());
    bytes.extend(body);
    if checksum {
        let crc = crc32fast::hash(&bytes);
        bytes.extend(crc.to_le_bytes());
    }
    Event::read(event.fde(), &bytes[..]).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(super) fn compress(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(plain).unwrap();
    let zipped = encoder.finish().unwrap();
    let len = (plain.len() as u32).to_be_bytes();
    let mut out = vec![0x80 | 4];
    out.extend(len);
    out.extend(zipped);
    out
}

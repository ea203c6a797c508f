//! The payload expansion against payloads built here: events come out one
//! at a time and whole, and a payload that does not expand is an error.

use mysql_common::binlog::consts::{BinlogVersion, EventType, TransactionPayloadCompressionType};
use mysql_common::binlog::events::{Event, FormatDescriptionEvent, TransactionPayloadEvent};
use mysql_common::proto::MySerialize;

use super::*;

/// An event as a server lays it out: 19-byte header, then `body` (no checksum).
fn event_bytes(type_code: u8, body: &[u8], log_pos: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(1_700_000_000u32.to_le_bytes());
    bytes.push(type_code);
    bytes.extend(1u32.to_le_bytes());
    bytes.extend((19 + body.len() as u32).to_le_bytes());
    bytes.extend(log_pos.to_le_bytes());
    bytes.extend(0u16.to_le_bytes());
    bytes.extend(body);
    bytes
}

/// A TRANSACTION_PAYLOAD event holding `compressed` (which expands to `plain_len` bytes).
fn payload_event(compressed: Vec<u8>, plain_len: usize) -> Event {
    let payload =
        TransactionPayloadEvent::new(compressed.len() as u64, TransactionPayloadCompressionType::ZSTD, plain_len as u64, compressed);
    let mut body = Vec::new();
    payload.serialize(&mut body);
    let bytes = event_bytes(EventType::TRANSACTION_PAYLOAD_EVENT as u8, &body, 4000);
    Event::read(&FormatDescriptionEvent::new(BinlogVersion::Version4), &bytes[..]).unwrap()
}

/// Inner events: IGNORABLE-typed (28) bodies of `sizes` bytes of text.
fn inner(sizes: &[usize]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, size)| format!("{i} FDB ").repeat(size / 6).into_bytes()).collect();
    let plain = bodies.iter().flat_map(|body| event_bytes(28, body, 0)).collect();
    (plain, bodies)
}

fn expand_all(expansion: &mut Expansion) -> Result<Vec<Event>, std::io::Error> {
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut out = Vec::new();
    while let Some(event) = reader.read_decompressed(&mut expansion.0)? {
        out.push(event);
    }
    Ok(out)
}

#[test]
fn the_events_of_a_payload_come_out_one_at_a_time_and_whole() {
    // 12 MB of events, far more than the expansion buffer holds at once.
    let (plain, bodies) = inner(&[4 << 20, 10, 8 << 20]);
    let compressed = zstd::encode_all(&plain[..], 3).unwrap();
    assert!(compressed.len() * 20 < plain.len(), "FDB text compresses well");
    let mut expansion = Expansion::of(&payload_event(compressed, plain.len())).unwrap();
    let events = expand_all(&mut expansion).unwrap();
    assert_eq!(events.len(), bodies.len());
    for (event, body) in events.iter().zip(&bodies) {
        assert_eq!(event.header().event_type_raw(), 28);
        assert_eq!(event.header().log_pos(), 0, "inner events carry no position");
        assert_eq!(event.data(), &body[..]);
    }
}

#[test]
fn a_payload_that_does_not_expand_is_an_error_not_an_empty_transaction() {
    let (plain, _) = inner(&[100_000, 100_000]);
    let compressed = zstd::encode_all(&plain[..], 3).unwrap();
    let mut garbled = compressed.clone();
    garbled[..4].copy_from_slice(b"nope"); // no zstd frame starts like this
    let truncated = compressed[..compressed.len() / 2].to_vec();
    for broken in [garbled, truncated] {
        let outcome = Expansion::of(&payload_event(broken, plain.len()))
            .map_err(|e| e.to_string())
            .and_then(|mut expansion| expand_all(&mut expansion).map_err(|e| e.to_string()));
        assert!(outcome.is_err(), "a broken payload must not read as events (or none): {:?}", outcome.map(|e| e.len()));
    }
}

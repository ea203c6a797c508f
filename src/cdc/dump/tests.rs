//! The stream against packets written here, over an in-memory connection:
//! a transaction payload's events come out one at a time and whole, its
//! checksum is checked before its last event is handed out, and a payload
//! that does not expand is an error.

use mysql_common::binlog::consts::{BinlogVersion, EventType, TransactionPayloadCompressionType};
use mysql_common::binlog::events::TransactionPayloadEvent;
use mysql_common::proto::MySerialize;

use super::wire::Wire;
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

/// What ends a payload event.
#[derive(Clone, Copy, PartialEq)]
enum Crc {
    /// No checksum (`binlog_checksum=NONE`), which the test reader's format expects.
    None,
    Good,
    Wrong,
}

/// A TRANSACTION_PAYLOAD event holding `payload` (which expands to `plain_len` bytes).
fn payload_event(payload: Vec<u8>, algorithm: TransactionPayloadCompressionType, plain_len: usize, crc: Crc) -> Vec<u8> {
    let event = TransactionPayloadEvent::new(payload.len() as u64, algorithm, plain_len as u64, payload);
    let mut body = Vec::new();
    event.serialize(&mut body);
    let mut bytes = event_bytes(EventType::TRANSACTION_PAYLOAD_EVENT as u8, &body, 4000);
    if crc != Crc::None {
        let size = bytes.len() as u32 + 4;
        bytes[9..13].copy_from_slice(&size.to_le_bytes());
        let sum = crc32fast::hash(&bytes) ^ u32::from(crc == Crc::Wrong);
        bytes.extend(sum.to_le_bytes());
    }
    bytes
}

/// Inner events: IGNORABLE-typed (28) bodies of `sizes` bytes of text.
fn inner(sizes: &[usize]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, size)| format!("{i} FDB ").repeat(size / 6).into_bytes()).collect();
    let plain = bodies.iter().flat_map(|body| event_bytes(28, body, 0)).collect();
    (plain, bodies)
}

/// A stream reading what `packets` (event bytes, each sent as an OK packet) say, then the end.
fn stream_of(packets: Vec<Vec<u8>>) -> (DumpStream, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut server = Wire::new(Box::new(a));
    let writer = tokio::spawn(async move {
        for event in packets {
            let mut packet = vec![0x00];
            packet.extend(event);
            server.write(&packet).await.unwrap();
        }
        server.write(&[0xFE, 0, 0, 0, 0]).await.unwrap();
    });
    let stream = DumpStream {
        wire: Wire::new(Box::new(b)),
        capabilities: CapabilityFlags::empty(),
        events: EventStreamReader::new(BinlogVersion::Version4),
        payload: None,
    };
    (stream, writer)
}

/// Every event until the end of the stream, or the first error (with the events before it).
async fn read_all(stream: &mut DumpStream) -> (Vec<Event>, Option<DumpError>) {
    let mut events = Vec::new();
    while let Some(next) = stream.next().await {
        match next {
            Ok(event) => events.push(event),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

#[tokio::test]
async fn the_events_of_a_payload_come_out_one_at_a_time_and_whole() {
    // 12 MB of events, far more than the expansion's buffers hold at once.
    let (plain, bodies) = inner(&[4 << 20, 10, 8 << 20]);
    let compressed = zstd::encode_all(&plain[..], 3).unwrap();
    assert!(compressed.len() * 20 < plain.len(), "FDB text compresses well");
    let after = event_bytes(28, b"after the payload", 5000);
    let packets = vec![payload_event(compressed, TransactionPayloadCompressionType::ZSTD, plain.len(), Crc::None), after];
    let (mut stream, writer) = stream_of(packets);
    let (events, error) = read_all(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events.len(), 1 + bodies.len() + 1);
    let data = events[0].read_data();
    let Ok(Some(mysql_common::binlog::events::EventData::TransactionPayloadEvent(head))) = data else {
        panic!("the payload event comes first: {data:?}")
    };
    assert_eq!((events[0].header().log_pos(), head.uncompressed_size()), (4000, plain.len() as u64), "its end and declared size");
    for (event, body) in events[1..=bodies.len()].iter().zip(&bodies) {
        assert_eq!(event.header().event_type_raw(), 28);
        assert_eq!(event.header().log_pos(), 0, "inner events carry no position");
        assert_eq!(event.data(), &body[..]);
    }
    assert_eq!(events.last().unwrap().data(), b"after the payload", "the stream goes on after it");
    writer.await.unwrap();
}

#[tokio::test]
async fn a_payload_stored_uncompressed_expands_too() {
    let (plain, bodies) = inner(&[300_000, 20]);
    let (mut stream, writer) =
        stream_of(vec![payload_event(plain.clone(), TransactionPayloadCompressionType::NONE, plain.len(), Crc::None)]);
    let (events, error) = read_all(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events.len(), 1 + bodies.len());
    assert_eq!(events[2].data(), &bodies[1][..]);
    writer.await.unwrap();
}

#[tokio::test]
async fn a_payload_that_does_not_expand_is_an_error_not_an_empty_transaction() {
    let (plain, _) = inner(&[100_000, 100_000]);
    let compressed = zstd::encode_all(&plain[..], 3).unwrap();
    let mut garbled = compressed.clone();
    garbled[..4].copy_from_slice(b"nope"); // no zstd frame starts like this
    let truncated = compressed[..compressed.len() / 2].to_vec();
    for broken in [garbled, truncated] {
        let (mut stream, writer) = stream_of(vec![payload_event(broken, TransactionPayloadCompressionType::ZSTD, plain.len(), Crc::Good)]);
        let (events, error) = read_all(&mut stream).await;
        assert!(error.is_some(), "a broken payload must not read as events (or none): {} events", events.len());
        assert!(events.len() < 3, "not every event came out");
        drop(stream);
        writer.abort();
    }
}

#[tokio::test]
async fn a_payload_whose_checksum_does_not_match_never_hands_out_its_last_event() {
    let (plain, bodies) = inner(&[200_000, 200_000, 40]);
    let compressed = zstd::encode_all(&plain[..], 3).unwrap();
    let good = payload_event(compressed.clone(), TransactionPayloadCompressionType::ZSTD, plain.len(), Crc::Good);
    let (mut stream, writer) = stream_of(vec![good]);
    let (events, error) = read_all(&mut stream).await;
    assert!(error.is_none() && events.len() == 1 + bodies.len(), "a matching checksum: every event ({error:?})");
    writer.await.unwrap();

    let (mut stream, writer) = stream_of(vec![payload_event(compressed, TransactionPayloadCompressionType::ZSTD, plain.len(), Crc::Wrong)]);
    let (events, error) = read_all(&mut stream).await;
    let error = error.expect("a corrupt payload is an error").to_string();
    assert!(error.contains("checksum"), "{error}");
    assert!(events.len() < 1 + bodies.len(), "the last event (the commit) is held until the checksum is checked: {} events", events.len());
    drop(stream);
    writer.abort();
}

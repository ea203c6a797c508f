//! A MySQL transaction payload (`binlog_transaction_compression=ON`),
//! expanded from the wire as its bytes arrive.
//!
//! The whole transaction is one TRANSACTION_PAYLOAD event: a 19-byte
//! header, a few type-length-value fields, the compressed events, and the
//! event's CRC32. A weekly reload makes that event tens of MB; holding it
//! (and the event built from it) grew the process by some 28 MB per 100,000
//! row images. Here only the header and the fields are held: the compressed
//! bytes are read from the wire a chunk at a time, fed to zstd, and the
//! events inside are handed out one at a time as they complete. Memory
//! follows one inner event and two fixed buffers, never the transaction.
//!
//! The payload event itself is handed on first, rebuilt without its payload
//! (the same fields, `payload_size` 0, a checksum of its own), so the decoder
//! sees where the transaction ends and how many bytes of events it declared.
//! The event's real CRC32 is computed over the bytes as they stream and
//! checked at its end; the last inner event (the transaction's commit) is
//! handed out only after that check, so a corrupt payload never commits. A
//! payload that does not expand is an error, never an empty transaction.

use crc32fast::Hasher;
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::TransactionPayloadCompressionType;
use mysql_common::binlog::events::{Event, TransactionPayloadEvent};
use mysql_common::proto::MySerialize;
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

use super::DumpError;
use super::wire::{Reading, Wire};

/// Length of a binlog event header.
pub(super) const HEADER_LEN: usize = 19;
/// Length of an event's CRC32.
const CHECKSUM_LEN: usize = 4;
/// Compressed bytes read from the wire at a time.
const WIRE_CHUNK: usize = 64 * 1024;
/// Expanded bytes produced at a time.
const OUT_CHUNK: usize = 128 * 1024;

/// The payload event's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    algorithm: TransactionPayloadCompressionType,
    uncompressed: u64,
    payload_size: u64,
    /// Bytes the fields took on the wire.
    len: usize,
}

/// A transaction payload being expanded: what is left to read of it from
/// the wire, and the expanded bytes not yet handed out.
pub(super) struct Expansion {
    reading: Reading,
    /// Compressed bytes still on the wire.
    compressed_left: u64,
    /// The event's CRC32 so far, when it carries one.
    checksum: Option<Hasher>,
    /// `None`: the payload is stored uncompressed.
    decoder: Option<Decoder<'static>>,
    /// Compressed bytes read and not yet fed to the decoder (from `pending_at`).
    pending: Vec<u8>,
    pending_at: usize,
    /// Expanded bytes not yet handed out (from `plain_at`).
    plain: Vec<u8>,
    plain_at: usize,
    /// The decoder's output buffer.
    scratch: Box<[u8]>,
    /// Every compressed byte was read and expanded, and the checksum matched.
    finished: bool,
}

/// A payload event's `event_size` field.
pub(super) fn event_size(header: &[u8; HEADER_LEN]) -> usize {
    u32::from_le_bytes([header[9], header[10], header[11], header[12]]) as usize
}

fn broken(what: impl std::fmt::Display) -> DumpError {
    DumpError::Event(format!("a transaction payload does not expand: {what}"))
}

fn wire_error(source: std::io::Error) -> DumpError {
    DumpError::Io { step: "reading a transaction payload", source }
}

impl Expansion {
    /// Reads the payload event's fields after its `header` (already read,
    /// the rest of the packet is `reading`), and returns the expansion with
    /// the event to hand on first.
    pub(super) async fn start(
        wire: &mut Wire,
        mut reading: Reading,
        header: [u8; HEADER_LEN],
        events: &mut EventStreamReader,
    ) -> Result<(Self, Event), DumpError> {
        let mut checksum = Hasher::new();
        checksum.update(&header);
        let fields = read_fields(wire, &mut reading, &mut checksum).await?;
        let declared = event_size(&header);
        let trailing = declared
            .checked_sub(HEADER_LEN + fields.len)
            .and_then(|rest| rest.checked_sub(usize::try_from(fields.payload_size).ok()?))
            .ok_or_else(|| broken(format!("its fields declare {} payload bytes in an event of {declared}", fields.payload_size)))?;
        if trailing != 0 && trailing != CHECKSUM_LEN {
            return Err(broken(format!("{trailing} bytes follow its payload, where a checksum is 4 or none")));
        }
        let event = announce(&header, &fields, trailing == CHECKSUM_LEN, events)?;
        let decoder = match fields.algorithm {
            TransactionPayloadCompressionType::ZSTD => Some(Decoder::new().map_err(broken)?),
            TransactionPayloadCompressionType::NONE => None,
        };
        let expansion = Self {
            reading,
            compressed_left: fields.payload_size,
            checksum: (trailing == CHECKSUM_LEN).then_some(checksum),
            decoder,
            pending: Vec::new(),
            pending_at: 0,
            plain: Vec::new(),
            plain_at: 0,
            scratch: vec![0; OUT_CHUNK].into_boxed_slice(),
            finished: false,
        };
        Ok((expansion, event))
    }

    /// The next event inside the payload; `None` once it is all handed out.
    pub(super) async fn next_event(&mut self, wire: &mut Wire, events: &mut EventStreamReader) -> Result<Option<Event>, DumpError> {
        loop {
            if let Some(size) = self.complete_event()? {
                // The last event waits until the checksum is checked.
                if self.plain_at + size == self.plain.len() && !self.finished {
                    self.pull(wire).await?;
                    continue;
                }
                let bytes = &self.plain[self.plain_at..self.plain_at + size];
                let event = events.read_decompressed(bytes).map_err(broken)?.ok_or_else(|| broken("an empty inner event"))?;
                self.plain_at += size;
                if self.plain_at == self.plain.len() || self.plain_at >= OUT_CHUNK {
                    self.plain.drain(..self.plain_at);
                    self.plain_at = 0;
                }
                return Ok(Some(event));
            }
            if self.finished {
                return match self.plain.len() - self.plain_at {
                    0 => Ok(None),
                    left => Err(broken(format!("its last {left} bytes are not a whole event"))),
                };
            }
            self.pull(wire).await?;
        }
    }

    /// The size of the whole event at `plain_at`, once all of it is expanded.
    fn complete_event(&self) -> Result<Option<usize>, DumpError> {
        let rest = &self.plain[self.plain_at..];
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let size = event_size(header);
        if size < HEADER_LEN {
            return Err(broken(format!("an inner event of {size} bytes")));
        }
        Ok((rest.len() >= size).then_some(size))
    }

    /// Expands some more: reads a chunk from the wire when the last one is
    /// used up, and runs the decoder once. At the payload's end, checks the
    /// event's checksum.
    async fn pull(&mut self, wire: &mut Wire) -> Result<(), DumpError> {
        if self.pending_at == self.pending.len() && self.compressed_left > 0 {
            let n = WIRE_CHUNK.min(usize::try_from(self.compressed_left).unwrap_or(WIRE_CHUNK));
            self.pending.resize(n, 0);
            wire.read_exact(&mut self.reading, &mut self.pending).await.map_err(wire_error)?;
            if let Some(checksum) = &mut self.checksum {
                checksum.update(&self.pending);
            }
            self.compressed_left -= n as u64;
            self.pending_at = 0;
        }
        let input = &self.pending[self.pending_at..];
        let (produced, frame_done) = match &mut self.decoder {
            None => {
                self.plain.extend_from_slice(input);
                self.pending_at = self.pending.len();
                // Stored as is: it ends where its bytes do.
                (input.len(), self.compressed_left == 0)
            }
            Some(decoder) => {
                let mut input = InBuffer::around(input);
                let mut output = OutBuffer::around(&mut self.scratch[..]);
                let hint = decoder.run(&mut input, &mut output).map_err(broken)?;
                let produced = output.pos();
                self.pending_at += input.pos();
                self.plain.extend_from_slice(&self.scratch[..produced]);
                // 0: a frame is complete and flushed.
                (produced, hint == 0)
            }
        };
        let input_done = self.compressed_left == 0 && self.pending_at == self.pending.len();
        if frame_done && !input_done {
            return Err(broken("bytes follow the end of its zstd frame"));
        }
        if input_done && !frame_done && produced < OUT_CHUNK {
            return Err(broken("its zstd frame ends early (truncated or corrupt)"));
        }
        if input_done && frame_done {
            self.verify_checksum(wire).await?;
            self.finished = true;
        }
        Ok(())
    }

    /// Reads the event's CRC32 (if it has one) and compares it with the bytes that streamed.
    async fn verify_checksum(&mut self, wire: &mut Wire) -> Result<(), DumpError> {
        let Some(checksum) = self.checksum.take() else { return Ok(()) };
        let mut stored = [0u8; CHECKSUM_LEN];
        wire.read_exact(&mut self.reading, &mut stored).await.map_err(wire_error)?;
        let computed = checksum.finalize();
        if computed != u32::from_le_bytes(stored) {
            return Err(DumpError::Event(format!(
                "a transaction payload's checksum does not match (computed {computed:08x}, stored {:08x}): corrupted in transit",
                u32::from_le_bytes(stored)
            )));
        }
        Ok(())
    }
}

/// Reads the payload event's type-length-value fields, up to their end mark.
async fn read_fields(wire: &mut Wire, reading: &mut Reading, checksum: &mut Hasher) -> Result<Fields, DumpError> {
    let mut header = FieldReader { wire, reading, checksum, len: 0 };
    let (mut algorithm, mut uncompressed, mut payload_size) = (None, 0, None);
    loop {
        let field = header.lenenc().await?;
        if field == 0 {
            break;
        }
        let length = header.lenenc().await?;
        match field {
            1 => payload_size = Some(header.lenenc().await?),
            2 => {
                algorithm = Some(match header.lenenc().await? {
                    0 => TransactionPayloadCompressionType::ZSTD,
                    255 => TransactionPayloadCompressionType::NONE,
                    other => return Err(broken(format!("compression type {other} is not one MySQL writes (zstd or none)"))),
                })
            }
            3 => uncompressed = header.lenenc().await?,
            // A field of a later MySQL: skipped by its length, as MySQL's own reader does.
            _ => header.skip(length).await?,
        }
    }
    match (algorithm, payload_size) {
        (Some(algorithm), Some(payload_size)) => Ok(Fields { algorithm, uncompressed, payload_size, len: header.len }),
        _ => Err(broken("its header lacks the compression type or the payload size")),
    }
}

/// The payload event's header fields, read from the wire and checksummed.
struct FieldReader<'a> {
    wire: &'a mut Wire,
    reading: &'a mut Reading,
    checksum: &'a mut Hasher,
    /// Bytes read so far.
    len: usize,
}

impl FieldReader<'_> {
    async fn lenenc(&mut self) -> Result<u64, DumpError> {
        let bytes = read_lenenc(self.wire, self.reading).await?;
        self.checksum.update(&bytes);
        self.len += bytes.len();
        decode_lenenc(&bytes).ok_or_else(|| broken("a field of its header is not a length-encoded integer"))
    }

    async fn skip(&mut self, length: u64) -> Result<(), DumpError> {
        let length = usize::try_from(length).ok().filter(|l| *l <= WIRE_CHUNK).ok_or_else(|| broken("a header field over 64 KB"))?;
        let mut bytes = vec![0; length];
        self.wire.read_exact(self.reading, &mut bytes).await.map_err(wire_error)?;
        self.checksum.update(&bytes);
        self.len += length;
        Ok(())
    }
}

/// One length-encoded integer's bytes, as they arrive.
async fn read_lenenc(wire: &mut Wire, reading: &mut Reading) -> Result<Vec<u8>, DumpError> {
    let mut first = [0u8; 1];
    wire.read_exact(reading, &mut first).await.map_err(wire_error)?;
    let width = match first[0] {
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => 0,
    };
    let mut bytes = vec![first[0]; 1 + width];
    wire.read_exact(reading, &mut bytes[1..]).await.map_err(wire_error)?;
    Ok(bytes)
}

/// The value of one length-encoded integer's bytes.
fn decode_lenenc(bytes: &[u8]) -> Option<u64> {
    let (&first, rest) = bytes.split_first()?;
    if rest.is_empty() {
        return (first < 0xfb).then_some(u64::from(first));
    }
    let mut value = [0u8; 8];
    value.get_mut(..rest.len())?.copy_from_slice(rest);
    Some(u64::from_le_bytes(value))
}

/// The payload event as the decoder sees it: the same header and fields
/// with no payload bytes, and (when the stream carries checksums) a
/// checksum of its own.
fn announce(header: &[u8; HEADER_LEN], fields: &Fields, with_checksum: bool, events: &mut EventStreamReader) -> Result<Event, DumpError> {
    let mut body = Vec::new();
    TransactionPayloadEvent::new(0, fields.algorithm, fields.uncompressed, Vec::new()).serialize(&mut body);
    let size = HEADER_LEN + body.len() + if with_checksum { CHECKSUM_LEN } else { 0 };
    let mut bytes = header.to_vec();
    bytes[9..13].copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend(body);
    if with_checksum {
        let crc = crc32fast::hash(&bytes);
        bytes.extend(crc.to_le_bytes());
    }
    events.read(&bytes[..]).map_err(broken)?.ok_or_else(|| broken("its header does not parse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_encoded_integers_of_every_width() {
        assert_eq!(decode_lenenc(&[0x05]), Some(5));
        assert_eq!(decode_lenenc(&[0xfc, 0x34, 0x12]), Some(0x1234));
        assert_eq!(decode_lenenc(&[0xfd, 0x56, 0x34, 0x12]), Some(0x12_3456));
        assert_eq!(decode_lenenc(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 1]), Some(0x0100_0000_0000_0001));
        assert_eq!(decode_lenenc(&[0xfb]), None, "NULL is no size");
        assert_eq!(decode_lenenc(&[]), None);
    }
}

//! What every event fed to the decoder is checked for: its checksum, and
//! its share of an open transaction payload (an event of the outer stream
//! while the payload's inner events are missing means it was not expanded
//! whole). Refused, never skipped.

use mysql_common::binlog::consts::BinlogChecksumAlg;
use mysql_common::binlog::events::Event;

use super::Decoder;
use crate::mysql::SourceError;

impl Decoder {
    /// Counts the inner events of an open transaction payload (they carry
    /// log_pos 0) against the size it declared; an event of the outer stream
    /// while some are missing means the payload was not expanded whole.
    #[inline]
    pub(super) fn account_payload(&mut self, event: &Event) -> Result<(), SourceError> {
        let Some(unseen) = self.payload_unseen else { return Ok(()) };
        if event.header().log_pos() == 0 {
            let left = unseen.checked_sub(u64::from(event.header().event_size()));
            self.payload_unseen = left.filter(|&left| left > 0);
            if left.is_none() {
                return Err(self.decode_error(event, "events inside a transaction payload exceed the size it declares"));
            }
            return Ok(());
        }
        Err(self.decode_error(
            event,
            &format!(
                "the transaction payload ending at {} declared {unseen} more bytes of events than arrived: it could not be decompressed (corrupt, or an unknown compression). Refused, not skipped: check the source's binlog at that position",
                self.payload_end.unwrap_or_default()
            ),
        ))
    }

    /// Checks the event's CRC32 when the stream carries checksums (events
    /// inside a transaction payload carry none: the payload did).
    #[inline]
    pub(super) fn verify_checksum(&self, event: &Event) -> Result<(), SourceError> {
        // Events inside a transaction payload carry none (the payload did).
        if !event.footer().get_checksum_enabled() {
            return Ok(());
        }
        let Some(stored) = event.checksum() else { return Ok(()) };
        let Ok(Some(alg @ BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) = event.fde().footer().get_checksum_alg() else {
            return Ok(());
        };
        if event.calc_checksum(alg) != u32::from_le_bytes(stored) {
            let offset = u64::from(event.header().log_pos()).saturating_sub(u64::from(event.header().event_size()));
            return Err(SourceError::Checksum { file: self.file.clone(), offset });
        }
        Ok(())
    }
}

/// The 19 header bytes as they were on the wire, for checksum checks by hand.
#[inline]
pub(super) fn header_bytes(event: &Event) -> [u8; 19] {
    let h = event.header();
    let mut out = [0u8; 19];
    out[0..4].copy_from_slice(&h.timestamp().to_le_bytes());
    out[4] = h.event_type_raw();
    out[5..9].copy_from_slice(&h.server_id().to_le_bytes());
    out[9..13].copy_from_slice(&h.event_size().to_le_bytes());
    out[13..17].copy_from_slice(&h.log_pos().to_le_bytes());
    out[17..19].copy_from_slice(&h.flags_raw().to_le_bytes());
    out
}

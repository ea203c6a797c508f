//! drugsync's own replication connection: `COM_REGISTER_SLAVE`, then
//! `COM_BINLOG_DUMP` or `COM_BINLOG_DUMP_GTID`, then events.
//!
//! mysql_async's binlog stream expands a MySQL transaction payload
//! (`binlog_transaction_compression=ON`) into one buffer of its declared
//! uncompressed size before handing out the first event inside: a weekly
//! reload compressed into one transaction took the process from 30 MB to
//! hundreds. This stream hands out the payload event and then the events
//! inside it as zstd expands them, a window at a time, so memory follows the
//! compressed size of one event, never the expanded size of a transaction.
//! A payload that does not expand (corrupt, or an unknown compression) is an
//! error, never an empty transaction.
//!
//! Everything else (which queries, which position, the decoding) stays with
//! [`super::binlog`]; the packets are mysql_common's, as mysql_async's are.

mod auth;
mod tls;
mod wire;

use std::io::{self, BufReader, Cursor, Read};

use mysql_async::Opts;
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::{BinlogVersion, TransactionPayloadCompressionType};
use mysql_common::binlog::events::{Event, TransactionPayloadEvent};
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::binlog_request::BinlogRequest;
use mysql_common::packets::{ComRegisterSlave, ErrPacket};

use wire::Wire;

/// Event type of MySQL's TRANSACTION_PAYLOAD_EVENT.
const TRANSACTION_PAYLOAD: u8 = 40;

/// Bytes read from a payload's expansion at a time.
const EXPANSION_BUFFER: usize = 64 * 1024;

/// What can go wrong on the replication connection.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The network or the byte stream failed (transient: reconnect).
    #[error("replication connection, {step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The failure.
        source: io::Error,
    },
    /// The server answered with an error packet.
    #[error("{}", .0.message)]
    Server(mysql_async::ServerError),
    /// TLS could not be set up as `mysql.tls` asks.
    #[error("{0}")]
    Tls(String),
    /// The server asks for a login drugsync cannot give.
    #[error("{0}")]
    Login(String),
    /// The server sent something the protocol does not allow here.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// An event could not be read or a payload not expanded.
    #[error("{0}")]
    Event(String),
}

impl DumpError {
    fn io(step: &'static str) -> impl FnOnce(io::Error) -> DumpError {
        move |source| DumpError::Io { step, source }
    }

    /// The server's error packet `packet`.
    fn server(packet: &[u8], capabilities: CapabilityFlags) -> DumpError {
        match ParseBuf(packet).parse::<ErrPacket>(capabilities) {
            Ok(ErrPacket::Error(e)) => DumpError::Server(mysql_async::ServerError {
                code: e.error_code(),
                message: e.message_str().into_owned(),
                state: e.sql_state_ref().map(|s| s.as_str().into_owned()).unwrap_or_default(),
            }),
            _ => DumpError::Protocol(format!("an error packet that does not parse: {:02x?}", &packet[..packet.len().min(16)])),
        }
    }
}

/// Where and how to start streaming.
pub struct DumpRequest<'a> {
    /// This replica's `server_id`.
    pub server_id: u32,
    /// Reported as the replica's host (`SHOW REPLICAS`).
    pub hostname: &'a [u8],
    /// Statements run first (heartbeat period, MariaDB's GTID settings).
    pub setup: &'a [String],
    /// File and offset, or GTID set, as mysql_common builds the command.
    pub binlog: BinlogRequest<'a>,
}

/// A binlog event stream on its own connection.
pub struct DumpStream {
    wire: Wire,
    capabilities: CapabilityFlags,
    /// Table maps and the format description, as mysql_common tracks them.
    events: EventStreamReader,
    /// The transaction payload being expanded, if any.
    payload: Option<Expansion>,
}

/// A transaction payload's compressed bytes, expanded as they are read.
struct Expansion(BufReader<Box<dyn Read + Send>>);

impl DumpStream {
    /// Logs in with `opts` (TLS as they say), runs `request.setup`,
    /// registers as a replica and asks for the binlog.
    pub async fn open(opts: &Opts, request: DumpRequest<'_>) -> Result<Self, DumpError> {
        let auth::LoggedIn { mut wire, capabilities } = auth::log_in(opts).await?;
        let mut statements = vec!["SET @master_binlog_checksum = 'ALL'".to_owned()];
        statements.extend(request.setup.iter().cloned());
        for statement in &statements {
            let mut command = vec![0x03]; // COM_QUERY
            command.extend_from_slice(statement.as_bytes());
            wire.new_command();
            wire.write(&command).await.map_err(DumpError::io("setup"))?;
            expect_ok(&mut wire, capabilities, statement).await?;
        }
        let register = ComRegisterSlave::new(request.server_id).with_hostname(request.hostname);
        wire.new_command();
        auth::send(&mut wire, &register).await?;
        expect_ok(&mut wire, capabilities, "COM_REGISTER_SLAVE").await?;
        wire.new_command();
        auth::send(&mut wire, &request.binlog.as_cmd()).await?;
        Ok(Self { wire, capabilities, events: EventStreamReader::new(BinlogVersion::Version4), payload: None })
    }

    /// The next event: the events of a transaction payload follow the
    /// payload event itself, as they expand. `None` when the server ends the
    /// stream.
    pub async fn next(&mut self) -> Option<Result<Event, DumpError>> {
        if let Some(expansion) = &mut self.payload {
            match self.events.read_decompressed(&mut expansion.0) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => self.payload = None,
                Err(e) => {
                    self.payload = None;
                    return Some(Err(DumpError::Event(format!("a transaction payload does not expand: {e}"))));
                }
            }
        }
        let packet = match self.wire.read().await {
            Ok(packet) => packet,
            Err(e) => return Some(Err(DumpError::Io { step: "reading the binlog", source: e })),
        };
        match packet.first() {
            Some(0x00) => {}
            Some(0xFF) => return Some(Err(DumpError::server(&packet, self.capabilities))),
            // End of stream (an EOF packet).
            Some(0xFE) if packet.len() < 8 => return None,
            _ => return Some(Err(DumpError::Protocol(format!("unexpected packet {:02x?}", &packet[..packet.len().min(16)])))),
        }
        let event = match self.events.read(&packet[1..]) {
            Ok(Some(event)) => event,
            Ok(None) => return Some(Err(DumpError::Protocol("an empty event packet".into()))),
            Err(e) => return Some(Err(DumpError::Event(e.to_string()))),
        };
        if event.header().event_type_raw() == TRANSACTION_PAYLOAD {
            match Expansion::of(&event) {
                Ok(expansion) => self.payload = Some(expansion),
                Err(e) => return Some(Err(DumpError::Event(e))),
            }
        }
        Some(Ok(event))
    }
}

impl Expansion {
    /// The events inside `event` (a TRANSACTION_PAYLOAD), to be expanded as read.
    fn of(event: &Event) -> Result<Self, String> {
        let payload = event.read_event::<TransactionPayloadEvent<'_>>().map_err(|e| format!("a transaction payload event: {e}"))?;
        let compressed = Cursor::new(payload.payload_raw().to_vec());
        let plain: Box<dyn Read + Send> = match payload.algorithm() {
            TransactionPayloadCompressionType::ZSTD => {
                Box::new(zstd::stream::read::Decoder::new(compressed).map_err(|e| format!("a zstd payload: {e}"))?)
            }
            TransactionPayloadCompressionType::NONE => Box::new(compressed),
        };
        Ok(Self(BufReader::with_capacity(EXPANSION_BUFFER, plain)))
    }
}

/// Reads the answer to a command that returns no rows.
async fn expect_ok(wire: &mut Wire, capabilities: CapabilityFlags, what: &str) -> Result<(), DumpError> {
    let packet = wire.read().await.map_err(DumpError::io("setup"))?;
    match packet.first() {
        Some(0x00) => Ok(()),
        Some(0xFF) => Err(DumpError::server(&packet, capabilities)),
        _ => Err(DumpError::Protocol(format!("{what} answered with rows or something else than OK"))),
    }
}

#[cfg(test)]
mod tests;

//! drugsync's own replication connection: `COM_REGISTER_SLAVE`, then
//! `COM_BINLOG_DUMP` or `COM_BINLOG_DUMP_GTID`, then events.
//!
//! mysql_async's binlog stream expands a MySQL transaction payload
//! (`binlog_transaction_compression=ON`) into one buffer of its declared
//! uncompressed size before handing out the first event inside: a weekly
//! reload compressed into one transaction took the process from 30 MB to
//! hundreds. This stream reads a payload event from the wire as it arrives
//! and hands out the events inside it as zstd expands them ([`payload`]), so
//! memory follows one inner event, never the transaction, compressed or not.
//! A payload that does not expand (corrupt, or an unknown compression) is an
//! error, never an empty transaction.
//!
//! Everything else (which queries, which position, the decoding) stays with
//! [`super::binlog`]; the packets are mysql_common's, as mysql_async's are.

mod auth;
mod payload;
mod tls;
mod wire;

use std::io;

use mysql_async::Opts;
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::Event;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::binlog_request::BinlogRequest;
use mysql_common::packets::{ComRegisterSlave, ErrPacket};

use wire::Wire;

/// Event type of MySQL's TRANSACTION_PAYLOAD_EVENT.
const TRANSACTION_PAYLOAD: u8 = 40;

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
    payload: Option<payload::Expansion>,
}

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
            match expansion.next_event(&mut self.wire, &mut self.events).await {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => self.payload = None,
                Err(e) => {
                    self.payload = None;
                    return Some(Err(e));
                }
            }
        }
        self.next_packet().await.transpose()
    }

    /// Reads the next packet: an event (a transaction payload's header only,
    /// its contents then expand from the wire), an error, or the end.
    async fn next_packet(&mut self) -> Result<Option<Event>, DumpError> {
        let step = "reading the binlog";
        let mut reading = self.wire.begin().await.map_err(DumpError::io(step))?;
        let mut status = [0u8; 1];
        self.wire.read_exact(&mut reading, &mut status).await.map_err(DumpError::io(step))?;
        if status[0] != 0x00 {
            let mut packet = status.to_vec();
            self.wire.read_rest(&mut reading, &mut packet).await.map_err(DumpError::io(step))?;
            return match packet[0] {
                0xFF => Err(DumpError::server(&packet, self.capabilities)),
                // End of stream (an EOF packet).
                0xFE if packet.len() < 8 => Ok(None),
                _ => Err(DumpError::Protocol(format!("unexpected packet {:02x?}", &packet[..packet.len().min(16)]))),
            };
        }
        let mut header = [0u8; payload::HEADER_LEN];
        let mut event = Vec::new();
        match self.wire.read_exact(&mut reading, &mut header).await {
            Ok(()) if header[4] == TRANSACTION_PAYLOAD => {
                let (expansion, event) = payload::Expansion::start(&mut self.wire, reading, header, &mut self.events).await?;
                self.payload = Some(expansion);
                return Ok(Some(event));
            }
            Ok(()) => event.extend_from_slice(&header),
            // Shorter than a header: mysql_common says what is wrong with it.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(DumpError::io(step)(e)),
        }
        self.wire.read_rest(&mut reading, &mut event).await.map_err(DumpError::io(step))?;
        match self.events.read(&event[..]) {
            Ok(Some(event)) => Ok(Some(event)),
            Ok(None) => Err(DumpError::Protocol("an empty event packet".into())),
            Err(e) => Err(DumpError::Event(e.to_string())),
        }
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

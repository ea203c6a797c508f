//! MySQL protocol packets over a byte stream: a 3-byte little-endian length,
//! a sequence number, then the payload; payloads of 16 MB - 1 and more
//! continue in the next packet.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream a connection runs on: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The largest payload one packet carries.
const MAX_CHUNK: usize = 0xFF_FFFF;

/// The largest payload drugsync accepts: MySQL's own ceiling for
/// `max_allowed_packet` (1 GB). A binlog event is one payload.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// Where the reading of one payload stands (see [`Wire::begin`]).
#[derive(Debug)]
pub struct Reading {
    /// Bytes left in the current packet.
    left: usize,
    /// The current packet is the payload's last (shorter than the largest).
    last: bool,
    /// Bytes the payload's packets declared so far.
    total: usize,
}

/// Packets in both directions of one connection, numbered as the protocol
/// requires (every command starts again at 0).
pub struct Wire {
    io: Box<dyn Io>,
    seq: u8,
}

impl Wire {
    /// A connection's packets on `io`.
    pub fn new(io: Box<dyn Io>) -> Self {
        Self { io, seq: 0 }
    }

    /// Runs `upgrade` on the byte stream (TLS after the SSL request), keeping
    /// the sequence where it is: the handshake goes on over the new stream.
    pub async fn upgrade<F, Fut>(self, upgrade: F) -> io::Result<Self>
    where
        F: FnOnce(Box<dyn Io>) -> Fut,
        Fut: std::future::Future<Output = io::Result<Box<dyn Io>>>,
    {
        Ok(Self { io: upgrade(self.io).await?, seq: self.seq })
    }

    /// Starts a new command: its first packet is number 0.
    pub fn new_command(&mut self) {
        self.seq = 0;
    }

    /// Reads one payload (joined across continuation packets).
    pub async fn read(&mut self) -> io::Result<Vec<u8>> {
        let mut reading = self.begin().await?;
        let mut payload = Vec::new();
        self.read_rest(&mut reading, &mut payload).await?;
        Ok(payload)
    }

    /// Starts reading a payload piece by piece (its first packet's header):
    /// for a payload too large to hold, such as a compressed transaction.
    pub async fn begin(&mut self) -> io::Result<Reading> {
        let len = self.packet_header().await?;
        Ok(Reading { left: len, last: len < MAX_CHUNK, total: len })
    }

    /// Reads up to `buf.len()` bytes of the payload `reading` is in; 0 at its end.
    pub async fn read_some(&mut self, reading: &mut Reading, buf: &mut [u8]) -> io::Result<usize> {
        while reading.left == 0 {
            if reading.last || buf.is_empty() {
                return Ok(0);
            }
            let len = self.packet_header().await?;
            reading.total += len;
            if reading.total > MAX_PAYLOAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a packet over {MAX_PAYLOAD} bytes")));
            }
            reading.left = len;
            reading.last = len < MAX_CHUNK;
        }
        let n = buf.len().min(reading.left);
        self.io.read_exact(&mut buf[..n]).await?;
        reading.left -= n;
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes of the payload; an error if it ends first.
    pub async fn read_exact(&mut self, reading: &mut Reading, buf: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_some(reading, &mut buf[filled..]).await? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a packet ended before its declared contents")),
                n => filled += n,
            }
        }
        Ok(())
    }

    /// Appends the rest of the payload to `into`.
    pub async fn read_rest(&mut self, reading: &mut Reading, into: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let start = into.len();
            into.resize(start + reading.left.max(1), 0);
            let n = self.read_some(reading, &mut into[start..]).await?;
            into.truncate(start + n);
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// One packet's header: its length; checks its number.
    async fn packet_header(&mut self) -> io::Result<usize> {
        let mut header = [0u8; 4];
        self.io.read_exact(&mut header).await?;
        let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if header[3] != self.seq {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("packet out of order: number {} where {} was due", header[3], self.seq),
            ));
        }
        self.seq = self.seq.wrapping_add(1);
        Ok(len)
    }

    /// Writes one payload (split into continuation packets as needed).
    pub async fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut rest = payload;
        loop {
            let chunk = &rest[..rest.len().min(MAX_CHUNK)];
            let len = chunk.len();
            let header = [len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq];
            self.seq = self.seq.wrapping_add(1);
            self.io.write_all(&header).await?;
            self.io.write_all(chunk).await?;
            rest = &rest[len..];
            // A payload that fills its last packet exactly ends with an empty one.
            if len < MAX_CHUNK {
                break;
            }
        }
        self.io.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ends of a connection in memory.
    fn pair() -> (Wire, Wire) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (Wire::new(Box::new(a)), Wire::new(Box::new(b)))
    }

    #[tokio::test]
    async fn payloads_of_every_size_cross_whole_and_numbered() {
        let (mut client, mut server) = pair();
        let sizes = [0, 1, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 5, 2 * MAX_CHUNK];
        let writer = tokio::spawn(async move {
            for size in sizes {
                let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                client.write(&payload).await.unwrap();
            }
            client
        });
        for size in sizes {
            let payload = server.read().await.unwrap();
            assert_eq!(payload.len(), size);
            assert!(payload.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_payload_read_piece_by_piece_crosses_its_packets() {
        let (mut client, mut server) = pair();
        let size = 2 * MAX_CHUNK + 10;
        let writer = tokio::spawn(async move {
            client.write(&(0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>()).await.unwrap();
            client.write(b"next").await.unwrap();
            client
        });
        let mut reading = server.begin().await.unwrap();
        let mut head = [0u8; 7];
        server.read_exact(&mut reading, &mut head).await.unwrap();
        assert_eq!(head, [0, 1, 2, 3, 4, 5, 6]);
        let mut rest = Vec::new();
        server.read_rest(&mut reading, &mut rest).await.unwrap();
        assert_eq!(rest.len(), size - 7);
        assert!(rest.iter().enumerate().all(|(i, b)| *b == ((i + 7) % 251) as u8), "continuation packets joined in order");
        assert_eq!(server.read_some(&mut reading, &mut [0u8; 4]).await.unwrap(), 0, "the payload ended");
        assert!(server.read_exact(&mut reading, &mut [0u8; 1]).await.is_err(), "nothing past its end");
        assert_eq!(server.read().await.unwrap(), b"next", "the next payload is whole");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_packet_out_of_order_is_refused() {
        let (mut client, mut server) = pair();
        client.write(b"first").await.unwrap();
        client.new_command(); // numbered 0 again, where the reader expects 1
        client.write(b"second").await.unwrap();
        assert_eq!(server.read().await.unwrap(), b"first");
        let err = server.read().await.unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}

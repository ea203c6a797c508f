//! Getting a MySQL connection without hanging: a server that accepts TCP but
//! never finishes the handshake (restarting, in crash recovery, a half-open
//! link) must count as a transient failure, not stall the replicator.

use std::time::Duration;

use mysql_async::{Conn, Pool};

use super::SourceError;

/// Longest wait for a connection (TCP, handshake and session setup).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection from `pool`, or a transient error after [`CONNECT_TIMEOUT`].
pub async fn pooled(pool: &Pool) -> Result<Conn, SourceError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, pool.get_conn()).await {
        Ok(conn) => conn.map_err(|e| SourceError::from_driver(e, "connect")),
        Err(_) => Err(SourceError::Connection(format!("no MySQL connection within {}s", CONNECT_TIMEOUT.as_secs()))),
    }
}

//! Facts about the source server: flavour, binlog positions and GTID state.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::error::SourceError;

use crate::position::Position;

pub use super::dialect::Flavor;

/// The server's current end of binlog, by the statement its dialect knows
/// (`SHOW MASTER STATUS`, `SHOW BINARY LOG STATUS` on MySQL 8.2+, `SHOW
/// BINLOG STATUS` on MariaDB 10.5.2+), with its GTID state.
pub async fn current_position(conn: &mut Conn) -> Result<Position, SourceError> {
    let dialect = super::dialect::detect(conn).await?;
    let server = identity(conn, dialect.flavor).await?;
    let query = dialect.binlog_status_query();
    let row: Option<Row> = conn.query_first(query).await.map_err(|e| SourceError::from_driver(e, query))?;
    let row = row.ok_or_else(|| {
        SourceError::Misconfigured(format!(
            "binary logging is off ({query} is empty): enable log_bin (Aurora: set binlog_format=ROW in the DB cluster parameter group)"
        ))
    })?;
    let file: String = row.get(0).ok_or_else(|| SourceError::Misconfigured(format!("{query} returned no file")))?;
    let offset: u64 = row.get(1).ok_or_else(|| SourceError::Misconfigured(format!("{query} returned no position")))?;
    let mut position = Position::new(file, offset).on_server(Some(server));
    // MySQL: Executed_Gtid_Set is the 5th column; MariaDB has none and answers BINLOG_GTID_POS.
    let executed: Option<String> = row.get::<Option<String>, _>(4).flatten().filter(|s| !s.trim().is_empty());
    position.gtid = match executed {
        Some(set) => Some(set.split_whitespace().collect()),
        None => gtid_state_at(conn, &position).await?,
    };
    Ok(position)
}

/// Which server `conn` is connected to, as positions record it
/// ([`Position::server`]): MySQL's `@@server_uuid` (unique per server, kept in
/// its data directory), MariaDB's `@@server_id` (unique in a replication
/// topology, which MariaDB requires).
pub async fn identity(conn: &mut Conn, flavor: Flavor) -> Result<String, SourceError> {
    let query = match flavor {
        Flavor::Mysql => "SELECT @@GLOBAL.server_uuid",
        Flavor::Mariadb => "SELECT @@GLOBAL.server_id",
    };
    let value: Option<String> = super::query::query_first(conn, query).await?;
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| SourceError::Misconfigured(format!("{query} answered nothing")))
}

/// MariaDB's GTID state at a binlog file and offset (`BINLOG_GTID_POS`);
/// `None` on MySQL, or when the server no longer has that file.
pub async fn gtid_state_at<Q: Queryable>(conn: &mut Q, position: &Position) -> Result<Option<String>, SourceError> {
    let query = "SELECT BINLOG_GTID_POS(?, ?)";
    match conn.exec_first::<Option<String>, _, _>(query, (position.file.as_str(), position.offset)).await {
        Ok(state) => Ok(state.flatten().filter(|s| !s.is_empty())),
        // MySQL has no such function: its GTID set comes from SHOW MASTER STATUS.
        Err(mysql_async::Error::Server(_)) => Ok(None),
        Err(e) => Err(SourceError::from_driver(e, query)),
    }
}

/// Checks that the server still has `position` (its file is listed by
/// `SHOW BINARY LOGS` and the offset is inside it); the error lists what it has.
pub async fn check_position_exists(conn: &mut Conn, position: &Position) -> Result<(), SourceError> {
    let flavor = super::dialect::detect(conn).await?.flavor;
    let here = identity(conn, flavor).await?;
    if must_resume_by_gtid(position, &here)? {
        return Ok(());
    }
    if position.is_gtid_only() {
        // The server checks GTID availability when the stream starts (error 1236 if purged).
        let gtid = position.gtid.as_deref().unwrap_or_default();
        return super::gtid::GtidState::parse(gtid).map(drop).map_err(|e| SourceError::PositionUnavailable {
            position: Box::new(position.clone()),
            message: format!("not a GTID state: {e}"),
        });
    }
    let query = "SHOW BINARY LOGS";
    let logs: Vec<Row> = conn.query(query).await.map_err(|e| SourceError::from_driver(e, query))?;
    let files: Vec<(String, u64)> = logs.into_iter().filter_map(|row| Some((row.get::<String, _>(0)?, row.get::<u64, _>(1)?))).collect();
    match files.iter().find(|(name, _)| *name == position.file) {
        Some((_, size)) if position.offset <= *size => Ok(()),
        found => {
            let range = match (files.first(), files.last()) {
                (Some(first), Some(last)) => format!("{}:4 .. {}:{}", first.0, last.0, last.1),
                _ => "nothing".into(),
            };
            let why = if found.is_some() { "the offset is past the end of that file" } else { "that file is not on the server (purged?)" };
            Err(SourceError::PositionUnavailable {
                position: Box::new(position.clone()),
                message: format!("{why}; the server has {range}"),
            })
        }
    }
}

/// Whether `position` must be resumed by its GTID state on server `here`:
/// its file and offset are another server's (a failover, a restored copy),
/// where an offset means nothing even in a file of the same name. Without a
/// GTID state such a position cannot be resumed at all (the error says so).
pub fn must_resume_by_gtid(position: &Position, here: &str) -> Result<bool, SourceError> {
    match (position.is_from_another_server(here), &position.gtid) {
        (false, _) => Ok(false),
        (true, Some(_)) => Ok(true),
        (true, None) => Err(another_server(position, here)),
    }
}

/// Why a position of another server without a GTID state cannot be resumed at.
fn another_server(position: &Position, here: &str) -> SourceError {
    SourceError::PositionUnavailable {
        position: Box::new(position.clone()),
        message: format!(
            "it was stored on server {}, and this is server {here} (a failover or a restored copy): an offset in another server's binlog means nothing here, even in a file of the same name, and the position has no GTID state to resume by (turn GTIDs on to resume across servers)",
            position.server.as_deref().unwrap_or("?")
        ),
    }
}

/// MariaDB's exact snapshot position; `None` on servers without it (MySQL).
pub async fn snapshot_position<Q: Queryable>(conn: &mut Q) -> Result<Option<Position>, SourceError> {
    let query = "SHOW STATUS LIKE 'binlog_snapshot_%'";
    let rows: Vec<Row> = conn.query(query).await.map_err(|e| SourceError::from_driver(e, query))?;
    let mut file = None;
    let mut offset = None;
    for row in rows {
        let name: Option<String> = row.get(0);
        let value: Option<String> = row.get(1);
        match name.as_deref() {
            Some("Binlog_snapshot_file") => file = value.filter(|v| !v.is_empty()),
            Some("Binlog_snapshot_position") => offset = value.and_then(|v| v.parse::<u64>().ok()),
            _ => {}
        }
    }
    Ok(file.zip(offset).map(|(file, offset)| Position::new(file, offset)))
}

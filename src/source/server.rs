//! Facts about the source server: flavour, current binlog position, and the
//! binlog settings drugsync cannot work without.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::error::SourceError;
use crate::position::Position;

/// MySQL (Aurora) or MariaDB: they differ in GTIDs and a few commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MySQL 8 / Aurora MySQL 3.
    Mysql,
    /// MariaDB 10.5+.
    Mariadb,
}

/// Detects the server flavour from `VERSION()`.
pub async fn flavor(conn: &mut Conn) -> Result<Flavor, SourceError> {
    let version: Option<String> = query_first(conn, "SELECT VERSION()").await?;
    Ok(if version.unwrap_or_default().to_ascii_lowercase().contains("mariadb") { Flavor::Mariadb } else { Flavor::Mysql })
}

/// The server's current end of binlog (`SHOW MASTER STATUS`, or `SHOW BINARY LOG STATUS` on MySQL 8.4+).
pub async fn current_position(conn: &mut Conn) -> Result<Position, SourceError> {
    let mut row: Option<Row> = None;
    for query in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        match conn.query_first::<Row, _>(query).await {
            Ok(found) => {
                row = found;
                break;
            }
            Err(mysql_async::Error::Server(_)) => continue,
            Err(e) => return Err(SourceError::from_driver(e, query)),
        }
    }
    let row = row.ok_or_else(|| {
        SourceError::Misconfigured("binary logging is off (SHOW MASTER STATUS is empty): enable log_bin (Aurora: set binlog_format=ROW in the DB cluster parameter group)".into())
    })?;
    let file: String = row.get(0).ok_or_else(|| SourceError::Misconfigured("SHOW MASTER STATUS returned no file".into()))?;
    let offset: u64 = row.get(1).ok_or_else(|| SourceError::Misconfigured("SHOW MASTER STATUS returned no position".into()))?;
    let mut position = Position::new(file, offset);
    // MySQL: Executed_Gtid_Set is the 5th column; MariaDB has none and answers BINLOG_GTID_POS.
    let executed: Option<String> = row.get::<Option<String>, _>(4).flatten().filter(|s| !s.trim().is_empty());
    position.gtid = match executed {
        Some(set) => Some(set.split_whitespace().collect()),
        None => gtid_state_at(conn, &position).await?,
    };
    Ok(position)
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

/// Checks the binlog settings row-level CDC needs; each failure says how to fix it.
pub async fn check_binlog_settings(conn: &mut Conn) -> Result<(), SourceError> {
    let fix = "set it in the server config (Aurora: the DB cluster parameter group) and restart the writer";
    let log_bin: Option<String> = query_first(conn, "SELECT @@GLOBAL.log_bin").await?;
    if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
        return Err(SourceError::Misconfigured(format!("log_bin is off; {fix}")));
    }
    for (variable, wanted) in [("binlog_format", "ROW"), ("binlog_row_image", "FULL"), ("binlog_row_metadata", "FULL")] {
        let value: Option<String> = query_first(conn, &format!("SELECT @@GLOBAL.{variable}")).await.unwrap_or(None);
        let value = value.unwrap_or_else(|| "(not supported)".into());
        if !value.eq_ignore_ascii_case(wanted) {
            return Err(SourceError::Misconfigured(format!(
                "{variable} is {value}, drugsync needs {wanted} (column names and before images come from the binlog); {fix}"
            )));
        }
    }
    Ok(())
}

async fn query_first(conn: &mut Conn, query: &str) -> Result<Option<String>, SourceError> {
    conn.query_first::<Option<String>, _>(query).await.map(Option::flatten).map_err(|e| SourceError::from_driver(e, query))
}

/// Checks that the server still has `position` (its file is listed by
/// `SHOW BINARY LOGS` and the offset is inside it); the error lists what it has.
pub async fn check_position_exists(conn: &mut Conn, position: &Position) -> Result<(), SourceError> {
    if position.is_gtid_only() {
        // The server checks GTID availability when the stream starts (error 1236 if purged).
        let gtid = position.gtid.as_deref().unwrap_or_default();
        return super::gtid::GtidState::parse(gtid)
            .map(drop)
            .map_err(|e| SourceError::PositionUnavailable { position: position.to_string(), message: format!("not a GTID state: {e}") });
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
            Err(SourceError::PositionUnavailable { position: position.to_string(), message: format!("{why}; the server has {range}") })
        }
    }
}

/// Checks that the mapping's tables and columns exist and that `select_sql`
/// runs and yields every index field; the error names the config field.
pub async fn check_mapping(conn: &mut Conn, config: &crate::config::Config) -> Result<(), SourceError> {
    let schema = &config.mysql.schema;
    for (n, rule) in config.mapping.tables.iter().enumerate() {
        let query = "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?";
        let found: Option<u64> = conn
            .exec_first(query, (schema.as_str(), rule.table.as_str(), rule.column.as_str()))
            .await
            .map_err(|e| SourceError::from_driver(e, query))?;
        if found.unwrap_or(0) == 0 {
            return Err(SourceError::Misconfigured(format!(
                "config field mapping.tables[{n}]: `{schema}`.`{}` has no column `{}` (or the user cannot see it: GRANT SELECT ON {schema}.*)",
                rule.table, rule.column
            )));
        }
    }
    let m = &config.mapping;
    let query = format!("SELECT * FROM ({} WHERE ({}) LIMIT 0) AS documents", m.select_sql.trim(), m.filter_sql);
    let result = conn
        .query_iter(&query)
        .await
        .map_err(|e| SourceError::Misconfigured(format!("config field mapping.select_sql / mapping.filter_sql does not run: {e}")))?;
    let columns: Vec<String> = result.columns_ref().iter().map(|c| c.name_str().to_ascii_lowercase()).collect();
    result.drop_result().await.map_err(|e| SourceError::from_driver(e, &query))?;
    for field in &config.index.fields {
        if !columns.contains(&field.name.to_ascii_lowercase()) {
            return Err(SourceError::Misconfigured(format!(
                "config field mapping.select_sql returns no column aliased `{}` (listed in index.fields)",
                field.name
            )));
        }
    }
    Ok(())
}

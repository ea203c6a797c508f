//! Errors of the source side (MySQL connections, binlog stream, SQL).

use crate::error::{Classify, ErrorClass};

/// MySQL error 1236: the requested binlog position is gone (purged) or invalid.
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// MySQL's "Cannot use WAIT_FOR_EXECUTED_GTID_SET when GTID_MODE = OFF".
pub const ER_GTID_MODE_OFF: u16 = 3062;

/// MySQL's "Table 'x' doesn't exist".
pub const ER_NO_SUCH_TABLE: u16 = 1146;

/// Why reading the source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Network, restart, timeout: reconnect and resume from the last position.
    #[error("MySQL connection problem: {0}")]
    Connection(String),
    /// No event (not even a heartbeat) arrived within three heartbeat periods.
    #[error("binlog stream silent for {secs}s (no heartbeat); reconnecting")]
    Silent {
        /// Seconds waited.
        secs: u64,
    },
    /// An event's CRC32 did not match: corrupted in transit; re-read it.
    #[error("binlog event checksum mismatch at {file}:{offset}")]
    Checksum {
        /// File being read.
        file: String,
        /// Offset of the event.
        offset: u64,
    },
    /// The server cannot serve the requested position (usually purged binlogs).
    #[error(
        "the server cannot stream from {position}: {message}. The binlog was probably purged (raise Aurora's 'binlog retention hours'). With pipeline.on_lost_sync = reconcile drugsync repairs and continues by itself; otherwise run `drugsync --reconcile`, then restart with --replay-from a position the server has (SHOW BINARY LOGS), or remove the checkpoint file for a fresh initial load"
    )]
    PositionUnavailable {
        /// Requested position.
        position: Box<crate::position::Position>,
        /// Server message.
        message: String,
    },
    /// The server refused the user: wrong credentials, a missing privilege, or
    /// a user that requires TLS connecting without it.
    #[error(
        "MySQL refused access: {message}. Check the user and password (mysql.url, DRUGSYNC_MYSQL_URL or mysql.secret_arn), set mysql.tls.mode if the user was created with REQUIRE SSL, and compare the user's grants with docs/sources.md (REPLICATION SLAVE, REPLICATION CLIENT ON *.*; SELECT ON the schema)"
    )]
    AccessDenied {
        /// Server message (names the user, never the password).
        message: String,
    },
    /// The TLS handshake failed: the certificate is not trusted or names
    /// another host, or the server has no TLS. Retrying cannot fix it.
    #[error(
        "TLS to MySQL failed: {0}. Check mysql.tls: ca_file must hold the CA that signed the server certificate (Aurora: the RDS global bundle), verify-identity needs url's host to be a name in the certificate (the cluster endpoint, not an IP), and the server must have TLS enabled"
    )]
    Tls(String),
    /// The server's configuration makes correct replication impossible.
    #[error("source misconfigured: {0}")]
    Misconfigured(String),
    /// A transaction whose changed rows the binlog cannot name, with
    /// `pipeline.on_lost_sync = "stop"`.
    #[error(
        "the binlog cannot say which rows changed at {position}: {refusal}. drugsync stopped before passing it (pipeline.on_lost_sync = stop): run `drugsync --reconcile`, then restart with --replay-from {position}; or set on_lost_sync = reconcile to do this automatically"
    )]
    Refused {
        /// Why.
        refusal: super::refusal::Refusal,
        /// Commit position of the transaction.
        position: Box<crate::position::Position>,
    },
    /// A table a query reads does not exist, after the start-up check found
    /// every mapped table: a DDL that drops and creates it again is under
    /// way (a reload's DROP TABLE, then CREATE TABLE). Waited out: the
    /// position does not move until the table is back.
    #[error(
        "a table the mapping reads does not exist: {message}. A DROP TABLE / CREATE TABLE on it is probably under way: drugsync waits for it and retries, its position does not move. If the table is gone for good, fix the mapping SQL (mapping.select_sql, mapping.tables[].keys_sql) and restart. Query: {query}"
    )]
    TableMissing {
        /// Server message (names the table).
        message: String,
        /// The query (without parameter values).
        query: String,
    },
    /// A query drugsync issues failed for a reason retrying will not fix (syntax, missing column, privileges).
    #[error("query failed: {message}. Check the mapping SQL in the config and the user's privileges. Query: {query}")]
    Query {
        /// Server message.
        message: String,
        /// The query (without parameter values).
        query: String,
    },
    /// The binlog stream delivered something drugsync cannot decode.
    #[error("cannot decode binlog event at {position}: {message}")]
    Decode {
        /// Where.
        position: String,
        /// What.
        message: String,
    },
}

impl Classify for SourceError {
    fn class(&self) -> ErrorClass {
        match self {
            SourceError::Connection(_) | SourceError::Silent { .. } | SourceError::Checksum { .. } | SourceError::TableMissing { .. } => {
                ErrorClass::Transient
            }
            SourceError::PositionUnavailable { .. }
            | SourceError::Misconfigured(_)
            | SourceError::AccessDenied { .. }
            | SourceError::Tls(_)
            | SourceError::Refused { .. }
            | SourceError::Query { .. }
            | SourceError::Decode { .. } => ErrorClass::Definite,
        }
    }
}

impl SourceError {
    /// Classes a driver error raised while running `query`.
    pub fn from_driver(err: mysql_async::Error, query: &str) -> Self {
        match err {
            mysql_async::Error::Server(server) => {
                // Server-side conditions that go away by themselves: too many connections,
                // shutdown, lock wait / deadlock, killed, gone away, lost, interrupted,
                // network read/write errors (1158-1161), a table definition changed under a
                // snapshot (1412), statement timeouts (MySQL 3024, MariaDB 1969), and an idle
                // connection closed after wait_timeout (4031: FDB changes weekly, so
                // connections sit idle for days).
                const TRANSIENT: &[u16] = &[1040, 1053, 1158, 1159, 1160, 1161, 1205, 1213, 1317, 1412, 1927, 1969, 2006, 2013, 3024, 4031];
                // Access denied: to the server, the database, a table or column; a missing privilege.
                const DENIED: &[u16] = &[1044, 1045, 1142, 1143, 1227, 1698];
                if server.code == ER_GTID_MODE_OFF || server.message.contains("GTID_MODE") {
                    // GTIDs turned off under a step that needs them (3062 and its kin).
                    SourceError::Misconfigured(format!(
                        "{} ({}): the source's gtid_mode does not allow this step. drugsync picks its visibility gate from the current gtid_mode; with GTIDs off it needs the fence table (docs/operations.md: Visibility) or gtid_mode = ON",
                        server.message, server.code
                    ))
                } else if DENIED.contains(&server.code) {
                    SourceError::AccessDenied { message: format!("{} ({})", server.message, server.code) }
                } else if server.code == ER_NO_SUCH_TABLE {
                    SourceError::TableMissing { message: format!("{} ({})", server.message, server.code), query: truncate(query, 300) }
                } else if TRANSIENT.contains(&server.code) {
                    SourceError::Connection(format!("{} ({})", server.message, server.code))
                } else {
                    SourceError::Query { message: format!("{} ({})", server.message, server.code), query: truncate(query, 300) }
                }
            }
            mysql_async::Error::Url(e) => SourceError::Misconfigured(format!("bad MySQL URL: {e}")),
            other => {
                let text = other.to_string();
                // rustls reports through io::Error too, so the text is the one reliable mark.
                let tls = matches!(other, mysql_async::Error::Io(mysql_async::IoError::Tls(_)))
                    || ["certificate", "CertNotValid", "NotValidForName", "UnknownIssuer", "does not have this capability"]
                        .iter()
                        .any(|mark| text.contains(mark));
                if tls { SourceError::Tls(text) } else { SourceError::Connection(text) }
            }
        }
    }
}

/// Shortens long SQL for messages.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> SourceError {
        let err = mysql_async::Error::Server(mysql_async::ServerError { code, message: "m".into(), state: "HY000".into() });
        SourceError::from_driver(err, "SELECT 1")
    }

    #[test]
    fn passing_server_conditions_are_retried_and_the_rest_stop() {
        for code in [4031, 1412, 3024, 1969, 1205, 1213, 2013, 1160] {
            assert!(server(code).is_transient(), "{code} should be retried");
        }
        assert!(matches!(server(1045), SourceError::AccessDenied { .. }));
        // The start-up check refuses a mapping naming a missing table; later, a
        // missing table is a DROP / CREATE under way, waited out.
        assert!(matches!(server(1146), SourceError::TableMissing { .. }), "a table dropped while streaming");
        assert!(server(1146).is_transient());
        assert!(server(1146).to_string().contains("mapping"), "names the way out if it is gone for good");
    }

    #[test]
    fn gtids_turned_off_under_a_step_is_a_server_setting_naming_gtid_mode() {
        let error = server(3062);
        assert!(matches!(error, SourceError::Misconfigured(_)) && !error.is_transient(), "{error}");
        assert!(error.to_string().contains("gtid_mode"), "{error}");
        assert!(!error.to_string().contains("mapping SQL"), "not the mapping's fault: {error}");
    }
}

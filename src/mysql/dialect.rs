//! Server dialects in one place: which statements and session settings a
//! given MySQL-family server understands, chosen from its version string.
//!
//! | choice | MySQL / Aurora MySQL 3 | MariaDB |
//! |---|---|---|
//! | end of binlog | `SHOW MASTER STATUS` before 8.2, `SHOW BINARY LOG STATUS` from 8.2 (8.4 removed the old form) | `SHOW MASTER STATUS` before 10.5.2, `SHOW BINLOG STATUS` from 10.5.2 |
//! | registered replicas | `SHOW SLAVE HOSTS` before 8.0.22, `SHOW REPLICAS` from 8.0.22 (8.4 removed the old form) | `SHOW SLAVE HOSTS` before 10.5.1, `SHOW REPLICA HOSTS` from 10.5.1 |
//! | heartbeat of the dump thread | `@master_heartbeat_period`, also `@source_heartbeat_period` from 8.0.26 | `@master_heartbeat_period` |
//! | GTID events and resume | always sent; resume with `COM_BINLOG_DUMP_GTID` and a GTID set | only after `@mariadb_slave_capability = 4`; resume with `@slave_connect_state` |
//!
//! Aurora MySQL 3 reports versions such as `8.0.mysql_aurora.3.05.2`; its
//! MySQL level is read from the Aurora release (3.05 is MySQL 8.0.32).

use std::fmt;

use mysql_async::Conn;

use super::SourceError;

/// MySQL (Aurora) or MariaDB: they differ in GTIDs and a few commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MySQL 8 / Aurora MySQL 3.
    Mysql,
    /// MariaDB 10.5+.
    Mariadb,
}

/// A server's flavour and version, and the dialect choices that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// (major, minor, patch) of the MySQL or MariaDB level.
    pub version: (u32, u32, u32),
    /// The Aurora release (`3.05.2`), when the server is Aurora MySQL.
    pub aurora: Option<String>,
}

/// Aurora MySQL 3 minor releases and the MySQL 8.0 release each is
/// compatible with (AWS release notes); a later unknown release is taken to
/// be at least the last one listed.
const AURORA_MYSQL_LEVELS: [(u32, u32); 10] = [(1, 23), (2, 23), (3, 26), (4, 28), (5, 32), (6, 34), (7, 36), (8, 39), (9, 40), (10, 42)];

impl Dialect {
    /// Parses `SELECT VERSION()` (or the handshake's version, with MariaDB's
    /// `5.5.5-` prefix), plus `@@aurora_version` when the server has one.
    pub fn parse(version: &str, aurora_version: Option<&str>) -> Result<Self, String> {
        let lower = version.to_ascii_lowercase();
        if let Some(rest) = lower.split_once("mysql_aurora.").map(|(_, r)| r.to_owned()) {
            return Ok(Self::aurora(&rest));
        }
        if let Some(release) = aurora_version.filter(|v| !v.trim().is_empty()) {
            return Ok(Self::aurora(release));
        }
        let flavor = if lower.contains("mariadb") { Flavor::Mariadb } else { Flavor::Mysql };
        // MariaDB's handshake puts "5.5.5-" before its real version, for old clients.
        let text = lower.strip_prefix("5.5.5-").unwrap_or(&lower);
        let version = numbers(text).ok_or_else(|| format!("cannot read a version from {version:?}"))?;
        Ok(Self { flavor, version, aurora: None })
    }

    fn aurora(release: &str) -> Self {
        let parts: Vec<u32> = release.split(['.', '-']).map_while(|p| p.parse().ok()).collect();
        let minor = parts.get(1).copied().unwrap_or(0);
        let level = AURORA_MYSQL_LEVELS.iter().rev().find(|(m, _)| *m <= minor).map(|(_, l)| *l).unwrap_or(23);
        Self { flavor: Flavor::Mysql, version: (8, 0, level), aurora: Some(release.trim().to_owned()) }
    }

    fn at_least(&self, flavor: Flavor, version: (u32, u32, u32)) -> bool {
        self.flavor == flavor && self.version >= version
    }

    /// The statement that shows the end of the binlog (file, position, ...).
    pub fn binlog_status_query(&self) -> &'static str {
        if self.at_least(Flavor::Mysql, (8, 2, 0)) {
            "SHOW BINARY LOG STATUS"
        } else if self.at_least(Flavor::Mariadb, (10, 5, 2)) {
            "SHOW BINLOG STATUS"
        } else {
            "SHOW MASTER STATUS"
        }
    }

    /// The statement that lists the replicas registered with the server.
    pub fn replicas_query(&self) -> &'static str {
        if self.at_least(Flavor::Mysql, (8, 0, 22)) {
            "SHOW REPLICAS"
        } else if self.at_least(Flavor::Mariadb, (10, 5, 1)) {
            "SHOW REPLICA HOSTS"
        } else {
            "SHOW SLAVE HOSTS"
        }
    }

    /// Session statements that make the server's dump thread send a
    /// heartbeat every `period_ns` on an idle stream.
    pub fn heartbeat_statements(&self, period_ns: u64) -> Vec<String> {
        let mut statements = vec![format!("SET @master_heartbeat_period = {period_ns}")];
        if self.at_least(Flavor::Mysql, (8, 0, 26)) {
            statements.push(format!("SET @source_heartbeat_period = {period_ns}"));
        }
        statements
    }

    /// Session statements a binlog stream needs before the dump request
    /// (MariaDB hides its GTID events from clients that do not ask).
    pub fn stream_statements(&self) -> Vec<String> {
        match self.flavor {
            Flavor::Mariadb => vec!["SET @mariadb_slave_capability = 4".into()],
            Flavor::Mysql => Vec::new(),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.version;
        match (&self.aurora, self.flavor) {
            (Some(release), _) => write!(f, "Aurora MySQL {release} (MySQL {major}.{minor}.{patch})"),
            (None, Flavor::Mysql) => write!(f, "MySQL {major}.{minor}.{patch}"),
            (None, Flavor::Mariadb) => write!(f, "MariaDB {major}.{minor}.{patch}"),
        }
    }
}

/// The leading `major.minor[.patch]` of `text`.
fn numbers(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit()).take(3).map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Asks the server what it is.
pub async fn detect(conn: &mut Conn) -> Result<Dialect, SourceError> {
    let version = super::query::query_first(conn, "SELECT VERSION()").await?.unwrap_or_default();
    // Only Aurora has this variable; elsewhere the query fails, which says "not Aurora".
    let aurora =
        if version.contains("aurora") { None } else { super::query::query_first(conn, "SELECT @@aurora_version").await.ok().flatten() };
    Dialect::parse(&version, aurora.as_deref()).map_err(SourceError::Misconfigured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(version: &str) -> Dialect {
        Dialect::parse(version, None).unwrap()
    }

    #[test]
    fn versions_of_every_supported_server_parse() {
        assert_eq!(d("10.5.23-MariaDB-1:10.5.23+maria~ubu2004").version, (10, 5, 23));
        assert_eq!(d("5.5.5-10.11.6-MariaDB-0+deb12u1-log").version, (10, 11, 6), "handshake prefix");
        assert_eq!(d("10.11.6-MariaDB-0+deb12u1").flavor, Flavor::Mariadb);
        assert_eq!(d("11.4.2-MariaDB").version, (11, 4, 2));
        assert_eq!((d("8.0.36-0ubuntu0.22.04.1").flavor, d("8.0.36").version), (Flavor::Mysql, (8, 0, 36)));
        assert_eq!(d("8.4.0").version, (8, 4, 0));
        assert_eq!(d("9.1.0-commercial").version, (9, 1, 0));
        let aurora = d("8.0.mysql_aurora.3.05.2");
        assert_eq!((aurora.flavor, aurora.version, aurora.aurora.as_deref()), (Flavor::Mysql, (8, 0, 32), Some("3.05.2")));
        assert_eq!(aurora.to_string(), "Aurora MySQL 3.05.2 (MySQL 8.0.32)");
        let by_variable = Dialect::parse("8.0.28", Some("3.04.1")).unwrap();
        assert_eq!((by_variable.version, by_variable.aurora.as_deref()), ((8, 0, 28), Some("3.04.1")));
        assert_eq!(d("8.0.mysql_aurora.3.99.0").version, (8, 0, 42), "a newer Aurora is at least the last known level");
        assert!(Dialect::parse("banana", None).is_err());
    }

    #[test]
    fn binlog_status_follows_the_renames() {
        assert_eq!(d("8.0.36").binlog_status_query(), "SHOW MASTER STATUS");
        assert_eq!(d("8.0.mysql_aurora.3.05.2").binlog_status_query(), "SHOW MASTER STATUS");
        assert_eq!(d("8.2.0").binlog_status_query(), "SHOW BINARY LOG STATUS");
        assert_eq!(d("8.4.3").binlog_status_query(), "SHOW BINARY LOG STATUS", "8.4 removed SHOW MASTER STATUS");
        assert_eq!(d("9.1.0").binlog_status_query(), "SHOW BINARY LOG STATUS");
        assert_eq!(d("10.5.1-MariaDB").binlog_status_query(), "SHOW MASTER STATUS");
        assert_eq!(d("10.11.6-MariaDB").binlog_status_query(), "SHOW BINLOG STATUS");
        assert_eq!(d("11.4.2-MariaDB").binlog_status_query(), "SHOW BINLOG STATUS");
    }

    #[test]
    fn replica_listing_follows_the_renames() {
        assert_eq!(d("8.0.21").replicas_query(), "SHOW SLAVE HOSTS");
        assert_eq!(d("8.0.22").replicas_query(), "SHOW REPLICAS");
        assert_eq!(d("8.0.mysql_aurora.3.01.0").replicas_query(), "SHOW REPLICAS");
        assert_eq!(d("8.4.0").replicas_query(), "SHOW REPLICAS", "8.4 removed SHOW SLAVE HOSTS");
        assert_eq!(d("10.5.0-MariaDB").replicas_query(), "SHOW SLAVE HOSTS");
        assert_eq!(d("10.11.6-MariaDB").replicas_query(), "SHOW REPLICA HOSTS");
    }

    #[test]
    fn heartbeat_and_stream_settings_per_flavour() {
        assert_eq!(d("10.11.6-MariaDB").heartbeat_statements(5), ["SET @master_heartbeat_period = 5"]);
        assert_eq!(d("8.0.25").heartbeat_statements(5), ["SET @master_heartbeat_period = 5"]);
        assert_eq!(d("8.4.0").heartbeat_statements(5), ["SET @master_heartbeat_period = 5", "SET @source_heartbeat_period = 5"]);
        assert_eq!(d("8.0.mysql_aurora.3.05.2").heartbeat_statements(5).len(), 2);
        assert_eq!(d("10.11.6-MariaDB").stream_statements(), ["SET @mariadb_slave_capability = 4"]);
        assert!(d("8.0.36").stream_statements().is_empty());
    }
}

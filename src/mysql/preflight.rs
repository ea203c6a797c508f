//! Start-up checks of the source: every setting, privilege and name drugsync
//! relies on, each failure with the fix. Run once per start, before the
//! writer lease is taken, so a misconfigured standby fails at once too.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::error::SourceError;
use super::query::query_first;
use crate::config::{IndexField, MappingConfig, MysqlConfig};

/// Runs every check in turn; the first failure is returned. On success,
/// the binlog retention it read (`None`: binlogs never expire), which the
/// start also weighs Redis's snapshots against.
/// `replica` is the name drugsync registers under (see [`replica_hostname`]);
/// `mapping` and the index `fields` are checked against the schema.
pub async fn check_source(
    conn: &mut Conn,
    mysql: &MysqlConfig,
    mapping: &MappingConfig,
    fields: &[IndexField],
    replica: &str,
) -> Result<Option<Retention>, SourceError> {
    let dialect = super::dialect::detect(conn).await?;
    let facts = super::aurora::binlog_facts(conn, &dialect).await?;
    tracing::info!(
        server = %dialect,
        gtid_mode = ?facts.gtid_mode,
        transaction_compression = ?facts.transaction_compression,
        enhanced_binlog = ?facts.enhanced_binlog,
        "source server"
    );
    for warning in super::aurora::advice(&dialect, &facts) {
        tracing::warn!("{warning}");
    }
    check_binlog_settings(conn).await?;
    check_grants(conn, &mysql.schema).await?;
    check_server_id(conn, &dialect, mysql.server_id, replica).await?;
    let retention = binlog_retention(conn).await?;
    check_binlog_retention(retention.as_ref(), mysql.downtime_budget_hours)?;
    check_mapping(conn, &mysql.schema, mapping, fields).await?;
    Ok(retention)
}

/// The host name drugsync reports when it registers as a replica
/// (`SHOW REPLICAS`): tells its own earlier sessions and standbys
/// (same name) from another replica that took the same server id. One
/// per index (`index_name`): the writers of one index share it.
pub fn replica_hostname(index_name: &str) -> String {
    let name = format!("drugsync/{index_name}");
    name.chars().take(60).collect()
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

/// Privileges drugsync needs, by the name `GRANT` uses.
const NEEDED: [&str; 3] = ["REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT"];

/// Checks `SHOW GRANTS` for the privileges drugsync needs. Privileges that
/// only come through roles cannot be read this way: then it warns and goes on
/// (the first query that needs them fails with the same advice).
pub async fn check_grants(conn: &mut Conn, schema: &str) -> Result<(), SourceError> {
    let query = "SHOW GRANTS";
    let grants: Vec<String> = conn.query(query).await.map_err(|e| SourceError::from_driver(e, query))?;
    let missing = missing_privileges(&grants, schema);
    if missing.is_empty() {
        return Ok(());
    }
    let user = query_first(conn, "SELECT CURRENT_USER()").await?.unwrap_or_else(|| "drugsync".into());
    let user = user.rsplit_once('@').map(|(u, h)| format!("'{u}'@'{h}'")).unwrap_or(user);
    let fix = format!(
        "run as an admin: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {user}; GRANT SELECT ON `{schema}`.* TO {user}; (docs/sources.md: Source requirements)"
    );
    if grants.iter().any(|g| is_role_grant(g)) {
        tracing::warn!(missing = ?missing, %fix, "the MySQL user may lack privileges (they may come from a role, which SHOW GRANTS does not expand)");
        return Ok(());
    }
    Err(SourceError::Misconfigured(format!("the MySQL user {user} lacks {}; {fix}", missing.join(", "))))
}

/// Which of `NEEDED` (the privileges drugsync uses) the `SHOW GRANTS` lines do not give on `schema`.
pub fn missing_privileges(grants: &[String], schema: &str) -> Vec<&'static str> {
    let mut have = [false; 3];
    for line in grants {
        let Some((privileges, target)) = parse_grant(line) else { continue };
        let global = target == "*.*";
        let in_schema = global || target.split_once('.').is_some_and(|(db, _)| db.eq_ignore_ascii_case(schema));
        for privilege in privileges {
            let all = privilege == "ALL" || privilege == "ALL PRIVILEGES";
            // MariaDB 10.5+ shows REPLICATION CLIENT as BINLOG MONITOR; MySQL 8.0.22+ may say REPLICA.
            let slave = all || privilege == "REPLICATION SLAVE" || privilege == "REPLICATION REPLICA";
            let client = all || matches!(privilege.as_str(), "REPLICATION CLIENT" | "BINLOG MONITOR" | "SUPER");
            have[0] |= global && slave;
            have[1] |= global && client;
            have[2] |= in_schema && (all || privilege == "SELECT");
        }
    }
    NEEDED.iter().zip(have).filter(|(_, ok)| !ok).map(|(name, _)| *name).collect()
}

/// `GRANT a, b ON target TO ...` -> (["A", "B"], "target" without quotes); `None` for other lines.
fn parse_grant(line: &str) -> Option<(Vec<String>, String)> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    let (privileges, rest) = rest.split_once(" ON ")?;
    let (target, _) = rest.split_once(" TO ")?;
    let target: String = target.chars().filter(|c| !matches!(c, '`' | '\\' | '"')).collect();
    // Column-level grants ("SELECT (a, b)") hold commas inside parentheses.
    let mut list = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in privileges.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => list.push(std::mem::take(&mut current).trim().to_ascii_uppercase()),
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    list.push(current.trim().to_ascii_uppercase());
    let target = target.trim().to_owned();
    Some((list, target))
}

/// `GRANT role TO user` (no ON clause).
fn is_role_grant(line: &str) -> bool {
    line.trim().starts_with("GRANT ") && !line.contains(" ON ")
}

/// Checks that `server_id` is not the source's own id and that no other
/// replica registered with it (the server would drop one of the two
/// streams, again and again). Listing replicas needs a privilege the
/// minimal grants lack on MariaDB; then only the first check runs.
pub async fn check_server_id(
    conn: &mut Conn,
    dialect: &super::dialect::Dialect,
    server_id: u32,
    our_host: &str,
) -> Result<(), SourceError> {
    let source_id = query_first(conn, "SELECT @@GLOBAL.server_id").await?.and_then(|v| v.parse::<u32>().ok());
    if source_id == Some(server_id) {
        return Err(SourceError::Misconfigured(format!(
            "mysql.server_id = {server_id} is the source server's own server_id; choose an id no server or replica of this source uses"
        )));
    }
    let query = dialect.replicas_query();
    let rows: Vec<Row> = match conn.query(query).await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(e)) => {
            tracing::debug!(query, error = %e.message, "cannot list replicas; server_id uniqueness checked against the source only");
            return Ok(());
        }
        Err(e) => return Err(SourceError::from_driver(e, query)),
    };
    for row in &rows {
        let id = column(row, "server_id").and_then(|v| v.parse::<u32>().ok());
        let host = column(row, "host").unwrap_or_default();
        if id == Some(server_id) && host != our_host {
            return Err(SourceError::Misconfigured(format!(
                "mysql.server_id = {server_id} is already used by another replica of this source (it reports host {host:?}); the server would drop one of the two streams again and again: choose another id"
            )));
        }
    }
    Ok(())
}

/// A column of `row` by case-insensitive name, as text.
fn column(row: &Row, name: &str) -> Option<String> {
    let index = row.columns_ref().iter().position(|c| c.name_str().eq_ignore_ascii_case(name))?;
    row.as_ref(index).map(super::value::value_to_string)
}

/// Checks that the source keeps binlogs (`retention`, as [`binlog_retention`]
/// read it) at least `budget_hours` (the longest drugsync outage that must
/// still resume without a reconcile). Aurora/RDS:
/// `mysql.rds_configuration`'s 'binlog retention hours' (NULL = purged as soon
/// as possible); elsewhere `binlog_expire_logs_seconds` / `expire_logs_days`.
/// A budget of 0 turns the check off.
pub fn check_binlog_retention(retention: Option<&Retention>, budget_hours: u32) -> Result<(), SourceError> {
    if budget_hours == 0 {
        return Ok(());
    }
    let Some(retention) = retention else { return Ok(()) };
    if retention.hours < f64::from(budget_hours) {
        let fix = if retention.rds {
            format!("CALL mysql.rds_set_configuration('binlog retention hours', {budget_hours})")
        } else {
            format!(
                "SET PERSIST binlog_expire_logs_seconds = {} (MariaDB: SET GLOBAL and the server config)",
                u64::from(budget_hours) * 3600
            )
        };
        return Err(SourceError::Misconfigured(format!(
            "the source keeps binlogs for {:.1} hours ({}), less than mysql.downtime_budget_hours = {budget_hours}: an outage that long would lose drugsync's position. Fix: {fix}; or lower the budget",
            retention.hours, retention.setting
        )));
    }
    Ok(())
}

/// How long a source keeps its binlogs.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Hours (0: purged at once).
    pub hours: f64,
    /// The setting it comes from, as the operator would look it up.
    pub setting: String,
    /// Set through `mysql.rds_set_configuration` (RDS, Aurora).
    pub rds: bool,
}

/// The source's binlog retention; `None` when binlogs never expire or the
/// setting cannot be read (logged).
pub async fn binlog_retention(conn: &mut Conn) -> Result<Option<Retention>, SourceError> {
    let query = "SELECT value FROM mysql.rds_configuration WHERE name = 'binlog retention hours'";
    match conn.query_first::<Option<String>, _>(query).await {
        Ok(Some(value)) => {
            let hours = value.as_deref().and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0);
            let shown = value.unwrap_or_else(|| "NULL".into());
            let setting = format!("mysql.rds_configuration 'binlog retention hours' = {shown}; NULL purges them at once");
            return Ok(Some(Retention { hours, setting, rds: true }));
        }
        Ok(None) => {}
        // Not RDS/Aurora (no such table), or the user may not read it.
        Err(mysql_async::Error::Server(e)) => {
            let aurora = query_first(conn, "SELECT @@aurora_version").await.ok().flatten().is_some();
            if aurora {
                tracing::warn!(error = %e.message, "cannot read mysql.rds_configuration to check binlog retention: GRANT SELECT ON mysql.rds_configuration TO the drugsync user");
                return Ok(None);
            }
        }
        Err(e) => return Err(SourceError::from_driver(e, query)),
    }
    let seconds = query_first(conn, "SELECT @@GLOBAL.binlog_expire_logs_seconds").await.ok().flatten().and_then(|v| v.parse::<f64>().ok());
    let days = query_first(conn, "SELECT @@GLOBAL.expire_logs_days").await.ok().flatten().and_then(|v| v.parse::<f64>().ok());
    Ok(match (seconds, days) {
        (Some(s), _) if s > 0.0 => Some(Retention { hours: s / 3600.0, setting: format!("binlog_expire_logs_seconds = {s}"), rds: false }),
        (_, Some(d)) if d > 0.0 => Some(Retention { hours: d * 24.0, setting: format!("expire_logs_days = {d}"), rds: false }),
        _ => None, // binlogs never expire
    })
}

/// Server errors that mean the mapping names something that does not exist:
/// unknown database (1049), table (1146) or column (1054).
const UNKNOWN_NAMES: [u16; 3] = [1049, 1146, 1054];

/// Checks that the mapping's tables and columns exist and that `select_sql`
/// runs and yields every index field; the error names the config field.
pub async fn check_mapping(conn: &mut Conn, schema: &str, mapping: &MappingConfig, fields: &[IndexField]) -> Result<(), SourceError> {
    // A `LIMIT 0` select of the one column, not an information_schema lookup:
    // the server answers those through a temporary table, and MariaDB 10.11 once
    // segfaulted freeing it (a prepared COLUMNS query) under the test load. The
    // select also proves the grant, column-level grants included, which the
    // lookup did not. Names are checked identifiers (config).
    for (n, rule) in mapping.tables.iter().enumerate() {
        let query = format!("SELECT `{}` FROM `{schema}`.`{}` LIMIT 0", rule.column, rule.table);
        let refused = match conn.query_drop(&query).await {
            Ok(()) => continue,
            Err(mysql_async::Error::Server(e)) if UNKNOWN_NAMES.contains(&e.code) => e.message,
            // from_driver is where a missing privilege is recognised; here it gets the config field.
            Err(e) => match SourceError::from_driver(e, &query) {
                SourceError::AccessDenied { message } => message,
                other => return Err(other),
            },
        };
        return Err(SourceError::Misconfigured(format!(
            "config field mapping.tables[{n}]: cannot read column `{}` of `{schema}`.`{}`: {refused}",
            rule.column, rule.table
        )));
    }
    let m = mapping;
    let query = format!("SELECT * FROM ({} WHERE ({}) LIMIT 0) AS documents", m.select_sql.trim(), m.filter_sql);
    let result = conn
        .query_iter(&query)
        .await
        .map_err(|e| SourceError::Misconfigured(format!("config field mapping.select_sql / mapping.filter_sql does not run: {e}")))?;
    let columns: Vec<String> = result.columns_ref().iter().map(|c| c.name_str().to_ascii_lowercase()).collect();
    result.drop_result().await.map_err(|e| SourceError::from_driver(e, &query))?;
    for field in fields {
        if !columns.contains(&field.name.to_ascii_lowercase()) {
            return Err(SourceError::Misconfigured(format!(
                "config field mapping.select_sql returns no column aliased `{}` (listed in index.fields)",
                field.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(grants: &[&str]) -> Vec<String> {
        grants.iter().map(|g| (*g).to_owned()).collect()
    }

    #[test]
    fn least_privilege_grants_of_mysql_and_mariadb_suffice() {
        let mysql = lines(&["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `ds`@`%`", "GRANT SELECT ON `fdb`.* TO `ds`@`%`"]);
        assert!(missing_privileges(&mysql, "fdb").is_empty());
        let mariadb = lines(&[
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `ds`@`%` IDENTIFIED BY PASSWORD '*AB'",
            "GRANT SELECT ON `fdb`.* TO `ds`@`%`",
        ]);
        assert!(missing_privileges(&mariadb, "fdb").is_empty());
        assert!(missing_privileges(&lines(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]), "fdb").is_empty());
    }

    #[test]
    fn each_missing_privilege_is_named() {
        let select_only = lines(&["GRANT USAGE ON *.* TO `ds`@`%`", "GRANT SELECT ON `fdb`.* TO `ds`@`%`"]);
        assert_eq!(missing_privileges(&select_only, "fdb"), ["REPLICATION SLAVE", "REPLICATION CLIENT"]);
        // Replication privileges only count on *.*; SELECT on another schema does not count.
        let wrong_places =
            lines(&["GRANT SELECT, REPLICATION CLIENT ON `other`.* TO `ds`@`%`", "GRANT REPLICATION SLAVE ON *.* TO `ds`@`%`"]);
        assert_eq!(missing_privileges(&wrong_places, "fdb"), ["REPLICATION CLIENT", "SELECT"]);
    }

    #[test]
    fn table_column_and_escaped_schema_grants_parse() {
        let grants = lines(&[
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `ds`@`%`",
            "GRANT SELECT (`NDC`, `LN`), INSERT ON `t\\_fdb`.`rndc14` TO `ds`@`%`",
        ]);
        assert!(missing_privileges(&grants, "t_fdb").is_empty());
        assert!(is_role_grant("GRANT `reader` TO `ds`@`%`"));
        assert!(!is_role_grant(&grants[0]));
    }
}

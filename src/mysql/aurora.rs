//! What drugsync checks about Aurora MySQL 3 and MySQL 8 at start, beyond
//! the binlog settings every source needs (`preflight`).
//!
//! - **GTID mode.** Aurora's default is `gtid_mode=OFF`. drugsync then
//!   resumes by file and offset only, and proves a batch visible before
//!   re-reading it with its fence write (`visibility`: one small write per
//!   batch, a table the operator creates). With GTIDs on, every stored
//!   position also carries the executed set: a stream whose file is gone
//!   resumes by GTID, and re-reads wait with `WAIT_FOR_EXECUTED_GTID_SET`,
//!   writing nothing. So: a warning naming the parameters to set; the
//!   visibility gate's own preflight refuses what would leave it without proof.
//! - **Transaction compression** (`binlog_transaction_compression`): read
//!   (zstd payloads are expanded by the client and committed at the
//!   payload's end); logged.
//! - **Enhanced binlog** (`aurora_enhanced_binlog`, Aurora 3.03.1+): the
//!   same events and positions to a client; logged. It turns off
//!   `binlog_backup`, so a cluster restored from a snapshot has no binlog
//!   from before the restore: drugsync's stored position is then missing and
//!   it takes the lost-position path (`pipeline.on_lost_sync`).

use mysql_async::Conn;

use super::dialect::{Dialect, Flavor};
use super::error::SourceError;
use super::query::query_first;

/// What the source says about the settings above (`None`: the server has no such variable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinlogFacts {
    /// `@@gtid_mode` (MySQL: OFF, OFF_PERMISSIVE, ON_PERMISSIVE, ON).
    pub gtid_mode: Option<String>,
    /// `@@binlog_transaction_compression`.
    pub transaction_compression: Option<bool>,
    /// `@@aurora_enhanced_binlog`.
    pub enhanced_binlog: Option<bool>,
}

/// Reads the facts from a MySQL or Aurora source (MariaDB: none apply).
pub async fn binlog_facts(conn: &mut Conn, dialect: &Dialect) -> Result<BinlogFacts, SourceError> {
    if dialect.flavor != Flavor::Mysql {
        return Ok(BinlogFacts::default());
    }
    // Each variable exists only on some versions: a missing one is simply unknown.
    let read = |value: Option<String>| value.map(|v| matches!(v.as_str(), "1" | "ON" | "on"));
    Ok(BinlogFacts {
        gtid_mode: query_first(conn, "SELECT @@GLOBAL.gtid_mode").await.ok().flatten(),
        transaction_compression: read(query_first(conn, "SELECT @@GLOBAL.binlog_transaction_compression").await.ok().flatten()),
        enhanced_binlog: read(query_first(conn, "SELECT @@GLOBAL.aurora_enhanced_binlog").await.ok().flatten()),
    })
}

/// Warnings for the operator about `facts` on `dialect` (empty: nothing to advise).
pub fn advice(dialect: &Dialect, facts: &BinlogFacts) -> Vec<String> {
    let mut out = Vec::new();
    if dialect.flavor == Flavor::Mysql && facts.gtid_mode.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case("ON")) {
        let how = if dialect.aurora.is_some() {
            "in the DB cluster parameter group set gtid-mode = ON and enforce_gtid_consistency = ON"
        } else {
            "SET PERSIST enforce_gtid_consistency = ON, then gtid_mode through OFF_PERMISSIVE and ON_PERMISSIVE to ON"
        };
        out.push(format!(
            "the source runs with gtid_mode = {}: drugsync resumes by file and offset only, cannot resume by GTID when a binlog file is gone, and proves each batch visible by a write to its fence table instead of waiting for the batch's GTIDs. Turn GTIDs on: {how}",
            facts.gtid_mode.as_deref().unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(gtid: Option<&str>) -> BinlogFacts {
        BinlogFacts { gtid_mode: gtid.map(str::to_owned), transaction_compression: Some(true), enhanced_binlog: Some(true) }
    }

    #[test]
    fn gtid_mode_off_is_a_warning_with_the_parameters_for_aurora_and_mysql() {
        let aurora = Dialect::parse("8.0.mysql_aurora.3.05.2", None).unwrap();
        let advice_aurora = advice(&aurora, &facts(Some("OFF")));
        assert_eq!(advice_aurora.len(), 1);
        assert!(
            advice_aurora[0].contains("DB cluster parameter group") && advice_aurora[0].contains("gtid-mode = ON"),
            "{advice_aurora:?}"
        );
        let mysql = Dialect::parse("8.4.3", None).unwrap();
        assert!(advice(&mysql, &facts(Some("OFF_PERMISSIVE")))[0].contains("SET PERSIST"));
        assert!(advice(&aurora, &facts(Some("ON"))).is_empty(), "GTIDs on: nothing to advise");
        assert!(advice(&aurora, &facts(None)).is_empty(), "unknown: no guess");
        let mariadb = Dialect::parse("10.11.6-MariaDB", None).unwrap();
        assert!(advice(&mariadb, &facts(Some("OFF"))).is_empty(), "MariaDB always has its GTIDs");
    }
}

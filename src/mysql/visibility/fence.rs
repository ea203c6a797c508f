//! The fence: on MySQL without GTIDs, drugsync's own binlogged write whose
//! COMMIT returning proves every transaction logged before it visible (the
//! reasoning is in the module docs of `visibility`).

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::super::SourceError;
use crate::config::MysqlConfig;

/// Server errors after which another fence write cannot help: no table, no
/// grant, no column, a read-only server (a reader endpoint), a read-only table.
const REFUSED: [u16; 7] = [1036, 1044, 1054, 1142, 1146, 1290, 1836];

/// What the fence lacks, so the fix names exactly the statements to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Not known which (a failure at run time): the table and the grant.
    TableOrGrant,
    /// The table exists; the user may not write it.
    Grant,
    /// The table exists with a non-transactional engine.
    InnoDb,
}

/// The fence table and this instance's row in it.
#[derive(Debug, Clone)]
pub struct Fence {
    /// `mysql.schema`, a validated identifier.
    schema: String,
    /// `mysql.visibility.fence_table`, a validated identifier.
    table: String,
    /// `mysql.server_id`: each drugsync of a source writes its own row, so
    /// two of them never wait on each other's row lock.
    id: u32,
}

impl Fence {
    /// The fence `config` names.
    pub fn of(config: &MysqlConfig) -> Self {
        Self { schema: config.schema.clone(), table: config.visibility.fence_table.clone(), id: config.server_id }
    }

    /// `` `schema`.`table` ``.
    pub fn qualified(&self) -> String {
        format!("`{}`.`{}`", self.schema, self.table)
    }

    /// Commits one change to this instance's row, in autocommit on `conn`
    /// (a pooled connection: reset when it came back, so no transaction is
    /// open and `sql_log_bin` is the server's default), and returns once
    /// MySQL acknowledged the COMMIT. The row's counter always moves: a write
    /// that changed nothing would leave the binlog, and so the group commit,
    /// untouched, and prove nothing.
    pub async fn commit(&self, conn: &mut Conn, limit: Duration) -> Result<(), SourceError> {
        self.write(conn, limit, Missing::TableOrGrant, "the drugsync user").await
    }

    /// [`Self::commit`], refused with the fix for `missing` granted to `user`.
    async fn write(&self, conn: &mut Conn, limit: Duration, missing: Missing, user: &str) -> Result<(), SourceError> {
        let statement = format!("INSERT INTO {} (id, seq) VALUES (?, 1) ON DUPLICATE KEY UPDATE seq = seq + 1", self.qualified());
        let write = async {
            match conn.exec_drop(statement.as_str(), (self.id,)).await {
                Ok(()) => Ok(()),
                Err(mysql_async::Error::Server(e)) if REFUSED.contains(&e.code) => {
                    Err(self.refusal(&format!("{} ({})", e.message, e.code), missing, user))
                }
                Err(e) => Err(SourceError::from_driver(e, &statement)),
            }
        };
        super::super::deadline::within(limit, "committing the visibility fence", write).await
    }

    /// The start-up check: the table is InnoDB (a non-transactional write
    /// takes no part in the ordered engine commit) and a fence commits.
    pub async fn check(&self, conn: &mut Conn, limit: Duration) -> Result<(), SourceError> {
        let query = "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";
        let engine: Option<Option<String>> =
            conn.exec_first(query, (&self.schema, &self.table)).await.map_err(|e| SourceError::from_driver(e, query))?;
        let user: Option<String> =
            conn.query_first("SELECT CURRENT_USER()").await.map_err(|e| SourceError::from_driver(e, "CURRENT_USER()"))?;
        let user = user.and_then(|u| u.rsplit_once('@').map(|(u, h)| format!("'{u}'@'{h}'"))).unwrap_or_else(|| "the drugsync user".into());
        match engine.flatten() {
            None => Err(self.refusal("the table does not exist (or the user cannot see it)", Missing::TableOrGrant, &user)),
            Some(engine) if !engine.eq_ignore_ascii_case("InnoDB") => Err(self.refusal(
                &format!("the table's engine is {engine}: only an InnoDB write takes part in the ordered engine commit"),
                Missing::InnoDb,
                &user,
            )),
            // The table is there: only a grant (or a writable server) can be missing.
            Some(_) => {
                // A session that does not write the binlog skips the group commit: its fence proves nothing.
                let logged: Option<i64> =
                    conn.query_first("SELECT @@SESSION.sql_log_bin").await.map_err(|e| SourceError::from_driver(e, "sql_log_bin"))?;
                if logged == Some(0) {
                    return Err(self.unlogged());
                }
                self.write(conn, limit, Missing::Grant, &user).await
            }
        }
    }

    /// The refusal when drugsync's sessions do not write the binlog.
    pub fn unlogged(&self) -> SourceError {
        SourceError::Misconfigured(format!(
            "drugsync's sessions run with sql_log_bin = 0 (the server's init_connect?), so its visibility fence on {} would not reach the binlog and would prove nothing: remove what turns it off for the drugsync user, or turn GTIDs on",
            self.qualified()
        ))
    }

    /// The statements that give the fence what `missing` says it lacks, for `user`.
    pub fn fix(&self, missing: Missing, user: &str) -> String {
        let table = self.qualified();
        let create = format!("CREATE TABLE {table} (id INT UNSIGNED PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB;");
        let grant = format!("GRANT INSERT, UPDATE ON {table} TO {user};");
        match missing {
            Missing::TableOrGrant => format!("{create} {grant}"),
            Missing::Grant => grant,
            Missing::InnoDb => format!("ALTER TABLE {table} ENGINE=InnoDB;"),
        }
    }

    /// Why the fence cannot run, with the three ways out.
    fn refusal(&self, why: &str, missing: Missing, user: &str) -> SourceError {
        SourceError::Misconfigured(format!(
            "MySQL without GTIDs hands a transaction to binlog readers before its rows are visible, and drugsync proves them visible by committing one row to {table} before each re-read, which failed: {why}. Ways out: (1) on the writer endpoint, as an admin: {fix} (2) or turn GTIDs on: enforce_gtid_consistency = ON and gtid_mode = ON (Aurora: in the DB cluster parameter group; MySQL: SET PERSIST, through OFF_PERMISSIVE and ON_PERMISSIVE); (3) or set mysql.visibility.allow_ungated_reads = true to run without a gate, where a re-read can miss a commit and leave a drug stale until its next change or a reconcile (docs/operations.md: Visibility)",
            table = self.qualified(),
            fix = self.fix(missing, user),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_three_ways_out_with_runnable_statements() {
        let reference = include_str!("../../../config/drugsync.toml");
        let config = crate::config::Config::from_toml(reference, std::path::Path::new("t.toml"), |_| None).unwrap();
        let fence = Fence::of(&config.mysql);
        let SourceError::Misconfigured(text) = fence.refusal("no such table", Missing::TableOrGrant, "'drugsync'@'%'") else {
            panic!("a refusal")
        };
        assert!(
            text.contains("CREATE TABLE `fdb`.`drugsync_fence` (id INT UNSIGNED PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB;"),
            "{text}"
        );
        assert!(text.contains("GRANT INSERT, UPDATE ON `fdb`.`drugsync_fence` TO 'drugsync'@'%';"), "{text}");
        assert!(text.contains("gtid_mode = ON") && text.contains("allow_ungated_reads = true"), "{text}");
        assert!(text.contains("no such table"), "says what failed: {text}");
        assert_eq!(fence.fix(Missing::Grant, "'u'@'%'"), "GRANT INSERT, UPDATE ON `fdb`.`drugsync_fence` TO 'u'@'%';", "the table exists");
        assert_eq!(fence.fix(Missing::InnoDb, "'u'@'%'"), "ALTER TABLE `fdb`.`drugsync_fence` ENGINE=InnoDB;");
    }
}

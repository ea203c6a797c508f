//! The test's own SQL against its schema: statements, users, positions, reads.

use super::*;

impl TestEnv {
    /// A connection to the test's schema for the test's own statements (see [`connect`]).
    pub async fn mysql(&self) -> Conn {
        connect(&format!("{}/{}", self.mysql_base, self.schema)).await
    }

    pub async fn exec(&self, statements: &[&str]) {
        let mut conn = self.mysql().await;
        for s in statements {
            conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.disconnect().await.unwrap();
    }

    /// (Re)creates MySQL user `user`@`%` with SELECT on this test's schema and,
    /// with `replication`, the README's replication grants; `require_ssl` as
    /// production users are created.
    pub async fn create_user(&self, user: &str, password: &str, require_ssl: bool, replication: bool) {
        let mut statements = vec![
            format!("DROP USER IF EXISTS '{user}'@'%'"),
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'{}", if require_ssl { " REQUIRE SSL" } else { "" }),
            format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", self.schema),
        ];
        if replication {
            statements.push(format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'"));
        }
        self.exec(&statements.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }

    /// The source's current end of binlog.
    pub async fn master_position(&self) -> Position {
        let mut conn = self.mysql().await;
        let pos = drugsync::mysql::server::current_position(&mut conn).await.unwrap();
        conn.disconnect().await.unwrap();
        pos
    }

    /// NDCs (active) matching a SQL condition on rndc14 `n`.
    pub async fn active_ndcs_where(&self, condition: &str) -> Vec<String> {
        self.strings(&format!("SELECT n.NDC FROM rndc14 n WHERE n.OBSDTEC = '0000-00-00' AND ({condition}) ORDER BY n.NDC")).await
    }

    /// The first column of `sql`'s rows, as text: the test's own query.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let mut conn = self.mysql().await;
        let rows: Vec<String> = conn.query(sql).await.unwrap();
        conn.disconnect().await.unwrap();
        rows
    }
}

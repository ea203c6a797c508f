//! Start-up checks against real servers: each refuses a misconfigured source
//! with a message that names the problem and the fix, and lets a correct one through.

use crate::common;
use crate::common::{Flavour, on_each_server, on_every_source};

use common::{PrivateServer, TestEnv};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts};

on_each_server! {
    async fn preflight_names_a_mapping_column_or_alias_that_does_not_exist(flavour) {
        let env = TestEnv::new(flavour, "preflight", 20).await;
        let bad_column = env.config_text.replacen("column = \"LBLRID\"", "column = \"NO_SUCH_COLUMN\"", 1);
        let message = env.connect_error(&bad_column).await.expect("a missing column is refused");
        assert!(message.contains("mapping.tables[7]") && message.contains("NO_SUCH_COLUMN"), "{message}");
        let bad_table = env.config_text.replacen("table = \"rdosed2\"", "table = \"no_such_table\"", 1);
        let message = env.connect_error(&bad_table).await.expect("a missing table is refused");
        assert!(message.contains("mapping.tables[4]") && message.contains("no_such_table") && message.contains("doesn't exist"), "{message}");
        let bad_alias = env.config_text.replacen("l.MFG AS manufacturer", "l.MFG AS maker", 1);
        let message = env.connect_error(&bad_alias).await.expect("a missing alias is refused");
        assert!(message.contains("mapping.select_sql") && message.contains("`manufacturer`"), "{message}");
        let bad_sql = env.config_text.replacen("FROM rndc14 n", "FROM no_such_table n", 1);
        let message = env.connect_error(&bad_sql).await.expect("SQL that does not run is refused");
        assert!(message.contains("mapping.select_sql") && message.contains("no_such_table"), "{message}");
        assert!(env.connect_error(&env.config_text).await.is_none(), "the reference mapping passes");
    }
}

on_every_source! {
    /// The README's least-privilege grants are enough to load and stream; one fewer is refused by name.
    async fn least_privilege_user_streams_and_a_missing_grant_is_named(flavour) {
        let env = TestEnv::new(flavour, "grants", 30).await;
        let user = "ds_least_priv";
        env.create_user(user, "Lp-s3cret", false, false).await;
        let as_user = env.config_text.replacen("drugsync:drugsync@", &format!("{user}:Lp-s3cret@"), 1);
        let message = env.connect_error(&as_user).await.expect("a user without replication grants is refused");
        assert!(message.contains("lacks REPLICATION SLAVE, REPLICATION CLIENT"), "{message}");
        assert!(message.contains(&format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'")), "{message}");
        assert!(!message.contains("Lp-s3cret"), "the password never appears: {message}");

        let wrong_password = env.config_text.replacen("drugsync:drugsync@", &format!("{user}:wrong@"), 1);
        let message = env.connect_error(&wrong_password).await.expect("a wrong password is refused");
        assert!(message.contains("MySQL refused access") && message.contains("(1045)"), "{message}");

        // Exactly the README's grants.
        env.exec(&[&format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'")]).await;
        if flavour == Flavour::MysqlGtidOff {
            // Without GTIDs the visibility fence needs its own grant, named in the refusal.
            let message = env.connect_error(&as_user).await.expect("a user who cannot write the fence is refused");
            let grant = format!("GRANT INSERT, UPDATE ON `{}`.`drugsync_fence` TO '{user}'@'%'", env.schema);
            assert!(message.contains(&grant), "{message}");
            env.exec(&[&grant]).await;
        }
        let run = env.start_with(&as_user).await;
        env.wait_caught_up().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'Least Privilege Labs' WHERE LBLRID = (SELECT m FROM (SELECT MIN(LBLRID) AS m FROM rlblrid3) AS least)"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

on_each_server! {
    /// A replica id the source or another replica already uses is refused; a
    /// drugsync standby of the same index (same reported host) is not.
    async fn server_id_must_be_unique_among_replicas(flavour) {
        let env = TestEnv::new(flavour, "server_id", 10).await;
        let own_id = env.config().mysql.server_id;

        let source_id = env.config_text.replacen(&format!("server_id = {own_id}"), "server_id = 1", 1);
        let message = env.connect_error(&source_id).await.expect("the source's own id is refused");
        assert!(message.contains("source server's own server_id"), "{message}");

        // Another replica registers with our id and streams.
        let conn = Conn::new(Opts::from_url(&flavour.base_url()).unwrap()).await.unwrap();
        let request = BinlogStreamRequest::new(own_id).with_hostname(b"reporting-replica-7");
        let foreign = conn.get_binlog_stream(request).await.unwrap();
        let message = env.connect_error(&env.config_text).await.expect("an id in use by another replica is refused");
        assert!(message.contains("already used by another replica") && message.contains("reporting-replica-7"), "{message}");
        foreign.close().await.unwrap();
        // The server unregisters a replica when its dump thread notices the close.
        let mut admin = Conn::new(Opts::from_url(&flavour.base_url()).unwrap()).await.unwrap();
        for _ in 0..100 {
            // The spelling each server knows (MySQL 8.4+ has no SHOW SLAVE HOSTS).
            let listing = match flavour {
                common::Flavour::Mariadb => "SHOW SLAVE HOSTS",
                common::Flavour::Mysql | common::Flavour::MysqlGtidOff => "SHOW REPLICAS",
            };
            let hosts: Vec<mysql_async::Row> = admin.query(listing).await.unwrap();
            if !hosts.iter().any(|row| row.get::<u32, _>("Server_id") == Some(own_id)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        admin.disconnect().await.unwrap();

        // Our own streaming session does not make a standby's preflight fail.
        let run = env.start().await;
        env.wait_caught_up().await;
        // A standby runs elsewhere, with its own checkpoint file.
        let standby = env.config_text.replacen("checkpoint.redb", "standby.redb", 1);
        assert_eq!(env.connect_error(&standby).await, None, "a standby of the same index passes");
        run.stop().await;
    }
}

on_each_server! {
    /// Binlog retention shorter than mysql.downtime_budget_hours is refused, on
    /// Aurora (`mysql.rds_configuration`, imitated here) and on a plain server.
    async fn binlog_retention_shorter_than_the_downtime_budget_is_refused(flavour) {
        let server = PrivateServer::start(flavour).await;
        let env = TestEnv::new_on(&server, "retention", 5).await;
        env.exec(&["SET GLOBAL binlog_expire_logs_seconds = 3600"]).await;
        let message = env.connect_error(&env.config_text).await.expect("1 h expiry against a 24 h budget is refused");
        assert!(message.contains("binlog_expire_logs_seconds") && message.contains("downtime_budget_hours = 24"), "{message}");
        let no_budget = env.config_text.replacen("downtime_budget_hours = 24", "downtime_budget_hours = 0", 1);
        assert!(env.connect_error(&no_budget).await.is_none(), "a budget of 0 turns the check off");

        env.exec(&[
            "SET GLOBAL binlog_expire_logs_seconds = 0",
            "CREATE TABLE mysql.rds_configuration (name VARCHAR(100) PRIMARY KEY, value VARCHAR(100), description VARCHAR(300))",
            "INSERT INTO mysql.rds_configuration VALUES ('binlog retention hours', NULL, 'Aurora default')",
        ])
        .await;
        let message = env.connect_error(&env.config_text).await.expect("Aurora's NULL retention is refused");
        assert!(
            message.contains("'binlog retention hours' = NULL")
                && message.contains("CALL mysql.rds_set_configuration('binlog retention hours', 24)"),
            "{message}"
        );
        env.exec(&["UPDATE mysql.rds_configuration SET value = '48' WHERE name = 'binlog retention hours'"]).await;
        assert!(env.connect_error(&env.config_text).await.is_none(), "48 h retention passes");
    }
}

on_each_server! {
    async fn binlog_settings_are_checked_before_anything_else(flavour) {
        let server = PrivateServer::start(flavour).await;
        let env = TestEnv::new_on(&server, "binlog_settings", 5).await;
        for (set, expect) in [
            ("SET GLOBAL binlog_format = 'STATEMENT'", "binlog_format is STATEMENT, drugsync needs ROW"),
            ("SET GLOBAL binlog_row_image = 'MINIMAL'", "binlog_row_image is MINIMAL, drugsync needs FULL"),
            ("SET GLOBAL binlog_row_metadata = 'MINIMAL'", "binlog_row_metadata is MINIMAL, drugsync needs FULL"),
        ] {
            env.exec(&[set]).await;
            let message = env.connect_error(&env.config_text).await.expect("refused");
            assert!(message.contains(expect) && message.contains("parameter group"), "{message}");
            env.exec(&["SET GLOBAL binlog_format = 'ROW'", "SET GLOBAL binlog_row_image = 'FULL'", "SET GLOBAL binlog_row_metadata = 'FULL'"])
                .await;
        }
        assert!(env.connect_error(&env.config_text).await.is_none());
    }
}

/// The statements a refusal tells an admin to run: the text after `marker`
/// up to `until`, split at `;`.
fn statements_after<'a>(message: &'a str, marker: &str, until: &str) -> Vec<&'a str> {
    let start = message.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {message}")) + marker.len();
    let rest = &message[start..];
    let end = rest.find(until).unwrap_or(rest.len());
    rest[..end].split(';').map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// MySQL without GTIDs, no fence table: the start is refused with three ways
/// out, and two of them are followed here as an operator would, to the letter
/// (the third, GTIDs on, is the MySQL flavour's whole suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gtids_a_missing_fence_is_refused_with_ways_out_that_work_on_mysql() {
    use drugsync::mysql::visibility::GateMode;
    let env = TestEnv::new(Flavour::MysqlGtidOff, "fenceless", 20).await;
    env.exec(&["DROP TABLE drugsync_fence"]).await;
    let message = env.connect_error(&env.config_text).await.expect("no fence, no start");
    assert!(message.contains("gtid_mode = ON") && message.contains("allow_ungated_reads = true"), "{message}");

    // The opt-in: starts, without a gate.
    let ungated = env.config_text.replacen("allow_ungated_reads = false", "allow_ungated_reads = true", 1);
    let replicator = env.connect(&ungated).await.expect("the opt-in starts");
    assert_eq!(replicator.parts().stats().gate(), Some(GateMode::None));
    drop(replicator);

    // The statements, as printed.
    let fix = statements_after(&message, "as an admin: ", " (2)");
    assert_eq!(fix.len(), 2, "CREATE TABLE and GRANT: {fix:?}");
    assert!(fix[0].starts_with(&format!("CREATE TABLE `{}`.`drugsync_fence`", env.schema)), "{fix:?}");
    env.exec(&fix).await;
    let replicator = env.connect(&env.config_text).await.expect("the fix clears the refusal");
    assert_eq!(replicator.parts().stats().gate(), Some(GateMode::Fence));
}

/// With `binlog_order_commits=OFF` MySQL may commit in the engine out of
/// binlog order, and the fence proves nothing: refused, with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gtids_binlog_order_commits_off_is_refused_on_mysql() {
    let server = PrivateServer::start_with(Flavour::MysqlGtidOff, vec!["--binlog-order-commits=OFF".into()]).await;
    let env = TestEnv::new_on(&server, "unordered", 20).await;
    let message = env.connect_error(&env.config_text).await.expect("unordered engine commits are refused");
    assert!(message.contains("binlog_order_commits is OFF") && message.contains("SET PERSIST binlog_order_commits = ON"), "{message}");
    env.exec(&["SET PERSIST binlog_order_commits = ON"]).await;
    assert_eq!(env.connect_error(&env.config_text).await, None, "the named fix clears it");
}

/// A session that does not write the binlog (here an `init_connect` that
/// turns `sql_log_bin` off for a user allowed to) would fence outside the
/// group commit: the start is refused, and passes once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gtids_a_session_that_does_not_write_the_binlog_is_refused_on_mysql() {
    let server = PrivateServer::start(Flavour::MysqlGtidOff).await;
    let env = TestEnv::new_on(&server, "unlogged", 20).await;
    let user = "ds_unlogged";
    env.create_user(user, "Ul-s3cret", false, true).await;
    env.exec(&[
        &format!("GRANT INSERT, UPDATE ON `{}`.`drugsync_fence` TO '{user}'@'%'", env.schema),
        &format!("GRANT SESSION_VARIABLES_ADMIN ON *.* TO '{user}'@'%'"),
        "SET GLOBAL init_connect = 'SET SESSION sql_log_bin = 0'",
    ])
    .await;
    let as_user = env.config_text.replacen("mysql://root@", &format!("mysql://{user}:Ul-s3cret@"), 1);
    assert_ne!(as_user, env.config_text);
    let message = env.connect_error(&as_user).await.expect("an unlogged session is refused");
    assert!(message.contains("sql_log_bin = 0"), "{message}");
    env.exec(&["SET GLOBAL init_connect = ''"]).await;
    assert_eq!(env.connect_error(&as_user).await, None, "without the cause it starts");
}

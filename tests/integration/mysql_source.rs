//! Aurora's defaults on a real MySQL 9.7: MySQL's strict `sql_mode`, GTIDs
//! turned on after drugsync first ran, binlog events written with MINIMAL row
//! metadata, the server's own TLS certificates and `caching_sha2_password`
//! without TLS. Each test names its flavour; the ones that hold for MariaDB
//! too run on both.

use mysql_async::prelude::Queryable;

use crate::common::{self, Flavour, PrivateServer, TestEnv, on_each_server};
use drugsync::checkpoint::CheckpointStore;
use drugsync::position::Position;

async fn stored_position(env: &TestEnv) -> Position {
    CheckpointStore::open(&env.config().checkpoint.path).unwrap().load().unwrap().expect("a checkpoint")
}

/// MySQL 8+'s default `sql_mode` (strict, `NO_ZERO_DATE`) refuses the
/// reference mapping's `OBSDTEC = '0000-00-00'` even in a comparison (error
/// 1525). drugsync's sessions set their own mode, so the shipped config
/// loads and streams on a stock MySQL, and a pooled connection keeps that
/// mode after the pool resets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_mapping_runs_under_mysqls_default_strict_sql_mode_on_mysql() {
    let env = TestEnv::new(Flavour::Mysql, "strictmode", 80).await;
    let mut conn = env.mysql().await;
    let global: String = conn.query_first("SELECT @@GLOBAL.sql_mode").await.unwrap().unwrap();
    assert!(global.contains("STRICT_TRANS_TABLES") && global.contains("NO_ZERO_DATE"), "the server keeps MySQL's default: {global}");
    conn.disconnect().await.unwrap();

    // drugsync's own connection options, through a pool, twice (the second
    // checkout is a connection the pool reset).
    let pool = mysql_async::Pool::new(drugsync::mysql::connect::mysql_opts(&env.config().mysql).unwrap());
    for _ in 0..2 {
        let mut conn = pool.get_conn().await.unwrap();
        let session: String = conn.query_first("SELECT @@SESSION.sql_mode").await.unwrap().unwrap();
        assert_eq!(session, drugsync::mysql::connect::SESSION_SQL_MODE);
        let active: Option<u64> = conn.query_first("SELECT COUNT(*) FROM rndc14 n WHERE n.OBSDTEC = '0000-00-00'").await.unwrap();
        assert!(active.unwrap() > 0);
    }
    pool.disconnect().await.unwrap();

    let run = env.start().await;
    env.wait_caught_up().await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'STRICT LABS' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    run.stop().await;
}

/// Aurora starts with `gtid_mode=OFF`; an operator turns GTIDs on online
/// later (OFF_PERMISSIVE, ON_PERMISSIVE, ON). drugsync's stored position
/// then has no GTID set; after a restart it learns the set at that position
/// from the binlog, so stored positions carry one, and a resume by GTID
/// works where the stored file is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtids_turned_on_online_after_the_first_run_are_learned_on_mysql() {
    let server = PrivateServer::start_with(Flavour::Mysql, vec!["--gtid-mode=OFF".into(), "--enforce-gtid-consistency=OFF".into()]).await;
    let mut env = TestEnv::new_on(&server, "gtidlater", 150).await;
    env.config_text = env.config_text.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
    let run = env.start().await;
    env.wait_caught_up().await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'BEFORE GTIDS' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    run.stop().await;
    assert_eq!(stored_position(&env).await.gtid, None, "GTIDs off: a position of file and offset only");

    // Online, step by step, as MySQL's manual does it.
    env.exec(&[
        "SET GLOBAL enforce_gtid_consistency = ON",
        "SET GLOBAL gtid_mode = OFF_PERMISSIVE",
        "SET GLOBAL gtid_mode = ON_PERMISSIVE",
        "SET GLOBAL gtid_mode = ON",
        "UPDATE rlblrid3 SET MFG = 'AFTER GTIDS' WHERE LBLRID = '000002'",
    ])
    .await;
    let after_update = env.master_position().await.gtid.expect("the server has GTIDs now");
    let run = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    run.stop().await;
    let stored = stored_position(&env).await;
    let stored_set = stored.gtid.clone().expect("the stored position carries a GTID set now");
    let mut conn = env.mysql().await;
    let holds: Option<i64> = conn.exec_first("SELECT GTID_SUBSET(?, ?)", (&after_update, &stored_set)).await.unwrap();
    assert_eq!(holds, Some(1), "{stored_set} holds the update's GTID ({after_update})");
    conn.disconnect().await.unwrap();

    // A resume by GTID: the stored file does not exist on the server, so only
    // the GTID set can say where to go on (a file:offset resume would stop:
    // on_lost_sync = stop).
    env.config_text = env.config_text.replacen("resume_by = \"position\"", "resume_by = \"gtid\"", 1);
    let moved = Position { file: "failed-over-bin.000042".into(), offset: stored.offset, server: None, gtid: stored.gtid.clone() };
    env.store_position(&moved).await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'RESUMED BY GTID' WHERE LBLRID = '000003'"]).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    run.stop().await;
    let ndc = &env.active_ndcs_where("n.LBLRID = '000003'").await[0];
    assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("RESUMED BY GTID"));
}

on_each_server! {
    /// `binlog_row_metadata` switched to MINIMAL while drugsync streams, one
    /// UPDATE, then FULL again (what the operator does when told): the event
    /// without column names stays in the binlog, and drugsync must get past
    /// it without losing the change and without an operator editing Redis.
    async fn an_event_without_column_names_in_the_binlog_is_reconciled_past(flavour) {
        let server = PrivateServer::start(flavour).await;
        let env = TestEnv::new_on(&server, "minimalmeta", 150).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&[
            "SET GLOBAL binlog_row_metadata = MINIMAL",
            "UPDATE rlblrid3 SET MFG = 'WRITTEN WITHOUT NAMES' WHERE LBLRID = '000001'",
            "SET GLOBAL binlog_row_metadata = FULL",
        ])
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000001'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("WRITTEN WITHOUT NAMES"));
        run.stop().await;

        // The same while drugsync is down: the restart meets the event first thing.
        env.exec(&[
            "SET GLOBAL binlog_row_metadata = MINIMAL",
            "UPDATE rlblrid3 SET MFG = 'MET AT THE RESTART' WHERE LBLRID = '000002'",
            "SET GLOBAL binlog_row_metadata = FULL",
        ])
        .await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000002'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("MET AT THE RESTART"));
        run.stop().await;
    }
}

/// MySQL generates its own CA and a server certificate that names no host
/// (`MySQL_Server_..._Auto_Generated_Server_Certificate`). verify-ca checks
/// the chain only, as MySQL's VERIFY_CA does, so it connects with the
/// server's `ca.pem`; verify-identity checks the host too and refuses; a
/// wrong CA is refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_accepts_the_servers_generated_certificate_and_verify_identity_refuses_it_on_mysql() {
    let server = PrivateServer::start(Flavour::Mysql).await;
    let env = TestEnv::new_on(&server, "mysqlcerts", 20).await;
    let password = "Gen-s3cret-5";
    env.create_user("ds_gen", password, true, true).await;
    let ca = server.data_path().join("ca.pem");
    assert!(ca.exists(), "MySQL generated its CA at {}", ca.display());
    let user = env.config_text.replacen("mysql://root@", &format!("mysql://ds_gen:{password}@"), 1);
    let with = |mode: &str, ca: &std::path::Path| user.replacen("mode = \"disabled\"", &format!("mode = \"{mode}\"\nca_file = {ca:?}"), 1);

    assert_eq!(env.connect_error(&with("verify-ca", &ca)).await, None, "verify-ca: the chain is MySQL's own CA");
    let message = env.connect_error(&with("verify-identity", &ca)).await.expect("the certificate names no host");
    assert!(message.contains("TLS to MySQL failed") && message.contains("verify-identity"), "{message}");
    let pki = tempfile::tempdir().unwrap();
    let stranger = common::tls::TestCa::new("someone else's CA").write(pki.path(), "other");
    for mode in ["verify-ca", "verify-identity"] {
        let message = env.connect_error(&with(mode, &stranger)).await.expect("another CA's trust is not MySQL's");
        assert!(message.contains("TLS to MySQL failed") && message.contains("ca_file"), "{mode}: {message}");
    }
    // The whole pipeline over verify-ca.
    let run = env.start_with(&with("verify-ca", &ca)).await;
    env.wait_caught_up().await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'OVER VERIFY-CA' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    run.stop().await;
}

/// `caching_sha2_password` (MySQL 8+'s default; 9.x has no
/// mysql_native_password) over plain TCP: the first login of a user whose
/// password the server has not cached needs the RSA key exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_password_without_tls_logs_in_by_rsa_key_exchange_on_mysql() {
    let server = PrivateServer::start(Flavour::Mysql).await;
    let env = TestEnv::new_on(&server, "sha2plain", 20).await;
    let password = "Rsa-s3cret-3";
    env.create_user("ds_plain", password, false, true).await;
    let mut conn = env.mysql().await;
    let plugin: String = conn.query_first("SELECT plugin FROM mysql.user WHERE user = 'ds_plain'").await.unwrap().expect("the user exists");
    assert_eq!(plugin, "caching_sha2_password");
    // Empties the server's cache of verified passwords: the next login is a full one.
    conn.query_drop("FLUSH PRIVILEGES").await.unwrap();
    conn.disconnect().await.unwrap();
    let config = env.config_text.replacen("mysql://root@", &format!("mysql://ds_plain:{password}@"), 1);
    assert_eq!(env.connect_error(&config).await, None);
    let run = env.start_with(&config).await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    run.stop().await;
}

/// `binlog_transaction_compression=ON` (a session setting on MySQL 8.0.20+):
/// each transaction is one zstd TRANSACTION_PAYLOAD event whose inner events
/// carry no position; the changes inside reach the index and the position
/// stored is the payload's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_transactions_are_decoded_on_mysql() {
    let env = TestEnv::new(Flavour::Mysql, "zstdlive", 300).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    let before = env.master_position().await;
    let mut conn = env.mysql().await;
    conn.query_drop("SET SESSION binlog_transaction_compression = ON").await.unwrap();
    for statement in [
        "UPDATE rlblrid3 SET MFG = CONCAT('ZSTD ', MFG) WHERE LBLRID IN ('000001', '000002')",
        "UPDATE rgcnseq4 SET STR60 = '737 MG' WHERE GCN_SEQNO <= 3",
        "DELETE FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 2",
    ] {
        conn.query_drop(statement).await.unwrap();
    }
    let events: Vec<mysql_async::Row> =
        conn.query(format!("SHOW BINLOG EVENTS IN '{}' FROM {}", before.file, before.offset)).await.unwrap();
    let payloads = events.iter().filter(|row| row.get::<String, _>("Event_type").as_deref() == Some("Transaction_payload")).count();
    assert!(payloads >= 3, "each transaction is a compressed payload: {payloads}");
    conn.disconnect().await.unwrap();
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    let ndc = &env.active_ndcs_where("n.LBLRID = '000001'").await[0];
    assert!(env.field(ndc, "manufacturer").await.unwrap_or_default().starts_with("ZSTD "));
    run.stop().await;
}

/// Starts `replica` replicating from `source` by GTID (MySQL: auto-position;
/// MariaDB: `MASTER_USE_GTID`), or, on MySQL without GTIDs, by file and
/// offset from the start of the source's first binlog; both as root over TCP.
async fn replicate(replica: &PrivateServer, source: &PrivateServer) {
    let mut conn = common::connect(&replica.base_url()).await;
    let statements = match replica.flavour {
        Flavour::MysqlGtidOff => [
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = {}, SOURCE_USER = 'root', SOURCE_LOG_FILE = 'binlog.000001', SOURCE_LOG_POS = 4, GET_SOURCE_PUBLIC_KEY = 1",
                source.port
            ),
            "START REPLICA".to_owned(),
        ],
        Flavour::Mysql => [
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = {}, SOURCE_USER = 'root', SOURCE_AUTO_POSITION = 1, GET_SOURCE_PUBLIC_KEY = 1",
                source.port
            ),
            "START REPLICA".to_owned(),
        ],
        Flavour::Mariadb => [
            format!(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root', MASTER_USE_GTID = slave_pos",
                source.port
            ),
            "START SLAVE".to_owned(),
        ],
    };
    for statement in statements {
        conn.query_drop(&statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    conn.disconnect().await.unwrap();
}

/// Waits until `replica` has applied everything `source` has executed.
async fn wait_replicated(replica: &PrivateServer, source: &PrivateServer) {
    let mut on_source = common::connect(&source.base_url()).await;
    let mut on_replica = common::connect(&replica.base_url()).await;
    let applied: Option<i64> = match replica.flavour {
        Flavour::MysqlGtidOff => {
            let end = drugsync::mysql::server::current_position(&mut on_source).await.unwrap();
            let waited: Option<i64> = on_replica.exec_first("SELECT SOURCE_POS_WAIT(?, ?, 60)", (&end.file, end.offset)).await.unwrap();
            // The number of events waited for, or -1 / NULL on a timeout or a stopped replica.
            waited.filter(|n| *n >= 0).map(|_| 0)
        }
        Flavour::Mysql => {
            let executed: String = on_source.query_first("SELECT @@GLOBAL.gtid_executed").await.unwrap().unwrap();
            on_replica.exec_first("SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 60)", (executed,)).await.unwrap()
        }
        Flavour::Mariadb => {
            let executed: String = on_source.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.unwrap().unwrap();
            on_replica.exec_first("SELECT MASTER_GTID_WAIT(?, 60)", (executed,)).await.unwrap()
        }
    };
    assert_eq!(applied, Some(0), "the replica caught up with its source");
}

/// drugsync streams one change from `source` and stops; while it is down,
/// three changes (a labeler rename to 'WHILE DOWN', a strength, two NDCs
/// gone) are made on the source and replicated, and the source dies.
/// Returns the position drugsync stored, which names the dead source.
async fn stream_then_fail_over(env: &TestEnv, source: PrivateServer, replica: &PrivateServer) -> Position {
    let run = env.start().await;
    env.wait_caught_up().await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'BEFORE FAILOVER' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    run.stop().await;
    let stored = stored_position(env).await;
    env.exec(&[
        "UPDATE rlblrid3 SET MFG = 'WHILE DOWN' WHERE LBLRID = '000002'",
        "UPDATE rgcnseq4 SET STR60 = '515 MG' WHERE GCN_SEQNO = 2",
        "DELETE FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC LIMIT 2",
    ])
    .await;
    wait_replicated(replica, &source).await;
    drop(source);
    stored
}

on_each_server! {
    /// A real failover: drugsync streams from a source whose replica
    /// replicates by GTID, stops; more changes arrive and reach the replica;
    /// the source dies and drugsync is pointed at the replica. The replica
    /// has binlog files of the same names (binlog.000001, ...) with other
    /// contents at other offsets: resuming at the stored offset there would
    /// read another server's bytes. drugsync must see the position is another
    /// server's and resume by GTID, losing nothing (oracle on the replica),
    /// with on_lost_sync = stop so no reconcile can hide a wrong resume.
    async fn a_failover_to_a_gtid_replica_resumes_by_gtid_not_at_the_old_offset(flavour) {
        let source = PrivateServer::start(flavour).await;
        let mut replica_args = vec!["--server-id=2".to_owned()];
        if flavour == Flavour::Mariadb {
            replica_args.push("--log-slave-updates".into());
        }
        let replica = PrivateServer::start_with(flavour, replica_args).await;
        replicate(&replica, &source).await;
        let mut env = TestEnv::new_on(&source, "failover", 200).await;
        env.config_text = env.config_text.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
        let stored = stream_then_fail_over(&env, source, &replica).await;

        // The replica has a file of the stored name. Where its offsets happen
        // to fall on an event boundary, a resume at the stored offset would
        // read the replica's transactions from there and skip the ones before:
        // the stored offset is made such a boundary (the replica's current end,
        // past the changes made while drugsync was down).
        let mut conn = common::connect(&replica.base_url()).await;
        let replica_end = drugsync::mysql::server::current_position(&mut conn).await.unwrap();
        conn.disconnect().await.unwrap();
        assert_eq!(replica_end.file, stored.file, "the replica writes a file of the stored name");
        assert_ne!(replica_end.server, stored.server);
        let aligned = Position { offset: replica_end.offset, ..stored.clone() };
        env.store_position(&aligned).await;

        let old_base = env.mysql_base.clone();
        env.config_text = env.config_text.replacen(&old_base, &replica.base_url(), 1);
        env.mysql_base = replica.base_url();
        let run = env.start().await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let ndc = &env.active_ndcs_where("n.LBLRID = '000002'").await[0];
        assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("WHILE DOWN"));
        run.stop().await;
        let now = stored_position(&env).await;
        assert_ne!(now.server, stored.server, "positions now name the replica: {now}");
    }
}

/// A team that tries GTIDs on Aurora and rolls back: GTIDs ON, then turned
/// off online (ON_PERMISSIVE, OFF_PERMISSIVE, OFF) while drugsync streams.
/// `@@gtid_executed` keeps the old set, so positions still carry it, and
/// `WAIT_FOR_EXECUTED_GTID_SET` now fails (3062). The gate follows the
/// server's current mode: the fence, without a stop, during the run and
/// after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtids_turned_off_after_being_on_stream_through_the_fence_on_mysql() {
    use drugsync::mysql::visibility::GateMode;
    let server = PrivateServer::start(Flavour::Mysql).await;
    let mut env = TestEnv::new_on(&server, "gtidoff", 150).await;
    env.config_text = env.config_text.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
    let run = env.start().await;
    env.wait_caught_up().await;
    assert_eq!(run.stats.gate(), Some(GateMode::Gtid));
    env.exec(&["UPDATE rlblrid3 SET MFG = 'WITH GTIDS' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;

    env.exec(&[
        "SET GLOBAL gtid_mode = ON_PERMISSIVE",
        "SET GLOBAL gtid_mode = OFF_PERMISSIVE",
        "SET GLOBAL gtid_mode = OFF",
        "UPDATE rlblrid3 SET MFG = 'GTIDS TURNED OFF' WHERE LBLRID = '000002'",
    ])
    .await;
    let mut conn = env.mysql().await;
    let executed: String = conn.query_first("SELECT @@GLOBAL.gtid_executed").await.unwrap().unwrap();
    assert!(!executed.is_empty(), "MySQL keeps the old GTID set after GTIDs are off");
    let refused = conn.exec_first::<Option<i64>, _, _>("SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 1)", (&executed,)).await;
    assert!(refused.is_err(), "the GTID wait is refused now: {refused:?}");
    conn.disconnect().await.unwrap();
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    assert_eq!(run.stats.gate(), Some(GateMode::Fence), "the gate follows the server's gtid_mode");
    assert!(!run.handle.is_finished(), "the stream did not stop");
    run.stop().await;
    let stored = stored_position(&env).await;
    assert!(stored.gtid.is_some(), "the stored position still carries the old set: {stored}");

    // A restart meets a position with a GTID set on a server without GTIDs.
    env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER THE RESTART' WHERE LBLRID = '000003'"]).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    assert_eq!(run.stats.gate(), Some(GateMode::Fence));
    run.stop().await;
}

/// A writer failover on MySQL without GTIDs: the replica replicates by file
/// and offset, its binlog files have the source's names with other contents.
/// The stored position names the old server and has no GTID state, so it
/// cannot be resumed anywhere on the replica: under on_lost_sync = stop
/// drugsync stops and says so (never an offset in another server's file),
/// and under reconcile it repairs by a full diff and streams from the
/// replica's own position (oracle on the replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_without_gtids_takes_the_reconcile_path_never_the_old_offset_on_mysql() {
    let source = PrivateServer::start(Flavour::MysqlGtidOff).await;
    let replica = PrivateServer::start_with(Flavour::MysqlGtidOff, vec!["--server-id=2".to_owned()]).await;
    replicate(&replica, &source).await;
    let mut env = TestEnv::new_on(&source, "failnogtid", 200).await;
    let stored = stream_then_fail_over(&env, source, &replica).await;
    assert_eq!(stored.gtid, None, "GTIDs off: file and offset only");

    let old_base = env.mysql_base.clone();
    let on_replica = env.config_text.replacen(&old_base, &replica.base_url(), 1);
    env.mysql_base = replica.base_url();
    let stopping = on_replica.replacen("on_lost_sync = \"reconcile\"", "on_lost_sync = \"stop\"", 1);
    let run = env.start_with(&stopping).await;
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), run.handle).await.expect("must stop").unwrap();
    let message = result.expect_err("another server's offset is never resumed").to_string();
    assert!(message.contains("another server") || message.contains("and this is server"), "{message}");

    env.config_text = on_replica;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.assert_matches_mysql().await;
    let ndc = &env.active_ndcs_where("n.LBLRID = '000002'").await[0];
    assert_eq!(env.field(ndc, "manufacturer").await.as_deref(), Some("WHILE DOWN"));
    run.stop().await;
    let now = stored_position(&env).await;
    assert_ne!(now.server, stored.server, "positions now name the replica: {now}");
}

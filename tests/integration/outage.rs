//! Outages mid-stream: MySQL or Redis restarted while drugsync runs. It must
//! reconnect with backoff and resume with nothing lost. Private servers, so
//! restarting them disturbs no other test.

use crate::common;
use crate::common::on_each_server;
use drugsync::observe::stats::Counter;

use std::time::Duration;

use common::{Flavour, PrivateRedis, PrivateServer, TestEnv};

on_each_server! {
    async fn mysql_restarted_mid_stream(flavour) {
        let mut mysql = PrivateServer::start(flavour).await;
        let env = TestEnv::new_on(&mysql, "mysqloutage", 300).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'BEFORE OUTAGE' WHERE LBLRID = '000001'"]).await;
        mysql.restart().await; // SIGKILL + start: the stream and pooled connections die
        env.exec(&[
            "UPDATE rlblrid3 SET MFG = 'AFTER OUTAGE' WHERE LBLRID = '000002'",
            "UPDATE rgcnseq4 SET STR60 = '31 MG' WHERE GCN_SEQNO = 3",
        ])
        .await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished(), "drugsync kept running through the outage");
        run.stop().await;
    }
}

on_each_server! {
    /// The network, not the server, fails: first every connection closed at
    /// once, then a partition (nothing delivered, no FIN or RST) longer than the
    /// heartbeat timeout, whose connections never come back: only a stream
    /// declared dead and reopened gets past it. Changes made meanwhile all arrive, none twice.
    async fn mysql_connections_cut_and_partitioned_mid_stream(flavour) {
        let env = TestEnv::new(flavour, "mysqlcut", 300).await;
        let direct = flavour.base_url();
        let address = direct.rsplit('@').next().unwrap().to_owned();
        let proxy = common::proxy::FaultyProxy::start(address.clone()).await;
        let through_proxy = env
            .config_text
            .replacen(&format!("@{address}/"), &format!("@127.0.0.1:{}/", proxy.port), 1)
            // A re-read on a partitioned pooled connection is abandoned after this.
            .replacen("query_timeout_secs = 60", "query_timeout_secs = 3", 1);
        assert_ne!(through_proxy, env.config_text);
        let run = env.start_with(&through_proxy).await;
        env.wait_caught_up().await;
        // Mid-stream: the binlog stream is up (it has delivered an event or a
        // heartbeat) before the network fails, not still being set up.
        crate::common::eventually(Duration::from_secs(30), Duration::from_millis(50), "the binlog stream delivered", async || {
            run.stats.source_seen.age().map(|_| ()).ok_or_else(|| "nothing from the stream yet".to_owned())
        })
        .await;
        // Every change below rewrites its documents; one applied again would
        // find them equal and count as unchanged.
        let unchanged = run.stats.counted(Counter::Unchanged);

        proxy.cut().await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER THE CUT' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;

        proxy.partition().await;
        env.exec(&[
            "UPDATE rlblrid3 SET MFG = 'DURING THE PARTITION' WHERE LBLRID = '000002'",
            "UPDATE rgcnseq4 SET STR60 = '37 MG' WHERE GCN_SEQNO = 3",
        ])
        .await;
        // Longer than three heartbeats (1 s in tests): the stream is declared dead while partitioned.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let silent = run.stats.source_seen.age().unwrap_or_default();
        assert!(silent >= Duration::from_secs(3), "the partition silenced the stream past three heartbeats ({silent:?})");
        let before_heal = proxy.accepted();
        proxy.heal();
        // Partitioned connections never deliver again: catching up needs new ones.
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(proxy.accepted() > before_heal, "drugsync opened new connections after the partition");
        assert_eq!(run.stats.counted(Counter::Unchanged), unchanged, "no change was applied twice after a reconnect");
        assert!(!run.handle.is_finished(), "drugsync kept running through both");
        run.stop().await;
    }
}

on_each_server! {
    /// A stop must not wait on the network. A query abandoned at its deadline
    /// on a partitioned link leaves its connection to mysql_async, which
    /// drains it before the pool can close, waiting for an answer that never
    /// comes: `Pool::disconnect` alone hangs (CI saw a stop held past 30 s).
    /// drugsync's `close_pool` gives up on it and returns.
    async fn closing_the_pool_is_not_held_by_a_connection_abandoned_on_a_partitioned_link(flavour) {
        let direct = flavour.base_url();
        let address = direct.rsplit('@').next().unwrap().to_owned();
        let proxy = common::proxy::FaultyProxy::start(address.clone()).await;
        let url = direct.replacen(&format!("@{address}"), &format!("@127.0.0.1:{}", proxy.port), 1);
        // Through the proxy, not the server's Unix socket (mysql_async's default for 127.0.0.1).
        let pool = mysql_async::Pool::new(mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).unwrap()).prefer_socket(false));
        let mut conn = pool.get_conn().await.unwrap();
        use mysql_async::prelude::Queryable;
        // As drugsync's snapshot reads (bootstrap, visibility) do.
        let mut snapshot = conn.start_transaction(mysql_async::TxOpts::default()).await.unwrap();
        snapshot.query_drop("SELECT 1").await.unwrap();
        proxy.partition().await;
        // Given up between statements (an error elsewhere, a cancelled task):
        // mysql_async keeps the connection to roll the transaction back.
        drop(snapshot);
        drop(conn);
        // drugsync's bound, whatever mysql_async does (today its own disconnect waits on the dead link).
        tokio::time::timeout(Duration::from_secs(30), drugsync::mysql::connect::close_pool(pool))
            .await
            .expect("close_pool returns although a connection never comes back");
    }
}

on_each_server! {
    async fn redis_restarted_mid_stream_with_persistence(flavour) {
        let mut redis = PrivateRedis::start(true).await;
        let env = TestEnv::new_with(flavour, "redisoutage", 300, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let (upserts, calls) = (run.stats.counted(Counter::Upserted), run.embed_calls());
        redis.restart().await;
        // Changes while Redis is back but drugsync's connections are broken.
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER REDIS RESTART' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        // Redis kept everything: nothing is reloaded, only the labeler's documents are written.
        let of_labeler = env.active_ndcs_where("n.LBLRID = '000001'").await.len() as u64;
        assert_eq!(run.stats.counted(Counter::Upserted) - upserts, of_labeler, "only the renamed labeler's documents were written");
        assert_eq!(run.embed_calls(), calls, "a rename embeds nothing, and no reload re-embedded anything");
        assert!(!run.handle.is_finished());
        run.stop().await;
    }
}

on_each_server! {
    async fn redis_unreachable_for_a_while_then_back_empty_is_rebuilt(flavour) {
        // No persistence: the restart loses every document, the index and the position.
        let mut redis = PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "redisloss", 300, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let (upserts, calls) = (run.stats.counted(Counter::Upserted), run.embed_calls());
        let rewinds = run.stats.counted(Counter::RedisRewinds);
        redis.restart().await;
        // A change while drugsync rebuilds: it noticed the loss by itself first.
        common::eventually(Duration::from_secs(30), Duration::from_millis(50), "the writer noticed Redis lost everything", async || {
            let now = run.stats.counted(Counter::RedisRewinds);
            if now > rewinds { Ok(()) } else { Err(format!("{now} rewinds")) }
        })
        .await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER DATA LOSS' WHERE LBLRID = '000003'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        let (docs, failures) = env.index_counts().await;
        let expected = env.expected().await.len();
        assert_eq!((docs as usize, failures), (expected, 0), "index rebuilt and searchable");
        // Redis lost everything, the vector cache too: every document written and embedded again.
        assert!(run.stats.counted(Counter::Upserted) - upserts >= expected as u64, "every document written again");
        assert!(run.embed_calls() > calls, "the lost vectors were embedded again");
        run.stop().await;
    }
}

on_each_server! {
    /// FDB changes weekly, so drugsync's pooled connections sit idle for days
    /// and the server closes them (`wait_timeout`; MySQL 8 then says 4031). The
    /// next change must still arrive: a closed connection is dropped, not fatal.
    async fn connections_closed_by_the_server_while_idle_are_replaced(flavour) {
        let mysql = PrivateServer::start_with(flavour, vec!["--wait-timeout=2".into(), "--interactive-timeout=2".into()]).await;
        let env = TestEnv::new_on(&mysql, "idleclose", 200).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        // The server closes drugsync's idle pooled connections (Aborted_clients
        // counts a connection closed after wait_timeout).
        let aborted = || async {
            let mut conn = env.mysql().await;
            let row: Option<(String, u64)> = mysql_async::prelude::Queryable::query_first(&mut conn, "SHOW GLOBAL STATUS LIKE 'Aborted_clients'").await.unwrap();
            conn.disconnect().await.unwrap();
            row.map_or(0, |r| r.1)
        };
        let before = aborted().await;
        common::eventually(Duration::from_secs(20), Duration::from_millis(200), "the server closed idle connections", async || {
            let now = aborted().await;
            if now > before { Ok(()) } else { Err(format!("Aborted_clients {now}")) }
        })
        .await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'AFTER A LONG QUIET' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished(), "idle connections closed by the server are not fatal");
        run.stop().await;
    }
}

on_each_server! {
    /// A statement the server kills for running too long (MariaDB 1969,
    /// MySQL 3024) is retried, not fatal: here the fan-out query is slow until
    /// an operator removes the cause. The slowness is a cross join the server
    /// really interrupts (MySQL's `max_execution_time` ends a `SLEEP()` by
    /// making it return 1, with no error).
    async fn a_statement_killed_by_the_server_timeout_is_retried(flavour) {
        let limit = match flavour {
            Flavour::Mariadb => "--max-statement-time=0.5",
            _ => "--max-execution-time=500",
        };
        let mysql = PrivateServer::start_with(flavour, vec![limit.into()]).await;
        let mut env = TestEnv::new_on(&mysql, "stmttimeout", 200).await;
        env.exec(&["CREATE TABLE slow_rows (n INT)"]).await;
        // The labeler fan-out first scans a three-way cross join of slow_rows (MySQL answers a plain COUNT(*) of one from the tables' counts).
        let slow = env.config_text.replacen(
            "WHERE n.LBLRID IN ({values}) AND n.OBSDTEC = '0000-00-00'\"",
            "WHERE n.LBLRID IN ({values}) AND n.OBSDTEC = '0000-00-00' AND (SELECT COALESCE(MAX(a.n + b.n + c.n), 0) FROM slow_rows a, slow_rows b, slow_rows c) >= 0\"",
            1,
        );
        assert_ne!(slow, env.config_text);
        env.use_config(slow);
        let run = env.start().await;
        env.wait_caught_up().await;
        let mut fill = vec!["INSERT INTO slow_rows VALUES (1)".to_owned()];
        for _ in 0..9 {
            fill.push("INSERT INTO slow_rows SELECT n FROM slow_rows".into());
        }
        fill.push("UPDATE rlblrid3 SET MFG = 'AFTER THE TIMEOUTS' WHERE LBLRID = '000002'".into());
        env.exec(&fill.iter().map(String::as_str).collect::<Vec<_>>()).await;
        // The server killed the fan-out, and drugsync retries it.
        let killed = common::eventually(Duration::from_secs(20), Duration::from_millis(50), "a statement killed by the server", async || {
            match run.stats.progress.last_error() {
                Some((error, _)) if error.contains("(1969)") || error.contains("(3024)") => Ok(error),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(!run.handle.is_finished(), "a killed statement is not fatal: {killed}");
        env.exec(&["DELETE FROM slow_rows"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        run.stop().await;
    }
}

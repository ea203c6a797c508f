//! Redis states that refuse writes for a while (out of memory, a long
//! script) are waited out, not turned into a crash loop; a demoted primary
//! (READONLY) is left for the new one. Private Redis servers, so the
//! failures touch no other test.

use crate::common;
use crate::common::on_each_server;
use drugsync::observe::stats::Counter;

use std::time::Duration;

use common::{PrivateRedis, TestEnv, eventually};

async fn redis_cmd(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).unwrap();
    // No response deadline: the long script of the BUSY test answers after seconds.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await.unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

on_each_server! {
    /// maxmemory reached under `noeviction`: every write answers OOM. drugsync
    /// waits with a warning; once memory is raised the change arrives.
    async fn out_of_memory_is_waited_out_and_the_change_arrives_after(flavour) {
        let redis = PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "redis_oom", 200, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;
        let batches = run.stats.counted(Counter::Batches);

        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory", "1"]).await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'WRITTEN AFTER OOM' WHERE LBLRID = '000001'"]).await;
        // A write was tried and refused with OOM, and waited out with its hint.
        let refused = crate::common::eventually(Duration::from_secs(20), Duration::from_millis(100), "a write refused with OOM", async || {
            match run.stats.progress.last_error() {
                Some((error, _)) if error.contains("maxmemory") => Ok(error),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(refused.contains("drugsync waits and retries"), "{refused}");
        assert!(!run.handle.is_finished(), "OOM must not stop drugsync");
        assert_eq!(run.stats.counted(Counter::Batches), batches, "nothing was applied while Redis refused writes");

        // A writer whose every write is refused is not ready, long before its
        // lag reaches the lag bound (300 s), and the lag it reports grows.
        let bounds = drugsync::app::metrics::bounds(&env.config());
        let ready = || drugsync::observe::health::readiness(&drugsync::app::metrics::observe(&run.stats), &bounds);
        let lag_then = run.stats.lag();
        let verdict = eventually(Duration::from_secs(20), Duration::from_millis(200), "not ready while writes are refused", async || {
            let verdict = ready();
            if verdict.ok { Err(format!("{verdict:?}")) } else { Ok(verdict) }
        })
        .await;
        assert!(verdict.failing.iter().any(|f| f.contains("has failed for") && f.contains("maxmemory")), "{verdict:?}");
        assert!(run.stats.lag() > lag_then && run.stats.lag() < bounds.lag, "the lag grows ({:?} -> {:?}) and is far below its bound", lag_then, run.stats.lag());

        redis_cmd(&redis.url(), &["CONFIG", "SET", "maxmemory", "0"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        eventually(Duration::from_secs(20), Duration::from_millis(200), "ready again once Redis takes writes", async || {
            let verdict = ready();
            if verdict.ok { Ok(()) } else { Err(format!("{verdict:?}")) }
        })
        .await;
        run.stop().await;
    }
}

on_each_server! {
    /// A script that runs past the busy threshold makes Redis answer BUSY to
    /// everyone else until it ends: drugsync rides it out.
    async fn a_busy_script_is_waited_out(flavour) {
        let redis = PrivateRedis::start(false).await;
        let env = TestEnv::new_with(flavour, "redis_busy", 200, &redis.url()).await;
        let run = env.start().await;
        env.wait_caught_up().await;

        redis_cmd(&redis.url(), &["CONFIG", "SET", "busy-reply-threshold", "100"]).await;
        let url = redis.url();
        // Busy for about 4 s (the script cannot be killed meanwhile by us: it only reads).
        let busy = tokio::spawn(async move {
            let script =
                "local t = redis.call('TIME') local stop = tonumber(t[1]) + 4 while tonumber(redis.call('TIME')[1]) < stop do end return 1";
            redis_cmd(&url, &["EVAL", script, "0"]).await
        });
        // The script runs: Redis answers BUSY to everyone else.
        let client = redis::Client::open(redis.url()).unwrap();
        eventually(Duration::from_secs(5), Duration::from_millis(20), "Redis busy with the script", async || {
            let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
            match redis::cmd("PING").query_async::<String>(&mut conn).await {
                Err(e) if e.to_string().contains("BUSY") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        env.exec(&["UPDATE rlblrid3 SET MFG = 'WRITTEN AFTER BUSY' WHERE LBLRID = '000002'"]).await;
        // drugsync met BUSY (its write or its idle look) and retried.
        let seen = eventually(Duration::from_secs(10), Duration::from_millis(50), "drugsync met BUSY", async || {
            match run.stats.progress.last_error() {
                Some((error, _)) if error.contains("BUSY") => Ok(error),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(!run.handle.is_finished(), "BUSY must not stop drugsync: {seen}");
        busy.await.unwrap();
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished(), "BUSY must not stop drugsync");
        run.stop().await;
    }
}

on_each_server! {
    /// A failover: the primary drugsync writes to is demoted to a replica of
    /// another server, which is promoted, and the address drugsync uses now
    /// leads to the new primary (as a DNS name moves). drugsync's open
    /// connection still reaches the old server, which answers READONLY: it must
    /// reconnect rather than retry there forever.
    async fn a_demoted_primary_answering_readonly_is_left_for_the_new_primary(flavour) {
        let old_primary = PrivateRedis::start(false).await;
        let new_primary = PrivateRedis::start(false).await;
        let proxy = common::proxy::FaultyProxy::start(format!("127.0.0.1:{}", old_primary.port)).await;
        let through_proxy = format!("redis://127.0.0.1:{}", proxy.port);
        let env = TestEnv::new_with(flavour, "redis_readonly", 200, &through_proxy).await;
        let run = env.start().await;
        env.wait_caught_up().await;

        // The new primary first replicates the old one, as a standby replica does.
        redis_cmd(&new_primary.url(), &["REPLICAOF", "127.0.0.1", &old_primary.port.to_string()]).await;
        eventually(Duration::from_secs(30), Duration::from_millis(100), "the replica synced", async || {
            let info: String = redis::from_redis_value(redis_cmd(&new_primary.url(), &["INFO", "replication"]).await).unwrap();
            if info.contains("master_link_status:up") { Ok(()) } else { Err(info) }
        })
        .await;
        // Failover: promote, redirect the address, demote.
        redis_cmd(&new_primary.url(), &["REPLICAOF", "NO", "ONE"]).await;
        proxy.switch_to(format!("127.0.0.1:{}", new_primary.port));
        redis_cmd(&old_primary.url(), &["REPLICAOF", "127.0.0.1", &new_primary.port.to_string()]).await;

        env.exec(&["UPDATE rlblrid3 SET MFG = 'WRITTEN TO THE NEW PRIMARY' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        assert!(!run.handle.is_finished(), "READONLY must not stop drugsync");
        let role: Vec<redis::Value> = redis::from_redis_value(redis_cmd(&new_primary.url(), &["ROLE"]).await).unwrap();
        assert_eq!(redis::from_redis_value::<String>(role[0].clone()).unwrap(), "master");
        run.stop().await;
    }
}

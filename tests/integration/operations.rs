//! What an operator sees: `/healthz` and `/readyz` on the metrics listener
//! of a writer and a standby, readiness lost when Redis goes away, one log
//! line for applied work, and `drugsync status` while drugsync runs and after.

use crate::common;
use crate::common::on_each_server;

use std::time::{Duration, Instant};

use common::http::{free_port, get, with_metrics};
use common::{PrivateRedis, TestEnv};

/// Polls `path` until `want(code, body)` or 30 s; returns the last answer.
async fn until(port: u16, path: &str, want: impl Fn(u16, &serde_json::Value) -> bool) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((code, body)) = get(port, path).await {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if want(code, &json) {
                return (code, json);
            }
            assert!(Instant::now() < deadline, "{path} on {port} did not give the awaited answer within 30 s; last: {code} {json}");
        } else {
            assert!(Instant::now() < deadline, "nothing listens on {port}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `drugsync status --output json` on `config`.
fn status(env: &TestEnv, config: &str, log: &str) -> serde_json::Value {
    let output =
        env.binary_command(config, log).args(["status", "--output", "json"]).stdout(std::process::Stdio::piped()).output().unwrap();
    assert!(output.status.success(), "{}", std::fs::read_to_string(env.log_path(log)).unwrap());
    serde_json::from_slice(&output.stdout).unwrap()
}

on_each_server! {
    async fn probes_log_lines_and_status_while_running_and_after(flavour) {
        let mut redis = PrivateRedis::start(true).await;
        let env = TestEnv::new_with(flavour, "operations", 200, &redis.url()).await;
        let (writer_port, standby_port) = (free_port(), free_port());
        let writer_config = with_metrics(&env.config_text, writer_port);
        let mut writer = env.spawn_binary_with(&writer_config, "writer.log");
        env.wait_caught_up().await;

        let (code, ready) = until(writer_port, "/readyz", |code, _| code == 200).await;
        assert_eq!((code, ready["role"].as_str()), (200, Some("writer")), "{ready}");
        let (code, healthy) = until(writer_port, "/healthz", |code, _| code == 200).await;
        assert_eq!(code, 200, "{healthy}");

        // A change is one "applied" line with its counts.
        env.exec(&["UPDATE rlblrid3 SET MFG = 'OPERATIONS CHECK' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        let applied = common::eventually(Duration::from_secs(10), Duration::from_millis(200), "an 'applied' line for the change", async || {
            let log = std::fs::read_to_string(env.log_path("writer.log")).unwrap();
            let line = log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| l["message"] == "applied" && l["upserted"].as_u64().unwrap_or(0) > 0);
            line.ok_or(log)
        })
        .await;
        assert!(applied["transactions"].as_u64().unwrap() >= 1 && applied["position"].is_string() && applied["lag_ms"].is_u64(), "{applied}");
        // Pinned (issue 29, step 0): the SST alarms parse these fields.
        let fields: std::collections::BTreeSet<&str> = applied.as_object().unwrap().keys().map(String::as_str).collect();
        let pinned: std::collections::BTreeSet<&str> = [
            "timestamp", "level", "message", "target", "transactions", "batches", "position", "upserted", "deleted", "unchanged",
            "embed_calls", "quarantined", "lag_ms",
        ]
        .into_iter()
        .collect();
        assert_eq!(fields, pinned, "the applied line's fields");

        // A standby is ready to take over and says it is a standby.
        let standby_config = with_metrics(&env.config_text, standby_port).replacen("checkpoint.redb", "standby.redb", 1);
        let mut standby = env.spawn_binary_with(&standby_config, "standby.log");
        let (code, ready) = until(standby_port, "/readyz", |code, _| code == 200).await;
        assert_eq!((code, ready["role"].as_str()), (200, Some("standby")), "{ready}");

        // Status while running.
        let expected_docs = env.expected().await.len() as u64;
        let report = status(&env, &env.config_text, "status-running.log");
        assert!(report["writer"].is_string(), "{report}");
        assert!(report["lease_ttl_ms"].as_u64().is_some_and(|ttl| ttl <= 10_000), "{report}");
        assert!(report["local_position"].as_str().unwrap().contains("running"), "the writer holds its checkpoint: {report}");
        assert!(report["redis_position"].as_str().is_some_and(|p| p.contains("/binlog.")), "the server, then its file: {report}");
        assert_eq!(report["documents"].as_u64(), Some(expected_docs), "{report}");
        assert_eq!((report["quarantined"].as_u64(), report["pending_repairs"].as_u64()), (Some(0), Some(0)));
        assert_eq!(report["source"]["position_file_present"].as_bool(), Some(true), "{report}");
        assert!(report["last_commit"].as_u64().is_some() && report["status_age_secs"].as_u64().is_some_and(|a| a <= 5), "{report}");

        // Redis goes away: the writer is no longer ready, and says why.
        redis.stop();
        let (code, ready) = until(writer_port, "/readyz", |code, _| code == 503).await;
        assert_eq!(code, 503, "{ready}");
        assert!(ready["failing"].to_string().contains("Redis"), "{ready}");
        redis.start_again().await;
        let (code, _) = until(writer_port, "/readyz", |code, _| code == 200).await;
        assert_eq!(code, 200, "ready again once Redis answers");

        // Status once nothing runs: no writer, and the checkpoint can be read.
        for child in [&mut writer, &mut standby] {
            std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
            child.wait().unwrap();
        }
        // A first start is routine: nothing about the checkpoint is a warning.
        let log = std::fs::read_to_string(env.log_path("writer.log")).unwrap();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("\"level\":\"WARN\"") && l.contains("checkpoint")).collect();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(log.contains("checkpoint set"), "the first position is logged, at INFO");
        let report = status(&env, &env.config_text, "status-stopped.log");
        assert!(report["writer"].is_null(), "{report}");
        assert!(report["local_position"].as_str().unwrap().contains("/binlog."), "{report}");
        let table =
            env.binary_command(&env.config_text, "status-table.log").arg("status").stdout(std::process::Stdio::piped()).output().unwrap();
        let table = String::from_utf8(table.stdout).unwrap();
        eprintln!("{table}");
        assert!(table.contains("none running") && table.contains("documents"), "{table}");
    }
}

/// User and system CPU time of process `pid` so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

on_each_server! {
    /// Hundreds of clients that connect to the metrics listener and say
    /// nothing, against a process allowed 256 descriptors. The listener
    /// accepted without limit until every accept failed with EMFILE, and then
    /// tried again at once, burning a core. Now it serves a bounded number at
    /// once (the rest wait in the kernel's backlog) and pauses on a failed
    /// accept: the writer stays idle, still applies changes, and the probes
    /// answer once the clients go.
    async fn idle_clients_of_the_metrics_listener_neither_spin_nor_starve_the_writer(flavour) {
        let env = TestEnv::new(flavour, "idleclients", 50).await;
        let port = free_port();
        let config = with_metrics(&env.config_text, port);
        let mut child = env.spawn_binary_with(&config, "run.log");
        env.wait_caught_up().await;
        let pid = child.id();
        let limited = std::process::Command::new("prlimit").arg(format!("--pid={pid}")).arg("--nofile=256:256").status().unwrap();
        assert!(limited.success());
        let _ = until(port, "/healthz", |code, _| code == 200).await;

        let mut idle = Vec::new();
        for _ in 0..320 {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if let Ok(socket) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(50)) {
                idle.push(socket);
            }
        }
        assert!(idle.len() > 100, "only {} clients connected", idle.len());
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let spent = cpu_ticks(pid) - before;
        assert!(spent < 100, "drugsync used {spent} ticks of CPU in 3 s with idle clients connected (a spinning accept loop uses about 300)");
        env.exec(&["UPDATE rlblrid3 SET MFG = 'WHILE CLIENTS IDLE' WHERE LBLRID = '000001'"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;

        drop(idle);
        let (code, _) = until(port, "/healthz", |code, _| code == 200).await;
        assert_eq!(code, 200);
        assert!(child.try_wait().unwrap().is_none(), "drugsync kept running");
        child.kill().ok();
        child.wait().ok();
    }
}

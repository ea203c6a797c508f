//! The weekly FDB reload: one transaction rewriting every row, streamed by
//! the binary in bounded memory and applied by a full hash diff.

use std::time::Duration;

use crate::common::on_every_source;
use crate::common::{self, Flavour, TestEnv};

/// Peak RSS the binary may reach over the whole test (initial load included).
/// Holding the reload's row images (25 columns each) would take several
/// hundred MB; the routing values and one page of a hash diff take a few.
const PEAK_RSS_BUDGET_MB: u64 = 64;

/// Kills the binary when the test ends, failed or not.
struct Binary(std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

on_every_source! {
    async fn a_reload_of_200000_row_images_streams_in_bounded_memory_and_converges(flavour) {
        reload_in_bounded_memory(flavour, "bigtx", 100_000, false).await;
    }
}

/// Peak RSS of the compressed reload may differ between its two sizes by
/// at most this: what grows with the transaction would show as tens of MB.
const SIZE_INDEPENDENT_MB: u64 = 6;

/// The same reload with `binlog_transaction_compression=ON`: the whole
/// transaction is one zstd payload (tens of MB compressed, hundreds
/// expanded). It must be read from the wire and decoded as it expands: at
/// 100,000 and at 400,000 row images the peak is the same, within the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_reload_streams_in_the_same_memory_at_100000_and_400000_row_images_on_mysql() {
    let small = reload_in_bounded_memory(Flavour::Mysql, "zstdsmall", 50_000, true).await;
    let large = reload_in_bounded_memory(Flavour::Mysql, "zstdlarge", 200_000, true).await;
    eprintln!("compressed reload peak RSS: {small} MB at 100,000 row images, {large} MB at 400,000");
    assert!(
        large.abs_diff(small) <= SIZE_INDEPENDENT_MB,
        "peak RSS grows with the transaction: {small} MB at 100,000 row images, {large} MB at 400,000"
    );
}

/// Runs the weekly reload shape at `ndcs` NDCs (twice as many row images)
/// under the binary and returns its peak RSS in MB.
async fn reload_in_bounded_memory(flavour: Flavour, name: &str, ndcs: usize, compressed: bool) -> u64 {
    let env = TestEnv::new(flavour, name, ndcs).await;
    // Most NDCs obsolete keeps the index (and the initial load) small; the
    // reload still rewrites every row: two row images each.
    let ndcs: Vec<String> = {
        use mysql_async::prelude::Queryable;
        let mut conn = env.mysql().await;
        conn.query("SELECT NDC FROM rndc14 WHERE OBSDTEC = '0000-00-00' ORDER BY NDC").await.unwrap()
    };
    // The same index at every size: only the reload grows.
    let keep = &ndcs[2_500.min(ndcs.len() - 1)];
    let renamed = &ndcs[3];
    let dropped = &ndcs[5];
    env.exec(&[
        &format!("UPDATE rndc14 SET OBSDTEC = '2020-01-01' WHERE OBSDTEC = '0000-00-00' AND NDC > '{keep}'"),
        "CREATE TABLE rndc14_copy AS SELECT * FROM rndc14",
        // The reload carries two real changes among its rewrites.
        &format!("UPDATE rndc14_copy SET LN60 = 'RELOADED NAME' WHERE NDC = '{renamed}'"),
        &format!("DELETE FROM rndc14_copy WHERE NDC = '{dropped}'"),
    ])
    .await;

    let binary = Binary(env.spawn_binary("run.log"));
    env.wait_caught_up().await;
    let pid = binary.0.id();
    let before_reload = status_kb(pid, "VmHWM:") / 1024;

    let compression = if compressed { "ON" } else { "OFF" };
    let compression = format!("SET SESSION binlog_transaction_compression = {compression}");
    let mut reload = vec!["START TRANSACTION", "DELETE FROM rndc14", "INSERT INTO rndc14 SELECT * FROM rndc14_copy", "COMMIT"];
    if flavour.is_mysql() {
        reload.insert(0, &compression);
    }
    let before = env.master_position().await;
    env.exec(&reload).await;
    if compressed {
        // The reload really is one zstd payload in the binlog.
        use mysql_async::prelude::Queryable;
        let mut conn = env.mysql().await;
        let listing = format!("SHOW BINLOG EVENTS IN '{}' FROM {} LIMIT 1000", before.file, before.offset);
        let events: Vec<mysql_async::Row> = conn.query(listing).await.unwrap();
        let payloads = events.iter().filter(|row| row.get::<String, _>("Event_type").as_deref() == Some("Transaction_payload")).count();
        assert!(payloads >= 1, "the reload was written compressed");
    }
    env.wait_caught_up().await;
    let peak = status_kb(pid, "VmHWM:") / 1024;
    eprintln!("peak RSS: {before_reload} MB before the reload, {peak} MB after");
    assert!(
        peak <= PEAK_RSS_BUDGET_MB,
        "peak RSS {peak} MB over the {PEAK_RSS_BUDGET_MB} MB budget (before the reload: {before_reload} MB)"
    );

    env.assert_matches_mysql().await;
    assert_eq!(env.field(renamed, "drug_name").await.as_deref(), Some("RELOADED NAME"));
    assert_eq!(env.field(dropped, "ndc").await, None, "the NDC the reload left out is gone");
    // Which path was taken: the log line may reach the file a moment after the write.
    let path = env.log_path("run.log");
    common::eventually(Duration::from_secs(5), Duration::from_millis(50), "the reload applied by a full hash diff", async || {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains("applying it by a full hash diff") {
            Ok(())
        } else {
            Err("no full hash diff in the log (applied key by key?)".into())
        }
    })
    .await;
    peak
}

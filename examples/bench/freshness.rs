//! Freshness: how long after a source COMMIT returns the drug's hash in
//! Redis holds the new value, polled from outside drugsync, for single
//! brand-name edits at a steady rate, alone and under a background of
//! mixed commits (half single-row edits, half labeler renames that fan out
//! to many documents).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::support::BoxError;

/// What one freshness run needs.
pub struct Freshness<'a> {
    /// The source, with its schema (`mysql://.../schema`).
    pub mysql_url: String,
    /// A Redis connection for polling.
    pub redis: redis::aio::MultiplexedConnection,
    /// The live index version's key prefix (`bench_v…:`).
    pub key_prefix: &'a str,
    /// Active NDCs (each one a document).
    pub ndcs: &'a [String],
}

/// Commit-to-visible latencies (ms) of `edits` edits at `per_second`, and
/// the background's achieved commits per second when one ran.
pub struct Measured {
    pub latencies_ms: Vec<f64>,
    pub background_per_second: Option<f64>,
}

impl Measured {
    /// "p50 / p90 / p99 / max" in ms.
    pub fn quantiles(&self) -> String {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let q = |p: f64| sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1];
        format!("p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms", q(0.5), q(0.9), q(0.99), q(1.0))
    }
}

/// Milliseconds from `committed` until `key`'s brand name reads `value`.
async fn visible_after(
    mut redis: redis::aio::MultiplexedConnection,
    key: String,
    value: String,
    committed: Instant,
) -> Result<f64, String> {
    loop {
        let seen: Option<String> =
            redis::cmd("HGET").arg(&key).arg("brand_name").query_async(&mut redis).await.map_err(|e| format!("{key}: {e}"))?;
        if seen.as_deref() == Some(value.as_str()) {
            return Ok(committed.elapsed().as_secs_f64() * 1000.0);
        }
        if committed.elapsed() > Duration::from_secs(120) {
            return Err(format!("{key} did not show {value:?} within 120 s"));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

impl Freshness<'_> {
    /// Runs `edits` single-row brand-name edits, `per_second` of them, each
    /// on a random drug, and times each from its COMMIT returning until the
    /// drug's hash shows the value. With `background_per_second`, a
    /// background of that many commits a second runs meanwhile (half edits
    /// of another column on random drugs, half labeler renames).
    pub async fn run(
        &mut self,
        tag: &str,
        edits: usize,
        per_second: f64,
        background_per_second: Option<f64>,
    ) -> Result<Measured, BoxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let background = match background_per_second {
            Some(rate) => Some(self.spawn_background(rate, stop.clone()).await?),
            None => None,
        };
        let mut conn = crate::support::loader_connection(&self.mysql_url).await?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let gap = Duration::from_secs_f64(1.0 / per_second);
        let started = Instant::now();
        let mut watchers = Vec::with_capacity(edits);
        // Each edit is watched by its own task, so the edits keep their rate
        // however late drugsync makes them visible.
        for i in 0..edits {
            let next = started + gap * i as u32;
            tokio::time::sleep_until(next.into()).await;
            let ndc = self.ndcs.choose(&mut rng).ok_or("no active NDC")?;
            let value = format!("FRESH {tag} {i}");
            conn.exec_drop("UPDATE rndc14 SET BN = ? WHERE NDC = ?", (&value, ndc)).await?;
            let committed = Instant::now();
            watchers.push(tokio::spawn(visible_after(self.redis.clone(), format!("{}{ndc}", self.key_prefix), value, committed)));
        }
        let mut latencies_ms = Vec::with_capacity(edits);
        for watcher in watchers {
            latencies_ms.push(watcher.await??);
        }
        stop.store(true, Ordering::SeqCst);
        let background_per_second = match background {
            Some(task) => {
                let (commits, secs) = task.await??;
                Some(commits as f64 / secs)
            }
            None => None,
        };
        Ok(Measured { latencies_ms, background_per_second })
    }

    /// Commits `rate` a second until `stop`: even ones edit a random drug's
    /// package description, odd ones rename a random labeler (every drug of
    /// it changes). Returns (commits, seconds).
    async fn spawn_background(
        &self,
        rate: f64,
        stop: Arc<AtomicBool>,
    ) -> Result<tokio::task::JoinHandle<Result<(u64, f64), mysql_async::Error>>, BoxError> {
        let mut conn = crate::support::loader_connection(&self.mysql_url).await?;
        let labelers: Vec<String> = conn.query("SELECT LBLRID FROM rlblrid3").await?;
        let ndcs = self.ndcs.to_vec();
        let committed = Arc::new(AtomicU64::new(0));
        Ok(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
            let gap = Duration::from_secs_f64(1.0 / rate);
            let started = Instant::now();
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep_until((started + gap * i).into()).await;
                if i.is_multiple_of(2) {
                    let ndc = &ndcs[rng.random_range(0..ndcs.len())];
                    conn.exec_drop("UPDATE rndc14 SET DEA = IF(DEA = '2', '3', '2') WHERE NDC = ?", (ndc,)).await?;
                } else {
                    let lbl = &labelers[rng.random_range(0..labelers.len())];
                    conn.exec_drop("UPDATE rlblrid3 SET MFG = CONCAT('BACKGROUND ', ?) WHERE LBLRID = ?", (i, lbl)).await?;
                }
                committed.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok((committed.load(Ordering::Relaxed), started.elapsed().as_secs_f64()))
        }))
    }
}

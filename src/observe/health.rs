//! Health and readiness, as `/healthz` and `/readyz` on the metrics
//! listener report them.
//!
//! - **healthz**: the process is alive and, when it is the writer, its loop
//!   is moving (its last step ended less than `pipeline.stall_timeout_secs`
//!   ago; see `observe::progress`). A standby is healthy while it runs.
//! - **readyz**: the writer heard from the binlog stream (an event or a
//!   heartbeat) within three heartbeat periods, from Redis within the lease
//!   TTL, has its index version live behind the alias, is not replaying
//!   writes Redis lost after acknowledging them, and its last batch's
//!   lag is under `metrics.ready_max_lag_secs`, and no step has failed on
//!   every attempt for longer than [`FAILING_GRACE`]. A standby is ready when it
//!   hears from Redis (it can take over); its answer says `"role": "standby"`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// When something was last heard from, shared by clones (Unix milliseconds; 0 = never).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// Records that it was heard from now.
    pub fn mark(&self) {
        self.0.store(unix_ms(), Ordering::Relaxed);
    }

    /// Time since it was last heard from; `None` if never.
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(unix_ms().saturating_sub(at))),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What the probes look at, taken at one moment.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Holds the writer lease.
    pub writer: bool,
    /// Since the writer's loop last moved.
    pub silent: Duration,
    /// Since the binlog stream last delivered (`None`: never).
    pub source_age: Option<Duration>,
    /// Since Redis last answered (`None`: never).
    pub redis_age: Option<Duration>,
    /// The writer's index version is live behind the alias.
    pub index_live: bool,
    /// Redis lost writes it had acknowledged: the position the writer's
    /// replay must reach again (see `observe::lost_writes`).
    pub replaying_lost_writes: Option<String>,
    /// Lag of the last applied batch.
    pub lag: Duration,
    /// Redis may evict drugsync's keys (run under `redis.allow_eviction`).
    pub redis_may_evict: bool,
    /// Thousandths of the live index's keys RediSearch has yet to scan.
    pub index_unscanned_permille: u64,
    /// How long the writer's current step has failed without a success, and its last error.
    pub failing: Option<(Duration, String)>,
}

/// A step may fail and succeed on its first retry without the writer going
/// unready; past this, every attempt failing (Redis refusing writes, a table
/// locked) makes it not ready whatever its lag, which the refusals freeze.
pub const FAILING_GRACE: Duration = Duration::from_secs(5);

/// The bounds the probes judge by (from the config).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `pipeline.stall_timeout_secs`.
    pub stall: Duration,
    /// Three `mysql.heartbeat_secs` (plus a second of slack).
    pub source: Duration,
    /// `redis.lease_ttl_secs`.
    pub redis: Duration,
    /// `metrics.ready_max_lag_secs`.
    pub lag: Duration,
}

/// A probe's answer: whether it passes, and the JSON body explaining why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// 200 when true, 503 when false.
    pub ok: bool,
    /// `writer` or `standby`.
    pub role: &'static str,
    /// Each check that failed, in words.
    pub failing: Vec<String>,
    /// Seconds since the binlog stream delivered (writer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_age_secs: Option<f64>,
    /// Seconds since Redis answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_age_secs: Option<f64>,
    /// Lag of the last applied batch, seconds (writer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_secs: Option<f64>,
}

fn role(o: &Observed) -> &'static str {
    if o.writer { "writer" } else { "standby" }
}

/// `/healthz`.
pub fn liveness(o: &Observed, b: &Bounds) -> Verdict {
    let mut failing = Vec::new();
    if o.writer && o.silent > b.stall {
        failing.push(format!("the writer has been inside one step for {}s (bound {}s)", o.silent.as_secs(), b.stall.as_secs()));
    }
    Verdict { ok: failing.is_empty(), role: role(o), failing, source_age_secs: None, redis_age_secs: None, lag_secs: None }
}

/// `/readyz`.
pub fn readiness(o: &Observed, b: &Bounds) -> Verdict {
    let mut failing = Vec::new();
    let stale = |age: Option<Duration>, bound: Duration| age.is_none_or(|a| a > bound);
    if stale(o.redis_age, b.redis) {
        failing.push(format!("no answer from Redis within {}s", b.redis.as_secs()));
    }
    if o.writer {
        if stale(o.source_age, b.source) {
            failing.push(format!("nothing from the binlog stream within {}s", b.source.as_secs()));
        }
        if !o.index_live {
            failing.push("the index version is not live yet (initial load or rebuild in progress)".into());
        }
        if let Some(position) = &o.replaying_lost_writes {
            failing.push(format!(
                "Redis lost writes it had acknowledged (restarted from an older snapshot, or a lagging replica promoted): replaying them from the binlog up to {position}"
            ));
        }
        if o.lag > b.lag {
            failing.push(format!("lag {}s is over {}s", o.lag.as_secs(), b.lag.as_secs()));
        }
        if o.index_unscanned_permille > 0 {
            failing.push(format!(
                "RediSearch has indexed {:.1}% of the documents Redis holds (background indexing after a restart or load)",
                (1000 - o.index_unscanned_permille.min(1000)) as f64 / 10.0
            ));
        }
        if let Some((streak, error)) = o.failing.as_ref().filter(|(streak, _)| *streak > FAILING_GRACE) {
            failing.push(format!("every attempt of the current step has failed for {}s; the last: {error}", streak.as_secs()));
        }
        if o.redis_may_evict {
            failing.push("Redis may evict drugsync's keys (maxmemory-policy is not noeviction; redis.allow_eviction is on)".into());
        }
    }
    let secs = |d: Duration| d.as_secs_f64();
    Verdict {
        ok: failing.is_empty(),
        role: role(o),
        failing,
        source_age_secs: o.writer.then(|| o.source_age.map(secs)).flatten(),
        redis_age_secs: o.redis_age.map(secs),
        lag_secs: o.writer.then(|| secs(o.lag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            stall: Duration::from_secs(300),
            source: Duration::from_secs(16),
            redis: Duration::from_secs(10),
            lag: Duration::from_secs(300),
        }
    }

    fn healthy_writer() -> Observed {
        Observed {
            writer: true,
            silent: Duration::from_secs(1),
            source_age: Some(Duration::from_secs(2)),
            redis_age: Some(Duration::from_secs(1)),
            index_live: true,
            replaying_lost_writes: None,
            lag: Duration::from_secs(1),
            redis_may_evict: false,
            index_unscanned_permille: 0,
            failing: None,
        }
    }

    #[test]
    fn a_healthy_writer_is_live_and_ready() {
        assert!(liveness(&healthy_writer(), &bounds()).ok);
        let ready = readiness(&healthy_writer(), &bounds());
        assert!(ready.ok && ready.failing.is_empty() && ready.role == "writer", "{ready:?}");
    }

    #[test]
    fn each_failing_check_is_named() {
        let b = bounds();
        let stuck = Observed { silent: Duration::from_secs(301), ..healthy_writer() };
        assert!(!liveness(&stuck, &b).ok);
        for (observed, word) in [
            (Observed { source_age: None, ..healthy_writer() }, "binlog"),
            (Observed { source_age: Some(Duration::from_secs(17)), ..healthy_writer() }, "binlog"),
            (Observed { redis_age: Some(Duration::from_secs(11)), ..healthy_writer() }, "Redis"),
            (Observed { index_live: false, ..healthy_writer() }, "not live"),
            (
                Observed { replaying_lost_writes: Some("bin.000002:500".into()), ..healthy_writer() },
                "replaying them from the binlog up to bin.000002:500",
            ),
            (Observed { lag: Duration::from_secs(301), ..healthy_writer() }, "lag"),
            (Observed { redis_may_evict: true, ..healthy_writer() }, "evict"),
            (Observed { index_unscanned_permille: 1, ..healthy_writer() }, "99.9%"),
            (Observed { failing: Some((Duration::from_secs(6), "OOM command not allowed".into())), ..healthy_writer() }, "OOM"),
        ] {
            let verdict = readiness(&observed, &b);
            assert!(!verdict.ok && verdict.failing.len() == 1 && verdict.failing[0].contains(word), "{verdict:?}");
        }
    }

    #[test]
    fn a_step_failing_briefly_keeps_the_writer_ready() {
        let brief = Observed { failing: Some((FAILING_GRACE, "a lock wait".into())), ..healthy_writer() };
        assert!(readiness(&brief, &bounds()).ok, "a retry within the grace is not an outage");
    }

    #[test]
    fn a_standby_says_so_and_is_judged_by_redis_alone() {
        let standby = Observed { writer: false, source_age: None, index_live: false, lag: Duration::from_secs(9999), ..healthy_writer() };
        let verdict = readiness(&standby, &bounds());
        assert!(verdict.ok && verdict.role == "standby", "{verdict:?}");
        assert!(liveness(&Observed { silent: Duration::from_secs(9999), ..standby.clone() }, &bounds()).ok);
        assert!(!readiness(&Observed { redis_age: None, ..standby }, &bounds()).ok);
    }
}

//! What a running writer counts, behind one recorder handle: stages record
//! typed events ([`Counter`]s that only grow, [`Gauge`]s that watchers
//! set), and the metrics endpoint, logs and tests read them back by the
//! same names. No stage touches an atomic; adding a figure is one variant
//! and, when it is exported, one line in `app::metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::embed::EmbedStats;
use crate::mysql::visibility::GateMode;

/// Events counted: each only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Documents written (created or changed).
    Upserted,
    /// Documents removed.
    Deleted,
    /// Documents rebuilt but found identical in Redis (not rewritten).
    Unchanged,
    /// Documents put in the quarantine (see `sink::queues`).
    Quarantined,
    /// Documents written without their vector, the vector owed (see `sink::queues`).
    Owed,
    /// Vectors reused from the cache instead of calling the embedder.
    CacheHit,
    /// Source transactions applied.
    Transactions,
    /// Batches committed (Redis write + checkpoint).
    Batches,
    /// Batches applied by a full hash diff of the index instead of key by
    /// key (DDL on a tracked table, an unreadable event, a batch too large).
    FullDiffs,
    /// Batches re-read with no visibility gate (`mysql.visibility.allow_ungated_reads`).
    UngatedBatches,
    /// Times Redis was found behind the position it had acknowledged
    /// (restored, restarted without persistence, a lagging replica
    /// promoted) and the writer decided again where to start.
    RedisRewinds,
}

/// Values a watcher sets (each the latest reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// Vectors owed now (read from Redis by the writer).
    OwedNow,
    /// Documents in the quarantine now (read from Redis by the writer).
    QuarantinedNow,
    /// Seconds the oldest owed vector has waited.
    OwedMaxAgeSecs,
    /// Source commit time (Unix seconds) of the last transaction applied.
    LastCommitUnix,
    /// Milliseconds from that source commit to its write in Redis.
    LagMs,
    /// 1 while this instance holds the writer lease, 0 while it stands by.
    Writer,
    /// 1 while this writer's index version is live behind the alias.
    IndexLive,
    /// Source commit time (Unix seconds) of the oldest transaction the
    /// writer received and has not applied yet; 0 when it waits for nothing.
    WaitingSinceUnix,
    /// 1 while Redis may evict drugsync's keys (`redis.allow_eviction`).
    RedisMayEvict,
    /// Redis's `evicted_keys`, as last read.
    RedisEvictedKeys,
    /// `evicted_keys` up to which a full diff has rewritten what Redis
    /// evicted (its value at start: evictions before drugsync ran are the reconcile's).
    RedisEvictionsRepaired,
    /// Thousandths of the live index's keys RediSearch has not scanned yet
    /// (1000 - `percent_indexed` x 1000): 0 when searches see everything.
    IndexUnscannedPermille,
    /// The live index's `hash_indexing_failures`, as last read.
    IndexFailures,
    /// 1 while the freshness canary writes heartbeats.
    CanaryEnabled,
    /// The latest canary heartbeat (Unix ms) Redis acknowledged a batch past; 0 before the first.
    CanaryVisibleMs,
    /// For that heartbeat: milliseconds from its write to the acknowledgement.
    CanaryLagMs,
    /// The visibility gate last used ([`GateMode::code`]; 0 before the first).
    VisibilityGate,
    /// How Redis keeps its data across a restart
    /// ([`crate::sink::persistence::Persistence::code`]; 0: not read).
    RedisPersistence,
}

/// How many [`Counter`]s and [`Gauge`]s there are (the last variant's index + 1).
const COUNTERS: usize = Counter::RedisRewinds as usize + 1;
const GAUGES: usize = Gauge::RedisPersistence as usize + 1;

/// See the module docs. One per process, shared (`Arc`) by every stage,
/// watcher and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    counters: [AtomicU64; COUNTERS],
    gauges: [AtomicU64; GAUGES],
    /// Embedding calls and tokens.
    pub embed: EmbedStats,
    /// When the writer's loop last moved (see [`crate::observe::progress`]).
    pub progress: crate::observe::progress::Progress,
    /// When the binlog stream last delivered an event or heartbeat.
    pub source_seen: crate::observe::health::Heartbeat,
    /// When Redis last answered the lease keeper (writer) or poller (standby).
    pub redis_seen: crate::observe::health::Heartbeat,
    /// While the writer replays writes Redis lost after acknowledging them:
    /// the position it must reach again (readiness fails meanwhile).
    pub lost_writes: crate::observe::lost_writes::LostWrites,
}

impl Stats {
    /// Counts `n` more of `counter`.
    pub fn count(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// How many of `counter` were counted.
    pub fn counted(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Sets `gauge` to its latest reading.
    pub fn set(&self, gauge: Gauge, value: u64) {
        self.gauges[gauge as usize].store(value, Ordering::Relaxed);
    }

    /// `gauge`'s latest reading (0 before the first).
    pub fn gauge(&self, gauge: Gauge) -> u64 {
        self.gauges[gauge as usize].load(Ordering::Relaxed)
    }

    /// Reads one of the embedder's counters (`stats.embed`).
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records the gate in use (at start-up, before any batch).
    pub(crate) fn gate_used(&self, mode: GateMode) {
        self.set(Gauge::VisibilityGate, mode.code());
    }

    /// Records a batch re-read through `mode`; one with no gate is counted.
    pub(crate) fn batch_gated(&self, mode: GateMode) {
        self.gate_used(mode);
        if mode == GateMode::None {
            self.count(Counter::UngatedBatches, 1);
        }
    }

    /// The visibility gate last used, if any.
    pub fn gate(&self) -> Option<GateMode> {
        GateMode::from_code(self.gauge(Gauge::VisibilityGate))
    }

    /// Marks the writer as holding a transaction committed at `committed_at`
    /// (Unix seconds) that is not in Redis yet: the oldest one, since
    /// everything before it is applied.
    pub(crate) fn waiting_for(&self, committed_at: u32) {
        // Markers of a rotation can carry no time: count them from now.
        let at = if committed_at == 0 { crate::observe::health::unix_ms() / 1000 } else { u64::from(committed_at) };
        self.set(Gauge::WaitingSinceUnix, at);
    }

    /// Replication lag: the age of the oldest source transaction received
    /// and not yet applied, from its binlog commit time to now; zero while
    /// the writer waits for nothing. A batch stuck in retries keeps growing
    /// it (the lag of the last batch that did apply would stay put).
    pub fn lag(&self) -> std::time::Duration {
        let since = self.gauge(Gauge::WaitingSinceUnix);
        let ms = if since == 0 { 0 } else { crate::observe::health::unix_ms().saturating_sub(since * 1000) };
        std::time::Duration::from_millis(ms)
    }

    /// Records that the canary heartbeat written at `beat_ms` (Unix ms) is
    /// now behind a position Redis acknowledged.
    pub(crate) fn canary_visible(&self, beat_ms: u64) {
        if beat_ms > self.gauge(Gauge::CanaryVisibleMs) {
            self.set(Gauge::CanaryVisibleMs, beat_ms);
            self.set(Gauge::CanaryLagMs, crate::observe::health::unix_ms().saturating_sub(beat_ms));
        }
    }

    /// Seconds since the latest heartbeat Redis shows was written: grows
    /// without bound while nothing gets through; `None` before the first.
    pub fn canary_freshness(&self) -> Option<std::time::Duration> {
        match self.gauge(Gauge::CanaryVisibleMs) {
            0 => None,
            beat => Some(std::time::Duration::from_millis(crate::observe::health::unix_ms().saturating_sub(beat))),
        }
    }

    /// Records that the source transaction committed at `committed_at` (Unix seconds) is now in Redis.
    pub(crate) fn applied_commit(&self, committed_at: u32) {
        self.set(Gauge::LastCommitUnix, u64::from(committed_at));
        // The binlog has whole seconds, so the lag is accurate to a second.
        self.set(Gauge::LagMs, crate::observe::health::unix_ms().saturating_sub(u64::from(committed_at) * 1000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_and_gauge_is_its_own_figure() {
        let stats = Stats::default();
        stats.count(Counter::Upserted, 2);
        stats.count(Counter::Upserted, 3);
        stats.count(Counter::RedisRewinds, 1);
        stats.set(Gauge::OwedNow, 7);
        stats.set(Gauge::OwedNow, 4);
        stats.set(Gauge::RedisPersistence, 9);
        assert_eq!((stats.counted(Counter::Upserted), stats.counted(Counter::Deleted)), (5, 0), "counters add up, apart");
        assert_eq!(stats.counted(Counter::RedisRewinds), 1, "the last counter has its own slot");
        assert_eq!((stats.gauge(Gauge::OwedNow), stats.gauge(Gauge::QuarantinedNow)), (4, 0), "a gauge keeps the latest reading");
        assert_eq!(stats.gauge(Gauge::RedisPersistence), 9, "the last gauge has its own slot");
    }
}

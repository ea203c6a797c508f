//! Counters of work done, shared with logs and tests.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::embed::EmbedStats;
use crate::source::visibility::GateMode;

/// See the module docs. All counters only grow.
#[derive(Debug, Default)]
pub struct Stats {
    /// Embedding calls and tokens.
    pub embed: EmbedStats,
    /// Documents written (created or changed).
    pub upserts: AtomicU64,
    /// Documents removed.
    pub deletes: AtomicU64,
    /// Documents rebuilt but found identical in Redis (not rewritten).
    pub unchanged: AtomicU64,
    /// Documents put in the quarantine (see `sink::queues`).
    pub quarantined: AtomicU64,
    /// Documents written without their vector, the vector owed (see `sink::queues`).
    pub owed: AtomicU64,
    /// Vectors owed now (a gauge, read from Redis by the writer).
    pub owed_now: AtomicU64,
    /// Documents in the quarantine now (a gauge, read from Redis by the writer).
    pub quarantined_now: AtomicU64,
    /// Seconds the oldest owed vector has waited (a gauge).
    pub owed_max_age_secs: AtomicU64,
    /// Vectors reused from the cache instead of calling the embedder.
    pub cache_hits: AtomicU64,
    /// Source transactions applied.
    pub transactions: AtomicU64,
    /// Batches committed (Redis EXEC + checkpoint).
    pub batches: AtomicU64,
    /// Batches applied by a full hash diff of the index instead of key by
    /// key (DDL on a tracked table, an unreadable event, a batch too large).
    pub full_diffs: AtomicU64,
    /// Source commit time (Unix seconds) of the last transaction applied.
    pub last_commit_unix: AtomicU64,
    /// Milliseconds from that source commit to its write in Redis.
    pub lag_ms: AtomicU64,
    /// 1 while this instance holds the writer lease, 0 while it stands by.
    pub writer: AtomicU64,
    /// When the writer's loop last moved (see [`super::progress`]).
    pub progress: super::progress::Progress,
    /// When the binlog stream last delivered an event or heartbeat.
    pub source_seen: crate::health::Heartbeat,
    /// When Redis last answered the lease keeper (writer) or poller (standby).
    pub redis_seen: crate::health::Heartbeat,
    /// 1 while this writer's index version is live behind the alias.
    pub index_live: AtomicU64,
    /// Source commit time (Unix seconds) of the oldest transaction the writer
    /// received and has not applied yet; 0 when it waits for nothing.
    pub waiting_since_unix: AtomicU64,
    /// 1 while Redis may evict drugsync's keys (`redis.allow_eviction`).
    pub redis_may_evict: AtomicU64,
    /// Redis's `evicted_keys`, as last read.
    pub redis_evicted_keys: AtomicU64,
    /// `evicted_keys` up to which a full diff has rewritten what Redis evicted
    /// (its value at start: evictions before drugsync ran are the reconcile's).
    pub redis_evictions_repaired: AtomicU64,
    /// Thousandths of the live index's keys RediSearch has not scanned yet
    /// (1000 - `percent_indexed` x 1000): 0 when searches see everything.
    pub index_unscanned_permille: AtomicU64,
    /// The live index's `hash_indexing_failures`, as last read.
    pub index_failures: AtomicU64,
    /// 1 while the freshness canary writes heartbeats.
    pub canary_enabled: AtomicU64,
    /// The latest canary heartbeat (Unix ms) Redis acknowledged a batch
    /// past; 0 before the first.
    pub canary_visible_ms: AtomicU64,
    /// For that heartbeat: milliseconds from its write to the acknowledgement.
    pub canary_lag_ms: AtomicU64,
    /// The visibility gate last used ([`GateMode::code`]; 0 before the first).
    pub visibility_gate: AtomicU64,
    /// Batches re-read with no visibility gate (`mysql.visibility.allow_ungated_reads`).
    pub ungated_batches: AtomicU64,
    /// Times Redis was found behind the position it had acknowledged (restored,
    /// restarted without persistence, a lagging replica promoted) and the
    /// writer decided again where to start.
    pub redis_rewinds: AtomicU64,
    /// While the writer replays writes Redis lost after acknowledging them:
    /// the position it must reach again (readiness fails meanwhile).
    pub lost_writes: super::lost_writes::LostWrites,
    /// How Redis keeps its data across a restart ([`crate::sink::persistence::Persistence::code`]; 0: not read).
    pub redis_persistence: AtomicU64,
}

impl Stats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Records the gate in use (at start-up, before any batch).
    pub(crate) fn gate_used(&self, mode: GateMode) {
        Stats::set(&self.visibility_gate, mode.code());
    }

    /// Records a batch re-read through `mode`; one with no gate is counted.
    pub(crate) fn batch_gated(&self, mode: GateMode) {
        self.gate_used(mode);
        if mode == GateMode::None {
            Stats::add(&self.ungated_batches, 1);
        }
    }

    /// The visibility gate last used, if any.
    pub fn gate(&self) -> Option<GateMode> {
        GateMode::from_code(Stats::get(&self.visibility_gate))
    }

    /// Marks the writer as holding a transaction committed at `committed_at`
    /// (Unix seconds) that is not in Redis yet: the oldest one, since
    /// everything before it is applied.
    pub(crate) fn waiting_for(&self, committed_at: u32) {
        // Markers of a rotation can carry no time: count them from now.
        let at = if committed_at == 0 { crate::health::unix_ms() / 1000 } else { u64::from(committed_at) };
        Self::set(&self.waiting_since_unix, at);
    }

    /// Replication lag: the age of the oldest source transaction received
    /// and not yet applied, from its binlog commit time to now; zero while
    /// the writer waits for nothing. A batch stuck in retries keeps growing
    /// it (the lag of the last batch that did apply would stay put).
    pub fn lag(&self) -> std::time::Duration {
        let since = Self::get(&self.waiting_since_unix);
        let ms = if since == 0 { 0 } else { crate::health::unix_ms().saturating_sub(since * 1000) };
        std::time::Duration::from_millis(ms)
    }

    /// Records that the canary heartbeat written at `beat_ms` (Unix ms) is
    /// now behind a position Redis acknowledged.
    pub(crate) fn canary_visible(&self, beat_ms: u64) {
        if beat_ms > Self::get(&self.canary_visible_ms) {
            Self::set(&self.canary_visible_ms, beat_ms);
            Self::set(&self.canary_lag_ms, crate::health::unix_ms().saturating_sub(beat_ms));
        }
    }

    /// Seconds since the latest heartbeat Redis shows was written: grows
    /// without bound while nothing gets through; `None` before the first.
    pub fn canary_freshness(&self) -> Option<std::time::Duration> {
        match Self::get(&self.canary_visible_ms) {
            0 => None,
            beat => Some(std::time::Duration::from_millis(crate::health::unix_ms().saturating_sub(beat))),
        }
    }

    /// Records that the source transaction committed at `committed_at` (Unix seconds) is now in Redis.
    pub(crate) fn applied_commit(&self, committed_at: u32) {
        Self::set(&self.last_commit_unix, u64::from(committed_at));
        // The binlog has whole seconds, so the lag is accurate to a second.
        Self::set(&self.lag_ms, crate::health::unix_ms().saturating_sub(u64::from(committed_at) * 1000));
    }
}

//! Redis's memory, watched while the writer runs: a policy changed to one
//! that evicts, keys evicted, `used_memory` near `maxmemory`. Each makes
//! noise in the log and the metrics (readiness falls while Redis may evict);
//! none stops the writer, which keeps the index as fresh as Redis lets it.
//!
//! Evicted documents are gone from search and nothing in the binlog will
//! bring them back. Once Redis evicts no more (the policy is `noeviction`
//! again, or the limit is gone), the watch asks the apply loop for a full
//! hash diff of the index, which rewrites whatever was evicted; while Redis
//! may still evict, the log says a repair will follow.

use crate::observe::Stats;
use crate::observe::stats::Gauge;
use crate::sink::IndexAdmin;
use crate::sink::memory::NEAR_FULL;

/// Idle ticks (one a second) between two looks.
const EVERY_TICKS: u32 = 10;

/// What the watch asks of the apply loop after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryVerdict {
    /// Nothing to do.
    Fine,
    /// Redis evicted keys and evicts no more: diff the whole index now.
    RepairEvictions,
}

/// What the last look saw, to speak only when something changed. Whether
/// evictions are still to be repaired lives in [`Stats`], so it outlasts a
/// stream that starts over (Redis may have evicted drugsync's position too).
#[derive(Debug, Default)]
pub struct MemoryWatch {
    ticks: u32,
    near_full: bool,
}

impl MemoryWatch {
    /// Called on every idle tick; looks every `EVERY_TICKS`.
    pub async fn tick<S: IndexAdmin>(&mut self, sink: &S, stats: &Stats) -> MemoryVerdict {
        self.ticks = self.ticks.wrapping_add(1);
        if !self.ticks.is_multiple_of(EVERY_TICKS) {
            return MemoryVerdict::Fine;
        }
        self.look(sink, stats).await
    }

    /// Looks now: also when the writer finds Redis lost its writes, where
    /// eviction is a likely cause and the apply loop's ticks have stopped.
    pub async fn look<S: IndexAdmin>(&mut self, sink: &S, stats: &Stats) -> MemoryVerdict {
        let info = match sink.memory_info().await {
            Ok(info) => info,
            // Redis unreachable: the lease keeper and the next write say so.
            Err(e) => {
                tracing::debug!(error = %e, "could not read Redis's memory settings");
                return MemoryVerdict::Fine;
            }
        };
        let may_evict = u64::from(info.can_evict());
        if may_evict == 1 && stats.gauge(Gauge::RedisMayEvict) == 0 {
            tracing::error!(
                policy = %info.policy,
                maxmemory = info.maxmemory,
                "Redis's maxmemory-policy now evicts keys: documents may vanish from search. Set maxmemory-policy noeviction; not ready until then"
            );
        }
        stats.set(Gauge::RedisMayEvict, may_evict);
        let before = stats.gauge(Gauge::RedisEvictedKeys);
        if info.evicted_keys > before {
            tracing::error!(
                evicted = info.evicted_keys - before,
                policy = %info.policy,
                "Redis evicted keys: documents may be missing from search. Set maxmemory-policy noeviction (and enough maxmemory); drugsync then diffs the whole index and rewrites what was evicted"
            );
        }
        stats.set(Gauge::RedisEvictedKeys, info.evicted_keys);
        let near_full = info.used_share().is_some_and(|share| share >= NEAR_FULL);
        if near_full && !self.near_full {
            tracing::warn!(used = info.used, maxmemory = info.maxmemory, "Redis is near maxmemory: raise it before writes are refused");
        }
        self.near_full = near_full;
        if info.evicted_keys > stats.gauge(Gauge::RedisEvictionsRepaired) && !info.can_evict() {
            return MemoryVerdict::RepairEvictions;
        }
        MemoryVerdict::Fine
    }

    /// The full diff the watch asked for is done: evictions up to
    /// `evicted_keys` (read before the diff began) are repaired.
    pub fn repaired(stats: &Stats, evicted_keys: u64) {
        stats.set(Gauge::RedisEvictionsRepaired, evicted_keys);
    }
}

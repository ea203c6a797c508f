//! Redis's memory, watched while the writer runs: a policy changed to one
//! that evicts, keys evicted, `used_memory` near `maxmemory`. Each makes
//! noise in the log and the metrics (readiness falls while Redis may evict);
//! none stops the writer, which keeps the index as fresh as Redis lets it.

use crate::pipeline::Stats;
use crate::sink::Coordination;
use crate::sink::memory::NEAR_FULL;

/// Idle ticks (one a second) between two looks.
const EVERY_TICKS: u32 = 10;

/// What the last look saw, to speak only when something changed.
#[derive(Debug, Default)]
pub struct MemoryWatch {
    ticks: u32,
    near_full: bool,
}

impl MemoryWatch {
    /// Called on every idle tick; looks every `EVERY_TICKS`.
    pub async fn tick<S: Coordination>(&mut self, sink: &S, stats: &Stats) {
        self.ticks = self.ticks.wrapping_add(1);
        if !self.ticks.is_multiple_of(EVERY_TICKS) {
            return;
        }
        let info = match sink.memory_info().await {
            Ok(info) => info,
            // Redis unreachable: the lease keeper and the next write say so.
            Err(e) => return tracing::debug!(error = %e, "could not read Redis's memory settings"),
        };
        let may_evict = u64::from(info.can_evict());
        if may_evict == 1 && Stats::get(&stats.redis_may_evict) == 0 {
            tracing::error!(
                policy = %info.policy,
                maxmemory = info.maxmemory,
                "Redis's maxmemory-policy now evicts keys: documents may vanish from search. Set maxmemory-policy noeviction; not ready until then"
            );
        }
        Stats::set(&stats.redis_may_evict, may_evict);
        let before = Stats::get(&stats.redis_evicted_keys);
        if info.evicted_keys > before {
            tracing::warn!(evicted = info.evicted_keys - before, policy = %info.policy, "Redis evicted keys: some documents may be missing until the nightly reconcile");
        }
        Stats::set(&stats.redis_evicted_keys, info.evicted_keys);
        let near_full = info.used_share().is_some_and(|share| share >= NEAR_FULL);
        if near_full && !self.near_full {
            tracing::warn!(used = info.used, maxmemory = info.maxmemory, "Redis is near maxmemory: raise it before writes are refused");
        }
        self.near_full = near_full;
    }
}

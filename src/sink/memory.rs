//! Redis's memory policy: whether Redis may evict drugsync's keys.
//!
//! Under `maxmemory` with any policy but `noeviction`, Redis deletes keys to
//! make room: documents (whole drugs gone from search), positions, the
//! cache. Nothing tells the writer; its position moves on. So a Redis that
//! can evict is refused at start with the fix, unless the operator insists
//! (`redis.allow_eviction = true`), and then the writer is not ready and the
//! evictions are counted. Read with `INFO`, which managed Redis services
//! (ElastiCache, MemoryDB) allow where `CONFIG GET` is not.

use super::{IndexAdmin, RedisSink, SinkError};

/// Share of `maxmemory` past which drugsync warns, before Redis starts
/// refusing writes (`noeviction`) or evicting.
pub const NEAR_FULL: f64 = 0.9;

/// What `INFO memory` and `INFO stats` say about memory and evictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryInfo {
    /// `maxmemory` in bytes; 0 is no limit.
    pub maxmemory: u64,
    /// `maxmemory_policy`.
    pub policy: String,
    /// `used_memory` in bytes.
    pub used: u64,
    /// `evicted_keys` since the server started.
    pub evicted_keys: u64,
}

impl MemoryInfo {
    /// Parses the `field:value` lines of `INFO` replies.
    pub fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines().find_map(|line| line.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix(':'))).map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Self {
            maxmemory: number("maxmemory"),
            policy: field("maxmemory_policy").unwrap_or("noeviction").to_owned(),
            used: number("used_memory"),
            evicted_keys: number("evicted_keys"),
        }
    }

    /// Whether Redis may delete keys to make room (a limit, and a policy
    /// other than `noeviction`; `volatile-*` policies can take the lease key).
    pub fn can_evict(&self) -> bool {
        self.maxmemory > 0 && self.policy != "noeviction"
    }

    /// `used_memory` as a share of `maxmemory` (`None` without a limit).
    pub fn used_share(&self) -> Option<f64> {
        (self.maxmemory > 0).then(|| self.used as f64 / self.maxmemory as f64)
    }
}

impl RedisSink {
    /// Refuses a Redis that may evict drugsync's keys, unless `allowed`
    /// (`redis.allow_eviction`), when it only warns. Returns what it read.
    pub async fn check_memory_policy(&self, allowed: bool) -> Result<MemoryInfo, SinkError> {
        let info = self.memory_info().await?;
        if info.can_evict() {
            if !allowed {
                return Err(SinkError::MayEvict { policy: info.policy.clone(), maxmemory: info.maxmemory });
            }
            tracing::warn!(
                policy = %info.policy,
                maxmemory = info.maxmemory,
                "Redis may evict drugsync's keys (redis.allow_eviction = true): this writer reports not ready, and evictions are counted"
            );
        }
        if let Some(share) = info.used_share().filter(|share| *share >= NEAR_FULL) {
            tracing::warn!(
                used = info.used,
                maxmemory = info.maxmemory,
                share,
                "Redis is near maxmemory: raise it before writes are refused"
            );
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELASTICACHE_LIKE: &str = "# Memory\r\nused_memory:29360128\r\nused_memory_human:28.00M\r\nmaxmemory:31457280\r\nmaxmemory_human:30.00M\r\nmaxmemory_policy:allkeys-lru\r\n# Stats\r\nevicted_keys:4055\r\nevicted_clients:0\r\n";

    #[test]
    fn info_fields_are_read_and_only_noeviction_or_no_limit_is_safe() {
        let info = MemoryInfo::parse(ELASTICACHE_LIKE);
        assert_eq!(info, MemoryInfo { maxmemory: 31_457_280, policy: "allkeys-lru".into(), used: 29_360_128, evicted_keys: 4055 });
        assert!(info.can_evict());
        assert!(info.used_share().unwrap() > NEAR_FULL);
        for (policy, maxmemory, evicts) in
            [("noeviction", 100, false), ("allkeys-lru", 0, false), ("volatile-lru", 100, true), ("allkeys-random", 100, true)]
        {
            let info = MemoryInfo { maxmemory, policy: policy.into(), used: 0, evicted_keys: 0 };
            assert_eq!(info.can_evict(), evicts, "{policy} with maxmemory {maxmemory}");
        }
        // `maxmemory_human` must not be read as `maxmemory`.
        assert_eq!(MemoryInfo::parse("maxmemory_human:1G\r\nmaxmemory:7\r\n").maxmemory, 7);
    }
}

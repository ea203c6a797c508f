//! `[redis]`: the target Redis Stack and drugsync's own keys in it.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// Target Redis settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; override with `DRUGSYNC_REDIS_URL`.
    pub url: Secret,
    /// Prefix of drugsync's own keys (applied position, vector cache). Must not
    /// overlap the index prefix, or its keys would be indexed as documents.
    #[serde(default = "default_state_prefix")]
    pub state_prefix: String,
    /// Longest wait for one Redis reply, in seconds. Writes to an HNSW index are
    /// indexed synchronously, so a MULTI/EXEC of many vectors takes a while.
    #[serde(default = "default_response_timeout_secs")]
    pub response_timeout_secs: u64,
    /// Writer lease TTL in seconds: how long a crashed writer blocks another
    /// instance from taking over (the same instance reclaims its lease at once).
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// PEM bundle of the CAs to trust for `rediss://` (a private CA, e.g.
    /// ElastiCache's); unset = the built-in public roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Run on a Redis whose `maxmemory-policy` may evict keys (anything but
    /// `noeviction` under a `maxmemory`). Off: such a Redis is refused at
    /// start, since evicted documents vanish from search silently. On: the
    /// writer runs but reports not ready, and evictions are counted.
    #[serde(default)]
    pub allow_eviction: bool,
    /// The operator declares Redis durable across restarts though `INFO
    /// persistence` shows neither AOF nor RDB saves (MemoryDB reports
    /// `aof_enabled:0`): reported as `declared`, with no warning.
    #[serde(default)]
    pub declared_durable: bool,
}

/// 10 s: a standby polls every second, so it takes over within 11 s of a
/// writer's death (the promise is under 15 s), while a writer survives two
/// failed renewals (every 3.3 s) before losing the lease.
fn default_lease_ttl_secs() -> u64 {
    10
}

fn default_response_timeout_secs() -> u64 {
    30
}

fn default_state_prefix() -> String {
    "drugsync:".to_owned()
}

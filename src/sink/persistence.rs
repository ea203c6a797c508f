//! Whether Redis keeps drugsync's writes across its own restart.
//!
//! A Redis with neither RDB snapshots nor an AOF comes back empty: the index
//! and the vector cache are gone, and the rebuild re-embeds every distinct
//! text (at FDB scale some 40,000 calls, minutes at a Bedrock quota) while
//! search is empty. drugsync does not refuse it (some teams accept the
//! rebuild) but says so at start, in `drugsync_redis_persistence` and in
//! `drugsync status`. Read from `INFO persistence`, which managed services
//! allow; whether RDB saves are scheduled comes from `CONFIG GET save` where
//! it is allowed, else from whether a save has happened. A service durable
//! without saying so in `INFO` (MemoryDB reports `aof_enabled:0`) is declared
//! by the operator (`redis.declared_durable`).

use std::fmt;

use super::{Documents, RedisSink, SinkError, VectorCache};

/// How Redis keeps its data across a restart, as drugsync reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// The append-only file: every acknowledged write (by its fsync policy).
    Aof,
    /// RDB snapshots only: a restart goes back to the last snapshot.
    Rdb,
    /// Neither: a restart empties Redis.
    None,
    /// The operator declared the service durable (`redis.declared_durable`).
    Declared,
}

impl Persistence {
    /// Every kind, in the order the gauge lists them.
    pub const ALL: [Persistence; 4] = [Persistence::Rdb, Persistence::Aof, Persistence::None, Persistence::Declared];

    /// The label value of `drugsync_redis_persistence{kind}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Persistence::Aof => "aof",
            Persistence::Rdb => "rdb",
            Persistence::None => "none",
            Persistence::Declared => "declared",
        }
    }

    /// A non-zero code for an atomic gauge (0: not read yet).
    pub fn code(self) -> u64 {
        match self {
            Persistence::Rdb => 1,
            Persistence::Aof => 2,
            Persistence::None => 3,
            Persistence::Declared => 4,
        }
    }

    /// The kind of [`Self::code`].
    pub fn from_code(code: u64) -> Option<Persistence> {
        Persistence::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl fmt::Display for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Redis says about its persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistenceInfo {
    /// `aof_enabled:1`.
    pub aof: bool,
    /// `CONFIG GET save` is not empty; `None` when CONFIG is not allowed.
    pub save_scheduled: Option<bool>,
    /// `rdb_saves` (Redis 7+): snapshots taken since the server started.
    pub rdb_saves: u64,
    /// `rdb_last_save_time`: Unix seconds of the last snapshot (or of the start).
    pub rdb_last_save_unix: u64,
}

impl PersistenceInfo {
    /// Parses `INFO persistence` and the `save` setting, if it could be read.
    pub fn parse(info: &str, save: Option<&str>) -> Self {
        let field = |name: &str| {
            info.lines().find_map(|line| line.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix(':'))).map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Self {
            aof: number("aof_enabled") == 1,
            save_scheduled: save.map(|s| !s.trim().is_empty()),
            rdb_saves: number("rdb_saves"),
            rdb_last_save_unix: number("rdb_last_save_time"),
        }
    }

    /// The kind to report; `declared` wins (the operator knows the service).
    pub fn kind(&self, declared: bool) -> Persistence {
        if declared {
            Persistence::Declared
        } else if self.aof {
            Persistence::Aof
        } else if self.save_scheduled.unwrap_or(self.rdb_saves > 0) {
            Persistence::Rdb
        } else {
            Persistence::None
        }
    }

    /// Seconds since the last RDB snapshot at `now` (Unix seconds), when RDB
    /// is what a restart would load.
    pub fn snapshot_age_secs(&self, now: u64) -> Option<u64> {
        (self.kind(false) == Persistence::Rdb && self.rdb_last_save_unix > 0).then(|| now.saturating_sub(self.rdb_last_save_unix))
    }

    /// Whether a restart would load a snapshot older than the source keeps
    /// binlogs (`retention`; `None`: they never expire): its position could
    /// not be replayed, only reconciled.
    pub fn snapshot_outlives_binlogs(&self, now: u64, retention: Option<std::time::Duration>) -> bool {
        matches!((self.snapshot_age_secs(now), retention), (Some(age), Some(retention)) if age > retention.as_secs())
    }
}

/// What a restart of a Redis without persistence would cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartCost {
    /// Documents the index holds: all reloaded.
    pub documents: u64,
    /// Vectors the cache holds (distinct texts known): each one call again.
    pub calls: u64,
    /// Minutes those calls take at `embed.requests_per_minute` (`None`: no limit set).
    pub minutes: Option<f64>,
}

impl RestartCost {
    /// The cost of `documents` and `cached` vectors at `requests_per_minute` (0: no limit).
    pub fn of(documents: u64, cached: u64, requests_per_minute: u64) -> Self {
        // The cache holds the distinct texts embedded so far; without it
        // (embed.cache_max_vectors = 0) each document is at most one call.
        let calls = if cached > 0 { cached } else { documents };
        Self { documents, calls, minutes: (requests_per_minute > 0).then(|| calls as f64 / requests_per_minute as f64) }
    }
}

impl RedisSink {
    /// Reads the persistence, warns when a restart would lose drugsync's
    /// work (with its cost) or when the last RDB snapshot is older than the
    /// source keeps binlogs (`retention`), and returns the kind reported.
    pub async fn report_persistence(
        &self,
        declared: bool,
        requests_per_minute: u64,
        retention: Option<std::time::Duration>,
    ) -> Result<Persistence, SinkError> {
        let info = self.persistence().await?;
        let kind = info.kind(declared);
        match kind {
            Persistence::None => {
                let cost = RestartCost::of(self.document_count().await?, self.vector_cache_len().await?, requests_per_minute);
                let at_quota = cost.minutes.map_or_else(
                    || "with no client-side limit (embed.requests_per_minute = 0)".to_owned(),
                    |m| format!("about {m:.1} minutes at embed.requests_per_minute = {requests_per_minute}"),
                );
                tracing::warn!(
                    documents = cost.documents,
                    embedding_calls = cost.calls,
                    "Redis keeps no data across a restart (no AOF, no RDB saves): a restart empties the index and the vector cache, and drugsync then reloads {} documents and re-embeds about {} distinct texts, {at_quota}, with search empty meanwhile. Turn on appendonly (or RDB saves), or set redis.declared_durable = true if the service is durable without saying so in INFO (MemoryDB)",
                    cost.documents,
                    cost.calls
                );
            }
            Persistence::Rdb => {
                let now = crate::observe::health::unix_ms() / 1000;
                if info.snapshot_outlives_binlogs(now, retention) {
                    tracing::warn!(
                        snapshot_age_secs = info.snapshot_age_secs(now).unwrap_or_default(),
                        binlog_retention_secs = retention.map_or(0, |r| r.as_secs()),
                        "Redis's last RDB snapshot is older than the source keeps binlogs: a restart or restore from it would need a reconcile, not a replay. Save more often than the binlog retention, or turn on appendonly"
                    );
                }
            }
            Persistence::Aof | Persistence::Declared => {}
        }
        Ok(kind)
    }

    /// Reads [`PersistenceInfo`] now.
    pub async fn persistence(&self) -> Result<PersistenceInfo, SinkError> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO").arg("persistence").query_async(&mut conn).await?;
        // Managed services refuse CONFIG: then whether a save happened is the evidence.
        let save: Option<Vec<String>> = redis::cmd("CONFIG").arg("GET").arg("save").query_async(&mut conn).await.ok();
        let save = save.and_then(|pair| pair.get(1).cloned());
        Ok(PersistenceInfo::parse(&info, save.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aof_rdb_none_and_declared_are_told_apart() {
        let info = |text: &str, save: Option<&str>| PersistenceInfo::parse(text, save);
        let aof = info("# Persistence\r\naof_enabled:1\r\nrdb_saves:0\r\n", Some(""));
        assert_eq!(aof.kind(false), Persistence::Aof);
        let rdb = info("aof_enabled:0\r\nrdb_saves:0\r\nrdb_last_save_time:1700000000\r\n", Some("3600 1 300 100"));
        assert_eq!(rdb.kind(false), Persistence::Rdb);
        assert_eq!(rdb.snapshot_age_secs(1_700_000_600), Some(600));
        let none = info("aof_enabled:0\r\nrdb_saves:0\r\nrdb_last_save_time:1700000000\r\n", Some(""));
        assert_eq!(none.kind(false), Persistence::None);
        assert_eq!(none.snapshot_age_secs(1_700_000_600), None, "no snapshot would be loaded");
        let hour = Some(std::time::Duration::from_secs(3600));
        assert!(rdb.snapshot_outlives_binlogs(1_700_003_601, hour), "a snapshot older than the binlogs kept");
        assert!(!rdb.snapshot_outlives_binlogs(1_700_003_600, hour), "one as old as they are can be replayed");
        assert!(!rdb.snapshot_outlives_binlogs(1_800_000_000, None), "binlogs that never expire");
        assert!(!none.snapshot_outlives_binlogs(1_800_000_000, hour), "no snapshot, nothing to replay from");
        // CONFIG refused (a managed service): a save that happened is the evidence.
        assert_eq!(info("aof_enabled:0\r\nrdb_saves:3\r\n", None).kind(false), Persistence::Rdb);
        assert_eq!(info("aof_enabled:0\r\nrdb_saves:0\r\n", None).kind(false), Persistence::None);
        // MemoryDB says aof_enabled:0 and is durable: the operator declares it.
        assert_eq!(none.kind(true), Persistence::Declared);
        for kind in Persistence::ALL {
            assert_eq!(Persistence::from_code(kind.code()), Some(kind));
        }
    }

    #[test]
    fn a_restart_costs_one_call_per_cached_text_at_the_quota() {
        let cost = RestartCost::of(124_517, 40_000, 6_000);
        assert_eq!((cost.documents, cost.calls), (124_517, 40_000));
        assert!((cost.minutes.unwrap() - 6.67).abs() < 0.01, "{cost:?}");
        assert_eq!(RestartCost::of(500, 0, 0), RestartCost { documents: 500, calls: 500, minutes: None }, "no cache, no quota");
    }
}

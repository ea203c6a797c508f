//! Redis errors, classed: what waits (unavailable, refused for a while)
//! and what stops with the fix (a command Redis rejects, a lost lease).

use redis::{ErrorKind, RedisError, RetryMethod};

use crate::error::{Classify, ErrorClass};

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Redis unreachable, restarting, or the connection dropped: retry with backoff.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis rejected a command for a reason retrying will not fix.
    #[error("Redis command failed: {message}. {hint}")]
    Command {
        /// What Redis said.
        message: String,
        /// What to check.
        hint: &'static str,
    },
    /// Redis refuses writes for a reason that clears (out of memory, a failed
    /// snapshot, a long script): waited out with backoff, with the fix in the warning.
    #[error("Redis refuses writes: {message}. {hint}")]
    Refused {
        /// What Redis said.
        message: String,
        /// What the operator can do.
        hint: &'static str,
    },
    /// Another instance holds the writer lease: this write was refused inside Redis.
    #[error(
        "write refused: the writer lease is no longer held by {holder} (another drugsync took over). This instance stops; the other one continues"
    )]
    Fenced {
        /// The holder id this instance wrote under.
        holder: String,
    },
    /// The initial load's marker in Redis is gone or another: Redis lost the
    /// load's writes (flushed, restarted empty, replaced) while it ran. The
    /// replicator starts the load over; not an exit.
    #[error("Redis lost the initial load's writes (its load epoch {epoch} is gone); starting the load over")]
    LoadLost {
        /// The epoch this load wrote under.
        epoch: String,
    },
    /// The existing index does not match the configuration.
    #[error(
        "index `{name}` exists but differs from the config: {differences}. Either restore the config, or drop the index (FT.DROPINDEX {name}) / choose a new index.name and restart to rebuild"
    )]
    IndexMismatch {
        /// Index name.
        name: String,
        /// What differs.
        differences: String,
    },
    /// The alias points at an index drugsync did not build: it is neither
    /// one of its versions nor an index carrying the alias's own name.
    #[error(
        "the alias `{alias}` points at index `{index}`, which drugsync did not build (its versions are named {alias}_v<hash> and keep state under redis.state_prefix). drugsync drops neither it nor its documents. Point the alias elsewhere (FT.ALIASDEL {alias}) so drugsync can add it to its own version, or set index.name to an alias of drugsync's own, then restart"
    )]
    ForeignIndex {
        /// The alias (`index.name`).
        alias: String,
        /// The index it points at.
        index: String,
    },
    /// Redis may evict drugsync's keys, and `redis.allow_eviction` is off.
    #[error(
        "Redis may evict keys under memory pressure (maxmemory {maxmemory} bytes, maxmemory-policy {policy}): documents would vanish from search with nothing to say so. Set maxmemory-policy to noeviction (CONFIG SET maxmemory-policy noeviction; ElastiCache/MemoryDB: in the parameter group) and size maxmemory for the index, or set redis.allow_eviction = true to run anyway (the writer then reports not ready and counts evictions)"
    )]
    MayEvict {
        /// `maxmemory_policy`.
        policy: String,
        /// `maxmemory`, bytes.
        maxmemory: u64,
    },
    /// The Redis server lacks the search module.
    #[error("Redis at {url} has no search module (FT.* unknown): use Redis Stack or Redis 8 with RediSearch")]
    NoSearchModule {
        /// Redacted URL.
        url: String,
    },
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            SinkError::Unavailable(_) | SinkError::Refused { .. } => ErrorClass::Transient,
            _ => ErrorClass::Definite,
        }
    }
}

impl From<RedisError> for SinkError {
    fn from(err: RedisError) -> Self {
        if err.kind() == ErrorKind::AuthenticationFailed {
            return SinkError::Command { message: err.to_string(), hint: "check the user and password in redis.url / DRUGSYNC_REDIS_URL" };
        }
        if let Some(hint) = refusal_hint(&err) {
            return SinkError::Refused { message: err.to_string(), hint };
        }
        if super::connection::is_read_only(&err) {
            return SinkError::Unavailable(format!("{err} (reconnecting to find the new primary)"));
        }
        match err.retry_method() {
            RetryMethod::NoRetry => SinkError::Command {
                message: err.to_string(),
                hint: "check the Redis ACL permissions (deploy/redis-acl.conf lists what drugsync needs)",
            },
            _ => SinkError::Unavailable(err.to_string()),
        }
    }
}

/// Redis states that refuse writes for a while and clear without drugsync:
/// waiting them out loses nothing (the position waits too), and exiting
/// would only turn them into a crash loop. Each names what the operator can do.
fn refusal_hint(err: &RedisError) -> Option<&'static str> {
    // Errors raised inside drugsync's scripts keep the server's code too.
    let code = err.code().unwrap_or_default();
    let inner = |c: &str| code == c;
    if inner("OOM") {
        Some(
            "Redis is at maxmemory and evicts nothing (noeviction): raise maxmemory or free memory (an old index version, stale vector cache entries); drugsync waits and retries, its position does not move",
        )
    } else if inner("MISCONF") {
        Some(
            "Redis cannot write its snapshot and refuses writes (stop-writes-on-bgsave-error): fix its disk or persistence settings; drugsync waits and retries",
        )
    } else if inner("BUSY") {
        Some("a script or function has been running too long on Redis (SCRIPT KILL or FUNCTION KILL ends it); drugsync waits and retries")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error reply as the client library hands it over.
    fn server_error(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap() {
            redis::Value::ServerError(e) => RedisError::from(e),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn writes_refused_for_a_while_are_waited_out_with_the_fix_named() {
        for (line, fix) in [
            ("OOM command not allowed when used memory > 'maxmemory'.", "maxmemory"),
            ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.", "snapshot"),
            ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", "SCRIPT KILL"),
        ] {
            let err = SinkError::from(server_error(line));
            assert!(matches!(err, SinkError::Refused { .. }), "{line}: {err:?}");
            assert_eq!(err.class(), ErrorClass::Transient, "{line}");
            assert!(err.to_string().contains(fix), "{err}");
        }
    }

    #[test]
    fn readonly_loading_and_tryagain_are_transient_and_readonly_is_recognised() {
        let readonly = server_error("READONLY You can't write against a read only replica.");
        assert!(super::super::connection::is_read_only(&readonly));
        assert_eq!(SinkError::from(readonly).class(), ErrorClass::Transient);
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down",
        ] {
            assert_eq!(SinkError::from(server_error(line)).class(), ErrorClass::Transient, "{line}");
        }
    }

    #[test]
    fn a_refused_permission_is_definite_with_the_acl_hint() {
        let err = SinkError::from(server_error("NOPERM User drugsync has no permissions to run the 'flushall' command"));
        assert_eq!(err.class(), ErrorClass::Definite);
        assert!(err.to_string().contains("ACL"), "{err}");
        assert!(!super::super::connection::is_read_only(&server_error("ERR unknown command")));
    }
}

//! The writer lease: at most one drugsync writes an index at a time.
//!
//! A key `<state_prefix><index>:writer` holds the holder's instance id with a
//! TTL (`SET NX PX`); the holder renews it every third of the TTL. A crashed
//! holder's lease expires, so another instance can take over. The instance id
//! is kept in the checkpoint store, so the *same* instance restarting after a
//! crash reclaims its own lease at once instead of waiting for the TTL.
//!
//! The lease is also the fencing token: every write of the holder checks it
//! inside Redis, atomically with the write (`fence.rs`: the fenced write
//! script and the alias switch under WATCH), so a paused old writer that
//! wakes up late cannot write.

use std::time::Duration;

use super::connection::FailoverConnection;

use super::error::SinkError;

/// Renew if we hold it, or take it back if nobody does (expired while we
/// stalled, or Redis lost it); answers 1 when held afterwards.
const RENEW: &str = r"local v = redis.call('GET', KEYS[1]) if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) elseif v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 else return 0 end";
/// Longest wait for [`WriterLease::release`].
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Delete if we hold it.
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
/// Take it when free or already ours; answers 1 when held afterwards.
const ACQUIRE: &str = r"local v = redis.call('GET', KEYS[1]) if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 else return 0 end";

/// A held (or wanted) writer lease.
#[derive(Clone)]
pub struct WriterLease {
    conn: FailoverConnection,
    key: String,
    holder: String,
    ttl: Duration,
}

impl WriterLease {
    /// A lease handle for `key`, held under the id `holder`.
    pub fn new(conn: FailoverConnection, key: String, holder: String, ttl: Duration) -> Self {
        Self { conn, key, holder, ttl }
    }

    /// The id this handle holds the lease under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease if it is free or already ours; `false` if another instance holds it.
    pub async fn try_acquire(&self) -> Result<bool, SinkError> {
        let mut conn = self.conn.clone();
        let held: i64 =
            redis::Script::new(ACQUIRE).key(&self.key).arg(&self.holder).arg(self.ttl.as_millis() as u64).invoke_async(&mut conn).await?;
        Ok(held == 1)
    }

    /// Extends the lease; `false` means it was lost (expired and taken by another instance).
    pub async fn renew(&self) -> Result<bool, SinkError> {
        let mut conn = self.conn.clone();
        let renewed: i64 =
            redis::Script::new(RENEW).key(&self.key).arg(&self.holder).arg(self.ttl.as_millis() as u64).invoke_async(&mut conn).await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up if still ours. Bounded by [`RELEASE_TIMEOUT`]: it is
    /// called on the way out, which must not wait for Redis to come back (an
    /// unreleased lease simply expires).
    pub async fn release(&self) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.key(&self.key);
        invocation.arg(&self.holder);
        match tokio::time::timeout(RELEASE_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(done) => done.map(drop).map_err(SinkError::from),
            Err(_) => Err(SinkError::Unavailable(format!("no answer within {}s", RELEASE_TIMEOUT.as_secs()))),
        }
    }

    /// Who holds the lease now, if anyone.
    pub async fn current_holder(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(&self.key).query_async(&mut conn).await?)
    }

    /// Milliseconds until the lease expires unless renewed; `None` when nobody holds it.
    pub async fn ttl_left_ms(&self) -> Result<Option<u64>, SinkError> {
        let mut conn = self.conn.clone();
        let ms: i64 = redis::cmd("PTTL").arg(&self.key).query_async(&mut conn).await?;
        Ok(u64::try_from(ms).ok())
    }

    /// How long the lease lasts unless renewed (see `Lease` for the
    /// renewal and standby rhythms that follow from it).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

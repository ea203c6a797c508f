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

use std::future::Future;
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

/// The writer lease of one index: at most one holder at a time.
pub trait Lease: Clone + Send + Sync + 'static {
    /// The id this handle holds the lease under.
    fn holder(&self) -> &str;

    /// Takes the lease if it is free or already this holder's; `Ok(true)` when held afterwards.
    fn try_acquire(&self) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Extends the lease if this holder has it, or takes it back if nobody
    /// does; `Ok(false)` when another holder has it.
    fn renew(&self) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Gives the lease up if this holder has it (nothing otherwise). It is
    /// called on the way out, which must not wait long for the server (an
    /// unreleased lease simply expires).
    fn release(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Who holds the lease now, if anyone.
    fn current_holder(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// Milliseconds until the lease expires unless renewed; `None` when nobody holds it.
    fn ttl_left_ms(&self) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send;

    /// How long the lease lasts unless renewed.
    fn ttl(&self) -> Duration;

    /// How often to renew: a third of the TTL leaves two chances before expiry.
    fn renew_every(&self) -> Duration {
        self.ttl() / 3
    }

    /// How often a standby tries to take the lease: at most a second, so it
    /// takes over within the TTL plus one second of the writer's death.
    fn poll_every(&self) -> Duration {
        self.renew_every().min(Duration::from_secs(1))
    }
}

/// A held (or wanted) writer lease in Redis.
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
}

impl Lease for WriterLease {
    fn holder(&self) -> &str {
        &self.holder
    }

    async fn try_acquire(&self) -> Result<bool, SinkError> {
        let mut conn = self.conn.clone();
        let held: i64 =
            redis::Script::new(ACQUIRE).key(&self.key).arg(&self.holder).arg(self.ttl.as_millis() as u64).invoke_async(&mut conn).await?;
        Ok(held == 1)
    }

    async fn renew(&self) -> Result<bool, SinkError> {
        let mut conn = self.conn.clone();
        let renewed: i64 =
            redis::Script::new(RENEW).key(&self.key).arg(&self.holder).arg(self.ttl.as_millis() as u64).invoke_async(&mut conn).await?;
        Ok(renewed == 1)
    }

    /// Bounded by [`RELEASE_TIMEOUT`].
    async fn release(&self) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.key(&self.key);
        invocation.arg(&self.holder);
        match tokio::time::timeout(RELEASE_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(done) => done.map(drop).map_err(SinkError::from),
            Err(_) => Err(SinkError::Unavailable(format!("no answer within {}s", RELEASE_TIMEOUT.as_secs()))),
        }
    }

    async fn current_holder(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(&self.key).query_async(&mut conn).await?)
    }

    /// PTTL: negative (no key, no expiry) reads as `None`.
    async fn ttl_left_ms(&self) -> Result<Option<u64>, SinkError> {
        let mut conn = self.conn.clone();
        let ms: i64 = redis::cmd("PTTL").arg(&self.key).query_async(&mut conn).await?;
        Ok(u64::try_from(ms).ok())
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

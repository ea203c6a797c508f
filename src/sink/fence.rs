//! The fencing role: every write of the lease holder checks, inside Redis
//! and atomically with the write, that the lease still names it (and, during
//! an initial load, that Redis still holds the load's epoch). Beside the
//! lease (`lease.rs`), which takes and renews it.

use std::future::Future;
use std::time::Duration;

use redis::AsyncCommands;

use super::lease::Lease;
use super::ops::WriteOp;
use super::{RedisSink, SinkError, WriterLease};

/// Who writes: the writer lease of one index, and the fence every write
/// of its holder passes (the lease, and during a load its epoch).
pub trait Fencing: Sync {
    /// The lease handle this sink hands out.
    type Lease: Lease;

    /// The writer lease of this index, held (or wanted) under `holder`.
    fn lease(&self, holder: String, ttl: Duration) -> Self::Lease;

    /// Writes from now on are fenced by the lease held under `holder`: each
    /// write checks, atomically with itself, that the lease still names it
    /// (a lease nobody holds is taken back). `None` turns fencing off.
    fn fence_with(&self, holder: Option<String>);

    /// Starts an initial load under `epoch`: stores it, and every fenced
    /// write until [`Self::end_load`] fails with `LoadLost` (writing
    /// nothing) unless the sink still holds that epoch.
    fn begin_load(&self, epoch: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Continues a load stored earlier under `epoch` (after a restart): as
    /// [`Self::begin_load`] without storing it.
    fn resume_load(&self, epoch: &str);

    /// The load is over (done or abandoned): writes no longer check an epoch.
    fn end_load(&self);

    /// The epoch of the load the sink holds, if any.
    fn stored_load_epoch(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;
}

/// The fenced write ran.
const WRITTEN: i64 = 1;
/// Another holder has the lease: nothing was written.
const FENCED: i64 = 0;
/// The load's epoch is gone from Redis (flushed, replaced): nothing was written.
const LOAD_LOST: i64 = -1;

/// A write transaction that first checks the writer lease (the fencing token):
/// ARGV[1] is the holder, ARGV[2] the lease TTL in ms, then per command its
/// argument count and arguments. A lease nobody holds (expired, or lost with
/// Redis data) is taken back: no other writer can have written meanwhile.
/// Scripts run atomically, like MULTI/EXEC.
/// ARGV[3], when not empty, is the initial load's epoch, which KEYS[2] must
/// still hold: after a flush the lease is simply taken back, so only the epoch
/// tells that the load's earlier chunks are gone.
/// It answers [`WRITTEN`], [`FENCED`] (nothing written) or [`LOAD_LOST`]
/// (nothing written): an outcome, not an error text to match.
static FENCED_WRITE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local holder = redis.call('GET', KEYS[1])
        if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
        if holder == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        elseif holder ~= ARGV[1] then return 0 end
        local i = 4
        while i <= #ARGV do
            local n = tonumber(ARGV[i])
            redis.call(unpack(ARGV, i + 1, i + n))
            i = i + n + 1
        end
        return 1",
    )
});

impl Fencing for RedisSink {
    type Lease = WriterLease;

    fn lease(&self, holder: String, ttl: Duration) -> WriterLease {
        WriterLease::new(self.conn.clone(), self.lease_key.clone(), holder, ttl)
    }

    fn fence_with(&self, holder: Option<String>) {
        *self.fence.write().expect("fence lock") = holder;
    }

    async fn begin_load(&self, epoch: &str) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(&self.keys.load_epoch, epoch).await?;
        self.resume_load(epoch);
        Ok(())
    }

    fn resume_load(&self, epoch: &str) {
        *self.load_epoch.write().expect("epoch lock") = Some(epoch.to_owned());
    }

    fn end_load(&self) {
        *self.load_epoch.write().expect("epoch lock") = None;
    }

    async fn stored_load_epoch(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(&self.keys.load_epoch).await?)
    }
}

impl RedisSink {
    /// Runs `ops` atomically: through the fenced script when this sink
    /// writes under a lease (and a load epoch), as MULTI/EXEC otherwise.
    pub(super) async fn write(&self, ops: Vec<WriteOp>) -> Result<(), SinkError> {
        let commands: Vec<Vec<Vec<u8>>> = ops.iter().map(WriteOp::args).collect();
        let fence = self.fence.read().expect("fence lock").clone();
        let mut conn = self.conn.clone();
        match fence {
            None => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for command in &commands {
                    pipe.cmd(&String::from_utf8_lossy(&command[0])).arg(&command[1..]).ignore();
                }
                pipe.query_async::<()>(&mut conn).await?;
            }
            Some(holder) => {
                let epoch = self.load_epoch.read().expect("epoch lock").clone();
                let mut invocation = FENCED_WRITE.key(&self.lease_key);
                invocation.key(&self.keys.load_epoch).arg(&holder).arg(self.lease_ttl_ms).arg(epoch.as_deref().unwrap_or(""));
                for command in &commands {
                    invocation.arg(command.len()).arg(command);
                }
                let outcome: i64 = invocation.invoke_async(&mut conn).await?;
                match outcome {
                    WRITTEN => {}
                    FENCED => return Err(SinkError::Fenced { holder }),
                    LOAD_LOST => return Err(SinkError::LoadLost { epoch: epoch.unwrap_or_default() }),
                    other => {
                        return Err(SinkError::Unavailable(format!(
                            "the fenced write answered {other}, which no version of drugsync sends"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs a MULTI/EXEC pipeline only while this sink's fence holds the lease.
    pub(super) async fn fenced_exec(&self, pipe: &redis::Pipeline) -> Result<(), SinkError> {
        let fence = self.fence.read().expect("fence lock").clone();
        let Some(holder) = fence else {
            let mut conn = self.conn.clone();
            return Ok(pipe.query_async::<()>(&mut conn).await?);
        };
        // WATCH is per connection: the shared multiplexed one would mix it with other commands.
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        redis::cmd("WATCH").arg(&self.lease_key).query_async::<()>(&mut conn).await?;
        let current: Option<String> = redis::cmd("GET").arg(&self.lease_key).query_async(&mut conn).await?;
        if current.as_deref().is_some_and(|c| c != holder) {
            redis::cmd("UNWATCH").query_async::<()>(&mut conn).await?;
            return Err(SinkError::Fenced { holder });
        }
        // EXEC answers nil when the watched lease changed (taken, or renewed by
        // this instance meanwhile): nothing ran, and the caller's retry tries again.
        let done: Option<()> = pipe.query_async(&mut conn).await?;
        done.ok_or_else(|| SinkError::Unavailable("the writer lease changed during a fenced switch; retrying".into()))
    }
}

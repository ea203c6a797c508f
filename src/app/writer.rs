//! Holding the writer lease while replicating (see [`crate::sink::lease`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::observe::health::Heartbeat;
use crate::observe::progress::Progress;

use crate::apply::RunError;
use crate::sink::Lease;

/// Takes the lease, waiting while another instance holds it (a hot standby
/// waits here). `Ok(false)` when `cancel` fired while waiting.
/// Every answer from Redis marks `redis_seen` (what a standby's readiness checks).
pub async fn acquire<L: Lease>(lease: &L, cancel: &CancellationToken, redis_seen: &Heartbeat) -> Result<bool, RunError> {
    let mut announced = false;
    loop {
        let answer = lease.try_acquire().await;
        if answer.is_ok() {
            redis_seen.mark();
        }
        match answer {
            Ok(true) => {
                if announced {
                    tracing::info!("the writer lease is free: this instance takes over as the writer");
                }
                return Ok(true);
            }
            Ok(false) => {
                if !announced {
                    let holder = lease.current_holder().await.ok().flatten().unwrap_or_default();
                    tracing::info!(%holder, "another drugsync holds the writer lease of this index; standing by");
                    announced = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach Redis for the writer lease; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(false),
            _ = tokio::time::sleep(lease.poll_every()) => {}
        }
    }
}

/// Renews the lease until `stop` fires. When the lease is lost, sets `lost`
/// and cancels `stop`, so the replicator ends its run instead of writing on.
/// When the writer's `progress` has been silent for longer than `stall`,
/// stops renewing and cancels `stalled`: the run is then abandoned (its
/// stuck wait dropped) and the lease left for a standby.
/// Each renewal Redis answers marks the heartbeat in `watch`.
pub async fn keep_renewed<L: Lease>(
    lease: L,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
    watch: (Progress, Heartbeat),
    stall: Duration,
    stalled: CancellationToken,
) {
    let (progress, redis_seen) = watch;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(lease.renew_every()) => {}
        }
        let silent = progress.silent_for();
        if silent > stall {
            tracing::error!(
                silent_s = silent.as_secs(),
                stall_timeout_s = stall.as_secs(),
                "the writer is stuck in one wait; no longer renewing its lease"
            );
            stalled.cancel();
            return;
        }
        let renewed = lease.renew().await;
        if renewed.is_ok() {
            redis_seen.mark();
        }
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(holder = lease.holder(), "writer lease lost to another instance; stopping");
                lost.store(true, Ordering::SeqCst);
                stop.cancel();
                return;
            }
            // One failed renewal is survivable: the TTL leaves two more chances.
            Err(e) => tracing::warn!(error = %e, "writer lease renewal failed; retrying"),
        }
    }
}

//! Holding the writer lease while replicating (see [`crate::sink::lease`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::progress::Progress;

use super::RunError;
use crate::sink::WriterLease;

/// Takes the lease, waiting while another instance holds it (a hot standby
/// waits here). `Ok(false)` when `cancel` fired while waiting.
pub async fn acquire(lease: &WriterLease, cancel: &CancellationToken) -> Result<bool, RunError> {
    let mut announced = false;
    loop {
        match lease.try_acquire().await {
            Ok(true) => return Ok(true),
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
pub async fn keep_renewed(
    lease: WriterLease,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
    progress: Progress,
    stall: Duration,
    stalled: CancellationToken,
) {
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
        match lease.renew().await {
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

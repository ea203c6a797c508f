//! The replicator: wiring of source, mapping, embedder, sink and checkpoint.
//!
//! `Replicator::run` decides where to start ([`start`]), performs the initial
//! load when there is no usable checkpoint ([`bootstrap`]), then tails the
//! binlog ([`stream`]). Documents flow through [`sync`], the one place that
//! diffs against Redis, embeds what is new and writes.

pub mod activity;
pub mod batch;
pub mod bootstrap;
pub mod committer;
pub mod error;
pub mod fill;
pub mod progress;
pub mod reconcile;
pub mod replay;
pub mod retry;
pub mod start;
pub mod stats;
pub mod stream;
pub mod sync;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::{Opts, Pool};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::embed::Embedder;
use crate::mapping::{DocumentLoader, Router};
use crate::position::Position;
use crate::sink::{AliasState, RedisSink};

pub use error::RunError;
pub use stats::Stats;

/// Everything a running replicator holds. Built by [`Replicator::connect`].
pub struct Replicator<E: Embedder> {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Connections for routing queries, document loads and snapshots (not the binlog stream).
    pub pool: Pool,
    /// MySQL connection options (the binlog stream opens its own connection).
    pub opts: Opts,
    /// Redis writer.
    pub sink: RedisSink,
    /// Embedding provider.
    pub embedder: Arc<E>,
    /// Local checkpoint store; `None` for a reconcile, which never moves the
    /// position and must run while a streamer holds the store open.
    checkpoint: Option<CheckpointStore>,
    /// Key -> document loader.
    pub loader: DocumentLoader,
    /// Row change -> key router.
    pub router: Router,
    /// Counters shared with tests and logs.
    pub stats: Arc<Stats>,
    /// A position to replay from, stored once this instance holds the writer lease.
    replay: std::sync::Mutex<Option<Position>>,
    /// The replay under way, until the stream has caught up with it.
    replay_watch: std::sync::Mutex<Option<replay::ReplayWatch>>,
}

impl<E: Embedder> Replicator<E> {
    /// Connects to MySQL and Redis, checks the source's binlog settings,
    /// ensures the index exists and matches, and opens the checkpoint store.
    pub async fn connect(config: Config, embedder: E) -> Result<Self, RunError> {
        Self::connect_with(config, embedder, true).await
    }

    /// Like [`Self::connect`] but without the checkpoint store, for `--reconcile`.
    pub async fn connect_for_reconcile(config: Config, embedder: E) -> Result<Self, RunError> {
        Self::connect_with(config, embedder, false).await
    }

    async fn connect_with(config: Config, embedder: E, open_checkpoint: bool) -> Result<Self, RunError> {
        let opts = crate::source::connect::mysql_opts(&config.mysql).await?;
        let pool = Pool::new(opts.clone());
        {
            let mut conn = crate::source::connect::pooled(&pool).await?;
            crate::source::preflight::check_source(&mut conn, &config).await?;
        }
        let sink = RedisSink::connect(&config).await?;
        // The writer prepares the index when it starts; a reconcile needs the live version.
        if !open_checkpoint && sink.prepare_index(&config).await? != AliasState::Current {
            return Err(RunError::Sink(crate::sink::SinkError::Command {
                message: format!("index version {} is not live behind alias {} yet", sink.version().index, sink.version().alias),
                hint: "the index definition changed: run drugsync (the streamer) to build the new version and switch the alias, then reconcile",
            }));
        }
        let checkpoint = if open_checkpoint { Some(CheckpointStore::open(&config.checkpoint.path)?) } else { None };
        let loader = DocumentLoader::new(&config, embedder.space().clone());
        let router = Router::new(&config.mapping.tables, config.pipeline.load_chunk, Duration::from_secs(config.mysql.query_timeout_secs));
        Ok(Self {
            config: Arc::new(config),
            pool,
            opts,
            sink,
            embedder: Arc::new(embedder),
            checkpoint,
            loader,
            router,
            stats: Arc::default(),
            replay: std::sync::Mutex::new(None),
            replay_watch: std::sync::Mutex::new(None),
        })
    }

    /// Publishes this writer's [`crate::status::StatusRecord`] (once a second
    /// from the apply loop, and with the error it stops on). Best effort: the
    /// status is for people, and must never fail replication.
    pub async fn publish_status(&self) {
        let Ok(holder) = self.checkpoint().and_then(|c| Ok(c.instance_id()?)) else { return };
        let record = crate::status::StatusRecord {
            holder,
            written_at: crate::health::unix_ms() / 1000,
            last_commit: Stats::get(&self.stats.last_commit_unix),
            lag_ms: Stats::get(&self.stats.lag_ms),
            last_error: self.stats.progress.last_error(),
        };
        let Ok(json) = serde_json::to_string(&record) else { return };
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), self.sink.store_status(&json)).await {
            tracing::debug!(error = %e, "could not publish the status record");
        }
    }

    /// Longest wait for one MySQL query (`mysql.query_timeout_secs`).
    pub fn query_timeout(&self) -> Duration {
        Duration::from_secs(self.config.mysql.query_timeout_secs)
    }

    /// The checkpoint store (absent when connected for a reconcile).
    pub fn checkpoint(&self) -> Result<&CheckpointStore, RunError> {
        self.checkpoint
            .as_ref()
            .ok_or_else(|| RunError::Task("this replicator was connected for a reconcile and has no checkpoint store".into()))
    }

    /// The one writer of positions (see [`committer`]).
    pub fn committer(&self) -> committer::Committer<'_> {
        committer::Committer::new(&self.sink, self.checkpoint.as_ref())
    }

    /// Runs until `cancel` fires (clean stop) or a definite error occurs.
    /// Transient failures are retried inside; the checkpoint never passes
    /// a change Redis has not acknowledged.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), RunError> {
        let lease = self.sink.lease(self.checkpoint()?.instance_id()?, Duration::from_secs(self.config.redis.lease_ttl_secs));
        if !writer::acquire(&lease, &cancel, &self.stats.redis_seen).await? {
            return Ok(());
        }
        self.sink.fence_with(Some(lease.holder().to_owned()));
        Stats::set(&self.stats.writer, 1);
        let inner = cancel.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        let stalled = CancellationToken::new();
        let stall = Duration::from_secs(self.config.pipeline.stall_timeout_secs);
        let progress = self.stats.progress.clone();
        let renewer = tokio::spawn(writer::keep_renewed(
            lease.clone(),
            inner.clone(),
            lost.clone(),
            (progress.clone(), self.stats.redis_seen.clone()),
            stall,
            stalled.clone(),
        ));
        let result = tokio::select! {
            result = progress.scope(self.replicate(inner.clone())) => result,
            // Dropping the run drops the wait it is stuck in, and every
            // connection that wait holds: nothing of it can write later.
            _ = stalled.cancelled() => Err(RunError::Stalled { secs: progress.silent_for().as_secs() }),
        };
        if let Err(e) = &result {
            self.stats.progress.error_now(&e.to_string());
            if !lost.load(Ordering::SeqCst) {
                self.publish_status().await;
            }
        }
        inner.cancel();
        renewer.await.ok();
        Stats::set(&self.stats.writer, 0);
        Stats::set(&self.stats.index_live, 0);
        if lost.load(Ordering::SeqCst) {
            let holder = lease.current_holder().await.ok().flatten().unwrap_or_default();
            return Err(RunError::LeaseLost { holder });
        }
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "could not release the writer lease; it expires by itself");
        }
        result
    }

    /// Makes [`Self::run`] stream from `position`: checks now that the server
    /// still has it; `run` stores it as both the local checkpoint and the
    /// position in Redis (the start-up cross-check would otherwise prefer the
    /// older one) once it holds the writer lease, so the write is fenced like
    /// any other and cannot move the position under another writer.
    pub async fn prepare_replay(&self, position: &Position) -> Result<(), RunError> {
        let mut conn = crate::source::connect::pooled(&self.pool).await?;
        crate::source::server::check_position_exists(&mut conn, position).await?;
        *self.replay.lock().expect("replay lock") = Some(position.clone());
        Ok(())
    }

    /// Stores the position [`Self::prepare_replay`] asked for; under the lease.
    async fn store_replay_position(&self, cancel: &CancellationToken) -> Result<(), RunError> {
        let Some(position) = self.replay.lock().expect("replay lock").take() else { return Ok(()) };
        let store = || async { self.committer().rewind_to(&position).await };
        if retry::retry(cancel, "storing the replay position", store).await?.is_none() {
            return Err(RunError::Cancelled);
        }
        tracing::warn!(%position, "replaying from an operator-supplied position");
        let watch = || replay::ReplayWatch::start(self, &position);
        if let Some(watch) = retry::retry(cancel, "reading the end of binlog for the replay summary", watch).await? {
            *self.replay_watch.lock().expect("replay lock") = Some(watch);
        }
        Ok(())
    }

    /// Logs the replay's summary once the stream has applied up to where it was asked.
    pub(crate) fn note_applied(&self, applied: &Position) {
        let mut slot = self.replay_watch.lock().expect("replay lock");
        if slot.as_ref().is_some_and(|watch| watch.reached(applied))
            && let Some(watch) = slot.take()
        {
            watch.finish(self, applied);
        }
    }

    /// Initial load if needed, then streaming; runs while holding the lease.
    async fn replicate(&self, cancel: CancellationToken) -> Result<(), RunError> {
        self.store_replay_position(&cancel).await?;
        let Some(mut start) = self.starting_position(&cancel).await? else { return Ok(()) };
        Stats::set(&self.stats.index_live, 1);
        let result = loop {
            match stream::run(self, start.clone(), cancel.clone()).await {
                Ok(stream::Ended::Stopped) => break Ok(()),
                Ok(stream::Ended::Resync(stream::Resync::PositionLost { position, message })) => {
                    tracing::warn!(%position, server = %message, "binlog position lost: reconciling, then continuing from the server's current position");
                    start = self.recover_lost_position(&cancel).await?;
                }
                Ok(stream::Ended::Resync(stream::Resync::RedisRewound { expected, found })) => {
                    tracing::warn!(%expected, found = ?found.map(|p| p.to_string()), "Redis lost acknowledged writes (restart without persistence, failover, restore): deciding again where to start");
                    match self.starting_position(&cancel).await? {
                        Some(position) => start = position,
                        None => break Ok(()),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.pool.clone().disconnect().await.ok();
        result
    }

    /// Where to stream from: the checkpoint cross-checked with Redis, or an
    /// initial load (`None` if cancelled during it). Makes sure the index
    /// version exists first (Redis may have lost it) and, once this version
    /// is loaded, points the alias at it: only then may searches see it.
    async fn starting_position(&self, cancel: &CancellationToken) -> Result<Option<Position>, RunError> {
        loop {
            match retry::retry(cancel, "deciding where to start", || self.try_starting_position(cancel)).await {
                // Redis lost the load's writes: decide again from the top (the index
                // version and the alias may be gone too), which starts the load over.
                Err(RunError::Sink(crate::sink::SinkError::LoadLost { epoch })) => {
                    tracing::warn!(%epoch, "Redis lost the initial load's writes while it ran (flushed or replaced): starting over");
                }
                other => return Ok(other?.flatten()),
            }
        }
    }

    async fn try_starting_position(&self, cancel: &CancellationToken) -> Result<Option<Position>, RunError> {
        let alias = self.sink.prepare_index(&self.config).await?;
        self.sink.record_space().await?;
        // Housekeeping: a cache that outgrew its bound (an earlier version
        // without one) costs memory, not correctness, so it never blocks a start.
        if let Err(e) = self.sink.adopt_vector_cache().await {
            tracing::warn!(error = %e, "could not bound the vector cache now; trying again at the next start");
        }
        if let AliasState::Switch { old: Some(old) } = &alias {
            tracing::warn!(
                live = %old,
                building = %self.sink.version().index,
                "the index definition, embedding or mapping changed: building the new version beside the live one (searches keep using it); the alias switches once every document is loaded"
            );
        }
        let fields = crate::mapping::MappingFingerprint::of(&self.config.mapping).fields;
        let start = match start::resume_position(self).await? {
            Some(position) => {
                self.reconcile_changed_fields(&fields, cancel).await?;
                position
            }
            None => match bootstrap::initial_load(self, cancel).await? {
                Some(position) => {
                    self.sink.store_mapping_fingerprint(&fields).await?;
                    position
                }
                None => return Ok(None),
            },
        };
        if let AliasState::Switch { old } = alias {
            self.sink.switch_alias(old.as_deref()).await?;
            if let Some(old) = old.filter(|o| *o != self.sink.version().alias) {
                self.sink.drop_vector_cache_of(&old).await?;
            }
        }
        Ok(Some(start))
    }

    /// The mapping changed in fields the embedded text does not use (a change
    /// that can reach the text is a new index version instead): every document
    /// is compared with MySQL in place, then the new fingerprint is recorded.
    async fn reconcile_changed_fields(&self, fields: &str, cancel: &CancellationToken) -> Result<(), RunError> {
        let stored = self.sink.mapping_fingerprint().await?;
        if stored.as_deref() == Some(fields) {
            return Ok(());
        }
        match stored {
            Some(_) => tracing::warn!(
                "the mapping changed in fields the embedded text does not use: comparing every document with MySQL in place (no embedding call for an unchanged text)"
            ),
            None => tracing::info!("no mapping fingerprint recorded for this index version yet: comparing every document with MySQL once"),
        }
        reconcile::repair_as_writer(self, cancel).await?;
        self.sink.store_mapping_fingerprint(fields).await?;
        Ok(())
    }

    /// After the binlog lost our position: note the server's current position
    /// first, reconcile everything, then store that position. Changes made
    /// during the reconcile are after the noted position, so they are streamed
    /// (again, harmlessly) rather than missed.
    async fn recover_lost_position(&self, cancel: &CancellationToken) -> Result<Position, RunError> {
        let mut conn = crate::source::connect::pooled(&self.pool).await?;
        let current = crate::source::server::current_position(&mut conn).await?;
        drop(conn);
        reconcile::repair_as_writer(self, cancel).await?;
        self.committer().rewind_to(&current).await?;
        Ok(current)
    }
}

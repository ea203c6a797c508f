//! The replicator's parts: what a running drugsync holds (source pool,
//! sink, embedder, loader, router, checkpoint, counters) and how it is
//! connected. What it does with them is `run.rs` and the stage files.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::{Opts, Pool};

use super::{RunError, Stats, committer};
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::embed::Embedder;
use crate::mapping::{DocumentLoader, Router};
use crate::position::Position;
use crate::sink::{AliasState, RedisSink};

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
    pub(super) checkpoint: Option<CheckpointStore>,
    /// Key -> document loader.
    pub loader: DocumentLoader,
    /// Row change -> key router.
    pub router: Router,
    /// Counters shared with tests and logs.
    pub stats: Arc<Stats>,
    /// A position to replay from, stored once this instance holds the writer lease.
    pub(super) replay: std::sync::Mutex<Option<Position>>,
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
}

//! The replicator's parts: what a running drugsync holds (source pool,
//! sink, embedder, loader, router, counters: [`Connected`]; the streamer
//! adds its checkpoint: [`Replicator`]) and how it is connected. What it does with them is `run.rs` and the stage files.

use crate::observe::stats::Gauge;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::{Opts, Pool};

use crate::apply::RunError;
use crate::apply::committer;
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::embed::{Embedder, SharedEmbedder};
use crate::mapping::{DocumentLoader, Router};
use crate::mysql::visibility::VisibilityGate;
use crate::observe::Stats;
use crate::position::Position;
use crate::sink::{AliasState, IndexAdmin, RedisSink, Sink};

/// Longest wait for the source to commit what its binlog already holds
/// before the batch is retried (a healthy server takes milliseconds).
const VISIBILITY_LIMIT: Duration = Duration::from_secs(10);

/// What every mode connects to and builds from the configuration: the
/// streamer, `--reconcile` and the replay pricing. It holds no checkpoint
/// and so cannot move a position: only a [`Replicator`] has a committer.
/// This is the composition root: the one place that names the Redis sink
/// (`S`); every stage is generic over the roles of `sink::contract`.
pub struct Connected<S: Sink = RedisSink> {
    /// Validated configuration.
    pub(crate) config: Arc<Config>,
    /// Connections for routing queries, document loads and snapshots (not the binlog stream).
    pub(crate) pool: Pool,
    /// MySQL connection options (the binlog stream opens its own connection).
    pub(crate) opts: Opts,
    /// The Redis side.
    pub(crate) sink: Arc<S>,
    /// Embedding provider.
    pub(crate) embedder: SharedEmbedder,
    /// Key -> document loader.
    pub(crate) loader: Arc<DocumentLoader>,
    /// Row change -> key router.
    pub(crate) router: Arc<Router>,
    /// Counters shared with tests and logs.
    pub(crate) stats: Arc<Stats>,
    /// Proves a batch's rows visible before they are re-read (invariant 7).
    pub(crate) gate: Arc<VisibilityGate>,
}

impl Connected<RedisSink> {
    /// Connects to MySQL and Redis and checks the source's binlog settings.
    async fn connect(config: Config, embedder: impl Embedder) -> Result<Self, RunError> {
        let opts = crate::mysql::connect::mysql_opts(&config.mysql)?;
        let pool = Pool::new(opts.clone());
        let retention = {
            let mut conn = crate::mysql::connect::pooled(&pool).await?;
            let replica = crate::mysql::preflight::replica_hostname(&config.index.name);
            crate::mysql::preflight::check_source(&mut conn, &config.mysql, &config.mapping, &config.index.fields, &replica).await?
        };
        let sink = crate::app::compose::redis_sink(&config).await?;
        let memory = sink.check_memory_policy(config.redis.allow_eviction).await?;
        let retention = retention.map(|r| Duration::from_secs_f64(r.hours.max(0.0) * 3600.0));
        let persistence =
            sink.report_persistence(config.redis.declared_durable, u64::from(config.embed.requests_per_minute), retention).await?;
        let stats = Arc::new(Stats::default());
        stats.set(Gauge::RedisMayEvict, u64::from(memory.can_evict()));
        stats.set(Gauge::RedisEvictedKeys, memory.evicted_keys);
        stats.set(Gauge::RedisEvictionsRepaired, memory.evicted_keys);
        stats.set(Gauge::RedisPersistence, persistence.code());
        Ok(Self::assemble(config, (pool, opts), sink, SharedEmbedder::new(embedder), stats))
    }

    /// Connects for `--reconcile` or the replay pricing, which read (and a
    /// reconcile may repair) the live index version: it must exist.
    pub async fn connect_for_reconcile(config: Config, embedder: impl Embedder) -> Result<Self, RunError> {
        let connected = Self::connect(config, embedder).await?;
        // The writer prepares the index when it starts; a reconcile needs the live version.
        if connected.sink.prepare_index().await? != AliasState::Current {
            let version = connected.sink.version();
            return Err(RunError::Sink(crate::sink::SinkError::Command {
                message: format!("index version {} is not live behind alias {} yet", version.index, version.alias),
                hint: "the index definition changed: run drugsync (the streamer) to build the new version and switch the alias, then reconcile",
            }));
        }
        Ok(connected)
    }
}

impl<S: Sink> Connected<S> {
    /// The parts built from `config` around connections made elsewhere.
    fn assemble(config: Config, (pool, opts): (Pool, Opts), sink: S, embedder: SharedEmbedder, stats: Arc<Stats>) -> Self {
        let loader = crate::app::compose::document_loader(&config, embedder.space().clone());
        let router = Router::new(&config.mapping.tables, config.pipeline.load_chunk, Duration::from_secs(config.mysql.query_timeout_secs));
        let gate = Arc::new(VisibilityGate::new(&config.mysql, pool.clone(), opts.clone(), VISIBILITY_LIMIT));
        let (sink, loader, router) = (Arc::new(sink), Arc::new(loader), Arc::new(router));
        Self { config: Arc::new(config), pool, opts, sink, embedder, loader, router, stats, gate }
    }

    /// The validated configuration it was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters it updates (shared: the metrics listener reads them).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The Redis side.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The model in use and what its calls cost, for summaries and metrics.
    pub fn pricing(&self) -> crate::embed::Pricing {
        crate::embed::Pricing::of(&self.config.embed, &self.embedder.space().model)
    }

    /// Longest wait for one MySQL query (`mysql.query_timeout_secs`).
    pub fn query_timeout(&self) -> Duration {
        Duration::from_secs(self.config.mysql.query_timeout_secs)
    }
}

/// The streamer: what every mode holds, plus the checkpoint store (and so
/// the one [`committer`]). Built by [`Replicator::connect`].
pub struct Replicator<S: Sink = RedisSink> {
    /// Connections and the parts built from the configuration.
    pub(crate) parts: Connected<S>,
    /// Local checkpoint store (redb: one process per file).
    pub(crate) checkpoint: Arc<CheckpointStore>,
    /// This instance's id in the checkpoint store: its name as the writer lease holder.
    instance_id: String,
    /// A position to replay from, stored once this instance holds the writer lease.
    pub(crate) replay: std::sync::Mutex<Option<Position>>,
}

impl Replicator<RedisSink> {
    /// Connects to MySQL and Redis, checks the source's binlog settings and
    /// opens the checkpoint store. The index is prepared once this instance
    /// holds the writer lease (see `run`).
    pub async fn connect(config: Config, embedder: impl Embedder) -> Result<Self, RunError> {
        let checkpoint = CheckpointStore::open(&config.checkpoint.path)?;
        let instance_id = checkpoint.instance_id()?;
        let parts = Connected::connect(config, embedder).await?;
        // The streamer re-reads what the binlog announces: without a gate it
        // must not start (a reconcile reads current state and needs none).
        let gate = parts.gate.preflight().await?;
        parts.stats.gate_used(gate);
        Ok(Self { parts, checkpoint: Arc::new(checkpoint), instance_id, replay: std::sync::Mutex::new(None) })
    }
}

impl<S: Sink> Replicator<S> {
    /// What every mode holds: configuration, connections, counters.
    pub fn parts(&self) -> &Connected<S> {
        &self.parts
    }

    /// The checkpoint store (bootstrap progress, the start decision's local side).
    pub fn checkpoint(&self) -> &CheckpointStore {
        &self.checkpoint
    }

    /// This instance's name as the writer lease holder.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// What publishing the status record uses.
    pub fn status(&self) -> StatusPublisher<S> {
        StatusPublisher { holder: self.instance_id.clone(), sink: self.parts.sink.clone(), stats: self.parts.stats.clone() }
    }

    /// The one writer of positions (see [`committer`]).
    pub fn committer(&self) -> committer::Committer<S> {
        committer::Committer::new(self.parts.sink.clone(), self.checkpoint.clone())
    }

    /// Makes [`Self::run`] stream from `position`: checks now that the server
    /// still has it; `run` stores it as both the local checkpoint and the
    /// position in Redis (the start-up cross-check would otherwise prefer the
    /// older one) once it holds the writer lease, so the write is fenced like
    /// any other and cannot move the position under another writer.
    pub async fn prepare_replay(&self, position: &Position) -> Result<(), RunError> {
        let mut conn = crate::mysql::connect::pooled(&self.parts.pool).await?;
        crate::mysql::server::check_position_exists(&mut conn, position).await?;
        *self.replay.lock().expect("replay lock") = Some(position.clone());
        Ok(())
    }
}

/// Publishes this writer's [`crate::app::status::StatusRecord`] (once a second
/// from the apply loop, and with the error it stops on). Built by
/// [`Replicator::status`].
pub struct StatusPublisher<S> {
    holder: String,
    sink: Arc<S>,
    stats: Arc<Stats>,
}

impl<S: IndexAdmin> StatusPublisher<S> {
    /// Best effort: the status is for people, and must never fail replication.
    pub async fn publish(&self) {
        let stats = &self.stats;
        let record = crate::app::status::StatusRecord {
            holder: self.holder.clone(),
            written_at: crate::observe::health::unix_ms() / 1000,
            last_commit: stats.gauge(Gauge::LastCommitUnix),
            lag_ms: stats.gauge(Gauge::LagMs),
            last_error: stats.progress.last_error(),
            visibility_gate: stats.gate().map(|g| g.to_string()),
        };
        let Ok(json) = serde_json::to_string(&record) else { return };
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), self.sink.store_status(&json)).await {
            tracing::debug!(error = %e, "could not publish the status record");
        }
    }
}

#[cfg(test)]
impl<S: Sink> Replicator<S> {
    /// A streamer over `sink`, `embedder` and `checkpoint`, for unit tests of
    /// the stages on paths that read no MySQL: its pool points at a port
    /// nothing listens on and connects only when used (a test that reaches
    /// MySQL fails with a connection error, it does not hang).
    pub(crate) fn in_memory(config: Config, sink: S, embedder: SharedEmbedder, checkpoint: CheckpointStore) -> Self {
        let opts = Opts::from_url("mysql://drugsync@127.0.0.1:9/fdb").expect("a valid URL");
        let parts = Connected::assemble(config, (Pool::new(opts.clone()), opts), sink, embedder, Arc::new(Stats::default()));
        let instance_id = checkpoint.instance_id().expect("instance id");
        Self { parts, checkpoint: Arc::new(checkpoint), instance_id, replay: std::sync::Mutex::new(None) }
    }
}

//! The Redis writer: one HASH per document under the index prefix, a vector
//! cache keyed by text hash, and the applied position, all written together.
//!
//! # Contract of [`RedisSink::apply`]
//! All changes of one call and the position go in one MULTI/EXEC: either all
//! of them are visible or none. Upserts replace every configured field
//! (empty values are removed, so NUMERIC fields never hold `""`); deletes of
//! absent keys are no-ops. Applying the same changes twice therefore leaves
//! the same state as applying them once.

use super::connection::FailoverConnection;
use redis::{AsyncCommands, ErrorKind, RedisError, RetryMethod, Value};

use super::index::IndexSpec;
use crate::config::{Config, redact_url};
use crate::document::{DocumentChange, DocumentKey, TextHash};
use crate::embed::{vector_from_bytes, vector_to_bytes};
use crate::error::{Classify, ErrorClass};
use crate::position::Position;

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

/// What Redis holds for one document key, enough to decide whether to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// Document hash of the stored version.
    pub doc_hash: Option<String>,
    /// Text hash of the stored vector.
    pub text_hash: Option<String>,
    /// The stored vector has the configured size (else it must be rewritten).
    pub vector_ok: bool,
}

/// See the module docs.
#[derive(Clone)]
pub struct RedisSink {
    pub(super) conn: FailoverConnection,
    version: super::IndexVersion,
    prefix: String,
    vector_field: String,
    vector_bytes: usize,
    position_key: String,
    lease_key: String,
    repair_key: String,
    pub(super) cache_prefix: String,
    /// The cache's entries of this embedding space, scored by when they were stored.
    pub(super) cache_index_key: String,
    /// Where this version records the embedding space its vectors are in.
    pub(super) space_key: String,
    /// `redis.state_prefix`, for naming another version's state keys.
    pub(super) state_prefix: String,
    /// See `embed.cache_max_vectors`.
    pub(super) cache_max: u64,
    url: String,
    /// For a connection of its own where WATCH needs one (the alias switch).
    client: redis::Client,
    /// Writer lease TTL, for taking back a lease nobody holds.
    lease_ttl_ms: u64,
    /// Lease holder id checked inside every write transaction (None: unfenced).
    fence: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    /// Marker of the initial load in progress, per index version.
    load_epoch_key: String,
    /// The fields part of the mapping fingerprint the documents were built with.
    mapping_key: String,
    /// Documents left out for good, with the reason (see `quarantine.rs`).
    pub(super) quarantine_key: String,
    /// Documents written without their vector, by when (see `pending.rs`).
    pub(super) pending_key: String,
    /// The writer's status record (`drugsync status`).
    status_key: String,
    /// While a load runs: its epoch, checked inside every fenced write.
    load_epoch: std::sync::Arc<std::sync::RwLock<Option<String>>>,
}

/// A write transaction that first checks the writer lease (the fencing token):
/// ARGV[1] is the holder, ARGV[2] the lease TTL in ms, then per command its
/// argument count and arguments. A lease nobody holds (expired, or lost with
/// Redis data) is taken back: no other writer can have written meanwhile.
/// Scripts run atomically, like MULTI/EXEC.
/// ARGV[3], when not empty, is the initial load's epoch, which KEYS[2] must
/// still hold: after a flush the lease is simply taken back, so only the epoch
/// tells that the load's earlier chunks are gone.
static FENCED_WRITE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local holder = redis.call('GET', KEYS[1])
        if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return redis.error_reply('LOAD_LOST') end
        if holder == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        elseif holder ~= ARGV[1] then return redis.error_reply('FENCED') end
        local i = 4
        while i <= #ARGV do
            local n = tonumber(ARGV[i])
            redis.call(unpack(ARGV, i + 1, i + n))
            i = i + n + 1
        end
        return 1",
    )
});

impl RedisSink {
    /// Connects (the connection manager reconnects in the background afterwards).
    pub async fn connect(config: &Config) -> Result<Self, SinkError> {
        let url = config.redis.url.expose();
        let client = match &config.redis.tls_ca_file {
            // rediss:// to a private CA (ElastiCache, a corporate CA): trust exactly that bundle.
            Some(ca) => {
                let root_cert = std::fs::read(ca).map_err(|e| SinkError::Command {
                    message: format!("cannot read redis.tls_ca_file {}: {e}", ca.display()),
                    hint: "point redis.tls_ca_file at a readable PEM bundle",
                })?;
                redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) })?
            }
            None => redis::Client::open(url)?,
        };
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(config.redis.response_timeout_secs)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
        let conn = FailoverConnection::connect(client.clone(), manager_config).await?;
        let state = &config.redis.state_prefix;
        let version = super::IndexVersion::of(config);
        Ok(Self {
            conn,
            client,
            prefix: version.prefix.clone(),
            vector_field: config.index.vector_field.clone(),
            vector_bytes: config.embed.dimensions * 4,
            // Per version: a new version starts without a position and is loaded in full.
            position_key: format!("{state}{}:position", version.index),
            load_epoch_key: format!("{state}{}:load_epoch", version.index),
            mapping_key: format!("{state}{}:mapping", version.index),
            space_key: format!("{state}{}:space", version.index),
            state_prefix: state.clone(),
            quarantine_key: format!("{state}{}:quarantine", version.index),
            pending_key: format!("{state}{}:pending", version.index),
            status_key: format!("{state}{}:status", version.index),
            version,
            lease_key: format!("{state}{}:writer", config.index.name),
            repair_key: format!("{state}{}:repair", config.index.name),
            cache_prefix: format!("{state}vec:"),
            cache_index_key: format!("{state}vec:space:{}", super::vector_cache::space_id(&config.embed)),

            cache_max: config.embed.cache_max_vectors,
            url: redact_url(url),
            fence: std::sync::Arc::default(),
            load_epoch: std::sync::Arc::default(),
            lease_ttl_ms: config.redis.lease_ttl_secs * 1000,
        })
    }

    /// The writer lease of this index, held under `holder`.
    pub fn lease(&self, holder: String, ttl: std::time::Duration) -> super::WriterLease {
        super::WriterLease::new(self.conn.clone(), self.lease_key.clone(), holder, ttl)
    }

    /// Redis key of a document.
    pub fn key_of(&self, key: &DocumentKey) -> String {
        format!("{}{}", self.prefix, key.0)
    }

    /// The index version this sink writes.
    pub fn version(&self) -> &super::IndexVersion {
        &self.version
    }

    /// Redis key of the applied position of this index version.
    pub fn position_key(&self) -> &str {
        &self.position_key
    }

    /// Creates this config's index version when absent (an existing one must
    /// match), and says whether the alias still has to be switched to it.
    pub async fn prepare_index(&self, config: &Config) -> Result<super::AliasState, SinkError> {
        let mut conn = self.conn.clone();
        let want = IndexSpec::from_config(config);
        match self.index_info(&want.name).await? {
            Some(info) => {
                let have = IndexSpec::from_ft_info(&want.name, &info).ok_or_else(|| SinkError::Command {
                    message: format!("cannot read FT.INFO {}", want.name),
                    hint: "the RediSearch version may be unsupported (2.8+ is)",
                })?;
                let differences = want.differences(&have);
                if !differences.is_empty() {
                    return Err(SinkError::IndexMismatch { name: want.name, differences: differences.join("; ") });
                }
            }
            None => {
                redis::cmd("FT.CREATE").arg(IndexSpec::create_args(config)).query_async::<()>(&mut conn).await?;
                tracing::info!(index = %want.name, prefix = %want.prefix, dimensions = want.dimensions, "created index version");
            }
        }
        // FT.INFO on an alias describes the index it points at.
        let current = self
            .index_info(&self.version.alias)
            .await?
            .map(|info| info_text(&info, "index_name").unwrap_or_else(|| self.version.alias.clone()));
        Ok(match current {
            Some(name) if name == self.version.index => super::AliasState::Current,
            old => super::AliasState::Switch { old },
        })
    }

    /// Points the alias at this version in one step, then drops `old` (with
    /// its documents when they are surely its own).
    ///
    /// Fenced like every write of the lease holder, though FT.* commands cannot
    /// run inside the fencing script: on a connection of its own, the lease key
    /// is WATCHed, its holder checked, and the switch done in one MULTI/EXEC
    /// that Redis refuses if the lease changed meanwhile. A paused former
    /// writer can therefore never move the alias or drop the live index.
    pub async fn switch_alias(&self, old: Option<&str>) -> Result<(), SinkError> {
        let (alias, index) = (&self.version.alias, &self.version.index);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match old {
            None => {
                pipe.cmd("FT.ALIASADD").arg(alias).arg(index).ignore();
            }
            // A legacy index carries the alias's name: drop it and add the alias atomically.
            Some(old) if old == alias => {
                let drop = pipe.cmd("FT.DROPINDEX").arg(old);
                if self.legacy_documents_are_its_own(old).await? {
                    drop.arg("DD");
                } else {
                    tracing::warn!(index = %old, "the legacy index covers keys drugsync keeps (no PREFIX, or one of drugsync's): dropping it without its documents");
                }
                drop.ignore();
                pipe.cmd("FT.ALIASADD").arg(alias).arg(index).ignore();
            }
            Some(old) => {
                let old_position = self.position_key.replacen(index.as_str(), old, 1);
                pipe.cmd("FT.ALIASUPDATE").arg(alias).arg(index).ignore();
                pipe.cmd("FT.DROPINDEX").arg(old).arg("DD").ignore();
                pipe.cmd("DEL").arg(old_position).ignore();
            }
        }
        self.fenced_exec(&pipe).await?;
        tracing::info!(%alias, %index, old = ?old, "alias switched to the new index version");
        Ok(())
    }

    /// Runs a MULTI/EXEC pipeline only while this sink's fence holds the lease.
    async fn fenced_exec(&self, pipe: &redis::Pipeline) -> Result<(), SinkError> {
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

    /// True when every prefix of the legacy index `name` lies outside
    /// drugsync's own keys (its state and versioned documents), so dropping
    /// it with DD deletes only its documents. An index created without PREFIX
    /// covers every key.
    async fn legacy_documents_are_its_own(&self, name: &str) -> Result<bool, SinkError> {
        let Some(info) = self.index_info(name).await? else { return Ok(false) };
        let prefixes = super::index::prefixes_of(&info);
        let ours = [self.prefix.as_str(), self.cache_prefix.as_str(), self.position_key.as_str(), self.lease_key.as_str()];
        Ok(!prefixes.is_empty()
            && prefixes.iter().all(|p| !p.is_empty() && ours.iter().all(|o| !o.starts_with(p.as_str()) && !p.starts_with(*o))))
    }

    /// Documents in this index version (`FT.INFO num_docs`; 0 when it does not exist yet).
    pub async fn document_count(&self) -> Result<u64, SinkError> {
        let info = self.index_info(&self.version.index).await?;
        Ok(info.and_then(|info| info_text(&info, "num_docs")).and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    /// `FT.INFO name`, or `None` when there is no such index or alias.
    async fn index_info(&self, name: &str) -> Result<Option<Value>, SinkError> {
        let mut conn = self.conn.clone();
        match redis::cmd("FT.INFO").arg(name).query_async::<Value>(&mut conn).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if is_unknown_command(&e) => Err(SinkError::NoSearchModule { url: self.url.clone() }),
            Err(e) if is_unknown_index(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stored state per key, in input order (`None` = no such hash), in one round trip.
    pub async fn read_state(&self, keys: &[DocumentKey]) -> Result<Vec<Option<StoredState>>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        // A key of another type under the prefix (written by hand, by another
        // tool) fails HMGET with WRONGTYPE; that must not fail the batch.
        pipe.ignore_errors();
        for key in keys {
            let redis_key = self.key_of(key);
            // "none" when absent; a hash drugsync did not write still exists and may need deleting.
            pipe.cmd("TYPE").arg(&redis_key);
            pipe.cmd("HMGET").arg(&redis_key).arg("doc_hash").arg("text_hash");
            pipe.cmd("HSTRLEN").arg(&redis_key).arg(&self.vector_field);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, reply) in keys.iter().zip(replies.chunks_exact(3)) {
            // Other server errors (LOADING, NOPERM) keep their own class: only WRONGTYPE is expected here.
            let server_error = |value: &Value| match value {
                Value::ServerError(e) => Err(SinkError::from(redis::RedisError::from(e.clone()))),
                _ => Ok(()),
            };
            server_error(&reply[0])?;
            let kind: String = redis::from_redis_value(reply[0].clone()).map_err(unexpected_reply)?;
            let state = match kind.as_str() {
                "none" => None,
                "hash" => {
                    server_error(&reply[1])?;
                    server_error(&reply[2])?;
                    let hashes: Vec<Option<String>> = redis::from_redis_value(reply[1].clone()).map_err(unexpected_reply)?;
                    let vector_len: usize = redis::from_redis_value(reply[2].clone()).map_err(unexpected_reply)?;
                    Some(StoredState {
                        doc_hash: hashes.first().cloned().flatten(),
                        text_hash: hashes.get(1).cloned().flatten(),
                        vector_ok: vector_len == self.vector_bytes,
                    })
                }
                other => {
                    // Unlike a stale hash it has no vector, so the upsert replaces the key as a whole.
                    tracing::warn!(key = %self.key_of(key), kind = other, "a key of another type sits under the index prefix; replacing it");
                    Some(StoredState { doc_hash: None, text_hash: None, vector_ok: false })
                }
            };
            out.push(state);
        }
        Ok(out)
    }

    /// Cached vectors by text hash, in input order; wrong-sized entries count as missing.
    pub async fn cached_vectors(&self, hashes: &[&TextHash]) -> Result<Vec<Option<Vec<f32>>>, SinkError> {
        if self.cache_max == 0 {
            return Ok(vec![None; hashes.len()]);
        }
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes.iter().map(|h| format!("{}{}", self.cache_prefix, h.0)).collect();
        let mut conn = self.conn.clone();
        let blobs: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(blobs.into_iter().map(|b| b.filter(|b| b.len() == self.vector_bytes).and_then(|b| vector_from_bytes(&b))).collect())
    }

    /// Writes from now on are fenced by the writer lease held under `holder`:
    /// each write transaction first checks, inside Redis and atomically with
    /// the write, that the lease still names this holder. `None` turns fencing off.
    pub fn fence_with(&self, holder: Option<String>) {
        *self.fence.write().expect("fence lock") = holder;
    }

    /// The fields part of the mapping fingerprint this version's documents
    /// were built with (see `mapping::fingerprint`), if recorded.
    pub async fn mapping_fingerprint(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(&self.mapping_key).await?)
    }

    /// Records that every document now follows `fields` (fenced like every write).
    pub async fn store_mapping_fingerprint(&self, fields: &str) -> Result<(), SinkError> {
        self.write(vec![vec![b"SET".to_vec(), self.mapping_key.as_bytes().to_vec(), fields.as_bytes().to_vec()]]).await
    }

    /// Stores the writer's status record (JSON, see `crate::status`), fenced like every write.
    pub async fn store_status(&self, json: &str) -> Result<(), SinkError> {
        self.write(vec![vec![b"SET".to_vec(), self.status_key.as_bytes().to_vec(), json.as_bytes().to_vec()]]).await
    }

    /// The writer's last status record, if any.
    pub async fn status_record(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(&self.status_key).await?)
    }

    /// Starts an initial load under a new epoch: stores it in Redis and makes
    /// every fenced write until [`Self::end_load`] check that Redis still holds it.
    pub async fn begin_load(&self, epoch: &str) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(&self.load_epoch_key, epoch).await?;
        self.resume_load(epoch);
        Ok(())
    }

    /// Makes fenced writes check `epoch` again (a load resumed under the epoch it began with).
    pub fn resume_load(&self, epoch: &str) {
        *self.load_epoch.write().expect("epoch lock") = Some(epoch.to_owned());
    }

    /// The epoch of the load whose writes this Redis holds, if any.
    pub async fn stored_load_epoch(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(&self.load_epoch_key).await?)
    }

    /// The load is over (done or abandoned): writes no longer check its epoch.
    pub fn end_load(&self) {
        *self.load_epoch.write().expect("epoch lock") = None;
    }

    /// Applies `changes` and, when given, stores `position`, atomically.
    /// New vectors are also stored in the cache under their text hash.
    /// With a fence (see [`Self::fence_with`]) the write is refused with
    /// [`SinkError::Fenced`] when another instance holds the lease.
    pub async fn apply(&self, changes: &[DocumentChange], position: Option<&Position>) -> Result<(), SinkError> {
        if changes.is_empty() && position.is_none() {
            return Ok(());
        }
        self.write(self.write_commands(changes, position)).await
    }

    /// Runs `commands` atomically: through the fenced script when this sink
    /// writes under a lease (and a load epoch), as MULTI/EXEC otherwise.
    async fn write(&self, commands: Vec<Vec<Vec<u8>>>) -> Result<(), SinkError> {
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
                invocation.key(&self.load_epoch_key).arg(&holder).arg(self.lease_ttl_ms).arg(epoch.as_deref().unwrap_or(""));
                for command in &commands {
                    invocation.arg(command.len()).arg(command);
                }
                let result: Result<i64, RedisError> = invocation.invoke_async(&mut conn).await;
                match result {
                    Ok(_) => {}
                    // Redis reports a script's error_reply as "ERR FENCED", so the text is the mark, not the code.
                    Err(e) if e.to_string().contains("FENCED") => return Err(SinkError::Fenced { holder }),
                    Err(e) if e.to_string().contains("LOAD_LOST") => {
                        return Err(SinkError::LoadLost { epoch: epoch.unwrap_or_default() });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// The commands of one write transaction, each as its arguments.
    fn write_commands(&self, changes: &[DocumentChange], position: Option<&Position>) -> Vec<Vec<Vec<u8>>> {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let unix_now = || now_ms / 1000;
        let position_text = position.map(Position::to_string).unwrap_or_default();
        let mut commands: Vec<Vec<Vec<u8>>> = Vec::with_capacity(changes.len() * 3 + 1);
        let bytes = |s: &str| s.as_bytes().to_vec();
        for change in changes {
            match change {
                DocumentChange::Upsert { doc, vector } => {
                    let key = self.key_of(&doc.key);
                    let mut hset = vec![bytes("HSET"), bytes(&key)];
                    let mut hdel = vec![bytes("HDEL"), bytes(&key)];
                    for (name, value) in &doc.fields {
                        if value.is_empty() {
                            // Removing rather than storing "" keeps NUMERIC fields indexable.
                            hdel.push(bytes(name));
                        } else {
                            hset.extend([bytes(name), bytes(value)]);
                        }
                    }
                    hset.extend([bytes("text_hash"), bytes(&doc.text_hash.0), bytes("doc_hash"), bytes(&doc.doc_hash)]);
                    if position.is_some() {
                        hset.extend([bytes("source_position"), bytes(&position_text)]);
                    }
                    if let Some(vector) = vector {
                        // A new vector means a whole new document: start from an empty key, which
                        // also drops fields nobody writes any more and a key of another type.
                        commands.push(vec![bytes("DEL"), bytes(&key)]);
                        commands.push(vec![bytes("ZREM"), bytes(&self.pending_key), bytes(&doc.key.0)]);
                        let blob = vector_to_bytes(vector);
                        if self.cache_max > 0 {
                            commands.push(vec![bytes("SET"), bytes(&format!("{}{}", self.cache_prefix, doc.text_hash.0)), blob.clone()]);
                            commands.push(vec![
                                bytes("ZADD"),
                                bytes(&self.cache_index_key),
                                bytes(&now_ms.to_string()),
                                bytes(&doc.text_hash.0),
                            ]);
                        }
                        hset.extend([bytes(&self.vector_field), blob]);
                    }
                    commands.push(hset);
                    if hdel.len() > 2 {
                        commands.push(hdel);
                    }
                }
                DocumentChange::Delete(key) => {
                    commands.push(vec![bytes("DEL"), bytes(&self.key_of(key))]);
                    commands.push(vec![bytes("ZREM"), bytes(&self.pending_key), bytes(&key.0)]);
                }
                DocumentChange::Owe(doc) => {
                    let key = self.key_of(&doc.key);
                    // From an empty key: the old vector belongs to another text.
                    commands.push(vec![bytes("DEL"), bytes(&key)]);
                    let mut hset = vec![bytes("HSET"), bytes(&key)];
                    for (name, value) in doc.fields.iter().filter(|(_, v)| !v.is_empty()) {
                        hset.extend([bytes(name), bytes(value)]);
                    }
                    hset.extend([bytes("text_hash"), bytes(&doc.text_hash.0), bytes("doc_hash"), bytes(&doc.doc_hash)]);
                    if position.is_some() {
                        hset.extend([bytes("source_position"), bytes(&position_text)]);
                    }
                    commands.push(hset);
                    // NX: a document owed again keeps the time it was first owed, which is what the age measures.
                    commands.push(vec![
                        bytes("ZADD"),
                        bytes(&self.pending_key),
                        bytes("NX"),
                        bytes(&unix_now().to_string()),
                        bytes(&doc.key.0),
                    ]);
                }
                DocumentChange::Quarantine { key, reason } => {
                    let entry = serde_json::json!({ "reason": reason, "since": unix_now(), "position": position_text }).to_string();
                    commands.push(vec![bytes("HSET"), bytes(&self.quarantine_key), bytes(&key.0), bytes(&entry)]);
                    // The quarantine now records what this document lacks; no use asking the filler for it.
                    commands.push(vec![bytes("ZREM"), bytes(&self.pending_key), bytes(&key.0)]);
                }
                DocumentChange::Release(key) => commands.push(vec![bytes("HDEL"), bytes(&self.quarantine_key), bytes(&key.0)]),
            }
        }
        if position.is_some() {
            commands.push(vec![bytes("SET"), bytes(&self.position_key), bytes(&position_text)]);
        }
        commands
    }

    /// The position stored with the last applied batch, if any.
    pub async fn position(&self) -> Result<Option<Position>, SinkError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.get(&self.position_key).await?;
        Ok(text.and_then(|t| match t.parse() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, key = %self.position_key, "ignoring unreadable position in Redis");
                None
            }
        }))
    }

    /// Queues document keys for the lease holder to rebuild (reconcile handoff).
    pub async fn push_repairs(&self, keys: &[DocumentKey]) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(1000) {
            let values: Vec<&str> = chunk.iter().map(|k| k.0.as_str()).collect();
            let _: () = redis::cmd("RPUSH").arg(&self.repair_key).arg(values).query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Up to `max` queued repair keys, oldest first, without removing them:
    /// only the lease holder consumes, and it calls [`Self::ack_repairs`] after
    /// writing, so a crash in between repeats the repair instead of losing it.
    pub async fn peek_repairs(&self, max: usize) -> Result<Vec<DocumentKey>, SinkError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("LRANGE").arg(&self.repair_key).arg(0).arg(max.saturating_sub(1)).query_async(&mut conn).await?;
        Ok(keys.into_iter().map(DocumentKey).collect())
    }

    /// Removes the first `n` queued repair keys, fenced like every write of
    /// the lease holder: a paused former writer cannot drop repairs handed to
    /// the one that took over.
    pub async fn ack_repairs(&self, n: usize) -> Result<(), SinkError> {
        self.write(vec![vec![b"LTRIM".to_vec(), self.repair_key.as_bytes().to_vec(), n.to_string().into_bytes(), b"-1".to_vec()]]).await
    }

    /// Number of queued repair keys.
    pub async fn pending_repairs(&self) -> Result<usize, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("LLEN").arg(&self.repair_key).query_async(&mut conn).await?)
    }

    /// All document keys currently under the index prefix (SCAN, not KEYS).
    pub async fn document_keys(&self) -> Result<Vec<DocumentKey>, SinkError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut conn).await?;
            keys.extend(batch.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(|k| DocumentKey(k.to_owned()))));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(keys)
    }
}

/// A top-level text field of an FT.INFO reply.
fn info_text(info: &Value, field: &str) -> Option<String> {
    let Value::Array(items) = info else { return None };
    items.chunks_exact(2).find_map(|kv| match (&kv[0], &kv[1]) {
        (Value::SimpleString(k) | Value::VerbatimString { text: k, .. }, v) if k == field => {
            redis::from_redis_value::<String>(v.clone()).ok()
        }
        (Value::BulkString(k), v) if k == field.as_bytes() => redis::from_redis_value::<String>(v.clone()).ok(),
        _ => None,
    })
}

fn unexpected_reply(err: impl std::fmt::Display) -> SinkError {
    SinkError::Command {
        message: format!("unexpected reply: {err}"),
        hint: "Redis answered something drugsync did not ask for; check that redis.url points at Redis Stack / Redis 8 with search",
    }
}

/// RediSearch answers `Unknown index name` (2.x) or `no such index` (older/newer wording).
fn is_unknown_index(err: &RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    (text.contains("unknown") && text.contains("index name")) || text.contains("no such index")
}

fn is_unknown_command(err: &RedisError) -> bool {
    err.to_string().to_ascii_lowercase().contains("unknown command")
}

/// Escapes glob metacharacters so a prefix matches only itself.
pub(super) fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

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

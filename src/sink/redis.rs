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
use redis::{AsyncCommands, Value};

pub use super::error::SinkError;

use crate::config::{Config, redact_url};
use crate::document::{DocumentKey, TextHash};
use crate::embed::vector_from_bytes;
use crate::position::Position;

/// What Redis holds for one document key, enough to decide whether to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// Document hash of the stored version.
    pub doc_hash: Option<crate::document::DocHash>,
    /// Text hash of the stored vector.
    pub text_hash: Option<crate::document::TextHash>,
    /// The stored vector has the configured size (else it must be rewritten).
    pub vector_ok: bool,
}

/// See the module docs.
#[derive(Clone)]
pub struct RedisSink {
    pub(super) conn: FailoverConnection,
    /// This version's state keys.
    pub(super) keys: super::keys::VersionKeys,
    pub(super) version: super::IndexVersion,
    pub(super) prefix: String,
    pub(super) vector_field: String,
    pub(super) vector_bytes: usize,
    pub(super) lease_key: String,
    pub(super) repair_key: String,
    pub(super) cache_prefix: String,
    /// The cache's entries of this embedding space, scored by when they were stored.
    pub(super) cache_index_key: String,
    /// `redis.state_prefix`, for naming another version's state keys.
    pub(super) state_prefix: String,
    /// See `embed.cache_max_vectors`.
    pub(super) cache_max: u64,
    pub(super) url: String,
    /// For a connection of its own where WATCH needs one (the alias switch).
    pub(super) client: redis::Client,
    /// Writer lease TTL, for taking back a lease nobody holds.
    pub(super) lease_ttl_ms: u64,
    /// Lease holder id checked inside every write transaction (None: unfenced).
    pub(super) fence: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    /// While a load runs: its epoch, checked inside every fenced write.
    pub(super) load_epoch: std::sync::Arc<std::sync::RwLock<Option<String>>>,
}

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
            keys: super::keys::VersionKeys::of(state, &version.index),
            client,
            prefix: version.prefix.clone(),
            vector_field: config.index.vector_field.clone(),
            vector_bytes: config.embed.dimensions * 4,
            state_prefix: state.clone(),
            version,
            lease_key: format!("{state}{}:writer", config.index.name),
            repair_key: format!("{state}{}:repair", config.index.name),
            cache_prefix: format!("{state}vec:"),
            cache_index_key: format!("{state}vec:space:{}", super::keys::space_id(&config.embed)),

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
                        doc_hash: hashes.first().cloned().flatten().map(crate::document::DocHash),
                        text_hash: hashes.get(1).cloned().flatten().map(crate::document::TextHash),
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
        let dimensions = self.vector_bytes / 4;
        Ok(blobs
            .into_iter()
            .map(|blob| {
                let vector = blob.filter(|b| b.len() == self.vector_bytes).and_then(|b| vector_from_bytes(&b))?;
                // Written before vectors were checked, or by someone else: a miss, never reused.
                match crate::embed::check_vector(&vector, dimensions) {
                    Ok(()) => Some(vector),
                    Err(fault) => {
                        tracing::warn!(%fault, "a cached vector cannot be used; its text is embedded again");
                        None
                    }
                }
            })
            .collect())
    }

    /// The fields part of the mapping fingerprint this version's documents
    /// were built with (see `mapping::fingerprint`), if recorded.
    pub async fn mapping_fingerprint(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(&self.keys.mapping).await?)
    }

    /// The writer's last status record, if any.
    pub async fn status_record(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(&self.keys.status).await?)
    }

    /// The position stored with the last applied batch, if any.
    pub async fn position(&self) -> Result<Option<Position>, SinkError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.get(&self.keys.position).await?;
        Ok(text.and_then(|t| match t.parse() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, key = %self.keys.position, "ignoring unreadable position in Redis");
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

    /// Number of queued repair keys.
    pub async fn pending_repairs(&self) -> Result<usize, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("LLEN").arg(&self.repair_key).query_async(&mut conn).await?)
    }

    /// One SCAN page of the document keys under the index prefix: the keys
    /// and the cursor to pass next (0 = the scan is complete). Start at 0.
    /// As SCAN guarantees: a key present for the whole scan is returned at
    /// least once (possibly more); the memory held is one page, whatever
    /// the size of the index.
    pub async fn document_keys_page(&self, cursor: u64) -> Result<(u64, Vec<DocumentKey>), SinkError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut conn).await?;
        Ok((next, batch.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(|k| DocumentKey(k.to_owned()))).collect()))
    }
}

fn unexpected_reply(err: impl std::fmt::Display) -> SinkError {
    SinkError::Command {
        message: format!("unexpected reply: {err}"),
        hint: "Redis answered something drugsync did not ask for; check that redis.url points at Redis Stack / Redis 8 with search",
    }
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

//! The Redis side's one handle: the failover-following connection and the
//! key names of one index version. Each role of `sink::contract` is
//! implemented on it once, in its own file (`documents.rs`,
//! `vector_cache.rs`, `queues.rs`, `admin.rs`, `fence.rs`); clones share the
//! connection, the fence and the load epoch.

use super::connection::FailoverConnection;

pub use super::error::SinkError;

use super::IndexDefinition;
use crate::config::{RedisConfig, redact_url};

/// See the module docs.
#[derive(Clone)]
pub struct RedisSink {
    pub(super) conn: FailoverConnection,
    /// This version's state keys.
    pub(super) keys: super::keys::VersionKeys,
    pub(super) version: super::IndexVersion,
    /// The index this version must be (checked against an existing one).
    pub(super) spec: super::IndexSpec,
    /// `FT.CREATE` arguments of this version.
    pub(super) create_args: Vec<String>,
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
    /// Connects to `redis.url` to write the index `definition` asks for
    /// (the connection manager reconnects in the background afterwards).
    pub async fn connect(redis: &RedisConfig, definition: &IndexDefinition) -> Result<Self, SinkError> {
        let url = redis.url.expose();
        let client = match &redis.tls_ca_file {
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
            .set_response_timeout(Some(std::time::Duration::from_secs(redis.response_timeout_secs)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
        let conn = FailoverConnection::connect(client.clone(), manager_config).await?;
        let state = &redis.state_prefix;
        let version = super::IndexVersion::of(definition);
        let index = &definition.index;
        Ok(Self {
            conn,
            keys: super::keys::VersionKeys::of(state, &version.index),
            spec: super::IndexSpec::of(definition, &version.index, &version.prefix),
            create_args: super::IndexSpec::create_args(definition, &version.index, &version.prefix),
            client,
            prefix: version.prefix.clone(),
            vector_field: index.vector_field.clone(),
            vector_bytes: definition.dimensions * 4,
            state_prefix: state.clone(),
            version,
            lease_key: format!("{state}{}:writer", index.name),
            repair_key: format!("{state}{}:repair", index.name),
            cache_prefix: format!("{state}vec:"),
            cache_index_key: format!("{state}vec:space:{}", definition.space_id),
            cache_max: definition.cache_max_vectors,
            url: redact_url(url),
            fence: std::sync::Arc::default(),
            load_epoch: std::sync::Arc::default(),
            lease_ttl_ms: redis.lease_ttl_secs * 1000,
        })
    }
}

pub(super) fn unexpected_reply(err: impl std::fmt::Display) -> SinkError {
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

//! Configuration: a TOML file plus environment overrides for URLs and secrets.
//!
//! Everything is validated once at start-up by [`Config::load`]; an error
//! names the field path (`index.dimensions`) and says what is wrong. Structs
//! holding secrets implement neither `Serialize` nor a clear-text `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Classify, ErrorClass};

/// Default config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/drugsync.toml";

/// A config problem, naming the field and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}. Pass --config PATH or create it from config/drugsync.toml")]
    Read {
        /// File that was tried.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/ill-typed fields.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// File that was parsed.
        path: PathBuf,
        /// The TOML parser's message, which names the field and line.
        message: String,
    },
    /// A field has a value drugsync cannot use.
    #[error("config field `{field}` is invalid: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `embed.dimensions`.
        field: String,
        /// What is wrong and what would be right.
        reason: String,
    },
}

impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Definite
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.to_owned(), reason: reason.into() }
}

/// A CA bundle must be a readable PEM file with at least one certificate.
fn require_pem_file(field: &str, path: Option<&Path>) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(field, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(())
}

/// A string that must never be printed: URLs with passwords, tokens.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The clear value, for handing to a client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Strips user info from a URL so it can be logged (`mysql://u:p@h/db` -> `mysql://h/db`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://{}", &url[..scheme_end], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Source database and binlog settings.
    pub mysql: MysqlConfig,
    /// Target Redis Stack.
    pub redis: RedisConfig,
    /// Vector index definition.
    pub index: IndexConfig,
    /// Embedding provider.
    pub embed: EmbedConfig,
    /// Local checkpoint store.
    pub checkpoint: CheckpointConfig,
    /// Batching and chunk sizes.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Which tables feed a document and how.
    pub mapping: MappingConfig,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Prometheus endpoint settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics`, `/healthz` and `/readyz` on; empty = no endpoint.
    #[serde(default)]
    pub listen: String,
    /// `/readyz` fails when the last batch's lag is over this many seconds.
    #[serde(default = "default_ready_max_lag_secs")]
    pub ready_max_lag_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: String::new(), ready_max_lag_secs: default_ready_max_lag_secs() }
    }
}

/// Five minutes: above the weekly reload's full diff (half a minute at full
/// FDB scale), far below a day of staleness.
fn default_ready_max_lag_secs() -> u64 {
    300
}

impl MetricsConfig {
    /// The address to listen on, `None` when metrics are off. Validated at load.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }
}

/// Source database settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port/schema`; override with `DRUGSYNC_MYSQL_URL`.
    pub url: Secret,
    /// Schema whose row events are replicated (`fdb`).
    pub schema: String,
    /// Replica server id used for the binlog dump. Must be unique among all
    /// replicas of the source: the server drops an older connection that uses the same id.
    pub server_id: u32,
    /// Seconds between server heartbeats on an idle binlog stream; three missed
    /// heartbeats mean the link is dead and drugsync reconnects.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Longest wait for one query's answer (re-reads, key lookups, snapshot
    /// pages). A half-open connection answers never; past this the
    /// connection is dropped and the step retried on a fresh one.
    #[serde(default = "default_query_timeout_secs")]
    pub query_timeout_secs: u64,
    /// How a stored position is resumed: `position` (file:offset; falls back to
    /// the GTID state when the file no longer exists) or `gtid` (always by GTID).
    #[serde(default)]
    pub resume_by: ResumeBy,
    /// The longest drugsync outage that must still resume from the binlog:
    /// start-up fails when the source keeps binlogs for less (Aurora's
    /// 'binlog retention hours', or the server's expiry). 0 turns the check off.
    #[serde(default = "default_downtime_budget_hours")]
    pub downtime_budget_hours: u32,
    /// TLS to the source.
    #[serde(default)]
    pub tls: MysqlTls,
    /// AWS Secrets Manager secret (ARN) holding the database credentials as
    /// RDS stores them (`{"username", "password", "host"?, "port"?, "dbname"?}`);
    /// they replace those of `url`. Override with `DRUGSYNC_MYSQL_SECRET_ARN`.
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// Secrets Manager endpoint (a VPC endpoint, or a local fake in tests);
    /// default: the regional endpoint. Override with `DRUGSYNC_SECRETS_ENDPOINT_URL`.
    #[serde(default)]
    pub secrets_endpoint_url: Option<String>,
}

/// TLS settings of the MySQL connections (queries and the binlog stream alike).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlTls {
    /// How much of the server's certificate is checked.
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM bundle of the CAs to trust (Aurora/RDS: `global-bundle.pem`);
    /// unset = the built-in public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// TLS modes, named as the `mysql` client's `--ssl-mode` names them.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP (local development only).
    #[default]
    Disabled,
    /// Encrypted, but any certificate is accepted (protects against sniffing, not impersonation).
    Require,
    /// Encrypted, and the certificate must chain to a trusted CA.
    VerifyCa,
    /// Like `verify-ca`, and the certificate must name the host of `url`.
    VerifyIdentity,
}

/// A day: an outage overnight or over a long weekend day resumes without a reconcile.
fn default_downtime_budget_hours() -> u32 {
    24
}

/// See [`MysqlConfig::resume_by`].
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResumeBy {
    /// Binlog file and offset; GTID only as a fallback when the file is gone.
    #[default]
    Position,
    /// The GTID state stored with the position (needs GTIDs on the source).
    Gtid,
}

/// A heartbeat every 5 s detects a dead link within 15 s without noticeable traffic.
fn default_query_timeout_secs() -> u64 {
    60
}
fn default_heartbeat_secs() -> u64 {
    5
}

/// Target Redis settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; override with `DRUGSYNC_REDIS_URL`.
    pub url: Secret,
    /// Prefix of drugsync's own keys (applied position, vector cache). Must not
    /// overlap the index prefix, or its keys would be indexed as documents.
    #[serde(default = "default_state_prefix")]
    pub state_prefix: String,
    /// Longest wait for one Redis reply, in seconds. Writes to an HNSW index are
    /// indexed synchronously, so a MULTI/EXEC of many vectors takes a while.
    #[serde(default = "default_response_timeout_secs")]
    pub response_timeout_secs: u64,
    /// Writer lease TTL in seconds: how long a crashed writer blocks another
    /// instance from taking over (the same instance reclaims its lease at once).
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// PEM bundle of the CAs to trust for `rediss://` (a private CA, e.g.
    /// ElastiCache's); unset = the built-in public roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

/// 10 s: a standby polls every second, so it takes over within 11 s of a
/// writer's death (the promise is under 15 s), while a writer survives two
/// failed renewals (every 3.3 s) before losing the lease.
fn default_lease_ttl_secs() -> u64 {
    10
}

fn default_response_timeout_secs() -> u64 {
    30
}

fn default_state_prefix() -> String {
    "drugsync:".to_owned()
}

/// Kind of a non-vector index field.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum FieldKind {
    /// Exact-match filter field.
    Tag,
    /// Full-text field.
    Text,
    /// Numeric range field; empty values are left out of the hash, not indexed as errors.
    Numeric,
}

/// One non-vector field of the index; also one field of every document hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexField {
    /// Field name; must be a column alias of `mapping.select_sql`.
    pub name: String,
    /// Index type.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// TAG separator; `|` by default because class names contain commas.
    #[serde(default)]
    pub separator: Option<String>,
}

/// Vector index settings. A mismatch with an existing index is a start-up error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// Index name (`drugs_idx`).
    pub name: String,
    /// Key prefix of document hashes (`drug:`); the key is prefix + document key.
    pub prefix: String,
    /// Name of the vector field.
    #[serde(default = "default_vector_field")]
    pub vector_field: String,
    /// `HNSW` or `FLAT`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// `COSINE`, `L2` or `IP`.
    #[serde(default = "default_distance")]
    pub distance: String,
    /// HNSW M (RediSearch default 16).
    #[serde(default = "default_m")]
    pub m: u32,
    /// HNSW EF_CONSTRUCTION (RediSearch default 200).
    #[serde(default = "default_ef_construction")]
    pub ef_construction: u32,
    /// Non-vector fields, in hash and index order.
    pub fields: Vec<IndexField>,
}

fn default_vector_field() -> String {
    "embedding".to_owned()
}
fn default_algorithm() -> String {
    "HNSW".to_owned()
}
fn default_distance() -> String {
    "COSINE".to_owned()
}
fn default_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    200
}

/// Which embedder produces vectors.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmbedProvider {
    /// Offline, deterministic hashed n-gram vectors: no network, no cost.
    Local,
    /// AWS Bedrock Titan Text Embeddings V2.
    Bedrock,
}

/// Embedding settings. Model, dimensions, normalisation and template version
/// are all part of every text hash, so changing any of them re-embeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// `local` (default, offline) or `bedrock`.
    pub provider: EmbedProvider,
    /// Bedrock model id.
    #[serde(default = "default_model_id")]
    pub model_id: String,
    /// Vector dimensions: 1024, 512 or 256 for Titan V2.
    pub dimensions: usize,
    /// Ask the model for unit-length vectors (needed for COSINE/IP to agree).
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// AWS region for Bedrock; the default credential chain supplies credentials.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (VPC endpoint, or a local fake in tests); `DRUGSYNC_BEDROCK_ENDPOINT_URL`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// SDK attempts per text, including the first (throttling is retried with backoff).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest wait for one embedding call's answer, in seconds (each attempt).
    #[serde(default = "default_embed_timeout_secs")]
    pub timeout_secs: u64,
    /// Client-side pacing to the Bedrock quota: calls per minute (0: none).
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Client-side pacing to the Bedrock quota: input tokens per minute (0: none).
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Unavailable answers in a row that open the circuit breaker (0: never).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// Seconds the open circuit fails calls at once before trying one again.
    #[serde(default = "default_breaker_cooldown_secs")]
    pub breaker_cooldown_secs: u64,
    /// Bump when the text template changes meaning, to force re-embedding.
    #[serde(default = "default_template_version")]
    pub template_version: u32,
    /// Texts embedded at once (concurrent Bedrock calls).
    #[serde(default = "default_embed_concurrency")]
    pub concurrency: usize,
    /// USD per 1,000 input tokens, for the reconcile's cost estimate.
    #[serde(default = "default_price_per_1k_tokens")]
    pub price_per_1k_tokens: f64,
    /// Most vectors kept in Redis's vector cache (by text hash), oldest out
    /// first; 0 keeps none. Each is 4 x dimensions bytes.
    #[serde(default = "default_cache_max_vectors")]
    pub cache_max_vectors: u64,
}

/// Titan Text Embeddings V2 on-demand price (us-east-1, 2026).
/// 50,000 vectors are about 200 MB at 1024 dimensions, a fifth of what the
/// 120,000 FDB documents take themselves; past it the oldest texts go, and a
/// text that comes back costs one embedding call.
fn default_cache_max_vectors() -> u64 {
    50_000
}
fn default_price_per_1k_tokens() -> f64 {
    0.00002
}

fn default_model_id() -> String {
    "amazon.titan-embed-text-v2:0".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_secs() -> u64 {
    30
}
fn default_embed_timeout_secs() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    5
}
fn default_template_version() -> u32 {
    1
}
/// Four in flight keeps one instance well under default Bedrock quotas.
fn default_embed_concurrency() -> usize {
    4
}

/// Local checkpoint store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// redb file holding the applied position; `DRUGSYNC_CHECKPOINT_PATH`.
    pub path: PathBuf,
}

/// Batching and chunk sizes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most source transactions coalesced into one Redis batch.
    #[serde(default = "default_batch_max_transactions")]
    pub batch_max_transactions: usize,
    /// Longest a batch waits for more transactions once it has one, in ms.
    #[serde(default = "default_batch_max_delay_ms")]
    pub batch_max_delay_ms: u64,
    /// Keys per `WHERE key IN (...)` query when loading documents.
    #[serde(default = "default_load_chunk")]
    pub load_chunk: usize,
    /// Documents per Redis transaction (applies to the initial load and to huge batches).
    #[serde(default = "default_write_chunk")]
    pub write_chunk: usize,
    /// What to do when the binlog can no longer tell what changed: the stored
    /// position was purged (or is unusable), or DDL hit a tracked table.
    #[serde(default)]
    pub on_lost_sync: OnLostSync,
    /// A batch that routes to more than this share of the index's documents
    /// is applied by one full hash diff of the index (as a reconcile does)
    /// instead of key by key: a weekly FDB reload touches every drug.
    #[serde(default = "default_full_diff_share")]
    pub full_diff_share: f64,
    /// Most distinct routing values and document keys held for one batch;
    /// past it the batch is applied by a full hash diff whatever its share.
    /// This bounds memory however large a source transaction is.
    #[serde(default = "default_max_batch_keys")]
    pub max_batch_keys: usize,
    /// A writer that has been inside one step (a query, a write, an embedding
    /// call, a retry wait) for longer than this, in seconds, stops renewing
    /// its lease and exits, so a standby takes over. Every network wait has
    /// its own shorter deadline; this is the bound behind them all.
    #[serde(default = "default_stall_timeout_secs")]
    pub stall_timeout_secs: u64,
}

/// See [`PipelineConfig::on_lost_sync`].
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnLostSync {
    /// Reconcile every document against MySQL (cheap: hashes), then continue
    /// from the current server position (or past the DDL).
    #[default]
    Reconcile,
    /// Stop with an operator message; the position stays before the problem.
    Stop,
}

fn default_batch_max_transactions() -> usize {
    1000
}
/// 200 ms keeps end-to-end latency well under a second while a reload storm coalesces.
fn default_batch_max_delay_ms() -> u64 {
    200
}
fn default_load_chunk() -> usize {
    500
}
/// Measured with `examples/bench.rs` at 125,000 documents (README,
/// "Benchmarks"): key by key costs about 72 us a touched document, a full diff
/// about 58 us a document of the index, so they cross near 0.8. Half keeps
/// the slower path within 1.6x of the faster anywhere in between, and a
/// key-by-key batch at most half the index's keys.
fn default_full_diff_share() -> f64 {
    0.5
}
/// 100,000 keys are a few MB, and more than most indexes hold in a share.
fn default_max_batch_keys() -> usize {
    100_000
}
/// Above every single wait a healthy writer makes: a query (60 s), a
/// Redis reply (30 s), Bedrock's attempts (5 x 30 s), a backoff (30 s).
fn default_stall_timeout_secs() -> u64 {
    300
}
/// 100 documents per MULTI/EXEC keeps each transaction (synchronous HNSW
/// inserts) short enough not to stall searches noticeably.
fn default_write_chunk() -> usize {
    100
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max_transactions: default_batch_max_transactions(),
            batch_max_delay_ms: default_batch_max_delay_ms(),
            load_chunk: default_load_chunk(),
            write_chunk: default_write_chunk(),
            on_lost_sync: OnLostSync::default(),
            full_diff_share: default_full_diff_share(),
            max_batch_keys: default_max_batch_keys(),
            stall_timeout_secs: default_stall_timeout_secs(),
        }
    }
}

/// How source tables map to documents. Someone with another FDB subset edits this.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Output column (and hash field) that identifies a document (`ndc`).
    pub key_field: String,
    /// SQL expression of the key in `select_sql` (`n.NDC`), used for `IN (...)` and paging.
    pub key_expr: String,
    /// `SELECT <field aliases> FROM <root> JOIN ...` without WHERE; one row per document.
    pub select_sql: String,
    /// SQL condition a row must meet to be a document (`n.OBSDTEC = '0000-00-00'`).
    pub filter_sql: String,
    /// Text sent to the embedder, with `{field}` placeholders.
    pub text_template: String,
    /// Source tables whose row changes affect documents.
    pub tables: Vec<TableRule>,
    /// Cut trailing spaces from field values (FDB pads fixed-width text,
    /// e.g. manufacturer `"IVORY DRUG CO LTD "`). The key field is never cut:
    /// it must equal the key the binlog routes to.
    #[serde(default = "default_trim_trailing_spaces")]
    pub trim_trailing_spaces: bool,
}

fn default_trim_trailing_spaces() -> bool {
    true
}

/// Fan-out from one source table to the document keys it affects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRule {
    /// Table name in `mysql.schema`.
    pub table: String,
    /// Column whose before- and after-image values identify affected documents.
    pub column: String,
    /// Query returning document keys for a set of `column` values, with
    /// `{values}` where the placeholders go. Absent: the values are the keys.
    #[serde(default)]
    pub keys_sql: Option<String>,
}

impl Config {
    /// Reads `path`, applies environment overrides and validates everything.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses TOML text, applies overrides from `env` and validates.
    pub fn from_toml(text: &str, path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.apply_env(env);
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = get("DRUGSYNC_MYSQL_URL") {
            self.mysql.url = Secret::new(url);
        }
        if let Some(url) = get("DRUGSYNC_REDIS_URL") {
            self.redis.url = Secret::new(url);
        }
        if let Some(arn) = get("DRUGSYNC_MYSQL_SECRET_ARN") {
            self.mysql.secret_arn = Some(arn);
        }
        if let Some(url) = get("DRUGSYNC_SECRETS_ENDPOINT_URL") {
            self.mysql.secrets_endpoint_url = Some(url);
        }
        if let Some(url) = get("DRUGSYNC_BEDROCK_ENDPOINT_URL") {
            self.embed.endpoint_url = Some(url);
        }
        if let Some(path) = get("DRUGSYNC_CHECKPOINT_PATH") {
            self.checkpoint.path = PathBuf::from(path);
        }
    }

    /// Checks every field; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.mysql.url.expose();
        if !url.starts_with("mysql://") {
            return Err(invalid("mysql.url", "must start with mysql:// (set it in the file or DRUGSYNC_MYSQL_URL)"));
        }
        mysql_async::Opts::from_url(url).map_err(|e| invalid("mysql.url", format!("not a valid MySQL URL: {e}")))?;
        require_identifier("mysql.schema", &self.mysql.schema)?;
        if self.mysql.server_id == 0 {
            return Err(invalid("mysql.server_id", "must be a non-zero id unique among the source's replicas"));
        }
        if !(1..=3600).contains(&self.mysql.heartbeat_secs) {
            return Err(invalid("mysql.heartbeat_secs", "must be between 1 and 3600"));
        }
        if !(1..=3600).contains(&self.mysql.query_timeout_secs) {
            return Err(invalid("mysql.query_timeout_secs", "must be between 1 and 3600"));
        }
        if !(1..=600).contains(&self.embed.timeout_secs) {
            return Err(invalid("embed.timeout_secs", "must be between 1 and 600"));
        }
        if self.pipeline.stall_timeout_secs < 2 * self.redis.lease_ttl_secs.max(1) {
            return Err(invalid(
                "pipeline.stall_timeout_secs",
                "must be at least twice redis.lease_ttl_secs: a writer must be able to renew its lease while it is healthy",
            ));
        }
        require_pem_file("mysql.tls.ca_file", self.mysql.tls.ca_file.as_deref())?;
        if self.mysql.tls.mode == TlsMode::VerifyCa && self.mysql.tls.ca_file.is_none() {
            return Err(invalid(
                "mysql.tls.ca_file",
                "verify-ca needs the CA bundle that signed the server certificate (Aurora: the RDS global bundle)",
            ));
        }
        if let Some(arn) = &self.mysql.secret_arn {
            crate::secrets::region_of(arn).map_err(|reason| invalid("mysql.secret_arn", reason))?;
        }

        let redis_url = self.redis.url.expose();
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(invalid("redis.url", "must start with redis:// or rediss:// (set it in the file or DRUGSYNC_REDIS_URL)"));
        }
        redis::Client::open(redis_url).map_err(|e| invalid("redis.url", format!("not a valid Redis URL: {e}")))?;
        if !(1..=600).contains(&self.redis.response_timeout_secs) {
            return Err(invalid("redis.response_timeout_secs", "must be between 1 and 600"));
        }
        if !(3..=600).contains(&self.redis.lease_ttl_secs) {
            return Err(invalid("redis.lease_ttl_secs", "must be between 3 and 600"));
        }
        require_pem_file("redis.tls_ca_file", self.redis.tls_ca_file.as_deref())?;
        if self.redis.tls_ca_file.is_some() && !redis_url.starts_with("rediss://") {
            return Err(invalid("redis.tls_ca_file", "is set but redis.url is not rediss://; TLS would not be used"));
        }
        if self.redis.state_prefix.is_empty() {
            return Err(invalid("redis.state_prefix", "must not be empty"));
        }

        if !self.metrics.listen.is_empty() && self.metrics.address().is_none() {
            return Err(invalid(
                "metrics.listen",
                "must be host:port with an IP address (e.g. 0.0.0.0:9464), or empty to turn metrics off",
            ));
        }
        self.validate_index()?;
        self.validate_embed()?;

        if self.checkpoint.path.as_os_str().is_empty() {
            return Err(invalid("checkpoint.path", "must name a file"));
        }
        let p = &self.pipeline;
        for (field, value) in [
            ("pipeline.batch_max_transactions", p.batch_max_transactions),
            ("pipeline.load_chunk", p.load_chunk),
            ("pipeline.write_chunk", p.write_chunk),
            ("pipeline.max_batch_keys", p.max_batch_keys),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if p.load_chunk > 10_000 {
            return Err(invalid("pipeline.load_chunk", "must be at most 10000 (placeholders per query)"));
        }
        if !(p.full_diff_share > 0.0 && p.full_diff_share <= 1.0) {
            return Err(invalid("pipeline.full_diff_share", "must be a share of the index: more than 0, at most 1"));
        }
        self.validate_mapping()
    }

    fn validate_index(&self) -> Result<(), ConfigError> {
        let i = &self.index;
        if i.name.is_empty() || i.name.contains(char::is_whitespace) {
            return Err(invalid("index.name", "must be a non-empty name without spaces"));
        }
        if i.prefix.is_empty() {
            return Err(invalid("index.prefix", "must not be empty (e.g. \"drug:\")"));
        }
        let (a, b) = (&i.prefix, &self.redis.state_prefix);
        if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
            return Err(invalid("redis.state_prefix", format!("{b:?} overlaps index.prefix {a:?}; drugsync's own keys would be indexed")));
        }
        if !["HNSW", "FLAT"].contains(&i.algorithm.as_str()) {
            return Err(invalid("index.algorithm", "must be HNSW or FLAT"));
        }
        if !["COSINE", "L2", "IP"].contains(&i.distance.as_str()) {
            return Err(invalid("index.distance", "must be COSINE, L2 or IP"));
        }
        if i.m == 0 || i.ef_construction == 0 {
            return Err(invalid("index.m", "m and ef_construction must be at least 1"));
        }
        if i.fields.is_empty() {
            return Err(invalid("index.fields", "must list the document fields"));
        }
        let mut seen = std::collections::HashSet::new();
        for (n, field) in i.fields.iter().enumerate() {
            let path = format!("index.fields[{n}].name");
            require_identifier(&path, &field.name)?;
            if !seen.insert(field.name.as_str()) {
                return Err(invalid(&path, format!("field {:?} is listed twice", field.name)));
            }
            if field.name == i.vector_field || RESERVED_FIELDS.contains(&field.name.as_str()) {
                return Err(invalid(&path, format!("{:?} is reserved for drugsync's own use", field.name)));
            }
            if let Some(sep) = &field.separator
                && (field.kind != FieldKind::Tag || sep.chars().count() != 1)
            {
                return Err(invalid(&format!("index.fields[{n}].separator"), "only TAG fields take a separator, of exactly one character"));
            }
        }
        if !seen.contains(self.mapping.key_field.as_str()) {
            return Err(invalid("mapping.key_field", format!("{:?} must also be one of index.fields", self.mapping.key_field)));
        }
        Ok(())
    }

    fn validate_embed(&self) -> Result<(), ConfigError> {
        let e = &self.embed;
        if !(1..=8192).contains(&e.dimensions) {
            return Err(invalid("embed.dimensions", "must be between 1 and 8192"));
        }
        if e.provider == EmbedProvider::Bedrock {
            if e.model_id.starts_with("amazon.titan-embed-text-v2") && ![256, 512, 1024].contains(&e.dimensions) {
                return Err(invalid("embed.dimensions", "Titan Text Embeddings V2 supports 256, 512 or 1024"));
            }
            if e.model_id.is_empty() {
                return Err(invalid("embed.model_id", "must name a Bedrock model"));
            }
        }
        if let Some(url) = &e.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("embed.endpoint_url", "must be an http:// or https:// URL"));
        }
        if e.max_attempts == 0 {
            return Err(invalid("embed.max_attempts", "must be at least 1"));
        }
        if !(e.price_per_1k_tokens.is_finite() && e.price_per_1k_tokens >= 0.0) {
            return Err(invalid("embed.price_per_1k_tokens", "must be a non-negative number"));
        }
        if !(1..=64).contains(&e.concurrency) {
            return Err(invalid("embed.concurrency", "must be between 1 and 64"));
        }
        Ok(())
    }

    fn validate_mapping(&self) -> Result<(), ConfigError> {
        let m = &self.mapping;
        if m.key_expr.trim().is_empty() {
            return Err(invalid("mapping.key_expr", "must be the SQL expression of the key, e.g. n.NDC"));
        }
        if !m.select_sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            return Err(invalid("mapping.select_sql", "must be a SELECT statement"));
        }
        if m.filter_sql.trim().is_empty() {
            return Err(invalid("mapping.filter_sql", "must be a SQL condition (use 1=1 for all rows)"));
        }
        let placeholders = crate::document::template_fields(&m.text_template).map_err(|reason| invalid("mapping.text_template", reason))?;
        for name in placeholders {
            if !self.index.fields.iter().any(|f| f.name == name) {
                return Err(invalid("mapping.text_template", format!("placeholder {{{name}}} is not one of index.fields")));
            }
        }
        if m.tables.is_empty() {
            return Err(invalid("mapping.tables", "must list at least the root table"));
        }
        for (n, rule) in m.tables.iter().enumerate() {
            require_identifier(&format!("mapping.tables[{n}].table"), &rule.table)?;
            require_identifier(&format!("mapping.tables[{n}].column"), &rule.column)?;
            if let Some(sql) = &rule.keys_sql
                && sql.matches("{values}").count() != 1
            {
                return Err(invalid(&format!("mapping.tables[{n}].keys_sql"), "must contain {values} exactly once"));
            }
        }
        Ok(())
    }
}

/// Hash fields drugsync writes besides the configured ones.
pub const RESERVED_FIELDS: &[&str] = &["text_hash", "doc_hash", "source_position"];

fn require_identifier(field: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(()) } else { Err(invalid(field, format!("{value:?} must be a plain identifier (letters, digits, _)"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../config/drugsync.toml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"), |_| None)
    }

    #[test]
    fn production_config_is_valid_and_shares_index_and_mapping_with_the_reference() {
        let production = include_str!("../deploy/drugsync.toml");
        let dir = std::env::temp_dir().join(format!("drugsync-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("rds-global-bundle.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let config = parse(&production.replace("/etc/drugsync/rds-global-bundle.pem", ca.to_str().unwrap())).unwrap();
        assert_eq!(config.mysql.tls.mode, TlsMode::VerifyIdentity);
        assert!(config.mysql.secret_arn.is_some() && config.redis.url.expose().starts_with("rediss://"));
        assert!(!config.mysql.url.expose().contains("drugsync:"), "no password in the file");
        let table = |text: &str, name: &str| text.parse::<toml::Table>().unwrap()[name].clone();
        for section in ["index", "mapping", "pipeline"] {
            assert_eq!(table(production, section), table(REFERENCE, section), "[{section}] differs from config/drugsync.toml");
        }
        let missing = parse(production).unwrap_err().to_string();
        assert!(missing.contains("mysql.tls.ca_file") && missing.contains("rds-global-bundle.pem"), "{missing}");
    }

    #[test]
    fn tls_and_secret_fields_are_validated_by_name() {
        let tls = REFERENCE.replacen("mode = \"disabled\"", "mode = \"verify-ca\"", 1);
        assert!(parse(&tls).unwrap_err().to_string().contains("mysql.tls.ca_file"));
        let mode = REFERENCE.replacen("mode = \"disabled\"", "mode = \"paranoid\"", 1);
        assert!(parse(&mode).unwrap_err().to_string().contains("paranoid"));
        let arn = REFERENCE.replacen(
            "# secret_arn = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-...\"",
            "secret_arn = \"rds!cluster-1\"",
            1,
        );
        assert!(parse(&arn).unwrap_err().to_string().contains("mysql.secret_arn"));
        let redis_ca = REFERENCE.replacen("lease_ttl_secs = 10", "lease_ttl_secs = 10\ntls_ca_file = \"/nonexistent/ca.pem\"", 1);
        assert!(parse(&redis_ca).unwrap_err().to_string().contains("redis.tls_ca_file"));
    }

    #[test]
    fn reference_config_is_valid() {
        let config = parse(REFERENCE).unwrap();
        assert_eq!(config.index.name, "drugs_idx");
        assert_eq!(config.mapping.tables.len(), 8);
    }

    #[test]
    fn environment_overrides_urls() {
        let config = Config::from_toml(REFERENCE, Path::new("t"), |name| match name {
            "DRUGSYNC_MYSQL_URL" => Some("mysql://u:hunter2@db:3306/fdb".into()),
            "DRUGSYNC_REDIS_URL" => Some("rediss://r:6380".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.mysql.url.expose(), "mysql://u:hunter2@db:3306/fdb");
        assert_eq!(config.redis.url.expose(), "rediss://r:6380");
        assert!(!format!("{config:?}").contains("hunter2"), "Debug must not print secrets");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("dimensions = 1024", "dimensions = 0", "embed.dimensions"),
            ("server_id = 4242", "server_id = 0", "mysql.server_id"),
            ("distance = \"COSINE\"", "distance = \"MANHATTAN\"", "index.distance"),
            ("state_prefix = \"drugsync:\"", "state_prefix = \"drug:\"", "redis.state_prefix"),
        ];
        for (from, to, field) in cases {
            assert!(REFERENCE.contains(from), "reference lacks {from}");
            let err = parse(&REFERENCE.replacen(from, to, 1)).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
        let err = parse(&REFERENCE.replacen("[mysql]", "[mysql]\nbogus = 1", 1)).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn template_placeholders_must_be_fields() {
        let text = REFERENCE.replacen("{generic_name}", "{nonsense}", 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("mapping.text_template") && err.contains("nonsense"), "{err}");
    }

    #[test]
    fn redacts_url_credentials() {
        assert_eq!(redact_url("mysql://u:p@h:1/db"), "mysql://h:1/db");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}

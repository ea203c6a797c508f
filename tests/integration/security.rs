//! Security against real servers: TLS modes to a MariaDB and a MySQL user that REQUIRES
//! SSL, Redis over TLS with the ACL of `deploy/redis-acl.conf`, credentials
//! from a Secrets Manager endpoint, and no secret in any output.

use crate::common;
use crate::common::on_each_server;

use std::process::Command;

use common::tls::{TestCa, TlsProxy};
use common::{PrivateServer, TestEnv};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MYSQL_PASSWORD: &str = "Tls-s3cret-9";
const SM_PASSWORD: &str = "Sm-s3cret-42";
const REDIS_PASSWORD: &str = "Acl-s3cret-7";
const AWS_SECRET_KEY: &str = "Aws-s3cret-key-77";

/// Adds `line` to the `[mysql.tls]` table of a test config.
fn with_tls(config: &str, line: &str) -> String {
    config.replacen("mode = \"disabled\"", line, 1)
}

on_each_server! {
    /// Every TLS mode against a private server whose certificate a test CA
    /// issued for "localhost" only, to a user that REQUIRES SSL.
    async fn mysql_tls_modes_against_a_user_that_requires_ssl(flavour) {
        let pki = tempfile::tempdir().unwrap();
        let ca = TestCa::new("drugsync test CA");
        let ca_file = ca.write(pki.path(), "ca");
        let other_ca_file = TestCa::new("someone else's CA").write(pki.path(), "other-ca");
        // Valid for "localhost" only, so connecting by IP fails verify-identity.
        let (cert, key) = ca.issue(&["localhost"]).write(pki.path(), "server");
        let server = PrivateServer::start_with(flavour, vec![
            format!("--ssl-ca={}", ca_file.display()),
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
        ])
        .await;
        let env = TestEnv::new_on(&server, "mysql_tls", 20).await;
        env.create_user("ds_tls", MYSQL_PASSWORD, true, true).await;
        let by_ip = env.config_text.replacen("mysql://root@", &format!("mysql://ds_tls:{MYSQL_PASSWORD}@"), 1);
        let by_name = by_ip.replacen("@127.0.0.1:", "@localhost:", 1);

        let message = env.connect_error(&by_ip).await.expect("a REQUIRE SSL user without TLS is refused");
        assert!(message.contains("MySQL refused access") && message.contains("mysql.tls.mode"), "{message}");
        assert_eq!(env.connect_error(&with_tls(&by_ip, "mode = \"require\"")).await, None, "require encrypts without checking");

        let wrong_ca = with_tls(&by_ip, &format!("mode = \"verify-ca\"\nca_file = {other_ca_file:?}"));
        let message = env.connect_error(&wrong_ca).await.expect("a certificate from an untrusted CA is refused");
        assert!(message.contains("TLS to MySQL failed") && message.contains("ca_file"), "{message}");

        let verify_ca = with_tls(&by_ip, &format!("mode = \"verify-ca\"\nca_file = {ca_file:?}"));
        assert_eq!(env.connect_error(&verify_ca).await, None, "verify-ca checks the chain, not the name");

        let identity_by_ip = with_tls(&by_ip, &format!("mode = \"verify-identity\"\nca_file = {ca_file:?}"));
        let message = env.connect_error(&identity_by_ip).await.expect("a name mismatch is refused by verify-identity");
        assert!(message.contains("TLS to MySQL failed") && message.contains("verify-identity"), "{message}");
        assert!(!message.contains(MYSQL_PASSWORD), "{message}");

        // The full pipeline (pool and binlog stream) over verify-identity.
        let identity = with_tls(&by_name, &format!("mode = \"verify-identity\"\nca_file = {ca_file:?}"));
        let run = env.start_with(&identity).await;
        env.wait_caught_up().await;
        env.exec(&["UPDATE rgcnseq4 SET STR = 'VC 10 MG' WHERE GCN_SEQNO = (SELECT m FROM (SELECT MIN(GCN_SEQNO) AS m FROM rgcnseq4) AS least)"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;
        // ds_tls REQUIRES SSL, so every session that served this run was TLS.
        run.stop().await;
    }
}

/// The rules of `deploy/redis-acl.conf`, with the key patterns moved to this test's prefixes.
fn acl_rules(env: &TestEnv, password: &str) -> Vec<String> {
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/redis-acl.conf")).unwrap();
    let line = file.lines().find(|l| l.starts_with("user drugsync ")).expect("a user line");
    let doc_base = env.prefix.split("_v").next().unwrap().to_owned();
    line.split_whitespace()
        .skip(2)
        .map(|rule| match rule {
            r if r.starts_with('#') => format!(">{password}"),
            "~drug_v*" => format!("~{doc_base}_v*"),
            "~drugsync:*" => format!("~ds:{}:*", env.name),
            "~drugs_idx*" => format!("~{}*", env.index),
            r => r.to_owned(),
        })
        .collect()
}

on_each_server! {
    /// Everything an operator or a log collector could see, checked for secrets:
    /// a production-like run (credentials from Secrets Manager, Redis over TLS as
    /// an ACL user), `--help`, `checkpoint show`, a reconcile, and failures.
    async fn secrets_manager_tls_redis_acl_and_no_secret_in_any_output(flavour) {
        let env = TestEnv::new(flavour, "secrets", 30).await;
        let user = "ds_secrets";
        env.create_user(user, SM_PASSWORD, false, true).await;

        // Secrets Manager, as the SDK calls it.
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-test-AbCdEf";
        let secrets = MockServer::start().await;
        let secret_string = serde_json::json!({ "username": user, "password": SM_PASSWORD, "engine": "mysql" }).to_string();
        Mock::given(method("POST"))
            .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
            .respond_with(
                ResponseTemplate::new(200).insert_header("content-type", "application/x-amz-json-1.1").set_body_json(
                    serde_json::json!({ "ARN": arn, "Name": "rds!cluster-test", "SecretString": secret_string, "VersionId": "v1" }),
                ),
            )
            .expect(1..)
            .mount(&secrets)
            .await;

        // Redis over TLS, as an ACL user limited to the test's prefixes.
        let pki = tempfile::tempdir().unwrap();
        let ca = TestCa::new("drugsync test CA");
        let ca_file = ca.write(pki.path(), "ca");
        let upstream = common::redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let proxy = TlsProxy::start(&ca.issue(&["localhost"]), upstream).await;
        let acl_user = format!("ds_acl_{}", env.name);
        let mut admin = env.redis.clone();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&acl_user)
            .arg("reset")
            .arg(acl_rules(&env, REDIS_PASSWORD))
            .query_async(&mut admin)
            .await
            .unwrap();
        let redis_url = format!("rediss://{acl_user}:{REDIS_PASSWORD}@localhost:{}", proxy.port);

        let metrics_port = common::http::free_port();
        let config = common::http::with_metrics(&env.config_text, metrics_port)
            .replacen("drugsync:drugsync@", "placeholder@", 1)
            .replacen(&common::redis_url(), "rediss://localhost:1", 1)
            .replacen("lease_ttl_secs = 10", &format!("lease_ttl_secs = 10\ntls_ca_file = {ca_file:?}"), 1);
        let with_env = |command: &mut Command| {
            command
                .env("DRUGSYNC_MYSQL_SECRET_ARN", arn)
                .env("DRUGSYNC_SECRETS_ENDPOINT_URL", secrets.uri())
                .env("DRUGSYNC_REDIS_URL", &redis_url)
                .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
                .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
                .env("AWS_EC2_METADATA_DISABLED", "true");
        };

        let mut run = env.binary_command(&config, "run.log");
        with_env(&mut run);
        let mut child = run.arg("run").spawn().unwrap();
        env.wait_caught_up().await;
        env.exec(&["UPDATE rgcnseq4 SET STR = 'TLS 5 MG' WHERE GCN_SEQNO = (SELECT m FROM (SELECT MIN(GCN_SEQNO) AS m FROM rgcnseq4) AS least)"]).await;
        env.wait_caught_up().await;
        env.assert_matches_mysql().await;

        // The ACL really limits: the same user cannot read outside its prefixes or flush.
        let acl_client = redis::Client::build_with_tls(
            redis_url.as_str(),
            redis::TlsCertificates { client_tls: None, root_cert: Some(ca.pem().into_bytes()) },
        )
        .unwrap();
        let mut acl_conn = acl_client.get_multiplexed_async_connection().await.unwrap();
        let outside: redis::RedisResult<Option<String>> = redis::cmd("GET").arg("t:other_test:key").query_async(&mut acl_conn).await;
        assert!(outside.unwrap_err().to_string().to_lowercase().contains("noperm"), "keys outside the prefixes are denied");
        let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query_async(&mut acl_conn).await;
        assert!(flush.unwrap_err().to_string().to_lowercase().contains("noperm"), "commands outside the list are denied");

        // The Prometheus endpoint: counters moved, this instance is the writer.
        let scrape = scrape_metrics(metrics_port).await;
        let value = |name: &str| -> f64 {
            let line = scrape.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in:\n{scrape}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("drugsync_documents_upserted_total") >= 1.0, "{scrape}");
        assert!(value("drugsync_batches_total") >= 1.0);
        assert_eq!(value("drugsync_writer"), 1.0);
        // What /readyz answers, and the quarantine's size (empty), for the alert rules.
        assert_eq!(value("drugsync_ready"), 1.0, "{scrape}");
        assert_eq!(value("drugsync_quarantined_documents"), 0.0, "{scrape}");
        // The local embedder reports no tokens: the cost gauge is there, at zero.
        assert_eq!(value("drugsync_embed_estimated_cost_usd"), 0.0);
        assert!(value("drugsync_replication_lag_seconds") < 600.0);

        // Commands an operator runs beside it.
        let mut outputs = vec![scrape];
        for (name, args) in
            [("help", vec!["--help"]), ("show", vec!["checkpoint", "show"]), ("reconcile", vec!["--reconcile", "--output", "json"])]
        {
            let mut command = env.binary_command(&config, &format!("{name}.log"));
            with_env(&mut command);
            let output = command.args(args).stdout(std::process::Stdio::piped()).output().unwrap();
            assert!(output.status.success(), "{name}: {}", std::fs::read_to_string(env.log_path(&format!("{name}.log"))).unwrap());
            outputs.push(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        assert!(outputs[3].contains("\"missing\":0"), "reconcile over TLS and ACL finds no drift: {}", outputs[3]);
        sigterm(&child);
        assert!(tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap().success(), "clean stop");

        // Failures must not print secrets either: a wrong Redis password, a rejected MySQL password.
        let mut wrong_redis = env.binary_command(&config, "wrong-redis.log");
        with_env(&mut wrong_redis);
        let status = wrong_redis.env("DRUGSYNC_REDIS_URL", redis_url.replace(REDIS_PASSWORD, "Wr0ng-redis-pw")).arg("run").status().unwrap();
        assert_eq!(status.code(), Some(1));
        env.exec(&[&format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'rotated-elsewhere'")]).await;
        let mut rotated = env.binary_command(&config, "rotated.log");
        with_env(&mut rotated);
        let status = rotated.arg("run").status().unwrap();
        assert_eq!(status.code(), Some(1));
        let rotated_log = std::fs::read_to_string(env.log_path("rotated.log")).unwrap();
        assert!(rotated_log.contains("MySQL refused access"), "{rotated_log}");

        let mut seen = outputs.join("\n");
        for entry in std::fs::read_dir(common::test_log_dir(&env.name)).unwrap() {
            seen.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
        assert!(seen.contains("MySQL credentials read from Secrets Manager"), "the secret was used");
        for secret in [SM_PASSWORD, REDIS_PASSWORD, "Wr0ng-redis-pw", AWS_SECRET_KEY] {
            assert!(!seen.contains(secret), "secret {secret:?} appeared in an output or log");
        }
        let _: () = redis::cmd("ACL").arg("DELUSER").arg(&acl_user).query_async(&mut admin).await.unwrap();
    }
}

fn sigterm(child: &std::process::Child) {
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
}

/// `GET /metrics`, retried until a publication (once a second) shows a batch.
/// The metrics once a batch was counted and the writer reports itself
/// ready (`drugsync_ready 1`, what `/readyz` answers): a gauge that never
/// turns 1 fails here, with the last scrape and `/readyz`'s reasons.
async fn scrape_metrics(port: u16) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = common::http::get(port, "/metrics").await.map(|(_, body)| body).unwrap_or_default();
        let counted = last.lines().any(|l| l.starts_with("drugsync_batches_total ") && !l.ends_with(" 0"));
        if counted && last.lines().any(|l| l == "drugsync_ready 1") {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let ready = common::http::get(port, "/readyz").await.map(|(_, body)| body).unwrap_or_default();
    panic!("no ready writer's metrics on port {port} within 20 s; /readyz: {ready}\nlast scrape:\n{last}");
}

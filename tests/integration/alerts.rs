//! The Prometheus alert rules and the Grafana dashboard shipped in
//! `deploy/`: promtool checks the rules and runs their unit tests (which
//! alerts fire on synthetic series, and which do not), and every metric
//! either names is one drugsync exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/drugsync.json");

/// Runs promtool in the rules' directory; panics with its output on failure.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(RULES_DIR)
        .output()
        .unwrap_or_else(|e| panic!("promtool not runnable ({e}): run tests/env/testenv.sh install"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Every `drugsync_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("drugsync_") {
        let start = at + found;
        let end = start + text[start..].bytes().take_while(|b| b.is_ascii_lowercase() || *b == b'_' || b.is_ascii_digit()).count();
        // Inside a longer identifier (a file name such as drugsync_rules) it is no metric.
        if start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-' || bytes[start - 1] == b'/') {
            names.insert(text[start..end].to_owned());
        }
        at = end;
    }
    names
}

/// The metrics drugsync exports, as its metrics module names them.
fn exported() -> BTreeSet<String> {
    metric_names(include_str!("../../src/app/metrics.rs"))
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "drugsync-rules.yml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "drugsync-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_rules_and_the_dashboard_name_only_metrics_drugsync_exports() {
    let exported = exported();
    assert!(exported.contains("drugsync_ready") && exported.contains("drugsync_quarantined_documents"), "{exported:?}");
    let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("drugsync-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(DASHBOARD).unwrap();
    for (what, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let unknown: Vec<String> = metric_names(text).difference(&exported).cloned().collect();
        assert!(unknown.is_empty(), "the {what} name metrics drugsync does not export: {unknown:?}");
    }
    // The dashboard is JSON Grafana imports: every panel queries something.
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        let exprs: Vec<&str> = panel["targets"].as_array().unwrap().iter().filter_map(|t| t["expr"].as_str()).collect();
        assert!(!exprs.is_empty(), "panel {} has no query", panel["title"]);
    }
}

#[test]
fn each_alert_says_what_to_do_and_points_at_the_runbook() {
    let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("drugsync-rules.yml")).unwrap();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert_eq!(alerts.len(), 10);
    for alert in alerts {
        let name = alert.lines().next().unwrap();
        assert!(alert.contains("summary:") && alert.contains("description:"), "{name}");
        // The README's runbook, or the operations guide for what the runbook does not cover.
        assert!(alert.contains("README: Runbook") || alert.contains("docs/operations.md"), "{name} points at the runbook");
    }
}

/// Every metric sample name a running writer serves on `/metrics`.
fn served_names(body: &str) -> BTreeSet<String> {
    body.lines().filter(|l| l.starts_with("drugsync_")).map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned()).collect()
}

/// The names the rules and the dashboard use are read from a running
/// writer's `/metrics` with the canary on (its gauges appear once a
/// heartbeat is seen), not from the source: a renamed metric fails here.
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_rules_and_the_dashboard_use_is_served_by_a_running_writer() {
    use crate::canary::{HEARTBEAT_TABLE, with_canary};
    use crate::common::http::{free_port, get, with_metrics};
    let mut env = crate::common::TestEnv::new(crate::common::Flavour::Mariadb, "metric_names", 60).await;
    env.exec(&[HEARTBEAT_TABLE]).await;
    let port = free_port();
    let config = with_metrics(&with_canary(&env.config_text), port);
    env.use_config(config.clone());
    let mut writer = env.spawn_binary_with(&config, "writer.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = get(port, "/metrics").await
            && body.contains("drugsync_canary_freshness_seconds")
        {
            break body;
        }
        assert!(writer.try_wait().unwrap().is_none(), "{}", std::fs::read_to_string(env.log_path("writer.log")).unwrap());
        assert!(std::time::Instant::now() < deadline, "no canary heartbeat seen on /metrics within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    writer.kill().unwrap();
    writer.wait().unwrap();
    let served = served_names(&body);
    let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("drugsync-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(DASHBOARD).unwrap();
    for (what, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let unknown: Vec<String> = metric_names(text).difference(&served).cloned().collect();
        assert!(unknown.is_empty(), "the {what} name metrics a running writer does not serve: {unknown:?}\nserved: {served:?}");
    }
}

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
    metric_names(include_str!("../../src/metrics.rs"))
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
fn each_alert_says_what_to_do_and_points_at_the_readme() {
    let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("drugsync-rules.yml")).unwrap();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert_eq!(alerts.len(), 10);
    for alert in alerts {
        let name = alert.lines().next().unwrap();
        assert!(alert.contains("summary:") && alert.contains("description:"), "{name}");
        assert!(alert.contains("README:"), "{name} points at the README");
    }
}

//! Search quality, asked through the `drugsync search` binary as an operator
//! would: a fixed set of everyday questions over the sample data, answered
//! by the embedded semantic model, and by the hashed n-gram embedder, which
//! must fail the same test (it matches spellings, not meaning).
//!
//! The queries and what each must find were fixed before the sample data's
//! class names were chosen; no class name repeats a query's words. The
//! judge is the therapeutic class the source holds for each hit, read from
//! the hit's own fields. Runs on MariaDB alone: what is judged is the
//! embedder, and the source's flavour plays no part in it.

use std::time::{Duration, Instant};

use crate::common::{Flavour, TestEnv, model_path};

/// A question, the classes it must find among its 10 distinct answers, and
/// every class that answers it (the share of answers in those is its precision).
struct Question {
    text: &'static str,
    must_find: &'static [&'static str],
    relevant: &'static [&'static str],
}

const STATINS: &str = "Antihyperlipidemic - HMG CoA Reductase Inhibitors";
const ACE: &str = "Antihypertensive - ACE Inhibitors";
const ARB: &str = "Antihypertensive - Angiotensin II Receptor Blockers";
const BETA_BLOCKERS: &str = "Beta-Adrenergic Blocking Agents";
const PPI: &str = "Proton Pump Inhibitors";
const PENICILLINS: &str = "Penicillins";
const MACROLIDES: &str = "Macrolides";

const QUESTIONS: &[Question] = &[
    Question { text: "cholesterol", must_find: &[STATINS], relevant: &[STATINS] },
    Question {
        text: "blood pressure",
        must_find: &[ACE, ARB, BETA_BLOCKERS],
        relevant: &[
            ACE,
            ARB,
            BETA_BLOCKERS,
            "Calcium Channel Blockers - Dihydropyridines",
            "Thiazide and Related Diuretics",
            "Loop Diuretics",
            "Aldosterone Receptor Antagonists",
            "Alpha-1 Adrenergic Blockers",
        ],
    },
    Question { text: "stomach acid", must_find: &[PPI], relevant: &[PPI, "Histamine H2 Receptor Antagonists"] },
    Question {
        text: "antibiotic",
        must_find: &[PENICILLINS, MACROLIDES],
        relevant: &[PENICILLINS, MACROLIDES, "Cephalosporins - 1st Generation", "Fluoroquinolones", "Tetracyclines"],
    },
];

/// The share of a question's answers that must be relevant.
const MIN_PRECISION: f64 = 0.5;

/// How one embedder answered one question.
#[derive(Debug)]
struct Verdict {
    question: &'static str,
    classes: Vec<String>,
    missing: Vec<&'static str>,
    precision: f64,
}

impl Verdict {
    fn passed(&self) -> bool {
        self.missing.is_empty() && self.precision >= MIN_PRECISION
    }
}

/// A hit's class is of a kind when it is that class or one of its sub-classes.
fn of_kind(class: &str, kind: &str) -> bool {
    class == kind || class.strip_prefix(kind).is_some_and(|rest| rest.starts_with(" - "))
}

fn judge(question: &'static Question, classes: Vec<String>) -> Verdict {
    let missing = question.must_find.iter().copied().filter(|kind| !classes.iter().any(|c| of_kind(c, kind))).collect();
    let relevant = classes.iter().filter(|c| question.relevant.iter().any(|kind| of_kind(c, kind))).count();
    let precision = if classes.is_empty() { 0.0 } else { relevant as f64 / classes.len() as f64 };
    Verdict { question: question.text, classes, missing, precision }
}

/// The therapeutic classes of the 10 distinct answers `drugsync search` gives.
fn ask(env: &TestEnv, config_text: &str, question: &str, log: &str) -> Option<Vec<String>> {
    let output = env
        .binary_command(config_text, log)
        .args(["search", question, "--k", "10", "--distinct", "--fields", "therapeutic_class", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    if !output.status.success() {
        return None;
    }
    let hits: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("JSON hits");
    Some(hits.iter().map(|h| h["fields"]["therapeutic_class"].as_str().unwrap_or_default().to_owned()).collect())
}

/// Runs the binary on `config_text` until its index is live (its initial
/// load switches the alias only once complete), then asks every question.
fn answers(env: &TestEnv, config_text: &str, name: &str) -> Vec<Verdict> {
    let mut run = env.spawn_binary_with(config_text, &format!("{name}-run.log"));
    let deadline = Instant::now() + Duration::from_secs(240);
    while ask(env, config_text, "warm-up", &format!("{name}-wait.log")).is_none_or(|hits| hits.is_empty()) {
        let log = std::fs::read_to_string(env.log_path(&format!("{name}-run.log"))).unwrap_or_default();
        assert!(run.try_wait().unwrap().is_none(), "drugsync on the {name} embedder stopped:\n{log}");
        assert!(Instant::now() < deadline, "the {name} embedder's index was not live within 240 s:\n{log}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let verdicts = QUESTIONS
        .iter()
        .map(|q| judge(q, ask(env, config_text, q.text, &format!("{name}-search.log")).expect("the search answers")))
        .collect();
    run.kill().unwrap();
    run.wait().unwrap();
    verdicts
}

fn report(name: &str, verdicts: &[Verdict]) -> String {
    let mut out = format!("{name}: {}/{} questions passed\n", verdicts.iter().filter(|v| v.passed()).count(), verdicts.len());
    for v in verdicts {
        out.push_str(&format!("  {:<16} precision {:.1}  missing {:?}  {:?}\n", v.question, v.precision, v.missing, v.classes));
    }
    out
}

/// `config_text` embedding as the demo does: config/demo.toml's `[embed]`,
/// with the model `tests/env/testenv.sh` installed.
fn with_demo_embedder(config_text: &str) -> String {
    let demo: toml::Table = include_str!("../../config/demo.toml").parse().unwrap();
    let mut config: toml::Table = config_text.parse().unwrap();
    let mut embed = demo["embed"].as_table().unwrap().clone();
    embed.insert("model_path".into(), toml::Value::String(model_path().display().to_string()));
    config["embed"].as_table_mut().unwrap().extend(embed);
    toml::to_string(&config).unwrap()
}

/// The embedded model answers every question with the classes it must
/// find and mostly relevant ones; the hashed embedder, on the same data and
/// the same binary, does not.
#[tokio::test(flavor = "multi_thread")]
async fn the_semantic_model_finds_drugs_by_meaning_and_the_hashed_embedder_does_not() {
    let env = TestEnv::new(Flavour::Mariadb, "quality", 4000).await;
    let model_text = with_demo_embedder(&env.config_text);
    let model = tokio::task::block_in_place(|| answers(&env, &model_text, "model"));
    let hashed = tokio::task::block_in_place(|| answers(&env, &env.config_text, "hashed"));
    let table = format!("{}{}", report("model", &model), report("hashed", &hashed));
    eprintln!("{table}");
    assert!(model.iter().all(Verdict::passed), "the model fails a question:\n{table}");
    assert!(!hashed.iter().all(Verdict::passed), "the hashed embedder passes the quality test, so it tells nothing:\n{table}");
}

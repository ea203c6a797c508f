//! The embedded model (`embed.provider = "model"`) against vectors made apart
//! from drugsync: `tests/data/minilm/reference.py`, a numpy forward pass and a
//! WordPiece tokenizer written from the BERT recipe over the same files
//! (see that script for how `reference.json` was made).

use drugsync::config::{EmbedConfig, EmbedProvider};
use drugsync::embed::{EmbedStats, Embedder, ModelEmbedder, Outcome, embed_each};

use crate::common::{embed_config, model_path};

#[derive(serde::Deserialize)]
struct Reference {
    max_seq_length: usize,
    texts: Vec<ReferenceText>,
}

#[derive(serde::Deserialize)]
struct ReferenceText {
    text: String,
    tokens: u64,
    cut: bool,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("../data/minilm/reference.json")).expect("reference.json")
}

fn config() -> EmbedConfig {
    EmbedConfig {
        model_path: Some(model_path()),
        normalize: true,
        endpoint_url: None,
        batch_size: Some(16),
        ..embed_config(EmbedProvider::Model, "sentence-transformers/all-MiniLM-L6-v2", 384, "http://unused")
    }
}

fn model() -> ModelEmbedder {
    ModelEmbedder::from_config(&config()).unwrap_or_else(|e| panic!("{e} (run tests/env/testenv.sh up)"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn each_vector_matches_the_reference_alone_and_in_a_padded_batch() {
    let reference = reference();
    assert_eq!(reference.max_seq_length, 256);
    let model = model();
    assert_eq!(model.max_input_chars(), usize::MAX, "cut in tokens, not characters");
    // Alone: no padding. Together: every text padded to the longest (256 tokens), masked out.
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    let together = model.embed_batch(&texts).await.unwrap();
    for (i, expected) in reference.texts.iter().enumerate() {
        let alone = model.embed_batch(&[&expected.text]).await.unwrap();
        assert_eq!(alone.tokens, Some(expected.tokens), "tokens of text {i}");
        assert_eq!(alone.cut, u64::from(expected.cut), "cut of text {i}");
        for (how, vector) in [("alone", &alone.vectors[0]), ("in a batch", &together.vectors[i])] {
            let similarity = cosine(vector, &expected.vector);
            assert!(similarity >= 0.9999, "text {i} {how}: cosine {similarity} with the reference");
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "normalised as modules.json says: {norm}");
        }
    }
    assert_eq!(together.tokens, Some(reference.texts.iter().map(|t| t.tokens).sum()));
    assert_eq!(together.cut, 1, "the one text over 256 tokens");
}

#[tokio::test]
async fn a_text_over_the_token_limit_is_cut_and_counted_with_the_other_cuts() {
    let reference = reference();
    let long = reference.texts.iter().find(|t| t.cut).expect("a long text in the reference");
    let stats = EmbedStats::default();
    let outcomes = embed_each(&model(), &[long.text.as_str(), "cholesterol lowering tablet"], 4, &stats).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Vector(_))), "{outcomes:?}");
    assert_eq!(stats.texts_cut.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.tokens.load(std::sync::atomic::Ordering::Relaxed), 256 + 7, "tokens counted as fed to the model");
}

#[tokio::test]
async fn a_missing_model_directory_is_a_start_up_error_naming_the_path_and_the_install_command() {
    let config = EmbedConfig { model_path: Some("/nonexistent/minilm".into()), ..config() };
    let err = ModelEmbedder::from_config(&config).err().expect("refused").to_string();
    assert!(err.contains("/nonexistent/minilm") && err.contains("tests/env/testenv.sh model"), "{err}");
    let config = EmbedConfig { dimensions: 1024, ..self::config() };
    let err = ModelEmbedder::from_config(&config).err().expect("refused").to_string();
    assert!(err.contains("embed.dimensions") && err.contains("384"), "{err}");
}

//! `--model DIR`: the embedded model on this machine. Texts per second of
//! drug-like texts made from the sample data's catalogue, embedded in calls
//! of `batch_size` one after another (as the pipeline's calls go), and how
//! the texts' length in tokens weighs on it.

use std::path::Path;
use std::time::Instant;

use drugsync::config::{EmbedConfig, EmbedProvider};
use drugsync::embed::{Embedder, ModelEmbedder};
use drugsync::fixture::catalogue::{CLASSES, DOSE_FORMS, DRUGS, ROUTES};

use crate::support::BoxError;

/// The `[embed]` section of the demo's config (config/demo.toml), read from
/// it so the bench measures what the demo runs, with `dir` as the model.
pub fn embed_section(dir: &Path) -> Result<String, BoxError> {
    let demo: toml::Table = include_str!("../../config/demo.toml").parse()?;
    let mut embed = demo.get("embed").and_then(toml::Value::as_table).cloned().ok_or("config/demo.toml has no [embed]")?;
    embed.insert("model_path".into(), toml::Value::String(dir.display().to_string()));
    Ok(toml::to_string(&embed)?)
}

/// `texts` drug-like texts in the reference template's shape, each distinct.
fn texts(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let drug = &DRUGS[i % DRUGS.len()];
            let p = &drug.presentations[i % drug.presentations.len()];
            let amount = p.amounts[i % p.amounts.len()];
            let (_, short, form) = DOSE_FORMS[p.form];
            format!(
                "{} {amount} {} {short} | {}{} {amount} {} {form} {} | {} (lot {i})",
                drug.brand, p.unit, drug.stem, drug.salts[0], p.unit, ROUTES[p.route].2, CLASSES[drug.class]
            )
        })
        .collect()
}

/// Prints texts/s and tokens/s of the model at `dir`.
pub async fn speed(dir: &Path, count: usize) -> Result<(), BoxError> {
    let config: EmbedConfig = toml::from_str(&embed_section(dir)?)?;
    assert_eq!(config.provider, EmbedProvider::Model);
    let t = Instant::now();
    let model = ModelEmbedder::from_config(&config)?;
    println!("model: all-MiniLM-L6-v2 loaded from {} in {:.2}s", dir.display(), t.elapsed().as_secs_f64());
    let texts = texts(count);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let mut tokens = 0;
    for call in refs.chunks(model.max_batch()) {
        tokens += model.embed_batch(call).await?.tokens.unwrap_or(0);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "model: {count} drug texts ({:.0} tokens each on average) in {secs:.1}s = {:.0} texts/s, {:.0} tokens/s, calls of {}",
        tokens as f64 / count as f64,
        count as f64 / secs,
        tokens as f64 / secs,
        model.max_batch()
    );
    Ok(())
}

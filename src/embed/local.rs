//! The offline default embedder: hashed word and character-trigram features,
//! L2-normalised. Deterministic, free and fast, so the whole pipeline runs
//! without AWS. Texts that share words and spellings land close together,
//! which is enough for trying search locally; it is not a semantic model.

use sha2::{Digest, Sha256};

use super::{EmbedError, Embedded, Embedder};
use crate::document::EmbeddingSpace;

/// Model name recorded in text hashes; bump the suffix if the algorithm changes.
pub const LOCAL_MODEL: &str = "drugsync-local-ngram-v1";

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    space: EmbeddingSpace,
}

impl LocalEmbedder {
    /// An embedder producing unit vectors of `dimensions` elements.
    pub fn new(dimensions: usize, template_version: u32) -> Self {
        Self { space: EmbeddingSpace { model: LOCAL_MODEL.to_owned(), dimensions, normalize: true, template_version } }
    }

    /// The vector for `text`, computed synchronously.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let dims = self.space.dimensions;
        let mut v = vec![0f32; dims];
        let lower = text.to_lowercase();
        let mut add = |feature: &[u8], weight: f32| {
            let digest = Sha256::digest(feature);
            let bucket = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) as usize % dims;
            let sign = if digest[8] & 1 == 0 { 1.0 } else { -1.0 };
            v[bucket] += sign * weight;
        };
        for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            add(word.as_bytes(), 1.0);
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for tri in padded.windows(3) {
                add(tri.iter().collect::<String>().as_bytes(), 0.5);
            }
        }
        if v.iter().all(|x| *x == 0.0) {
            // An empty text still needs a valid unit vector: COSINE of a zero vector is undefined.
            v[0] = 1.0;
        } else {
            super::normalise(&mut v);
        }
        v
    }
}

impl Embedder for LocalEmbedder {
    fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    fn max_input_chars(&self) -> usize {
        crate::config::ModelFamily::Local.default_max_input_chars()
    }

    async fn embed_batch(&self, texts: &[&str]) -> Result<Embedded, EmbedError> {
        Ok(Embedded { vectors: texts.iter().map(|text| self.vector(text)).collect(), tokens: Some(0), cut: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_unit_vectors() {
        let e = LocalEmbedder::new(64, 1);
        let a = e.vector("LIPITOR 10 MG TABLET");
        assert_eq!(a, e.vector("LIPITOR 10 MG TABLET"));
        assert_eq!(a.len(), 64);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert!((cosine(&e.vector(""), &e.vector("")) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let e = LocalEmbedder::new(256, 1);
        let a = e.vector("atorvastatin calcium 10 mg tablet");
        let b = e.vector("atorvastatin calcium 20 mg tablet");
        let c = e.vector("amoxicillin oral suspension");
        assert!(cosine(&a, &b) > cosine(&a, &c));
    }
}

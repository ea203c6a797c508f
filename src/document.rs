//! Documents: what one drug looks like in the index, its embedding text and hashes.
//!
//! Two hashes decide all work downstream of the loader:
//! - the **text hash** covers model, dimensions, normalisation, template
//!   version and the normalised text; equal text hashes share one vector;
//! - the **document hash** covers every field plus the text hash; an equal
//!   document hash means Redis already holds exactly this document.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// Identity of a document: the value of the key field (the NDC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentKey(pub String);

impl fmt::Display for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hex SHA-256 of what was (or would be) embedded; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TextHash(pub String);

/// Hex of the first 16 bytes of SHA-256 over a document's fields and its
/// text hash: equal hashes, equal documents (see [`Document::build`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocHash(pub String);

/// What identifies a vector space: texts embedded under different settings
/// must never share a vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingSpace {
    /// Model id (`amazon.titan-embed-text-v2:0`, or `local-ngram-v1`).
    pub model: String,
    /// Vector length.
    pub dimensions: usize,
    /// Whether vectors are unit length.
    pub normalize: bool,
    /// Version of the text template.
    pub template_version: u32,
}

impl EmbeddingSpace {
    /// The hash of `text` (already normalised) in this space.
    pub fn text_hash(&self, normalised_text: &str) -> TextHash {
        let mut h = Sha256::new();
        for part in [
            self.model.as_bytes(),
            self.dimensions.to_string().as_bytes(),
            if self.normalize { b"norm" } else { b"raw" },
            self.template_version.to_string().as_bytes(),
            normalised_text.as_bytes(),
        ] {
            // Length-prefix every part so ("ab","c") and ("a","bc") differ.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        TextHash(hex::encode(h.finalize()))
    }
}

/// A fully built document, ready to be compared with Redis and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The NDC.
    pub key: DocumentKey,
    /// Field name -> value; empty string for SQL NULL.
    pub fields: BTreeMap<String, String>,
    /// Normalised embedding text.
    pub text: String,
    /// Hash of `text` in the configured embedding space.
    pub text_hash: TextHash,
    /// Hash of all fields and the text hash.
    pub doc_hash: DocHash,
}

impl Document {
    /// Builds a document from loaded fields: renders and normalises the text, computes both hashes.
    pub fn build(key: DocumentKey, fields: BTreeMap<String, String>, template: &TextTemplate, space: &EmbeddingSpace) -> Self {
        let text = normalise_text(&template.render(&fields));
        let text_hash = space.text_hash(&text);
        let mut h = Sha256::new();
        for (name, value) in &fields {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((value.len() as u64).to_le_bytes());
            h.update(value.as_bytes());
        }
        h.update(text_hash.0.as_bytes());
        let doc_hash = DocHash(hex::encode(&h.finalize()[..16]));
        Self { key, fields, text, text_hash, doc_hash }
    }
}

/// A change to apply to the index.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentChange {
    /// Write this document (create or replace), with its vector.
    Upsert {
        /// The document.
        doc: Document,
        /// Its vector, or `None` when Redis already holds the vector for this text hash.
        vector: Option<std::sync::Arc<Vec<f32>>>,
    },
    /// Remove the document (idempotent).
    Delete(DocumentKey),
    /// Leave the document as it is and record it in the quarantine with
    /// `reason`: it cannot be built or embedded for good, and replication
    /// goes on without it until a reconcile retries it.
    Quarantine {
        /// The document.
        key: DocumentKey,
        /// Why, for the operator.
        reason: String,
    },
    /// The document is in line again: take it out of the quarantine.
    Release(DocumentKey),
    /// Write this document's fields now, without a vector, and owe the
    /// vector: the embedding service could not answer, and freshness must
    /// not wait for it (see `sink::queues`). Whatever vector the key held
    /// goes, since it belongs to a text the document no longer has.
    Owe(Document),
}

/// Collapses runs of whitespace and trims, so formatting noise in the source
/// (CHAR padding, double spaces) never costs an embedding call.
pub fn normalise_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A parsed `{field}` template.
#[derive(Debug, Clone)]
pub struct TextTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone)]
enum TemplatePart {
    Literal(String),
    Field(String),
}

impl TextTemplate {
    /// Parses a template; errs on unbalanced braces or empty names.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unmatched '}}' at {:?}", &rest[open..]));
            }
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' at {:?}", &rest[open..]))? + open;
            let name = rest[open + 1..close].trim();
            if name.is_empty() || name.contains('{') {
                return Err(format!("bad placeholder {:?}", &rest[open..=close]));
            }
            parts.push(TemplatePart::Field(name.to_owned()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The placeholder names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Field(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Renders with `fields`; a missing field renders as empty.
    pub fn render(&self, fields: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Field(name) => out.push_str(fields.get(name).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

/// Placeholder names of a template, or why it does not parse (for config validation).
pub fn template_fields(template: &str) -> Result<Vec<String>, String> {
    Ok(TextTemplate::parse(template)?.fields().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> EmbeddingSpace {
        EmbeddingSpace { model: "m".into(), dimensions: 8, normalize: true, template_version: 1 }
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn template_renders_and_normalises() {
        let t = TextTemplate::parse("{a}  | {b} x").unwrap();
        let doc = Document::build(DocumentKey("1".into()), fields(&[("a", " LIPITOR 10 "), ("b", "")]), &t, &space());
        assert_eq!(doc.text, "LIPITOR 10 | x");
        assert_eq!(t.fields().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn template_rejects_bad_braces() {
        for bad in ["{a", "a}", "{}", "{ }", "{a{b}}"] {
            assert!(TextTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_hash_depends_on_every_part_of_the_space() {
        let base = space().text_hash("x");
        assert_eq!(base, space().text_hash("x"));
        assert_ne!(base, space().text_hash("y"));
        assert_ne!(base, EmbeddingSpace { model: "n".into(), ..space() }.text_hash("x"));
        assert_ne!(base, EmbeddingSpace { dimensions: 9, ..space() }.text_hash("x"));
        assert_ne!(base, EmbeddingSpace { normalize: false, ..space() }.text_hash("x"));
        assert_ne!(base, EmbeddingSpace { template_version: 2, ..space() }.text_hash("x"));
    }

    #[test]
    fn doc_hash_changes_with_non_text_fields_but_text_hash_does_not() {
        let t = TextTemplate::parse("{a}").unwrap();
        let one = Document::build(DocumentKey("1".into()), fields(&[("a", "x"), ("mfg", "ACME")]), &t, &space());
        let two = Document::build(DocumentKey("1".into()), fields(&[("a", "x"), ("mfg", "OTHER")]), &t, &space());
        assert_eq!(one.text_hash, two.text_hash);
        assert_ne!(one.doc_hash, two.doc_hash);
    }
}

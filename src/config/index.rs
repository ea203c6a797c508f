//! `[index]`: the vector index definition.

use serde::Deserialize;

use super::{Config, ConfigError, RESERVED_FIELDS, invalid, require_identifier};

/// How RediSearch searches the vector field.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum VectorAlgorithm {
    /// Approximate nearest neighbours in a graph: fast at FDB's size.
    #[default]
    Hnsw,
    /// Exact brute force: small indexes and tests.
    Flat,
}

impl VectorAlgorithm {
    /// The name `FT.CREATE` takes and `FT.INFO` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hnsw => "HNSW",
            Self::Flat => "FLAT",
        }
    }
}

/// The vector distance metric.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Distance {
    /// Cosine distance: what Titan's normalised vectors are made for.
    #[default]
    Cosine,
    /// Euclidean distance.
    L2,
    /// Inner product (equals cosine on unit vectors).
    Ip,
}

impl Distance {
    /// The name `FT.CREATE` takes and `FT.INFO` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "COSINE",
            Self::L2 => "L2",
            Self::Ip => "IP",
        }
    }
}

/// Kind of a non-vector index field.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum FieldKind {
    /// Exact-match filter field.
    Tag,
    /// Full-text field.
    Text,
    /// Numeric range field; empty values are left out of the hash, not indexed as errors.
    Numeric,
}

/// One non-vector field of the index; also one field of every document hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexField {
    /// Field name; must be a column alias of `mapping.select_sql`.
    pub name: String,
    /// Index type.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// TAG separator; `|` by default because class names contain commas.
    #[serde(default)]
    pub separator: Option<String>,
}

/// Vector index settings. A mismatch with an existing index is a start-up error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// Index name (`drugs_idx`).
    pub name: String,
    /// Key prefix of document hashes (`drug:`); the key is prefix + document key.
    pub prefix: String,
    /// Name of the vector field.
    #[serde(default = "default_vector_field")]
    pub vector_field: String,
    /// `HNSW` (default) or `FLAT`.
    #[serde(default)]
    pub algorithm: VectorAlgorithm,
    /// `COSINE` (default), `L2` or `IP`.
    #[serde(default)]
    pub distance: Distance,
    /// HNSW M (RediSearch default 16).
    #[serde(default = "default_m")]
    pub m: u32,
    /// HNSW EF_CONSTRUCTION (RediSearch default 200).
    #[serde(default = "default_ef_construction")]
    pub ef_construction: u32,
    /// Non-vector fields, in hash and index order.
    pub fields: Vec<IndexField>,
}

fn default_vector_field() -> String {
    "embedding".to_owned()
}
fn default_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    200
}

impl Config {
    pub(super) fn validate_index(&self) -> Result<(), ConfigError> {
        let i = &self.index;
        if i.name.is_empty() || i.name.contains(char::is_whitespace) {
            return Err(invalid("index.name", "must be a non-empty name without spaces"));
        }
        if i.prefix.is_empty() {
            return Err(invalid("index.prefix", "must not be empty (e.g. \"drug:\")"));
        }
        let (a, b) = (&i.prefix, &self.redis.state_prefix);
        if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
            return Err(invalid("redis.state_prefix", format!("{b:?} overlaps index.prefix {a:?}; drugsync's own keys would be indexed")));
        }
        if i.m == 0 || i.ef_construction == 0 {
            return Err(invalid("index.m", "m and ef_construction must be at least 1"));
        }
        if i.fields.is_empty() {
            return Err(invalid("index.fields", "must list the document fields"));
        }
        let mut seen = std::collections::HashSet::new();
        for (n, field) in i.fields.iter().enumerate() {
            let path = format!("index.fields[{n}].name");
            require_identifier(&path, &field.name)?;
            if !seen.insert(field.name.as_str()) {
                return Err(invalid(&path, format!("field {:?} is listed twice", field.name)));
            }
            if field.name == i.vector_field || RESERVED_FIELDS.contains(&field.name.as_str()) {
                return Err(invalid(&path, format!("{:?} is reserved for drugsync's own use", field.name)));
            }
            if let Some(sep) = &field.separator
                && (field.kind != FieldKind::Tag || sep.chars().count() != 1)
            {
                return Err(invalid(&format!("index.fields[{n}].separator"), "only TAG fields take a separator, of exactly one character"));
            }
        }
        if !seen.contains(self.mapping.key_field.as_str()) {
            return Err(invalid("mapping.key_field", format!("{:?} must also be one of index.fields", self.mapping.key_field)));
        }
        Ok(())
    }
}

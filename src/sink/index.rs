//! The index definition: `FT.CREATE` from config, and the check that an
//! existing index matches it (a mismatch is a start-up error, never a silent
//! drop).

use std::collections::BTreeMap;

use redis::Value;

use super::IndexDefinition;
use crate::config::FieldKind;

/// Everything about the index that must agree between config and server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// Index name.
    pub name: String,
    /// Key prefix of documents.
    pub prefix: String,
    /// Non-vector fields: name -> (type, TAG separator).
    pub fields: BTreeMap<String, (String, Option<String>)>,
    /// Vector field name.
    pub vector_field: String,
    /// HNSW or FLAT.
    pub algorithm: String,
    /// Vector length.
    pub dimensions: usize,
    /// COSINE, L2, IP.
    pub distance: String,
}

impl IndexSpec {
    /// The spec `definition` asks for, as index `name` over keys under `prefix`
    /// (its version's, see `IndexVersion`).
    pub fn of(definition: &IndexDefinition, name: &str, prefix: &str) -> Self {
        let i = &definition.index;
        Self {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            fields: i
                .fields
                .iter()
                .map(|f| {
                    let kind = match f.kind {
                        FieldKind::Tag => "TAG",
                        FieldKind::Text => "TEXT",
                        FieldKind::Numeric => "NUMERIC",
                    };
                    let separator = (f.kind == FieldKind::Tag).then(|| f.separator.clone().unwrap_or_else(|| ",".into()));
                    (f.name.clone(), (kind.to_owned(), separator))
                })
                .collect(),
            vector_field: i.vector_field.clone(),
            algorithm: i.algorithm.as_str().to_owned(),
            dimensions: definition.dimensions,
            distance: i.distance.as_str().to_owned(),
        }
    }

    /// `FT.CREATE` arguments (after the command name) for index `name` over keys under `prefix`.
    pub fn create_args(definition: &IndexDefinition, name: &str, prefix: &str) -> Vec<String> {
        let mut args = vec![name.to_owned(), "ON".into(), "HASH".into(), "PREFIX".into(), "1".into(), prefix.to_owned(), "SCHEMA".into()];
        args.extend(Self::schema_args(definition));
        args
    }

    /// The `SCHEMA ...` part of `FT.CREATE`, in config field order.
    pub fn schema_args(definition: &IndexDefinition) -> Vec<String> {
        let i = &definition.index;
        let mut args = Vec::new();
        for f in &i.fields {
            args.push(f.name.clone());
            match f.kind {
                FieldKind::Tag => {
                    args.extend(["TAG".into(), "SEPARATOR".into(), f.separator.clone().unwrap_or_else(|| ",".into())]);
                }
                FieldKind::Text => args.push("TEXT".into()),
                FieldKind::Numeric => args.push("NUMERIC".into()),
            }
        }
        let mut vector = vec![
            "TYPE".to_owned(),
            "FLOAT32".into(),
            "DIM".into(),
            definition.dimensions.to_string(),
            "DISTANCE_METRIC".into(),
            i.distance.as_str().to_owned(),
        ];
        if i.algorithm == crate::config::VectorAlgorithm::Hnsw {
            vector.extend(["M".into(), i.m.to_string(), "EF_CONSTRUCTION".into(), i.ef_construction.to_string()]);
        }
        args.extend([i.vector_field.clone(), "VECTOR".into(), i.algorithm.as_str().to_owned(), vector.len().to_string()]);
        args.extend(vector);
        args
    }

    /// Reads the spec of an existing index from an `FT.INFO` reply.
    pub fn from_ft_info(name: &str, info: &Value) -> Option<Self> {
        let top = pairs(info)?;
        let definition = pairs(top.get("index_definition")?)?;
        let prefix = match definition.get("prefixes")? {
            Value::Array(items) => items.first().and_then(text)?,
            _ => return None,
        };
        let mut spec = IndexSpec {
            name: name.to_owned(),
            prefix,
            fields: BTreeMap::new(),
            vector_field: String::new(),
            algorithm: String::new(),
            dimensions: 0,
            distance: String::new(),
        };
        let Value::Array(attributes) = top.get("attributes")? else { return None };
        for attribute in attributes {
            let a = pairs(attribute)?;
            let field = text(a.get("attribute")?)?;
            let kind = text(a.get("type")?)?;
            if kind == "VECTOR" {
                spec.vector_field = field;
                spec.algorithm = text(a.get("algorithm")?)?.to_ascii_uppercase();
                spec.dimensions = text(a.get("dim")?)?.parse().ok()?;
                spec.distance = text(a.get("distance_metric")?)?.to_ascii_uppercase();
            } else {
                let separator = a.get("SEPARATOR").and_then(|v| text(v));
                spec.fields.insert(field, (kind, separator));
            }
        }
        Some(spec)
    }

    /// Human-readable differences between `self` (config) and `existing` (server).
    pub fn differences(&self, existing: &IndexSpec) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, want: String, have: String| {
            if want != have {
                out.push(format!("{what}: config {want}, index {have}"));
            }
        };
        check("prefix", self.prefix.clone(), existing.prefix.clone());
        check("vector field", self.vector_field.clone(), existing.vector_field.clone());
        check("algorithm", self.algorithm.clone(), existing.algorithm.clone());
        check("dimensions", self.dimensions.to_string(), existing.dimensions.to_string());
        check("distance", self.distance.clone(), existing.distance.clone());
        for (name, want) in &self.fields {
            match existing.fields.get(name) {
                None => out.push(format!("field {name}: in config, not in index")),
                Some(have) if have != want => out.push(format!("field {name}: config {want:?}, index {have:?}")),
                Some(_) => {}
            }
        }
        for name in existing.fields.keys().filter(|n| !self.fields.contains_key(*n)) {
            out.push(format!("field {name}: in index, not in config"));
        }
        out
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::SimpleString(s) => Some(s.clone()),
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Every key prefix in an `FT.INFO` reply's index definition (empty when unreadable).
pub(super) fn prefixes_of(info: &Value) -> Vec<String> {
    let prefixes = pairs(info).and_then(|top| pairs(top.get("index_definition")?)?.get("prefixes").copied().cloned());
    match prefixes {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// An alternating key/value array (or a RESP3 map) as a map.
fn pairs(value: &Value) -> Option<BTreeMap<String, &Value>> {
    match value {
        Value::Array(items) => Some(items.chunks_exact(2).filter_map(|kv| Some((text(&kv[0])?, &kv[1]))).collect()),
        Value::Map(items) => Some(items.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect()),
        _ => None,
    }
}

/// A top-level text field of an FT.INFO reply.
pub(super) fn info_text(info: &Value, field: &str) -> Option<String> {
    let Value::Array(items) = info else { return None };
    items.chunks_exact(2).find_map(|kv| match (&kv[0], &kv[1]) {
        (Value::SimpleString(k) | Value::VerbatimString { text: k, .. }, v) if k == field => {
            redis::from_redis_value::<String>(v.clone()).ok()
        }
        (Value::BulkString(k), v) if k == field.as_bytes() => redis::from_redis_value::<String>(v.clone()).ok(),
        _ => None,
    })
}

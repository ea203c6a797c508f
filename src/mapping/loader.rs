//! Loading: document keys -> documents, re-read from the source's current state.
//!
//! A key that the query does not return (row gone, or no longer matching
//! `filter_sql`) has no document: the caller turns it into a delete.

use std::collections::{BTreeMap, BTreeSet};

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, Value};

use super::placeholders;
use crate::config::{IndexField, MappingConfig};
use crate::document::{Document, DocumentKey, EmbeddingSpace, TextTemplate};
use crate::mysql::SourceError;
use crate::mysql::deadline::within;
use crate::mysql::value::value_to_string;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DocumentLoader {
    select_sql: String,
    filter_sql: String,
    key_expr: String,
    key_field: String,
    fields: Vec<String>,
    /// The fields `index.fields` types NUMERIC: RediSearch indexes a hash
    /// only when each holds a number.
    numeric: Vec<String>,
    template: TextTemplate,
    space: EmbeddingSpace,
    chunk: usize,
    trim_trailing_spaces: bool,
    /// Longest wait for one query (`mysql.query_timeout_secs`).
    deadline: std::time::Duration,
}

impl DocumentLoader {
    /// A loader for `mapping`, building documents of the index `fields`,
    /// hashing texts in `space`, `chunk` keys per query, each query given
    /// `deadline` (`mysql.query_timeout_secs`).
    pub fn new(mapping: &MappingConfig, fields: &[IndexField], space: EmbeddingSpace, chunk: usize, deadline: std::time::Duration) -> Self {
        let m = mapping;
        Self {
            select_sql: m.select_sql.trim().to_owned(),
            filter_sql: m.filter_sql.clone(),
            key_expr: m.key_expr.clone(),
            key_field: m.key_field.clone(),
            fields: fields.iter().map(|f| f.name.clone()).collect(),
            numeric: fields.iter().filter(|f| f.kind == crate::config::FieldKind::Numeric).map(|f| f.name.clone()).collect(),
            // Validated in Config::validate.
            template: TextTemplate::parse(&m.text_template).expect("validated template"),
            space,
            chunk,
            trim_trailing_spaces: m.trim_trailing_spaces,
            deadline,
        }
    }

    /// Why RediSearch would not index `doc`, or `None` when it would. A
    /// NUMERIC field must hold a finite decimal number (or be empty: empty
    /// fields are left out of the hash). RediSearch fails the whole hash
    /// otherwise ("N/A", "12 ", "1,5"), silently: the document would be in
    /// Redis and in no search. Stricter than RediSearch in one way: it also
    /// takes hexadecimal and "inf", which FDB's numbers never are.
    pub fn unindexable(&self, doc: &Document) -> Option<String> {
        self.numeric.iter().find_map(|name| {
            let value = doc.fields.get(name).map(String::as_str).unwrap_or("");
            let number = value.parse::<f64>().ok().filter(|n| n.is_finite());
            (!value.is_empty() && number.is_none()).then(|| {
                format!(
                    "field {name} is NUMERIC in index.fields but the source value {value:?} is not a number, so RediSearch cannot index the document; fix the source value or the mapping's SQL for it, or type the field TAG or TEXT"
                )
            })
        })
    }

    /// The embedding space texts are hashed in.
    pub fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    /// Loads the documents for `keys` (any number; queried in chunks).
    /// Keys without a document are simply absent from the result.
    pub async fn load<Q: Queryable>(&self, conn: &mut Q, keys: &[DocumentKey]) -> Result<BTreeMap<DocumentKey, Document>, SourceError> {
        let mut docs = BTreeMap::new();
        for chunk in keys.chunks(self.chunk) {
            let query = format!("{} WHERE ({}) AND {} IN ({})", self.select_sql, self.filter_sql, self.key_expr, placeholders(chunk.len()));
            let params: Vec<Value> = chunk.iter().map(|k| Value::Bytes(k.0.clone().into_bytes())).collect();
            let read = async { conn.exec(&query, Params::Positional(params)).await.map_err(|e| SourceError::from_driver(e, &query)) };
            let rows: Vec<Row> = within(self.deadline, "loading documents", read).await?;
            for row in rows {
                let doc = self.document(row, &query)?;
                docs.insert(doc.key.clone(), doc);
            }
        }
        Ok(docs)
    }

    /// Which of `keys` have a document now: the keys [`Self::load`] would
    /// return, without reading their fields or building documents (the
    /// orphan sweeps ask this of every key Redis holds).
    pub async fn existing<Q: Queryable>(&self, conn: &mut Q, keys: &[DocumentKey]) -> Result<BTreeSet<DocumentKey>, SourceError> {
        let mut found = BTreeSet::new();
        for chunk in keys.chunks(self.chunk) {
            // The key as the documents' own column (`key_field`, a validated identifier), so it reads as `load` reads it.
            let query = format!(
                "SELECT documents.`{}` FROM ({} WHERE ({}) AND {} IN ({})) AS documents",
                self.key_field,
                self.select_sql,
                self.filter_sql,
                self.key_expr,
                placeholders(chunk.len())
            );
            let params: Vec<Value> = chunk.iter().map(|k| Value::Bytes(k.0.clone().into_bytes())).collect();
            let read = async { conn.exec(&query, Params::Positional(params)).await.map_err(|e| SourceError::from_driver(e, &query)) };
            let rows: Vec<Row> = within(self.deadline, "looking documents up", read).await?;
            for mut row in rows {
                let value: Value = row.take(0).unwrap_or(Value::NULL);
                found.insert(DocumentKey(value_to_string(&value)));
            }
        }
        Ok(found)
    }

    /// How many documents the source has (rows of `select_sql` meeting `filter_sql`).
    pub async fn count<Q: Queryable>(&self, conn: &mut Q) -> Result<u64, SourceError> {
        let query = format!("SELECT COUNT(*) FROM ({} WHERE {}) AS documents", self.select_sql, self.filter_sql);
        let read = async { conn.query_first(&query).await.map_err(|e| SourceError::from_driver(e, &query)) };
        Ok(within(self.deadline, "counting documents", read).await?.unwrap_or(0))
    }

    /// One page of all documents in key order, after `after` (exclusive).
    /// Used by the initial load inside a consistent-snapshot transaction.
    pub async fn page<Q: Queryable>(&self, conn: &mut Q, after: Option<&DocumentKey>, limit: usize) -> Result<Vec<Document>, SourceError> {
        let (condition, params) = match after {
            Some(key) => (format!(" AND {} > ?", self.key_expr), vec![Value::Bytes(key.0.clone().into_bytes())]),
            None => (String::new(), vec![]),
        };
        let query = format!("{} WHERE ({}){} ORDER BY {} LIMIT {}", self.select_sql, self.filter_sql, condition, self.key_expr, limit);
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let read = async { conn.exec(&query, params).await.map_err(|e| SourceError::from_driver(e, &query)) };
        let rows: Vec<Row> = within(self.deadline, "reading a page of documents", read).await?;
        rows.into_iter().map(|row| self.document(row, &query)).collect()
    }

    fn document(&self, mut row: Row, query: &str) -> Result<Document, SourceError> {
        let names: Vec<String> = row.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let value: Value = row.take(i).unwrap_or(Value::NULL);
            by_name.insert(name.to_ascii_lowercase(), value_to_string(&value));
        }
        let mut fields = BTreeMap::new();
        for field in &self.fields {
            let mut value = by_name.remove(&field.to_ascii_lowercase()).ok_or_else(|| SourceError::Query {
                message: format!("mapping.select_sql returns no column aliased `{field}` (an index field)"),
                query: crate::mysql::error::truncate(query, 200),
            })?;
            if self.trim_trailing_spaces && *field != self.key_field {
                value.truncate(value.trim_end_matches(' ').len());
            }
            fields.insert(field.clone(), value);
        }
        let key = DocumentKey(fields[&self.key_field].clone());
        Ok(Document::build(key, fields, &self.template, &self.space))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::DocumentLoader;
    use crate::config::Config;
    use crate::document::{Document, DocumentKey, EmbeddingSpace, TextTemplate};

    fn loader() -> DocumentLoader {
        let config = Config::from_toml(include_str!("../../config/drugsync.toml"), Path::new("drugsync.toml"), |_| None).unwrap();
        let space = EmbeddingSpace { model: "local-ngram-v1".into(), dimensions: 8, normalize: true, template_version: 1 };
        DocumentLoader::new(&config.mapping, &config.index.fields, space, config.pipeline.load_chunk, std::time::Duration::from_secs(30))
    }

    fn doc_with_gcn(loader: &DocumentLoader, gcn: &str) -> Document {
        let fields = BTreeMap::from([("ndc".to_owned(), "00001".to_owned()), ("gcn_seqno".to_owned(), gcn.to_owned())]);
        Document::build(DocumentKey("00001".into()), fields, &TextTemplate::parse("{ndc}").unwrap(), loader.space())
    }

    #[test]
    fn a_numeric_field_must_hold_what_redisearch_indexes() {
        let loader = loader();
        // What RediSearch 2.10 indexes in a NUMERIC field (tried against it), and empty (left out of the hash).
        for fine in ["12", "+12", "-0", "1e3", ".5", "5.", ""] {
            assert_eq!(loader.unindexable(&doc_with_gcn(&loader, fine)), None, "{fine:?}");
        }
        // What it fails the whole hash on.
        for bad in ["N/A", " 12", "12 ", "1,5", "1.5.2", "nan", "1e400"] {
            let reason = loader.unindexable(&doc_with_gcn(&loader, bad)).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(reason.contains("gcn_seqno") && reason.contains("NUMERIC") && reason.contains(&format!("{bad:?}")), "{reason}");
        }
    }

    #[test]
    fn text_and_tag_fields_take_any_value() {
        let loader = loader();
        let fields = BTreeMap::from([("drug_name".to_owned(), "N/A".to_owned()), ("route".to_owned(), " 12".to_owned())]);
        let doc = Document::build(DocumentKey("1".into()), fields, &TextTemplate::parse("{drug_name}").unwrap(), loader.space());
        assert_eq!(loader.unindexable(&doc), None);
    }
}

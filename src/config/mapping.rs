//! `[mapping]`: which tables feed a document, and how.

use serde::Deserialize;

use super::{Config, ConfigError, invalid, require_identifier};

/// How source tables map to documents. Someone with another FDB subset edits this.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Output column (and hash field) that identifies a document (`ndc`).
    pub key_field: String,
    /// SQL expression of the key in `select_sql` (`n.NDC`), used for `IN (...)` and paging.
    pub key_expr: String,
    /// `SELECT <field aliases> FROM <root> JOIN ...` without WHERE; one row per document.
    pub select_sql: String,
    /// SQL condition a row must meet to be a document (`n.OBSDTEC = '0000-00-00'`).
    pub filter_sql: String,
    /// Text sent to the embedder, with `{field}` placeholders.
    pub text_template: String,
    /// Source tables whose row changes affect documents.
    pub tables: Vec<TableRule>,
    /// Cut trailing spaces from field values (FDB pads fixed-width text,
    /// e.g. manufacturer `"IVORY DRUG CO LTD "`). The key field is never cut:
    /// it must equal the key the binlog routes to.
    #[serde(default = "default_trim_trailing_spaces")]
    pub trim_trailing_spaces: bool,
}

fn default_trim_trailing_spaces() -> bool {
    true
}

/// Fan-out from one source table to the document keys it affects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRule {
    /// Table name in `mysql.schema`.
    pub table: String,
    /// Column whose before- and after-image values identify affected documents.
    pub column: String,
    /// Query returning document keys for a set of `column` values, with
    /// `{values}` where the placeholders go. Absent: the values are the keys.
    #[serde(default)]
    pub keys_sql: Option<String>,
}

impl Config {
    pub(super) fn validate_mapping(&self) -> Result<(), ConfigError> {
        let m = &self.mapping;
        if m.key_expr.trim().is_empty() {
            return Err(invalid("mapping.key_expr", "must be the SQL expression of the key, e.g. n.NDC"));
        }
        if !m.select_sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            return Err(invalid("mapping.select_sql", "must be a SELECT statement"));
        }
        if m.filter_sql.trim().is_empty() {
            return Err(invalid("mapping.filter_sql", "must be a SQL condition (use 1=1 for all rows)"));
        }
        let placeholders = crate::document::template_fields(&m.text_template).map_err(|reason| invalid("mapping.text_template", reason))?;
        for name in placeholders {
            if !self.index.fields.iter().any(|f| f.name == name) {
                return Err(invalid("mapping.text_template", format!("placeholder {{{name}}} is not one of index.fields")));
            }
        }
        if m.tables.is_empty() {
            return Err(invalid("mapping.tables", "must list at least the root table"));
        }
        for (n, rule) in m.tables.iter().enumerate() {
            require_identifier(&format!("mapping.tables[{n}].table"), &rule.table)?;
            require_identifier(&format!("mapping.tables[{n}].column"), &rule.column)?;
            if let Some(sql) = &rule.keys_sql
                && sql.matches("{values}").count() != 1
            {
                return Err(invalid(&format!("mapping.tables[{n}].keys_sql"), "must contain {values} exactly once"));
            }
        }
        Ok(())
    }
}

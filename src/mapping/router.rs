//! Routing: row changes -> the set of document keys to rebuild.
//!
//! For each tracked table the config names one column; the before and after
//! values of that column across a whole batch are collected (deduplicated),
//! then turned into keys: directly for the root table, through `keys_sql`
//! against the *current* source state for child tables. Reading current state
//! is correct because documents are rebuilt from current state too: a
//! document that no longer reaches a changed row through the join graph no
//! longer depends on it, and the change that cut the path is routed itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value};

use super::placeholders;
use crate::config::TableRule;
use crate::document::DocumentKey;
use crate::source::value::value_to_string;
use crate::source::{RowChange, SourceError};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Router {
    /// Lower-cased table name -> its rule.
    rules: HashMap<String, TableRule>,
    chunk: usize,
}

/// Deduplicated column values per table, gathered over a batch.
#[derive(Debug, Default)]
pub struct AffectedValues {
    by_table: BTreeMap<String, BTreeMap<String, Value>>,
}

impl AffectedValues {
    /// True when no tracked row changed.
    pub fn is_empty(&self) -> bool {
        self.by_table.is_empty()
    }
}

impl Router {
    /// A router for `rules`; key lookups use at most `chunk` values per query.
    pub fn new(rules: &[TableRule], chunk: usize) -> Self {
        Self { rules: rules.iter().map(|r| (r.table.to_ascii_lowercase(), r.clone())).collect(), chunk }
    }

    /// Lower-cased names of all tracked tables.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }

    /// Collects the routing column's before/after values of every change; NULLs affect nothing.
    pub fn collect<'a>(&self, changes: impl IntoIterator<Item = &'a RowChange>, into: &mut AffectedValues) {
        for change in changes {
            let Some(rule) = self.rules.get(&*change.table) else { continue };
            let slot = into.by_table.entry(rule.table.to_ascii_lowercase()).or_default();
            for value in change.values_of(&rule.column) {
                if *value != Value::NULL {
                    slot.entry(value_to_string(value)).or_insert_with(|| value.clone());
                }
            }
        }
    }

    /// Resolves collected values to the distinct document keys, in key order.
    pub async fn resolve<Q: Queryable>(&self, conn: &mut Q, affected: &AffectedValues) -> Result<BTreeSet<DocumentKey>, SourceError> {
        let mut keys = BTreeSet::new();
        for (table, values) in &affected.by_table {
            let rule = &self.rules[table];
            match &rule.keys_sql {
                None => keys.extend(values.keys().map(|k| DocumentKey(k.clone()))),
                Some(sql) => {
                    let values: Vec<Value> = values.values().cloned().collect();
                    for chunk in values.chunks(self.chunk) {
                        let query = sql.replace("{values}", &placeholders(chunk.len()));
                        let found: Vec<Value> =
                            conn.exec(&query, Params::Positional(chunk.to_vec())).await.map_err(|e| SourceError::from_driver(e, &query))?;
                        keys.extend(found.iter().map(|v| DocumentKey(value_to_string(v))));
                    }
                }
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rule(table: &str, column: &str, sql: Option<&str>) -> TableRule {
        TableRule { table: table.into(), column: column.into(), keys_sql: sql.map(Into::into) }
    }

    fn change(table: &str, before: Option<(&str, Value)>, after: Option<(&str, Value)>) -> RowChange {
        RowChange {
            table: Arc::from(table),
            before: before.map(|(c, v)| vec![(c.to_string(), v)]),
            after: after.map(|(c, v)| vec![(c.to_string(), v)]),
        }
    }

    #[test]
    fn collects_before_and_after_values_once_each() {
        let router = Router::new(&[rule("rndc14", "NDC", None), rule("rgcnseq4", "GCN_SEQNO", Some("x {values}"))], 100);
        let mut affected = AffectedValues::default();
        let changes = [
            change("rgcnseq4", Some(("GCN_SEQNO", Value::Int(1))), Some(("GCN_SEQNO", Value::Int(2)))),
            change("rgcnseq4", None, Some(("GCN_SEQNO", Value::Int(2)))),
            change("rgcnseq4", None, Some(("GCN_SEQNO", Value::NULL))),
            change("rndc14", Some(("NDC", Value::Bytes(b"1".to_vec()))), None),
            change("untracked", None, Some(("X", Value::Int(9)))),
        ];
        router.collect(&changes, &mut affected);
        assert_eq!(affected.by_table["rgcnseq4"].keys().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(affected.by_table["rndc14"].keys().collect::<Vec<_>>(), ["1"]);
        assert_eq!(affected.by_table.len(), 2);
    }
}

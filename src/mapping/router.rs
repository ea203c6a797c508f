//! Routing: row changes -> the set of document keys to rebuild.
//!
//! For each tracked table the config names one column; the before and after
//! values of that column across a whole batch are collected (deduplicated),
//! then turned into keys: directly for the root table, through `keys_sql`
//! against the *current* source state for child tables. Reading current state
//! is correct because documents are rebuilt from current state too: a
//! document that no longer reaches a changed row through the join graph no
//! longer depends on it, and the change that cut the path is routed itself.

use std::collections::{BTreeSet, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value};

use super::placeholders;
use crate::cdc::{DecodeSpec, RoutingValues};
use crate::config::TableRule;
use crate::document::DocumentKey;
use crate::mysql::SourceError;
use crate::mysql::deadline::within;
use crate::mysql::value::value_to_string;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Router {
    /// Lower-cased table name -> its rule.
    rules: HashMap<String, TableRule>,
    chunk: usize,
    deadline: std::time::Duration,
}

/// The documents a batch must rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// These keys, in key order.
    Keys(BTreeSet<DocumentKey>),
    /// More than the caller's limit: rebuild by a full diff of the index.
    Everything,
}

impl Router {
    /// A router for `rules`; key lookups use at most `chunk` values per
    /// query, and wait at most `deadline` for each.
    pub fn new(rules: &[TableRule], chunk: usize, deadline: std::time::Duration) -> Self {
        Self { rules: rules.iter().map(|r| (r.table.to_ascii_lowercase(), r.clone())).collect(), chunk, deadline }
    }

    /// What the binlog decoder must keep of each row: the routing column of
    /// every tracked table of `schema`, at most `limit` distinct values per transaction.
    pub fn decode_spec(&self, schema: &str, limit: usize) -> DecodeSpec {
        DecodeSpec {
            schema: schema.to_owned(),
            routes: self.rules.iter().map(|(table, rule)| (table.clone(), rule.column.clone())).collect(),
            limit,
            canary: None,
        }
    }

    /// Resolves routing values to the distinct document keys, or to
    /// [`Routed::Everything`] once there are more than `limit` keys (the
    /// keys found so far are dropped, so memory stays bounded by `limit`).
    pub async fn resolve<Q: Queryable>(&self, conn: &mut Q, routing: &RoutingValues, limit: usize) -> Result<Routed, SourceError> {
        if routing.is_everything() {
            return Ok(Routed::Everything);
        }
        let mut keys = BTreeSet::new();
        for (table, values) in routing.tables() {
            let Some(rule) = self.rules.get(table) else { continue };
            match &rule.keys_sql {
                None => keys.extend(values.iter().map(|k| DocumentKey(k.clone()))),
                Some(sql) => {
                    let values: Vec<&String> = values.iter().collect();
                    for chunk in values.chunks(self.chunk) {
                        let query = sql.replace("{values}", &placeholders(chunk.len()));
                        // Values travel as text: the server converts them to the
                        // column's type and charset, as it does for the loader's keys.
                        let params = chunk.iter().map(|v| Value::Bytes(v.as_bytes().to_vec())).collect();
                        let read =
                            async { conn.exec(&query, Params::Positional(params)).await.map_err(|e| SourceError::from_driver(e, &query)) };
                        let found: Vec<Value> = within(self.deadline, "looking up the documents a change touches", read).await?;
                        keys.extend(found.iter().map(|v| DocumentKey(value_to_string(v))));
                        if past_limit(&keys, limit) {
                            return Ok(Routed::Everything);
                        }
                    }
                }
            }
            if past_limit(&keys, limit) {
                return Ok(Routed::Everything);
            }
        }
        Ok(Routed::Keys(keys))
    }
}

/// Whether `keys` are more than a batch may name (`pipeline.max_batch_keys`):
/// the batch then stands for everything. Exactly `limit` keys still go key by key.
fn past_limit(keys: &BTreeSet<DocumentKey>, limit: usize) -> bool {
    keys.len() > limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_exactly_the_limit_goes_key_by_key_and_one_more_does_not() {
        let keys = |n: usize| (0..n).map(|i| DocumentKey(format!("{i:011}"))).collect::<BTreeSet<_>>();
        assert!(!past_limit(&keys(0), 3));
        assert!(!past_limit(&keys(3), 3));
        assert!(past_limit(&keys(4), 3));
        assert!(past_limit(&keys(9), 3));
    }

    fn rule(table: &str, column: &str, sql: Option<&str>) -> TableRule {
        TableRule { table: table.into(), column: column.into(), keys_sql: sql.map(Into::into) }
    }

    #[test]
    fn decode_spec_names_each_tables_routing_column() {
        let router = Router::new(
            &[rule("RNDC14", "NDC", None), rule("rgcnseq4", "GCN_SEQNO", Some("x {values}"))],
            100,
            std::time::Duration::from_secs(1),
        );
        let spec = router.decode_spec("fdb", 7);
        assert_eq!(spec.routes["rndc14"], "NDC");
        assert_eq!(spec.routes["rgcnseq4"], "GCN_SEQNO");
        assert_eq!((spec.schema.as_str(), spec.limit), ("fdb", 7));
    }
}

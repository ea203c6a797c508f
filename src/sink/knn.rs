//! Reading the live index the way a search does: which index version the
//! alias serves, and a KNN query with an optional RediSearch filter.

use std::collections::BTreeMap;

use redis::Value;

use super::index::IndexSpec;
use super::index::info_text;
use super::{IndexAdmin, RedisSink, SinkError};

/// The index version behind the alias, as `FT.INFO` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveIndex {
    /// The index the alias points at.
    pub name: String,
    /// Its vector field's dimensions.
    pub dimensions: usize,
}

/// One document a KNN query returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    /// The Redis key.
    pub key: String,
    /// Its distance to the query in the index's metric (lower is nearer).
    pub distance: f64,
    /// The fields asked for that the document has.
    pub fields: BTreeMap<String, String>,
}

/// The name the distance is returned under (not a document field).
const DISTANCE: &str = "__knn_distance";

impl RedisSink {
    /// The index the alias serves now (`None`: nothing answers behind it).
    pub async fn live_index(&self) -> Result<Option<LiveIndex>, SinkError> {
        // FT.INFO on an alias describes the index it points at.
        let alias = &self.version().alias;
        let Some(info) = self.index_info(alias).await? else { return Ok(None) };
        let name = info_text(&info, "index_name").unwrap_or_else(|| alias.clone());
        let dimensions = IndexSpec::from_ft_info(&name, &info).map_or(0, |spec| spec.dimensions);
        Ok(Some(LiveIndex { name, dimensions }))
    }

    /// The `k` documents of the alias's index nearest to `vector`, nearest
    /// first, among those matching `filter` (RediSearch query syntax; `None`:
    /// all), with `fields`. A filter RediSearch cannot parse comes back as
    /// [`SinkError::Command`] carrying its message. `ef_runtime` is HNSW's
    /// candidate list for this query (the index's own default when `None`).
    pub async fn nearest(
        &self,
        vector: &[f32],
        k: usize,
        ef_runtime: Option<usize>,
        filter: Option<&str>,
        fields: &[String],
    ) -> Result<Vec<Neighbour>, SinkError> {
        let blob = crate::embed::vector_to_bytes(vector);
        let prefilter = filter.map_or_else(|| "*".to_owned(), |f| format!("({f})"));
        let ef = ef_runtime.map_or_else(String::new, |ef| format!(" EF_RUNTIME {ef}"));
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(&self.version().alias)
            .arg(format!("{prefilter}=>[KNN {k} @{} $vector{ef} AS {DISTANCE}]", self.vector_field))
            .arg("PARAMS")
            .arg(2)
            .arg("vector")
            .arg(blob)
            .arg("RETURN")
            .arg(fields.len() + 1)
            .arg(DISTANCE)
            .arg(fields)
            .arg("SORTBY")
            .arg(DISTANCE)
            .arg("ASC")
            .arg("LIMIT")
            .arg(0)
            .arg(k)
            .arg("DIALECT")
            .arg(2);
        let mut conn = self.conn.clone();
        let reply: Value = cmd.query_async(&mut conn).await.map_err(|e| match e.kind() {
            redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => {
                SinkError::Command { message: e.to_string(), hint: "check the filter's RediSearch query syntax and field names" }
            }
            _ => SinkError::from(e),
        })?;
        parse_reply(reply)
    }
}

/// `[total, key, [field, value, ...], ...]` into neighbours.
fn parse_reply(reply: Value) -> Result<Vec<Neighbour>, SinkError> {
    let malformed = |what: &str| SinkError::Unavailable(format!("FT.SEARCH answered an unexpected {what}"));
    let Value::Array(items) = reply else { return Err(malformed("reply")) };
    let mut neighbours = Vec::new();
    for pair in items.get(1..).unwrap_or_default().chunks(2) {
        let [key, values] = pair else { return Err(malformed("pair")) };
        let key: String = redis::from_redis_value(key.clone()).map_err(|_| malformed("key"))?;
        let values: Vec<String> = redis::from_redis_value(values.clone()).map_err(|_| malformed("field list"))?;
        let mut fields: BTreeMap<String, String> = values.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
        let distance = fields.remove(DISTANCE).and_then(|d| d.parse().ok()).ok_or_else(|| malformed("distance"))?;
        neighbours.push(Neighbour { key, distance, fields });
    }
    Ok(neighbours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_becomes_neighbours_with_their_distance_apart_from_their_fields() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Int(2),
            bulk("drug:1"),
            Value::Array(vec![bulk(DISTANCE), bulk("0.25"), bulk("drug_name"), bulk("ATORVASTATIN")]),
            bulk("drug:2"),
            Value::Array(vec![bulk(DISTANCE), bulk("0.5")]),
        ]);
        let got = parse_reply(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].key.as_str(), got[0].distance), ("drug:1", 0.25));
        assert_eq!(got[0].fields.get("drug_name").map(String::as_str), Some("ATORVASTATIN"));
        assert!(got[1].fields.is_empty());
        assert!(parse_reply(Value::Int(0)).is_err());
    }
}

//! One document as Redis holds it, for `drugsync search --ndc`: its hash,
//! whether the index answers for it, and its quarantine and owed state.

use std::collections::BTreeMap;

use redis::AsyncCommands;

use super::{Documents, RedisSink, SinkError};
use crate::document::DocumentKey;

/// What Redis holds for one document key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Held {
    /// Its hash's fields, the vector field apart (empty: no hash).
    pub fields: BTreeMap<String, String>,
    /// The vector field, as bytes (`None`: no vector, e.g. owed).
    pub vector: Option<Vec<u8>>,
    /// The index answers for the key (RediSearch indexed it).
    pub indexed: bool,
    /// Its quarantine entry (JSON: reason, since, position), if quarantined.
    pub quarantine: Option<String>,
    /// Unix seconds since its vector has been owed, if it is.
    pub owed_since: Option<u64>,
}

impl RedisSink {
    /// Everything Redis holds about `key` in this index version.
    pub async fn held(&self, key: &DocumentKey) -> Result<Held, SinkError> {
        let mut conn = self.conn.clone();
        let redis_key = self.key_of(key);
        let hash: Vec<(String, Vec<u8>)> = conn.hgetall(&redis_key).await?;
        let mut held = Held::default();
        for (field, value) in hash {
            if field == self.vector_field {
                held.vector = Some(value);
            } else {
                held.fields.insert(field, String::from_utf8_lossy(&value).into_owned());
            }
        }
        // INKEYS limits the search to this key: a hit means the index holds it.
        let found: Vec<redis::Value> = redis::cmd("FT.SEARCH")
            .arg(&self.version.index)
            .arg("*")
            .arg("INKEYS")
            .arg(1)
            .arg(&redis_key)
            .arg("NOCONTENT")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut conn)
            .await?;
        held.indexed = matches!(found.first(), Some(redis::Value::Int(n)) if *n > 0);
        held.quarantine = conn.hget(&self.keys.quarantine, &key.0).await?;
        let owed: Option<f64> = conn.zscore(&self.keys.pending, &key.0).await?;
        held.owed_since = owed.map(|since| since as u64);
        Ok(held)
    }
}

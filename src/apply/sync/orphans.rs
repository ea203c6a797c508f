//! Orphans: documents under the index prefix that the source does not have
//! (any more). Found a SCAN page at a time against *current* source state,
//! so what is held is one page, whatever the size of the index.

use mysql_async::prelude::Queryable;

use crate::apply::RunError;
use crate::apply::sync::Syncer;
use crate::document::DocumentKey;
use crate::error::Classify;
use crate::sink::DocumentSink;

/// A scan of the index's keys for orphans; see the module docs.
#[derive(Debug, Default)]
pub struct OrphanScan {
    cursor: u64,
    done: bool,
}

impl OrphanScan {
    /// The next page's orphans (often none), or `None` once every key has
    /// been seen. A key the source refuses to look up for good (one no
    /// key column can even be compared with) cannot be any row's, so it is
    /// an orphan too. A key Redis no longer holds by the time it is checked
    /// (SCAN can return a key twice) is not reported.
    pub async fn next<S: DocumentSink, Q: Queryable>(&mut self, s: &Syncer<S>, conn: &mut Q) -> Result<Option<Vec<DocumentKey>>, RunError> {
        if self.done {
            return Ok(None);
        }
        let (next, mut keys) = s.sink.document_keys_page(self.cursor).await?;
        (self.cursor, self.done) = (next, next == 0);
        keys.sort();
        keys.dedup();
        let present = match s.loader.existing(conn, &keys).await {
            Ok(present) => present,
            Err(e) if e.is_transient() => return Err(e.into()),
            // Some key the source cannot even compare: the others are found the way a load finds them.
            Err(_) => {
                let (docs, refused) = s.load_or_quarantine(conn, &keys).await?;
                for (key, reason) in refused {
                    tracing::warn!(key = %s.sink.key_of(&key), %reason, "a key under the index prefix that no source row can have: an orphan");
                }
                docs.into_keys().collect()
            }
        };
        let candidates: Vec<DocumentKey> = keys.into_iter().filter(|k| !present.contains(k)).collect();
        let held = s.sink.read_state(&candidates).await?;
        Ok(Some(candidates.into_iter().zip(held).filter_map(|(k, state)| state.map(|_| k)).collect()))
    }
}

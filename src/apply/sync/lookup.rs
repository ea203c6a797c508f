//! Loading the documents of a set of keys, telling the keys the source
//! refuses to look up for good (quarantined) from an error that is the
//! mapping's (the writer stops) or a passing one (retried). Behind a small
//! trait, so the order of tries is unit-tested with a scripted lookup.

use std::collections::BTreeMap;
use std::future::Future;

use mysql_async::prelude::Queryable;

use crate::apply::RunError;
use crate::document::{Document, DocumentKey};
use crate::error::Classify;
use crate::mapping::DocumentLoader;
use crate::mysql::SourceError;

/// Looking documents up by key: the source's (`DocumentLoader` over a MySQL
/// connection) or, in unit tests, a scripted one.
pub(crate) trait KeyLookup {
    /// The documents of `keys` that exist (see `DocumentLoader::load`).
    fn load(&mut self, keys: &[DocumentKey]) -> impl Future<Output = Result<BTreeMap<DocumentKey, Document>, SourceError>> + Send;
}

/// The source's lookup on one connection.
pub(super) struct SourceLookup<'a, Q> {
    pub(super) loader: &'a DocumentLoader,
    pub(super) conn: &'a mut Q,
}

impl<Q: Queryable> KeyLookup for SourceLookup<'_, Q> {
    fn load(&mut self, keys: &[DocumentKey]) -> impl Future<Output = Result<BTreeMap<DocumentKey, Document>, SourceError>> + Send {
        self.loader.load(self.conn, keys)
    }
}

/// The documents and the refused keys of `keys` (see [`load_or_quarantine`]).
/// A transient error is returned, never taken for a refusal: a key is
/// quarantined only for a definite one.
pub(crate) async fn sort_out<L: KeyLookup>(
    keys: &[DocumentKey],
    lookup: &mut L,
) -> Result<(BTreeMap<DocumentKey, Document>, BTreeMap<DocumentKey, String>), RunError> {
    let error = match lookup.load(keys).await {
        Ok(docs) => return Ok((docs, BTreeMap::new())),
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => e,
    };
    // The probe: a plain ASCII key no row has. Its failure is the mapping's.
    if lookup.load(&[DocumentKey("0".into())]).await.is_err() {
        return Err(error.into());
    }
    let (mut docs, mut poisoned) = (BTreeMap::new(), BTreeMap::new());
    for key in keys {
        match lookup.load(std::slice::from_ref(key)).await {
            Ok(found) => docs.extend(found),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                poisoned.insert(key.clone(), format!("the source refuses to look this key up: {e}"));
            }
        }
    }
    Ok((docs, poisoned))
}

//! The documents role: what syncing a set of documents reads and writes,
//! and the one write that also stores a batch's position.
//!
//! In Redis: one HASH per document under the version's key prefix, written
//! with the vector cache and the work queues in one atomic write (`ops.rs`
//! builds it, `fence.rs` runs it). All changes of one call (and the position,
//! when one is given) go in one MULTI/EXEC or fenced script: either all of
//! them are visible or none. Upserts replace every configured field (empty
//! values are removed, so NUMERIC fields never hold `""`); deletes of absent
//! keys are no-ops. Applying the same changes twice therefore leaves the
//! same state as applying them once.

use std::future::Future;

use redis::{AsyncCommands, Value};

use super::redis::{escape_glob, unexpected_reply};
use super::{RedisSink, SinkError};
use crate::document::{DocHash, DocumentChange, DocumentKey, TextHash};
use crate::position::Position;

/// What the sink holds for one document key, enough to decide whether to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// Document hash of the stored version.
    pub doc_hash: Option<DocHash>,
    /// Text hash of the stored vector.
    pub text_hash: Option<TextHash>,
    /// The stored vector has the configured size (else it must be rewritten).
    pub vector_ok: bool,
}

/// A sink's position: documents and, with a batch's last write, its
/// position, in one atomic write (durability: see `sink::contract`).
/// Only `apply::committer` writes a position: it owns their order.
pub trait RemotePositions: Sync {
    /// Applies `changes` and stores `position` in one atomic write. When it
    /// returns `Ok`, the sink acknowledged both; on `Err`, neither happened
    /// (a fenced or refused write runs nothing) or, for a lost connection,
    /// the caller cannot know, and must treat the position as not stored.
    fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The position the last [`Self::apply_ending_at`] stored (`None`: none
    /// yet, or unreadable, which is logged), read from the server.
    fn stored_position(&self) -> impl Future<Output = Result<Option<Position>, SinkError>> + Send;
}

/// The documents of one index version.
pub trait Documents: RemotePositions {
    /// What the sink holds for each key, in input order (`None`: nothing).
    /// A key of another type under the prefix reads as a document with no
    /// hashes, so the next upsert replaces it.
    fn read_state(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<Option<StoredState>>, SinkError>> + Send;

    /// Applies `changes` in one atomic write, moving no position. A new
    /// vector is cached under its text hash in the same write. Nothing to
    /// write is no write.
    fn apply(&self, changes: &[DocumentChange]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// One page of the document keys this version holds, and the cursor to
    /// pass next (0: done; start at 0). A key present for the whole scan is
    /// returned at least once; the memory held is one page.
    fn document_keys_page(&self, cursor: u64) -> impl Future<Output = Result<(u64, Vec<DocumentKey>), SinkError>> + Send;

    /// Documents the index of this version holds (0 when it does not exist yet).
    fn document_count(&self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Marks the documents of `keys` as out of date (their document hash
    /// dropped), so the next sync of each rewrites it whatever its hashes
    /// say. Dropping the marker can only cause a rewrite, never make a
    /// document older, so a handing-off reconcile may do it next to the streamer.
    fn mark_out_of_date(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The key as the operator sees it in the sink (for logs).
    fn key_of(&self, key: &DocumentKey) -> String;
}

impl RemotePositions for RedisSink {
    async fn apply_ending_at(&self, changes: &[DocumentChange], position: &Position) -> Result<(), SinkError> {
        self.write(self.write_ops(changes, Some(position))).await
    }

    async fn stored_position(&self) -> Result<Option<Position>, SinkError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.get(&self.keys.position).await?;
        Ok(text.and_then(|t| match t.parse() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, key = %self.keys.position, "ignoring unreadable position in Redis");
                None
            }
        }))
    }
}

impl Documents for RedisSink {
    /// In one round trip: TYPE, HMGET of the hashes and HSTRLEN of the vector per key.
    async fn read_state(&self, keys: &[DocumentKey]) -> Result<Vec<Option<StoredState>>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        // A key of another type under the prefix (written by hand, by another
        // tool) fails HMGET with WRONGTYPE; that must not fail the batch.
        pipe.ignore_errors();
        for key in keys {
            let redis_key = self.key_of(key);
            // "none" when absent; a hash drugsync did not write still exists and may need deleting.
            pipe.cmd("TYPE").arg(&redis_key);
            pipe.cmd("HMGET").arg(&redis_key).arg("doc_hash").arg("text_hash");
            pipe.cmd("HSTRLEN").arg(&redis_key).arg(&self.vector_field);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, reply) in keys.iter().zip(replies.chunks_exact(3)) {
            // Other server errors (LOADING, NOPERM) keep their own class: only WRONGTYPE is expected here.
            let server_error = |value: &Value| match value {
                Value::ServerError(e) => Err(SinkError::from(redis::RedisError::from(e.clone()))),
                _ => Ok(()),
            };
            server_error(&reply[0])?;
            let kind: String = redis::from_redis_value(reply[0].clone()).map_err(unexpected_reply)?;
            let state = match kind.as_str() {
                "none" => None,
                "hash" => {
                    server_error(&reply[1])?;
                    server_error(&reply[2])?;
                    let hashes: Vec<Option<String>> = redis::from_redis_value(reply[1].clone()).map_err(unexpected_reply)?;
                    let vector_len: usize = redis::from_redis_value(reply[2].clone()).map_err(unexpected_reply)?;
                    Some(StoredState {
                        doc_hash: hashes.first().cloned().flatten().map(DocHash),
                        text_hash: hashes.get(1).cloned().flatten().map(TextHash),
                        vector_ok: vector_len == self.vector_bytes,
                    })
                }
                other => {
                    // Unlike a stale hash it has no vector, so the upsert replaces the key as a whole.
                    tracing::warn!(key = %self.key_of(key), kind = other, "a key of another type sits under the index prefix; replacing it");
                    Some(StoredState { doc_hash: None, text_hash: None, vector_ok: false })
                }
            };
            out.push(state);
        }
        Ok(out)
    }

    async fn apply(&self, changes: &[DocumentChange]) -> Result<(), SinkError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(self.write_ops(changes, None)).await
    }

    /// One `SCAN … MATCH <prefix>* COUNT 1000` page.
    async fn document_keys_page(&self, cursor: u64) -> Result<(u64, Vec<DocumentKey>), SinkError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut conn).await?;
        Ok((next, batch.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(|k| DocumentKey(k.to_owned()))).collect()))
    }

    /// `FT.INFO num_docs`.
    async fn document_count(&self) -> Result<u64, SinkError> {
        let info = self.index_info(&self.version.index).await?;
        Ok(info.and_then(|info| super::index::info_text(&info, "num_docs")).and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    async fn mark_out_of_date(&self, keys: &[DocumentKey]) -> Result<(), SinkError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HDEL").arg(self.key_of(key)).arg("doc_hash").ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    fn key_of(&self, key: &DocumentKey) -> String {
        format!("{}{}", self.prefix, key.0)
    }
}

//! What one atomic write does, as typed operations: built from document
//! changes here, run by the fenced write (`fence.rs`) or MULTI/EXEC.

use super::{Documents, RedisSink};
use crate::document::DocumentChange;
use crate::embed::vector_to_bytes;
use crate::position::Position;

/// One Redis command of an atomic write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// `DEL key`.
    Del(String),
    /// `SET key value`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// `HSET key field value ...`.
    HSet {
        /// The hash.
        key: String,
        /// Field names and values.
        fields: Vec<(String, Vec<u8>)>,
    },
    /// `HDEL key field ...`.
    HDel {
        /// The hash.
        key: String,
        /// Field names.
        fields: Vec<String>,
    },
    /// `ZADD key [NX] score member`.
    ZAdd {
        /// The sorted set.
        key: String,
        /// Only add, never update an existing member's score.
        only_new: bool,
        /// The score.
        score: u64,
        /// The member.
        member: String,
    },
    /// `ZREM key member`.
    ZRem {
        /// The sorted set.
        key: String,
        /// The member.
        member: String,
    },
    /// `LTRIM key drop -1`: drops the first `drop` elements of a list.
    LTrimFront {
        /// The list.
        key: String,
        /// How many elements go.
        drop: usize,
    },
}

impl WriteOp {
    /// The command and its arguments as Redis receives them.
    pub fn args(&self) -> Vec<Vec<u8>> {
        let b = |s: &str| s.as_bytes().to_vec();
        match self {
            WriteOp::Del(key) => vec![b("DEL"), b(key)],
            WriteOp::Set { key, value } => vec![b("SET"), b(key), value.clone()],
            WriteOp::HSet { key, fields } => {
                let mut args = vec![b("HSET"), b(key)];
                for (name, value) in fields {
                    args.extend([b(name), value.clone()]);
                }
                args
            }
            WriteOp::HDel { key, fields } => [b("HDEL"), b(key)].into_iter().chain(fields.iter().map(|f| b(f))).collect(),
            WriteOp::ZAdd { key, only_new, score, member } => {
                let mut args = vec![b("ZADD"), b(key)];
                if *only_new {
                    args.push(b("NX"));
                }
                args.extend([b(&score.to_string()), b(member)]);
                args
            }
            WriteOp::ZRem { key, member } => vec![b("ZREM"), b(key), b(member)],
            WriteOp::LTrimFront { key, drop } => vec![b("LTRIM"), b(key), b(&drop.to_string()), b("-1")],
        }
    }
}

impl RedisSink {
    /// The operations of one write transaction.
    pub(super) fn write_ops(&self, changes: &[DocumentChange], position: Option<&Position>) -> Vec<WriteOp> {
        let now_ms = crate::observe::health::unix_ms();
        let unix_now = now_ms / 1000;
        let position_text = position.map(Position::to_string).unwrap_or_default();
        let mut ops: Vec<WriteOp> = Vec::with_capacity(changes.len() * 3 + 1);
        let pending = |member: &str| WriteOp::ZRem { key: self.keys.pending.clone(), member: member.to_owned() };
        // A document's fields, hashes and (when a batch ends here) the position it was built at.
        let document_fields = |doc: &crate::document::Document| {
            let mut fields: Vec<(String, Vec<u8>)> =
                doc.fields.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
            fields.push(("text_hash".into(), doc.text_hash.0.as_bytes().to_vec()));
            fields.push(("doc_hash".into(), doc.doc_hash.0.as_bytes().to_vec()));
            if position.is_some() {
                fields.push(("source_position".into(), position_text.as_bytes().to_vec()));
            }
            fields
        };
        for change in changes {
            match change {
                DocumentChange::Upsert { doc, vector } => {
                    let key = self.key_of(&doc.key);
                    let mut fields = document_fields(doc);
                    // Removing rather than storing "" keeps NUMERIC fields indexable.
                    let empty: Vec<String> = doc.fields.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| k.clone()).collect();
                    if let Some(vector) = vector {
                        // A new vector means a whole new document: start from an empty key, which
                        // also drops fields nobody writes any more and a key of another type.
                        ops.push(WriteOp::Del(key.clone()));
                        ops.push(pending(&doc.key.0));
                        let blob = vector_to_bytes(vector);
                        if self.cache_max > 0 {
                            ops.push(WriteOp::Set { key: format!("{}{}", self.cache_prefix, doc.text_hash.0), value: blob.clone() });
                            ops.push(WriteOp::ZAdd {
                                key: self.cache_index_key.clone(),
                                only_new: false,
                                score: now_ms,
                                member: doc.text_hash.0.clone(),
                            });
                        }
                        fields.push((self.vector_field.clone(), blob));
                    }
                    ops.push(WriteOp::HSet { key: key.clone(), fields });
                    if !empty.is_empty() {
                        ops.push(WriteOp::HDel { key, fields: empty });
                    }
                }
                DocumentChange::Delete(key) => {
                    ops.push(WriteOp::Del(self.key_of(key)));
                    ops.push(pending(&key.0));
                }
                DocumentChange::Owe(doc) => {
                    let key = self.key_of(&doc.key);
                    // From an empty key: the old vector belongs to another text.
                    ops.push(WriteOp::Del(key.clone()));
                    ops.push(WriteOp::HSet { key, fields: document_fields(doc) });
                    // NX: a document owed again keeps the time it was first owed, which is what the age measures.
                    ops.push(WriteOp::ZAdd { key: self.keys.pending.clone(), only_new: true, score: unix_now, member: doc.key.0.clone() });
                }
                DocumentChange::Quarantine { key, reason } => {
                    let entry = serde_json::json!({ "reason": reason, "since": unix_now, "position": position_text }).to_string();
                    ops.push(WriteOp::HSet { key: self.keys.quarantine.clone(), fields: vec![(key.0.clone(), entry.into_bytes())] });
                    // The quarantine now records what this document lacks; no use asking the filler for it.
                    ops.push(pending(&key.0));
                }
                DocumentChange::Release(key) => ops.push(WriteOp::HDel { key: self.keys.quarantine.clone(), fields: vec![key.0.clone()] }),
            }
        }
        if position.is_some() {
            ops.push(WriteOp::Set { key: self.keys.position.clone(), value: position_text.into_bytes() });
        }
        ops
    }
}

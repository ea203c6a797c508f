//! The sink in memory: what it holds and its one write, applied as
//! `RedisSink` applies them (fenced by the lease and the load epoch), with
//! named fault points. Its roles of `sink::contract` are `sink_roles.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::document::{Document, DocumentChange, DocumentKey, TextHash};
use crate::position::Position;
use crate::sink::{IndexVerdict, IndexVersion, SinkError};

/// How a sink write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFault {
    /// Another holder has the writer lease: nothing is written.
    Fenced,
    /// The connection drops before the write reaches the server: nothing is written.
    Lost,
    /// The write runs, but the connection drops before the reply: the
    /// caller sees a transient error and cannot know it was applied.
    LostAfterApplying,
}

/// A document as the sink holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its hashes and fields, as last written.
    pub doc: Document,
    /// Its vector, if it has one.
    pub vector: Option<Arc<Vec<f32>>>,
    /// Marked out of date: it reads with no document hash until rewritten.
    pub out_of_date: bool,
}

/// What the in-memory sink holds.
#[derive(Debug, Default, Clone)]
pub struct Contents {
    /// Documents by key.
    pub docs: BTreeMap<DocumentKey, Stored>,
    /// Quarantined keys and why.
    pub quarantine: BTreeMap<DocumentKey, String>,
    /// Keys whose vector is owed, with when each was first owed (a sequence number).
    pub owed: BTreeMap<DocumentKey, u64>,
    /// The vector cache.
    pub cache: HashMap<TextHash, Arc<Vec<f32>>>,
    /// The position stored with the last batch.
    pub position: Option<Position>,
    /// Atomic writes acknowledged.
    pub writes: usize,
    /// Who holds the writer lease.
    pub lease: Option<String>,
    /// The epoch of the load the sink holds.
    pub load_epoch: Option<String>,
    /// Queued repairs, oldest first.
    pub repairs: VecDeque<DocumentKey>,
    /// The last status record.
    pub status: Option<String>,
    /// The mapping fingerprint recorded.
    pub fingerprint: Option<String>,
    /// The index the alias names.
    pub alias: Option<String>,
    /// Whether this version's index exists (Redis emptied: it does not).
    pub index_exists: bool,
    /// Keys the index fails to index (as RediSearch does with a bad field).
    pub unindexable: BTreeSet<DocumentKey>,
    /// Hashes the index failed to index since it was created.
    pub indexing_failures: u64,
    /// Sequence of "when first owed".
    owed_clock: u64,
}

impl Contents {
    /// How many documents the index counts: those held that it can index.
    pub(super) fn indexed(&self) -> u64 {
        self.docs.keys().filter(|k| !self.unindexable.contains(*k)).count() as u64
    }
}

/// The sink in memory: applies changes as `sink::ops` does, one write at a
/// time, fenced by the lease and the load epoch as the real one is, and
/// fails the writes it was told to (counted from the next one).
pub struct MemorySink {
    pub(super) dimensions: usize,
    pub(super) version: IndexVersion,
    pub(super) contents: Arc<Mutex<Contents>>,
    /// Write attempts made so far.
    attempts: AtomicU64,
    /// Attempt number (1-based, over the sink's life) -> how it fails.
    faults: Mutex<BTreeMap<u64, SinkFault>>,
    /// The holder every write checks the lease against (`None`: unfenced).
    pub(super) fence: Mutex<Option<String>>,
    /// The load epoch every write checks while a load runs.
    pub(super) active_epoch: Mutex<Option<String>>,
    /// How long each write that stores a position takes (tokio time), as a
    /// real Redis's round trip and indexing do.
    pub(super) write_time: Mutex<Duration>,
}

impl MemorySink {
    /// An empty sink whose vectors have `dimensions` elements; its index exists.
    pub fn new(dimensions: usize) -> Self {
        let version = IndexVersion {
            alias: "drugs".into(),
            index: "drugs_v0000000a".into(),
            prefix: "drug_v0000000a:".into(),
            hash: "0000000a".into(),
        };
        let contents = Contents { index_exists: true, ..Contents::default() };
        Self {
            dimensions,
            version,
            contents: Arc::new(Mutex::new(contents)),
            attempts: AtomicU64::new(0),
            faults: Mutex::default(),
            fence: Mutex::default(),
            active_epoch: Mutex::default(),
            write_time: Mutex::default(),
        }
    }

    /// Every write that stores a position takes `time` from now on.
    pub fn take_per_write(&self, time: Duration) {
        *self.write_time.lock().unwrap() = time;
    }

    /// The `n`-th write attempt from now (1 = the next) fails with `fault`.
    pub fn fail_write(&self, n: u64, fault: SinkFault) {
        let next = self.attempts.load(Ordering::SeqCst);
        self.faults.lock().unwrap().insert(next + n, fault);
    }

    /// A look at what it holds.
    pub fn contents<T>(&self, look: impl FnOnce(&Contents) -> T) -> T {
        look(&self.contents.lock().unwrap())
    }

    /// Changes what it holds, as something other than drugsync would
    /// (an operator, an eviction, a restore).
    pub fn tamper<T>(&self, change: impl FnOnce(&mut Contents) -> T) -> T {
        change(&mut self.contents.lock().unwrap())
    }

    /// Puts a document in as if an earlier run had written it.
    pub fn put(&self, doc: Document, vector: Option<Vec<f32>>) {
        self.contents.lock().unwrap().docs.insert(doc.key.clone(), Stored { doc, vector: vector.map(Arc::new), out_of_date: false });
    }

    /// Redis restored from an older copy (or failed over to a lagging
    /// replica): it holds an earlier position than it acknowledged.
    pub fn restore_older(&self, position: Position) {
        self.contents.lock().unwrap().position = Some(position);
    }

    /// Redis emptied (FLUSHALL, a restart without persistence): nothing is
    /// left, the index included.
    pub fn empty(&self) {
        *self.contents.lock().unwrap() = Contents::default();
    }

    /// The fault of this attempt, if one was set for it.
    pub(super) fn next_fault(&self) -> Option<SinkFault> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.faults.lock().unwrap().remove(&attempt)
    }

    /// The checks the fenced write script makes before writing anything:
    /// the load's epoch, then the lease (taken back when nobody holds it).
    pub(super) fn check_fence(&self, held: &mut Contents) -> Result<(), SinkError> {
        if let Some(epoch) = self.active_epoch.lock().unwrap().clone()
            && held.load_epoch.as_deref() != Some(epoch.as_str())
        {
            return Err(SinkError::LoadLost { epoch });
        }
        if let Some(holder) = self.fence.lock().unwrap().clone() {
            match &held.lease {
                None => held.lease = Some(holder),
                Some(other) if *other != holder => return Err(SinkError::Fenced { holder }),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A fenced write of something other than documents.
    pub(super) fn fenced(&self, change: impl FnOnce(&mut Contents)) -> Result<(), SinkError> {
        let mut held = self.contents.lock().unwrap();
        self.check_fence(&mut held)?;
        change(&mut held);
        Ok(())
    }

    pub(super) fn write(&self, changes: &[DocumentChange], position: Option<&Position>) -> Result<(), SinkError> {
        let fault = self.next_fault();
        match fault {
            Some(SinkFault::Fenced) => return Err(SinkError::Fenced { holder: "another".into() }),
            Some(SinkFault::Lost) => return Err(SinkError::Unavailable("connection lost before the write".into())),
            _ => {}
        }
        let mut held = self.contents.lock().unwrap();
        self.check_fence(&mut held)?;
        for change in changes {
            match change {
                DocumentChange::Upsert { doc, vector } => {
                    let vector = match vector {
                        Some(vector) => {
                            held.cache.insert(doc.text_hash.clone(), vector.clone());
                            held.owed.remove(&doc.key);
                            Some(vector.clone())
                        }
                        // Only the fields and hashes are written: the stored vector stays.
                        None => held.docs.get(&doc.key).and_then(|h| h.vector.clone()),
                    };
                    held.docs.insert(doc.key.clone(), Stored { doc: doc.clone(), vector, out_of_date: false });
                }
                DocumentChange::Delete(key) => {
                    held.docs.remove(key);
                    held.owed.remove(key);
                }
                DocumentChange::Owe(doc) => {
                    held.docs.insert(doc.key.clone(), Stored { doc: doc.clone(), vector: None, out_of_date: false });
                    if !held.owed.contains_key(&doc.key) {
                        held.owed_clock += 1;
                        let since = held.owed_clock;
                        held.owed.insert(doc.key.clone(), since);
                    }
                }
                DocumentChange::Quarantine { key, reason } => {
                    held.quarantine.insert(key.clone(), reason.clone());
                    held.owed.remove(key);
                }
                DocumentChange::Release(key) => {
                    held.quarantine.remove(key);
                }
            }
        }
        let failed = changes
            .iter()
            .filter(|c| matches!(c, DocumentChange::Upsert { doc, .. } | DocumentChange::Owe(doc) if held.unindexable.contains(&doc.key)))
            .count() as u64;
        held.indexing_failures += failed;
        if let Some(position) = position {
            held.position = Some(position.clone());
        }
        held.writes += 1;
        match fault {
            Some(SinkFault::LostAfterApplying) => Err(SinkError::Unavailable("connection lost before the reply".into())),
            _ => Ok(()),
        }
    }

    pub(super) fn verdict_now(held: &Contents) -> IndexVerdict {
        IndexVerdict { docs: held.indexed(), indexing_failures: held.indexing_failures, percent_indexed: 1.0 }
    }
}

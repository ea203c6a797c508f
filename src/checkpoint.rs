//! The local checkpoint store: the last binlog position whose changes Redis
//! has acknowledged.
//!
//! Backed by `redb`, whose commits are durable (fsync) by default. The API
//! cannot move the position backwards except through [`CheckpointStore::reset`],
//! which exists for operator-driven replay and Redis-loss recovery and logs.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::{Classify, ErrorClass};
use crate::position::{Position, PositionError};

const STATE: TableDefinition<&str, &str> = TableDefinition::new("checkpoint");
const POSITION_KEY: &str = "position";
const INSTANCE_KEY: &str = "instance";
const BOOTSTRAP_KEY: &str = "bootstrap";

/// The checkpoint's contract as the committer uses it: both calls are
/// durable when they return `Ok` (redb commits with fsync), and on `Err`
/// the stored position is unchanged. [`CheckpointStore`] is the one
/// implementation outside tests.
pub trait LocalPositions: Sync {
    /// The stored position (`None`: none yet).
    fn stored(&self) -> Result<Option<Position>, CheckpointError>;
    /// Moves forward to `position` durably (never backwards; see [`CheckpointStore::advance`]).
    fn advance(&self, position: &Position) -> Result<(), CheckpointError>;
    /// Sets `position` durably, whatever was stored.
    fn reset(&self, position: &Position) -> Result<(), CheckpointError>;
}

impl LocalPositions for CheckpointStore {
    fn stored(&self) -> Result<Option<Position>, CheckpointError> {
        self.load()
    }
    fn advance(&self, position: &Position) -> Result<(), CheckpointError> {
        CheckpointStore::advance(self, position)
    }
    fn reset(&self, position: &Position) -> Result<(), CheckpointError> {
        CheckpointStore::reset(self, position)
    }
}

/// Why the checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store file could not be opened or written.
    #[error(
        "checkpoint store {path}: {message}. Check that the directory exists, is writable and that no other drugsync uses the same file"
    )]
    Store {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        message: String,
    },
    /// Another process (a running drugsync) has the store open: redb allows one.
    #[error(
        "checkpoint store {path} is in use by another process (a running drugsync?). Two writers must not share one checkpoint: stop the other, or give this one its own checkpoint.path"
    )]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The stored text is not a position (file corrupted or edited).
    #[error(
        "checkpoint store {path} holds an unreadable position: {source}. Remove the file to start with a full load, or replay from a known position"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Parse error.
        source: PositionError,
    },
    /// An advance would move the position backwards: a bug, never silently accepted.
    #[error("refusing to move the checkpoint backwards from {current} to {requested}")]
    Backwards {
        /// Stored position (boxed: the error stays small on the happy path's `Result`).
        current: Box<Position>,
        /// Requested position.
        requested: Box<Position>,
    },
}

impl Classify for CheckpointError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Definite
    }
}

/// See the module docs.
pub struct CheckpointStore {
    db: Database,
    path: PathBuf,
}

impl CheckpointStore {
    /// Opens or creates the store, creating the parent directory if needed.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let err = |message: String| CheckpointError::Store { path: path.to_owned(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => CheckpointError::Locked { path: path.to_owned() },
            other => err(other.to_string()),
        })?;
        Ok(Self { db, path: path.to_owned() })
    }

    fn store_err(&self, e: impl std::fmt::Display) -> CheckpointError {
        CheckpointError::Store { path: self.path.clone(), message: e.to_string() }
    }

    /// The stored position, or `None` before the first initial load completed.
    pub fn load(&self) -> Result<Option<Position>, CheckpointError> {
        self.get(POSITION_KEY)?
            .map(|text| text.parse().map_err(|source| CheckpointError::Corrupt { path: self.path.clone(), source }))
            .transpose()
    }

    /// Stores `position` durably. Errs if it is behind the stored one; an
    /// equal position is a no-op write, so re-applying a batch is harmless.
    /// A position from another binlog lineage is accepted only when it carries
    /// a GTID state (the stream resumed by GTID after a failover); otherwise
    /// only [`Self::reset`] can store it.
    pub fn advance(&self, position: &Position) -> Result<(), CheckpointError> {
        if let Some(current) = self.load()? {
            let order = match current.try_cmp(position) {
                Ok(order) => order,
                // Resumed by GTID onto another binlog lineage (failover): the GTID state vouches for it.
                Err(_) if position.gtid.is_some() => {
                    tracing::warn!(from = %current, to = %position, "checkpoint moves to a new binlog lineage (resumed by GTID)");
                    Ordering::Less
                }
                Err(source) => return Err(CheckpointError::Corrupt { path: self.path.clone(), source }),
            };
            if order == Ordering::Greater {
                debug_assert!(false, "checkpoint would move backwards: {current} -> {position}");
                return Err(CheckpointError::Backwards { current: Box::new(current), requested: Box::new(position.clone()) });
            }
        }
        self.write(position)
    }

    /// Replaces the stored position unconditionally (replay, recovery after
    /// Redis lost writes, a new task adopting Redis's position). Only a move
    /// back within a lineage is logged as a warning: a first start or an
    /// adoption forward is routine, and a warning should mean something.
    pub fn reset(&self, position: &Position) -> Result<(), CheckpointError> {
        let current = self.load()?;
        let kind = ResetKind::of(current.as_ref(), position);
        let from = current.map(|c| c.to_string());
        match kind {
            ResetKind::Rewound => tracing::warn!(?from, to = %position, "checkpoint rewound"),
            ResetKind::First => tracing::info!(%position, "checkpoint set"),
            ResetKind::Forward => tracing::info!(?from, to = %position, "checkpoint moved forward"),
            ResetKind::OtherLineage => tracing::info!(?from, to = %position, "checkpoint set on another binlog lineage"),
        }
        self.write(position)
    }

    /// This store's stable instance id (created on first use): the writer
    /// lease is held under it, so a restart after a crash reclaims its own lease.
    pub fn instance_id(&self) -> Result<String, CheckpointError> {
        if let Some(id) = self.get(INSTANCE_KEY)? {
            return Ok(id);
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drugsync".into());
        let id = format!("{host}:{:016x}", rand::random::<u64>());
        self.put(INSTANCE_KEY, Some(&id))?;
        Ok(id)
    }

    /// Progress of an interrupted initial load.
    pub fn bootstrap_progress(&self) -> Result<Option<BootstrapProgress>, CheckpointError> {
        let Some(text) = self.get(BOOTSTRAP_KEY)? else { return Ok(None) };
        let mut parts = text.splitn(3, '\n');
        let (Some(position), Some(key)) = (parts.next(), parts.next()) else { return Ok(None) };
        let position = position.parse().map_err(|source| CheckpointError::Corrupt { path: self.path.clone(), source })?;
        Ok(Some(BootstrapProgress {
            position,
            last_key: Some(key.to_owned()).filter(|k| !k.is_empty()),
            // Progress written before epochs existed has none, so it is never trusted.
            epoch: parts.next().map(str::to_owned).filter(|e| !e.is_empty()),
        }))
    }

    /// Records how far the initial load has come.
    pub fn set_bootstrap_progress(&self, progress: &BootstrapProgress) -> Result<(), CheckpointError> {
        let text =
            format!("{}\n{}\n{}", progress.position, progress.last_key.as_deref().unwrap_or(""), progress.epoch.as_deref().unwrap_or(""));
        self.put(BOOTSTRAP_KEY, Some(&text))
    }

    /// Forgets initial-load progress (done, or the data it referred to is gone).
    pub fn clear_bootstrap_progress(&self) -> Result<(), CheckpointError> {
        self.put(BOOTSTRAP_KEY, None)
    }

    fn get(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        let tx = self.db.begin_read().map_err(|e| self.store_err(e))?;
        let table = match tx.open_table(STATE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.store_err(e)),
        };
        Ok(table.get(key).map_err(|e| self.store_err(e))?.map(|v| v.value().to_owned()))
    }

    fn put(&self, key: &str, value: Option<&str>) -> Result<(), CheckpointError> {
        let tx = self.db.begin_write().map_err(|e| self.store_err(e))?;
        {
            let mut table = tx.open_table(STATE).map_err(|e| self.store_err(e))?;
            match value {
                Some(value) => table.insert(key, value).map(drop),
                None => table.remove(key).map(drop),
            }
            .map_err(|e| self.store_err(e))?;
        }
        tx.commit().map_err(|e| self.store_err(e))
    }

    /// Forgets the position, so the next start performs an initial load.
    pub fn clear(&self) -> Result<(), CheckpointError> {
        self.put(POSITION_KEY, None)
    }

    fn write(&self, position: &Position) -> Result<(), CheckpointError> {
        self.put(POSITION_KEY, Some(&position.to_string()))
    }
}

/// How far an initial load has come, kept so an interrupted load can resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapProgress {
    /// The position streaming starts from once the load is done.
    pub position: Position,
    /// The last document key written, in key order (`None`: none yet).
    pub last_key: Option<String>,
    /// The load's epoch, also stored in Redis: the load resumes only into a
    /// Redis that still holds it (one that kept the documents written so far).
    pub epoch: Option<String>,
}

/// How a reset moves the checkpoint, which decides how loudly it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// No position was stored: a first start, or a new task.
    First,
    /// To the stored position or past it (adopting Redis's position).
    Forward,
    /// Behind the stored position: a replay, or Redis lost writes.
    Rewound,
    /// Onto another binlog lineage, where positions do not compare.
    OtherLineage,
}

impl ResetKind {
    /// The kind of a reset from `current` to `to`.
    pub fn of(current: Option<&Position>, to: &Position) -> Self {
        match current.map(|c| c.try_cmp(to)) {
            None => Self::First,
            Some(Ok(Ordering::Greater)) => Self::Rewound,
            Some(Ok(_)) => Self::Forward,
            Some(Err(_)) => Self::OtherLineage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_move_back_within_a_lineage_is_a_rewind() {
        let (p1, p2) = (Position::new("binlog.000002", 100), Position::new("binlog.000002", 200));
        assert_eq!(ResetKind::of(None, &p1), ResetKind::First, "a first start");
        assert_eq!(ResetKind::of(Some(&p1), &p2), ResetKind::Forward, "a new task adopting Redis's position");
        assert_eq!(ResetKind::of(Some(&p2), &p2), ResetKind::Forward);
        assert_eq!(ResetKind::of(Some(&p2), &p1), ResetKind::Rewound, "a replay, or Redis lost writes");
        assert_eq!(ResetKind::of(Some(&p2), &Position::new("mysql-bin-changelog.000001", 4)), ResetKind::OtherLineage);
    }

    #[test]
    fn a_store_in_use_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.redb");
        let _first = CheckpointStore::open(&path).unwrap();
        let second = CheckpointStore::open(&path).err().expect("one process at a time");
        assert!(matches!(second, CheckpointError::Locked { .. }), "{second}");
        assert!(second.to_string().contains("checkpoint.path"));
    }

    #[test]
    fn another_lineage_is_accepted_only_with_a_gtid_state_to_vouch_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("cp.redb")).unwrap();
        let old = Position::new("mysql-bin-changelog.000120", 900);
        store.advance(&old).unwrap();
        // Another stem and no GTID state: nothing says it is later, so it is refused untouched.
        let bare = Position::new("binlog.000001", 4);
        let refused = store.advance(&bare).expect_err("an incomparable position without a GTID state is refused");
        assert!(matches!(refused, CheckpointError::Corrupt { .. }), "{refused}");
        assert_eq!(store.load().unwrap(), Some(old.clone()));
        // The same position resumed by GTID after a failover: accepted and stored whole.
        let failover = Position { gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77".into()), ..bare };
        store.advance(&failover).unwrap();
        assert_eq!(store.load().unwrap(), Some(failover));
    }

    #[test]
    fn the_committers_trait_writes_through_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("cp.redb")).unwrap();
        let positions: &dyn LocalPositions = &store;
        let (p1, p2) = (Position::new("binlog.000002", 100), Position::new("binlog.000002", 200));
        assert_eq!(positions.stored().unwrap(), None);
        positions.advance(&p2).unwrap();
        assert_eq!(store.load().unwrap(), Some(p2.clone()));
        assert_eq!(positions.stored().unwrap(), Some(p2), "read back through the trait");
        positions.reset(&p1).unwrap();
        assert_eq!(store.load().unwrap(), Some(p1), "reset moves back where advance may not");
    }

    #[test]
    fn the_instance_id_is_made_once_per_store_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
        let id_a = CheckpointStore::open(&a).unwrap().instance_id().unwrap();
        let id_b = CheckpointStore::open(&b).unwrap().instance_id().unwrap();
        assert_ne!(id_a, id_b, "two stores are two instances: their leases must differ");
        assert!(id_a.contains(':') && id_a.len() > 16, "host:random, got {id_a:?}");
        assert_eq!(CheckpointStore::open(&a).unwrap().instance_id().unwrap(), id_a, "a restart reclaims its own lease");
    }

    #[test]
    fn advances_persists_and_refuses_to_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cp.redb");
        let store = CheckpointStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let p1 = Position::new("binlog.000002", 100);
        store.advance(&p1).unwrap();
        store.advance(&p1).unwrap();
        drop(store);
        let store = CheckpointStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), Some(p1.clone()));
        let later = Position::new("binlog.000003", 4);
        store.advance(&later).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.advance(&p1)));
        // Debug builds assert; release builds return the error. Either way the position holds.
        if let Ok(r) = result {
            assert!(matches!(r, Err(CheckpointError::Backwards { .. })));
        }
        assert_eq!(store.load().unwrap(), Some(later.clone()));
        store.reset(&p1).unwrap();
        assert_eq!(store.load().unwrap(), Some(p1));
        let id = store.instance_id().unwrap();
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
        assert_eq!(store.instance_id().unwrap(), id, "the instance id survives clear()");
        assert_eq!(store.bootstrap_progress().unwrap(), None);
        let progress = BootstrapProgress { position: later.clone(), last_key: Some("00002".into()), epoch: Some("e1".into()) };
        store.set_bootstrap_progress(&progress).unwrap();
        assert_eq!(store.bootstrap_progress().unwrap(), Some(progress));
        let fresh = BootstrapProgress { position: later, last_key: None, epoch: Some("e2".into()) };
        store.set_bootstrap_progress(&fresh).unwrap();
        assert_eq!(store.bootstrap_progress().unwrap(), Some(fresh));
        // Progress of an older drugsync (no epoch) is read, and not trusted.
        store.put(BOOTSTRAP_KEY, Some("binlog.000001:4\n00009")).unwrap();
        assert_eq!(store.bootstrap_progress().unwrap().unwrap().epoch, None);
        store.clear_bootstrap_progress().unwrap();
        assert_eq!(store.bootstrap_progress().unwrap(), None);
    }
}

//! The checkpoint in memory, with a disk-full fault point.

use std::sync::Mutex;

use crate::checkpoint::{CheckpointError, LocalPositions};
use crate::position::Position;

/// How a checkpoint write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// The next write fails (disk full); nothing is stored.
    Full,
}

/// The checkpoint in memory, refusing to go backwards like the real one.
#[derive(Default)]
pub struct MemoryCheckpoint {
    position: Mutex<Option<Position>>,
    fault: Mutex<Option<DiskFault>>,
}

impl MemoryCheckpoint {
    /// The stored position.
    pub fn position(&self) -> Option<Position> {
        self.position.lock().unwrap().clone()
    }

    /// The next write fails with `fault`.
    pub fn fail_next(&self, fault: DiskFault) {
        *self.fault.lock().unwrap() = Some(fault);
    }

    fn fail(&self) -> Result<(), CheckpointError> {
        match self.fault.lock().unwrap().take() {
            Some(DiskFault::Full) => Err(CheckpointError::Store { path: "memory".into(), message: "disk full".into() }),
            None => Ok(()),
        }
    }
}

impl LocalPositions for MemoryCheckpoint {
    fn stored(&self) -> Result<Option<Position>, CheckpointError> {
        Ok(self.position())
    }
    fn advance(&self, position: &Position) -> Result<(), CheckpointError> {
        self.fail()?;
        let mut current = self.position.lock().unwrap();
        if let Some(c) = current.as_ref()
            && c.try_cmp(position).is_ok_and(|o| o.is_gt())
        {
            return Err(CheckpointError::Backwards { current: Box::new(c.clone()), requested: Box::new(position.clone()) });
        }
        *current = Some(position.clone());
        Ok(())
    }
    fn reset(&self, position: &Position) -> Result<(), CheckpointError> {
        self.fail()?;
        *self.position.lock().unwrap() = Some(position.clone());
        Ok(())
    }
}

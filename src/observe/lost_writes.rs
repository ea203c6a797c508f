//! The writes Redis lost after acknowledging them (restarted from an older
//! snapshot, a lagging replica promoted), while the writer replays them.
//!
//! Until the replay is back at the position Redis had acknowledged, the
//! index answers from an older state than drugsync has already reported,
//! so readiness fails, naming the position it waits for. Every source
//! transaction moves the applied position (one that touches no tracked
//! row too), so the replay reaches that position without new traffic.

use std::sync::Mutex;

use crate::position::Position;

/// See the module docs. Shared through `Stats`.
#[derive(Debug, Default)]
pub struct LostWrites(Mutex<Option<Position>>);

impl LostWrites {
    /// Redis was found behind `acknowledged`: not ready until the writer
    /// has applied up to it again.
    pub(crate) fn lost_since(&self, acknowledged: &Position) {
        *self.0.lock().expect("lost writes lock") = Some(acknowledged.clone());
    }

    /// The writer applied up to `applied` (or starts streaming there): the
    /// replay is over once it is at or past the lost position, or in another
    /// lineage (a new load or a resume by GTID vouched for everything).
    pub(crate) fn applied(&self, applied: &Position) {
        let mut pending = self.0.lock().expect("lost writes lock");
        if pending.as_ref().is_some_and(|lost| applied.try_cmp(lost).map_or(true, |o| o.is_ge())) {
            tracing::info!(position = %applied, "replayed the writes Redis had lost: the index is back where it was");
            *pending = None;
        }
    }

    /// Forgets the replay (the writer stopped: another one takes it up).
    pub(crate) fn clear(&self) {
        *self.0.lock().expect("lost writes lock") = None;
    }

    /// The position the replay must reach, while one is under way.
    pub fn replaying_until(&self) -> Option<Position> {
        self.0.lock().expect("lost writes lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_ends_at_the_lost_position_or_in_another_lineage() {
        let lost = LostWrites::default();
        assert_eq!(lost.replaying_until(), None);
        let acknowledged = Position::new("bin.000002", 500);
        lost.lost_since(&acknowledged);
        lost.applied(&Position::new("bin.000002", 499));
        assert_eq!(lost.replaying_until(), Some(acknowledged.clone()), "short of it: still replaying");
        lost.applied(&Position::new("bin.000002", 500));
        assert_eq!(lost.replaying_until(), None, "at it: done");

        lost.lost_since(&acknowledged);
        lost.applied(&Position::new("bin.000001", 900));
        assert!(lost.replaying_until().is_some(), "an earlier file is short of it");
        lost.applied(&Position::new("bin.000003", 4));
        assert_eq!(lost.replaying_until(), None, "a later file is past it");

        lost.lost_since(&acknowledged);
        lost.applied(&Position::new("other-bin.000001", 4));
        assert_eq!(lost.replaying_until(), None, "another lineage cannot be ordered: the start vouched for it");

        lost.lost_since(&acknowledged);
        lost.clear();
        assert_eq!(lost.replaying_until(), None);
    }
}

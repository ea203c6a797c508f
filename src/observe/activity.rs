//! One `info` line per second of applied work, so a person changing a row
//! sees it arrive, and a reload storm of thousands of batches still writes
//! one line a second: transactions, position, documents upserted, deleted
//! and unchanged, embedding calls, and lag since the last line.

use crate::observe::stats::{Counter, Gauge};
use std::time::{Duration, Instant};

use crate::observe::Stats;
use crate::position::Position;

/// Longest a summary waits before it is written.
const EVERY: Duration = Duration::from_secs(1);
/// How often a writer says it is one, work or not: the "no writer" alarm
/// counts these lines (deploy/sst/drugsync.ts).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

/// The counters at the last line, to log differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    upserts: u64,
    deletes: u64,
    unchanged: u64,
    embed_calls: u64,
    quarantined: u64,
}

impl Counts {
    fn of(stats: &Stats) -> Self {
        Self {
            upserts: stats.counted(Counter::Upserted),
            deletes: stats.counted(Counter::Deleted),
            unchanged: stats.counted(Counter::Unchanged),
            embed_calls: stats.embed.calls(),
            quarantined: stats.counted(Counter::Quarantined),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            upserts: self.upserts - earlier.upserts,
            deletes: self.deletes - earlier.deletes,
            unchanged: self.unchanged - earlier.unchanged,
            embed_calls: self.embed_calls - earlier.embed_calls,
            quarantined: self.quarantined - earlier.quarantined,
        }
    }
}

/// Applied work not yet logged.
pub struct ActivityLog {
    last: Instant,
    counts: Counts,
    transactions: u64,
    batches: u64,
    position: Option<Position>,
    /// When the last "writer heartbeat" line was written (`None`: not yet).
    heartbeat: Option<Instant>,
    /// The last position applied, for the heartbeat line.
    applied: Option<Position>,
}

impl ActivityLog {
    /// Starts counting from `stats` as they are now, streaming from `start`.
    pub fn new(stats: &Stats, start: &Position) -> Self {
        Self {
            last: Instant::now(),
            counts: Counts::of(stats),
            transactions: 0,
            batches: 0,
            position: None,
            heartbeat: None,
            applied: Some(start.clone()),
        }
    }

    /// A batch of `transactions` was applied up to `position`; logs if a second has passed.
    pub fn applied(&mut self, stats: &Stats, transactions: usize, position: &Position) {
        self.transactions += transactions as u64;
        self.batches += 1;
        self.position = Some(position.clone());
        if self.last.elapsed() >= EVERY {
            self.flush(stats);
        }
    }

    /// Logs what is pending, if anything, and the writer heartbeat when it
    /// is due (call at least once a second while idle).
    pub fn flush(&mut self, stats: &Stats) {
        if self.heartbeat.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
            let position = self.position.as_ref().or(self.applied.as_ref()).map(ToString::to_string).unwrap_or_default();
            tracing::info!(%position, lag_ms = stats.gauge(Gauge::LagMs), "writer heartbeat");
            self.heartbeat = Some(Instant::now());
        }
        let Some(position) = self.position.take() else {
            self.last = Instant::now();
            return;
        };
        self.applied = Some(position.clone());
        let now = Counts::of(stats);
        let done = now.since(self.counts);
        tracing::info!(
            transactions = self.transactions,
            batches = self.batches,
            %position,
            upserted = done.upserts,
            deleted = done.deletes,
            unchanged = done.unchanged,
            embed_calls = done.embed_calls,
            quarantined = done.quarantined,
            lag_ms = stats.gauge(Gauge::LagMs),
            "applied"
        );
        (self.last, self.counts, self.transactions, self.batches) = (Instant::now(), now, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_the_differences_since_the_last_line() {
        let stats = Stats::default();
        let mut log = ActivityLog::new(&stats, &Position::new("binlog.000001", 4));
        stats.count(Counter::Upserted, 3);
        stats.count(Counter::Unchanged, 7);
        log.applied(&stats, 2, &Position::new("binlog.000001", 100));
        log.applied(&stats, 1, &Position::new("binlog.000001", 200));
        assert_eq!((log.transactions, log.batches), (3, 2), "within a second nothing is logged yet");
        log.flush(&stats);
        assert_eq!((log.transactions, log.position.as_ref()), (0, None));
        assert_eq!(log.counts, Counts { upserts: 3, unchanged: 7, ..Counts::default() });
        stats.count(Counter::Upserted, 1);
        assert_eq!(Counts::of(&stats).since(log.counts), Counts { upserts: 1, ..Counts::default() });
    }
}

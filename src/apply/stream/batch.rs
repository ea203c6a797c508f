//! Consecutive source transactions merged into one unit of work, and how
//! they are gathered: a lone change goes at once, a busy source's are
//! merged while they keep arriving ([`gather`]).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::cdc::{InFlight, RoutingValues, Transaction};
use crate::mysql::Refusal;
use crate::position::Position;

/// What the apply loop writes in one go: the union of its transactions'
/// routing values and the commit position of the last one.
///
/// # Memory
/// Each transaction's values are merged in as it arrives and then dropped,
/// so a batch holds at most its routing limit of values, however many
/// transactions or rows it spans.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Union of the transactions' routing values.
    pub routing: RoutingValues,
    /// Source transactions merged.
    pub transactions: usize,
    /// Tracked row images they carried.
    pub rows: u64,
    /// Commit position of the last transaction.
    pub commit: Position,
    /// Source commit time of the last transaction (Unix seconds).
    pub committed_at: u32,
    /// The first transaction of the batch whose changed rows the binlog
    /// cannot name (see [`Refusal`]), with its commit position.
    pub refusal: Option<(Refusal, Position)>,
    /// The latest freshness-canary heartbeat among its transactions (Unix ms).
    pub canary_beat_ms: Option<u64>,
}

impl Batch {
    /// A batch holding `first`, merging at most `limit` distinct values.
    pub fn start(first: Transaction, limit: usize) -> Self {
        let mut batch = Self {
            routing: RoutingValues::with_limit(limit),
            transactions: 0,
            rows: 0,
            commit: first.commit.clone(),
            committed_at: first.committed_at,
            refusal: None,
            canary_beat_ms: None,
        };
        batch.push(first);
        batch
    }

    /// Merges the next transaction in commit order.
    pub fn push(&mut self, tx: Transaction) {
        self.routing.merge(tx.routing);
        self.transactions += 1;
        self.rows += tx.rows;
        if self.refusal.is_none()
            && let Some(refusal) = tx.refusal
        {
            self.refusal = Some((refusal, tx.commit.clone()));
        }
        self.commit = tx.commit;
        self.committed_at = tx.committed_at;
        self.canary_beat_ms = self.canary_beat_ms.max(tx.canary_beat_ms);
    }
}

/// While busy, a batch keeps gathering as long as the next transaction
/// arrives within this gap of the last: a storm (thousands of commits a
/// second, in group-commit clumps) arrives closer than that, a steady
/// trickle (a hundred a second) does not, and its changes are not held
/// back. 2 ms let a burst of 800 edits split into three batches (1.38
/// upserts a drug); 5 ms kept it to one or two (1.00).
pub const DENSE_GAP: Duration = Duration::from_millis(5);

/// The next batch: `first` and every transaction already waiting behind it
/// (those that arrived while the previous batch was applied), up to
/// `max_transactions`. A lone transaction (nothing behind it) goes at once.
/// When others were waiting, the source is busy: the batch goes on
/// gathering while transactions keep arriving within [`DENSE_GAP`] of each
/// other, for at most `linger` in all, so a storm still touches each drug
/// about once. Merging releases each transaction's budget: the batch keeps
/// only the union of their keys.
pub(super) async fn gather(
    first: InFlight,
    rx: &mut mpsc::Receiver<InFlight>,
    limit: usize,
    max_transactions: usize,
    linger: Duration,
) -> Batch {
    let mut batch = Batch::start(first.transaction, limit);
    let take_waiting = |batch: &mut Batch, rx: &mut mpsc::Receiver<InFlight>| {
        while batch.transactions < max_transactions {
            match rx.try_recv() {
                Ok(next) => batch.push(next.transaction),
                Err(_) => break,
            }
        }
    };
    take_waiting(&mut batch, rx);
    if batch.transactions == 1 {
        return batch;
    }
    let deadline = Instant::now() + linger;
    while batch.transactions < max_transactions {
        match timeout_at((Instant::now() + DENSE_GAP).min(deadline), rx.recv()).await {
            Ok(Some(next)) => {
                batch.push(next.transaction);
                take_waiting(&mut batch, rx);
            }
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tx(offset: u64, values: &[&str], ddl: bool) -> Transaction {
        let table: Arc<str> = Arc::from("rndc14");
        let mut routing = RoutingValues::with_limit(10);
        for v in values {
            routing.insert(&table, (*v).to_owned());
        }
        Transaction {
            routing,
            rows: values.len() as u64,
            commit: Position::new("binlog.000001", offset),
            committed_at: offset as u32,
            refusal: ddl.then(|| Refusal::Statement { table: "rndc14".into(), statement: "TRUNCATE rndc14".into() }),
            canary_beat_ms: None,
        }
    }

    #[test]
    fn merges_values_and_ends_at_the_last_commit() {
        let mut batch = Batch::start(tx(100, &["a", "b"], false), 10);
        batch.push(tx(200, &["b", "c"], true));
        batch.push(tx(300, &[], true));
        assert_eq!((batch.transactions, batch.rows, batch.routing.len()), (3, 4, 3));
        assert_eq!(batch.commit, Position::new("binlog.000001", 300));
        assert_eq!(batch.committed_at, 300);
        let (refusal, at) = batch.refusal.expect("ddl kept");
        assert_eq!((refusal.table(), at), (Some("rndc14"), Position::new("binlog.000001", 200)), "the first DDL is reported");
    }

    #[test]
    fn a_batch_over_its_limit_stands_for_everything() {
        let mut batch = Batch::start(tx(1, &["a", "b"], false), 3);
        batch.push(tx(2, &["c", "d"], false));
        assert!(batch.routing.is_everything());
        assert_eq!(batch.commit, Position::new("binlog.000001", 2));
    }
}

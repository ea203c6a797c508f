//! The routing values of a transaction or a batch: what is kept of its rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Distinct routing-column values (before and after images) per tracked
/// table, in their string form, up to a limit.
///
/// # Memory
/// This is all that is held of a transaction's rows while it streams, so it
/// is what bounds memory. Past `limit` distinct values the set gives up and
/// becomes [`RoutingValues::is_everything`]: a change that large is applied by
/// a full hash diff of the index instead of key by key, which is also the
/// cheaper path at that size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingValues {
    by_table: BTreeMap<Arc<str>, BTreeSet<String>>,
    len: usize,
    limit: usize,
    everything: bool,
}

impl RoutingValues {
    /// An empty set that holds at most `limit` distinct values.
    pub fn with_limit(limit: usize) -> Self {
        Self { limit, ..Self::default() }
    }

    /// A set that stands for every document.
    pub fn everything() -> Self {
        Self { everything: true, ..Self::default() }
    }

    /// Adds one value of `table`'s routing column.
    pub fn insert(&mut self, table: &Arc<str>, value: String) {
        if self.everything {
            return;
        }
        let added = match self.by_table.get_mut(&**table) {
            Some(values) => values.insert(value),
            None => self.by_table.entry(table.clone()).or_default().insert(value),
        };
        if added {
            self.len += 1;
            if self.len > self.limit {
                self.give_up();
            }
        }
    }

    /// Adds every value of `other` (another transaction of the same batch).
    pub fn merge(&mut self, other: RoutingValues) {
        if other.everything {
            self.give_up();
            return;
        }
        for (table, values) in other.by_table {
            for value in values {
                self.insert(&table, value);
                if self.everything {
                    return;
                }
            }
        }
    }

    /// Forgets the values: from now on this set stands for every document.
    pub fn give_up(&mut self) {
        self.by_table = BTreeMap::new();
        self.len = 0;
        self.everything = true;
    }

    /// True when the set stands for every document (over its limit, or given up).
    pub fn is_everything(&self) -> bool {
        self.everything
    }

    /// True when no tracked row changed.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.len == 0
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The values of each table, tables and values in order.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.by_table.iter().map(|(t, v)| (&**t, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deduplicates_per_table_and_gives_up_past_the_limit() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut values = RoutingValues::with_limit(3);
        values.insert(&a, "1".into());
        values.insert(&a, "1".into());
        values.insert(&b, "1".into());
        assert_eq!(values.len(), 2);
        assert_eq!(values.tables().map(|(t, v)| (t, v.len())).collect::<Vec<_>>(), [("a", 1), ("b", 1)]);
        values.insert(&a, "2".into());
        assert!(!values.is_everything());
        values.insert(&a, "3".into());
        assert!(values.is_everything());
        assert_eq!(values.tables().count(), 0, "values are dropped, not kept");
        assert!(!values.is_empty());
    }

    #[test]
    fn merging_keeps_the_limit_and_everything_wins() {
        let t: Arc<str> = Arc::from("t");
        let mut batch = RoutingValues::with_limit(2);
        let mut one = RoutingValues::with_limit(2);
        one.insert(&t, "x".into());
        batch.merge(one.clone());
        batch.merge(one);
        assert_eq!(batch.len(), 1);
        batch.merge(RoutingValues::everything());
        assert!(batch.is_everything());
        assert!(RoutingValues::with_limit(5).is_empty());
    }
}

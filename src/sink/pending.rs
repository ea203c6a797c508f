//! Vectors owed: documents written without their vector while the
//! embedding service could not answer.
//!
//! A Bedrock outage must not freeze freshness: a labeler rename or an
//! obsolete NDC is worth applying even when the new text cannot be
//! embedded yet. Such a document is written with all its fields and no
//! vector ([`crate::document::DocumentChange::Owe`]: the old vector goes,
//! it belongs to a text the document no longer has) and recorded in the
//! sorted set `<state_prefix><index version>:pending`, scored by when it
//! was first owed, in the same atomic write as the batch's position. The
//! position may then move on: the set carries what is still owed, durably.
//!
//! Until the vector comes, the document is found by its fields (tags,
//! text) but not by vector search. The writer fills the set as soon as the
//! service answers again (`pipeline::fill`); a write of the document with
//! its vector, or its deletion, takes it out in the same transaction.

use redis::AsyncCommands;

use super::{RedisSink, SinkError};
use crate::document::DocumentKey;

/// How many vectors are owed, and since when the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owed {
    /// Documents waiting for their vector.
    pub count: u64,
    /// Unix seconds when the oldest of them was first owed (`None` when none is).
    pub oldest_since: Option<u64>,
}

impl Owed {
    /// Seconds the oldest owed vector has waited, at `now` (Unix seconds); 0 when none is owed.
    pub fn max_age_secs(&self, now: u64) -> u64 {
        self.oldest_since.map_or(0, |since| now.saturating_sub(since))
    }
}

impl RedisSink {
    /// Up to `max` owed documents, oldest first, after the `skip` owed longest.
    pub async fn owed_oldest(&self, skip: usize, max: usize) -> Result<Vec<DocumentKey>, SinkError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.zrange(&self.keys.pending, skip as isize, (skip + max) as isize - 1).await?;
        Ok(keys.into_iter().map(DocumentKey).collect())
    }

    /// How many vectors are owed and since when (two commands, one round trip).
    pub async fn owed(&self) -> Result<Owed, SinkError> {
        let mut conn = self.conn.clone();
        let (count, oldest): (u64, Vec<(String, f64)>) =
            redis::pipe().zcard(&self.keys.pending).zrange_withscores(&self.keys.pending, 0, 0).query_async(&mut conn).await?;
        Ok(Owed { count, oldest_since: oldest.first().map(|(_, score)| *score as u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::Owed;

    #[test]
    fn the_age_is_the_oldest_entrys_and_zero_when_nothing_is_owed() {
        assert_eq!(Owed::default().max_age_secs(1_000), 0);
        assert_eq!(Owed { count: 3, oldest_since: Some(940) }.max_age_secs(1_000), 60);
        assert_eq!(Owed { count: 1, oldest_since: Some(1_010) }.max_age_secs(1_000), 0, "a clock behind Redis's writer is no negative age");
    }
}

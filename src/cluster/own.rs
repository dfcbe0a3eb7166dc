//! This process's own batches: a write a core published and then stored itself needs no apply when the
//! follower meets it in its stream (its records would all be dropped as duplicates, after a decode, a
//! routing and an admission each). Whichever side comes second — the core's store or the follower — removes
//! the entry, so the set holds only batches one side has seen. A batch the follower meets before the core
//! stored it is applied as any other (duplicate admission waits for the original's commit).
//!
//! The set only saves work: forgetting an entry at worst applies a batch again, which duplicate admission
//! turns into nothing. So it is bounded by clearing it (at [`LIMIT`] entries): a batch that landed in two
//! streams (a publish retried on the next stream after its PubAck came late) leaves an entry for its second
//! copy that nothing removes, and a follower far behind the core's writes leaves many for a while.

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries past which the set is cleared (about 8 MiB).
pub const LIMIT: usize = 1 << 18;

/// (core, counter) of a batch of this incarnation.
pub type OwnId = (u32, u64);

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The core stored its records.
    Stored,
    /// The follower applied it first.
    Applied,
    /// The core failed to store it (its disk): the follower must apply it.
    Failed,
}

#[derive(Default)]
pub struct Own {
    seen: Mutex<HashMap<OwnId, Seen>>,
}

impl Own {
    /// The core stored batch `id`'s records.
    pub fn stored(&self, id: OwnId) {
        self.core_done(id, Seen::Stored);
    }

    /// The core failed to store batch `id`'s records: the follower applies it when it meets it.
    pub fn failed(&self, id: OwnId) {
        self.core_done(id, Seen::Failed);
    }

    fn core_done(&self, id: OwnId, seen: Seen) {
        if let Ok(mut m) = self.seen.lock() {
            if m.remove(&id).is_none() {
                bound(&mut m);
                m.insert(id, seen);
            }
        }
    }

    /// The follower meets batch `id`: true when the core stored it already (nothing to apply).
    pub fn skip(&self, id: OwnId) -> bool {
        match self.seen.lock() {
            Ok(mut m) => match m.remove(&id) {
                Some(Seen::Stored) => true,
                Some(Seen::Failed) => false,
                Some(Seen::Applied) | None => {
                    bound(&mut m);
                    m.insert(id, Seen::Applied);
                    false
                }
            },
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Clears the set when it reached [`LIMIT`] (see the module documentation).
fn bound(m: &mut HashMap<OwnId, Seen>) {
    if m.len() >= LIMIT {
        *m = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whichever_side_comes_second_forgets_the_batch() {
        let own = Own::default();
        own.stored((0, 1));
        assert!(own.skip((0, 1)), "stored first: the follower skips it");
        assert!(own.is_empty());
        assert!(!own.skip((0, 2)), "met first: the follower applies it");
        own.stored((0, 2));
        assert!(own.is_empty());
        own.failed((0, 3));
        assert!(
            !own.skip((0, 3)),
            "a batch the core failed to store is applied"
        );
        assert!(own.is_empty());
        assert!(!own.skip((0, 4)));
        own.failed((0, 4));
        assert!(own.is_empty(), "applied first, then failed: nothing left");
    }

    #[test]
    fn the_set_is_bounded() {
        let own = Own::default();
        for i in 0..LIMIT as u64 + 10 {
            // The second copy of a batch that landed in two streams: nothing removes its entry.
            own.skip((1, i));
        }
        assert!(own.len() <= LIMIT, "{}", own.len());
        assert!(own.len() < 100, "cleared at the limit: {}", own.len());
    }
}

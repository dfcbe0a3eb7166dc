//! This process's own batches: a write a core published and then stored itself needs no apply when the
//! follower meets it in its stream (its records would all be dropped as duplicates, after a decode, a
//! routing and an admission each). Whichever side comes second — the core's store or the follower — removes
//! the entry, so the set holds only batches one side has seen. A batch the follower meets before the core
//! stored it is applied as any other (duplicate admission waits for the original's commit).

use std::collections::HashMap;
use std::sync::Mutex;

/// (core, counter) of a batch of this incarnation.
pub type OwnId = (u32, u64);

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The core stored its records.
    Stored,
    /// The follower applied it first.
    Applied,
}

#[derive(Default)]
pub struct Own {
    seen: Mutex<HashMap<OwnId, Seen>>,
}

impl Own {
    /// The core stored batch `id`'s records.
    pub fn stored(&self, id: OwnId) {
        if let Ok(mut m) = self.seen.lock() {
            if m.remove(&id).is_none() {
                m.insert(id, Seen::Stored);
            }
        }
    }

    /// The follower meets batch `id`: true when the core stored it already (nothing to apply).
    pub fn skip(&self, id: OwnId) -> bool {
        match self.seen.lock() {
            Ok(mut m) => match m.remove(&id) {
                Some(Seen::Stored) => true,
                Some(Seen::Applied) | None => {
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
    }
}

//! A count of things in progress on one core (writes waiting for their commit, reads waiting for a
//! position), each held by a guard that counts itself out when dropped, however its task ends.

use std::cell::Cell;
use std::rc::Rc;

/// One thing counted in `count` while it lives.
pub struct Held(Rc<Cell<usize>>);

impl Held {
    pub fn enter(count: &Rc<Cell<usize>>) -> Held {
        count.set(count.get() + 1);
        Held(Rc::clone(count))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

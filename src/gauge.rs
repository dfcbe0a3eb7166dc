//! A count of things in progress on one core (writes waiting for their commit, reads waiting for a
//! position), each held by a guard that counts itself out when dropped, however its task ends.

use std::cell::Cell;
use std::rc::Rc;

/// Things counted in `count` while it lives: one, or `n` (records of a request).
pub struct Held(Rc<Cell<usize>>, usize);

impl Held {
    pub fn enter(count: &Rc<Cell<usize>>) -> Held {
        Held::enter_n(count, 1)
    }

    pub fn enter_n(count: &Rc<Cell<usize>>, n: usize) -> Held {
        count.set(count.get() + n);
        Held(Rc::clone(count), n)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.set(self.0.get() - self.1);
    }
}

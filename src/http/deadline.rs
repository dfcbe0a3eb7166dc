//! Connection timeouts: what each connection is waiting for (the next request, the rest of a head, the rest
//! of a body) and until when, and the per-core sweeper that kicks the ones past their deadline. A connection
//! only writes two `Cell`s per read; the sweeper, a few times per shortest timeout, walks the list. A kicked
//! connection that was inside a request answers `408` and closes; an idle one just closes (slowloris and
//! abandoned keep-alive connections alike).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Instant;

use futures::channel::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (keep-alive).
    Idle,
    /// A request head has started but is not complete.
    Head,
    /// A head is complete, its body is not.
    Body,
}

/// One connection's deadline, written by the connection, read by the sweeper.
pub struct Watch {
    phase: Cell<Phase>,
    deadline: Cell<Instant>,
    kick: RefCell<Option<oneshot::Sender<Phase>>>,
}

impl Watch {
    pub fn set(&self, phase: Phase, deadline: Instant) {
        self.phase.set(phase);
        self.deadline.set(deadline);
    }
}

/// The connections of one core.
#[derive(Default)]
pub struct Watches {
    list: RefCell<Vec<Weak<Watch>>>,
}

impl Watches {
    /// A new connection's watch (deadline `now + idle` until it says otherwise) and the receiver its read
    /// loop selects on.
    pub fn register(&self, deadline: Instant) -> (Rc<Watch>, oneshot::Receiver<Phase>) {
        let (tx, rx) = oneshot::channel();
        let w = Rc::new(Watch {
            phase: Cell::new(Phase::Idle),
            deadline: Cell::new(deadline),
            kick: RefCell::new(Some(tx)),
        });
        self.list.borrow_mut().push(Rc::downgrade(&w));
        (w, rx)
    }

    /// Kicks every connection past its deadline at `now` (each once); forgets closed ones. Returns the
    /// number kicked.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut kicked = 0;
        self.list.borrow_mut().retain(|weak| {
            let Some(w) = weak.upgrade() else {
                return false;
            };
            if now < w.deadline.get() {
                return true;
            }
            if let Some(tx) = w.kick.borrow_mut().take() {
                let _ = tx.send(w.phase.get());
                kicked += 1;
            }
            false
        });
        kicked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn kicks_only_what_is_late_and_each_once() {
        let ws = Watches::default();
        let t0 = Instant::now();
        let (a, mut ra) = ws.register(t0 + Duration::from_secs(10));
        let (b, mut rb) = ws.register(t0 + Duration::from_secs(10));
        b.set(Phase::Head, t0 + Duration::from_millis(5));
        assert_eq!(ws.sweep(t0), 0);
        assert_eq!(ws.sweep(t0 + Duration::from_millis(6)), 1);
        assert_eq!(rb.try_recv().unwrap(), Some(Phase::Head));
        assert_eq!(ra.try_recv().unwrap(), None);
        assert_eq!(
            ws.sweep(t0 + Duration::from_secs(1)),
            0,
            "b is kicked once, a not yet due"
        );
        drop(a);
        assert_eq!(
            ws.sweep(t0 + Duration::from_secs(11)),
            0,
            "a closed: forgotten, not kicked"
        );
        assert!(ws.list.borrow().is_empty());
    }
}

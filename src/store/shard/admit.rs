//! Taking a write in: back-pressure (`--max-pending-records`, `--max-pending-writes`, `--max-log-mib`),
//! duplicate admission
//! (a message equal to a stored or in-flight record is not stored again) and the hand-off to the commit loop.

use futures::channel::oneshot;

use crate::gauge::Held;

use super::commit::{Cmd, Job};
use super::Shard;
use crate::config::Durability;
use crate::message::Message;
use crate::store::recent::content_hash;
use crate::store::StoreError;

/// What admission kept of a request.
struct Admitted {
    msgs: Vec<Message>,
    /// `async`: the indexes handed out (the records are visible already).
    indexes: Vec<usize>,
    /// A dropped message repeats a record still in flight: the answer waits for that commit.
    repeats_inflight: bool,
}

impl Shard {
    /// Stores messages owned by this core. Resolves once they are durable (sync) or visible (async). A
    /// message equal to a stored or in-flight record (same tag, time and value bits: a retried request)
    /// is not stored again; its answer still waits for the commit of the record it repeats.
    pub async fn append(&self, msgs: Vec<Message>) -> Result<(), StoreError> {
        self.append_from(msgs, true).await
    }

    /// [`Shard::append`] for records another node accepted (cluster mode's apply path): not held to
    /// `--max-pending-writes`, which bounds client requests; the apply window bounds these
    /// (`cluster/follow.rs`), and the other bounds (records pending, log size) hold as for any write.
    pub async fn append_replicated(&self, msgs: Vec<Message>) -> Result<(), StoreError> {
        self.append_from(msgs, false).await
    }

    async fn append_from(&self, msgs: Vec<Message>, client: bool) -> Result<(), StoreError> {
        self.shed(msgs.len(), client)?;
        self.check_targets(&msgs).await?;
        // Counted until this append ends, however it ends (a dropped connection included); replicated
        // appends are bounded by the apply window instead.
        let _waiting = client.then(|| Held::enter(&self.pending_writes));
        let a = self.admit_new(msgs);
        let n = a.msgs.len();
        if n == 0 && !a.repeats_inflight {
            return Ok(());
        }
        self.pending.set(self.pending.get() + n);
        match self.durability {
            Durability::Sync => {
                let (tx, rx) = oneshot::channel();
                let job = Job {
                    msgs: a.msgs,
                    preassigned: None,
                    done: Some(tx),
                };
                if let Err(e) = self.queue.unbounded_send(Cmd::Append(job)) {
                    if let Cmd::Append(job) = e.into_inner() {
                        let mut tags = self.tags.borrow_mut();
                        for m in job.msgs.iter().rev() {
                            self.segment_mut(&mut tags, &m.tag, m.record.time)
                                .inflight_unpush();
                        }
                    }
                    return Err(self.stopped(n));
                }
                rx.await
                    .unwrap_or_else(|_| Err(StoreError::Unavailable("commit loop stopped".into())))
            }
            Durability::Async => {
                let job = Job {
                    msgs: a.msgs,
                    preassigned: Some(a.indexes),
                    done: None,
                };
                self.queue
                    .unbounded_send(Cmd::Append(job))
                    .map_err(|_| self.stopped(n))
            }
        }
    }

    /// `Err(Overloaded)` when `n` more records, or one more waiting write, would pass a bound, or the log
    /// reached its bound;
    /// `Err(Unavailable)` for an async write while the log is failing.
    fn shed(&self, n: usize, client: bool) -> Result<(), StoreError> {
        let pending = self.pending.get();
        if pending > 0 && pending + n > self.max_pending {
            self.pending_refused.set(self.pending_refused.get() + 1);
            return Err(StoreError::Overloaded(format!(
                "core {} has {pending} records waiting for the disk (--max-pending-records {})",
                self.id, self.max_pending
            )));
        }
        let backlog = self.log_backlog();
        if backlog >= self.max_log_bytes {
            // Checkpoints are behind (or failing): the log may not grow without bound meanwhile.
            self.log_refused.set(self.log_refused.get() + 1);
            return Err(StoreError::Overloaded(format!(
                "core {}'s log holds {} MiB not yet in tag files (--max-log-mib {}); checkpoints are behind",
                self.id,
                backlog >> 20,
                self.max_log_bytes >> 20
            )));
        }
        if self.durability == Durability::Async && self.log.broken() {
            // An async write is acknowledged before it is durable: while the log cannot be written, one
            // would be acknowledged with nowhere durable to go.
            return Err(StoreError::Unavailable(format!(
                "core {}'s log failed a write; async writes are refused until a new log generation takes them",
                self.id
            )));
        }
        let (bound, waiting) = (self.max_pending_writes, self.pending_writes.get());
        if client && self.durability == Durability::Sync && bound > 0 && waiting >= bound {
            self.writes_refused.set(self.writes_refused.get() + 1);
            return Err(StoreError::Overloaded(format!(
                "core {} has {waiting} writes waiting for the disk (--max-pending-writes {bound})",
                self.id
            )));
        }
        Ok(())
    }

    /// Drops the messages that repeat a stored or in-flight record (or an earlier message of the same
    /// request) and takes in the rest: in flight under sync durability; given their indexes and made visible
    /// under async. Infallible: a tag file that cannot be read to look for the original counts as not
    /// holding it (the message is stored; at worst twice, never lost), and queries report the file.
    fn admit_new(&self, mut msgs: Vec<Message>) -> Admitted {
        let mut tags = self.tags.borrow_mut();
        self.bound_mappings(&mut tags);
        let mut indexes = Vec::new();
        let mut repeats_inflight = false;
        // Filtered in place: the common one-message request keeps its vector.
        msgs.retain(|m| {
            let key = m.record.time.div_euclid(self.segment_ns);
            let seg = self.segment_mut(&mut tags, &m.tag, m.record.time);
            // Hashed once: the in-flight queue and the committed index keep it.
            let hash = content_hash(&m.record);
            let inflight = seg.holds_inflight(&m.record, hash);
            let stored = !inflight
                && seg
                    .holds_committed(|| self.layout.tag_file(key, &m.tag), &m.record, hash)
                    .unwrap_or(false);
            if inflight || stored {
                repeats_inflight |= inflight;
                self.duplicates.set(self.duplicates.get() + 1);
                return false;
            }
            match self.durability {
                Durability::Sync => seg.inflight_push(m.record, hash),
                Durability::Async => {
                    indexes.push(seg.next_index);
                    seg.next_index += 1;
                    seg.push_hashed(m.record, Some(hash), self.epoch.get());
                }
            }
            true
        });
        Admitted {
            msgs,
            indexes,
            repeats_inflight,
        }
    }

    /// The error of an append the commit loop can no longer take; its `n` records are not pending.
    fn stopped(&self, n: usize) -> StoreError {
        self.pending.set(self.pending.get().saturating_sub(n));
        StoreError::Unavailable("commit loop stopped".into())
    }
}

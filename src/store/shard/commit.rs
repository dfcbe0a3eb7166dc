//! The commit loop: forms groups from everything queued and appends each to the [`DurableLog`] as one batch.
//! Up to [`COMMITS_IN_FLIGHT`] batches are on their way at once (the next group is written while the previous
//! one is still on its way to the disk); each group finishes (records visible, waiters answered) only after
//! every earlier one, so acknowledgements and record indexes stay in log order, and a failure fails all later
//! groups of its generation (the log's contract, `store/log/mod.rs`).

use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::future::{LocalBoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use glommio::sync::{Semaphore, StaticPermit};

use super::{Shard, COMMITS_IN_FLIGHT, COMMIT_BYTES_MAX};
use crate::message::Message;
use crate::store::log::Retired;
use crate::store::{wal, StoreError};

pub(super) struct Job {
    pub msgs: Vec<Message>,
    /// `async`: indexes handed out (and records made visible) at append time.
    pub preassigned: Option<Vec<usize>>,
    pub done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

pub(super) enum Cmd {
    Append(Job),
    /// Switch the log to its prepared generation once every earlier batch finished.
    Rotate(oneshot::Sender<Result<Retired, StoreError>>),
    /// A checkpoint's pre-images, made durable in the new generation before tag files are rewritten.
    Checkpoint {
        payload: Vec<u8>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Finish what is queued and stop (shutdown).
    Close(oneshot::Sender<()>),
}

/// A launched group: resolves once its records are visible and its waiters answered.
type Group = Shared<LocalBoxFuture<'static, ()>>;

impl Shard {
    pub(super) async fn commit_loop(self: Rc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let slots = Rc::new(Semaphore::new(COMMITS_IN_FLIGHT as u64));
        let mut payload = Vec::new();
        let mut last: Option<Group> = None;
        while let Some(first) = rx.next().await {
            // Take a commit slot *before* forming the group: everything that queued while the pipeline was
            // full then joins one commit instead of waiting behind a group of one.
            let Ok(mut permit) = slots.acquire_static_permit(1).await else {
                break;
            };
            let mut group: Vec<Job> = Vec::new();
            payload.clear();
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Append(job) => {
                        if !job.msgs.is_empty() {
                            self.live_appends.set(self.live_appends.get() + 1);
                        }
                        self.encode(&job, &mut payload);
                        group.push(job);
                    }
                    Cmd::Checkpoint { payload: p, done } => {
                        payload.extend_from_slice(&p);
                        group.push(Job {
                            msgs: Vec::new(),
                            preassigned: Some(Vec::new()),
                            done: Some(done),
                        });
                    }
                    Cmd::Rotate(done) => {
                        self.launch(&mut last, permit, &mut payload, &mut group);
                        if let Some(l) = last.take() {
                            l.await;
                        }
                        let rotated = self.log.rotate().await;
                        if rotated.is_ok() {
                            self.epoch.set(self.epoch.get().wrapping_add(1));
                            self.live_appends.set(0);
                            *self.pre_logged.borrow_mut() = Default::default();
                            self.log_base.set(0);
                        }
                        let _ = done.send(rotated);
                        permit = match slots.acquire_static_permit(1).await {
                            Ok(p) => p,
                            Err(_) => return,
                        };
                    }
                    Cmd::Close(done) => {
                        self.launch(&mut last, permit, &mut payload, &mut group);
                        if let Some(l) = last.take() {
                            l.await;
                        }
                        let _ = done.send(());
                        return;
                    }
                }
                if payload.len() < COMMIT_BYTES_MAX {
                    next = rx.try_recv().ok();
                }
            }
            self.launch(&mut last, permit, &mut payload, &mut group);
        }
        if let Some(l) = last.take() {
            l.await;
        }
    }

    /// Encodes a job's records, handing out indexes for sync jobs (async ones have them already).
    fn encode(&self, job: &Job, payload: &mut Vec<u8>) {
        let mut tags = self.tags.borrow_mut();
        for (i, m) in job.msgs.iter().enumerate() {
            let index = match &job.preassigned {
                Some(idx) => idx[i],
                None => {
                    let seg = self.segment_mut(&mut tags, &m.tag, m.record.time);
                    seg.next_index += 1;
                    seg.next_index - 1
                }
            };
            wal::put_record(payload, &m.tag, index as u64, &m.record);
        }
    }

    /// Appends `payload` for `group` (both taken) as one batch, holding `permit` (one of the
    /// [`COMMITS_IN_FLIGHT`] slots) until the group finished, after the group before it.
    fn launch(
        self: &Rc<Self>,
        last: &mut Option<Group>,
        permit: StaticPermit,
        payload: &mut Vec<u8>,
        group: &mut Vec<Job>,
    ) {
        if group.is_empty() {
            return;
        }
        let ack = self.log.append(payload);
        payload.clear();
        let (shard, group, prev) = (Rc::clone(self), std::mem::take(group), last.take());
        let finished = async move {
            let r = ack.await.map(|_| ());
            if let Some(p) = prev {
                p.await;
            }
            shard.finish(group, &r);
            drop(permit);
        }
        .boxed_local()
        .shared();
        glommio::spawn_local(finished.clone()).detach();
        *last = Some(finished);
    }

    /// After a batch (and every earlier one) finished: makes its records visible and answers its waiters.
    fn finish(&self, group: Vec<Job>, r: &Result<(), StoreError>) {
        let done: usize = group.iter().map(|j| j.msgs.len()).sum();
        if r.is_ok() {
            self.io_stats.borrow_mut().commit_records_total += done as u64;
        }
        let pending = self.pending.get();
        assert!(
            done <= pending,
            "BUG: {done} records finished, {pending} pending"
        );
        self.pending.set(pending - done);
        {
            let mut tags = self.tags.borrow_mut();
            for job in group.iter().filter(|j| j.preassigned.is_none()) {
                for m in &job.msgs {
                    let seg = self.segment_mut(&mut tags, &m.tag, m.record.time);
                    let popped = seg.inflight_pop();
                    assert!(
                        popped.as_ref().map(|(r, _)| r) == Some(&m.record),
                        "BUG: commits finished out of queue order: {} at {} finished, {popped:?} was next",
                        m.tag,
                        m.record.time
                    );
                    match r {
                        Ok(()) => {
                            seg.push_hashed(m.record, popped.map(|(_, h)| h), self.epoch.get());
                            assert!(
                                seg.committed() <= seg.next_index,
                                "BUG: record {} of {} pushed past its index {}",
                                seg.committed(),
                                m.tag,
                                seg.next_index
                            );
                        }
                        // Nothing after a failed commit is ever committed to this log: rewind.
                        Err(_) => seg.next_index = seg.committed(),
                    }
                }
            }
        }
        for job in group {
            if let Some(done) = job.done {
                let _ = done.send(r.clone());
            }
        }
    }
}

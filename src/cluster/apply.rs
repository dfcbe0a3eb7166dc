//! The apply path's core half: each core takes the parts of replicated batches it owns (`cluster/follow.rs`
//! routes them) and appends them to its shard like a client's write, so duplicate admission stores a record
//! once however many times it arrives (its own node's write, a retried publish in a second stream, a batch
//! consumed again after a restart), and the append answers only once the records are durable and visible.

use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;

use super::follow::{ApplyError, ApplyJob};
use crate::store::shard::Shard;
use crate::store::StoreError;

/// How long the loop waits for a job before it looks again. The jobs come from another thread (a foreign
/// wake); this bounds what a lost wakeup (../GLOMMIO.md traps) could cost.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// Appends every job sent to this core until the link thread drops its sender.
pub async fn run(shard: Rc<Shard>, mut jobs: mpsc::Receiver<ApplyJob>) {
    loop {
        let next =
            futures::future::select(jobs.next(), Box::pin(glommio::timer::sleep(LOOK_AGAIN))).await;
        let job = match next {
            futures::future::Either::Left((Some(job), _)) => job,
            futures::future::Either::Left((None, _)) => return,
            futures::future::Either::Right(_) => continue,
        };
        let shard = Rc::clone(&shard);
        glommio::spawn_local(async move {
            // The retention cutoff as of the batch's acceptance (its node's clock), the same on every node:
            // a record the accepting node took is kept everywhere (retention's sweep removes it later).
            let cutoff = shard.retention_cutoff_at(job.clock);
            let mut msgs = job.msgs;
            msgs.retain(|m| m.record.time >= cutoff);
            let r = if msgs.is_empty() {
                Ok(())
            } else {
                shard.append_replicated(msgs).await.map_err(|e| match e {
                    StoreError::Corrupt(e) => ApplyError::Damaged(e),
                    e => ApplyError::Retry(e.to_string()),
                })
            };
            let _ = job.done.send(r);
        })
        .detach();
    }
}

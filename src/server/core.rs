//! One core: its shard, its listener, its view of the mesh, and the request operations that route a
//! tag to its owner (locally or through the mesh). Runs entirely on one pinned executor.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::future::join_all;
use futures::SinkExt;
use glommio::channels::channel_mesh::Senders;

use crate::config::Config;
use crate::message::Message;
use crate::query::answer::Api;
use crate::query::params::Window;
use crate::server::mesh::{ExportChunk, Forward};
use crate::server::report::Stats;
use crate::store::shard::read::ExportError;
use crate::store::shard::Shard;
use crate::store::StoreError;

pub struct Core {
    pub(super) id: usize,
    pub(super) shards: usize,
    pub(super) shard: Rc<Shard>,
    pub(super) config: Rc<Config>,
    pub(super) stats: RefCell<Stats>,
    /// Every open connection's timeout (`http/deadline.rs`), swept by a task of this core.
    pub(super) watches: crate::http::deadline::Watches,
    /// Load shedding (`server/overload.rs`).
    pub(super) overload: Rc<crate::server::overload::Overload>,
    /// Cumulative counters for `/metrics` (`server/metrics.rs`).
    pub(super) metrics: RefCell<crate::server::metrics::Metrics>,
    /// Open client connections.
    pub(super) connections: Rc<Cell<usize>>,
    /// Connections refused with 503 over `--max-connections`.
    pub(super) connections_refused: Cell<u64>,
    /// Line-protocol points to messages (`--lp-tag-key`, `--lp-fields`; checked at start).
    pub(super) lp: crate::ingest::lineproto::Mapping,
    /// This core's copy of the access tokens.
    pub(super) tokens: RefCell<crate::server::tokens::Tokens>,
    pub(super) senders: Option<Senders<Forward>>,
    /// Cluster mode: this core's publishing and applied positions (`cluster/member.rs`).
    pub(super) member: Option<crate::cluster::member::Member>,
}

fn unavailable(k: usize) -> StoreError {
    StoreError::Unavailable(format!("core {k} is not answering"))
}

impl Core {
    /// `Ok` when this core takes a new write now; else the 503 to answer.
    pub fn admit_write(&self) -> Result<(), StoreError> {
        self.overload.admit(self.id)
    }

    fn owner(&self, tag: &str) -> usize {
        crate::tag::owner(crate::tag::hash(tag), self.shards)
    }

    /// Stores messages on their owners; resolves when every owner has stored its part.
    pub async fn save(&self, msgs: Vec<Message>) -> Result<(), StoreError> {
        if self.shards == 1 {
            return self.shard.append(msgs).await;
        }
        let mut parts: Vec<Vec<Message>> = (0..self.shards).map(|_| Vec::new()).collect();
        for m in msgs {
            let k = self.owner(&m.tag);
            parts[k].push(m);
        }
        let futs = parts
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(k, part)| async move {
                if k == self.id {
                    return self.shard.append(part).await;
                }
                self.metrics.borrow_mut().forwarded += part.len() as u64;
                let senders = self.senders.as_ref().ok_or_else(|| unavailable(k))?;
                let (tx, rx) = oneshot::channel();
                senders
                    .send_to(k, Forward::Save(part, tx))
                    .await
                    .map_err(|_| unavailable(k))?;
                rx.await.unwrap_or_else(|_| Err(unavailable(k)))
            });
        join_all(futs).await.into_iter().collect()
    }

    /// `/api` on the owner. `Ok(None)`: unknown tag.
    pub async fn api(&self, w: Window) -> Result<Option<Vec<u8>>, StoreError> {
        let k = self.owner(&w.tag);
        if k == self.id {
            return self.answer(&w).await;
        }
        let senders = self
            .senders
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("no mesh".into()))?;
        let (tx, rx) = oneshot::channel();
        senders
            .send_to(k, Forward::Api(w, tx))
            .await
            .map_err(|_| unavailable(k))?;
        rx.await.unwrap_or_else(|_| Err(unavailable(k)))
    }

    /// `/export` on the owner: a stream of NDJSON chunks.
    pub async fn export(&self, w: Window) -> mpsc::Receiver<ExportChunk> {
        let (mut tx, rx) = mpsc::channel(4);
        let k = self.owner(&w.tag);
        if k == self.id {
            glommio::spawn_local(Rc::clone(&self.shard).export(w, tx)).detach();
        } else if let Some(senders) = &self.senders {
            if senders
                .send_to(k, Forward::Export(w, tx.clone()))
                .await
                .is_err()
            {
                let _ = tx.send(Err(ExportError::Failed(unavailable(k)))).await;
            }
        } else {
            let no_mesh = StoreError::Unavailable("no mesh".into());
            let _ = tx.send(Err(ExportError::Failed(no_mesh))).await;
        }
        rx
    }

    /// The rendered `/api` answer of this core's shard.
    async fn answer(&self, w: &Window) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(w.samples * 200 + 128);
        let ties = match self.member {
            Some(_) => crate::query::asof::Ties::GreatestBits,
            None => crate::query::asof::Ties::LastReceived,
        };
        let found = self
            .shard
            .read(
                w,
                Api {
                    w,
                    out: &mut out,
                    ties,
                },
            )
            .await?;
        Ok(found.map(|()| out))
    }

    pub(super) async fn serve_forward(self: Rc<Self>, msg: Forward) {
        // An export's pace is its reader's, possibly a stalled one: it does not keep the probe running.
        let _serving = (!matches!(msg, Forward::Export(..))).then(|| self.overload.enter());
        match msg {
            Forward::Save(msgs, reply) => {
                let _ = reply.send(self.shard.append(msgs).await);
            }
            Forward::Api(w, reply) => {
                let _ = reply.send(self.answer(&w).await);
            }
            Forward::Export(w, tx) => Rc::clone(&self.shard).export(w, tx).await,
            Forward::Metrics(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Forward::Tags(reply) => {
                let _ = reply.send(self.shard.tag_counts());
            }
        }
    }

    /// This core's counters for a scrape.
    pub fn snapshot(&self) -> crate::server::metrics::Snapshot {
        let m = self.metrics.borrow();
        let io = self.shard.io_stats();
        let c = self.shard.counters();
        crate::server::metrics::Snapshot {
            core: self.id,
            requests: m.requests.iter().map(|(&(r, s), &n)| (r, s, n)).collect(),
            service: m.service.clone(),
            records_in: m.records_in,
            bytes_in: m.bytes_in,
            forwarded: m.forwarded,
            retention_deleted: m.retention_deleted,
            commits: io.commits_total,
            commit_records: io.commit_records_total,
            commit: io.commit_hist.clone(),
            checkpoints: io.checkpoints_total,
            checkpoint_failures: io.checkpoint_failures_total,
            checkpoint_deferred: io.checkpoint_deferred_total,
            checkpoint_files: io.checkpoint_files_total,
            checkpoint_files_max: io.checkpoint_files_max,
            pending_records: c.pending_records,
            shed: self.overload.shed_total.get(),
            pending_refused: c.pending_refused,
            replication_refused: self.member.as_ref().map_or(0, |m| m.refused.get()),
            writes_refused: c.writes_refused,
            log_refused: c.log_refused,
            duplicates: c.duplicates,
            connections_refused: self.connections_refused.get(),
            connections: self.connections.get() as u64,
            tags: c.tags,
            tag_file_bytes: c.tag_file_bytes,
            log_bytes: c.log_bytes,
        }
    }

    /// Asks every other core for its answer to `ask` (one at a time); a core that does not answer is
    /// left out.
    async fn from_peers<T>(&self, ask: fn(oneshot::Sender<T>) -> Forward) -> Vec<T> {
        let mut got = Vec::new();
        if let Some(senders) = &self.senders {
            for k in (0..self.shards).filter(|&k| k != self.id) {
                let (tx, rx) = oneshot::channel();
                if senders.send_to(k, ask(tx)).await.is_ok() {
                    if let Ok(t) = rx.await {
                        got.push(t);
                    }
                }
            }
        }
        got
    }

    /// `/tags`: every core's tags with their record counts, most records first (then by name), at most
    /// `limit` of them, and how many there are in all.
    pub async fn tags(&self, limit: usize) -> (Vec<(String, u64)>, usize) {
        let mut all = self.shard.tag_counts();
        all.extend(self.from_peers(Forward::Tags).await.into_iter().flatten());
        let total = all.len();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(limit);
        (all, total)
    }

    /// `/metrics`: every core's counters, rendered.
    pub async fn metrics_text(&self) -> String {
        let mut all = vec![self.snapshot()];
        all.extend(self.from_peers(Forward::Metrics).await);
        all.sort_by_key(|s| s.core);
        let mut text = crate::server::metrics::render(&all);
        if let Some(m) = &self.member {
            crate::server::metrics::render_cluster(&mut text, &m.applied);
        }
        text
    }
}

//! One core: its shard, its listener, its view of the mesh, and the request operations that route a
//! tag to its owner (locally or through the mesh). Runs entirely on one pinned executor.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::future::{join_all, select, Either};
use futures::{FutureExt, SinkExt};
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::net::TcpListener;

use crate::config::Config;
use crate::message::Message;
use crate::query::answer::Api;
use crate::query::params::Window;
use crate::server::mesh::{ExportChunk, Forward};
use crate::server::report::{self, Stats};
use crate::store::shard::read::ExportError;
use crate::store::shard::{Shard, ShardOptions};
use crate::store::StoreError;

use crate::http::conn::Stop;

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
    senders: Option<Senders<Forward>>,
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
    pub async fn api(&self, w: Window) -> Result<Option<Vec<u8>>, String> {
        let k = self.owner(&w.tag);
        if k == self.id {
            return self.answer(&w).await;
        }
        let senders = self.senders.as_ref().ok_or("no mesh")?;
        let (tx, rx) = oneshot::channel();
        senders
            .send_to(k, Forward::Api(w, tx))
            .await
            .map_err(|_| unavailable(k).to_string())?;
        rx.await.unwrap_or_else(|_| Err(unavailable(k).to_string()))
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
    async fn answer(&self, w: &Window) -> Result<Option<Vec<u8>>, String> {
        let mut out = Vec::with_capacity(w.samples * 200 + 128);
        let read = self.shard.read(w, Api { w, out: &mut out }).await;
        match read {
            Ok(found) => Ok(found.map(|()| out)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn serve_forward(self: Rc<Self>, msg: Forward) {
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
            pending_records: c.pending_records,
            shed: self.overload.shed_total.get(),
            pending_refused: c.pending_refused,
            writes_refused: c.writes_refused,
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
        crate::server::metrics::render(&all)
    }
}

/// Everything a core needs from the main thread.
pub struct Start {
    pub cpu: usize,
    pub listener: std::net::TcpListener,
    pub(super) config: Rc<Config>,
    pub segment_ns: i64,
    pub unique: String,
    pub mesh: Option<MeshBuilder<Forward, Full>>,
    pub(super) shards: usize,
    pub stop: oneshot::Receiver<()>,
    pub ready: std::sync::mpsc::Sender<Result<String, String>>,
    /// Cores whose connections have all finished (shutdown barrier; forwarded work keeps being served).
    pub drained: Arc<AtomicUsize>,
    /// Access tokens as loaded at start, and later sets after each SIGHUP (`tokens.rs`).
    pub(super) tokens: crate::server::tokens::Tokens,
    pub token_reloads: std::sync::mpsc::Receiver<crate::server::tokens::Tokens>,
}

pub async fn run(s: Start) -> Result<(), String> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::io::FromRawFd;

    let (senders, receivers, id) = match s.mesh {
        Some(mesh) => {
            let (tx, rx) = mesh
                .join()
                .await
                .map_err(|_| "joining the core mesh failed".to_string())?;
            let id = tx.peer_id();
            (Some(tx), Some(rx), id)
        }
        None => (None, None, 0),
    };
    let layout = crate::store::layout::Layout::new(&s.config.data_dir);
    let trace = match &s.config.trace_io {
        Some(file) => {
            let mut name = file.clone().into_os_string();
            name.push(format!(".c{id}"));
            let t = crate::store::iotrace::Tracer::create(name.as_ref(), &s.config.data_dir)
                .map_err(|e| format!("--trace-io {}: {e}", file.display()))?;
            Some(std::rc::Rc::new(t))
        }
        None => None,
    };
    let opened = Shard::open(ShardOptions {
        id,
        shards: s.shards,
        layout,
        segment_ns: s.segment_ns,
        durability: s.config.durability,
        retention_ns: s.config.retention_ns(),
        run: s.unique,
        reads: s.config.reads,
        read_cache_bytes: s.config.read_cache_mib << 20,
        device: crate::store::device::for_config(s.config.fault_file.clone(), trace),
        max_pending_records: s.config.max_pending_records,
        max_pending_writes: s.config.max_pending_writes,
    })
    .await;
    let shard = match opened {
        Ok(shard) => shard,
        Err(e) => {
            let _ = s.ready.send(Err(format!("core {id}: {e}")));
            return Err(e);
        }
    };
    let core = Rc::new(Core {
        id,
        shards: s.shards,
        shard,
        config: Rc::clone(&s.config),
        stats: RefCell::new(Stats::default()),
        watches: Default::default(),
        overload: Rc::new(crate::server::overload::Overload::new(s.config.shed_lag)),
        lp: s.config.lp_mapping()?,
        tokens: RefCell::new(s.tokens.clone()),
        metrics: RefCell::default(),
        connections: Rc::default(),
        connections_refused: Cell::new(0),
        senders,
    });
    if let Some(mut rx) = receivers {
        for (_, stream) in rx.streams() {
            let core = Rc::clone(&core);
            glommio::spawn_local(async move {
                while let Some(msg) = stream.recv().await {
                    glommio::spawn_local(Rc::clone(&core).serve_forward(msg)).detach();
                }
            })
            .detach();
        }
    }
    // SAFETY: the descriptor comes from a listening socket we own and hand over whole.
    let listener = unsafe { TcpListener::from_raw_fd(s.listener.into_raw_fd()) };
    let (lo, hi) = crate::tag::owned_range(id, s.shards);
    let hi = hi.map_or("2^64".to_string(), |h| format!("{h:#018x}"));
    let _ = s.ready.send(Ok(format!(
        "core {id}: cpu {}, tag-hash [{lo:#018x}, {hi}), listening on {}",
        s.cpu, s.config.listen
    )));

    let closing = Rc::new(Cell::new(false));
    if !s.config.shed_lag.is_zero() {
        glommio::spawn_local(Rc::clone(&core.overload).probe(Rc::clone(&closing))).detach();
    }
    // Checkpoints and retention run in their own task queue with a small share, so they yield to
    // request handling instead of stalling it.
    let background_tq = glommio::executor().create_task_queue(
        glommio::Shares::Static(100),
        glommio::Latency::NotImportant,
        "background",
    );
    let background = {
        let (core, closing) = (Rc::clone(&core), Rc::clone(&closing));
        glommio::spawn_local_into(
            async move {
                let mut last = Instant::now();
                while !closing.get() {
                    let tick = core
                        .config
                        .checkpoint_interval
                        .min(Duration::from_millis(200));
                    glommio::timer::sleep(tick.max(Duration::from_millis(1))).await;
                    if core
                        .shard
                        .checkpoint_due(last.elapsed(), core.config.checkpoint_interval)
                    {
                        if let Err(e) = core.shard.checkpoint().await {
                            eprintln!("core {}: checkpoint failed: {e}", core.id);
                        }
                        last = Instant::now();
                    }
                    let deleted = core.shard.enforce_retention().await;
                    core.metrics.borrow_mut().retention_deleted += deleted as u64;
                }
            },
            background_tq,
        )
        .map_err(|e| format!("core {id}: starting the background task: {e}"))?
    };
    if !s.config.report_interval.is_zero() {
        let core = Rc::clone(&core);
        let every = s.config.report_interval;
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(every).await;
                let shed = core.overload.shed.replace(0);
                println!(
                    "{}{}",
                    report::line(
                        core.id,
                        &core.stats,
                        &mut core.shard.io_stats_mut(),
                        every,
                        core.shard.tag_count(),
                    ),
                    if shed > 0 {
                        format!(" | shed {shed} writes (saturated)")
                    } else {
                        String::new()
                    }
                );
            }
        })
        .detach();
    }

    {
        // The timeout sweeper: a few passes per shortest timeout.
        let core = Rc::clone(&core);
        let c = &core.config;
        let every = (c.header_timeout.min(c.body_timeout).min(c.idle_timeout) / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(every).await;
                core.watches.sweep(Instant::now());
            }
        })
        .detach();
    }

    // Token sets reloaded on SIGHUP arrive from the main thread's signal thread.
    {
        let (core, reloads) = (Rc::clone(&core), s.token_reloads);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                while let Ok(t) = reloads.try_recv() {
                    core.tokens.replace(t);
                }
            }
        })
        .detach();
    }
    let stop: Stop = s.stop.shared();
    let active = Rc::clone(&core.connections);
    let mut accept_failures = AcceptFailures::default();
    loop {
        let accepted = match select(Box::pin(listener.accept()), stop.clone()).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => break,
        };
        match accepted {
            Ok(mut stream) if active.get() >= core.config.max_connections => {
                // Over the per-core limit: say so and close, without holding a slot.
                core.connections_refused
                    .set(core.connections_refused.get() + 1);
                glommio::spawn_local(async move {
                    let mut out = Vec::new();
                    let body = b"{\"error\":\"too many connections on this core; retry shortly\"}";
                    crate::http::response::json(&mut out, 503, body, true, "Retry-After: 1\r\n");
                    let _ = futures::AsyncWriteExt::write_all(&mut stream, &out).await;
                    let _ = futures::AsyncWriteExt::close(&mut stream).await;
                })
                .detach();
            }
            Ok(stream) => {
                accept_failures.succeeded();
                let (core, stop, active) = (Rc::clone(&core), stop.clone(), Rc::clone(&active));
                active.set(active.get() + 1);
                glommio::spawn_local(async move {
                    crate::http::conn::serve(core, stream, stop).await;
                    active.set(active.get() - 1);
                })
                .detach();
            }
            Err(e) => {
                let (wait, report) = accept_failures.failed(Instant::now());
                if let Some(times) = report {
                    eprintln!(
                        "core {id}: accept: {e} ({times} failures since the last report; retrying every {} ms)",
                        wait.as_millis()
                    );
                }
                glommio::timer::sleep(wait).await;
            }
        }
    }
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    while active.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    s.drained.fetch_add(1, Ordering::SeqCst);
    while s.drained.load(Ordering::SeqCst) < s.shards && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    closing.set(true);
    background.await;
    core.shard
        .close()
        .await
        .map_err(|e| format!("core {id}: final flush failed: {e}"))
}

/// Failed accepts in a row (EMFILE when out of descriptors, ENOBUFS, ...): the retry waits twice as long
/// each time, 10 ms to 1 s, so a core out of descriptors neither spins nor floods the log, which gets one
/// line per 10 s at most.
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u32,
    unreported: u64,
    reported: Option<Instant>,
}

impl AcceptFailures {
    const FIRST_WAIT: Duration = Duration::from_millis(10);
    const MAX_WAIT: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(10);

    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// How long to wait before the next accept, and the failures to report now (if a report is due).
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let wait = Self::FIRST_WAIT
            .saturating_mul(1 << self.in_a_row.min(7))
            .min(Self::MAX_WAIT);
        self.in_a_row += 1;
        self.unreported += 1;
        let due = self
            .reported
            .is_none_or(|at| now.duration_since(at) >= Self::REPORT_EVERY);
        if !due {
            return (wait, None);
        }
        self.reported = Some(now);
        (wait, Some(std::mem::take(&mut self.unreported)))
    }
}

#[cfg(test)]
mod accept_tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_and_report_rarely() {
        let mut f = AcceptFailures::default();
        let t = Instant::now();
        let (w, r) = f.failed(t);
        assert_eq!((w, r), (Duration::from_millis(10), Some(1)));
        let waits: Vec<_> = (0..9)
            .map(|i| f.failed(t + Duration::from_millis(i)).0)
            .collect();
        assert_eq!(waits[0], Duration::from_millis(20));
        assert_eq!(waits[5], Duration::from_millis(640));
        assert_eq!(waits[8], Duration::from_secs(1), "capped");
        assert_eq!(
            f.failed(t + Duration::from_secs(5)).1,
            None,
            "one report per 10 s"
        );
        assert_eq!(f.failed(t + Duration::from_secs(10)).1, Some(11));
        f.succeeded();
        assert_eq!(
            f.failed(t + Duration::from_secs(11)).0,
            Duration::from_millis(10)
        );
    }
}

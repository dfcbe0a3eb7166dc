//! One core's life on its pinned executor: joining the mesh, opening its shard, its background tasks
//! (checkpoints and retention, the console line, the timeout sweeper, token reloads), the accept loop, and
//! the drain and final flush at shutdown.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::FutureExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;

use crate::cluster::follow::ApplyJob;
use crate::config::Config;
use crate::http::conn::Stop;
use crate::server::accept::AcceptFailures;
use crate::server::core::Core;
use crate::server::mesh::Forward;
use crate::server::report::{self, Stats};
use crate::store::shard::{Shard, ShardOptions};

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
    pub cluster: Option<Cluster>,
}

/// Cluster mode's shared parts, one copy per core.
#[derive(Clone)]
pub struct Cluster {
    pub link: crate::cluster::link::Link,
    pub incarnation: u64,
    pub applied: Arc<crate::cluster::positions::Applied>,
    pub own: Arc<crate::cluster::own::Own>,
    /// Each core's apply jobs, taken by the core whose mesh id is the index.
    pub jobs: Arc<std::sync::Mutex<Vec<Option<futures::channel::mpsc::Receiver<ApplyJob>>>>>,
}

pub async fn run(s: Start) -> Result<(), String> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::io::FromRawFd;

    let mut s = s;
    let core = match open(&mut s).await {
        Ok(core) => core,
        Err(e) => {
            let _ = s.ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let id = core.id;
    // SAFETY: the descriptor comes from a listening socket we own and hand over whole.
    let listener = unsafe { TcpListener::from_raw_fd(s.listener.into_raw_fd()) };
    let (lo, hi) = crate::tag::owned_range(id, s.shards);
    let hi = hi.map_or("2^64".to_string(), |h| format!("{h:#018x}"));
    let _ = s.ready.send(Ok(format!(
        "core {id}: cpu {}, tag-hash [{lo:#018x}, {hi}), listening on {}",
        s.cpu, s.config.listen
    )));
    let closing = Rc::new(Cell::new(false));
    let background = spawn_tasks(&core, &closing, s.token_reloads)?;
    let stop: Stop = s.stop.shared();
    accept(&core, &listener, &stop).await;
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    while core.connections.get() > 0 && Instant::now() < deadline {
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

/// Joins the mesh, opens the shard and builds the core, serving forwarded requests. The error names the core.
async fn open(s: &mut Start) -> Result<Rc<Core>, String> {
    let (senders, receivers, id) = match s.mesh.take() {
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
        run: s.unique.clone(),
        reads: s.config.reads,
        read_cache_bytes: usize::try_from(s.config.read_cache_mib << 20).unwrap_or(usize::MAX),
        device: crate::store::device::for_config(s.config.fault_file.clone(), trace),
        max_pending_records: s.config.max_pending_records,
        max_pending_writes: s.config.max_pending_writes,
        max_log_bytes: s.config.max_log_mib << 20,
        chunk_files: s.config.checkpoint_chunk_files as usize,
        mapped_files: s.config.max_mapped_files as usize,
    })
    .await;
    let shard = match opened {
        Ok(shard) => shard,
        Err(e) => {
            let _ = s.ready.send(Err(format!("core {id}: {e}")));
            return Err(e);
        }
    };
    let member = match &s.cluster {
        Some(c) => {
            let batcher = crate::cluster::batch::Batcher::new(
                s.config.node_id,
                c.incarnation,
                id as u32,
                c.link.max_batch(),
            )?;
            let jobs = c
                .jobs
                .lock()
                .ok()
                .and_then(|mut j| j.get_mut(id).and_then(Option::take))
                .ok_or_else(|| format!("core {id}: no apply queue"))?;
            glommio::spawn_local(crate::cluster::apply::run(Rc::clone(&shard), jobs)).detach();
            Some(crate::cluster::member::Member::new(
                c.link.clone(),
                batcher,
                (s.config.node_id, id),
                (Arc::clone(&c.applied), Arc::clone(&c.own)),
                s.config.max_pending_records,
            ))
        }
        None => None,
    };
    let core = Rc::new(Core {
        member,
        id,
        shards: s.shards,
        shard,
        config: Rc::clone(&s.config),
        stats: RefCell::new(Stats::default()),
        watches: Default::default(),
        overload: Rc::new(crate::server::overload::Overload::new(s.config.shed_lag)),
        lp: crate::server::lp_mapping(&s.config)?,
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
    Ok(core)
}

/// Starts the core's timers: the saturation probe, checkpoints and retention (returned: awaited at
/// shutdown), the console line, the timeout sweeper and token reloads.
fn spawn_tasks(
    core: &Rc<Core>,
    closing: &Rc<Cell<bool>>,
    token_reloads: std::sync::mpsc::Receiver<crate::server::tokens::Tokens>,
) -> Result<glommio::Task<()>, String> {
    let id = core.id;
    let s_config = Rc::clone(&core.config);
    if !s_config.shed_lag.is_zero() {
        glommio::spawn_local(Rc::clone(&core.overload).probe(Rc::clone(closing))).detach();
    }
    // Checkpoints and retention run in their own task queue with a small share, so they yield to
    // request handling instead of stalling it.
    let background_tq = glommio::executor().create_task_queue(
        glommio::Shares::Static(100),
        glommio::Latency::NotImportant,
        "background",
    );
    let background = {
        let (core, closing) = (Rc::clone(core), Rc::clone(closing));
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
                        let budget = core.config.checkpoint_budget();
                        if let Err(e) = core.shard.checkpoint(budget).await {
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
    // The loaded tag files' first-use checks, done ahead of use (`store/shard/check.rs`).
    glommio::spawn_local_into(Rc::clone(&core.shard).verify_loaded(), background_tq)
        .map_err(|e| format!("core {id}: starting the verification task: {e}"))?
        .detach();
    if !s_config.report_interval.is_zero() {
        let core = Rc::clone(core);
        let every = s_config.report_interval;
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
        let core = Rc::clone(core);
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
        let (core, reloads) = (Rc::clone(core), token_reloads);
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
    Ok(background)
}

/// Accepts connections until the engine stops: each is served on this core (or refused with 503 past
/// `--max-connections`).
async fn accept(core: &Rc<Core>, listener: &TcpListener, stop: &Stop) {
    let id = core.id;
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
                let (core, stop, active) = (Rc::clone(core), stop.clone(), Rc::clone(&active));
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
}

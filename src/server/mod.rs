//! Start-up and shutdown: checks the machine (io_uring allowed, enough locked memory), locks and recovers
//! the data directory, binds one listening socket per core, starts one pinned glommio executor per CPU,
//! prints the ready line, and on SIGINT/SIGTERM stops accepting, lets in-flight requests finish, flushes
//! and exits.
pub mod accept;
pub mod core;
pub mod listener;
pub mod mesh;
pub mod metrics;
pub mod overload;
pub mod report;
pub mod routes;
pub mod start;
pub mod tokens;

use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::store::layout::{DirLock, Layout};

/// Locked memory one executor needs besides its io memory (rings and their buffers; glommio #565).
const RING_MEMLOCK_BYTES: u64 = 512 << 10;

fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0).then_some(r.rlim_cur)
}

/// Raises the soft RLIMIT_NOFILE to the hard one (as nginx and Go do): every connection is a descriptor,
/// and distributions start services at 1024. Returns a warning when even the hard limit leaves less than
/// `connections` descriptors (past it, accepts fail with EMFILE and wait, see `server/core.rs`).
fn raise_nofile(connections: u64) -> Option<String> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r.rlim_cur = r.rlim_max;
        }
    }
    // Files, rings and sockets of the engine itself, besides connections.
    const OWN: u64 = 1024;
    (r.rlim_cur != libc::RLIM_INFINITY && r.rlim_cur < connections + OWN).then(|| {
        format!(
            "warning: RLIMIT_NOFILE is {}, below the {connections} connections --max-connections allows on \
             these cores plus {OWN} for the engine's own files: connections past it wait in the backlog \
             until others close; raise it (ulimit -n, systemd LimitNOFILE=, docker ulimits nofile) or \
             lower --max-connections",
            r.rlim_cur
        )
    })
}

/// True when this process holds CAP_IPC_LOCK in its effective set: then locked memory is not charged against
/// RLIMIT_MEMLOCK at all (root on bare metal usually; not in a default docker container).
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Says exactly what is in the way when io_uring cannot be used here; on success, the line that reports the
/// locked-memory budget at start.
fn preflight(cores: usize, io_memory: u64) -> Result<String, String> {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() != "0" {
            return Err(format!(
                "io_uring is disabled by the kernel (kernel.io_uring_disabled = {}); run `sysctl kernel.io_uring_disabled=0`",
                v.trim()
            ));
        }
    }
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup with a zeroed params struct of the right size (120 bytes); we close the fd.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::ENOSYS) => format!(
                "io_uring_setup is refused ({e}): under Docker the default seccomp profile blocks io_uring since \
                 moby v25; start the container with the profile shipped in this repository \
                 (security_opt: seccomp=docker/seccomp-io_uring.json)"
            ),
            Some(libc::ENOMEM) => format!("io_uring_setup failed ({e}): raise RLIMIT_MEMLOCK (ulimit -l / docker ulimits memlock)"),
            _ => format!("io_uring_setup failed: {e}"),
        });
    }
    // SAFETY: closing the ring descriptor we just created.
    unsafe { libc::close(fd as i32) };
    let need = cores as u64 * (io_memory + RING_MEMLOCK_BYTES);
    let limit = memlock_limit();
    let shown = match limit {
        Some(l) if l != libc::RLIM_INFINITY => format!("{} KiB", l / 1024),
        Some(_) => "unlimited".to_string(),
        None => "unknown".to_string(),
    };
    // glommio refuses to build a reactor below this limit whatever the capabilities (sys/uring.rs).
    const GLOMMIO_MEMLOCK_FLOOR: u64 = 512 << 10;
    if let Some(l) = limit.filter(|&l| l < GLOMMIO_MEMLOCK_FLOOR) {
        return Err(format!(
            "RLIMIT_MEMLOCK is {} KiB, below the 512 KiB glommio requires of every process (even with \
             CAP_IPC_LOCK): raise it (`ulimit -l {}`, /etc/security/limits.conf `memlock`, systemd \
             LimitMEMLOCK=, docker `ulimits: memlock`)",
            l / 1024,
            (need / 1024).max(512)
        ));
    }
    if has_cap_ipc_lock() {
        return Ok(format!(
            "locked memory: {} KiB for {cores} io_uring executors; RLIMIT_MEMLOCK {shown}, not charged (CAP_IPC_LOCK)",
            need / 1024
        ));
    }
    if let Some(limit) = limit {
        if limit != libc::RLIM_INFINITY && limit < need {
            return Err(format!(
                "RLIMIT_MEMLOCK is {} KiB but {cores} cores with --io-memory-kib {} need {} KiB: raise it \
                 (`ulimit -l {}`, /etc/security/limits.conf `memlock`, systemd LimitMEMLOCK=, docker `ulimits: memlock`) \
                 or lower --io-memory-kib / --cpus",
                limit / 1024,
                io_memory / 1024,
                need / 1024,
                need / 1024
            ));
        }
    }
    Ok(format!(
        "locked memory: {} KiB for {cores} io_uring executors; RLIMIT_MEMLOCK {shown}",
        need / 1024
    ))
}

/// Online CPUs of the machine (not the calling thread's affinity mask, which `taskset` narrows).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn cpus(config: &Config) -> Vec<usize> {
    match &config.cpus {
        Some(list) if !list.0.is_empty() => list.0.clone(),
        _ => (0..online_cpus()).collect(),
    }
}

pub fn run(config: Config) -> Result<(), String> {
    let cpus = cpus(&config);
    let online = online_cpus();
    if let Some(bad) = cpus.iter().find(|&&c| c >= online) {
        return Err(format!(
            "--cpus names CPU {bad}, but this machine has CPUs 0-{}",
            online - 1
        ));
    }
    lp_mapping(&config)?;
    let tokens = tokens::from_config(&config)?;
    let n = cpus.len();
    let io_memory = (config.io_memory_kib as u64) << 10;
    let memlock_line = preflight(n, io_memory)?;
    if let Some(w) = raise_nofile(n as u64 * config.max_connections as u64) {
        eprintln!("{w}");
    }

    let layout = Layout::new(&config.data_dir);
    let _lock = DirLock::acquire(&config.data_dir).map_err(|e| e.to_string())?;
    let segment_ns = layout
        .prepare(config.segment_ns())
        .map_err(|e| format!("preparing {}: {e}", config.data_dir.display()))?;
    let unique = format!("{:020}", crate::clock::now_ns());
    let report = crate::store::recovery::recover(
        &layout,
        segment_ns,
        crate::clock::now_ns().saturating_sub(config.retention_ns()),
        &unique,
    )
    .map_err(|e| format!("recovery failed: {e}"))?;
    for note in &report.notes {
        eprintln!("{note}");
    }
    if report.logs > 0 {
        println!(
            "recovered {} records from {} commits in {} logs into {} tag files",
            report.records, report.commits, report.logs, report.files
        );
    }
    // Cluster mode's link and streams before the port: clients find no port rather than one that hangs
    // while NATS is waited for.
    let cluster = cluster_start(&config, n)?;
    let bound = listener::bind_all(config.listen, n, config.backlog).map_err(|e| e.to_string())?;
    let (addr, listeners) = (bound.addr, bound.listeners);
    // Held until the engine returns: no other engine binds this port meanwhile.
    let _port_lock = bound.lock;
    let mut config = config;
    config.listen = addr;

    let mesh = (n > 1).then(|| MeshBuilder::full(n, mesh::MESH_CAPACITY));
    let drained = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut stops = Vec::new();
    let mut reload_txs = Vec::new();
    let mut handles = Vec::new();
    for (cpu, listener) in cpus.iter().copied().zip(listeners) {
        let (stop_tx, stop_rx) = oneshot::channel();
        stops.push(stop_tx);
        let (reload_tx, token_reloads) = std::sync::mpsc::channel();
        reload_txs.push(reload_tx);
        let tokens = tokens.clone();
        let (config, mesh, ready, drained, unique, cluster) = (
            config.clone(),
            mesh.clone(),
            ready_tx.clone(),
            Arc::clone(&drained),
            unique.clone(),
            cluster.clone(),
        );
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("tickcore-{cpu}"))
            .io_memory(io_memory as usize)
            .preempt_timer(Duration::from_millis(10))
            .spawn(move || async move {
                let start = start::Start {
                    cpu,
                    listener,
                    config: Rc::new(config),
                    segment_ns,
                    unique,
                    mesh,
                    shards: n,
                    stop: stop_rx,
                    ready,
                    drained,
                    tokens,
                    token_reloads,
                    cluster,
                };
                start::run(start).await
            })
            .map_err(|e| format!("starting the executor on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut lines = Vec::new();
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(line)) => lines.push(line),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // The executor ended before its ready line, inside glommio (its reactor could not be built);
                // the errors we can foresee (memlock, io_uring refused) were checked by `preflight`.
                return Err("an executor stopped during start-up (glommio could not build its io_uring \
                            reactor: check RLIMIT_MEMLOCK, `--io-memory-kib` and the number of --cpus)"
                    .into());
            }
        }
    }
    lines.sort();
    for l in lines {
        println!("{l}");
    }
    println!("{memlock_line}");
    if tokens.is_open() {
        println!(
            "warning: no --write-token-file or --read-token-file: anyone who can reach http://{addr} \
             can write and read"
        );
    }
    // Handlers first: a supervisor (or a test) may send SIGTERM as soon as it reads the ready line.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("installing signal handlers: {e}"))?;
    let mode = match &cluster {
        Some(c) => format!(
            ", cluster node {} on NATS {} (applied positions {:?})",
            config.node_id,
            config.nats.as_deref().unwrap_or_default(),
            c.applied.all()
        ),
        None => String::new(),
    };
    println!(
        "ready: listening on http://{addr} with {n} cores, data in {}, durability {:?}{mode}",
        config.data_dir.display(),
        config.durability
    );

    let signal_thread = std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig != signal_hook::consts::SIGHUP {
                println!("signal {sig}: stopping (finishing in-flight requests, flushing)");
                break;
            }
            // Each core gets its own copy of the new set; a bad file keeps the old set everywhere.
            match tokens::from_config(&config) {
                Ok(t) => {
                    for tx in &reload_txs {
                        let _ = tx.send(t.clone());
                    }
                    println!("SIGHUP: token files reloaded");
                }
                Err(e) => println!("SIGHUP: {e}; keeping the tokens in force"),
            }
        }
        for s in stops {
            let _ = s.send(());
        }
    });
    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(format!("executor failed: {e}")),
        }
    }
    drop(signal_thread);
    if result.is_ok() {
        println!("stopped cleanly");
    }
    result
}

/// Cluster mode's start (docs/cluster.md): the link to NATS up, the streams there, and the consumers
/// started from this node's applied positions; `None` for a single node.
fn cluster_start(config: &Config, cores: usize) -> Result<Option<start::Cluster>, String> {
    use crate::cluster::{follow, link, positions};
    use std::hash::{BuildHasher, Hasher};

    let Some(urls) = &config.nats else {
        return Ok(None);
    };
    if config.durability != crate::config::Durability::Sync {
        return Err(
            "cluster mode (--nats) needs --durability sync: a node's applied positions must never \
                    pass what it holds durably"
                .into(),
        );
    }
    if config.reads == crate::config::Reads::Dma {
        // The DMA path answers each sample from one record per segment; the cluster's equal-time rule
        // (greatest value bits, `query/asof.rs`) needs every record of that time.
        return Err("cluster mode (--nats) reads through --reads mmap".into());
    }
    let failover = config.cluster_failover;
    if failover < Duration::from_millis(1) || failover > Duration::from_secs(60) {
        return Err(format!(
            "--cluster-failover {failover:?}: between 1ms and 60s"
        ));
    }
    if config.position_wait > Duration::from_secs(3600) {
        return Err(format!(
            "--position-wait {:?}: at most 1h",
            config.position_wait
        ));
    }
    let list: Vec<&str> = urls.split(',').map(str::trim).collect();
    for u in &list {
        u.parse::<async_nats::ServerAddr>()
            .map_err(|e| format!("--nats: {u:?} is not a NATS server URL ({e})"))?;
    }
    let distinct: std::collections::HashSet<&str> = list.iter().copied().collect();
    if distinct.len() < 2 {
        eprintln!(
            "warning: --nats names one server: a paused or cut-off server then stalls this engine's writes \
             until it comes back; name all three (docs/operations.md, Cluster)"
        );
    }
    let streams = usize::from(config.cluster_streams);
    let file = positions::file(&config.data_dir);
    let applied = Arc::new(positions::Applied::new(&positions::load(&file, streams)?));
    // Drawn at every start: this process's batch ids never repeat an earlier one's (JetStream would take a
    // repeat within its duplicate window for a retry and not store it).
    let incarnation = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut senders = Vec::with_capacity(cores);
    let mut receivers = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (tx, rx) = futures::channel::mpsc::channel(follow::WINDOW);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let mut cfg = link::LinkConfig::new(urls);
    cfg.streams = streams;
    cfg.replicas = usize::from(config.cluster_replicas);
    cfg.failover = config.cluster_failover;
    cfg.max_age = config.cluster_catch_up;
    let own = Arc::new(crate::cluster::own::Own::default());
    let follow = follow::Follow {
        cores: senders,
        applied: Arc::clone(&applied),
        own: Arc::clone(&own),
        positions_file: file,
        me: (config.node_id, incarnation),
    };
    let link = link::Link::start(cfg, Some(follow)).map_err(|e| format!("cluster mode: {e}"))?;
    Ok(Some(start::Cluster {
        link,
        incarnation,
        applied,
        own,
        jobs: Arc::new(std::sync::Mutex::new(receivers)),
    }))
}

/// How line-protocol points map to messages (`--lp-tag-key`, `--lp-fields`).
pub fn lp_mapping(config: &Config) -> Result<crate::ingest::lineproto::Mapping, String> {
    crate::ingest::lineproto::Mapping::new(&config.lp_tag_key, &config.lp_fields)
        .map_err(|e| format!("--lp-tag-key/--lp-fields: {e}"))
}

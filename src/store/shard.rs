//! One core's store: the tags whose hash this core owns, their segments, the write-ahead log with group
//! commit, checkpoints into tag files and retention. Lives on one executor (`Rc`, `RefCell`, no locks);
//! no `RefCell` borrow is ever held across an `.await`.
//!
//! Write protocol (`--durability sync`): `append` queues the messages for the commit loop and waits. The
//! commit loop takes *everything* queued (natural batching: the next group forms while a commit is on its way
//! to the disk, with no timer), assigns record indexes, writes one log commit (`O_DSYNC`: durable when the
//! write completes), and only then pushes the
//! records into the segments (visible to queries) and answers the waiters. `async`: records are visible and
//! acknowledged at once; the same loop makes them durable moments later.
//!
//! **Invariant:** a segment's records `0..persisted` are in its tag file, fdatasync'd; records
//! `persisted..committed()` are in the live log generation (or the previous one while a checkpoint runs).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{LocalBoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use glommio::io::{DmaFile, OpenOptions};

use crate::config::{Durability, Reads};
use crate::ingest::decode::Message;
use crate::query::{asof, params::Window, render};

use crate::clock::now_ns;
use crate::store::blockcache::BlockCache;
use crate::store::device::{io_err, offload, Device, Dma};
use crate::store::iostats::IoStats;
use crate::store::iotrace::{trace, Event, Tracer};
use crate::store::layout::{sync_dir, Layout};
use crate::store::segment_expired;
use crate::store::view::Segment;

mod checkpoint;
mod dma;
use crate::store::{wal, StoreError};

/// A checkpoint starts once the live log holds this many bytes...
pub const WAL_CHECKPOINT_BYTES: u64 = 64 << 20;
/// Largest commit the loop builds before writing (bounds one DMA buffer).
const COMMIT_BYTES_MAX: usize = 8 << 20;
/// Tag files a checkpoint writes and fdatasyncs at once.
const CHECKPOINT_FILES_IN_FLIGHT: usize = 16;
/// Log commits on their way to stable storage at once.
pub const COMMITS_IN_FLIGHT: usize = 4;

#[derive(Default)]
pub struct Tag {
    pub segs: BTreeMap<i64, Segment>,
}

struct Job {
    msgs: Vec<Message>,
    /// `async`: indexes handed out (and records made visible) at append time.
    preassigned: Option<Vec<usize>>,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

enum Cmd {
    Append(Job),
    Rotate {
        file: DmaFile,
        path: PathBuf,
        done: oneshot::Sender<Result<Rotated, StoreError>>,
    },
    Checkpoint {
        payload: Vec<u8>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

type Commit = Shared<LocalBoxFuture<'static, Result<(), StoreError>>>;

/// One append waiting for its commit, counted in `Shard::pending_writes` while it lives.
struct Waiting(Rc<Cell<usize>>);

impl Waiting {
    fn enter(count: &Rc<Cell<usize>>) -> Waiting {
        count.set(count.get() + 1);
        Waiting(Rc::clone(count))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// The log generation a rotation retired from writing.
pub struct Rotated {
    pub path: PathBuf,
    /// Set when a write to it failed (its later blocks may hold commits that were never acknowledged).
    pub broken: Option<StoreError>,
    /// Where its last acknowledged commit ends.
    pub acked_end: u64,
}

struct WalWriter {
    file: Rc<DmaFile>,
    path: PathBuf,
    offset: u64,
    seq: u64,
    /// Set after a failed write or fdatasync: the file is not written again (no fsync retry); the next
    /// checkpoint rescans it and moves on to a new generation (`shard/checkpoint.rs`).
    broken: Rc<RefCell<Option<StoreError>>>,
    /// Where the last acknowledged commit ends.
    acked_end: Rc<Cell<u64>>,
    /// The latest commit launched; the next one finishes only after it.
    last: Option<Commit>,
}

impl WalWriter {
    /// `seq` continues across generations, so the stale commits of a recycled file never validate.
    fn new(file: DmaFile, path: PathBuf, seq: u64) -> Self {
        WalWriter {
            file: Rc::new(file),
            path,
            offset: 0,
            seq,
            broken: Rc::default(),
            acked_end: Rc::default(),
            last: None,
        }
    }
}

pub struct Shard {
    pub id: usize,
    /// How queries read tag files, and the block cache of `--reads dma` (`shard/dma.rs`).
    reads: Reads,
    cache: RefCell<BlockCache>,
    /// Commit and checkpoint timings for the console line.
    pub io_stats: RefCell<IoStats>,
    layout: Layout,
    segment_ns: i64,
    durability: Durability,
    retention_ns: i64,
    unique: String,
    pub tags: RefCell<HashMap<String, Tag>>,
    queue: mpsc::UnboundedSender<Cmd>,
    wal_bytes: Cell<u64>,
    generation: Cell<u64>,
    /// A zeroed (or recycled, checkpointed) log file ready to become the next generation.
    spare: RefCell<Option<PathBuf>>,
    /// The helper thread zeroing the first spare.
    spare_pending: RefCell<Option<oneshot::Receiver<std::io::Result<PathBuf>>>>,
    /// `--trace-io`: every change to the data directory, for the power-loss model (`iotrace.rs`).
    pub trace: Option<Rc<Tracer>>,
    /// Records accepted and not yet through their log commit, and the bound on them
    /// (`--max-pending-records`): past it, appends are refused with `Overloaded`.
    pending: Cell<usize>,
    pub max_pending: Cell<usize>,
    /// Appends refused because of `max_pending` (`/metrics`).
    pub pending_refused: Cell<u64>,
    /// Sync appends waiting for their commit, their bound (`--max-pending-writes`, 0 = none) and the
    /// appends refused by it (`/metrics`).
    pending_writes: Rc<Cell<usize>>,
    pub max_pending_writes: Cell<usize>,
    pub writes_refused: Cell<u64>,
    /// Messages not stored because they repeat a stored or in-flight record (`/metrics`).
    pub duplicates: Cell<u64>,
    /// A write to the live log failed: the next checkpoint comes soon and moves to a new generation.
    log_broken: Cell<bool>,
    /// Logs rotated away from whose records are not yet all in tag files (a checkpoint failed after
    /// rotating): retired by the next checkpoint that completes.
    /// With `Some(acked_end)` while a failed log still has to be rescanned (`checkpoint.rs`).
    old_logs: RefCell<Vec<(PathBuf, Option<u64>)>>,
    /// Sidecars appended by the running checkpoint, not yet synced (and whether each is new beside an
    /// existing tag file, so its directory needs a sync).
    unsynced_sums: RefCell<Vec<(PathBuf, bool)>>,
    /// Where the live path's writes and syncs go (`device.rs`): the real device, or one that injects faults.
    device: RefCell<Rc<dyn Device>>,
}

/// Bytes of zeros a log file is created with. Commits then overwrite existing blocks, so each is a pure
/// data write plus device flush; appending past the end would also journal a size change at every commit (measured:
/// 40k -> 56k single-message commits/s on one core here).
pub const LOG_PREALLOC_BYTES: usize = 64 << 20;

/// Creates a log file of [`LOG_PREALLOC_BYTES`] zeros, durable with its directory entry (blocking I/O:
/// used at start-up and on a helper thread, never on a serving executor). `paced` (the helper's spare log,
/// made while the engine serves) syncs every MiB and pauses between them, so the commits' own device flushes
/// never queue behind 64 MiB of write-back (measured: send->visible lag spikes of 7-44 ms in the first
/// seconds of a run while the spare was written in one go).
pub fn zeroed_log(path: &std::path::Path, paced: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create_new(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..LOG_PREALLOC_BYTES / zeros.len() {
        f.write_all(&zeros)?;
        if paced {
            f.sync_data()?;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Traces what [`zeroed_log`] did, once it is done (it ran to completion, synced, before this is called).
fn trace_zeroed_log(t: &Option<Rc<Tracer>>, path: &std::path::Path) {
    let Some(t) = t else { return };
    let (rel, id, dir_id) = (t.rel(path), t.id(), t.id());
    let dir = path.parent().map(|d| t.rel(d)).unwrap_or_default();
    t.record(Event::Create(rel.clone()));
    t.record(Event::SetLen(rel.clone(), LOG_PREALLOC_BYTES as u64));
    t.record(Event::Sync(id, rel));
    t.record(Event::Synced(id));
    t.record(Event::DirSync(dir_id, dir));
    t.record(Event::DirSynced(dir_id));
}

/// Moves the calling helper thread off `busy_cpu` (the executor that spawned it inherits its pinning), onto
/// another CPU when the machine has one.
fn pin_helper_away_from(busy_cpu: Option<usize>) {
    let Some(ids) = core_affinity::get_core_ids() else {
        return;
    };
    if let Some(other) = ids.into_iter().find(|c| Some(c.id) != busy_cpu) {
        core_affinity::set_for_current(other);
    }
}

/// The sidecars this core owns whose tag file is missing: the file held synced records, so a start is
/// refused, unless their segment expired (retention removes the sidecar first, then the file; an engine
/// before that left sidecars behind): then they are removed.
fn orphan_sidecars(
    layout: &Layout,
    id: usize,
    shards: usize,
    segment_ns: i64,
    cutoff: i64,
) -> Result<(), String> {
    let orphans = crate::store::verify::sidecars_without_file(layout)
        .map_err(|e| format!("listing sidecars: {e}"))?;
    for (seg, path) in orphans {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some(tag) = crate::tag::from_file_name(stem) else {
            continue;
        };
        if crate::tag::owner(crate::tag::hash(&tag), shards) != id {
            continue;
        }
        let side = crate::store::sidecar::path_for(&path);
        if segment_expired(seg, segment_ns, cutoff) {
            eprintln!(
                "core {id}: removing {}, left behind by the retention of an expired segment",
                side.display()
            );
            let _ = std::fs::remove_file(&side);
            continue;
        }
        if let Some(d) = crate::store::verify::short_of_sidecar(&path)
            .map_err(|e| format!("reading {}: {e}", side.display()))?
        {
            return Err(corruption(&d, layout, "move its sidecar aside"));
        }
    }
    Ok(())
}

/// Why a start is refused on damage found in a durable file (`aside`: how to start without the file).
fn corruption(d: &crate::store::verify::Finding, layout: &Layout, aside: &str) -> String {
    format!(
        "corruption: {} at offset {}: {}; refusing to start. `tickcore --verify --data-dir {}` lists every \
         finding; restore the file from a backup, or {aside} to serve the rest",
        d.path.display(),
        d.offset,
        d.what,
        layout.root.display()
    )
}

async fn open_log(path: &PathBuf) -> Result<DmaFile, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(path)
        .await
        .map_err(|e| io_err(&format!("opening {}", path.display()), e))
}

async fn create_log(path: &PathBuf, t: &Option<Rc<Tracer>>) -> Result<DmaFile, StoreError> {
    trace(t, |t| Event::Create(t.rel(path)));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(path)
        .await
        .map_err(|e| io_err(&format!("creating {}", path.display()), e))?;
    if let Some(dir) = path.parent() {
        let id = t.as_ref().map(|t| {
            let id = t.id();
            t.record(Event::DirSync(id, t.rel(dir)));
            id
        });
        sync_dir(dir).map_err(|e| StoreError::from_io("syncing the log directory", &e))?;
        trace(t, |_| Event::DirSynced(id.unwrap_or(0)));
    }
    Ok(f)
}

/// Writes the `/api` answer for `w`: the as-of walk over `runs` (time-ordered, one per segment), rendered.
fn render_api<R: asof::Run + ?Sized>(out: &mut Vec<u8>, w: &Window, runs: &[&R]) {
    if !w.aggs.is_empty() {
        return render_agg(out, w, runs);
    }
    render::api_head(out, &w.tag, w.start, w.end);
    let mut first = true;
    asof::sample(runs, w.start, w.end, w.samples, |time, r| {
        render::api_sample(out, first, time, r.as_ref());
        first = false;
    });
    render::api_tail(out);
}

/// An `/api` answer with `agg=` (and `smooth=`): every sample is computed first, then smoothed.
fn render_agg<R: asof::Run + ?Sized>(out: &mut Vec<u8>, w: &Window, runs: &[&R]) {
    let mut times = Vec::with_capacity(w.samples);
    let mut answers: Vec<Vec<crate::query::agg::Slot>> = Vec::with_capacity(w.samples);
    if w.aggs == [crate::query::agg::Agg::Last] {
        // `last` alone is the as-of answer: the sampler's searches, not a scan of every record.
        asof::sample(runs, w.start, w.end, w.samples, |t, r| {
            times.push(t);
            answers.push(vec![r.map(|r| r.values)]);
        });
    } else {
        crate::query::agg::aggregate(runs, w.start, w.end, w.samples, &w.aggs, |t, slots| {
            times.push(t);
            answers.push(slots.to_vec());
        });
    }
    crate::query::agg::smooth(&mut answers, w.smooth);
    render::agg_head(out, &w.tag, w.start, w.end, &w.aggs);
    for (i, (t, slots)) in times.iter().zip(&answers).enumerate() {
        render::agg_sample(out, i == 0, *t, &w.aggs, slots);
    }
    render::api_tail(out);
}

impl Shard {
    /// Opens this core's store: reads the probe file first (glommio's iopoll probe must see a non-empty
    /// file), loads the tag files this core owns, creates a fresh log and starts the commit loop.
    pub async fn open(
        id: usize,
        shards: usize,
        layout: Layout,
        segment_ns: i64,
        durability: Durability,
        retention_ns: i64,
        unique: String,
        reads: Reads,
        read_cache_bytes: usize,
        trace: Option<Rc<Tracer>>,
    ) -> Result<Rc<Shard>, String> {
        let probe = DmaFile::open(layout.probe())
            .await
            .map_err(|e| format!("opening {}: {e}", layout.probe().display()))?;
        probe
            .read_at(0, 4096)
            .await
            .map_err(|e| format!("reading {}: {e}", layout.probe().display()))?;
        let _ = probe.close().await;

        let mut tags: HashMap<String, Tag> = HashMap::new();
        let files = crate::store::recovery::list_tag_files(&layout)
            .map_err(|e| format!("listing tag files: {e}"))?;
        for (seg, tag, path) in files {
            if crate::tag::owner(crate::tag::hash(&tag), shards) != id {
                continue;
            }
            let damage = crate::store::verify::tag_file_tail(&path, seg, segment_ns)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            if let Some(d) = damage.first() {
                // Recovery has already rewritten every file a log touched: this one was durable, so the
                // damage is corruption, never a crash's unfinished write. Serving it would be serving lies.
                return Err(corruption(
                    d,
                    &layout,
                    "move it and its sidecar (.crc) aside",
                ));
            }
            let n = crate::store::recovery::count_file(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            tags.entry(tag)
                .or_default()
                .segs
                .insert(seg, Segment::loaded(n));
        }
        orphan_sidecars(
            &layout,
            id,
            shards,
            segment_ns,
            now_ns().saturating_sub(retention_ns),
        )?;
        let path = layout.wal_dir().join(format!("{unique}-c{id}-g0.wal"));
        zeroed_log(&path, false).map_err(|e| format!("creating {}: {e}", path.display()))?;
        trace_zeroed_log(&trace, &path);
        let file = open_log(&path).await.map_err(|e| e.to_string())?;
        let spare_path = layout.wal_dir().join(format!("{unique}-c{id}.spare"));
        let (spare_tx, spare_rx) = oneshot::channel();
        // SAFETY: sched_getcpu has no preconditions; a negative answer means unknown.
        let busy_cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok();
        std::thread::Builder::new()
            .name(format!("tickcore-zero-{id}"))
            .spawn(move || {
                pin_helper_away_from(busy_cpu);
                let _ = spare_tx.send(zeroed_log(&spare_path, true).map(|()| spare_path));
            })
            .map_err(|e| format!("starting a helper thread: {e}"))?;
        let (queue, rx) = mpsc::unbounded();
        let shard = Rc::new(Shard {
            reads,
            cache: RefCell::new(BlockCache::new(read_cache_bytes)),
            io_stats: RefCell::default(),
            id,
            layout,
            segment_ns,
            durability,
            retention_ns,
            unique,
            tags: RefCell::new(tags),
            queue,
            wal_bytes: Cell::new(0),
            generation: Cell::new(0),
            spare: RefCell::new(None),
            spare_pending: RefCell::new(Some(spare_rx)),
            trace,
            pending: Cell::new(0),
            max_pending: Cell::new(usize::MAX),
            pending_refused: Cell::new(0),
            pending_writes: Rc::default(),
            max_pending_writes: Cell::new(0),
            writes_refused: Cell::new(0),
            duplicates: Cell::new(0),
            log_broken: Cell::new(false),
            old_logs: RefCell::default(),
            device: RefCell::new(Rc::new(Dma)),
            unsynced_sums: RefCell::default(),
        });
        let writer = WalWriter::new(file, path, 0);
        glommio::spawn_local(Rc::clone(&shard).commit_loop(rx, writer)).detach();
        Ok(shard)
    }

    pub fn tag_count(&self) -> usize {
        self.tags.borrow().len()
    }

    /// Oldest record time accepted now (records older than the retention window are refused).
    pub fn retention_cutoff(&self) -> i64 {
        now_ns().saturating_sub(self.retention_ns)
    }

    /// Stores messages owned by this core. Resolves once they are durable (sync) or visible (async). A
    /// message equal to a stored or in-flight record (same tag, time and value bits: a retried request)
    /// is not stored again; its answer still waits for the commit of the record it repeats.
    pub async fn append(&self, msgs: Vec<Message>) -> Result<(), StoreError> {
        let pending = self.pending.get();
        if pending > 0 && pending + msgs.len() > self.max_pending.get() {
            self.pending_refused.set(self.pending_refused.get() + 1);
            return Err(StoreError::Overloaded(format!(
                "core {} has {pending} records waiting for the disk (--max-pending-records {})",
                self.id,
                self.max_pending.get()
            )));
        }
        let bound = self.max_pending_writes.get();
        let waiting = self.pending_writes.get();
        if self.durability == Durability::Sync && bound > 0 && waiting >= bound {
            self.writes_refused.set(self.writes_refused.get() + 1);
            return Err(StoreError::Overloaded(format!(
                "core {} has {waiting} writes waiting for the disk (--max-pending-writes {bound})",
                self.id
            )));
        }
        // Counted until this append ends, however it ends (a dropped connection included).
        let _waiting = Waiting::enter(&self.pending_writes);
        let (msgs, idx, repeats_inflight) = self.admit_new(msgs);
        let n = msgs.len();
        if n == 0 && !repeats_inflight {
            return Ok(());
        }
        self.pending.set(pending + n);
        match self.durability {
            Durability::Sync => {
                let (tx, rx) = oneshot::channel();
                if let Err(e) = self.queue.unbounded_send(Cmd::Append(Job {
                    msgs,
                    preassigned: None,
                    done: Some(tx),
                })) {
                    if let Cmd::Append(job) = e.into_inner() {
                        let mut tags = self.tags.borrow_mut();
                        for m in job.msgs.iter().rev() {
                            self.segment_mut(&mut tags, m).inflight_unpush();
                        }
                    }
                    return Err(self.stopped(n));
                }
                rx.await
                    .unwrap_or_else(|_| Err(StoreError::Unavailable("commit loop stopped".into())))
            }
            Durability::Async => self
                .queue
                .unbounded_send(Cmd::Append(Job {
                    msgs,
                    preassigned: Some(idx),
                    done: None,
                }))
                .map_err(|_| self.stopped(n)),
        }
    }

    /// Drops the messages that repeat a stored or in-flight record (or an earlier message of the same
    /// request) and takes in the rest: in flight under sync durability; given their indexes and made visible
    /// under async. Returns the kept messages, their indexes (async) and whether a dropped one repeats a
    /// record still in flight. Infallible: a tag file that cannot be read to look for the original counts as
    /// not holding it (the message is stored; at worst twice, never lost), and queries report the file.
    fn admit_new(&self, mut msgs: Vec<Message>) -> (Vec<Message>, Vec<usize>, bool) {
        let mut tags = self.tags.borrow_mut();
        let mut idx = Vec::new();
        let mut repeats_inflight = false;
        // Filtered in place: the common one-message request keeps its vector.
        msgs.retain(|m| {
            let key = m.record.time.div_euclid(self.segment_ns);
            let seg = self.segment_mut(&mut tags, m);
            let inflight = seg.holds_inflight(&m.record);
            let stored = !inflight
                && seg
                    .holds_committed(|| self.layout.tag_file(key, &m.tag), &m.record)
                    .unwrap_or(false);
            if inflight || stored {
                repeats_inflight |= inflight;
                self.duplicates.set(self.duplicates.get() + 1);
                return false;
            }
            match self.durability {
                Durability::Sync => seg.inflight_push(m.record),
                Durability::Async => {
                    idx.push(seg.next_index);
                    seg.next_index += 1;
                    seg.push(m.record);
                }
            }
            true
        });
        (msgs, idx, repeats_inflight)
    }

    /// Sets the device the live path writes through (`--fault-file` wraps the real one).
    pub fn set_device(&self, device: Rc<dyn Device>) {
        *self.device.borrow_mut() = device;
    }

    /// The device the live path writes through.
    fn device(&self) -> Rc<dyn Device> {
        Rc::clone(&self.device.borrow())
    }

    /// Bytes of the tag files this core owns (whole blocks of records and padding; sidecars not counted),
    /// from the records each segment has persisted: no file-system walk.
    pub fn tag_file_bytes(&self) -> u64 {
        let tags = self.tags.borrow();
        tags.values()
            .flat_map(|t| t.segs.values())
            .map(|s| crate::store::align_up(s.persisted * crate::record::RECORD_BYTES) as u64)
            .sum()
    }

    /// Each tag this core owns with its committed record count (`/tags`).
    pub fn tag_counts(&self) -> Vec<(String, u64)> {
        let tags = self.tags.borrow();
        tags.iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    t.segs.values().map(|s| s.committed() as u64).sum(),
                )
            })
            .collect()
    }

    /// Bytes committed to the live log since its generation began.
    pub fn log_bytes(&self) -> u64 {
        self.wal_bytes.get()
    }

    /// Records accepted and not yet through their log commit.
    pub fn pending_records(&self) -> usize {
        self.pending.get()
    }

    /// True when a write to the live log failed and no checkpoint has moved past it yet.
    pub fn log_broken(&self) -> bool {
        self.log_broken.get()
    }

    /// The error of an append the commit loop can no longer take; its `n` records are not pending.
    fn stopped(&self, n: usize) -> StoreError {
        self.pending.set(self.pending.get().saturating_sub(n));
        StoreError::Unavailable("commit loop stopped".into())
    }

    fn segment_mut<'a>(&self, tags: &'a mut HashMap<String, Tag>, m: &Message) -> &'a mut Segment {
        let seg = m.record.time.div_euclid(self.segment_ns);
        if !tags.contains_key(&m.tag) {
            tags.insert(m.tag.clone(), Tag::default());
        }
        tags.get_mut(&m.tag)
            .expect("inserted above")
            .segs
            .entry(seg)
            .or_default()
    }

    /// The commit loop: forms groups from everything queued and launches each as one log commit. Up to
    /// [`COMMITS_IN_FLIGHT`] commits run at once (the next group is written while the previous one is still
    /// on its way to the disk); each commit finishes (records visible, waiters answered) only after every earlier
    /// one, so acknowledgements and record indexes stay in log order, and a failure fails all later commits.
    async fn commit_loop(self: Rc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>, mut w: WalWriter) {
        let slots = Rc::new(glommio::sync::Semaphore::new(COMMITS_IN_FLIGHT as u64));
        let mut payload = Vec::new();
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
                    Cmd::Rotate { file, path, done } => {
                        self.launch(&mut w, permit, &mut payload, &mut group);
                        if let Some(last) = w.last.take() {
                            let _ = last.await;
                        }
                        let seq = w.seq;
                        let old = std::mem::replace(&mut w, WalWriter::new(file, path, seq));
                        let _ = old.file.close_rc().await;
                        self.wal_bytes.set(0);
                        self.log_broken.set(false);
                        let _ = done.send(Ok(Rotated {
                            path: old.path,
                            broken: old.broken.borrow().clone(),
                            acked_end: old.acked_end.get(),
                        }));
                        permit = match slots.acquire_static_permit(1).await {
                            Ok(p) => p,
                            Err(_) => return,
                        };
                    }
                }
                if payload.len() < COMMIT_BYTES_MAX {
                    next = rx.try_recv().ok();
                }
            }
            self.launch(&mut w, permit, &mut payload, &mut group);
        }
        if let Some(last) = w.last.take() {
            let _ = last.await;
        }
        let _ = w.file.close_rc().await;
    }

    /// Encodes a job's records, handing out indexes for sync jobs (async ones have them already).
    fn encode(&self, job: &Job, payload: &mut Vec<u8>) {
        let mut tags = self.tags.borrow_mut();
        for (i, m) in job.msgs.iter().enumerate() {
            let index = match &job.preassigned {
                Some(idx) => idx[i],
                None => {
                    let seg = self.segment_mut(&mut tags, m);
                    seg.next_index += 1;
                    seg.next_index - 1
                }
            };
            wal::put_record(payload, &m.tag, index as u64, &m.record);
        }
    }

    /// Starts one commit of `payload` for `group` (both taken) at the log's next block, holding `permit` (one
    /// of the [`COMMITS_IN_FLIGHT`] slots) until it finishes.
    fn launch(
        self: &Rc<Self>,
        w: &mut WalWriter,
        permit: glommio::sync::StaticPermit,
        payload: &mut Vec<u8>,
        group: &mut Vec<Job>,
    ) {
        if group.is_empty() {
            return;
        }
        let mut block = Vec::new();
        wal::frame(w.seq, payload, &mut block);
        payload.clear();
        let offset = w.offset;
        w.seq += 1;
        w.offset += block.len() as u64;
        self.wal_bytes
            .set(self.wal_bytes.get() + block.len() as u64);
        let (shard, file, path, broken, acked_end) = (
            Rc::clone(self),
            Rc::clone(&w.file),
            w.path.clone(),
            Rc::clone(&w.broken),
            Rc::clone(&w.acked_end),
        );
        let group = std::mem::take(group);
        let prev = w.last.take();
        let commit = async move {
            // Copied out first: an `if let` scrutinee's borrow would live across the write's await, and a
            // failing commit sets `broken` while later ones are in flight.
            let failed = broken.borrow().clone();
            let trace_id = shard.trace.as_ref().map(|t| {
                let id = t.id();
                t.record(Event::Write {
                    id,
                    path: t.rel(&path),
                    offset,
                    dsync: true,
                    data: block.clone(),
                });
                id
            });
            let own = if let Some(e) = failed {
                Err(e)
            } else {
                let began = std::time::Instant::now();
                // A log is opened `O_DIRECT | O_DSYNC`: the write completes only once its data is on
                // stable storage (the kernel adds the device flush, or uses FUA), so a commit is one
                // io_uring operation instead of a write then an fdatasync (measured here: +8-10 %
                // single-message 204/s at 40 connections, and half the io-wq worker time).
                let r = shard.device().commit(&file, &path, offset, &block).await;
                if r.is_ok() {
                    trace(&shard.trace, |_| Event::Wrote(trace_id.unwrap_or(0)));
                }
                shard
                    .io_stats
                    .borrow_mut()
                    .commit(began.elapsed().as_nanos() as u64);
                r
            };
            let before = match prev {
                Some(p) => p.await,
                None => Ok(()),
            };
            let r = before.and(own);
            if r.is_ok() {
                acked_end.set(offset + block.len() as u64);
            }
            if let Err(e) = &r {
                shard.log_broken.set(true);
                if broken.borrow().is_none() {
                    eprintln!(
                        "core {}: {e}; the log {} is not written again",
                        shard.id,
                        path.display()
                    );
                    *broken.borrow_mut() = Some(e.clone());
                }
            }
            if r.is_ok() {
                trace(&shard.trace, |_| Event::Ack(trace_id.unwrap_or(0)));
            }
            shard.finish(group, &r);
            drop(permit);
            r
        }
        .boxed_local()
        .shared();
        glommio::spawn_local(commit.clone()).detach();
        w.last = Some(commit);
    }

    /// After a commit (and every earlier one) completed: makes its records visible and answers its waiters.
    fn finish(&self, group: Vec<Job>, r: &Result<(), StoreError>) {
        let done: usize = group.iter().map(|j| j.msgs.len()).sum();
        if r.is_ok() {
            self.io_stats.borrow_mut().commit_records_total += done as u64;
        }
        debug_assert!(
            done <= self.pending.get(),
            "BUG: more records finished than pending"
        );
        self.pending.set(self.pending.get().saturating_sub(done));
        {
            let mut tags = self.tags.borrow_mut();
            for job in group.iter().filter(|j| j.preassigned.is_none()) {
                for m in &job.msgs {
                    let seg = self.segment_mut(&mut tags, m);
                    let done = seg.inflight_pop();
                    debug_assert_eq!(
                        done,
                        Some(m.record),
                        "BUG: commits finished out of queue order"
                    );
                    match r {
                        Ok(()) => {
                            seg.push(m.record);
                            debug_assert!(
                                seg.committed() <= seg.next_index,
                                "BUG: record pushed past its index"
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

    fn spare_path(&self) -> PathBuf {
        self.layout
            .wal_dir()
            .join(format!("{}-c{}.spare", self.unique, self.id))
    }

    fn take_spare(&self) -> Option<PathBuf> {
        let mut pending = self.spare_pending.borrow_mut();
        if let Some(rx) = pending.as_mut() {
            match rx.try_recv() {
                Ok(Some(Ok(p))) => {
                    *pending = None;
                    trace_zeroed_log(&self.trace, &p);
                    *self.spare.borrow_mut() = Some(p);
                }
                Ok(Some(Err(e))) => {
                    eprintln!("core {}: zeroing a spare log failed: {e}", self.id);
                    *pending = None;
                }
                Ok(None) => {}
                Err(_) => *pending = None,
            }
        }
        self.spare.borrow_mut().take()
    }

    /// The next log generation's file: the spare renamed, or a new (unzeroed) file when none is ready.
    async fn next_log(&self, path: &PathBuf) -> Result<DmaFile, StoreError> {
        if let Some(spare) = self.take_spare() {
            let (to, dir) = (path.clone(), self.layout.wal_dir());
            let from = spare.clone();
            let dir_id = self.trace.as_ref().map(|t| {
                let id = t.id();
                t.record(Event::Rename(t.rel(&from), t.rel(&to)));
                t.record(Event::DirSync(id, t.rel(&dir)));
                id
            });
            let renamed = self.device().rename(from, to, dir).await;
            match renamed {
                Ok(()) => {
                    trace(&self.trace, |_| Event::DirSynced(dir_id.unwrap_or(0)));
                    return open_log(path).await;
                }
                Err(e) => eprintln!("core {}: recycling {}: {e}", self.id, spare.display()),
            }
        }
        create_log(path, &self.trace).await
    }

    /// A checkpointed log is no longer needed: keep it as the spare (its blocks are allocated and written,
    /// so the next generation's commits are pure overwrites), or delete it.
    async fn retire_log(&self, old: &PathBuf) -> Result<(), StoreError> {
        let keep = self.spare.borrow().is_none() && self.spare_pending.borrow().is_none();
        let (old, spare) = (old.clone(), self.spare_path());
        if let Some(t) = &self.trace {
            // Traced before it happens (the model may apply it early, never late); a failed rename
            // falls back to removing the file, traced below.
            if keep {
                t.record(Event::Rename(t.rel(&old), t.rel(&spare)));
            }
        }
        let kept = keep
            && self
                .device()
                .rename(old.clone(), spare, self.layout.wal_dir())
                .await
                .is_ok();
        if !kept {
            let gone = old.clone();
            // NotFound: the rename happened and only its directory sync failed.
            offload(move || match std::fs::remove_file(&gone) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await
            .map_err(|e| StoreError::from_io("retiring a checkpointed log", &e))?;
        }
        let traced_old = old;
        if kept {
            *self.spare.borrow_mut() = Some(self.spare_path());
        } else {
            trace(&self.trace, |t| Event::Remove(t.rel(&traced_old)));
        }
        Ok(())
    }

    /// Deletes the segments that ended before the retention cutoff. Returns the files removed.
    pub fn enforce_retention(&self) -> usize {
        let cutoff = self.retention_cutoff();
        let mut removed = 0;
        let mut tags = self.tags.borrow_mut();
        tags.retain(|tag, t| {
            let expired: Vec<i64> = t
                .segs
                .keys()
                .copied()
                .take_while(|&seg| segment_expired(seg, self.segment_ns, cutoff))
                .collect();
            for seg in expired {
                t.segs.remove(&seg);
                let path = self.layout.tag_file(seg, tag);
                // The sidecar first: a crash between the two leaves an unchecked file, never a sidecar
                // without its file (which a start reads as lost records).
                let side = crate::store::sidecar::path_for(&path);
                if let Err(e) = std::fs::remove_file(&side) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        eprintln!(
                            "core {}: retention: removing {}: {e}",
                            self.id,
                            side.display()
                        );
                    }
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => eprintln!(
                        "core {}: retention: removing {}: {e}",
                        self.id,
                        path.display()
                    ),
                }
                // The directory goes once every core has removed its files from it.
                let _ = std::fs::remove_dir(self.layout.seg_dir(seg));
            }
            !t.segs.is_empty()
        });
        removed
    }

    /// Prepares (maps, orders) the segments of `tag` up to `last_seg` and returns them, or None if unknown.
    fn prepared(
        &self,
        tag: &str,
        first_seg: Option<i64>,
        last_seg: i64,
    ) -> Result<Option<Vec<i64>>, String> {
        let mut tags = self.tags.borrow_mut();
        let Some(t) = tags.get_mut(tag) else {
            return Ok(None);
        };
        // For as-of, the nearest non-empty segment before the window counts too.
        let from = match first_seg {
            Some(f) => f,
            None => i64::MIN,
        };
        let keys: Vec<i64> = t.segs.range(from..=last_seg).map(|(&k, _)| k).collect();
        for &k in &keys {
            let path = self.layout.tag_file(k, tag);
            if let Some(s) = t.segs.get_mut(&k) {
                s.prepare(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
            }
        }
        Ok(Some(keys))
    }

    /// Answers `/api`: the rendered JSON body, `Ok(None)` for an unknown tag. With `--reads dma` the tag files
    /// of time-ordered segments are read with DMA reads (`shard/dma.rs`), the others through mmap.
    pub async fn api(&self, w: &Window, out: &mut Vec<u8>) -> Result<Option<()>, String> {
        // Aggregations read every record of the window: through the mmap (read-ahead), whatever --reads says.
        if self.reads == Reads::Dma && w.aggs.is_empty() {
            if let Some(answered) = self.api_dma(w, out).await? {
                return Ok(answered);
            }
        }
        self.api_mmap(w, out)
    }

    /// The segments an `/api` window reads: from the nearest non-empty one before the first sample's (as-of
    /// carries its last record in) to the one holding `end`; with aggregations, from the one before
    /// `start`'s (the first period begins at `start`, and `twa` carries in the value held there).
    /// `None`: an unknown tag.
    fn api_segments(&self, w: &Window) -> Option<(i64, i64)> {
        let last_seg = w.end.div_euclid(self.segment_ns);
        let first_t = if w.aggs.is_empty() {
            asof::sample_time(w.start, w.end, 0, w.samples)
        } else {
            w.start
        };
        let first_seg = first_t.div_euclid(self.segment_ns);
        let tags = self.tags.borrow();
        let t = tags.get(&w.tag)?;
        let before = t
            .segs
            .range(..first_seg)
            .rev()
            .find(|(_, s)| s.committed() > 0)
            .map(|(&k, _)| k);
        Some((before.unwrap_or(first_seg), last_seg))
    }

    fn api_mmap(&self, w: &Window, out: &mut Vec<u8>) -> Result<Option<()>, String> {
        let Some((first_seg, last_seg)) = self.api_segments(w) else {
            return Ok(None);
        };
        let Some(keys) = self.prepared(&w.tag, Some(first_seg), last_seg)? else {
            return Ok(None);
        };
        let tags = self.tags.borrow();
        let t = tags.get(&w.tag).expect("prepared above");
        let views: Vec<_> = keys
            .iter()
            .filter_map(|k| t.segs.get(k))
            .map(|s| s.view())
            .collect();
        let refs: Vec<&crate::store::view::View> = views.iter().collect();
        render_api(out, w, &refs);
        Ok(Some(()))
    }

    /// Streams `/export` as NDJSON chunks into `tx`; the first message is an error for an unknown tag.
    pub async fn export(
        self: Rc<Self>,
        w: Window,
        mut tx: mpsc::Sender<Result<Vec<u8>, (u16, String)>>,
    ) {
        use futures::SinkExt;
        let first_seg = w.start.div_euclid(self.segment_ns);
        let last_seg = (w.end - 1).div_euclid(self.segment_ns);
        let keys = match self.prepared(&w.tag, Some(first_seg), last_seg) {
            Ok(Some(k)) => k,
            Ok(None) => {
                let _ = tx
                    .send(Err((
                        404,
                        format!("tag {:?} has never been written", w.tag),
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err((503, e))).await;
                return;
            }
        };
        for k in keys {
            // Snapshot this segment's sorted order; records below `len` never move or change.
            let (len, perm, lo) = {
                let tags = self.tags.borrow();
                let Some(s) = tags.get(&w.tag).and_then(|t| t.segs.get(&k)) else {
                    continue;
                };
                let v = s.view();
                let lo = asof::lower_bound(&v, w.start);
                let (len, perm) = v.snapshot();
                (len, perm, lo)
            };
            let mut i = lo;
            while i < len {
                let mut chunk = Vec::with_capacity(64 << 10);
                {
                    let mut tags = self.tags.borrow_mut();
                    let Some(s) = tags.get_mut(&w.tag).and_then(|t| t.segs.get_mut(&k)) else {
                        break;
                    };
                    // A checkpoint while the last chunk was sent moved records from memory into the tag
                    // file: map it that far before reading (records keep their indices).
                    let path = self.layout.tag_file(k, &w.tag);
                    if let Err(e) = s.map_file(&path) {
                        drop(tags);
                        let _ = tx
                            .send(Err((503, format!("reading {}: {e}", path.display()))))
                            .await;
                        return;
                    }
                    while i < len && chunk.len() < 60 << 10 {
                        let r = s.raw(perm.as_ref().map_or(i, |p| p[i] as usize));
                        if r.time >= w.end {
                            i = len;
                            break;
                        }
                        render::export_line(&mut chunk, &r);
                        i += 1;
                    }
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Final flush at shutdown: checkpoint everything and remove the (then empty) live log.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.checkpoint().await?;
        let (tx, rx) = oneshot::channel();
        let g = self.generation.get() + 1;
        let path = self
            .layout
            .wal_dir()
            .join(format!("{}-c{}-g{g}.wal", self.unique, self.id));
        let file = create_log(&path, &self.trace).await?;
        let _ = self.queue.unbounded_send(Cmd::Rotate {
            file,
            path: path.clone(),
            done: tx,
        });
        if let Ok(Ok(old)) = rx.await {
            let _ = std::fs::remove_file(old.path);
        }
        let _ = std::fs::remove_file(&path);
        let pending = self.spare_pending.borrow_mut().take();
        if let Some(rx) = pending {
            if let Ok(Ok(spare)) = rx.await {
                let _ = std::fs::remove_file(spare);
            }
        }
        if let Some(spare) = self.take_spare() {
            let _ = std::fs::remove_file(spare);
        }
        self.queue.close_channel();
        Ok(())
    }
}

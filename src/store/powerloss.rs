//! The power-loss model: given a trace of what the engine did to its data directory (`iotrace.rs`), every
//! state a device could be left in if the power failed after any event, and a check that start-up recovery
//! brings each of them back to every record acknowledged by then, with its exact values, and nothing that
//! was never written.
//!
//! What survives a power cut at crash point `k` (the first `k` events happened):
//! - *durable* operations: a write to an `O_DSYNC` file that completed; a write or length change that
//!   completed before an fdatasync of its file was issued, when that fdatasync completed; a create, mkdir,
//!   rename or remove when an fsync of its directory, issued after it, completed;
//! - any subset of the other operations issued so far, and of a write any subset of its 512-byte sectors
//!   (a torn write).
//!
//! Durable operations are applied in trace order; the chosen volatile ones after them, also in trace order.
//! That differs from applying everything in trace order only if a volatile operation overlaps a later
//! durable one on the same file or name, which the engine never does (asserted while applying).
//!
//! Each crash point is checked with every subset when the volatile operations have few sectors and names
//! between them; otherwise with every whole-operation subset (or each operation dropped alone, when there
//! are many), plus random sector-level subsets ([`Breadth`]). A test cuts recovery itself the same way and
//! runs recovery again.

pub mod simdisk;
mod states;

use states::{apply, choices, Order};
pub use states::{check_recovery, Checked};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use crate::record::Record;
use crate::store::disk::Disk;
use crate::store::iotrace::Event;
use crate::store::layout::Layout;
use crate::store::recovery;
use crate::store::{manifest, sidecar, wal};
use simdisk::{parent, Image, SimDisk, SECTOR};

/// How many states a crash point is checked with.
#[derive(Debug, Clone, Copy)]
pub struct Breadth {
    /// Every subset of sectors and names when there are at most this many.
    pub exhaustive_bits: u32,
    /// Else every subset of whole operations when there are at most this many (else each dropped alone).
    pub exhaustive_ops: usize,
    /// Plus this many random sector-level subsets.
    pub random_tears: usize,
}

impl Breadth {
    pub const FULL: Breadth = Breadth {
        exhaustive_bits: 8,
        exhaustive_ops: 6,
        random_tears: 16,
    };
    /// For recoveries cut inside an already cut run.
    pub const NARROW: Breadth = Breadth {
        exhaustive_bits: 4,
        exhaustive_ops: 3,
        random_tears: 4,
    };
}

/// Where the simulated data directory is mounted (the paths recovery sees).
const ROOT: &str = "/powerloss-model";

/// (tag, segment, record index): one slot of one tag file.
pub type Slot = (String, i64, u64);

#[derive(Debug, Clone)]
enum Op {
    Link(String, usize),
    Mkdir(String),
    Rename(String, String),
    Remove(String),
    Write {
        ino: usize,
        offset: u64,
        data: Rc<Vec<u8>>,
    },
    SetLen(usize, u64),
}

impl Op {
    /// Sectors (writes) or 1: how many independent pieces a power cut can keep or lose.
    fn pieces(&self) -> usize {
        match self {
            Op::Write { offset, data, .. } => {
                let end = offset + data.len() as u64;
                (end.div_ceil(SECTOR) - offset / SECTOR) as usize
            }
            _ => 1,
        }
    }

    /// The bytes of its file a data operation changes (a length change: everything from the new end).
    fn range(&self) -> (u64, u64) {
        match self {
            Op::Write { offset, data, .. } => (*offset, offset + data.len() as u64),
            Op::SetLen(_, n) => (*n, u64::MAX),
            _ => (0, 0),
        }
    }

    fn ino(&self) -> Option<usize> {
        match self {
            Op::Write { ino, .. } | Op::SetLen(ino, _) => Some(*ino),
            _ => None,
        }
    }

    fn names(&self) -> Vec<&str> {
        match self {
            Op::Link(p, _) | Op::Mkdir(p) | Op::Remove(p) => vec![p],
            Op::Rename(a, b) => vec![a, b],
            _ => Vec::new(),
        }
    }
}

struct Traced {
    op: Op,
    /// Index of the event that issued it.
    issued: usize,
    /// Crash points from which it is durable (`usize::MAX`: never).
    durable_from: usize,
}

/// The operations of a trace and when each became durable; the records each acknowledgement covers.
pub struct Model {
    ops: Vec<Traced>,
    events: usize,
    /// (crash points from which it counts, the slots it acknowledged).
    acks: Vec<(usize, Vec<(Slot, Record)>)>,
    /// Every value the engine ever logged for a slot (acknowledged or not).
    pub written: HashMap<Slot, Vec<Record>>,
    /// What each event was, for [`Model::subsumed`].
    kinds: Vec<Kind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ack,
    SyncIssue,
    Other,
}

/// The record entries of one framed log commit.
fn commit_records(block: &[u8], segment_ns: i64) -> Vec<(Slot, Record)> {
    let (commits, _) = wal::scan(block);
    let mut out = Vec::new();
    for c in commits {
        let mut entries = Vec::new();
        if wal::entries(c.payload, &mut entries).is_err() {
            continue;
        }
        for e in entries {
            if let wal::Entry::Record { tag, index, record } = e {
                out.push(((tag, record.time.div_euclid(segment_ns), index), record));
            }
        }
    }
    out
}

impl Model {
    /// Builds the model of `events` applied to `base` (whose names resolve the trace's first paths).
    pub fn new(base: &Image, events: &[Event], segment_ns: i64) -> Result<Model, String> {
        let mut live = base.names.clone();
        let mut next_ino = base.next_ino();
        let mut ops: Vec<Traced> = Vec::new();
        let mut writes: HashMap<u64, (usize, bool)> = HashMap::new();
        let mut completed: HashMap<usize, usize> = HashMap::new();
        let mut syncs: HashMap<u64, (usize, usize)> = HashMap::new();
        let mut dirsyncs: HashMap<u64, (usize, String)> = HashMap::new();
        let mut pending_dirs: HashMap<usize, Vec<String>> = HashMap::new();
        let mut acks = Vec::new();
        let mut written: HashMap<Slot, Vec<Record>> = HashMap::new();
        let mut log_blocks: HashMap<u64, Rc<Vec<u8>>> = HashMap::new();
        let ino_of = |live: &BTreeMap<String, usize>, p: &str, i: usize| {
            live.get(p)
                .copied()
                .ok_or_else(|| format!("event {i}: {p} is not an open file"))
        };
        for (i, e) in events.iter().enumerate() {
            let mut push = |op: Op, dirs: Vec<String>, ops: &mut Vec<Traced>| {
                if !dirs.is_empty() {
                    pending_dirs.insert(ops.len(), dirs);
                }
                ops.push(Traced {
                    op,
                    issued: i,
                    durable_from: usize::MAX,
                });
            };
            match e {
                Event::Create(p) if !live.contains_key(p) => {
                    live.insert(p.clone(), next_ino);
                    push(
                        Op::Link(p.clone(), next_ino),
                        vec![parent(p).into()],
                        &mut ops,
                    );
                    next_ino += 1;
                }
                Event::Create(_) => {}
                Event::Mkdir(p) => push(Op::Mkdir(p.clone()), vec![parent(p).into()], &mut ops),
                Event::Rename(a, b) => {
                    if let Some(ino) = live.remove(a) {
                        live.insert(b.clone(), ino);
                    }
                    let dirs = vec![parent(a).to_string(), parent(b).to_string()];
                    push(Op::Rename(a.clone(), b.clone()), dirs, &mut ops);
                }
                Event::Remove(p) => {
                    live.remove(p);
                    push(Op::Remove(p.clone()), vec![parent(p).into()], &mut ops);
                }
                Event::SetLen(p, n) => {
                    let ino = ino_of(&live, p, i)?;
                    completed.insert(ops.len(), i);
                    push(Op::SetLen(ino, *n), Vec::new(), &mut ops);
                }
                Event::Write {
                    id,
                    path,
                    offset,
                    dsync,
                    data,
                } => {
                    let ino = ino_of(&live, path, i)?;
                    let data = Rc::new(data.clone());
                    if *dsync {
                        for (slot, r) in commit_records(&data, segment_ns) {
                            written.entry(slot).or_default().push(r);
                        }
                        log_blocks.insert(*id, Rc::clone(&data));
                    }
                    writes.insert(*id, (ops.len(), *dsync));
                    push(
                        Op::Write {
                            ino,
                            offset: *offset,
                            data,
                        },
                        Vec::new(),
                        &mut ops,
                    );
                }
                Event::Wrote(id) => {
                    let &(op, dsync) = writes
                        .get(id)
                        .ok_or_else(|| format!("event {i}: completion of unknown write {id}"))?;
                    completed.insert(op, i);
                    if dsync {
                        ops[op].durable_from = i + 1;
                    }
                }
                Event::Sync(id, p) => {
                    syncs.insert(*id, (i, ino_of(&live, p, i)?));
                }
                Event::Synced(id) => {
                    let &(began, ino) = syncs
                        .get(id)
                        .ok_or_else(|| format!("event {i}: completion of unknown sync {id}"))?;
                    for (j, t) in ops.iter_mut().enumerate() {
                        let done_before = completed.get(&j).is_some_and(|&c| c < began);
                        if t.op.ino() == Some(ino) && done_before && t.durable_from == usize::MAX {
                            t.durable_from = i + 1;
                        }
                    }
                }
                Event::DirSync(id, d) => {
                    dirsyncs.insert(*id, (i, d.clone()));
                }
                Event::DirSynced(id) => {
                    let (began, d) = dirsyncs
                        .get(id)
                        .cloned()
                        .ok_or_else(|| format!("event {i}: completion of unknown dirsync {id}"))?;
                    for (j, t) in ops.iter_mut().enumerate() {
                        if t.issued >= began {
                            continue;
                        }
                        if let Some(dirs) = pending_dirs.get_mut(&j) {
                            dirs.retain(|x| *x != d);
                            if dirs.is_empty() {
                                pending_dirs.remove(&j);
                                t.durable_from = i + 1;
                            }
                        }
                    }
                }
                Event::Ack(id) => {
                    let block = log_blocks.get(id).ok_or_else(|| {
                        format!("event {i}: acknowledgement of unknown commit {id}")
                    })?;
                    acks.push((i + 1, commit_records(block, segment_ns)));
                }
            }
        }
        let kinds = events
            .iter()
            .map(|e| match e {
                Event::Ack(_) => Kind::Ack,
                Event::Sync(..) | Event::DirSync(..) => Kind::SyncIssue,
                _ => Kind::Other,
            })
            .collect();
        Ok(Model {
            kinds,
            ops,
            events: events.len(),
            acks,
            written,
        })
    }

    /// True when crash point `k` leaves the same states as `k + 1` with no more acknowledged: the next
    /// event is an acknowledgement (same disk, more to keep) or the issue of an fsync (changes nothing
    /// until it completes). Checking `k + 1` covers `k`.
    fn subsumed(&self, k: usize) -> bool {
        matches!(self.kinds.get(k), Some(Kind::Ack) | Some(Kind::SyncIssue))
    }

    /// Crash points: 0 (nothing happened) to the number of events (all happened).
    pub fn crash_points(&self) -> usize {
        self.events + 1
    }

    /// Every slot acknowledged before crash point `k`, with its value.
    pub fn acknowledged(&self, k: usize) -> BTreeMap<Slot, Record> {
        let mut out = BTreeMap::new();
        for (from, slots) in self.acks.iter().filter(|(from, _)| *from <= k) {
            debug_assert!(*from <= k);
            for (slot, r) in slots {
                out.insert(slot.clone(), *r);
            }
        }
        out
    }

    /// Walks every crash point, calling `check(k, disk)` on a [`SimDisk`] holding each state the device could
    /// be in. Returns the number of states checked.
    pub fn walk(
        &self,
        base: &Image,
        breadth: Breadth,
        mut check: impl FnMut(usize, &SimDisk) -> Result<(), String>,
    ) -> Result<usize, String> {
        let mut durable = Rc::new(base.clone());
        let mut order = Order::default();
        let mut states = 0;
        for k in 0..self.crash_points() {
            let skip = self.subsumed(k);
            // Operations durable from k on join the durable image, in trace order.
            for (j, t) in self
                .ops
                .iter()
                .enumerate()
                .filter(|(_, t)| t.durable_from == k)
            {
                assert!(
                    order.overtaken(&t.op, j).is_none(),
                    "model: changes of one file range or name became durable out of trace order"
                );
                order.applied(&t.op, j);
                apply(Rc::make_mut(&mut durable), None, &t.op, &|_| true);
            }
            let volatile: Vec<usize> = (0..self.ops.len())
                .filter(|&j| self.ops[j].issued < k && self.ops[j].durable_from > k)
                .collect();
            for j in &volatile {
                let op = &self.ops[*j].op;
                assert!(
                    order.overtaken(op, *j).is_none(),
                    "model: volatile operation {j} overlaps a later durable one; trace order would be lost"
                );
            }
            if skip {
                continue;
            }
            for keep in choices(&volatile, &self.ops, k as u64, breadth) {
                let disk = SimDisk::new(Path::new(ROOT), Rc::clone(&durable));
                for (n, &j) in volatile.iter().enumerate() {
                    let kept = &keep[n];
                    if kept.iter().any(|&b| b) {
                        disk.apply(&self.ops[j].op, &|s| kept.get(s).copied().unwrap_or(false));
                    }
                }
                check(k, &disk)?;
                states += 1;
            }
        }
        Ok(states)
    }
}

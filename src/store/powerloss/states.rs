//! The states a device could be left in at a crash point, and the check of each: which writes not yet
//! durable survive (whole, torn at sectors, or not at all), applied to an image of the disk, recovered with
//! the real recovery code and compared with what was acknowledged.

use super::*;

/// The durable operations applied so far, to check that applying in durability order is trace order.
#[derive(Default)]
pub(super) struct Order {
    /// Per file: (first byte, end, operation index) of each durable data operation.
    files: HashMap<usize, Vec<(u64, u64, usize)>>,
    /// Per name: the latest durable operation on it.
    names: HashMap<String, usize>,
}

impl Order {
    /// A durable operation later than `j` that touches what `op` touches.
    pub(super) fn overtaken(&self, op: &Op, j: usize) -> Option<usize> {
        if let Some(ino) = op.ino() {
            let (a, b) = op.range();
            let hit = self.files.get(&ino).and_then(|rs| {
                rs.iter()
                    .find(|&&(s, e, i)| i > j && s < b && a < e)
                    .map(|r| r.2)
            });
            if hit.is_some() {
                return hit;
            }
        }
        op.names()
            .iter()
            .filter_map(|n| self.names.get(*n).copied())
            .find(|&i| i > j)
    }

    pub(super) fn applied(&mut self, op: &Op, j: usize) {
        if let Some(ino) = op.ino() {
            let (a, b) = op.range();
            self.files.entry(ino).or_default().push((a, b, j));
        }
        for n in op.names() {
            self.names.insert(n.to_string(), j);
        }
    }
}

/// Applies `op` to an image, keeping the sectors `keep` says of a write; a file not yet in `img` starts as
/// its copy in `base`.
pub(super) fn apply(img: &mut Image, base: Option<&Image>, op: &Op, keep: &dyn Fn(usize) -> bool) {
    let from_base = |ino: &usize| {
        base.and_then(|b| b.files.get(ino))
            .cloned()
            .unwrap_or_default()
    };
    match op {
        Op::Link(p, ino) => img.link(p, *ino),
        Op::Mkdir(p) => {
            img.dirs.insert(p.clone());
        }
        Op::Rename(a, b) => img.rename(a, b),
        Op::Remove(p) => {
            img.names.remove(p);
        }
        Op::Write { ino, offset, data } => img
            .files
            .entry(*ino)
            .or_insert_with(|| from_base(ino))
            .write(*offset, data, keep),
        Op::SetLen(ino, n) => img
            .files
            .entry(*ino)
            .or_insert_with(|| from_base(ino))
            .set_len(*n),
    }
}

impl SimDisk {
    /// Applies a volatile operation the crash kept (not recorded as an event: it is the crash's doing).
    pub(super) fn apply(&self, op: &Op, keep: &dyn Fn(usize) -> bool) {
        self.with_image(|img, base| apply(img, Some(base), op, keep));
    }
}

/// A small deterministic generator (xorshift64*), so a failing state can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The subsets of the volatile operations to check: for each, which of its pieces survive.
pub(super) fn choices(
    volatile: &[usize],
    ops: &[Traced],
    seed: u64,
    b: Breadth,
) -> Vec<Vec<Vec<bool>>> {
    let pieces: Vec<usize> = volatile.iter().map(|&j| ops[j].op.pieces()).collect();
    let bits: usize = pieces.iter().sum();
    // Whole operations kept or lost: `keep(n)` for the n-th volatile one.
    let whole = |keep: &dyn Fn(usize) -> bool| -> Vec<Vec<bool>> {
        pieces
            .iter()
            .enumerate()
            .map(|(n, &p)| vec![keep(n); p])
            .collect()
    };
    if bits as u32 <= b.exhaustive_bits {
        return (0..1u64 << bits)
            .map(|mask| {
                let mut at = 0;
                pieces
                    .iter()
                    .map(|&p| {
                        let v = (at..at + p).map(|b| mask >> b & 1 == 1).collect();
                        at += p;
                        v
                    })
                    .collect()
            })
            .collect();
    }
    let mut out = Vec::new();
    if volatile.len() <= b.exhaustive_ops {
        assert!(b.exhaustive_ops < 64, "BUG: 2^{} subsets", b.exhaustive_ops);
        out.extend((0..1u64 << volatile.len()).map(|mask| whole(&|n| mask >> n & 1 == 1)));
    } else {
        // None, all, and all but one (each of them: more than 64 in doubt at a crash point happens).
        out.push(whole(&|_| false));
        out.push(whole(&|_| true));
        out.extend((0..volatile.len()).map(|k| whole(&|n| n != k)));
    }
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for _ in 0..b.random_tears {
        out.push(
            pieces
                .iter()
                .map(|&p| (0..p).map(|_| rng.next() & 1 == 1).collect())
                .collect(),
        );
    }
    out
}

/// What [`check_recovery`] found in one state.
#[derive(Debug, Default, Clone, Copy)]
pub struct Checked {
    pub records: usize,
}

/// Runs recovery on `disk` (`unique`: this run's name for its recovery log) and checks the tag files it leaves: every slot in `must` holds exactly its
/// record, and every record present is one the engine logged for that slot.
pub fn check_recovery(
    disk: &SimDisk,
    unique: &str,
    segment_ns: i64,
    must: &BTreeMap<Slot, Record>,
    written: &HashMap<Slot, Vec<Record>>,
) -> Result<Checked, String> {
    let layout = Layout::new(ROOT);
    recovery::recover_on(disk, &layout, segment_ns, i64::MIN, unique)
        .map_err(|e| format!("recovery failed: {e}"))?;
    let mut files: HashMap<(String, i64), Vec<Record>> = HashMap::new();
    let listed = recovery::list_tag_files_on(disk, &layout).map_err(|e| e.to_string())?;
    let mut checked = Checked::default();
    for (seg, tag, path) in listed {
        // Every block has its checksum in the sidecar, and it matches.
        let bytes = disk.read(&path).map_err(|e| e.to_string())?;
        let side = sidecar::path_for(&path);
        let sums = match disk.exists(&side) {
            true => sidecar::parse(&disk.read(&side).map_err(|e| e.to_string())?),
            false => Default::default(),
        };
        for (i, block) in bytes.chunks(crate::store::BLOCK).enumerate() {
            if let Some(what) = sidecar::check(&sums, i, block) {
                return Err(format!("checksum: {tag:?} segment {seg}: {what}"));
            }
            if !sums.contains_key(&(i as u32)) {
                return Err(format!(
                    "checksum: {tag:?} segment {seg}: block {i} has none"
                ));
            }
        }
        let records = recovery::read_records(disk, &path).map_err(|e| e.to_string())?;
        for (i, r) in records.iter().enumerate() {
            let slot = (tag.clone(), seg, i as u64);
            if !written.get(&slot).is_some_and(|vs| vs.contains(r)) {
                return Err(format!(
                    "corrupt: {tag:?} segment {seg} record {i} is {r:?}, never written there"
                ));
            }
        }
        checked.records += records.len();
        files.insert((tag, seg), records);
    }
    check_manifests(disk, &layout, &files)?;
    for ((tag, seg, index), r) in must {
        let got = files
            .get(&(tag.clone(), *seg))
            .and_then(|f| f.get(*index as usize));
        if got != Some(r) {
            return Err(format!(
                "lost: acknowledged record {index} of {tag:?} segment {seg} is {got:?} after recovery"
            ));
        }
    }
    if disk.exists(&layout.wal_dir())
        && !disk
            .list(&layout.wal_dir())
            .map_err(|e| e.to_string())?
            .is_empty()
    {
        return Err("recovery left logs behind".into());
    }
    Ok(checked)
}

/// After recovery, each manifest decodes and says exactly what its core's tag files hold: every file of its
/// core with records, with their count, and nothing else (a start from it loads what a directory read would).
fn check_manifests(
    disk: &SimDisk,
    layout: &Layout,
    files: &HashMap<(String, i64), Vec<Record>>,
) -> Result<(), String> {
    for (seg, dir) in recovery::segment_dirs_on(disk, layout).map_err(|e| e.to_string())? {
        for path in manifest::list_on(disk, &dir).map_err(|e| e.to_string())? {
            let bytes = disk.read(&path).map_err(|e| e.to_string())?;
            let m = manifest::Manifest::decode(&bytes)
                .map_err(|e| format!("manifest {}: {e}", path.display()))?;
            let mut want: Vec<(String, u64)> = files
                .iter()
                .filter(|((tag, s), recs)| *s == seg && !recs.is_empty() && m.owns(tag))
                .map(|((tag, _), recs)| (tag.clone(), recs.len() as u64))
                .collect();
            want.sort();
            let mut got = m.entries.clone();
            got.sort();
            if got != want {
                return Err(format!(
                    "manifest {} says {got:?}; the tag files hold {want:?}",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

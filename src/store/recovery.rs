//! Start-up recovery, run once on the main thread before any executor starts: replays every write-ahead
//! log in `DATA/wal` into the tag files, so that afterwards all data lives in tag files and each core
//! starts with an empty log. Because it works from files alone, it does not care how many cores wrote the
//! logs: a restart with a different `--cpus` re-derives ownership from the tag hash.
//!
//! Order (each step durable before the next, see docs/format.md):
//! 1. read every log; a record entry says "record `index` of (tag, segment)", a length entry "the segment
//!    file holds `count` records";
//! 2. write a recovery log holding the records of every partial block about to be rewritten (a torn
//!    rewrite of that block can then be repaired by the next recovery), fdatasync it and its directory;
//! 3. rewrite each touched tag file from its first touched block, pad, truncate, fdatasync; sync new dirs;
//!    then give each touched segment's manifests (`manifest.rs`) the new counts;
//! 4. remove the old logs, then the recovery log.
//!
//! It never drops a record that a log or a tag file holds: a hole (an index neither in a log nor in the
//! file) means corruption and recovery refuses to go on.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::record::{Record, RECORD_BYTES};
use crate::store::disk::{Disk, RealDisk};
use crate::store::layout::{Layout, LogName};
use crate::store::{align_down, align_up, manifest, sidecar, tagfile, wal, BLOCK};

#[derive(Debug, Default)]
pub struct Report {
    pub logs: usize,
    pub commits: usize,
    pub records: usize,
    pub files: usize,
    /// For the operator: where each log's valid commits ended, when garbage followed them.
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Pending {
    records: BTreeMap<u64, Record>,
    count: u64,
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Reads the records of `path` (whole file; tag files touched by recovery are the hot ones of the last
/// seconds, so this is bounded by what was written since the last checkpoint plus one segment file).
pub fn read_records(disk: &dyn Disk, path: &Path) -> io::Result<Vec<Record>> {
    let bytes = match disk.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let tail_start = align_down(bytes.len().saturating_sub(1));
    let n = tagfile::count_records(bytes.len(), &bytes[tail_start..]);
    Ok(bytemuck::pod_collect_to_vec(&bytes[..n * RECORD_BYTES]))
}

/// Counts the records of an existing tag file by reading its last block.
pub fn count_file(path: &Path) -> io::Result<usize> {
    let f = File::open(path)?;
    let len = f.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0);
    }
    let start = align_down(len - 1).saturating_sub(BLOCK);
    let mut tail = vec![0; len - start];
    f.read_exact_at(&mut tail, start as u64)?;
    Ok(tagfile::count_records(len, &tail))
}

/// Reads a log up to the end of its valid commits, not its whole preallocated (zero) length: the read grows
/// until the scan stops inside what was read, at a block that does not start a commit reaching further.
pub fn read_log(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let len = disk.len(path)? as usize;
    let mut want = len.min(64 << 10);
    loop {
        let bytes = disk.read_at(path, 0, want)?;
        let (_, end) = wal::scan(&bytes);
        // Where the log may go on past what was read: a header cut off, or a commit longer than the read.
        let reach = if end + wal::HEADER_BYTES > bytes.len() {
            Some(end + wal::HEADER_BYTES)
        } else {
            wal::commit_extent(&bytes, end)
                .map(|x| end + x)
                .filter(|&r| r > bytes.len())
        };
        match reach {
            Some(r) if want < len && bytes.len() == want => {
                want = len.min(align_up(r.max(want * 2)));
            }
            _ => return Ok(bytes),
        }
    }
}

/// The order logs are replayed in, oldest first, so that a newer log's value for a slot wins: by run (the
/// zero-padded start time that prefixes every name), then each core's generations by number (`-g10` after
/// `-g9`), then that run's recovery log; a name of another shape sorts last, by name.
fn log_order(path: &Path) -> (String, u8, u64, u64) {
    match LogName::parse(path) {
        Some(LogName::Generation {
            run,
            core,
            generation,
        }) => (run, 0, core as u64, generation),
        Some(LogName::Recovery { run }) => (run, 1, 0, 0),
        _ => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            (stem.to_string(), 2, 0, 0)
        }
    }
}

/// `cutoff`: records whose segment ended at or before this time are past retention and not replayed.
pub fn recover(layout: &Layout, segment_ns: i64, cutoff: i64, unique: &str) -> io::Result<Report> {
    recover_on(&RealDisk, layout, segment_ns, cutoff, unique)
}

/// [`recover`] on any [`Disk`] (the power-loss model runs it on a simulated one).
pub fn recover_on(
    disk: &dyn Disk,
    layout: &Layout,
    segment_ns: i64,
    cutoff: i64,
    unique: &str,
) -> io::Result<Report> {
    let mut report = Report::default();
    // Spare logs hold only checkpointed commits (or zeros): nothing to replay.
    for p in disk.list(&layout.wal_dir())? {
        if matches!(LogName::parse(&p), Some(LogName::Spare { .. })) {
            disk.remove_file(&p)?;
        }
    }
    // Step 1: what the logs say of each touched (tag, segment).
    let (logs, touched) = read_logs(disk, layout, segment_ns, cutoff, &mut report)?;
    if logs.is_empty() {
        return Ok(report);
    }
    let plans = plan(disk, layout, touched, &mut report)?;
    // Step 2: the recovery log with pre-images and lengths.
    let rlog = write_recovery_log(disk, layout, unique, &logs, &plans)?;
    // Step 3: rewrite the tag files.
    for p in &plans {
        rewrite(disk, layout, p)?;
        report.files += 1;
    }
    // Step 3b: the segments' manifests take the new counts, before the logs that held them go.
    let mut by_seg: BTreeMap<i64, HashMap<&str, u64>> = BTreeMap::new();
    for p in &plans {
        by_seg
            .entry(p.seg)
            .or_default()
            .insert(p.tag.as_str(), p.count as u64);
    }
    for (seg, counts) in &by_seg {
        manifest::update_on(disk, &layout.seg_dir(*seg), counts)?;
    }
    // Step 4: the logs are no longer needed.
    for log in &logs {
        disk.remove_file(log)?;
    }
    disk.sync_dir(&layout.wal_dir())?;
    disk.remove_file(&rlog)?;
    disk.sync_dir(&layout.wal_dir())?;
    Ok(report)
}

/// Every log, oldest first, and what they say of each touched (tag, segment): its records by slot and how
/// many records its file holds. Segments past retention are skipped.
fn read_logs(
    disk: &dyn Disk,
    layout: &Layout,
    segment_ns: i64,
    cutoff: i64,
    report: &mut Report,
) -> io::Result<(Vec<PathBuf>, HashMap<(String, i64), Pending>)> {
    let expired = |seg: i64| super::segment_expired(seg, segment_ns, cutoff);
    let mut logs: Vec<PathBuf> = disk
        .list(&layout.wal_dir())?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    logs.sort_by_key(|p| log_order(p));
    let mut touched: HashMap<(String, i64), Pending> = HashMap::new();
    let mut entries = Vec::new();
    for log in &logs {
        let bytes = read_log(disk, log)?;
        let (commits, end) = wal::scan(&bytes);
        if end < bytes.len() && bytes[end..].iter().any(|&b| b != 0) {
            // Fine: an unacknowledged last commit, torn or partly written. Reported for the operator.
            report.notes.push(format!(
                "recovery: {}: log ends at offset {end}; the rest was never acknowledged",
                log.display(),
            ));
        }
        report.logs += 1;
        for c in &commits {
            report.commits += 1;
            entries.clear();
            wal::entries(c.payload, &mut entries).map_err(|e| {
                other(format!(
                    "{}: commit at offset {}: {e}",
                    log.display(),
                    c.offset
                ))
            })?;
            for e in entries.drain(..) {
                match e {
                    wal::Entry::Record { tag, index, record } => {
                        let seg = record.time.div_euclid(segment_ns);
                        if expired(seg) {
                            continue;
                        }
                        let p = touched.entry((tag, seg)).or_default();
                        p.records.insert(index, record);
                        p.count = p.count.max(index + 1);
                        report.records += 1;
                    }
                    wal::Entry::Length { tag, seg, count } => {
                        if expired(seg) {
                            continue;
                        }
                        let p = touched.entry((tag, seg)).or_default();
                        p.count = p.count.max(count);
                    }
                }
            }
        }
    }
    Ok((logs, touched))
}

/// One touched file's new tail: records `first..count` (the pre-image of the block holding `first_new`,
/// then what the logs hold).
struct Plan {
    path: PathBuf,
    seg: i64,
    tag: String,
    first: usize,
    records: Vec<Record>,
    first_new: usize,
    count: usize,
}

/// Builds every touched file's new tail, and the pre-images of the blocks that will be rewritten.
fn plan(
    disk: &dyn Disk,
    layout: &Layout,
    touched: HashMap<(String, i64), Pending>,
    report: &mut Report,
) -> io::Result<Vec<Plan>> {
    let mut plans = Vec::new();
    for ((tag, seg), p) in touched {
        let path = layout.tag_file(seg, &tag);
        let on_disk = read_records(disk, &path)?;
        // The logs know how many records the file holds: slots past that on disk are the torn tail of a
        // write whose fdatasync never completed (zeros or stale bytes), never acknowledged data.
        let count = p.count as usize;
        if on_disk.len() > count {
            report.notes.push(format!(
                "recovery: {}: ignoring {} slots past the {count} records the logs account for (an unfinished write)",
                path.display(),
                on_disk.len() - count
            ));
        }
        let on_disk = &on_disk[..on_disk.len().min(count)];
        let first_new = match p.records.keys().next() {
            Some(&m) => (m as usize).min(on_disk.len()),
            None => on_disk.len(),
        };
        let first = align_down(first_new * RECORD_BYTES) / RECORD_BYTES;
        let mut records = Vec::with_capacity(count - first);
        for k in first..count {
            match p.records.get(&(k as u64)).or(on_disk.get(k)) {
                Some(r) => records.push(*r),
                None => {
                    return Err(other(format!(
                        "corruption: record {k} of tag {tag:?} segment {seg} is in neither the log nor {} ({} records)",
                        path.display(),
                        on_disk.len()
                    )))
                }
            }
        }
        plans.push(Plan {
            path,
            seg,
            tag,
            first,
            records,
            first_new,
            count,
        });
    }

    Ok(plans)
}

/// Writes and syncs the recovery log: the pre-images of the blocks about to be rewritten and each file's
/// length. Returns its path.
fn write_recovery_log(
    disk: &dyn Disk,
    layout: &Layout,
    unique: &str,
    logs: &[PathBuf],
    plans: &[Plan],
) -> io::Result<PathBuf> {
    let rlog = layout.recovery_log(unique);
    if logs.contains(&rlog) {
        return Err(other(format!(
            "{} exists already: recovery needs a name no earlier run used",
            rlog.display()
        )));
    }
    {
        let mut payload = Vec::new();
        for p in plans {
            for (i, r) in p
                .records
                .iter()
                .enumerate()
                .take(p.first_new.saturating_sub(p.first))
            {
                wal::put_record(&mut payload, &p.tag, (p.first + i) as u64, r);
            }
            wal::put_length(&mut payload, &p.tag, p.seg, p.count as u64);
        }
        let mut block = Vec::new();
        wal::frame(0, &payload, &mut block);
        disk.set_len(&rlog, 0)?;
        disk.write_at(&rlog, 0, &block)?;
        disk.sync_data(&rlog)?;
        disk.sync_dir(&layout.wal_dir())?;
    }

    Ok(rlog)
}

/// Rewrites one tag file from its first touched block, then its sidecar, each synced, with their
/// directories when new.
fn rewrite(disk: &dyn Disk, layout: &Layout, p: &Plan) -> io::Result<()> {
    let dir = p
        .path
        .parent()
        .ok_or_else(|| other("tag file without a directory".into()))?;
    let new_dir = !disk.exists(dir);
    disk.create_dir_all(dir)?;
    let new_file = !disk.exists(&p.path);
    let mut sums = Vec::new();
    if p.count > 0 {
        let (offset, bytes) = tagfile::block_image(p.first, &p.records, p.first_new.max(p.first));
        disk.write_at(&p.path, offset as u64, &bytes)?;
        disk.set_len(&p.path, (offset + bytes.len()) as u64)?;
        sums = sidecar::entries(offset, &bytes);
    } else {
        disk.set_len(&p.path, 0)?;
    }
    disk.sync_data(&p.path)?;
    let mut new_side = false;
    if !sums.is_empty() {
        // The rewritten blocks' checksums, after the data and before the logs go (`sidecar.rs`).
        let side = sidecar::path_for(&p.path);
        new_side = !disk.exists(&side);
        // After the valid entries: a torn append (a crash before the checkpoint's syncfs) is replaced,
        // and the file cut where these entries end, so nothing broken is left between or after them.
        let at = if new_side {
            0
        } else {
            sidecar::valid_len(&disk.read(&side)?) as u64
        };
        disk.write_at(&side, at, &sums)?;
        disk.set_len(&side, at + sums.len() as u64)?;
        disk.sync_data(&side)?;
    }
    if new_file || new_side {
        disk.sync_dir(dir)?;
    }
    if new_dir {
        disk.sync_dir(&layout.seg_root())?;
    }
    Ok(())
}

/// Every tag file in the data directory: (segment, tag, path).
pub fn list_tag_files(layout: &Layout) -> io::Result<Vec<(i64, String, PathBuf)>> {
    list_tag_files_on(&RealDisk, layout)
}

pub fn list_tag_files_on(
    disk: &dyn Disk,
    layout: &Layout,
) -> io::Result<Vec<(i64, String, PathBuf)>> {
    let mut out = Vec::new();
    for (seg, f) in list_segment_files_on(disk, layout, "rec")? {
        let stem = f.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
        match crate::tag::from_file_name(stem) {
            Some(tag) => out.push((seg, tag, f)),
            None => eprintln!("warning: ignoring unexpected file {}", f.display()),
        }
    }
    Ok(out)
}

/// Every segment directory: (segment, path), in no particular order. No segment root: none.
pub fn segment_dirs_on(disk: &dyn Disk, layout: &Layout) -> io::Result<Vec<(i64, PathBuf)>> {
    let dirs = match disk.list(&layout.seg_root()) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r?,
    };
    Ok(dirs
        .into_iter()
        .filter_map(|d| Some((d.file_name()?.to_str()?.parse::<i64>().ok()?, d)))
        .collect())
}

/// Every file named `*.{ext}` in a segment directory: (segment, path). No segment root: none.
pub fn list_segment_files_on(
    disk: &dyn Disk,
    layout: &Layout,
    ext: &str,
) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for (seg, dir) in segment_dirs_on(disk, layout)? {
        for f in disk.list(&dir)? {
            if f.extension().is_some_and(|x| x == ext) {
                out.push((seg, f));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_record as rec;

    fn write_log(layout: &Layout, name: &str, commits: &[Vec<(String, u64, Record)>]) {
        let mut log = Vec::new();
        let mut block = Vec::new();
        for (i, c) in commits.iter().enumerate() {
            let mut payload = Vec::new();
            for (tag, index, r) in c {
                wal::put_record(&mut payload, tag, *index, r);
            }
            wal::frame(i as u64, &payload, &mut block);
            log.extend_from_slice(&block);
        }
        std::fs::write(layout.wal_dir().join(name), log).unwrap();
    }

    #[test]
    fn logs_become_tag_files_and_replay_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.prepare(1000).unwrap();
        let recs: Vec<(String, u64, Record)> = (0..120)
            .map(|i| ("a/b".to_string(), i, rec(5 + i as i64 % 3)))
            .collect();
        write_log(
            &layout,
            "1-0.wal",
            &[recs[..50].to_vec(), recs[50..].to_vec()],
        );
        let r = recover(&layout, 1000, i64::MIN, "x").unwrap();
        assert_eq!((r.logs, r.records, r.files), (1, 120, 1));
        let path = layout.tag_file(0, "a/b");
        assert_eq!(
            read_records(&RealDisk, &path).unwrap(),
            recs.iter().map(|x| x.2).collect::<Vec<_>>()
        );
        assert_eq!(count_file(&path).unwrap(), 120);
        assert_eq!(std::fs::read_dir(layout.wal_dir()).unwrap().count(), 0);
        // A later log with more records of the same file, overlapping the old ones (a checkpoint's pre-image).
        let more: Vec<(String, u64, Record)> =
            (100..130).map(|i| ("a/b".to_string(), i, rec(7))).collect();
        write_log(&layout, "2-0.wal", &[more.clone()]);
        recover(&layout, 1000, i64::MIN, "y").unwrap();
        let got = read_records(&RealDisk, &path).unwrap();
        assert_eq!(got.len(), 130);
        assert_eq!(
            got[..100],
            recs[..100].iter().map(|x| x.2).collect::<Vec<_>>()[..]
        );
        assert_eq!(got[129], rec(7));
        assert_eq!(
            list_tag_files(&layout).unwrap(),
            vec![(0, "a/b".to_string(), path)]
        );
    }

    #[test]
    fn a_log_is_read_to_the_end_of_its_commits_not_its_length() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.wal");
        // A small commit, one larger than the first read (64 KiB), another, then 4 MiB of zeros.
        let sizes = [3usize, 1500, 10];
        let commits: Vec<Vec<(String, u64, Record)>> = sizes
            .iter()
            .scan(0u64, |next, &n| {
                let c = (0..n as u64)
                    .map(|i| ("t".to_string(), *next + i, rec(i as i64)))
                    .collect();
                *next += n as u64;
                Some(c)
            })
            .collect();
        let layout = Layout::new(d.path());
        layout.prepare(1000).unwrap();
        write_log(&layout, "x.wal", &commits);
        let logged = std::fs::read(layout.wal_dir().join("x.wal")).unwrap();
        let mut padded = logged.clone();
        padded.resize(logged.len() + (4 << 20), 0);
        std::fs::write(&path, &padded).unwrap();
        let got = read_log(&RealDisk, &path).unwrap();
        assert!(
            got.len() >= logged.len() && got.len() < padded.len(),
            "{}",
            got.len()
        );
        let (found, end) = wal::scan(&got);
        assert_eq!((found.len(), end), (3, logged.len()));
    }

    #[test]
    fn logs_replay_oldest_first_with_generations_by_number() {
        let mut names = vec![
            "02-recovery.wal",
            "01-c0-g10.wal",
            "02-c1-g0.wal",
            "01-c0-g9.wal",
            "01-recovery.wal",
            "01-c1-g2.wal",
            "odd.wal",
        ];
        names.sort_by_key(|n| log_order(Path::new(n)));
        assert_eq!(
            names,
            [
                "01-c0-g9.wal",
                "01-c0-g10.wal",
                "01-c1-g2.wal",
                "01-recovery.wal",
                "02-c1-g0.wal",
                "02-recovery.wal",
                "odd.wal"
            ]
        );
    }

    #[test]
    fn a_hole_is_corruption() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        layout.prepare(1000).unwrap();
        write_log(&layout, "1.wal", &[vec![("t".into(), 5, rec(1))]]);
        let e = recover(&layout, 1000, i64::MIN, "x").unwrap_err();
        assert!(e.to_string().contains("corruption"), "{e}");
    }
}

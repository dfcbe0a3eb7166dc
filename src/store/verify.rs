//! Offline verification of a data directory (`tickcore --verify`): reads every tag file and every log
//! without changing anything and reports, with file and offset, whatever is not as docs/format.md says.
//! Tag files: a length that is a whole number of blocks, records that are valid (finite values) and inside
//! their segment's time range, and only padding after the last record. Logs: the valid commits from the
//! start (an incomplete last commit is normal after a crash and is reported as information), and entries
//! that parse inside every valid commit. Plain blocking I/O; run it on a stopped engine's directory.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::record::{Record, PAD_BYTE, RECORD_BYTES};
use crate::store::disk::RealDisk;
use crate::store::layout::Layout;
use crate::store::recovery::list_tag_files;
use crate::store::{manifest, sidecar, tagfile, wal, BLOCK};

/// Something not as the format says.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub path: PathBuf,
    pub offset: u64,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub tag_files: usize,
    pub records: u64,
    pub logs: usize,
    pub commits: usize,
    /// One line per log: where its valid commits end.
    pub notes: Vec<String>,
    pub findings: Vec<Finding>,
}

fn check_tag_file(path: &Path, seg: i64, segment_ns: i64, s: &mut Summary) -> io::Result<()> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.read_to_end(&mut bytes)?;
    let n = check_records(
        path,
        &bytes,
        0,
        bytes.len(),
        seg,
        segment_ns,
        &mut s.findings,
    );
    let sums = read_sums(path)?;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if let Some(what) = sidecar::check(&sums, i, block) {
            s.findings.push(Finding {
                path: path.to_path_buf(),
                offset: (i * BLOCK) as u64,
                what,
            });
        }
    }
    s.findings
        .extend(short_of(path, &sums, Some(bytes.len() as u64)));
    s.tag_files += 1;
    s.records += n as u64;
    Ok(())
}

/// Checks the end of one tag file as a starting engine does: the length, and the records and padding of
/// its last block. Damage there is what a crash or a torn write would leave.
pub fn tag_file_tail(path: &Path, seg: i64, segment_ns: i64) -> io::Result<Vec<Finding>> {
    let f = fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    let first = len.saturating_sub(1) / BLOCK * BLOCK / RECORD_BYTES;
    let mut bytes = vec![0; len - first * RECORD_BYTES];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut bytes, (first * RECORD_BYTES) as u64)?;
    let sums = read_sums(path)?;
    let mut findings = Vec::new();
    findings.extend(short_of(path, &sums, Some(len as u64)));
    check_records(path, &bytes, first, len, seg, segment_ns, &mut findings);
    if len >= BLOCK && len % BLOCK == 0 {
        let last = len / BLOCK - 1;
        let block = &bytes[last * BLOCK - first * RECORD_BYTES..];
        if let Some(what) = sidecar::check(&sums, last, block) {
            findings.push(Finding {
                path: path.to_path_buf(),
                offset: (last * BLOCK) as u64,
                what,
            });
        }
    }
    Ok(findings)
}

/// The first-use check of a loaded segment's tag file (`store/shard/check.rs`): [`tag_file_tail`], and
/// that the file holds the `persisted` records its manifest (or its last block at start) said. `Ok(None)`:
/// as expected; `Err`: the check itself could not run (an I/O error, worth another try).
pub fn first_use(
    path: &Path,
    seg: i64,
    segment_ns: i64,
    persisted: usize,
) -> io::Result<Option<Finding>> {
    let found = match tag_file_tail(path, seg, segment_ns) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => vec![Finding {
            path: path.to_path_buf(),
            offset: 0,
            what: format!("missing, but {persisted} records were checkpointed into it"),
        }],
        Err(e) => return Err(e),
    };
    if let Some(f) = found.into_iter().next() {
        return Ok(Some(f));
    }
    let n = crate::store::recovery::count_file(path)?;
    Ok((n != persisted).then(|| Finding {
        path: path.to_path_buf(),
        offset: (n.min(persisted) * RECORD_BYTES) as u64,
        what: format!("holds {n} records, but {persisted} were checkpointed into it"),
    }))
}

/// A tag file shorter than its sidecar says (zero-length or missing included): the sidecar holds the
/// checksum of a block only after a checkpoint wrote and fdatasynced it, so the blocks past the file's end
/// held acknowledged records. `None` when the file covers every block its sidecar names.
pub fn short_of_sidecar(tag_file: &Path) -> io::Result<Option<Finding>> {
    let len = match fs::metadata(tag_file) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(short_of(tag_file, &read_sums(tag_file)?, len))
}

/// [`short_of_sidecar`] with the sidecar's checksums and the file's length (`None`: missing) at hand.
fn short_of(tag_file: &Path, sums: &HashMap<u32, u32>, len: Option<u64>) -> Option<Finding> {
    let last = *sums.keys().max()?;
    let need = (last as u64 + 1) * BLOCK as u64;
    if len.is_some_and(|l| l >= need) {
        return None;
    }
    let is = len.map_or("missing".to_string(), |l| format!("{l} bytes long"));
    Some(Finding {
        path: tag_file.to_path_buf(),
        offset: len.unwrap_or(0),
        what: format!(
            "the file is {is}, but its sidecar {} holds the checksum of block {last} (bytes up to {need}), \
             written and synced by a checkpoint: the records there are lost",
            sidecar::path_for(tag_file).display()
        ),
    })
}

/// Tag files that are missing although their sidecar is there, as (segment, tag file path).
pub fn sidecars_without_file(layout: &Layout) -> io::Result<Vec<(i64, PathBuf)>> {
    let sides = crate::store::recovery::list_segment_files_on(&RealDisk, layout, "crc")?;
    let mut out: Vec<(i64, PathBuf)> = sides
        .into_iter()
        .map(|(seg, side)| (seg, side.with_extension("rec")))
        .filter(|(_, rec)| !rec.exists())
        .collect();
    out.sort();
    Ok(out)
}

/// The block checksums of a tag file (none when it has no sidecar).
fn read_sums(tag_file: &Path) -> io::Result<HashMap<u32, u32>> {
    match fs::read(sidecar::path_for(tag_file)) {
        Ok(b) => Ok(sidecar::parse(&b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e),
    }
}

/// Checks `bytes`, a tag file's bytes from record `first` to its end (`len`), which include its whole
/// last block; returns the record count.
fn check_records(
    path: &Path,
    bytes: &[u8],
    first: usize,
    len: usize,
    seg: i64,
    segment_ns: i64,
    findings: &mut Vec<Finding>,
) -> usize {
    let mut find = |offset: usize, what: String| {
        findings.push(Finding {
            path: path.to_path_buf(),
            offset: offset as u64,
            what,
        })
    };
    if len % BLOCK != 0 {
        find(len, format!("length {len} is not a multiple of {BLOCK}"));
    }
    if len == 0 {
        return 0;
    }
    let base = first * RECORD_BYTES;
    let n = tagfile::count_records(len, bytes);
    let (lo, hi) = (
        seg as i128 * segment_ns as i128,
        (seg as i128 + 1) * segment_ns as i128,
    );
    for k in first..n {
        let at = k * RECORD_BYTES;
        let r: Record = bytemuck::pod_read_unaligned(&bytes[at - base..at - base + RECORD_BYTES]);
        if !r.all_finite() {
            find(
                at,
                format!("record {k} is not a valid record (non-finite value or padding)"),
            );
        } else if !(lo..hi).contains(&(r.time as i128)) {
            find(
                at,
                format!(
                    "record {k} has time {} outside its segment [{lo}, {hi})",
                    r.time
                ),
            );
        }
    }
    let pad_from = (n * RECORD_BYTES).max(base) - base;
    if let Some(p) = bytes[pad_from..].iter().position(|&b| b != PAD_BYTE) {
        find(
            base + pad_from + p,
            "bytes after the last record are not padding".into(),
        );
    }
    n
}

fn check_log(path: &Path, s: &mut Summary) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let (commits, end) = wal::scan(&bytes);
    let mut entries = Vec::new();
    for c in &commits {
        if let Err(e) = wal::entries(c.payload, &mut entries) {
            s.findings.push(Finding {
                path: path.to_path_buf(),
                offset: (c.offset + e.offset) as u64,
                what: e.to_string(),
            });
        }
    }
    s.notes.push(format!(
        "{}: {} valid commits, ending at offset {end} of {}",
        path.display(),
        commits.len(),
        bytes.len()
    ));
    s.logs += 1;
    s.commits += commits.len();
    Ok(())
}

/// Every manifest decodes, and each entry's tag file holds the records it names (not checked while logs
/// are left by a crash: recovery corrects the counts at the next start).
fn check_manifests(layout: &Layout, logs: bool, s: &mut Summary) -> io::Result<()> {
    let mut seg_dirs = crate::store::recovery::segment_dirs_on(&RealDisk, layout)?;
    seg_dirs.sort();
    for (seg, dir) in seg_dirs {
        // Core counts whose every core has a manifest here: then every tag file with records is in one.
        let mut complete: HashMap<usize, Vec<manifest::Manifest>> = HashMap::new();
        for path in manifest::list_on(&RealDisk, &dir)? {
            if !path.is_file() {
                s.findings.push(Finding {
                    path,
                    offset: 0,
                    what: "named like a manifest, but not a file".into(),
                });
                continue;
            }
            let m = match manifest::Manifest::decode(&fs::read(&path)?) {
                Ok(m) => m,
                Err(what) => {
                    s.findings.push(Finding {
                        path,
                        offset: 0,
                        what: format!("{what} (a start reads the directory instead)"),
                    });
                    continue;
                }
            };
            for (tag, n) in &m.entries {
                let file = layout.tag_file(seg, tag);
                let have = match crate::store::recovery::count_file(&file) {
                    Ok(have) => format!("{have} records"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => "missing".into(),
                    Err(e) => return Err(e),
                };
                if have != format!("{n} records") && !logs {
                    s.findings.push(Finding {
                        path: path.clone(),
                        offset: 0,
                        what: format!(
                            "lists {} with {n} records; the file is {have}",
                            file.display()
                        ),
                    });
                }
            }
            complete.entry(m.cores).or_default().push(m);
        }
        if logs {
            continue;
        }
        for (cores, ms) in complete.into_iter().filter(|(n, ms)| ms.len() == *n) {
            let listed: std::collections::HashSet<&str> = ms
                .iter()
                .flat_map(|m| m.entries.iter().map(|(t, _)| t.as_str()))
                .collect();
            for f in fs::read_dir(&dir)?.filter_map(|e| e.ok()).map(|e| e.path()) {
                let Some(tag) = (f.extension().is_some_and(|x| x == "rec"))
                    .then(|| f.file_stem()?.to_str().and_then(crate::tag::from_file_name))
                    .flatten()
                else {
                    continue;
                };
                if !listed.contains(tag.as_str()) && crate::store::recovery::count_file(&f)? > 0 {
                    s.findings.push(Finding {
                        path: f.clone(),
                        offset: 0,
                        what: format!(
                            "holds records, but the manifests of its directory ({cores} cores) do not list it"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Verifies every tag file and log of the data directory at `layout`.
pub fn verify(layout: &Layout) -> io::Result<Summary> {
    let segment_ns = layout.read_format()?;
    let mut s = Summary::default();
    for (seg, _tag, path) in list_tag_files(layout)? {
        check_tag_file(&path, seg, segment_ns, &mut s)?;
    }
    for (_, path) in sidecars_without_file(layout)? {
        s.findings.extend(short_of_sidecar(&path)?);
    }
    let mut logs: Vec<PathBuf> = match fs::read_dir(layout.wal_dir()) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    logs.sort();
    for p in logs
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
    {
        check_log(p, &mut s)?;
    }
    check_manifests(layout, s.logs > 0, &mut s)?;
    Ok(s)
}

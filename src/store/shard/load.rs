//! Opening a shard: the probe read glommio needs first, then the tag files this core owns and their record
//! counts, from one manifest per segment directory (`store/manifest.rs`) without opening a tag file, so a
//! start does not grow with the tag files; a directory without one is read file by file once. Damage is
//! found on each file's first use (`check.rs`), never by refusing the start: the other tags are served.
//! The directory work is blocking I/O, run off the executor.

use std::path::Path;

use glommio::io::DmaFile;

use super::{ShardOptions, Tags};
use crate::clock::now_ns;
use crate::store::device::offload;
use crate::store::disk::RealDisk;
use crate::store::layout::Layout;
use crate::store::manifest::{self, Manifest};
use crate::store::segment::Segment;
use crate::store::{recovery, segment_expired, verify};

/// The tags this core owns, with a loaded segment per tag file.
pub(super) async fn tags(o: &ShardOptions) -> Result<Tags, String> {
    let probe = DmaFile::open(o.layout.probe())
        .await
        .map_err(|e| format!("opening {}: {e}", o.layout.probe().display()))?;
    probe
        .read_at(0, crate::store::BLOCK)
        .await
        .map_err(|e| format!("reading {}: {e}", o.layout.probe().display()))?;
    let _ = probe.close().await;

    let (layout, id, shards, segment_ns) = (o.layout.clone(), o.id, o.shards, o.segment_ns);
    let cutoff = now_ns().saturating_sub(o.retention_ns);
    let loaded = offload(move || segments(&layout, id, shards, segment_ns, cutoff)).await?;
    // Segments are made on the executor: their ids come from its thread.
    let mut tags = Tags::new();
    for (tag, seg, state) in loaded {
        let s = match state {
            Loaded::Records(n) => Segment::loaded(n),
            Loaded::Lost(what) => Segment::damaged(what),
        };
        tags.entry(tag).or_default().segs.insert(seg, s);
    }
    Ok(tags)
}

/// What a start knows of one tag file.
enum Loaded {
    /// It holds this many records (its tail verified on first use).
    Records(usize),
    /// It is gone although a checkpoint synced records into it (the report, naming the file).
    Lost(String),
}

/// The segments this core owns: from each segment directory's manifest for this core count, or, without
/// one, from the directory itself (then the manifest is written, and those of other core counts removed).
fn segments(
    layout: &Layout,
    id: usize,
    shards: usize,
    segment_ns: i64,
    cutoff: i64,
) -> Result<Vec<(String, i64, Loaded)>, String> {
    let mut out = Vec::new();
    let dirs = recovery::segment_dirs_on(&RealDisk, layout)
        .map_err(|e| format!("listing {}: {e}", layout.seg_root().display()))?;
    let (mut from_manifests, mut scanned) = (0, 0);
    for (seg, dir) in dirs {
        let path = manifest::path(&dir, id, shards);
        match read_manifest(&path) {
            Ok(Some(m)) if m.core == id && m.cores == shards => {
                from_manifests += m.entries.len();
                out.extend(
                    m.entries
                        .into_iter()
                        .map(|(tag, n)| (tag, seg, Loaded::Records(n as usize))),
                );
                continue;
            }
            Ok(Some(_)) => eprintln!(
                "core {id}: {} names another core; reading the directory instead",
                path.display()
            ),
            Ok(None) => {}
            Err(e) => eprintln!(
                "core {id}: {}: {e}; reading the directory instead",
                path.display()
            ),
        }
        let found = scan(layout, &dir, seg, id, shards, segment_ns, cutoff)?;
        scanned += found.len();
        out.extend(found);
    }
    if scanned > 0 {
        eprintln!(
            "core {id}: {from_manifests} tag files from manifests, {scanned} read from their directories \
             (their manifests written)"
        );
    }
    Ok(out)
}

/// Largest manifest a start reads (about 40 bytes per tag file): anything larger is not one of ours.
const MANIFEST_BYTES_MAX: u64 = 1 << 30;

/// The manifest at `path`; `None` when there is none; `Err` when it cannot be trusted (then the
/// directory is read instead).
fn read_manifest(path: &Path) -> Result<Option<Manifest>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !meta.is_file() || meta.len() > MANIFEST_BYTES_MAX {
        return Err(format!(
            "not a manifest ({} bytes, or not a file)",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    Manifest::decode(&bytes).map(Some)
}

/// The tag files this core owns in one segment directory, counted from their last blocks, and the
/// sidecars left without their file; then the manifest that spares the next start this work.
fn scan(
    layout: &Layout,
    dir: &Path,
    seg: i64,
    id: usize,
    shards: usize,
    segment_ns: i64,
    cutoff: i64,
) -> Result<Vec<(String, i64, Loaded)>, String> {
    let listing = |e: std::io::Error| format!("listing {}: {e}", dir.display());
    let mut out = Vec::new();
    let mut others = Vec::new();
    for f in std::fs::read_dir(dir).map_err(listing)? {
        let f = f.map_err(listing)?.path();
        if let Some((_, cores)) = manifest::parse_name(&f) {
            if cores != shards && f.is_file() {
                others.push(f);
            }
            continue;
        }
        let ext = f.extension().and_then(|x| x.to_str()).unwrap_or_default();
        let Some(tag) = f
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(crate::tag::from_file_name)
        else {
            continue;
        };
        if crate::tag::owner(crate::tag::hash(&tag), shards) != id {
            continue;
        }
        match ext {
            "rec" => {
                let n = recovery::count_file(&f)
                    .map_err(|e| format!("reading {}: {e}", f.display()))?;
                out.push((tag, seg, Loaded::Records(n)));
            }
            "crc" if !f.with_extension("rec").exists() => {
                if let Some(lost) = orphan_sidecar(layout, &f, seg, segment_ns, cutoff)? {
                    eprintln!("core {id}: {lost}");
                    out.push((tag, seg, Loaded::Lost(lost)));
                }
            }
            _ => {}
        }
    }
    // The manifests of other core counts go first, durably, whatever follows: this run changes the files
    // they describe, and a later start with their count must not trust them.
    if !others.is_empty() {
        for other in &others {
            if let Err(e) = std::fs::remove_file(other) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(format!("removing {}: {e}", other.display()));
                }
            }
        }
        crate::store::layout::sync_dir(dir)
            .map_err(|e| format!("syncing {}: {e}", dir.display()))?;
    }
    // A directory with a lost file gets no manifest: each start reads it again and reports the loss, until
    // the operator moves the sidecar aside.
    if segment_expired(seg, segment_ns, cutoff)
        || out.iter().any(|(_, _, l)| matches!(l, Loaded::Lost(_)))
    {
        return Ok(out);
    }
    let m = Manifest {
        core: id,
        cores: shards,
        entries: out
            .iter()
            .filter_map(|(tag, _, l)| match l {
                Loaded::Records(n) if *n > 0 => Some((tag.clone(), *n as u64)),
                _ => None,
            })
            .collect(),
    };
    let path = manifest::path(dir, id, shards);
    manifest::write_on(&RealDisk, &path, &m)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(out)
}

/// A sidecar whose tag file is missing: the file held synced records, so its tag is reported lost, unless
/// its segment expired (retention removes the sidecar first, then the file; an engine before that left
/// sidecars behind): then it is removed. `Some`: the report.
fn orphan_sidecar(
    layout: &Layout,
    side: &Path,
    seg: i64,
    segment_ns: i64,
    cutoff: i64,
) -> Result<Option<String>, String> {
    if segment_expired(seg, segment_ns, cutoff) {
        eprintln!(
            "removing {}, left behind by the retention of an expired segment",
            side.display()
        );
        let _ = std::fs::remove_file(side);
        return Ok(None);
    }
    let file = side.with_extension("rec");
    Ok(verify::short_of_sidecar(&file)
        .map_err(|e| format!("reading {}: {e}", side.display()))?
        .map(|d| corruption(&d, layout)))
}

/// The report of damage found in a durable tag file, as every use of its tag answers it.
pub fn corruption(d: &verify::Finding, layout: &Layout) -> String {
    format!(
        "corruption: {} at offset {}: {}. `tickcore --verify --data-dir {}` lists every finding; restore the \
         file from a backup, or stop the engine, move it and its sidecar (.crc) aside and remove the \
         manifests (*.manifest) of its directory to serve the tag anew",
        d.path.display(),
        d.offset,
        d.what,
        layout.root.display()
    )
}

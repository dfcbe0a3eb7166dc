//! Opening a shard: the probe read glommio needs first, then the tag files this core owns, each checked
//! (a damaged durable file refuses the start: serving it would be serving lies) and counted, and the
//! sidecars left without their file. The directory work is blocking I/O, run off the executor.

use glommio::io::DmaFile;

use super::{ShardOptions, Tags};
use crate::clock::now_ns;
use crate::store::device::offload;
use crate::store::layout::Layout;
use crate::store::segment::Segment;
use crate::store::{recovery, segment_expired, sidecar, verify};

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
    let files = offload(move || {
        let files = owned_files(&layout, id, shards, segment_ns)?;
        orphan_sidecars(&layout, id, shards, segment_ns, cutoff)?;
        Ok::<_, String>(files)
    })
    .await?;
    // Segments are made on the executor: their ids come from its thread.
    let mut tags = Tags::new();
    for (tag, seg, records) in files {
        tags.entry(tag)
            .or_default()
            .segs
            .insert(seg, Segment::loaded(records));
    }
    Ok(tags)
}

/// Each tag file this core owns, checked: `(tag, segment, records)`.
fn owned_files(
    layout: &Layout,
    id: usize,
    shards: usize,
    segment_ns: i64,
) -> Result<Vec<(String, i64, usize)>, String> {
    let files = recovery::list_tag_files(layout).map_err(|e| format!("listing tag files: {e}"))?;
    let mut owned = Vec::new();
    for (seg, tag, path) in files {
        if crate::tag::owner(crate::tag::hash(&tag), shards) != id {
            continue;
        }
        let damage = verify::tag_file_tail(&path, seg, segment_ns)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if let Some(d) = damage.first() {
            // Recovery has already rewritten every file a log touched: this one was durable, so the
            // damage is corruption, never a crash's unfinished write.
            return Err(corruption(
                d,
                layout,
                "move it and its sidecar (.crc) aside",
            ));
        }
        let n =
            recovery::count_file(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        owned.push((tag, seg, n));
    }
    Ok(owned)
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
    let orphans =
        verify::sidecars_without_file(layout).map_err(|e| format!("listing sidecars: {e}"))?;
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
        let side = sidecar::path_for(&path);
        if segment_expired(seg, segment_ns, cutoff) {
            eprintln!(
                "core {id}: removing {}, left behind by the retention of an expired segment",
                side.display()
            );
            let _ = std::fs::remove_file(&side);
            continue;
        }
        if let Some(d) = verify::short_of_sidecar(&path)
            .map_err(|e| format!("reading {}: {e}", side.display()))?
        {
            return Err(corruption(&d, layout, "move its sidecar aside"));
        }
    }
    Ok(())
}

/// Why a start is refused on damage found in a durable file (`aside`: how to start without the file).
fn corruption(d: &verify::Finding, layout: &Layout, aside: &str) -> String {
    format!(
        "corruption: {} at offset {}: {}; refusing to start. `tickcore --verify --data-dir {}` lists every \
         finding; restore the file from a backup, or {aside} to serve the rest",
        d.path.display(),
        d.offset,
        d.what,
        layout.root.display()
    )
}

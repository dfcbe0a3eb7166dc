//! Retention: the segments that ended before the cutoff leave memory at once and their files leave the disk
//! off the executor (sidecar first, then the tag file, then the directory once empty).

use std::path::PathBuf;

use super::Shard;
use crate::store::device::offload;
use crate::store::{segment_expired, sidecar};

impl Shard {
    /// Deletes the segments that ended before the retention cutoff. Returns the tag files removed.
    pub async fn enforce_retention(&self) -> usize {
        let cutoff = self.retention_cutoff();
        let mut gone: Vec<(PathBuf, PathBuf)> = Vec::new();
        {
            let mut tags = self.tags.borrow_mut();
            tags.retain(|tag, t| {
                while let Some((&seg, _)) = t.segs.first_key_value() {
                    if !segment_expired(seg, self.segment_ns, cutoff) {
                        break;
                    }
                    t.segs.remove(&seg);
                    gone.push((self.layout.tag_file(seg, tag), self.layout.seg_dir(seg)));
                }
                !t.segs.is_empty()
            });
        }
        if gone.is_empty() {
            return 0;
        }
        let id = self.id;
        offload(move || {
            gone.iter()
                .filter(|(file, dir)| remove(id, file, dir))
                .count()
        })
        .await
    }
}

/// Removes one expired tag file: true when it was there. The sidecar goes first: a crash between the two
/// leaves an unchecked file, never a sidecar without its file (which a start reads as lost records). The
/// directory goes once every core has removed its files from it.
fn remove(core: usize, file: &std::path::Path, dir: &std::path::Path) -> bool {
    let side = sidecar::path_for(file);
    if let Err(e) = std::fs::remove_file(&side) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("core {core}: retention: removing {}: {e}", side.display());
        }
    }
    let removed = match std::fs::remove_file(file) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            eprintln!("core {core}: retention: removing {}: {e}", file.display());
            false
        }
    };
    let _ = std::fs::remove_dir(dir);
    removed
}

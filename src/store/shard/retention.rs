//! Retention: the segments that ended before the cutoff leave memory at once and their files leave the disk
//! through the device (the core's manifest of the segment, durably, then each sidecar, then its tag file, then
//! the directory once empty).

use std::path::PathBuf;

use super::Shard;
use crate::store::{manifest, segment_expired, sidecar};

impl Shard {
    /// Deletes the segments that ended before the retention cutoff. Returns the tag files removed.
    pub async fn enforce_retention(&self) -> usize {
        let cutoff = self.retention_cutoff();
        let mut gone: Vec<(PathBuf, PathBuf)> = Vec::new();
        // The directories holding files of this core's expired segments.
        let mut dirs: Vec<PathBuf> = Vec::new();
        {
            let mut tags = self.tags.borrow_mut();
            tags.retain(|tag, t| {
                while let Some((&seg, _)) = t.segs.first_key_value() {
                    if !segment_expired(seg, self.segment_ns, cutoff) {
                        break;
                    }
                    if let Some(s) = t.segs.remove(&seg) {
                        if s.needs_check() || s.damage().is_some() {
                            self.lazy.set(self.lazy.get().saturating_sub(1));
                        }
                        if s.persisted > 0 {
                            dirs.push(self.layout.seg_dir(seg));
                        }
                    }
                    gone.push((self.layout.tag_file(seg, tag), self.layout.seg_dir(seg)));
                }
                !t.segs.is_empty()
            });
        }
        // The manifests first, durably (their directories synced before any file goes): a crash part-way
        // leaves a directory that the next start reads file by file, never a manifest naming removed files.
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            let m = manifest::path(dir, self.id, self.shards);
            for f in [manifest::temporary(&m), m] {
                if let Err(e) = self.device.remove(f).await {
                    eprintln!("core {}: retention: {e}", self.id);
                }
            }
        }
        if !dirs.is_empty() {
            if let Err(e) = self.device.dirs(Vec::new(), dirs).await {
                // The files stay: a manifest might still name them.
                eprintln!("core {}: retention: {e}", self.id);
                return 0;
            }
        }
        let mut removed = 0;
        for (file, dir) in gone {
            // The sidecar first: a crash between the two leaves an unchecked file, never a sidecar without
            // its file (which a start reads as lost records).
            let side = sidecar::path_for(&file);
            if let Err(e) = self.device.remove(side).await {
                eprintln!("core {}: retention: {e}", self.id);
            }
            match self.device.remove(file).await {
                Ok(existed) => removed += usize::from(existed),
                Err(e) => eprintln!("core {}: retention: {e}", self.id),
            }
            // The directory goes once every core has removed its files from it.
            self.device.remove_empty_dir(dir).await;
        }
        removed
    }
}

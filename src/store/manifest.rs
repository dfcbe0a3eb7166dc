//! A segment directory's manifest: for one core of a given core count, every tag file it owns there and how
//! many records it holds, so a start reads one file per segment instead of every tag file (start-up time
//! stops growing with the tag files; each file's tail is verified on its first use instead,
//! `store/shard/check.rs`).
//!
//! ```text
//! DATA/seg/<seg>/core<c>-of<n>.manifest
//! header (32 B): "TCKMAN01" | core u32 | cores u32 | entries u32 | body bytes u32 | crc32c(body) u32
//!                | crc32c(the 28 bytes before) u32
//! body: per entry, tag length u8 | tag (UTF-8) | records u64         (all integers little-endian)
//! ```
//!
//! Bytes past the body are ignored (a manifest is written over an older, longer temporary file).
//!
//! **Invariant:** a manifest names exactly the tag files of its core (under its core count) in its segment
//! that hold records, with their counts, whenever no log holds records of that segment: a checkpoint writes
//! it (to `.tmp`, made durable by the checkpoint's syncfs, renamed after it and before its log generation
//! is retired); recovery rewrites the manifests of the segments it touched before it removes the logs; a
//! start that finds no manifest for its core count reads the directory and writes one; retention removes it
//! before the segment's files. A manifest of another core count is never read, and is removed by a start
//! that reads the directory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::store::disk::Disk;

const MAGIC: &[u8; 8] = b"TCKMAN01";
const HEADER_BYTES: usize = 32;
const EXTENSION: &str = "manifest";
/// More records than any tag file holds (a 96 TiB file): an entry past it is not one a core wrote.
const RECORDS_MAX: u64 = 1 << 40;

/// One core's tag files in one segment: (tag, records).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub core: usize,
    pub cores: usize,
    pub entries: Vec<(String, u64)>,
}

/// The manifest of core `core` of `cores` in segment directory `dir`.
pub fn path(dir: &Path, core: usize, cores: usize) -> PathBuf {
    dir.join(format!("core{core}-of{cores}.{EXTENSION}"))
}

/// Where a manifest is written before it is renamed into place.
pub fn temporary(manifest: &Path) -> PathBuf {
    manifest.with_extension(format!("{EXTENSION}.tmp"))
}

/// `(core, cores)` of a manifest's file name; `None` for any other name.
pub fn parse_name(path: &Path) -> Option<(usize, usize)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(&format!(".{EXTENSION}"))?;
    let (core, cores) = stem.strip_prefix("core")?.split_once("-of")?;
    let (core, cores): (usize, usize) = (core.parse().ok()?, cores.parse().ok()?);
    (core < cores).then_some((core, cores))
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 24);
        for (tag, n) in &self.entries {
            let len = u8::try_from(tag.len()).expect("BUG: a tag longer than 255 bytes");
            body.push(len);
            body.extend_from_slice(tag.as_bytes());
            body.extend_from_slice(&n.to_le_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(MAGIC);
        for v in [self.core, self.cores, self.entries.len(), body.len()] {
            let v = u32::try_from(v).expect("BUG: a manifest past 4 GiB");
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        let own = crc32c::crc32c(&out);
        out.extend_from_slice(&own.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// A manifest from its file's bytes, or what is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
            return Err("not a manifest (no header)".into());
        }
        if crc32c::crc32c(&bytes[..28]) != word(bytes, 28) {
            return Err("its header fails its checksum".into());
        }
        let (core, cores) = (word(bytes, 8) as usize, word(bytes, 12) as usize);
        let (count, len) = (word(bytes, 16) as usize, word(bytes, 20) as usize);
        let body = bytes.get(HEADER_BYTES..HEADER_BYTES + len).ok_or_else(|| {
            format!(
                "{} bytes, its header says {}",
                bytes.len(),
                HEADER_BYTES + len
            )
        })?;
        if crc32c::crc32c(body) != word(bytes, 24) {
            return Err("its entries fail their checksum".into());
        }
        let mut entries = Vec::with_capacity(count.min(body.len()));
        let mut at = 0;
        while at < body.len() {
            let n = usize::from(body[at]);
            let tag = body
                .get(at + 1..at + 1 + n)
                .and_then(|t| std::str::from_utf8(t).ok())
                .ok_or_else(|| format!("entry {} at byte {at}: a broken tag", entries.len()))?;
            let records = body
                .get(at + 1 + n..at + 9 + n)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| format!("entry {} at byte {at}: cut short", entries.len()))?;
            if crate::tag::validate(tag).is_err() || records > RECORDS_MAX {
                return Err(format!(
                    "entry {} at byte {at}: tag {tag:?} with {records} records is not one a core writes",
                    entries.len()
                ));
            }
            entries.push((tag.to_string(), records));
            at += 9 + n;
        }
        if entries.len() != count || core >= cores {
            return Err(format!(
                "{} entries for core {core} of {cores}, its header says {count}",
                entries.len()
            ));
        }
        Ok(Manifest {
            core,
            cores,
            entries,
        })
    }

    /// True when this manifest's core owns `tag`.
    pub fn owns(&self, tag: &str) -> bool {
        crate::tag::owner(crate::tag::hash(tag), self.cores) == self.core
    }
}

/// Every manifest file in segment directory `dir`.
pub fn list_on(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(disk
        .list(dir)?
        .into_iter()
        .filter(|p| parse_name(p).is_some())
        .collect())
}

/// Writes `m` at `to` through its temporary file: written, fdatasynced, renamed, the directory synced.
pub fn write_on(disk: &dyn Disk, to: &Path, m: &Manifest) -> io::Result<()> {
    let dir = to
        .parent()
        .ok_or_else(|| io::Error::other("a manifest without a directory"))?;
    let tmp = temporary(to);
    let bytes = m.encode();
    disk.write_at(&tmp, 0, &bytes)?;
    disk.set_len(&tmp, bytes.len() as u64)?;
    disk.sync_data(&tmp)?;
    disk.rename(&tmp, to)?;
    disk.sync_dir(dir)
}

/// Recovery's step after rewriting tag files: every manifest of segment directory `dir` takes the new
/// record counts of the tags it owns (`counts`), durably, before the logs that held them go. A manifest that
/// does not decode is removed (a start then reads the directory).
pub fn update_on(disk: &dyn Disk, dir: &Path, counts: &HashMap<&str, u64>) -> io::Result<()> {
    if !disk.exists(dir) {
        return Ok(());
    }
    for path in list_on(disk, dir)? {
        let mut m = match Manifest::decode(&disk.read(&path)?) {
            Ok(m) => m,
            Err(_) => {
                disk.remove_file(&path)?;
                disk.sync_dir(dir)?;
                continue;
            }
        };
        let mut index: HashMap<String, usize> = m
            .entries
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.clone(), i))
            .collect();
        let mut changed = false;
        let (core, cores) = (m.core, m.cores);
        let owned = counts
            .iter()
            .filter(|(t, _)| crate::tag::owner(crate::tag::hash(t), cores) == core);
        for (&tag, &n) in owned {
            match index.get(tag) {
                Some(&i) if m.entries[i].1 == n => {}
                Some(&i) => {
                    m.entries[i].1 = n;
                    changed = true;
                }
                None => {
                    index.insert(tag.to_string(), m.entries.len());
                    m.entries.push((tag.to_string(), n));
                    changed = true;
                }
            }
        }
        m.entries.retain(|(_, n)| *n > 0);
        if changed {
            write_on(disk, &path, &m)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            core: 1,
            cores: 3,
            entries: vec![
                ("a".into(), 7),
                ("ünïcode tag".into(), 1 << 40),
                ("b".into(), 0),
            ],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_ignores_bytes_past_its_body() {
        let m = sample();
        let mut bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        bytes.extend_from_slice(&[0xAB; 100]);
        assert_eq!(Manifest::decode(&bytes), Ok(m));
    }

    #[test]
    fn every_damaged_byte_and_every_cut_is_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Manifest::decode(&b).is_err(), "byte {i} flipped");
            assert!(Manifest::decode(&bytes[..i]).is_err(), "cut at {i}");
        }
    }

    #[test]
    fn entries_no_core_writes_are_refused() {
        let long = "a".repeat(40);
        for (tag, n) in [
            ("", 1),
            (long.as_str(), 1),
            ("t", (1 << 40) + 1),
            ("t\n", 1),
        ] {
            let m = Manifest {
                core: 0,
                cores: 1,
                entries: vec![(tag.to_string(), n)],
            };
            assert!(Manifest::decode(&m.encode()).is_err(), "{tag:?} {n}");
        }
    }

    #[test]
    fn names_round_trip_and_others_are_not_manifests() {
        let p = path(Path::new("/d/seg/5"), 2, 4);
        assert_eq!(parse_name(&p), Some((2, 4)));
        assert_eq!(parse_name(&temporary(&p)), None);
        for other in [
            "core4-of4.manifest",
            "6162.rec",
            "core1-of2.crc",
            "corex-of2.manifest",
        ] {
            assert_eq!(parse_name(Path::new(other)), None, "{other}");
        }
    }
}

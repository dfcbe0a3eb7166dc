//! The data directory: where each file lives, the lock that keeps a second engine out, the format file,
//! and directory fsyncs (a new or removed file is durable only once its parent directory is synced).
//!
//! ```text
//! DATA/LOCK                 flock'd for the life of the process
//! DATA/FORMAT               "tickcore-format 1\nsegment_ns N\n": fixed at creation
//! DATA/probe                4 KiB of data, read first by every executor (glommio's iopoll probe)
//! DATA/wal/<id>.wal         write-ahead logs (one live generation per core)
//! DATA/seg/<seg>/<tag>.rec  tag files: records of one tag in one time segment, <tag> hex-encoded
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn wal_dir(&self) -> PathBuf {
        self.root.join("wal")
    }
    pub fn seg_root(&self) -> PathBuf {
        self.root.join("seg")
    }
    pub fn seg_dir(&self, seg: i64) -> PathBuf {
        self.seg_root().join(seg.to_string())
    }
    pub fn tag_file(&self, seg: i64, tag: &str) -> PathBuf {
        self.seg_dir(seg)
            .join(format!("{}.rec", crate::tag::file_name(tag)))
    }
    pub fn probe(&self) -> PathBuf {
        self.root.join("probe")
    }

    /// The segment length of an existing data directory, without creating or changing anything.
    pub fn read_format(&self) -> io::Result<i64> {
        let format = self.root.join("FORMAT");
        parse_format(&fs::read_to_string(&format)?).ok_or_else(|| {
            io::Error::other(format!(
                "{} is not a tickcore format file",
                format.display()
            ))
        })
    }

    /// Creates the directory tree, the probe file and the format file (or checks an existing one) and
    /// returns the segment length in ns that the data directory uses.
    pub fn prepare(&self, segment_ns_wanted: i64) -> io::Result<i64> {
        fs::create_dir_all(self.wal_dir())?;
        fs::create_dir_all(self.seg_root())?;
        let probe = self.probe();
        if fs::metadata(&probe).map(|m| m.len()).unwrap_or(0) < 4096 {
            let mut f = File::create(&probe)?;
            f.write_all(&[0x5A; 4096])?;
            f.sync_all()?;
        }
        let format = self.root.join("FORMAT");
        match fs::read_to_string(&format) {
            Ok(text) => parse_format(&text).ok_or_else(|| {
                io::Error::other(format!(
                    "{} is not a tickcore format file",
                    format.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Written before any data: a directory holding data without it lost it, and guessing its
                // segment length would file records under the wrong segments.
                let holds = |dir: PathBuf| fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
                if holds(self.seg_root()) || holds(self.wal_dir()) {
                    return Err(io::Error::other(format!(
                        "{} is missing but the data directory holds data: refusing to guess its format. \
                         Restore the file (two lines: `tickcore-format {FORMAT_VERSION}` and `segment_ns N`, N \
                         the segment length in ns the directory was created with)",
                        format.display()
                    )));
                }
                let tmp = self.root.join("FORMAT.tmp");
                let mut f = File::create(&tmp)?;
                write!(
                    f,
                    "tickcore-format {FORMAT_VERSION}\nsegment_ns {segment_ns_wanted}\n"
                )?;
                f.sync_all()?;
                fs::rename(&tmp, &format)?;
                sync_dir(&self.root)?;
                Ok(segment_ns_wanted)
            }
            Err(e) => Err(e),
        }
    }
}

fn parse_format(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    let version: u32 = lines
        .next()?
        .strip_prefix("tickcore-format ")?
        .parse()
        .ok()?;
    if version != FORMAT_VERSION {
        return None;
    }
    let seg: i64 = lines.next()?.strip_prefix("segment_ns ")?.parse().ok()?;
    (seg > 0).then_some(seg)
}

/// Makes the creation, rename or removal of entries of `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An exclusive lock on the data directory, held until dropped (i.e. until the process exits).
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(root: &Path) -> io::Result<DirLock> {
        fs::create_dir_all(root)?;
        let path = root.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "data directory {} is in use by another tickcore process (lock {})",
                        root.display(),
                        path.display()
                    ),
                ));
            }
            return Err(e);
        }
        let _ = file.set_len(0);
        let _ = writeln!(&file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_format_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(d.path()).unwrap();
        let e = DirLock::acquire(d.path()).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(lock);
        DirLock::acquire(d.path()).unwrap();
        let l = Layout::new(d.path());
        assert_eq!(l.prepare(1000).unwrap(), 1000);
        assert_eq!(
            l.prepare(5).unwrap(),
            1000,
            "an existing directory keeps its segment length"
        );
    }
}

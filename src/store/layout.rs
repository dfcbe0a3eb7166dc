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
    /// Generation `generation` of core `core`'s log in the run named `run`.
    pub fn log_file(&self, run: &str, core: usize, generation: u64) -> PathBuf {
        self.wal_dir().join(
            LogName::Generation {
                run: run.into(),
                core,
                generation,
            }
            .file_name(),
        )
    }
    /// Core `core`'s spare log: a zeroed or checkpointed file, ready to become its next generation.
    pub fn spare_log(&self, run: &str, core: usize) -> PathBuf {
        self.wal_dir().join(
            LogName::Spare {
                run: run.into(),
                core,
            }
            .file_name(),
        )
    }
    /// The log start-up recovery writes its pre-images into, for the run named `run`.
    pub fn recovery_log(&self, run: &str) -> PathBuf {
        self.wal_dir()
            .join(LogName::Recovery { run: run.into() }.file_name())
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

/// The names of the files in `DATA/wal`: built and parsed here only. `run` is the engine run's unique,
/// zero-padded start time, so runs sort by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogName {
    /// `<run>-c<core>-g<generation>.wal`
    Generation {
        run: String,
        core: usize,
        generation: u64,
    },
    /// `<run>-recovery.wal`
    Recovery { run: String },
    /// `<run>-c<core>.spare`
    Spare { run: String, core: usize },
}

impl LogName {
    pub fn file_name(&self) -> String {
        match self {
            LogName::Generation {
                run,
                core,
                generation,
            } => format!("{run}-c{core}-g{generation}.wal"),
            LogName::Recovery { run } => format!("{run}-recovery.wal"),
            LogName::Spare { run, core } => format!("{run}-c{core}.spare"),
        }
    }

    /// The name of `path`, or `None` for a file of another shape.
    pub fn parse(path: &Path) -> Option<LogName> {
        let name = path.file_name()?.to_str()?;
        if let Some(stem) = name.strip_suffix(".spare") {
            let (run, core) = stem.rsplit_once("-c")?;
            return Some(LogName::Spare {
                run: run.into(),
                core: core.parse().ok()?,
            });
        }
        let stem = name.strip_suffix(".wal")?;
        if let Some(run) = stem.strip_suffix("-recovery") {
            return Some(LogName::Recovery { run: run.into() });
        }
        let (rest, generation) = stem.rsplit_once("-g")?;
        let (run, core) = rest.rsplit_once("-c")?;
        Some(LogName::Generation {
            run: run.into(),
            core: core.parse().ok()?,
            generation: generation.parse().ok()?,
        })
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
    fn log_names_round_trip_and_others_are_refused() {
        let layout = Layout::new("/d");
        let run = "00000000000000000042";
        for (path, name) in [
            (
                layout.log_file(run, 3, 17),
                LogName::Generation {
                    run: run.into(),
                    core: 3,
                    generation: 17,
                },
            ),
            (
                layout.spare_log(run, 1),
                LogName::Spare {
                    run: run.into(),
                    core: 1,
                },
            ),
            (
                layout.recovery_log(run),
                LogName::Recovery { run: run.into() },
            ),
        ] {
            assert_eq!(path.parent(), Some(layout.wal_dir().as_path()));
            assert_eq!(LogName::parse(&path), Some(name));
        }
        assert_eq!(
            layout.log_file(run, 3, 17).file_name().unwrap(),
            "00000000000000000042-c3-g17.wal"
        );
        for odd in [
            "odd.wal",
            "x-cq-g1.wal",
            "x-c1-g.wal",
            "x-c1.wal",
            "x-c1-g2.rec",
            "x.spare",
        ] {
            assert_eq!(LogName::parse(Path::new(odd)), None, "{odd}");
        }
    }

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

//! The live path's storage operations behind one narrow trait: everything the commit loop and the checkpoint
//! do to files once the engine serves (a log commit, a tag file's write and fdatasync, a sidecar append, the
//! sidecars' syncfs, the spare log's rename, segment directories made and synced). [`Dma`] performs them
//! (glommio direct I/O on the core; directory work and small buffered writes on glommio's blocking thread).
//! [`Faulty`] wraps any device and fails the operations a fault plan names (`--fault-file`), so the
//! I/O-error tests drive the real engine through the very calls that would fail on a real device.
//! Start-up recovery runs before any executor, on its own blocking trait (`disk.rs`), which the power-loss
//! model implements.
//!
//! Each operation returns a [`StoreError`] with its context (the file and what was being done), so a
//! request failed by it gets 507 (`ENOSPC`) or 503 (any other error) with a reason naming the file.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use glommio::io::DmaFile;

use crate::store::layout::sync_dir;
use crate::store::StoreError;

pub type Io<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'a>>;

/// What a file is to the engine (a fault plan can target one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Log,
    TagFile,
}

pub trait Device {
    /// One commit block written to an `O_DSYNC` log: durable once it returns `Ok`.
    fn commit<'a>(
        &'a self,
        log: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        block: &'a [u8],
    ) -> Io<'a>;
    /// Whole blocks written to a tag file opened `O_DIRECT` (durable only after [`Device::fdatasync`]).
    fn write<'a>(
        &'a self,
        file: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        bytes: &'a [u8],
    ) -> Io<'a>;
    fn fdatasync<'a>(&'a self, file: &'a DmaFile, path: &'a Path) -> Io<'a>;
    /// Bytes written at `at` of a small buffered file (a sidecar), created when missing; not synced.
    fn append(&self, path: PathBuf, at: u64, bytes: Vec<u8>) -> Io<'static>;
    /// `syncfs` of the file system holding `root` (makes the appended sidecars durable at once).
    fn syncfs(&self, root: PathBuf) -> Io<'static>;
    /// Renames `from` to `to` and syncs `dir`, the directory holding both.
    fn rename(&self, from: PathBuf, to: PathBuf, dir: PathBuf) -> Io<'static>;
    /// Creates the directories `missing` (with their parents), then syncs each of `sync`.
    fn dirs(&self, missing: Vec<PathBuf>, sync: Vec<PathBuf>) -> Io<'static>;
}

/// A glommio error, with its context, as a request sees it (507 for a full disk).
pub fn io_err(context: &str, e: impl std::fmt::Display) -> StoreError {
    let s = e.to_string();
    if s.contains("No space left") || s.contains("os error 28") {
        StoreError::NoSpace(format!("{context}: {s}"))
    } else {
        StoreError::Io(format!("{context}: {s}"))
    }
}

/// Runs blocking file-system work on glommio's blocking thread, never on the core.
pub async fn offload<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}

/// The real device: glommio direct I/O.
pub struct Dma;

impl Dma {
    async fn write_all(
        file: &DmaFile,
        path: &Path,
        offset: u64,
        bytes: &[u8],
        op: &str,
    ) -> Result<(), StoreError> {
        let mut buf = file.alloc_dma_buffer(bytes.len());
        buf.as_bytes_mut().copy_from_slice(bytes);
        let n = file
            .write_at(buf, offset)
            .await
            .map_err(|e| io_err(&format!("{op} {}", path.display()), e))?;
        if n != bytes.len() {
            return Err(StoreError::Io(format!(
                "{op} {}: short write, {n} of {} bytes at offset {offset}",
                path.display(),
                bytes.len()
            )));
        }
        Ok(())
    }
}

impl Device for Dma {
    fn commit<'a>(
        &'a self,
        log: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        block: &'a [u8],
    ) -> Io<'a> {
        Box::pin(Dma::write_all(log, path, offset, block, "writing the log"))
    }
    fn write<'a>(
        &'a self,
        file: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        bytes: &'a [u8],
    ) -> Io<'a> {
        Box::pin(Dma::write_all(file, path, offset, bytes, "writing"))
    }
    fn fdatasync<'a>(&'a self, file: &'a DmaFile, path: &'a Path) -> Io<'a> {
        Box::pin(async move {
            file.fdatasync()
                .await
                .map_err(|e| io_err(&format!("fdatasync of {}", path.display()), e))
        })
    }
    fn append(&self, path: PathBuf, at: u64, bytes: Vec<u8>) -> Io<'static> {
        Box::pin(async move {
            let p = path.clone();
            offload(move || -> std::io::Result<()> {
                use std::os::unix::fs::FileExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&p)?
                    .write_all_at(&bytes, at)
            })
            .await
            .map_err(|e| StoreError::from_io(&format!("appending to {}", path.display()), &e))
        })
    }
    fn syncfs(&self, root: PathBuf) -> Io<'static> {
        Box::pin(async move {
            offload(move || -> std::io::Result<()> {
                use std::os::fd::AsRawFd;
                let f = std::fs::File::open(&root)?;
                // SAFETY: syncfs takes any open descriptor on the file system; `f` lives across the call.
                if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .await
            .map_err(|e| StoreError::from_io("syncing the sidecars (syncfs)", &e))
        })
    }
    fn rename(&self, from: PathBuf, to: PathBuf, dir: PathBuf) -> Io<'static> {
        Box::pin(async move {
            let context = format!("renaming {} to {}", from.display(), to.display());
            offload(move || std::fs::rename(&from, &to).and_then(|()| sync_dir(&dir)))
                .await
                .map_err(|e| StoreError::from_io(&context, &e))
        })
    }
    fn dirs(&self, missing: Vec<PathBuf>, sync: Vec<PathBuf>) -> Io<'static> {
        Box::pin(async move {
            offload(move || -> std::io::Result<()> {
                for dir in &missing {
                    std::fs::create_dir_all(dir)?;
                }
                sync.iter().try_for_each(|d| sync_dir(d))
            })
            .await
            .map_err(|e| StoreError::from_io("creating or syncing segment directories", &e))
        })
    }
}

/// An operation a fault plan can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A log commit fails before its data is written.
    LogWrite,
    /// A log commit's data lands, then the write reports failure (as a failed flush would).
    LogSync,
    /// A tag file's write fails before its data is written.
    TagWrite,
    /// A tag file's data is written, then its fdatasync fails.
    TagSync,
    Sidecar,
    Syncfs,
    Rename,
    Dirs,
}

/// A fault plan: the error (`ENOSPC` or `EIO`) and the operations it strikes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub no_space: bool,
    pub ops: Vec<Op>,
}

impl Plan {
    /// Parses a fault file: `ENOSPC|EIO [op ...]`, ops among `log-write log-sync tag-write tag-sync sidecar
    /// syncfs rename dirs`; without ops, `log-write tag-write sidecar` (every write that takes space). Kept
    /// for older tests: `EIO-AFTER-WRITE` = `EIO log-sync`, `EIO-TAGFILES` = `EIO tag-write`.
    pub fn parse(text: &str) -> Result<Plan, String> {
        let mut words = text.split_whitespace();
        let first = words.next().ok_or("an empty fault plan")?;
        let (no_space, mut ops) = match first {
            "ENOSPC" => (true, Vec::new()),
            "EIO" => (false, Vec::new()),
            "EIO-AFTER-WRITE" => (false, vec![Op::LogSync]),
            "EIO-TAGFILES" => (false, vec![Op::TagWrite]),
            other => return Err(format!("unknown error {other:?} (ENOSPC or EIO)")),
        };
        for w in words {
            ops.push(match w {
                "log-write" => Op::LogWrite,
                "log-sync" => Op::LogSync,
                "tag-write" => Op::TagWrite,
                "tag-sync" => Op::TagSync,
                "sidecar" => Op::Sidecar,
                "syncfs" => Op::Syncfs,
                "rename" => Op::Rename,
                "dirs" => Op::Dirs,
                other => return Err(format!("unknown operation {other:?}")),
            });
        }
        if ops.is_empty() {
            ops = vec![Op::LogWrite, Op::TagWrite, Op::Sidecar];
        }
        Ok(Plan { no_space, ops })
    }

    fn error(&self, op: Op, what: &str, source: &Path) -> StoreError {
        let msg = format!("{what}: injected by {} ({op:?})", source.display());
        match self.no_space {
            true => StoreError::NoSpace(format!("No space left on device: {msg}")),
            false => StoreError::Io(format!("Input/output error: {msg}")),
        }
    }
}

/// A device whose operations fail while the fault file exists, as the plan in it says (re-read at every
/// operation, so a test switches faults on and off from outside the engine). A plan that does not parse
/// fails every operation it could, and says why.
pub struct Faulty<D> {
    pub inner: D,
    pub fault_file: PathBuf,
}

impl<D: Device> Faulty<D> {
    /// The error to inject into `op` now, if any.
    fn strikes(&self, op: Op, what: &Path) -> Option<StoreError> {
        let text = std::fs::read_to_string(&self.fault_file).ok()?;
        let plan = match Plan::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                return Some(StoreError::Io(format!(
                    "bad fault plan in {}: {e}",
                    self.fault_file.display()
                )))
            }
        };
        plan.ops
            .contains(&op)
            .then(|| plan.error(op, &what.display().to_string(), &self.fault_file))
    }
}

impl<D: Device> Device for Faulty<D> {
    fn commit<'a>(
        &'a self,
        log: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        block: &'a [u8],
    ) -> Io<'a> {
        Box::pin(async move {
            if let Some(e) = self.strikes(Op::LogWrite, path) {
                return Err(e);
            }
            self.inner.commit(log, path, offset, block).await?;
            self.strikes(Op::LogSync, path).map_or(Ok(()), Err)
        })
    }
    fn write<'a>(
        &'a self,
        file: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        bytes: &'a [u8],
    ) -> Io<'a> {
        Box::pin(async move {
            match self.strikes(Op::TagWrite, path) {
                Some(e) => Err(e),
                None => self.inner.write(file, path, offset, bytes).await,
            }
        })
    }
    fn fdatasync<'a>(&'a self, file: &'a DmaFile, path: &'a Path) -> Io<'a> {
        Box::pin(async move {
            // The data was written: a failed fdatasync leaves it on the device or not, unknowably.
            match self.strikes(Op::TagSync, path) {
                Some(e) => Err(e),
                None => self.inner.fdatasync(file, path).await,
            }
        })
    }
    fn append(&self, path: PathBuf, at: u64, bytes: Vec<u8>) -> Io<'static> {
        match self.strikes(Op::Sidecar, &path) {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.append(path, at, bytes),
        }
    }
    fn syncfs(&self, root: PathBuf) -> Io<'static> {
        match self.strikes(Op::Syncfs, &root) {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.syncfs(root),
        }
    }
    fn rename(&self, from: PathBuf, to: PathBuf, dir: PathBuf) -> Io<'static> {
        match self.strikes(Op::Rename, &from) {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.rename(from, to, dir),
        }
    }
    fn dirs(&self, missing: Vec<PathBuf>, sync: Vec<PathBuf>) -> Io<'static> {
        let what = sync
            .first()
            .or(missing.first())
            .cloned()
            .unwrap_or_default();
        match self.strikes(Op::Dirs, &what) {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.dirs(missing, sync),
        }
    }
}

/// The device the engine runs on: [`Dma`], wrapped in [`Faulty`] when a fault file is given.
pub fn for_config(fault_file: Option<PathBuf>) -> std::rc::Rc<dyn Device> {
    match fault_file {
        Some(fault_file) => std::rc::Rc::new(Faulty {
            inner: Dma,
            fault_file,
        }),
        None => std::rc::Rc::new(Dma),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse() {
        let p = Plan::parse("ENOSPC\n").unwrap();
        assert!(p.no_space);
        assert_eq!(p.ops, vec![Op::LogWrite, Op::TagWrite, Op::Sidecar]);
        let p = Plan::parse("EIO tag-sync rename").unwrap();
        assert!(!p.no_space);
        assert_eq!(p.ops, vec![Op::TagSync, Op::Rename]);
        assert_eq!(
            Plan::parse("EIO-AFTER-WRITE").unwrap().ops,
            vec![Op::LogSync]
        );
        assert_eq!(Plan::parse("EIO-TAGFILES").unwrap().ops, vec![Op::TagWrite]);
        assert!(Plan::parse("").is_err());
        assert!(Plan::parse("EPERM").is_err());
        assert!(Plan::parse("EIO fsync").is_err());
    }

    #[test]
    fn injected_errors_say_what_and_which_kind() {
        let p = Plan::parse("ENOSPC").unwrap();
        let e = p.error(Op::LogWrite, "/d/wal/x.wal", Path::new("/tmp/fault"));
        assert!(matches!(e, StoreError::NoSpace(_)), "{e:?}");
        assert!(e.to_string().contains("/d/wal/x.wal"), "{e}");
        let p = Plan::parse("EIO").unwrap();
        let e = p.error(Op::TagSync, "f", Path::new("/tmp/fault"));
        assert!(matches!(e, StoreError::Io(_)), "{e:?}");
    }
}

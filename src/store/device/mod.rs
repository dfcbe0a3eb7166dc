//! The live path's storage operations behind one narrow trait: everything the commit loop, the log and the
//! checkpoint do to files once the engine serves (a log commit, a log created, zeroed, recycled or removed,
//! a tag file opened and written, a sidecar append, the checkpoint's syncfs, segment directories
//! made and synced, retention's removals). Three implementations stack:
//!
//! - [`dma::Dma`] performs them: glommio direct I/O on the core; directory work, small buffered writes and
//!   removals on glommio's blocking thread, never on the core.
//! - [`faulty::Faulty`] wraps a device and fails the operations a fault plan names (`--fault-file`), so the
//!   I/O-error tests drive the real engine through the very calls that would fail on a real device.
//! - [`traced::Traced`] wraps a device and records every operation for the power-loss model
//!   (`--trace-io`, `iotrace.rs`): issued before it runs, completed after it succeeded.
//!
//! Start-up recovery runs before any executor, on its own blocking trait (`disk.rs`), which the power-loss
//! model implements. Each operation returns a [`StoreError`] with its context (the file and what was being
//! done), which `server/routes.rs` answers with 507 (`ENOSPC`) or 503.

pub mod dma;
pub mod faulty;
pub mod traced;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use glommio::io::DmaFile;

use crate::store::iotrace::Tracer;
use crate::store::StoreError;

pub type Io<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'a>>;
/// An operation that opens a file.
pub type Opened = LocalBoxFuture<'static, Result<DmaFile, StoreError>>;

pub trait Device {
    /// One commit block written to an `O_DSYNC` log: durable once it returns `Ok`.
    fn commit<'a>(
        &'a self,
        log: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        block: &'a [u8],
    ) -> Io<'a>;
    /// The commit written at `offset` of `path` was acknowledged (its records answered): a note for
    /// [`traced::Traced`]; nothing to do on a real device.
    fn acknowledged(&self, _path: &Path, _offset: u64) {}
    /// Whole blocks written to a tag file opened `O_DIRECT` (durable only after [`Device::syncfs`]).
    fn write<'a>(
        &'a self,
        file: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        bytes: &'a [u8],
    ) -> Io<'a>;
    /// Bytes written at `at` of small buffered files (sidecars), each created when missing, in order, on one
    /// trip to a helper thread; not synced. Stops at the first failure (the ones before it are written).
    fn append(&self, appends: Vec<Append>) -> Io<'static>;
    /// `syncfs` of the file system holding `root`, to make `files` (a checkpoint's tag files and sidecars)
    /// durable at once.
    fn syncfs(&self, root: PathBuf, files: Vec<PathBuf>) -> Io<'static>;
    /// Renames `from` to `to` and syncs `dir`, the directory holding both.
    fn rename(&self, from: PathBuf, to: PathBuf, dir: PathBuf) -> Io<'static>;
    /// Creates the directories `missing` (with their parents), then syncs each of `sync`.
    fn dirs(&self, missing: Vec<PathBuf>, sync: Vec<PathBuf>) -> Io<'static>;
    /// Creates a new, empty log file (`O_DIRECT|O_DSYNC`), durable with its directory entry.
    fn create_log(&self, path: PathBuf) -> Opened;
    /// Opens an existing log file for commits (`O_DIRECT|O_DSYNC`).
    fn open_log(&self, path: PathBuf) -> Opened;
    /// Creates a log file full of zeros (`len` bytes), durable with its directory entry, on a helper
    /// thread; `paced`: sync every MiB and pause between, so commits never queue behind its write-back.
    fn zeroed_log(&self, path: PathBuf, len: u64, paced: bool) -> Io<'static>;
    /// Overwrites the block at `at` of a log with zeros, durably (a failed log's unacknowledged tail).
    fn zero_block(&self, path: PathBuf, at: u64) -> Io<'static>;
    /// Opens a tag file for writing (`O_DIRECT`), created when missing.
    fn open_tag_file(&self, path: PathBuf) -> Opened;
    /// Removes a file; `Ok(false)` when it was not there.
    fn remove(&self, path: PathBuf) -> LocalBoxFuture<'static, Result<bool, StoreError>>;
    /// Removes a directory if it is empty (never an error: another core may still have files in it).
    fn remove_empty_dir(&self, path: PathBuf) -> LocalBoxFuture<'static, ()>;
}

/// One [`Device::append`]: `bytes` at byte `at` of the file at `path`.
pub struct Append {
    pub path: PathBuf,
    pub at: u64,
    pub bytes: Vec<u8>,
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

/// The device the engine runs on: [`dma::Dma`], wrapped in [`faulty::Faulty`] when a fault file is given,
/// and in [`traced::Traced`] when I/O is traced.
pub fn for_config(fault_file: Option<PathBuf>, trace: Option<Rc<Tracer>>) -> Rc<dyn Device> {
    let device: Rc<dyn Device> = match fault_file {
        Some(fault_file) => Rc::new(faulty::Faulty {
            inner: dma::Dma,
            fault_file,
        }),
        None => Rc::new(dma::Dma),
    };
    match trace {
        Some(t) => Rc::new(traced::Traced::new(device, t)),
        None => device,
    }
}

//! The real device: glommio direct I/O on the core; directory work, buffered sidecar writes, removals and
//! the zeroed log files on other threads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt;
use glommio::io::{DmaFile, OpenOptions};

use super::{io_err, offload, Append, Device, Io, Opened};
use crate::store::layout::sync_dir;
use crate::store::{StoreError, BLOCK};

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

    async fn open(path: PathBuf, create_new: bool, dsync: bool) -> Result<DmaFile, StoreError> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if create_new {
            o.create_new(true);
        } else if !dsync {
            o.create(true);
        }
        if dsync {
            o.custom_flags(libc::O_DSYNC);
        }
        let what = if create_new { "creating" } else { "opening" };
        o.dma_open(&path)
            .await
            .map_err(|e| io_err(&format!("{what} {}", path.display()), e))
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
    fn append(&self, appends: Vec<Append>) -> Io<'static> {
        Box::pin(async move {
            offload(move || -> Result<(), StoreError> {
                use std::os::unix::fs::FileExt;
                for a in appends {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&a.path)
                        .and_then(|f| f.write_all_at(&a.bytes, a.at))
                        .map_err(|e| {
                            StoreError::from_io(&format!("appending to {}", a.path.display()), &e)
                        })?;
                }
                Ok(())
            })
            .await
        })
    }
    fn syncfs(&self, root: PathBuf, _files: Vec<PathBuf>) -> Io<'static> {
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
            .map_err(|e| {
                StoreError::from_io(
                    "syncing the checkpoint's tag files and sidecars (syncfs)",
                    &e,
                )
            })
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
    fn create_log(&self, path: PathBuf) -> Opened {
        async move {
            let f = Dma::open(path.clone(), true, true).await?;
            if let Some(dir) = path.parent().map(Path::to_path_buf) {
                offload(move || sync_dir(&dir))
                    .await
                    .map_err(|e| StoreError::from_io("syncing the log directory", &e))?;
            }
            Ok(f)
        }
        .boxed_local()
    }
    fn open_log(&self, path: PathBuf) -> Opened {
        Dma::open(path, false, true).boxed_local()
    }
    fn zeroed_log(&self, path: PathBuf, len: u64, paced: bool) -> Io<'static> {
        let (tx, rx) = oneshot::channel();
        // SAFETY: sched_getcpu has no preconditions; a negative answer means unknown.
        let busy_cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok();
        let p = path.clone();
        let spawned = std::thread::Builder::new()
            .name("tickcore-zero".into())
            .spawn(move || {
                pin_helper_away_from(busy_cpu);
                let _ = tx.send(zeroed(&p, len, paced));
            });
        Box::pin(async move {
            let context = format!("creating {}", path.display());
            spawned.map_err(|e| StoreError::from_io(&context, &e))?;
            match rx.await {
                Ok(r) => r.map_err(|e| StoreError::from_io(&context, &e)),
                Err(_) => Err(StoreError::Io(format!("{context}: the helper thread died"))),
            }
        })
    }
    fn zero_block(&self, path: PathBuf, at: u64) -> Io<'static> {
        Box::pin(async move {
            let p = path.clone();
            offload(move || -> std::io::Result<()> {
                use std::os::unix::fs::{FileExt, OpenOptionsExt};
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .open(&p)?
                    .write_all_at(&[0u8; BLOCK], at)
            })
            .await
            .map_err(|e| StoreError::from_io(&format!("zeroing a block of {}", path.display()), &e))
        })
    }
    fn open_tag_file(&self, path: PathBuf) -> Opened {
        Dma::open(path, false, false).boxed_local()
    }
    fn remove(
        &self,
        path: PathBuf,
    ) -> futures::future::LocalBoxFuture<'static, Result<bool, StoreError>> {
        async move {
            let p = path.clone();
            offload(move || match std::fs::remove_file(&p) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| StoreError::from_io(&format!("removing {}", path.display()), &e))
        }
        .boxed_local()
    }
    fn remove_empty_dir(&self, path: PathBuf) -> futures::future::LocalBoxFuture<'static, ()> {
        async move {
            let _ = offload(move || std::fs::remove_dir(&path)).await;
        }
        .boxed_local()
    }
}

/// Writes `len` bytes of zeros to a new file, durable with its directory entry (blocking).
fn zeroed(path: &Path, len: u64, paced: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create_new(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64);
        f.write_all(&zeros[..n as usize])?;
        left -= n;
        if paced {
            f.sync_data()?;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Moves the calling helper thread off `busy_cpu` (the executor that spawned it inherits its pinning), onto
/// another CPU when the machine has one.
fn pin_helper_away_from(busy_cpu: Option<usize>) {
    let Some(ids) = core_affinity::get_core_ids() else {
        return;
    };
    if let Some(other) = ids.into_iter().find(|c| Some(c.id) != busy_cpu) {
        core_affinity::set_for_current(other);
    }
}

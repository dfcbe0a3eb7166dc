//! A device that fails the operations a fault plan names, while the fault file exists (`--fault-file`).

use std::path::{Path, PathBuf};

use futures::future::LocalBoxFuture;
use glommio::io::DmaFile;

use super::{Append, Device, Io, Opened};
use crate::store::StoreError;

/// An operation a fault plan can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A log commit fails before its data is written.
    LogWrite,
    /// A log commit's data lands, then the write reports failure (as a failed flush would).
    LogSync,
    /// A tag file's write fails before its data is written.
    TagWrite,
    Sidecar,
    Syncfs,
    /// A rename other than a manifest's (a spare log becoming the next generation).
    Rename,
    /// A checkpoint's manifest written or renamed into place.
    Manifest,
    Dirs,
    /// A log or tag file created or opened.
    Open,
    /// A file removed (a retired log, an expired segment's files).
    Remove,
}

/// A manifest or its temporary file (`store/manifest.rs`).
fn is_manifest(path: &Path) -> bool {
    crate::store::manifest::parse_name(path).is_some()
        || crate::store::manifest::parse_name(&path.with_extension("")).is_some()
}

/// A fault plan: the error (`ENOSPC` or `EIO`) and the operations it strikes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub no_space: bool,
    pub ops: Vec<Op>,
}

impl Plan {
    /// Parses a fault file: `ENOSPC|EIO [op ...]`, ops among `log-write log-sync tag-write sidecar syncfs
    /// rename manifest dirs open remove`; without ops, `log-write tag-write sidecar` (every write that takes space). Kept
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
                "sidecar" => Op::Sidecar,
                "syncfs" => Op::Syncfs,
                "rename" => Op::Rename,
                "manifest" => Op::Manifest,
                "dirs" => Op::Dirs,
                "open" => Op::Open,
                "remove" => Op::Remove,
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

    /// `op` on `what` fails now if the plan says so; else `run` performs it.
    fn or_fail<T: 'static>(
        &self,
        op: Op,
        what: &Path,
        run: impl FnOnce() -> LocalBoxFuture<'static, Result<T, StoreError>>,
    ) -> LocalBoxFuture<'static, Result<T, StoreError>> {
        match self.strikes(op, what) {
            Some(e) => Box::pin(async move { Err(e) }),
            None => run(),
        }
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
    fn append(&self, appends: Vec<Append>) -> Io<'static> {
        let what = appends.first().map(|a| a.path.clone()).unwrap_or_default();
        let op = if is_manifest(&what) {
            Op::Manifest
        } else {
            Op::Sidecar
        };
        self.or_fail(op, &what, || self.inner.append(appends))
    }
    fn syncfs(&self, root: PathBuf, files: Vec<PathBuf>) -> Io<'static> {
        let what = root.clone();
        self.or_fail(Op::Syncfs, &what, || self.inner.syncfs(root, files))
    }
    fn rename(&self, from: PathBuf, to: PathBuf, dir: PathBuf) -> Io<'static> {
        let what = from.clone();
        let op = if is_manifest(&to) {
            Op::Manifest
        } else {
            Op::Rename
        };
        self.or_fail(op, &what, || self.inner.rename(from, to, dir))
    }
    fn dirs(&self, missing: Vec<PathBuf>, sync: Vec<PathBuf>) -> Io<'static> {
        let what = sync
            .first()
            .or(missing.first())
            .cloned()
            .unwrap_or_default();
        self.or_fail(Op::Dirs, &what, || self.inner.dirs(missing, sync))
    }
    fn create_log(&self, path: PathBuf) -> Opened {
        let what = path.clone();
        self.or_fail(Op::Open, &what, || self.inner.create_log(path))
    }
    fn open_log(&self, path: PathBuf) -> Opened {
        let what = path.clone();
        self.or_fail(Op::Open, &what, || self.inner.open_log(path))
    }
    fn zeroed_log(&self, path: PathBuf, len: u64, paced: bool) -> Io<'static> {
        let what = path.clone();
        self.or_fail(Op::Open, &what, || self.inner.zeroed_log(path, len, paced))
    }
    fn zero_block(&self, path: PathBuf, at: u64) -> Io<'static> {
        let what = path.clone();
        self.or_fail(Op::LogWrite, &what, || self.inner.zero_block(path, at))
    }
    fn open_tag_file(&self, path: PathBuf) -> Opened {
        let what = path.clone();
        self.or_fail(Op::Open, &what, || self.inner.open_tag_file(path))
    }
    fn remove(&self, path: PathBuf) -> LocalBoxFuture<'static, Result<bool, StoreError>> {
        let what = path.clone();
        self.or_fail(Op::Remove, &what, || self.inner.remove(path))
    }
    fn remove_empty_dir(&self, path: PathBuf) -> LocalBoxFuture<'static, ()> {
        self.inner.remove_empty_dir(path)
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
        let p = Plan::parse("EIO syncfs rename").unwrap();
        assert!(!p.no_space);
        assert_eq!(p.ops, vec![Op::Syncfs, Op::Rename]);
        assert_eq!(
            Plan::parse("EIO-AFTER-WRITE").unwrap().ops,
            vec![Op::LogSync]
        );
        assert_eq!(Plan::parse("EIO-TAGFILES").unwrap().ops, vec![Op::TagWrite]);
        assert!(Plan::parse("").is_err());
        assert!(Plan::parse("EPERM").is_err());
        assert!(Plan::parse("EIO fsync").is_err());
        assert_eq!(
            Plan::parse("EIO open remove").unwrap().ops,
            vec![Op::Open, Op::Remove]
        );
    }

    #[test]
    fn injected_errors_say_what_and_which_kind() {
        let p = Plan::parse("ENOSPC").unwrap();
        let e = p.error(Op::LogWrite, "/d/wal/x.wal", Path::new("/tmp/fault"));
        assert!(matches!(e, StoreError::NoSpace(_)), "{e:?}");
        assert!(e.to_string().contains("/d/wal/x.wal"), "{e}");
        let p = Plan::parse("EIO").unwrap();
        let e = p.error(Op::Syncfs, "f", Path::new("/tmp/fault"));
        assert!(matches!(e, StoreError::Io(_)), "{e:?}");
    }
}

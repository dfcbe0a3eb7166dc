//! A device that records every operation it passes on, for the power-loss model (`--trace-io`,
//! `iotrace.rs`): an operation is recorded as issued before it runs (the model may apply it early, never
//! late) and as completed only after it succeeded. A log commit's acknowledgement is recorded when the log
//! says so ([`Device::acknowledged`]), after every earlier commit's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use glommio::io::DmaFile;

use super::{Append, Device, Io, Opened};
use crate::store::iotrace::{Event, Tracer};
use crate::store::StoreError;

pub struct Traced {
    inner: Rc<dyn Device>,
    t: Rc<Tracer>,
    /// The write id of each commit not yet acknowledged, by (log, offset).
    commits: RefCell<HashMap<(PathBuf, u64), u64>>,
}

impl Traced {
    pub fn new(inner: Rc<dyn Device>, t: Rc<Tracer>) -> Traced {
        Traced {
            inner,
            t,
            commits: RefCell::default(),
        }
    }

    /// Records a write as issued; returns its id.
    fn issue_write(&self, path: &Path, offset: u64, dsync: bool, data: &[u8]) -> u64 {
        let id = self.t.id();
        self.t.record(Event::Write {
            id,
            path: self.t.rel(path),
            offset,
            dsync,
            data: data.to_vec(),
        });
        id
    }

    /// Records a directory sync as issued; returns its id.
    fn issue_dir_sync(&self, dir: &Path) -> u64 {
        let id = self.t.id();
        self.t.record(Event::DirSync(id, self.t.rel(dir)));
        id
    }

    /// Runs `op`, then records `done` if it succeeded.
    fn then<'a, T: 'a>(
        &self,
        op: LocalBoxFuture<'a, Result<T, StoreError>>,
        done: Vec<Event>,
    ) -> LocalBoxFuture<'a, Result<T, StoreError>> {
        let t = Rc::clone(&self.t);
        async move {
            let r = op.await;
            if r.is_ok() {
                done.into_iter().for_each(|e| t.record(e));
            }
            r
        }
        .boxed_local()
    }
}

impl Device for Traced {
    fn commit<'a>(
        &'a self,
        log: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        block: &'a [u8],
    ) -> Io<'a> {
        let id = self.issue_write(path, offset, true, block);
        self.commits
            .borrow_mut()
            .insert((path.to_path_buf(), offset), id);
        Box::pin(async move {
            let r = self.inner.commit(log, path, offset, block).await;
            match r {
                Ok(()) => self.t.record(Event::Wrote(id)),
                Err(_) => drop(
                    self.commits
                        .borrow_mut()
                        .remove(&(path.to_path_buf(), offset)),
                ),
            }
            r
        })
    }
    fn acknowledged(&self, path: &Path, offset: u64) {
        let id = self
            .commits
            .borrow_mut()
            .remove(&(path.to_path_buf(), offset));
        if let Some(id) = id {
            self.t.record(Event::Ack(id));
        }
    }
    fn write<'a>(
        &'a self,
        file: &'a DmaFile,
        path: &'a Path,
        offset: u64,
        bytes: &'a [u8],
    ) -> Io<'a> {
        let id = self.issue_write(path, offset, false, bytes);
        self.then(
            self.inner.write(file, path, offset, bytes),
            vec![Event::Wrote(id)],
        )
    }
    fn append(&self, appends: Vec<Append>) -> Io<'static> {
        let mut done = Vec::with_capacity(appends.len());
        for a in &appends {
            self.t.record(Event::Create(self.t.rel(&a.path)));
            done.push(Event::Wrote(
                self.issue_write(&a.path, a.at, false, &a.bytes),
            ));
        }
        self.then(self.inner.append(appends), done)
    }
    fn syncfs(&self, root: PathBuf, files: Vec<PathBuf>) -> Io<'static> {
        let mut done = Vec::with_capacity(files.len());
        for f in &files {
            let id = self.t.id();
            self.t.record(Event::Sync(id, self.t.rel(f)));
            done.push(Event::Synced(id));
        }
        self.then(self.inner.syncfs(root, files), done)
    }
    fn rename(&self, from: PathBuf, to: PathBuf, dir: PathBuf) -> Io<'static> {
        self.t
            .record(Event::Rename(self.t.rel(&from), self.t.rel(&to)));
        let id = self.issue_dir_sync(&dir);
        self.then(self.inner.rename(from, to, dir), vec![Event::DirSynced(id)])
    }
    fn dirs(&self, missing: Vec<PathBuf>, sync: Vec<PathBuf>) -> Io<'static> {
        for d in &missing {
            self.t.record(Event::Mkdir(self.t.rel(d)));
        }
        let done = sync
            .iter()
            .map(|d| Event::DirSynced(self.issue_dir_sync(d)))
            .collect();
        self.then(self.inner.dirs(missing, sync), done)
    }
    fn create_log(&self, path: PathBuf) -> Opened {
        self.t.record(Event::Create(self.t.rel(&path)));
        let done = match path.parent() {
            Some(dir) => vec![Event::DirSynced(self.issue_dir_sync(dir))],
            None => Vec::new(),
        };
        self.then(self.inner.create_log(path), done)
    }
    fn open_log(&self, path: PathBuf) -> Opened {
        self.inner.open_log(path)
    }
    fn zeroed_log(&self, path: PathBuf, len: u64, paced: bool) -> Io<'static> {
        // Made on a helper thread: recorded whole once it is done (created, filled, synced with its entry).
        let (rel, id, dir_id) = (self.t.rel(&path), self.t.id(), self.t.id());
        let dir = path.parent().map(|d| self.t.rel(d)).unwrap_or_default();
        let done = vec![
            Event::Create(rel.clone()),
            Event::SetLen(rel.clone(), len),
            Event::Sync(id, rel),
            Event::Synced(id),
            Event::DirSync(dir_id, dir),
            Event::DirSynced(dir_id),
        ];
        self.then(self.inner.zeroed_log(path, len, paced), done)
    }
    fn zero_block(&self, path: PathBuf, at: u64) -> Io<'static> {
        let id = self.issue_write(&path, at, true, &[0u8; crate::store::BLOCK]);
        self.then(self.inner.zero_block(path, at), vec![Event::Wrote(id)])
    }
    fn open_tag_file(&self, path: PathBuf) -> Opened {
        self.t.record(Event::Create(self.t.rel(&path)));
        self.inner.open_tag_file(path)
    }
    fn remove(&self, path: PathBuf) -> LocalBoxFuture<'static, Result<bool, StoreError>> {
        // Recorded once done: the model keeps the file until then (a removed file is only ever one whose
        // records are durable elsewhere, so keeping it longer is the conservative reading).
        let t = Rc::clone(&self.t);
        let rel = self.t.rel(&path);
        let op = self.inner.remove(path);
        async move {
            let r = op.await;
            if let Ok(true) = r {
                t.record(Event::Remove(rel));
            }
            r
        }
        .boxed_local()
    }
    fn remove_empty_dir(&self, path: PathBuf) -> LocalBoxFuture<'static, ()> {
        self.inner.remove_empty_dir(path)
    }
}

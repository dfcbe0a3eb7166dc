//! An in-memory disk for the power-loss model: files as 512-byte sectors (a sector never written reads as
//! zeros), a namespace of names and directories, and [`SimDisk`], which serves the [`Disk`] interface from a
//! shared read-only base image plus its own changes, and records each change as an [`Event`] so that a
//! crash can be cut into recovery itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::store::disk::Disk;
use crate::store::iotrace::Event;

pub const SECTOR: u64 = 512;

/// One file's contents.
#[derive(Clone, Debug, Default)]
pub struct Content {
    pub len: u64,
    sectors: BTreeMap<u64, Rc<[u8; SECTOR as usize]>>,
}

impl Content {
    /// Writes `data` at `offset`; with `keep`, only the sectors `s` (counted from the write's first sector)
    /// for which `keep(s)` holds reach the file: a torn write.
    pub fn write(&mut self, offset: u64, data: &[u8], keep: &dyn Fn(usize) -> bool) {
        let end = offset + data.len() as u64;
        let first = offset / SECTOR;
        let mut at = offset;
        while at < end {
            let sector = at / SECTOR;
            let upto = ((sector + 1) * SECTOR).min(end);
            if keep((sector - first) as usize) {
                let mut s = self.sector(sector);
                let from = (at - offset) as usize;
                let inner = (at % SECTOR) as usize;
                s[inner..inner + (upto - at) as usize]
                    .copy_from_slice(&data[from..from + (upto - at) as usize]);
                self.sectors.insert(sector, Rc::new(s));
                self.len = self.len.max(upto);
            }
            at = upto;
        }
    }

    fn sector(&self, sector: u64) -> [u8; SECTOR as usize] {
        self.sectors
            .get(&sector)
            .map_or([0; SECTOR as usize], |s| **s)
    }

    pub fn set_len(&mut self, len: u64) {
        if len < self.len {
            let keep_upto = len.div_ceil(SECTOR);
            self.sectors.split_off(&keep_upto);
            if len % SECTOR != 0 {
                let last = len / SECTOR;
                if let Some(s) = self.sectors.get(&last) {
                    let mut s = **s;
                    s[(len % SECTOR) as usize..].fill(0);
                    self.sectors.insert(last, Rc::new(s));
                }
            }
        }
        self.len = len;
    }

    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = (offset + len as u64).min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let sector = at / SECTOR;
            let upto = ((sector + 1) * SECTOR).min(end);
            let inner = (at % SECTOR) as usize;
            match self.sectors.get(&sector) {
                Some(s) => out.extend_from_slice(&s[inner..inner + (upto - at) as usize]),
                None => out.resize(out.len() + (upto - at) as usize, 0),
            }
            at = upto;
        }
        out
    }
}

/// A namespace and the files it names. Paths are relative to the data directory (`wal/x.wal`); the data
/// directory itself is always there.
#[derive(Clone, Debug, Default)]
pub struct Image {
    pub names: BTreeMap<String, usize>,
    pub dirs: BTreeSet<String>,
    pub files: BTreeMap<usize, Content>,
}

pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

impl Image {
    /// An inode number no name or file of this image uses.
    pub fn next_ino(&self) -> usize {
        let named = self.names.values().copied().max();
        let stored = self.files.keys().next_back().copied();
        named.max(stored).map_or(0, |k| k + 1)
    }

    /// A name is reachable when every directory above it exists.
    pub fn reachable(&self, path: &str) -> bool {
        let mut p = parent(path);
        while !p.is_empty() {
            if !self.dirs.contains(p) {
                return false;
            }
            p = parent(p);
        }
        true
    }

    /// The contents of the file at `path`, if it is reachable.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        if !self.reachable(path) {
            return None;
        }
        let ino = self.names.get(path)?;
        Some(
            self.files
                .get(ino)
                .map_or(Vec::new(), |c| c.read_at(0, c.len as usize)),
        )
    }

    /// Links `path` to inode `ino` (an inode without contents reads as an empty file).
    pub fn link(&mut self, path: &str, ino: usize) {
        self.names.insert(path.to_string(), ino);
    }

    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(ino) = self.names.remove(from) {
            self.names.insert(to.to_string(), ino);
        }
    }
}

/// A [`Disk`] over `base` (shared, never changed) and the changes made through it, each recorded as an
/// [`Event`] (every operation completes at once: a write is followed by its completion, an fsync likewise).
pub struct SimDisk {
    root: PathBuf,
    base: Rc<Image>,
    state: RefCell<State>,
}

struct State {
    /// The namespace, and the files changed through this disk (copied from the base on first change).
    img: Image,
    next_ino: usize,
    next_id: u64,
    events: Vec<Event>,
}

fn not_found(p: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{p}: not found"))
}

impl SimDisk {
    /// `root`: the path the engine's [`crate::store::layout::Layout`] uses for the data directory.
    pub fn new(root: &Path, base: Rc<Image>) -> SimDisk {
        let next_ino = base.next_ino() + 1_000_000;
        SimDisk {
            root: root.to_path_buf(),
            state: RefCell::new(State {
                img: Image {
                    names: base.names.clone(),
                    dirs: base.dirs.clone(),
                    files: BTreeMap::new(),
                },
                next_ino,
                next_id: 1_000_000_000,
                events: Vec::new(),
            }),
            base,
        }
    }

    /// Changes the disk's own image (not recorded: a power cut's doing); `f` also gets the base, from which
    /// a file is copied before its first change.
    pub fn with_image<R>(&self, f: impl FnOnce(&mut Image, &Image) -> R) -> R {
        f(&mut self.state.borrow_mut().img, &self.base)
    }

    /// The disk's whole current state as one image.
    pub fn snapshot(&self) -> Image {
        let s = self.state.borrow();
        let mut files = self.base.files.clone();
        files.extend(s.img.files.iter().map(|(k, v)| (*k, v.clone())));
        Image {
            names: s.img.names.clone(),
            dirs: s.img.dirs.clone(),
            files,
        }
    }

    /// The operations made through this disk so far, as trace events.
    pub fn events(&self) -> Vec<Event> {
        self.state.borrow().events.clone()
    }

    fn rel(&self, path: &Path) -> io::Result<String> {
        path.strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|_| io::Error::other(format!("{} is outside the disk", path.display())))
    }

    fn reachable(s: &State, path: &str) -> bool {
        let mut p = parent(path);
        while !p.is_empty() {
            if !s.img.dirs.contains(p) {
                return false;
            }
            p = parent(p);
        }
        true
    }

    fn ino(&self, s: &State, path: &str) -> Option<usize> {
        if !Self::reachable(s, path) {
            return None;
        }
        s.img.names.get(path).copied()
    }

    fn with_content<R>(&self, path: &str, f: impl FnOnce(&Content) -> R) -> io::Result<R> {
        let s = self.state.borrow();
        let ino = self.ino(&s, path).ok_or_else(|| not_found(path))?;
        match s.img.files.get(&ino).or_else(|| self.base.files.get(&ino)) {
            Some(c) => Ok(f(c)),
            None => Ok(f(&Content::default())),
        }
    }

    /// The file at `path` for changing, created (and the creation recorded) when missing.
    fn change(&self, path: &str, f: impl FnOnce(&mut Content)) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if !Self::reachable(&s, path) {
            return Err(not_found(parent(path)));
        }
        let ino = match s.img.names.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = s.next_ino;
                s.next_ino += 1;
                s.img.names.insert(path.to_string(), ino);
                s.img.files.insert(ino, Content::default());
                s.events.push(Event::Create(path.to_string()));
                ino
            }
        };
        if !s.img.files.contains_key(&ino) {
            let c = self.base.files.get(&ino).cloned().unwrap_or_default();
            s.img.files.insert(ino, c);
        }
        f(s.img.files.get_mut(&ino).expect("inserted above"));
        Ok(())
    }

    fn id(&self) -> u64 {
        let mut s = self.state.borrow_mut();
        s.next_id += 1;
        s.next_id
    }

    fn push(&self, e: Event) {
        self.state.borrow_mut().events.push(e);
    }
}

impl Disk for SimDisk {
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let d = self.rel(dir)?;
        let s = self.state.borrow();
        if !d.is_empty() && (!s.img.dirs.contains(&d) || !Self::reachable(&s, &d)) {
            return Err(not_found(&d));
        }
        let names = s.img.names.keys().chain(s.img.dirs.iter());
        Ok(names
            .filter(|p| parent(p) == d)
            .map(|p| self.root.join(p))
            .collect())
    }
    fn is_dir(&self, path: &Path) -> bool {
        let Ok(p) = self.rel(path) else { return false };
        let s = self.state.borrow();
        s.img.dirs.contains(&p) && Self::reachable(&s, &p)
    }
    fn exists(&self, path: &Path) -> bool {
        let Ok(p) = self.rel(path) else { return false };
        self.is_dir(path) || self.ino(&self.state.borrow(), &p).is_some()
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let p = self.rel(path)?;
        self.with_content(&p, |c| c.read_at(0, c.len as usize))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        let p = self.rel(path)?;
        self.with_content(&p, |c| c.len)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let p = self.rel(path)?;
        self.with_content(&p, |c| c.read_at(offset, len))
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let d = self.rel(dir)?;
        let mut missing = Vec::new();
        let mut p = d.as_str();
        while !p.is_empty() && !self.state.borrow().img.dirs.contains(p) {
            missing.push(p.to_string());
            p = parent(p);
        }
        for m in missing.into_iter().rev() {
            self.state.borrow_mut().img.dirs.insert(m.clone());
            self.push(Event::Mkdir(m));
        }
        Ok(())
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let p = self.rel(path)?;
        self.change(&p, |c| c.write(offset, data, &|_| true))?;
        let id = self.id();
        self.push(Event::Write {
            id,
            path: p,
            offset,
            dsync: false,
            data: data.to_vec(),
        });
        self.push(Event::Wrote(id));
        Ok(())
    }
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let p = self.rel(path)?;
        self.change(&p, |c| c.set_len(len))?;
        self.push(Event::SetLen(p, len));
        Ok(())
    }
    fn sync_data(&self, path: &Path) -> io::Result<()> {
        let p = self.rel(path)?;
        self.with_content(&p, |_| ())?;
        let id = self.id();
        self.push(Event::Sync(id, p));
        self.push(Event::Synced(id));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = self.rel(dir)?;
        let id = self.id();
        self.push(Event::DirSync(id, d));
        self.push(Event::DirSynced(id));
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (a, b) = (self.rel(from)?, self.rel(to)?);
        let mut s = self.state.borrow_mut();
        let ino = s.img.names.remove(&a).ok_or_else(|| not_found(&a))?;
        s.img.names.insert(b.clone(), ino);
        s.events.push(Event::Rename(a, b));
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let p = self.rel(path)?;
        let mut s = self.state.borrow_mut();
        s.img.names.remove(&p).ok_or_else(|| not_found(&p))?;
        s.events.push(Event::Remove(p));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_writes_keep_only_the_chosen_sectors() {
        let mut c = Content::default();
        c.write(0, &[1; 4096], &|_| true);
        c.write(4096, &[2; 4096], &|s| s == 0 || s == 7);
        assert_eq!(c.len, 8192);
        let all = c.read_at(0, 8192);
        assert!(all[..4096].iter().all(|&b| b == 1));
        assert!(all[4096..4608].iter().all(|&b| b == 2));
        assert!(all[4608..7680].iter().all(|&b| b == 0));
        assert!(all[7680..].iter().all(|&b| b == 2));
        c.set_len(100);
        assert_eq!(c.read_at(0, 4096), vec![1; 100]);
        c.set_len(1000);
        assert_eq!(c.read_at(100, 900), vec![0; 900]);
    }

    #[test]
    fn the_disk_records_what_it_does_and_keeps_the_base() {
        let mut base = Image::default();
        base.dirs.insert("wal".into());
        base.link("wal/a", 1);
        base.files
            .entry(1)
            .or_default()
            .write(0, b"hello", &|_| true);
        let base = Rc::new(base);
        let root = Path::new("/d");
        let d = SimDisk::new(root, Rc::clone(&base));
        d.write_at(&root.join("wal/a"), 5, b" world").unwrap();
        d.write_at(&root.join("wal/b"), 0, b"x").unwrap();
        d.rename(&root.join("wal/b"), &root.join("wal/c")).unwrap();
        assert!(d.write_at(&root.join("seg/1/t"), 0, b"x").is_err());
        d.create_dir_all(&root.join("seg/1")).unwrap();
        assert_eq!(d.read(&root.join("wal/a")).unwrap(), b"hello world");
        assert_eq!(base.read("wal/a").unwrap(), b"hello");
        let mut listed = d.list(&root.join("wal")).unwrap();
        listed.sort();
        assert_eq!(listed, vec![root.join("wal/a"), root.join("wal/c")]);
        assert!(d.is_dir(&root.join("seg/1")));
        let kinds: Vec<&str> = d
            .events()
            .iter()
            .map(|e| match e {
                Event::Create(_) => "create",
                Event::Write { .. } => "write",
                Event::Wrote(_) => "wrote",
                Event::Rename(..) => "rename",
                Event::Mkdir(_) => "mkdir",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["write", "wrote", "create", "write", "wrote", "rename", "mkdir", "mkdir"]
        );
    }
}

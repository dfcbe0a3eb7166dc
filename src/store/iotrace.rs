//! A trace of every change a core makes to its data directory, in the order it makes them, for the
//! power-loss model (`powerloss.rs`): which writes were issued and which had completed, which fdatasyncs and
//! directory fsyncs had completed, and which commits were acknowledged. `--trace-io FILE` makes each core
//! write one (`FILE.c<core>`); one line per event, paths relative to the data directory, data in hex:
//!
//! ```text
//! create P | mkdir P | rename P Q | remove P | setlen P LEN
//! write ID P OFFSET DSYNC HEX | wrote ID      a write issued (DSYNC 1: the file is O_DSYNC) / completed
//! sync ID P | synced ID                      an fdatasync issued / completed
//! dirsync ID P | dirsynced ID                a directory fsync issued / completed
//! ack ID                                     the records of write ID were acknowledged
//! ```
//!
//! Events are recorded when an operation is issued (before it can have happened) and when it completed
//! (after it did), so the model never assumes an operation durable earlier than it was. Tracing costs a
//! blocking `write(2)` per event: a testing aid, not for production.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Create(String),
    Mkdir(String),
    Rename(String, String),
    Remove(String),
    SetLen(String, u64),
    Write {
        id: u64,
        path: String,
        offset: u64,
        dsync: bool,
        data: Vec<u8>,
    },
    Wrote(u64),
    Sync(u64, String),
    Synced(u64),
    DirSync(u64, String),
    DirSynced(u64),
    Ack(u64),
}

impl Event {
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match self {
            Event::Create(p) => writeln!(out, "create {p}"),
            Event::Mkdir(p) => writeln!(out, "mkdir {p}"),
            Event::Rename(a, b) => writeln!(out, "rename {a} {b}"),
            Event::Remove(p) => writeln!(out, "remove {p}"),
            Event::SetLen(p, n) => writeln!(out, "setlen {p} {n}"),
            Event::Write {
                id,
                path,
                offset,
                dsync,
                data,
            } => {
                let _ = write!(out, "write {id} {path} {offset} {} ", u8::from(*dsync));
                for b in data {
                    let _ = write!(out, "{b:02x}");
                }
                writeln!(out)
            }
            Event::Wrote(id) => writeln!(out, "wrote {id}"),
            Event::Sync(id, p) => writeln!(out, "sync {id} {p}"),
            Event::Synced(id) => writeln!(out, "synced {id}"),
            Event::DirSync(id, p) => writeln!(out, "dirsync {id} {p}"),
            Event::DirSynced(id) => writeln!(out, "dirsynced {id}"),
            Event::Ack(id) => writeln!(out, "ack {id}"),
        };
    }

    pub fn decode(line: &str) -> Result<Event, String> {
        let bad = || format!("malformed trace line: {:.80}", line);
        let mut w = line.split(' ');
        let kind = w.next().ok_or_else(bad)?;
        let mut s = || w.next().map(str::to_string).ok_or_else(bad);
        let num = |x: String| x.parse::<u64>().map_err(|_| bad());
        Ok(match kind {
            "create" => Event::Create(s()?),
            "mkdir" => Event::Mkdir(s()?),
            "rename" => Event::Rename(s()?, s()?),
            "remove" => Event::Remove(s()?),
            "setlen" => Event::SetLen(s()?, num(s()?)?),
            "write" => {
                let id = num(s()?)?;
                let path = s()?;
                let offset = num(s()?)?;
                let dsync = s()? == "1";
                let hex = s()?;
                let data = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad()))
                    .collect::<Result<Vec<u8>, String>>()?;
                Event::Write {
                    id,
                    path,
                    offset,
                    dsync,
                    data,
                }
            }
            "wrote" => Event::Wrote(num(s()?)?),
            "sync" => Event::Sync(num(s()?)?, s()?),
            "synced" => Event::Synced(num(s()?)?),
            "dirsync" => Event::DirSync(num(s()?)?, s()?),
            "dirsynced" => Event::DirSynced(num(s()?)?),
            "ack" => Event::Ack(num(s()?)?),
            _ => return Err(bad()),
        })
    }
}

/// Reads a trace file written by [`Tracer`]. A last line cut by a crash is dropped.
pub fn read(path: &Path) -> Result<Vec<Event>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(Event::decode)
        .collect()
}

/// One core's trace writer (lives on that core's executor).
pub struct Tracer {
    root: PathBuf,
    file: RefCell<File>,
    next_id: Cell<u64>,
}

impl Tracer {
    pub fn create(path: &Path, root: &Path) -> io::Result<Tracer> {
        Ok(Tracer {
            root: root.to_path_buf(),
            file: RefCell::new(File::create(path)?),
            next_id: Cell::new(1),
        })
    }

    /// `path` relative to the data directory.
    pub fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    pub fn id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    pub fn record(&self, e: Event) {
        let mut line = String::new();
        e.encode(&mut line);
        if let Err(err) = self.file.borrow_mut().write_all(line.as_bytes()) {
            eprintln!("trace: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let events = vec![
            Event::Create("wal/a.wal".into()),
            Event::Mkdir("seg/12".into()),
            Event::Rename("wal/x.spare".into(), "wal/x-g1.wal".into()),
            Event::Remove("wal/y".into()),
            Event::SetLen("wal/z".into(), 1 << 26),
            Event::Write {
                id: 7,
                path: "seg/1/74.rec".into(),
                offset: 8192,
                dsync: true,
                data: vec![0, 1, 0xab, 0xff],
            },
            Event::Wrote(7),
            Event::Sync(8, "seg/1/74.rec".into()),
            Event::Synced(8),
            Event::DirSync(9, "seg".into()),
            Event::DirSynced(9),
            Event::Ack(7),
        ];
        let mut text = String::new();
        for e in &events {
            e.encode(&mut text);
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, format!("{text}write 3 cut-by-a-cr")).unwrap();
        assert_eq!(read(&p).unwrap(), events);
        assert!(Event::decode("frobnicate x").is_err());
        assert!(Event::decode("write 1 p 0 1 zz").is_err());
    }
}

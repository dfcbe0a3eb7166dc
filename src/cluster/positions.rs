//! Applied positions: for each stream, the sequence up to which every batch is durable on this node (in its
//! local log or its tag files). Shared between the link thread, which advances them, and the cores, which
//! wait on them for read-your-writes; persisted in `CLUSTER-POSITIONS` in the data directory so a restart
//! consumes each stream again from where it stood, not from its first message.
//!
//! Invariant: a persisted position never passes what is durable here. The link thread advances a position
//! only after every core answered that its part of the batch was appended, and appends are durable when they
//! answer (cluster mode runs `--durability sync` only); the file is written from those positions afterwards.
//! A persisted position may lag: the batches past it are consumed again after a restart and duplicate
//! admission stores nothing twice.
//!
//! Each position is kept with the identity of the stream it counts in (a random id the engine that created
//! the stream put in its metadata, `cluster/link.rs`; 0 for a stream created without one): a stream deleted
//! and created again starts its sequences over, and once it has grown past this node's position nothing
//! else would tell that the position is not its own. Invariant: the file never pairs a stream's new id with
//! a position in its old incarnation (the follower resets the position before it takes the new id, and the
//! positions are read after the ids).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MAGIC: &str = "tickcore-positions 1";

/// What the positions file says: the applied sequence and the stream's id, per stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Persisted {
    pub seqs: Vec<u64>,
    pub ids: Vec<u64>,
}

/// The applied sequence of each stream (0: nothing applied), with the follower lag seen while applying.
pub struct Applied {
    seqs: Vec<AtomicU64>,
    /// The id of the stream each position counts in (0: not known yet).
    ids: Vec<AtomicU64>,
    /// Microseconds from a batch's storage in its stream (the stream leader's clock: the earliest its write
    /// can have been acknowledged) to its apply here, for batches accepted by other nodes: how far this node
    /// trails the one that answered the write.
    lag_us: Mutex<hdrhistogram::Histogram<u64>>,
    /// Records not applied because their tag file is damaged (set aside, reported).
    set_aside: AtomicU64,
}

impl Applied {
    pub fn new(from: &Persisted) -> Applied {
        Applied {
            seqs: from.seqs.iter().map(|&s| AtomicU64::new(s)).collect(),
            ids: (0..from.seqs.len())
                .map(|k| AtomicU64::new(from.ids.get(k).copied().unwrap_or(0)))
                .collect(),
            // 1 us .. 1 hour, 3 significant digits; the bounds are constants, so this cannot fail.
            lag_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("constant histogram bounds"),
            ),
            set_aside: AtomicU64::new(0),
        }
    }

    pub fn streams(&self) -> usize {
        self.seqs.len()
    }

    pub fn get(&self, stream: usize) -> u64 {
        self.seqs
            .get(stream)
            .map_or(0, |s| s.load(Ordering::Acquire))
    }

    pub fn all(&self) -> Vec<u64> {
        self.seqs
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .collect()
    }

    /// The id of the stream `stream`'s position counts in (0: not known).
    pub fn stream_id(&self, stream: usize) -> u64 {
        self.ids
            .get(stream)
            .map_or(0, |s| s.load(Ordering::Acquire))
    }

    /// Stream `stream`'s position counts in the stream of id `id` from now on (after any reset for it).
    pub fn set_stream_id(&self, stream: usize, id: u64) {
        if let Some(s) = self.ids.get(stream) {
            s.store(id, Ordering::Release);
        }
    }

    /// Every position with its stream's id, for the file: the ids read first, so that a position reset
    /// for a new stream is never written beside the old stream's id.
    pub fn persisted(&self) -> Persisted {
        let ids = self.ids.iter().map(|s| s.load(Ordering::Acquire)).collect();
        Persisted {
            seqs: self.all(),
            ids,
        }
    }

    /// Stream `stream` is applied through `seq` (positions only grow).
    pub fn advance(&self, stream: usize, seq: u64) {
        if let Some(s) = self.seqs.get(stream) {
            s.fetch_max(seq, Ordering::AcqRel);
        }
    }

    /// Stream `stream` is applied through `seq` and no further (a stream found behind this node's position).
    pub fn reset(&self, stream: usize, seq: u64) {
        if let Some(s) = self.seqs.get(stream) {
            s.store(seq, Ordering::Release);
        }
    }

    pub fn set_aside(&self, records: usize) {
        self.set_aside.fetch_add(records as u64, Ordering::Relaxed);
    }

    pub fn set_aside_total(&self) -> u64 {
        self.set_aside.load(Ordering::Relaxed)
    }

    pub fn record_lag(&self, lag_ns: i64) {
        let us = u64::try_from(lag_ns / 1000)
            .unwrap_or(0)
            .clamp(1, 3_600_000_000);
        if let Ok(mut h) = self.lag_us.lock() {
            let _ = h.record(us);
        }
    }

    /// (count, p50, p99, max) of the replication lag in microseconds.
    pub fn lag(&self) -> (u64, u64, u64, u64) {
        match self.lag_us.lock() {
            Ok(h) => (
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max(),
            ),
            Err(_) => (0, 0, 0, 0),
        }
    }
}

/// The positions file of a data directory.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("CLUSTER-POSITIONS")
}

/// The applied position of each of `streams` streams as persisted, with its stream's id (0 for a stream the
/// file does not name, or with no file: a new node consumes every stream from its start). Lines are
/// `K SEQ [ID]` (ID in hex; files written before ids have none). A damaged file is an error, not zeros:
/// consuming everything again is safe but may take long, so the operator decides (delete the file).
pub fn load(path: &Path, streams: usize) -> Result<Persisted, String> {
    let mut p = Persisted {
        seqs: vec![0; streams],
        ids: vec![0; streams],
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(p),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let bad = |why: &str| {
        // A line is quoted at most this long: a damaged file can hold anything.
        let why: String = why.chars().take(80).collect();
        format!(
            "{} is damaged ({why}); delete it to consume every stream again from its first message",
            path.display()
        )
    };
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad("first line"));
    }
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(k), Some(seq), id, None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(line));
        };
        let k: usize = k.parse().map_err(|_| bad(line))?;
        // No stream reaches the greatest sequence (the follower asks for the one after it), and the engine
        // writes no id of 0 (it leaves the field out): either would stop a stream or its recreation check.
        let seq: u64 = seq
            .parse()
            .ok()
            .filter(|&s| s < u64::MAX)
            .ok_or_else(|| bad(line))?;
        let id = match id {
            Some(id) => u64::from_str_radix(id, 16)
                .ok()
                .filter(|&id| id != 0)
                .ok_or_else(|| bad(line))?,
            None => 0,
        };
        if k < streams {
            (p.seqs[k], p.ids[k]) = (seq, id);
        }
    }
    Ok(p)
}

/// Writes `p` to `path` durably: a temporary file, synced, renamed over the old one, the directory synced.
pub fn store(path: &Path, p: &Persisted) -> io::Result<()> {
    let mut text = format!("{MAGIC}\n");
    for (k, s) in p.seqs.iter().enumerate() {
        match p.ids.get(k).copied().unwrap_or(0) {
            0 => text.push_str(&format!("{k} {s}\n")),
            id => text.push_str(&format!("{k} {s} {id:x}\n")),
        }
    }
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path());
        let seqs = |p: Persisted| p.seqs;
        assert_eq!(
            seqs(load(&p, 3).unwrap()),
            vec![0, 0, 0],
            "no file: from the start"
        );
        let written = Persisted {
            seqs: vec![5, 0, 17],
            ids: vec![0xabc, 0, u64::MAX],
        };
        store(&p, &written).unwrap();
        assert_eq!(load(&p, 3).unwrap(), written);
        assert_eq!(
            load(&p, 4).unwrap(),
            Persisted {
                seqs: vec![5, 0, 17, 0],
                ids: vec![0xabc, 0, u64::MAX, 0]
            },
            "a stream added later"
        );
        fs::write(&p, "tickcore-positions 1\n0 9\n1 4\n").unwrap();
        assert_eq!(
            load(&p, 2).unwrap(),
            Persisted {
                seqs: vec![9, 4],
                ids: vec![0, 0]
            },
            "a file written before ids"
        );
        for damaged in [
            "0 x",
            "0 1 zz",
            "0 1 2 3",
            "0",
            "0 18446744073709551615",
            "0 1 0",
        ] {
            fs::write(&p, format!("tickcore-positions 1\n{damaged}\n")).unwrap();
            assert!(load(&p, 3).unwrap_err().contains("damaged"), "{damaged}");
        }
        fs::write(
            &p,
            format!("tickcore-positions 1\n0 {}\n", "9".repeat(100_000)),
        )
        .unwrap();
        assert!(
            load(&p, 3).unwrap_err().len() < 300,
            "a long line is not quoted whole"
        );
        fs::write(&p, "junk").unwrap();
        assert!(load(&p, 3).unwrap_err().contains("first line"));
    }

    #[test]
    fn positions_only_grow() {
        let a = Applied::new(&Persisted {
            seqs: vec![3, 0],
            ids: vec![],
        });
        a.advance(0, 2);
        a.advance(1, 9);
        a.advance(7, 1);
        assert_eq!(a.all(), vec![3, 9]);
    }
}

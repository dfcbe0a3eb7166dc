//! The write-ahead log codec (pure). A log file is a sequence of *commits*, each starting on a fresh
//! 4096-byte block so that no write ever rewrites a block holding an acknowledged commit:
//!
//! ```text
//! header (32 B): magic u32 "TKW1" | version u16 | reserved u16 | seq u64 | payload_len u32 | crc32c u32 | reserved u64
//! payload      : entries, each  kind u8 | tag_len u8 | tag bytes | body
//!                kind 1 (record): index u64 | 88-byte record      (record `index` of the tag's segment file)
//!                kind 2 (length): seg i64 | count u64             (the segment file holds `count` records)
//! padding      : zeros up to the next block
//! ```
//!
//! The CRC covers the header's first 20 bytes and the payload. Sequence numbers increase by one from the
//! file's first commit, so a stale or torn block is never taken for the next commit; an all-zero block has
//! the wrong magic. Reading stops at the first block that is not a valid next commit: that commit was never
//! acknowledged (its fdatasync had not completed).

use crate::record::{Record, RECORD_BYTES};
use crate::store::{align_up, BLOCK};

pub const MAGIC: u32 = u32::from_le_bytes(*b"TKW1");
pub const VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 32;
const KIND_RECORD: u8 = 1;
const KIND_LENGTH: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Record {
        tag: String,
        index: u64,
        record: Record,
    },
    Length {
        tag: String,
        seg: i64,
        count: u64,
    },
}

/// Appends one entry's bytes to a payload being built.
pub fn put_record(payload: &mut Vec<u8>, tag: &str, index: u64, record: &Record) {
    put_tag(payload, KIND_RECORD, tag);
    payload.extend_from_slice(&index.to_le_bytes());
    payload.extend_from_slice(bytemuck::bytes_of(record));
}

pub fn put_length(payload: &mut Vec<u8>, tag: &str, seg: i64, count: u64) {
    put_tag(payload, KIND_LENGTH, tag);
    payload.extend_from_slice(&seg.to_le_bytes());
    payload.extend_from_slice(&count.to_le_bytes());
}

fn put_tag(payload: &mut Vec<u8>, kind: u8, tag: &str) {
    assert!(
        tag.len() <= u8::MAX as usize,
        "BUG: tag of {} bytes in the log",
        tag.len()
    );
    payload.push(kind);
    payload.push(tag.len() as u8);
    payload.extend_from_slice(tag.as_bytes());
}

/// Frames `payload` as commit `seq` into `out` (cleared), padded to whole blocks.
pub fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..20]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(align_up(out.len()), 0);
    debug_assert_eq!(out.len() % BLOCK, 0);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed entry in a commit whose checksum matched (offset {offset}): {what}")]
pub struct EntryError {
    pub offset: usize,
    pub what: &'static str,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a valid commit's payload.
pub fn entries(payload: &[u8], out: &mut Vec<Entry>) -> Result<(), EntryError> {
    let mut p = 0;
    let err = |offset, what| EntryError { offset, what };
    while p < payload.len() {
        let kind = payload[p];
        let tag_len = *payload.get(p + 1).ok_or(err(p, "truncated entry"))? as usize;
        let tag = payload
            .get(p + 2..p + 2 + tag_len)
            .ok_or(err(p, "truncated tag"))?;
        let tag = std::str::from_utf8(tag)
            .map_err(|_| err(p, "tag is not UTF-8"))?
            .to_string();
        let body = p + 2 + tag_len;
        match kind {
            KIND_RECORD => {
                let index = u64_at(payload, body).ok_or(err(p, "truncated index"))?;
                let rec = payload
                    .get(body + 8..body + 8 + RECORD_BYTES)
                    .ok_or(err(p, "truncated record"))?;
                out.push(Entry::Record {
                    tag,
                    index,
                    record: bytemuck::pod_read_unaligned(rec),
                });
                p = body + 8 + RECORD_BYTES;
            }
            KIND_LENGTH => {
                let seg = u64_at(payload, body).ok_or(err(p, "truncated segment"))? as i64;
                let count = u64_at(payload, body + 8).ok_or(err(p, "truncated count"))?;
                out.push(Entry::Length { tag, seg, count });
                p = body + 16;
            }
            _ => return Err(err(p, "unknown entry kind")),
        }
    }
    Ok(())
}

/// One valid commit found in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit<'a> {
    pub offset: usize,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// The length (header and payload) of the commit whose header starts at `at`, when a commit header (magic
/// and version) is there; says nothing of its sequence number or checksum.
pub fn commit_extent(log: &[u8], at: usize) -> Option<usize> {
    let h = log.get(at..at.checked_add(HEADER_BYTES)?)?;
    let magic = u32::from_le_bytes(h[0..4].try_into().ok()?);
    let version = u16::from_le_bytes(h[4..6].try_into().ok()?);
    let len = u32::from_le_bytes(h[16..20].try_into().ok()?) as usize;
    (magic == MAGIC && version == VERSION).then_some(HEADER_BYTES + len)
}

/// The valid commits at the start of `log`, and the offset where the valid log ends.
pub fn scan(log: &[u8]) -> (Vec<Commit<'_>>, usize) {
    let mut commits = Vec::new();
    let mut at = 0;
    let mut expect: Option<u64> = None;
    while at + HEADER_BYTES <= log.len() {
        let h = &log[at..at + HEADER_BYTES];
        let word = |r: std::ops::Range<usize>| -> u64 {
            h[r].iter().rev().fold(0u64, |a, &b| a << 8 | b as u64)
        };
        if word(0..4) as u32 != MAGIC || word(4..6) as u16 != VERSION {
            break;
        }
        let seq = word(8..16);
        let len = word(16..20) as usize;
        let crc = word(20..24) as u32;
        if expect.is_some_and(|e| e != seq) {
            break;
        }
        let Some(payload) = log.get(at + HEADER_BYTES..at + HEADER_BYTES + len) else {
            break;
        };
        if crc32c::crc32c_append(crc32c::crc32c(&h[..20]), payload) != crc {
            break;
        }
        commits.push(Commit {
            offset: at,
            seq,
            payload,
        });
        expect = Some(seq + 1);
        at += align_up(HEADER_BYTES + len);
    }
    (commits, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(t: i64) -> Record {
        Record {
            time: t,
            values: [t as f64 * 0.5; 10],
        }
    }

    fn log_of(commits: &[Vec<Entry>]) -> Vec<u8> {
        let mut log = Vec::new();
        let mut block = Vec::new();
        for (i, es) in commits.iter().enumerate() {
            let mut payload = Vec::new();
            for e in es {
                match e {
                    Entry::Record { tag, index, record } => {
                        put_record(&mut payload, tag, *index, record)
                    }
                    Entry::Length { tag, seg, count } => {
                        put_length(&mut payload, tag, *seg, *count)
                    }
                }
            }
            frame(100 + i as u64, &payload, &mut block);
            log.extend_from_slice(&block);
        }
        log
    }

    fn decode(log: &[u8]) -> Vec<Vec<Entry>> {
        scan(log)
            .0
            .iter()
            .map(|c| {
                let mut v = Vec::new();
                entries(c.payload, &mut v).unwrap();
                v
            })
            .collect()
    }

    #[test]
    fn round_trip_and_torn_tails() {
        let commits = vec![
            vec![Entry::Record {
                tag: "a/b".into(),
                index: 0,
                record: rec(1),
            }],
            (0..100)
                .map(|i| Entry::Record {
                    tag: "t".into(),
                    index: i,
                    record: rec(i as i64),
                })
                .collect(),
            vec![Entry::Length {
                tag: "é".into(),
                seg: -3,
                count: 7,
            }],
        ];
        let log = log_of(&commits);
        assert_eq!(decode(&log), commits);
        // Any damage to the last commit (here: the second block of a 3-block log's last commit) drops it.
        let (all, end) = scan(&log);
        assert_eq!(end, log.len());
        let last = all[2].offset;
        let mut torn = log.clone();
        torn[last + 40] ^= 1;
        assert_eq!(decode(&torn), commits[..2].to_vec());
        // Zeros after the log end it.
        let mut zeros = log.clone();
        zeros.extend_from_slice(&[0; 8192]);
        assert_eq!(decode(&zeros), commits);
        // A stale commit with a wrong sequence number ends it too.
        let mut stale = log.clone();
        stale.extend_from_slice(&log[..4096]);
        assert_eq!(decode(&stale), commits);
    }

    proptest! {
        #[test]
        fn any_corruption_keeps_a_prefix(n in 1usize..5, flip in any::<usize>(), cut in any::<usize>()) {
            let commits: Vec<Vec<Entry>> = (0..n).map(|c| (0..(c * 30 + 1) as u64)
                .map(|i| Entry::Record { tag: format!("t{c}"), index: i, record: rec(i as i64) }).collect()).collect();
            let log = log_of(&commits);
            let mut bad = log.clone();
            let f = flip % bad.len();
            bad[f] ^= 0x40;
            bad.truncate(cut % (log.len() + 1));
            let got = decode(&bad);
            prop_assert!(got.len() <= commits.len());
            prop_assert_eq!(&got[..], &commits[..got.len()]);
        }
    }
}

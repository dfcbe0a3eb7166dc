//! The replicated batch (pure): what one core's group commit publishes to a JetStream stream in cluster mode,
//! and what every node decodes and applies (docs/cluster.md).
//!
//! ```text
//! header (48 B): magic u32 "TKR1" | version u16 | reserved u16 | node u32 | core u32 | incarnation u64 |
//!                counter u64 | clock i64 | count u32 | crc32c u32
//! entries      : count x ( tag_len u8 | tag bytes (a valid tag) | 88-byte record )
//! ```
//!
//! All integers little-endian. The CRC32C covers the header's first 44 bytes and the entries. The batch id
//! (node, incarnation, core, counter) is unique for the cluster's life: `incarnation` is drawn when the engine
//! starts, so a restarted node's counters, which start again at 0, never repeat an earlier id. That matters
//! because the id is the stream's `Nats-Msg-Id`: JetStream answers a repeated id as a duplicate and stores
//! nothing, which for a new batch would acknowledge records never stored. `clock` is the accepting node's
//! unix ns when the batch was made (for lag figures; never for ordering). A batch is canonical: decoding and
//! encoding again gives the same bytes, and no two encodings decode to the same batch.

use crate::record::{Record, RECORD_BYTES};

pub const MAGIC: u32 = u32::from_le_bytes(*b"TKR1");
pub const VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 48;
/// The largest entry: a tag of 19 characters of 4 UTF-8 bytes each, and its record.
pub const ENTRY_BYTES_MAX: usize = 1 + 76 + RECORD_BYTES;
/// The smallest `max_bytes` a [`Batcher`] takes: any one entry fits a batch.
pub const BATCH_BYTES_MIN: usize = HEADER_BYTES + ENTRY_BYTES_MAX;

/// Who made a batch: unique for the cluster's life (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchId {
    pub node: u32,
    pub incarnation: u64,
    pub core: u32,
    pub counter: u64,
}

impl BatchId {
    /// The batch's `Nats-Msg-Id`.
    pub fn msg_id(&self) -> String {
        format!(
            "{}-{:016x}-{}-{}",
            self.node, self.incarnation, self.core, self.counter
        )
    }
}

/// A decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub clock: i64,
    pub entries: Vec<(String, Record)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed replicated batch at byte {offset}: {what}")]
pub struct BatchError {
    pub offset: usize,
    pub what: &'static str,
}

/// Makes one core's batches: consecutive counters, each batch at most `max_bytes` (NATS's `max_payload`).
#[derive(Debug)]
pub struct Batcher {
    node: u32,
    incarnation: u64,
    core: u32,
    next: u64,
    max_bytes: usize,
}

impl Batcher {
    /// `max_bytes` of at least [`BATCH_BYTES_MIN`], so that any entry fits.
    pub fn new(node: u32, incarnation: u64, core: u32, max_bytes: usize) -> Result<Self, String> {
        if max_bytes < BATCH_BYTES_MIN {
            return Err(format!(
                "a replicated batch needs at least {BATCH_BYTES_MIN} bytes (the NATS server's max_payload is {max_bytes})"
            ));
        }
        Ok(Batcher {
            node,
            incarnation,
            core,
            next: 0,
            max_bytes,
        })
    }

    /// The same batcher with its next counter at `counter` (re-encoding a decoded batch).
    pub fn starting_at(mut self, counter: u64) -> Self {
        self.next = counter;
        self
    }

    /// Encodes `entries` (valid tags, finite records: what admission let in) into as few batches as fit
    /// `max_bytes`, in order; none when there is no entry.
    pub fn encode<'a>(
        &mut self,
        clock: i64,
        entries: impl IntoIterator<Item = (&'a str, &'a Record)>,
    ) -> Vec<(BatchId, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cur: Option<(BatchId, Vec<u8>, u32)> = None;
        for (tag, record) in entries {
            debug_assert!(crate::tag::validate(tag).is_ok(), "BUG: tag {tag:?}");
            let size = 1 + tag.len() + RECORD_BYTES;
            assert!(size <= ENTRY_BYTES_MAX, "BUG: tag of {} bytes", tag.len());
            if cur
                .as_ref()
                .is_some_and(|(_, b, _)| b.len() + size > self.max_bytes)
            {
                out.extend(cur.take().map(|(id, b, n)| (id, seal(b, n))));
            }
            let (_, bytes, count) = cur.get_or_insert_with(|| {
                let id = BatchId {
                    node: self.node,
                    incarnation: self.incarnation,
                    core: self.core,
                    counter: self.next,
                };
                self.next += 1;
                (id, header(&id, clock), 0)
            });
            bytes.push(tag.len() as u8);
            bytes.extend_from_slice(tag.as_bytes());
            bytes.extend_from_slice(bytemuck::bytes_of(record));
            *count += 1;
        }
        out.extend(cur.map(|(id, b, n)| (id, seal(b, n))));
        out
    }
}

/// A header with count and checksum still 0.
fn header(id: &BatchId, clock: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(4096);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&id.node.to_le_bytes());
    b.extend_from_slice(&id.core.to_le_bytes());
    b.extend_from_slice(&id.incarnation.to_le_bytes());
    b.extend_from_slice(&id.counter.to_le_bytes());
    b.extend_from_slice(&clock.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    debug_assert_eq!(b.len(), HEADER_BYTES);
    b
}

/// Writes the entry count and the checksum.
fn seal(mut b: Vec<u8>, count: u32) -> Vec<u8> {
    b[40..44].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..44]), &b[HEADER_BYTES..]);
    b[44..48].copy_from_slice(&crc.to_le_bytes());
    b
}

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// Decodes a batch, checking everything a node relies on before applying it: magic, version, checksum,
/// count, every tag valid, every value finite, no byte left over.
pub fn decode(bytes: &[u8]) -> Result<Batch, BatchError> {
    let err = |offset, what| Err(BatchError { offset, what });
    if bytes.len() < HEADER_BYTES {
        return err(bytes.len(), "shorter than a batch header");
    }
    if u32::from_le_bytes(le(bytes, 0)) != MAGIC {
        return err(0, "not a replicated batch (magic)");
    }
    if u16::from_le_bytes(le(bytes, 4)) != VERSION {
        return err(4, "unknown batch version");
    }
    if u16::from_le_bytes(le(bytes, 6)) != 0 {
        return err(6, "reserved bytes not zero");
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..44]), &bytes[HEADER_BYTES..]);
    if u32::from_le_bytes(le(bytes, 44)) != crc {
        return err(44, "checksum mismatch");
    }
    let id = BatchId {
        node: u32::from_le_bytes(le(bytes, 8)),
        core: u32::from_le_bytes(le(bytes, 12)),
        incarnation: u64::from_le_bytes(le(bytes, 16)),
        counter: u64::from_le_bytes(le(bytes, 24)),
    };
    let clock = i64::from_le_bytes(le(bytes, 32));
    let count = u32::from_le_bytes(le(bytes, 40)) as usize;
    // Every entry takes at least 2 + 88 bytes: a count past that is refused before allocating for it.
    if count == 0 || count > (bytes.len() - HEADER_BYTES) / (2 + RECORD_BYTES) {
        return err(40, "entry count does not fit the batch");
    }
    let mut entries = Vec::with_capacity(count);
    let mut p = HEADER_BYTES;
    for _ in 0..count {
        let Some(&n) = bytes.get(p) else {
            return err(p, "truncated entry");
        };
        let n = n as usize;
        let Some(tag) = bytes.get(p + 1..p + 1 + n) else {
            return err(p, "truncated tag");
        };
        let Ok(tag) = std::str::from_utf8(tag) else {
            return err(p + 1, "tag is not UTF-8");
        };
        if crate::tag::validate(tag).is_err() {
            return err(p + 1, "invalid tag");
        }
        let at = p + 1 + n;
        let Some(rec) = bytes.get(at..at + RECORD_BYTES) else {
            return err(at, "truncated record");
        };
        let record: Record = bytemuck::pod_read_unaligned(rec);
        if !record.all_finite() {
            return err(at, "non-finite value");
        }
        entries.push((tag.to_string(), record));
        p = at + RECORD_BYTES;
    }
    if p != bytes.len() {
        return err(p, "bytes after the last entry");
    }
    Ok(Batch { id, clock, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::VALUES;
    use proptest::prelude::*;

    fn rec(t: i64, v: f64) -> Record {
        Record {
            time: t,
            values: [v; VALUES],
        }
    }

    fn entries_strategy() -> impl Strategy<Value = Vec<(String, Record)>> {
        let tag = "[a-z0-9é€🙂/ ]{1,19}";
        let value = prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            Just(-0.0)
        ];
        prop::collection::vec(
            (tag, any::<i64>(), prop::array::uniform10(value))
                .prop_map(|(t, time, values)| (t, Record { time, values })),
            0..200,
        )
    }

    proptest! {
        /// Encoding then decoding gives back every entry in order, across as many batches as `max_bytes`
        /// needs, each within it, with consecutive counters; encoding a decoded batch again gives its bytes.
        #[test]
        fn round_trips_split_at_max_bytes(
            entries in entries_strategy(),
            max in BATCH_BYTES_MIN..20_000usize,
            clock in any::<i64>(),
        ) {
            let mut b = Batcher::new(3, 0xfeed, 1, max).unwrap();
            let batches = b.encode(clock, entries.iter().map(|(t, r)| (t.as_str(), r)));
            prop_assert_eq!(batches.is_empty(), entries.is_empty());
            let mut got = Vec::new();
            for (i, (id, bytes)) in batches.iter().enumerate() {
                prop_assert!(bytes.len() <= max);
                prop_assert_eq!(id.counter, i as u64);
                let batch = decode(bytes).unwrap();
                prop_assert_eq!(batch.id, *id);
                prop_assert_eq!(batch.clock, clock);
                let mut again = Batcher::new(3, 0xfeed, 1, usize::MAX).unwrap().starting_at(id.counter);
                let re = again.encode(clock, batch.entries.iter().map(|(t, r)| (t.as_str(), r)));
                prop_assert_eq!(&re[0].1, bytes);
                got.extend(batch.entries);
            }
            // Bit patterns, so -0.0 and 0.0 differ.
            let bits = |v: &[(String, Record)]| -> Vec<(String, Vec<u8>)> {
                v.iter().map(|(t, r)| (t.clone(), bytemuck::bytes_of(r).to_vec())).collect()
            };
            prop_assert_eq!(bits(&got), bits(&entries));
        }

        /// Any one byte changed, or the batch cut short anywhere, is refused, never decoded as another batch.
        #[test]
        fn damage_is_always_refused(entries in entries_strategy(), at in any::<prop::sample::Index>(),
                                     flip in 1u8..=255) {
            prop_assume!(!entries.is_empty());
            let mut b = Batcher::new(1, 2, 0, usize::MAX).unwrap();
            let (_, bytes) = b.encode(7, entries.iter().map(|(t, r)| (t.as_str(), r))).remove(0);
            let i = at.index(bytes.len());
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            prop_assert!(decode(&bad).is_err());
            prop_assert!(decode(&bytes[..i]).is_err());
        }
    }

    #[test]
    fn ids_differ_across_incarnations_and_cores() {
        let r = rec(1, 1.0);
        let one = |inc, core| {
            Batcher::new(1, inc, core, BATCH_BYTES_MIN)
                .unwrap()
                .encode(0, [("a", &r)])
                .remove(0)
                .0
                .msg_id()
        };
        assert_ne!(one(1, 0), one(2, 0), "a restarted node's first batch");
        assert_ne!(one(1, 0), one(1, 1));
        assert_eq!(one(1, 0), one(1, 0));
    }

    #[test]
    fn each_entry_fits_the_smallest_batch() {
        let tag = "🙂".repeat(19);
        let r = rec(5, 2.5);
        let mut b = Batcher::new(1, 1, 0, BATCH_BYTES_MIN).unwrap();
        let out = b.encode(0, [(tag.as_str(), &r), (tag.as_str(), &r), ("x", &r)]);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(_, b)| b.len() <= BATCH_BYTES_MIN));
        assert_eq!(out[0].1.len(), BATCH_BYTES_MIN);
        assert!(Batcher::new(1, 1, 0, BATCH_BYTES_MIN - 1).is_err());
    }

    #[test]
    fn hostile_headers_are_refused_without_allocating_for_them() {
        let r = rec(5, 2.5);
        let (_, good) = Batcher::new(1, 1, 0, 1 << 20)
            .unwrap()
            .encode(0, [("a", &r)])
            .remove(0);
        // A count of 4 billion entries in a 138-byte batch, with a matching checksum.
        let mut bad = good.clone();
        bad[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bad[..44]), &bad[HEADER_BYTES..]);
        bad[44..48].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&bad).unwrap_err().what,
            "entry count does not fit the batch"
        );
        // A NaN value or a control character in a tag, checksummed.
        for (at, byte, what) in [
            (HEADER_BYTES + 2 + 8, 0xFF, "non-finite value"),
            (HEADER_BYTES + 1, 0x07, "invalid tag"),
        ] {
            let mut bad = good.clone();
            if what == "non-finite value" {
                bad[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
            } else {
                bad[at] = byte;
            }
            let crc = crc32c::crc32c_append(crc32c::crc32c(&bad[..44]), &bad[HEADER_BYTES..]);
            bad[44..48].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(decode(&bad).unwrap_err().what, what);
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&good[..HEADER_BYTES]).is_err());
    }
}

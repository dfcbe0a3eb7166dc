//! The fixed-width 88-byte record: what is stored on disk, in the write-ahead log and in memory.
//!
//! A record is `#[repr(C)]` time (`i64`, unix ns) followed by ten `f64` values, read and written as raw
//! little-endian bytes through `bytemuck`. It never holds a non-finite value: ingest rejects them, and the
//! tag files use an all-`0xFF` slot (a NaN time/values pattern no accepted record can have) as padding.

use bytemuck::{Pod, Zeroable};

/// Number of values per record, fixed by the product's message format.
pub const VALUES: usize = 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Record {
    pub time: i64,
    pub values: [f64; VALUES],
}

/// Size of one record on disk and in the log.
pub const RECORD_BYTES: usize = 88;

const _: () = assert!(std::mem::size_of::<Record>() == RECORD_BYTES);
const _: () = assert!(std::mem::align_of::<Record>() == 8);
// The on-disk format is little-endian; we store the in-memory representation as is.
const _: () = assert!(cfg!(target_endian = "little"));

/// The byte used to pad the unused end of a tag file's last block.
pub const PAD_BYTE: u8 = 0xFF;

impl Record {
    /// True when the slot holds padding rather than a record (see module docs).
    pub fn is_padding(bytes: &[u8]) -> bool {
        debug_assert_eq!(bytes.len(), RECORD_BYTES);
        bytes.iter().all(|&b| b == PAD_BYTE)
    }

    pub fn all_finite(&self) -> bool {
        self.values.iter().all(|v| v.is_finite())
    }
}

/// A record at `time` with every value `v`, for tests.
#[cfg(test)]
pub(crate) fn filled(time: i64, v: f64) -> Record {
    Record {
        time,
        values: [v; VALUES],
    }
}

/// A record whose every value equals its time: easy to check in tests.
#[cfg(test)]
pub(crate) fn test_record(t: i64) -> Record {
    Record {
        time: t,
        values: [t as f64; VALUES],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_never_a_valid_record() {
        let pad = [PAD_BYTE; RECORD_BYTES];
        let rec: Record = bytemuck::pod_read_unaligned(&pad);
        assert!(!rec.all_finite());
        assert!(Record::is_padding(&pad));
        let real = Record {
            time: -1,
            values: [0.0; VALUES],
        };
        assert!(!Record::is_padding(bytemuck::bytes_of(&real)));
    }

    #[test]
    fn layout_is_time_then_values_little_endian() {
        let r = Record {
            time: 0x0102030405060708,
            values: [1.0; VALUES],
        };
        let b = bytemuck::bytes_of(&r);
        assert_eq!(&b[..8], &0x0102030405060708i64.to_le_bytes());
        assert_eq!(&b[8..16], &1.0f64.to_le_bytes());
    }
}

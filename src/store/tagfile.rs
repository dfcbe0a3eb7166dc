//! Tag files: the dense array of 88-byte records of one tag in one time segment, in arrival order, record
//! `k` at byte `88*k`. The file length is always a multiple of 4096 (every write is a whole O_DIRECT
//! block); the unused end of the last block is filled with `0xFF`, which no accepted record can be.

use crate::record::{Record, PAD_BYTE, RECORD_BYTES};
use crate::store::{align_down, align_up};

/// Number of records in a file whose last bytes are `tail`, the file being `file_len` bytes long and
/// `tail` its final `tail.len()` bytes (at least the last block when the file is not empty).
pub fn count_records(file_len: usize, tail: &[u8]) -> usize {
    let tail_start = file_len - tail.len();
    let mut n = file_len / RECORD_BYTES;
    while n > 0 {
        let at = (n - 1) * RECORD_BYTES;
        if at < tail_start {
            break; // a slot before the tail is never padding: only the last block is padded
        }
        if !Record::is_padding(&tail[at - tail_start..at - tail_start + RECORD_BYTES]) {
            break;
        }
        n -= 1;
    }
    n
}

/// The bytes to write so that the file holds `records`, which are the records with indexes
/// `first..first+records.len()`, where `first` is the first record touching block `align_down(88*first_new)`.
/// Returns `(file offset, bytes)`: the offset is block-aligned and the length a multiple of the block.
pub fn block_image(first_index: usize, records: &[Record], first_new: usize) -> (usize, Vec<u8>) {
    let offset = align_down(first_new * RECORD_BYTES);
    assert_eq!(
        first_index,
        offset / RECORD_BYTES,
        "BUG: block image must start at the record touching the block"
    );
    let skip = offset - first_index * RECORD_BYTES;
    let raw: &[u8] = bytemuck::cast_slice(records);
    let end = first_index * RECORD_BYTES + raw.len();
    let mut bytes = Vec::with_capacity(align_up(end) - offset);
    bytes.extend_from_slice(&raw[skip..]);
    bytes.resize(align_up(end) - offset, PAD_BYTE);
    (offset, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_record as rec;

    #[test]
    fn images_stack_into_a_countable_file() {
        let all: Vec<Record> = (0..200).map(rec).collect();
        let mut file: Vec<u8> = Vec::new();
        let mut persisted = 0;
        for upto in [1, 46, 47, 100, 140, 200] {
            let first = align_down(persisted * RECORD_BYTES) / RECORD_BYTES;
            let (off, bytes) = block_image(first, &all[first..upto], persisted);
            assert_eq!(off % 4096, 0);
            assert_eq!(bytes.len() % 4096, 0);
            file.truncate(off);
            file.extend_from_slice(&bytes);
            persisted = upto;
            let tail = &file[file.len() - 4096..];
            assert_eq!(count_records(file.len(), tail), upto);
            let recs: &[Record] = bytemuck::cast_slice(&file[..upto * RECORD_BYTES]);
            assert_eq!(recs, &all[..upto]);
        }
        assert_eq!(count_records(0, &[]), 0);
    }
}

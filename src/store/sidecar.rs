//! Block checksums of a tag file, kept beside it (`<tag>.crc` next to `<tag>.rec`), so the tag file itself
//! stays the design's plain array of 88-byte records. The sidecar is append-only: each checkpoint (and each
//! recovery rewrite) appends, after the tag file's write and before the sync that covers both, one entry per block it wrote:
//!
//! ```text
//! entry (12 B): block u32 | crc32c(block's 4096 bytes) u32 | crc32c(first 8 bytes of the entry) u32
//! ```
//!
//! The latest valid entry of a block is its checksum. Reading stops at the first entry whose own checksum
//! fails (a torn append: never covered by a completed fdatasync). An append rewrites the sector holding the
//! previous entries with the same bytes, so a torn append cannot damage them (sectors are written whole).
//! A block without an entry (a file written before sidecars, or a sidecar lost with its unsynced directory
//! entry) is unchecked, never reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::store::BLOCK;

pub const ENTRY_BYTES: usize = 12;

/// The sidecar of a tag file.
pub fn path_for(tag_file: &Path) -> PathBuf {
    tag_file.with_extension("crc")
}

/// The entries for `image`, whole blocks written at byte `offset` (block-aligned) of a tag file.
pub fn entries(offset: usize, image: &[u8]) -> Vec<u8> {
    assert!(
        offset % BLOCK == 0 && image.len() % BLOCK == 0,
        "BUG: sidecar entries for a partial block"
    );
    let mut out = Vec::with_capacity(image.len() / BLOCK * ENTRY_BYTES);
    for (i, block) in image.chunks(BLOCK).enumerate() {
        let index = u32::try_from(offset / BLOCK + i).expect("tag file under 16 TiB");
        let head_at = out.len();
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
        let own = crc32c::crc32c(&out[head_at..head_at + 8]);
        out.extend_from_slice(&own.to_le_bytes());
    }
    out
}

/// The valid entries at the start of a sidecar's bytes, as (block, checksum).
fn valid(bytes: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    bytes.chunks_exact(ENTRY_BYTES).map_while(|e| {
        let word = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        (crc32c::crc32c(&e[..8]) == word(8)).then(|| (word(0), word(4)))
    })
}

/// The checksum of each block, from a sidecar's bytes (the latest valid entry wins).
pub fn parse(bytes: &[u8]) -> HashMap<u32, u32> {
    valid(bytes).collect()
}

/// Bytes of the valid entries at the start: where the next append goes, so it replaces a torn tail
/// instead of hiding behind it.
pub fn valid_len(bytes: &[u8]) -> usize {
    valid(bytes).count() * ENTRY_BYTES
}

/// `None` when block `index` (its bytes `block`) matches its checksum or has none; else what is wrong.
pub fn check(sums: &HashMap<u32, u32>, index: usize, block: &[u8]) -> Option<String> {
    let want = *sums.get(&u32::try_from(index).ok()?)?;
    if block.len() != BLOCK {
        return Some(format!(
            "block {index} is {} bytes, its checksum covers {BLOCK}",
            block.len()
        ));
    }
    let got = crc32c::crc32c(block);
    (got != want)
        .then(|| format!("block {index} has checksum {got:#010x}, its sidecar says {want:#010x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_valid_entry_wins_and_a_torn_tail_is_ignored() {
        let a = vec![1u8; 2 * BLOCK];
        let mut side = entries(0, &a);
        let b = vec![2u8; BLOCK];
        side.extend(entries(BLOCK, &b));
        let sums = parse(&side);
        assert_eq!(sums.len(), 2);
        assert_eq!(check(&sums, 0, &a[..BLOCK]), None);
        assert_eq!(check(&sums, 1, &b), None, "the rewrite of block 1 wins");
        assert!(check(&sums, 1, &a[BLOCK..]).is_some());
        assert_eq!(check(&sums, 7, &a[..BLOCK]), None, "no entry: unchecked");
        let mut torn = side.clone();
        torn.extend(entries(BLOCK, &a[BLOCK..]));
        let n = torn.len();
        torn[n - 1] ^= 0x40;
        assert_eq!(
            check(&parse(&torn), 1, &b),
            None,
            "a torn last entry is not read"
        );
        assert_eq!(
            valid_len(&torn),
            side.len(),
            "the torn entry is not counted"
        );
        torn.truncate(n - 5);
        assert_eq!(check(&parse(&torn), 1, &b), None);
        assert_eq!(valid_len(&torn), side.len());
        // An append at the valid length replaces the torn tail, and its entries are read.
        torn.truncate(valid_len(&torn));
        torn.extend(entries(BLOCK, &a[BLOCK..]));
        assert_eq!(check(&parse(&torn), 1, &a[BLOCK..]), None);
    }
}

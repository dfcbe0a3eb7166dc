//! A core's cache of 4 KiB tag-file blocks read with DMA reads (`--reads dma`): least recently used blocks
//! leave first once `--read-cache-mib` is reached. Only whole blocks below a segment's persisted records are
//! cached: those bytes never change while the file exists (checkpoints rewrite only the partial last block
//! and append), so a cached block is never stale. Keys carry a per-segment id that is never reused, so the
//! blocks of a deleted segment simply age out.

use std::rc::Rc;

use lru::LruCache;
use rustc_hash::FxBuildHasher;

use crate::store::BLOCK as BLOCK_BYTES;

/// (segment id, block number)
pub type BlockKey = (u64, u64);

pub struct BlockCache {
    /// Grown as blocks arrive (a bounded `LruCache` allocates its whole capacity up front: a large
    /// `--read-cache-mib` would take that memory at start, or abort the engine).
    blocks: LruCache<BlockKey, Rc<[u8]>, FxBuildHasher>,
    /// Blocks held at most.
    cap: usize,
    pub hits: u64,
    pub misses: u64,
}

impl BlockCache {
    /// A cache of at most `bytes_max` bytes of blocks (at least one block).
    pub fn new(bytes_max: usize) -> Self {
        BlockCache {
            blocks: LruCache::unbounded_with_hasher(FxBuildHasher),
            cap: (bytes_max / BLOCK_BYTES).max(1),
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, key: BlockKey) -> Option<Rc<[u8]>> {
        let b = self.blocks.get(&key).cloned();
        match b {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        b
    }

    pub fn put(&mut self, key: BlockKey, block: Rc<[u8]>) {
        assert_eq!(
            block.len(),
            BLOCK_BYTES,
            "BUG: cached block of {} bytes",
            block.len()
        );
        if !self.blocks.contains(&key) && self.blocks.len() >= self.cap {
            self.blocks.pop_lru();
        }
        self.blocks.put(key, block);
        debug_assert!(self.blocks.len() <= self.cap);
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_block_at_its_size() {
        let mut c = BlockCache::new(2 * BLOCK_BYTES);
        let block = |v: u8| -> Rc<[u8]> { vec![v; BLOCK_BYTES].into() };
        c.put((1, 0), block(1));
        c.put((1, 1), block(2));
        assert_eq!(c.get((1, 0)).unwrap()[0], 1); // (1, 1) is now the oldest
        c.put((2, 0), block(3));
        assert!(c.get((1, 1)).is_none());
        assert_eq!(c.get((1, 0)).unwrap()[0], 1);
        assert_eq!(c.get((2, 0)).unwrap()[0], 3);
        assert_eq!((c.len(), c.hits, c.misses), (2, 3, 1));
        // Putting a block already held evicts nothing.
        c.put((2, 0), block(4));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get((1, 0)).unwrap()[0], 1);
        assert_eq!(c.get((2, 0)).unwrap()[0], 4);
    }

    #[test]
    fn a_huge_cache_allocates_nothing_up_front() {
        // A PiB of blocks: a bounded LruCache would try to allocate its map here.
        let mut c = BlockCache::new(1 << 50);
        c.put((1, 0), vec![7; BLOCK_BYTES].into());
        assert_eq!(c.len(), 1);
    }
}

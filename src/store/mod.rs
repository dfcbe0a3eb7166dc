//! Storage: the data directory (`layout`), the write-ahead log codec (`wal`), tag files (`tagfile`),
//! start-up recovery (`recovery`, plain blocking I/O before any executor runs) and the per-core shard
//! (`shard`: in-memory index, group commit, checkpoints, retention) with its read views (`view`).
//! Formats and the commit/fsync order are described in docs/format.md.
pub mod blockcache;
pub mod device;
pub mod disk;
pub mod dmaread;
pub mod iostats;
pub mod iotrace;
pub mod layout;
pub mod log;
pub mod manifest;
#[cfg(any(test, feature = "testing"))]
pub mod powerloss;
pub mod recent;
pub mod recovery;
pub mod segment;
pub mod shard;
pub mod sidecar;
pub mod tagfile;
pub mod verify;
pub mod view;
pub mod wal;

/// Failure of a storage operation, as a request sees it (`server/routes.rs` chooses its status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("disk full: {0}")]
    NoSpace(String),
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("core unavailable: {0}")]
    Unavailable(String),
    /// A tag file is damaged or lost (the report names the file and offset): that tag is not served; the
    /// others are.
    #[error("{0}")]
    Corrupt(String),
    /// Shed: the core is saturated; the client should retry later (`Retry-After`).
    #[error("overloaded: {0}; retry later")]
    Overloaded(String),
}

impl StoreError {
    pub fn from_io(context: &str, e: &std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            StoreError::NoSpace(format!("{context}: {e}"))
        } else {
            StoreError::Io(format!("{context}: {e}"))
        }
    }
}

/// Block size of every O_DIRECT write: offsets and lengths are multiples of it.
pub const BLOCK: usize = 4096;

/// Whether segment `seg` ended at or before `cutoff`: retention removes it, recovery skips it. The one
/// statement of that rule (in i128: the end of the last segment overflows i64).
pub fn segment_expired(seg: i64, segment_ns: i64, cutoff: i64) -> bool {
    (seg as i128 + 1) * segment_ns as i128 <= cutoff as i128
}

pub fn align_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

pub fn align_down(n: usize) -> usize {
    n / BLOCK * BLOCK
}

#[cfg(test)]
mod tests {
    use super::segment_expired;

    #[test]
    fn a_segment_expires_when_its_end_reaches_the_cutoff() {
        let day = 86_400_000_000_000;
        assert!(!segment_expired(0, day, day - 1));
        assert!(segment_expired(0, day, day));
        assert!(segment_expired(-1, day, 0));
        // The last segment's end lies past i64::MAX: it never expires, and nothing overflows.
        let last = i64::MAX / day;
        assert!(!segment_expired(last, day, i64::MAX));
        // The first segment holding i64::MIN ends after it: not expired at the earliest cutoff.
        assert!(!segment_expired(i64::MIN / day - 1, day, i64::MIN));
    }
}

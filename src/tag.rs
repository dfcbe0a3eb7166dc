//! Tags: validation, the stable hash that decides which core owns a tag, and the file-name encoding.
//!
//! A tag is 1..=19 Unicode scalar values with no control characters. It may contain `/`, `..` or spaces,
//! so it is never used raw as a file name: files are named by the lowercase hex of the tag's UTF-8 bytes
//! (at most 76 bytes -> 152 characters, below every file system's 255-byte name limit).

use xxhash_rust::xxh3::xxh3_64;

pub const TAG_CHARS_MAX: usize = 19;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag is empty")]
    Empty,
    #[error("tag has {0} characters, at most 19 are allowed")]
    TooLong(usize),
    #[error("tag contains a control character")]
    Control,
}

pub fn validate(tag: &str) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty);
    }
    let mut n = 0;
    for c in tag.chars() {
        if c.is_control() {
            return Err(TagError::Control);
        }
        n += 1;
    }
    if n > TAG_CHARS_MAX {
        return Err(TagError::TooLong(n));
    }
    Ok(())
}

/// The stable 64-bit hash of a tag (xxh3 of its UTF-8 bytes). Never `DefaultHasher`: this value decides
/// ownership and must not change between runs or builds.
pub fn hash(tag: &str) -> u64 {
    xxh3_64(tag.as_bytes())
}

/// The shard (core index) owning `hash` when the hash space is split into `shards` equal ranges.
pub fn owner(hash: u64, shards: usize) -> usize {
    assert!(shards > 0, "BUG: zero shards");
    ((hash as u128 * shards as u128) >> 64) as usize
}

/// The half-open hash range `[lo, hi)` owned by `shard`; `hi` is `None` for the last shard (up to 2^64).
pub fn owned_range(shard: usize, shards: usize) -> (u64, Option<u64>) {
    let bound = |k: usize| -> u128 { ((k as u128) << 64).div_ceil(shards as u128) };
    let lo = bound(shard) as u64;
    let hi = if shard + 1 == shards {
        None
    } else {
        Some(bound(shard + 1) as u64)
    };
    (lo, hi)
}

pub fn file_name(tag: &str) -> String {
    let mut s = String::with_capacity(tag.len() * 2);
    for b in tag.as_bytes() {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    s
}

/// Inverse of [`file_name`]; `None` for names that are not a valid encoded tag.
pub fn from_file_name(name: &str) -> Option<String> {
    if name.len() % 2 != 0 || name.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    let tag = String::from_utf8(bytes?).ok()?;
    validate(&tag).ok()?;
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn validation() {
        assert_eq!(validate(""), Err(TagError::Empty));
        assert!(validate("a").is_ok());
        assert!(validate("ééééééééééééééééééé").is_ok()); // 19 chars, 38 bytes
        assert_eq!(validate("12345678901234567890"), Err(TagError::TooLong(20)));
        assert_eq!(validate("a\nb"), Err(TagError::Control));
        assert!(validate("../x y/z").is_ok());
    }

    #[test]
    fn ranges_cover_the_space_and_agree_with_owner() {
        for shards in 1..6 {
            for k in 0..shards {
                let (lo, hi) = owned_range(k, shards);
                assert_eq!(owner(lo, shards), k);
                if let Some(hi) = hi {
                    assert_eq!(owner(hi - 1, shards), k);
                    assert_eq!(owner(hi, shards), k + 1);
                } else {
                    assert_eq!(owner(u64::MAX, shards), k);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn file_name_round_trips(tag in "\\PC{1,19}") {
            prop_assert_eq!(from_file_name(&file_name(&tag)), Some(tag));
        }
    }
}

//! The nesting limit of JSON bodies. sonic-rs skips and visits nested arrays and objects by recursion
//! without a working depth limit (0.3's guard is dropped at once), so 50,000 `[` overflow an executor's
//! stack and abort the process. Every JSON text the engine hands to a parser passes [`check`] first: a
//! loop with constant stack, whatever the input. A valid message nests 2 deep (an array body 3), so the
//! limit only ever refuses hostile or broken input.

/// Deepest nesting of arrays and objects accepted (serde_json's default limit); one more is refused.
pub const MAX_DEPTH: usize = 128;

/// A JSON text nested past [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nesting deeper than {MAX_DEPTH}")]
pub struct TooDeep {
    /// 0-based index of the top-level array's element where the limit was passed (0 for anything else).
    pub element: usize,
}

/// `Err` when arrays and objects in `json` (outside strings) nest deeper than [`MAX_DEPTH`]. Unbalanced or
/// otherwise invalid JSON is the parser's to report: only the depth is judged here. Closers count down
/// without a floor: a parser stops at the first closer that leaves the top-level value, before any later
/// opener, so depth banked below zero never hides nesting a parser would descend into.
pub fn check(json: &[u8]) -> Result<(), TooDeep> {
    // Fewer bytes (openers) than the limit cannot nest past it: this settles every single message.
    if json.len() <= MAX_DEPTH || !exceeds(json) {
        return Ok(());
    }
    let (deepest, element) = scan(json, MAX_DEPTH as i64 + 1);
    debug_assert!(
        deepest > MAX_DEPTH as i64,
        "the block scan and the byte scan disagree"
    );
    Err(TooDeep { element })
}

/// One JSON scanner's state between bytes or blocks.
#[derive(Default)]
struct State {
    depth: i64,
    in_string: bool,
    escaped: bool,
}

impl State {
    /// Advances over one byte; the depth after it.
    #[inline(always)]
    fn byte(&mut self, b: u8) -> i64 {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
        } else {
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => self.depth += 1,
                b']' | b'}' => self.depth -= 1,
                _ => {}
            }
        }
        self.depth
    }
}

/// Whether `json` nests past the limit, 64 bytes at a time: a block without backslashes is judged from
/// bit masks (quotes give the string mask by prefix xor; if the depth at its start plus its openers stays
/// within the limit, it cannot pass it and only its net count matters); any other block byte by byte.
/// Agrees exactly with [`scan`].
fn exceeds(json: &[u8]) -> bool {
    let limit = MAX_DEPTH as i64;
    let mut st = State::default();
    let mut chunks = json.chunks_exact(64);
    let mut block = [b' '; 64];
    let mut tail_done = false;
    loop {
        let b: &[u8; 64] = match chunks.next() {
            Some(c) => c.try_into().unwrap_or(&block),
            None if !tail_done => {
                tail_done = true;
                let rest = chunks.remainder();
                block[..rest.len()].copy_from_slice(rest);
                &block
            }
            None => return false,
        };
        let m = masks(b);
        if m.backslash != 0 || st.escaped {
            for &x in b.iter() {
                if st.byte(x) > limit {
                    return true;
                }
            }
            continue;
        }
        let mut inside = prefix_xor(m.quote);
        if st.in_string {
            inside = !inside;
        }
        let opens = (m.open & !inside).count_ones() as i64;
        if st.depth + opens <= limit {
            let closes = (m.close & !inside).count_ones() as i64;
            st.depth += opens - closes;
            st.in_string = inside >> 63 == 1;
        } else {
            for &x in b.iter() {
                if st.byte(x) > limit {
                    return true;
                }
            }
        }
    }
}

/// The bit masks of one 64-byte block: bit i set when byte i is that character.
struct Masks {
    backslash: u64,
    quote: u64,
    open: u64,
    close: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86_64's baseline; the four unaligned loads read within `block`.
    unsafe {
        let eq = |v: __m128i, c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
        let bits = |m: __m128i| _mm_movemask_epi8(m) as u16 as u64;
        let mut m = Masks {
            backslash: 0,
            quote: 0,
            open: 0,
            close: 0,
        };
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i) as *const __m128i);
            let shift = 16 * i;
            m.backslash |= bits(eq(v, b'\\')) << shift;
            m.quote |= bits(eq(v, b'"')) << shift;
            m.open |= bits(_mm_or_si128(eq(v, b'['), eq(v, b'{'))) << shift;
            m.close |= bits(_mm_or_si128(eq(v, b']'), eq(v, b'}'))) << shift;
        }
        m
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; 64]) -> Masks {
    let mut m = Masks {
        backslash: 0,
        quote: 0,
        open: 0,
        close: 0,
    };
    for (i, &x) in block.iter().enumerate() {
        m.backslash |= ((x == b'\\') as u64) << i;
        m.quote |= ((x == b'"') as u64) << i;
        m.open |= ((x == b'[' || x == b'{') as u64) << i;
        m.close |= ((x == b']' || x == b'}') as u64) << i;
    }
    m
}

/// Bit i = xor of bits 0..=i: set between an opening quote and its closing one.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Byte by byte: the deepest nesting in `json` and the top-level element it was reached in (commas seen
/// at depth 1 before it); stops early once `stop` deep.
fn scan(json: &[u8], stop: i64) -> (i64, usize) {
    let mut st = State::default();
    let (mut deepest, mut element, mut at_deepest) = (0i64, 0usize, 0usize);
    for &b in json {
        let outside = !st.in_string;
        let depth = st.byte(b);
        if outside && b == b',' && depth == 1 {
            element += 1;
        }
        if depth > deepest {
            deepest = depth;
            at_deepest = element;
            if deepest >= stop {
                break;
            }
        }
    }
    (deepest, at_deepest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nest(open: &str, inner: &str, close: &str, depth: usize) -> String {
        format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn at_the_limit_passes_one_more_fails() {
        // (opener, innermost value, closer, levels each opener adds)
        for (open, inner, close, per) in [
            ("[", "", "]", 1),
            ("{\"a\":", "1", "}", 1),
            ("[{\"k\":", "0", "}]", 2),
        ] {
            let at = nest(open, inner, close, MAX_DEPTH / per);
            assert_eq!(check(at.as_bytes()), Ok(()), "{at}");
            let past = nest(open, inner, close, MAX_DEPTH / per + 1);
            assert_eq!(check(past.as_bytes()), Err(TooDeep { element: 0 }));
        }
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let quoted = format!(
            r#"{{"tag":"{}","q":"\"{}"}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(check(quoted.as_bytes()), Ok(()));
        // An escaped quote does not end the string; an escaped backslash before a quote does.
        let escaped = format!(r#"["\"{}"]"#, "[".repeat(500));
        assert_eq!(check(escaped.as_bytes()), Ok(()));
        let ended = format!(r#"["\\"{}"#, "[".repeat(500));
        assert_eq!(check(ended.as_bytes()), Err(TooDeep { element: 0 }));
    }

    #[test]
    fn names_the_top_level_element_that_is_too_deep() {
        let deep = format!("[1,\",[\",{{\"a\":[2,3]}},{}]", "[".repeat(MAX_DEPTH));
        assert_eq!(check(deep.as_bytes()), Err(TooDeep { element: 3 }));
        assert_eq!(
            TooDeep { element: 3 }.to_string(),
            "nesting deeper than 128"
        );
    }

    #[test]
    fn many_shallow_containers_pass() {
        let wide = format!("[{}]", vec!["[1,{\"a\":[2]}]"; 10_000].join(","));
        assert_eq!(check(wide.as_bytes()), Ok(()));
        // Closers past the top level count below zero (no parser reads past the first of them).
        let closers = format!("{}{}", "]".repeat(10), "[".repeat(MAX_DEPTH + 10));
        assert_eq!(check(closers.as_bytes()), Ok(()));
        assert!(check(format!("[]{}", "[".repeat(MAX_DEPTH + 1)).as_bytes()).is_err());
    }

    proptest! {
        // The depth found is the depth built, with strings full of brackets, quotes and escapes inside.
        #[test]
        fn agrees_with_serde_json(depth in 0usize..300, kinds in proptest::collection::vec(0u8..3, 300),
                                  filler in "[a-z\\[\\]{}\"\\\\ ]{0,8}") {
            let mut s = String::new();
            for k in &kinds[..depth] {
                s.push_str(match k { 0 => "[", 1 => "{\"k\":", _ => "[1,{\"s\":" });
            }
            s.push_str(&serde_json::to_string(&filler).unwrap());
            for k in kinds[..depth].iter().rev() {
                s.push_str(match k { 0 => "]", 1 => "}", _ => "}]" });
            }
            let levels: usize = kinds[..depth].iter().map(|&k| if k == 2 { 2 } else { 1 }).sum();
            prop_assert_eq!(check(s.as_bytes()).is_ok(), levels <= MAX_DEPTH, "{}", s);
            prop_assert_eq!(scan(s.as_bytes(), i64::MAX).0, levels as i64, "{}", s);
            // What was built is JSON (serde_json refuses 128 levels and more).
            if levels < 128 {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok(), "{}", s);
            }
        }

        // The block scan decides exactly as the byte scan, across block edges, escapes and strings.
        #[test]
        fn block_scan_agrees_with_byte_scan(body in proptest::collection::vec(
            proptest::sample::select(b"[[[[{{{]]}}\"\"\\ ,a".to_vec()), 0..3000)) {
            let by_byte = scan(&body, MAX_DEPTH as i64 + 1).0 > MAX_DEPTH as i64;
            prop_assert_eq!(exceeds(&body), by_byte);
            prop_assert_eq!(check(&body).is_err(), by_byte);
        }

        // Never panics, and never judges by more than the brackets it saw.
        #[test]
        fn any_bytes(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let openers = body.iter().filter(|&&b| b == b'[' || b == b'{').count();
            if check(&body).is_err() { prop_assert!(openers > MAX_DEPTH); }
        }
    }
}

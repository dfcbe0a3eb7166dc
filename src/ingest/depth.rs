//! The nesting limit of JSON bodies. sonic-rs skips and visits nested arrays and objects by recursion
//! without a working depth limit (0.3's guard is dropped at once), so 50,000 `[` overflow an executor's
//! stack and abort the process. Every JSON text the engine hands to a parser passes [`check`] first: a
//! loop with constant stack, whatever the input. A valid message nests 2 deep (an array body 3), so the
//! limit only ever refuses hostile or broken input.

/// Deepest nesting of arrays and objects accepted (serde_json's default limit); one more is refused.
pub const MAX_DEPTH: usize = 128;

/// Why a JSON text is refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Arrays and objects nested past [`MAX_DEPTH`].
    TooDeep,
    /// A `\u` not followed by 4 hex digits. Where a string ends depends on how a parser reads such an
    /// escape (sonic-rs's skipping takes any 4 bytes after `\u`, a quote included), so no scanner can
    /// promise to see the nesting a parser would; such a text is refused whole, as invalid JSON.
    BadEscape,
}

/// A JSON text refused before any parser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .kind {
    Kind::TooDeep => format!("nesting deeper than {MAX_DEPTH}"),
    Kind::BadEscape => "a \\u escape not followed by 4 hex digits".to_string(),
})]
pub struct Refused {
    pub kind: Kind,
    /// 0-based index of the top-level array's element where it was found (0 for anything else).
    pub element: usize,
}

/// `Err` when arrays and objects in `json` (outside strings) nest deeper than [`MAX_DEPTH`], or when a string
/// holds a `\u` escape without 4 hex digits. Otherwise invalid JSON is the parser's to report. Closers count
/// down without a floor: a parser stops at the first closer that leaves the top-level value, before any
/// later opener, so depth banked below zero never hides nesting a parser would descend into.
pub fn check(json: &[u8]) -> Result<(), Refused> {
    // Fewer bytes (openers) than the limit cannot nest past it: this settles every single message.
    if json.len() <= MAX_DEPTH || exceeds(json).is_none() {
        return Ok(());
    }
    let found = scan(json);
    debug_assert!(found.is_some(), "the block scan and the byte scan disagree");
    found.map_or(Ok(()), Err)
}

/// One JSON scanner's state between bytes or blocks.
#[derive(Default)]
struct State {
    depth: i64,
    in_string: bool,
    escaped: bool,
    /// Hex digits still due after a `\\u`.
    hex_due: u8,
    /// A `\\u` escape went without its hex digits.
    bad_escape: bool,
}

impl State {
    /// Advances over one byte; the depth after it.
    #[inline(always)]
    fn byte(&mut self, b: u8) -> i64 {
        if self.in_string {
            if self.hex_due > 0 {
                self.hex_due -= 1;
                self.bad_escape |= !b.is_ascii_hexdigit();
            } else if self.escaped {
                self.escaped = false;
                if b == b'u' {
                    self.hex_due = 4;
                }
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

    /// What this state refuses, if anything.
    #[inline(always)]
    fn verdict(&self) -> Option<Kind> {
        if self.bad_escape {
            Some(Kind::BadEscape)
        } else if self.depth > MAX_DEPTH as i64 {
            Some(Kind::TooDeep)
        } else {
            None
        }
    }
}

/// What [`check`] refuses in `json`, 64 bytes at a time: a block without backslashes (and not inside an
/// escape) is judged from bit masks (quotes give the string mask by prefix xor; if the depth at its start
/// plus its openers stays within the limit, it cannot pass it and only its net count matters); any other
/// block byte by byte. Agrees exactly with [`scan`].
fn exceeds(json: &[u8]) -> Option<Kind> {
    let limit = MAX_DEPTH as i64;
    let mut st = State::default();
    let chunks = json.chunks_exact(64);
    let by_bytes = |st: &mut State, b: &[u8]| {
        for &x in b {
            st.byte(x);
            if let Some(k) = st.verdict() {
                return Some(k);
            }
        }
        None
    };
    // The last, short block is padded with '0': no structure, and a hex digit, so a `\u` cut off by the end
    // of the text is judged as the byte scan judges it (not at all: the parser refuses truncated text).
    // Padded with spaces, such a text was refused here and passed by the byte scan.
    let rest = chunks.remainder();
    let mut tail = [b'0'; 64];
    tail[..rest.len()].copy_from_slice(rest);
    let last = (!rest.is_empty()).then_some(&tail);
    let full = chunks.map(|c| <&[u8; 64]>::try_from(c).unwrap_or(&tail));
    for b in full.chain(last) {
        let m = masks(b);
        if m.backslash != 0 || st.escaped || st.hex_due > 0 {
            if let Some(k) = by_bytes(&mut st, b) {
                return Some(k);
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
        } else if let Some(k) = by_bytes(&mut st, b) {
            return Some(k);
        }
    }
    None
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

/// Byte by byte: what [`check`] refuses in `json` and the top-level element it is in (commas seen at
/// depth 1 before it).
fn scan(json: &[u8]) -> Option<Refused> {
    let mut st = State::default();
    let mut element = 0usize;
    for &b in json {
        let outside = !st.in_string;
        let depth = st.byte(b);
        if outside && b == b',' && depth == 1 {
            element += 1;
        }
        if let Some(kind) = st.verdict() {
            return Some(Refused { kind, element });
        }
    }
    None
}

/// Byte by byte: the deepest nesting in `json` (for tests).
#[cfg(test)]
fn deepest(json: &[u8]) -> i64 {
    let mut st = State::default();
    json.iter().map(|&b| st.byte(b)).max().unwrap_or(0).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deep(element: usize) -> Refused {
        Refused {
            kind: Kind::TooDeep,
            element,
        }
    }

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
            assert_eq!(check(past.as_bytes()), Err(deep(0)));
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
        assert_eq!(check(ended.as_bytes()), Err(deep(0)));
    }

    #[test]
    fn names_the_top_level_element_that_is_too_deep() {
        let body = format!("[1,\",[\",{{\"a\":[2,3]}},{}]", "[".repeat(MAX_DEPTH));
        assert_eq!(check(body.as_bytes()), Err(deep(3)));
        assert_eq!(deep(3).to_string(), "nesting deeper than 128");
    }

    #[test]
    fn a_u_escape_without_its_hex_digits_is_refused() {
        // sonic-rs's skipping takes `"abc` as the 4 digits of `\u"abc` and ends the string one quote later
        // than a scanner that knows escapes of one character: the nesting after it went unseen.
        let desync = format!(r#"[["\u"abc",{}"#, "[".repeat(100_000));
        let bad = Refused {
            kind: Kind::BadEscape,
            element: 0,
        };
        assert_eq!(check(desync.as_bytes()), Err(bad));
        assert_eq!(bad.to_string(), "a \\u escape not followed by 4 hex digits");
        // Digits split over a block edge, and valid escapes, pass.
        for pad in 55..70 {
            let ok = format!(
                r#"[{{"{}":"\u00e9\uD83D\uDE00\"\\"}},{}1{}]"#,
                "a".repeat(pad),
                "[".repeat(100),
                "]".repeat(100)
            );
            assert_eq!(check(ok.as_bytes()), Ok(()), "{pad}");
            let bad = format!(
                r#"[{{"{}":"\u00g9"}},{}1{}]"#,
                "a".repeat(pad),
                "[".repeat(100),
                "]".repeat(100)
            );
            assert_eq!(
                check(bad.as_bytes()).map_err(|r| r.kind),
                Err(Kind::BadEscape),
                "{pad}"
            );
        }
        // The element is named.
        let third = format!(r#"[1,2,"\u12",{}]"#, " ".repeat(200));
        assert_eq!(
            check(third.as_bytes()),
            Err(Refused {
                kind: Kind::BadEscape,
                element: 2
            })
        );
    }

    #[test]
    fn a_text_cut_inside_an_escape_is_the_parsers_to_refuse() {
        // The last short block was once padded with spaces, read as the missing hex digits: the block
        // scan refused what the byte scan passed (found by the property test below).
        for cut in ["\"\\u", "\"\\u0", "\"\\u00e", "\"\\"] {
            for pad in 130..200 {
                let body = format!("{}{cut}", " ".repeat(pad));
                assert_eq!(exceeds(body.as_bytes()), None, "{pad} {cut}");
                assert_eq!(check(body.as_bytes()), Ok(()), "{pad} {cut}");
            }
        }
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
            prop_assert_eq!(deepest(s.as_bytes()), levels as i64, "{}", s);
            // What was built is JSON (serde_json refuses 128 levels and more).
            if levels < 128 {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok(), "{}", s);
            }
        }

        // The block scan decides exactly as the byte scan, across block edges, escapes and strings.
        #[test]
        fn block_scan_agrees_with_byte_scan(body in proptest::collection::vec(
            proptest::sample::select(b"[[[[{{{]]}}\"\"\\ ,au0f".to_vec()), 0..3000)) {
            let by_byte = scan(&body);
            prop_assert_eq!(exceeds(&body), by_byte.map(|r| r.kind));
            prop_assert_eq!(check(&body).err(), by_byte.filter(|_| body.len() > MAX_DEPTH));
        }

        // Never panics, and never judges by more than the brackets it saw.
        #[test]
        fn any_bytes(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let openers = body.iter().filter(|&&b| b == b'[' || b == b'{').count();
            match check(&body) {
                Err(Refused { kind: Kind::TooDeep, .. }) => prop_assert!(openers > MAX_DEPTH),
                Err(Refused { kind: Kind::BadEscape, .. }) => {
                    prop_assert!(body.windows(2).any(|w| w == b"\\u"))
                }
                Ok(()) => {}
            }
        }
    }
}

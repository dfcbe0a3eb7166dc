//! InfluxDB line protocol bodies (`POST /write`, `POST /api/v2/write`) to messages. One point per line:
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! with the escaping rules of the line-protocol reference: in the measurement `\,` and `\ `; in tag keys, tag
//! values and field keys `\,`, `\=` and `\ `; in string field values `\"` and `\\`; a backslash before any
//! other character is itself. Blank lines and `#` comments are skipped; a trailing `\r` is dropped.
//!
//! A point becomes a message: its tag is the value of the tag key `tag_key`, its 10 values the fields named
//! `fields` (floats, `i` integers and `u` unsigned integers, converted to f64), its time the timestamp in
//! `precision` units (the server's clock when absent). The measurement, other tags and other fields are
//! ignored. Any bad line rejects the whole body with its 1-based line number.

use crate::message::Message;
use crate::record::{Record, VALUES};

/// How a line-protocol body maps to messages.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub tag_key: String,
    /// The field names of values 0..10.
    pub fields: Vec<String>,
}

impl Mapping {
    pub fn new(tag_key: &str, fields: &[String]) -> Result<Mapping, String> {
        if tag_key.is_empty() {
            return Err("the line-protocol tag key must not be empty".into());
        }
        if fields.len() != VALUES {
            return Err(format!(
                "the line-protocol field list needs exactly {VALUES} names, got {}",
                fields.len()
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            if f.is_empty() || fields[..i].contains(f) {
                return Err(format!(
                    "line-protocol field name {f:?} is empty or repeated"
                ));
            }
        }
        Ok(Mapping {
            tag_key: tag_key.to_string(),
            fields: fields.to_vec(),
        })
    }

    /// `tag` and `v0`..`v9`.
    pub fn default_fields() -> Vec<String> {
        (0..VALUES).map(|k| format!("v{k}")).collect()
    }
}

/// Timestamp units (`precision=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
    M,
    H,
}

impl Precision {
    /// Influx 2.x names (`ns`, `us`, `ms`, `s`) and 1.x ones (`n`, `u`, `ms`, `s`, `m`, `h`).
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "ns" | "n" => Precision::Ns,
            "us" | "u" | "µ" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            "m" => Precision::M,
            "h" => Precision::H,
            _ => return None,
        })
    }

    fn ns(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        }
    }
}

/// A rejected body: the 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Decodes every point of `body` into `out`; on an error `out` is left as it was.
pub fn decode(
    body: &[u8],
    map: &Mapping,
    precision: Precision,
    now_ns: i64,
    out: &mut Vec<Message>,
) -> Result<(), LineError> {
    let start = out.len();
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        LineError {
            line,
            reason: "not UTF-8".into(),
        }
    })?;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match point(trimmed, map, precision, now_ns) {
            Ok(m) => out.push(m),
            Err(reason) => {
                out.truncate(start);
                return Err(LineError {
                    line: i + 1,
                    reason,
                });
            }
        }
    }
    if out.len() == start {
        return Err(LineError {
            line: 1,
            reason: "no points in the body".into(),
        });
    }
    Ok(())
}

/// Splits `s` at the first unescaped byte in `stops`, outside double quotes when `quotes`; returns (before,
/// the stop byte or None at the end, after).
fn split_unescaped<'a>(s: &'a str, stops: &[u8], quotes: bool) -> (&'a str, Option<u8>, &'a str) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' if quotes => {
                quoted = !quoted;
                i += 1;
            }
            c if !quoted && stops.contains(&c) => return (&s[..i], Some(c), &s[i + 1..]),
            _ => i += 1,
        }
    }
    (s, None, "")
}

/// Removes the backslash before each of `escapable`.
fn unescape(s: &str, escapable: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if escapable.contains(&n) {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

const KEY_ESCAPES: [char; 4] = [',', '=', ' ', '\\'];

fn point(line: &str, map: &Mapping, precision: Precision, now_ns: i64) -> Result<Message, String> {
    // measurement[,tags] fields [timestamp]
    let (series, stop, rest) = split_unescaped(line, b" ", false);
    if stop.is_none() {
        return Err("missing fields (a point is `measurement[,tags] fields [timestamp]`)".into());
    }
    let (measurement, _, tags) = split_unescaped(series, b",", false);
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tag = None;
    if !tags.is_empty() {
        for pair in SplitUnescaped::new(tags, b',', false) {
            let (k, eq, v) = split_unescaped(pair, b"=", false);
            if eq.is_none() || k.is_empty() || v.is_empty() {
                return Err(format!("bad tag {pair:?} (want key=value)"));
            }
            if unescape(k, &KEY_ESCAPES) == map.tag_key {
                if tag.is_some() {
                    return Err(format!("tag key {:?} given twice", map.tag_key));
                }
                tag = Some(unescape(v, &KEY_ESCAPES));
            }
        }
    }
    let tag = tag.ok_or_else(|| format!("missing tag {:?}", map.tag_key))?;
    crate::tag::validate(&tag).map_err(|e| format!("bad tag {tag:?}: {e}"))?;

    let rest = rest.trim_start_matches(' ');
    let (fields, _, timestamp) = split_unescaped(rest, b" ", true);
    if fields.is_empty() {
        return Err("missing fields".into());
    }
    let mut values = [None; VALUES];
    for pair in SplitUnescaped::new(fields, b',', true) {
        let (k, eq, v) = split_unescaped(pair, b"=", false);
        if eq.is_none() || k.is_empty() || v.is_empty() {
            return Err(format!("bad field {pair:?} (want key=value)"));
        }
        let key = unescape(k, &KEY_ESCAPES);
        let Some(slot) = map.fields.iter().position(|f| *f == key) else {
            // Not one of ours: still has to be a well-formed value.
            field_value(v).map_err(|e| format!("field {key:?}: {e}"))?;
            continue;
        };
        if values[slot].is_some() {
            return Err(format!("field {key:?} given twice"));
        }
        match field_value(v).map_err(|e| format!("field {key:?}: {e}"))? {
            Field::Number(x) => values[slot] = Some(x),
            Field::Other(kind) => {
                return Err(format!("field {key:?} is a {kind}; it must be a number"))
            }
        }
    }
    let mut record = Record {
        time: 0,
        values: [0.0; VALUES],
    };
    for (k, v) in values.iter().enumerate() {
        record.values[k] =
            v.ok_or_else(|| format!("missing field {:?} (value {k})", map.fields[k]))?;
    }
    let timestamp = timestamp.trim_matches(' ');
    record.time = if timestamp.is_empty() {
        now_ns
    } else {
        let t: i64 = timestamp
            .parse()
            .map_err(|_| format!("bad timestamp {timestamp:?} (an integer is expected)"))?;
        t.checked_mul(precision.ns())
            .ok_or_else(|| format!("timestamp {t} overflows int64 nanoseconds"))?
    };
    Ok(Message { tag, record })
}

enum Field {
    Number(f64),
    /// A well-formed value of another type (its name).
    Other(&'static str),
}

fn field_value(v: &str) -> Result<Field, String> {
    if let Some(inner) = v.strip_prefix('"') {
        return match inner.strip_suffix('"') {
            Some(s) if !s.ends_with('\\') || s.ends_with("\\\\") => Ok(Field::Other("string")),
            _ => Err(format!("unterminated string {v:?}")),
        };
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE" => {
            return Ok(Field::Other("boolean"))
        }
        _ => {}
    }
    let number = |s: &str| -> Result<f64, String> {
        let x: f64 = s.parse().map_err(|_| format!("bad number {v:?}"))?;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(format!("{v:?} is not a finite number"))
        }
    };
    if let Some(i) = v.strip_suffix('i') {
        let n: i64 = i.parse().map_err(|_| format!("bad integer {v:?}"))?;
        return Ok(Field::Number(n as f64));
    }
    if let Some(u) = v.strip_suffix('u') {
        let n: u64 = u
            .parse()
            .map_err(|_| format!("bad unsigned integer {v:?}"))?;
        return Ok(Field::Number(n as f64));
    }
    // Rust's f64 parser also takes "inf", "NaN" and "infinity": refused as not finite or not digits.
    if !v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return Err(format!("bad number {v:?}"));
    }
    number(v).map(Field::Number)
}

/// Iterates the parts of `s` between unescaped `sep`s (outside quotes when `quotes`).
struct SplitUnescaped<'a> {
    rest: Option<&'a str>,
    sep: u8,
    quotes: bool,
}

impl<'a> SplitUnescaped<'a> {
    fn new(s: &'a str, sep: u8, quotes: bool) -> Self {
        SplitUnescaped {
            rest: Some(s),
            sep,
            quotes,
        }
    }
}

impl<'a> Iterator for SplitUnescaped<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let (part, stop, after) = split_unescaped(s, &[self.sep], self.quotes);
        self.rest = stop.map(|_| after);
        Some(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map() -> Mapping {
        Mapping::new("tag", &Mapping::default_fields()).unwrap()
    }

    fn fields(v: f64) -> String {
        (0..VALUES)
            .map(|k| format!("v{k}={}", v + k as f64))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn one(line: &str) -> Result<Message, LineError> {
        let mut out = Vec::new();
        decode(line.as_bytes(), &map(), Precision::Ns, 42, &mut out)?;
        assert_eq!(out.len(), 1);
        Ok(out.pop().unwrap())
    }

    #[test]
    fn a_plain_point() {
        let m = one(&format!("m,tag=t0 {} 1700000000000000000", fields(1.5))).unwrap();
        assert_eq!(m.tag, "t0");
        assert_eq!(m.record.time, 1_700_000_000_000_000_000);
        assert_eq!(m.record.values[0], 1.5);
        assert_eq!(m.record.values[9], 10.5);
    }

    #[test]
    fn integers_unsigned_other_tags_and_fields_and_no_timestamp() {
        let line = "cpu,host=a,tag=x,region=eu v0=1i,v1=2u,v2=3,v3=-4.5e1,v4=5.,v5=6,v6=7,v7=8,v8=9,v9=10,s=\"a b,c\",ok=true";
        let m = one(line).unwrap();
        assert_eq!(m.tag, "x");
        assert_eq!(m.record.time, 42, "the server's clock");
        assert_eq!(&m.record.values[..5], &[1.0, 2.0, 3.0, -45.0, 5.0]);
    }

    #[test]
    fn escaping_as_in_the_reference() {
        // Escaped comma and space in the measurement; escaped comma, equals and space in tag keys and
        // values and field keys; a string field holding a quote, a comma, a space and an equals sign.
        let line = format!(
            r#"my\ meas\,ure,tag=a\ b\,c\=d,we\=ird\ key=x str="q\"uo,te =x",{} 7"#,
            fields(0.0)
        );
        let m = one(&line).unwrap();
        assert_eq!(m.tag, "a b,c=d");
        let line = format!(r#"m,tag=t {},field\ with\,escapes=1 7"#, fields(0.0));
        assert_eq!(one(&line).unwrap().record.time, 7);
        // Two backslashes are one literal backslash; a backslash before another character is itself; a
        // string field may end in an escaped backslash.
        let line = format!(r#"m,tag=a\\b\c {},s="ends in \\" 7"#, fields(0.0));
        assert_eq!(one(&line).unwrap().tag, r"a\b\c");
        let map = Mapping::new(
            "host name",
            &(0..10).map(|k| format!("f {k},x")).collect::<Vec<_>>(),
        )
        .unwrap();
        let fs: Vec<String> = (0..10).map(|k| format!(r"f\ {k}\,x={k}")).collect();
        let line = format!(r"m,host\ name=h1 {} 5", fs.join(","));
        let mut out = Vec::new();
        decode(line.as_bytes(), &map, Precision::Ns, 0, &mut out).unwrap();
        assert_eq!(out[0].tag, "h1");
        assert_eq!(out[0].record.values[3], 3.0);
    }

    #[test]
    fn precision_scales_the_timestamp() {
        let body = format!("m,tag=t {} 1700000000", fields(0.0));
        let mut out = Vec::new();
        decode(body.as_bytes(), &map(), Precision::S, 0, &mut out).unwrap();
        assert_eq!(out[0].record.time, 1_700_000_000_000_000_000);
        for (p, f) in [
            ("ns", 1),
            ("us", 1_000),
            ("u", 1_000),
            ("ms", 1_000_000),
            ("h", 3_600_000_000_000),
        ] {
            assert_eq!(Precision::parse(p).unwrap().ns(), f);
        }
        assert!(Precision::parse("d").is_none());
        let body = format!("m,tag=t {} 9223372036854775", fields(0.0));
        let e = decode(body.as_bytes(), &map(), Precision::S, 0, &mut out).unwrap_err();
        assert!(e.reason.contains("overflows"), "{e:?}");
    }

    #[test]
    fn all_or_nothing_with_the_line_number() {
        let good = format!("m,tag=t {} 1", fields(0.0));
        let body = format!("# a comment\n{good}\n\n{good}\r\nm,tag=t v0=1 3\n{good}");
        let mut out = vec![];
        let e = decode(body.as_bytes(), &map(), Precision::Ns, 0, &mut out).unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e.reason.contains("missing field \"v1\""), "{e:?}");
        assert!(out.is_empty());
    }

    #[test]
    fn bad_points_are_refused_with_a_reason() {
        let f = fields(0.0);
        for (line, needle) in [
            ("m,tag=t".to_string(), "missing fields"),
            (format!(",tag=t {f}"), "measurement"),
            (format!("m {f}"), "missing tag"),
            (format!("m,tag=t,tag=u {f}"), "twice"),
            (format!("m,tag= {f}"), "bad tag"),
            (format!("m,tag=waytoolongtagnameforus {f}"), "bad tag"),
            (format!("m,tag=t {f},v0=1"), "twice"),
            (format!("m,tag=t {} x", f), "timestamp"),
            (format!("m,tag=t {} 1.5", f), "timestamp"),
            (format!("m,tag=t {},s=\"open", f), "unterminated"),
            (format!("m,tag=t {},=1", f), "bad field"),
        ] {
            let e = one(&line).expect_err(&line);
            assert!(e.reason.contains(needle), "{line}: {e:?}");
        }
        // Value 3 written in other ways.
        for (v3, needle) in [
            ("\"s\"", "string"),
            ("true", "boolean"),
            ("1e999", "finite"),
            ("NaN", "bad number"),
            ("12x", "bad number"),
            ("1.5i", "bad integer"),
            ("-1u", "unsigned"),
        ] {
            let line = format!("m,tag=t {}", f.replace("v3=3", &format!("v3={v3}")));
            let e = one(&line).expect_err(&line);
            assert!(e.reason.contains(needle), "{line}: {e:?}");
        }
        let mut out = Vec::new();
        assert!(decode(b"\n# only a comment\n", &map(), Precision::Ns, 0, &mut out).is_err());
        assert!(decode(b"m,tag=t v0=\xff", &map(), Precision::Ns, 0, &mut out).is_err());
    }

    proptest! {
        /// Any bytes: no panic, and on success every message is valid.
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            if decode(&body, &map(), Precision::Ns, 0, &mut out).is_ok() {
                prop_assert!(!out.is_empty());
                for m in &out {
                    prop_assert!(crate::tag::validate(&m.tag).is_ok());
                    prop_assert!(m.record.values.iter().all(|v| v.is_finite()));
                }
            }
        }

        /// Tags and values with characters that need escaping survive a round trip.
        #[test]
        fn escaped_tags_round_trip(tag in "[a-z ,=\\\\]{1,19}", v in -1e9f64..1e9, t in any::<i64>()) {
            prop_assume!(crate::tag::validate(&tag).is_ok());
            // A backslash is escaped too: two contiguous backslashes are one literal backslash.
            let esc: String = tag.chars().flat_map(|c| {
                if matches!(c, ',' | '=' | ' ' | '\\') { vec!['\\', c] } else { vec![c] }
            }).collect();
            let line = format!("m,tag={esc} {} {t}", fields(v));
            let m = one(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e:?}")))?;
            prop_assert_eq!(m.tag, tag);
            prop_assert_eq!(m.record.time, t);
            prop_assert_eq!(m.record.values[0], v);
        }
    }
}

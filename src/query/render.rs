//! Renders query answers as JSON into a reused buffer. Hand-written because it is the hot path of `/api`;
//! floats use ryu's shortest round-trip form, so a value read back parses to the same f64 bits.

use crate::query::agg::{Agg, Slot};
use crate::record::Record;

/// Appends `s` as a JSON string literal.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

pub fn int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub fn values(out: &mut Vec<u8>, values: &[f64]) {
    out.push(b'[');
    let mut f = ryu::Buffer::new();
    for (i, v) in values.iter().enumerate() {
        debug_assert!(v.is_finite(), "BUG: non-finite value stored");
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f.format_finite(*v).as_bytes());
    }
    out.push(b']');
}

/// `{"tagName":..,"start":..,"end":..`: the fields every `/api` answer begins with.
fn window_fields(out: &mut Vec<u8>, tag: &str, start: i64, end: i64) {
    out.extend_from_slice(b"{\"tagName\":");
    json_string(out, tag);
    out.extend_from_slice(b",\"start\":");
    int(out, start);
    out.extend_from_slice(b",\"end\":");
    int(out, end);
}

pub fn api_head(out: &mut Vec<u8>, tag: &str, start: i64, end: i64) {
    window_fields(out, tag, start, end);
    out.extend_from_slice(b",\"samples\":[");
}

pub fn api_sample(out: &mut Vec<u8>, first: bool, t: i64, r: Option<&Record>) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"time\":");
    int(out, t);
    out.extend_from_slice(b",\"values\":");
    match r {
        Some(r) => values(out, &r.values),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// The head of an aggregated `/api` answer: as [`api_head`] plus `"agg":[names]`.
pub fn agg_head(out: &mut Vec<u8>, tag: &str, start: i64, end: i64, aggs: &[Agg]) {
    window_fields(out, tag, start, end);
    out.extend_from_slice(b",\"agg\":[");
    for (i, a) in aggs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(out, a.name());
    }
    out.extend_from_slice(b"],\"samples\":[");
}

/// One aggregated sample: `{"time":t,"<agg>":[..]|null,...}`, plus `"values"` when there is one aggregation.
/// `count` is written as integers; a value that left the f64 range (a sum of huge values) is `null` in its
/// slot, as JSON has no infinity.
pub fn agg_sample(out: &mut Vec<u8>, first: bool, t: i64, aggs: &[Agg], slots: &[Slot]) {
    debug_assert_eq!(aggs.len(), slots.len());
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"time\":");
    int(out, t);
    let single = aggs.len() == 1;
    for (i, (a, s)) in aggs.iter().zip(slots).enumerate() {
        let names: &[&str] = if single && i == 0 {
            &[a.name(), "values"]
        } else {
            &[a.name()]
        };
        for name in names {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match s {
                None => out.extend_from_slice(b"null"),
                Some(v) if *a == Agg::Count => {
                    out.push(b'[');
                    for (k, x) in v.iter().enumerate() {
                        if k > 0 {
                            out.push(b',');
                        }
                        int(out, *x as i64);
                    }
                    out.push(b']');
                }
                Some(v) => values_or_null(out, v),
            }
        }
    }
    out.push(b'}');
}

/// As [`values`], with a non-finite value written as `null`.
fn values_or_null(out: &mut Vec<u8>, values: &[f64]) {
    out.push(b'[');
    let mut f = ryu::Buffer::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if v.is_finite() {
            out.extend_from_slice(f.format_finite(*v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
    out.push(b']');
}

pub fn api_tail(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]}");
}

/// One `/export` line: `{"time":..,"values":[..]}\n`.
pub fn export_line(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(b"{\"time\":");
    int(out, r.time);
    out.extend_from_slice(b",\"values\":");
    values(out, &r.values);
    out.extend_from_slice(b"}\n");
}

/// `/tags`: `{"total":n,"tags":[{"tag":..,"records":..},..]}`.
pub fn tags(out: &mut Vec<u8>, tags: &[(String, u64)], total: usize) {
    out.extend_from_slice(b"{\"total\":");
    int(out, total as i64);
    out.extend_from_slice(b",\"tags\":[");
    for (i, (tag, records)) in tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"tag\":");
        json_string(out, tag);
        out.extend_from_slice(b",\"records\":");
        int(out, *records as i64);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// `{"error":reason}` plus, when given, the bulk position.
pub fn error(out: &mut Vec<u8>, reason: &str, position: Option<(&str, usize)>) {
    out.extend_from_slice(b"{\"error\":");
    json_string(out, reason);
    if let Some((key, n)) = position {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        int(out, n as i64);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn values_round_trip(v in proptest::array::uniform10(any::<f64>().prop_filter("finite", |f| f.is_finite()))) {
            let mut out = Vec::new();
            values(&mut out, &v);
            // Parsed with std's exact parser (sonic-rs reads "-0.0" as +0.0).
            let text = std::str::from_utf8(&out[1..out.len() - 1]).unwrap();
            let back: Vec<f64> = text.split(',').map(|x| x.parse().unwrap()).collect();
            prop_assert_eq!(back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn strings_round_trip(s in "\\PC{0,19}|[\\x00-\\x1f\"\\\\]{0,5}") {
            let mut out = Vec::new();
            json_string(&mut out, &s);
            let back: String = sonic_rs::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}

//! Decodes a `POST /save` body into messages: one JSON object, NDJSON (one object per line) or a JSON
//! array of objects. Validation is strict and all-or-nothing: the first bad message rejects the whole
//! body, naming the 1-based line (NDJSON) or 0-based index (array) and the reason, so a rejected request
//! stores nothing. This module is pure: no I/O, no runtime.
//!
//! Invariant: no text reaches sonic-rs (whose skipping recurses without a limit) before
//! [`depth::check`] has bounded its nesting to [`depth::MAX_DEPTH`].

use std::borrow::Cow;

use serde::Deserialize;

use super::depth;
use crate::message::Message;
use crate::record::{Record, VALUES};
use crate::tag;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    time: i64,
    #[serde(borrow)]
    tag: Cow<'a, str>,
    values: [f64; VALUES],
}

/// Where in a bulk body a bad message sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The body is a single message.
    Whole,
    /// 1-based line of an NDJSON body.
    Line(usize),
    /// 0-based index in a JSON array body.
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    pub position: Position,
    pub reason: String,
}

impl DecodeError {
    fn at(position: Position, reason: impl Into<String>) -> Self {
        DecodeError {
            position,
            reason: reason.into(),
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// The slow path for messages holding a zero (see `decode_one`).
#[derive(Deserialize)]
struct ValuesOnly {
    values: [f64; VALUES],
}

/// Only used to explain a failure: the values array whatever its length.
#[derive(Deserialize)]
struct LooseValues {
    values: Vec<f64>,
}

/// Parses and validates one message (a complete JSON text with nothing after it).
pub fn decode_one(json: &[u8]) -> Result<Message, String> {
    depth::check(json).map_err(|e| e.to_string())?;
    decode_shallow(json)
}

/// [`decode_one`] for a text whose nesting [`depth::check`] has already bounded (an array body's element).
fn decode_shallow(json: &[u8]) -> Result<Message, String> {
    // serde would also read the struct from an array, `[time, "tag", [values]]`: not our format.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            "invalid message: not a JSON object {\"time\":..,\"tag\":..,\"values\":[..]}".into(),
        );
    }
    let wire: Wire = sonic_rs::from_slice(json).map_err(|e| {
        match sonic_rs::from_slice::<LooseValues>(json) {
            Ok(l) if l.values.len() != VALUES => {
                format!("values has {} numbers, expected {VALUES}", l.values.len())
            }
            _ => describe(&e),
        }
    })?;
    tag::validate(&wire.tag).map_err(|e| e.to_string())?;
    let mut values = wire.values;
    if values.iter().any(|v| *v == 0.0) {
        // sonic-rs reads "-0.0" as +0.0; serde_json keeps the sign. Zeros are rare, so only they pay.
        if let Ok(exact) = serde_json::from_slice::<ValuesOnly>(json) {
            values = exact.values;
        }
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("values[{i}] is not a finite number"));
    }
    Ok(Message {
        tag: wire.tag.into_owned(),
        record: Record {
            time: wire.time,
            values,
        },
    })
}

/// Longest parser message echoed in an error; a message quoting a 16 MiB string would otherwise double
/// the answer and stall the core while it is written.
const REASON_MAX: usize = 200;

/// sonic-rs messages carry a position suffix and a copy of the input; keep the first line only, cut to
/// [`REASON_MAX`] bytes.
fn describe(e: &sonic_rs::Error) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or("invalid JSON");
    if first.len() <= REASON_MAX {
        return format!("invalid message: {first}");
    }
    let mut cut = REASON_MAX;
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("invalid message: {}...", &first[..cut])
}

/// Decodes a whole body. `out` receives the messages only when the whole body is valid.
pub fn decode_body(body: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
    let start = out.len();
    let result = decode_into(body, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decode_into(body: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(DecodeError::at(
            Position::Whole,
            "empty body: expected a JSON message, NDJSON or a JSON array",
        ));
    };
    if body[first] == b'[' {
        return decode_array(body, out);
    }
    let mut lines = 0;
    let mut line_no = 0;
    for line in body.split(|&b| b == b'\n') {
        line_no += 1;
        if is_blank(line) {
            continue;
        }
        lines += 1;
        match decode_one(line) {
            Ok(m) => out.push(m),
            Err(reason) => {
                // A single pretty-printed object spans lines: accept it whole before blaming a line.
                if lines == 1 {
                    if let Ok(m) = decode_one(body) {
                        out.push(m);
                        return Ok(());
                    }
                }
                return Err(DecodeError::at(Position::Line(line_no), reason));
            }
        }
    }
    Ok(())
}

/// An array body, element by element: memory beyond the messages stays constant however many elements
/// the body holds (16 MiB of `1,` is 8M elements; collecting their raw slices first cost 430 MB before
/// element 0 was refused).
fn decode_array(body: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
    depth::check(body).map_err(|e| DecodeError::at(Position::Index(e.element), e.to_string()))?;
    let mut e: Elements =
        sonic_rs::from_slice(body).map_err(|e| DecodeError::at(Position::Whole, describe(&e)))?;
    if let Some((i, reason)) = e.bad {
        return Err(DecodeError::at(Position::Index(i), reason));
    }
    if e.messages.is_empty() {
        return Err(DecodeError::at(
            Position::Whole,
            "empty array: no message to store",
        ));
    }
    out.append(&mut e.messages);
    Ok(())
}

/// An array body's messages, each decoded as sonic-rs reaches its element (its serde path: the lazy
/// iterator's checked skipping takes over 1.5 MiB of stack for 128 levels in debug builds, this one
/// under 128 KiB).
struct Elements {
    messages: Vec<Message>,
    /// The first bad element: its index and why. The elements after it are only skipped.
    bad: Option<(usize, String)>,
}

impl<'de> Deserialize<'de> for Elements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ElementsVisitor)
    }
}

struct ElementsVisitor;

impl<'de> serde::de::Visitor<'de> for ElementsVisitor {
    type Value = Elements;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of messages")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Elements, A::Error> {
        let mut e = Elements {
            messages: Vec::new(),
            bad: None,
        };
        while e.bad.is_none() {
            let Some(raw) = seq.next_element::<sonic_rs::LazyValue<'de>>()? else {
                return Ok(e);
            };
            match decode_shallow(raw.as_raw_str().as_bytes()) {
                Ok(m) => e.messages.push(m),
                Err(reason) => e.bad = Some((e.messages.len(), reason)),
            }
        }
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: &str = r#"{"time":1,"tag":"t1","values":[1,2,3,4,5,6,7,8,9,10.5]}"#;

    fn check_err(body: &str, position: Position, needle: &str) {
        let mut out = Vec::new();
        let e = decode_body(body.as_bytes(), &mut out).expect_err(body);
        assert_eq!(e.position, position, "{body}: {e:?}");
        assert!(
            e.reason.contains(needle),
            "{body}: {:?} lacks {needle:?}",
            e.reason
        );
        assert!(out.is_empty());
    }

    fn check_ok(body: &str, n: usize) -> Vec<Message> {
        let mut out = Vec::new();
        decode_body(body.as_bytes(), &mut out).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(out.len(), n);
        out
    }

    #[test]
    fn single_bulk_and_array() {
        let m = check_ok(OK, 1);
        assert_eq!(m[0].tag, "t1");
        assert_eq!(m[0].record.values[9], 10.5);
        check_ok(&format!("{OK}\n{OK}\r\n\n{OK}\n"), 3);
        check_ok(&format!("[{OK},{OK}]"), 2);
        check_ok(
            "{\n \"time\": 5,\n \"tag\": \"x\",\n \"values\": [0,0,0,0,0,0,0,0,0,0]\n}\n",
            1,
        );
        let m = check_ok(
            r#"{"time":-9223372036854775808,"tag":"a\/b \u00e9","values":[0,0,0,0,0,0,0,0,0,-1e300]}"#,
            1,
        );
        assert_eq!(m[0].tag, "a/b é");
        assert_eq!(m[0].record.time, i64::MIN);
    }

    #[test]
    fn rejections_name_the_reason_and_place() {
        check_err("", Position::Whole, "empty body");
        check_err("  \n ", Position::Whole, "empty body");
        check_err("[]", Position::Whole, "empty array");
        check_err("{", Position::Line(1), "invalid");
        check_err(
            r#"{"time":1,"tag":"t","values":[1,2,3,4,5,6,7,8,9]}"#,
            Position::Line(1),
            "values has 9",
        );
        check_err(
            r#"{"time":1,"tag":"t","values":[1,2,3,4,5,6,7,8,9,10,11]}"#,
            Position::Line(1),
            "values has 11",
        );
        check_err(
            r#"{"time":1,"tag":"","values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "empty",
        );
        check_err(
            r#"{"time":1,"tag":"12345678901234567890","values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "20 characters",
        );
        check_err(
            r#"{"time":1,"tag":"t","values":[1,2,3,4,5,6,7,8,9,"x"]}"#,
            Position::Line(1),
            "invalid",
        );
        check_err(
            r#"{"time":1.5,"tag":"t","values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "invalid",
        );
        check_err(
            r#"{"time":9223372036854775808,"tag":"t","values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "invalid",
        );
        check_err(
            r#"{"time":1,"tag":"t","values":[1,2,3,4,5,6,7,8,9,1e999]}"#,
            Position::Line(1),
            "finite",
        );
        check_err(
            r#"{"time":1,"tag":"t","values":[1,2,3,4,5,6,7,8,9,10],"x":1}"#,
            Position::Line(1),
            "unknown field",
        );
        check_err(
            r#"{"time":1,"values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "missing field",
        );
        check_err(
            r#"{"time":1,"time":2,"tag":"t","values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "duplicate",
        );
        check_err(&format!("{OK} x"), Position::Line(1), "invalid");
        check_err(&format!("{OK}\n{OK}\nnope\n"), Position::Line(3), "invalid");
        check_err(
            &format!("[{OK},{{\"time\":1}}]"),
            Position::Index(1),
            "missing field",
        );
        check_err(&format!("[{OK}] x"), Position::Whole, "invalid");
        check_err(
            r#"{"time":1,"tag":"a\u0001","values":[1,2,3,4,5,6,7,8,9,10]}"#,
            Position::Line(1),
            "control",
        );
    }

    const VALS: &str = "1,2,3,4,5,6,7,8,9,10";

    /// `inner` placed in one of the places a body can hide nesting; the depth it adds around `inner`.
    fn placed(place: u8, inner: &str) -> (String, usize, Position) {
        match place {
            0 => (inner.to_string(), 0, Position::Line(1)),
            1 => (
                format!(r#"{{"time":1,"tag":"t","values":[{inner}]}}"#),
                2,
                Position::Line(1),
            ),
            2 => (
                format!(r#"{{"x":{inner},"time":1,"tag":"t","values":[{VALS}]}}"#),
                1,
                Position::Line(1),
            ),
            3 => (
                format!("{OK}\n{{\"time\":1,\"tag\":{inner}}}\n"),
                1,
                Position::Line(2),
            ),
            _ => (format!("[{OK},{OK},{inner}]"), 1, Position::Index(2)),
        }
    }

    #[test]
    fn a_message_is_an_object_never_a_positional_array() {
        // serde reads a struct from a sequence too; that form is not the documented one.
        let pos = "[1,\"t\",[1,2,3,4,5,6,7,8,9,10]]";
        check_err(&format!("[{pos}]"), Position::Index(0), "not a JSON object");
        check_err(
            &format!("[{OK}, {pos}]"),
            Position::Index(1),
            "not a JSON object",
        );
        check_err(
            &format!("{OK}\n{pos}\n"),
            Position::Line(2),
            "not a JSON object",
        );
        check_err(
            &format!("[{OK},\"x\"]"),
            Position::Index(1),
            "not a JSON object",
        );
        // Whitespace around elements is still fine, and what follows the array is checked.
        check_ok(&format!("[ \n{OK} ,\t{OK}\n] \n"), 2);
        check_err(&format!("[{OK}] x"), Position::Whole, "trailing");
        check_err(&format!("[{OK}]]"), Position::Whole, "trailing");
        check_err(&format!("[{OK},]"), Position::Whole, "invalid");
        check_err(&format!("[{OK}"), Position::Whole, "EOF");
    }

    #[test]
    fn reasons_do_not_echo_huge_inputs() {
        let huge = format!("[\"{}\"]", "a".repeat(1 << 20));
        let e = decode_body(huge.as_bytes(), &mut Vec::new()).unwrap_err();
        assert!(e.reason.len() < 300, "{} bytes", e.reason.len());
        let key = format!("{{\"time\":\"{}\"}}", "\\\"".repeat(1 << 18));
        let e = decode_body(key.as_bytes(), &mut Vec::new()).unwrap_err();
        assert!(e.reason.len() < 300, "{} bytes", e.reason.len());
    }

    #[test]
    fn deep_nesting_is_refused_before_any_parser_recurses() {
        // A 256 KiB stack: any descent by recursion into a million levels would overflow it.
        let run = || {
            for inner in ["[".repeat(1 << 20), "{\"a\":".repeat(1 << 20)] {
                for place in 0..5 {
                    let (body, _, position) = placed(place, &inner);
                    let mut out = Vec::new();
                    let e = decode_body(body.as_bytes(), &mut out).expect_err("deep");
                    assert_eq!(e.reason, "nesting deeper than 128", "place {place}");
                    let position = match (place, inner.starts_with('[')) {
                        (0, true) => Position::Index(0),
                        _ => position,
                    };
                    assert_eq!(e.position, position, "place {place}");
                    assert!(out.is_empty());
                }
            }
        };
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(run)
            .unwrap()
            .join()
            .expect("decoding deep nesting must not overflow a small stack");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        // Pieces that can make a scanner and a parser disagree on where strings end, then deep nesting: the
        // body is refused, never recursed into on a 256 KiB stack. (Random search rarely builds the exact
        // `["\\u"abc",` desync; depth.rs pins that case.)
        #[test]
        fn no_prefix_hides_deep_nesting_from_the_scanner(pieces in proptest::collection::vec(
            proptest::sample::select(vec!["[", "{\"k\":", "\"", "\\u\"", "abc\"", ",", "\\\\", "\\\""]), 0..8),
            deep_arrays in any::<bool>()) {
            let mut body = pieces.concat();
            body.push_str(&if deep_arrays { "[".repeat(20_000) } else { "{\"a\":".repeat(20_000) });
            let result = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || decode_body(body.as_bytes(), &mut Vec::new()).is_err())
                .unwrap()
                .join();
            prop_assert_eq!(result.ok(), Some(true));
        }
    }

    proptest! {
        // Nesting up to the limit is judged by what it is, one level past it by its depth, wherever it sits.
        #[test]
        fn the_nesting_limit_holds_in_every_place(depth in 0usize..300, place in 0u8..5, arrays in any::<bool>()) {
            let inner = if arrays {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
            };
            let (body, around, _) = placed(place, &inner);
            let mut out = Vec::new();
            let result = decode_body(body.as_bytes(), &mut out);
            let too_deep = depth + around > depth::MAX_DEPTH;
            match result {
                Err(e) => {
                    prop_assert!(out.is_empty());
                    prop_assert_eq!(e.reason.contains("nesting deeper than"), too_deep, "{:?}", e);
                }
                Ok(()) => prop_assert!(false, "nested junk was accepted: {}", body),
            }
        }

        // Every finite f64, written in shortest round-trip form, decodes to the same bits.
        #[test]
        fn any_finite_value_round_trips_exactly(bits in proptest::array::uniform10(any::<u64>())) {
            let values = bits.map(|b| { let f = f64::from_bits(b); if f.is_finite() { f } else { 0.0 } });
            let mut json = String::from(r#"{"time":1,"tag":"t","values":["#);
            let mut buf = ryu::Buffer::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 { json.push(','); }
                json.push_str(buf.format_finite(*v));
            }
            json.push_str("]}");
            let m = decode_one(json.as_bytes()).unwrap();
            for (a, b) in m.record.values.iter().zip(values.iter()) {
                prop_assert_eq!(a.to_bits(), b.to_bits(), "{} in {}", b, json);
            }
        }

        // Any byte string either decodes to messages that re-encode to themselves or fails cleanly.
        #[test]
        fn never_panics_and_failure_stores_nothing(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            if decode_body(&body, &mut out).is_err() { prop_assert!(out.is_empty()); }
        }

        #[test]
        fn valid_messages_round_trip(time in any::<i64>(), tag in "[a-z0-9/ .]{1,19}",
                                     values in proptest::array::uniform10(-1e12f64..1e12)) {
            let json = format!(r#"{{"time":{time},"tag":{},"values":{}}}"#,
                sonic_rs::to_string(&tag).unwrap(), sonic_rs::to_string(&values).unwrap());
            let m = decode_one(json.as_bytes()).unwrap();
            prop_assert_eq!(m.record.time, time);
            prop_assert_eq!(m.tag, tag);
            prop_assert_eq!(m.record.values, values);
        }
    }
}

#[cfg(test)]
mod negative_zero {
    #[test]
    fn negative_zero_keeps_its_sign() {
        let m = super::decode_one(br#"{"time":1,"tag":"t","values":[-0.0,0,0,0,0,0,0,0,0,-0]}"#)
            .unwrap();
        assert_eq!(m.record.values[0].to_bits(), (-0.0f64).to_bits());
    }
}

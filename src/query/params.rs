//! Parses the query strings of `GET /api` and `GET /export`. Strict: a missing, duplicated, unknown or
//! malformed parameter is a 400 with the reason. Percent-escapes are decoded and `+` means a space (the
//! form-encoding convention of curl's `--data-urlencode` and Python's `urlencode`).

pub const SAMPLES_DEFAULT: usize = 1000;
pub const SAMPLES_MAX: usize = 10_000;

use crate::query::agg::Agg;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub tag: String,
    pub start: i64,
    pub end: i64,
    /// Only meaningful for `/api`.
    pub samples: usize,
    /// `agg=`: the aggregations asked for, in the order given; empty: the plain as-of answer (`/api` only).
    pub aggs: Vec<Agg>,
    /// `smooth=N`: moving average over the last N samples; 1 = none (`/api` only).
    pub smooth: usize,
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let byte = b
                    .get(i + 1)
                    .and_then(|&h| hex(h))
                    .zip(b.get(i + 2).and_then(|&l| hex(l)));
                let (h, l) = byte.ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
                out.push(h << 4 | l);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("parameter {s:?} is not UTF-8 once decoded"))
}

/// Parses `tag`, `start`, `end` and (when `allow_samples`: `/api`) `samples`, `agg` and `smooth`.
pub fn parse_window(query: &str, allow_samples: bool) -> Result<Window, String> {
    let (mut tag, mut start, mut end, mut samples) = (None, None, None, None);
    let (mut agg, mut smooth) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        let slot = match k {
            "tag" => &mut tag,
            "start" => &mut start,
            "end" => &mut end,
            "samples" if allow_samples => &mut samples,
            "agg" if allow_samples => &mut agg,
            "smooth" if allow_samples => &mut smooth,
            _ => return Err(format!("unknown parameter {k:?}")),
        };
        if slot.replace(v).is_some() {
            return Err(format!("parameter {k:?} given twice"));
        }
    }
    let tag = tag.ok_or("missing parameter \"tag\"")?;
    crate::tag::validate(&tag).map_err(|e| format!("bad tag: {e}"))?;
    let int = |name: &str, v: Option<String>| -> Result<i64, String> {
        let v = v.ok_or_else(|| format!("missing parameter {name:?}"))?;
        v.parse::<i64>()
            .map_err(|_| format!("parameter {name:?} must be an int64 (ns), got {v:?}"))
    };
    let start = int("start", start)?;
    let end = int("end", end)?;
    if end <= start {
        return Err(format!("end ({end}) must be greater than start ({start})"));
    }
    let samples = match samples {
        None => SAMPLES_DEFAULT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=SAMPLES_MAX).contains(&n) => n,
            _ => {
                return Err(format!(
                    "samples must be an integer in 1..=10000, got {v:?}"
                ))
            }
        },
    };
    let aggs = match agg {
        None => Vec::new(),
        Some(list) => parse_aggs(&list)?,
    };
    let smooth = match smooth {
        None => 1,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=samples).contains(&n) => {
                if aggs.is_empty() {
                    return Err("smooth needs agg (e.g. agg=mean&smooth=10)".into());
                }
                n
            }
            _ => {
                return Err(format!(
                    "smooth must be an integer in 1..={samples} (the number of samples), got {v:?}"
                ))
            }
        },
    };
    Ok(Window {
        tag,
        start,
        end,
        samples,
        aggs,
        smooth,
    })
}

/// `agg=mean` or `agg=min,max,twa`: known names, each at most once.
fn parse_aggs(list: &str) -> Result<Vec<Agg>, String> {
    let mut aggs = Vec::new();
    for name in list.split(',') {
        let a = Agg::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Agg::ALL.iter().map(|a| a.name()).collect();
            format!("unknown aggregation {name:?}; known: {}", known.join(", "))
        })?;
        if aggs.contains(&a) {
            return Err(format!("aggregation {name:?} given twice"));
        }
        aggs.push(a);
    }
    Ok(aggs)
}

/// Tags `/tags` lists by default, and at most.
pub const TAGS_LIMIT_DEFAULT: usize = 1000;
pub const TAGS_LIMIT_MAX: usize = 1_000_000;

/// Parses `/tags`' one optional parameter, `limit`.
pub fn parse_tags_limit(query: &str) -> Result<usize, String> {
    let mut limit = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "limit" {
            return Err(format!("unknown parameter {k:?}"));
        }
        if limit.replace(v).is_some() {
            return Err("parameter \"limit\" given twice".into());
        }
    }
    match limit {
        None => Ok(TAGS_LIMIT_DEFAULT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=TAGS_LIMIT_MAX).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit must be an integer in 1..={TAGS_LIMIT_MAX}, got {v:?}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_limit() {
        assert_eq!(parse_tags_limit(""), Ok(TAGS_LIMIT_DEFAULT));
        assert_eq!(parse_tags_limit("limit=7"), Ok(7));
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=x",
            "limit=1000001",
            "limit=1&limit=2",
            "tag=a",
        ] {
            assert!(parse_tags_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_and_rejects() {
        let w = parse_window("tag=a%2Fb+c&start=-5&end=10", true).unwrap();
        assert_eq!(
            w,
            Window {
                tag: "a/b c".into(),
                start: -5,
                end: 10,
                samples: 1000,
                aggs: vec![],
                smooth: 1,
            }
        );
        let w = parse_window("tag=t&start=0&end=1&agg=twa%2Cmin,max&smooth=3", true).unwrap();
        assert_eq!(w.aggs, vec![Agg::Twa, Agg::Min, Agg::Max]);
        assert_eq!(w.smooth, 3);
        assert_eq!(
            parse_window("tag=t&start=0&end=1&samples=7", true)
                .unwrap()
                .samples,
            7
        );
        for (q, needle) in [
            ("start=0&end=1", "missing parameter \"tag\""),
            ("tag=t&end=1", "missing parameter \"start\""),
            ("tag=t&start=0", "missing parameter \"end\""),
            ("tag=t&start=x&end=1", "int64"),
            ("tag=t&start=0&end=99999999999999999999", "int64"),
            ("tag=t&start=5&end=5", "greater"),
            ("tag=t&start=0&end=1&samples=0", "samples"),
            ("tag=t&start=0&end=1&samples=10001", "samples"),
            ("tag=t&tag=u&start=0&end=1", "twice"),
            ("tag=t&start=0&end=1&x=1", "unknown"),
            ("tag=%zz&start=0&end=1", "percent"),
            ("tag=t&start=0&end=1&agg=median", "unknown aggregation"),
            ("tag=t&start=0&end=1&agg=min,min", "twice"),
            ("tag=t&start=0&end=1&agg=", "unknown aggregation"),
            ("tag=t&start=0&end=1&agg=min&smooth=0", "smooth"),
            ("tag=t&start=0&end=1&samples=5&agg=min&smooth=6", "smooth"),
            ("tag=t&start=0&end=1&smooth=2", "needs agg"),
            ("tag=&start=0&end=1", "empty"),
        ] {
            let e = parse_window(q, true).expect_err(q);
            assert!(e.contains(needle), "{q}: {e}");
        }
        assert!(parse_window("tag=t&start=0&end=1&samples=5", false).is_err());
        assert!(parse_window("tag=t&start=0&end=1&agg=min", false).is_err());
    }
}

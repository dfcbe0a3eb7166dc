//! `GET /api?...&agg=...&smooth=N` against the real binary: the answer's shape (one key per aggregation,
//! `values` too when there is one, `null` for empty periods, integer counts), the figures on a known series
//! spread over two cores' tags and two segments, and the 400s for bad parameters. The aggregations
//! themselves are property-tested against a naive model in `src/query/agg.rs`.
mod common;
use common::*;

const S: i64 = 1_000_000_000;

fn slot(sample: &serde_json::Value, key: &str) -> Option<f64> {
    sample[key].as_array().map(|a| a[0].as_f64().unwrap())
}

#[test]
fn aggregations_answer_per_period_with_the_documented_shape() {
    let d = tempfile::tempdir().unwrap();
    // One-hour segments, so the window below crosses a segment boundary.
    let e = start(d.path(), "0,1", &["--segment", "1h"]);
    let hour = 3600 * S;
    let base = (now_ns() - 3 * hour) / hour * hour + hour; // a segment boundary, two hours ago
    let start_ns = base - 30 * S;
    // Value 7 before the window; then in each 10 s period of the first minute, records at +2 s and +7 s
    // with values 10*i and 10*i + 5 (the window crosses the boundary at +30 s); nothing after +60 s.
    assert_eq!(e.post(&msg("agg", start_ns - 100 * S, 7.0)).status, 204);
    for i in 0..6 {
        let p = start_ns + i * 10 * S;
        assert_eq!(e.post(&msg("agg", p + 2 * S, (10 * i) as f64)).status, 204);
        assert_eq!(
            e.post(&msg("agg", p + 7 * S, (10 * i + 5) as f64)).status,
            204
        );
    }
    let end_ns = start_ns + 100 * S; // 10 samples, 10 s apart
    let q = |extra: &str| {
        let r = e.get(&format!(
            "/api?tag=agg&start={start_ns}&end={end_ns}&samples=10{extra}"
        ));
        assert_eq!(r.status, 200, "{extra}: {}", r.text());
        r.json()
    };

    let j = q("&agg=mean,min,max,count,sum,first,last,twa");
    assert_eq!(
        j["agg"],
        serde_json::json!(["mean", "min", "max", "count", "sum", "first", "last", "twa"])
    );
    let samples = j["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 10);
    for (i, s) in samples.iter().enumerate() {
        assert!(
            s.get("values").is_none(),
            "several aggregations: no values key"
        );
        let lo = 10.0 * i as f64;
        if i < 6 {
            assert_eq!(slot(s, "mean"), Some(lo + 2.5));
            assert_eq!(slot(s, "min"), Some(lo));
            assert_eq!(slot(s, "max"), Some(lo + 5.0));
            assert_eq!(s["count"], serde_json::json!(vec![2; 10]));
            assert_eq!(slot(s, "sum"), Some(2.0 * lo + 5.0));
            assert_eq!(slot(s, "first"), Some(lo));
            assert_eq!(slot(s, "last"), Some(lo + 5.0));
            // Carried-in value for 2 s, lo for 5 s, lo + 5 for 3 s.
            let carried = if i == 0 { 7.0 } else { lo - 5.0 };
            let twa = (carried * 2.0 + lo * 5.0 + (lo + 5.0) * 3.0) / 10.0;
            assert!((slot(s, "twa").unwrap() - twa).abs() < 1e-9, "{s}");
        } else {
            for key in ["mean", "min", "max", "count", "sum", "first"] {
                assert!(s[key].is_null(), "empty period: {key} is null: {s}");
            }
            assert_eq!(slot(s, "last"), Some(55.0));
            assert_eq!(slot(s, "twa"), Some(55.0));
        }
    }

    // One aggregation: also given as `values`, so existing clients keep working.
    let j = q("&agg=max");
    let s0 = &j["samples"][0];
    assert_eq!(s0["max"], s0["values"]);
    assert_eq!(slot(s0, "values"), Some(5.0));
    assert!(j["samples"][9]["values"].is_null());

    // smooth=3: the mean of the last 3 non-null samples.
    let j = q("&agg=min&smooth=3");
    let got: Vec<Option<f64>> = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| slot(s, "min"))
        .collect();
    assert_eq!(
        got,
        vec![
            Some(0.0),
            Some(5.0),
            Some(10.0),
            Some(20.0),
            Some(30.0),
            Some(40.0),
            Some(45.0),
            Some(50.0),
            None,
            None
        ]
    );

    // Without agg the answer is today's as-of shape, without an "agg" key; agg=last gives the same values.
    let j = q("");
    assert!(j.get("agg").is_none());
    assert_eq!(slot(&j["samples"][0], "values"), Some(5.0));
    let last = q("&agg=last");
    for (plain, agg) in j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .zip(last["samples"].as_array().unwrap())
    {
        assert_eq!(plain["values"], agg["last"]);
        assert_eq!(plain["values"], agg["values"]);
    }

    for bad in [
        "&agg=median",
        "&agg=min,min",
        "&agg=min&smooth=11",
        "&smooth=2",
    ] {
        let r = e.get(&format!(
            "/api?tag=agg&start={start_ns}&end={end_ns}&samples=10{bad}"
        ));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().len() > 5);
    }
    let r = e.get(&format!(
        "/export?tag=agg&start={start_ns}&end={end_ns}&agg=min"
    ));
    assert_eq!(r.status, 400, "/export takes no aggregation");
}

#[test]
fn aggregations_read_the_same_under_dma_reads() {
    let d = tempfile::tempdir().unwrap();
    let e = start(
        d.path(),
        "0",
        &["--reads", "dma", "--checkpoint-interval", "100ms"],
    );
    let t0 = now_ns() - 600 * S;
    for i in 0..=50 {
        assert_eq!(e.post(&msg("d", t0 + i * S, i as f64)).status, 204);
    }
    std::thread::sleep(std::time::Duration::from_millis(400)); // checkpointed into the tag file
    let r = e.get(&format!(
        "/api?tag=d&start={t0}&end={}&samples=5&agg=count,mean",
        t0 + 50 * S
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    // Periods of 10 s: (t0, t0+10s] holds records 1..=10, and so on; record 0 is at start, outside.
    for (i, s) in j["samples"].as_array().unwrap().iter().enumerate() {
        assert_eq!(s["count"][0], 10, "{s}");
        assert_eq!(slot(s, "mean"), Some(10.0 * i as f64 + 5.5));
    }
}

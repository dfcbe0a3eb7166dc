//! InfluxDB line protocol on `POST /write` and `POST /api/v2/write` against the real binary: escaping,
//! precision, integers, gzip bodies, all-or-nothing with a line-numbered 400 in Influx's error shape, the
//! configurable tag key and fields, and the official Python clients (`influxdb-client`, `influxdb` from PyPI;
//! `.ci/run` installs them) writing through their normal API.
mod common;
use common::*;

use std::io::Write;
use std::process::Command;

fn lp_fields(v: f64) -> String {
    (0..10)
        .map(|k| format!("v{k}={}", v + k as f64))
        .collect::<Vec<_>>()
        .join(",")
}

fn post(e: &Engine, target: &str, headers: &[&str], body: &[u8]) -> Response {
    e.connect().request("POST", target, headers, body)
}

#[test]
fn points_are_stored_with_escapes_precision_and_integers() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let t = now_ns() / 1_000_000_000 - 60; // seconds
    let body = format!(
        "# comment\nweather,tag=a\\ b\\,c,host=x {} {t}\n\nweather,tag=plain {},v0=5i,extra=\"s p,a=ce\" {}\r\n",
        lp_fields(1.5),
        lp_fields(2.0).replacen("v0=2,", "", 1),
        t + 1
    );
    let r = post(&e, "/write?db=any&precision=s", &[], body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let got = e.export("a b,c");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, t * 1_000_000_000);
    assert_eq!(got[0].1[0], 1.5);
    assert_eq!(got[0].1[9], 10.5);
    let got = e.export("plain");
    assert_eq!(got[0].0, (t + 1) * 1_000_000_000);
    assert_eq!(got[0].1[0], 5.0, "the integer field");
    assert_eq!(got[0].1[1], 3.0);

    // /api/v2/write with ns timestamps and no timestamp (the server's clock).
    let now = now_ns();
    let body = format!(
        "m,tag=v2 {} {now}\nm,tag=v2 {}",
        lp_fields(0.0),
        lp_fields(1.0)
    );
    let r = post(
        &e,
        "/api/v2/write?org=o&bucket=b&precision=ns",
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let got = e.export("v2");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, now);
    assert!(got[1].0 >= now, "stamped on arrival");

    // A gzip body, as Telegraf sends by default.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("m,tag=gz {} {now}", lp_fields(7.0)).as_bytes())
        .unwrap();
    let r = post(
        &e,
        "/api/v2/write?bucket=b",
        &["Content-Encoding: gzip"],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(e.export("gz")[0].1[0], 7.0);
}

#[test]
fn a_bad_line_rejects_the_whole_body_with_its_number() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &[]);
    let now = now_ns();
    let good = format!("m,tag=all {} {now}", lp_fields(1.0));
    let body = format!("{good}\n{good}\nm,tag=all v0=1,v1=\"text\" {now}\n{good}");
    let r = post(&e, "/write", &[], body.as_bytes());
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["code"], "invalid");
    assert_eq!(j["line"], 3);
    let msg = j["message"].as_str().unwrap();
    assert!(
        msg.starts_with("line 3:") && msg.contains("string"),
        "{msg}"
    );
    assert_eq!(j["error"], j["message"]);
    assert!(
        e.export("all").is_empty(),
        "nothing of a rejected body is stored"
    );

    for (target, body, needle) in [
        ("/write?precision=d", good.clone(), "precision"),
        ("/write?nonsense=1", good.clone(), "unknown parameter"),
        (
            "/write",
            format!("m {} {now}", lp_fields(0.0)),
            "missing tag \"tag\"",
        ),
        ("/write", "m,tag=x v0=1".to_string(), "missing field \"v1\""),
        ("/write", "".to_string(), "no points"),
    ] {
        let r = post(&e, target, &[], body.as_bytes());
        assert_eq!(r.status, 400, "{target} {body}");
        assert!(
            r.json()["message"].as_str().unwrap().contains(needle),
            "{}",
            r.text()
        );
    }
    let r = post(&e, "/write", &["Content-Encoding: br"], good.as_bytes());
    assert_eq!(r.status, 415);
    let r = post(&e, "/write", &["Content-Encoding: gzip"], b"not gzip");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("gzip"));
    assert_eq!(e.get("/write").status, 405);
}

#[test]
fn the_tag_key_and_fields_are_configurable() {
    let d = tempfile::tempdir().unwrap();
    let fields = "a,b,c,d,e,f,g,h,i,j";
    let e = start(
        d.path(),
        "0",
        &["--lp-tag-key", "sensor", "--lp-fields", fields],
    );
    let now = now_ns();
    let vals: Vec<String> = fields
        .split(',')
        .enumerate()
        .map(|(k, f)| format!("{f}={k}"))
        .collect();
    let body = format!("m,sensor=s1 {} {now}", vals.join(","));
    let r = post(&e, "/write", &[], body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        e.export("s1")[0].1,
        (0..10).map(f64::from).collect::<Vec<_>>()
    );

    let bad = tempfile::tempdir().unwrap();
    let err = try_start(bad.path(), "0", &["--lp-fields", "a,b"])
        .err()
        .unwrap();
    assert!(err.contains("exactly 10"), "{err}");
}

#[test]
fn the_official_influx_python_clients_write_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &["--retention", "100000d"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/influx_write.py");
    let out = Command::new("python3")
        .args([script, &format!("http://{}", e.addr)])
        .output()
        .expect("python3 (CI installs influxdb-client and influxdb with pip)");
    assert!(
        out.status.success(),
        "the Influx clients failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for tag in ["py2", "py2gz", "py1"] {
        let want: Vec<(i64, Vec<f64>)> = written[tag]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let vals = p[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                (p[0].as_i64().unwrap(), vals)
            })
            .collect();
        assert!(!want.is_empty());
        assert_eq!(
            e.export(tag),
            want,
            "{tag}: read back exactly what the client wrote"
        );
    }
}

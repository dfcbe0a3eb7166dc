//! docs/openapi.json and the engine agree: the described (path, method) pairs are exactly the engine's routes,
//! and the real binary answers each described operation with one of the statuses the description lists.
mod common;
use std::collections::BTreeSet;

use common::*;
use tickcore::http::parse::{Method, ROUTES};

fn openapi() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "get",
        Method::Post => "post",
        Method::Head => "head",
        Method::Other => "other",
    }
}

#[test]
fn described_operations_are_exactly_the_routes() {
    let doc = openapi();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(p, _, m)| (p.to_string(), method_name(*m).to_string()))
        .collect();
    assert_eq!(described, routes);
}

#[test]
fn the_engine_answers_each_described_operation_as_described() {
    let doc = openapi();
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let now = now_ns();
    assert_eq!(e.post(&msg("oa", now, 1.0)).status, 204);
    // A good value for each described query parameter.
    let good = |name: &str| match name {
        "tag" => "oa".to_string(),
        "start" => (now - 1_000_000_000).to_string(),
        "end" => (now + 1).to_string(),
        "samples" | "limit" => "5".to_string(),
        "agg" => "mean,twa".to_string(),
        "smooth" => "2".to_string(),
        other => panic!("no good value known for parameter {other:?}"),
    };
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let documented: BTreeSet<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            // Operations without parameters take no query string and have no bad input.
            let plain = op.get("parameters").is_none() && method == "get";
            let mut c = e.connect();
            let r = match method.as_str() {
                "post" if path.ends_with("/write") => {
                    let fields: Vec<String> = (0..10).map(|k| format!("v{k}={k}")).collect();
                    let line = format!("m,tag=oa {} {now}", fields.join(","));
                    c.request("POST", path, &[], line.as_bytes())
                }
                "post" => c.request("POST", path, &[], msg("oa", now, 2.0).as_bytes()),
                "get" if plain => c.request("GET", path, &[], b""),
                "get" => {
                    let query: Vec<String> = op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| match p["$ref"].as_str() {
                            Some(r) => {
                                let key = r.trim_start_matches("#/components/parameters/");
                                doc["components"]["parameters"][key]["name"]
                                    .as_str()
                                    .unwrap()
                            }
                            None => p["name"].as_str().unwrap(),
                        })
                        .map(|n| format!("{n}={}", good(n)))
                        .collect();
                    c.request("GET", &format!("{path}?{}", query.join("&")), &[], b"")
                }
                other => panic!("undocumented method {other}"),
            };
            assert!(
                documented.contains(&r.status),
                "{method} {path}: {} not among {documented:?}",
                r.status
            );
            assert!(
                r.status < 400,
                "{method} {path} with good input: {}",
                r.text()
            );
            // A bad request gets one of the documented error statuses too.
            if !plain {
                let mut c = e.connect();
                let bad = match method.as_str() {
                    "post" => c.request("POST", path, &[], b"{}"),
                    _ => c.request("GET", &format!("{path}?bogus=1"), &[], b""),
                };
                assert!(
                    documented.contains(&bad.status) && bad.json()["error"].is_string(),
                    "{method} {path} bad input: {} {}",
                    bad.status,
                    bad.text()
                );
            }
        }
    }
}

//! docs/grafana/tickcore.json: a dashboard Grafana can import (the fields it requires, unique panel ids and
//! query refIds, panels laid out on its 24-column grid without overlap) whose queries use only metrics the
//! engine exposes (the names `/metrics` renders).
use std::collections::BTreeSet;

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/tickcore.json"
    ))
    .expect("docs/grafana/tickcore.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Metric names as `/metrics` declares them (`# TYPE` lines; histograms with their _bucket/_sum/_count).
fn exposed() -> BTreeSet<String> {
    let text = tickcore::server::metrics::render(&[Default::default()]);
    let mut names = BTreeSet::new();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut w = l.split(' ');
        let (name, kind) = (w.next().unwrap(), w.next().unwrap());
        names.insert(name.to_string());
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        }
    }
    names
}

#[test]
fn the_dashboard_is_importable_and_queries_real_metrics() {
    let d = dashboard();
    assert!(d["title"].is_string() && d["uid"].is_string());
    assert!(d["schemaVersion"].as_u64().unwrap() >= 30);
    let names = exposed();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        assert!(p["type"].is_string() && p["title"].is_string(), "{p}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panels overlap at ({cx},{cy})");
            }
        }
        let targets = p["targets"].as_array().expect("targets");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "refIds are unique in a panel");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("tickcore_"))
                .collect();
            assert!(!used.is_empty(), "{expr}");
            for m in used {
                assert!(names.contains(m), "{expr}: {m} is not exposed by /metrics");
            }
        }
    }
}

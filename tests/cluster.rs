//! Cluster mode end to end (docs/cluster.md): three real `nats-server` and three engines (`--nats`), each
//! engine on two cores. A write answered 204 on one node carries `X-Tickcore-Position`; a read carrying it on
//! another node sees the write; every node holds every acknowledged record exactly once (`/export`), also
//! after a node was killed with `kill -9` while the others took writes, and restarted on its data directory.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::nats::NatsCluster;
use common::{msg, Engine};

fn engine(dir: &std::path::Path, urls: &str, node: usize) -> Engine {
    common::start(
        dir,
        "0,1",
        &[
            "--nats",
            urls,
            "--node-id",
            &node.to_string(),
            "--io-memory-kib",
            "512",
        ],
    )
}

const TAGS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];

/// `n` records spread over the tags, times from `t0`, as one NDJSON body; with what each tag should hold.
fn body(t0: i64, n: usize, want: &mut BTreeMap<String, Vec<(i64, Vec<f64>)>>) -> String {
    let mut b = String::new();
    for i in 0..n {
        let tag = TAGS[i % TAGS.len()];
        let t = t0 + i as i64;
        let v = t as f64 * 0.5;
        b.push_str(&msg(tag, t, v));
        b.push('\n');
        want.entry(tag.to_string())
            .or_default()
            .push((t, (0..10).map(|j| v + j as f64).collect()));
    }
    b
}

/// Every node's `/export` of every tag equals `want` (sorted by time), waiting up to `within` for followers.
fn assert_all_hold(
    nodes: &[&Engine],
    want: &BTreeMap<String, Vec<(i64, Vec<f64>)>>,
    within: Duration,
) {
    let t0 = Instant::now();
    for (i, e) in nodes.iter().enumerate() {
        for (tag, records) in want {
            let mut records = records.clone();
            records.sort_by_key(|r| r.0);
            loop {
                let mut got = e.export(tag);
                got.sort_by_key(|r| r.0);
                if got == records {
                    break;
                }
                assert!(
                    t0.elapsed() < within,
                    "node {i}, tag {tag}: {} records, {} wanted (first differing: {:?})",
                    got.len(),
                    records.len(),
                    got.iter().zip(&records).find(|(a, b)| a != b)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_write_on_one_node_is_readable_on_every_node_exactly_once_across_a_kill() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Engine> = (0..3).map(|i| engine(dirs[i].path(), &urls, i)).collect();
    let t0 = common::now_ns() - 3_600_000_000_000;
    let mut want = BTreeMap::new();

    // A write on node 0, read on node 1 with its position: visible there at once.
    let r = nodes[0].post(&body(t0, 50, &mut want));
    assert_eq!(r.status, 204, "{}", r.text());
    let pos = r
        .header("x-tickcore-position")
        .expect("a position")
        .to_string();
    assert!(pos.contains(':'), "{pos}");
    let q = format!("/api?tag=alpha&start={}&end={}", t0, t0 + 50);
    let header = format!("X-Tickcore-Position: {pos}");
    let r = nodes[1]
        .connect()
        .request("GET", &q, &[header.as_str()], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // A bad position is refused by name; one naming a stream the cluster lacks too.
    for bad in ["x", "9:1"] {
        let header = format!("X-Tickcore-Position: {bad}");
        let r = nodes[1]
            .connect()
            .request("GET", &q, &[header.as_str()], b"");
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // Writes on every node: each one's records reach the others.
    for (i, n) in nodes.iter().enumerate() {
        let r = n.post(&body(t0 + 1000 * (i as i64 + 1), 40, &mut want));
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let all: Vec<&Engine> = nodes.iter().collect();
    assert_all_hold(&all, &want, Duration::from_secs(20));

    // A retried write (the same records) is stored once on every node.
    let mut again = BTreeMap::new();
    let b = body(t0 + 1000, 40, &mut again);
    assert_eq!(nodes[2].post(&b).status, 204);

    // Node 2 killed; the others take writes; node 2 restarted on its directory catches up.
    let dead = nodes.remove(2);
    dead.kill9();
    for k in 0..5 {
        let r = nodes[k % 2].post(&body(t0 + 10_000 + 100 * k as i64, 60, &mut want));
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let back = engine(dirs[2].path(), &urls, 2);
    nodes.push(back);
    let all: Vec<&Engine> = nodes.iter().collect();
    assert_all_hold(&all, &want, Duration::from_secs(30));
    drop(nats);
}

#[test]
fn equal_times_from_two_nodes_answer_the_same_on_every_node() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Engine> = (0..3).map(|i| engine(dirs[i].path(), &urls, i)).collect();
    let t = common::now_ns() - 60_000_000_000;
    // Two corrections of one (tag, time), accepted by different nodes in either order; -2.0 carries the
    // sign bit, so its bit pattern is the greatest.
    let mut positions = Vec::new();
    for (node, v) in [(0, 1.0), (1, -2.0), (2, 0.5)] {
        let r = nodes[node].post(&msg("tie", t, v));
        assert_eq!(r.status, 204, "{}", r.text());
        positions.push(r.header("x-tickcore-position").unwrap().to_string());
    }
    let header = format!("X-Tickcore-Position: {}", positions.join(","));
    let q = format!("/api?tag=tie&start={}&end={}&samples=1", t - 1, t + 1);
    for (i, n) in nodes.iter().enumerate() {
        let r = n.connect().request("GET", &q, &[header.as_str()], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let first = &v["samples"][0]["values"][0];
        assert_eq!(first.as_f64(), Some(-2.0), "node {i}: {v}");
        assert_eq!(n.export("tie").len(), 3, "node {i}: every record is kept");
    }
    // Aggregations take each group of equal time in ascending order of value bits on every node: `first`
    // is 0.5 (the least bits), `last` and the value `twa` holds -2.0; every node answers the same bytes.
    let q = format!("{q}&agg=first,last,sum,twa");
    let mut bodies = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let r = n.connect().request("GET", &q, &[header.as_str()], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let s = &v["samples"][0];
        assert_eq!(s["first"][0].as_f64(), Some(0.5), "node {i}: {v}");
        assert_eq!(s["last"][0].as_f64(), Some(-2.0), "node {i}: {v}");
        assert_eq!(s["twa"][0].as_f64(), Some(-2.0), "node {i}: {v}");
        bodies.push(r.text());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:#?}");
    drop(nats);
}

#[test]
fn cluster_mode_refuses_what_it_cannot_promise() {
    let dir = tempfile::tempdir().unwrap();
    let url = "nats://127.0.0.1:1";
    for (flags, says) in [
        (&["--durability", "async"][..], "--durability sync"),
        (&["--reads", "dma"][..], "--reads mmap"),
    ] {
        let mut all = vec!["--nats", url];
        all.extend_from_slice(flags);
        let e = common::try_start(dir.path(), "0", &all)
            .err()
            .expect("refused");
        assert!(e.contains(says), "{flags:?}: {e}");
    }
}

#[test]
fn positions_ahead_of_the_streams_apply_them_again_instead_of_skipping() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = engine(a_dir.path(), &urls, 0);
    let t0 = common::now_ns() - 60_000_000_000;
    let mut want = BTreeMap::new();
    assert_eq!(a.post(&body(t0, 30, &mut want)).status, 204);
    // A node whose positions file is not this cluster's (or whose streams were recreated): far ahead.
    std::fs::write(
        b_dir.path().join("CLUSTER-POSITIONS"),
        "tickcore-positions 1\n0 1000000\n1 1000000\n2 1000000\n",
    )
    .unwrap();
    let b = engine(b_dir.path(), &urls, 1);
    assert_all_hold(&[&a, &b], &want, Duration::from_secs(20));
    drop(nats);
}

/// Posts `body` until it is acknowledged (a 503 says it is safe to send again), for 30 s at most.
fn post_until_acked(e: &Engine, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = e.post(body);
        if r.status == 204 {
            return;
        }
        assert!(
            r.status == 503 && Instant::now() < deadline,
            "not acknowledged: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes waiting for JetStream's confirmation are bounded per core (`--max-pending-records`): while every
/// server is paused, one write waits and the next, which would pass the bound, is refused at once with 503
/// and its reason instead of piling up in memory; with the servers back, writes are acknowledged again and
/// nothing acknowledged is lost.
#[test]
fn writes_waiting_for_the_replicated_log_are_bounded() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let e = common::start(
        dir.path(),
        "0",
        &[
            "--nats",
            &urls,
            "--node-id",
            "0",
            "--io-memory-kib",
            "512",
            "--max-pending-records",
            "15",
        ],
    );
    let t0 = common::now_ns() - 60_000_000_000;
    let mut want = BTreeMap::new();
    // Acknowledged once the streams' leaders settle after the start.
    post_until_acked(&e, &body(t0, 10, &mut want));
    for s in &nats.servers {
        s.signal(libc::SIGSTOP);
    }
    // 10 records wait for a PubAck that cannot come (6 attempts of 250 ms at least).
    let mut more = BTreeMap::new();
    let waiting = body(t0 + 1_000, 10, &mut more);
    let mut first = e.connect();
    first.send(
        format!(
            "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{waiting}",
            waiting.len()
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let began = Instant::now();
    let r = e.post(&body(t0 + 2_000, 10, &mut BTreeMap::new()));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("--max-pending-records 15") && r.header("retry-after").is_some(),
        "{}",
        r.text()
    );
    assert!(
        began.elapsed() < Duration::from_millis(500),
        "refused at once, not after waiting: {:?}",
        began.elapsed()
    );
    assert_eq!(
        common::metric_sum(
            &e,
            "tickcore_admission_rejections_total",
            "reason=\"replication_pending\""
        ),
        1.0
    );
    for s in &nats.servers {
        s.signal(libc::SIGCONT);
    }
    let r = first.read_response();
    assert!(matches!(r.status, 204 | 503), "{} {}", r.status, r.text());
    // Back: writes are acknowledged again (the streams may still be electing for a moment). The waiting
    // write, if it was not acknowledged, is sent again, as its answer said is safe: it is stored once. The
    // refused one was never published: it is stored nowhere.
    let again = body(t0 + 3_000, 10, &mut more);
    let resend = if r.status == 204 {
        vec![again]
    } else {
        vec![waiting, again]
    };
    for b in resend {
        post_until_acked(&e, &b);
    }
    for (tag, recs) in more {
        want.entry(tag).or_default().extend(recs);
    }
    assert_all_hold(&[&e], &want, Duration::from_secs(20));
    drop(nats);
}

/// Every node must follow every stream: an engine with another `--cluster-streams` than the streams it
/// finds is refused at start, naming the flag, whether it has more streams than the cluster (the first
/// stream records the count) or fewer (a stream past its last exists).
#[test]
fn nodes_with_another_stream_count_are_refused() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = engine(dirs[0].path(), &urls, 0);
    for (i, streams) in [(1, "4"), (2, "2")] {
        let e = common::try_start(
            dirs[i].path(),
            "0",
            &[
                "--nats",
                &urls,
                "--node-id",
                &i.to_string(),
                "--io-memory-kib",
                "512",
                "--cluster-streams",
                streams,
            ],
        )
        .err()
        .unwrap_or_else(|| panic!("--cluster-streams {streams} was accepted beside 3"));
        assert!(e.contains("--cluster-streams"), "{streams}: {e}");
    }
    // The cluster goes on; the refused engines created nothing it would have to follow.
    let mut want = BTreeMap::new();
    assert_eq!(
        a.post(&body(common::now_ns() - 1_000_000_000, 5, &mut want))
            .status,
        204
    );
    let b = engine(dirs[1].path(), &urls, 1);
    assert_all_hold(&[&a, &b], &want, Duration::from_secs(20));
    drop(nats);
}

/// A stream deleted and created again starts its sequences over; once it has grown past a node's position,
/// only its id tells. Node A follows stream 0 of one NATS cluster up to 2; the streams are made anew (a new
/// NATS cluster) and node B writes 5 batches to the new stream 0; A, restarted on the new cluster with its
/// data, must apply the new stream from its first message, not from 3.
#[test]
fn a_recreated_stream_grown_past_the_position_is_applied_from_its_start() {
    let t0 = common::now_ns() - 60_000_000_000;
    let mut want = BTreeMap::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path, urls: &str, node: &str| {
        common::start(
            dir,
            "0",
            &["--nats", urls, "--node-id", node, "--io-memory-kib", "512"],
        )
    };
    {
        let old = NatsCluster::start(3);
        // One core: node 0 publishes to stream 0 ((node + core) mod 3), as node 3 will.
        let a = start(a_dir.path(), &old.urls(), "0");
        for i in 0..2 {
            assert_eq!(a.post(&body(t0 + i * 100, 10, &mut want)).status, 204);
        }
        let file = a_dir.path().join("CLUSTER-POSITIONS");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Both batches applied (on stream 0 unless a publish failed over), with the streams' ids.
        let applied = |t: &str| -> u64 {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        };
        while !std::fs::read_to_string(&file)
            .is_ok_and(|t| applied(&t) == 2 && t.lines().skip(1).all(|l| l.split(' ').count() == 3))
        {
            assert!(
                Instant::now() < deadline,
                "{:?}",
                std::fs::read_to_string(&file)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(a.terminate(), 0);
    }
    let new = NatsCluster::start(3);
    let b = start(b_dir.path(), &new.urls(), "3");
    for i in 0..5 {
        let r = b.post(&body(t0 + 10_000 + i * 100, 10, &mut want));
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let a = start(a_dir.path(), &new.urls(), "0");
    assert_all_hold(&[&a], &want, Duration::from_secs(20));
    drop(new);
}

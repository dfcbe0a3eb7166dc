//! Cluster mode under faults (docs/cluster.md): three "machines" (network namespaces on a private bridge),
//! each with one `nats-server` and one engine. Writers send NDJSON bodies to all three engines, each moving
//! on to the next engine after 250 ms without an answer (as loadgen's `--failover` does); a reader queries
//! `/api` the same way. Faults are injected one at a time, rotating over the machines: `kill -9` of a NATS
//! server, of an engine, of both; `SIGSTOP` of a server, of an engine; the machine cut off the network.
//! After each fault heals, every engine's `/export` must hold every acknowledged record exactly once,
//! bit-exact. Each fault's line reports: acknowledged so far, lost, duplicated, the longest time without a
//! write acknowledged and without a query answered, and how long the nodes took to converge.
//!
//! CI runs one fault of each kind with 3 s holds; `benches/cluster_faults.sh` runs the long version
//! (`TICKCORE_FAULTS=120 TICKCORE_FAULT_HOLD=10s`). Needs root (namespaces) and `nats-server`.
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::machines::Machines;

const WRITERS: usize = 4;
const TAGS_PER_WRITER: usize = 5;
const PER_BODY: usize = 10;
const FAILOVER: Duration = Duration::from_millis(250);

/// One HTTP/1.1 exchange on a fresh connection, all within `limit`: (status, head, body).
fn exchange(addr: &str, req: &[u8], limit: Duration) -> Option<(u16, String, String)> {
    let sa: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    s.write_all(req).ok()?;
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if t0.elapsed() > limit {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}

fn record_values(w: usize, n: u64) -> [f64; 10] {
    std::array::from_fn(|i| (w as f64) * 1e9 + n as f64 + i as f64 * 0.25)
}

/// Writer `w`'s record number `n`: its tag, time and values. A body holds records `b..b + PER_BODY` of one
/// writer (`b` a multiple of `PER_BODY`), so an acknowledged body is named by (w, b) alone.
fn record(w: usize, t0: i64, n: u64) -> (String, i64, [f64; 10]) {
    let tag = format!("f{w}-{}", n as usize % TAGS_PER_WRITER);
    (tag, t0 + n as i64, record_values(w, n))
}

/// What the writers and the reader saw. Kept small per event: the checks copy it under the lock while the
/// writers and the reader wait for that lock to note their answers, so a copy that grew with the run (a
/// map of every record, as a first version kept) delayed every ack noted during it and showed as gaps
/// growing over a long run.
#[derive(Default)]
struct Log {
    /// Per writer, the first record number of each acknowledged body, in order (a writer sends one body at a
    /// time and retries it until acknowledged, so these only grow).
    acked: Vec<Vec<u64>>,
    /// When each write was acknowledged.
    ack_times: Vec<Instant>,
    query_times: Vec<Instant>,
    /// The greatest acknowledged position per stream (`X-Tickcore-Position`).
    positions: HashMap<usize, u64>,
}

impl Log {
    fn acknowledged(&self) -> usize {
        self.acked.iter().map(Vec::len).sum::<usize>() * PER_BODY
    }
}

/// The longest time without an event of `times` within [from, to].
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut worst = Duration::ZERO;
    for &t in times.iter().filter(|&&t| t >= from && t <= to) {
        worst = worst.max(t - last);
        last = t;
    }
    worst.max(to.saturating_duration_since(last))
}

fn writer(w: usize, addrs: Vec<String>, t0: i64, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    let mut target = w % addrs.len();
    let every = Duration::from_secs_f64(1.0 / env_or("TICKCORE_FAULT_BODIES_PER_S", 50.0));
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let first = n;
        let mut body = String::new();
        for _ in 0..PER_BODY {
            let (tag, time, v) = record(w, t0, n);
            let vals: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
            body.push_str(&format!(
                "{{\"time\":{time},\"tag\":\"{tag}\",\"values\":[{}]}}\n",
                vals.join(",")
            ));
            n += 1;
        }
        let req = format!(
            "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        // The same body to the next engine until one acknowledges it (a retry is stored once).
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match exchange(&addrs[target], req.as_bytes(), FAILOVER) {
                Some((204, head, _)) => {
                    let mut l = log.lock().unwrap();
                    l.ack_times.push(Instant::now());
                    l.acked[w].push(first);
                    let pos = head
                        .lines()
                        .find_map(|h| h.strip_prefix("X-Tickcore-Position: "))
                        .unwrap_or_else(|| panic!("a 204 without a position: {head}"));
                    for p in pos.trim().split(',') {
                        let (k, seq) = p.split_once(':').unwrap();
                        let e = l.positions.entry(k.parse().unwrap()).or_default();
                        *e = (*e).max(seq.parse().unwrap());
                    }
                    break;
                }
                Some((503, _, _)) | Some(_) | None => target = (target + 1) % addrs.len(),
            }
        }
    }
}

fn reader(addrs: Vec<String>, t0: i64, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) {
    let mut target = 0;
    while !stop.load(Ordering::Relaxed) {
        let req = format!(
            "GET /api?tag=f0-0&start={t0}&end={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            t0 + 1_000_000_000
        );
        match exchange(&addrs[target], req.as_bytes(), FAILOVER) {
            Some((200, _, _)) | Some((404, _, _)) => {
                log.lock().unwrap().query_times.push(Instant::now());
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => target = (target + 1) % addrs.len(),
        }
    }
}

/// Every record of `tag` on the engine at `addr`: time -> the values of each copy.
fn export(addr: &str, tag: &str, from: i64) -> Option<HashMap<i64, Vec<[f64; 10]>>> {
    let req = format!(
        "GET /export?tag={tag}&start={from}&end={} HTTP/1.0\r\nHost: t\r\n\r\n",
        i64::MAX
    );
    let (status, _, body) = exchange(addr, req.as_bytes(), Duration::from_secs(30))?;
    let mut out: HashMap<i64, Vec<[f64; 10]>> = HashMap::new();
    if status == 404 {
        return Some(out);
    }
    if status != 200 {
        return None;
    }
    for line in body.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let vals: Vec<f64> = v["values"]
            .as_array()?
            .iter()
            .filter_map(|x| x.as_f64())
            .collect();
        let vals: [f64; 10] = vals.try_into().ok()?;
        out.entry(v["time"].as_i64()?).or_default().push(vals);
    }
    Some(out)
}

/// (lost, duplicated) on the engine at `addr` against writer `w`'s acknowledged bodies `acked[w][from[w]..]`
/// (`t0s[w]` its first time): each of their records present bit for bit, and no time of those tags from the
/// first of them on held twice.
fn check(addr: &str, acked: &[Vec<u64>], t0s: &[i64], from: &[usize]) -> Option<(usize, usize)> {
    let mut lost = 0;
    let mut dup = 0;
    for (w, bodies) in acked.iter().enumerate() {
        let Some(&first) = bodies.get(from[w]) else {
            continue;
        };
        for j in 0..TAGS_PER_WRITER {
            let tag = format!("f{w}-{j}");
            let have = export(addr, &tag, t0s[w] + first as i64)?;
            dup += have.values().filter(|c| c.len() > 1).count();
            for &b in &bodies[from[w]..] {
                for n in (b..b + PER_BODY as u64).filter(|n| *n as usize % TAGS_PER_WRITER == j) {
                    let (_, time, v) = record(w, t0s[w], n);
                    match have.get(&time) {
                        Some(copies)
                            if copies
                                .iter()
                                .any(|c| c.map(f64::to_bits) == v.map(f64::to_bits)) => {}
                        _ => lost += 1,
                    }
                }
            }
        }
    }
    Some((lost, dup))
}

/// The engine's applied sequence of each stream, from `/metrics`.
fn applied(addr: &str) -> Option<HashMap<usize, u64>> {
    let req = "GET /metrics HTTP/1.0\r\nHost: t\r\n\r\n";
    let (status, _, body) = exchange(addr, req.as_bytes(), Duration::from_secs(5))?;
    (status == 200).then(|| {
        body.lines()
            .filter_map(|l| l.strip_prefix("tickcore_cluster_applied_sequence{stream=\""))
            .filter_map(|l| {
                let (k, rest) = l.split_once('"')?;
                Some((
                    k.parse().ok()?,
                    rest.trim_start_matches('}').trim().parse().ok()?,
                ))
            })
            .collect()
    })
}

/// How long until the engine at `addr` applied every stream through `want` (60 s at most).
fn wait_applied(addr: &str, want: &HashMap<usize, u64>) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(have) = applied(addr) {
            if want
                .iter()
                .all(|(k, s)| have.get(k).is_some_and(|h| h >= s))
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// The engine's replication lag p99 (`/metrics`), as written there.
fn lag_p99(addr: &str) -> String {
    let req = "GET /metrics HTTP/1.0\r\nHost: t\r\n\r\n";
    exchange(addr, req.as_bytes(), Duration::from_secs(5))
        .and_then(|(_, _, body)| {
            body.lines()
                .find_map(|l| {
                    l.strip_prefix("tickcore_cluster_apply_lag_seconds{quantile=\"0.99\"} ")
                })
                .map(|v| format!("{v}s"))
        })
        .unwrap_or_else(|| "?".into())
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillNats,
    KillEngine,
    KillBoth,
    StopNats,
    StopEngine,
    Partition,
}

const KINDS: [Fault; 6] = [
    Fault::KillNats,
    Fault::KillEngine,
    Fault::KillBoth,
    Fault::StopNats,
    Fault::StopEngine,
    Fault::Partition,
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn no_acknowledged_record_is_lost_or_duplicated_across_faults() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (network namespaces); CI runs as root");
    }
    let faults: usize = env_or("TICKCORE_FAULTS", KINDS.len());
    let hold = Duration::from_millis(env_or("TICKCORE_FAULT_HOLD_MS", 3000));
    let mut m = Machines::start(3).unwrap_or_else(|e| panic!("machines: {e}"));
    for i in 0..3 {
        let cpus = (i % 2).to_string();
        m.start_engine(i, &cpus, &[])
            .unwrap_or_else(|e| panic!("engine {i}: {e}"));
    }
    let addrs = m.engine_addrs();
    let t0 = common::now_ns() - 3_600_000_000_000;
    let t0s: Vec<i64> = (0..WRITERS)
        .map(|w| t0 + (w as i64) * 1_000_000_000_000)
        .collect();
    let log = Arc::new(Mutex::new(Log {
        acked: vec![Vec::new(); WRITERS],
        ..Log::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (w, &t0) in t0s.iter().enumerate() {
        let (a, l, s) = (addrs.clone(), Arc::clone(&log), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || writer(w, a, t0, l, s)));
    }
    {
        let (a, l, s) = (addrs.clone(), Arc::clone(&log), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || reader(a, t0, l, s)));
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut failures = Vec::new();
    let mut worst_write = Duration::ZERO;
    // Per writer, how many of its acknowledged bodies the checks so far covered.
    let mut checked_from = vec![0usize; WRITERS];
    for f in 0..faults {
        let kind = KINDS[f % KINDS.len()];
        let i = (f / KINDS.len() + f) % 3;
        let start = Instant::now();
        match kind {
            Fault::KillNats => m.machines[i].nats.kill9(),
            Fault::KillEngine => m.machines[i].kill9_engine(),
            Fault::KillBoth => {
                m.machines[i].kill9_engine();
                m.machines[i].nats.kill9();
            }
            Fault::StopNats => m.machines[i].nats.signal(libc::SIGSTOP),
            Fault::StopEngine => m.machines[i].signal_engine(libc::SIGSTOP),
            Fault::Partition => m.machines[i].link(false),
        }
        std::thread::sleep(hold);
        match kind {
            Fault::KillNats => m.machines[i].nats.start(),
            Fault::KillEngine => m
                .start_engine(i, &(i % 2).to_string(), &[])
                .unwrap_or_else(|e| panic!("{e}")),
            Fault::KillBoth => {
                m.machines[i].nats.start();
                m.start_engine(i, &(i % 2).to_string(), &[])
                    .unwrap_or_else(|e| panic!("{e}"))
            }
            Fault::StopNats => m.machines[i].nats.signal(libc::SIGCONT),
            Fault::StopEngine => m.machines[i].signal_engine(libc::SIGCONT),
            Fault::Partition => m.machines[i].link(true),
        }
        let healed = Instant::now();
        m.wait_nats_healthy(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        // Every node applies every stream up to what was acknowledged by now, then holds every record
        // acknowledged since the last check exactly once.
        let (acked, positions) = {
            let l = log.lock().unwrap();
            (l.acked.clone(), l.positions.clone())
        };
        let caught_up = addrs
            .iter()
            .map(|a| wait_applied(a, &positions))
            .collect::<Vec<_>>();
        let mut result = None;
        while healed.elapsed() < Duration::from_secs(60) {
            let r: Vec<Option<(usize, usize)>> = addrs
                .iter()
                .map(|a| check(a, &acked, &t0s, &checked_from))
                .collect();
            let done = r.iter().all(|x| matches!(x, Some((0, _))));
            result = Some(r);
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The next check starts past what this one saw acknowledged (each writer's times only grow).
        let acknowledged = acked.iter().map(Vec::len).sum::<usize>() * PER_BODY;
        for (w, bodies) in acked.iter().enumerate() {
            checked_from[w] = bodies.len();
        }
        let end = Instant::now();
        let (write_gap, query_gap) = {
            let l = log.lock().unwrap();
            (
                longest_gap(&l.ack_times, start, end),
                longest_gap(&l.query_times, start, end),
            )
        };
        worst_write = worst_write.max(write_gap);
        let r = result.unwrap_or_default();
        let lost: usize = r
            .iter()
            .map(|x| x.map_or(usize::MAX / 4, |v| v.0))
            .max()
            .unwrap_or(0);
        let dup: usize = r.iter().map(|x| x.map_or(0, |v| v.1)).max().unwrap_or(0);
        let lags: Vec<String> = addrs.iter().map(|a| lag_p99(a)).collect();
        println!(
            "fault {f:3} {kind:?} on machine {i}: acknowledged {acknowledged}, lost {lost}, duplicated {dup}, longest \
             without a write ack {write_gap:?}, without a query answer {query_gap:?}; after healing each \
             node applied every acknowledged position in {caught_up:?}; replication lag p99 per node {lags:?}"
        );
        if lost > 0 || dup > 0 {
            failures.push(format!(
                "fault {f} {kind:?} on machine {i}: lost {lost}, duplicated {dup}"
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // The full check: every acknowledged record, from the first, exactly once on every node.
    let (acked, acknowledged) = {
        let l = log.lock().unwrap();
        (l.acked.clone(), l.acknowledged())
    };
    for a in &addrs {
        let r = check(a, &acked, &t0s, &[0; WRITERS]);
        println!("full check on {a}: (lost, duplicated) {r:?} of {acknowledged} acknowledged");
        if r != Some((0, 0)) {
            failures.push(format!("full check on {a}: {r:?}"));
        }
    }
    println!("worst write gap over {faults} faults: {worst_write:?}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(acknowledged > 1000, "the writers got few acknowledgements");
}

//! Crash loop: writers on many connections (single messages and NDJSON bodies, many tags, out-of-order times)
//! while the engine is `kill -9`ed at a random moment; then a restart on the same data directory (with
//! another `--cpus` each round) and a check through `/export` that every acknowledged record is there exactly
//! once with its exact values, and that nothing served is corrupt. Records of requests in flight at the kill
//! may be present or not, but at most once and exact.
//!
//! Every message carries a unique id in `values[0]`, so each exported record names what was sent. Prints one
//! line per round and exits 1 if any record was lost, duplicated or corrupt, or if a restart was refused.
//!
//! By default every round restarts on the same port, as a supervisor does, with the writers' connections
//! open at the kill and a few idle keep-alive connections held across the restart (`--listen fixed`);
//! `--listen 127.0.0.1:0` takes a new port each round.
//!
//! `cargo build --release && target/release/crashloop --rounds 100`

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use loadgen::client::Conn;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(
    about = "kill -9 the engine under write load, restart it, and check every acknowledged record"
)]
struct Args {
    /// The engine binary.
    #[arg(long, default_value = "target/release/tickcore")]
    engine: PathBuf,
    /// Data directory kept across rounds (default: a new temporary one, removed at the end).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Writer connections.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    #[arg(long, default_value_t = 300)]
    tags: usize,
    /// Shortest and longest time under load before the kill.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    min_run: Duration,
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    max_run: Duration,
    /// `--cpus` lists the rounds cycle through (restarts with other core counts re-derive ownership).
    #[arg(long, default_value = "0,1;1;0")]
    cpus: String,
    /// Engine `--checkpoint-interval`: short, so kills also land inside checkpoints.
    #[arg(long, default_value = "150ms")]
    checkpoint_interval: String,
    /// Messages per second per writer (0: as fast as the engine answers). Every round re-checks everything
    /// acknowledged since the first, so a long run wants a modest rate.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Extra engine flags, e.g. `--engine-arg=--durability --engine-arg=async` (which acknowledges before the
    /// disk and so must show losses: the tool's own check).
    #[arg(long, allow_hyphen_values = true)]
    engine_arg: Vec<String>,
    /// Where the engine listens: `fixed` (a free port picked once, kept for every restart) or ADDR:PORT
    /// (port 0: a new port each round).
    #[arg(long, default_value = "fixed")]
    listen: String,
}

/// What was sent: the tag index, the time and the values (values[0] is the unique id).
#[derive(Clone, Copy, PartialEq)]
struct Sent {
    tag: u32,
    time: i64,
    values: [f64; 10],
}

fn tag_name(i: u32) -> String {
    // Some tags need escaping in a query string and are not file-name safe.
    match i % 10 {
        0 => format!("a/b c{i}"),
        1 => format!("ü..{i}"),
        _ => format!("t{i}"),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn render(out: &mut Vec<u8>, m: &Sent) {
    out.extend_from_slice(format!("{{\"time\":{},\"tag\":", m.time).as_bytes());
    out.extend_from_slice(
        serde_json::to_string(&tag_name(m.tag))
            .expect("string")
            .as_bytes(),
    );
    out.extend_from_slice(b",\"values\":");
    loadgen::message::render_values(out, &m.values);
    out.push(b'}');
}

struct Engine {
    child: Child,
    addr: String,
}

fn start(a: &Args, listen: &str, dir: &std::path::Path, cpus: &str) -> Result<(Engine, Duration)> {
    let began = Instant::now();
    let mut child = Command::new(&a.engine)
        .args(["--listen", listen, "--report-interval", "0", "--cpus", cpus])
        .args([
            "--checkpoint-interval",
            &a.checkpoint_interval,
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", a.engine.display()))?;
    let mut lines =
        BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?).lines();
    loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow!("the engine on {listen} exited before its ready line"))??;
        if let Some(rest) = line.strip_prefix("ready: listening on http://") {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            std::thread::spawn(move || for _ in lines {});
            return Ok((Engine { child, addr }, began.elapsed()));
        }
    }
}

/// Writes until `stop`; returns (acknowledged, in flight when it stopped or failed).
async fn writer(
    addr: String,
    seed: u64,
    tags: u32,
    rate: u64,
    next_id: Rc<std::cell::Cell<u64>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> (Vec<Sent>, Vec<Sent>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut conn = Conn::to(&addr);
    let (mut acked, mut body) = (Vec::new(), Vec::new());
    let now = loadgen::message::now_ns();
    while !stop.get() {
        let n = if rng.gen_bool(0.5) {
            1
        } else {
            rng.gen_range(2..40)
        };
        let batch: Vec<Sent> = (0..n)
            .map(|_| {
                let id = next_id.get();
                next_id.set(id + 1);
                let mut values = [0.0; 10];
                values[0] = id as f64;
                for v in values.iter_mut().skip(1) {
                    *v = match rng.gen_range(0..8) {
                        0 => -0.0,
                        1 => f64::from_bits(rng.gen::<u64>() >> 2), // tiny and huge finite values
                        _ => (rng.gen::<f64>() - 0.5) * 1e6,
                    };
                }
                Sent {
                    tag: rng.gen_range(0..tags),
                    // Out of order, up to an hour late, sometimes equal times.
                    time: now - rng.gen_range(0..3_600_000_000_000i64) / 1000 * 1000,
                    values,
                }
            })
            .collect();
        body.clear();
        for (i, m) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b'\n');
            }
            render(&mut body, m);
        }
        let began = Instant::now();
        match conn.request("POST", "/save", &body).await {
            Ok((204, _)) => acked.extend_from_slice(&batch),
            Ok((status, b)) => panic!("unexpected {status}: {}", String::from_utf8_lossy(&b)),
            Err(_) => return (acked, batch), // the engine died under this request
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(n as f64 / rate as f64);
            tokio::time::sleep(due.saturating_sub(began.elapsed())).await;
        }
    }
    (acked, Vec::new())
}

/// Every record of every tag, as exported: id -> (count, exact?).
async fn export_all(
    addr: &str,
    tags: u32,
    sent: &HashMap<u64, Sent>,
) -> Result<(HashMap<u64, u32>, usize)> {
    let mut conn = Conn::to(addr);
    let (mut seen, mut corrupt) = (HashMap::new(), 0);
    for tag in 0..tags {
        let target = format!(
            "/export?tag={}&start={}&end={}",
            enc(&tag_name(tag)),
            i64::MIN,
            i64::MAX
        );
        let (status, body) = conn.request("GET", &target, b"").await?;
        if status == 404 {
            continue; // never written
        }
        if status != 200 {
            bail!("export of {} answered {status}", tag_name(tag));
        }
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).context("export line")?;
            let time = v["time"].as_i64().unwrap_or(i64::MIN);
            let values: Vec<f64> = v["values"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default();
            let id = values.first().copied().unwrap_or(-1.0);
            let exact = values.len() == 10
                && id >= 0.0
                && sent.get(&(id as u64)).is_some_and(|s| {
                    s.tag == tag
                        && s.time == time
                        && s.values
                            .iter()
                            .zip(&values)
                            .all(|(a, b)| a.to_bits() == b.to_bits())
                });
            if exact {
                *seen.entry(id as u64).or_insert(0) += 1;
            } else {
                corrupt += 1;
            }
        }
    }
    Ok((seen, corrupt))
}

fn main() -> Result<()> {
    let a = Args::parse();
    let tmp = tempfile_dir()?;
    let dir = a.data_dir.clone().unwrap_or_else(|| tmp.clone());
    let cpus: Vec<&str> = a.cpus.split(';').collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let mut sent: HashMap<u64, Sent> = HashMap::new();
    let mut acked_ids: Vec<u64> = Vec::new();
    let next_id = Rc::new(std::cell::Cell::new(0u64));
    let (mut lost_total, mut dup_total, mut corrupt_total) = (0usize, 0usize, 0usize);
    println!(
        "crashloop: {} rounds, {} writers, {} tags, kill after {:?}..{:?}, data in {}",
        a.rounds,
        a.writers,
        a.tags,
        a.min_run,
        a.max_run,
        dir.display()
    );
    let listen = if a.listen == "fixed" {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        format!("127.0.0.1:{port}")
    } else {
        a.listen.clone()
    };
    let (mut engine, _) = start(&a, &listen, &dir, cpus[0])?;
    for round in 1..=a.rounds {
        // Load, then kill -9 at a random moment.
        let run_for = rng.gen_range(a.min_run..=a.max_run);
        let stop = Rc::new(std::cell::Cell::new(false));
        let local = tokio::task::LocalSet::new();
        let (acked, in_flight, idle) = local.block_on(&rt, async {
            let tasks: Vec<_> = (0..a.writers)
                .map(|w| {
                    tokio::task::spawn_local(writer(
                        engine.addr.clone(),
                        a.seed ^ ((round * 1000 + w) as u64),
                        a.tags as u32,
                        a.rate,
                        Rc::clone(&next_id),
                        Rc::clone(&stop),
                    ))
                })
                .collect();
            tokio::time::sleep(run_for).await;
            // Idle keep-alive connections, held open across the kill and the restart.
            let idle: Vec<_> = (0..4)
                .filter_map(|_| std::net::TcpStream::connect(&engine.addr).ok())
                .collect();
            let _ = engine.child.kill(); // SIGKILL
            let _ = engine.child.wait();
            stop.set(true);
            let (mut acked, mut in_flight) = (Vec::new(), Vec::new());
            for t in tasks {
                let (a, f) = t.await.expect("writer task");
                acked.extend(a);
                in_flight.extend(f);
            }
            (acked, in_flight, idle)
        });
        for m in acked.iter().chain(&in_flight) {
            sent.insert(m.values[0] as u64, *m);
        }
        acked_ids.extend(acked.iter().map(|m| m.values[0] as u64));
        // Restart (another core count) and check everything acknowledged so far.
        let (e, recovery) = start(&a, &listen, &dir, cpus[round % cpus.len()])
            .with_context(|| format!("round {round}: the restart"))?;
        engine = e;
        drop(idle);
        let (seen, corrupt) = rt.block_on(export_all(&engine.addr, a.tags as u32, &sent))?;
        let lost = acked_ids.iter().filter(|id| !seen.contains_key(id)).count();
        let duplicated = seen.values().filter(|&&c| c > 1).count();
        let in_flight_present = in_flight
            .iter()
            .filter(|m| seen.contains_key(&(m.values[0] as u64)))
            .count();
        println!(
            "round {round:>3}: killed after {:>4} ms, acked {:>6} (total {:>8}), in flight {:>3} ({:>3} present), lost {lost}, duplicated {duplicated}, corrupt {corrupt}, restart {:>4} ms on --cpus {} at {}",
            run_for.as_millis(),
            acked.len(),
            acked_ids.len(),
            in_flight.len(),
            in_flight_present,
            recovery.as_millis(),
            cpus[round % cpus.len()],
            engine.addr
        );
        lost_total += lost;
        dup_total += duplicated;
        corrupt_total += corrupt;
    }
    let _ = engine.child.kill();
    let _ = engine.child.wait();
    if a.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    println!("crashloop: {} rounds, {} records acknowledged, lost {lost_total}, duplicated {dup_total}, corrupt {corrupt_total}", a.rounds, acked_ids.len());
    if lost_total + dup_total + corrupt_total > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("tickcore-crashloop-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

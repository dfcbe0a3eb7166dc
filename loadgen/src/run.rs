//! Drives a run on one thread (tokio current-thread runtime): the dispatcher walks the plan and hands each
//! request to the first free connection at its planned time; latency is measured from the planned time, so a
//! slow server shows as latency, never as a lower send rate (no coordinated omission). Query clients and the
//! lag probe run beside it; a reporter prints a block every interval.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Mutex};

use crate::client::{host_port, Conn};
use crate::message::{now_ns, render, Generator};
use crate::schedule::{Plan, Planner};
use crate::stats::{self, Slos, Stats};

pub struct Options {
    /// One engine's base URL, or several comma-separated (a cluster's nodes).
    pub url: String,
    /// With several URLs: how long a request waits for its answer before it goes to the next engine.
    pub failover: Duration,
    pub plan: Plan,
    pub duration: Duration,
    pub connections: usize,
    pub batch: usize,
    pub query_clients: usize,
    pub query_rate: f64,
    pub window: Duration,
    pub probe_interval: Duration,
    pub report_interval: Duration,
    pub slos: Slos,
    pub check: bool,
    pub json: Option<std::path::PathBuf>,
    /// An HTML report with plots (`report.rs`).
    pub report: Option<std::path::PathBuf>,
    /// What a write connection does after a 503 with `Retry-After`.
    pub on_shed: OnShed,
    pub seed: u64,
    /// How many tags, and how popular each is.
    pub tags: crate::dist::Tags,
}

/// What a write connection does after a `503` with `Retry-After` (the engine shed the write: nothing of it
/// was stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnShed {
    /// Pause that long and send the same body again, as a producer that must not lose data does; the write
    /// is counted as resent, not as an error, and its latency counts from its planned time, the pause
    /// included. Given up (an error) once the run is over.
    Resend,
    /// Pause that long, then go on with the next request; the refused one is an error.
    Honor,
    /// Send the next request at once; the refused one is an error.
    Ignore,
}

/// How long past the run's end a shed write is still resent.
const RESEND_GRACE: Duration = Duration::from_secs(5);

struct Ticket {
    planned: Instant,
    body: Vec<u8>,
    msgs: u64,
    /// (tag, time, values) of the messages that `--check` follows.
    tracked: Vec<(usize, i64, [f64; 10])>,
}

/// Tags whose acknowledged records `--check` verifies: the five most popular and a few rarer ones.
fn tracked(tag: usize) -> bool {
    tag < 5 || matches!(tag, 10 | 50 | 99 | 200)
}

type Acked = Rc<RefCell<HashMap<usize, Vec<(i64, [f64; 10])>>>>;

/// Runs the whole load; returns true when every SLO holds (and `--check` found no difference).
pub async fn run(o: Options) -> Result<bool> {
    let addr: Vec<String> = o.url.split(',').map(host_port).collect::<Result<_>>()?;
    let failover = o.failover;
    let stats = Rc::new(RefCell::new(Stats::default()));
    let acked: Acked = Rc::default();
    let start = Instant::now();
    let start_ns = now_ns();
    println!(
        "loadgen: {} -> {} for {:?}, {} connections, batch {}",
        o.plan.describe(),
        o.url,
        o.duration,
        o.connections,
        o.batch
    );
    println!(
        "loadgen: {} tags, {:?}; {} query clients x {}/s over a {:?} window of {}; lag probe every {:?}",
        o.tags.count,
        o.tags.shape,
        o.query_clients,
        o.query_rate,
        o.window,
        match o.tags.shape {
            crate::dist::Shape::Geometric => format!("the top {} tags", o.tags.queried()),
            crate::dist::Shape::Uniform => "random tags".to_string(),
        },
        o.probe_interval
    );
    let local = tokio::task::LocalSet::new();
    let ok = local
        .run_until(async {
            let (tx, rx) = mpsc::channel::<Ticket>(o.connections * 4);
            let rx = Rc::new(Mutex::new(rx));
            let mut senders = Vec::new();
            for c in 0..o.connections {
                let (rx, stats, acked, addr) = (Rc::clone(&rx), Rc::clone(&stats), Rc::clone(&acked), addr.clone());
                let on_shed = o.on_shed;
                let resend_until = start + o.duration + RESEND_GRACE;
                senders.push(tokio::task::spawn_local(async move {
                    let mut conn = Conn::new(&addr, failover).starting_at(c);
                    loop {
                        let t = { rx.lock().await.recv().await };
                        let Some(t) = t else { break };
                        loop {
                            let sent = Instant::now();
                            let r = conn.request("POST", "/save", &t.body).await;
                            let us = t.planned.elapsed().as_micros() as u64;
                            let served_us = sent.elapsed().as_micros() as u64;
                            let shed_pause = match (&r, conn.retry_after) {
                                (Ok((503, _)), Some(p)) if on_shed != OnShed::Ignore => Some(p),
                                _ => None,
                            };
                            // Whether to send the same body again; the stats borrow ends before any pause.
                            let resend = {
                                let mut s = stats.borrow_mut();
                                match r {
                                    Ok((204, _)) => {
                                        s.write(us, served_us, t.msgs);
                                        let mut a = acked.borrow_mut();
                                        for (tag, time, v) in t.tracked {
                                            a.entry(tag).or_default().push((time, v));
                                        }
                                        break;
                                    }
                                    Ok((st, _)) => {
                                        let resend = on_shed == OnShed::Resend
                                            && shed_pause.is_some()
                                            && Instant::now() < resend_until;
                                        if resend {
                                            s.resent();
                                        } else {
                                            s.error(&format!("write_http_{st}"));
                                        }
                                        resend
                                    }
                                    Err(_) => {
                                        s.error("write_io");
                                        break;
                                    }
                                }
                            };
                            if let Some(pause) = shed_pause {
                                tokio::time::sleep(pause).await;
                            }
                            if !resend {
                                break;
                            }
                        }
                    }
                }));
            }
            let stop = Rc::new(std::cell::Cell::new(false));
            let mut side = Vec::new();
            for q in 0..o.query_clients {
                let (stats, stop, addr, window) = (Rc::clone(&stats), Rc::clone(&stop), addr.clone(), o.window);
                let queried = o.tags.queried();
                let every = Duration::from_secs_f64(1.0 / o.query_rate.max(1e-3));
                side.push(tokio::task::spawn_local(async move {
                    let mut conn = Conn::new(&addr, failover).starting_at(q);
                    let mut rng = SmallRng::seed_from_u64(1000 + q as u64);
                    // Spread the clients over the period so their queries do not all coincide.
                    let mut planned = Instant::now() + every.mul_f64(q as f64 / 10.0);
                    while !stop.get() {
                        tokio::time::sleep_until(planned.into()).await;
                        let end = now_ns();
                        let tag = rng.gen_range(0..queried);
                        let target = format!("/api?tag=t{tag}&start={}&end={end}", end - window.as_nanos() as i64);
                        let r = conn.request("GET", &target, b"").await;
                        let us = planned.elapsed().as_micros() as u64;
                        let mut s = stats.borrow_mut();
                        match r {
                            Ok((200, _)) => s.query(us),
                            Ok((404, _)) => s.not_found(),
                            Ok((st, _)) => s.error(&format!("query_http_{st}")),
                            Err(_) => s.error("query_io"),
                        }
                        planned += every;
                    }
                }));
            }
            if !o.probe_interval.is_zero() {
                let (stats, stop, addr, every) = (Rc::clone(&stats), Rc::clone(&stop), addr.clone(), o.probe_interval);
                let resend = o.on_shed == OnShed::Resend;
                side.push(tokio::task::spawn_local(async move {
                    let mut w = Conn::new(&addr, failover);
                    let mut r = Conn::new(&addr, failover);
                    let mut seq = 0u64;
                    while !stop.get() {
                        tokio::time::sleep(every).await;
                        seq += 1;
                        let time = now_ns();
                        let body = format!("{{\"time\":{time},\"tag\":\"loadgen-probe\",\"values\":[{seq},0,0,0,0,0,0,0,0,0]}}");
                        // Lag counts from the first send: a shed and resent probe was that much behind.
                        let sent = Instant::now();
                        let stored = loop {
                            match w.request("POST", "/save", body.as_bytes()).await {
                                Ok((204, _)) => break true,
                                Ok((503, _)) if resend && w.retry_after.is_some() && !stop.get() => {
                                    stats.borrow_mut().resent();
                                    tokio::time::sleep(w.retry_after.unwrap_or_default()).await;
                                }
                                Ok((st, _)) => {
                                    stats.borrow_mut().error(&format!("probe_http_{st}"));
                                    break false;
                                }
                                Err(_) => {
                                    stats.borrow_mut().error("probe_io");
                                    break false;
                                }
                            }
                        };
                        if !stored {
                            continue;
                        }
                        let acked = Instant::now();
                        let target = format!("/export?tag=loadgen-probe&start={time}&end={}", time + 1);
                        loop {
                            match r.request("GET", &target, b"").await {
                                Ok((200, b)) if !b.is_empty() => break,
                                Ok(_) | Err(_) if acked.elapsed() > Duration::from_secs(60) => {
                                    stats.borrow_mut().error("probe_never_visible");
                                    break;
                                }
                                _ => tokio::time::sleep(Duration::from_millis(1)).await,
                            }
                        }
                        let seen = Instant::now();
                        stats.borrow_mut().lag((seen - acked).as_micros() as u64, (seen - sent).as_micros() as u64);
                    }
                }));
            }
            {
                let (stats, stop, every, plan, run_for) = (Rc::clone(&stats), Rc::clone(&stop), o.report_interval, o.plan.clone(), o.duration.as_secs_f64());
                side.push(tokio::task::spawn_local(async move {
                    let mut last = Instant::now();
                    while !stop.get() {
                        tokio::time::sleep(every).await;
                        let secs = last.elapsed().as_secs_f64();
                        let (a, b) = ((last - start).as_secs_f64(), start.elapsed().as_secs_f64());
                        last = Instant::now();
                        let mut s = stats.borrow_mut();
                        s.interval.scheduled_msgs = plan.messages_between(a.min(run_for), b.min(run_for));
                        print!("{}", stats::block(start.elapsed().as_secs_f64(), secs, &s.interval));
                        let point = crate::report::Point::of(b, secs, &s.interval);
                        s.points.push(point);
                        s.interval = Default::default();
                    }
                }));
            }

            // The dispatcher: the plan, a body per request, handed out at its planned time.
            let mut gen = Generator::new(o.seed, o.tags);
            let mut body = Vec::with_capacity(o.batch * 200);
            // When a send last had to wait for a free connection (the server was behind), and until when.
            let mut unblocked_at = start;
            for at in Planner::new(o.plan.clone(), o.batch, o.duration) {
                let planned = start + Duration::from_secs_f64(at);
                if planned > Instant::now() {
                    tokio::time::sleep_until(planned.into()).await;
                }
                let now = now_ns();
                body.clear();
                let mut tracked_msgs = Vec::new();
                for i in 0..o.batch {
                    let m = gen.next(now);
                    if i > 0 {
                        body.push(b'\n');
                    }
                    render(&mut body, &m);
                    if o.check && tracked(m.tag) {
                        tracked_msgs.push((m.tag, m.time, m.values));
                    }
                }
                // Lateness after a wait for a free connection is the server's (all connections busy and the
                // queue full): it shows as latency. Only lateness without such a wait is this generator's.
                let behind = Instant::now().saturating_duration_since(planned.max(unblocked_at)).as_micros() as u64;
                stats.borrow_mut().planned(o.batch as u64, behind);
                let t = Ticket { planned, body: body.clone(), msgs: o.batch as u64, tracked: tracked_msgs };
                match tx.try_send(t) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(t)) => {
                        stats.borrow_mut().saturated();
                        if tx.send(t).await.is_err() {
                            break;
                        }
                        unblocked_at = Instant::now();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            drop(tx);
            for s in senders {
                let _ = s.await;
            }
            // A plan with no writes (`--rate 0`: a query-only run) still runs for the whole duration.
            tokio::time::sleep_until((start + o.duration).into()).await;
            stop.set(true);
            // Side tasks may be asleep for a whole interval: stop them where they are.
            for s in side {
                s.abort();
                let _ = s.await;
            }
            let secs = start.elapsed().as_secs_f64();
            stats.borrow_mut().total.scheduled_msgs = o.plan.messages_between(0.0, o.duration.as_secs_f64());
            let s = stats.borrow();
            let f = &s.total;
            println!("\n== summary over {secs:.1}s ==");
            print!("{}", stats::block(secs, secs, f));
            for (name, h) in [("write latency", &f.write_us), ("write latency from send", &f.write_sent_us), ("query latency", &f.query_us), ("lag ack->visible", &f.lag_ack_us), ("lag send->visible", &f.lag_send_us)] {
                println!("\n{}", stats::table(name, h));
            }
            let verdicts = stats::verdicts(f, &o.slos);
            let mut ok = true;
            for v in &verdicts {
                println!("SLO {:<24} {:>12}  limit {:<12} {}", v.name, v.measured, v.limit, if v.pass { "PASS" } else { "FAIL" });
                ok &= v.pass;
            }
            let achieved = f.acked_msgs as f64 / secs;
            let run_secs = o.duration.as_secs_f64();
            println!(
                "rate: the schedule asked {:.0} msg/s over {run_secs:.0}s; acknowledged {achieved:.0} msg/s over {secs:.1}s ({} of {:.0} messages)",
                f.scheduled_msgs / run_secs,
                f.acked_msgs,
                f.scheduled_msgs
            );
            if f.generator_behind_us > 10_000 {
                println!("note: the generator fell behind its plan by up to {} ms: figures are limited by this client", stats::ms(f.generator_behind_us));
            }
            if let Some(path) = &o.report {
                let title = format!("loadgen: {} -> {}, {:.0} s", o.plan.describe(), o.url, secs);
                let page = crate::report::html(&title, &s.points, f, &o.slos, &verdicts);
                match std::fs::write(path, page) {
                    Ok(()) => println!("report: {}", path.display()),
                    Err(e) => eprintln!("loadgen: writing {}: {e}", path.display()),
                }
            }
            let mut summary = stats::summary_json(f, secs, &verdicts);
            drop(s);
            if o.check {
                let diffs = check(&addr, failover, &acked.borrow(), start_ns).await;
                println!("check: {}", if diffs.is_empty() { "every acknowledged record of the followed tags reads back exactly".to_string() } else { format!("{} differences", diffs.len()) });
                for d in diffs.iter().take(20) {
                    println!("  {d}");
                }
                summary["check_differences"] = serde_json::json!(diffs);
                ok &= diffs.is_empty();
            }
            if let Some(path) = &o.json {
                if let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&summary).unwrap_or_default()) {
                    eprintln!("loadgen: writing {}: {e}", path.display());
                }
            }
            ok
        })
        .await;
    Ok(ok)
}

/// Reads back the followed tags over the run's time range and compares with what was acknowledged.
async fn check(
    addr: &[String],
    failover: std::time::Duration,
    acked: &HashMap<usize, Vec<(i64, [f64; 10])>>,
    start_ns: i64,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut conn = Conn::new(addr, failover);
    let mut tags: Vec<_> = acked.keys().copied().collect();
    tags.sort_unstable();
    for tag in tags {
        let want = &acked[&tag];
        let end = want.iter().map(|x| x.0).max().unwrap_or(start_ns) + 1;
        let target = format!("/export?tag=t{tag}&start={start_ns}&end={end}");
        let got: Vec<(i64, Vec<f64>)> = match conn.request("GET", &target, b"").await {
            Ok((200, body)) => String::from_utf8_lossy(&body)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| {
                    let t = v["time"].as_i64().unwrap_or(i64::MIN);
                    let vals = v["values"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                        .unwrap_or_default();
                    (t, vals)
                })
                .collect(),
            Ok((st, _)) => {
                diffs.push(format!("t{tag}: /export answered {st}"));
                continue;
            }
            Err(e) => {
                diffs.push(format!("t{tag}: /export failed: {e}"));
                continue;
            }
        };
        let mut want = want.clone();
        want.sort_by_key(|x| x.0);
        // Other writers may have added records in the range; every acknowledged one must be there exactly.
        let mut it = got.iter().peekable();
        let mut missing = 0;
        for (t, v) in &want {
            while it.peek().is_some_and(|(gt, _)| gt < t) {
                it.next();
            }
            match it.peek() {
                Some((gt, gv)) if gt == t && gv.as_slice() == v.as_slice() => {
                    it.next();
                }
                Some((gt, gv)) if gt == t => diffs.push(format!(
                    "t{tag} time {t}: values {gv:?}, acknowledged {v:?}"
                )),
                _ => missing += 1,
            }
        }
        if missing > 0 {
            diffs.push(format!(
                "t{tag}: {missing} of {} acknowledged records missing",
                want.len()
            ));
        }
    }
    diffs
}

//! The publish-only JetStream ceiling (issue 18's reference): what the cluster's replicated log takes on this
//! machine with nothing of the engine around it. Publishes batches of BATCH records (the engine's replicated
//! batch format, `src/cluster/batch.rs`) through the engine's own link (`src/cluster/link.rs`: streams R3, file
//! storage, failover), INFLIGHT at a time, for SECS seconds, then prints records/s and the PubAck latency.
//! `benches/jetstream_ceiling.sh` starts the servers. Usage: `jetstream-ceiling URLS BATCH INFLIGHT SECS`.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use tickcore::cluster::batch::Batcher;
use tickcore::cluster::link::{Link, LinkConfig};
use tickcore::record::Record;

fn arg(i: usize, name: &str) -> String {
    std::env::args().nth(i).unwrap_or_else(|| {
        eprintln!("usage: jetstream-ceiling URLS BATCH INFLIGHT SECS (missing {name})");
        std::process::exit(2)
    })
}

fn num(i: usize, name: &str) -> u64 {
    arg(i, name).parse().unwrap_or_else(|e| {
        eprintln!("{name}: {e}");
        std::process::exit(2)
    })
}

fn main() {
    let urls = arg(1, "URLS");
    let (batch, inflight, secs) = (num(2, "BATCH"), num(3, "INFLIGHT"), num(4, "SECS"));
    let link = Link::start(LinkConfig::new(&urls), None).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    // One "core" per stream, as the engine's cores spread over the streams; 1 MiB is NATS's max_payload.
    let mut batchers: Vec<Batcher> = (0..3)
        .map(|core| Batcher::new(1, std::process::id() as u64, core, 1 << 20).expect("1 MiB"))
        .collect();
    let tags: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut records, mut failed, mut failovers, mut n) = (0u64, 0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    futures::executor::block_on(async {
        let mut pending = FuturesUnordered::new();
        loop {
            while Instant::now() < end && (pending.len() as u64) < inflight {
                let core = (n % 3) as usize;
                let recs: Vec<Record> = (0..batch)
                    .map(|i| Record {
                        time: (n * batch + i) as i64,
                        values: [i as f64; 10],
                    })
                    .collect();
                let entries = recs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (tags[i % tags.len()].as_str(), r));
                for (id, bytes) in batchers[core].encode(n as i64, entries) {
                    let sent = Instant::now();
                    let count = batch;
                    let f = link.publish(core, id.msg_id(), bytes);
                    pending.push(async move { (f.await, sent.elapsed(), count) });
                }
                n += 1;
            }
            let Some((r, took, count)) = pending.next().await else {
                break;
            };
            hist.record(took.as_micros() as u64).ok();
            match r {
                Ok(a) => {
                    records += count;
                    failovers += a.failovers as u64;
                }
                Err(_) => failed += 1,
            }
        }
    });
    let s = t0.elapsed().as_secs_f64();
    println!(
        "batch {batch} inflight {inflight}: {:.0} records/s, {:.0} batches/s, ack p50 {:.1} ms p99 {:.1} ms, {failed} failed, {failovers} failovers",
        records as f64 / s,
        hist.len() as f64 / s,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

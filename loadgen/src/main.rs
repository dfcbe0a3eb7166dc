//! `loadgen`: runs the specification's workload against a tickcore engine and judges the SLOs.

use std::time::Duration;

use clap::Parser;
use loadgen::run::OnShed;
use loadgen::schedule::{Plan, Spec};
use loadgen::stats::Slos;

fn dur(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}

/// Open-loop load generator for the specification's workload: single or bulk POST /save at a planned
/// schedule, GET /api query clients, a lag probe, latency histograms and SLO verdicts (non-zero exit on a miss).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Engine base URL; several comma-separated (a cluster's nodes): connection i sends to the i-th (mod
    /// their number), so the connections spread over the nodes, and moves on to the next after --failover
    /// without an answer.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// With several --url: how long a request waits for its answer before it is sent to the next engine.
    #[arg(long, default_value = "250ms", value_parser = dur)]
    failover: Duration,
    /// Keep-alive connections for writes (requests beyond them wait, and that wait counts as latency).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to run, e.g. `180s`, `10m`.
    #[arg(long, default_value = "60s", value_parser = dur)]
    duration: Duration,
    /// Constant write rate in messages per second (ignored with --schedule spec; 0: no writes, a query-only
    /// run against data written by others).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// `constant` (use --rate) or `spec`: the specification's repeating cycle (see the --spec-* flags).
    #[arg(long, default_value = "constant", value_parser = ["constant", "spec"])]
    schedule: String,
    /// Spec schedule: cycle length.
    #[arg(long, default_value = "5m", value_parser = dur)]
    spec_cycle: Duration,
    /// Spec schedule: baseline msg/s.
    #[arg(long, default_value_t = 10_000.0)]
    spec_base_rate: f64,
    /// Spec schedule: plateau msg/s.
    #[arg(long, default_value_t = 50_000.0)]
    spec_plateau_rate: f64,
    /// Spec schedule: where the plateau starts within the cycle.
    #[arg(long, default_value = "120s", value_parser = dur)]
    spec_plateau_start: Duration,
    /// Spec schedule: plateau length.
    #[arg(long, default_value = "60s", value_parser = dur)]
    spec_plateau: Duration,
    /// Spec schedule: burst msg/s.
    #[arg(long, default_value_t = 200_000.0)]
    spec_burst_rate: f64,
    /// Spec schedule: second of every minute at which the burst starts.
    #[arg(long, default_value = "30s", value_parser = dur)]
    spec_burst_at: Duration,
    /// Spec schedule: burst length.
    #[arg(long, default_value = "1s", value_parser = dur)]
    spec_burst: Duration,
    /// Messages per POST: 1 = single-message JSON, N > 1 = NDJSON bodies of N lines.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Query clients calling GET /api for random tags among the top 100 (0: a producer-only run, the query
    /// SLO is not judged).
    #[arg(long, default_value_t = 10)]
    query_clients: usize,
    /// Queries per second per client.
    #[arg(long, default_value_t = 1.0)]
    query_rate: f64,
    /// Query window, ending now.
    #[arg(long, default_value = "1h", value_parser = dur)]
    window: Duration,
    /// How often the lag probe writes a marker and polls until it is visible (0s: no probe, the lag SLO is not
    /// judged).
    #[arg(long, default_value = "100ms", value_parser = dur)]
    probe_interval: Duration,
    /// Console block interval.
    #[arg(long, default_value = "5s", value_parser = dur)]
    report_interval: Duration,
    /// SLO: query latency p99 in ms.
    #[arg(long, default_value_t = 100.0)]
    slo_query_p99_ms: f64,
    /// SLO: maximum lag (send -> visible) in ms.
    #[arg(long, default_value_t = 2000.0)]
    slo_lag_ms: f64,
    /// SLO: errors allowed.
    #[arg(long, default_value_t = 0)]
    slo_errors: u64,
    /// After the run, read back the followed tags and verify every acknowledged record (counts and values).
    #[arg(long)]
    check: bool,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write an HTML report with plots (throughput, latency over time and its distribution, lag; SLOs as
    /// lines) to this file.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// What a write connection does after a 503 with `Retry-After` (the engine shed the write): `resend`
    /// (pause that many seconds and send the same body again, as a producer that must not lose data does;
    /// counted as resent, not as an error, its latency counted from its planned time), `honor` (pause, then
    /// go on with the next request; the refused one is an error) or `ignore` (go on at once; an error).
    #[arg(long, default_value = "resend", value_parser = ["resend", "honor", "ignore"])]
    retry_after: String,
    /// Random seed (tags and values).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many tags messages are drawn from (the specification's 10,000; 100,000 for the 10x scale run; at
    /// most 1,000,000: loadgen keeps each tag's last time and values). With `uniform`, queries ask for any
    /// tag: a run too short or slow to write most of them gets mostly 404s (not counted, not judged).
    #[arg(long, default_value_t = loadgen::dist::TAGS as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tags: u64,
    /// Tag popularity: `geometric` (the specification's: tag 0 gets 1 %, tag 1 gets 1 % of the rest, ...; queries
    /// ask for the top 100) or `uniform` (every tag alike, queries ask for any tag).
    #[arg(long, default_value = "geometric", value_parser = ["geometric", "uniform"])]
    tag_distribution: String,
}

fn main() {
    let a = Args::parse();
    let plan = if a.schedule == "spec" {
        Plan::Spec(Spec {
            cycle: a.spec_cycle,
            base_rate: a.spec_base_rate,
            plateau_rate: a.spec_plateau_rate,
            plateau_start: a.spec_plateau_start,
            plateau: a.spec_plateau,
            burst_rate: a.spec_burst_rate,
            burst_at: a.spec_burst_at,
            burst: a.spec_burst,
        })
    } else {
        Plan::Constant { rate: a.rate }
    };
    let o = loadgen::run::Options {
        url: a.url,
        failover: a.failover,
        plan,
        duration: a.duration,
        connections: a.connections.max(1),
        batch: a.batch.max(1),
        query_clients: a.query_clients,
        query_rate: a.query_rate,
        window: a.window,
        probe_interval: a.probe_interval,
        report_interval: a.report_interval,
        slos: Slos {
            query_p99_ms: a.slo_query_p99_ms,
            lag_ms: a.slo_lag_ms,
            errors: a.slo_errors,
            judge_queries: a.query_clients > 0,
            judge_lag: !a.probe_interval.is_zero(),
        },
        check: a.check,
        json: a.json,
        report: a.report,
        on_shed: match a.retry_after.as_str() {
            "resend" => OnShed::Resend,
            "honor" => OnShed::Honor,
            _ => OnShed::Ignore,
        },
        seed: a.seed,
        tags: loadgen::dist::Tags::new(
            a.tags as usize,
            match a.tag_distribution.as_str() {
                "uniform" => loadgen::dist::Shape::Uniform,
                _ => loadgen::dist::Shape::Geometric,
            },
        ),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(loadgen::run::run(o)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}

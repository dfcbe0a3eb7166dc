//! `GET /metrics`: the Prometheus text exposition format. Each core keeps plain cumulative counters on its own
//! executor ([`Metrics`], bumped on the request path with no locks or atomics); a scrape asks every core for a
//! [`Snapshot`] (through the mesh for the others) and renders them all, each series labelled `core`.

use std::collections::BTreeMap;
use std::fmt::Write;

pub use crate::hist::{Hist, BUCKETS};

/// One core's cumulative counters, owned by its executor.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by (route, status).
    pub requests: BTreeMap<(&'static str, u16), u64>,
    pub service: Hist,
    pub records_in: u64,
    pub bytes_in: u64,
    /// Records this core received and sent on to their owner core.
    pub forwarded: u64,
    pub retention_deleted: u64,
}

/// Everything a scrape reports of one core (sent between cores, so owned and `Send`).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub core: usize,
    pub requests: Vec<(&'static str, u16, u64)>,
    pub service: Hist,
    pub records_in: u64,
    pub bytes_in: u64,
    pub forwarded: u64,
    pub retention_deleted: u64,
    pub commits: u64,
    pub commit_records: u64,
    pub commit: Hist,
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    pub checkpoint_deferred: u64,
    pub checkpoint_files: u64,
    pub checkpoint_files_max: u64,
    pub pending_records: u64,
    pub shed: u64,
    pub pending_refused: u64,
    /// Cluster mode: writes refused while the core's writes waiting for a PubAck held --max-pending-records.
    pub replication_refused: u64,
    pub writes_refused: u64,
    pub log_refused: u64,
    pub duplicates: u64,
    pub connections_refused: u64,
    pub connections: u64,
    pub tags: u64,
    pub tag_file_bytes: u64,
    pub log_bytes: u64,
}

/// The route label of a request path.
pub fn route(path: crate::http::parse::Path) -> &'static str {
    use crate::http::parse::Path;
    match path {
        Path::Save => "/save",
        Path::Api => "/api",
        Path::Export => "/export",
        Path::Health => "/health",
        Path::Metrics => "/metrics",
        Path::Tags => "/tags",
        Path::Write => "/write",
        Path::Asset(_) => "/",
        Path::Other => "other",
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Families of one value per core: (name, help, the value).
type PerCore<'a> = [(&'a str, &'a str, fn(&Snapshot) -> u64)];

fn per_core(out: &mut String, kind: &str, families: &PerCore, cores: &[Snapshot]) {
    for (name, help, get) in families {
        family(out, name, kind, help);
        for s in cores {
            let _ = writeln!(out, "{name}{{core=\"{}\"}} {}", s.core, get(s));
        }
    }
}

fn hist(out: &mut String, name: &str, core: usize, h: &Hist) {
    let mut cumulative = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cumulative += h.counts[i];
        let _ = writeln!(
            out,
            "{name}_bucket{{core=\"{core}\",le=\"{b}\"}} {cumulative}"
        );
    }
    cumulative += h.counts[BUCKETS.len()];
    let _ = writeln!(
        out,
        "{name}_bucket{{core=\"{core}\",le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "{name}_sum{{core=\"{core}\"}} {}", h.sum_s);
    let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {}", h.count);
}

/// Renders every core's snapshot.
pub fn render(cores: &[Snapshot]) -> String {
    let mut out = String::with_capacity(8192);
    family(
        &mut out,
        "tickcore_requests_total",
        "counter",
        "Requests answered, by route and status.",
    );
    for s in cores {
        for (route, status, n) in &s.requests {
            let _ = writeln!(
                out,
                "tickcore_requests_total{{core=\"{}\",route=\"{route}\",status=\"{status}\"}} {n}",
                s.core
            );
        }
    }
    family(
        &mut out,
        "tickcore_request_duration_seconds",
        "histogram",
        "Time from a complete request to its answer being ready (service time).",
    );
    for s in cores {
        hist(
            &mut out,
            "tickcore_request_duration_seconds",
            s.core,
            &s.service,
        );
    }
    let counters: [(&str, &str, fn(&Snapshot) -> u64); 12] = [
        (
            "tickcore_records_deduplicated_total",
            "Records not stored again because they repeat a stored or in-flight one (retries).",
            |s| s.duplicates,
        ),
        (
            "tickcore_records_ingested_total",
            "Records stored (acknowledged) by this core.",
            |s| s.records_in,
        ),
        (
            "tickcore_bytes_ingested_total",
            "Bytes of accepted POST /save bodies.",
            |s| s.bytes_in,
        ),
        (
            "tickcore_records_forwarded_total",
            "Records received here and sent to their owner core.",
            |s| s.forwarded,
        ),
        (
            "tickcore_commits_total",
            "Group commits written to the log.",
            |s| s.commits,
        ),
        (
            "tickcore_commit_records_total",
            "Records in those commits (records per commit = this / commits).",
            |s| s.commit_records,
        ),
        (
            "tickcore_writes_shed_total",
            "Writes refused with 503 because the core was saturated.",
            |s| s.shed,
        ),
        (
            "tickcore_retention_files_deleted_total",
            "Tag files deleted by retention.",
            |s| s.retention_deleted,
        ),
        (
            "tickcore_checkpoints_total",
            "Checkpoints completed.",
            |s| s.checkpoints,
        ),
        (
            "tickcore_checkpoint_failures_total",
            "Checkpoints that failed on an I/O error (retried; the log keeps their records meanwhile).",
            |s| s.checkpoint_failures,
        ),
        (
            "tickcore_checkpoint_deferred_total",
            "Dirty tag files a checkpoint left for a later one when its --checkpoint-budget was spent (their \
             records wait in memory, their log generations are held). Rising every checkpoint: the disk \
             creates or writes tag files slower than tags are written.",
            |s| s.checkpoint_deferred,
        ),
        (
            "tickcore_checkpoint_files_total",
            "Tag files written by checkpoints.",
            |s| s.checkpoint_files,
        ),
    ];
    per_core(&mut out, "counter", &counters, cores);
    family(
        &mut out,
        "tickcore_admission_rejections_total",
        "counter",
        "Work refused with 503 + Retry-After, by reason: saturated (the core's tasks wait past --shed-lag), \
         pending_records (--max-pending-records reached), pending_writes (--max-pending-writes reached), log_full (--max-log-mib reached: checkpoints behind), \
         connections (--max-connections reached), replication_pending (cluster mode: --max-pending-records of writes waiting for the replicated log).",
    );
    for s in cores {
        for (reason, n) in [
            ("saturated", s.shed),
            ("pending_records", s.pending_refused),
            ("pending_writes", s.writes_refused),
            ("log_full", s.log_refused),
            ("connections", s.connections_refused),
            ("replication_pending", s.replication_refused),
        ] {
            let _ = writeln!(
                out,
                "tickcore_admission_rejections_total{{core=\"{}\",reason=\"{reason}\"}} {n}",
                s.core
            );
        }
    }
    family(
        &mut out,
        "tickcore_commit_duration_seconds",
        "histogram",
        "Log commit time on the device: write submitted to durable (O_DSYNC).",
    );
    for s in cores {
        hist(
            &mut out,
            "tickcore_commit_duration_seconds",
            s.core,
            &s.commit,
        );
    }
    let gauges: [(&str, &str, fn(&Snapshot) -> u64); 6] = [
        (
            "tickcore_pending_records",
            "Records accepted and waiting for their log commit.",
            |s| s.pending_records,
        ),
        (
            "tickcore_open_connections",
            "Open client connections.",
            |s| s.connections,
        ),
        ("tickcore_tags", "Tags this core owns.", |s| s.tags),
        (
            "tickcore_tag_file_bytes",
            "Bytes on disk of the tag files this core owns (records and block padding).",
            |s| s.tag_file_bytes,
        ),
        (
            "tickcore_log_bytes",
            "Bytes of write-ahead log whose records are not all in tag files yet: the live generation's bytes \
             and the space of each generation a running, deferring or failed checkpoint still holds (64 MiB, \
             its preallocation, at least); writes are shed with 503 at --max-log-mib.",
            |s| s.log_bytes,
        ),
        (
            "tickcore_checkpoint_files_max",
            "The most tag files one checkpoint wrote since start (with --checkpoint-budget, about what the \
             disk writes within the budget, at least one --checkpoint-chunk-files).",
            |s| s.checkpoint_files_max,
        ),
    ];
    per_core(&mut out, "gauge", &gauges, cores);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let mut h = Hist::default();
        for ns in [10_000, 60_000, 2_000_000, 20_000_000_000] {
            h.observe_ns(ns);
        }
        let s = Snapshot {
            core: 1,
            service: h,
            requests: vec![("/save", 204, 3)],
            ..Default::default()
        };
        let text = render(&[s]);
        assert!(
            text.contains("tickcore_request_duration_seconds_bucket{core=\"1\",le=\"0.00005\"} 1")
        );
        assert!(
            text.contains("tickcore_request_duration_seconds_bucket{core=\"1\",le=\"0.0001\"} 2")
        );
        assert!(text.contains("tickcore_request_duration_seconds_bucket{core=\"1\",le=\"10\"} 3"));
        assert!(text.contains("tickcore_request_duration_seconds_bucket{core=\"1\",le=\"+Inf\"} 4"));
        assert!(text.contains("tickcore_request_duration_seconds_count{core=\"1\"} 4"));
        assert!(
            text.contains("tickcore_requests_total{core=\"1\",route=\"/save\",status=\"204\"} 3")
        );
    }
}

/// Cluster mode's lines: each stream's applied sequence and the replication lag (a batch's storage in its
/// stream to its apply here, batches of other nodes only).
pub fn render_cluster(out: &mut String, applied: &crate::cluster::positions::Applied) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP tickcore_cluster_applied_sequence Stream sequence this node has applied through.\n\
         # TYPE tickcore_cluster_applied_sequence gauge"
    );
    for (k, seq) in applied.all().iter().enumerate() {
        let _ = writeln!(
            out,
            "tickcore_cluster_applied_sequence{{stream=\"{k}\"}} {seq}"
        );
    }
    let (n, p50, p99, max) = applied.lag();
    let _ = writeln!(
        out,
        "# HELP tickcore_cluster_apply_lag_seconds Replication lag: a batch of another node stored in its \
         stream to its apply here.\n# TYPE tickcore_cluster_apply_lag_seconds summary"
    );
    for (q, us) in [("0.5", p50), ("0.99", p99), ("1", max)] {
        let _ = writeln!(
            out,
            "tickcore_cluster_apply_lag_seconds{{quantile=\"{q}\"}} {}",
            us as f64 / 1e6
        );
    }
    let _ = writeln!(out, "tickcore_cluster_apply_lag_seconds_count {n}");
    let _ = writeln!(
        out,
        "# HELP tickcore_cluster_records_set_aside_total Replicated records not applied because their tag \
         file is damaged.\n# TYPE tickcore_cluster_records_set_aside_total counter\n\
         tickcore_cluster_records_set_aside_total {}",
        applied.set_aside_total()
    );
}
